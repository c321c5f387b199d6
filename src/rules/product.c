/* Halved product rule for a bilinear op of two activations (docs/method.md §4.6,
 * "Product of two activations"): MatMul / two-operand Einsum / Mul Z = U V,
 * e.g. Q K^T and A V in attention.
 *
 *     S    = sdiv(R, Z)                 (Z = the node's own output, before any scaling)
 *     R_U += U * vjp_U(S) / 2
 *     R_V += V * vjp_V(S) / 2
 *
 * For MatMul that is R_U = U * (S V^T) / 2, R_V = V * (U^T S) / 2. Both
 * operands must be activations: a product with a constant is a linear map
 * (alpha_beta) or a scale (identity).
 *
 * Z is recomputed from U and V (which the rule reads anyway) with the node's
 * own kernel, bit for bit the forward's: keeping every layer's attention
 * scores until the relevance walk reaches them cost more memory (DeiT-base:
 * 29 MB) than one more small product per layer costs time. */
#include <stdint.h>
#include <string.h>

#include "rules/rule.h"

static rp_status product_prepare(const rp_rule_node *rn, const rp_rule_params *p, void **state,
                                 size_t *scratch_floats, rp_error *err)
{
    const rp_graph *g = rn->graph;
    const rp_node *n = rn->node;
    *state = NULL;
    *scratch_floats = 0;
    const char *op = n->op_type;
    if (strcmp(op, "MatMul") != 0 && strcmp(op, "Einsum") != 0 && strcmp(op, "Mul") != 0)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "node '%s' (%s): the product rule applies to MatMul, Einsum and Mul",
                       n->name, op);
    if (n->n_in != 2 || n->in[0] < 0 || n->in[1] < 0 || n->n_out < 1 || n->out[0] < 0)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "node '%s' (%s): the product rule needs exactly two operands",
                       n->name, op);
    for (int i = 0; i < 2; i++)
        if (g->values[n->in[i]].kind == RP_VALUE_CONSTANT)
            return rp_fail(err, RP_ERR_UNSUPPORTED,
                           "node '%s' (%s): the product rule needs two activation operands, but input %d ('%s') is "
                           "a constant",
                           n->name, op, i, g->values[n->in[i]].name ? g->values[n->in[i]].name : "?");
    if (!n->op || !n->op->backward)
        return rp_fail(err, RP_ERR_UNSUPPORTED,
                       "node '%s' (%s, opset %d): the product rule needs the op's gradient, which relprop does not "
                       "have",
                       n->name, op, n->opset);
    const rp_tensor *u = &g->values[n->in[0]].t, *v = &g->values[n->in[1]].t, *y = &g->values[n->out[0]].t;
    if (u->dtype != RP_FLOAT || v->dtype != RP_FLOAT || y->dtype != RP_FLOAT)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "node '%s' (%s): the product rule needs float32 operands", n->name,
                       op);
    *scratch_floats = (size_t)y->count + (size_t)u->count + (size_t)v->count;
    return RP_OK;
}

static rp_status product_apply(rp_rule_ctx *c)
{
    const rp_tensor *r = c->rel_out[0];
    if (!r || (!c->rel_in[0] && !c->rel_in[1]))
        return RP_OK;
    rp_kctx *k = c->k;
    const rp_tensor *z = k->out[0];
    size_t off = 0;
    rp_tensor s = rp_rule_scratch(c, &off, z);
    rp_tensor gx[2] = {rp_rule_scratch(c, &off, k->in[0]), rp_rule_scratch(c, &off, k->in[1])};
    if ((!s.data && s.count) || (!gx[0].data && gx[0].count) || (!gx[1].data && gx[1].count))
        return rp_fail(c->err, RP_ERR_INTERNAL, "node '%s' (%s): product rule: scratch too small", c->node->name,
                       c->node->op_type);
    rp_tensor *recomputed[1] = {&s};
    rp_status st = rp_rule_forward_with(c, NULL, recomputed);
    if (st)
        return st;
    const float *rv = r->data;
    float *sv = s.data;
    for (int64_t e = 0; e < z->count; e++)
        sv[e] = (float)rp_sdiv(rv[e], sv[e]);
    rp_tensor *gout[1] = {&s}, *gin[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++)
        if (c->rel_in[i]) {
            memset(gx[i].data, 0, sizeof(float) * (size_t)gx[i].count);
            gin[i] = &gx[i];
        }
    if ((st = rp_rule_vjp(c, gout, gin)))
        return st;
    for (int i = 0; i < 2; i++) {
        if (!gin[i])
            continue;
        const float *x = k->in[i]->data, *g = gx[i].data;
        float *dst = c->rel_in[i]->data;
        for (int64_t e = 0; e < gx[i].count; e++)
            dst[e] += x[e] * g[e] / 2;
    }
    return RP_OK;
}

const rp_rule rp_rule_product = {
    .name = "product",
    .summary = "product of two activations: each operand gets x * vjp(sdiv(R, Z)) / 2",
    .flags = RP_RULE_READS_DECLARED | RP_RULE_READS_INPUTS | RP_RULE_READS_VJP,
    .prepare = product_prepare,
    .apply = product_apply,
    .free_state = NULL,
    .conserves = rp_rule_conserves_always,
};
