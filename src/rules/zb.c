/* z^B (bounded input) rule for the linear map on the input pixels (METHOD.md
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

#include "rules/rule.h"

typedef struct zb_state {
    int xi, wi, bi;       /* input indices of x, W, bias (-1: none) */
    rp_tensor wpos, wneg; /* owned */
    rp_tensor zero_bias;  /* owned */
} zb_state;

static void zb_free(void *p)
{
    zb_state *s = p;
    if (!s)
        return;
    free(s->wpos.data);
    free(s->wneg.data);
    free(s->zero_bias.data);
    free(s);
}

static bool is_const(const rp_graph *g, const rp_node *n, int i)
{
    return i < n->n_in && n->in[i] >= 0 && g->values[n->in[i]].kind == RP_VALUE_CONSTANT;
}

static bool is_act(const rp_graph *g, const rp_node *n, int i)
{
    return i < n->n_in && n->in[i] >= 0 && g->values[n->in[i]].kind != RP_VALUE_CONSTANT;
}

static rp_status zeros_like(rp_tensor *dst, const rp_tensor *src, rp_error *err, const rp_node *n)
{
    memset(dst, 0, sizeof *dst);
    rp_tensor_set_shape(dst, RP_FLOAT, src->rank, src->dims);
    dst->data = calloc((size_t)(dst->count ? dst->count : 1), sizeof(float));
    if (!dst->data)
        return rp_fail(err, RP_ERR_NOMEM, "node '%s' (%s): out of memory", n->name, n->op_type);
    return RP_OK;
}

static rp_status zb_prepare(const rp_rule_node *rn, const rp_rule_params *p, void **state,
                            size_t *scratch_floats, rp_error *err)
{
    const rp_graph *g = rn->graph;
    const rp_node *n = rn->node;
    *state = NULL;
    *scratch_floats = 0;
    const char *op = n->op_type;
    bool conv = strcmp(op, "Conv") == 0, gemm = strcmp(op, "Gemm") == 0;
    bool two = strcmp(op, "MatMul") == 0 || (strcmp(op, "Einsum") == 0 && n->n_in == 2);
    if (!conv && !gemm && !two)
        return rp_fail(err, RP_ERR_UNSUPPORTED,
                       "node '%s' (%s): the z^B rule applies to Conv, MatMul, Gemm and two-operand Einsum", n->name,
                       op);
    if (!n->op || !n->op->backward)
        return rp_fail(err, RP_ERR_UNSUPPORTED,
                       "node '%s' (%s, opset %d): the z^B rule needs the op's gradient, which relprop does not have",
                       n->name, op, n->opset);
    int xi = 0, wi = 1;
    if (!conv && is_const(g, n, 0) && is_act(g, n, 1)) {
        xi = 1;
        wi = 0;
    }
    if (!is_act(g, n, xi) || !is_const(g, n, wi))
        return rp_fail(err, RP_ERR_UNSUPPORTED,
                       "node '%s' (%s): the z^B rule needs one constant weight and one activation operand", n->name,
                       op);
    const rp_tensor *x = &g->values[n->in[xi]].t, *w = &g->values[n->in[wi]].t;
    if (x->dtype != RP_FLOAT || w->dtype != RP_FLOAT || !w->data || n->n_out < 1 || n->out[0] < 0 ||
        g->values[n->out[0]].t.dtype != RP_FLOAT)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "node '%s' (%s): the z^B rule needs float32 operands", n->name, op);
    if (rp_rule_param_given(p, "low") != rp_rule_param_given(p, "high"))
        return rp_fail(err, RP_ERR_VALUE, "node '%s' (%s): z^B rule: give both bounds 'low' and 'high', or neither",
                       n->name, op);
    if (rp_rule_param_given(p, "low") && !(rp_rule_param(p, "low", 0) <= rp_rule_param(p, "high", 0)))
        return rp_fail(err, RP_ERR_VALUE, "node '%s' (%s): z^B bounds low %g > high %g", n->name, op,
                       rp_rule_param(p, "low", 0), rp_rule_param(p, "high", 0));
    int bi = (conv || gemm) && n->n_in > 2 && n->in[2] >= 0 ? 2 : -1;
    const rp_tensor *y = &g->values[n->out[0]].t;

    zb_state *s = calloc(1, sizeof *s);
    if (!s)
        return rp_fail(err, RP_ERR_NOMEM, "node '%s' (%s): out of memory", n->name, op);
    s->xi = xi;
    s->wi = wi;
    s->bi = bi;
    rp_status st;
    if ((st = zeros_like(&s->wpos, w, err, n)) || (st = zeros_like(&s->wneg, w, err, n)) ||
        (bi >= 0 && (st = zeros_like(&s->zero_bias, &g->values[n->in[bi]].t, err, n)))) {
        zb_free(s);
        return st;
    }
    /* A negative Gemm alpha flips the effective weight's sign: its positive part is alpha * W-. */
    bool swap = gemm && rp_attr_float(n, "alpha", 1.0f) < 0;
    const float *wv = w->data;
    float *pos = swap ? s->wneg.data : s->wpos.data, *neg = swap ? s->wpos.data : s->wneg.data;
    for (int64_t e = 0; e < w->count; e++) {
        pos[e] = wv[e] > 0 ? wv[e] : 0.0f;
        neg[e] = wv[e] < 0 ? wv[e] : 0.0f;
    }
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
    if (!c->rel_out[0] || !c->rel_in[s->xi])
        return RP_OK;
    const rp_tensor *x = c->k->in[s->xi], *y = c->k->out[0];
    if (x->count == 0 || y->count == 0)
        return RP_OK;
    size_t off = 0;
    rp_tensor buf = rp_rule_scratch(c, &off, x), g1 = rp_rule_scratch(c, &off, x), g2 = rp_rule_scratch(c, &off, x);
    rp_tensor z = rp_rule_scratch(c, &off, y), t = rp_rule_scratch(c, &off, y);
    if (!buf.data || !g1.data || !g2.data || !z.data || !t.data)
        return rp_fail(c->err, RP_ERR_INTERNAL, "node '%s' (%s): z^B rule: scratch too small", c->node->name,
                       c->node->op_type);
    const float *xv = x->data;
    int rows = c->graph && c->graph->batch > 1 && x->rank >= 1 && x->dims[0] == c->graph->batch ? c->graph->batch : 1;
    int64_t row = x->count / rows;
    rp_tensor *ov[3] = {NULL, NULL, NULL}, *out[1] = {&z}, *gout[1] = {&z}, *gin[3] = {NULL, NULL, NULL};
    if (s->bi >= 0)
        ov[s->bi] = &s->zero_bias;
    rp_status st;
    /* Z = F(x, W) - F(Lo, W+) - F(Hi, W-) + 1e-9 */
    if ((st = rp_rule_forward_with(c, ov, out)))
        return st;
    float *zv = z.data, *tv = t.data;
    const float *r = c->rel_out[0]->data;
    out[0] = &t;
    ov[s->xi] = &buf;
    for (int part = 0; part < 2; part++) {
        for (int b = 0; b < rows; b++) {
            float lo, hi;
            bounds(c, xv + b * row, row, &lo, &hi);
            float v = part == 0 ? lo : hi, *d = (float *)buf.data + b * row;
            for (int64_t e = 0; e < row; e++)
                d[e] = v;
        }
        ov[s->wi] = part == 0 ? &s->wpos : &s->wneg;
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
    ov[s->xi] = NULL;
    for (int part = 0; part < 3; part++) {
        memset(gs[part]->data, 0, sizeof(float) * (size_t)x->count);
        ov[s->wi] = ws[part];
        gin[s->xi] = gs[part];
        if ((st = rp_rule_vjp_with(c, ov, NULL, gout, gin)))
            return st;
    }
    const float *a = g1.data, *b = g2.data, *h = buf.data;
    float *dst = c->rel_in[s->xi]->data;
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
    .prepare = zb_prepare,
    .apply = zb_apply,
    .params = "low high",
    .free_state = zb_free,
    .conserves = rp_rule_conserves_always,
};
