/* The evaluation metrics (relprop.h, "evaluation"; src/methods/eval_*.c) on
 * tiny hand-made maps and masks whose answers are worked out in the
 * comments: the pixel map (bilinear by hand), removal orders with ties, the
 * step counts, AUC of known curves, top-k with ties, average precision of
 * known rankings (with ties, without positives), the segmentation counts
 * and IoU of known masks, class specificity and the pointing game, the
 * perturbation loop against a one-node model, the plot, and argument errors.
 * tests/test_eval_cli.c runs `relprop eval` end to end. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relprop/relprop.h"

#define ORACLE_MODEL RELPROP_SOURCE_DIR "/tests/oracle/fmnist_vit_s__timm17/model.onnx"

START_TEST(pixel_map_bilinear_by_hand)
{
    /* grid [[0,1],[2,3]], patch 2: torch's half-pixel taps for 2 -> 4 are
     * (i0, lambda) = (0, 0), (0, .25), (0, .75), (1, 0) (edge clamp), so the
     * rows along x are [0 .25 .75 1] and [2 2.25 2.75 3] and along y the
     * rows mix 1:0, .75:.25, .25:.75, 0:1. All exact in float. */
    float g[4] = {0, 1, 2, 3};
    rp_tensor map = {.dtype = RP_FLOAT, .rank = 2, .dims = {2, 2}, .count = 4, .data = g};
    float out[16];
    rp_error err = {0};
    ck_assert_int_eq(rp_eval_pixel_map(&map, 2, 2, out, &err), RP_OK);
    const float want[16] = {0, .25f, .75f, 1, .5f, .75f, 1.25f, 1.5f, 1.5f, 1.75f, 2.25f, 2.5f, 2, 2.25f, 2.75f, 3};
    for (int i = 0; i < 16; i++)
        ck_assert_msg(out[i] == want[i], "pixel %d: %g, expected %g", i, out[i], want[i]);
    /* a pixel map (patch 1) is copied */
    ck_assert_int_eq(rp_eval_pixel_map(&map, 1, 1, out, &err), RP_OK);
    for (int i = 0; i < 4; i++)
        ck_assert(out[i] == g[i]);
    /* leading unit dimensions are accepted */
    rp_tensor map4 = {.dtype = RP_FLOAT, .rank = 4, .dims = {1, 1, 2, 2}, .count = 4, .data = g};
    ck_assert_int_eq(rp_eval_pixel_map(&map4, 2, 2, out, &err), RP_OK);
    ck_assert(out[5] == .75f);
}
END_TEST

START_TEST(pixel_map_errors)
{
    float g[4] = {0, NAN, 2, 3};
    rp_tensor map = {.dtype = RP_FLOAT, .rank = 2, .dims = {2, 2}, .count = 4, .data = g};
    float out[16];
    rp_error err = {0};
    ck_assert_int_eq(rp_eval_pixel_map(&map, 2, 2, out, &err), RP_ERR_VALUE);
    ck_assert_ptr_nonnull(strstr(err.msg, "element 1"));
    g[1] = 1;
    ck_assert_int_eq(rp_eval_pixel_map(&map, 0, 2, out, &err), RP_ERR_SHAPE);
    rp_tensor v = {.dtype = RP_FLOAT, .rank = 1, .dims = {4}, .count = 4, .data = g};
    ck_assert_int_eq(rp_eval_pixel_map(&v, 2, 2, out, &err), RP_ERR_SHAPE);
    int64_t gi[4] = {0};
    rp_tensor wrong = {.dtype = RP_INT64, .rank = 2, .dims = {2, 2}, .count = 4, .data = gi};
    ck_assert_int_eq(rp_eval_pixel_map(&wrong, 2, 2, out, &err), RP_ERR_DTYPE);
}
END_TEST

START_TEST(order_with_ties)
{
    const float v[5] = {0.5f, 1.0f, 0.5f, 0.2f, 1.0f};
    int64_t o[5];
    rp_error err = {0};
    /* most relevant first: 1.0 at 1 and 4 (index order), 0.5 at 0 and 2, 0.2 */
    ck_assert_int_eq(rp_eval_order(v, 5, true, o, &err), RP_OK);
    const int64_t most[5] = {1, 4, 0, 2, 3};
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(o[i], most[i]);
    /* least relevant first: ties also in index order (not reversed) */
    ck_assert_int_eq(rp_eval_order(v, 5, false, o, &err), RP_OK);
    const int64_t least[5] = {3, 0, 2, 1, 4};
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(o[i], least[i]);
}
END_TEST

START_TEST(step_counts)
{
    /* floor(n * step / 10): 4096 -> 0, 409, 819, 1228, 1638, 2048, 2457, 2867, 3276, 3686 */
    const int64_t want[RP_EVAL_STEPS] = {0, 409, 819, 1228, 1638, 2048, 2457, 2867, 3276, 3686};
    for (int s = 0; s < RP_EVAL_STEPS; s++)
        ck_assert_int_eq(rp_eval_step_count(4096, s), want[s]);
    ck_assert_int_eq(rp_eval_step_count(10, 7), 7);
    ck_assert_int_eq(rp_eval_step_count(50176, 3), 15052); /* 224 x 224: int(50176 * 0.3) = 15052 */
}
END_TEST

START_TEST(auc_known_curves)
{
    double ones[10], spike[10] = {1}, line[10];
    for (int i = 0; i < 10; i++) {
        ones[i] = 1;
        line[i] = 1 - i / 10.0;
    }
    /* constant 1 over [0, 0.9]: 0.9 */
    ck_assert_double_eq_tol(rp_eval_auc(ones, 10, 0.1), 0.9, 1e-15);
    /* 1 at 0, then 0: one triangle, 0.1 * 1 / 2 */
    ck_assert_double_eq_tol(rp_eval_auc(spike, 10, 0.1), 0.05, 1e-15);
    /* 1 - x from 0 to 0.9: 0.9 - 0.81 / 2 = 0.495 (the trapezoid is exact on a line) */
    ck_assert_double_eq_tol(rp_eval_auc(line, 10, 0.1), 0.495, 1e-15);
    /* np.trapz([0.2, 0.6, 0.4], dx=0.5) = 0.5 * (0.4 + 0.5) = 0.45 */
    const double y[3] = {0.2, 0.6, 0.4};
    ck_assert_double_eq_tol(rp_eval_auc(y, 3, 0.5), 0.45, 1e-15);
    ck_assert_double_eq(rp_eval_auc(y, 1, 0.5), 0);
}
END_TEST

START_TEST(top_k_with_ties)
{
    const float l[4] = {1, 3, 3, 2};
    ck_assert(rp_eval_in_top_k(l, 4, 1, 1));  /* 3 at index 1 comes first */
    ck_assert(!rp_eval_in_top_k(l, 4, 2, 1)); /* the tie goes to the smaller index */
    ck_assert(rp_eval_in_top_k(l, 4, 2, 2));
    ck_assert(!rp_eval_in_top_k(l, 4, 3, 2));
    ck_assert(rp_eval_in_top_k(l, 4, 0, 4));
    ck_assert(!rp_eval_in_top_k(l, 4, 4, 4)); /* out of range */
    ck_assert(!rp_eval_in_top_k(l, 4, -1, 4));
}
END_TEST

static double ap_of(const float *s, const uint8_t *l, int64_t n)
{
    double ap = -1;
    rp_error err = {0};
    ck_assert_int_eq(rp_eval_average_precision(s, l, n, &ap, &err), RP_OK);
    return ap;
}

START_TEST(average_precision_known_rankings)
{
    /* positives at ranks 1 and 3 of 4: precision 1 at recall .5, 2/3 at 1 -> 5/6 */
    const float s1[4] = {0.9f, 0.8f, 0.7f, 0.6f};
    const uint8_t l1[4] = {1, 0, 1, 0};
    ck_assert_double_eq_tol(ap_of(s1, l1, 4), 5.0 / 6.0, 1e-15);
    /* ties: scores .9 (neg), .5 (pos), .5 (neg), .1 (pos). The tied pair is one
     * threshold: recall .5 at precision 1/3, then recall 1 at 2/4:
     * .5 / 3 + .5 * .5 = 5/12 (sklearn gives 0.41666...) */
    const float s2[4] = {0.9f, 0.5f, 0.5f, 0.1f};
    const uint8_t l2[4] = {0, 1, 0, 1};
    ck_assert_double_eq_tol(ap_of(s2, l2, 4), 5.0 / 12.0, 1e-15);
    /* the order inside a tie does not matter */
    const float s3[4] = {0.9f, 0.5f, 0.5f, 0.1f};
    const uint8_t l3[4] = {0, 0, 1, 1};
    ck_assert_double_eq_tol(ap_of(s3, l3, 4), 5.0 / 12.0, 1e-15);
    /* all scores equal: precision = share of positives */
    const float s4[5] = {1, 1, 1, 1, 1};
    const uint8_t l4[5] = {1, 0, 0, 1, 0};
    ck_assert_double_eq_tol(ap_of(s4, l4, 5), 0.4, 1e-15);
    /* perfect ranking: 1; no positives: 0 (the paper's nan_to_num) */
    const uint8_t l5[4] = {1, 1, 0, 0};
    ck_assert_double_eq_tol(ap_of(s1, l5, 4), 1.0, 1e-15);
    const uint8_t l6[4] = {0, 0, 0, 0};
    ck_assert_double_eq(ap_of(s1, l6, 4), 0.0);
}
END_TEST

START_TEST(segmentation_known_masks)
{
    /* map [0, 1, .2, .8] is already normalised; mean .5 -> foreground
     * [0 1 0 1]; mask [0 1 1 0]: right at pixels 0 and 1; background
     * intersection 1 (pixel 0), foreground 1 (pixel 1); each union 2+2-1 = 3.
     * AP of m vs mask, ranked: 1 (pos), .8 (neg), .2 (pos), 0 (neg)
     * -> 1 * .5 + 2/3 * .5 = 5/6; AP of 1 - m vs 1 - mask the same by symmetry. */
    const float map[4] = {0, 1, 0.2f, 0.8f};
    const uint8_t mask[4] = {0, 1, 1, 0};
    rp_eval_seg s;
    rp_error err = {0};
    ck_assert_int_eq(rp_eval_segmentation(map, mask, 4, &s, &err), RP_OK);
    ck_assert_int_eq(s.correct, 2);
    ck_assert_int_eq(s.labeled, 4);
    ck_assert_int_eq(s.inter[0], 1);
    ck_assert_int_eq(s.inter[1], 1);
    ck_assert_int_eq(s.uni[0], 3);
    ck_assert_int_eq(s.uni[1], 3);
    ck_assert_double_eq_tol(s.ap_fg, 5.0 / 6.0, 1e-12);
    ck_assert_double_eq_tol(s.ap_bg, 5.0 / 6.0, 1e-12);
    /* pooled, as the paper's get_ap_scores: the 8 scores [m, 1 - m] against
     * [mask, 1 - mask]. In float, 1 - .8f = 0.19999999 < .2f, so they rank
     * 1 (2 pos), .8 (2 neg), .2f (pos), 0.19999999 (pos), 0 (2 neg):
     * .5 * 1 + .25 * 3/5 + .25 * 4/6 = 49/60 */
    ck_assert_double_eq_tol(s.ap_pooled, 49.0 / 60.0, 1e-12);

    /* min-max first: [10, 30, 14, 26] normalises to the map above */
    const float scaled[4] = {10, 30, 14, 26};
    rp_eval_seg s2;
    ck_assert_int_eq(rp_eval_segmentation(scaled, mask, 4, &s2, &err), RP_OK);
    ck_assert_int_eq(s2.correct, 2);
    ck_assert_int_eq(s2.inter[1], 1);

    /* a perfect map: IoU 1 for both classes */
    const float exact[4] = {0, 1, 1, 0};
    ck_assert_int_eq(rp_eval_segmentation(exact, mask, 4, &s2, &err), RP_OK);
    ck_assert_int_eq(s2.correct, 4);
    ck_assert_int_eq(s2.inter[0], s2.uni[0]);
    ck_assert_int_eq(s2.inter[1], s2.uni[1]);
    ck_assert_double_eq_tol(s2.ap_fg, 1, 1e-15);

    /* a constant map is all zeros: nothing above the mean, all background;
     * background IoU 2 / 4, foreground 0 / 2; AP = share of positives */
    const float flat[4] = {7, 7, 7, 7};
    ck_assert_int_eq(rp_eval_segmentation(flat, mask, 4, &s2, &err), RP_OK);
    ck_assert_int_eq(s2.correct, 2);
    ck_assert_int_eq(s2.inter[0], 2);
    ck_assert_int_eq(s2.uni[0], 4);
    ck_assert_int_eq(s2.inter[1], 0);
    ck_assert_int_eq(s2.uni[1], 2);
    ck_assert_double_eq_tol(s2.ap_fg, 0.5, 1e-15);
    /* pooled: 1 - m = 1 ranks the background labels (2 of 4 positive) first,
     * then m = 0 the mask's: precision .5 at recall .5 and at 1 */
    ck_assert_double_eq_tol(s2.ap_pooled, 0.5, 1e-15);

    /* the threshold is strict: a value equal to the mean is background */
    const float half[2] = {0, 1};
    const uint8_t one[2] = {0, 1};
    ck_assert_int_eq(rp_eval_segmentation(half, one, 2, &s2, &err), RP_OK);
    ck_assert_int_eq(s2.correct, 2);
    ck_assert_int_eq(rp_eval_segmentation(NULL, one, 2, &s2, &err), RP_ERR_ARG);
}
END_TEST

START_TEST(specificity_and_pointing)
{
    /* positive relevance 3 + 1 = 4 (the -1 does not count): 3 on the target,
     * 1 on the other object; the maximum (pixel 0) is on the target */
    const float map[5] = {3, -1, 1, 0, 0};
    const uint8_t t[5] = {1, 0, 0, 0, 1}, o[5] = {1, 0, 1, 1, 0};
    rp_eval_spec s;
    rp_error err = {0};
    ck_assert_int_eq(rp_eval_specificity(map, t, o, 5, &s, &err), RP_OK);
    ck_assert_double_eq_tol(s.share_target, 0.75, 1e-15); /* pixel 0 is in both masks: it counts for the target */
    ck_assert_double_eq_tol(s.share_others, 0.25, 1e-15);
    ck_assert(s.pointing_hit);
    /* the maximum on the other object; a tie of maxima goes to the first pixel */
    const float map2[5] = {0, 0, 2, 2, 1};
    const uint8_t t2[5] = {0, 0, 0, 1, 1};
    ck_assert_int_eq(rp_eval_specificity(map2, t2, o, 5, &s, &err), RP_OK);
    ck_assert(!s.pointing_hit);
    ck_assert_double_eq_tol(s.share_target, 0.6, 1e-15);
    ck_assert_double_eq_tol(s.share_others, 0.4, 1e-15);
    /* no positive relevance: both shares 0 */
    const float neg[5] = {-1, -2, -3, -4, -5};
    ck_assert_int_eq(rp_eval_specificity(neg, t, o, 5, &s, &err), RP_OK);
    ck_assert_double_eq(s.share_target, 0);
    ck_assert_double_eq(s.share_others, 0);
    ck_assert(s.pointing_hit); /* pixel 0 holds the maximum, -1 */
}
END_TEST

START_TEST(perturbation_on_a_model)
{
    /* The oracle ViT on a constant grey image: with a constant map the
     * removal order is the pixel index order, and at every step the class
     * ranked first is tested with k = 10 (always a hit) and k = 1 (whatever
     * the model says, but the same twice). */
    rp_model *m = NULL;
    rp_error err = {0};
    ck_assert_msg(rp_model_load(ORACLE_MODEL, &m, &err) == RP_OK, "%s", err.msg);
    int64_t dims[4] = {1, 3, 64, 64};
    rp_tensor x = {0};
    ck_assert_int_eq(rp_tensor_alloc(&x, RP_FLOAT, 4, dims, &err), RP_OK);
    float *pix = calloc(64 * 64, sizeof *pix);
    const float mean[3] = {0.5f, 0.5f, 0.5f}, std[3] = {0.5f, 0.5f, 0.5f};
    uint8_t hits[RP_EVAL_STEPS] = {7}, again[RP_EVAL_STEPS] = {7};
    ck_assert_int_eq(rp_eval_perturbation(m, &x, pix, mean, std, 3, 10, true, hits, &err), RP_OK);
    ck_assert_int_eq(hits[0], 7); /* step 0 is the caller's */
    for (int s = 1; s < RP_EVAL_STEPS; s++)
        ck_assert_int_eq(hits[s], 1);
    ck_assert_int_eq(rp_eval_perturbation(m, &x, pix, mean, std, 3, 1, false, hits, &err), RP_OK);
    ck_assert_int_eq(rp_eval_perturbation(m, &x, pix, mean, std, 3, 1, false, again, &err), RP_OK);
    ck_assert_mem_eq(hits, again, RP_EVAL_STEPS);
    /* the input is not modified */
    for (int64_t i = 0; i < x.count; i++)
        ck_assert(((float *)x.data)[i] == 0.0f);
    /* a class the model does not have */
    ck_assert_int_eq(rp_eval_perturbation(m, &x, pix, mean, std, 10, 1, true, hits, &err), RP_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(err.msg, "class 10"));
    ck_assert_int_eq(rp_eval_perturbation(m, &x, pix, mean, std, 3, 0, true, hits, &err), RP_ERR_ARG);
    free(pix);
    rp_tensor_release(&x);
    rp_model_free(m);
}
END_TEST

START_TEST(plot_svg_and_image)
{
    const char *names[2] = {"a<b&c", "second"};
    double pos[20], neg[20];
    for (int i = 0; i < 20; i++) {
        pos[i] = 1.0 - (i % 10) / 10.0;
        neg[i] = 0.5;
    }
    rp_eval_curves c = {.n_methods = 2, .names = names, .acc_pos = pos, .acc_neg = neg, .title = "t"};
    char *svg = NULL;
    rp_error err = {0};
    ck_assert_int_eq(rp_eval_plot_svg(&c, &svg, &err), RP_OK);
    ck_assert_ptr_nonnull(strstr(svg, "<svg"));
    ck_assert_ptr_nonnull(strstr(svg, "a&lt;b&amp;c"));
    ck_assert_ptr_nonnull(strstr(svg, "second"));
    ck_assert_ptr_nonnull(strstr(svg, "</svg>"));
    /* two panels x two methods = four polylines of ten points */
    int lines = 0;
    for (const char *p = svg; (p = strstr(p, "<polyline")); p++)
        lines++;
    ck_assert_int_eq(lines, 4);
    free(svg);
    rp_image im = {0};
    ck_assert_int_eq(rp_eval_plot_image(&c, &im, &err), RP_OK);
    ck_assert_int_eq(im.channels, 3);
    ck_assert_int_gt(im.width, 500);
    /* some ink of the first colour (213, 94, 0) somewhere */
    bool found = false;
    for (int64_t i = 0; i < (int64_t)im.width * im.height && !found; i++)
        found = im.pixels[3 * i] == 213 && im.pixels[3 * i + 1] == 94 && im.pixels[3 * i + 2] == 0;
    ck_assert(found);
    rp_image_release(&im);
    pos[3] = 1.5; /* accuracies are fractions */
    ck_assert_int_eq(rp_eval_plot_svg(&c, &svg, &err), RP_ERR_VALUE);
    ck_assert_ptr_null(svg);
    ck_assert_int_eq(rp_eval_plot_image(&c, &im, &err), RP_ERR_VALUE);
    ck_assert_ptr_null(im.pixels);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("eval");
    TCase *tc = tcase_create("metrics");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, pixel_map_bilinear_by_hand);
    tcase_add_test(tc, pixel_map_errors);
    tcase_add_test(tc, order_with_ties);
    tcase_add_test(tc, step_counts);
    tcase_add_test(tc, auc_known_curves);
    tcase_add_test(tc, top_k_with_ties);
    tcase_add_test(tc, average_precision_known_rankings);
    tcase_add_test(tc, segmentation_known_masks);
    tcase_add_test(tc, specificity_and_pointing);
    tcase_add_test(tc, perturbation_on_a_model);
    tcase_add_test(tc, plot_svg_and_image);
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
