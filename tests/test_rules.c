/* The paper's relevance rules (src/rules/{identity,route,alpha_beta,zb,sum,
 * product}.c) on single hand-built nodes: a tiny rp_graph holds the node's input and
 * output values (constness is the value kind), the op's own kernel computes
 * the forward values, and each rule's result is compared with a naive
 * double-precision implementation of its formula (docs/method.md §4), plus
 * conservation checks (sum of input relevance = sum of output relevance)
 * where the rule conserves. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "rules/rule.h"

#include "test_rules_harness.h"

/* ------------------------------------------------------- alpha-beta */

/* Naive alpha-beta for y[m, j] = sum_k x[m, k] W[k, j] (x [M,K], W [K,N]),
 * non-separate division. out[M*K] = alpha f(W+, W-) - beta f(W-, W+). */
static void naive_ab_mm(const float *x, const double *W, int M, int K, int N, const float *R, double alpha,
                        double beta, double *out)
{
    memset(out, 0, sizeof(double) * (size_t)(M * K));
    for (int term = 0; term < 2; term++) {
        double coef = term == 0 ? alpha : -beta;
        if (coef == 0)
            continue;
        for (int m = 0; m < M; m++) {
            double S[64];
            for (int j = 0; j < N; j++) {
                double z = 0;
                for (int k = 0; k < K; k++) {
                    double w = W[k * N + j];
                    double w1 = term == 0 ? pos(w) : neg(w), w2 = term == 0 ? neg(w) : pos(w);
                    z += pos(x[m * K + k]) * w1 + neg(x[m * K + k]) * w2;
                }
                S[j] = sdiv(R[m * N + j], z);
            }
            for (int k = 0; k < K; k++) {
                double g1 = 0, g2 = 0;
                for (int j = 0; j < N; j++) {
                    double w = W[k * N + j];
                    g1 += (term == 0 ? pos(w) : neg(w)) * S[j];
                    g2 += (term == 0 ? neg(w) : pos(w)) * S[j];
                }
                out[m * K + k] += coef * (pos(x[m * K + k]) * g1 + neg(x[m * K + k]) * g2);
            }
        }
    }
}

static void check_ab_matmul(double alpha, double beta)
{
    enum { M = 5, K = 4, N = 3 };
    float *x = rand_f(M * K, -1, 1), *w = rand_f(K * N, -1, 1);
    rcase *c = rc_new("MatMul", 13);
    rc_finput(c, 3, (int64_t[]){1, M, K}, x, false);
    rc_finput(c, 2, (int64_t[]){K, N}, w, true);
    rc_forward(c, 1);
    rp_rule_params p = {0};
    rp_rule_param_set(&p, "alpha", alpha, NULL);
    rp_rule_param_set(&p, "beta", beta, NULL);
    ck_assert_msg(rc_rule(c, "alpha_beta", &p) == RP_OK, "%s", c->err.msg);
    rc_apply_ok(c);
    double W[K * N], want[M * K];
    for (int i = 0; i < K * N; i++)
        W[i] = w[i];
    naive_ab_mm(x, W, M, K, N, rel_out(c, 0), alpha, beta, want);
    assert_close(rel_in(c, 0), want, M * K, "alpha_beta MatMul R_x");
    ck_assert_ptr_null(c->rel_in_p[1]);
    rc_free(c);
    free(x);
    free(w);
}

START_TEST(ab_matmul_formula)
{
    require_backward("MatMul", 13);
    check_ab_matmul(1, 0);
    check_ab_matmul(2, 1);
    check_ab_matmul(0.5, 0.25);
}
END_TEST

START_TEST(ab_matmul_beta_zero_skips_inhibitor)
{
    require_backward("MatMul", 13);
    /* Non-negative x and W, alpha 1, beta 0: the rule is plain z+ against
     * the node's own output, checked by hand; a second apply adds the same
     * again (rules ADD into rel_in). */
    enum { M = 2, K = 3, N = 2 };
    float x[M * K] = {0.5f, 1.0f, 0.25f, 2.0f, 0.0f, 1.5f};
    float w[K * N] = {1, 2, 0.5f, 0, 3, 1};
    rcase *c = rc_new("MatMul", 13);
    rc_finput(c, 2, (int64_t[]){M, K}, x, false);
    rc_finput(c, 2, (int64_t[]){K, N}, w, true);
    rc_forward(c, 1);
    ck_assert_int_eq(rc_rule(c, "alpha_beta", NULL), RP_OK);
    rc_apply_ok(c);
    /* Hand computation: Z = x W (all positive), S = R / (Z + 1e-9), R_x = x * (S W^T). */
    const float *y = rc_out(c, 0)->data, *r = rel_out(c, 0);
    double want[M * K];
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++) {
            double g = 0;
            for (int j = 0; j < N; j++)
                g += w[k * N + j] * (r[m * N + j] / ((double)y[m * N + j] + 1e-9));
            want[m * K + k] = x[m * K + k] * g;
        }
    assert_close(rel_in(c, 0), want, M * K, "alpha_beta hand");
    rc_apply_ok(c);
    for (int i = 0; i < M * K; i++)
        want[i] *= 2;
    assert_close(rel_in(c, 0), want, M * K, "alpha_beta adds into rel_in");
    rc_free(c);
}
END_TEST

START_TEST(ab_matmul_conservation)
{
    require_backward("MatMul", 13);
    /* Positive x, no bias, alpha 1 beta 0: Z = x+ W+ has no zeros -> sum R_x = sum R. */
    enum { M = 6, K = 5, N = 4 };
    float *x = rand_f(M * K, 0.1, 1), *w = rand_f(K * N, -1, 1);
    for (int k = 0; k < K; k++)
        w[k * N + k % N] = fabsf(w[k * N + k % N]) + 0.1f; /* every column has a positive weight */
    for (int j = 0; j < N; j++)
        w[j] = fabsf(w[j]) + 0.1f;
    rcase *c = rc_new("MatMul", 13);
    rc_finput(c, 3, (int64_t[]){1, M, K}, x, false);
    rc_finput(c, 2, (int64_t[]){K, N}, w, true);
    rc_forward(c, 1);
    ck_assert_int_eq(rc_rule(c, "alpha_beta", NULL), RP_OK);
    rc_apply_ok(c);
    assert_conserved(sum_f(rel_in(c, 0), M * K), rel_out(c, 0), M * N, "alpha_beta MatMul");
    rc_free(c);
    free(x);
    free(w);
}
END_TEST

START_TEST(ab_matmul_weight_first)
{
    require_backward("MatMul", 13);
    /* y = W x with W [3,4] constant, x [4,5]: y^T = x^T W^T. */
    enum { A = 3, K = 4, B = 5 };
    float *w = rand_f(A * K, -1, 1), *x = rand_f(K * B, -1, 1);
    rcase *c = rc_new("MatMul", 13);
    rc_finput(c, 2, (int64_t[]){A, K}, w, true);
    rc_finput(c, 2, (int64_t[]){K, B}, x, false);
    rc_forward(c, 1);
    rp_rule_params p = rc_params("alpha=2 beta=1");
    ck_assert_int_eq(rc_rule(c, "alpha_beta", &p), RP_OK);
    rc_apply_ok(c);
    float xt[B * K], rt[B * A];
    double Wt[K * A], want_t[B * K], want[K * B];
    for (int k = 0; k < K; k++)
        for (int b = 0; b < B; b++)
            xt[b * K + k] = x[k * B + b];
    for (int a = 0; a < A; a++)
        for (int k = 0; k < K; k++)
            Wt[k * A + a] = w[a * K + k];
    for (int a = 0; a < A; a++)
        for (int b = 0; b < B; b++)
            rt[b * A + a] = rel_out(c, 0)[a * B + b];
    naive_ab_mm(xt, Wt, B, K, A, rt, 2, 1, want_t);
    for (int k = 0; k < K; k++)
        for (int b = 0; b < B; b++)
            want[k * B + b] = want_t[b * K + k];
    assert_close(rel_in(c, 1), want, K * B, "alpha_beta W x");
    ck_assert_ptr_null(c->rel_in_p[0]);
    rc_free(c);
    free(w);
    free(x);
}
END_TEST

static void check_ab_gemm(float gemm_alpha)
{
    /* Gemm transB = 1: y = alpha * x W^T + C, W [N,K]; the bias is ignored. */
    enum { M = 2, K = 4, N = 3 };
    float *x = rand_f(M * K, -1, 1), *w = rand_f(N * K, -1, 1), *b = rand_f(N, -2, 2);
    rcase *c = rc_new("Gemm", 13);
    rc_int(c, "transB", 1);
    rc_float(c, "alpha", gemm_alpha);
    rc_finput(c, 2, (int64_t[]){M, K}, x, false);
    rc_finput(c, 2, (int64_t[]){N, K}, w, true);
    rc_finput(c, 1, (int64_t[]){N}, b, true);
    rc_forward(c, 1);
    rp_rule_params p = rc_params("alpha=2 beta=1");
    ck_assert_int_eq(rc_rule(c, "alpha_beta", &p), RP_OK);
    rc_apply_ok(c);
    double W[K * N], want[M * K];
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++)
            W[k * N + n] = (double)gemm_alpha * w[n * K + k];
    naive_ab_mm(x, W, M, K, N, rel_out(c, 0), 2, 1, want);
    assert_close(rel_in(c, 0), want, M * K, "alpha_beta Gemm");
    /* The node's own forward values are untouched by the rule. */
    const float *y = rc_out(c, 0)->data;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = b[n];
            for (int k = 0; k < K; k++)
                s += (double)gemm_alpha * x[m * K + k] * w[n * K + k];
            ck_assert_msg(fabs(y[m * N + n] - s) < 1e-5, "forward value changed");
        }
    rc_free(c);
    free(x);
    free(w);
    free(b);
}

START_TEST(ab_gemm_transb_bias_ignored)
{
    require_backward("Gemm", 13);
    check_ab_gemm(1.0f);
    check_ab_gemm(0.5f);
    check_ab_gemm(-1.5f); /* negative alpha: W+ and W- swap roles */
}
END_TEST

/* ---- naive conv (N = 1, group 1, 2-D, symmetric pads) ---- */

typedef struct convspec {
    int C, H, W, O, KH, KW, s, p, OH, OW;
} convspec;

static void conv_fwd(const convspec *q, const double *x, const double *w, double *y)
{
    for (int o = 0; o < q->O; o++)
        for (int i = 0; i < q->OH; i++)
            for (int j = 0; j < q->OW; j++) {
                double s = 0;
                for (int ch = 0; ch < q->C; ch++)
                    for (int a = 0; a < q->KH; a++)
                        for (int b = 0; b < q->KW; b++) {
                            int r = i * q->s - q->p + a, col = j * q->s - q->p + b;
                            if (r < 0 || r >= q->H || col < 0 || col >= q->W)
                                continue;
                            s += w[((o * q->C + ch) * q->KH + a) * q->KW + b] * x[(ch * q->H + r) * q->W + col];
                        }
                y[(o * q->OH + i) * q->OW + j] = s;
            }
}

/* gx = convT(S, w), overwritten. */
static void conv_bwd(const convspec *q, const double *S, const double *w, double *gx)
{
    memset(gx, 0, sizeof(double) * (size_t)(q->C * q->H * q->W));
    for (int o = 0; o < q->O; o++)
        for (int i = 0; i < q->OH; i++)
            for (int j = 0; j < q->OW; j++)
                for (int ch = 0; ch < q->C; ch++)
                    for (int a = 0; a < q->KH; a++)
                        for (int b = 0; b < q->KW; b++) {
                            int r = i * q->s - q->p + a, col = j * q->s - q->p + b;
                            if (r < 0 || r >= q->H || col < 0 || col >= q->W)
                                continue;
                            gx[(ch * q->H + r) * q->W + col] +=
                                w[((o * q->C + ch) * q->KH + a) * q->KW + b] * S[(o * q->OH + i) * q->OW + j];
                        }
}

static rcase *conv_case(const convspec *q, const float *x, const float *w, const float *bias)
{
    rcase *c = rc_new("Conv", 11);
    rc_ints(c, "kernel_shape", (int64_t[]){q->KH, q->KW}, 2);
    rc_ints(c, "strides", (int64_t[]){q->s, q->s}, 2);
    rc_ints(c, "pads", (int64_t[]){q->p, q->p, q->p, q->p}, 4);
    rc_finput(c, 4, (int64_t[]){1, q->C, q->H, q->W}, x, false);
    rc_finput(c, 4, (int64_t[]){q->O, q->C, q->KH, q->KW}, w, true);
    if (bias)
        rc_finput(c, 1, (int64_t[]){q->O}, bias, true);
    rc_forward(c, 1);
    ck_assert_int_eq(rc_out(c, 0)->count, q->O * q->OH * q->OW);
    return c;
}

START_TEST(ab_conv_separate_division)
{
    require_backward("Conv", 11);
    convspec q = {.C = 2, .H = 5, .W = 5, .O = 3, .KH = 3, .KW = 3, .s = 1, .p = 1, .OH = 5, .OW = 5};
    int nx = q.C * q.H * q.W, nw = q.O * q.C * q.KH * q.KW, ny = q.O * q.OH * q.OW;
    float *x = rand_f(nx, -1, 1), *w = rand_f(nw, -1, 1), *b = rand_f(q.O, -1, 1);
    for (int pass = 0; pass < 2; pass++) {
        double alpha = pass == 0 ? 1 : 2, beta = pass == 0 ? 0 : 1;
        rcase *c = conv_case(&q, x, w, b);
        rp_rule_params p = {0};
    rp_rule_param_set(&p, "alpha", alpha, NULL);
    rp_rule_param_set(&p, "beta", beta, NULL);
        ck_assert_int_eq(rc_rule(c, "alpha_beta", &p), RP_OK);
        rc_apply_ok(c);
        const float *R = rel_out(c, 0);
        double *xp = malloc(sizeof(double) * nx), *xn = malloc(sizeof(double) * nx), *g = malloc(sizeof(double) * nx);
        double *wp = malloc(sizeof(double) * nw), *wn = malloc(sizeof(double) * nw);
        double *z = malloc(sizeof(double) * ny), *S = malloc(sizeof(double) * ny);
        double *want = calloc((size_t)nx, sizeof(double));
        for (int i = 0; i < nx; i++) {
            xp[i] = pos(x[i]);
            xn[i] = neg(x[i]);
        }
        for (int i = 0; i < nw; i++) {
            wp[i] = pos(w[i]);
            wn[i] = neg(w[i]);
        }
        for (int term = 0; term < 2; term++) {
            double coef = term == 0 ? alpha : -beta;
            if (coef == 0)
                continue;
            const double *w1 = term == 0 ? wp : wn, *w2 = term == 0 ? wn : wp;
            for (int part = 0; part < 2; part++) {
                conv_fwd(&q, part == 0 ? xp : xn, part == 0 ? w1 : w2, z);
                for (int e = 0; e < ny; e++)
                    S[e] = sdiv(R[e], z[e]);
                conv_bwd(&q, S, part == 0 ? w1 : w2, g);
                for (int i = 0; i < nx; i++)
                    want[i] += coef * (part == 0 ? xp[i] : xn[i]) * g[i];
            }
        }
        assert_close(rel_in(c, 0), want, nx, "alpha_beta Conv");
        rc_free(c);
        free(xp), free(xn), free(g), free(wp), free(wn), free(z), free(S), free(want);
    }
    free(x);
    free(w);
    free(b);
}
END_TEST

START_TEST(ab_conv_conservation)
{
    require_backward("Conv", 11);
    /* Positive x, no bias, every output channel with a positive weight. */
    convspec q = {.C = 2, .H = 4, .W = 4, .O = 3, .KH = 2, .KW = 2, .s = 2, .p = 0, .OH = 2, .OW = 2};
    int nx = q.C * q.H * q.W, nw = q.O * q.C * q.KH * q.KW, ny = q.O * q.OH * q.OW;
    float *x = rand_f(nx, 0.1, 1), *w = rand_f(nw, -1, 1);
    for (int o = 0; o < q.O; o++)
        for (int i = 0; i < q.C * q.KH * q.KW; i++)
            if (i % 2 == 0)
                w[o * q.C * q.KH * q.KW + i] = fabsf(w[o * q.C * q.KH * q.KW + i]) + 0.05f;
    rcase *c = conv_case(&q, x, w, NULL);
    ck_assert_int_eq(rc_rule(c, "alpha_beta", NULL), RP_OK);
    rc_apply_ok(c);
    assert_conserved(sum_f(rel_in(c, 0), nx), rel_out(c, 0), ny, "alpha_beta Conv");
    rc_free(c);
    free(x);
    free(w);
}
END_TEST

START_TEST(ab_einsum_linear)
{
    require_backward("Einsum", 12);
    /* "bik,kj->bij" with a constant weight: the same as MatMul. */
    enum { M = 4, K = 3, N = 5 };
    float *x = rand_f(M * K, -1, 1), *w = rand_f(K * N, -1, 1);
    rcase *c = rc_new("Einsum", 12);
    rc_string(c, "equation", "bik,kj->bij");
    rc_finput(c, 3, (int64_t[]){1, M, K}, x, false);
    rc_finput(c, 2, (int64_t[]){K, N}, w, true);
    rc_forward(c, 1);
    ck_assert_int_eq(rc_rule(c, "alpha_beta", NULL), RP_OK);
    rc_apply_ok(c);
    double W[K * N], want[M * K];
    for (int i = 0; i < K * N; i++)
        W[i] = w[i];
    naive_ab_mm(x, W, M, K, N, rel_out(c, 0), 1, 0, want);
    assert_close(rel_in(c, 0), want, M * K, "alpha_beta Einsum");
    rc_free(c);
    free(x);
    free(w);
}
END_TEST

/* ------------------------------------------------------------- z^B */

static void check_zb(const convspec *q, bool given, double low, double high)
{
    int nx = q->C * q->H * q->W, nw = q->O * q->C * q->KH * q->KW, ny = q->O * q->OH * q->OW;
    float *x = rand_f(nx, -1, 1), *w = rand_f(nw, -1, 1), *b = rand_f(q->O, -1, 1);
    rcase *c = conv_case(q, x, w, b);
    rp_rule_params p = {0};
    if (given) {
        rp_rule_param_set(&p, "low", low, NULL);
        rp_rule_param_set(&p, "high", high, NULL);
    }
    ck_assert_int_eq(rc_rule(c, "zb", &p), RP_OK);
    rc_apply_ok(c);
    const float *R = rel_out(c, 0);
    double lo = low, hi = high;
    if (!given) {
        lo = hi = x[0];
        for (int i = 0; i < nx; i++) {
            lo = fmin(lo, x[i]);
            hi = fmax(hi, x[i]);
        }
    }
    double *X = malloc(sizeof(double) * nx), *L = malloc(sizeof(double) * nx), *Hh = malloc(sizeof(double) * nx);
    double *W = malloc(sizeof(double) * nw), *Wp = malloc(sizeof(double) * nw), *Wn = malloc(sizeof(double) * nw);
    double *z = malloc(sizeof(double) * ny), *t = malloc(sizeof(double) * ny), *S = malloc(sizeof(double) * ny);
    double *g = malloc(sizeof(double) * nx), *want = calloc((size_t)nx, sizeof(double));
    for (int i = 0; i < nx; i++) {
        X[i] = x[i];
        L[i] = lo;
        Hh[i] = hi;
    }
    for (int i = 0; i < nw; i++) {
        W[i] = w[i];
        Wp[i] = pos(w[i]);
        Wn[i] = neg(w[i]);
    }
    conv_fwd(q, X, W, z);
    conv_fwd(q, L, Wp, t);
    for (int e = 0; e < ny; e++)
        z[e] -= t[e];
    conv_fwd(q, Hh, Wn, t);
    for (int e = 0; e < ny; e++)
        S[e] = R[e] / (z[e] - t[e] + 1e-9);
    conv_bwd(q, S, W, g);
    for (int i = 0; i < nx; i++)
        want[i] += X[i] * g[i];
    conv_bwd(q, S, Wp, g);
    for (int i = 0; i < nx; i++)
        want[i] -= lo * g[i];
    conv_bwd(q, S, Wn, g);
    for (int i = 0; i < nx; i++)
        want[i] -= hi * g[i];
    assert_close(rel_in(c, 0), want, nx, "zb Conv");
    /* z^B conserves: sum R_x = sum S (Z - 1e-9). With the true bounds Z > 0. */
    if (!given)
        assert_conserved(sum_f(rel_in(c, 0), nx), R, ny, "zb Conv");
    rc_free(c);
    free(X), free(L), free(Hh), free(W), free(Wp), free(Wn), free(z), free(t), free(S), free(g), free(want);
    free(x), free(w), free(b);
}

START_TEST(zb_conv)
{
    require_backward("Conv", 11);
    /* The patch embedding: kernel = stride. */
    check_zb(&(convspec){.C = 3, .H = 4, .W = 4, .O = 2, .KH = 2, .KW = 2, .s = 2, .p = 0, .OH = 2, .OW = 2}, false,
             0, 0);
    /* Overlapping windows with padding. */
    check_zb(&(convspec){.C = 3, .H = 4, .W = 5, .O = 2, .KH = 3, .KW = 3, .s = 1, .p = 1, .OH = 4, .OW = 5}, false,
             0, 0);
    /* Bounds from the parameters. */
    check_zb(&(convspec){.C = 3, .H = 4, .W = 4, .O = 2, .KH = 2, .KW = 2, .s = 2, .p = 0, .OH = 2, .OW = 2}, true,
             -2.5, 3.0);
}
END_TEST

/* ------------------------------------------------------------- sum */

START_TEST(sum_broadcast_constant)
{
    require_backward("Add", 14);
    /* u [2,3,4] activation + v [3,4] constant (a position embedding). */
    enum { I = 2, J = 3, K = 4 };
    float *u = rand_f(I * J * K, -1, 1), *v = rand_f(J * K, -1, 1);
    rcase *c = rc_new("Add", 14);
    rc_finput(c, 3, (int64_t[]){I, J, K}, u, false);
    rc_finput(c, 2, (int64_t[]){J, K}, v, true);
    rc_forward(c, 1);
    ck_assert_int_eq(rc_rule(c, "sum", NULL), RP_OK);
    ck_assert_ptr_null(c->rel_in_p[1]);
    rc_apply_ok(c);
    const float *R = rel_out(c, 0);
    double a[I * J * K], b[J * K] = {0}, sa = 0, sb = 0, T = 0;
    for (int i = 0; i < I; i++)
        for (int jk = 0; jk < J * K; jk++) {
            int e = i * J * K + jk;
            float z = u[e] + v[jk];
            double s = (float)sdiv(R[e], z);
            a[e] = u[e] * s;
            b[jk] += s;
            T += R[e];
        }
    for (int e = 0; e < I * J * K; e++)
        sa += a[e];
    for (int jk = 0; jk < J * K; jk++) {
        b[jk] *= v[jk];
        sb += b[jk];
    }
    double fa = sdiv(fabs(sa), fabs(sa) + fabs(sb)) * T, scale = sdiv(fa, sa);
    for (int e = 0; e < I * J * K; e++)
        a[e] *= scale;
    assert_close(rel_in(c, 0), a, I * J * K, "sum R_u");
    rc_free(c);
    free(u);
    free(v);
}
END_TEST

START_TEST(sum_sub_two_activations)
{
    require_backward("Sub", 14);
    enum { N = 12 };
    float *u = rand_f(N, -1, 1), *v = rand_f(N, -1, 1);
    rcase *c = rc_new("Sub", 14);
    rc_finput(c, 2, (int64_t[]){3, 4}, u, false);
    rc_finput(c, 2, (int64_t[]){3, 4}, v, false);
    rc_forward(c, 1);
    ck_assert_int_eq(rc_rule(c, "sum", NULL), RP_OK);
    rc_apply_ok(c);
    const float *R = rel_out(c, 0);
    double a[N], b[N], sa = 0, sb = 0, T = 0;
    for (int e = 0; e < N; e++) {
        float z = u[e] - v[e];
        double s = (float)sdiv(R[e], z);
        a[e] = u[e] * s;
        b[e] = -v[e] * s;
        sa += a[e];
        sb += b[e];
        T += R[e];
    }
    double fa = sdiv(fabs(sa), fabs(sa) + fabs(sb)) * T, fb = sdiv(fabs(sb), fabs(sa) + fabs(sb)) * T;
    for (int e = 0; e < N; e++) {
        a[e] *= sdiv(fa, sa);
        b[e] *= sdiv(fb, sb);
    }
    assert_close(rel_in(c, 0), a, N, "sum (Sub) R_u");
    assert_close(rel_in(c, 1), b, N, "sum (Sub) R_v");
    assert_conserved(sum_f(rel_in(c, 0), N) + sum_f(rel_in(c, 1), N), R, N, "sum (Sub)");
    rc_free(c);
    free(u);
    free(v);
}
END_TEST

START_TEST(sum_conservation)
{
    require_backward("Add", 14);
    /* Two activations, one broadcast: the shares add up to sum R. */
    float *u = rand_f(2 * 5 * 3, -1, 1), *v = rand_f(5 * 1, -1, 1);
    rcase *c = rc_new("Add", 14);
    rc_finput(c, 3, (int64_t[]){2, 5, 3}, u, false);
    rc_finput(c, 2, (int64_t[]){5, 1}, v, false);
    rc_forward(c, 1);
    ck_assert_int_eq(rc_rule(c, "sum", NULL), RP_OK);
    rc_apply_ok(c);
    assert_conserved(sum_f(rel_in(c, 0), 30) + sum_f(rel_in(c, 1), 5), rel_out(c, 0), 30, "sum (Add)");
    rc_free(c);
    free(u);
    free(v);
}
END_TEST

/* ------------------------------------------------------------- product */

START_TEST(product_matmul)
{
    require_backward("MatMul", 13);
    enum { B = 2, I = 3, K = 4, J = 5 };
    float *U = rand_f(B * I * K, -1, 1), *V = rand_f(B * K * J, -1, 1);
    rcase *c = rc_new("MatMul", 13);
    rc_finput(c, 3, (int64_t[]){B, I, K}, U, false);
    rc_finput(c, 3, (int64_t[]){B, K, J}, V, false);
    rc_forward(c, 1);
    ck_assert_int_eq(rc_rule(c, "product", NULL), RP_OK);
    rc_apply_ok(c);
    const float *R = rel_out(c, 0), *Z = rc_out(c, 0)->data;
    double S[B * I * J], ru[B * I * K] = {0}, rv[B * K * J] = {0};
    for (int e = 0; e < B * I * J; e++)
        S[e] = sdiv(R[e], Z[e]);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < I; i++)
            for (int k = 0; k < K; k++)
                for (int j = 0; j < J; j++) {
                    double s = S[(b * I + i) * J + j];
                    ru[(b * I + i) * K + k] += s * V[(b * K + k) * J + j];
                    rv[(b * K + k) * J + j] += s * U[(b * I + i) * K + k];
                }
    for (int e = 0; e < B * I * K; e++)
        ru[e] *= U[e] / 2.0;
    for (int e = 0; e < B * K * J; e++)
        rv[e] *= V[e] / 2.0;
    assert_close(rel_in(c, 0), ru, B * I * K, "product R_U");
    assert_close(rel_in(c, 1), rv, B * K * J, "product R_V");
    /* Halving: each operand receives about half of sum R. */
    double su = sum_f(rel_in(c, 0), B * I * K), sv = sum_f(rel_in(c, 1), B * K * J);
    assert_conserved(su + sv, R, B * I * J, "product MatMul");
    assert_conserved(2 * su, R, B * I * J, "product MatMul, R_U");
    assert_conserved(2 * sv, R, B * I * J, "product MatMul, R_V");
    rc_free(c);
    free(U);
    free(V);
}
END_TEST

START_TEST(product_einsum_attention)
{
    require_backward("Einsum", 12);
    /* Q K^T: "bhid,bhjd->bhij", Q [1,2,3,4], K [1,2,5,4]. */
    enum { H = 2, I = 3, J = 5, D = 4 };
    float *Q = rand_f(H * I * D, -1, 1), *Kt = rand_f(H * J * D, -1, 1);
    rcase *c = rc_new("Einsum", 12);
    rc_string(c, "equation", "bhid,bhjd->bhij");
    rc_finput(c, 4, (int64_t[]){1, H, I, D}, Q, false);
    rc_finput(c, 4, (int64_t[]){1, H, J, D}, Kt, false);
    rc_forward(c, 1);
    ck_assert_int_eq(rc_rule(c, "product", NULL), RP_OK);
    rc_apply_ok(c);
    const float *R = rel_out(c, 0), *Z = rc_out(c, 0)->data;
    double rq[H * I * D] = {0}, rk[H * J * D] = {0};
    for (int h = 0; h < H; h++)
        for (int i = 0; i < I; i++)
            for (int j = 0; j < J; j++) {
                int e = (h * I + i) * J + j;
                double s = sdiv(R[e], Z[e]);
                for (int d = 0; d < D; d++) {
                    rq[(h * I + i) * D + d] += s * Kt[(h * J + j) * D + d];
                    rk[(h * J + j) * D + d] += s * Q[(h * I + i) * D + d];
                }
            }
    for (int e = 0; e < H * I * D; e++)
        rq[e] *= Q[e] / 2.0;
    for (int e = 0; e < H * J * D; e++)
        rk[e] *= Kt[e] / 2.0;
    assert_close(rel_in(c, 0), rq, H * I * D, "product R_Q");
    assert_close(rel_in(c, 1), rk, H * J * D, "product R_K");
    assert_conserved(sum_f(rel_in(c, 0), H * I * D) + sum_f(rel_in(c, 1), H * J * D), R, H * I * J,
                     "product Einsum");
    rc_free(c);
    free(Q);
    free(Kt);
}
END_TEST

START_TEST(product_mul)
{
    require_backward("Mul", 14);
    enum { N = 10 };
    float *U = rand_f(N, -1, 1), *V = rand_f(N, -1, 1);
    rcase *c = rc_new("Mul", 14);
    rc_finput(c, 2, (int64_t[]){2, 5}, U, false);
    rc_finput(c, 2, (int64_t[]){2, 5}, V, false);
    rc_forward(c, 1);
    ck_assert_int_eq(rc_rule(c, "product", NULL), RP_OK);
    rc_apply_ok(c);
    const float *R = rel_out(c, 0), *Z = rc_out(c, 0)->data;
    double want[N];
    for (int e = 0; e < N; e++)
        want[e] = U[e] * sdiv(R[e], Z[e]) * V[e] / 2;
    assert_close(rel_in(c, 0), want, N, "product (Mul) R_U");
    assert_close(rel_in(c, 1), want, N, "product (Mul) R_V");
    rc_free(c);
    free(U);
    free(V);
}
END_TEST

/* ------------------------------------------------------------- route */

START_TEST(route_transpose)
{
    /* perm [2,0,1] of x [2,3,4]: y[k,i,j] = x[i,j,k]; R_x = x * sdiv(R, y) moved back. */
    enum { I = 2, J = 3, K = 4 };
    float *x = rand_f(I * J * K, -1, 1);
    x[5] = 0.0f; /* zero where x == 0 */
    rcase *c = rc_new("Transpose", 13);
    rc_ints(c, "perm", (int64_t[]){2, 0, 1}, 3);
    rc_finput(c, 3, (int64_t[]){I, J, K}, x, false);
    rc_forward(c, 1);
    ck_assert_int_eq(rc_rule(c, "route", NULL), RP_OK);
    /* R at the zero (it would be dropped) set to 0 for the conservation check below. */
    const float *y = rc_out(c, 0)->data;
    for (int e = 0; e < I * J * K; e++)
        if (y[e] == 0)
            rel_out(c, 0)[e] = 0;
    rc_apply_ok(c);
    const float *R = rel_out(c, 0);
    double want[I * J * K];
    for (int i = 0; i < I; i++)
        for (int j = 0; j < J; j++)
            for (int k = 0; k < K; k++) {
                int e = (i * J + j) * K + k, o = (k * I + i) * J + j;
                want[e] = x[e] * (float)sdiv(R[o], x[e]);
            }
    assert_close(rel_in(c, 0), want, I * J * K, "route Transpose");
    ck_assert_float_eq(rel_in(c, 0)[5], 0.0f);
    /* A permutation conserves (up to the 1e-9 of sdiv). */
    assert_conserved(sum_f(rel_in(c, 0), I * J * K), R, I * J * K, "route Transpose");
    rc_free(c);
    free(x);
}
END_TEST

START_TEST(route_gather_cls)
{
    /* Gather axis 1, scalar index 0 of x [1,4,3]: the CLS token. */
    float *x = rand_f(12, -1, 1);
    int64_t idx = 0;
    rcase *c = rc_new("Gather", 13);
    rc_int(c, "axis", 1);
    rc_finput(c, 3, (int64_t[]){1, 4, 3}, x, false);
    rc_input(c, RP_INT64, 0, (int64_t[]){1}, &idx, true);
    rc_forward(c, 1);
    ck_assert_int_eq(rc_out(c, 0)->count, 3);
    ck_assert_int_eq(rc_rule(c, "route", NULL), RP_OK);
    rc_apply_ok(c);
    const float *R = rel_out(c, 0);
    double want[12] = {0};
    for (int d = 0; d < 3; d++)
        want[d] = x[d] * (float)sdiv(R[d], x[d]);
    assert_close(rel_in(c, 0), want, 12, "route Gather");
    assert_conserved(sum_f(rel_in(c, 0), 12), R, 3, "route Gather");
    rc_free(c);
    free(x);
}
END_TEST

START_TEST(route_concat)
{
    /* Concat axis 1 of a constant CLS [1,1,3] (no relevance) and patches [1,2,3]. */
    float *cls = rand_f(3, -1, 1), *p = rand_f(6, -1, 1);
    rcase *c = rc_new("Concat", 13);
    rc_int(c, "axis", 1);
    rc_finput(c, 3, (int64_t[]){1, 1, 3}, cls, true);
    rc_finput(c, 3, (int64_t[]){1, 2, 3}, p, false);
    rc_forward(c, 1);
    ck_assert_int_eq(rc_rule(c, "route", NULL), RP_OK);
    rc_apply_ok(c);
    const float *R = rel_out(c, 0);
    double want[6];
    for (int e = 0; e < 6; e++)
        want[e] = p[e] * (float)sdiv(R[3 + e], p[e]);
    assert_close(rel_in(c, 1), want, 6, "route Concat");
    assert_conserved(sum_f(rel_in(c, 1), 6), R + 3, 6, "route Concat");
    rc_free(c);

    /* Both activations: everything is conserved. */
    c = rc_new("Concat", 13);
    rc_int(c, "axis", 1);
    rc_finput(c, 3, (int64_t[]){1, 1, 3}, cls, false);
    rc_finput(c, 3, (int64_t[]){1, 2, 3}, p, false);
    rc_forward(c, 1);
    ck_assert_int_eq(rc_rule(c, "route", NULL), RP_OK);
    rc_apply_ok(c);
    assert_conserved(sum_f(rel_in(c, 0), 3) + sum_f(rel_in(c, 1), 6), rel_out(c, 0), 9, "route Concat 2");
    rc_free(c);
    free(cls);
    free(p);
}
END_TEST

START_TEST(route_split_partial)
{
    /* Split x [1,6] into [1,2] and [1,4]; relevance only at output 1. */
    float *x = rand_f(6, -1, 1);
    int64_t split[2] = {2, 4};
    rcase *c = rc_new("Split", 13);
    rc_int(c, "axis", 1);
    rc_finput(c, 2, (int64_t[]){1, 6}, x, false);
    rc_input(c, RP_INT64, 1, (int64_t[]){2}, split, true);
    rc_forward(c, 2);
    ck_assert_int_eq(rc_rule(c, "route", NULL), RP_OK);
    c->rel_out_p[0] = NULL;
    rc_apply_ok(c);
    const float *R = rel_out(c, 1);
    double want[6] = {0};
    for (int e = 0; e < 4; e++)
        want[2 + e] = x[2 + e] * (float)sdiv(R[e], x[2 + e]);
    assert_close(rel_in(c, 0), want, 6, "route Split");
    rc_free(c);
    free(x);
}
END_TEST

START_TEST(route_reduce_mean)
{
    require_backward("ReduceMean", 18);
    /* ReduceMean over axis 1 keeps relevance: sum R_x = sum R where z != 0. */
    float *x = rand_f(2 * 5, 0.1, 1);
    int64_t axes[1] = {1};
    rcase *c = rc_new("ReduceMean", 18);
    rc_finput(c, 2, (int64_t[]){2, 5}, x, false);
    rc_input(c, RP_INT64, 1, (int64_t[]){1}, axes, true);
    rc_forward(c, 1);
    ck_assert_int_eq(rc_rule(c, "route", NULL), RP_OK);
    rc_apply_ok(c);
    const float *R = rel_out(c, 0), *z = rc_out(c, 0)->data;
    double want[10];
    for (int r = 0; r < 2; r++)
        for (int e = 0; e < 5; e++)
            want[r * 5 + e] = x[r * 5 + e] * sdiv(R[r], z[r]) / 5;
    assert_close(rel_in(c, 0), want, 10, "route ReduceMean");
    assert_conserved(sum_f(rel_in(c, 0), 10), R, rc_out(c, 0)->count, "route ReduceMean");
    rc_free(c);
    free(x);
}
END_TEST

/* ------------------------------------------------------------- identity */

START_TEST(identity_scale_constant_first)
{
    /* scale * x with the constant first: relevance goes to input 1 unchanged. */
    float s = 0.125f, *x = rand_f(6, -1, 1);
    rcase *c = rc_new("Mul", 14);
    rc_finput(c, 0, (int64_t[]){1}, &s, true);
    rc_finput(c, 2, (int64_t[]){2, 3}, x, false);
    rc_forward(c, 1);
    ck_assert_int_eq(rc_rule(c, "identity", NULL), RP_OK);
    ck_assert_int_eq(c->scratch_floats, 0);
    rc_apply_ok(c);
    double want[6];
    for (int e = 0; e < 6; e++)
        want[e] = rel_out(c, 0)[e];
    assert_close(rel_in(c, 1), want, 6, "identity Mul");
    rc_free(c);
    free(x);
}
END_TEST

START_TEST(identity_broadcast_sums)
{
    /* x [3,1] (activation, input 0) times a constant [2,3,4]: out [2,3,4];
     * R_x[j] = sum over i, k of R[i, j, k]. */
    float *x = rand_f(3, -1, 1), *w = rand_f(24, -1, 1);
    rcase *c = rc_new("Mul", 14);
    rc_finput(c, 2, (int64_t[]){3, 1}, x, false);
    rc_finput(c, 3, (int64_t[]){2, 3, 4}, w, true);
    rc_forward(c, 1);
    ck_assert_int_eq(rc_rule(c, "identity", NULL), RP_OK);
    rc_apply_ok(c);
    const float *R = rel_out(c, 0);
    double want[3] = {0};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++)
                want[j] += R[(i * 3 + j) * 4 + k];
    assert_close(rel_in(c, 0), want, 3, "identity broadcast");
    assert_conserved(sum_f(rel_in(c, 0), 3), R, 24, "identity broadcast");
    rc_free(c);
    free(x);
    free(w);
}
END_TEST

START_TEST(identity_softmax)
{
    float *x = rand_f(8, -3, 3);
    rcase *c = rc_new("Softmax", 13);
    rc_finput(c, 2, (int64_t[]){2, 4}, x, false);
    rc_forward(c, 1);
    ck_assert_int_eq(rc_rule(c, "identity", NULL), RP_OK);
    rc_apply_ok(c);
    double want[8];
    for (int e = 0; e < 8; e++)
        want[e] = rel_out(c, 0)[e];
    assert_close(rel_in(c, 0), want, 8, "identity Softmax");
    /* No relevance at the output: nothing happens. */
    c->rel_out_p[0] = NULL;
    rc_apply_ok(c);
    assert_close(rel_in(c, 0), want, 8, "identity Softmax, no R");
    rc_free(c);
    free(x);
}
END_TEST

/* ------------------------------------------------------------- errors */

static void expect_unsupported(rcase *c, const char *rule, const char *fragment)
{
    rp_status st = rc_rule(c, rule, NULL);
    ck_assert_msg(st == RP_ERR_UNSUPPORTED, "%s on %s: expected unsupported, got %d (%s)", rule, c->node.op_type, st,
                  c->err.msg);
    ck_assert_msg(strstr(c->err.msg, "test/node_7") != NULL, "message does not name the node: %s", c->err.msg);
    ck_assert_msg(strstr(c->err.msg, c->node.op_type) != NULL, "message does not name the op: %s", c->err.msg);
    if (fragment)
        ck_assert_msg(strstr(c->err.msg, fragment) != NULL, "message lacks '%s': %s", fragment, c->err.msg);
}

START_TEST(rules_reject_misfits)
{
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, 1, 0, 1, 0};
    /* alpha_beta / zb on a product of two activations. */
    rcase *c = rc_new("MatMul", 13);
    rc_finput(c, 2, (int64_t[]){2, 3}, a, false);
    rc_finput(c, 2, (int64_t[]){3, 2}, b, false);
    rc_forward(c, 1);
    if (c->node.op->backward) {
        expect_unsupported(c, "alpha_beta", "constant weight");
        expect_unsupported(c, "zb", "constant weight");
    }
    rc_free(c);
    /* product with a constant operand. */
    c = rc_new("MatMul", 13);
    rc_finput(c, 2, (int64_t[]){2, 3}, a, false);
    rc_finput(c, 2, (int64_t[]){3, 2}, b, true);
    rc_forward(c, 1);
    expect_unsupported(c, "product", "constant");
    /* sum on a MatMul, alpha_beta on an Add. */
    expect_unsupported(c, "sum", "applies to sums");
    rc_free(c);
    c = rc_new("Add", 14);
    rc_finput(c, 2, (int64_t[]){2, 3}, a, false);
    rc_finput(c, 2, (int64_t[]){2, 3}, b, false);
    rc_forward(c, 1);
    expect_unsupported(c, "alpha_beta", "MatMul, Gemm, Conv");
    expect_unsupported(c, "zb", NULL);
    expect_unsupported(c, "product", NULL);
    rc_free(c);
    /* identity where the output is smaller than the input. */
    int64_t axes[1] = {1};
    c = rc_new("ReduceSum", 13);
    rc_finput(c, 2, (int64_t[]){2, 3}, a, false);
    rc_input(c, RP_INT64, 1, (int64_t[]){1}, axes, true);
    rc_forward(c, 1);
    expect_unsupported(c, "identity", "broadcast");
    rc_free(c);
    /* route on an op without a gradient. */
    c = rc_new("Shape", 15);
    rc_finput(c, 2, (int64_t[]){2, 3}, a, false);
    rc_forward(c, 1);
    expect_unsupported(c, "route", "gradient");
    rc_free(c);
}
END_TEST

START_TEST(rules_scratch_too_small)
{
    float *x = rand_f(24, -1, 1);
    rcase *c = rc_new("Transpose", 13);
    rc_ints(c, "perm", (int64_t[]){1, 0}, 2);
    rc_finput(c, 2, (int64_t[]){4, 6}, x, false);
    rc_forward(c, 1);
    ck_assert_int_eq(rc_rule(c, "route", NULL), RP_OK);
    ck_assert_int_eq(c->scratch_floats, 48);
    c->scratch_floats = 30;
    ck_assert_int_eq(rc_apply(c), RP_ERR_INTERNAL);
    ck_assert_ptr_nonnull(strstr(c->err.msg, "test/node_7"));
    rc_free(c);
    free(x);
}
END_TEST

/* ------------------------------------------ theory: conservation */

START_TEST(epsilon_conserves_as_eps_vanishes)
{
    require_backward("MatMul", 13);
    /* y = x W, no bias: sum R_x = sum_j R_j z_j / (z_j + eps sign z_j), which
     * tends to sum R as eps -> 0; the gap shrinks with eps. */
    enum { M = 4, K = 6, N = 5 };
    float *x = rand_f(M * K, -1, 1), *w = rand_f(K * N, -1, 1);
    double gap[3];
    const char *eps[3] = {"epsilon=0.1", "epsilon=0.001", "epsilon=1e-9"};
    for (int q = 0; q < 3; q++) {
        rcase *c = rc_new("MatMul", 13);
        rc_finput(c, 2, (int64_t[]){M, K}, x, false);
        rc_finput(c, 2, (int64_t[]){K, N}, w, true);
        rc_forward(c, 1);
        rp_rule_params p = rc_params(eps[q]);
        ck_assert_int_eq(rc_rule(c, "epsilon", &p), RP_OK);
        for (int e = 0; e < M * N; e++)
            rel_out(c, 0)[e] = urand(0.1, 1); /* one sign: no cancellation hides the gap */
        rc_apply_ok(c);
        gap[q] = fabs(sum_f(rel_in(c, 0), M * K) - sum_f(rel_out(c, 0), M * N));
        if (q == 2)
            assert_conserved(sum_f(rel_in(c, 0), M * K), rel_out(c, 0), M * N, "epsilon 1e-9");
        ck_assert(!c->rule->conserves); /* it does not claim to */
        rc_free(c);
    }
    ck_assert_msg(gap[0] > gap[1] && gap[1] > gap[2], "gaps %g %g %g do not shrink with eps", gap[0], gap[1], gap[2]);
    free(x);
    free(w);
}
END_TEST

START_TEST(zplus_conserves_on_positive_inputs)
{
    require_backward("Conv", 11);
    /* Positive x and a positive centre tap in every filter (the centre is
     * never in the padding): Z > 0 everywhere, so sum R_x = sum R exactly
     * (up to float32). Other taps of both signs. */
    convspec q = {.C = 2, .H = 5, .W = 5, .O = 3, .KH = 3, .KW = 3, .s = 1, .p = 1, .OH = 5, .OW = 5};
    int nx = q.C * q.H * q.W, nw = q.O * q.C * q.KH * q.KW;
    float *x = rand_f(nx, 0.05, 1), *w = rand_f(nw, -1, 1), *b = rand_f(q.O, -1, 1);
    for (int o = 0; o < q.O; o++)
        for (int k = 0; k < q.C * q.KH * q.KW; k++)
            if (k % (q.KH * q.KW) == 4)
                w[o * q.C * q.KH * q.KW + k] = fabsf(w[o * q.C * q.KH * q.KW + k]) + 0.01f;
    rcase *c = conv_case(&q, x, w, b);
    ck_assert_int_eq(rc_rule(c, "zplus", NULL), RP_OK);
    rc_apply_ok(c);
    assert_conserved(sum_f(rel_in(c, 0), nx), rel_out(c, 0), q.O * q.OH * q.OW, "zplus Conv");
    ck_assert(c->rule->conserves && c->rule->conserves(&c->params));
    rc_free(c);
    free(x);
    free(w);
    free(b);
}
END_TEST

START_TEST(softmax_rule_row_sums)
{
    /* AttnLRP's softmax rule over each row: sum_i R_x,i equals
     * sum_i x_i R_i - (x . s) sum_j R_j; with the Taylor bias share
     * sum_j (1 - x_j + x . s) R_j added back, the row's relevance is whole. */
    enum { ROWS = 6, L = 7 };
    float *x = rand_f(ROWS * L, -4, 4);
    rcase *c = rc_new("Softmax", 13);
    rc_finput(c, 3, (int64_t[]){2, 3, L}, x, false);
    rc_forward(c, 1);
    ck_assert_int_eq(rc_rule(c, "softmax", NULL), RP_OK);
    rc_apply_ok(c);
    const float *R = rel_out(c, 0), *S = rc_out(c, 0)->data, *got = rel_in(c, 0);
    for (int r = 0; r < ROWS; r++) {
        double xr = 0, xs = 0, tot = 0, row = 0, bias = 0, scale = 0;
        for (int j = 0; j < L; j++) {
            int e = r * L + j;
            xr += (double)x[e] * R[e];
            xs += (double)x[e] * S[e];
            tot += R[e];
            row += got[e];
            scale += fabs(R[e]) * (1 + fabs(x[e]));
        }
        for (int j = 0; j < L; j++)
            bias += (1 - x[r * L + j] + xs) * R[r * L + j];
        ck_assert_msg(fabs(row - (xr - xs * tot)) <= 1e-5 * scale, "row %d: %g vs %g", r, row, xr - xs * tot);
        ck_assert_msg(fabs(row + bias - tot) <= 1e-5 * scale, "row %d: %g + bias %g != %g", r, row, bias, tot);
    }
    ck_assert(!c->rule->conserves);
    rc_free(c);
    free(x);
}
END_TEST

START_TEST(uniform_mul_halves)
{
    /* Mul of two activations: each side gets exactly R / 2, even where the
     * product is zero (where gradient x input would give nothing). */
    float u[6] = {0, 1, -2, 3, 0.5f, 0}, v[6] = {1, 0, 2, -1, 4, 0};
    rcase *c = rc_new("Mul", 14);
    rc_finput(c, 2, (int64_t[]){2, 3}, u, false);
    rc_finput(c, 2, (int64_t[]){2, 3}, v, false);
    rc_forward(c, 1);
    ck_assert_int_eq(rc_rule(c, "uniform", NULL), RP_OK);
    rc_apply_ok(c);
    double want[6];
    for (int e = 0; e < 6; e++)
        want[e] = rel_out(c, 0)[e] / 2.0;
    assert_close(rel_in(c, 0), want, 6, "uniform R_u");
    assert_close(rel_in(c, 1), want, 6, "uniform R_v");
    rc_free(c);
}
END_TEST

/* ------------------------------------------------------------- errors */

START_TEST(new_rules_reject_misfits)
{
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, 1, 0, 1, 0};
    /* Linear rules on a product of two activations. */
    rcase *c = rc_new("MatMul", 13);
    rc_finput(c, 2, (int64_t[]){2, 3}, a, false);
    rc_finput(c, 2, (int64_t[]){3, 2}, b, false);
    rc_forward(c, 1);
    const char *linear[] = {"zplus", "gamma", "flat", "wsquare"};
    for (int i = 0; i < 4; i++)
        expect_unsupported(c, linear[i], "constant weight");
    expect_unsupported(c, "softmax", "Softmax nodes");
    rc_free(c);
    /* uniform with a constant operand. */
    c = rc_new("Mul", 14);
    rc_finput(c, 2, (int64_t[]){2, 3}, a, false);
    rc_finput(c, 2, (int64_t[]){2, 3}, b, true);
    rc_forward(c, 1);
    expect_unsupported(c, "uniform", "constant");
    rc_free(c);
    /* Bad parameters. */
    c = rc_new("MatMul", 13);
    rc_finput(c, 2, (int64_t[]){2, 3}, a, false);
    rc_finput(c, 2, (int64_t[]){3, 2}, b, true);
    rc_forward(c, 1);
    struct {
        const char *rule, *params, *fragment;
    } bad[] = {
        {"alpha_beta", "alpha=-1", "must be >= 0"},
        {"gamma", "gamma=-0.5", "must be >= 0"},
        {"epsilon", "epsilon=-1", "must be >= 0"},
        {"zb", "low=-1", "both bounds"},
        {"zb", "low=2 high=1", "low 2 > high 1"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rp_rule_params p = rc_params(bad[i].params);
        rp_status st = rc_rule(c, bad[i].rule, &p);
        ck_assert_msg(st == RP_ERR_VALUE, "%s %s: got %d (%s)", bad[i].rule, bad[i].params, st, c->err.msg);
        ck_assert_msg(strstr(c->err.msg, bad[i].fragment) && strstr(c->err.msg, "test/node_7"), "%s",
                      c->err.msg);
        free(c->scratch);
        c->scratch = NULL;
    }
    rc_free(c);
    /* epsilon needs the op's gradient. */
    c = rc_new("Shape", 15);
    rc_finput(c, 2, (int64_t[]){2, 3}, a, false);
    rc_forward(c, 1);
    expect_unsupported(c, "epsilon", "gradient");
    rc_free(c);
}
END_TEST

START_TEST(region_view_has_no_gradient)
{
    /* A decomposed region is shown to rules as one unary node without a
     * kernel: identity works on it, rules that need a gradient say why not. */
    float *x = rand_f(8, -1, 1);
    rcase *c = rc_new("Softmax", 13);
    rc_finput(c, 2, (int64_t[]){2, 4}, x, false);
    rc_forward(c, 1);
    ck_assert_int_eq(rc_rule(c, "identity", NULL), RP_OK);
    c->view.region = true;
    c->view.kind = "region";
    rc_apply_ok(c);
    ck_assert_int_eq(rp_rule_vjp(&c->rc, (rp_tensor *[]){&c->rel_out[0]}, (rp_tensor *[]){&c->rel_in[0]}),
                     RP_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(c->err.msg, "decomposed region"));
    ck_assert_str_eq(rp_rule_node_kind(rp_rule_ctx_node(&c->rc)), "region");
    ck_assert(!rp_rule_node_has_gradient(rp_rule_ctx_node(&c->rc)));
    rc_free(c);
    free(x);
}
END_TEST

START_TEST(rules_registered)
{
    const char *names[] = {"identity", "route", "alpha_beta", "zplus", "gamma",   "epsilon", "flat",
                           "wsquare",  "zb",    "sum",        "product", "uniform", "softmax"};
    ck_assert_int_eq(rp_rule_registry_count(NULL), 13);
    for (int i = 0; i < 13; i++) {
        ck_assert_ptr_eq(rp_rule_registry_find(NULL, names[i]), rp_rule_lookup(names[i]));
        ck_assert_ptr_null(rp_rule_registry_origin(NULL, i));
        const rp_rule *r = rp_rule_lookup(names[i]);
        ck_assert_ptr_nonnull(r);
        ck_assert_str_eq(r->name, names[i]);
        ck_assert_ptr_nonnull(r->apply);
        ck_assert_ptr_nonnull(r->summary);
    }
    ck_assert_ptr_null(rp_rule_lookup("epsilon_nonexistent"));
    /* Parameters. */
    rp_rule_params p = {0};
    ck_assert_double_eq(rp_rule_param(&p, "gamma", 0.25), 0.25);
    ck_assert_int_eq(rp_rule_param_set(&p, "gamma", 0.5, NULL), RP_OK);
    ck_assert_int_eq(rp_rule_param_set(&p, "gamma", 0.75, NULL), RP_OK);
    ck_assert_int_eq(p.n, 1);
    ck_assert_double_eq(rp_rule_param(&p, "gamma", 0.25), 0.75);
    ck_assert(rp_rule_param_given(&p, "gamma") && !rp_rule_param_given(&p, "alpha"));
    char buf[64];
    ck_assert_str_eq(rp_rule_params_format(&p, buf, sizeof buf), "gamma=0.75");
    rp_error err;
    ck_assert_int_eq(rp_rule_param_set(&p, "a_name_that_is_far_too_long_to_fit", 1, &err), RP_ERR_ARG);
    for (int i = 1; i < RP_RULE_MAX_PARAMS; i++) {
        char nm[8];
        snprintf(nm, sizeof nm, "p%d", i);
        ck_assert_int_eq(rp_rule_param_set(&p, nm, i, NULL), RP_OK);
    }
    ck_assert_int_eq(rp_rule_param_set(&p, "one_more", 1, &err), RP_ERR_ARG);
}
END_TEST

static Suite *rules_suite(void)
{
    Suite *s = suite_create("rules");
    TCase *t = tcase_create("rules");
    tcase_add_test(t, rules_registered);
    tcase_add_test(t, ab_matmul_formula);
    tcase_add_test(t, ab_matmul_beta_zero_skips_inhibitor);
    tcase_add_test(t, ab_matmul_conservation);
    tcase_add_test(t, ab_matmul_weight_first);
    tcase_add_test(t, ab_gemm_transb_bias_ignored);
    tcase_add_test(t, ab_conv_separate_division);
    tcase_add_test(t, ab_conv_conservation);
    tcase_add_test(t, ab_einsum_linear);
    tcase_add_test(t, zb_conv);
    tcase_add_test(t, sum_broadcast_constant);
    tcase_add_test(t, sum_sub_two_activations);
    tcase_add_test(t, sum_conservation);
    tcase_add_test(t, product_matmul);
    tcase_add_test(t, product_einsum_attention);
    tcase_add_test(t, product_mul);
    tcase_add_test(t, route_transpose);
    tcase_add_test(t, route_gather_cls);
    tcase_add_test(t, route_concat);
    tcase_add_test(t, route_split_partial);
    tcase_add_test(t, route_reduce_mean);
    tcase_add_test(t, identity_scale_constant_first);
    tcase_add_test(t, identity_broadcast_sums);
    tcase_add_test(t, identity_softmax);
    tcase_add_test(t, rules_reject_misfits);
    tcase_add_test(t, rules_scratch_too_small);
    tcase_add_test(t, epsilon_conserves_as_eps_vanishes);
    tcase_add_test(t, zplus_conserves_on_positive_inputs);
    tcase_add_test(t, softmax_rule_row_sums);
    tcase_add_test(t, uniform_mul_halves);
    tcase_add_test(t, new_rules_reject_misfits);
    tcase_add_test(t, region_view_has_no_gradient);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *r = srunner_create(rules_suite());
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
