/* Errors are values: every fallible function returns an rp_status and, on
 * failure, fills the caller's rp_error with one line that names the file,
 * node, op and what was expected. Nothing in the library prints or exits. */
#ifndef RP_CORE_ERROR_H
#define RP_CORE_ERROR_H

#include "relprop/relprop.h"

/* Format a message into err (if err is non-NULL) and return code, so callers
 * write `return rp_fail(err, RP_ERR_SHAPE, "...", ...)`. If err already holds
 * a message it is replaced. */
rp_status rp_fail(rp_error *err, rp_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix an existing message: "<prefix>: <old message>", keeping the code.
 * Used by outer layers to add the file or node name. Returns err->code. */
rp_status rp_error_prefix(rp_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
