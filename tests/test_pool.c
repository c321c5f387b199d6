/* relprop's thread pool (src/core/pool.c) and the products split over it
 * (src/core/blas.c): every range runs exactly once, nested and concurrent
 * jobs run on their callers, split products equal one OpenBLAS call, and an
 * explanation gives the same bits every time on the same threads and the
 * same maps (to rounding) on one thread as on several. */
#include <check.h>
#include <math.h>
#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/blas.h"
#include "core/pool.h"
#include "relprop/relprop.h"

#ifndef RELPROP_SOURCE_DIR
#define RELPROP_SOURCE_DIR "."
#endif
#define ORACLE RELPROP_SOURCE_DIR "/tests/oracle/fmnist_vit_s__timm13"

typedef struct count_job {
    _Atomic int *hits;
    int nested; /* each range starts a job of this many elements */
    _Atomic long nested_hits;
} count_job;

static void count_inner(void *ctx, int64_t begin, int64_t end)
{
    count_job *j = ctx;
    atomic_fetch_add(&j->nested_hits, end - begin);
}

static void count_range(void *ctx, int64_t begin, int64_t end)
{
    count_job *j = ctx;
    for (int64_t i = begin; i < end; i++) {
        atomic_fetch_add(&j->hits[i], 1);
        if (j->nested) {
            count_job inner = {.hits = NULL};
            rp_parallel_for(j->nested, 3, count_inner, &inner);
            atomic_fetch_add(&j->nested_hits, inner.nested_hits);
        }
    }
}

static void check_once(int64_t n, int64_t grain, int nested)
{
    _Atomic int *hits = calloc((size_t)(n ? n : 1), sizeof *hits);
    count_job j = {.hits = hits, .nested = nested};
    rp_parallel_for(n, grain, count_range, &j);
    for (int64_t i = 0; i < n; i++)
        ck_assert_msg(hits[i] == 1, "n %lld grain %lld: element %lld ran %d times", (long long)n, (long long)grain,
                      (long long)i, (int)hits[i]);
    if (nested)
        ck_assert_int_eq(j.nested_hits, n * nested);
    free(hits);
}

START_TEST(test_every_range_once)
{
    static const int threads[] = {1, 2, 4};
    rp_set_threads(threads[_i]);
    ck_assert_int_eq(rp_pool_threads(), threads[_i]);
    for (int rep = 0; rep < 20; rep++) {
        check_once(0, 4, 0);
        check_once(1, 4, 0);
        check_once(1000, 7, 0);
        check_once(1000, 1000, 0);
        check_once(4097, 64, 0);
    }
    /* A job started from a range runs on that range's thread. */
    check_once(100, 5, 17);
}
END_TEST

/* Fewer threads, then more again: the helpers left out wait aside and come
 * back; every job still runs each range once. */
START_TEST(test_resize)
{
    static const int counts[] = {4, 2, 1, 3, 4};
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        ck_assert_int_eq(rp_set_threads(counts[c]), counts[c]);
        ck_assert_int_eq(rp_pool_threads(), counts[c]);
        for (int rep = 0; rep < 10; rep++)
            check_once(5000, 13, 0);
    }
}
END_TEST

static void *other_caller(void *arg)
{
    for (int rep = 0; rep < 20; rep++)
        check_once(3000, 11, 0);
    return arg;
}

/* Two threads of a program starting jobs at once: one gets the pool, the
 * other runs its job alone; both complete. */
START_TEST(test_concurrent_callers)
{
    rp_set_threads(3);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, other_caller, NULL), 0);
    for (int rep = 0; rep < 20; rep++)
        check_once(2000, 9, 0);
    pthread_join(t, NULL);
}
END_TEST

static float *random_floats(size_t n, unsigned seed)
{
    float *x = malloc(sizeof(float) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        x[i] = (float)((seed >> 8) % 2001) / 1000.0f - 1.0f;
    }
    return x;
}

/* rp_sgemm against one single-threaded OpenBLAS call with the same
 * arguments, for every transpose, odd and even widths, and leading
 * dimensions wider than the matrices: equal to rounding (OpenBLAS's AVX2
 * kernels sum a panel's edge columns in another order than its middle
 * ones, so a split can move the last bit), and the same bits every time. */
START_TEST(test_split_products)
{
    static const int shapes[][3] = {{197, 192, 576}, {65, 64, 197}, {33, 300, 35}, {5, 7, 1000}, {128, 9, 31}};
    rp_set_threads(3);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                int m = shapes[s][0], k = shapes[s][1], n = shapes[s][2];
                int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 2;
                size_t asz = (size_t)(ta ? k : m) * lda, bsz = (size_t)(tb ? n : k) * ldb, csz = (size_t)m * ldc;
                float *a = random_floats(asz, 1), *b = random_floats(bsz, 2), *c0 = random_floats(csz, 3);
                float *c1 = malloc(sizeof(float) * csz), *c2 = malloc(sizeof(float) * csz);
                memcpy(c1, c0, sizeof(float) * csz);
                memcpy(c2, c0, sizeof(float) * csz);
                enum CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
                cblas_sgemm(CblasRowMajor, TA, TB, m, n, k, 0.75f, a, lda, b, ldb, 0.5f, c0, ldc);
                rp_sgemm(TA, TB, m, n, k, 0.75f, a, lda, b, ldb, 0.5f, c1, ldc);
                rp_sgemm(TA, TB, m, n, k, 0.75f, a, lda, b, ldb, 0.5f, c2, ldc);
                for (size_t i = 0; i < csz; i++)
                    ck_assert_msg(fabsf(c0[i] - c1[i]) <= 1e-5f * (1.0f + fabsf(c0[i])),
                                  "%dx%dx%d ta %d tb %d: element %zu is %.9g, one call gives %.9g", m, k, n, ta, tb, i,
                                  (double)c1[i], (double)c0[i]);
                ck_assert_msg(memcmp(c1, c2, sizeof(float) * csz) == 0, "%dx%dx%d ta %d tb %d: not deterministic", m,
                              k, n, ta, tb);
                free(a);
                free(b);
                free(c0);
                free(c1);
                free(c2);
            }
}
END_TEST

/* Every method on three threads twice: the same bits; on one thread: the
 * same maps to rounding. */
START_TEST(test_threads_and_determinism)
{
    rp_error err = {0};
    rp_tensor x = {0};
    ck_assert_msg(rp_npy_read(ORACLE "/inputs/input_0.npy", &x, &err) == RP_OK, "%s", err.msg);
    rp_method all[RP_METHOD_COUNT];
    for (int i = 0; i < RP_METHOD_COUNT; i++)
        all[i] = (rp_method)i;
    rp_explanation *e[3] = {NULL, NULL, NULL};
    static const int threads[3] = {3, 3, 1};
    for (int k = 0; k < 3; k++) {
        rp_set_threads(threads[k]);
        rp_model *m = NULL;
        ck_assert_msg(rp_model_load(ORACLE "/model.onnx", &m, &err) == RP_OK, "%s", err.msg);
        ck_assert_msg(rp_explain(m, &x, NULL, 0, all, RP_METHOD_COUNT, NULL, &e[k], &err) == RP_OK, "%s", err.msg);
        rp_model_free(m);
    }
    for (int mi = 0; mi < RP_METHOD_COUNT; mi++) {
        const rp_tensor *p = rp_explanation_map(e[0], 0, mi), *q = rp_explanation_map(e[1], 0, mi),
                        *r = rp_explanation_map(e[2], 0, mi);
        ck_assert_msg(p->count == q->count && memcmp(p->data, q->data, sizeof(float) * (size_t)p->count) == 0,
                      "%s: two runs on three threads differ", rp_method_name(all[mi]));
        double peak = 0;
        for (int64_t i = 0; i < p->count; i++)
            peak = fmax(peak, fabs(((const float *)p->data)[i]));
        for (int64_t i = 0; i < p->count; i++)
            ck_assert_msg(fabs(((const float *)p->data)[i] - ((const float *)r->data)[i]) <= 1e-4 * peak,
                          "%s: element %lld differs between 1 and 3 threads", rp_method_name(all[mi]),
                          (long long)i);
    }
    rp_explanation_free(e[0]);
    rp_explanation_free(e[1]);
    rp_explanation_free(e[2]);
    rp_tensor_release(&x);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("pool");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_every_range_once, 0, 3);
    tcase_add_test(tc, test_resize);
    tcase_add_test(tc, test_concurrent_callers);
    tcase_add_test(tc, test_split_products);
    tcase_add_test(tc, test_threads_and_determinism);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
