/* Replays the inputs the fuzzers found (tests/regressions/fuzz/model/ and
 * tests/regressions/fuzz/readers/) through the fuzz targets' own code
 * (fuzz/fuzz_model.c, fuzz/fuzz_readers.c), built here with the normal
 * compiler: in the sanitizer build of `make test` each must run without a
 * report, as the fixed library does under libFuzzer. The CLI's view of the
 * same corpus (exit 2, a message, no output) is tests/test_regressions.sh. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create, in fuzz_readers.c */
#endif
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LLVMFuzzerTestOneInput fuzz_model_one
#include "../fuzz/fuzz_model.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_readers_one
#include "../fuzz/fuzz_readers.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_ops_one
#include "../fuzz/fuzz_ops.c"
#undef LLVMFuzzerTestOneInput

#ifndef RELPROP_SOURCE_DIR
#define RELPROP_SOURCE_DIR "."
#endif
#define CORPUS RELPROP_SOURCE_DIR "/tests/regressions/fuzz"

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s: cannot open", path);
    size_t cap = 1 << 16, n = 0;
    uint8_t *b = malloc(cap);
    ck_assert_ptr_nonnull(b);
    size_t k;
    while ((k = fread(b + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            b = realloc(b, cap *= 2);
            ck_assert_ptr_nonnull(b);
        }
    }
    fclose(f);
    *len = n;
    return b;
}

/* Runs every regular file in CORPUS/sub through one; returns how many. */
static int replay(const char *sub, int (*one)(const uint8_t *, size_t))
{
    char dir[1024], path[2048];
    snprintf(dir, sizeof dir, "%s/%s", CORPUS, sub);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len;
        uint8_t *b = slurp(path, &len);
        fprintf(stderr, "replay %s/%s (%zu bytes)\n", sub, e->d_name, len);
        one(b, len);
        free(b);
        n++;
    }
    closedir(d);
    return n;
}

/* Each model the fuzzer found either runs, or is refused with a message
 * (and, in the sanitizer build, without a report). */
static int model_checked_one(const uint8_t *data, size_t size)
{
    rp_error err;
    rp_status st = fuzz_model_run(data, size, &err);
    ck_assert_msg(st == RP_OK || err.msg[0] != 0, "refused (status %d) without a message", (int)st);
    return 0;
}

START_TEST(test_model_corpus)
{
    int n = replay("model", model_checked_one);
    ck_assert_int_gt(n, 0);
    fprintf(stderr, "fuzz_model: %d inputs replayed\n", n);
}
END_TEST

START_TEST(test_ops_corpus)
{
    int n = replay("ops", fuzz_ops_one);
    ck_assert_int_gt(n, 0);
    fprintf(stderr, "fuzz_ops: %d recipes replayed\n", n);
}
END_TEST

START_TEST(test_readers_corpus)
{
    int n = replay("readers", fuzz_readers_one);
    ck_assert_int_gt(n, 0);
    fprintf(stderr, "fuzz_readers: %d inputs replayed\n", n);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fuzz_corpus");
    TCase *tc = tcase_create("replay");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_model_corpus);
    tcase_add_test(tc, test_readers_corpus);
    tcase_add_test(tc, test_ops_corpus);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
