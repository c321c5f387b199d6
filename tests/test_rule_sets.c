/* Rule sets on real models (the four oracle ViTs in tests/oracle): which
 * rule every node gets under each built-in set, JSON rule-set files (later
 * entries override earlier ones; kinds, op globs, node globs, parameters;
 * clear errors), explanations under every set, and the per-node
 * conservation report. Through the public API only, as the CLI uses it. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "relprop/relprop.h"
#include "relprop/rule.h"

static const char *const models[] = {"fmnist_vit_s__timm17", "fmnist_vit_s__timm13", "fmnist_vit_s__einsum14",
                                     "fmnist_vit_s__tv"};
#define N_MODELS 4

static rp_model *load(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/oracle/%s/model.onnx", RELPROP_SOURCE_DIR, name);
    rp_model *m = NULL;
    rp_error err = {0};
    ck_assert_msg(rp_model_load(path, &m, &err) == RP_OK, "%s", err.msg);
    return m;
}

static void load_input(const char *name, rp_tensor *x)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/oracle/%s/inputs/input_0.npy", RELPROP_SOURCE_DIR, name);
    rp_error err = {0};
    ck_assert_msg(rp_npy_read(path, x, &err) == RP_OK, "%s", err.msg);
}

/* A JSON rule-set file in a fresh temporary folder; *path receives its name. */
static void write_json(char *path, size_t len, const char *text)
{
    char dir[] = "/tmp/relprop_rulesets_XXXXXX";
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

static const char *rule_of(rp_model *m, const char *set, int i, const char **kind)
{
    const char *rule;
    rp_error err = {0};
    ck_assert_msg(rp_model_node_rule_in(m, set, NULL, i, kind, &rule, NULL, &err) == RP_OK, "%s", err.msg);
    return rule;
}

/* ------------------------------------------------------------ built-in sets */

START_TEST(sets_listed)
{
    const char *want[] = {"paper", "attnlrp", "epsilon", "zplus", "alpha2beta1", "gamma"};
    ck_assert_int_ge(rp_rule_set_count(), 6);
    for (int w = 0; w < 6; w++) {
        bool found = false;
        for (int i = 0; i < rp_rule_set_count(); i++)
            found |= strcmp(rp_rule_set_name(i), want[w]) == 0 && rp_rule_set_summary(i)[0];
        ck_assert_msg(found, "rule set %s not listed", want[w]);
    }
    ck_assert_ptr_null(rp_rule_set_name(-1));
    ck_assert_ptr_null(rp_rule_set_name(rp_rule_set_count()));
}
END_TEST

/* Rule and kind of every node under one set (one assignment per set: the
 * model caches the last set's). */
static void rules_under(rp_model *m, const char *set, const char **rule, const char **kind,
                        const struct rp_rule_params **params)
{
    rp_error err = {0};
    for (int i = 0; i < rp_model_node_count(m); i++)
        ck_assert_msg(rp_model_node_rule_in(m, set, NULL, i, &kind[i], &rule[i], &params[i], &err) == RP_OK, "%s",
                      err.msg);
}

START_TEST(sets_assign_by_kind)
{
    rp_model *m = load(models[_i]);
    int n = rp_model_node_count(m), softmax_rules = 0, softmax_nodes = 0;
    const char **kind = calloc((size_t)n, sizeof *kind), **rule = calloc((size_t)n, sizeof *rule);
    const struct rp_rule_params **p = calloc((size_t)n, sizeof *p);
    /* The paper's table (docs/method.md §3.4), as before rule sets existed. */
    const char *k_paper[][2] = {{"first_conv", "zb"}, {"linear", "alpha_beta"}, {"bias", "identity"},
                                {"product", "product"}, {"sum", "sum"},      {"region", "identity"},
                                {"data", "route"},      {"unary", "identity"}};
    rules_under(m, "paper", rule, kind, p);
    for (int i = 0; i < n; i++)
        for (int q = 0; q < 8; q++)
            if (strcmp(kind[i], k_paper[q][0]) == 0)
                ck_assert_str_eq(rule[i], k_paper[q][1]);
    rules_under(m, "attnlrp", rule, kind, p);
    for (int i = 0; i < n; i++) {
        if (strcmp(kind[i], "linear") == 0 || strcmp(kind[i], "sum") == 0 || strcmp(kind[i], "bias") == 0)
            ck_assert_str_eq(rule[i], "epsilon");
        if (strcmp(kind[i], "product") == 0)
            ck_assert_str_eq(rule[i], "uniform");
        if (strcmp(rp_model_node_op(m, i), "Softmax") == 0 && rule[i]) {
            softmax_nodes++;
            softmax_rules += strcmp(rule[i], "softmax") == 0;
        }
        if (rule[i] && strcmp(rule[i], "softmax") == 0)
            ck_assert_str_eq(rp_model_node_op(m, i), "Softmax");
    }
    /* Every attention softmax (a Softmax node, or a region ending in one)
     * gets AttnLRP's softmax rule. */
    ck_assert_int_eq(softmax_nodes, 4);
    ck_assert_int_eq(softmax_rules, 4);
    rules_under(m, "zplus", rule, kind, p);
    for (int i = 0; i < n; i++)
        if (strcmp(kind[i], "linear") == 0)
            ck_assert_str_eq(rule[i], "zplus");
    rules_under(m, "alpha2beta1", rule, kind, p);
    for (int i = 0; i < n; i++)
        if (strcmp(kind[i], "linear") == 0) {
            ck_assert_str_eq(rule[i], "alpha_beta");
            ck_assert_double_eq(rp_rule_param(p[i], "alpha", 0), 2.0);
            ck_assert_double_eq(rp_rule_param(p[i], "beta", 0), 1.0);
        }
    rp_error err;
    const char *k0, *r0;
    ck_assert_int_eq(rp_model_node_rule_in(m, "no_such_set", NULL, 0, &k0, &r0, NULL, &err), RP_ERR_ARG);
    ck_assert_msg(strstr(err.msg, "no_such_set") && strstr(err.msg, "attnlrp"), "%s", err.msg);
    free(kind);
    free(rule);
    free(p);
    rp_model_free(m);
}
END_TEST

/* ---------------------------------------------------------- explanations */

static rp_explanation *explain(rp_model *m, const rp_tensor *x, const char *set, rp_rule_registry *reg, bool check)
{
    rp_method methods[] = {RP_METHOD_LRP_FULL, RP_METHOD_TRANSFORMER_ATTRIBUTION, RP_METHOD_LRP_LAST_LAYER};
    rp_explain_options opt = {.rules = set, .registry = reg, .check_conservation = check};
    int cls = 0;
    rp_explanation *e = NULL;
    rp_error err = {0};
    ck_assert_msg(rp_explain(m, x, &cls, 1, methods, 3, &opt, &e, &err) == RP_OK, "%s: %s", set, err.msg);
    return e;
}

static double max_abs_diff(const rp_tensor *a, const rp_tensor *b)
{
    ck_assert_int_eq(a->count, b->count);
    double d = 0;
    for (int64_t i = 0; i < a->count; i++)
        d = fmax(d, fabs((double)((float *)a->data)[i] - ((float *)b->data)[i]));
    return d;
}

START_TEST(every_set_explains)
{
    const char *sets[] = {"paper", "attnlrp", "epsilon", "zplus", "alpha2beta1", "gamma"};
    rp_model *m = load(models[_i]);
    rp_tensor x;
    load_input(models[_i], &x);
    rp_explanation *paper = explain(m, &x, "paper", NULL, false);
    for (int s = 0; s < 6; s++) {
        rp_explanation *e = explain(m, &x, sets[s], NULL, true);
        for (int mi = 0; mi < 3; mi++) {
            const rp_tensor *map = rp_explanation_map(e, 0, mi);
            double mag = 0;
            for (int64_t q = 0; q < map->count; q++) {
                ck_assert_msg(isfinite(((float *)map->data)[q]), "%s: map %d not finite", sets[s], mi);
                mag += fabs(((float *)map->data)[q]);
            }
            ck_assert_msg(mag > 0, "%s: map %d all zero", sets[s], mi);
        }
        /* A set other than the paper's changes the pixel map. */
        double d = max_abs_diff(rp_explanation_map(e, 0, 0), rp_explanation_map(paper, 0, 0));
        if (s == 0)
            ck_assert_msg(d == 0, "paper with the check on differs by %g", d); /* the check changes nothing */
        else
            ck_assert_msg(d > 0, "%s gives the paper's lrp_full map", sets[s]);
        ck_assert_int_gt(rp_explanation_conservation_count(e, 0), 50);
        rp_explanation_free(e);
    }
    rp_explanation_free(paper);
    rp_tensor_release(&x);
    rp_model_free(m);
}
END_TEST

/* ---------------------------------------------------------- conservation */

START_TEST(report_paper_conserves_at_every_node)
{
    rp_model *m = load(models[_i]);
    rp_tensor x;
    load_input(models[_i], &x);
    rp_explanation *e = explain(m, &x, "paper", NULL, true);
    int n = rp_explanation_conservation_count(e, 0), claims = 0, dropped = 0;
    double at_out, at_in;
    int bad;
    rp_explanation_conservation_summary(e, 0, &at_out, &at_in, &bad);
    for (int j = 0; j < n; j++) {
        const rp_conservation_entry *c = rp_explanation_conservation(e, 0, j);
        ck_assert_msg(!c->violated, "node '%s' (%s, %s -> %s): in %.9g, out %.9g, dropped %.9g", c->name, c->op,
                      c->kind, c->rule, c->relevance_in, c->relevance_out, c->relevance_dropped);
        ck_assert_int_ge(c->node, 0);
        ck_assert_str_eq(c->name, rp_model_node_name(m, c->node));
        claims += c->should_conserve;
        dropped += c->relevance_dropped != 0;
        ck_assert(c->magnitude >= fabs(c->relevance_in) - 1e-9);
    }
    /* Every paper rule claims conservation; the CLS token and position
     * embedding are constants whose share is dropped. */
    ck_assert_int_eq(claims, n);
    ck_assert_int_ge(dropped, 1);
    ck_assert_int_eq(bad, 0);
    ck_assert_double_eq(at_out, 1.0);
    /* The accounts balance: what reaches the input is what left the output
     * less what the constants took (CLS token, position embedding). */
    double total_dropped = 0;
    for (int j = 0; j < n; j++)
        total_dropped += rp_explanation_conservation(e, 0, j)->relevance_dropped;
    ck_assert_msg(fabs(at_in - (at_out - total_dropped)) < 1e-3, "at the input %g, but 1 - dropped = %g", at_in,
                  at_out - total_dropped);
    /* The first entry is the head: one-hot in, all of it on. */
    const rp_conservation_entry *head = rp_explanation_conservation(e, 0, 0);
    ck_assert_msg(fabs(head->relevance_in - 1.0) < 1e-6, "head in %g", head->relevance_in);
    ck_assert_ptr_null(rp_explanation_conservation(e, 0, n));
    ck_assert_ptr_null(rp_explanation_conservation(e, 1, 0));
    rp_explanation_free(e);
    /* Without the check there is no report. */
    e = explain(m, &x, "paper", NULL, false);
    ck_assert_int_eq(rp_explanation_conservation_count(e, 0), 0);
    rp_explanation_free(e);
    rp_tensor_release(&x);
    rp_model_free(m);
}
END_TEST

START_TEST(report_epsilon_bias_absorbs)
{
    /* attnlrp puts epsilon on the bias Adds: the bias's share is reported as
     * dropped, and epsilon (which does not claim conservation) is never
     * flagged. The softmax rule keeps its Taylor bias: not flagged either. */
    rp_model *m = load(models[0]);
    rp_tensor x;
    load_input(models[0], &x);
    rp_explanation *e = explain(m, &x, "attnlrp", NULL, true);
    int n = rp_explanation_conservation_count(e, 0), bias_dropped = 0, softmax = 0;
    for (int j = 0; j < n; j++) {
        const rp_conservation_entry *c = rp_explanation_conservation(e, 0, j);
        ck_assert_msg(!c->violated, "node '%s' (%s -> %s) flagged", c->name, c->kind, c->rule);
        if (strcmp(c->kind, "bias") == 0 && c->relevance_dropped != 0)
            bias_dropped++;
        if (strcmp(c->rule, "softmax") == 0) {
            softmax++;
            ck_assert(!c->should_conserve);
            ck_assert_msg(fabs(c->relevance_in - c->relevance_out) > 1e-6 * c->magnitude,
                          "the softmax rule conserved exactly at '%s'", c->name);
        }
        if (strcmp(c->rule, "epsilon") == 0)
            ck_assert(!c->should_conserve);
    }
    ck_assert_int_gt(bias_dropped, 0);
    ck_assert_int_eq(softmax, 4);
    rp_explanation_free(e);
    rp_tensor_release(&x);
    rp_model_free(m);
}
END_TEST

/* ------------------------------------------------------------- JSON files */

START_TEST(json_later_entries_override)
{
    rp_model *m = load(models[0]);
    char path[256];
    write_json(path, sizeof path,
               "{\"base\": \"paper\", \"comment\": \"test\", \"rules\": [\n"
               "  {\"kind\": \"linear\", \"rule\": \"epsilon\", \"params\": {\"epsilon\": 0.01}},\n"
               "  {\"kind\": \"linear\", \"node\": \"/blocks.1/*\", \"rule\": \"gamma\", \"params\": {\"gamma\": 0.5}},\n"
               "  {\"op\": \"Gemm\", \"rule\": \"zplus\"},\n"
               "  {\"kind\": \"norm\", \"rule\": \"identity\"},\n"
               "  {\"op\": \"Soft*\", \"rule\": \"softmax\"}\n"
               "]}\n");
    int n = rp_model_node_count(m), gamma = 0, eps = 0, softmax = 0;
    for (int i = 0; i < n; i++) {
        const char *kind, *rule;
        const struct rp_rule_params *p;
        rp_error err;
        ck_assert_msg(rp_model_node_rule_in(m, path, NULL, i, &kind, &rule, &p, &err) == RP_OK, "%s", err.msg);
        const char *name = rp_model_node_name(m, i), *op = rp_model_node_op(m, i);
        if (strcmp(op, "Gemm") == 0 && rule) {
            ck_assert_str_eq(rule, "zplus"); /* the last matching entry wins */
        } else if (strcmp(kind, "linear") == 0 && strncmp(name, "/blocks.1/", 10) == 0) {
            ck_assert_str_eq(rule, "gamma");
            ck_assert_double_eq(rp_rule_param(p, "gamma", 0), 0.5);
            gamma++;
        } else if (strcmp(kind, "linear") == 0) {
            ck_assert_str_eq(rule, "epsilon");
            ck_assert_double_eq(rp_rule_param(p, "epsilon", 0), 0.01);
            eps++;
        } else if (strcmp(kind, "product") == 0) {
            ck_assert_str_eq(rule, "product"); /* from the base */
        }
        if (rule && strcmp(rule, "softmax") == 0)
            softmax++;
    }
    ck_assert_int_gt(gamma, 0);
    ck_assert_int_gt(eps, 0);
    ck_assert_int_eq(softmax, 4);
    /* The same path, rewritten: the model notices (size and mtime). */
    FILE *f = fopen(path, "w");
    fputs("[{\"kind\": \"linear\", \"rule\": \"wsquare\"}]", f);
    fclose(f);
    for (int i = 0; i < n; i++) {
        const char *kind, *rule = rule_of(m, path, i, &kind);
        if (strcmp(kind, "linear") == 0)
            ck_assert_str_eq(rule, "wsquare");
    }
    remove_json(path);
    rp_model_free(m);
}
END_TEST

START_TEST(json_equals_builtin)
{
    /* A file that spells out alpha2beta1 explains exactly as the built-in. */
    rp_model *m = load(models[1]);
    rp_tensor x;
    load_input(models[1], &x);
    char path[256];
    write_json(path, sizeof path,
               "{\"rules\": [{\"kind\": \"linear\", \"rule\": \"alpha_beta\", \"params\": {\"alpha\": 2, \"beta\": 1}}]}");
    rp_explanation *a = explain(m, &x, path, NULL, false), *b = explain(m, &x, "alpha2beta1", NULL, false);
    for (int mi = 0; mi < 3; mi++)
        ck_assert_double_eq(max_abs_diff(rp_explanation_map(a, 0, mi), rp_explanation_map(b, 0, mi)), 0.0);
    rp_explanation_free(a);
    rp_explanation_free(b);
    remove_json(path);
    rp_tensor_release(&x);
    rp_model_free(m);
}
END_TEST

START_TEST(json_errors_are_clear)
{
    rp_model *m = load(models[0]);
    struct {
        const char *text, *fragments[3];
    } bad[] = {
        {"{\"rules\": [{\"kind\": \"linear\", \"rule\": \"epsilom\"}]}", {"entry 1", "no rule named 'epsilom'", "epsilon"}},
        {"{\"rules\": [{\"kind\": \"linear\", \"rule\": \"gamma\"}, {\"kind\": \"linear\", \"rule\": \"epsilon\", "
         "\"params\": {\"gama\": 1}}]}",
         {"entry 2", "rule 'epsilon' has no parameter 'gama'", "takes: epsilon"}},
        {"{\"rules\": [{\"kind\": \"lineer\", \"rule\": \"epsilon\"}]}", {"entry 1", "unknown kind \"lineer\"", "first_conv"}},
        {"{\"rules\": [{\"knd\": \"linear\", \"rule\": \"epsilon\"}]}", {"entry 1", "unknown key \"knd\"", NULL}},
        {"{\"rules\": [{\"kind\": \"linear\"}]}", {"entry 1", "no \"rule\"", NULL}},
        {"{\"rules\": [{\"kind\": \"linear\", \"rule\": \"epsilon\", \"params\": {\"epsilon\": \"big\"}}]}",
         {"entry 1", "must be a number", NULL}},
        {"{\"base\": \"papr\", \"rules\": []}", {"unknown base \"papr\"", "attnlrp", NULL}},
        {"{\"rules\": [\n{\"kind\": \"linear\",\n \"rule\": }\n]}", {"not valid JSON", "line 3", NULL}},
        {"{\"rules\": {}}", {"must be an array", NULL, NULL}},
        {"{\"rule\": []}", {"unknown key \"rule\"", NULL, NULL}},
        /* an entry without selectors matches every node: epsilon cannot run
         * on a decomposed region (the scale + Softmax of this export) */
        {"{\"base\": \"none\", \"rules\": [{\"rule\": \"epsilon\"}]}",
         {"entry 1", "rule 'epsilon'", "decomposed region"}},
        /* a rule that does not fit: the paper's product rule on a linear map */
        {"{\"rules\": [{\"kind\": \"linear\", \"rule\": \"product\"}]}", {"entry 1", "rule 'product'", "constant"}},
    };
    for (size_t q = 0; q < sizeof bad / sizeof bad[0]; q++) {
        char path[256];
        write_json(path, sizeof path, bad[q].text);
        const char *kind, *rule;
        rp_error err = {0};
        rp_status st = rp_model_node_rule_in(m, path, NULL, 0, &kind, &rule, NULL, &err);
        ck_assert_msg(st != RP_OK, "case %zu accepted", q);
        ck_assert_msg(strstr(err.msg, path) != NULL, "case %zu: message does not name the file: %s", q, err.msg);
        for (int k = 0; k < 3; k++)
            ck_assert_msg(!bad[q].fragments[k] || strstr(err.msg, bad[q].fragments[k]), "case %zu: '%s' not in: %s", q,
                          bad[q].fragments[k], err.msg);
        remove_json(path);
    }
    const char *kind, *rule;
    rp_error err = {0};
    ck_assert_int_eq(rp_model_node_rule_in(m, "/nonexistent/rules.json", NULL, 0, &kind, &rule, NULL, &err),
                     RP_ERR_IO);
    ck_assert_ptr_nonnull(strstr(err.msg, "/nonexistent/rules.json"));
    /* After errors the model still explains with a good set. */
    ck_assert_str_eq(rule_of(m, "paper", rp_model_node_count(m) - 1, &kind), "alpha_beta");
    rp_model_free(m);
}
END_TEST

/* Half of the relevance of output 0 to input 0 (same size), claiming to
 * conserve: a deliberately wrong rule, written against the public API. */
static rp_status half_apply(rp_rule_ctx *c)
{
    const rp_tensor *r = rp_rule_relevance_out(c, 0);
    rp_tensor *dst = rp_rule_relevance_in(c, 0);
    if (!r || !dst)
        return RP_OK;
    if (dst->count != r->count)
        return rp_rule_fail(c, RP_ERR_SHAPE, "half_identity: input 0 and output 0 differ in size");
    rp_rule_add_product(dst, r, NULL, 0.5);
    return RP_OK;
}

START_TEST(registry_program_rule)
{
    /* A program may register a rule of its own (no plugin): here "half", the
     * identity rule with half of the relevance, on the position-embedding
     * sum, chosen by node name. The report flags it: it claims to conserve. */
    rp_rule_registry *reg = NULL;
    rp_error err = {0};
    ck_assert_int_eq(rp_rule_registry_create(&reg, &err), RP_OK);
    rp_rule half = {.name = "half_identity", .summary = "identity, halved", .apply = half_apply,
                    .conserves = rp_rule_conserves_always};
    ck_assert_int_eq(rp_rule_register(reg, &half, &err), RP_OK);
    ck_assert_int_eq(rp_rule_register(reg, &half, &err), RP_ERR_ARG); /* taken */
    ck_assert_ptr_nonnull(strstr(err.msg, "already registered"));
    half.name = "bad name!";
    ck_assert_int_eq(rp_rule_register(reg, &half, &err), RP_ERR_ARG);
    ck_assert_int_eq(rp_rule_register_abi(reg, RP_RULE_ABI_VERSION + 1, sizeof half, &half, &err),
                     RP_ERR_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "ABI") && strstr(err.msg, "rebuild"), "%s", err.msg);
    int n = rp_rule_registry_count(reg);
    ck_assert_int_eq(n, rp_rule_registry_count(NULL) + 1);
    ck_assert_str_eq(rp_rule_registry_get(reg, n - 1)->name, "half_identity");
    ck_assert_str_eq(rp_rule_registry_origin(reg, n - 1), "(registered by the program)");
    /* Named in a rule set: without the registry it is unknown. */
    rp_model *m = load(models[0]);
    char path[256];
    write_json(path, sizeof path, "[{\"kind\": \"unary\", \"rule\": \"half_identity\"}]");
    const char *kind, *rule;
    ck_assert_int_eq(rp_model_node_rule_in(m, path, NULL, 0, &kind, &rule, NULL, &err), RP_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err.msg, "plugins add more"));
    int hits = 0;
    for (int i = 0; i < rp_model_node_count(m); i++) {
        ck_assert_int_eq(rp_model_node_rule_in(m, path, reg, i, &kind, &rule, NULL, &err), RP_OK);
        hits += rule && strcmp(rule, "half_identity") == 0;
    }
    ck_assert_int_gt(hits, 0);
    /* The model holds the registry: freeing ours first is safe. */
    rp_rule_registry_free(reg);
    rp_tensor x;
    load_input(models[0], &x);
    rp_explanation *e = explain(m, &x, path, reg, true);
    int flagged = 0;
    for (int j = 0; j < rp_explanation_conservation_count(e, 0); j++) {
        const rp_conservation_entry *c = rp_explanation_conservation(e, 0, j);
        bool half_rule = strcmp(c->rule, "half_identity") == 0;
        ck_assert_msg(c->violated == half_rule, "node '%s' (%s): violated %d", c->name, c->rule, c->violated);
        if (half_rule)
            ck_assert_msg(fabs(c->relevance_out - 0.5 * c->relevance_in) <= 1e-5 * c->magnitude, "%s", c->name);
        flagged += c->violated;
    }
    int bad;
    rp_explanation_conservation_summary(e, 0, NULL, NULL, &bad);
    ck_assert_int_eq(bad, flagged);
    ck_assert_int_eq(flagged, hits);
    rp_explanation_free(e);
    rp_tensor_release(&x);
    remove_json(path);
    rp_model_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rule_sets");
    TCase *t = tcase_create("sets");
    tcase_set_timeout(t, 600);
    tcase_add_test(t, sets_listed);
    tcase_add_loop_test(t, sets_assign_by_kind, 0, N_MODELS);
    /* Two exporters are enough here (the sets are the same code on all four);
     * the loops above and below cover all four. */
    tcase_add_loop_test(t, every_set_explains, 0, 1);
    tcase_add_loop_test(t, every_set_explains, 3, 4);
    tcase_add_loop_test(t, report_paper_conserves_at_every_node, 0, N_MODELS);
    tcase_add_test(t, report_epsilon_bias_absorbs);
    tcase_add_test(t, json_later_entries_override);
    tcase_add_test(t, json_equals_builtin);
    tcase_add_test(t, json_errors_are_clear);
    tcase_add_test(t, registry_program_rule);
    suite_add_tcase(s, t);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
