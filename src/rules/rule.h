/* Relevance rules: how LRP relevance arriving at a node's outputs is sent
 * back to its inputs (METHOD.md §2). One rule per file in src/rules; the
 * table in src/rules/registry.c lists them by name.
 *
 * A rule sees one node through rp_rule_ctx — its op, attributes, forward
 * input/output values, and the relevance at its outputs — and ADDS relevance
 * into rel_in[i] for every input i whose rel_in[i] is non-NULL (constant
 * inputs and inputs nobody needs get NULL: relevance sent there is dropped).
 * Rules use the helpers below (vector-Jacobian product of the node, safe
 * division, GEMM) and the scratch memory the engine hands them; they never
 * allocate per run and never exit. This interface is meant to become the
 * public plugin API (include/relprop/rule.h) unchanged in spirit. */
#ifndef RP_RULES_RULE_H
#define RP_RULES_RULE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"
#include "core/tensor.h"
#include "graph/graph.h"
#include "ops/ops.h"

/* Parameters a rule may read; the assignment fills them from the rule set. */
typedef struct rp_rule_params {
    double alpha, beta;  /* alpha-beta (paper default alpha 1, beta 0) */
    double epsilon;      /* epsilon rule */
    double gamma;        /* gamma rule */
    double low, high;    /* z^B bounds; both 0 = take min/max of the input */
    bool bounds_given;
} rp_rule_params;

typedef struct rp_rule_ctx {
    const rp_graph *graph;
    const rp_node *node;
    rp_kctx *k;                    /* forward values (k->in, k->out), op params, error sink */
    rp_tensor *const *rel_out;     /* n_out entries, NULL where no relevance arrived */
    rp_tensor *const *rel_in;      /* n_in entries, ADD into these; NULL = dropped */
    const rp_rule_params *params;
    void *state;                   /* from rule->prepare, per node */
    float *scratch;                /* scratch_floats floats owned by the engine, reused by every node */
    size_t scratch_floats;
    rp_error *err;
} rp_rule_ctx;

typedef struct rp_rule {
    const char *name;
    const char *summary;           /* one line for `inspect --rules` and docs */
    /* Optional, once per node before any run: validate that the rule fits the
     * node (e.g. a linear rule needs a constant weight), precompute state
     * (W+ / W-), and say how much scratch apply needs. */
    rp_status (*prepare)(const rp_graph *g, const rp_node *n, const rp_rule_params *p, void **state,
                         size_t *scratch_floats, rp_error *err);
    rp_status (*apply)(rp_rule_ctx *c);
    void (*free_state)(void *state);
} rp_rule;

/* Built-in rules by name (NULL if none). */
const rp_rule *rp_rule_lookup(const char *name);

/* The built-in rules, one per file in src/rules (listed in registry.c). */
extern const rp_rule rp_rule_identity;   /* identity.c: R_x = R (summed over broadcast axes) */
extern const rp_rule rp_rule_route;      /* route.c: R_x = x * vjp(sdiv(R, z)), data movement */
extern const rp_rule rp_rule_alpha_beta; /* alpha_beta.c: linear map with constant weight */
extern const rp_rule rp_rule_zb;         /* zb.c: z^B for the conv on the pixels */
extern const rp_rule rp_rule_sum;        /* sum.c: normalised sum rule for Add/Sub */
extern const rp_rule rp_rule_product;    /* product.c: halved product rule for U·V of activations */

/* ---- helpers for rule writers ---- */

/* The reference implementation's safe division: 0 where b == 0, else
 * a / (b + 1e-9) (dividing by 1e-9 if b + 1e-9 is 0), in double precision. */
static inline double rp_sdiv(double a, double b)
{
    if (b == 0.0)
        return 0.0;
    double d = b + 1e-9;
    return a / (d == 0.0 ? 1e-9 : d);
}

/* Vector-Jacobian product of the node: gin[i] += J_i^T gout (NULL entries
 * skipped), at the node's own forward values. Fails with a clear message if
 * the op has no backward. */
rp_status rp_rule_vjp(rp_rule_ctx *c, rp_tensor *const *gout, rp_tensor *const *gin);

/* The node's forward / backward evaluated with some inputs replaced:
 * in_override has n_in entries, NULL = keep the node's own input. This is how
 * rules compute e.g. x+ W+ and its transpose product with the node's own
 * kernel (same shapes, same attributes). out has n_out entries (NULL = the
 * kernel must still get a buffer: pass scratch for every output). */
rp_status rp_rule_forward_with(rp_rule_ctx *c, rp_tensor *const *in_override, rp_tensor *const *out);
rp_status rp_rule_vjp_with(rp_rule_ctx *c, rp_tensor *const *in_override, rp_tensor *const *out,
                           rp_tensor *const *gout, rp_tensor *const *gin);

/* A float32 tensor shaped like `like` whose data is the next count floats of
 * c->scratch from *offset (advanced). Rules ask for enough scratch in
 * prepare; running out is an internal error reported by the engine. */
rp_tensor rp_rule_scratch(rp_rule_ctx *c, size_t *offset, const rp_tensor *like);

#endif
