#include "support/skip.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void test_skip(const char *what, const char *why_fmt, ...)
{
    char why[1024];
    va_list ap;
    va_start(ap, why_fmt);
    vsnprintf(why, sizeof why, why_fmt, ap);
    va_end(ap);
    fprintf(stderr, "SKIPPED: %s: %s\n", what, why);
    const char *log = getenv("RELPROP_SKIP_LOG");
    if (!log || !*log)
        return;
    /* One fprintf per line on an append-mode stream: ctest runs tests in
     * parallel, and O_APPEND keeps their lines whole. */
    FILE *f = fopen(log, "a");
    if (f) {
        fprintf(f, "%s: %s\n", what, why);
        fclose(f);
    }
}
