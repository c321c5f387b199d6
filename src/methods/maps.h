/* The methods of docs/method.md §5 as pure functions of what was collected per
 * attention layer: A (probabilities), G (gradient of the target logit w.r.t.
 * A) and R (LRP relevance of A as an operand of A·V), each [H,N,N] float32,
 * heads first (for [B*H,N,N] layouts with B = 1 this is the same memory).
 *
 * Every map is read from the readout: a weight vector r over the N tokens
 * (r = e_0 for a CLS model) applied to the rows, keeping only the patch
 * columns (tokens prefix .. N-1). Outputs have P = N - prefix floats. */
#ifndef RP_METHODS_MAPS_H
#define RP_METHODS_MAPS_H

#include "core/error.h"

typedef struct rp_layer_view {
    const float *A, *G, *R; /* [H,N,N]; G or R may be NULL when the method does not need them */
    const float *GR;        /* optional: G * R already multiplied (float), for transformer attribution */
} rp_layer_view;

typedef struct rp_map_input {
    const rp_layer_view *layers; /* L layers in forward order */
    int n_layers;
    int heads, tokens;           /* H, N */
    int prefix;                  /* tokens before the patches */
    const float *readout;        /* N weights */
} rp_map_input;

/* Each writes P = tokens - prefix floats into out. Scratch is allocated
 * inside (O(N^2) floats) and freed on every path. */
rp_status rp_map_transformer_attribution(const rp_map_input *in, int start_layer, float *out, rp_error *err);
rp_status rp_map_rollout(const rp_map_input *in, int start_layer, float *out, rp_error *err);
rp_status rp_map_raw_attention(const rp_map_input *in, float *out, rp_error *err);
rp_status rp_map_attn_gradcam(const rp_map_input *in, float *out, rp_error *err);
rp_status rp_map_lrp_last_layer(const rp_map_input *in, float *out, rp_error *err);
rp_status rp_map_generic_attention(const rp_map_input *in, float *out, rp_error *err);

#endif
