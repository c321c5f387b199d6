/* Epsilon rule (LRP-epsilon, Bach et al. 2015), for any node relprop can
 * differentiate: linear maps (the bias included in z, as zennit and LXT do),
 * the bias Add of a linear map, sums, data movement. With z_k the node's own
 * output k (forward value) and eps the parameter "epsilon" (default 1e-6):
 *
 *     S_k   = R_k / (z_k + eps * sign(z_k))      sign(0) = +1; 0 where the
 *                                                  denominator is 0 (eps = 0)
 *     R_xi += x_i * vjp_i(S)                      for every input i that
 *                                                  receives relevance
 *
 * For y = x W + b this is R_x = x * ((R / (y + eps sign y)) W^T): the bias
 * and eps absorb relevance, so the rule does not conserve exactly; it does
 * as eps -> 0 when there is no bias. AttnLRP uses it for linear maps and for
 * the Add of two activations (its Eq. 8). With eps = 0 it is LRP-0 (and
 * gradient x input for a linear map without bias). */
#include <stdint.h>
#include <string.h>

#include "rules/rule.h"

#define EPS_MAX_IO 64

static bool may_get(const rp_graph *g, const rp_node *n, int i)
{
    if (n->in[i] < 0 || rp_op_input_nondiff(n->op, i))
        return false;
    return g->values[n->in[i]].t.dtype == RP_FLOAT;
}

static rp_status eps_prepare(const rp_rule_node *rn, const rp_rule_params *p, void **state, size_t *scratch_floats,
                             rp_error *err)
{
    const rp_graph *g = rn->graph;
    const rp_node *n = rn->node;
    double eps = rp_rule_param(p, "epsilon", 1e-6);
    if (!(eps >= 0))
        return rp_fail(err, RP_ERR_VALUE, "node '%s' (%s): epsilon rule: epsilon %g must be >= 0", n->name, n->op_type,
                       eps);
    if (!rp_rule_node_has_gradient(rn))
        return rp_fail(err, RP_ERR_UNSUPPORTED,
                       "node '%s' (%s, opset %d): the epsilon rule needs the op's gradient, which relprop does not "
                       "have%s",
                       n->name, n->op_type, n->opset, rn->region ? " (the node ends a decomposed region)" : "");
    if (n->n_in > EPS_MAX_IO || n->n_out > EPS_MAX_IO)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "node '%s' (%s): epsilon rule: more than %d inputs or outputs",
                       n->name, n->op_type, EPS_MAX_IO);
    size_t need = 0;
    for (int k = 0; k < n->n_out; k++)
        if (n->out[k] >= 0 && g->values[n->out[k]].t.dtype == RP_FLOAT)
            need += (size_t)g->values[n->out[k]].t.count;
    for (int i = 0; i < n->n_in; i++)
        if (may_get(g, n, i))
            need += (size_t)g->values[n->in[i]].t.count;
    *scratch_floats = need;
    return RP_OK;
}

static rp_status eps_apply(rp_rule_ctx *c)
{
    rp_kctx *k = c->k;
    double eps = rp_rule_param(c->params, "epsilon", 1e-6);
    rp_tensor s[EPS_MAX_IO], gx[EPS_MAX_IO];
    rp_tensor *gout[EPS_MAX_IO], *gin[EPS_MAX_IO];
    size_t off = 0;
    bool any_out = false, any_in = false;
    for (int o = 0; o < k->n_out; o++) {
        gout[o] = NULL;
        const rp_tensor *r = c->rel_out[o], *z = k->out[o];
        if (!r || !z || z->dtype != RP_FLOAT)
            continue;
        s[o] = rp_rule_scratch(c, &off, z);
        if (!s[o].data && s[o].count)
            return rp_rule_fail(c, RP_ERR_INTERNAL, "epsilon rule: scratch too small");
        rp_rule_stabilized_div(&s[o], r, z, eps);
        gout[o] = &s[o];
        any_out = true;
    }
    for (int i = 0; i < k->n_in; i++) {
        gin[i] = NULL;
        if (!c->rel_in[i] || !k->in[i] || k->in[i]->dtype != RP_FLOAT)
            continue;
        gx[i] = rp_rule_scratch(c, &off, k->in[i]);
        if (!gx[i].data && gx[i].count)
            return rp_rule_fail(c, RP_ERR_INTERNAL, "epsilon rule: scratch too small");
        rp_rule_fill(&gx[i], 0.0f);
        gin[i] = &gx[i];
        any_in = true;
    }
    if (!any_out || !any_in)
        return RP_OK;
    rp_status st = rp_rule_vjp(c, gout, gin);
    if (st)
        return st;
    for (int i = 0; i < k->n_in; i++)
        if (gin[i])
            rp_rule_add_product(c->rel_in[i], k->in[i], gin[i], 1.0);
    return RP_OK;
}

const rp_rule rp_rule_epsilon = {
    .name = "epsilon",
    .summary = "LRP-epsilon for any differentiable node: x * vjp(R / (z + eps sign z)), z with bias (eps 1e-6)",
    .params = "epsilon",
    .flags = RP_RULE_READS_DECLARED | RP_RULE_READS_INPUTS | RP_RULE_READS_OUTPUTS | RP_RULE_READS_VJP,
    .prepare = eps_prepare,
    .apply = eps_apply,
    .free_state = NULL,
    .conserves = NULL, /* eps and the bias absorb relevance by design */
};
