/* The map upsampling the overlay draws (render.c), shared with the
 * evaluation (src/methods/eval_metrics.c): the perturbation order must rank
 * exactly the values the overlay shows. */
#ifndef RP_IMAGE_UPSAMPLE_H
#define RP_IMAGE_UPSAMPLE_H

#include <stdbool.h>

/* out (rows*fh x cols*fw) = v (rows x cols) upsampled as PyTorch's
 * upsample_bilinear2d with align_corners=False and scale_factor (fh, fw);
 * the derivation is in render.c. Returns true if out of memory. */
bool rp_upsample_bilinear(const float *v, int rows, int cols, int fh, int fw, float *out);

#endif
