/* Conv (1-D, 2-D and 3-D, NC[D]HW, float32) as im2col + sgemm, per image and
 * group; lower ranks run as 3-D with size-1 leading spatial axes:
 *   Y_g [M/G, P] = W_g [M/G, C/G*kd*kh*kw] x col [C/G*kd*kh*kw, P],  P = OD*OH*OW.
 * Three ways to get col, chosen in prepare:
 *   DIRECT  1x1 kernel, stride 1, no padding: col is X itself, no copy.
 *   PATCH   no padding, no dilation along W and windows that do not overlap
 *           along W (the ViT patch embedding, kernel = stride): each window
 *           row is one memcpy into a [P, ckk] matrix, which the GEMM reads
 *           transposed. With kernel = stride every input element is copied
 *           once, with no bounds tests and no zero fill.
 *   COLS    everything else: classic [ckk, P] im2col, with the valid
 *           output range of each kernel column worked out once so the inner
 *           copy has no bounds tests.
 * The im2col buffer lives at the end of the params block (one free()).
 *
 * Backward mirrors the paths: dX_g = W_g^T dY_g as a GEMM into the same
 * buffer (as dcol [ckk, P], or as drows [P, ckk] = dY_g^T W_g on the PATCH
 * path) scattered back with col2im / row2im (added, since windows may
 * overlap); DIRECT writes dX_g = W_g^T dY_g straight into dX. dW_g += dY_g
 * col^T re-gathers col from X into the buffer first. X, W and B are read
 * from ctx->in at call time (rules substitute them). */
#include <cblas.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/blas.h"
#include "ops/ops.h"

enum { CONV_DIRECT, CONV_PATCH, CONV_COLS };

typedef struct conv_params {
    int64_t n, c, d, h, w;       /* input */
    int64_t m, kd, kh, kw, od, oh, ow;
    int64_t sd, sh, sw, dd, dh, dw, pf, pt, pl; /* stride, dilation, front/top/left padding */
    int64_t group, cg, mg, ckk;  /* channels and filters per group; cg*kd*kh*kw */
    int has_bias;
    int path;
    float scratch[];             /* ckk * od*oh*ow floats unless DIRECT; forward and backward
                                    write it, so one node must not run twice at once */
} conv_params;

static int64_t ceil_div(int64_t a, int64_t b) /* b > 0 */
{
    return a >= 0 ? (a + b - 1) / b : -((-a) / b);
}

static int fits_blas(int64_t v)
{
    return v >= 0 && v <= INT_MAX;
}

static rp_status conv_prepare(rp_kctx *c)
{
    const rp_tensor *X = c->in[0], *W = c->in[1];
    const rp_tensor *B = c->n_in > 2 ? c->in[2] : NULL;
    char s1[96], s2[96];
    if (X->dtype != RP_FLOAT)
        return rp_kfail(c, RP_ERR_UNSUPPORTED, "%s input is not supported (float32 only)", rp_dtype_name(X->dtype));
    if (W->dtype != RP_FLOAT || (B && B->dtype != RP_FLOAT))
        return rp_kfail(c, RP_ERR_DTYPE, "W and B must be float32 like X");
    if (X->rank > 5)
        return rp_kfail(c, RP_ERR_UNSUPPORTED, "%d-D convolution is not supported (1-D to 3-D only)", X->rank - 2);
    if (X->rank < 3)
        return rp_kfail(c, RP_ERR_SHAPE, "X must be [N,C,W], [N,C,H,W] or [N,C,D,H,W], got %s",
                        rp_shape_str(X, s1, sizeof s1));
    if (W->rank != X->rank)
        return rp_kfail(c, RP_ERR_SHAPE, "W %s must have the rank of X %s", rp_shape_str(W, s1, sizeof s1),
                        rp_shape_str(X, s2, sizeof s2));
    int nsp = X->rank - 2;

    int64_t group = rp_attr_int(c->node, "group", 1);
    int64_t C = X->dims[1], M = W->dims[0];
    if (group < 1 || C % group != 0 || M % group != 0 || W->dims[1] * group != C)
        return rp_kfail(c, RP_ERR_SHAPE, "group %lld does not fit X %s and W %s", (long long)group,
                        rp_shape_str(X, s1, sizeof s1), rp_shape_str(W, s2, sizeof s2));
    if (B && (B->rank != 1 || B->dims[0] != M))
        return rp_kfail(c, RP_ERR_SHAPE, "B must be [%lld], got %s", (long long)M, rp_shape_str(B, s1, sizeof s1));

    int64_t ks[RP_MAX_RANK], st[RP_MAX_RANK], dil[RP_MAX_RANK], pads[2 * RP_MAX_RANK];
    int n = rp_attr_ints(c->node, "kernel_shape", ks, RP_MAX_RANK);
    if (n >= 0) {
        if (n != nsp)
            return rp_kfail(c, RP_ERR_SHAPE, "kernel_shape has %d values for %d spatial axes", n, nsp);
        for (int i = 0; i < nsp; i++)
            if (ks[i] != W->dims[2 + i])
                return rp_kfail(c, RP_ERR_SHAPE, "kernel_shape does not match W %s", rp_shape_str(W, s1, sizeof s1));
    }
    n = rp_attr_ints(c->node, "strides", st, RP_MAX_RANK);
    if (n < 0)
        for (int i = 0; i < nsp; i++)
            st[i] = 1;
    else if (n != nsp)
        return rp_kfail(c, RP_ERR_SHAPE, "strides has %d values for %d spatial axes", n, nsp);
    n = rp_attr_ints(c->node, "dilations", dil, RP_MAX_RANK);
    if (n < 0)
        for (int i = 0; i < nsp; i++)
            dil[i] = 1;
    else if (n != nsp)
        return rp_kfail(c, RP_ERR_SHAPE, "dilations has %d values for %d spatial axes", n, nsp);
    n = rp_attr_ints(c->node, "pads", pads, 2 * RP_MAX_RANK);
    if (n < 0)
        for (int i = 0; i < 2 * nsp; i++)
            pads[i] = 0;
    else if (n != 2 * nsp)
        return rp_kfail(c, RP_ERR_SHAPE, "pads has %d values for %d spatial axes", n, nsp);
    for (int i = 0; i < nsp; i++)
        if (st[i] < 1 || dil[i] < 1 || pads[i] < 0 || pads[nsp + i] < 0)
            return rp_kfail(c, RP_ERR_VALUE, "strides and dilations must be >= 1 and pads >= 0");

    const char *ap = rp_attr_string(c->node, "auto_pad", "NOTSET");
    int same = 0;
    if (strcmp(ap, "SAME_UPPER") == 0)
        same = 1;
    else if (strcmp(ap, "SAME_LOWER") == 0)
        same = 2;
    else if (strcmp(ap, "VALID") == 0)
        for (int i = 0; i < 2 * nsp; i++)
            pads[i] = 0;
    else if (strcmp(ap, "NOTSET") != 0)
        return rp_kfail(c, RP_ERR_VALUE, "auto_pad '%s' (expected NOTSET, VALID, SAME_UPPER or SAME_LOWER)", ap);

    int64_t odims[RP_MAX_RANK] = {X->dims[0], M};
    int64_t out[3];
    for (int i = 0; i < nsp; i++) {
        int64_t in = X->dims[2 + i], ek = dil[i] * (W->dims[2 + i] - 1) + 1;
        if (same) {
            /* Output = ceil(in / stride); the odd pad goes at the end (UPPER) or start (LOWER). */
            int64_t o = ceil_div(in, st[i]);
            int64_t total = (o - 1) * st[i] + ek - in;
            if (total < 0)
                total = 0;
            pads[i] = same == 1 ? total / 2 : total - total / 2;
            pads[nsp + i] = total - pads[i];
        }
        int64_t span = in + pads[i] + pads[nsp + i] - ek;
        if (W->dims[2 + i] < 1 || span < 0)
            return rp_kfail(c, RP_ERR_SHAPE, "kernel %s (dilated) is larger than padded input %s",
                            rp_shape_str(W, s1, sizeof s1), rp_shape_str(X, s2, sizeof s2));
        out[i] = span / st[i] + 1;
        odims[2 + i] = out[i];
    }
    if (!rp_tensor_set_shape(c->out[0], RP_FLOAT, X->rank, odims))
        return rp_kfail(c, RP_ERR_SHAPE, "output shape overflows");

    conv_params q = {0};
    q.n = X->dims[0];
    q.c = C;
    q.m = M;
    q.group = group;
    q.cg = C / group;
    q.mg = M / group;
    q.has_bias = B != NULL;
    /* Spatial axes right-aligned into (d, h, w); missing ones are size 1. */
    int64_t in3[3], k3[3], o3[3], s3[3], d3[3], p3[3];
    for (int i = 0; i < 3; i++) {
        int j = i - (3 - nsp);
        in3[i] = j >= 0 ? X->dims[2 + j] : 1;
        k3[i] = j >= 0 ? W->dims[2 + j] : 1;
        o3[i] = j >= 0 ? out[j] : 1;
        s3[i] = j >= 0 ? st[j] : 1;
        d3[i] = j >= 0 ? dil[j] : 1;
        p3[i] = j >= 0 ? pads[j] : 0;
    }
    q.d = in3[0], q.h = in3[1], q.w = in3[2];
    q.kd = k3[0], q.kh = k3[1], q.kw = k3[2];
    q.od = o3[0], q.oh = o3[1], q.ow = o3[2];
    q.sd = s3[0], q.sh = s3[1], q.sw = s3[2];
    q.dd = d3[0], q.dh = d3[1], q.dw = d3[2];
    q.pf = p3[0], q.pt = p3[1], q.pl = p3[2];
    q.ckk = q.cg * q.kd * q.kh * q.kw;
    int no_pad = 1;
    for (int i = 0; i < 2 * nsp; i++)
        if (pads[i])
            no_pad = 0;
    if (no_pad && q.kd == 1 && q.kh == 1 && q.kw == 1 && q.sd == 1 && q.sh == 1 && q.sw == 1)
        q.path = CONV_DIRECT;
    else if (no_pad && q.dw == 1 && q.sw >= q.kw)
        q.path = CONV_PATCH;
    else
        q.path = CONV_COLS;
    int64_t P = q.od * q.oh * q.ow;
    if (!fits_blas(P) || !fits_blas(q.ckk) || !fits_blas(q.mg) || !fits_blas(q.d * q.h * q.w))
        return rp_kfail(c, RP_ERR_UNSUPPORTED, "dimensions exceed BLAS int range");
    int64_t scratch = q.path == CONV_DIRECT ? 0 : q.ckk * P; /* both < 2^31: no overflow */
    if ((uint64_t)scratch > (SIZE_MAX - sizeof q) / sizeof(float))
        return rp_kfail(c, RP_ERR_NOMEM, "im2col buffer too large");
    conv_params *p = malloc(sizeof q + (size_t)scratch * sizeof(float));
    if (!p)
        return rp_kfail(c, RP_ERR_NOMEM, "out of memory for a %lld-float im2col buffer", (long long)scratch);
    *p = q;
    c->params = p;
    return RP_OK;
}

/* col [ckk, P] for one image and group; x points at the group's first channel. */
static void im2col(const conv_params *p, const float *x, float *col)
{
    int64_t P = p->od * p->oh * p->ow, OW = p->ow, W = p->w;
    for (int64_t ch = 0; ch < p->cg; ch++) {
        const float *xc = x + ch * p->d * p->h * W;
        for (int64_t kz = 0; kz < p->kd; kz++)
            for (int64_t ki = 0; ki < p->kh; ki++)
                for (int64_t kj = 0; kj < p->kw; kj++) {
                    float *row = col + (((ch * p->kd + kz) * p->kh + ki) * p->kw + kj) * P;
                    /* Input column of output column ow is ow*sw + dx; valid for ow in [ow0, ow1). */
                    int64_t dx = kj * p->dw - p->pl;
                    int64_t ow0 = dx >= 0 ? 0 : ceil_div(-dx, p->sw);
                    int64_t ow1 = W - dx <= 0 ? 0 : ceil_div(W - dx, p->sw);
                    if (ow1 > OW)
                        ow1 = OW;
                    if (ow0 > ow1)
                        ow0 = ow1;
                    for (int64_t oz = 0; oz < p->od; oz++)
                        for (int64_t oh = 0; oh < p->oh; oh++) {
                            float *r = row + (oz * p->oh + oh) * OW;
                            int64_t iz = oz * p->sd + kz * p->dd - p->pf;
                            int64_t ih = oh * p->sh + ki * p->dh - p->pt;
                            if (iz < 0 || iz >= p->d || ih < 0 || ih >= p->h) {
                                memset(r, 0, sizeof(float) * (size_t)OW);
                                continue;
                            }
                            const float *xr = xc + (iz * p->h + ih) * W;
                            memset(r, 0, sizeof(float) * (size_t)ow0);
                            if (p->sw == 1)
                                memcpy(r + ow0, xr + ow0 + dx, sizeof(float) * (size_t)(ow1 - ow0));
                            else
                                for (int64_t ow = ow0; ow < ow1; ow++)
                                    r[ow] = xr[ow * p->sw + dx];
                            memset(r + ow1, 0, sizeof(float) * (size_t)(OW - ow1));
                        }
                }
    }
}

/* rows [P, ckk] for one image and group: no padding, so every window row is
 * in bounds and contiguous (dw = 1). */
static void im2row(const conv_params *p, const float *x, float *rows)
{
    size_t run = sizeof(float) * (size_t)p->kw;
    int64_t HW = p->h * p->w;
    float *r = rows;
    for (int64_t oz = 0; oz < p->od; oz++)
        for (int64_t oh = 0; oh < p->oh; oh++)
            for (int64_t ow = 0; ow < p->ow; ow++) {
                const float *xw = x + oz * p->sd * HW + oh * p->sh * p->w + ow * p->sw;
                for (int64_t ch = 0; ch < p->cg; ch++)
                    for (int64_t kz = 0; kz < p->kd; kz++)
                        for (int64_t ki = 0; ki < p->kh; ki++, r += p->kw)
                            memcpy(r, xw + (ch * p->d + kz * p->dd) * HW + ki * p->dh * p->w, run);
            }
}

static rp_status conv_forward(rp_kctx *c)
{
    conv_params *p = c->params;
    rp_tensor *Y = c->out[0];
    if (Y->count == 0)
        return RP_OK;
    const float *X = c->in[0]->data, *W = c->in[1]->data;
    const float *B = p->has_bias ? c->in[2]->data : NULL;
    float *y = Y->data;
    int64_t P = p->od * p->oh * p->ow, HW = p->d * p->h * p->w;
    for (int64_t n = 0; n < p->n; n++)
        for (int64_t g = 0; g < p->group; g++) {
            const float *x = X + (n * p->c + g * p->cg) * HW;
            const float *w = W + g * p->mg * p->ckk;
            float *yg = y + (n * p->m + g * p->mg) * P;
            float beta = 0.0f;
            if (B || p->ckk == 0) {
                /* Bias goes in first and the GEMM accumulates onto it. */
                for (int64_t m = 0; m < p->mg; m++) {
                    float b = B ? B[g * p->mg + m] : 0.0f;
                    for (int64_t i = 0; i < P; i++)
                        yg[m * P + i] = b;
                }
                beta = 1.0f;
            }
            if (p->ckk == 0)
                continue;
            switch (p->path) {
            case CONV_DIRECT:
                rp_sgemm(CblasNoTrans, CblasNoTrans, (int)p->mg, (int)P, (int)p->ckk, 1.0f,
                         w, (int)p->ckk, x, (int)P, beta, yg, (int)P);
                break;
            case CONV_PATCH:
                im2row(p, x, p->scratch);
                rp_sgemm(CblasNoTrans, CblasTrans, (int)p->mg, (int)P, (int)p->ckk, 1.0f,
                         w, (int)p->ckk, p->scratch, (int)p->ckk, beta, yg, (int)P);
                break;
            default:
                im2col(p, x, p->scratch);
                rp_sgemm(CblasNoTrans, CblasNoTrans, (int)p->mg, (int)P, (int)p->ckk, 1.0f,
                         w, (int)p->ckk, p->scratch, (int)P, beta, yg, (int)P);
                break;
            }
        }
    return RP_OK;
}

/* dX += col2im(dcol): the transpose of im2col, skipping padding. */
static void col2im_add(const conv_params *p, const float *col, float *x)
{
    int64_t P = p->od * p->oh * p->ow, OW = p->ow, W = p->w;
    for (int64_t ch = 0; ch < p->cg; ch++) {
        float *xc = x + ch * p->d * p->h * W;
        for (int64_t kz = 0; kz < p->kd; kz++)
            for (int64_t ki = 0; ki < p->kh; ki++)
                for (int64_t kj = 0; kj < p->kw; kj++) {
                    const float *row = col + (((ch * p->kd + kz) * p->kh + ki) * p->kw + kj) * P;
                    int64_t dx = kj * p->dw - p->pl;
                    int64_t ow0 = dx >= 0 ? 0 : ceil_div(-dx, p->sw);
                    int64_t ow1 = W - dx <= 0 ? 0 : ceil_div(W - dx, p->sw);
                    if (ow1 > OW)
                        ow1 = OW;
                    for (int64_t oz = 0; oz < p->od; oz++)
                        for (int64_t oh = 0; oh < p->oh; oh++) {
                            int64_t iz = oz * p->sd + kz * p->dd - p->pf;
                            int64_t ih = oh * p->sh + ki * p->dh - p->pt;
                            if (iz < 0 || iz >= p->d || ih < 0 || ih >= p->h)
                                continue;
                            const float *r = row + (oz * p->oh + oh) * OW;
                            float *xr = xc + (iz * p->h + ih) * W;
                            if (p->sw == 1)
                                for (int64_t ow = ow0; ow < ow1; ow++)
                                    xr[ow + dx] += r[ow];
                            else
                                for (int64_t ow = ow0; ow < ow1; ow++)
                                    xr[ow * p->sw + dx] += r[ow];
                        }
                }
    }
}

/* dX += the window rows of drows [P, ckk]: the transpose of im2row. */
static void row2im_add(const conv_params *p, const float *rows, float *x)
{
    int64_t HW = p->h * p->w, kw = p->kw;
    const float *r = rows;
    for (int64_t oz = 0; oz < p->od; oz++)
        for (int64_t oh = 0; oh < p->oh; oh++)
            for (int64_t ow = 0; ow < p->ow; ow++) {
                float *xw = x + oz * p->sd * HW + oh * p->sh * p->w + ow * p->sw;
                for (int64_t ch = 0; ch < p->cg; ch++)
                    for (int64_t kz = 0; kz < p->kd; kz++)
                        for (int64_t ki = 0; ki < p->kh; ki++, r += kw) {
                            float *dst = xw + (ch * p->d + kz * p->dd) * HW + ki * p->dh * p->w;
                            for (int64_t j = 0; j < kw; j++)
                                dst[j] += r[j];
                        }
            }
}

static rp_status conv_backward(rp_kctx *c, rp_tensor *const *gout, rp_tensor *const *gin)
{
    conv_params *p = c->params;
    const rp_tensor *gy = gout[0];
    float *dX = gin[0] ? gin[0]->data : NULL, *dW = gin[1] ? gin[1]->data : NULL;
    float *dB = p->has_bias && gin[2] ? gin[2]->data : NULL;
    if (!gy || gy->count == 0 || (!dX && !dW && !dB))
        return RP_OK;
    const float *X = c->in[0]->data, *W = c->in[1]->data, *dy = gy->data;
    int64_t P = p->od * p->oh * p->ow, HW = p->d * p->h * p->w;
    if (dB)
        for (int64_t n = 0; n < p->n; n++)
            for (int64_t m = 0; m < p->m; m++) {
                const float *r = dy + (n * p->m + m) * P;
                double acc = 0;
                for (int64_t i = 0; i < P; i++)
                    acc += r[i];
                dB[m] += (float)acc;
            }
    if (p->ckk == 0 || (!dX && !dW))
        return RP_OK;
    int mg = (int)p->mg, ckk = (int)p->ckk, iP = (int)P;
    for (int64_t n = 0; n < p->n; n++)
        for (int64_t g = 0; g < p->group; g++) {
            const float *x = X + (n * p->c + g * p->cg) * HW;
            const float *w = W + g * p->mg * p->ckk;
            const float *dyg = dy + (n * p->m + g * p->mg) * P;
            float *dx = dX ? dX + (n * p->c + g * p->cg) * HW : NULL;
            float *dw = dW ? dW + g * p->mg * p->ckk : NULL;
            switch (p->path) {
            case CONV_DIRECT: /* col = x [ckk, P] */
                if (dw)
                    rp_sgemm(CblasNoTrans, CblasTrans, mg, ckk, iP, 1.0f, dyg, iP, x, iP, 1.0f,
                             dw, ckk);
                if (dx)
                    rp_sgemm(CblasTrans, CblasNoTrans, ckk, iP, mg, 1.0f, w, ckk, dyg, iP, 1.0f,
                             dx, iP);
                break;
            case CONV_PATCH: /* rows [P, ckk] */
                if (dw) {
                    im2row(p, x, p->scratch);
                    rp_sgemm(CblasNoTrans, CblasNoTrans, mg, ckk, iP, 1.0f, dyg, iP, p->scratch,
                             ckk, 1.0f, dw, ckk);
                }
                if (dx) {
                    rp_sgemm(CblasTrans, CblasNoTrans, iP, ckk, mg, 1.0f, dyg, iP, w, ckk, 0.0f,
                             p->scratch, ckk);
                    row2im_add(p, p->scratch, dx);
                }
                break;
            default: /* col [ckk, P] */
                if (dw) {
                    im2col(p, x, p->scratch);
                    rp_sgemm(CblasNoTrans, CblasTrans, mg, ckk, iP, 1.0f, dyg, iP, p->scratch, iP,
                             1.0f, dw, ckk);
                }
                if (dx) {
                    rp_sgemm(CblasTrans, CblasNoTrans, ckk, iP, mg, 1.0f, w, ckk, dyg, iP, 0.0f,
                             p->scratch, iP);
                    col2im_add(p, p->scratch, dx);
                }
                break;
            }
        }
    return RP_OK;
}

/* B, the bias, is added to the product. */
#define CONV(since)                                                                                           \
    RP_OP("Conv", since, .min_in = 2, .max_in = 3, .role = RP_ROLE_CONTRACTION, .summand_inputs = 1u << 2, \
          .prepare = conv_prepare, .forward = conv_forward, .backward = conv_backward)

const rp_op rp_ops_conv[] = {
    CONV(1),
    CONV(11),
};
const size_t rp_ops_conv_count = sizeof rp_ops_conv / sizeof rp_ops_conv[0];
