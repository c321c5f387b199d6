#include "rules/assign.h"

#include <stdlib.h>
#include <string.h>

const char *rp_node_kind_name(rp_node_kind k)
{
    static const char *names[] = {"none", "first_conv", "linear", "bias", "product", "sum",
                                  "region", "in_region", "data", "unary", "unknown"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

static bool op_in(const rp_node *n, const char *const *ops)
{
    for (; *ops; ops++)
        if (strcmp(n->op_type, *ops) == 0)
            return true;
    return false;
}

static const char *const data_ops[] = {"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Concat",
                                       "Split", "Slice", "Gather", "Expand", "Identity", "Dropout", "Cast",
                                       "ReduceSum", "ReduceMean", NULL};
static const char *const unary_ops[] = {"Softmax", "LogSoftmax", "LayerNormalization", "Gelu", "Erf", "Relu",
                                        "Tanh", "Sigmoid", "Sqrt", "Exp", "Neg", "Reciprocal", "Clip", NULL};
static const char *const matmul_ops[] = {"MatMul", "Gemm", "Conv", "Einsum", NULL};
/* Ops a decomposed normalisation or activation is built from. */
static const char *const region_ops[] = {"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Erf", "Tanh", "Relu",
                                         "Sigmoid", "Exp", "Neg", "Reciprocal", "Gelu", "Where", "Clip", "Max",
                                         "Min", "Cast", "CastLike", "ReduceMean", "ReduceSum", "ReduceMax",
                                         "Softmax", "LayerNormalization", "Equal", NULL};

static bool is_const(const rp_graph *g, int v)
{
    return v < 0 || g->values[v].kind == RP_VALUE_CONSTANT;
}

/* Activation inputs of a node (value ids), at most cap. */
static int activation_inputs(const rp_graph *g, const rp_node *n, int *ids, int cap)
{
    int k = 0;
    for (int i = 0; i < n->n_in; i++)
        if (!is_const(g, n->in[i]) && k < cap)
            ids[k++] = n->in[i];
    return k;
}

static int n_consumers(const rp_graph *g, int v)
{
    return rp_graph_consumers(g, v, NULL, 0) + (g->values[v].is_graph_output ? 1 : 0);
}

static rp_node_kind classify(const rp_graph *g, int id)
{
    const rp_node *n = &g->nodes[id];
    if (n->folded)
        return RP_KIND_NONE;
    int act[8];
    int na = activation_inputs(g, n, act, 8);
    if (na == 0)
        return RP_KIND_NONE;
    if (op_in(n, matmul_ops)) {
        if (strcmp(n->op_type, "Conv") == 0 && g->n_inputs > 0 && n->in[0] == g->inputs[0])
            return RP_KIND_FIRST_CONV;
        /* A constant among the two multiplied operands makes it a linear map;
         * Gemm's C and Conv's B are biases, not operands. */
        bool w_const = is_const(g, n->in[0]) || (n->n_in > 1 && is_const(g, n->in[1]));
        return w_const ? RP_KIND_LINEAR : RP_KIND_PRODUCT;
    }
    if (strcmp(n->op_type, "Add") == 0 && na == 1) {
        int p = g->values[act[0]].producer;
        if (p >= 0 && op_in(&g->nodes[p], matmul_ops) && n_consumers(g, act[0]) == 1) {
            const rp_node *mm = &g->nodes[p];
            bool linear = is_const(g, mm->in[0]) || (mm->n_in > 1 && is_const(g, mm->in[1]));
            if (linear)
                return RP_KIND_BIAS;
        }
        return RP_KIND_SUM;
    }
    if (strcmp(n->op_type, "Add") == 0 || strcmp(n->op_type, "Sub") == 0)
        return RP_KIND_SUM;
    if ((strcmp(n->op_type, "Mul") == 0 || strcmp(n->op_type, "Div") == 0))
        return na == 2 ? (strcmp(n->op_type, "Mul") == 0 ? RP_KIND_PRODUCT : RP_KIND_UNKNOWN) : RP_KIND_UNARY;
    if (op_in(n, data_ops))
        return RP_KIND_DATA;
    if (op_in(n, unary_ops) && na == 1)
        return RP_KIND_UNARY;
    return RP_KIND_UNKNOWN;
}

/* Grow the region of nodes that depend on `root` alone (constants aside) and
 * are built from region ops. Accept it when it has at least two nodes and one
 * exit value of root's shape; mark interior and exit. Returns true if taken. */
static bool try_region(const rp_graph *g, int root, rp_assignment *a, bool *member)
{
    memset(member, 0, sizeof(bool) * (size_t)g->n_nodes);
    bool *inside = calloc((size_t)g->n_values, sizeof *inside); /* values produced in the region, or root */
    if (!inside)
        return false;
    inside[root] = true;
    int count = 0;
    int first = g->values[root].producer + 1;
    for (int i = first; i < g->n_nodes; i++) {
        const rp_node *n = &g->nodes[i];
        if (n->folded || a->kind[i] == RP_KIND_IN_REGION || a->kind[i] == RP_KIND_REGION || !op_in(n, region_ops))
            continue;
        bool uses_root = false, only_inside = true;
        for (int k = 0; k < n->n_in; k++) {
            int v = n->in[k];
            if (is_const(g, v))
                continue;
            if (!inside[v])
                only_inside = false;
            else
                uses_root = true;
        }
        if (!uses_root || !only_inside)
            continue;
        member[i] = true;
        count++;
        for (int k = 0; k < n->n_out; k++)
            if (n->out[k] >= 0)
                inside[n->out[k]] = true;
    }
    int exit_node = -1, exits = 0;
    if (count >= 2) {
        for (int i = first; i < g->n_nodes && exits < 2; i++) {
            if (!member[i])
                continue;
            const rp_node *n = &g->nodes[i];
            for (int k = 0; k < n->n_out; k++) {
                int v = n->out[k];
                if (v < 0)
                    continue;
                bool leaves = g->values[v].is_graph_output;
                for (int j = i + 1; j < g->n_nodes && !leaves; j++) {
                    const rp_node *c = &g->nodes[j];
                    if (member[j] || c->folded)
                        continue;
                    for (int q = 0; q < c->n_in; q++)
                        if (c->in[q] == v)
                            leaves = true;
                }
                if (leaves) {
                    exits++;
                    exit_node = i;
                }
            }
        }
    }
    free(inside);
    if (count < 2 || exits != 1 || g->nodes[exit_node].n_out < 1)
        return false;
    const rp_tensor *xt = &g->values[root].t, *yt = &g->values[g->nodes[exit_node].out[0]].t;
    if (!rp_shape_equal(xt, yt))
        return false;
    for (int i = first; i < g->n_nodes; i++) {
        if (!member[i])
            continue;
        a->kind[i] = i == exit_node ? RP_KIND_REGION : RP_KIND_IN_REGION;
        a->region_input[i] = i == exit_node ? root : -1;
    }
    return true;
}

static const char *paper_rule(rp_node_kind k)
{
    switch (k) {
    case RP_KIND_FIRST_CONV: return "zb";
    case RP_KIND_LINEAR: return "alpha_beta";
    case RP_KIND_BIAS: return "identity";
    case RP_KIND_PRODUCT: return "product";
    case RP_KIND_SUM: return "sum";
    case RP_KIND_REGION: return "identity";
    case RP_KIND_DATA: return "route";
    case RP_KIND_UNARY: return "identity";
    default: return NULL;
    }
}

void rp_assignment_free(rp_assignment *a)
{
    if (!a)
        return;
    for (int i = 0; i < a->n_nodes; i++)
        if (a->state && a->state[i] && a->rule[i] && a->rule[i]->free_state)
            a->rule[i]->free_state(a->state[i]);
    free(a->kind);
    free(a->rule);
    free(a->params);
    free(a->region_input);
    free(a->state);
    memset(a, 0, sizeof *a);
}

rp_status rp_assign_rules(const rp_graph *g, const char *rule_set, rp_assignment *a, rp_error *err)
{
    memset(a, 0, sizeof *a);
    if (strcmp(rule_set, "paper") != 0)
        return rp_fail(err, RP_ERR_ARG, "unknown rule set '%s' (known: paper)", rule_set);
    int n = g->n_nodes;
    a->n_nodes = n;
    a->kind = calloc((size_t)n + 1, sizeof *a->kind);
    a->rule = calloc((size_t)n + 1, sizeof *a->rule);
    a->params = calloc((size_t)n + 1, sizeof *a->params);
    a->region_input = malloc(sizeof *a->region_input * ((size_t)n + 1));
    a->state = calloc((size_t)n + 1, sizeof *a->state);
    bool *member = calloc((size_t)n + 1, sizeof *member);
    rp_status st = RP_OK;
    if (!a->kind || !a->rule || !a->params || !a->region_input || !a->state || !member) {
        st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++)
        a->region_input[i] = -1;
    /* Regions first, rooted at each activation in forward order, so the
     * widest region around a decomposed op wins. */
    for (int v = 0; v < g->n_values; v++) {
        const rp_value *val = &g->values[v];
        if (val->kind == RP_VALUE_CONSTANT || val->t.dtype != RP_FLOAT)
            continue;
        try_region(g, v, a, member);
    }
    for (int i = 0; i < n; i++)
        if (a->kind[i] != RP_KIND_REGION && a->kind[i] != RP_KIND_IN_REGION)
            a->kind[i] = classify(g, i);
    for (int i = 0; i < n; i++) {
        const char *name = paper_rule(a->kind[i]);
        if (!name)
            continue;
        a->rule[i] = rp_rule_lookup(name);
        if (!a->rule[i]) {
            st = rp_fail(err, RP_ERR_INTERNAL, "rule '%s' is not registered", name);
            goto done;
        }
        a->params[i] = (rp_rule_params){.alpha = 1.0, .beta = 0.0, .epsilon = 1e-6, .gamma = 0.25};
        if (a->kind[i] == RP_KIND_REGION)
            continue; /* the engine sends relevance straight to the region input */
        size_t scratch = 0;
        if (a->rule[i]->prepare) {
            st = a->rule[i]->prepare(g, &g->nodes[i], &a->params[i], &a->state[i], &scratch, err);
            if (st)
                goto done;
        }
        if (scratch > a->scratch_floats)
            a->scratch_floats = scratch;
    }
done:
    free(member);
    if (st)
        rp_assignment_free(a);
    return st;
}
