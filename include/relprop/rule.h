/* relprop relevance rules — the public API for people who write LRP rules.
 *
 * A rule decides how the relevance arriving at one node's outputs is sent
 * back to the node's inputs. relprop walks the ONNX graph from the logits to
 * the pixels and, at every node, calls the rule the active rule set gives it.
 * The built-in rules (docs/rules.md lists them with their formulas) use
 * exactly this API; a plugin — a shared object with one exported function —
 * adds more.
 *
 * The story of a rule, in the order relprop calls it:
 *
 *     prepare(node, params, &state, &scratch_floats, err)
 *         once per node when a rule set is assigned, before any run: look at
 *         the node (op, attributes, which inputs are constants, shapes,
 *         constant weights), refuse nodes the rule does not fit with a clear
 *         message, precompute what is worth keeping (W+, W-) in *state, and
 *         say how many floats of scratch apply needs.
 *     apply(ctx)
 *         once per explained class: read the forward values
 *         (rp_rule_input/rp_rule_output), the relevance at the outputs
 *         (rp_rule_relevance_out), and ADD the inputs' relevance into
 *         rp_rule_relevance_in(ctx, i) — several consumers of one value add
 *         into the same buffer. Use rp_rule_scratch for temporaries: apply
 *         runs once per class and should not allocate.
 *     free_state(state)
 *         when the assignment goes away.
 *
 * A plugin defines its rules as `const rp_rule` objects and registers them:
 *
 *     #include <relprop/rule.h>
 *     static rp_status my_apply(rp_rule_ctx *c) { ... }
 *     static const rp_rule my_rule = {.name = "my_rule", .summary = "...", .apply = my_apply};
 *     RP_RULE_PLUGIN_EXPORT rp_status relprop_rule_plugin_register(rp_rule_registry *reg, rp_error *err)
 *     {
 *         return rp_rule_register(reg, &my_rule, err);
 *     }
 *
 * built with `cc -shared -fPIC my.c $(pkg-config --cflags --libs relprop)`
 * and loaded with rp_rule_registry_load_plugin (CLI: --plugin ./my.so).
 * examples/plugin/ is a complete one to copy.
 *
 * Conventions as in relprop.h: fallible functions return RP_OK or an error
 * code and fill *err with one line naming the node, op and rule; nothing
 * prints or exits. Tensors are float32 unless a rule checks otherwise.
 */
#ifndef RELPROP_RULE_H
#define RELPROP_RULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relprop/relprop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever rp_rule, rp_rule_params or the meaning of a function below
 * changes. A plugin records the version it was compiled with in every
 * rp_rule_register call; relprop refuses a plugin built for another one.
 * The entry point relprop_rule_plugin_register and rp_rule_register_abi keep
 * their signatures across versions so that the check itself always works. */
#define RP_RULE_ABI_VERSION 1

/* ---- parameters ---- */

#define RP_RULE_MAX_PARAMS 8
#define RP_RULE_PARAM_NAME_MAX 32

/* Named numbers a rule reads (epsilon, gamma, alpha, beta, low, high, or a
 * plugin's own), filled from the rule set: a built-in set's table or the
 * "params" object of a JSON entry. A parameter the rule set does not give
 * takes the rule's default. */
typedef struct rp_rule_param_item {
    char name[RP_RULE_PARAM_NAME_MAX];
    double value;
} rp_rule_param_item;

typedef struct rp_rule_params {
    int n;
    rp_rule_param_item items[RP_RULE_MAX_PARAMS];
} rp_rule_params;

/* The value of parameter `name`, or dflt when it is not given. p may be NULL. */
double rp_rule_param(const rp_rule_params *p, const char *name, double dflt);
bool rp_rule_param_given(const rp_rule_params *p, const char *name);
/* Set (or replace) a parameter. RP_ERR_ARG if the name is too long or the
 * table is full. */
rp_status rp_rule_param_set(rp_rule_params *p, const char *name, double value, rp_error *err);
/* "alpha=2 beta=1" into buf (always NUL-terminated; "" when there are none). */
char *rp_rule_params_format(const rp_rule_params *p, char *buf, size_t len);

/* ---- the node, as a rule sees it ---- */

/* Opaque: one node of the prepared graph. Valid while the model is. */
typedef struct rp_rule_node rp_rule_node;

const char *rp_rule_node_name(const rp_rule_node *n);
const char *rp_rule_node_op(const rp_rule_node *n);
int rp_rule_node_opset(const rp_rule_node *n);
/* What the node is to LRP, decided from the graph's structure: "first_conv",
 * "linear", "bias", "product", "sum", "region", "data", "unary", "unknown".
 * A "region" is a normalisation or activation the exporter decomposed into
 * primitive ops; the rule then sees it as ONE unary node whose input 0 is the
 * region's input and whose outputs are those of its last node (op and name
 * are the last node's). Such a node has no gradient (see rp_rule_vjp). */
const char *rp_rule_node_kind(const rp_rule_node *n);
int rp_rule_node_input_count(const rp_rule_node *n);
int rp_rule_node_output_count(const rp_rule_node *n);
/* dtype and shape of input i / output k; NULL for an omitted optional one.
 * For constants (weights, biases) data holds the values; for activations the
 * data is only meaningful during apply (use rp_rule_input there). */
const rp_tensor *rp_rule_node_input(const rp_rule_node *n, int i);
const rp_tensor *rp_rule_node_output(const rp_rule_node *n, int k);
/* True for initializers, Constant outputs and values folded at load time. */
bool rp_rule_node_input_is_constant(const rp_rule_node *n, int i);
/* Whether relprop has the op's vector-Jacobian product (rp_rule_vjp works). */
bool rp_rule_node_has_gradient(const rp_rule_node *n);
/* Attributes, with defaults when absent. rp_rule_node_attr_ints copies up to
 * cap values and returns the count (-1 if absent). */
int64_t rp_rule_node_attr_int(const rp_rule_node *n, const char *name, int64_t dflt);
float rp_rule_node_attr_float(const rp_rule_node *n, const char *name, float dflt);
const char *rp_rule_node_attr_string(const rp_rule_node *n, const char *name, const char *dflt);
int rp_rule_node_attr_ints(const rp_rule_node *n, const char *name, int64_t *out, int cap);
/* For prepare: fail with "node 'NAME' (OP): <message>" in err. Returns code. */
rp_status rp_rule_node_fail(const rp_rule_node *n, rp_error *err, rp_status code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- one application ---- */

/* Opaque: one call of apply. */
typedef struct rp_rule_ctx rp_rule_ctx;

const rp_rule_node *rp_rule_ctx_node(const rp_rule_ctx *c);
const rp_rule_params *rp_rule_ctx_params(const rp_rule_ctx *c);
void *rp_rule_ctx_state(const rp_rule_ctx *c);
/* Forward values of this run: input i, output k (NULL where omitted). A rule
 * that declares what it reads (RP_RULE_READS_*, below) may read only those:
 * the others' buffers are shared with other values after the forward pass. */
const rp_tensor *rp_rule_input(const rp_rule_ctx *c, int i);
const rp_tensor *rp_rule_output(const rp_rule_ctx *c, int k);
/* Relevance arriving at output k; NULL when none arrives there. */
const rp_tensor *rp_rule_relevance_out(const rp_rule_ctx *c, int k);
/* Where input i's relevance goes, shaped like the input: ADD into it. NULL
 * means nobody needs it (a constant, an index, or a value below what the
 * methods asked for): relevance sent there is dropped. With the conservation
 * check on, constant summands (the constant of an Add/Sub/Concat, a Gemm's C,
 * a Conv's B) get a buffer too, so the report can say how much relevance a
 * rule gives to biases; it is dropped afterwards. */
rp_tensor *rp_rule_relevance_in(const rp_rule_ctx *c, int i);
/* d y_t / d output k and d y_t / d input i of this class's gradient pass, or
 * NULL when it was not computed. A rule whose flags include
 * RP_RULE_NEEDS_GRADIENT always gets them on every value relevance reaches. */
const rp_tensor *rp_rule_output_gradient(const rp_rule_ctx *c, int k);
const rp_tensor *rp_rule_input_gradient(const rp_rule_ctx *c, int i);
/* Fail with "node 'NAME' (OP): <message>". Returns code. */
rp_status rp_rule_fail(rp_rule_ctx *c, rp_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- helpers ---- */

/* The reference implementation's safe division: 0 where b == 0, else
 * a / (b + 1e-9) (dividing by 1e-9 if b + 1e-9 is 0), in double precision. */
static inline double rp_sdiv(double a, double b)
{
    if (b == 0.0)
        return 0.0;
    double d = b + 1e-9;
    return a / (d == 0.0 ? 1e-9 : d);
}

/* The epsilon rule's stabilised division a / (b + eps * sign(b)), sign(0) =
 * +1; 0 when the denominator is exactly 0 (only possible with eps = 0). */
static inline double rp_stabilized_div(double a, double b, double eps)
{
    double d = b + (b >= 0 ? eps : -eps);
    return d == 0.0 ? 0.0 : a / d;
}

/* Vector-Jacobian product of the node at its own forward values:
 * gin[i] += J_i^T gout, for i with gin[i] != NULL (gout[k] NULL = zero).
 * For a Conv this is the transposed convolution, for MatMul/Gemm the GEMM
 * with the transposed operand. Fails naming the node if relprop has no
 * gradient for the op or the node is a region. */
rp_status rp_rule_vjp(rp_rule_ctx *c, rp_tensor *const *gout, rp_tensor *const *gin);
/* The node's forward / vjp evaluated with some inputs replaced: in_override
 * has one entry per input, NULL = the node's own input. This is how rules
 * compute x+ W+ or convT(S, W+) with the node's own kernel, attributes and
 * shapes. forward_with's out has one entry per output and needs a buffer
 * (scratch) for every output the node has: the node's own outputs hold the
 * forward values other nodes read and must not be overwritten. vjp_with's
 * out may be NULL (the kernel's backward reads the node's outputs, e.g.
 * Softmax's, and then sees the node's own). */
rp_status rp_rule_forward_with(rp_rule_ctx *c, rp_tensor *const *in_override, rp_tensor *const *out);
rp_status rp_rule_vjp_with(rp_rule_ctx *c, rp_tensor *const *in_override, rp_tensor *const *out,
                           rp_tensor *const *gout, rp_tensor *const *gin);

/* A float32 tensor shaped like `like` on the next count floats of the
 * scratch memory (from *offset, which advances). Its data is NULL when the
 * rule asks for more than its prepare declared — check and fail. The
 * contents are garbage: set them. */
rp_tensor rp_rule_scratch(rp_rule_ctx *c, size_t *offset, const rp_tensor *like);

/* Elementwise helpers on float32 tensors of equal element count. */
void rp_rule_fill(rp_tensor *t, float v);
/* out = rp_sdiv(num, den) */
void rp_rule_sdiv(rp_tensor *out, const rp_tensor *num, const rp_tensor *den);
/* out = rp_stabilized_div(num, den, eps) */
void rp_rule_stabilized_div(rp_tensor *out, const rp_tensor *num, const rp_tensor *den, double eps);
/* dst += coef * a * b (b may be NULL: dst += coef * a) */
void rp_rule_add_product(rp_tensor *dst, const rp_tensor *a, const rp_tensor *b, double coef);
/* Sum of all elements, accumulated in double. */
double rp_rule_tensor_sum(const rp_tensor *t);
/* dst += src summed over the axes along which dst is broadcast to src's
 * shape (numpy rules; equal shapes: plain add). RP_ERR_SHAPE if dst does not
 * broadcast to src. */
rp_status rp_rule_add_reduced(rp_rule_ctx *c, rp_tensor *dst, const rp_tensor *src);
/* Row-major single-precision GEMM: C = alpha op(A) op(B) + beta C, op = the
 * transpose when trans_*; A is m x k after op, B k x n, C m x n (OpenBLAS). */
void rp_rule_gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *cm, int ldc);

/* ---- rules ---- */

/* flags */
#define RP_RULE_NEEDS_GRADIENT 1u /* compute the class's gradient on every value relevance reaches */
/* What apply reads of its node's forward values. relprop lets values that
 * nothing reads after the forward pass share memory; a rule without
 * RP_RULE_READS_DECLARED is taken to read every input and output of its node
 * (safe, and what a plugin gets unless it says otherwise). With it, only:
 *   RP_RULE_READS_INPUTS   rp_rule_input, or the inputs forward_with and
 *                          vjp_with do not override
 *   RP_RULE_READS_OUTPUTS  rp_rule_output
 *   RP_RULE_READS_VJP      rp_rule_vjp / rp_rule_vjp_with: whatever the op's
 *                          gradient reads
 * Declaring too little is a bug that shows as garbage (NaN in debug builds)
 * in the values read. */
#define RP_RULE_READS_DECLARED 2u
#define RP_RULE_READS_INPUTS 4u
#define RP_RULE_READS_OUTPUTS 8u
#define RP_RULE_READS_VJP 16u

typedef struct rp_rule {
    const char *name;    /* [A-Za-z0-9_.-]+, unique among built-ins and loaded plugins */
    const char *summary; /* one line: the formula in words */
    /* The parameters the rule reads, space-separated ("alpha beta"); a rule
     * set that gives any other is refused. NULL = none. */
    const char *params;
    unsigned flags;
    /* Optional: once per node before any run (see the story above). *state
     * and *scratch_floats start at NULL and 0. A rule that does not fit the
     * node fails here, naming the node and op. */
    rp_status (*prepare)(const rp_rule_node *node, const rp_rule_params *params, void **state,
                         size_t *scratch_floats, rp_error *err);
    rp_status (*apply)(rp_rule_ctx *c);
    void (*free_state)(void *state);
    /* Optional: whether the rule, with these parameters, should conserve
     * relevance at a node (sum over inputs == sum over outputs, constants'
     * shares included). The conservation check flags nodes where such a rule
     * does not. NULL = the rule does not claim conservation. */
    bool (*conserves)(const rp_rule_params *params);
} rp_rule;

/* For rp_rule.conserves: always true. */
bool rp_rule_conserves_always(const rp_rule_params *params);

/* ---- registries and plugins ---- */

/* The rules a rule set may name: the built-in ones plus those of the plugins
 * loaded into the registry. Rule sets (rp_explain_options.rules) resolve rule
 * names through a registry; NULL there means built-in rules only. */
typedef struct rp_rule_registry rp_rule_registry;

rp_status rp_rule_registry_create(rp_rule_registry **out, rp_error *err);
/* Release the caller's reference. Models that were explained with rules of
 * this registry keep it (and its plugins loaded) until they are freed or use
 * another rule set; then the plugins are closed. NULL is harmless. */
void rp_rule_registry_free(rp_rule_registry *reg);

/* Load a plugin: dlopen the file, call its relprop_rule_plugin_register with
 * this registry. Fails — and leaves the registry as it was — if the file
 * cannot be opened, has no such function, was built for another
 * RP_RULE_ABI_VERSION, registers a rule whose name is taken, or registers
 * nothing. Loading the same file twice is a no-op. */
rp_status rp_rule_registry_load_plugin(rp_rule_registry *reg, const char *path, rp_error *err);

/* All rules a registry offers (reg NULL: the built-ins), in order: built-ins
 * first, then plugins' rules in registration order. */
int rp_rule_registry_count(const rp_rule_registry *reg);
const rp_rule *rp_rule_registry_get(const rp_rule_registry *reg, int i);
/* By name; NULL if there is none. */
const rp_rule *rp_rule_registry_find(const rp_rule_registry *reg, const char *name);
/* The plugin file a rule came from, or NULL for a built-in. */
const char *rp_rule_registry_origin(const rp_rule_registry *reg, int i);

/* Called by a plugin's registration function (use the rp_rule_register
 * macro, which passes the ABI version and struct size the plugin was
 * compiled with). The rule is copied; its functions must stay valid while the
 * plugin is loaded. */
rp_status rp_rule_register_abi(rp_rule_registry *reg, int abi_version, size_t rule_size, const rp_rule *rule,
                               rp_error *err);
#define rp_rule_register(reg, rule, err) \
    rp_rule_register_abi((reg), RP_RULE_ABI_VERSION, sizeof(rp_rule), (rule), (err))

/* The one function a plugin exports. */
#define RP_RULE_PLUGIN_SYMBOL "relprop_rule_plugin_register"
#define RP_RULE_PLUGIN_EXPORT __attribute__((visibility("default")))
typedef rp_status (*rp_rule_plugin_fn)(rp_rule_registry *reg, rp_error *err);

/* ---- rule sets ---- */

/* Built-in rule sets, for listings: "paper", "attnlrp", "epsilon", ... */
int rp_rule_set_count(void);
const char *rp_rule_set_name(int i);
const char *rp_rule_set_summary(int i);

#ifdef __cplusplus
}
#endif
#endif
