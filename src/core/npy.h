/* .npy parsing from memory (the file reader's core; used by tests and the
 * fuzzers). The public rp_npy_read / rp_npy_write are in relprop/relprop.h. */
#ifndef RP_CORE_NPY_H
#define RP_CORE_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "relprop/relprop.h"

/* Parse a whole .npy file held in buf[0..len). name is for messages (NULL =
 * "(memory)"). The tensor is owned by the caller (rp_tensor_release). */
rp_status rp_npy_read_buffer(const uint8_t *buf, size_t len, const char *name, rp_tensor *out, rp_error *err);

#endif
