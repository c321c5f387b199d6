/* relprop inspect: what relprop sees in a model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "relprop/rule.h"

static const char *usage_inspect =
    "usage: relprop inspect --onnx MODEL [--rules NAME] [--max-memory N]\n"
    "\n"
    "Print the model's inputs and outputs with shapes, op counts, the attention\n"
    "layers found in the graph, the patch grid and prefix tokens, how many nodes\n"
    "get each relevance rule, and every op relprop does not support, with its node\n"
    "name. Exits 2 if the model cannot run.\n"
    "\n"
    "  --onnx MODEL     the ONNX model (required)\n"
    "  --rules NAME     also list the rule every node gets under rule set NAME: paper,\n"
    "                   attnlrp, epsilon, zplus, alpha2beta1, gamma, or a JSON file (docs/rules.md)\n"
    "  --plugin LIB.so  load relevance rules from a plugin first (repeatable)\n"
    "  --max-memory N   as for run and explain: the ceiling on the model's tensors (e.g. 2G;\n"
    "                   default: the larger of 1G and 64x the model's size, at most 16G)\n";

static void print_value(const char *name, const rp_tensor *t)
{
    printf("  %-24s %-8s [", esc(name), t->dtype == RP_FLOAT ? "float32" : t->dtype == RP_INT64 ? "int64" : "other");
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

int cmd_inspect(int argc, char **argv)
{
    const char *onnx = NULL, *rules = NULL, *max_memory = NULL;
    const char *plugin_s[MAX_LIST];
    int n_plugin = 0;
    rp_rule_registry *reg = NULL;
    option_spec specs[] = {OPT("--onnx", NULL, &onnx), OPT("--rules", NULL, &rules),
                           OPT_LIST("--plugin", plugin_s, n_plugin), OPT("--max-memory", NULL, &max_memory)};
    int rc = parse_options(argc, argv, specs, (int)(sizeof specs / sizeof specs[0]), usage_inspect);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (!onnx)
        return fail("inspect needs --onnx MODEL");
    int64_t limit = 0;
    if ((max_memory && (rc = parse_bytes(max_memory, "--max-memory", &limit))) || (rc = check_model_file(onnx, limit)))
        return rc;
    rp_error err = {0};
    rp_model *m = NULL;
    op_count *counts = NULL;
    if (n_plugin && rp_rule_registry_create(&reg, &err))
        return fail(err.msg);
    for (int i = 0; i < n_plugin; i++)
        if (rp_rule_registry_load_plugin(reg, plugin_s[i], &err)) {
            rp_rule_registry_free(reg);
            return fail(err.msg);
        }
    if (rp_model_open(onnx, &m, &err)) {
        rp_rule_registry_free(reg);
        return fail(err.msg);
    }
    if (limit && rp_model_set_max_memory(m, limit, &err)) {
        rc = fail(err.msg);
        goto done;
    }
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
    printf("model: %s\n", esc(rp_model_path(m)));
    printf("opset: %d, nodes: %d\n", rp_model_opset(m), n_nodes);
    printf("ops:");
    for (int k = 0; k < n_ops; k++)
        printf(" %s %d%s", esc(counts[k].op), counts[k].count, k + 1 < n_ops ? "," : "\n");
    if (n_unsupported) {
        printf("unsupported ops: %d\n", n_unsupported);
        for (int i = 0; i < n_nodes; i++)
            if (!rp_model_node_supported(m, i))
                printf("  node '%s': %s%s%s\n", esc(rp_model_node_name(m, i)), esc(rp_model_node_domain(m, i)),
                       rp_model_node_domain(m, i)[0] ? "::" : "", esc(rp_model_node_op(m, i)));
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
    int fused = rp_model_fused_gelu_count(m);
    printf("folded at load: %d nodes (run time: %d)\n", folded - 4 * fused, n_nodes - folded);
    if (fused)
        printf("fused: %d exact GELUs (Div, Erf, Add, Mul, Mul) into one Gelu node each\n", fused);
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
            printf("  %d: softmax '%s' -> product '%s', heads %d, tokens %d\n", i, esc(a.softmax_node), esc(a.product_node),
                   a.heads, a.tokens);
    }
    rp_token_layout tl;
    if (rp_model_token_layout(m, &tl, &err) == RP_OK) {
        printf("patch grid: %dx%d (patch %dx%d on a %dx%d image, conv '%s')\n", tl.grid_h, tl.grid_w, tl.patch_h,
               tl.patch_w, tl.image_h, tl.image_w, esc(tl.patch_node));
        printf("prefix tokens: %d (tokens %d)\n", tl.prefix_tokens, tl.tokens);
        if (tl.readout) {
            printf("readout: %s:", tl.readout);
            for (int k = 0; k < tl.n_readout_rows; k++)
                printf(" %d*%.4g", tl.readout_rows[k], tl.readout_weights[k]);
            printf("%s\n", tl.n_readout_rows == 16 ? " ..." : "");
        }
    } else if (err.code == RP_ERR_UNSUPPORTED && n_attn > 0) {
        printf("unsupported attention layout: %s\n", esc(err.msg));
        rc = fail(err.msg);
        goto done;
    } else {
        printf("patch grid: not found (%s)\n", esc(err.msg));
    }
    /* Rule summary: how many nodes each (kind, rule) pair covers. */
    op_count *rule_counts = calloc((size_t)n_nodes + 1, sizeof *rule_counts);
    char (*labels)[80] = calloc((size_t)n_nodes + 1, sizeof *labels);
    int n_rule_kinds = 0;
    for (int i = 0; rule_counts && labels && i < n_nodes; i++) {
        const char *kind, *rule;
        const rp_rule_params *params = NULL;
        if (rp_model_node_rule_in(m, rules, reg, i, &kind, &rule, &params, &err)) {
            rc = fail(err.msg);
            break;
        }
        char pbuf[160] = "";
        if (params)
            rp_rule_params_format(params, pbuf, sizeof pbuf);
        if (rules)
            printf("%s  node '%s' (%s): %s -> %s%s%s\n", i == 0 ? "rules:\n" : "", esc(rp_model_node_name(m, i)),
                   esc(rp_model_node_op(m, i)), kind, rule ? rule : "-", pbuf[0] ? " " : "", pbuf);
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
            printf(" %s %d%s", esc(rule_counts[k].op), rule_counts[k].count, k + 1 < n_rule_kinds ? "," : "");
        printf("\n");
    }
    free(rule_counts);
    free(labels);
done:
    free(counts);
    rp_model_free(m);
    rp_rule_registry_free(reg);
    return rc;
}

