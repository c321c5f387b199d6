/* exp and erf for float32 loops. libm's expf/erff are scalar calls that GCC
 * cannot vectorise (they may set errno), and in a ViT they run on every
 * attention score and every MLP activation: profiles put them at a fifth of
 * the forward pass. These are branch-free so loops over them vectorise, and
 * stay within a few ulp of libm (tests/test_fastmath.c measures it), which is
 * below the float32 noise of the matrix products around them. */
#ifndef RP_CORE_FASTMATH_H
#define RP_CORE_FASTMATH_H

#include <stdint.h>
#include <string.h>

/* Hot elementwise loops are compiled three times — AVX-512, AVX2 and the
 * x86-64 baseline — and the dynamic loader picks the best the CPU has (GCC
 * function multiversioning), so one portable binary still uses wide vectors.
 * ISO C mode means no FMA contraction: every clone gives the same bits. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__OPTIMIZE__)
#define RP_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define RP_VECTOR_CLONES
#endif

static inline float rp_bits_to_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* exp(x): x = n ln2 + r with |r| <= ln2/2 (Cody–Waite split of ln2 so r is
 * exact), exp(r) by its degree-7 Taylor polynomial (truncation < 1e-8
 * relative), times 2^n applied in two halves so that results in the
 * subnormal range and up to FLT_MAX come out right. Below -104 the true value
 * is under half the smallest subnormal: 0. NaN stays NaN, +Inf gives +Inf. */
static inline float rp_expf(float x)
{
    /* Written so a NaN x clamps to -104 (the comparisons are false) and never
     * reaches the float-to-int conversion, where it would be undefined. */
    float c = x > -104.0f ? x : -104.0f;
    c = c < 89.0f ? c : 89.0f;
    /* Round c / ln2 to the nearest integer with the 1.5 * 2^23 trick (SSE2 has no round). */
    float n = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = c - n * 0.693145751953125f;
    r = r - n * 1.42860682030941723212e-6f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t k = (int32_t)n;
    int32_t k1 = k / 2, k2 = k - k1;
    float s1 = rp_bits_to_float((uint32_t)(k1 + 127) << 23);
    float s2 = rp_bits_to_float((uint32_t)(k2 + 127) << 23);
    float y = p * s1 * s2;
    y = x < -104.0f ? 0.0f : y;
    return x != x ? x : y;
}

/* erf(x): the odd/even rational approximation on [-4, 4] that Eigen and
 * TensorFlow use for float (max error a few ulp); |erf| rounds to 1 in
 * float32 beyond 4. NaN stays NaN. */
static inline float rp_erff(float x)
{
    float c = x < -4.0f ? -4.0f : x > 4.0f ? 4.0f : x;
    float x2 = c * c;
    float p = -2.72614225801306e-10f;
    p = p * x2 + 2.77068142495902e-08f;
    p = p * x2 + -2.10102402082508e-06f;
    p = p * x2 + -5.69250639462346e-05f;
    p = p * x2 + -7.34990630326855e-04f;
    p = p * x2 + -2.95459980854025e-03f;
    p = p * x2 + -1.60960333262415e-02f;
    p = p * c;
    float q = -1.45660718464996e-05f;
    q = q * x2 + -2.13374055278905e-04f;
    q = q * x2 + -1.68282697438203e-03f;
    q = q * x2 + -7.37332916720468e-03f;
    q = q * x2 + -1.42647390514189e-02f;
    float y = p / q;
    return x != x ? x : y;
}

#endif
