/* Shape and data-movement ops: Reshape, Transpose, Concat, Gather, Slice,
 * Split, Squeeze, Unsqueeze, Flatten, Expand, Shape, Size, ConstantOfShape,
 * Constant, Range, Identity, Dropout.
 *
 * None of these does arithmetic on elements, so every kernel moves bytes by
 * element size and works for any dtype we can hold. Shapes are static, so
 * prepare turns each op into its cheapest byte movement: a plain copy
 * (Reshape and friends), per-chunk memcpy (Concat, Split, Gather), or a
 * strided view of the input (Transpose, Slice, Expand) whose axes are merged
 * so the innermost loop is as long as possible.
 *
 * Rows exist for each since_opset whose semantics we distinguish; prepare
 * looks at ctx->opset for differences that only concern attribute parsing.
 *
 * Gradients (float32 only) run the same movements backwards as strided ADDs,
 * never stores: copies add straight through, Concat/Split/Gather add per chunk
 * (repeated Gather indices sum), Slice and Expand scatter-add through the
 * forward view (Expand's stride-0 axes sum), and Transpose reads the output
 * gradient through the inverse permutation so its writes stay in order. The
 * LRP routing rule reuses these, so they are exact, not approximations. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

#define BIT(i) (1u << (i))
#define VARIADIC INT_MAX

/* ---------------------------------------------------------------- helpers */

static const rp_tensor *in_opt(const rp_kctx *c, int i)
{
    return i < c->n_in ? c->in[i] : NULL;
}

static rp_tensor *out_opt(const rp_kctx *c, int k)
{
    return k < c->n_out ? c->out[k] : NULL;
}

static rp_status elem_size(rp_kctx *c, const rp_tensor *t, size_t *es)
{
    *es = rp_dtype_size(t->dtype);
    if (*es == 0)
        return rp_kfail(c, RP_ERR_UNSUPPORTED, "tensors of dtype %s are not supported", rp_dtype_name(t->dtype));
    return RP_OK;
}

static rp_status set_out(rp_kctx *c, int k, rp_dtype dt, int rank, const int64_t *dims)
{
    rp_tensor *t = out_opt(c, k);
    if (!t)
        return RP_OK;
    if (!rp_tensor_set_shape(t, dt, rank, dims))
        return rp_kfail(c, RP_ERR_SHAPE, "output %d would have rank %d or an element count out of range", k, rank);
    return RP_OK;
}

/* Params without trailing arrays are built on the stack and copied here once valid. */
static rp_status keep_params(rp_kctx *c, const void *p, size_t n)
{
    void *m = malloc(n);
    if (!m)
        return rp_kfail(c, RP_ERR_NOMEM, "out of memory for parameters");
    memcpy(m, p, n);
    c->params = m;
    return RP_OK;
}

static char *dims_str(int n, const int64_t *dims, char *buf, size_t len)
{
    rp_tensor t = {.rank = n};
    memcpy(t.dims, dims, sizeof(int64_t) * (size_t)n);
    return rp_shape_str(&t, buf, len);
}

/* A scalar has no axis 0, although rp_axis lets reductions pretend it does. */
static rp_status axis_of(rp_kctx *c, int64_t axis, int rank, int *out)
{
    if (rank == 0)
        return rp_kfail(c, RP_ERR_SHAPE, "axis %lld given for a scalar input", (long long)axis);
    return rp_axis(c, axis, rank, out);
}

/* A shape-like input (shape, axes, starts, split...): known at prepare because
 * the row marks it in const_inputs; read as int64 whatever its integer width. */
static rp_status const_ints(rp_kctx *c, int i, const char *what, int64_t *out, int64_t cap, int *n)
{
    const rp_tensor *t = in_opt(c, i);
    if (!t)
        return rp_kfail(c, RP_ERR_ARG, "input %d (%s) is missing", i, what);
    if (t->dtype != RP_INT64 && t->dtype != RP_INT32)
        return rp_kfail(c, RP_ERR_DTYPE, "input %d (%s) must be int64 or int32, got %s", i, what,
                        rp_dtype_name(t->dtype));
    if (t->rank > 1)
        return rp_kfail(c, RP_ERR_SHAPE, "input %d (%s) must be 1-D, got rank %d", i, what, t->rank);
    if (t->count > 0 && !t->data)
        return rp_kfail(c, RP_ERR_UNSUPPORTED, "input %d (%s) must be a constant known when the model is loaded",
                        i, what);
    if (t->count > cap)
        return rp_kfail(c, RP_ERR_UNSUPPORTED, "input %d (%s) has %lld values, at most %lld are supported", i, what,
                        (long long)t->count, (long long)cap);
    for (int64_t k = 0; k < t->count; k++)
        out[k] = rp_tensor_get_i64(t, k);
    *n = (int)t->count;
    return RP_OK;
}

/* Attribute ints capped at RP_MAX_RANK; *n = -1 when absent. */
static rp_status attr_ints(rp_kctx *c, const char *name, int64_t *out, int *n)
{
    *n = rp_attr_ints(c->node, name, out, RP_MAX_RANK);
    if (*n > RP_MAX_RANK)
        return rp_kfail(c, RP_ERR_UNSUPPORTED, "attribute '%s' has %d values, at most %d are supported", name, *n,
                        RP_MAX_RANK);
    return RP_OK;
}

static void contiguous_strides(const rp_tensor *t, int64_t *s)
{
    int64_t acc = 1;
    for (int d = t->rank - 1; d >= 0; d--) {
        s[d] = acc;
        acc *= t->dims[d];
    }
}

static int64_t prod(const int64_t *dims, int from, int to)
{
    int64_t p = 1;
    for (int d = from; d < to; d++)
        p *= dims[d];
    return p;
}

/* Repeat one element of es bytes n times; doubling keeps it to log2(n) memcpys. */
static void fill(char *dst, int64_t n, size_t es, const unsigned char *val)
{
    if (n <= 0)
        return;
    size_t total = (size_t)n * es, done = es;
    memcpy(dst, val, es);
    while (done < total) {
        size_t k = done < total - done ? done : total - done;
        memcpy(dst + done, dst, k);
        done += k;
    }
}

/* Output = input bytes (Reshape, Squeeze, Unsqueeze, Flatten, Identity, Dropout). */
static rp_status copy_forward(rp_kctx *c)
{
    const rp_tensor *x = c->in[0];
    rp_tensor *y = c->out[0];
    size_t n = (size_t)y->count * rp_dtype_size(y->dtype);
    if (n && y->data != x->data)
        memcpy(y->data, x->data, n);
    return RP_OK;
}

static rp_status same_shape_out(rp_kctx *c)
{
    const rp_tensor *x = c->in[0];
    size_t es;
    rp_status st = elem_size(c, x, &es);
    if (st)
        return st;
    return set_out(c, 0, x->dtype, x->rank, x->dims);
}

/* -------------------------------------------------------------- gradients */

/* Every backward follows ops.h: gout[k] / gin[i] are float32 tensors shaped
 * like output k / input i (NULL: zero / not wanted), and gradients are ADDED
 * into gin, never stored, because a value read by several nodes sums what
 * each sends back. Only float32 values carry a gradient; indices and shapes
 * are nondiff_inputs, so their gin is never looked at. */

static void add_into(float *restrict dst, const float *restrict src, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] += src[i];
}

static rp_status grad_ok(rp_kctx *c, const rp_tensor *g, const rp_tensor *v, const char *side, int i)
{
    char a[128], b[128];
    if (!v)
        return rp_kfail(c, RP_ERR_ARG, "gradient given for %s %d, which is omitted", side, i);
    if (v->dtype != RP_FLOAT)
        return rp_kfail(c, RP_ERR_DTYPE, "gradient given for %s %d of dtype %s; only float32 carries one", side, i,
                        rp_dtype_name(v->dtype));
    if (g->dtype != RP_FLOAT || !rp_shape_equal(g, v) || (g->count > 0 && !g->data))
        return rp_kfail(c, RP_ERR_SHAPE, "gradient of %s %d is %s %s, expected float %s", side, i,
                        rp_dtype_name(g->dtype), rp_shape_str(g, a, sizeof a), rp_shape_str(v, b, sizeof b));
    return RP_OK;
}

/* Checks the first n_out gouts and n_in gins that are present, once per call
 * and before anything is written. *any is set when there is work: some
 * gradient arrives and some is wanted. */
static rp_status grads_ok(rp_kctx *c, rp_tensor *const *gout, int n_out, rp_tensor *const *gin, int n_in, int *any)
{
    int some_out = 0, some_in = 0;
    rp_status st;
    for (int k = 0; k < n_out; k++)
        if (gout[k]) {
            if ((st = grad_ok(c, gout[k], out_opt(c, k), "output", k)))
                return st;
            some_out = 1;
        }
    for (int i = 0; i < n_in; i++)
        if (gin[i]) {
            if ((st = grad_ok(c, gin[i], in_opt(c, i), "input", i)))
                return st;
            some_in = 1;
        }
    *any = some_out && some_in;
    return RP_OK;
}

/* Reshape, Squeeze, Unsqueeze, Flatten, Identity, Dropout: the same elements
 * in the same order, so the gradient passes straight through to input 0
 * (Dropout's mask output carries none). */
static rp_status copy_backward(rp_kctx *c, rp_tensor *const *gout, rp_tensor *const *gin)
{
    int any;
    rp_status st = grads_ok(c, gout, 1, gin, 1, &any);
    if (st || !any)
        return st;
    add_into(gin[0]->data, gout[0]->data, gin[0]->count);
    return RP_OK;
}

/* ----------------------------------------------------------- strided view */

/* The output, in C order, read from the input at offset + sum(i_d * strides[d]).
 * Strides may be 0 (broadcast) or negative (reversed slice). */
typedef struct view {
    size_t es;
    int rank;
    int64_t dims[RP_MAX_RANK];
    int64_t strides[RP_MAX_RANK];
    int64_t offset;
} view;

/* Size-1 axes cost a loop level for nothing, and an axis whose source stride
 * is exactly the next axis's extent continues it, so the two become one:
 * a Transpose (0,2,1,3) ends up as three loops with a memcpy inside. */
static void view_simplify(view *v)
{
    if (prod(v->dims, 0, v->rank) == 0)
        return;
    int r = 0;
    for (int d = 0; d < v->rank; d++) {
        if (v->dims[d] == 1)
            continue;
        if (r > 0 && v->strides[r - 1] == v->strides[d] * v->dims[d]) {
            v->dims[r - 1] *= v->dims[d];
            v->strides[r - 1] = v->strides[d];
            continue;
        }
        v->dims[r] = v->dims[d];
        v->strides[r] = v->strides[d];
        r++;
    }
    v->rank = r;
}

#define STRIDED_RUN(W)                                                                      \
    for (int64_t i = 0; i < n; i++)                                                         \
        memcpy(dst + i * (W), src + (ptrdiff_t)(i * stride * (W)), (W))

/* Fixed-size memcpy compiles to plain loads/stores without aliasing trouble. */
static void copy_run(char *dst, const char *src, int64_t n, int64_t stride, size_t es)
{
    if (stride == 1) {
        memcpy(dst, src, (size_t)n * es);
        return;
    }
    switch (es) {
    case 1: STRIDED_RUN(1); break;
    case 2: STRIDED_RUN(2); break;
    case 4: STRIDED_RUN(4); break;
    case 8: STRIDED_RUN(8); break;
    default:
        for (int64_t i = 0; i < n; i++)
            memcpy(dst + i * (int64_t)es, src + (ptrdiff_t)(i * stride * (int64_t)es), es);
    }
}

/* Advance the odometer over axes 0..rank-2 (the last axis is one run), moving
 * *off by the strides; 0 once every index has wrapped. No div/mod. */
static inline int view_next(const view *v, int64_t *idx, int64_t *off)
{
    for (int d = v->rank - 2; d >= 0; d--) {
        *off += v->strides[d];
        if (++idx[d] < v->dims[d])
            return 1;
        *off -= v->strides[d] * v->dims[d];
        idx[d] = 0;
    }
    return 0;
}

/* Odometer over the outer axes (no div/mod per element); the innermost axis
 * is one copy_run. */
static void view_copy(const view *v, const char *src, char *dst)
{
    ptrdiff_t es = (ptrdiff_t)v->es;
    if (v->rank == 0) {
        memcpy(dst, src + v->offset * es, v->es);
        return;
    }
    int64_t n = v->dims[v->rank - 1], s = v->strides[v->rank - 1];
    int64_t idx[RP_MAX_RANK] = {0};
    int64_t off = v->offset;
    do {
        copy_run(dst, src + off * es, n, s, v->es);
        dst += n * es;
    } while (view_next(v, idx, &off));
}

/* ---- gradients of views (float32 only) ----
 *
 * A view's Jacobian is a 0/1 matrix, so its VJP adds each output gradient
 * into the input element it was read from. Two directions, one odometer:
 *  - scatter: walk the output gradient in C order and add into the input
 *    gradient at the view's positions (Slice: unselected positions get
 *    nothing; Expand: stride 0 revisits a position, which sums);
 *  - gather: walk the input gradient in C order and read the output gradient
 *    through an inverse view (Transpose: a bijection, so contiguous writes). */

/* dst[i * s] += src[i]; stride 0 is a sum (in double, rounded once). */
static void scatter_add_run(float *restrict dst, const float *restrict src, int64_t n, int64_t s)
{
    if (s == 1) {
        for (int64_t i = 0; i < n; i++)
            dst[i] += src[i];
    } else if (s == 0) {
        double acc = dst[0];
        for (int64_t i = 0; i < n; i++)
            acc += src[i];
        dst[0] = (float)acc;
    } else {
        for (int64_t i = 0; i < n; i++)
            dst[i * s] += src[i];
    }
}

/* dst[i] += src[i * s]. */
static void gather_add_run(float *restrict dst, const float *restrict src, int64_t n, int64_t s)
{
    if (s == 1) {
        for (int64_t i = 0; i < n; i++)
            dst[i] += src[i];
    } else {
        for (int64_t i = 0; i < n; i++)
            dst[i] += src[i * s];
    }
}

/* gx[view position of j] += g[j] for the view's output elements j in C order. */
static void view_scatter_add(const view *v, const float *g, float *gx)
{
    if (v->rank == 0) {
        gx[v->offset] += g[0];
        return;
    }
    int64_t n = v->dims[v->rank - 1], s = v->strides[v->rank - 1];
    int64_t idx[RP_MAX_RANK] = {0};
    int64_t off = v->offset;
    do {
        scatter_add_run(gx + off, g, n, s);
        g += n;
    } while (view_next(v, idx, &off));
}

/* gx[j] += g[view position of j] for j in C order (the view is over g). */
static void view_gather_add(const view *v, const float *g, float *gx)
{
    if (v->rank == 0) {
        gx[0] += g[v->offset];
        return;
    }
    int64_t n = v->dims[v->rank - 1], s = v->strides[v->rank - 1];
    int64_t idx[RP_MAX_RANK] = {0};
    int64_t off = v->offset;
    do {
        gather_add_run(gx, g + off, n, s);
        gx += n;
    } while (view_next(v, idx, &off));
}

static rp_status view_forward(rp_kctx *c)
{
    const view *v = c->params;
    if (c->out[0]->count == 0)
        return RP_OK;
    view_copy(v, c->in[0]->data, c->out[0]->data);
    return RP_OK;
}

/* Slice, Expand: scatter-add through the forward view (params is the view). */
static rp_status view_backward(rp_kctx *c, rp_tensor *const *gout, rp_tensor *const *gin)
{
    int any;
    rp_status st = grads_ok(c, gout, 1, gin, 1, &any);
    if (st || !any || c->out[0]->count == 0)
        return st;
    view_scatter_add(c->params, gout[0]->data, gin[0]->data);
    return RP_OK;
}

static rp_status view_init(rp_kctx *c, const rp_tensor *x, view *v)
{
    memset(v, 0, sizeof *v);
    rp_status st = elem_size(c, x, &v->es);
    if (st)
        return st;
    v->rank = x->rank;
    memcpy(v->dims, x->dims, sizeof v->dims);
    contiguous_strides(x, v->strides);
    return RP_OK;
}

/* Set output 0 to the view's shape, then keep the simplified view as params. */
static rp_status view_finish(rp_kctx *c, view *v, rp_dtype dt)
{
    rp_status st = set_out(c, 0, dt, v->rank, v->dims);
    if (st)
        return st;
    view_simplify(v);
    return keep_params(c, v, sizeof *v);
}

/* ---------------------------------------------------------------- Reshape */

static rp_status reshape_common(rp_kctx *c, int allowzero)
{
    const rp_tensor *x = c->in[0];
    size_t es;
    rp_status st = elem_size(c, x, &es);
    if (st)
        return st;
    int64_t want[RP_MAX_RANK];
    int n;
    if ((st = const_ints(c, 1, "shape", want, RP_MAX_RANK, &n)))
        return st;
    int infer = -1;
    int64_t known = 1;
    char a[128], b[128];
    for (int i = 0; i < n; i++) {
        int64_t v = want[i];
        if (v == 0 && !allowzero) {
            if (i >= x->rank)
                return rp_kfail(c, RP_ERR_SHAPE, "shape %s: entry %d is 0 (copy the input dim), but the input %s "
                                "has rank %d", dims_str(n, want, a, sizeof a), i, rp_shape_str(x, b, sizeof b),
                                x->rank);
            v = x->dims[i];
        } else if (v == -1) {
            if (infer >= 0)
                return rp_kfail(c, RP_ERR_SHAPE, "shape %s has more than one -1", dims_str(n, want, a, sizeof a));
            infer = i;
            continue;
        } else if (v < 0) {
            return rp_kfail(c, RP_ERR_SHAPE, "shape %s has a negative entry other than -1",
                            dims_str(n, want, a, sizeof a));
        }
        if (v != 0 && known > INT64_MAX / v)
            return rp_kfail(c, RP_ERR_SHAPE, "shape %s overflows", dims_str(n, want, a, sizeof a));
        want[i] = v;
        known *= v;
    }
    if (infer >= 0) {
        if (known == 0 || x->count % known != 0)
            return rp_kfail(c, RP_ERR_SHAPE, "cannot infer the -1 in shape %s for input %s (%lld elements)",
                            dims_str(n, want, a, sizeof a), rp_shape_str(x, b, sizeof b), (long long)x->count);
        want[infer] = x->count / known;
    } else if (known != x->count) {
        return rp_kfail(c, RP_ERR_SHAPE, "cannot reshape %s (%lld elements) into %s (%lld elements)",
                        rp_shape_str(x, b, sizeof b), (long long)x->count, dims_str(n, want, a, sizeof a),
                        (long long)known);
    }
    return set_out(c, 0, x->dtype, n, want);
}

static rp_status reshape5_prepare(rp_kctx *c)
{
    return reshape_common(c, 0);
}

/* Opset 14 adds allowzero: a 0 in shape is a real zero-size dim. */
static rp_status reshape14_prepare(rp_kctx *c)
{
    return reshape_common(c, rp_attr_int(c->node, "allowzero", 0) != 0);
}

/* -------------------------------------------------------------- Transpose */

/* fwd first, so view_forward can read the params as a view. */
typedef struct transpose_params {
    view fwd; /* the output read from the input */
    view bwd; /* the input read from the output: the inverse permutation */
} transpose_params;

/* The inverse of a (simplified) permuting view: over the output, in the
 * input's C order. The input's axes are the view's axes sorted by decreasing
 * source stride (a permutation of contiguous strides, so no ties once size-1
 * axes are gone); each reads the output at the output's contiguous stride. */
static void view_invert(const view *v, view *inv)
{
    int r = v->rank, order[RP_MAX_RANK];
    int64_t os[RP_MAX_RANK], acc = 1;
    for (int d = r - 1; d >= 0; d--) {
        os[d] = acc;
        acc *= v->dims[d];
    }
    for (int d = 0; d < r; d++) {
        int j = d;
        for (; j > 0 && v->strides[order[j - 1]] < v->strides[d]; j--)
            order[j] = order[j - 1];
        order[j] = d;
    }
    memset(inv, 0, sizeof *inv);
    inv->es = v->es;
    inv->rank = r;
    for (int m = 0; m < r; m++) {
        inv->dims[m] = v->dims[order[m]];
        inv->strides[m] = os[order[m]];
    }
    view_simplify(inv);
}

/* Each input element receives the one output gradient it was moved to; the
 * writes go in order through the input gradient. */
static rp_status transpose_backward(rp_kctx *c, rp_tensor *const *gout, rp_tensor *const *gin)
{
    const transpose_params *p = c->params;
    int any;
    rp_status st = grads_ok(c, gout, 1, gin, 1, &any);
    if (st || !any || c->out[0]->count == 0)
        return st;
    view_gather_add(&p->bwd, gout[0]->data, gin[0]->data);
    return RP_OK;
}

static rp_status transpose_prepare(rp_kctx *c)
{
    const rp_tensor *x = c->in[0];
    view v;
    rp_status st = view_init(c, x, &v);
    if (st)
        return st;
    int64_t perm[RP_MAX_RANK];
    int n;
    if ((st = attr_ints(c, "perm", perm, &n)))
        return st;
    if (n < 0) {
        n = x->rank;
        for (int i = 0; i < n; i++)
            perm[i] = n - 1 - i;
    }
    if (n != x->rank)
        return rp_kfail(c, RP_ERR_VALUE, "perm has %d entries for an input of rank %d", n, x->rank);
    int seen[RP_MAX_RANK] = {0};
    char a[128];
    for (int i = 0; i < n; i++)
        if (perm[i] < 0 || perm[i] >= n || seen[perm[i]]++)
            return rp_kfail(c, RP_ERR_VALUE, "perm %s is not a permutation of 0..%d", dims_str(n, perm, a, sizeof a),
                            n - 1);
    int64_t xs[RP_MAX_RANK];
    contiguous_strides(x, xs);
    for (int i = 0; i < n; i++) {
        v.dims[i] = x->dims[perm[i]];
        v.strides[i] = xs[perm[i]];
    }
    if ((st = set_out(c, 0, x->dtype, v.rank, v.dims)))
        return st;
    transpose_params p;
    view_simplify(&v);
    p.fwd = v;
    view_invert(&v, &p.bwd);
    return keep_params(c, &p, sizeof p);
}

/* ----------------------------------------------------------------- Concat */

typedef struct concat_params {
    int64_t outer; /* product of dims before the axis */
    int n;
    int64_t chunk[]; /* bytes each input contributes per outer index */
} concat_params;

static rp_status concat_prepare(rp_kctx *c)
{
    const rp_attr *aa = rp_node_attr(c->node, "axis");
    if ((!aa && c->opset >= 4) || (aa && aa->type != RP_ATTR_INT))
        return rp_kfail(c, RP_ERR_VALUE, "attribute 'axis' (an int) is required");
    int64_t axis64 = aa ? aa->i : 1;
    const rp_tensor *x0 = c->in[0];
    if (!x0)
        return rp_kfail(c, RP_ERR_ARG, "input 0 is missing");
    size_t es;
    rp_status st = elem_size(c, x0, &es);
    if (st)
        return st;
    int axis;
    if ((st = axis_of(c, axis64, x0->rank, &axis)))
        return st;
    int64_t dims[RP_MAX_RANK];
    memcpy(dims, x0->dims, sizeof dims);
    dims[axis] = 0;
    char a[128], b[128];
    for (int k = 0; k < c->n_in; k++) {
        const rp_tensor *t = c->in[k];
        if (!t)
            return rp_kfail(c, RP_ERR_ARG, "input %d is missing", k);
        if (t->dtype != x0->dtype)
            return rp_kfail(c, RP_ERR_DTYPE, "input %d has dtype %s, input 0 has %s", k, rp_dtype_name(t->dtype),
                            rp_dtype_name(x0->dtype));
        int same = t->rank == x0->rank;
        for (int d = 0; same && d < t->rank; d++)
            same = d == axis || t->dims[d] == x0->dims[d];
        if (!same)
            return rp_kfail(c, RP_ERR_SHAPE, "input %d has shape %s, which does not match input 0 %s outside axis %d",
                            k, rp_shape_str(t, a, sizeof a), rp_shape_str(x0, b, sizeof b), axis);
        dims[axis] += t->dims[axis];
    }
    if ((st = set_out(c, 0, x0->dtype, x0->rank, dims)))
        return st;
    concat_params *p = malloc(sizeof *p + sizeof(int64_t) * (size_t)c->n_in);
    if (!p)
        return rp_kfail(c, RP_ERR_NOMEM, "out of memory for parameters");
    p->outer = prod(dims, 0, axis);
    p->n = c->n_in;
    int64_t inner = prod(dims, axis + 1, x0->rank) * (int64_t)es;
    for (int k = 0; k < c->n_in; k++)
        p->chunk[k] = c->in[k]->dims[axis] * inner;
    c->params = p;
    return RP_OK;
}

static rp_status concat_forward(rp_kctx *c)
{
    const concat_params *p = c->params;
    char *dst = c->out[0]->data;
    if (c->out[0]->count == 0)
        return RP_OK;
    for (int64_t o = 0; o < p->outer; o++)
        for (int k = 0; k < p->n; k++) {
            size_t n = (size_t)p->chunk[k];
            if (n == 0)
                continue;
            memcpy(dst, (const char *)c->in[k]->data + o * p->chunk[k], n);
            dst += n;
        }
    return RP_OK;
}

/* The output gradient cut back into the pieces each input contributed. */
static rp_status concat_backward(rp_kctx *c, rp_tensor *const *gout, rp_tensor *const *gin)
{
    const concat_params *p = c->params;
    int any;
    rp_status st = grads_ok(c, gout, 1, gin, c->n_in, &any);
    if (st || !any || c->out[0]->count == 0)
        return st;
    const float *g = gout[0]->data;
    for (int64_t o = 0; o < p->outer; o++)
        for (int k = 0; k < p->n; k++) {
            int64_t n = p->chunk[k] / (int64_t)sizeof(float); /* float32 here: checked above */
            if (n && gin[k])
                add_into((float *)gin[k]->data + o * n, g, n);
            g += n;
        }
    return RP_OK;
}

/* ----------------------------------------------------------------- Gather */

typedef struct gather_params {
    int axis;
    int64_t outer;    /* product of data dims before the axis */
    int64_t axis_dim;
    int64_t inner;    /* bytes per gathered slice */
} gather_params;

static rp_status gather_check(rp_kctx *c, const gather_params *p, const rp_tensor *ind);

static rp_status gather_prepare(rp_kctx *c)
{
    const rp_tensor *x = c->in[0], *ind = c->in[1];
    size_t es;
    rp_status st = elem_size(c, x, &es);
    if (st)
        return st;
    if (ind->dtype != RP_INT64 && ind->dtype != RP_INT32)
        return rp_kfail(c, RP_ERR_DTYPE, "indices must be int64 or int32, got %s", rp_dtype_name(ind->dtype));
    gather_params p;
    if ((st = axis_of(c, rp_attr_int(c->node, "axis", 0), x->rank, &p.axis)))
        return st;
    int rank = x->rank - 1 + ind->rank;
    if (rank > RP_MAX_RANK)
        return rp_kfail(c, RP_ERR_UNSUPPORTED, "output rank %d exceeds %d", rank, RP_MAX_RANK);
    int64_t dims[RP_MAX_RANK];
    int r = 0;
    for (int d = 0; d < p.axis; d++)
        dims[r++] = x->dims[d];
    for (int d = 0; d < ind->rank; d++)
        dims[r++] = ind->dims[d];
    for (int d = p.axis + 1; d < x->rank; d++)
        dims[r++] = x->dims[d];
    if ((st = set_out(c, 0, x->dtype, rank, dims)))
        return st;
    p.outer = prod(x->dims, 0, p.axis);
    p.axis_dim = x->dims[p.axis];
    p.inner = prod(x->dims, p.axis + 1, x->rank) * (int64_t)es;
    /* Constant indices (the usual case: a CLS token, a head) are checked
     * now, so a bad one is a load error naming the node, not a failure of
     * every run. */
    if (ind->data && (st = gather_check(c, &p, ind)))
        return st;
    return keep_params(c, &p, sizeof p);
}

static int64_t index_at(const rp_tensor *ind, int64_t j)
{
    return ind->dtype == RP_INT64 ? ((const int64_t *)ind->data)[j] : ((const int32_t *)ind->data)[j];
}

/* One constant index with nothing before the axis (q, k or v out of a
 * packed qkv; a CLS token of a batch of one): the output is one contiguous
 * slice of the input. */
static bool gather_alias(const rp_kctx *c, int64_t *offset)
{
    const gather_params *p = c->params;
    const rp_tensor *ind = c->in[1];
    if (!p || p->outer != 1 || !ind->data || ind->count != 1)
        return false;
    int64_t k = index_at(ind, 0);
    if (k < 0)
        k += p->axis_dim;
    if (k < 0 || k >= p->axis_dim)
        return false;
    *offset = k * p->inner;
    return true;
}

/* Checked once up front so a bad index never leaves a half-written output
 * (or, going back, never writes outside the gradient). */
static rp_status gather_check(rp_kctx *c, const gather_params *p, const rp_tensor *ind)
{
    for (int64_t j = 0; j < ind->count; j++) {
        int64_t k = index_at(ind, j);
        if (k < -p->axis_dim || k >= p->axis_dim)
            return rp_kfail(c, RP_ERR_VALUE, "index %lld (at position %lld of indices) is out of range for axis %d of "
                            "size %lld", (long long)k, (long long)j, p->axis, (long long)p->axis_dim);
    }
    return RP_OK;
}

static rp_status gather_forward(rp_kctx *c)
{
    const gather_params *p = c->params;
    const rp_tensor *ind = c->in[1];
    int64_t n = ind->count;
    rp_status st = gather_check(c, p, ind);
    if (st)
        return st;
    if (c->out[0]->count == 0)
        return RP_OK;
    const char *src = c->in[0]->data;
    char *dst = c->out[0]->data;
    size_t inner = (size_t)p->inner;
    for (int64_t o = 0; o < p->outer; o++) {
        const char *base = src + o * p->axis_dim * p->inner;
        for (int64_t j = 0; j < n; j++) {
            int64_t k = index_at(ind, j);
            if (k < 0)
                k += p->axis_dim;
            if (dst != base + k * p->inner) /* else the plan made it a view */
                memcpy(dst, base + k * p->inner, inner);
            dst += inner;
        }
    }
    return RP_OK;
}

/* Scatter-add: each gathered slice's gradient goes back to the slice it came
 * from; an index that repeats sends (sums) several. */
static rp_status gather_backward(rp_kctx *c, rp_tensor *const *gout, rp_tensor *const *gin)
{
    const gather_params *p = c->params;
    const rp_tensor *ind = c->in[1];
    int any;
    rp_status st = grads_ok(c, gout, 1, gin, 1, &any);
    if (st || !any || (st = gather_check(c, p, ind)) || c->out[0]->count == 0)
        return st;
    const float *g = gout[0]->data;
    float *gx = gin[0]->data;
    int64_t inner = p->inner / (int64_t)sizeof(float), n = ind->count;
    for (int64_t o = 0; o < p->outer; o++) {
        float *base = gx + o * p->axis_dim * inner;
        for (int64_t j = 0; j < n; j++) {
            int64_t k = index_at(ind, j);
            if (k < 0)
                k += p->axis_dim;
            add_into(base + k * inner, g, inner);
            g += inner;
        }
    }
    return RP_OK;
}

/* ------------------------------------------------------------------ Slice */

/* starts/ends/axes/steps have n entries; axes and steps may be NULL (0..n-1, all 1). */
static rp_status slice_common(rp_kctx *c, int n, const int64_t *starts, const int64_t *ends, const int64_t *axes,
                              const int64_t *steps)
{
    const rp_tensor *x = c->in[0];
    view v;
    rp_status st = view_init(c, x, &v);
    if (st)
        return st;
    int seen[RP_MAX_RANK] = {0};
    for (int i = 0; i < n; i++) {
        int ax = i;
        if (axes) {
            if ((st = axis_of(c, axes[i], x->rank, &ax)))
                return st;
        } else if (i >= x->rank) {
            return rp_kfail(c, RP_ERR_VALUE, "%d starts for an input of rank %d", n, x->rank);
        }
        if (seen[ax]++)
            return rp_kfail(c, RP_ERR_VALUE, "axis %d is sliced twice", ax);
        int64_t step = steps ? steps[i] : 1;
        if (step == 0)
            return rp_kfail(c, RP_ERR_VALUE, "step for axis %d is 0", ax);
        if (step == INT64_MIN) /* so that -step exists; any step past the dim takes one element */
            step = -INT64_MAX;
        int64_t dim = x->dims[ax], s = starts[i], e = ends[i], count;
        if (s < 0)
            s += dim;
        if (e < 0)
            e += dim;
        /* Clamping as the spec says: [0, dim] going forward, [-1, dim-1] going back. */
        if (step > 0) {
            s = s < 0 ? 0 : s > dim ? dim : s;
            e = e < 0 ? 0 : e > dim ? dim : e;
            count = e > s ? (e - s - 1) / step + 1 : 0;
        } else {
            s = s < 0 ? 0 : s > dim - 1 ? dim - 1 : s;
            e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
            count = s > e ? (s - e - 1) / -step + 1 : 0;
        }
        if (count > 0)
            v.offset += s * v.strides[ax];
        if (count > 1) /* step < dim here, so the product cannot overflow */
            v.strides[ax] *= step;
        v.dims[ax] = count;
    }
    return view_finish(c, &v, x->dtype);
}

/* Opset 1: starts, ends, axes are attributes; no steps. */
static rp_status slice1_prepare(rp_kctx *c)
{
    int64_t starts[RP_MAX_RANK], ends[RP_MAX_RANK], axes[RP_MAX_RANK];
    int ns, ne, na;
    rp_status st;
    if ((st = attr_ints(c, "starts", starts, &ns)) || (st = attr_ints(c, "ends", ends, &ne)) ||
        (st = attr_ints(c, "axes", axes, &na)))
        return st;
    if (ns < 0 || ne < 0)
        return rp_kfail(c, RP_ERR_VALUE, "attributes 'starts' and 'ends' are required");
    if (ns != ne || (na >= 0 && na != ns))
        return rp_kfail(c, RP_ERR_VALUE, "starts, ends and axes have %d, %d and %d entries", ns, ne, na);
    return slice_common(c, ns, starts, ends, na >= 0 ? axes : NULL, NULL);
}

/* Opset 10+: starts, ends, axes, steps are (constant) inputs. */
static rp_status slice10_prepare(rp_kctx *c)
{
    int64_t starts[RP_MAX_RANK], ends[RP_MAX_RANK], axes[RP_MAX_RANK], steps[RP_MAX_RANK];
    int ns = 0, ne = 0, na = -1, np = -1;
    rp_status st;
    if ((st = const_ints(c, 1, "starts", starts, RP_MAX_RANK, &ns)) ||
        (st = const_ints(c, 2, "ends", ends, RP_MAX_RANK, &ne)))
        return st;
    if (in_opt(c, 3) && (st = const_ints(c, 3, "axes", axes, RP_MAX_RANK, &na)))
        return st;
    if (in_opt(c, 4) && (st = const_ints(c, 4, "steps", steps, RP_MAX_RANK, &np)))
        return st;
    if (ns != ne || (na >= 0 && na != ns) || (np >= 0 && np != ns))
        return rp_kfail(c, RP_ERR_VALUE, "starts, ends, axes and steps have %d, %d, %d and %d entries", ns, ne, na,
                        np);
    return slice_common(c, ns, starts, ends, na >= 0 ? axes : NULL, np >= 0 ? steps : NULL);
}

/* ------------------------------------------------------------------ Split */

typedef struct split_params {
    int64_t outer;
    int n;
    int64_t chunk[]; /* bytes of output k per outer index */
} split_params;

static rp_status split_prepare(rp_kctx *c)
{
    const rp_tensor *x = c->in[0];
    size_t es;
    rp_status st = elem_size(c, x, &es);
    if (st)
        return st;
    int axis;
    if ((st = axis_of(c, rp_attr_int(c->node, "axis", 0), x->rank, &axis)))
        return st;
    int n = c->n_out;
    split_params *p = calloc(1, sizeof *p + sizeof(int64_t) * (size_t)n);
    if (!p)
        return rp_kfail(c, RP_ERR_NOMEM, "out of memory for parameters");
    c->params = p; /* freed by the graph even if we fail below */
    p->n = n;
    int64_t dim = x->dims[axis];
    int given = -1;
    if (c->opset < 13) {
        given = rp_attr_ints(c->node, "split", p->chunk, n);
    } else if (in_opt(c, 1) && c->in[1]->count > 0) { /* an empty split means "not given", as in onnxruntime */
        if (c->in[1]->count != n)
            return rp_kfail(c, RP_ERR_VALUE, "split has %lld entries for %d outputs", (long long)c->in[1]->count, n);
        if ((st = const_ints(c, 1, "split", p->chunk, n, &given)))
            return st;
    }
    const rp_attr *num = c->opset >= 18 ? rp_node_attr(c->node, "num_outputs") : NULL;
    if (num && given >= 0)
        return rp_kfail(c, RP_ERR_VALUE, "both the split input and the num_outputs attribute are given");
    if (num && num->i != n)
        return rp_kfail(c, RP_ERR_VALUE, "num_outputs is %lld but the node has %d outputs", (long long)num->i, n);
    if (given >= 0) {
        if (given != n)
            return rp_kfail(c, RP_ERR_VALUE, "split has %d entries for %d outputs", given, n);
        int64_t sum = 0;
        for (int k = 0; k < n; k++) {
            if (p->chunk[k] < 0 || p->chunk[k] > dim - sum)
                return rp_kfail(c, RP_ERR_VALUE, "split sizes do not add up to dim %lld of axis %d", (long long)dim,
                                axis);
            sum += p->chunk[k];
        }
        if (sum != dim)
            return rp_kfail(c, RP_ERR_VALUE, "split sizes add up to %lld, not to dim %lld of axis %d",
                            (long long)sum, (long long)dim, axis);
    } else if (num) {
        /* Opset 18: chunks of ceil(dim/n), the last one takes what is left. */
        int64_t each = (dim + n - 1) / n, last = dim - each * (n - 1);
        if (last < 0)
            return rp_kfail(c, RP_ERR_VALUE, "dim %lld of axis %d cannot be split into %d chunks of %lld",
                            (long long)dim, axis, n, (long long)each);
        for (int k = 0; k < n; k++)
            p->chunk[k] = k < n - 1 ? each : last;
    } else {
        if (dim % n != 0)
            return rp_kfail(c, RP_ERR_VALUE, "dim %lld of axis %d does not split evenly into %d outputs",
                            (long long)dim, axis, n);
        for (int k = 0; k < n; k++)
            p->chunk[k] = dim / n;
    }
    int64_t dims[RP_MAX_RANK];
    memcpy(dims, x->dims, sizeof dims);
    for (int k = 0; k < n; k++) {
        dims[axis] = p->chunk[k];
        if ((st = set_out(c, k, x->dtype, x->rank, dims)))
            return st;
    }
    p->outer = prod(x->dims, 0, axis);
    int64_t inner = prod(x->dims, axis + 1, x->rank) * (int64_t)es;
    for (int k = 0; k < n; k++)
        p->chunk[k] *= inner;
    return RP_OK;
}

static rp_status split_forward(rp_kctx *c)
{
    const split_params *p = c->params;
    const char *src = c->in[0]->data;
    if (c->in[0]->count == 0)
        return RP_OK;
    for (int64_t o = 0; o < p->outer; o++)
        for (int k = 0; k < p->n; k++) {
            size_t n = (size_t)p->chunk[k];
            if (n && c->out[k])
                memcpy((char *)c->out[k]->data + o * p->chunk[k], src, n);
            src += n;
        }
    return RP_OK;
}

/* Each output's gradient into the part of the input it was cut from; an
 * output with no gradient (NULL) leaves its part as it was. */
static rp_status split_backward(rp_kctx *c, rp_tensor *const *gout, rp_tensor *const *gin)
{
    const split_params *p = c->params;
    int any;
    rp_status st = grads_ok(c, gout, c->n_out, gin, 1, &any);
    if (st || !any || c->in[0]->count == 0)
        return st;
    float *gx = gin[0]->data;
    for (int64_t o = 0; o < p->outer; o++)
        for (int k = 0; k < p->n; k++) {
            int64_t n = p->chunk[k] / (int64_t)sizeof(float); /* float32 here: checked above */
            if (n && gout[k])
                add_into(gx, (const float *)gout[k]->data + o * n, n);
            gx += n;
        }
    return RP_OK;
}

/* ------------------------------------------------------ Squeeze/Unsqueeze */

/* Axes from the attribute (before opset 13) or the optional constant input;
 * *n = -1 when not given. */
static rp_status squeeze_axes(rp_kctx *c, int64_t *axes, int *n)
{
    *n = -1;
    if (c->opset < 13)
        return attr_ints(c, "axes", axes, n);
    if (in_opt(c, 1))
        return const_ints(c, 1, "axes", axes, RP_MAX_RANK, n);
    return RP_OK;
}

static rp_status squeeze_prepare(rp_kctx *c)
{
    const rp_tensor *x = c->in[0];
    size_t es;
    rp_status st = elem_size(c, x, &es);
    if (st)
        return st;
    int64_t axes[RP_MAX_RANK];
    int n;
    if ((st = squeeze_axes(c, axes, &n)))
        return st;
    int drop[RP_MAX_RANK] = {0};
    char a[128];
    if (n <= 0) {
        for (int d = 0; d < x->rank; d++)
            drop[d] = x->dims[d] == 1;
    } else {
        for (int i = 0; i < n; i++) {
            int ax;
            if ((st = axis_of(c, axes[i], x->rank, &ax)))
                return st;
            if (drop[ax]++)
                return rp_kfail(c, RP_ERR_VALUE, "axis %d is listed twice", ax);
            if (x->dims[ax] != 1)
                return rp_kfail(c, RP_ERR_SHAPE, "cannot squeeze axis %d of %s: its size is not 1", ax,
                                rp_shape_str(x, a, sizeof a));
        }
    }
    int64_t dims[RP_MAX_RANK];
    int r = 0;
    for (int d = 0; d < x->rank; d++)
        if (!drop[d])
            dims[r++] = x->dims[d];
    return set_out(c, 0, x->dtype, r, dims);
}

static rp_status unsqueeze_prepare(rp_kctx *c)
{
    const rp_tensor *x = c->in[0];
    size_t es;
    rp_status st = elem_size(c, x, &es);
    if (st)
        return st;
    int64_t axes[RP_MAX_RANK];
    int n;
    if ((st = squeeze_axes(c, axes, &n)))
        return st;
    if (n < 0)
        return rp_kfail(c, RP_ERR_VALUE, "axes are required");
    int rank = x->rank + n;
    if (rank > RP_MAX_RANK)
        return rp_kfail(c, RP_ERR_UNSUPPORTED, "output rank %d exceeds %d", rank, RP_MAX_RANK);
    int add[RP_MAX_RANK] = {0};
    for (int i = 0; i < n; i++) {
        int ax;
        if ((st = axis_of(c, axes[i], rank, &ax)))
            return st;
        if (add[ax]++)
            return rp_kfail(c, RP_ERR_VALUE, "axis %d is listed twice", ax);
    }
    int64_t dims[RP_MAX_RANK];
    for (int d = 0, k = 0; d < rank; d++)
        dims[d] = add[d] ? 1 : x->dims[k++];
    return set_out(c, 0, x->dtype, rank, dims);
}

/* ---------------------------------------------------------------- Flatten */

static rp_status flatten_prepare(rp_kctx *c)
{
    const rp_tensor *x = c->in[0];
    size_t es;
    rp_status st = elem_size(c, x, &es);
    if (st)
        return st;
    int64_t axis = rp_attr_int(c->node, "axis", 1);
    int64_t lo = c->opset >= 11 ? -x->rank : 0; /* negative axes arrived in opset 11 */
    if (axis < lo || axis > x->rank)
        return rp_kfail(c, RP_ERR_VALUE, "axis %lld out of range [%lld, %d]", (long long)axis, (long long)lo,
                        x->rank);
    if (axis < 0)
        axis += x->rank;
    int64_t dims[2] = {prod(x->dims, 0, (int)axis), prod(x->dims, (int)axis, x->rank)};
    return set_out(c, 0, x->dtype, 2, dims);
}

/* ----------------------------------------------------------------- Expand */

static rp_status expand_prepare(rp_kctx *c)
{
    const rp_tensor *x = c->in[0];
    view v;
    rp_status st = view_init(c, x, &v);
    if (st)
        return st;
    rp_tensor want = {0};
    int n;
    if ((st = const_ints(c, 1, "shape", want.dims, RP_MAX_RANK, &n)))
        return st;
    want.rank = n;
    for (int d = 0; d < n; d++)
        if (want.dims[d] < 0)
            return rp_kfail(c, RP_ERR_SHAPE, "shape has a negative entry %lld", (long long)want.dims[d]);
    const rp_tensor *ts[2] = {x, &want};
    rp_tensor b = {.dtype = x->dtype, .rank = -1}; /* stays -1 if the broadcast count overflows */
    if ((st = rp_broadcast_shape(c, ts, 2, &b)))
        return st;
    if (b.rank < 0)
        return rp_kfail(c, RP_ERR_SHAPE, "output element count out of range");
    if ((st = set_out(c, 0, x->dtype, b.rank, b.dims)))
        return st;
    v.rank = b.rank;
    memcpy(v.dims, b.dims, sizeof v.dims);
    rp_broadcast_strides(x, &b, v.strides);
    view_simplify(&v);
    return keep_params(c, &v, sizeof v);
}

/* ------------------------------------------------------------ Shape, Size */

typedef struct shape_params {
    int start;
} shape_params;

static rp_status shape_prepare(rp_kctx *c)
{
    int r = c->in[0]->rank;
    int64_t start = 0, end = r;
    if (c->opset >= 15) { /* start/end slice the shape, clamped like Slice */
        start = rp_attr_int(c->node, "start", 0);
        end = rp_attr_int(c->node, "end", r);
        if (start < 0)
            start += r;
        if (end < 0)
            end += r;
        start = start < 0 ? 0 : start > r ? r : start;
        end = end < 0 ? 0 : end > r ? r : end;
    }
    int64_t n = end > start ? end - start : 0;
    rp_status st = set_out(c, 0, RP_INT64, 1, &n);
    if (st)
        return st;
    shape_params p = {(int)start};
    return keep_params(c, &p, sizeof p);
}

static rp_status shape_forward(rp_kctx *c)
{
    const shape_params *p = c->params;
    rp_tensor *y = c->out[0];
    for (int64_t i = 0; i < y->count; i++)
        ((int64_t *)y->data)[i] = c->in[0]->dims[p->start + i];
    return RP_OK;
}

static rp_status size_prepare(rp_kctx *c)
{
    int64_t none[1] = {0};
    return set_out(c, 0, RP_INT64, 0, none);
}

static rp_status size_forward(rp_kctx *c)
{
    *(int64_t *)c->out[0]->data = c->in[0]->count;
    return RP_OK;
}

/* ------------------------------------------------ ConstantOfShape, Dropout */

/* An output filled with one repeated element (ConstantOfShape, Dropout's mask). */
typedef struct fill_params {
    size_t es;
    unsigned char value[8];
} fill_params;

static rp_status constantofshape_prepare(rp_kctx *c)
{
    int64_t dims[RP_MAX_RANK];
    int n;
    rp_status st = const_ints(c, 0, "shape", dims, RP_MAX_RANK, &n);
    if (st)
        return st;
    for (int d = 0; d < n; d++)
        if (dims[d] < 0)
            return rp_kfail(c, RP_ERR_SHAPE, "shape has a negative entry %lld", (long long)dims[d]);
    fill_params p = {.es = 4};
    rp_dtype dt = RP_FLOAT; /* the default value is float 0 */
    const rp_attr *a = rp_node_attr(c->node, "value");
    if (a) {
        const rp_tensor *v = a->type == RP_ATTR_TENSOR ? a->tensor : NULL;
        if (!v || v->count != 1)
            return rp_kfail(c, RP_ERR_VALUE, "attribute 'value' must be a one-element tensor");
        if ((st = elem_size(c, v, &p.es)))
            return st;
        memcpy(p.value, v->data, p.es);
        dt = v->dtype;
    }
    if ((st = set_out(c, 0, dt, n, dims)))
        return st;
    return keep_params(c, &p, sizeof p);
}

static rp_status fill_forward(rp_kctx *c)
{
    const fill_params *p = c->params;
    fill(c->out[0]->data, c->out[0]->count, p->es, p->value);
    return RP_OK;
}

/* Inference only: output = input, mask all true. The mask is bool from opset
 * 10, the input's type before. training_mode (opset 12) is a constant input,
 * so a model asking for training is refused here rather than run wrongly. */
static rp_status dropout_prepare(rp_kctx *c)
{
    const rp_tensor *x = c->in[0];
    rp_status st = same_shape_out(c);
    if (st)
        return st;
    const rp_tensor *train = c->opset >= 12 ? in_opt(c, 2) : NULL;
    if (train) {
        if (train->dtype != RP_BOOL)
            return rp_kfail(c, RP_ERR_DTYPE, "training_mode must be a bool scalar, got %s",
                            rp_dtype_name(train->dtype));
        if (train->count != 1 || !train->data)
            return rp_kfail(c, RP_ERR_VALUE, "training_mode must be a constant scalar");
        if (rp_tensor_get_i64(train, 0) != 0)
            return rp_kfail(c, RP_ERR_UNSUPPORTED, "training_mode is true; only inference is supported");
    }
    fill_params p = {0};
    rp_dtype mdt = c->opset >= 10 ? RP_BOOL : x->dtype;
    p.es = rp_dtype_size(mdt);
    rp_tensor one = {.dtype = mdt, .data = p.value};
    rp_tensor_set_f64(&one, 0, 1.0);
    if ((st = set_out(c, 1, mdt, x->rank, x->dims)))
        return st;
    return keep_params(c, &p, sizeof p);
}

static rp_status dropout_forward(rp_kctx *c)
{
    const fill_params *p = c->params;
    copy_forward(c);
    rp_tensor *mask = out_opt(c, 1);
    if (mask)
        fill(mask->data, mask->count, p->es, p->value);
    return RP_OK;
}

/* --------------------------------------------------------------- Constant */

typedef struct constant_params {
    size_t bytes;
    unsigned char data[]; /* a copy, so forward does not read attributes */
} constant_params;

static rp_status constant_prepare(rp_kctx *c)
{
    static const char *const unsupported[] = {"value_string", "value_strings", "sparse_value"};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++)
        if (rp_node_attr(c->node, unsupported[i]))
            return rp_kfail(c, RP_ERR_UNSUPPORTED, "attribute '%s' is not supported", unsupported[i]);
    const rp_attr *a = NULL;
    static const char *const names[] = {"value", "value_float", "value_floats", "value_int", "value_ints"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const rp_attr *t = rp_node_attr(c->node, names[i]);
        if (t && a)
            return rp_kfail(c, RP_ERR_VALUE, "both '%s' and '%s' are given", a->name, t->name);
        if (t)
            a = t;
    }
    if (!a)
        return rp_kfail(c, RP_ERR_VALUE, "no value attribute");
    rp_dtype dt;
    int rank = 0;
    int64_t dims[RP_MAX_RANK] = {0};
    const void *src;
    switch (a->type) {
    case RP_ATTR_TENSOR:
        if (!a->tensor)
            return rp_kfail(c, RP_ERR_VALUE, "attribute '%s' holds no tensor", a->name);
        if (rp_dtype_size(a->tensor->dtype) == 0)
            return rp_kfail(c, RP_ERR_UNSUPPORTED, "a constant of dtype %s is not supported",
                            rp_dtype_name(a->tensor->dtype));
        dt = a->tensor->dtype;
        rank = a->tensor->rank;
        memcpy(dims, a->tensor->dims, sizeof dims);
        src = a->tensor->data;
        break;
    case RP_ATTR_FLOAT: dt = RP_FLOAT; src = &a->f; break;
    case RP_ATTR_INT: dt = RP_INT64; src = &a->i; break;
    case RP_ATTR_FLOATS: dt = RP_FLOAT; rank = 1; dims[0] = a->n; src = a->floats; break;
    case RP_ATTR_INTS: dt = RP_INT64; rank = 1; dims[0] = a->n; src = a->ints; break;
    default:
        return rp_kfail(c, RP_ERR_VALUE, "attribute '%s' has the wrong type", a->name);
    }
    rp_status st = set_out(c, 0, dt, rank, dims);
    if (st)
        return st;
    size_t bytes = (size_t)c->out[0]->count * rp_dtype_size(dt);
    constant_params *p = malloc(sizeof *p + bytes);
    if (!p)
        return rp_kfail(c, RP_ERR_NOMEM, "out of memory for a constant of %zu bytes", bytes);
    p->bytes = bytes;
    if (bytes)
        memcpy(p->data, src, bytes);
    c->params = p;
    return RP_OK;
}

static rp_status constant_forward(rp_kctx *c)
{
    const constant_params *p = c->params;
    if (p->bytes)
        memcpy(c->out[0]->data, p->data, p->bytes);
    return RP_OK;
}

/* ------------------------------------------------------------------ Range */

static rp_status range_prepare(rp_kctx *c)
{
    static const char *const what[] = {"start", "limit", "delta"};
    const rp_tensor *t0 = c->in[0];
    rp_dtype dt = t0->dtype;
    if (dt != RP_FLOAT && dt != RP_DOUBLE && dt != RP_INT16 && dt != RP_INT32 && dt != RP_INT64)
        return rp_kfail(c, RP_ERR_DTYPE, "dtype %s is not one of float, double, int16, int32, int64",
                        rp_dtype_name(dt));
    for (int i = 0; i < 3; i++) {
        const rp_tensor *t = c->in[i];
        if (t->dtype != dt)
            return rp_kfail(c, RP_ERR_DTYPE, "%s has dtype %s, start has %s", what[i], rp_dtype_name(t->dtype),
                            rp_dtype_name(dt));
        if (t->count != 1 || t->rank > 1)
            return rp_kfail(c, RP_ERR_SHAPE, "%s must be a scalar", what[i]);
        if (!t->data)
            return rp_kfail(c, RP_ERR_UNSUPPORTED, "%s must be a constant known when the model is loaded", what[i]);
    }
    int64_t n;
    if (dt == RP_FLOAT || dt == RP_DOUBLE) {
        double s = rp_tensor_get_f64(c->in[0], 0), l = rp_tensor_get_f64(c->in[1], 0),
               d = rp_tensor_get_f64(c->in[2], 0);
        /* The count is ceil((limit - start) / delta) computed in the input's own type. */
        double q = dt == RP_FLOAT ? (double)ceilf(((float)l - (float)s) / (float)d) : ceil((l - s) / d);
        if (d == 0 || isnan(q) || q >= 9.0e18)
            return rp_kfail(c, RP_ERR_VALUE, "start %g, limit %g, delta %g give no finite range", s, l, d);
        n = q > 0 ? (int64_t)q : 0;
    } else {
        int64_t s = rp_tensor_get_i64(c->in[0], 0), l = rp_tensor_get_i64(c->in[1], 0),
                d = rp_tensor_get_i64(c->in[2], 0);
        if (d == 0)
            return rp_kfail(c, RP_ERR_VALUE, "delta is 0");
        /* Unsigned differences cannot overflow: int64 extremes stay exact. */
        if (d > 0)
            n = l > s ? (int64_t)(((uint64_t)l - (uint64_t)s - 1) / (uint64_t)d + 1) : 0;
        else
            n = s > l ? (int64_t)(((uint64_t)s - (uint64_t)l - 1) / (0 - (uint64_t)d) + 1) : 0;
    }
    return set_out(c, 0, dt, 1, &n);
}

static rp_status range_forward(rp_kctx *c)
{
    rp_tensor *y = c->out[0];
    if (y->dtype == RP_FLOAT || y->dtype == RP_DOUBLE) {
        double s = rp_tensor_get_f64(c->in[0], 0), d = rp_tensor_get_f64(c->in[2], 0);
        for (int64_t i = 0; i < y->count; i++)
            rp_tensor_set_f64(y, i, s + (double)i * d);
    } else {
        int64_t s = rp_tensor_get_i64(c->in[0], 0), d = rp_tensor_get_i64(c->in[2], 0);
        for (int64_t i = 0; i < y->count; i++)
            rp_tensor_set_i64(y, i, s + i * d);
    }
    return RP_OK;
}

/* Gather moves each element at most once when its indices are constant,
 * non-negative (a negative one may repeat a positive one) and distinct; a
 * long list is not worth checking. */
static bool gather_moves_once(const rp_node *node, const rp_tensor *const *in)
{
    const rp_tensor *idx = node->n_in == 2 ? in[1] : NULL;
    if (!idx || !idx->data || idx->count > 256 || (idx->dtype != RP_INT64 && idx->dtype != RP_INT32))
        return false;
    for (int64_t i = 0; i < idx->count; i++) {
        int64_t a = rp_tensor_get_i64(idx, i);
        if (a < 0)
            return false;
        for (int64_t j = 0; j < i; j++)
            if (rp_tensor_get_i64(idx, j) == a)
                return false;
    }
    return true;
}

/* ------------------------------------------------------------------ table */

/* Moving data around reads none of it to send gradients back. */
#define MOVES (RP_OPF_GRAD_NO_INPUTS | RP_OPF_GRAD_NO_OUTPUTS)
#define RESHAPES (MOVES | RP_OPF_ALIAS)
/* An op that moves every element to exactly one place. */
#define MOVE_ONCE(name, since, in_min, in_max, shape_inputs, fl, prep, fwd, bwd)                                    \
    RP_OP(name, since, .min_in = in_min, .max_in = in_max, .const_inputs = (shape_inputs),                        \
          .nondiff_inputs = (shape_inputs), .role = RP_ROLE_MOVE, .flags = (fl) | RP_OPF_MOVES_ONCE, .prepare = prep, \
          .forward = fwd, .backward = bwd)
#define SPLIT(since, in_max, shape_inputs)                                                                        \
    RP_OP_OUTS("Split", since, 1, VARIADIC, .min_in = 1, .max_in = in_max, .const_inputs = (shape_inputs),         \
               .nondiff_inputs = (shape_inputs), .role = RP_ROLE_MOVE, .flags = MOVES | RP_OPF_MOVES_ONCE,         \
               .prepare = split_prepare, .forward = split_forward, .backward = split_backward)
/* Concat's inputs all end up in the output: each is a summand of it. */
#define CONCAT(since)                                                                                            \
    RP_OP("Concat", since, .min_in = 1, .max_in = VARIADIC, .role = RP_ROLE_MOVE, .summand_inputs = RP_IN_ALL,    \
          .flags = MOVES | RP_OPF_MOVES_ONCE, .prepare = concat_prepare, .forward = concat_forward,               \
          .backward = concat_backward)
/* Shape, Size, ConstantOfShape, Constant and Range have no gradient: their
 * outputs are shapes or constants, folded when the model is loaded. */
#define SHAPE_WORK(name, since, in_min, in_max, const_in, nondiff, fl, prep, fwd)                                  \
    RP_OP(name, since, .min_in = in_min, .max_in = in_max, .const_inputs = (const_in), .nondiff_inputs = (nondiff), \
          .role = RP_ROLE_NONE, .flags = (fl), .prepare = prep, .forward = fwd)
#define DROPOUT(since, in_max, const_in, nondiff)                                                               \
    RP_OP_OUTS("Dropout", since, 1, 2, .min_in = 1, .max_in = in_max, .const_inputs = (const_in),                \
               .nondiff_inputs = (nondiff), .role = RP_ROLE_PASS, .prepare = dropout_prepare,                      \
               .forward = dropout_forward, .backward = copy_backward)

const rp_op rp_ops_shape[] = {
    MOVE_ONCE("Reshape", 5, 2, 2, BIT(1), RESHAPES, reshape5_prepare, copy_forward, copy_backward),
    MOVE_ONCE("Reshape", 14, 2, 2, BIT(1), RESHAPES, reshape14_prepare, copy_forward, copy_backward),
    MOVE_ONCE("Transpose", 1, 1, 1, 0, MOVES, transpose_prepare, view_forward, transpose_backward),
    /* axis defaults to 1 before opset 4, is required after; negative from 11 (accepted throughout). */
    CONCAT(1),
    CONCAT(4),
    /* Indices are not constant at prepare in general; moves_once and
     * alias_offset look at them where they are. */
    RP_OP("Gather", 1, .min_in = 2, .max_in = 2, .nondiff_inputs = BIT(1), .role = RP_ROLE_MOVE,
          .flags = MOVES | RP_OPF_ALIAS, .prepare = gather_prepare, .forward = gather_forward,
          .backward = gather_backward, .alias_offset = gather_alias, .moves_once = gather_moves_once),
    MOVE_ONCE("Slice", 1, 1, 1, 0, MOVES, slice1_prepare, view_forward, view_backward),
    MOVE_ONCE("Slice", 10, 3, 5, BIT(1) | BIT(2) | BIT(3) | BIT(4), MOVES, slice10_prepare, view_forward,
              view_backward),
    SPLIT(2, 1, 0),
    SPLIT(13, 2, BIT(1)),
    SPLIT(18, 2, BIT(1)),
    MOVE_ONCE("Squeeze", 1, 1, 1, 0, RESHAPES, squeeze_prepare, copy_forward, copy_backward),
    MOVE_ONCE("Squeeze", 13, 1, 2, BIT(1), RESHAPES, squeeze_prepare, copy_forward, copy_backward),
    MOVE_ONCE("Unsqueeze", 1, 1, 1, 0, RESHAPES, unsqueeze_prepare, copy_forward, copy_backward),
    MOVE_ONCE("Unsqueeze", 13, 2, 2, BIT(1), RESHAPES, unsqueeze_prepare, copy_forward, copy_backward),
    MOVE_ONCE("Flatten", 1, 1, 1, 0, RESHAPES, flatten_prepare, copy_forward, copy_backward),
    MOVE_ONCE("Flatten", 11, 1, 1, 0, RESHAPES, flatten_prepare, copy_forward, copy_backward),
    /* Copies elements to many places. */
    RP_OP("Expand", 8, .min_in = 2, .max_in = 2, .const_inputs = BIT(1), .nondiff_inputs = BIT(1),
          .role = RP_ROLE_MOVE, .flags = MOVES, .prepare = expand_prepare, .forward = view_forward,
          .backward = view_backward),
    SHAPE_WORK("Shape", 1, 1, 1, 0, BIT(0), RP_OPF_SHAPE_ONLY, shape_prepare, shape_forward),
    SHAPE_WORK("Shape", 15, 1, 1, 0, BIT(0), RP_OPF_SHAPE_ONLY, shape_prepare, shape_forward),
    SHAPE_WORK("Size", 1, 1, 1, 0, BIT(0), RP_OPF_SHAPE_ONLY, size_prepare, size_forward),
    SHAPE_WORK("ConstantOfShape", 9, 1, 1, BIT(0), BIT(0), 0, constantofshape_prepare, fill_forward),
    SHAPE_WORK("Constant", 1, 0, 0, 0, 0, 0, constant_prepare, constant_forward),
    SHAPE_WORK("Range", 11, 3, 3, BIT(0) | BIT(1) | BIT(2), BIT(0) | BIT(1) | BIT(2), 0, range_prepare,
               range_forward),
    RP_OP("Identity", 1, .min_in = 1, .max_in = 1, .role = RP_ROLE_PASS, .flags = RESHAPES | RP_OPF_MOVES_ONCE,
          .prepare = same_shape_out, .forward = copy_forward, .backward = copy_backward),
    DROPOUT(7, 1, 0, 0),
    DROPOUT(10, 1, 0, 0),
    DROPOUT(12, 3, BIT(2), BIT(1) | BIT(2)),
};
const size_t rp_ops_shape_count = sizeof rp_ops_shape / sizeof rp_ops_shape[0];
