/* PNG through libpng, into the pixels Pillow 9.4's PngImagePlugin and
 * convert("RGB") give:
 *   gray 1/2/4-bit: scaled to 0..255 (x255, x85, x17; libpng's expansion
 *     is the same as Pillow's "1", "L;2", "L;4" unpackers);
 *   gray 16-bit: Pillow's mode "I", whose convert("RGB") clips at 255 (not
 *     the high byte);
 *   RGB, gray + alpha, RGBA at 16 bits: the high byte of each sample
 *     (Pillow's ";16B" unpackers), which is libpng's png_set_strip_16;
 *   alpha (and tRNS): dropped, not composited;
 *   palette: looked up here in a 256-entry table that starts as Pillow's
 *     (the gray ramp i -> (i, i, i)) and holds PLTE's entries, so an index
 *     beyond the palette gives Pillow's gray, deterministically.
 * Interlaced files are de-interlaced by libpng. A bad CRC is an error in
 * any chunk: Pillow refuses one in the chunks before the image data
 * (libpng alone would skip an ancillary one), and a bad IDAT CRC, which
 * Pillow does not check, is corruption all the same. So is a palette image
 * without PLTE, which Pillow would show as gray. libpng's errors come back
 * through setjmp as "corrupt PNG: <libpng's message>"; running out of bytes
 * is "truncated PNG". Reading stops after the last row: a file cut after its
 * image data (no IEND) loads, as in Pillow. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "image/decode.h"

typedef struct png_job {
    const uint8_t *b;
    size_t n, pos;
    bool truncated;
    char msg[256];
    png_structp png;
    png_infop info;
    bool jumped; /* libpng stopped the decode through png_longjmp */
    uint8_t *rows;    /* decoded samples, h rows of rowbytes */
    png_bytep *ptrs;  /* row pointers into rows */
    rp_image im;
} png_job;

static void png_read_mem(png_structp png, png_bytep out, size_t len)
{
    png_job *j = png_get_io_ptr(png);
    if (len > j->n - j->pos) {
        j->truncated = true;
        png_error(png, "the file ends inside a chunk");
    }
    memcpy(out, j->b + j->pos, len);
    j->pos += len;
}

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_job *j = png_get_error_ptr(png);
    snprintf(j->msg, sizeof j->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static rp_status decode(const char *path, png_job *j, rp_error *err)
{
    if (setjmp(png_jmpbuf(j->png))) {
        j->jumped = true; /* the caller reads why in j->msg */
        return RP_ERR_INTERNAL;
    }

    png_set_read_fn(j->png, j, png_read_mem);
    /* Every chunk but IHDR, PLTE, tRNS, IDAT and IEND skipped unparsed (none
     * changes Pillow's RGB; iCCP, zTXt and iTXt would be inflated). */
    png_set_keep_unknown_chunks(j->png, PNG_HANDLE_CHUNK_NEVER, NULL, -1);
    png_set_crc_action(j->png, PNG_CRC_DEFAULT, PNG_CRC_ERROR_QUIT);
    /* Width and height each within the pixel limit (checked on the product
     * below), no ancillary chunk over 8 MiB, at most 1000 of them kept. */
    png_set_user_limits(j->png, (png_uint_32)RP_IMAGE_MAX_PIXELS, (png_uint_32)RP_IMAGE_MAX_PIXELS);
    png_set_chunk_malloc_max(j->png, 8u << 20);
    png_set_chunk_cache_max(j->png, 1000);
    png_read_info(j->png, j->info);

    png_uint_32 w = png_get_image_width(j->png, j->info), h = png_get_image_height(j->png, j->info);
    int depth = png_get_bit_depth(j->png, j->info), type = png_get_color_type(j->png, j->info);
    if ((int64_t)w * h > RP_IMAGE_MAX_PIXELS)
        return rp_fail(err, RP_ERR_VALUE,
                       "%s: image too large: the PNG header claims %ux%u pixels, more than the %lld "
                       "relprop accepts",
                       path, w, h, (long long)RP_IMAGE_MAX_PIXELS);

    bool palette = type == PNG_COLOR_TYPE_PALETTE;
    bool gray16 = type == PNG_COLOR_TYPE_GRAY && depth == 16;
    uint8_t table[256 * 3];
    if (palette) {
        for (int i = 0; i < 256; i++)
            table[i * 3] = table[i * 3 + 1] = table[i * 3 + 2] = (uint8_t)i;
        png_colorp plte = NULL;
        int count = 0;
        if (png_get_PLTE(j->png, j->info, &plte, &count) != PNG_INFO_PLTE)
            return rp_fail(err, RP_ERR_FORMAT, "%s: corrupt PNG: a palette image without a PLTE chunk", path);
        for (int i = 0; i < count && i < 256; i++) {
            table[i * 3] = plte[i].red;
            table[i * 3 + 1] = plte[i].green;
            table[i * 3 + 2] = plte[i].blue;
        }
        png_set_packing(j->png); /* one index per byte, not scaled */
    } else {
        if (type == PNG_COLOR_TYPE_GRAY && depth < 8)
            png_set_expand_gray_1_2_4_to_8(j->png);
        if (depth == 16 && !gray16)
            png_set_strip_16(j->png);
        if (type & PNG_COLOR_MASK_ALPHA)
            png_set_strip_alpha(j->png);
    }
    png_set_interlace_handling(j->png);
    png_read_update_info(j->png, j->info);

    size_t rowbytes = png_get_rowbytes(j->png, j->info);
    int channels = png_get_channels(j->png, j->info);
    size_t want = (size_t)w * (size_t)(gray16 ? 2 : channels);
    if ((channels != 1 && channels != 3) || (gray16 && channels != 1) || rowbytes != want)
        return rp_fail(err, RP_ERR_INTERNAL, "%s: libpng gives rows of %zu bytes, %d channels (expected %zu bytes)",
                       path, rowbytes, channels, want);

    /* RGB rows are the image itself; other layouts go through a buffer of
     * at most 2 bytes a pixel. */
    rp_status st = rp_image_alloc_pixels(&j->im, (int)w, (int)h, 3, path, err);
    if (st)
        return st;
    uint8_t *dst = j->im.pixels;
    if (channels != 3) {
        j->rows = malloc(rowbytes * h);
        if (!j->rows)
            return rp_fail(err, RP_ERR_NOMEM, "%s: out of memory for a %ux%u PNG", path, w, h);
        dst = j->rows;
    }
    j->ptrs = malloc(sizeof *j->ptrs * h);
    if (!j->ptrs)
        return rp_fail(err, RP_ERR_NOMEM, "%s: out of memory for a %ux%u PNG", path, w, h);
    for (size_t y = 0; y < h; y++)
        j->ptrs[y] = dst + y * rowbytes;
    png_read_image(j->png, j->ptrs);

    if (channels == 3)
        return RP_OK;
    size_t count = (size_t)w * h;
    uint8_t *o = j->im.pixels;
    for (size_t i = 0; i < count; i++, o += 3) {
        if (palette) {
            memcpy(o, table + (size_t)j->rows[i] * 3, 3);
        } else if (gray16) {
            unsigned v = (unsigned)j->rows[i * 2] << 8 | j->rows[i * 2 + 1];
            o[0] = o[1] = o[2] = v > 255 ? 255 : (uint8_t)v;
        } else {
            o[0] = o[1] = o[2] = j->rows[i];
        }
    }
    return RP_OK;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

rp_status rp_decode_png(const char *path, const uint8_t *b, size_t n, rp_image *out, rp_error *err)
{
    memset(out, 0, sizeof *out);
    /* Said plainly, rather than as libpng's "Image width is zero in IHDR" or
     * "exceeds user limit" (libpng's limits below stay as a backstop). */
    if (n >= 24 && memcmp(b + 12, "IHDR", 4) == 0) {
        uint32_t w = be32(b + 16), h = be32(b + 20);
        if (w == 0 || h == 0)
            return rp_fail(err, RP_ERR_FORMAT, "%s: zero-size image (%ux%u) in the PNG header", path, w, h);
        if ((uint64_t)w * h > (uint64_t)RP_IMAGE_MAX_PIXELS)
            return rp_fail(err, RP_ERR_VALUE,
                           "%s: image too large: the PNG header claims %ux%u pixels, more than the %lld "
                           "relprop accepts",
                           path, w, h, (long long)RP_IMAGE_MAX_PIXELS);
    }
    png_job *j = calloc(1, sizeof *j);
    if (!j)
        return rp_fail(err, RP_ERR_NOMEM, "%s: out of memory for the PNG decoder", path);
    j->b = b;
    j->n = n;
    rp_status st = RP_OK;
    j->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, j, png_on_error, png_on_warning);
    if (j->png)
        j->info = png_create_info_struct(j->png);
    if (!j->png || !j->info)
        st = rp_fail(err, RP_ERR_NOMEM, "%s: out of memory for the PNG decoder", path);
    else
        st = decode(path, j, err);
    if (j->jumped)
        st = j->truncated ? rp_fail(err, RP_ERR_FORMAT, "%s: truncated PNG: %s", path, j->msg)
                          : rp_fail(err, RP_ERR_FORMAT, "%s: corrupt PNG: %s", path, j->msg);
    png_destroy_read_struct(&j->png, &j->info, NULL);
    free(j->rows);
    free(j->ptrs);
    if (st == RP_OK)
        *out = j->im;
    else
        rp_image_release(&j->im);
    free(j);
    return st;
}
