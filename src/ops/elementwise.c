/* Elementwise ops: numpy-broadcast arithmetic and comparison, one-input math,
 * Where, Clip, Cast.
 *
 * Kernels are chosen per dtype at prepare and stored as function pointers in
 * the node's params, so forward does no type dispatch. Broadcasting is planned
 * at prepare too: output dims of size 1 are dropped and neighbouring dims that
 * every operand walks contiguously (or broadcasts over together) are merged,
 * so the innermost dim is as long as possible and each operand's stride on it
 * is 0 or 1. Forward walks the outer dims with an odometer and hands whole
 * rows to a row kernel whose loops are plain array loops; same-shape,
 * scalar and row-vector operands all end up in one long or a few short rows.
 *
 * Integer arithmetic is done in unsigned types so overflow wraps as numpy's
 * does instead of being undefined behaviour in C. */
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/convert.h"
#include "core/fastmath.h"
#include "core/pool.h"
#include "ops/ops.h"

#define N_DT 14 /* rp_dtype values run 0..13 */

/* A row of a broadcast op: n outputs from operands x[k]; bit k of `fixed`
 * says operand k stays on its first element for the whole row. */
typedef void (*row_fn)(char *y, const char *const *x, int64_t n, unsigned fixed);
/* A one-input op over n contiguous elements. */
typedef void (*map_fn)(char *y, const char *x, int64_t n, const void *aux);

typedef struct ew {
    row_fn row;        /* broadcast ops */
    map_fn map;        /* one-input ops */
    int n;             /* inputs of a broadcast op */
    int arity;         /* operands per row call: 2, or 3 for Where */
    int rank;          /* rank of the merged broadcast (>= 1) */
    rp_dtype to;       /* Cast / CastLike target */
    bool has_lo, has_hi; /* Clip-6 attributes */
    bool gelu_tanh;    /* Gelu's approximate = "tanh" (for the gradient) */
    float lo, hi;
    double lo_d, hi_d;
    int64_t dims[RP_MAX_RANK];
    int64_t st[][RP_MAX_RANK]; /* element strides of inputs 0..n-1, then of the output */
} ew;

/* Clip bounds as pointers to one element of the input's dtype; NULL = none. */
typedef struct clip_bounds {
    const void *lo, *hi;
} clip_bounds;

/* X(arg, dtype, C type, short name, kind, wrap type, lowest, highest).
 * kind: F float, S signed, U unsigned, B bool. The wrap type is where + - *
 * happen so integer overflow wraps. */
#define NUMERIC_TYPES(X, A) \
    X(A, RP_FLOAT, float, f32, F, float, -INFINITY, INFINITY) \
    X(A, RP_DOUBLE, double, f64, F, double, -INFINITY, INFINITY) \
    X(A, RP_INT8, int8_t, i8, S, uint32_t, INT8_MIN, INT8_MAX) \
    X(A, RP_INT16, int16_t, i16, S, uint32_t, INT16_MIN, INT16_MAX) \
    X(A, RP_INT32, int32_t, i32, S, uint32_t, INT32_MIN, INT32_MAX) \
    X(A, RP_INT64, int64_t, i64, S, uint64_t, INT64_MIN, INT64_MAX) \
    X(A, RP_UINT8, uint8_t, u8, U, uint32_t, 0, UINT8_MAX) \
    X(A, RP_UINT16, uint16_t, u16, U, uint32_t, 0, UINT16_MAX) \
    X(A, RP_UINT32, uint32_t, u32, U, uint32_t, 0, UINT32_MAX) \
    X(A, RP_UINT64, uint64_t, u64, U, uint64_t, 0, UINT64_MAX)
#define ALL_TYPES(X, A) \
    NUMERIC_TYPES(X, A) \
    X(A, RP_BOOL, uint8_t, b8, B, uint32_t, 0, 1)
#define SIGNED_TYPES(X, A) \
    X(A, RP_FLOAT, float, f32, F, float, -INFINITY, INFINITY) \
    X(A, RP_DOUBLE, double, f64, F, double, -INFINITY, INFINITY) \
    X(A, RP_INT8, int8_t, i8, S, uint32_t, INT8_MIN, INT8_MAX) \
    X(A, RP_INT16, int16_t, i16, S, uint32_t, INT16_MIN, INT16_MAX) \
    X(A, RP_INT32, int32_t, i32, S, uint32_t, INT32_MIN, INT32_MAX) \
    X(A, RP_INT64, int64_t, i64, S, uint64_t, INT64_MIN, INT64_MAX)

/* Table entry [dtype] = prefix_shortname. */
#define ENTRY(P, DT, T, N, K, W, LO, HI) [DT] = P##_##N,

/* ---- broadcast row kernels ---- */

/* EXPR reads av and bv. The four branches are the four stride patterns an
 * inner row can have; each is a loop the compiler can keep in registers. */
#define BIN_ROW(name, TA, TB, TY, EXPR) \
    RP_VECTOR_CLONES static void name(char *y_, const char *const *x, int64_t n, unsigned fixed) \
    { \
        TY *y = (TY *)(void *)y_; \
        const TA *a = (const TA *)(const void *)x[0]; \
        const TB *b = (const TB *)(const void *)x[1]; \
        if (fixed == 0) { \
            for (int64_t i = 0; i < n; i++) { \
                TA av = a[i]; \
                TB bv = b[i]; \
                y[i] = (TY)(EXPR); \
            } \
        } else if (fixed == 1) { \
            TA av = a[0]; \
            for (int64_t i = 0; i < n; i++) { \
                TB bv = b[i]; \
                y[i] = (TY)(EXPR); \
            } \
        } else if (fixed == 2) { \
            TB bv = b[0]; \
            for (int64_t i = 0; i < n; i++) { \
                TA av = a[i]; \
                y[i] = (TY)(EXPR); \
            } \
        } else { \
            TA av = a[0]; \
            TB bv = b[0]; \
            TY v = (TY)(EXPR); \
            for (int64_t i = 0; i < n; i++) \
                y[i] = v; \
        } \
    }

#define ADD_X(K, T, W) ((W)av + (W)bv)
#define SUB_X(K, T, W) ((W)av - (W)bv)
#define MUL_X(K, T, W) ((W)av * (W)bv)
/* Integer division truncates as C does; x/0 is 0 (numpy warns and gives 0)
 * and INT_MIN/-1 wraps, rather than trapping. */
#define DIV_F(T, W) (av / bv)
#define DIV_S(T, W) (bv == 0 ? (W)0 : bv == -1 ? (W)0 - (W)av : (W)(av / bv))
#define DIV_U(T, W) (bv == 0 ? 0 : av / bv)
#define DIV_X(K, T, W) DIV_##K(T, W)
/* numpy's maximum/minimum propagate NaN. */
#define MAX_F(T) (isnan(av) || av > bv ? av : bv)
#define MAX_S(T) (av > bv ? av : bv)
#define MAX_U(T) (av > bv ? av : bv)
#define MAX_X(K, T, W) MAX_##K(T)
#define MIN_F(T) (isnan(av) || av < bv ? av : bv)
#define MIN_S(T) (av < bv ? av : bv)
#define MIN_U(T) (av < bv ? av : bv)
#define MIN_X(K, T, W) MIN_##K(T)
#define EQ_X(K, T, W) (av == bv)

#define GEN_SAME(OP, DT, T, N, K, W, LO, HI) BIN_ROW(OP##_##N, T, T, T, OP##_X(K, T, W))
#define GEN_EQ(OP, DT, T, N, K, W, LO, HI) BIN_ROW(eq_##N, T, T, uint8_t, EQ_X(K, T, W))

NUMERIC_TYPES(GEN_SAME, ADD)
NUMERIC_TYPES(GEN_SAME, SUB)
NUMERIC_TYPES(GEN_SAME, MUL)
NUMERIC_TYPES(GEN_SAME, DIV)
NUMERIC_TYPES(GEN_SAME, MAX)
NUMERIC_TYPES(GEN_SAME, MIN)
ALL_TYPES(GEN_EQ, _)

static const row_fn add_rows[N_DT] = {NUMERIC_TYPES(ENTRY, ADD)};
static const row_fn sub_rows[N_DT] = {NUMERIC_TYPES(ENTRY, SUB)};
static const row_fn mul_rows[N_DT] = {NUMERIC_TYPES(ENTRY, MUL)};
static const row_fn div_rows[N_DT] = {NUMERIC_TYPES(ENTRY, DIV)};
static const row_fn max_rows[N_DT] = {NUMERIC_TYPES(ENTRY, MAX)};
static const row_fn min_rows[N_DT] = {NUMERIC_TYPES(ENTRY, MIN)};
static const row_fn eq_rows[N_DT] = {ALL_TYPES(ENTRY, eq)};

/* Integer powers by squaring, wrapping like the integer's own arithmetic.
 * A negative exponent truncates 1/a^|e| toward zero. */
static int64_t ipow_u(int64_t a, uint64_t e)
{
    uint64_t r = 1, base = (uint64_t)a;
    while (e) {
        if (e & 1)
            r *= base;
        base *= base;
        e >>= 1;
    }
    return (int64_t)r;
}

static int64_t ipow_s(int64_t a, int64_t e)
{
    if (e >= 0)
        return ipow_u(a, (uint64_t)e);
    if (a == 1)
        return 1;
    if (a == -1)
        return (e & 1) ? -1 : 1;
    return 0;
}

/* Pow's output has the base's dtype (Pow-12+); the exponent may be any
 * numeric dtype. A float exponent on an integer base is evaluated in double
 * and truncated, as the ONNX reference does; a result out of the base's
 * range (2^1e30, inf, NaN) saturates as core/convert.h says, where a C cast
 * would be undefined. */
#define POWT_f32 float
#define POWT_f64 double
#define POWT_i32 int32_t
#define POWT_i64 int64_t
#define POWI_F(N) rp_sat_##N(pow((double)av, (double)bv))
#define POWI_S(N) ipow_s((int64_t)av, (int64_t)bv)
#define POWI_U(N) ipow_u((int64_t)av, (uint64_t)bv)
#define POWX_f32(K) powf(av, (float)bv)
#define POWX_f64(K) pow(av, (double)bv)
#define POWX_i32(K) POWI_##K(i32)
#define POWX_i64(K) POWI_##K(i64)
#define GEN_POW(P, DT, T, N, K, W, LO, HI) BIN_ROW(pow_##P##_##N, POWT_##P, T, POWT_##P, POWX_##P(K))
NUMERIC_TYPES(GEN_POW, f32)
NUMERIC_TYPES(GEN_POW, f64)
NUMERIC_TYPES(GEN_POW, i32)
NUMERIC_TYPES(GEN_POW, i64)

static const row_fn pow_rows[N_DT][N_DT] = {
    [RP_FLOAT] = {NUMERIC_TYPES(ENTRY, pow_f32)},
    [RP_DOUBLE] = {NUMERIC_TYPES(ENTRY, pow_f64)},
    [RP_INT32] = {NUMERIC_TYPES(ENTRY, pow_i32)},
    [RP_INT64] = {NUMERIC_TYPES(ENTRY, pow_i64)},
};

/* Decomposed LayerNorm squares with Pow(x, 2): a multiply instead of powf
 * (powf(x, 2) is x*x correctly rounded, so results are identical). */
static void pow_f32_f32_fast(char *y_, const char *const *x, int64_t n, unsigned fixed)
{
    if (fixed == 2 && *(const float *)(const void *)x[1] == 2.0f) {
        float *y = (float *)(void *)y_;
        const float *a = (const float *)(const void *)x[0];
        for (int64_t i = 0; i < n; i++)
            y[i] = a[i] * a[i];
        return;
    }
    pow_f32_f32(y_, x, n, fixed);
}

/* Where moves elements without looking at them, so one kernel per size. */
#define GEN_WHERE(T, N) \
    static void where_##N(char *y_, const char *const *x, int64_t n, unsigned fixed) \
    { \
        T *y = (T *)(void *)y_; \
        const uint8_t *c = (const uint8_t *)x[0]; \
        const T *a = (const T *)(const void *)x[1], *b = (const T *)(const void *)x[2]; \
        if (fixed == 0) { \
            for (int64_t i = 0; i < n; i++) \
                y[i] = c[i] ? a[i] : b[i]; \
            return; \
        } \
        ptrdiff_t sc = !(fixed & 1), sa = !(fixed & 2), sb = !(fixed & 4); \
        for (int64_t i = 0; i < n; i++, c += sc, a += sa, b += sb) \
            y[i] = *c ? *a : *b; \
    }
GEN_WHERE(uint8_t, 1)
GEN_WHERE(uint16_t, 2)
GEN_WHERE(uint32_t, 4)
GEN_WHERE(uint64_t, 8)

/* ---- one-input kernels ---- */

#define MAP(name, T, EXPR) \
    RP_VECTOR_CLONES static void name(char *y_, const char *x_, int64_t n, const void *aux) \
    { \
        T *y = (T *)(void *)y_; \
        const T *x = (const T *)(const void *)x_; \
        (void)aux; \
        for (int64_t i = 0; i < n; i++) { \
            T v = x[i]; \
            y[i] = (T)(EXPR); \
        } \
    }

#define SQRT2_INV 0.70710678118654752440
#define SQRT_2_PI 0.79788456080286535588 /* sqrt(2/pi), Gelu's tanh form */

MAP(sqrt_f32, float, sqrtf(v))
MAP(sqrt_f64, double, sqrt(v))
MAP(erf_f32, float, rp_erff(v))
MAP(erf_f64, double, erf(v))
MAP(tanh_f32, float, tanhf(v))
MAP(tanh_f64, double, tanh(v))
MAP(exp_f32, float, rp_expf(v))
MAP(exp_f64, double, exp(v))
MAP(sigmoid_f32, float, 1.0f / (1.0f + rp_expf(-v)))
MAP(sigmoid_f64, double, 1.0 / (1.0 + exp(-v)))
MAP(recip_f32, float, 1.0f / v)
MAP(recip_f64, double, 1.0 / v)
MAP(gelu_f32, float, 0.5f * v * (1.0f + rp_erff(v * (float)SQRT2_INV)))
MAP(gelu_f64, double, 0.5 * v * (1.0 + erf(v * SQRT2_INV)))
MAP(gelut_f32, float, 0.5f * v * (1.0f + tanhf((float)SQRT_2_PI * (v + 0.044715f * v * v * v))))
MAP(gelut_f64, double, 0.5 * v * (1.0 + tanh(SQRT_2_PI * (v + 0.044715 * v * v * v))))

/* Relu keeps NaN (v < 0 is false for it), as numpy's clip does. */
#define GEN_RELU(P, DT, T, N, K, W, LO, HI) MAP(relu_##N, T, v < 0 ? 0 : v)
#define NEG_F(T, W) (-v)
#define NEG_S(T, W) ((W)0 - (W)v)
#define GEN_NEG(P, DT, T, N, K, W, LO, HI) MAP(neg_##N, T, NEG_##K(T, W))
SIGNED_TYPES(GEN_RELU, _)
SIGNED_TYPES(GEN_NEG, _)

#define FLOAT_ENTRIES(P) {[RP_FLOAT] = P##_f32, [RP_DOUBLE] = P##_f64}
static const map_fn sqrt_maps[N_DT] = FLOAT_ENTRIES(sqrt);
static const map_fn erf_maps[N_DT] = FLOAT_ENTRIES(erf);
static const map_fn tanh_maps[N_DT] = FLOAT_ENTRIES(tanh);
static const map_fn exp_maps[N_DT] = FLOAT_ENTRIES(exp);
static const map_fn sigmoid_maps[N_DT] = FLOAT_ENTRIES(sigmoid);
static const map_fn recip_maps[N_DT] = FLOAT_ENTRIES(recip);
static const map_fn gelu_maps[N_DT] = FLOAT_ENTRIES(gelu);
static const map_fn gelut_maps[N_DT] = FLOAT_ENTRIES(gelut);
static const map_fn relu_maps[N_DT] = {SIGNED_TYPES(ENTRY, relu)};
static const map_fn neg_maps[N_DT] = {SIGNED_TYPES(ENTRY, neg)};

/* Clamp to lo, then to hi: when lo > hi every element becomes hi, as ONNX
 * specifies. NaN passes through both comparisons unchanged. */
#define GEN_CLIP(P, DT, T, N, K, W, LO, HI) \
    static void clip_##N(char *y_, const char *x_, int64_t n, const void *aux) \
    { \
        const clip_bounds *cb = aux; \
        T *y = (T *)(void *)y_; \
        const T *x = (const T *)(const void *)x_; \
        T lo = cb->lo ? *(const T *)cb->lo : (T)(LO); \
        T hi = cb->hi ? *(const T *)cb->hi : (T)(HI); \
        for (int64_t i = 0; i < n; i++) { \
            T v = x[i] < lo ? lo : x[i]; \
            y[i] = v > hi ? hi : v; \
        } \
    }
NUMERIC_TYPES(GEN_CLIP, _)
static const map_fn clip_maps[N_DT] = {NUMERIC_TYPES(ENTRY, clip)};

/* Cast: C conversions, except float to integer, which truncates and
 * saturates (NaN to 0, out of range and infinities to the type's minimum or
 * maximum: see core/convert.h; ONNX leaves these undefined, C too); anything
 * to bool is != 0. SK is the source's kind, N the target's short name. The
 * target list is spelled out again because a list macro cannot expand inside
 * its own expansion. */
#define CONV_F(T, N, SK, v) ((T)(v))
#define CONV_S(T, N, SK, v) CONV_INT_##SK(T, N, v)
#define CONV_U(T, N, SK, v) CONV_INT_##SK(T, N, v)
#define CONV_B(T, N, SK, v) ((T)((v) != 0))
#define CONV_INT_F(T, N, v) rp_sat_##N(v)
#define CONV_INT_S(T, N, v) ((T)(v))
#define CONV_INT_U(T, N, v) ((T)(v))
#define CONV_INT_B(T, N, v) ((T)(v))
#define CAST_LOOP(SRC, SK, T, N, KIND) \
    for (int64_t i = 0; i < n; i++) \
        ((T *)(void *)y)[i] = CONV_##KIND(T, N, SK, ((const SRC *)(const void *)x)[i]); \
    break;
#define GEN_CAST(P, DT, SRC, N, K, W, LO, HI) \
    static void cast_##N(char *y, const char *x, int64_t n, const void *aux) \
    { \
        switch (((const ew *)aux)->to) { \
        case RP_FLOAT: CAST_LOOP(SRC, K, float, f32, F) \
        case RP_DOUBLE: CAST_LOOP(SRC, K, double, f64, F) \
        case RP_INT8: CAST_LOOP(SRC, K, int8_t, i8, S) \
        case RP_INT16: CAST_LOOP(SRC, K, int16_t, i16, S) \
        case RP_INT32: CAST_LOOP(SRC, K, int32_t, i32, S) \
        case RP_INT64: CAST_LOOP(SRC, K, int64_t, i64, S) \
        case RP_UINT8: CAST_LOOP(SRC, K, uint8_t, u8, U) \
        case RP_UINT16: CAST_LOOP(SRC, K, uint16_t, u16, U) \
        case RP_UINT32: CAST_LOOP(SRC, K, uint32_t, u32, U) \
        case RP_UINT64: CAST_LOOP(SRC, K, uint64_t, u64, U) \
        case RP_BOOL: CAST_LOOP(SRC, K, uint8_t, b8, B) \
        default: break; \
        } \
    }
ALL_TYPES(GEN_CAST, _)
static const map_fn cast_maps[N_DT] = {ALL_TYPES(ENTRY, cast)};

/* ---- planning and walking a broadcast ---- */

/* Bit dt set for each dtype a table has a kernel for. */
static uint32_t rows_mask(const row_fn *t)
{
    uint32_t m = 0;
    for (int dt = 0; dt < N_DT; dt++)
        m |= t[dt] ? 1u << dt : 0;
    return m;
}

static uint32_t maps_mask(const map_fn *t)
{
    uint32_t m = 0;
    for (int dt = 0; dt < N_DT; dt++)
        m |= t[dt] ? 1u << dt : 0;
    return m;
}

static row_fn row_at(const row_fn *t, rp_dtype dt)
{
    return (int)dt >= 0 && (int)dt < N_DT ? t[dt] : NULL;
}

static map_fn map_at(const map_fn *t, rp_dtype dt)
{
    return (int)dt >= 0 && (int)dt < N_DT ? t[dt] : NULL;
}

/* "float32, float64" */
static const char *dtype_list(uint32_t mask, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = 0;
    for (int dt = 0; dt < N_DT && used < len; dt++)
        if (mask & (1u << dt))
            used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? ", " : "", rp_dtype_name((rp_dtype)dt));
    return buf;
}

static rp_status unsupported(rp_kctx *c, const char *what, rp_dtype dt, uint32_t mask)
{
    char list[256];
    return rp_kfail(c, RP_ERR_UNSUPPORTED, "%s dtype %s not supported, expected %s", what, rp_dtype_name(dt),
                    dtype_list(mask, list, sizeof list));
}

/* Present inputs: optional trailing ones the model left out do not count. */
static int present(const rp_kctx *c)
{
    int n = c->n_in;
    while (n > 0 && !c->in[n - 1])
        n--;
    return n;
}

/* Broadcast inputs 0..n-1 into out[0] (dtype ydt), then merge dims as the file
 * comment describes. Leaves params in c->params. */
static rp_status plan(rp_kctx *c, int n, int arity, rp_dtype ydt, row_fn row)
{
    rp_tensor *y = c->out[0];
    for (int k = 0; k < n; k++)
        if (!c->in[k])
            return rp_kfail(c, RP_ERR_FORMAT, "input %d is missing", k);
    y->dtype = ydt;
    rp_status st = rp_broadcast_shape(c, (const rp_tensor *const *)c->in, n, y);
    if (st)
        return st;
    ew *p = calloc(1, sizeof *p + (size_t)(n + 1) * sizeof p->st[0]);
    if (!p)
        return rp_kfail(c, RP_ERR_NOMEM, "out of memory");
    c->params = p;
    p->row = row;
    p->n = n;
    p->arity = arity;
    for (int k = 0; k < n; k++)
        rp_broadcast_strides(c->in[k], y, p->st[k]);
    rp_broadcast_strides(y, y, p->st[n]);

    /* Writing slot r never overtakes reading slot d (r <= d), so in place. */
    int r = 0;
    for (int d = 0; d < y->rank; d++) {
        if (y->dims[d] == 1)
            continue;
        bool merge = r > 0;
        for (int k = 0; k <= n && merge; k++)
            merge = p->st[k][r - 1] == p->st[k][d] * y->dims[d];
        if (merge) {
            p->dims[r - 1] *= y->dims[d];
            for (int k = 0; k <= n; k++)
                p->st[k][r - 1] = p->st[k][d];
        } else {
            p->dims[r] = y->dims[d];
            for (int k = 0; k <= n; k++)
                p->st[k][r] = p->st[k][d];
            r++;
        }
    }
    if (r == 0) { /* one element */
        p->dims[0] = 1;
        for (int k = 0; k <= n; k++)
            p->st[k][0] = 0;
        r = 1;
    }
    p->rank = r;
    return RP_OK;
}

/* Run `row` over the merged broadcast for the m operands whose stride rows
 * are ops[0..m). Outer dims advance by an odometer, one row call per step. */
static void walk(const ew *p, int m, const int *ops, const char *const *x, const size_t *es, char *y, size_t ey,
                 int64_t count)
{
    int r = p->rank;
    int64_t inner = p->dims[r - 1];
    unsigned fixed = 0;
    const char *px[3];
    for (int k = 0; k < m; k++) {
        px[k] = x[k];
        if (p->st[ops[k]][r - 1] == 0)
            fixed |= 1u << k;
    }
    int64_t idx[RP_MAX_RANK] = {0};
    for (int64_t done = 0; done < count; done += inner, y += inner * (int64_t)ey) {
        p->row(y, px, inner, fixed);
        for (int d = r - 2; d >= 0; d--) {
            if (++idx[d] < p->dims[d]) {
                for (int k = 0; k < m; k++)
                    px[k] += p->st[ops[k]][d] * (int64_t)es[k];
                break;
            }
            idx[d] = 0;
            for (int k = 0; k < m; k++)
                px[k] -= p->st[ops[k]][d] * (p->dims[d] - 1) * (int64_t)es[k];
        }
    }
}

static rp_status fw_bcast(rp_kctx *c)
{
    const ew *p = c->params;
    rp_tensor *y = c->out[0];
    if (y->count == 0)
        return RP_OK;
    size_t ey = rp_dtype_size(y->dtype);
    if (p->n == 1) { /* one-input Max/Min/Sum: the output is the input */
        memcpy(y->data, c->in[0]->data, (size_t)y->count * ey);
        return RP_OK;
    }
    const char *x[3];
    size_t es[3];
    int ops[3];
    for (int k = 0; k < p->arity; k++) {
        x[k] = c->in[k]->data;
        es[k] = rp_dtype_size(c->in[k]->dtype);
        ops[k] = k;
    }
    walk(p, p->arity, ops, x, es, y->data, ey, y->count);
    /* Further variadic inputs fold into the output in place: the output's
     * own stride row walks it contiguously. */
    for (int k = p->arity; k < p->n; k++) {
        const char *xk[2] = {y->data, c->in[k]->data};
        size_t esk[2] = {ey, ey};
        int opk[2] = {p->n, k};
        walk(p, 2, opk, xk, esk, y->data, ey, y->count);
    }
    return RP_OK;
}

/* ---- prepare for broadcast ops ---- */

/* All inputs of one dtype with a kernel in `table`. */
static rp_status prep_same(rp_kctx *c, const row_fn *table, bool to_bool)
{
    int n = present(c);
    for (int k = 0; k < n; k++)
        if (!c->in[k])
            return rp_kfail(c, RP_ERR_FORMAT, "input %d is missing", k);
    rp_dtype dt = c->in[0]->dtype;
    for (int k = 1; k < n; k++)
        if (c->in[k]->dtype != dt)
            return rp_kfail(c, RP_ERR_DTYPE, "input %d has dtype %s but input 0 has %s; expected the same dtype", k,
                            rp_dtype_name(c->in[k]->dtype), rp_dtype_name(dt));
    row_fn row = row_at(table, dt);
    if (!row)
        return unsupported(c, "input", dt, rows_mask(table));
    return plan(c, n, 2, to_bool ? RP_BOOL : dt, row);
}

static rp_status prep_add(rp_kctx *c) { return prep_same(c, add_rows, false); }
static rp_status prep_sub(rp_kctx *c) { return prep_same(c, sub_rows, false); }
static rp_status prep_mul(rp_kctx *c) { return prep_same(c, mul_rows, false); }
static rp_status prep_div(rp_kctx *c) { return prep_same(c, div_rows, false); }
static rp_status prep_max(rp_kctx *c) { return prep_same(c, max_rows, false); }
static rp_status prep_min(rp_kctx *c) { return prep_same(c, min_rows, false); }
static rp_status prep_sum(rp_kctx *c) { return prep_same(c, add_rows, false); }
static rp_status prep_equal(rp_kctx *c) { return prep_same(c, eq_rows, true); }

static rp_status prep_pow(rp_kctx *c)
{
    if (!c->in[0] || !c->in[1])
        return rp_kfail(c, RP_ERR_FORMAT, "expected two inputs (base, exponent)");
    rp_dtype bt = c->in[0]->dtype, et = c->in[1]->dtype;
    const uint32_t bases = 1u << RP_FLOAT | 1u << RP_DOUBLE | 1u << RP_INT32 | 1u << RP_INT64;
    if ((int)bt < 0 || (int)bt >= N_DT || !(bases & 1u << bt))
        return unsupported(c, "base", bt, bases);
    row_fn row = row_at(pow_rows[bt], et);
    if (!row)
        return unsupported(c, "exponent", et, rows_mask(pow_rows[bt]));
    if (bt == RP_FLOAT && et == RP_FLOAT)
        row = pow_f32_f32_fast;
    return plan(c, 2, 2, bt, row);
}

static rp_status prep_where(rp_kctx *c)
{
    for (int k = 0; k < 3; k++)
        if (k >= c->n_in || !c->in[k])
            return rp_kfail(c, RP_ERR_FORMAT, "expected three inputs (condition, X, Y)");
    if (c->in[0]->dtype != RP_BOOL)
        return rp_kfail(c, RP_ERR_DTYPE, "condition has dtype %s, expected bool", rp_dtype_name(c->in[0]->dtype));
    rp_dtype dt = c->in[1]->dtype;
    if (c->in[2]->dtype != dt)
        return rp_kfail(c, RP_ERR_DTYPE, "X has dtype %s but Y has %s; expected the same dtype", rp_dtype_name(dt),
                        rp_dtype_name(c->in[2]->dtype));
    row_fn row;
    switch (rp_dtype_size(dt)) {
    case 1: row = where_1; break;
    case 2: row = where_2; break;
    case 4: row = where_4; break;
    case 8: row = where_8; break;
    default: return rp_kfail(c, RP_ERR_UNSUPPORTED, "X dtype %s not supported", rp_dtype_name(dt));
    }
    return plan(c, 3, 3, dt, row);
}

/* ---- one-input ops ---- */

static rp_status prep_map_to(rp_kctx *c, const map_fn *table, rp_dtype ydt)
{
    if (c->n_in < 1 || !c->in[0])
        return rp_kfail(c, RP_ERR_FORMAT, "input 0 is missing");
    rp_tensor *x = c->in[0];
    map_fn map = map_at(table, x->dtype);
    if (!map)
        return unsupported(c, "input", x->dtype, maps_mask(table));
    ew *p = calloc(1, sizeof *p);
    if (!p)
        return rp_kfail(c, RP_ERR_NOMEM, "out of memory");
    c->params = p;
    p->map = map;
    p->to = ydt;
    rp_tensor_set_shape(c->out[0], ydt, x->rank, x->dims);
    return RP_OK;
}

static rp_status prep_map(rp_kctx *c, const map_fn *table)
{
    return prep_map_to(c, table, c->n_in >= 1 && c->in[0] ? c->in[0]->dtype : RP_UNDEFINED);
}

typedef struct map_job {
    const ew *p;
    char *y;
    const char *x;
    size_t ys, xs;
} map_job;

static void map_range(void *ctx, int64_t begin, int64_t end)
{
    const map_job *job = ctx;
    job->p->map(job->y + (size_t)begin * job->ys, job->x + (size_t)begin * job->xs, end - begin, job->p);
}

static rp_status fw_map(rp_kctx *c)
{
    const ew *p = c->params;
    map_job job = {p, c->out[0]->data, c->in[0]->data, rp_dtype_size(c->out[0]->dtype),
                   rp_dtype_size(c->in[0]->dtype)};
    rp_parallel_for(c->out[0]->count, RP_RANGE_ELEMENTS, map_range, &job);
    return RP_OK;
}

static rp_status prep_sqrt(rp_kctx *c) { return prep_map(c, sqrt_maps); }
static rp_status prep_erf(rp_kctx *c) { return prep_map(c, erf_maps); }
static rp_status prep_tanh(rp_kctx *c) { return prep_map(c, tanh_maps); }
static rp_status prep_exp(rp_kctx *c) { return prep_map(c, exp_maps); }
static rp_status prep_sigmoid(rp_kctx *c) { return prep_map(c, sigmoid_maps); }
static rp_status prep_recip(rp_kctx *c) { return prep_map(c, recip_maps); }
static rp_status prep_relu(rp_kctx *c) { return prep_map(c, relu_maps); }
static rp_status prep_neg(rp_kctx *c) { return prep_map(c, neg_maps); }

static rp_status prep_gelu(rp_kctx *c)
{
    const char *a = rp_attr_string(c->node, "approximate", "none");
    if (strcmp(a, "none") == 0)
        return prep_map(c, gelu_maps);
    if (strcmp(a, "tanh") == 0) {
        rp_status st = prep_map(c, gelut_maps);
        if (st == RP_OK)
            ((ew *)c->params)->gelu_tanh = true;
        return st;
    }
    return rp_kfail(c, RP_ERR_VALUE, "approximate is '%s', expected 'none' or 'tanh'", a);
}

static rp_status prep_cast_to(rp_kctx *c, int64_t to)
{
    if (to < 0 || to >= N_DT || !cast_maps[to]) {
        char list[256];
        return rp_kfail(c, RP_ERR_UNSUPPORTED, "target dtype %s (%lld) not supported, expected %s",
                        rp_dtype_name((rp_dtype)to), (long long)to, dtype_list(maps_mask(cast_maps), list, sizeof list));
    }
    return prep_map_to(c, cast_maps, (rp_dtype)to);
}

static rp_status prep_cast(rp_kctx *c)
{
    if (!rp_node_attr(c->node, "to"))
        return rp_kfail(c, RP_ERR_FORMAT, "attribute 'to' is missing");
    return prep_cast_to(c, rp_attr_int(c->node, "to", -1));
}

static rp_status prep_castlike(rp_kctx *c)
{
    if (c->n_in < 2 || !c->in[1])
        return rp_kfail(c, RP_ERR_FORMAT, "expected two inputs (input, target_type)");
    return prep_cast_to(c, c->in[1]->dtype);
}

/* Clip-6: bounds are float attributes, for float and double inputs. */
static rp_status prep_clip6(rp_kctx *c)
{
    if (c->n_in < 1 || !c->in[0])
        return rp_kfail(c, RP_ERR_FORMAT, "input 0 is missing");
    rp_dtype dt = c->in[0]->dtype;
    if (dt != RP_FLOAT && dt != RP_DOUBLE)
        return unsupported(c, "input", dt, 1u << RP_FLOAT | 1u << RP_DOUBLE);
    rp_status st = prep_map(c, clip_maps);
    if (st)
        return st;
    ew *p = c->params;
    p->has_lo = rp_node_attr(c->node, "min") != NULL;
    p->has_hi = rp_node_attr(c->node, "max") != NULL;
    p->lo = rp_attr_float(c->node, "min", -FLT_MAX);
    p->hi = rp_attr_float(c->node, "max", FLT_MAX);
    p->lo_d = p->lo;
    p->hi_d = p->hi;
    return RP_OK;
}

static rp_status fw_clip6(rp_kctx *c)
{
    const ew *p = c->params;
    bool f32 = c->in[0]->dtype == RP_FLOAT;
    clip_bounds b = {p->has_lo ? (f32 ? (const void *)&p->lo : (const void *)&p->lo_d) : NULL,
                     p->has_hi ? (f32 ? (const void *)&p->hi : (const void *)&p->hi_d) : NULL};
    if (c->out[0]->count)
        p->map(c->out[0]->data, c->in[0]->data, c->out[0]->count, &b);
    return RP_OK;
}

/* Clip-11+: optional scalar min/max inputs, which may be computed at run
 * time, so forward reads them. */
static rp_status prep_clip11(rp_kctx *c)
{
    rp_status st = prep_map(c, clip_maps);
    if (st)
        return st;
    static const char *const names[3] = {"input", "min", "max"};
    for (int k = 1; k < 3 && k < c->n_in; k++) {
        const rp_tensor *b = c->in[k];
        if (!b)
            continue;
        if (b->dtype != c->in[0]->dtype)
            return rp_kfail(c, RP_ERR_DTYPE, "%s has dtype %s but input has %s; expected the same dtype", names[k],
                            rp_dtype_name(b->dtype), rp_dtype_name(c->in[0]->dtype));
        if (b->count != 1) {
            char s[96];
            return rp_kfail(c, RP_ERR_SHAPE, "%s has shape %s, expected a scalar", names[k],
                            rp_shape_str(b, s, sizeof s));
        }
    }
    return RP_OK;
}

static rp_status fw_clip11(rp_kctx *c)
{
    const ew *p = c->params;
    clip_bounds b = {c->n_in > 1 && c->in[1] ? c->in[1]->data : NULL,
                     c->n_in > 2 && c->in[2] ? c->in[2]->data : NULL};
    if (c->out[0]->count)
        p->map(c->out[0]->data, c->in[0]->data, c->out[0]->count, &b);
    return RP_OK;
}

/* ---- gradients (vector-Jacobian products) ----
 *
 * Only float32 gradients exist; an input of another dtype for which a
 * gradient is asked is an RP_ERR_DTYPE. Broadcast ops reduce dL/dy over the
 * axes an input was broadcast along. The reduction walks the same merged
 * plan as forward, reordered per input: an odometer over the merged dims the
 * input keeps (outside), one over the dims it is broadcast along (inside),
 * and the inner row, which is either kept (then summed elementwise, in
 * chunks of GTILE, into a double buffer) or broadcast (then summed into one
 * double). Every gradient element is thus one double sum added once into
 * gin, whatever the broadcast. */

#define GTILE 256
#define GMAX_OPS 72 /* operands of a gradient walk: dL/dy, y, up to 70 inputs */
#define ERF_D 1.12837916709551257390        /* 2/sqrt(pi) */
#define INV_SQRT_2PI 0.39894228040143267794 /* 1/sqrt(2 pi) */

/* How a gradient row adds the contributions of its n output positions:
 * one per position into double dst[i] (G_ROW), all into double dst[0]
 * (G_SUM), or one per position straight into float dst[i] (G_DIRECT, when
 * each gradient element gets exactly one term). */
enum { G_ROW, G_SUM, G_DIRECT };

/* A gradient row. x[0] is dL/dy, x[1] y, x[2+j] input j; s[] their strides
 * along the row (0 or 1); k the input whose gradient this is. */
typedef void (*grad_row)(void *dst, const char *const *x, const ptrdiff_t *s, int64_t n, int mode, int k);

#define FPTR(p) ((const float *)(const void *)(p))

/* Binary ops: EXPR (float math) reads gv, yv, av (input 0) and bv (input 1,
 * type TB). LOOP(STORE) runs the row with the operands' strides, or with
 * plain indices when all are contiguous, so the compiler can vectorise. */
#define GRAD_LOOP(TB, EXPR, STORE) \
    if (sg & sy & sa & sb) { \
        for (int64_t i = 0; i < n; i++) { \
            float gv = g[i], yv = y[i], av = a[i]; \
            TB bv = b[i]; \
            (void)yv, (void)av, (void)bv; \
            STORE((float)(EXPR)); \
        } \
    } else { \
        for (int64_t i = 0; i < n; i++) { \
            float gv = g[i * sg], yv = y[i * sy], av = a[i * sa]; \
            TB bv = b[i * sb]; \
            (void)yv, (void)av, (void)bv; \
            STORE((float)(EXPR)); \
        } \
    }
#define G_STORE_ROW(v) (acc[i] += (double)(v))
#define G_STORE_SUM(v) (sum += (double)(v))
#define G_STORE_DIRECT(v) (gx[i] += (v))
#define GRAD_ROW(name, TB, EXPR) \
    static void name(void *dst, const char *const *x, const ptrdiff_t *s, int64_t n, int mode, int k) \
    { \
        const float *g = FPTR(x[0]), *y = FPTR(x[1]), *a = FPTR(x[2]); \
        const TB *b = (const TB *)(const void *)x[3]; \
        ptrdiff_t sg = s[0], sy = s[1], sa = s[2], sb = s[3]; \
        (void)k; \
        if (mode == G_DIRECT) { \
            float *gx = dst; \
            GRAD_LOOP(TB, EXPR, G_STORE_DIRECT) \
        } else if (mode == G_ROW) { \
            double *acc = dst; \
            GRAD_LOOP(TB, EXPR, G_STORE_ROW) \
        } else { \
            double sum = 0; \
            GRAD_LOOP(TB, EXPR, G_STORE_SUM) \
            *(double *)dst += sum; \
        } \
    }

GRAD_ROW(g_pass, float, gv)
GRAD_ROW(g_neg, float, -gv)
GRAD_ROW(g_mul_a, float, gv * bv)
GRAD_ROW(g_mul_b, float, gv * av)
GRAD_ROW(g_div_a, float, gv / bv)
GRAD_ROW(g_div_b, float, -gv * yv / bv) /* d(a/b)/db = -a/b^2 = -y/b */
/* d(a^b)/da = b a^(b-1), taken as 0 where b == 0 (as PyTorch does, so 0^0
 * does not give 0 * inf); b == 2 (LayerNorm's square) skips powf. */
#define POW_DA(TB) \
    ((float)bv == 0.0f ? 0.0f : (float)bv == 2.0f ? gv * 2.0f * av : gv * (float)bv * powf(av, (float)bv - 1.0f))
#define GEN_GPOW(P, DT, T, N, K, W, LO, HI) GRAD_ROW(g_pow_a_##N, T, POW_DA(T))
NUMERIC_TYPES(GEN_GPOW, _)
static const grad_row g_pow_a[N_DT] = {NUMERIC_TYPES(ENTRY, g_pow_a)};
/* d(a^b)/db = a^b log a, taken as 0 where a <= 0. */
GRAD_ROW(g_pow_b, float, av > 0.0f ? gv * yv * logf(av) : 0.0f)

/* Whether input value v is the one y took: equal, or both NaN. */
#define HOLDS(v, yv) ((v) == (yv) || ((v) != (v) && (yv) != (yv)))

/* Store v, position i's contribution, as mode says. */
static inline void g_store(void *dst, int mode, int64_t i, float v)
{
    if (mode == G_DIRECT)
        ((float *)dst)[i] += v;
    else if (mode == G_ROW)
        ((double *)dst)[i] += v;
    else
        ((double *)dst)[0] += v;
}

/* Max/Min: dL/dy goes to the first input holding y. */
static void g_select(void *dst, const char *const *x, const ptrdiff_t *s, int64_t n, int mode, int k)
{
    const float *g = FPTR(x[0]), *y = FPTR(x[1]), *xk = FPTR(x[2 + k]);
    for (int64_t i = 0; i < n; i++) {
        float yv = y[i * s[1]];
        bool first = HOLDS(xk[i * s[2 + k]], yv);
        for (int j = 0; j < k && first; j++)
            if (HOLDS(FPTR(x[2 + j])[i * s[2 + j]], yv))
                first = false;
        g_store(dst, mode, i, first ? g[i * s[0]] : 0.0f);
    }
}

/* Where: x[2] is the condition; k 1 takes dL/dy where it holds, k 2 elsewhere. */
static void g_where(void *dst, const char *const *x, const ptrdiff_t *s, int64_t n, int mode, int k)
{
    const float *g = FPTR(x[0]);
    const uint8_t *cond = (const uint8_t *)x[2];
    ptrdiff_t sg = s[0], sc = s[2];
    uint8_t want = k == 1;
    for (int64_t i = 0; i < n; i++)
        g_store(dst, mode, i, (!!cond[i * sc] == want) ? g[i * sg] : 0.0f);
}

/* Odometer over the merged dims dl[0..nd) (last fastest), moving the m
 * pointers by their stride rows. Returns false after the last position,
 * with every pointer back at its start. */
static bool odo_next(const ew *p, const int *dl, int nd, int64_t *idx, int m, const char **ptr, const size_t *es,
                     const int *row)
{
    for (int t = nd - 1; t >= 0; t--) {
        int d = dl[t];
        if (++idx[t] < p->dims[d]) {
            for (int j = 0; j < m; j++)
                ptr[j] += p->st[row[j]][d] * (int64_t)es[j];
            return true;
        }
        idx[t] = 0;
        for (int j = 0; j < m; j++)
            ptr[j] -= p->st[row[j]][d] * (p->dims[d] - 1) * (int64_t)es[j];
    }
    return false;
}

/* Add into gin (input k's gradient, float32, laid out as input k) the sums of
 * fn over the output positions that read each of its elements. Operands
 * x[0..m) walk by the stride rows row[0..m) with element sizes es. An input
 * broadcast along nothing gets its one term per element added directly. */
static void grad_walk(const ew *p, int k, int m, const char *const *x, const size_t *es, const int *row, float *gin,
                      grad_row fn)
{
    int r = p->rank;
    int64_t inner = p->dims[r - 1];
    int keep[RP_MAX_RANK], red[RP_MAX_RANK], nk = 0, nr = 0;
    for (int d = 0; d < r - 1; d++) {
        if (p->st[k][d])
            keep[nk++] = d;
        else
            red[nr++] = d;
    }
    bool inner_kept = p->st[k][r - 1] != 0;
    /* operand m is gin itself: it walks input k's strides (0 on red dims) */
    const char *ptr[GMAX_OPS + 1], *q[GMAX_OPS + 1];
    size_t esg[GMAX_OPS + 1];
    int rowg[GMAX_OPS + 1];
    ptrdiff_t s[GMAX_OPS];
    for (int j = 0; j < m; j++) {
        ptr[j] = x[j];
        esg[j] = es[j];
        rowg[j] = row[j];
        s[j] = (ptrdiff_t)p->st[row[j]][r - 1];
    }
    ptr[m] = (const char *)gin;
    esg[m] = sizeof(float);
    rowg[m] = k;
    double acc[GTILE];
    int64_t ik[RP_MAX_RANK] = {0}, ir[RP_MAX_RANK] = {0};
    do {
        if (inner_kept && nr == 0) {
            fn(gin + ((const float *)(const void *)ptr[m] - gin), ptr, s, inner, G_DIRECT, k);
        } else if (inner_kept) {
            for (int64_t c0 = 0; c0 < inner; c0 += GTILE) {
                int64_t len = inner - c0 < GTILE ? inner - c0 : GTILE;
                for (int j = 0; j <= m; j++)
                    q[j] = ptr[j] + (j < m ? s[j] : 1) * c0 * (int64_t)esg[j];
                memset(acc, 0, (size_t)len * sizeof acc[0]);
                do
                    fn(acc, q, s, len, G_ROW, k);
                while (odo_next(p, red, nr, ir, m, q, esg, rowg));
                float *gr = gin + ((const float *)(const void *)q[m] - gin);
                for (int64_t i = 0; i < len; i++)
                    gr[i] = (float)((double)gr[i] + acc[i]);
            }
        } else {
            for (int j = 0; j <= m; j++)
                q[j] = ptr[j];
            acc[0] = 0;
            do
                fn(acc, q, s, inner, G_SUM, k);
            while (odo_next(p, red, nr, ir, m, q, esg, rowg));
            float *gr = gin + ((const float *)(const void *)q[m] - gin);
            gr[0] = (float)((double)gr[0] + acc[0]);
        }
    } while (odo_next(p, keep, nk, ik, m + 1, ptr, esg, rowg));
}

static rp_status grad_dtype(rp_kctx *c, int i)
{
    return rp_kfail(c, RP_ERR_DTYPE, "gradient of input %d: its dtype is %s, but gradients exist only for float32", i,
                    rp_dtype_name(c->in[i]->dtype));
}

/* Wanted gradients of inputs first..n-1: the input float32 and the buffer
 * float32 with the input's element count; dL/dy, if given, likewise. */
static rp_status grad_check(rp_kctx *c, rp_tensor *const *gout, rp_tensor *const *gin, int first, int n)
{
    for (int i = first; i < n; i++) {
        if (!gin[i])
            continue;
        if (i >= c->n_in || !c->in[i])
            return rp_kfail(c, RP_ERR_ARG, "gradient asked of omitted input %d", i);
        if (c->in[i]->dtype != RP_FLOAT)
            return grad_dtype(c, i);
        if (gin[i]->dtype != RP_FLOAT || gin[i]->count != c->in[i]->count)
            return rp_kfail(c, RP_ERR_ARG, "gradient buffer of input %d does not match the input", i);
    }
    const rp_tensor *gy = gout[0];
    if (gy && (gy->dtype != RP_FLOAT || gy->count != c->out[0]->count))
        return rp_kfail(c, RP_ERR_ARG, "output gradient does not match the output");
    return RP_OK;
}

/* Broadcast ops: fn[k] (fn[0] for every input when one_fn) gives input k's
 * contributions; inputs below `first` are not differentiable. */
static rp_status bw_bcast_with(rp_kctx *c, rp_tensor *const *gout, rp_tensor *const *gin, const grad_row *fn,
                               bool one_fn, int first)
{
    const ew *p = c->params;
    int n = p->n;
    if (n + 2 > GMAX_OPS)
        return rp_kfail(c, RP_ERR_UNSUPPORTED, "gradient of more than %d inputs not supported", GMAX_OPS - 2);
    rp_status st = grad_check(c, gout, gin, first, n);
    if (st)
        return st;
    const rp_tensor *gy = gout[0], *y = c->out[0];
    if (!gy || y->count == 0)
        return RP_OK;
    if (n == 1) { /* one-input Max/Min/Sum: the identity */
        if (gin[0]) {
            float *gx = gin[0]->data;
            const float *g = gy->data;
            for (int64_t i = 0; i < y->count; i++)
                gx[i] += g[i];
        }
        return RP_OK;
    }
    const char *x[GMAX_OPS];
    size_t es[GMAX_OPS];
    int row[GMAX_OPS];
    x[0] = gy->data;
    es[0] = sizeof(float);
    row[0] = n;
    x[1] = y->data;
    es[1] = rp_dtype_size(y->dtype);
    row[1] = n;
    for (int j = 0; j < n; j++) {
        x[2 + j] = c->in[j]->data;
        es[2 + j] = rp_dtype_size(c->in[j]->dtype);
        row[2 + j] = j;
    }
    for (int k = first; k < n; k++)
        if (gin[k] && gin[k]->count)
            grad_walk(p, k, n + 2, x, es, row, gin[k]->data, fn[one_fn ? 0 : k]);
    return RP_OK;
}

static const grad_row gr_pass[1] = {g_pass};
static const grad_row gr_sub[2] = {g_pass, g_neg};
static const grad_row gr_mul[2] = {g_mul_a, g_mul_b};
static const grad_row gr_div[2] = {g_div_a, g_div_b};
static const grad_row gr_select[1] = {g_select};
static const grad_row gr_where[3] = {NULL, g_where, g_where};

static rp_status bw_add(rp_kctx *c, rp_tensor *const *go, rp_tensor *const *gi)
{
    return bw_bcast_with(c, go, gi, gr_pass, true, 0);
}
static rp_status bw_sub(rp_kctx *c, rp_tensor *const *go, rp_tensor *const *gi)
{
    return bw_bcast_with(c, go, gi, gr_sub, false, 0);
}
static rp_status bw_mul(rp_kctx *c, rp_tensor *const *go, rp_tensor *const *gi)
{
    return bw_bcast_with(c, go, gi, gr_mul, false, 0);
}
static rp_status bw_div(rp_kctx *c, rp_tensor *const *go, rp_tensor *const *gi)
{
    return bw_bcast_with(c, go, gi, gr_div, false, 0);
}
static rp_status bw_select(rp_kctx *c, rp_tensor *const *go, rp_tensor *const *gi)
{
    return bw_bcast_with(c, go, gi, gr_select, true, 0);
}
static rp_status bw_where(rp_kctx *c, rp_tensor *const *go, rp_tensor *const *gi)
{
    return bw_bcast_with(c, go, gi, gr_where, false, 1);
}

/* Pow: the base gradient reads the exponent in its own dtype; the exponent
 * gradient needs a float32 exponent and a float32 base (the output's dtype). */
static rp_status bw_pow(rp_kctx *c, rp_tensor *const *gout, rp_tensor *const *gin)
{
    if (gin[1] && c->in[1]->dtype == RP_FLOAT && c->in[0]->dtype != RP_FLOAT)
        return rp_kfail(c, RP_ERR_DTYPE, "gradient of the exponent: the base (and output) dtype is %s, but gradients "
                        "exist only for float32", rp_dtype_name(c->in[0]->dtype));
    grad_row fn[2] = {NULL, g_pow_b};
    rp_dtype et = c->in[1]->dtype;
    fn[0] = (int)et >= 0 && (int)et < N_DT ? g_pow_a[et] : NULL;
    if (gin[0] && c->in[0]->dtype == RP_FLOAT && !fn[0])
        return rp_kfail(c, RP_ERR_DTYPE, "gradient of the base: exponent dtype %s not supported", rp_dtype_name(et));
    return bw_bcast_with(c, gout, gin, fn, false, 0);
}

/* ---- gradients of one-input ops ---- */

typedef void (*ugrad_fn)(float *gx, const float *g, const float *x, const float *y, int64_t n);

/* EXPR (float math) is dy/dx from xv and yv. */
#define UGRAD(name, EXPR) \
    RP_VECTOR_CLONES static void name(float *gx, const float *g, const float *x, const float *y, int64_t n) \
    { \
        for (int64_t i = 0; i < n; i++) { \
            float xv = x[i], yv = y[i]; \
            (void)xv, (void)yv; \
            gx[i] += g[i] * (float)(EXPR); \
        } \
    }

UGRAD(ug_sqrt, 0.5f / yv)
UGRAD(ug_erf, (float)ERF_D * rp_expf(-xv * xv))
UGRAD(ug_tanh, 1.0f - yv * yv)
UGRAD(ug_relu, xv > 0.0f ? 1.0f : 0.0f)
UGRAD(ug_sigmoid, yv * (1.0f - yv))
UGRAD(ug_exp, yv)
UGRAD(ug_neg, -1.0f)
UGRAD(ug_recip, -yv * yv)
/* Phi(x) + x phi(x) */
UGRAD(ug_gelu,
      0.5f * (1.0f + rp_erff(xv * (float)SQRT2_INV)) + xv * (float)INV_SQRT_2PI * rp_expf(-0.5f * xv * xv))
/* with u = sqrt(2/pi) (x + 0.044715 x^3), t = tanh u:
 * 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2) */
static void ug_gelut(float *gx, const float *g, const float *x, const float *y, int64_t n)
{
    (void)y;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        float t = tanhf((float)SQRT_2_PI * (v + 0.044715f * v * v * v));
        float d = 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * (float)SQRT_2_PI * (1.0f + 0.134145f * v * v);
        gx[i] += g[i] * d;
    }
}

static rp_status bw_map_with(rp_kctx *c, rp_tensor *const *gout, rp_tensor *const *gin, ugrad_fn fn)
{
    rp_status st = grad_check(c, gout, gin, 0, 1);
    if (st || !gin[0] || !gout[0])
        return st;
    fn(gin[0]->data, gout[0]->data, c->in[0]->data, c->out[0]->data, c->in[0]->count);
    return RP_OK;
}

static rp_status bw_sqrt(rp_kctx *c, rp_tensor *const *go, rp_tensor *const *gi)
{
    return bw_map_with(c, go, gi, ug_sqrt);
}
static rp_status bw_erf(rp_kctx *c, rp_tensor *const *go, rp_tensor *const *gi)
{
    return bw_map_with(c, go, gi, ug_erf);
}
static rp_status bw_tanh(rp_kctx *c, rp_tensor *const *go, rp_tensor *const *gi)
{
    return bw_map_with(c, go, gi, ug_tanh);
}
static rp_status bw_relu(rp_kctx *c, rp_tensor *const *go, rp_tensor *const *gi)
{
    return bw_map_with(c, go, gi, ug_relu);
}
static rp_status bw_sigmoid(rp_kctx *c, rp_tensor *const *go, rp_tensor *const *gi)
{
    return bw_map_with(c, go, gi, ug_sigmoid);
}
static rp_status bw_exp(rp_kctx *c, rp_tensor *const *go, rp_tensor *const *gi)
{
    return bw_map_with(c, go, gi, ug_exp);
}
static rp_status bw_neg(rp_kctx *c, rp_tensor *const *go, rp_tensor *const *gi)
{
    return bw_map_with(c, go, gi, ug_neg);
}
static rp_status bw_recip(rp_kctx *c, rp_tensor *const *go, rp_tensor *const *gi)
{
    return bw_map_with(c, go, gi, ug_recip);
}

static rp_status bw_gelu(rp_kctx *c, rp_tensor *const *gout, rp_tensor *const *gin)
{
    const ew *p = c->params;
    return bw_map_with(c, gout, gin, p->gelu_tanh ? ug_gelut : ug_gelu);
}

/* Cast, CastLike: float to float is the identity; to integers or bool the
 * output carries no gradient. */
static rp_status bw_cast(rp_kctx *c, rp_tensor *const *gout, rp_tensor *const *gin)
{
    rp_dtype to = c->out[0]->dtype;
    rp_status st = grad_check(c, gout, gin, 0, 1);
    if (st || !gin[0] || !gout[0] || (to != RP_FLOAT && to != RP_DOUBLE))
        return st;
    float *gx = gin[0]->data;
    const float *g = gout[0]->data;
    for (int64_t i = 0; i < c->in[0]->count; i++)
        gx[i] += g[i];
    return RP_OK;
}

/* Clip, as PyTorch's clamp: x gets dL/dy where min <= x <= max (bounds
 * included); min gets it where x < min (and min < max), max where x > max
 * or max < min (then y is max everywhere). A missing bound never binds. */
static rp_status bw_clip_with(rp_kctx *c, rp_tensor *const *gout, rp_tensor *const *gin, int n_bounds, bool has_lo,
                              float lo, bool has_hi, float hi)
{
    rp_status st = grad_check(c, gout, gin, 0, 1 + n_bounds);
    if (st || !gout[0])
        return st;
    const float *g = gout[0]->data, *x = c->in[0]->data;
    int64_t n = c->in[0]->count;
    if (gin[0]) {
        float *gx = gin[0]->data;
        for (int64_t i = 0; i < n; i++)
            gx[i] += (!has_lo || x[i] >= lo) && (!has_hi || x[i] <= hi) ? g[i] : 0.0f;
    }
    if (n_bounds >= 1 && gin[1]) {
        double s = 0;
        bool ordered = !has_hi || lo < hi;
        for (int64_t i = 0; i < n && ordered; i++)
            s += x[i] < lo ? g[i] : 0.0f;
        float *gl = gin[1]->data;
        gl[0] = (float)((double)gl[0] + s);
    }
    if (n_bounds >= 2 && gin[2]) {
        double s = 0;
        bool crossed = has_lo && hi < lo;
        for (int64_t i = 0; i < n; i++)
            s += crossed || x[i] > hi ? g[i] : 0.0f;
        float *gh = gin[2]->data;
        gh[0] = (float)((double)gh[0] + s);
    }
    return RP_OK;
}

static rp_status bw_clip6(rp_kctx *c, rp_tensor *const *gout, rp_tensor *const *gin)
{
    const ew *p = c->params;
    return bw_clip_with(c, gout, gin, 0, p->has_lo, p->lo, p->has_hi, p->hi);
}

static rp_status bw_clip11(rp_kctx *c, rp_tensor *const *gout, rp_tensor *const *gin)
{
    const rp_tensor *lo = c->n_in > 1 ? c->in[1] : NULL, *hi = c->n_in > 2 ? c->in[2] : NULL;
    bool f32 = c->in[0]->dtype == RP_FLOAT;
    return bw_clip_with(c, gout, gin, c->n_in - 1, lo != NULL, lo && f32 ? *(const float *)lo->data : 0.0f,
                        hi != NULL, hi && f32 ? *(const float *)hi->data : 0.0f);
}

/* ---- the table ---- */

#define VARIADIC INT32_MAX
#define PASS_GRAD (RP_OPF_GRAD_NO_INPUTS | RP_OPF_GRAD_NO_OUTPUTS)
#define PRODUCT_GRAD (RP_OPF_GRAD_OTHER_INPUTS | RP_OPF_GRAD_NO_OUTPUTS)
#define SPELLS RP_OPF_SPELLS_NORM
/* A function of one input, elementwise. */
#define MAP1(name, since, prep, fw, bw, more_flags) \
    RP_OP(name, since, .min_in = 1, .max_in = 1, .role = RP_ROLE_MAP, .flags = SPELLS | (more_flags), .prepare = prep, \
          .forward = fw, .backward = bw)

const rp_op rp_ops_elementwise[] = {
    /* Add..Div before opset 7 broadcast by a `broadcast`/`axis` attribute; not supported. */
    RP_OP("Add", 7, .min_in = 2, .max_in = 2, .role = RP_ROLE_SUM, .summand_inputs = RP_IN_ALL,
          .flags = PASS_GRAD | SPELLS, .prepare = prep_add, .forward = fw_bcast, .backward = bw_add),
    RP_OP("Sub", 7, .min_in = 2, .max_in = 2, .role = RP_ROLE_SUM, .summand_inputs = RP_IN_ALL,
          .flags = PASS_GRAD | RP_OPF_SUBTRACTS | SPELLS, .prepare = prep_sub, .forward = fw_bcast, .backward = bw_sub),
    RP_OP("Mul", 7, .min_in = 2, .max_in = 2, .role = RP_ROLE_PRODUCT, .flags = PRODUCT_GRAD | SPELLS,
          .prepare = prep_mul, .forward = fw_bcast, .backward = bw_mul),
    RP_OP("Div", 7, .min_in = 2, .max_in = 2, .role = RP_ROLE_QUOTIENT, .flags = SPELLS, .prepare = prep_div,
          .forward = fw_bcast, .backward = bw_div),
    RP_OP("Pow", 7, .min_in = 2, .max_in = 2, .role = RP_ROLE_OTHER, .flags = SPELLS, .prepare = prep_pow,
          .forward = fw_bcast, .backward = bw_pow),
    RP_OP("Equal", 7, .min_in = 2, .max_in = 2, .nondiff_inputs = 3u, .role = RP_ROLE_OTHER, .flags = SPELLS,
          .prepare = prep_equal, .forward = fw_bcast),
    /* Opsets 6..7 of these want equal shapes, which broadcasting also serves. */
    RP_OP("Max", 6, .min_in = 1, .max_in = VARIADIC, .role = RP_ROLE_OTHER, .flags = SPELLS, .prepare = prep_max,
          .forward = fw_bcast, .backward = bw_select),
    RP_OP("Min", 6, .min_in = 1, .max_in = VARIADIC, .role = RP_ROLE_OTHER, .flags = SPELLS, .prepare = prep_min,
          .forward = fw_bcast, .backward = bw_select),
    RP_OP("Sum", 6, .min_in = 1, .max_in = VARIADIC, .role = RP_ROLE_SUM, .summand_inputs = RP_IN_ALL,
          .prepare = prep_sum, .forward = fw_bcast, .backward = bw_add),
    RP_OP("Where", 9, .min_in = 3, .max_in = 3, .nondiff_inputs = 1u, .role = RP_ROLE_OTHER, .flags = SPELLS,
          .prepare = prep_where, .forward = fw_bcast, .backward = bw_where),
    MAP1("Sqrt", 6, prep_sqrt, fw_map, bw_sqrt, 0),
    MAP1("Erf", 9, prep_erf, fw_map, bw_erf, RP_OPF_GRAD_NO_OUTPUTS),
    MAP1("Tanh", 6, prep_tanh, fw_map, bw_tanh, 0),
    MAP1("Relu", 6, prep_relu, fw_map, bw_relu, 0),
    MAP1("Sigmoid", 6, prep_sigmoid, fw_map, bw_sigmoid, 0),
    MAP1("Exp", 6, prep_exp, fw_map, bw_exp, 0),
    MAP1("Neg", 6, prep_neg, fw_map, bw_neg, 0),
    MAP1("Reciprocal", 6, prep_recip, fw_map, bw_recip, 0),
    MAP1("Gelu", 20, prep_gelu, fw_map, bw_gelu, RP_OPF_GRAD_NO_OUTPUTS),
    MAP1("Clip", 6, prep_clip6, fw_clip6, bw_clip6, 0),
    RP_OP("Clip", 11, .min_in = 1, .max_in = 3, .role = RP_ROLE_MAP, .flags = SPELLS, .prepare = prep_clip11,
          .forward = fw_clip11, .backward = bw_clip11),
    RP_OP("Cast", 6, .min_in = 1, .max_in = 1, .role = RP_ROLE_PASS, .flags = SPELLS, .prepare = prep_cast,
          .forward = fw_map, .backward = bw_cast),
    /* target_type contributes only its dtype. */
    RP_OP("CastLike", 15, .min_in = 2, .max_in = 2, .nondiff_inputs = 2u, .role = RP_ROLE_PASS, .flags = SPELLS,
          .prepare = prep_castlike, .forward = fw_map, .backward = bw_cast),
};
const size_t rp_ops_elementwise_count = sizeof rp_ops_elementwise / sizeof rp_ops_elementwise[0];
