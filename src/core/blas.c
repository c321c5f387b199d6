/* Splitting products over the pool; see core/blas.h. */
#include "core/blas.h"
#include "core/pool.h"

/* Each part of a split product does more multiply-adds than this. OpenBLAS
 * runs products of up to 100^3 through its small-matrix kernels, which sum
 * in another order than its blocked kernels: were a part below that and the
 * whole above, the bits would depend on the number of threads. Twice the
 * limit keeps clear of it (and such parts are worth a thread). */
#define PART_MIN_MACS 2000000.0
/* Column blocks are multiples of this: OpenBLAS's kernels work on panels of
 * 16 floats, and a split inside one would leave both parts a ragged edge. */
#define COLUMN_QUANTUM 16

typedef struct sgemm_job {
    enum CBLAS_TRANSPOSE ta, tb;
    int m, n, k, lda, ldb, ldc, cols;
    float alpha, beta;
    const float *a, *b;
    float *c;
} sgemm_job;

static void sgemm_columns(void *ctx, int64_t begin, int64_t end)
{
    const sgemm_job *j = ctx;
    for (int64_t part = begin; part < end; part++) {
        int c0 = (int)part * j->cols, c1 = c0 + j->cols < j->n ? c0 + j->cols : j->n;
        /* Columns c0.. of op(B): B's columns, or B's rows when transposed. */
        const float *b = j->b + (j->tb == CblasNoTrans ? (long)c0 : (long)c0 * j->ldb);
        cblas_sgemm(CblasRowMajor, j->ta, j->tb, j->m, c1 - c0, j->k, j->alpha, j->a, j->lda, b, j->ldb, j->beta,
                    j->c + c0, j->ldc);
    }
}

void rp_sgemm(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k, float alpha, const float *a,
              int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    int threads = n >= 2 * COLUMN_QUANTUM ? rp_pool_threads() : 1;
    int cols = (n + threads - 1) / threads;
    cols = (cols + COLUMN_QUANTUM - 1) / COLUMN_QUANTUM * COLUMN_QUANTUM;
    int last = n - (n - 1) / cols * cols; /* the narrowest part */
    if (threads < 2 || cols >= n || (double)m * last * k <= PART_MIN_MACS) {
        cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    sgemm_job job = {ta, tb, m, n, k, lda, ldb, ldc, cols, alpha, beta, a, b, c};
    rp_parallel_for((n + cols - 1) / cols, 1, sgemm_columns, &job);
}
