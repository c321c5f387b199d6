/* relprop — explain transformer classifiers exported to ONNX.
 *
 * The story of a use, in the order data flows:
 *
 *     rp_error err;
 *     rp_model *m = NULL;
 *     if (rp_model_load("vit.onnx", &m, &err) != RP_OK) { puts(err.msg); ... }
 *     rp_tensor x;                               // (1,3,H,W) float32, normalised
 *     rp_npy_read("x.npy", &x, &err);
 *     rp_tensor logits = {0};
 *     rp_model_run(m, &x, &logits, &err);        // logits: (1,C), owned by caller
 *     ...
 *     rp_tensor_release(&logits); rp_tensor_release(&x); rp_model_free(m);
 *
 * Loading is split in two steps for tools that want to look before they run:
 * rp_model_open builds the graph (and fails only on files it cannot read),
 * rp_model_prepare resolves kernels, infers shapes and folds constants (and
 * fails on unsupported ops or inconsistent shapes). rp_model_load does both.
 *
 * Conventions: every fallible function returns RP_OK or an error code and
 * fills *err with one line naming the file, node, op and what was expected.
 * err may be NULL. Nothing here prints, aborts or exits. Tensors handed back
 * to the caller are owned by the caller and released with rp_tensor_release.
 */
#ifndef RELPROP_H
#define RELPROP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RP_VERSION_STRING "0.1.0"

typedef enum rp_status {
    RP_OK = 0,
    RP_ERR_IO,          /* a file could not be read or written */
    RP_ERR_FORMAT,      /* not ONNX / not .npy, truncated, corrupt */
    RP_ERR_UNSUPPORTED, /* an op, attribute value or dtype relprop does not implement */
    RP_ERR_SHAPE,       /* shapes that do not fit together */
    RP_ERR_DTYPE,       /* wrong element type */
    RP_ERR_VALUE,       /* a bad value: attribute out of range, NaN, index out of bounds */
    RP_ERR_NOMEM,
    RP_ERR_ARG,         /* a caller passed something inconsistent */
    RP_ERR_INTERNAL
} rp_status;

typedef struct rp_error {
    rp_status code;
    char msg[1024];
} rp_error;

/* "io", "format", ... for messages. */
const char *rp_status_name(rp_status s);

/* ONNX TensorProto.DataType numbers. */
typedef enum rp_dtype {
    RP_UNDEFINED = 0,
    RP_FLOAT = 1,
    RP_UINT8 = 2,
    RP_INT8 = 3,
    RP_UINT16 = 4,
    RP_INT16 = 5,
    RP_INT32 = 6,
    RP_INT64 = 7,
    RP_STRING = 8,
    RP_BOOL = 9,
    RP_FLOAT16 = 10,
    RP_DOUBLE = 11,
    RP_UINT32 = 12,
    RP_UINT64 = 13
} rp_dtype;

#define RP_MAX_RANK 8

typedef struct rp_tensor {
    rp_dtype dtype;
    int rank;
    int64_t dims[RP_MAX_RANK]; /* outermost first */
    int64_t count;             /* product of dims; 1 for rank 0 */
    void *data;                /* C order; owner depends on where it came from */
} rp_tensor;

/* Allocate a zero-filled tensor; the caller owns it (rp_tensor_release).
 * A zero-element tensor is valid (data may then be NULL). */
rp_status rp_tensor_alloc(rp_tensor *t, rp_dtype dt, int rank, const int64_t *dims, rp_error *err);
/* Free data of a tensor from rp_tensor_alloc / rp_npy_read / rp_model_run and
 * zero the struct. Safe on a zeroed tensor. */
void rp_tensor_release(rp_tensor *t);

/* NumPy .npy files (format 1.0–3.0, C order, little-endian; float32, float64,
 * int8..int64, uint8..uint64, bool). The tensor is owned by the caller. */
rp_status rp_npy_read(const char *path, rp_tensor *out, rp_error *err);
/* Write t as .npy, whole or not at all (rp_file_write_atomic's rules: only
 * an absent name or a regular file at path is replaced). rp_npy_read reads
 * regular files only (a FIFO or device is refused without blocking). */
rp_status rp_npy_write(const char *path, const rp_tensor *t, rp_error *err);

/* ---- files (src/core/atomic_file.c) ----
 * Every file relprop writes is whole or absent: it is written to a new
 * temporary in the target's folder (a random name, O_CREAT | O_EXCL |
 * O_NOFOLLOW: nothing planted there is followed), fsync'd and renamed over
 * the target. Only an absent name or a regular file is replaced: a symlink,
 * device, FIFO, socket or directory at the target is an error, and nothing
 * is written. Inputs are opened with O_NONBLOCK and checked with fstat
 * before a byte is read: only regular files are read, within a size bound. */

/* Write data[0..len) to path as above. */
rp_status rp_file_write_atomic(const char *path, const void *data, size_t len, rp_error *err);
/* rename(from, to) under the same rule for `to`; from must be a regular file. */
rp_status rp_file_rename_regular(const char *from, const char *to, rp_error *err);
/* Open path for reading without ever blocking: a FIFO, device, socket or
 * directory is refused by kind, a file above max_bytes (0 = no bound) by
 * size, naming `what` ("labels file", ...). *fd is the caller's to close;
 * *size (may be NULL) the size fstat saw. */
rp_status rp_file_open_regular(const char *path, const char *what, int64_t max_bytes, int *fd, int64_t *size,
                               rp_error *err);
/* A whole text file of at most max_bytes, opened as above, NUL-terminated
 * (*out malloc'd, the caller frees it); a file holding NUL bytes is refused. */
rp_status rp_file_read_text(const char *path, const char *what, int64_t max_bytes, char **out, size_t *len,
                            rp_error *err);

/* Threads for all of relprop's work: its pool splits matrix products into
 * single-threaded OpenBLAS calls and runs its own loops (OpenBLAS's own
 * threads are turned off). n <= 0 means one per online core, also the
 * default when this is never called. Returns the count in use. Process-wide.
 * The same count gives the same bits every time; another count may move the
 * last bit on CPUs whose OpenBLAS kernels sum a panel's edges differently
 * (README, Speed). */
int rp_set_threads(int n);

/* ---- models ---- */

typedef struct rp_model rp_model;

/* Parse an ONNX file into relprop's own graph. Fails on unreadable, truncated
 * or non-ONNX files and on missing external data. *out is NULL on failure. */
rp_status rp_model_open(const char *path, rp_model **out, rp_error *err);
/* Resolve kernels for the model's opsets, infer static shapes (a symbolic
 * batch dimension binds to 1), fold constant subgraphs, allocate run buffers.
 * Calling it twice is harmless. */
rp_status rp_model_prepare(rp_model *m, rp_error *err);
/* Ceiling on the bytes prepare may allocate for the model's values (0 = the
 * default, 16 GiB). A model that needs more fails with an error naming the
 * tensor. Call between rp_model_open and rp_model_prepare. */
rp_status rp_model_set_max_memory(rp_model *m, int64_t bytes, rp_error *err);
/* NaN in a weight or any computed value, and Inf in the input or the
 * outputs, are errors naming where they first appear. On by default; the
 * scan is cheap next to the matrix products. */
void rp_model_set_check_finite(rp_model *m, bool on);
/* Before prepare: run `batch` inputs at once. The model's input must have a
 * symbolic leading dimension (it binds to `batch`; otherwise to 1). Inputs
 * then have `batch` rows, and rp_explain explains every row (each for its own
 * classes) in one pass per class rank: the rows of a ViT do not interact. */
rp_status rp_model_set_batch(rp_model *m, int batch, rp_error *err);
int rp_model_batch(const rp_model *m);
/* rp_model_open + rp_model_prepare. */
rp_status rp_model_load(const char *path, rp_model **out, rp_error *err);
void rp_model_free(rp_model *m);

const char *rp_model_path(const rp_model *m);
/* Opset of the default ONNX domain (0 if the model does not import it). */
int rp_model_opset(const rp_model *m);

/* Graph inputs that are not initializers, and graph outputs. info gives name,
 * dtype and shape (data NULL); shapes are final only after prepare. */
int rp_model_input_count(const rp_model *m);
const char *rp_model_input_name(const rp_model *m, int i);
const rp_tensor *rp_model_input_info(const rp_model *m, int i);
int rp_model_output_count(const rp_model *m);
const char *rp_model_output_name(const rp_model *m, int i);
const rp_tensor *rp_model_output_info(const rp_model *m, int i);

/* The nodes as they came from the file (folded ones included). */
int rp_model_node_count(const rp_model *m);
const char *rp_model_node_name(const rp_model *m, int i);
const char *rp_model_node_op(const rp_model *m, int i);
const char *rp_model_node_domain(const rp_model *m, int i);
/* Whether relprop has a kernel for node i at the model's opset. */
bool rp_model_node_supported(const rp_model *m, int i);
/* Whether node i was computed at load time (constant folding). After prepare. */
bool rp_model_node_folded(const rp_model *m, int i);
/* After prepare: how many op-by-op exact GELUs (Div, Erf, Add, Mul, Mul) were
 * fused into one Gelu node; the four nodes each leaves behind count as folded. */
int rp_model_fused_gelu_count(const rp_model *m);

/* Run the model on one input (the first graph input), returning the first
 * graph output in *out, which the caller owns. The input must have the
 * prepared shape and dtype. On a model that has not explained yet, products
 * do the transposes, scalings and bias additions around them (README, Speed),
 * which may change the outputs' last bit; after an explanation the run reuses
 * its memory plan, which does not. */
rp_status rp_model_run(rp_model *m, const rp_tensor *input, rp_tensor *out, rp_error *err);

/* ---- structure found in the graph (after prepare) ---- */

/* An attention layer (docs/method.md §2.1): a softmax whose output is the left
 * operand of a product with an activation. */
typedef struct rp_attention_info {
    const char *softmax_node; /* the Softmax node, or the last node of its decomposition */
    const char *product_node; /* the MatMul/Einsum A·V */
    int heads;                /* H */
    int tokens;               /* N */
} rp_attention_info;

int rp_model_attention_count(const rp_model *m);
rp_status rp_model_attention(const rp_model *m, int i, rp_attention_info *info, rp_error *err);

/* How tokens map to the image, inferred from the patch Conv, the attention
 * layers and the classifier's readout. Fails, naming the node, when the
 * attention is not global over one token sequence (e.g. Swin's windows) or
 * the tokens cannot be mapped to the patch grid. */
typedef struct rp_token_layout {
    int image_h, image_w;     /* input spatial size */
    int patch_h, patch_w;     /* the patch Conv's kernel = stride */
    int grid_h, grid_w;       /* patches per column / row */
    int prefix_tokens;        /* tokens before the patches (CLS, distillation, registers) */
    int tokens;               /* prefix + grid_h * grid_w */
    const char *patch_node;   /* the Conv that makes the patches */
    /* How the classifier reads the last block's token rows (docs/method.md §2.3):
     * "token row" (CLS), "mean of token rows" (distilled DeiT), "mean over
     * tokens" (mean pooling) or "row 0 (assumed)"; the rows with a non-zero
     * weight (at most 16 listed). */
    const char *readout;
    int n_readout_rows;
    int readout_rows[16];
    float readout_weights[16];
} rp_token_layout;

rp_status rp_model_token_layout(const rp_model *m, rp_token_layout *out, rp_error *err);

/* Rule registries (include/relprop/rule.h): the built-in rules plus those of
 * loaded plugins. */
typedef struct rp_rule_registry rp_rule_registry;
struct rp_rule_params;

/* The relevance rule node i gets under rule set `rules` (NULL = "paper"),
 * decided from the graph alone: *kind says what the node is to LRP
 * ("linear", "sum", "product", "region", "data", ...), *rule the rule's name,
 * or NULL where relevance never passes (folded nodes, region interiors).
 * Strings are static or owned by the model. After prepare. */
rp_status rp_model_node_rule(rp_model *m, const char *rules, int i, const char **kind, const char **rule,
                             rp_error *err);
/* The same with rule names resolved through a registry (plugin rules; NULL =
 * built-ins only), and the node's rule parameters (*params may be NULL where
 * *rule is; params itself may be NULL when not wanted). `rules` is a built-in
 * set name ("paper", "attnlrp", "epsilon", "zplus", "alpha2beta1", "gamma")
 * or a JSON rule-set file (docs/rules.md). */
rp_status rp_model_node_rule_in(rp_model *m, const char *rules, rp_rule_registry *registry, int i,
                                const char **kind, const char **rule, const struct rp_rule_params **params,
                                rp_error *err);

/* ---- explanations (docs/method.md §5) ---- */

typedef enum rp_method {
    RP_METHOD_TRANSFORMER_ATTRIBUTION, /* the paper's method */
    RP_METHOD_ROLLOUT,                 /* attention rollout (class-agnostic) */
    RP_METHOD_RAW_ATTENTION,           /* last layer's attention */
    RP_METHOD_ATTN_GRADCAM,            /* GradCAM on the last attention layer */
    RP_METHOD_LRP_LAST_LAYER,          /* partial LRP */
    RP_METHOD_LRP_FULL,                /* LRP down to the pixels (an image-sized map) */
    RP_METHOD_GENERIC_ATTENTION,       /* Chefer et al., ICCV 2021 */
    RP_METHOD_COUNT
} rp_method;

/* "transformer_attribution", ...; NULL for an invalid value. */
const char *rp_method_name(rp_method m);
/* Parse a method name; false if unknown. */
bool rp_method_parse(const char *name, rp_method *out);
/* Whether the method's map is over the input's pixels, (H, W) (lrp_full),
 * rather than over the patch grid, (grid_h, grid_w). */
bool rp_method_pixel_map(rp_method m);
/* Whether the method aggregates layers from rp_explain_options.start_layer up. */
bool rp_method_uses_start_layer(rp_method m);

/* The k largest of n logits into out[0..k), largest first; equal logits
 * keep index order (so {1, 1, 2} ranks 2, 0, 1). k above n is taken as n. */
void rp_top_classes(const float *logits, int64_t n, int k, int *out);

typedef struct rp_explain_options {
    int start_layer;         /* first layer aggregated by transformer_attribution and rollout (default 0) */
    const char *rules;       /* relevance rule set; NULL = "paper" */
    bool keep_intermediates; /* keep A, dA, R_A per layer and class (rp_explanation_layer) */
    int top_classes;         /* with no classes given: explain the top-k predictions (0 = 1) */
    /* Where rule names in `rules` resolve: built-ins plus loaded plugins
     * (rp_rule_registry_load_plugin). NULL = built-in rules only. A model
     * explained with a registry keeps a reference to it. */
    rp_rule_registry *registry;
    /* Per node and class, compare the relevance arriving at the node with
     * what its rule sends on (rp_explanation_conservation). Relevance is then
     * propagated down to the model input whatever the methods. */
    bool check_conservation;
    double conservation_tolerance; /* relative to the node's sum |R|; 0 = 1e-3 */
} rp_explain_options;

typedef struct rp_explanation rp_explanation;

/* One forward pass, then per class one gradient pass and one relevance pass,
 * each only as deep as the requested methods need. classes may be NULL with
 * n_classes 0: the top-k classes are explained (opt->top_classes, default 1). opt may be NULL (defaults).
 * *out is owned by the caller (rp_explanation_free). */
rp_status rp_explain(rp_model *m, const rp_tensor *input, const int *classes, int n_classes,
                     const rp_method *methods, int n_methods, const rp_explain_options *opt,
                     rp_explanation **out, rp_error *err);
void rp_explanation_free(rp_explanation *e);

/* The logits of the forward pass, (1, C) (or (B, C): rp_model_set_batch). */
const rp_tensor *rp_explanation_logits(const rp_explanation *e);
int rp_explanation_class_count(const rp_explanation *e);
int rp_explanation_class(const rp_explanation *e, int ci);
/* With rp_model_set_batch: the logits are (B, C); every sample b has its own
 * classes and maps. The accessors without a sample are sample 0's. */
int rp_explanation_batch(const rp_explanation *e);
int rp_explanation_sample_class(const rp_explanation *e, int b, int ci);
const rp_tensor *rp_explanation_sample_map(const rp_explanation *e, int b, int ci, int mi);
int rp_explanation_method_count(const rp_explanation *e);
rp_method rp_explanation_method(const rp_explanation *e, int mi);
/* The map for class ci and method mi: (grid_h, grid_w) over patches, or
 * (H, W) pixels for lrp_full. Owned by e. */
const rp_tensor *rp_explanation_map(const rp_explanation *e, int ci, int mi);
/* With keep_intermediates: attention layer l's A, dA (gradient of the class
 * logit w.r.t. A) and R_A (relevance of A as an operand of A·V), each
 * (H, N, N); an entry is NULL when no requested method needed it. */
int rp_explanation_layer_count(const rp_explanation *e);
void rp_explanation_layer(const rp_explanation *e, int ci, int l, const rp_tensor **attn,
                          const rp_tensor **attn_grad, const rp_tensor **attn_cam);

/* With check_conservation: one entry per node that relevance passed
 * through, in reverse topological order (the order relevance flows). */
typedef struct rp_conservation_entry {
    int node;                 /* index as in rp_model_node_name */
    const char *name, *op;    /* the node's name and op type */
    const char *kind;         /* what the node is to LRP ("linear", "sum", ...) */
    const char *rule;         /* the rule applied */
    double relevance_in;      /* sum of the relevance arriving at the node's outputs */
    double relevance_out;     /* sum sent on to its activation inputs */
    double relevance_dropped; /* sum sent to constant summands (a bias, a constant token) */
    double magnitude;         /* sum of |relevance| arriving: the tolerance's scale */
    bool should_conserve;     /* the rule, with its parameters, claims conservation */
    bool violated;            /* should_conserve and |in - out - dropped| > tolerance * magnitude */
} rp_conservation_entry;

/* Entries for class ci (0 without check_conservation). Strings owned by e. */
int rp_explanation_conservation_count(const rp_explanation *e, int ci);
const rp_conservation_entry *rp_explanation_conservation(const rp_explanation *e, int ci, int j);
/* Totals for class ci: relevance seeded at the output (the one-hot: 1),
 * relevance reaching the model input, and how many nodes violate. Any
 * pointer may be NULL. */
void rp_explanation_conservation_summary(const rp_explanation *e, int ci, double *at_output, double *at_input,
                                         int *n_violations);

/* ---- images in (src/image/preprocess.c) ---- */

/* 8-bit interleaved pixels, row-major, top row first. */
typedef struct rp_image {
    int width, height, channels; /* channels: 1 (gray) or 3 (RGB) */
    uint8_t *pixels;             /* width * height * channels bytes, owned (rp_image_release) */
} rp_image;

/* Read PNG (libpng), JPEG (libjpeg-turbo, decoded as Pillow does), BMP and
 * PPM/PGM (relprop's own readers). Converted to RGB (alpha dropped, gray
 * expanded) as PIL's convert("RGB") does. Zero-size, unreadable or
 * corrupt files are errors naming the file. */
rp_status rp_image_load(const char *path, rp_image *out, rp_error *err);
void rp_image_release(rp_image *im);
/* Write an RGB or gray image as PNG, atomically (temporary file + rename). */
rp_status rp_image_write_png(const char *path, const rp_image *im, rp_error *err);

typedef enum rp_interp { RP_INTERP_BILINEAR, RP_INTERP_BICUBIC, RP_INTERP_NEAREST } rp_interp;

/* torchvision-style preprocessing: Resize (PIL filters, antialiased when
 * downscaling, exactly as PIL computes them), CenterCrop, ToTensor (x/255),
 * Normalize(mean, std). */
typedef struct rp_preprocess {
    int resize;             /* Resize(int): the shorter side becomes this; 0 = see resize_h/w */
    int resize_h, resize_w; /* Resize((h, w)); all three 0 = no resize */
    int crop_h, crop_w;     /* CenterCrop; 0 = none */
    rp_interp interp;
    float mean[3], std[3];
} rp_preprocess;

/* "vit": Resize((224,224)) bilinear, mean = std = 0.5 (the paper's notebook);
 * "imagenet": Resize(256) bicubic, CenterCrop(224), ImageNet mean/std. */
rp_status rp_preprocess_preset(const char *name, rp_preprocess *out, rp_error *err);
/* The preprocessing the exporter stored in the model's metadata_props
 * (keys relprop.resize, relprop.crop, relprop.interpolation, relprop.mean,
 * relprop.std, or relprop.preset); *found false if none. Sizes the model's
 * fixed input cannot take are an error. */
rp_status rp_model_preprocess(const rp_model *m, rp_preprocess *out, bool *found, rp_error *err);
/* A metadata_props value by key, or NULL. Owned by the model. */
const char *rp_model_metadata(const rp_model *m, const char *key);
/* What the CLI and the Python package use when no preprocessing is given
 * (src/image/default_preprocess.c): the model's metadata (rp_model_preprocess)
 * if it has any, else a bilinear resize to the model's input size with
 * mean = std = 0.5 (the paper's notebook). *source (may be NULL) says which,
 * in words; static. After prepare, so that the input size is known. */
rp_status rp_model_default_preprocess(const rp_model *m, rp_preprocess *out, const char **source, rp_error *err);

/* Image → (1, C, H, W) float32 input (caller-owned). C = 3, or 1 if
 * channels_out == 1 (luminance as PIL's convert("L")). */
rp_status rp_image_to_tensor(const rp_image *im, const rp_preprocess *p, int channels_out, rp_tensor *out,
                             rp_error *err);

/* ---- heatmaps out (src/image/render.c), docs/method.md §6 ---- */

/* The notebook's overlay: map (grid_h, grid_w) upsampled bilinearly (half-pixel
 * centres) by (patch_h, patch_w) — or a pixel map (H, W) used as is —,
 * min-max normalised, coloured with OpenCV's JET table, added to the model
 * input (1,C,H,W) min-max scaled to [0,1], divided by the maximum, 8-bit RGB.
 * A constant map (max == min) counts as all zeros. */
rp_status rp_render_overlay(const rp_tensor *input, const rp_tensor *map, int patch_h, int patch_w, rp_image *out,
                            rp_error *err);
/* The plain heatmap: the same upsampled, normalised map in JET colours. */
rp_status rp_render_heatmap(const rp_tensor *map, int patch_h, int patch_w, rp_image *out, rp_error *err);
/* The model input alone, min-max scaled to 8-bit RGB (what the overlay is drawn on). */
rp_status rp_render_input(const rp_tensor *input, rp_image *out, rp_error *err);
/* Tiles side by side (same height, each scaled up to at least min_tile pixels
 * high with nearest neighbour), each with a caption underneath in a built-in
 * bitmap font; white background. */
rp_status rp_render_panel(const rp_image *tiles, const char *const *captions, int n, int min_tile, rp_image *out,
                          rp_error *err);


/* ==== evaluation (src/methods/eval_*.c), docs/method.md §7 ==================
 * The paper's perturbation and segmentation tests and a class-specificity
 * test, as building blocks; `relprop eval` strings them together. Maps are
 * first brought to pixels (rp_eval_pixel_map); every metric then reads an
 * H x W float array and, where needed, an H x W mask (non-zero = object). */

/* Perturbation steps: 0, 10, ..., 90 % of the pixels removed. */
#define RP_EVAL_STEPS 10

/* A map at pixel resolution: a (grid_h, grid_w) map upsampled bilinearly by
 * (patch_h, patch_w) with half-pixel centres, exactly as rp_render_overlay
 * does before normalising (PyTorch's interpolate, align_corners=False); a
 * pixel map (lrp_full) with patch 1 x 1 is copied. Not normalised. out must
 * hold (grid_h * patch_h) * (grid_w * patch_w) floats. Non-finite maps fail. */
rp_status rp_eval_pixel_map(const rp_tensor *map, int patch_h, int patch_w, float *out, rp_error *err);

/* The n indices of v in removal order: most relevant (largest) first, or
 * least relevant (smallest) first; equal values in ascending index order in
 * both cases, so the order is total and deterministic. */
rp_status rp_eval_order(const float *v, int64_t n, bool most_relevant_first, int64_t *order, rp_error *err);

/* Pixels removed at perturbation step i of RP_EVAL_STEPS: floor(n * i / 10),
 * in integers (the paper's int(n * 0.1 * i) without its float rounding). */
int64_t rp_eval_step_count(int64_t n, int step);

/* Area under a curve sampled at x = 0, dx, 2 dx, ...: the trapezoid rule,
 * sum_{i=1}^{n-1} dx * (y[i-1] + y[i]) / 2, as np.trapz(y, dx=dx). relprop
 * eval reports 100 * rp_eval_auc(acc, RP_EVAL_STEPS, 0.1) (max 90). */
double rp_eval_auc(const double *y, int n, double dx);

/* Average precision of scores against binary labels as scikit-learn's
 * average_precision_score computes it: sort by score, descending; at each
 * distinct score (ties form one threshold) take precision P and recall R;
 * AP = sum (R_k - R_{k-1}) P_k, step-wise, no interpolation. No positive
 * label gives 0 (the paper's np.nan_to_num of sklearn's NaN). */
rp_status rp_eval_average_precision(const float *score, const uint8_t *label, int64_t n, double *ap, rp_error *err);

/* The segmentation test on one map (the paper's imagenet_seg_eval.py):
 * m = min-max normalised pixel map (all zeros if constant), foreground =
 * m > mean(m); counts for pixel accuracy and per-class IoU (class 0 =
 * background, 1 = foreground; summed over a data set before dividing, as
 * the paper does), and AP of m against the mask and of 1 - m against the
 * background. */
typedef struct rp_eval_seg {
    int64_t correct, labeled;     /* pixels whose class is right; all pixels */
    int64_t inter[2], uni[2];     /* intersection and union per class */
    double ap_fg, ap_bg;          /* AP(m, mask), AP(1 - m, 1 - mask) */
    double ap_pooled;             /* AP of [1 - m, m] against [1 - mask, mask] as one ranking of 2n
                                     scores: what the paper's get_ap_scores computes */
} rp_eval_seg;
rp_status rp_eval_segmentation(const float *pixmap, const uint8_t *mask, int64_t n, rp_eval_seg *out, rp_error *err);

/* Class specificity of one map for an image with several labelled objects:
 * of the positive relevance (sum of max(map, 0)), the share inside the
 * explained object's mask and the share inside the other objects' masks
 * (pixels in both count for the explained one); and the pointing game: the
 * map's maximum (first pixel on ties) lies inside the explained mask. */
typedef struct rp_eval_spec {
    double share_target, share_others; /* in [0, 1]; 0 when there is no positive relevance */
    bool pointing_hit;
} rp_eval_spec;
rp_status rp_eval_specificity(const float *pixmap, const uint8_t *target_mask, const uint8_t *others_mask, int64_t n,
                              rp_eval_spec *out, rp_error *err);

/* Whether class cls is among the k largest logits (ties by index, as
 * rp_top_classes orders them). */
bool rp_eval_in_top_k(const float *logits, int64_t n, int cls, int k);

/* The perturbation test for one map. input is the normalised (1, C, H, W)
 * model input, pixmap its H x W pixel map, mean/std the C normalisation
 * constants; removing a pixel sets it to 0 in the un-normalised image in
 * every channel, i.e. to (0 - mean_c) / std_c here. For steps 1..9 the
 * first rp_eval_step_count pixels of the removal order (rp_eval_order) are
 * removed and the model is run (rp_model_run); hits[i] = 1 when cls is
 * still in the top k. hits[0] is left to the caller (the unperturbed run is
 * shared by all maps of an image). */
rp_status rp_eval_perturbation(rp_model *m, const rp_tensor *input, const float *pixmap, const float *mean,
                               const float *std, int cls, int k, bool most_relevant_first,
                               uint8_t hits[RP_EVAL_STEPS], rp_error *err);

/* The perturbation plot: accuracy (%) against the fraction removed, one
 * line per method, positive perturbation in the left panel and negative in
 * the right. acc_pos/acc_neg hold n_methods * RP_EVAL_STEPS values in [0, 1]. */
typedef struct rp_eval_curves {
    int n_methods;
    const char *const *names;
    const double *acc_pos, *acc_neg;
    const char *title; /* may be NULL */
} rp_eval_curves;
/* As SVG text; *out is malloc'd, the caller frees it. */
rp_status rp_eval_plot_svg(const rp_eval_curves *c, char **out, rp_error *err);
/* As an RGB image drawn by relprop itself (anti-aliased lines, a small
 * bitmap font), the caller releases it. */
rp_status rp_eval_plot_image(const rp_eval_curves *c, rp_image *out, rp_error *err);
/* ==== end of evaluation ==== */

#ifdef __cplusplus
}
#endif
#endif
