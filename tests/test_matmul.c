/* MatMul, Gemm, Einsum and Conv kernels called through rp_op_lookup with a
 * hand-built rp_kctx (no graph, no loader), checked against naive loops on
 * random data and against small hand-computed cases; their backward against
 * finite differences (tests/support/gradcheck), plus the two properties the
 * LRP rules rely on: backward adds into its buffers, and forward / backward
 * read every operand (weights included) from ctx->in at call time. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "support/gradcheck.h"

/* ---- harness: one node, its attributes, its tensors ---- */

#define MAX_ATTR 8
#define MAX_IO 4

typedef struct kcase {
    rp_attr attr[MAX_ATTR];
    int n_attr;
    int64_t ints[MAX_ATTR][2 * RP_MAX_RANK];
    rp_node node;
    rp_tensor in[MAX_IO], out[1];
    rp_tensor *inp[MAX_IO], *outp[1];
    rp_kctx ctx;
    rp_error err;
    float *owned[MAX_IO]; /* input data from kc_rand, freed by kc_free */
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
    k->outp[0] = &k->out[0];
    k->ctx.n_out = 1;
}

static rp_attr *kc_attr(kcase *k, const char *name, rp_attr_type type)
{
    ck_assert_int_lt(k->n_attr, MAX_ATTR);
    rp_attr *a = &k->attr[k->n_attr++];
    a->name = (char *)name;
    a->type = type;
    k->node.n_attr = k->n_attr;
    return a;
}

static void kc_int(kcase *k, const char *name, int64_t v) { kc_attr(k, name, RP_ATTR_INT)->i = v; }
static void kc_float(kcase *k, const char *name, float v) { kc_attr(k, name, RP_ATTR_FLOAT)->f = v; }
static void kc_string(kcase *k, const char *name, const char *v) { kc_attr(k, name, RP_ATTR_STRING)->s = (char *)v; }

static void kc_ints(kcase *k, const char *name, const int64_t *v, int n)
{
    int slot = k->n_attr;
    rp_attr *a = kc_attr(k, name, RP_ATTR_INTS);
    memcpy(k->ints[slot], v, sizeof(int64_t) * (size_t)n);
    a->ints = k->ints[slot];
    a->n = n;
}

/* data is borrowed. */
static void kc_input(kcase *k, int i, rp_dtype dt, int rank, const int64_t *dims, const void *data)
{
    ck_assert(rp_tensor_set_shape(&k->in[i], dt, rank, dims));
    k->in[i].data = (void *)data;
    k->inp[i] = &k->in[i];
    if (i + 1 > k->ctx.n_in)
        k->ctx.n_in = i + 1;
}

/* prepare, allocate the output, forward. */
static rp_status kc_run(kcase *k)
{
    const rp_op *op = rp_op_lookup(k->node.op_type, k->ctx.opset);
    ck_assert_msg(op != NULL, "no kernel for %s at opset %d", k->node.op_type, k->ctx.opset);
    ck_assert_int_ge(k->ctx.n_in, op->min_in);
    ck_assert_int_le(k->ctx.n_in, op->max_in);
    rp_status st = op->prepare(&k->ctx);
    if (st != RP_OK)
        return st;
    size_t bytes = (size_t)k->out[0].count * rp_dtype_size(k->out[0].dtype);
    /* Poison, so a kernel that leaves an element unwritten fails. */
    k->out[0].data = malloc(bytes ? bytes : 1);
    memset(k->out[0].data, 0x7f, bytes);
    return op->forward(&k->ctx);
}

static void kc_free(kcase *k)
{
    free(k->ctx.params);
    k->ctx.params = NULL;
    free(k->out[0].data);
    k->out[0].data = NULL;
    for (int i = 0; i < MAX_IO; i++) {
        free(k->owned[i]);
        k->owned[i] = NULL;
    }
}

static void assert_shape(const rp_tensor *t, int rank, const int64_t *dims)
{
    ck_assert_int_eq(t->rank, rank);
    for (int d = 0; d < rank; d++)
        ck_assert_int_eq(t->dims[d], dims[d]);
}

static void assert_close_f(const float *y, const double *ref, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabs(y[i] - ref[i]) <= 1e-5 + 1e-4 * fabs(ref[i]), "element %lld: got %.9g, want %.9g",
                      (long long)i, y[i], ref[i]);
}

static void assert_close_d(const double *y, const double *ref, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabs(y[i] - ref[i]) <= 1e-12 + 1e-10 * fabs(ref[i]), "element %lld: got %.17g, want %.17g",
                      (long long)i, y[i], ref[i]);
}

static unsigned rng = 12345u;

static float *rand_f(int64_t n)
{
    float *x = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) {
        rng = rng * 1103515245u + 12345u;
        x[i] = (float)((rng >> 8) % 2001) / 1000.0f - 1.0f;
    }
    return x;
}

/* A float32 input of random values in [-1, 1], owned by the case. */
static void kc_rand(kcase *k, int i, int rank, const int64_t *dims)
{
    int64_t n = rp_shape_count(rank, dims);
    free(k->owned[i]);
    k->owned[i] = rand_f(n);
    kc_input(k, i, RP_FLOAT, rank, dims, k->owned[i]);
}

/* ---- MatMul ---- */

/* Naive numpy matmul of A [.., M, K] and B [.., K, N] with batch dims
 * broadcast; both given as rank-5 arrays (leading 1s) for simple indexing. */
static void naive_matmul5(const float *a, const int64_t *ad, const float *b, const int64_t *bd, double *y,
                          int64_t *yd)
{
    for (int d = 0; d < 3; d++)
        yd[d] = ad[d] > bd[d] ? ad[d] : bd[d];
    int64_t M = ad[3], K = ad[4], N = bd[4];
    yd[3] = M;
    yd[4] = N;
    int64_t o = 0;
    for (int64_t i0 = 0; i0 < yd[0]; i0++)
        for (int64_t i1 = 0; i1 < yd[1]; i1++)
            for (int64_t i2 = 0; i2 < yd[2]; i2++) {
                int64_t ja = (((ad[0] > 1 ? i0 : 0) * ad[1] + (ad[1] > 1 ? i1 : 0)) * ad[2] + (ad[2] > 1 ? i2 : 0));
                int64_t jb = (((bd[0] > 1 ? i0 : 0) * bd[1] + (bd[1] > 1 ? i1 : 0)) * bd[2] + (bd[2] > 1 ? i2 : 0));
                for (int64_t m = 0; m < M; m++)
                    for (int64_t n = 0; n < N; n++) {
                        double s = 0;
                        for (int64_t k = 0; k < K; k++)
                            s += (double)a[ja * M * K + m * K + k] * b[jb * K * N + k * N + n];
                        y[o++] = s;
                    }
            }
}

/* Random A and B of the given shapes (any rank >= 2) against the naive loop. */
static void check_matmul(int ra, const int64_t *ad, int rb, const int64_t *bd)
{
    int64_t a5[5] = {1, 1, 1, 1, 1}, b5[5] = {1, 1, 1, 1, 1}, y5[5];
    for (int d = 0; d < ra; d++)
        a5[5 - ra + d] = ad[d];
    for (int d = 0; d < rb; d++)
        b5[5 - rb + d] = bd[d];
    int64_t na = rp_shape_count(5, a5), nb = rp_shape_count(5, b5);
    float *a = rand_f(na), *b = rand_f(nb);
    double *ref = malloc(sizeof(double) * 4096);
    naive_matmul5(a, a5, b, b5, ref, y5);
    kcase k;
    kc_init(&k, "MatMul", 13);
    kc_input(&k, 0, RP_FLOAT, ra, ad, a);
    kc_input(&k, 1, RP_FLOAT, rb, bd, b);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    int ry = ra > rb ? ra : rb;
    assert_shape(&k.out[0], ry, y5 + 5 - ry);
    ck_assert_int_le(k.out[0].count, 4096);
    assert_close_f(k.out[0].data, ref, k.out[0].count);
    /* Fused by the memory plan (graph/plan.c): scaled and added to what
     * the output holds (here the product itself), then with B given as
     * its transpose. */
    const rp_op *op = rp_op_lookup("MatMul", 13);
    rp_product_fusion f = {.scale = 0.5, .accumulate = true};
    k.ctx.fusion = &f;
    ck_assert_int_eq(op->forward(&k.ctx), RP_OK);
    for (int64_t i = 0; i < k.out[0].count; i++)
        ref[i] *= 1.5;
    assert_close_f(k.out[0].data, ref, k.out[0].count);
    { /* B given as its transpose (check_matmul's B has rank >= 2) */
        int64_t kk = bd[rb - 2], nn = bd[rb - 1], tdims[RP_MAX_RANK];
        float *bt = malloc(sizeof(float) * (size_t)nb);
        for (int64_t o = 0; o < nb / (kk * nn); o++)
            for (int64_t r = 0; r < kk; r++)
                for (int64_t c = 0; c < nn; c++)
                    bt[o * kk * nn + c * kk + r] = b[o * kk * nn + r * nn + c];
        memcpy(tdims, bd, sizeof(int64_t) * (size_t)rb);
        tdims[rb - 2] = nn;
        tdims[rb - 1] = kk;
        rp_tensor bt_t = {0};
        ck_assert(rp_tensor_set_shape(&bt_t, RP_FLOAT, rb, tdims));
        bt_t.data = bt;
        k.inp[1] = &bt_t;
        f = (rp_product_fusion){.scale = 1.0, .b_transposed = true};
        ck_assert_int_eq(op->forward(&k.ctx), RP_OK);
        for (int64_t i = 0; i < k.out[0].count; i++)
            ref[i] /= 1.5;
        assert_close_f(k.out[0].data, ref, k.out[0].count);
        k.inp[1] = &k.in[1];
        free(bt);
    }
    kc_free(&k);
    free(a);
    free(b);
    free(ref);
}

START_TEST(matmul_batched_broadcast)
{
    /* Both sides broadcast on different axes. */
    check_matmul(5, (int64_t[]){2, 1, 3, 4, 5}, 3, (int64_t[]){3, 5, 6});
    check_matmul(4, (int64_t[]){3, 1, 3, 4}, 4, (int64_t[]){1, 2, 4, 2});
    /* Attention-like: same batch on both sides. */
    check_matmul(4, (int64_t[]){1, 3, 7, 4}, 4, (int64_t[]){1, 3, 4, 7});
    /* Activation times a shared 2-D weight (the folded tall GEMM). */
    check_matmul(3, (int64_t[]){2, 9, 6}, 2, (int64_t[]){6, 5});
    /* Shared weight with size-1 batch dims: still folds. */
    check_matmul(3, (int64_t[]){3, 4, 6}, 3, (int64_t[]){1, 6, 5});
    /* 2-D left operand against a batched right one. */
    check_matmul(2, (int64_t[]){4, 5}, 3, (int64_t[]){3, 5, 2});
    check_matmul(2, (int64_t[]){1, 1}, 2, (int64_t[]){1, 1});
}
END_TEST

START_TEST(matmul_vit_projection)
{
    /* [1,65,96] x [96,288]: the QKV projection of a small ViT. */
    check_matmul(3, (int64_t[]){1, 65, 16}, 2, (int64_t[]){16, 48});
}
END_TEST

START_TEST(matmul_1d)
{
    /* [3] . [3] = scalar. */
    float a[3] = {1, 2, 3}, b[3] = {4, -5, 6};
    kcase k;
    kc_init(&k, "MatMul", 13);
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){3}, a);
    kc_input(&k, 1, RP_FLOAT, 1, (int64_t[]){3}, b);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    ck_assert_int_eq(k.out[0].rank, 0);
    ck_assert_float_eq(((float *)k.out[0].data)[0], 12.0f);
    kc_free(&k);

    /* [2] x [3,2,1]: the added 1 is removed: out [3,1]. */
    float v[2] = {1, -1}, B[6] = {1, 2, 3, 5, 8, 13};
    kc_init(&k, "MatMul", 13);
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){2}, v);
    kc_input(&k, 1, RP_FLOAT, 3, (int64_t[]){3, 2, 1}, B);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], 2, (int64_t[]){3, 1});
    assert_close_f(k.out[0].data, (double[]){-1, -2, -5}, 3);
    kc_free(&k);

    /* [2,2,3] x [3]: out [2,2]. */
    float A[12] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1};
    float w[3] = {2, 3, 4};
    kc_init(&k, "MatMul", 13);
    kc_input(&k, 0, RP_FLOAT, 3, (int64_t[]){2, 2, 3}, A);
    kc_input(&k, 1, RP_FLOAT, 1, (int64_t[]){3}, w);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], 2, (int64_t[]){2, 2});
    assert_close_f(k.out[0].data, (double[]){2, 3, 4, 9}, 4);
    kc_free(&k);
}
END_TEST

/* K == 0: the operands are empty (data NULL, which no kernel may offset)
 * and the output is all zeros, the empty sum; the output is poisoned by
 * kc_run, so every element must be written. Gradients of empty operands
 * are empty: backward has nothing to do. */
START_TEST(matmul_empty_k)
{
    kcase k;
    kc_init(&k, "MatMul", 13);
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){0}, NULL);
    kc_input(&k, 1, RP_FLOAT, 1, (int64_t[]){0}, NULL);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    ck_assert_int_eq(k.out[0].rank, 0);
    ck_assert_float_eq(((float *)k.out[0].data)[0], 0.0f);
    /* Gradient buffers of empty tensors may still be non-NULL (malloc(0)). */
    float gy = 1, ga_buf = 7, gb_buf = 7;
    rp_tensor g = k.out[0], ga = k.in[0], gb = k.in[1];
    g.data = &gy;
    ga.data = &ga_buf;
    gb.data = &gb_buf;
    rp_tensor *gout[1] = {&g}, *gin[2] = {&ga, &gb};
    ck_assert_int_eq(rp_op_lookup("MatMul", 13)->backward(&k.ctx, gout, gin), RP_OK);
    ck_assert(ga_buf == 7 && gb_buf == 7);
    kc_free(&k);

    double ad = 0;
    kc_init(&k, "MatMul", 13);
    kc_input(&k, 0, RP_DOUBLE, 3, (int64_t[]){2, 3, 0}, NULL);
    kc_input(&k, 1, RP_DOUBLE, 2, (int64_t[]){0, 4}, &ad);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], 3, (int64_t[]){2, 3, 4});
    for (int i = 0; i < 24; i++)
        ck_assert(((double *)k.out[0].data)[i] == 0.0);
    /* Accumulating the empty sum leaves the output as it was. */
    for (int i = 0; i < 24; i++)
        ((double *)k.out[0].data)[i] = i;
    rp_product_fusion f = {.scale = 1.0, .accumulate = true};
    k.ctx.fusion = &f;
    ck_assert_int_eq(rp_op_lookup("MatMul", 13)->forward(&k.ctx), RP_OK);
    for (int i = 0; i < 24; i++)
        ck_assert(((double *)k.out[0].data)[i] == i);
    kc_free(&k);

    /* Einsum's GEMM path too. */
    kc_init(&k, "Einsum", 12);
    kc_string(&k, "equation", "bij,bjk->bik");
    kc_input(&k, 0, RP_FLOAT, 3, (int64_t[]){2, 3, 0}, NULL);
    kc_input(&k, 1, RP_FLOAT, 3, (int64_t[]){2, 0, 2}, NULL);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], 3, (int64_t[]){2, 3, 2});
    for (int i = 0; i < 12; i++)
        ck_assert_float_eq(((float *)k.out[0].data)[i], 0.0f);
    kc_free(&k);
}
END_TEST

START_TEST(matmul_double_and_errors)
{
    double a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, 0, 1, 1, 1};
    kcase k;
    kc_init(&k, "MatMul", 1);
    kc_input(&k, 0, RP_DOUBLE, 2, (int64_t[]){2, 3}, a);
    kc_input(&k, 1, RP_DOUBLE, 2, (int64_t[]){3, 2}, b);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    ck_assert_int_eq(k.out[0].dtype, RP_DOUBLE);
    assert_close_d(k.out[0].data, (double[]){4, 5, 10, 11}, 4);
    kc_free(&k);

    kc_init(&k, "MatMul", 13);
    kc_input(&k, 0, RP_DOUBLE, 2, (int64_t[]){2, 3}, a);
    kc_input(&k, 1, RP_DOUBLE, 2, (int64_t[]){2, 3}, b);
    ck_assert_int_eq(kc_run(&k), RP_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(k.err.msg, "test_node"));
    kc_free(&k);

    kc_init(&k, "MatMul", 13);
    kc_input(&k, 0, RP_DOUBLE, 3, (int64_t[]){2, 1, 3}, a);
    kc_input(&k, 1, RP_DOUBLE, 3, (int64_t[]){3, 3, 1}, b);
    ck_assert_int_eq(kc_run(&k), RP_ERR_SHAPE);
    kc_free(&k);

    int64_t ia[4] = {0};
    kc_init(&k, "MatMul", 13);
    kc_input(&k, 0, RP_INT64, 2, (int64_t[]){2, 2}, ia);
    kc_input(&k, 1, RP_INT64, 2, (int64_t[]){2, 2}, ia);
    ck_assert_int_eq(kc_run(&k), RP_ERR_UNSUPPORTED);
    kc_free(&k);

    /* Empty contraction: zeros, not garbage. */
    kc_init(&k, "MatMul", 13);
    kc_input(&k, 0, RP_FLOAT, 2, (int64_t[]){2, 0}, a);
    kc_input(&k, 1, RP_FLOAT, 2, (int64_t[]){0, 3}, b);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_close_f(k.out[0].data, (double[]){0, 0, 0, 0, 0, 0}, 6);
    kc_free(&k);
}
END_TEST

/* ---- Gemm ---- */

START_TEST(gemm_transposes_and_bias)
{
    const int64_t M = 4, N = 5, K = 3;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int cform = 0; cform < 5; cform++) {
                float *a = rand_f(M * K), *b = rand_f(K * N), *cc = rand_f(M * N);
                float alpha = 0.5f, beta = -2.0f;
                kcase k;
                kc_init(&k, "Gemm", 13);
                kc_int(&k, "transA", ta);
                kc_int(&k, "transB", tb);
                kc_float(&k, "alpha", alpha);
                kc_float(&k, "beta", beta);
                kc_input(&k, 0, RP_FLOAT, 2, ta ? (int64_t[]){K, M} : (int64_t[]){M, K}, a);
                kc_input(&k, 1, RP_FLOAT, 2, tb ? (int64_t[]){N, K} : (int64_t[]){K, N}, b);
                /* C: absent, scalar, [N], [M,1], [M,N]. */
                if (cform == 1)
                    kc_input(&k, 2, RP_FLOAT, 0, (int64_t[]){1}, cc);
                else if (cform == 2)
                    kc_input(&k, 2, RP_FLOAT, 1, (int64_t[]){N}, cc);
                else if (cform == 3)
                    kc_input(&k, 2, RP_FLOAT, 2, (int64_t[]){M, 1}, cc);
                else if (cform == 4)
                    kc_input(&k, 2, RP_FLOAT, 2, (int64_t[]){M, N}, cc);
                ck_assert_int_eq(kc_run(&k), RP_OK);
                assert_shape(&k.out[0], 2, (int64_t[]){M, N});
                double ref[20];
                for (int64_t i = 0; i < M; i++)
                    for (int64_t j = 0; j < N; j++) {
                        double s = 0;
                        for (int64_t l = 0; l < K; l++)
                            s += (double)(ta ? a[l * M + i] : a[i * K + l]) * (tb ? b[j * K + l] : b[l * N + j]);
                        double cv = cform == 0 ? 0 : cform == 1 ? cc[0] : cform == 2 ? cc[j] : cform == 3 ? cc[i] : cc[i * N + j];
                        ref[i * N + j] = alpha * s + beta * cv;
                    }
                assert_close_f(k.out[0].data, ref, M * N);
                kc_free(&k);
                free(a);
                free(b);
                free(cc);
            }
}
END_TEST

START_TEST(gemm_rules)
{
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, 0, 1, 1, 1}, c[2] = {10, 20};
    kcase k;
    /* Opset 9 requires C. */
    const rp_op *op = rp_op_lookup("Gemm", 9);
    ck_assert_ptr_nonnull(op);
    ck_assert_int_eq(op->min_in, 3);
    ck_assert_int_eq(rp_op_lookup("Gemm", 11)->min_in, 2);
    /* C that does not broadcast to (M, N). */
    kc_init(&k, "Gemm", 13);
    kc_input(&k, 0, RP_FLOAT, 2, (int64_t[]){2, 3}, a);
    kc_input(&k, 1, RP_FLOAT, 2, (int64_t[]){3, 2}, b);
    kc_input(&k, 2, RP_FLOAT, 1, (int64_t[]){3}, c);
    ck_assert_int_eq(kc_run(&k), RP_ERR_SHAPE);
    kc_free(&k);
    /* Hand-computed: [[1,2,3],[4,5,6]] x [[1,0],[0,1],[1,1]] + [10,20]. */
    kc_init(&k, "Gemm", 11);
    kc_input(&k, 0, RP_FLOAT, 2, (int64_t[]){2, 3}, a);
    kc_input(&k, 1, RP_FLOAT, 2, (int64_t[]){3, 2}, b);
    kc_input(&k, 2, RP_FLOAT, 1, (int64_t[]){2}, c);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_close_f(k.out[0].data, (double[]){14, 25, 20, 31}, 4);
    kc_free(&k);
    /* Double. */
    double da[4] = {1, 2, 3, 4}, db[4] = {0, 1, 1, 0};
    kc_init(&k, "Gemm", 13);
    kc_int(&k, "transB", 1);
    kc_input(&k, 0, RP_DOUBLE, 2, (int64_t[]){2, 2}, da);
    kc_input(&k, 1, RP_DOUBLE, 2, (int64_t[]){2, 2}, db);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_close_d(k.out[0].data, (double[]){2, 1, 4, 3}, 4);
    kc_free(&k);
}
END_TEST

/* ---- Einsum ---- */

static void run_einsum_d(const char *eq, int n, const int *ranks, const int64_t dims[][RP_MAX_RANK],
                         const double *const *data, int out_rank, const int64_t *out_dims, const double *ref)
{
    kcase k;
    kc_init(&k, "Einsum", 12);
    kc_string(&k, "equation", eq);
    for (int i = 0; i < n; i++)
        kc_input(&k, i, RP_DOUBLE, ranks[i], dims[i], data[i]);
    ck_assert_msg(kc_run(&k) == RP_OK, "%s: %s", eq, k.err.msg);
    assert_shape(&k.out[0], out_rank, out_dims);
    assert_close_d(k.out[0].data, ref, k.out[0].count);
    kc_free(&k);
}

/* The two attention products, float32, against naive loops. */
START_TEST(einsum_attention)
{
    const int64_t B = 2, H = 3, I = 5, J = 4, D = 6;
    float *q = rand_f(B * H * I * D), *kk = rand_f(B * H * J * D), *att = rand_f(B * H * I * J),
          *v = rand_f(B * H * J * D);
    double *ref = malloc(sizeof(double) * (size_t)(B * H * I * (J > D ? J : D)));
    kcase k;

    kc_init(&k, "Einsum", 12);
    kc_string(&k, "equation", "bhid,bhjd->bhij");
    kc_input(&k, 0, RP_FLOAT, 4, (int64_t[]){B, H, I, D}, q);
    kc_input(&k, 1, RP_FLOAT, 4, (int64_t[]){B, H, J, D}, kk);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], 4, (int64_t[]){B, H, I, J});
    for (int64_t bh = 0; bh < B * H; bh++)
        for (int64_t i = 0; i < I; i++)
            for (int64_t j = 0; j < J; j++) {
                double s = 0;
                for (int64_t d = 0; d < D; d++)
                    s += (double)q[(bh * I + i) * D + d] * kk[(bh * J + j) * D + d];
                ref[(bh * I + i) * J + j] = s;
            }
    assert_close_f(k.out[0].data, ref, B * H * I * J);
    kc_free(&k);

    kc_init(&k, "Einsum", 12);
    kc_string(&k, "equation", "bhij,bhjd->bhid");
    kc_input(&k, 0, RP_FLOAT, 4, (int64_t[]){B, H, I, J}, att);
    kc_input(&k, 1, RP_FLOAT, 4, (int64_t[]){B, H, J, D}, v);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], 4, (int64_t[]){B, H, I, D});
    for (int64_t bh = 0; bh < B * H; bh++)
        for (int64_t i = 0; i < I; i++)
            for (int64_t d = 0; d < D; d++) {
                double s = 0;
                for (int64_t j = 0; j < J; j++)
                    s += (double)att[(bh * I + i) * J + j] * v[(bh * J + j) * D + d];
                ref[(bh * I + i) * D + d] = s;
            }
    assert_close_f(k.out[0].data, ref, B * H * I * D);
    kc_free(&k);

    /* Output batch axes not outermost, and a transposed result: "bhid,bhjd->hbji". */
    kc_init(&k, "Einsum", 12);
    kc_string(&k, "equation", "bhid,bhjd->hbji");
    kc_input(&k, 0, RP_FLOAT, 4, (int64_t[]){B, H, I, D}, q);
    kc_input(&k, 1, RP_FLOAT, 4, (int64_t[]){B, H, J, D}, kk);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], 4, (int64_t[]){H, B, J, I});
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < I; i++)
                for (int64_t j = 0; j < J; j++) {
                    double s = 0;
                    for (int64_t d = 0; d < D; d++)
                        s += (double)q[((b * H + h) * I + i) * D + d] * kk[((b * H + h) * J + j) * D + d];
                    ref[((h * B + b) * J + j) * I + i] = s;
                }
    assert_close_f(k.out[0].data, ref, B * H * I * J);
    kc_free(&k);

    free(q);
    free(kk);
    free(att);
    free(v);
    free(ref);
}
END_TEST

START_TEST(einsum_products)
{
    /* ij,jk->ik and the implicit form ij,jk; bij,bjk->bik with spaces. */
    double a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, 0, 1, 1, 1};
    double ab[4] = {4, 5, 10, 11};
    run_einsum_d("ij,jk->ik", 2, (int[]){2, 2}, (int64_t[][RP_MAX_RANK]){{2, 3}, {3, 2}},
                 (const double *[]){a, b}, 2, (int64_t[]){2, 2}, ab);
    run_einsum_d("ij,jk", 2, (int[]){2, 2}, (int64_t[][RP_MAX_RANK]){{2, 3}, {3, 2}},
                 (const double *[]){a, b}, 2, (int64_t[]){2, 2}, ab);
    run_einsum_d("ij,jk->ki", 2, (int[]){2, 2}, (int64_t[][RP_MAX_RANK]){{2, 3}, {3, 2}},
                 (const double *[]){a, b}, 2, (int64_t[]){2, 2}, (double[]){4, 10, 5, 11});
    /* Implicit output is ASCII ordered: "ba,ac" -> "bc"... and uppercase before lowercase. */
    run_einsum_d("Ba,aA", 2, (int[]){2, 2}, (int64_t[][RP_MAX_RANK]){{2, 3}, {3, 2}},
                 (const double *[]){a, b}, 2, (int64_t[]){2, 2}, (double[]){4, 10, 5, 11});
    double x[12], y[12], r[8];
    for (int i = 0; i < 12; i++)
        x[i] = i + 1, y[i] = (i % 5) - 2;
    for (int bb = 0; bb < 2; bb++)
        for (int i = 0; i < 2; i++)
            for (int kq = 0; kq < 2; kq++) {
                double s = 0;
                for (int j = 0; j < 3; j++)
                    s += x[bb * 6 + i * 3 + j] * y[bb * 6 + j * 2 + kq];
                r[bb * 4 + i * 2 + kq] = s;
            }
    run_einsum_d("bij, bjk -> bik", 2, (int[]){3, 3}, (int64_t[][RP_MAX_RANK]){{2, 2, 3}, {2, 3, 2}},
                 (const double *[]){x, y}, 3, (int64_t[]){2, 2, 2}, r);
    /* Outer product. */
    run_einsum_d("i,j->ij", 2, (int[]){1, 1}, (int64_t[][RP_MAX_RANK]){{2}, {3}},
                 (const double *[]){a, b}, 2, (int64_t[]){2, 3}, (double[]){1, 0, 0, 2, 0, 0});
    /* Three operands (strided loop): i,i,i->. */
    run_einsum_d("i,i,i", 3, (int[]){1, 1, 1}, (int64_t[][RP_MAX_RANK]){{3}, {3}, {3}},
                 (const double *[]){a, a, b}, 0, NULL, (double[]){1 + 0 + 0});
}
END_TEST

START_TEST(einsum_loops)
{
    double a[12];
    for (int i = 0; i < 12; i++)
        a[i] = i + 1;
    /* transpose */
    run_einsum_d("ij->ji", 1, (int[]){2}, (int64_t[][RP_MAX_RANK]){{2, 3}}, (const double *[]){a}, 2,
                 (int64_t[]){3, 2}, (double[]){1, 4, 2, 5, 3, 6});
    /* sum over j, and implicit "ij" stays as it is */
    run_einsum_d("ij->i", 1, (int[]){2}, (int64_t[][RP_MAX_RANK]){{2, 3}}, (const double *[]){a}, 1,
                 (int64_t[]){2}, (double[]){6, 15});
    run_einsum_d("ij->", 1, (int[]){2}, (int64_t[][RP_MAX_RANK]){{2, 3}}, (const double *[]){a}, 0, NULL,
                 (double[]){21});
    /* diagonal and trace */
    run_einsum_d("ii->i", 1, (int[]){2}, (int64_t[][RP_MAX_RANK]){{3, 3}}, (const double *[]){a}, 1,
                 (int64_t[]){3}, (double[]){1, 5, 9});
    run_einsum_d("ii", 1, (int[]){2}, (int64_t[][RP_MAX_RANK]){{3, 3}}, (const double *[]){a}, 0, NULL,
                 (double[]){15});
    /* inner product */
    run_einsum_d("i,i", 2, (int[]){1, 1}, (int64_t[][RP_MAX_RANK]){{3}, {3}}, (const double *[]){a, a + 3}, 0,
                 NULL, (double[]){1 * 4 + 2 * 5 + 3 * 6});
    /* batch diagonal with ellipsis, and ellipsis broadcasting */
    run_einsum_d("...ii ->...i", 1, (int[]){3}, (int64_t[][RP_MAX_RANK]){{3, 2, 2}}, (const double *[]){a}, 2,
                 (int64_t[]){3, 2}, (double[]){1, 4, 5, 8, 9, 12});
    run_einsum_d("...ij,...jk->...ik", 2, (int[]){3, 2}, (int64_t[][RP_MAX_RANK]){{2, 1, 2}, {2, 1}},
                 (const double *[]){a, a}, 3, (int64_t[]){2, 1, 1}, (double[]){1 * 1 + 2 * 2, 3 * 1 + 4 * 2});
    /* scalar */
    run_einsum_d("->", 1, (int[]){0}, (int64_t[][RP_MAX_RANK]){{0}}, (const double *[]){a + 6}, 0, NULL,
                 (double[]){7});
    /* summed in one operand only: ij,j->  */
    run_einsum_d("ij,j->", 2, (int[]){2, 1}, (int64_t[][RP_MAX_RANK]){{2, 3}, {3}}, (const double *[]){a, a},
                 0, NULL, (double[]){1 * 1 + 2 * 2 + 3 * 3 + 4 * 1 + 5 * 2 + 6 * 3});
}
END_TEST

START_TEST(einsum_errors)
{
    double a[4] = {0};
    kcase k;
    kc_init(&k, "Einsum", 12);
    kc_string(&k, "equation", "ij,jk->ik");
    kc_input(&k, 0, RP_DOUBLE, 2, (int64_t[]){2, 2}, a);
    ck_assert_int_eq(kc_run(&k), RP_ERR_VALUE); /* two terms, one input */
    kc_free(&k);

    kc_init(&k, "Einsum", 12);
    kc_string(&k, "equation", "ij->k");
    kc_input(&k, 0, RP_DOUBLE, 2, (int64_t[]){2, 2}, a);
    ck_assert_int_eq(kc_run(&k), RP_ERR_VALUE);
    kc_free(&k);

    kc_init(&k, "Einsum", 12);
    kc_string(&k, "equation", "ij,jk->ik");
    kc_input(&k, 0, RP_DOUBLE, 2, (int64_t[]){2, 2}, a);
    kc_input(&k, 1, RP_DOUBLE, 2, (int64_t[]){3, 2}, a);
    ck_assert_int_eq(kc_run(&k), RP_ERR_SHAPE);
    kc_free(&k);

    kc_init(&k, "Einsum", 12);
    kc_string(&k, "equation", "i.j->i");
    kc_input(&k, 0, RP_DOUBLE, 2, (int64_t[]){2, 2}, a);
    ck_assert_int_eq(kc_run(&k), RP_ERR_VALUE);
    kc_free(&k);

    int32_t ia[4] = {0};
    kc_init(&k, "Einsum", 12);
    kc_string(&k, "equation", "ij->ji");
    kc_input(&k, 0, RP_INT32, 2, (int64_t[]){2, 2}, ia);
    ck_assert_int_eq(kc_run(&k), RP_ERR_UNSUPPORTED);
    kc_free(&k);
}
END_TEST

/* ---- Conv ---- */

typedef struct conv_case {
    int64_t n, c, h, w, m, kh, kw;
    int64_t sh, sw, dh, dw, pt, pl, pb, pr, group;
    int bias;
    int one_d;
    const char *auto_pad;
} conv_case;

static void check_conv(const conv_case *cc)
{
    int64_t cg = cc->c / cc->group, mg = cc->m / cc->group;
    int64_t oh = (cc->h + cc->pt + cc->pb - cc->dh * (cc->kh - 1) - 1) / cc->sh + 1;
    int64_t ow = (cc->w + cc->pl + cc->pr - cc->dw * (cc->kw - 1) - 1) / cc->sw + 1;
    float *x = rand_f(cc->n * cc->c * cc->h * cc->w), *w = rand_f(cc->m * cg * cc->kh * cc->kw), *b = rand_f(cc->m);
    int64_t ny = cc->n * cc->m * oh * ow;
    double *ref = malloc(sizeof(double) * (size_t)ny);
    for (int64_t n = 0; n < cc->n; n++)
        for (int64_t m = 0; m < cc->m; m++)
            for (int64_t i = 0; i < oh; i++)
                for (int64_t j = 0; j < ow; j++) {
                    double s = cc->bias ? b[m] : 0;
                    int64_t g = m / mg;
                    for (int64_t c = 0; c < cg; c++)
                        for (int64_t ki = 0; ki < cc->kh; ki++)
                            for (int64_t kj = 0; kj < cc->kw; kj++) {
                                int64_t ih = i * cc->sh - cc->pt + ki * cc->dh, iw = j * cc->sw - cc->pl + kj * cc->dw;
                                if (ih < 0 || ih >= cc->h || iw < 0 || iw >= cc->w)
                                    continue;
                                s += (double)x[((n * cc->c + g * cg + c) * cc->h + ih) * cc->w + iw] *
                                     w[((m * cg + c) * cc->kh + ki) * cc->kw + kj];
                            }
                    ref[((n * cc->m + m) * oh + i) * ow + j] = s;
                }
    kcase k;
    kc_init(&k, "Conv", 11);
    if (cc->one_d) {
        kc_input(&k, 0, RP_FLOAT, 3, (int64_t[]){cc->n, cc->c, cc->w}, x);
        kc_input(&k, 1, RP_FLOAT, 3, (int64_t[]){cc->m, cg, cc->kw}, w);
        kc_ints(&k, "strides", (int64_t[]){cc->sw}, 1);
        kc_ints(&k, "dilations", (int64_t[]){cc->dw}, 1);
        if (!cc->auto_pad)
            kc_ints(&k, "pads", (int64_t[]){cc->pl, cc->pr}, 2);
    } else {
        kc_input(&k, 0, RP_FLOAT, 4, (int64_t[]){cc->n, cc->c, cc->h, cc->w}, x);
        kc_input(&k, 1, RP_FLOAT, 4, (int64_t[]){cc->m, cg, cc->kh, cc->kw}, w);
        kc_ints(&k, "kernel_shape", (int64_t[]){cc->kh, cc->kw}, 2);
        kc_ints(&k, "strides", (int64_t[]){cc->sh, cc->sw}, 2);
        kc_ints(&k, "dilations", (int64_t[]){cc->dh, cc->dw}, 2);
        if (!cc->auto_pad)
            kc_ints(&k, "pads", (int64_t[]){cc->pt, cc->pl, cc->pb, cc->pr}, 4);
    }
    if (cc->auto_pad)
        kc_string(&k, "auto_pad", cc->auto_pad);
    if (cc->group != 1)
        kc_int(&k, "group", cc->group);
    if (cc->bias)
        kc_input(&k, 2, RP_FLOAT, 1, (int64_t[]){cc->m}, b);
    ck_assert_msg(kc_run(&k) == RP_OK, "%s", k.err.msg);
    if (cc->one_d)
        assert_shape(&k.out[0], 3, (int64_t[]){cc->n, cc->m, ow});
    else
        assert_shape(&k.out[0], 4, (int64_t[]){cc->n, cc->m, oh, ow});
    assert_close_f(k.out[0].data, ref, ny);
    kc_free(&k);
    free(x);
    free(w);
    free(b);
    free(ref);
}

START_TEST(conv_general)
{
    /* n c h w m kh kw sh sw dh dw pt pl pb pr group bias 1d auto_pad */
    conv_case cases[] = {
        {1, 1, 5, 5, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, NULL},
        {2, 3, 7, 6, 4, 3, 2, 2, 1, 1, 1, 1, 0, 2, 1, 1, 1, 0, NULL},   /* asymmetric pads, strides */
        {1, 2, 9, 8, 3, 3, 3, 1, 2, 2, 2, 2, 1, 0, 3, 1, 1, 0, NULL},   /* dilation */
        {1, 4, 6, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, 1, 0, NULL},   /* groups */
        {1, 3, 5, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3, 1, 0, NULL},   /* depthwise */
        {2, 3, 5, 4, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, NULL},   /* 1x1 direct */
        {1, 3, 5, 4, 5, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0, 1, 1, 0, NULL},   /* 1x1 strided */
        {1, 2, 6, 7, 3, 2, 3, 2, 3, 1, 1, 0, 0, 0, 0, 1, 1, 0, NULL},   /* non-overlapping, no pad */
        {1, 2, 7, 7, 3, 3, 2, 1, 2, 2, 1, 0, 0, 0, 0, 1, 0, 0, NULL},   /* dh only, rows path */
        {2, 3, 1, 9, 4, 1, 3, 1, 2, 1, 2, 0, 1, 0, 2, 1, 1, 1, NULL},   /* 1-D */
        {1, 1, 3, 3, 1, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2, 1, 0, 0, NULL},   /* kernel wider than input */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_conv(&cases[i]);
}
END_TEST

START_TEST(conv_auto_pad)
{
    /* 5x5, k3, stride 2: out 3, total pad 2 per axis -> 1/1. 6x6: total 1:
     * SAME_UPPER puts it at the end, SAME_LOWER at the start. */
    conv_case cases[] = {
        {1, 1, 5, 5, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 0, 0, "SAME_LOWER"},
        {1, 2, 6, 6, 2, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, 1, 1, 0, "SAME_UPPER"},
        {1, 2, 6, 6, 2, 3, 3, 2, 2, 1, 1, 1, 1, 0, 0, 1, 1, 0, "SAME_LOWER"},
        {1, 2, 6, 6, 2, 3, 3, 2, 2, 1, 1, 0, 0, 0, 0, 1, 1, 0, "VALID"},
        {1, 2, 1, 6, 2, 1, 4, 1, 1, 1, 1, 0, 1, 0, 2, 1, 1, 1, "SAME_UPPER"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_conv(&cases[i]);
}
END_TEST

START_TEST(conv_patch_embedding)
{
    /* ViT patch embedding: kernel = stride = 4 on a 16x16 RGB image, bias. */
    conv_case pe = {2, 3, 16, 16, 8, 4, 4, 4, 4, 1, 1, 0, 0, 0, 0, 1, 1, 0, NULL};
    check_conv(&pe);
    /* Hand-computed: 1 channel 4x4, kernel = stride = 2, all-ones filter sums each patch. */
    float x[16], w[4] = {1, 1, 1, 1}, b[1] = {0.5f};
    for (int i = 0; i < 16; i++)
        x[i] = (float)i;
    kcase k;
    kc_init(&k, "Conv", 1);
    kc_input(&k, 0, RP_FLOAT, 4, (int64_t[]){1, 1, 4, 4}, x);
    kc_input(&k, 1, RP_FLOAT, 4, (int64_t[]){1, 1, 2, 2}, w);
    kc_input(&k, 2, RP_FLOAT, 1, (int64_t[]){1}, b);
    kc_ints(&k, "strides", (int64_t[]){2, 2}, 2);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], 4, (int64_t[]){1, 1, 2, 2});
    assert_close_f(k.out[0].data, (double[]){0 + 1 + 4 + 5 + 0.5, 2 + 3 + 6 + 7 + 0.5, 8 + 9 + 12 + 13 + 0.5,
                                             10 + 11 + 14 + 15 + 0.5},
                   4);
    kc_free(&k);
}
END_TEST

/* 3-D: [1,2,5,6,4] * [3,2,2,3,2], strides (2,1,2), dilations (1,2,1),
 * pads (1,0,1, 0,1,0), bias; and a 3-D patch embedding (kernel = stride = 2). */
static void check_conv3(int patch)
{
    const int64_t C = 2, D = 5, H = 6, Wd = 4, M = 3, KD = 2, KH = patch ? 2 : 3, KW = 2;
    const int64_t s[3] = {2, patch ? 2 : 1, 2}, dl[3] = {1, patch ? 1 : 2, 1};
    const int64_t pb[3] = {patch ? 0 : 1, 0, patch ? 0 : 1}, pe[3] = {0, patch ? 0 : 1, 0};
    int64_t in[3] = {D, H, Wd}, k3[3] = {KD, KH, KW}, o[3];
    for (int i = 0; i < 3; i++)
        o[i] = (in[i] + pb[i] + pe[i] - dl[i] * (k3[i] - 1) - 1) / s[i] + 1;
    float *x = rand_f(C * D * H * Wd), *w = rand_f(M * C * KD * KH * KW), *b = rand_f(M);
    int64_t ny = M * o[0] * o[1] * o[2];
    double *ref = malloc(sizeof(double) * (size_t)ny);
    for (int64_t m = 0; m < M; m++)
        for (int64_t z = 0; z < o[0]; z++)
            for (int64_t i = 0; i < o[1]; i++)
                for (int64_t j = 0; j < o[2]; j++) {
                    double acc = b[m];
                    for (int64_t c = 0; c < C; c++)
                        for (int64_t a = 0; a < KD; a++)
                            for (int64_t u = 0; u < KH; u++)
                                for (int64_t v = 0; v < KW; v++) {
                                    int64_t iz = z * s[0] - pb[0] + a * dl[0], ih = i * s[1] - pb[1] + u * dl[1],
                                            iw = j * s[2] - pb[2] + v * dl[2];
                                    if (iz < 0 || iz >= D || ih < 0 || ih >= H || iw < 0 || iw >= Wd)
                                        continue;
                                    acc += (double)x[((c * D + iz) * H + ih) * Wd + iw] *
                                           w[(((m * C + c) * KD + a) * KH + u) * KW + v];
                                }
                    ref[((m * o[0] + z) * o[1] + i) * o[2] + j] = acc;
                }
    kcase k;
    kc_init(&k, "Conv", 11);
    kc_input(&k, 0, RP_FLOAT, 5, (int64_t[]){1, C, D, H, Wd}, x);
    kc_input(&k, 1, RP_FLOAT, 5, (int64_t[]){M, C, KD, KH, KW}, w);
    kc_input(&k, 2, RP_FLOAT, 1, (int64_t[]){M}, b);
    kc_ints(&k, "strides", s, 3);
    kc_ints(&k, "dilations", dl, 3);
    kc_ints(&k, "pads", (int64_t[]){pb[0], pb[1], pb[2], pe[0], pe[1], pe[2]}, 6);
    ck_assert_msg(kc_run(&k) == RP_OK, "%s", k.err.msg);
    assert_shape(&k.out[0], 5, (int64_t[]){1, M, o[0], o[1], o[2]});
    assert_close_f(k.out[0].data, ref, ny);
    kc_free(&k);
    free(x);
    free(w);
    free(b);
    free(ref);
}

START_TEST(conv_3d)
{
    check_conv3(0);
    check_conv3(1);
}
END_TEST

START_TEST(conv_errors)
{
    float x[64] = {0}, w[64] = {0};
    kcase k;
    kc_init(&k, "Conv", 11);
    kc_input(&k, 0, RP_FLOAT, 6, (int64_t[]){1, 1, 2, 2, 2, 2}, x);
    kc_input(&k, 1, RP_FLOAT, 6, (int64_t[]){1, 1, 1, 1, 1, 1}, w);
    ck_assert_int_eq(kc_run(&k), RP_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(k.err.msg, "4-D"));
    kc_free(&k);

    kc_init(&k, "Conv", 11);
    kc_input(&k, 0, RP_FLOAT, 4, (int64_t[]){1, 3, 4, 4}, x);
    kc_input(&k, 1, RP_FLOAT, 4, (int64_t[]){2, 2, 1, 1}, w);
    ck_assert_int_eq(kc_run(&k), RP_ERR_SHAPE); /* channels 3 vs 2 */
    kc_free(&k);

    kc_init(&k, "Conv", 11);
    kc_string(&k, "auto_pad", "SAME");
    kc_input(&k, 0, RP_FLOAT, 4, (int64_t[]){1, 1, 4, 4}, x);
    kc_input(&k, 1, RP_FLOAT, 4, (int64_t[]){1, 1, 1, 1}, w);
    ck_assert_int_eq(kc_run(&k), RP_ERR_VALUE);
    kc_free(&k);

    kc_init(&k, "Conv", 11);
    kc_input(&k, 0, RP_FLOAT, 4, (int64_t[]){1, 1, 2, 2}, x);
    kc_input(&k, 1, RP_FLOAT, 4, (int64_t[]){1, 1, 3, 3}, w);
    ck_assert_int_eq(kc_run(&k), RP_ERR_SHAPE); /* kernel larger than input */
    kc_free(&k);
}
END_TEST

/* ---- gradients ---- */

/* Finite differences of the case's node for the inputs in mask (the case's
 * attributes and inputs; gradcheck prepares and runs its own copy). The ops
 * are linear in each operand, so central differences are exact up to float32
 * rounding of the outputs. */
static void grad_ok(kcase *k, unsigned mask, const char *what)
{
    gradcheck_spec s = {.op = k->node.op_type, .opset = k->ctx.opset, .attrs = k->attr, .n_attrs = k->n_attr,
                        .inputs = k->inp, .n_in = k->ctx.n_in, .n_out = 1, .check_mask = mask,
                        .step = 1e-2, .tol = 1e-3};
    char why[512] = "";
    ck_assert_msg(gradcheck_run(&s, why, sizeof why), "%s: %s", what, why);
}

static void grad_matmul(int ra, const int64_t *ad, int rb, const int64_t *bd, unsigned mask, const char *what)
{
    kcase k;
    kc_init(&k, "MatMul", 13);
    kc_rand(&k, 0, ra, ad);
    kc_rand(&k, 1, rb, bd);
    grad_ok(&k, mask, what);
    kc_free(&k);
}

START_TEST(grad_matmul_shapes)
{
    grad_matmul(2, (int64_t[]){3, 4}, 2, (int64_t[]){4, 5}, 3, "2-D");
    grad_matmul(4, (int64_t[]){2, 1, 3, 4}, 3, (int64_t[]){5, 4, 2}, 3, "[2,1,3,4] x [5,4,2]");
    grad_matmul(3, (int64_t[]){2, 3, 4}, 2, (int64_t[]){4, 5}, 3, "shared B (tall GEMM)");
    grad_matmul(2, (int64_t[]){3, 4}, 3, (int64_t[]){2, 4, 5}, 3, "shared A");
    grad_matmul(3, (int64_t[]){2, 3, 4}, 3, (int64_t[]){2, 4, 5}, 3, "batched both");
    grad_matmul(1, (int64_t[]){4}, 2, (int64_t[]){4, 3}, 3, "1-D A");
    grad_matmul(3, (int64_t[]){2, 3, 4}, 1, (int64_t[]){4}, 3, "1-D B");
    grad_matmul(1, (int64_t[]){4}, 1, (int64_t[]){4}, 3, "1-D both");
    grad_matmul(1, (int64_t[]){4}, 3, (int64_t[]){2, 4, 3}, 3, "1-D A, batched B");
    grad_matmul(2, (int64_t[]){3, 4}, 2, (int64_t[]){4, 1}, 3, "N = 1");
}
END_TEST

/* The ViT projection: tokens [1,65,96] times a constant weight [96,288];
 * only dX is wanted (gin[1] NULL must be skipped). */
START_TEST(grad_matmul_vit)
{
    grad_matmul(3, (int64_t[]){1, 65, 96}, 2, (int64_t[]){96, 288}, 1, "ViT projection");
}
END_TEST

START_TEST(grad_gemm)
{
    const int64_t M = 3, K = 4, N = 5;
    /* C: absent, scalar, [1], [N], [1,N], [M,1], [M,N] */
    const int c_rank[] = {-1, 0, 1, 1, 2, 2, 2};
    const int64_t c_dims[][2] = {{0, 0}, {0, 0}, {1, 0}, {N, 0}, {1, N}, {M, 1}, {M, N}};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int ci = 0; ci < 7; ci++)
                for (int b0 = 0; b0 < 2; b0++) {
                    kcase k;
                    char what[96];
                    kc_init(&k, "Gemm", 13);
                    kc_int(&k, "transA", ta);
                    kc_int(&k, "transB", tb);
                    kc_float(&k, "alpha", 0.75f);
                    kc_float(&k, "beta", b0 ? 0.0f : -1.25f);
                    kc_rand(&k, 0, 2, ta ? (int64_t[]){K, M} : (int64_t[]){M, K});
                    kc_rand(&k, 1, 2, tb ? (int64_t[]){N, K} : (int64_t[]){K, N});
                    if (c_rank[ci] >= 0)
                        kc_rand(&k, 2, c_rank[ci], c_dims[ci]);
                    snprintf(what, sizeof what, "transA=%d transB=%d C#%d beta=%s", ta, tb, ci, b0 ? "0" : "-1.25");
                    grad_ok(&k, 7, what);
                    kc_free(&k);
                }
}
END_TEST

static void grad_einsum(const char *eq, int n, const int *ranks, const int64_t dims[][RP_MAX_RANK])
{
    kcase k;
    kc_init(&k, "Einsum", 12);
    kc_string(&k, "equation", eq);
    for (int i = 0; i < n; i++)
        kc_rand(&k, i, ranks[i], dims[i]);
    grad_ok(&k, (1u << n) - 1, eq);
    kc_free(&k);
}

START_TEST(grad_einsum_gemm_path)
{
    grad_einsum("bhid,bhjd->bhij", 2, (int[]){4, 4}, (int64_t[][RP_MAX_RANK]){{2, 3, 5, 4}, {2, 3, 6, 4}});
    grad_einsum("bhij,bhjd->bhid", 2, (int[]){4, 4}, (int64_t[][RP_MAX_RANK]){{2, 3, 5, 6}, {2, 3, 6, 4}});
    grad_einsum("ij,jk->ik", 2, (int[]){2, 2}, (int64_t[][RP_MAX_RANK]){{3, 4}, {4, 5}});
    grad_einsum("ik,kj->ji", 2, (int[]){2, 2}, (int64_t[][RP_MAX_RANK]){{3, 4}, {4, 5}});
    grad_einsum("ji,jk->ik", 2, (int[]){2, 2}, (int64_t[][RP_MAX_RANK]){{4, 3}, {4, 5}});
    grad_einsum("bij,bj->bi", 2, (int[]){3, 2}, (int64_t[][RP_MAX_RANK]){{2, 3, 4}, {2, 4}});
    grad_einsum("i,j->ij", 2, (int[]){1, 1}, (int64_t[][RP_MAX_RANK]){{3}, {4}});
    grad_einsum("bij,jk->bik", 2, (int[]){3, 2}, (int64_t[][RP_MAX_RANK]){{2, 3, 4}, {4, 5}});
    /* A batch axis broadcast from one operand: its gradient sums over it. */
    grad_einsum("...ij,...jk->...ik", 2, (int[]){3, 3}, (int64_t[][RP_MAX_RANK]){{1, 3, 4}, {5, 4, 2}});
    grad_einsum("...ij,...jk->...ik", 2, (int[]){3, 3}, (int64_t[][RP_MAX_RANK]){{5, 3, 4}, {1, 4, 2}});
    grad_einsum("bhij,bhjd->bhid", 2, (int[]){4, 4}, (int64_t[][RP_MAX_RANK]){{2, 1, 5, 6}, {2, 3, 6, 4}});
}
END_TEST

START_TEST(grad_einsum_loop_path)
{
    grad_einsum("ii,ij->j", 2, (int[]){2, 2}, (int64_t[][RP_MAX_RANK]){{3, 3}, {3, 4}});
    grad_einsum("ij,jk,kl->il", 3, (int[]){2, 2, 2}, (int64_t[][RP_MAX_RANK]){{2, 3}, {3, 4}, {4, 2}});
    grad_einsum("ijk->ki", 1, (int[]){3}, (int64_t[][RP_MAX_RANK]){{2, 3, 4}});
    grad_einsum("bij,bjk->b", 2, (int[]){3, 3}, (int64_t[][RP_MAX_RANK]){{2, 3, 4}, {2, 4, 5}});
    grad_einsum("iij->ij", 1, (int[]){3}, (int64_t[][RP_MAX_RANK]){{3, 3, 2}});
    grad_einsum("ij,kj->", 2, (int[]){2, 2}, (int64_t[][RP_MAX_RANK]){{1, 3}, {4, 3}});
    /* Two operands whose output interleaves their free axes: no single GEMM. */
    grad_einsum("...ij,...jk->...ik", 2, (int[]){4, 3}, (int64_t[][RP_MAX_RANK]){{2, 1, 3, 4}, {5, 4, 2}});
    grad_einsum("bhwc,hkc->bhwk", 2, (int[]){4, 3}, (int64_t[][RP_MAX_RANK]){{2, 3, 4, 5}, {3, 6, 5}});
}
END_TEST

typedef struct conv_grad_case {
    const char *what;
    int rank;
    int64_t x[5], w[5];
    int group, bias;
    int nsp;
    int64_t strides[3], dil[3], pads[6];
    const char *auto_pad;
} conv_grad_case;

static void grad_conv(const conv_grad_case *g)
{
    kcase k;
    kc_init(&k, "Conv", 11);
    kc_rand(&k, 0, g->rank, g->x);
    kc_rand(&k, 1, g->rank, g->w);
    if (g->bias)
        kc_rand(&k, 2, 1, (int64_t[]){g->w[0]});
    if (g->group > 1)
        kc_int(&k, "group", g->group);
    if (g->strides[0])
        kc_ints(&k, "strides", g->strides, g->nsp);
    if (g->dil[0])
        kc_ints(&k, "dilations", g->dil, g->nsp);
    if (g->auto_pad)
        kc_string(&k, "auto_pad", g->auto_pad);
    else
        kc_ints(&k, "pads", g->pads, 2 * g->nsp);
    grad_ok(&k, g->bias ? 7 : 3, g->what);
    kc_free(&k);
}

START_TEST(grad_conv_cases)
{
    const conv_grad_case cases[] = {
        {"2-D stride/pad/dilation, 2 groups", 4, {2, 4, 7, 6}, {4, 2, 3, 2}, 2, 1, 2, {2, 1}, {1, 2}, {1, 0, 2, 1}, NULL},
        {"2-D stride 2, pad 1", 4, {1, 3, 6, 5}, {2, 3, 3, 3}, 1, 0, 2, {2, 2}, {1, 1}, {1, 1, 1, 1}, NULL},
        {"2-D SAME_UPPER stride 2", 4, {1, 2, 5, 6}, {3, 2, 3, 3}, 1, 1, 2, {2, 2}, {0}, {0}, "SAME_UPPER"},
        {"1-D", 3, {2, 2, 9}, {3, 2, 3}, 1, 1, 1, {2}, {2}, {1, 1}, NULL},
        {"1x1 direct", 4, {2, 3, 4, 5}, {4, 3, 1, 1}, 1, 1, 2, {0}, {0}, {0, 0, 0, 0}, NULL},
        {"1x1 direct, 3 groups", 4, {1, 6, 3, 2}, {3, 2, 1, 1}, 3, 0, 2, {0}, {0}, {0, 0, 0, 0}, NULL},
        {"patch embedding k = s = 4", 4, {1, 3, 8, 8}, {5, 3, 4, 4}, 1, 1, 2, {4, 4}, {0}, {0, 0, 0, 0}, NULL},
        {"patch path, overlapping rows", 4, {2, 2, 6, 6}, {3, 2, 3, 2}, 1, 1, 2, {1, 2}, {1, 1}, {0, 0, 0, 0}, NULL},
        {"patch path, dilated rows", 4, {1, 2, 6, 6}, {3, 2, 3, 2}, 1, 1, 2, {1, 2}, {2, 1}, {0, 0, 0, 0}, NULL},
        {"3-D", 5, {1, 2, 4, 5, 4}, {3, 2, 2, 3, 2}, 1, 1, 3, {2, 1, 2}, {1, 2, 1}, {1, 0, 1, 0, 1, 0}, NULL},
        {"3-D patch", 5, {1, 2, 4, 4, 4}, {3, 2, 2, 2, 2}, 1, 1, 3, {2, 2, 2}, {0}, {0, 0, 0, 0, 0, 0}, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        grad_conv(&cases[i]);
}
END_TEST

/* Prepared case: a zero-filled float32 tensor per input (gradient buffers)
 * and a random output gradient. */
typedef struct gbufs {
    rp_tensor gy, g[MAX_IO];
    rp_tensor *gyp[1], *gp[MAX_IO];
} gbufs;

static void gb_init(gbufs *b, kcase *k)
{
    memset(b, 0, sizeof *b);
    const rp_tensor *y = &k->out[0];
    b->gy = gradcheck_random(y->rank, y->dims, -1, 1, 99);
    b->gyp[0] = &b->gy;
    for (int i = 0; i < k->ctx.n_in; i++) {
        ck_assert_int_eq(rp_tensor_alloc(&b->g[i], RP_FLOAT, k->in[i].rank, k->in[i].dims, NULL), RP_OK);
        b->gp[i] = &b->g[i];
    }
}

static void gb_free(gbufs *b, int n)
{
    rp_tensor_release(&b->gy);
    for (int i = 0; i < n; i++)
        rp_tensor_release(&b->g[i]);
}

static rp_status kc_backward(kcase *k, gbufs *b)
{
    return rp_op_lookup(k->node.op_type, k->ctx.opset)->backward(&k->ctx, (rp_tensor *const *)b->gyp,
                                                                 (rp_tensor *const *)b->gp);
}

/* backward adds: from zero once gives d; from v, twice gives v + 2d. */
static void check_adds(kcase *k, const char *what)
{
    ck_assert_msg(kc_run(k) == RP_OK, "%s: %s", what, k->err.msg);
    gbufs once, twice;
    gb_init(&once, k);
    gb_init(&twice, k);
    ck_assert_int_eq(kc_backward(k, &once), RP_OK);
    for (int i = 0; i < k->ctx.n_in; i++)
        for (int64_t e = 0; e < twice.g[i].count; e++)
            ((float *)twice.g[i].data)[e] = 0.5f + (float)(e % 7);
    ck_assert_int_eq(kc_backward(k, &twice), RP_OK);
    ck_assert_int_eq(kc_backward(k, &twice), RP_OK);
    for (int i = 0; i < k->ctx.n_in; i++) {
        const float *d = once.g[i].data, *t = twice.g[i].data;
        double norm = 0;
        for (int64_t e = 0; e < once.g[i].count; e++)
            norm = fmax(norm, fabs(d[e]));
        ck_assert_msg(norm > 0, "%s: input %d got no gradient", what, i);
        for (int64_t e = 0; e < once.g[i].count; e++) {
            double want = 0.5 + (double)(e % 7) + 2.0 * d[e];
            ck_assert_msg(fabs(t[e] - want) <= 1e-5 * (1 + fabs(want)), "%s: input %d [%lld]: %.9g, want %.9g",
                          what, i, (long long)e, t[e], want);
        }
    }
    gb_free(&once, k->ctx.n_in);
    gb_free(&twice, k->ctx.n_in);
}

START_TEST(grad_backward_adds)
{
    kcase k;
    kc_init(&k, "MatMul", 13);
    kc_rand(&k, 0, 4, (int64_t[]){2, 1, 3, 4});
    kc_rand(&k, 1, 3, (int64_t[]){5, 4, 2});
    check_adds(&k, "MatMul");
    kc_free(&k);

    kc_init(&k, "Gemm", 13);
    kc_int(&k, "transB", 1);
    kc_float(&k, "beta", 0.5f);
    kc_rand(&k, 0, 2, (int64_t[]){3, 4});
    kc_rand(&k, 1, 2, (int64_t[]){5, 4});
    kc_rand(&k, 2, 1, (int64_t[]){5});
    check_adds(&k, "Gemm");
    kc_free(&k);

    kc_init(&k, "Einsum", 12);
    kc_string(&k, "equation", "bhid,bhjd->bhij");
    kc_rand(&k, 0, 4, (int64_t[]){1, 2, 5, 3});
    kc_rand(&k, 1, 4, (int64_t[]){1, 2, 4, 3});
    check_adds(&k, "Einsum (GEMM)");
    kc_free(&k);

    kc_init(&k, "Einsum", 12);
    kc_string(&k, "equation", "ij,jk,kl->il");
    kc_rand(&k, 0, 2, (int64_t[]){2, 3});
    kc_rand(&k, 1, 2, (int64_t[]){3, 4});
    kc_rand(&k, 2, 2, (int64_t[]){4, 2});
    check_adds(&k, "Einsum (loop)");
    kc_free(&k);

    const int64_t pads0[4] = {0, 0, 0, 0}, pads1[4] = {1, 0, 1, 2};
    for (int path = 0; path < 3; path++) { /* direct, patch, cols */
        kc_init(&k, "Conv", 11);
        kc_rand(&k, 0, 4, (int64_t[]){2, 3, 8, 8});
        kc_rand(&k, 1, 4, path == 0 ? (int64_t[]){4, 3, 1, 1} : (int64_t[]){4, 3, 4, 4});
        kc_rand(&k, 2, 1, (int64_t[]){4});
        if (path == 1)
            kc_ints(&k, "strides", (int64_t[]){4, 4}, 2);
        kc_ints(&k, "pads", path == 2 ? pads1 : pads0, 4);
        check_adds(&k, path == 0 ? "Conv direct" : path == 1 ? "Conv patch" : "Conv cols");
        kc_free(&k);
    }
}
END_TEST

/* Prepared with one weight, then run with another tensor (other data, same
 * shape) in ctx->in[wi]: forward and backward must match a case prepared
 * with the substitute. */
static void check_substitute(kcase *k, kcase *ref, int wi, const char *what)
{
    ck_assert_msg(kc_run(k) == RP_OK, "%s: %s", what, k->err.msg);
    ck_assert_msg(kc_run(ref) == RP_OK, "%s: %s", what, ref->err.msg);
    rp_tensor *keep = k->inp[wi];
    k->inp[wi] = &ref->in[wi];
    ck_assert_ptr_ne(keep->data, ref->in[wi].data);
    ck_assert_int_eq(rp_op_lookup(k->node.op_type, k->ctx.opset)->forward(&k->ctx), RP_OK);
    const float *y = k->out[0].data, *yr = ref->out[0].data;
    for (int64_t e = 0; e < k->out[0].count; e++)
        ck_assert_msg(y[e] == yr[e], "%s: forward [%lld] %.9g, want %.9g", what, (long long)e, y[e], yr[e]);
    gbufs g, gr;
    gb_init(&g, k);
    gb_init(&gr, ref);
    ck_assert_int_eq(kc_backward(k, &g), RP_OK);
    ck_assert_int_eq(kc_backward(ref, &gr), RP_OK);
    for (int i = 0; i < k->ctx.n_in; i++)
        for (int64_t e = 0; e < g.g[i].count; e++)
            ck_assert_msg(((float *)g.g[i].data)[e] == ((float *)gr.g[i].data)[e],
                          "%s: gradient of input %d [%lld] differs", what, i, (long long)e);
    k->inp[wi] = keep;
    gb_free(&g, k->ctx.n_in);
    gb_free(&gr, ref->ctx.n_in);
}

START_TEST(grad_substituted_weight)
{
    kcase k, r;
    for (int pass = 0; pass < 2; pass++) { /* the same inputs, then the substitute's data in r */
        kcase *c = pass ? &r : &k;
        kc_init(c, "MatMul", 13);
        kc_rand(c, 0, 3, (int64_t[]){1, 5, 4});
        kc_rand(c, 1, 2, (int64_t[]){4, 6});
    }
    memcpy(r.owned[0], k.owned[0], sizeof(float) * 20);
    check_substitute(&k, &r, 1, "MatMul");
    kc_free(&k);
    kc_free(&r);

    for (int pass = 0; pass < 2; pass++) {
        kcase *c = pass ? &r : &k;
        kc_init(c, "Gemm", 13);
        kc_int(c, "transB", 1);
        kc_rand(c, 0, 2, (int64_t[]){3, 4});
        kc_rand(c, 1, 2, (int64_t[]){5, 4});
        kc_rand(c, 2, 1, (int64_t[]){5});
    }
    memcpy(r.owned[0], k.owned[0], sizeof(float) * 12);
    memcpy(r.owned[2], k.owned[2], sizeof(float) * 5);
    check_substitute(&k, &r, 1, "Gemm");
    kc_free(&k);
    kc_free(&r);

    for (int pass = 0; pass < 2; pass++) {
        kcase *c = pass ? &r : &k;
        kc_init(c, "Einsum", 12);
        kc_string(c, "equation", "bij,jk->bik");
        kc_rand(c, 0, 3, (int64_t[]){2, 3, 4});
        kc_rand(c, 1, 2, (int64_t[]){4, 5});
    }
    memcpy(r.owned[0], k.owned[0], sizeof(float) * 24);
    check_substitute(&k, &r, 1, "Einsum");
    kc_free(&k);
    kc_free(&r);

    for (int path = 0; path < 3; path++) {
        for (int pass = 0; pass < 2; pass++) {
            kcase *c = pass ? &r : &k;
            kc_init(c, "Conv", 11);
            kc_rand(c, 0, 4, (int64_t[]){1, 3, 8, 8});
            kc_rand(c, 1, 4, path == 0 ? (int64_t[]){4, 3, 1, 1} : (int64_t[]){4, 3, 4, 4});
            kc_rand(c, 2, 1, (int64_t[]){4});
            if (path == 1)
                kc_ints(c, "strides", (int64_t[]){4, 4}, 2);
            if (path == 2)
                kc_ints(c, "pads", (int64_t[]){1, 1, 1, 1}, 4);
        }
        memcpy(r.owned[0], k.owned[0], sizeof(float) * 3 * 8 * 8);
        memcpy(r.owned[2], k.owned[2], sizeof(float) * 4);
        check_substitute(&k, &r, 1, "Conv");
        kc_free(&k);
        kc_free(&r);
    }
}
END_TEST

START_TEST(grad_errors)
{
    /* float64 has a forward but no gradient. */
    double a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, 0, 1, 1, 1};
    kcase k;
    kc_init(&k, "MatMul", 13);
    kc_input(&k, 0, RP_DOUBLE, 2, (int64_t[]){2, 3}, a);
    kc_input(&k, 1, RP_DOUBLE, 2, (int64_t[]){3, 2}, b);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    gbufs g;
    gb_init(&g, &k);
    ck_assert_int_eq(kc_backward(&k, &g), RP_ERR_DTYPE);
    ck_assert_ptr_nonnull(strstr(k.err.msg, "float32"));
    /* NULL output gradient: nothing to do, nothing touched. */
    g.gyp[0] = NULL;
    ck_assert_int_eq(kc_backward(&k, &g), RP_OK);
    gb_free(&g, 2);
    kc_free(&k);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("matmul");
    TCase *t = tcase_create("core");
    tcase_add_test(t, matmul_batched_broadcast);
    tcase_add_test(t, matmul_vit_projection);
    tcase_add_test(t, matmul_1d);
    tcase_add_test(t, matmul_empty_k);
    tcase_add_test(t, matmul_double_and_errors);
    tcase_add_test(t, gemm_transposes_and_bias);
    tcase_add_test(t, gemm_rules);
    tcase_add_test(t, einsum_attention);
    tcase_add_test(t, einsum_products);
    tcase_add_test(t, einsum_loops);
    tcase_add_test(t, einsum_errors);
    tcase_add_test(t, conv_general);
    tcase_add_test(t, conv_auto_pad);
    tcase_add_test(t, conv_patch_embedding);
    tcase_add_test(t, conv_3d);
    tcase_add_test(t, conv_errors);
    suite_add_tcase(s, t);
    TCase *g = tcase_create("gradient");
    tcase_set_timeout(g, 600);
    tcase_add_test(g, grad_matmul_shapes);
    tcase_add_test(g, grad_matmul_vit);
    tcase_add_test(g, grad_gemm);
    tcase_add_test(g, grad_einsum_gemm_path);
    tcase_add_test(g, grad_einsum_loop_path);
    tcase_add_test(g, grad_conv_cases);
    tcase_add_test(g, grad_backward_adds);
    tcase_add_test(g, grad_substituted_weight);
    tcase_add_test(g, grad_errors);
    suite_add_tcase(s, g);
    return s;
}

int main(void)
{
    SRunner *r = srunner_create(suite());
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
