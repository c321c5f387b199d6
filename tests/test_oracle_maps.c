/* Every method against the paper authors' implementation (docs/method.md §5,
 * ../shared/oracle/README.md): for every oracle case, input and explained
 * class, each patch map is within 1e-2 of the expected map relative to its
 * largest magnitude, and within 1e-3 of the float64 reference (the float32
 * reference itself is up to ~1e-3 away from its float64 run), and the
 * pixel map of lrp_full correlates with the float64 reference at r >= 0.98.
 * The DeiT-tiny case is read from ../shared (CI always has it): there the
 * authors' own float32 maps are ill-conditioned (lrp_full reaches only
 * r = 0.52 against float64, the others ~1.3e-3), so its float64 checks are
 * printed, not asserted. Per-layer intermediates are compared when ../shared
 * has them, to say where a difference starts. Where each limit comes from:
 * tests/README.md, "Cross-machine tolerances". */
#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "relprop/relprop.h"
#include "support/json_file.h"

typedef struct oracle_case {
    const char *dir;
    const char *shared_dir; /* where per-layer intermediates live */
    bool assert_lrp_full;
} oracle_case;

static const oracle_case cases[] = {
    {RELPROP_SOURCE_DIR "/tests/oracle/fmnist_vit_s__timm17", RELPROP_SHARED_DIR "/oracle/cases/fmnist_vit_s__timm17", true},
    {RELPROP_SOURCE_DIR "/tests/oracle/fmnist_vit_s__timm13", RELPROP_SHARED_DIR "/oracle/cases/fmnist_vit_s__timm13", true},
    {RELPROP_SOURCE_DIR "/tests/oracle/fmnist_vit_s__einsum14", RELPROP_SHARED_DIR "/oracle/cases/fmnist_vit_s__einsum14", true},
    {RELPROP_SOURCE_DIR "/tests/oracle/fmnist_vit_s__tv", RELPROP_SHARED_DIR "/oracle/cases/fmnist_vit_s__tv", true},
    {RELPROP_SHARED_DIR "/oracle/cases/deit_tiny_random__timm17", RELPROP_SHARED_DIR "/oracle/cases/deit_tiny_random__timm17", false},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

#define REL_LIMIT 1e-2
#define REL_AIM 1e-3
/* lrp_full sums millions of signed terms per pixel: float32 rounding alone
 * takes the authors' own float32 run to r = 0.9968 against their float64
 * run, and relprop's to 0.9920 on one OpenBLAS kernel family (SkylakeX). The
 * limit leaves 2.5x that; a wrong rule gives r far below (0.7 and less). */
#define PEARSON_LIMIT 0.98


/* max|a-b| / max|b| over finite b; an all-NaN expected map accepts all zeros. */
static double rel_error(const float *a, const float *b, int64_t n)
{
    double worst = 0, scale = 0;
    int64_t finite = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(b[i]))
            continue;
        finite++;
        worst = fmax(worst, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    if (finite == 0) {
        for (int64_t i = 0; i < n; i++)
            if (a[i] != 0)
                return INFINITY;
        return 0;
    }
    return scale > 0 ? worst / scale : (worst == 0 ? 0 : INFINITY);
}

static double pearson(const float *a, const float *b, int64_t n)
{
    double ma = 0, mb = 0;
    for (int64_t i = 0; i < n; i++) {
        ma += a[i];
        mb += b[i];
    }
    ma /= (double)n;
    mb /= (double)n;
    double sab = 0, saa = 0, sbb = 0;
    for (int64_t i = 0; i < n; i++) {
        sab += (a[i] - ma) * (b[i] - mb);
        saa += (a[i] - ma) * (a[i] - ma);
        sbb += (b[i] - mb) * (b[i] - mb);
    }
    return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN;
}

/* Reads expected file as float32 (f64 files converted). Returns false if absent. */
static bool load_expected(const char *path, rp_tensor *t)
{
    if (access(path, R_OK) != 0)
        return false;
    rp_error err = {0};
    ck_assert_msg(rp_npy_read(path, t, &err) == RP_OK, "%s", err.msg);
    if (t->dtype == RP_DOUBLE) {
        float *f = malloc(sizeof(float) * (size_t)(t->count ? t->count : 1));
        for (int64_t i = 0; i < t->count; i++)
            f[i] = (float)((double *)t->data)[i];
        free(t->data);
        t->data = f;
        t->dtype = RP_FLOAT;
    }
    ck_assert_int_eq(t->dtype, RP_FLOAT);
    return true;
}

static void compare_intermediates(const char *shared_dir, int k, int cls, const rp_explanation *e, int ci)
{
    static const char *names[3] = {"attn", "attn_grad", "attn_cam"};
    for (int l = 0; l < rp_explanation_layer_count(e); l++) {
        const rp_tensor *t[3];
        rp_explanation_layer(e, ci, l, &t[0], &t[1], &t[2]);
        for (int q = 0; q < 3; q++) {
            char path[1024];
            snprintf(path, sizeof path, "%s/expected/input_%d/class_%d/%s_%d.npy", shared_dir, k, cls, names[q], l);
            rp_tensor want = {0};
            if (!t[q] || !load_expected(path, &want))
                continue;
            ck_assert_int_eq(want.count, t[q]->count);
            double r = rel_error(t[q]->data, want.data, want.count);
            printf("    input %d class %d %s_%d: rel err %.2e\n", k, cls, names[q], l, r);
            rp_tensor_release(&want);
        }
    }
}

START_TEST(test_case_maps)
{
    const oracle_case *oc = &cases[_i];
    char path[1024];
    snprintf(path, sizeof path, "%s/model.onnx", oc->dir);
    ck_assert_msg(access(path, R_OK) == 0, "%s is missing (the DeiT-tiny case is read from the shared folder beside "
                  "the checkout, ../shared, which CI always has)", path);
    snprintf(path, sizeof path, "%s/meta.json", oc->dir);
    cJSON *meta = json_file_read(path);
    ck_assert_msg(meta != NULL, "cannot read %s", path);
    rp_error err = {0};
    rp_model *m = NULL;
    snprintf(path, sizeof path, "%s/model.onnx", oc->dir);
    ck_assert_msg(rp_model_load(path, &m, &err) == RP_OK, "%s", err.msg);

    rp_method methods[RP_METHOD_COUNT];
    for (int i = 0; i < RP_METHOD_COUNT; i++)
        methods[i] = (rp_method)i;
    double worst[RP_METHOD_COUNT] = {0}, worst64[RP_METHOD_COUNT] = {0};
    double worst_r_full = 1.0;
    int compared = 0;
    const cJSON *in;
    cJSON_ArrayForEach(in, cJSON_GetObjectItemCaseSensitive(meta, "inputs"))
    {
        int k = cJSON_GetObjectItemCaseSensitive(in, "index")->valueint;
        const cJSON *cl;
        int classes[8], n_classes = 0;
        cJSON_ArrayForEach(cl, cJSON_GetObjectItemCaseSensitive(in, "explained_classes"))
        {
            snprintf(path, sizeof path, "%s/expected/input_%d/class_%d", oc->dir, k, cl->valueint);
            if (access(path, R_OK) == 0 && n_classes < 8)
                classes[n_classes++] = cl->valueint;
        }
        if (n_classes == 0)
            continue;
        rp_tensor x = {0};
        snprintf(path, sizeof path, "%s/inputs/input_%d.npy", oc->dir, k);
        ck_assert_msg(rp_npy_read(path, &x, &err) == RP_OK, "%s", err.msg);
        rp_explanation *e = NULL;
        /* As users run it: with the memory plan that lets values no walk
         * reads share buffers (the intermediates, kept only on a failure
         * below, turn it off). */
        ck_assert_msg(rp_explain(m, &x, classes, n_classes, methods, RP_METHOD_COUNT, NULL, &e, &err) == RP_OK,
                      "%s input %d: %s", oc->dir, k, err.msg);
        for (int ci = 0; ci < n_classes; ci++) {
            int cls = classes[ci];
            for (int mi = 0; mi < RP_METHOD_COUNT; mi++) {
                const rp_tensor *got = rp_explanation_map(e, ci, mi);
                const char *name = rp_method_name(methods[mi]);
                rp_tensor want = {0};
                bool full = methods[mi] == RP_METHOD_LRP_FULL;
                snprintf(path, sizeof path, "%s/expected/input_%d/class_%d/%s%s.npy", oc->dir, k, cls,
                         full ? "f64/" : "", name);
                if (!load_expected(path, &want))
                    continue;
                ck_assert_msg(got->count == want.count, "%s: %lld values, expected %lld", path,
                              (long long)got->count, (long long)want.count);
                if (full) {
                    double r = pearson(got->data, want.data, want.count);
                    printf("  %s input %d class %d lrp_full: pearson r vs float64 %.5f\n", oc->dir, k, cls, r);
                    worst_r_full = fmin(worst_r_full, r);
                    if (oc->assert_lrp_full)
                        ck_assert_msg(r >= PEARSON_LIMIT, "%s: pearson r %.4f < %.2f", path, r, PEARSON_LIMIT);
                } else {
                    double r = rel_error(got->data, want.data, want.count);
                    worst[mi] = fmax(worst[mi], r);
                    if (r > REL_LIMIT) {
                        rp_explanation *ei = NULL;
                        rp_explain_options opt = {.keep_intermediates = true};
                        if (rp_explain(m, &x, classes, n_classes, methods, RP_METHOD_COUNT, &opt, &ei, &err) == RP_OK)
                            compare_intermediates(oc->shared_dir, k, cls, ei, ci);
                        rp_explanation_free(ei);
                    }
                    ck_assert_msg(r <= REL_LIMIT, "%s: relative error %.3e > %.0e", path, r, REL_LIMIT);
                    /* The reference's own float32 rounding is up to ~1e-3 here; against its
                     * float64 run relprop must meet the 1e-3 aim. */
                    rp_tensor want64 = {0};
                    snprintf(path, sizeof path, "%s/expected/input_%d/class_%d/f64/%s.npy", oc->dir, k, cls, name);
                    if (load_expected(path, &want64)) {
                        double r64 = rel_error(got->data, want64.data, want64.count);
                        worst64[mi] = fmax(worst64[mi], r64);
                        if (oc->assert_lrp_full)
                            ck_assert_msg(r64 <= REL_AIM, "%s: relative error vs float64 %.3e > %.0e", path, r64,
                                          REL_AIM);
                        rp_tensor_release(&want64);
                    }
                }
                compared++;
                rp_tensor_release(&want);
            }
        }
        rp_explanation_free(e);
        rp_tensor_release(&x);
    }
    printf("%s: worst relative error per method:", oc->dir);
    for (int mi = 0; mi < RP_METHOD_COUNT; mi++)
        if (methods[mi] != RP_METHOD_LRP_FULL)
            printf(" %s %.2e (vs float64 %.2e)", rp_method_name(methods[mi]), worst[mi], worst64[mi]);
    printf("; lrp_full worst pearson r %.4f\n", worst_r_full);
    ck_assert_msg(compared > 0, "%s: nothing compared", oc->dir);
    rp_model_free(m);
    cJSON_Delete(meta);
}
END_TEST

/* The same request twice gives identical maps, bit for bit. */
START_TEST(test_deterministic)
{
    rp_error err = {0};
    rp_model *m = NULL;
    ck_assert_msg(rp_model_load(RELPROP_SOURCE_DIR "/tests/oracle/fmnist_vit_s__timm17/model.onnx", &m, &err) == RP_OK,
                  "%s", err.msg);
    rp_tensor x = {0};
    ck_assert(rp_npy_read(RELPROP_SOURCE_DIR "/tests/oracle/fmnist_vit_s__timm17/inputs/input_1.npy", &x, &err) ==
              RP_OK);
    rp_method methods[RP_METHOD_COUNT];
    for (int i = 0; i < RP_METHOD_COUNT; i++)
        methods[i] = (rp_method)i;
    int classes[2] = {0, 1};
    rp_explanation *a = NULL, *b = NULL;
    ck_assert_msg(rp_explain(m, &x, classes, 2, methods, RP_METHOD_COUNT, NULL, &a, &err) == RP_OK, "%s", err.msg);
    ck_assert_msg(rp_explain(m, &x, classes, 2, methods, RP_METHOD_COUNT, NULL, &b, &err) == RP_OK, "%s", err.msg);
    for (int ci = 0; ci < 2; ci++)
        for (int mi = 0; mi < RP_METHOD_COUNT; mi++) {
            const rp_tensor *p = rp_explanation_map(a, ci, mi), *q = rp_explanation_map(b, ci, mi);
            ck_assert_int_eq(p->count, q->count);
            ck_assert_msg(memcmp(p->data, q->data, sizeof(float) * (size_t)p->count) == 0, "%s differs between runs",
                          rp_method_name(methods[mi]));
        }
    rp_explanation_free(a);
    rp_explanation_free(b);
    rp_tensor_release(&x);
    rp_model_free(m);
}
END_TEST

/* Asked alone, each method's walks stop at the lowest layer it reads (the
 * last one for GradCAM and partial LRP, the start layer for transformer
 * attribution); its map must be the one the full-depth walk of a request for
 * every method gives, bit for bit (the same nodes run in the same order). */
START_TEST(test_each_method_alone)
{
    rp_error err = {0};
    rp_model *m = NULL;
    ck_assert_msg(rp_model_load(RELPROP_SOURCE_DIR "/tests/oracle/fmnist_vit_s__timm17/model.onnx", &m, &err) == RP_OK,
                  "%s", err.msg);
    rp_tensor x = {0};
    ck_assert(rp_npy_read(RELPROP_SOURCE_DIR "/tests/oracle/fmnist_vit_s__timm17/inputs/input_0.npy", &x, &err) ==
              RP_OK);
    rp_method methods[RP_METHOD_COUNT];
    for (int i = 0; i < RP_METHOD_COUNT; i++)
        methods[i] = (rp_method)i;
    int cls = 3;
    for (int start = 0; start <= 2; start += 2) {
        rp_explain_options opt = {.start_layer = start};
        rp_explanation *all = NULL;
        ck_assert_msg(rp_explain(m, &x, &cls, 1, methods, RP_METHOD_COUNT, &opt, &all, &err) == RP_OK, "%s", err.msg);
        for (int mi = 0; mi < RP_METHOD_COUNT; mi++) {
            rp_explanation *one = NULL;
            ck_assert_msg(rp_explain(m, &x, &cls, 1, &methods[mi], 1, &opt, &one, &err) == RP_OK, "%s", err.msg);
            const rp_tensor *p = rp_explanation_map(all, 0, mi), *q = rp_explanation_map(one, 0, 0);
            ck_assert_int_eq(p->count, q->count);
            ck_assert_msg(memcmp(p->data, q->data, sizeof(float) * (size_t)p->count) == 0,
                          "%s alone (start layer %d) differs from the all-methods run", rp_method_name(methods[mi]),
                          start);
            rp_explanation_free(one);
        }
        rp_explanation_free(all);
    }
    rp_tensor_release(&x);
    rp_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("oracle_maps");
    TCase *tc = tcase_create("cases");
    tcase_set_timeout(tc, 600);
    tcase_add_loop_test(tc, test_case_maps, 0, N_CASES);
    tcase_add_test(tc, test_deterministic);
    tcase_add_test(tc, test_each_method_alone);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
