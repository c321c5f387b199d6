/* The map aggregations of src/methods/maps.c (docs/method.md §5):
 *  - small cases worked out by hand (the derivations are in the comments);
 *  - random cases against a naive double-precision transcription of §3 with a
 *    general readout, prefix and start layer;
 *  - argument errors;
 *  - the oracle: the authors' per-layer A, G, R (attn_L, attn_grad_L,
 *    attn_cam_L under ../shared/oracle/cases/, skipped with a note when
 *    absent) fed through our functions must give the authors' maps to
 *    1e-3 relative (max |ours - theirs| / max |theirs|). */
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "methods/maps.h"

#define ORACLE_REL_TOL 1e-3

static void expect_close(const float *got, const double *want, int n, double tol, const char *what)
{
    for (int i = 0; i < n; i++)
        ck_assert_msg(fabs(got[i] - want[i]) <= tol * (1.0 + fabs(want[i])), "%s[%d]: got %.9g, want %.9g", what, i,
                      (double)got[i], want[i]);
}

/* ---- hand-made cases ---- */

/* L = 1, H = 1, N = 3, prefix 1, r = e_0.
 *   A = [[.5, .125, .375], [.2,.6,.2], [.1,.3,.6]]
 *   G = [[1, -2, 4], [0, 1, -1], [2, 2, 2]]
 *   R = [[.5, .25, .5], [1, 1, 1], [0, -3, 1]]
 * transformer_attribution: row 0 of [G*R]+ + I = [.5+1, 0, 2]      -> [0, 2]
 * rollout: row 0 of A + I = [1.5, .125, .375], sum 2, /2           -> [.0625, .1875]
 * raw_attention: A[0, 1:]                                            -> [.125, .375]
 * lrp_last_layer: [R]+[0, 1:]                                        -> [.25, .5]
 * generic_attention: I + [G*A]+ ; row 0 of G*A = [.5, -.25, 1.5]     -> [0, 1.5]
 * attn_gradcam: w = mean(-2, 4) = 1; [w * A[0,1:]]+ = [.125, .375]  -> min-max [0, 1] */
static const float h1_A[9] = {.5f, .125f, .375f, .2f, .6f, .2f, .1f, .3f, .6f};
static const float h1_G[9] = {1, -2, 4, 0, 1, -1, 2, 2, 2};
static const float h1_R[9] = {.5f, .25f, .5f, 1, 1, 1, 0, -3, 1};
static const float e0_3[3] = {1, 0, 0};

static rp_map_input one_layer_input(rp_layer_view *v)
{
    v->A = h1_A;
    v->G = h1_G;
    v->R = h1_R;
    v->GR = NULL;
    rp_map_input in = {.layers = v, .n_layers = 1, .heads = 1, .tokens = 3, .prefix = 1, .readout = e0_3};
    return in;
}

START_TEST(test_hand_one_layer)
{
    rp_layer_view v;
    rp_map_input in = one_layer_input(&v);
    rp_error err = {0};
    float out[2];

    ck_assert_int_eq(rp_map_transformer_attribution(&in, 0, out, &err), RP_OK);
    expect_close(out, (const double[]){0, 2}, 2, 1e-6, "transformer_attribution");
    ck_assert_int_eq(rp_map_rollout(&in, 0, out, &err), RP_OK);
    expect_close(out, (const double[]){.0625, .1875}, 2, 1e-6, "rollout");
    ck_assert_int_eq(rp_map_raw_attention(&in, out, &err), RP_OK);
    expect_close(out, (const double[]){.125, .375}, 2, 1e-6, "raw_attention");
    ck_assert_int_eq(rp_map_lrp_last_layer(&in, out, &err), RP_OK);
    expect_close(out, (const double[]){.25, .5}, 2, 1e-6, "lrp_last_layer");
    ck_assert_int_eq(rp_map_generic_attention(&in, out, &err), RP_OK);
    expect_close(out, (const double[]){0, 1.5}, 2, 1e-6, "generic_attention");
    ck_assert_int_eq(rp_map_attn_gradcam(&in, out, &err), RP_OK);
    expect_close(out, (const double[]){0, 1}, 2, 1e-6, "attn_gradcam");

    /* G * R handed over already multiplied (as an explanation fuses them):
     * the same map, with G and R absent. */
    float gr[9];
    for (int k = 0; k < 9; k++)
        gr[k] = h1_G[k] * h1_R[k];
    rp_layer_view fused = {.A = h1_A, .GR = gr};
    rp_map_input fin = in;
    fin.layers = &fused;
    ck_assert_int_eq(rp_map_transformer_attribution(&fin, 0, out, &err), RP_OK);
    expect_close(out, (const double[]){0, 2}, 2, 1e-6, "transformer_attribution from G*R");
    ck_assert_int_eq(rp_map_attn_gradcam(&fin, out, &err), RP_ERR_ARG); /* it needs G itself */
}
END_TEST

/* L = 2, H = 2, N = 3, prefix 1, readout r = (e_0 + e_1) / 2.
 * Layer 0: R = 1 everywhere; G heads
 *   g0 = [[2,-1,0],[0,0,2],[-4,0,0]], g1 = [[0,0,2],[-2,2,0],[0,0,0]]
 *   mean_h [G*R]+ = [[1,0,1],[0,1,1],[0,0,0]];  B0 = that + I = [[2,0,1],[0,2,1],[0,0,1]]
 * Layer 1: G heads g0 = [[0,1,0],[1,0,0],0], g1 = [[0,1,-3],[-1,0,0],0];
 *   R heads r0 = 2 everywhere, r1 = -1 everywhere
 *   G*R: h0 = [[0,2,0],[2,0,0],0], h1 = [[0,-1,3],[1,0,0],0]
 *   mean_h [.]+ = [[0,1,1.5],[1.5,0,0],0];  B1 = [[1,1,1.5],[1.5,1,0],[0,0,1]]
 * C = B1 B0: row 0 = [2,2,3.5], row 1 = [3,2,2.5]; r^T C = [2.5,2,3]  -> [2, 3]
 * start_layer 1: r^T B1 = [1.25, 1, .75]                             -> [1, .75]
 * r = e_0, start 0: row 0 of C                                        -> [2, 3.5]
 * generic_attention with A := R (same positive parts as G*R here):
 *   Rm = I + M0 = B0; Rm += M1 Rm -> B1 B0 (since (I+M1)(I+M0) = I+M0+M1(I+M0))
 *   -> [2, 3] with r, [2, 3.5] with e_0. */
static float tl_G0[18] = {2, -1, 0, 0, 0, 2, -4, 0, 0, /**/ 0, 0, 2, -2, 2, 0, 0, 0, 0};
static float tl_G1[18] = {0, 1, 0, 1, 0, 0, 0, 0, 0, /**/ 0, 1, -3, -1, 0, 0, 0, 0, 0};
static float tl_R0[18], tl_R1[18];

START_TEST(test_hand_two_layers_readout_and_start)
{
    for (int k = 0; k < 18; k++) {
        tl_R0[k] = 1;
        tl_R1[k] = k < 9 ? 2 : -1;
    }
    const float r_avg[3] = {.5f, .5f, 0};
    rp_layer_view v[2] = {{.A = tl_R0, .G = tl_G0, .R = tl_R0}, {.A = tl_R1, .G = tl_G1, .R = tl_R1}};
    rp_map_input in = {.layers = v, .n_layers = 2, .heads = 2, .tokens = 3, .prefix = 1, .readout = r_avg};
    rp_error err = {0};
    float out[2];

    ck_assert_int_eq(rp_map_transformer_attribution(&in, 0, out, &err), RP_OK);
    expect_close(out, (const double[]){2, 3}, 2, 1e-6, "TA r_avg start 0");
    ck_assert_int_eq(rp_map_transformer_attribution(&in, 1, out, &err), RP_OK);
    expect_close(out, (const double[]){1, .75}, 2, 1e-6, "TA r_avg start 1");
    ck_assert_int_eq(rp_map_generic_attention(&in, out, &err), RP_OK);
    expect_close(out, (const double[]){2, 3}, 2, 1e-6, "generic r_avg");
    in.readout = e0_3;
    ck_assert_int_eq(rp_map_transformer_attribution(&in, 0, out, &err), RP_OK);
    expect_close(out, (const double[]){2, 3.5}, 2, 1e-6, "TA e0 start 0");
    ck_assert_int_eq(rp_map_generic_attention(&in, out, &err), RP_OK);
    expect_close(out, (const double[]){2, 3.5}, 2, 1e-6, "generic e0");
}
END_TEST

/* Rollout, L = 2, H = 2, N = 3, prefix 1, r = (e_0 + e_1) / 2.
 * Layer 0: heads I and the cyclic shift S (S[i][i+1] = 1); mean = (I+S)/2,
 *   + I = 1.5 I + .5 S, rows sum to 2: B0 = .75 I + .25 S = [[.75,.25,0],[0,.75,.25],[.25,0,.75]]
 * Layer 1: both heads [[0,.5,.5],[.5,0,.5],[.5,.5,0]]; + I, /2:
 *   B1 = [[.5,.25,.25],[.25,.5,.25],[.25,.25,.5]]
 * C = B1 B0: row 0 = [.4375,.3125,.25], row 1 = [.25,.4375,.3125];
 *   r^T C = [.34375, .375, .28125]  -> [.375, .28125]   (unnormalised: 4x)
 * start_layer 1: r^T B1 = [.375,.375,.25] -> [.375, .25]  (unnormalised: 2x)
 * raw_attention: r^T mean_h([A_1]+) = .5 ([0,.5,.5] + [.5,0,.5]) -> [.25, .5] */
START_TEST(test_hand_rollout)
{
    const float A0[18] = {1, 0, 0, 0, 1, 0, 0, 0, 1, /**/ 0, 1, 0, 0, 0, 1, 1, 0, 0};
    const float A1[18] = {0, .5f, .5f, .5f, 0, .5f, .5f, .5f, 0, /**/ 0, .5f, .5f, .5f, 0, .5f, .5f, .5f, 0};
    const float r_avg[3] = {.5f, .5f, 0};
    rp_layer_view v[2] = {{.A = A0}, {.A = A1}}; /* G, R NULL: rollout and raw attention need neither */
    rp_map_input in = {.layers = v, .n_layers = 2, .heads = 2, .tokens = 3, .prefix = 1, .readout = r_avg};
    rp_error err = {0};
    float out[2];
    ck_assert_int_eq(rp_map_rollout(&in, 0, out, &err), RP_OK);
    expect_close(out, (const double[]){.375, .28125}, 2, 1e-6, "rollout start 0");
    ck_assert_int_eq(rp_map_rollout(&in, 1, out, &err), RP_OK);
    expect_close(out, (const double[]){.375, .25}, 2, 1e-6, "rollout start 1");
    ck_assert_int_eq(rp_map_raw_attention(&in, out, &err), RP_OK);
    expect_close(out, (const double[]){.25, .5}, 2, 1e-6, "raw_attention");
}
END_TEST

/* Clamping happens per head, before the mean: H = 2, N = 3, prefix 1.
 *   row 0, head 0 = [0, 1, -1], head 1 = [0, -1, 3]
 *   mean_h [.]+ = [0, .5, 1.5] (a clamp after the mean would give [0, 0, 1]). */
START_TEST(test_hand_clamp_per_head)
{
    const float X[18] = {0, 1, -1, 9, 9, 9, 9, 9, 9, /**/ 0, -1, 3, -9, -9, -9, -9, -9, -9};
    rp_layer_view v = {.A = X, .R = X};
    rp_map_input in = {.layers = &v, .n_layers = 1, .heads = 2, .tokens = 3, .prefix = 1, .readout = e0_3};
    rp_error err = {0};
    float out[2];
    ck_assert_int_eq(rp_map_raw_attention(&in, out, &err), RP_OK);
    expect_close(out, (const double[]){.5, 1.5}, 2, 1e-6, "raw_attention");
    ck_assert_int_eq(rp_map_lrp_last_layer(&in, out, &err), RP_OK);
    expect_close(out, (const double[]){.5, 1.5}, 2, 1e-6, "lrp_last_layer");
}
END_TEST

/* attn_gradcam, H = 2, N = 4, prefix 1, r = e_0 (rows 1..3 hold junk 7s).
 *   head 0: A[0] = [.1,.2,.3,.4], G[0] = [100,1,2,3]: w0 = mean(1,2,3) = 2 (the CLS column
 *           100 is not a patch) -> w0 A[0,1:] = [.4,.6,.8]
 *   head 1: A[0] = [.4,.2,.2,.2], G[0] = [0,-1,0,-2]: w1 = -1 -> [-.2,-.2,-.2]
 *   mean = [.1,.2,.3], clamp keeps it, min-max -> [0, .5, 1].
 * With G head 1 row 0 = [0,-10,-10,-10] (w1 = -10) every value is negative:
 *   the clamp gives all zeros, and max == min must give zeros, not NaN. */
START_TEST(test_hand_gradcam)
{
    float A[32], G[32];
    for (int k = 0; k < 32; k++)
        A[k] = G[k] = 7;
    const float a0[4] = {.1f, .2f, .3f, .4f}, a1[4] = {.4f, .2f, .2f, .2f};
    const float g0[4] = {100, 1, 2, 3}, g1[4] = {0, -1, 0, -2};
    memcpy(A, a0, sizeof a0);
    memcpy(A + 16, a1, sizeof a1);
    memcpy(G, g0, sizeof g0);
    memcpy(G + 16, g1, sizeof g1);
    const float e0[4] = {1, 0, 0, 0};
    rp_layer_view v = {.A = A, .G = G};
    rp_map_input in = {.layers = &v, .n_layers = 1, .heads = 2, .tokens = 4, .prefix = 1, .readout = e0};
    rp_error err = {0};
    float out[3];
    ck_assert_int_eq(rp_map_attn_gradcam(&in, out, &err), RP_OK);
    expect_close(out, (const double[]){0, .5, 1}, 3, 1e-6, "attn_gradcam");

    for (int j = 1; j < 4; j++)
        G[16 + j] = -10;
    ck_assert_int_eq(rp_map_attn_gradcam(&in, out, &err), RP_OK);
    for (int j = 0; j < 3; j++)
        ck_assert_msg(out[j] == 0.0f, "all-clamped attn_gradcam[%d] = %g, want 0", j, (double)out[j]);
}
END_TEST

/* ---- random cases against a naive double transcription of docs/method.md §5 ---- */

typedef struct naive_case {
    int L, H, N, prefix;
    float *A, *G, *R; /* L * H * N * N each */
    float *r;
    rp_layer_view *v;
    rp_map_input in;
} naive_case;

static unsigned rng_state = 12345u;
static double urand(void)
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (rng_state >> 8) / 16777216.0;
}

static void naive_init(naive_case *c, int L, int H, int N, int prefix)
{
    c->L = L, c->H = H, c->N = N, c->prefix = prefix;
    size_t per = (size_t)H * N * N, all = (size_t)L * per;
    c->A = malloc(all * sizeof(float));
    c->G = malloc(all * sizeof(float));
    c->R = malloc(all * sizeof(float));
    c->r = calloc((size_t)N, sizeof(float));
    c->v = malloc((size_t)L * sizeof *c->v);
    for (size_t k = 0; k < all; k++) {
        c->A[k] = (float)urand();
        c->G[k] = (float)(urand() - 0.45);
        c->R[k] = (float)(urand() - 0.3);
    }
    /* rows of A as softmax-like probabilities */
    for (size_t row = 0; row < all / N; row++) {
        double s = 0;
        for (int j = 0; j < N; j++)
            s += c->A[row * N + j];
        for (int j = 0; j < N; j++)
            c->A[row * N + j] /= (float)s;
    }
    for (int l = 0; l < L; l++)
        c->v[l] = (rp_layer_view){c->A + l * per, c->G + l * per, c->R + l * per, NULL};
    c->in = (rp_map_input){.layers = c->v, .n_layers = L, .heads = H, .tokens = N, .prefix = prefix, .readout = c->r};
}

static void naive_free(naive_case *c)
{
    free(c->A); free(c->G); free(c->R); free(c->r); free(c->v);
}

enum { NV_TA, NV_ROLLOUT, NV_GENERIC };

/* M_l[i][j] for the chain methods, in double. */
static double naive_term(const naive_case *c, int kind, int l, int i, int j)
{
    double s = 0;
    for (int h = 0; h < c->H; h++) {
        size_t k = (((size_t)l * c->H + h) * c->N + i) * c->N + j;
        double x = kind == NV_TA ? (double)c->G[k] * c->R[k]
                 : kind == NV_GENERIC ? (double)c->G[k] * c->A[k] : c->A[k];
        if (kind != NV_ROLLOUT && x < 0)
            x = 0;
        s += x;
    }
    return s / c->H;
}

static void naive_chain(const naive_case *c, int kind, int start, double *map)
{
    int N = c->N;
    double *C = calloc((size_t)N * N, sizeof *C), *B = calloc((size_t)N * N, sizeof *B),
           *T = calloc((size_t)N * N, sizeof *T);
    for (int i = 0; i < N; i++)
        C[i * N + i] = 1;
    for (int l = (kind == NV_GENERIC ? 0 : start); l < c->L; l++) {
        for (int i = 0; i < N; i++) {
            double rs = 0;
            for (int j = 0; j < N; j++) {
                B[i * N + j] = naive_term(c, kind, l, i, j) + (kind != NV_GENERIC && i == j);
                rs += B[i * N + j];
            }
            if (kind == NV_ROLLOUT)
                for (int j = 0; j < N; j++)
                    B[i * N + j] /= rs;
        }
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++) {
                double s = kind == NV_GENERIC ? C[i * N + j] : 0;
                for (int k = 0; k < N; k++)
                    s += B[i * N + k] * C[k * N + j];
                T[i * N + j] = s;
            }
        memcpy(C, T, (size_t)N * N * sizeof *C);
    }
    for (int j = c->prefix; j < N; j++) {
        double s = 0;
        for (int i = 0; i < N; i++)
            s += c->r[i] * C[i * N + j];
        map[j - c->prefix] = s;
    }
    free(C); free(B); free(T);
}

/* r^T mean_h([X_L]+) and attn_gradcam, in double. */
static void naive_last(const naive_case *c, const float *X, double *map)
{
    int N = c->N, l = c->L - 1;
    for (int j = c->prefix; j < N; j++) {
        double s = 0;
        for (int i = 0; i < N; i++)
            for (int h = 0; h < c->H; h++) {
                double x = X[(((size_t)l * c->H + h) * N + i) * N + j];
                s += c->r[i] * (x > 0 ? x : 0) / c->H;
            }
        map[j - c->prefix] = s;
    }
}

static void naive_gradcam(const naive_case *c, double *map)
{
    int N = c->N, P = N - c->prefix, l = c->L - 1;
    for (int j = 0; j < P; j++)
        map[j] = 0;
    for (int h = 0; h < c->H; h++) {
        const float *A = c->A + ((size_t)l * c->H + h) * N * N, *G = c->G + ((size_t)l * c->H + h) * N * N;
        double w = 0;
        for (int j = c->prefix; j < N; j++)
            for (int i = 0; i < N; i++)
                w += c->r[i] * G[i * N + j];
        w /= P;
        for (int j = c->prefix; j < N; j++) {
            double a = 0;
            for (int i = 0; i < N; i++)
                a += c->r[i] * A[i * N + j];
            map[j - c->prefix] += w * a / c->H;
        }
    }
    double lo = INFINITY, hi = -INFINITY;
    for (int j = 0; j < P; j++) {
        if (map[j] < 0)
            map[j] = 0;
        lo = fmin(lo, map[j]);
        hi = fmax(hi, map[j]);
    }
    for (int j = 0; j < P; j++)
        map[j] = hi > lo ? (map[j] - lo) / (hi - lo) : 0;
}

static double rel_err(const float *got, const double *want, int n)
{
    double d = 0, m = 0;
    for (int i = 0; i < n; i++) {
        d = fmax(d, fabs(got[i] - want[i]));
        m = fmax(m, fabs(want[i]));
    }
    return m > 0 ? d / m : d;
}

START_TEST(test_random_vs_naive)
{
    static const struct { int L, H, N, prefix, readout; } shapes[] = {
        {1, 1, 2, 1, 0}, {3, 2, 5, 1, 0}, {3, 2, 5, 2, 1}, {4, 3, 17, 1, 2}, {2, 4, 9, 0, 2}, {5, 3, 33, 3, 1},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        naive_case c;
        naive_init(&c, shapes[s].L, shapes[s].H, shapes[s].N, shapes[s].prefix);
        switch (shapes[s].readout) {
        case 0: c.r[0] = 1; break;                                    /* CLS */
        case 1: c.r[0] = c.r[1] = .5f; break;                         /* distilled DeiT */
        default: for (int i = 0; i < c.N; i++) c.r[i] = 1.0f / c.N;   /* mean pooling */
        }
        int P = c.N - c.prefix;
        float *out = malloc((size_t)P * sizeof *out);
        double *want = malloc((size_t)P * sizeof *want);
        rp_error err = {0};
        for (int start = 0; start < c.L; start++) {
            ck_assert_int_eq(rp_map_transformer_attribution(&c.in, start, out, &err), RP_OK);
            naive_chain(&c, NV_TA, start, want);
            ck_assert_msg(rel_err(out, want, P) < 1e-5, "TA shape %zu start %d: rel %g", s, start, rel_err(out, want, P));
            ck_assert_int_eq(rp_map_rollout(&c.in, start, out, &err), RP_OK);
            naive_chain(&c, NV_ROLLOUT, start, want);
            ck_assert_msg(rel_err(out, want, P) < 1e-5, "rollout shape %zu start %d: rel %g", s, start,
                          rel_err(out, want, P));
        }
        ck_assert_int_eq(rp_map_generic_attention(&c.in, out, &err), RP_OK);
        naive_chain(&c, NV_GENERIC, 0, want);
        ck_assert_msg(rel_err(out, want, P) < 1e-5, "generic shape %zu: rel %g", s, rel_err(out, want, P));
        ck_assert_int_eq(rp_map_raw_attention(&c.in, out, &err), RP_OK);
        naive_last(&c, c.A, want);
        ck_assert_msg(rel_err(out, want, P) < 1e-5, "raw shape %zu: rel %g", s, rel_err(out, want, P));
        ck_assert_int_eq(rp_map_lrp_last_layer(&c.in, out, &err), RP_OK);
        naive_last(&c, c.R, want);
        ck_assert_msg(rel_err(out, want, P) < 1e-5, "lrp_last shape %zu: rel %g", s, rel_err(out, want, P));
        ck_assert_int_eq(rp_map_attn_gradcam(&c.in, out, &err), RP_OK);
        naive_gradcam(&c, want);
        /* min-max normalisation divides by a difference: allow a little more */
        ck_assert_msg(rel_err(out, want, P) < 1e-4, "gradcam shape %zu: rel %g", s, rel_err(out, want, P));
        free(out);
        free(want);
        naive_free(&c);
    }
}
END_TEST

/* ---- errors ---- */

#define EXPECT_FAIL(call, want_)                                                                        \
    do {                                                                                               \
        rp_error err_ = {0};                                                                           \
        rp_error *err = &err_;                                                                         \
        rp_status st_ = (call);                                                                        \
        ck_assert_msg(st_ == (want_), "%s: status %d, want %d (%s)", #call, st_, want_, err_.msg);       \
        ck_assert_msg(err_.code == (want_) && err_.msg[0], "%s: error not filled in", #call);           \
    } while (0)

START_TEST(test_errors)
{
    rp_layer_view v;
    rp_map_input good = one_layer_input(&v), in;
    float out[8];

    EXPECT_FAIL(rp_map_transformer_attribution(NULL, 0, out, err), RP_ERR_ARG);
    EXPECT_FAIL(rp_map_rollout(&good, 0, NULL, err), RP_ERR_ARG);
    EXPECT_FAIL(rp_map_transformer_attribution(&good, 1, out, err), RP_ERR_ARG); /* start = L */
    EXPECT_FAIL(rp_map_transformer_attribution(&good, -1, out, err), RP_ERR_ARG);
    EXPECT_FAIL(rp_map_rollout(&good, 1, out, err), RP_ERR_ARG);
    EXPECT_FAIL(rp_map_rollout(&good, -1, out, err), RP_ERR_ARG);

    in = good, in.n_layers = 0;
    EXPECT_FAIL(rp_map_generic_attention(&in, out, err), RP_ERR_ARG);
    EXPECT_FAIL(rp_map_raw_attention(&in, out, err), RP_ERR_ARG);
    in = good, in.layers = NULL;
    EXPECT_FAIL(rp_map_lrp_last_layer(&in, out, err), RP_ERR_ARG);
    in = good, in.heads = 0;
    EXPECT_FAIL(rp_map_raw_attention(&in, out, err), RP_ERR_ARG);
    in = good, in.tokens = 0;
    EXPECT_FAIL(rp_map_attn_gradcam(&in, out, err), RP_ERR_ARG);
    in = good, in.tokens = -3;
    EXPECT_FAIL(rp_map_rollout(&in, 0, out, err), RP_ERR_ARG);
    in = good, in.prefix = 3; /* no patch left */
    EXPECT_FAIL(rp_map_transformer_attribution(&in, 0, out, err), RP_ERR_ARG);
    in = good, in.prefix = -1;
    EXPECT_FAIL(rp_map_generic_attention(&in, out, err), RP_ERR_ARG);
    in = good, in.readout = NULL;
    EXPECT_FAIL(rp_map_raw_attention(&in, out, err), RP_ERR_ARG);

    /* missing operands */
    rp_layer_view nv = v;
    in = good, in.layers = &nv;
    nv.G = NULL;
    EXPECT_FAIL(rp_map_transformer_attribution(&in, 0, out, err), RP_ERR_ARG);
    EXPECT_FAIL(rp_map_generic_attention(&in, out, err), RP_ERR_ARG);
    EXPECT_FAIL(rp_map_attn_gradcam(&in, out, err), RP_ERR_ARG);
    ck_assert_int_eq(rp_map_rollout(&in, 0, out, NULL), RP_OK);
    ck_assert_int_eq(rp_map_lrp_last_layer(&in, out, NULL), RP_OK);
    nv = v, nv.R = NULL;
    EXPECT_FAIL(rp_map_transformer_attribution(&in, 0, out, err), RP_ERR_ARG);
    EXPECT_FAIL(rp_map_lrp_last_layer(&in, out, err), RP_ERR_ARG);
    ck_assert_int_eq(rp_map_generic_attention(&in, out, NULL), RP_OK);
    ck_assert_int_eq(rp_map_attn_gradcam(&in, out, NULL), RP_OK);
    nv = v, nv.A = NULL;
    EXPECT_FAIL(rp_map_rollout(&in, 0, out, err), RP_ERR_ARG);
    EXPECT_FAIL(rp_map_raw_attention(&in, out, err), RP_ERR_ARG);
    EXPECT_FAIL(rp_map_generic_attention(&in, out, err), RP_ERR_ARG);
    EXPECT_FAIL(rp_map_attn_gradcam(&in, out, err), RP_ERR_ARG);
    ck_assert_int_eq(rp_map_transformer_attribution(&in, 0, out, NULL), RP_OK);

    /* the last-layer methods read only the last layer; the chains read layers from start_layer on */
    rp_layer_view two[2] = {{.A = NULL, .G = NULL, .R = NULL}, v};
    in = good, in.layers = two, in.n_layers = 2;
    ck_assert_int_eq(rp_map_raw_attention(&in, out, NULL), RP_OK);
    ck_assert_int_eq(rp_map_lrp_last_layer(&in, out, NULL), RP_OK);
    ck_assert_int_eq(rp_map_attn_gradcam(&in, out, NULL), RP_OK);
    ck_assert_int_eq(rp_map_transformer_attribution(&in, 1, out, NULL), RP_OK);
    ck_assert_int_eq(rp_map_rollout(&in, 1, out, NULL), RP_OK);
    EXPECT_FAIL(rp_map_transformer_attribution(&in, 0, out, err), RP_ERR_ARG);
    EXPECT_FAIL(rp_map_rollout(&in, 0, out, err), RP_ERR_ARG);
    EXPECT_FAIL(rp_map_generic_attention(&in, out, err), RP_ERR_ARG);
}
END_TEST

/* ---- the oracle ---- */

enum { M_TA, M_ROLLOUT, M_RAW, M_GRADCAM, M_LRP_LAST, M_GENERIC, M_COUNT };
static const char *const method_file[M_COUNT] = {"transformer_attribution", "rollout", "raw_attention",
                                                 "attn_gradcam", "lrp_last_layer", "generic_attention"};

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static void load_f32(const char *path, rp_tensor *t)
{
    rp_error err = {0};
    ck_assert_msg(rp_npy_read(path, t, &err) == RP_OK, "%s: %s", path, err.msg);
    ck_assert_msg(t->dtype == RP_FLOAT, "%s: not float32", path);
}

/* Runs all six methods on one case folder: intermediates (attn_L, attn_grad_L,
 * attn_cam_L) from `inter`, expected maps from `maps`. worst[m] is raised to
 * this case's relative error. Returns 0 if the intermediates are absent. */
static int check_oracle_case(const char *inter, const char *maps, double worst[M_COUNT])
{
    char path[1024];
    snprintf(path, sizeof path, "%s/attn_0.npy", inter);
    if (!file_exists(path))
        return 0;
    int L = 0;
    for (;; L++) {
        snprintf(path, sizeof path, "%s/attn_%d.npy", inter, L);
        if (!file_exists(path))
            break;
    }
    rp_tensor *t = calloc((size_t)3 * L, sizeof *t);
    rp_layer_view *v = calloc((size_t)L, sizeof *v);
    static const char *const kinds[3] = {"attn", "attn_grad", "attn_cam"};
    int H = 0, N = 0;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < 3; k++) {
            rp_tensor *x = &t[3 * l + k];
            snprintf(path, sizeof path, "%s/%s_%d.npy", inter, kinds[k], l);
            load_f32(path, x);
            ck_assert_msg(x->rank == 3 && x->dims[1] == x->dims[2], "%s: want (H,N,N)", path);
            if (!H)
                H = (int)x->dims[0], N = (int)x->dims[1];
            ck_assert_msg(x->dims[0] == H && x->dims[1] == N, "%s: shape differs from layer 0", path);
            const float *d = x->data;
            if (k == 0) v[l].A = d;
            else if (k == 1) v[l].G = d;
            else v[l].R = d;
        }
    float *r = calloc((size_t)N, sizeof *r);
    r[0] = 1; /* CLS readout */
    rp_map_input in = {.layers = v, .n_layers = L, .heads = H, .tokens = N, .prefix = 1, .readout = r};
    int P = N - 1;
    float *out = malloc((size_t)P * sizeof *out);
    for (int m = 0; m < M_COUNT; m++) {
        rp_error err = {0};
        rp_status st;
        switch (m) {
        case M_TA: st = rp_map_transformer_attribution(&in, 0, out, &err); break;
        case M_ROLLOUT: st = rp_map_rollout(&in, 0, out, &err); break;
        case M_RAW: st = rp_map_raw_attention(&in, out, &err); break;
        case M_GRADCAM: st = rp_map_attn_gradcam(&in, out, &err); break;
        case M_LRP_LAST: st = rp_map_lrp_last_layer(&in, out, &err); break;
        default: st = rp_map_generic_attention(&in, out, &err); break;
        }
        ck_assert_msg(st == RP_OK, "%s %s: %s", maps, method_file[m], err.msg);
        rp_tensor e = {0};
        snprintf(path, sizeof path, "%s/%s.npy", maps, method_file[m]);
        if (!file_exists(path)) {
            /* tests/oracle/ lacks attn_gradcam.npy: read the one next to the intermediates */
            snprintf(path, sizeof path, "%s/%s.npy", inter, method_file[m]);
            printf("maps oracle: NOTE: %s/%s.npy absent, using %s\n", maps, method_file[m], path);
        }
        load_f32(path, &e);
        ck_assert_msg(e.count == P, "%s: %lld values, want %d", path, (long long)e.count, P);
        const float *ev = e.data;
        int n_nan = 0;
        for (int j = 0; j < P; j++)
            n_nan += isnan(ev[j]) != 0;
        if (m == M_GRADCAM && n_nan == P) {
            /* their min-max divided 0 by 0: ours must be all zeros */
            for (int j = 0; j < P; j++)
                ck_assert_msg(out[j] == 0.0f, "%s: expected all-NaN (clamped to 0), ours[%d] = %g", path, j,
                              (double)out[j]);
        } else {
            ck_assert_msg(n_nan == 0, "%s: %d NaN in expected", path, n_nan);
            double d = 0, mx = 0;
            for (int j = 0; j < P; j++) {
                ck_assert_msg(isfinite(out[j]), "%s: ours[%d] not finite", path, j);
                d = fmax(d, fabs((double)out[j] - ev[j]));
                mx = fmax(mx, fabs((double)ev[j]));
            }
            double rel = mx > 0 ? d / mx : d;
            if (rel > worst[m])
                worst[m] = rel;
            ck_assert_msg(rel <= ORACLE_REL_TOL, "%s: max|ours - theirs| / max|theirs| = %.3g > %g", path, rel,
                          ORACLE_REL_TOL);
        }
        rp_tensor_release(&e);
    }
    free(out);
    free(r);
    for (int k = 0; k < 3 * L; k++)
        rp_tensor_release(&t[k]);
    free(t);
    free(v);
    printf("maps oracle: %s: L=%d H=%d N=%d ok\n", inter, L, H, N);
    return 1;
}

static void print_worst(const char *what, const double worst[M_COUNT])
{
    printf("maps oracle %s, worst relative error:", what);
    for (int m = 0; m < M_COUNT; m++)
        printf(" %s %.2e%s", method_file[m], worst[m], m + 1 < M_COUNT ? "," : "\n");
    fflush(stdout);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted subfolder names of dir starting with prefix; returns count (<= cap). */
static int list_dirs(const char *dir, const char *prefix, char **names, int cap)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap)
        if (!strncmp(e->d_name, prefix, strlen(prefix)))
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, name_cmp);
    return n;
}

START_TEST(test_oracle_fmnist)
{
    const char *maps_root = RELPROP_SOURCE_DIR "/tests/oracle/fmnist_vit_s__timm17/expected";
    const char *inter_root = RELPROP_SHARED_DIR "/oracle/cases/fmnist_vit_s__timm17/expected";
    double worst[M_COUNT] = {0};
    char *inputs[64], *classes[64];
    int ni = list_dirs(maps_root, "input_", inputs, 64), done = 0, skipped = 0;
    ck_assert_msg(ni > 0, "no input_K folders under %s", maps_root);
    for (int i = 0; i < ni; i++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s", maps_root, inputs[i]);
        int nc = list_dirs(dir, "class_", classes, 64);
        for (int c = 0; c < nc; c++) {
            char maps[1024], inter[1024];
            snprintf(maps, sizeof maps, "%s/%s/%s", maps_root, inputs[i], classes[c]);
            snprintf(inter, sizeof inter, "%s/%s/%s", inter_root, inputs[i], classes[c]);
            if (check_oracle_case(inter, maps, worst))
                done++;
            else
                skipped++;
            free(classes[c]);
        }
        free(inputs[i]);
    }
    ck_assert_msg(skipped == 0, "%d fmnist case(s) have no attn_*.npy under %s (the per-layer intermediates are "
                  "read from the shared folder beside the checkout)", skipped, inter_root);
    ck_assert_int_gt(done, 0);
    print_worst("fmnist_vit_s__timm17", worst);
}
END_TEST

START_TEST(test_oracle_deit_tiny)
{
    const char *root = RELPROP_SHARED_DIR "/oracle/cases/deit_tiny_random__timm17/expected";
    double worst[M_COUNT] = {0};
    char *inputs[64], *classes[64];
    int ni = list_dirs(root, "input_", inputs, 64), done = 0;
    for (int i = 0; i < ni; i++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s", root, inputs[i]);
        int nc = list_dirs(dir, "class_", classes, 64);
        for (int c = 0; c < nc; c++) {
            char cd[2048];
            snprintf(cd, sizeof cd, "%s/%s", dir, classes[c]);
            done += check_oracle_case(cd, cd, worst); /* only folders with intermediates count */
            free(classes[c]);
        }
        free(inputs[i]);
    }
    ck_assert_msg(done > 0, "no DeiT-tiny case with intermediates under %s (read from the shared folder beside the "
                  "checkout)", root);
    print_worst("deit_tiny_random__timm17", worst);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("maps");
    TCase *tc = tcase_create("hand");
    tcase_add_test(tc, test_hand_one_layer);
    tcase_add_test(tc, test_hand_two_layers_readout_and_start);
    tcase_add_test(tc, test_hand_rollout);
    tcase_add_test(tc, test_hand_clamp_per_head);
    tcase_add_test(tc, test_hand_gradcam);
    tcase_add_test(tc, test_random_vs_naive);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    TCase *to = tcase_create("oracle");
    tcase_set_timeout(to, 600);
    tcase_add_test(to, test_oracle_fmnist);
    tcase_add_test(to, test_oracle_deit_tiny);
    suite_add_tcase(s, to);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
