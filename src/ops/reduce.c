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
 * these sums); integer dtypes accumulate exactly in int64. Gradients are
 * float32 only (see backward at the end). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/convert.h"
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
    case RED_L2: {
        /* A sum of squares that wrapped negative has no norm: NaN, which
         * converts to 0 (core/convert.h); a norm past int32 saturates. */
        int64_t r = rp_sat_i64(sqrt((double)fold_int(p, RED_SUMSQ, x, dt, base, 0)));
        return r > hi ? hi : r;
    }
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

/* ---- backward ----
 *
 * The same two walks as forward: for each output element o (kept groups, C
 * order) and its reduced set, add dY[o] times dY/dX into dX over the set.
 * Whatever the forward value does not give exactly (a norm, a log-sum-exp)
 * is recomputed from X in double rather than read back from float Y.
 * ReduceProd has no backward: its gradient at zeros needs the product of
 * the others, which is not worth it for any model we run. */

/* Index of the set's first arg-extremum, as an offset into X. A NaN wins as
 * in forward (its first occurrence); an empty set gives -1. */
static int64_t arg_extreme(const reduce_params *p, const float *x, int64_t base, int max)
{
    int64_t idx[RP_MAX_RANK] = {0};
    const int last = p->nr - 1;
    const int64_t n = p->rdim[last], s = p->rstride[last];
    int64_t off = base, best_off = -1;
    float best = 0;
    if (p->rcount == 0)
        return -1;
    for (;;) {
        for (int64_t j = 0; j < n; j++) {
            float v = x[off + j * s];
            if (best_off < 0 || (best == best && (v != v || (max ? v > best : v < best)))) {
                best = v;
                best_off = off + j * s;
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
            return best_off;
    }
}

/* dX[e] += g * dY/dX[e] over the reduced set at base; aux is the per-set
 * factor the kind needs (1/count, 1/norm, 1/sum, or the log-sum-exp). */
static void spread(const reduce_params *p, const float *x, float *gx, int64_t base, double g, double aux)
{
    int64_t idx[RP_MAX_RANK] = {0};
    const int last = p->nr - 1;
    const int64_t n = p->rdim[last], s = p->rstride[last];
    int64_t off = base;
    if (p->rcount == 0)
        return;
    for (;;) {
        for (int64_t j = 0; j < n; j++) {
            const int64_t e = off + j * s;
            const double v = x[e];
            double d;
            switch (p->kind) {
            case RED_MEAN: case RED_LOGSUM: d = g * aux; break;
            case RED_SUMSQ: d = 2 * g * v; break;
            case RED_L2: d = g * v * aux; break;
            case RED_L1: d = v > 0 ? g : v < 0 ? -g : 0; break;
            case RED_LOGSUMEXP: d = g * exp(v - aux); break;
            default: d = g; break; /* RED_SUM */
            }
            gx[e] = (float)(gx[e] + d);
        }
        int gi = last - 1;
        for (; gi >= 0; gi--) {
            off += p->rstride[gi];
            if (++idx[gi] < p->rdim[gi])
                break;
            off -= p->rstride[gi] * p->rdim[gi];
            idx[gi] = 0;
        }
        if (gi < 0)
            return;
    }
}

static rp_status reduce_backward(rp_kctx *c, rp_tensor *const *gout, rp_tensor *const *gin)
{
    const reduce_params *p = c->params;
    const rp_tensor *x = c->in[0];
    rp_tensor *gxt = gin[0];
    const rp_tensor *gyt = gout[0];
    if (!gxt || !gyt)
        return RP_OK;
    if (x->dtype != RP_FLOAT || gxt->dtype != RP_FLOAT || gyt->dtype != RP_FLOAT)
        return rp_kfail(c, RP_ERR_DTYPE, "gradient of a %s input; only float32 is differentiated",
                        rp_dtype_name(x->dtype));
    if (p->kind == RED_PROD)
        return rp_kfail(c, RP_ERR_UNSUPPORTED, "no gradient for ReduceProd");
    const float *xd = x->data, *gy = gyt->data;
    float *gx = gxt->data;
    if (p->copy) {
        for (int64_t i = 0; i < x->count; i++)
            gx[i] += gy[i];
        return RP_OK;
    }
    int64_t idx[RP_MAX_RANK] = {0};
    const int last = p->nk - 1;
    const int64_t n = p->kdim[last], s = p->kstride[last];
    int64_t off = 0, o = 0;
    if (gyt->count == 0 || p->rcount == 0)
        return RP_OK;
    for (;;) {
        for (int64_t j = 0; j < n; j++, o++) {
            const int64_t base = off + j * s;
            const double g = gy[o];
            double aux = 0;
            switch (p->kind) {
            case RED_MAX:
            case RED_MIN: {
                int64_t e = arg_extreme(p, xd, base, p->kind == RED_MAX);
                gx[e] = (float)(gx[e] + g);
                continue;
            }
            case RED_MEAN: aux = 1.0 / (double)p->rcount; break;
            case RED_L2: { /* at a zero norm the subgradient 0, as PyTorch */
                double nrm = reduce_real(p, xd, RP_FLOAT, base);
                aux = nrm > 0 ? 1.0 / nrm : 0;
                break;
            }
            case RED_LOGSUM: aux = 1.0 / fold_real(p, RED_SUM, xd, RP_FLOAT, base, 0, 0); break;
            case RED_LOGSUMEXP: aux = reduce_real(p, xd, RP_FLOAT, base); break;
            default: break;
            }
            spread(p, xd, gx, base, g, aux);
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

/* Each reduction twice: axes as an attribute, then (from `since`) as an
 * optional constant input. */
#define REDUCE(name, since, bw, op_role, more_flags)                                                               \
    RP_OP(name, 1, .min_in = 1, .max_in = 1, .role = op_role, .flags = (more_flags),                            \
          .prepare = reduce_prepare_attr, .forward = reduce_forward, .backward = bw),                              \
        RP_OP(name, since, .min_in = 1, .max_in = 2, .const_inputs = 1u << 1, .nondiff_inputs = 1u << 1,          \
              .role = op_role, .flags = (more_flags), .prepare = reduce_prepare_input, .forward = reduce_forward, \
              .backward = bw)

const rp_op rp_ops_reduce[] = {
    REDUCE("ReduceSum", 13, reduce_backward, RP_ROLE_POOL, RP_OPF_SPELLS_NORM),
    REDUCE("ReduceMean", 18, reduce_backward, RP_ROLE_POOL, RP_OPF_SPELLS_NORM),
    REDUCE("ReduceMax", 18, reduce_backward, RP_ROLE_OTHER, RP_OPF_SPELLS_NORM),
    REDUCE("ReduceMin", 18, reduce_backward, RP_ROLE_OTHER, 0),
    REDUCE("ReduceProd", 18, NULL, RP_ROLE_OTHER, 0),
    REDUCE("ReduceL1", 18, reduce_backward, RP_ROLE_OTHER, 0),
    REDUCE("ReduceL2", 18, reduce_backward, RP_ROLE_OTHER, 0),
    REDUCE("ReduceSumSquare", 18, reduce_backward, RP_ROLE_OTHER, 0),
    REDUCE("ReduceLogSum", 18, reduce_backward, RP_ROLE_OTHER, 0),
    REDUCE("ReduceLogSumExp", 18, reduce_backward, RP_ROLE_OTHER, 0),
};
const size_t rp_ops_reduce_count = sizeof rp_ops_reduce / sizeof rp_ops_reduce[0];
