/* relprop eval: the paper's evaluation (docs/method.md §7) on a labelled image
 * list, for several methods at once. Per image: one rp_explain call for all
 * its labelled classes and all methods, then per (class, method) the
 * perturbation test in both directions (9 forward passes each, through
 * rp_model_run), the segmentation test where a mask is given, and class
 * specificity and the pointing game where the image has two or more masked
 * objects. The metrics themselves live in the library (relprop.h,
 * "evaluation"); this file reads the list, accumulates, and writes the
 * table, results.csv, results.json and the plot. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "output.h"

int cmd_eval(int argc, char **argv);

static const char *usage_eval =
    "usage: relprop eval --onnx MODEL --data LIST.csv [--method NAME ...] [-o DIR] [--force]\n"
    "                    [--limit N] [--dump DIR] [preprocessing options]\n"
    "\n"
    "The evaluation of Chefer, Gur & Wolf (CVPR 2021) on a labelled image list, per method:\n"
    "  perturbation test   pixels removed (set to 0 before normalisation) in steps of 10 % up to\n"
    "                      90 %, most relevant first (pos, lower AUC is better) or least relevant\n"
    "                      first (neg, higher is better); a hit = the class is still among the top k\n"
    "                      logits, k = the number of labelled classes of the image;\n"
    "                      AUC = 100 * trapezoid(accuracy, dx = 0.1) over 0, 10, ..., 90 %\n"
    "  segmentation test   (rows with a mask) the map min-max normalised and thresholded at its\n"
    "                      mean: pixel accuracy, mIoU over {background, foreground}, mAP\n"
    "  class specificity   (images with two or more masked objects) share of positive relevance\n"
    "                      on the explained object among that on all labelled objects, and the\n"
    "                      pointing game (the map's maximum lies on the explained object)\n"
    "All values are percentages. Writes DIR/results.csv, DIR/results.json (with the curves) and\n"
    "the perturbation curves as DIR/perturbation.svg and DIR/perturbation.png.\n"
    "\n"
    "  --onnx MODEL              the ONNX model (required)\n"
    "  --data LIST.csv           header 'image,class,mask', one row per labelled object; paths\n"
    "                            relative to the CSV's folder; mask may be empty (PNG, non-zero =\n"
    "                            object, same size as the image)\n"
    "  --method NAME ...         default all seven: transformer_attribution, rollout, raw_attention,\n"
    "                            attn_gradcam, lrp_last_layer, lrp_full, generic_attention\n"
    "  --start-layer L           first layer aggregated by transformer_attribution and rollout (default 0)\n"
    "  --rules NAME              relevance rule set (default paper)\n"
    "  -o, --output DIR          where to write (default relprop_eval; created if missing)\n"
    "  --title TEXT              the plot's title\n"
    "  --limit N                 only the first N images of the list\n"
    "  --dump DIR                also write, per row and method, the pixel map\n"
    "                            (<stem>.c<C>.<method>.pixmap.npy, H x W float32) and the map as\n"
    "                            explained (.map.npy), and DIR/hits.csv with every perturbation hit\n"
    "                            (what tools/eval_reference.py recomputes the metrics from)\n"
    "  --force                   overwrite existing results\n"
    "preprocessing (default: the model's relprop.* metadata, else a resize to the model's input\n"
    "size, bilinear, mean = std = 0.5); masks follow the image's resize and crop, nearest:\n"
    "  --preset NAME  --resize N | H,W  --crop N | H,W  --interpolation NAME  --mean A,B,C  --std A,B,C\n"
    "limits:\n"
    "  --max-memory N  --no-check-finite  --threads N   as for explain\n";

/* One row of the list: a labelled object. */
typedef struct eval_row {
    int cls;
    char *mask; /* NULL when not given */
} eval_row;

/* An image with its rows (the same image path on several lines). */
typedef struct eval_image {
    char *path;
    eval_row *rows;
    int n_rows;
} eval_image;

/* Running sums per method. */
typedef struct method_acc {
    int64_t n_pert;
    double hits_pos[RP_EVAL_STEPS], hits_neg[RP_EVAL_STEPS];
    int64_t n_seg, correct, labeled, inter[2], uni[2];
    double ap_fg, ap_bg, ap_mean, ap_pooled;
    int64_t n_spec;
    double share_t, share_o, spec, pointing;
} method_acc;

typedef struct eval_args {
    const char *onnx, *data, *outdir, *dump, *rules, *title;
    preprocess_flags pre;
    bool force;
    long start_layer, limit;
    rp_method methods[RP_METHOD_COUNT];
    int n_methods;
} eval_args;

/* ---- preprocessing: the rules of `explain` (flags over metadata over the
 * model's input size) ---- */

/* ---- the list ---- */

static void free_images(eval_image *im, int n)
{
    for (int i = 0; i < n; i++) {
        for (int r = 0; r < im[i].n_rows; r++)
            free(im[i].rows[r].mask);
        free(im[i].rows);
        free(im[i].path);
    }
    free(im);
}

/* "dir/LIST.csv" + "a.png" → "dir/a.png" (absolute paths kept). */
static char *relative_to(const char *list, const char *p)
{
    const char *slash = strrchr(list, '/');
    int dir_len = slash ? (int)(slash - list) : 0;
    size_t len = strlen(p) + (size_t)dir_len + 2;
    char *out = malloc(len);
    if (!out)
        return NULL;
    if (p[0] == '/' || dir_len == 0)
        snprintf(out, len, "%s", p);
    else
        snprintf(out, len, "%.*s/%s", dir_len, list, p);
    return out;
}

/* Reads LIST.csv: the header `image,class,mask` exactly, then rows of three
 * comma-separated fields (no quoting: paths with commas are not supported
 * and are refused as a wrong field count). Rows of one image are grouped
 * in the order the images first appear. */
static int read_eval_list(const char *list, eval_image **out, int *n_out)
{
    *out = NULL;
    *n_out = 0;
    rp_error err = {0};
    char *text = NULL, msg[512];
    size_t text_len = 0;
    if (rp_file_read_text(list, "list file", MAX_TEXT_FILE, &text, &text_len, &err))
        return fail(err.msg);
    eval_image *ims = NULL;
    int n = 0, cap = 0, rc = 0, lineno = 0;
    for (char *line = text, *next; !rc && *line; line = next) {
        size_t k = strcspn(line, "\n");
        next = line + k + (line[k] != 0);
        line[k] = 0;
        lineno++;
        line[strcspn(line, "\r")] = 0;
        if (lineno == 1) {
            if (strcmp(line, "image,class,mask") != 0)
                rc = failf("%s: line 1 must be the header 'image,class,mask', got '%s'", list, line);
            continue;
        }
        if (!line[0])
            continue;
        char *c1 = strchr(line, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
        if (!c1 || !c2 || strchr(c2 + 1, ',')) {
            snprintf(msg, sizeof msg, "line %d has not 3 fields (image,class,mask)", lineno);
            rc = failf("%s: %s", list, msg);
            break;
        }
        *c1 = *c2 = 0;
        char *end;
        errno = 0;
        long cls = strtol(c1 + 1, &end, 10);
        if (!line[0] || errno || end == c1 + 1 || *end || cls < 0 || cls > 10000000) {
            snprintf(msg, sizeof msg, "line %d: class must be a non-negative integer and image a path, got '%s'",
                     lineno, c1 + 1);
            rc = failf("%s: %s", list, msg);
            break;
        }
        char *path = relative_to(list, line);
        if (!path) {
            rc = fail("out of memory");
            break;
        }
        int i = 0;
        while (i < n && strcmp(ims[i].path, path) != 0)
            i++;
        if (i == n) {
            if (n == cap) {
                int grown_cap = cap ? cap * 2 : 64;
                eval_image *grown = realloc(ims, sizeof *grown * (size_t)grown_cap);
                if (!grown) {
                    free(path);
                    rc = fail("out of memory");
                    break;
                }
                ims = grown;
                cap = grown_cap;
            }
            ims[n++] = (eval_image){path, NULL, 0};
        } else {
            free(path);
        }
        eval_image *im = &ims[i];
        for (int r = 0; r < im->n_rows; r++)
            if (im->rows[r].cls == (int)cls) {
                snprintf(msg, sizeof msg, "line %d: class %ld is listed twice for %s", lineno, cls, im->path);
                rc = failf("%s: %s", list, msg);
            }
        eval_row *grown = rc ? NULL : realloc(im->rows, sizeof *grown * (size_t)(im->n_rows + 1));
        if (!grown) {
            rc = rc ? rc : fail("out of memory");
            break;
        }
        im->rows = grown;
        char *mask = c2[1] ? relative_to(list, c2 + 1) : NULL;
        im->rows[im->n_rows++] = (eval_row){(int)cls, mask};
        if (c2[1] && !mask)
            rc = fail("out of memory");
    }
    free(text);
    if (!rc && lineno == 0)
        rc = failf("%s: empty file; expected the header 'image,class,mask'%s", list, "");
    if (!rc && n == 0)
        rc = failf("%s: no rows after the header%s", list, "");
    if (rc) {
        free_images(ims, n);
        return rc;
    }
    *out = ims;
    *n_out = n;
    return 0;
}

/* ---- one image ---- */

typedef struct eval_job {
    const eval_args *a;
    rp_model *m;
    rp_preprocess pre;
    const char *pre_source;
    rp_token_layout layout;
    int channels, h, w;
    int64_t n_classes;
    method_acc acc[RP_METHOD_COUNT];
    int64_t n_images, n_rows, n_masked, n_multi, n_unperturbed_hits;
    char *hits;  /* DIR/hits.csv's text with --dump, written at the end */
    size_t hits_len, hits_cap;
    int64_t pre_budget;
    out_dir *out, *dump; /* the same when -o and --dump name one folder */
} eval_job;

/* Appends to hits.csv's text. */
static int hits_add(eval_job *j, const char *text)
{
    size_t n = strlen(text);
    if (j->hits_len + n + 1 > j->hits_cap) {
        size_t cap = j->hits_cap ? j->hits_cap : 4096;
        while (j->hits_len + n + 1 > cap)
            cap *= 2;
        char *grown = realloc(j->hits, cap);
        if (!grown)
            return fail("out of memory");
        j->hits = grown;
        j->hits_cap = cap;
    }
    memcpy(j->hits + j->hits_len, text, n + 1);
    j->hits_len += n;
    return 0;
}

/* The mask as the model sees the image: the image's resize and crop with
 * nearest-neighbour interpolation; non-zero = object. mask_out: h*w bytes. */
static int load_mask(const eval_job *j, const char *path, uint8_t *mask_out)
{
    rp_error err = {0};
    rp_image im = {0};
    rp_tensor t = {0};
    if (rp_image_load(path, &im, &err))
        return fail(err.msg);
    rp_preprocess p = j->pre;
    p.interp = RP_INTERP_NEAREST;
    for (int c = 0; c < 3; c++) {
        p.mean[c] = 0.0f;
        p.std[c] = 1.0f;
    }
    int rc0 = check_preprocess_memory(&p, im.width, im.height, 1, j->pre_budget, path);
    if (rc0) {
        rp_image_release(&im);
        return rc0;
    }
    rp_status st = rp_image_to_tensor(&im, &p, 1, &t, &err);
    rp_image_release(&im);
    if (st)
        return failf("%s: %s", path, err.msg);
    int rc = 0;
    if (t.rank != 4 || t.dims[2] != j->h || t.dims[3] != j->w) {
        char buf[96];
        snprintf(buf, sizeof buf, "%lld x %lld, expected %d x %d", (long long)(t.rank == 4 ? t.dims[2] : 0),
                 (long long)(t.rank == 4 ? t.dims[3] : 0), j->h, j->w);
        rc = failf("%s: the mask after preprocessing is %s (give masks the size of their images)", path, buf);
    } else {
        const float *v = t.data;
        for (int64_t i = 0; i < (int64_t)j->h * j->w; i++)
            mask_out[i] = v[i] > 0.0f;
    }
    rp_tensor_release(&t);
    return rc;
}

static int dump_npy(const char *path, const float *v, int rank, const int64_t *dims)
{
    rp_error err = {0};
    rp_tensor t = {.dtype = RP_FLOAT, .rank = rank, .count = 1, .data = (void *)v};
    for (int d = 0; d < rank; d++) {
        t.dims[d] = dims[d];
        t.count *= dims[d];
    }
    return rp_npy_write(path, &t, &err) ? fail(err.msg) : 0;
}

static int eval_image_run(eval_job *j, const eval_image *im)
{
    const eval_args *a = j->a;
    rp_error err = {0};
    rp_image img = {0};
    rp_tensor x = {0};
    rp_explanation *e = NULL;
    int64_t n = (int64_t)j->h * j->w;
    int nr = im->n_rows, rc = 0;
    uint8_t *masks = calloc((size_t)nr, (size_t)n), *others = malloc((size_t)n);
    float *pix = malloc(sizeof *pix * (size_t)n);
    int *classes = malloc(sizeof *classes * (size_t)nr);
    bool *has_mask = calloc((size_t)nr, sizeof *has_mask);
    if (!masks || !others || !pix || !classes || !has_mask) {
        rc = fail("out of memory");
        goto done;
    }
    if (rp_image_load(im->path, &img, &err)) {
        rc = fail(err.msg);
        goto done;
    }
    if ((rc = check_preprocess_memory(&j->pre, img.width, img.height, j->channels, j->pre_budget, im->path)))
        goto done;
    if (rp_image_to_tensor(&img, &j->pre, j->channels, &x, &err)) {
        rc = failf("%s: %s", im->path, err.msg);
        goto done;
    }
    int n_masked = 0;
    for (int r = 0; r < nr; r++) {
        classes[r] = im->rows[r].cls;
        if (classes[r] >= j->n_classes) {
            char buf[96];
            snprintf(buf, sizeof buf, "class %d is out of range: the model has %lld classes (0..%lld)", classes[r],
                     (long long)j->n_classes, (long long)j->n_classes - 1);
            rc = failf("%s: %s", im->path, buf);
            goto done;
        }
        if (im->rows[r].mask) {
            if ((rc = load_mask(j, im->rows[r].mask, masks + (size_t)r * (size_t)n)))
                goto done;
            has_mask[r] = true;
            n_masked++;
        }
    }
    rp_explain_options opt = {.start_layer = (int)a->start_layer, .rules = a->rules};
    if (rp_explain(j->m, &x, classes, nr, a->methods, a->n_methods, &opt, &e, &err)) {
        rc = failf("%s: %s", im->path, err.msg);
        goto done;
    }
    const rp_tensor *logits = rp_explanation_logits(e);
    int k = nr; /* the number of labelled classes of this image */
    bool multi = n_masked >= 2;
    char stem[1024], path[8192];
    stem_of(im->path, stem, sizeof stem);
    for (int r = 0; r < nr; r++) {
        /* Step 0 (nothing removed) is the explained forward pass itself,
         * shared by every method and both directions. */
        uint8_t hit0 = rp_eval_in_top_k(logits->data, logits->count, classes[r], k);
        j->n_unperturbed_hits += hit0;
        if (multi && has_mask[r]) {
            memset(others, 0, (size_t)n);
            for (int o = 0; o < nr; o++)
                for (int64_t i = 0; o != r && has_mask[o] && i < n; i++)
                    others[i] |= masks[(size_t)o * (size_t)n + (size_t)i];
        }
        for (int mi = 0; mi < rp_explanation_method_count(e); mi++) {
            rp_method method = rp_explanation_method(e, mi);
            method_acc *acc = &j->acc[method];
            const rp_tensor *map = rp_explanation_map(e, r, mi);
            bool pixels = rp_method_pixel_map(method);
            int ph = pixels ? 1 : j->layout.patch_h, pw = pixels ? 1 : j->layout.patch_w;
            int64_t mh = map->rank >= 2 ? map->dims[map->rank - 2] : 0, mw = map->rank >= 2 ? map->dims[map->rank - 1] : 0;
            if (mh * ph != j->h || mw * pw != j->w) {
                char buf[128];
                snprintf(buf, sizeof buf, "%s map of %lld x %lld by patch %d x %d does not cover the %d x %d input",
                         rp_method_name(method), (long long)mh, (long long)mw, ph, pw, j->h, j->w);
                rc = failf("%s: %s", im->path, buf);
                goto done;
            }
            if (rp_eval_pixel_map(map, ph, pw, pix, &err)) {
                rc = failf("%s: %s", im->path, err.msg);
                goto done;
            }
            uint8_t hp[RP_EVAL_STEPS] = {hit0}, hn[RP_EVAL_STEPS] = {hit0};
            if (rp_eval_perturbation(j->m, &x, pix, j->pre.mean, j->pre.std, classes[r], k, true, hp, &err) ||
                rp_eval_perturbation(j->m, &x, pix, j->pre.mean, j->pre.std, classes[r], k, false, hn, &err)) {
                rc = failf("%s: %s", im->path, err.msg);
                goto done;
            }
            acc->n_pert++;
            for (int s = 0; s < RP_EVAL_STEPS; s++) {
                acc->hits_pos[s] += hp[s];
                acc->hits_neg[s] += hn[s];
            }
            if (has_mask[r]) {
                rp_eval_seg seg;
                if (rp_eval_segmentation(pix, masks + (size_t)r * (size_t)n, n, &seg, &err)) {
                    rc = failf("%s: %s", im->path, err.msg);
                    goto done;
                }
                acc->n_seg++;
                acc->correct += seg.correct;
                acc->labeled += seg.labeled;
                for (int c = 0; c < 2; c++) {
                    acc->inter[c] += seg.inter[c];
                    acc->uni[c] += seg.uni[c];
                }
                acc->ap_fg += seg.ap_fg;
                acc->ap_bg += seg.ap_bg;
                acc->ap_mean += (seg.ap_fg + seg.ap_bg) / 2;
                acc->ap_pooled += seg.ap_pooled;
            }
            if (multi && has_mask[r]) {
                rp_eval_spec sp;
                if (rp_eval_specificity(pix, masks + (size_t)r * (size_t)n, others, n, &sp, &err)) {
                    rc = failf("%s: %s", im->path, err.msg);
                    goto done;
                }
                double on_objects = sp.share_target + sp.share_others;
                acc->n_spec++;
                acc->share_t += sp.share_target;
                acc->share_o += sp.share_others;
                /* no relevance on any object: no preference, 1/2 */
                acc->spec += on_objects > 0 ? sp.share_target / on_objects : 0.5;
                acc->pointing += sp.pointing_hit;
            }
            if (a->dump) {
                const char *mname = rp_method_name(method);
                int64_t dims[2] = {j->h, j->w};
                snprintf(path, sizeof path, "%s/%s.c%d.%s.pixmap.npy", j->dump->staging, stem, classes[r], mname);
                if ((rc = dump_npy(path, pix, 2, dims)))
                    goto done;
                snprintf(path, sizeof path, "%s/%s.c%d.%s.map.npy", j->dump->staging, stem, classes[r], mname);
                if ((rc = dump_npy(path, map->data, 2, (int64_t[2]){mh, mw})))
                    goto done;
                for (int d = 0; d < 2 && !rc; d++) {
                    char row[1400];
                    int len = snprintf(row, sizeof row, "%s,%d,%s,%s", stem, classes[r], mname, d ? "neg" : "pos");
                    for (int s = 0; s < RP_EVAL_STEPS; s++)
                        len += snprintf(row + len, sizeof row - (size_t)len, ",%d", d ? hn[s] : hp[s]);
                    snprintf(row + len, sizeof row - (size_t)len, "\n");
                    rc = hits_add(j, row);
                }
                if (rc)
                    goto done;
            }
        }
    }
    j->n_images++;
    j->n_rows += nr;
    j->n_masked += n_masked;
    j->n_multi += multi ? n_masked : 0;
done:
    rp_explanation_free(e);
    rp_tensor_release(&x);
    rp_image_release(&img);
    free(masks);
    free(others);
    free(pix);
    free(classes);
    free(has_mask);
    return rc;
}

/* ---- results ---- */

typedef struct method_result {
    double curve_pos[RP_EVAL_STEPS], curve_neg[RP_EVAL_STEPS];
    double neg_auc, pos_auc;
    bool has_seg, has_spec;
    double pixel_acc, miou, iou[2], map, ap_fg, ap_bg, ap_pooled;
    double specificity, pointing, share_t, share_o;
} method_result;

static void finish(const method_acc *acc, method_result *r)
{
    memset(r, 0, sizeof *r);
    for (int s = 0; s < RP_EVAL_STEPS; s++) {
        r->curve_pos[s] = acc->n_pert ? acc->hits_pos[s] / (double)acc->n_pert : 0;
        r->curve_neg[s] = acc->n_pert ? acc->hits_neg[s] / (double)acc->n_pert : 0;
    }
    r->pos_auc = 100.0 * rp_eval_auc(r->curve_pos, RP_EVAL_STEPS, 0.1);
    r->neg_auc = 100.0 * rp_eval_auc(r->curve_neg, RP_EVAL_STEPS, 0.1);
    r->has_seg = acc->n_seg > 0;
    if (r->has_seg) {
        /* Sums over the data set, then divided: the paper's pixAcc and IoU. */
        r->pixel_acc = 100.0 * (double)acc->correct / (double)acc->labeled;
        for (int c = 0; c < 2; c++)
            r->iou[c] = acc->uni[c] ? 100.0 * (double)acc->inter[c] / (double)acc->uni[c] : 0;
        r->miou = (r->iou[0] + r->iou[1]) / 2;
        r->map = 100.0 * acc->ap_mean / (double)acc->n_seg;
        r->ap_fg = 100.0 * acc->ap_fg / (double)acc->n_seg;
        r->ap_bg = 100.0 * acc->ap_bg / (double)acc->n_seg;
        r->ap_pooled = 100.0 * acc->ap_pooled / (double)acc->n_seg;
    }
    r->has_spec = acc->n_spec > 0;
    if (r->has_spec) {
        r->specificity = 100.0 * acc->spec / (double)acc->n_spec;
        r->pointing = 100.0 * acc->pointing / (double)acc->n_spec;
        r->share_t = 100.0 * acc->share_t / (double)acc->n_spec;
        r->share_o = 100.0 * acc->share_o / (double)acc->n_spec;
    }
}

static void csv_num(char *buf, size_t len, bool have, double v)
{
    if (have)
        snprintf(buf, len, "%.6f", v);
    else
        buf[0] = 0;
}

static char *results_csv(const eval_job *j, const method_result *res)
{
    size_t cap = 128 + (size_t)j->a->n_methods * 256;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    size_t len = (size_t)snprintf(s, cap, "method,neg_auc,pos_auc,pixel_acc,miou,map,specificity,pointing\n");
    for (int i = 0; i < j->a->n_methods; i++) {
        const method_result *r = &res[i];
        char f[5][32];
        csv_num(f[0], 32, r->has_seg, r->pixel_acc);
        csv_num(f[1], 32, r->has_seg, r->miou);
        csv_num(f[2], 32, r->has_seg, r->map);
        csv_num(f[3], 32, r->has_spec, r->specificity);
        csv_num(f[4], 32, r->has_spec, r->pointing);
        len += (size_t)snprintf(s + len, cap - len, "%s,%.6f,%.6f,%s,%s,%s,%s,%s\n",
                                rp_method_name(j->a->methods[i]), r->neg_auc, r->pos_auc, f[0], f[1], f[2], f[3],
                                f[4]);
    }
    return s;
}

static void json_num(cJSON *o, const char *key, bool have, double v)
{
    cJSON_AddItemToObject(o, key, have ? cJSON_CreateNumber(v) : cJSON_CreateNull());
}

static char *results_json(const eval_job *j, const method_result *res)
{
    const eval_args *a = j->a;
    cJSON *root = cJSON_CreateObject();
    json_add_str(root, "model", a->onnx);
    json_add_str(root, "data", a->data);
    cJSON_AddNumberToObject(root, "images", (double)j->n_images);
    cJSON_AddNumberToObject(root, "rows", (double)j->n_rows);
    cJSON_AddNumberToObject(root, "rows_with_mask", (double)j->n_masked);
    cJSON_AddNumberToObject(root, "rows_multi_object", (double)j->n_multi);
    cJSON_AddNumberToObject(root, "unperturbed_accuracy",
                            j->n_rows ? 100.0 * (double)j->n_unperturbed_hits / (double)j->n_rows : 0);
    cJSON_AddNumberToObject(root, "start_layer", (double)a->start_layer);
    json_add_str(root, "rules", a->rules ? a->rules : "paper");
    cJSON *p = cJSON_AddObjectToObject(root, "preprocessing");
    cJSON_AddStringToObject(p, "source", j->pre_source);
    cJSON_AddItemToObject(p, "mean", cJSON_CreateFloatArray(j->pre.mean, 3));
    cJSON_AddItemToObject(p, "std", cJSON_CreateFloatArray(j->pre.std, 3));
    double steps[RP_EVAL_STEPS];
    for (int s = 0; s < RP_EVAL_STEPS; s++)
        steps[s] = s / 10.0;
    cJSON_AddItemToObject(root, "fraction_removed", cJSON_CreateDoubleArray(steps, RP_EVAL_STEPS));
    cJSON *def = cJSON_AddObjectToObject(root, "definitions");
    cJSON_AddStringToObject(def, "hit", "the explained class is among the k largest logits (ties by index), "
                                        "k = the number of labelled classes of the image");
    cJSON_AddStringToObject(def, "removed_pixels", "floor(H*W*step/10) pixels, all channels set to 0 before "
                                                   "normalisation; order of the bilinearly upsampled map, ties by "
                                                   "pixel index");
    cJSON_AddStringToObject(def, "auc", "100 * np.trapz(curve, dx=0.1) over fraction_removed 0..0.9 (max 90)");
    cJSON_AddStringToObject(def, "segmentation", "map min-max normalised (float32), foreground = m > mean(m); "
                                                 "pixel_acc and IoU from counts summed over all masked rows; "
                                                 "miou = mean IoU of background and foreground; map = mean over "
                                                 "rows of (AP(m, mask) + AP(1 - m, 1 - mask)) / 2, AP as sklearn's "
                                                 "average_precision_score; map_pooled = mean over rows of one AP "
                                                 "of [1 - m, m] against [1 - mask, mask] (the paper script's "
                                                 "get_ap_scores)");
    cJSON_AddStringToObject(def, "specificity", "rows of images with >= 2 masked objects: mean of "
                                                "in_target / (in_target + in_others) of the positive relevance "
                                                "(1/2 when none lies on any object)");
    cJSON_AddStringToObject(def, "pointing", "same rows: share whose map maximum (first pixel on ties) lies in "
                                             "the explained object's mask");
    cJSON *ms = cJSON_AddArrayToObject(root, "methods");
    for (int i = 0; i < a->n_methods; i++) {
        const method_result *r = &res[i];
        const method_acc *acc = &j->acc[a->methods[i]];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "method", rp_method_name(a->methods[i]));
        cJSON_AddNumberToObject(o, "neg_auc", r->neg_auc);
        cJSON_AddNumberToObject(o, "pos_auc", r->pos_auc);
        json_num(o, "pixel_acc", r->has_seg, r->pixel_acc);
        json_num(o, "miou", r->has_seg, r->miou);
        json_num(o, "map", r->has_seg, r->map);
        json_num(o, "specificity", r->has_spec, r->specificity);
        json_num(o, "pointing", r->has_spec, r->pointing);
        cJSON_AddItemToObject(o, "curve_pos", cJSON_CreateDoubleArray(r->curve_pos, RP_EVAL_STEPS));
        cJSON_AddItemToObject(o, "curve_neg", cJSON_CreateDoubleArray(r->curve_neg, RP_EVAL_STEPS));
        json_num(o, "iou_background", r->has_seg, r->iou[0]);
        json_num(o, "iou_foreground", r->has_seg, r->iou[1]);
        json_num(o, "ap_foreground", r->has_seg, r->ap_fg);
        json_num(o, "ap_background", r->has_seg, r->ap_bg);
        json_num(o, "map_pooled", r->has_seg, r->ap_pooled);
        json_num(o, "explained_share", r->has_spec, r->share_t);
        json_num(o, "others_share", r->has_spec, r->share_o);
        cJSON_AddNumberToObject(o, "n_perturbation", (double)acc->n_pert);
        cJSON_AddNumberToObject(o, "n_segmentation", (double)acc->n_seg);
        cJSON_AddNumberToObject(o, "n_specificity", (double)acc->n_spec);
        cJSON_AddItemToArray(ms, o);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text)
        return NULL;
    /* with a trailing newline, like the other text files */
    size_t len = strlen(text);
    char *t2 = realloc(text, len + 2);
    if (!t2) {
        free(text);
        return NULL;
    }
    t2[len] = '\n';
    t2[len + 1] = 0;
    return t2;
}

static void print_table(const eval_job *j, const method_result *res)
{
    printf("%d images, %lld rows (%lld with a mask, %lld on images with >= 2 objects); unperturbed hits %.2f %%\n",
           (int)j->n_images, (long long)j->n_rows, (long long)j->n_masked, (long long)j->n_multi,
           j->n_rows ? 100.0 * (double)j->n_unperturbed_hits / (double)j->n_rows : 0.0);
    printf("%-24s %8s %8s %9s %8s %8s %8s %8s\n", "method", "neg_auc", "pos_auc", "pixel_acc", "miou", "map", "spec",
           "pointing");
    for (int i = 0; i < j->a->n_methods; i++) {
        const method_result *r = &res[i];
        char f[5][16];
        double v[5] = {r->pixel_acc, r->miou, r->map, r->specificity, r->pointing};
        bool have[5] = {r->has_seg, r->has_seg, r->has_seg, r->has_spec, r->has_spec};
        for (int c = 0; c < 5; c++) {
            if (have[c])
                snprintf(f[c], sizeof f[c], "%.2f", v[c]);
            else
                snprintf(f[c], sizeof f[c], "-");
        }
        printf("%-24s %8.2f %8.2f %9s %8s %8s %8s %8s\n", rp_method_name(j->a->methods[i]), r->neg_auc, r->pos_auc,
               f[0], f[1], f[2], f[3], f[4]);
    }
}

/* The staged path of file `name` in folder d. */
static const char *staged(const out_dir *d, const char *name, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", d->staging, name);
    return path;
}

/* Writes the results (and hits.csv with --dump) into the staging folders;
 * cmd_eval publishes them with the dumps. */
static int write_results(const eval_job *j, const method_result *res)
{
    const eval_args *a = j->a;
    rp_error err = {0};
    char path[8192];
    int rc = 0;
    char *csv = results_csv(j, res), *json = results_json(j, res), *svg = NULL;
    const char *names[RP_METHOD_COUNT];
    double pos[RP_METHOD_COUNT * RP_EVAL_STEPS], neg[RP_METHOD_COUNT * RP_EVAL_STEPS];
    for (int i = 0; i < a->n_methods; i++) {
        names[i] = rp_method_name(a->methods[i]);
        memcpy(pos + i * RP_EVAL_STEPS, res[i].curve_pos, sizeof res[i].curve_pos);
        memcpy(neg + i * RP_EVAL_STEPS, res[i].curve_neg, sizeof res[i].curve_neg);
    }
    rp_eval_curves curves = {.n_methods = a->n_methods, .names = names, .acc_pos = pos, .acc_neg = neg,
                             .title = a->title};
    rp_image png = {0};
    if (!csv || !json) {
        rc = fail("out of memory");
        goto done;
    }
    if (rp_eval_plot_svg(&curves, &svg, &err) || rp_eval_plot_image(&curves, &png, &err)) {
        rc = fail(err.msg);
        goto done;
    }
    if (a->dump && (rc = write_text(staged(j->dump, "hits.csv", path, sizeof path), j->hits ? j->hits : "")))
        goto done;
    if ((rc = write_text(staged(j->out, "results.csv", path, sizeof path), csv)) ||
        (rc = write_text(staged(j->out, "results.json", path, sizeof path), json)) ||
        (rc = write_text(staged(j->out, "perturbation.svg", path, sizeof path), svg)))
        goto done;
    if (rp_image_write_png(staged(j->out, "perturbation.png", path, sizeof path), &png, &err))
        rc = fail(err.msg);
done:
    free(csv);
    free(json);
    free(svg);
    rp_image_release(&png);
    return rc;
}

/* Every file the run writes, in publication order: with --dump the maps
 * and hits.csv, then the results, results.json last. Registered before
 * the first forward pass, so names are checked (length, --force) up front. */
static int register_outputs(const eval_job *j, const eval_image *ims, int n_run, out_txn *t)
{
    const eval_args *a = j->a;
    char name[2048], path[8192], stem[1024];
    int rc = 0;
    for (int i = 0; a->dump && i < n_run; i++) {
        stem_of(ims[i].path, stem, sizeof stem);
        for (int r = 0; r < ims[i].n_rows; r++)
            for (int mi = 0; mi < a->n_methods; mi++)
                for (int k = 0; k < 2; k++) {
                    snprintf(name, sizeof name, "%s.c%d.%s.%s.npy", stem, ims[i].rows[r].cls,
                             rp_method_name(a->methods[mi]), k ? "map" : "pixmap");
                    if ((rc = txn_add(t, j->dump, name, path, sizeof path)))
                        return rc;
                }
    }
    if (a->dump && (rc = txn_add(t, j->dump, "hits.csv", path, sizeof path)))
        return rc;
    static const char *const outputs[] = {"results.csv", "perturbation.svg", "perturbation.png", "results.json"};
    for (int i = 0; i < 4; i++)
        if ((rc = txn_add(t, j->out, outputs[i], path, sizeof path)))
            return rc;
    return 0;
}

/* With --dump, files are named after the image's stem: two images with
 * one stem would overwrite each other's maps. */
static int check_unique_stems(const eval_image *ims, int n)
{
    const char **paths = malloc(sizeof *paths * (size_t)(n > 0 ? n : 1));
    if (!paths)
        return fail("out of memory");
    for (int i = 0; i < n; i++)
        paths[i] = ims[i].path;
    int rc = check_unique_names(paths, n, "--dump files", "rename one, or run without --dump");
    free(paths);
    return rc;
}

int cmd_eval(int argc, char **argv)
{
    eval_args a = {.outdir = "relprop_eval"};
    const char *method_s[MAX_LIST];
    const char *start_s = "0", *limit_s = NULL, *force = NULL, *max_memory = NULL, *no_finite = NULL,
               *threads_s = "0";
    int n_method = 0;
    option_spec specs[] = {
        OPT("--onnx", NULL, &a.onnx), OPT("--data", NULL, &a.data), OPT_LIST("--method", method_s, n_method),
        OPT("--start-layer", NULL, &start_s), OPT("--rules", NULL, &a.rules), OPT("--output", "-o", &a.outdir),
        OPT("--title", NULL, &a.title), OPT("--limit", NULL, &limit_s), OPT("--dump", NULL, &a.dump),
        OPT_FLAG("--force", &force), OPT("--preset", NULL, &a.pre.preset), OPT("--resize", NULL, &a.pre.resize),
        OPT("--crop", NULL, &a.pre.crop), OPT("--interpolation", NULL, &a.pre.interp), OPT("--mean", NULL, &a.pre.mean),
        OPT("--std", NULL, &a.pre.std), OPT("--max-memory", NULL, &max_memory),
        OPT_FLAG("--no-check-finite", &no_finite), OPT("--threads", NULL, &threads_s),
    };
    int rc = parse_options(argc, argv, specs, (int)(sizeof specs / sizeof specs[0]), usage_eval);
    if (rc)
        return rc < 0 ? 0 : rc;
    a.force = force != NULL;
    if (!a.onnx || !a.data)
        return fail("eval needs --onnx MODEL and --data LIST.csv; see 'relprop eval --help'");
    long threads;
    if ((rc = parse_int(start_s, "--start-layer", 0, 100000, &a.start_layer)) ||
        (limit_s && (rc = parse_int(limit_s, "--limit", 1, 100000000, &a.limit))) ||
        (rc = parse_int(threads_s, "--threads", 0, 4096, &threads)))
        return rc;
    rp_set_threads((int)threads);
    for (int i = 0; i < n_method; i++) {
        rp_method mth;
        if (strcmp(method_s[i], "all") == 0) {
            n_method = 0;
            break;
        }
        if (!rp_method_parse(method_s[i], &mth))
            return failf("unknown method '%s'; see 'relprop eval --help'%s", method_s[i], "");
        bool dup = false;
        for (int k = 0; k < a.n_methods; k++)
            dup |= a.methods[k] == mth;
        if (!dup)
            a.methods[a.n_methods++] = mth;
    }
    if (n_method == 0) {
        a.n_methods = 0;
        for (int k = 0; k < RP_METHOD_COUNT; k++)
            a.methods[a.n_methods++] = (rp_method)k;
    }

    eval_job j = {.a = &a};
    eval_image *ims = NULL;
    method_result res[RP_METHOD_COUNT];
    out_dir out = {.lock_fd = -1}, dump = {.lock_fd = -1};
    out_txn t = {0};
    int n_ims = 0;
    rp_error err = {0};
    j.pre_budget = DEFAULT_PREPROCESS_BYTES;
    if (max_memory && (rc = parse_bytes(max_memory, "--max-memory", &j.pre_budget)))
        return rc;
    if ((rc = check_writable_dir(a.outdir)))
        return rc;
    if ((rc = read_eval_list(a.data, &ims, &n_ims)))
        return rc;
    int n_run = a.limit && a.limit < n_ims ? (int)a.limit : n_ims;
    /* Every file readable before the first forward pass: a typo in row 900
     * should not cost the first 899 images' work. Opened as they will be,
     * so a FIFO or device is refused here rather than blocking later. */
    for (int i = 0; i < n_run; i++)
        for (int r = -1; r < ims[i].n_rows; r++) {
            const char *p = r < 0 ? ims[i].path : ims[i].rows[r].mask;
            int fd;
            if (p && rp_file_open_regular(p, r < 0 ? "image" : "mask", 0, &fd, NULL, &err)) {
                rc = failf("%s (listed in the data)", err.msg, "");
                goto done;
            }
            if (p)
                close(fd);
        }
    if (a.dump && (rc = check_unique_stems(ims, n_run)))
        goto done;
    if ((rc = load_model(a.onnx, max_memory, no_finite != NULL, &j.m)))
        goto done;
    const rp_tensor *xi = rp_model_input_info(j.m, 0);
    if (xi->rank != 4 || xi->dtype != RP_FLOAT || (xi->dims[1] != 1 && xi->dims[1] != 3)) {
        rc = failf("%s: eval needs a float32 (1, C, H, W) image input with C = 1 or 3%s", a.onnx, "");
        goto done;
    }
    j.channels = (int)xi->dims[1];
    j.h = (int)xi->dims[2];
    j.w = (int)xi->dims[3];
    j.n_classes = rp_model_output_info(j.m, 0)->count;
    /* The whole run's facts, once: classes in range, start layer, rules. */
    for (int i = 0; i < n_run; i++)
        for (int r = 0; r < ims[i].n_rows; r++)
            if (ims[i].rows[r].cls >= j.n_classes) {
                char buf[160];
                snprintf(buf, sizeof buf, "class %d is out of range: the model has %lld classes (0..%lld)",
                         ims[i].rows[r].cls, (long long)j.n_classes, (long long)j.n_classes - 1);
                rc = failf("%s: %s", ims[i].path, buf);
                goto done;
            }
    int n_attn = rp_model_attention_count(j.m);
    if (n_attn > 0 && a.start_layer >= n_attn) {
        char buf[160];
        snprintf(buf, sizeof buf, "--start-layer %ld out of range: the model has %d attention layers (0..%d)",
                 a.start_layer, n_attn, n_attn - 1);
        rc = fail(buf);
        goto done;
    }
    if (a.rules && strcmp(a.rules, "paper") != 0) {
        const char *kind, *rule;
        if (rp_model_node_count(j.m) > 0 && rp_model_node_rule_in(j.m, a.rules, NULL, 0, &kind, &rule, NULL, &err)) {
            rc = failf("--rules %s: %s", a.rules, err.msg);
            goto done;
        }
    }
    bool want_patches = false;
    for (int i = 0; i < a.n_methods; i++)
        want_patches |= !rp_method_pixel_map(a.methods[i]);
    if (want_patches && rp_model_token_layout(j.m, &j.layout, &err)) {
        rc = fail(err.msg);
        goto done;
    }
    if ((rc = resolve_preprocess(&a.pre, j.m, j.pre_budget, &j.pre, &j.pre_source)))
        goto done;

    /* Locked folders and every name checked before the first forward
     * pass, so a long run never ends in "exists". The run is one unit:
     * results, dumps and hits.csv are published together at the end, or
     * (failure, SIGINT, SIGTERM) none of them. */
    stop_handlers_install();
    if ((rc = out_dir_open(&out, a.outdir)))
        goto done;
    j.out = j.dump = &out;
    if (a.dump && !out_same_dir(a.dump, a.outdir)) {
        if ((rc = check_writable_dir(a.dump)) || (rc = out_dir_open(&dump, a.dump)))
            goto done;
        j.dump = &dump;
    }
    if ((rc = register_outputs(&j, ims, n_run, &t)) || (rc = txn_check_overwrite(&t, a.force)))
        goto done;
    if (a.dump && (rc = hits_add(&j, "stem,class,method,direction,h0,h1,h2,h3,h4,h5,h6,h7,h8,h9\n")))
        goto done;
    bool bar = n_run > 1 && isatty(STDERR_FILENO);
    char name[256];
    for (int i = 0; i < n_run && !stop_requested(); i++) {
        if (bar)
            progress(i, n_run, term_str(ims[i].path, name, sizeof name));
        /* One bad image stops the run: the metrics are only comparable
         * across methods and runs over the same set. */
        if ((rc = eval_image_run(&j, &ims[i])))
            goto done;
    }
    if (stop_requested()) {
        char msg[120];
        snprintf(msg, sizeof msg, "stopped by signal %d; nothing was written", stop_requested());
        rc = fail(msg);
        goto done;
    }
    if (bar)
        progress(n_run, n_run, "");
    for (int i = 0; i < a.n_methods; i++)
        finish(&j.acc[a.methods[i]], &res[i]);
    if ((rc = write_results(&j, res)) || (rc = txn_publish(&t)))
        goto done;
    print_table(&j, res);
    printf("wrote %s/results.csv, results.json, perturbation.svg and perturbation.png\n",
           term_str(a.outdir, name, sizeof name));
done:
    if (rc)
        txn_rollback(&t);
    txn_free(&t);
    out_dir_close(&dump);
    out_dir_close(&out);
    free(j.hits);
    free_images(ims, n_ims);
    rp_model_free(j.m);
    stop_reraise();
    return rc;
}
