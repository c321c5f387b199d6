/* The JPEG marker walk done before stb_image sees a file
 * (src/image/jpeg_check.c).
 *
 * Valid files: every JPEG in tests/data/jpeg/ (made by
 * tools/make_jpeg_fixtures.py with Pillow and libjpeg-turbo's cjpeg and
 * jpegtran: qualities, subsamplings, progressive, gray, CMYK, RGB, restart
 * intervals, multi-scan baseline with tables between scans, EXIF, fill bytes,
 * an embedded thumbnail, trailing bytes) passes the check and loads with
 * exactly the pixels stb alone decodes. Corrupt files: one defect at a time,
 * written into those valid files here, each refused with its status and a
 * message naming it — stb never sees them. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image.h>

#include "core/error.h"
#include "image/jpeg_check.h"
#include "relprop/relprop.h"

#ifndef RELPROP_SOURCE_DIR
#define RELPROP_SOURCE_DIR "."
#endif
#define JPEG_DIR RELPROP_SOURCE_DIR "/tests/data/jpeg"
#define MAX_PIXELS ((int64_t)1 << 26)

typedef struct buf {
    uint8_t *b;
    size_t n;
} buf;

static buf slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s: cannot open", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    ck_assert_int_ge(len, 0);
    rewind(f);
    buf r = {malloc((size_t)len + 1), (size_t)len};
    ck_assert_ptr_nonnull(r.b);
    ck_assert_uint_eq(fread(r.b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    return r;
}

static buf fixture(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", JPEG_DIR, name);
    return slurp(path);
}

/* Offset of the 0xFF of the k-th (0-based) segment with marker code m,
 * walking segments and skipping scan data as the checker does; -1 if none. */
static long find_segment(const buf *f, int m, int k)
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
static uint8_t *segment(const buf *f, int m, int k)
{
    long at = find_segment(f, m, k);
    ck_assert_msg(at >= 0, "no segment 0xFF%02X #%d", m, k);
    return f->b + at + 4;
}

/* Bytes [0, at) + insert[0, ni) + [at + drop, n) */
static buf splice(const buf *f, size_t at, size_t drop, const void *insert, size_t ni)
{
    ck_assert_uint_le(at + drop, f->n);
    buf r = {malloc(f->n - drop + ni + 1), f->n - drop + ni};
    ck_assert_ptr_nonnull(r.b);
    memcpy(r.b, f->b, at);
    if (ni)
        memcpy(r.b + at, insert, ni);
    memcpy(r.b + at + ni, f->b + at + drop, f->n - at - drop);
    return r;
}

static void expect_refused(const char *what, const buf *f, rp_status code, const char *needle)
{
    rp_error err;
    memset(&err, 0, sizeof err);
    rp_status st = rp_jpeg_check(what, f->b, f->n, MAX_PIXELS, &err);
    ck_assert_msg(st == code, "%s: status %s, expected %s (%s)", what, rp_status_name(st), rp_status_name(code),
                  err.msg);
    ck_assert_msg(strstr(err.msg, what) == err.msg, "%s: message does not start with the file name: %s", what,
                  err.msg);
    ck_assert_msg(strstr(err.msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, err.msg, needle);
}

static void expect_ok(const char *what, const buf *f)
{
    rp_error err;
    memset(&err, 0, sizeof err);
    rp_status st = rp_jpeg_check(what, f->b, f->n, MAX_PIXELS, &err);
    ck_assert_msg(st == RP_OK, "%s: refused: %s", what, err.msg);
}

/* ---- valid files ---- */

START_TEST(test_valid_files_load_as_stb_decodes_them)
{
    buf man = fixture("MANIFEST.tsv");
    man.b[man.n] = 0;
    int ok = 0, refused = 0;
    char *save = NULL;
    for (char *line = strtok_r((char *)man.b, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#')
            continue;
        char name[128], expect[64];
        ck_assert_int_eq(sscanf(line, "%127[^\t]\t%63[^\t]", name, expect), 2);
        char path[512];
        snprintf(path, sizeof path, "%s/%s", JPEG_DIR, name);
        buf f = slurp(path);
        rp_error err;
        memset(&err, 0, sizeof err);
        rp_image im;
        rp_status st = rp_image_load(path, &im, &err);
        if (strcmp(expect, "ok") != 0) {
            ck_assert_str_eq(expect, "RP_ERR_UNSUPPORTED");
            ck_assert_msg(st == RP_ERR_UNSUPPORTED, "%s: %s", name, err.msg);
            ck_assert_msg(strstr(err.msg, "unsupported JPEG") && strstr(err.msg, "arithmetic"), "%s", err.msg);
            refused++;
            free(f.b);
            continue;
        }
        ck_assert_msg(st == RP_OK, "%s: %s", name, err.msg);
        expect_ok(name, &f);
        int w, h, c;
        uint8_t *ref = stbi_load_from_memory(f.b, (int)f.n, &w, &h, &c, 3);
        ck_assert_msg(ref != NULL, "%s: stb: %s", name, stbi_failure_reason());
        ck_assert_int_eq(im.width, w);
        ck_assert_int_eq(im.height, h);
        ck_assert_int_eq(im.channels, 3);
        ck_assert_msg(memcmp(im.pixels, ref, (size_t)w * h * 3) == 0, "%s: pixels differ from stb's", name);
        stbi_image_free(ref);
        rp_image_release(&im);
        free(f.b);
        ok++;
    }
    free(man.b);
    ck_assert_int_ge(ok, 25);
    ck_assert_int_ge(refused, 2);
}
END_TEST

/* Tables may be defined between scans (every progressive file here does;
 * so does the multi-scan baseline one), and a progressive DC scan needs no
 * AC table. */
START_TEST(test_tables_between_scans)
{
    buf f = fixture("cjpeg_multiscan_baseline.jpg");
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
    buf f = fixture("pil_q75.jpg"); /* DHT DC0, AC0, DC1, AC1, one table each */
    buf g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xC4, 0)[1 + 15] = 255; /* DC table 0: 12 + 255 codes */
    expect_refused("dht_sum", &g, RP_ERR_FORMAT, "code counts sum to 267, more than the 256");
    free(g.b);

    g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xC4, 0)[0] = 0x20;
    expect_refused("dht_class", &g, RP_ERR_FORMAT, "table class 2");
    free(g.b);

    g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xC4, 1)[0] = 0x14;
    expect_refused("dht_id", &g, RP_ERR_FORMAT, "AC table id 4");
    free(g.b);

    g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xC4, 0)[1] = 3; /* three codes of length 1 */
    expect_refused("dht_prefix", &g, RP_ERR_FORMAT, "not a prefix code");
    free(g.b);

    g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xC4, 0)[1 + 15] = 1; /* 13 values in a table of 12 */
    expect_refused("dht_values", &g, RP_ERR_FORMAT, "13 values do not fit in the 12 bytes");
    free(g.b);

    /* The AC 0 table's DHT turned into an APP4 segment: the scan uses a table
     * nobody defined (the fuzzer's find, stb read past maxcode[18]). */
    g = splice(&f, 0, 0, NULL, 0);
    g.b[find_segment(&g, 0xC4, 1) + 1] = 0xE4;
    expect_refused("dht_undefined", &g, RP_ERR_FORMAT, "uses AC Huffman table 0, which no DHT segment");
    free(g.b);

    /* The scan naming DC/AC table 2 (valid ids, never defined), then 5. */
    g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xDA, 0)[2] = 0x22;
    expect_refused("sos_table2", &g, RP_ERR_FORMAT, "uses DC Huffman table 2");
    free(g.b);
    g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xDA, 0)[2] = 0x05;
    expect_refused("sos_table5", &g, RP_ERR_FORMAT, "(0 to 3)");
    free(g.b);

    /* Progressive: the AC table of the second scan never defined. */
    buf p = fixture("pil_progressive.jpg");
    p.b[find_segment(&p, 0xC4, 2) + 1] = 0xE4;
    expect_refused("prog_ac_undefined", &p, RP_ERR_FORMAT, "scan 2, component id 1: uses AC Huffman table");
    free(p.b);

    /* A whole DHT segment of 945 codes (stb wrote 688 bytes past its table). */
    uint8_t big[4 + 2 + 17 + 945 + 2] = {0xFF, 0xD8, 0xFF, 0xC4, (2 + 17 + 945) >> 8, (2 + 17 + 945) & 255, 0x00};
    big[7 + 12] = 255, big[7 + 13] = 255, big[7 + 14] = 255, big[7 + 15] = 180;
    big[sizeof big - 2] = 0xFF, big[sizeof big - 1] = 0xD9;
    buf b945 = {big, sizeof big};
    expect_refused("dht_945", &b945, RP_ERR_FORMAT, "sum to 945, more than the 256");
    free(f.b);
}
END_TEST

/* ---- frame header, scans, quantisation tables ---- */

START_TEST(test_frame_and_scan)
{
    buf f = fixture("pil_q75.jpg");
    uint8_t *s;
    buf g;
#define MUTATE(what, stmt, code, needle) \
    do { \
        g = splice(&f, 0, 0, NULL, 0); \
        s = segment(&g, 0xC0, 0); \
        stmt; \
        expect_refused(what, &g, code, needle); \
        free(g.b); \
    } while (0)
    MUTATE("sof_0", s[5] = 0, RP_ERR_FORMAT, "0 components (1 to 4)");
    MUTATE("sof_5", s[5] = 5, RP_ERR_FORMAT, "5 components (1 to 4)");
    MUTATE("sof_len", s[5] = 1, RP_ERR_FORMAT, "do not match 1 components");
    MUTATE("sof_w0", (s[3] = 0, s[4] = 0), RP_ERR_FORMAT, "width 0");
    MUTATE("sof_h0", (s[1] = 0, s[2] = 0), RP_ERR_UNSUPPORTED, "height 0");
    MUTATE("sof_huge", (s[1] = s[2] = s[3] = s[4] = 0xFF), RP_ERR_VALUE, "claims 65535x65535 pixels");
    MUTATE("sof_12bit", s[0] = 12, RP_ERR_UNSUPPORTED, "12-bit samples");
    MUTATE("sof_h0v1", s[7] = 0x01, RP_ERR_FORMAT, "sampling factors 0x1");
    MUTATE("sof_tq", s[8] = 5, RP_ERR_FORMAT, "quantisation table 5");
    MUTATE("sof_dup", s[9] = s[6], RP_ERR_FORMAT, "same id");
    MUTATE("sof3", s[-3] = 0xC3, RP_ERR_UNSUPPORTED, "lossless");
    MUTATE("sof9", s[-3] = 0xC9, RP_ERR_UNSUPPORTED, "arithmetic");
    MUTATE("sof_gone", s[-3] = 0xE0, RP_ERR_FORMAT, "a scan before the frame header");
#undef MUTATE

    /* A second frame header right after the first. */
    long at = find_segment(&f, 0xC0, 0);
    size_t len = 2 + ((size_t)f.b[at + 2] << 8 | f.b[at + 3]);
    g = splice(&f, (size_t)at, 0, f.b + at, len);
    expect_refused("sof_twice", &g, RP_ERR_FORMAT, "a second frame header");
    free(g.b);

    /* Scans */
    g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xDA, 0)[1] = 9;
    expect_refused("sos_comp", &g, RP_ERR_FORMAT, "component id 9, which the frame header does not declare");
    free(g.b);
    g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xDA, 0)[3] = segment(&g, 0xDA, 0)[1];
    expect_refused("sos_twice", &g, RP_ERR_FORMAT, "twice");
    free(g.b);
    g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xDA, 0)[0] = 0;
    expect_refused("sos_0", &g, RP_ERR_FORMAT, "0 components in a scan");
    free(g.b);

    /* Quantisation tables */
    g = splice(&f, 0, 0, NULL, 0);
    g.b[find_segment(&g, 0xDB, 0) + 1] = 0xE2;
    expect_refused("dqt_gone", &g, RP_ERR_FORMAT, "uses quantisation table 0, which no DQT segment");
    free(g.b);
    g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xDB, 0)[0] = 0x20;
    expect_refused("dqt_precision", &g, RP_ERR_FORMAT, "table precision 2");
    free(g.b);
    g = splice(&f, 0, 0, NULL, 0);
    segment(&g, 0xDB, 0)[0] = 0x07;
    expect_refused("dqt_id", &g, RP_ERR_FORMAT, "table id 7");
    free(g.b);

    /* A frame component no scan codes: the third scan of a multi-scan file gone. */
    buf m = fixture("cjpeg_multiscan_baseline.jpg");
    at = find_segment(&m, 0xDA, 2);
    ck_assert_int_gt(at, 0);
    g = splice(&m, (size_t)at, m.n - (size_t)at, "\xFF\xD9", 2);
    expect_refused("never_coded", &g, RP_ERR_FORMAT, "component id 3 is never coded");
    free(g.b);
    free(m.b);
    free(f.b);
}
END_TEST

/* ---- structure: truncation, lengths, stray markers ---- */

START_TEST(test_structure)
{
    buf f = fixture("pil_q75.jpg");
    buf g;
    long dht = find_segment(&f, 0xC4, 0), sos = find_segment(&f, 0xDA, 0);

    g = splice(&f, (size_t)dht + 10, f.n - (size_t)dht - 10, NULL, 0);
    expect_refused("trunc_dht", &g, RP_ERR_FORMAT, "truncated JPEG: DHT segment at byte");
    free(g.b);
    g = splice(&f, (size_t)dht + 3, f.n - (size_t)dht - 3, NULL, 0);
    expect_refused("trunc_len", &g, RP_ERR_FORMAT, "truncated JPEG: DHT segment");
    free(g.b);
    g = splice(&f, (size_t)sos, f.n - (size_t)sos, NULL, 0);
    expect_refused("trunc_before_scan", &g, RP_ERR_FORMAT, "truncated JPEG: the file ends before the first scan");
    free(g.b);
    g = splice(&f, f.n - 300, 300, NULL, 0);
    expect_refused("trunc_scan", &g, RP_ERR_FORMAT, "truncated JPEG: the data of scan 1");
    free(g.b);
    g = splice(&f, f.n - 2, 2, NULL, 0);
    expect_refused("no_eoi", &g, RP_ERR_FORMAT, "no end-of-image marker");
    free(g.b);
    g = splice(&f, (size_t)sos, f.n - (size_t)sos, "\xFF\xD9", 2);
    expect_refused("eoi_first", &g, RP_ERR_FORMAT, "the image ends before any scan");
    free(g.b);

    g = splice(&f, 0, 0, NULL, 0);
    g.b[4] = 0, g.b[5] = 1; /* APP0 length 1 */
    expect_refused("len_1", &g, RP_ERR_FORMAT, "APP0 segment at byte 2: length 1");
    free(g.b);
    g = splice(&f, 2, 0, "\xFF\xD0", 2);
    expect_refused("rst", &g, RP_ERR_FORMAT, "RST0 marker at byte 2 outside a scan");
    free(g.b);
    g = splice(&f, 2, 0, "\xFF\xD8", 2);
    expect_refused("soi_twice", &g, RP_ERR_FORMAT, "a second start-of-image marker at byte 2");
    free(g.b);
    g = splice(&f, 2, 0, "\xFF\x01", 2);
    expect_refused("tem", &g, RP_ERR_FORMAT, "byte 0x01 after 0xFF at byte 2");
    free(g.b);
    g = splice(&f, 2, 0, "\xFF\xCC\x00\x04\x00\x11", 6);
    expect_refused("dac", &g, RP_ERR_UNSUPPORTED, "DAC segment at byte 2: arithmetic");
    free(g.b);
    g = splice(&f, 2, 0, "\xFF\xF3\x00\x02", 4);
    expect_refused("jpg3", &g, RP_ERR_UNSUPPORTED, "JPG3 segment");
    free(g.b);
    g = splice(&f, 2, 0, "\xFF\xDD\x00\x05\x00\x01\x00", 7);
    expect_refused("dri", &g, RP_ERR_FORMAT, "DRI segment at byte 2: 3 bytes");
    free(g.b);
    g = splice(&f, 0, 2, "\xFF\xD9", 2);
    expect_refused("no_soi", &g, RP_ERR_FORMAT, "no start-of-image marker");
    free(g.b);

    /* Nothing at all, and one byte, are refused without reading past them. */
    buf tiny = {(uint8_t *)"\xFF", 1};
    expect_refused("one_byte", &tiny, RP_ERR_FORMAT, "no start-of-image");
    buf soi = {(uint8_t *)"\xFF\xD8\xFF", 3};
    expect_refused("soi_only", &soi, RP_ERR_FORMAT, "truncated JPEG: the file ends before the frame header");
    free(f.b);
}
END_TEST

/* Every prefix of a valid file is refused (as truncated), and never read
 * past its end (ASan would see it in the sanitizer build). */
START_TEST(test_every_prefix)
{
    const char *names[] = {"pil_q75.jpg", "pil_progressive.jpg", "cjpeg_restart_3blocks.jpg",
                           "hand_com_thumbnail.jpg"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        buf f = fixture(names[k]);
        ck_assert(f.b[f.n - 2] == 0xFF && f.b[f.n - 1] == 0xD9);
        for (size_t n = 0; n < f.n; n++) {
            uint8_t *copy = malloc(n ? n : 1);
            ck_assert_ptr_nonnull(copy);
            memcpy(copy, f.b, n);
            rp_error err;
            rp_status st = rp_jpeg_check(names[k], copy, n, MAX_PIXELS, &err);
            ck_assert_msg(st == RP_ERR_FORMAT, "%s cut to %zu bytes: status %s", names[k], n, rp_status_name(st));
            free(copy);
        }
        free(f.b);
    }
}
END_TEST

/* The fuzzers' finds, as the image loader meets them: refused before stb. */
START_TEST(test_fuzz_finds)
{
    rp_error err;
    rp_image im;
    memset(&err, 0, sizeof err);
    ck_assert_int_eq(rp_image_load(RELPROP_SOURCE_DIR "/tests/regressions/fuzz/img/jpeg_huffman_table_undefined.jpg",
                                   &im, &err),
                     RP_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "corrupt JPEG") && strstr(err.msg, "uses AC Huffman table 0"), "%s", err.msg);
    ck_assert_int_eq(
        rp_image_load(RELPROP_SOURCE_DIR "/tests/regressions/img/fuzz_jpeg_dht_overflow.jpg", &im, &err),
        RP_ERR_FORMAT);
    ck_assert_msg(strstr(err.msg, "truncated JPEG: DHT segment"), "%s", err.msg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("jpeg_check");
    TCase *tc = tcase_create("jpeg_check");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_valid_files_load_as_stb_decodes_them);
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
