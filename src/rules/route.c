/* Route rule for data movement (docs/method.md §4.2, "Data movement"): Reshape,
 * Transpose, Flatten, Squeeze, Unsqueeze, Concat, Split, Slice, Gather,
 * Expand, Identity, Dropout, Cast, ReduceSum / ReduceMean.
 *
 *     S_k  = sdiv(R_out[k], z_k)        for every float output k with relevance
 *     R_xi += x_i * vjp_i(S)            for every float input i that wants relevance
 *
 * (the reference implementation's RelPropSimple). Relevance goes back to
 * where each value came from, zero where x == 0; for a pure permutation with
 * no zeros it is R itself, moved. Uses the node's own backward.
 *
 * On a pure move (c->side, rules/rule.h) x_i and z_k are the same number, so
 * the rule reads one side only, whichever the memory plan keeps, in two
 * forms that give the same bits as the one above:
 *     outputs: R_xi += vjp_i(z * S)       inputs: R_xi += x_i * sdiv(vjp_i(R), x_i) */
#include <stdint.h>
#include <string.h>

#include "rules/rule.h"

#define ROUTE_MAX_IO 64

/* Inputs that may be handed a relevance buffer: float and differentiable.
 * Constants count too: with the conservation check on, a constant summand
 * (e.g. the CLS token of a Concat) gets a buffer to report its share. */
static bool wants_in(const rp_graph *g, const rp_node *n, int i)
{
    if (n->in[i] < 0)
        return false;
    if (rp_op_input_nondiff(n->op, i))
        return false;
    return g->values[n->in[i]].t.dtype == RP_FLOAT;
}

static rp_status route_prepare(const rp_rule_node *rn, const rp_rule_params *p, void **state,
                               size_t *scratch_floats, rp_error *err)
{
    const rp_graph *g = rn->graph;
    const rp_node *n = rn->node;
    *state = NULL;
    *scratch_floats = 0;
    if (n->n_in > ROUTE_MAX_IO || n->n_out > ROUTE_MAX_IO)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "node '%s' (%s): route rule: more than %d inputs or outputs", n->name,
                       n->op_type, ROUTE_MAX_IO);
    if (!n->op || !n->op->backward)
        return rp_fail(err, RP_ERR_UNSUPPORTED,
                       "node '%s' (%s, opset %d): the route rule needs the op's gradient, which relprop does not have",
                       n->name, n->op_type, n->opset);
    size_t need = 0;
    for (int k = 0; k < n->n_out; k++)
        if (n->out[k] >= 0 && g->values[n->out[k]].t.dtype == RP_FLOAT)
            need += (size_t)g->values[n->out[k]].t.count;
    for (int i = 0; i < n->n_in; i++)
        if (wants_in(g, n, i))
            need += (size_t)g->values[n->in[i]].t.count;
    *scratch_floats = need;
    return RP_OK;
}

static rp_status no_scratch(rp_rule_ctx *c)
{
    return rp_fail(c->err, RP_ERR_INTERNAL, "node '%s' (%s): route rule: scratch too small", c->node->name,
                   c->node->op_type);
}

static rp_status route_apply(rp_rule_ctx *c)
{
    rp_kctx *k = c->k;
    if (k->n_in > ROUTE_MAX_IO || k->n_out > ROUTE_MAX_IO)
        return rp_fail(c->err, RP_ERR_UNSUPPORTED, "node '%s' (%s): route rule: more than %d inputs or outputs",
                       c->node->name, c->node->op_type, ROUTE_MAX_IO);
    rp_tensor s[ROUTE_MAX_IO], gx[ROUTE_MAX_IO];
    rp_tensor *gout[ROUTE_MAX_IO], *gin[ROUTE_MAX_IO];
    size_t off = 0;
    bool any_out = false, any_in = false;
    for (int o = 0; o < k->n_out; o++) {
        gout[o] = NULL;
        const rp_tensor *r = c->rel_out[o], *z = k->out[o];
        if (!r || !z || z->dtype != RP_FLOAT)
            continue;
        any_out = true;
        if (c->side == RP_READ_INPUTS) { /* the vjp routes R itself */
            gout[o] = c->rel_out[o];
            continue;
        }
        s[o] = rp_rule_scratch(c, &off, z);
        if (!s[o].data && s[o].count)
            return no_scratch(c);
        const float *rv = r->data, *zv = z->data;
        float *sv = s[o].data;
        if (c->side == RP_READ_OUTPUTS)
            for (int64_t e = 0; e < z->count; e++) {
                float share = (float)rp_sdiv(rv[e], zv[e]);
                sv[e] = zv[e] * share;
            }
        else
            for (int64_t e = 0; e < z->count; e++)
                sv[e] = (float)rp_sdiv(rv[e], zv[e]);
        gout[o] = &s[o];
    }
    for (int i = 0; i < k->n_in; i++) {
        gin[i] = NULL;
        const rp_tensor *x = k->in[i];
        if (!c->rel_in[i] || !x || x->dtype != RP_FLOAT || rp_op_input_nondiff(c->node->op, i))
            continue;
        gx[i] = rp_rule_scratch(c, &off, x);
        if (!gx[i].data && gx[i].count)
            return no_scratch(c);
        memset(gx[i].data, 0, sizeof(float) * (size_t)gx[i].count);
        gin[i] = &gx[i];
        any_in = true;
    }
    if (!any_out || !any_in)
        return RP_OK;
    rp_status st = rp_rule_vjp(c, gout, gin);
    if (st)
        return st;
    for (int i = 0; i < k->n_in; i++) {
        if (!gin[i])
            continue;
        const float *xv = k->in[i]->data, *g = gx[i].data;
        float *dst = c->rel_in[i]->data;
        if (c->side == RP_READ_INPUTS)
            for (int64_t e = 0; e < gx[i].count; e++)
                dst[e] += xv[e] * (float)rp_sdiv(g[e], xv[e]);
        else if (c->side == RP_READ_OUTPUTS)
            for (int64_t e = 0; e < gx[i].count; e++)
                dst[e] += g[e];
        else
            for (int64_t e = 0; e < gx[i].count; e++)
                dst[e] += xv[e] * g[e];
    }
    return RP_OK;
}

const rp_rule rp_rule_route = {
    .name = "route",
    .summary = "data movement: R_x = x * vjp(sdiv(R, z)), relevance follows the values",
    .flags = RP_RULE_READS_DECLARED | RP_RULE_READS_INPUTS | RP_RULE_READS_OUTPUTS | RP_RULE_READS_VJP,
    .prepare = route_prepare,
    .apply = route_apply,
    .free_state = NULL,
    .conserves = rp_rule_conserves_always,
};
