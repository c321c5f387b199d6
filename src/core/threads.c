/* One place sets the thread count: OpenBLAS's GEMMs are the only parallel
 * code, so there is nothing of ours to oversubscribe against it. */
#include <cblas.h>
#include <unistd.h>

#include "relprop/relprop.h"

int rp_set_threads(int n)
{
    if (n <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = cores > 0 ? (int)cores : 1;
    }
    openblas_set_num_threads(n);
    return n;
}
