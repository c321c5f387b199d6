#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *rp_status_name(rp_status s)
{
    switch (s) {
    case RP_OK: return "ok";
    case RP_ERR_IO: return "io";
    case RP_ERR_FORMAT: return "format";
    case RP_ERR_UNSUPPORTED: return "unsupported";
    case RP_ERR_SHAPE: return "shape";
    case RP_ERR_DTYPE: return "dtype";
    case RP_ERR_VALUE: return "value";
    case RP_ERR_NOMEM: return "out of memory";
    case RP_ERR_ARG: return "argument";
    case RP_ERR_INTERNAL: return "internal";
    }
    return "unknown";
}

rp_status rp_fail(rp_error *err, rp_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

rp_status rp_error_prefix(rp_error *err, const char *fmt, ...)
{
    if (!err)
        return RP_ERR_INTERNAL;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* Truncation is acceptable: the message stays one readable line. */
    size_t cap = sizeof err->msg - 1, used = 0;
    size_t pl = strlen(prefix), ol = strnlen(old, sizeof old - 1);
    pl = pl < cap ? pl : cap;
    memcpy(err->msg, prefix, pl);
    used = pl;
    if (used + 2 <= cap) {
        memcpy(err->msg + used, ": ", 2);
        used += 2;
    }
    ol = ol < cap - used ? ol : cap - used;
    memcpy(err->msg + used, old, ol);
    err->msg[used + ol] = 0;
    return err->code;
}
