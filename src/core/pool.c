/* relprop's threads; see core/pool.h. */
#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "core/pool.h"

#define MAX_HELPERS 63
/* An idle helper polls for the next job this long before it sleeps: the
 * jobs of one pass follow each other within microseconds, and waking a
 * sleeping thread takes tens of microseconds. Past the first microseconds
 * it polls with sched_yield, so that on a busy machine it gives its core
 * away rather than spin on it. */
#define POLL_NS 200000
#define PAUSES_BEFORE_YIELD 256

/* The protocol relies on sequentially consistent atomics (C11's default)
 * for two pairs: a helper adds itself to `sleeping` and then reads `gen`
 * while a caller bumps `gen` and then reads `sleeping` (no lost wake-up),
 * and a helper adds itself to `active` and then reads `open` while a caller
 * clears `open` and then waits for `active` to drop to 0 (no helper left in
 * a job its caller has returned from). Acquire/release would not do.
 *
 * Not fork-safe: a child forked while a job runs must not start one. */
typedef struct pool {
    pthread_mutex_t lock;
    pthread_cond_t wake;     /* a new job */
    pthread_cond_t resized;  /* `wanted` changed */
    int started;             /* helpers running */
    _Atomic int wanted;      /* helpers jobs use; -1: not set yet */
    _Atomic int sleeping;    /* helpers waiting on `wake` */
    _Atomic unsigned long gen; /* the current job's number */
    _Atomic int busy;        /* a caller owns the pool */
    _Atomic int open;        /* the current job's fields are written: helpers may join */
    _Atomic int active;      /* helpers inside a job */
    /* The job: written while no helper is active, read by helpers that
     * joined it. */
    rp_range_fn fn;
    void *ctx;
    int64_t n, grain;
    _Atomic int64_t next; /* first element not yet claimed */
} pool;

static pool the_pool = {.lock = PTHREAD_MUTEX_INITIALIZER,
                        .wake = PTHREAD_COND_INITIALIZER,
                        .resized = PTHREAD_COND_INITIALIZER,
                        .wanted = -1};

static void relax(unsigned *spins)
{
    if (++*spins < PAUSES_BEFORE_YIELD) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    } else {
        sched_yield();
    }
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void run_claims(pool *p)
{
    for (;;) {
        int64_t begin = atomic_fetch_add_explicit(&p->next, p->grain, memory_order_relaxed);
        if (begin >= p->n)
            return;
        p->fn(p->ctx, begin, begin + p->grain < p->n ? begin + p->grain : p->n);
    }
}

static void *helper_main(void *arg)
{
    pool *p = &the_pool;
    const int index = (int)(intptr_t)arg;
    unsigned long seen = atomic_load(&p->gen);
    for (;;) {
        if (index >= atomic_load(&p->wanted)) {
            /* Fewer threads asked for: wait, out of the jobs' way, until
             * more are. */
            pthread_mutex_lock(&p->lock);
            while (index >= atomic_load(&p->wanted))
                pthread_cond_wait(&p->resized, &p->lock);
            pthread_mutex_unlock(&p->lock);
            seen = atomic_load(&p->gen);
        }
        uint64_t idle_since = now_ns();
        unsigned spins = 0;
        while (atomic_load(&p->gen) == seen) {
            if (spins < PAUSES_BEFORE_YIELD || now_ns() - idle_since < POLL_NS) {
                relax(&spins);
                continue;
            }
            pthread_mutex_lock(&p->lock);
            atomic_fetch_add(&p->sleeping, 1);
            while (atomic_load(&p->gen) == seen)
                pthread_cond_wait(&p->wake, &p->lock);
            atomic_fetch_sub(&p->sleeping, 1);
            pthread_mutex_unlock(&p->lock);
        }
        seen = atomic_load(&p->gen);
        if (index >= atomic_load(&p->wanted))
            continue;
        atomic_fetch_add(&p->active, 1);
        /* Only the job that woke us, and only while it is open: a caller
         * waits for active == 0 before it writes the next one. */
        if (atomic_load(&p->open) && atomic_load(&p->gen) == seen)
            run_claims(p);
        atomic_fetch_sub(&p->active, 1);
    }
    return NULL;
}

/* OpenBLAS runs on the calling thread only: relprop splits its products
 * over the pool itself (core/blas.c), and two pools of spinning threads on
 * the same cores slow each other down. */
static void blas_single_threaded(void)
{
    openblas_set_num_threads(1);
}

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

static void set_wanted(pool *p, int threads)
{
    int want = threads - 1;
    atomic_store(&p->wanted, want < 0 ? 0 : want > MAX_HELPERS ? MAX_HELPERS : want);
    pthread_cond_broadcast(&p->resized);
}

void rp_pool_set_threads(int threads)
{
    pthread_once(&blas_once, blas_single_threaded);
    pthread_mutex_lock(&the_pool.lock);
    set_wanted(&the_pool, threads);
    pthread_mutex_unlock(&the_pool.lock);
}

int rp_pool_threads(void)
{
    pool *p = &the_pool;
    pthread_once(&blas_once, blas_single_threaded);
    pthread_mutex_lock(&p->lock);
    if (atomic_load(&p->wanted) < 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        set_wanted(p, cores > 0 ? (int)cores : 1);
    }
    while (p->started < atomic_load(&p->wanted)) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&t, &attr, helper_main, (void *)(intptr_t)p->started);
        pthread_attr_destroy(&attr);
        if (failed) {
            atomic_store(&p->wanted, p->started); /* work with those there are; do not retry */
            break;
        }
        p->started++;
    }
    int n = 1 + atomic_load(&p->wanted);
    pthread_mutex_unlock(&p->lock);
    return n;
}

void rp_parallel_for(int64_t n, int64_t grain, rp_range_fn fn, void *ctx)
{
    if (n <= 0)
        return;
    if (grain < 1)
        grain = 1;
    pool *p = &the_pool;
    int free_pool = 0;
    /* Small, one thread, or inside another job (a nested call, or another
     * thread of the program): on the caller alone. */
    if (n <= grain || rp_pool_threads() < 2 || !atomic_compare_exchange_strong(&p->busy, &free_pool, 1)) {
        fn(ctx, 0, n);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->grain = grain;
    atomic_store(&p->next, 0);
    /* Fields first, then the new number, then open: a helper that saw an
     * older number, or looks before open, does not join. */
    atomic_fetch_add(&p->gen, 1);
    atomic_store(&p->open, 1);
    if (atomic_load(&p->sleeping) > 0) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
    }
    run_claims(p);
    atomic_store(&p->open, 0);
    unsigned spins = 0;
    while (atomic_load(&p->active) > 0) /* ranges helpers are still on */
        relax(&spins);
    atomic_store(&p->busy, 0);
}
