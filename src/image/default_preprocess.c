/* The preprocessing an image gets when the caller names none, in one place
 * so that `relprop explain` and the Python package (python/) make the same
 * tensors from the same image. */
#include <string.h>

#include "relprop/relprop.h"

rp_status rp_model_default_preprocess(const rp_model *m, rp_preprocess *out, const char **source, rp_error *err)
{
    bool found = false;
    rp_status st = rp_model_preprocess(m, out, &found, err);
    if (st)
        return st;
    if (found) {
        if (source)
            *source = "model metadata";
        return RP_OK;
    }
    /* The paper's notebook: the image resized to the model's input, mean = std = 0.5. */
    const rp_tensor *x = rp_model_input_info(m, 0);
    memset(out, 0, sizeof *out);
    out->resize_h = x && x->rank == 4 ? (int)x->dims[2] : 0;
    out->resize_w = x && x->rank == 4 ? (int)x->dims[3] : 0;
    out->interp = RP_INTERP_BILINEAR;
    for (int c = 0; c < 3; c++)
        out->mean[c] = out->std[c] = 0.5f;
    if (source)
        *source = "default (resize to the model's input, mean = std = 0.5)";
    return RP_OK;
}
