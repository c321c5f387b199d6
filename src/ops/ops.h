/* The op table: one row per (op, since_opset) in each src/ops/<family>.c,
 * concatenated by src/ops/registry.c. A row says how many inputs/outputs the
 * op takes, which inputs must be known constants at prepare time, which are
 * not differentiable, and its prepare/forward/backward functions.
 *
 * prepare runs once per node: it parses attributes into a flat params struct
 * (malloc'd, stored in ctx->params, freed by the graph with free()), resolves
 * negative axes, and sets each output's dtype and shape with
 * rp_tensor_set_shape. It sees input data only for constant inputs (data NULL
 * otherwise); inputs listed in const_inputs are guaranteed to have data.
 * forward computes outputs into preallocated buffers; it must not allocate
 * per element and must not read attributes. Kernels know nothing of rules. */
#ifndef RP_OPS_OPS_H
#define RP_OPS_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"
#include "graph/graph.h"

/* What a product does besides A·B when the memory plan fuses it with its
 * neighbours (graph/plan.c); kernels with RP_OPF_FUSES honour it. */
typedef struct rp_product_fusion {
    bool b_transposed; /* in[1] holds B with its last two axes swapped */
    double scale;      /* the product times this */
    bool accumulate;   /* added to what out[0] holds (a bias, prefilled) */
} rp_product_fusion;

typedef struct rp_kctx {
    const rp_node *node;     /* for attributes (prepare only) and messages */
    int opset;               /* the node's domain opset */
    rp_tensor **in;          /* n_in entries; NULL for an omitted optional input */
    int n_in;
    rp_tensor **out;         /* n_out entries; NULL for an omitted optional output */
    int n_out;
    void *params;            /* set by prepare */
    rp_error *err;
    const rp_product_fusion *fusion; /* forward: NULL, or how the plan fused this product */
} rp_kctx;

/* Vector-Jacobian product (filled by the gradient issue): given the forward
 * values in ctx and dL/d(out[k]) in gout[k] (NULL = zero), ADD dL/d(in[i]) into
 * gin[i] (NULL = not wanted). */
typedef rp_status (*rp_backward_fn)(rp_kctx *ctx, rp_tensor *const *gout, rp_tensor *const *gin);

typedef struct rp_op {
    const char *name;
    int since_opset;         /* the row serves opsets >= this, until the next row of the same name */
    int min_in, max_in;
    int min_out, max_out;
    uint32_t const_inputs;   /* bit i: input i must be a constant at prepare */
    uint32_t nondiff_inputs; /* bit i: input i carries no gradient (indices, shapes) */
    uint32_t flags;          /* RP_OPF_* */
    rp_status (*prepare)(rp_kctx *ctx);
    rp_status (*forward)(rp_kctx *ctx);
    rp_backward_fn backward; /* NULL until implemented */
    /* With RP_OPF_ALIAS: whether this node's output 0 is input 0's bytes
     * from *offset on (a Gather of one slice); NULL = always, from 0. */
    bool (*alias_offset)(const rp_kctx *ctx, int64_t *offset);
} rp_op;

/* forward reads only its inputs' shapes (Shape, Size): its outputs are
 * constants as soon as shapes are known, so prepare folds it. */
#define RP_OPF_SHAPE_ONLY 1u
/* What backward reads of the forward values, so that values no gradient
 * reads can share memory (graph/plan.c). Without these, backward may read
 * every input and output. Inputs in nondiff_inputs count as read. */
#define RP_OPF_GRAD_NO_INPUTS 2u    /* reads no differentiable input */
#define RP_OPF_GRAD_NO_OUTPUTS 4u   /* reads no output */
#define RP_OPF_GRAD_OTHER_INPUTS 8u /* the gradient to one input reads only the others (products) */
/* Output 0 holds input 0's bytes unchanged (reshapes), or a contiguous part
 * of them (see alias_offset): the plan may let it share input 0's buffer,
 * and forward then copies nothing. */
#define RP_OPF_ALIAS 16u
/* forward honours rp_kctx.fusion: the plan may let this product read B
 * through the Transpose before it and do the Mul or bias Add after it. */
#define RP_OPF_FUSES 32u

/* Each family file defines its rows and their count. */
#define RP_OP_FAMILY(family) \
    extern const rp_op rp_ops_##family[]; \
    extern const size_t rp_ops_##family##_count;
RP_OP_FAMILY(elementwise)
RP_OP_FAMILY(matmul)
RP_OP_FAMILY(conv)
RP_OP_FAMILY(shape)
RP_OP_FAMILY(reduce)
RP_OP_FAMILY(normalize)
#undef RP_OP_FAMILY

/* The row for op_type in the default domain with the highest since_opset not
 * above opset; NULL if none. */
const rp_op *rp_op_lookup(const char *op_type, int opset);
/* Whether any row exists for op_type (for "unsupported at this opset" vs "unknown op"). */
int rp_op_known(const char *op_type);

/* ---- helpers shared by kernels ---- */

/* Attributes with defaults. rp_attr_ints copies up to cap values into out and
 * returns the count (-1 if absent); a count above cap is an error the caller
 * reports. */
int64_t rp_attr_int(const rp_node *n, const char *name, int64_t dflt);
float rp_attr_float(const rp_node *n, const char *name, float dflt);
const char *rp_attr_string(const rp_node *n, const char *name, const char *dflt);
int rp_attr_ints(const rp_node *n, const char *name, int64_t *out, int cap);

/* Normalise axis into [0, rank); returns RP_ERR_VALUE naming the node if out of range. */
rp_status rp_axis(rp_kctx *c, int64_t axis, int rank, int *out);

/* Failure with the node's name and op prefixed:
 * "node 'attn/Softmax_3' (Softmax, opset 13): <fmt>". */
rp_status rp_kfail(rp_kctx *c, rp_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Numpy broadcasting of two or more shapes into out (rank = max rank). */
rp_status rp_broadcast_shape(rp_kctx *c, const rp_tensor *const *ts, int n, rp_tensor *out);

/* Strides (in elements) of `t` seen through the broadcast shape `out`: 0 on
 * broadcast axes; right-aligned to out's rank. */
void rp_broadcast_strides(const rp_tensor *t, const rp_tensor *out, int64_t *strides);

#endif
