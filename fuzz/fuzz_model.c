/* libFuzzer target: ONNX loader + prepare (kernels, shape inference,
 * constant folding) + one forward run on zeros.
 *
 * The input is an ONNX file loaded from memory (no path, so no external
 * data). Everything the library allocates must be refused with an error
 * rather than crash or exhaust memory; fuzz/run.sh sets ASan's
 * max_allocation_size_mb and allocator_may_return_null so a single absurd
 * allocation fails as malloc does, exercising the out-of-memory paths. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor.h"
#include "graph/graph.h"

/* One forward on zeros only for small, single float inputs: the point is
 * the kernels' handling of odd shapes, not throughput. */
#define FUZZ_MAX_INPUT_ELEMS 1000000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int fuzz_model_one_input(const uint8_t *data, size_t size);
rp_status fuzz_model_run(const uint8_t *data, size_t size, rp_error *err);

/* The whole target: the first failure's status and message in err, or
 * RP_OK when the model loaded, was prepared and (if small) ran. */
rp_status fuzz_model_run(const uint8_t *data, size_t size, rp_error *err)
{
    rp_graph *g = NULL;
    memset(err, 0, sizeof *err);
    rp_status st = rp_graph_load_buffer(data, size, NULL, &g, err);
    if (st != RP_OK) {
        if (g)
            abort(); /* *out must be NULL on failure */
        return st;
    }
    /* A ceiling well under the fuzzer's RSS limit: a model declaring more is
     * an error naming the value, not an out-of-memory kill. */
    g->max_bytes = (int64_t)256 << 20;
    st = rp_graph_prepare(g, err);
    if (st == RP_OK && g->n_inputs == 1) {
        const rp_value *v = &g->values[g->inputs[0]];
        if (v->t.dtype == RP_FLOAT && v->t.rank >= 0 && v->t.count >= 0 && v->t.count <= FUZZ_MAX_INPUT_ELEMS) {
            rp_tensor x;
            st = rp_tensor_alloc(&x, RP_FLOAT, v->t.rank, v->t.dims, err);
            if (st == RP_OK) {
                const rp_tensor *in[1] = {&x};
                st = rp_graph_forward(g, in, 1, err);
                rp_tensor_release(&x);
            }
        }
    }
    rp_graph_free(g);
    return st;
}

/* fuzz_ops.c feeds it the models it builds. */
int fuzz_model_one_input(const uint8_t *data, size_t size)
{
    rp_error err;
    (void)fuzz_model_run(data, size, &err);
    return 0;
}

#ifndef FUZZ_MODEL_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_model_one_input(data, size);
}
#endif
