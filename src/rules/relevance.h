/* The LRP walk: relevance flows from the seeded output back through the DAG,
 * each node applying its assigned rule. Values consumed by several nodes sum
 * what their consumers send back. Only values planned into `rel` (on a path
 * between the targets and the output; see rp_valuebuf_plan) are touched, so
 * a method that needs relevance only down to the first attention layer stops
 * there. */
#ifndef RP_RULES_RELEVANCE_H
#define RP_RULES_RELEVANCE_H

#include "graph/backward.h"
#include "rules/assign.h"

/* The conservation check: filled per node the walk applies a rule at.
 * entries must hold g->n_nodes; strings point into the graph and assignment. */
typedef struct rp_relevance_check {
    double tolerance;               /* relative to the node's sum |R| */
    rp_conservation_entry *entries;
    int n;
} rp_relevance_check;

/* seed: relevance at out_value (output-shaped float32), e.g. one-hot(t).
 * scratch: at least a->scratch_floats floats. grads (may be NULL): this
 * class's gradients, handed to rules that read them. check (may be NULL):
 * record the conservation report; constant summands then get temporary
 * relevance buffers (see rp_rule_relevance_in). */
rp_status rp_relevance_run(rp_graph *g, const rp_assignment *a, int out_value, const rp_tensor *seed,
                           rp_valuebuf *rel, float *scratch, const rp_valuebuf *grads, rp_relevance_check *check,
                           rp_error *err);

#endif
