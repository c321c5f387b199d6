/* One place sets the thread count: relprop's pool (core/pool.h) runs its
 * own loops and its matrix products alike; OpenBLAS's threads stay off. */
#include <unistd.h>

#include "core/pool.h"
#include "relprop/relprop.h"

int rp_set_threads(int n)
{
    if (n <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (int)cores : 1;
    }
    rp_pool_set_threads(n);
    return rp_pool_threads(); /* capped, or fewer if threads could not start */
}
