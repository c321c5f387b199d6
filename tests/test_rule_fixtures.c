/* Every built-in rule against numpy: tests/data/rules/manifest.json (written
 * by tools/make_rule_fixtures.py) lists one-node cases — op, attributes,
 * inputs (.npy, constant or not), the rule and its parameters, the relevance
 * at the outputs, and the relevance numpy computed in float64 from the
 * rule's formula. Here relprop's kernel runs the node, the rule runs on it,
 * and the results must agree; cases the generator marked conserving must
 * also conserve. One Check test per case (a loop test), so a failure names
 * the case. */
#include <cjson/cJSON.h>

#include "support/json_file.h"
#include "test_rules_harness.h"

#define FIXTURES RELPROP_SOURCE_DIR "/tests/data/rules"

/* The manifest, or NULL. No Check assertion here: main calls it too. */
static cJSON *load_manifest(void)
{
    return json_file_read(FIXTURES "/manifest.json");
}

static cJSON *manifest(void)
{
    cJSON *j = load_manifest();
    ck_assert_msg(j != NULL, "cannot read %s/manifest.json (regenerate with tools/make_rule_fixtures.py)", FIXTURES);
    return j;
}

/* Outside a test: a missing manifest gives one case, which then fails
 * with the message, rather than zero cases and a silent pass. */
static int n_cases(void)
{
    cJSON *j = load_manifest();
    if (!j)
        return 1;
    int n = cJSON_GetArraySize(cJSON_GetObjectItem(j, "cases"));
    cJSON_Delete(j);
    return n > 0 ? n : 1;
}

static void read_npy(const char *file, rp_tensor *t)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", FIXTURES, file);
    rp_error err = {0};
    ck_assert_msg(rp_npy_read(path, t, &err) == RP_OK, "%s", err.msg);
    ck_assert_int_eq(t->dtype, RP_FLOAT);
}

/* |got - want| <= 2e-4 max|want| + 1e-4 |want|: float32 against float64,
 * through divisions by sums of a few terms. */
static void close_to(const float *got, const float *want, int64_t n, const char *name, const char *what)
{
    double mx = 0;
    for (int64_t i = 0; i < n; i++)
        mx = fmax(mx, fabs(want[i]));
    for (int64_t i = 0; i < n; i++) {
        ck_assert_msg(isfinite(got[i]), "%s %s[%lld]: got %g", name, what, (long long)i, got[i]);
        ck_assert_msg(fabs((double)got[i] - want[i]) <= 2e-4 * mx + 1e-4 * fabs(want[i]) + 1e-7,
                      "%s %s[%lld]: got %.9g, numpy %.9g (max |want| %g)", name, what, (long long)i, got[i], want[i],
                      mx);
    }
}

START_TEST(rule_matches_numpy)
{
    cJSON *root = manifest();
    const cJSON *tc = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "cases"), _i);
    const char *name = cJSON_GetObjectItem(tc, "name")->valuestring;
    rcase *c = rc_new(cJSON_GetObjectItem(tc, "op")->valuestring, cJSON_GetObjectItem(tc, "opset")->valueint);
    require_backward(c->node.op_type, c->node.opset);
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItem(tc, "attrs"))
    {
        const char *an = cJSON_GetObjectItem(a, "name")->valuestring;
        const char *type = cJSON_GetObjectItem(a, "type")->valuestring;
        const cJSON *v = cJSON_GetObjectItem(a, "value");
        if (strcmp(type, "int") == 0) {
            rc_int(c, an, (int64_t)v->valuedouble);
        } else if (strcmp(type, "float") == 0) {
            rc_float(c, an, (float)v->valuedouble);
        } else if (strcmp(type, "string") == 0) {
            rc_string(c, an, v->valuestring);
        } else {
            int64_t ints[16];
            int n = 0;
            const cJSON *e;
            cJSON_ArrayForEach(e, v) ints[n++] = (int64_t)e->valuedouble;
            rc_ints(c, an, ints, n);
        }
    }
    const cJSON *in;
    cJSON_ArrayForEach(in, cJSON_GetObjectItem(tc, "inputs"))
    {
        rp_tensor t;
        read_npy(cJSON_GetObjectItem(in, "file")->valuestring, &t);
        rc_finput(c, t.rank, t.dims, t.data, cJSON_IsTrue(cJSON_GetObjectItem(in, "const")));
        rp_tensor_release(&t);
    }
    rc_forward(c, cJSON_GetObjectItem(tc, "n_out")->valueint);
    const cJSON *yfile = cJSON_GetObjectItem(tc, "output");
    if (cJSON_IsString(yfile)) {
        /* The kernel and numpy agree on the forward value first. */
        rp_tensor y;
        read_npy(yfile->valuestring, &y);
        ck_assert_int_eq(y.count, rc_out(c, 0)->count);
        close_to(rc_out(c, 0)->data, y.data, y.count, name, "forward");
        rp_tensor_release(&y);
    }
    rp_rule_params p = {0};
    const cJSON *pp;
    cJSON_ArrayForEach(pp, cJSON_GetObjectItem(tc, "params"))
        ck_assert_int_eq(rp_rule_param_set(&p, pp->string, pp->valuedouble, NULL), RP_OK);
    const char *rule = cJSON_GetObjectItem(tc, "rule")->valuestring;
    rp_status st = rc_rule(c, rule, &p);
    ck_assert_msg(st == RP_OK, "%s: prepare: %s", name, c->err.msg);
    int k = 0;
    const cJSON *rf;
    cJSON_ArrayForEach(rf, cJSON_GetObjectItem(tc, "rel_out"))
    {
        rp_tensor r;
        read_npy(rf->valuestring, &r);
        ck_assert_int_eq(r.count, c->rel_out[k].count);
        memcpy(c->rel_out[k].data, r.data, sizeof(float) * (size_t)r.count);
        rp_tensor_release(&r);
        k++;
    }
    rc_apply_ok(c);
    int i = 0;
    double sum_in = 0, sum_out = 0, scale = 0;
    const cJSON *ef;
    cJSON_ArrayForEach(ef, cJSON_GetObjectItem(tc, "expected"))
    {
        if (cJSON_IsString(ef)) {
            rp_tensor want;
            read_npy(ef->valuestring, &want);
            ck_assert_msg(c->rel_in_p[i] != NULL, "%s: input %d got no relevance buffer", name, i);
            ck_assert_int_eq(want.count, c->rel_in[i].count);
            char what[32];
            snprintf(what, sizeof what, "R_in%d", i);
            close_to(rel_in(c, i), want.data, want.count, name, what);
            sum_in += sum_f(rel_in(c, i), want.count);
            rp_tensor_release(&want);
        } else {
            ck_assert_msg(c->rel_in_p[i] == NULL, "%s: constant input %d was given relevance", name, i);
        }
        i++;
    }
    for (int q = 0; q < c->n_out; q++)
        if (c->rel_out_p[q])
            for (int64_t e = 0; e < c->rel_out[q].count; e++) {
                sum_out += rel_out(c, q)[e];
                scale += fabs(rel_out(c, q)[e]);
            }
    if (cJSON_IsTrue(cJSON_GetObjectItem(tc, "conserves"))) {
        ck_assert_msg(fabs(sum_in - sum_out) <= 1e-5 * scale, "%s: sum R_in %.9g != sum R %.9g", name, sum_in,
                      sum_out);
        ck_assert_msg(c->rule->conserves && c->rule->conserves(&c->params),
                      "%s: rule %s conserves here but does not say so", name, rule);
    }
    rc_free(c);
    cJSON_Delete(root);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rule_fixtures");
    TCase *t = tcase_create("numpy");
    tcase_add_loop_test(t, rule_matches_numpy, 0, n_cases());
    suite_add_tcase(s, t);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
