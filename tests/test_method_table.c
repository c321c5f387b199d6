/* The method table (src/methods/method_table.c) is all rp_explain schedules
 * its walks from: each row must declare what its map reads. If a row said
 * too little, the method asked for alone would find a layer's gradient or
 * relevance missing (an error) or stale (another map); so every method alone
 * must give, bit for bit, the map it gives among all the others — which
 * walk the deepest and keep the most. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "core/npy.h"
#include "methods/method_table.h"
#include "relprop/relprop.h"

#define CASE RELPROP_SOURCE_DIR "/tests/oracle/fmnist_vit_s__timm17"

START_TEST(rows_match_the_enum)
{
    for (int i = 0; i < RP_METHOD_COUNT; i++) {
        const rp_method_row *r = rp_method_row_of((rp_method)i);
        ck_assert_ptr_nonnull(r);
        ck_assert_ptr_nonnull(r->name);
        rp_method back;
        ck_assert(rp_method_parse(r->name, &back) && back == (rp_method)i);
        ck_assert_msg(!r->map != !r->pixels, "%s: a method makes a patch map or a pixel map", r->name);
        for (int j = 0; j < i; j++)
            ck_assert_str_ne(r->name, rp_method_row_of((rp_method)j)->name);
    }
    ck_assert_ptr_null(rp_method_row_of(RP_METHOD_COUNT));
    ck_assert_ptr_null(rp_method_row_of((rp_method)-1));
    ck_assert_int_eq(rp_reach_lowest(RP_REACH_FROM_START, 7, 4), 3);
    ck_assert_int_eq(rp_reach_lowest(RP_REACH_FROM_START, -1, 4), 0);
    ck_assert_int_eq(rp_reach_lowest(RP_REACH_LAST, 0, 4), 3);
    ck_assert_int_eq(rp_reach_lowest(RP_REACH_NONE, 0, 4), 4);
}
END_TEST

/* One ranking for the library, the CLI and the evaluation: equal logits keep
 * index order (the CLI's own selection sort once gave [2, 1] here). */
START_TEST(top_classes_keep_index_order_on_ties)
{
    const float y[] = {1, 1, 2, 0.5f, 2};
    int out[5];
    rp_top_classes(y, 3, 2, out);
    ck_assert_int_eq(out[0], 2);
    ck_assert_int_eq(out[1], 0);
    rp_top_classes(y, 5, 5, out);
    static const int want[] = {2, 4, 0, 1, 3};
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(out[i], want[i]);
        ck_assert(rp_eval_in_top_k(y, 5, want[i], i + 1));
        ck_assert(!rp_eval_in_top_k(y, 5, want[i], i));
    }
    rp_top_classes(y, 2, 9, out); /* k above n */
    ck_assert_int_eq(out[0], 0);
    ck_assert_int_eq(out[1], 1);
    ck_assert(rp_method_pixel_map(RP_METHOD_LRP_FULL) && !rp_method_pixel_map(RP_METHOD_ROLLOUT));
    ck_assert(rp_method_uses_start_layer(RP_METHOD_ROLLOUT) && !rp_method_uses_start_layer(RP_METHOD_RAW_ATTENTION));
}
END_TEST

START_TEST(each_method_alone_as_among_all)
{
    static const int starts[] = {0, 2};
    rp_error err = {0};
    rp_model *m = NULL;
    ck_assert_msg(rp_model_load(CASE "/model.onnx", &m, &err) == RP_OK, "%s", err.msg);
    rp_tensor x = {0};
    ck_assert_msg(rp_npy_read(CASE "/inputs/input_0.npy", &x, &err) == RP_OK, "%s", err.msg);
    rp_method all[RP_METHOD_COUNT];
    for (int i = 0; i < RP_METHOD_COUNT; i++)
        all[i] = (rp_method)i;
    int classes[2] = {6, 7};
    for (size_t s = 0; s < sizeof starts / sizeof starts[0]; s++) {
        rp_explain_options opt = {.start_layer = starts[s]};
        rp_explanation *every = NULL;
        ck_assert_msg(rp_explain(m, &x, classes, 2, all, RP_METHOD_COUNT, &opt, &every, &err) == RP_OK, "%s", err.msg);
        for (int i = 0; i < RP_METHOD_COUNT; i++) {
            /* Beside transformer attribution, whose walks fuse gradient into
             * relevance unless a method reads them apart. */
            rp_method pair[2] = {all[i], RP_METHOD_TRANSFORMER_ATTRIBUTION};
            rp_explanation *paired = NULL;
            ck_assert_msg(rp_explain(m, &x, classes, 2, pair, 2, &opt, &paired, &err) == RP_OK, "%s: %s",
                          rp_method_name(all[i]), err.msg);
            for (int ci = 0; ci < 2; ci++)
                for (int q = 0; q < 2; q++) {
                    const rp_tensor *a = rp_explanation_map(paired, ci, q),
                                    *b = rp_explanation_map(every, ci, (int)pair[q]);
                    ck_assert_msg(a->count == b->count &&
                                      memcmp(a->data, b->data, sizeof(float) * (size_t)a->count) == 0,
                                  "%s beside transformer_attribution, class %d: %s differs from among all methods",
                                  rp_method_name(all[i]), classes[ci], rp_method_name(pair[q]));
                }
            rp_explanation_free(paired);
            rp_explanation *alone = NULL;
            ck_assert_msg(rp_explain(m, &x, classes, 2, &all[i], 1, &opt, &alone, &err) == RP_OK, "%s: %s",
                          rp_method_name(all[i]), err.msg);
            for (int ci = 0; ci < 2; ci++) {
                const rp_tensor *a = rp_explanation_map(alone, ci, 0), *b = rp_explanation_map(every, ci, i);
                ck_assert_int_eq(a->count, b->count);
                ck_assert_msg(memcmp(a->data, b->data, sizeof(float) * (size_t)a->count) == 0,
                              "%s, class %d, start layer %d: alone it differs from among all methods",
                              rp_method_name(all[i]), classes[ci], starts[s]);
            }
            rp_explanation_free(alone);
        }
        rp_explanation_free(every);
    }
    rp_tensor_release(&x);
    rp_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("method_table");
    TCase *tc = tcase_create("rows");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, rows_match_the_enum);
    tcase_add_test(tc, top_classes_keep_index_order_on_ties);
    tcase_add_test(tc, each_method_alone_as_among_all);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
