/* Rule plugins, through the public API as a host program uses them: the
 * example plugin (examples/plugin, built by the plugin_example_build test
 * against an installed relprop found with pkg-config) changes the
 * explanation as its rule says; broken plugins — wrong ABI, no entry point,
 * a taken rule name, not a shared object at all — fail with clear messages
 * and leave the registry as it was; a deliberately non-conserving rule is
 * flagged by the conservation report; a rule that asks for gradients gets
 * them. The host links relprop statically, as the CLI does. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "relprop/relprop.h"
#include "relprop/rule.h"

#define MODEL RELPROP_SOURCE_DIR "/tests/oracle/fmnist_vit_s__timm17"

static rp_rule_registry *registry(void)
{
    rp_rule_registry *reg = NULL;
    rp_error err = {0};
    ck_assert_msg(rp_rule_registry_create(&reg, &err) == RP_OK, "%s", err.msg);
    return reg;
}

static void load_plugin_ok(rp_rule_registry *reg, const char *path)
{
    rp_error err = {0};
    ck_assert_msg(rp_rule_registry_load_plugin(reg, path, &err) == RP_OK, "%s", err.msg);
}

static void expect_load_error(rp_rule_registry *reg, const char *path, rp_status code, const char *f1,
                              const char *f2)
{
    int before = rp_rule_registry_count(reg);
    rp_error err = {0};
    rp_status st = rp_rule_registry_load_plugin(reg, path, &err);
    ck_assert_msg(st == code, "%s: got %d (%s), want %d", path, st, err.msg, code);
    ck_assert_msg(strstr(err.msg, f1) != NULL, "'%s' not in: %s", f1, err.msg);
    ck_assert_msg(!f2 || strstr(err.msg, f2) != NULL, "'%s' not in: %s", f2, err.msg);
    ck_assert_int_eq(rp_rule_registry_count(reg), before); /* left as it was */
}

/* JSON rule set in a fresh temporary folder. */
static void write_json(char *path, size_t len, const char *text)
{
    char dir[] = "/tmp/relprop_plugin_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, len, "%s/set.json", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void remove_json(const char *path)
{
    unlink(path);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = 0;
    rmdir(dir);
}

static rp_model *load_model(void)
{
    rp_model *m = NULL;
    rp_error err = {0};
    ck_assert_msg(rp_model_load(MODEL "/model.onnx", &m, &err) == RP_OK, "%s", err.msg);
    return m;
}

static void load_input(rp_tensor *x)
{
    rp_error err = {0};
    ck_assert_msg(rp_npy_read(MODEL "/inputs/input_0.npy", x, &err) == RP_OK, "%s", err.msg);
}

static const rp_method methods[] = {RP_METHOD_LRP_FULL, RP_METHOD_LRP_LAST_LAYER, RP_METHOD_TRANSFORMER_ATTRIBUTION};
#define N_METHODS 3

static rp_status try_explain(rp_model *m, const rp_tensor *x, const char *json, rp_rule_registry *reg, bool check,
                             rp_explanation **e, rp_error *err)
{
    char path[256];
    write_json(path, sizeof path, json);
    rp_explain_options opt = {.rules = path, .registry = reg, .check_conservation = check};
    int cls = 2;
    rp_status st = rp_explain(m, x, &cls, 1, methods, N_METHODS, &opt, e, err);
    remove_json(path);
    return st;
}

static rp_explanation *explain(rp_model *m, const rp_tensor *x, const char *json, rp_rule_registry *reg, bool check)
{
    rp_explanation *e = NULL;
    rp_error err = {0};
    ck_assert_msg(try_explain(m, x, json, reg, check, &e, &err) == RP_OK, "%s: %s", json, err.msg);
    return e;
}

static double max_abs(const rp_tensor *t)
{
    double mx = 0;
    for (int64_t i = 0; i < t->count; i++)
        mx = fmax(mx, fabs(((const float *)t->data)[i]));
    return mx;
}

static double max_diff(const rp_tensor *a, const rp_tensor *b)
{
    ck_assert_int_eq(a->count, b->count);
    double d = 0;
    for (int64_t i = 0; i < a->count; i++)
        d = fmax(d, fabs((double)((const float *)a->data)[i] - ((const float *)b->data)[i]));
    return d;
}

/* ------------------------------------------------------------------ errors */

START_TEST(broken_plugins_fail_clearly)
{
    rp_rule_registry *reg = registry();
    expect_load_error(reg, TEST_PLUGIN_DIR "/no_such_plugin.so", RP_ERR_IO, "no_such_plugin.so",
                      "No such file");
    expect_load_error(reg, RELPROP_SOURCE_DIR "/tests/data/rules/manifest.json", RP_ERR_FORMAT, "manifest.json",
                      "cannot be loaded");
    expect_load_error(reg, TEST_PLUGIN_DIR "/no_entry.so", RP_ERR_FORMAT, "no_entry.so",
                      "does not export relprop_rule_plugin_register");
    expect_load_error(reg, TEST_PLUGIN_DIR "/bad_abi.so", RP_ERR_UNSUPPORTED, "bad_abi.so", "rule ABI 42");
    expect_load_error(reg, TEST_PLUGIN_DIR "/bad_abi.so", RP_ERR_UNSUPPORTED, "this relprop has ABI 1",
                      "rebuild");
    expect_load_error(reg, TEST_PLUGIN_DIR "/clash.so", RP_ERR_ARG, "clash.so",
                      "rule 'epsilon' is already registered (a built-in rule)");
    ck_assert_ptr_null(rp_rule_registry_find(reg, "clash_fine")); /* rolled back */
    ck_assert_ptr_null(rp_rule_registry_find(reg, "from_the_future"));
    rp_error err = {0};
    ck_assert_int_eq(rp_rule_registry_load_plugin(NULL, TEST_PLUGIN_DIR "/leaky.so", &err), RP_ERR_ARG);
    rp_rule_registry_free(reg);
    rp_rule_registry_free(NULL);
}
END_TEST

/* ---------------------------------------------------------- the example */

START_TEST(example_plugin_changes_the_output)
{
    rp_rule_registry *reg = registry();
    int builtins = rp_rule_registry_count(reg);
    load_plugin_ok(reg, EXAMPLE_PLUGIN);
    load_plugin_ok(reg, EXAMPLE_PLUGIN); /* twice: a no-op */
    ck_assert_int_eq(rp_rule_registry_count(reg), builtins + 1);
    const rp_rule *r = rp_rule_registry_find(reg, "example_lrp0");
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->params, "threshold");
    ck_assert_ptr_nonnull(strstr(rp_rule_registry_origin(reg, builtins), "librules_example.so"));
    ck_assert_ptr_null(rp_rule_registry_origin(reg, 0));

    rp_model *m = load_model();
    rp_tensor x;
    load_input(&x);
    /* threshold 0 is LRP-0, which is epsilon with epsilon = 0: the same maps. */
    rp_explanation *lrp0 = explain(m, &x, "[{\"kind\": \"linear\", \"rule\": \"example_lrp0\"}]", reg, false);
    rp_explanation *eps0 = explain(
        m, &x, "[{\"kind\": \"linear\", \"rule\": \"epsilon\", \"params\": {\"epsilon\": 0}}]", NULL, false);
    rp_explanation *paper = explain(m, &x, "{\"base\": \"paper\", \"rules\": []}", NULL, false);
    for (int mi = 0; mi < N_METHODS; mi++) {
        const rp_tensor *a = rp_explanation_map(lrp0, 0, mi), *b = rp_explanation_map(eps0, 0, mi);
        ck_assert_msg(max_diff(a, b) <= 1e-6 * max_abs(b), "method %d: plugin LRP-0 differs from epsilon 0 by %g",
                      mi, max_diff(a, b));
        ck_assert(max_abs(a) > 0);
        /* and differs from the paper's alpha-beta on the linear maps */
        ck_assert_msg(max_diff(a, rp_explanation_map(paper, 0, mi)) > 1e-3 * max_abs(a), "method %d", mi);
    }
    /* A threshold above every |z|: the linear maps (the head first) pass
     * nothing on, so the relevance maps are zero. */
    rp_explanation *dead = explain(
        m, &x, "[{\"kind\": \"linear\", \"rule\": \"example_lrp0\", \"params\": {\"threshold\": 1e30}}]", reg, false);
    ck_assert_double_eq(max_abs(rp_explanation_map(dead, 0, 0)), 0.0);
    ck_assert_double_eq(max_abs(rp_explanation_map(dead, 0, 1)), 0.0);
    rp_explanation_free(dead);
    /* Its parameters are checked by name and by the rule's prepare. */
    rp_explanation *e = NULL;
    rp_error err = {0};
    ck_assert_int_eq(try_explain(m, &x, "[{\"kind\": \"linear\", \"rule\": \"example_lrp0\", \"params\": {\"thresh\": 1}}]",
                                 reg, false, &e, &err),
                     RP_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "no parameter 'thresh'") && strstr(err.msg, "takes: threshold"), "%s", err.msg);
    ck_assert_int_eq(
        try_explain(m, &x, "[{\"kind\": \"linear\", \"rule\": \"example_lrp0\", \"params\": {\"threshold\": -1}}]",
                    reg, false, &e, &err),
        RP_ERR_VALUE);
    ck_assert_msg(strstr(err.msg, "threshold -1") && strstr(err.msg, "node '") && strstr(err.msg, "example_lrp0"),
                  "%s", err.msg);
    /* On a node it does not fit, it says which. */
    ck_assert_int_eq(try_explain(m, &x, "[{\"kind\": \"sum\", \"rule\": \"example_lrp0\"}]", reg, false, &e, &err),
                     RP_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "(Add)") && strstr(err.msg, "linear maps"), "%s", err.msg);
    /* Without the registry the rule is unknown. */
    ck_assert_int_eq(try_explain(m, &x, "[{\"kind\": \"linear\", \"rule\": \"example_lrp0\"}]", NULL, false, &e, &err),
                     RP_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "no rule named 'example_lrp0'"));
    rp_explanation_free(lrp0);
    rp_explanation_free(eps0);
    rp_explanation_free(paper);
    /* The model holds the registry it last used: releasing ours first is
     * safe, the plugin stays loaded until the model goes. */
    e = explain(m, &x, "[{\"kind\": \"linear\", \"rule\": \"example_lrp0\"}]", reg, false);
    rp_explanation_free(e);
    rp_rule_registry_free(reg);
    const char *kind, *rule;
    ck_assert_int_eq(rp_model_node_rule_in(m, "paper", NULL, 0, &kind, &rule, NULL, &err), RP_OK);
    rp_tensor_release(&x);
    rp_model_free(m);
}
END_TEST

/* ------------------------------------------------------- conservation */

START_TEST(report_flags_the_leaky_rule)
{
    rp_rule_registry *reg = registry();
    load_plugin_ok(reg, TEST_PLUGIN_DIR "/leaky.so");
    rp_model *m = load_model();
    rp_tensor x;
    load_input(&x);
    rp_explanation *e = explain(m, &x, "[{\"kind\": \"unary\", \"rule\": \"leaky_identity\"}]", reg, true);
    int n = rp_explanation_conservation_count(e, 0), leaky = 0, flagged = 0;
    for (int j = 0; j < n; j++) {
        const rp_conservation_entry *c = rp_explanation_conservation(e, 0, j);
        bool is_leaky = strcmp(c->rule, "leaky_identity") == 0;
        leaky += is_leaky;
        flagged += c->violated;
        ck_assert_msg(c->violated == is_leaky, "node '%s' (%s -> %s): violated %d, in %g out %g", c->name, c->kind,
                      c->rule, c->violated, c->relevance_in, c->relevance_out);
        if (is_leaky)
            ck_assert_msg(fabs(c->relevance_out - 0.9 * c->relevance_in) <= 1e-5 * c->magnitude, "%s: %g vs %g",
                          c->name, c->relevance_out, c->relevance_in);
    }
    ck_assert_int_gt(leaky, 0);
    int bad;
    rp_explanation_conservation_summary(e, 0, NULL, NULL, &bad);
    ck_assert_int_eq(bad, flagged);
    rp_explanation_free(e);
    /* A tolerance above the leak (10%) lets it pass. */
    char path[256];
    write_json(path, sizeof path, "[{\"kind\": \"unary\", \"rule\": \"leaky_identity\"}]");
    rp_explain_options opt = {.rules = path, .registry = reg, .check_conservation = true,
                              .conservation_tolerance = 0.2};
    int cls = 2;
    rp_error err = {0};
    ck_assert_msg(rp_explain(m, &x, &cls, 1, methods, 1, &opt, &e, &err) == RP_OK, "%s", err.msg);
    rp_explanation_conservation_summary(e, 0, NULL, NULL, &bad);
    ck_assert_int_eq(bad, 0);
    rp_explanation_free(e);
    remove_json(path);
    rp_tensor_release(&x);
    rp_model_free(m);
    rp_rule_registry_free(reg); /* after the model: the plugin closes here */
}
END_TEST

START_TEST(rules_get_gradients_when_they_ask)
{
    /* gradient_x_input on the pixel conv reads d y / d x at the image, which
     * lrp_full alone would not compute: relprop plans it because the rule
     * says RP_RULE_NEEDS_GRADIENT. */
    rp_rule_registry *reg = registry();
    load_plugin_ok(reg, TEST_PLUGIN_DIR "/leaky.so");
    rp_model *m = load_model();
    rp_tensor x;
    load_input(&x);
    char path[256];
    write_json(path, sizeof path, "[{\"kind\": \"first_conv\", \"rule\": \"gradient_x_input\"}]");
    rp_explain_options opt = {.rules = path, .registry = reg};
    rp_method lrp_full = RP_METHOD_LRP_FULL;
    int cls = 2;
    rp_explanation *e = NULL;
    rp_error err = {0};
    ck_assert_msg(rp_explain(m, &x, &cls, 1, &lrp_full, 1, &opt, &e, &err) == RP_OK, "%s", err.msg);
    ck_assert(max_abs(rp_explanation_map(e, 0, 0)) > 0);
    rp_explanation_free(e);
    remove_json(path);
    rp_tensor_release(&x);
    rp_model_free(m);
    rp_rule_registry_free(reg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("plugin");
    TCase *t = tcase_create("plugin");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, broken_plugins_fail_clearly);
    tcase_add_test(t, example_plugin_changes_the_output);
    tcase_add_test(t, report_flags_the_leaky_rule);
    tcase_add_test(t, rules_get_gradients_when_they_ask);
    suite_add_tcase(s, t);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
