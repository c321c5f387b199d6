/* TensorProto → rp_tensor, in every encoding: typed fields, raw_data (in the
 * message, or cut out of it and read from the model's bytes), and external
 * data in files next to the model, which must stay inside the model's folder.
 * Also rp_tensor_load_pb, for ONNX's test-data .pb files.
 *
 * Files are untrusted: every count and length is checked before it sizes an
 * allocation or a copy. */

/* realpath() is XSI, not plain POSIX: the build's _POSIX_C_SOURCE alone hides it. */
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700
#endif

#include "graph/onnx_tensor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "graph/graph.h"

/* ---- external data ---- */

/* Strict non-negative decimal, as ONNX writes offsets and lengths. */
static bool parse_u63(const char *s, int64_t *out)
{
    if (!s || !*s)
        return false;
    int64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        int d = *s - '0';
        if (v > (INT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* A location is trusted only if it stays inside the model's folder: no
 * absolute paths, no ".." anywhere, and (against symlinks) the resolved file
 * must lie under the resolved folder. Backslashes count as separators for the
 * ".." check because files written on Windows use them. */
static bool has_dotdot(const char *loc)
{
    const char *p = loc;
    while (*p) {
        size_t n = strcspn(p, "/\\");
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return true;
        p += n;
        if (*p)
            p++;
    }
    return false;
}

/* Allocates *dst only once the file is known to hold nbytes, so a corrupt
 * header cannot size a huge allocation. */
static rp_status read_external(const Onnx__TensorProto *tp, const char *label, load_ctx *lc,
                               void **dst, size_t nbytes, rp_error *err)
{
    const char *model_dir = lc->dir;
    rp_status st = RP_OK;
    void *data = NULL;
    *dst = NULL;
    const char *location = NULL;
    int64_t offset = 0, length = -1;
    char *full = NULL, *real_dir = NULL, *real_file = NULL;
    FILE *f = NULL;

    if (!model_dir)
        return rp_fail(err, RP_ERR_ARG,
                       "tensor '%s': data is stored in an external file, which needs the model's path "
                       "(the model was loaded from memory)", label);
    for (size_t i = 0; i < tp->n_external_data; i++) {
        const Onnx__StringStringEntryProto *e = tp->external_data[i];
        const char *k = nz(e->key), *v = nz(e->value);
        if (strcmp(k, "location") == 0) {
            location = v;
        } else if (strcmp(k, "offset") == 0) {
            if (!parse_u63(v, &offset))
                return rp_fail(err, RP_ERR_FORMAT, "tensor '%s': bad external data offset '%s'", label, v);
        } else if (strcmp(k, "length") == 0) {
            if (!parse_u63(v, &length))
                return rp_fail(err, RP_ERR_FORMAT, "tensor '%s': bad external data length '%s'", label, v);
        }
        /* "checksum" and unknown keys are advisory. */
    }
    if (!location || !*location)
        return rp_fail(err, RP_ERR_FORMAT, "tensor '%s': external data without a location", label);
    if (length >= 0 && (uint64_t)length != (uint64_t)nbytes)
        return rp_fail(err, RP_ERR_FORMAT, "tensor '%s': external data length is %lld bytes, expected %zu",
                       label, (long long)length, nbytes);
    if (location[0] == '/' || location[0] == '\\')
        return rp_fail(err, RP_ERR_VALUE,
                       "tensor '%s': external data location '%s' is an absolute path; "
                       "only files inside the model's folder are read", label, location);
    if (has_dotdot(location))
        return rp_fail(err, RP_ERR_VALUE,
                       "tensor '%s': external data location '%s' contains '..'; "
                       "only files inside the model's folder are read", label, location);

    size_t dl = strlen(model_dir), ll = strlen(location);
    full = malloc(dl + ll + 2);
    if (!full) {
        st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    memcpy(full, model_dir, dl);
    full[dl] = '/';
    memcpy(full + dl + 1, location, ll + 1);

    real_dir = realpath(model_dir, NULL);
    if (!real_dir) {
        st = rp_fail(err, RP_ERR_IO, "tensor '%s': cannot resolve the model folder '%s': %s", label, model_dir,
                     strerror(errno));
        goto fail;
    }
    real_file = realpath(full, NULL);
    if (!real_file) {
        st = rp_fail(err, RP_ERR_IO, "tensor '%s': external data file '%s': %s", label, full, strerror(errno));
        goto fail;
    }
    size_t rl = strlen(real_dir);
    bool inside = strcmp(real_dir, "/") == 0 ||
                  (strncmp(real_file, real_dir, rl) == 0 && real_file[rl] == '/');
    if (!inside) {
        st = rp_fail(err, RP_ERR_VALUE,
                     "tensor '%s': external data file '%s' resolves to '%s', outside the model's folder",
                     label, full, real_file);
        goto fail;
    }

    /* Open the resolved name so the file read is the one that was checked;
     * O_NONBLOCK so a FIFO there is refused below instead of blocking. */
    int fd = open(real_file, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    f = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (!f) {
        st = rp_fail(err, RP_ERR_IO, "tensor '%s': external data file '%s': %s", label, full, strerror(errno));
        if (fd >= 0)
            close(fd);
        goto fail;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = rp_fail(err, RP_ERR_IO, "tensor '%s': external data file '%s' is not a regular file", label, full);
        goto fail;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    if ((uint64_t)offset > (uint64_t)sb.st_size || (uint64_t)sb.st_size - (uint64_t)offset < (uint64_t)nbytes) {
        st = rp_fail(err, RP_ERR_IO,
                     "tensor '%s': external data file '%s' is too short: needs %zu bytes at offset %lld, "
                     "file has %lld bytes", label, full, nbytes, (long long)offset, (long long)sb.st_size);
        goto fail;
    }
    if ((uint64_t)nbytes > (uint64_t)(lc->ext_limit - lc->ext_bytes)) {
        st = rp_fail(err, RP_ERR_NOMEM,
                     "tensor '%s': its %zu bytes of external data would take the external data read so far past "
                     "the limit of %lld bytes", label, nbytes, (long long)lc->ext_limit);
        goto fail;
    }
    lc->ext_bytes += (int64_t)nbytes;
    if (nbytes > 0) {
        if ((off_t)offset != offset || fseeko(f, (off_t)offset, SEEK_SET) != 0) {
            st = rp_fail(err, RP_ERR_IO, "tensor '%s': cannot seek to offset %lld in '%s'", label,
                         (long long)offset, full);
            goto fail;
        }
        data = malloc(nbytes);
        if (!data) {
            st = rp_fail(err, RP_ERR_NOMEM, "tensor '%s': out of memory for %zu bytes", label, nbytes);
            goto fail;
        }
        size_t got = fread(data, 1, nbytes, f);
        if (got != nbytes) {
            st = rp_fail(err, RP_ERR_IO, "tensor '%s': external data file '%s' is too short: read %zu of %zu bytes "
                         "at offset %lld", label, full, got, nbytes, (long long)offset);
            goto fail;
        }
    }
    *dst = data;
    data = NULL;
fail:
    if (f)
        fclose(f);
    free(data);
    free(full);
    free(real_dir);
    free(real_file);
    return st;
}

/* Typed fields hold one array element per tensor element, widened (int32_data
 * carries every integer type up to 32 bits and bool, uint64_data carries
 * uint32 and uint64). */
static size_t typed_len(const Onnx__TensorProto *tp, rp_dtype dt, const char **field)
{
    switch (dt) {
    case RP_FLOAT: *field = "float_data"; return tp->n_float_data;
    case RP_DOUBLE: *field = "double_data"; return tp->n_double_data;
    case RP_INT64: *field = "int64_data"; return tp->n_int64_data;
    case RP_UINT64: case RP_UINT32: *field = "uint64_data"; return tp->n_uint64_data;
    default: *field = "int32_data"; return tp->n_int32_data;
    }
}

/* Element by element through memcpy: dst is a byte buffer of the tensor's
 * dtype, and the conversions narrow as ONNX defines (C casts). */
static void copy_typed(const Onnx__TensorProto *tp, rp_dtype dt, uint8_t *dst, int64_t count)
{
    for (int64_t i = 0; i < count; i++) {
        switch (dt) {
        case RP_FLOAT: memcpy(dst + i * 4, &tp->float_data[i], 4); break;
        case RP_DOUBLE: memcpy(dst + i * 8, &tp->double_data[i], 8); break;
        case RP_INT64: memcpy(dst + i * 8, &tp->int64_data[i], 8); break;
        case RP_UINT64: memcpy(dst + i * 8, &tp->uint64_data[i], 8); break;
        case RP_UINT32: { uint32_t x = (uint32_t)tp->uint64_data[i]; memcpy(dst + i * 4, &x, 4); break; }
        case RP_INT32: memcpy(dst + i * 4, &tp->int32_data[i], 4); break;
        case RP_INT16: { int16_t x = (int16_t)tp->int32_data[i]; memcpy(dst + i * 2, &x, 2); break; }
        case RP_UINT16: { uint16_t x = (uint16_t)tp->int32_data[i]; memcpy(dst + i * 2, &x, 2); break; }
        case RP_INT8: { int8_t x = (int8_t)tp->int32_data[i]; memcpy(dst + i, &x, 1); break; }
        case RP_UINT8: dst[i] = (uint8_t)tp->int32_data[i]; break;
        case RP_BOOL: dst[i] = tp->int32_data[i] != 0; break;
        default: break;
        }
    }
}

/* The one tensor decoder (initializers, Constant attributes, .pb files).
 * fallback names the tensor in messages when the file leaves it unnamed. */
static rp_status copy_payload(const payload *pl, const load_ctx *lc, void *dst, const char *label, rp_error *err)
{
    const model_source *src = lc->src;
    if (src->fd < 0) {
        memcpy(dst, src->bytes + pl->at, pl->len);
        return RP_OK;
    }
    size_t done = 0;
    while (done < pl->len) {
        ssize_t got = pread(src->fd, (uint8_t *)dst + done, pl->len - done, (off_t)(pl->at + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return rp_fail(err, RP_ERR_IO, "tensor '%s': reading its %zu bytes failed: %s", label, pl->len,
                           got < 0 ? strerror(errno) : "the file got shorter while loading");
        done += (size_t)got;
    }
    return RP_OK;
}

/* pl: where the raw_data cut out of tp is (NULL or !pl->cut: tp holds its bytes). */
rp_status rp_onnx_decode_tensor(Onnx__TensorProto *tp, const payload *pl, const char *fallback, load_ctx *lc,
                                rp_tensor *out, rp_error *err)
{
    rp_status st = RP_OK;
    void *data = NULL;
    const char *label = tp->name && tp->name[0] ? tp->name : fallback;
    memset(out, 0, sizeof *out);

    if (!tp->has_data_type || tp->data_type == RP_UNDEFINED)
        return rp_fail(err, RP_ERR_FORMAT, "tensor '%s': no data type", label);
    rp_dtype dt = (rp_dtype)tp->data_type;
    size_t es = rp_dtype_size(dt);
    if (es == 0)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "tensor '%s': dtype %s (%d) is not supported", label,
                       rp_dtype_name(dt), (int)tp->data_type);
    if (tp->n_dims > RP_MAX_RANK)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "tensor '%s': rank %zu exceeds the maximum of %d", label,
                       tp->n_dims, RP_MAX_RANK);
    int rank = (int)tp->n_dims;
    int64_t dims[RP_MAX_RANK] = {0}; /* a local copy: tp->dims is NULL for scalars */
    if (rank)
        memcpy(dims, tp->dims, (size_t)rank * sizeof dims[0]);
    for (int d = 0; d < rank; d++)
        if (dims[d] < 0)
            return rp_fail(err, RP_ERR_FORMAT, "tensor '%s': dimension %d is negative (%lld)", label, d,
                           (long long)dims[d]);
    int64_t count = rp_shape_count(rank, dims);
    if (count < 0)
        return rp_fail(err, RP_ERR_FORMAT, "tensor '%s': the element count of its %d dims overflows", label, rank);
    if ((uint64_t)count > SIZE_MAX / es || count > INT64_MAX / (int64_t)es)
        return rp_fail(err, RP_ERR_FORMAT, "tensor '%s': %lld elements is too large", label, (long long)count);
    size_t nbytes = (size_t)count * es;

    /* Each branch checks the file holds exactly nbytes before allocating. */
    if (tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) {
        if ((st = read_external(tp, label, lc, &data, nbytes, err)))
            goto fail;
    } else if (tp->has_raw_data) {
        size_t have = pl && pl->cut ? pl->len : tp->raw_data.len;
        if (have != nbytes) {
            st = rp_fail(err, RP_ERR_FORMAT, "tensor '%s': raw_data has %zu bytes, expected %zu", label, have,
                         nbytes);
            goto fail;
        }
        if (pl && pl->cut && nbytes) {
            if (!(data = malloc(nbytes))) {
                st = rp_fail(err, RP_ERR_NOMEM, "tensor '%s': out of memory for %zu bytes", label, nbytes);
                goto fail;
            }
            if ((st = copy_payload(pl, lc, data, label, err)))
                goto fail;
        }
    } else {
        const char *field = NULL;
        size_t have = typed_len(tp, dt, &field);
        if ((uint64_t)have != (uint64_t)count) {
            st = rp_fail(err, RP_ERR_FORMAT, "tensor '%s': %s has %zu elements, expected %lld", label, field, have,
                         (long long)count);
            goto fail;
        }
    }
    if (nbytes && !data && tp->has_raw_data) {
        /* Take the bytes protobuf-c allocated (with malloc: its default
         * allocator) instead of copying them. Initializers' payloads were cut
         * out before parsing and never get here; Constant nodes' tensors and
         * .pb files do. */
        data = tp->raw_data.data;
        tp->raw_data.data = NULL;
        tp->raw_data.len = 0;
        tp->has_raw_data = 0;
    }
    if (nbytes && !data) {
        data = malloc(nbytes);
        if (!data) {
            st = rp_fail(err, RP_ERR_NOMEM, "tensor '%s': out of memory for %zu bytes", label, nbytes);
            goto fail;
        }
        if (tp->has_raw_data)
            memcpy(data, tp->raw_data.data, nbytes);
        else
            copy_typed(tp, dt, data, count);
    }

    if (!rp_tensor_set_shape(out, dt, rank, dims)) {
        st = rp_fail(err, RP_ERR_INTERNAL, "tensor '%s': shape rejected", label);
        goto fail;
    }
    out->data = data;
    return RP_OK;
fail:
    free(data);
    memset(out, 0, sizeof *out);
    return st;
}

rp_status rp_tensor_load_pb(const char *path, rp_tensor *out, char **name_out, rp_error *err)
{
    rp_status st = RP_OK;
    uint8_t *buf = NULL;
    size_t len = 0;
    Onnx__TensorProto *tp = NULL;
    char *dir = NULL, *name = NULL;
    memset(out, 0, sizeof *out);
    if (name_out)
        *name_out = NULL;

    if ((st = rp_onnx_read_file(path, &buf, &len, err)))
        return st;
    tp = onnx__tensor_proto__unpack(NULL, len, buf);
    if (!tp) {
        st = rp_fail(err, RP_ERR_FORMAT, "%s: not a TensorProto (protobuf parse failed; truncated or corrupt file?)",
                     path);
        goto fail;
    }
    dir = rp_onnx_dir_of(path);
    if (!dir || (name_out && !(name = dup_str(tp->name)))) {
        st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    model_source none = {NULL, 0, -1};
    load_ctx lc = {dir, 0, RP_DEFAULT_MAX_BYTES, &none};
    if ((st = rp_onnx_decode_tensor(tp, NULL, "(unnamed)", &lc, out, err))) {
        if (err)
            rp_error_prefix(err, "%s", path);
        goto fail;
    }
    if (name_out)
        *name_out = name;
    name = NULL;
fail:
    if (tp)
        onnx__tensor_proto__free_unpacked(tp, NULL);
    free(buf);
    free(dir);
    free(name);
    return st;
}
