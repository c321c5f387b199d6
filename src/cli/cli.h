/* Shared pieces of the relprop commands. The CLI sees only the public
 * header, as a plugin author would. Every failure prints one line
 * "relprop: <message>" on stderr and the command returns EXIT_BAD (2). */
#ifndef RP_CLI_CLI_H
#define RP_CLI_CLI_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relprop/relprop.h"

#define EXIT_BAD 2
#define MAX_LIST 64
/* Largest labels, list or rule-set file read (checked with fstat before
 * reading): 64 MiB is a million long paths. */
#define MAX_TEXT_FILE ((int64_t)64 << 20)

int fail(const char *msg);
int failf(const char *fmt, const char *a, const char *b);
/* s with control characters and bytes that are not UTF-8 written as \xNN,
 * for the terminal; returns buf (or a constant for NULL). */
const char *term_str(const char *s, char *buf, size_t len);
/* term_str into one of 8 rotating static buffers: for printf arguments
 * (names from model files), up to 8 in one call. Not thread-safe. */
const char *esc(const char *s);
/* cJSON_AddStringToObject with bytes that are not UTF-8 written as the
 * text \xNN, so every JSON file relprop writes is valid UTF-8 (cJSON
 * escapes control characters itself). */
cJSON *json_add_str(cJSON *o, const char *key, const char *s);

/* "--name value" options. A single-valued option keeps the last value; a
 * repeatable one collects up to list_cap values. */
typedef struct option_spec {
    const char *long_name;
    const char *short_name;
    const char **value;
    const char **list;
    int *n_list;
    int list_cap;
    bool is_flag;         /* takes no value; *value is set to "1" */
} option_spec;

#define OPT(l, s, v) {.long_name = (l), .short_name = (s), .value = (v)}
#define OPT_FLAG(l, v) {.long_name = (l), .value = (v), .is_flag = true}
#define OPT_LIST(l, arr, n) {.long_name = (l), .list = (arr), .n_list = &(n), .list_cap = MAX_LIST}

/* Returns 0 when parsed, -1 after printing --help (the command should return
 * 0), or EXIT_BAD after printing the problem. Arguments not starting with
 * "-" that follow a list option are appended to that list (so
 * "--image a.png b.png" works). */
int parse_options(int argc, char **argv, option_spec *specs, int n_specs, const char *usage);
int parse_int(const char *s, const char *what, long lo, long hi, long *out);

/* Labels file: one name per line, exactly n_classes lines. */
int read_labels(const char *path, int64_t n_classes, char ***out);
void free_labels(char **labels, int64_t n);
/* Class names from the model's metadata (relprop.labels, one per line), if
 * there are exactly n_classes; NULL otherwise. Caller frees with free_labels. */
char **labels_from_model(const rp_model *m, int64_t n_classes);

/* The notebook's table: rank, class, label, logit, probability (softmax, or
 * sigmoid per class for multi-label models). */
void print_predictions(const float *logits, int64_t n, int top, char **labels, bool multilabel);

/* Fails early, with the reason, if dir (or, when it does not exist yet, the
 * folder that would hold it) cannot be written. Creates nothing. */
int check_writable_dir(const char *dir);
/* EXIT_BAD with a message if path exists and force is false: results are
 * never overwritten unless the user says so. */
int refuse_overwrite(const char *path, bool force);
/* "512M", "2G", "1.5G", "1000000" (bytes) → bytes. */
int parse_bytes(const char *s, const char *what, int64_t *out);
/* The same without a message: 0, or -1 if s is not a size. */
int parse_bytes_quiet(const char *s, int64_t *out);
/* Refuses, by stat and before a byte is read, a regular model file above
 * 2 GiB (protobuf's limit) or above limit bytes (--max-memory; 0 = none). */
int check_model_file(const char *path, int64_t limit);
/* Common model options: --max-memory and --no-check-finite, applied between
 * open and prepare. */
int load_model(const char *path, const char *max_memory, bool no_check_finite, rp_model **out);
/* The same, prepared to run `batch` inputs at once (rp_model_set_batch). */
int load_model_batch(const char *path, const char *max_memory, bool no_check_finite, int batch, rp_model **out);

/* Preprocessing from flags (any may be NULL), else the model's relprop.*
 * metadata, else a resize to the model's input size, bilinear, mean = std =
 * 0.5. *source says which. */
typedef struct preprocess_flags {
    const char *preset, *resize, *crop, *interp, *mean, *std;
} preprocess_flags;
int resolve_preprocess(const preprocess_flags *f, rp_model *m, int64_t budget, rp_preprocess *pre,
                       const char **source);
/* Also checks, naming each value's source (flag, model metadata key or the
 * default): mean finite, std positive, and that the smallest image the
 * resize makes fits `budget` bytes (preprocess_budget). */
#define DEFAULT_PREPROCESS_BYTES ((int64_t)1 << 30)
/* --max-memory's value (already checked), else DEFAULT_PREPROCESS_BYTES. */
int64_t preprocess_budget(const char *max_memory);
/* EXIT_BAD, naming `what`, when preprocessing a w x h image with p would
 * allocate more than budget bytes. */
int check_preprocess_memory(const rp_preprocess *p, int64_t w, int64_t h, int channels, int64_t budget,
                            const char *what);
/* "dir/cat.png" → "cat". */
void stem_of(const char *path, char *out, size_t len);
/* EXIT_BAD, naming both, if two of paths[0..n) have one stem: their
 * output files (`what`) would overwrite each other. O(n log n). */
int check_unique_names(const char *const *paths, int n, const char *what, const char *advice);
/* Write text to path atomically (temporary file + rename). */
int write_text(const char *path, const char *text);
/* A progress bar on stderr: [####....] done/total name. */
void progress(int done, int total, const char *name);

int cmd_run(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_explain(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_bench(int argc, char **argv);

#endif
