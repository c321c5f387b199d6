/* The ONNX loader (src/graph/onnx_{graph,tensor,wire}.c) and .npy I/O (src/core/npy.c).
 *
 * Fixtures: the fmnist ViT from tests/oracle (or ../shared), Debian's ONNX
 * conformance models, and the small hand-made models in tests/data/loader and
 * tests/data/external, made by tests/data/loader/make_fixtures.py (some are
 * broken on purpose). Temporary files go to a fresh mkdtemp folder per test. */
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 700 /* mkdtemp, symlink */
#endif
#include <check.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/npy.h"
#include "graph/graph.h"
#include "graph/rewrite.h"
#include "rules/assign.h"

#ifndef RELPROP_SOURCE_DIR
#define RELPROP_SOURCE_DIR "."
#endif
#define LOADER_DIR RELPROP_SOURCE_DIR "/tests/data/loader"
#define EXT_DIR RELPROP_SOURCE_DIR "/tests/data/external"
#define NODE_DIR "/usr/share/libonnx-testdata/data/node"

/* ---- helpers ---- */

static const char *fmnist_path(void)
{
    static const char *candidates[] = {
        RELPROP_SOURCE_DIR "/tests/oracle/fmnist_vit_s__timm17/model.onnx",
        RELPROP_SOURCE_DIR "/../shared/oracle/cases/fmnist_vit_s__timm17/model.onnx",
        "/work/shared/oracle/cases/fmnist_vit_s__timm17/model.onnx",
    };
    for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++)
        if (access(candidates[i], R_OK) == 0)
            return candidates[i];
    return candidates[0];
}

static char tmpdir[256];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/relprop_test_loader.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

/* Remove everything in tmpdir (flat) and the folder itself. */
static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    if (!d)
        return;
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

static char *tmp_path(const char *name)
{
    static char bufs[4][512];
    static int k;
    char *b = bufs[k++ % 4];
    snprintf(b, sizeof bufs[0], "%s/%s", tmpdir, name);
    return b;
}

static void write_file(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    *len = n;
    return buf;
}

static void copy_file(const char *from, const char *to)
{
    size_t len;
    uint8_t *b = slurp(from, &len);
    write_file(to, b, len);
    free(b);
}

/* Load that must fail with code; the message must contain each of the
 * NULL-terminated needles. */
static void expect_load_error(const char *path, rp_status code, ...)
{
    rp_error err = {0};
    rp_graph *g = (rp_graph *)0x1;
    rp_status st = rp_graph_load(path, &g, &err);
    ck_assert_msg(st == code, "%s: expected %s, got %s: %s", path, rp_status_name(code), rp_status_name(st),
                  err.msg);
    ck_assert_ptr_null(g);
    ck_assert_int_eq(err.code, code);
    va_list ap;
    va_start(ap, code);
    const char *needle;
    while ((needle = va_arg(ap, const char *)) != NULL)
        ck_assert_msg(strstr(err.msg, needle) != NULL, "message '%s' lacks '%s'", err.msg, needle);
    va_end(ap);
    /* err may be NULL: same code, no crash. */
    ck_assert_int_eq(rp_graph_load(path, &g, NULL), code);
    ck_assert_ptr_null(g);
}

static rp_graph *load_ok(const char *path)
{
    rp_error err = {0};
    rp_graph *g = NULL;
    rp_status st = rp_graph_load(path, &g, &err);
    ck_assert_msg(st == RP_OK, "%s: %s", path, err.msg);
    ck_assert_ptr_nonnull(g);
    return g;
}

static const rp_value *value(const rp_graph *g, const char *name)
{
    int id = rp_graph_find_value(g, name);
    ck_assert_msg(id >= 0, "no value '%s'", name);
    return &g->values[id];
}

static const rp_node *node(const rp_graph *g, const char *name)
{
    int id = rp_graph_find_node(g, name);
    ck_assert_msg(id >= 0, "no node '%s'", name);
    return &g->nodes[id];
}

/* The consumer index lists exactly the nodes that read each value, each
 * once and in node order (what a scan over all nodes finds). */
static void check_consumer_index(const rp_graph *g)
{
    int *scan = malloc(sizeof *scan * ((size_t)g->n_nodes + 1));
    ck_assert_ptr_nonnull(scan);
    for (int v = 0; v < g->n_values; v++) {
        int n_scan = 0;
        for (int i = 0; i < g->n_nodes; i++)
            for (int k = 0; k < g->nodes[i].n_in; k++)
                if (g->nodes[i].in[k] == v) {
                    scan[n_scan++] = i;
                    break;
                }
        const int *list;
        ck_assert_int_eq(rp_graph_consumer_list(g, v, &list), n_scan);
        for (int c = 0; c < n_scan; c++)
            ck_assert_int_eq(list[c], scan[c]);
        int first = -1;
        ck_assert_int_eq(rp_graph_consumers(g, v, &first, 1), n_scan);
        ck_assert_int_eq(first, n_scan ? scan[0] : -1);
    }
    free(scan);
}

/* Producers come before consumers, producer ids point back at their node,
 * and the consumer index agrees. */
static void check_topological(const rp_graph *g)
{
    for (int i = 0; i < g->n_nodes; i++) {
        const rp_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0)
                ck_assert_int_lt(g->values[n->in[k]].producer, i);
        for (int k = 0; k < n->n_out; k++)
            if (n->out[k] >= 0)
                ck_assert_int_eq(g->values[n->out[k]].producer, i);
    }
    check_consumer_index(g);
}

/* ---- the fmnist ViT ---- */

START_TEST(test_fmnist_model)
{
    rp_graph *g = load_ok(fmnist_path());
    ck_assert_int_eq(g->n_nodes, 166);
    ck_assert_int_eq(rp_graph_opset(g, ""), 17);
    ck_assert_int_eq(rp_graph_opset(g, "ai.onnx"), 17);
    ck_assert_int_eq(rp_graph_opset(g, "com.microsoft"), 0);
    ck_assert_int_eq(g->ir_version, 8);
    ck_assert_str_eq(g->path, fmnist_path());
    ck_assert_ptr_nonnull(g->model_dir);

    ck_assert_int_eq(g->n_inputs, 1);
    const rp_value *in = &g->values[g->inputs[0]];
    ck_assert_str_eq(in->name, "input");
    ck_assert_int_eq(in->kind, RP_VALUE_INPUT);
    ck_assert_int_eq(in->t.dtype, RP_FLOAT);
    ck_assert_int_eq(in->t.rank, 4);
    ck_assert_int_eq(in->t.dims[0], 1);
    ck_assert_int_eq(in->t.dims[1], 3);
    ck_assert_int_eq(in->t.dims[2], 64);
    ck_assert_int_eq(in->t.dims[3], 64);
    ck_assert_int_eq(in->t.count, 3 * 64 * 64);
    ck_assert(in->shape_known);
    ck_assert_ptr_null(in->t.data);
    ck_assert_int_eq(in->producer, -1);

    ck_assert_int_eq(g->n_outputs, 1);
    const rp_value *out = &g->values[g->outputs[0]];
    ck_assert_str_eq(out->name, "logits");
    ck_assert(out->is_graph_output);
    ck_assert_int_eq(out->kind, RP_VALUE_ACTIVATION);
    ck_assert_int_ge(out->producer, 0);

    int constants = 0, activations = 0;
    for (int i = 0; i < g->n_values; i++) {
        const rp_value *v = &g->values[i];
        if (v->kind == RP_VALUE_CONSTANT) {
            constants++;
            ck_assert(v->shape_known);
            ck_assert_ptr_nonnull(v->t.data);
            ck_assert_int_eq(v->producer, -1);
        } else if (v->kind == RP_VALUE_ACTIVATION) {
            activations++;
        }
    }
    ck_assert_int_eq(constants, 56);
    ck_assert_int_eq(g->n_values, 1 + 56 + activations);
    check_topological(g);

    /* The first node is a Constant holding a raw int64 scalar 0. */
    const rp_node *c = &g->nodes[0];
    ck_assert_str_eq(c->name, "/Constant");
    ck_assert_str_eq(c->op_type, "Constant");
    const rp_attr *cv = rp_node_attr(c, "value");
    ck_assert_ptr_nonnull(cv);
    ck_assert_int_eq(cv->type, RP_ATTR_TENSOR);
    ck_assert_int_eq(cv->tensor->dtype, RP_INT64);
    ck_assert_int_eq(cv->tensor->rank, 0);
    ck_assert_int_eq(cv->tensor->count, 1);
    ck_assert_int_eq(((int64_t *)cv->tensor->data)[0], 0);

    /* The patch Conv. */
    int conv_id = -1;
    for (int i = 0; i < g->n_nodes && conv_id < 0; i++)
        if (strcmp(g->nodes[i].op_type, "Conv") == 0)
            conv_id = i;
    ck_assert_int_eq(conv_id, 2);
    const rp_node *conv = &g->nodes[conv_id];
    ck_assert_str_eq(conv->name, "/patch_embed/proj/Conv");
    ck_assert_str_eq(conv->domain, "");
    ck_assert_int_eq(conv->opset, 17);
    ck_assert_int_eq(conv->n_in, 3);
    ck_assert_int_eq(conv->n_out, 1);
    ck_assert_str_eq(g->values[conv->in[0]].name, "input");
    ck_assert_str_eq(g->values[conv->in[1]].name, "patch_embed.proj.weight");
    ck_assert_str_eq(g->values[conv->in[2]].name, "patch_embed.proj.bias");
    ck_assert_str_eq(g->values[conv->out[0]].name, "/patch_embed/proj/Conv_output_0");
    ck_assert_int_eq(g->values[conv->out[0]].producer, conv_id);
    ck_assert_ptr_null(conv->op);
    ck_assert(!conv->folded);

    ck_assert_int_eq(conv->n_attr, 5);
    const rp_attr *a = rp_node_attr(conv, "dilations");
    ck_assert_int_eq(a->type, RP_ATTR_INTS);
    ck_assert_int_eq(a->n, 2);
    ck_assert_int_eq(a->ints[0], 1);
    ck_assert_int_eq(a->ints[1], 1);
    a = rp_node_attr(conv, "group");
    ck_assert_int_eq(a->type, RP_ATTR_INT);
    ck_assert_int_eq(a->i, 1);
    a = rp_node_attr(conv, "kernel_shape");
    ck_assert_int_eq(a->type, RP_ATTR_INTS);
    ck_assert_int_eq(a->n, 2);
    ck_assert_int_eq(a->ints[0], 8);
    ck_assert_int_eq(a->ints[1], 8);
    a = rp_node_attr(conv, "pads");
    ck_assert_int_eq(a->n, 4);
    for (int k = 0; k < 4; k++)
        ck_assert_int_eq(a->ints[k], 0);
    a = rp_node_attr(conv, "strides");
    ck_assert_int_eq(a->n, 2);
    ck_assert_int_eq(a->ints[0], 8);
    ck_assert_int_eq(a->ints[1], 8);
    ck_assert_ptr_null(rp_node_attr(conv, "auto_pad"));

    /* Initializer bytes decoded from raw_data (values from numpy). */
    const rp_value *w = value(g, "patch_embed.proj.weight");
    ck_assert_int_eq(w->kind, RP_VALUE_CONSTANT);
    ck_assert_int_eq(w->t.dtype, RP_FLOAT);
    ck_assert_int_eq(w->t.rank, 4);
    ck_assert_int_eq(w->t.dims[0], 96);
    ck_assert_int_eq(w->t.count, 96 * 3 * 8 * 8);
    const float *wd = w->t.data;
    ck_assert_float_eq(wd[0], -0.009109926f);
    ck_assert_float_eq(wd[w->t.count - 1], -0.044805184f);
    double sum = 0;
    for (int64_t i = 0; i < w->t.count; i++)
        sum += wd[i];
    ck_assert_double_eq_tol(sum, 10.505875693618918, 1e-9);
    rp_graph_free(g);
}
END_TEST

START_TEST(test_load_buffer)
{
    size_t len;
    uint8_t *buf = slurp(fmnist_path(), &len);
    rp_error err = {0};
    rp_graph *g = NULL;
    ck_assert_int_eq(rp_graph_load_buffer(buf, len, NULL, &g, &err), RP_OK);
    ck_assert_ptr_null(g->path);
    ck_assert_ptr_null(g->model_dir);
    ck_assert_int_eq(g->n_nodes, 166);
    rp_graph_free(g);

    /* The buffer is copied from, never kept: scribbling on it afterwards
     * must not change the graph. */
    ck_assert_int_eq(rp_graph_load_buffer(buf, len, "mem.onnx", &g, &err), RP_OK);
    ck_assert_str_eq(g->path, "mem.onnx");
    ck_assert_str_eq(g->model_dir, ".");
    memset(buf, 0xAB, len);
    ck_assert_str_eq(g->nodes[2].name, "/patch_embed/proj/Conv");
    ck_assert_float_eq(((const float *)value(g, "patch_embed.proj.weight")->t.data)[0], -0.009109926f);
    rp_graph_free(g);
    free(buf);

    ck_assert_int_eq(rp_graph_load_buffer((const uint8_t *)"", 0, "x.onnx", &g, &err), RP_ERR_FORMAT);
    ck_assert_ptr_null(g);
}
END_TEST

static void assert_same_constants(const rp_graph *a, const rp_graph *b)
{
    ck_assert_int_eq(a->n_values, b->n_values);
    int constants = 0;
    for (int i = 0; i < a->n_values; i++) {
        const rp_value *x = &a->values[i], *y = &b->values[i];
        ck_assert_str_eq(x->name, y->name);
        ck_assert_int_eq(x->kind, y->kind);
        if (x->kind != RP_VALUE_CONSTANT)
            continue;
        constants++;
        ck_assert_int_eq(x->t.dtype, y->t.dtype);
        ck_assert_int_eq(x->t.count, y->t.count);
        ck_assert(x->t.count == 0 ||
                  memcmp(x->t.data, y->t.data, (size_t)x->t.count * rp_dtype_size(x->t.dtype)) == 0);
    }
    ck_assert_int_gt(constants, 50);
}

/* A regular file is mapped and its weights read with pread; a buffer is
 * copied from; a pipe is read whole. All three must give the same weights. */
START_TEST(test_load_paths_agree)
{
    size_t len;
    uint8_t *buf = slurp(fmnist_path(), &len);
    rp_error err = {0};
    rp_graph *from_file = NULL, *from_buffer = NULL, *from_pipe = NULL;
    ck_assert_int_eq(rp_graph_load(fmnist_path(), &from_file, &err), RP_OK);
    ck_assert_int_eq(rp_graph_load_buffer(buf, len, NULL, &from_buffer, &err), RP_OK);
    assert_same_constants(from_file, from_buffer);

    make_tmpdir();
    char fifo[300];
    snprintf(fifo, sizeof fifo, "%s/model.fifo", tmpdir);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) { /* the writer; it frees what it holds, for valgrind's leak check at its exit */
        FILE *w = fopen(fifo, "wb");
        size_t put = w ? fwrite(buf, 1, len, w) : 0;
        bool ok = w && put == len && fclose(w) == 0;
        free(buf);
        rp_graph_free(from_file);
        rp_graph_free(from_buffer);
        _exit(ok ? 0 : 1);
    }
    rp_status st = rp_graph_load(fifo, &from_pipe, &err);
    int status = 0;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_msg(st == RP_OK, "%s", err.msg);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_same_constants(from_file, from_pipe);
    unlink(fifo);

    rp_graph_free(from_file);
    rp_graph_free(from_buffer);
    rp_graph_free(from_pipe);
    free(buf);
}
END_TEST

/* ---- broken files ---- */

START_TEST(test_truncated_model)
{
    make_tmpdir();
    size_t len;
    uint8_t *buf = slurp(fmnist_path(), &len);
    ck_assert_uint_gt(len, 1000);
    const char *p = tmp_path("model.onnx");
    write_file(p, buf, 1000);
    expect_load_error(p, RP_ERR_FORMAT, p, "not an ONNX model", NULL);

    /* Every cut fails cleanly (a cut at a field boundary parses but has no
     * complete graph). */
    for (size_t cut = 0; cut < len; cut += cut < 4096 ? 13 : 65537) {
        rp_graph *g = (rp_graph *)0x1;
        rp_error err = {0};
        rp_status st = rp_graph_load_buffer(buf, cut, "cut.onnx", &g, &err);
        ck_assert_msg(st == RP_ERR_FORMAT, "cut at %zu: %s", cut, err.msg);
        ck_assert_ptr_null(g);
        ck_assert_msg(strncmp(err.msg, "cut.onnx: ", 10) == 0, "%s", err.msg);
    }
    free(buf);
    remove_tmpdir();
}
END_TEST

START_TEST(test_not_onnx)
{
    make_tmpdir();
    const char *text = tmp_path("readme.onnx");
    const char *s = "this is not a model\n";
    write_file(text, s, strlen(s));
    expect_load_error(text, RP_ERR_FORMAT, text, NULL);

    const char *empty = tmp_path("empty.onnx");
    write_file(empty, "", 0);
    expect_load_error(empty, RP_ERR_FORMAT, empty, "empty", NULL);

    /* An .npy file is not a model either. */
    expect_load_error(LOADER_DIR "/np_f32.npy", RP_ERR_FORMAT, "np_f32.npy", NULL);

    expect_load_error(tmp_path("absent.onnx"), RP_ERR_IO, "absent.onnx", NULL);
    expect_load_error(tmpdir, RP_ERR_IO, tmpdir, NULL); /* a folder */
    remove_tmpdir();
}
END_TEST

START_TEST(test_bad_graphs)
{
    expect_load_error(LOADER_DIR "/no_graph.onnx", RP_ERR_FORMAT, "no_graph.onnx: no graph", NULL);
    expect_load_error(LOADER_DIR "/cycle.onnx", RP_ERR_FORMAT, "cycle", NULL);
    {
        rp_error err = {0};
        rp_graph *g = NULL;
        rp_graph_load(LOADER_DIR "/cycle.onnx", &g, &err);
        /* The node named must be on the cycle (p ↔ q), not merely after it. */
        ck_assert_msg(strstr(err.msg, "'p'") || strstr(err.msg, "'q'"), "%s", err.msg);
    }
    expect_load_error(LOADER_DIR "/missing_input.onnx", RP_ERR_FORMAT, "adder", "Add", "'ghost'", NULL);
    expect_load_error(LOADER_DIR "/dup_output.onnx", RP_ERR_FORMAT, "'two'", "'y'", NULL);
    expect_load_error(LOADER_DIR "/missing_output.onnx", RP_ERR_FORMAT, "'nowhere'", NULL);
    expect_load_error(LOADER_DIR "/float16_init.onnx", RP_ERR_UNSUPPORTED, "'half'", "float16", NULL);
    expect_load_error(LOADER_DIR "/raw_mismatch.onnx", RP_ERR_FORMAT,
                      "tensor 'w': raw_data has 20 bytes, expected 24", NULL);
    expect_load_error(LOADER_DIR "/typed_mismatch.onnx", RP_ERR_FORMAT, "'w'", "float_data has 5 elements, expected 6",
                      NULL);
    expect_load_error(LOADER_DIR "/rank9_init.onnx", RP_ERR_UNSUPPORTED, "'w'", "rank 9", NULL);
    expect_load_error(LOADER_DIR "/rank9_input.onnx", RP_ERR_UNSUPPORTED, "'x'", "rank 9", NULL);
}
END_TEST

/* Hostile models from the regression corpus (tools/make_regressions.py):
 * refused at load with the tensor or value named, before any allocation
 * sized by the file's claims. */
#define REG_DIR RELPROP_SOURCE_DIR "/tests/regressions"
START_TEST(test_hostile_models)
{
    expect_load_error(REG_DIR "/huge/init_2pow40.onnx", RP_ERR_FORMAT, "'W'", "raw_data has 48 bytes", NULL);
    expect_load_error(REG_DIR "/huge/init_overflow.onnx", RP_ERR_FORMAT, "'W'", "overflows", NULL);
    expect_load_error(REG_DIR "/huge/init_bytes_overflow.onnx", RP_ERR_FORMAT, "'W'", "overflows", NULL);
    expect_load_error(REG_DIR "/huge/init_typed_huge.onnx", RP_ERR_FORMAT, "'W'", "float_data has 12 elements", NULL);
    expect_load_error(REG_DIR "/neg/init_neg.onnx", RP_ERR_FORMAT, "'W'", "dimension 0 is negative (-4)", NULL);
    expect_load_error(REG_DIR "/neg/init_neg2.onnx", RP_ERR_FORMAT, "'W'", "negative", NULL);
    expect_load_error(REG_DIR "/neg/input_neg.onnx", RP_ERR_FORMAT, "graph input 'x'", "dimension 1 is negative", NULL);
    expect_load_error(REG_DIR "/graph/dup_graph_output.onnx", RP_ERR_FORMAT, "'logits'", "listed twice", NULL);
    expect_load_error(REG_DIR "/graph/self_loop.onnx", RP_ERR_FORMAT, "self_loop", NULL);
    expect_load_error(REG_DIR "/graph/cycle2.onnx", RP_ERR_FORMAT, "cycle", NULL);
    expect_load_error(REG_DIR "/graph/nested_graphs_20000.onnx", RP_ERR_FORMAT, "nested more than", NULL);
    expect_load_error(REG_DIR "/graph/nested_types_30000.onnx", RP_ERR_FORMAT, "nested more than", NULL);
    expect_load_error(REG_DIR "/external/symlink_escape.onnx", RP_ERR_VALUE, "outside the model's folder", NULL);
    expect_load_error(REG_DIR "/external/dotdot_backslash.onnx", RP_ERR_VALUE, "'..'", NULL);
    expect_load_error(REG_DIR "/external/huge_dims.onnx", RP_ERR_IO, "'W'", "too short", NULL);
    expect_load_error(REG_DIR "/graph/opset99.onnx", RP_ERR_UNSUPPORTED, "opset 99", "newest relprop knows (27)",
                      NULL);

    /* Every truncation of a good model fails cleanly or loads (a cut at a
     * field boundary is a shorter valid message); never anything else. */
    FILE *f = fopen(REG_DIR "/good.onnx", "rb");
    ck_assert_ptr_nonnull(f);
    uint8_t buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ck_assert_uint_gt(n, 0);
    for (size_t cut = 0; cut < n; cut++) {
        rp_error err = {0};
        rp_graph *g = (rp_graph *)0x1;
        rp_status st = rp_graph_load_buffer(buf, cut, NULL, &g, &err);
        if (st == RP_OK) {
            ck_assert_ptr_nonnull(g);
            rp_graph_free(g);
        } else {
            ck_assert_ptr_null(g);
            ck_assert_msg(err.msg[0], "cut at %zu: empty message", cut);
        }
    }
}
END_TEST

/* The memory ceiling without --max-memory scales with the model: the larger
 * of 1 GiB and 64 times its size, at most 16 GiB. A 200-byte model asking
 * for 2 GiB is refused before the allocation, saying how to raise it. */
START_TEST(test_default_memory_ceiling)
{
    rp_graph *g = load_ok(REG_DIR "/huge/constantofshape_2g.onnx");
    ck_assert_int_gt(g->model_bytes, 100);
    ck_assert_int_lt(g->model_bytes, 1000);
    ck_assert_int_eq(rp_graph_max_bytes(g), (int64_t)1 << 30);
    rp_error err = {0};
    ck_assert_int_eq(rp_graph_prepare(g, &err), RP_ERR_NOMEM);
    ck_assert_msg(strstr(err.msg, "'cos_2g'") && strstr(err.msg, "memory limit of 1073741824 bytes") &&
                      strstr(err.msg, "--max-memory 3G"),
                  "%s", err.msg);
    ck_assert_int_lt(g->used_bytes, (int64_t)1 << 20);
    int64_t sizes[][2] = {{0, (int64_t)1 << 30},
                          {(int64_t)16 << 20, (int64_t)1 << 30},             /* 16 MiB: 1 GiB */
                          {(int64_t)100 << 20, (int64_t)6400 << 20},         /* DeiT-small-ish: 6.25 GiB */
                          {(int64_t)330 << 20, (int64_t)16 << 30},           /* DeiT-base: capped */
                          {(int64_t)1200 << 20, (int64_t)16 << 30},          /* ViT-L/16 */
                          {INT64_MAX / 2, (int64_t)16 << 30}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        g->model_bytes = sizes[i][0];
        ck_assert_int_eq(rp_graph_max_bytes(g), sizes[i][1]);
    }
    g->max_bytes = 12345; /* an explicit ceiling replaces the rule */
    ck_assert_int_eq(rp_graph_max_bytes(g), 12345);
    rp_graph_free(g);

    /* External data counts as the model's size. */
    g = load_ok(EXT_DIR "/model.onnx");
    struct stat sb;
    ck_assert_int_eq(stat(EXT_DIR "/model.onnx", &sb), 0);
    ck_assert_int_gt(g->model_bytes, (int64_t)sb.st_size);
    rp_graph_free(g);
}
END_TEST

/* ---- graph construction details ---- */

START_TEST(test_typed_constants)
{
    rp_graph *g = load_ok(LOADER_DIR "/typed.onnx");
    ck_assert_int_eq(g->n_nodes, 13);
    ck_assert_int_eq(g->n_inputs, 0);
    ck_assert_int_eq(g->n_outputs, 13);
    struct {
        const char *node;
        rp_dtype dt;
        double v[3];
    } cases[] = {
        {"const_f32", RP_FLOAT, {1.5, -2.25, 3.0}},
        {"const_f64", RP_DOUBLE, {1.0 / 3.0, -1e300, 2.5}},
        {"const_i8", RP_INT8, {-128, 127, -1}},
        {"const_i16", RP_INT16, {-32768, 32767, -2}},
        {"const_i32", RP_INT32, {-2147483648.0, 2147483647.0, -3}},
        {"const_u8", RP_UINT8, {0, 255, 7}},
        {"const_u16", RP_UINT16, {0, 65535, 8}},
        {"const_u32", RP_UINT32, {0, 4294967295.0, 9}},
        {"const_b", RP_BOOL, {1, 0, 1}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const rp_attr *a = rp_node_attr(node(g, cases[i].node), "value");
        ck_assert_ptr_nonnull(a);
        ck_assert_int_eq(a->type, RP_ATTR_TENSOR);
        const rp_tensor *t = a->tensor;
        ck_assert_msg(t->dtype == cases[i].dt, "%s: dtype %d", cases[i].node, t->dtype);
        ck_assert_int_eq(t->rank, 1);
        ck_assert_int_eq(t->count, 3);
        for (int k = 0; k < 3; k++)
            ck_assert_msg(rp_tensor_get_f64(t, k) == cases[i].v[k], "%s[%d] = %g, expected %g", cases[i].node, k,
                          rp_tensor_get_f64(t, k), cases[i].v[k]);
    }
    const rp_tensor *t = rp_node_attr(node(g, "const_i64"), "value")->tensor;
    ck_assert_int_eq(t->dtype, RP_INT64);
    ck_assert_int_eq(((int64_t *)t->data)[0], INT64_MIN);
    ck_assert_int_eq(((int64_t *)t->data)[1], INT64_MAX);
    ck_assert_int_eq(((int64_t *)t->data)[2], -4);
    t = rp_node_attr(node(g, "const_u64"), "value")->tensor;
    ck_assert_int_eq(t->dtype, RP_UINT64);
    ck_assert(((uint64_t *)t->data)[1] == UINT64_MAX);
    ck_assert(((uint64_t *)t->data)[2] == 10);

    t = rp_node_attr(node(g, "const_scalar"), "value")->tensor;
    ck_assert_int_eq(t->rank, 0);
    ck_assert_int_eq(t->count, 1);
    ck_assert_float_eq(((float *)t->data)[0], 42.0f);
    t = rp_node_attr(node(g, "const_empty"), "value")->tensor;
    ck_assert_int_eq(t->dtype, RP_INT64);
    ck_assert_int_eq(t->rank, 2);
    ck_assert_int_eq(t->dims[0], 0);
    ck_assert_int_eq(t->dims[1], 4);
    ck_assert_int_eq(t->count, 0);

    /* Constant outputs are activations until prepare folds them. */
    const rp_value *v = value(g, "f32");
    ck_assert_int_eq(v->kind, RP_VALUE_ACTIVATION);
    ck_assert(v->is_graph_output);
    ck_assert(!v->shape_known);
    rp_graph_free(g);
}
END_TEST

START_TEST(test_graph_features)
{
    rp_graph *g = load_ok(LOADER_DIR "/features.onnx");
    ck_assert_int_eq(g->n_nodes, 4);
    ck_assert_int_eq(g->n_opsets, 2);
    ck_assert_int_eq(rp_graph_opset(g, ""), 13);
    ck_assert_int_eq(rp_graph_opset(g, "com.example"), 2);

    /* W is an initializer listed among the inputs: a constant, not an input. */
    ck_assert_int_eq(g->n_inputs, 3);
    ck_assert_str_eq(g->values[g->inputs[0]].name, "x_in");
    ck_assert_str_eq(g->values[g->inputs[1]].name, "x");
    ck_assert_str_eq(g->values[g->inputs[2]].name, "norank");
    const rp_value *w = value(g, "W");
    ck_assert_int_eq(w->kind, RP_VALUE_CONSTANT);
    ck_assert_float_eq(((float *)w->t.data)[5], 5.0f);
    const rp_value *hi = value(g, "hi");
    ck_assert_int_eq(hi->t.rank, 0);
    ck_assert_int_eq(hi->t.count, 1);

    /* Symbolic and missing dims. */
    const rp_value *x = value(g, "x");
    ck_assert_int_eq(x->kind, RP_VALUE_INPUT);
    ck_assert(!x->shape_known);
    ck_assert_int_eq(x->t.rank, 3);
    ck_assert_int_eq(x->t.count, -1);
    ck_assert_int_eq(x->t.dims[0], -1);
    ck_assert_int_eq(x->t.dims[1], 3);
    ck_assert_int_eq(x->t.dims[2], -1);
    ck_assert_str_eq(x->dim_params[0], "batch");
    ck_assert_ptr_null(x->dim_params[1]);
    ck_assert_str_eq(x->dim_params[2], "?");
    /* No shape at all: rank unknown (-1), so prepare cannot bind it as a scalar. */
    const rp_value *nr = value(g, "norank");
    ck_assert_int_eq(nr->t.dtype, RP_INT64);
    ck_assert_int_eq(nr->t.rank, -1);
    ck_assert_int_eq(nr->t.count, -1);
    ck_assert(!nr->shape_known);
    const rp_value *xin = value(g, "x_in");
    ck_assert_str_eq(xin->dim_params[0], "batch");
    ck_assert_int_eq(xin->t.dims[1], 2);

    /* An unnamed node gets "<op>_<index>". */
    const rp_node *add = &g->nodes[0];
    ck_assert_str_eq(add->name, "Add_0");
    ck_assert_int_eq(add->in[1], rp_graph_find_value(g, "W"));

    /* Omitted optional input and output. */
    const rp_node *clip = node(g, "clip");
    ck_assert_int_eq(clip->n_in, 3);
    ck_assert_int_eq(clip->in[1], -1);
    ck_assert_int_eq(clip->in[2], rp_graph_find_value(g, "hi"));
    const rp_node *drop = node(g, "drop");
    ck_assert_int_eq(drop->n_out, 2);
    ck_assert_int_ge(drop->out[0], 0);
    ck_assert_int_eq(drop->out[1], -1);
    /* "ai.onnx" is the default domain. */
    ck_assert_str_eq(drop->domain, "");
    ck_assert_int_eq(drop->opset, 13);

    const rp_node *cu = node(g, "custom");
    ck_assert_str_eq(cu->domain, "com.example");
    ck_assert_int_eq(cu->opset, 2);
    const rp_attr *a = rp_node_attr(cu, "f");
    ck_assert_int_eq(a->type, RP_ATTR_FLOAT);
    ck_assert_float_eq(a->f, 0.5f);
    a = rp_node_attr(cu, "i");
    ck_assert_int_eq(a->type, RP_ATTR_INT);
    ck_assert_int_eq(a->i, -7);
    a = rp_node_attr(cu, "s");
    ck_assert_int_eq(a->type, RP_ATTR_STRING);
    ck_assert_str_eq(a->s, "hello");
    a = rp_node_attr(cu, "floats");
    ck_assert_int_eq(a->type, RP_ATTR_FLOATS);
    ck_assert_int_eq(a->n, 2);
    ck_assert_float_eq(a->floats[1], 2.0f);
    a = rp_node_attr(cu, "ints");
    ck_assert_int_eq(a->type, RP_ATTR_INTS);
    ck_assert_int_eq(a->n, 3);
    ck_assert_int_eq(a->ints[2], 5);
    a = rp_node_attr(cu, "strings");
    ck_assert_int_eq(a->type, RP_ATTR_STRINGS);
    ck_assert_int_eq(a->n, 2);
    ck_assert_str_eq(a->strings[0], "a");
    ck_assert_str_eq(a->strings[1], "bc");
    a = rp_node_attr(cu, "t");
    ck_assert_int_eq(a->type, RP_ATTR_TENSOR);
    ck_assert_int_eq(a->tensor->dtype, RP_INT32);
    ck_assert_int_eq(((int32_t *)a->tensor->data)[1], 12);
    a = rp_node_attr(cu, "g");
    ck_assert_int_eq(a->type, RP_ATTR_GRAPH);
    ck_assert_ptr_null(a->tensor);

    ck_assert_int_eq(g->n_metadata, 2);
    bool found = false;
    for (int i = 0; i < g->n_metadata; i++)
        if (strcmp(g->metadata_keys[i], "purpose") == 0) {
            ck_assert_str_eq(g->metadata_values[i], "loader test");
            found = true;
        }
    ck_assert(found);
    check_topological(g);
    rp_graph_free(g);
}
END_TEST

/* Fusing the exact GELUs rewires edges (the last Mul reads x, the four
 * nodes before it read nothing): the index follows. */
START_TEST(test_consumer_index_after_fusion)
{
    rp_graph *g = load_ok(fmnist_path());
    rp_error err = {0};
    ck_assert_msg(rp_graph_prepare(g, &err) == RP_OK, "%s", err.msg);
    int fused = 0;
    ck_assert_msg(rp_graph_fuse(g, &fused, &err) == RP_OK, "%s", err.msg);
    ck_assert_int_eq(fused, 4);
    check_consumer_index(g);
    rp_graph_free(g);
}
END_TEST

START_TEST(test_unsorted_graph)
{
    rp_graph *g = load_ok(LOADER_DIR "/unsorted.onnx");
    ck_assert_int_eq(g->n_nodes, 4);
    /* Kahn taking the lowest file index first: file order where possible. */
    ck_assert_str_eq(g->nodes[0].name, "independent");
    ck_assert_str_eq(g->nodes[1].name, "first");
    ck_assert_str_eq(g->nodes[2].name, "second");
    ck_assert_str_eq(g->nodes[3].name, "third");
    check_topological(g);
    ck_assert_int_eq(value(g, "a")->producer, 1);
    ck_assert_int_eq(value(g, "c")->producer, 3);
    ck_assert_int_eq(value(g, "z")->producer, 0);
    rp_graph_free(g);
}
END_TEST

/* ---- a long generated chain ---- */

/* A protobuf message being written: just the wire format's varints and
 * length-delimited fields, enough for the few ONNX fields the chain uses. */
typedef struct pb {
    uint8_t *p;
    size_t len, cap;
} pb;

static void pb_raw(pb *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        ck_assert_ptr_nonnull(b->p);
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void pb_varint(pb *b, uint64_t v)
{
    uint8_t out[10];
    size_t n = 0;
    do {
        out[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    pb_raw(b, out, n);
}

static void pb_int(pb *b, int field, int64_t v)
{
    pb_varint(b, (uint64_t)field << 3);
    pb_varint(b, (uint64_t)v); /* negative: ten bytes, as protobuf writes int64 */
}

static void pb_bytes(pb *b, int field, const void *data, size_t n)
{
    pb_varint(b, (uint64_t)field << 3 | 2);
    pb_varint(b, n);
    pb_raw(b, data, n);
}

static void pb_str(pb *b, int field, const char *s)
{
    pb_bytes(b, field, s, strlen(s));
}

/* Appends sub as field `field`, and frees it. */
static void pb_msg(pb *b, int field, pb *sub)
{
    pb_bytes(b, field, sub->p, sub->len);
    free(sub->p);
    *sub = (pb){0};
}

/* NodeProto: inputs, output (also the node's name), op_type, and for the
 * reductions axes = [-1], keepdims = 1. */
static void chain_node(pb *node, const char *op, const char *in0, const char *in1, const char *out)
{
    pb_str(node, 1, in0);
    if (in1)
        pb_str(node, 1, in1);
    pb_str(node, 2, out);
    pb_str(node, 3, out);
    pb_str(node, 4, op);
    if (strcmp(op, "ReduceMean") == 0) {
        pb a = {0}, k = {0};
        pb_str(&a, 1, "axes");
        pb_int(&a, 8, -1);
        pb_int(&a, 20, 7); /* INTS */
        pb_msg(node, 5, &a);
        pb_str(&k, 1, "keepdims");
        pb_int(&k, 3, 1);
        pb_int(&k, 20, 2); /* INT */
        pb_msg(node, 5, &k);
    }
}

static void chain_init(pb *graph, const char *name, int rank, const int64_t *dims, float value)
{
    pb t = {0};
    int64_t count = 1;
    for (int d = 0; d < rank; d++) {
        pb_int(&t, 1, dims[d]);
        count *= dims[d];
    }
    pb_int(&t, 2, RP_FLOAT);
    pb_str(&t, 8, name);
    float data[16];
    for (int64_t e = 0; e < count; e++)
        data[e] = value + 0.01f * (float)e;
    pb_bytes(&t, 9, data, (size_t)count * sizeof(float));
    pb_msg(graph, 5, &t);
}

/* ValueInfoProto of a float [1, 4]. */
static void chain_value_info(pb *graph, int field, const char *name)
{
    pb vi = {0}, type = {0}, tensor = {0}, shape = {0};
    for (int d = 0; d < 2; d++) {
        pb dim = {0};
        pb_int(&dim, 1, d == 0 ? 1 : 4);
        pb_msg(&shape, 1, &dim);
    }
    pb_int(&tensor, 1, RP_FLOAT);
    pb_msg(&tensor, 2, &shape);
    pb_msg(&type, 1, &tensor);
    pb_str(&vi, 1, name);
    pb_msg(&vi, 2, &type);
    pb_msg(graph, field, &vi);
}

#define CHAIN_BLOCK 13

/* A chain of n_nodes nodes as tools/make_chain_model.py writes it: blocks of
 * a layer norm spelled out op by op, MatMul, bias Add, Relu and a residual
 * Add, padded with Relus, on [1, 4] tensors; with shuffle, the nodes are
 * written in a random order, so that the loader sorts them. */
static pb chain_model(int n_nodes, bool shuffle)
{
    int blocks = n_nodes / CHAIN_BLOCK;
    pb *nodes = calloc((size_t)n_nodes, sizeof *nodes);
    ck_assert_ptr_nonnull(nodes);
    pb graph = {0};
    int k = 0;
    char x[32] = "input", name[CHAIN_BLOCK][32], w[4][32];
    int64_t vec[1] = {4}, mat[2] = {4, 4}, one[1] = {1};
    chain_init(&graph, "eps", 1, one, 1e-5f);
    for (int b = 0; b < blocks; b++) {
        static const char *const parts[CHAIN_BLOCK] = {"mean", "centred", "squared", "var", "var_eps", "std",
                                                       "normed", "scaled", "ln", "fc", "fc_bias", "relu",
                                                       "residual"};
        static const char *const params[4] = {"gamma", "beta", "W", "b"};
        for (int q = 0; q < CHAIN_BLOCK; q++)
            snprintf(name[q], sizeof name[q], "b%d/%s", b, parts[q]);
        for (int q = 0; q < 4; q++) {
            snprintf(w[q], sizeof w[q], "b%d/%s", b, params[q]);
            chain_init(&graph, w[q], q == 2 ? 2 : 1, q == 2 ? mat : vec, 0.1f * (float)(q + 1));
        }
        chain_node(&nodes[k++], "ReduceMean", x, NULL, name[0]);
        chain_node(&nodes[k++], "Sub", x, name[0], name[1]);
        chain_node(&nodes[k++], "Mul", name[1], name[1], name[2]);
        chain_node(&nodes[k++], "ReduceMean", name[2], NULL, name[3]);
        chain_node(&nodes[k++], "Add", name[3], "eps", name[4]);
        chain_node(&nodes[k++], "Sqrt", name[4], NULL, name[5]);
        chain_node(&nodes[k++], "Div", name[1], name[5], name[6]);
        chain_node(&nodes[k++], "Mul", name[6], w[0], name[7]);
        chain_node(&nodes[k++], "Add", name[7], w[1], name[8]);
        chain_node(&nodes[k++], "MatMul", name[8], w[2], name[9]);
        chain_node(&nodes[k++], "Add", name[9], w[3], name[10]);
        chain_node(&nodes[k++], "Relu", name[10], NULL, name[11]);
        chain_node(&nodes[k], "Add", x, name[11], k == n_nodes - 1 ? "output" : name[12]);
        k++;
        snprintf(x, sizeof x, "%s", name[12]);
    }
    for (int q = 0; k < n_nodes; q++) {
        char out[32];
        snprintf(out, sizeof out, "pad%d", q);
        chain_node(&nodes[k], "Relu", x, NULL, k == n_nodes - 1 ? "output" : out);
        k++;
        snprintf(x, sizeof x, "%s", out);
    }
    uint32_t rng = 12345u;
    for (int i = n_nodes - 1; shuffle && i > 0; i--) {
        rng = rng * 1664525u + 1013904223u;
        int j = (int)((rng >> 8) % (uint32_t)(i + 1));
        pb t = nodes[i];
        nodes[i] = nodes[j];
        nodes[j] = t;
    }
    for (int i = 0; i < n_nodes; i++)
        pb_msg(&graph, 1, &nodes[i]);
    free(nodes);
    pb_str(&graph, 2, "chain");
    chain_value_info(&graph, 11, "input");
    chain_value_info(&graph, 12, "output");
    pb model = {0}, opset = {0};
    pb_int(&model, 1, 8);
    pb_msg(&model, 7, &graph);
    pb_str(&opset, 1, "");
    pb_int(&opset, 2, 17);
    pb_msg(&model, 8, &opset);
    return model;
}

/* A chain of n nodes from a file: loaded, in topological order. */
static rp_graph *load_chain(int n, bool shuffle)
{
    pb model = chain_model(n, shuffle);
    write_file(tmp_path("chain.onnx"), model.p, model.len);
    free(model.p);
    rp_graph *g = load_ok(tmp_path("chain.onnx"));
    ck_assert_int_eq(g->n_nodes, n);
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++)
            if (g->nodes[i].in[k] >= 0)
                ck_assert_int_lt(g->values[g->nodes[i].in[k]].producer, i);
    return g;
}

/* A 20 000-node chain loads and gets its rules: each block's layer norm and
 * its bias Add + Relu become regions rooted at the right values, the MatMul
 * a linear map, the residual Add a sum. The consumer index and the region
 * search keep this linear in the node count (tools/bench_load times it);
 * this test checks what they find. The same chain written shuffled is
 * sorted at load. */
START_TEST(test_long_chain)
{
    enum { N = 20000, BLOCKS = N / CHAIN_BLOCK, PADS = N - BLOCKS * CHAIN_BLOCK };
    make_tmpdir();
    rp_graph_free(load_chain(N, true));
    rp_graph *g = load_chain(N, false);
    rp_error err = {0};
    ck_assert_msg(rp_graph_prepare(g, &err) == RP_OK, "%s", err.msg);
    rp_assignment a;
    ck_assert_msg(rp_assign_rules(g, "paper", NULL, &a, &err) == RP_OK, "%s", err.msg);
    int kinds[RP_KIND_UNKNOWN + 1] = {0};
    for (int i = 0; i < g->n_nodes; i++) {
        kinds[a.kind[i]]++;
        const char *name = g->nodes[i].name, *part = strchr(name, '/');
        int b = -1;
        if (a.kind[i] != RP_KIND_REGION || strncmp(name, "pad", 3) == 0 || strcmp(name, "output") == 0)
            continue;
        ck_assert_msg(part && sscanf(name, "b%d/", &b) == 1, "region exit at '%s'", name);
        char root[32];
        if (strcmp(part, "/ln") == 0 && b == 0)
            snprintf(root, sizeof root, "input");
        else if (strcmp(part, "/ln") == 0)
            snprintf(root, sizeof root, "b%d/residual", b - 1);
        else if (strcmp(part, "/relu") == 0)
            snprintf(root, sizeof root, "b%d/fc", b);
        else
            ck_abort_msg("region exit at '%s'", name);
        ck_assert_int_ge(a.region_input[i], 0);
        ck_assert_str_eq(g->values[a.region_input[i]].name, root);
    }
    /* Regions: per block the layer norm (9 nodes) and bias Add + Relu (2),
     * and the padding Relus after the last block. */
    ck_assert_int_eq(kinds[RP_KIND_REGION], 2 * BLOCKS + 1);
    ck_assert_int_eq(kinds[RP_KIND_IN_REGION], 9 * BLOCKS + PADS - 1);
    ck_assert_int_eq(kinds[RP_KIND_LINEAR], BLOCKS);
    ck_assert_int_eq(kinds[RP_KIND_SUM], BLOCKS);
    rp_assignment_free(&a);
    rp_graph_free(g);
    remove_tmpdir();
}
END_TEST

/* ---- ONNX conformance models and their .pb data ---- */

START_TEST(test_node_models)
{
    ck_assert_msg(access(NODE_DIR, R_OK) == 0, "%s is missing: scripts/setup.sh installs libonnx-testdata", NODE_DIR);
    rp_graph *g = load_ok(NODE_DIR "/test_add/model.onnx");
    ck_assert_int_eq(g->n_nodes, 1);
    ck_assert_str_eq(g->nodes[0].op_type, "Add");
    ck_assert_int_eq(g->n_inputs, 2);
    const rp_value *x = &g->values[g->inputs[0]];
    ck_assert_str_eq(x->name, "x");
    ck_assert_int_eq(x->t.rank, 3);
    ck_assert_int_eq(x->t.dims[2], 5);

    rp_error err = {0};
    rp_tensor t;
    char *name = NULL;
    ck_assert_int_eq(rp_tensor_load_pb(NODE_DIR "/test_add/test_data_set_0/input_0.pb", &t, &name, &err), RP_OK);
    ck_assert_str_eq(name, "x");
    ck_assert_int_eq(t.dtype, RP_FLOAT);
    ck_assert_int_eq(t.rank, 3);
    ck_assert_int_eq(t.dims[0], 3);
    ck_assert_int_eq(t.dims[1], 4);
    ck_assert_int_eq(t.dims[2], 5);
    ck_assert_int_eq(t.count, 60);
    ck_assert(rp_shape_equal(&t, &x->t));
    ck_assert_float_eq(((float *)t.data)[0], 1.7640524f);
    ck_assert_float_eq(((float *)t.data)[59], -0.36274117f);
    rp_tensor_release(&t);
    free(name);
    rp_graph_free(g);

    /* test_constant: typed float_data in the attribute equals the raw_data
     * of the expected output. */
    g = load_ok(NODE_DIR "/test_constant/model.onnx");
    const rp_attr *a = rp_node_attr(&g->nodes[0], "value");
    ck_assert_ptr_nonnull(a);
    ck_assert_str_eq(g->nodes[0].name, "Constant_0");
    ck_assert_int_eq(a->tensor->count, 25);
    ck_assert_int_eq(rp_tensor_load_pb(NODE_DIR "/test_constant/test_data_set_0/output_0.pb", &t, NULL, &err), RP_OK);
    ck_assert(rp_shape_equal(&t, a->tensor));
    ck_assert_int_eq(memcmp(t.data, a->tensor->data, 25 * sizeof(float)), 0);
    rp_tensor_release(&t);
    rp_graph_free(g);

    /* A few more ops a ViT uses load with attributes intact. */
    const char *models[] = {"test_conv_with_strides_padding", "test_softmax_axis_0", "test_matmul_3d",
                            "test_transpose_all_permutations_0", "test_layer_normalization_4d_axis0",
                            "test_gather_0", "test_reshape_reduced_dims", "test_erf", "test_gemm_default_zero_bias",
                            "test_slice", "test_where_example", "test_concat_3d_axis_1", "test_einsum_batch_matmul"};
    char path[512];
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        snprintf(path, sizeof path, "%s/%s/model.onnx", NODE_DIR, models[i]);
        if (access(path, R_OK) != 0)
            continue;
        g = load_ok(path);
        ck_assert_int_ge(g->n_nodes, 1);
        ck_assert_int_ge(g->nodes[0].opset, 1);
        check_topological(g);
        for (int k = 0; k < 4; k++) {
            snprintf(path, sizeof path, "%s/%s/test_data_set_0/input_%d.pb", NODE_DIR, models[i], k);
            if (access(path, R_OK) != 0)
                break;
            ck_assert_msg(rp_tensor_load_pb(path, &t, &name, &err) == RP_OK, "%s: %s", path, err.msg);
            /* The data files name the graph inputs they feed. */
            int id = rp_graph_find_value(g, name);
            ck_assert_msg(id >= 0, "%s: no value '%s'", path, name);
            if (g->values[id].shape_known)
                ck_assert(rp_shape_equal(&t, &g->values[id].t));
            ck_assert_int_eq(t.dtype, g->values[id].t.dtype);
            rp_tensor_release(&t);
            free(name);
        }
        rp_graph_free(g);
    }
}
END_TEST

START_TEST(test_pb_errors)
{
    make_tmpdir();
    rp_error err = {0};
    rp_tensor t;
    char *name = (char *)0x1;
    const char *p = tmp_path("absent.pb");
    ck_assert_int_eq(rp_tensor_load_pb(p, &t, &name, &err), RP_ERR_IO);
    ck_assert_ptr_null(name);
    ck_assert_ptr_null(t.data);
    ck_assert_ptr_nonnull(strstr(err.msg, "absent.pb"));

    if (access(NODE_DIR "/test_add/test_data_set_0/input_0.pb", R_OK) == 0) {
        size_t len;
        uint8_t *buf = slurp(NODE_DIR "/test_add/test_data_set_0/input_0.pb", &len);
        p = tmp_path("cut.pb");
        write_file(p, buf, len - 7);
        ck_assert_int_ne(rp_tensor_load_pb(p, &t, &name, &err), RP_OK);
        ck_assert_int_eq(err.code, RP_ERR_FORMAT);
        ck_assert_ptr_null(name);
        ck_assert_msg(strncmp(err.msg, p, strlen(p)) == 0, "%s", err.msg);
        free(buf);
    }
    remove_tmpdir();
}
END_TEST

/* ---- external data ---- */

START_TEST(test_external_data)
{
    rp_graph *g = load_ok(EXT_DIR "/model.onnx");
    const rp_value *w = value(g, "W");
    ck_assert_int_eq(w->kind, RP_VALUE_CONSTANT);
    ck_assert_int_eq(w->t.count, 6);
    for (int i = 0; i < 6; i++)
        ck_assert_float_eq(((float *)w->t.data)[i], (float)(i + 1));
    const rp_value *b = value(g, "B");
    ck_assert_int_eq(b->t.dtype, RP_INT64);
    ck_assert_int_eq(((int64_t *)b->t.data)[0], 7);
    ck_assert_int_eq(((int64_t *)b->t.data)[1], -8);
    ck_assert_int_eq(((int64_t *)b->t.data)[2], 9);
    rp_graph_free(g);

    expect_load_error(EXT_DIR "/escape.onnx", RP_ERR_VALUE, "escape.onnx", "'W'", "../escape.bin", NULL);
    expect_load_error(EXT_DIR "/absolute.onnx", RP_ERR_VALUE, "'W'", "absolute", NULL);
    expect_load_error(EXT_DIR "/missing.onnx", RP_ERR_IO, "'W'", "nope.bin", NULL);
    expect_load_error(EXT_DIR "/short.onnx", RP_ERR_IO, "'W'", "weights.bin", "too short", NULL);

    /* From memory there is no folder to read from. */
    size_t len;
    uint8_t *buf = slurp(EXT_DIR "/model.onnx", &len);
    rp_error err = {0};
    ck_assert_int_ne(rp_graph_load_buffer(buf, len, NULL, &g, &err), RP_OK);
    ck_assert_ptr_null(g);
    ck_assert_ptr_nonnull(strstr(err.msg, "external"));
    free(buf);
}
END_TEST

START_TEST(test_external_symlinks)
{
    make_tmpdir();
    char real_weights[1024];
    ck_assert_ptr_nonnull(realpath(EXT_DIR "/weights.bin", real_weights));
    copy_file(EXT_DIR "/model.onnx", tmp_path("model.onnx"));

    /* weights.bin a link out of the model's folder: refused. */
    ck_assert_int_eq(symlink(real_weights, tmp_path("weights.bin")), 0);
    expect_load_error(tmp_path("model.onnx"), RP_ERR_VALUE, "'W'", "outside", NULL);

    /* A link that stays inside is fine: the check is about where it lands. */
    unlink(tmp_path("weights.bin"));
    copy_file(EXT_DIR "/weights.bin", tmp_path("data.bin"));
    ck_assert_int_eq(symlink("data.bin", tmp_path("weights.bin")), 0);
    rp_graph *g = load_ok(tmp_path("model.onnx"));
    ck_assert_float_eq(((float *)value(g, "W")->t.data)[5], 6.0f);
    rp_graph_free(g);

    /* A bare file name resolves against ".". */
    char cwd[1024];
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof cwd));
    ck_assert_int_eq(chdir(tmpdir), 0);
    g = load_ok("model.onnx");
    ck_assert_str_eq(g->model_dir, ".");
    ck_assert_int_eq(((int64_t *)value(g, "B")->t.data)[1], -8);
    rp_graph_free(g);
    ck_assert_int_eq(chdir(cwd), 0);
    remove_tmpdir();
}
END_TEST

/* ---- .npy ---- */

static void assert_same_tensor(const rp_tensor *a, const rp_tensor *b)
{
    ck_assert_int_eq(a->dtype, b->dtype);
    ck_assert_int_eq(a->rank, b->rank);
    ck_assert(rp_shape_equal(a, b));
    ck_assert_int_eq(a->count, b->count);
    if (a->count)
        ck_assert_int_eq(memcmp(a->data, b->data, (size_t)a->count * rp_dtype_size(a->dtype)), 0);
}

/* Nothing but `keep` (may be NULL) is left in tmpdir: no temp files. */
static void assert_tmpdir_holds_only(const char *keep)
{
    DIR *d = opendir(tmpdir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        ck_assert_msg(keep && strcmp(e->d_name, keep) == 0, "stray file %s", e->d_name);
    }
    closedir(d);
}

START_TEST(test_npy_roundtrip_dtypes)
{
    make_tmpdir();
    const rp_dtype dts[] = {RP_FLOAT, RP_DOUBLE, RP_INT8, RP_INT16, RP_INT32, RP_INT64,
                            RP_UINT8, RP_UINT16, RP_UINT32, RP_UINT64, RP_BOOL};
    const char *p = tmp_path("a.npy");
    for (size_t i = 0; i < sizeof dts / sizeof dts[0]; i++) {
        rp_tensor t, back;
        rp_error err = {0};
        int64_t dims[] = {2, 3, 5};
        ck_assert_int_eq(rp_tensor_alloc(&t, dts[i], 3, dims, &err), RP_OK);
        for (int64_t k = 0; k < t.count; k++)
            rp_tensor_set_i64(&t, k, dts[i] == RP_BOOL ? k % 3 == 0 : k * 7 - 40);
        ck_assert_msg(rp_npy_write(p, &t, &err) == RP_OK, "%s", err.msg);
        assert_tmpdir_holds_only("a.npy");

        /* numpy's layout: v1.0, header ends in '\n' at a multiple of 64. */
        size_t len;
        uint8_t *raw = slurp(p, &len);
        ck_assert_int_eq(memcmp(raw, "\x93NUMPY\x01\x00", 8), 0);
        size_t hl = (size_t)raw[8] | (size_t)raw[9] << 8;
        ck_assert_uint_eq((10 + hl) % 64, 0);
        ck_assert_int_eq(raw[10 + hl - 1], '\n');
        ck_assert_uint_eq(len, 10 + hl + (size_t)t.count * rp_dtype_size(dts[i]));
        free(raw);

        ck_assert_msg(rp_npy_read(p, &back, &err) == RP_OK, "%s", err.msg);
        assert_same_tensor(&t, &back);
        rp_tensor_release(&t);
        rp_tensor_release(&back);
    }
    remove_tmpdir();
}
END_TEST

START_TEST(test_npy_roundtrip_shapes)
{
    make_tmpdir();
    rp_error err = {0};
    rp_tensor t, back;
    const char *p = tmp_path("s.npy");

    /* 0-d */
    int64_t d0[1] = {0};
    ck_assert_int_eq(rp_tensor_alloc(&t, RP_DOUBLE, 0, d0, &err), RP_OK);
    ((double *)t.data)[0] = -3.25;
    ck_assert_int_eq(rp_npy_write(p, &t, &err), RP_OK);
    ck_assert_int_eq(rp_npy_read(p, &back, &err), RP_OK);
    ck_assert_int_eq(back.rank, 0);
    ck_assert_int_eq(back.count, 1);
    ck_assert_double_eq(((double *)back.data)[0], -3.25);
    rp_tensor_release(&t);
    rp_tensor_release(&back);

    /* zero-size */
    int64_t zd[] = {4, 0, 2};
    ck_assert_int_eq(rp_tensor_alloc(&t, RP_FLOAT, 3, zd, &err), RP_OK);
    ck_assert_int_eq(rp_npy_write(p, &t, &err), RP_OK);
    ck_assert_int_eq(rp_npy_read(p, &back, &err), RP_OK);
    ck_assert_int_eq(back.rank, 3);
    ck_assert_int_eq(back.dims[0], 4);
    ck_assert_int_eq(back.dims[1], 0);
    ck_assert_int_eq(back.count, 0);
    rp_tensor_release(&t);
    rp_tensor_release(&back);

    /* rank 8 and rank 1 */
    int64_t d8[] = {1, 2, 1, 3, 1, 2, 1, 2};
    ck_assert_int_eq(rp_tensor_alloc(&t, RP_INT32, 8, d8, &err), RP_OK);
    for (int64_t k = 0; k < t.count; k++)
        ((int32_t *)t.data)[k] = (int32_t)(k * k);
    ck_assert_int_eq(rp_npy_write(p, &t, &err), RP_OK);
    ck_assert_int_eq(rp_npy_read(p, &back, &err), RP_OK);
    assert_same_tensor(&t, &back);
    rp_tensor_release(&t);
    rp_tensor_release(&back);
    int64_t d1[] = {7};
    ck_assert_int_eq(rp_tensor_alloc(&t, RP_UINT16, 1, d1, &err), RP_OK);
    ck_assert_int_eq(rp_npy_write(p, &t, &err), RP_OK);
    ck_assert_int_eq(rp_npy_read(p, &back, &err), RP_OK);
    assert_same_tensor(&t, &back);
    rp_tensor_release(&t);
    rp_tensor_release(&back);
    assert_tmpdir_holds_only("s.npy");
    remove_tmpdir();
}
END_TEST

/* Files numpy wrote: read them, write them back, get the same bytes. */
START_TEST(test_npy_numpy_files)
{
    make_tmpdir();
    const char *files[] = {"np_f32.npy", "np_i64.npy", "np_bool0d.npy", "np_u8_empty.npy", "np_f64_rank8.npy"};
    char path[512];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", LOADER_DIR, files[i]);
        rp_tensor t;
        rp_error err = {0};
        ck_assert_msg(rp_npy_read(path, &t, &err) == RP_OK, "%s", err.msg);
        const char *p = tmp_path(files[i]);
        ck_assert_int_eq(rp_npy_write(p, &t, &err), RP_OK);
        size_t la, lb;
        uint8_t *a = slurp(path, &la), *b = slurp(p, &lb);
        ck_assert_uint_eq(la, lb);
        ck_assert_msg(memcmp(a, b, la) == 0, "%s differs from numpy's bytes", files[i]);
        free(a);
        free(b);
        rp_tensor_release(&t);
    }
    rp_tensor t;
    rp_error err = {0};
    ck_assert_int_eq(rp_npy_read(LOADER_DIR "/np_f32.npy", &t, &err), RP_OK);
    ck_assert_int_eq(t.dtype, RP_FLOAT);
    ck_assert_int_eq(t.dims[1], 3);
    ck_assert_float_eq(((float *)t.data)[5], 1.25f);
    rp_tensor_release(&t);
    ck_assert_int_eq(rp_npy_read(LOADER_DIR "/np_bool0d.npy", &t, &err), RP_OK);
    ck_assert_int_eq(t.dtype, RP_BOOL);
    ck_assert_int_eq(t.rank, 0);
    ck_assert_int_eq(((uint8_t *)t.data)[0], 1);
    rp_tensor_release(&t);
    ck_assert_int_eq(rp_npy_read(LOADER_DIR "/np_u8_empty.npy", &t, &err), RP_OK);
    ck_assert_int_eq(t.count, 0);
    ck_assert_ptr_null(t.data);
    rp_tensor_release(&t);
    /* Version 2.0 (4-byte header length). */
    ck_assert_int_eq(rp_npy_read(LOADER_DIR "/np_v2.npy", &t, &err), RP_OK);
    ck_assert_int_eq(t.dtype, RP_INT16);
    ck_assert_int_eq(t.dims[0], 3);
    ck_assert_int_eq(t.dims[1], 2);
    ck_assert_int_eq(((int16_t *)t.data)[5], 5);
    rp_tensor_release(&t);
    remove_tmpdir();
}
END_TEST

/* A hand-made .npy: version major.0, header text as given, then data. */
static void make_npy(const char *path, int major, const char *header, const void *data, size_t len)
{
    size_t hl = strlen(header);
    uint8_t *b = malloc(12 + hl + len);
    size_t n = 0;
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (uint8_t)major;
    b[7] = 0;
    n = 8;
    b[n++] = (uint8_t)(hl & 0xff);
    b[n++] = (uint8_t)(hl >> 8);
    if (major >= 2) {
        b[n++] = 0;
        b[n++] = 0;
    }
    memcpy(b + n, header, hl);
    n += hl;
    if (len)
        memcpy(b + n, data, len);
    write_file(path, b, n + len);
    free(b);
}

static void expect_npy_error(const char *path, rp_status code, const char *needle)
{
    rp_tensor t;
    rp_error err = {0};
    rp_status st = rp_npy_read(path, &t, &err);
    ck_assert_msg(st == code, "%s: expected %s, got %s: %s", path, rp_status_name(code), rp_status_name(st), err.msg);
    ck_assert_ptr_null(t.data);
    ck_assert_msg(strncmp(err.msg, path, strlen(path)) == 0, "message does not start with the path: %s", err.msg);
    if (needle)
        ck_assert_msg(strstr(err.msg, needle) != NULL, "message '%s' lacks '%s'", err.msg, needle);
    ck_assert_int_eq(rp_npy_read(path, &t, NULL), code);
}

START_TEST(test_npy_read_variants)
{
    make_tmpdir();
    const char *p = tmp_path("v.npy");
    rp_tensor t;
    rp_error err = {0};
    float f[6] = {1, 2, 3, 4, 5, 6};

    /* Version 3.0, double quotes, odd spacing, '=' order, Python 2 'L'. */
    make_npy(p, 3, "{\"descr\":\"=f4\",\"shape\":( 2L ,3L ),  \"fortran_order\" : False}\n", f, sizeof f);
    ck_assert_msg(rp_npy_read(p, &t, &err) == RP_OK, "%s", err.msg);
    ck_assert_int_eq(t.rank, 2);
    ck_assert_float_eq(((float *)t.data)[4], 5.0f);
    rp_tensor_release(&t);

    /* One-byte types take any byte-order mark; bool bytes normalise to 0/1. */
    uint8_t bytes[3] = {0, 2, 255};
    make_npy(p, 1, "{'descr': '<i1', 'fortran_order': False, 'shape': (3,), }", bytes, 3);
    ck_assert_int_eq(rp_npy_read(p, &t, &err), RP_OK);
    ck_assert_int_eq(t.dtype, RP_INT8);
    ck_assert_int_eq(((int8_t *)t.data)[2], -1);
    rp_tensor_release(&t);
    make_npy(p, 1, "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", bytes, 3);
    ck_assert_int_eq(rp_npy_read(p, &t, &err), RP_OK);
    ck_assert_int_eq(((uint8_t *)t.data)[1], 1);
    ck_assert_int_eq(((uint8_t *)t.data)[2], 1);
    rp_tensor_release(&t);

    /* Trailing bytes after the data are ignored, as numpy does. */
    make_npy(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", f, sizeof f);
    ck_assert_int_eq(rp_npy_read(p, &t, &err), RP_OK);
    ck_assert_int_eq(t.count, 5);
    rp_tensor_release(&t);
    remove_tmpdir();
}
END_TEST

START_TEST(test_npy_errors)
{
    make_tmpdir();
    const char *p = tmp_path("bad.npy");
    float f[6] = {0};

    make_npy(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f, 10);
    expect_npy_error(p, RP_ERR_FORMAT, "truncated: expected 24 bytes of data, found 10");
    make_npy(p, 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", f, sizeof f);
    expect_npy_error(p, RP_ERR_UNSUPPORTED, "Fortran");
    make_npy(p, 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", f, sizeof f);
    expect_npy_error(p, RP_ERR_UNSUPPORTED, "big-endian");
    make_npy(p, 1, "{'descr': '<f2', 'fortran_order': False, 'shape': (2, 3), }", f, sizeof f);
    expect_npy_error(p, RP_ERR_UNSUPPORTED, "'<f2'");
    make_npy(p, 1, "{'descr': '<U5', 'fortran_order': False, 'shape': (1,), }", f, sizeof f);
    expect_npy_error(p, RP_ERR_UNSUPPORTED, "'<U5'");
    make_npy(p, 1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", f, sizeof f);
    expect_npy_error(p, RP_ERR_UNSUPPORTED, "structured");
    make_npy(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", f, sizeof f);
    expect_npy_error(p, RP_ERR_UNSUPPORTED, "dimensions");
    make_npy(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }", f, sizeof f);
    expect_npy_error(p, RP_ERR_FORMAT, "header");
    make_npy(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", f, sizeof f);
    expect_npy_error(p, RP_ERR_FORMAT, "header");
    make_npy(p, 1, "{'descr': '<f4', 'shape': (2, 3), }", f, sizeof f);
    expect_npy_error(p, RP_ERR_FORMAT, "fortran_order");
    make_npy(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'extra': 1}", f, sizeof f);
    expect_npy_error(p, RP_ERR_FORMAT, "extra");
    make_npy(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)", f, sizeof f);
    expect_npy_error(p, RP_ERR_FORMAT, "header");
    make_npy(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3000000000, 3000000000, 3000000000), }",
             f, sizeof f);
    expect_npy_error(p, RP_ERR_FORMAT, NULL);
    make_npy(p, 4, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f, sizeof f);
    expect_npy_error(p, RP_ERR_UNSUPPORTED, "version 4.0");

    write_file(p, "\x93NUMPX\x01\x00\x10\x00{}", 12);
    expect_npy_error(p, RP_ERR_FORMAT, "magic");
    write_file(p, "PK\x03\x04 not npy at all", 20);
    expect_npy_error(p, RP_ERR_FORMAT, "magic");
    write_file(p, "", 0);
    expect_npy_error(p, RP_ERR_FORMAT, NULL);
    /* A header length running past the end of the file. */
    write_file(p, "\x93NUMPY\x01\x00\xff\x00{'descr'", 17);
    expect_npy_error(p, RP_ERR_FORMAT, "header");
    /* A version 2.0 header length beyond any sane header. */
    write_file(p, "\x93NUMPY\x02\x00\xff\xff\xff\x7f", 12);
    expect_npy_error(p, RP_ERR_FORMAT, "header");

    expect_npy_error(tmp_path("absent.npy"), RP_ERR_IO, NULL);
    /* A shape announcing 4 TB in a small file: refused from the file size,
     * before any allocation (ASan's allocator would report a 4 TB malloc). */
    make_npy(p, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }", f, sizeof f);
    expect_npy_error(p, RP_ERR_FORMAT, "truncated: expected 4000000000000 bytes of data");
    remove_tmpdir();
}
END_TEST

/* rp_npy_read_buffer: the same parser from memory. */
START_TEST(test_npy_read_buffer)
{
    make_tmpdir();
    rp_error err = {0};
    rp_tensor t, back;
    int64_t d[] = {2, 3};
    ck_assert_int_eq(rp_tensor_alloc(&t, RP_INT32, 2, d, &err), RP_OK);
    for (int i = 0; i < 6; i++)
        ((int32_t *)t.data)[i] = i * 7 - 3;
    const char *p = tmp_path("b.npy");
    ck_assert_int_eq(rp_npy_write(p, &t, &err), RP_OK);
    FILE *f = fopen(p, "rb");
    ck_assert_ptr_nonnull(f);
    uint8_t buf[1024];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ck_assert_int_eq(rp_npy_read_buffer(buf, n, "b.npy", &back, &err), RP_OK);
    assert_same_tensor(&t, &back);
    rp_tensor_release(&back);
    /* Every truncation is an error naming the buffer, with nothing returned. */
    for (size_t cut = 0; cut < n; cut++) {
        back.data = (void *)0x1;
        rp_status st = rp_npy_read_buffer(buf, cut, NULL, &back, &err);
        ck_assert_msg(st == RP_ERR_FORMAT, "cut %zu: %s", cut, err.msg);
        ck_assert_ptr_null(back.data);
        ck_assert_msg(strstr(err.msg, "(memory)") != NULL, "%s", err.msg);
    }
    ck_assert_int_eq(rp_npy_read_buffer(NULL, 0, NULL, &back, &err), RP_ERR_FORMAT);
    ck_assert_int_eq(rp_npy_read_buffer(NULL, 5, NULL, &back, &err), RP_ERR_ARG);
    rp_tensor_release(&t);
    remove_tmpdir();
}
END_TEST

START_TEST(test_npy_write_errors)
{
    make_tmpdir();
    rp_error err = {0};
    rp_tensor t;
    int64_t d[] = {3};
    ck_assert_int_eq(rp_tensor_alloc(&t, RP_FLOAT, 1, d, &err), RP_OK);

    /* A folder that does not exist: nothing is left anywhere. */
    const char *p = tmp_path("no/such/dir/x.npy");
    ck_assert_int_eq(rp_npy_write(p, &t, &err), RP_ERR_IO);
    ck_assert_msg(strncmp(err.msg, p, strlen(p)) == 0, "%s", err.msg);
    assert_tmpdir_holds_only(NULL);

    /* The target is a folder: rename fails, the temp file is removed. */
    ck_assert_int_eq(mkdir(tmp_path("target.npy"), 0700), 0);
    ck_assert_int_eq(rp_npy_write(tmp_path("target.npy"), &t, &err), RP_ERR_IO);
    assert_tmpdir_holds_only("target.npy");
    rmdir(tmp_path("target.npy"));

    /* Inconsistent tensors are refused before any file is made. */
    rp_tensor bad = t;
    bad.count = 4;
    ck_assert_int_eq(rp_npy_write(tmp_path("x.npy"), &bad, &err), RP_ERR_ARG);
    bad = t;
    bad.dtype = RP_STRING;
    ck_assert_int_ne(rp_npy_write(tmp_path("x.npy"), &bad, &err), RP_OK);
    bad = t;
    bad.data = NULL;
    ck_assert_int_eq(rp_npy_write(tmp_path("x.npy"), &bad, &err), RP_ERR_ARG);
    assert_tmpdir_holds_only(NULL);

    /* An existing file is replaced whole. */
    char old[4096];
    memset(old, 'o', sizeof old);
    write_file(tmp_path("x.npy"), old, sizeof old);
    ck_assert_int_eq(rp_npy_write(tmp_path("x.npy"), &t, &err), RP_OK);
    rp_tensor back;
    ck_assert_int_eq(rp_npy_read(tmp_path("x.npy"), &back, &err), RP_OK);
    assert_same_tensor(&t, &back);
    rp_tensor_release(&back);
    assert_tmpdir_holds_only("x.npy");
    rp_tensor_release(&t);
    remove_tmpdir();
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("loader");
    TCase *tc = tcase_create("onnx");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_fmnist_model);
    tcase_add_test(tc, test_load_buffer);
    tcase_add_test(tc, test_load_paths_agree);
    tcase_add_test(tc, test_truncated_model);
    tcase_add_test(tc, test_not_onnx);
    tcase_add_test(tc, test_bad_graphs);
    tcase_add_test(tc, test_hostile_models);
    tcase_add_test(tc, test_default_memory_ceiling);
    tcase_add_test(tc, test_typed_constants);
    tcase_add_test(tc, test_graph_features);
    tcase_add_test(tc, test_unsorted_graph);
    tcase_add_test(tc, test_consumer_index_after_fusion);
    tcase_add_test(tc, test_long_chain);
    tcase_add_test(tc, test_node_models);
    tcase_add_test(tc, test_pb_errors);
    tcase_add_test(tc, test_external_data);
    tcase_add_test(tc, test_external_symlinks);
    suite_add_tcase(s, tc);
    TCase *tn = tcase_create("npy");
    tcase_add_test(tn, test_npy_roundtrip_dtypes);
    tcase_add_test(tn, test_npy_roundtrip_shapes);
    tcase_add_test(tn, test_npy_numpy_files);
    tcase_add_test(tn, test_npy_read_variants);
    tcase_add_test(tn, test_npy_errors);
    tcase_add_test(tn, test_npy_read_buffer);
    tcase_add_test(tn, test_npy_write_errors);
    suite_add_tcase(s, tn);
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
