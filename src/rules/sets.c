/* Built-in rule sets and the JSON rule-set file. Adding a set = one table
 * and one row in `sets`. */
#include "rules/sets.h"

#include "relprop/relprop.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct set_row {
    int kind;           /* -1: any */
    const char *op;     /* glob or NULL */
    const char *rule;
    const char *param1; /* up to two parameters */
    double value1;
    const char *param2;
    double value2;
} set_row;

#define END {-1, NULL, NULL, NULL, 0, NULL, 0}

/* docs/method.md §3.4: what the authors' implementation does. */
static const set_row paper[] = {
    {RP_KIND_FIRST_CONV, NULL, "zb", NULL, 0, NULL, 0},
    {RP_KIND_LINEAR, NULL, "alpha_beta", NULL, 0, NULL, 0},
    {RP_KIND_BIAS, NULL, "identity", NULL, 0, NULL, 0},
    {RP_KIND_PRODUCT, NULL, "product", NULL, 0, NULL, 0},
    {RP_KIND_SUM, NULL, "sum", NULL, 0, NULL, 0},
    {RP_KIND_REGION, NULL, "identity", NULL, 0, NULL, 0},
    {RP_KIND_DATA, NULL, "route", NULL, 0, NULL, 0},
    {RP_KIND_UNARY, NULL, "identity", NULL, 0, NULL, 0},
    END,
};

/* Achtibat et al., ICML 2024: epsilon for linear maps — the bias Add too, so
 * that a MatMul + bias pair divides by the biased output as LXT's
 * linear_epsilon does — and for sums of activations; the uniform rule for
 * products; the softmax rule; identity for norms and activations. */
static const set_row attnlrp[] = {
    {RP_KIND_FIRST_CONV, NULL, "epsilon", NULL, 0, NULL, 0},
    {RP_KIND_LINEAR, NULL, "epsilon", NULL, 0, NULL, 0},
    {RP_KIND_BIAS, NULL, "epsilon", NULL, 0, NULL, 0},
    {RP_KIND_PRODUCT, NULL, "uniform", NULL, 0, NULL, 0},
    {RP_KIND_SUM, NULL, "epsilon", NULL, 0, NULL, 0},
    {RP_KIND_REGION, NULL, "identity", NULL, 0, NULL, 0},
    {RP_KIND_DATA, NULL, "route", NULL, 0, NULL, 0},
    {RP_KIND_UNARY, NULL, "identity", NULL, 0, NULL, 0},
    {RP_KIND_UNARY, "Softmax", "softmax", NULL, 0, NULL, 0},
    {RP_KIND_REGION, "Softmax", "softmax", NULL, 0, NULL, 0}, /* scale * x -> Softmax */
    END,
};

/* Plain LRP-epsilon wherever there is a Jacobian, the uniform rule for
 * products (epsilon there would count the relevance twice). */
static const set_row epsilon[] = {
    {RP_KIND_FIRST_CONV, NULL, "epsilon", NULL, 0, NULL, 0},
    {RP_KIND_LINEAR, NULL, "epsilon", NULL, 0, NULL, 0},
    {RP_KIND_BIAS, NULL, "epsilon", NULL, 0, NULL, 0},
    {RP_KIND_PRODUCT, NULL, "uniform", NULL, 0, NULL, 0},
    {RP_KIND_SUM, NULL, "epsilon", NULL, 0, NULL, 0},
    {RP_KIND_REGION, NULL, "identity", NULL, 0, NULL, 0},
    {RP_KIND_DATA, NULL, "route", NULL, 0, NULL, 0},
    {RP_KIND_UNARY, NULL, "identity", NULL, 0, NULL, 0},
    END,
};

/* The paper's set with another rule for the linear maps. */
#define PAPER_WITH_LINEAR(rule, p1, v1, p2, v2)                  \
    {RP_KIND_FIRST_CONV, NULL, "zb", NULL, 0, NULL, 0},          \
    {RP_KIND_LINEAR, NULL, rule, p1, v1, p2, v2},                \
    {RP_KIND_BIAS, NULL, "identity", NULL, 0, NULL, 0},          \
    {RP_KIND_PRODUCT, NULL, "product", NULL, 0, NULL, 0},        \
    {RP_KIND_SUM, NULL, "sum", NULL, 0, NULL, 0},                \
    {RP_KIND_REGION, NULL, "identity", NULL, 0, NULL, 0},        \
    {RP_KIND_DATA, NULL, "route", NULL, 0, NULL, 0},             \
    {RP_KIND_UNARY, NULL, "identity", NULL, 0, NULL, 0}

static const set_row zplus[] = {PAPER_WITH_LINEAR("zplus", NULL, 0, NULL, 0), END};
static const set_row gamma_set[] = {PAPER_WITH_LINEAR("gamma", "gamma", 0.25, NULL, 0), END};
static const set_row alpha2beta1[] = {PAPER_WITH_LINEAR("alpha_beta", "alpha", 2.0, "beta", 1.0), END};

static const struct {
    const char *name, *summary;
    const set_row *rows;
} sets[] = {
    {"paper", "Chefer et al. 2021 as their code does it: z^B pixels, alpha1-beta0 linear, halved products, "
              "normalised sums",
     paper},
    {"attnlrp", "Achtibat et al. 2024: epsilon linear maps and sums, uniform products, softmax rule", attnlrp},
    {"epsilon", "LRP-epsilon everywhere, uniform products, identity through softmax and norms", epsilon},
    {"zplus", "paper, with z+ for the linear maps", zplus},
    {"alpha2beta1", "paper, with alpha 2 beta 1 for the linear maps", alpha2beta1},
    {"gamma", "paper, with gamma 0.25 for the linear maps", gamma_set},
};
#define N_SETS ((int)(sizeof sets / sizeof sets[0]))

int rp_rule_set_count(void) { return N_SETS; }
const char *rp_rule_set_name(int i) { return i >= 0 && i < N_SETS ? sets[i].name : NULL; }
const char *rp_rule_set_summary(int i) { return i >= 0 && i < N_SETS ? sets[i].summary : NULL; }

static const char *const kind_names[] = {"none", "first_conv", "linear", "bias", "product", "sum",
                                         "region", "in_region", "data", "unary", "unknown"};

int rp_node_kind_parse(const char *name)
{
    if (strcmp(name, "norm") == 0)
        return RP_KIND_REGION;
    for (int k = 0; k < (int)(sizeof kind_names / sizeof kind_names[0]); k++)
        if (strcmp(kind_names[k], name) == 0 && k != RP_KIND_NONE && k != RP_KIND_IN_REGION)
            return k;
    return -1;
}

void rp_rule_set_free(rp_rule_set *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++) {
        free(s->e[i].op);
        free(s->e[i].node);
        free(s->e[i].rule);
    }
    free(s->e);
    free(s->name);
    free(s->base);
    memset(s, 0, sizeof *s);
}

static char *dup_opt(const char *s, bool *oom)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *oom = true;
    return d;
}

static rp_status push(rp_rule_set *s, int *cap, rp_rule_entry **out, rp_error *err)
{
    if (s->n == *cap) {
        int c = *cap ? 2 * *cap : 16;
        rp_rule_entry *g = realloc(s->e, sizeof *g * (size_t)c);
        if (!g)
            return rp_fail(err, RP_ERR_NOMEM, "out of memory");
        s->e = g;
        *cap = c;
    }
    *out = &s->e[s->n++];
    memset(*out, 0, sizeof **out);
    return RP_OK;
}

/* Append the rows of built-in set `name`; *found false if there is none. */
static rp_status add_builtin(rp_rule_set *s, int *cap, const char *name, bool *found, rp_error *err)
{
    *found = false;
    for (int i = 0; i < N_SETS; i++) {
        if (strcmp(sets[i].name, name) != 0)
            continue;
        *found = true;
        for (const set_row *r = sets[i].rows; r->rule; r++) {
            rp_rule_entry *e = NULL;
            rp_status st;
            if ((st = push(s, cap, &e, err)))
                return st;
            bool oom = false;
            e->kind = r->kind;
            e->op = dup_opt(r->op, &oom);
            e->rule = dup_opt(r->rule, &oom);
            if (oom)
                return rp_fail(err, RP_ERR_NOMEM, "out of memory");
            if ((r->param1 && (st = rp_rule_param_set(&e->params, r->param1, r->value1, err))) ||
                (r->param2 && (st = rp_rule_param_set(&e->params, r->param2, r->value2, err))))
                return st;
        }
        return RP_OK;
    }
    return RP_OK;
}

bool rp_rule_set_is_file(const char *spec)
{
    for (int i = 0; i < N_SETS; i++)
        if (strcmp(sets[i].name, spec) == 0)
            return false;
    size_t n = strlen(spec);
    return strchr(spec, '/') || (n > 5 && strcmp(spec + n - 5, ".json") == 0);
}

static void known_sets(char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < N_SETS && used < len; i++) {
        int w = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", sets[i].name);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

static int line_of(const char *text, const char *at)
{
    int line = 1;
    for (const char *p = text; p < at && *p; p++)
        line += *p == '\n';
    return line;
}

static rp_status parse_entry(const char *path, int index, const cJSON *j, rp_rule_entry *e, rp_error *err)
{
    if (!cJSON_IsObject(j))
        return rp_fail(err, RP_ERR_FORMAT, "rule set file '%s': entry %d is not an object", path, index);
    e->kind = -1;
    e->index = index;
    bool oom = false;
    for (const cJSON *f = j->child; f; f = f->next) {
        const char *key = f->string;
        if (strcmp(key, "params") == 0) {
            if (!cJSON_IsObject(f))
                return rp_fail(err, RP_ERR_FORMAT, "rule set file '%s': entry %d: \"params\" must be an object",
                               path, index);
            for (const cJSON *p = f->child; p; p = p->next) {
                if (!cJSON_IsNumber(p))
                    return rp_fail(err, RP_ERR_FORMAT,
                                   "rule set file '%s': entry %d: parameter \"%s\" must be a number", path, index,
                                   p->string);
                rp_status st = rp_rule_param_set(&e->params, p->string, p->valuedouble, err);
                if (st)
                    return rp_error_prefix(err, "rule set file '%s': entry %d", path, index);
            }
            continue;
        }
        bool known = strcmp(key, "kind") == 0 || strcmp(key, "op") == 0 || strcmp(key, "node") == 0 ||
                     strcmp(key, "rule") == 0;
        if (!known)
            return rp_fail(err, RP_ERR_FORMAT,
                           "rule set file '%s': entry %d: unknown key \"%s\" (expected kind, op, node, rule, params)",
                           path, index, key);
        if (!cJSON_IsString(f))
            return rp_fail(err, RP_ERR_FORMAT, "rule set file '%s': entry %d: \"%s\" must be a string", path, index,
                           key);
        const char *v = f->valuestring;
        if (strcmp(key, "kind") == 0) {
            e->kind = rp_node_kind_parse(v);
            if (e->kind < 0)
                return rp_fail(err, RP_ERR_FORMAT,
                               "rule set file '%s': entry %d: unknown kind \"%s\" (known: first_conv, linear, bias, "
                               "product, sum, region (or norm), data, unary, unknown)",
                               path, index, v);
        } else if (strcmp(key, "op") == 0) {
            free(e->op);
            e->op = dup_opt(v, &oom);
        } else if (strcmp(key, "node") == 0) {
            free(e->node);
            e->node = dup_opt(v, &oom);
        } else {
            free(e->rule);
            e->rule = dup_opt(v, &oom);
        }
    }
    if (oom)
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    if (!e->rule)
        return rp_fail(err, RP_ERR_FORMAT, "rule set file '%s': entry %d has no \"rule\"", path, index);
    return RP_OK;
}

static rp_status load_file(const char *path, rp_rule_set *s, int *cap, rp_error *err)
{
    char *text = NULL;
    size_t len = 0;
    /* A regular file only, never blocking on a FIFO or reading a device. */
    rp_status st = rp_file_read_text(path, "rule set file", (int64_t)64 << 20, &text, &len, err);
    if (st)
        return st;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!root) {
        st = rp_fail(err, RP_ERR_FORMAT, "rule set file '%s': not valid JSON (line %d)", path,
                     end ? line_of(text, end) : 0);
        free(text);
        return st;
    }
    free(text);
    const cJSON *entries = root, *base = NULL;
    if (cJSON_IsObject(root)) {
        for (const cJSON *f = root->child; f; f = f->next)
            if (strcmp(f->string, "base") != 0 && strcmp(f->string, "rules") != 0 && strcmp(f->string, "name") != 0 &&
                strcmp(f->string, "comment") != 0) {
                st = rp_fail(err, RP_ERR_FORMAT,
                             "rule set file '%s': unknown key \"%s\" (expected base, rules, name, comment)", path,
                             f->string);
                goto done;
            }
        base = cJSON_GetObjectItemCaseSensitive(root, "base");
        entries = cJSON_GetObjectItemCaseSensitive(root, "rules");
        if (!entries) {
            st = rp_fail(err, RP_ERR_FORMAT, "rule set file '%s': no \"rules\" array", path);
            goto done;
        }
    }
    if (!cJSON_IsArray(entries)) {
        st = rp_fail(err, RP_ERR_FORMAT, "rule set file '%s': \"rules\" must be an array of entries", path);
        goto done;
    }
    const char *base_name = "paper";
    if (base) {
        if (!cJSON_IsString(base)) {
            st = rp_fail(err, RP_ERR_FORMAT, "rule set file '%s': \"base\" must be a string", path);
            goto done;
        }
        base_name = base->valuestring;
    }
    if (!(s->base = strdup(base_name))) {
        st = rp_fail(err, RP_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (strcmp(base_name, "none") != 0) {
        bool found;
        if ((st = add_builtin(s, cap, base_name, &found, err)))
            goto done;
        if (!found) {
            char known[256];
            known_sets(known, sizeof known);
            st = rp_fail(err, RP_ERR_FORMAT, "rule set file '%s': unknown base \"%s\" (known: %s, none)", path,
                         base_name, known);
            goto done;
        }
    }
    int index = 0;
    for (const cJSON *j = entries->child; j; j = j->next) {
        rp_rule_entry *e = NULL;
        if ((st = push(s, cap, &e, err)) || (st = parse_entry(path, ++index, j, e, err)))
            goto done;
    }
done:
    cJSON_Delete(root);
    return st;
}

rp_status rp_rule_set_load(const char *spec, rp_rule_set *out, rp_error *err)
{
    memset(out, 0, sizeof *out);
    int cap = 0;
    rp_status st;
    if (!(out->name = strdup(spec)))
        return rp_fail(err, RP_ERR_NOMEM, "out of memory");
    if (rp_rule_set_is_file(spec)) {
        st = load_file(spec, out, &cap, err);
    } else {
        bool found;
        st = add_builtin(out, &cap, spec, &found, err);
        if (!st && !found) {
            char known[256];
            known_sets(known, sizeof known);
            st = rp_fail(err, RP_ERR_ARG, "unknown rule set '%s' (known: %s; or a .json file)", spec, known);
        }
    }
    if (st)
        rp_rule_set_free(out);
    return st;
}

int rp_rule_set_match(const rp_rule_set *s, const rp_node *n, rp_node_kind kind)
{
    if (kind == RP_KIND_NONE || kind == RP_KIND_IN_REGION)
        return -1;
    for (int i = s->n - 1; i >= 0; i--) {
        const rp_rule_entry *e = &s->e[i];
        if (e->kind >= 0 && e->kind != (int)kind)
            continue;
        if (e->op && fnmatch(e->op, n->op_type, 0) != 0)
            continue;
        if (e->node && fnmatch(e->node, n->name, 0) != 0)
            continue;
        return i;
    }
    return -1;
}
