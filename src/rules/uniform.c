/* Uniform rule for the product of two activations (AttnLRP, Achtibat et al.
 * ICML 2024, Propositions 3.2 and 3.3): a product gives each operand half of
 * the relevance, instead of gradient x input (which counts it twice).
 *
 *   Mul (elementwise, broadcasting):
 *     R_u += R / 2, R_v += R / 2          (each summed over its broadcast axes)
 *   MatMul / two-operand Einsum Z = U V (a sum of elementwise products: the
 *   epsilon rule over the sum, then the uniform rule on each product):
 *     S    = (R / 2) / (Z + eps * sign(Z))   eps = parameter "epsilon", 1e-6
 *     R_U += U * vjp_U(S),  R_V += V * vjp_V(S)
 *
 * The paper's product rule (product.c) is the MatMul form with sdiv; for Mul
 * the two differ only where Z = 0. Conserving (up to eps). */
#include <stdlib.h>
#include <string.h>

#include "rules/rule.h"

typedef struct uniform_state {
    bool elementwise; /* Mul */
} uniform_state;

static rp_status uniform_prepare(const rp_rule_node *rn, const rp_rule_params *p, void **state,
                                 size_t *scratch_floats, rp_error *err)
{
    const rp_graph *g = rn->graph;
    const rp_node *n = rn->node;
    const char *op = n->op_type;
    bool mul = strcmp(op, "Mul") == 0;
    if (rn->region || (!mul && strcmp(op, "MatMul") != 0 && strcmp(op, "Einsum") != 0))
        return rp_fail(err, RP_ERR_UNSUPPORTED, "node '%s' (%s): the uniform rule applies to Mul, MatMul and Einsum",
                       n->name, op);
    if (n->n_in != 2 || n->in[0] < 0 || n->in[1] < 0 || n->n_out != 1 || n->out[0] < 0)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "node '%s' (%s): the uniform rule needs exactly two operands", n->name,
                       op);
    for (int i = 0; i < 2; i++)
        if (g->values[n->in[i]].kind == RP_VALUE_CONSTANT)
            return rp_fail(err, RP_ERR_UNSUPPORTED,
                           "node '%s' (%s): the uniform rule needs two activation operands, but input %d is a "
                           "constant (a product with a constant is a linear map or a scale)",
                           n->name, op, i);
    const rp_tensor *u = &g->values[n->in[0]].t, *v = &g->values[n->in[1]].t, *y = &g->values[n->out[0]].t;
    if (u->dtype != RP_FLOAT || v->dtype != RP_FLOAT || y->dtype != RP_FLOAT)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "node '%s' (%s): the uniform rule needs float32 operands", n->name, op);
    if (!mul && (!n->op || !n->op->backward))
        return rp_fail(err, RP_ERR_UNSUPPORTED,
                       "node '%s' (%s, opset %d): the uniform rule needs the op's gradient, which relprop does not have",
                       n->name, op, n->opset);
    double eps = rp_rule_param(p, "epsilon", 1e-6);
    if (!(eps >= 0))
        return rp_fail(err, RP_ERR_VALUE, "node '%s' (%s): uniform rule: epsilon %g must be >= 0", n->name, op, eps);
    uniform_state *s = malloc(sizeof *s);
    if (!s)
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    s->elementwise = mul;
    *state = s;
    *scratch_floats = mul ? (size_t)y->count : (size_t)y->count + (size_t)u->count + (size_t)v->count;
    return RP_OK;
}

static rp_status uniform_apply(rp_rule_ctx *c)
{
    const uniform_state *s = c->state;
    const rp_tensor *r = c->rel_out[0];
    if (!r || (!c->rel_in[0] && !c->rel_in[1]))
        return RP_OK;
    rp_kctx *k = c->k;
    size_t off = 0;
    rp_tensor half = rp_rule_scratch(c, &off, k->out[0]);
    if (!half.data && half.count)
        return rp_rule_fail(c, RP_ERR_INTERNAL, "uniform rule: scratch too small");
    const float *rv = r->data;
    float *hv = half.data;
    if (s->elementwise) {
        for (int64_t e = 0; e < half.count; e++)
            hv[e] = rv[e] / 2;
        rp_status st;
        for (int i = 0; i < 2; i++)
            if (c->rel_in[i] && (st = rp_rule_add_reduced(c, c->rel_in[i], &half)))
                return st;
        return RP_OK;
    }
    double eps = rp_rule_param(c->params, "epsilon", 1e-6);
    const float *zv = k->out[0]->data;
    for (int64_t e = 0; e < half.count; e++)
        hv[e] = (float)rp_stabilized_div(rv[e] / 2.0, zv[e], eps);
    rp_tensor gx[2] = {rp_rule_scratch(c, &off, k->in[0]), rp_rule_scratch(c, &off, k->in[1])};
    if ((!gx[0].data && gx[0].count) || (!gx[1].data && gx[1].count))
        return rp_rule_fail(c, RP_ERR_INTERNAL, "uniform rule: scratch too small");
    rp_tensor *gout[1] = {&half}, *gin[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++)
        if (c->rel_in[i]) {
            rp_rule_fill(&gx[i], 0.0f);
            gin[i] = &gx[i];
        }
    rp_status st = rp_rule_vjp(c, gout, gin);
    if (st)
        return st;
    for (int i = 0; i < 2; i++)
        if (gin[i])
            rp_rule_add_product(c->rel_in[i], k->in[i], gin[i], 1.0);
    return RP_OK;
}

const rp_rule rp_rule_uniform = {
    .name = "uniform",
    .summary = "AttnLRP uniform rule for products of activations: each operand gets half (Mul: R/2 each)",
    .params = "epsilon",
    .flags = RP_RULE_READS_DECLARED | RP_RULE_READS_INPUTS | RP_RULE_READS_OUTPUTS | RP_RULE_READS_VJP,
    .prepare = uniform_prepare,
    .apply = uniform_apply,
    .free_state = free,
    .conserves = rp_rule_conserves_always,
};
