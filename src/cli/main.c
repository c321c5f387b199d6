/* relprop command line. Uses only the public header, as a plugin author
 * would. Every failure prints one line "relprop: <message>" on stderr and
 * exits with status 2; output files are written whole or not at all. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relprop/relprop.h"

#define EXIT_BAD 2

static const char *usage_main =
    "usage: relprop <command> [options]\n"
    "\n"
    "Explain transformer classifiers exported to ONNX.\n"
    "\n"
    "commands:\n"
    "  run      run the model on an input tensor and print the top classes\n"
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
    "usage: relprop inspect --onnx MODEL\n"
    "\n"
    "Print the model's inputs and outputs with shapes, op counts, the attention\n"
    "layers found in the graph, the patch grid and prefix tokens, and every op\n"
    "relprop does not support, with its node name. Exits 2 if the model cannot run.\n"
    "\n"
    "  --onnx MODEL     the ONNX model (required)\n";

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
    const char **value;
} option_spec;

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
            *specs[s].value = argv[++i];
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
    option_spec specs[] = {{"--onnx", NULL, &onnx}, {"--input", NULL, &input}, {"--top", NULL, &top_s},
                           {"--labels", NULL, &labels_path}, {"--output", "-o", &output}};
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
    const char *onnx = NULL;
    option_spec specs[] = {{"--onnx", NULL, &onnx}};
    int rc = parse_options(argc, argv, specs, 1, usage_inspect);
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
done:
    free(counts);
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
    fprintf(stderr, "relprop: unknown command '%s'\n\n%s", cmd, usage_main);
    return EXIT_BAD;
}
