/* relprop's own graph: values and nodes indexed by integer id. Protobuf types
 * never appear here; only the loader (src/graph/onnx_graph.c and onnx_tensor.c)
 * sees them.
 *
 * Lifecycle: rp_graph_load (file → graph, no shapes) → optional
 * rp_graph_bind_constant (tests feed runtime inputs as data) →
 * rp_graph_prepare (kernels, shapes, constant folding, buffers) →
 * rp_graph_forward (any number of times) → rp_graph_free. */
#ifndef RP_GRAPH_GRAPH_H
#define RP_GRAPH_GRAPH_H

#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

struct rp_op;

typedef enum rp_value_kind {
    RP_VALUE_INPUT,      /* a graph input fed at run time */
    RP_VALUE_CONSTANT,   /* initializer, Constant output, or folded at prepare */
    RP_VALUE_ACTIVATION  /* computed by a node at run time */
} rp_value_kind;

typedef struct rp_value {
    char *name;
    rp_value_kind kind;
    rp_tensor t;         /* dtype/shape; data owned by this value (NULL until known). A graph
                          * input with no shape in the file has rank -1 (refused at prepare). */
    bool shape_known;    /* set by the loader for static graph inputs and constants, else by prepare */
    char *dim_params[RP_MAX_RANK]; /* symbolic dim names from the file, or NULL */
    int producer;        /* node id, -1 for inputs and initializers */
    bool is_graph_output;
    bool borrowed;       /* t.data is not this value's: the plan's arena, or the value it aliases */
} rp_value;

/* ONNX AttributeProto.AttributeType numbers. */
typedef enum rp_attr_type {
    RP_ATTR_UNDEFINED = 0,
    RP_ATTR_FLOAT = 1,
    RP_ATTR_INT = 2,
    RP_ATTR_STRING = 3,
    RP_ATTR_TENSOR = 4,
    RP_ATTR_GRAPH = 5,
    RP_ATTR_FLOATS = 6,
    RP_ATTR_INTS = 7,
    RP_ATTR_STRINGS = 8
} rp_attr_type;

typedef struct rp_attr {
    char *name;
    rp_attr_type type;
    float f;
    int64_t i;
    char *s;             /* NUL-terminated copy (STRING) */
    int64_t n;           /* element count of floats / ints / strings */
    float *floats;
    int64_t *ints;
    char **strings;
    rp_tensor *tensor;   /* TENSOR: owned, data owned */
} rp_attr;

typedef struct rp_node {
    char *name;          /* never NULL: the loader invents "<op>_<index>" when empty */
    char *op_type;
    char *domain;        /* "" for the default ONNX domain */
    int opset;           /* the model's opset for this node's domain */
    int n_in, n_out;
    int *in, *out;       /* value ids; -1 for an omitted optional input/output */
    int n_attr;
    rp_attr *attr;
    const struct rp_op *op; /* resolved at prepare; NULL if unsupported */
    void *params;        /* op-private, from prepare; a flat struct freed with free() */
    bool folded;         /* computed at prepare; not run */
    rp_tensor **in_t;    /* prepare: tensors of in[] (NULL where absent), handed to kernels */
    rp_tensor **out_t;
} rp_node;

/* A node's part in a product fusion of the memory plan (graph/plan.c). */
typedef struct rp_fusion {
    int done_by;     /* -1, or the product that does this node's work (the node is not run) */
    int epilogue;    /* a product: the bias Add or scalar Mul after it that it does, or -1 */
    int b_transpose; /* a product: the Transpose before its B that it reads through, or -1 */
} rp_fusion;

typedef struct rp_opset_import {
    char *domain;
    int64_t version;
} rp_opset_import;

typedef struct rp_graph {
    char *path;          /* the file, for messages */
    char *model_dir;     /* folder of the file, for external data */
    int64_t ir_version;
    int n_values, n_nodes;
    rp_value *values;
    rp_node *nodes;      /* topologically ordered (checked at load) */
    int n_inputs, n_outputs;
    int *inputs;         /* graph inputs that are not initializers */
    int *outputs;
    int n_opsets;
    rp_opset_import *opsets;
    int n_metadata;
    char **metadata_keys, **metadata_values; /* model metadata_props */
    bool prepared;
    int64_t max_bytes;   /* ceiling on what prepare allocates (0: the default rule, rp_graph_max_bytes) */
    int64_t model_bytes; /* size of the file plus the external data read for it */
    int64_t used_bytes;  /* what prepare allocated, constants from the file excluded */
    bool check_finite;   /* forward: refuse NaN in any value, Inf in inputs and outputs */
    int batch;           /* what a symbolic leading input dim binds to at prepare (0: 1) */
    /* The activation memory plan (rp_graph_plan_memory); NULL: every value
     * has its own buffer. */
    bool *plan_keep;
    rp_fusion *plan_fusion; /* per node, from the plan; NULL: nothing fused */
    uint8_t *arena;
    int64_t arena_bytes;
    /* The use-def index (rp_graph_index_consumers): the nodes that read value
     * v are consumers[consumer_start[v] .. consumer_start[v + 1]), in node
     * order, each once. NULL until built; the loader builds it, and whatever
     * changes an edge afterwards rebuilds it. */
    int *consumer_start; /* n_values + 1 entries */
    int *consumers;
} rp_graph;

/* What prepare may allocate (activations and folded constants) when no
 * --max-memory is given: the larger of 1 GiB and 64 times the model's size
 * (file and external data), and never above 16 GiB. A real ViT's activations
 * are a few times its weights (ViT-L/16 at 384: ~1.2 GB of weights, under
 * 5 GB of activations; DeiT-base at 384: 0.35 GB and under 2 GB), while a
 * file of a few hundred bytes asking for gigabytes is a broken or hostile
 * model. An explicit --max-memory replaces the whole rule. */
#define RP_DEFAULT_MAX_BYTES ((int64_t)16 << 30)
#define RP_DEFAULT_MIN_BYTES ((int64_t)1 << 30)
#define RP_DEFAULT_MODEL_FACTOR 64

/* The newest opset of the default ONNX domain relprop knows: ONNX 1.22's,
 * whose node tests (tests/onnx-node-tests, opsets up to 27) it passes. A
 * model importing a newer one is refused at load: its ops may have changed
 * meaning since. */
#define RP_MAX_OPSET 27

/* Read and parse an ONNX file. Checks topological order and that every input
 * is produced before use; decodes initializers and Constant attributes in all
 * encodings; resolves external data inside the model's folder only.
 * *out is NULL on failure. */
rp_status rp_graph_load(const char *path, rp_graph **out, rp_error *err);
/* Parse from memory (the loader's core; used by tests and fuzzers). path is
 * only for messages and external data (may be NULL: then no external data). */
rp_status rp_graph_load_buffer(const uint8_t *buf, size_t len, const char *path,
                               rp_graph **out, rp_error *err);
void rp_graph_free(rp_graph *g);

/* Parse one serialized TensorProto (ONNX test-data .pb files) into *out,
 * which the caller owns (rp_tensor_release). *name_out (may be NULL) receives
 * a malloc'd copy of the tensor's name. */
rp_status rp_tensor_load_pb(const char *path, rp_tensor *out, char **name_out, rp_error *err);

/* The forward pass's memory plan. keep: one flag per value, true for those
 * read after the forward pass (besides graph inputs, outputs and constants,
 * which always are); the others share buffers once their last consumer has
 * run, and reshapes share their input's. NULL: every value its own buffer,
 * as after prepare. fuse (with keep): products take over the Transpose
 * before B and the scalar Mul or bias Add after them where only they read
 * what those compute (see plan.c; last-bit differences, so for plain forward
 * passes only). Cheap when the plan is unchanged. */
rp_status rp_graph_plan_memory(rp_graph *g, const bool *keep, bool fuse, rp_error *err);
/* root[v] (n_values entries): the value whose buffer a plan gives v — v,
 * or for a reshape's output (or one slice of its input) the value it shares
 * bytes with; offset[v] (may be NULL): where in the root's bytes it starts. */
void rp_graph_alias_roots(const rp_graph *g, int *root, int64_t *offset);
/* Set keep[v] for the values the gradient kernels of g's nodes read. */
void rp_graph_mark_gradient_reads(const rp_graph *g, bool *keep);
/* The same for one node (what rp_graph_mark_gradient_reads does per node). */
void rp_node_mark_gradient_reads(const rp_graph *g, const rp_node *n, bool *keep);
/* Overwrite the shared buffers with NaN: a debugging aid after a forward
 * pass, so that reading a value the plan did not keep shows. */
void rp_graph_poison_shared(rp_graph *g);

/* Inputs run at once: what the symbolic leading dimension binds to (1 unless set). */
int rp_graph_batch(const rp_graph *g);

/* Value id by name, or -1. */
int rp_graph_find_value(const rp_graph *g, const char *name);
/* Node id by name, or -1. */
int rp_graph_find_node(const rp_graph *g, const char *name);
/* Opset of a domain ("" and "ai.onnx" are the same), or 0 if not imported. */
int rp_graph_opset(const rp_graph *g, const char *domain);

/* Before prepare: make graph input `value_id` a constant with a copy of t's
 * data (conformance tests pass shape-like inputs this way). */
rp_status rp_graph_bind_constant(rp_graph *g, int value_id, const rp_tensor *t, rp_error *err);
/* Whether some consumer of value_id needs its data at prepare (rp_op.const_inputs). */
bool rp_graph_value_needs_data(const rp_graph *g, int value_id);

/* The ceiling prepare applies: g->max_bytes if set, else the default rule
 * above for g->model_bytes. */
int64_t rp_graph_max_bytes(const rp_graph *g);

/* Resolve kernels, infer shapes in topological order (a graph input's symbolic
 * dims bind to 1), run every node whose inputs are all constant (constant
 * folding), allocate buffers for the remaining activations. */
rp_status rp_graph_prepare(rp_graph *g, rp_error *err);

/* Run the non-folded nodes. inputs[i] feeds g->inputs[i] (copied in; shapes
 * and dtypes must equal the prepared ones). Results stay in the values.
 * With check_finite, inputs and outputs are checked, and a non-finite output
 * makes a second pass that names the node where the first NaN (or, in an
 * output, Inf) appeared; an intermediate NaN that no output sees passes. */
rp_status rp_graph_forward(rp_graph *g, const rp_tensor *const *inputs, int n_inputs, rp_error *err);
/* The same, checking every value as it is produced: for the relevance walks,
 * which read the intermediates. */
rp_status rp_graph_forward_strict(rp_graph *g, const rp_tensor *const *inputs, int n_inputs, rp_error *err);

/* (Re)build the consumer index from the nodes' inputs, in O(nodes + edges).
 * Folded nodes count as consumers, omitted inputs (-1) do not. On failure
 * (out of memory) the old index is left as it was. */
rp_status rp_graph_index_consumers(rp_graph *g, rp_error *err);
/* Consumers of a value: fills ids (up to cap) and returns the total count,
 * from the index (g must have one: every loaded graph has), O(count). */
int rp_graph_consumers(const rp_graph *g, int value_id, int *ids, int cap);
/* The same without a copy: *ids points into the index (valid until it is
 * rebuilt); returns the count. */
int rp_graph_consumer_list(const rp_graph *g, int value_id, const int **ids);

/* A binary min-heap of node ids in h[0 .. *len): pops the lowest id first,
 * so nodes come out in the graph's order (topological, once loaded) however
 * they went in. The caller sizes h; push each id at most once. */
void rp_node_heap_push(int *h, int *len, int id);
int rp_node_heap_pop(int *h, int *len);

/* Attribute lookup on a node; NULL if absent. */
const rp_attr *rp_node_attr(const rp_node *n, const char *name);

#endif
