#include "support/slurp.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

test_buf test_slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s: cannot open", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long len = ftell(f);
    ck_assert_int_ge(len, 0);
    rewind(f);
    test_buf r = {malloc((size_t)len + 1), (size_t)len};
    ck_assert_ptr_nonnull(r.b);
    ck_assert_uint_eq(fread(r.b, 1, (size_t)len, f), (size_t)len);
    r.b[len] = 0;
    fclose(f);
    return r;
}
