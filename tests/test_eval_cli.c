/* `relprop eval` end to end on tests/data/eval/ (five fmnist-pairs canvases
 * from tools/fmnist_pairs.py: three with both objects masked, one with one
 * mask, one with a single unmasked row; see tests/data/eval/README.md) and
 * the oracle model fmnist_vit_s__timm17 (fixed weights, unlike the shipped
 * model, which is retrained):
 *  - two runs give byte-identical results.csv, results.json and plots;
 *  - where /usr/bin/python3 has numpy and PIL, eval_reference.py
 *    recomputes every metric from this run's --dump (the same maps) and
 *    compares to 1e-6;
 *  - results.json matches tests/data/eval/reference.json, made the same way
 *    on another machine, within what kernel rounding moves a metric (see
 *    method_drift);
 *  - results.csv's header and empty fields; refusing to overwrite; errors.
 *
 * The command runs in-process: cmd_eval.c and cli.c are compiled into this
 * test (before check.h, whose deprecated fail() macro would clash with the
 * CLI's fail()), so it does not depend on main.c's dispatch. */
#include "../src/cli/cli.c"
#include "../src/cli/cmd_eval.c"
#include "../src/cli/output.c"

#include <check.h>
#include <stdarg.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "support/skip.h"

#define FIXTURE RELPROP_SOURCE_DIR "/tests/data/eval/"
#define ORACLE_MODEL RELPROP_SOURCE_DIR "/tests/oracle/fmnist_vit_s__timm17/model.onnx"

static char tmpdir[64];

static void make_tmp(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/relprop_eval_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void remove_tmp(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

/* cmd_eval with a NULL-terminated argument list. */
static int run_eval(const char *first, ...)
{
    char *argv[64];
    int argc = 0;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 63; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    fflush(stdout);
    int rc = cmd_eval(argc, argv);
    fflush(stdout);
    return rc;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    ck_assert_int_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    if (len)
        *len = (size_t)n;
    return s;
}

static void assert_same_file(const char *a, const char *b)
{
    size_t la, lb;
    char *x = slurp(a, &la), *y = slurp(b, &lb);
    ck_assert_msg(la == lb && memcmp(x, y, la) == 0, "%s and %s differ", a, b);
    free(x);
    free(y);
}

/* How far a metric may move when the maps move by a kernel's rounding (see
 * tests/README.md, "Cross-machine tolerances"). Measured by running this
 * fixture with every OpenBLAS kernel family (OPENBLAS_CORETYPE=Haswell,
 * SkylakeX, Zen, Sandybridge) and under valgrind, against one reference:
 *  - continuous metrics (APs, IoUs, shares) moved by at most 1e-3 points
 *    (lrp_full: 0.07, its pixel maps hold many near-equal values whose
 *    order a last bit changes); allowed: ten times that;
 *  - the perturbation curves and the pointing game count hits, so a
 *    near-tie that reorders two patches flips a whole sample at one step;
 *    lrp_full flipped one; allowed: that many flips per curve (2 for
 *    lrp_full, 1 for the others), and the AUCs move accordingly. */
typedef struct {
    double continuous;
    int flips;
} drift;

static drift method_drift(const char *method)
{
    return strcmp(method, "lrp_full") == 0 ? (drift){0.7, 2} : (drift){1e-2, 1};
}

static bool counts_hits(const char *field)
{
    return strncmp(field, "curve_", 6) == 0 || strcmp(field, "neg_auc") == 0 || strcmp(field, "pos_auc") == 0 ||
           strcmp(field, "pointing") == 0;
}

/* The largest change `flips` samples can make to a hit-counting field. */
static double hits_drift(const cJSON *ref_method, const char *field, int flips)
{
    if (strncmp(field, "curve_", 6) == 0)
        return flips / cJSON_GetObjectItem(ref_method, "n_perturbation")->valuedouble + 1e-12;
    if (strcmp(field, "pointing") == 0)
        return 100.0 * flips / cJSON_GetObjectItem(ref_method, "n_specificity")->valuedouble + 1e-9;
    /* AUC = 100 * trapz(curve, dx = 0.1): one flip at one step moves it by
     * at most 100 * 0.1 / n. */
    return 100.0 * 0.1 * flips / cJSON_GetObjectItem(ref_method, "n_perturbation")->valuedouble + 1e-9;
}

/* Every field of the reference (numbers, nulls, arrays of numbers) against
 * relprop's results.json, per method; tol < 0: the cross-machine drifts
 * above, else tol for every field. */
static void compare_with_reference(const char *results, const char *reference, double tol)
{
    char *rs = slurp(results, NULL), *fs = slurp(reference, NULL);
    cJSON *got = cJSON_Parse(rs), *ref = cJSON_Parse(fs);
    ck_assert_msg(got && ref, "cannot parse %s or %s", results, reference);
    const cJSON *ref_methods = cJSON_GetObjectItem(ref, "methods"), *got_methods = cJSON_GetObjectItem(got, "methods");
    ck_assert_int_eq(cJSON_GetArraySize(ref_methods), RP_METHOD_COUNT);
    int compared = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, ref_methods)
    {
        const char *name = cJSON_GetObjectItem(r, "method")->valuestring;
        const cJSON *g = NULL, *it;
        cJSON_ArrayForEach(it, got_methods) if (strcmp(cJSON_GetObjectItem(it, "method")->valuestring, name) == 0) g = it;
        ck_assert_msg(g != NULL, "%s: method %s missing", results, name);
        drift d = method_drift(name);
        const cJSON *field;
        cJSON_ArrayForEach(field, r)
        {
            if (strcmp(field->string, "method") == 0)
                continue;
            const char *f = field->string;
            double t = tol >= 0 ? tol : counts_hits(f) ? hits_drift(r, f, d.flips) : d.continuous;
            if (strncmp(f, "n_", 2) == 0)
                t = 0; /* how many rows each metric counted never depends on rounding */
            const cJSON *gv = cJSON_GetObjectItem(g, f);
            ck_assert_msg(gv != NULL, "%s.%s missing in %s", name, f, results);
            if (cJSON_IsNull(field)) {
                ck_assert_msg(cJSON_IsNull(gv), "%s.%s: reference null, relprop not", name, f);
            } else if (cJSON_IsArray(field)) {
                ck_assert_int_eq(cJSON_GetArraySize(field), cJSON_GetArraySize(gv));
                int flipped = 0, n = cJSON_GetObjectItem(r, "n_perturbation")->valueint;
                for (int i = 0; i < cJSON_GetArraySize(field); i++) {
                    double a = cJSON_GetArrayItem(field, i)->valuedouble, b = cJSON_GetArrayItem(gv, i)->valuedouble;
                    ck_assert_msg(fabs(a - b) <= t, "%s.%s[%d]: reference %.10g, relprop %.10g (tolerance %g)", name, f,
                                  i, a, b, t);
                    flipped += (int)lround(fabs(a - b) * n);
                    compared++;
                }
                if (tol < 0)
                    ck_assert_msg(flipped <= d.flips, "%s.%s: %d samples flipped in all, at most %d expected", name, f,
                                  flipped, d.flips);
            } else {
                ck_assert_msg(cJSON_IsNumber(gv), "%s.%s: relprop gives no number", name, f);
                ck_assert_msg(fabs(field->valuedouble - gv->valuedouble) <= t,
                              "%s.%s: reference %.10g, relprop %.10g (tolerance %g)", name, f, field->valuedouble,
                              gv->valuedouble, t);
                compared++;
            }
        }
    }
    ck_assert_int_gt(compared, RP_METHOD_COUNT * 30);
    cJSON_Delete(got);
    cJSON_Delete(ref);
    free(rs);
    free(fs);
}

START_TEST(eval_fixture_twice_and_reference)
{
    make_tmp();
    char a[128], b[128], dump[128], pa[256], pb[256];
    snprintf(a, sizeof a, "%s/a", tmpdir);
    snprintf(b, sizeof b, "%s/b", tmpdir);
    snprintf(dump, sizeof dump, "%s/dump", tmpdir);
    ck_assert_int_eq(run_eval("--onnx", ORACLE_MODEL, "--data", FIXTURE "LIST.csv", "-o", a, "--dump", dump,
                              "--threads", "1", NULL),
                     0);
    ck_assert_int_eq(run_eval("--onnx", ORACLE_MODEL, "--data", FIXTURE "LIST.csv", "-o", b, "--threads", "1", NULL),
                     0);
    static const char *const files[] = {"results.csv", "results.json", "perturbation.svg", "perturbation.png"};
    for (int i = 0; i < 4; i++) {
        snprintf(pa, sizeof pa, "%s/%s", a, files[i]);
        snprintf(pb, sizeof pb, "%s/%s", b, files[i]);
        assert_same_file(pa, pb);
    }
    /* the CSV: exact header, one row per method in the default order */
    snprintf(pa, sizeof pa, "%s/results.csv", a);
    char *csv = slurp(pa, NULL);
    static const char header[] = "method,neg_auc,pos_auc,pixel_acc,miou,map,specificity,pointing\n";
    ck_assert_msg(strncmp(csv, header, strlen(header)) == 0, "%s", csv);
    const char *line = strchr(csv, '\n') + 1;
    for (int m = 0; m < RP_METHOD_COUNT; m++) {
        size_t n = strlen(rp_method_name((rp_method)m));
        ck_assert_msg(strncmp(line, rp_method_name((rp_method)m), n) == 0 && line[n] == ',', "row %d: %s", m, line);
        line = strchr(line, '\n') + 1;
    }
    ck_assert_str_eq(line, "");
    free(csv);

    snprintf(pa, sizeof pa, "%s/results.json", a);
    compare_with_reference(pa, FIXTURE "reference.json", -1);

    /* the live numpy recomputation, where numpy and PIL are installed */
    if (system("/usr/bin/python3 -c 'import numpy, PIL' 2>/dev/null") == 0) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 %s/tools/eval_reference.py --data %sLIST.csv --dump %s --compare %s --tol 1e-6",
                 RELPROP_SOURCE_DIR, FIXTURE, dump, pa);
        int st = system(cmd);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "eval_reference.py reports a mismatch (status %d)", st);
    } else {
        test_skip("test_eval_cli: live numpy recomputation of the metrics",
                  "/usr/bin/python3 lacks numpy or PIL (scripts/setup.sh installs python3-numpy and python3-pil); "
                  "compared with the committed reference only");
    }

    /* results are not overwritten without --force */
    ck_assert_int_eq(run_eval("--onnx", ORACLE_MODEL, "--data", FIXTURE "LIST.csv", "-o", a, "--method", "rollout",
                              "--threads", "1", NULL),
                     EXIT_BAD);
    remove_tmp();
}
END_TEST

START_TEST(eval_without_masks_leaves_fields_empty)
{
    make_tmp();
    char list[128], out[128], path[256];
    snprintf(list, sizeof list, "%s/LIST.csv", tmpdir);
    snprintf(out, sizeof out, "%s/out", tmpdir);
    FILE *f = fopen(list, "w");
    fprintf(f, "image,class,mask\n%stest_2021_009000.png,8,\n%stest_2021_009000.png,6,\n", FIXTURE, FIXTURE);
    fclose(f);
    ck_assert_int_eq(run_eval("--onnx", ORACLE_MODEL, "--data", list, "-o", out, "--method", "rollout",
                              "--threads", "1", NULL),
                     0);
    snprintf(path, sizeof path, "%s/results.csv", out);
    char *csv = slurp(path, NULL);
    const char *row = strchr(csv, '\n') + 1;
    ck_assert_msg(strncmp(row, "rollout,", 8) == 0, "%s", row);
    ck_assert_msg(strstr(row, ",,,,,\n") != NULL, "no empty segmentation/specificity fields: %s", row);
    free(csv);
    snprintf(path, sizeof path, "%s/results.json", out);
    char *json = slurp(path, NULL);
    cJSON *j = cJSON_Parse(json);
    const cJSON *m0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "methods"), 0);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(m0, "miou")));
    ck_assert_int_eq(cJSON_GetObjectItem(m0, "n_perturbation")->valueint, 2);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(m0, "curve_pos")), RP_EVAL_STEPS);
    cJSON_Delete(j);
    free(json);
    remove_tmp();
}
END_TEST

START_TEST(eval_bad_lists)
{
    make_tmp();
    char list[128], out[128];
    snprintf(list, sizeof list, "%s/LIST.csv", tmpdir);
    snprintf(out, sizeof out, "%s/out", tmpdir);
    static const char *const bad[] = {
        "image,label,mask\nx.png,1,\n",                                     /* wrong header */
        "image,class,mask\n",                                               /* no rows */
        "image,class,mask\nx.png,one,\n",                                   /* class not a number */
        "image,class,mask\nx.png,1\n",                                      /* two fields */
        "image,class,mask\n" FIXTURE "test_2021_009000.png,8,\n" FIXTURE "test_2021_009000.png,8,\n", /* twice */
        "image,class,mask\n" FIXTURE "test_2021_009000.png,8,missing.png\n", /* mask not there */
        "image,class,mask\n" FIXTURE "test_2021_009000.png,10,\n",           /* class 10 of 10 */
        "image,class,mask\nnot_there.png,1,\n",                              /* image not there */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        FILE *f = fopen(list, "w");
        fputs(bad[i], f);
        fclose(f);
        ck_assert_msg(run_eval("--onnx", ORACLE_MODEL, "--data", list, "-o", out, "--method", "raw_attention",
                               "--threads", "1", NULL) == EXIT_BAD,
                      "list %zu was accepted", i);
    }
    ck_assert_int_eq(run_eval("--onnx", ORACLE_MODEL, NULL), EXIT_BAD);
    ck_assert_int_eq(run_eval("--onnx", ORACLE_MODEL, "--data", list, "--method", "nope", NULL), EXIT_BAD);
    ck_assert_int_eq(run_eval("--help", NULL), 0);
    remove_tmp();
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("eval_cli");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 1100);
    tcase_add_test(tc, eval_fixture_twice_and_reference);
    tcase_add_test(tc, eval_without_masks_leaves_fields_empty);
    tcase_add_test(tc, eval_bad_lists);
    suite_add_tcase(s, tc);
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
