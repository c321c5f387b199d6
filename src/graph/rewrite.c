/* Rewrites of a prepared graph: patterns that exporters spell out op by op
 * but one kernel does in one pass over memory.
 *
 * Exact GELU. torch.onnx exports nn.GELU() below opset 20 as
 *     d = Div(x, sqrt 2)   e = Erf(d)   a = Add(e, 1)   m = Mul(x, a)   y = Mul(m, 0.5)
 * five passes over the MLP's widest tensor and four intermediates kept for
 * the backward walk. The last node becomes one Gelu (opset 20 kernel,
 * approximate = none) reading x; the other four are marked folded and
 * disconnected. Their relevance was an identity over the region they formed,
 * which is what every rule set gives the unary Gelu, and the gradient is the
 * same function's derivative. Each intermediate must feed only the next node,
 * so nothing else can see the difference. */
#include "graph/rewrite.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

static bool is_op(const rp_node *n, const char *op)
{
    return !n->folded && n->op && strcmp(n->op_type, op) == 0 && (n->domain[0] == 0 || !strcmp(n->domain, "ai.onnx"));
}

/* A float scalar constant (any rank, one element) within 1e-6 of want. */
static bool is_scalar(const rp_graph *g, int v, double want)
{
    if (v < 0)
        return false;
    const rp_value *x = &g->values[v];
    return x->kind == RP_VALUE_CONSTANT && x->t.dtype == RP_FLOAT && x->t.count == 1 && x->t.data &&
           fabs((double)*(const float *)x->t.data - want) <= 1e-6 * fabs(want);
}

/* The single consumer of v, or -1 if none, several, or v is a graph output. */
static int sole_consumer(const rp_graph *g, const int *n_consumers, const int *consumer, int v)
{
    if (v < 0 || g->values[v].is_graph_output || n_consumers[v] != 1)
        return -1;
    return consumer[v];
}

/* For a two-input node whose operand `known` is one input, the other one. */
static int other_input(const rp_node *n, int known)
{
    if (n->n_in != 2)
        return -1;
    return n->in[0] == known ? n->in[1] : n->in[1] == known ? n->in[0] : -1;
}

static void drop_node(rp_graph *g, rp_node *n)
{
    n->folded = true;
    for (int k = 0; k < n->n_out; k++) {
        int v = n->out[k];
        if (v < 0)
            continue;
        rp_value *val = &g->values[v];
        if (val->t.data && !val->borrowed) {
            g->used_bytes -= val->t.count * (int64_t)rp_dtype_size(val->t.dtype);
            free(val->t.data);
            val->t.data = NULL;
        }
        val->producer = -1;
        n->out[k] = -1;
        n->out_t[k] = NULL;
    }
    for (int k = 0; k < n->n_in; k++) {
        n->in[k] = -1;
        n->in_t[k] = NULL;
    }
}

static rp_status fuse_gelu(rp_graph *g, int div_node, const int *n_consumers, const int *consumer, bool *fused,
                           rp_error *err)
{
    *fused = false;
    rp_node *d = &g->nodes[div_node];
    if (!is_op(d, "Div") || d->n_in != 2 || !is_scalar(g, d->in[1], 1.4142135623730951))
        return RP_OK;
    int x = d->in[0];
    if (x < 0 || g->values[x].t.dtype != RP_FLOAT || g->values[x].kind == RP_VALUE_CONSTANT)
        return RP_OK;
    int ie = sole_consumer(g, n_consumers, consumer, d->out[0]);
    if (ie < 0 || !is_op(&g->nodes[ie], "Erf"))
        return RP_OK;
    rp_node *e = &g->nodes[ie];
    int ia = sole_consumer(g, n_consumers, consumer, e->out[0]);
    if (ia < 0 || !is_op(&g->nodes[ia], "Add") || !is_scalar(g, other_input(&g->nodes[ia], e->out[0]), 1.0))
        return RP_OK;
    rp_node *a = &g->nodes[ia];
    int im = sole_consumer(g, n_consumers, consumer, a->out[0]);
    if (im < 0 || !is_op(&g->nodes[im], "Mul") || other_input(&g->nodes[im], a->out[0]) != x)
        return RP_OK;
    rp_node *m = &g->nodes[im];
    int iy = sole_consumer(g, n_consumers, consumer, m->out[0]);
    if (iy < 0 || !is_op(&g->nodes[iy], "Mul") || !is_scalar(g, other_input(&g->nodes[iy], m->out[0]), 0.5))
        return RP_OK;
    rp_node *y = &g->nodes[iy];
    if (y->n_out != 1 || y->out[0] < 0 || !rp_shape_equal(&g->values[y->out[0]].t, &g->values[x].t))
        return RP_OK;
    const rp_op *gelu = rp_op_lookup("Gelu", 20);
    char *op_type = malloc(sizeof "Gelu");
    if (!gelu || !op_type) {
        free(op_type);
        return gelu ? rp_fail(err, RP_ERR_NOMEM, "out of memory") : RP_OK;
    }
    memcpy(op_type, "Gelu", sizeof "Gelu");
    /* The Mul's second input slot is dropped: n_in 1 keeps the arrays valid. */
    free(y->op_type);
    y->op_type = op_type;
    y->op = gelu;
    y->n_in = 1;
    y->in[0] = x;
    y->in_t[0] = &g->values[x].t;
    free(y->params);
    y->params = NULL;
    rp_kctx c = {.node = y, .opset = 20, .in = y->in_t, .n_in = 1, .out = y->out_t, .n_out = 1, .err = err};
    rp_status st = gelu->prepare(&c);
    y->params = c.params;
    if (st)
        return rp_error_prefix(err, "%s: fusing the GELU ending at '%s'", g->path ? g->path : "model", y->name);
    drop_node(g, d);
    drop_node(g, e);
    drop_node(g, a);
    drop_node(g, m);
    *fused = true;
    return RP_OK;
}

rp_status rp_graph_fuse(rp_graph *g, int *n_fused, rp_error *err)
{
    *n_fused = 0;
    int *n_consumers = calloc((size_t)g->n_values + 1, sizeof *n_consumers);
    int *consumer = calloc((size_t)g->n_values + 1, sizeof *consumer);
    if (!n_consumers || !consumer) {
        free(n_consumers);
        free(consumer);
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const rp_node *n = &g->nodes[i];
        if (n->folded)
            continue;
        for (int k = 0; k < n->n_in; k++) {
            int v = n->in[k];
            bool repeat = false; /* x * x counts once */
            for (int q = 0; q < k; q++)
                repeat |= n->in[q] == v;
            if (v >= 0 && !repeat) {
                n_consumers[v]++;
                consumer[v] = i;
            }
        }
    }
    rp_status st = RP_OK;
    for (int i = 0; i < g->n_nodes && !st; i++) {
        bool fused;
        st = fuse_gelu(g, i, n_consumers, consumer, &fused, err);
        *n_fused += fused;
    }
    free(n_consumers);
    free(consumer);
    /* A fusion rewires the last node to x and disconnects the others. */
    if (!st && *n_fused)
        st = rp_graph_index_consumers(g, err);
    return st;
}
