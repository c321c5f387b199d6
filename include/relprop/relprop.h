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
/* Write t as .npy. Written to a temporary file in the same folder and renamed,
 * so a failure never leaves a partial file at path. */
rp_status rp_npy_write(const char *path, const rp_tensor *t, rp_error *err);

/* ---- models ---- */

typedef struct rp_model rp_model;

/* Parse an ONNX file into relprop's own graph. Fails on unreadable, truncated
 * or non-ONNX files and on missing external data. *out is NULL on failure. */
rp_status rp_model_open(const char *path, rp_model **out, rp_error *err);
/* Resolve kernels for the model's opsets, infer static shapes (a symbolic
 * batch dimension binds to 1), fold constant subgraphs, allocate run buffers.
 * Calling it twice is harmless. */
rp_status rp_model_prepare(rp_model *m, rp_error *err);
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

/* Run the model on one input (the first graph input), returning the first
 * graph output in *out, which the caller owns. The input must have the
 * prepared shape and dtype. */
rp_status rp_model_run(rp_model *m, const rp_tensor *input, rp_tensor *out, rp_error *err);

/* ---- structure found in the graph (after prepare) ---- */

/* An attention layer (METHOD.md §1): a softmax whose output is the left
 * operand of a product with an activation. */
typedef struct rp_attention_info {
    const char *softmax_node; /* the Softmax node, or the last node of its decomposition */
    const char *product_node; /* the MatMul/Einsum A·V */
    int heads;                /* H */
    int tokens;               /* N */
} rp_attention_info;

int rp_model_attention_count(const rp_model *m);
rp_status rp_model_attention(const rp_model *m, int i, rp_attention_info *info, rp_error *err);

/* How tokens map to the image, inferred from the patch Conv and the token
 * concatenation. Fields are 0 where nothing was found. */
typedef struct rp_token_layout {
    int image_h, image_w;     /* input spatial size */
    int patch_h, patch_w;     /* the patch Conv's kernel = stride */
    int grid_h, grid_w;       /* patches per column / row */
    int prefix_tokens;        /* tokens before the patches (CLS, distillation, registers) */
    int tokens;               /* prefix + grid_h * grid_w */
    const char *patch_node;   /* the Conv that makes the patches */
} rp_token_layout;

rp_status rp_model_token_layout(const rp_model *m, rp_token_layout *out, rp_error *err);

/* The relevance rule node i gets under rule set `rules` (NULL = "paper"),
 * decided from the graph alone: *kind says what the node is to LRP
 * ("linear", "sum", "product", "region", "data", ...), *rule the rule's name,
 * or NULL where relevance never passes (folded nodes, region interiors).
 * Strings are static or owned by the model. After prepare. */
rp_status rp_model_node_rule(rp_model *m, const char *rules, int i, const char **kind, const char **rule,
                             rp_error *err);

/* ---- explanations (METHOD.md §3) ---- */

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

typedef struct rp_explain_options {
    int start_layer;         /* first layer aggregated by transformer_attribution and rollout (default 0) */
    const char *rules;       /* relevance rule set; NULL = "paper" */
    bool keep_intermediates; /* keep A, dA, R_A per layer and class (rp_explanation_layer) */
} rp_explain_options;

typedef struct rp_explanation rp_explanation;

/* One forward pass, then per class one gradient pass and one relevance pass,
 * each only as deep as the requested methods need. classes may be NULL with
 * n_classes 0: the top-1 class is explained. opt may be NULL (defaults).
 * *out is owned by the caller (rp_explanation_free). */
rp_status rp_explain(rp_model *m, const rp_tensor *input, const int *classes, int n_classes,
                     const rp_method *methods, int n_methods, const rp_explain_options *opt,
                     rp_explanation **out, rp_error *err);
void rp_explanation_free(rp_explanation *e);

/* The logits of the forward pass, (1, C). */
const rp_tensor *rp_explanation_logits(const rp_explanation *e);
int rp_explanation_class_count(const rp_explanation *e);
int rp_explanation_class(const rp_explanation *e, int ci);
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

/* ---- images in (src/image/preprocess.c) ---- */

/* 8-bit interleaved pixels, row-major, top row first. */
typedef struct rp_image {
    int width, height, channels; /* channels: 1 (gray) or 3 (RGB) */
    uint8_t *pixels;             /* width * height * channels bytes, owned (rp_image_release) */
} rp_image;

/* Read PNG, JPEG, BMP, PPM/PGM (libstb). Converted to RGB (alpha dropped,
 * gray expanded) as PIL's convert("RGB") does. Zero-size, unreadable or
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

/* Image → (1, C, H, W) float32 input (caller-owned). C = 3, or 1 if
 * channels_out == 1 (luminance as PIL's convert("L")). */
rp_status rp_image_to_tensor(const rp_image *im, const rp_preprocess *p, int channels_out, rp_tensor *out,
                             rp_error *err);

/* ---- heatmaps out (src/image/render.c), METHOD.md §4 ---- */

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

#ifdef __cplusplus
}
#endif
#endif
