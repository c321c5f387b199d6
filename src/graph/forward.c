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

/* What product i does besides A·B (graph/plan.c): its in[] with B read
 * through the fused Transpose, and its output prefilled with a fused bias. */
static void prepare_fused(const rp_graph *g, int i, rp_kctx *c, rp_tensor **ins, rp_product_fusion *pf)
{
    const rp_fusion *f = &g->plan_fusion[i];
    const rp_node *n = &g->nodes[i];
    *pf = (rp_product_fusion){.scale = 1.0};
    if (f->b_transpose >= 0) {
        ins[0] = n->in_t[0];
        ins[1] = g->nodes[f->b_transpose].in_t[0];
        c->in = ins;
        pf->b_transposed = true;
    }
    if (f->epilogue >= 0) {
        const rp_node *e = &g->nodes[f->epilogue];
        const rp_tensor *operand = &g->values[e->in[0] == n->out[0] ? e->in[1] : e->in[0]].t;
        if (rp_op_role_of(e->op) == RP_ROLE_PRODUCT) {
            pf->scale = rp_tensor_get_f64(operand, 0);
        } else {
            /* The product's output (the Add's) starts as the bias in every row. */
            const rp_tensor *y = &g->values[n->out[0]].t;
            size_t row = (size_t)operand->count * rp_dtype_size(operand->dtype);
            for (int64_t r = 0; r < y->count / operand->count; r++)
                memcpy((char *)y->data + (size_t)r * row, operand->data, row);
            pf->accumulate = true;
        }
    }
    c->fusion = pf;
}

/* Run the non-folded nodes; with `check`, refuse the first non-finite value. */
static rp_status run_nodes(rp_graph *g, bool check, rp_error *err)
{
    const char *path = g->path ? g->path : "model";
    for (int i = 0; i < g->n_nodes; i++) {
        rp_node *n = &g->nodes[i];
        if (n->folded || (g->plan_fusion && g->plan_fusion[i].done_by >= 0))
            continue;
        rp_kctx c = {.node = n, .opset = n->opset, .in = n->in_t, .n_in = n->n_in,
                     .out = n->out_t, .n_out = n->n_out, .params = n->params, .err = err};
        rp_tensor *fused_in[2];
        rp_product_fusion pf;
        if (g->plan_fusion && (g->plan_fusion[i].epilogue >= 0 || g->plan_fusion[i].b_transpose >= 0))
            prepare_fused(g, i, &c, fused_in, &pf);
        rp_status st = n->op->forward(&c);
        if (st)
            return rp_error_prefix(err, "%s", path);
        /* A product that did the Mul or Add after it computed that node's
         * output (a graph output, maybe): check and name that one. */
        const rp_node *made = n;
        if (g->plan_fusion && g->plan_fusion[i].epilogue >= 0)
            made = &g->nodes[g->plan_fusion[i].epilogue];
        for (int k = 0; check && k < made->n_out; k++) {
            if (made->out[k] < 0)
                continue;
            const rp_value *o = &g->values[made->out[k]];
            /* -inf is how some exporters mask attention scores; NaN never is. */
            int64_t bad = first_bad(&o->t, o->is_graph_output);
            if (bad >= 0)
                return rp_fail(err, RP_ERR_VALUE,
                               "%s: node '%s' (%s, opset %d) produced %g at element %lld of '%s' from finite inputs "
                               "(the first non-finite value of the forward pass)",
                               path, made->name, made->op_type, made->opset, (double)((const float *)o->t.data)[bad],
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
