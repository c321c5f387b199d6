/* A deliberately non-conserving rule that claims to conserve: the identity
 * rule that passes on only 90% of the relevance. The conservation report
 * must flag every node it runs at. Also a second rule reading gradients:
 * gradient x input (R_x = x * dy/dx, ignoring R), to check that rules
 * flagged RP_RULE_NEEDS_GRADIENT get them. */
#include <relprop/rule.h>

static rp_status leaky_apply(rp_rule_ctx *c)
{
    const rp_tensor *r = rp_rule_relevance_out(c, 0);
    rp_tensor *dst = rp_rule_relevance_in(c, 0);
    if (!r || !dst)
        return RP_OK;
    if (dst->count != r->count)
        return rp_rule_fail(c, RP_ERR_SHAPE, "leaky_identity needs input 0 and output 0 of one size");
    rp_rule_add_product(dst, r, NULL, 0.9);
    return RP_OK;
}

static const rp_rule leaky = {
    .name = "leaky_identity",
    .summary = "identity passing on 90% (a broken rule, for tests)",
    .apply = leaky_apply,
    .conserves = rp_rule_conserves_always,
};

static rp_status gxi_prepare(const rp_rule_node *n, const rp_rule_params *p, void **state, size_t *scratch_floats,
                             rp_error *err)
{
    (void)p, (void)state, (void)scratch_floats;
    if (rp_rule_node_input_count(n) < 1 || rp_rule_node_input_is_constant(n, 0))
        return rp_rule_node_fail(n, err, RP_ERR_UNSUPPORTED, "gradient_x_input needs an activation input 0");
    return RP_OK;
}

static rp_status gxi_apply(rp_rule_ctx *c)
{
    rp_tensor *dst = rp_rule_relevance_in(c, 0);
    const rp_tensor *g = rp_rule_input_gradient(c, 0), *x = rp_rule_input(c, 0);
    if (!dst)
        return RP_OK;
    if (!g)
        return rp_rule_fail(c, RP_ERR_INTERNAL, "gradient_x_input: no gradient at input 0");
    rp_rule_add_product(dst, x, g, 1.0);
    return RP_OK;
}

static const rp_rule gxi = {
    .name = "gradient_x_input",
    .summary = "x * dy/dx at input 0 (ignores R; for tests)",
    .flags = RP_RULE_NEEDS_GRADIENT,
    .prepare = gxi_prepare,
    .apply = gxi_apply,
};

RP_RULE_PLUGIN_EXPORT rp_status relprop_rule_plugin_register(rp_rule_registry *reg, rp_error *err)
{
    rp_status st = rp_rule_register(reg, &leaky, err);
    return st ? st : rp_rule_register(reg, &gxi, err);
}
