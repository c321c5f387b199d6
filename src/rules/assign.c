#include "rules/assign.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rules/sets.h"

const char *rp_node_kind_name(rp_node_kind k)
{
    static const char *names[] = {"none", "first_conv", "linear", "bias", "product", "sum",
                                  "region", "in_region", "data", "unary", "unknown"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

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

static bool linear_map(const rp_graph *g, const rp_node *n)
{
    /* A constant among the two multiplied operands makes a contraction a
     * linear map; Gemm's C and Conv's B are biases, not operands. */
    return is_const(g, n->in[0]) || (n->n_in > 1 && is_const(g, n->in[1]));
}

/* What a node is to relevance, from what its op row says it does. */
static rp_node_kind classify(const rp_graph *g, int id)
{
    const rp_node *n = &g->nodes[id];
    if (n->folded)
        return RP_KIND_NONE;
    int act[8];
    int na = activation_inputs(g, n, act, 8);
    if (na == 0)
        return RP_KIND_NONE;
    switch (rp_op_role_of(n->op)) {
    case RP_ROLE_CONTRACTION:
        /* The linear map on the pixels of an image input (N, C, H, W). */
        if (g->n_inputs > 0 && n->in[0] == g->inputs[0] && g->values[n->in[0]].t.rank == 4)
            return RP_KIND_FIRST_CONV;
        return linear_map(g, n) ? RP_KIND_LINEAR : RP_KIND_PRODUCT;
    case RP_ROLE_SUM:
        if (na == 1 && !(n->op->flags & RP_OPF_SUBTRACTS)) {
            /* A constant added to a linear map's output, read by nothing else:
             * the map's bias. */
            int p = g->values[act[0]].producer;
            if (p >= 0 && rp_op_role_of(g->nodes[p].op) == RP_ROLE_CONTRACTION && n_consumers(g, act[0]) == 1 &&
                linear_map(g, &g->nodes[p]))
                return RP_KIND_BIAS;
        }
        return RP_KIND_SUM;
    case RP_ROLE_PRODUCT:
        return na == 2 ? RP_KIND_PRODUCT : RP_KIND_UNARY;
    case RP_ROLE_QUOTIENT:
        return na == 2 ? RP_KIND_UNKNOWN : RP_KIND_UNARY;
    case RP_ROLE_MOVE:
    case RP_ROLE_PASS:
    case RP_ROLE_POOL:
        return RP_KIND_DATA;
    case RP_ROLE_MAP:
        return na == 1 ? RP_KIND_UNARY : RP_KIND_UNKNOWN;
    case RP_ROLE_UNSET:
    case RP_ROLE_NONE:
    case RP_ROLE_OTHER:
        break;
    }
    return RP_KIND_UNKNOWN;
}

/* What the region search needs per node and value, allocated once per
 * assignment. Between roots every array is back to false / empty, and only
 * what a root touched is reset, so a root costs what its region reaches
 * (nodes, their inputs and readers), not the graph's size. */
typedef struct region_search {
    bool *member;      /* per node: grown into the region */
    bool *queued;      /* per node: put on the heap for this root */
    bool *inside;      /* per value: the root, or produced by a member */
    int *pos;          /* per node: a member's place in members[], from 1 */
    int *heap;         /* candidates, lowest node first (n_nodes entries) */
    int *queued_ids;   /* the nodes queued, to reset (n_nodes entries) */
    int *members;      /* in node order (n_nodes entries) */
    int *exits;        /* per prefix length: exits, then as differences (n_nodes + 2) */
    int64_t *exit_sum; /* the same for the sum of the exits' node ids */
} region_search;

static void region_search_free(region_search *s)
{
    free(s->member);
    free(s->queued);
    free(s->inside);
    free(s->pos);
    free(s->heap);
    free(s->queued_ids);
    free(s->members);
    free(s->exits);
    free(s->exit_sum);
}

static bool region_search_init(region_search *s, const rp_graph *g)
{
    size_t n = (size_t)g->n_nodes + 2, nv = (size_t)g->n_values + 1;
    *s = (region_search){calloc(n, sizeof(bool)), calloc(n, sizeof(bool)), calloc(nv, sizeof(bool)),
                         malloc(n * sizeof(int)), malloc(n * sizeof(int)), malloc(n * sizeof(int)),
                         malloc(n * sizeof(int)), malloc(n * sizeof(int)), malloc(n * sizeof(int64_t))};
    if (s->member && s->queued && s->inside && s->pos && s->heap && s->queued_ids && s->members && s->exits &&
        s->exit_sum)
        return true;
    region_search_free(s);
    return false;
}

/* Queue the readers of v not queued yet. */
static void queue_consumers(const rp_graph *g, region_search *s, int v, int *n_heap, int *n_queued)
{
    const int *c;
    int n = rp_graph_consumer_list(g, v, &c);
    for (int k = 0; k < n; k++)
        if (!s->queued[c[k]]) {
            s->queued[c[k]] = true;
            s->queued_ids[(*n_queued)++] = c[k];
            rp_node_heap_push(s->heap, n_heap, c[k]);
        }
}

/* The exits of each prefix of the members (the first t of them, t = 1 ..
 * count): outputs read by a node outside the prefix (a later member counts
 * as outside) or by the graph. exits[t] receives how many, exit_sum[t] the
 * sum of their nodes' ids — the exit node itself where there is one. An
 * output of member s is an exit from t = s until the prefix holds all its
 * readers (for ever if one is not a member), so each adds one interval. */
static void region_exits(const rp_graph *g, region_search *s, int count)
{
    for (int t = 0; t <= count + 1; t++) {
        s->exits[t] = 0;
        s->exit_sum[t] = 0;
    }
    for (int q = 0; q < count; q++)
        s->pos[s->members[q]] = q + 1;
    for (int q = 0; q < count; q++) {
        int i = s->members[q];
        const rp_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_out; k++) {
            int v = n->out[k];
            if (v < 0)
                continue;
            int until = g->values[v].is_graph_output ? count : q; /* the last prefix it leaves */
            const int *c;
            int nc = rp_graph_consumer_list(g, v, &c);
            for (int r = 0; r < nc && until < count; r++) {
                if (g->nodes[c[r]].folded)
                    continue;
                int later = s->member[c[r]] ? s->pos[c[r]] - 1 : count;
                if (later > until)
                    until = later;
            }
            if (until > q) {
                s->exits[q + 1]++;
                s->exits[until + 1]--;
                s->exit_sum[q + 1] += i;
                s->exit_sum[until + 1] -= i;
            }
        }
    }
    for (int t = 1; t <= count; t++) {
        s->exits[t] += s->exits[t - 1];
        s->exit_sum[t] += s->exit_sum[t - 1];
    }
}

/* Grow the region of nodes that depend on `root` alone (constants aside) and
 * are built from region ops. Accept the largest forward-order prefix of it
 * with at least two nodes and one exit value of root's shape — a prefix,
 * because growth runs on past the normalisation when a region op follows it
 * (a final LayerNorm then a ReduceMean over the tokens). Members are in
 * topological order, so a prefix still depends on root alone. Marks interior
 * and exit; returns true if taken.
 *
 * Growth visits only the readers of root and of members, lowest node first:
 * every member's producers inside the region come before it, so when a node
 * is looked at, all of its inputs that will ever be inside already are. */
static bool try_region(const rp_graph *g, int root, rp_assignment *a, region_search *s)
{
    int n_heap = 0, n_queued = 0, count = 0;
    s->inside[root] = true;
    queue_consumers(g, s, root, &n_heap, &n_queued);
    while (n_heap > 0) {
        int i = rp_node_heap_pop(s->heap, &n_heap);
        const rp_node *n = &g->nodes[i];
        if (n->folded || a->kind[i] == RP_KIND_IN_REGION || a->kind[i] == RP_KIND_REGION || !n->op ||
            !(n->op->flags & RP_OPF_SPELLS_NORM))
            continue;
        bool uses_root = false, only_inside = true;
        for (int k = 0; k < n->n_in; k++) {
            int v = n->in[k];
            if (is_const(g, v))
                continue;
            if (!s->inside[v])
                only_inside = false;
            else
                uses_root = true;
        }
        if (!uses_root || !only_inside)
            continue;
        s->member[i] = true;
        s->members[count++] = i;
        for (int k = 0; k < n->n_out; k++)
            if (n->out[k] >= 0) {
                s->inside[n->out[k]] = true;
                queue_consumers(g, s, n->out[k], &n_heap, &n_queued);
            }
    }
    const rp_tensor *xt = &g->values[root].t;
    int exit_node = -1, cut = 0;
    if (count >= 2) {
        region_exits(g, s, count);
        for (int t = count; t >= 2; t--) {
            int e = (int)s->exit_sum[t];
            if (s->exits[t] == 1 && g->nodes[e].n_out >= 1 && g->nodes[e].out[0] >= 0 &&
                rp_shape_equal(xt, &g->values[g->nodes[e].out[0]].t)) {
                exit_node = e;
                cut = t;
                break;
            }
        }
    }
    for (int q = 0; q < cut; q++) {
        int i = s->members[q];
        a->kind[i] = i == exit_node ? RP_KIND_REGION : RP_KIND_IN_REGION;
        a->region_input[i] = i == exit_node ? root : -1;
    }
    s->inside[root] = false;
    for (int q = 0; q < count; q++) {
        const rp_node *n = &g->nodes[s->members[q]];
        s->member[s->members[q]] = false;
        for (int k = 0; k < n->n_out; k++)
            if (n->out[k] >= 0)
                s->inside[n->out[k]] = false;
    }
    for (int q = 0; q < n_queued; q++)
        s->queued[s->queued_ids[q]] = false;
    return cut > 0;
}

/* Each input element goes to at most one output element, unchanged: both
 * sides hold the same numbers (see rp_read_side). */
static bool pure_move(const rp_graph *g, const rp_node *n)
{
    if (!n->op || n->domain[0])
        return false;
    /* Only an op with few inputs decides by their values (Gather). */
    const rp_tensor *in[8] = {0};
    if (n->n_in > 8)
        return n->op->flags & RP_OPF_MOVES_ONCE;
    for (int k = 0; k < n->n_in; k++)
        if (n->in[k] >= 0 && g->values[n->in[k]].kind == RP_VALUE_CONSTANT)
            in[k] = &g->values[n->in[k]].t;
    return rp_op_moves_once(n->op, n, in);
}

static void mark_node(const rp_graph *g, const rp_assignment *a, int i, unsigned f, bool *keep)
{
    const rp_node *n = &g->nodes[i];
    if (f & RP_RULE_READS_INPUTS) {
        /* A region's rule sees the region's input, and may look at its
         * last node's own (the softmax rule reads the scores there). */
        if (a->kind[i] == RP_KIND_REGION && a->region_input[i] >= 0)
            keep[a->region_input[i]] = true;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0)
                keep[n->in[k]] = true;
    }
    for (int k = 0; (f & RP_RULE_READS_OUTPUTS) && k < n->n_out; k++)
        if (n->out[k] >= 0)
            keep[n->out[k]] = true;
    if (f & RP_RULE_READS_VJP)
        rp_node_mark_gradient_reads(g, n, keep);
}

/* The k-th value on one side of n that the route rule reads there (a float,
 * not an index or shape input), or -1. */
static int side_value(const rp_graph *g, const rp_node *n, bool outputs, int k)
{
    int v = outputs ? n->out[k] : n->in[k];
    if (v < 0 || g->values[v].t.dtype != RP_FLOAT || (!outputs && rp_op_input_nondiff(n->op, k)))
        return -1;
    return v;
}

/* Whether every such value on one side is kept already (counting the values
 * that share a buffer with it), and how many floats that side holds. */
static bool side_kept(const rp_graph *g, const rp_node *n, bool outputs, const int *root, const bool *group)
{
    for (int k = 0, v; k < (outputs ? n->n_out : n->n_in); k++)
        if ((v = side_value(g, n, outputs, k)) >= 0 && !group[root[v]])
            return false;
    return true;
}

static int64_t side_floats(const rp_graph *g, const rp_node *n, bool outputs)
{
    int64_t floats = 0;
    for (int k = 0, v; k < (outputs ? n->n_out : n->n_in); k++)
        if ((v = side_value(g, n, outputs, k)) >= 0)
            floats += g->values[v].t.count;
    return floats;
}

void rp_assignment_mark_reads(const rp_graph *g, rp_assignment *a, bool *keep)
{
    int *root = malloc(sizeof *root * ((size_t)g->n_values + 1));
    bool *group = calloc((size_t)g->n_values + 1, sizeof *group);
    for (int i = 0; i < a->n_nodes && i < g->n_nodes; i++) {
        const rp_rule *r = a->rule[i];
        if (a->side)
            a->side[i] = RP_READ_BOTH;
        if (!r)
            continue;
        bool movable = r == &rp_rule_route && a->side && root && group && pure_move(g, &g->nodes[i]);
        if (movable) {
            a->side[i] = RP_READ_INPUTS; /* decided below */
            continue;
        }
        unsigned f = r->flags & RP_RULE_READS_DECLARED
                         ? r->flags
                         : RP_RULE_READS_INPUTS | RP_RULE_READS_OUTPUTS | RP_RULE_READS_VJP;
        mark_node(g, a, i, f, keep);
    }
    if (root && group) {
        /* Consumers first, so a move sees what the moves after it read. */
        rp_graph_alias_roots(g, root, NULL);
        for (int v = 0; v < g->n_values; v++)
            group[root[v]] |= keep[v];
        for (int i = (a->n_nodes < g->n_nodes ? a->n_nodes : g->n_nodes) - 1; i >= 0; i--) {
            if (!a->side || a->side[i] == RP_READ_BOTH)
                continue;
            const rp_node *n = &g->nodes[i];
            /* The side others keep anyway; else the smaller one, inputs on
             * a tie (a chain of moves then reads one value: its first input). */
            bool outputs = side_kept(g, n, true, root, group);
            if (!outputs && !side_kept(g, n, false, root, group))
                outputs = side_floats(g, n, true) < side_floats(g, n, false);
            a->side[i] = outputs ? RP_READ_OUTPUTS : RP_READ_INPUTS;
            mark_node(g, a, i, outputs ? RP_RULE_READS_OUTPUTS : RP_RULE_READS_INPUTS, keep);
            for (int k = 0; k < n->n_in; k++)
                if (n->in[k] >= 0 && rp_op_input_nondiff(n->op, k))
                    keep[n->in[k]] = true;
            for (int k = 0; k < (outputs ? n->n_out : n->n_in); k++) {
                int v = outputs ? n->out[k] : n->in[k];
                if (v >= 0)
                    group[root[v]] = true;
            }
        }
    }
    free(root);
    free(group);
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
    free(a->region_node);
    free(a->region_in_t);
    free(a->view);
    free(a->side);
    /* Last: plugin rules' free_state above may live in a plugin this releases. */
    rp_rule_registry_free(a->registry);
    memset(a, 0, sizeof *a);
}

static void known_rules(const rp_rule_registry *reg, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = 0;
    int n = rp_rule_registry_count(reg);
    for (int i = 0; i < n && used < len; i++) {
        int w = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", rp_rule_registry_get(reg, i)->name);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* Whether `name` is one of the space-separated names in list. */
static bool param_listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    while (list && *list) {
        list += strspn(list, " ");
        size_t k = strcspn(list, " ");
        if (k == n && strncmp(list, name, n) == 0)
            return true;
        list += k;
    }
    return false;
}

static const char *where(const rp_rule_set *set, const rp_rule_entry *e, char *buf, size_t len)
{
    if (e->index > 0)
        snprintf(buf, len, "rule set file '%s', entry %d", set->name, e->index);
    else
        snprintf(buf, len, "rule set '%s'", set->base ? set->base : set->name);
    return buf;
}

/* Resolve every entry's rule and check its parameters, so a typo fails even
 * in an entry that matches no node. */
static rp_status resolve_entries(const rp_rule_set *set, rp_rule_registry *reg, const rp_rule **rules,
                                 rp_error *err)
{
    char at[512];
    for (int k = 0; k < set->n; k++) {
        const rp_rule_entry *e = &set->e[k];
        rules[k] = rp_rule_registry_find(reg, e->rule);
        if (!rules[k]) {
            char known[1024];
            known_rules(reg, known, sizeof known);
            return rp_fail(err, RP_ERR_ARG, "%s: no rule named '%s' (known: %s%s)", where(set, e, at, sizeof at),
                           e->rule, known, reg ? "" : "; plugins add more");
        }
        for (int p = 0; p < e->params.n; p++)
            if (!param_listed(rules[k]->params, e->params.items[p].name))
                return rp_fail(err, RP_ERR_ARG, "%s: rule '%s' has no parameter '%s' (it takes: %s)",
                               where(set, e, at, sizeof at), e->rule, e->params.items[p].name,
                               rules[k]->params && *rules[k]->params ? rules[k]->params : "none");
    }
    return RP_OK;
}

rp_status rp_assign_rules(const rp_graph *g, const char *rule_set, rp_rule_registry *reg, rp_assignment *a,
                          rp_error *err)
{
    memset(a, 0, sizeof *a);
    rp_rule_set set;
    rp_status st = rp_rule_set_load(rule_set, &set, err);
    if (st)
        return st;
    int n = g->n_nodes;
    a->n_nodes = n;
    a->kind = calloc((size_t)n + 1, sizeof *a->kind);
    a->rule = calloc((size_t)n + 1, sizeof *a->rule);
    a->params = calloc((size_t)n + 1, sizeof *a->params);
    a->region_input = malloc(sizeof *a->region_input * ((size_t)n + 1));
    a->state = calloc((size_t)n + 1, sizeof *a->state);
    a->region_node = calloc((size_t)n + 1, sizeof *a->region_node);
    a->region_in_t = calloc((size_t)n + 1, sizeof *a->region_in_t);
    a->view = calloc((size_t)n + 1, sizeof *a->view);
    a->side = calloc((size_t)n + 1, sizeof *a->side);
    region_search search;
    bool searching = region_search_init(&search, g);
    const rp_rule **entry_rule = calloc((size_t)set.n + 1, sizeof *entry_rule);
    if (!a->kind || !a->rule || !a->params || !a->region_input || !a->state || !a->region_node || !a->side ||
        !a->region_in_t || !a->view || !searching || !entry_rule) {
        st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (reg) {
        rp_rule_registry_retain(reg);
        a->registry = reg;
    }
    if ((st = resolve_entries(&set, reg, entry_rule, err)))
        goto done;
    for (int i = 0; i < n; i++)
        a->region_input[i] = -1;
    /* Regions first, rooted at each activation in forward order, so the
     * widest region around a decomposed op wins. */
    for (int v = 0; v < g->n_values; v++) {
        const rp_value *val = &g->values[v];
        if (val->kind == RP_VALUE_CONSTANT || val->t.dtype != RP_FLOAT)
            continue;
        try_region(g, v, a, &search);
    }
    for (int i = 0; i < n; i++)
        if (a->kind[i] != RP_KIND_REGION && a->kind[i] != RP_KIND_IN_REGION)
            a->kind[i] = classify(g, i);
    for (int i = 0; i < n; i++) {
        const rp_node *node = &g->nodes[i];
        int m = rp_rule_set_match(&set, node, a->kind[i]);
        if (m < 0)
            continue;
        a->rule[i] = entry_rule[m];
        a->params[i] = set.e[m].params;
        if (a->kind[i] == RP_KIND_REGION) {
            /* The region as one unary node: its input in, the exit's outputs out. */
            rp_node *rn = &a->region_node[i];
            *rn = *node;
            rn->n_in = 1;
            rn->in = &a->region_input[i];
            a->region_in_t[i] = (rp_tensor *)&g->values[a->region_input[i]].t;
            rn->in_t = &a->region_in_t[i];
            rn->op = NULL;
            rn->params = NULL;
            node = rn;
        }
        a->view[i] = (rp_rule_node){.graph = g, .node = node, .kind = rp_node_kind_name(a->kind[i]),
                                    .region = a->kind[i] == RP_KIND_REGION,
                                    .exit = a->kind[i] == RP_KIND_REGION ? &g->nodes[i] : NULL};
        a->needs_gradient |= (a->rule[i]->flags & RP_RULE_NEEDS_GRADIENT) != 0;
        size_t scratch = 0;
        if (a->rule[i]->prepare) {
            st = a->rule[i]->prepare(&a->view[i], &a->params[i], &a->state[i], &scratch, err);
            if (st) {
                char at[512];
                rp_error_prefix(err, "%s: rule '%s'", where(&set, &set.e[m], at, sizeof at), a->rule[i]->name);
                goto done;
            }
        }
        if (scratch > a->scratch_floats)
            a->scratch_floats = scratch;
    }
done:
    if (searching)
        region_search_free(&search);
    free(entry_rule);
    rp_rule_set_free(&set);
    if (st)
        rp_assignment_free(a);
    return st;
}

static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

void rp_assign_cache_key(const char *rule_set, const rp_rule_registry *reg, char *buf, size_t len)
{
    /* One FNV-1a hash of everything that decides the assignment: the model
     * keeps 64 characters, too few for a path. */
    uint64_t h = fnv(1469598103934665603ull, rule_set, strlen(rule_set));
    unsigned gen = rp_rule_registry_generation(reg);
    h = fnv(h, &reg, sizeof reg);
    h = fnv(h, &gen, sizeof gen);
    struct stat sb;
    if (rp_rule_set_is_file(rule_set) && stat(rule_set, &sb) == 0) {
        long long meta[3] = {(long long)sb.st_size, (long long)sb.st_mtim.tv_sec, (long long)sb.st_mtim.tv_nsec};
        h = fnv(h, meta, sizeof meta);
    }
    snprintf(buf, len, "%016llx", (unsigned long long)h);
}
