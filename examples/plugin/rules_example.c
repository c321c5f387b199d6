/* An example relprop rule plugin: LRP-0 with a dead zone.
 *
 * For a linear map with a constant weight (MatMul, Gemm, Conv, Einsum), z
 * the node's own output (bias included, so the bias takes its share):
 *
 *     S_j  = R_j / z_j     where |z_j| > threshold, else 0
 *     R_x += x * vjp(S)                                  (= x * (S W^T) for y = x W)
 *
 * threshold = 0 is plain LRP-0 (Bach et al. 2015); a positive threshold
 * drops the relevance of outputs that are nearly zero, where LRP-0 explodes.
 * Parameter: "threshold" (default 0).
 *
 * Everything a rule needs comes from <relprop/rule.h>: the node (prepare),
 * the forward values and relevance (apply), the node's own vector-Jacobian
 * product, scratch memory, and errors that name the node. The plugin
 * exports one function, relprop_rule_plugin_register; build with
 * -fvisibility=hidden so that nothing else leaks out. */
#include <relprop/rule.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct lrp0_state {
    int x;            /* the activation input */
    double threshold;
} lrp0_state;

static rp_status lrp0_prepare(const rp_rule_node *n, const rp_rule_params *p, void **state, size_t *scratch_floats,
                              rp_error *err)
{
    const char *op = rp_rule_node_op(n);
    if (strcmp(op, "MatMul") != 0 && strcmp(op, "Gemm") != 0 && strcmp(op, "Conv") != 0 && strcmp(op, "Einsum") != 0)
        return rp_rule_node_fail(n, err, RP_ERR_UNSUPPORTED, "example_lrp0 applies to linear maps");
    /* One constant operand (the weight), one activation. */
    int x = -1, consts = 0;
    for (int i = 0; i < rp_rule_node_input_count(n) && i < 2; i++) {
        if (!rp_rule_node_input(n, i))
            continue;
        if (rp_rule_node_input_is_constant(n, i))
            consts++;
        else
            x = i;
    }
    if (x < 0 || consts != 1 || !rp_rule_node_has_gradient(n))
        return rp_rule_node_fail(n, err, RP_ERR_UNSUPPORTED,
                                 "example_lrp0 needs one constant weight, one activation and the op's gradient");
    double threshold = rp_rule_param(p, "threshold", 0.0);
    if (!(threshold >= 0))
        return rp_rule_node_fail(n, err, RP_ERR_VALUE, "example_lrp0: threshold %g must be >= 0", threshold);
    lrp0_state *s = malloc(sizeof *s);
    if (!s)
        return rp_rule_node_fail(n, err, RP_ERR_NOMEM, "out of memory");
    s->x = x;
    s->threshold = threshold;
    *state = s;
    /* S (output-shaped) and the gradient (input-shaped). */
    *scratch_floats = (size_t)rp_rule_node_output(n, 0)->count + (size_t)rp_rule_node_input(n, x)->count;
    return RP_OK;
}

static rp_status lrp0_apply(rp_rule_ctx *c)
{
    const lrp0_state *s = rp_rule_ctx_state(c);
    const rp_tensor *r = rp_rule_relevance_out(c, 0), *z = rp_rule_output(c, 0), *x = rp_rule_input(c, s->x);
    rp_tensor *rx = rp_rule_relevance_in(c, s->x);
    if (!r || !rx)
        return RP_OK; /* nothing arrives, or nobody needs it */
    size_t off = 0;
    rp_tensor S = rp_rule_scratch(c, &off, z), g = rp_rule_scratch(c, &off, x);
    if (!S.data || !g.data)
        return rp_rule_fail(c, RP_ERR_INTERNAL, "example_lrp0: scratch too small");
    const float *rv = r->data, *zv = z->data;
    float *sv = S.data;
    for (int64_t j = 0; j < z->count; j++)
        sv[j] = zv[j] > s->threshold || zv[j] < -s->threshold ? (float)((double)rv[j] / zv[j]) : 0.0f;
    /* g = vjp(S) with respect to x only (NULL: the weight's is not wanted);
     * the kernel adds into g, so clear it first. */
    rp_rule_fill(&g, 0.0f);
    rp_tensor *gout[1] = {&S}, *gin[3] = {NULL, NULL, NULL};
    gin[s->x] = &g;
    rp_status st = rp_rule_vjp(c, gout, gin);
    if (st)
        return st;
    rp_rule_add_product(rx, x, &g, 1.0);
    return RP_OK;
}

static const rp_rule example_lrp0 = {
    .name = "example_lrp0",
    .summary = "LRP-0 on linear maps, dropping outputs with |z| <= threshold (example plugin)",
    .params = "threshold",
    .prepare = lrp0_prepare,
    .apply = lrp0_apply,
    .free_state = free,
    .conserves = NULL, /* the bias and the dead zone keep a share */
};

RP_RULE_PLUGIN_EXPORT rp_status relprop_rule_plugin_register(rp_rule_registry *reg, rp_error *err)
{
    return rp_rule_register(reg, &example_lrp0, err);
}
