/* Relevance rules, inside the library: the public interface
 * (include/relprop/rule.h) plus the definitions of its opaque types, which
 * the built-in rules — one per file in src/rules — read directly. A plugin
 * sees the same structs only through the accessor functions, so their layout
 * can change without an ABI bump.
 *
 * A rule sees one node through rp_rule_ctx — its op, attributes, forward
 * input/output values, and the relevance at its outputs — and ADDS relevance
 * into rel_in[i] for every input i whose rel_in[i] is non-NULL (constant
 * inputs and inputs nobody needs get NULL: relevance sent there is dropped).
 * Rules use the helpers (vector-Jacobian product of the node, safe division,
 * GEMM) and the scratch memory the engine hands them; they never allocate
 * per run and never exit. */
#ifndef RP_RULES_RULE_H
#define RP_RULES_RULE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/error.h"
#include "core/tensor.h"
#include "graph/graph.h"
#include "ops/ops.h"
#include "relprop/rule.h"

/* The node a rule is prepared for. For a decomposed region, `node` is a
 * synthetic node owned by the assignment: one input (the region's input),
 * the outputs of the region's last node, no kernel (op NULL). */
struct rp_rule_node {
    const rp_graph *graph;
    const rp_node *node;
    const char *kind;     /* rp_node_kind_name of the node's kind */
    bool region;
    const rp_node *exit;  /* region: the region's real last node (its inputs are inside the region) */
};

/* A node that only moves values, each input element to at most one output
 * element unchanged (Reshape, Transpose, Gather of distinct indices, ...),
 * has the same numbers on both sides: the route rule can read either. The
 * memory plan picks the side other readers keep anyway. */
typedef enum rp_read_side { RP_READ_BOTH = 0, RP_READ_INPUTS, RP_READ_OUTPUTS } rp_read_side;

struct rp_rule_ctx {
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
    const rp_rule_node *view;      /* may be NULL (tests); accessors then build it from graph/node */
    rp_tensor *const *grad_out;    /* n_out entries or NULL: gradients of this class, when computed */
    rp_tensor *const *grad_in;     /* n_in entries or NULL */
    rp_read_side side;             /* route rule: which forward values it may read (rules/assign.h) */
};

/* A rule by name among the built-ins (NULL if none). */
const rp_rule *rp_rule_lookup(const char *name);

/* The built-in rules, one per file in src/rules (listed in registry.c). */
extern const rp_rule rp_rule_identity;   /* identity.c: R_x = R (summed over broadcast axes) */
extern const rp_rule rp_rule_route;      /* route.c: R_x = x * vjp(sdiv(R, z)), data movement */
extern const rp_rule rp_rule_alpha_beta; /* alpha_beta.c: linear map with constant weight */
extern const rp_rule rp_rule_zplus;      /* zplus.c: z+ (alpha 1, beta 0, one division) */
extern const rp_rule rp_rule_gamma;      /* gamma.c: gamma rule, sign-aware */
extern const rp_rule rp_rule_epsilon;    /* epsilon.c: x * vjp(R / (z + eps sign z)), any op */
extern const rp_rule rp_rule_flat;       /* flat.c: relevance spread uniformly over connected inputs */
extern const rp_rule rp_rule_wsquare;    /* wsquare.c: w^2 rule */
extern const rp_rule rp_rule_zb;         /* zb.c: z^B for the conv on the pixels */
extern const rp_rule rp_rule_sum;        /* sum.c: normalised sum rule for Add/Sub */
extern const rp_rule rp_rule_product;    /* product.c: halved product rule for U·V of activations */
extern const rp_rule rp_rule_uniform;    /* uniform.c: AttnLRP uniform rule for products */
extern const rp_rule rp_rule_softmax;    /* softmax.c: AttnLRP softmax rule */

/* Internal registry access for assign.c: the rule named `name` in reg (or
 * among the built-ins when reg is NULL). */
const rp_rule *rp_rule_registry_find(const rp_rule_registry *reg, const char *name);
/* Reference counting: an assignment that resolved rules through reg keeps
 * it (and so its plugins) alive. */
void rp_rule_registry_retain(rp_rule_registry *reg);
/* Changes when a plugin is loaded: part of the model's rule cache key. */
unsigned rp_rule_registry_generation(const rp_rule_registry *reg);

/* "node 'NAME' (OP)" prefix helpers for messages in prepare. */
#define RP_RULE_NODE_FMT "node '%s' (%s)"

#endif
