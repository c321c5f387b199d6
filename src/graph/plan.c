/* The forward pass's memory plan. After prepare every activation has a
 * buffer of its own, which is what a caller reading any intermediate needs.
 * An explanation reads few of them after the forward pass: the logits, the
 * attention maps, and what the gradient kernels and relevance rules read
 * (a linear layer's input, a softmax's output, a sum's operands). The other
 * values — a block's qkv before and after its bias, reshape and permute,
 * its attention scores, the MLP's pre-activation — are dead as soon as
 * their last consumer has run, so they share buffers: a value's slot is
 * free for the outputs of any node after its last reader.
 *
 * Slots are given greedily in node order, best fit among the free ones,
 * else the largest free one grows; one arena holds them all.
 *
 * A product (MatMul) also does the neighbours whose only work is a pass
 * over its operand or result, where nothing else reads what they compute:
 *  - a Transpose of B's last two axes: BLAS reads B transposed;
 *  - a Mul by a scalar after it: BLAS's alpha (attention's 1/sqrt(d));
 *  - an Add of a bias row after it: BLAS adds into the output prefilled
 *    with the bias (beta = 1), which also saves BLAS's zero fill.
 * Each saves a pass over memory. The result rounds as BLAS accumulates (a
 * bias joins the first block of the inner dimension), so it may differ from
 * the unfused one in the last bit: only a plain forward pass asks for fusion,
 * so that an explanation's numbers never depend on what else it keeps. */
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"
#include "ops/ops.h"

#define SLOT_ALIGN 64

typedef struct slot {
    size_t bytes;
    int busy_until; /* node index of the current occupant's last reader */
} slot;

static size_t value_bytes(const rp_value *v)
{
    size_t b = (size_t)v->t.count * rp_dtype_size(v->t.dtype);
    return (b + SLOT_ALIGN - 1) / SLOT_ALIGN * SLOT_ALIGN;
}

/* An activation the plan places: computed by a node at run time. */
static bool planned(const rp_graph *g, const rp_value *v)
{
    return v->kind == RP_VALUE_ACTIVATION && v->producer >= 0 && !g->nodes[v->producer].folded && v->shape_known &&
           v->t.count > 0 && rp_dtype_size(v->t.dtype) > 0;
}

static bool same_plan(const rp_graph *g, const bool *keep, bool fuse)
{
    if ((g->plan_fusion != NULL) != (keep && fuse))
        return false;
    if (!g->plan_keep || !keep)
        return !g->plan_keep && !keep;
    return memcmp(g->plan_keep, keep, (size_t)g->n_values * sizeof *keep) == 0;
}

/* root[v]: the value whose buffer v uses — v itself unless v is a reshape's
 * output, or one slice of its input, sharing the input's bytes — and
 * offset[v] (may be NULL): where in the root's bytes v starts. */
void rp_graph_alias_roots(const rp_graph *g, int *root, int64_t *offset)
{
    for (int v = 0; v < g->n_values; v++) {
        root[v] = v;
        if (offset)
            offset[v] = 0;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const rp_node *n = &g->nodes[i];
        if (n->folded || !n->op || !(n->op->flags & RP_OPF_ALIAS) || n->n_in < 1 || n->n_out < 1 || n->in[0] < 0 ||
            n->out[0] < 0)
            continue;
        const rp_value *x = &g->values[n->in[0]], *y = &g->values[n->out[0]];
        if (!planned(g, x) || !planned(g, y) || x->t.dtype != y->t.dtype)
            continue;
        int64_t at = 0;
        if (n->op->alias_offset) {
            rp_kctx c = {.node = n, .opset = n->opset, .in = n->in_t, .n_in = n->n_in, .out = n->out_t,
                         .n_out = n->n_out, .params = n->params};
            if (!n->op->alias_offset(&c, &at))
                continue;
        }
        size_t es = rp_dtype_size(x->t.dtype);
        if (at < 0 || at % (int64_t)es || at / (int64_t)es + y->t.count > x->t.count)
            continue;
        if (!n->op->alias_offset && x->t.count != y->t.count)
            continue;
        root[n->out[0]] = root[n->in[0]];
        if (offset)
            offset[n->out[0]] = offset[n->in[0]] + at;
    }
}

/* Who reads each value: how many nodes, and (when one) which. */
typedef struct readers {
    int *count, *only;
} readers;

/* A value only its one reader needs, and nothing after the forward pass. */
static bool passing(const rp_graph *g, int v, const bool *keep, const readers *r)
{
    const rp_value *x = &g->values[v];
    return !keep[v] && !x->is_graph_output && planned(g, x) && r->count[v] == 1;
}

static bool default_node(const rp_node *n, int n_in)
{
    return !n->folded && (!n->domain[0] || strcmp(n->domain, "ai.onnx") == 0) && n->n_in == n_in && n->n_out == 1 &&
           n->out[0] >= 0;
}

static bool default_op(const rp_node *n, const char *op_type, int n_in)
{
    return default_node(n, n_in) && strcmp(n->op_type, op_type) == 0;
}

/* The Transpose that gives product i its B, if it swaps just the last two
 * axes and only i reads it (-1: none). */
static int fusable_b_transpose(const rp_graph *g, int i, const bool *keep, const readers *r)
{
    const rp_node *n = &g->nodes[i];
    int b = n->in[1];
    if (b < 0 || !passing(g, b, keep, r)) /* passing: planned, so it has a producer */
        return -1;
    int t = g->values[b].producer;
    const rp_node *tn = &g->nodes[t];
    if (!default_op(tn, "Transpose", 1) || tn->in[0] < 0)
        return -1;
    const rp_value *x = &g->values[tn->in[0]];
    int rank = x->t.rank;
    if (rank < 2 || x->t.dtype != g->values[b].t.dtype)
        return -1;
    const rp_attr *perm = rp_node_attr(tn, "perm");
    /* Without perm, Transpose reverses the axes: a swap only at rank 2. */
    if (!perm)
        return rank == 2 ? t : -1;
    if (perm->type != RP_ATTR_INTS || perm->n != rank)
        return -1;
    for (int d = 0; d < rank; d++)
        if (perm->ints[d] != (d < rank - 2 ? d : d == rank - 2 ? rank - 1 : rank - 2))
            return -1;
    return t;
}

/* The Add of a bias row or Mul by a finite nonzero scalar that product i's
 * result goes through, if only it reads that result and its other operand
 * is such a constant (-1: none). */
static int fusable_epilogue(const rp_graph *g, int i, const bool *keep, const readers *r)
{
    int y = g->nodes[i].out[0];
    if (y < 0 || !passing(g, y, keep, r) || g->values[y].t.rank < 1)
        return -1;
    const rp_value *yv = &g->values[y];
    int e = r->only[y];
    const rp_node *en = &g->nodes[e];
    rp_op_role role = default_node(en, 2) ? rp_op_role_of(en->op) : RP_ROLE_NONE;
    bool add = role == RP_ROLE_SUM && !(en->op->flags & RP_OPF_SUBTRACTS), mul = role == RP_ROLE_PRODUCT;
    /* Before opset 7, Add and Mul broadcast only under a `broadcast` attribute. */
    if ((!add && !mul) || en->opset < 7)
        return -1;
    int c = en->in[0] == y ? en->in[1] : en->in[0];
    if (c < 0 || c == y)
        return -1;
    const rp_value *cv = &g->values[c], *zv = &g->values[en->out[0]];
    if (cv->kind != RP_VALUE_CONSTANT || !cv->t.data || cv->t.dtype != yv->t.dtype || cv->t.rank > yv->t.rank ||
        !planned(g, zv) || zv->t.dtype != yv->t.dtype || !rp_shape_equal(&zv->t, &yv->t))
        return -1;
    if (mul) {
        if (cv->t.count != 1 || (cv->t.dtype != RP_FLOAT && cv->t.dtype != RP_DOUBLE))
            return -1;
        double scale = rp_tensor_get_f64(&cv->t, 0);
        return scale != 0 && scale - scale == 0 ? e : -1; /* 0 * inf is NaN, not 0 */
    }
    int64_t row = yv->t.dims[yv->t.rank - 1];
    if (cv->t.count != row || (cv->t.rank && cv->t.dims[cv->t.rank - 1] != row))
        return -1;
    return e;
}

/* Plan the product fusions; a fused neighbour's output lives where the
 * product's does (its input's, for a Transpose), as a reshape's lives in its
 * input's. */
static void plan_fusions(const rp_graph *g, const bool *keep, const readers *r, rp_fusion *fusion, int *root,
                         int64_t *at)
{
    for (int i = 0; i < g->n_nodes; i++)
        fusion[i] = (rp_fusion){.done_by = -1, .epilogue = -1, .b_transpose = -1};
    for (int i = 0; i < g->n_nodes; i++) {
        const rp_node *n = &g->nodes[i];
        if (n->folded || !n->op || !(n->op->flags & RP_OPF_FUSES) || n->n_in != 2 || n->n_out != 1)
            continue;
        int t = fusable_b_transpose(g, i, keep, r);
        if (t >= 0) {
            fusion[i].b_transpose = t;
            fusion[t].done_by = i;
            root[g->nodes[t].out[0]] = g->nodes[t].in[0];
            at[g->nodes[t].out[0]] = at[g->nodes[t].in[0]];
        }
        int e = fusable_epilogue(g, i, keep, r);
        if (e >= 0) {
            fusion[i].epilogue = e;
            fusion[e].done_by = i;
            root[g->nodes[e].out[0]] = n->out[0];
        }
    }
    for (int v = 0; v < g->n_values; v++)
        while (root[root[v]] != root[v])
            root[v] = root[root[v]];
}

static void borrow(rp_graph *g, rp_value *v, void *data)
{
    if (!v->borrowed) {
        g->used_bytes -= v->t.count * (int64_t)rp_dtype_size(v->t.dtype);
        free(v->t.data);
    }
    v->t.data = data;
    v->borrowed = true;
}

rp_status rp_graph_plan_memory(rp_graph *g, const bool *keep, bool fuse, rp_error *err)
{
    const char *path = g->path ? g->path : "model";
    if (!g->prepared)
        return rp_fail(err, RP_ERR_ARG, "%s: memory plan before prepare", path);
    if (same_plan(g, keep, fuse))
        return RP_OK;
    rp_status st = RP_OK;
    size_t nv = (size_t)g->n_values + 1;
    int *root = malloc(sizeof *root * nv), *last_use = malloc(sizeof *last_use * nv);
    int64_t *at = malloc(sizeof *at * nv);
    int *slot_of = malloc(sizeof *slot_of * nv);
    bool *kept = malloc(sizeof *kept * nv);
    slot *slots = malloc(sizeof *slots * nv);
    size_t *offset = malloc(sizeof *offset * nv);
    void **fresh = malloc(sizeof *fresh * nv);
    bool *keep_copy = keep ? malloc(sizeof *keep_copy * nv) : NULL;
    fuse = fuse && keep;
    rp_fusion *fusion = fuse ? malloc(sizeof *fusion * ((size_t)g->n_nodes + 1)) : NULL;
    readers r = {fuse ? calloc(nv, sizeof *r.count) : NULL, fuse ? malloc(sizeof *r.only * nv) : NULL};
    uint8_t *arena = NULL;
    int n_slots = 0;
    if (!root || !at || !last_use || !slot_of || !kept || !slots || !offset || !fresh ||
        (keep && !keep_copy) || (fuse && (!fusion || !r.count || !r.only))) {
        st = rp_fail(err, RP_ERR_NOMEM, "%s: out of memory planning activations", path);
        goto done;
    }
    if (keep)
        rp_graph_alias_roots(g, root, at);
    else
        for (int v = 0; v < g->n_values; v++)
            root[v] = v, at[v] = 0;
    if (fuse) {
        for (int i = 0; i < g->n_nodes; i++) {
            const rp_node *n = &g->nodes[i];
            for (int k = 0; !n->folded && k < n->n_in; k++)
                if (n->in[k] >= 0) {
                    r.count[n->in[k]]++;
                    r.only[n->in[k]] = i;
                }
        }
        plan_fusions(g, keep, &r, fusion, root, at);
    }
    /* A buffer lives from its root's producer to the last reader of any
     * value in it, and is kept if any of them is. */
    for (int v = 0; v < g->n_values; v++) {
        last_use[v] = g->values[v].producer;
        slot_of[v] = -1;
        kept[v] = !keep;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const rp_node *n = &g->nodes[i];
        for (int k = 0; !n->folded && k < n->n_in; k++)
            if (n->in[k] >= 0 && last_use[root[n->in[k]]] < i)
                last_use[root[n->in[k]]] = i;
    }
    for (int v = 0; keep && v < g->n_values; v++)
        kept[root[v]] |= keep[v] || g->values[v].is_graph_output || !planned(g, &g->values[v]);
    for (int i = 0; keep && i < g->n_nodes; i++) {
        const rp_node *n = &g->nodes[i];
        for (int k = 0; !n->folded && k < n->n_out; k++) {
            int v = n->out[k];
            if (v < 0 || root[v] != v || kept[v])
                continue;
            size_t need = value_bytes(&g->values[v]);
            int best = -1, largest = -1;
            for (int s = 0; s < n_slots; s++) {
                if (slots[s].busy_until >= i)
                    continue;
                if (slots[s].bytes >= need && (best < 0 || slots[s].bytes < slots[best].bytes))
                    best = s;
                if (largest < 0 || slots[s].bytes > slots[largest].bytes)
                    largest = s;
            }
            int s = best >= 0 ? best : largest;
            if (s < 0) {
                s = n_slots++;
                slots[s].bytes = 0;
            }
            if (slots[s].bytes < need)
                slots[s].bytes = need;
            slots[s].busy_until = last_use[v] > i ? last_use[v] : i;
            slot_of[v] = s;
        }
    }
    size_t arena_bytes = 0;
    for (int s = 0; s < n_slots; s++) {
        offset[s] = arena_bytes;
        arena_bytes += slots[s].bytes;
    }
    if (arena_bytes && !(arena = aligned_alloc(SLOT_ALIGN, arena_bytes))) {
        st = rp_fail(err, RP_ERR_NOMEM, "%s: out of memory for %zu bytes of shared activations", path, arena_bytes);
        goto done;
    }
    /* Kept roots that share now get their own buffers: all of them are
     * allocated before any value changes, so that a failure leaves the old
     * plan whole (its fusions included: they skip nodes whose outputs the
     * old buffers hold). */
    for (int v = 0; v < g->n_values; v++) {
        const rp_value *x = &g->values[v];
        fresh[v] = NULL;
        if (planned(g, x) && root[v] == v && slot_of[v] < 0 && x->borrowed &&
            !(fresh[v] = calloc((size_t)x->t.count, rp_dtype_size(x->t.dtype)))) {
            st = rp_fail(err, RP_ERR_NOMEM, "%s: out of memory for value '%s'", path, x->name);
            for (int u = 0; u < v; u++)
                free(fresh[u]);
            goto done;
        }
    }
    for (int v = 0; v < g->n_values; v++)
        if (fresh[v]) {
            rp_value *x = &g->values[v];
            x->t.data = fresh[v];
            x->borrowed = false;
            g->used_bytes += x->t.count * (int64_t)rp_dtype_size(x->t.dtype);
        }
    for (int v = 0; v < g->n_values; v++)
        if (slot_of[v] >= 0)
            borrow(g, &g->values[v], arena + offset[slot_of[v]]);
    for (int v = 0; v < g->n_values; v++)
        if (root[v] != v)
            borrow(g, &g->values[v], (uint8_t *)g->values[root[v]].t.data + at[v]);
    g->used_bytes += (int64_t)arena_bytes - g->arena_bytes;
    free(g->arena);
    g->arena = arena;
    g->arena_bytes = (int64_t)arena_bytes;
    arena = NULL;
    if (keep)
        memcpy(keep_copy, keep, (size_t)g->n_values * sizeof *keep);
    free(g->plan_keep);
    g->plan_keep = keep_copy;
    keep_copy = NULL;
    free(g->plan_fusion);
    g->plan_fusion = fusion;
    fusion = NULL;
done:
    free(arena);
    free(keep_copy);
    free(fusion);
    free(r.count);
    free(r.only);
    free(root);
    free(at);
    free(last_use);
    free(slot_of);
    free(kept);
    free(slots);
    free(offset);
    free(fresh);
    return st;
}

void rp_node_mark_gradient_reads(const rp_graph *g, const rp_node *n, bool *keep)
{
    if (n->folded || !n->op || !n->op->backward)
        return;
    uint32_t f = n->op->flags;
    int differentiable = 0;
    for (int k = 0; k < n->n_in; k++)
        differentiable += n->in[k] >= 0 && g->values[n->in[k]].kind != RP_VALUE_CONSTANT &&
                          !rp_op_input_nondiff(n->op, k);
    for (int k = 0; k < n->n_in; k++) {
        int v = n->in[k];
        if (v < 0)
            continue;
        bool nondiff = rp_op_input_nondiff(n->op, k);
        bool takes_grad = !nondiff && g->values[v].kind != RP_VALUE_CONSTANT;
        bool read = true;
        if (!nondiff && (f & RP_OPF_GRAD_NO_INPUTS))
            read = false;
        else if (!nondiff && (f & RP_OPF_GRAD_OTHER_INPUTS))
            read = differentiable - (takes_grad ? 1 : 0) > 0;
        keep[v] |= read;
    }
    for (int k = 0; !(f & RP_OPF_GRAD_NO_OUTPUTS) && k < n->n_out; k++)
        if (n->out[k] >= 0)
            keep[n->out[k]] = true;
}

void rp_graph_mark_gradient_reads(const rp_graph *g, bool *keep)
{
    for (int i = 0; i < g->n_nodes; i++)
        rp_node_mark_gradient_reads(g, &g->nodes[i], keep);
}

void rp_graph_poison_shared(rp_graph *g)
{
    if (g->arena)
        memset(g->arena, 0xff, (size_t)g->arena_bytes); /* all-ones bits: a NaN in every float */
}
