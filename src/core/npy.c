/* NumPy .npy files: magic "\x93NUMPY", version, little-endian header length
 * (2 bytes in 1.0, 4 in 2.0/3.0), then a Python dict literal
 * {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with
 * spaces and a newline, then the raw C-order data.
 *
 * The header is untrusted text: it is parsed with an explicit cursor and end
 * pointer, never with sscanf or by assuming a NUL. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/npy.h"
#include "core/tensor.h"

/* numpy itself refuses headers above 10000 bytes unless told otherwise;
 * a bound here keeps a corrupt length from sizing a huge allocation. */
#define NPY_MAX_HEADER (1u << 20)

static bool host_little_endian(void)
{
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* ---- dtype ↔ descr ---- */

typedef struct npy_kind {
    char kind; /* numpy kind letter */
    int size;
    rp_dtype dt;
} npy_kind;

static const npy_kind kinds[] = {
    {'f', 4, RP_FLOAT}, {'f', 8, RP_DOUBLE},
    {'i', 1, RP_INT8},  {'i', 2, RP_INT16},  {'i', 4, RP_INT32},  {'i', 8, RP_INT64},
    {'u', 1, RP_UINT8}, {'u', 2, RP_UINT16}, {'u', 4, RP_UINT32}, {'u', 8, RP_UINT64},
    {'b', 1, RP_BOOL},
};

static rp_status parse_descr(const char *path, const char *d, rp_dtype *out, rp_error *err)
{
    /* Every dtype we hold is spelled <order><kind><one digit>. */
    if (strlen(d) != 3 || !strchr("<>|=", d[0]) || d[2] < '1' || d[2] > '9')
        return rp_fail(err, RP_ERR_UNSUPPORTED,
                       "%s: dtype '%s' is not supported (float32/64, int8..64, uint8..64 and bool are)", path, d);
    int size = d[2] - '0';
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (kinds[i].kind != d[1] || kinds[i].size != size)
            continue;
        /* Byte order only matters beyond one byte. '=' is the writer's
         * native order, which numpy only writes for one-byte types, so it
         * is read as ours. */
        if (size > 1) {
            bool little = d[0] == '<' || (d[0] == '=' && host_little_endian());
            if (d[0] == '|')
                return rp_fail(err, RP_ERR_FORMAT, "%s: dtype '%s' has no byte order", path, d);
            if (!little || !host_little_endian())
                return rp_fail(err, RP_ERR_UNSUPPORTED,
                               "%s: big-endian data ('%s') is not supported; save it little-endian "
                               "(arr.astype(arr.dtype.newbyteorder('<')))", path, d);
        }
        *out = kinds[i].dt;
        return RP_OK;
    }
    return rp_fail(err, RP_ERR_UNSUPPORTED,
                   "%s: dtype '%s' is not supported (float32/64, int8..64, uint8..64 and bool are)", path, d);
}

static const char *descr_of(rp_dtype dt)
{
    switch (dt) {
    case RP_FLOAT: return "f4";
    case RP_DOUBLE: return "f8";
    case RP_INT8: return "i1";
    case RP_INT16: return "i2";
    case RP_INT32: return "i4";
    case RP_INT64: return "i8";
    case RP_UINT8: return "u1";
    case RP_UINT16: return "u2";
    case RP_UINT32: return "u4";
    case RP_UINT64: return "u8";
    case RP_BOOL: return "b1";
    default: return NULL;
    }
}

/* ---- header dict ---- */

typedef struct cursor {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool eat(cursor *c, char ch)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

static bool eat_word(cursor *c, const char *w)
{
    skip_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, w, n) == 0) {
        c->p += n;
        return true;
    }
    return false;
}

/* A quoted string without escapes (numpy never writes any in keys or
 * descrs); cap includes the NUL. */
static bool parse_str(cursor *c, char *buf, size_t cap)
{
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return false;
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || n + 1 >= cap)
            return false;
        buf[n++] = *c->p++;
    }
    if (c->p >= c->end)
        return false;
    c->p++;
    buf[n] = 0;
    return true;
}

/* (), (5,), (2, 3) — with Python 2's 'L' suffix tolerated. *rank may
 * exceed RP_MAX_RANK (the caller reports it); dims beyond are not stored. */
static bool parse_shape(cursor *c, int64_t *dims, int *rank)
{
    *rank = 0;
    if (!eat(c, '('))
        return false;
    for (;;) {
        if (eat(c, ')'))
            return true;
        skip_ws(c);
        if (c->p >= c->end || *c->p < '0' || *c->p > '9')
            return false;
        int64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            int d = *c->p++ - '0';
            if (v > (INT64_MAX - d) / 10)
                return false;
            v = v * 10 + d;
        }
        if (c->p < c->end && *c->p == 'L')
            c->p++;
        if (*rank < RP_MAX_RANK)
            dims[*rank] = v;
        if (*rank < RP_MAX_RANK + 1)
            (*rank)++;
        if (eat(c, ','))
            continue;
        if (eat(c, ')'))
            return true;
        return false;
    }
}

static rp_status parse_header(const char *path, const char *h, size_t len, rp_dtype *dt, int *rank, int64_t *dims,
                              rp_error *err)
{
    cursor c = {h, h + len};
    char key[32], descr[32];
    bool have_descr = false, have_fortran = false, have_shape = false, fortran = false;
    if (!eat(&c, '{'))
        goto bad;
    for (;;) {
        if (eat(&c, '}'))
            break;
        if (!parse_str(&c, key, sizeof key) || !eat(&c, ':'))
            goto bad;
        if (strcmp(key, "descr") == 0) {
            if (!parse_str(&c, descr, sizeof descr))
                return rp_fail(err, RP_ERR_UNSUPPORTED,
                               "%s: structured or unusual dtypes are not supported (descr is not a simple string)",
                               path);
            have_descr = true;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (eat_word(&c, "True"))
                fortran = true;
            else if (eat_word(&c, "False"))
                fortran = false;
            else
                goto bad;
            have_fortran = true;
        } else if (strcmp(key, "shape") == 0) {
            if (!parse_shape(&c, dims, rank))
                goto bad;
            have_shape = true;
        } else {
            return rp_fail(err, RP_ERR_FORMAT, "%s: unexpected key '%s' in the .npy header", path, key);
        }
        if (!eat(&c, ',')) {
            if (eat(&c, '}'))
                break;
            goto bad;
        }
    }
    skip_ws(&c);
    if (c.p != c.end)
        goto bad;
    if (!have_descr || !have_fortran || !have_shape)
        return rp_fail(err, RP_ERR_FORMAT, "%s: .npy header lacks %s", path,
                       !have_descr ? "'descr'" : !have_fortran ? "'fortran_order'" : "'shape'");
    if (fortran)
        return rp_fail(err, RP_ERR_UNSUPPORTED,
                       "%s: Fortran-order arrays are not supported; save with np.ascontiguousarray", path);
    if (*rank > RP_MAX_RANK)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "%s: more than %d dimensions are not supported", path, RP_MAX_RANK);
    return parse_descr(path, descr, dt, err);
bad:
    return rp_fail(err, RP_ERR_FORMAT, "%s: malformed .npy header", path);
}

/* Where the bytes come from: a file (read as needed) or memory. The data
 * is sized from the header only once the source is known to hold it, so a
 * corrupt shape cannot size a huge allocation. */
typedef struct npy_src {
    FILE *f;            /* file source, or NULL */
    const uint8_t *buf; /* memory source */
    size_t len, pos;
} npy_src;

static size_t src_read(npy_src *s, void *dst, size_t n)
{
    if (s->f)
        return fread(dst, 1, n, s->f);
    size_t k = s->len - s->pos < n ? s->len - s->pos : n;
    if (k)
        memcpy(dst, s->buf + s->pos, k);
    s->pos += k;
    return k;
}

static bool src_error(const npy_src *s)
{
    return s->f && ferror(s->f);
}

/* Bytes left, or -1 if unknown (a pipe). */
static int64_t src_remaining(const npy_src *s)
{
    if (!s->f)
        return (int64_t)(s->len - s->pos);
    struct stat sb;
    off_t at = ftello(s->f);
    if (at < 0 || fstat(fileno(s->f), &sb) != 0 || !S_ISREG(sb.st_mode))
        return -1;
    return sb.st_size > at ? (int64_t)(sb.st_size - at) : 0;
}

static rp_status npy_parse(const char *path, npy_src *s, rp_tensor *out, rp_error *err)
{
    rp_status st = RP_OK;
    char *header = NULL;
    uint8_t *data = NULL;
    memset(out, 0, sizeof *out);

    uint8_t pre[12];
    size_t got = src_read(s, pre, 10);
    if (src_error(s)) {
        st = rp_fail(err, RP_ERR_IO, "%s: read error: %s", path, strerror(errno));
        goto fail;
    }
    if (got < 8 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        st = rp_fail(err, RP_ERR_FORMAT, "%s: not a .npy file (bad magic)", path);
        goto fail;
    }
    int major = pre[6], minor = pre[7];
    if (major < 1 || major > 3 || minor != 0) {
        st = rp_fail(err, RP_ERR_UNSUPPORTED, "%s: .npy format version %d.%d is not supported (1.0-3.0 are)", path,
                     major, minor);
        goto fail;
    }
    size_t hlen;
    if (major == 1) {
        if (got < 10) {
            st = rp_fail(err, RP_ERR_FORMAT, "%s: truncated .npy header", path);
            goto fail;
        }
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
    } else {
        if (got < 10 || src_read(s, pre + 10, 2) != 2) {
            st = rp_fail(err, RP_ERR_FORMAT, "%s: truncated .npy header", path);
            goto fail;
        }
        uint32_t l = (uint32_t)pre[8] | (uint32_t)pre[9] << 8 | (uint32_t)pre[10] << 16 | (uint32_t)pre[11] << 24;
        if (l > NPY_MAX_HEADER) {
            st = rp_fail(err, RP_ERR_FORMAT, "%s: .npy header of %lu bytes is implausibly large", path,
                         (unsigned long)l);
            goto fail;
        }
        hlen = l;
    }
    int64_t left = src_remaining(s);
    if (left >= 0 && (uint64_t)left < hlen) {
        st = rp_fail(err, RP_ERR_FORMAT, "%s: truncated .npy header: %zu bytes announced, %lld present", path, hlen,
                     (long long)left);
        goto fail;
    }
    header = malloc(hlen ? hlen : 1);
    if (!header) {
        st = rp_fail(err, RP_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    if (src_read(s, header, hlen) != hlen) {
        st = rp_fail(err, RP_ERR_FORMAT, "%s: truncated .npy header", path);
        goto fail;
    }
    rp_dtype dt = RP_UNDEFINED;
    int rank = 0;
    int64_t dims[RP_MAX_RANK] = {0};
    if ((st = parse_header(path, header, hlen, &dt, &rank, dims, err)))
        goto fail;
    if (!rp_tensor_set_shape(out, dt, rank, dims)) {
        st = rp_fail(err, RP_ERR_FORMAT, "%s: shape overflows", path);
        goto fail;
    }
    size_t es = rp_dtype_size(dt);
    if ((uint64_t)out->count > SIZE_MAX / es || (uint64_t)out->count > (uint64_t)INT64_MAX / es) {
        st = rp_fail(err, RP_ERR_FORMAT, "%s: array of %lld elements is too large", path, (long long)out->count);
        goto fail;
    }
    size_t nbytes = (size_t)out->count * es;
    left = src_remaining(s);
    if (left >= 0 && (uint64_t)left < nbytes) {
        st = rp_fail(err, RP_ERR_FORMAT, "%s: truncated: expected %zu bytes of data, found %lld", path, nbytes,
                     (long long)left);
        goto fail;
    }
    if (nbytes) {
        /* Known size: one allocation. Unknown (a pipe): grow as bytes arrive,
         * so the allocation never runs ahead of the data by more than 2x. */
        size_t cap = left >= 0 ? nbytes : (nbytes < 65536 ? nbytes : 65536), have = 0;
        data = malloc(cap);
        if (!data) {
            st = rp_fail(err, RP_ERR_NOMEM, "%s: out of memory for %zu bytes", path, cap);
            goto fail;
        }
        while (have < nbytes) {
            if (have == cap) {
                size_t ncap = cap > nbytes / 2 ? nbytes : cap * 2;
                uint8_t *nd = realloc(data, ncap);
                if (!nd) {
                    st = rp_fail(err, RP_ERR_NOMEM, "%s: out of memory for %zu bytes", path, ncap);
                    goto fail;
                }
                data = nd;
                cap = ncap;
            }
            size_t k = src_read(s, data + have, cap - have);
            have += k;
            if (k == 0)
                break;
        }
        if (have != nbytes) {
            if (src_error(s))
                st = rp_fail(err, RP_ERR_IO, "%s: read error: %s", path, strerror(errno));
            else
                st = rp_fail(err, RP_ERR_FORMAT, "%s: truncated: expected %zu bytes of data, found %zu", path, nbytes,
                             have);
            goto fail;
        }
        if (dt == RP_BOOL) {
            /* numpy reads any non-zero byte as True; kernels expect 0/1. */
            for (size_t i = 0; i < nbytes; i++)
                data[i] = data[i] != 0;
        }
    }
    out->data = data;
    free(header);
    return RP_OK;
fail:
    free(header);
    free(data);
    memset(out, 0, sizeof *out);
    return st;
}

rp_status rp_npy_read(const char *path, rp_tensor *out, rp_error *err)
{
    memset(out, 0, sizeof *out);
    int fd;
    rp_status st = rp_file_open_regular(path, ".npy file", 0, &fd, NULL, err);
    if (st)
        return st;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return rp_fail(err, RP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    npy_src s = {.f = f};
    st = npy_parse(path, &s, out, err);
    fclose(f);
    return st;
}

rp_status rp_npy_read_buffer(const uint8_t *buf, size_t len, const char *name, rp_tensor *out, rp_error *err)
{
    memset(out, 0, sizeof *out);
    if (!name)
        name = "(memory)";
    if (!buf && len)
        return rp_fail(err, RP_ERR_ARG, "%s: NULL buffer", name);
    npy_src s = {.buf = buf, .len = len};
    return npy_parse(name, &s, out, err);
}

rp_status rp_npy_write(const char *path, const rp_tensor *t, rp_error *err)
{
    const char *descr = descr_of(t->dtype);
    if (!descr)
        return rp_fail(err, RP_ERR_DTYPE, "%s: cannot write dtype %s to .npy", path, rp_dtype_name(t->dtype));
    if (t->rank < 0 || t->rank > RP_MAX_RANK)
        return rp_fail(err, RP_ERR_ARG, "%s: invalid rank %d", path, t->rank);
    int64_t count = rp_shape_count(t->rank, t->dims);
    if (count < 0 || count != t->count)
        return rp_fail(err, RP_ERR_ARG, "%s: tensor count %lld does not match its dims", path, (long long)t->count);
    size_t es = rp_dtype_size(t->dtype);
    if ((uint64_t)count > SIZE_MAX / es)
        return rp_fail(err, RP_ERR_ARG, "%s: tensor too large", path);
    size_t nbytes = (size_t)count * es;
    if (nbytes && !t->data)
        return rp_fail(err, RP_ERR_ARG, "%s: tensor has no data", path);

    /* The header byte for byte as numpy 1.24 writes it: the dict, spare
     * spaces so the first axis can grow to 21 digits in place, then spaces
     * and '\n' so preamble + header is a multiple of 64 (numpy pads a full
     * 64 rather than 0 when already aligned). */
    char dict[512];
    int n = snprintf(dict, sizeof dict, "{'descr': '%c%s', 'fortran_order': False, 'shape': (",
                     es == 1 ? '|' : host_little_endian() ? '<' : '>', descr);
    for (int d = 0; d < t->rank; d++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, d ? ", %lld" : "%lld", (long long)t->dims[d]);
    n += snprintf(dict + n, sizeof dict - (size_t)n, "%s), }", t->rank == 1 ? "," : "");
    if (t->rank > 0) {
        char first[24];
        int digits = snprintf(first, sizeof first, "%lld", (long long)t->dims[0]);
        for (int k = digits; k < 21; k++)
            dict[n++] = ' ';
    }
    size_t pad = 64 - (10 + (size_t)n + 1) % 64;
    size_t hlen = (size_t)n + pad + 1;
    char header[640];
    memcpy(header, "\x93NUMPY\x01\x00", 8);
    header[8] = (char)(hlen & 0xff);
    header[9] = (char)(hlen >> 8);
    memcpy(header + 10, dict, (size_t)n);
    memset(header + 10 + n, ' ', pad);
    header[10 + hlen - 1] = '\n';

    rp_atomic_file af;
    rp_status st = rp_atomic_begin(&af, path, err);
    if (st)
        return st;
    if ((st = rp_atomic_write(&af, header, 10 + hlen, err)) || (st = rp_atomic_write(&af, t->data, nbytes, err))) {
        rp_atomic_abort(&af);
        return st;
    }
    return rp_atomic_commit(&af, err);
}
