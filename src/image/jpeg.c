/* JPEG through libjpeg-turbo, the library Pillow links, set up as Pillow's
 * JpegDecode.c sets it up when torchvision opens a file (no draft mode):
 * libjpeg's defaults (ISLOW integer DCT, fancy upsampling, block smoothing
 * of progressive scans), the colour space libjpeg guesses from the JFIF /
 * Adobe markers, and the output Pillow asks for by component count:
 *   1 component:  gray ("L"), replicated into RGB by convert("RGB");
 *   3 components: RGB;
 *   4 components: CMYK (libjpeg turns YCCK into CMYK), read as "CMYK;I"
 *     (Pillow always assumes Adobe's inverted CMYK), then Pillow's cmyk2rgb.
 * So the pixels equal Pillow's exactly (tests/test_jpeg.c checks every file
 * in tests/data/jpeg/ against Pillow's own decode).
 *
 * Refused as Pillow refuses them: 2-component frames and samples other than
 * 8 bits (libjpeg62-turbo is built for 8 bits), lossless and hierarchical
 * frames (libjpeg-turbo 2.1 does not decode them), and truncated files (the
 * end of the file reached before the end-of-image marker; Pillow says "image
 * file is truncated"). Arithmetic-coded files decode, as they do in Pillow.
 * Other libjpeg warnings (corrupt entropy data, extraneous bytes) are
 * ignored, as Pillow ignores them: the file decodes to what Pillow shows the
 * model. Beyond Pillow: the pixel limit, and the scan and work limits of
 * decode.h, checked from libjpeg's progress monitor as scans arrive. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#include "image/decode.h"

typedef enum jpeg_stop { STOP_ERROR, STOP_TRUNCATED, STOP_SCANS, STOP_WORK } jpeg_stop;

typedef struct jpeg_ctx {
    struct jpeg_error_mgr pub; /* first: libjpeg hands back a pointer to it */
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    jpeg_stop stop;
    int scans_seen;
    int64_t block_scans;
    char msg[JMSG_LENGTH_MAX];
} jpeg_ctx;

static void jpeg_error_exit(j_common_ptr c)
{
    jpeg_ctx *x = (jpeg_ctx *)c->err;
    x->stop = STOP_ERROR;
    c->err->format_message(c, x->msg);
    longjmp(x->jump, 1);
}

/* Warnings (level -1) are ignored except running out of data, where
 * libjpeg's memory source would feed a fake end-of-image marker and decode
 * the rest as gray; trace messages (level >= 0) are dropped. */
static void jpeg_emit_message(j_common_ptr c, int level)
{
    jpeg_ctx *x = (jpeg_ctx *)c->err;
    if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF) {
        x->stop = STOP_TRUNCATED;
        longjmp(x->jump, 1);
    }
    if (level < 0)
        c->err->num_warnings++;
}

/* Called before each step of input (an iMCU row of a scan, or the markers
 * before the next scan): the scan count and the blocks each new scan will
 * visit are counted here, before the scan's data is decoded. */
static void jpeg_progress(j_common_ptr c)
{
    j_decompress_ptr d = (j_decompress_ptr)c;
    jpeg_ctx *x = (jpeg_ctx *)c->err;
    if (d->input_scan_number == x->scans_seen)
        return;
    x->scans_seen = d->input_scan_number;
    if (x->scans_seen > RP_JPEG_MAX_SCANS) {
        x->stop = STOP_SCANS;
        longjmp(x->jump, 1);
    }
    for (int i = 0; i < d->comps_in_scan && i < MAX_COMPS_IN_SCAN; i++)
        x->block_scans += (int64_t)d->cur_comp_info[i]->width_in_blocks * d->cur_comp_info[i]->height_in_blocks;
    if (x->block_scans > RP_JPEG_MAX_BLOCK_SCANS) {
        x->stop = STOP_WORK;
        longjmp(x->jump, 1);
    }
}

/* Pillow's MULDIV255: a * b / 255 rounded, in integers. */
static int muldiv255(int a, int b)
{
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

static uint8_t clip8(int v) { return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v; }

/* Everything libjpeg's longjmp may abandon lives here, in the caller's
 * frame, so that no local of the function calling setjmp changes after it. */
typedef struct jpeg_job {
    struct jpeg_decompress_struct cinfo;
    jpeg_ctx ctx;
    bool created;
    bool jumped; /* libjpeg stopped the decode through ctx.jump */
    uint8_t *row; /* one decoded row for 1- and 4-component output */
    rp_image im;
} jpeg_job;

static rp_status decode(const char *path, const uint8_t *b, size_t n, jpeg_job *j, rp_error *err)
{
    struct jpeg_decompress_struct *ci = &j->cinfo;
    if (setjmp(j->ctx.jump)) {
        j->jumped = true; /* the caller reads why in j->ctx */
        return RP_ERR_INTERNAL;
    }

    ci->err = jpeg_std_error(&j->ctx.pub);
    j->ctx.pub.error_exit = jpeg_error_exit;
    j->ctx.pub.emit_message = jpeg_emit_message;
    /* Before creating: a failure inside jpeg_create_decompress jumps back
     * with the object half made, and destroying it then is safe. */
    j->created = true;
    jpeg_create_decompress(ci);
    j->ctx.progress.progress_monitor = jpeg_progress;
    ci->progress = &j->ctx.progress;
    /* Coefficient buffers of a progressive or multi-scan file: 128 bytes per
     * block, 512 MiB for 4 full-size components at the pixel limit. libjpeg
     * refuses more (it has no backing store) instead of allocating it. */
    ci->mem->max_memory_to_use = 640L << 20;
    jpeg_mem_src(ci, b, (unsigned long)n);
    jpeg_read_header(ci, TRUE);

    int nc = ci->num_components;
    if (nc == 2 || nc > 4)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "%s: unsupported JPEG: %d components (1, 3 or 4 expected)", path, nc);
    int64_t w = ci->image_width, h = ci->image_height;
    if (w * h > RP_IMAGE_MAX_PIXELS)
        return rp_fail(err, RP_ERR_VALUE,
                       "%s: image too large: the JPEG header claims %lldx%lld pixels, more than the %lld "
                       "relprop accepts",
                       path, (long long)w, (long long)h, (long long)RP_IMAGE_MAX_PIXELS);
    ci->out_color_space = nc == 1 ? JCS_GRAYSCALE : nc == 3 ? JCS_RGB : JCS_CMYK;
    ci->dct_method = JDCT_ISLOW;
    ci->do_fancy_upsampling = TRUE;
    jpeg_start_decompress(ci);
    if ((int)ci->output_components != nc || ci->output_width != ci->image_width ||
        ci->output_height != ci->image_height)
        return rp_fail(err, RP_ERR_INTERNAL, "%s: libjpeg gives %ux%u x %d for a %ux%u x %d JPEG", path,
                       ci->output_width, ci->output_height, ci->output_components, ci->image_width,
                       ci->image_height, nc);

    rp_status st = rp_image_alloc_pixels(&j->im, (int)w, (int)h, 3, path, err);
    if (st)
        return st;
    if (nc != 3) {
        j->row = malloc((size_t)w * (size_t)nc);
        if (!j->row)
            return rp_fail(err, RP_ERR_NOMEM, "%s: out of memory for a JPEG row", path);
    }
    while (ci->output_scanline < ci->output_height) {
        size_t y = ci->output_scanline;
        uint8_t *o = j->im.pixels + y * (size_t)w * 3;
        JSAMPROW rows[1] = {nc == 3 ? o : j->row};
        if (jpeg_read_scanlines(ci, rows, 1) != 1)
            return rp_fail(err, RP_ERR_INTERNAL, "%s: libjpeg returned no row %zu", path, y);
        if (nc == 1) {
            for (int64_t x = 0; x < w; x++)
                o[x * 3] = o[x * 3 + 1] = o[x * 3 + 2] = j->row[x];
        } else if (nc == 4) {
            for (int64_t x = 0; x < w; x++) {
                /* "CMYK;I": every sample inverted on the way in. */
                const uint8_t *p = j->row + x * 4;
                int nk = 255 - (255 - p[3]);
                for (int k = 0; k < 3; k++)
                    o[x * 3 + k] = clip8(nk - muldiv255(255 - p[k], nk));
            }
        }
    }
    /* Reads on to the end-of-image marker: a file cut after its last row is
     * refused as truncated, like one cut before. */
    jpeg_finish_decompress(ci);
    return RP_OK;
}

rp_status rp_decode_jpeg(const char *path, const uint8_t *b, size_t n, rp_image *out, rp_error *err)
{
    jpeg_job *j = calloc(1, sizeof *j);
    memset(out, 0, sizeof *out);
    if (!j)
        return rp_fail(err, RP_ERR_NOMEM, "%s: out of memory for the JPEG decoder", path);
    rp_status st = decode(path, b, n, j, err);
    if (j->jumped && j->ctx.stop == STOP_ERROR) {
        int code = j->ctx.pub.msg_code;
        if (code == JERR_OUT_OF_MEMORY || code == JERR_NO_BACKING_STORE)
            st = rp_fail(err, RP_ERR_NOMEM, "%s: JPEG needs more memory than relprop allows its decoder: %s", path,
                         j->ctx.msg);
        else if (code == JERR_EMPTY_IMAGE && j->cinfo.image_width > 0 && j->cinfo.num_components > 0)
            st = rp_fail(err, RP_ERR_UNSUPPORTED, "%s: unsupported JPEG: height 0 in the frame header (a height "
                         "given later by a DNL marker)", path);
        else if (code == JERR_EMPTY_IMAGE)
            st = rp_fail(err, RP_ERR_FORMAT, "%s: corrupt JPEG: zero-size image (%ux%u, %d components) in the frame "
                         "header", path, j->cinfo.image_width, j->cinfo.image_height, j->cinfo.num_components);
        else if (code == JERR_SOF_UNSUPPORTED || code == JERR_BAD_PRECISION || code == JERR_NOT_COMPILED ||
                 code == JERR_CONVERSION_NOTIMPL)
            st = rp_fail(err, RP_ERR_UNSUPPORTED, "%s: unsupported JPEG: %s", path, j->ctx.msg);
        else
            st = rp_fail(err, RP_ERR_FORMAT, "%s: corrupt JPEG: %s", path, j->ctx.msg);
    } else if (j->jumped && j->ctx.stop == STOP_TRUNCATED) {
        st = rp_fail(err, RP_ERR_FORMAT, "%s: truncated JPEG: the file ends before its end-of-image marker", path);
    } else if (j->jumped && j->ctx.stop == STOP_SCANS) {
        st = rp_fail(err, RP_ERR_UNSUPPORTED, "%s: unsupported JPEG: more than %d scans (a progressive file has "
                     "about 10; each scan costs a pass over the image)", path, RP_JPEG_MAX_SCANS);
    } else if (j->jumped && j->ctx.stop == STOP_WORK) {
        st = rp_fail(err, RP_ERR_UNSUPPORTED, "%s: unsupported JPEG: its first %d scans visit more than %lld blocks "
                     "(each scan costs a pass over its components)", path, j->ctx.scans_seen,
                     (long long)RP_JPEG_MAX_BLOCK_SCANS);
    }
    if (j->created)
        jpeg_destroy_decompress(&j->cinfo);
    free(j->row);
    if (st == RP_OK)
        *out = j->im;
    else
        rp_image_release(&j->im);
    free(j);
    return st;
}
