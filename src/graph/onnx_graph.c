/* ONNX protobuf → rp_graph: the model's message is unpacked by protobuf-c,
 * every string and tensor byte is copied into memory the graph owns, the
 * nodes are put in topological order, and the ModelProto is freed before
 * returning, so nothing downstream ever points into protobuf-c's
 * allocations. protobuf-c's types stay in the loader's three files: this
 * one, onnx_tensor.c (tensors, external data) and onnx_wire.c (bytes).
 *
 * The weights are not unpacked by protobuf-c: it would copy every bytes
 * field, so the file and the parsed message would both hold them (twice a
 * model's size at the peak of loading). The file is mapped, the top graph's
 * initializers' raw_data payloads are cut out of a small copy of the message
 * that protobuf-c parses (onnx_wire.c), and each payload is read from the
 * file straight into the buffer its tensor keeps (onnx_tensor.c).
 *
 * Files are untrusted: every count, length and index from the file is checked
 * before it sizes an allocation or a copy. */
#include "graph/graph.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "graph/onnx_tensor.h"
#include "graph/onnx_wire.h"

/* Attribute strings are bytes in the schema: copy and NUL-terminate. */
static char *dup_bytes(const uint8_t *p, size_t n)
{
    if (n == SIZE_MAX)
        return NULL;
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    if (n)
        memcpy(s, p, n);
    s[n] = 0;
    return s;
}

/* ---- names → value ids ---- */

/* Open addressing over value ids; keys are the graph's own value names.
 * Sized once for the most values the model can have, so it never grows. */
typedef struct name_map {
    int *slot; /* value id or -1 */
    size_t mask;
} name_map;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static bool map_init(name_map *m, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n + 1)
        cap *= 2;
    m->slot = malloc(cap * sizeof *m->slot);
    if (!m->slot)
        return false;
    for (size_t i = 0; i < cap; i++)
        m->slot[i] = -1;
    m->mask = cap - 1;
    return true;
}

/* Returns the slot index for name: either holding its id or empty. */
static size_t map_probe(const name_map *m, const rp_graph *g, const char *name)
{
    size_t i = (size_t)hash_str(name) & m->mask;
    while (m->slot[i] >= 0 && strcmp(g->values[m->slot[i]].name, name) != 0)
        i = (i + 1) & m->mask;
    return i;
}

static int map_find(const name_map *m, const rp_graph *g, const char *name)
{
    return m->slot[map_probe(m, g, name)];
}

/* Append a value named name; its id, or -1 on out of memory. The caller
 * checks uniqueness first. */
static int add_value(rp_graph *g, name_map *m, const char *name, rp_value_kind kind, int producer)
{
    rp_value *v = &g->values[g->n_values];
    memset(v, 0, sizeof *v);
    v->name = dup_str(name);
    if (!v->name)
        return -1;
    v->kind = kind;
    v->producer = producer;
    v->t.count = -1; /* unknown until set */
    int id = g->n_values++;
    m->slot[map_probe(m, g, v->name)] = id;
    return id;
}

/* ---- graph inputs ---- */

static rp_status input_type(rp_value *v, const Onnx__ValueInfoProto *vi, rp_error *err)
{
    const Onnx__TypeProto *tp = vi->type;
    if (!tp)
        return rp_fail(err, RP_ERR_FORMAT, "graph input '%s' has no type", v->name);
    if (tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "graph input '%s' is not a tensor (sequence, map, optional and "
                       "sparse inputs are not supported)", v->name);
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    v->t.dtype = tt->has_elem_type ? (rp_dtype)tt->elem_type : RP_UNDEFINED;
    if (!tt->shape) {
        /* Unknown rank. rank -1 rather than 0 so that binding symbolic dims
         * at prepare fails (rp_tensor_set_shape refuses it) instead of
         * silently treating the input as a scalar. */
        v->shape_known = false;
        v->t.rank = -1;
        v->t.count = -1;
        return RP_OK;
    }
    if (tt->shape->n_dim > RP_MAX_RANK)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "graph input '%s': rank %zu exceeds the maximum of %d", v->name,
                       tt->shape->n_dim, RP_MAX_RANK);
    v->t.rank = (int)tt->shape->n_dim;
    bool known = true;
    for (int d = 0; d < v->t.rank; d++) {
        const Onnx__TensorShapeProto__Dimension *dim = tt->shape->dim[d];
        if (dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
            if (dim->dim_value < 0)
                return rp_fail(err, RP_ERR_FORMAT, "graph input '%s': dimension %d is negative (%lld)", v->name, d,
                               (long long)dim->dim_value);
            v->t.dims[d] = dim->dim_value;
            continue;
        }
        const char *param = "?";
        if (dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && dim->dim_param &&
            dim->dim_param[0])
            param = dim->dim_param;
        v->t.dims[d] = -1;
        v->dim_params[d] = strdup(param);
        if (!v->dim_params[d])
            return rp_fail(err, RP_ERR_NOMEM, "out of memory");
        known = false;
    }
    v->shape_known = known;
    v->t.count = known ? rp_shape_count(v->t.rank, v->t.dims) : -1;
    if (known && v->t.count < 0)
        return rp_fail(err, RP_ERR_FORMAT, "graph input '%s': dims overflow", v->name);
    return RP_OK;
}

/* ---- nodes ---- */

static rp_status convert_attr(const Onnx__AttributeProto *ap, const rp_node *n, load_ctx *lc, rp_attr *a,
                              rp_error *err)
{
    a->name = dup_str(ap->name);
    if (!a->name)
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    int type = ap->has_type ? (int)ap->type : 0;
    if (type == 0) {
        /* Files from before IR version 2 leave the type out: infer it from the field present. */
        if (ap->has_f) type = RP_ATTR_FLOAT;
        else if (ap->has_i) type = RP_ATTR_INT;
        else if (ap->has_s) type = RP_ATTR_STRING;
        else if (ap->t) type = RP_ATTR_TENSOR;
        else if (ap->g) type = RP_ATTR_GRAPH;
        else if (ap->n_floats) type = RP_ATTR_FLOATS;
        else if (ap->n_ints) type = RP_ATTR_INTS;
        else if (ap->n_strings) type = RP_ATTR_STRINGS;
    }
    /* Types we do not decode (sparse tensors, lists of tensors or graphs,
     * type protos) keep their ONNX number and no payload: no op accepts
     * them, so prepare refuses the node with the attribute's name. */
    a->type = (rp_attr_type)type;
    switch (type) {
    case RP_ATTR_FLOAT:
        a->f = ap->f;
        break;
    case RP_ATTR_INT:
        a->i = ap->i;
        break;
    case RP_ATTR_STRING:
        a->s = dup_bytes(ap->s.data, ap->s.len);
        if (!a->s)
            return rp_fail(err, RP_ERR_NOMEM, "out of memory");
        break;
    case RP_ATTR_FLOATS:
        if (ap->n_floats > INT64_MAX / sizeof(float))
            return rp_fail(err, RP_ERR_FORMAT, "attribute '%s' is too large", a->name);
        a->n = (int64_t)ap->n_floats;
        if (a->n) {
            a->floats = malloc(ap->n_floats * sizeof *a->floats);
            if (!a->floats)
                return rp_fail(err, RP_ERR_NOMEM, "out of memory");
            memcpy(a->floats, ap->floats, ap->n_floats * sizeof *a->floats);
        }
        break;
    case RP_ATTR_INTS:
        if (ap->n_ints > INT64_MAX / sizeof(int64_t))
            return rp_fail(err, RP_ERR_FORMAT, "attribute '%s' is too large", a->name);
        a->n = (int64_t)ap->n_ints;
        if (a->n) {
            a->ints = malloc(ap->n_ints * sizeof *a->ints);
            if (!a->ints)
                return rp_fail(err, RP_ERR_NOMEM, "out of memory");
            memcpy(a->ints, ap->ints, ap->n_ints * sizeof *a->ints);
        }
        break;
    case RP_ATTR_STRINGS:
        if (ap->n_strings > INT64_MAX / sizeof(char *))
            return rp_fail(err, RP_ERR_FORMAT, "attribute '%s' is too large", a->name);
        if (ap->n_strings) {
            /* calloc and n set first: graph.c frees strings[0..n), NULLs included. */
            a->strings = calloc(ap->n_strings, sizeof *a->strings);
            if (!a->strings)
                return rp_fail(err, RP_ERR_NOMEM, "out of memory");
            a->n = (int64_t)ap->n_strings;
            for (size_t k = 0; k < ap->n_strings; k++) {
                a->strings[k] = dup_bytes(ap->strings[k].data, ap->strings[k].len);
                if (!a->strings[k])
                    return rp_fail(err, RP_ERR_NOMEM, "out of memory");
            }
        }
        break;
    case RP_ATTR_TENSOR: {
        if (!ap->t)
            return rp_fail(err, RP_ERR_FORMAT, "node '%s' (%s): tensor attribute '%s' has no tensor", n->name,
                           n->op_type, a->name);
        a->tensor = calloc(1, sizeof *a->tensor);
        if (!a->tensor)
            return rp_fail(err, RP_ERR_NOMEM, "out of memory");
        rp_status st = rp_onnx_decode_tensor(ap->t, NULL, a->name, lc, a->tensor, err);
        if (st) {
            if (err)
                rp_error_prefix(err, "node '%s' (%s), attribute '%s'", n->name, n->op_type, a->name);
            return st;
        }
        break;
    }
    default:
        break; /* GRAPH and the undecoded types: type only */
    }
    return RP_OK;
}

static bool is_default_domain(const char *d)
{
    return d == NULL || d[0] == 0 || strcmp(d, "ai.onnx") == 0;
}

#define RP_MAX_NODE_ATTRS 1024

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Name, op, domain, opset and attributes of node index idx. */
static rp_status convert_node(rp_graph *g, int idx, const Onnx__NodeProto *np, load_ctx *lc, rp_error *err)
{
    rp_node *n = &g->nodes[idx];
    if (!np->op_type || !np->op_type[0])
        return rp_fail(err, RP_ERR_FORMAT, "node %d ('%s') has no op_type", idx, nz(np->name));
    n->op_type = strdup(np->op_type);
    if (!n->op_type)
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    if (np->name && np->name[0]) {
        n->name = strdup(np->name);
    } else {
        size_t len = strlen(np->op_type) + 24;
        n->name = malloc(len);
        if (n->name)
            snprintf(n->name, len, "%s_%d", np->op_type, idx);
    }
    n->domain = dup_str(is_default_domain(np->domain) ? "" : np->domain);
    if (!n->name || !n->domain)
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    n->opset = rp_graph_opset(g, n->domain);
    if (np->n_input > INT_MAX || np->n_output > INT_MAX || np->n_attribute > INT_MAX)
        return rp_fail(err, RP_ERR_FORMAT, "node '%s' (%s): too many inputs, outputs or attributes", n->name,
                       n->op_type);
    /* -1 until resolved, so a failure part-way leaves nothing dangling. */
    n->in = malloc((np->n_input ? np->n_input : 1) * sizeof *n->in);
    n->out = malloc((np->n_output ? np->n_output : 1) * sizeof *n->out);
    if (!n->in || !n->out)
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    n->n_in = (int)np->n_input;
    n->n_out = (int)np->n_output;
    for (int k = 0; k < n->n_in; k++)
        n->in[k] = -1;
    for (int k = 0; k < n->n_out; k++)
        n->out[k] = -1;
    /* No ONNX operator has more than a few dozen attributes; thousands are
     * a crafted file, not a model. */
    if (np->n_attribute > RP_MAX_NODE_ATTRS)
        return rp_fail(err, RP_ERR_FORMAT, "node '%s' (%s): %zu attributes (at most %d are accepted)", n->name,
                       n->op_type, np->n_attribute, RP_MAX_NODE_ATTRS);
    if (np->n_attribute) {
        n->attr = calloc(np->n_attribute, sizeof *n->attr);
        if (!n->attr)
            return rp_fail(err, RP_ERR_NOMEM, "out of memory");
        for (size_t k = 0; k < np->n_attribute; k++) {
            n->n_attr = (int)k + 1; /* count it before filling: graph.c frees what is there */
            rp_status st = convert_attr(np->attribute[k], n, lc, &n->attr[k], err);
            if (st)
                return st;
        }
        /* An attribute given twice: which one a kernel reads would be an
         * accident of lookup order. */
        const char **names = malloc(np->n_attribute * sizeof *names);
        if (!names)
            return rp_fail(err, RP_ERR_NOMEM, "out of memory");
        for (int k = 0; k < n->n_attr; k++)
            names[k] = n->attr[k].name;
        qsort(names, (size_t)n->n_attr, sizeof *names, cmp_names);
        for (int k = 1; k < n->n_attr; k++)
            if (strcmp(names[k - 1], names[k]) == 0) {
                rp_status st = rp_fail(err, RP_ERR_FORMAT, "node '%s' (%s): attribute '%s' is given twice", n->name,
                                       n->op_type, names[k]);
                free(names);
                return st;
            }
        free(names);
    }
    return RP_OK;
}

/* ---- topological order ----
 *
 * Kahn's algorithm taking the lowest original index first (rp_node_heap)
 * keeps the file's order wherever the dependencies allow. */

static int producer_of(const rp_graph *g, int value_id)
{
    return value_id < 0 ? -1 : g->values[value_id].producer;
}

static rp_status sort_nodes(rp_graph *g, rp_error *err)
{
    rp_status st = RP_OK;
    int n = g->n_nodes;
    bool sorted = true;
    for (int i = 0; i < n && sorted; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++)
            if (producer_of(g, g->nodes[i].in[k]) >= i) {
                sorted = false;
                break;
            }
    if (sorted)
        return RP_OK;

    int *indeg = calloc((size_t)n, sizeof *indeg);
    int *start = calloc((size_t)n + 1, sizeof *start); /* CSR of consumers per producer */
    int *heap = malloc((size_t)n * sizeof *heap);
    int *order = malloc((size_t)n * sizeof *order);
    int *newpos = malloc((size_t)n * sizeof *newpos);
    int *cons = NULL;
    rp_node *nodes = NULL;
    int64_t edges = 0;
    if (!indeg || !start || !heap || !order || !newpos) {
        st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++) {
            int p = producer_of(g, g->nodes[i].in[k]);
            if (p >= 0) {
                indeg[i]++;
                start[p + 1]++;
                edges++;
            }
        }
    if (edges > INT_MAX) {
        st = rp_fail(err, RP_ERR_FORMAT, "graph has too many edges");
        goto fail;
    }
    for (int i = 0; i < n; i++)
        start[i + 1] += start[i];
    cons = malloc((size_t)(edges ? edges : 1) * sizeof *cons);
    if (!cons) {
        st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    /* newpos doubles as the fill cursor per producer here. */
    for (int i = 0; i < n; i++)
        newpos[i] = start[i];
    for (int i = 0; i < n; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++) {
            int p = producer_of(g, g->nodes[i].in[k]);
            if (p >= 0)
                cons[newpos[p]++] = i;
        }

    int hl = 0, emitted = 0;
    for (int i = 0; i < n; i++)
        if (indeg[i] == 0)
            rp_node_heap_push(heap, &hl, i);
    while (hl > 0) {
        int u = rp_node_heap_pop(heap, &hl);
        order[emitted++] = u;
        for (int e = start[u]; e < start[u + 1]; e++)
            if (--indeg[cons[e]] == 0)
                rp_node_heap_push(heap, &hl, cons[e]);
    }
    if (emitted < n) {
        /* Every node left has an unemitted producer; following them n times
         * must end inside a cycle, so the node named is on one. */
        int x = 0;
        while (indeg[x] == 0)
            x++;
        for (int step = 0; step < n; step++) {
            const rp_node *nd = &g->nodes[x];
            for (int k = 0; k < nd->n_in; k++) {
                int p = producer_of(g, nd->in[k]);
                if (p >= 0 && indeg[p] > 0) {
                    x = p;
                    break;
                }
            }
        }
        st = rp_fail(err, RP_ERR_FORMAT, "the graph has a cycle through node '%s' (%s)", g->nodes[x].name,
                     g->nodes[x].op_type);
        goto fail;
    }

    nodes = malloc((size_t)n * sizeof *nodes);
    if (!nodes) {
        st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        nodes[i] = g->nodes[order[i]];
        newpos[order[i]] = i;
    }
    for (int v = 0; v < g->n_values; v++)
        if (g->values[v].producer >= 0)
            g->values[v].producer = newpos[g->values[v].producer];
    free(g->nodes);
    g->nodes = nodes;
    nodes = NULL;
fail:
    free(indeg);
    free(start);
    free(heap);
    free(order);
    free(newpos);
    free(cons);
    free(nodes);
    return st;
}

/* ---- the model ---- */

static rp_status build_graph(rp_graph *g, const Onnx__ModelProto *mp, const model_source *src, const payload *cut,
                             size_t n_cut, rp_error *err)
{
    rp_status st = RP_OK;
    name_map map = {0};
    const Onnx__GraphProto *gp = mp->graph;
    load_ctx lc = {g->model_dir, 0, RP_DEFAULT_MAX_BYTES, src};

    if (!gp)
        return rp_fail(err, RP_ERR_FORMAT, "no graph");
    if (gp->n_sparse_initializer)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "sparse initializers are not supported ('%s')",
                       gp->sparse_initializer[0]->values ? nz(gp->sparse_initializer[0]->values->name) : "");
    g->ir_version = mp->has_ir_version ? mp->ir_version : 0;

    if (mp->n_opset_import > INT_MAX || mp->n_metadata_props > INT_MAX || gp->n_node > INT_MAX ||
        gp->n_input > INT_MAX || gp->n_output > INT_MAX)
        return rp_fail(err, RP_ERR_FORMAT, "graph too large");
    if (mp->n_opset_import) {
        g->opsets = calloc(mp->n_opset_import, sizeof *g->opsets);
        if (!g->opsets)
            return rp_fail(err, RP_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < mp->n_opset_import; i++) {
            const Onnx__OperatorSetIdProto *o = mp->opset_import[i];
            g->opsets[i].domain = dup_str(o->domain);
            g->opsets[i].version = o->has_version ? o->version : 0;
            g->n_opsets = (int)i + 1;
            if (!g->opsets[i].domain)
                return rp_fail(err, RP_ERR_NOMEM, "out of memory");
            const char *d = g->opsets[i].domain;
            if ((d[0] == 0 || strcmp(d, "ai.onnx") == 0) && g->opsets[i].version > RP_MAX_OPSET)
                return rp_fail(err, RP_ERR_UNSUPPORTED,
                               "the model imports the default ONNX domain at opset %lld, newer than the newest "
                               "relprop knows (%d): its ops may have changed meaning; export it with opset %d or "
                               "older", (long long)g->opsets[i].version, RP_MAX_OPSET, RP_MAX_OPSET);
        }
    }
    if (mp->n_metadata_props) {
        g->metadata_keys = calloc(mp->n_metadata_props, sizeof *g->metadata_keys);
        g->metadata_values = calloc(mp->n_metadata_props, sizeof *g->metadata_values);
        if (!g->metadata_keys || !g->metadata_values)
            return rp_fail(err, RP_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < mp->n_metadata_props; i++) {
            g->metadata_keys[i] = dup_str(mp->metadata_props[i]->key);
            g->metadata_values[i] = dup_str(mp->metadata_props[i]->value);
            g->n_metadata = (int)i + 1;
            if (!g->metadata_keys[i] || !g->metadata_values[i])
                return rp_fail(err, RP_ERR_NOMEM, "out of memory");
        }
    }

    /* Every value the file can name, to size the arrays once. */
    uint64_t max_values = (uint64_t)gp->n_initializer + gp->n_input;
    for (size_t i = 0; i < gp->n_node; i++)
        max_values += gp->node[i]->n_output;
    if (max_values > INT_MAX / 4)
        return rp_fail(err, RP_ERR_FORMAT, "graph too large (%llu values)", (unsigned long long)max_values);
    g->values = calloc(max_values ? (size_t)max_values : 1, sizeof *g->values);
    g->nodes = calloc(gp->n_node ? gp->n_node : 1, sizeof *g->nodes);
    g->inputs = calloc(gp->n_input ? gp->n_input : 1, sizeof *g->inputs);
    g->outputs = calloc(gp->n_output ? gp->n_output : 1, sizeof *g->outputs);
    if (!g->values || !g->nodes || !g->inputs || !g->outputs || !map_init(&map, (size_t)max_values)) {
        st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
        goto fail;
    }

    for (size_t i = 0; i < gp->n_initializer; i++) {
        Onnx__TensorProto *tp = gp->initializer[i]; /* not const: rp_onnx_decode_tensor may take its bytes */
        const char *name = nz(tp->name);
        if (!name[0]) {
            st = rp_fail(err, RP_ERR_FORMAT, "initializer %zu has no name", i);
            goto fail;
        }
        if (map_find(&map, g, name) >= 0) {
            st = rp_fail(err, RP_ERR_FORMAT, "initializer '%s' is defined twice", name);
            goto fail;
        }
        int id = add_value(g, &map, name, RP_VALUE_CONSTANT, -1);
        if (id < 0) {
            st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
            goto fail;
        }
        rp_value *v = &g->values[id];
        if ((st = rp_onnx_decode_tensor(tp, i < n_cut ? &cut[i] : NULL, name, &lc, &v->t, err)))
            goto fail;
        v->shape_known = true;
    }

    for (size_t i = 0; i < gp->n_input; i++) {
        const Onnx__ValueInfoProto *vi = gp->input[i];
        const char *name = nz(vi->name);
        if (!name[0]) {
            st = rp_fail(err, RP_ERR_FORMAT, "graph input %zu has no name", i);
            goto fail;
        }
        int id = map_find(&map, g, name);
        if (id >= 0 && g->values[id].kind == RP_VALUE_CONSTANT)
            continue; /* an initializer listed as an input (IR < 4 style): a constant */
        if (id >= 0) {
            st = rp_fail(err, RP_ERR_FORMAT, "graph input '%s' is listed twice", name);
            goto fail;
        }
        id = add_value(g, &map, name, RP_VALUE_INPUT, -1);
        if (id < 0) {
            st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
            goto fail;
        }
        g->inputs[g->n_inputs++] = id;
        if ((st = input_type(&g->values[id], vi, err)))
            goto fail;
    }

    /* Nodes and their outputs first, inputs after: a file out of order may
     * consume a value before the node that makes it. */
    for (size_t i = 0; i < gp->n_node; i++) {
        const Onnx__NodeProto *np = gp->node[i];
        int idx = (int)i;
        g->n_nodes = idx + 1;
        if ((st = convert_node(g, idx, np, &lc, err)))
            goto fail;
        rp_node *n = &g->nodes[idx];
        for (int k = 0; k < n->n_out; k++) {
            const char *name = nz(np->output[k]);
            if (!name[0])
                continue; /* omitted optional output */
            int prev = map_find(&map, g, name);
            if (prev >= 0) {
                int p = g->values[prev].producer;
                if (p >= 0)
                    st = rp_fail(err, RP_ERR_FORMAT, "node '%s' (%s): output '%s' is already produced by node '%s'",
                                 n->name, n->op_type, name, g->nodes[p].name);
                else
                    st = rp_fail(err, RP_ERR_FORMAT, "node '%s' (%s): output '%s' is already a graph %s", n->name,
                                 n->op_type, name, g->values[prev].kind == RP_VALUE_INPUT ? "input" : "initializer");
                goto fail;
            }
            int id = add_value(g, &map, name, RP_VALUE_ACTIVATION, idx);
            if (id < 0) {
                st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
                goto fail;
            }
            n->out[k] = id;
        }
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const Onnx__NodeProto *np = gp->node[i];
        rp_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_in; k++) {
            const char *name = nz(np->input[k]);
            if (!name[0])
                continue; /* omitted optional input */
            int id = map_find(&map, g, name);
            if (id < 0) {
                st = rp_fail(err, RP_ERR_FORMAT,
                             "node '%s' (%s): input '%s' is not a graph input, initializer or node output", n->name,
                             n->op_type, name);
                goto fail;
            }
            n->in[k] = id;
        }
    }

    for (size_t i = 0; i < gp->n_output; i++) {
        const char *name = nz(gp->output[i]->name);
        int id = map_find(&map, g, name);
        if (id < 0) {
            st = rp_fail(err, RP_ERR_FORMAT, "graph output '%s' is not produced by any node, input or initializer",
                         name);
            goto fail;
        }
        if (g->values[id].is_graph_output) {
            st = rp_fail(err, RP_ERR_FORMAT, "graph output '%s' is listed twice", name);
            goto fail;
        }
        g->outputs[g->n_outputs++] = id;
        g->values[id].is_graph_output = true;
    }

    if ((st = sort_nodes(g, err)))
        goto fail;
    st = rp_graph_index_consumers(g, err);
fail:
    g->model_bytes += lc.ext_bytes;
    free(map.slot);
    return st;
}

static rp_status load_source(const model_source *src, const char *path, rp_graph **out, rp_error *err)
{
    rp_status st = RP_OK;
    Onnx__ModelProto *mp = NULL;
    rp_graph *g = NULL;
    cut_buf cut = {0};
    *out = NULL;

    if (!src->bytes && src->len) {
        st = rp_fail(err, RP_ERR_ARG, "NULL buffer");
        goto fail;
    }
    if (src->len == 0) {
        st = rp_fail(err, RP_ERR_FORMAT, "empty file");
        goto fail;
    }
    g = calloc(1, sizeof *g);
    if (!g) {
        st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    g->model_bytes = (int64_t)src->len;
    if (path) {
        g->path = strdup(path);
        g->model_dir = rp_onnx_dir_of(path);
        if (!g->path || !g->model_dir) {
            st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
            goto fail;
        }
    }
    const uint8_t *buf = src->bytes;
    pb_walk w = rp_onnx_wire_check(buf, src->len);
    if (w == PB_WALK_TOO_DEEP) {
        st = rp_fail(err, RP_ERR_FORMAT,
                     "messages nested more than %d deep (graphs inside graph attributes, or types inside "
                     "types); refused before parsing", PB_MAX_DEPTH);
        goto fail;
    }
    if (w == PB_WALK_NUL_NAME) {
        st = rp_fail(err, RP_ERR_FORMAT, "a node, value or tensor name contains a NUL byte");
        goto fail;
    }
    if (w == PB_WALK_OK && !rp_onnx_cut_weights(&cut, buf, src->len)) {
        st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    mp = w == PB_WALK_OK ? onnx__model_proto__unpack(NULL, cut.len, cut.bytes) : NULL;
    free(cut.bytes);
    cut.bytes = NULL;
    if (!mp) {
        st = rp_fail(err, RP_ERR_FORMAT, "not an ONNX model (protobuf parse failed; truncated or corrupt file?)");
        goto fail;
    }
    if ((st = build_graph(g, mp, src, cut.cut, cut.n_cut, err)))
        goto fail;
    onnx__model_proto__free_unpacked(mp, NULL);
    free(cut.cut);
    *out = g;
    return RP_OK;
fail:
    free(cut.bytes);
    free(cut.cut);
    if (mp)
        onnx__model_proto__free_unpacked(mp, NULL);
    rp_graph_free(g);
    if (path && err)
        rp_error_prefix(err, "%s", path);
    return st;
}

rp_status rp_graph_load_buffer(const uint8_t *buf, size_t len, const char *path, rp_graph **out, rp_error *err)
{
    model_source src = {buf, len, -1};
    return load_source(&src, path, out, err);
}

/* A regular file is mapped: only the pages the walks touch (the message's
 * structure, not its weights) become resident. Anything else (a pipe, a
 * device) is read into memory. */
rp_status rp_graph_load(const char *path, rp_graph **out, rp_error *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rp_fail(err, RP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    /* A regular file's size is known: past protobuf's limit it is refused
     * before a byte is read (a sparse 3 GB file would cost 2 GiB first). */
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && (uint64_t)sb.st_size > RP_MAX_PROTO_FILE) {
        close(fd);
        return rp_fail(err, RP_ERR_FORMAT,
                       "%s: %lld bytes, larger than 2 GiB, protobuf's limit for one message (models that big keep "
                       "their weights in external data files)", path, (long long)sb.st_size);
    }
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0 && (uint64_t)sb.st_size <= RP_MAX_PROTO_FILE) {
        void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map != MAP_FAILED) {
            model_source src = {map, (size_t)sb.st_size, fd};
            rp_status st = load_source(&src, path, out, err);
            munmap(map, (size_t)sb.st_size);
            close(fd);
            return st;
        }
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    rp_status st = rp_onnx_read_fd(fd, path, &buf, &len, err);
    if (st)
        return st;
    model_source src = {buf, len, -1};
    st = load_source(&src, path, out, err);
    free(buf);
    return st;
}
