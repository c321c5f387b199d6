/* The forward pass's memory plan (src/graph/plan.c) at graph level: which
 * products take over the Transpose before B and the scalar Mul or bias Add
 * after them (fuse), that the fused pass computes what the graph says, and
 * that nothing else is fused.
 *
 * Fixture: tests/data/loader/product_fusion.onnx (tests/data/loader/
 * make_fixtures.py): eleven products and their neighbours; its comment
 * there says which fuse. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph/graph.h"

#ifndef RELPROP_SOURCE_DIR
#define RELPROP_SOURCE_DIR "."
#endif
#define FUSION_MODEL RELPROP_SOURCE_DIR "/tests/data/loader/product_fusion.onnx"

static rp_graph *load_prepared(void)
{
    rp_graph *g = NULL;
    rp_error err = {0};
    ck_assert_msg(rp_graph_load(FUSION_MODEL, &g, &err) == RP_OK, "%s", err.msg);
    ck_assert_msg(rp_graph_prepare(g, &err) == RP_OK, "%s", err.msg);
    return g;
}

static int node_index(const rp_graph *g, const char *name)
{
    for (int i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].name, name) == 0)
            return i;
    ck_abort_msg("no node %s", name);
    return -1;
}

static int value_index(const rp_graph *g, const char *name)
{
    for (int v = 0; v < g->n_values; v++)
        if (strcmp(g->values[v].name, name) == 0)
            return v;
    ck_abort_msg("no value %s", name);
    return -1;
}

/* The input, deterministic and with both signs. */
static void make_input(rp_tensor *x)
{
    static const int64_t dims[3] = {2, 5, 6};
    rp_error err = {0};
    ck_assert(rp_tensor_alloc(x, RP_FLOAT, 3, dims, &err) == RP_OK);
    float *d = x->data;
    for (int64_t i = 0; i < x->count; i++)
        d[i] = (float)sin(0.7 * (double)i + 0.3) * 2.0f;
}

/* Run g on x; a malloc'd copy of the output. */
static float *run(rp_graph *g, const rp_tensor *x, bool strict)
{
    rp_error err = {0};
    ck_assert_msg((strict ? rp_graph_forward_strict : rp_graph_forward)(g, &x, 1, &err) == RP_OK, "%s", err.msg);
    const rp_tensor *y = &g->values[g->outputs[0]].t;
    float *copy = malloc(sizeof(float) * (size_t)y->count);
    memcpy(copy, y->data, sizeof(float) * (size_t)y->count);
    return copy;
}

/* Nodes the plan lets a product do. */
static int absorbed(const rp_graph *g)
{
    int count = 0;
    for (int i = 0; g->plan_fusion && i < g->n_nodes; i++)
        count += g->plan_fusion[i].done_by >= 0;
    return count;
}

static void assert_close(const float *got, const float *want, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(fabsf(got[i] - want[i]) <= 1e-5f * (1.0f + fabsf(want[i])), "element %lld: %.9g, want %.9g",
                      (long long)i, (double)got[i], (double)want[i]);
}

START_TEST(test_fuses_what_it_may)
{
    rp_graph *g = load_prepared();
    rp_tensor x = {0};
    make_input(&x);
    float *want = run(g, &x, false); /* after prepare: every value its own buffer, nothing fused */
    int64_t n = g->values[g->outputs[0]].t.count;
    ck_assert_ptr_null(g->plan_fusion);

    bool *outputs_only = calloc((size_t)g->n_values, sizeof *outputs_only);
    rp_error err = {0};
    ck_assert_msg(rp_graph_plan_memory(g, outputs_only, true, &err) == RP_OK, "%s", err.msg);
    const rp_fusion *f = g->plan_fusion;
    ck_assert_ptr_nonnull(f);
    int m1 = node_index(g, "m1"), m2 = node_index(g, "m2"), m5 = node_index(g, "m5"), mq = node_index(g, "mq");
    ck_assert_int_eq(f[m1].epilogue, node_index(g, "a1"));
    ck_assert_int_eq(f[node_index(g, "a1")].done_by, m1);
    /* The bias first, and a product fed and read through reshapes. */
    ck_assert_int_eq(f[m2].epilogue, node_index(g, "a2"));
    /* The graph output. */
    ck_assert_int_eq(f[m5].epilogue, node_index(g, "a5"));
    /* Projections and their scores: k's buffer outlives its skipped
     * Transpose while q's projection runs. */
    int mqk = node_index(g, "mqk");
    ck_assert_int_eq(f[node_index(g, "mk")].epilogue, node_index(g, "ak"));
    ck_assert_int_eq(f[node_index(g, "mqq")].epilogue, node_index(g, "aqq"));
    ck_assert_int_eq(f[mqk].b_transpose, node_index(g, "tkk"));
    ck_assert_int_eq(f[mqk].epilogue, -1);
    ck_assert_ptr_eq(g->values[value_index(g, "kt")].t.data, g->values[value_index(g, "yk")].t.data);
    ck_assert_ptr_ne(g->values[value_index(g, "yq")].t.data, g->values[value_index(g, "yk")].t.data);
    /* Attention's scores: B through k's transpose, then the scale. */
    ck_assert_int_eq(f[mq].b_transpose, node_index(g, "tk"));
    ck_assert_int_eq(f[mq].epilogue, node_index(g, "sq"));
    ck_assert_int_eq(f[node_index(g, "tk")].done_by, mq);
    ck_assert_int_eq(f[node_index(g, "sq")].done_by, mq);
    /* A bias that varies along rows; a product output read twice; a sum of
     * two activations; a Transpose of more than the last two axes; a Mul by
     * a row. */
    static const char *const apart[] = {"mix", "m3", "a3", "m4", "a4", "sum4", "tall", "tback", "mt", "rowmul"};
    for (size_t k = 0; k < sizeof apart / sizeof apart[0]; k++) {
        int i = node_index(g, apart[k]);
        ck_assert_msg(f[i].done_by < 0 && f[i].epilogue < 0 && f[i].b_transpose < 0, "%s was fused", apart[k]);
    }
    ck_assert_int_eq(absorbed(g), 8);
    /* The sum lives in the product's buffer, and so do reshapes of it. */
    int y1 = value_index(g, "y1");
    ck_assert_ptr_eq(g->values[value_index(g, "z1")].t.data, g->values[y1].t.data);
    ck_assert_ptr_eq(g->values[value_index(g, "z1_flat")].t.data, g->values[y1].t.data);
    ck_assert_ptr_eq(g->values[g->outputs[0]].t.data, g->values[value_index(g, "y5")].t.data);

    float *got = run(g, &x, false);
    assert_close(got, want, n);
    free(got);
    /* Checking every value on the way (the path that names a bad node)
     * runs the same fused nodes. */
    got = run(g, &x, true);
    assert_close(got, want, n);
    free(got);

    /* Values someone reads later are computed as the graph says. */
    outputs_only[value_index(g, "y2")] = true;
    outputs_only[value_index(g, "z3_t")] = true;
    ck_assert(rp_graph_plan_memory(g, outputs_only, true, &err) == RP_OK);
    ck_assert_int_eq(g->plan_fusion[m2].epilogue, -1);
    ck_assert_int_eq(g->plan_fusion[mq].b_transpose, -1);
    ck_assert_int_eq(g->plan_fusion[mq].epilogue, node_index(g, "sq"));
    ck_assert_int_eq(absorbed(g), 6);
    got = run(g, &x, false);
    assert_close(got, want, n);
    free(got);

    /* Without fusion the plan fuses nothing and changes no bit. */
    ck_assert(rp_graph_plan_memory(g, outputs_only, false, &err) == RP_OK);
    ck_assert_ptr_null(g->plan_fusion);
    got = run(g, &x, false);
    ck_assert(memcmp(got, want, sizeof(float) * (size_t)n) == 0);
    free(got);
    /* Back to every value its own: nothing fused either. */
    ck_assert(rp_graph_plan_memory(g, NULL, true, &err) == RP_OK);
    ck_assert_ptr_null(g->plan_fusion);
    got = run(g, &x, false);
    ck_assert(memcmp(got, want, sizeof(float) * (size_t)n) == 0);
    free(got);

    free(outputs_only);
    free(want);
    rp_tensor_release(&x);
    rp_graph_free(g);
}
END_TEST

/* A fused product that makes a graph output non-finite fails the pass and
 * is named by the node whose output it computed. */
START_TEST(test_fused_output_checked)
{
    rp_graph *g = load_prepared();
    g->check_finite = true;
    rp_tensor x = {0};
    make_input(&x);
    rp_tensor *b5 = &g->values[value_index(g, "b5")].t, *w5 = &g->values[value_index(g, "W5")].t;
    for (int64_t i = 0; i < b5->count; i++)
        ((float *)b5->data)[i] = FLT_MAX;
    for (int64_t i = 0; i < w5->count; i++)
        ((float *)w5->data)[i] = 1e37f;
    bool *outputs_only = calloc((size_t)g->n_values, sizeof *outputs_only);
    rp_error err = {0};
    ck_assert(rp_graph_plan_memory(g, outputs_only, true, &err) == RP_OK);
    ck_assert_int_eq(g->plan_fusion[node_index(g, "m5")].epilogue, node_index(g, "a5"));
    const rp_tensor *in = &x;
    ck_assert_int_eq(rp_graph_forward(g, &in, 1, &err), RP_ERR_VALUE);
    ck_assert_msg(strstr(err.msg, "node 'a5'") && strstr(err.msg, "of 'out'"), "%s", err.msg);
    free(outputs_only);
    rp_tensor_release(&x);
    rp_graph_free(g);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("plan");
    TCase *tc = tcase_create("plan");
    tcase_add_test(tc, test_fuses_what_it_may);
    tcase_add_test(tc, test_fused_output_checked);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
