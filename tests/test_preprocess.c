/* Images in (src/image/preprocess.c): decoding, PIL-exact resizing and the
 * torchvision transforms, presets, model metadata, PNG writing.
 *
 * Fixtures: tests/data/preprocess/, made by tools/make_preprocess_fixtures.py
 * with Debian 12's Pillow 9.4 and torchvision 0.14. manifest.json lists, per
 * case, an image, the transform settings and the tensor torchvision produced
 * (PIL path: convert("RGB"), [Grayscale], Resize, CenterCrop, ToTensor,
 * Normalize). relprop must match it to one uint8 step (in practice exactly),
 * the JPEG case included (both decode with libjpeg-turbo). Temporary files go to a fresh mkdtemp folder. */
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700 /* mkdtemp */
#endif
#include <check.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "relprop/relprop.h"

#ifndef RELPROP_SOURCE_DIR
#define RELPROP_SOURCE_DIR "."
#endif
#define PRE_DIR RELPROP_SOURCE_DIR "/tests/data/preprocess"

/* ---- helpers ---- */

static const char *fixture(const char *name)
{
    static char bufs[4][512];
    static int k;
    char *b = bufs[k++ % 4];
    snprintf(b, sizeof bufs[0], "%s/%s", PRE_DIR, name);
    return b;
}

static char tmpdir[256];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/relprop_test_preprocess.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static const char *tmp_path(const char *name)
{
    static char bufs[4][512];
    static int k;
    char *b = bufs[k++ % 4];
    snprintf(b, sizeof bufs[0], "%s/%s", tmpdir, name);
    return b;
}

/* Remove tmpdir, one level of subfolders included. */
static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[768];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (unlink(p) != 0)
            rmdir(p);
    }
    closedir(d);
    rmdir(dir);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Names in tmpdir other than . and .., sorted, each followed by a space. */
static const char *dir_listing(void)
{
    static char buf[2048];
    char *names[64];
    int n = 0;
    buf[0] = 0;
    DIR *d = opendir(tmpdir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 64)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    for (int i = 0; i < n; i++) {
        strncat(buf, names[i], sizeof buf - strlen(buf) - 2);
        strcat(buf, " ");
        free(names[i]);
    }
    return buf;
}

static bool file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

static cJSON *read_json(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(fread(s, 1, (size_t)n, f), n);
    s[n] = 0;
    fclose(f);
    cJSON *j = cJSON_Parse(s);
    free(s);
    ck_assert_msg(j != NULL, "%s is not JSON", path);
    return j;
}

static int json_int(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    ck_assert_msg(cJSON_IsNumber(v), "manifest: '%s' missing", k);
    return v->valueint;
}

static const char *json_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int json_floats(const cJSON *o, const char *k, float *out, int cap)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, k), *v;
    int n = 0;
    ck_assert(cJSON_IsArray(a));
    cJSON_ArrayForEach(v, a)
    {
        ck_assert(n < cap);
        out[n++] = (float)v->valuedouble; /* Python float -> float32, as torch.as_tensor */
    }
    return n;
}

static rp_interp interp_of(const char *s)
{
    if (strcmp(s, "bicubic") == 0)
        return RP_INTERP_BICUBIC;
    if (strcmp(s, "nearest") == 0)
        return RP_INTERP_NEAREST;
    ck_assert_str_eq(s, "bilinear");
    return RP_INTERP_BILINEAR;
}

static void expect_load_error(const char *path, rp_status code, const char *needle)
{
    rp_image im;
    memset(&im, 0xab, sizeof im);
    rp_error err = {0};
    rp_status st = rp_image_load(path, &im, &err);
    ck_assert_msg(st == code, "%s: expected %s, got %s: %s", path, rp_status_name(code), rp_status_name(st), err.msg);
    ck_assert_msg(strstr(err.msg, path) != NULL, "message does not name the file: %s", err.msg);
    if (needle)
        ck_assert_msg(strstr(err.msg, needle) != NULL, "message lacks '%s': %s", needle, err.msg);
    ck_assert_ptr_null(im.pixels);
    ck_assert_int_eq(im.width, 0);
}

/* ---- the fixtures against torchvision ---- */

START_TEST(test_torchvision_fixtures)
{
    cJSON *man = read_json(fixture("manifest.json"));
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(man, "cases"), *c;
    ck_assert(cJSON_IsArray(cases));
    int n = 0, failed = 0;
    printf("%-22s %-26s %-15s %12s %9s %8s\n", "case", "image", "shape", "max|diff|", "u8 steps", "differ");
    cJSON_ArrayForEach(c, cases)
    {
        const char *name = json_str(c, "name"), *image = json_str(c, "image"), *preset = json_str(c, "preset");
        rp_preprocess p;
        memset(&p, 0, sizeof p);
        p.resize = json_int(c, "resize");
        p.resize_h = json_int(c, "resize_h");
        p.resize_w = json_int(c, "resize_w");
        p.crop_h = json_int(c, "crop_h");
        p.crop_w = json_int(c, "crop_w");
        p.interp = interp_of(json_str(c, "interpolation"));
        int channels = json_int(c, "channels");
        ck_assert_int_eq(json_floats(c, "mean", p.mean, 3), channels);
        ck_assert_int_eq(json_floats(c, "std", p.std, 3), channels);
        int tol = json_int(c, "tolerance_steps");
        rp_error err = {0};
        if (preset) {
            /* The preset must be exactly what the fixture script spelled out. */
            rp_preprocess q;
            ck_assert_int_eq(rp_preprocess_preset(preset, &q, &err), RP_OK);
            ck_assert_int_eq(q.resize, p.resize);
            ck_assert_int_eq(q.resize_h, p.resize_h);
            ck_assert_int_eq(q.resize_w, p.resize_w);
            ck_assert_int_eq(q.crop_h, p.crop_h);
            ck_assert_int_eq(q.crop_w, p.crop_w);
            ck_assert_int_eq(q.interp, p.interp);
            for (int k = 0; k < 3; k++) {
                ck_assert_float_eq(q.mean[k], p.mean[k]);
                ck_assert_float_eq(q.std[k], p.std[k]);
            }
            p = q;
        }

        rp_image im;
        rp_tensor got = {0}, want = {0};
        ck_assert_msg(rp_image_load(fixture(image), &im, &err) == RP_OK, "%s: %s", name, err.msg);
        ck_assert_int_eq(im.channels, 3);
        ck_assert_msg(rp_image_to_tensor(&im, &p, channels, &got, &err) == RP_OK, "%s: %s", name, err.msg);
        ck_assert_msg(rp_npy_read(fixture(json_str(c, "expected")), &want, &err) == RP_OK, "%s", err.msg);
        ck_assert_int_eq(got.dtype, RP_FLOAT);
        ck_assert_int_eq(got.rank, 4);
        ck_assert_int_eq(want.rank, 4);
        for (int d = 0; d < 4; d++)
            ck_assert_msg(got.dims[d] == want.dims[d], "%s: dim %d is %lld, torchvision %lld", name, d,
                          (long long)got.dims[d], (long long)want.dims[d]);
        const float *g = got.data, *w = want.data;
        int64_t plane = got.dims[2] * got.dims[3], differ = 0;
        double worst = 0, worst_steps = 0;
        for (int64_t i = 0; i < got.count; i++) {
            double d = fabs((double)g[i] - (double)w[i]);
            /* In uint8 steps: normalised values are (v/255 - mean) / std. */
            double steps = d * 255.0 * p.std[i / plane];
            worst = d > worst ? d : worst;
            worst_steps = steps > worst_steps ? steps : worst_steps;
            differ += d != 0;
        }
        char shape[32];
        snprintf(shape, sizeof shape, "%lldx%lldx%lld", (long long)got.dims[1], (long long)got.dims[2],
                 (long long)got.dims[3]);
        printf("%-22s %-26s %-15s %12.3g %9.3f %8lld%s\n", name, image, shape, worst, worst_steps, (long long)differ,
               worst_steps > tol + 1e-3 ? "  FAIL" : "");
        failed += worst_steps > tol + 1e-3;
        n++;
        rp_tensor_release(&got);
        rp_tensor_release(&want);
        rp_image_release(&im);
    }
    fflush(stdout);
    cJSON_Delete(man);
    ck_assert_int_ge(n, 20);
    ck_assert_msg(failed == 0, "%d of %d cases differ from torchvision by more than their tolerance", failed, n);
}
END_TEST

/* The JPEG fixture decodes to PIL's pixels exactly (photo_97x131_pil.png is
 * PIL's decode of photo_97x131.jpg). */
START_TEST(test_jpeg_decodes_as_pil)
{
    rp_image a, b;
    rp_error err;
    ck_assert_msg(rp_image_load(fixture("photo_97x131.jpg"), &a, &err) == RP_OK, "%s", err.msg);
    ck_assert_msg(rp_image_load(fixture("photo_97x131_pil.png"), &b, &err) == RP_OK, "%s", err.msg);
    ck_assert_int_eq(a.width, 97);
    ck_assert_int_eq(a.height, 131);
    ck_assert_int_eq(b.width, a.width);
    ck_assert_int_eq(b.height, a.height);
    size_t n = (size_t)a.width * a.height * 3, differ = 0;
    int worst = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a.pixels[i] - (int)b.pixels[i]);
        worst = d > worst ? d : worst;
        differ += d != 0;
    }
    ck_assert_msg(worst == 0, "JPEG decode vs PIL: max %d levels, %zu of %zu samples differ", worst, differ, n);
    rp_image_release(&a);
    rp_image_release(&b);
}
END_TEST

/* ---- decoding errors ---- */

START_TEST(test_load_errors)
{
    expect_load_error(fixture("no_such_image.png"), RP_ERR_IO, "No such file");
    expect_load_error(fixture("bad_text.png"), RP_ERR_FORMAT, "not an image");
    expect_load_error(fixture("bad_truncated.png"), RP_ERR_FORMAT, "PNG");
    expect_load_error(fixture("bad_truncated.jpg"), RP_ERR_FORMAT, "truncated JPEG");
    expect_load_error(fixture("bad_truncated.bmp"), RP_ERR_FORMAT, "truncated BMP");
    expect_load_error(fixture("bad_truncated.ppm"), RP_ERR_FORMAT, "truncated PPM");
    expect_load_error(fixture("bad_zero_width.png"), RP_ERR_FORMAT, "zero-size");
    expect_load_error(fixture("bad_zero.ppm"), RP_ERR_FORMAT, "zero-size");
    expect_load_error(fixture("bad_maxval0.pgm"), RP_ERR_FORMAT, "maxval");
    expect_load_error(fixture("bad_plain.ppm"), RP_ERR_UNSUPPORTED, "P3");
    expect_load_error(fixture("bad_gif.gif"), RP_ERR_UNSUPPORTED, "GIF");
    expect_load_error(PRE_DIR, RP_ERR_IO, NULL); /* a folder */

    make_tmpdir();
    FILE *f = fopen(tmp_path("empty.png"), "wb");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    expect_load_error(tmp_path("empty.png"), RP_ERR_FORMAT, "empty");
    remove_tree(tmpdir);

    rp_error err;
    rp_image im;
    ck_assert_int_eq(rp_image_load(NULL, &im, &err), RP_ERR_ARG);
    ck_assert_int_eq(rp_image_load(fixture("rgb_50x40.ppm"), NULL, &err), RP_ERR_ARG);
    /* errors may be ignored */
    ck_assert_int_eq(rp_image_load(fixture("bad_text.png"), &im, NULL), RP_ERR_FORMAT);
    rp_image_release(&im);
    rp_image_release(NULL);
}
END_TEST

/* ---- transform settings and their errors ---- */

static rp_image small_image(int w, int h, int c)
{
    rp_image im = {w, h, c, malloc((size_t)w * h * c)};
    ck_assert_ptr_nonnull(im.pixels);
    for (int i = 0; i < w * h * c; i++)
        im.pixels[i] = (uint8_t)(i * 37 + i / 7);
    return im;
}

static rp_preprocess plain(void)
{
    rp_preprocess p;
    memset(&p, 0, sizeof p);
    for (int c = 0; c < 3; c++)
        p.std[c] = 1;
    return p;
}

static void expect_tensor_error(const rp_image *im, const rp_preprocess *p, int ch, rp_status code,
                                const char *needle)
{
    rp_tensor t;
    memset(&t, 0xab, sizeof t);
    rp_error err = {0};
    rp_status st = rp_image_to_tensor(im, p, ch, &t, &err);
    ck_assert_msg(st == code, "expected %s, got %s: %s", rp_status_name(code), rp_status_name(st), err.msg);
    ck_assert_msg(strstr(err.msg, needle) != NULL, "message lacks '%s': %s", needle, err.msg);
    ck_assert_ptr_null(t.data);
}

START_TEST(test_transform_errors)
{
    rp_image im = small_image(50, 40, 3);
    rp_preprocess p = plain();
    p.crop_h = 41;
    p.crop_w = 30;
    expect_tensor_error(&im, &p, 3, RP_ERR_SHAPE, "larger than the input image 40x50");
    p = plain();
    p.resize = 32; /* short side 40 -> 32: 32x40 (h x w) */
    p.crop_h = p.crop_w = 33;
    expect_tensor_error(&im, &p, 3, RP_ERR_SHAPE, "larger than the resized image 32x40");
    p = plain();
    expect_tensor_error(&im, &p, 2, RP_ERR_ARG, "channels_out");
    p.std[1] = 0;
    expect_tensor_error(&im, &p, 3, RP_ERR_ARG, "std");
    p = plain();
    p.mean[0] = NAN;
    expect_tensor_error(&im, &p, 1, RP_ERR_ARG, "mean");
    p = plain();
    p.resize = 10;
    p.resize_h = p.resize_w = 10;
    expect_tensor_error(&im, &p, 3, RP_ERR_ARG, "not both");
    p = plain();
    p.resize_h = 10;
    expect_tensor_error(&im, &p, 3, RP_ERR_ARG, "both be set");
    p = plain();
    p.crop_w = 10;
    expect_tensor_error(&im, &p, 3, RP_ERR_ARG, "both be set");
    p = plain();
    p.resize = -1;
    expect_tensor_error(&im, &p, 3, RP_ERR_ARG, "negative");
    p = plain();
    p.interp = (rp_interp)7;
    expect_tensor_error(&im, &p, 3, RP_ERR_ARG, "interpolation");
    p = plain();
    expect_tensor_error(&im, NULL, 3, RP_ERR_ARG, "NULL");
    rp_image bad = im;
    bad.channels = 4;
    expect_tensor_error(&bad, &p, 3, RP_ERR_ARG, "channel");
    bad = im;
    bad.pixels = NULL;
    expect_tensor_error(&bad, &p, 3, RP_ERR_ARG, "pixels");
    rp_image_release(&im);
}
END_TEST

/* Resize to the image's own size is torchvision's no-op; a gray image gives
 * three equal channels; one channel of a gray image is the image. */
START_TEST(test_transform_identities)
{
    rp_image rgb = small_image(23, 17, 3), gray = small_image(23, 17, 1);
    rp_error err;
    rp_tensor a = {0}, b = {0}, c = {0};
    rp_preprocess p = plain();
    ck_assert_int_eq(rp_image_to_tensor(&rgb, &p, 3, &a, &err), RP_OK);
    p.resize_h = 17;
    p.resize_w = 23;
    p.interp = RP_INTERP_BICUBIC;
    ck_assert_int_eq(rp_image_to_tensor(&rgb, &p, 3, &b, &err), RP_OK);
    ck_assert_int_eq(a.count, 3 * 17 * 23);
    ck_assert_mem_eq(a.data, b.data, (size_t)a.count * sizeof(float));
    for (int64_t i = 0; i < a.count; i++)
        ck_assert_float_eq(((float *)a.data)[i], (float)rgb.pixels[(i % (17 * 23)) * 3 + i / (17 * 23)] / 255.0f);
    rp_tensor_release(&a);
    rp_tensor_release(&b);

    p = plain();
    p.resize_h = 31;
    p.resize_w = 12;
    ck_assert_int_eq(rp_image_to_tensor(&gray, &p, 3, &a, &err), RP_OK);
    ck_assert_int_eq(rp_image_to_tensor(&gray, &p, 1, &c, &err), RP_OK);
    ck_assert_int_eq(a.dims[1], 3);
    ck_assert_int_eq(c.dims[1], 1);
    size_t plane = 31 * 12 * sizeof(float);
    ck_assert_mem_eq(a.data, c.data, plane);
    ck_assert_mem_eq((char *)a.data + plane, c.data, plane);
    ck_assert_mem_eq((char *)a.data + 2 * plane, c.data, plane);
    rp_tensor_release(&a);
    rp_tensor_release(&c);

    /* Resize(int) keeps the aspect ratio with torchvision's truncation:
     * 23x17 (w x h), short side 17 -> 9: long = int(9 * 23 / 17) = 12. */
    p = plain();
    p.resize = 9;
    ck_assert_int_eq(rp_image_to_tensor(&rgb, &p, 3, &a, &err), RP_OK);
    ck_assert_int_eq(a.dims[2], 9);
    ck_assert_int_eq(a.dims[3], 12);
    rp_tensor_release(&a);
    rp_image_release(&rgb);
    rp_image_release(&gray);
}
END_TEST

START_TEST(test_presets)
{
    rp_preprocess p;
    rp_error err;
    ck_assert_int_eq(rp_preprocess_preset("vit", &p, &err), RP_OK);
    ck_assert_int_eq(p.resize, 0);
    ck_assert_int_eq(p.resize_h, 224);
    ck_assert_int_eq(p.resize_w, 224);
    ck_assert_int_eq(p.crop_h, 0);
    ck_assert_int_eq(p.interp, RP_INTERP_BILINEAR);
    ck_assert_float_eq(p.mean[2], 0.5f);
    ck_assert_float_eq(p.std[0], 0.5f);
    ck_assert_int_eq(rp_preprocess_preset("imagenet", &p, &err), RP_OK);
    ck_assert_int_eq(p.resize, 256);
    ck_assert_int_eq(p.crop_h, 224);
    ck_assert_int_eq(p.crop_w, 224);
    ck_assert_int_eq(p.interp, RP_INTERP_BICUBIC);
    ck_assert_float_eq(p.mean[0], 0.485f);
    ck_assert_float_eq(p.std[2], 0.225f);
    ck_assert_int_eq(rp_preprocess_preset("resnet", &p, &err), RP_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "'resnet'") && strstr(err.msg, "vit, imagenet"), "%s", err.msg);
    ck_assert_int_eq(rp_preprocess_preset(NULL, &p, &err), RP_ERR_ARG);
    ck_assert_int_eq(rp_preprocess_preset("vit", NULL, &err), RP_ERR_ARG);
}
END_TEST

/* ---- model metadata ---- */

static rp_model *open_meta(const char *name)
{
    rp_model *m = NULL;
    rp_error err;
    ck_assert_msg(rp_model_open(fixture(name), &m, &err) == RP_OK, "%s", err.msg);
    return m;
}

static rp_preprocess meta_ok(const char *name)
{
    rp_model *m = open_meta(name);
    rp_preprocess p;
    bool found = false;
    rp_error err;
    ck_assert_msg(rp_model_preprocess(m, &p, &found, &err) == RP_OK, "%s: %s", name, err.msg);
    ck_assert(found);
    rp_model_free(m);
    return p;
}

static void meta_error(const char *name, rp_status code, const char *needle1, const char *needle2)
{
    rp_model *m = open_meta(name);
    rp_preprocess p;
    memset(&p, 0x5a, sizeof p);
    rp_preprocess before = p;
    bool found = true;
    rp_error err = {0};
    rp_status st = rp_model_preprocess(m, &p, &found, &err);
    ck_assert_msg(st == code, "%s: expected %s, got %s: %s", name, rp_status_name(code), rp_status_name(st), err.msg);
    ck_assert(!found);
    ck_assert_mem_eq(&p, &before, sizeof p);
    ck_assert_msg(strstr(err.msg, name) != NULL, "message does not name the model: %s", err.msg);
    ck_assert_msg(strstr(err.msg, needle1) != NULL, "message lacks '%s': %s", needle1, err.msg);
    if (needle2)
        ck_assert_msg(strstr(err.msg, needle2) != NULL, "message lacks '%s': %s", needle2, err.msg);
    rp_model_free(m);
}

START_TEST(test_model_metadata)
{
    /* No relprop.* key: not found, settings untouched. */
    rp_model *m = open_meta("meta_none.onnx");
    rp_preprocess p, q;
    ck_assert_int_eq(rp_preprocess_preset("vit", &p, NULL), RP_OK);
    q = p;
    bool found = true;
    rp_error err;
    ck_assert_int_eq(rp_model_preprocess(m, &p, &found, &err), RP_OK);
    ck_assert(!found);
    ck_assert_mem_eq(&p, &q, sizeof p);
    ck_assert_str_eq(rp_model_metadata(m, "author"), "relprop tests");
    rp_model_free(m);

    p = meta_ok("meta_imagenet.onnx");
    ck_assert_int_eq(rp_preprocess_preset("imagenet", &q, NULL), RP_OK);
    ck_assert_mem_eq(&p, &q, sizeof p);

    p = meta_ok("meta_custom.onnx");
    ck_assert_int_eq(p.resize, 72);
    ck_assert_int_eq(p.resize_h, 0);
    ck_assert_int_eq(p.crop_h, 64);
    ck_assert_int_eq(p.crop_w, 64);
    ck_assert_int_eq(p.interp, RP_INTERP_BICUBIC);
    ck_assert_float_eq(p.mean[0], 0.5f);
    ck_assert_float_eq(p.mean[1], 0.4f);
    ck_assert_float_eq(p.mean[2], 0.3f);
    ck_assert_float_eq(p.std[0], 0.2f);
    ck_assert_float_eq(p.std[1], 0.25f);
    ck_assert_float_eq(p.std[2], 0.3f);
    /* ... and it does make 64x64 inputs. */
    rp_image im;
    rp_tensor t = {0};
    ck_assert_int_eq(rp_image_load(fixture("rgb_300x200.png"), &im, &err), RP_OK);
    ck_assert_msg(rp_image_to_tensor(&im, &p, 3, &t, &err) == RP_OK, "%s", err.msg);
    ck_assert_int_eq(t.dims[2], 64);
    ck_assert_int_eq(t.dims[3], 64);
    rp_tensor_release(&t);
    rp_image_release(&im);

    p = meta_ok("meta_hw.onnx"); /* symbolic batch, (h, w) resize, one mean for all */
    ck_assert_int_eq(p.resize, 0);
    ck_assert_int_eq(p.resize_h, 64);
    ck_assert_int_eq(p.resize_w, 48);
    ck_assert_int_eq(p.interp, RP_INTERP_NEAREST);
    for (int c = 0; c < 3; c++) {
        ck_assert_float_eq(p.mean[c], 0.2860f);
        ck_assert_float_eq(p.std[c], 0.3530f);
    }

    p = meta_ok("meta_preset_override.onnx");
    ck_assert_int_eq(p.resize_h, 224);
    ck_assert_int_eq(p.interp, RP_INTERP_BILINEAR);
    ck_assert_float_eq(p.mean[1], 0.0f);
    ck_assert_float_eq(p.std[1], 1.0f);

    meta_error("meta_bad_size.onnx", RP_ERR_SHAPE, "relprop.preset=vit", "224x224 (h x w) images but the model's "
                                                                         "input 'x' needs 64x64");
    meta_error("meta_bad_crop_size.onnx", RP_ERR_SHAPE, "relprop.resize=80 relprop.crop=70,64", "needs 64x64");
    meta_error("meta_bad_no_crop.onnx", RP_ERR_SHAPE, "depends on the photo", "64x64");
    meta_error("meta_bad_crop_gt_resize.onnx", RP_ERR_SHAPE, "crop 64x64 is larger", NULL);
    meta_error("meta_bad_interp.onnx", RP_ERR_VALUE, "relprop.interpolation='lanczos'", NULL);
    meta_error("meta_bad_resize.onnx", RP_ERR_VALUE, "relprop.resize='64x64'", NULL);
    meta_error("meta_bad_crop.onnx", RP_ERR_VALUE, "relprop.crop='-64'", NULL);
    meta_error("meta_bad_mean.onnx", RP_ERR_VALUE, "relprop.mean='0.5,0.5'", NULL);
    meta_error("meta_bad_std.onnx", RP_ERR_VALUE, "relprop.std='0.5,0,0.5'", NULL);
    meta_error("meta_bad_preset.onnx", RP_ERR_VALUE, "relprop.preset='resnet'", "vit, imagenet");
    meta_error("meta_symbolic.onnx", RP_ERR_SHAPE, "no fixed height and width", NULL);

    /* The same answer once the model is prepared. */
    ck_assert_msg(rp_model_load(fixture("meta_custom.onnx"), &m, &err) == RP_OK, "%s", err.msg);
    ck_assert_int_eq(rp_model_preprocess(m, &q, &found, &err), RP_OK);
    ck_assert(found);
    p = meta_ok("meta_custom.onnx");
    ck_assert_mem_eq(&p, &q, sizeof p);
    rp_model_free(m);
}
END_TEST

/* rp_model_default_preprocess, what the CLI and the Python package use with
 * no options: the metadata if any, else a bilinear resize to the model's
 * input with mean = std = 0.5; errors in the metadata are passed on. */
START_TEST(test_default_preprocess)
{
    rp_model *m = NULL;
    rp_error err = {0};
    rp_preprocess p, q;
    const char *source = NULL;
    bool found = false;
    ck_assert_msg(rp_model_load(fixture("meta_none.onnx"), &m, &err) == RP_OK, "%s", err.msg);
    ck_assert_msg(rp_model_default_preprocess(m, &p, &source, &err) == RP_OK, "%s", err.msg);
    const rp_tensor *x = rp_model_input_info(m, 0);
    ck_assert_int_eq(x->rank, 4);
    ck_assert_int_eq(p.resize, 0);
    ck_assert_int_eq(p.resize_h, (int)x->dims[2]);
    ck_assert_int_eq(p.resize_w, (int)x->dims[3]);
    ck_assert_int_eq(p.crop_h, 0);
    ck_assert_int_eq(p.interp, RP_INTERP_BILINEAR);
    for (int c = 0; c < 3; c++) {
        ck_assert_float_eq(p.mean[c], 0.5f);
        ck_assert_float_eq(p.std[c], 0.5f);
    }
    ck_assert_msg(source && strstr(source, "default"), "source: %s", source ? source : "NULL");
    ck_assert_int_eq(rp_model_default_preprocess(m, &p, NULL, &err), RP_OK); /* source may be NULL */
    rp_model_free(m);

    ck_assert_msg(rp_model_load(fixture("meta_custom.onnx"), &m, &err) == RP_OK, "%s", err.msg);
    ck_assert_int_eq(rp_model_default_preprocess(m, &p, &source, &err), RP_OK);
    ck_assert_int_eq(rp_model_preprocess(m, &q, &found, &err), RP_OK);
    ck_assert(found);
    ck_assert_mem_eq(&p, &q, sizeof p);
    ck_assert_str_eq(source, "model metadata");
    rp_model_free(m);

    m = open_meta("meta_bad_interp.onnx");
    ck_assert_int_eq(rp_model_default_preprocess(m, &p, &source, &err), RP_ERR_VALUE);
    ck_assert_msg(strstr(err.msg, "lanczos") != NULL, "%s", err.msg);
    rp_model_free(m);
}
END_TEST

/* ---- writing PNG ---- */

START_TEST(test_write_png)
{
    make_tmpdir();
    rp_error err;
    rp_image a, b;
    ck_assert_int_eq(rp_image_load(fixture("rgb_300x200.png"), &a, &err), RP_OK);
    ck_assert_msg(rp_image_write_png(tmp_path("out.png"), &a, &err) == RP_OK, "%s", err.msg);
    ck_assert_msg(rp_image_load(tmp_path("out.png"), &b, &err) == RP_OK, "%s", err.msg);
    ck_assert_int_eq(b.width, 300);
    ck_assert_int_eq(b.height, 200);
    ck_assert_mem_eq(a.pixels, b.pixels, 300 * 200 * 3);
    rp_image_release(&b);

    /* Overwrites in place; gray comes back as three equal channels. */
    rp_image g = small_image(7, 5, 1);
    ck_assert_int_eq(rp_image_write_png(tmp_path("out.png"), &g, &err), RP_OK);
    ck_assert_int_eq(rp_image_load(tmp_path("out.png"), &b, &err), RP_OK);
    ck_assert_int_eq(b.width, 7);
    ck_assert_int_eq(b.height, 5);
    for (int i = 0; i < 35; i++)
        for (int c = 0; c < 3; c++)
            ck_assert_int_eq(b.pixels[i * 3 + c], g.pixels[i]);
    rp_image_release(&b);
    ck_assert_str_eq(dir_listing(), "out.png ");

    /* Folder missing: an I/O error, nothing created. */
    const char *missing = tmp_path("no/such/dir.png");
    ck_assert_int_eq(rp_image_write_png(missing, &a, &err), RP_ERR_IO);
    ck_assert_msg(strstr(err.msg, missing) != NULL, "%s", err.msg);
    ck_assert(!file_exists(missing));
    /* The target is a folder: only regular files are replaced, so it is
     * refused and no temporary file is left. */
    ck_assert_int_eq(mkdir(tmp_path("adir"), 0755), 0);
    ck_assert_int_eq(rp_image_write_png(tmp_path("adir"), &a, &err), RP_ERR_IO);
    ck_assert_msg(strstr(err.msg, "is a directory") != NULL, "%s", err.msg);
    ck_assert_str_eq(dir_listing(), "adir out.png ");
    /* Not an image: refused before anything is created. */
    rp_image bad = a;
    bad.channels = 2;
    ck_assert_int_eq(rp_image_write_png(tmp_path("bad.png"), &bad, &err), RP_ERR_ARG);
    ck_assert(!file_exists(tmp_path("bad.png")));

    rp_image_release(&a);
    rp_image_release(&g);
    remove_tree(tmpdir);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("preprocess");
    TCase *tc = tcase_create("fixtures");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_torchvision_fixtures);
    tcase_add_test(tc, test_jpeg_decodes_as_pil);
    suite_add_tcase(s, tc);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, test_load_errors);
    tcase_add_test(te, test_transform_errors);
    tcase_add_test(te, test_transform_identities);
    tcase_add_test(te, test_presets);
    tcase_add_test(te, test_model_metadata);
    tcase_add_test(te, test_default_preprocess);
    tcase_add_test(te, test_write_png);
    suite_add_tcase(s, te);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
