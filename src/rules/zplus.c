/* z+ rule (Bach et al. 2015; Montavon et al. 2017), alpha = 1, beta = 0 with
 * a single division also for Conv — the textbook form, where the paper's
 * alpha_beta divides a Conv's two parts separately. For a linear map with
 * one constant weight W (MatMul, Gemm, Conv, two-operand Einsum), F the
 * node's kernel with the bias replaced by zeros, x+ = max(x, 0),
 * x- = min(x, 0):
 *
 *     Z   = F(x+, W+) + F(x-, W-)          (the positive contributions)
 *     S   = sdiv(R, Z)
 *     R_x = x+ * vjp(F at W+)(S) + x- * vjp(F at W-)(S)
 *
 * Conserving wherever Z != 0 (then sum R_x = sum R exactly). */
#include <stdlib.h>
#include <string.h>

#include "rules/linear.h"

typedef struct zplus_state {
    rp_linear L;
    rp_tensor wpos, wneg; /* owned */
} zplus_state;

static void zplus_free(void *p)
{
    zplus_state *s = p;
    if (!s)
        return;
    rp_linear_release(&s->L);
    free(s->wpos.data);
    free(s->wneg.data);
    free(s);
}

static rp_status zplus_prepare(const rp_rule_node *rn, const rp_rule_params *p, void **state, size_t *scratch_floats,
                               rp_error *err)
{
    zplus_state *s = calloc(1, sizeof *s);
    if (!s)
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    rp_status st;
    if ((st = rp_linear_prepare(rn, "z+", &s->L, err)) ||
        (st = rp_linear_weight(&s->L, rn, &s->wpos, rp_linear_positive_part, 0, err)) ||
        (st = rp_linear_weight(&s->L, rn, &s->wneg, rp_linear_negative_part, 0, err))) {
        zplus_free(s);
        return st;
    }
    const rp_tensor *x = rp_rule_node_input(rn, s->L.xi), *y = rp_rule_node_output(rn, 0);
    *state = s;
    *scratch_floats = 3 * (size_t)x->count + 2 * (size_t)y->count; /* x+, x-, gradient; Z, a term */
    return RP_OK;
}

static rp_status zplus_apply(rp_rule_ctx *c)
{
    zplus_state *s = c->state;
    const rp_linear *L = &s->L;
    if (!c->rel_out[0] || !c->rel_in[L->xi])
        return RP_OK;
    const rp_tensor *x = c->k->in[L->xi], *y = c->k->out[0];
    size_t off = 0;
    rp_tensor xp = rp_rule_scratch(c, &off, x), xn = rp_rule_scratch(c, &off, x), g = rp_rule_scratch(c, &off, x);
    rp_tensor z = rp_rule_scratch(c, &off, y), t = rp_rule_scratch(c, &off, y);
    if ((x->count && (!xp.data || !xn.data || !g.data)) || (y->count && (!z.data || !t.data)))
        return rp_rule_fail(c, RP_ERR_INTERNAL, "z+ rule: scratch too small");
    const float *xv = x->data;
    float *pv = xp.data, *nv = xn.data;
    for (int64_t e = 0; e < x->count; e++) {
        pv[e] = xv[e] > 0 ? xv[e] : 0.0f;
        nv[e] = xv[e] < 0 ? xv[e] : 0.0f;
    }
    rp_tensor *ov[3], *out[1] = {&z};
    rp_status st;
    /* Z = F(x+, W+) + F(x-, W-) */
    rp_linear_overrides(L, ov, &xp, &s->wpos);
    if ((st = rp_rule_forward_with(c, ov, out)))
        return st;
    out[0] = &t;
    rp_linear_overrides(L, ov, &xn, &s->wneg);
    if ((st = rp_rule_forward_with(c, ov, out)))
        return st;
    float *zv = z.data;
    const float *tv = t.data, *r = c->rel_out[0]->data;
    for (int64_t e = 0; e < y->count; e++)
        zv[e] = (float)rp_sdiv(r[e], (double)zv[e] + tv[e]);
    /* R_x = x+ * vjp(W+)(S) + x- * vjp(W-)(S) */
    rp_tensor *gout[1] = {&z}, *gin[3] = {NULL, NULL, NULL};
    gin[L->xi] = &g;
    for (int part = 0; part < 2; part++) {
        rp_linear_overrides(L, ov, part == 0 ? &xp : &xn, part == 0 ? &s->wpos : &s->wneg);
        rp_rule_fill(&g, 0.0f);
        if ((st = rp_rule_vjp_with(c, ov, NULL, gout, gin)))
            return st;
        rp_rule_add_product(c->rel_in[L->xi], part == 0 ? &xp : &xn, &g, 1.0);
    }
    return RP_OK;
}

const rp_rule rp_rule_zplus = {
    .name = "zplus",
    .summary = "z+ (alpha 1, beta 0): positive contributions x+ W+ + x- W- share R, one division, bias ignored",
    .flags = RP_RULE_READS_DECLARED | RP_RULE_READS_INPUTS | RP_RULE_READS_VJP,
    .prepare = zplus_prepare,
    .apply = zplus_apply,
    .free_state = zplus_free,
    .conserves = rp_rule_conserves_always,
};
