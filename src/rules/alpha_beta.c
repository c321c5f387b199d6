/* Alpha-beta rule for a linear map with one constant weight (docs/method.md §4.3,
 * "Linear" and "other convs"): MatMul, Gemm, Conv, Einsum whose operands are
 * one activation x and one constant W. The bias (Gemm's C, Conv's B) is
 * ignored: F below is the node's own kernel with the bias replaced by zeros.
 *
 *     f(w1, w2):  Z = F(x+, w1) + F(x-, w2);   S = sdiv(R, Z)
 *                 return x+ * vjp_x(F at w1)(S) + x- * vjp_x(F at w2)(S)
 *     R_x = alpha * f(W+, W-) - beta * f(W-, W+)
 *
 * (x+ = max(x, 0), x- = min(x, 0); alpha, beta from the rule parameters,
 * paper 1 and 0; with beta == 0 the second term is not computed.) For Conv
 * the two parts are divided separately, as the reference does:
 *
 *     S1 = sdiv(R, F(x+, w1)),  S2 = sdiv(R, F(x-, w2))
 *     f = x+ * vjp_x(F at w1)(S1) + x- * vjp_x(F at w2)(S2)
 *
 * W+ and W- are split from W at every run into the engine's scratch rather
 * than kept per node: keeping them would triple the weights' memory (DeiT-base:
 * 346 MB of weights, 692 MB more), while the split is one pass over W next to
 * the four products over it (about 4 % of a DeiT-base explanation). A Gemm
 * with a negative `alpha` attribute scales W by a negative number, so the
 * positive part of the effective weight is alpha * W-: W+ and W- swap roles.
 * A part whose x+ or x- is all zero contributes exactly zero and is skipped. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/fastmath.h"
#include "rules/linear.h"

typedef struct ab_state {
    rp_linear L;
    bool conv; /* separate division of the two parts */
} ab_state;

static void ab_free(void *p)
{
    ab_state *s = p;
    if (!s)
        return;
    rp_linear_release(&s->L);
    free(s);
}

static rp_status ab_prepare(const rp_rule_node *rn, const rp_rule_params *p, void **state,
                            size_t *scratch_floats, rp_error *err)
{
    const rp_node *n = rn->node;
    *state = NULL;
    *scratch_floats = 0;
    double alpha = rp_rule_param(p, "alpha", 1.0), beta = rp_rule_param(p, "beta", 0.0);
    if (!(alpha >= 0) || !(beta >= 0))
        return rp_fail(err, RP_ERR_VALUE, "node '%s' (%s): alpha-beta rule: alpha %g and beta %g must be >= 0",
                       n->name, n->op_type, alpha, beta);
    ab_state *s = calloc(1, sizeof *s);
    if (!s)
        return rp_fail(err, RP_ERR_NOMEM, "node '%s' (%s): out of memory", n->name, n->op_type);
    rp_status st = rp_linear_prepare(rn, "alpha-beta", &s->L, err);
    if (st) {
        ab_free(s);
        return st;
    }
    s->conv = strcmp(n->op_type, "Conv") == 0;
    const rp_tensor *x = rp_rule_node_input(rn, s->L.xi), *w = rp_rule_node_input(rn, s->L.wi);
    const rp_tensor *y = rp_rule_node_output(rn, 0);
    *state = s;
    /* x+, x-, a gradient (x-shaped); two output-shaped buffers; W+ and W-. */
    *scratch_floats = 3 * (size_t)x->count + 2 * (size_t)y->count + 2 * (size_t)w->count;
    return RP_OK;
}

/* S = sdiv(R, Z1 + Z2) into both buffers; a plain loop so it vectorises. */
RP_VECTOR_CLONES static void share_sum(float *restrict z1, float *restrict z2, const float *restrict r, int64_t n)
{
    for (int64_t e = 0; e < n; e++) {
        float zsum = z1[e] + z2[e];
        z1[e] = z2[e] = (float)rp_sdiv(r[e], zsum);
    }
}

/* dst += coef * x * g where x is non-zero (so an infinite g at x = 0 adds nothing). */
RP_VECTOR_CLONES static void add_share(float *restrict dst, const float *restrict x, const float *restrict g, float coef, int64_t n)
{
    for (int64_t e = 0; e < n; e++) {
        float share = coef * (x[e] * g[e]);
        dst[e] += x[e] != 0.0f ? share : 0.0f;
    }
}

/* R_x += coef * f(w1, w2). */
static rp_status ab_part(rp_rule_ctx *c, const ab_state *s, rp_tensor *xp, rp_tensor *xn, bool has_p, bool has_n,
                         rp_tensor *w1, rp_tensor *w2, double coef, rp_tensor *z1, rp_tensor *z2, rp_tensor *g)
{
    const rp_linear *L = &s->L;
    rp_tensor *ov[3], *out[1], *gin[3] = {NULL, NULL, NULL}, *gout[1];
    const float *r = c->rel_out[0]->data;
    int64_t ny = z1->count, nx = g->count;
    float *z1v = z1->data, *z2v = z2->data, *gv = g->data, *dst = c->rel_in[L->xi]->data;
    rp_status st;
    /* Z1 = F(x+, w1), Z2 = F(x-, w2) (zero when that part of x is empty). */
    if (has_p) {
        rp_linear_overrides(L, ov, xp, w1);
        out[0] = z1;
        if ((st = rp_rule_forward_with(c, ov, out)))
            return st;
    } else {
        memset(z1v, 0, sizeof(float) * (size_t)ny);
    }
    if (has_n) {
        rp_linear_overrides(L, ov, xn, w2);
        out[0] = z2;
        if ((st = rp_rule_forward_with(c, ov, out)))
            return st;
    } else {
        memset(z2v, 0, sizeof(float) * (size_t)ny);
    }
    if (s->conv) {
        for (int64_t e = 0; e < ny; e++) {
            z1v[e] = (float)rp_sdiv(r[e], z1v[e]);
            z2v[e] = (float)rp_sdiv(r[e], z2v[e]);
        }
    } else {
        share_sum(z1v, z2v, r, ny);
    }
    /* x+ * vjp(F at w1)(S1) + x- * vjp(F at w2)(S2); the parts have disjoint support. */
    for (int part = 0; part < 2; part++) {
        if (part == 0 ? !has_p : !has_n)
            continue;
        memset(gv, 0, sizeof(float) * (size_t)nx);
        rp_linear_overrides(L, ov, part == 0 ? xp : xn, part == 0 ? w1 : w2);
        gout[0] = part == 0 ? z1 : z2;
        gin[L->xi] = g;
        if ((st = rp_rule_vjp_with(c, ov, NULL, gout, gin)))
            return st;
        add_share(dst, (part == 0 ? xp : xn)->data, gv, (float)coef, nx);
    }
    return RP_OK;
}

/* pos = max(x, 0), neg = min(x, 0), and whether either has a non-zero. */
RP_VECTOR_CLONES static void split_signs(const float *restrict x, float *restrict pos, float *restrict neg, int64_t n, bool *has_p,
                        bool *has_n)
{
    int any_p = 0, any_n = 0;
    for (int64_t e = 0; e < n; e++) {
        float v = x[e];
        pos[e] = v > 0.0f ? v : 0.0f;
        neg[e] = v < 0.0f ? v : 0.0f;
        any_p |= v > 0.0f;
        any_n |= v < 0.0f;
    }
    *has_p = any_p;
    *has_n = any_n;
}

static rp_status ab_apply(rp_rule_ctx *c)
{
    ab_state *s = c->state;
    if (!s)
        return rp_fail(c->err, RP_ERR_INTERNAL, "node '%s' (%s): alpha-beta rule applied without prepare",
                       c->node->name, c->node->op_type);
    if (!c->rel_out[0] || !c->rel_in[s->L.xi])
        return RP_OK;
    double alpha = rp_rule_param(c->params, "alpha", 1.0), beta = rp_rule_param(c->params, "beta", 0.0);
    const rp_tensor *x = c->k->in[s->L.xi], *y = c->k->out[0];
    size_t off = 0;
    rp_tensor xp = rp_rule_scratch(c, &off, x), xn = rp_rule_scratch(c, &off, x), g = rp_rule_scratch(c, &off, x);
    rp_tensor z1 = rp_rule_scratch(c, &off, y), z2 = rp_rule_scratch(c, &off, y);
    const rp_tensor *w = c->k->in[s->L.wi];
    rp_tensor wpos = rp_rule_scratch(c, &off, w), wneg = rp_rule_scratch(c, &off, w);
    if ((x->count && (!xp.data || !xn.data || !g.data)) || (y->count && (!z1.data || !z2.data)) ||
        (w->count && (!wpos.data || !wneg.data)))
        return rp_fail(c->err, RP_ERR_INTERNAL, "node '%s' (%s): alpha-beta rule: scratch too small", c->node->name,
                       c->node->op_type);
    bool has_p, has_n, w_pos, w_neg;
    split_signs(x->data, xp.data, xn.data, x->count, &has_p, &has_n);
    if (s->L.swap)
        split_signs(w->data, wneg.data, wpos.data, w->count, &w_neg, &w_pos);
    else
        split_signs(w->data, wpos.data, wneg.data, w->count, &w_pos, &w_neg);
    (void)w_pos, (void)w_neg; /* an all-positive W still has x- parts: both products are needed */
    rp_status st;
    if (alpha != 0.0 &&
        (st = ab_part(c, s, &xp, &xn, has_p, has_n, &wpos, &wneg, alpha, &z1, &z2, &g)))
        return st;
    if (beta != 0.0 &&
        (st = ab_part(c, s, &xp, &xn, has_p, has_n, &wneg, &wpos, -beta, &z1, &z2, &g)))
        return st;
    return RP_OK;
}

/* Positive and negative parts each keep their whole share, so the sum
 * scales by alpha - beta: conserving exactly when that is 1. */
static bool ab_conserves(const rp_rule_params *p)
{
    return rp_rule_param(p, "alpha", 1.0) - rp_rule_param(p, "beta", 0.0) == 1.0;
}

const rp_rule rp_rule_alpha_beta = {
    .name = "alpha_beta",
    .summary = "linear map with a constant weight: alpha * f(W+, W-) - beta * f(W-, W+), bias ignored "
               "(alpha 1, beta 0 by default)",
    .params = "alpha beta",
    .flags = RP_RULE_READS_DECLARED | RP_RULE_READS_INPUTS | RP_RULE_READS_VJP,
    .prepare = ab_prepare,
    .apply = ab_apply,
    .free_state = ab_free,
    .conserves = ab_conserves,
};
