/* The evaluation metrics of docs/method.md §7 as pure functions of pixel maps and
 * masks (declared in the "evaluation" section of relprop.h).
 *
 * Each follows the paper's scripts (hila-chefer/Transformer-Explainability,
 * baselines/ViT/pertubation_eval_from_hdf5.py and imagenet_seg_eval.py with
 * utils/metrices.py) where they define something, and says so where they
 * leave a choice open (tie orders, a constant map, no positive label).
 * tools/eval_reference.py computes the same in numpy; tests/test_eval.c
 * holds the two together. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/tensor.h"
#include "image/upsample.h"

/* ---- maps at pixel resolution ---- */

rp_status rp_eval_pixel_map(const rp_tensor *map, int patch_h, int patch_w, float *out, rp_error *err)
{
    if (!map || !out || !map->data)
        return rp_fail(err, RP_ERR_ARG, "evaluation: no map or no output buffer");
    if (map->dtype != RP_FLOAT)
        return rp_fail(err, RP_ERR_DTYPE, "evaluation: map must be float32, got %s", rp_dtype_name(map->dtype));
    bool unit_lead = map->rank >= 2;
    for (int i = 0; i + 2 < map->rank; i++)
        unit_lead = unit_lead && map->dims[i] == 1;
    if (!unit_lead || patch_h < 1 || patch_w < 1 || patch_h > 4096 || patch_w > 4096)
        return rp_fail(err, RP_ERR_SHAPE,
                       "evaluation: map must be 2-D (grid_h, grid_w) or (H, W) with patch >= 1, got rank %d, "
                       "patch %d x %d",
                       map->rank, patch_h, patch_w);
    int64_t rows = map->dims[map->rank - 2], cols = map->dims[map->rank - 1];
    if (rows < 1 || cols < 1 || rows > 65536 || cols > 65536 || rows * cols != map->count)
        return rp_fail(err, RP_ERR_SHAPE, "evaluation: map of %lld x %lld is empty, too large or inconsistent",
                       (long long)rows, (long long)cols);
    const float *v = map->data;
    for (int64_t i = 0; i < map->count; i++)
        if (!isfinite(v[i]))
            return rp_fail(err, RP_ERR_VALUE, "evaluation: map element %lld is not finite", (long long)i);
    if (rp_upsample_bilinear(v, (int)rows, (int)cols, patch_h, patch_w, out))
        return rp_fail(err, RP_ERR_NOMEM, "evaluation: out of memory upsampling a map to %lld x %lld",
                       (long long)rows * patch_h, (long long)cols * patch_w);
    return RP_OK;
}

/* ---- orders ---- */

typedef struct keyed {
    float v;
    int64_t i;
} keyed;

static int by_value_desc(const void *pa, const void *pb)
{
    const keyed *a = pa, *b = pb;
    if (a->v != b->v)
        return a->v > b->v ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

static int by_value_asc(const void *pa, const void *pb)
{
    const keyed *a = pa, *b = pb;
    if (a->v != b->v)
        return a->v < b->v ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

rp_status rp_eval_order(const float *v, int64_t n, bool most_relevant_first, int64_t *order, rp_error *err)
{
    if (n < 0 || (n > 0 && (!v || !order)))
        return rp_fail(err, RP_ERR_ARG, "evaluation: bad arguments to the removal order (n = %lld)", (long long)n);
    keyed *k = malloc(sizeof *k * (size_t)(n ? n : 1));
    if (!k)
        return rp_fail(err, RP_ERR_NOMEM, "evaluation: out of memory ordering %lld pixels", (long long)n);
    for (int64_t i = 0; i < n; i++)
        k[i] = (keyed){v[i], i};
    /* The index breaks ties, so the comparison is a total order and qsort's
     * instability cannot show. */
    qsort(k, (size_t)n, sizeof *k, most_relevant_first ? by_value_desc : by_value_asc);
    for (int64_t i = 0; i < n; i++)
        order[i] = k[i].i;
    free(k);
    return RP_OK;
}

int64_t rp_eval_step_count(int64_t n, int step) { return n * step / 10; }

/* ---- perturbation curves ---- */

double rp_eval_auc(const double *y, int n, double dx)
{
    double a = 0;
    for (int i = 1; i < n; i++)
        a += dx * (y[i - 1] + y[i]) / 2.0;
    return a;
}

bool rp_eval_in_top_k(const float *logits, int64_t n, int cls, int k)
{
    if (cls < 0 || cls >= n)
        return false;
    int64_t ahead = 0; /* classes ranked before cls: larger, or equal with a smaller index */
    for (int64_t j = 0; j < n; j++)
        ahead += logits[j] > logits[cls] || (logits[j] == logits[cls] && j < cls);
    return ahead < k;
}

/* ---- segmentation ---- */

rp_status rp_eval_average_precision(const float *score, const uint8_t *label, int64_t n, double *ap, rp_error *err)
{
    *ap = 0;
    if (n < 0 || (n > 0 && (!score || !label)))
        return rp_fail(err, RP_ERR_ARG, "evaluation: bad arguments to average precision (n = %lld)", (long long)n);
    int64_t positives = 0;
    for (int64_t i = 0; i < n; i++)
        positives += label[i] != 0;
    if (positives == 0)
        return RP_OK;
    keyed *k = malloc(sizeof *k * (size_t)n);
    if (!k)
        return rp_fail(err, RP_ERR_NOMEM, "evaluation: out of memory for average precision over %lld scores",
                       (long long)n);
    for (int64_t i = 0; i < n; i++)
        k[i] = (keyed){score[i], i};
    qsort(k, (size_t)n, sizeof *k, by_value_desc);
    /* Walk the thresholds: a run of equal scores is one threshold, as in
     * sklearn's _binary_clf_curve (distinct_value_indices). */
    int64_t tp = 0, seen = 0;
    double sum = 0, prev_recall = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        while (j < n && k[j].v == k[i].v) {
            tp += label[k[j].i] != 0;
            j++;
        }
        seen = j;
        double recall = (double)tp / (double)positives, precision = (double)tp / (double)seen;
        sum += (recall - prev_recall) * precision;
        prev_recall = recall;
        i = j;
    }
    free(k);
    *ap = sum;
    return RP_OK;
}

rp_status rp_eval_segmentation(const float *pixmap, const uint8_t *mask, int64_t n, rp_eval_seg *out, rp_error *err)
{
    memset(out, 0, sizeof *out);
    if (n < 1 || n > INT64_MAX / 2 / (int64_t)sizeof(float) || !pixmap || !mask)
        return rp_fail(err, RP_ERR_ARG, "evaluation: segmentation needs a map and a mask (n = %lld)", (long long)n);
    /* m then 1 - m, and the background labels then the mask: the 2n scores
     * of the pooled AP; the first n of each are the foreground AP's. */
    float *m = malloc(sizeof *m * 2 * (size_t)n);
    uint8_t *lab = malloc(2 * (size_t)n);
    if (!m || !lab) {
        free(m);
        free(lab);
        return rp_fail(err, RP_ERR_NOMEM, "evaluation: out of memory for segmentation over %lld pixels", (long long)n);
    }
    /* float32 like the paper's torch tensors; a constant map is all zeros
     * (docs/method.md §7.3), where the paper's script turns its NaNs into zeros. */
    float lo = pixmap[0], hi = pixmap[0];
    for (int64_t i = 1; i < n; i++) {
        lo = pixmap[i] < lo ? pixmap[i] : lo;
        hi = pixmap[i] > hi ? pixmap[i] : hi;
    }
    float range = hi - lo;
    double mean = 0;
    for (int64_t i = 0; i < n; i++) {
        m[i] = range > 0.0f ? (pixmap[i] - lo) / range : 0.0f;
        mean += m[i];
    }
    mean /= (double)n;
    int64_t area_pred[2] = {0, 0}, area_lab[2] = {0, 0};
    for (int64_t i = 0; i < n; i++) {
        int p = m[i] > mean, t = mask[i] != 0; /* Res.gt(Res.mean()) */
        out->correct += p == t;
        out->inter[t] += p == t;
        area_pred[p]++;
        area_lab[t]++;
        lab[i] = (uint8_t)t;
        lab[n + i] = (uint8_t)!t;
        m[n + i] = 1.0f - m[i]; /* float32, as the paper's 1 - Res */
    }
    out->labeled = n;
    for (int c = 0; c < 2; c++)
        out->uni[c] = area_pred[c] + area_lab[c] - out->inter[c];
    rp_status rc = rp_eval_average_precision(m, lab, n, &out->ap_fg, err);
    if (!rc)
        rc = rp_eval_average_precision(m + n, lab + n, n, &out->ap_bg, err);
    if (!rc)
        rc = rp_eval_average_precision(m, lab, 2 * n, &out->ap_pooled, err);
    free(m);
    free(lab);
    return rc;
}

/* ---- class specificity ---- */

rp_status rp_eval_specificity(const float *pixmap, const uint8_t *target_mask, const uint8_t *others_mask, int64_t n,
                              rp_eval_spec *out, rp_error *err)
{
    memset(out, 0, sizeof *out);
    if (n < 1 || !pixmap || !target_mask || !others_mask)
        return rp_fail(err, RP_ERR_ARG, "evaluation: specificity needs a map and two masks (n = %lld)", (long long)n);
    double total = 0, in_t = 0, in_o = 0;
    int64_t best = 0;
    for (int64_t i = 0; i < n; i++) {
        double r = pixmap[i] > 0 ? pixmap[i] : 0;
        total += r;
        if (target_mask[i])
            in_t += r;
        else if (others_mask[i])
            in_o += r;
        if (pixmap[i] > pixmap[best])
            best = i;
    }
    if (total > 0) {
        out->share_target = in_t / total;
        out->share_others = in_o / total;
    }
    out->pointing_hit = target_mask[best] != 0;
    return RP_OK;
}
