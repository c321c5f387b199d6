#include "rules/relevance.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IO RP_WALK_MAX_IO

static double tensor_sum(const rp_tensor *t, double *abs_sum)
{
    const float *d = t->data;
    double s = 0, a = 0;
    for (int64_t e = 0; e < t->count; e++) {
        s += d[e];
        a += fabs(d[e]);
    }
    if (abs_sum)
        *abs_sum = a;
    return s;
}

typedef struct relevance_walk {
    const rp_assignment *a;
    float *scratch;
    const rp_valuebuf *grads; /* for rules that read gradients, or NULL */
    rp_relevance_check *check;
} relevance_walk;

/* A region acts as one unary op from its input to its exit; its inside and
 * nodes no rule concerns are passed by. */
static const rp_node *relevance_view(void *ctx, const rp_graph *g, int i)
{
    const rp_assignment *a = ((relevance_walk *)ctx)->a;
    if (a->kind[i] == RP_KIND_IN_REGION || a->kind[i] == RP_KIND_NONE)
        return NULL;
    return a->kind[i] == RP_KIND_REGION ? &a->region_node[i] : &g->nodes[i];
}

static bool relevance_blocked(void *ctx, const rp_graph *g, int i, const rp_node *seen, int k)
{
    const rp_assignment *a = ((relevance_walk *)ctx)->a;
    return a->kind[i] != RP_KIND_REGION && rp_op_input_nondiff(g->nodes[i].op, k);
}

static rp_tensor *grad_of(const rp_valuebuf *grads, int v)
{
    return grads && v >= 0 && grads->t && grads->t[v].data ? &grads->t[v] : NULL;
}

static rp_status relevance_step(void *ctx, rp_graph *g, const rp_walk_step *s, rp_error *err)
{
    relevance_walk *w = ctx;
    const rp_assignment *a = w->a;
    const char *path = g->path ? g->path : "model";
    int i = s->index;
    rp_node *n = &g->nodes[i];
    const rp_node *rn = s->node;
    bool region = a->kind[i] == RP_KIND_REGION;
    rp_tensor *const *rout = s->out;
    rp_tensor *rin[MAX_IO], *gout[MAX_IO], *gin[MAX_IO];
    for (int k = 0; k < n->n_out; k++)
        gout[k] = grad_of(w->grads, n->out[k]);
    for (int k = 0; k < rn->n_in; k++) {
        rin[k] = s->in[k];
        gin[k] = grad_of(w->grads, rn->in[k]);
    }
    if (!a->rule[i])
        return rp_fail(err, RP_ERR_UNSUPPORTED,
                       "%s: node '%s' (%s, opset %d): no relevance rule fits this node (kind %s), "
                       "but relevance has to flow through it",
                       path, n->name, n->op_type, n->opset, rp_node_kind_name(a->kind[i]));
    if (region && !rp_shape_equal(rin[0], rout[0]))
        return rp_fail(err, RP_ERR_INTERNAL, "%s: region ending at '%s' changes shape", path, n->name);
    rp_relevance_check *check = w->check;
    rp_tensor temp[MAX_IO]; /* check: buffers for constant summands */
    double before[MAX_IO];  /* check: sum of rin[k] before the rule */
    int n_temp = 0;
    double in_sum = 0, magnitude = 0;
    if (check) {
        for (int k = 0; k < n->n_out; k++)
            if (rout[k]) {
                double abs_sum;
                in_sum += tensor_sum(rout[k], &abs_sum);
                magnitude += abs_sum;
            }
        for (int k = 0; k < rn->n_in; k++) {
            int v = rn->in[k];
            temp[k] = (rp_tensor){0};
            before[k] = 0;
            if (rin[k]) {
                bool repeat = false; /* the same value twice (x * x): count its buffer once */
                for (int q = 0; q < k; q++)
                    repeat |= rin[q] == rin[k];
                before[k] = repeat ? NAN : tensor_sum(rin[k], NULL);
                continue;
            }
            /* A constant summand (a bias) may absorb a share, which the
             * check counts as dropped; weights are factors and get none. */
            if (region || v < 0 || g->values[v].kind != RP_VALUE_CONSTANT || g->values[v].t.dtype != RP_FLOAT ||
                rp_op_input_nondiff(n->op, k) || !rp_op_input_summand(n->op, k))
                continue;
            rp_status st = rp_tensor_alloc(&temp[k], RP_FLOAT, g->values[v].t.rank, g->values[v].t.dims, err);
            if (st) {
                for (int q = 0; q < k; q++)
                    rp_tensor_release(&temp[q]);
                return st;
            }
            rin[k] = &temp[k];
            n_temp++;
        }
    }
    rp_kctx k = {.node = rn, .opset = n->opset, .in = rn->in_t, .n_in = rn->n_in,
                 .out = n->out_t, .n_out = n->n_out, .params = n->params, .err = err};
    rp_rule_ctx rc = {.graph = g, .node = rn, .k = &k, .rel_out = (rp_tensor **)rout, .rel_in = rin,
                      .params = &a->params[i], .state = a->state[i], .scratch = w->scratch,
                      .scratch_floats = a->scratch_floats, .err = err, .view = &a->view[i],
                      .grad_out = w->grads ? gout : NULL, .grad_in = w->grads ? gin : NULL,
                      .side = a->side ? a->side[i] : RP_READ_BOTH};
    rp_status st = a->rule[i]->apply(&rc);
    if (check && !st) {
        double out_sum = 0, dropped = 0;
        for (int q = 0; q < rn->n_in; q++) {
            if (!rin[q] || isnan(before[q]))
                continue;
            if (rin[q] == &temp[q])
                dropped += tensor_sum(rin[q], NULL);
            else
                out_sum += tensor_sum(rin[q], NULL) - before[q];
        }
        const rp_rule *r = a->rule[i];
        bool claims = r->conserves && r->conserves(&a->params[i]);
        double tol = check->tolerance > 0 ? check->tolerance : 1e-3;
        check->entries[check->n++] = (rp_conservation_entry){
            .node = i, .name = n->name, .op = n->op_type, .kind = rp_node_kind_name(a->kind[i]),
            .rule = r->name, .relevance_in = in_sum, .relevance_out = out_sum, .relevance_dropped = dropped,
            .magnitude = magnitude, .should_conserve = claims,
            .violated = claims && fabs(in_sum - out_sum - dropped) > tol * magnitude + 1e-12};
    }
    if (n_temp)
        for (int q = 0; q < rn->n_in; q++)
            rp_tensor_release(&temp[q]);
    if (st)
        return rp_error_prefix(err, "%s: relevance rule '%s' at node '%s' (%s)", path, a->rule[i]->name, n->name,
                               n->op_type);
    return RP_OK;
}

rp_status rp_relevance_run(rp_graph *g, const rp_assignment *a, int out_value, const rp_tensor *seed,
                           rp_valuebuf *rel, float *scratch, const rp_valuebuf *grads, rp_relevance_check *check,
                           rp_error *err)
{
    if (check)
        check->n = 0;
    relevance_walk ctx = {.a = a, .scratch = scratch, .grads = grads, .check = check};
    rp_reverse_walk w = {.buf = rel, .what = "relevance", .view = relevance_view, .blocked = relevance_blocked,
                         .visit = relevance_step, .ctx = &ctx};
    return rp_reverse_walk_run(g, out_value, seed, &w, err);
}
