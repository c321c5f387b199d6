/* Reduce*, Softmax, LogSoftmax and LayerNormalization kernels called straight
 * through rp_op_lookup with a hand-built rp_kctx (no graph, no loader), on
 * cases small enough to check by hand or against a naive double loop; their
 * backward (vector-Jacobian product) against finite differences
 * (tests/support/gradcheck) and, for Softmax and LayerNorm, against a double
 * reference. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "support/gradcheck.h"

/* ---- a tiny harness: one node, its attributes, its tensors ---- */

#define MAX_ATTR 4

typedef struct kcase {
    rp_attr attr[MAX_ATTR];
    int n_attr;
    int64_t ints[MAX_ATTR][RP_MAX_RANK];
    rp_node node;
    rp_tensor in[3], out[3];
    rp_tensor *inp[3], *outp[3];
    int owned[3];           /* in[i].data from gradcheck_random: released by kc_free */
    rp_kctx ctx;
    rp_error err;
} kcase;

static void kc_init(kcase *k, const char *op, int opset)
{
    memset(k, 0, sizeof *k);
    k->node.name = "test_node";
    k->node.op_type = (char *)op;
    k->node.domain = "";
    k->node.opset = opset;
    k->node.attr = k->attr;
    k->ctx.node = &k->node;
    k->ctx.opset = opset;
    k->ctx.in = k->inp;
    k->ctx.out = k->outp;
    k->ctx.err = &k->err;
}

static void kc_attr_int(kcase *k, const char *name, int64_t v)
{
    rp_attr *a = &k->attr[k->n_attr++];
    a->name = (char *)name;
    a->type = RP_ATTR_INT;
    a->i = v;
    k->node.n_attr = k->n_attr;
}

static void kc_attr_float(kcase *k, const char *name, float v)
{
    rp_attr *a = &k->attr[k->n_attr++];
    a->name = (char *)name;
    a->type = RP_ATTR_FLOAT;
    a->f = v;
    k->node.n_attr = k->n_attr;
}

static void kc_attr_ints(kcase *k, const char *name, const int64_t *v, int n)
{
    int slot = k->n_attr++;
    rp_attr *a = &k->attr[slot];
    memcpy(k->ints[slot], v, sizeof(int64_t) * (size_t)n);
    a->name = (char *)name;
    a->type = RP_ATTR_INTS;
    a->ints = k->ints[slot];
    a->n = n;
    k->node.n_attr = k->n_attr;
}

/* data is borrowed; NULL data = omitted optional input. */
static void kc_input(kcase *k, int i, rp_dtype dt, int rank, const int64_t *dims, const void *data)
{
    ck_assert(rp_tensor_set_shape(&k->in[i], dt, rank, dims));
    k->in[i].data = (void *)data;
    k->inp[i] = &k->in[i];
    if (i + 1 > k->ctx.n_in)
        k->ctx.n_in = i + 1;
}

static void kc_outputs(kcase *k, int n)
{
    for (int i = 0; i < n; i++)
        k->outp[i] = &k->out[i];
    k->ctx.n_out = n;
}

/* prepare, allocate outputs, forward. Returns the first failing status. */
static rp_status kc_run(kcase *k)
{
    const rp_op *op = rp_op_lookup(k->node.op_type, k->ctx.opset);
    ck_assert_msg(op != NULL, "no kernel for %s at opset %d", k->node.op_type, k->ctx.opset);
    ck_assert_int_ge(k->ctx.n_in, op->min_in);
    ck_assert_int_le(k->ctx.n_in, op->max_in);
    rp_status st = op->prepare(&k->ctx);
    if (st != RP_OK)
        return st;
    for (int i = 0; i < k->ctx.n_out; i++)
        if (k->outp[i]) {
            size_t bytes = (size_t)k->out[i].count * rp_dtype_size(k->out[i].dtype);
            k->out[i].data = calloc(1, bytes ? bytes : 1);
        }
    return op->forward(&k->ctx);
}

static void kc_free(kcase *k)
{
    free(k->ctx.params);
    k->ctx.params = NULL;
    for (int i = 0; i < 3; i++) {
        free(k->out[i].data);
        k->out[i].data = NULL;
        if (k->owned[i])
            rp_tensor_release(&k->in[i]);
        k->owned[i] = 0;
    }
}

static void assert_shape(const rp_tensor *t, int rank, const int64_t *dims)
{
    ck_assert_int_eq(t->rank, rank);
    for (int d = 0; d < rank; d++)
        ck_assert_int_eq(t->dims[d], dims[d]);
}

/* ONNX's tolerance, tighter where we know better. */
static void assert_close(double got, double want, double rtol)
{
    ck_assert_msg(fabs(got - want) <= 1e-7 + rtol * fabs(want), "got %.9g, want %.9g", got, want);
}

/* ---- reductions ---- */

/* x[i][j][k] = 12i + 4j + k over [2,3,4]. */
static float iota24[24];
static const int64_t dims234[3] = {2, 3, 4};

static void setup_iota(void)
{
    for (int i = 0; i < 24; i++)
        iota24[i] = (float)i;
}

START_TEST(test_reduce_sum_two_axes_keepdims)
{
    setup_iota();
    for (int keep = 0; keep <= 1; keep++) {
        kcase k;
        kc_init(&k, "ReduceSum", 11);
        int64_t axes[2] = {0, 2};
        kc_attr_ints(&k, "axes", axes, 2);
        kc_attr_int(&k, "keepdims", keep);
        kc_input(&k, 0, RP_FLOAT, 3, dims234, iota24);
        kc_outputs(&k, 1);
        ck_assert_int_eq(kc_run(&k), RP_OK);
        if (keep)
            assert_shape(&k.out[0], 3, (int64_t[]){1, 3, 1});
        else
            assert_shape(&k.out[0], 1, (int64_t[]){3});
        /* sum over i in 0..1, k in 0..3 of 12i + 4j + k = 48 + 32j + 12 */
        const float *y = k.out[0].data;
        for (int j = 0; j < 3; j++)
            ck_assert_float_eq(y[j], 60 + 32 * j);
        kc_free(&k);
    }
}
END_TEST

START_TEST(test_reduce_mean_axes_input_negative)
{
    setup_iota();
    /* opset 18: axes come as a constant input; -1 and 0 name the same dims as above. */
    kcase k;
    kc_init(&k, "ReduceMean", 18);
    kc_attr_int(&k, "keepdims", 0);
    int64_t axes[2] = {-1, 0};
    kc_input(&k, 0, RP_FLOAT, 3, dims234, iota24);
    kc_input(&k, 1, RP_INT64, 1, (int64_t[]){2}, axes);
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], 1, (int64_t[]){3});
    const float *y = k.out[0].data;
    for (int j = 0; j < 3; j++)
        assert_close(y[j], (60 + 32 * j) / 8.0, 1e-7);
    kc_free(&k);
}
END_TEST

START_TEST(test_reduce_mean_attr_opset13)
{
    setup_iota();
    /* ReduceMean-13 takes axes as an attribute (PyTorch's LayerNorm export). */
    kcase k;
    kc_init(&k, "ReduceMean", 13);
    kc_attr_ints(&k, "axes", (int64_t[]){-1}, 1);
    kc_input(&k, 0, RP_FLOAT, 3, dims234, iota24);
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], 3, (int64_t[]){2, 3, 1});
    const float *y = k.out[0].data;
    for (int r = 0; r < 6; r++)
        assert_close(y[r], 4 * r + 1.5, 1e-7);
    kc_free(&k);
}
END_TEST

START_TEST(test_reduce_max_min_middle_axis)
{
    setup_iota();
    kcase k;
    kc_init(&k, "ReduceMax", 13);
    kc_attr_ints(&k, "axes", (int64_t[]){1}, 1);
    kc_attr_int(&k, "keepdims", 0);
    kc_input(&k, 0, RP_FLOAT, 3, dims234, iota24);
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], 2, (int64_t[]){2, 4});
    const float *y = k.out[0].data;
    for (int i = 0; i < 2; i++)
        for (int c = 0; c < 4; c++)
            ck_assert_float_eq(y[i * 4 + c], 12 * i + 8 + c);
    kc_free(&k);

    /* Min at opset 18 with the axis as input and negative numbers in the data. */
    float neg[24];
    for (int i = 0; i < 24; i++)
        neg[i] = -iota24[i];
    kc_init(&k, "ReduceMin", 18);
    kc_input(&k, 0, RP_FLOAT, 3, dims234, neg);
    kc_input(&k, 1, RP_INT64, 1, (int64_t[]){1}, (int64_t[]){-2});
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], 3, (int64_t[]){2, 1, 4});
    y = k.out[0].data;
    for (int i = 0; i < 2; i++)
        for (int c = 0; c < 4; c++)
            ck_assert_float_eq(y[i * 4 + c], -(12 * i + 8 + c));
    kc_free(&k);
}
END_TEST

START_TEST(test_reduce_all_and_noop)
{
    setup_iota();
    /* No axes: everything, to a scalar without keepdims. */
    kcase k;
    kc_init(&k, "ReduceSum", 13);
    kc_attr_int(&k, "keepdims", 0);
    kc_input(&k, 0, RP_FLOAT, 3, dims234, iota24);
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    ck_assert_int_eq(k.out[0].rank, 0);
    ck_assert_float_eq(((float *)k.out[0].data)[0], 276);
    kc_free(&k);

    /* An empty axes input with noop_with_empty_axes: Y = X. */
    kc_init(&k, "ReduceSum", 13);
    kc_attr_int(&k, "noop_with_empty_axes", 1);
    kc_input(&k, 0, RP_FLOAT, 3, dims234, iota24);
    kc_input(&k, 1, RP_INT64, 1, (int64_t[]){0}, NULL);
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], 3, dims234);
    ck_assert_int_eq(memcmp(k.out[0].data, iota24, sizeof iota24), 0);
    kc_free(&k);

    /* The same empty axes without the flag: reduce all, keepdims default 1. */
    kc_init(&k, "ReduceMean", 18);
    kc_input(&k, 0, RP_FLOAT, 3, dims234, iota24);
    kc_input(&k, 1, RP_INT64, 1, (int64_t[]){0}, NULL);
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], 3, (int64_t[]){1, 1, 1});
    assert_close(((float *)k.out[0].data)[0], 11.5, 1e-7);
    kc_free(&k);
}
END_TEST

START_TEST(test_reduce_empty_set)
{
    static const int64_t dims[3] = {2, 0, 4};
    float dummy = 0;
    kcase k;
    kc_init(&k, "ReduceSum", 13);
    kc_input(&k, 0, RP_FLOAT, 3, dims, &dummy);
    kc_input(&k, 1, RP_INT64, 1, (int64_t[]){1}, (int64_t[]){1});
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], 3, (int64_t[]){2, 1, 4});
    for (int i = 0; i < 8; i++)
        ck_assert_float_eq(((float *)k.out[0].data)[i], 0);
    kc_free(&k);

    kc_init(&k, "ReduceMax", 13);
    kc_attr_ints(&k, "axes", (int64_t[]){1}, 1);
    kc_input(&k, 0, RP_FLOAT, 3, dims, &dummy);
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    for (int i = 0; i < 8; i++)
        ck_assert(isinf(((float *)k.out[0].data)[i]) && ((float *)k.out[0].data)[i] < 0);
    kc_free(&k);
}
END_TEST

START_TEST(test_reduce_int64_and_double)
{
    int64_t xi[6] = {1, -2, 3, 4, 5, -6};
    kcase k;
    kc_init(&k, "ReduceSum", 11);
    kc_attr_ints(&k, "axes", (int64_t[]){1}, 1);
    kc_attr_int(&k, "keepdims", 0);
    kc_input(&k, 0, RP_INT64, 2, (int64_t[]){2, 3}, xi);
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    ck_assert_int_eq(k.out[0].dtype, RP_INT64);
    ck_assert_int_eq(((int64_t *)k.out[0].data)[0], 2);
    ck_assert_int_eq(((int64_t *)k.out[0].data)[1], 3);
    kc_free(&k);

    /* LogSumExp must not overflow where exp(x) alone would. */
    double xd[3] = {1000, 1000, 1000};
    kc_init(&k, "ReduceLogSumExp", 13);
    kc_input(&k, 0, RP_DOUBLE, 1, (int64_t[]){3}, xd);
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_close(((double *)k.out[0].data)[0], 1000 + log(3.0), 1e-12);
    kc_free(&k);
}
END_TEST

/* An integer ReduceL2 whose sum of squares wraps negative has no norm: the
 * NaN of its square root converts to 0 (src/core/convert.h), not to C's
 * undefined INT64_MIN; a norm past int32's range saturates. */
START_TEST(test_reduce_l2_integer_overflow)
{
    int64_t xi[3] = {3, 4, 4000000000LL};
    kcase k;
    kc_init(&k, "ReduceL2", 13);
    kc_attr_int(&k, "keepdims", 0);
    kc_input(&k, 0, RP_INT64, 1, (int64_t[]){2}, xi);
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    ck_assert_int_eq(((int64_t *)k.out[0].data)[0], 5);
    kc_free(&k);

    kc_init(&k, "ReduceL2", 13);
    kc_attr_int(&k, "keepdims", 0);
    kc_input(&k, 0, RP_INT64, 1, (int64_t[]){1}, xi + 2); /* 1.6e19 wraps to -2.4e18 */
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    ck_assert_int_eq(((int64_t *)k.out[0].data)[0], 0);
    kc_free(&k);

    int32_t x32[2] = {INT32_MIN, INT32_MIN}; /* 2^62 + 2^62 wraps to INT64_MIN */
    kc_init(&k, "ReduceL2", 13);
    kc_attr_int(&k, "keepdims", 0);
    kc_input(&k, 0, RP_INT32, 1, (int64_t[]){2}, x32);
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    ck_assert_int_eq(((int32_t *)k.out[0].data)[0], 0);
    kc_free(&k);

    int32_t y32[2] = {INT32_MAX, INT32_MAX}; /* sum 2^63 - 2^33 + 2, norm 3.0e9: saturates */
    kc_init(&k, "ReduceL2", 13);
    kc_attr_int(&k, "keepdims", 0);
    kc_input(&k, 0, RP_INT32, 1, (int64_t[]){2}, y32);
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    ck_assert_int_eq(((int32_t *)k.out[0].data)[0], INT32_MAX);
    kc_free(&k);
}
END_TEST

START_TEST(test_reduce_bad_axes)
{
    setup_iota();
    kcase k;
    kc_init(&k, "ReduceSum", 11);
    kc_attr_ints(&k, "axes", (int64_t[]){1, -2}, 2);
    kc_input(&k, 0, RP_FLOAT, 3, dims234, iota24);
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_ERR_VALUE);
    ck_assert_ptr_nonnull(strstr(k.err.msg, "test_node"));
    kc_free(&k);

    kc_init(&k, "ReduceMean", 18);
    kc_input(&k, 0, RP_FLOAT, 3, dims234, iota24);
    kc_input(&k, 1, RP_INT64, 1, (int64_t[]){1}, (int64_t[]){3});
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_ERR_VALUE);
    kc_free(&k);
}
END_TEST

/* ---- softmax ---- */

START_TEST(test_softmax_rows_and_stability)
{
    /* Row 0 small, row 1 shifted by 1000 (exp would overflow float and
     * double unshifted), row 2 by -1000 (would underflow to 0/0). Softmax is
     * shift-invariant, so all three rows must equal softmax(0,1,2,3). */
    float x[12] = {0, 1, 2, 3, 1000, 1001, 1002, 1003, -1000, -999, -998, -997};
    double e[4], s = 0;
    for (int j = 0; j < 4; j++)
        s += e[j] = exp((double)j);
    kcase k;
    kc_init(&k, "Softmax", 13);
    kc_input(&k, 0, RP_FLOAT, 2, (int64_t[]){3, 4}, x);
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    const float *y = k.out[0].data;
    for (int r = 0; r < 3; r++) {
        double sum = 0;
        for (int j = 0; j < 4; j++) {
            ck_assert(isfinite(y[r * 4 + j]));
            assert_close(y[r * 4 + j], e[j] / s, 1e-6);
            sum += y[r * 4 + j];
        }
        assert_close(sum, 1.0, 1e-6);
    }
    kc_free(&k);

    /* LogSoftmax of the same rows: (x - max) - log(sum exp(x - max)). */
    kc_init(&k, "LogSoftmax", 13);
    kc_input(&k, 0, RP_FLOAT, 2, (int64_t[]){3, 4}, x);
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    y = k.out[0].data;
    for (int r = 0; r < 3; r++)
        for (int j = 0; j < 4; j++)
            assert_close(y[r * 4 + j], log(e[j] / s), 1e-6);
    kc_free(&k);
}
END_TEST

/* Naive softmax of [2,2,3] input over the given element sets. */
static void naive_softmax(const float *x, int count, const int *idx, double *out)
{
    double m = x[idx[0]], s = 0;
    for (int i = 1; i < count; i++)
        m = fmax(m, x[idx[i]]);
    for (int i = 0; i < count; i++)
        s += exp(x[idx[i]] - m);
    for (int i = 0; i < count; i++)
        out[idx[i]] = exp(x[idx[i]] - m) / s;
}

START_TEST(test_softmax_opset11_vs_13_axis)
{
    float x[12] = {0.5f, -1, 2, 3, 0, 1, -2, 4, 0.25f, 1, 1, -3};
    static const int64_t dims[3] = {2, 2, 3};
    double want11[12], want13[12];
    /* opset 11, axis 1: each batch's 2x3 block is one row of 6. */
    for (int b = 0; b < 2; b++) {
        int idx[6];
        for (int i = 0; i < 6; i++)
            idx[i] = b * 6 + i;
        naive_softmax(x, 6, idx, want11);
    }
    /* opset 13, axis 1: each (batch, column) pair over the 2 rows. */
    for (int b = 0; b < 2; b++)
        for (int c = 0; c < 3; c++) {
            int idx[2] = {b * 6 + c, b * 6 + 3 + c};
            naive_softmax(x, 2, idx, want13);
        }

    for (int opset = 11; opset <= 13; opset += 2) {
        kcase k;
        kc_init(&k, "Softmax", opset);
        kc_attr_int(&k, "axis", 1);
        kc_input(&k, 0, RP_FLOAT, 3, dims, x);
        kc_outputs(&k, 1);
        ck_assert_int_eq(kc_run(&k), RP_OK);
        assert_shape(&k.out[0], 3, dims);
        const float *y = k.out[0].data;
        for (int i = 0; i < 12; i++)
            assert_close(y[i], opset == 11 ? want11[i] : want13[i], 1e-6);
        kc_free(&k);
    }

    /* Defaults differ too: opset 11 axis 1 (same as above), opset 13 axis -1. */
    kcase k;
    kc_init(&k, "Softmax", 11);
    kc_input(&k, 0, RP_FLOAT, 3, dims, x);
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    for (int i = 0; i < 12; i++)
        assert_close(((float *)k.out[0].data)[i], want11[i], 1e-6);
    kc_free(&k);

    double wantlast[12];
    for (int r = 0; r < 4; r++)
        naive_softmax(x, 3, (int[]){3 * r, 3 * r + 1, 3 * r + 2}, wantlast);
    kc_init(&k, "Softmax", 13);
    kc_input(&k, 0, RP_FLOAT, 3, dims, x);
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    for (int i = 0; i < 12; i++)
        assert_close(((float *)k.out[0].data)[i], wantlast[i], 1e-6);
    kc_free(&k);
}
END_TEST

/* ---- LayerNormalization ---- */

START_TEST(test_layernorm_vs_naive)
{
    /* X [2,3,4], axis -2: each batch's 3x4 block normalised together. Scale
     * [4] repeats along the 3 rows; B covers the whole [3,4] block. An offset
     * of 1000 makes E[x^2] - E[x]^2 lose digits in float; the kernel must not. */
    float x[24], scale[4] = {1, 0.5f, -2, 3}, b[12];
    for (int i = 0; i < 24; i++)
        x[i] = 1000.0f + (float)((i * 7) % 11) * 0.125f - (i >= 12 ? 500.0f : 0.0f);
    for (int i = 0; i < 12; i++)
        b[i] = 0.1f * (float)i - 0.3f;
    const float eps = 1e-3f;

    kcase k;
    kc_init(&k, "LayerNormalization", 17);
    kc_attr_int(&k, "axis", -2);
    kc_attr_float(&k, "epsilon", eps);
    kc_input(&k, 0, RP_FLOAT, 3, dims234, x);
    kc_input(&k, 1, RP_FLOAT, 1, (int64_t[]){4}, scale);
    kc_input(&k, 2, RP_FLOAT, 2, (int64_t[]){3, 4}, b);
    kc_outputs(&k, 3);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], 3, dims234);
    assert_shape(&k.out[1], 3, (int64_t[]){2, 1, 1});
    assert_shape(&k.out[2], 3, (int64_t[]){2, 1, 1});
    ck_assert_int_eq(k.out[1].dtype, RP_FLOAT);

    const float *y = k.out[0].data, *mean = k.out[1].data, *inv = k.out[2].data;
    for (int bt = 0; bt < 2; bt++) {
        const float *xr = x + 12 * bt;
        double m = 0, v = 0;
        for (int i = 0; i < 12; i++)
            m += xr[i];
        m /= 12;
        for (int i = 0; i < 12; i++)
            v += (xr[i] - m) * (xr[i] - m);
        v /= 12;
        double is = 1 / sqrt(v + (double)eps);
        assert_close(mean[bt], m, 1e-7);
        assert_close(inv[bt], is, 1e-6);
        for (int i = 0; i < 12; i++)
            assert_close(y[12 * bt + i], (xr[i] - m) * is * scale[i % 4] + b[i], 1e-5);
    }
    kc_free(&k);

    /* Optional outputs and B omitted; default axis -1 over [2,3,4] rows of 4. */
    kc_init(&k, "LayerNormalization", 17);
    kc_input(&k, 0, RP_FLOAT, 3, dims234, x);
    kc_input(&k, 1, RP_FLOAT, 1, (int64_t[]){4}, scale);
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    y = k.out[0].data;
    for (int r = 0; r < 6; r++) {
        const float *xr = x + 4 * r;
        double m = (xr[0] + (double)xr[1] + xr[2] + xr[3]) / 4, v = 0;
        for (int i = 0; i < 4; i++)
            v += (xr[i] - m) * (xr[i] - m);
        double is = 1 / sqrt(v / 4 + 1e-5);
        for (int i = 0; i < 4; i++)
            assert_close(y[4 * r + i], (xr[i] - m) * is * scale[i], 1e-5);
    }
    kc_free(&k);
}
END_TEST

/* Rows of zero elements: nothing to normalise (X's data is NULL: no
 * pointer may be offset from it); Mean and InvStdDev are NaN, as 0/0. */
START_TEST(test_layernorm_empty_rows)
{
    kcase k;
    kc_init(&k, "LayerNormalization", 17);
    kc_input(&k, 0, RP_FLOAT, 3, (int64_t[]){2, 2, 0}, NULL);
    kc_input(&k, 1, RP_FLOAT, 1, (int64_t[]){0}, NULL);
    kc_outputs(&k, 3);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], 3, (int64_t[]){2, 2, 0});
    assert_shape(&k.out[1], 3, (int64_t[]){2, 2, 1});
    for (int i = 0; i < 4; i++) {
        ck_assert(isnan(((float *)k.out[1].data)[i]));
        ck_assert(isnan(((float *)k.out[2].data)[i]));
    }
    kc_free(&k);
}
END_TEST

START_TEST(test_layernorm_bad_scale)
{
    float x[24] = {0}, scale[3] = {1, 1, 1};
    kcase k;
    kc_init(&k, "LayerNormalization", 17);
    kc_input(&k, 0, RP_FLOAT, 3, dims234, x);
    kc_input(&k, 1, RP_FLOAT, 1, (int64_t[]){3}, scale);
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_ERR_SHAPE);
    kc_free(&k);
}
END_TEST

/* ---- gradients ----
 *
 * gradcheck_run compares backward with central differences of
 * L = sum(gy * y) for every element of every checked input, by
 * |analytic - numeric| / (1 + |numeric|). At step 1e-2 a correct backward is
 * within 1e-5..3e-5 here (LogSoftmax 1e-4: truncation of the difference), so
 * GC_TOL has a few times margin. The measure is close to absolute for small
 * gradients (Softmax's are ~1/n), so dropping a term there moves it by only
 * ~1e-3: the double-reference tests below are the sharper check. */

#define GC_STEP 1e-2
#define GC_TOL 1e-4

/* Input i: float32 values in [lo, hi) from a fixed seed, owned by k. */
static void kc_random(kcase *k, int i, int rank, const int64_t *dims, double lo, double hi, unsigned seed)
{
    k->in[i] = gradcheck_random(rank, dims, lo, hi, seed);
    k->inp[i] = &k->in[i];
    k->owned[i] = 1;
    if (i + 1 > k->ctx.n_in)
        k->ctx.n_in = i + 1;
}

/* Input i: distinct values 0.25 apart (a permutation), so a finite-difference
 * step never changes which element is the extremum. */
static void kc_spread_out(kcase *k, int i, int rank, const int64_t *dims)
{
    kc_random(k, i, rank, dims, 0, 1, 1);
    float *x = k->in[i].data;
    const int64_t n = k->in[i].count;
    const int64_t mult = 37; /* prime, and no test size is a multiple of it */
    ck_assert_int_ne(n % mult, 0);
    for (int64_t e = 0; e < n; e++)
        x[e] = (float)((e * mult) % n) * 0.25f - (float)n / 8;
}

static void check_grad_tol(kcase *k, int n_out, unsigned mask, double tol, const char *what)
{
    char why[512] = "";
    gradcheck_spec s = {.op = k->node.op_type, .opset = k->ctx.opset, .attrs = k->attr,
                        .n_attrs = k->n_attr, .inputs = k->inp, .n_in = k->ctx.n_in,
                        .n_out = n_out, .check_mask = mask, .step = GC_STEP, .tol = tol};
    ck_assert_msg(gradcheck_run(&s, why, sizeof why), "%s: %s", what, why);
}

static void check_grad(kcase *k, int n_out, unsigned mask, const char *what)
{
    check_grad_tol(k, n_out, mask, GC_TOL, what);
}

/* After kc_run: k's backward with output gradients gy (NULL entries: zero)
 * into input gradients gx (NULL entries: not wanted). */
static rp_status kc_backward(kcase *k, rp_tensor **gy, rp_tensor **gx)
{
    const rp_op *op = rp_op_lookup(k->node.op_type, k->ctx.opset);
    ck_assert_ptr_nonnull(op->backward);
    return op->backward(&k->ctx, gy, gx);
}

START_TEST(test_grad_softmax_vit_attention)
{
    /* A ViT-Ti/S attention map: 4 heads over 64 patches + CLS. */
    kcase k;
    kc_init(&k, "Softmax", 13);
    kc_attr_int(&k, "axis", -1);
    kc_random(&k, 0, 4, (int64_t[]){1, 4, 65, 65}, -4, 4, 11);
    check_grad(&k, 1, 1, "Softmax-13 [1,4,65,65] axis -1");
    kc_free(&k);
}
END_TEST

START_TEST(test_grad_softmax_axes_and_opsets)
{
    static const struct {
        int opset, axis; /* axis 99: attribute absent */
        int rank;
        int64_t dims[3];
    } cases[] = {
        {11, 1, 3, {2, 3, 4}},  /* flattened: rows of 12 */
        {11, 99, 3, {3, 2, 5}}, /* default axis 1: rows of 10 */
        {1, 0, 3, {2, 3, 4}},   /* one row of 24 */
        {11, -1, 3, {2, 3, 4}}, /* rows of 4 */
        {13, 1, 3, {2, 3, 4}},  /* single axis, inner stride 4 */
        {13, 0, 3, {3, 2, 4}},  /* single axis, inner stride 8 */
        {13, 99, 1, {7}},       /* default axis -1 */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char what[64];
        snprintf(what, sizeof what, "Softmax-%d axis %d", cases[c].opset, cases[c].axis);
        kcase k;
        kc_init(&k, "Softmax", cases[c].opset);
        if (cases[c].axis != 99)
            kc_attr_int(&k, "axis", cases[c].axis);
        kc_random(&k, 0, cases[c].rank, cases[c].dims, -3, 3, 20 + (unsigned)c);
        check_grad(&k, 1, 1, what);
        kc_free(&k);
    }
}
END_TEST

START_TEST(test_grad_logsoftmax)
{
    kcase k;
    kc_init(&k, "LogSoftmax", 11);
    kc_attr_int(&k, "axis", 1);
    kc_random(&k, 0, 3, dims234, -3, 3, 30);
    check_grad_tol(&k, 1, 1, 5e-4, "LogSoftmax-11 axis 1 [2,3,4]");
    kc_free(&k);

    kc_init(&k, "LogSoftmax", 13);
    kc_random(&k, 0, 2, (int64_t[]){3, 65}, -4, 4, 31);
    check_grad_tol(&k, 1, 1, 5e-4, "LogSoftmax-13 [3,65]");
    kc_free(&k);

    kc_init(&k, "LogSoftmax", 13);
    kc_attr_int(&k, "axis", 1);
    kc_random(&k, 0, 3, dims234, -3, 3, 32);
    check_grad_tol(&k, 1, 1, 5e-4, "LogSoftmax-13 axis 1 [2,3,4]");
    kc_free(&k);
}
END_TEST

/* Finite differences cannot see float-level mistakes; a double reference can.
 * Rows shifted by +-50 also check that nothing depends on the raw scale. */
START_TEST(test_grad_softmax_vs_double)
{
    enum { R = 4, N = 65 };
    for (int log = 0; log <= 1; log++) {
        kcase k;
        kc_init(&k, log ? "LogSoftmax" : "Softmax", 13);
        kc_random(&k, 0, 2, (int64_t[]){R, N}, -6, 6, 40);
        float *x = k.in[0].data;
        for (int j = 0; j < N; j++) {
            x[N + j] += 50;
            x[2 * N + j] -= 50;
        }
        kc_outputs(&k, 1);
        ck_assert_int_eq(kc_run(&k), RP_OK);
        rp_tensor gy = gradcheck_random(2, (int64_t[]){R, N}, -1, 1, 41), gx;
        ck_assert_int_eq(rp_tensor_alloc(&gx, RP_FLOAT, 2, (int64_t[]){R, N}, NULL), RP_OK);
        ck_assert_int_eq(kc_backward(&k, (rp_tensor *[]){&gy}, (rp_tensor *[]){&gx}), RP_OK);
        const float *dy = gy.data, *dx = gx.data;
        for (int r = 0; r < R; r++) {
            const float *xr = x + r * N, *dyr = dy + r * N;
            double m = xr[0], s = 0, sm[N], dot = 0, scale = 0;
            for (int j = 1; j < N; j++)
                m = fmax(m, xr[j]);
            for (int j = 0; j < N; j++)
                s += exp(xr[j] - m);
            for (int j = 0; j < N; j++) {
                sm[j] = exp(xr[j] - m) / s;
                dot += log ? dyr[j] : dyr[j] * sm[j];
            }
            for (int j = 0; j < N; j++) {
                double want = log ? dyr[j] - sm[j] * dot : sm[j] * (dyr[j] - dot);
                scale = fmax(scale, fabs(want));
            }
            for (int j = 0; j < N; j++) {
                double want = log ? dyr[j] - sm[j] * dot : sm[j] * (dyr[j] - dot);
                ck_assert_msg(fabs(dx[r * N + j] - want) <= 1e-6 * scale,
                              "%s row %d [%d]: got %.9g, want %.9g", log ? "LogSoftmax" : "Softmax", r,
                              j, dx[r * N + j], want);
            }
        }
        rp_tensor_release(&gy);
        rp_tensor_release(&gx);
        kc_free(&k);
    }
}
END_TEST

START_TEST(test_grad_layernorm_vit)
{
    /* A ViT-Ti-like token stream: 65 tokens of width 96, rows off-centre. */
    kcase k;
    kc_init(&k, "LayerNormalization", 17);
    kc_attr_int(&k, "axis", -1);
    kc_attr_float(&k, "epsilon", 1e-6f);
    kc_random(&k, 0, 3, (int64_t[]){1, 65, 96}, -1, 3, 50);
    kc_random(&k, 1, 1, (int64_t[]){96}, 0.5, 1.5, 51);
    kc_random(&k, 2, 1, (int64_t[]){96}, -1, 1, 52);
    check_grad(&k, 1, 7, "LayerNorm [1,65,96] axis -1: dX, dScale, dB");
    kc_free(&k);
}
END_TEST

START_TEST(test_grad_layernorm_axis_m2)
{
    static const struct {
        int axis;
        int xr, sr, br; /* ranks; br 0: no B */
        int64_t xd[3], sd[2], bd[2];
    } cases[] = {
        {-2, 3, 1, 2, {2, 5, 6}, {6}, {5, 6}}, /* Scale repeats over the 5 rows */
        {-2, 3, 2, 1, {2, 5, 6}, {5, 6}, {6}}, /* B repeats */
        {-2, 3, 1, 0, {2, 5, 6}, {1}, {0}},    /* one scale for all, no B */
        {0, 2, 2, 2, {3, 4}, {3, 4}, {1, 4}},  /* the whole tensor one row */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char what[64];
        snprintf(what, sizeof what, "LayerNorm case %zu axis %d", c, cases[c].axis);
        kcase k;
        kc_init(&k, "LayerNormalization", 17);
        kc_attr_int(&k, "axis", cases[c].axis);
        kc_random(&k, 0, cases[c].xr, cases[c].xd, -2, 2, 60 + (unsigned)c);
        kc_random(&k, 1, cases[c].sr, cases[c].sd, -1.5, 1.5, 70 + (unsigned)c);
        if (cases[c].br)
            kc_random(&k, 2, cases[c].br, cases[c].bd, -1, 1, 80 + (unsigned)c);
        check_grad(&k, 1, cases[c].br ? 7 : 3, what);
        kc_free(&k);
    }
}
END_TEST

START_TEST(test_grad_layernorm_stats_outputs)
{
    /* With Mean and InvStdDev requested, gradcheck seeds them too: a nonzero
     * gradient arriving there flows back into X. */
    kcase k;
    kc_init(&k, "LayerNormalization", 17);
    kc_random(&k, 0, 2, (int64_t[]){4, 10}, -2, 2, 90);
    kc_random(&k, 1, 1, (int64_t[]){10}, 0.5, 1.5, 91);
    check_grad(&k, 3, 3, "LayerNorm with Mean and InvStdDev outputs");
    kc_free(&k);
}
END_TEST

START_TEST(test_grad_layernorm_vs_double)
{
    enum { R = 5, N = 96 };
    const double eps = 1e-5;
    kcase k;
    kc_init(&k, "LayerNormalization", 17);
    kc_random(&k, 0, 2, (int64_t[]){R, N}, -2, 2, 95);
    kc_random(&k, 1, 1, (int64_t[]){N}, 0.5, 1.5, 96);
    kc_random(&k, 2, 1, (int64_t[]){N}, -1, 1, 97);
    float *x = k.in[0].data;
    for (int j = 0; j < N; j++)
        x[N + j] += 100; /* a row far off centre */
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    rp_tensor gy = gradcheck_random(2, (int64_t[]){R, N}, -1, 1, 98), gx, gs, gb;
    ck_assert_int_eq(rp_tensor_alloc(&gx, RP_FLOAT, 2, (int64_t[]){R, N}, NULL), RP_OK);
    ck_assert_int_eq(rp_tensor_alloc(&gs, RP_FLOAT, 1, (int64_t[]){N}, NULL), RP_OK);
    ck_assert_int_eq(rp_tensor_alloc(&gb, RP_FLOAT, 1, (int64_t[]){N}, NULL), RP_OK);
    ck_assert_int_eq(kc_backward(&k, (rp_tensor *[]){&gy}, (rp_tensor *[]){&gx, &gs, &gb}), RP_OK);
    const float *dy = gy.data, *sc = k.in[1].data, *dx = gx.data, *ds = gs.data, *db = gb.data;
    double want_s[N] = {0}, want_b[N] = {0};
    for (int r = 0; r < R; r++) {
        const float *xr = x + r * N, *dyr = dy + r * N;
        double m = 0, v = 0, sg = 0, sgx = 0, xh[N], scale = 0, want[N];
        for (int j = 0; j < N; j++)
            m += xr[j];
        m /= N;
        for (int j = 0; j < N; j++)
            v += (xr[j] - m) * (xr[j] - m);
        const double inv = 1 / sqrt(v / N + eps);
        for (int j = 0; j < N; j++) {
            xh[j] = (xr[j] - m) * inv;
            sg += dyr[j] * (double)sc[j];
            sgx += dyr[j] * (double)sc[j] * xh[j];
            want_s[j] += dyr[j] * xh[j];
            want_b[j] += dyr[j];
        }
        for (int j = 0; j < N; j++) {
            want[j] = inv * (dyr[j] * (double)sc[j] - sg / N - xh[j] * sgx / N);
            scale = fmax(scale, fabs(want[j]));
        }
        for (int j = 0; j < N; j++)
            ck_assert_msg(fabs(dx[r * N + j] - want[j]) <= 1e-6 * scale, "dX row %d [%d]: got %.9g, want %.9g",
                          r, j, dx[r * N + j], want[j]);
    }
    for (int j = 0; j < N; j++) {
        assert_close(ds[j], want_s[j], 1e-6);
        assert_close(db[j], want_b[j], 1e-6);
    }
    rp_tensor_release(&gy);
    rp_tensor_release(&gx);
    rp_tensor_release(&gs);
    rp_tensor_release(&gb);
    kc_free(&k);
}
END_TEST

START_TEST(test_grad_reduce_mean_last_keepdims)
{
    /* The decomposed LayerNorm: ReduceMean(axes=[-1], keepdims=1). */
    kcase k;
    kc_init(&k, "ReduceMean", 13);
    kc_attr_ints(&k, "axes", (int64_t[]){-1}, 1);
    kc_attr_int(&k, "keepdims", 1);
    kc_random(&k, 0, 3, (int64_t[]){1, 65, 96}, -2, 2, 100);
    check_grad(&k, 1, 1, "ReduceMean-13 axes [-1] keepdims 1 [1,65,96]");
    kc_free(&k);

    int64_t axes[1] = {-1};
    kc_init(&k, "ReduceMean", 18);
    kc_random(&k, 0, 3, dims234, -2, 2, 101);
    kc_input(&k, 1, RP_INT64, 1, (int64_t[]){1}, axes);
    check_grad(&k, 1, 1, "ReduceMean-18 axes input [-1]");
    kc_free(&k);
}
END_TEST

START_TEST(test_grad_reduce_mean_several_axes)
{
    static const int64_t d4[4] = {2, 3, 4, 5};
    kcase k;
    /* Non-adjacent reduced axes: two reduced groups, two kept. */
    kc_init(&k, "ReduceMean", 13);
    kc_attr_ints(&k, "axes", (int64_t[]){0, 2}, 2);
    kc_attr_int(&k, "keepdims", 0);
    kc_random(&k, 0, 4, d4, -2, 2, 110);
    check_grad(&k, 1, 1, "ReduceMean axes [0,2] keepdims 0");
    kc_free(&k);

    int64_t axes13[2] = {-1, 1};
    kc_init(&k, "ReduceMean", 18);
    kc_attr_int(&k, "keepdims", 0);
    kc_random(&k, 0, 4, d4, -2, 2, 111);
    kc_input(&k, 1, RP_INT64, 1, (int64_t[]){2}, axes13);
    check_grad(&k, 1, 1, "ReduceMean-18 axes [-1,1] keepdims 0");
    kc_free(&k);

    /* Adjacent reduced axes merge into one group. */
    kc_init(&k, "ReduceMean", 13);
    kc_attr_ints(&k, "axes", (int64_t[]){1, 2}, 2);
    kc_attr_int(&k, "keepdims", 0);
    kc_random(&k, 0, 4, d4, -2, 2, 112);
    check_grad(&k, 1, 1, "ReduceMean axes [1,2] keepdims 0");
    kc_free(&k);

    /* No axes: everything, to a scalar. */
    kc_init(&k, "ReduceMean", 13);
    kc_attr_int(&k, "keepdims", 0);
    kc_random(&k, 0, 4, d4, -2, 2, 113);
    check_grad(&k, 1, 1, "ReduceMean all axes keepdims 0");
    kc_free(&k);

    /* Empty axes with noop_with_empty_axes: Y = X, so dX = dY. */
    kc_init(&k, "ReduceMean", 18);
    kc_attr_int(&k, "noop_with_empty_axes", 1);
    kc_random(&k, 0, 4, d4, -2, 2, 114);
    kc_input(&k, 1, RP_INT64, 1, (int64_t[]){0}, NULL);
    check_grad(&k, 1, 1, "ReduceMean noop");
    kc_free(&k);
}
END_TEST

START_TEST(test_grad_reduce_sum)
{
    kcase k;
    kc_init(&k, "ReduceSum", 11);
    kc_attr_ints(&k, "axes", (int64_t[]){1}, 1);
    kc_random(&k, 0, 3, dims234, -2, 2, 120);
    check_grad(&k, 1, 1, "ReduceSum-11 axes [1]");
    kc_free(&k);

    int64_t axes[2] = {0, -1};
    kc_init(&k, "ReduceSum", 13);
    kc_attr_int(&k, "keepdims", 0);
    kc_random(&k, 0, 3, dims234, -2, 2, 121);
    kc_input(&k, 1, RP_INT64, 1, (int64_t[]){2}, axes);
    check_grad(&k, 1, 1, "ReduceSum-13 axes [0,-1] keepdims 0");
    kc_free(&k);

    kc_init(&k, "ReduceSum", 13);
    kc_attr_int(&k, "noop_with_empty_axes", 1);
    kc_random(&k, 0, 3, dims234, -2, 2, 122);
    check_grad(&k, 1, 1, "ReduceSum-13 noop (axes input omitted)");
    kc_free(&k);
}
END_TEST

START_TEST(test_grad_reduce_max_min)
{
    static const int64_t d4[4] = {2, 3, 4, 5};
    kcase k;
    kc_init(&k, "ReduceMax", 13);
    kc_attr_ints(&k, "axes", (int64_t[]){1}, 1);
    kc_attr_int(&k, "keepdims", 0);
    kc_spread_out(&k, 0, 3, dims234);
    check_grad(&k, 1, 1, "ReduceMax axes [1] keepdims 0");
    kc_free(&k);

    int64_t axes[2] = {-1, 0};
    kc_init(&k, "ReduceMin", 18);
    kc_spread_out(&k, 0, 4, d4);
    kc_input(&k, 1, RP_INT64, 1, (int64_t[]){2}, axes);
    check_grad(&k, 1, 1, "ReduceMin-18 axes [-1,0]");
    kc_free(&k);

    kc_init(&k, "ReduceMax", 13);
    kc_attr_int(&k, "keepdims", 0);
    kc_spread_out(&k, 0, 3, dims234);
    check_grad(&k, 1, 1, "ReduceMax all axes");
    kc_free(&k);

    kc_init(&k, "ReduceMin", 13);
    kc_attr_ints(&k, "axes", (int64_t[]){2}, 1);
    kc_spread_out(&k, 0, 4, d4);
    check_grad(&k, 1, 1, "ReduceMin axes [2] keepdims 1");
    kc_free(&k);
}
END_TEST

START_TEST(test_grad_reduce_max_min_ties)
{
    /* Ties: all of dY goes to the first arg-extremum; a NaN wins as in forward. */
    float x[8] = {3, 1, 3, 0, -2, -2, 7, 7};
    float nanx[4] = {1, NAN, 5, NAN};
    static const struct {
        const char *op;
        int which; /* 0: x as [2,4], 1: nanx as [1,4] */
        float want[8];
    } cases[] = {
        /* rows {3,1,3,0} and {-2,-2,7,7}, dY = {1, 2} */
        {"ReduceMax", 0, {1, 0, 0, 0, 0, 0, 2, 0}},
        {"ReduceMin", 0, {0, 0, 0, 1, 2, 0, 0, 0}},
        {"ReduceMax", 1, {0, 1, 0, 0}},
        {"ReduceMin", 1, {0, 1, 0, 0}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        kcase k;
        kc_init(&k, cases[c].op, 13);
        kc_attr_ints(&k, "axes", (int64_t[]){-1}, 1);
        int rows = cases[c].which ? 1 : 2;
        kc_input(&k, 0, RP_FLOAT, 2, (int64_t[]){rows, 4}, cases[c].which ? nanx : x);
        kc_outputs(&k, 1);
        ck_assert_int_eq(kc_run(&k), RP_OK);
        float gyv[2] = {1, 2}, gxv[8] = {0};
        rp_tensor gy = {.dtype = RP_FLOAT, .rank = 2, .dims = {rows, 1}, .count = rows, .data = gyv};
        rp_tensor gx = {.dtype = RP_FLOAT, .rank = 2, .dims = {rows, 4}, .count = rows * 4, .data = gxv};
        ck_assert_int_eq(kc_backward(&k, (rp_tensor *[]){&gy}, (rp_tensor *[]){&gx, NULL}), RP_OK);
        const float *want = cases[c].want;
        for (int e = 0; e < rows * 4; e++)
            ck_assert_msg(gxv[e] == want[e], "%s case %zu [%d]: got %g, want %g", cases[c].op, c, e, gxv[e],
                          want[e]);
        kc_free(&k);
    }
}
END_TEST

START_TEST(test_grad_reduce_norms_and_logs)
{
    kcase k;
    kc_init(&k, "ReduceSumSquare", 13);
    kc_attr_ints(&k, "axes", (int64_t[]){1}, 1);
    kc_random(&k, 0, 3, dims234, -2, 2, 130);
    check_grad(&k, 1, 1, "ReduceSumSquare axes [1]");
    kc_free(&k);

    kc_init(&k, "ReduceL2", 13);
    kc_attr_ints(&k, "axes", (int64_t[]){0, 2}, 2);
    kc_attr_int(&k, "keepdims", 0);
    kc_random(&k, 0, 3, dims234, -2, 2, 131);
    check_grad(&k, 1, 1, "ReduceL2 axes [0,2]");
    kc_free(&k);

    /* L1: magnitudes in [0.3, 2), alternating signs, away from the kink. */
    int64_t axes[1] = {-1};
    kc_init(&k, "ReduceL1", 18);
    kc_random(&k, 0, 3, dims234, 0.3, 2, 132);
    for (int e = 0; e < 24; e += 2)
        ((float *)k.in[0].data)[e] *= -1;
    kc_input(&k, 1, RP_INT64, 1, (int64_t[]){1}, axes);
    check_grad(&k, 1, 1, "ReduceL1-18 axes [-1]");
    kc_free(&k);

    kc_init(&k, "ReduceLogSum", 13);
    kc_attr_ints(&k, "axes", (int64_t[]){1}, 1);
    kc_random(&k, 0, 3, dims234, 0.5, 2, 133);
    check_grad(&k, 1, 1, "ReduceLogSum axes [1]");
    kc_free(&k);

    kc_init(&k, "ReduceLogSumExp", 13);
    kc_attr_ints(&k, "axes", (int64_t[]){0, 1}, 2);
    kc_random(&k, 0, 3, dims234, -3, 3, 134);
    check_grad(&k, 1, 1, "ReduceLogSumExp axes [0,1]");
    kc_free(&k);

    /* L2 at a zero norm: the subgradient 0, never NaN. */
    float zero[4] = {0}, gyv[1] = {1}, gxv[4] = {0};
    kc_init(&k, "ReduceL2", 13);
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){4}, zero);
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    rp_tensor gy = {.dtype = RP_FLOAT, .rank = 1, .dims = {1}, .count = 1, .data = gyv};
    rp_tensor gx = {.dtype = RP_FLOAT, .rank = 1, .dims = {4}, .count = 4, .data = gxv};
    ck_assert_int_eq(kc_backward(&k, (rp_tensor *[]){&gy}, (rp_tensor *[]){&gx}), RP_OK);
    for (int e = 0; e < 4; e++)
        ck_assert_float_eq(gxv[e], 0);
    kc_free(&k);
}
END_TEST

/* Run k forward, then backward twice into the same zeroed gradients: the
 * second call must add (2 * first), not overwrite. */
static void check_adds(kcase *k, int n_out, const char *what)
{
    kc_outputs(k, n_out);
    ck_assert_int_eq(kc_run(k), RP_OK);
    rp_tensor gy[3] = {{0}}, gx[3] = {{0}}, first[3] = {{0}};
    rp_tensor *gyp[3] = {NULL}, *gxp[3] = {NULL};
    for (int o = 0; o < n_out; o++) {
        gy[o] = gradcheck_random(k->out[o].rank, k->out[o].dims, -1, 1, 200 + (unsigned)o);
        gyp[o] = &gy[o];
    }
    for (int i = 0; i < k->ctx.n_in; i++)
        if (k->inp[i] && k->in[i].dtype == RP_FLOAT) {
            ck_assert_int_eq(rp_tensor_alloc(&gx[i], RP_FLOAT, k->in[i].rank, k->in[i].dims, NULL), RP_OK);
            gxp[i] = &gx[i];
        }
    ck_assert_int_eq(kc_backward(k, gyp, gxp), RP_OK);
    for (int i = 0; i < k->ctx.n_in; i++)
        if (gxp[i]) {
            ck_assert_int_eq(rp_tensor_alloc(&first[i], RP_FLOAT, gx[i].rank, gx[i].dims, NULL), RP_OK);
            memcpy(first[i].data, gx[i].data, (size_t)gx[i].count * sizeof(float));
        }
    ck_assert_int_eq(kc_backward(k, gyp, gxp), RP_OK);
    for (int i = 0; i < k->ctx.n_in; i++) {
        if (!gxp[i])
            continue;
        double mass = 0;
        for (int64_t e = 0; e < gx[i].count; e++) {
            double once = ((float *)first[i].data)[e], twice = ((float *)gx[i].data)[e];
            mass += fabs(once);
            ck_assert_msg(fabs(twice - 2 * once) <= 2.5e-7 * fabs(2 * once),
                          "%s: input %d [%lld]: %.9g after two calls, %.9g after one", what, i,
                          (long long)e, twice, once);
        }
        ck_assert_msg(mass > 0, "%s: input %d got no gradient", what, i);
        rp_tensor_release(&gx[i]);
        rp_tensor_release(&first[i]);
    }
    for (int o = 0; o < n_out; o++)
        rp_tensor_release(&gy[o]);
}

START_TEST(test_grad_backward_adds)
{
    kcase k;
    kc_init(&k, "Softmax", 13);
    kc_random(&k, 0, 2, (int64_t[]){3, 65}, -3, 3, 210);
    check_adds(&k, 1, "Softmax");
    kc_free(&k);

    kc_init(&k, "LogSoftmax", 11);
    kc_random(&k, 0, 3, dims234, -3, 3, 211);
    check_adds(&k, 1, "LogSoftmax");
    kc_free(&k);

    kc_init(&k, "LayerNormalization", 17);
    kc_random(&k, 0, 3, (int64_t[]){1, 5, 8}, -2, 2, 212);
    kc_random(&k, 1, 1, (int64_t[]){8}, 0.5, 1.5, 213);
    kc_random(&k, 2, 1, (int64_t[]){8}, -1, 1, 214);
    check_adds(&k, 3, "LayerNorm dX, dScale, dB");
    kc_free(&k);

    static const char *reduce_ops[] = {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin",
                                       "ReduceSumSquare", "ReduceL1", "ReduceL2",
                                       "ReduceLogSum", "ReduceLogSumExp"};
    for (size_t r = 0; r < sizeof reduce_ops / sizeof reduce_ops[0]; r++) {
        kc_init(&k, reduce_ops[r], 13);
        kc_attr_ints(&k, "axes", (int64_t[]){-1}, 1);
        kc_random(&k, 0, 3, dims234, 0.5, 2, 220 + (unsigned)r);
        check_adds(&k, 1, reduce_ops[r]);
        kc_free(&k);
    }

    kc_init(&k, "ReduceSum", 13);
    kc_attr_int(&k, "noop_with_empty_axes", 1);
    kc_random(&k, 0, 3, dims234, -2, 2, 230);
    check_adds(&k, 1, "ReduceSum noop");
    kc_free(&k);
}
END_TEST

START_TEST(test_grad_null_and_dtype)
{
    /* A NULL output gradient is zero: nothing added. A NULL input gradient is
     * not wanted: skipped. */
    kcase k;
    kc_init(&k, "Softmax", 13);
    kc_random(&k, 0, 2, (int64_t[]){2, 5}, -1, 1, 300);
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    rp_tensor gx = gradcheck_random(2, (int64_t[]){2, 5}, 0.5, 0.5, 1);
    ck_assert_int_eq(kc_backward(&k, (rp_tensor *[]){NULL}, (rp_tensor *[]){&gx}), RP_OK);
    for (int e = 0; e < 10; e++)
        ck_assert_float_eq(((float *)gx.data)[e], 0.5f);
    rp_tensor gy = gradcheck_random(2, (int64_t[]){2, 5}, -1, 1, 301);
    ck_assert_int_eq(kc_backward(&k, (rp_tensor *[]){&gy}, (rp_tensor *[]){NULL}), RP_OK);
    rp_tensor_release(&gx);
    rp_tensor_release(&gy);
    kc_free(&k);

    /* LayerNorm asked for dScale alone gets the same dScale as with all three. */
    kc_init(&k, "LayerNormalization", 17);
    kc_random(&k, 0, 2, (int64_t[]){3, 6}, -2, 2, 310);
    kc_random(&k, 1, 1, (int64_t[]){6}, 0.5, 1.5, 311);
    kc_random(&k, 2, 1, (int64_t[]){6}, -1, 1, 312);
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    gy = gradcheck_random(2, (int64_t[]){3, 6}, -1, 1, 313);
    rp_tensor all[3], alone;
    ck_assert_int_eq(rp_tensor_alloc(&all[0], RP_FLOAT, 2, (int64_t[]){3, 6}, NULL), RP_OK);
    ck_assert_int_eq(rp_tensor_alloc(&all[1], RP_FLOAT, 1, (int64_t[]){6}, NULL), RP_OK);
    ck_assert_int_eq(rp_tensor_alloc(&all[2], RP_FLOAT, 1, (int64_t[]){6}, NULL), RP_OK);
    ck_assert_int_eq(rp_tensor_alloc(&alone, RP_FLOAT, 1, (int64_t[]){6}, NULL), RP_OK);
    ck_assert_int_eq(kc_backward(&k, (rp_tensor *[]){&gy, NULL, NULL}, (rp_tensor *[]){&all[0], &all[1], &all[2]}),
                     RP_OK);
    ck_assert_int_eq(kc_backward(&k, (rp_tensor *[]){&gy, NULL, NULL}, (rp_tensor *[]){NULL, &alone, NULL}), RP_OK);
    ck_assert_int_eq(memcmp(alone.data, all[1].data, 6 * sizeof(float)), 0);
    for (int i = 0; i < 3; i++)
        rp_tensor_release(&all[i]);
    rp_tensor_release(&alone);
    rp_tensor_release(&gy);
    kc_free(&k);

    /* Only float32 is differentiated. */
    double xd[6] = {1, 2, 3, 4, 5, 6};
    float gyv[2] = {1, 1}, gxv[6] = {0};
    kc_init(&k, "ReduceSum", 13);
    kc_input(&k, 0, RP_DOUBLE, 2, (int64_t[]){2, 3}, xd);
    kc_input(&k, 1, RP_INT64, 1, (int64_t[]){1}, (int64_t[]){1});
    kc_outputs(&k, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    rp_tensor gyt = {.dtype = RP_FLOAT, .rank = 2, .dims = {2, 1}, .count = 2, .data = gyv};
    rp_tensor gxt = {.dtype = RP_FLOAT, .rank = 2, .dims = {2, 3}, .count = 6, .data = gxv};
    ck_assert_int_eq(kc_backward(&k, (rp_tensor *[]){&gyt}, (rp_tensor *[]){&gxt, NULL}), RP_ERR_DTYPE);
    ck_assert_ptr_nonnull(strstr(k.err.msg, "test_node"));
    kc_free(&k);

    /* ReduceProd has no gradient: the engine reports it as such. */
    ck_assert_ptr_null(rp_op_lookup("ReduceProd", 13)->backward);
    ck_assert_ptr_null(rp_op_lookup("ReduceProd", 18)->backward);
    ck_assert_ptr_nonnull(rp_op_lookup("ReduceMean", 18)->backward);
    ck_assert_ptr_nonnull(rp_op_lookup("Softmax", 11)->backward);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("reduce_norm");
    TCase *tc = tcase_create("kernels");
    tcase_add_test(tc, test_reduce_sum_two_axes_keepdims);
    tcase_add_test(tc, test_reduce_mean_axes_input_negative);
    tcase_add_test(tc, test_reduce_mean_attr_opset13);
    tcase_add_test(tc, test_reduce_max_min_middle_axis);
    tcase_add_test(tc, test_reduce_all_and_noop);
    tcase_add_test(tc, test_reduce_empty_set);
    tcase_add_test(tc, test_reduce_int64_and_double);
    tcase_add_test(tc, test_reduce_l2_integer_overflow);
    tcase_add_test(tc, test_reduce_bad_axes);
    tcase_add_test(tc, test_softmax_rows_and_stability);
    tcase_add_test(tc, test_softmax_opset11_vs_13_axis);
    tcase_add_test(tc, test_layernorm_vs_naive);
    tcase_add_test(tc, test_layernorm_empty_rows);
    tcase_add_test(tc, test_layernorm_bad_scale);
    suite_add_tcase(s, tc);

    /* The ViT-sized finite-difference checks take ~15 s under the sanitizers. */
    TCase *tg = tcase_create("gradients");
    tcase_set_timeout(tg, 600);
    tcase_add_test(tg, test_grad_softmax_vit_attention);
    tcase_add_test(tg, test_grad_softmax_axes_and_opsets);
    tcase_add_test(tg, test_grad_logsoftmax);
    tcase_add_test(tg, test_grad_softmax_vs_double);
    tcase_add_test(tg, test_grad_layernorm_vit);
    tcase_add_test(tg, test_grad_layernorm_axis_m2);
    tcase_add_test(tg, test_grad_layernorm_stats_outputs);
    tcase_add_test(tg, test_grad_layernorm_vs_double);
    tcase_add_test(tg, test_grad_reduce_mean_last_keepdims);
    tcase_add_test(tg, test_grad_reduce_mean_several_axes);
    tcase_add_test(tg, test_grad_reduce_sum);
    tcase_add_test(tg, test_grad_reduce_max_min);
    tcase_add_test(tg, test_grad_reduce_max_min_ties);
    tcase_add_test(tg, test_grad_reduce_norms_and_logs);
    tcase_add_test(tg, test_grad_backward_adds);
    tcase_add_test(tg, test_grad_null_and_dtype);
    suite_add_tcase(s, tg);
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
