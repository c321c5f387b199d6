/* ViT variants (tests/variants, made by tools/export_variants.py, expected
 * maps from tools/reference.py — an independent PyTorch implementation of
 * docs/method.md §2 checked against the authors' oracle): distilled DeiT, mean
 * pooling, register tokens, separate q/k/v, pre-scaled q, patch 14 on a
 * 16×16 grid, a non-square input, masked attention, a softmax spelled out as
 * ReduceMax/Sub/Exp/ReduceSum/Div, a pre-logits Linear + Tanh before the
 * head, the head as MatMul + Add instead of Gemm, the plain ViT exported with
 * a symbolic batch dimension (reshapes computed from Shape(input); it binds
 * to 1) — each at opset 13 and 17.
 * relprop must find the structure (layers, heads, grid, prefix tokens,
 * readout) from the graph and reproduce all seven maps; an unsupported
 * layout (Swin-style windows) must be refused naming its Softmax nodes. */
#include <check.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "relprop/relprop.h"
#include "support/json_file.h"

#define VARIANTS RELPROP_SOURCE_DIR "/tests/variants"
#define REL_LIMIT 1e-3
#define PEARSON_LIMIT 0.99

static char *names[64];
static int n_names;
/* 12 variants × 2 opsets + unsupported_windowed: fewer means a fixture went
 * missing (or its meta.json is unreadable). */
#define N_FIXTURES 25


static const cJSON *get(const cJSON *o, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);
    if (b)
        x = cJSON_GetObjectItemCaseSensitive(x, b);
    ck_assert_msg(x != NULL, "meta.json: missing %s%s%s", a, b ? "." : "", b ? b : "");
    return x;
}

/* Expected maps are float64 (patch maps) or float32 (lrp_full). */
static double *load_doubles(const char *path, int64_t *count)
{
    rp_tensor t = {0};
    rp_error err = {0};
    ck_assert_msg(rp_npy_read(path, &t, &err) == RP_OK, "%s", err.msg);
    double *d = malloc(sizeof(double) * (size_t)(t.count ? t.count : 1));
    for (int64_t i = 0; i < t.count; i++)
        d[i] = t.dtype == RP_DOUBLE ? ((double *)t.data)[i] : ((float *)t.data)[i];
    *count = t.count;
    rp_tensor_release(&t);
    return d;
}

static double pearson(const float *a, const double *b, int64_t n)
{
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    for (int64_t i = 0; i < n; i++) {
        ma += a[i];
        mb += b[i];
    }
    ma /= (double)n;
    mb /= (double)n;
    for (int64_t i = 0; i < n; i++) {
        sab += (a[i] - ma) * (b[i] - mb);
        saa += (a[i] - ma) * (a[i] - ma);
        sbb += (b[i] - mb) * (b[i] - mb);
    }
    return sab / sqrt(saa * sbb);
}

START_TEST(test_variant)
{
    const char *name = names[_i];
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/%s", VARIANTS, name);
    snprintf(path, sizeof path, "%s/meta.json", dir);
    cJSON *meta = json_file_read(path);
    ck_assert_msg(meta != NULL, "cannot read %s", path);
    const cJSON *supported = cJSON_GetObjectItemCaseSensitive(meta, "supported");
    rp_error err = {0};
    rp_model *m = NULL;
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    ck_assert_msg(rp_model_load(path, &m, &err) == RP_OK, "%s: %s", name, err.msg);
    rp_tensor x = {0};
    snprintf(path, sizeof path, "%s/input.npy", dir);
    ck_assert_msg(rp_npy_read(path, &x, &err) == RP_OK, "%s", err.msg);
    rp_method methods[RP_METHOD_COUNT];
    for (int i = 0; i < RP_METHOD_COUNT; i++)
        methods[i] = (rp_method)i;
    rp_token_layout tl;

    if (cJSON_IsFalse(supported)) {
        /* Refused, naming the Softmax node, by inspect's layout query and by explain. */
        const cJSON *nodes = get(meta, "attention_softmax_nodes", NULL);
        const char *first = cJSON_GetArrayItem(nodes, 0)->valuestring;
        ck_assert_int_eq(rp_model_token_layout(m, &tl, &err), RP_ERR_UNSUPPORTED);
        ck_assert_msg(strstr(err.msg, first) != NULL, "%s: message does not name %s: %s", name, first, err.msg);
        rp_explanation *e = NULL;
        ck_assert_int_eq(rp_explain(m, &x, NULL, 0, methods, RP_METHOD_LRP_FULL, NULL, &e, &err),
                         RP_ERR_UNSUPPORTED);
        ck_assert_msg(strstr(err.msg, first) != NULL, "%s: explain does not name %s: %s", name, first, err.msg);
        ck_assert(e == NULL);
        goto done;
    }

    /* A symbolic batch dimension (meta.json: batch_dimension) binds to 1:
     * input.npy and the expected maps are for batch 1. */
    if (cJSON_GetObjectItemCaseSensitive(meta, "batch_dimension")) {
        ck_assert(cJSON_IsString(get(meta, "batch_dimension", "input_dim0")));
        const rp_tensor *in = rp_model_input_info(m, 0), *out = rp_model_output_info(m, 0);
        ck_assert_msg(in->rank == 4 && in->dims[0] == 1, "%s: symbolic batch of the input not bound to 1", name);
        ck_assert_msg(out->rank == 2 && out->dims[0] == 1, "%s: symbolic batch of the output not bound to 1", name);
    }

    /* Structure found in the graph. */
    const cJSON *geo = get(meta, "geometry", NULL);
    ck_assert_int_eq(rp_model_attention_count(m), get(meta, "layers", NULL)->valueint);
    rp_attention_info ai;
    ck_assert(rp_model_attention(m, 0, &ai, &err) == RP_OK);
    ck_assert_int_eq(ai.heads, get(meta, "heads", NULL)->valueint);
    ck_assert_msg(rp_model_token_layout(m, &tl, &err) == RP_OK, "%s: %s", name, err.msg);
    ck_assert_int_eq(tl.grid_h, cJSON_GetArrayItem(get(geo, "grid", NULL), 0)->valueint);
    ck_assert_int_eq(tl.grid_w, cJSON_GetArrayItem(get(geo, "grid", NULL), 1)->valueint);
    ck_assert_int_eq(tl.patch_h, get(geo, "patch", NULL)->valueint);
    ck_assert_int_eq(tl.prefix_tokens, get(geo, "prefix_tokens", NULL)->valueint);
    const cJSON *rw = get(geo, "readout_row_weights", NULL);
    int n_tokens = cJSON_GetArraySize(rw);
    ck_assert_int_eq(tl.tokens, n_tokens);
    float *readout = calloc((size_t)n_tokens, sizeof *readout);
    int listed = 0;
    for (int i = 0; i < n_tokens; i++) {
        double want = cJSON_GetArrayItem(rw, i)->valuedouble;
        if (want != 0 && listed < 16) {
            ck_assert_msg(listed < tl.n_readout_rows && tl.readout_rows[listed] == i,
                          "%s: readout row %d missing (%s)", name, i, tl.readout);
            ck_assert_msg(fabs(tl.readout_weights[listed] - want) < 1e-6, "%s: readout weight of row %d", name, i);
            listed++;
        }
        readout[i] = (float)want;
    }

    /* Where meta.json names them (graph_expectations): the nodes each
     * attention layer was found at, and the rule of the classifier nodes and
     * of a decomposed softmax's nodes. */
    const cJSON *gx = cJSON_GetObjectItemCaseSensitive(meta, "graph_expectations");
    if (gx) {
        const cJSON *layers = get(gx, "attention_layers", NULL);
        ck_assert_int_eq(rp_model_attention_count(m), cJSON_GetArraySize(layers));
        for (int l = 0; l < cJSON_GetArraySize(layers); l++) {
            const cJSON *want = cJSON_GetArrayItem(layers, l);
            ck_assert(rp_model_attention(m, l, &ai, &err) == RP_OK);
            ck_assert_msg(strcmp(ai.softmax_node, get(want, "softmax", NULL)->valuestring) == 0,
                          "%s: attention %d found at '%s', expected '%s'", name, l, ai.softmax_node,
                          get(want, "softmax", NULL)->valuestring);
            ck_assert_msg(strcmp(ai.product_node, get(want, "product", NULL)->valuestring) == 0,
                          "%s: attention %d product '%s', expected '%s'", name, l, ai.product_node,
                          get(want, "product", NULL)->valuestring);
        }
        const cJSON *nr;
        cJSON_ArrayForEach(nr, get(gx, "node_rules_paper", NULL))
        {
            int id = -1;
            for (int i = 0; i < rp_model_node_count(m) && id < 0; i++)
                if (strcmp(rp_model_node_name(m, i), nr->string) == 0)
                    id = i;
            ck_assert_msg(id >= 0, "%s: no node '%s'", name, nr->string);
            const char *kind = NULL, *rule = NULL;
            ck_assert_msg(rp_model_node_rule(m, "paper", id, &kind, &rule, &err) == RP_OK, "%s: %s", name, err.msg);
            const cJSON *wk = cJSON_GetArrayItem(nr, 0), *wr = cJSON_GetArrayItem(nr, 1);
            ck_assert_msg(kind && strcmp(kind, wk->valuestring) == 0, "%s: node '%s' is %s to LRP, expected %s", name,
                          nr->string, kind ? kind : "(null)", wk->valuestring);
            if (cJSON_IsNull(wr))
                ck_assert_msg(rule == NULL, "%s: node '%s' gets rule %s, expected none", name, nr->string, rule);
            else
                ck_assert_msg(rule && strcmp(rule, wr->valuestring) == 0, "%s: node '%s' gets rule %s, expected %s",
                              name, nr->string, rule ? rule : "(null)", wr->valuestring);
        }
    }

    /* All seven maps for both explained classes. */
    const cJSON *classes = get(meta, "explained_classes", NULL);
    int cls[2] = {cJSON_GetArrayItem(classes, 0)->valueint, cJSON_GetArrayItem(classes, 1)->valueint};
    rp_explanation *e = NULL;
    ck_assert_msg(rp_explain(m, &x, cls, 2, methods, RP_METHOD_COUNT, NULL, &e, &err) == RP_OK, "%s: %s", name,
                  err.msg);
    int prefix = tl.prefix_tokens;
    for (int ci = 0; ci < 2; ci++) {
        for (int mi = 0; mi < RP_METHOD_COUNT; mi++) {
            const char *method = rp_method_name(methods[mi]);
            snprintf(path, sizeof path, "%s/expected/class_%d/%s.npy", dir, cls[ci], method);
            int64_t n;
            double *want = load_doubles(path, &n);
            const rp_tensor *got = rp_explanation_map(e, ci, mi);
            ck_assert_msg(got->count == n, "%s %s: %lld values, expected %lld", name, method, (long long)got->count,
                          (long long)n);
            const float *g = got->data;
            if (methods[mi] == RP_METHOD_LRP_FULL) {
                double r = pearson(g, want, n);
                ck_assert_msg(r >= PEARSON_LIMIT, "%s class %d lrp_full: pearson %.4f", name, cls[ci], r);
            } else {
                /* Aggregations that start from I carry the readout's own patch
                 * weights (1/N everywhere for mean pooling), which would hide
                 * the G·R part under the tolerance: compare without them. */
                bool from_identity = methods[mi] == RP_METHOD_TRANSFORMER_ATTRIBUTION ||
                                     methods[mi] == RP_METHOD_GENERIC_ATTENTION;
                double worst = 0, scale = 0;
                for (int64_t i = 0; i < n; i++) {
                    double base = from_identity ? readout[prefix + i] : 0;
                    worst = fmax(worst, fabs((g[i] - base) - (want[i] - base)));
                    scale = fmax(scale, fabs(want[i] - base));
                }
                double rel = scale > 0 ? worst / scale : worst;
                ck_assert_msg(rel <= REL_LIMIT, "%s class %d %s: relative error %.3e", name, cls[ci], method, rel);
            }
            free(want);
        }
    }
    rp_explanation_free(e);
    free(readout);
done:
    rp_tensor_release(&x);
    rp_model_free(m);
    cJSON_Delete(meta);
}
END_TEST

/* --batch: the symbolic-batch fixture run with a batch of 2 (rp_model_set_batch)
 * explains each row for its own top-1 class. Every row's transformer_attribution
 * and rollout equal the reference's (each row explained alone, files
 * expected_batch2_*), and every row's seven maps equal what a batch of 1 gives
 * for that row: to 1e-5 relative, lrp_full to 1e-3 (its GEMMs block the rows
 * differently, and it divides by small pixel sums). */
static double max_rel(const float *a, const float *b, int64_t n)
{
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)a[i] - b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    return scale > 0 ? worst / scale : worst;
}

START_TEST(test_batch)
{
    static const char *const opsets[2] = {"dynamic_batch_op13", "dynamic_batch_op17"};
    const char *name = opsets[_i];
    char dir[1024], path[1400];
    snprintf(dir, sizeof dir, "%s/%s", VARIANTS, name);
    rp_error err = {0};
    rp_model *m2 = NULL, *m1 = NULL;
    rp_tensor x = {0};
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    ck_assert_msg(rp_model_open(path, &m2, &err) == RP_OK, "%s", err.msg);
    ck_assert_msg(rp_model_set_batch(m2, 2, &err) == RP_OK, "%s", err.msg);
    ck_assert_msg(rp_model_load(path, &m1, &err) == RP_OK, "%s", err.msg);
    snprintf(path, sizeof path, "%s/input_batch2.npy", dir);
    ck_assert_msg(rp_npy_read(path, &x, &err) == RP_OK, "%s", err.msg);
    rp_method all[RP_METHOD_COUNT];
    for (int k = 0; k < RP_METHOD_COUNT; k++)
        all[k] = (rp_method)k;
    rp_explanation *e = NULL;
    ck_assert_msg(rp_explain(m2, &x, NULL, 0, all, RP_METHOD_COUNT, NULL, &e, &err) == RP_OK, "%s: %s", name, err.msg);
    ck_assert_int_eq(rp_explanation_batch(e), 2);
    ck_assert_int_eq(rp_explanation_logits(e)->count, 2 * rp_explanation_logits(e)->dims[1]);
    int64_t row = x.count / 2;
    for (int b = 0; b < 2; b++) {
        int cls = rp_explanation_sample_class(e, b, 0);
        /* the row alone, batch 1 */
        int64_t dims[4] = {1, x.dims[1], x.dims[2], x.dims[3]};
        rp_tensor one = {0};
        ck_assert(rp_tensor_alloc(&one, RP_FLOAT, 4, dims, &err) == RP_OK);
        memcpy(one.data, (float *)x.data + b * row, sizeof(float) * (size_t)row);
        rp_explanation *e1 = NULL;
        ck_assert_msg(rp_explain(m1, &one, NULL, 0, all, RP_METHOD_COUNT, NULL, &e1, &err) == RP_OK, "%s", err.msg);
        ck_assert_int_eq(rp_explanation_class(e1, 0), cls);
        for (int mi = 0; mi < RP_METHOD_COUNT; mi++) {
            const rp_tensor *got = rp_explanation_sample_map(e, b, 0, mi), *alone = rp_explanation_map(e1, 0, mi);
            ck_assert_int_eq(got->count, alone->count);
            double rel = max_rel(got->data, alone->data, got->count);
            double limit = all[mi] == RP_METHOD_LRP_FULL ? 1e-3 : 1e-5;
            ck_assert_msg(rel <= limit, "%s row %d class %d %s: batch 2 vs batch 1: %.3e", name, b, cls,
                          rp_method_name(all[mi]), rel);
        }
        static const rp_method ref_methods[2] = {RP_METHOD_TRANSFORMER_ATTRIBUTION, RP_METHOD_ROLLOUT};
        for (int k = 0; k < 2; k++) {
            snprintf(path, sizeof path, "%s/expected_batch2_%s_%d_class_%d.npy", dir, rp_method_name(ref_methods[k]),
                     b, cls);
            int64_t n;
            double *want = load_doubles(path, &n);
            const rp_tensor *got = rp_explanation_sample_map(e, b, 0, (int)ref_methods[k]);
            ck_assert_int_eq(got->count, n);
            double worst = 0, scale = 0;
            for (int64_t i = 0; i < n; i++) {
                worst = fmax(worst, fabs(((const float *)got->data)[i] - want[i]));
                scale = fmax(scale, fabs(want[i]));
            }
            ck_assert_msg(worst <= REL_LIMIT * scale, "%s row %d class %d %s vs reference: %.3e", name, b, cls,
                          rp_method_name(ref_methods[k]), worst / scale);
            free(want);
        }
        rp_explanation_free(e1);
        rp_tensor_release(&one);
    }
    rp_explanation_free(e);
    /* a fixed-batch model refuses a batch, saying how to export one that takes it */
    rp_model *fixed = NULL;
    snprintf(path, sizeof path, "%s/distilled_op17/model.onnx", VARIANTS);
    ck_assert_msg(rp_model_open(path, &fixed, &err) == RP_OK, "%s", err.msg);
    ck_assert(rp_model_set_batch(fixed, 3, &err) == RP_OK);
    ck_assert(rp_model_prepare(fixed, &err) == RP_ERR_SHAPE);
    ck_assert_msg(strstr(err.msg, "fixed leading dimension") && strstr(err.msg, "dynamic_axes"), "%s", err.msg);
    rp_model_free(fixed);
    rp_tensor_release(&x);
    rp_model_free(m1);
    rp_model_free(m2);
}
END_TEST

/* A fixture relprop explains: its model path and input (false, and nothing
 * read, for the fixtures it refuses). */
/* The fixtures relprop explains (meta.json has no "supported": false); the
 * others are checked for their refusal by test_variant. */
static char *explained[64];
static int n_explained;

static bool fixture_supported(const char *name)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s/meta.json", VARIANTS, name);
    cJSON *meta = json_file_read(path);
    if (!meta)
        return true; /* test_variant reports the unreadable meta.json */
    bool supported = !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(meta, "supported"));
    cJSON_Delete(meta);
    return supported;
}

/* An explained fixture's model path and input. */
static void explained_case(const char *name, char *model_path, size_t len, rp_tensor *x)
{
    char path[1200];
    rp_error err = {0};
    snprintf(path, sizeof path, "%s/%s/input.npy", VARIANTS, name);
    ck_assert_msg(rp_npy_read(path, x, &err) == RP_OK, "%s", err.msg);
    snprintf(model_path, len, "%s/%s/model.onnx", VARIANTS, name);
}

/* The memory plan (values nothing reads after the forward pass share
 * buffers; the route rule reads one side of a pure move) changes no bit of
 * any map, under any rule set: against a model that keeps every value. */
START_TEST(test_memory_plan_same_bits)
{
    static const char *const rule_sets[] = {"paper", "attnlrp", "epsilon", "zplus"};
    const char *name = explained[_i];
    char path[1200];
    rp_tensor x = {0};
    explained_case(name, path, sizeof path, &x);
    rp_error err = {0};
    rp_method methods[RP_METHOD_COUNT];
    for (int i = 0; i < RP_METHOD_COUNT; i++)
        methods[i] = (rp_method)i;
    for (size_t r = 0; r < sizeof rule_sets / sizeof rule_sets[0]; r++) {
        rp_model *whole = NULL, *planned = NULL;
        ck_assert_msg(rp_model_load(path, &whole, &err) == RP_OK, "%s", err.msg);
        ck_assert_msg(rp_model_load(path, &planned, &err) == RP_OK, "%s", err.msg);
        rp_explain_options keep_all = {.keep_intermediates = true, .rules = rule_sets[r]};
        rp_explain_options plan = {.rules = rule_sets[r]};
        rp_explanation *a = NULL, *b = NULL;
        ck_assert_msg(rp_explain(whole, &x, NULL, 0, methods, RP_METHOD_COUNT, &keep_all, &a, &err) == RP_OK,
                      "%s %s: %s", name, rule_sets[r], err.msg);
        ck_assert_msg(rp_explain(planned, &x, NULL, 0, methods, RP_METHOD_COUNT, &plan, &b, &err) == RP_OK,
                      "%s %s: %s", name, rule_sets[r], err.msg);
        for (int mi = 0; mi < RP_METHOD_COUNT; mi++) {
            const rp_tensor *ma = rp_explanation_map(a, 0, mi), *mb = rp_explanation_map(b, 0, mi);
            ck_assert_int_eq(ma->count, mb->count);
            ck_assert_msg(memcmp(ma->data, mb->data, sizeof(float) * (size_t)ma->count) == 0,
                          "%s, rule set %s, %s: the memory plan changed the map", name, rule_sets[r],
                          rp_method_name(methods[mi]));
        }
        rp_explanation_free(a);
        rp_explanation_free(b);
        /* Transformer attribution without GradCAM, generic attention or
         * partial LRP: each gradient is multiplied into the relevance as
         * the walk finishes it. Two classes: the walks alternate twice. */
        static const rp_method fused[2] = {RP_METHOD_TRANSFORMER_ATTRIBUTION, RP_METHOD_LRP_FULL};
        rp_explain_options keep_all2 = {.keep_intermediates = true, .rules = rule_sets[r], .top_classes = 2};
        rp_explain_options plan2 = {.rules = rule_sets[r], .top_classes = 2};
        ck_assert(rp_explain(whole, &x, NULL, 0, fused, 2, &keep_all2, &a, &err) == RP_OK);
        ck_assert_msg(rp_explain(planned, &x, NULL, 0, fused, 2, &plan2, &b, &err) == RP_OK, "%s", err.msg);
        ck_assert_int_eq(rp_explanation_class_count(b), 2);
        for (int ci = 0; ci < 2; ci++)
            for (int mi = 0; mi < 2; mi++) {
                const rp_tensor *ma = rp_explanation_map(a, ci, mi), *mb = rp_explanation_map(b, ci, mi);
                ck_assert_msg(memcmp(ma->data, mb->data, sizeof(float) * (size_t)ma->count) == 0,
                              "%s, rule set %s, class rank %d, %s: fused gradient and relevance changed the map",
                              name, rule_sets[r], ci, rp_method_name(fused[mi]));
            }
        rp_explanation_free(a);
        rp_explanation_free(b);
        rp_model_free(whole);
        rp_model_free(planned);
    }
    rp_tensor_release(&x);
}
END_TEST

/* One model through every change of plan — transformer attribution alone
 * (fused), all methods with intermediates (every value kept), a plain run
 * (outputs only), all methods again — gives what fresh models give. */
START_TEST(test_memory_plan_switches)
{
    const char *name = explained[_i];
    char path[1200];
    rp_tensor x = {0}, y_fresh = {0}, y = {0};
    explained_case(name, path, sizeof path, &x);
    rp_error err = {0};
    rp_method all[RP_METHOD_COUNT], ta = RP_METHOD_TRANSFORMER_ATTRIBUTION;
    for (int i = 0; i < RP_METHOD_COUNT; i++)
        all[i] = (rp_method)i;
    rp_model *m = NULL, *fresh = NULL;
    ck_assert_msg(rp_model_load(path, &m, &err) == RP_OK, "%s", err.msg);
    rp_explain_options keep = {.keep_intermediates = true};
    rp_explanation *e[4] = {NULL}, *want[2] = {NULL};
    ck_assert(rp_explain(m, &x, NULL, 0, &ta, 1, NULL, &e[0], &err) == RP_OK);
    ck_assert(rp_explain(m, &x, NULL, 0, all, RP_METHOD_COUNT, &keep, &e[1], &err) == RP_OK);
    ck_assert(rp_model_run(m, &x, &y, &err) == RP_OK);
    ck_assert(rp_explain(m, &x, NULL, 0, all, RP_METHOD_COUNT, NULL, &e[2], &err) == RP_OK);
    ck_assert(rp_explain(m, &x, NULL, 0, &ta, 1, NULL, &e[3], &err) == RP_OK);
    ck_assert_msg(rp_model_load(path, &fresh, &err) == RP_OK, "%s", err.msg);
    ck_assert(rp_model_run(fresh, &x, &y_fresh, &err) == RP_OK);
    ck_assert(rp_explain(fresh, &x, NULL, 0, all, RP_METHOD_COUNT, NULL, &want[0], &err) == RP_OK);
    ck_assert(rp_explain(fresh, &x, NULL, 0, &ta, 1, NULL, &want[1], &err) == RP_OK);
    ck_assert(y.count == y_fresh.count && memcmp(y.data, y_fresh.data, sizeof(float) * (size_t)y.count) == 0);
    for (int k = 0; k < 4; k++) {
        const rp_explanation *w = k == 0 || k == 3 ? want[1] : want[0];
        for (int mi = 0; mi < rp_explanation_method_count(e[k]); mi++) {
            const rp_tensor *got = rp_explanation_map(e[k], 0, mi), *exp = rp_explanation_map(w, 0, mi);
            ck_assert_msg(got->count == exp->count &&
                              memcmp(got->data, exp->data, sizeof(float) * (size_t)got->count) == 0,
                          "%s: explanation %d, method %d differs from a fresh model's", name, k, mi);
        }
    }
    for (int k = 0; k < 4; k++)
        rp_explanation_free(e[k]);
    rp_explanation_free(want[0]);
    rp_explanation_free(want[1]);
    rp_tensor_release(&y);
    rp_tensor_release(&y_fresh);
    rp_tensor_release(&x);
    rp_model_free(m);
    rp_model_free(fresh);
}
END_TEST

int main(void)
{
    DIR *d = opendir(VARIANTS);
    struct dirent *ent;
    while (d && (ent = readdir(d)) && n_names < 64) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s/meta.json", VARIANTS, ent->d_name);
        if (ent->d_name[0] != '.' && access(path, R_OK) == 0)
            names[n_names++] = strdup(ent->d_name);
    }
    if (d)
        closedir(d);
    for (int i = 0; i < n_names; i++)
        if (fixture_supported(names[i]))
            explained[n_explained++] = names[i];
    Suite *s = suite_create("variants");
    TCase *tc = tcase_create("variants");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_variant, 0, n_names);
    tcase_add_loop_test(tc, test_batch, 0, 2);
    tcase_add_loop_test(tc, test_memory_plan_same_bits, 0, n_explained);
    tcase_add_loop_test(tc, test_memory_plan_switches, 0, n_explained);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    for (int i = 0; i < n_names; i++)
        free(names[i]);
    if (n_names < N_FIXTURES)
        fprintf(stderr, "variants: %d fixtures found under %s, expected %d\n", n_names, VARIANTS, N_FIXTURES);
    return (failed || n_names < N_FIXTURES) ? EXIT_FAILURE : EXIT_SUCCESS;
}
