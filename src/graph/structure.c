#include "graph/structure.h"

#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

static bool is_op(const rp_node *n, const char *op)
{
    return strcmp(n->op_type, op) == 0;
}

/* Ops that hand A on in place, element for element. */
static bool is_passthrough(const rp_node *n)
{
    return rp_op_role_of(n->op) == RP_ROLE_PASS;
}

static bool is_activation(const rp_graph *g, int v)
{
    return v >= 0 && g->values[v].kind != RP_VALUE_CONSTANT;
}

/* Div(e, ReduceSum(e)) with e = Exp(...): a softmax an exporter spelled out. */
static bool is_decomposed_softmax(const rp_graph *g, const rp_node *n)
{
    if (!is_op(n, "Div") || n->n_in < 2 || n->in[0] < 0 || n->in[1] < 0)
        return false;
    int e = n->in[0], s = n->in[1];
    int pe = g->values[e].producer, ps = g->values[s].producer;
    if (pe < 0 || ps < 0 || !is_op(&g->nodes[pe], "Exp"))
        return false;
    const rp_node *sum = &g->nodes[ps];
    return is_op(sum, "ReduceSum") && sum->n_in >= 1 && sum->in[0] == e;
}

/* Follow A through pass-through ops to a product that takes it as the left
 * operand with an activation on the right. Returns the product node or -1.
 * Only A's readers can be either, looked at in node order. */
static int find_product(const rp_graph *g, int value, int *left, int depth)
{
    if (depth > 8)
        return -1;
    const int *readers;
    int n_readers = rp_graph_consumer_list(g, value, &readers);
    for (int r = 0; r < n_readers; r++) {
        int i = readers[r];
        const rp_node *c = &g->nodes[i];
        if (c->folded || c->n_in < 1)
            continue;
        if ((is_op(c, "MatMul") || is_op(c, "Einsum")) && c->n_in == 2 && c->in[0] == value &&
            is_activation(g, c->in[1])) {
            *left = value;
            return i;
        }
        if (is_passthrough(c) && c->in[0] == value && c->n_out >= 1 && c->out[0] >= 0) {
            int p = find_product(g, c->out[0], left, depth + 1);
            if (p >= 0)
                return p;
        }
    }
    return -1;
}

rp_status rp_find_attention(const rp_graph *g, rp_attention_layer **out, int *n_out, rp_error *err)
{
    *out = NULL;
    *n_out = 0;
    rp_attention_layer *layers = NULL;
    int n = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const rp_node *s = &g->nodes[i];
        if (s->folded || s->n_out < 1 || s->out[0] < 0)
            continue;
        if (!is_op(s, "Softmax") && !is_decomposed_softmax(g, s))
            continue;
        int left = -1;
        int p = find_product(g, s->out[0], &left, 0);
        if (p < 0)
            continue;
        const rp_tensor *a = &g->values[s->out[0]].t;
        if (a->rank < 3) /* a 2-D softmax times a matrix is no attention over tokens */
            continue;
        rp_attention_layer *grown = realloc(layers, sizeof *layers * (size_t)(n + 1));
        if (!grown) {
            free(layers);
            return rp_fail(err, RP_ERR_NOMEM, "out of memory");
        }
        layers = grown;
        rp_attention_layer *l = &layers[n++];
        l->softmax_node = i;
        l->probs_value = s->out[0];
        l->product_node = p;
        l->product_left = left;
        l->tokens = (int)a->dims[a->rank - 1];
        /* [B,H,N,N], or [B*H,N,N] with the heads folded into the batch */
        l->heads = (int)(a->rank >= 4 ? a->dims[a->rank - 3] : a->dims[0] / rp_graph_batch(g));
    }
    *out = layers;
    *n_out = n;
    return RP_OK;
}

void rp_find_patch_embedding(const rp_graph *g, rp_patch_embedding *out)
{
    memset(out, 0, sizeof *out);
    out->conv_node = -1;
    if (g->n_inputs < 1)
        return;
    int image = g->inputs[0];
    for (int i = 0; i < g->n_nodes; i++) {
        const rp_node *c = &g->nodes[i];
        if (!is_op(c, "Conv") || c->n_in < 2 || c->in[0] != image || c->in[1] < 0 || c->out[0] < 0)
            continue;
        const rp_tensor *x = &g->values[image].t, *w = &g->values[c->in[1]].t, *y = &g->values[c->out[0]].t;
        if (x->rank != 4 || w->rank != 4 || y->rank != 4)
            continue;
        out->conv_node = i;
        out->image_h = (int)x->dims[2];
        out->image_w = (int)x->dims[3];
        out->patch_h = (int)w->dims[2];
        out->patch_w = (int)w->dims[3];
        out->grid_h = (int)y->dims[2];
        out->grid_w = (int)y->dims[3];
        return;
    }
}

void rp_find_readout(const rp_graph *g, const rp_attention_layer *last, float *r, const char **how)
{
    int n = last->tokens;
    memset(r, 0, sizeof(float) * (size_t)n);
    int rows[64], n_rows = 0;
    bool mean_pool = false;
    for (int i = last->product_node + 1; i < g->n_nodes; i++) {
        const rp_node *nd = &g->nodes[i];
        if (nd->folded || nd->n_in < 1 || nd->in[0] < 0)
            continue;
        const rp_tensor *x = &g->values[nd->in[0]].t;
        if (x->rank != 3 || x->dims[1] != n)
            continue;
        if (is_op(nd, "Gather") && nd->n_in == 2 && nd->in[1] >= 0) {
            const rp_value *idx = &g->values[nd->in[1]];
            const rp_attr *ax = rp_node_attr(nd, "axis");
            int64_t axis = ax ? ax->i : 0;
            if ((axis == 1 || axis == -2) && idx->kind == RP_VALUE_CONSTANT && idx->t.count == 1 && n_rows < 64) {
                int64_t row = rp_tensor_get_i64(&idx->t, 0);
                rows[n_rows++] = (int)(row < 0 ? row + n : row);
            }
        } else if (is_op(nd, "ReduceMean")) {
            mean_pool = true;
        }
    }
    if (n_rows > 0) {
        for (int k = 0; k < n_rows; k++)
            if (rows[k] >= 0 && rows[k] < n)
                r[rows[k]] += 1.0f / (float)n_rows;
        *how = n_rows == 1 ? "token row" : "mean of token rows";
    } else if (mean_pool) {
        for (int k = 0; k < n; k++)
            r[k] = 1.0f / (float)n;
        *how = "mean over tokens";
    } else {
        r[0] = 1.0f;
        *how = "row 0 (assumed)";
    }
}

rp_status rp_check_attention_layout(const rp_graph *g, const rp_attention_layer *layers, int n,
                                    const rp_patch_embedding *p, rp_error *err)
{
    int patches = p->grid_h * p->grid_w;
    for (int l = 0; l < n; l++) {
        const rp_attention_layer *a = &layers[l];
        const rp_tensor *t = &g->values[a->probs_value].t;
        const char *node = g->nodes[a->softmax_node].name;
        char shape[96];
        rp_shape_str(t, shape, sizeof shape);
        if (t->rank == 4 && t->dims[0] != rp_graph_batch(g))
            return rp_fail(err, RP_ERR_UNSUPPORTED,
                           "%s: attention at node '%s' has shape %s: its leading axis of %lld is not the batch "
                           "(windowed attention as in Swin?); relprop explains global attention over one token "
                           "sequence only",
                           g->path, node, shape, (long long)t->dims[0]);
        if (t->rank == 3 && g->batch > 1 && t->dims[0] % g->batch != 0)
            return rp_fail(err, RP_ERR_UNSUPPORTED, "%s: attention at node '%s' has shape %s, which does not split "
                           "into a batch of %d", g->path, node, shape, g->batch);
        if (t->rank > 4)
            return rp_fail(err, RP_ERR_UNSUPPORTED, "%s: attention at node '%s' has rank %d (shape %s); expected "
                           "[1,H,N,N] or [H,N,N]", g->path, node, t->rank, shape);
        if (a->tokens < patches)
            return rp_fail(err, RP_ERR_UNSUPPORTED,
                           "%s: attention at node '%s' (shape %s) is over %d tokens, but the image has %d patches "
                           "(%dx%d): windowed or pooled attention (as in Swin) is not supported",
                           g->path, node, shape, a->tokens, patches, p->grid_h, p->grid_w);
        if (a->tokens != layers[0].tokens)
            return rp_fail(err, RP_ERR_UNSUPPORTED,
                           "%s: attention at node '%s' is over %d tokens, but the first layer's over %d: token "
                           "merging or pooling between layers is not supported",
                           g->path, node, a->tokens, layers[0].tokens);
    }
    return RP_OK;
}
