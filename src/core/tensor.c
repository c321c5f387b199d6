#include "core/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/convert.h"
#include "core/error.h"

size_t rp_dtype_size(rp_dtype dt)
{
    switch (dt) {
    case RP_FLOAT: case RP_INT32: case RP_UINT32: return 4;
    case RP_DOUBLE: case RP_INT64: case RP_UINT64: return 8;
    case RP_INT16: case RP_UINT16: return 2;
    case RP_INT8: case RP_UINT8: case RP_BOOL: return 1;
    default: return 0;
    }
}

const char *rp_dtype_name(rp_dtype dt)
{
    switch (dt) {
    case RP_FLOAT: return "float32";
    case RP_UINT8: return "uint8";
    case RP_INT8: return "int8";
    case RP_UINT16: return "uint16";
    case RP_INT16: return "int16";
    case RP_INT32: return "int32";
    case RP_INT64: return "int64";
    case RP_STRING: return "string";
    case RP_BOOL: return "bool";
    case RP_FLOAT16: return "float16";
    case RP_DOUBLE: return "float64";
    case RP_UINT32: return "uint32";
    case RP_UINT64: return "uint64";
    default: return "unknown";
    }
}

int64_t rp_shape_count(int rank, const int64_t *dims)
{
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0)
            return -1;
        if (dims[i] != 0 && n > INT64_MAX / dims[i])
            return -1;
        n *= dims[i];
    }
    return n;
}

bool rp_tensor_set_shape(rp_tensor *t, rp_dtype dt, int rank, const int64_t *dims)
{
    if (rank < 0 || rank > RP_MAX_RANK)
        return false;
    int64_t n = rp_shape_count(rank, dims);
    if (n < 0)
        return false;
    int64_t copy[RP_MAX_RANK];
    if (rank) /* dims may be NULL for a scalar, and may alias t->dims */
        memcpy(copy, dims, sizeof(int64_t) * (size_t)rank);
    t->dtype = dt;
    t->rank = rank;
    memset(t->dims, 0, sizeof t->dims);
    if (rank)
        memcpy(t->dims, copy, sizeof(int64_t) * (size_t)rank);
    t->count = n;
    return true;
}

char *rp_shape_str(const rp_tensor *t, char *buf, size_t len)
{
    size_t used = 0;
    if (len == 0)
        return buf;
    buf[0] = 0;
    used += (size_t)snprintf(buf + used, len - used, "[");
    for (int i = 0; i < t->rank && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, i ? ",%lld" : "%lld", (long long)t->dims[i]);
    if (used < len)
        snprintf(buf + used, len - used, "]");
    return buf;
}

bool rp_shape_equal(const rp_tensor *a, const rp_tensor *b)
{
    if (a->rank != b->rank)
        return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i])
            return false;
    return true;
}

double rp_tensor_get_f64(const rp_tensor *t, int64_t i)
{
    switch (t->dtype) {
    case RP_FLOAT: return ((const float *)t->data)[i];
    case RP_DOUBLE: return ((const double *)t->data)[i];
    case RP_INT8: return ((const int8_t *)t->data)[i];
    case RP_UINT8: return ((const uint8_t *)t->data)[i];
    case RP_INT16: return ((const int16_t *)t->data)[i];
    case RP_UINT16: return ((const uint16_t *)t->data)[i];
    case RP_INT32: return ((const int32_t *)t->data)[i];
    case RP_UINT32: return ((const uint32_t *)t->data)[i];
    case RP_INT64: return (double)((const int64_t *)t->data)[i];
    case RP_UINT64: return (double)((const uint64_t *)t->data)[i];
    case RP_BOOL: return ((const uint8_t *)t->data)[i] ? 1.0 : 0.0;
    default: return 0.0;
    }
}

int64_t rp_tensor_get_i64(const rp_tensor *t, int64_t i)
{
    switch (t->dtype) {
    case RP_FLOAT: return rp_sat_i64(((const float *)t->data)[i]);
    case RP_DOUBLE: return rp_sat_i64(((const double *)t->data)[i]);
    case RP_INT8: return ((const int8_t *)t->data)[i];
    case RP_UINT8: return ((const uint8_t *)t->data)[i];
    case RP_INT16: return ((const int16_t *)t->data)[i];
    case RP_UINT16: return ((const uint16_t *)t->data)[i];
    case RP_INT32: return ((const int32_t *)t->data)[i];
    case RP_UINT32: return ((const uint32_t *)t->data)[i];
    case RP_INT64: return ((const int64_t *)t->data)[i];
    case RP_UINT64: return (int64_t)((const uint64_t *)t->data)[i];
    case RP_BOOL: return ((const uint8_t *)t->data)[i] ? 1 : 0;
    default: return 0;
    }
}

void rp_tensor_set_f64(rp_tensor *t, int64_t i, double v)
{
    switch (t->dtype) {
    case RP_FLOAT: ((float *)t->data)[i] = (float)v; break;
    case RP_DOUBLE: ((double *)t->data)[i] = v; break;
    case RP_INT8: ((int8_t *)t->data)[i] = rp_sat_i8(v); break;
    case RP_UINT8: ((uint8_t *)t->data)[i] = rp_sat_u8(v); break;
    case RP_INT16: ((int16_t *)t->data)[i] = rp_sat_i16(v); break;
    case RP_UINT16: ((uint16_t *)t->data)[i] = rp_sat_u16(v); break;
    case RP_INT32: ((int32_t *)t->data)[i] = rp_sat_i32(v); break;
    case RP_UINT32: ((uint32_t *)t->data)[i] = rp_sat_u32(v); break;
    case RP_INT64: ((int64_t *)t->data)[i] = rp_sat_i64(v); break;
    case RP_UINT64: ((uint64_t *)t->data)[i] = rp_sat_u64(v); break;
    case RP_BOOL: ((uint8_t *)t->data)[i] = v != 0.0; break;
    default: break;
    }
}

void rp_tensor_set_i64(rp_tensor *t, int64_t i, int64_t v)
{
    switch (t->dtype) {
    case RP_FLOAT: ((float *)t->data)[i] = (float)v; break;
    case RP_DOUBLE: ((double *)t->data)[i] = (double)v; break;
    case RP_INT8: ((int8_t *)t->data)[i] = (int8_t)v; break;
    case RP_UINT8: ((uint8_t *)t->data)[i] = (uint8_t)v; break;
    case RP_INT16: ((int16_t *)t->data)[i] = (int16_t)v; break;
    case RP_UINT16: ((uint16_t *)t->data)[i] = (uint16_t)v; break;
    case RP_INT32: ((int32_t *)t->data)[i] = (int32_t)v; break;
    case RP_UINT32: ((uint32_t *)t->data)[i] = (uint32_t)v; break;
    case RP_INT64: ((int64_t *)t->data)[i] = v; break;
    case RP_UINT64: ((uint64_t *)t->data)[i] = (uint64_t)v; break;
    case RP_BOOL: ((uint8_t *)t->data)[i] = v != 0; break;
    default: break;
    }
}

rp_status rp_tensor_alloc(rp_tensor *t, rp_dtype dt, int rank, const int64_t *dims, rp_error *err)
{
    memset(t, 0, sizeof *t);
    size_t es = rp_dtype_size(dt);
    if (es == 0)
        return rp_fail(err, RP_ERR_DTYPE, "cannot hold tensors of dtype %s", rp_dtype_name(dt));
    if (!rp_tensor_set_shape(t, dt, rank, dims))
        return rp_fail(err, RP_ERR_SHAPE, "invalid tensor shape (rank %d, negative or overflowing dims)", rank);
    if ((uint64_t)t->count > SIZE_MAX / es)
        return rp_fail(err, RP_ERR_NOMEM, "tensor of %lld elements is too large", (long long)t->count);
    if (t->count > 0) {
        t->data = calloc((size_t)t->count, es);
        if (!t->data)
            return rp_fail(err, RP_ERR_NOMEM, "out of memory allocating %lld elements", (long long)t->count);
    }
    return RP_OK;
}

void rp_tensor_release(rp_tensor *t)
{
    if (!t)
        return;
    free(t->data);
    memset(t, 0, sizeof *t);
}
