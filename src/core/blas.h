/* Matrix products for all of relprop (kernels, rules, maps). */
#ifndef RELPROP_CORE_BLAS_H
#define RELPROP_CORE_BLAS_H

#include <cblas.h>

/* cblas_sgemm in row-major order, split by columns of C over the thread
 * pool (core/pool.h), each part a single-threaded OpenBLAS call. Every
 * element of C is computed as one call would compute it, so results do not
 * depend on the threads. */
void rp_sgemm(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k, float alpha, const float *a,
              int lda, const float *b, int ldb, float beta, float *c, int ldc);

#endif
