/* relprop command line. Uses only the public header, as a plugin author
 * would. Every failure prints one line "relprop: <message>" on stderr and
 * exits with status 2; output files are written whole or not at all. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "relprop/relprop.h"

#define EXIT_BAD 2

static const char *usage_main =
    "usage: relprop <command> [options]\n"
    "\n"
    "Explain transformer classifiers exported to ONNX.\n"
    "\n"
    "commands:\n"
    "  run      run the model on an input tensor and print the top classes\n"
    "  explain  relevance maps for chosen classes and methods\n"
    "  inspect  describe a model: inputs, outputs, ops, attention layers, patch grid\n"
    "\n"
    "options:\n"
    "  -h, --help     this help; 'relprop <command> --help' for a command's options\n"
    "  --version      print the version\n";

static const char *usage_run =
    "usage: relprop run --onnx MODEL --input X.npy [--top K] [--labels FILE] [-o LOGITS.npy]\n"
    "\n"
    "Run MODEL on X.npy (float32, the model's input shape, already normalised) and\n"
    "print the top classes with logit and softmax probability.\n"
    "\n"
    "  --onnx MODEL     the ONNX model (required)\n"
    "  --input X.npy    the input tensor (required)\n"
    "  --top K          how many classes to print (default 5)\n"
    "  --labels FILE    class names, one per line (default: class indices only)\n"
    "  -o, --output F   also write the logits as a .npy file\n";

static const char *usage_inspect =
    "usage: relprop inspect --onnx MODEL [--rules NAME]\n"
    "\n"
    "Print the model's inputs and outputs with shapes, op counts, the attention\n"
    "layers found in the graph, the patch grid and prefix tokens, how many nodes\n"
    "get each relevance rule, and every op relprop does not support, with its node\n"
    "name. Exits 2 if the model cannot run.\n"
    "\n"
    "  --onnx MODEL     the ONNX model (required)\n"
    "  --rules NAME     also list the rule every node gets under rule set NAME (paper)\n";

static const char *usage_explain =
    "usage: relprop explain --onnx MODEL --input X.npy [--class C ...] [--method NAME ...]\n"
    "                       [-o DIR] [--start-layer L] [--dump-intermediates DIR]\n"
    "\n"
    "Explain MODEL's decision on X.npy (float32, the model's input shape, already\n"
    "normalised). Writes one .npy per (class, method): DIR/<input stem>.c<C>.<method>.npy,\n"
    "the map over the patch grid (grid_h, grid_w), or over the pixels (H, W) for lrp_full.\n"
    "\n"
    "  --onnx MODEL              the ONNX model (required)\n"
    "  --input X.npy             the input tensor (required)\n"
    "  --class C                 class to explain; repeat for several (default: the top-1 class)\n"
    "  --method NAME             repeat for several (default: transformer_attribution); one of\n"
    "                            transformer_attribution, rollout, raw_attention, attn_gradcam,\n"
    "                            lrp_last_layer, lrp_full, generic_attention, or 'all'\n"
    "  -o, --output DIR          where to write the maps (default: .; created if missing)\n"
    "  --start-layer L           first layer aggregated by transformer_attribution and rollout (default 0)\n"
    "  --dump-intermediates DIR  also write, per class and attention layer l, the attention\n"
    "                            probabilities, their gradient and their relevance:\n"
    "                            <stem>.c<C>.attn_<l>.npy, .attn_grad_<l>.npy, .attn_cam_<l>.npy (H,N,N)\n";

static int fail(const char *msg)
{
    fprintf(stderr, "relprop: %s\n", msg);
    return EXIT_BAD;
}

static int failf(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "relprop: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return EXIT_BAD;
}

/* Options are "--name value" pairs; returns the value or NULL if absent. A
 * missing value or unknown option is reported through *bad. */
typedef struct option_spec {
    const char *long_name;
    const char *short_name;
    const char **value;   /* single-valued option: the last one given wins */
    const char **list;    /* repeatable option: values collected here (capacity list_cap) */
    int *n_list;
    int list_cap;
} option_spec;

#define OPT(l, s, v) {.long_name = (l), .short_name = (s), .value = (v)}
#define OPT_LIST(l, arr, n) {.long_name = (l), .list = (arr), .n_list = &(n), .list_cap = MAX_LIST}
#define MAX_LIST 64

static int parse_options(int argc, char **argv, option_spec *specs, int n_specs, const char *usage)
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
            if (i + 1 >= argc)
                return failf("option %s needs a value%s", argv[i], "");
            if (specs[s].list) {
                if (*specs[s].n_list >= specs[s].list_cap)
                    return failf("option %s given too many times%s", argv[i], "");
                specs[s].list[(*specs[s].n_list)++] = argv[++i];
            } else {
                *specs[s].value = argv[++i];
            }
            matched = 1;
            break;
        }
        if (!matched) {
            fprintf(stderr, "relprop: unknown option '%s'\n\n%s", argv[i], usage);
            return EXIT_BAD;
        }
    }
    return 0;
}

static int parse_int(const char *s, const char *what, long lo, long hi, long *out)
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
static int read_labels(const char *path, int64_t n_classes, char ***out)
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

static void free_labels(char **labels, int64_t n)
{
    for (int64_t i = 0; labels && i < n; i++)
        free(labels[i]);
    free(labels);
}

static int cmd_run(int argc, char **argv)
{
    const char *onnx = NULL, *input = NULL, *top_s = "5", *labels_path = NULL, *output = NULL;
    option_spec specs[] = {OPT("--onnx", NULL, &onnx), OPT("--input", NULL, &input), OPT("--top", NULL, &top_s),
                           OPT("--labels", NULL, &labels_path), OPT("--output", "-o", &output)};
    int rc = parse_options(argc, argv, specs, 5, usage_run);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (!onnx || !input)
        return failf("run needs --onnx MODEL and --input X.npy%s%s", "", "");
    long top;
    if ((rc = parse_int(top_s, "--top", 1, 1000000, &top)))
        return rc;

    rp_error err = {0};
    rp_model *m = NULL;
    rp_tensor x = {0}, y = {0};
    char **labels = NULL;
    int64_t n_classes = 0;
    int *order = NULL;
    if (rp_model_load(onnx, &m, &err)) {
        rc = fail(err.msg);
        goto done;
    }
    if (rp_npy_read(input, &x, &err)) {
        rc = fail(err.msg);
        goto done;
    }
    if (x.dtype != RP_FLOAT) {
        rc = failf("%s: dtype %s, expected float32", input, x.dtype == RP_DOUBLE ? "float64" : "not float32");
        goto done;
    }
    if (rp_model_run(m, &x, &y, &err)) {
        rc = failf("%s: %s", input, err.msg);
        goto done;
    }
    if (y.dtype != RP_FLOAT || y.count < 1) {
        rc = failf("%s: the first output is not a float32 vector of scores%s", onnx, "");
        goto done;
    }
    n_classes = y.count;
    if (labels_path && (rc = read_labels(labels_path, n_classes, &labels)))
        goto done;
    const float *logit = y.data;
    order = malloc(sizeof *order * (size_t)n_classes);
    if (!order) {
        rc = fail("out of memory");
        goto done;
    }
    double mx = logit[0], z = 0;
    for (int64_t i = 0; i < n_classes; i++) {
        order[i] = (int)i;
        if (logit[i] > mx)
            mx = logit[i];
    }
    for (int64_t i = 0; i < n_classes; i++)
        z += exp(logit[i] - mx);
    /* Partial selection sort: K is small, and ties keep index order (deterministic). */
    if (top > n_classes)
        top = (long)n_classes;
    for (long k = 0; k < top; k++) {
        int64_t best = k;
        for (int64_t i = k + 1; i < n_classes; i++)
            if (logit[order[i]] > logit[order[best]])
                best = i;
        int t = order[k];
        order[k] = order[best];
        order[best] = t;
    }
    printf("%-5s %-6s %-24s %12s %10s\n", "rank", "class", "label", "logit", "prob");
    for (long k = 0; k < top; k++) {
        int c = order[k];
        printf("%-5ld %-6d %-24s %12.5f %10.5f\n", k + 1, c, labels ? labels[c] : "-", logit[c],
               exp(logit[c] - mx) / z);
    }
    if (output) {
        if (rp_npy_write(output, &y, &err)) {
            rc = fail(err.msg);
            goto done;
        }
        printf("wrote %s\n", output);
    }
done:
    free(order);
    free_labels(labels, n_classes);
    rp_tensor_release(&x);
    rp_tensor_release(&y);
    rp_model_free(m);
    return rc;
}

static void print_value(const char *name, const rp_tensor *t)
{
    printf("  %-24s %-8s [", name, t->dtype == RP_FLOAT ? "float32" : t->dtype == RP_INT64 ? "int64" : "other");
    for (int d = 0; d < t->rank; d++)
        printf(d ? ",%lld" : "%lld", (long long)t->dims[d]);
    printf("]\n");
}

typedef struct op_count {
    const char *op;
    int count;
} op_count;

static int cmp_count(const void *a, const void *b)
{
    const op_count *x = a, *y = b;
    return x->count != y->count ? y->count - x->count : strcmp(x->op, y->op);
}

static int cmd_inspect(int argc, char **argv)
{
    const char *onnx = NULL, *rules = NULL;
    option_spec specs[] = {OPT("--onnx", NULL, &onnx), OPT("--rules", NULL, &rules)};
    int rc = parse_options(argc, argv, specs, 2, usage_inspect);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (!onnx)
        return fail("inspect needs --onnx MODEL");
    rp_error err = {0};
    rp_model *m = NULL;
    op_count *counts = NULL;
    if (rp_model_open(onnx, &m, &err))
        return fail(err.msg);
    int n_nodes = rp_model_node_count(m);
    counts = calloc((size_t)n_nodes + 1, sizeof *counts);
    if (!counts) {
        rc = fail("out of memory");
        goto done;
    }
    int n_ops = 0, n_unsupported = 0;
    for (int i = 0; i < n_nodes; i++) {
        const char *op = rp_model_node_op(m, i);
        int k = 0;
        while (k < n_ops && strcmp(counts[k].op, op) != 0)
            k++;
        if (k == n_ops)
            counts[n_ops++].op = op;
        counts[k].count++;
        n_unsupported += !rp_model_node_supported(m, i);
    }
    qsort(counts, (size_t)n_ops, sizeof *counts, cmp_count);
    printf("model: %s\n", rp_model_path(m));
    printf("opset: %d, nodes: %d\n", rp_model_opset(m), n_nodes);
    printf("ops:");
    for (int k = 0; k < n_ops; k++)
        printf(" %s %d%s", counts[k].op, counts[k].count, k + 1 < n_ops ? "," : "\n");
    if (n_unsupported) {
        printf("unsupported ops: %d\n", n_unsupported);
        for (int i = 0; i < n_nodes; i++)
            if (!rp_model_node_supported(m, i))
                printf("  node '%s': %s%s%s\n", rp_model_node_name(m, i), rp_model_node_domain(m, i),
                       rp_model_node_domain(m, i)[0] ? "::" : "", rp_model_node_op(m, i));
    } else {
        printf("unsupported ops: none\n");
    }
    if (rp_model_prepare(m, &err)) {
        rc = fail(err.msg);
        goto done;
    }
    int folded = 0;
    for (int i = 0; i < n_nodes; i++)
        folded += rp_model_node_folded(m, i);
    printf("folded at load: %d nodes (run time: %d)\n", folded, n_nodes - folded);
    printf("inputs:\n");
    for (int i = 0; i < rp_model_input_count(m); i++)
        print_value(rp_model_input_name(m, i), rp_model_input_info(m, i));
    printf("outputs:\n");
    for (int i = 0; i < rp_model_output_count(m); i++)
        print_value(rp_model_output_name(m, i), rp_model_output_info(m, i));
    int n_attn = rp_model_attention_count(m);
    printf("attention layers: %d\n", n_attn);
    for (int i = 0; i < n_attn; i++) {
        rp_attention_info a;
        if (rp_model_attention(m, i, &a, &err) == RP_OK)
            printf("  %d: softmax '%s' -> product '%s', heads %d, tokens %d\n", i, a.softmax_node, a.product_node,
                   a.heads, a.tokens);
    }
    rp_token_layout tl;
    if (rp_model_token_layout(m, &tl, &err) == RP_OK) {
        printf("patch grid: %dx%d (patch %dx%d on a %dx%d image, conv '%s')\n", tl.grid_h, tl.grid_w, tl.patch_h,
               tl.patch_w, tl.image_h, tl.image_w, tl.patch_node);
        printf("prefix tokens: %d (tokens %d)\n", tl.prefix_tokens, tl.tokens);
    } else {
        printf("patch grid: not found (%s)\n", err.msg);
    }
    /* Rule summary: how many nodes each (kind, rule) pair covers. */
    op_count *rule_counts = calloc((size_t)n_nodes + 1, sizeof *rule_counts);
    char (*labels)[80] = calloc((size_t)n_nodes + 1, sizeof *labels);
    int n_rule_kinds = 0;
    for (int i = 0; rule_counts && labels && i < n_nodes; i++) {
        const char *kind, *rule;
        if (rp_model_node_rule(m, rules, i, &kind, &rule, &err)) {
            rc = fail(err.msg);
            break;
        }
        if (rules)
            printf("%s  node '%s' (%s): %s -> %s\n", i == 0 ? "rules:\n" : "", rp_model_node_name(m, i),
                   rp_model_node_op(m, i), kind, rule ? rule : "-");
        if (!rule)
            continue;
        char label[80];
        snprintf(label, sizeof label, "%s -> %s", kind, rule);
        int k = 0;
        while (k < n_rule_kinds && strcmp(labels[k], label) != 0)
            k++;
        if (k == n_rule_kinds) {
            snprintf(labels[k], sizeof labels[k], "%s", label);
            rule_counts[n_rule_kinds++].op = labels[k];
        }
        rule_counts[k].count++;
    }
    if (rc == 0 && rule_counts && labels) {
        qsort(rule_counts, (size_t)n_rule_kinds, sizeof *rule_counts, cmp_count);
        printf("relevance rules (%s):", rules ? rules : "paper");
        for (int k = 0; k < n_rule_kinds; k++)
            printf(" %s %d%s", rule_counts[k].op, rule_counts[k].count, k + 1 < n_rule_kinds ? "," : "");
        printf("\n");
    }
    free(rule_counts);
    free(labels);
done:
    free(counts);
    rp_model_free(m);
    return rc;
}


/* "dir/x.npy" → "x". */
static void input_stem(const char *path, char *out, size_t len)
{
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    snprintf(out, len, "%s", base);
    size_t n = strlen(out);
    if (n > 4 && strcmp(out + n - 4, ".npy") == 0)
        out[n - 4] = 0;
}

static int ensure_dir(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) == 0)
        return S_ISDIR(st.st_mode) ? 0 : failf("%s: exists and is not a directory%s", dir, "");
    if (mkdir(dir, 0777) != 0)
        return failf("%s: cannot create directory: %s", dir, strerror(errno));
    return 0;
}

static int write_map(const char *dir, const char *stem, int cls, const char *what, const rp_tensor *t)
{
    char path[4096];
    rp_error err = {0};
    snprintf(path, sizeof path, "%s/%s.c%d.%s.npy", dir, stem, cls, what);
    if (rp_npy_write(path, t, &err))
        return fail(err.msg);
    printf("wrote %s\n", path);
    return 0;
}

static int cmd_explain(int argc, char **argv)
{
    const char *onnx = NULL, *input = NULL, *outdir = ".", *start_s = "0", *dump = NULL, *rules = NULL;
    const char *class_s[MAX_LIST], *method_s[MAX_LIST];
    int n_class = 0, n_method = 0;
    option_spec specs[] = {
        OPT("--onnx", NULL, &onnx), OPT("--input", NULL, &input), OPT("--output", "-o", &outdir),
        OPT("--start-layer", NULL, &start_s), OPT("--dump-intermediates", NULL, &dump), OPT("--rules", NULL, &rules),
        OPT_LIST("--class", class_s, n_class), OPT_LIST("--method", method_s, n_method),
    };
    int rc = parse_options(argc, argv, specs, (int)(sizeof specs / sizeof specs[0]), usage_explain);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (!onnx || !input)
        return failf("explain needs --onnx MODEL and --input X.npy%s%s", "", "");
    long start;
    if ((rc = parse_int(start_s, "--start-layer", 0, 100000, &start)))
        return rc;
    int classes[MAX_LIST];
    for (int i = 0; i < n_class; i++) {
        long c;
        if ((rc = parse_int(class_s[i], "--class", 0, 10000000, &c)))
            return rc;
        classes[i] = (int)c;
    }
    rp_method methods[RP_METHOD_COUNT * 2];
    int n_methods = 0;
    for (int i = 0; i < n_method; i++) {
        if (strcmp(method_s[i], "all") == 0) {
            for (int k = 0; k < RP_METHOD_COUNT; k++)
                methods[n_methods++] = (rp_method)k;
            continue;
        }
        if (n_methods >= RP_METHOD_COUNT * 2 - RP_METHOD_COUNT || !rp_method_parse(method_s[i], &methods[n_methods]))
            return failf("unknown method '%s'; see 'relprop explain --help'%s", method_s[i], "");
        n_methods++;
    }
    if (n_methods == 0)
        methods[n_methods++] = RP_METHOD_TRANSFORMER_ATTRIBUTION;

    rp_error err = {0};
    rp_model *m = NULL;
    rp_tensor x = {0};
    rp_explanation *e = NULL;
    char stem[1024];
    input_stem(input, stem, sizeof stem);
    if (rp_model_load(onnx, &m, &err)) {
        rc = fail(err.msg);
        goto done;
    }
    if (rp_npy_read(input, &x, &err)) {
        rc = fail(err.msg);
        goto done;
    }
    if (x.dtype != RP_FLOAT) {
        rc = failf("%s: dtype %s, expected float32", input, x.dtype == RP_DOUBLE ? "float64" : "not float32");
        goto done;
    }
    rp_explain_options opt = {.start_layer = (int)start, .rules = rules, .keep_intermediates = dump != NULL};
    if (rp_explain(m, &x, n_class ? classes : NULL, n_class, methods, n_methods, &opt, &e, &err)) {
        rc = failf("%s: %s", input, err.msg);
        goto done;
    }
    if ((rc = ensure_dir(outdir)) || (dump && (rc = ensure_dir(dump))))
        goto done;
    for (int ci = 0; ci < rp_explanation_class_count(e); ci++) {
        int cls = rp_explanation_class(e, ci);
        for (int mi = 0; mi < rp_explanation_method_count(e); mi++)
            if ((rc = write_map(outdir, stem, cls, rp_method_name(rp_explanation_method(e, mi)),
                                rp_explanation_map(e, ci, mi))))
                goto done;
        for (int l = 0; dump && l < rp_explanation_layer_count(e); l++) {
            const rp_tensor *t[3];
            rp_explanation_layer(e, ci, l, &t[0], &t[1], &t[2]);
            static const char *names[3] = {"attn", "attn_grad", "attn_cam"};
            for (int k = 0; k < 3; k++) {
                if (!t[k])
                    continue;
                /* (1,H,N,N) or (B*H,N,N) → (H,N,N), as the oracle stores them */
                rp_tensor view = *t[k];
                if (view.rank == 4 && view.dims[0] == 1) {
                    view.rank = 3;
                    memmove(view.dims, view.dims + 1, 3 * sizeof view.dims[0]);
                }
                char what[64];
                snprintf(what, sizeof what, "%s_%d", names[k], l);
                if ((rc = write_map(dump, stem, cls, what, &view)))
                    goto done;
            }
        }
    }
done:
    rp_explanation_free(e);
    rp_tensor_release(&x);
    rp_model_free(m);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return EXIT_BAD;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("relprop %s\n", RP_VERSION_STRING);
        return 0;
    }
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc - 2, argv + 2);
    if (strcmp(cmd, "inspect") == 0)
        return cmd_inspect(argc - 2, argv + 2);
    if (strcmp(cmd, "explain") == 0)
        return cmd_explain(argc - 2, argv + 2);
    fprintf(stderr, "relprop: unknown command '%s'\n\n%s", cmd, usage_main);
    return EXIT_BAD;
}
