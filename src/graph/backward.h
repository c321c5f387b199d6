/* Reverse-mode differentiation over the DAG (gradients), and the per-value
 * buffers the backward walks (gradient and relevance) share.
 *
 * Only the part of the graph between the requested targets and the seeded
 * output is walked: a value gets a buffer only if it lies on a path from a
 * target to the output. Nodes are visited i = n-1 … 0; a value consumed by
 * several nodes sums what they send back. */
#ifndef RP_GRAPH_BACKWARD_H
#define RP_GRAPH_BACKWARD_H

#include <stdbool.h>

#include "graph/graph.h"

/* One float32 tensor per value, shaped like the value; data NULL where the
 * walk does not need it. Owned by the struct (rp_valuebuf_free). */
typedef struct rp_valuebuf {
    int n;
    rp_tensor *t;
    bool *on_path;     /* value lies between a target and the output */
} rp_valuebuf;

/* Mark the values on a path from any of targets[] (value ids) to out_value,
 * and allocate zeroed float32 buffers for them (float outputs only). An empty
 * target list means "down to the graph inputs". Reuses buffers from an earlier
 * call with the same marks (they are zeroed). */
rp_status rp_valuebuf_plan(rp_valuebuf *b, const rp_graph *g, int out_value, const int *targets, int n_targets,
                           rp_error *err);
void rp_valuebuf_zero(rp_valuebuf *b);
void rp_valuebuf_free(rp_valuebuf *b);

/* Gradient of sum(seed * output) with respect to every value on the path.
 * `grads` must have been planned for out_value; seed has the output's shape. */
rp_status rp_graph_backward(rp_graph *g, int out_value, const rp_tensor *seed, rp_valuebuf *grads, rp_error *err);

#endif
