/* The image decoders behind rp_image_load (preprocess.c), one per format.
 * Each takes the whole file in memory (b, n bytes; path only names it in
 * messages) and returns the RGB pixels PIL's Image.open(path).convert("RGB")
 * gives, or an error naming path and what is wrong. None reads a byte it did
 * not write or get from the file: on any error out is left empty. */
#ifndef RP_IMAGE_DECODE_H
#define RP_IMAGE_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* 64 Mpx: above any camera's 8-bit output that a ViT would be shown. Each
 * decoder refuses a larger header before allocating anything for it. */
#define RP_IMAGE_MAX_PIXELS ((int64_t)1 << 26)

/* Each scan of a JPEG visits every block of its components, however little
 * data it holds (about 35 ns a block for a refinement scan), so thousands of
 * near-empty scans cost minutes. A progressive file needs about 10 scans
 * (libjpeg's default script: 13 component scans for colour), an encoder's
 * custom script a few dozen. Refused: more than RP_JPEG_MAX_SCANS scans, or
 * more than RP_JPEG_MAX_BLOCK_SCANS blocks visited over all scans (about a
 * second; 33 scans of one full component at the pixel limit, 2.5x what the
 * default script needs there). */
#define RP_JPEG_MAX_SCANS 500
#define RP_JPEG_MAX_BLOCK_SCANS ((int64_t)1 << 25)

/* Pixels for a w x h x c image (uninitialised; each decoder writes every
 * byte). Refuses w, h <= 0 and sizes that overflow. */
rp_status rp_image_alloc_pixels(rp_image *im, int w, int h, int c, const char *what, rp_error *err);

/* libjpeg-turbo (the library PIL links), with PIL's settings. */
rp_status rp_decode_jpeg(const char *path, const uint8_t *b, size_t n, rp_image *out, rp_error *err);
/* libpng. */
rp_status rp_decode_png(const char *path, const uint8_t *b, size_t n, rp_image *out, rp_error *err);
/* relprop's own reader of the layouts PIL's BmpImagePlugin reads. */
rp_status rp_decode_bmp(const char *path, const uint8_t *b, size_t n, rp_image *out, rp_error *err);

#endif
