/* The cores' float32 peak, measured: per thread, independent chains of fused
 * multiply-adds (enough to hide their latency) on the widest vectors the CPU
 * has. tools/bench compiles and runs it so the table can say how far from
 * the machine's limit the GEMMs are; a datasheet figure would not know that
 * some CPUs (AMD Zen 4) execute a 512-bit FMA as two 256-bit halves.
 *
 *     cc -O2 -pthread tools/peak_flops.c -o peak_flops && ./peak_flops THREADS
 *
 * Prints "<GFLOP/s> <vector bits>". */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define CHAINS 12
#define ROUNDS 100000000L

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* One kernel per vector width: TYPE, the intrinsics' prefix PFX, its
 * lanes. The twelve chains start from different values, or the compiler
 * sees twelve equal chains and keeps one. */
#define FMA_KERNEL(NAME, TARGET, TYPE, PFX, LANES)                                                      \
    __attribute__((target(TARGET))) static void *NAME(void *out)                                      \
    {                                                                                                  \
        TYPE a[CHAINS];                                                                                \
        for (int k = 0; k < CHAINS; k++)                                                               \
            a[k] = PFX##_set1_ps(0.1f + 0.01f * (float)k);                                             \
        const TYPE b = PFX##_set1_ps(0.999f), c = PFX##_set1_ps(1e-4f);                                \
        for (long i = 0; i < ROUNDS; i++) {                                                            \
            a[0] = PFX##_fmadd_ps(a[0], b, c), a[1] = PFX##_fmadd_ps(a[1], b, c);                      \
            a[2] = PFX##_fmadd_ps(a[2], b, c), a[3] = PFX##_fmadd_ps(a[3], b, c);                      \
            a[4] = PFX##_fmadd_ps(a[4], b, c), a[5] = PFX##_fmadd_ps(a[5], b, c);                      \
            a[6] = PFX##_fmadd_ps(a[6], b, c), a[7] = PFX##_fmadd_ps(a[7], b, c);                      \
            a[8] = PFX##_fmadd_ps(a[8], b, c), a[9] = PFX##_fmadd_ps(a[9], b, c);                      \
            a[10] = PFX##_fmadd_ps(a[10], b, c), a[11] = PFX##_fmadd_ps(a[11], b, c);                  \
        }                                                                                              \
        float lanes[LANES], sum = 0; /* used, so the loop is not optimised away */                     \
        for (int k = 0; k < CHAINS; k++) {                                                             \
            PFX##_storeu_ps(lanes, a[k]);                                                              \
            sum += lanes[0];                                                                           \
        }                                                                                              \
        *(float *)out = sum;                                                                           \
        return NULL;                                                                                   \
    }

FMA_KERNEL(fma512, "avx512f", __m512, _mm512, 16)
FMA_KERNEL(fma256, "avx2,fma", __m256, _mm256, 8)

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (threads < 1 || threads > 256) {
        fprintf(stderr, "usage: peak_flops [THREADS]\n");
        return 2;
    }
    __builtin_cpu_init();
    int bits = __builtin_cpu_supports("avx512f") ? 512 : __builtin_cpu_supports("fma") ? 256 : 0;
    if (!bits) {
        fprintf(stderr, "peak_flops: no FMA on this CPU\n");
        return 1;
    }
    void *(*fn)(void *) = bits == 512 ? fma512 : fma256;
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    float *sink = calloc((size_t)threads, sizeof *sink);
    if (!tid || !sink)
        return 1;
    double t0 = now();
    for (int i = 0; i < threads; i++)
        if (pthread_create(&tid[i], NULL, fn, &sink[i]))
            return 1;
    for (int i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    double seconds = now() - t0;
    double flop = 2.0 * (bits / 32) * CHAINS * (double)ROUNDS * threads;
    printf("%.1f %d\n", flop / seconds / 1e9, bits);
    free(tid);
    free(sink);
    return 0;
}
