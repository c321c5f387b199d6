/* ONNX protobuf → rp_graph. The only file that sees protobuf types: the
 * ModelProto is unpacked, every string and tensor byte is copied into
 * memory the graph owns, and the ModelProto is freed before returning, so
 * nothing downstream ever points into protobuf-c's allocations.
 *
 * The weights are not unpacked by protobuf-c: it would copy every bytes
 * field, so the file and the parsed message would both hold them (twice a
 * model's size at the peak of loading). The file is mapped, the top graph's
 * initializers' raw_data payloads are cut out of a small copy of the message
 * that protobuf-c parses, and each payload is read from the file straight
 * into the buffer its tensor keeps.
 *
 * Files are untrusted: every count, length and index from the file is checked
 * before it sizes an allocation or a copy. */

/* realpath() is XSI, not plain POSIX: the build's _POSIX_C_SOURCE alone hides it. */
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700
#endif

#include "graph/graph.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "onnx.pb-c.h"

/* protobuf-c leaves unset optional strings NULL; ONNX treats them as "". */
static const char *nz(const char *s)
{
    return s ? s : "";
}

static char *dup_str(const char *s)
{
    return strdup(nz(s));
}

/* Attribute strings are bytes in the schema: copy and NUL-terminate. */
static char *dup_bytes(const uint8_t *p, size_t n)
{
    if (n == SIZE_MAX)
        return NULL;
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    if (n)
        memcpy(s, p, n);
    s[n] = 0;
    return s;
}

/* ---- whole-file reads ---- */

/* Protobuf messages are at most 2 GiB; reading stops past that, so a
 * device or an endless pipe given as a model is an error, not an OOM. */
#define RP_MAX_PROTO_FILE ((size_t)INT32_MAX)

/* Reads until EOF rather than trusting the size from fstat, so short reads
 * and files that change size are handled; fstat only sizes the first buffer.
 * Takes an open descriptor, so a pipe is read by the one open that found it
 * (a second open would find the writer gone). Closes fd. */
static rp_status read_whole_fd(int fd, const char *path, uint8_t **out, size_t *out_len, rp_error *err)
{
    rp_status st = RP_OK;
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    *out = NULL;
    *out_len = 0;
    struct stat sb;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0 && (uint64_t)sb.st_size <= RP_MAX_PROTO_FILE)
        cap = (size_t)sb.st_size + 1; /* +1 so EOF is seen without a realloc */
    else
        cap = 65536;
    buf = malloc(cap);
    if (!buf) {
        st = rp_fail(err, RP_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, cap);
        goto fail;
    }
    for (;;) {
        if (len > RP_MAX_PROTO_FILE) {
            st = rp_fail(err, RP_ERR_FORMAT,
                         "%s: larger than 2 GiB, protobuf's limit for one message (models that big keep their "
                         "weights in external data files)", path);
            goto fail;
        }
        if (len == cap) {
            if (cap > SIZE_MAX / 2) {
                st = rp_fail(err, RP_ERR_NOMEM, "%s: file too large", path);
                goto fail;
            }
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                st = rp_fail(err, RP_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, cap * 2);
                goto fail;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t got = read(fd, buf + len, cap - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            st = rp_fail(err, RP_ERR_IO, "%s: read error: %s", path, strerror(errno));
            goto fail;
        }
        if (got == 0)
            break;
        len += (size_t)got;
    }
    if (len == 0) {
        st = rp_fail(err, RP_ERR_FORMAT, "%s: empty file", path);
        goto fail;
    }
    close(fd);
    *out = buf;
    *out_len = len;
    return RP_OK;
fail:
    close(fd);
    free(buf);
    return st;
}

static rp_status read_whole_file(const char *path, uint8_t **out, size_t *out_len, rp_error *err)
{
    *out = NULL;
    *out_len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rp_fail(err, RP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    return read_whole_fd(fd, path, out, out_len, err);
}

/* "dir/model.onnx" → "dir", "model.onnx" → ".", "/model.onnx" → "/". */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    size_t n = (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (!d)
        return NULL;
    memcpy(d, path, n);
    d[n] = 0;
    return d;
}

/* ---- tensors ---- */

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

/* What tensor decoding needs from the model being loaded. External data is
 * counted against a ceiling: a small model can point at a huge (or sparse,
 * or decompressed-from-nothing) weights file, and those bytes are read at
 * load, before any --max-memory set on the model applies (that one covers
 * what prepare allocates). */
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

typedef struct load_ctx {
    const char *dir;    /* the model's folder; NULL when loaded from memory */
    int64_t ext_bytes;  /* external data read so far */
    int64_t ext_limit;
    const model_source *src;
} load_ctx;

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
static rp_status decode_tensor(Onnx__TensorProto *tp, const payload *pl, const char *fallback, load_ctx *lc,
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

/* ---- names → value ids ---- */

/* Open addressing over value ids; keys are the graph's own value names.
 * Sized once for the most values the model can have, so it never grows. */
typedef struct name_map {
    int *slot; /* value id or -1 */
    size_t mask;
} name_map;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static bool map_init(name_map *m, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n + 1)
        cap *= 2;
    m->slot = malloc(cap * sizeof *m->slot);
    if (!m->slot)
        return false;
    for (size_t i = 0; i < cap; i++)
        m->slot[i] = -1;
    m->mask = cap - 1;
    return true;
}

/* Returns the slot index for name: either holding its id or empty. */
static size_t map_probe(const name_map *m, const rp_graph *g, const char *name)
{
    size_t i = (size_t)hash_str(name) & m->mask;
    while (m->slot[i] >= 0 && strcmp(g->values[m->slot[i]].name, name) != 0)
        i = (i + 1) & m->mask;
    return i;
}

static int map_find(const name_map *m, const rp_graph *g, const char *name)
{
    return m->slot[map_probe(m, g, name)];
}

/* Append a value named name; its id, or -1 on out of memory. The caller
 * checks uniqueness first. */
static int add_value(rp_graph *g, name_map *m, const char *name, rp_value_kind kind, int producer)
{
    rp_value *v = &g->values[g->n_values];
    memset(v, 0, sizeof *v);
    v->name = dup_str(name);
    if (!v->name)
        return -1;
    v->kind = kind;
    v->producer = producer;
    v->t.count = -1; /* unknown until set */
    int id = g->n_values++;
    m->slot[map_probe(m, g, v->name)] = id;
    return id;
}

/* ---- graph inputs ---- */

static rp_status input_type(rp_value *v, const Onnx__ValueInfoProto *vi, rp_error *err)
{
    const Onnx__TypeProto *tp = vi->type;
    if (!tp)
        return rp_fail(err, RP_ERR_FORMAT, "graph input '%s' has no type", v->name);
    if (tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "graph input '%s' is not a tensor (sequence, map, optional and "
                       "sparse inputs are not supported)", v->name);
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    v->t.dtype = tt->has_elem_type ? (rp_dtype)tt->elem_type : RP_UNDEFINED;
    if (!tt->shape) {
        /* Unknown rank. rank -1 rather than 0 so that binding symbolic dims
         * at prepare fails (rp_tensor_set_shape refuses it) instead of
         * silently treating the input as a scalar. */
        v->shape_known = false;
        v->t.rank = -1;
        v->t.count = -1;
        return RP_OK;
    }
    if (tt->shape->n_dim > RP_MAX_RANK)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "graph input '%s': rank %zu exceeds the maximum of %d", v->name,
                       tt->shape->n_dim, RP_MAX_RANK);
    v->t.rank = (int)tt->shape->n_dim;
    bool known = true;
    for (int d = 0; d < v->t.rank; d++) {
        const Onnx__TensorShapeProto__Dimension *dim = tt->shape->dim[d];
        if (dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
            if (dim->dim_value < 0)
                return rp_fail(err, RP_ERR_FORMAT, "graph input '%s': dimension %d is negative (%lld)", v->name, d,
                               (long long)dim->dim_value);
            v->t.dims[d] = dim->dim_value;
            continue;
        }
        const char *param = "?";
        if (dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && dim->dim_param &&
            dim->dim_param[0])
            param = dim->dim_param;
        v->t.dims[d] = -1;
        v->dim_params[d] = strdup(param);
        if (!v->dim_params[d])
            return rp_fail(err, RP_ERR_NOMEM, "out of memory");
        known = false;
    }
    v->shape_known = known;
    v->t.count = known ? rp_shape_count(v->t.rank, v->t.dims) : -1;
    if (known && v->t.count < 0)
        return rp_fail(err, RP_ERR_FORMAT, "graph input '%s': dims overflow", v->name);
    return RP_OK;
}

/* ---- nodes ---- */

static rp_status convert_attr(const Onnx__AttributeProto *ap, const rp_node *n, load_ctx *lc, rp_attr *a,
                              rp_error *err)
{
    a->name = dup_str(ap->name);
    if (!a->name)
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    int type = ap->has_type ? (int)ap->type : 0;
    if (type == 0) {
        /* Files from before IR version 2 leave the type out: infer it from the field present. */
        if (ap->has_f) type = RP_ATTR_FLOAT;
        else if (ap->has_i) type = RP_ATTR_INT;
        else if (ap->has_s) type = RP_ATTR_STRING;
        else if (ap->t) type = RP_ATTR_TENSOR;
        else if (ap->g) type = RP_ATTR_GRAPH;
        else if (ap->n_floats) type = RP_ATTR_FLOATS;
        else if (ap->n_ints) type = RP_ATTR_INTS;
        else if (ap->n_strings) type = RP_ATTR_STRINGS;
    }
    /* Types we do not decode (sparse tensors, lists of tensors or graphs,
     * type protos) keep their ONNX number and no payload: no op accepts
     * them, so prepare refuses the node with the attribute's name. */
    a->type = (rp_attr_type)type;
    switch (type) {
    case RP_ATTR_FLOAT:
        a->f = ap->f;
        break;
    case RP_ATTR_INT:
        a->i = ap->i;
        break;
    case RP_ATTR_STRING:
        a->s = dup_bytes(ap->s.data, ap->s.len);
        if (!a->s)
            return rp_fail(err, RP_ERR_NOMEM, "out of memory");
        break;
    case RP_ATTR_FLOATS:
        if (ap->n_floats > INT64_MAX / sizeof(float))
            return rp_fail(err, RP_ERR_FORMAT, "attribute '%s' is too large", a->name);
        a->n = (int64_t)ap->n_floats;
        if (a->n) {
            a->floats = malloc(ap->n_floats * sizeof *a->floats);
            if (!a->floats)
                return rp_fail(err, RP_ERR_NOMEM, "out of memory");
            memcpy(a->floats, ap->floats, ap->n_floats * sizeof *a->floats);
        }
        break;
    case RP_ATTR_INTS:
        if (ap->n_ints > INT64_MAX / sizeof(int64_t))
            return rp_fail(err, RP_ERR_FORMAT, "attribute '%s' is too large", a->name);
        a->n = (int64_t)ap->n_ints;
        if (a->n) {
            a->ints = malloc(ap->n_ints * sizeof *a->ints);
            if (!a->ints)
                return rp_fail(err, RP_ERR_NOMEM, "out of memory");
            memcpy(a->ints, ap->ints, ap->n_ints * sizeof *a->ints);
        }
        break;
    case RP_ATTR_STRINGS:
        if (ap->n_strings > INT64_MAX / sizeof(char *))
            return rp_fail(err, RP_ERR_FORMAT, "attribute '%s' is too large", a->name);
        if (ap->n_strings) {
            /* calloc and n set first: graph.c frees strings[0..n), NULLs included. */
            a->strings = calloc(ap->n_strings, sizeof *a->strings);
            if (!a->strings)
                return rp_fail(err, RP_ERR_NOMEM, "out of memory");
            a->n = (int64_t)ap->n_strings;
            for (size_t k = 0; k < ap->n_strings; k++) {
                a->strings[k] = dup_bytes(ap->strings[k].data, ap->strings[k].len);
                if (!a->strings[k])
                    return rp_fail(err, RP_ERR_NOMEM, "out of memory");
            }
        }
        break;
    case RP_ATTR_TENSOR: {
        if (!ap->t)
            return rp_fail(err, RP_ERR_FORMAT, "node '%s' (%s): tensor attribute '%s' has no tensor", n->name,
                           n->op_type, a->name);
        a->tensor = calloc(1, sizeof *a->tensor);
        if (!a->tensor)
            return rp_fail(err, RP_ERR_NOMEM, "out of memory");
        rp_status st = decode_tensor(ap->t, NULL, a->name, lc, a->tensor, err);
        if (st) {
            if (err)
                rp_error_prefix(err, "node '%s' (%s), attribute '%s'", n->name, n->op_type, a->name);
            return st;
        }
        break;
    }
    default:
        break; /* GRAPH and the undecoded types: type only */
    }
    return RP_OK;
}

static bool is_default_domain(const char *d)
{
    return d == NULL || d[0] == 0 || strcmp(d, "ai.onnx") == 0;
}

#define RP_MAX_NODE_ATTRS 1024

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Name, op, domain, opset and attributes of node index idx. */
static rp_status convert_node(rp_graph *g, int idx, const Onnx__NodeProto *np, load_ctx *lc, rp_error *err)
{
    rp_node *n = &g->nodes[idx];
    if (!np->op_type || !np->op_type[0])
        return rp_fail(err, RP_ERR_FORMAT, "node %d ('%s') has no op_type", idx, nz(np->name));
    n->op_type = strdup(np->op_type);
    if (!n->op_type)
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    if (np->name && np->name[0]) {
        n->name = strdup(np->name);
    } else {
        size_t len = strlen(np->op_type) + 24;
        n->name = malloc(len);
        if (n->name)
            snprintf(n->name, len, "%s_%d", np->op_type, idx);
    }
    n->domain = dup_str(is_default_domain(np->domain) ? "" : np->domain);
    if (!n->name || !n->domain)
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    n->opset = rp_graph_opset(g, n->domain);
    if (np->n_input > INT_MAX || np->n_output > INT_MAX || np->n_attribute > INT_MAX)
        return rp_fail(err, RP_ERR_FORMAT, "node '%s' (%s): too many inputs, outputs or attributes", n->name,
                       n->op_type);
    /* -1 until resolved, so a failure part-way leaves nothing dangling. */
    n->in = malloc((np->n_input ? np->n_input : 1) * sizeof *n->in);
    n->out = malloc((np->n_output ? np->n_output : 1) * sizeof *n->out);
    if (!n->in || !n->out)
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    n->n_in = (int)np->n_input;
    n->n_out = (int)np->n_output;
    for (int k = 0; k < n->n_in; k++)
        n->in[k] = -1;
    for (int k = 0; k < n->n_out; k++)
        n->out[k] = -1;
    /* No ONNX operator has more than a few dozen attributes; thousands are
     * a crafted file, not a model. */
    if (np->n_attribute > RP_MAX_NODE_ATTRS)
        return rp_fail(err, RP_ERR_FORMAT, "node '%s' (%s): %zu attributes (at most %d are accepted)", n->name,
                       n->op_type, np->n_attribute, RP_MAX_NODE_ATTRS);
    if (np->n_attribute) {
        n->attr = calloc(np->n_attribute, sizeof *n->attr);
        if (!n->attr)
            return rp_fail(err, RP_ERR_NOMEM, "out of memory");
        for (size_t k = 0; k < np->n_attribute; k++) {
            n->n_attr = (int)k + 1; /* count it before filling: graph.c frees what is there */
            rp_status st = convert_attr(np->attribute[k], n, lc, &n->attr[k], err);
            if (st)
                return st;
        }
        /* An attribute given twice: which one a kernel reads would be an
         * accident of lookup order. */
        const char **names = malloc(np->n_attribute * sizeof *names);
        if (!names)
            return rp_fail(err, RP_ERR_NOMEM, "out of memory");
        for (int k = 0; k < n->n_attr; k++)
            names[k] = n->attr[k].name;
        qsort(names, (size_t)n->n_attr, sizeof *names, cmp_names);
        for (int k = 1; k < n->n_attr; k++)
            if (strcmp(names[k - 1], names[k]) == 0) {
                rp_status st = rp_fail(err, RP_ERR_FORMAT, "node '%s' (%s): attribute '%s' is given twice", n->name,
                                       n->op_type, names[k]);
                free(names);
                return st;
            }
        free(names);
    }
    return RP_OK;
}

/* ---- topological order ---- */

/* Binary min-heap of node ids: Kahn's algorithm taking the lowest original
 * index first keeps the file's order wherever the dependencies allow. */
static void heap_push(int *h, int *len, int v)
{
    int i = (*len)++;
    h[i] = v;
    while (i > 0 && h[(i - 1) / 2] > h[i]) {
        int p = (i - 1) / 2, t = h[p];
        h[p] = h[i];
        h[i] = t;
        i = p;
    }
}

static int heap_pop(int *h, int *len)
{
    int top = h[0];
    h[0] = h[--(*len)];
    for (int i = 0;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < *len && h[l] < h[m]) m = l;
        if (r < *len && h[r] < h[m]) m = r;
        if (m == i)
            break;
        int t = h[m];
        h[m] = h[i];
        h[i] = t;
        i = m;
    }
    return top;
}

static int producer_of(const rp_graph *g, int value_id)
{
    return value_id < 0 ? -1 : g->values[value_id].producer;
}

static rp_status sort_nodes(rp_graph *g, rp_error *err)
{
    rp_status st = RP_OK;
    int n = g->n_nodes;
    bool sorted = true;
    for (int i = 0; i < n && sorted; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++)
            if (producer_of(g, g->nodes[i].in[k]) >= i) {
                sorted = false;
                break;
            }
    if (sorted)
        return RP_OK;

    int *indeg = calloc((size_t)n, sizeof *indeg);
    int *start = calloc((size_t)n + 1, sizeof *start); /* CSR of consumers per producer */
    int *heap = malloc((size_t)n * sizeof *heap);
    int *order = malloc((size_t)n * sizeof *order);
    int *newpos = malloc((size_t)n * sizeof *newpos);
    int *cons = NULL;
    rp_node *nodes = NULL;
    int64_t edges = 0;
    if (!indeg || !start || !heap || !order || !newpos) {
        st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++) {
            int p = producer_of(g, g->nodes[i].in[k]);
            if (p >= 0) {
                indeg[i]++;
                start[p + 1]++;
                edges++;
            }
        }
    if (edges > INT_MAX) {
        st = rp_fail(err, RP_ERR_FORMAT, "graph has too many edges");
        goto fail;
    }
    for (int i = 0; i < n; i++)
        start[i + 1] += start[i];
    cons = malloc((size_t)(edges ? edges : 1) * sizeof *cons);
    if (!cons) {
        st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    /* newpos doubles as the fill cursor per producer here. */
    for (int i = 0; i < n; i++)
        newpos[i] = start[i];
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++) {
            int p = producer_of(g, g->nodes[i].in[k]);
            if (p >= 0)
                cons[newpos[p]++] = i;
        }

    int hl = 0, emitted = 0;
    for (int i = 0; i < n; i++)
        if (indeg[i] == 0)
            heap_push(heap, &hl, i);
    while (hl > 0) {
        int u = heap_pop(heap, &hl);
        order[emitted++] = u;
        for (int e = start[u]; e < start[u + 1]; e++)
            if (--indeg[cons[e]] == 0)
                heap_push(heap, &hl, cons[e]);
    }
    if (emitted < n) {
        /* Every node left has an unemitted producer; following them n times
         * must end inside a cycle, so the node named is on one. */
        int x = 0;
        while (indeg[x] == 0)
            x++;
        for (int step = 0; step < n; step++) {
            const rp_node *nd = &g->nodes[x];
            for (int k = 0; k < nd->n_in; k++) {
                int p = producer_of(g, nd->in[k]);
                if (p >= 0 && indeg[p] > 0) {
                    x = p;
                    break;
                }
            }
        }
        st = rp_fail(err, RP_ERR_FORMAT, "the graph has a cycle through node '%s' (%s)", g->nodes[x].name,
                     g->nodes[x].op_type);
        goto fail;
    }

    nodes = malloc((size_t)n * sizeof *nodes);
    if (!nodes) {
        st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        nodes[i] = g->nodes[order[i]];
        newpos[order[i]] = i;
    }
    for (int v = 0; v < g->n_values; v++)
        if (g->values[v].producer >= 0)
            g->values[v].producer = newpos[g->values[v].producer];
    free(g->nodes);
    g->nodes = nodes;
    nodes = NULL;
fail:
    free(indeg);
    free(start);
    free(heap);
    free(order);
    free(newpos);
    free(cons);
    free(nodes);
    return st;
}

/* ---- the model ---- */

static rp_status build_graph(rp_graph *g, const Onnx__ModelProto *mp, const model_source *src, const payload *cut,
                             size_t n_cut, rp_error *err)
{
    rp_status st = RP_OK;
    name_map map = {0};
    const Onnx__GraphProto *gp = mp->graph;
    load_ctx lc = {g->model_dir, 0, RP_DEFAULT_MAX_BYTES, src};

    if (!gp)
        return rp_fail(err, RP_ERR_FORMAT, "no graph");
    if (gp->n_sparse_initializer)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "sparse initializers are not supported ('%s')",
                       gp->sparse_initializer[0]->values ? nz(gp->sparse_initializer[0]->values->name) : "");
    g->ir_version = mp->has_ir_version ? mp->ir_version : 0;

    if (mp->n_opset_import > INT_MAX || mp->n_metadata_props > INT_MAX || gp->n_node > INT_MAX ||
        gp->n_input > INT_MAX || gp->n_output > INT_MAX)
        return rp_fail(err, RP_ERR_FORMAT, "graph too large");
    if (mp->n_opset_import) {
        g->opsets = calloc(mp->n_opset_import, sizeof *g->opsets);
        if (!g->opsets)
            return rp_fail(err, RP_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < mp->n_opset_import; i++) {
            const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
            g->opsets[i].domain = dup_str(o->domain);
            g->opsets[i].version = o->has_version ? o->version : 0;
            g->n_opsets = (int)i + 1;
            if (!g->opsets[i].domain)
                return rp_fail(err, RP_ERR_NOMEM, "out of memory");
            const char *d = g->opsets[i].domain;
            if ((d[0] == 0 || strcmp(d, "ai.onnx") == 0) && g->opsets[i].version > RP_MAX_OPSET)
                return rp_fail(err, RP_ERR_UNSUPPORTED,
                               "the model imports the default ONNX domain at opset %lld, newer than the newest "
                               "relprop knows (%d): its ops may have changed meaning; export it with opset %d or "
                               "older", (long long)g->opsets[i].version, RP_MAX_OPSET, RP_MAX_OPSET);
        }
    }
    if (mp->n_metadata_props) {
        g->metadata_keys = calloc(mp->n_metadata_props, sizeof *g->metadata_keys);
        g->metadata_values = calloc(mp->n_metadata_props, sizeof *g->metadata_values);
        if (!g->metadata_keys || !g->metadata_values)
            return rp_fail(err, RP_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < mp->n_metadata_props; i++) {
            g->metadata_keys[i] = dup_str(mp->metadata_props[i]->key);
            g->metadata_values[i] = dup_str(mp->metadata_props[i]->value);
            g->n_metadata = (int)i + 1;
            if (!g->metadata_keys[i] || !g->metadata_values[i])
                return rp_fail(err, RP_ERR_NOMEM, "out of memory");
        }
    }

    /* Every value the file can name, to size the arrays once. */
    uint64_t max_values = (uint64_t)gp->n_initializer + gp->n_input;
    for (size_t i = 0; i < gp->n_node; i++)
        max_values += gp->node[i]->n_output;
    if (max_values > INT_MAX / 4)
        return rp_fail(err, RP_ERR_FORMAT, "graph too large (%llu values)", (unsigned long long)max_values);
    g->values = calloc(max_values ? (size_t)max_values : 1, sizeof *g->values);
    g->nodes = calloc(gp->n_node ? gp->n_node : 1, sizeof *g->nodes);
    g->inputs = calloc(gp->n_input ? gp->n_input : 1, sizeof *g->inputs);
    g->outputs = calloc(gp->n_output ? gp->n_output : 1, sizeof *g->outputs);
    if (!g->values || !g->nodes || !g->inputs || !g->outputs || !map_init(&map, (size_t)max_values)) {
        st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
        goto fail;
    }

    for (size_t i = 0; i < gp->n_initializer; i++) {
        Onnx__TensorProto *tp = gp->initializer[i]; /* not const: decode_tensor may take its bytes */
        const char *name = nz(tp->name);
        if (!name[0]) {
            st = rp_fail(err, RP_ERR_FORMAT, "initializer %zu has no name", i);
            goto fail;
        }
        if (map_find(&map, g, name) >= 0) {
            st = rp_fail(err, RP_ERR_FORMAT, "initializer '%s' is defined twice", name);
            goto fail;
        }
        int id = add_value(g, &map, name, RP_VALUE_CONSTANT, -1);
        if (id < 0) {
            st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
            goto fail;
        }
        rp_value *v = &g->values[id];
        if ((st = decode_tensor(tp, i < n_cut ? &cut[i] : NULL, name, &lc, &v->t, err)))
            goto fail;
        v->shape_known = true;
    }

    for (size_t i = 0; i < gp->n_input; i++) {
        const Onnx__ValueInfoProto *vi = gp->input[i];
        const char *name = nz(vi->name);
        if (!name[0]) {
            st = rp_fail(err, RP_ERR_FORMAT, "graph input %zu has no name", i);
            goto fail;
        }
        int id = map_find(&map, g, name);
        if (id >= 0 && g->values[id].kind == RP_VALUE_CONSTANT)
            continue; /* an initializer listed as an input (IR < 4 style): a constant */
        if (id >= 0) {
            st = rp_fail(err, RP_ERR_FORMAT, "graph input '%s' is listed twice", name);
            goto fail;
        }
        id = add_value(g, &map, name, RP_VALUE_INPUT, -1);
        if (id < 0) {
            st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
            goto fail;
        }
        g->inputs[g->n_inputs++] = id;
        if ((st = input_type(&g->values[id], vi, err)))
            goto fail;
    }

    /* Nodes and their outputs first, inputs after: a file out of order may
     * consume a value before the node that makes it. */
    for (size_t i = 0; i < gp->n_node; i++) {
        const Onnx__NodeProto *np = gp->node[i];
        int idx = (int)i;
        g->n_nodes = idx + 1;
        if ((st = convert_node(g, idx, np, &lc, err)))
            goto fail;
        rp_node *n = &g->nodes[idx];
        for (int k = 0; k < n->n_out; k++) {
            const char *name = nz(np->output[k]);
            if (!name[0])
                continue; /* omitted optional output */
            int prev = map_find(&map, g, name);
            if (prev >= 0) {
                int p = g->values[prev].producer;
                if (p >= 0)
                    st = rp_fail(err, RP_ERR_FORMAT, "node '%s' (%s): output '%s' is already produced by node '%s'",
                                 n->name, n->op_type, name, g->nodes[p].name);
                else
                    st = rp_fail(err, RP_ERR_FORMAT, "node '%s' (%s): output '%s' is already a graph %s", n->name,
                                 n->op_type, name, g->values[prev].kind == RP_VALUE_INPUT ? "input" : "initializer");
                goto fail;
            }
            int id = add_value(g, &map, name, RP_VALUE_ACTIVATION, idx);
            if (id < 0) {
                st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
                goto fail;
            }
            n->out[k] = id;
        }
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const Onnx__NodeProto *np = gp->node[i];
        rp_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_in; k++) {
            const char *name = nz(np->input[k]);
            if (!name[0])
                continue; /* omitted optional input */
            int id = map_find(&map, g, name);
            if (id < 0) {
                st = rp_fail(err, RP_ERR_FORMAT,
                             "node '%s' (%s): input '%s' is not a graph input, initializer or node output", n->name,
                             n->op_type, name);
                goto fail;
            }
            n->in[k] = id;
        }
    }

    for (size_t i = 0; i < gp->n_output; i++) {
        const char *name = nz(gp->output[i]->name);
        int id = map_find(&map, g, name);
        if (id < 0) {
            st = rp_fail(err, RP_ERR_FORMAT, "graph output '%s' is not produced by any node, input or initializer",
                         name);
            goto fail;
        }
        if (g->values[id].is_graph_output) {
            st = rp_fail(err, RP_ERR_FORMAT, "graph output '%s' is listed twice", name);
            goto fail;
        }
        g->outputs[g->n_outputs++] = id;
        g->values[id].is_graph_output = true;
    }

    st = sort_nodes(g, err);
fail:
    g->model_bytes += lc.ext_bytes;
    free(map.slot);
    return st;
}

/* ---- nesting depth, before protobuf-c sees the bytes ----
 *
 * protobuf-c unpacks submessages by recursion with no depth limit, and ONNX
 * messages nest without bound (a graph attribute holds a graph whose nodes
 * hold graph attributes...; a sequence type holds a type...): a 200 KB file
 * nesting 20000 graphs overflows the stack. So the wire format is walked
 * first, knowing which fields of which messages are themselves messages
 * along the recursive paths, and nesting beyond PB_MAX_DEPTH is refused.
 * The walk keeps its own bounded recursion, and refuses what protobuf-c
 * would also refuse (bad varints, lengths past the end, groups). */
#define PB_MAX_DEPTH 96

typedef enum pb_msg {
    PB_NONE, PB_MODEL, PB_TRAINING, PB_FUNCTION, PB_GRAPH, PB_NODE, PB_ATTR, PB_VALUE_INFO, PB_TYPE,
    PB_TYPE_SEQ, PB_TYPE_MAP, PB_TYPE_OPT, PB_TENSOR
} pb_msg;

/* Strings that name values and ops: protobuf-c hands them over as C strings,
 * so an embedded NUL would silently cut the name ("\0x" becoming "", an
 * omitted input). Refused instead. */
static bool pb_is_name(pb_msg m, uint64_t field)
{
    switch (m) {
    case PB_NODE: return field <= 4 || field == 7; /* input, output, name, op_type, domain */
    case PB_VALUE_INFO: return field == 1;
    case PB_TENSOR: return field == 8;
    case PB_GRAPH: return field == 2;
    default: return false;
    }
}

/* The message type of field `field` of a `m`, where it can lead back to a
 * recursive message; PB_NONE for scalars, strings and leaf messages. */
static pb_msg pb_child(pb_msg m, uint64_t field)
{
    switch (m) {
    case PB_MODEL: return field == 7 ? PB_GRAPH : field == 20 ? PB_TRAINING : field == 25 ? PB_FUNCTION : PB_NONE;
    case PB_TRAINING: return field == 1 || field == 2 ? PB_GRAPH : PB_NONE;
    case PB_FUNCTION: return field == 7 ? PB_NODE : field == 11 ? PB_ATTR : PB_NONE;
    case PB_GRAPH:
        return field == 1 ? PB_NODE : field >= 11 && field <= 13 ? PB_VALUE_INFO : field == 5 ? PB_TENSOR : PB_NONE;
    case PB_NODE: return field == 5 ? PB_ATTR : PB_NONE;
    case PB_ATTR: return field == 6 || field == 11 ? PB_GRAPH : field == 14 || field == 15 ? PB_TYPE : PB_NONE;
    case PB_VALUE_INFO: return field == 2 ? PB_TYPE : PB_NONE;
    case PB_TYPE: return field == 4 ? PB_TYPE_SEQ : field == 5 ? PB_TYPE_MAP : field == 9 ? PB_TYPE_OPT : PB_NONE;
    case PB_TYPE_SEQ: case PB_TYPE_OPT: return field == 1 ? PB_TYPE : PB_NONE;
    case PB_TYPE_MAP: return field == 2 ? PB_TYPE : PB_NONE;
    default: return PB_NONE;
    }
}

static bool pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*p >= end)
            return false;
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

typedef enum pb_walk { PB_WALK_OK, PB_WALK_MALFORMED, PB_WALK_TOO_DEEP, PB_WALK_NUL_NAME } pb_walk;

static pb_walk pb_check(const uint8_t *p, const uint8_t *end, pb_msg m, int depth)
{
    if (depth > PB_MAX_DEPTH)
        return PB_WALK_TOO_DEEP;
    while (p < end) {
        uint64_t tag, v;
        if (!pb_varint(&p, end, &tag) || (tag >> 3) == 0)
            return PB_WALK_MALFORMED;
        switch (tag & 7) {
        case 0:
            if (!pb_varint(&p, end, &v))
                return PB_WALK_MALFORMED;
            break;
        case 1:
            if (end - p < 8)
                return PB_WALK_MALFORMED;
            p += 8;
            break;
        case 5:
            if (end - p < 4)
                return PB_WALK_MALFORMED;
            p += 4;
            break;
        case 2: {
            if (!pb_varint(&p, end, &v) || v > (uint64_t)(end - p))
                return PB_WALK_MALFORMED;
            if (pb_is_name(m, tag >> 3) && memchr(p, 0, (size_t)v))
                return PB_WALK_NUL_NAME;
            pb_msg c = pb_child(m, tag >> 3);
            if (c != PB_NONE) {
                pb_walk w = pb_check(p, p + v, c, depth + 1);
                if (w != PB_WALK_OK)
                    return w;
            }
            p += v;
            break;
        }
        default: /* groups (3, 4) and invalid wire types */
            return PB_WALK_MALFORMED;
        }
    }
    return PB_WALK_OK;
}

/* ---- cutting the weights out before protobuf-c parses ----
 *
 * A copy of the message is made with every initializer's raw_data of the top
 * graph (ModelProto.graph = 7, GraphProto.initializer = 5, TensorProto.raw_data
 * = 9) replaced by an empty raw_data, and the enclosing lengths rewritten;
 * where each payload was is noted per initializer, in file order, which is
 * the order protobuf-c lists them in. Runs after pb_check, on bytes it
 * found well formed. */
typedef struct cut_buf {
    uint8_t *bytes;
    size_t len, cap;
    payload *cut; /* one per initializer */
    size_t n_cut, cap_cut;
} cut_buf;

static bool cut_reserve(cut_buf *c, size_t more)
{
    if (c->cap - c->len >= more)
        return true;
    size_t cap = c->cap ? c->cap : 4096;
    while (cap - c->len < more) {
        if (cap > SIZE_MAX / 2)
            return false;
        cap *= 2;
    }
    uint8_t *b = realloc(c->bytes, cap);
    if (!b)
        return false;
    c->bytes = b;
    c->cap = cap;
    return true;
}

static bool cut_put(cut_buf *c, const uint8_t *p, size_t n)
{
    if (!cut_reserve(c, n))
        return false;
    if (n)
        memcpy(c->bytes + c->len, p, n);
    c->len += n;
    return true;
}

static size_t varint_encode(uint64_t v, uint8_t out[10])
{
    size_t n = 0;
    do {
        out[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return n;
}

typedef enum cut_level { CUT_MODEL, CUT_GRAPH, CUT_INITIALIZER } cut_level;

static bool cut_message(cut_buf *c, const uint8_t *base, const uint8_t *p, const uint8_t *end, cut_level level)
{
    while (p < end) {
        const uint8_t *field_start = p;
        uint64_t tag, v;
        if (!pb_varint(&p, end, &tag))
            return false;
        switch (tag & 7) {
        case 0:
            if (!pb_varint(&p, end, &v))
                return false;
            break;
        case 1: p += 8; break;
        case 5: p += 4; break;
        case 2: {
            if (!pb_varint(&p, end, &v) || v > (uint64_t)(end - p))
                return false;
            uint64_t field = tag >> 3;
            bool nested = (level == CUT_MODEL && field == 7) || (level == CUT_GRAPH && field == 5);
            if (level == CUT_INITIALIZER && field == 9) {
                payload *pl = &c->cut[c->n_cut - 1]; /* a repeated raw_data: the last one counts */
                *pl = (payload){(size_t)(p - base), (size_t)v, true};
                uint8_t hdr[11];
                size_t n = varint_encode(tag, hdr);
                hdr[n++] = 0;
                if (!cut_put(c, hdr, n))
                    return false;
                p += v;
                continue;
            }
            if (!nested) {
                p += v;
                break;
            }
            if (level == CUT_GRAPH) {
                if (c->n_cut == c->cap_cut) {
                    size_t cap = c->cap_cut ? c->cap_cut * 2 : 64;
                    payload *np = realloc(c->cut, cap * sizeof *np);
                    if (!np)
                        return false;
                    c->cut = np;
                    c->cap_cut = cap;
                }
                c->cut[c->n_cut++] = (payload){0, 0, false};
            }
            /* The body's length is known only once it is written: write the
             * body, then move it up to make room for its length prefix. */
            uint8_t hdr[10];
            size_t h = varint_encode(tag, hdr);
            if (!cut_put(c, hdr, h))
                return false;
            size_t body = c->len;
            if (!cut_message(c, base, p, p + v, level + 1))
                return false;
            size_t body_len = c->len - body;
            uint8_t lenb[10];
            size_t l = varint_encode(body_len, lenb);
            if (!cut_reserve(c, l))
                return false;
            memmove(c->bytes + body + l, c->bytes + body, body_len);
            memcpy(c->bytes + body, lenb, l);
            c->len += l;
            p += v;
            continue;
        }
        default:
            return false;
        }
        if (!cut_put(c, field_start, (size_t)(p - field_start)))
            return false;
    }
    return true;
}

static rp_status load_source(const model_source *src, const char *path, rp_graph **out, rp_error *err)
{
    rp_status st = RP_OK;
    Onnx__ModelProto *mp = NULL;
    rp_graph *g = NULL;
    cut_buf cut = {0};
    *out = NULL;

    if (!src->bytes && src->len) {
        st = rp_fail(err, RP_ERR_ARG, "NULL buffer");
        goto fail;
    }
    if (src->len == 0) {
        st = rp_fail(err, RP_ERR_FORMAT, "empty file");
        goto fail;
    }
    g = calloc(1, sizeof *g);
    if (!g) {
        st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    g->model_bytes = (int64_t)src->len;
    if (path) {
        g->path = strdup(path);
        g->model_dir = dir_of(path);
        if (!g->path || !g->model_dir) {
            st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
            goto fail;
        }
    }
    const uint8_t *buf = src->bytes;
    pb_walk w = pb_check(buf, buf + src->len, PB_MODEL, 0);
    if (w == PB_WALK_TOO_DEEP) {
        st = rp_fail(err, RP_ERR_FORMAT,
                     "messages nested more than %d deep (graphs inside graph attributes, or types inside "
                     "types); refused before parsing", PB_MAX_DEPTH);
        goto fail;
    }
    if (w == PB_WALK_NUL_NAME) {
        st = rp_fail(err, RP_ERR_FORMAT, "a node, value or tensor name contains a NUL byte");
        goto fail;
    }
    if (w == PB_WALK_OK && !cut_message(&cut, buf, buf, buf + src->len, CUT_MODEL)) {
        st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    mp = w == PB_WALK_OK ? onnx__model_proto__unpack(NULL, cut.len, cut.bytes) : NULL;
    free(cut.bytes);
    cut.bytes = NULL;
    if (!mp) {
        st = rp_fail(err, RP_ERR_FORMAT, "not an ONNX model (protobuf parse failed; truncated or corrupt file?)");
        goto fail;
    }
    if ((st = build_graph(g, mp, src, cut.cut, cut.n_cut, err)))
        goto fail;
    onnx__model_proto__free_unpacked(mp, NULL);
    free(cut.cut);
    *out = g;
    return RP_OK;
fail:
    free(cut.bytes);
    free(cut.cut);
    if (mp)
        onnx__model_proto__free_unpacked(mp, NULL);
    rp_graph_free(g);
    if (path && err)
        rp_error_prefix(err, "%s", path);
    return st;
}

rp_status rp_graph_load_buffer(const uint8_t *buf, size_t len, const char *path, rp_graph **out, rp_error *err)
{
    model_source src = {buf, len, -1};
    return load_source(&src, path, out, err);
}

/* A regular file is mapped: only the pages the walks touch (the message's
 * structure, not its weights) become resident. Anything else (a pipe, a
 * device) is read into memory. */
rp_status rp_graph_load(const char *path, rp_graph **out, rp_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rp_fail(err, RP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    /* A regular file's size is known: past protobuf's limit it is refused
     * before a byte is read (a sparse 3 GB file would cost 2 GiB first). */
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size > RP_MAX_PROTO_FILE) {
        close(fd);
        return rp_fail(err, RP_ERR_FORMAT,
                       "%s: %lld bytes, larger than 2 GiB, protobuf's limit for one message (models that big keep "
                       "their weights in external data files)", path, (long long)sb.st_size);
    }
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0 && (uint64_t)sb.st_size <= RP_MAX_PROTO_FILE) {
        void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map != MAP_FAILED) {
            model_source src = {map, (size_t)sb.st_size, fd};
            rp_status st = load_source(&src, path, out, err);
            munmap(map, (size_t)sb.st_size);
            close(fd);
            return st;
        }
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    rp_status st = read_whole_fd(fd, path, &buf, &len, err);
    if (st)
        return st;
    model_source src = {buf, len, -1};
    st = load_source(&src, path, out, err);
    free(buf);
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

    if ((st = read_whole_file(path, &buf, &len, err)))
        return st;
    tp = onnx__tensor_proto__unpack(NULL, len, buf);
    if (!tp) {
        st = rp_fail(err, RP_ERR_FORMAT, "%s: not a TensorProto (protobuf parse failed; truncated or corrupt file?)",
                     path);
        goto fail;
    }
    dir = dir_of(path);
    if (!dir || (name_out && !(name = dup_str(tp->name)))) {
        st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    model_source none = {NULL, 0, -1};
    load_ctx lc = {dir, 0, RP_DEFAULT_MAX_BYTES, &none};
    if ((st = decode_tensor(tp, NULL, "(unnamed)", &lc, out, err))) {
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
