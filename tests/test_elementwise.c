/* Elementwise kernels (src/ops/elementwise.c) called straight through
 * rp_op_lookup with a hand-built rp_kctx (no graph, no loader), on cases
 * small enough to check by hand, plus broadcasts checked against a naive
 * index loop. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

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
    tcase_add_test(tc, gelu_exact_and_tanh);
    tcase_add_test(tc, unary_dtype_errors);
    tcase_add_test(tc, relu_sigmoid_values);
    tcase_add_test(tc, clip_inputs_and_attributes);
    suite_add_tcase(s, tc);
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
