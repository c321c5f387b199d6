#include "methods/method_table.h"

#include <string.h>

/* The maps that take no start layer. */
static rp_status raw_attention(const rp_map_input *in, int start, float *out, rp_error *err)
{
    (void)start;
    return rp_map_raw_attention(in, out, err);
}

static rp_status attn_gradcam(const rp_map_input *in, int start, float *out, rp_error *err)
{
    (void)start;
    return rp_map_attn_gradcam(in, out, err);
}

static rp_status lrp_last_layer(const rp_map_input *in, int start, float *out, rp_error *err)
{
    (void)start;
    return rp_map_lrp_last_layer(in, out, err);
}

static rp_status generic_attention(const rp_map_input *in, int start, float *out, rp_error *err)
{
    (void)start;
    return rp_map_generic_attention(in, out, err);
}

/* Indexed by rp_method (test_method_table checks every value has its row). */
static const rp_method_row rows[RP_METHOD_COUNT] = {
    [RP_METHOD_TRANSFORMER_ATTRIBUTION] = {.name = "transformer_attribution",
                                           .gradient = RP_REACH_FROM_START,
                                           .relevance = RP_REACH_FROM_START,
                                           .uses_start_layer = true,
                                           .map = rp_map_transformer_attribution},
    [RP_METHOD_ROLLOUT] = {.name = "rollout", .uses_start_layer = true, .map = rp_map_rollout},
    [RP_METHOD_RAW_ATTENTION] = {.name = "raw_attention", .map = raw_attention},
    [RP_METHOD_ATTN_GRADCAM] = {.name = "attn_gradcam",
                                .gradient = RP_REACH_LAST,
                                .reads_apart = true,
                                .map = attn_gradcam},
    [RP_METHOD_LRP_LAST_LAYER] = {.name = "lrp_last_layer",
                                  .relevance = RP_REACH_LAST,
                                  .reads_apart = true,
                                  .map = lrp_last_layer},
    [RP_METHOD_LRP_FULL] = {.name = "lrp_full", .pixels = true},
    [RP_METHOD_GENERIC_ATTENTION] = {.name = "generic_attention",
                                     .gradient = RP_REACH_ALL,
                                     .reads_apart = true,
                                     .map = generic_attention},
};

const rp_method_row *rp_method_row_of(rp_method m)
{
    return (unsigned)m < RP_METHOD_COUNT ? &rows[m] : NULL;
}

int rp_reach_lowest(rp_layer_reach r, int start_layer, int n_layers)
{
    int last = n_layers > 0 ? n_layers - 1 : 0;
    switch (r) {
    case RP_REACH_FROM_START: return start_layer < 0 ? 0 : start_layer > last ? last : start_layer;
    case RP_REACH_ALL: return 0;
    case RP_REACH_LAST: return last;
    case RP_REACH_NONE: break;
    }
    return n_layers;
}

const char *rp_method_name(rp_method m)
{
    const rp_method_row *r = rp_method_row_of(m);
    return r ? r->name : NULL;
}

bool rp_method_parse(const char *name, rp_method *out)
{
    for (int i = 0; i < RP_METHOD_COUNT; i++)
        if (strcmp(name, rows[i].name) == 0) {
            *out = (rp_method)i;
            return true;
        }
    return false;
}

bool rp_method_pixel_map(rp_method m)
{
    const rp_method_row *r = rp_method_row_of(m);
    return r && r->pixels;
}

bool rp_method_uses_start_layer(rp_method m)
{
    const rp_method_row *r = rp_method_row_of(m);
    return r && r->uses_start_layer;
}
