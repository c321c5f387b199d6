/* Tensors: our runtime representation of an n-d array.
 *
 * dtype numbers are ONNX's TensorProto.DataType values so the loader can copy
 * them straight across; dims are outermost first, as ONNX and NumPy order them.
 * A tensor does not say who owns `data`: its container does (a graph value, a
 * run, or the caller of rp_tensor_alloc, which pairs with rp_tensor_release). */
#ifndef RP_CORE_TENSOR_H
#define RP_CORE_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "relprop/relprop.h"

/* Bytes per element; 0 for dtypes we cannot hold (string, float16, ...). */
size_t rp_dtype_size(rp_dtype dt);
/* "float", "int64", ...; "dtype(N)" style names for unknown numbers are not
 * produced: unknown values give "unknown". */
const char *rp_dtype_name(rp_dtype dt);

/* Element count of dims[0..rank), or -1 if a dim is negative or the product
 * overflows int64 (every caller must treat -1 as an error). rank 0 gives 1. */
int64_t rp_shape_count(int rank, const int64_t *dims);

/* Set dtype, rank and dims, recompute count; data untouched. Returns false if
 * rank exceeds RP_MAX_RANK or the count is invalid. */
bool rp_tensor_set_shape(rp_tensor *t, rp_dtype dt, int rank, const int64_t *dims);

/* "[1,3,224,224]" into buf (always NUL-terminated). Returns buf. */
char *rp_shape_str(const rp_tensor *t, char *buf, size_t len);

bool rp_shape_equal(const rp_tensor *a, const rp_tensor *b);

/* Read element i of any numeric dtype as double / int64 (bool as 0/1). A
 * float read as int64 truncates, saturating when out of range (NaN is 0;
 * see core/convert.h). */
double rp_tensor_get_f64(const rp_tensor *t, int64_t i);
int64_t rp_tensor_get_i64(const rp_tensor *t, int64_t i);
/* Store v into element i, converting to t's dtype (C conversion rules, except
 * that float to integer saturates as core/convert.h says; bool = v != 0). */
void rp_tensor_set_f64(rp_tensor *t, int64_t i, double v);
void rp_tensor_set_i64(rp_tensor *t, int64_t i, int64_t v);

#endif
