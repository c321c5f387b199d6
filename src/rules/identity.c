/* Identity rule (docs/method.md §4.1, "Identity rule"): relevance passes unchanged.
 *
 *     R_x += R_out[0]                  (x = the node's activation input)
 *
 * For Softmax, LayerNormalization, Gelu, Relu, Tanh, Sigmoid, Mul/Div by a
 * constant (the attention scale), and decomposed normalisation regions.
 * x is input 0, or — when input 0 is a constant (e.g. `scale * x`) — the
 * first non-constant input; other inputs receive nothing. When x has as many
 * elements as output 0 the relevance is copied element for element (C
 * order); when x was broadcast to the output's shape, R is summed (in double)
 * over the broadcast axes. Only output 0's relevance is used (LayerNorm's
 * optional mean / inv-std outputs carry none). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rules/rule.h"

typedef struct identity_state {
    int target;  /* input index that receives the relevance */
    bool reduce; /* x broadcast to the output: sum over broadcast axes */
} identity_state;

static rp_status identity_prepare(const rp_rule_node *rn, const rp_rule_params *p, void **state,
                                  size_t *scratch_floats, rp_error *err)
{
    const rp_graph *g = rn->graph;
    const rp_node *n = rn->node;
    *state = NULL;
    *scratch_floats = 0;
    int target = -1;
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] >= 0 && g->values[n->in[i]].kind != RP_VALUE_CONSTANT) {
            target = i;
            break;
        }
    if (target < 0)
        return rp_fail(err, RP_ERR_UNSUPPORTED,
                       "node '%s' (%s): identity rule: the node has no activation input to pass relevance to",
                       n->name, n->op_type);
    if (n->n_out < 1 || n->out[0] < 0)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "node '%s' (%s): identity rule: the node has no output 0", n->name,
                       n->op_type);
    const rp_tensor *x = &g->values[n->in[target]].t, *y = &g->values[n->out[0]].t;
    if (x->dtype != RP_FLOAT || y->dtype != RP_FLOAT)
        return rp_fail(err, RP_ERR_UNSUPPORTED,
                       "node '%s' (%s): identity rule: input %d and output 0 must be float32 (they are %s and %s)",
                       n->name, n->op_type, target, rp_dtype_name(x->dtype), rp_dtype_name(y->dtype));
    bool reduce = false;
    if (x->count != y->count) {
        bool ok = x->rank <= y->rank && x->count < y->count;
        for (int d = 0; ok && d < x->rank; d++) {
            int64_t xd = x->dims[d], yd = y->dims[y->rank - x->rank + d];
            ok = xd == yd || xd == 1;
        }
        if (!ok) {
            char a[96], b[96];
            return rp_fail(err, RP_ERR_UNSUPPORTED,
                           "node '%s' (%s): identity rule: input %d %s is neither the size of output 0 %s nor "
                           "broadcast to it",
                           n->name, n->op_type, target, rp_shape_str(x, a, sizeof a), rp_shape_str(y, b, sizeof b));
        }
        reduce = true;
    }
    identity_state *s = malloc(sizeof *s);
    if (!s)
        return rp_fail(err, RP_ERR_NOMEM, "node '%s': out of memory", n->name);
    s->target = target;
    s->reduce = reduce;
    *state = s;
    return RP_OK;
}

static rp_status identity_apply(rp_rule_ctx *c)
{
    const identity_state *s = c->state;
    if (!s)
        return rp_fail(c->err, RP_ERR_INTERNAL, "node '%s' (%s): identity rule applied without prepare",
                       c->node->name, c->node->op_type);
    const rp_tensor *r = c->rel_out[0];
    rp_tensor *dst = c->rel_in[s->target];
    if (!r || !dst)
        return RP_OK;
    const float *rv = r->data;
    float *dv = dst->data;
    if (!s->reduce) {
        if (dst->count != r->count)
            return rp_fail(c->err, RP_ERR_INTERNAL, "node '%s' (%s): identity rule: relevance sizes %lld and %lld",
                           c->node->name, c->node->op_type, (long long)dst->count, (long long)r->count);
        for (int64_t i = 0; i < r->count; i++)
            dv[i] += rv[i];
        return RP_OK;
    }
    return rp_rule_add_reduced(c, dst, r);
}

const rp_rule rp_rule_identity = {
    .name = "identity",
    .summary = "relevance passes unchanged to the activation input (summed over broadcast axes)",
    .flags = RP_RULE_READS_DECLARED,
    .prepare = identity_prepare,
    .apply = identity_apply,
    .free_state = free,
    .conserves = rp_rule_conserves_always,
};
