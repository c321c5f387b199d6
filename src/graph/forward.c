#include <math.h>
#include <stdint.h>
#include <string.h>

#include "graph/graph.h"
#include "ops/ops.h"

/* Index of the first NaN (or, with inf_too, non-finite) float, or -1. The
 * check runs on every value of every forward pass, so it first scans blocks
 * with integer tests on the exponent bits, which vectorise, and looks for the
 * index only in a block that has one. */
static int64_t first_bad(const rp_tensor *t, bool inf_too)
{
    if (t->dtype != RP_FLOAT || !t->data)
        return -1;
    const uint32_t *bits = t->data;
    const uint32_t limit = inf_too ? 0x7f7fffffu : 0x7f800000u; /* |x| above it: bad */
    const int64_t block = 1024;
    for (int64_t b = 0; b < t->count; b += block) {
        int64_t end = b + block < t->count ? b + block : t->count;
        uint32_t any = 0;
        for (int64_t i = b; i < end; i++)
            any |= (bits[i] & 0x7fffffffu) > limit;
        if (!any)
            continue;
        for (int64_t i = b; i < end; i++)
            if ((bits[i] & 0x7fffffffu) > limit)
                return i;
    }
    return -1;
}

/* Before a product that does the bias Add after it (graph/plan.c): its
 * output, which is the Add's, starts as the bias in every row. */
static void fill_bias_rows(const rp_graph *g, const rp_node *add, int product_out)
{
    const rp_tensor *bias = &g->values[add->in[0] == product_out ? add->in[1] : add->in[0]].t;
    const rp_tensor *y = &g->values[product_out].t;
    size_t row = (size_t)bias->count * rp_dtype_size(bias->dtype);
    for (int64_t r = 0; r < y->count / bias->count; r++)
        memcpy((char *)y->data + (size_t)r * row, bias->data, row);
}

/* Run the non-folded nodes; with `check`, refuse the first non-finite value. */
static rp_status run_nodes(rp_graph *g, bool check, rp_error *err)
{
    const char *path = g->path ? g->path : "model";
    for (int i = 0; i < g->n_nodes; i++) {
        rp_node *n = &g->nodes[i];
        int fused = g->plan_fused ? g->plan_fused[i] : -1;
        if (n->folded || (fused >= 0 && fused < i)) /* a bias Add its product did */
            continue;
        rp_kctx c = {.node = n, .opset = n->opset, .in = n->in_t, .n_in = n->n_in,
                     .out = n->out_t, .n_out = n->n_out, .params = n->params, .err = err};
        if (fused > i) {
            fill_bias_rows(g, &g->nodes[fused], n->out[0]);
            c.accumulate = true;
        }
        rp_status st = n->op->forward(&c);
        if (st)
            return rp_error_prefix(err, "%s", path);
        for (int k = 0; check && k < n->n_out; k++) {
            if (n->out[k] < 0)
                continue;
            const rp_value *o = &g->values[n->out[k]];
            /* -inf is how some exporters mask attention scores; NaN never is. */
            int64_t bad = first_bad(&o->t, o->is_graph_output);
            if (bad >= 0)
                return rp_fail(err, RP_ERR_VALUE,
                               "%s: node '%s' (%s, opset %d) produced %g at element %lld of '%s' from finite inputs "
                               "(the first non-finite value of the forward pass)",
                               path, n->name, n->op_type, n->opset, (double)((const float *)o->t.data)[bad],
                               (long long)bad, o->name);
        }
    }
    return RP_OK;
}

static rp_status forward(rp_graph *g, const rp_tensor *const *inputs, int n_inputs, bool every_value, rp_error *err)
{
    every_value = every_value && g->check_finite;
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
        int64_t bad = g->check_finite ? first_bad(t, true) : -1;
        if (bad >= 0)
            return rp_fail(err, RP_ERR_VALUE, "%s: input '%s' holds %g at element %lld; inputs must be finite", path,
                           v->name, (double)((const float *)t->data)[bad], (long long)bad);
        if (t->count)
            memcpy(v->t.data, t->data, (size_t)t->count * rp_dtype_size(t->dtype));
    }
    rp_status st = run_nodes(g, every_value, err);
    /* Only the outputs were checked; on a bad one, run again checking every
     * value to name the node where it first appeared. */
    for (int k = 0; !st && !every_value && g->check_finite && k < g->n_outputs; k++)
        if (first_bad(&g->values[g->outputs[k]].t, true) >= 0)
            st = run_nodes(g, true, err);
#ifndef NDEBUG
    /* Debug builds (the sanitizer tests): whatever reads a value the memory
     * plan let go of after this pass reads NaN, and the maps show it. */
    if (!st)
        rp_graph_poison_shared(g);
#endif
    return st;
}

rp_status rp_graph_forward(rp_graph *g, const rp_tensor *const *inputs, int n_inputs, rp_error *err)
{
    return forward(g, inputs, n_inputs, false, err);
}

rp_status rp_graph_forward_strict(rp_graph *g, const rp_tensor *const *inputs, int n_inputs, rp_error *err)
{
    return forward(g, inputs, n_inputs, true, err);
}
