/* The shipped model on its sample photos, through the same public calls the
 * CLI makes (image → model preprocessing from metadata → explain): both
 * items' classes are in the top-2, and each class's transformer_attribution
 * map puts its positive relevance on its own item.
 *
 * Threshold: relevance is read per 8×8 patch; a patch belongs to an item
 * when its mask covers any of its pixels. Each item covers at most 16 of the
 * 64 patches (its box is at most 32×32 px), so a map that ignored the class
 * would put roughly equal shares on both items, and a uniform one at most
 * 25% on either. We require at least 50% of the positive relevance on the
 * explained item's patches and at least 3 times its share on the other
 * item's: far above chance, below what the model reaches (92% or more). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relprop/relprop.h"

#define MODEL RELPROP_SOURCE_DIR "/models/fmnist_vit.onnx"
#define DEMO RELPROP_SOURCE_DIR "/tests/data/demo"
#define MIN_OWN_SHARE 0.5
#define MIN_OWN_OVER_OTHER 3.0

typedef struct sample {
    char name[64];
    int classes[2];
} sample;

static sample samples[16];
static int n_samples;

static void read_samples(void)
{
    FILE *f = fopen(DEMO "/samples.txt", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f) && n_samples < 16) {
        sample *s = &samples[n_samples];
        if (line[0] != '#' && sscanf(line, "%63s %d %d", s->name, &s->classes[0], &s->classes[1]) == 3)
            n_samples++;
    }
    if (f)
        fclose(f);
}

/* Share of positive relevance on the patches item k covers. */
static double share_on_item(const float *map, int grid, int patch, const uint8_t *mask, int size)
{
    double total = 0, on = 0;
    for (int py = 0; py < grid; py++)
        for (int px = 0; px < grid; px++) {
            double r = map[py * grid + px];
            if (r <= 0)
                continue;
            total += r;
            bool covered = false;
            for (int y = py * patch; y < (py + 1) * patch && !covered; y++)
                for (int x = px * patch; x < (px + 1) * patch; x++)
                    if (mask[y * size + x]) {
                        covered = true;
                        break;
                    }
            on += covered ? r : 0;
        }
    return total > 0 ? on / total : 0;
}

START_TEST(test_sample)
{
    const sample *s = &samples[_i];
    rp_error err = {0};
    rp_model *m = NULL;
    ck_assert_msg(rp_model_load(MODEL, &m, &err) == RP_OK, "%s", err.msg);
    rp_preprocess pre;
    bool found = false;
    ck_assert_msg(rp_model_preprocess(m, &pre, &found, &err) == RP_OK, "%s", err.msg);
    ck_assert_msg(found, "the shipped model carries its preprocessing in metadata");
    char path[1024];
    snprintf(path, sizeof path, "%s/samples/%s.png", RELPROP_SOURCE_DIR, s->name);
    rp_image im = {0};
    ck_assert_msg(rp_image_load(path, &im, &err) == RP_OK, "%s", err.msg);
    rp_tensor x = {0}, masks = {0};
    ck_assert_msg(rp_image_to_tensor(&im, &pre, 3, &x, &err) == RP_OK, "%s", err.msg);
    snprintf(path, sizeof path, "%s/%s.masks.npy", DEMO, s->name);
    ck_assert_msg(rp_npy_read(path, &masks, &err) == RP_OK, "%s", err.msg);
    int size = (int)masks.dims[2];

    rp_method method = RP_METHOD_TRANSFORMER_ATTRIBUTION;
    rp_explanation *e = NULL;
    ck_assert_msg(rp_explain(m, &x, s->classes, 2, &method, 1, NULL, &e, &err) == RP_OK, "%s", err.msg);
    /* Both classes in the top-2 logits. */
    const float *y = rp_explanation_logits(e)->data;
    int64_t n = rp_explanation_logits(e)->count;
    for (int k = 0; k < 2; k++) {
        int better = 0;
        for (int64_t c = 0; c < n; c++)
            better += y[c] > y[s->classes[k]];
        ck_assert_msg(better <= 1, "%s: class %d ranks %d", s->name, s->classes[k], better + 1);
    }
    rp_token_layout tl;
    ck_assert(rp_model_token_layout(m, &tl, &err) == RP_OK);
    for (int k = 0; k < 2; k++) {
        const float *map = rp_explanation_map(e, k, 0)->data;
        const uint8_t *own = (const uint8_t *)masks.data + (size_t)k * size * size;
        const uint8_t *other = (const uint8_t *)masks.data + (size_t)(1 - k) * size * size;
        double s_own = share_on_item(map, tl.grid_w, tl.patch_w, own, size);
        double s_other = share_on_item(map, tl.grid_w, tl.patch_w, other, size);
        printf("%s class %d: %.2f of positive relevance on its item, %.2f on the other\n", s->name, s->classes[k],
               s_own, s_other);
        ck_assert_msg(s_own >= MIN_OWN_SHARE && s_own >= MIN_OWN_OVER_OTHER * s_other,
                      "%s class %d: own share %.2f, other %.2f", s->name, s->classes[k], s_own, s_other);
    }
    rp_explanation_free(e);
    rp_tensor_release(&masks);
    rp_tensor_release(&x);
    rp_image_release(&im);
    rp_model_free(m);
}
END_TEST

int main(void)
{
    read_samples();
    Suite *su = suite_create("demo_model");
    TCase *tc = tcase_create("samples");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_sample, 0, n_samples > 0 ? n_samples : 1);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return (failed || n_samples < 4) ? EXIT_FAILURE : EXIT_SUCCESS;
}
