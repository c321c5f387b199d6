/* A plugin whose second rule takes a built-in name: loading fails and the
 * first rule is rolled back with it. */
#include <relprop/rule.h>

static rp_status nothing(rp_rule_ctx *c)
{
    (void)c;
    return RP_OK;
}

static const rp_rule fine = {.name = "clash_fine", .apply = nothing};
static const rp_rule taken = {.name = "epsilon", .apply = nothing};

RP_RULE_PLUGIN_EXPORT rp_status relprop_rule_plugin_register(rp_rule_registry *reg, rp_error *err)
{
    rp_status st = rp_rule_register(reg, &fine, err);
    return st ? st : rp_rule_register(reg, &taken, err);
}
