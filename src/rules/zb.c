/* z^B (bounded input) rule for the linear map on the input pixels (docs/method.md §4.4
 * §2, "Convolution on the input pixels"): the patch-embedding Conv, or any
 * MatMul / Gemm / Conv / two-operand Einsum with one constant weight W and an
 * activation x. F is the node's own kernel with the bias replaced by zeros.
 *
 *     lo = min(x), hi = max(x) over the whole tensor (or the rule parameters
 *     low / high when given); Lo, Hi = tensors of x's shape filled with them.
 *     With a batch (rp_model_set_batch) each row is one input and gets its
 *     own bounds, so a batch gives every input the maps it would get alone.
 *     Z   = F(x, W) - F(Lo, W+) - F(Hi, W-) + 1e-9
 *     S   = R / Z                                    (plain division)
 *     R_x = x * vjp(F at W)(S) - Lo * vjp(F at W+)(S) - Hi * vjp(F at W-)(S)
 *
 * Elementwise steps are done in float32 in the reference's order. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rules/linear.h"

typedef struct zb_state {
    rp_linear L;
    rp_tensor wpos, wneg; /* parts of the effective weight, owned */
} zb_state;

static void zb_free(void *p)
{
    zb_state *s = p;
    if (!s)
        return;
    rp_linear_release(&s->L);
    free(s->wpos.data);
    free(s->wneg.data);
    free(s);
}

static rp_status zb_prepare(const rp_rule_node *rn, const rp_rule_params *p, void **state,
                            size_t *scratch_floats, rp_error *err)
{
    const rp_node *n = rn->node;
    *state = NULL;
    *scratch_floats = 0;
    if (rp_rule_param_given(p, "low") != rp_rule_param_given(p, "high"))
        return rp_fail(err, RP_ERR_VALUE, "node '%s' (%s): z^B rule: give both bounds 'low' and 'high', or neither",
                       n->name, n->op_type);
    if (rp_rule_param_given(p, "low") && !(rp_rule_param(p, "low", 0) <= rp_rule_param(p, "high", 0)))
        return rp_fail(err, RP_ERR_VALUE, "node '%s' (%s): z^B bounds low %g > high %g", n->name, n->op_type,
                       rp_rule_param(p, "low", 0), rp_rule_param(p, "high", 0));
    zb_state *s = calloc(1, sizeof *s);
    if (!s)
        return rp_fail(err, RP_ERR_NOMEM, "node '%s' (%s): out of memory", n->name, n->op_type);
    rp_status st;
    if ((st = rp_linear_prepare(rn, "z^B", &s->L, err)) ||
        (st = rp_linear_weight(&s->L, rn, &s->wpos, rp_linear_positive_part, 0, err)) ||
        (st = rp_linear_weight(&s->L, rn, &s->wneg, rp_linear_negative_part, 0, err))) {
        zb_free(s);
        return st;
    }
    const rp_tensor *x = rp_rule_node_input(rn, s->L.xi), *y = rp_rule_node_output(rn, 0);
    *state = s;
    /* Lo/Hi then a gradient, two more gradients (x-shaped); Z and a term (output-shaped). */
    *scratch_floats = 3 * (size_t)x->count + 2 * (size_t)y->count;
    return RP_OK;
}

/* The bounds of n values of x: the rule parameters, or their min and max. */
static void bounds(const rp_rule_ctx *c, const float *x, int64_t n, float *lo, float *hi)
{
    if (rp_rule_param_given(c->params, "low")) {
        *lo = (float)rp_rule_param(c->params, "low", 0);
        *hi = (float)rp_rule_param(c->params, "high", 0);
        return;
    }
    *lo = *hi = x[0];
    for (int64_t e = 1; e < n; e++) {
        *lo = x[e] < *lo ? x[e] : *lo;
        *hi = x[e] > *hi ? x[e] : *hi;
    }
}

static rp_status zb_apply(rp_rule_ctx *c)
{
    zb_state *s = c->state;
    if (!s)
        return rp_fail(c->err, RP_ERR_INTERNAL, "node '%s' (%s): z^B rule applied without prepare", c->node->name,
                       c->node->op_type);
    const rp_linear *L = &s->L;
    if (!c->rel_out[0] || !c->rel_in[L->xi])
        return RP_OK;
    const rp_tensor *x = c->k->in[L->xi], *y = c->k->out[0];
    if (x->count == 0 || y->count == 0)
        return RP_OK;
    size_t off = 0;
    rp_tensor buf = rp_rule_scratch(c, &off, x), g1 = rp_rule_scratch(c, &off, x), g2 = rp_rule_scratch(c, &off, x);
    rp_tensor z = rp_rule_scratch(c, &off, y), t = rp_rule_scratch(c, &off, y);
    if (!buf.data || !g1.data || !g2.data || !z.data || !t.data)
        return rp_fail(c->err, RP_ERR_INTERNAL, "node '%s' (%s): z^B rule: scratch too small", c->node->name,
                       c->node->op_type);
    const float *xv = x->data;
    int batch = c->graph ? rp_graph_batch(c->graph) : 1;
    int rows = x->rank >= 1 && x->dims[0] == batch ? batch : 1;
    int64_t row = x->count / rows;
    rp_tensor *ov[3], *out[1] = {&z}, *gout[1] = {&z}, *gin[3] = {NULL, NULL, NULL};
    rp_linear_overrides(L, ov, NULL, NULL); /* x and W as they are, the bias zeroed */
    rp_status st;
    /* Z = F(x, W) - F(Lo, W+) - F(Hi, W-) + 1e-9 */
    if ((st = rp_rule_forward_with(c, ov, out)))
        return st;
    float *zv = z.data, *tv = t.data;
    const float *r = c->rel_out[0]->data;
    out[0] = &t;
    ov[L->xi] = &buf;
    for (int part = 0; part < 2; part++) {
        for (int b = 0; b < rows; b++) {
            float lo, hi;
            bounds(c, xv + b * row, row, &lo, &hi);
            float v = part == 0 ? lo : hi, *d = (float *)buf.data + b * row;
            for (int64_t e = 0; e < row; e++)
                d[e] = v;
        }
        ov[L->wi] = part == 0 ? &s->wpos : &s->wneg;
        if ((st = rp_rule_forward_with(c, ov, out)))
            return st;
        for (int64_t e = 0; e < y->count; e++)
            zv[e] -= tv[e];
    }
    for (int64_t e = 0; e < y->count; e++)
        zv[e] = r[e] / (zv[e] + 1e-9f);
    /* R_x = x * vjp(W)(S) - Lo * vjp(W+)(S) - Hi * vjp(W-)(S) */
    rp_tensor *gs[3] = {&g1, &g2, &buf};
    rp_tensor *ws[3] = {NULL, &s->wpos, &s->wneg};
    ov[L->xi] = NULL;
    for (int part = 0; part < 3; part++) {
        memset(gs[part]->data, 0, sizeof(float) * (size_t)x->count);
        ov[L->wi] = ws[part];
        gin[L->xi] = gs[part];
        if ((st = rp_rule_vjp_with(c, ov, NULL, gout, gin)))
            return st;
    }
    const float *a = g1.data, *b = g2.data, *h = buf.data;
    float *dst = c->rel_in[L->xi]->data;
    for (int q = 0; q < rows; q++) {
        float lo, hi;
        bounds(c, xv + q * row, row, &lo, &hi);
        for (int64_t e = q * row; e < (q + 1) * row; e++)
            dst[e] += xv[e] * a[e] - lo * b[e] - hi * h[e];
    }
    return RP_OK;
}

const rp_rule rp_rule_zb = {
    .name = "zb",
    .summary = "z^B rule for the map on the pixels: bounded by min/max of the input, bias ignored",
    .flags = RP_RULE_READS_DECLARED | RP_RULE_READS_INPUTS | RP_RULE_READS_VJP,
    .prepare = zb_prepare,
    .apply = zb_apply,
    .params = "low high",
    .free_state = zb_free,
    .conserves = rp_rule_conserves_always,
};
