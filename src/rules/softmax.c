/* AttnLRP softmax rule (Achtibat et al., ICML 2024, Proposition 3.1): a
 * first-order Taylor decomposition of s = softmax(x) at x itself. Over each
 * softmax row (the `axis` of opset >= 13, default -1; before opset 13 the
 * flattened block of all axes from `axis`, default 1):
 *
 *     R_x,i += x_i * (R_i - s_i * sum_j R_j)
 *
 * which is x * vjp(R / s). An input of -inf (a masked score) counts as 0,
 * as LXT does. On a decomposed region that ends in a Softmax (an exporter's
 * `scale * x` or mask folded in front of it) x is the Softmax's own input and
 * the result passes through the rest of the region unchanged — the identity
 * rule LXT gives a scaling. The decomposition has a bias term, so the row's relevance is
 * not conserved: sum_i R_x,i = sum_i x_i R_i - (sum_i x_i s_i) sum_j R_j,
 * i.e. sum_j R_j minus the bias share sum_j (1 - x_j + x.s) R_j. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rules/rule.h"

typedef struct softmax_state {
    int64_t outer, len, inner; /* rows: outer x inner rows of len elements, stride inner */
    bool region;               /* x is the region's last node's input, not the node's input 0 */
} softmax_state;

static rp_status softmax_prepare(const rp_rule_node *rn, const rp_rule_params *p, void **state,
                                 size_t *scratch_floats, rp_error *err)
{
    /* For a region, the Softmax that ends it. */
    const rp_node *n = rn->region ? rn->exit : rn->node;
    if (!n || strcmp(n->op_type, "Softmax") != 0)
        return rp_fail(err, RP_ERR_UNSUPPORTED,
                       "node '%s' (%s): the softmax rule applies to Softmax nodes (and regions ending in one)",
                       rn->node->name, rn->node->op_type);
    const rp_tensor *x = n->n_in > 0 && n->in[0] >= 0 ? &rn->graph->values[n->in[0]].t : NULL;
    const rp_tensor *y = rp_rule_node_output(rn, 0), *root = rp_rule_node_input(rn, 0);
    if (!x || !y || !root || x->dtype != RP_FLOAT || !rp_shape_equal(x, y) || root->count != y->count)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "node '%s' (%s): the softmax rule needs a float32 input", n->name,
                       n->op_type);
    bool legacy = n->opset < 13;
    int64_t axis = rp_attr_int(n, "axis", legacy ? 1 : -1);
    if (axis < 0)
        axis += x->rank;
    if (x->rank == 0 || axis < 0 || axis >= x->rank)
        return rp_fail(err, RP_ERR_VALUE, "node '%s' (%s): softmax rule: axis %lld out of range for rank %d", n->name,
                       n->op_type, (long long)rp_attr_int(n, "axis", legacy ? 1 : -1), x->rank);
    softmax_state *s = malloc(sizeof *s);
    if (!s)
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    s->region = rn->region;
    s->outer = 1;
    for (int a = 0; a < axis; a++)
        s->outer *= x->dims[a];
    s->len = x->dims[axis];
    s->inner = 1;
    for (int a = (int)axis + 1; a < x->rank; a++)
        s->inner *= x->dims[a];
    if (legacy) {
        /* The 2-D coercion of opset < 13: one row per outer index. */
        s->len *= s->inner;
        s->inner = 1;
    }
    *state = s;
    return RP_OK;
}

static rp_status softmax_apply(rp_rule_ctx *c)
{
    const softmax_state *s = c->state;
    const rp_tensor *r = c->rel_out[0];
    rp_tensor *dst = c->rel_in[0];
    if (!r || !dst)
        return RP_OK;
    const float *x = (s->region ? c->view->exit->in_t[0] : c->k->in[0])->data;
    const float *sv = c->k->out[0]->data, *rv = r->data;
    float *d = dst->data;
    for (int64_t o = 0; o < s->outer; o++)
        for (int64_t in = 0; in < s->inner; in++) {
            int64_t base = o * s->len * s->inner + in;
            double total = 0;
            for (int64_t j = 0; j < s->len; j++)
                total += rv[base + j * s->inner];
            for (int64_t j = 0; j < s->len; j++) {
                int64_t e = base + j * s->inner;
                double xi = isinf(x[e]) && x[e] < 0 ? 0.0 : x[e];
                d[e] = (float)(d[e] + xi * (rv[e] - (double)sv[e] * total));
            }
        }
    return RP_OK;
}

const rp_rule rp_rule_softmax = {
    .name = "softmax",
    .summary = "AttnLRP softmax rule: R_x = x * (R - s * sum(R)) over each softmax row (Taylor at x, with bias)",
    .flags = RP_RULE_READS_DECLARED | RP_RULE_READS_INPUTS | RP_RULE_READS_OUTPUTS,
    .prepare = softmax_prepare,
    .apply = softmax_apply,
    .free_state = free,
    .conserves = NULL, /* the Taylor expansion's bias keeps a share */
};
