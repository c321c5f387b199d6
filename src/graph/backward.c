#include "graph/backward.h"

#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

static bool is_float(const rp_value *v)
{
    return v->t.dtype == RP_FLOAT;
}

void rp_valuebuf_free(rp_valuebuf *b)
{
    if (!b)
        return;
    for (int i = 0; i < b->n; i++)
        free(b->t[i].data);
    for (int i = 0; i < b->n_pool; i++)
        free(b->pool[i]);
    free(b->t);
    free(b->on_path);
    free(b->keep);
    free(b->floats);
    free(b->pool);
    free(b->pool_floats);
    memset(b, 0, sizeof *b);
}

/* Room for one more pool entry; false if the pool cannot grow. */
static bool pool_room(rp_valuebuf *b)
{
    if (b->n_pool < b->cap_pool)
        return true;
    int cap = b->cap_pool ? 2 * b->cap_pool : 16;
    float **pool = realloc(b->pool, sizeof *pool * (size_t)cap);
    if (pool)
        b->pool = pool;
    int64_t *sizes = pool ? realloc(b->pool_floats, sizeof *sizes * (size_t)cap) : NULL;
    if (!sizes)
        return false;
    b->pool_floats = sizes;
    b->cap_pool = cap;
    return true;
}

/* Move v's buffer to the pool; if the pool cannot grow, free it instead
 * (the next acquire allocates anew). */
static void give_back(rp_valuebuf *b, int v)
{
    float *data = b->t[v].data;
    if (!data)
        return;
    b->t[v].data = NULL;
    if (!pool_room(b)) {
        free(data);
        b->floats[v] = 0;
        return;
    }
    b->pool[b->n_pool] = data;
    b->pool_floats[b->n_pool++] = b->floats[v];
    b->floats[v] = 0;
}

void rp_valuebuf_pass_pool(rp_valuebuf *from, rp_valuebuf *to)
{
    /* If `to` cannot grow, the rest stays where it is: still pooled, still freed. */
    while (from->n_pool > 0 && pool_room(to)) {
        from->n_pool--;
        to->pool[to->n_pool] = from->pool[from->n_pool];
        to->pool_floats[to->n_pool++] = from->pool_floats[from->n_pool];
    }
}

void rp_valuebuf_release(rp_valuebuf *b, int v)
{
    if (b->transient && !b->keep[v])
        give_back(b, v);
}

rp_status rp_valuebuf_acquire(rp_valuebuf *b, int v, rp_error *err)
{
    rp_tensor *t = &b->t[v];
    if (t->data)
        return RP_OK;
    int64_t need = t->count > 0 ? t->count : 1;
    int best = -1; /* the smallest free buffer that fits */
    for (int i = 0; i < b->n_pool; i++)
        if (b->pool_floats[i] >= need && (best < 0 || b->pool_floats[i] < b->pool_floats[best]))
            best = i;
    if (best >= 0) {
        t->data = b->pool[best];
        b->floats[v] = b->pool_floats[best];
        b->pool[best] = b->pool[--b->n_pool];
        b->pool_floats[best] = b->pool_floats[b->n_pool];
    } else {
        t->data = malloc(sizeof(float) * (size_t)need);
        if (!t->data)
            return rp_fail(err, RP_ERR_NOMEM, "out of memory allocating %lld floats", (long long)need);
        b->floats[v] = need;
    }
    memset(t->data, 0, sizeof(float) * (size_t)need);
    return RP_OK;
}

rp_status rp_valuebuf_finish(rp_valuebuf *b, rp_error *err)
{
    rp_status st = RP_OK;
    for (int i = 0; b->transient && !st && i < b->n; i++)
        if (b->on_path[i] && b->keep[i])
            st = rp_valuebuf_acquire(b, i, err);
    return st;
}

void rp_valuebuf_zero(rp_valuebuf *b)
{
    for (int i = 0; i < b->n; i++) {
        if (!b->t[i].data)
            continue;
        if (b->transient) {
            give_back(b, i);
        } else {
            memset(b->t[i].data, 0, (size_t)b->t[i].count * sizeof(float));
        }
    }
}

rp_status rp_valuebuf_plan(rp_valuebuf *b, const rp_graph *g, int out_value, const int *targets, int n_targets,
                           rp_error *err)
{
    if (b->n != g->n_values) {
        bool transient = b->transient;
        rp_valuebuf_free(b);
        b->transient = transient;
        b->t = calloc((size_t)g->n_values, sizeof *b->t);
        b->on_path = calloc((size_t)g->n_values, sizeof *b->on_path);
        b->keep = calloc((size_t)g->n_values, sizeof *b->keep);
        b->floats = calloc((size_t)g->n_values, sizeof *b->floats);
        if (!b->t || !b->on_path || !b->keep || !b->floats) {
            rp_valuebuf_free(b);
            return rp_fail(err, RP_ERR_NOMEM, "out of memory");
        }
        b->n = g->n_values;
    }
    /* from_target: reachable forward from a target (or from any input when none given). */
    bool *from_target = calloc((size_t)g->n_values, sizeof *from_target);
    bool *to_out = calloc((size_t)g->n_values, sizeof *to_out);
    if (!from_target || !to_out) {
        free(from_target);
        free(to_out);
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    }
    if (n_targets == 0) {
        for (int i = 0; i < g->n_values; i++)
            from_target[i] = g->values[i].kind == RP_VALUE_INPUT;
    } else {
        for (int k = 0; k < n_targets; k++)
            from_target[targets[k]] = true;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const rp_node *n = &g->nodes[i];
        if (n->folded)
            continue;
        bool any = false;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0 && from_target[n->in[k]] && !rp_op_input_nondiff(n->op, k))
                any = true;
        if (any)
            for (int k = 0; k < n->n_out; k++)
                if (n->out[k] >= 0)
                    from_target[n->out[k]] = true;
    }
    to_out[out_value] = true;
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        const rp_node *n = &g->nodes[i];
        if (n->folded)
            continue;
        bool any = false;
        for (int k = 0; k < n->n_out; k++)
            if (n->out[k] >= 0 && to_out[n->out[k]])
                any = true;
        if (any)
            for (int k = 0; k < n->n_in; k++)
                if (n->in[k] >= 0 && !rp_op_input_nondiff(n->op, k))
                    to_out[n->in[k]] = true;
    }
    rp_status st = RP_OK;
    for (int i = 0; i < g->n_values; i++) {
        const rp_value *v = &g->values[i];
        b->on_path[i] = from_target[i] && to_out[i] && v->kind != RP_VALUE_CONSTANT && is_float(v);
        b->keep[i] = false;
        if (b->transient) {
            give_back(b, i);
            if (b->on_path[i])
                rp_tensor_set_shape(&b->t[i], RP_FLOAT, v->t.rank, v->t.dims);
            continue;
        }
        if (!b->on_path[i]) {
            rp_tensor_release(&b->t[i]);
            b->floats[i] = 0;
            continue;
        }
        if (b->t[i].data && rp_shape_equal(&b->t[i], &v->t))
            continue;
        rp_tensor_release(&b->t[i]);
        if ((st = rp_tensor_alloc(&b->t[i], RP_FLOAT, v->t.rank, v->t.dims, err)))
            break;
        b->floats[i] = b->t[i].count;
    }
    for (int k = 0; b->transient && st == RP_OK && k < n_targets; k++)
        b->keep[targets[k]] = true;
    free(from_target);
    free(to_out);
    if (st == RP_OK)
        rp_valuebuf_zero(b);
    return st;
}

rp_status rp_reverse_walk_run(rp_graph *g, int out_value, const rp_tensor *seed, const rp_reverse_walk *w,
                              rp_error *err)
{
    const char *path = g->path ? g->path : "model";
    rp_valuebuf *b = w->buf;
    rp_tensor *ry = &b->t[out_value];
    if (b->on_path[out_value] && b->transient) {
        rp_status st = rp_valuebuf_acquire(b, out_value, err);
        if (st)
            return st;
    }
    if (!b->on_path[out_value] || !ry->data)
        return rp_fail(err, RP_ERR_ARG,
                       "%s: output '%s' is not computed from the model input by any operation, so it has "
                       "no %s to explain", path, g->values[out_value].name, w->what);
    if (seed->dtype != RP_FLOAT || seed->count != ry->count)
        return rp_fail(err, RP_ERR_SHAPE, "%s: the %s walk's seed does not match output '%s'", path, w->what,
                       g->values[out_value].name);
    memcpy(ry->data, seed->data, (size_t)seed->count * sizeof(float));

    rp_tensor *out[RP_WALK_MAX_IO], *in[RP_WALK_MAX_IO];
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        rp_node *n = &g->nodes[i];
        if (n->folded)
            continue;
        const rp_node *seen = w->view ? w->view(w->ctx, g, i) : n;
        if (!seen)
            continue;
        if (n->n_out > RP_WALK_MAX_IO || seen->n_in > RP_WALK_MAX_IO)
            return rp_fail(err, RP_ERR_UNSUPPORTED, "%s: node '%s' (%s): more than %d inputs or outputs", path,
                           n->name, n->op_type, RP_WALK_MAX_IO);
        /* An output nothing was sent to has nothing (transient: no buffer). */
        bool any_out = false, any_in = false;
        for (int k = 0; k < n->n_out; k++) {
            int v = n->out[k];
            out[k] = v >= 0 && b->on_path[v] && b->t[v].data ? &b->t[v] : NULL;
            any_out |= out[k] != NULL;
        }
        for (int k = 0; any_out && k < seen->n_in; k++) {
            int v = seen->in[k];
            in[k] = v >= 0 && b->on_path[v] && !(w->blocked && w->blocked(w->ctx, g, i, seen, k)) ? &b->t[v] : NULL;
            any_in |= in[k] != NULL;
        }
        if (any_out && any_in) {
            for (int k = 0; b->transient && k < seen->n_in; k++) {
                rp_status st = in[k] ? rp_valuebuf_acquire(b, seen->in[k], err) : RP_OK;
                if (st)
                    return st;
            }
            rp_walk_step step = {.index = i, .node = seen, .out = out, .in = in};
            rp_status st = w->visit(w->ctx, g, &step, err);
            if (st)
                return st;
        }
        for (int k = 0; any_out && k < n->n_out; k++) {
            if (!out[k])
                continue;
            if (b->on_final)
                b->on_final(b->on_final_ctx, n->out[k], out[k]);
            rp_valuebuf_release(b, n->out[k]);
        }
    }
    return rp_valuebuf_finish(b, err);
}

static bool nondiff_input(void *ctx, const rp_graph *g, int i, const rp_node *seen, int k)
{
    (void)ctx;
    (void)g;
    (void)i;
    return rp_op_input_nondiff(seen->op, k);
}

static rp_status gradient_step(void *ctx, rp_graph *g, const rp_walk_step *s, rp_error *err)
{
    (void)ctx;
    const rp_node *n = s->node;
    if (!n->op->backward)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "%s: node '%s' (%s, opset %d): no gradient for this op",
                       g->path ? g->path : "model", n->name, n->op_type, n->opset);
    rp_kctx c = {.node = n, .opset = n->opset, .in = n->in_t, .n_in = n->n_in,
                 .out = n->out_t, .n_out = n->n_out, .params = n->params, .err = err};
    if (n->op->backward(&c, s->out, s->in))
        return rp_error_prefix(err, "%s (gradient)", g->path ? g->path : "model");
    return RP_OK;
}

rp_status rp_graph_backward(rp_graph *g, int out_value, const rp_tensor *seed, rp_valuebuf *grads, rp_error *err)
{
    rp_reverse_walk w = {.buf = grads, .what = "gradient", .blocked = nondiff_input, .visit = gradient_step};
    return rp_reverse_walk_run(g, out_value, seed, &w, err);
}
