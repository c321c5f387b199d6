/* Shape and data-movement kernels (src/ops/shape.c) called straight through
 * rp_op_lookup with a hand-built rp_kctx (no graph, no loader). Expected
 * values are worked out by hand in the comments, so a wrong clamp, stride or
 * axis shows up as a concrete wrong number. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "support/gradcheck.h"

/* ---- a tiny harness: one node, its attributes, its tensors ---- */

#define MAX_ATTR 4
#define MAX_IO 5

typedef struct kcase {
    rp_attr attr[MAX_ATTR];
    int64_t ints[MAX_ATTR][RP_MAX_RANK];
    rp_node node;
    rp_tensor in[MAX_IO], out[MAX_IO];
    rp_tensor *inp[MAX_IO], *outp[MAX_IO];
    rp_kctx ctx;
    rp_error err;
} kcase;

static void kc_init(kcase *k, const char *op, int opset, int n_out)
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
    k->ctx.n_out = n_out;
    for (int i = 0; i < n_out; i++)
        k->outp[i] = &k->out[i];
    k->ctx.err = &k->err;
}

static void kc_attr_int(kcase *k, const char *name, int64_t v)
{
    rp_attr *a = &k->attr[k->node.n_attr++];
    a->name = (char *)name;
    a->type = RP_ATTR_INT;
    a->i = v;
}

static void kc_attr_ints(kcase *k, const char *name, const int64_t *v, int n)
{
    int slot = k->node.n_attr++;
    rp_attr *a = &k->attr[slot];
    memcpy(k->ints[slot], v, sizeof(int64_t) * (size_t)n);
    a->name = (char *)name;
    a->type = RP_ATTR_INTS;
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

static void kc_input_i64(kcase *k, int i, int n, const int64_t *v)
{
    int64_t d[1] = {n};
    kc_input(k, i, RP_INT64, 1, d, v);
}

/* Look the op up, prepare, allocate outputs. Returns prepare's status. */
static rp_status kc_prepare(kcase *k)
{
    const rp_op *op = rp_op_lookup(k->node.op_type, k->ctx.opset);
    ck_assert_msg(op != NULL, "no row for %s at opset %d", k->node.op_type, k->ctx.opset);
    k->node.op = op;
    ck_assert_int_ge(k->ctx.n_in, op->min_in);
    ck_assert_int_le(k->ctx.n_in, op->max_in);
    rp_status st = op->prepare(&k->ctx);
    if (st)
        return st;
    for (int i = 0; i < k->ctx.n_out; i++) {
        rp_tensor *t = k->outp[i];
        if (t && t->count > 0) {
            t->data = calloc((size_t)t->count, rp_dtype_size(t->dtype));
            ck_assert(t->data != NULL);
        }
    }
    return RP_OK;
}

static rp_status kc_run(kcase *k)
{
    rp_status st = kc_prepare(k);
    if (st)
        return st;
    return k->node.op->forward(&k->ctx);
}

static void kc_free(kcase *k)
{
    free(k->ctx.params);
    for (int i = 0; i < MAX_IO; i++)
        free(k->out[i].data);
}

static void check_shape(const rp_tensor *t, int rank, const int64_t *dims)
{
    ck_assert_int_eq(t->rank, rank);
    for (int d = 0; d < rank; d++)
        ck_assert_int_eq(t->dims[d], dims[d]);
}

static void check_f32(const rp_tensor *t, const float *want, int n)
{
    ck_assert_int_eq(t->dtype, RP_FLOAT);
    ck_assert_int_eq(t->count, n);
    for (int i = 0; i < n; i++)
        ck_assert_msg(((const float *)t->data)[i] == want[i], "element %d: got %g, want %g", i,
                      ((const float *)t->data)[i], want[i]);
}

static void check_i64(const rp_tensor *t, const int64_t *want, int n)
{
    ck_assert_int_eq(t->dtype, RP_INT64);
    ck_assert_int_eq(t->count, n);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(((const int64_t *)t->data)[i], want[i]);
}

static float iota[120];

static void setup(void)
{
    for (int i = 0; i < 120; i++)
        iota[i] = (float)i;
}

/* ---- Slice ---- */

START_TEST(slice_negative_step_clamps)
{
    /* x = 0..9. start 20 clamps to 9 (dim-1 going back); end INT64_MIN
     * becomes -1 (the "before the first element" end). Step -3: 9,6,3,0. */
    kcase k;
    kc_init(&k, "Slice", 13, 1);
    int64_t xd[1] = {10}, st[1] = {20}, en[1] = {INT64_MIN}, ax[1] = {0}, sp[1] = {-3};
    kc_input(&k, 0, RP_FLOAT, 1, xd, iota);
    kc_input_i64(&k, 1, 1, st);
    kc_input_i64(&k, 2, 1, en);
    kc_input_i64(&k, 3, 1, ax);
    kc_input_i64(&k, 4, 1, sp);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    int64_t od[1] = {4};
    check_shape(&k.out[0], 1, od);
    check_f32(&k.out[0], (const float[]){9, 6, 3, 0}, 4);
    kc_free(&k);
}
END_TEST

START_TEST(slice_2d_mixed_steps)
{
    /* x = 3x4 of 0..11. Axis 0: [0, INT64_MAX) step 1 = all rows.
     * Axis -1 (=1): start 10 clamps to 3, end -5 -> -1 -> clamps to -1,
     * step -2: columns 3, 1. Rows: [3,1] [7,5] [11,9]. */
    kcase k;
    kc_init(&k, "Slice", 13, 1);
    int64_t xd[2] = {3, 4}, st[2] = {0, 10}, en[2] = {INT64_MAX, -5}, ax[2] = {0, -1}, sp[2] = {1, -2};
    kc_input(&k, 0, RP_FLOAT, 2, xd, iota);
    kc_input_i64(&k, 1, 2, st);
    kc_input_i64(&k, 2, 2, en);
    kc_input_i64(&k, 3, 2, ax);
    kc_input_i64(&k, 4, 2, sp);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    int64_t od[2] = {3, 2};
    check_shape(&k.out[0], 2, od);
    check_f32(&k.out[0], (const float[]){3, 1, 7, 5, 11, 9}, 6);
    kc_free(&k);
}
END_TEST

START_TEST(slice_start_past_end_is_empty)
{
    /* start 5 on a dim of 4 clamps to 4 = end: zero elements, no failure. */
    kcase k;
    kc_init(&k, "Slice", 13, 1);
    int64_t xd[2] = {3, 4}, st[1] = {5}, en[1] = {10}, ax[1] = {1};
    kc_input(&k, 0, RP_FLOAT, 2, xd, iota);
    kc_input_i64(&k, 1, 1, st);
    kc_input_i64(&k, 2, 1, en);
    kc_input_i64(&k, 3, 1, ax);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    int64_t od[2] = {3, 0};
    check_shape(&k.out[0], 2, od);
    kc_free(&k);
}
END_TEST

START_TEST(slice_opset1_attributes)
{
    /* ViT CLS pick: x[:, 0:1] on 2x3 -> [[0],[3]]; ends INT64_MAX on axis 0. */
    kcase k;
    kc_init(&k, "Slice", 1, 1);
    int64_t xd[2] = {2, 3}, st[2] = {0, 0}, en[2] = {INT64_MAX, 1};
    kc_input(&k, 0, RP_FLOAT, 2, xd, iota);
    kc_attr_ints(&k, "starts", st, 2);
    kc_attr_ints(&k, "ends", en, 2);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    check_f32(&k.out[0], (const float[]){0, 3}, 2);
    kc_free(&k);
}
END_TEST

START_TEST(slice_zero_step_fails)
{
    kcase k;
    kc_init(&k, "Slice", 13, 1);
    int64_t xd[1] = {10}, st[1] = {0}, en[1] = {5}, ax[1] = {0}, sp[1] = {0};
    kc_input(&k, 0, RP_FLOAT, 1, xd, iota);
    kc_input_i64(&k, 1, 1, st);
    kc_input_i64(&k, 2, 1, en);
    kc_input_i64(&k, 3, 1, ax);
    kc_input_i64(&k, 4, 1, sp);
    ck_assert_int_eq(kc_run(&k), RP_ERR_VALUE);
    ck_assert_ptr_nonnull(strstr(k.err.msg, "test_node"));
    kc_free(&k);
}
END_TEST

/* ---- Gather ---- */

START_TEST(gather_negative_indices)
{
    /* data 3x2 = [[0,1],[2,3],[4,5]], axis 0, int32 indices [-1, 0] -> [[4,5],[0,1]]. */
    kcase k;
    kc_init(&k, "Gather", 13, 1);
    int64_t xd[2] = {3, 2}, id[1] = {2};
    int32_t idx[2] = {-1, 0};
    kc_input(&k, 0, RP_FLOAT, 2, xd, iota);
    kc_input(&k, 1, RP_INT32, 1, id, NULL); /* runtime input: no data at prepare */
    ck_assert_int_eq(kc_prepare(&k), RP_OK);
    k.in[1].data = idx;
    ck_assert_int_eq(k.node.op->forward(&k.ctx), RP_OK);
    int64_t od[2] = {2, 2};
    check_shape(&k.out[0], 2, od);
    check_f32(&k.out[0], (const float[]){4, 5, 0, 1}, 4);
    kc_free(&k);
}
END_TEST

START_TEST(gather_scalar_index_axis1)
{
    /* Same data, axis 1, scalar index -1: the last column [1,3,5], rank 1. */
    kcase k;
    kc_init(&k, "Gather", 13, 1);
    int64_t xd[2] = {3, 2}, idx = -1;
    kc_input(&k, 0, RP_FLOAT, 2, xd, iota);
    kc_input(&k, 1, RP_INT64, 0, xd, &idx);
    kc_attr_int(&k, "axis", 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    int64_t od[1] = {3};
    check_shape(&k.out[0], 1, od);
    check_f32(&k.out[0], (const float[]){1, 3, 5}, 3);
    kc_free(&k);
}
END_TEST

START_TEST(gather_out_of_range)
{
    kcase k;
    kc_init(&k, "Gather", 13, 1);
    int64_t xd[2] = {3, 2}, id[1] = {2}, idx[2] = {0, 3};
    kc_input(&k, 0, RP_FLOAT, 2, xd, iota);
    kc_input(&k, 1, RP_INT64, 1, id, idx);
    ck_assert_int_eq(kc_run(&k), RP_ERR_VALUE);
    ck_assert_msg(strstr(k.err.msg, "index 3") != NULL, "message: %s", k.err.msg);
    kc_free(&k);

    /* -4 wraps to -1: also out of range for a dim of 3. */
    kc_init(&k, "Gather", 13, 1);
    idx[1] = -4;
    kc_input(&k, 0, RP_FLOAT, 2, xd, iota);
    kc_input(&k, 1, RP_INT64, 1, id, idx);
    ck_assert_int_eq(kc_run(&k), RP_ERR_VALUE);
    ck_assert_msg(strstr(k.err.msg, "index -4") != NULL, "message: %s", k.err.msg);
    kc_free(&k);
}
END_TEST

/* Constant indices are checked by prepare (a load error naming the node);
 * runtime ones (no data at prepare) only when run. */
START_TEST(gather_constant_indices_checked_at_prepare)
{
    kcase k;
    kc_init(&k, "Gather", 13, 1);
    int64_t xd[2] = {3, 2}, id[1] = {2}, idx[2] = {1, (int64_t)1 << 40};
    kc_input(&k, 0, RP_FLOAT, 2, xd, iota);
    kc_input(&k, 1, RP_INT64, 1, id, idx);
    ck_assert_int_eq(kc_prepare(&k), RP_ERR_VALUE);
    ck_assert_msg(strstr(k.err.msg, "test_node") && strstr(k.err.msg, "index 1099511627776 (at position 1"),
                  "message: %s", k.err.msg);
    kc_free(&k);

    kc_init(&k, "Gather", 13, 1);
    kc_input(&k, 0, RP_FLOAT, 2, xd, iota);
    kc_input(&k, 1, RP_INT64, 1, id, NULL);
    ck_assert_int_eq(kc_prepare(&k), RP_OK);
    k.in[1].data = idx;
    ck_assert_int_eq(k.node.op->forward(&k.ctx), RP_ERR_VALUE);
    kc_free(&k);

    /* In range, both ends, int32 too. */
    kc_init(&k, "Gather", 13, 1);
    int32_t i32[2] = {-3, 2};
    kc_input(&k, 0, RP_FLOAT, 2, xd, iota);
    kc_input(&k, 1, RP_INT32, 1, id, i32);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    check_f32(&k.out[0], (const float[]){0, 1, 4, 5}, 4);
    kc_free(&k);
}
END_TEST

/* ---- Reshape ---- */

START_TEST(reshape_zero_and_minus_one)
{
    /* [2,3,4] with shape [0,-1]: 0 copies 2, -1 = 24/2 = 12. */
    kcase k;
    kc_init(&k, "Reshape", 13, 1);
    int64_t xd[3] = {2, 3, 4}, sh[2] = {0, -1};
    kc_input(&k, 0, RP_FLOAT, 3, xd, iota);
    kc_input_i64(&k, 1, 2, sh);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    int64_t od[2] = {2, 12};
    check_shape(&k.out[0], 2, od);
    ck_assert_float_eq(((float *)k.out[0].data)[23], 23.0f);
    kc_free(&k);

    /* [4,0,-1]: index 1 copies the input's dim 1 (3), -1 = 24/12 = 2. */
    kc_init(&k, "Reshape", 5, 1);
    int64_t sh2[3] = {4, 0, -1};
    kc_input(&k, 0, RP_FLOAT, 3, xd, iota);
    kc_input_i64(&k, 1, 3, sh2);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    int64_t od2[3] = {4, 3, 2};
    check_shape(&k.out[0], 3, od2);
    kc_free(&k);
}
END_TEST

START_TEST(reshape_errors)
{
    kcase k;
    int64_t xd[3] = {2, 3, 4};
    /* allowzero=1: the 0 is a real zero, so -1 cannot be inferred. */
    kc_init(&k, "Reshape", 14, 1);
    int64_t sh[2] = {0, -1};
    kc_input(&k, 0, RP_FLOAT, 3, xd, iota);
    kc_input_i64(&k, 1, 2, sh);
    kc_attr_int(&k, "allowzero", 1);
    ck_assert_int_eq(kc_run(&k), RP_ERR_SHAPE);
    kc_free(&k);

    kc_init(&k, "Reshape", 14, 1);
    int64_t two[2] = {-1, -1};
    kc_input(&k, 0, RP_FLOAT, 3, xd, iota);
    kc_input_i64(&k, 1, 2, two);
    ck_assert_int_eq(kc_run(&k), RP_ERR_SHAPE);
    kc_free(&k);

    kc_init(&k, "Reshape", 14, 1);
    int64_t bad[2] = {5, 5};
    kc_input(&k, 0, RP_FLOAT, 3, xd, iota);
    kc_input_i64(&k, 1, 2, bad);
    ck_assert_int_eq(kc_run(&k), RP_ERR_SHAPE);
    kc_free(&k);
}
END_TEST

/* ---- Transpose ---- */

START_TEST(transpose_vit_qkv)
{
    /* timm ViT: qkv [B,N,3,H,D] -> permute(2,0,3,1,4) -> [3,B,H,N,D].
     * x = [1,2,3,2,2] holding its flat index; x[b,n,t,h,d] = ((n*3+t)*2+h)*2+d. */
    kcase k;
    kc_init(&k, "Transpose", 13, 1);
    int64_t xd[5] = {1, 2, 3, 2, 2}, perm[5] = {2, 0, 3, 1, 4};
    kc_input(&k, 0, RP_FLOAT, 5, xd, iota);
    kc_attr_ints(&k, "perm", perm, 5);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    int64_t od[5] = {3, 1, 2, 2, 2};
    check_shape(&k.out[0], 5, od);
    const float *y = k.out[0].data;
    /* y[t,0,h,n,d] sits at ((t*2+h)*2+n)*2+d. y[2,0,1,1,0] = x[0,1,2,1,0] = ((3+2)*2+1)*2 = 22. */
    ck_assert_float_eq(y[((2 * 2 + 1) * 2 + 1) * 2 + 0], 22.0f);
    /* y[1,0,0,1,1] = x[0,1,1,0,1] = ((3+1)*2+0)*2+1 = 17. */
    ck_assert_float_eq(y[((1 * 2 + 0) * 2 + 1) * 2 + 1], 17.0f);
    for (int t = 0; t < 3; t++)
        for (int h = 0; h < 2; h++)
            for (int n = 0; n < 2; n++)
                for (int d = 0; d < 2; d++)
                    ck_assert_float_eq(y[((t * 2 + h) * 2 + n) * 2 + d], (float)(((n * 3 + t) * 2 + h) * 2 + d));
    kc_free(&k);
}
END_TEST

START_TEST(transpose_default_reverses)
{
    /* 2x3 -> 3x2: [[0,3],[1,4],[2,5]]. */
    kcase k;
    kc_init(&k, "Transpose", 13, 1);
    int64_t xd[2] = {2, 3};
    kc_input(&k, 0, RP_FLOAT, 2, xd, iota);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    check_f32(&k.out[0], (const float[]){0, 3, 1, 4, 2, 5}, 6);
    kc_free(&k);

    kc_init(&k, "Transpose", 13, 1);
    int64_t bad[2] = {0, 0};
    kc_input(&k, 0, RP_FLOAT, 2, xd, iota);
    kc_attr_ints(&k, "perm", bad, 2);
    ck_assert_int_eq(kc_run(&k), RP_ERR_VALUE);
    kc_free(&k);
}
END_TEST

START_TEST(transpose_int64_and_bool)
{
    /* Element-size generic: int64 2x2 and bool 2x3 transposes. */
    kcase k;
    kc_init(&k, "Transpose", 13, 1);
    int64_t xd[2] = {2, 2}, v[4] = {10, 20, 30, 40};
    kc_input(&k, 0, RP_INT64, 2, xd, v);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    check_i64(&k.out[0], (const int64_t[]){10, 30, 20, 40}, 4);
    kc_free(&k);

    kc_init(&k, "Transpose", 13, 1);
    int64_t bd[2] = {2, 3};
    uint8_t b[6] = {1, 0, 0, 0, 1, 1};
    kc_input(&k, 0, RP_BOOL, 2, bd, b);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    const uint8_t want[6] = {1, 0, 0, 1, 0, 1};
    ck_assert_mem_eq(k.out[0].data, want, 6);
    kc_free(&k);
}
END_TEST

/* ---- Split ---- */

START_TEST(split_uneven_opset18)
{
    /* 7 into num_outputs=3: chunks of ceil(7/3) = 3, last 1: [0,1,2] [3,4,5] [6]. */
    kcase k;
    kc_init(&k, "Split", 18, 3);
    int64_t xd[1] = {7};
    kc_input(&k, 0, RP_FLOAT, 1, xd, iota);
    kc_attr_int(&k, "num_outputs", 3);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    check_f32(&k.out[0], (const float[]){0, 1, 2}, 3);
    check_f32(&k.out[1], (const float[]){3, 4, 5}, 3);
    check_f32(&k.out[2], (const float[]){6}, 1);
    kc_free(&k);
}
END_TEST

START_TEST(split_sizes_axis1)
{
    /* 2x5 split [1,4] on axis -1: [[0],[5]] and [[1,2,3,4],[6,7,8,9]]. */
    kcase k;
    kc_init(&k, "Split", 13, 2);
    int64_t xd[2] = {2, 5}, sp[2] = {1, 4};
    kc_input(&k, 0, RP_FLOAT, 2, xd, iota);
    kc_input_i64(&k, 1, 2, sp);
    kc_attr_int(&k, "axis", -1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    check_f32(&k.out[0], (const float[]){0, 5}, 2);
    check_f32(&k.out[1], (const float[]){1, 2, 3, 4, 6, 7, 8, 9}, 8);
    kc_free(&k);

    /* Opset 11: split as an attribute; sizes that do not add up fail. */
    kc_init(&k, "Split", 11, 2);
    int64_t bad[2] = {1, 3};
    kc_input(&k, 0, RP_FLOAT, 2, xd, iota);
    kc_attr_ints(&k, "split", bad, 2);
    kc_attr_int(&k, "axis", 1);
    ck_assert_int_eq(kc_run(&k), RP_ERR_VALUE);
    kc_free(&k);

    /* Opset 13 with no split: must divide evenly (5 into 2 does not). */
    kc_init(&k, "Split", 13, 2);
    kc_input(&k, 0, RP_FLOAT, 2, xd, iota);
    kc_attr_int(&k, "axis", 1);
    ck_assert_int_eq(kc_run(&k), RP_ERR_VALUE);
    kc_free(&k);
}
END_TEST

/* ---- Concat ---- */

START_TEST(concat_zero_size_input)
{
    /* [2,0] ++ [2,2] ++ [2,1] on axis 1: [[0,1,10],[2,3,11]]. */
    kcase k;
    kc_init(&k, "Concat", 13, 1);
    int64_t ad[2] = {2, 0}, bd[2] = {2, 2}, cd[2] = {2, 1};
    const float b[4] = {0, 1, 2, 3}, cc[2] = {10, 11};
    kc_input(&k, 0, RP_FLOAT, 2, ad, NULL);
    kc_input(&k, 1, RP_FLOAT, 2, bd, b);
    kc_input(&k, 2, RP_FLOAT, 2, cd, cc);
    kc_attr_int(&k, "axis", -1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    int64_t od[2] = {2, 3};
    check_shape(&k.out[0], 2, od);
    check_f32(&k.out[0], (const float[]){0, 1, 10, 2, 3, 11}, 6);
    kc_free(&k);
}
END_TEST

START_TEST(concat_cls_token_axis1)
{
    /* ViT: cls [1,1,2] ++ patches [1,2,2] on axis 1 -> [1,3,2]. Mismatched dims fail. */
    kcase k;
    kc_init(&k, "Concat", 13, 1);
    int64_t ad[3] = {1, 1, 2}, bd[3] = {1, 2, 2};
    const float cls[2] = {-1, -2};
    kc_input(&k, 0, RP_FLOAT, 3, ad, cls);
    kc_input(&k, 1, RP_FLOAT, 3, bd, iota);
    kc_attr_int(&k, "axis", 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    check_f32(&k.out[0], (const float[]){-1, -2, 0, 1, 2, 3}, 6);
    kc_free(&k);

    kc_init(&k, "Concat", 13, 1);
    int64_t cd[3] = {1, 2, 3};
    kc_input(&k, 0, RP_FLOAT, 3, ad, cls);
    kc_input(&k, 1, RP_FLOAT, 3, cd, iota);
    kc_attr_int(&k, "axis", 1);
    ck_assert_int_eq(kc_run(&k), RP_ERR_SHAPE);
    kc_free(&k);
}
END_TEST

/* ---- the rest, briefly ---- */

START_TEST(expand_broadcasts_both_ways)
{
    /* [3,1] expanded by [2,1,4]: shape [2,3,4], row i is x[i] repeated. */
    kcase k;
    kc_init(&k, "Expand", 13, 1);
    int64_t xd[2] = {3, 1}, sh[3] = {2, 1, 4};
    const float x[3] = {7, 8, 9};
    kc_input(&k, 0, RP_FLOAT, 2, xd, x);
    kc_input_i64(&k, 1, 3, sh);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    int64_t od[3] = {2, 3, 4};
    check_shape(&k.out[0], 3, od);
    const float *y = k.out[0].data;
    for (int i = 0; i < 24; i++)
        ck_assert_float_eq(y[i], x[(i / 4) % 3]);
    kc_free(&k);
}
END_TEST

START_TEST(squeeze_unsqueeze)
{
    kcase k;
    kc_init(&k, "Unsqueeze", 13, 1);
    int64_t xd[2] = {3, 4}, ax[2] = {-1, 0};
    kc_input(&k, 0, RP_FLOAT, 2, xd, iota);
    kc_input_i64(&k, 1, 2, ax);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    int64_t od[4] = {1, 3, 4, 1};
    check_shape(&k.out[0], 4, od);
    kc_free(&k);

    kc_init(&k, "Squeeze", 11, 1);
    int64_t sd[4] = {1, 3, 1, 4}, sax[1] = {-2};
    kc_input(&k, 0, RP_FLOAT, 4, sd, iota);
    kc_attr_ints(&k, "axes", sax, 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    int64_t sod[3] = {1, 3, 4};
    check_shape(&k.out[0], 3, sod);
    kc_free(&k);

    /* Squeezing a dim of 3 fails. */
    kc_init(&k, "Squeeze", 13, 1);
    int64_t one[1] = {1};
    kc_input(&k, 0, RP_FLOAT, 4, sd, iota);
    kc_input_i64(&k, 1, 1, one);
    ck_assert_int_eq(kc_run(&k), RP_ERR_SHAPE);
    kc_free(&k);
}
END_TEST

START_TEST(shape_size_range)
{
    /* Shape-15 start=-2: the last two dims of [2,3,4] = [3,4]. */
    kcase k;
    kc_init(&k, "Shape", 15, 1);
    int64_t xd[3] = {2, 3, 4};
    kc_input(&k, 0, RP_FLOAT, 3, xd, NULL);
    kc_attr_int(&k, "start", -2);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    check_i64(&k.out[0], (const int64_t[]){3, 4}, 2);
    kc_free(&k);

    kc_init(&k, "Size", 13, 1);
    kc_input(&k, 0, RP_FLOAT, 3, xd, NULL);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    ck_assert_int_eq(k.out[0].rank, 0);
    check_i64(&k.out[0], (const int64_t[]){24}, 1);
    kc_free(&k);

    /* Range(10, 1, -4) = [10, 6, 2] (ceil(9/4) = 3). */
    kc_init(&k, "Range", 11, 1);
    int64_t s = 10, l = 1, d = -4;
    kc_input(&k, 0, RP_INT64, 0, xd, &s);
    kc_input(&k, 1, RP_INT64, 0, xd, &l);
    kc_input(&k, 2, RP_INT64, 0, xd, &d);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    check_i64(&k.out[0], (const int64_t[]){10, 6, 2}, 3);
    kc_free(&k);
}
END_TEST

START_TEST(dropout_inference_only)
{
    kcase k;
    kc_init(&k, "Dropout", 13, 2);
    int64_t xd[1] = {3};
    uint8_t train = 0;
    kc_input(&k, 0, RP_FLOAT, 1, xd, iota);
    kc_input(&k, 2, RP_BOOL, 0, xd, &train);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    check_f32(&k.out[0], (const float[]){0, 1, 2}, 3);
    ck_assert_int_eq(k.out[1].dtype, RP_BOOL);
    ck_assert_mem_eq(k.out[1].data, ((const uint8_t[]){1, 1, 1}), 3);
    kc_free(&k);

    kc_init(&k, "Dropout", 13, 1);
    train = 1;
    kc_input(&k, 0, RP_FLOAT, 1, xd, iota);
    kc_input(&k, 2, RP_BOOL, 0, xd, &train);
    ck_assert_int_eq(kc_run(&k), RP_ERR_UNSUPPORTED);
    kc_free(&k);

    /* training_mode is bool in ONNX; a float one (inf, 3.4e38: the fuzzer's)
     * is refused, not converted to an integer. */
    float inf = INFINITY;
    double big = 3.4e38;
    kc_init(&k, "Dropout", 13, 1);
    kc_input(&k, 0, RP_FLOAT, 1, xd, iota);
    kc_input(&k, 2, RP_FLOAT, 0, xd, &inf);
    ck_assert_int_eq(kc_run(&k), RP_ERR_DTYPE);
    ck_assert_msg(strstr(k.err.msg, "training_mode must be a bool scalar, got float32"), "%s", k.err.msg);
    kc_free(&k);
    kc_init(&k, "Dropout", 12, 1);
    kc_input(&k, 0, RP_FLOAT, 1, xd, iota);
    kc_input(&k, 2, RP_DOUBLE, 0, xd, &big);
    ck_assert_int_eq(kc_run(&k), RP_ERR_DTYPE);
    kc_free(&k);
}
END_TEST

START_TEST(constant_and_constantofshape)
{
    kcase k;
    kc_init(&k, "Constant", 13, 1);
    int64_t v[3] = {5, -1, 7};
    kc_attr_ints(&k, "value_ints", v, 3);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    check_i64(&k.out[0], v, 3);
    kc_free(&k);

    kc_init(&k, "ConstantOfShape", 9, 1);
    int64_t sh[2] = {2, 3};
    kc_input_i64(&k, 0, 2, sh);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    check_f32(&k.out[0], (const float[]){0, 0, 0, 0, 0, 0}, 6);
    kc_free(&k);
}
END_TEST

/* ==================================================================== gradients
 *
 * Every backward is checked against central finite differences of
 * L = sum(gy * y) (tests/support/gradcheck), on the shapes a ViT export
 * actually produces; then a few hand-worked values, accumulation (backward
 * ADDS), NULL gradients, and bad gradient buffers. */

#define GRAD_STEP 1e-2
#define GRAD_TOL 1e-5 /* the ops are 0/1 linear maps: only float rounding of the differences remains */

static rp_attr attr_int(const char *name, int64_t v)
{
    return (rp_attr){.name = (char *)name, .type = RP_ATTR_INT, .i = v};
}

static rp_attr attr_ints(const char *name, int64_t *v, int n)
{
    return (rp_attr){.name = (char *)name, .type = RP_ATTR_INTS, .ints = v, .n = n};
}

/* An int64 tensor over caller storage (rank 0 = scalar). */
static rp_tensor i64_tensor(int rank, const int64_t *dims, int64_t *data)
{
    rp_tensor t = {0};
    ck_assert(rp_tensor_set_shape(&t, RP_INT64, rank, dims));
    t.data = data;
    return t;
}

static rp_tensor i64_vec(int n, int64_t *data)
{
    int64_t d[1] = {n};
    return i64_tensor(1, d, data);
}

static void gradcheck_ok(const char *op, int opset, rp_attr *attrs, int n_attrs, rp_tensor **inputs, int n_in,
                         int n_out, unsigned mask)
{
    gradcheck_spec s = {.op = op, .opset = opset, .attrs = attrs, .n_attrs = n_attrs, .inputs = inputs,
                        .n_in = n_in, .n_out = n_out, .check_mask = mask, .step = GRAD_STEP, .tol = GRAD_TOL};
    char why[512] = "";
    ck_assert_msg(gradcheck_run(&s, why, sizeof why), "%s opset %d: %s", op, opset, why);
}

/* Every data-movement row has a backward; the shape/constant producers have none. */
START_TEST(grad_rows_present)
{
    static const char *const with[] = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout",
                                       "Transpose", "Concat", "Split", "Slice", "Gather", "Expand"};
    static const char *const without[] = {"Shape", "Size", "ConstantOfShape", "Constant", "Range"};
    for (size_t r = 0; r < rp_ops_shape_count; r++) {
        const rp_op *op = &rp_ops_shape[r];
        int found = 0;
        for (size_t i = 0; i < sizeof with / sizeof with[0]; i++)
            if (strcmp(op->name, with[i]) == 0) {
                ck_assert_msg(op->backward != NULL, "%s-%d has no backward", op->name, op->since_opset);
                found = 1;
            }
        for (size_t i = 0; i < sizeof without / sizeof without[0]; i++)
            if (strcmp(op->name, without[i]) == 0) {
                ck_assert_msg(op->backward == NULL, "%s-%d should have no backward", op->name, op->since_opset);
                found = 1;
            }
        ck_assert_msg(found, "row %s-%d is in neither list", op->name, op->since_opset);
    }
}
END_TEST

START_TEST(grad_copy_ops)
{
    int64_t xd[3] = {2, 3, 4};
    rp_tensor x = gradcheck_random(3, xd, -1, 1, 1);

    /* Reshape [2,3,4] -> [4,-1] at opset 5 and 14. */
    int64_t sh[2] = {4, -1};
    rp_tensor shape = i64_vec(2, sh);
    rp_tensor *rin[2] = {&x, &shape};
    gradcheck_ok("Reshape", 5, NULL, 0, rin, 2, 1, 1u);
    gradcheck_ok("Reshape", 14, NULL, 0, rin, 2, 1, 1u);

    /* Flatten axis 2: [6,4]; and axis -1 at opset 11. */
    rp_attr fa[1] = {attr_int("axis", 2)};
    rp_tensor *fin[1] = {&x};
    gradcheck_ok("Flatten", 1, fa, 1, fin, 1, 1, 1u);
    fa[0].i = -1;
    gradcheck_ok("Flatten", 11, fa, 1, fin, 1, 1, 1u);

    /* Identity. */
    gradcheck_ok("Identity", 13, NULL, 0, fin, 1, 1, 1u);

    /* Squeeze [1,3,1,4] axes [0,-2] (input at 13, attribute at 11), then Unsqueeze back. */
    int64_t sd[4] = {1, 3, 1, 4}, sax[2] = {0, -2};
    rp_tensor y = gradcheck_random(4, sd, -1, 1, 2);
    rp_tensor axes = i64_vec(2, sax);
    rp_tensor *sin[2] = {&y, &axes};
    gradcheck_ok("Squeeze", 13, NULL, 0, sin, 2, 1, 1u);
    rp_attr sa[1] = {attr_ints("axes", sax, 2)};
    gradcheck_ok("Squeeze", 11, sa, 1, sin, 1, 1, 1u);
    int64_t ud[2] = {3, 4}, uax[2] = {0, -1};
    rp_tensor u = gradcheck_random(2, ud, -1, 1, 3);
    rp_tensor uaxes = i64_vec(2, uax);
    rp_tensor *uin[2] = {&u, &uaxes};
    gradcheck_ok("Unsqueeze", 13, NULL, 0, uin, 2, 1, 1u);

    /* Dropout at 13 with a mask output and training_mode = false; at 7 without mask. */
    uint8_t train = 0;
    rp_tensor tm = {0};
    ck_assert(rp_tensor_set_shape(&tm, RP_BOOL, 0, NULL));
    tm.data = &train;
    rp_tensor *din[3] = {&x, NULL, &tm};
    gradcheck_ok("Dropout", 13, NULL, 0, din, 3, 2, 1u);
    gradcheck_ok("Dropout", 7, NULL, 0, din, 1, 1, 1u);

    rp_tensor_release(&x);
    rp_tensor_release(&y);
    rp_tensor_release(&u);
}
END_TEST

START_TEST(grad_transpose_vit_qkv)
{
    /* timm qkv: [B,N,3,H,D] = [1,65,3,4,24], permute(2,0,3,1,4). */
    int64_t xd[5] = {1, 65, 3, 4, 24}, perm[5] = {2, 0, 3, 1, 4};
    rp_tensor x = gradcheck_random(5, xd, -1, 1, 4);
    rp_attr a[1] = {attr_ints("perm", perm, 5)};
    rp_tensor *in[1] = {&x};
    gradcheck_ok("Transpose", 13, a, 1, in, 1, 1, 1u);
    rp_tensor_release(&x);
}
END_TEST

START_TEST(grad_transpose_strided)
{
    /* No contiguous inner run: default reversal of [2,3,4], k^T of [1,2,5,3]
     * (perm 0,1,3,2), a cyclic [2,3,4,5] -> (1,2,3,0), and a scalar. */
    int64_t ad[3] = {2, 3, 4};
    rp_tensor a = gradcheck_random(3, ad, -1, 1, 5);
    rp_tensor *ain[1] = {&a};
    gradcheck_ok("Transpose", 13, NULL, 0, ain, 1, 1, 1u);

    int64_t bd[4] = {1, 2, 5, 3}, bp[4] = {0, 1, 3, 2};
    rp_tensor b = gradcheck_random(4, bd, -1, 1, 6);
    rp_attr ba[1] = {attr_ints("perm", bp, 4)};
    rp_tensor *bin[1] = {&b};
    gradcheck_ok("Transpose", 13, ba, 1, bin, 1, 1, 1u);

    int64_t cd[4] = {2, 3, 4, 5}, cp[4] = {1, 2, 3, 0};
    rp_tensor cc = gradcheck_random(4, cd, -1, 1, 7);
    rp_attr ca[1] = {attr_ints("perm", cp, 4)};
    rp_tensor *cin[1] = {&cc};
    gradcheck_ok("Transpose", 13, ca, 1, cin, 1, 1, 1u);

    rp_tensor s = gradcheck_random(0, NULL, -1, 1, 8);
    rp_tensor *sin[1] = {&s};
    gradcheck_ok("Transpose", 13, NULL, 0, sin, 1, 1, 1u);

    rp_tensor_release(&a);
    rp_tensor_release(&b);
    rp_tensor_release(&cc);
    rp_tensor_release(&s);
}
END_TEST

START_TEST(grad_gather_vit)
{
    /* q/k/v selection: qkv [3,1,4,65,24], axis 0, scalar index 1 (and -1 = 2). */
    int64_t qd[5] = {3, 1, 4, 65, 24}, which = 1;
    rp_tensor qkv = gradcheck_random(5, qd, -1, 1, 9);
    rp_tensor idx = i64_tensor(0, NULL, &which);
    rp_tensor *qin[2] = {&qkv, &idx};
    gradcheck_ok("Gather", 13, NULL, 0, qin, 2, 1, 1u);
    which = -1;
    gradcheck_ok("Gather", 13, NULL, 0, qin, 2, 1, 1u);

    /* CLS token: x [1,65,96], axis 1, scalar index 0 -> [1,96]. */
    int64_t xd[3] = {1, 65, 96}, zero = 0;
    rp_tensor x = gradcheck_random(3, xd, -1, 1, 10);
    rp_tensor z = i64_tensor(0, NULL, &zero);
    rp_attr a[1] = {attr_int("axis", 1)};
    rp_tensor *xin[2] = {&x, &z};
    gradcheck_ok("Gather", 13, a, 1, xin, 2, 1, 1u);

    rp_tensor_release(&qkv);
    rp_tensor_release(&x);
}
END_TEST

START_TEST(grad_gather_repeated)
{
    /* data [2,4,3], axis 1, int32 indices [[2,0],[-2,2]]: 2 is taken three
     * times (-2 wraps to 2), 1 and 3 never; opset 1 and 13 rows. */
    int64_t xd[3] = {2, 4, 3}, id[2] = {2, 2};
    int32_t ind[4] = {2, 0, -2, 2};
    rp_tensor x = gradcheck_random(3, xd, -1, 1, 11);
    rp_tensor it = {0};
    ck_assert(rp_tensor_set_shape(&it, RP_INT32, 2, id));
    it.data = ind;
    rp_attr a[1] = {attr_int("axis", -2)};
    rp_tensor *in[2] = {&x, &it};
    gradcheck_ok("Gather", 13, a, 1, in, 2, 1, 1u);
    gradcheck_ok("Gather", 1, a, 1, in, 2, 1, 1u);
    rp_tensor_release(&x);
}
END_TEST

START_TEST(grad_slice_steps)
{
    /* [4,10]: axis 1 from 1 by 2 (1,3,5,7,9), axis 0 reversed from the end
     * by -1 (3,2,1,0). Then steps -3 and 3 with clamped bounds on [5,7,2]. */
    int64_t xd[2] = {4, 10}, st[2] = {1, -1}, en[2] = {INT64_MAX, INT64_MIN}, ax[2] = {1, 0}, sp[2] = {2, -1};
    rp_tensor x = gradcheck_random(2, xd, -1, 1, 12);
    rp_tensor ts = i64_vec(2, st), te = i64_vec(2, en), ta = i64_vec(2, ax), tp = i64_vec(2, sp);
    rp_tensor *in[5] = {&x, &ts, &te, &ta, &tp};
    gradcheck_ok("Slice", 13, NULL, 0, in, 5, 1, 1u);
    gradcheck_ok("Slice", 10, NULL, 0, in, 5, 1, 1u);

    int64_t yd[3] = {5, 7, 2}, st2[2] = {100, 1}, en2[2] = {-100, 6}, ax2[2] = {1, -3}, sp2[2] = {-3, 3};
    rp_tensor y = gradcheck_random(3, yd, -1, 1, 13);
    rp_tensor ts2 = i64_vec(2, st2), te2 = i64_vec(2, en2), ta2 = i64_vec(2, ax2), tp2 = i64_vec(2, sp2);
    rp_tensor *in2[5] = {&y, &ts2, &te2, &ta2, &tp2};
    gradcheck_ok("Slice", 13, NULL, 0, in2, 5, 1, 1u);

    /* Negative steps on the innermost axis (reversed runs): x[:, ::-1] and x[:, -2::-2] on [3,8]. */
    int64_t zd[2] = {3, 8}, st3[1] = {-1}, en3[1] = {INT64_MIN}, ax3[1] = {-1}, sp3[1] = {-1};
    rp_tensor z = gradcheck_random(2, zd, -1, 1, 25);
    rp_tensor ts3 = i64_vec(1, st3), te3 = i64_vec(1, en3), ta3 = i64_vec(1, ax3), tp3 = i64_vec(1, sp3);
    rp_tensor *in3[5] = {&z, &ts3, &te3, &ta3, &tp3};
    gradcheck_ok("Slice", 13, NULL, 0, in3, 5, 1, 1u);
    st3[0] = -2;
    sp3[0] = -2;
    gradcheck_ok("Slice", 13, NULL, 0, in3, 5, 1, 1u);

    /* Opset 1 (attributes, no steps): the ViT CLS pick x[:, 0:1] on [1,65,96]. */
    int64_t vd[3] = {1, 65, 96}, s1[1] = {0}, e1[1] = {1}, a1[1] = {1};
    rp_tensor v = gradcheck_random(3, vd, -1, 1, 14);
    rp_attr at[3] = {attr_ints("starts", s1, 1), attr_ints("ends", e1, 1), attr_ints("axes", a1, 1)};
    rp_tensor *vin[1] = {&v};
    gradcheck_ok("Slice", 1, at, 3, vin, 1, 1, 1u);

    rp_tensor_release(&x);
    rp_tensor_release(&y);
    rp_tensor_release(&z);
    rp_tensor_release(&v);
}
END_TEST

START_TEST(grad_concat)
{
    /* ViT: cls [1,1,96] ++ patches [1,64,96] on axis 1. */
    int64_t ad[3] = {1, 1, 96}, bd[3] = {1, 64, 96};
    rp_tensor a = gradcheck_random(3, ad, -1, 1, 15), b = gradcheck_random(3, bd, -1, 1, 16);
    rp_attr ax[1] = {attr_int("axis", 1)};
    rp_tensor *in[2] = {&a, &b};
    gradcheck_ok("Concat", 13, ax, 1, in, 2, 1, 3u);

    /* Three inputs, one empty, on the last axis of [2,.]: outer > 1 and only some checked. */
    int64_t e0[2] = {2, 0}, e1[2] = {2, 2}, e2[2] = {2, 3};
    rp_tensor p = gradcheck_random(2, e0, -1, 1, 17), q = gradcheck_random(2, e1, -1, 1, 18),
              r = gradcheck_random(2, e2, -1, 1, 19);
    rp_attr ax2[1] = {attr_int("axis", -1)};
    rp_tensor *in2[3] = {&p, &q, &r};
    gradcheck_ok("Concat", 13, ax2, 1, in2, 3, 1, 7u);
    gradcheck_ok("Concat", 4, ax2, 1, in2, 3, 1, 4u);

    rp_tensor_release(&a);
    rp_tensor_release(&b);
    rp_tensor_release(&p);
    rp_tensor_release(&q);
    rp_tensor_release(&r);
}
END_TEST

START_TEST(grad_split_uneven)
{
    /* [2,7] on axis 1, num_outputs 3 (opset 18): 3, 3, 1. */
    int64_t xd[2] = {2, 7};
    rp_tensor x = gradcheck_random(2, xd, -1, 1, 20);
    rp_attr a[2] = {attr_int("axis", 1), attr_int("num_outputs", 3)};
    rp_tensor *in[1] = {&x};
    gradcheck_ok("Split", 18, a, 2, in, 1, 3, 1u);

    /* Sizes [1,4,2] as an input (13) and as an attribute (11), axis -1. */
    int64_t sz[3] = {1, 4, 2};
    rp_tensor ts = i64_vec(3, sz);
    rp_tensor *in2[2] = {&x, &ts};
    rp_attr a2[2] = {attr_int("axis", -1), attr_ints("split", sz, 3)};
    gradcheck_ok("Split", 13, a2, 1, in2, 2, 3, 1u);
    gradcheck_ok("Split", 11, a2, 2, in2, 1, 3, 1u);

    /* qkv-style: [1,65,288] into three [1,65,96] on axis 2. */
    int64_t qd[3] = {1, 65, 288};
    rp_tensor q = gradcheck_random(3, qd, -1, 1, 21);
    rp_attr a3[1] = {attr_int("axis", 2)};
    rp_tensor *in3[1] = {&q};
    gradcheck_ok("Split", 13, a3, 1, in3, 1, 3, 1u);

    rp_tensor_release(&x);
    rp_tensor_release(&q);
}
END_TEST

START_TEST(grad_expand)
{
    /* [1,1,96] -> [1,1,96] (no-op), [1,3] -> [2,3], [3,1] by [2,1,4] -> [2,3,4]
     * (a summed inner axis and a new outer one). */
    int64_t ad[3] = {1, 1, 96}, bd[2] = {1, 3}, cd[2] = {3, 1};
    int64_t as[3] = {1, 1, 96}, bs[2] = {2, 3}, cs[3] = {2, 1, 4};
    rp_tensor a = gradcheck_random(3, ad, -1, 1, 22), b = gradcheck_random(2, bd, -1, 1, 23),
              cc = gradcheck_random(2, cd, -1, 1, 24);
    rp_tensor ta = i64_vec(3, as), tb = i64_vec(2, bs), tc = i64_vec(3, cs);
    rp_tensor *ain[2] = {&a, &ta}, *bin[2] = {&b, &tb}, *cin[2] = {&cc, &tc};
    gradcheck_ok("Expand", 13, NULL, 0, ain, 2, 1, 1u);
    gradcheck_ok("Expand", 8, NULL, 0, bin, 2, 1, 1u);
    gradcheck_ok("Expand", 13, NULL, 0, cin, 2, 1, 1u);
    rp_tensor_release(&a);
    rp_tensor_release(&b);
    rp_tensor_release(&cc);
}
END_TEST

/* ---- exact values, accumulation, NULLs, bad buffers (through the kcase harness) ---- */

/* Float gradient buffers for a prepared kcase: gout[k] shaped like out[k],
 * filled with 1, 2, 3, ... (exact in float, so sums compare with ==);
 * gin[i] zeroed, for the inputs in mask. */
typedef struct kgrads {
    rp_tensor gout[MAX_IO], gin[MAX_IO];
    rp_tensor *goutp[MAX_IO], *ginp[MAX_IO];
} kgrads;

static void kg_init(kgrads *g, kcase *k, unsigned mask)
{
    memset(g, 0, sizeof *g);
    for (int i = 0; i < k->ctx.n_out; i++) {
        const rp_tensor *o = k->outp[i];
        if (!o || o->dtype != RP_FLOAT)
            continue;
        ck_assert_int_eq(rp_tensor_alloc(&g->gout[i], RP_FLOAT, o->rank, o->dims, NULL), RP_OK);
        for (int64_t e = 0; e < o->count; e++)
            ((float *)g->gout[i].data)[e] = (float)(e + 1 + 100 * i);
        g->goutp[i] = &g->gout[i];
    }
    for (int i = 0; i < k->ctx.n_in; i++)
        if (mask & (1u << i)) {
            ck_assert_int_eq(rp_tensor_alloc(&g->gin[i], RP_FLOAT, k->in[i].rank, k->in[i].dims, NULL), RP_OK);
            g->ginp[i] = &g->gin[i];
        }
}

static void kg_free(kgrads *g)
{
    for (int i = 0; i < MAX_IO; i++) {
        rp_tensor_release(&g->gout[i]);
        rp_tensor_release(&g->gin[i]);
    }
}

static rp_status kg_backward(kcase *k, kgrads *g)
{
    return k->node.op->backward(&k->ctx, g->goutp, g->ginp);
}

START_TEST(grad_exact_values)
{
    kcase k;
    kgrads g;

    /* Gather [0,2,0,-1] from x[3]: gout 1,2,3,4 -> gin [1+3, 0, 2+4]. */
    kc_init(&k, "Gather", 13, 1);
    int64_t xd[1] = {3}, idx[4] = {0, 2, 0, -1};
    kc_input(&k, 0, RP_FLOAT, 1, xd, iota);
    kc_input_i64(&k, 1, 4, idx);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    kg_init(&g, &k, 1u);
    ck_assert_int_eq(kg_backward(&k, &g), RP_OK);
    check_f32(&g.gin[0], (const float[]){4, 0, 6}, 3);
    kg_free(&g);
    kc_free(&k);

    /* Expand [3,1] -> [3,4]: gout rows 1..4, 5..8, 9..12 sum to 10, 26, 42. */
    kc_init(&k, "Expand", 13, 1);
    int64_t ed[2] = {3, 1}, es[2] = {3, 4};
    kc_input(&k, 0, RP_FLOAT, 2, ed, iota);
    kc_input_i64(&k, 1, 2, es);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    kg_init(&g, &k, 1u);
    ck_assert_int_eq(kg_backward(&k, &g), RP_OK);
    check_f32(&g.gin[0], (const float[]){10, 26, 42}, 3);
    kg_free(&g);
    kc_free(&k);

    /* Expand [1,3] -> [2,3] (outer broadcast): [1+4, 2+5, 3+6]. */
    kc_init(&k, "Expand", 13, 1);
    int64_t fd[2] = {1, 3}, fs[2] = {2, 3};
    kc_input(&k, 0, RP_FLOAT, 2, fd, iota);
    kc_input_i64(&k, 1, 2, fs);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    kg_init(&g, &k, 1u);
    ck_assert_int_eq(kg_backward(&k, &g), RP_OK);
    check_f32(&g.gin[0], (const float[]){5, 7, 9}, 3);
    kg_free(&g);
    kc_free(&k);

    /* Slice x[0..9] from 8 by -3: 8, 5, 2 get gout 1, 2, 3; the rest 0. */
    kc_init(&k, "Slice", 13, 1);
    int64_t sd[1] = {10}, st[1] = {8}, en[1] = {-100}, sax[1] = {0}, sp[1] = {-3};
    kc_input(&k, 0, RP_FLOAT, 1, sd, iota);
    kc_input_i64(&k, 1, 1, st);
    kc_input_i64(&k, 2, 1, en);
    kc_input_i64(&k, 3, 1, sax);
    kc_input_i64(&k, 4, 1, sp);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    kg_init(&g, &k, 1u);
    ck_assert_int_eq(kg_backward(&k, &g), RP_OK);
    check_f32(&g.gin[0], (const float[]){0, 0, 3, 0, 0, 2, 0, 0, 1, 0}, 10);
    kg_free(&g);
    kc_free(&k);

    /* Transpose 2x3 -> 3x2: gout [[1,2],[3,4],[5,6]] -> gin [[1,3,5],[2,4,6]]. */
    kc_init(&k, "Transpose", 13, 1);
    int64_t td[2] = {2, 3};
    kc_input(&k, 0, RP_FLOAT, 2, td, iota);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    kg_init(&g, &k, 1u);
    ck_assert_int_eq(kg_backward(&k, &g), RP_OK);
    check_f32(&g.gin[0], (const float[]){1, 3, 5, 2, 4, 6}, 6);
    kg_free(&g);
    kc_free(&k);
}
END_TEST

/* Run backward twice from zero: every gin must be exactly twice the first
 * result, which must not be all zero (else the check proves nothing). */
static void check_adds(kcase *k, unsigned mask)
{
    kgrads g;
    kg_init(&g, k, mask);
    ck_assert_int_eq(kg_backward(k, &g), RP_OK);
    float *once[MAX_IO] = {0};
    for (int i = 0; i < MAX_IO; i++)
        if (g.ginp[i] && g.gin[i].count) {
            once[i] = malloc(sizeof(float) * (size_t)g.gin[i].count);
            ck_assert_ptr_nonnull(once[i]);
            memcpy(once[i], g.gin[i].data, sizeof(float) * (size_t)g.gin[i].count);
        }
    ck_assert_int_eq(kg_backward(k, &g), RP_OK);
    for (int i = 0; i < MAX_IO; i++) {
        if (!once[i])
            continue;
        int nonzero = 0;
        for (int64_t e = 0; e < g.gin[i].count; e++) {
            float got = ((float *)g.gin[i].data)[e];
            ck_assert_msg(got == 2 * once[i][e], "%s: input %d [%lld]: %g after two calls, %g after one",
                          k->node.op_type, i, (long long)e, got, once[i][e]);
            nonzero |= once[i][e] != 0;
        }
        ck_assert_msg(nonzero, "%s: input %d got no gradient", k->node.op_type, i);
        free(once[i]);
    }
    kg_free(&g);
}

START_TEST(grad_backward_adds)
{
    kcase k;
    int64_t xd[3] = {2, 3, 4};

    kc_init(&k, "Reshape", 14, 1);
    int64_t sh[1] = {-1};
    kc_input(&k, 0, RP_FLOAT, 3, xd, iota);
    kc_input_i64(&k, 1, 1, sh);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    check_adds(&k, 1u);
    kc_free(&k);

    kc_init(&k, "Dropout", 12, 2);
    kc_input(&k, 0, RP_FLOAT, 3, xd, iota);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    check_adds(&k, 1u);
    kc_free(&k);

    kc_init(&k, "Transpose", 13, 1);
    int64_t perm[3] = {2, 0, 1};
    kc_input(&k, 0, RP_FLOAT, 3, xd, iota);
    kc_attr_ints(&k, "perm", perm, 3);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    check_adds(&k, 1u);
    kc_free(&k);

    kc_init(&k, "Concat", 13, 1);
    int64_t bd[3] = {2, 1, 4};
    kc_input(&k, 0, RP_FLOAT, 3, xd, iota);
    kc_input(&k, 1, RP_FLOAT, 3, bd, iota);
    kc_attr_int(&k, "axis", 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    check_adds(&k, 3u);
    kc_free(&k);

    kc_init(&k, "Split", 13, 2);
    int64_t sp[2] = {1, 2};
    kc_input(&k, 0, RP_FLOAT, 3, xd, iota);
    kc_input_i64(&k, 1, 2, sp);
    kc_attr_int(&k, "axis", 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    check_adds(&k, 1u);
    kc_free(&k);

    kc_init(&k, "Gather", 13, 1);
    int64_t gi[3] = {1, -3, 1};
    kc_input(&k, 0, RP_FLOAT, 3, xd, iota);
    kc_input_i64(&k, 1, 3, gi);
    kc_attr_int(&k, "axis", 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    check_adds(&k, 1u);
    kc_free(&k);

    kc_init(&k, "Slice", 13, 1);
    int64_t st[1] = {-1}, en[1] = {INT64_MIN}, ax[1] = {2}, stp[1] = {-2};
    kc_input(&k, 0, RP_FLOAT, 3, xd, iota);
    kc_input_i64(&k, 1, 1, st);
    kc_input_i64(&k, 2, 1, en);
    kc_input_i64(&k, 3, 1, ax);
    kc_input_i64(&k, 4, 1, stp);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    check_adds(&k, 1u);
    kc_free(&k);

    kc_init(&k, "Expand", 13, 1);
    int64_t ed[2] = {3, 1}, es[3] = {2, 3, 4};
    kc_input(&k, 0, RP_FLOAT, 2, ed, iota);
    kc_input_i64(&k, 1, 3, es);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    check_adds(&k, 1u);
    kc_free(&k);
}
END_TEST

START_TEST(grad_nulls)
{
    /* Split of x[7] into [3,3,1] with only output 1's gradient: gin = [0,0,0,1,2,3,0]. */
    kcase k;
    kgrads g;
    kc_init(&k, "Split", 13, 3);
    int64_t xd[1] = {7}, sz[3] = {3, 3, 1};
    kc_input(&k, 0, RP_FLOAT, 1, xd, iota);
    kc_input_i64(&k, 1, 3, sz);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    kg_init(&g, &k, 1u);
    g.goutp[0] = g.goutp[2] = NULL;
    for (int e = 0; e < 3; e++)
        ((float *)g.gout[1].data)[e] = (float)(e + 1);
    ck_assert_int_eq(kg_backward(&k, &g), RP_OK);
    check_f32(&g.gin[0], (const float[]){0, 0, 0, 1, 2, 3, 0}, 7);

    /* No gradient arriving at all, and none wanted: success, nothing touched. */
    g.goutp[1] = NULL;
    ck_assert_int_eq(kg_backward(&k, &g), RP_OK);
    check_f32(&g.gin[0], (const float[]){0, 0, 0, 1, 2, 3, 0}, 7);
    g.goutp[0] = &g.gout[0];
    g.ginp[0] = NULL;
    ck_assert_int_eq(kg_backward(&k, &g), RP_OK);
    kg_free(&g);
    kc_free(&k);

    /* Concat where only input 1 wants a gradient. */
    kc_init(&k, "Concat", 13, 1);
    int64_t ad[2] = {2, 1}, bd[2] = {2, 2};
    kc_input(&k, 0, RP_FLOAT, 2, ad, iota);
    kc_input(&k, 1, RP_FLOAT, 2, bd, iota);
    kc_attr_int(&k, "axis", 1);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    kg_init(&g, &k, 2u); /* gout = [[1,2,3],[4,5,6]] */
    ck_assert_int_eq(kg_backward(&k, &g), RP_OK);
    check_f32(&g.gin[1], (const float[]){2, 3, 5, 6}, 4);
    kg_free(&g);
    kc_free(&k);
}
END_TEST

START_TEST(grad_shared_value)
{
    /* Concat(x, x): both inputs are one value, so the engine passes the same
     * gradient buffer twice and it must receive both halves: [1+3, 2+4]. */
    kcase k;
    kgrads g;
    kc_init(&k, "Concat", 13, 1);
    int64_t xd[1] = {2};
    kc_input(&k, 0, RP_FLOAT, 1, xd, iota);
    kc_input(&k, 1, RP_FLOAT, 1, xd, iota);
    kc_attr_int(&k, "axis", 0);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    kg_init(&g, &k, 1u);
    g.ginp[1] = g.ginp[0];
    ck_assert_int_eq(kg_backward(&k, &g), RP_OK);
    check_f32(&g.gin[0], (const float[]){4, 6}, 2);
    kg_free(&g);
    kc_free(&k);
}
END_TEST

START_TEST(grad_bad_buffers)
{
    /* A gradient buffer of the wrong shape fails before writing, naming the node. */
    kcase k;
    kgrads g;
    kc_init(&k, "Transpose", 13, 1);
    int64_t xd[2] = {2, 3};
    kc_input(&k, 0, RP_FLOAT, 2, xd, iota);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    kg_init(&g, &k, 1u);
    g.gout[0].dims[0] = 2; /* [2,2]: right rank, wrong shape */
    g.gout[0].dims[1] = 2;
    ck_assert_int_eq(kg_backward(&k, &g), RP_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(k.err.msg, "test_node"));
    check_f32(&g.gin[0], (const float[]){0, 0, 0, 0, 0, 0}, 6);
    kg_free(&g);
    kc_free(&k);

    /* A gradient for an int64 value: only float32 carries one. */
    kc_init(&k, "Transpose", 13, 1);
    int64_t v[6] = {1, 2, 3, 4, 5, 6};
    kc_input(&k, 0, RP_INT64, 2, xd, v);
    ck_assert_int_eq(kc_run(&k), RP_OK);
    kg_init(&g, &k, 1u);
    int64_t od[2] = {3, 2};
    ck_assert_int_eq(rp_tensor_alloc(&g.gout[0], RP_FLOAT, 2, od, NULL), RP_OK);
    g.goutp[0] = &g.gout[0];
    ck_assert_int_eq(kg_backward(&k, &g), RP_ERR_DTYPE);
    kg_free(&g);
    kc_free(&k);
}
END_TEST

static Suite *shape_suite(void)
{
    Suite *s = suite_create("shape_ops");
    TCase *tc = tcase_create("kernels");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, slice_negative_step_clamps);
    tcase_add_test(tc, slice_2d_mixed_steps);
    tcase_add_test(tc, slice_start_past_end_is_empty);
    tcase_add_test(tc, slice_opset1_attributes);
    tcase_add_test(tc, slice_zero_step_fails);
    tcase_add_test(tc, gather_negative_indices);
    tcase_add_test(tc, gather_scalar_index_axis1);
    tcase_add_test(tc, gather_out_of_range);
    tcase_add_test(tc, gather_constant_indices_checked_at_prepare);
    tcase_add_test(tc, reshape_zero_and_minus_one);
    tcase_add_test(tc, reshape_errors);
    tcase_add_test(tc, transpose_vit_qkv);
    tcase_add_test(tc, transpose_default_reverses);
    tcase_add_test(tc, transpose_int64_and_bool);
    tcase_add_test(tc, split_uneven_opset18);
    tcase_add_test(tc, split_sizes_axis1);
    tcase_add_test(tc, concat_zero_size_input);
    tcase_add_test(tc, concat_cls_token_axis1);
    tcase_add_test(tc, expand_broadcasts_both_ways);
    tcase_add_test(tc, squeeze_unsqueeze);
    tcase_add_test(tc, shape_size_range);
    tcase_add_test(tc, dropout_inference_only);
    tcase_add_test(tc, constant_and_constantofshape);
    suite_add_tcase(s, tc);

    TCase *tg = tcase_create("gradients");
    tcase_add_checked_fixture(tg, setup, NULL);
    tcase_set_timeout(tg, 600);
    tcase_add_test(tg, grad_rows_present);
    tcase_add_test(tg, grad_copy_ops);
    tcase_add_test(tg, grad_transpose_vit_qkv);
    tcase_add_test(tg, grad_transpose_strided);
    tcase_add_test(tg, grad_gather_vit);
    tcase_add_test(tg, grad_gather_repeated);
    tcase_add_test(tg, grad_slice_steps);
    tcase_add_test(tg, grad_concat);
    tcase_add_test(tg, grad_split_uneven);
    tcase_add_test(tg, grad_expand);
    tcase_add_test(tg, grad_exact_values);
    tcase_add_test(tg, grad_backward_adds);
    tcase_add_test(tg, grad_nulls);
    tcase_add_test(tg, grad_shared_value);
    tcase_add_test(tg, grad_bad_buffers);
    suite_add_tcase(s, tg);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(shape_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
