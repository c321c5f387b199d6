/* Where rule names resolve: the table of built-in rules (adding a rule = one
 * file in src/rules and one line here) and registries, which add the rules
 * of plugins — shared objects exporting relprop_rule_plugin_register — or
 * rules a program registers itself.
 *
 * A registry is reference counted because the rules it holds live in the
 * plugins' code: a model whose cached rule assignment uses them keeps the
 * registry (and so the plugins) alive until the assignment goes, whatever
 * order the caller frees things in. */
/* realpath is XSI, beyond the project's _POSIX_C_SOURCE. */
#define _XOPEN_SOURCE 700

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules/rule.h"

static const rp_rule *const builtin[] = {
    &rp_rule_identity, &rp_rule_route,   &rp_rule_alpha_beta, &rp_rule_zplus, &rp_rule_gamma,
    &rp_rule_epsilon,  &rp_rule_flat,    &rp_rule_wsquare,    &rp_rule_zb,    &rp_rule_sum,
    &rp_rule_product,  &rp_rule_uniform, &rp_rule_softmax,
};
#define N_BUILTIN ((int)(sizeof builtin / sizeof builtin[0]))

const rp_rule *rp_rule_lookup(const char *name)
{
    for (int i = 0; i < N_BUILTIN; i++)
        if (strcmp(builtin[i]->name, name) == 0)
            return builtin[i];
    return NULL;
}

typedef struct reg_rule {
    rp_rule rule; /* a copy; its strings below are owned */
    char *name, *summary, *params;
    int plugin;   /* index into plugins, -1 when the program registered it */
} reg_rule;

typedef struct reg_plugin {
    char *path; /* as resolved by realpath */
    void *handle;
} reg_plugin;

struct rp_rule_registry {
    int refs;
    unsigned generation;
    reg_rule **rules; /* one allocation per rule: assignments hold pointers to them */
    int n_rules, cap_rules;
    reg_plugin *plugins;
    int n_plugins, cap_plugins;
    /* While a plugin's registration function runs. */
    int loading; /* plugin index or -1 */
    bool abi_mismatch;
    char abi_msg[512];
};

rp_status rp_rule_registry_create(rp_rule_registry **out, rp_error *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    (*out)->refs = 1;
    (*out)->loading = -1;
    return RP_OK;
}

void rp_rule_registry_retain(rp_rule_registry *reg)
{
    if (reg)
        reg->refs++;
}

unsigned rp_rule_registry_generation(const rp_rule_registry *reg)
{
    return reg ? reg->generation : 0;
}

static void free_rule(reg_rule *r)
{
    if (!r)
        return;
    free(r->name);
    free(r->summary);
    free(r->params);
    free(r);
}

void rp_rule_registry_free(rp_rule_registry *reg)
{
    if (!reg || --reg->refs > 0)
        return;
    for (int i = 0; i < reg->n_rules; i++)
        free_rule(reg->rules[i]);
    free(reg->rules);
    /* Close plugins only after their rules are gone. */
    for (int i = reg->n_plugins - 1; i >= 0; i--) {
        if (reg->plugins[i].handle)
            dlclose(reg->plugins[i].handle);
        free(reg->plugins[i].path);
    }
    free(reg->plugins);
    free(reg);
}

int rp_rule_registry_count(const rp_rule_registry *reg)
{
    return N_BUILTIN + (reg ? reg->n_rules : 0);
}

const rp_rule *rp_rule_registry_get(const rp_rule_registry *reg, int i)
{
    if (i < 0)
        return NULL;
    if (i < N_BUILTIN)
        return builtin[i];
    i -= N_BUILTIN;
    return reg && i < reg->n_rules ? &reg->rules[i]->rule : NULL;
}

const char *rp_rule_registry_origin(const rp_rule_registry *reg, int i)
{
    if (i < N_BUILTIN || !reg || i - N_BUILTIN >= reg->n_rules)
        return NULL;
    const reg_rule *r = reg->rules[i - N_BUILTIN];
    return r->plugin >= 0 ? reg->plugins[r->plugin].path : "(registered by the program)";
}

const rp_rule *rp_rule_registry_find(const rp_rule_registry *reg, const char *name)
{
    const rp_rule *r = rp_rule_lookup(name);
    if (r || !reg)
        return r;
    for (int i = 0; i < reg->n_rules; i++)
        if (strcmp(reg->rules[i]->name, name) == 0)
            return &reg->rules[i]->rule;
    return NULL;
}

static const char *who(const rp_rule_registry *reg)
{
    return reg->loading >= 0 ? reg->plugins[reg->loading].path : "the program";
}

static bool valid_name(const char *s)
{
    if (!s || !*s || strlen(s) > 63)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '.' && *s != '-')
            return false;
    return true;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

rp_status rp_rule_register_abi(rp_rule_registry *reg, int abi_version, size_t rule_size, const rp_rule *rule,
                               rp_error *err)
{
    if (!reg)
        return rp_fail(err, RP_ERR_ARG, "rp_rule_register: no registry");
    /* The version check comes before anything reads *rule: its layout is
     * only known to match when the versions do. */
    if (abi_version != RP_RULE_ABI_VERSION || rule_size != sizeof(rp_rule)) {
        reg->abi_mismatch = true;
        snprintf(reg->abi_msg, sizeof reg->abi_msg,
                 "%s was built for relprop rule ABI %d (rp_rule of %zu bytes); this relprop has ABI %d (%zu bytes): "
                 "rebuild it against this relprop's include/relprop/rule.h",
                 who(reg), abi_version, rule_size, RP_RULE_ABI_VERSION, sizeof(rp_rule));
        return rp_fail(err, RP_ERR_UNSUPPORTED, "%s", reg->abi_msg);
    }
    if (!rule || !valid_name(rule->name))
        return rp_fail(err, RP_ERR_ARG, "%s: a rule name must be 1-63 characters of A-Z a-z 0-9 _ . - (got '%s')",
                       who(reg), rule && rule->name ? rule->name : "(null)");
    if (!rule->apply)
        return rp_fail(err, RP_ERR_ARG, "%s: rule '%s' has no apply function", who(reg), rule->name);
    if (rp_rule_registry_find(reg, rule->name))
        return rp_fail(err, RP_ERR_ARG, "%s: rule '%s' is already registered (%s)", who(reg), rule->name,
                       rp_rule_lookup(rule->name) ? "a built-in rule" : "by an earlier plugin");
    if (rule->params) {
        /* Parameter names must fit rp_rule_params. */
        const char *p = rule->params;
        while (*p) {
            size_t n = strcspn(p, " ");
            if (n >= RP_RULE_PARAM_NAME_MAX)
                return rp_fail(err, RP_ERR_ARG, "%s: rule '%s': parameter name '%.*s' is too long", who(reg),
                               rule->name, (int)n, p);
            p += n;
            p += strspn(p, " ");
        }
    }
    if (reg->n_rules == reg->cap_rules) {
        int cap = reg->cap_rules ? 2 * reg->cap_rules : 8;
        reg_rule **grown = realloc(reg->rules, sizeof *grown * (size_t)cap);
        if (!grown)
            return rp_fail(err, RP_ERR_NOMEM, "out of memory");
        reg->rules = grown;
        reg->cap_rules = cap;
    }
    reg_rule *r = calloc(1, sizeof *r);
    if (!r)
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    r->rule = *rule;
    r->name = strdup(rule->name);
    r->summary = dup_or_null(rule->summary ? rule->summary : "");
    r->params = dup_or_null(rule->params);
    if (!r->name || !r->summary || (rule->params && !r->params)) {
        free_rule(r);
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    }
    r->rule.name = r->name;
    r->rule.summary = r->summary;
    r->rule.params = r->params;
    r->plugin = reg->loading;
    reg->rules[reg->n_rules++] = r;
    reg->generation++;
    return RP_OK;
}

rp_status rp_rule_registry_load_plugin(rp_rule_registry *reg, const char *path, rp_error *err)
{
    if (!reg || !path)
        return rp_fail(err, RP_ERR_ARG, "load plugin: no registry or no path");
    char real[PATH_MAX];
    if (!realpath(path, real))
        return rp_fail(err, RP_ERR_IO, "rule plugin '%s': %s", path, strerror(errno));
    for (int i = 0; i < reg->n_plugins; i++)
        if (strcmp(reg->plugins[i].path, real) == 0)
            return RP_OK;
    if (reg->n_plugins == reg->cap_plugins) {
        int cap = reg->cap_plugins ? 2 * reg->cap_plugins : 4;
        reg_plugin *grown = realloc(reg->plugins, sizeof *grown * (size_t)cap);
        if (!grown)
            return rp_fail(err, RP_ERR_NOMEM, "out of memory");
        reg->plugins = grown;
        reg->cap_plugins = cap;
    }
    dlerror();
    /* RTLD_NOW: a plugin with unresolved symbols fails here, with the
     * loader's message, rather than in the middle of a run. */
    void *h = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        return rp_fail(err, RP_ERR_FORMAT, "rule plugin '%s' cannot be loaded: %s", path, why ? why : "unknown");
    }
    rp_rule_plugin_fn fn;
    void *sym = dlsym(h, RP_RULE_PLUGIN_SYMBOL);
    /* POSIX: a data pointer converted to a function pointer (dlsym's contract). */
    memcpy(&fn, &sym, sizeof fn);
    if (!sym) {
        dlclose(h);
        return rp_fail(err, RP_ERR_FORMAT,
                       "rule plugin '%s' does not export %s(rp_rule_registry *, rp_error *): is it a relprop rule "
                       "plugin? (see include/relprop/rule.h)",
                       path, RP_RULE_PLUGIN_SYMBOL);
    }
    char *kept = strdup(real);
    if (!kept) {
        dlclose(h);
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    }
    int idx = reg->n_plugins++;
    reg->plugins[idx] = (reg_plugin){.path = kept, .handle = h};
    int before = reg->n_rules;
    reg->loading = idx;
    reg->abi_mismatch = false;
    rp_status st = fn(reg, err);
    reg->loading = -1;
    if (reg->abi_mismatch)
        st = rp_fail(err, RP_ERR_UNSUPPORTED, "rule plugin %s", reg->abi_msg);
    else if (st)
        rp_error_prefix(err, "rule plugin '%s'", path);
    else if (reg->n_rules == before)
        st = rp_fail(err, RP_ERR_FORMAT, "rule plugin '%s' registered no rules", path);
    if (st) {
        /* Leave the registry as it was. */
        while (reg->n_rules > before)
            free_rule(reg->rules[--reg->n_rules]);
        reg->n_plugins--;
        free(kept);
        dlclose(h);
        return st;
    }
    reg->generation++;
    return RP_OK;
}
