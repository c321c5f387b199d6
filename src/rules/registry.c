/* The table of built-in rules: adding a rule = one file and one line here. */
#include <string.h>

#include "rules/rule.h"

static const rp_rule *const builtin[] = {
    &rp_rule_identity, &rp_rule_route, &rp_rule_alpha_beta, &rp_rule_zb, &rp_rule_sum, &rp_rule_product,
};

const rp_rule *rp_rule_lookup(const char *name)
{
    for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++)
        if (strcmp(builtin[i]->name, name) == 0)
            return builtin[i];
    return NULL;
}

static rp_status no_backward(rp_rule_ctx *c)
{
    const rp_node *n = c->node;
    return rp_fail(c->err, RP_ERR_UNSUPPORTED,
                   "node '%s' (%s, opset %d): its relevance rule needs the op's gradient, which relprop does not have",
                   n->name, n->op_type, n->opset);
}

rp_status rp_rule_vjp(rp_rule_ctx *c, rp_tensor *const *gout, rp_tensor *const *gin)
{
    if (!c->node->op || !c->node->op->backward)
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
    rp_kctx k;
    rp_tensor *ins[RP_RULE_MAX_IO], *outs[RP_RULE_MAX_IO];
    rp_status st = with_inputs(c, in_override, out, &k, ins, outs);
    return st ? st : c->node->op->forward(&k);
}

rp_status rp_rule_vjp_with(rp_rule_ctx *c, rp_tensor *const *in_override, rp_tensor *const *out,
                           rp_tensor *const *gout, rp_tensor *const *gin)
{
    if (!c->node->op || !c->node->op->backward)
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
        t.data = NULL; /* the engine checks scratch sizes before any run; this is a rule bug */
        return t;
    }
    t.data = c->scratch + *offset;
    *offset += (size_t)t.count;
    return t;
}
