/* MatMul, Gemm and Einsum. Every product is a BLAS GEMM (sgemm for float32,
 * dgemm for float64): prepare settles shapes, transposes, leading dimensions
 * and batch strides, so forward is a loop of GEMM calls. Einsum equations that
 * are not one batched product (diagonals, lone sums, three operands) run a
 * plain strided loop instead.
 *
 * Backward (float32 only) reuses the same plan: for Y = A B the gradients
 * dA += dY B^T and dB += A^T dY are GEMMs over the very same blocks, with the
 * transposes expressed through CblasTrans and leading dimensions, beta = 1 so
 * they add into the caller's buffers, and a broadcast operand's block simply
 * receiving the sum over the batches that share it. Every operand, weights
 * included, is read from ctx->in at call time: a rule may call forward and
 * backward with substituted inputs of the same shapes. */
#include <cblas.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/blas.h"
#include "core/pool.h"
#include "ops/ops.h"

/* ---- shared ---- */

static int is_blas_dtype(rp_dtype dt)
{
    return dt == RP_FLOAT || dt == RP_DOUBLE;
}

/* cblas takes int dimensions (OpenBLAS without INTERFACE64). */
static int fits_blas(int64_t v)
{
    return v >= 0 && v <= INT_MAX;
}

/* Row-major C = alpha op(A) op(B) + beta C. Empty products are handled here
 * because BLAS rejects a zero leading dimension (and reports it on stderr). */
static void gemm(rp_dtype dt, int ta, int tb, int64_t m, int64_t n, int64_t k, double alpha,
                 const void *a, int64_t lda, const void *b, int64_t ldb, double beta, void *c,
                 int64_t ldc)
{
    if (m == 0 || n == 0)
        return;
    if (k == 0) {
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                if (dt == RP_FLOAT) {
                    float *y = (float *)c + i * ldc + j;
                    *y = beta == 0 ? 0.0f : (float)beta * *y;
                } else {
                    double *y = (double *)c + i * ldc + j;
                    *y = beta == 0 ? 0.0 : beta * *y;
                }
            }
        return;
    }
    enum CBLAS_TRANSPOSE tA = ta ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE tB = tb ? CblasTrans : CblasNoTrans;
    if (dt == RP_FLOAT)
        rp_sgemm(tA, tB, (int)m, (int)n, (int)k, (float)alpha, a, (int)lda, b, (int)ldb, (float)beta, c, (int)ldc);
    else {
        rp_pool_threads(); /* float64 is not split (core/blas.h), but OpenBLAS's threads stay off */
        cblas_dgemm(CblasRowMajor, tA, tB, (int)m, (int)n, (int)k, alpha, a, (int)lda, b,
                    (int)ldb, beta, c, (int)ldc);
    }
}

static rp_status need_blas_dtypes(rp_kctx *c, const rp_tensor *a, const rp_tensor *b)
{
    if (!is_blas_dtype(a->dtype))
        return rp_kfail(c, RP_ERR_UNSUPPORTED, "%s inputs are not supported (float32 or float64 only)",
                        rp_dtype_name(a->dtype));
    if (b->dtype != a->dtype)
        return rp_kfail(c, RP_ERR_DTYPE, "inputs have different dtypes (%s and %s)",
                        rp_dtype_name(a->dtype), rp_dtype_name(b->dtype));
    return RP_OK;
}

static rp_status set_out(rp_kctx *c, rp_dtype dt, int rank, const int64_t *dims)
{
    if (!rp_tensor_set_shape(c->out[0], dt, rank, dims))
        return rp_kfail(c, RP_ERR_SHAPE, "output shape is invalid (rank %d or size overflows)", rank);
    return RP_OK;
}

/* ---- MatMul ---- */

typedef struct mm_params {
    rp_dtype dt;
    int64_t m, n, k;   /* per product; m includes folded batch rows */
    int nb;            /* batch axes iterated in forward */
    int64_t batches;   /* product of bdim */
    int64_t bdim[RP_MAX_RANK];
    int64_t astr[RP_MAX_RANK], bstr[RP_MAX_RANK]; /* element strides; 0 on broadcast axes */
} mm_params;

static rp_status matmul_prepare(rp_kctx *c)
{
    const rp_tensor *A = c->in[0], *B = c->in[1];
    rp_status s = need_blas_dtypes(c, A, B);
    if (s)
        return s;
    if (A->rank < 1 || B->rank < 1)
        return rp_kfail(c, RP_ERR_SHAPE, "operands must have rank >= 1 (got %d and %d)", A->rank, B->rank);
    int ra = A->rank, rb = B->rank;
    int64_t m = ra >= 2 ? A->dims[ra - 2] : 1, k = A->dims[ra - 1];
    int64_t kb = rb >= 2 ? B->dims[rb - 2] : B->dims[0], n = rb >= 2 ? B->dims[rb - 1] : 1;
    char sa[96], sb[96];
    if (k != kb)
        return rp_kfail(c, RP_ERR_SHAPE, "inner dimensions differ: %s x %s",
                        rp_shape_str(A, sa, sizeof sa), rp_shape_str(B, sb, sizeof sb));

    int na = ra > 2 ? ra - 2 : 0, nbb = rb > 2 ? rb - 2 : 0;
    int nb = na > nbb ? na : nbb;
    mm_params *p = calloc(1, sizeof *p);
    if (!p)
        return rp_kfail(c, RP_ERR_NOMEM, "out of memory");
    c->params = p;
    p->dt = A->dtype;

    /* Broadcast batch axes right-aligned; strides of each operand's batch axes. */
    int64_t odims[RP_MAX_RANK];
    int64_t sa_run = m * k, sb_run = k * n;
    for (int d = nb - 1; d >= 0; d--) {
        int ia = d - (nb - na), ib = d - (nb - nbb);
        int64_t da = ia >= 0 ? A->dims[ia] : 1, db = ib >= 0 ? B->dims[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return rp_kfail(c, RP_ERR_SHAPE, "batch dimensions do not broadcast: %s x %s",
                            rp_shape_str(A, sa, sizeof sa), rp_shape_str(B, sb, sizeof sb));
        odims[d] = da == 1 ? db : da;
        p->bdim[d] = odims[d];
        p->astr[d] = da == 1 ? 0 : sa_run;
        p->bstr[d] = db == 1 ? 0 : sb_run;
        sa_run *= da;
        sb_run *= db;
    }
    int rank = nb;
    if (ra >= 2)
        odims[rank++] = m;
    if (rb >= 2)
        odims[rank++] = n;
    if ((s = set_out(c, p->dt, rank, odims)))
        return s;

    int64_t batches = 1;
    int b_shared = 1;
    for (int d = 0; d < nb; d++) {
        batches *= p->bdim[d];
        if (p->bstr[d] != 0)
            b_shared = 0;
    }
    /* A [.., M, K] times one shared B [K, N] (the ViT projections): A's batch
     * rows stack into one tall GEMM, which is also how the output lies. (B
     * shared on every batch axis means A has them all, contiguous.) */
    if (b_shared) {
        m *= batches;
        batches = 1;
        nb = 0;
    }
    p->m = m;
    p->n = n;
    p->k = k;
    p->nb = nb;
    p->batches = batches;
    if (!fits_blas(m) || !fits_blas(n) || !fits_blas(k))
        return rp_kfail(c, RP_ERR_UNSUPPORTED, "product %lldx%lldx%lld exceeds BLAS int range",
                        (long long)m, (long long)k, (long long)n);
    return RP_OK;
}

typedef struct mm_batch_job {
    const mm_params *p;
    const char *a, *b;
    char *y;
    int64_t lda, ldb, ldy;
    bool tb;
    double alpha, beta;
} mm_batch_job;

/* Products [begin, end) of the forward's batch walk. */
static void mm_batches(void *ctx, int64_t begin, int64_t end)
{
    const mm_batch_job *j = ctx;
    const mm_params *p = j->p;
    size_t es = rp_dtype_size(p->dt);
    for (int64_t t = begin; t < end; t++) {
        int64_t ao = 0, bo = 0, rest = t;
        for (int d = p->nb - 1; d >= 0; d--) {
            int64_t i = rest % p->bdim[d];
            rest /= p->bdim[d];
            ao += i * p->astr[d];
            bo += i * p->bstr[d];
        }
        gemm(p->dt, 0, j->tb, p->m, p->n, p->k, j->alpha, j->a + (size_t)ao * es, j->lda, j->b + (size_t)bo * es,
             j->ldb, j->beta, j->y + (size_t)(t * p->m * p->n) * es, j->ldy);
    }
}

static rp_status matmul_forward(rp_kctx *c)
{
    const mm_params *p = c->params;
    const rp_product_fusion *f = c->fusion;
    rp_tensor *Y = c->out[0];
    if (Y->count == 0)
        return RP_OK;
    size_t es = rp_dtype_size(p->dt);
    bool accumulate = f && f->accumulate, tb = f && f->b_transposed;
    /* K == 0: A and B are empty (their data may be NULL, and NULL + 0 is
     * undefined in C) and every product is the empty sum. */
    if (p->k == 0) {
        if (!accumulate)
            memset(Y->data, 0, (size_t)Y->count * es);
        return RP_OK;
    }
    const char *a = c->in[0]->data, *b = c->in[1]->data;
    char *y = Y->data;
    int64_t lda = p->k > 1 ? p->k : 1, ldb = p->n > 1 ? p->n : 1, ldy = ldb;
    if (tb)
        ldb = lda; /* B stored [N, K] */
    mm_batch_job job = {p, a, b, y, lda, ldb, ldy, tb, f ? f->scale : 1.0, accumulate ? 1.0 : 0.0};
    /* Attention's heads: at least one product per thread, each on one
     * thread; else each product is split over the threads (core/blas.c). */
    if (p->batches > 1 && p->batches >= rp_pool_threads())
        rp_parallel_for(p->batches, 1, mm_batches, &job);
    else
        mm_batches(&job, 0, p->batches);
    return RP_OK;
}

static rp_status need_float_grad(rp_kctx *c, rp_dtype dt)
{
    if (dt != RP_FLOAT)
        return rp_kfail(c, RP_ERR_DTYPE, "gradients are float32 only (this node computes in %s)",
                        rp_dtype_name(dt));
    return RP_OK;
}

/* dA += dY B^T and dB += A^T dY per product, over the forward's batch walk.
 * With B shared by every batch, the batches are one tall [batches*M, K] A:
 * one GEMM each. */
static rp_status matmul_backward(rp_kctx *c, rp_tensor *const *gout, rp_tensor *const *gin)
{
    const mm_params *p = c->params;
    const rp_tensor *gy = gout[0];
    float *da = gin[0] ? gin[0]->data : NULL, *db = gin[1] ? gin[1]->data : NULL;
    if (!gy || (!da && !db))
        return RP_OK;
    rp_status s = need_float_grad(c, p->dt);
    if (s || gy->count == 0 || p->k == 0) /* K == 0: A and B are empty, so are their gradients */
        return s;
    const float *a = c->in[0]->data, *b = c->in[1]->data, *dy = gy->data;
    int64_t lda = p->k > 1 ? p->k : 1, ldb = p->n > 1 ? p->n : 1, ldy = ldb;
    int64_t ystep = p->m * p->n;
    int64_t idx[RP_MAX_RANK] = {0};
    int64_t ao = 0, bo = 0;
    for (int64_t t = 0; t < p->batches; t++) {
        const float *dyt = dy + t * ystep;
        if (da)
            gemm(RP_FLOAT, 0, 1, p->m, p->k, p->n, 1.0, dyt, ldy, b + bo, ldb, 1.0, da + ao, lda);
        if (db)
            gemm(RP_FLOAT, 1, 0, p->k, p->n, p->m, 1.0, a + ao, lda, dyt, ldy, 1.0, db + bo, ldb);
        for (int d = p->nb - 1; d >= 0; d--) {
            ao += p->astr[d];
            bo += p->bstr[d];
            if (++idx[d] < p->bdim[d])
                break;
            ao -= p->astr[d] * p->bdim[d];
            bo -= p->bstr[d] * p->bdim[d];
            idx[d] = 0;
        }
    }
    return RP_OK;
}

/* ---- Gemm ---- */

typedef struct gemm_params {
    rp_dtype dt;
    int ta, tb;
    int64_t m, n, k, lda, ldb;
    double alpha, beta;
    int use_c;              /* C present and beta != 0 */
    int64_t c_rs, c_cs;     /* C's strides over (M, N); 0 where broadcast */
} gemm_params;

static rp_status gemm_prepare(rp_kctx *c)
{
    const rp_tensor *A = c->in[0], *B = c->in[1];
    const rp_tensor *C = c->n_in > 2 ? c->in[2] : NULL;
    rp_status s = need_blas_dtypes(c, A, B);
    if (s)
        return s;
    if (A->rank != 2 || B->rank != 2)
        return rp_kfail(c, RP_ERR_SHAPE, "A and B must be 2-D (got rank %d and %d)", A->rank, B->rank);
    gemm_params *p = calloc(1, sizeof *p);
    if (!p)
        return rp_kfail(c, RP_ERR_NOMEM, "out of memory");
    c->params = p;
    p->dt = A->dtype;
    p->ta = rp_attr_int(c->node, "transA", 0) != 0;
    p->tb = rp_attr_int(c->node, "transB", 0) != 0;
    p->alpha = rp_attr_float(c->node, "alpha", 1.0f);
    p->beta = rp_attr_float(c->node, "beta", 1.0f);
    p->m = A->dims[p->ta ? 1 : 0];
    p->k = A->dims[p->ta ? 0 : 1];
    int64_t kb = B->dims[p->tb ? 1 : 0];
    p->n = B->dims[p->tb ? 0 : 1];
    p->lda = A->dims[1] > 1 ? A->dims[1] : 1;
    p->ldb = B->dims[1] > 1 ? B->dims[1] : 1;
    char sa[96], sb[96];
    if (p->k != kb)
        return rp_kfail(c, RP_ERR_SHAPE, "inner dimensions differ: %s%s x %s%s (transA=%d, transB=%d)",
                        rp_shape_str(A, sa, sizeof sa), p->ta ? "^T" : "", rp_shape_str(B, sb, sizeof sb),
                        p->tb ? "^T" : "", p->ta, p->tb);
    if (!fits_blas(p->m) || !fits_blas(p->n) || !fits_blas(p->k) || !fits_blas(p->lda) || !fits_blas(p->ldb))
        return rp_kfail(c, RP_ERR_UNSUPPORTED, "dimensions exceed BLAS int range");
    if (C) {
        if (C->dtype != A->dtype)
            return rp_kfail(c, RP_ERR_DTYPE, "C is %s but A is %s", rp_dtype_name(C->dtype),
                            rp_dtype_name(A->dtype));
        if (C->rank > 2)
            return rp_kfail(c, RP_ERR_SHAPE, "C must have rank <= 2 (got %d)", C->rank);
        /* Unidirectional broadcast of C to (M, N). */
        int64_t cm = C->rank == 2 ? C->dims[0] : 1, cn = C->rank >= 1 ? C->dims[C->rank - 1] : 1;
        if ((cm != 1 && cm != p->m) || (cn != 1 && cn != p->n))
            return rp_kfail(c, RP_ERR_SHAPE, "C %s does not broadcast to (%lld, %lld)",
                            rp_shape_str(C, sa, sizeof sa), (long long)p->m, (long long)p->n);
        p->c_rs = cm == 1 ? 0 : cn;
        p->c_cs = cn == 1 ? 0 : 1;
        p->use_c = p->beta != 0;
    }
    int64_t odims[2] = {p->m, p->n};
    return set_out(c, p->dt, 2, odims);
}

static rp_status gemm_forward(rp_kctx *c)
{
    const gemm_params *p = c->params;
    void *y = c->out[0]->data;
    if (c->out[0]->count == 0)
        return RP_OK;
    if (p->use_c) {
        /* Lay C out in Y; the GEMM then scales it by beta in place. */
        size_t es = rp_dtype_size(p->dt);
        const char *cd = c->in[2]->data;
        for (int64_t i = 0; i < p->m; i++) {
            char *row = (char *)y + (size_t)(i * p->n) * es;
            const char *src = cd + (size_t)(i * p->c_rs) * es;
            if (p->c_cs)
                memcpy(row, src, (size_t)p->n * es);
            else
                for (int64_t j = 0; j < p->n; j++)
                    memcpy(row + (size_t)j * es, src, es);
        }
    }
    gemm(p->dt, p->ta, p->tb, p->m, p->n, p->k, p->alpha, c->in[0]->data, p->lda, c->in[1]->data,
         p->ldb, p->use_c ? p->beta : 0.0, y, p->n > 1 ? p->n : 1);
    return RP_OK;
}

/* Y = alpha op(A) op(B) + beta C:
 *   d op(A) = alpha dY op(B)^T,  d op(B) = alpha op(A)^T dY,
 * written straight into A's and B's own layouts (transposed products where
 * transA / transB); dC = beta dY summed over C's broadcast axes. */
static rp_status gemm_backward(rp_kctx *c, rp_tensor *const *gout, rp_tensor *const *gin)
{
    const gemm_params *p = c->params;
    const rp_tensor *gy = gout[0];
    float *da = gin[0] ? gin[0]->data : NULL, *db = gin[1] ? gin[1]->data : NULL;
    float *dc = c->n_in > 2 && gin[2] && p->use_c ? gin[2]->data : NULL;
    if (!gy || (!da && !db && !dc))
        return RP_OK;
    rp_status s = need_float_grad(c, p->dt);
    if (s || gy->count == 0)
        return s;
    const float *a = c->in[0]->data, *b = c->in[1]->data, *dy = gy->data;
    int64_t ldy = p->n > 1 ? p->n : 1;
    if (da) {
        if (!p->ta) /* A [M,K] += alpha dY op(B)^T */
            gemm(RP_FLOAT, 0, !p->tb, p->m, p->k, p->n, p->alpha, dy, ldy, b, p->ldb, 1.0, da, p->lda);
        else        /* A [K,M] += alpha op(B) dY^T */
            gemm(RP_FLOAT, p->tb, 1, p->k, p->m, p->n, p->alpha, b, p->ldb, dy, ldy, 1.0, da, p->lda);
    }
    if (db) {
        if (!p->tb) /* B [K,N] += alpha op(A)^T dY */
            gemm(RP_FLOAT, !p->ta, 0, p->k, p->n, p->m, p->alpha, a, p->lda, dy, ldy, 1.0, db, p->ldb);
        else        /* B [N,K] += alpha dY^T op(A) */
            gemm(RP_FLOAT, 1, p->ta, p->n, p->k, p->m, p->alpha, dy, ldy, a, p->lda, 1.0, db, p->ldb);
    }
    if (dc) {
        /* Sums in double; C is [M,N], a row [N], a column [M,1] or one value. */
        int64_t m = p->m, n = p->n;
        if (p->c_rs == 0 && p->c_cs == 0) {
            double acc = 0;
            for (int64_t i = 0; i < m * n; i++)
                acc += dy[i];
            dc[0] += (float)(p->beta * acc);
        } else if (p->c_rs == 0) {
            for (int64_t j = 0; j < n; j++) {
                double acc = 0;
                for (int64_t i = 0; i < m; i++)
                    acc += dy[i * n + j];
                dc[j] += (float)(p->beta * acc);
            }
        } else if (p->c_cs == 0) {
            for (int64_t i = 0; i < m; i++) {
                double acc = 0;
                for (int64_t j = 0; j < n; j++)
                    acc += dy[i * n + j];
                dc[i * p->c_rs] += (float)(p->beta * acc);
            }
        } else {
            float beta = (float)p->beta;
            for (int64_t i = 0; i < m * n; i++)
                dc[i] += beta * dy[i];
        }
    }
    return RP_OK;
}

/* ---- Einsum ---- */

#define ES_MAX_OPS 8                            /* operands + the output */
#define ES_LETTERS 52                           /* A-Z then a-z: id order is ASCII order */
#define ES_MAX_LABELS (ES_LETTERS + RP_MAX_RANK) /* letters, then one label per "..." axis */

typedef struct es_params {
    rp_dtype dt;
    int n_ops;
    int64_t size[ES_MAX_LABELS];
    int64_t str[ES_MAX_OPS][ES_MAX_LABELS]; /* by label id; [n_ops] is the output; 0 = absent or broadcast */
    /* Strided loop: output labels (row-major) then the summed ones. */
    int n_out, n_sum;
    int loop[ES_MAX_LABELS];
    /* Batched GEMM plan (two operands, one product per batch index). */
    int use_gemm;
    int ta, tb, swap; /* swap: the output block is column-major, so compute its transpose */
    int64_t m, n, k, lda, ldb, ldc;
    int nb;
    int64_t bsize[RP_MAX_RANK];
    int64_t bstr[3][RP_MAX_RANK]; /* A, B, output */
} es_params;

typedef struct es_term {
    int n;                  /* letters */
    int lab[RP_MAX_RANK];
    int ell;                /* letters before "...", -1 if none */
} es_term;

static char es_char(int l)
{
    return (char)(l < 26 ? 'A' + l : 'a' + (l - 26));
}

static rp_status es_parse_term(rp_kctx *c, const char *s, size_t len, es_term *t)
{
    t->n = 0;
    t->ell = -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (t->ell >= 0 || i + 2 >= len || s[i + 1] != '.' || s[i + 2] != '.')
                return rp_kfail(c, RP_ERR_VALUE, "equation term '%.*s': dots must form one '...'",
                                (int)len, s);
            t->ell = t->n;
            i += 2;
            continue;
        }
        int l = -1;
        if (s[i] >= 'A' && s[i] <= 'Z')
            l = s[i] - 'A';
        else if (s[i] >= 'a' && s[i] <= 'z')
            l = 26 + (s[i] - 'a');
        if (l < 0)
            return rp_kfail(c, RP_ERR_VALUE, "equation term '%.*s': '%c' is not a letter", (int)len, s, s[i]);
        if (t->n >= RP_MAX_RANK)
            return rp_kfail(c, RP_ERR_UNSUPPORTED, "equation term '%.*s' has more than %d letters",
                            (int)len, s, RP_MAX_RANK);
        t->lab[t->n++] = l;
    }
    return RP_OK;
}

/* Merge labels g[0..ng) (outermost first) of one operand into one index.
 * Fails unless they form a nested row-major block; *stride gets the innermost
 * stride (0 if every label has size 1, where any stride will do). */
static int es_merge(const es_params *p, const int64_t *str, const int *g, int ng, int64_t *stride)
{
    int64_t inner = 0, expect = -1;
    for (int t = ng - 1; t >= 0; t--) {
        int l = g[t];
        if (p->size[l] == 1)
            continue;
        if (str[l] == 0 || (expect >= 0 && str[l] != expect))
            return 0;
        if (expect < 0)
            inner = str[l];
        expect = str[l] * p->size[l];
    }
    *stride = inner;
    return 1;
}

/* A rows x cols block at strides (sr, sc) as a row-major BLAS operand. */
static int es_operand(int64_t rows, int64_t cols, int64_t sr, int64_t sc, int *trans, int64_t *ld)
{
    if ((cols == 1 || sc == 1) && (rows == 1 || sr >= cols)) {
        *trans = 0;
        *ld = rows == 1 ? (cols > 1 ? cols : 1) : sr;
        return fits_blas(*ld);
    }
    if ((rows == 1 || sr == 1) && (cols == 1 || sc >= rows)) {
        *trans = 1;
        *ld = cols == 1 ? (rows > 1 ? rows : 1) : sc;
        return fits_blas(*ld);
    }
    return 0;
}

/* Two operands without repeated labels, where every label is a batch (A, B,
 * out), row (A, out), column (B, out) or contracted (A, B) label, and each
 * group lies as one strided block: one GEMM per batch index. */
static void es_plan_gemm(es_params *p, const int in[3][ES_MAX_LABELS], const int *order_a, int n_a,
                         const int *out_lab, int n_out)
{
    int gm[ES_MAX_LABELS], gn[ES_MAX_LABELS], gk[ES_MAX_LABELS], nm = 0, nn = 0, nk = 0, nb = 0;
    for (int l = 0; l < ES_MAX_LABELS; l++)
        if ((in[0][l] || in[1][l]) && !in[2][l] && !(in[0][l] && in[1][l]))
            return; /* summed within one operand */
    for (int i = 0; i < n_out; i++) {
        int l = out_lab[i];
        if (in[0][l] && in[1][l]) {
            if (nb >= RP_MAX_RANK)
                return;
            p->bsize[nb] = p->size[l];
            for (int o = 0; o < 3; o++)
                p->bstr[o][nb] = p->str[o][l];
            nb++;
        } else if (in[0][l]) {
            gm[nm++] = l;
        } else {
            gn[nn++] = l;
        }
    }
    for (int i = 0; i < n_a; i++)
        if (!in[2][order_a[i]] && in[1][order_a[i]])
            gk[nk++] = order_a[i];
    int64_t sam, sak, sbk, sbn, sym, syn;
    if (!es_merge(p, p->str[0], gm, nm, &sam) || !es_merge(p, p->str[0], gk, nk, &sak) ||
        !es_merge(p, p->str[1], gk, nk, &sbk) || !es_merge(p, p->str[1], gn, nn, &sbn) ||
        !es_merge(p, p->str[2], gm, nm, &sym) || !es_merge(p, p->str[2], gn, nn, &syn))
        return;
    int64_t m = 1, n = 1, k = 1;
    for (int i = 0; i < nm; i++)
        m *= p->size[gm[i]];
    for (int i = 0; i < nn; i++)
        n *= p->size[gn[i]];
    for (int i = 0; i < nk; i++)
        k *= p->size[gk[i]];
    int ty;
    int64_t ldy;
    if (!fits_blas(m) || !fits_blas(n) || !fits_blas(k) ||
        !es_operand(m, k, sam, sak, &p->ta, &p->lda) || !es_operand(k, n, sbk, sbn, &p->tb, &p->ldb) ||
        !es_operand(m, n, sym, syn, &ty, &ldy))
        return;
    p->m = m;
    p->n = n;
    p->k = k;
    p->ldc = ldy;
    p->swap = ty;
    p->nb = nb;
    p->use_gemm = 1;
}

static rp_status einsum_prepare(rp_kctx *c)
{
    const char *eq = rp_attr_string(c->node, "equation", NULL);
    if (!eq)
        return rp_kfail(c, RP_ERR_VALUE, "missing 'equation' attribute");
    int n_ops = c->n_in;
    if (n_ops < 1 || n_ops > ES_MAX_OPS - 1)
        return rp_kfail(c, RP_ERR_UNSUPPORTED, "%d operands (1 to %d supported)", n_ops, ES_MAX_OPS - 1);
    for (int i = 0; i < n_ops; i++)
        if (!c->in[i])
            return rp_kfail(c, RP_ERR_FORMAT, "operand %d is omitted (empty name); every operand is required", i);
    rp_dtype dt = c->in[0]->dtype;
    for (int i = 0; i < n_ops; i++) {
        if (!is_blas_dtype(c->in[i]->dtype))
            return rp_kfail(c, RP_ERR_UNSUPPORTED, "%s operands are not supported (float32 or float64 only)",
                            rp_dtype_name(c->in[i]->dtype));
        if (c->in[i]->dtype != dt)
            return rp_kfail(c, RP_ERR_DTYPE, "operands have different dtypes (%s and %s)",
                            rp_dtype_name(dt), rp_dtype_name(c->in[i]->dtype));
    }
    /* Exporters write "bij, bjk -> bik": whitespace carries nothing. */
    char buf[256];
    size_t len = 0;
    for (const char *s = eq; *s; s++) {
        if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
            continue;
        if (len + 1 >= sizeof buf)
            return rp_kfail(c, RP_ERR_UNSUPPORTED, "equation longer than %d characters", (int)sizeof buf - 1);
        buf[len++] = *s;
    }
    buf[len] = 0;

    es_params *p = calloc(1, sizeof *p);
    if (!p)
        return rp_kfail(c, RP_ERR_NOMEM, "out of memory");
    c->params = p;
    p->dt = dt;
    p->n_ops = n_ops;

    /* Terms of the left side, and how many axes each one's "..." covers. */
    const char *arrow = strstr(buf, "->");
    size_t lhs_len = arrow ? (size_t)(arrow - buf) : len;
    es_term term[ES_MAX_OPS];
    int ell_rank[ES_MAX_OPS], max_ell = 0, n_terms = 0;
    rp_status s;
    for (size_t pos = 0;;) {
        size_t e = pos;
        while (e < lhs_len && buf[e] != ',')
            e++;
        if (n_terms >= n_ops)
            return rp_kfail(c, RP_ERR_VALUE, "equation '%s' has more terms than the %d inputs", eq, n_ops);
        es_term *t = &term[n_terms];
        if ((s = es_parse_term(c, buf + pos, e - pos, t)))
            return s;
        int r = c->in[n_terms]->rank;
        if (t->ell >= 0 ? r < t->n : r != t->n)
            return rp_kfail(c, RP_ERR_SHAPE, "term '%.*s' does not fit input %d of rank %d", (int)(e - pos),
                            buf + pos, n_terms, r);
        ell_rank[n_terms] = t->ell >= 0 ? r - t->n : 0;
        if (ell_rank[n_terms] > max_ell)
            max_ell = ell_rank[n_terms];
        n_terms++;
        if (e >= lhs_len)
            break;
        pos = e + 1;
    }
    if (n_terms != n_ops)
        return rp_kfail(c, RP_ERR_VALUE, "equation '%s' has %d terms for %d inputs", eq, n_terms, n_ops);

    /* Each axis's label; "..." axes right-aligned and broadcast like numpy. */
    int in[ES_MAX_OPS][ES_MAX_LABELS];
    int occ[ES_MAX_LABELS] = {0};
    int ax_lab[ES_MAX_OPS][RP_MAX_RANK];
    int repeated = 0;
    memset(in, 0, sizeof in);
    for (int l = 0; l < ES_MAX_LABELS; l++)
        p->size[l] = -1;
    for (int i = 0; i < n_ops; i++) {
        const es_term *t = &term[i];
        const rp_tensor *x = c->in[i];
        int ax = 0;
        for (int j = 0; j <= t->n; j++) {
            if (j == t->ell)
                for (int e = 0; e < ell_rank[i]; e++)
                    ax_lab[i][ax++] = ES_LETTERS + max_ell - ell_rank[i] + e;
            if (j < t->n) {
                ax_lab[i][ax++] = t->lab[j];
                occ[t->lab[j]]++;
            }
        }
        int64_t first[ES_MAX_LABELS] = {0};
        for (int a = 0; a < x->rank; a++) {
            int l = ax_lab[i][a];
            int64_t d = x->dims[a];
            if (in[i][l]) {
                repeated = 1;
                if (d != first[l])
                    return rp_kfail(c, RP_ERR_SHAPE, "input %d repeats label '%c' over sizes %lld and %lld",
                                    i, es_char(l), (long long)first[l], (long long)d);
                continue;
            }
            in[i][l] = 1;
            first[l] = d;
            if (p->size[l] < 0 || p->size[l] == 1)
                p->size[l] = d;
            else if (d != p->size[l] && d != 1)
                return rp_kfail(c, RP_ERR_SHAPE, "label %c%c has sizes %lld and %lld (input %d)",
                                l < ES_LETTERS ? '\'' : '.', l < ES_LETTERS ? es_char(l) : '.',
                                (long long)p->size[l], (long long)d, i);
        }
        /* Strides by label; a repeated label (diagonal) adds its axes' strides. */
        int64_t st = 1;
        for (int a = x->rank - 1; a >= 0; a--) {
            if (x->dims[a] != 1)
                p->str[i][ax_lab[i][a]] += st;
            st *= x->dims[a];
        }
    }

    /* Output labels: explicit, or numpy's implicit form ("..." then the
     * letters that occur once, in ASCII order). */
    int out_lab[ES_MAX_LABELS], n_out = 0;
    int *in_out = in[n_ops];
    if (arrow) {
        es_term t;
        if ((s = es_parse_term(c, arrow + 2, strlen(arrow + 2), &t)))
            return s;
        for (int j = 0; j <= t.n; j++) {
            if (j == t.ell)
                for (int e = 0; e < max_ell; e++)
                    out_lab[n_out++] = ES_LETTERS + e;
            if (j < t.n) {
                int l = t.lab[j];
                if (p->size[l] < 0)
                    return rp_kfail(c, RP_ERR_VALUE, "output label '%c' is in no input", es_char(l));
                if (in_out[l])
                    return rp_kfail(c, RP_ERR_VALUE, "output label '%c' appears twice", es_char(l));
                in_out[l] = 1;
                out_lab[n_out++] = l;
            }
        }
        if (t.ell >= 0)
            for (int e = 0; e < max_ell; e++)
                in_out[ES_LETTERS + e] = 1;
    } else {
        for (int e = 0; e < max_ell; e++) {
            out_lab[n_out++] = ES_LETTERS + e;
            in_out[ES_LETTERS + e] = 1;
        }
        for (int l = 0; l < ES_LETTERS; l++)
            if (occ[l] == 1) {
                out_lab[n_out++] = l;
                in_out[l] = 1;
            }
    }
    if (n_out > RP_MAX_RANK)
        return rp_kfail(c, RP_ERR_UNSUPPORTED, "output rank %d exceeds %d", n_out, RP_MAX_RANK);
    int64_t odims[RP_MAX_RANK];
    for (int j = 0; j < n_out; j++)
        odims[j] = p->size[out_lab[j]];
    if ((s = set_out(c, dt, n_out, odims)))
        return s;
    int64_t st = 1;
    for (int j = n_out - 1; j >= 0; j--) {
        p->str[n_ops][out_lab[j]] = odims[j] == 1 ? 0 : st;
        st *= odims[j];
    }

    /* Loop order for the strided fallback. */
    p->n_out = n_out;
    memcpy(p->loop, out_lab, sizeof(int) * (size_t)n_out);
    p->n_sum = 0;
    for (int l = 0; l < ES_MAX_LABELS; l++)
        if (p->size[l] >= 0 && !in_out[l])
            p->loop[n_out + p->n_sum++] = l;

    if (n_ops == 2 && !repeated)
        es_plan_gemm(p, (const int(*)[ES_MAX_LABELS])in, ax_lab[0], c->in[0]->rank, out_lab, n_out);
    return RP_OK;
}

static double es_get(rp_dtype dt, const void *x, int64_t i)
{
    return dt == RP_FLOAT ? ((const float *)x)[i] : ((const double *)x)[i];
}

static rp_status einsum_forward(rp_kctx *c)
{
    const es_params *p = c->params;
    rp_tensor *Y = c->out[0];
    if (Y->count == 0)
        return RP_OK;
    size_t es = rp_dtype_size(p->dt);
    if (p->use_gemm && p->k == 0) { /* empty operands (maybe NULL data): every sum is empty */
        memset(Y->data, 0, (size_t)Y->count * es);
        return RP_OK;
    }
    if (p->use_gemm) {
        const char *a = c->in[0]->data, *b = c->in[1]->data;
        char *y = Y->data;
        int64_t idx[RP_MAX_RANK] = {0}, ao = 0, bo = 0, yo = 0;
        for (;;) {
            if (p->swap)
                gemm(p->dt, !p->tb, !p->ta, p->n, p->m, p->k, 1.0, b + (size_t)bo * es, p->ldb,
                     a + (size_t)ao * es, p->lda, 0.0, y + (size_t)yo * es, p->ldc);
            else
                gemm(p->dt, p->ta, p->tb, p->m, p->n, p->k, 1.0, a + (size_t)ao * es, p->lda,
                     b + (size_t)bo * es, p->ldb, 0.0, y + (size_t)yo * es, p->ldc);
            int d = p->nb - 1;
            for (; d >= 0; d--) {
                ao += p->bstr[0][d];
                bo += p->bstr[1][d];
                yo += p->bstr[2][d];
                if (++idx[d] < p->bsize[d])
                    break;
                ao -= p->bstr[0][d] * p->bsize[d];
                bo -= p->bstr[1][d] * p->bsize[d];
                yo -= p->bstr[2][d] * p->bsize[d];
                idx[d] = 0;
            }
            if (d < 0)
                return RP_OK;
        }
    }

    /* Strided loop: for each output element, sum the product over the
     * summed labels. Offsets move by strides; no division per element. */
    int n_ops = p->n_ops, no = p->n_out, ns = p->n_sum;
    const int *lo = p->loop, *ls = p->loop + no;
    int64_t inner = 1;
    for (int j = 0; j < ns; j++)
        inner *= p->size[ls[j]];
    const void *x[ES_MAX_OPS];
    for (int i = 0; i < n_ops; i++)
        x[i] = c->in[i]->data;
    /* A full turn of the inner odometer brings iidx back to zero. */
    int64_t oidx[ES_MAX_LABELS] = {0}, iidx[ES_MAX_LABELS] = {0}, ooff[ES_MAX_OPS] = {0};
    for (int64_t t = 0; t < Y->count; t++) {
        int64_t off[ES_MAX_OPS];
        memcpy(off, ooff, sizeof off);
        double sum = 0;
        for (int64_t u = 0; u < inner; u++) {
            double prod = 1;
            for (int i = 0; i < n_ops; i++)
                prod *= es_get(p->dt, x[i], off[i]);
            sum += prod;
            for (int j = ns - 1; j >= 0; j--) {
                int l = ls[j];
                for (int i = 0; i < n_ops; i++)
                    off[i] += p->str[i][l];
                if (++iidx[j] < p->size[l])
                    break;
                for (int i = 0; i < n_ops; i++)
                    off[i] -= p->str[i][l] * p->size[l];
                iidx[j] = 0;
            }
        }
        if (p->dt == RP_FLOAT)
            ((float *)Y->data)[t] = (float)sum;
        else
            ((double *)Y->data)[t] = sum;
        for (int j = no - 1; j >= 0; j--) {
            int l = lo[j];
            for (int i = 0; i < n_ops; i++)
                ooff[i] += p->str[i][l];
            if (++oidx[j] < p->size[l])
                break;
            for (int i = 0; i < n_ops; i++)
                ooff[i] -= p->str[i][l] * p->size[l];
            oidx[j] = 0;
        }
    }
    return RP_OK;
}

/* A matrix operand of a GEMM: the logical matrix is the stored row-major
 * block, or its transpose when t is set (ld is the stored block's). */
typedef struct es_mat {
    const float *p;
    int t;
    int64_t ld;
} es_mat;

/* D (r x s, stored as described by dt / ldd) += X (r x k) Y (k x s). A
 * transposed destination takes the transposed product, D^T += Y^T X^T, since
 * BLAS writes row-major C only. */
static void es_acc(float *d, int dt, int64_t ldd, int64_t r, int64_t s, int64_t k, es_mat x, es_mat y)
{
    if (!dt)
        gemm(RP_FLOAT, x.t, y.t, r, s, k, 1.0, x.p, x.ld, y.p, y.ld, 1.0, d, ldd);
    else
        gemm(RP_FLOAT, !y.t, !x.t, s, r, k, 1.0, y.p, y.ld, x.p, x.ld, 1.0, d, ldd);
}

/* Strided-loop gradient of operand `target`: for each element of it (its
 * labels with a nonzero stride, outermost first), the double sum over every
 * other label of dY times the other operands, added once. Labels the operand
 * lacks or broadcasts (stride 0) are summed; a repeated label's summed
 * stride addresses the diagonal. f[n_ops] is dY. */
static void es_grad_loop(const es_params *p, int target, const float *const *f, float *g)
{
    int n_ops = p->n_ops, outer[ES_MAX_LABELS], inner[ES_MAX_LABELS], no = 0, ni = 0;
    for (int j = 0; j < p->n_out + p->n_sum; j++) {
        int l = p->loop[j];
        if (p->size[l] == 0)
            return; /* nothing to sum */
        if (p->str[target][l] != 0)
            outer[no++] = l;
        else
            inner[ni++] = l;
    }
    int64_t n_outer = 1, n_inner = 1;
    for (int j = 0; j < no; j++)
        n_outer *= p->size[outer[j]];
    for (int j = 0; j < ni; j++)
        n_inner *= p->size[inner[j]];
    int64_t oidx[ES_MAX_LABELS] = {0}, iidx[ES_MAX_LABELS] = {0}, ooff[ES_MAX_OPS] = {0};
    for (int64_t t = 0; t < n_outer; t++) {
        int64_t off[ES_MAX_OPS];
        memcpy(off, ooff, sizeof off);
        double sum = 0;
        for (int64_t u = 0; u < n_inner; u++) {
            double prod = f[n_ops][off[n_ops]];
            for (int i = 0; i < n_ops; i++)
                if (i != target)
                    prod *= f[i][off[i]];
            sum += prod;
            for (int j = ni - 1; j >= 0; j--) {
                int l = inner[j];
                for (int i = 0; i <= n_ops; i++)
                    off[i] += p->str[i][l];
                if (++iidx[j] < p->size[l])
                    break;
                for (int i = 0; i <= n_ops; i++)
                    off[i] -= p->str[i][l] * p->size[l];
                iidx[j] = 0;
            }
        }
        g[off[target]] += (float)sum;
        for (int j = no - 1; j >= 0; j--) {
            int l = outer[j];
            for (int i = 0; i <= n_ops; i++)
                ooff[i] += p->str[i][l];
            if (++oidx[j] < p->size[l])
                break;
            for (int i = 0; i <= n_ops; i++)
                ooff[i] -= p->str[i][l] * p->size[l];
            oidx[j] = 0;
        }
    }
}

/* GEMM path: Y (m x n) = A (m x k) B (k x n) per batch index, so
 *   dA (m x k) += dY B^T   and   dB (k x n) += A^T dY
 * over the same blocks (e.g. bhid,bhjd->bhij: dQ = bhij,bhjd->bhid and
 * dK = bhij,bhid->bhjd), each gradient written in its operand's own layout.
 * Otherwise the strided loop, one operand at a time. */
static rp_status einsum_backward(rp_kctx *c, rp_tensor *const *gout, rp_tensor *const *gin)
{
    const es_params *p = c->params;
    const rp_tensor *gy = gout[0];
    int any = 0;
    for (int i = 0; i < p->n_ops; i++)
        any |= gin[i] != NULL;
    if (!gy || !any)
        return RP_OK;
    rp_status s = need_float_grad(c, p->dt);
    if (s || gy->count == 0)
        return s;
    const float *dy = gy->data;
    if (p->use_gemm && p->k == 0) /* empty operands, empty gradients */
        return RP_OK;
    if (p->use_gemm) {
        const float *a = c->in[0]->data, *b = c->in[1]->data;
        float *da = gin[0] ? gin[0]->data : NULL, *db = gin[1] ? gin[1]->data : NULL;
        int64_t idx[RP_MAX_RANK] = {0}, ao = 0, bo = 0, yo = 0;
        for (;;) {
            es_mat A = {a + ao, p->ta, p->lda}, B = {b + bo, p->tb, p->ldb}, dY = {dy + yo, p->swap, p->ldc};
            if (da) {
                es_mat Bt = {B.p, !B.t, B.ld};
                es_acc(da + ao, p->ta, p->lda, p->m, p->k, p->n, dY, Bt);
            }
            if (db) {
                es_mat At = {A.p, !A.t, A.ld};
                es_acc(db + bo, p->tb, p->ldb, p->k, p->n, p->m, At, dY);
            }
            int d = p->nb - 1;
            for (; d >= 0; d--) {
                ao += p->bstr[0][d];
                bo += p->bstr[1][d];
                yo += p->bstr[2][d];
                if (++idx[d] < p->bsize[d])
                    break;
                ao -= p->bstr[0][d] * p->bsize[d];
                bo -= p->bstr[1][d] * p->bsize[d];
                yo -= p->bstr[2][d] * p->bsize[d];
                idx[d] = 0;
            }
            if (d < 0)
                return RP_OK;
        }
    }
    const float *f[ES_MAX_OPS + 1];
    for (int i = 0; i < p->n_ops; i++)
        f[i] = c->in[i]->data;
    f[p->n_ops] = dy;
    for (int i = 0; i < p->n_ops; i++)
        if (gin[i] && c->in[i]->count > 0)
            es_grad_loop(p, i, f, gin[i]->data);
    return RP_OK;
}

/* ---- table ---- */

/* A product's gradient to one operand reads only the others. */
#define CONTRACTION(name, since, in_min, in_max, more_flags, more, prep, fwd, bwd) \
    RP_OP(name, since, .min_in = in_min, .max_in = in_max, .role = RP_ROLE_CONTRACTION, \
          .flags = RP_OPF_GRAD_OTHER_INPUTS | RP_OPF_GRAD_NO_OUTPUTS | (more_flags), .summand_inputs = (more), \
          .prepare = prep, .forward = fwd, .backward = bwd)
/* Gemm's C is added to the product. */
#define GEMM(since, in_min) CONTRACTION("Gemm", since, in_min, 3, 0, 1u << 2, gemm_prepare, gemm_forward, gemm_backward)

const rp_op rp_ops_matmul[] = {
    CONTRACTION("MatMul", 1, 2, 2, RP_OPF_FUSES, 0, matmul_prepare, matmul_forward, matmul_backward),
    CONTRACTION("MatMul", 13, 2, 2, RP_OPF_FUSES, 0, matmul_prepare, matmul_forward, matmul_backward),
    /* Before opset 11 C is required. Opsets 1 and 6 gate C's broadcasting by
     * a `broadcast` attribute; broadcasting whenever shapes allow is a
     * superset, so they share the later kernel. */
    GEMM(1, 3),
    GEMM(6, 3),
    GEMM(7, 3),
    GEMM(9, 3),
    GEMM(11, 2),
    GEMM(13, 2),
    CONTRACTION("Einsum", 12, 1, ES_MAX_OPS - 1, 0, 0, einsum_prepare, einsum_forward, einsum_backward),
};
const size_t rp_ops_matmul_count = sizeof rp_ops_matmul / sizeof rp_ops_matmul[0];
