/* The functions include/relprop/rule.h promises rule writers: accessors for
 * the opaque node and context, parameters, the node's own kernels with
 * substituted inputs, scratch, and small elementwise helpers. Built-in rules
 * may read the structs directly; plugins go through these. */
#include <cblas.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/blas.h"
#include "rules/rule.h"

/* ---- parameters ---- */

static const rp_rule_param_item *param_find(const rp_rule_params *p, const char *name)
{
    if (!p)
        return NULL;
    for (int i = 0; i < p->n && i < RP_RULE_MAX_PARAMS; i++)
        if (strcmp(p->items[i].name, name) == 0)
            return &p->items[i];
    return NULL;
}

double rp_rule_param(const rp_rule_params *p, const char *name, double dflt)
{
    const rp_rule_param_item *it = param_find(p, name);
    return it ? it->value : dflt;
}

bool rp_rule_param_given(const rp_rule_params *p, const char *name)
{
    return param_find(p, name) != NULL;
}

rp_status rp_rule_param_set(rp_rule_params *p, const char *name, double value, rp_error *err)
{
    rp_rule_param_item *it = (rp_rule_param_item *)param_find(p, name);
    if (it) {
        it->value = value;
        return RP_OK;
    }
    if (strlen(name) >= RP_RULE_PARAM_NAME_MAX)
        return rp_fail(err, RP_ERR_ARG, "parameter name '%s' is longer than %d characters", name,
                       RP_RULE_PARAM_NAME_MAX - 1);
    if (p->n >= RP_RULE_MAX_PARAMS)
        return rp_fail(err, RP_ERR_ARG, "more than %d rule parameters (at '%s')", RP_RULE_MAX_PARAMS, name);
    it = &p->items[p->n++];
    snprintf(it->name, sizeof it->name, "%s", name);
    it->value = value;
    return RP_OK;
}

char *rp_rule_params_format(const rp_rule_params *p, char *buf, size_t len)
{
    if (!len)
        return buf;
    buf[0] = 0;
    size_t used = 0;
    for (int i = 0; p && i < p->n && used < len; i++) {
        int w = snprintf(buf + used, len - used, "%s%s=%g", i ? " " : "", p->items[i].name, p->items[i].value);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    return buf;
}

bool rp_rule_conserves_always(const rp_rule_params *params)
{
    (void)params;
    return true;
}

/* ---- the node ---- */

const char *rp_rule_node_name(const rp_rule_node *n) { return n->node->name; }
const char *rp_rule_node_op(const rp_rule_node *n) { return n->node->op_type; }
int rp_rule_node_opset(const rp_rule_node *n) { return n->node->opset; }
const char *rp_rule_node_kind(const rp_rule_node *n) { return n->kind ? n->kind : "unknown"; }
int rp_rule_node_input_count(const rp_rule_node *n) { return n->node->n_in; }
int rp_rule_node_output_count(const rp_rule_node *n) { return n->node->n_out; }

const rp_tensor *rp_rule_node_input(const rp_rule_node *n, int i)
{
    if (i < 0 || i >= n->node->n_in || n->node->in[i] < 0)
        return NULL;
    return &n->graph->values[n->node->in[i]].t;
}

const rp_tensor *rp_rule_node_output(const rp_rule_node *n, int k)
{
    if (k < 0 || k >= n->node->n_out || n->node->out[k] < 0)
        return NULL;
    return &n->graph->values[n->node->out[k]].t;
}

bool rp_rule_node_input_is_constant(const rp_rule_node *n, int i)
{
    if (i < 0 || i >= n->node->n_in || n->node->in[i] < 0)
        return false;
    return n->graph->values[n->node->in[i]].kind == RP_VALUE_CONSTANT;
}

bool rp_rule_node_has_gradient(const rp_rule_node *n)
{
    return !n->region && n->node->op && n->node->op->backward;
}

int64_t rp_rule_node_attr_int(const rp_rule_node *n, const char *name, int64_t dflt)
{
    return rp_attr_int(n->node, name, dflt);
}

float rp_rule_node_attr_float(const rp_rule_node *n, const char *name, float dflt)
{
    return rp_attr_float(n->node, name, dflt);
}

const char *rp_rule_node_attr_string(const rp_rule_node *n, const char *name, const char *dflt)
{
    return rp_attr_string(n->node, name, dflt);
}

int rp_rule_node_attr_ints(const rp_rule_node *n, const char *name, int64_t *out, int cap)
{
    return rp_attr_ints(n->node, name, out, cap);
}

rp_status rp_rule_node_fail(const rp_rule_node *n, rp_error *err, rp_status code, const char *fmt, ...)
{
    char msg[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rp_fail(err, code, "node '%s' (%s): %s", n->node->name, n->node->op_type, msg);
}

/* ---- the context ---- */

const rp_rule_node *rp_rule_ctx_node(const rp_rule_ctx *c) { return c->view; }
const rp_rule_params *rp_rule_ctx_params(const rp_rule_ctx *c) { return c->params; }
void *rp_rule_ctx_state(const rp_rule_ctx *c) { return c->state; }

const rp_tensor *rp_rule_input(const rp_rule_ctx *c, int i)
{
    return i >= 0 && i < c->k->n_in ? c->k->in[i] : NULL;
}

const rp_tensor *rp_rule_output(const rp_rule_ctx *c, int k)
{
    return k >= 0 && k < c->k->n_out ? c->k->out[k] : NULL;
}

const rp_tensor *rp_rule_relevance_out(const rp_rule_ctx *c, int k)
{
    return k >= 0 && k < c->k->n_out ? c->rel_out[k] : NULL;
}

rp_tensor *rp_rule_relevance_in(const rp_rule_ctx *c, int i)
{
    return i >= 0 && i < c->k->n_in ? c->rel_in[i] : NULL;
}

const rp_tensor *rp_rule_output_gradient(const rp_rule_ctx *c, int k)
{
    if (!c->grad_out || k < 0 || k >= c->k->n_out || !c->grad_out[k] || !c->grad_out[k]->data)
        return NULL;
    return c->grad_out[k];
}

const rp_tensor *rp_rule_input_gradient(const rp_rule_ctx *c, int i)
{
    if (!c->grad_in || i < 0 || i >= c->k->n_in || !c->grad_in[i] || !c->grad_in[i]->data)
        return NULL;
    return c->grad_in[i];
}

rp_status rp_rule_fail(rp_rule_ctx *c, rp_status code, const char *fmt, ...)
{
    char msg[sizeof c->err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rp_fail(c->err, code, "node '%s' (%s): %s", c->node->name, c->node->op_type, msg);
}

/* ---- the node's kernels ---- */

static rp_status no_backward(rp_rule_ctx *c)
{
    const rp_node *n = c->node;
    if (c->view && c->view->region)
        return rp_fail(c->err, RP_ERR_UNSUPPORTED,
                       "node '%s' (%s) ends a decomposed region, which relprop treats as one unary op without a "
                       "gradient: this rule cannot apply to it",
                       n->name, n->op_type);
    return rp_fail(c->err, RP_ERR_UNSUPPORTED,
                   "node '%s' (%s, opset %d): its relevance rule needs the op's gradient, which relprop does not have",
                   n->name, n->op_type, n->opset);
}

rp_status rp_rule_vjp(rp_rule_ctx *c, rp_tensor *const *gout, rp_tensor *const *gin)
{
    if (!c->node->op || !c->node->op->backward || (c->view && c->view->region))
        return no_backward(c);
    return c->node->op->backward(c->k, gout, gin);
}

#define RP_RULE_MAX_IO 16

static rp_status with_inputs(rp_rule_ctx *c, rp_tensor *const *in_override, rp_tensor *const *out, rp_kctx *k,
                             rp_tensor **ins, rp_tensor **outs)
{
    *k = *c->k;
    if (k->n_in > RP_RULE_MAX_IO || k->n_out > RP_RULE_MAX_IO)
        return rp_fail(c->err, RP_ERR_UNSUPPORTED, "node '%s': too many inputs for a substituted evaluation",
                       c->node->name);
    for (int i = 0; i < k->n_in; i++)
        ins[i] = in_override && in_override[i] ? in_override[i] : c->k->in[i];
    for (int i = 0; i < k->n_out; i++)
        outs[i] = out && out[i] ? out[i] : c->k->out[i];
    k->in = ins;
    k->out = outs;
    return RP_OK;
}

rp_status rp_rule_forward_with(rp_rule_ctx *c, rp_tensor *const *in_override, rp_tensor *const *out)
{
    if (!c->node->op || (c->view && c->view->region))
        return rp_fail(c->err, RP_ERR_UNSUPPORTED,
                       "node '%s' (%s): a substituted forward needs the node's own kernel, which a decomposed "
                       "region does not have",
                       c->node->name, c->node->op_type);
    /* The node's own outputs hold values that the nodes below read. */
    for (int k = 0; k < c->k->n_out; k++)
        if (c->k->out[k] && (!out || !out[k]))
            return rp_fail(c->err, RP_ERR_ARG,
                           "node '%s' (%s): a substituted forward needs a buffer for output %d (the node's own "
                           "output must not be overwritten)",
                           c->node->name, c->node->op_type, k);
    rp_kctx k;
    rp_tensor *ins[RP_RULE_MAX_IO], *outs[RP_RULE_MAX_IO];
    rp_status st = with_inputs(c, in_override, out, &k, ins, outs);
    return st ? st : c->node->op->forward(&k);
}

rp_status rp_rule_vjp_with(rp_rule_ctx *c, rp_tensor *const *in_override, rp_tensor *const *out,
                           rp_tensor *const *gout, rp_tensor *const *gin)
{
    if (!c->node->op || !c->node->op->backward || (c->view && c->view->region))
        return no_backward(c);
    rp_kctx k;
    rp_tensor *ins[RP_RULE_MAX_IO], *outs[RP_RULE_MAX_IO];
    rp_status st = with_inputs(c, in_override, out, &k, ins, outs);
    return st ? st : c->node->op->backward(&k, gout, gin);
}

rp_tensor rp_rule_scratch(rp_rule_ctx *c, size_t *offset, const rp_tensor *like)
{
    rp_tensor t = {0};
    rp_tensor_set_shape(&t, RP_FLOAT, like->rank, like->dims);
    if (*offset + (size_t)t.count > c->scratch_floats) {
        t.data = NULL; /* the rule asked for more than its prepare declared: it reports */
        return t;
    }
    t.data = c->scratch + *offset;
    *offset += (size_t)t.count;
    return t;
}

/* ---- elementwise ---- */

void rp_rule_fill(rp_tensor *t, float v)
{
    float *d = t->data;
    for (int64_t e = 0; e < t->count; e++)
        d[e] = v;
}

void rp_rule_sdiv(rp_tensor *out, const rp_tensor *num, const rp_tensor *den)
{
    float *o = out->data;
    const float *a = num->data, *b = den->data;
    for (int64_t e = 0; e < out->count; e++)
        o[e] = (float)rp_sdiv(a[e], b[e]);
}

void rp_rule_stabilized_div(rp_tensor *out, const rp_tensor *num, const rp_tensor *den, double eps)
{
    float *o = out->data;
    const float *a = num->data, *b = den->data;
    for (int64_t e = 0; e < out->count; e++)
        o[e] = (float)rp_stabilized_div(a[e], b[e], eps);
}

void rp_rule_add_product(rp_tensor *dst, const rp_tensor *a, const rp_tensor *b, double coef)
{
    float *d = dst->data;
    const float *av = a->data, *bv = b ? b->data : NULL;
    for (int64_t e = 0; e < dst->count; e++)
        d[e] = (float)(d[e] + coef * (bv ? (double)av[e] * bv[e] : (double)av[e]));
}

double rp_rule_tensor_sum(const rp_tensor *t)
{
    const float *d = t->data;
    double s = 0;
    for (int64_t e = 0; e < t->count; e++)
        s += d[e];
    return s;
}

/* dst (shape d) += r (shape o) summed over the axes where d was broadcast to
 * o. Kept axes form the outer loop (visiting dst in order), reduced axes the
 * inner one, so each dst element is one double accumulation. */
static void add_reduced(float *dst, const rp_tensor *d, const float *r, const rp_tensor *o)
{
    int64_t dstride[RP_MAX_RANK], ostride[RP_MAX_RANK];
    rp_broadcast_strides(d, o, dstride);
    int64_t s = 1;
    for (int a = o->rank - 1; a >= 0; a--) {
        ostride[a] = s;
        s *= o->dims[a];
    }
    int keep[RP_MAX_RANK], red[RP_MAX_RANK], nk = 0, nr = 0;
    for (int a = 0; a < o->rank; a++) {
        if (o->dims[a] == 1)
            continue;
        if (dstride[a])
            keep[nk++] = a;
        else
            red[nr++] = a;
    }
    int64_t ki[RP_MAX_RANK] = {0};
    for (int64_t e = 0; e < d->count; e++) {
        int64_t base = 0;
        for (int q = 0; q < nk; q++)
            base += ki[q] * ostride[keep[q]];
        double acc = 0;
        int64_t ri[RP_MAX_RANK] = {0};
        for (;;) {
            int64_t off = base;
            for (int q = 0; q < nr; q++)
                off += ri[q] * ostride[red[q]];
            acc += r[off];
            int q = nr - 1;
            for (; q >= 0; q--) {
                if (++ri[q] < o->dims[red[q]])
                    break;
                ri[q] = 0;
            }
            if (q < 0)
                break;
        }
        dst[e] = (float)(dst[e] + acc);
        for (int q = nk - 1; q >= 0; q--) {
            if (++ki[q] < o->dims[keep[q]])
                break;
            ki[q] = 0;
        }
    }
}

/* Whether d broadcasts to o under numpy's rules. */
static bool broadcasts_to(const rp_tensor *d, const rp_tensor *o)
{
    if (d->rank > o->rank)
        return false;
    for (int a = 0; a < d->rank; a++) {
        int64_t dd = d->dims[a], od = o->dims[o->rank - d->rank + a];
        if (dd != od && dd != 1)
            return false;
    }
    return true;
}

rp_status rp_rule_add_reduced(rp_rule_ctx *c, rp_tensor *dst, const rp_tensor *src)
{
    if (dst->count == src->count) {
        /* Same element count: element for element in C order (also covers
         * equal shapes spelled with different ranks, e.g. [N] and [1,N]). */
        float *d = dst->data;
        const float *s = src->data;
        for (int64_t e = 0; e < src->count; e++)
            d[e] += s[e];
        return RP_OK;
    }
    if (!broadcasts_to(dst, src)) {
        char a[96], b[96];
        return rp_fail(c->err, RP_ERR_SHAPE, "node '%s' (%s): relevance of shape %s cannot be summed into %s",
                       c->node->name, c->node->op_type, rp_shape_str(src, a, sizeof a), rp_shape_str(dst, b, sizeof b));
    }
    add_reduced(dst->data, dst, src->data, src);
    return RP_OK;
}

void rp_rule_gemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *cm, int ldc)
{
    rp_sgemm(trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
             alpha, a, lda, b, ldb, beta, cm, ldc);
}
