/* The loader's bytes: reading a model or tensor file whole, and walking the
 * protobuf wire format before protobuf-c sees it (onnx_wire.h). Works on raw
 * bytes only; the message types are onnx_graph.c's and onnx_tensor.c's.
 *
 * Files are untrusted: every length is checked against the bytes left before
 * it is followed. */
#include "graph/onnx_wire.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

/* ---- whole-file reads ---- */

rp_status rp_onnx_read_fd(int fd, const char *path, uint8_t **out, size_t *out_len, rp_error *err)
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

rp_status rp_onnx_read_file(const char *path, uint8_t **out, size_t *out_len, rp_error *err)
{
    *out = NULL;
    *out_len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rp_fail(err, RP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    return rp_onnx_read_fd(fd, path, out, out_len, err);
}

char *rp_onnx_dir_of(const char *path)
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

pb_walk rp_onnx_wire_check(const uint8_t *buf, size_t len)
{
    return pb_check(buf, buf + len, PB_MODEL, 0);
}

bool rp_onnx_cut_weights(cut_buf *c, const uint8_t *buf, size_t len)
{
    return cut_message(c, buf, buf, buf + len, CUT_MODEL);
}
