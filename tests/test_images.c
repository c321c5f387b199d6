/* PNG and BMP decoding (src/image/png.c, src/image/bmp.c).
 *
 * tests/data/images/ (tools/make_image_fixtures.py) holds PNGs and BMPs of
 * every layout the readers take — palettes of every depth with pixel
 * indices beyond the palette (stb_image made images of uninitialised memory
 * of these), Adam7, 16-bit, alpha, gray at 1-16 bits, every BMP header and
 * bitfield layout Pillow reads — each of which must load with exactly the
 * pixels of Pillow's Image.open(f).convert("RGB") (pil/<name>.ppm), and
 * files that must be refused, with their status and message. Under valgrind
 * (tests/valgrind.sh) this is also the proof that no pixel comes from
 * uninitialised memory: valgrind sees inside Debian's libpng, which ASan
 * does not instrument. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <valgrind/valgrind.h>

#include "core/error.h"
#include "image/decode.h"
#include "relprop/relprop.h"
#include "support/slurp.h"

#ifndef RELPROP_SOURCE_DIR
#define RELPROP_SOURCE_DIR "."
#endif
#define IMG_DIR RELPROP_SOURCE_DIR "/tests/data/images"


static rp_status status_of(const char *name)
{
    static const rp_status all[] = {RP_ERR_IO, RP_ERR_FORMAT, RP_ERR_UNSUPPORTED, RP_ERR_VALUE, RP_ERR_NOMEM};
    static const char *names[] = {"RP_ERR_IO", "RP_ERR_FORMAT", "RP_ERR_UNSUPPORTED", "RP_ERR_VALUE", "RP_ERR_NOMEM"};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(name, names[i]) == 0)
            return all[i];
    ck_abort_msg("MANIFEST.tsv: unknown status %s", name);
    return RP_OK;
}

/* Samples of a that differ from b (same size asserted). */
static size_t differing(const rp_image *a, const rp_image *b)
{
    ck_assert_int_eq(a->width, b->width);
    ck_assert_int_eq(a->height, b->height);
    ck_assert_int_eq(a->channels, 3);
    ck_assert_int_eq(b->channels, 3);
    size_t n = (size_t)a->width * a->height * 3, d = 0;
    for (size_t i = 0; i < n; i++)
        d += a->pixels[i] != b->pixels[i];
    return d;
}

START_TEST(test_files_decode_as_pillow)
{
    test_buf man = test_slurp(IMG_DIR "/MANIFEST.tsv");
    man.b[man.n] = 0;
    int ok = 0, refused = 0, png = 0, bmp = 0;
    char *save = NULL;
    for (char *line = strtok_r((char *)man.b, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#')
            continue;
        char name[128], expect[64], needle[160];
        ck_assert_int_eq(sscanf(line, "%127[^\t]\t%63[^\t]\t%159[^\t]", name, expect, needle), 3);
        char path[512], ref_path[512];
        snprintf(path, sizeof path, "%s/%s", IMG_DIR, name);
        png += strstr(name, ".png") != NULL;
        bmp += strstr(name, ".bmp") != NULL;
        rp_error err;
        memset(&err, 0, sizeof err);
        rp_image im, again, ref;
        rp_status st = rp_image_load(path, &im, &err);
        if (strcmp(expect, "ok") != 0) {
            ck_assert_msg(st == status_of(expect), "%s: status %s, expected %s (%s)", name, rp_status_name(st),
                          expect, err.msg);
            ck_assert_msg(strstr(err.msg, path) == err.msg, "%s: message does not name the file: %s", name, err.msg);
            ck_assert_msg(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", name, err.msg, needle);
            ck_assert_ptr_null(im.pixels);
            refused++;
            continue;
        }
        ck_assert_msg(st == RP_OK, "%s: %s", name, err.msg);
        snprintf(ref_path, sizeof ref_path, "%s/pil/%s.ppm", IMG_DIR, name);
        ck_assert_msg(rp_image_load(ref_path, &ref, &err) == RP_OK, "%s", err.msg);
        size_t d = differing(&im, &ref);
        ck_assert_msg(d == 0, "%s: %zu samples differ from Pillow's", name, d);
        /* The same file twice, the same pixels (stb gave three maps in
         * three runs for the out-of-range palettes). */
        ck_assert_msg(rp_image_load(path, &again, &err) == RP_OK, "%s: %s", name, err.msg);
        ck_assert_int_eq(differing(&im, &again), 0);
        rp_image_release(&again);
        rp_image_release(&ref);
        rp_image_release(&im);
        ok++;
    }
    free(man.b);
    ck_assert_int_ge(ok, 35);
    ck_assert_int_ge(refused, 12);
    ck_assert_int_ge(png, 20);
    ck_assert_int_ge(bmp, 20);
}
END_TEST

/* Offset just past the last IDAT chunk (its CRC included). */
static size_t end_of_idat(const test_buf *f)
{
    size_t p = 8, end = 0;
    while (p + 12 <= f->n) {
        size_t len = (size_t)f->b[p] << 24 | (size_t)f->b[p + 1] << 16 | (size_t)f->b[p + 2] << 8 | f->b[p + 3];
        if (memcmp(f->b + p + 4, "IDAT", 4) == 0)
            end = p + 12 + len;
        p += 12 + len;
    }
    ck_assert_uint_gt(end, 0);
    return end;
}

/* Every prefix of a valid file is refused, never decoded with a made-up
 * tail, never read past its end (ASan, valgrind). A PNG cut after its image
 * data (IEND missing) loads, as it does in Pillow. Under valgrind every 5th
 * prefix and the last 64. */
START_TEST(test_every_prefix)
{
    const char *names[] = {"png_pal8_oob.png", "png_rgba16_interlaced.png", "png_pal2_interlaced.png",
                           "bmp_pal4_oob.bmp", "bmp_bf32_xbgr.bmp", "bmp_os2_pal8.bmp"};
    int cut_refused = 0;
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", IMG_DIR, names[k]);
        test_buf f = test_slurp(path);
        bool is_png = f.b[0] == 0x89;
        size_t complete = is_png ? end_of_idat(&f) : f.n;
        for (size_t n = 0; n < f.n; n++) {
            if (RUNNING_ON_VALGRIND && n % 5 && n + 64 < f.n)
                continue;
            uint8_t *copy = malloc(n ? n : 1);
            ck_assert_ptr_nonnull(copy);
            memcpy(copy, f.b, n);
            rp_error err;
            rp_image im;
            memset(&err, 0, sizeof err);
            rp_status st = is_png ? rp_decode_png(names[k], copy, n, &im, &err)
                                  : rp_decode_bmp(names[k], copy, n, &im, &err);
            if (n >= complete) {
                ck_assert_msg(st == RP_OK, "%s cut to %zu bytes (image data whole): %s", names[k], n, err.msg);
                rp_image_release(&im);
            } else {
                ck_assert_msg(st == RP_ERR_FORMAT, "%s cut to %zu bytes: status %s (%s)", names[k], n,
                              rp_status_name(st), err.msg);
                ck_assert_ptr_null(im.pixels);
                cut_refused++;
            }
            free(copy);
        }
        free(f.b);
    }
    ck_assert_int_gt(cut_refused, 300);
}
END_TEST

/* Headers claiming more pixels than relprop accepts are refused before
 * anything is allocated for them. */
START_TEST(test_size_limits)
{
    test_buf f = test_slurp(IMG_DIR "/bmp_rgb32.bmp");
    rp_error err;
    rp_image im;
    /* 40000 x 40000 (1.6 Gpx), and a width of 2^31 + 1 (negative in int32) */
    uint32_t dims[][2] = {{40000, 40000}, {0x80000001u, 1}, {1, 0x7fffffffu}};
    for (size_t i = 0; i < 3; i++) {
        for (int b = 0; b < 4; b++) {
            f.b[18 + b] = (uint8_t)(dims[i][0] >> (8 * b));
            f.b[22 + b] = (uint8_t)(dims[i][1] >> (8 * b));
        }
        ck_assert_int_eq(rp_decode_bmp("big.bmp", f.b, f.n, &im, &err), RP_ERR_VALUE);
        ck_assert_msg(strstr(err.msg, "more than the 67108864 relprop accepts"), "%s", err.msg);
    }
    free(f.b);

    f = test_slurp(IMG_DIR "/png_rgb16.png");
    uint32_t pdims[][2] = {{1u << 27, 1}, {10000, 10000}, {0xffffffffu, 0xffffffffu}};
    for (size_t i = 0; i < 3; i++) {
        for (int b = 0; b < 4; b++) {
            f.b[16 + b] = (uint8_t)(pdims[i][0] >> (8 * (3 - b)));
            f.b[20 + b] = (uint8_t)(pdims[i][1] >> (8 * (3 - b)));
        }
        ck_assert_int_eq(rp_decode_png("big.png", f.b, f.n, &im, &err), RP_ERR_VALUE);
        ck_assert_msg(strstr(err.msg, "more than the 67108864 relprop accepts"), "%s", err.msg);
        ck_assert_ptr_null(im.pixels);
    }
    free(f.b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("images");
    TCase *tc = tcase_create("images");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_files_decode_as_pillow);
    tcase_add_test(tc, test_every_prefix);
    tcase_add_test(tc, test_size_limits);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
