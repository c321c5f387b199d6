/* ONNX's own operator conformance tests, run through loader + prepare +
 * forward: Debian's libonnx-testdata (ONNX 1.12) and tests/onnx-node-tests
 * (ONNX 1.22, copied from ../shared/onnx-node-tests). Every test whose ops
 * relprop implements must pass, or be listed in onnx_node_skip.txt with a
 * reason. Each folder is its own forked Check test, so a crashing kernel
 * fails one test, not the run. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/node_case.h"
#include "support/skip.h"

#define DEBIAN_NODE_DIR "/usr/share/libonnx-testdata/data/node"
#define SKIP_FILE RELPROP_SOURCE_DIR "/tests/onnx_node_skip.txt"

static char **cases;
static int n_cases;
static int n_debian, n_ours;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int collect(const char *root)
{
    DIR *d = opendir(root);
    if (!d)
        return 0;
    struct dirent *e;
    int added = 0;
    int first = n_cases;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "test_", 5) != 0)
            continue;
        char **grown = realloc(cases, sizeof *cases * (size_t)(n_cases + 1));
        if (!grown)
            abort();
        cases = grown;
        size_t len = strlen(root) + strlen(e->d_name) + 2;
        cases[n_cases] = malloc(len);
        snprintf(cases[n_cases], len, "%s/%s", root, e->d_name);
        n_cases++;
        added++;
    }
    closedir(d);
    qsort(cases + first, (size_t)added, sizeof *cases, cmp_str);
    return added;
}

START_TEST(test_node_case)
{
    const char *dir = cases[_i];
    const char *name = strrchr(dir, '/') + 1;
    char why[2048];
    node_case_result r = node_case_run(dir, why, sizeof why);
    if (r == NODE_CASE_FAIL) {
        const char *skip = node_case_skip_reason(SKIP_FILE, name);
        ck_assert_msg(skip != NULL, "%s: %s", dir, why);
    }
}
END_TEST

START_TEST(test_both_trees_present)
{
    ck_assert_msg(n_debian > 900, "Debian's libonnx-testdata is missing (%d tests under %s): run scripts/setup.sh",
                  n_debian, DEBIAN_NODE_DIR);
    ck_assert_msg(n_ours > 300, "tests/onnx-node-tests has only %d tests", n_ours);
}
END_TEST

/* The skip list must stay short and honest: every entry must still fail. */
START_TEST(test_skip_list_entries_still_fail)
{
    FILE *f = fopen(SKIP_FILE, "r");
    ck_assert_msg(f != NULL, "missing %s", SKIP_FILE);
    char line[1024];
    int entries = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        line[strcspn(line, " \t\n")] = 0;
        entries++;
        int matched = 0, failed = 0;
        for (int i = 0; i < n_cases; i++) {
            const char *name = strrchr(cases[i], '/') + 1;
            if (strcmp(name, line) != 0)
                continue;
            char why[2048];
            matched++;
            failed += node_case_run(cases[i], why, sizeof why) == NODE_CASE_FAIL;
        }
        ck_assert_msg(matched > 0, "skip entry %s names no test", line);
        ck_assert_msg(failed > 0, "skip entry %s passes now: remove it from the skip list", line);
    }
    fclose(f);
    ck_assert_msg(entries <= 40, "the skip list has %d entries; keep it short", entries);
}
END_TEST

/* How many cases ran and passed: a loader or kernel regression that made
 * ops look unsupported would otherwise pass as "not applicable". The cases
 * that did not run are reported as skipped. 700 passed when this was
 * written; the floor leaves room for cases dropped from the data. */
START_TEST(test_enough_cases_ran)
{
    int passed = 0, not_applicable = 0, listed = 0;
    for (int i = 0; i < n_cases; i++) {
        char why[2048];
        node_case_result r = node_case_run(cases[i], why, sizeof why);
        passed += r == NODE_CASE_PASS;
        not_applicable += r == NODE_CASE_NOT_APPLICABLE;
        if (r == NODE_CASE_FAIL) {
            const char *reason = node_case_skip_reason(SKIP_FILE, strrchr(cases[i], '/') + 1);
            char what[1200];
            snprintf(what, sizeof what, "test_onnx_node: %s", cases[i]);
            test_skip(what, "%s (tests/onnx_node_skip.txt)", reason ? reason : "not listed");
            listed++;
        }
    }
    test_skip("test_onnx_node", "%d conformance cases use ops relprop does not implement; %d passed, %d listed as "
              "known failures", not_applicable, passed, listed);
    ck_assert_msg(passed >= 650, "only %d of %d conformance cases passed", passed, n_cases);
}
END_TEST

int main(void)
{
    n_debian = collect(DEBIAN_NODE_DIR);
    n_ours = collect(RELPROP_SOURCE_DIR "/tests/onnx-node-tests");
    Suite *s = suite_create("onnx_node");
    TCase *tc = tcase_create("conformance");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_both_trees_present);
    tcase_add_loop_test(tc, test_node_case, 0, n_cases);
    tcase_add_test(tc, test_skip_list_entries_still_fail);
    tcase_add_test(tc, test_enough_cases_ran);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    for (int i = 0; i < n_cases; i++)
        free(cases[i]);
    free(cases);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
