/* Forward pass against the paper authors' implementation: every oracle case
 * (the fmnist cases copied into tests/oracle, the DeiT-tiny case read from
 * ../shared when present) gives the reference logits within 1e-4 max abs,
 * and the structure found in the graph (attention layers, heads, patch grid,
 * prefix tokens) matches the case's meta.json. */
#include <check.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "relprop/relprop.h"
#include "support/json_file.h"

static const char *cases[] = {
    RELPROP_SOURCE_DIR "/tests/oracle/fmnist_vit_s__timm17",
    RELPROP_SOURCE_DIR "/tests/oracle/fmnist_vit_s__timm13",
    RELPROP_SOURCE_DIR "/tests/oracle/fmnist_vit_s__einsum14",
    RELPROP_SOURCE_DIR "/tests/oracle/fmnist_vit_s__tv",
    RELPROP_SHARED_DIR "/oracle/cases/deit_tiny_random__timm17",
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))


static int json_int(const cJSON *obj, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(obj, a);
    if (b)
        x = cJSON_GetObjectItemCaseSensitive(x, b);
    ck_assert_msg(cJSON_IsNumber(x), "meta.json: no number at %s.%s", a, b ? b : "");
    return x->valueint;
}

static bool case_present(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    return access(path, R_OK) == 0;
}

START_TEST(test_logits)
{
    const char *dir = cases[_i];
    ck_assert_msg(case_present(dir), "%s/model.onnx is missing (the DeiT-tiny case is read from the shared folder "
                  "beside the checkout, ../shared, which CI always has)", dir);
    char path[1024];
    snprintf(path, sizeof path, "%s/meta.json", dir);
    cJSON *meta = json_file_read(path);
    ck_assert_msg(meta != NULL, "cannot read %s", path);
    const cJSON *inputs = cJSON_GetObjectItemCaseSensitive(meta, "inputs");
    ck_assert(cJSON_IsArray(inputs));

    rp_error err = {0};
    rp_model *m = NULL;
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    ck_assert_msg(rp_model_load(path, &m, &err) == RP_OK, "%s", err.msg);
    int checked = 0;
    const cJSON *in;
    cJSON_ArrayForEach(in, inputs)
    {
        int k = json_int(in, "index", NULL);
        const cJSON *classes = cJSON_GetObjectItemCaseSensitive(in, "explained_classes");
        const cJSON *cls;
        cJSON_ArrayForEach(cls, classes)
        {
            rp_tensor x = {0}, y = {0}, want = {0};
            snprintf(path, sizeof path, "%s/inputs/input_%d.npy", dir, k);
            ck_assert_msg(rp_npy_read(path, &x, &err) == RP_OK, "%s", err.msg);
            snprintf(path, sizeof path, "%s/expected/input_%d/class_%d/logits.npy", dir, k, cls->valueint);
            if (access(path, R_OK) != 0) { /* DeiT keeps a subset */
                rp_tensor_release(&x);
                continue;
            }
            ck_assert_msg(rp_npy_read(path, &want, &err) == RP_OK, "%s", err.msg);
            ck_assert_msg(rp_model_run(m, &x, &y, &err) == RP_OK, "%s", err.msg);
            ck_assert_int_eq(y.count, want.count);
            double worst = 0;
            for (int64_t i = 0; i < y.count; i++) {
                double d = fabs((double)((float *)y.data)[i] - ((float *)want.data)[i]);
                worst = d > worst ? d : worst;
            }
            ck_assert_msg(worst <= 1e-4, "%s input %d: logits differ by %g (max abs), limit 1e-4", dir, k, worst);
            checked++;
            rp_tensor_release(&x);
            rp_tensor_release(&y);
            rp_tensor_release(&want);
        }
    }
    ck_assert_msg(checked > 0, "%s: no logits compared", dir);
    rp_model_free(m);
    cJSON_Delete(meta);
}
END_TEST

START_TEST(test_structure)
{
    const char *dir = cases[_i];
    ck_assert_msg(case_present(dir), "%s/model.onnx is missing", dir);
    char path[1024];
    snprintf(path, sizeof path, "%s/meta.json", dir);
    cJSON *meta = json_file_read(path);
    ck_assert(meta != NULL);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(meta, "model");
    int depth = json_int(model, "depth", NULL), heads = json_int(model, "num_heads", NULL);
    int tokens = json_int(model, "num_tokens", NULL), patch = json_int(model, "patch_size", NULL);
    const cJSON *grid = cJSON_GetObjectItemCaseSensitive(model, "grid");

    rp_error err = {0};
    rp_model *m = NULL;
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    ck_assert_msg(rp_model_load(path, &m, &err) == RP_OK, "%s", err.msg);
    ck_assert_int_eq(rp_model_attention_count(m), depth);
    for (int l = 0; l < depth; l++) {
        rp_attention_info a;
        ck_assert(rp_model_attention(m, l, &a, &err) == RP_OK);
        ck_assert_int_eq(a.heads, heads);
        ck_assert_int_eq(a.tokens, tokens);
    }
    rp_token_layout tl;
    ck_assert_msg(rp_model_token_layout(m, &tl, &err) == RP_OK, "%s", err.msg);
    ck_assert_int_eq(tl.grid_h, cJSON_GetArrayItem(grid, 0)->valueint);
    ck_assert_int_eq(tl.grid_w, cJSON_GetArrayItem(grid, 1)->valueint);
    ck_assert_int_eq(tl.patch_h, patch);
    ck_assert_int_eq(tl.prefix_tokens, 1);
    rp_model_free(m);
    cJSON_Delete(meta);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("oracle_forward");
    TCase *tc = tcase_create("cases");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_logits, 0, N_CASES);
    tcase_add_loop_test(tc, test_structure, 0, N_CASES);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
