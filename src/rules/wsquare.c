/* w^2 rule (Montavon et al. 2017): relevance split in proportion to the
 * squared weights, whatever the input values — for a first layer whose
 * inputs are not bounded. For a linear map with one constant weight W
 * (MatMul, Gemm, Conv, two-operand Einsum), F the node's kernel with the
 * bias replaced by zeros, 1 = all ones:
 *
 *     Z   = F(1, W^2)
 *     R_x = vjp(F at W^2)(sdiv(R, Z))      = sum_j w_ij^2 / sum_i' w_i'j^2 R_j
 *
 * Conserving wherever an output has a non-zero weight. */
#include <stdlib.h>

#include "rules/linear.h"

typedef struct wsquare_state {
    rp_linear L;
    rp_tensor w2; /* owned */
} wsquare_state;

static void wsquare_free(void *p)
{
    wsquare_state *s = p;
    if (!s)
        return;
    rp_linear_release(&s->L);
    free(s->w2.data);
    free(s);
}

static float square(float w, bool swap, double arg)
{
    (void)swap, (void)arg;
    return w * w;
}

static rp_status wsquare_prepare(const rp_rule_node *rn, const rp_rule_params *p, void **state,
                                 size_t *scratch_floats, rp_error *err)
{
    wsquare_state *s = calloc(1, sizeof *s);
    if (!s)
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    rp_status st;
    if ((st = rp_linear_prepare(rn, "w^2", &s->L, err)) ||
        (st = rp_linear_weight(&s->L, rn, &s->w2, square, 0, err))) {
        wsquare_free(s);
        return st;
    }
    *state = s;
    *scratch_floats = rp_linear_fixed_scratch(&s->L, rn);
    return RP_OK;
}

static rp_status wsquare_apply(rp_rule_ctx *c)
{
    wsquare_state *s = c->state;
    return rp_linear_apply_fixed(c, &s->L, &s->w2, "w^2");
}

const rp_rule rp_rule_wsquare = {
    .name = "wsquare",
    .summary = "w^2: relevance split in proportion to the squared weights, inputs ignored, bias ignored",
    .flags = RP_RULE_READS_DECLARED | RP_RULE_READS_INPUTS | RP_RULE_READS_VJP,
    .prepare = wsquare_prepare,
    .apply = wsquare_apply,
    .free_state = wsquare_free,
    .conserves = rp_rule_conserves_always,
};
