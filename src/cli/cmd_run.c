/* relprop run: logits and the top classes for one input tensor. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

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
    "  -o, --output F   also write the logits as a .npy file\n"
    "  --force          overwrite F if it exists\n"
    "  --max-memory N   refuse models needing more than N bytes of tensors (e.g. 2G;\n"
    "                   default: the larger of 1G and 64x the model's size, at most 16G)\n"
    "  --no-check-finite  do not check inputs, weights and values for NaN/Inf\n"
    "  --threads N      threads (default: one per core)\n";

int cmd_run(int argc, char **argv)
{
    const char *onnx = NULL, *input = NULL, *top_s = "5", *labels_path = NULL, *output = NULL;
    const char *force = NULL, *max_memory = NULL, *no_finite = NULL, *threads_s = "0";
    option_spec specs[] = {OPT("--onnx", NULL, &onnx), OPT("--input", NULL, &input), OPT("--top", NULL, &top_s),
                           OPT("--labels", NULL, &labels_path), OPT("--output", "-o", &output),
                           OPT_FLAG("--force", &force), OPT("--max-memory", NULL, &max_memory),
                           OPT_FLAG("--no-check-finite", &no_finite), OPT("--threads", NULL, &threads_s)};
    int rc = parse_options(argc, argv, specs, (int)(sizeof specs / sizeof specs[0]), usage_run);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (!onnx || !input)
        return failf("run needs --onnx MODEL and --input X.npy%s%s", "", "");
    long top, threads;
    if ((rc = parse_int(top_s, "--top", 1, 1000000, &top)) ||
        (rc = parse_int(threads_s, "--threads", 0, 4096, &threads)))
        return rc;
    rp_set_threads((int)threads);

    rp_error err = {0};
    rp_model *m = NULL;
    rp_tensor x = {0}, y = {0};
    char **labels = NULL;
    int64_t n_classes = 0;
    if (output && (rc = refuse_overwrite(output, force != NULL)))
        goto done;
    if ((rc = load_model(onnx, max_memory, no_finite != NULL, &m)))
        goto done;
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
    if (!labels)
        labels = labels_from_model(m, n_classes);
    const char *ml = rp_model_metadata(m, "relprop.multilabel");
    print_predictions(y.data, n_classes, (int)top, labels, ml && strcmp(ml, "1") == 0);
    if (output) {
        if (rp_npy_write(output, &y, &err)) {
            rc = fail(err.msg);
            goto done;
        }
        printf("wrote %s\n", output);
    }
done:
    free_labels(labels, n_classes);
    rp_tensor_release(&x);
    rp_tensor_release(&y);
    rp_model_free(m);
    return rc;
}

