/* Flat rule (Lapuschkin et al. 2019): every input connected to an output
 * gets an equal share of its relevance, whatever the values. For a linear
 * map with one constant weight (MatMul, Gemm, Conv, two-operand Einsum), F
 * the node's kernel with the bias replaced by zeros, 1 = all ones:
 *
 *     Z   = F(1, 1)                       (how many inputs feed each output)
 *     R_x = vjp(F at W = 1)(sdiv(R, Z))   = sum_j R_j / n_j over the j fed by x
 *
 * A Conv's padding is not an input: border outputs count fewer. Conserving. */
#include <stdlib.h>

#include "rules/linear.h"

typedef struct flat_state {
    rp_linear L;
    rp_tensor ones; /* weight-shaped, owned */
} flat_state;

static void flat_free(void *p)
{
    flat_state *s = p;
    if (!s)
        return;
    rp_linear_release(&s->L);
    free(s->ones.data);
    free(s);
}

static float one(float w, bool swap, double arg)
{
    (void)w, (void)swap, (void)arg;
    return 1.0f;
}

static rp_status flat_prepare(const rp_rule_node *rn, const rp_rule_params *p, void **state, size_t *scratch_floats,
                              rp_error *err)
{
    flat_state *s = calloc(1, sizeof *s);
    if (!s)
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    rp_status st;
    if ((st = rp_linear_prepare(rn, "flat", &s->L, err)) || (st = rp_linear_weight(&s->L, rn, &s->ones, one, 0, err))) {
        flat_free(s);
        return st;
    }
    *state = s;
    *scratch_floats = rp_linear_fixed_scratch(&s->L, rn);
    return RP_OK;
}

static rp_status flat_apply(rp_rule_ctx *c)
{
    flat_state *s = c->state;
    return rp_linear_apply_fixed(c, &s->L, &s->ones, "flat");
}

const rp_rule rp_rule_flat = {
    .name = "flat",
    .summary = "flat: each output's relevance split equally over the inputs connected to it, bias ignored",
    .flags = RP_RULE_READS_DECLARED | RP_RULE_READS_INPUTS | RP_RULE_READS_VJP,
    .prepare = flat_prepare,
    .apply = flat_apply,
    .free_state = flat_free,
    .conserves = rp_rule_conserves_always,
};
