/* Shared pieces of the relprop commands. The CLI sees only the public
 * header, as a plugin author would. Every failure prints one line
 * "relprop: <message>" on stderr and the command returns EXIT_BAD (2). */
#ifndef RP_CLI_CLI_H
#define RP_CLI_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "relprop/relprop.h"

#define EXIT_BAD 2
#define MAX_LIST 64

int fail(const char *msg);
int failf(const char *fmt, const char *a, const char *b);

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
/* Indices of the k largest logits, ties by index. order must hold n ints. */
void top_classes(const float *logits, int64_t n, int k, int *order);

int ensure_dir(const char *dir);
/* Fails early, with the reason, if dir (or, when it does not exist yet, the
 * folder that would hold it) cannot be written. Creates nothing. */
int check_writable_dir(const char *dir);
/* EXIT_BAD with a message if path exists and force is false: results are
 * never overwritten unless the user says so. */
int refuse_overwrite(const char *path, bool force);
/* "512M", "2G", "1.5G", "1000000" (bytes) → bytes. */
int parse_bytes(const char *s, const char *what, int64_t *out);
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
int resolve_preprocess(const preprocess_flags *f, rp_model *m, rp_preprocess *pre, const char **source);
/* "dir/cat.png" → "cat". */
void stem_of(const char *path, char *out, size_t len);
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
