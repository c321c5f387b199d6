/* Graph rewrites after prepare and before anything reads the graph's
 * structure (attention layers, rules): load → prepare → rewrite → plan. */
#ifndef RP_GRAPH_REWRITE_H
#define RP_GRAPH_REWRITE_H

#include "graph/graph.h"

/* Fuse op-by-op spellings of one kernel (the exact-erf GELU) into that
 * kernel. *n_fused receives how many were fused. */
rp_status rp_graph_fuse(rp_graph *g, int *n_fused, rp_error *err);

#endif
