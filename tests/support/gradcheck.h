/* Finite-difference check of an op's backward (vector-Jacobian product).
 *
 * The node is run standalone through its op row (prepare, forward,
 * backward): outputs are allocated here, a fixed pseudo-random seed gy is
 * drawn per float output, and for every element of every checked float
 * input the central difference of L = sum(gy * y) (accumulated in double)
 * is compared with what backward added into the input's gradient. */
#ifndef TESTS_GRADCHECK_H
#define TESTS_GRADCHECK_H

#include <stddef.h>

#include "graph/graph.h"

typedef struct gradcheck_spec {
    const char *op;          /* op type, e.g. "Softmax" */
    int opset;
    rp_attr *attrs;          /* may be NULL */
    int n_attrs;
    rp_tensor **inputs;      /* n_in tensors with data (NULL = omitted optional) */
    int n_in;
    int n_out;
    unsigned check_mask;     /* bit i: check input i (must be float32) */
    double step;             /* finite-difference step (e.g. 1e-2) */
    double tol;              /* max |analytic - numeric| / (1 + |numeric|) allowed */
} gradcheck_spec;

/* Returns 1 if the analytic gradient matches within tol, else 0 with the
 * worst element described in why. */
int gradcheck_run(const gradcheck_spec *s, char *why, size_t why_len);

/* Convenience: a float32 tensor of the given shape filled with values in
 * [lo, hi) from a fixed LCG seeded by seed. Caller releases. */
rp_tensor gradcheck_random(int rank, const int64_t *dims, double lo, double hi, unsigned seed);

#endif
