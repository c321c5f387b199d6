/* Images in: decode a file, then do to it exactly what torchvision's PIL path
 * does (Resize, CenterCrop, ToTensor, Normalize), because that is what the
 * model was trained on: a pixel off by one level is an input the model never
 * saw. The reference is Pillow 9.4 / torchvision 0.14 as Debian 12 ships
 * them; tests/test_preprocess.c compares against tensors they produced.
 *
 * Decoding (the pixels Image.open(path).convert("RGB") gives): JPEG through
 * libjpeg-turbo as Pillow sets it up (jpeg.c), PNG through libpng (png.c),
 * BMP (bmp.c) and binary PPM/PGM (here) read by relprop itself, because
 * stb_image, used before, read uninitialised memory on out-of-range palette
 * indices and decoded JPEG 1-3 levels away from libjpeg. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stb_image_write.h>

#include "core/atomic_file.h"
#include "relprop/relprop.h"
#include "core/error.h"
#include "core/tensor.h"
#include "image/decode.h"

/* ---- small helpers ---- */

/* a * b * c bytes, false on overflow (all non-negative). */
static bool size_mul3(size_t a, size_t b, size_t c, size_t *out)
{
    if (b && a > SIZE_MAX / b)
        return false;
    a *= b;
    if (c && a > SIZE_MAX / c)
        return false;
    *out = a * c;
    return true;
}

static bool image_valid(const rp_image *im)
{
    return im && im->width > 0 && im->height > 0 && (im->channels == 1 || im->channels == 3) && im->pixels;
}

rp_status rp_image_alloc_pixels(rp_image *im, int w, int h, int c, const char *what, rp_error *err)
{
    size_t n;
    memset(im, 0, sizeof *im);
    if (w <= 0 || h <= 0 || !size_mul3((size_t)w, (size_t)h, (size_t)c, &n))
        return rp_fail(err, RP_ERR_VALUE, "%s: image size %dx%dx%d is out of range", what, w, h, c);
    im->pixels = malloc(n ? n : 1);
    if (!im->pixels)
        return rp_fail(err, RP_ERR_NOMEM, "%s: out of memory for a %dx%d image", what, w, h);
    im->width = w;
    im->height = h;
    im->channels = c;
    return RP_OK;
}

void rp_image_release(rp_image *im)
{
    if (!im)
        return;
    free(im->pixels);
    memset(im, 0, sizeof *im);
}

/* 2 GiB: far above any file of an image within the pixel limit (64 Mpx of
 * 16-bit RGBA is 512 MiB uncompressed). */
#define IMAGE_FILE_MAX ((int64_t)INT_MAX)

/* The whole file in memory, for the decoders, which read from memory. Only
 * a regular file is read, opened without blocking (a FIFO or device is
 * refused by kind, before a byte is read). */
static rp_status read_file(const char *path, uint8_t **out, size_t *len, rp_error *err)
{
    return rp_file_read_all(path, "image", IMAGE_FILE_MAX, (char **)out, len, err);
}

/* ---- decoding ---- */

typedef enum img_format { FMT_UNKNOWN, FMT_PNG, FMT_JPEG, FMT_BMP, FMT_PNM } img_format;

static bool pnm_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

/* By magic bytes, not by the file name. Formats relprop does not promise
 * (GIF, TIFF, WebP) are refused by name. */
static rp_status sniff(const char *path, const uint8_t *b, size_t n, img_format *fmt, rp_error *err)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    *fmt = FMT_UNKNOWN;
    if (n >= 8 && memcmp(b, png_sig, 8) == 0)
        *fmt = FMT_PNG;
    else if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        *fmt = FMT_JPEG;
    else if (n >= 2 && b[0] == 'B' && b[1] == 'M')
        *fmt = FMT_BMP;
    else if (n >= 3 && b[0] == 'P' && (b[1] == '5' || b[1] == '6') && pnm_space(b[2]))
        *fmt = FMT_PNM;
    if (*fmt != FMT_UNKNOWN)
        return RP_OK;
    if (n >= 3 && b[0] == 'P' && b[1] >= '1' && b[1] <= '4' && pnm_space(b[2]))
        return rp_fail(err, RP_ERR_UNSUPPORTED,
                       "%s: plain-text or bitmap PNM (P%c) is not supported; expected binary PPM (P6) or PGM (P5)",
                       path, b[1]);
    const char *other = NULL;
    if (n >= 4 && memcmp(b, "GIF8", 4) == 0)
        other = "GIF";
    else if (n >= 4 && (memcmp(b, "II*\0", 4) == 0 || memcmp(b, "MM\0*", 4) == 0))
        other = "TIFF";
    else if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0)
        other = "WebP";
    if (other)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "%s: %s images are not supported; expected PNG, JPEG, BMP or PPM/PGM",
                       path, other);
    return rp_fail(err, RP_ERR_FORMAT, "%s: not an image: expected PNG, JPEG, BMP or PPM/PGM data", path);
}

/* One PNM header token as PIL's PpmImagePlugin reads it: skip whitespace and
 * '#' comments (to the end of the line), then up to 10 non-space characters
 * ended by one whitespace byte, which is consumed. Digits only here. */
static bool pnm_token(const uint8_t *b, size_t n, size_t *pos, uint32_t *value)
{
    size_t p = *pos;
    char tok[12];
    int len = 0;
    while (p < n) {
        uint8_t c = b[p++];
        if (pnm_space(c)) {
            if (len == 0)
                continue;
            break;
        }
        if (c == '#') {
            while (p < n && b[p] != '\r' && b[p] != '\n')
                p++;
            if (p < n)
                p++;
            continue;
        }
        if (c < '0' || c > '9' || len == 10)
            return false;
        tok[len++] = (char)c;
    }
    if (len == 0)
        return false;
    tok[len] = 0;
    unsigned long v = strtoul(tok, NULL, 10);
    if (v > UINT32_MAX)
        return false;
    *value = (uint32_t)v;
    *pos = p;
    return true;
}

/* Binary PPM (P6) / PGM (P5) with PIL 9.4's value mapping:
 *   maxval 255: the bytes as they are;
 *   other maxvals: round(v / maxval * 255) (half to even, as Python's
 *   round), clipped to 255;
 *   PGM with maxval > 255 opens as mode "I" scaled to 65535 (65535 itself
 *   read raw), and convert("RGB") then clips it at 255. */
static rp_status load_pnm(const char *path, const uint8_t *b, size_t n, rp_image *out, rp_error *err)
{
    bool color = b[1] == '6';
    size_t pos = 3;
    uint32_t w, h, maxval;
    if (!pnm_token(b, n, &pos, &w) || !pnm_token(b, n, &pos, &h) || !pnm_token(b, n, &pos, &maxval))
        return rp_fail(err, RP_ERR_FORMAT, "%s: corrupt PPM/PGM header: expected width, height and maxval", path);
    if (w == 0 || h == 0)
        return rp_fail(err, RP_ERR_FORMAT, "%s: zero-size image (%ux%u) in the PPM/PGM header", path, w, h);
    if (maxval == 0 || maxval > 65535)
        return rp_fail(err, RP_ERR_FORMAT, "%s: PPM/PGM maxval %u is out of range (1..65535)", path, maxval);
    if ((uint64_t)w * h > (uint64_t)RP_IMAGE_MAX_PIXELS) /* two 32-bit sides: no overflow in 64 bits unsigned */
        return rp_fail(err, RP_ERR_VALUE,
                       "%s: image too large: the PPM/PGM header claims %ux%u pixels, more than the %lld relprop accepts",
                       path, w, h, (long long)RP_IMAGE_MAX_PIXELS);
    size_t bands = color ? 3 : 1, bps = maxval < 256 ? 1 : 2, need;
    if (!size_mul3(w, h, bands * bps, &need))
        return rp_fail(err, RP_ERR_UNSUPPORTED, "%s: image %ux%u is too large", path, w, h);
    if (n - pos < need)
        return rp_fail(err, RP_ERR_FORMAT, "%s: truncated PPM/PGM: expected %zu bytes of pixels, found %zu", path,
                       need, n - pos);
    rp_status st = rp_image_alloc_pixels(out, (int)w, (int)h, 3, path, err);
    if (st)
        return st;
    const uint8_t *src = b + pos;
    size_t count = (size_t)w * h;
    for (size_t i = 0; i < count; i++) {
        for (size_t c = 0; c < bands; c++) {
            const uint8_t *s = src + (i * bands + c) * bps;
            uint32_t raw = bps == 1 ? s[0] : (uint32_t)s[0] << 8 | s[1];
            double v;
            if (maxval == 255)
                v = raw;
            else if (!color && maxval > 255)
                v = maxval == 65535 ? raw : fmin(65535.0, rint((double)raw / maxval * 65535.0));
            else
                v = rint((double)raw / maxval * 255.0);
            uint8_t u = v >= 255.0 ? 255 : (uint8_t)v;
            if (color) {
                out->pixels[i * 3 + c] = u;
            } else {
                out->pixels[i * 3 + 0] = out->pixels[i * 3 + 1] = out->pixels[i * 3 + 2] = u;
            }
        }
    }
    return RP_OK;
}

rp_status rp_image_load(const char *path, rp_image *out, rp_error *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    img_format fmt;
    if (!out)
        return rp_fail(err, RP_ERR_ARG, "rp_image_load: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path)
        return rp_fail(err, RP_ERR_ARG, "rp_image_load: path is NULL");
    rp_status st = read_file(path, &buf, &len, err);
    if (st)
        return st;
    if (len == 0) {
        st = rp_fail(err, RP_ERR_FORMAT, "%s: empty file, expected an image", path);
        goto done;
    }
    st = sniff(path, buf, len, &fmt, err);
    if (!st) {
        switch (fmt) {
        case FMT_JPEG: st = rp_decode_jpeg(path, buf, len, out, err); break;
        case FMT_PNG: st = rp_decode_png(path, buf, len, out, err); break;
        case FMT_BMP: st = rp_decode_bmp(path, buf, len, out, err); break;
        default: st = load_pnm(path, buf, len, out, err); break;
        }
    }
done:
    free(buf);
    if (st)
        rp_image_release(out);
    return st;
}

/* ---- writing PNG ---- */

/* The PNG goes through the shared whole-or-absent writer (core/atomic_file.h). */
typedef struct png_sink {
    rp_atomic_file af;
    rp_status st;  /* first write error */
    rp_error *err;
} png_sink;

static void png_write_cb(void *ctx, void *data, int size)
{
    png_sink *s = ctx;
    if (!s->st && size > 0)
        s->st = rp_atomic_write(&s->af, data, (size_t)size, s->err);
}

rp_status rp_image_write_png(const char *path, const rp_image *im, rp_error *err)
{
    if (!path)
        return rp_fail(err, RP_ERR_ARG, "rp_image_write_png: path is NULL");
    if (!image_valid(im))
        return rp_fail(err, RP_ERR_ARG, "%s: cannot write an image that is not 1- or 3-channel with pixels and a size",
                       path);
    /* stb_image_write sizes its buffers with int: (w*c + 1) * h filter bytes
     * plus the compressor's slack. */
    if ((int64_t)im->width * im->channels + 1 > INT_MAX / 2 / im->height)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "%s: image %dx%d is too large to write as PNG", path, im->width,
                       im->height);
    png_sink sink = {.err = err};
    rp_status st = rp_atomic_begin(&sink.af, path, err);
    if (st)
        return st;
    if (!stbi_write_png_to_func(png_write_cb, &sink, im->width, im->height, im->channels, im->pixels,
                                im->width * im->channels)) {
        rp_atomic_abort(&sink.af);
        return sink.st ? sink.st : rp_fail(err, RP_ERR_NOMEM, "%s: PNG encoder failed (out of memory)", path);
    }
    if (sink.st) {
        rp_atomic_abort(&sink.af);
        return sink.st;
    }
    return rp_atomic_commit(&sink.af, err);
}

/* ---- resampling, as Pillow's ImagingResample (libImaging/Resample.c) ----
 *
 * Separable: a horizontal pass over the rows the vertical pass will read,
 * rounded and clipped to uint8, then the vertical pass. Each output pixel is
 * a weighted sum over a window of inputs; when downscaling by s the filter is
 * stretched by s (antialiasing). Weights are computed in double, normalised
 * per output pixel, then turned into 22-bit fixed point, and sums start at
 * one half so that >> 22 rounds. Every floating-point step below is the one
 * Pillow makes, in the same order, so the results match to the bit. This
 * relies on no FMA contraction, which C11 mode (-std=c11) keeps off. */

#define PRECISION_BITS (32 - 8 - 2)

static double filter_bilinear(double x)
{
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return 1.0 - x;
    return 0.0;
}

static double filter_bicubic(double x)
{
    /* Keys' cubic convolution with a = -0.5, written as Pillow writes it. */
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

typedef struct coeffs {
    int ksize;      /* weights per output pixel (some trailing ones zero) */
    int *bounds;    /* per output pixel: first input index, number of inputs */
    int32_t *k;     /* out_size * ksize fixed-point weights */
} coeffs;

static void coeffs_free(coeffs *c)
{
    free(c->bounds);
    free(c->k);
    memset(c, 0, sizeof *c);
}

static rp_status precompute_coeffs(int in_size, int out_size, rp_interp interp, coeffs *out, rp_error *err)
{
    double (*filter)(double) = interp == RP_INTERP_BICUBIC ? filter_bicubic : filter_bilinear;
    double fsupport = interp == RP_INTERP_BICUBIC ? 2.0 : 1.0;
    double *kk = NULL;
    memset(out, 0, sizeof *out);

    /* Pillow passes the box as floats: (double)(in1 - in0) with in0 = 0. */
    double scale = (double)(float)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = fsupport * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    size_t nk;
    if (!size_mul3((size_t)out_size, (size_t)ksize, sizeof(double), &nk))
        return rp_fail(err, RP_ERR_NOMEM, "resize: %d -> %d needs too many filter weights", in_size, out_size);
    kk = malloc(nk);
    out->k = malloc((size_t)out_size * (size_t)ksize * sizeof(int32_t));
    out->bounds = malloc((size_t)out_size * 2 * sizeof(int));
    if (!kk || !out->k || !out->bounds) {
        free(kk);
        coeffs_free(out);
        return rp_fail(err, RP_ERR_NOMEM, "resize: out of memory for filter weights");
    }
    out->ksize = ksize;

    for (int xx = 0; xx < out_size; xx++) {
        double center = 0.0 + (xx + 0.5) * scale;
        double ww = 0.0;
        double ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5); /* truncation, as Pillow */
        if (xmin < 0)
            xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        double *k = &kk[(size_t)xx * ksize];
        int x;
        for (x = 0; x < xmax; x++) {
            double w = filter((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0)
                k[x] /= ww;
        for (; x < ksize; x++)
            k[x] = 0;
        out->bounds[xx * 2 + 0] = xmin;
        out->bounds[xx * 2 + 1] = xmax;
    }
    /* normalize_coeffs_8bpc: round half away from zero into 22-bit fixed point. */
    for (size_t i = 0; i < (size_t)out_size * (size_t)ksize; i++)
        out->k[i] = kk[i] < 0 ? (int32_t)(-0.5 + kk[i] * (1 << PRECISION_BITS))
                              : (int32_t)(0.5 + kk[i] * (1 << PRECISION_BITS));
    free(kk);
    return RP_OK;
}

/* Pillow's clip8: the sum >> 22 clipped to 0..255 (any negative sum gives 0).
 * The sums fit int32 in Pillow; int64 here only so overflow cannot happen. */
static uint8_t clip8(int64_t ss)
{
    if (ss < 0)
        return 0;
    ss >>= PRECISION_BITS;
    return ss > 255 ? 255 : (uint8_t)ss;
}

/* Rows [row0, row0 + out->height) of in, resampled horizontally into out. */
static void resample_horizontal(rp_image *out, const rp_image *in, int row0, const coeffs *c)
{
    int ch = in->channels;
    for (int yy = 0; yy < out->height; yy++) {
        const uint8_t *src = in->pixels + (size_t)(yy + row0) * in->width * ch;
        uint8_t *dst = out->pixels + (size_t)yy * out->width * ch;
        for (int xx = 0; xx < out->width; xx++) {
            int xmin = c->bounds[xx * 2], xmax = c->bounds[xx * 2 + 1];
            const int32_t *k = &c->k[(size_t)xx * c->ksize];
            for (int b = 0; b < ch; b++) {
                int64_t ss = 1 << (PRECISION_BITS - 1);
                for (int x = 0; x < xmax; x++)
                    ss += (int64_t)src[(size_t)(x + xmin) * ch + b] * k[x];
                dst[(size_t)xx * ch + b] = clip8(ss);
            }
        }
    }
}

/* Vertical pass; bounds are relative to in's first row. */
static void resample_vertical(rp_image *out, const rp_image *in, const coeffs *c, int row_shift)
{
    int ch = in->channels;
    size_t row = (size_t)in->width * ch;
    for (int yy = 0; yy < out->height; yy++) {
        int ymin = c->bounds[yy * 2] - row_shift, ymax = c->bounds[yy * 2 + 1];
        const int32_t *k = &c->k[(size_t)yy * c->ksize];
        uint8_t *dst = out->pixels + (size_t)yy * row;
        for (size_t i = 0; i < row; i++) {
            int64_t ss = 1 << (PRECISION_BITS - 1);
            for (int y = 0; y < ymax; y++)
                ss += (int64_t)in->pixels[(size_t)(y + ymin) * row + i] * k[y];
            dst[i] = clip8(ss);
        }
    }
}

/* ImagingResampleInner for 8-bit images. */
static rp_status resample(const rp_image *in, int out_w, int out_h, rp_interp interp, rp_image *out, rp_error *err)
{
    coeffs hc = {0}, vc = {0};
    rp_image tmp = {0};
    const rp_image *src = in;
    int shift = 0;
    memset(out, 0, sizeof *out);
    bool need_h = out_w != in->width, need_v = out_h != in->height;

    rp_status st = precompute_coeffs(in->height, out_h, interp, &vc, err);
    if (st)
        goto done;
    /* Only rows some output row reads go through the horizontal pass. */
    int first = vc.bounds[0];
    int last = vc.bounds[(out_h - 1) * 2] + vc.bounds[(out_h - 1) * 2 + 1];
    if (need_h) {
        st = precompute_coeffs(in->width, out_w, interp, &hc, err);
        if (!st)
            st = rp_image_alloc_pixels(&tmp, out_w, last - first, in->channels, "resize", err);
        if (st)
            goto done;
        resample_horizontal(&tmp, in, first, &hc);
        src = &tmp;
        shift = first;
    }
    if (need_v) {
        st = rp_image_alloc_pixels(out, src->width, out_h, in->channels, "resize", err);
        if (st)
            goto done;
        resample_vertical(out, src, &vc, shift);
    } else if (need_h) {
        *out = tmp; /* all rows were needed: first = 0, last = height */
        memset(&tmp, 0, sizeof tmp);
    } else {
        st = rp_image_alloc_pixels(out, in->width, in->height, in->channels, "resize", err);
        if (st)
            goto done;
        memcpy(out->pixels, in->pixels, (size_t)in->width * in->height * in->channels);
    }
done:
    coeffs_free(&hc);
    coeffs_free(&vc);
    rp_image_release(&tmp);
    if (st)
        rp_image_release(out);
    return st;
}

/* Pillow's NEAREST resize: an affine scale (Geometry.c ImagingScaleAffine)
 * sampling at pixel centres, with the source position accumulated by repeated
 * addition exactly as Pillow does (the rounding of the sum decides ties).
 * Positions outside the source stay 0, Pillow's fill. */
static rp_status resize_nearest(const rp_image *in, int out_w, int out_h, rp_image *out, rp_error *err)
{
    int *xin = NULL;
    rp_status st = rp_image_alloc_pixels(out, out_w, out_h, in->channels, "resize", err);
    if (st)
        return st;
    xin = malloc((size_t)out_w * sizeof *xin);
    if (!xin) {
        rp_image_release(out);
        return rp_fail(err, RP_ERR_NOMEM, "resize: out of memory");
    }
    double a0 = (double)(float)in->width / out_w, a4 = (double)(float)in->height / out_h;
    double xo = 0.0 + a0 * 0.5, yo = 0.0 + a4 * 0.5;
    for (int x = 0; x < out_w; x++) {
        int xi = xo < 0.0 ? -1 : (int)xo;
        xin[x] = xi < in->width ? xi : -1;
        xo += a0;
    }
    int ch = in->channels;
    for (int y = 0; y < out_h; y++) {
        int yi = yo < 0.0 ? -1 : (int)yo;
        uint8_t *dst = out->pixels + (size_t)y * out_w * ch;
        memset(dst, 0, (size_t)out_w * ch);
        if (yi >= 0 && yi < in->height) {
            const uint8_t *src = in->pixels + (size_t)yi * in->width * ch;
            for (int x = 0; x < out_w; x++)
                if (xin[x] >= 0)
                    memcpy(dst + (size_t)x * ch, src + (size_t)xin[x] * ch, (size_t)ch);
        }
        yo += a4;
    }
    free(xin);
    return RP_OK;
}

/* ---- torchvision transforms ---- */

/* torchvision's Resize size: (h, w) as given, or for Resize(int) the short
 * side becomes `size` and the long side int(size * long / short), Python's
 * true division (correctly rounded double) then truncation. */
static rp_status resized_size(const rp_preprocess *p, int h, int w, int *oh, int *ow, rp_error *err)
{
    if (p->resize > 0) {
        int shorter = w <= h ? w : h, longer = w <= h ? h : w;
        double l = (double)((int64_t)p->resize * longer) / (double)shorter;
        if (l >= (double)INT_MAX)
            return rp_fail(err, RP_ERR_VALUE, "Resize(%d) of a %dx%d image gives a side too long for relprop",
                           p->resize, w, h);
        int nl = (int)l;
        *ow = w <= h ? p->resize : nl;
        *oh = w <= h ? nl : p->resize;
    } else if (p->resize_h > 0) {
        *oh = p->resize_h;
        *ow = p->resize_w;
    } else {
        *oh = h;
        *ow = w;
    }
    return RP_OK;
}

/* torchvision's CenterCrop offset: int(round((size - crop) / 2.0)), Python's
 * round (half to even): 5 / 2 = 2.5 gives 2, 7 / 2 = 3.5 gives 4. */
static int crop_offset(int size, int crop)
{
    int d = size - crop, half = d / 2;
    if (d % 2 == 0)
        return half;
    return half % 2 == 0 ? half : half + 1;
}

static rp_status check_preprocess(const rp_preprocess *p, int channels_out, rp_error *err)
{
    if (!p)
        return rp_fail(err, RP_ERR_ARG, "preprocess: settings are NULL");
    if (channels_out != 1 && channels_out != 3)
        return rp_fail(err, RP_ERR_ARG, "preprocess: channels_out must be 1 or 3, got %d", channels_out);
    if (p->resize < 0 || p->resize_h < 0 || p->resize_w < 0 || p->crop_h < 0 || p->crop_w < 0)
        return rp_fail(err, RP_ERR_ARG, "preprocess: negative size (resize %d, resize_h/w %dx%d, crop %dx%d)",
                       p->resize, p->resize_h, p->resize_w, p->crop_h, p->crop_w);
    if (p->resize > 0 && (p->resize_h || p->resize_w))
        return rp_fail(err, RP_ERR_ARG, "preprocess: set either resize (%d) or resize_h/resize_w (%dx%d), not both",
                       p->resize, p->resize_h, p->resize_w);
    if ((p->resize_h > 0) != (p->resize_w > 0))
        return rp_fail(err, RP_ERR_ARG, "preprocess: resize_h and resize_w must both be set (got %dx%d)",
                       p->resize_h, p->resize_w);
    if ((p->crop_h > 0) != (p->crop_w > 0))
        return rp_fail(err, RP_ERR_ARG, "preprocess: crop_h and crop_w must both be set (got %dx%d)", p->crop_h,
                       p->crop_w);
    if (p->interp != RP_INTERP_BILINEAR && p->interp != RP_INTERP_BICUBIC && p->interp != RP_INTERP_NEAREST)
        return rp_fail(err, RP_ERR_ARG, "preprocess: unknown interpolation %d", (int)p->interp);
    for (int c = 0; c < channels_out; c++)
        if (!isfinite(p->mean[c]) || !isfinite(p->std[c]) || p->std[c] == 0.0f)
            return rp_fail(err, RP_ERR_ARG, "preprocess: channel %d has mean %g, std %g; expected finite, std != 0",
                           c, (double)p->mean[c], (double)p->std[c]);
    return RP_OK;
}

rp_status rp_image_to_tensor(const rp_image *im, const rp_preprocess *p, int channels_out, rp_tensor *out,
                             rp_error *err)
{
    rp_image gray = {0}, sized = {0};
    if (!out)
        return rp_fail(err, RP_ERR_ARG, "preprocess: out is NULL");
    memset(out, 0, sizeof *out);
    if (!image_valid(im))
        return rp_fail(err, RP_ERR_ARG, "preprocess: the image is not 1- or 3-channel with pixels and a size");
    rp_status st = check_preprocess(p, channels_out, err);
    if (st)
        return st;

    /* One output channel: PIL's convert("L") first (torchvision's Grayscale
     * ahead of Resize, or a dataset of L images), ITU-R 601-2 luma in
     * Pillow's 16-bit fixed point (rgb2l: L24). Three output channels from
     * a gray image: resizing L and replicating equals replicating and
     * resizing each band, so the replication waits for the tensor. */
    const rp_image *src = im;
    if (channels_out == 1 && im->channels == 3) {
        st = rp_image_alloc_pixels(&gray, im->width, im->height, 1, "preprocess", err);
        if (st)
            goto fail;
        size_t count = (size_t)im->width * im->height;
        for (size_t i = 0; i < count; i++) {
            const uint8_t *px = im->pixels + i * 3;
            gray.pixels[i] = (uint8_t)(((uint32_t)px[0] * 19595 + (uint32_t)px[1] * 38470 + (uint32_t)px[2] * 7471 +
                                        0x8000) >> 16);
        }
        src = &gray;
    }

    int rh = 0, rw = 0;
    st = resized_size(p, src->height, src->width, &rh, &rw, err);
    if (st)
        goto fail;
    /* torchvision returns the image untouched when it already has the size. */
    if (rh != src->height || rw != src->width) {
        st = p->interp == RP_INTERP_NEAREST ? resize_nearest(src, rw, rh, &sized, err)
                                            : resample(src, rw, rh, p->interp, &sized, err);
        if (st)
            goto fail;
        src = &sized;
    }

    int top = 0, left = 0, oh = src->height, ow = src->width;
    if (p->crop_h > 0) {
        if (p->crop_h > src->height || p->crop_w > src->width) {
            st = rp_fail(err, RP_ERR_SHAPE,
                         "preprocess: CenterCrop %dx%d (h x w) is larger than the %s image %dx%d; padding is not "
                         "supported",
                         p->crop_h, p->crop_w, src == im || src == &gray ? "input" : "resized", src->height,
                         src->width);
            goto fail;
        }
        top = crop_offset(src->height, p->crop_h);
        left = crop_offset(src->width, p->crop_w);
        oh = p->crop_h;
        ow = p->crop_w;
    }

    int64_t dims[4] = {1, channels_out, oh, ow};
    st = rp_tensor_alloc(out, RP_FLOAT, 4, dims, err);
    if (st)
        goto fail;
    /* ToTensor then Normalize, each a float32 operation as torch does it:
     * x = v / 255, then (x - mean) / std. */
    float *dst = out->data;
    int sc = src->channels;
    for (int c = 0; c < channels_out; c++) {
        int b = sc == 1 ? 0 : c;
        float mean = p->mean[c], sd = p->std[c];
        for (int y = 0; y < oh; y++) {
            const uint8_t *row = src->pixels + ((size_t)(y + top) * src->width + left) * sc;
            float *o = dst + ((size_t)c * oh + y) * ow;
            for (int x = 0; x < ow; x++) {
                float v = (float)row[(size_t)x * sc + b] / 255.0f;
                o[x] = (v - mean) / sd;
            }
        }
    }
    rp_image_release(&gray);
    rp_image_release(&sized);
    return RP_OK;
fail:
    rp_image_release(&gray);
    rp_image_release(&sized);
    rp_tensor_release(out);
    return st;
}

/* ---- presets and model metadata ---- */

#define KNOWN_PRESETS "vit, imagenet"

static bool preset_lookup(const char *name, rp_preprocess *out)
{
    memset(out, 0, sizeof *out);
    if (strcmp(name, "vit") == 0) {
        /* The paper's notebook: Resize((224, 224)), Normalize(0.5, 0.5). */
        out->resize_h = out->resize_w = 224;
        out->interp = RP_INTERP_BILINEAR;
        for (int c = 0; c < 3; c++)
            out->mean[c] = out->std[c] = 0.5f;
        return true;
    }
    if (strcmp(name, "imagenet") == 0) {
        /* torchvision's ImageNet evaluation recipe. */
        static const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
        out->resize = 256;
        out->crop_h = out->crop_w = 224;
        out->interp = RP_INTERP_BICUBIC;
        memcpy(out->mean, mean, sizeof mean);
        memcpy(out->std, sd, sizeof sd);
        return true;
    }
    return false;
}

rp_status rp_preprocess_preset(const char *name, rp_preprocess *out, rp_error *err)
{
    if (!out)
        return rp_fail(err, RP_ERR_ARG, "preprocess preset: out is NULL");
    if (!name || !preset_lookup(name, out))
        return rp_fail(err, RP_ERR_ARG, "unknown preprocessing preset '%s' (known: " KNOWN_PRESETS ")",
                       name ? name : "(null)");
    return RP_OK;
}

static const char *skip_space(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* "256" or "224,224" (spaces allowed around numbers): 1 or 2 positive ints. */
static int parse_ints(const char *s, int v[2])
{
    int n = 0;
    for (;;) {
        s = skip_space(s);
        if (*s < '0' || *s > '9' || n == 2)
            return 0;
        errno = 0;
        char *end;
        long x = strtol(s, &end, 10);
        if (errno || x <= 0 || x > 65536)
            return 0;
        v[n++] = (int)x;
        s = skip_space(end);
        if (*s == 0)
            return n;
        if (*s++ != ',')
            return 0;
    }
}

/* "0.485,0.456,0.406" or one value for all channels: finite floats, read as
 * Python reads them (strtod, then to float as torch.as_tensor does). */
static bool parse_floats(const char *s, float v[3], bool nonzero)
{
    int n = 0;
    for (;;) {
        s = skip_space(s);
        if (*s == 0 || n == 3)
            return false;
        errno = 0;
        char *end;
        double x = strtod(s, &end);
        if (end == s || errno || !isfinite(x) || !isfinite((float)x) || (nonzero && (float)x == 0.0f))
            return false;
        v[n++] = (float)x;
        s = skip_space(end);
        if (*s == 0)
            break;
        if (*s++ != ',')
            return false;
    }
    if (n == 2)
        return false;
    if (n == 1)
        v[1] = v[2] = v[0];
    return true;
}

rp_status rp_model_preprocess(const rp_model *m, rp_preprocess *out, bool *found, rp_error *err)
{
    if (!m || !out || !found)
        return rp_fail(err, RP_ERR_ARG, "rp_model_preprocess: NULL argument");
    *found = false;
    const char *path = rp_model_path(m);
    const char *preset = rp_model_metadata(m, "relprop.preset");
    const char *resize = rp_model_metadata(m, "relprop.resize");
    const char *crop = rp_model_metadata(m, "relprop.crop");
    const char *interp = rp_model_metadata(m, "relprop.interpolation");
    const char *mean = rp_model_metadata(m, "relprop.mean");
    const char *sd = rp_model_metadata(m, "relprop.std");
    if (!preset && !resize && !crop && !interp && !mean && !sd)
        return RP_OK;

    /* A preset is the base the other keys override; without one, the
     * defaults are torchvision's: bilinear, no resize, no crop, and no
     * normalisation (mean 0, std 1). */
    rp_preprocess p = {.interp = RP_INTERP_BILINEAR, .std = {1, 1, 1}};
    if (preset && !preset_lookup(preset, &p))
        return rp_fail(err, RP_ERR_VALUE,
                       "%s: metadata relprop.preset='%s' is not a known preset (known: " KNOWN_PRESETS ")", path,
                       preset);
    int v[2];
    if (resize) {
        int n = parse_ints(resize, v);
        if (!n)
            return rp_fail(err, RP_ERR_VALUE, "%s: metadata relprop.resize='%s': expected a size \"256\" or \"h,w\"",
                           path, resize);
        p.resize = n == 1 ? v[0] : 0;
        p.resize_h = n == 2 ? v[0] : 0;
        p.resize_w = n == 2 ? v[1] : 0;
    }
    if (crop) {
        int n = parse_ints(crop, v);
        if (!n)
            return rp_fail(err, RP_ERR_VALUE, "%s: metadata relprop.crop='%s': expected a size \"224\" or \"h,w\"",
                           path, crop);
        p.crop_h = v[0];
        p.crop_w = n == 2 ? v[1] : v[0];
    }
    if (interp) {
        if (strcmp(interp, "bilinear") == 0)
            p.interp = RP_INTERP_BILINEAR;
        else if (strcmp(interp, "bicubic") == 0)
            p.interp = RP_INTERP_BICUBIC;
        else if (strcmp(interp, "nearest") == 0)
            p.interp = RP_INTERP_NEAREST;
        else
            return rp_fail(err, RP_ERR_VALUE,
                           "%s: metadata relprop.interpolation='%s': expected bilinear, bicubic or nearest", path,
                           interp);
    }
    if (mean && !parse_floats(mean, p.mean, false))
        return rp_fail(err, RP_ERR_VALUE, "%s: metadata relprop.mean='%s': expected 3 (or 1) finite numbers \"a,b,c\"",
                       path, mean);
    if (sd && !parse_floats(sd, p.std, true))
        return rp_fail(err, RP_ERR_VALUE,
                       "%s: metadata relprop.std='%s': expected 3 (or 1) finite non-zero numbers \"a,b,c\"", path, sd);

    /* What the metadata says, for messages. */
    char desc[400];
    int dn = 0;
    const char *keys[3] = {"preset", "resize", "crop"}, *vals[3] = {preset, resize, crop};
    for (int i = 0; i < 3; i++)
        if (vals[i] && dn < (int)sizeof desc)
            dn += snprintf(desc + dn, sizeof desc - (size_t)dn, "%srelprop.%s=%s", dn ? " " : "", keys[i], vals[i]);
    if (!dn)
        snprintf(desc, sizeof desc, "(no resize or crop)");

    /* The size every image comes out at must be the model's input size. */
    const rp_tensor *in = rp_model_input_count(m) > 0 ? rp_model_input_info(m, 0) : NULL;
    const char *in_name = in ? rp_model_input_name(m, 0) : "";
    if (!in || in->rank != 4)
        return rp_fail(err, RP_ERR_SHAPE, "%s: metadata %s: the model's first input '%s' is not (N, C, H, W)", path,
                       desc, in_name);
    int64_t H = in->dims[2], W = in->dims[3];
    if (H <= 0 || W <= 0)
        return rp_fail(err, RP_ERR_SHAPE, "%s: metadata %s: the model's input '%s' has no fixed height and width",
                       path, desc, in_name);
    int fh, fw;
    if (p.crop_h > 0) {
        /* Resize(int) makes the short side `resize` and the long side no
         * shorter, so a crop within resize x resize fits every image. */
        int rh = p.resize > 0 ? p.resize : p.resize_h, rw = p.resize > 0 ? p.resize : p.resize_w;
        if (rh > 0 && (p.crop_h > rh || p.crop_w > rw))
            return rp_fail(err, RP_ERR_SHAPE, "%s: metadata %s: crop %dx%d is larger than the resized image %dx%d%s",
                           path, desc, p.crop_h, p.crop_w, rh, rw, p.resize > 0 ? " (short side)" : "");
        fh = p.crop_h;
        fw = p.crop_w;
    } else if (p.resize_h > 0) {
        fh = p.resize_h;
        fw = p.resize_w;
    } else {
        return rp_fail(err, RP_ERR_SHAPE,
                       "%s: metadata %s gives images whose size depends on the photo, but the model's input '%s' "
                       "needs %lldx%lld; add relprop.crop or relprop.resize=h,w",
                       path, desc, in_name, (long long)H, (long long)W);
    }
    if (fh != H || fw != W)
        return rp_fail(err, RP_ERR_SHAPE,
                       "%s: metadata %s gives %dx%d (h x w) images but the model's input '%s' needs %lldx%lld", path,
                       desc, fh, fw, in_name, (long long)H, (long long)W);
    *out = p;
    *found = true;
    return RP_OK;
}
