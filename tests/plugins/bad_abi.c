/* A plugin built for another rule ABI (as if against a newer relprop's
 * headers): relprop must refuse it, saying so, before reading its rule. */
#include <relprop/rule.h>

static rp_status nothing(rp_rule_ctx *c)
{
    (void)c;
    return RP_OK;
}

static const rp_rule rule = {.name = "from_the_future", .apply = nothing};

RP_RULE_PLUGIN_EXPORT rp_status relprop_rule_plugin_register(rp_rule_registry *reg, rp_error *err)
{
    /* Ignores the refusal: relprop must still reject the plugin. */
    rp_rule_register_abi(reg, RP_RULE_ABI_VERSION + 41, sizeof(rp_rule) + 16, &rule, err);
    return RP_OK;
}
