/* A shared object that is not a relprop rule plugin: no registration function. */
#include <relprop/rule.h>

RP_RULE_PLUGIN_EXPORT int relprop_rule_plugin_registr(void)
{
    return 0;
}
