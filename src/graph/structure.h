/* Structure found by looking at the graph, not at node names: attention
 * layers (docs/method.md §2.1) and how tokens map to image patches. Used by inspect
 * now and by the relevance methods, which need A, its gradient and relevance
 * per layer. */
#ifndef RP_GRAPH_STRUCTURE_H
#define RP_GRAPH_STRUCTURE_H

#include "graph/graph.h"

typedef struct rp_attention_layer {
    int softmax_node;  /* Softmax node, or the Div that ends an Exp/ReduceSum/Div decomposition */
    int probs_value;   /* its output: the attention probabilities A */
    int product_node;  /* MatMul/Einsum taking A (possibly through Dropout/Identity/Cast) as left operand */
    int product_left;  /* the value the product reads as its left operand */
    int heads;         /* H (for [B*H,N,N], B = 1 gives H = dims[0]) */
    int tokens;        /* N */
} rp_attention_layer;

/* Attention layers in forward order. *out is malloc'd (caller frees); zero
 * layers is not an error. The graph must be prepared (shapes known). */
rp_status rp_find_attention(const rp_graph *g, rp_attention_layer **out, int *n_out, rp_error *err);

typedef struct rp_patch_embedding {
    int conv_node;            /* -1 if no Conv reads the image */
    int image_h, image_w;
    int patch_h, patch_w;
    int grid_h, grid_w;
} rp_patch_embedding;

/* The Conv that turns the image (the first graph input) into patches. */
void rp_find_patch_embedding(const rp_graph *g, rp_patch_embedding *out);

/* Every attention layer must attend over the same N tokens of one sequence
 * (N = prefix + the patch grid), with heads on the axis before the N×N
 * matrix: Swin-style windows (A of shape [windows·H, n, n] with n < N) or a
 * leading non-batch axis are refused naming the Softmax node, rather than
 * read as heads and turned into a silently wrong map. */
rp_status rp_check_attention_layout(const rp_graph *g, const rp_attention_layer *layers, int n,
                                    const rp_patch_embedding *p, rp_error *err);

/* How the classifier reads the token rows of the last block: r over the N
 * tokens (docs/method.md §2.3, "Other token layouts"). Gathers of constant rows on
 * the token axis after the last attention layer give r uniform over those
 * rows (CLS: e_0; distilled DeiT: (e_0 + e_1)/2); a ReduceMean over the token
 * axis gives 1/N everywhere. Falls back to e_0. *how names what was found. */
void rp_find_readout(const rp_graph *g, const rp_attention_layer *last, float *r, const char **how);

#endif
