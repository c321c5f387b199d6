/* Float to integer conversions (src/core/convert.h) and the tensor element
 * accessors built on them: NaN to 0, out of range and infinities to the
 * type's bounds, truncation toward zero in range, never C's undefined
 * behaviour (the sanitizer build would report it). */
#include <check.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/convert.h"
#include "core/tensor.h"

START_TEST(test_saturating_conversions)
{
    const double nan_ = NAN, inf = INFINITY;
    /* NaN */
    ck_assert_int_eq(rp_sat_i8(nan_), 0);
    ck_assert_int_eq(rp_sat_i32(nan_), 0);
    ck_assert_int_eq(rp_sat_i64(nan_), 0);
    ck_assert_uint_eq(rp_sat_u8(nan_), 0);
    ck_assert_uint_eq(rp_sat_u64(nan_), 0);
    /* infinities */
    ck_assert_int_eq(rp_sat_i8(inf), INT8_MAX);
    ck_assert_int_eq(rp_sat_i8(-inf), INT8_MIN);
    ck_assert_int_eq(rp_sat_i16(-inf), INT16_MIN);
    ck_assert_int_eq(rp_sat_i32(inf), INT32_MAX);
    ck_assert_int_eq(rp_sat_i64(inf), INT64_MAX);
    ck_assert_int_eq(rp_sat_i64(-inf), INT64_MIN);
    ck_assert_uint_eq(rp_sat_u16(inf), UINT16_MAX);
    ck_assert_uint_eq(rp_sat_u32(-inf), 0);
    ck_assert_uint_eq(rp_sat_u64(inf), UINT64_MAX);
    /* out of range, at the edges: 2^63 and 2^64 are the first values past
     * the 64-bit types (their maximums are not doubles) */
    ck_assert_int_eq(rp_sat_i64(1e30), INT64_MAX);
    ck_assert_int_eq(rp_sat_i64(9223372036854775808.0), INT64_MAX);
    ck_assert_int_eq(rp_sat_i64(9223372036854774784.0), 9223372036854774784LL); /* largest double below 2^63 */
    ck_assert_int_eq(rp_sat_i64(-9223372036854775808.0), INT64_MIN);
    ck_assert_int_eq(rp_sat_i64(-1e300), INT64_MIN);
    ck_assert_uint_eq(rp_sat_u64(18446744073709551616.0), UINT64_MAX);
    ck_assert_uint_eq(rp_sat_u64(18446744073709549568.0), 18446744073709549568ULL);
    ck_assert_int_eq(rp_sat_i32(2147483648.0), INT32_MAX);
    ck_assert_int_eq(rp_sat_i32(2147483647.9), INT32_MAX);
    ck_assert_int_eq(rp_sat_i32(-2147483648.9), INT32_MIN);
    ck_assert_int_eq(rp_sat_i32(-2147483649.0), INT32_MIN);
    ck_assert_int_eq(rp_sat_i8(127.99), 127);
    ck_assert_int_eq(rp_sat_i8(128.0), 127);
    ck_assert_int_eq(rp_sat_i8(-129.0), -128);
    ck_assert_uint_eq(rp_sat_u8(256.0), 255);
    ck_assert_uint_eq(rp_sat_u8(-1.0), 0);
    ck_assert_uint_eq(rp_sat_u32((double)FLT_MAX), UINT32_MAX);
    /* in range: C's truncation toward zero */
    ck_assert_int_eq(rp_sat_i32(-2.9), -2);
    ck_assert_int_eq(rp_sat_i32(2.9), 2);
    ck_assert_uint_eq(rp_sat_u8(-0.9), 0);
    ck_assert_uint_eq(rp_sat_u8(254.9), 254);
    ck_assert_int_eq(rp_sat_i64(-0.0), 0);
    ck_assert_int_eq(rp_sat_i64(4503599627370497.0), 4503599627370497LL);
    ck_assert_int_eq(rp_sat_i16((float)-32768.5f), -32768);
}
END_TEST

START_TEST(test_tensor_accessors)
{
    float f[5] = {NAN, INFINITY, -INFINITY, 3.4e38f, -7.9f};
    double d[3] = {1e300, -1e300, 42.5};
    rp_tensor tf = {0}, td = {0};
    ck_assert(rp_tensor_set_shape(&tf, RP_FLOAT, 1, (int64_t[]){5}));
    ck_assert(rp_tensor_set_shape(&td, RP_DOUBLE, 1, (int64_t[]){3}));
    tf.data = f;
    td.data = d;
    int64_t want_f[5] = {0, INT64_MAX, INT64_MIN, INT64_MAX, -7};
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(rp_tensor_get_i64(&tf, i), want_f[i]);
    ck_assert_int_eq(rp_tensor_get_i64(&td, 0), INT64_MAX);
    ck_assert_int_eq(rp_tensor_get_i64(&td, 1), INT64_MIN);
    ck_assert_int_eq(rp_tensor_get_i64(&td, 2), 42);

    /* set_f64 into every integer type */
    static const rp_dtype ints[] = {RP_INT8, RP_INT16, RP_INT32, RP_INT64, RP_UINT8, RP_UINT16, RP_UINT32, RP_UINT64};
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
        rp_tensor t = {0};
        ck_assert_int_eq(rp_tensor_alloc(&t, ints[k], 1, (int64_t[]){4}, NULL), RP_OK);
        rp_tensor_set_f64(&t, 0, NAN);
        rp_tensor_set_f64(&t, 1, 1e30);
        rp_tensor_set_f64(&t, 2, -1e30);
        rp_tensor_set_f64(&t, 3, 5.7);
        ck_assert_int_eq(rp_tensor_get_i64(&t, 0), 0);
        ck_assert(rp_tensor_get_f64(&t, 1) > 100);
        ck_assert(rp_tensor_get_f64(&t, 2) <= 0);
        ck_assert_int_eq(rp_tensor_get_i64(&t, 3), 5);
        rp_tensor_release(&t);
    }
    rp_tensor b = {0};
    ck_assert_int_eq(rp_tensor_alloc(&b, RP_BOOL, 1, (int64_t[]){2}, NULL), RP_OK);
    rp_tensor_set_f64(&b, 0, NAN);
    rp_tensor_set_f64(&b, 1, 0.0);
    ck_assert_int_eq(rp_tensor_get_i64(&b, 0), 1);
    ck_assert_int_eq(rp_tensor_get_i64(&b, 1), 0);
    rp_tensor_release(&b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("convert");
    TCase *tc = tcase_create("convert");
    tcase_add_test(tc, test_saturating_conversions);
    tcase_add_test(tc, test_tensor_accessors);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
