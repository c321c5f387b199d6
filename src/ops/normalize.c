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
#include <stdlib.h>

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

static rp_status softmax_forward(rp_kctx *c)
{
    const softmax_params *p = c->params;
    const float *x = c->in[0]->data;
    float *y = c->out[0]->data;
    const int64_t n = p->n, inner = p->inner;
    if (n == 0)
        return RP_OK;
    for (int64_t o = 0; o < p->outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            const int64_t base = o * n * inner + i;
            const float *xr = x + base;
            float *yr = y + base;
            /* Shift by the row's max so exp never overflows; the result is
             * mathematically unchanged. */
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
                    double e = exp((double)xr[r * inner] - m);
                    yr[r * inner] = (float)e;
                    sum += e;
                }
                const double inv = 1.0 / sum;
                for (int64_t r = 0; r < n; r++)
                    yr[r * inner] = (float)(yr[r * inner] * inv);
            }
        }
    return RP_OK;
}

/* ---- LayerNormalization ---- */

typedef struct layernorm_params {
    int64_t outer, n;      /* n: elements normalised together (dims axis..rank-1) */
    int64_t scount, bcount; /* Scale / B cover the last scount / bcount of each row */
    double eps;
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

    layernorm_params *p = calloc(1, sizeof *p);
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
    for (int64_t o = 0; o < p->outer; o++) {
        const float *xr = x + o * n;
        float *yr = y + o * n;
        double sum = 0;
        for (int64_t j = 0; j < n; j++)
            sum += xr[j];
        const double mean = sum / (double)n;
        /* Two passes: E[x^2] - E[x]^2 cancels badly when |mean| >> std. */
        double ss = 0;
        for (int64_t j = 0; j < n; j++) {
            double d = xr[j] - mean;
            ss += d * d;
        }
        const double inv = 1.0 / sqrt(ss / (double)n + p->eps);
        /* Scale and B repeat every scount / bcount elements of the row. */
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
        if (mean_out)
            mean_out[o] = (float)mean;
        if (inv_out)
            inv_out[o] = (float)inv;
    }
    return RP_OK;
}

const rp_op rp_ops_normalize[] = {
    /* name, since, in min/max, out min/max, const, nondiff, flags, prepare, forward, backward */
    {"Softmax", 1, 1, 1, 1, 1, 0, 0, 0, softmax_prepare_2d, softmax_forward, NULL},
    {"Softmax", 13, 1, 1, 1, 1, 0, 0, 0, softmax_prepare_axis, softmax_forward, NULL},
    {"LogSoftmax", 1, 1, 1, 1, 1, 0, 0, 0, softmax_prepare_2d, softmax_forward, NULL},
    {"LogSoftmax", 13, 1, 1, 1, 1, 0, 0, 0, softmax_prepare_axis, softmax_forward, NULL},
    {"LayerNormalization", 17, 2, 3, 1, 3, 0, 0, 0, layernorm_prepare, layernorm_forward, NULL},
};
const size_t rp_ops_normalize_count = sizeof rp_ops_normalize / sizeof rp_ops_normalize[0];
