#include "rules/linear.h"

#include <stdlib.h>
#include <string.h>

static bool is_const(const rp_graph *g, const rp_node *n, int i)
{
    return i < n->n_in && n->in[i] >= 0 && g->values[n->in[i]].kind == RP_VALUE_CONSTANT;
}

static bool is_act(const rp_graph *g, const rp_node *n, int i)
{
    return i < n->n_in && n->in[i] >= 0 && g->values[n->in[i]].kind != RP_VALUE_CONSTANT;
}

rp_status rp_linear_prepare(const rp_rule_node *rn, const char *rule, rp_linear *L, rp_error *err)
{
    const rp_graph *g = rn->graph;
    const rp_node *n = rn->node;
    const char *op = n->op_type;
    memset(L, 0, sizeof *L);
    L->bi = -1;
    bool conv = strcmp(op, "Conv") == 0, gemm = strcmp(op, "Gemm") == 0;
    bool two = strcmp(op, "MatMul") == 0 || (strcmp(op, "Einsum") == 0 && n->n_in == 2);
    if (rn->region || (!conv && !gemm && !two))
        return rp_fail(err, RP_ERR_UNSUPPORTED,
                       "node '%s' (%s): the %s rule applies to MatMul, Gemm, Conv and two-operand Einsum with a "
                       "constant weight",
                       n->name, op, rule);
    if (!n->op || !n->op->backward)
        return rp_fail(err, RP_ERR_UNSUPPORTED,
                       "node '%s' (%s, opset %d): the %s rule needs the op's gradient, which relprop does not have",
                       n->name, op, n->opset, rule);
    if (!conv && is_const(g, n, 0) && is_act(g, n, 1)) {
        L->xi = 1;
        L->wi = 0;
    } else {
        L->xi = 0;
        L->wi = 1;
    }
    if (!is_act(g, n, L->xi) || !is_const(g, n, L->wi))
        return rp_fail(err, RP_ERR_UNSUPPORTED,
                       "node '%s' (%s): the %s rule needs one constant weight and one activation operand", n->name,
                       op, rule);
    const rp_tensor *x = &g->values[n->in[L->xi]].t, *w = &g->values[n->in[L->wi]].t;
    if (x->dtype != RP_FLOAT || w->dtype != RP_FLOAT || !w->data || n->n_out != 1 || n->out[0] < 0 ||
        g->values[n->out[0]].t.dtype != RP_FLOAT)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "node '%s' (%s): the %s rule needs float32 operands", n->name, op,
                       rule);
    L->swap = gemm && rp_attr_float(n, "alpha", 1.0f) < 0;
    if ((conv || gemm) && n->n_in > 2 && n->in[2] >= 0) {
        const rp_tensor *b = &g->values[n->in[2]].t;
        L->bi = 2;
        rp_tensor_set_shape(&L->zero_bias, RP_FLOAT, b->rank, b->dims);
        L->zero_bias.data = calloc((size_t)(b->count ? b->count : 1), sizeof(float));
        if (!L->zero_bias.data)
            return rp_fail(err, RP_ERR_NOMEM, "node '%s' (%s): out of memory", n->name, op);
    }
    return RP_OK;
}

void rp_linear_release(rp_linear *L)
{
    free(L->zero_bias.data);
    L->zero_bias.data = NULL;
}

rp_status rp_linear_weight(const rp_linear *L, const rp_rule_node *rn, rp_tensor *dst,
                           float (*f)(float w, bool swap, double arg), double arg, rp_error *err)
{
    const rp_tensor *w = &rn->graph->values[rn->node->in[L->wi]].t;
    memset(dst, 0, sizeof *dst);
    rp_tensor_set_shape(dst, RP_FLOAT, w->rank, w->dims);
    dst->data = malloc(sizeof(float) * (size_t)(w->count ? w->count : 1));
    if (!dst->data)
        return rp_fail(err, RP_ERR_NOMEM, "node '%s' (%s): out of memory", rn->node->name, rn->node->op_type);
    const float *wv = w->data;
    float *d = dst->data;
    for (int64_t e = 0; e < w->count; e++)
        d[e] = f(wv[e], L->swap, arg);
    return RP_OK;
}

float rp_linear_positive_part(float w, bool swap, double arg)
{
    (void)arg;
    return swap ? (w < 0 ? w : 0.0f) : (w > 0 ? w : 0.0f);
}

float rp_linear_negative_part(float w, bool swap, double arg)
{
    (void)arg;
    return swap ? (w > 0 ? w : 0.0f) : (w < 0 ? w : 0.0f);
}

void rp_linear_overrides(const rp_linear *L, rp_tensor **ov, rp_tensor *xv, rp_tensor *wv)
{
    ov[0] = ov[1] = ov[2] = NULL;
    ov[L->xi] = xv;
    ov[L->wi] = wv;
    if (L->bi >= 0)
        ov[L->bi] = (rp_tensor *)&L->zero_bias;
}

size_t rp_linear_fixed_scratch(const rp_linear *L, const rp_rule_node *rn)
{
    /* ones (x-shaped), Z (output-shaped) */
    return (size_t)rp_rule_node_input(rn, L->xi)->count + (size_t)rp_rule_node_output(rn, 0)->count;
}

rp_status rp_linear_apply_fixed(rp_rule_ctx *c, const rp_linear *L, rp_tensor *v, const char *rule)
{
    if (!c->rel_out[0] || !c->rel_in[L->xi])
        return RP_OK;
    const rp_tensor *x = c->k->in[L->xi], *y = c->k->out[0];
    size_t off = 0;
    rp_tensor ones = rp_rule_scratch(c, &off, x), z = rp_rule_scratch(c, &off, y);
    if ((x->count && !ones.data) || (y->count && !z.data))
        return rp_rule_fail(c, RP_ERR_INTERNAL, "%s rule: scratch too small", rule);
    rp_rule_fill(&ones, 1.0f);
    rp_tensor *ov[3], *out[1] = {&z};
    rp_linear_overrides(L, ov, &ones, v);
    rp_status st = rp_rule_forward_with(c, ov, out);
    if (st)
        return st;
    rp_rule_sdiv(&z, c->rel_out[0], &z);
    rp_tensor *gout[1] = {&z}, *gin[3] = {NULL, NULL, NULL};
    /* The kernel's backward adds into gin: straight into R_x. */
    gin[L->xi] = c->rel_in[L->xi];
    return rp_rule_vjp_with(c, ov, NULL, gout, gin);
}
