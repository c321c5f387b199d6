/* The methods, one row each: what a method reads from the walks and the
 * function that makes its map. rp_explain schedules the walks from these rows
 * alone, so a new method is one row here, one map function and its rp_method
 * constant (include/relprop/relprop.h); see docs/extending.md. */
#ifndef RP_METHODS_METHOD_TABLE_H
#define RP_METHODS_METHOD_TABLE_H

#include <stdbool.h>

#include "methods/maps.h"
#include "relprop/relprop.h"

/* Which attention layers a method reads a walk's result at. */
typedef enum rp_layer_reach {
    RP_REACH_NONE,       /* reads nothing of this walk */
    RP_REACH_FROM_START, /* from the start layer up (rp_explain_options.start_layer) */
    RP_REACH_ALL,        /* every layer */
    RP_REACH_LAST,       /* the last layer only */
} rp_layer_reach;

typedef struct rp_method_row {
    const char *name;
    rp_layer_reach gradient;  /* dL/dA */
    rp_layer_reach relevance; /* R at A */
    /* Reads a layer's gradient or relevance on its own, not only their
     * product G * R: rules out multiplying the gradient into the relevance
     * as the walk goes (the fused transformer attribution). */
    bool reads_apart;
    /* Aggregates from rp_explain_options.start_layer up (the attention
     * maps themselves for rollout, whatever its walks). */
    bool uses_start_layer;
    /* Relevance all the way down to the input: a pixel map (lrp_full), made
     * by rp_explain itself; map is NULL. */
    bool pixels;
    /* The (grid_h, grid_w) patch map into out. */
    rp_status (*map)(const rp_map_input *in, int start_layer, float *out, rp_error *err);
} rp_method_row;

/* The row of m; NULL for a value outside the enum. */
const rp_method_row *rp_method_row_of(rp_method m);

/* The lowest layer a reach covers (n_layers: none). */
int rp_reach_lowest(rp_layer_reach r, int start_layer, int n_layers);

#endif
