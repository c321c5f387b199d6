/* Matrix products for all of relprop (kernels, rules, maps). */
#ifndef RELPROP_CORE_BLAS_H
#define RELPROP_CORE_BLAS_H

#include <cblas.h>

/* cblas_sgemm in row-major order, split by columns of C over the thread
 * pool (core/pool.h), each part a single-threaded OpenBLAS call. The same
 * threads give the same bits every time; another thread count may move the
 * last bit where OpenBLAS's kernels sum a panel's edge columns in another
 * order than its middle ones (its AVX2 kernels do, its AVX-512 ones do
 * not). float64 products (rare in exported models) are not split. */
void rp_sgemm(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k, float alpha, const float *a,
              int lda, const float *b, int ldb, float beta, float *c, int ldc);

#endif
