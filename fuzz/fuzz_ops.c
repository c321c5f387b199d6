/* libFuzzer target, structure-aware: the bytes choose a small graph (1-3
 * nodes of relprop's supported ops with plausible arity, inputs that are the
 * graph input, earlier outputs or initializers of odd shapes and values,
 * attributes with interesting names and absurd values), which is built with
 * protobuf-c, serialized and fed to the same path as fuzz_model: load from
 * memory, prepare, one forward on zeros. Random bytes rarely make a valid
 * ONNX file, so this reaches the ops' shape inference and kernels far more
 * often than fuzz_model's byte mutations.
 * FUZZ_OPS_DUMP=file.onnx writes the model built from the (last) input, to
 * turn a finding into a tests/regressions model for the CLI. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx.pb-c.h"
#include "ops/ops.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int fuzz_model_one_input(const uint8_t *data, size_t size);

typedef struct bytes {
    const uint8_t *p;
    size_t n;
} bytes;

static unsigned take(bytes *b, unsigned mod)
{
    if (!b->n || mod == 0)
        return 0;
    unsigned v = *b->p++;
    b->n--;
    return v % mod;
}

static const int64_t ints_pool[] = {0, 1, 2, 3, 4, -1, -2, -3, 5, 7, 8, 16, 64, 1000000, -1000000,
                                    INT32_MAX, INT32_MIN, (int64_t)1 << 40, INT64_MAX, INT64_MIN, (int64_t)1 << 62, 6};
static const float floats_pool[] = {0.f, 1.f, -1.f, 0.5f, 2.f, 1e-6f, 1e30f, -1e30f, 3.4e38f, 1.f / 0.f, -1.f / 0.f,
                                    0.f / 0.f, 255.f, -0.f, 1e-40f, 7.f};
static const char *attr_names[] = {"axis", "axes", "perm", "kernel_shape", "strides", "pads", "dilations", "group",
                                   "keepdims", "to", "equation", "transA", "transB", "alpha", "beta", "epsilon",
                                   "mode", "value", "shape", "allowzero", "split", "num_outputs", "starts", "ends",
                                   "auto_pad", "ceil_mode", "count_include_pad", "noop_with_empty_axes",
                                   "select_last_index", "approximate", "stash_type", "largest", "sorted", "k",
                                   "coordinate_transformation_mode", "nearest_mode", "direction", "exclusive",
                                   "reverse", "batch_dims", "reduction", "min", "max", "ratio", "seed", "dtype",
                                   "upper", "blocksize", "storage_order", "p"};
static const char *strings_pool[] = {"", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID", "constant", "reflect",
                                     "edge", "nearest", "linear", "cubic", "tanh", "none", "ij,jk->ik",
                                     "bhqd,bhkd->bhqk", "...ii->...i", "i,i", "abc->cba", "a...,b...->ab...",
                                     "ij->", "->", ",", "iiii->i", "zzzzzzzz", "ab,bc,cd->ad", "half_pixel",
                                     "align_corners", "asymmetric", "floor", "round_prefer_floor", "LEFT", "RIGHT"};
#define N_POOL(a) (sizeof a / sizeof a[0])

/* Arena for everything the model points to, freed in one go. */
typedef struct arena {
    void *ptr[4096];
    int n;
} arena;

static void *amalloc(arena *a, size_t n)
{
    if (a->n >= (int)N_POOL(a->ptr))
        return NULL;
    void *p = calloc(1, n ? n : 1);
    if (p)
        a->ptr[a->n++] = p;
    return p;
}

static char *astr(arena *a, const char *s)
{
    char *d = amalloc(a, strlen(s) + 1);
    if (d)
        strcpy(d, s);
    return d;
}

static const rp_op *pick_op(bytes *b)
{
    static const rp_op *all[512];
    static int n_all = -1;
    if (n_all < 0) {
        n_all = 0;
        const rp_op *fams[] = {rp_ops_elementwise, rp_ops_matmul, rp_ops_conv, rp_ops_shape, rp_ops_reduce,
                               rp_ops_normalize};
        const size_t *counts[] = {&rp_ops_elementwise_count, &rp_ops_matmul_count, &rp_ops_conv_count,
                                  &rp_ops_shape_count, &rp_ops_reduce_count, &rp_ops_normalize_count};
        for (int f = 0; f < 6; f++)
            for (size_t i = 0; i < *counts[f] && n_all < 512; i++)
                all[n_all++] = &fams[f][i];
    }
    unsigned k = take(b, 256) | take(b, 256) << 8;
    return all[k % (unsigned)n_all];
}

static Onnx__TensorProto *make_tensor(arena *a, bytes *b, const char *name)
{
    Onnx__TensorProto *t = amalloc(a, sizeof *t);
    if (!t)
        return NULL;
    onnx__tensor_proto__init(t);
    t->name = astr(a, name);
    static const int dts[] = {RP_INT64, RP_FLOAT, RP_INT64, RP_FLOAT, RP_INT32, RP_BOOL, RP_DOUBLE, RP_UINT8, RP_INT8};
    int dt = dts[take(b, N_POOL(dts))];
    t->has_data_type = 1;
    t->data_type = dt;
    int rank = (int)take(b, 4);
    t->n_dims = (size_t)rank;
    t->dims = amalloc(a, 8 * sizeof(int64_t));
    int64_t count = 1;
    for (int d = 0; d < rank; d++) {
        t->dims[d] = take(b, 5);
        count *= t->dims[d];
    }
    size_t es = rp_dtype_size(dt);
    uint8_t *raw = amalloc(a, (size_t)count * es);
    if (!t->dims || !raw)
        return NULL;
    for (int64_t i = 0; i < count; i++) {
        unsigned k = take(b, 256);
        switch (dt) {
        case RP_INT64: { int64_t v = ints_pool[k % N_POOL(ints_pool)]; memcpy(raw + i * 8, &v, 8); break; }
        case RP_INT32: { int32_t v = (int32_t)ints_pool[k % N_POOL(ints_pool)]; memcpy(raw + i * 4, &v, 4); break; }
        case RP_FLOAT: { float v = floats_pool[k % N_POOL(floats_pool)]; memcpy(raw + i * 4, &v, 4); break; }
        case RP_DOUBLE: { double v = floats_pool[k % N_POOL(floats_pool)]; memcpy(raw + i * 8, &v, 8); break; }
        case RP_BOOL: raw[i] = k & 1; break;
        default: raw[i] = (uint8_t)k; break;
        }
    }
    t->has_raw_data = 1;
    t->raw_data.len = (size_t)count * es;
    t->raw_data.data = raw;
    return t;
}

static Onnx__AttributeProto *make_attr(arena *a, bytes *b)
{
    Onnx__AttributeProto *at = amalloc(a, sizeof *at);
    if (!at)
        return NULL;
    onnx__attribute_proto__init(at);
    at->name = astr(a, attr_names[take(b, N_POOL(attr_names))]);
    at->has_type = 1;
    switch (take(b, 6)) {
    case 0:
    case 1:
        at->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
        at->has_i = 1;
        at->i = ints_pool[take(b, N_POOL(ints_pool))];
        break;
    case 2: {
        at->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
        size_t n = take(b, 9);
        at->ints = amalloc(a, (n ? n : 1) * sizeof(int64_t));
        if (!at->ints)
            return NULL;
        at->n_ints = n;
        for (size_t i = 0; i < n; i++)
            at->ints[i] = ints_pool[take(b, N_POOL(ints_pool))];
        break;
    }
    case 3:
        at->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
        at->has_f = 1;
        at->f = floats_pool[take(b, N_POOL(floats_pool))];
        break;
    case 4: {
        at->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
        const char *s = strings_pool[take(b, N_POOL(strings_pool))];
        at->has_s = 1;
        at->s.len = strlen(s);
        at->s.data = (uint8_t *)astr(a, s);
        break;
    }
    default:
        at->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
        at->t = make_tensor(a, b, "attr_t");
        if (!at->t)
            return NULL;
        break;
    }
    return at;
}

static Onnx__ValueInfoProto *make_vi(arena *a, const char *name, int dt, int rank, const int64_t *dims)
{
    Onnx__ValueInfoProto *v = amalloc(a, sizeof *v);
    Onnx__TypeProto *tp = amalloc(a, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = amalloc(a, sizeof *tt);
    Onnx__TensorShapeProto *sh = amalloc(a, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dd = amalloc(a, 8 * sizeof *dd);
    if (!v || !tp || !tt || !sh || !dd)
        return NULL;
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sh);
    v->name = astr(a, name);
    v->type = tp;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    tt->has_elem_type = 1;
    tt->elem_type = dt;
    if (rank >= 0) {
        tt->shape = sh;
        sh->n_dim = (size_t)rank;
        sh->dim = dd;
        for (int d = 0; d < rank; d++) {
            dd[d] = amalloc(a, sizeof *dd[d]);
            if (!dd[d])
                return NULL;
            onnx__tensor_shape_proto__dimension__init(dd[d]);
            dd[d]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dd[d]->dim_value = dims[d];
        }
    }
    return v;
}

/* Build the model the bytes describe; NULL if the arena ran out. */
static Onnx__ModelProto *build(arena *a, bytes *b)
{
    Onnx__ModelProto *m = amalloc(a, sizeof *m);
    Onnx__GraphProto *g = amalloc(a, sizeof *g);
    Onnx__OperatorSetIdProto *os = amalloc(a, sizeof *os);
    Onnx__OperatorSetIdProto **osv = amalloc(a, sizeof *osv);
    if (!m || !g || !os || !osv)
        return NULL;
    onnx__model_proto__init(m);
    onnx__graph_proto__init(g);
    onnx__operator_set_id_proto__init(os);
    m->has_ir_version = 1;
    m->ir_version = 8;
    m->graph = g;
    os->domain = astr(a, "");
    os->has_version = 1;
    os->version = 7 + take(b, 13); /* 7..19 */
    osv[0] = os;
    m->n_opset_import = 1;
    m->opset_import = osv;
    g->name = astr(a, "g");

    /* The graph input x. */
    static const int xdts[] = {RP_FLOAT, RP_FLOAT, RP_FLOAT, RP_INT64, RP_INT32, RP_BOOL, RP_DOUBLE};
    int64_t xd[8];
    int xr = (int)take(b, 5);
    for (int d = 0; d < xr; d++)
        xd[d] = 1 + take(b, 6) + (take(b, 8) == 0 ? 0 : 0);
    g->input = amalloc(a, sizeof *g->input);
    if (!g->input || !(g->input[0] = make_vi(a, "x", xdts[take(b, N_POOL(xdts))], xr, xd)))
        return NULL;
    g->n_input = 1;

    char names[64][16];
    int n_names = 0;
    strcpy(names[n_names++], "x");
    int n_nodes = 1 + (int)take(b, 3);
    g->node = amalloc(a, (size_t)n_nodes * sizeof *g->node);
    g->initializer = amalloc(a, 64 * sizeof *g->initializer);
    if (!g->node || !g->initializer)
        return NULL;
    for (int k = 0; k < n_nodes; k++) {
        const rp_op *op = pick_op(b);
        Onnx__NodeProto *np = amalloc(a, sizeof *np);
        if (!np)
            return NULL;
        onnx__node_proto__init(np);
        char nm[32];
        snprintf(nm, sizeof nm, "n%d", k);
        np->name = astr(a, nm);
        np->op_type = astr(a, op->name);
        int span = op->max_in - op->min_in;
        int n_in = op->min_in + (int)take(b, (unsigned)(span > 4 ? 5 : span + 1));
        np->input = amalloc(a, (size_t)(n_in ? n_in : 1) * sizeof(char *));
        if (!np->input)
            return NULL;
        np->n_input = (size_t)n_in;
        for (int i = 0; i < n_in; i++) {
            unsigned how = take(b, 8);
            if (how < 3 || n_names >= 60 || g->n_initializer >= 60) {
                np->input[i] = astr(a, names[take(b, (unsigned)n_names)]);
            } else if (how == 7) {
                /* Omitted input: optional ones are legal, required ones must
                 * be refused by prepare (they once crashed it). */
                np->input[i] = astr(a, "");
            } else {
                char cn[16];
                snprintf(cn, sizeof cn, "c%zu", g->n_initializer);
                Onnx__TensorProto *t = make_tensor(a, b, cn);
                if (!t)
                    return NULL;
                g->initializer[g->n_initializer++] = t;
                np->input[i] = astr(a, cn);
            }
        }
        int ospan = op->max_out - op->min_out;
        int n_out = op->min_out + (int)take(b, (unsigned)(ospan > 2 ? 3 : ospan + 1));
        if (n_out < 1)
            n_out = 1;
        np->output = amalloc(a, (size_t)n_out * sizeof(char *));
        if (!np->output)
            return NULL;
        np->n_output = (size_t)n_out;
        for (int o = 0; o < n_out; o++) {
            if (n_names < 60) {
                snprintf(names[n_names], sizeof names[0], "v%d_%d", k, o);
                np->output[o] = astr(a, names[n_names++]);
            } else {
                np->output[o] = astr(a, "");
            }
        }
        int n_attr = (int)take(b, 4);
        np->attribute = amalloc(a, (size_t)(n_attr ? n_attr : 1) * sizeof *np->attribute);
        if (!np->attribute)
            return NULL;
        for (int t = 0; t < n_attr; t++) {
            Onnx__AttributeProto *at = make_attr(a, b);
            if (!at)
                return NULL;
            /* ONNX forbids duplicate attribute names; keep the file valid there. */
            bool dup = false;
            for (int u = 0; u < (int)np->n_attribute; u++)
                dup |= strcmp(np->attribute[u]->name, at->name) == 0;
            if (!dup)
                np->attribute[np->n_attribute++] = at;
        }
        g->node[g->n_node++] = np;
    }
    /* Graph output: the last value made (shape left unstated). */
    g->output = amalloc(a, sizeof *g->output);
    if (!g->output || !(g->output[0] = make_vi(a, names[n_names - 1], RP_FLOAT, -1, NULL)))
        return NULL;
    g->n_output = 1;
    return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static arena a;
    a.n = 0;
    bytes b = {data, size};
    Onnx__ModelProto *m = build(&a, &b);
    if (m) {
        size_t len = onnx__model_proto__get_packed_size(m);
        uint8_t *buf = malloc(len ? len : 1);
        if (buf) {
            onnx__model_proto__pack(m, buf);
            const char *dump = getenv("FUZZ_OPS_DUMP");
            if (dump) {
                FILE *f = fopen(dump, "wb");
                if (f) {
                    fwrite(buf, 1, len, f);
                    fclose(f);
                }
            }
            fuzz_model_one_input(buf, len);
            free(buf);
        }
    }
    for (int i = 0; i < a.n; i++)
        free(a.ptr[i]);
    return 0;
}
