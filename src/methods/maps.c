/* The attention-aggregation methods of docs/method.md §5 (everything except
 * lrp_full). Pure functions of the per-layer A, G, R collected by the engine.
 *
 * Arithmetic follows the authors' reference (float32 tensors, float32 matrix
 * products through BLAS): per-element products such as G*R are rounded to
 * float first, as torch does; only the means over heads, the row sums of the
 * rollout normalisation and the readout sums accumulate in double, which is
 * at least as accurate as the reference. Against the oracle every method
 * agrees to < 1e-6 relative (tests/test_maps.c).
 *
 * Products of layer matrices are full N x N products (sgemm), like the
 * reference, rather than a readout vector pushed through the chain: the two
 * are the same mathematically, but the full product keeps the reference's
 * order of operations and so its rounding. */
#include "methods/maps.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/blas.h"

/* What is averaged over heads, per element. */
typedef enum head_term {
    TERM_A,        /* A                    (rollout) */
    TERM_A_POS,    /* [A]+                 (raw attention) */
    TERM_R_POS,    /* [R]+                 (partial LRP) */
    TERM_GR_POS,   /* [G * R]+             (transformer attribution) */
    TERM_GA_POS    /* [G * A]+             (generic attention) */
} head_term;

static int term_needs_G(head_term t) { return t == TERM_GR_POS || t == TERM_GA_POS; }
static int term_needs_R(head_term t) { return t == TERM_R_POS || t == TERM_GR_POS; }
static int term_needs_A(head_term t) { return t == TERM_A || t == TERM_A_POS || t == TERM_GA_POS; }

static inline float term_value(head_term t, const rp_layer_view *v, size_t k)
{
    float x;
    switch (t) {
    case TERM_A: return v->A[k];
    case TERM_A_POS: x = v->A[k]; break;
    case TERM_R_POS: x = v->R[k]; break;
    case TERM_GR_POS: x = v->GR ? v->GR[k] : v->G[k] * v->R[k]; break; /* rounded to float, like torch */
    case TERM_GA_POS: x = v->G[k] * v->A[k]; break;
    default: return 0.0f;
    }
    return x < 0.0f ? 0.0f : x; /* [.]+ ; a NaN stays NaN, as with torch's clamp */
}

static const char *term_name(head_term t)
{
    switch (t) {
    case TERM_A: case TERM_A_POS: return "attention map";
    case TERM_R_POS: return "relevance";
    case TERM_GR_POS: return "gradient and relevance";
    case TERM_GA_POS: return "gradient and attention map";
    }
    return "?";
}

/* Checks shared by every method; `term` says which of A/G/R must be present
 * in the layers that are read (all of them from `first` on). */
static rp_status check_input(const rp_map_input *in, const float *out, int first, head_term term,
                             int also_A, int also_G, const char *method, rp_error *err)
{
    if (!in)
        return rp_fail(err, RP_ERR_ARG, "%s: no input", method);
    if (!out)
        return rp_fail(err, RP_ERR_ARG, "%s: no output buffer", method);
    if (in->n_layers <= 0 || !in->layers)
        return rp_fail(err, RP_ERR_ARG, "%s: no attention layers (n_layers = %d)", method, in->n_layers);
    if (in->heads <= 0)
        return rp_fail(err, RP_ERR_ARG, "%s: heads must be positive, got %d", method, in->heads);
    if (in->tokens <= 0)
        return rp_fail(err, RP_ERR_ARG, "%s: tokens must be positive, got %d", method, in->tokens);
    if (in->prefix < 0 || in->prefix >= in->tokens)
        return rp_fail(err, RP_ERR_ARG, "%s: prefix %d out of range for %d tokens (need 0 <= prefix < tokens)",
                       method, in->prefix, in->tokens);
    if (!in->readout)
        return rp_fail(err, RP_ERR_ARG, "%s: no readout weights", method);
    for (int l = first; l < in->n_layers; l++) {
        const rp_layer_view *v = &in->layers[l];
        bool has_gr = term == TERM_GR_POS && v->GR;
        if (((term_needs_A(term) || also_A) && !v->A) || ((term_needs_G(term) || also_G) && !v->G && !has_gr) ||
            (term_needs_R(term) && !v->R && !has_gr))
            return rp_fail(err, RP_ERR_ARG,
                           "%s: attention layer %d gets no %s from the explained class: the class score does not "
                           "depend on that layer, and %s reads every layer it aggregates",
                           method, l, also_A && also_G ? "attention map and gradient" : term_name(term), method);
    }
    return RP_OK;
}

static rp_status check_start(const rp_map_input *in, int start_layer, const char *method, rp_error *err)
{
    if (in && in->n_layers > 0 && (start_layer < 0 || start_layer >= in->n_layers))
        return rp_fail(err, RP_ERR_ARG, "%s: start_layer %d out of range (model has %d attention layers)",
                       method, start_layer, in->n_layers);
    return RP_OK;
}

static float *alloc_mat(int n)
{
    return malloc((size_t)n * (size_t)n * sizeof(float));
}

/* M = mean_h(term(layer)) (+ I if add_identity), N x N. */
static void head_mean(const rp_map_input *in, const rp_layer_view *v, head_term t, int add_identity, float *M)
{
    const size_t nn = (size_t)in->tokens * (size_t)in->tokens;
    const int H = in->heads, N = in->tokens;
    for (size_t k = 0; k < nn; k++) {
        double s = 0.0;
        for (int h = 0; h < H; h++)
            s += term_value(t, v, (size_t)h * nn + k);
        M[k] = (float)(s / H);
    }
    if (add_identity)
        for (int i = 0; i < N; i++)
            M[(size_t)i * N + i] += 1.0f;
}

/* out[j - prefix] = sum_i r_i M[i, j] for the patch columns j. */
static void readout_rows(const rp_map_input *in, const float *M, float *out)
{
    const int N = in->tokens, p0 = in->prefix;
    for (int j = p0; j < N; j++) {
        double s = 0.0;
        for (int i = 0; i < N; i++) {
            double r = in->readout[i];
            if (r != 0.0) /* e_0 reads row 0 exactly; zero rows never contribute */
                s += r * M[(size_t)i * N + j];
        }
        out[j - p0] = (float)s;
    }
}

/* Divide each row by its sum (left unchanged where the sum is 0). */
static void normalise_rows(int N, float *M)
{
    for (int i = 0; i < N; i++) {
        float *row = M + (size_t)i * N;
        double s = 0.0;
        for (int j = 0; j < N; j++)
            s += row[j];
        if (s != 0.0) {
            float fs = (float)s;
            for (int j = 0; j < N; j++)
                row[j] /= fs;
        }
    }
}

/* C = B_(L-1) ... B_(start) with B_l = mean_h(term(l)) + I, optionally row
 * normalised; map = (r^T C)[patch cols]. */
static rp_status product_chain(const rp_map_input *in, int start_layer, head_term t, int normalise,
                               float *out, const char *method, rp_error *err)
{
    const int N = in->tokens;
    float *C = alloc_mat(N), *B = alloc_mat(N), *T = alloc_mat(N);
    if (!C || !B || !T) {
        free(C); free(B); free(T);
        return rp_fail(err, RP_ERR_NOMEM, "%s: cannot allocate 3 x %d x %d floats", method, N, N);
    }
    head_mean(in, &in->layers[start_layer], t, 1, C);
    if (normalise)
        normalise_rows(N, C);
    for (int l = start_layer + 1; l < in->n_layers; l++) {
        head_mean(in, &in->layers[l], t, 1, B);
        if (normalise)
            normalise_rows(N, B);
        rp_sgemm(CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, B, N, C, N, 0.0f, T, N);
        float *tmp = C; C = T; T = tmp;
    }
    readout_rows(in, C, out);
    free(C); free(B); free(T);
    return RP_OK;
}

rp_status rp_map_transformer_attribution(const rp_map_input *in, int start_layer, float *out, rp_error *err)
{
    static const char *m = "transformer_attribution";
    rp_status st = check_start(in, start_layer, m, err);
    if (st == RP_OK) /* layers below start_layer are not read */
        st = check_input(in, out, start_layer, TERM_GR_POS, 0, 0, m, err);
    if (st != RP_OK)
        return st;
    return product_chain(in, start_layer, TERM_GR_POS, 0, out, m, err);
}

/* Rollout. docs/method.md §5.2 divides each row of mean_h(A)+I by its sum. Some
 * copies of the authors' compute_rollout_attention have that line commented
 * out, so we checked against the oracle (fmnist, 6 input/class cases, L = 4;
 * DeiT-tiny, L = 12): WITH the row normalisation the maps agree to 1.1e-7 ..
 * 6.4e-7 relative; WITHOUT it every map is exactly 2^L times too large
 * (relative error 15.0 for L = 4, 4095 for L = 12: softmax rows sum to 1, so
 * each row of mean_h(A)+I sums to 2). The fixture is the ground truth:
 * rows are normalised. Dividing by the actual row sum (not by 2) keeps
 * rollout meaningful for attention rows that do not sum to 1. */
rp_status rp_map_rollout(const rp_map_input *in, int start_layer, float *out, rp_error *err)
{
    static const char *m = "rollout";
    rp_status st = check_start(in, start_layer, m, err);
    if (st == RP_OK) /* layers below start_layer are not read */
        st = check_input(in, out, start_layer, TERM_A, 0, 0, m, err);
    if (st != RP_OK)
        return st;
    return product_chain(in, start_layer, TERM_A, 1, out, m, err);
}

/* out = (r^T mean_h(term(last layer)))[patch cols], without an N x N scratch. */
static rp_status last_layer_map(const rp_map_input *in, head_term t, float *out, const char *method, rp_error *err)
{
    rp_status st = check_input(in, out, in ? in->n_layers - 1 : 0, t, 0, 0, method, err);
    if (st != RP_OK)
        return st;
    const int N = in->tokens, H = in->heads, p0 = in->prefix;
    const size_t nn = (size_t)N * (size_t)N;
    const rp_layer_view *v = &in->layers[in->n_layers - 1];
    for (int j = p0; j < N; j++) {
        double s = 0.0;
        for (int i = 0; i < N; i++) {
            double r = in->readout[i];
            if (r == 0.0)
                continue;
            double hs = 0.0;
            for (int h = 0; h < H; h++)
                hs += term_value(t, v, (size_t)h * nn + (size_t)i * N + j);
            s += r * (double)(float)(hs / H); /* the reference materialises the mean in float */
        }
        out[j - p0] = (float)s;
    }
    return RP_OK;
}

rp_status rp_map_raw_attention(const rp_map_input *in, float *out, rp_error *err)
{
    return last_layer_map(in, TERM_A_POS, out, "raw_attention", err);
}

rp_status rp_map_lrp_last_layer(const rp_map_input *in, float *out, rp_error *err)
{
    return last_layer_map(in, TERM_R_POS, out, "lrp_last_layer", err);
}

rp_status rp_map_attn_gradcam(const rp_map_input *in, float *out, rp_error *err)
{
    static const char *m = "attn_gradcam";
    rp_status st = check_input(in, out, in ? in->n_layers - 1 : 0, TERM_A, 1, 1, m, err);
    if (st != RP_OK)
        return st;
    const int N = in->tokens, H = in->heads, p0 = in->prefix, P = N - p0;
    const size_t nn = (size_t)N * (size_t)N;
    const rp_layer_view *v = &in->layers[in->n_layers - 1];
    double *acc = calloc((size_t)P, sizeof *acc);
    float *ra = malloc((size_t)P * sizeof *ra);
    if (!acc || !ra) {
        free(acc); free(ra);
        return rp_fail(err, RP_ERR_NOMEM, "%s: cannot allocate scratch for %d patches", m, P);
    }
    for (int h = 0; h < H; h++) {
        const float *A = v->A + (size_t)h * nn, *G = v->G + (size_t)h * nn;
        /* w_h = mean_j (r^T G_h)[j] over patch columns; ra = (r^T A_h)[patch cols] */
        double w = 0.0;
        for (int j = p0; j < N; j++) {
            double g = 0.0, a = 0.0;
            for (int i = 0; i < N; i++) {
                double r = in->readout[i];
                if (r == 0.0)
                    continue;
                g += r * G[(size_t)i * N + j];
                a += r * A[(size_t)i * N + j];
            }
            w += (float)g;
            ra[j - p0] = (float)a;
        }
        float wh = (float)(w / P);
        for (int j = 0; j < P; j++)
            acc[j] += ra[j] * wh; /* product in float, like the reference */
    }
    float lo = INFINITY, hi = -INFINITY;
    for (int j = 0; j < P; j++) {
        float x = (float)(acc[j] / H);
        x = x > 0.0f ? x : 0.0f;
        out[j] = x;
        if (x < lo) lo = x;
        if (x > hi) hi = x;
    }
    /* min-max to [0, 1]; a constant map (e.g. everything clamped to 0, where
     * the reference divides 0 by 0 and returns NaN) becomes all zeros. */
    if (hi > lo) {
        float range = hi - lo;
        for (int j = 0; j < P; j++)
            out[j] = (out[j] - lo) / range;
    } else {
        memset(out, 0, (size_t)P * sizeof *out);
    }
    free(acc); free(ra);
    return RP_OK;
}

rp_status rp_map_generic_attention(const rp_map_input *in, float *out, rp_error *err)
{
    static const char *m = "generic_attention";
    rp_status st = check_input(in, out, 0, TERM_GA_POS, 0, 0, m, err);
    if (st != RP_OK)
        return st;
    const int N = in->tokens;
    const size_t nn = (size_t)N * (size_t)N;
    float *Rm = alloc_mat(N), *B = alloc_mat(N), *T = alloc_mat(N);
    if (!Rm || !B || !T) {
        free(Rm); free(B); free(T);
        return rp_fail(err, RP_ERR_NOMEM, "%s: cannot allocate 3 x %d x %d floats", m, N, N);
    }
    memset(Rm, 0, nn * sizeof *Rm);
    for (int i = 0; i < N; i++)
        Rm[(size_t)i * N + i] = 1.0f;
    for (int l = 0; l < in->n_layers; l++) {
        head_mean(in, &in->layers[l], TERM_GA_POS, 0, B);
        rp_sgemm(CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, B, N, Rm, N, 0.0f, T, N);
        for (size_t k = 0; k < nn; k++)
            Rm[k] += T[k];
    }
    readout_rows(in, Rm, out);
    free(Rm); free(B); free(T);
    return RP_OK;
}
