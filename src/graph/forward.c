#include <string.h>

#include "graph/graph.h"
#include "ops/ops.h"

rp_status rp_graph_forward(rp_graph *g, const rp_tensor *const *inputs, int n_inputs, rp_error *err)
{
    const char *path = g->path ? g->path : "model";
    if (!g->prepared)
        return rp_fail(err, RP_ERR_ARG, "%s: forward before prepare", path);
    if (n_inputs != g->n_inputs)
        return rp_fail(err, RP_ERR_ARG, "%s: the model takes %d inputs, %d given", path, g->n_inputs, n_inputs);
    for (int i = 0; i < n_inputs; i++) {
        rp_value *v = &g->values[g->inputs[i]];
        if (v->kind == RP_VALUE_CONSTANT)
            continue; /* bound at load time */
        const rp_tensor *t = inputs[i];
        if (!t || t->dtype != v->t.dtype || !rp_shape_equal(t, &v->t)) {
            char want[128], got[128];
            rp_shape_str(&v->t, want, sizeof want);
            if (t)
                rp_shape_str(t, got, sizeof got);
            return rp_fail(err, t && t->dtype != v->t.dtype ? RP_ERR_DTYPE : RP_ERR_SHAPE,
                           "%s: input '%s' expects %s %s, got %s %s", path, v->name, rp_dtype_name(v->t.dtype), want,
                           t ? rp_dtype_name(t->dtype) : "nothing", t ? got : "");
        }
        if (t->count)
            memcpy(v->t.data, t->data, (size_t)t->count * rp_dtype_size(t->dtype));
    }
    for (int i = 0; i < g->n_nodes; i++) {
        rp_node *n = &g->nodes[i];
        if (n->folded)
            continue;
        rp_kctx c = {.node = n, .opset = n->opset, .in = n->in_t, .n_in = n->n_in,
                     .out = n->out_t, .n_out = n->n_out, .params = n->params, .err = err};
        rp_status st = n->op->forward(&c);
        if (st)
            return rp_error_prefix(err, "%s", path);
    }
    return RP_OK;
}
