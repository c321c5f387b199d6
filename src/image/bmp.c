/* BMP, read here rather than by stb_image: stb decodes pixel indices beyond
 * a file's palette from a palette buffer it never initialised, and widens
 * 16-bit and bitfield samples differently from Pillow. BMP is simple enough
 * that a strict reader of exactly what Pillow 9.4's BmpImagePlugin reads is
 * shorter than the checks stb would need. Like Pillow:
 *   headers of 12 (OS/2 1.x), 40, 64, 108 or 124 bytes; bottom-up rows, or
 *     top-down when the height's top byte is 0xFF;
 *   uncompressed 1-, 4-, 8-bit indices, 16-bit 5-5-5, 24-bit BGR, 32-bit
 *     BGRX (the fourth byte ignored);
 *   BI_BITFIELDS with the masks Pillow lists: 16-bit 5-6-5 and 5-5-5,
 *     24-bit BGR, 32-bit BGRX, XBGR, ABGR, RGBA, BGRA (alpha dropped);
 *   5- and 6-bit fields widened as v * 255 / (2^n - 1), rounded down;
 *   the palette: `colors` entries (1 << bits when the header says 0) right
 *     after the header, and pixel data moved past them when the header's
 *     offset points at the palette itself;
 *   an index beyond the palette: Pillow's default entry, gray (i, i, i);
 *   truncated pixel data refused ("image file is truncated").
 * Refused although Pillow reads them: RLE4/RLE8 compression (stb never read
 * them either), and the layouts where Pillow's own reading is wrong — a
 * 4- or 8-bit file whose palette is the gray ramp or black-and-white, which
 * Pillow unpacks as if it held 8-bit gray or 1-bit pixels. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "image/decode.h"

static uint32_t le16(const uint8_t *p) { return (uint32_t)p[1] << 8 | p[0]; }
static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

enum { BI_RGB = 0, BI_RLE8 = 1, BI_RLE4 = 2, BI_BITFIELDS = 3 };

/* Pillow's BGR;15 / BGR;16 unpackers: a 5- or 6-bit field to 0..255. */
static uint8_t widen(uint32_t v, int bits) { return (uint8_t)(v * 255 / ((1u << bits) - 1)); }

rp_status rp_decode_bmp(const char *path, const uint8_t *b, size_t n, rp_image *out, rp_error *err)
{
    memset(out, 0, sizeof *out);
    if (n < 18)
        return rp_fail(err, RP_ERR_FORMAT, "%s: truncated BMP: %zu bytes, shorter than its file header", path, n);
    uint32_t off = le32(b + 10), hsz = le32(b + 14);
    if (hsz != 12 && hsz != 40 && hsz != 64 && hsz != 108 && hsz != 124)
        return rp_fail(err, RP_ERR_UNSUPPORTED,
                       "%s: unsupported BMP: info header of %u bytes (12, 40, 64, 108 or 124 expected)", path, hsz);
    if (n < 14 + (size_t)hsz)
        return rp_fail(err, RP_ERR_FORMAT, "%s: truncated BMP: the file ends inside its %u-byte info header", path,
                       hsz);
    int64_t w, h;
    uint32_t bits, comp = BI_RGB, colors = 0;
    bool top_down = false;
    size_t pad = 4; /* bytes per palette entry */
    if (hsz == 12) {
        w = le16(b + 18);
        h = le16(b + 20);
        bits = le16(b + 24);
        pad = 3;
    } else {
        w = le32(b + 18);
        top_down = b[25] == 0xFF;
        h = top_down ? ((int64_t)1 << 32) - le32(b + 22) : le32(b + 22);
        bits = le16(b + 28);
        comp = le32(b + 30);
        colors = le32(b + 46);
    }
    if (w == 0 || h == 0)
        return rp_fail(err, RP_ERR_FORMAT, "%s: zero-size image (%lldx%lld) in the BMP header", path, (long long)w,
                       (long long)h);
    if (w > RP_IMAGE_MAX_PIXELS || h > RP_IMAGE_MAX_PIXELS || w * h > RP_IMAGE_MAX_PIXELS)
        return rp_fail(err, RP_ERR_VALUE,
                       "%s: image too large: the BMP header claims %lldx%lld pixels, more than the %lld "
                       "relprop accepts",
                       path, (long long)w, (long long)h, (long long)RP_IMAGE_MAX_PIXELS);
    if (bits != 1 && bits != 4 && bits != 8 && bits != 16 && bits != 24 && bits != 32)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "%s: unsupported BMP: %u bits per pixel (1, 4, 8, 16, 24 or 32 expected)",
                       path, bits);
    if (comp == BI_RLE8 || comp == BI_RLE4)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "%s: unsupported BMP: RLE%d compression", path,
                       comp == BI_RLE8 ? 8 : 4);
    if (comp != BI_RGB && comp != BI_BITFIELDS)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "%s: unsupported BMP: compression %u", path, comp);

    /* Byte positions of R, G, B in a 32-bit pixel; fields of a 16-bit one. */
    int rpos = 2, gpos = 1, bpos = 0, g16 = 5;
    if (comp == BI_BITFIELDS) {
        size_t at = 14 + 40; /* inside the larger headers, after a 40-byte one */
        if (n < at + 12 + (hsz >= 52 ? 4 : 0))
            return rp_fail(err, RP_ERR_FORMAT, "%s: truncated BMP: the file ends inside its bitfield masks", path);
        uint32_t r = le32(b + at), g = le32(b + at + 4), bl = le32(b + at + 8), a = hsz >= 52 ? le32(b + at + 12) : 0;
        bool ok = false;
        if (bits == 32) {
            ok = true;
            if (r == 0xFF0000 && g == 0xFF00 && bl == 0xFF && (a == 0 || a == 0xFF000000))
                ; /* BGRX, BGRA */
            else if (r == 0xFF000000 && g == 0xFF0000 && bl == 0xFF00 && (a == 0 || a == 0xFF))
                rpos = 3, gpos = 2, bpos = 1; /* XBGR, ABGR */
            else if (r == 0xFF && g == 0xFF00 && bl == 0xFF0000 && a == 0xFF000000)
                rpos = 0, gpos = 1, bpos = 2; /* RGBA */
            else if (r == 0 && g == 0 && bl == 0 && a == 0)
                ; /* Pillow reads all-zero masks as BGRA */
            else
                ok = false;
        } else if (bits == 24) {
            ok = r == 0xFF0000 && g == 0xFF00 && bl == 0xFF;
        } else if (bits == 16) {
            if (r == 0xF800 && g == 0x7E0 && bl == 0x1F)
                ok = true, g16 = 6;
            else
                ok = r == 0x7C00 && g == 0x3E0 && bl == 0x1F;
        }
        if (!ok)
            return rp_fail(err, RP_ERR_UNSUPPORTED,
                           "%s: unsupported BMP: %u-bit bitfields with masks R %#x G %#x B %#x A %#x", path, bits, r, g,
                           bl, a);
    }

    /* The palette, into Pillow's 256-entry table whose unset entries are
     * the gray ramp. */
    uint8_t table[256 * 3];
    for (int i = 0; i < 256; i++)
        table[i * 3] = table[i * 3 + 1] = table[i * 3 + 2] = (uint8_t)i;
    if (bits <= 8) {
        if (colors == 0)
            colors = 1u << bits;
        if (colors > 256)
            return rp_fail(err, RP_ERR_UNSUPPORTED, "%s: unsupported BMP: a palette of %u colours (at most 256)", path,
                           colors);
        size_t at = 14 + (size_t)hsz;
        if (n - at < colors * pad)
            return rp_fail(err, RP_ERR_FORMAT, "%s: truncated BMP: the file ends inside its %u-colour palette", path,
                           colors);
        bool gray = true;
        for (uint32_t i = 0; i < colors; i++) {
            const uint8_t *e = b + at + i * pad;
            uint8_t want = colors == 2 ? (uint8_t)(i ? 255 : 0) : (uint8_t)i;
            gray = gray && e[0] == want && e[1] == want && e[2] == want;
            table[i * 3] = e[2];
            table[i * 3 + 1] = e[1];
            table[i * 3 + 2] = e[0];
        }
        if (gray && bits != 8 && !(bits == 1 && colors == 2))
            return rp_fail(err, RP_ERR_UNSUPPORTED,
                           "%s: unsupported BMP: %u-bit pixels with a gray-ramp palette of %u colours, which Pillow "
                           "misreads as 8-bit gray",
                           path, bits, colors);
        if (gray && bits == 8 && colors == 2)
            return rp_fail(err, RP_ERR_UNSUPPORTED,
                           "%s: unsupported BMP: 8-bit pixels with a black-and-white palette, which Pillow misreads "
                           "as 1-bit pixels",
                           path);
        if (off == 14 + hsz)
            off += 4 * colors;
    }

    int64_t stride = (w * bits + 31) / 32 * 4;
    if (off > n || (int64_t)(n - off) / stride < h)
        return rp_fail(err, RP_ERR_FORMAT,
                       "%s: truncated BMP: the header promises %lld bytes of pixels from byte %u, the file has %zu bytes",
                       path, (long long)(stride * h), off, n);
    rp_status st = rp_image_alloc_pixels(out, (int)w, (int)h, 3, path, err);
    if (st)
        return st;
    for (int64_t y = 0; y < h; y++) {
        const uint8_t *row = b + off + (size_t)(stride * (top_down ? y : h - 1 - y));
        uint8_t *o = out->pixels + (size_t)(y * w * 3);
        for (int64_t x = 0; x < w; x++, o += 3) {
            if (bits <= 8) {
                unsigned per = 8 / bits, shift = (unsigned)(8 - bits - (x % per) * bits);
                unsigned idx = row[x / per] >> shift & ((1u << bits) - 1);
                memcpy(o, table + idx * 3, 3);
            } else if (bits == 16) {
                uint32_t v = le16(row + x * 2);
                if (g16 == 6) {
                    o[0] = widen(v >> 11 & 31, 5), o[1] = widen(v >> 5 & 63, 6), o[2] = widen(v & 31, 5);
                } else {
                    o[0] = widen(v >> 10 & 31, 5), o[1] = widen(v >> 5 & 31, 5), o[2] = widen(v & 31, 5);
                }
            } else if (bits == 24) {
                const uint8_t *p = row + x * 3;
                o[0] = p[2], o[1] = p[1], o[2] = p[0];
            } else {
                const uint8_t *p = row + x * 4;
                o[0] = p[rpos], o[1] = p[gpos], o[2] = p[bpos];
            }
        }
    }
    return RP_OK;
}
