#include "rules/relevance.h"

#include <string.h>

#define MAX_IO 64

rp_status rp_relevance_run(rp_graph *g, const rp_assignment *a, int out_value, const rp_tensor *seed,
                           rp_valuebuf *rel, float *scratch, rp_error *err)
{
    const char *path = g->path ? g->path : "model";
    rp_tensor *ry = &rel->t[out_value];
    if (!rel->on_path[out_value] || !ry->data || seed->count != ry->count)
        return rp_fail(err, RP_ERR_ARG, "%s: relevance: output '%s' was not planned", path, g->values[out_value].name);
    memcpy(ry->data, seed->data, (size_t)seed->count * sizeof(float));

    rp_tensor *rout[MAX_IO], *rin[MAX_IO];
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        rp_node *n = &g->nodes[i];
        if (n->folded || a->kind[i] == RP_KIND_IN_REGION || a->kind[i] == RP_KIND_NONE)
            continue;
        if (n->n_in > MAX_IO || n->n_out > MAX_IO)
            return rp_fail(err, RP_ERR_UNSUPPORTED, "%s: node '%s' (%s): more than %d inputs or outputs", path,
                           n->name, n->op_type, MAX_IO);
        bool any_out = false, any_in = false;
        for (int k = 0; k < n->n_out; k++) {
            rout[k] = n->out[k] >= 0 && rel->on_path[n->out[k]] ? &rel->t[n->out[k]] : NULL;
            any_out |= rout[k] != NULL;
        }
        if (!any_out)
            continue;
        if (a->kind[i] == RP_KIND_REGION) {
            /* The region acts as one unary op from its input to its exit. */
            int root = a->region_input[i];
            rin[0] = rel->on_path[root] ? &rel->t[root] : NULL;
            any_in = rin[0] != NULL;
        } else {
            for (int k = 0; k < n->n_in; k++) {
                rin[k] = n->in[k] >= 0 && rel->on_path[n->in[k]] && !(n->op->nondiff_inputs & (1u << k))
                             ? &rel->t[n->in[k]]
                             : NULL;
                any_in |= rin[k] != NULL;
            }
        }
        if (!any_in)
            continue;
        if (!a->rule[i])
            return rp_fail(err, RP_ERR_UNSUPPORTED,
                           "%s: node '%s' (%s, opset %d): no relevance rule fits this node (kind %s), "
                           "but relevance has to flow through it",
                           path, n->name, n->op_type, n->opset, rp_node_kind_name(a->kind[i]));
        rp_kctx k = {.node = n, .opset = n->opset, .in = n->in_t, .n_in = n->n_in,
                     .out = n->out_t, .n_out = n->n_out, .params = n->params, .err = err};
        rp_rule_ctx rc = {.graph = g, .node = n, .k = &k, .rel_out = rout, .rel_in = rin,
                          .params = &a->params[i], .state = a->state[i], .scratch = scratch,
                          .scratch_floats = a->scratch_floats, .err = err};
        if (a->kind[i] == RP_KIND_REGION) {
            /* Identity from the exit back to the region input: present the
             * node to the rule as if its only input were the region's. */
            rp_tensor *root_value = &g->values[a->region_input[i]].t;
            k.in = &root_value;
            k.n_in = 1;
            if (!rp_shape_equal(rin[0], rout[0]))
                return rp_fail(err, RP_ERR_INTERNAL, "%s: region ending at '%s' changes shape", path, n->name);
            const float *src = rout[0]->data;
            float *dst = rin[0]->data;
            for (int64_t e = 0; e < rin[0]->count; e++)
                dst[e] += src[e];
            continue;
        }
        rp_status st = a->rule[i]->apply(&rc);
        if (st)
            return rp_error_prefix(err, "%s: relevance rule '%s' at node '%s' (%s)", path, a->rule[i]->name,
                                   n->name, n->op_type);
    }
    return RP_OK;
}
