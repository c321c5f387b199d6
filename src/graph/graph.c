/* Graph ownership and lookups. Every string and array in an rp_graph is a
 * separate malloc owned by the graph; rp_graph_free releases all of it. */
#include "graph/graph.h"

#include <assert.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static void attr_free(rp_attr *a)
{
    free(a->name);
    free(a->s);
    free(a->floats);
    free(a->ints);
    if (a->strings)
        for (int64_t i = 0; i < a->n; i++)
            free(a->strings[i]);
    free(a->strings);
    if (a->tensor) {
        rp_tensor_release(a->tensor);
        free(a->tensor);
    }
}

void rp_graph_free(rp_graph *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->n_nodes; i++) {
        rp_node *n = &g->nodes[i];
        free(n->name);
        free(n->op_type);
        free(n->domain);
        free(n->in);
        free(n->out);
        for (int k = 0; k < n->n_attr; k++)
            attr_free(&n->attr[k]);
        free(n->attr);
        free(n->params);
        free(n->in_t);
        free(n->out_t);
    }
    free(g->nodes);
    for (int i = 0; i < g->n_values; i++) {
        rp_value *v = &g->values[i];
        free(v->name);
        if (!v->borrowed)
            free(v->t.data);
        for (int d = 0; d < RP_MAX_RANK; d++)
            free(v->dim_params[d]);
    }
    free(g->values);
    free(g->arena);
    free(g->plan_keep);
    free(g->plan_fusion);
    free(g->consumer_start);
    free(g->consumers);
    free(g->inputs);
    free(g->outputs);
    for (int i = 0; i < g->n_opsets; i++)
        free(g->opsets[i].domain);
    free(g->opsets);
    for (int i = 0; i < g->n_metadata; i++) {
        free(g->metadata_keys[i]);
        free(g->metadata_values[i]);
    }
    free(g->metadata_keys);
    free(g->metadata_values);
    free(g->path);
    free(g->model_dir);
    free(g);
}

int rp_graph_find_value(const rp_graph *g, const char *name)
{
    for (int i = 0; i < g->n_values; i++)
        if (strcmp(g->values[i].name, name) == 0)
            return i;
    return -1;
}

int rp_graph_find_node(const rp_graph *g, const char *name)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0)
            return i;
    return -1;
}

static bool default_domain(const char *d)
{
    return d == NULL || d[0] == 0 || strcmp(d, "ai.onnx") == 0;
}

int rp_graph_opset(const rp_graph *g, const char *domain)
{
    for (int i = 0; i < g->n_opsets; i++) {
        const char *d = g->opsets[i].domain;
        if ((default_domain(domain) && default_domain(d)) || (d && domain && strcmp(d, domain) == 0))
            return (int)g->opsets[i].version;
    }
    return 0;
}

int rp_graph_batch(const rp_graph *g)
{
    return g->batch > 1 ? g->batch : 1;
}

rp_status rp_graph_index_consumers(rp_graph *g, rp_error *err)
{
    size_t nv = (size_t)g->n_values;
    int *start = calloc(nv + 1, sizeof *start);
    int *last = malloc((nv + 1) * sizeof *last); /* the last node counted for each value: one entry per reader */
    int *cons = NULL;
    if (!start || !last)
        goto nomem;
    for (size_t v = 0; v < nv; v++)
        last[v] = -1;
    int64_t edges = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const rp_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_in; k++) {
            int v = n->in[k];
            if (v >= 0 && last[v] != i) {
                last[v] = i;
                start[v + 1]++;
                edges++;
            }
        }
    }
    if (edges > INT_MAX) {
        free(start);
        free(last);
        return rp_fail(err, RP_ERR_FORMAT, "graph has too many edges");
    }
    for (size_t v = 0; v < nv; v++)
        start[v + 1] += start[v];
    cons = malloc((size_t)(edges ? edges : 1) * sizeof *cons);
    if (!cons)
        goto nomem;
    /* Fill in node order, so each list is sorted; last[] again skips repeats,
     * and start[v] serves as v's cursor, then is shifted back. */
    for (size_t v = 0; v < nv; v++)
        last[v] = -1;
    for (int i = 0; i < g->n_nodes; i++) {
        const rp_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_in; k++) {
            int v = n->in[k];
            if (v >= 0 && last[v] != i) {
                last[v] = i;
                cons[start[v]++] = i;
            }
        }
    }
    for (size_t v = nv; v > 0; v--)
        start[v] = start[v - 1];
    start[0] = 0;
    free(last);
    free(g->consumer_start);
    free(g->consumers);
    g->consumer_start = start;
    g->consumers = cons;
    return RP_OK;
nomem:
    free(start);
    free(last);
    free(cons);
    return rp_fail(err, RP_ERR_NOMEM, "out of memory indexing the graph's consumers");
}

void rp_node_heap_push(int *h, int *len, int id)
{
    int i = (*len)++;
    h[i] = id;
    while (i > 0 && h[(i - 1) / 2] > h[i]) {
        int p = (i - 1) / 2, t = h[p];
        h[p] = h[i];
        h[i] = t;
        i = p;
    }
}

int rp_node_heap_pop(int *h, int *len)
{
    int top = h[0];
    h[0] = h[--(*len)];
    for (int i = 0;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < *len && h[l] < h[m]) m = l;
        if (r < *len && h[r] < h[m]) m = r;
        if (m == i)
            break;
        int t = h[m];
        h[m] = h[i];
        h[i] = t;
        i = m;
    }
    return top;
}

int rp_graph_consumer_list(const rp_graph *g, int value_id, const int **ids)
{
    assert(g->consumer_start);
    if (value_id < 0 || value_id >= g->n_values) {
        *ids = NULL;
        return 0;
    }
    *ids = g->consumers + g->consumer_start[value_id];
    return g->consumer_start[value_id + 1] - g->consumer_start[value_id];
}

int rp_graph_consumers(const rp_graph *g, int value_id, int *ids, int cap)
{
    const int *list;
    int count = rp_graph_consumer_list(g, value_id, &list);
    for (int k = 0; k < count && k < cap; k++)
        ids[k] = list[k];
    return count;
}

const rp_attr *rp_node_attr(const rp_node *n, const char *name)
{
    for (int i = 0; i < n->n_attr; i++)
        if (strcmp(n->attr[i].name, name) == 0)
            return &n->attr[i];
    return NULL;
}
