/* JPEG marker structure, checked before stb_image sees the bytes (see
 * jpeg_check.h for what is refused and why).
 *
 * The walk follows ITU-T T.81 Annex B and reads the file as stb reads it,
 * so that the segments checked here are the segments stb will act on:
 *  - a marker is 0xFF, any number of 0xFF fill bytes, then a code; bytes
 *    before an 0xFF between segments are skipped (stb and PIL skip such
 *    padding too);
 *  - a scan's entropy-coded data runs to the first 0xFF followed by a byte
 *    other than 0x00 (a stuffed 0xFF), 0xFF (fill) or a restart marker
 *    RST0..RST7. stb's decoder stops at that same marker, or, having decoded
 *    all its blocks before it, searches forward for the next 0xFF and fails
 *    on whatever follows it unless it is that marker;
 *  - the file ends at EOI; anything after it is ignored, as stb ignores it.
 * Tables are tracked across the whole file: DHT and DQT segments may come
 * before the frame header or between scans, and redefine a table. */
#include "image/jpeg_check.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

typedef struct jwalk {
    const char *path;
    const uint8_t *b;
    size_t n;
    int64_t max_pixels;
    rp_error *err;
    bool frame;          /* a SOF0/1/2 was seen */
    bool progressive;    /* it was SOF2 */
    int ncomp;
    int comp_id[4], comp_tq[4];
    bool comp_coded[4];  /* in a scan (progressive: in a first DC scan) */
    bool dc[4], ac[4];   /* Huffman tables defined so far */
    bool dq[4];          /* quantisation tables defined so far */
    int scans;
} jwalk;

static uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }

/* "SOF2", "DHT", "APP1", "marker 0xFF05" */
static const char *marker_name(int m, char *buf, size_t len)
{
    switch (m) {
    case 0xC4: return "DHT";
    case 0xC8: return "JPG";
    case 0xCC: return "DAC";
    case 0xD8: return "SOI";
    case 0xD9: return "EOI";
    case 0xDA: return "SOS";
    case 0xDB: return "DQT";
    case 0xDC: return "DNL";
    case 0xDD: return "DRI";
    case 0xDE: return "DHP";
    case 0xDF: return "EXP";
    case 0xFE: return "COM";
    default: break;
    }
    if (m >= 0xC0 && m <= 0xCF)
        snprintf(buf, len, "SOF%d", m - 0xC0);
    else if (m >= 0xD0 && m <= 0xD7)
        snprintf(buf, len, "RST%d", m - 0xD0);
    else if (m >= 0xE0 && m <= 0xEF)
        snprintf(buf, len, "APP%d", m - 0xE0);
    else if (m >= 0xF0 && m <= 0xFD)
        snprintf(buf, len, "JPG%d", m - 0xF0);
    else
        snprintf(buf, len, "marker 0xFF%02X", (unsigned)m);
    return buf;
}

/* "<path>: <kind> JPEG: [<segment> segment at byte <at>: ]<what>" */
static rp_status jfail(const jwalk *w, rp_status code, const char *kind, int marker, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static rp_status jfail(const jwalk *w, rp_status code, const char *kind, int marker, size_t at, const char *fmt, ...)
{
    char what[256], name[32], where[80] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (marker >= 0)
        snprintf(where, sizeof where, "%s segment at byte %zu: ", marker_name(marker, name, sizeof name), at);
    return rp_fail(w->err, code, "%s: %s JPEG: %s%s", w->path, kind, where, what);
}

#define CORRUPT(...) jfail(w, RP_ERR_FORMAT, "corrupt", __VA_ARGS__)
#define TRUNCATED(...) jfail(w, RP_ERR_FORMAT, "truncated", __VA_ARGS__)
#define UNSUPPORTED(...) jfail(w, RP_ERR_UNSUPPORTED, "unsupported", __VA_ARGS__)

/* DHT: one or more tables, each Tc/Th, 16 code counts, then the values. */
static rp_status check_dht(jwalk *w, size_t at, const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (len - i < 17)
            return CORRUPT(0xC4, at, "a table header needs 17 bytes, %zu are left in the segment", len - i);
        int tc = s[i] >> 4, th = s[i] & 15;
        if (tc > 1)
            return CORRUPT(0xC4, at, "table class %d (0 is DC, 1 is AC)", tc);
        if (th > 3)
            return CORRUPT(0xC4, at, "%s table id %d (0 to 3)", tc ? "AC" : "DC", th);
        /* The counts of codes of each length 1..16 must fit the 256 values a
         * table holds (stb writes past its tables otherwise), then form a
         * prefix code: the same test as stb's (stbi__build_huffman), so stb
         * never meets a table it would refuse after having stored it. */
        unsigned sum = 0, code = 0;
        for (int j = 1; j <= 16; j++)
            sum += s[i + (size_t)j];
        if (sum > 256)
            return CORRUPT(0xC4, at, "%s table %d: its code counts sum to %u, more than the 256 a table holds",
                           tc ? "AC" : "DC", th, sum);
        for (int j = 1; j <= 16; j++) {
            unsigned cnt = s[i + (size_t)j];
            code += cnt;
            if (cnt && code - 1 >= (1u << j))
                return CORRUPT(0xC4, at, "%s table %d: the codes of length %d overflow %d bits (not a prefix code)",
                               tc ? "AC" : "DC", th, j, j);
            code <<= 1;
        }
        if (len - i - 17 < sum)
            return CORRUPT(0xC4, at, "%s table %d: %u values do not fit in the %zu bytes left in the segment",
                           tc ? "AC" : "DC", th, sum, len - i - 17);
        if (tc)
            w->ac[th] = true;
        else
            w->dc[th] = true;
        i += 17 + sum;
    }
    return RP_OK;
}

/* DQT: one or more tables, each Pq/Tq then 64 values of 1 or 2 bytes. */
static rp_status check_dqt(jwalk *w, size_t at, const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        int pq = s[i] >> 4, tq = s[i] & 15;
        if (pq > 1)
            return CORRUPT(0xDB, at, "table precision %d (0 is 8-bit, 1 is 16-bit)", pq);
        if (tq > 3)
            return CORRUPT(0xDB, at, "table id %d (0 to 3)", tq);
        size_t need = 1 + 64 * (size_t)(pq + 1);
        if (len - i < need)
            return CORRUPT(0xDB, at, "table %d needs %zu bytes, %zu are left in the segment", tq, need, len - i);
        w->dq[tq] = true;
        i += need;
    }
    return RP_OK;
}

/* SOF0 (baseline), SOF1 (extended sequential), SOF2 (progressive): the
 * Huffman-coded frames stb decodes. */
static rp_status check_sof(jwalk *w, int m, size_t at, const uint8_t *s, size_t len)
{
    if (w->frame)
        return CORRUPT(m, at, "a second frame header (one image holds one frame)");
    if (len < 6)
        return CORRUPT(m, at, "%zu bytes, a frame header needs at least 6", len);
    int p = s[0], nf = s[5];
    uint32_t y = be16(s + 1), x = be16(s + 3);
    if (nf == 0 || nf > 4)
        return CORRUPT(m, at, "%d components (1 to 4)", nf);
    if (len != 6 + 3 * (size_t)nf)
        return CORRUPT(m, at, "%zu bytes do not match %d components (%d bytes)", len, nf, 6 + 3 * nf);
    if (p != 8)
        return UNSUPPORTED(m, at, "%d-bit samples; only 8-bit JPEGs are read", p);
    if (nf == 2)
        return UNSUPPORTED(m, at, "2 components; gray (1), YCbCr/RGB (3) and CMYK (4) are read");
    if (x == 0)
        return CORRUPT(m, at, "width 0");
    if (y == 0)
        return UNSUPPORTED(m, at, "height 0 (to be given by a DNL marker after the first scan)");
    if (w->max_pixels > 0 && (int64_t)x * y > w->max_pixels)
        return rp_fail(w->err, RP_ERR_VALUE, "%s: the header claims %ux%u pixels, more than the %lld relprop accepts",
                       w->path, x, y, (long long)w->max_pixels);
    for (int c = 0; c < nf; c++) {
        const uint8_t *e = s + 6 + 3 * c;
        int h = e[1] >> 4, v = e[1] & 15;
        if (h < 1 || h > 4 || v < 1 || v > 4)
            return CORRUPT(m, at, "component %d (id %d): sampling factors %dx%d (1 to 4 each)", c, e[0], h, v);
        if (e[2] > 3)
            return CORRUPT(m, at, "component %d (id %d): quantisation table %d (0 to 3)", c, e[0], e[2]);
        for (int k = 0; k < c; k++)
            if (w->comp_id[k] == e[0])
                return CORRUPT(m, at, "components %d and %d have the same id %d", k, c, e[0]);
        w->comp_id[c] = e[0];
        w->comp_tq[c] = e[2];
        w->comp_coded[c] = false;
    }
    w->ncomp = nf;
    w->frame = true;
    w->progressive = m == 0xC2;
    return RP_OK;
}

/* SOS: the scan's components and the tables they use. */
static rp_status check_sos(jwalk *w, size_t at, const uint8_t *s, size_t len)
{
    if (!w->frame)
        return CORRUPT(0xDA, at, "a scan before the frame header (SOF)");
    if (len < 1)
        return CORRUPT(0xDA, at, "empty scan header");
    int ns = s[0];
    if (ns < 1 || ns > 4 || ns > w->ncomp)
        return CORRUPT(0xDA, at, "%d components in a scan of a %d-component frame", ns, w->ncomp);
    if (len != 4 + 2 * (size_t)ns)
        return CORRUPT(0xDA, at, "%zu bytes do not match %d components (%d bytes)", len, ns, 4 + 2 * ns);
    int ss = s[1 + 2 * ns], ah = s[3 + 2 * ns] >> 4;
    w->scans++;
    /* Which tables the decoder reads: sequential scans both for every
     * component; progressive DC scans the DC table (a refinement scan,
     * Ah > 0, reads bits directly), progressive AC scans the AC table. */
    bool uses_dc = !w->progressive || (ss == 0 && ah == 0);
    bool uses_ac = !w->progressive || ss > 0;
    bool seen[4] = {false, false, false, false};
    for (int k = 0; k < ns; k++) {
        int id = s[1 + 2 * k], td = s[2 + 2 * k] >> 4, ta = s[2 + 2 * k] & 15;
        int c = 0;
        while (c < w->ncomp && w->comp_id[c] != id)
            c++;
        if (c == w->ncomp)
            return CORRUPT(0xDA, at, "scan %d names component id %d, which the frame header does not declare",
                           w->scans, id);
        if (seen[c])
            return CORRUPT(0xDA, at, "scan %d names component id %d twice", w->scans, id);
        seen[c] = true;
        if (td > 3 || ta > 3)
            return CORRUPT(0xDA, at, "scan %d, component id %d: Huffman table ids DC %d, AC %d (0 to 3)", w->scans, id,
                           td, ta);
        if (uses_dc && !w->dc[td])
            return CORRUPT(0xDA, at,
                           "scan %d, component id %d: uses DC Huffman table %d, which no DHT segment before it defines",
                           w->scans, id, td);
        if (uses_ac && !w->ac[ta])
            return CORRUPT(0xDA, at,
                           "scan %d, component id %d: uses AC Huffman table %d, which no DHT segment before it defines",
                           w->scans, id, ta);
        if (!w->dq[w->comp_tq[c]])
            return CORRUPT(0xDA, at,
                           "scan %d, component id %d: uses quantisation table %d, which no DQT segment before it "
                           "defines", w->scans, id, w->comp_tq[c]);
        if (!w->progressive || (ss == 0 && ah == 0))
            w->comp_coded[c] = true;
    }
    return RP_OK;
}

/* From the end of a scan header: the entropy-coded data, to the offset of
 * the 0xFF that starts the next marker. */
static rp_status skip_scan_data(jwalk *w, size_t sos_at, size_t *pos)
{
    size_t q = *pos;
    for (;;) {
        while (q < w->n && w->b[q] != 0xFF)
            q++;
        size_t ff = q;
        while (q < w->n && w->b[q] == 0xFF)
            q++;
        if (q >= w->n)
            return TRUNCATED(-1, 0, "the data of scan %d (SOS at byte %zu) runs to the end of the file, with no "
                             "end-of-image marker", w->scans, sos_at);
        if (w->b[q] == 0x00 || (w->b[q] >= 0xD0 && w->b[q] <= 0xD7)) {
            q++; /* a stuffed 0xFF, or a restart marker: still scan data */
            continue;
        }
        *pos = ff;
        return RP_OK;
    }
}

rp_status rp_jpeg_check(const char *path, const uint8_t *b, size_t n, int64_t max_pixels, rp_error *err)
{
    jwalk w0 = {.path = path ? path : "image", .b = b, .n = n, .max_pixels = max_pixels, .err = err};
    jwalk *w = &w0;
    if (n < 2 || b[0] != 0xFF || b[1] != 0xD8)
        return CORRUPT(-1, 0, "no start-of-image marker (FF D8)");
    size_t p = 2;
    rp_status st;
    for (;;) {
        while (p < n && b[p] != 0xFF)
            p++;
        while (p < n && b[p] == 0xFF)
            p++;
        if (p >= n)
            return TRUNCATED(-1, 0, "the file ends before %s",
                             w->scans ? "the end-of-image marker" : w->frame ? "the first scan" : "the frame header");
        size_t at = p - 1; /* the 0xFF before the code */
        int m = b[p++];
        char name[32];
        if (m == 0xD9) { /* EOI */
            if (!w->scans)
                return CORRUPT(m, at, "the image ends before any scan");
            for (int c = 0; c < w->ncomp; c++)
                if (!w->comp_coded[c])
                    return CORRUPT(m, at, "component id %d is never coded (%s)", w->comp_id[c],
                                   w->progressive ? "no first DC scan" : "no scan includes it");
            return RP_OK;
        }
        if (m <= 0xBF) /* 0x00 (a stuffed 0xFF), TEM, reserved codes */
            return CORRUPT(-1, 0, "byte 0x%02X after 0xFF at byte %zu is not a marker stb reads", (unsigned)m, at);
        if (m == 0xD8)
            return CORRUPT(-1, 0, "a second start-of-image marker at byte %zu", at);
        if (m >= 0xD0 && m <= 0xD7)
            return CORRUPT(-1, 0, "%s marker at byte %zu outside a scan", marker_name(m, name, sizeof name), at);
        /* Every other marker starts a segment with a 2-byte length that counts itself. */
        if (n - p < 2)
            return TRUNCATED(m, at, "the file ends inside the segment's length");
        uint32_t seglen = be16(b + p);
        if (seglen < 2)
            return CORRUPT(m, at, "length %u (at least 2)", seglen);
        if (seglen > n - p)
            return TRUNCATED(m, at, "the segment holds %u bytes, the file ends %zu bytes after its length field",
                             seglen, n - p);
        const uint8_t *s = b + p + 2;
        size_t len = seglen - 2, next = p + seglen;
        switch (m) {
        case 0xC4: st = check_dht(w, at, s, len); break;
        case 0xDB: st = check_dqt(w, at, s, len); break;
        case 0xC0: case 0xC1: case 0xC2: st = check_sof(w, m, at, s, len); break;
        case 0xC3: st = UNSUPPORTED(m, at, "lossless JPEG"); break;
        case 0xC5: case 0xC6: case 0xC7: case 0xDE: case 0xDF:
            st = UNSUPPORTED(m, at, "hierarchical JPEG");
            break;
        case 0xC9: case 0xCA: case 0xCB: case 0xCD: case 0xCE: case 0xCF: case 0xCC:
            st = UNSUPPORTED(m, at, "arithmetic-coded JPEG; only Huffman coding is read");
            break;
        case 0xDD: /* DRI */
            st = len == 2 ? RP_OK : CORRUPT(m, at, "%zu bytes, a restart interval takes 2", len);
            break;
        case 0xDC: /* DNL: only after the first scan, where stb checks it */
            st = !w->scans ? CORRUPT(m, at, "a line count before the first scan")
                 : len == 2 ? RP_OK : CORRUPT(m, at, "%zu bytes, a line count takes 2", len);
            break;
        case 0xDA:
            if ((st = check_sos(w, at, s, len)))
                break;
            st = skip_scan_data(w, at, &next);
            break;
        default:
            if ((m >= 0xE0 && m <= 0xEF) || m == 0xFE) { /* APPn, COM */
                st = RP_OK;
                break;
            }
            st = UNSUPPORTED(m, at, "a JPEG extension marker stb does not read");
            break;
        }
        if (st)
            return st;
        p = next;
    }
}
