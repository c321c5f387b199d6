/* Test helper: a whole file's bytes (fixtures), asserting with Check that
 * it can be read. One NUL past the end, so text can be read as a string. */
#ifndef TESTS_SLURP_H
#define TESTS_SLURP_H

#include <stddef.h>
#include <stdint.h>

typedef struct test_buf {
    uint8_t *b; /* malloc'd; the caller frees it */
    size_t n;
} test_buf;

test_buf test_slurp(const char *path);

#endif
