/* The perturbation test of docs/method.md §7.2 for one map: remove pixels in order
 * of relevance, re-run the model, record whether the class survives. Every
 * forward pass goes through rp_model_run, the engine `explain` uses. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

rp_status rp_eval_perturbation(rp_model *m, const rp_tensor *input, const float *pixmap, const float *mean,
                               const float *std, int cls, int k, bool most_relevant_first,
                               uint8_t hits[RP_EVAL_STEPS], rp_error *err)
{
    if (!m || !input || !pixmap || !mean || !std || !hits || k < 1)
        return rp_fail(err, RP_ERR_ARG, "perturbation test: missing argument or k < 1");
    if (input->dtype != RP_FLOAT || input->rank != 4 || input->dims[0] != 1 || input->dims[1] < 1 ||
        input->dims[1] > 3)
        return rp_fail(err, RP_ERR_SHAPE, "perturbation test: input must be float32 (1, C, H, W) with C <= 3");
    int64_t ch = input->dims[1], n = input->dims[2] * input->dims[3];
    rp_status rc = RP_OK;
    rp_tensor x = {0}, y = {0};
    int64_t *order = malloc(sizeof *order * (size_t)n);
    if (!order) {
        rc = rp_fail(err, RP_ERR_NOMEM, "perturbation test: out of memory for %lld pixels", (long long)n);
        goto done;
    }
    if ((rc = rp_eval_order(pixmap, n, most_relevant_first, order, err)) ||
        (rc = rp_tensor_alloc(&x, RP_FLOAT, 4, input->dims, err)))
        goto done;
    memcpy(x.data, input->data, sizeof(float) * (size_t)x.count);
    float *xv = x.data;
    float removed[3];
    for (int64_t c = 0; c < ch; c++)
        removed[c] = (0.0f - mean[c]) / std[c]; /* 0 in the un-normalised image */
    /* The removal sets are prefixes of one order, so each step only removes
     * the pixels the previous one had not. */
    int64_t done_px = 0;
    for (int s = 1; s < RP_EVAL_STEPS; s++) {
        int64_t upto = rp_eval_step_count(n, s);
        for (; done_px < upto; done_px++)
            for (int64_t c = 0; c < ch; c++)
                xv[c * n + order[done_px]] = removed[c];
        if ((rc = rp_model_run(m, &x, &y, err))) {
            rp_error_prefix(err, "perturbation test, step %d (%lld of %lld pixels removed)", s, (long long)upto,
                            (long long)n);
            goto done;
        }
        if (y.dtype != RP_FLOAT || cls < 0 || cls >= y.count) {
            rc = rp_fail(err, RP_ERR_SHAPE, "perturbation test: class %d is not among the model's %lld float outputs",
                         cls, (long long)y.count);
            goto done;
        }
        hits[s] = rp_eval_in_top_k(y.data, y.count, cls, k);
        rp_tensor_release(&y);
    }
done:
    rp_tensor_release(&y);
    rp_tensor_release(&x);
    free(order);
    return rc;
}
