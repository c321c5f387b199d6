/* Gamma rule (Montavon et al. 2019), in the sign-aware form zennit uses so
 * that negative inputs and outputs are handled too. For a linear map with
 * one constant weight W (MatMul, Gemm, Conv, two-operand Einsum), F the
 * node's kernel with the bias replaced by zeros, x+ = max(x,0),
 * x- = min(x,0), gamma >= 0 (parameter "gamma", default 0.25):
 *
 *     Wu  = W + gamma W+,   Wd = W + gamma W-
 *     z   = F(x, W)
 *     Zp  = F(x+, Wu) + F(x-, Wd)       favours contributions of z's sign
 *     Zn  = F(x+, Wd) + F(x-, Wu)       when z < 0
 *     Sp  = [z >= 0] sdiv(R, Zp),  Sn = [z < 0] sdiv(R, Zn)
 *     R_x = x+ * (vjp(F at Wu)(Sp) + vjp(F at Wd)(Sn))
 *         + x- * (vjp(F at Wd)(Sp) + vjp(F at Wu)(Sn))
 *
 * gamma = 0 is LRP-0; gamma -> infinity approaches z+ on positive outputs.
 * Zp = z + gamma (x+ W+ + x- W-) keeps z's sign, so the division is safe;
 * the rule conserves wherever Zp / Zn are non-zero. */
#include <stdlib.h>
#include <string.h>

#include "rules/linear.h"

typedef struct gamma_state {
    rp_linear L;
    rp_tensor wu, wd; /* owned */
} gamma_state;

static void gamma_free(void *p)
{
    gamma_state *s = p;
    if (!s)
        return;
    rp_linear_release(&s->L);
    free(s->wu.data);
    free(s->wd.data);
    free(s);
}

/* W + gamma * (positive / negative part of the effective weight); a
 * negative Gemm alpha makes the raw weight's negative part the effective
 * positive one. */
static float up(float w, bool swap, double gamma)
{
    float part = swap ? (w < 0 ? w : 0.0f) : (w > 0 ? w : 0.0f);
    return (float)(w + gamma * part);
}

static float down(float w, bool swap, double gamma)
{
    float part = swap ? (w > 0 ? w : 0.0f) : (w < 0 ? w : 0.0f);
    return (float)(w + gamma * part);
}

static rp_status gamma_prepare(const rp_rule_node *rn, const rp_rule_params *p, void **state, size_t *scratch_floats,
                               rp_error *err)
{
    double gamma = rp_rule_param(p, "gamma", 0.25);
    if (!(gamma >= 0))
        return rp_fail(err, RP_ERR_VALUE, "node '%s' (%s): gamma rule: gamma %g must be >= 0", rp_rule_node_name(rn),
                       rp_rule_node_op(rn), gamma);
    gamma_state *s = calloc(1, sizeof *s);
    if (!s)
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    rp_status st;
    if ((st = rp_linear_prepare(rn, "gamma", &s->L, err)) ||
        (st = rp_linear_weight(&s->L, rn, &s->wu, up, gamma, err)) ||
        (st = rp_linear_weight(&s->L, rn, &s->wd, down, gamma, err))) {
        gamma_free(s);
        return st;
    }
    const rp_tensor *x = rp_rule_node_input(rn, s->L.xi), *y = rp_rule_node_output(rn, 0);
    *state = s;
    *scratch_floats = 3 * (size_t)x->count + 4 * (size_t)y->count; /* x+, x-, gradient; z, Zp, Zn, a term */
    return RP_OK;
}

static rp_status gamma_apply(rp_rule_ctx *c)
{
    gamma_state *s = c->state;
    const rp_linear *L = &s->L;
    if (!c->rel_out[0] || !c->rel_in[L->xi])
        return RP_OK;
    const rp_tensor *x = c->k->in[L->xi], *y = c->k->out[0];
    size_t off = 0;
    rp_tensor xp = rp_rule_scratch(c, &off, x), xn = rp_rule_scratch(c, &off, x), g = rp_rule_scratch(c, &off, x);
    rp_tensor z = rp_rule_scratch(c, &off, y), zp = rp_rule_scratch(c, &off, y), zn = rp_rule_scratch(c, &off, y),
              t = rp_rule_scratch(c, &off, y);
    if ((x->count && (!xp.data || !xn.data || !g.data)) || (y->count && (!z.data || !zp.data || !zn.data || !t.data)))
        return rp_rule_fail(c, RP_ERR_INTERNAL, "gamma rule: scratch too small");
    const float *xv = x->data;
    float *pv = xp.data, *nv = xn.data;
    for (int64_t e = 0; e < x->count; e++) {
        pv[e] = xv[e] > 0 ? xv[e] : 0.0f;
        nv[e] = xv[e] < 0 ? xv[e] : 0.0f;
    }
    rp_tensor *ov[3], *out[1];
    rp_status st;
    /* z = F(x, W), bias-free */
    rp_linear_overrides(L, ov, NULL, NULL);
    out[0] = &z;
    if ((st = rp_rule_forward_with(c, ov, out)))
        return st;
    /* Zp = F(x+, Wu) + F(x-, Wd); Zn = F(x+, Wd) + F(x-, Wu) */
    rp_tensor *zs[2] = {&zp, &zn};
    for (int q = 0; q < 2; q++) {
        rp_linear_overrides(L, ov, &xp, q == 0 ? &s->wu : &s->wd);
        out[0] = zs[q];
        if ((st = rp_rule_forward_with(c, ov, out)))
            return st;
        rp_linear_overrides(L, ov, &xn, q == 0 ? &s->wd : &s->wu);
        out[0] = &t;
        if ((st = rp_rule_forward_with(c, ov, out)))
            return st;
        rp_rule_add_product(zs[q], &t, NULL, 1.0);
    }
    const float *zv = z.data, *r = c->rel_out[0]->data;
    float *spv = zp.data, *snv = zn.data;
    for (int64_t e = 0; e < y->count; e++) {
        bool positive = zv[e] >= 0;
        spv[e] = positive ? (float)rp_sdiv(r[e], spv[e]) : 0.0f;
        snv[e] = positive ? 0.0f : (float)rp_sdiv(r[e], snv[e]);
    }
    /* x+ * (vjp(Wu)(Sp) + vjp(Wd)(Sn)) + x- * (vjp(Wd)(Sp) + vjp(Wu)(Sn)); the
     * kernels' backward adds into g, so two calls sum. */
    rp_tensor *gin[3] = {NULL, NULL, NULL}, *gout[1];
    gin[L->xi] = &g;
    for (int part = 0; part < 2; part++) {
        rp_tensor *xpart = part == 0 ? &xp : &xn;
        rp_rule_fill(&g, 0.0f);
        for (int q = 0; q < 2; q++) {
            bool use_up = (part == 0) == (q == 0);
            rp_linear_overrides(L, ov, xpart, use_up ? &s->wu : &s->wd);
            gout[0] = zs[q];
            if ((st = rp_rule_vjp_with(c, ov, NULL, gout, gin)))
                return st;
        }
        rp_rule_add_product(c->rel_in[L->xi], xpart, &g, 1.0);
    }
    return RP_OK;
}

const rp_rule rp_rule_gamma = {
    .name = "gamma",
    .summary = "gamma rule: contributions with W + gamma W+ (z's sign favoured, sign-aware), bias ignored",
    .params = "gamma",
    .flags = RP_RULE_READS_DECLARED | RP_RULE_READS_INPUTS | RP_RULE_READS_VJP,
    .prepare = gamma_prepare,
    .apply = gamma_apply,
    .free_state = gamma_free,
    .conserves = rp_rule_conserves_always,
};
