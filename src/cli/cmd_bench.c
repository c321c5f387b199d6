/* relprop bench: times the forward pass and explanation methods of one model
 * in one process, alternating between them run by run so that drift in the
 * machine's state (frequency, other load) hits every mode alike. tools/bench
 * drives it over model sizes and compares with other implementations. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli.h"

static const char *usage_bench =
    "usage: relprop bench --onnx MODEL [--input X.npy] [--mode NAME ...] [--runs N] [--warmup N]\n"
    "                     [--class C] [--threads N] [--csv FILE]\n"
    "\n"
    "Time MODEL in this process: per mode, the median, minimum and maximum wall time over\n"
    "--runs runs after --warmup untimed ones; the modes alternate within each run. Each mode\n"
    "has its own copy of the model, so it runs with the memory plan it would have alone (a\n"
    "plain forward pass fuses what an explanation keeps apart). Prints a table and the\n"
    "process's peak resident memory (which covers every mode and copy).\n"
    "\n"
    "  --onnx MODEL      the ONNX model (required)\n"
    "  --input X.npy     input tensor (default: uniform noise in [-1, 1], seed 0, of the input shape)\n"
    "  --mode NAME ...   forward, or a method of 'relprop explain' (default: forward\n"
    "                    transformer_attribution rollout)\n"
    "  --runs N          timed runs per mode (default 5)\n"
    "  --warmup N        untimed runs per mode first (default 1)\n"
    "  --class C         class explained (default: the top-1 prediction)\n"
    "  --threads N       threads (default: one per core)\n"
    "  --csv FILE        also write the results as CSV (model,mode,threads,runs,median_s,min_s,max_s,\n"
    "                    peak_rss_mib)\n"
    "  --force           overwrite FILE if it exists\n";

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The process's peak resident memory. VmHWM, not getrusage: ru_maxrss
 * survives exec, so a benchmark started from a big parent (a Python driver)
 * would report the parent's peak. */
static double peak_rss_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kib = strtod(line + 6, NULL);
    if (f)
        fclose(f);
    if (kib < 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        kib = (double)ru.ru_maxrss;
    }
    return kib / 1024.0;
}

/* Deterministic noise so runs and machines compare the same input. */
static int noise_input(const rp_tensor *info, rp_tensor *x)
{
    rp_error err = {0};
    if (rp_tensor_alloc(x, RP_FLOAT, info->rank, info->dims, &err)) /* prepared: symbolic dims are bound */
        return fail(err.msg);
    uint64_t s = 0x9E3779B97F4A7C15ull;
    float *v = x->data;
    for (int64_t i = 0; i < x->count; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v[i] = (float)((double)(s >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
    }
    return 0;
}

typedef struct mode_spec {
    const char *name;
    bool forward;
    rp_method method;
} mode_spec;

static int run_mode(rp_model *m, const mode_spec *md, const rp_tensor *x, int cls, double *seconds)
{
    rp_error err = {0};
    double t0 = now_seconds();
    if (md->forward) {
        rp_tensor y = {0};
        rp_status st = rp_model_run(m, x, &y, &err);
        rp_tensor_release(&y);
        if (st)
            return failf("forward: %s%s", err.msg, "");
    } else {
        rp_explanation *e = NULL;
        rp_status st = rp_explain(m, x, cls >= 0 ? &cls : NULL, cls >= 0 ? 1 : 0, &md->method, 1, NULL, &e, &err);
        rp_explanation_free(e);
        if (st)
            return failf("%s: %s", md->name, err.msg);
    }
    *seconds = now_seconds() - t0;
    return 0;
}

int cmd_bench(int argc, char **argv)
{
    const char *onnx = NULL, *input = NULL, *runs_s = "5", *warmup_s = "1", *class_s = NULL, *threads_s = "0";
    const char *csv = NULL, *force = NULL;
    const char *mode_names[MAX_LIST];
    int n_modes = 0;
    option_spec specs[] = {OPT("--onnx", NULL, &onnx),       OPT("--input", NULL, &input),
                           OPT_LIST("--mode", mode_names, n_modes), OPT("--runs", NULL, &runs_s),
                           OPT("--warmup", NULL, &warmup_s), OPT("--class", NULL, &class_s),
                           OPT("--threads", NULL, &threads_s), OPT("--csv", NULL, &csv),
                           OPT_FLAG("--force", &force)};
    int rc = parse_options(argc, argv, specs, (int)(sizeof specs / sizeof specs[0]), usage_bench);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (!onnx)
        return fail("bench needs --onnx MODEL");
    long runs, warmup, threads, cls = -1;
    if ((rc = parse_int(runs_s, "--runs", 1, 100000, &runs)) ||
        (rc = parse_int(warmup_s, "--warmup", 0, 100000, &warmup)) ||
        (rc = parse_int(threads_s, "--threads", 0, 4096, &threads)) ||
        (class_s && (rc = parse_int(class_s, "--class", 0, 1L << 30, &cls))))
        return rc;
    if (n_modes == 0) {
        mode_names[n_modes++] = "forward";
        mode_names[n_modes++] = "transformer_attribution";
        mode_names[n_modes++] = "rollout";
    }
    mode_spec modes[MAX_LIST];
    for (int i = 0; i < n_modes; i++) {
        modes[i] = (mode_spec){.name = mode_names[i], .forward = strcmp(mode_names[i], "forward") == 0};
        if (!modes[i].forward && !rp_method_parse(mode_names[i], &modes[i].method))
            return failf("--mode: unknown mode '%s' (forward, or a method of relprop explain)%s", mode_names[i], "");
    }
    int used_threads = rp_set_threads((int)threads);
    if (csv && (rc = refuse_overwrite(csv, force != NULL)))
        return rc;

    rp_model *m[MAX_LIST] = {NULL};
    rp_tensor x = {0};
    double *times = calloc((size_t)n_modes * (size_t)runs, sizeof *times);
    if (!times)
        return fail("out of memory");
    for (int i = 0; i < n_modes; i++)
        if ((rc = load_model(onnx, NULL, false, &m[i])))
            goto done;
    if (input) {
        rp_error err = {0};
        if (rp_npy_read(input, &x, &err)) {
            rc = fail(err.msg);
            goto done;
        }
    } else if ((rc = noise_input(rp_model_input_info(m[0], 0), &x))) {
        goto done;
    }
    for (long r = -warmup; r < runs; r++)
        for (int i = 0; i < n_modes; i++) {
            double s = 0;
            if ((rc = run_mode(m[i], &modes[i], &x, (int)cls, &s)))
                goto done;
            if (r >= 0)
                times[i * runs + r] = s;
        }

    double rss = peak_rss_mib();
    char *text = NULL;
    size_t text_len = 0;
    FILE *out = csv ? open_memstream(&text, &text_len) : NULL;
    if (csv && !out) {
        rc = fail("out of memory");
        goto done;
    }
    if (out)
        fprintf(out, "model,mode,threads,runs,median_s,min_s,max_s,peak_rss_mib\n");
    printf("%-26s %10s %10s %10s\n", "mode", "median s", "min s", "max s");
    for (int i = 0; i < n_modes; i++) {
        double *t = &times[i * runs];
        qsort(t, (size_t)runs, sizeof *t, compare_double);
        double med = runs % 2 ? t[runs / 2] : 0.5 * (t[runs / 2 - 1] + t[runs / 2]);
        printf("%-26s %10.4f %10.4f %10.4f\n", modes[i].name, med, t[0], t[runs - 1]);
        if (out)
            fprintf(out, "%s,%s,%d,%ld,%.6f,%.6f,%.6f,%.1f\n", onnx, modes[i].name, used_threads, runs, med, t[0],
                    t[runs - 1], rss);
    }
    printf("threads %d, %ld runs after %ld warm-up, peak RSS %.1f MiB\n", used_threads, runs, warmup, rss);
    if (out) {
        fclose(out);
        rc = write_text(csv, text);
        free(text);
    }
done:
    free(times);
    rp_tensor_release(&x);
    for (int i = 0; i < n_modes; i++)
        rp_model_free(m[i]);
    return rc;
}
