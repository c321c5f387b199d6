/* Normalised sum rule for z = u + v or z = u - v (docs/method.md §4.5, "Sum of two
 * activations"): skip connections and the position-embedding Add. Either
 * operand may be a constant and either may be broadcast.
 *
 *     S  = sdiv(R, z)
 *     a  = u * vjp_u(S),  b = v * vjp_v(S)      (vjp sums over broadcast axes;
 *                                                for Sub, vjp_v(S) = -S)
 *     sa = sum(a), sb = sum(b), T = sum(R)        (in double)
 *     fa = sdiv(|sa|, |sa| + |sb|) * T,  fb = sdiv(|sb|, |sa| + |sb|) * T
 *     R_u += a * sdiv(fa, sa),  R_v += b * sdiv(fb, sb)
 *
 * A constant operand's share still counts in the normalisation, but the
 * relevance sent to it is dropped (its rel_in is NULL). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "rules/rule.h"

static rp_status sum_prepare(const rp_rule_node *rn, const rp_rule_params *p, void **state,
                             size_t *scratch_floats, rp_error *err)
{
    const rp_graph *g = rn->graph;
    const rp_node *n = rn->node;
    *state = NULL;
    *scratch_floats = 0;
    if (rp_op_role_of(n->op) != RP_ROLE_SUM)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "node '%s' (%s): the sum rule applies to sums (Add, Sub, Sum)",
                       n->name, n->op_type);
    if (n->n_in != 2 || n->in[0] < 0 || n->in[1] < 0 || n->n_out < 1 || n->out[0] < 0)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "node '%s' (%s): the sum rule needs two operands", n->name,
                       n->op_type);
    if (!n->op || !n->op->backward)
        return rp_fail(err, RP_ERR_UNSUPPORTED,
                       "node '%s' (%s, opset %d): the sum rule needs the op's gradient, which relprop does not have",
                       n->name, n->op_type, n->opset);
    const rp_tensor *u = &g->values[n->in[0]].t, *v = &g->values[n->in[1]].t, *y = &g->values[n->out[0]].t;
    if (u->dtype != RP_FLOAT || v->dtype != RP_FLOAT || y->dtype != RP_FLOAT)
        return rp_fail(err, RP_ERR_UNSUPPORTED, "node '%s' (%s): the sum rule needs float32 operands", n->name,
                       n->op_type);
    *scratch_floats = (size_t)y->count + (size_t)u->count + (size_t)v->count;
    return RP_OK;
}

/* The rows of a batch (rp_model_set_batch) are separate explanations: the
 * shares are normalised per row. Each operand is either z-shaped or the same
 * for every row (broadcast over the batch only, e.g. a position embedding);
 * the arithmetic is the single-row one's, row by row, so a batch gives the
 * same bits as one input at a time. */
static rp_status sum_apply_batched(rp_rule_ctx *c, int batch)
{
    const rp_tensor *r = c->rel_out[0], *z = c->k->out[0];
    const rp_tensor *in[2] = {c->k->in[0], c->k->in[1]};
    const int64_t row = z->count / batch;
    for (int i = 0; i < 2; i++)
        if (in[i]->count != z->count && in[i]->count != row)
            return rp_fail(c->err, RP_ERR_UNSUPPORTED,
                           "node '%s' (%s): with a batch, the sum rule needs operands shaped like the output or "
                           "broadcast over the batch only", c->node->name, c->node->op_type);
    bool sub = c->node->op->flags & RP_OPF_SUBTRACTS;
    for (int b = 0; b < batch; b++) {
        const float *rv = (const float *)r->data + b * row, *zv = (const float *)z->data + b * row;
        const float *x[2];
        for (int i = 0; i < 2; i++)
            x[i] = (const float *)in[i]->data + (in[i]->count == z->count ? b * row : 0);
        double total = 0, sums[2] = {0, 0};
        for (int64_t e = 0; e < row; e++) {
            float sv = (float)rp_sdiv(rv[e], zv[e]);
            total += rv[e];
            sums[0] += (float)(x[0][e] * sv);
            sums[1] += (float)(x[1][e] * (sub ? -sv : sv));
        }
        double den = fabs(sums[0]) + fabs(sums[1]);
        for (int i = 0; i < 2; i++) {
            if (!c->rel_in[i])
                continue;
            if (c->rel_in[i]->count != z->count)
                return rp_fail(c->err, RP_ERR_UNSUPPORTED,
                               "node '%s' (%s): with a batch, the sum rule cannot send relevance to an operand "
                               "shared by all rows", c->node->name, c->node->op_type);
            double scale = rp_sdiv(rp_sdiv(fabs(sums[i]), den) * total, sums[i]);
            float *dst = (float *)c->rel_in[i]->data + b * row;
            for (int64_t e = 0; e < row; e++) {
                float sv = (float)rp_sdiv(rv[e], zv[e]);
                float a = (float)(x[i][e] * (i == 1 && sub ? -sv : sv));
                dst[e] = (float)(dst[e] + a * scale);
            }
        }
    }
    return RP_OK;
}

static rp_status sum_apply(rp_rule_ctx *c)
{
    const rp_tensor *r = c->rel_out[0];
    if (!r || (!c->rel_in[0] && !c->rel_in[1]))
        return RP_OK;
    int batch = c->graph ? rp_graph_batch(c->graph) : 1;
    if (batch > 1 && c->k->out[0]->rank >= 1 && c->k->out[0]->dims[0] == batch)
        return sum_apply_batched(c, batch);
    rp_kctx *k = c->k;
    const rp_tensor *z = k->out[0];
    size_t off = 0;
    rp_tensor s = rp_rule_scratch(c, &off, z);
    rp_tensor ab[2] = {rp_rule_scratch(c, &off, k->in[0]), rp_rule_scratch(c, &off, k->in[1])};
    if ((!s.data && s.count) || (!ab[0].data && ab[0].count) || (!ab[1].data && ab[1].count))
        return rp_fail(c->err, RP_ERR_INTERNAL, "node '%s' (%s): sum rule: scratch too small", c->node->name,
                       c->node->op_type);
    const float *rv = r->data, *zv = z->data;
    float *sv = s.data;
    double total = 0;
    for (int64_t e = 0; e < z->count; e++) {
        sv[e] = (float)rp_sdiv(rv[e], zv[e]);
        total += rv[e];
    }
    memset(ab[0].data, 0, sizeof(float) * (size_t)ab[0].count);
    memset(ab[1].data, 0, sizeof(float) * (size_t)ab[1].count);
    rp_tensor *gout[1] = {&s}, *gin[2] = {&ab[0], &ab[1]};
    rp_status st = rp_rule_vjp(c, gout, gin);
    if (st)
        return st;
    double sums[2];
    for (int i = 0; i < 2; i++) {
        const float *x = k->in[i]->data;
        float *a = ab[i].data;
        double acc = 0;
        for (int64_t e = 0; e < ab[i].count; e++) {
            a[e] = x[e] * a[e];
            acc += a[e];
        }
        sums[i] = acc;
    }
    double den = fabs(sums[0]) + fabs(sums[1]);
    for (int i = 0; i < 2; i++) {
        if (!c->rel_in[i])
            continue;
        double f = rp_sdiv(fabs(sums[i]), den) * total;
        double scale = rp_sdiv(f, sums[i]);
        const float *a = ab[i].data;
        float *dst = c->rel_in[i]->data;
        for (int64_t e = 0; e < ab[i].count; e++)
            dst[e] = (float)(dst[e] + a[e] * scale);
    }
    return RP_OK;
}

const rp_rule rp_rule_sum = {
    .name = "sum",
    .summary = "Add/Sub: x * vjp(sdiv(R, z)) per operand, rescaled to shares proportional to |sum| (conserving)",
    .flags = RP_RULE_READS_DECLARED | RP_RULE_READS_INPUTS | RP_RULE_READS_OUTPUTS | RP_RULE_READS_VJP,
    .prepare = sum_prepare,
    .apply = sum_apply,
    .free_state = NULL,
    .conserves = rp_rule_conserves_always,
};
