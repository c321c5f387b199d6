/* The one place the op families are put together. Adding an op = a row in its
 * family file; adding a family = one line in `families` and ops.h. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ops/ops.h"

static const struct {
    const rp_op *rows;
    const size_t *count;
} families[] = {
    {rp_ops_elementwise, &rp_ops_elementwise_count},
    {rp_ops_matmul, &rp_ops_matmul_count},
    {rp_ops_conv, &rp_ops_conv_count},
    {rp_ops_shape, &rp_ops_shape_count},
    {rp_ops_reduce, &rp_ops_reduce_count},
    {rp_ops_normalize, &rp_ops_normalize_count},
};
#define N_FAMILIES ((int)(sizeof families / sizeof families[0]))

const rp_op_family *rp_op_families(int *n)
{
    static rp_op_family all[N_FAMILIES];
    for (int f = 0; f < N_FAMILIES; f++)
        all[f] = (rp_op_family){families[f].rows, *families[f].count};
    *n = N_FAMILIES;
    return all;
}

const rp_op *rp_op_lookup(const char *op_type, int opset)
{
    const rp_op *best = NULL;
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (size_t i = 0; i < *families[f].count; i++) {
            const rp_op *r = &families[f].rows[i];
            if (strcmp(r->name, op_type) == 0 && r->since_opset <= opset &&
                (!best || r->since_opset > best->since_opset))
                best = r;
        }
    return best;
}

int rp_op_known(const char *op_type)
{
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (size_t i = 0; i < *families[f].count; i++)
            if (strcmp(families[f].rows[i].name, op_type) == 0)
                return 1;
    return 0;
}

bool rp_op_moves_once(const rp_op *op, const rp_node *node, const rp_tensor *const *in)
{
    if (!op)
        return false;
    return (op->flags & RP_OPF_MOVES_ONCE) || (op->moves_once && op->moves_once(node, in));
}

int64_t rp_attr_int(const rp_node *n, const char *name, int64_t dflt)
{
    const rp_attr *a = rp_node_attr(n, name);
    return a && a->type == RP_ATTR_INT ? a->i : dflt;
}

float rp_attr_float(const rp_node *n, const char *name, float dflt)
{
    const rp_attr *a = rp_node_attr(n, name);
    return a && a->type == RP_ATTR_FLOAT ? a->f : dflt;
}

const char *rp_attr_string(const rp_node *n, const char *name, const char *dflt)
{
    const rp_attr *a = rp_node_attr(n, name);
    return a && a->type == RP_ATTR_STRING && a->s ? a->s : dflt;
}

int rp_attr_ints(const rp_node *n, const char *name, int64_t *out, int cap)
{
    const rp_attr *a = rp_node_attr(n, name);
    if (!a || a->type != RP_ATTR_INTS)
        return -1;
    for (int64_t i = 0; i < a->n && i < cap; i++)
        out[i] = a->ints[i];
    return a->n > INT32_MAX ? INT32_MAX : (int)a->n;
}

rp_status rp_kfail(rp_kctx *c, rp_status code, const char *fmt, ...)
{
    char body[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    return rp_fail(c->err, code, "node '%s' (%s, opset %d): %s", c->node ? c->node->name : "?",
                   c->node ? c->node->op_type : "?", c->opset, body);
}

rp_status rp_axis(rp_kctx *c, int64_t axis, int rank, int *out)
{
    int64_t a = axis < 0 ? axis + rank : axis;
    if (a < 0 || (a >= rank && !(rank == 0 && a == 0)))
        return rp_kfail(c, RP_ERR_VALUE, "axis %lld out of range for rank %d", (long long)axis, rank);
    *out = (int)a;
    return RP_OK;
}

rp_status rp_broadcast_shape(rp_kctx *c, const rp_tensor *const *ts, int n, rp_tensor *out)
{
    int rank = 0;
    for (int k = 0; k < n; k++)
        if (ts[k] && ts[k]->rank > rank)
            rank = ts[k]->rank;
    int64_t dims[RP_MAX_RANK];
    for (int d = 0; d < rank; d++) {
        int64_t dim = 1;
        for (int k = 0; k < n; k++) {
            if (!ts[k])
                continue;
            int off = rank - ts[k]->rank;
            if (d < off)
                continue;
            int64_t v = ts[k]->dims[d - off];
            if (v == dim || v == 1)
                continue;
            if (dim == 1) {
                dim = v;
                continue;
            }
            char a[96], b[96];
            return rp_kfail(c, RP_ERR_SHAPE, "shapes %s and %s do not broadcast",
                            rp_shape_str(ts[0], a, sizeof a), rp_shape_str(ts[k], b, sizeof b));
        }
        dims[d] = dim;
    }
    rp_dtype dt = out->dtype;
    rp_tensor_set_shape(out, dt, rank, dims);
    return RP_OK;
}

void rp_broadcast_strides(const rp_tensor *t, const rp_tensor *out, int64_t *strides)
{
    int off = out->rank - t->rank;
    int64_t s = 1;
    for (int d = out->rank - 1; d >= 0; d--) {
        if (d < off) {
            strides[d] = 0;
            continue;
        }
        int64_t dim = t->dims[d - off];
        strides[d] = dim == 1 ? 0 : s;
        s *= dim;
    }
}
