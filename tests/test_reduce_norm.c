/* Reduce*, Softmax, LogSoftmax and LayerNormalization kernels called straight
 * through rp_op_lookup with a hand-built rp_kctx (no graph, no loader), on
 * cases small enough to check by hand or against a naive double loop. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

/* ---- a tiny harness: one node, its attributes, its tensors ---- */

#define MAX_ATTR 4

typedef struct kcase {
    rp_attr attr[MAX_ATTR];
    int n_attr;
    int64_t ints[MAX_ATTR][RP_MAX_RANK];
    rp_node node;
    rp_tensor in[3], out[3];
    rp_tensor *inp[3], *outp[3];
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
    tcase_add_test(tc, test_reduce_bad_axes);
    tcase_add_test(tc, test_softmax_rows_and_stability);
    tcase_add_test(tc, test_softmax_opset11_vs_13_axis);
    tcase_add_test(tc, test_layernorm_vs_naive);
    tcase_add_test(tc, test_layernorm_bad_scale);
    suite_add_tcase(s, tc);
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
