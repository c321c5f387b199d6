#include "gradcheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

static double lcg(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return (double)(*s >> 8) / (double)(1u << 24);
}

rp_tensor gradcheck_random(int rank, const int64_t *dims, double lo, double hi, unsigned seed)
{
    rp_tensor t;
    if (rp_tensor_alloc(&t, RP_FLOAT, rank, dims, NULL) != RP_OK)
        abort();
    for (int64_t i = 0; i < t.count; i++)
        ((float *)t.data)[i] = (float)(lo + (hi - lo) * lcg(&seed));
    return t;
}

/* L = sum(gy * y) over float outputs, after a forward pass. */
static double loss(rp_kctx *c, rp_tensor *gy)
{
    double l = 0;
    for (int k = 0; k < c->n_out; k++) {
        if (!c->out[k] || c->out[k]->dtype != RP_FLOAT)
            continue;
        const float *y = c->out[k]->data, *g = gy[k].data;
        for (int64_t i = 0; i < c->out[k]->count; i++)
            l += (double)g[i] * (double)y[i];
    }
    return l;
}

int gradcheck_run(const gradcheck_spec *s, char *why, size_t why_len)
{
    const rp_op *op = rp_op_lookup(s->op, s->opset);
    if (!op || !op->backward) {
        snprintf(why, why_len, "%s (opset %d): %s", s->op, s->opset, op ? "no backward" : "no such op");
        return 0;
    }
    rp_node node = {.name = "gradcheck", .op_type = (char *)s->op, .domain = "", .opset = s->opset,
                    .n_in = s->n_in, .n_out = s->n_out, .n_attr = s->n_attrs, .attr = s->attrs};
    rp_error err = {0};
    rp_tensor outs[8] = {{0}}, gy[8] = {{0}}, gx[16] = {{0}};
    rp_tensor *outp[8], *gyp[8], *gxp[16];
    int ok = 0;
    rp_kctx c = {.node = &node, .opset = s->opset, .in = s->inputs, .n_in = s->n_in, .out = outp,
                 .n_out = s->n_out, .err = &err};
    for (int k = 0; k < s->n_out; k++)
        outp[k] = &outs[k];
    if (op->prepare(&c)) {
        snprintf(why, why_len, "prepare: %s", err.msg);
        goto done;
    }
    unsigned seed = 12345;
    for (int k = 0; k < s->n_out; k++) {
        rp_tensor shape = outs[k];
        if (rp_tensor_alloc(&outs[k], shape.dtype, shape.rank, shape.dims, &err))
            goto done;
        gy[k] = gradcheck_random(shape.rank, shape.dims, -1, 1, seed++);
        gyp[k] = shape.dtype == RP_FLOAT ? &gy[k] : NULL;
    }
    if (op->forward(&c)) {
        snprintf(why, why_len, "forward: %s", err.msg);
        goto done;
    }
    for (int i = 0; i < s->n_in; i++) {
        gxp[i] = NULL;
        if (!(s->check_mask & (1u << i)) || !s->inputs[i])
            continue;
        const rp_tensor *x = s->inputs[i];
        if (rp_tensor_alloc(&gx[i], RP_FLOAT, x->rank, x->dims, &err))
            goto done;
        gxp[i] = &gx[i];
    }
    if (op->backward(&c, gyp, gxp)) {
        snprintf(why, why_len, "backward: %s", err.msg);
        goto done;
    }
    double worst = 0;
    for (int i = 0; i < s->n_in; i++) {
        if (!gxp[i])
            continue;
        float *x = s->inputs[i]->data;
        for (int64_t e = 0; e < s->inputs[i]->count; e++) {
            float keep = x[e];
            double h = s->step * fmax(1.0, fabs(keep));
            x[e] = (float)(keep + h);
            double hp = (double)x[e] - keep;
            op->forward(&c);
            double lp = loss(&c, gy);
            x[e] = (float)(keep - h);
            double hm = keep - (double)x[e];
            op->forward(&c);
            double lm = loss(&c, gy);
            x[e] = keep;
            double numeric = (lp - lm) / (hp + hm);
            double analytic = ((float *)gx[i].data)[e];
            double rel = fabs(analytic - numeric) / (1.0 + fabs(numeric));
            if (rel > worst)
                worst = rel;
            if (rel > s->tol) {
                snprintf(why, why_len, "%s: d/d input %d [%lld]: backward %.6g, finite difference %.6g", s->op, i,
                         (long long)e, analytic, numeric);
                goto done;
            }
        }
    }
    op->forward(&c);
    ok = 1;
done:
    for (int k = 0; k < s->n_out; k++) {
        rp_tensor_release(&outs[k]);
        rp_tensor_release(&gy[k]);
    }
    for (int i = 0; i < s->n_in; i++)
        rp_tensor_release(&gx[i]);
    free(c.params);
    return ok;
}
