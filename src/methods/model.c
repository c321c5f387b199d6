/* The public rp_model: a graph plus the structure found in it. */
#include <stdlib.h>
#include <string.h>

#include "methods/model.h"
#include "graph/rewrite.h"
#include "ops/ops.h"

rp_status rp_model_open(const char *path, rp_model **out, rp_error *err)
{
    *out = NULL;
    rp_model *m = calloc(1, sizeof *m);
    if (!m)
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    rp_status st = rp_graph_load(path, &m->g, err);
    if (st) {
        free(m);
        return st;
    }
    m->g->check_finite = true;
    *out = m;
    return RP_OK;
}

rp_status rp_model_set_max_memory(rp_model *m, int64_t bytes, rp_error *err)
{
    if (m->g->prepared)
        return rp_fail(err, RP_ERR_ARG, "%s: the memory limit must be set before the model is prepared", m->g->path);
    if (bytes < 0)
        return rp_fail(err, RP_ERR_ARG, "memory limit %lld is negative", (long long)bytes);
    m->g->max_bytes = bytes;
    return RP_OK;
}

rp_status rp_model_set_batch(rp_model *m, int batch, rp_error *err)
{
    if (m->g->prepared)
        return rp_fail(err, RP_ERR_ARG, "%s: the batch size must be set before the model is prepared", m->g->path);
    if (batch < 1)
        return rp_fail(err, RP_ERR_ARG, "batch size %d: expected at least 1", batch);
    m->g->batch = batch;
    return RP_OK;
}

int rp_model_batch(const rp_model *m)
{
    return rp_graph_batch(m->g);
}

void rp_model_set_check_finite(rp_model *m, bool on)
{
    m->g->check_finite = on;
}

rp_status rp_model_prepare(rp_model *m, rp_error *err)
{
    if (m->g->prepared)
        return RP_OK;
    rp_status st = rp_graph_prepare(m->g, err);
    if (st)
        return st;
    if (m->g->n_inputs < 1 || m->g->n_outputs < 1)
        return rp_fail(err, RP_ERR_FORMAT, "%s: the model needs at least one input and one output", m->g->path);
    if ((st = rp_graph_fuse(m->g, &m->n_fused, err)))
        return st;
    st = rp_find_attention(m->g, &m->attn, &m->n_attn, err);
    if (st)
        return st;
    rp_find_patch_embedding(m->g, &m->patches);
    return RP_OK;
}

rp_status rp_model_load(const char *path, rp_model **out, rp_error *err)
{
    rp_status st = rp_model_open(path, out, err);
    if (st)
        return st;
    st = rp_model_prepare(*out, err);
    if (st) {
        rp_model_free(*out);
        *out = NULL;
    }
    return st;
}

void rp_model_free(rp_model *m)
{
    if (!m)
        return;
    rp_assignment_free(&m->rules);
    rp_valuebuf_free(&m->grads);
    rp_valuebuf_free(&m->rel);
    free(m->scratch);
    rp_graph_free(m->g);
    free(m->attn);
    free(m);
}

const char *rp_model_path(const rp_model *m) { return m->g->path; }
int rp_model_opset(const rp_model *m) { return rp_graph_opset(m->g, ""); }

int rp_model_input_count(const rp_model *m) { return m->g->n_inputs; }
const char *rp_model_input_name(const rp_model *m, int i) { return m->g->values[m->g->inputs[i]].name; }
const rp_tensor *rp_model_input_info(const rp_model *m, int i) { return &m->g->values[m->g->inputs[i]].t; }
int rp_model_output_count(const rp_model *m) { return m->g->n_outputs; }
const char *rp_model_output_name(const rp_model *m, int i) { return m->g->values[m->g->outputs[i]].name; }
const rp_tensor *rp_model_output_info(const rp_model *m, int i) { return &m->g->values[m->g->outputs[i]].t; }

int rp_model_node_count(const rp_model *m) { return m->g->n_nodes; }
const char *rp_model_node_name(const rp_model *m, int i) { return m->g->nodes[i].name; }
const char *rp_model_node_op(const rp_model *m, int i) { return m->g->nodes[i].op_type; }
const char *rp_model_node_domain(const rp_model *m, int i) { return m->g->nodes[i].domain; }
bool rp_model_node_folded(const rp_model *m, int i) { return m->g->nodes[i].folded; }
int rp_model_fused_gelu_count(const rp_model *m) { return m->n_fused; }

bool rp_model_node_supported(const rp_model *m, int i)
{
    const rp_node *n = &m->g->nodes[i];
    bool default_domain = n->domain[0] == 0 || strcmp(n->domain, "ai.onnx") == 0;
    return default_domain && rp_op_lookup(n->op_type, n->opset) != NULL;
}

rp_status rp_model_run(rp_model *m, const rp_tensor *input, rp_tensor *out, rp_error *err)
{
    memset(out, 0, sizeof *out);
    rp_status st = rp_model_prepare(m, err);
    if (st)
        return st;
    if (m->g->n_inputs != 1)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "%s: the model has %d inputs; relprop runs models with one input",
                       m->g->path, m->g->n_inputs);
    if (!m->g->plan_keep) {
        /* Only the outputs are read after a plain run: unless an
         * explanation's plan is in place, every other value shares. */
        bool *outputs_only = calloc((size_t)m->g->n_values + 1, sizeof *outputs_only);
        if (!outputs_only)
            return rp_fail(err, RP_ERR_NOMEM, "out of memory");
        st = rp_graph_plan_memory(m->g, outputs_only, true, err);
        free(outputs_only);
        if (st)
            return st;
    }
    st = rp_graph_forward(m->g, &input, 1, err);
    if (st)
        return st;
    const rp_tensor *y = &m->g->values[m->g->outputs[0]].t;
    st = rp_tensor_alloc(out, y->dtype, y->rank, y->dims, err);
    if (st)
        return st;
    if (y->count)
        memcpy(out->data, y->data, (size_t)y->count * rp_dtype_size(y->dtype));
    return RP_OK;
}

int rp_model_attention_count(const rp_model *m) { return m->n_attn; }

rp_status rp_model_attention(const rp_model *m, int i, rp_attention_info *info, rp_error *err)
{
    if (i < 0 || i >= m->n_attn)
        return rp_fail(err, RP_ERR_ARG, "attention layer %d does not exist (the model has %d)", i, m->n_attn);
    const rp_attention_layer *l = &m->attn[i];
    info->softmax_node = m->g->nodes[l->softmax_node].name;
    info->product_node = m->g->nodes[l->product_node].name;
    info->heads = l->heads;
    info->tokens = l->tokens;
    return RP_OK;
}

rp_status rp_model_token_layout(const rp_model *m, rp_token_layout *out, rp_error *err)
{
    memset(out, 0, sizeof *out);
    const rp_patch_embedding *p = &m->patches;
    if (p->conv_node < 0)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "%s: no Conv reads the image input, so no patch grid was found",
                       m->g->path);
    out->image_h = p->image_h;
    out->image_w = p->image_w;
    out->patch_h = p->patch_h;
    out->patch_w = p->patch_w;
    out->grid_h = p->grid_h;
    out->grid_w = p->grid_w;
    out->patch_node = m->g->nodes[p->conv_node].name;
    if (m->n_attn == 0)
        return RP_OK;
    rp_status st = rp_check_attention_layout(m->g, m->attn, m->n_attn, p, err);
    if (st)
        return st;
    int n = m->attn[0].tokens;
    out->tokens = n;
    out->prefix_tokens = n - p->grid_h * p->grid_w;
    float *r = calloc((size_t)n, sizeof *r);
    if (!r)
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    rp_find_readout(m->g, &m->attn[m->n_attn - 1], r, &out->readout);
    for (int i = 0; i < n && out->n_readout_rows < 16; i++)
        if (r[i] != 0) {
            out->readout_rows[out->n_readout_rows] = i;
            out->readout_weights[out->n_readout_rows++] = r[i];
        }
    free(r);
    return RP_OK;
}

const char *rp_model_metadata(const rp_model *m, const char *key)
{
    for (int i = 0; i < m->g->n_metadata; i++)
        if (strcmp(m->g->metadata_keys[i], key) == 0)
            return m->g->metadata_values[i];
    return NULL;
}
