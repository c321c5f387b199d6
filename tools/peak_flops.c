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

__attribute__((target("avx512f"))) static void *fma512(void *out)
{
    /* Different starting values, or the compiler sees twelve equal chains and keeps one. */
    __m512 a0 = _mm512_set1_ps(0.10f), a1 = _mm512_set1_ps(0.11f), a2 = _mm512_set1_ps(0.12f),
           a3 = _mm512_set1_ps(0.13f), a4 = _mm512_set1_ps(0.14f), a5 = _mm512_set1_ps(0.15f),
           a6 = _mm512_set1_ps(0.16f), a7 = _mm512_set1_ps(0.17f), a8 = _mm512_set1_ps(0.18f),
           a9 = _mm512_set1_ps(0.19f), a10 = _mm512_set1_ps(0.20f), a11 = _mm512_set1_ps(0.21f);
    const __m512 b = _mm512_set1_ps(0.999f), c = _mm512_set1_ps(1e-4f);
    for (long i = 0; i < ROUNDS; i++) {
        a0 = _mm512_fmadd_ps(a0, b, c), a1 = _mm512_fmadd_ps(a1, b, c), a2 = _mm512_fmadd_ps(a2, b, c);
        a3 = _mm512_fmadd_ps(a3, b, c), a4 = _mm512_fmadd_ps(a4, b, c), a5 = _mm512_fmadd_ps(a5, b, c);
        a6 = _mm512_fmadd_ps(a6, b, c), a7 = _mm512_fmadd_ps(a7, b, c), a8 = _mm512_fmadd_ps(a8, b, c);
        a9 = _mm512_fmadd_ps(a9, b, c), a10 = _mm512_fmadd_ps(a10, b, c), a11 = _mm512_fmadd_ps(a11, b, c);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(a8, a9), _mm512_add_ps(a10, a11)));
    *(float *)out = _mm512_reduce_add_ps(s); /* keeps the loop from being optimised away */
    return NULL;
}

__attribute__((target("avx2,fma"))) static void *fma256(void *out)
{
    __m256 a0 = _mm256_set1_ps(0.10f), a1 = _mm256_set1_ps(0.11f), a2 = _mm256_set1_ps(0.12f),
           a3 = _mm256_set1_ps(0.13f), a4 = _mm256_set1_ps(0.14f), a5 = _mm256_set1_ps(0.15f),
           a6 = _mm256_set1_ps(0.16f), a7 = _mm256_set1_ps(0.17f), a8 = _mm256_set1_ps(0.18f),
           a9 = _mm256_set1_ps(0.19f), a10 = _mm256_set1_ps(0.20f), a11 = _mm256_set1_ps(0.21f);
    const __m256 b = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-4f);
    for (long i = 0; i < ROUNDS; i++) {
        a0 = _mm256_fmadd_ps(a0, b, c), a1 = _mm256_fmadd_ps(a1, b, c), a2 = _mm256_fmadd_ps(a2, b, c);
        a3 = _mm256_fmadd_ps(a3, b, c), a4 = _mm256_fmadd_ps(a4, b, c), a5 = _mm256_fmadd_ps(a5, b, c);
        a6 = _mm256_fmadd_ps(a6, b, c), a7 = _mm256_fmadd_ps(a7, b, c), a8 = _mm256_fmadd_ps(a8, b, c);
        a9 = _mm256_fmadd_ps(a9, b, c), a10 = _mm256_fmadd_ps(a10, b, c), a11 = _mm256_fmadd_ps(a11, b, c);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    *(float *)out = lanes[0] + lanes[7];
    return NULL;
}

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
