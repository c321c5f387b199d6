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
 * walk does not need it. Owned by the struct (rp_valuebuf_free).
 *
 * Transient mode (set `transient` before planning) is the memory plan of the
 * explanation walks: a value's buffer is taken from a pool when a consumer
 * first sends something back to it and returned to the pool right after its
 * producer has read it, so only the values between the node being walked and
 * their still-pending consumers hold memory. Targets are kept to the end (the
 * methods read them). The pool survives across walks, so repeated walks do no
 * allocation. A buffer nobody wrote stays NULL and means zero. */
typedef struct rp_valuebuf {
    int n;
    rp_tensor *t;
    bool *on_path;     /* value lies between a target and the output */
    bool *keep;        /* transient: a target, kept until the next walk */
    bool transient;
    int n_pool, cap_pool;
    float **pool;      /* free buffers and their sizes in floats */
    int64_t *pool_floats;
    int64_t *floats;   /* per value: size of the buffer it holds */
    /* Optional, gradient walk: called with each value's gradient once it is
     * final (its producer has read it; it is about to be released). */
    void (*on_final)(void *ctx, int value, const rp_tensor *grad);
    void *on_final_ctx;
} rp_valuebuf;

/* Mark the values on a path from any of targets[] (value ids) to out_value
 * (float outputs only). An empty target list means "down to the graph
 * inputs". Outside transient mode, allocates a zeroed buffer per marked value
 * (reusing those of an earlier call with the same marks). */
rp_status rp_valuebuf_plan(rp_valuebuf *b, const rp_graph *g, int out_value, const int *targets, int n_targets,
                           rp_error *err);
/* Before a walk: zero every buffer, or in transient mode return them all to the pool. */
void rp_valuebuf_zero(rp_valuebuf *b);
/* Transient mode: give value v a zeroed buffer if it has none. */
rp_status rp_valuebuf_acquire(rp_valuebuf *b, int v, rp_error *err);
/* Transient mode: return v's buffer to the pool unless v is kept. */
void rp_valuebuf_release(rp_valuebuf *b, int v);
/* Move from's free buffers into to's pool: the gradient and the relevance
 * walk run one after the other, and so can draw on one pool. */
void rp_valuebuf_pass_pool(rp_valuebuf *from, rp_valuebuf *to);
/* After a walk: zeroed buffers for kept values nobody wrote, so readers find data. */
rp_status rp_valuebuf_finish(rp_valuebuf *b, rp_error *err);
void rp_valuebuf_free(rp_valuebuf *b);

/* The reverse walk the gradient and the relevance share: from the output,
 * nodes in reverse order; at each node whose outputs received something,
 * the inputs that can take a share are handed to visit, which adds into
 * them; then the outputs' buffers go back to the pool (every reader of them
 * came later in the order). */
#define RP_WALK_MAX_IO 64

typedef struct rp_walk_step {
    int index;             /* the node, in g->nodes */
    const rp_node *node;   /* as the walk sees it: g->nodes[index], or the region it ends */
    rp_tensor *const *out; /* per output of g->nodes[index]: what reached it, or NULL */
    rp_tensor *const *in;  /* per input of node: where its share goes, or NULL */
} rp_walk_step;

typedef struct rp_reverse_walk {
    rp_valuebuf *buf;
    const char *what; /* "gradient", "relevance": for messages */
    /* The node as this walk sees it, NULL to pass it by; NULL function: every
     * node as it is. */
    const rp_node *(*view)(void *ctx, const rp_graph *g, int i);
    /* Whether input k of the node seen at i takes no share (non-differentiable). */
    bool (*blocked)(void *ctx, const rp_graph *g, int i, const rp_node *seen, int k);
    /* Called when some output received something and some input can take it. */
    rp_status (*visit)(void *ctx, rp_graph *g, const rp_walk_step *step, rp_error *err);
    void *ctx;
} rp_reverse_walk;

rp_status rp_reverse_walk_run(rp_graph *g, int out_value, const rp_tensor *seed, const rp_reverse_walk *w,
                              rp_error *err);

/* Gradient of sum(seed * output) with respect to every value on the path.
 * `grads` must have been planned for out_value; seed has the output's shape. */
rp_status rp_graph_backward(rp_graph *g, int out_value, const rp_tensor *seed, rp_valuebuf *grads, rp_error *err);

#endif
