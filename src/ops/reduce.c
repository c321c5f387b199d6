/* Reductions: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd,
 * ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSum, ReduceLogSumExp.
 *
 * Axes come from the `axes` attribute up to ReduceSum-11 / other-Reduce-17 and
 * from an optional constant second input after that. Prepare merges runs of
 * adjacent dims that are all kept or all reduced into groups, so the usual
 * cases (one reduced block, or everything) become a plain
 * (outer, reduced, inner) walk; forward steps odometers over the groups and
 * never divides an index.
 *
 * Real dtypes accumulate in double (relevance propagation later divides by
 * these sums); integer dtypes accumulate exactly in int64. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

typedef enum red_kind {
    RED_SUM,
    RED_MEAN,
    RED_MAX,
    RED_MIN,
    RED_PROD,
    RED_L1,
    RED_L2,
    RED_SUMSQ,
    RED_LOGSUM,
    RED_LOGSUMEXP
} red_kind;

typedef struct reduce_params {
    red_kind kind;
    int copy;                       /* noop_with_empty_axes and no axes: Y = X */
    int nk, nr;                     /* kept / reduced groups (each >= 1) */
    int64_t kdim[RP_MAX_RANK], kstride[RP_MAX_RANK]; /* outermost first */
    int64_t rdim[RP_MAX_RANK], rstride[RP_MAX_RANK];
    int64_t rcount;                 /* elements per reduced set */
} reduce_params;

static red_kind kind_of(const char *op)
{
    static const struct {
        const char *name;
        red_kind kind;
    } names[] = {
        {"ReduceSum", RED_SUM},       {"ReduceMean", RED_MEAN},
        {"ReduceMax", RED_MAX},       {"ReduceMin", RED_MIN},
        {"ReduceProd", RED_PROD},     {"ReduceL1", RED_L1},
        {"ReduceL2", RED_L2},         {"ReduceSumSquare", RED_SUMSQ},
        {"ReduceLogSum", RED_LOGSUM}, {"ReduceLogSumExp", RED_LOGSUMEXP},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(op, names[i].name) == 0)
            return names[i].kind;
    return RED_SUM; /* unreachable: rows below name only these ops */
}

static int is_int_dtype(rp_dtype dt)
{
    return dt == RP_INT32 || dt == RP_INT64;
}

/* Shared by both row kinds once the axes list is known (n_axes < 0: absent;
 * absent or empty means all axes, or none with noop_with_empty_axes). */
static rp_status reduce_setup(rp_kctx *c, const int64_t *axes, int n_axes, int noop)
{
    const rp_tensor *x = c->in[0];
    rp_tensor *y = c->out[0];
    red_kind kind = kind_of(c->node->op_type);
    if (x->dtype != RP_FLOAT && x->dtype != RP_DOUBLE && !is_int_dtype(x->dtype))
        return rp_kfail(c, RP_ERR_DTYPE, "input is %s; expected float32, float64, int32 or int64",
                        rp_dtype_name(x->dtype));
    if (is_int_dtype(x->dtype) && (kind == RED_LOGSUM || kind == RED_LOGSUMEXP))
        return rp_kfail(c, RP_ERR_DTYPE, "input is %s; expected float32 or float64",
                        rp_dtype_name(x->dtype));
    int keepdims = rp_attr_int(c->node, "keepdims", 1) != 0;

    reduce_params *p = calloc(1, sizeof *p);
    if (!p)
        return rp_kfail(c, RP_ERR_NOMEM, "out of memory");
    c->params = p;
    p->kind = kind;

    if (n_axes <= 0 && noop) {
        p->copy = 1;
        if (!rp_tensor_set_shape(y, x->dtype, x->rank, x->dims))
            return rp_kfail(c, RP_ERR_SHAPE, "bad output shape");
        return RP_OK;
    }

    int reduced[RP_MAX_RANK] = {0};
    for (int i = 0; i < n_axes; i++) {
        int a;
        rp_status st = rp_axis(c, axes[i], x->rank, &a);
        if (st != RP_OK)
            return st;
        if (x->rank == 0) /* a scalar "reduced" over axis 0 is still itself */
            continue;
        if (reduced[a])
            return rp_kfail(c, RP_ERR_VALUE, "axis %lld repeated in axes", (long long)axes[i]);
        reduced[a] = 1;
    }
    if (n_axes <= 0)
        for (int d = 0; d < x->rank; d++)
            reduced[d] = 1;

    int64_t dims[RP_MAX_RANK];
    int rank = 0;
    for (int d = 0; d < x->rank; d++)
        if (!reduced[d])
            dims[rank++] = x->dims[d];
        else if (keepdims)
            dims[rank++] = 1;
    if (!rp_tensor_set_shape(y, x->dtype, rank, dims))
        return rp_kfail(c, RP_ERR_SHAPE, "bad output shape");

    /* Groups, innermost first while walking, stored outermost first. */
    int64_t stride = 1;
    int nk = 0, nr = 0;
    int64_t kd[RP_MAX_RANK], ks[RP_MAX_RANK], rd[RP_MAX_RANK], rs[RP_MAX_RANK];
    int prev = -1;
    for (int d = x->rank - 1; d >= 0; d--) {
        int64_t n = x->dims[d];
        if (reduced[d]) {
            if (prev == 1)
                rd[nr - 1] *= n;
            else {
                rd[nr] = n;
                rs[nr++] = stride;
            }
        } else {
            if (prev == 0)
                kd[nk - 1] *= n;
            else {
                kd[nk] = n;
                ks[nk++] = stride;
            }
        }
        prev = reduced[d];
        stride *= n;
    }
    /* A dummy group of one keeps the walks free of special cases. */
    if (nk == 0) {
        kd[0] = 1;
        ks[0] = 0;
        nk = 1;
    }
    if (nr == 0) {
        rd[0] = 1;
        rs[0] = 0;
        nr = 1;
    }
    p->nk = nk;
    p->nr = nr;
    p->rcount = 1;
    for (int g = 0; g < nk; g++) {
        p->kdim[g] = kd[nk - 1 - g];
        p->kstride[g] = ks[nk - 1 - g];
    }
    for (int g = 0; g < nr; g++) {
        p->rdim[g] = rd[nr - 1 - g];
        p->rstride[g] = rs[nr - 1 - g];
        p->rcount *= p->rdim[g];
    }
    return RP_OK;
}

static rp_status reduce_prepare_attr(rp_kctx *c)
{
    int64_t axes[RP_MAX_RANK];
    int n = rp_attr_ints(c->node, "axes", axes, RP_MAX_RANK);
    if (n > RP_MAX_RANK)
        return rp_kfail(c, RP_ERR_VALUE, "%d axes; at most %d expected", n, RP_MAX_RANK);
    return reduce_setup(c, axes, n, 0);
}

static rp_status reduce_prepare_input(rp_kctx *c)
{
    int64_t axes[RP_MAX_RANK];
    int n = -1;
    const rp_tensor *a = c->n_in > 1 ? c->in[1] : NULL;
    if (a) {
        if (a->dtype != RP_INT64 && a->dtype != RP_INT32)
            return rp_kfail(c, RP_ERR_DTYPE, "axes input is %s; expected int64",
                            rp_dtype_name(a->dtype));
        if (a->rank > 1)
            return rp_kfail(c, RP_ERR_SHAPE, "axes input has rank %d; expected 1-D", a->rank);
        if (a->count > RP_MAX_RANK)
            return rp_kfail(c, RP_ERR_VALUE, "%lld axes; at most %d expected", (long long)a->count,
                            RP_MAX_RANK);
        if (a->count > 0 && !a->data)
            return rp_kfail(c, RP_ERR_VALUE, "axes input must be a constant");
        n = (int)a->count;
        for (int i = 0; i < n; i++)
            axes[i] = rp_tensor_get_i64(a, i);
    }
    return reduce_setup(c, axes, n, rp_attr_int(c->node, "noop_with_empty_axes", 0) != 0);
}

/* ---- forward ---- */

static double load_real(const void *x, rp_dtype dt, int64_t i)
{
    return dt == RP_FLOAT ? (double)((const float *)x)[i] : ((const double *)x)[i];
}

static int64_t load_int(const void *x, rp_dtype dt, int64_t i)
{
    return dt == RP_INT64 ? ((const int64_t *)x)[i] : (int64_t)((const int32_t *)x)[i];
}

/* Fold one reduced set starting at `base` into acc. `shift` is subtracted
 * before exp (LogSumExp's max, so exp never overflows). */
static double fold_real(const reduce_params *p, red_kind kind, const void *x, rp_dtype dt,
                        int64_t base, double acc, double shift)
{
    int64_t idx[RP_MAX_RANK] = {0};
    const int last = p->nr - 1;
    const int64_t n = p->rdim[last], s = p->rstride[last];
    int64_t off = base;
    for (;;) {
        for (int64_t j = 0; j < n; j++) {
            double v = load_real(x, dt, off + j * s);
            switch (kind) {
            /* v != v: a NaN wins and then stays, as in NumPy */
            case RED_MAX: if (v > acc || v != v) acc = v; break;
            case RED_MIN: if (v < acc || v != v) acc = v; break;
            case RED_PROD: acc *= v; break;
            case RED_L1: acc += fabs(v); break;
            case RED_L2: case RED_SUMSQ: acc += v * v; break;
            case RED_LOGSUMEXP: acc += exp(v - shift); break;
            default: acc += v; break;
            }
        }
        int g = last - 1;
        for (; g >= 0; g--) {
            off += p->rstride[g];
            if (++idx[g] < p->rdim[g])
                break;
            off -= p->rstride[g] * p->rdim[g];
            idx[g] = 0;
        }
        if (g < 0)
            return acc;
    }
}

static int64_t fold_int(const reduce_params *p, red_kind kind, const void *x, rp_dtype dt,
                        int64_t base, int64_t acc)
{
    int64_t idx[RP_MAX_RANK] = {0};
    const int last = p->nr - 1;
    const int64_t n = p->rdim[last], s = p->rstride[last];
    int64_t off = base;
    for (;;) {
        for (int64_t j = 0; j < n; j++) {
            int64_t v = load_int(x, dt, off + j * s);
            /* unsigned arithmetic: overflow wraps as integer tensors do elsewhere, never UB */
            uint64_t u = (uint64_t)v, a = (uint64_t)acc;
            switch (kind) {
            case RED_MAX: if (v > acc) acc = v; break;
            case RED_MIN: if (v < acc) acc = v; break;
            case RED_PROD: acc = (int64_t)(a * u); break;
            case RED_L1: acc = (int64_t)(a + (v < 0 ? 0 - u : u)); break;
            case RED_SUMSQ: acc = (int64_t)(a + u * u); break;
            default: acc = (int64_t)(a + u); break;
            }
        }
        int g = last - 1;
        for (; g >= 0; g--) {
            off += p->rstride[g];
            if (++idx[g] < p->rdim[g])
                break;
            off -= p->rstride[g] * p->rdim[g];
            idx[g] = 0;
        }
        if (g < 0)
            return acc;
    }
}

static double reduce_real(const reduce_params *p, const void *x, rp_dtype dt, int64_t base)
{
    const int64_t n = p->rcount;
    switch (p->kind) {
    case RED_MAX: return fold_real(p, RED_MAX, x, dt, base, -INFINITY, 0);
    case RED_MIN: return fold_real(p, RED_MIN, x, dt, base, INFINITY, 0);
    case RED_PROD: return fold_real(p, RED_PROD, x, dt, base, 1, 0);
    case RED_MEAN: return fold_real(p, RED_SUM, x, dt, base, 0, 0) / (double)n; /* empty: NaN */
    case RED_L2: return sqrt(fold_real(p, RED_L2, x, dt, base, 0, 0));
    case RED_LOGSUM: return log(fold_real(p, RED_SUM, x, dt, base, 0, 0));
    case RED_LOGSUMEXP: {
        if (n == 0)
            return -INFINITY;
        double m = fold_real(p, RED_MAX, x, dt, base, -INFINITY, 0);
        if (isinf(m)) /* all -inf, or a +inf: the shift would make NaN */
            return m;
        return m + log(fold_real(p, RED_LOGSUMEXP, x, dt, base, 0, m));
    }
    default: return fold_real(p, p->kind, x, dt, base, 0, 0);
    }
}

static int64_t reduce_int(const reduce_params *p, const void *x, rp_dtype dt, int64_t base)
{
    const int64_t lo = dt == RP_INT64 ? INT64_MIN : INT32_MIN;
    const int64_t hi = dt == RP_INT64 ? INT64_MAX : INT32_MAX;
    const int64_t n = p->rcount;
    switch (p->kind) {
    case RED_MAX: return fold_int(p, RED_MAX, x, dt, base, lo);
    case RED_MIN: return fold_int(p, RED_MIN, x, dt, base, hi);
    case RED_PROD: return fold_int(p, RED_PROD, x, dt, base, 1);
    case RED_MEAN: return n ? fold_int(p, RED_SUM, x, dt, base, 0) / n : 0;
    case RED_L2: return (int64_t)sqrt((double)fold_int(p, RED_SUMSQ, x, dt, base, 0));
    default: return fold_int(p, p->kind, x, dt, base, 0); /* log kinds refused at prepare */
    }
}

static rp_status reduce_forward(rp_kctx *c)
{
    const reduce_params *p = c->params;
    const rp_tensor *x = c->in[0];
    rp_tensor *y = c->out[0];
    const rp_dtype dt = x->dtype;
    if (p->copy) {
        if (x->count)
            memcpy(y->data, x->data, (size_t)x->count * rp_dtype_size(dt));
        return RP_OK;
    }
    /* Walk the kept groups with an odometer; output index o runs in C order. */
    int64_t idx[RP_MAX_RANK] = {0};
    const int last = p->nk - 1;
    const int64_t n = p->kdim[last], s = p->kstride[last];
    int64_t off = 0, o = 0;
    if (y->count == 0)
        return RP_OK;
    for (;;) {
        for (int64_t j = 0; j < n; j++, o++) {
            int64_t base = off + j * s;
            switch (dt) {
            case RP_FLOAT: ((float *)y->data)[o] = (float)reduce_real(p, x->data, dt, base); break;
            case RP_DOUBLE: ((double *)y->data)[o] = reduce_real(p, x->data, dt, base); break;
            case RP_INT32: ((int32_t *)y->data)[o] = (int32_t)reduce_int(p, x->data, dt, base); break;
            default: ((int64_t *)y->data)[o] = reduce_int(p, x->data, dt, base); break;
            }
        }
        int g = last - 1;
        for (; g >= 0; g--) {
            off += p->kstride[g];
            if (++idx[g] < p->kdim[g])
                break;
            off -= p->kstride[g] * p->kdim[g];
            idx[g] = 0;
        }
        if (g < 0)
            return RP_OK;
    }
}

#define RED_ATTR(name) {name, 1, 1, 1, 1, 1, 0, 0, 0, reduce_prepare_attr, reduce_forward, NULL}
#define RED_INPUT(name, since) \
    {name, since, 1, 2, 1, 1, 1u << 1, 1u << 1, 0, reduce_prepare_input, reduce_forward, NULL}

const rp_op rp_ops_reduce[] = {
    RED_ATTR("ReduceSum"),       RED_INPUT("ReduceSum", 13),
    RED_ATTR("ReduceMean"),      RED_INPUT("ReduceMean", 18),
    RED_ATTR("ReduceMax"),       RED_INPUT("ReduceMax", 18),
    RED_ATTR("ReduceMin"),       RED_INPUT("ReduceMin", 18),
    RED_ATTR("ReduceProd"),      RED_INPUT("ReduceProd", 18),
    RED_ATTR("ReduceL1"),        RED_INPUT("ReduceL1", 18),
    RED_ATTR("ReduceL2"),        RED_INPUT("ReduceL2", 18),
    RED_ATTR("ReduceSumSquare"), RED_INPUT("ReduceSumSquare", 18),
    RED_ATTR("ReduceLogSum"),    RED_INPUT("ReduceLogSum", 18),
    RED_ATTR("ReduceLogSumExp"), RED_INPUT("ReduceLogSumExp", 18),
};
const size_t rp_ops_reduce_count = sizeof rp_ops_reduce / sizeof rp_ops_reduce[0];
