/* The ONNX loader's bytes (src/graph/onnx_wire.c): whole-file reads, and the
 * two walks over the protobuf wire format that run before protobuf-c parses a
 * model: one refuses nesting deep enough to overflow protobuf-c's recursion,
 * the other cuts the weights out so that protobuf-c does not copy them.
 *
 * Private to the loader: onnx_wire.c, onnx_tensor.c and onnx_graph.c. No
 * protobuf-c type appears here. */
#ifndef RP_GRAPH_ONNX_WIRE_H
#define RP_GRAPH_ONNX_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Protobuf messages are at most 2 GiB; reading stops past that, so a
 * device or an endless pipe given as a model is an error, not an OOM. */
#define RP_MAX_PROTO_FILE ((size_t)INT32_MAX)

/* Where an initializer's raw_data was cut out of the message protobuf-c
 * parsed: its bytes are at `at` in the model's bytes. */
typedef struct payload {
    size_t at, len;
    bool cut;
} payload;

/* The model's bytes: in memory, or mapped from a file that payloads are
 * pread() from, so copying them into tensors does not also page them in. */
typedef struct model_source {
    const uint8_t *bytes;
    size_t len;
    int fd; /* -1: bytes is all there is */
} model_source;

/* Reads until EOF rather than trusting the size from fstat, so short reads
 * and files that change size are handled; fstat only sizes the first buffer.
 * Takes an open descriptor, so a pipe is read by the one open that found it
 * (a second open would find the writer gone). Closes fd. On success *out is
 * a malloc'd buffer of *out_len bytes the caller frees. */
rp_status rp_onnx_read_fd(int fd, const char *path, uint8_t **out, size_t *out_len, rp_error *err);
/* The same for a path. */
rp_status rp_onnx_read_file(const char *path, uint8_t **out, size_t *out_len, rp_error *err);
/* "dir/model.onnx" → "dir", "model.onnx" → ".", "/model.onnx" → "/"; malloc'd,
 * NULL when out of memory. */
char *rp_onnx_dir_of(const char *path);

/* How deep messages may nest (see onnx_wire.c). */
#define PB_MAX_DEPTH 96

typedef enum pb_walk { PB_WALK_OK, PB_WALK_MALFORMED, PB_WALK_TOO_DEEP, PB_WALK_NUL_NAME } pb_walk;

/* Walk a serialized ModelProto: PB_WALK_OK if protobuf-c can parse it without
 * nesting deeper than PB_MAX_DEPTH and no node, value or tensor name holds a
 * NUL byte; else what is wrong first. */
pb_walk rp_onnx_wire_check(const uint8_t *buf, size_t len);

/* A copy of a ModelProto with the top graph's initializers' raw_data cut out:
 * bytes[0..len) is the message protobuf-c parses, cut[i] where initializer
 * i's payload was in the original bytes (cut[i].cut false: it had none). The
 * caller frees bytes and cut, also after a failure. */
typedef struct cut_buf {
    uint8_t *bytes;
    size_t len, cap;
    payload *cut; /* one per initializer */
    size_t n_cut, cap_cut;
} cut_buf;

/* Fill *c (zeroed by the caller) from buf, which rp_onnx_wire_check found
 * well formed. false: out of memory. */
bool rp_onnx_cut_weights(cut_buf *c, const uint8_t *buf, size_t len);

#endif
