#include "rules/relevance.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IO 64

/* Constant inputs that are summands of the output rather than factors: a
 * rule may give them relevance (a bias absorbs its share), which the
 * conservation check counts as dropped. Weights are factors: the linear
 * rules never give them relevance, and the epsilon rule's x W-style share
 * for W would count the same relevance twice. */
static bool additive_constant(const rp_node *n, int i)
{
    const char *op = n->op_type;
    if (strcmp(op, "Add") == 0 || strcmp(op, "Sub") == 0 || strcmp(op, "Sum") == 0 || strcmp(op, "Concat") == 0)
        return true;
    return (strcmp(op, "Gemm") == 0 || strcmp(op, "Conv") == 0) && i == 2;
}

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

/* Every consumer of the node's outputs came later in the order: done with them. */
static void release_outputs(rp_valuebuf *rel, const rp_node *n, rp_tensor *const *rout)
{
    for (int k = 0; k < n->n_out; k++)
        if (rout[k])
            rp_valuebuf_release(rel, n->out[k]);
}

rp_status rp_relevance_run(rp_graph *g, const rp_assignment *a, int out_value, const rp_tensor *seed,
                           rp_valuebuf *rel, float *scratch, const rp_valuebuf *grads, rp_relevance_check *check,
                           rp_error *err)
{
    const char *path = g->path ? g->path : "model";
    rp_tensor *ry = &rel->t[out_value];
    if (rel->on_path[out_value] && rel->transient) {
        rp_status st = rp_valuebuf_acquire(rel, out_value, err);
        if (st)
            return st;
    }
    if (!rel->on_path[out_value] || !ry->data || seed->count != ry->count)
        return rp_fail(err, RP_ERR_ARG,
                       "%s: output '%s' is not computed from the model input by any operation, so it has "
                       "no relevance to explain", path, g->values[out_value].name);
    memcpy(ry->data, seed->data, (size_t)seed->count * sizeof(float));
    if (check)
        check->n = 0;

    rp_tensor *rout[MAX_IO], *rin[MAX_IO], *gout[MAX_IO], *gin[MAX_IO];
    rp_tensor temp[MAX_IO];        /* check: buffers for constant summands */
    double before[MAX_IO];         /* check: sum of rin[k] before the rule */
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        rp_node *n = &g->nodes[i];
        if (n->folded || a->kind[i] == RP_KIND_IN_REGION || a->kind[i] == RP_KIND_NONE)
            continue;
        if (n->n_in > MAX_IO || n->n_out > MAX_IO)
            return rp_fail(err, RP_ERR_UNSUPPORTED, "%s: node '%s' (%s): more than %d inputs or outputs", path,
                           n->name, n->op_type, MAX_IO);
        bool region = a->kind[i] == RP_KIND_REGION;
        /* A region acts as one unary op from its input to its exit. */
        const rp_node *rn = region ? &a->region_node[i] : n;
        bool any_out = false, any_in = false;
        /* An output no consumer sent relevance to has none (transient: zero). */
        for (int k = 0; k < n->n_out; k++) {
            rout[k] = n->out[k] >= 0 && rel->on_path[n->out[k]] && rel->t[n->out[k]].data ? &rel->t[n->out[k]] : NULL;
            any_out |= rout[k] != NULL;
            gout[k] = grads && n->out[k] >= 0 && grads->t && grads->t[n->out[k]].data ? &grads->t[n->out[k]] : NULL;
        }
        if (!any_out)
            continue;
        for (int k = 0; k < rn->n_in; k++) {
            int v = rn->in[k];
            bool nondiff = !region && (n->op->nondiff_inputs & (1u << k));
            rin[k] = v >= 0 && rel->on_path[v] && !nondiff ? &rel->t[v] : NULL;
            any_in |= rin[k] != NULL;
            gin[k] = grads && v >= 0 && grads->t && grads->t[v].data ? &grads->t[v] : NULL;
        }
        if (!any_in) {
            release_outputs(rel, n, rout);
            continue;
        }
        for (int k = 0; rel->transient && k < rn->n_in; k++) {
            rp_status st = rin[k] ? rp_valuebuf_acquire(rel, rn->in[k], err) : RP_OK;
            if (st)
                return st;
        }
        if (!a->rule[i])
            return rp_fail(err, RP_ERR_UNSUPPORTED,
                           "%s: node '%s' (%s, opset %d): no relevance rule fits this node (kind %s), "
                           "but relevance has to flow through it",
                           path, n->name, n->op_type, n->opset, rp_node_kind_name(a->kind[i]));
        if (region && !rp_shape_equal(rin[0], rout[0]))
            return rp_fail(err, RP_ERR_INTERNAL, "%s: region ending at '%s' changes shape", path, n->name);
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
                if (region || v < 0 || g->values[v].kind != RP_VALUE_CONSTANT || g->values[v].t.dtype != RP_FLOAT ||
                    (n->op->nondiff_inputs & (1u << k)) || !additive_constant(n, k))
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
        rp_rule_ctx rc = {.graph = g, .node = rn, .k = &k, .rel_out = rout, .rel_in = rin,
                          .params = &a->params[i], .state = a->state[i], .scratch = scratch,
                          .scratch_floats = a->scratch_floats, .err = err, .view = &a->view[i],
                          .grad_out = grads ? gout : NULL, .grad_in = grads ? gin : NULL,
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
            return rp_error_prefix(err, "%s: relevance rule '%s' at node '%s' (%s)", path, a->rule[i]->name,
                                   n->name, n->op_type);
        release_outputs(rel, n, rout);
    }
    return rp_valuebuf_finish(rel, err);
}
