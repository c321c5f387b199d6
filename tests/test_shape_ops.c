/* Shape and data-movement kernels (src/ops/shape.c) called straight through
 * rp_op_lookup with a hand-built rp_kctx (no graph, no loader). Expected
 * values are worked out by hand in the comments, so a wrong clamp, stride or
 * axis shows up as a concrete wrong number. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

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
