/* Prepare: kernels, static shapes, constant folding, buffers.
 *
 * Everything a run needs is decided here once, so forward is a plain loop
 * over kernels. Folding runs each node whose inputs are all known at load
 * time (the Shape → Gather → Concat → Reshape chains exporters emit, Constant
 * nodes, weight transposes), leaving only tensor work for run time. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"
#include "ops/ops.h"

static bool is_default_domain(const char *d)
{
    return d[0] == 0 || strcmp(d, "ai.onnx") == 0;
}

/* The count of inputs a node really passes: trailing omitted optionals do not count. */
static int present_count(const int *ids, int n)
{
    while (n > 0 && ids[n - 1] < 0)
        n--;
    return n;
}

static rp_status node_fail(const rp_graph *g, const rp_node *n, rp_error *err, rp_status code, const char *what)
{
    return rp_fail(err, code, "%s: node '%s' (%s%s%s, opset %d): %s", g->path ? g->path : "model", n->name,
                   n->domain[0] ? n->domain : "", n->domain[0] ? "::" : "", n->op_type, n->opset, what);
}

static rp_status resolve_op(const rp_graph *g, rp_node *n, rp_error *err)
{
    char msg[512];
    if (!is_default_domain(n->domain))
        return node_fail(g, n, err, RP_ERR_UNSUPPORTED, "ops of this domain are not supported (only the default ONNX domain)");
    n->op = rp_op_lookup(n->op_type, n->opset);
    if (!n->op) {
        if (rp_op_known(n->op_type))
            snprintf(msg, sizeof msg, "no kernel for opset %d of this op", n->opset);
        else
            snprintf(msg, sizeof msg, "unsupported op");
        return node_fail(g, n, err, RP_ERR_UNSUPPORTED, msg);
    }
    int nin = present_count(n->in, n->n_in), nout = present_count(n->out, n->n_out);
    if (nin < n->op->min_in || nin > n->op->max_in || nout < n->op->min_out || nout > n->op->max_out) {
        snprintf(msg, sizeof msg, "has %d inputs and %d outputs, expected %d..%d inputs and %d..%d outputs", nin, nout,
                 n->op->min_in, n->op->max_in, n->op->min_out, n->op->max_out);
        return node_fail(g, n, err, RP_ERR_FORMAT, msg);
    }
    /* Kernels may assume required operands are there: an omitted one (an
     * empty name in the file) is the model's error, not a NULL to chase. */
    bool variadic = n->op->max_in > 16;
    for (int k = 0; k < (variadic ? n->n_in : nin); k++)
        if (n->in[k] < 0 && (k < n->op->min_in || variadic)) {
            snprintf(msg, sizeof msg, "input %d is required but omitted (empty name)", k);
            return node_fail(g, n, err, RP_ERR_FORMAT, msg);
        }
    for (int k = 0; k < n->n_attr; k++)
        if (n->attr[k].type == RP_ATTR_GRAPH) {
            snprintf(msg, sizeof msg, "attribute '%s' holds a subgraph; control flow is not supported", n->attr[k].name);
            return node_fail(g, n, err, RP_ERR_UNSUPPORTED, msg);
        }
    return RP_OK;
}

bool rp_graph_value_needs_data(const rp_graph *g, int value_id)
{
    for (int i = 0; i < g->n_nodes; i++) {
        const rp_node *n = &g->nodes[i];
        const rp_op *op = is_default_domain(n->domain) ? rp_op_lookup(n->op_type, n->opset) : NULL;
        if (!op)
            continue;
        for (int k = 0; k < n->n_in && k < 32; k++)
            if (n->in[k] == value_id && (op->const_inputs & (1u << k)))
                return true;
    }
    return false;
}

rp_status rp_graph_bind_constant(rp_graph *g, int value_id, const rp_tensor *t, rp_error *err)
{
    if (value_id < 0 || value_id >= g->n_values || g->values[value_id].kind != RP_VALUE_INPUT)
        return rp_fail(err, RP_ERR_ARG, "bind: value %d is not a graph input", value_id);
    rp_value *v = &g->values[value_id];
    size_t bytes = (size_t)t->count * rp_dtype_size(t->dtype);
    void *copy = NULL;
    if (bytes) {
        copy = malloc(bytes);
        if (!copy)
            return rp_fail(err, RP_ERR_NOMEM, "bind '%s': out of memory", v->name);
        memcpy(copy, t->data, bytes);
    }
    free(v->t.data);
    v->t = *t;
    v->t.data = copy;
    v->kind = RP_VALUE_CONSTANT;
    v->shape_known = true;
    return RP_OK;
}

/* Symbolic dims of graph inputs bind to 1, the leading one to g->batch (1
 * unless set); anything else unknown is refused. */
static rp_status bind_input_shapes(rp_graph *g, rp_error *err)
{
    for (int i = 0; g->batch > 1 && i < g->n_inputs; i++) {
        const rp_value *v = &g->values[g->inputs[i]];
        if (v->kind == RP_VALUE_INPUT && (v->t.rank < 1 || v->t.dims[0] >= 0))
            return rp_fail(err, RP_ERR_SHAPE,
                           "%s: input '%s' has a fixed leading dimension (%lld), so it cannot take a batch of %d; "
                           "export the model with a symbolic batch (torch.onnx.export(..., dynamic_axes={'%s': "
                           "{0: 'batch'}}))",
                           g->path ? g->path : "model", v->name, (long long)(v->t.rank ? v->t.dims[0] : 0), g->batch,
                           v->name);
    }
    for (int i = 0; i < g->n_inputs; i++) {
        rp_value *v = &g->values[g->inputs[i]];
        if (v->kind != RP_VALUE_INPUT || v->shape_known)
            continue;
        if (rp_dtype_size(v->t.dtype) == 0)
            return rp_fail(err, RP_ERR_UNSUPPORTED, "%s: input '%s' has dtype %s, which relprop cannot hold",
                           g->path ? g->path : "model", v->name, rp_dtype_name(v->t.dtype));
        int64_t dims[RP_MAX_RANK];
        for (int d = 0; d < v->t.rank; d++)
            dims[d] = v->t.dims[d] >= 0 ? v->t.dims[d] : d == 0 ? rp_graph_batch(g) : 1;
        if (!rp_tensor_set_shape(&v->t, v->t.dtype, v->t.rank, dims))
            return rp_fail(err, RP_ERR_SHAPE, "%s: input '%s' has an invalid shape", g->path ? g->path : "model", v->name);
        v->shape_known = true;
    }
    return RP_OK;
}

int64_t rp_graph_max_bytes(const rp_graph *g)
{
    if (g->max_bytes > 0)
        return g->max_bytes;
    int64_t size = g->model_bytes > 0 ? g->model_bytes : 0;
    if (size >= RP_DEFAULT_MAX_BYTES / RP_DEFAULT_MODEL_FACTOR)
        return RP_DEFAULT_MAX_BYTES;
    int64_t scaled = size * RP_DEFAULT_MODEL_FACTOR;
    return scaled > RP_DEFAULT_MIN_BYTES ? scaled : RP_DEFAULT_MIN_BYTES;
}

/* "1.5 GiB", "512 MiB", "1000 bytes" */
static const char *human_bytes(int64_t n, char *buf, size_t len)
{
    if (n >= (int64_t)1 << 30)
        snprintf(buf, len, "%.1f GiB", (double)n / (double)((int64_t)1 << 30));
    else if (n >= (int64_t)1 << 20)
        snprintf(buf, len, "%.1f MiB", (double)n / (double)((int64_t)1 << 20));
    else
        snprintf(buf, len, "%lld bytes", (long long)n);
    return buf;
}

static rp_status alloc_value(rp_graph *g, rp_value *v, rp_error *err)
{
    size_t es = rp_dtype_size(v->t.dtype);
    if (es == 0)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "%s: value '%s' has dtype %s, which relprop cannot hold",
                       g->path ? g->path : "model", v->name, rp_dtype_name(v->t.dtype));
    if (v->t.data || v->t.count == 0)
        return RP_OK;
    int64_t limit = rp_graph_max_bytes(g);
    if (v->t.count > (limit - g->used_bytes) / (int64_t)es) {
        const char *node = v->producer >= 0 ? g->nodes[v->producer].name : "(graph input)";
        const char *op = v->producer >= 0 ? g->nodes[v->producer].op_type : "-";
        char shape[160], why[320], h1[32], h2[32], hint[48] = "";
        rp_shape_str(&v->t, shape, sizeof shape);
        /* What is planned with this value, rounded up to the next whole GiB
         * (in double: the element count may be near INT64_MAX). */
        double need_gib = floor(((double)g->used_bytes + (double)v->t.count * (double)es) / 1073741824.0) + 1;
        if (need_gib <= 4096)
            snprintf(hint, sizeof hint, ", e.g. --max-memory %.0fG", need_gib);
        if (g->max_bytes > 0)
            snprintf(why, sizeof why, "set by --max-memory");
        else
            snprintf(why, sizeof why,
                     "the default for a model of %s: the larger of 1 GiB and %d times its size, at most %s; if the "
                     "model really needs more, raise it with --max-memory%s",
                     human_bytes(g->model_bytes, h1, sizeof h1), RP_DEFAULT_MODEL_FACTOR,
                     human_bytes(RP_DEFAULT_MAX_BYTES, h2, sizeof h2), hint);
        return rp_fail(err, RP_ERR_NOMEM,
                       "%s: value '%s' of node '%s' (%s) has shape %s (%lld elements): with the %lld bytes already "
                       "planned it would exceed the memory limit of %lld bytes (%s)",
                       g->path ? g->path : "model", v->name, node, op, shape, (long long)v->t.count,
                       (long long)g->used_bytes, (long long)limit, why);
    }
    g->used_bytes += v->t.count * (int64_t)es;
    v->t.data = calloc((size_t)v->t.count, es);
    if (!v->t.data)
        return rp_fail(err, RP_ERR_NOMEM, "%s: out of memory for value '%s' (%lld elements)",
                       g->path ? g->path : "model", v->name, (long long)v->t.count);
    return RP_OK;
}

static rp_status prepare_node(rp_graph *g, rp_node *n, rp_error *err)
{
    char msg[512];
    rp_status st = resolve_op(g, n, err);
    if (st)
        return st;
    n->in_t = calloc((size_t)(n->n_in ? n->n_in : 1), sizeof *n->in_t);
    n->out_t = calloc((size_t)(n->n_out ? n->n_out : 1), sizeof *n->out_t);
    if (!n->in_t || !n->out_t)
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    bool all_const = true;
    for (int k = 0; k < n->n_in; k++) {
        if (n->in[k] < 0)
            continue;
        rp_value *v = &g->values[n->in[k]];
        if (!v->shape_known) {
            snprintf(msg, sizeof msg, "input %d ('%s') has no known shape", k, v->name);
            return node_fail(g, n, err, RP_ERR_SHAPE, msg);
        }
        n->in_t[k] = &v->t;
        bool has_data = v->kind == RP_VALUE_CONSTANT && (v->t.data || v->t.count == 0);
        all_const &= has_data;
        if (k < 32 && (n->op->const_inputs & (1u << k)) && !has_data) {
            snprintf(msg, sizeof msg,
                     "input %d ('%s') must be known when the model is loaded, but it depends on a model input "
                     "(data-dependent shapes are not supported)", k, v->name);
            return node_fail(g, n, err, RP_ERR_UNSUPPORTED, msg);
        }
    }
    for (int k = 0; k < n->n_out; k++)
        if (n->out[k] >= 0)
            n->out_t[k] = &g->values[n->out[k]].t;
    rp_kctx c = {.node = n, .opset = n->opset, .in = n->in_t, .n_in = n->n_in,
                 .out = n->out_t, .n_out = n->n_out, .params = NULL, .err = err};
    st = n->op->prepare(&c);
    n->params = c.params;
    if (st)
        return rp_error_prefix(err, "%s", g->path ? g->path : "model");
    bool fold = all_const || (n->op->flags & RP_OPF_SHAPE_ONLY);
    for (int k = 0; k < n->n_out; k++) {
        if (n->out[k] < 0)
            continue;
        rp_value *v = &g->values[n->out[k]];
        if (v->t.count < 0 || v->t.rank < 0 || v->t.rank > RP_MAX_RANK) {
            snprintf(msg, sizeof msg, "output %d ('%s') got an invalid shape", k, v->name);
            return node_fail(g, n, err, RP_ERR_INTERNAL, msg);
        }
        v->shape_known = true;
        if (fold) {
            v->kind = RP_VALUE_CONSTANT;
            if ((st = alloc_value(g, v, err)))
                return st;
        }
    }
    if (fold) {
        st = n->op->forward(&c);
        if (st)
            return rp_error_prefix(err, "%s (while folding constants)", g->path ? g->path : "model");
        n->folded = true;
    }
    return RP_OK;
}

/* NaN in a weight poisons every explanation; say which weight at load time. */
static rp_status check_constants(const rp_graph *g, rp_error *err)
{
    for (int i = 0; i < g->n_values; i++) {
        const rp_value *v = &g->values[i];
        if (v->kind != RP_VALUE_CONSTANT || v->t.dtype != RP_FLOAT || !v->t.data)
            continue;
        const float *x = v->t.data;
        for (int64_t e = 0; e < v->t.count; e++)
            if (isnan(x[e]))
                return rp_fail(err, RP_ERR_VALUE, "%s: constant '%s' holds NaN at element %lld",
                               g->path ? g->path : "model", v->name, (long long)e);
    }
    return RP_OK;
}

rp_status rp_graph_prepare(rp_graph *g, rp_error *err)
{
    if (g->prepared)
        return RP_OK;
    rp_status st = bind_input_shapes(g, err);
    if (st)
        return st;
    if (g->check_finite && (st = check_constants(g, err)))
        return st;
    for (int i = 0; i < g->n_nodes; i++)
        if ((st = prepare_node(g, &g->nodes[i], err)))
            return st;
    for (int i = 0; i < g->n_values; i++) {
        rp_value *v = &g->values[i];
        if (v->kind == RP_VALUE_CONSTANT || !v->shape_known)
            continue;
        if ((st = alloc_value(g, v, err)))
            return st;
    }
    for (int i = 0; i < g->n_outputs; i++) {
        const rp_value *v = &g->values[g->outputs[i]];
        if (!v->shape_known)
            return rp_fail(err, RP_ERR_FORMAT, "%s: graph output '%s' is never computed", g->path ? g->path : "model",
                           v->name);
    }
    g->prepared = true;
    return RP_OK;
}
