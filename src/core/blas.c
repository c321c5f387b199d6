/* Splitting products over the pool; see core/blas.h. */
#include "core/blas.h"
#include "core/pool.h"

/* Each part of a split product does more multiply-adds than this. OpenBLAS
 * runs products of up to 100^3 through its small-matrix kernels, which sum
 * in another order than its blocked kernels: were a part below that and the
 * whole above, the bits would depend on the number of threads. Twice the
 * limit keeps clear of it (and such parts are worth a thread). */
#define PART_MIN_MACS 2000000.0
/* Parts are whole blocks of this many columns: OpenBLAS's kernels work on
 * panels of 16 floats, and a split inside one would leave both parts a
 * ragged edge. */
#define COLUMN_QUANTUM 16

typedef struct sgemm_job {
    enum CBLAS_TRANSPOSE ta, tb;
    int m, n, k, lda, ldb, ldc, blocks, parts;
    float alpha, beta;
    const float *a, *b;
    float *c;
} sgemm_job;

static void sgemm_columns(void *ctx, int64_t begin, int64_t end)
{
    const sgemm_job *j = ctx;
    for (int64_t part = begin; part < end; part++) {
        /* Blocks of COLUMN_QUANTUM columns, spread evenly over the parts. */
        int c0 = (int)(part * j->blocks / j->parts) * COLUMN_QUANTUM;
        int c1 = (int)((part + 1) * j->blocks / j->parts) * COLUMN_QUANTUM;
        if (c1 > j->n)
            c1 = j->n;
        /* Columns c0.. of op(B): B's columns, or B's rows when transposed. */
        const float *b = j->b + (j->tb == CblasNoTrans ? (long)c0 : (long)c0 * j->ldb);
        cblas_sgemm(CblasRowMajor, j->ta, j->tb, j->m, c1 - c0, j->k, j->alpha, j->a, j->lda, b, j->ldb, j->beta,
                    j->c + c0, j->ldc);
    }
}

void rp_sgemm(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k, float alpha, const float *a,
              int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    int threads = rp_pool_threads(); /* also turns OpenBLAS's own threads off */
    int blocks = (n + COLUMN_QUANTUM - 1) / COLUMN_QUANTUM;
    int parts = threads < blocks ? threads : blocks;
    /* At most the narrowest part: floor(blocks / parts) blocks, less the
     * ragged end (which the last part holds). */
    int narrowest = parts > 0 ? blocks / parts * COLUMN_QUANTUM - (blocks * COLUMN_QUANTUM - n) : n;
    if (parts < 2 || (double)m * narrowest * k <= PART_MIN_MACS) {
        cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    sgemm_job job = {ta, tb, m, n, k, lda, ldb, ldc, blocks, parts, alpha, beta, a, b, c};
    rp_parallel_for(parts, 1, sgemm_columns, &job);
}
