/* JPEG decoding through libjpeg-turbo (src/image/jpeg.c).
 *
 * Valid files: every JPEG in tests/data/jpeg/ (made by
 * tools/make_jpeg_fixtures.py with Pillow and libjpeg-turbo's cjpeg and
 * jpegtran: qualities, subsamplings, progressive, arithmetic, gray, CMYK,
 * YCCK, RGB, restart intervals, multi-scan baseline with tables between
 * scans, EXIF, fill bytes, an embedded thumbnail, trailing bytes) loads with
 * exactly the pixels Pillow's Image.open(f).convert("RGB") gives
 * (tests/data/jpeg/pil/<name>.ppm). Refused files: the manifest's, and one
 * defect at a time written into valid files here, each refused with its
 * status and a message naming the file and the defect. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <valgrind/valgrind.h>

#include "core/error.h"
#include "image/decode.h"
#include "relprop/relprop.h"
#include "support/slurp.h"
#ifndef RELPROP_SOURCE_DIR
#define RELPROP_SOURCE_DIR "."
#endif
#define JPEG_DIR RELPROP_SOURCE_DIR "/tests/data/jpeg"


static test_buf fixture(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", JPEG_DIR, name);
    return test_slurp(path);
}

/* Offset of the 0xFF of the k-th (0-based) segment with marker code m,
 * walking segments and skipping scan data as the checker does; -1 if none. */
static long find_segment(const test_buf *f, int m, int k)
{
    size_t p = 2;
    while (p + 1 < f->n) {
        while (p < f->n && f->b[p] != 0xFF)
            p++;
        while (p < f->n && f->b[p] == 0xFF)
            p++;
        if (p + 2 >= f->n)
            return -1;
        size_t at = p - 1;
        int code = f->b[p++];
        if (code == 0xD9)
            return -1;
        if (code == m && k-- == 0)
            return (long)at;
        size_t next = p + ((size_t)f->b[p] << 8 | f->b[p + 1]);
        if (code == 0xDA) {
            for (;;) {
                while (next < f->n && f->b[next] != 0xFF)
                    next++;
                size_t ff = next;
                while (next < f->n && f->b[next] == 0xFF)
                    next++;
                if (next >= f->n)
                    return -1;
                if (f->b[next] == 0 || (f->b[next] >= 0xD0 && f->b[next] <= 0xD7)) {
                    next++;
                    continue;
                }
                next = ff;
                break;
            }
        }
        p = next;
    }
    return -1;
}

/* Segment content (after marker and length) of the k-th segment m. */
static uint8_t *segment(const test_buf *f, int m, int k)
{
    long at = find_segment(f, m, k);
    ck_assert_msg(at >= 0, "no segment 0xFF%02X #%d", m, k);
    return f->b + at + 4;
}

/* Bytes [0, at) + insert[0, ni) + [at + drop, n) */
static test_buf splice(const test_buf *f, size_t at, size_t drop, const void *insert, size_t ni)
{
    ck_assert_uint_le(at + drop, f->n);
    test_buf r = {malloc(f->n - drop + ni + 1), f->n - drop + ni};
    ck_assert_ptr_nonnull(r.b);
    memcpy(r.b, f->b, at);
    if (ni)
        memcpy(r.b + at, insert, ni);
    memcpy(r.b + at + ni, f->b + at + drop, f->n - at - drop);
    return r;
}

static rp_status decode(const char *what, const test_buf *f, rp_error *err)
{
    rp_image im;
    memset(err, 0, sizeof *err);
    rp_status st = rp_decode_jpeg(what, f->b, f->n, &im, err);
    if (st == RP_OK) {
        ck_assert_ptr_nonnull(im.pixels);
        rp_image_release(&im);
    } else {
        ck_assert_ptr_null(im.pixels);
    }
    return st;
}

static void expect_refused(const char *what, const test_buf *f, rp_status code, const char *needle)
{
    rp_error err;
    rp_status st = decode(what, f, &err);
    ck_assert_msg(st == code, "%s: status %s, expected %s (%s)", what, rp_status_name(st), rp_status_name(code),
                  err.msg);
    ck_assert_msg(strstr(err.msg, what) == err.msg, "%s: message does not start with the file name: %s", what,
                  err.msg);
    ck_assert_msg(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, err.msg, needle);
}

static void expect_ok(const char *what, const test_buf *f)
{
    rp_error err;
    rp_status st = decode(what, f, &err);
    ck_assert_msg(st == RP_OK, "%s: refused: %s", what, err.msg);
}

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

static double cpu_seconds(void) { return (double)clock() / CLOCKS_PER_SEC; }

/* ---- the manifest: Pillow's pixels, or the refusal ---- */

START_TEST(test_files_decode_as_pillow)
{
    test_buf man = fixture("MANIFEST.tsv");
    man.b[man.n] = 0;
    int ok = 0, refused = 0;
    char *save = NULL;
    for (char *line = strtok_r((char *)man.b, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#')
            continue;
        char name[128], expect[64], needle[128];
        ck_assert_int_eq(sscanf(line, "%127[^\t]\t%63[^\t]\t%127[^\t]", name, expect, needle), 3);
        char path[512], ref_path[512];
        snprintf(path, sizeof path, "%s/%s", JPEG_DIR, name);
        rp_error err;
        memset(&err, 0, sizeof err);
        rp_image im;
        if (strcmp(expect, "ok") != 0) {
            /* The work-limit file costs a second of decoding, a minute
             * under valgrind: the scan-limit file covers that path there. */
            if (RUNNING_ON_VALGRIND && strstr(name, "work")) {
                refused++;
                continue;
            }
            double t0 = cpu_seconds();
            rp_status st = rp_image_load(path, &im, &err);
            double dt = cpu_seconds() - t0;
            printf("%-32s refused in %.2f s CPU: %s\n", name, dt, err.msg);
            ck_assert_msg(st == status_of(expect), "%s: status %s, expected %s (%s)", name, rp_status_name(st), expect,
                          err.msg);
            ck_assert_msg(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", name, err.msg, needle);
            /* Seconds, not minutes: the limits stop the decode early. */
            ck_assert_msg(RUNNING_ON_VALGRIND || dt < 20.0, "%s: %.1f s to refuse", name, dt);
            refused++;
            continue;
        }
        ck_assert_msg(rp_image_load(path, &im, &err) == RP_OK, "%s: %s", name, err.msg);
        snprintf(ref_path, sizeof ref_path, "%s/pil/%s.ppm", JPEG_DIR, name);
        rp_image ref;
        ck_assert_msg(rp_image_load(ref_path, &ref, &err) == RP_OK, "%s", err.msg);
        ck_assert_int_eq(im.width, ref.width);
        ck_assert_int_eq(im.height, ref.height);
        ck_assert_int_eq(im.channels, 3);
        size_t n = (size_t)im.width * im.height * 3, differ = 0;
        for (size_t i = 0; i < n; i++)
            differ += im.pixels[i] != ref.pixels[i];
        ck_assert_msg(differ == 0, "%s: %zu of %zu samples differ from Pillow's", name, differ, n);
        rp_image_release(&ref);
        rp_image_release(&im);
        ok++;
    }
    free(man.b);
    ck_assert_int_ge(ok, 33);
    ck_assert_int_ge(refused, 2);
}
END_TEST

/* Tables may be defined between scans (every progressive file here does;
 * so does the multi-scan baseline one), and a progressive DC scan needs no
 * AC table. */
START_TEST(test_tables_between_scans)
{
    test_buf f = fixture("cjpeg_multiscan_baseline.jpg");
    ck_assert_int_gt(find_segment(&f, 0xC4, 2), find_segment(&f, 0xDA, 0));
    expect_ok("multiscan", &f);
    free(f.b);
    f = fixture("pil_progressive.jpg");
    ck_assert_int_gt(find_segment(&f, 0xC4, 2), find_segment(&f, 0xDA, 0));
    expect_ok("progressive", &f);
    free(f.b);
}
END_TEST

/* ---- Huffman tables ---- */

START_TEST(test_dht)
{
    test_buf f = fixture("pil_q75.jpg"); /* DHT DC0, AC0, DC1, AC1, one table each */
    test_buf g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xC4, 0)[1 + 15] = 255; /* DC table 0: 12 + 255 codes */
    expect_refused("dht_sum", &g, RP_ERR_FORMAT, "corrupt JPEG: Bogus Huffman table definition");
    free(g.b);

    g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xC4, 0)[0] = 0x20;
    expect_refused("dht_class", &g, RP_ERR_FORMAT, "Bogus DHT index 32");
    free(g.b);

    g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xC4, 1)[0] = 0x14;
    expect_refused("dht_id", &g, RP_ERR_FORMAT, "Bogus DHT index 4");
    free(g.b);

    g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xC4, 0)[1] = 3; /* three codes of length 1 */
    expect_refused("dht_prefix", &g, RP_ERR_FORMAT, "Bogus Huffman table definition");
    free(g.b);

    g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xC4, 0)[1 + 15] = 1; /* 13 values in a table of 12 */
    expect_refused("dht_values", &g, RP_ERR_FORMAT, "Bogus Huffman table definition");
    free(g.b);

    /* The AC 0 table's DHT turned into an APP4 segment: the scan uses a table
     * nobody defined (the fuzzer's find, stb read past maxcode[18]).
     * libjpeg-turbo, hence Pillow, falls back on JPEG's standard tables
     * (Annex K, which motion-JPEG frames rely on): decoded. */
    g = splice(&f, 0, 0, NULL, 0);
    g.b[find_segment(&g, 0xC4, 1) + 1] = 0xE4;
    expect_ok("dht_undefined", &g);
    free(g.b);

    /* The scan naming DC/AC table 2 (valid ids, never defined), then 5. */
    g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xDA, 0)[2] = 0x22;
    expect_refused("sos_table2", &g, RP_ERR_FORMAT, "Huffman table 0x02 was not defined");
    free(g.b);
    g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xDA, 0)[2] = 0x05;
    expect_refused("sos_table5", &g, RP_ERR_FORMAT, "Huffman table 0x05 was not defined");
    free(g.b);

    /* Progressive: the AC table of the second scan never defined. */
    test_buf p = fixture("pil_progressive.jpg");
    p.b[find_segment(&p, 0xC4, 2) + 1] = 0xE4;
    expect_refused("prog_ac_undefined", &p, RP_ERR_FORMAT, "Huffman table 0x00 was not defined");
    free(p.b);

    /* A whole DHT segment of 945 codes (stb wrote 688 bytes past its table). */
    uint8_t big[4 + 2 + 17 + 945 + 2] = {0xFF, 0xD8, 0xFF, 0xC4, (2 + 17 + 945) >> 8, (2 + 17 + 945) & 255, 0x00};
    big[7 + 12] = 255, big[7 + 13] = 255, big[7 + 14] = 255, big[7 + 15] = 180;
    big[sizeof big - 2] = 0xFF, big[sizeof big - 1] = 0xD9;
    test_buf b945 = {big, sizeof big};
    expect_refused("dht_945", &b945, RP_ERR_FORMAT, "Bogus Huffman table definition");
    free(f.b);
}
END_TEST

/* ---- frame header, scans, quantisation tables ---- */

START_TEST(test_frame_and_scan)
{
    test_buf f = fixture("pil_q75.jpg");
    uint8_t *s;
    test_buf g;
#define MUTATE(what, stmt, code, needle) \
    do { \
        g = splice(&f, 0, 0, NULL, 0); \
        s = segment(&g, 0xC0, 0); \
        stmt; \
        expect_refused(what, &g, code, needle); \
        free(g.b); \
    } while (0)
    /* libjpeg, hence Pillow, decodes an arithmetic frame header over
     * Huffman-coded data (to garbage, with warnings). */
#define MUTATE_OK(what, stmt) \
    do { \
        g = splice(&f, 0, 0, NULL, 0); \
        s = segment(&g, 0xC0, 0); \
        stmt; \
        expect_ok(what, &g); \
        free(g.b); \
    } while (0)
    MUTATE("sof_0", s[5] = 0, RP_ERR_FORMAT, "zero-size image (61x47, 0 components)");
    MUTATE("sof_5", s[5] = 5, RP_ERR_FORMAT, "Bogus marker length");
    MUTATE("sof_len", s[5] = 1, RP_ERR_FORMAT, "Bogus marker length");
    MUTATE("sof_w0", (s[3] = 0, s[4] = 0), RP_ERR_FORMAT, "zero-size image (0x47, 3 components)");
    MUTATE("sof_h0", (s[1] = 0, s[2] = 0), RP_ERR_UNSUPPORTED, "height 0 in the frame header");
    MUTATE("sof_huge", (s[1] = s[2] = s[3] = s[4] = 0xFF), RP_ERR_FORMAT, "Maximum supported image dimension is 65500");
    MUTATE("sof_12bit", s[0] = 12, RP_ERR_UNSUPPORTED, "unsupported JPEG: Unsupported JPEG data precision 12");
    MUTATE("sof_h0v1", s[7] = 0x01, RP_ERR_FORMAT, "Bogus sampling factors");
    MUTATE("sof_tq", s[8] = 5, RP_ERR_FORMAT, "Quantization table 0x05 was not defined");
    MUTATE("sof_dup", s[9] = s[6], RP_ERR_FORMAT, "Invalid component ID 2 in SOS");
    MUTATE("sof3", s[-3] = 0xC3, RP_ERR_UNSUPPORTED, "unsupported JPEG: Unsupported JPEG process: SOF type 0xc3");
    MUTATE_OK("sof9", s[-3] = 0xC9);
    MUTATE("sof_gone", s[-3] = 0xE0, RP_ERR_FORMAT, "SOS before SOF");
    MUTATE("sof_100mpx", (s[1] = s[3] = 0x27, s[2] = s[4] = 0x10), RP_ERR_VALUE,
           "claims 10000x10000 pixels, more than the 67108864");
#undef MUTATE
#undef MUTATE_OK

    /* A second frame header right after the first. */
    long at = find_segment(&f, 0xC0, 0);
    size_t len = 2 + ((size_t)f.b[at + 2] << 8 | f.b[at + 3]);
    g = splice(&f, (size_t)at, 0, f.b + at, len);
    expect_refused("sof_twice", &g, RP_ERR_FORMAT, "two SOF markers");
    free(g.b);

    /* Scans */
    g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xDA, 0)[1] = 9;
    expect_refused("sos_comp", &g, RP_ERR_FORMAT, "Invalid component ID 9 in SOS");
    free(g.b);
    g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xDA, 0)[3] = segment(&g, 0xDA, 0)[1];
    expect_refused("sos_twice", &g, RP_ERR_FORMAT, "Invalid component ID 1 in SOS");
    free(g.b);
    g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xDA, 0)[0] = 0;
    expect_refused("sos_0", &g, RP_ERR_FORMAT, "Bogus marker length");
    free(g.b);

    /* Quantisation tables */
    g = splice(&f, 0, 0, NULL, 0);
    g.b[find_segment(&g, 0xDB, 0) + 1] = 0xE2;
    expect_refused("dqt_gone", &g, RP_ERR_FORMAT, "Quantization table 0x00 was not defined");
    free(g.b);
    g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xDB, 0)[0] = 0x20;
    expect_refused("dqt_precision", &g, RP_ERR_FORMAT, "Bogus marker length");
    free(g.b);
    g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xDB, 0)[0] = 0x07;
    expect_refused("dqt_id", &g, RP_ERR_FORMAT, "Bogus DQT index 7");
    free(g.b);

    /* A frame component no scan codes: the third scan of a multi-scan file
     * gone. libjpeg, hence Pillow, decodes it with that component zero. */
    test_buf m = fixture("cjpeg_multiscan_baseline.jpg");
    at = find_segment(&m, 0xDA, 2);
    ck_assert_int_gt(at, 0);
    g = splice(&m, (size_t)at, m.n - (size_t)at, "\xFF\xD9", 2);
    expect_ok("never_coded", &g);
    free(g.b);
    free(m.b);
    free(f.b);
}
END_TEST

/* ---- structure: truncation, lengths, stray markers ---- */

START_TEST(test_structure)
{
    test_buf f = fixture("pil_q75.jpg");
    test_buf g;
    long dht = find_segment(&f, 0xC4, 0), sos = find_segment(&f, 0xDA, 0);

    g = splice(&f, (size_t)dht + 10, f.n - (size_t)dht - 10, NULL, 0);
    expect_refused("trunc_dht", &g, RP_ERR_FORMAT, "truncated JPEG");
    free(g.b);
    g = splice(&f, (size_t)dht + 3, f.n - (size_t)dht - 3, NULL, 0);
    expect_refused("trunc_len", &g, RP_ERR_FORMAT, "truncated JPEG");
    free(g.b);
    g = splice(&f, (size_t)sos, f.n - (size_t)sos, NULL, 0);
    expect_refused("trunc_before_scan", &g, RP_ERR_FORMAT, "truncated JPEG");
    free(g.b);
    g = splice(&f, f.n - 300, 300, NULL, 0);
    expect_refused("trunc_scan", &g, RP_ERR_FORMAT, "truncated JPEG");
    free(g.b);
    g = splice(&f, f.n - 2, 2, NULL, 0);
    expect_refused("no_eoi", &g, RP_ERR_FORMAT, "truncated JPEG: the file ends before its end-of-image marker");
    free(g.b);
    g = splice(&f, (size_t)sos, f.n - (size_t)sos, "\xFF\xD9", 2);
    expect_refused("eoi_first", &g, RP_ERR_FORMAT, "missing SOS marker");
    free(g.b);

    /* Stray bytes and markers libjpeg (so Pillow) skips with a warning: an
     * APP0 of length 1, a RST or TEM marker before the frame, an arithmetic
     * conditioning table in a Huffman file. */
    g = splice(&f, 0, 0, NULL, 0);
    g.b[4] = 0, g.b[5] = 1; /* APP0 length 1 */
    expect_ok("len_1", &g);
    free(g.b);
    g = splice(&f, 2, 0, "\xFF\xD0", 2);
    expect_ok("rst", &g);
    free(g.b);
    g = splice(&f, 2, 0, "\xFF\xD8", 2);
    expect_refused("soi_twice", &g, RP_ERR_FORMAT, "two SOI markers");
    free(g.b);
    g = splice(&f, 2, 0, "\xFF\x01", 2);
    expect_ok("tem", &g);
    free(g.b);
    g = splice(&f, 2, 0, "\xFF\xCC\x00\x04\x00\x11", 6);
    expect_ok("dac", &g);
    free(g.b);
    g = splice(&f, 2, 0, "\xFF\xF3\x00\x02", 4);
    expect_refused("jpg3", &g, RP_ERR_FORMAT, "Unsupported marker type 0xf3");
    free(g.b);
    g = splice(&f, 2, 0, "\xFF\xDD\x00\x05\x00\x01\x00", 7);
    expect_refused("dri", &g, RP_ERR_FORMAT, "Bogus marker length");
    free(g.b);
    g = splice(&f, 0, 2, "\xFF\xD9", 2);
    expect_refused("no_soi", &g, RP_ERR_FORMAT, "Not a JPEG file");
    free(g.b);

    /* Nothing at all, and one byte, are refused without reading past them. */
    test_buf tiny = {(uint8_t *)"\xFF", 1};
    expect_refused("one_byte", &tiny, RP_ERR_FORMAT, "truncated JPEG");
    test_buf soi = {(uint8_t *)"\xFF\xD8\xFF", 3};
    expect_refused("soi_only", &soi, RP_ERR_FORMAT, "truncated JPEG");
    free(f.b);
}
END_TEST

/* Every prefix of a valid file is refused (as truncated), and never read
 * past its end (ASan would see it in the sanitizer build). */
/* Every prefix of a valid file is refused (as truncated, or as corrupt when
 * the cut leaves a segment inconsistent), never decoded with a gray tail,
 * and never read past its end (ASan and valgrind would see it). Under
 * valgrind, every 7th prefix and the last 64. */
START_TEST(test_every_prefix)
{
    const char *names[] = {"pil_q75.jpg", "pil_progressive.jpg", "cjpeg_restart_3blocks.jpg",
                           "hand_com_thumbnail.jpg", "cjpeg_arithmetic_progressive.jpg"};
    int truncated = 0;
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        test_buf f = fixture(names[k]);
        ck_assert(f.b[f.n - 2] == 0xFF && f.b[f.n - 1] == 0xD9);
        for (size_t n = 0; n < f.n; n++) {
            if (RUNNING_ON_VALGRIND && n % 7 && n + 64 < f.n)
                continue;
            test_buf cut = {malloc(n ? n : 1), n};
            ck_assert_ptr_nonnull(cut.b);
            memcpy(cut.b, f.b, n);
            rp_error err;
            rp_status st = decode(names[k], &cut, &err);
            ck_assert_msg(st == RP_ERR_FORMAT, "%s cut to %zu bytes: status %s (%s)", names[k], n, rp_status_name(st),
                          err.msg);
            truncated += strstr(err.msg, "truncated JPEG") != NULL;
            free(cut.b);
        }
        free(f.b);
    }
    ck_assert_int_gt(truncated, 100);
}
END_TEST

/* The fuzzers' finds against stb, as the image loader meets them now. */
START_TEST(test_fuzz_finds)
{
    rp_error err;
    rp_image im;
    memset(&err, 0, sizeof err);
    ck_assert_int_eq(rp_image_load(RELPROP_SOURCE_DIR "/tests/regressions/fuzz/img/jpeg_huffman_table_undefined.jpg",
                                   &im, &err),
                     RP_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "corrupt JPEG: Unsupported marker type 0x82"), "%s", err.msg);
    ck_assert_int_eq(
        rp_image_load(RELPROP_SOURCE_DIR "/tests/regressions/img/fuzz_jpeg_dht_overflow.jpg", &im, &err),
        RP_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "truncated JPEG"), "%s", err.msg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("jpeg");
    TCase *tc = tcase_create("jpeg");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_files_decode_as_pillow);
    tcase_add_test(tc, test_tables_between_scans);
    tcase_add_test(tc, test_dht);
    tcase_add_test(tc, test_frame_and_scan);
    tcase_add_test(tc, test_structure);
    tcase_add_test(tc, test_every_prefix);
    tcase_add_test(tc, test_fuzz_finds);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
