/* Softmax, LogSoftmax and LayerNormalization over float32.
 *
 * Softmax and LogSoftmax changed meaning at opset 13: before, the input is
 * coerced to 2-D at `axis` (default 1) and each row of the flattened trailing
 * dims is normalised; from 13 on, only the single `axis` (default -1) is.
 * Both become an (outer, n, inner) walk decided at prepare.
 *
 * Sums and variances accumulate in double: attention rows of a few hundred
 * tiny exponentials, and relevance propagation divides by these later. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/fastmath.h"
#include "core/pool.h"
#include "ops/ops.h"

/* ---- Softmax / LogSoftmax ---- */

typedef struct softmax_params {
    int log;                 /* LogSoftmax */
    int64_t outer, n, inner; /* normalise over n elements inner apart */
} softmax_params;

static rp_status softmax_setup(rp_kctx *c, int coerce_2d, int64_t dflt_axis)
{
    const rp_tensor *x = c->in[0];
    if (x->dtype != RP_FLOAT)
        return rp_kfail(c, RP_ERR_DTYPE, "input is %s; expected float32", rp_dtype_name(x->dtype));
    int axis;
    rp_status st = rp_axis(c, rp_attr_int(c->node, "axis", dflt_axis), x->rank, &axis);
    if (st != RP_OK)
        return st;
    softmax_params *p = calloc(1, sizeof *p);
    if (!p)
        return rp_kfail(c, RP_ERR_NOMEM, "out of memory");
    c->params = p;
    p->log = c->node->op_type[0] == 'L';
    p->outer = rp_shape_count(axis, x->dims);
    if (coerce_2d) {
        p->n = rp_shape_count(x->rank - axis, x->dims + axis);
        p->inner = 1;
    } else {
        p->n = x->rank ? x->dims[axis] : 1;
        p->inner = x->rank ? rp_shape_count(x->rank - axis - 1, x->dims + axis + 1) : 1;
    }
    if (!rp_tensor_set_shape(c->out[0], x->dtype, x->rank, x->dims))
        return rp_kfail(c, RP_ERR_SHAPE, "bad output shape");
    return RP_OK;
}

static rp_status softmax_prepare_2d(rp_kctx *c)
{
    return softmax_setup(c, 1, 1);
}

static rp_status softmax_prepare_axis(rp_kctx *c)
{
    return softmax_setup(c, 0, -1);
}

/* Sum in double with sixteen partial sums: the accuracy of double without a
 * serial chain of additions, and enough independent chains to fill the
 * adders (a row of a few hundred is otherwise latency-bound). */
#define SUM_LANES 16

/* The partial sums added pairwise, always in the same order. */
static inline double fold_lanes(double *s)
{
    for (int w = SUM_LANES / 2; w > 0; w /= 2)
        for (int q = 0; q < w; q++)
            s[q] += s[q + w];
    return s[0];
}

static inline double sum_f64_lanes(const float *restrict x, int64_t n)
{
    double s[SUM_LANES] = {0};
    int64_t r = 0;
    for (; r + SUM_LANES <= n; r += SUM_LANES)
        for (int q = 0; q < SUM_LANES; q++)
            s[q] += x[r + q];
    for (; r < n; r++)
        s[0] += x[r];
    return fold_lanes(s);
}

/* The row's max. A running float max is a serial chain the compiler will
 * not reorder (NaN and signed zeros), so compare integers instead: flipping
 * the magnitude bits of negative floats makes signed-integer order the
 * float order, and an integer max vectorises. A NaN row turns NaN in exp
 * whatever max it gives. */
static inline int32_t order_key(int32_t bits) /* its own inverse */
{
    return bits ^ (-(int32_t)((uint32_t)bits >> 31) & 0x7fffffff);
}

static inline float max_of_row(const float *restrict x, int64_t n)
{
    int32_t m = INT32_MIN;
    for (int64_t r = 0; r < n; r++) {
        int32_t v;
        memcpy(&v, &x[r], sizeof v);
        v = order_key(v);
        m = v > m ? v : m;
    }
    m = order_key(m);
    float f;
    memcpy(&f, &m, sizeof f);
    return f;
}

/* One contiguous row (the attention case), written so each loop vectorises. */
RP_VECTOR_CLONES static void softmax_row(const float *restrict x, float *restrict y, int64_t n)
{
    const float m = max_of_row(x, n);
    for (int64_t r = 0; r < n; r++)
        y[r] = rp_expf(x[r] - m);
    const float inv = (float)(1.0 / sum_f64_lanes(y, n));
    for (int64_t r = 0; r < n; r++)
        y[r] *= inv;
}

typedef struct softmax_job {
    const softmax_params *p;
    const float *x;
    float *y;
} softmax_job;

static void softmax_rows(void *ctx, int64_t begin, int64_t end)
{
    const softmax_job *job = ctx;
    const softmax_params *p = job->p;
    const int64_t n = p->n, inner = p->inner;
    for (int64_t row = begin; row < end; row++) {
        const int64_t o = row / inner, i = row % inner;
        const int64_t base = o * n * inner + i;
        const float *xr = job->x + base;
        float *yr = job->y + base;
        if (!p->log && inner == 1) {
            softmax_row(xr, yr, n);
            continue;
        }
        float m = xr[0];
        for (int64_t r = 1; r < n; r++)
            if (xr[r * inner] > m)
                m = xr[r * inner];
        double sum = 0;
        if (p->log) {
            for (int64_t r = 0; r < n; r++)
                sum += exp((double)xr[r * inner] - m);
            const double lse = log(sum);
            for (int64_t r = 0; r < n; r++)
                yr[r * inner] = (float)((double)xr[r * inner] - m - lse);
        } else {
            for (int64_t r = 0; r < n; r++) {
                float e = rp_expf(xr[r * inner] - m);
                yr[r * inner] = e;
                sum += e;
            }
            const float inv = (float)(1.0 / sum);
            for (int64_t r = 0; r < n; r++)
                yr[r * inner] *= inv;
        }
    }
}

static rp_status softmax_forward(rp_kctx *c)
{
    const softmax_params *p = c->params;
    if (p->n == 0)
        return RP_OK;
    softmax_job job = {p, c->in[0]->data, c->out[0]->data};
    rp_parallel_for(p->outer * p->inner, rp_rows_per_range(p->n), softmax_rows, &job);
    return RP_OK;
}

/* dX over one row, for Softmax from the saved Y,
 *   dx = y * (dy - sum(dy * y)),
 * and for LogSoftmax from X (softmax recomputed in double, not exp of float Y),
 *   dx = dy - softmax(x) * sum(dy). */
static rp_status softmax_backward(rp_kctx *c, rp_tensor *const *gout, rp_tensor *const *gin)
{
    const softmax_params *p = c->params;
    if (!gin[0] || !gout[0])
        return RP_OK;
    if (c->in[0]->dtype != RP_FLOAT || gin[0]->dtype != RP_FLOAT || gout[0]->dtype != RP_FLOAT)
        return rp_kfail(c, RP_ERR_DTYPE, "gradient of a %s input; only float32 is differentiated",
                        rp_dtype_name(c->in[0]->dtype));
    const float *x = c->in[0]->data, *y = c->out[0]->data, *gy = gout[0]->data;
    float *gx = gin[0]->data;
    const int64_t n = p->n, inner = p->inner;
    if (n == 0)
        return RP_OK;
    for (int64_t o = 0; o < p->outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            const int64_t base = o * n * inner + i;
            const float *gyr = gy + base;
            float *gxr = gx + base;
            double dot = 0;
            if (p->log) {
                const float *xr = x + base;
                float m = xr[0];
                for (int64_t r = 1; r < n; r++)
                    if (xr[r * inner] > m)
                        m = xr[r * inner];
                double sum = 0;
                for (int64_t r = 0; r < n; r++) {
                    sum += exp((double)xr[r * inner] - m);
                    dot += gyr[r * inner];
                }
                const double lse = m + log(sum);
                for (int64_t r = 0; r < n; r++) {
                    const double sm = exp((double)xr[r * inner] - lse);
                    gxr[r * inner] = (float)(gxr[r * inner] + (gyr[r * inner] - sm * dot));
                }
            } else {
                const float *yr = y + base;
                for (int64_t r = 0; r < n; r++)
                    dot += (double)gyr[r * inner] * yr[r * inner];
                for (int64_t r = 0; r < n; r++)
                    gxr[r * inner] =
                        (float)(gxr[r * inner] + (double)yr[r * inner] * (gyr[r * inner] - dot));
            }
        }
    return RP_OK;
}

/* ---- LayerNormalization ---- */

typedef struct layernorm_params {
    int64_t outer, n;      /* n: elements normalised together (dims axis..rank-1) */
    int64_t scount, bcount; /* Scale / B cover the last scount / bcount of each row */
    double eps;
    double acc[];          /* backward: dScale then dB summed over rows (scount + bcount) */
} layernorm_params;

/* Scale and B broadcast against a row of X: their dims (leading 1s dropped)
 * must equal X's trailing dims, all within the normalised ones. Returns the
 * element count, or -1 if the shape does not fit. */
static int64_t row_operand_count(const rp_tensor *t, const rp_tensor *x, int axis)
{
    int lead = 0;
    while (lead < t->rank && t->dims[lead] == 1)
        lead++;
    int m = t->rank - lead;
    if (m > x->rank - axis)
        return -1;
    for (int k = 0; k < m; k++)
        if (t->dims[lead + k] != x->dims[x->rank - m + k])
            return -1;
    return t->count;
}

static rp_status layernorm_prepare(rp_kctx *c)
{
    const rp_tensor *x = c->in[0], *scale = c->in[1];
    const rp_tensor *b = c->n_in > 2 ? c->in[2] : NULL;
    if (!scale)
        return rp_kfail(c, RP_ERR_ARG, "Scale input is required");
    if (x->dtype != RP_FLOAT)
        return rp_kfail(c, RP_ERR_DTYPE, "X is %s; expected float32", rp_dtype_name(x->dtype));
    if (scale->dtype != RP_FLOAT || (b && b->dtype != RP_FLOAT))
        return rp_kfail(c, RP_ERR_DTYPE, "Scale and B must be float32 like X");
    if (x->rank == 0)
        return rp_kfail(c, RP_ERR_SHAPE, "X is a scalar; expected rank >= 1");
    int axis;
    rp_status st = rp_axis(c, rp_attr_int(c->node, "axis", -1), x->rank, &axis);
    if (st != RP_OK)
        return st;
    char xs[96], ts[96];
    int64_t scount = row_operand_count(scale, x, axis);
    if (scount < 0)
        return rp_kfail(c, RP_ERR_SHAPE, "Scale %s does not match the normalised dims of X %s",
                        rp_shape_str(scale, ts, sizeof ts), rp_shape_str(x, xs, sizeof xs));
    int64_t bcount = b ? row_operand_count(b, x, axis) : 0;
    if (bcount < 0)
        return rp_kfail(c, RP_ERR_SHAPE, "B %s does not match the normalised dims of X %s",
                        rp_shape_str(b, ts, sizeof ts), rp_shape_str(x, xs, sizeof xs));

    layernorm_params *p = calloc(1, sizeof *p + (size_t)(scount + bcount) * sizeof p->acc[0]);
    if (!p)
        return rp_kfail(c, RP_ERR_NOMEM, "out of memory");
    c->params = p;
    p->outer = rp_shape_count(axis, x->dims);
    p->n = rp_shape_count(x->rank - axis, x->dims + axis);
    p->scount = scount;
    p->bcount = bcount;
    p->eps = rp_attr_float(c->node, "epsilon", 1e-5f);

    if (!rp_tensor_set_shape(c->out[0], RP_FLOAT, x->rank, x->dims))
        return rp_kfail(c, RP_ERR_SHAPE, "bad output shape");
    int64_t stat_dims[RP_MAX_RANK];
    for (int d = 0; d < x->rank; d++)
        stat_dims[d] = d < axis ? x->dims[d] : 1;
    for (int k = 1; k < c->n_out && k < 3; k++)
        if (c->out[k] && !rp_tensor_set_shape(c->out[k], RP_FLOAT, x->rank, stat_dims))
            return rp_kfail(c, RP_ERR_SHAPE, "bad output shape");
    return RP_OK;
}

/* Mean and 1 / sqrt(var + eps) of one row, in double. Two passes (E[x^2] -
 * E[x]^2 cancels badly when |mean| >> std), each with SUM_LANES partial
 * sums so the loop has no serial chain. */
RP_VECTOR_CLONES static void row_stats(const float *restrict x, int64_t n, double eps, double *mean_out,
                                       double *inv_out)
{
    const double mean = sum_f64_lanes(x, n) / (double)n;
    double ss[SUM_LANES] = {0};
    int64_t j = 0;
    for (; j + SUM_LANES <= n; j += SUM_LANES)
        for (int q = 0; q < SUM_LANES; q++) {
            double d = x[j + q] - mean;
            ss[q] += d * d;
        }
    for (; j < n; j++) {
        double d = x[j] - mean;
        ss[0] += d * d;
    }
    *mean_out = mean;
    *inv_out = 1.0 / sqrt(fold_lanes(ss) / (double)n + eps);
}

RP_VECTOR_CLONES static void normalize_row(const float *restrict x, float *restrict y, int64_t n, double mean,
                                           double inv, const float *restrict scale, const float *restrict bias)
{
    for (int64_t j = 0; j < n; j++) {
        double v = (x[j] - mean) * inv * scale[j];
        y[j] = (float)(bias ? v + bias[j] : v);
    }
}

typedef struct layernorm_job {
    const layernorm_params *p;
    const float *x, *scale, *b;
    float *y, *mean_out, *inv_out;
} layernorm_job;

static void layernorm_rows(void *ctx, int64_t begin, int64_t end)
{
    const layernorm_job *job = ctx;
    const layernorm_params *p = job->p;
    const int64_t n = p->n;
    const float *scale = job->scale, *b = job->b;
    for (int64_t o = begin; o < end; o++) {
        const float *xr = job->x + o * n;
        float *yr = job->y + o * n;
        double mean, inv;
        row_stats(xr, n, p->eps, &mean, &inv);
        if (p->scount == n && (!b || p->bcount == n)) {
            normalize_row(xr, yr, n, mean, inv, scale, b);
        } else {
            int64_t ks = 0, kb = 0;
            for (int64_t j = 0; j < n; j++) {
                double v = (xr[j] - mean) * inv * scale[ks];
                if (b) {
                    v += b[kb];
                    if (++kb == p->bcount)
                        kb = 0;
                }
                if (++ks == p->scount)
                    ks = 0;
                yr[j] = (float)v;
            }
        }
        if (job->mean_out)
            job->mean_out[o] = (float)mean;
        if (job->inv_out)
            job->inv_out[o] = (float)inv;
    }
}

static rp_status layernorm_forward(rp_kctx *c)
{
    const layernorm_params *p = c->params;
    const float *x = c->in[0]->data;
    const float *scale = c->in[1]->data;
    const float *b = p->bcount ? c->in[2]->data : NULL;
    float *y = c->out[0]->data;
    float *mean_out = c->n_out > 1 && c->out[1] ? c->out[1]->data : NULL;
    float *inv_out = c->n_out > 2 && c->out[2] ? c->out[2]->data : NULL;
    const int64_t n = p->n;
    if (n == 0) {
        /* Empty rows: X and Y hold nothing (their data may be NULL, and
         * NULL + 0 is undefined in C); the statistics of nothing are NaN,
         * as 0/0 makes them below and numpy's mean does. */
        for (int64_t o = 0; o < p->outer; o++) {
            if (mean_out)
                mean_out[o] = NAN;
            if (inv_out)
                inv_out[o] = NAN;
        }
        return RP_OK;
    }
    layernorm_job job = {p, x, scale, b, y, mean_out, inv_out};
    rp_parallel_for(p->outer, rp_rows_per_range(n), layernorm_rows, &job);
    return RP_OK;
}

/* Per row, with xhat = (x - mean) * inv and g = dY * scale (repeating):
 *   dX     = inv * (g - mean(g) - xhat * mean(g * xhat))
 *   dScale = sum over rows and repeats of dY * xhat,  dB = sum of dY.
 * Were the optional Mean and InvStdDev outputs differentiated (they are in
 * no inference graph, but a nonzero gradient must not be dropped):
 *   dMean/dx = 1/n,  dInv/dx = -inv^2 * xhat / n.
 * Statistics are recomputed per row exactly as forward does; dScale and dB
 * sum in double in params->acc and are added into their gradients at the end. */
static rp_status layernorm_backward(rp_kctx *c, rp_tensor *const *gout, rp_tensor *const *gin)
{
    layernorm_params *p = c->params;
    rp_tensor *gxt = gin[0];
    rp_tensor *gst = c->n_in > 1 ? gin[1] : NULL;
    rp_tensor *gbt = c->n_in > 2 && p->bcount ? gin[2] : NULL;
    const rp_tensor *gyt = gout[0];
    const rp_tensor *gmt = c->n_out > 1 ? gout[1] : NULL;
    const rp_tensor *git = c->n_out > 2 ? gout[2] : NULL;
    if ((!gxt && !gst && !gbt) || (!gyt && !gmt && !git))
        return RP_OK;
    for (int k = 0; k < 3 && k < c->n_in; k++)
        if (gin[k] && gin[k]->dtype != RP_FLOAT)
            return rp_kfail(c, RP_ERR_DTYPE, "gradient of input %d is %s; only float32 is differentiated", k,
                            rp_dtype_name(gin[k]->dtype));
    for (int k = 0; k < 3 && k < c->n_out; k++)
        if (gout[k] && gout[k]->dtype != RP_FLOAT)
            return rp_kfail(c, RP_ERR_DTYPE, "gradient of output %d is %s; only float32 is differentiated", k,
                            rp_dtype_name(gout[k]->dtype));
    const float *x = c->in[0]->data, *scale = c->in[1]->data;
    const float *gy = gyt ? gyt->data : NULL;
    const float *gmean = gmt ? gmt->data : NULL, *ginv = git ? git->data : NULL;
    float *gx = gxt ? gxt->data : NULL;
    double *ds = p->acc, *db = p->acc + p->scount;
    const int64_t n = p->n;
    if (n == 0)
        return RP_OK;
    for (int64_t k = 0; k < p->scount + p->bcount; k++)
        p->acc[k] = 0;
    for (int64_t o = 0; o < p->outer; o++) {
        const float *xr = x + o * n;
        const float *gyr = gy ? gy + o * n : NULL;
        double mean, inv;
        row_stats(xr, n, p->eps, &mean, &inv);
        /* Sums of g and g * xhat over the row; dScale and dB on the way. */
        double sg = 0, sgx = 0;
        if (gyr) {
            int64_t ks = 0, kb = 0;
            for (int64_t j = 0; j < n; j++) {
                const double xh = (xr[j] - mean) * inv, dy = gyr[j], g = dy * scale[ks];
                sg += g;
                sgx += g * xh;
                ds[ks] += dy * xh;
                if (p->bcount) {
                    db[kb] += dy;
                    if (++kb == p->bcount)
                        kb = 0;
                }
                if (++ks == p->scount)
                    ks = 0;
            }
        }
        if (!gx)
            continue;
        /* dX_j = inv * (g_j - a - xhat_j * b) + gmean / n - ginv * inv^2 * xhat_j / n */
        const double a = sg / (double)n;
        double b = sgx / (double)n;
        const double gm = gmean ? gmean[o] : 0;
        if (ginv)
            b += ginv[o] * inv / (double)n; /* folded into the xhat term, times inv below */
        float *gxr = gx + o * n;
        int64_t ks = 0;
        for (int64_t j = 0; j < n; j++) {
            const double xh = (xr[j] - mean) * inv;
            const double g = gyr ? (double)gyr[j] * scale[ks] : 0;
            gxr[j] = (float)(gxr[j] + (inv * (g - a - xh * b) + gm / (double)n));
            if (++ks == p->scount)
                ks = 0;
        }
    }
    if (gst && gyt)
        for (int64_t k = 0; k < p->scount; k++)
            ((float *)gst->data)[k] = (float)(((float *)gst->data)[k] + ds[k]);
    if (gbt && gyt)
        for (int64_t k = 0; k < p->bcount; k++)
            ((float *)gbt->data)[k] = (float)(((float *)gbt->data)[k] + db[k]);
    return RP_OK;
}

/* LogSoftmax is no piece of a spelled-out normalisation. */
#define SOFTMAX(name, since, prep, more_flags)                                                               \
    RP_OP(name, since, .min_in = 1, .max_in = 1, .role = RP_ROLE_MAP, .flags = (more_flags), .prepare = prep, \
          .forward = softmax_forward, .backward = softmax_backward)

const rp_op rp_ops_normalize[] = {
    SOFTMAX("Softmax", 1, softmax_prepare_2d, RP_OPF_GRAD_NO_INPUTS | RP_OPF_SPELLS_NORM),
    SOFTMAX("Softmax", 13, softmax_prepare_axis, RP_OPF_GRAD_NO_INPUTS | RP_OPF_SPELLS_NORM),
    SOFTMAX("LogSoftmax", 1, softmax_prepare_2d, 0),
    SOFTMAX("LogSoftmax", 13, softmax_prepare_axis, 0),
    RP_OP_OUTS("LayerNormalization", 17, 1, 3, .min_in = 2, .max_in = 3, .role = RP_ROLE_MAP,
               .flags = RP_OPF_GRAD_NO_OUTPUTS | RP_OPF_SPELLS_NORM, .prepare = layernorm_prepare,
               .forward = layernorm_forward, .backward = layernorm_backward),
};
const size_t rp_ops_normalize_count = sizeof rp_ops_normalize / sizeof rp_ops_normalize[0];
