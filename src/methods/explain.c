/* rp_explain: forward once, then per class one gradient pass and one
 * relevance pass — each only as deep as the chosen methods need — and the
 * methods' aggregation (maps.c). Data flows one way: the graph's values feed
 * the backward walks, whose per-layer results feed the maps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "methods/model.h"
#include "methods/maps.h"
#include "methods/method_table.h"
#include "rules/relevance.h"

struct rp_explanation {
    rp_tensor logits;
    int batch, n_classes, n_methods, n_layers;
    int *classes;     /* [sample][class] */
    rp_method *methods;
    rp_tensor *maps;  /* [sample][class][method] */
    rp_tensor *inter; /* [class][layer][A, dA, R_A] when kept */
    /* check_conservation: per class, the report and its strings (one block). */
    rp_conservation_entry **cons;
    int *n_cons;
    char **cons_strings;
    double *cons_at_input;
};

void rp_explanation_free(rp_explanation *e)
{
    if (!e)
        return;
    rp_tensor_release(&e->logits);
    if (e->maps)
        for (int i = 0; i < e->batch * e->n_classes * e->n_methods; i++)
            rp_tensor_release(&e->maps[i]);
    if (e->inter)
        for (int i = 0; i < e->n_classes * e->n_layers * 3; i++)
            rp_tensor_release(&e->inter[i]);
    free(e->maps);
    free(e->inter);
    for (int i = 0; i < e->n_classes; i++) {
        if (e->cons)
            free(e->cons[i]);
        if (e->cons_strings)
            free(e->cons_strings[i]);
    }
    free(e->cons);
    free(e->n_cons);
    free(e->cons_strings);
    free(e->cons_at_input);
    free(e->classes);
    free(e->methods);
    free(e);
}

const rp_tensor *rp_explanation_logits(const rp_explanation *e) { return &e->logits; }
int rp_explanation_class_count(const rp_explanation *e) { return e->n_classes; }
int rp_explanation_class(const rp_explanation *e, int ci) { return e->classes[ci]; }
int rp_explanation_batch(const rp_explanation *e) { return e->batch; }
int rp_explanation_sample_class(const rp_explanation *e, int b, int ci) { return e->classes[b * e->n_classes + ci]; }
int rp_explanation_method_count(const rp_explanation *e) { return e->n_methods; }
rp_method rp_explanation_method(const rp_explanation *e, int mi) { return e->methods[mi]; }
int rp_explanation_layer_count(const rp_explanation *e) { return e->n_layers; }

/* The map of sample b, class rank ci, method mi. */
static rp_tensor *map_slot(const rp_explanation *e, int b, int ci, int mi)
{
    return &e->maps[(b * e->n_classes + ci) * e->n_methods + mi];
}

const rp_tensor *rp_explanation_map(const rp_explanation *e, int ci, int mi)
{
    return map_slot(e, 0, ci, mi);
}

const rp_tensor *rp_explanation_sample_map(const rp_explanation *e, int b, int ci, int mi)
{
    return map_slot(e, b, ci, mi);
}

void rp_explanation_layer(const rp_explanation *e, int ci, int l, const rp_tensor **attn,
                          const rp_tensor **attn_grad, const rp_tensor **attn_cam)
{
    const rp_tensor *t = e->inter ? &e->inter[(ci * e->n_layers + l) * 3] : NULL;
    *attn = t && t[0].data ? &t[0] : NULL;
    *attn_grad = t && t[1].data ? &t[1] : NULL;
    *attn_cam = t && t[2].data ? &t[2] : NULL;
}

int rp_explanation_conservation_count(const rp_explanation *e, int ci)
{
    return e->n_cons && ci >= 0 && ci < e->n_classes ? e->n_cons[ci] : 0;
}

const rp_conservation_entry *rp_explanation_conservation(const rp_explanation *e, int ci, int j)
{
    if (j < 0 || j >= rp_explanation_conservation_count(e, ci))
        return NULL;
    return &e->cons[ci][j];
}

void rp_explanation_conservation_summary(const rp_explanation *e, int ci, double *at_output, double *at_input,
                                         int *n_violations)
{
    int n = rp_explanation_conservation_count(e, ci), bad = 0;
    for (int j = 0; j < n; j++)
        bad += e->cons[ci][j].violated;
    if (at_output)
        *at_output = e->n_cons ? 1.0 : 0.0; /* the seed is one-hot */
    if (at_input)
        *at_input = e->n_cons && ci >= 0 && ci < e->n_classes ? e->cons_at_input[ci] : 0.0;
    if (n_violations)
        *n_violations = bad;
}

/* Copy a run's report into the explanation; the strings it points to (node
 * names, rule names in plugins) may not outlive the model. */
static rp_status keep_report(rp_explanation *e, int ci, const rp_relevance_check *chk, double at_input,
                             rp_error *err)
{
    size_t bytes = 0;
    for (int j = 0; j < chk->n; j++) {
        const rp_conservation_entry *c = &chk->entries[j];
        bytes += strlen(c->name) + strlen(c->op) + strlen(c->kind) + strlen(c->rule) + 4;
    }
    e->cons[ci] = malloc(sizeof *e->cons[ci] * (size_t)(chk->n + 1));
    e->cons_strings[ci] = malloc(bytes + 1);
    if (!e->cons[ci] || !e->cons_strings[ci])
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    char *p = e->cons_strings[ci];
    for (int j = 0; j < chk->n; j++) {
        rp_conservation_entry c = chk->entries[j];
        const char **fields[4] = {&c.name, &c.op, &c.kind, &c.rule};
        for (int f = 0; f < 4; f++) {
            size_t len = strlen(*fields[f]) + 1;
            memcpy(p, *fields[f], len);
            *fields[f] = p;
            p += len;
        }
        e->cons[ci][j] = c;
    }
    e->n_cons[ci] = chk->n;
    e->cons_at_input[ci] = at_input;
    return RP_OK;
}

/* Assign rules once per model, rule set and registry; scratch sized for the
 * widest node. */
static rp_status ensure_rules(rp_model *m, const char *rules, rp_rule_registry *reg, rp_error *err)
{
    char key[sizeof m->rules_name];
    rp_assign_cache_key(rules, reg, key, sizeof key);
    if (m->rules.kind && strcmp(m->rules_name, key) == 0)
        return RP_OK;
    rp_assignment_free(&m->rules);
    m->rules_name[0] = 0;
    rp_status st = rp_assign_rules(m->g, rules, reg, &m->rules, err);
    if (st)
        return st;
    snprintf(m->rules_name, sizeof m->rules_name, "%s", key);
    if (m->rules.scratch_floats > m->scratch_floats) {
        free(m->scratch);
        m->scratch = malloc(sizeof(float) * m->rules.scratch_floats);
        if (!m->scratch) {
            m->scratch_floats = 0;
            return rp_fail(err, RP_ERR_NOMEM, "out of memory for relevance scratch");
        }
        m->scratch_floats = m->rules.scratch_floats;
    }
    return RP_OK;
}

rp_status rp_model_node_rule_in(rp_model *m, const char *rules, rp_rule_registry *registry, int i,
                                const char **kind, const char **rule, const struct rp_rule_params **params,
                                rp_error *err)
{
    rp_status st = rp_model_prepare(m, err);
    if (st || (st = ensure_rules(m, rules ? rules : "paper", registry, err)))
        return st;
    if (i < 0 || i >= m->g->n_nodes)
        return rp_fail(err, RP_ERR_ARG, "node %d does not exist (the model has %d)", i, m->g->n_nodes);
    *kind = rp_node_kind_name(m->rules.kind[i]);
    *rule = m->rules.rule[i] ? m->rules.rule[i]->name : NULL;
    if (params)
        *params = m->rules.rule[i] ? &m->rules.params[i] : NULL;
    return RP_OK;
}

rp_status rp_model_node_rule(rp_model *m, const char *rules, int i, const char **kind, const char **rule,
                             rp_error *err)
{
    return rp_model_node_rule_in(m, rules, NULL, i, kind, rule, NULL, err);
}

static rp_status copy_tensor(rp_tensor *dst, const rp_tensor *src, rp_error *err)
{
    rp_status st = rp_tensor_alloc(dst, RP_FLOAT, src->rank, src->dims, err);
    if (st == RP_OK && src->count)
        memcpy(dst->data, src->data, sizeof(float) * (size_t)src->count);
    return st;
}

void rp_top_classes(const float *y, int64_t n, int k, int *out)
{
    if (k > n)
        k = (int)n;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int64_t i = 0; i < n; i++) {
            bool taken = false;
            for (int q = 0; q < j; q++)
                taken |= out[q] == i;
            if (!taken && (best < 0 || y[i] > y[best]))
                best = (int)i;
        }
        out[j] = best;
    }
}

/* Sum sample b's pixel relevance over channels: (B,C,H,W) → (H,W). */
static rp_status pixel_map(const rp_tensor *r, int b, rp_tensor *out, rp_error *err)
{
    int64_t dims[2] = {r->dims[2], r->dims[3]};
    rp_status st = rp_tensor_alloc(out, RP_FLOAT, 2, dims, err);
    if (st)
        return st;
    int64_t hw = dims[0] * dims[1];
    float *o = out->data;
    const float *x = (const float *)r->data + (int64_t)b * r->dims[1] * hw;
    for (int64_t c = 0; c < r->dims[1]; c++)
        for (int64_t p = 0; p < hw; p++)
            o[p] += x[c * hw + p];
    return RP_OK;
}

static rp_status check_request(const rp_model *m, int64_t n_logits, const int *classes, int n_classes,
                               const rp_method *methods, int n_methods, rp_error *err)
{
    const char *path = m->g->path;
    for (int i = 0; i < n_classes; i++)
        if (classes[i] < 0 || classes[i] >= n_logits)
            return rp_fail(err, RP_ERR_ARG, "%s: class %d out of range: the model has %lld classes", path, classes[i],
                           (long long)n_logits);
    bool patch_methods = false;
    for (int i = 0; i < n_methods; i++) {
        patch_methods |= !rp_method_pixel_map(methods[i]); /* rp_explain refused unknown methods */
    }
    if (patch_methods && m->n_attn == 0)
        return rp_fail(err, RP_ERR_UNSUPPORTED,
                       "%s: no attention layer found (a Softmax whose output is the left operand of a MatMul/Einsum "
                       "with an activation); only lrp_full can explain this model",
                       path);
    if (patch_methods) {
        const rp_patch_embedding *p = &m->patches;
        if (p->conv_node < 0)
            return rp_fail(err, RP_ERR_UNSUPPORTED, "%s: no Conv reads the image input, so tokens cannot be mapped to "
                           "image patches; only lrp_full can explain this model", path);
        rp_status st = rp_check_attention_layout(m->g, m->attn, m->n_attn, p, err);
        if (st)
            return st;
    }
    const rp_tensor *x = &m->g->values[m->g->inputs[0]].t;
    for (int i = 0; i < n_methods; i++)
        if (rp_method_row_of(methods[i])->pixels && x->rank != 4)
            return rp_fail(err, RP_ERR_UNSUPPORTED, "%s: %s needs an image input (N,C,H,W)", path,
                           rp_method_name(methods[i]));
    return RP_OK;
}

static rp_status compute_map(const rp_model *m, rp_method method, const rp_map_input *in, int start_layer,
                             rp_tensor *out, rp_error *err)
{
    int64_t dims[2] = {m->patches.grid_h, m->patches.grid_w};
    rp_status st = rp_tensor_alloc(out, RP_FLOAT, 2, dims, err);
    if (st)
        return st;
    float *o = out->data;
    int patches = in->tokens - in->prefix;
    if (patches != dims[0] * dims[1])
        return rp_fail(err, RP_ERR_UNSUPPORTED, "%s: %d patch tokens do not fill the %lldx%lld grid", m->g->path,
                       patches, (long long)dims[0], (long long)dims[1]);
    const rp_method_row *row = rp_method_row_of(method);
    if (!row || !row->map)
        return rp_fail(err, RP_ERR_INTERNAL, "method %d is not a patch map", (int)method);
    return row->map(in, start_layer, o, err);
}

/* Transformer attribution reads each attention map's gradient and relevance
 * only as their product. When nothing else reads either, the relevance is
 * walked first and each layer's gradient is multiplied into it as soon as the
 * gradient walk has it final, then released: the gradients of all layers are
 * never held at once (DeiT-base: 22 MB). */
typedef struct fuse_ctx {
    rp_model *m;
    int from;   /* lowest layer read */
    bool *done; /* per layer: gradient multiplied in */
} fuse_ctx;

static void fuse_gradient(void *ctx, int value, const rp_tensor *grad)
{
    fuse_ctx *f = ctx;
    for (int l = f->from; l < f->m->n_attn; l++) {
        if (f->m->attn[l].product_left != value || f->done[l])
            continue;
        float *r = f->m->rel.t[value].data;
        const float *gv = grad->data;
        for (int64_t k = 0; r && k < grad->count; k++)
            r[k] = gv[k] * r[k];
        f->done[l] = true;
    }
}

/* Only what the walks and the maps read after the forward pass keeps a
 * buffer of its own; the rest share (graph/plan.c). */
static rp_status plan_memory(rp_model *m, bool gradients, bool relevance, bool everything, rp_error *err)
{
    rp_graph *g = m->g;
    if (everything)
        return rp_graph_plan_memory(g, NULL, false, err);
    bool *keep = calloc((size_t)g->n_values + 1, sizeof *keep);
    if (!keep)
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    for (int l = 0; l < m->n_attn; l++)
        keep[m->attn[l].probs_value] = keep[m->attn[l].product_left] = true;
    if (gradients)
        rp_graph_mark_gradient_reads(g, keep);
    if (relevance)
        rp_assignment_mark_reads(g, &m->rules, keep);
    rp_status st = rp_graph_plan_memory(g, keep, false, err);
    free(keep);
    return st;
}

rp_status rp_explain(rp_model *m, const rp_tensor *input, const int *classes, int n_classes,
                     const rp_method *methods, int n_methods, const rp_explain_options *opt,
                     rp_explanation **out, rp_error *err)
{
    *out = NULL;
    rp_explain_options defaults = {0};
    if (!opt)
        opt = &defaults;
    if (n_methods < 1)
        return rp_fail(err, RP_ERR_ARG, "no method requested");
    rp_status st = rp_model_prepare(m, err);
    if (st)
        return st;
    rp_graph *g = m->g;
    if (g->n_inputs != 1)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "%s: the model has %d inputs; relprop explains models with one input",
                       g->path, g->n_inputs);
    const int batch = rp_model_batch(m);
    if (batch > 1 && (opt->keep_intermediates || opt->check_conservation))
        return rp_fail(err, RP_ERR_UNSUPPORTED,
                       "intermediates and the conservation check are kept for a batch of 1 only");
    int out_value = g->outputs[0];
    int image_value = g->inputs[0];
    float *readout = NULL;
    rp_layer_view *views = NULL;
    int *targets = NULL;
    bool *fused_done = NULL;
    fuse_ctx fctx = {m, 0, NULL};
    rp_tensor seed = {0};
    rp_relevance_check check = {0};
    rp_explanation *e = calloc(1, sizeof *e);
    if (!e)
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");

    bool want_grad = false, want_rel = false, want_pixels = false;
    for (int i = 0; i < n_methods; i++) {
        const rp_method_row *row = rp_method_row_of(methods[i]);
        if (!row) {
            st = rp_fail(err, RP_ERR_ARG, "unknown method %d", (int)methods[i]);
            goto fail;
        }
        want_grad |= row->gradient != RP_REACH_NONE;
        want_rel |= row->relevance != RP_REACH_NONE || row->pixels;
        want_pixels |= row->pixels;
    }
    if (opt->keep_intermediates && m->n_attn > 0)
        want_grad = want_rel = true;
    /* The conservation check follows relevance through every node, down to
     * the input. */
    if (opt->check_conservation)
        want_rel = want_pixels = true;
    if (want_rel && (st = ensure_rules(m, opt->rules ? opt->rules : "paper", opt->registry, err)))
        goto fail;
    if ((st = plan_memory(m, want_grad || (want_rel && m->rules.needs_gradient), want_rel,
                          opt->keep_intermediates, err)))
        goto fail;
    if ((st = rp_graph_forward_strict(g, &input, 1, err)))
        goto fail;
    const rp_tensor *y = &g->values[out_value].t;
    if (y->dtype != RP_FLOAT || y->count < 1) {
        st = rp_fail(err, RP_ERR_UNSUPPORTED, "%s: the first output is not a float32 vector of scores", g->path);
        goto fail;
    }
    if ((st = copy_tensor(&e->logits, y, err)))
        goto fail;
    /* Rows of the batch are independent: one seed with a one-hot per row
     * explains every row for its own class in the same backward pass. */
    const int64_t n_logits = y->count / batch;
    if (batch > 1 && (y->rank < 1 || y->dims[0] != batch)) {
        st = rp_fail(err, RP_ERR_UNSUPPORTED, "%s: the output does not have one row per batch item", g->path);
        goto fail;
    }
    int top_k = opt->top_classes > 0 ? opt->top_classes : 1;
    if (top_k > n_logits)
        top_k = (int)n_logits;
    e->batch = batch;
    e->n_classes = n_classes > 0 ? n_classes : top_k;
    e->n_methods = n_methods;
    e->n_layers = m->n_attn;
    e->classes = malloc(sizeof *e->classes * (size_t)e->n_classes * (size_t)batch);
    e->methods = malloc(sizeof *e->methods * (size_t)n_methods);
    e->maps = calloc((size_t)batch * (size_t)e->n_classes * (size_t)n_methods, sizeof *e->maps);
    if (opt->keep_intermediates && m->n_attn > 0)
        e->inter = calloc((size_t)e->n_classes * (size_t)m->n_attn * 3, sizeof *e->inter);
    if (!e->classes || !e->methods || !e->maps || (opt->keep_intermediates && m->n_attn > 0 && !e->inter)) {
        st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int b = 0; b < batch; b++) {
        if (n_classes > 0)
            memcpy(e->classes + b * e->n_classes, classes, sizeof *classes * (size_t)n_classes);
        else
            rp_top_classes((const float *)y->data + b * n_logits, n_logits, e->n_classes, e->classes + b * e->n_classes);
    }
    memcpy(e->methods, methods, sizeof *methods * (size_t)n_methods);
    if ((st = check_request(m, n_logits, e->classes, e->n_classes, methods, n_methods, err)))
        goto fail;

    /* Each walk goes only as deep as the lowest attention layer a method reads
     * (transformer attribution from the start layer, generic attention all of
     * them, GradCAM and partial LRP the last one), or to the pixels for
     * lrp_full and the conservation check. */
    int n_layers = m->n_attn;
    int grad_from = n_layers, rel_from = n_layers;
    for (int i = 0; i < n_methods; i++) {
        const rp_method_row *row = rp_method_row_of(methods[i]);
        int g_low = rp_reach_lowest(row->gradient, opt->start_layer, n_layers);
        int r_low = rp_reach_lowest(row->relevance, opt->start_layer, n_layers);
        grad_from = g_low < grad_from ? g_low : grad_from;
        rel_from = r_low < rel_from ? r_low : rel_from;
    }
    if (opt->keep_intermediates)
        grad_from = rel_from = 0;
    targets = malloc(sizeof *targets * (size_t)(2 * n_layers + 2));
    if (!targets) {
        st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    int n_targets = 0; /* relevance: targets[0 .. n_targets) */
    for (int l = rel_from; l < n_layers; l++)
        targets[n_targets++] = m->attn[l].product_left;
    if (want_pixels)
        targets[n_targets++] = image_value;
    int *grad_targets = targets + n_targets, n_grad_targets = 0;
    /* A rule that reads gradients gets them wherever relevance goes. */
    bool rules_need_grad = false;
    if (want_rel) {
        rules_need_grad = m->rules.needs_gradient;
        m->rel.transient = true;
        if ((st = rp_valuebuf_plan(&m->rel, g, out_value, targets, n_targets, err)))
            goto fail;
    }
    int grad_low = rules_need_grad && rel_from < grad_from ? rel_from : grad_from;
    for (int l = grad_low; l < n_layers; l++)
        grad_targets[n_grad_targets++] = m->attn[l].product_left;
    if (rules_need_grad && want_pixels)
        grad_targets[n_grad_targets++] = image_value;
    /* Relevance is read back only at the targets, and so are gradients unless
     * a rule reads them during the relevance walk: then they all stay. */
    bool fuse = want_grad && want_rel && !rules_need_grad && !opt->keep_intermediates && !opt->check_conservation;
    for (int i = 0; i < n_methods; i++)
        fuse &= !rp_method_row_of(methods[i])->reads_apart;
    m->grads.transient = !rules_need_grad;
    want_grad |= rules_need_grad;
    if (n_grad_targets == 0)
        want_grad = false; /* an empty target list would mean "down to the inputs" to the planner */
    if (want_grad && (st = rp_valuebuf_plan(&m->grads, g, out_value, grad_targets, n_grad_targets, err)))
        goto fail;
    fuse &= want_grad && grad_low == rel_from;
    fused_done = calloc((size_t)n_layers + 1, sizeof *fused_done);
    if (!fused_done) {
        st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    fctx.from = rel_from;
    fctx.done = fused_done;
    m->grads.on_final = fuse ? fuse_gradient : NULL;
    m->grads.on_final_ctx = fuse ? &fctx : NULL;
    for (int k = 0; fuse && k < n_grad_targets; k++)
        m->grads.keep[grad_targets[k]] = false; /* multiplied into the relevance, then released */
    if (opt->check_conservation) {
        check.tolerance = opt->conservation_tolerance;
        check.entries = malloc(sizeof *check.entries * ((size_t)g->n_nodes + 1));
        e->cons = calloc((size_t)e->n_classes, sizeof *e->cons);
        e->n_cons = calloc((size_t)e->n_classes, sizeof *e->n_cons);
        e->cons_strings = calloc((size_t)e->n_classes, sizeof *e->cons_strings);
        e->cons_at_input = calloc((size_t)e->n_classes, sizeof *e->cons_at_input);
        if (!check.entries || !e->cons || !e->n_cons || !e->cons_strings || !e->cons_at_input) {
            st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
            goto fail;
        }
    }
    int n_tokens = m->n_attn ? m->attn[m->n_attn - 1].tokens : 0;
    readout = calloc((size_t)n_tokens + 1, sizeof *readout);
    views = calloc((size_t)m->n_attn + 1, sizeof *views);
    if (!readout || !views) {
        st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
        goto fail;
    }
    const char *how = NULL;
    if (m->n_attn)
        rp_find_readout(g, &m->attn[m->n_attn - 1], readout, &how);
    if ((st = rp_tensor_alloc(&seed, RP_FLOAT, y->rank, y->dims, err)))
        goto fail;

    for (int ci = 0; ci < e->n_classes; ci++) {
        memset(seed.data, 0, sizeof(float) * (size_t)seed.count);
        for (int b = 0; b < batch; b++)
            ((float *)seed.data)[b * n_logits + e->classes[b * e->n_classes + ci]] = 1.0f;
        /* The two walks run one after the other (relevance first when fused),
         * drawing on one pool of free buffers: the previous class's maps are
         * made, its buffers free. */
        bool share_pool = want_grad && want_rel && m->grads.transient && m->rel.transient;
        for (int phase = 0; phase < 2; phase++) {
            bool gradients = (phase == 0) != fuse;
            if (gradients ? !want_grad : !want_rel)
                continue;
            rp_valuebuf *walking = gradients ? &m->grads : &m->rel, *other = gradients ? &m->rel : &m->grads;
            rp_valuebuf_zero(walking);
            if (share_pool) {
                if (phase == 0)
                    rp_valuebuf_zero(other);
                rp_valuebuf_pass_pool(other, walking);
            }
            if (gradients) {
                memset(fused_done, 0, sizeof *fused_done * (size_t)(n_layers + 1));
                if ((st = rp_graph_backward(g, out_value, &seed, &m->grads, err)))
                    goto fail;
                for (int l = rel_from; fuse && l < n_layers; l++)
                    if (!fused_done[l]) /* no gradient reached this map: it is zero */
                        memset(m->rel.t[m->attn[l].product_left].data, 0,
                               sizeof(float) * (size_t)m->rel.t[m->attn[l].product_left].count);
            } else {
                if ((st = rp_relevance_run(g, &m->rules, out_value, &seed, &m->rel, m->scratch,
                                           rules_need_grad ? &m->grads : NULL,
                                           opt->check_conservation ? &check : NULL, err)))
                    goto fail;
                if (opt->check_conservation) {
                    double at_input = 0;
                    const rp_tensor *rx = &m->rel.t[image_value];
                    for (int64_t q = 0; rx->data && q < rx->count; q++)
                        at_input += ((const float *)rx->data)[q];
                    if ((st = keep_report(e, ci, &check, at_input, err)))
                        goto fail;
                }
            }
            if (share_pool)
                rp_valuebuf_pass_pool(walking, other);
        }
        for (int b = 0; b < batch; b++) {
            /* Sample b's rows of every layer's A (and of its gradient and
             * relevance, shaped alike): [B,H,N,N] or [B*H,N,N], b-major. */
            for (int l = 0; l < m->n_attn; l++) {
                const rp_attention_layer *al = &m->attn[l];
                int64_t off = b * (g->values[al->probs_value].t.count / batch);
                const float *gd = want_grad ? m->grads.t[al->product_left].data : NULL;
                const float *rd = want_rel ? m->rel.t[al->product_left].data : NULL;
                views[l].A = (const float *)g->values[al->probs_value].t.data + off;
                views[l].G = gd && l >= grad_low && !fuse ? gd + off : NULL;
                views[l].R = rd && l >= rel_from && !fuse ? rd + off : NULL;
                views[l].GR = rd && l >= rel_from && fuse ? rd + off : NULL;
            }
            rp_map_input in = {.layers = views, .n_layers = m->n_attn, .heads = m->n_attn ? m->attn[0].heads : 0,
                               .tokens = n_tokens, .prefix = n_tokens - m->patches.grid_h * m->patches.grid_w,
                               .readout = readout};
            for (int mi = 0; mi < n_methods; mi++) {
                rp_tensor *map = map_slot(e, b, ci, mi);
                if (rp_method_row_of(methods[mi])->pixels)
                    st = pixel_map(&m->rel.t[image_value], b, map, err);
                else
                    st = compute_map(m, methods[mi], &in, opt->start_layer, map, err);
                if (st)
                    goto fail;
            }
        }
        for (int l = 0; e->inter && l < m->n_attn; l++) {
            rp_tensor *slot = &e->inter[(ci * m->n_attn + l) * 3];
            const rp_attention_layer *al = &m->attn[l];
            if ((st = copy_tensor(&slot[0], &g->values[al->probs_value].t, err)) ||
                (st = copy_tensor(&slot[1], &m->grads.t[al->product_left], err)) ||
                (st = copy_tensor(&slot[2], &m->rel.t[al->product_left], err)))
                goto fail;
        }
    }
    st = RP_OK;
fail:
    free(readout);
    free(views);
    free(targets);
    free(fused_done);
    m->grads.on_final = NULL;
    m->grads.on_final_ctx = NULL;
    free(check.entries);
    rp_tensor_release(&seed);
    if (st == RP_OK)
        *out = e;
    else
        rp_explanation_free(e);
    return st;
}
