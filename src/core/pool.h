/* relprop's threads: one pool runs its own loops (softmax and layer-norm
 * rows, elementwise maps) and its matrix products, which it splits into
 * single-threaded OpenBLAS calls (core/blas.h). OpenBLAS's own threads stay
 * off: two pools of threads that poll for work on the same cores take each
 * other's time slices.
 *
 * The caller works through each job too, taking ranges from a shared
 * counter, so a helper that starts late only means the caller does more.
 * Idle helpers poll for a short while (yielding their core on a busy
 * machine) and then sleep. Not fork-safe while a job runs. */
#ifndef RELPROP_CORE_POOL_H
#define RELPROP_CORE_POOL_H

#include <stdbool.h>
#include <stdint.h>

/* Do elements [begin, end) of a job; ranges of one job may run at once. */
typedef void (*rp_range_fn)(void *ctx, int64_t begin, int64_t end);

/* Run fn over [0, n) in ranges of grain elements (the last one shorter) on
 * the caller and the pool. Each range must compute what it would alone (no
 * sums across ranges), so results do not depend on which thread runs it. A job
 * started inside another (from a range, or from another thread of the
 * program while one runs) runs on its caller alone. */
void rp_parallel_for(int64_t n, int64_t grain, rp_range_fn fn, void *ctx);

/* `threads` threads in all, the caller included (rp_set_threads). */
void rp_pool_set_threads(int threads);
/* Threads a job can use, the caller included; starts the helpers (one per
 * core unless rp_pool_set_threads said otherwise). */
int rp_pool_threads(void);

/* A range of about this many elements takes a few microseconds: enough to
 * pay for handing it to another thread, small enough to balance. */
#define RP_RANGE_ELEMENTS 8192

/* The grain for a job over rows of row_len elements. */
static inline int64_t rp_rows_per_range(int64_t row_len)
{
    return row_len >= RP_RANGE_ELEMENTS ? 1 : RP_RANGE_ELEMENTS / (row_len > 0 ? row_len : 1);
}

#endif
