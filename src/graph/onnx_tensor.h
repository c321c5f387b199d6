/* The ONNX loader's tensor decoder (src/graph/onnx_tensor.c), shared by the
 * graph builder (initializers, Constant attributes) and rp_tensor_load_pb.
 *
 * Private to the loader: this header brings protobuf-c's types, and only
 * onnx_tensor.c and onnx_graph.c include it. */
#ifndef RP_GRAPH_ONNX_TENSOR_H
#define RP_GRAPH_ONNX_TENSOR_H

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/tensor.h"
#include "graph/onnx_wire.h"
#include "onnx.pb-c.h"

/* protobuf-c leaves unset optional strings NULL; ONNX treats them as "". */
static inline const char *nz(const char *s)
{
    return s ? s : "";
}

static inline char *dup_str(const char *s)
{
    return strdup(nz(s));
}

/* What tensor decoding needs from the model being loaded. External data is
 * counted against a ceiling: a small model can point at a huge (or sparse,
 * or decompressed-from-nothing) weights file, and those bytes are read at
 * load, before any --max-memory set on the model applies (that one covers
 * what prepare allocates). */
typedef struct load_ctx {
    const char *dir;    /* the model's folder; NULL when loaded from memory */
    int64_t ext_bytes;  /* external data read so far */
    int64_t ext_limit;
    const model_source *src;
} load_ctx;

/* Decode tp into *out (which then owns its data). pl: where the raw_data cut
 * out of tp is (NULL or !pl->cut: tp holds its bytes, and may lose them to
 * *out). fallback names the tensor in messages when the file leaves it
 * unnamed. On failure *out is zeroed and nothing is kept. */
rp_status rp_onnx_decode_tensor(Onnx__TensorProto *tp, const payload *pl, const char *fallback, load_ctx *lc,
                                rp_tensor *out, rp_error *err);

#endif
