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

/* seed: relevance at out_value (output-shaped float32), e.g. one-hot(t).
 * scratch: at least a->scratch_floats floats. */
rp_status rp_relevance_run(rp_graph *g, const rp_assignment *a, int out_value, const rp_tensor *seed,
                           rp_valuebuf *rel, float *scratch, rp_error *err);

#endif
