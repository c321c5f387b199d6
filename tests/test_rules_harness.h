/* The harness of the rule tests (test_rules.c, test_rule_fixtures.c): one
 * ONNX node built by hand in a tiny rp_graph (constness is the value kind),
 * its forward values from the op's own kernel, and a rule applied to it with
 * random relevance at the outputs. Included by each test file (all static). */
#ifndef TEST_RULES_HARNESS_H
#define TEST_RULES_HARNESS_H

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "rules/rule.h"

#pragma GCC diagnostic ignored "-Wunused-function"

/* ------------------------------------------------------------ harness */

#define MAXV 8
#define MAXA 8

typedef struct rcase {
    rp_graph g;
    rp_value vals[2 * MAXV];
    rp_node node;
    int ids_in[MAXV], ids_out[MAXV];
    int n_in, n_out;
    rp_attr attr[MAXA];
    int64_t ints[MAXA][2 * RP_MAX_RANK];
    rp_tensor *in_t[MAXV], *out_t[MAXV];
    rp_kctx k;
    rp_error err;
    /* rule */
    const rp_rule *rule;
    rp_rule_params params;
    rp_rule_node view;
    void *state;
    size_t scratch_floats;
    float *scratch;
    rp_tensor rel_out[MAXV], rel_in[MAXV];
    rp_tensor *rel_out_p[MAXV], *rel_in_p[MAXV];
    rp_rule_ctx rc;
} rcase;

static unsigned rng = 2024u;

static float urand(double lo, double hi)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)(lo + (hi - lo) * ((double)(rng >> 8) / (double)(1u << 24)));
}

static float *rand_f(int64_t n, double lo, double hi)
{
    float *x = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++)
        x[i] = urand(lo, hi);
    return x;
}

static rcase *rc_new(const char *op, int opset)
{
    rcase *c = calloc(1, sizeof *c);
    ck_assert_ptr_nonnull(c);
    c->node.name = "test/node_7";
    c->node.op_type = (char *)op;
    c->node.domain = "";
    c->node.opset = opset;
    c->node.attr = c->attr;
    c->node.in = c->ids_in;
    c->node.out = c->ids_out;
    c->g.values = c->vals;
    c->g.nodes = &c->node;
    c->g.n_nodes = 1;
    c->g.path = "test.onnx";
    return c;
}

static rp_attr *rc_attr(rcase *c, const char *name, rp_attr_type type)
{
    ck_assert_int_lt(c->node.n_attr, MAXA);
    rp_attr *a = &c->attr[c->node.n_attr++];
    a->name = (char *)name;
    a->type = type;
    return a;
}

static void rc_int(rcase *c, const char *name, int64_t v) { rc_attr(c, name, RP_ATTR_INT)->i = v; }
static void rc_float(rcase *c, const char *name, float v) { rc_attr(c, name, RP_ATTR_FLOAT)->f = v; }
static void rc_string(rcase *c, const char *name, const char *v) { rc_attr(c, name, RP_ATTR_STRING)->s = (char *)v; }

static void rc_ints(rcase *c, const char *name, const int64_t *v, int n)
{
    int slot = c->node.n_attr;
    rp_attr *a = rc_attr(c, name, RP_ATTR_INTS);
    memcpy(c->ints[slot], v, sizeof(int64_t) * (size_t)n);
    a->ints = c->ints[slot];
    a->n = n;
}

/* Input i (in order), data copied. */
static void rc_input(rcase *c, rp_dtype dt, int rank, const int64_t *dims, const void *data, bool constant)
{
    int i = c->n_in++;
    ck_assert_int_lt(i, MAXV);
    rp_value *v = &c->vals[i];
    v->name = constant ? "const" : "act";
    v->kind = constant ? RP_VALUE_CONSTANT : RP_VALUE_ACTIVATION;
    v->producer = -1;
    v->shape_known = true;
    ck_assert(rp_tensor_set_shape(&v->t, dt, rank, dims));
    size_t bytes = (size_t)v->t.count * rp_dtype_size(dt);
    v->t.data = malloc(bytes ? bytes : 1);
    memcpy(v->t.data, data, bytes);
    c->ids_in[i] = i;
}

static void rc_finput(rcase *c, int rank, const int64_t *dims, const float *data, bool constant)
{
    rc_input(c, RP_FLOAT, rank, dims, data, constant);
}

static rp_tensor *rc_out(rcase *c, int k) { return &c->vals[MAXV + k].t; }

/* Kernel prepare + forward with n_out outputs. */
static void rc_forward(rcase *c, int n_out)
{
    c->n_out = n_out;
    for (int k = 0; k < n_out; k++) {
        rp_value *v = &c->vals[MAXV + k];
        v->name = "out";
        v->kind = RP_VALUE_ACTIVATION;
        v->producer = 0;
        c->ids_out[k] = MAXV + k;
        c->out_t[k] = &v->t;
    }
    for (int i = 0; i < c->n_in; i++)
        c->in_t[i] = &c->vals[i].t;
    c->g.n_values = 2 * MAXV;
    c->node.n_in = c->n_in;
    c->node.n_out = n_out;
    c->node.in_t = c->in_t;
    c->node.out_t = c->out_t;
    c->node.op = rp_op_lookup(c->node.op_type, c->node.opset);
    ck_assert_msg(c->node.op != NULL, "no kernel for %s", c->node.op_type);
    c->k = (rp_kctx){.node = &c->node, .opset = c->node.opset, .in = c->in_t, .n_in = c->n_in, .out = c->out_t,
                     .n_out = n_out, .err = &c->err};
    ck_assert_msg(c->node.op->prepare(&c->k) == RP_OK, "prepare: %s", c->err.msg);
    c->node.params = c->k.params;
    for (int k = 0; k < n_out; k++) {
        rp_tensor *t = c->out_t[k];
        size_t bytes = (size_t)t->count * rp_dtype_size(t->dtype);
        t->data = calloc(1, bytes ? bytes : 1);
    }
    ck_assert_msg(c->node.op->forward(&c->k) == RP_OK, "forward: %s", c->err.msg);
}

/* The rule objects directly (not through the registry, which rules_registered checks). */
static const rp_rule *rule_named(const char *name)
{
    const rp_rule *all[] = {&rp_rule_identity, &rp_rule_route,   &rp_rule_alpha_beta, &rp_rule_zplus,
                            &rp_rule_gamma,    &rp_rule_epsilon, &rp_rule_flat,       &rp_rule_wsquare,
                            &rp_rule_zb,       &rp_rule_sum,     &rp_rule_product,    &rp_rule_uniform,
                            &rp_rule_softmax};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(all[i]->name, name) == 0)
            return all[i];
    ck_abort_msg("no rule named %s", name);
    return NULL;
}

/* "alpha=2 beta=1" as rule parameters. */
static rp_rule_params rc_params(const char *spec)
{
    rp_rule_params p = {0};
    char name[RP_RULE_PARAM_NAME_MAX];
    double v;
    int used;
    while (spec && sscanf(spec, " %31[^=]=%lf%n", name, &v, &used) == 2) {
        ck_assert_int_eq(rp_rule_param_set(&p, name, v, NULL), RP_OK);
        spec += used;
    }
    return p;
}

/* The rule's prepare; on success: scratch (poisoned with NaN), zeroed rel_in
 * for every float activation input the op differentiates, rel_out for every
 * float output filled with random values in [-1, 1) (tests overwrite). */
static rp_status rc_rule(rcase *c, const char *name, const rp_rule_params *p)
{
    c->rule = rule_named(name);
    if (p)
        c->params = *p;
    else
        c->params = (rp_rule_params){0};
    c->state = NULL;
    c->scratch_floats = 0;
    c->view = (rp_rule_node){.graph = &c->g, .node = &c->node, .kind = "unknown"};
    rp_status st = RP_OK;
    if (c->rule->prepare)
        st = c->rule->prepare(&c->view, &c->params, &c->state, &c->scratch_floats, &c->err);
    if (st)
        return st;
    c->scratch = malloc(sizeof(float) * (c->scratch_floats + 1));
    for (size_t i = 0; i <= c->scratch_floats; i++)
        c->scratch[i] = NAN;
    for (int i = 0; i < c->n_in; i++) {
        rp_value *v = &c->vals[i];
        c->rel_in_p[i] = NULL;
        if (v->kind == RP_VALUE_CONSTANT || v->t.dtype != RP_FLOAT ||
            (c->node.op->nondiff_inputs & (1u << i)))
            continue;
        ck_assert_int_eq(rp_tensor_alloc(&c->rel_in[i], RP_FLOAT, v->t.rank, v->t.dims, NULL), RP_OK);
        c->rel_in_p[i] = &c->rel_in[i];
    }
    for (int k = 0; k < c->n_out; k++) {
        const rp_tensor *y = rc_out(c, k);
        c->rel_out_p[k] = NULL;
        if (y->dtype != RP_FLOAT)
            continue;
        ck_assert_int_eq(rp_tensor_alloc(&c->rel_out[k], RP_FLOAT, y->rank, y->dims, NULL), RP_OK);
        float *r = c->rel_out[k].data;
        for (int64_t e = 0; e < y->count; e++)
            r[e] = urand(-1, 1);
        c->rel_out_p[k] = &c->rel_out[k];
    }
    return RP_OK;
}

static rp_status rc_apply(rcase *c)
{
    c->rc = (rp_rule_ctx){.graph = &c->g, .node = &c->node, .k = &c->k, .rel_out = c->rel_out_p,
                          .rel_in = c->rel_in_p, .params = &c->params, .state = c->state, .scratch = c->scratch,
                          .scratch_floats = c->scratch_floats, .err = &c->err, .view = &c->view};
    return c->rule->apply(&c->rc);
}

static void rc_apply_ok(rcase *c)
{
    rp_status st = rc_apply(c);
    ck_assert_msg(st == RP_OK, "%s on %s: %s", c->rule->name, c->node.op_type, c->err.msg);
}

static float *rel_out(rcase *c, int k) { return c->rel_out[k].data; }
static float *rel_in(rcase *c, int i) { return c->rel_in[i].data; }

static void rc_free(rcase *c)
{
    if (c->rule && c->rule->free_state && c->state)
        c->rule->free_state(c->state);
    free(c->scratch);
    for (int i = 0; i < MAXV; i++) {
        rp_tensor_release(&c->rel_in[i]);
        rp_tensor_release(&c->rel_out[i]);
    }
    for (int i = 0; i < 2 * MAXV; i++)
        free(c->vals[i].t.data);
    free(c->node.params);
    free(c);
}

static double sum_f(const float *x, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += x[i];
    return s;
}

/* |got - want| <= 1e-4 |want| + 1e-5 max|want| (+ 1e-7). */
static void assert_close(const float *got, const double *want, int64_t n, const char *what)
{
    double mx = 0;
    for (int64_t i = 0; i < n; i++)
        mx = fmax(mx, fabs(want[i]));
    for (int64_t i = 0; i < n; i++) {
        ck_assert_msg(isfinite(got[i]), "%s[%lld]: got %g", what, (long long)i, got[i]);
        ck_assert_msg(fabs(got[i] - want[i]) <= 1e-4 * fabs(want[i]) + 1e-5 * mx + 1e-7,
                      "%s[%lld]: got %.9g, want %.9g", what, (long long)i, got[i], want[i]);
    }
}

/* sum R_in = sum R_out within 1e-5 relative to sum |R_out| (the sums
 * themselves may cancel to near zero when R has both signs). */
static void assert_conserved(double in, const float *r, int64_t n, const char *what)
{
    double out = 0, scale = 0;
    for (int64_t i = 0; i < n; i++) {
        out += r[i];
        scale += fabs(r[i]);
    }
    ck_assert_msg(fabs(in - out) <= 1e-5 * fmax(scale, 1e-3), "%s: sum R_in %.9g != sum R_out %.9g (sum |R| %.6g)",
                  what, in, out, scale);
}

static double sdiv(double a, double b)
{
    if (b == 0.0)
        return 0.0;
    return a / (b + 1e-9);
}

static double pos(double v) { return v > 0 ? v : 0; }
static double neg(double v) { return v < 0 ? v : 0; }

/* Rules read gradients (vjp): an op a rule test covers must have one. */
static void require_backward(const char *op, int opset)
{
    const rp_op *o = rp_op_lookup(op, opset);
    ck_assert_msg(o != NULL, "%s (opset %d) has no kernel", op, opset);
    ck_assert_msg(o->backward != NULL, "%s (opset %d) has no backward: its rules cannot run", op, opset);
}

#endif
