/* The public rp_model's insides, shared by model.c (loading, running,
 * inspection) and explain.c (explanations): the graph and the structure
 * found in it, and the explanation's run state (rule assignment, gradient
 * and relevance buffers), which src/graph knows nothing of. */
#ifndef RP_METHODS_MODEL_H
#define RP_METHODS_MODEL_H

#include "graph/backward.h"
#include "graph/graph.h"
#include "graph/structure.h"
#include "rules/assign.h"

struct rp_model {
    rp_graph *g;
    rp_attention_layer *attn;
    int n_attn;
    rp_patch_embedding patches;
    int n_fused;         /* op-by-op GELUs fused into one Gelu node at prepare */
    /* Explanation state, built on first use and reused across runs. */
    rp_assignment rules;
    char rules_name[64];
    rp_valuebuf grads, rel;
    float *scratch;
    size_t scratch_floats;
};

#endif
