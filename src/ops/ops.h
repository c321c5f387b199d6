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

/* What an op does, in the terms rule assignment, the relevance walk and
 * structure detection ask about. The rows say it; nothing outside src/ops
 * keeps lists of op names. */
typedef enum rp_op_role {
    RP_ROLE_UNSET,       /* a row that forgot to say (test_op_table fails on it) */
    RP_ROLE_NONE,        /* computes shapes or constants: never on a relevance path (Shape, Range) */
    RP_ROLE_MOVE,        /* moves elements without changing them (Reshape, Transpose, Slice, Concat, Gather) */
    RP_ROLE_PASS,        /* hands every element on in place, as it is or converted (Identity, Dropout, Cast) */
    RP_ROLE_POOL,        /* sums or averages elements along axes (ReduceSum, ReduceMean) */
    RP_ROLE_MAP,         /* a function of one activation, elementwise or along an axis (Relu, Softmax, LayerNorm) */
    RP_ROLE_SUM,         /* adds its inputs (Add, Sub, Sum) */
    RP_ROLE_CONTRACTION, /* sums products of two operands, linear in each (MatMul, Gemm, Conv, Einsum) */
    RP_ROLE_PRODUCT,     /* multiplies elementwise (Mul) */
    RP_ROLE_QUOTIENT,    /* divides elementwise (Div) */
    RP_ROLE_OTHER,       /* none of these (Pow, Max, Where, Equal, ReduceMax) */
} rp_op_role;

/* An input mask covering every input, however many (variadic ops). */
#define RP_IN_ALL UINT32_MAX

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
    rp_backward_fn backward; /* NULL: the op has no gradient (its outputs are shapes or constants) */
    /* With RP_OPF_ALIAS: whether this node's output 0 is input 0's bytes
     * from *offset on (a Gather of one slice); NULL = always, from 0. */
    bool (*alias_offset)(const rp_kctx *ctx, int64_t *offset);
    /* ---- what the op means ---- */
    rp_op_role role;
    uint32_t summand_inputs; /* bit i: input i is added into the output (Add's, Concat's, Gemm's C); RP_IN_ALL */
    /* RP_ROLE_MOVE ops whose every element goes to at most one place only for
     * some constant inputs (Gather's indices): whether this node's do. in[k]
     * is input k's tensor if it is a constant, else NULL. NULL function:
     * RP_OPF_MOVES_ONCE alone decides. */
    bool (*moves_once)(const rp_node *node, const rp_tensor *const *in);
} rp_op;

/* One row of an op family's table: the name, the first opset it serves, then
 * designated initialisers for the rest (.min_in, .max_in, .role, ...). One
 * output; RP_OP_OUTS for ops with optional or several outputs. */
#define RP_OP(op_name, since, ...) {.name = (op_name), .since_opset = (since), .min_out = 1, .max_out = 1, __VA_ARGS__}
#define RP_OP_OUTS(op_name, since, out_min, out_max, ...) \
    {.name = (op_name), .since_opset = (since), .min_out = (out_min), .max_out = (out_max), __VA_ARGS__}

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
/* Every input element goes to at most one output element, unchanged, so
 * both sides of the node hold the same numbers (Reshape, Transpose, Slice,
 * Concat; Gather per node, see moves_once). */
#define RP_OPF_MOVES_ONCE 64u
/* Input 1 is subtracted (Sub). */
#define RP_OPF_SUBTRACTS 128u
/* A piece that exporters spell a normalisation or an activation out with
 * (LayerNorm as ReduceMean, Sub, Pow, Sqrt, Div; GELU as Div, Erf, Add,
 * Mul): rule assignment treats a chain of them on one activation as one
 * region. */
#define RP_OPF_SPELLS_NORM 256u

/* Each family file defines its rows and their count; rp_op_families walks
 * them all (test_op_table checks every row). */
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

typedef struct rp_op_family {
    const rp_op *rows;
    size_t count;
} rp_op_family;
/* The families, their count in *n. */
const rp_op_family *rp_op_families(int *n);

/* The row for op_type in the default domain with the highest since_opset not
 * above opset; NULL if none. */
const rp_op *rp_op_lookup(const char *op_type, int opset);
/* Whether any row exists for op_type (for "unsupported at this opset" vs "unknown op"). */
int rp_op_known(const char *op_type);

/* Per-input facts of a row; op NULL (an unsupported op) has none. */
static inline bool rp_op_input_nondiff(const rp_op *op, int k)
{
    return op && k >= 0 && (k < 32 ? (op->nondiff_inputs >> k) & 1u : op->nondiff_inputs == RP_IN_ALL);
}
static inline bool rp_op_input_summand(const rp_op *op, int k)
{
    return op && k >= 0 && (k < 32 ? (op->summand_inputs >> k) & 1u : op->summand_inputs == RP_IN_ALL);
}
static inline rp_op_role rp_op_role_of(const rp_op *op)
{
    return op ? op->role : RP_ROLE_OTHER;
}
/* Whether this node moves each element at most once (see RP_OPF_MOVES_ONCE);
 * in as for rp_op.moves_once. */
bool rp_op_moves_once(const rp_op *op, const rp_node *node, const rp_tensor *const *in);

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
