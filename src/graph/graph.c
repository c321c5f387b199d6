/* Graph ownership and lookups. Every string and array in an rp_graph is a
 * separate malloc owned by the graph; rp_graph_free releases all of it. */
#include "graph/graph.h"

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

int rp_graph_consumers(const rp_graph *g, int value_id, int *ids, int cap)
{
    int count = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const rp_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] == value_id) {
                if (count < cap)
                    ids[count] = i;
                count++;
                break;
            }
    }
    return count;
}

const rp_attr *rp_node_attr(const rp_node *n, const char *name)
{
    for (int i = 0; i < n->n_attr; i++)
        if (strcmp(n->attr[i].name, name) == 0)
            return &n->attr[i];
    return NULL;
}
