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
    fprintf(stderr, "relprop: %s\n", msg);
    return EXIT_BAD;
}

int failf(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "relprop: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return EXIT_BAD;
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
    FILE *f = fopen(path, "r");
    if (!f)
        return failf("%s: cannot open labels file: %s", path, strerror(errno));
    char **labels = calloc((size_t)n_classes, sizeof *labels);
    char line[4096];
    int64_t n = 0;
    int rc = 0;
    while (labels && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (n < n_classes)
            labels[n] = strdup(line);
        n++;
    }
    if (!labels) {
        rc = fail("out of memory");
    } else if (n != n_classes) {
        char buf[64];
        snprintf(buf, sizeof buf, "%lld lines, expected %lld", (long long)n, (long long)n_classes);
        rc = failf("%s: labels file has %s (one per class)", path, buf);
    }
    fclose(f);
    if (rc) {
        for (int64_t i = 0; labels && i < n_classes; i++)
            free(labels[i]);
        free(labels);
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
    if (n != n_classes) {
        free_labels(labels, n_classes);
        return NULL;
    }
    return labels;
}

void top_classes(const float *logits, int64_t n, int k, int *order)
{
    for (int64_t i = 0; i < n; i++)
        order[i] = (int)i;
    if (k > n)
        k = (int)n;
    /* Partial selection sort: k is small, and ties keep index order (deterministic). */
    for (int j = 0; j < k; j++) {
        int64_t best = j;
        for (int64_t i = j + 1; i < n; i++)
            if (logits[order[i]] > logits[order[best]])
                best = i;
        int t = order[j];
        order[j] = order[best];
        order[best] = t;
    }
}

void print_predictions(const float *logits, int64_t n, int top, char **labels, bool multilabel)
{
    int *order = malloc(sizeof *order * (size_t)n);
    if (!order)
        return;
    if (top > n)
        top = (int)n;
    top_classes(logits, n, top, order);
    double mx = logits[0], z = 0;
    for (int64_t i = 0; i < n; i++)
        mx = logits[i] > mx ? logits[i] : mx;
    for (int64_t i = 0; i < n; i++)
        z += exp(logits[i] - mx);
    printf("%-5s %-6s %-24s %12s %10s\n", "rank", "class", "label", "logit", multilabel ? "sigmoid" : "prob");
    for (int k = 0; k < top; k++) {
        int c = order[k];
        double p = multilabel ? 1.0 / (1.0 + exp(-(double)logits[c])) : exp(logits[c] - mx) / z;
        printf("%-5d %-6d %-24s %12.5f %10.5f\n", k + 1, c, labels ? labels[c] : "-", logits[c], p);
    }
    free(order);
}

int ensure_dir(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) == 0)
        return S_ISDIR(st.st_mode) ? 0 : failf("%s: exists and is not a directory%s", dir, "");
    if (mkdir(dir, 0777) != 0)
        return failf("%s: cannot create directory: %s", dir, strerror(errno));
    return 0;
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
    if (!force && stat(path, &st) == 0)
        return failf("%s exists; pass --force to overwrite it%s", path, "");
    return 0;
}

int parse_bytes(const char *s, const char *what, int64_t *out)
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
        return failf("%s must be a size like 512M or 2G, got '%s'", what, s);
    *out = (int64_t)(v * unit);
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
        if (errno || end == s || (i < 2 && *end != ',') || (i == 2 && *end))
            return failf("%s must be three comma-separated numbers, got '%s'", what, s);
        s = end + 1;
    }
    return 0;
}

static int parse_size(const char *s, const char *what, int *h, int *w)
{
    char *end;
    long a = strtol(s, &end, 10), b = a;
    if (*end == ',')
        b = strtol(end + 1, &end, 10);
    if (*end || a < 1 || b < 1 || a > 65536 || b > 65536)
        return failf("%s must be N or H,W (positive), got '%s'", what, s);
    *h = (int)a;
    *w = (int)b;
    return 0;
}

int resolve_preprocess(const preprocess_flags *a, rp_model *m, rp_preprocess *pre, const char **source)
{
    rp_error err = {0};
    if (a->preset) {
        if (rp_preprocess_preset(a->preset, pre, &err))
            return fail(err.msg);
        *source = "preset";
    } else if (rp_model_default_preprocess(m, pre, source, &err)) {
        return fail(err.msg);
    }
    int rc = 0, h, w;
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
    for (int c = 0; c < 3; c++)
        if (!(pre->std[c] > 0))
            return fail("--std values must be positive");
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

int write_text(const char *path, const char *text)
{
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return failf("%s: cannot write: %s", path, strerror(errno));
    bool ok = fputs(text, f) >= 0;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return failf("%s: cannot write: %s", path, strerror(errno));
    }
    return 0;
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

