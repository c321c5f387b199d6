/* relprop explain: the main job. Photos (or input tensors) in; the top
 * predictions, relevance maps as .npy, overlays and heatmaps as PNG, an
 * optional side-by-side panel and a JSON summary out — for one input or a
 * batch, which can be split across machines with --shard. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "output.h"
#include "relprop/rule.h"

static const char *usage_explain =
    "usage: relprop explain --onnx MODEL (--image IMG ... | --list FILE | --input X.npy ...)\n"
    "                       [--class C ... | --top-classes K] [--method NAME ...] [-o DIR]\n"
    "                       [--labels FILE] [--panel] [--shard K/N] [--batch N] [preprocessing options]\n"
    "\n"
    "Explain MODEL's decisions. For every input, prints the top predictions and writes,\n"
    "per explained class C and method M, into DIR:\n"
    "  <stem>.c<C>.<M>.npy          the map: (grid_h, grid_w) over patches, or (H, W) for lrp_full\n"
    "  <stem>.c<C>.<M>.overlay.png  the heatmap over the model's input, as in the authors' notebook\n"
    "  <stem>.c<C>.<M>.heatmap.png  the heatmap alone\n"
    "  <stem>.json                  model, input, preprocessing, predictions, files and map statistics\n"
    "  <stem>.panel.png             with --panel: input | one overlay per class and method, labelled\n"
    "One failing input is reported and the others still run; the exit status is 2 if any failed.\n"
    "An input's files appear together, its JSON last, or not at all (also on Ctrl-C); DIR is\n"
    "locked against a second relprop for the run.\n"
    "\n"
    "inputs:\n"
    "  --onnx MODEL              the ONNX model (required)\n"
    "  --image IMG ...           PNG, JPEG, BMP or PPM images\n"
    "  --list FILE               a file of image paths, one per line (relative to FILE's folder)\n"
    "  --input X.npy ...         input tensors (float32, the model's input shape, already normalised)\n"
    "  --shard K/N               process only the K-th (0-based) of N equal contiguous slices of the\n"
    "                            inputs, for job arrays (default 0/1: all)\n"
    "  --batch N                 run N inputs through the model at once (default 1; the model needs\n"
    "                            a symbolic batch dimension); the results are the same\n"    "what to explain:\n"
    "  --class C ...             classes to explain (default: the top-1 prediction)\n"
    "  --top-classes K           explain the K best predictions instead\n"
    "  --method NAME ...         default transformer_attribution; any of transformer_attribution,\n"
    "                            rollout, raw_attention, attn_gradcam, lrp_last_layer, lrp_full,\n"
    "                            generic_attention, or 'all'\n"
    "  --start-layer L           first layer aggregated by transformer_attribution and rollout (default 0)\n"
    "  --rules NAME|FILE.json    relevance rule set: paper (default), attnlrp, epsilon, zplus,\n"
    "                            alpha2beta1, gamma, or a JSON rule-set file (docs/rules.md)\n"
    "  --plugin LIB.so ...       load relevance rules from a plugin (docs/rules.md)\n"
    "  --check-conservation      print, per class, relevance in vs out at every node, and flag\n"
    "                            the nodes whose rule should conserve but does not\n"
    "  --conservation-tolerance T  relative tolerance of that check (default 1e-3)\n"
    "output:\n"
    "  -o, --output DIR          where to write (default relprop_out; created if missing)\n"
    "  --labels FILE             class names, one per line (default: the model's relprop.labels\n"
    "                            metadata, else class indices)\n"
    "  --top N                   predictions to print (default 5)\n"
    "  --panel                   also write the side-by-side panel\n"
    "  --force                   overwrite existing results (default: refuse, naming the file);\n"
    "                            only regular files are ever replaced\n"
    "  --dump-intermediates DIR  per class and attention layer l: the attention A, its gradient\n"
    "                            and its relevance, <stem>.c<C>.attn_<l>.npy, .attn_grad_<l>.npy,\n"
    "                            .attn_cam_<l>.npy, each (H, N, N)\n"
    "preprocessing (images; default: the model's relprop.* metadata, else a resize to the model's\n"
    "input size, bilinear, mean = std = 0.5):\n"
    "  --preset NAME             vit (224, mean = std = 0.5) or imagenet (256 bicubic, crop 224)\n"
    "  --resize N | H,W          resize the shorter side to N, or to exactly H x W\n"
    "  --crop N | H,W            center crop\n"
    "  --interpolation NAME      bilinear, bicubic or nearest (PIL's filters, antialiased)\n"
    "  --mean A,B,C  --std A,B,C normalisation\n"
    "limits:\n"
    "  --max-memory N            refuse models needing more than N bytes of tensors (e.g. 2G;\n"
    "                            default: the larger of 1G and 64x the model's size, at most 16G)\n"
    "  --no-check-finite         do not check inputs, weights and values for NaN/Inf\n"
    "  --threads N               threads (default: one per core)\n";

typedef struct explain_args {
    const char *onnx, *outdir, *labels_path, *dump, *rules, *shard;
    preprocess_flags pre;
    bool panel, force, check_conservation;
    double conservation_tolerance;
    rp_rule_registry *registry;
    long top, top_classes, start_layer;
    int classes[MAX_LIST];
    int n_classes;
    rp_method methods[RP_METHOD_COUNT];
    int n_methods;
    int64_t pre_budget; /* bytes preprocessing one image may take */
} explain_args;

typedef struct input_item {
    char *path;
    bool is_tensor; /* .npy input rather than an image */
} input_item;

typedef struct job {
    const explain_args *a;
    rp_model *m;
    rp_preprocess pre;
    const char *pre_source; /* "model metadata", "preset vit", ... */
    char **labels;
    int64_t n_classes;
    bool multilabel;
    rp_token_layout layout;
    out_dir *out, *dump; /* -o and --dump-intermediates (the same when they name one folder) */
} job;

static int job_preprocess(job *j)
{
    return resolve_preprocess(&j->a->pre, j->m, j->a->pre_budget, &j->pre, &j->pre_source);
}

static const char *interp_name(rp_interp i)
{
    return i == RP_INTERP_BICUBIC ? "bicubic" : i == RP_INTERP_NEAREST ? "nearest" : "bilinear";
}

static cJSON *tensor_stats(const rp_tensor *t)
{
    const float *v = t->data;
    double lo = t->count ? v[0] : 0, hi = lo, sum = 0;
    for (int64_t i = 0; i < t->count; i++) {
        lo = v[i] < lo ? v[i] : lo;
        hi = v[i] > hi ? v[i] : hi;
        sum += v[i];
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *shape = cJSON_AddArrayToObject(o, "shape");
    for (int d = 0; d < t->rank; d++)
        cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->dims[d]));
    cJSON_AddNumberToObject(o, "min", lo);
    cJSON_AddNumberToObject(o, "max", hi);
    cJSON_AddNumberToObject(o, "sum", sum);
    return o;
}

static const char *json_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* A writer's message names the staged file; the user knows the final one. */
static int fail_staged(const char *msg, const char *staged, const char *final)
{
    size_t n = strlen(staged);
    if (strncmp(msg, staged, n) != 0)
        return fail(msg);
    return failf("%s%s", final, msg + n);
}

static int write_npy(const char *staged, const char *final, const rp_tensor *t)
{
    rp_error err = {0};
    return rp_npy_write(staged, t, &err) ? fail_staged(err.msg, staged, final) : 0;
}

static int write_png(const char *staged, const char *final, const rp_image *im)
{
    rp_error err = {0};
    return rp_image_write_png(staged, im, &err) ? fail_staged(err.msg, staged, final) : 0;
}

static const char *label_of(const job *j, int c, char *buf, size_t len)
{
    if (j->labels)
        return j->labels[c];
    snprintf(buf, len, "class %d", c);
    return buf;
}

/* Loads the input as a model tensor; for images also fills the JSON's
 * preprocessing record. */
static int load_input(const job *j, const input_item *it, rp_tensor *x, cJSON *summary)
{
    rp_error err = {0};
    if (it->is_tensor) {
        if (rp_npy_read(it->path, x, &err))
            return fail(err.msg);
        if (x->dtype != RP_FLOAT)
            return failf("%s: dtype %s, expected float32", it->path, x->dtype == RP_DOUBLE ? "float64" : "not float32");
        json_add_str(summary, "input_tensor", it->path);
        return 0;
    }
    /* Kind first: a FIFO or device named as an image is refused without
     * blocking or reading forever. */
    int fd;
    if (rp_file_open_regular(it->path, "image", 0, &fd, NULL, &err))
        return fail(err.msg);
    close(fd);
    rp_image im = {0};
    if (rp_image_load(it->path, &im, &err))
        return fail(err.msg);
    const rp_tensor *xi = rp_model_input_info(j->m, 0);
    int channels = xi->rank == 4 ? (int)xi->dims[1] : 3;
    if (channels != 1 && channels != 3) {
        rp_image_release(&im);
        char buf[32];
        snprintf(buf, sizeof buf, "%d", channels);
        return failf("%s: the model takes %s-channel images; relprop feeds 1 (gray) or 3 (RGB)", rp_model_path(j->m),
                     buf);
    }
    int rc = check_preprocess_memory(&j->pre, im.width, im.height, channels, j->a->pre_budget, it->path);
    if (rc) {
        rp_image_release(&im);
        return rc;
    }
    rp_status st = rp_image_to_tensor(&im, &j->pre, channels, x, &err);
    cJSON *img = cJSON_AddObjectToObject(summary, "image");
    json_add_str(img, "path", it->path);
    cJSON_AddNumberToObject(img, "width", im.width);
    cJSON_AddNumberToObject(img, "height", im.height);
    rp_image_release(&im);
    if (st)
        return failf("%s: %s", it->path, err.msg);
    return 0;
}

static void add_preprocessing(const job *j, cJSON *summary)
{
    cJSON *p = cJSON_AddObjectToObject(summary, "preprocessing");
    cJSON_AddStringToObject(p, "source", j->pre_source);
    cJSON_AddNumberToObject(p, "resize", j->pre.resize);
    cJSON_AddNumberToObject(p, "resize_h", j->pre.resize_h);
    cJSON_AddNumberToObject(p, "resize_w", j->pre.resize_w);
    cJSON_AddNumberToObject(p, "crop_h", j->pre.crop_h);
    cJSON_AddNumberToObject(p, "crop_w", j->pre.crop_w);
    cJSON_AddStringToObject(p, "interpolation", interp_name(j->pre.interp));
    cJSON_AddItemToObject(p, "mean", cJSON_CreateFloatArray(j->pre.mean, 3));
    cJSON_AddItemToObject(p, "std", cJSON_CreateFloatArray(j->pre.std, 3));
}

/* The rule developer's view: where relevance is created or lost. */
static void print_conservation(const rp_explanation *e, int ci)
{
    double at_out = 0, at_in = 0;
    int bad = 0, n = rp_explanation_conservation_count(e, ci);
    rp_explanation_conservation_summary(e, ci, &at_out, &at_in, &bad);
    printf("conservation, class %d: relevance %.6g at the output, %.6g at the input; %d node(s) violate\n",
           rp_explanation_class(e, ci), at_out, at_in, bad);
    for (int j = 0; j < n; j++) {
        const rp_conservation_entry *c = rp_explanation_conservation(e, ci, j);
        printf("  node '%s' (%s, %s -> %s): in %.6g  out %.6g  dropped %.6g%s\n", esc(c->name), esc(c->op), c->kind,
               esc(c->rule), c->relevance_in, c->relevance_out, c->relevance_dropped, c->violated ? "  [VIOLATED]" : "");
    }
}

/* Registers input `it`'s files with t, in the order they are written and
 * published: per class and method the map, overlay and heatmap, the
 * intermediates, the panel, and the JSON summary last (the commit record). */
static int register_results(const job *j, const char *stem, const rp_explanation *e, int b, out_txn *t)
{
    const explain_args *a = j->a;
    static const char *const kinds[3] = {"npy", "overlay.png", "heatmap.png"};
    static const char *const inter[3] = {"attn", "attn_grad", "attn_cam"};
    char name[2048], staged[8192];
    int rc = 0;
    for (int ci = 0; ci < rp_explanation_class_count(e); ci++) {
        int cls = rp_explanation_sample_class(e, b, ci);
        for (int mi = 0; mi < rp_explanation_method_count(e); mi++)
            for (int k = 0; k < 3; k++) {
                snprintf(name, sizeof name, "%s.c%d.%s.%s", stem, cls, rp_method_name(rp_explanation_method(e, mi)),
                         kinds[k]);
                if ((rc = txn_add(t, j->out, name, staged, sizeof staged)))
                    return rc;
            }
        for (int l = 0; a->dump && l < rp_explanation_layer_count(e); l++) {
            const rp_tensor *v[3];
            rp_explanation_layer(e, ci, l, &v[0], &v[1], &v[2]);
            for (int k = 0; k < 3; k++) {
                snprintf(name, sizeof name, "%s.c%d.%s_%d.npy", stem, cls, inter[k], l);
                if (v[k] && (rc = txn_add(t, j->dump, name, staged, sizeof staged)))
                    return rc;
            }
        }
    }
    snprintf(name, sizeof name, "%s.panel.png", stem);
    if (a->panel && (rc = txn_add(t, j->out, name, staged, sizeof staged)))
        return rc;
    snprintf(name, sizeof name, "%s.json", stem);
    return txn_add(t, j->out, name, staged, sizeof staged);
}

/* The staged path of registered file *next, which must be `name`; advances. */
static const char *next_file(const out_txn *t, int *next, char *path, size_t len, char *final, size_t flen)
{
    const out_file *f = &t->files[(*next)++];
    snprintf(path, len, "%s/%s", f->dir->staging, f->name);
    txn_final_path(f, final, flen);
    return path;
}

/* Write input `it`'s results — the top predictions, per class and method the
 * map, overlay and heatmap, the panel and the JSON summary — from row b of
 * explanation e; x is that row's input tensor. All or nothing: the files
 * are staged and published together (output.h); on any failure or a stop
 * none of them is left. */
static int write_results(const job *j, const input_item *it, const rp_tensor *x, const rp_explanation *e, int b,
                         cJSON *summary, bool verbose)
{
    const explain_args *a = j->a;
    rp_error err = {0};
    rp_image *tiles = NULL;
    char **captions = NULL;
    out_txn t = {0};
    int n_tiles = 0, rc = 0, next = 0;
    char stem[1024], path[8192], final[8192], buf[1024];
    stem_of(it->path, stem, sizeof stem);
    const rp_tensor *all_logits = rp_explanation_logits(e);
    const int64_t n_logits = all_logits->count / rp_explanation_batch(e);
    const float *logits = (const float *)all_logits->data + b * n_logits;
    if (verbose) {
        printf("%s\n", term_str(it->path, buf, sizeof buf));
        print_predictions(logits, n_logits, (int)a->top, j->labels, j->multilabel);
    }
    for (int ci = 0; a->check_conservation && ci < rp_explanation_class_count(e); ci++)
        print_conservation(e, ci);
    int *order = malloc(sizeof *order * (size_t)n_logits);
    if (!order) {
        rc = fail("out of memory");
        goto done;
    }
    rp_top_classes(logits, n_logits, (int)a->top, order);
    cJSON *preds = cJSON_AddArrayToObject(summary, "predictions");
    for (int k = 0; k < a->top && k < n_logits; k++) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddNumberToObject(p, "class", order[k]);
        json_add_str(p, "label", label_of(j, order[k], buf, sizeof buf));
        cJSON_AddNumberToObject(p, "logit", logits[order[k]]);
        cJSON_AddItemToArray(preds, p);
    }
    free(order);

    int n_cls = rp_explanation_class_count(e), n_m = rp_explanation_method_count(e);
    /* Every name checked before anything is written: an input's results
     * are all new or all untouched. */
    if ((rc = register_results(j, stem, e, b, &t)) || (rc = txn_check_overwrite(&t, a->force)))
        goto done;
    if (a->panel) {
        tiles = calloc((size_t)(1 + n_cls * n_m), sizeof *tiles);
        captions = calloc((size_t)(1 + n_cls * n_m), sizeof *captions);
        if (!tiles || !captions) {
            rc = fail("out of memory");
            goto done;
        }
        if (rp_render_input(x, &tiles[0], &err)) {
            rc = failf("%s: %s", it->path, err.msg);
            goto done;
        }
        captions[n_tiles++] = strdup("input");
    }
    cJSON *maps = cJSON_AddArrayToObject(summary, "maps");
    for (int ci = 0; ci < n_cls; ci++) {
        int cls = rp_explanation_sample_class(e, b, ci);
        for (int mi = 0; mi < n_m; mi++) {
            rp_method method = rp_explanation_method(e, mi);
            const char *mname = rp_method_name(method);
            const rp_tensor *map = rp_explanation_sample_map(e, b, ci, mi);
            bool pixels = rp_method_pixel_map(method);
            int ph = pixels ? 1 : j->layout.patch_h, pw = pixels ? 1 : j->layout.patch_w;
            cJSON *rec = tensor_stats(map);
            cJSON_AddNumberToObject(rec, "class", cls);
            json_add_str(rec, "label", label_of(j, cls, buf, sizeof buf));
            cJSON_AddStringToObject(rec, "method", mname);
            cJSON_AddItemToArray(maps, rec);

            next_file(&t, &next, path, sizeof path, final, sizeof final);
            if ((rc = write_npy(path, final, map)))
                goto done;
            json_add_str(rec, "npy", final);
            rp_image overlay = {0}, heat = {0};
            if (rp_render_overlay(x, map, ph, pw, &overlay, &err) || rp_render_heatmap(map, ph, pw, &heat, &err)) {
                rp_image_release(&overlay);
                rc = failf("%s: %s", it->path, err.msg);
                goto done;
            }
            next_file(&t, &next, path, sizeof path, final, sizeof final);
            rc = write_png(path, final, &overlay);
            json_add_str(rec, "overlay", final);
            next_file(&t, &next, path, sizeof path, final, sizeof final);
            if (!rc)
                rc = write_png(path, final, &heat);
            json_add_str(rec, "heatmap", final);
            rp_image_release(&heat);
            if (!rc && tiles) {
                char cap[1400];
                snprintf(cap, sizeof cap, "%s (%d) %s", label_of(j, cls, buf, sizeof buf), cls, mname);
                tiles[n_tiles] = overlay;
                captions[n_tiles++] = strdup(cap);
            } else {
                rp_image_release(&overlay);
            }
            if (!rc && stop_requested())
                rc = EXIT_BAD;
            if (rc)
                goto done;
        }
        for (int l = 0; a->dump && l < rp_explanation_layer_count(e); l++) {
            const rp_tensor *v[3];
            rp_explanation_layer(e, ci, l, &v[0], &v[1], &v[2]);
            for (int k = 0; k < 3; k++) {
                if (!v[k])
                    continue;
                rp_tensor view = *v[k]; /* (1,H,N,N) → (H,N,N), as the oracle stores them */
                if (view.rank == 4 && view.dims[0] == 1) {
                    view.rank = 3;
                    memmove(view.dims, view.dims + 1, 3 * sizeof view.dims[0]);
                }
                next_file(&t, &next, path, sizeof path, final, sizeof final);
                if ((rc = write_npy(path, final, &view)))
                    goto done;
            }
        }
    }
    if (tiles) {
        rp_image panel = {0};
        if (rp_render_panel(tiles, (const char *const *)captions, n_tiles, 256, &panel, &err)) {
            rc = failf("%s: %s", it->path, err.msg);
            goto done;
        }
        next_file(&t, &next, path, sizeof path, final, sizeof final);
        rc = write_png(path, final, &panel);
        rp_image_release(&panel);
        if (rc)
            goto done;
        json_add_str(summary, "panel", final);
    }
    char *text = cJSON_Print(summary);
    next_file(&t, &next, path, sizeof path, final, sizeof final);
    rp_error werr = {0};
    rc = !text ? fail("out of memory")
         : rp_file_write_atomic(path, text, strlen(text), &werr) ? fail_staged(werr.msg, path, final) : 0;
    free(text);
    if (!rc && stop_requested())
        rc = EXIT_BAD;
    if (!rc)
        rc = txn_publish(&t);
    if (!rc && verbose) {
        if (tiles)
            printf("panel: %s\n", term_str(json_str(summary, "panel"), buf, sizeof buf));
        printf("wrote %d maps (npy, overlay and heatmap PNG) and %s\n", n_cls * n_m, term_str(final, buf, sizeof buf));
    }
done:
    if (rc)
        txn_rollback(&t);
    txn_free(&t);
    for (int i = 0; i < n_tiles; i++) {
        rp_image_release(&tiles[i]);
        free(captions[i]);
    }
    free(tiles);
    free(captions);
    return rc;
}

static rp_explain_options explain_options(const explain_args *a)
{
    return (rp_explain_options){.start_layer = (int)a->start_layer, .rules = a->rules,
                                .keep_intermediates = a->dump != NULL, .top_classes = (int)a->top_classes,
                                .registry = a->registry, .check_conservation = a->check_conservation,
                                .conservation_tolerance = a->conservation_tolerance};
}

/* "[1,3,224,224]" */
static void shape_text(const rp_tensor *t, char *buf, size_t len)
{
    size_t used = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < t->rank && used < len; d++)
        used += (size_t)snprintf(buf + used, len - used, d ? ",%lld" : "%lld", (long long)t->dims[d]);
    if (used < len)
        snprintf(buf + used, len - used, "]");
}

/* One input of the model's batch: its shape with a leading 1. */
static bool fits_row(const rp_tensor *x, const rp_tensor *info)
{
    if (x->rank != info->rank || x->rank < 1 || x->dims[0] != 1)
        return false;
    for (int d = 1; d < x->rank; d++)
        if (x->dims[d] != info->dims[d])
            return false;
    return true;
}

/* Inputs items[0..n) (n <= the model's batch, 1 by default) in one engine
 * run: each is loaded alone (one that fails is reported and left out), the
 * rows are stacked, padded with copies of the last to the model's batch,
 * explained at once, and written one by one. Adds to *ok and *failed. */
static void explain_batch(const job *j, const input_item *items, int n, bool verbose, int *ok, int *failed)
{
    const explain_args *a = j->a;
    const int batch = rp_model_batch(j->m);
    const rp_tensor *info = rp_model_input_info(j->m, 0);
    const int64_t row = info->count / batch;
    rp_error err = {0};
    rp_tensor *xs = calloc((size_t)n, sizeof *xs), stacked = {0};
    cJSON **summaries = calloc((size_t)n, sizeof *summaries);
    int *which = calloc((size_t)n, sizeof *which);
    rp_explanation *e = NULL;
    int loaded = 0;
    if (!xs || !summaries || !which) {
        fail("out of memory");
        *failed += n;
        goto done;
    }
    for (int i = 0; i < n; i++) {
        cJSON *summary = cJSON_CreateObject();
        json_add_str(summary, "model", rp_model_path(j->m));
        int rc = load_input(j, &items[i], &xs[loaded], summary);
        if (!rc && !fits_row(&xs[loaded], info)) {
            char msg[4400], got[160], want[160];
            rp_tensor one = *info;
            one.dims[0] = 1;
            shape_text(&xs[loaded], got, sizeof got);
            shape_text(&one, want, sizeof want);
            snprintf(msg, sizeof msg, "%s: shape %s, but the model takes %s per input", items[i].path, got, want);
            rc = fail(msg);
        }
        if (rc) {
            rp_tensor_release(&xs[loaded]);
            cJSON_Delete(summary);
            (*failed)++;
            continue;
        }
        if (!items[i].is_tensor)
            add_preprocessing(j, summary);
        summaries[loaded] = summary;
        which[loaded++] = i;
    }
    if (loaded == 0)
        goto done;
    if (rp_tensor_alloc(&stacked, RP_FLOAT, info->rank, info->dims, &err)) {
        fail(err.msg);
        *failed += loaded;
        goto done;
    }
    for (int b = 0; b < batch; b++)
        memcpy((float *)stacked.data + b * row, xs[b < loaded ? b : loaded - 1].data, sizeof(float) * (size_t)row);
    rp_explain_options opt = explain_options(a);
    if (rp_explain(j->m, &stacked, a->n_classes ? a->classes : NULL, a->n_classes, a->methods, a->n_methods, &opt,
                   &e, &err)) {
        for (int b = 0; b < loaded; b++)
            failf("%s: %s", items[which[b]].path, err.msg);
        *failed += loaded;
        goto done;
    }
    for (int b = 0; b < loaded; b++) {
        if (write_results(j, &items[which[b]], &xs[b], e, b, summaries[b], verbose))
            (*failed)++;
        else
            (*ok)++;
    }
done:
    for (int b = 0; b < loaded; b++) {
        rp_tensor_release(&xs[b]);
        cJSON_Delete(summaries[b]);
    }
    free(xs);
    free(summaries);
    free(which);
    rp_tensor_release(&stacked);
    rp_explanation_free(e);
}

/* Paths from a list file: one per line, '#' comments and blank lines skipped,
 * relative paths taken from the list file's folder. */
static int read_list(const char *list, input_item **items, int *n, int *cap)
{
    rp_error err = {0};
    char *text = NULL;
    size_t len = 0;
    if (rp_file_read_text(list, "list file", MAX_TEXT_FILE, &text, &len, &err))
        return fail(err.msg);
    const char *slash = strrchr(list, '/');
    int dir_len = slash ? (int)(slash - list) : 0;
    int rc = 0;
    for (char *line = text; *line && !rc;) {
        size_t k = strcspn(line, "\n");
        char *next = line + k + (line[k] != 0);
        line[k] = 0;
        if (k > 0 && line[k - 1] == '\r')
            line[k - 1] = 0;
        if (!line[0] || line[0] == '#') {
            line = next;
            continue;
        }
        if (*n == INT_MAX - 1) {
            rc = failf("%s: too many inputs%s", list, "");
            break;
        }
        if (*n == *cap) {
            int grown_cap = *cap ? (*cap > INT_MAX / 2 ? INT_MAX : *cap * 2) : 64;
            input_item *grown = realloc(*items, sizeof *grown * (size_t)grown_cap);
            if (!grown) {
                rc = fail("out of memory");
                break;
            }
            *items = grown;
            *cap = grown_cap;
        }
        size_t plen = strlen(line) + (size_t)dir_len + 2;
        char *p = malloc(plen);
        if (!p) {
            rc = fail("out of memory");
            break;
        }
        if (line[0] == '/' || dir_len == 0)
            snprintf(p, plen, "%s", line);
        else
            snprintf(p, plen, "%.*s/%s", dir_len, list, line);
        size_t pl = strlen(p);
        (*items)[(*n)++] = (input_item){p, pl > 4 && strcmp(p + pl - 4, ".npy") == 0};
        line = next;
    }
    free(text);
    return rc;
}

/* Every input's files are named after its stem ("dir/cat.png" → "cat"):
 * two inputs with one stem would overwrite each other's results. Checked
 * over the whole list, so every shard refuses alike before anything is
 * written. */
static int check_unique_stems(const input_item *items, int n)
{
    const char **paths = malloc(sizeof *paths * (size_t)(n > 0 ? n : 1));
    if (!paths)
        return fail("out of memory");
    for (int i = 0; i < n; i++)
        paths[i] = items[i].path;
    int rc = check_unique_names(paths, n, "results", "rename one, or explain them in separate runs with different "
                                                     "-o folders");
    free(paths);
    return rc;
}

static bool uses_start_layer(const explain_args *a)
{
    for (int i = 0; i < a->n_methods; i++)
        if (rp_method_uses_start_layer(a->methods[i]))
            return true;
    return false;
}

/* What concerns the whole run, checked once against the model before the
 * first input: the classes, the start layer and the rule set. */
static int check_run(const job *j)
{
    const explain_args *a = j->a;
    char msg[1200], nb[32];
    for (int i = 0; i < a->n_classes; i++)
        if (a->classes[i] >= j->n_classes) {
            snprintf(msg, sizeof msg, "--class %d out of range: the model has %lld classes (0..%lld)", a->classes[i],
                     (long long)j->n_classes, (long long)j->n_classes - 1);
            return fail(msg);
        }
    if (a->top_classes > j->n_classes) {
        snprintf(nb, sizeof nb, "%lld", (long long)j->n_classes);
        return failf("--top-classes: the model has only %s classes%s", nb, "");
    }
    int n_attn = rp_model_attention_count(j->m);
    if (uses_start_layer(a) && n_attn > 0 && a->start_layer >= n_attn) {
        snprintf(msg, sizeof msg, "--start-layer %ld out of range: the model has %d attention layers (0..%d)",
                 a->start_layer, n_attn, n_attn - 1);
        return fail(msg);
    }
    if (a->rules && strcmp(a->rules, "paper") != 0) {
        rp_error err = {0};
        /* A file is looked at before it is read: no FIFO, device or giant. */
        bool is_file = strchr(a->rules, '/') || (strlen(a->rules) > 5 && !strcmp(a->rules + strlen(a->rules) - 5, ".json"));
        int fd;
        if (is_file) {
            if (rp_file_open_regular(a->rules, "rule set file", MAX_TEXT_FILE, &fd, NULL, &err))
                return fail(err.msg);
            close(fd);
        }
        const char *kind, *rule;
        if (rp_model_node_count(j->m) > 0 &&
            rp_model_node_rule_in(j->m, a->rules, a->registry, 0, &kind, &rule, NULL, &err)) {
            snprintf(msg, sizeof msg, "--rules %s: %s", a->rules, err.msg);
            return fail(msg);
        }
    }
    return 0;
}

int cmd_explain(int argc, char **argv)
{
    explain_args a = {.outdir = "relprop_out", .top = 5};
    const char *class_s[MAX_LIST], *method_s[MAX_LIST], *image_s[MAX_LIST], *tensor_s[MAX_LIST];
    const char *list = NULL, *top_s = "5", *topc_s = NULL, *start_s = "0", *panel = NULL, *force = NULL;
    const char *max_memory = NULL, *no_finite = NULL, *threads_s = "0", *check_cons = NULL, *tol_s = NULL;
    const char *batch_s = "1";
    const char *plugin_s[MAX_LIST];
    int n_plugin = 0;
    int n_class = 0, n_method = 0, n_image = 0, n_tensor = 0;
    option_spec specs[] = {
        OPT("--onnx", NULL, &a.onnx), OPT_LIST("--image", image_s, n_image), OPT_LIST("--input", tensor_s, n_tensor),
        OPT("--list", NULL, &list), OPT("--shard", NULL, &a.shard), OPT_LIST("--class", class_s, n_class),
        OPT("--top-classes", NULL, &topc_s), OPT_LIST("--method", method_s, n_method),
        OPT("--start-layer", NULL, &start_s), OPT("--rules", NULL, &a.rules), OPT("--output", "-o", &a.outdir),
        OPT("--labels", NULL, &a.labels_path), OPT("--top", NULL, &top_s), OPT_FLAG("--panel", &panel),
        OPT("--dump-intermediates", NULL, &a.dump), OPT("--preset", NULL, &a.pre.preset), OPT("--resize", NULL, &a.pre.resize),
        OPT("--crop", NULL, &a.pre.crop), OPT("--interpolation", NULL, &a.pre.interp), OPT("--mean", NULL, &a.pre.mean),
        OPT("--std", NULL, &a.pre.std), OPT_FLAG("--force", &force), OPT("--max-memory", NULL, &max_memory),
        OPT_FLAG("--no-check-finite", &no_finite), OPT("--threads", NULL, &threads_s),
        OPT_LIST("--plugin", plugin_s, n_plugin), OPT_FLAG("--check-conservation", &check_cons),
        OPT("--conservation-tolerance", NULL, &tol_s), OPT("--batch", NULL, &batch_s),
    };
    int rc = parse_options(argc, argv, specs, (int)(sizeof specs / sizeof specs[0]), usage_explain);
    if (rc)
        return rc < 0 ? 0 : rc;
    a.panel = panel != NULL;
    a.force = force != NULL;
    a.check_conservation = check_cons != NULL;
    if (tol_s) {
        char *end;
        a.conservation_tolerance = strtod(tol_s, &end);
        if (*end || !(a.conservation_tolerance > 0))
            return failf("--conservation-tolerance must be a positive number, got '%s'%s", tol_s, "");
    }
    if (!a.onnx || (n_image == 0 && n_tensor == 0 && !list))
        return fail("explain needs --onnx MODEL and inputs (--image, --list or --input); see 'relprop explain --help'");
    if ((rc = parse_int(top_s, "--top", 1, 1000000, &a.top)) ||
        (rc = parse_int(start_s, "--start-layer", 0, 100000, &a.start_layer)) ||
        (topc_s && (rc = parse_int(topc_s, "--top-classes", 1, 1000, &a.top_classes))))
        return rc;
    long threads, batch;
    if ((rc = parse_int(threads_s, "--threads", 0, 4096, &threads)) ||
        (rc = parse_int(batch_s, "--batch", 1, 4096, &batch)))
        return rc;
    if (batch > 1 && (a.dump || a.check_conservation))
        return fail("--dump-intermediates and --check-conservation work with --batch 1 only");
    rp_set_threads((int)threads);
    if (topc_s && n_class)
        return fail("give either --class or --top-classes, not both");
    for (int i = 0; i < n_class; i++) {
        long c;
        if ((rc = parse_int(class_s[i], "--class", 0, 10000000, &c)))
            return rc;
        a.classes[a.n_classes++] = (int)c;
    }
    for (int i = 0; i < n_method; i++) {
        rp_method mth;
        if (strcmp(method_s[i], "all") == 0) {
            a.n_methods = 0;
            for (int k = 0; k < RP_METHOD_COUNT; k++)
                a.methods[a.n_methods++] = (rp_method)k;
            break;
        }
        if (!rp_method_parse(method_s[i], &mth))
            return failf("unknown method '%s'; see 'relprop explain --help'%s", method_s[i], "");
        bool dup = false;
        for (int k = 0; k < a.n_methods; k++)
            dup |= a.methods[k] == mth;
        if (!dup)
            a.methods[a.n_methods++] = mth;
    }
    if (a.n_methods == 0)
        a.methods[a.n_methods++] = RP_METHOD_TRANSFORMER_ATTRIBUTION;
    long shard_k = 0, shard_n = 1;
    if (a.shard) {
        char *end, *slash = strchr(a.shard, '/');
        errno = 0;
        shard_k = strtol(a.shard, &end, 10);
        bool ok = slash && end == slash && end != a.shard && !errno;
        if (ok) {
            shard_n = strtol(slash + 1, &end, 10);
            ok = end != slash + 1 && !*end && !errno;
        }
        /* N at most INT_MAX keeps first = items * K / N within int64. */
        if (!ok || shard_n < 1 || shard_n > INT_MAX || shard_k < 0 || shard_k >= shard_n)
            return failf("--shard must be K/N with 0 <= K < N <= 2147483647, got '%s'%s", a.shard, "");
    }
    if (max_memory) {
        if ((rc = parse_bytes(max_memory, "--max-memory", &a.pre_budget)))
            return rc;
    } else {
        a.pre_budget = DEFAULT_PREPROCESS_BYTES;
    }

    job j = {.a = &a};
    input_item *items = NULL;
    out_dir out = {.lock_fd = -1}, dump = {.lock_fd = -1};
    int n_items = 0, cap = 0, failed = 0, done_ok = 0;
    rp_error err = {0};
    if (n_plugin > 0) {
        if (rp_rule_registry_create(&a.registry, &err)) {
            rc = fail(err.msg);
            goto done;
        }
        for (int i = 0; i < n_plugin; i++)
            if (rp_rule_registry_load_plugin(a.registry, plugin_s[i], &err)) {
                rc = fail(err.msg);
                goto done;
            }
    }
    /* The inputs first: a bad list costs no model load. */
    cap = n_image + n_tensor;
    items = calloc((size_t)cap + 1, sizeof *items);
    if (!items) {
        rc = fail("out of memory");
        goto done;
    }
    for (int i = 0; i < n_image; i++)
        items[n_items++] = (input_item){strdup(image_s[i]), false};
    for (int i = 0; i < n_tensor; i++)
        items[n_items++] = (input_item){strdup(tensor_s[i]), true};
    for (int i = 0; i < n_items; i++)
        if (!items[i].path) {
            rc = fail("out of memory");
            goto done;
        }
    if (list && (rc = read_list(list, &items, &n_items, &cap)))
        goto done;
    if (n_items == 0) {
        rc = failf("%s: lists no inputs%s", list ? list : "", "");
        goto done;
    }
    if ((rc = check_unique_stems(items, n_items)))
        goto done;
    /* A --dump-intermediates folder inside -o is checked once -o exists. */
    if ((rc = check_writable_dir(a.outdir)))
        goto done;
    if ((rc = load_model_batch(a.onnx, max_memory, no_finite != NULL, (int)batch, &j.m)))
        goto done;
    const rp_tensor *y = rp_model_output_info(j.m, 0);
    j.n_classes = y->count / batch;
    if ((rc = check_run(&j)))
        goto done;
    if (a.labels_path) {
        if ((rc = read_labels(a.labels_path, j.n_classes, &j.labels)))
            goto done;
    } else {
        j.labels = labels_from_model(j.m, j.n_classes);
    }
    const char *ml = rp_model_metadata(j.m, "relprop.multilabel");
    j.multilabel = ml && strcmp(ml, "1") == 0;
    bool want_patches = false;
    for (int i = 0; i < a.n_methods; i++)
        want_patches |= !rp_method_pixel_map(a.methods[i]);
    if (want_patches && rp_model_token_layout(j.m, &j.layout, &err)) {
        rc = fail(err.msg);
        goto done;
    }
    bool any_image = false;
    for (int i = 0; i < n_items; i++)
        any_image |= !items[i].is_tensor;
    if (any_image && (rc = job_preprocess(&j)))
        goto done;

    /* Everything that concerns the whole run is checked; from here on
     * results are written, into locked folders, input by input. */
    stop_handlers_install();
    if ((rc = out_dir_open(&out, a.outdir)))
        goto done;
    j.out = j.dump = &out;
    if (a.dump && !out_same_dir(a.dump, a.outdir)) {
        if ((rc = check_writable_dir(a.dump)) || (rc = out_dir_open(&dump, a.dump)))
            goto done;
        j.dump = &dump;
    }
    /* Contiguous slices, so shard K of N covers a deterministic block. */
    int first = (int)((int64_t)n_items * shard_k / shard_n), last = (int)((int64_t)n_items * (shard_k + 1) / shard_n);
    int total = last - first;
    bool bar = total > 1 && isatty(STDERR_FILENO);
    char name[256];
    for (int i = first; i < last && !stop_requested(); i += (int)batch) {
        int n = last - i < batch ? last - i : (int)batch;
        if (bar)
            progress(i - first, total, term_str(items[i].path, name, sizeof name));
        explain_batch(&j, &items[i], n, true, &done_ok, &failed);
        if (bar)
            progress(i - first + n, total, term_str(items[i + n - 1].path, name, sizeof name));
    }
    if (stop_requested()) {
        if (bar)
            fputc('\n', stderr);
        char msg[200];
        snprintf(msg, sizeof msg, "stopped by signal %d: %d input(s) complete; the one in progress was removed",
                 stop_requested(), done_ok);
        rc = fail(msg);
        goto done;
    }
    if (total > 1 || failed)
        printf("explained %d of %d inputs%s; %d failed; outputs in %s\n", done_ok, total,
               shard_n > 1 ? " in this shard" : "", failed, term_str(a.outdir, name, sizeof name));
    rc = failed ? EXIT_BAD : 0;
done:
    out_dir_close(&dump);
    out_dir_close(&out);
    for (int i = 0; i < n_items; i++)
        free(items[i].path);
    free(items);
    free_labels(j.labels, j.n_classes);
    rp_model_free(j.m);
    rp_rule_registry_free(a.registry);
    stop_reraise();
    return rc;
}
