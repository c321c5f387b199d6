/* Floating point to integer conversions defined for every input.
 *
 * C leaves the conversion of a floating value whose integral part does not
 * fit the target type undefined (C11 6.3.1.4), NaN and infinities included,
 * and x86 turns it into the "integer indefinite" value (INT64_MIN, or
 * garbage in narrower types); ONNX leaves Cast of such values unspecified.
 * relprop saturates instead, the choice of WebAssembly's trunc_sat, Rust's
 * `as` and Java:
 *   NaN                                   -> 0
 *   +Inf, and values above the maximum    -> the type's maximum
 *   -Inf, and values below the minimum    -> the type's minimum (0 unsigned)
 *   anything else                         -> truncated toward zero, as C does
 * Only data that is already garbage (a float holding 1e30 cast to int64, an
 * integer norm that overflowed) is affected: in range, these are C's casts.
 *
 * Every bound is compared in double. A type's maximum that double cannot
 * hold (INT64_MAX, UINT64_MAX) rounds up to the next power of two, which is
 * exactly the first value that no longer fits, so `v >= (double)MAX` is the
 * right test for every type; the minimums are exact. Floats reach these
 * through their exact promotion to double. */
#ifndef RP_CORE_CONVERT_H
#define RP_CORE_CONVERT_H

#include <stdint.h>

#define RP_SAT_CONVERT(name, T, LO, HI) \
    static inline T name(double v) \
    { \
        if (v != v) \
            return 0; \
        if (v <= (double)(LO)) \
            return (LO); \
        if (v >= (double)(HI)) \
            return (HI); \
        return (T)v; \
    }

RP_SAT_CONVERT(rp_sat_i8, int8_t, INT8_MIN, INT8_MAX)
RP_SAT_CONVERT(rp_sat_i16, int16_t, INT16_MIN, INT16_MAX)
RP_SAT_CONVERT(rp_sat_i32, int32_t, INT32_MIN, INT32_MAX)
RP_SAT_CONVERT(rp_sat_i64, int64_t, INT64_MIN, INT64_MAX)
RP_SAT_CONVERT(rp_sat_u8, uint8_t, 0, UINT8_MAX)
RP_SAT_CONVERT(rp_sat_u16, uint16_t, 0, UINT16_MAX)
RP_SAT_CONVERT(rp_sat_u32, uint32_t, 0, UINT32_MAX)
RP_SAT_CONVERT(rp_sat_u64, uint64_t, 0, UINT64_MAX)

#undef RP_SAT_CONVERT

#endif
