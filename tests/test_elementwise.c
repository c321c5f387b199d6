/* Elementwise kernels (src/ops/elementwise.c) called straight through
 * rp_op_lookup with a hand-built rp_kctx (no graph, no loader), on cases
 * small enough to check by hand, plus broadcasts checked against a naive
 * index loop. Their gradients are checked against finite differences
 * (tests/support/gradcheck) over broadcasting shapes, and by hand where a
 * convention decides (kinks, ties, accumulation). */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "support/gradcheck.h"

/* ---- a tiny harness: one node, its attributes, its tensors ---- */

#define MAX_ATTR 4
#define MAX_IO 4

typedef struct kcase {
    rp_attr attr[MAX_ATTR];
    rp_node node;
    rp_tensor in[MAX_IO], out[1];
    rp_tensor *inp[MAX_IO], *outp[1];
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
    k->outp[0] = &k->out[0];
    k->ctx.n_out = 1;
}

static rp_attr *kc_attr(kcase *k, const char *name, rp_attr_type type)
{
    rp_attr *a = &k->attr[k->node.n_attr++];
    a->name = (char *)name;
    a->type = type;
    return a;
}

/* data is borrowed; NULL data with rank -1 = omitted optional input. */
static void kc_input(kcase *k, int i, rp_dtype dt, int rank, const int64_t *dims, const void *data)
{
    if (i + 1 > k->ctx.n_in)
        k->ctx.n_in = i + 1;
    if (rank < 0)
        return;
    ck_assert(rp_tensor_set_shape(&k->in[i], dt, rank, dims));
    k->in[i].data = (void *)data;
    k->inp[i] = &k->in[i];
}

/* prepare, allocate the output, forward. Returns the first failing status. */
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
    k->out[0].data = calloc(1, bytes ? bytes : 1);
    ck_assert_ptr_nonnull(k->out[0].data);
    return op->forward(&k->ctx);
}

static void kc_free(kcase *k)
{
    free(k->ctx.params);
    k->ctx.params = NULL;
    free(k->out[0].data);
    k->out[0].data = NULL;
}

static void assert_shape(const rp_tensor *t, rp_dtype dt, int rank, const int64_t *dims)
{
    ck_assert_int_eq(t->dtype, dt);
    ck_assert_int_eq(t->rank, rank);
    for (int d = 0; d < rank; d++)
        ck_assert_int_eq(t->dims[d], dims[d]);
}

static void assert_floats(const rp_tensor *t, const float *want, int n, double tol)
{
    ck_assert_int_eq(t->count, n);
    const float *y = t->data;
    for (int i = 0; i < n; i++)
        ck_assert_msg(fabs((double)y[i] - want[i]) <= tol, "element %d is %.9g, expected %.9g", i, y[i], want[i]);
}

/* ---- broadcasting ---- */

START_TEST(add_row_and_column_broadcast)
{
    kcase k;
    kc_init(&k, "Add", 14);
    const float a[] = {1, 2}, b[] = {10, 20, 30};
    kc_input(&k, 0, RP_FLOAT, 2, (int64_t[]){2, 1}, a);
    kc_input(&k, 1, RP_FLOAT, 1, (int64_t[]){3}, b);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], RP_FLOAT, 2, (int64_t[]){2, 3});
    assert_floats(&k.out[0], (const float[]){11, 21, 31, 12, 22, 32}, 6, 0);
    kc_free(&k);
}
END_TEST

START_TEST(rank0_operands)
{
    /* scalar - matrix keeps the matrix's shape; scalar * scalar stays rank 0 */
    kcase k;
    kc_init(&k, "Sub", 14);
    const float s = 10, m[] = {1, 2, 3, 4};
    kc_input(&k, 0, RP_FLOAT, 0, (int64_t[]){0}, &s);
    kc_input(&k, 1, RP_FLOAT, 2, (int64_t[]){2, 2}, m);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], RP_FLOAT, 2, (int64_t[]){2, 2});
    assert_floats(&k.out[0], (const float[]){9, 8, 7, 6}, 4, 0);
    kc_free(&k);

    kc_init(&k, "Mul", 14);
    const float t = -3;
    kc_input(&k, 0, RP_FLOAT, 0, (int64_t[]){0}, &s);
    kc_input(&k, 1, RP_FLOAT, 0, (int64_t[]){0}, &t);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], RP_FLOAT, 0, NULL);
    assert_floats(&k.out[0], (const float[]){-30}, 1, 0);
    kc_free(&k);
}
END_TEST

/* Odd broadcasts through every merge pattern, against a naive index loop. */
START_TEST(broadcast_matches_naive)
{
    static const int64_t shapes[][2][4] = {
        {{2, 3, 4, 5}, {1, 3, 1, 5}},
        {{2, 3, 4, 5}, {2, 3, 4, 5}},
        {{2, 1, 4, 1}, {1, 3, 1, 5}},
        {{1, 1, 1, 5}, {2, 3, 4, 1}},
        {{2, 3, 1, 1}, {1, 1, 4, 5}},
        {{1, 1, 1, 1}, {2, 3, 4, 5}},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t *da = shapes[s][0], *db = shapes[s][1];
        float a[120], b[120];
        for (int i = 0; i < 120; i++) {
            a[i] = (float)(i * 7 % 13) - 6;
            b[i] = (float)(i * 5 % 11) + 1;
        }
        kcase k;
        kc_init(&k, "Div", 14);
        kc_input(&k, 0, RP_FLOAT, 4, da, a);
        kc_input(&k, 1, RP_FLOAT, 4, db, b);
        ck_assert_int_eq(kc_run(&k), RP_OK);
        const float *y = k.out[0].data;
        int64_t n = 0;
        for (int64_t i0 = 0; i0 < 2; i0++)
            for (int64_t i1 = 0; i1 < 3; i1++)
                for (int64_t i2 = 0; i2 < 4; i2++)
                    for (int64_t i3 = 0; i3 < 5; i3++, n++) {
                        int64_t ia = ((i0 % da[0] * da[1] + i1 % da[1]) * da[2] + i2 % da[2]) * da[3] + i3 % da[3];
                        int64_t ib = ((i0 % db[0] * db[1] + i1 % db[1]) * db[2] + i2 % db[2]) * db[3] + i3 % db[3];
                        ck_assert_msg(y[n] == a[ia] / b[ib], "case %zu element %lld: %g, expected %g", s,
                                      (long long)n, y[n], a[ia] / b[ib]);
                    }
        ck_assert_int_eq(n, k.out[0].count);
        kc_free(&k);
    }
}
END_TEST

START_TEST(shapes_that_do_not_broadcast)
{
    kcase k;
    kc_init(&k, "Add", 14);
    const float a[6] = {0}, b[4] = {0};
    kc_input(&k, 0, RP_FLOAT, 2, (int64_t[]){2, 3}, a);
    kc_input(&k, 1, RP_FLOAT, 1, (int64_t[]){4}, b);
    ck_assert_int_eq(kc_run(&k), RP_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(k.err.msg, "[2,3]"));
    ck_assert_ptr_nonnull(strstr(k.err.msg, "[4]"));
    kc_free(&k);
}
END_TEST

START_TEST(operand_dtype_mismatch)
{
    kcase k;
    kc_init(&k, "Mul", 14);
    const float a[2] = {0};
    const int64_t b[2] = {0};
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){2}, a);
    kc_input(&k, 1, RP_INT64, 1, (int64_t[]){2}, b);
    ck_assert_int_eq(kc_run(&k), RP_ERR_DTYPE);
    ck_assert_ptr_nonnull(strstr(k.err.msg, "int64"));
    kc_free(&k);
}
END_TEST

/* ---- integer semantics ---- */

START_TEST(int_div_truncates)
{
    kcase k;
    kc_init(&k, "Div", 14);
    const int32_t a[] = {7, -7, 7, -7, 5, INT32_MIN}, b[] = {2, 2, -2, -2, 0, -1};
    kc_input(&k, 0, RP_INT32, 1, (int64_t[]){6}, a);
    kc_input(&k, 1, RP_INT32, 1, (int64_t[]){6}, b);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    const int32_t want[] = {3, -3, -3, 3, 0, INT32_MIN}; /* x/0 := 0; INT_MIN/-1 wraps */
    const int32_t *y = k.out[0].data;
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(y[i], want[i]);
    kc_free(&k);
}
END_TEST

START_TEST(int_add_wraps)
{
    kcase k;
    kc_init(&k, "Add", 14);
    const int32_t a[] = {INT32_MAX, -5}, b = 1;
    kc_input(&k, 0, RP_INT32, 1, (int64_t[]){2}, a);
    kc_input(&k, 1, RP_INT32, 0, (int64_t[]){0}, &b);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    const int32_t *y = k.out[0].data;
    ck_assert_int_eq(y[0], INT32_MIN);
    ck_assert_int_eq(y[1], -4);
    kc_free(&k);
}
END_TEST

START_TEST(pow_mixed_types)
{
    kcase k;
    kc_init(&k, "Pow", 15);
    const int32_t base[] = {2, 3, -2};
    const float ex[] = {3, 0.5f, 2};
    kc_input(&k, 0, RP_INT32, 1, (int64_t[]){3}, base);
    kc_input(&k, 1, RP_FLOAT, 1, (int64_t[]){3}, ex);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], RP_INT32, 1, (int64_t[]){3});
    const int32_t *yi = k.out[0].data;
    ck_assert_int_eq(yi[0], 8);
    ck_assert_int_eq(yi[1], 1); /* 1.732 truncated */
    ck_assert_int_eq(yi[2], 4);
    kc_free(&k);

    /* float base, scalar int64 exponent; then the x^2 fast path */
    kc_init(&k, "Pow", 15);
    const float fb[] = {1.5f, -2, 0};
    const int64_t e3 = 3;
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){3}, fb);
    kc_input(&k, 1, RP_INT64, 0, (int64_t[]){0}, &e3);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_floats(&k.out[0], (const float[]){3.375f, -8, 0}, 3, 0);
    kc_free(&k);

    kc_init(&k, "Pow", 15);
    const float two = 2;
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){3}, fb);
    kc_input(&k, 1, RP_FLOAT, 0, (int64_t[]){0}, &two);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_floats(&k.out[0], (const float[]){2.25f, 4, 0}, 3, 0);
    kc_free(&k);
}
END_TEST

/* ---- variadic, comparison, Where ---- */

START_TEST(variadic_max_and_sum_broadcast)
{
    const float a[] = {1, 5}, b[] = {0, 3, 6}, c = 4;
    kcase k;
    kc_init(&k, "Max", 13);
    kc_input(&k, 0, RP_FLOAT, 2, (int64_t[]){2, 1}, a);
    kc_input(&k, 1, RP_FLOAT, 1, (int64_t[]){3}, b);
    kc_input(&k, 2, RP_FLOAT, 0, (int64_t[]){0}, &c);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], RP_FLOAT, 2, (int64_t[]){2, 3});
    assert_floats(&k.out[0], (const float[]){4, 4, 6, 5, 5, 6}, 6, 0);
    kc_free(&k);

    kc_init(&k, "Sum", 13);
    kc_input(&k, 0, RP_FLOAT, 2, (int64_t[]){2, 1}, a);
    kc_input(&k, 1, RP_FLOAT, 1, (int64_t[]){3}, b);
    kc_input(&k, 2, RP_FLOAT, 0, (int64_t[]){0}, &c);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_floats(&k.out[0], (const float[]){5, 8, 11, 9, 12, 15}, 6, 0);
    kc_free(&k);

    kc_init(&k, "Min", 13);
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){3}, b);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_floats(&k.out[0], b, 3, 0);
    kc_free(&k);
}
END_TEST

START_TEST(equal_gives_bool)
{
    kcase k;
    kc_init(&k, "Equal", 19);
    const int64_t a[] = {1, 2, 3, 4, 5, 6}, b[] = {1, 5, 6};
    kc_input(&k, 0, RP_INT64, 2, (int64_t[]){2, 3}, a);
    kc_input(&k, 1, RP_INT64, 1, (int64_t[]){3}, b);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], RP_BOOL, 2, (int64_t[]){2, 3});
    const uint8_t want[] = {1, 0, 0, 0, 1, 1};
    ck_assert_mem_eq(k.out[0].data, want, 6);
    kc_free(&k);
}
END_TEST

START_TEST(where_broadcasts_three_ways)
{
    kcase k;
    kc_init(&k, "Where", 16);
    const uint8_t cond[] = {1, 0};
    const int64_t x[] = {1, 2, 3}, y = 9;
    kc_input(&k, 0, RP_BOOL, 2, (int64_t[]){2, 1}, cond);
    kc_input(&k, 1, RP_INT64, 1, (int64_t[]){3}, x);
    kc_input(&k, 2, RP_INT64, 0, (int64_t[]){0}, &y);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], RP_INT64, 2, (int64_t[]){2, 3});
    const int64_t want[] = {1, 2, 3, 9, 9, 9};
    ck_assert_mem_eq(k.out[0].data, want, sizeof want);
    kc_free(&k);

    kc_init(&k, "Where", 16);
    const float xf[] = {1, 2};
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){2}, xf);
    kc_input(&k, 1, RP_FLOAT, 1, (int64_t[]){2}, xf);
    kc_input(&k, 2, RP_FLOAT, 1, (int64_t[]){2}, xf);
    ck_assert_int_eq(kc_run(&k), RP_ERR_DTYPE); /* condition must be bool */
    kc_free(&k);
}
END_TEST

/* ---- Cast ---- */

START_TEST(cast_float_int64_bool)
{
    const float x[] = {-1.7f, -0.5f, 0.0f, 0.9f, 2.5f};
    kcase k;
    kc_init(&k, "Cast", 25);
    kc_attr(&k, "to", RP_ATTR_INT)->i = RP_INT64;
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){5}, x);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], RP_INT64, 1, (int64_t[]){5});
    int64_t as_int[5];
    memcpy(as_int, k.out[0].data, sizeof as_int);
    const int64_t want_i[] = {-1, 0, 0, 0, 2}; /* truncation toward zero */
    ck_assert_mem_eq(as_int, want_i, sizeof want_i);
    kc_free(&k);

    kc_init(&k, "Cast", 25);
    kc_attr(&k, "to", RP_ATTR_INT)->i = RP_BOOL;
    kc_input(&k, 0, RP_INT64, 1, (int64_t[]){5}, as_int);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], RP_BOOL, 1, (int64_t[]){5});
    const uint8_t want_b[] = {1, 0, 0, 0, 1};
    ck_assert_mem_eq(k.out[0].data, want_b, 5);
    kc_free(&k);

    /* and float straight to bool: -0.5 is not zero */
    kc_init(&k, "Cast", 13);
    kc_attr(&k, "to", RP_ATTR_INT)->i = RP_BOOL;
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){5}, x);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    const uint8_t want_fb[] = {1, 1, 0, 1, 1};
    ck_assert_mem_eq(k.out[0].data, want_fb, 5);
    kc_free(&k);

    kc_init(&k, "Cast", 13);
    kc_attr(&k, "to", RP_ATTR_INT)->i = RP_FLOAT16;
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){5}, x);
    ck_assert_int_eq(kc_run(&k), RP_ERR_UNSUPPORTED);
    kc_free(&k);
}
END_TEST

START_TEST(castlike_takes_second_dtype)
{
    kcase k;
    kc_init(&k, "CastLike", 19);
    const double x[] = {1.25, -3.75};
    const int8_t like = 0;
    kc_input(&k, 0, RP_DOUBLE, 1, (int64_t[]){2}, x);
    kc_input(&k, 1, RP_INT8, 0, (int64_t[]){0}, &like);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_shape(&k.out[0], RP_INT8, 1, (int64_t[]){2});
    const int8_t *y = k.out[0].data;
    ck_assert_int_eq(y[0], 1);
    ck_assert_int_eq(y[1], -3);
    kc_free(&k);
}
END_TEST

/* Float to integer out of range, NaN and infinities: saturated (NaN to 0;
 * src/core/convert.h), where C's conversion is undefined (the fuzzers'
 * finds: CastLike of 1e30 to int64, an int64 Pow with exponent 1e30). */
START_TEST(cast_and_pow_saturate)
{
    const float x[] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f, 300.7f, -300.7f};
    static const struct { rp_dtype to; int64_t want[7]; } rows[] = {
        {RP_INT64, {0, INT64_MAX, INT64_MIN, INT64_MAX, INT64_MIN, 300, -300}},
        {RP_INT32, {0, INT32_MAX, INT32_MIN, INT32_MAX, INT32_MIN, 300, -300}},
        {RP_INT16, {0, INT16_MAX, INT16_MIN, INT16_MAX, INT16_MIN, 300, -300}},
        {RP_INT8, {0, INT8_MAX, INT8_MIN, INT8_MAX, INT8_MIN, INT8_MAX, INT8_MIN}},
        {RP_UINT8, {0, UINT8_MAX, 0, UINT8_MAX, 0, UINT8_MAX, 0}},
        {RP_UINT16, {0, UINT16_MAX, 0, UINT16_MAX, 0, 300, 0}},
        {RP_UINT32, {0, UINT32_MAX, 0, UINT32_MAX, 0, 300, 0}},
    };
    kcase k;
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        kc_init(&k, "Cast", 13);
        kc_attr(&k, "to", RP_ATTR_INT)->i = rows[r].to;
        kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){7}, x);
        ck_assert_int_eq(kc_run(&k), RP_OK);
        for (int i = 0; i < 7; i++)
            ck_assert_msg(rp_tensor_get_i64(&k.out[0], i) == rows[r].want[i], "to %s, element %d: %lld",
                          rp_dtype_name(rows[r].to), i, (long long)rp_tensor_get_i64(&k.out[0], i));
        kc_free(&k);
    }
    /* uint64 from double, through CastLike */
    const double xd[] = {NAN, 1e300, -5, 7.9};
    const uint64_t like = 0;
    kc_init(&k, "CastLike", 19);
    kc_input(&k, 0, RP_DOUBLE, 1, (int64_t[]){4}, xd);
    kc_input(&k, 1, RP_UINT64, 0, (int64_t[]){0}, &like);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    const uint64_t *yu = k.out[0].data;
    ck_assert(yu[0] == 0 && yu[1] == UINT64_MAX && yu[2] == 0 && yu[3] == 7);
    kc_free(&k);

    /* int64 Pow with a float exponent: 2^1e30 is inf, 2^-inf is 0, (-2)^0.5 is NaN */
    const int64_t base[] = {2, 2, -2, 3};
    const float ex[] = {1e30f, -INFINITY, 0.5f, 2};
    kc_init(&k, "Pow", 15);
    kc_input(&k, 0, RP_INT64, 1, (int64_t[]){4}, base);
    kc_input(&k, 1, RP_FLOAT, 1, (int64_t[]){4}, ex);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    const int64_t *yp = k.out[0].data;
    ck_assert_int_eq(yp[0], INT64_MAX);
    ck_assert_int_eq(yp[1], 0);
    ck_assert_int_eq(yp[2], 0);
    ck_assert_int_eq(yp[3], 9);
    kc_free(&k);
    const int32_t base32[] = {10, -10};
    const double ex32[] = {20, 21};
    kc_init(&k, "Pow", 15);
    kc_input(&k, 0, RP_INT32, 1, (int64_t[]){2}, base32);
    kc_input(&k, 1, RP_DOUBLE, 1, (int64_t[]){2}, ex32);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    ck_assert_int_eq(((const int32_t *)k.out[0].data)[0], INT32_MAX);
    ck_assert_int_eq(((const int32_t *)k.out[0].data)[1], INT32_MIN);
    kc_free(&k);
}
END_TEST

/* ---- one-input ops ---- */

START_TEST(gelu_exact_and_tanh)
{
    const float x[] = {-1, 0, 1, 2};
    kcase k;
    kc_init(&k, "Gelu", 20);
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){4}, x);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_floats(&k.out[0], (const float[]){-0.15865525f, 0, 0.84134475f, 1.95449974f}, 4, 1e-6);
    kc_free(&k);

    kc_init(&k, "Gelu", 20);
    kc_attr(&k, "approximate", RP_ATTR_STRING)->s = "tanh";
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){4}, x);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_floats(&k.out[0], (const float[]){-0.15880801f, 0, 0.84119199f, 1.95459769f}, 4, 1e-6);
    kc_free(&k);

    kc_init(&k, "Gelu", 20);
    kc_attr(&k, "approximate", RP_ATTR_STRING)->s = "fast";
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){4}, x);
    ck_assert_int_eq(kc_run(&k), RP_ERR_VALUE);
    kc_free(&k);
}
END_TEST

START_TEST(unary_dtype_errors)
{
    kcase k;
    kc_init(&k, "Erf", 13);
    const int64_t x[] = {1, 2};
    kc_input(&k, 0, RP_INT64, 1, (int64_t[]){2}, x);
    ck_assert_int_eq(kc_run(&k), RP_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(k.err.msg, "int64 not supported"));
    ck_assert_ptr_nonnull(strstr(k.err.msg, "float32"));
    kc_free(&k);
}
END_TEST

START_TEST(relu_sigmoid_values)
{
    const float x[] = {-2, 0, 3};
    kcase k;
    kc_init(&k, "Relu", 14);
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){3}, x);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_floats(&k.out[0], (const float[]){0, 0, 3}, 3, 0);
    kc_free(&k);

    kc_init(&k, "Sigmoid", 13);
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){3}, x);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_floats(&k.out[0], (const float[]){0.11920292f, 0.5f, 0.95257413f}, 3, 1e-6);
    kc_free(&k);
}
END_TEST

START_TEST(clip_inputs_and_attributes)
{
    const int8_t x[] = {-100, -3, 0, 3, 100};
    const int8_t hi = 5;
    kcase k;
    kc_init(&k, "Clip", 13);
    kc_input(&k, 0, RP_INT8, 1, (int64_t[]){5}, x);
    kc_input(&k, 1, RP_INT8, -1, NULL, NULL); /* min omitted */
    kc_input(&k, 2, RP_INT8, 0, (int64_t[]){0}, &hi);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    const int8_t want[] = {-100, -3, 0, 3, 5};
    ck_assert_mem_eq(k.out[0].data, want, 5);
    kc_free(&k);

    const float xf[] = {-2, 0.5f, 2};
    kc_init(&k, "Clip", 6);
    kc_attr(&k, "min", RP_ATTR_FLOAT)->f = -1;
    kc_attr(&k, "max", RP_ATTR_FLOAT)->f = 1;
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){3}, xf);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_floats(&k.out[0], (const float[]){-1, 0.5f, 1}, 3, 0);
    kc_free(&k);

    /* min > max: everything becomes max, as ONNX specifies */
    const float lo = 2, hi2 = 1;
    kc_init(&k, "Clip", 13);
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){3}, xf);
    kc_input(&k, 1, RP_FLOAT, 0, (int64_t[]){0}, &lo);
    kc_input(&k, 2, RP_FLOAT, 0, (int64_t[]){0}, &hi2);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    assert_floats(&k.out[0], (const float[]){1, 1, 1}, 3, 0);
    kc_free(&k);
}
END_TEST

/* ---- gradients ---- */

#define GC_STEP 3e-3
#define GC_TOL 3e-4

/* Finite-difference check of op's gradient w.r.t. the inputs in mask. */
static void gc_check(const char *op, int opset, rp_attr *attrs, int n_attrs, rp_tensor **ins, int n_in, unsigned mask)
{
    gradcheck_spec s = {.op = op, .opset = opset, .attrs = attrs, .n_attrs = n_attrs, .inputs = ins, .n_in = n_in,
                        .n_out = 1, .check_mask = mask, .step = GC_STEP, .tol = GC_TOL};
    char why[512] = "";
    ck_assert_msg(gradcheck_run(&s, why, sizeof why), "%s", why);
}

/* Move values of t closer than gap to `from` out to distance gap, keeping
 * their side, so finite differences never straddle a kink. */
static void push_away(rp_tensor *t, float from, float gap)
{
    float *v = t->data;
    for (int64_t i = 0; i < t->count; i++)
        if (fabsf(v[i] - from) < gap)
            v[i] = v[i] < from ? from - gap : from + gap;
}

/* Values off + 0.5 * m for m drawn from [-4, 4]: two tensors with
 * different offsets never tie, and differ by at least the offsets' gap. */
static rp_tensor grid_tensor(int rank, const int64_t *dims, float off, unsigned seed)
{
    rp_tensor t = gradcheck_random(rank, dims, -4, 5, seed);
    float *v = t.data;
    for (int64_t i = 0; i < t.count; i++)
        v[i] = off + 0.5f * floorf(v[i]);
    return t;
}

typedef struct shape {
    int rank;
    int64_t dims[4];
} shape;

/* Operand pairs covering every walk pattern: row vector, interleaved
 * broadcasts, scalars on either side, a broadcast inner row, a row longer
 * than the gradient's chunk, equal shapes. */
static const shape bin_shapes[][2] = {
    {{3, {2, 3, 4}}, {1, {4}}},
    {{3, {2, 1, 4}}, {2, {3, 1}}},
    {{0, {0}}, {2, {2, 3}}},
    {{2, {2, 3}}, {0, {0}}},
    {{3, {2, 3, 4}}, {3, {2, 3, 1}}},
    {{4, {2, 1, 3, 1}}, {4, {1, 4, 1, 5}}},
    {{2, {2, 600}}, {1, {600}}},
    {{1, {1}}, {3, {2, 3, 4}}},
    {{0, {0}}, {0, {0}}},
    {{2, {3, 4}}, {2, {3, 4}}},
};
#define N_BIN_SHAPES (int)(sizeof bin_shapes / sizeof bin_shapes[0])

START_TEST(grad_binary_broadcast)
{
    static const char *const ops[] = {"Add", "Sub", "Mul", "Div"};
    for (int o = 0; o < 4; o++)
        for (int s = 0; s < N_BIN_SHAPES; s++) {
            const shape *sa = &bin_shapes[s][0], *sb = &bin_shapes[s][1];
            rp_tensor a = gradcheck_random(sa->rank, sa->dims, -2, 2, 1 + s);
            rp_tensor b = gradcheck_random(sb->rank, sb->dims, -2, 2, 101 + s);
            if (o == 3)
                push_away(&b, 0, 0.5f);
            rp_tensor *in[2] = {&a, &b};
            gc_check(ops[o], 14, NULL, 0, in, 2, 3u);
            /* and the other way round */
            rp_tensor *ni[2] = {&b, &a};
            if (o == 3)
                push_away(&a, 0, 0.5f);
            gc_check(ops[o], 14, NULL, 0, ni, 2, 3u);
            rp_tensor_release(&a);
            rp_tensor_release(&b);
        }
}
END_TEST

START_TEST(grad_pow)
{
    /* positive bases: base and exponent, with broadcasting */
    for (int s = 0; s < N_BIN_SHAPES; s++) {
        const shape *sa = &bin_shapes[s][0], *sb = &bin_shapes[s][1];
        rp_tensor a = gradcheck_random(sa->rank, sa->dims, 0.5, 2, 7 + s);
        rp_tensor b = gradcheck_random(sb->rank, sb->dims, -1.5, 2.5, 77 + s);
        rp_tensor *in[2] = {&a, &b};
        gc_check("Pow", 15, NULL, 0, in, 2, 3u);
        rp_tensor_release(&a);
        rp_tensor_release(&b);
    }
    /* exponent 0 (gradient 0), 1, 2 (the x*x path), 1/2 */
    float ex[4] = {0, 1, 2, 0.5f};
    rp_tensor e;
    ck_assert(rp_tensor_set_shape(&e, RP_FLOAT, 1, (int64_t[]){4}));
    e.data = ex;
    rp_tensor a = gradcheck_random(2, (int64_t[]){3, 4}, 0.5, 2, 5);
    rp_tensor *in[2] = {&a, &e};
    gc_check("Pow", 15, NULL, 0, in, 2, 3u);
    rp_tensor_release(&a);

    /* negative bases: the base only, for a scalar float 2, an int64 3, a double 3 */
    rp_tensor n = gradcheck_random(2, (int64_t[]){3, 4}, -2, -0.5, 6);
    float two = 2;
    int64_t three = 3;
    double three_d = 3;
    rp_tensor s2, s3, s3d;
    ck_assert(rp_tensor_set_shape(&s2, RP_FLOAT, 0, NULL));
    s2.data = &two;
    ck_assert(rp_tensor_set_shape(&s3, RP_INT64, 0, NULL));
    s3.data = &three;
    ck_assert(rp_tensor_set_shape(&s3d, RP_DOUBLE, 1, (int64_t[]){1}));
    s3d.data = &three_d;
    rp_tensor *i2[2] = {&n, &s2}, *i3[2] = {&n, &s3}, *i3d[2] = {&n, &s3d};
    gc_check("Pow", 15, NULL, 0, i2, 2, 1u);
    gc_check("Pow", 15, NULL, 0, i3, 2, 1u);
    gc_check("Pow", 15, NULL, 0, i3d, 2, 1u);
    rp_tensor_release(&n);
}
END_TEST

START_TEST(grad_max_min_sum)
{
    static const char *const ops[] = {"Max", "Min", "Sum"};
    for (int o = 0; o < 3; o++) {
        for (int s = 0; s < N_BIN_SHAPES; s++) {
            const shape *sa = &bin_shapes[s][0], *sb = &bin_shapes[s][1];
            rp_tensor a = grid_tensor(sa->rank, sa->dims, 0.1f, 3 + s);
            rp_tensor b = grid_tensor(sb->rank, sb->dims, 0.3f, 33 + s);
            rp_tensor *in[2] = {&a, &b};
            gc_check(ops[o], 13, NULL, 0, in, 2, 3u);
            rp_tensor_release(&a);
            rp_tensor_release(&b);
        }
        /* three inputs broadcast together, and one input alone */
        rp_tensor a = grid_tensor(3, (int64_t[]){2, 3, 4}, 0.1f, 11);
        rp_tensor b = grid_tensor(2, (int64_t[]){3, 1}, 0.3f, 12);
        rp_tensor c = grid_tensor(0, NULL, 0.45f, 13);
        rp_tensor *in[3] = {&a, &b, &c};
        gc_check(ops[o], 13, NULL, 0, in, 3, 7u);
        rp_tensor *ni[3] = {&c, &a, &b};
        gc_check(ops[o], 13, NULL, 0, ni, 3, 7u);
        gc_check(ops[o], 13, NULL, 0, in, 1, 1u);
        rp_tensor_release(&a);
        rp_tensor_release(&b);
        rp_tensor_release(&c);
    }
}
END_TEST

START_TEST(grad_where)
{
    static const shape cases[][3] = {
        {{3, {2, 1, 4}}, {2, {3, 1}}, {0, {0}}},
        {{2, {3, 4}}, {2, {3, 4}}, {2, {3, 4}}},
        {{1, {4}}, {3, {2, 3, 1}}, {2, {3, 4}}},
        {{0, {0}}, {2, {2, 3}}, {1, {3}}},
    };
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        rp_tensor cond;
        ck_assert_int_eq(rp_tensor_alloc(&cond, RP_BOOL, cases[s][0].rank, cases[s][0].dims, NULL), RP_OK);
        uint8_t *cv = cond.data;
        for (int64_t i = 0; i < cond.count; i++)
            cv[i] = (uint8_t)((i * 5 + s) % 3 != 0);
        rp_tensor x = gradcheck_random(cases[s][1].rank, cases[s][1].dims, -2, 2, 21 + (unsigned)s);
        rp_tensor y = gradcheck_random(cases[s][2].rank, cases[s][2].dims, -2, 2, 31 + (unsigned)s);
        rp_tensor *in[3] = {&cond, &x, &y};
        gc_check("Where", 16, NULL, 0, in, 3, 6u);
        rp_tensor_release(&cond);
        rp_tensor_release(&x);
        rp_tensor_release(&y);
    }
}
END_TEST

START_TEST(grad_unary)
{
    static const struct {
        const char *op;
        int opset;
        const char *approximate;
        double lo, hi;
        float kink; /* values kept 0.1 away from it, when kinked */
        bool kinked;
    } cases[] = {
        {"Sqrt", 13, NULL, 0.5, 3, 0, false},   {"Erf", 13, NULL, -3, 3, 0, false},
        {"Tanh", 13, NULL, -3, 3, 0, false},    {"Relu", 14, NULL, -2, 2, 0, true},
        {"Sigmoid", 13, NULL, -4, 4, 0, false}, {"Exp", 13, NULL, -3, 3, 0, false},
        {"Neg", 13, NULL, -2, 2, 0, false},     {"Reciprocal", 13, NULL, -2, 2, 0, false},
        {"Gelu", 20, NULL, -4, 4, 0, false},    {"Gelu", 20, "tanh", -4, 4, 0, false},
        {"Gelu", 20, "none", -4, 4, 0, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rp_tensor x = gradcheck_random(2, (int64_t[]){5, 7}, cases[i].lo, cases[i].hi, 40 + (unsigned)i);
        if (cases[i].kinked)
            push_away(&x, cases[i].kink, 0.1f);
        if (strcmp(cases[i].op, "Reciprocal") == 0)
            push_away(&x, 0, 0.5f);
        rp_attr attr = {.name = "approximate", .type = RP_ATTR_STRING, .s = (char *)cases[i].approximate};
        rp_tensor *in[1] = {&x};
        gc_check(cases[i].op, cases[i].opset, cases[i].approximate ? &attr : NULL, cases[i].approximate ? 1 : 0, in, 1,
                 1u);
        rp_tensor_release(&x);
    }
}
END_TEST

START_TEST(grad_clip)
{
    rp_tensor x = gradcheck_random(2, (int64_t[]){6, 7}, -2, 2, 50);
    push_away(&x, -0.5f, 0.1f);
    push_away(&x, 0.7f, 0.1f);
    rp_tensor *in[3] = {&x, NULL, NULL};

    /* Clip-6: both bounds, then only min */
    rp_attr attrs[2] = {{.name = "min", .type = RP_ATTR_FLOAT, .f = -0.5f},
                        {.name = "max", .type = RP_ATTR_FLOAT, .f = 0.7f}};
    gc_check("Clip", 6, attrs, 2, in, 1, 1u);
    gc_check("Clip", 6, attrs, 1, in, 1, 1u);

    /* Clip-11+: bounds as inputs, with their own gradients */
    float lo = -0.5f, hi = 0.7f;
    rp_tensor tlo, thi;
    ck_assert(rp_tensor_set_shape(&tlo, RP_FLOAT, 0, NULL));
    tlo.data = &lo;
    ck_assert(rp_tensor_set_shape(&thi, RP_FLOAT, 0, NULL));
    thi.data = &hi;
    in[1] = &tlo;
    in[2] = &thi;
    gc_check("Clip", 13, NULL, 0, in, 3, 7u);
    in[1] = NULL; /* max only */
    gc_check("Clip", 13, NULL, 0, in, 3, 5u);
    in[1] = &tlo; /* min only */
    gc_check("Clip", 13, NULL, 0, in, 2, 3u);
    /* min > max: y is max everywhere, so max takes all the gradient */
    lo = 1.5f;
    hi = -1.5f;
    in[2] = &thi;
    gc_check("Clip", 13, NULL, 0, in, 3, 7u);
    rp_tensor_release(&x);
}
END_TEST

START_TEST(grad_cast)
{
    rp_tensor x = gradcheck_random(2, (int64_t[]){3, 4}, -2, 2, 60);
    rp_tensor like = gradcheck_random(0, NULL, 0, 1, 61);
    rp_attr to = {.name = "to", .type = RP_ATTR_INT, .i = RP_FLOAT};
    rp_tensor *in[2] = {&x, &like};
    gc_check("Cast", 13, &to, 1, in, 1, 1u);
    gc_check("CastLike", 19, NULL, 0, in, 2, 1u);
    rp_tensor_release(&x);
    rp_tensor_release(&like);
}
END_TEST

/* A float32 tensor over caller storage. */
static rp_tensor wrap(int rank, const int64_t *dims, float *data)
{
    rp_tensor t;
    ck_assert(rp_tensor_set_shape(&t, RP_FLOAT, rank, dims));
    t.data = data;
    return t;
}

static rp_status kc_backward(kcase *k, rp_tensor *gy, rp_tensor **gin)
{
    const rp_op *op = rp_op_lookup(k->node.op_type, k->ctx.opset);
    ck_assert_ptr_nonnull(op->backward);
    rp_tensor *gout[1] = {gy};
    return op->backward(&k->ctx, gout, gin);
}

/* Backward adds into gin: for the inputs in mask, two calls into buffers
 * holding 1 give 1 + 2 * (what one call gives into zeros). */
static void check_adds(kcase *k, unsigned mask)
{
    ck_assert_int_eq(kc_run(k), RP_OK);
    rp_tensor gy = gradcheck_random(k->out[0].rank, k->out[0].dims, -1, 1, 99);
    rp_tensor g1[MAX_IO] = {{0}}, g2[MAX_IO] = {{0}};
    rp_tensor *p1[MAX_IO] = {NULL}, *p2[MAX_IO] = {NULL};
    for (int i = 0; i < k->ctx.n_in; i++) {
        if (!(mask & (1u << i)))
            continue;
        const rp_tensor *x = k->inp[i];
        ck_assert_int_eq(rp_tensor_alloc(&g1[i], RP_FLOAT, x->rank, x->dims, NULL), RP_OK);
        ck_assert_int_eq(rp_tensor_alloc(&g2[i], RP_FLOAT, x->rank, x->dims, NULL), RP_OK);
        for (int64_t e = 0; e < x->count; e++)
            ((float *)g2[i].data)[e] = 1;
        p1[i] = &g1[i];
        p2[i] = &g2[i];
    }
    ck_assert_int_eq(kc_backward(k, &gy, p1), RP_OK);
    ck_assert_int_eq(kc_backward(k, &gy, p2), RP_OK);
    ck_assert_int_eq(kc_backward(k, &gy, p2), RP_OK);
    for (int i = 0; i < k->ctx.n_in; i++) {
        if (!p1[i])
            continue;
        const float *a = g1[i].data, *b = g2[i].data;
        double size = 0;
        for (int64_t e = 0; e < g1[i].count; e++) {
            size += fabsf(a[e]);
            ck_assert_msg(fabs(b[e] - (1 + 2.0 * a[e])) <= 1e-5 * (1 + fabs(a[e])),
                          "%s input %d [%lld]: %.9g after two calls from 1, %.9g after one from 0", k->node.op_type,
                          i, (long long)e, b[e], a[e]);
        }
        ck_assert_msg(size > 0, "%s input %d: zero gradient proves nothing", k->node.op_type, i);
        rp_tensor_release(&g1[i]);
        rp_tensor_release(&g2[i]);
    }
    rp_tensor_release(&gy);
    kc_free(k);
}

START_TEST(grad_accumulates)
{
    const float a[] = {1, 2, 3, 4, 5, 6}, b[] = {-1, 0.5f, 2}, col[] = {3, -2}, s = 1.5f, lo = 2, hi = 5;
    const float pos[] = {0.5f, 2, 1.5f}, bm[] = {5, 0.5f, 2}, sm = 2.5f; /* Max: every input wins somewhere */
    const uint8_t cond[] = {1, 0, 1};
    kcase k;
    /* inner row kept (b), inner row broadcast (col), scalar, equal shapes */
    kc_init(&k, "Mul", 14);
    kc_input(&k, 0, RP_FLOAT, 2, (int64_t[]){2, 3}, a);
    kc_input(&k, 1, RP_FLOAT, 1, (int64_t[]){3}, b);
    check_adds(&k, 3u);
    kc_init(&k, "Div", 14);
    kc_input(&k, 0, RP_FLOAT, 2, (int64_t[]){2, 3}, a);
    kc_input(&k, 1, RP_FLOAT, 2, (int64_t[]){2, 1}, col);
    check_adds(&k, 3u);
    kc_init(&k, "Sub", 14);
    kc_input(&k, 0, RP_FLOAT, 0, NULL, &s);
    kc_input(&k, 1, RP_FLOAT, 2, (int64_t[]){2, 3}, a);
    check_adds(&k, 3u);
    kc_init(&k, "Pow", 15);
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){3}, pos);
    kc_input(&k, 1, RP_FLOAT, 1, (int64_t[]){3}, a);
    check_adds(&k, 3u);
    /* variadic, and the one-input identity */
    kc_init(&k, "Max", 13);
    kc_input(&k, 0, RP_FLOAT, 2, (int64_t[]){2, 3}, a);
    kc_input(&k, 1, RP_FLOAT, 1, (int64_t[]){3}, bm);
    kc_input(&k, 2, RP_FLOAT, 0, NULL, &sm);
    check_adds(&k, 7u);
    kc_init(&k, "Sum", 13);
    kc_input(&k, 0, RP_FLOAT, 2, (int64_t[]){2, 3}, a);
    check_adds(&k, 1u);
    kc_init(&k, "Where", 16);
    kc_input(&k, 0, RP_BOOL, 1, (int64_t[]){3}, cond);
    kc_input(&k, 1, RP_FLOAT, 2, (int64_t[]){2, 3}, a);
    kc_input(&k, 2, RP_FLOAT, 0, NULL, &s);
    check_adds(&k, 6u);
    /* one-input ops */
    kc_init(&k, "Tanh", 13);
    kc_input(&k, 0, RP_FLOAT, 2, (int64_t[]){2, 3}, a);
    check_adds(&k, 1u);
    kc_init(&k, "Clip", 13);
    kc_input(&k, 0, RP_FLOAT, 2, (int64_t[]){2, 3}, a);
    kc_input(&k, 1, RP_FLOAT, 0, NULL, &lo);
    kc_input(&k, 2, RP_FLOAT, 0, NULL, &hi);
    check_adds(&k, 7u);
    kc_init(&k, "Cast", 13);
    kc_attr(&k, "to", RP_ATTR_INT)->i = RP_FLOAT;
    kc_input(&k, 0, RP_FLOAT, 2, (int64_t[]){2, 3}, a);
    check_adds(&k, 1u);

    /* a NULL output gradient is zero: nothing changes */
    kc_init(&k, "Mul", 14);
    kc_input(&k, 0, RP_FLOAT, 2, (int64_t[]){2, 3}, a);
    kc_input(&k, 1, RP_FLOAT, 1, (int64_t[]){3}, b);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    float ga[6] = {1, 1, 1, 1, 1, 1}, gb[3] = {1, 1, 1};
    rp_tensor tga = wrap(2, (int64_t[]){2, 3}, ga), tgb = wrap(1, (int64_t[]){3}, gb);
    rp_tensor *gin[2] = {&tga, &tgb};
    ck_assert_int_eq(kc_backward(&k, NULL, gin), RP_OK);
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(ga[i], 1);
    for (int i = 0; i < 3; i++)
        ck_assert_float_eq(gb[i], 1);
    kc_free(&k);
}
END_TEST

/* Where finite differences cannot look: kinks and ties. */
START_TEST(grad_conventions)
{
    float g[] = {1, 2, 3, 4};
    rp_tensor tg = wrap(1, (int64_t[]){4}, g);

    /* Max/Min: a tie goes to the first input */
    const float a[] = {1, 2, 5, 0}, b[] = {1, 3, 5, -1};
    static const char *const mm[] = {"Max", "Min"};
    static const float want_a[2][4] = {{1, 0, 3, 4}, {1, 2, 3, 0}}, want_b[2][4] = {{0, 2, 0, 0}, {0, 0, 0, 4}};
    for (int o = 0; o < 2; o++) {
        kcase k;
        kc_init(&k, mm[o], 13);
        kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){4}, a);
        kc_input(&k, 1, RP_FLOAT, 1, (int64_t[]){4}, b);
        ck_assert_int_eq(kc_run(&k), RP_OK);
        float ga[4] = {0}, gb[4] = {0};
        rp_tensor tga = wrap(1, (int64_t[]){4}, ga), tgb = wrap(1, (int64_t[]){4}, gb);
        rp_tensor *gin[2] = {&tga, &tgb};
        ck_assert_int_eq(kc_backward(&k, &tg, gin), RP_OK);
        for (int i = 0; i < 4; i++) {
            ck_assert_float_eq(ga[i], want_a[o][i]);
            ck_assert_float_eq(gb[i], want_b[o][i]);
        }
        kc_free(&k);
    }

    /* Relu: 0 at x = 0 */
    const float xr[] = {-1, 0, 1e-30f, 2};
    kcase k;
    kc_init(&k, "Relu", 14);
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){4}, xr);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    float gx[4] = {0};
    rp_tensor tgx = wrap(1, (int64_t[]){4}, gx);
    rp_tensor *gin1[3] = {&tgx, NULL, NULL};
    ck_assert_int_eq(kc_backward(&k, &tg, gin1), RP_OK);
    ck_assert_float_eq(gx[0], 0);
    ck_assert_float_eq(gx[1], 0);
    ck_assert_float_eq(gx[2], 3);
    ck_assert_float_eq(gx[3], 4);
    kc_free(&k);

    /* Clip: the bounds themselves pass (min <= x <= max) */
    const float xc[] = {-1, -0.5f, 0.5f, 1};
    kc_init(&k, "Clip", 6);
    kc_attr(&k, "min", RP_ATTR_FLOAT)->f = -0.5f;
    kc_attr(&k, "max", RP_ATTR_FLOAT)->f = 0.5f;
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){4}, xc);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    memset(gx, 0, sizeof gx);
    ck_assert_int_eq(kc_backward(&k, &tg, gin1), RP_OK);
    ck_assert_float_eq(gx[0], 0);
    ck_assert_float_eq(gx[1], 2);
    ck_assert_float_eq(gx[2], 3);
    ck_assert_float_eq(gx[3], 0);
    kc_free(&k);

    /* Clip-11: at a bound, x takes the gradient and the bound nothing */
    const float blo = -0.5f, bhi = 0.5f;
    kc_init(&k, "Clip", 13);
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){4}, xc);
    kc_input(&k, 1, RP_FLOAT, 0, NULL, &blo);
    kc_input(&k, 2, RP_FLOAT, 0, NULL, &bhi);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    memset(gx, 0, sizeof gx);
    float glo = 0, ghi = 0;
    rp_tensor tglo = wrap(0, NULL, &glo), tghi = wrap(0, NULL, &ghi);
    rp_tensor *ginc[3] = {&tgx, &tglo, &tghi};
    ck_assert_int_eq(kc_backward(&k, &tg, ginc), RP_OK);
    ck_assert_float_eq(gx[0], 0);
    ck_assert_float_eq(gx[1], 2);
    ck_assert_float_eq(gx[2], 3);
    ck_assert_float_eq(gx[3], 0);
    ck_assert_float_eq(glo, 1);
    ck_assert_float_eq(ghi, 4);
    kc_free(&k);

    /* Pow: exponent gradient 0 where base <= 0; base gradient 0 where exponent is 0 */
    const float pb[] = {-2, 0, 0, 4}, pe[] = {2, 0.5f, 0, 0.5f};
    kc_init(&k, "Pow", 15);
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){4}, pb);
    kc_input(&k, 1, RP_FLOAT, 1, (int64_t[]){4}, pe);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    float gpb[4] = {0}, gpe[4] = {0};
    rp_tensor tpb = wrap(1, (int64_t[]){4}, gpb), tpe = wrap(1, (int64_t[]){4}, gpe);
    rp_tensor *gin2[2] = {&tpb, &tpe};
    ck_assert_int_eq(kc_backward(&k, &tg, gin2), RP_OK);
    ck_assert_float_eq(gpe[0], 0);
    ck_assert_float_eq(gpe[1], 0);
    ck_assert_float_eq(gpe[2], 0);
    ck_assert_float_eq_tol(gpe[3], 4 * 2 * logf(4), 1e-5); /* g * y * log(base) */
    ck_assert_float_eq(gpb[0], 1 * 2 * -2);
    ck_assert_float_eq(gpb[2], 0); /* not 0 * inf */
    ck_assert_float_eq_tol(gpb[3], 4 * 0.5f / 2, 1e-6);
    kc_free(&k);

    /* Where: the condition routes; nothing is asked of it */
    const uint8_t cond[] = {1, 0, 0, 1};
    const float wx[] = {1, 2, 3, 4}, wy = 9;
    kc_init(&k, "Where", 16);
    kc_input(&k, 0, RP_BOOL, 1, (int64_t[]){4}, cond);
    kc_input(&k, 1, RP_FLOAT, 1, (int64_t[]){4}, wx);
    kc_input(&k, 2, RP_FLOAT, 0, NULL, &wy);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    float gwx[4] = {0}, gwy = 0;
    rp_tensor twx = wrap(1, (int64_t[]){4}, gwx), twy = wrap(0, NULL, &gwy);
    rp_tensor *gin3[3] = {NULL, &twx, &twy};
    ck_assert_int_eq(kc_backward(&k, &tg, gin3), RP_OK);
    ck_assert_float_eq(gwx[0], 1);
    ck_assert_float_eq(gwx[1], 0);
    ck_assert_float_eq(gwx[2], 0);
    ck_assert_float_eq(gwx[3], 4);
    ck_assert_float_eq(gwy, 5);
    kc_free(&k);
}
END_TEST

/* A bias gradient sums thousands of terms over broadcast axes; in float it
 * would drift, in double it rounds once. */
START_TEST(grad_reduces_in_double)
{
    enum { R = 4096, C = 8 };
    float *a = calloc(R * C, sizeof *a), *g = malloc(R * C * sizeof *g);
    ck_assert(a && g);
    const float b[C] = {0};
    for (int i = 0; i < R * C; i++)
        g[i] = 0.1f;
    kcase k;
    kc_init(&k, "Add", 14);
    kc_input(&k, 0, RP_FLOAT, 3, (int64_t[]){2, R / 2, C}, a);
    kc_input(&k, 1, RP_FLOAT, 1, (int64_t[]){C}, b);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    float gb[C] = {0};
    rp_tensor tg = wrap(3, (int64_t[]){2, R / 2, C}, g), tgb = wrap(1, (int64_t[]){C}, gb);
    rp_tensor *gin[2] = {NULL, &tgb};
    ck_assert_int_eq(kc_backward(&k, &tg, gin), RP_OK);
    float want = (float)(R * (double)0.1f);
    for (int j = 0; j < C; j++)
        ck_assert_msg(gb[j] == want, "bias gradient %d is %.9g, expected %.9g", j, gb[j], want);
    kc_free(&k);

    /* and a column broadcast (the inner row reduced) */
    float gcol[2] = {0};
    kc_init(&k, "Mul", 14);
    kc_input(&k, 0, RP_FLOAT, 2, (int64_t[]){2, R * C / 2}, g);
    const float ones[2] = {1, 1};
    kc_input(&k, 1, RP_FLOAT, 2, (int64_t[]){2, 1}, ones);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    rp_tensor tg2 = wrap(2, (int64_t[]){2, R * C / 2}, g), tgc = wrap(2, (int64_t[]){2, 1}, gcol);
    rp_tensor *gin2[2] = {NULL, &tgc};
    ck_assert_int_eq(kc_backward(&k, &tg2, gin2), RP_OK);
    /* each term g * a is 0.1f * 0.1f rounded to float; their sum, in double */
    float term = 0.1f * 0.1f;
    float want2 = (float)(R * C / 2 * (double)term);
    ck_assert_msg(gcol[0] == want2 && gcol[1] == want2, "column gradient %.9g %.9g, expected %.9g", gcol[0], gcol[1],
                  want2);
    kc_free(&k);

    /* and Where's scalar Y, where the condition is false everywhere */
    const uint8_t no = 0;
    const float zero = 0;
    float gs = 0;
    kc_init(&k, "Where", 16);
    kc_input(&k, 0, RP_BOOL, 0, NULL, &no);
    kc_input(&k, 1, RP_FLOAT, 3, (int64_t[]){2, R / 2, C}, a);
    kc_input(&k, 2, RP_FLOAT, 0, NULL, &zero);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    rp_tensor tgs = wrap(0, NULL, &gs);
    rp_tensor *gin3[3] = {NULL, NULL, &tgs};
    ck_assert_int_eq(kc_backward(&k, &tg, gin3), RP_OK);
    float want3 = (float)(R * C * (double)0.1f);
    ck_assert_msg(gs == want3, "scalar gradient %.9g, expected %.9g", gs, want3);
    kc_free(&k);
    free(a);
    free(g);
}
END_TEST

START_TEST(grad_dtype_errors)
{
    const double a[] = {1, 2}, b[] = {3, 4};
    float g[] = {1, 1}, gx[2] = {0};
    rp_tensor tg = wrap(1, (int64_t[]){2}, g), tgx = wrap(1, (int64_t[]){2}, gx);
    kcase k;
    kc_init(&k, "Mul", 14);
    kc_input(&k, 0, RP_DOUBLE, 1, (int64_t[]){2}, a);
    kc_input(&k, 1, RP_DOUBLE, 1, (int64_t[]){2}, b);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    rp_tensor *gin[2] = {&tgx, NULL};
    ck_assert_int_eq(kc_backward(&k, &tg, gin), RP_ERR_DTYPE);
    ck_assert_ptr_nonnull(strstr(k.err.msg, "float64"));
    ck_assert_ptr_nonnull(strstr(k.err.msg, "float32"));
    ck_assert_ptr_nonnull(strstr(k.err.msg, "test_node"));
    /* nothing wanted: nothing to do, whatever the dtype */
    rp_tensor *none[2] = {NULL, NULL};
    ck_assert_int_eq(kc_backward(&k, &tg, none), RP_OK);
    kc_free(&k);

    kc_init(&k, "Exp", 13);
    kc_input(&k, 0, RP_DOUBLE, 1, (int64_t[]){2}, a);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    ck_assert_int_eq(kc_backward(&k, &tg, gin), RP_ERR_DTYPE);
    kc_free(&k);

    /* Cast to int64 carries no gradient */
    const float xf[] = {1.5f, -2};
    kc_init(&k, "Cast", 13);
    kc_attr(&k, "to", RP_ATTR_INT)->i = RP_INT64;
    kc_input(&k, 0, RP_FLOAT, 1, (int64_t[]){2}, xf);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    ck_assert_int_eq(kc_backward(&k, &tg, gin), RP_OK);
    ck_assert_float_eq(gx[0], 0);
    ck_assert_float_eq(gx[1], 0);
    kc_free(&k);
}
END_TEST

static Suite *elementwise_suite(void)
{
    Suite *s = suite_create("elementwise");
    TCase *tc = tcase_create("kernels");
    tcase_add_test(tc, add_row_and_column_broadcast);
    tcase_add_test(tc, rank0_operands);
    tcase_add_test(tc, broadcast_matches_naive);
    tcase_add_test(tc, shapes_that_do_not_broadcast);
    tcase_add_test(tc, operand_dtype_mismatch);
    tcase_add_test(tc, int_div_truncates);
    tcase_add_test(tc, int_add_wraps);
    tcase_add_test(tc, pow_mixed_types);
    tcase_add_test(tc, variadic_max_and_sum_broadcast);
    tcase_add_test(tc, equal_gives_bool);
    tcase_add_test(tc, where_broadcasts_three_ways);
    tcase_add_test(tc, cast_float_int64_bool);
    tcase_add_test(tc, castlike_takes_second_dtype);
    tcase_add_test(tc, cast_and_pow_saturate);
    tcase_add_test(tc, gelu_exact_and_tanh);
    tcase_add_test(tc, unary_dtype_errors);
    tcase_add_test(tc, relu_sigmoid_values);
    tcase_add_test(tc, clip_inputs_and_attributes);
    suite_add_tcase(s, tc);

    TCase *tg = tcase_create("gradients");
    tcase_add_test(tg, grad_binary_broadcast);
    tcase_add_test(tg, grad_pow);
    tcase_add_test(tg, grad_max_min_sum);
    tcase_add_test(tg, grad_where);
    tcase_add_test(tg, grad_unary);
    tcase_add_test(tg, grad_clip);
    tcase_add_test(tg, grad_cast);
    tcase_add_test(tg, grad_accumulates);
    tcase_add_test(tg, grad_conventions);
    tcase_add_test(tg, grad_reduces_in_double);
    tcase_add_test(tg, grad_dtype_errors);
    tcase_set_timeout(tg, 300);
    suite_add_tcase(s, tg);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(elementwise_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
