/* Shared pieces of the relprop commands (see cli.h). */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fail(const char *msg)
{
    /* Messages quote labels, node names and paths from files: escaped, so
     * a crafted name cannot move the cursor, recolour the terminal or fake
     * a second line. */
    char buf[4096];
    fprintf(stderr, "relprop: %s\n", term_str(msg, buf, sizeof buf));
    return EXIT_BAD;
}

int failf(const char *fmt, const char *a, const char *b)
{
    char msg[8192];
    snprintf(msg, sizeof msg, fmt, a, b);
    return fail(msg);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if the bytes there
 * are not one (overlong forms, surrogates and values past U+10FFFF
 * included); *cp its code point. */
static int utf8_seq(const unsigned char *s, unsigned *cp)
{
    unsigned c = s[0];
    int n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (n == 0)
        return 0;
    unsigned v = n == 1 ? c : n == 2 ? c & 0x1f : n == 3 ? c & 0x0f : c & 0x07;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    static const unsigned min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min[n] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

/* Copies s into out, each byte that is not part of a valid UTF-8 sequence
 * written as \xNN, and also control characters when `controls` is set. */
static size_t escape_into(const char *s, char *out, size_t len, bool controls)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    while (*p) {
        unsigned cp = 0;
        int n = utf8_seq(p, &cp);
        bool control = n > 0 && (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0));
        if (n == 0 || (controls && control)) {
            /* one byte at a time: a control is one or two bytes */
            int k = n ? n : 1;
            for (int i = 0; i < k; i++) {
                if (out && o + 4 < len)
                    snprintf(out + o, len - o, "\\x%02x", p[i]);
                o += 4;
            }
            p += k;
            continue;
        }
        for (int i = 0; i < n; i++, o++)
            if (out && o + 1 < len)
                out[o] = (char)p[i];
        p += n;
    }
    if (out && len)
        out[o < len ? o : len - 1] = 0;
    return o;
}

const char *term_str(const char *s, char *buf, size_t len)
{
    if (!s)
        return "(null)";
    escape_into(s, buf, len, true);
    return buf;
}

const char *esc(const char *s)
{
    static char bufs[8][1024];
    static int next;
    char *b = bufs[next++ % 8];
    return term_str(s, b, sizeof bufs[0]);
}

cJSON *json_add_str(cJSON *o, const char *key, const char *s)
{
    size_t n = escape_into(s ? s : "", NULL, 0, false);
    char *text = malloc(n + 1);
    if (!text)
        return NULL;
    escape_into(s ? s : "", text, n + 1, false);
    cJSON *item = cJSON_AddStringToObject(o, key, text);
    free(text);
    return item;
}

int parse_options(int argc, char **argv, option_spec *specs, int n_specs, const char *usage)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage, stdout);
            return -1;
        }
        int matched = 0;
        for (int s = 0; s < n_specs; s++) {
            if (strcmp(argv[i], specs[s].long_name) != 0 &&
                !(specs[s].short_name && strcmp(argv[i], specs[s].short_name) == 0))
                continue;
            matched = 1;
            if (specs[s].is_flag) {
                *specs[s].value = "1";
                break;
            }
            if (i + 1 >= argc)
                return failf("option %s needs a value%s", argv[i], "");
            if (!specs[s].list) {
                *specs[s].value = argv[++i];
                break;
            }
            /* A list option takes every following word up to the next option. */
            do {
                if (*specs[s].n_list >= specs[s].list_cap)
                    return failf("option %s takes at most 64 values (use --list FILE for many)%s", argv[i], "");
                specs[s].list[(*specs[s].n_list)++] = argv[++i];
            } while (i + 1 < argc && argv[i + 1][0] != '-');
            break;
        }
        if (!matched) {
            fprintf(stderr, "relprop: unknown option '%s'\n\n%s", argv[i], usage);
            return EXIT_BAD;
        }
    }
    return 0;
}

int parse_int(const char *s, const char *what, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "relprop: %s must be an integer in [%ld, %ld], got '%s'\n", what, lo, hi, s);
        return EXIT_BAD;
    }
    *out = v;
    return 0;
}

/* Labels file: one name per line; must have exactly n_classes lines. */
int read_labels(const char *path, int64_t n_classes, char ***out)
{
    *out = NULL;
    rp_error err = {0};
    char *text = NULL;
    size_t len = 0;
    if (rp_file_read_text(path, "labels file", MAX_TEXT_FILE, &text, &len, &err))
        return fail(err.msg);
    char **labels = calloc((size_t)n_classes, sizeof *labels);
    int64_t n = 0;
    int rc = 0;
    for (char *p = text; labels && *p && !rc; n++) {
        size_t k = strcspn(p, "\n");
        size_t line = k > 0 && p[k - 1] == '\r' ? k - 1 : k;
        if (n < n_classes && !(labels[n] = strndup(p, line)))
            rc = fail("out of memory");
        p += k + (p[k] != 0);
    }
    free(text);
    if (!labels) {
        rc = fail("out of memory");
    } else if (!rc && n != n_classes) {
        char buf[64];
        snprintf(buf, sizeof buf, "%lld lines, expected %lld", (long long)n, (long long)n_classes);
        rc = failf("%s: labels file has %s (one per class)", path, buf);
    }
    if (rc) {
        free_labels(labels, n_classes);
        return rc;
    }
    *out = labels;
    return 0;
}

void free_labels(char **labels, int64_t n)
{
    for (int64_t i = 0; labels && i < n; i++)
        free(labels[i]);
    free(labels);
}


char **labels_from_model(const rp_model *m, int64_t n_classes)
{
    const char *text = rp_model_metadata(m, "relprop.labels");
    if (!text || n_classes < 1)
        return NULL;
    char **labels = calloc((size_t)n_classes, sizeof *labels);
    if (!labels)
        return NULL;
    int64_t n = 0;
    for (const char *p = text; n < n_classes; n++) {
        size_t len = strcspn(p, "\n");
        labels[n] = strndup(p, len);
        if (!labels[n] || !p[len]) {
            n += labels[n] != NULL;
            break;
        }
        p += len + 1;
    }
    int64_t lines = 1;
    for (const char *p = text; *p; p++)
        lines += *p == '\n' && p[1];
    if (n != n_classes || lines != n_classes) {
        /* Labels that do not match the classes would name the wrong class:
         * not used, and said so (a --labels file of the wrong length is an
         * error). */
        fprintf(stderr, "relprop: warning: %s: model metadata relprop.labels has %lld lines, the model has %lld "
                "classes: class indices are shown instead\n", rp_model_path(m), (long long)lines, (long long)n_classes);
        free_labels(labels, n_classes);
        return NULL;
    }
    return labels;
}

void print_predictions(const float *logits, int64_t n, int top, char **labels, bool multilabel)
{
    int *order = malloc(sizeof *order * (size_t)n);
    if (!order)
        return;
    if (top > n)
        top = (int)n;
    rp_top_classes(logits, n, top, order);
    double mx = logits[0], z = 0;
    for (int64_t i = 0; i < n; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    for (int64_t i = 0; i < n; i++)
        z += exp(logits[i] - mx);
    printf("%-5s %-6s %-24s %12s %10s\n", "rank", "class", "label", "logit", multilabel ? "sigmoid" : "prob");
    char buf[1024];
    for (int k = 0; k < top; k++) {
        int c = order[k];
        double p = multilabel ? 1.0 / (1.0 + exp(-(double)logits[c])) : exp(logits[c] - mx) / z;
        printf("%-5d %-6d %-24s %12.5f %10.5f\n", k + 1, c, labels ? term_str(labels[c], buf, sizeof buf) : "-",
               logits[c], p);
    }
    free(order);
}

int check_writable_dir(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return failf("%s: exists and is not a directory%s", dir, "");
        return access(dir, W_OK) == 0 ? 0 : failf("%s: cannot write there: %s", dir, strerror(errno));
    }
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", dir);
    size_t n = strlen(parent);
    while (n > 1 && parent[n - 1] == '/')
        parent[--n] = 0;
    char *slash = strrchr(parent, '/');
    if (!slash)
        snprintf(parent, sizeof parent, ".");
    else if (slash == parent)
        parent[1] = 0;
    else
        *slash = 0;
    if (stat(parent, &st) != 0 || !S_ISDIR(st.st_mode))
        return failf("%s: cannot create it: its folder %s does not exist", dir, parent);
    return access(parent, W_OK) == 0 ? 0 : failf("%s: cannot create it in %s: permission denied", dir, parent);
}

int refuse_overwrite(const char *path, bool force)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return 0;
    /* Not even --force replaces a device, FIFO, symlink or directory. */
    if (!S_ISREG(st.st_mode))
        return failf("%s exists and is not a regular file; relprop only creates or replaces regular files%s", path,
                     "");
    if (!force)
        return failf("%s exists; pass --force to overwrite it%s", path, "");
    return 0;
}

int parse_bytes_quiet(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    double unit = 1;
    if (*end == 'K' || *end == 'k')
        unit = 1024.0, end++;
    else if (*end == 'M' || *end == 'm')
        unit = 1024.0 * 1024, end++;
    else if (*end == 'G' || *end == 'g')
        unit = 1024.0 * 1024 * 1024, end++;
    if (*end == 'B' || *end == 'b')
        end++;
    if (errno || end == s || *end || !(v > 0) || v * unit > 9e18)
        return -1;
    *out = (int64_t)(v * unit);
    return 0;
}

int parse_bytes(const char *s, const char *what, int64_t *out)
{
    if (parse_bytes_quiet(s, out) == 0)
        return 0;
    return failf("%s must be a size like 512M or 2G, got '%s'", what, s);
}

int check_model_file(const char *path, int64_t limit)
{
    /* A regular file's size is known before a byte is read: one protobuf
     * cannot pass 2 GiB, and a model file larger than --max-memory is
     * refused by stat (a sparse 3 GB file would otherwise be read first).
     * Pipes (--onnx <(...)) are read, within the loader's own bound. */
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
        char size[32], lim[32];
        snprintf(size, sizeof size, "%lld", (long long)sb.st_size);
        if (sb.st_size > (off_t)INT32_MAX)
            return failf("%s: %s bytes, larger than 2 GiB, protobuf's limit for one message (models that big keep "
                         "their weights in external data files)", path, size);
        snprintf(lim, sizeof lim, "%lld", (long long)limit);
        if (limit > 0 && sb.st_size > limit) {
            char both[160];
            snprintf(both, sizeof both, "%s bytes, more than --max-memory (%s bytes)", size, lim);
            return failf("%s: the model file has %s", path, both);
        }
    }
    return 0;
}

int load_model(const char *path, const char *max_memory, bool no_check_finite, rp_model **out)
{
    return load_model_batch(path, max_memory, no_check_finite, 1, out);
}

int load_model_batch(const char *path, const char *max_memory, bool no_check_finite, int batch, rp_model **out)
{
    rp_error err = {0};
    int64_t limit = 0;
    int rc = 0;
    *out = NULL;
    if (max_memory && (rc = parse_bytes(max_memory, "--max-memory", &limit)))
        return rc;
    if ((rc = check_model_file(path, limit)))
        return rc;
    if (rp_model_open(path, out, &err))
        return fail(err.msg);
    rp_model_set_check_finite(*out, !no_check_finite);
    if ((limit && rp_model_set_max_memory(*out, limit, &err)) ||
        (batch > 1 && rp_model_set_batch(*out, batch, &err)) || rp_model_prepare(*out, &err)) {
        rp_model_free(*out);
        *out = NULL;
        return fail(err.msg);
    }
    return 0;
}

/* ---- preprocessing flags over model metadata over the model's input size ---- */

static int parse_floats3(const char *s, const char *what, float *out)
{
    char *end;
    for (int i = 0; i < 3; i++) {
        errno = 0;
        out[i] = strtof(s, &end);
        if (errno || end == s || (i < 2 && *end != ',') || (i == 2 && *end) || !isfinite(out[i]))
            return failf("%s must be three comma-separated finite numbers, got '%s'", what, s);
        s = end + 1;
    }
    return 0;
}

static int parse_size(const char *s, const char *what, int *h, int *w)
{
    char *end;
    errno = 0;
    long a = strtol(s, &end, 10), b = a;
    if (*end == ',')
        b = strtol(end + 1, &end, 10);
    if (errno || end == s || *end || a < 1 || b < 1 || a > 65536 || b > 65536)
        return failf("%s must be N or H,W (positive, at most 65536), got '%s'", what, s);
    *h = (int)a;
    *w = (int)b;
    return 0;
}

int64_t preprocess_budget(const char *max_memory)
{
    int64_t v = 0;
    /* parse errors are reported where the model is loaded */
    if (max_memory && parse_bytes_quiet(max_memory, &v) == 0)
        return v;
    return DEFAULT_PREPROCESS_BYTES;
}

/* What preprocessing a w x h image allocates: Pillow's horizontal pass
 * (new width x old height), the resized image, and the float tensor. */
static int64_t preprocess_bytes(const rp_preprocess *p, int64_t w, int64_t h, int channels)
{
    int64_t rw = w, rh = h;
    if (p->resize > 0) {
        rw = w <= h ? p->resize : (int64_t)p->resize * w / (h > 0 ? h : 1);
        rh = w <= h ? (int64_t)p->resize * h / (w > 0 ? w : 1) : p->resize;
    } else if (p->resize_h > 0) {
        rw = p->resize_w;
        rh = p->resize_h;
    }
    int64_t oh = p->crop_h > 0 ? p->crop_h : rh, ow = p->crop_w > 0 ? p->crop_w : rw;
    return rw * h * 3 + rw * rh * 3 + oh * ow * channels * 4;
}

int check_preprocess_memory(const rp_preprocess *p, int64_t w, int64_t h, int channels, int64_t budget,
                            const char *what)
{
    int64_t need = preprocess_bytes(p, w, h, channels);
    if (need <= budget)
        return 0;
    char resize[64], crop[48] = "", msg[1400];
    if (p->resize > 0)
        snprintf(resize, sizeof resize, "resize to short side %d", p->resize);
    else if (p->resize_h > 0)
        snprintf(resize, sizeof resize, "resize to %dx%d", p->resize_h, p->resize_w);
    else
        snprintf(resize, sizeof resize, "no resize");
    if (p->crop_h > 0)
        snprintf(crop, sizeof crop, ", crop %dx%d", p->crop_h, p->crop_w);
    snprintf(msg, sizeof msg,
             "%s: preprocessing would take %.1f MiB (%s%s), more than the %.1f MiB allowed (--max-memory; "
             "default 1G for preprocessing)",
             what, (double)need / 1048576.0, resize, crop, (double)budget / 1048576.0);
    return fail(msg);
}

/* Where a preprocessing value came from, for messages: the flag, the
 * model's metadata key, or the default. */
static void source_of(char *buf, size_t len, const char *flag, const char *flag_value, const char *preset,
                      const rp_model *m, const char *key)
{
    const char *meta = rp_model_metadata(m, key), *meta_preset = rp_model_metadata(m, "relprop.preset");
    if (flag_value)
        snprintf(buf, len, "%s %s", flag, flag_value);
    else if (preset)
        snprintf(buf, len, "--preset %s", preset);
    else if (meta)
        snprintf(buf, len, "%s: model metadata %s='%s'", rp_model_path(m), key, meta);
    else if (meta_preset)
        snprintf(buf, len, "%s: model metadata relprop.preset='%s'", rp_model_path(m), meta_preset);
    else
        snprintf(buf, len, "the default");
}

int resolve_preprocess(const preprocess_flags *a, rp_model *m, int64_t budget, rp_preprocess *pre,
                       const char **source)
{
    rp_error err = {0};
    const rp_tensor *x = rp_model_input_info(m, 0);
    if (a->preset) {
        if (rp_preprocess_preset(a->preset, pre, &err))
            return fail(err.msg);
        *source = "preset";
    } else if (rp_model_default_preprocess(m, pre, source, &err)) {
        return fail(err.msg);
    }
    int rc = 0, h = 0, w = 0;
    if (a->resize) {
        if ((rc = parse_size(a->resize, "--resize", &h, &w)))
            return rc;
        bool single = !strchr(a->resize, ',');
        pre->resize = single ? h : 0;
        pre->resize_h = single ? 0 : h;
        pre->resize_w = single ? 0 : w;
        *source = "options";
    }
    if (a->crop) {
        if ((rc = parse_size(a->crop, "--crop", &h, &w)))
            return rc;
        pre->crop_h = h;
        pre->crop_w = w;
        *source = "options";
    }
    if (a->interp) {
        if (strcmp(a->interp, "bilinear") == 0)
            pre->interp = RP_INTERP_BILINEAR;
        else if (strcmp(a->interp, "bicubic") == 0)
            pre->interp = RP_INTERP_BICUBIC;
        else if (strcmp(a->interp, "nearest") == 0)
            pre->interp = RP_INTERP_NEAREST;
        else
            return failf("--interpolation must be bilinear, bicubic or nearest, got '%s'%s", a->interp, "");
    }
    if ((a->mean && (rc = parse_floats3(a->mean, "--mean", pre->mean))) ||
        (a->std && (rc = parse_floats3(a->std, "--std", pre->std))))
        return rc;
    char src[600], msg[800];
    for (int c = 0; c < 3; c++) {
        if (!isfinite(pre->mean[c])) {
            source_of(src, sizeof src, "--mean", a->mean, a->preset, m, "relprop.mean");
            snprintf(msg, sizeof msg, "%s: mean values must be finite numbers", src);
            return fail(msg);
        }
        if (!(pre->std[c] > 0) || !isfinite(pre->std[c])) {
            source_of(src, sizeof src, "--std", a->std, a->preset, m, "relprop.std");
            snprintf(msg, sizeof msg, "%s: std values must be positive finite numbers, got %g", src,
                     (double)pre->std[c]);
            return fail(msg);
        }
    }
    /* The smallest image the resize can make, so a resize no memory limit
     * allows is refused before the first input, not once per input. */
    int64_t side = pre->resize > 0 ? pre->resize : 1;
    int channels = x->rank == 4 && x->dims[1] == 1 ? 1 : 3;
    if (pre->resize > 0 || pre->resize_h > 0) {
        source_of(src, sizeof src, "--resize", a->resize, a->preset, m, "relprop.resize");
        if ((rc = check_preprocess_memory(pre, side, side, channels, budget, src)))
            return rc;
    }
    return 0;
}

void stem_of(const char *path, char *out, size_t len)
{
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    snprintf(out, len, "%s", base);
    char *dot = strrchr(out, '.');
    if (dot && dot != out)
        *dot = 0;
}

typedef struct stem_entry {
    const char *stem; /* inside the path: after its last '/' */
    size_t len;       /* up to its last '.', as stem_of cuts */
    int index;        /* position in the list */
} stem_entry;

static int cmp_stem(const void *x, const void *y)
{
    const stem_entry *a = x, *b = y;
    int c = memcmp(a->stem, b->stem, a->len < b->len ? a->len : b->len);
    if (!c)
        c = (a->len > b->len) - (a->len < b->len);
    return c ? c : (a->index > b->index) - (a->index < b->index);
}

int check_unique_names(const char *const *paths, int n, const char *what, const char *advice)
{
    if (n < 2)
        return 0;
    stem_entry *sorted = malloc(sizeof *sorted * (size_t)n);
    if (!sorted)
        return fail("out of memory");
    for (int i = 0; i < n; i++) {
        const char *base = strrchr(paths[i], '/') ? strrchr(paths[i], '/') + 1 : paths[i];
        const char *dot = strrchr(base, '.');
        sorted[i] = (stem_entry){base, dot && dot != base ? (size_t)(dot - base) : strlen(base), i};
    }
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_stem);
    int rc = 0;
    for (int i = 1; i < n && !rc; i++)
        if (sorted[i - 1].len == sorted[i].len && memcmp(sorted[i - 1].stem, sorted[i].stem, sorted[i].len) == 0) {
            char msg[10000];
            snprintf(msg, sizeof msg, "inputs '%s' and '%s' would both write %s named '%.*s.*'; %s",
                     paths[sorted[i - 1].index], paths[sorted[i].index], what, (int)sorted[i].len, sorted[i].stem,
                     advice);
            rc = fail(msg);
        }
    free(sorted);
    return rc;
}

int write_text(const char *path, const char *text)
{
    rp_error err = {0};
    return rp_file_write_atomic(path, text, strlen(text), &err) ? fail(err.msg) : 0;
}

void progress(int done, int total, const char *name)
{
    int width = 30, filled = total ? done * width / total : width;
    fprintf(stderr, "\r[");
    for (int i = 0; i < width; i++)
        fputc(i < filled ? '#' : '.', stderr);
    fprintf(stderr, "] %d/%d %-40.40s", done, total, name);
    if (done == total)
        fputc('\n', stderr);
    fflush(stderr);
}

