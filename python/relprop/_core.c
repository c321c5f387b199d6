/* relprop._core: the CPython binding over relprop's public API
 * (include/relprop/relprop.h) and nothing else. relprop/__init__.py turns
 * its plain arguments into the notebook-facing API; this file owns the C
 * objects, copies results into numpy arrays and turns rp_error into
 * relprop.Error.
 *
 * Threads: the GIL is released while relprop loads, runs, explains or
 * decodes, so two threads with two models compute at once. One rp_model
 * holds its run buffers, so each CoreModel has a lock that its calls take
 * (with the GIL released, so a waiting thread blocks nobody else): one
 * model used from two threads is safe, its calls run one after the other. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <stdbool.h>
#include <string.h>

#include "relprop/relprop.h"

static PyObject *RelpropError; /* relprop.Error; .status is rp_status_name's: "io", "format", ... */

static PyObject *raise_rp(const rp_error *err)
{
    PyObject *msg = PyUnicode_DecodeUTF8(err->msg, (Py_ssize_t)strlen(err->msg), "replace");
    if (!msg)
        return NULL;
    PyObject *exc = PyObject_CallOneArg(RelpropError, msg);
    Py_DECREF(msg);
    if (!exc)
        return NULL;
    PyObject *status = PyUnicode_FromString(rp_status_name(err->code));
    if (!status || PyObject_SetAttrString(exc, "status", status) < 0) {
        Py_XDECREF(status);
        Py_DECREF(exc);
        return NULL;
    }
    Py_DECREF(status);
    PyErr_SetObject(RelpropError, exc);
    Py_DECREF(exc);
    return NULL;
}

/* ---- numpy <-> rp_tensor ---- */

/* A float32 array as a C-ordered array the caller holds a reference to (a
 * copy only when obj is not C-contiguous and aligned). Anything but a
 * float32 ndarray is refused: converting silently would hide a float64
 * input that the user believes is what the model saw. */
static PyArrayObject *float32_array(PyObject *obj, const char *what)
{
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s: expected a numpy float32 array, got %s", what, Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_TYPE(a) != NPY_FLOAT32) {
        PyErr_Format(PyExc_TypeError, "%s: expected dtype float32, got %s (use .astype(numpy.float32))", what,
                     PyArray_DESCR(a)->typeobj->tp_name);
        return NULL;
    }
    if (PyArray_NDIM(a) > RP_MAX_RANK) {
        PyErr_Format(PyExc_ValueError, "%s: rank %d, relprop takes at most %d", what, PyArray_NDIM(a), RP_MAX_RANK);
        return NULL;
    }
    return (PyArrayObject *)PyArray_FromArray(a, PyArray_DescrFromType(NPY_FLOAT32),
                                              NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
}

/* A view of a C-ordered float32 array as an rp_tensor (data borrowed). */
static rp_tensor tensor_view(PyArrayObject *a)
{
    rp_tensor t = {.dtype = RP_FLOAT, .rank = PyArray_NDIM(a), .count = 1, .data = PyArray_DATA(a)};
    for (int d = 0; d < t.rank; d++) {
        t.dims[d] = (int64_t)PyArray_DIM(a, d);
        t.count *= t.dims[d];
    }
    return t;
}

/* A new numpy array holding a copy of t (float32 or int64). */
static PyObject *array_from_tensor(const rp_tensor *t)
{
    npy_intp dims[RP_MAX_RANK];
    for (int d = 0; d < t->rank; d++)
        dims[d] = (npy_intp)t->dims[d];
    int type = t->dtype == RP_FLOAT ? NPY_FLOAT32 : t->dtype == RP_INT64 ? NPY_INT64 : -1;
    if (type < 0) {
        PyErr_SetString(PyExc_TypeError, "relprop returned a tensor that is neither float32 nor int64");
        return NULL;
    }
    PyObject *a = PyArray_SimpleNew(t->rank, dims, type);
    if (a && t->count > 0)
        memcpy(PyArray_DATA((PyArrayObject *)a), t->data, (size_t)t->count * (type == NPY_FLOAT32 ? 4 : 8));
    return a;
}

static PyObject *shape_tuple(const rp_tensor *t)
{
    PyObject *s = PyTuple_New(t->rank);
    for (int d = 0; s && d < t->rank; d++)
        PyTuple_SET_ITEM(s, d, PyLong_FromLongLong((long long)t->dims[d]));
    return s;
}

/* d[key] = v with a plain (not interned) key: PyDict_SetItemString interns
 * its key, and interning a new string on every call churns CPython's
 * interned table, which it then reallocates now and then. */
static int dict_set(PyObject *d, const char *key, PyObject *v)
{
    PyObject *k = PyUnicode_FromString(key);
    int rc = k ? PyDict_SetItem(d, k, v) : -1;
    Py_XDECREF(k);
    return rc;
}

static const char *dtype_name(rp_dtype dt)
{
    switch (dt) {
    case RP_FLOAT: return "float32";
    case RP_DOUBLE: return "float64";
    case RP_FLOAT16: return "float16";
    case RP_INT64: return "int64";
    case RP_INT32: return "int32";
    case RP_UINT8: return "uint8";
    case RP_BOOL: return "bool";
    default: return "other";
    }
}

/* ---- images ---- */

static PyObject *array_from_image(const rp_image *im)
{
    npy_intp dims[3] = {im->height, im->width, im->channels};
    PyObject *a = PyArray_SimpleNew(im->channels == 1 ? 2 : 3, dims, NPY_UINT8);
    if (a)
        memcpy(PyArray_DATA((PyArrayObject *)a), im->pixels, (size_t)im->width * im->height * im->channels);
    return a;
}

/* Fills p from the dict that relprop/__init__.py builds (keys resize,
 * resize_hw, crop, interpolation, mean, std). */
static bool preprocess_from_dict(PyObject *d, rp_preprocess *p)
{
    memset(p, 0, sizeof *p);
    if (!PyDict_Check(d)) {
        PyErr_SetString(PyExc_TypeError, "preprocessing: expected a dict");
        return false;
    }
    PyObject *v;
    if ((v = PyDict_GetItemString(d, "resize")) && v != Py_None && (p->resize = (int)PyLong_AsLong(v), PyErr_Occurred()))
        return false;
    if ((v = PyDict_GetItemString(d, "resize_hw")) && v != Py_None &&
        !PyArg_ParseTuple(v, "ii;resize_hw: expected (h, w)", &p->resize_h, &p->resize_w))
        return false;
    if ((v = PyDict_GetItemString(d, "crop")) && v != Py_None &&
        !PyArg_ParseTuple(v, "ii;crop: expected (h, w)", &p->crop_h, &p->crop_w))
        return false;
    const char *interp = "bilinear";
    if ((v = PyDict_GetItemString(d, "interpolation")) && v != Py_None && !(interp = PyUnicode_AsUTF8(v)))
        return false;
    if (strcmp(interp, "bilinear") == 0)
        p->interp = RP_INTERP_BILINEAR;
    else if (strcmp(interp, "bicubic") == 0)
        p->interp = RP_INTERP_BICUBIC;
    else if (strcmp(interp, "nearest") == 0)
        p->interp = RP_INTERP_NEAREST;
    else {
        PyErr_Format(PyExc_ValueError, "interpolation must be bilinear, bicubic or nearest, got '%s'", interp);
        return false;
    }
    if (!(v = PyDict_GetItemString(d, "mean")) || !PyArg_ParseTuple(v, "fff;mean: expected three numbers", &p->mean[0],
                                                                     &p->mean[1], &p->mean[2]))
        return PyErr_Occurred() ? false : (PyErr_SetString(PyExc_ValueError, "preprocessing: mean missing"), false);
    if (!(v = PyDict_GetItemString(d, "std")) ||
        !PyArg_ParseTuple(v, "fff;std: expected three numbers", &p->std[0], &p->std[1], &p->std[2]))
        return PyErr_Occurred() ? false : (PyErr_SetString(PyExc_ValueError, "preprocessing: std missing"), false);
    for (int c = 0; c < 3; c++)
        if (!(p->std[c] > 0)) {
            PyErr_SetString(PyExc_ValueError, "std values must be positive");
            return false;
        }
    return true;
}

static PyObject *preprocess_to_dict(const rp_preprocess *p, const char *source)
{
    static const char *interp[] = {"bilinear", "bicubic", "nearest"};
    PyObject *resize_hw = p->resize_h || p->resize_w ? Py_BuildValue("(ii)", p->resize_h, p->resize_w) : Py_NewRef(Py_None);
    PyObject *crop = p->crop_h || p->crop_w ? Py_BuildValue("(ii)", p->crop_h, p->crop_w) : Py_NewRef(Py_None);
    PyObject *resize = p->resize ? PyLong_FromLong(p->resize) : Py_NewRef(Py_None);
    PyObject *d = NULL;
    if (resize_hw && crop && resize)
        d = Py_BuildValue("{sOsOsOsss(fff)s(fff)ss}", "resize", resize, "resize_hw", resize_hw, "crop", crop,
                          "interpolation", interp[p->interp], "mean", p->mean[0], p->mean[1], p->mean[2], "std",
                          p->std[0], p->std[1], p->std[2], "source", source);
    Py_XDECREF(resize_hw);
    Py_XDECREF(crop);
    Py_XDECREF(resize);
    return d;
}

/* load_image(path, preprocessing: dict, channels: 1 or 3) -> (1, C, H, W) float32 */
static PyObject *core_load_image(PyObject *self, PyObject *args)
{
    PyObject *path_obj, *pre_obj;
    int channels;
    if (!PyArg_ParseTuple(args, "O&Oi", PyUnicode_FSConverter, &path_obj, &pre_obj, &channels))
        return NULL;
    PyObject *result = NULL;
    rp_preprocess pre;
    if (channels != 1 && channels != 3) {
        PyErr_Format(PyExc_ValueError, "channels must be 1 (gray) or 3 (RGB), got %d", channels);
        goto done;
    }
    if (!preprocess_from_dict(pre_obj, &pre))
        goto done;
    const char *path = PyBytes_AS_STRING(path_obj);
    rp_error err = {0};
    rp_image im = {0};
    rp_tensor x = {0};
    rp_status st;
    Py_BEGIN_ALLOW_THREADS
    st = rp_image_load(path, &im, &err);
    if (!st && (st = rp_image_to_tensor(&im, &pre, channels, &x, &err)) != RP_OK) {
        /* As the CLI words it: the file first. */
        rp_error inner = err;
        snprintf(err.msg, sizeof err.msg, "%.400s: %.600s", path, inner.msg);
    }
    Py_END_ALLOW_THREADS
    rp_image_release(&im);
    if (st)
        raise_rp(&err);
    else
        result = array_from_tensor(&x);
    rp_tensor_release(&x);
done:
    Py_DECREF(path_obj);
    return result;
}

/* read_image(path) -> (H, W, 3) uint8, as decoded (RGB). */
static PyObject *core_read_image(PyObject *self, PyObject *args)
{
    PyObject *path_obj;
    if (!PyArg_ParseTuple(args, "O&", PyUnicode_FSConverter, &path_obj))
        return NULL;
    rp_error err = {0};
    rp_image im = {0};
    rp_status st;
    const char *path = PyBytes_AS_STRING(path_obj);
    Py_BEGIN_ALLOW_THREADS
    st = rp_image_load(path, &im, &err);
    Py_END_ALLOW_THREADS
    Py_DECREF(path_obj);
    PyObject *result = st ? raise_rp(&err) : array_from_image(&im);
    rp_image_release(&im);
    return result;
}

static PyObject *core_preset(PyObject *self, PyObject *args)
{
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name))
        return NULL;
    rp_error err = {0};
    rp_preprocess p;
    if (rp_preprocess_preset(name, &p, &err))
        return raise_rp(&err);
    return preprocess_to_dict(&p, "preset");
}

/* An input image tensor: (1, C, H, W) or (C, H, W) float32. */
static PyArrayObject *input_image(PyObject *obj, const char *what)
{
    PyArrayObject *x = float32_array(obj, what);
    if (!x)
        return NULL;
    int nd = PyArray_NDIM(x);
    if (!((nd == 4 && PyArray_DIM(x, 0) == 1) || nd == 3)) {
        PyErr_Format(PyExc_ValueError, "%s: expected one image as (1, C, H, W) or (C, H, W), got %d dimensions%s", what,
                     nd, nd == 4 ? " with a batch of several (pass one row, x[i:i+1])" : "");
        Py_DECREF(x);
        return NULL;
    }
    return x;
}

static PyArrayObject *map_2d(PyObject *obj)
{
    PyArrayObject *m = float32_array(obj, "map");
    if (m && PyArray_NDIM(m) != 2) {
        PyErr_Format(PyExc_ValueError, "map: expected a 2-D map (grid_h, grid_w) or (H, W), got %d dimensions",
                     PyArray_NDIM(m));
        Py_CLEAR(m);
    }
    return m;
}

/* overlay(x, map, patch_h, patch_w) -> (H, W, 3) uint8; heatmap(map, ph, pw); render_input(x). */
static PyObject *core_render(int what, PyObject *args)
{
    PyObject *x_obj = NULL, *map_obj = NULL;
    int ph = 1, pw = 1;
    bool ok = what == 0   ? PyArg_ParseTuple(args, "OOii", &x_obj, &map_obj, &ph, &pw)
              : what == 1 ? PyArg_ParseTuple(args, "Oii", &map_obj, &ph, &pw)
                          : PyArg_ParseTuple(args, "O", &x_obj);
    if (!ok)
        return NULL;
    PyArrayObject *x = NULL, *map = NULL;
    PyObject *result = NULL;
    if ((x_obj && !(x = input_image(x_obj, "image"))) || (map_obj && !(map = map_2d(map_obj))))
        goto done;
    rp_tensor xt = {0}, mt = {0};
    if (x) {
        xt = tensor_view(x);
        if (xt.rank == 3) { /* (C, H, W) -> (1, C, H, W) */
            memmove(xt.dims + 1, xt.dims, 3 * sizeof xt.dims[0]);
            xt.dims[0] = 1;
            xt.rank = 4;
        }
    }
    if (map)
        mt = tensor_view(map);
    rp_error err = {0};
    rp_image im = {0};
    rp_status st;
    Py_BEGIN_ALLOW_THREADS
    st = what == 0   ? rp_render_overlay(&xt, &mt, ph, pw, &im, &err)
         : what == 1 ? rp_render_heatmap(&mt, ph, pw, &im, &err)
                     : rp_render_input(&xt, &im, &err);
    Py_END_ALLOW_THREADS
    result = st ? raise_rp(&err) : array_from_image(&im);
    rp_image_release(&im);
done:
    Py_XDECREF(x);
    Py_XDECREF(map);
    return result;
}

static PyObject *core_overlay(PyObject *self, PyObject *args) { return core_render(0, args); }
static PyObject *core_heatmap(PyObject *self, PyObject *args) { return core_render(1, args); }
static PyObject *core_render_input(PyObject *self, PyObject *args) { return core_render(2, args); }

/* write_png(path, uint8 array (H, W, 3) or (H, W)) */
static PyObject *core_write_png(PyObject *self, PyObject *args)
{
    PyObject *path_obj, *obj;
    if (!PyArg_ParseTuple(args, "O&O", PyUnicode_FSConverter, &path_obj, &obj))
        return NULL;
    PyObject *result = NULL;
    PyArrayObject *a = NULL;
    if (!PyArray_Check(obj) || PyArray_TYPE((PyArrayObject *)obj) != NPY_UINT8) {
        PyErr_SetString(PyExc_TypeError, "write_png: expected a numpy uint8 array (H, W, 3) or (H, W)");
        goto done;
    }
    a = (PyArrayObject *)PyArray_FromArray((PyArrayObject *)obj, PyArray_DescrFromType(NPY_UINT8),
                                           NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
    if (!a)
        goto done;
    int nd = PyArray_NDIM(a);
    if (!(nd == 2 || (nd == 3 && (PyArray_DIM(a, 2) == 3 || PyArray_DIM(a, 2) == 1))) || PyArray_DIM(a, 0) < 1 ||
        PyArray_DIM(a, 1) < 1 || PyArray_DIM(a, 0) > 1 << 20 || PyArray_DIM(a, 1) > 1 << 20) {
        PyErr_SetString(PyExc_ValueError, "write_png: expected a non-empty (H, W, 3) or (H, W) image");
        goto done;
    }
    rp_image im = {.height = (int)PyArray_DIM(a, 0), .width = (int)PyArray_DIM(a, 1),
                   .channels = nd == 3 ? (int)PyArray_DIM(a, 2) : 1, .pixels = PyArray_DATA(a)};
    rp_error err = {0};
    rp_status st;
    const char *path = PyBytes_AS_STRING(path_obj);
    Py_BEGIN_ALLOW_THREADS
    st = rp_image_write_png(path, &im, &err);
    Py_END_ALLOW_THREADS
    result = st ? raise_rp(&err) : Py_NewRef(Py_None);
done:
    Py_XDECREF(a);
    Py_DECREF(path_obj);
    return result;
}

static PyObject *core_set_threads(PyObject *self, PyObject *args)
{
    int n;
    if (!PyArg_ParseTuple(args, "i", &n))
        return NULL;
    int used;
    Py_BEGIN_ALLOW_THREADS
    used = rp_set_threads(n);
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(used);
}

static PyObject *core_method_names(PyObject *self, PyObject *noargs)
{
    PyObject *l = PyList_New(RP_METHOD_COUNT);
    for (int i = 0; l && i < RP_METHOD_COUNT; i++)
        PyList_SET_ITEM(l, i, PyUnicode_FromString(rp_method_name((rp_method)i)));
    return l;
}

/* ---- CoreModel: one rp_model, prepared for one batch size ---- */

typedef struct {
    PyObject_HEAD
    rp_model *m;
    PyThread_type_lock lock;
    bool dynamic_batch; /* the file's input has a symbolic leading dimension */
} CoreModel;

static void CoreModel_dealloc(CoreModel *self)
{
    rp_model_free(self->m);
    if (self->lock)
        PyThread_free_lock(self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *CoreModel_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    CoreModel *self = (CoreModel *)type->tp_alloc(type, 0);
    if (self && !(self->lock = PyThread_allocate_lock())) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

/* CoreModel(path, max_memory=0, check_finite=True, batch=1) */
static int CoreModel_init(CoreModel *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"path", "max_memory", "check_finite", "batch", NULL};
    PyObject *path_obj;
    long long max_memory = 0;
    int check_finite = 1, batch = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&|Lpi", kwlist, PyUnicode_FSConverter, &path_obj, &max_memory,
                                     &check_finite, &batch))
        return -1;
    if (self->m) {
        Py_DECREF(path_obj);
        PyErr_SetString(PyExc_RuntimeError, "CoreModel is already initialised");
        return -1;
    }
    if (max_memory < 0 || batch < 1) {
        Py_DECREF(path_obj);
        PyErr_SetString(PyExc_ValueError, max_memory < 0 ? "max_memory must be positive" : "batch must be at least 1");
        return -1;
    }
    const char *path = PyBytes_AS_STRING(path_obj);
    rp_error err = {0};
    rp_model *m = NULL;
    rp_status st;
    bool dynamic = false;
    Py_BEGIN_ALLOW_THREADS
    st = rp_model_open(path, &m, &err);
    if (!st) {
        const rp_tensor *in = rp_model_input_count(m) > 0 ? rp_model_input_info(m, 0) : NULL;
        dynamic = in && in->rank > 0 && in->dims[0] < 0;
        rp_model_set_check_finite(m, check_finite != 0);
        if (!(max_memory && (st = rp_model_set_max_memory(m, (int64_t)max_memory, &err))) &&
            !(batch > 1 && (st = rp_model_set_batch(m, batch, &err))))
            st = rp_model_prepare(m, &err);
    }
    Py_END_ALLOW_THREADS
    Py_DECREF(path_obj);
    if (st) {
        rp_model_free(m);
        raise_rp(&err);
        return -1;
    }
    self->m = m;
    self->dynamic_batch = dynamic;
    return 0;
}

static bool check_ready(CoreModel *self)
{
    if (!self->m)
        PyErr_SetString(PyExc_RuntimeError, "model not loaded");
    return self->m != NULL;
}

/* The input must be the prepared input's shape exactly. */
static bool check_input(CoreModel *self, PyArrayObject *x)
{
    const rp_tensor *info = rp_model_input_info(self->m, 0);
    bool same = PyArray_NDIM(x) == info->rank;
    for (int d = 0; same && d < info->rank; d++)
        same = PyArray_DIM(x, d) == info->dims[d];
    if (!same) {
        char got[200] = "(", want[200] = "(";
        for (int d = 0; d < PyArray_NDIM(x); d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), d ? ", %lld" : "%lld", (long long)PyArray_DIM(x, d));
        for (int d = 0; d < info->rank; d++)
            snprintf(want + strlen(want), sizeof want - strlen(want), d ? ", %lld" : "%lld", (long long)info->dims[d]);
        PyErr_Format(PyExc_ValueError, "%s: input of shape %s), but the model takes %s)", rp_model_path(self->m), got,
                     want);
    }
    return same;
}

static PyObject *CoreModel_run(CoreModel *self, PyObject *args)
{
    PyObject *x_obj;
    if (!check_ready(self) || !PyArg_ParseTuple(args, "O", &x_obj))
        return NULL;
    PyArrayObject *x = float32_array(x_obj, "x");
    if (!x)
        return NULL;
    PyObject *result = NULL;
    if (check_input(self, x)) {
        rp_tensor xt = tensor_view(x), y = {0};
        rp_error err = {0};
        rp_status st;
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(self->lock, WAIT_LOCK);
        st = rp_model_run(self->m, &xt, &y, &err);
        PyThread_release_lock(self->lock);
        Py_END_ALLOW_THREADS
        result = st ? raise_rp(&err) : array_from_tensor(&y);
        rp_tensor_release(&y);
    }
    Py_DECREF(x);
    return result;
}

/* explain(x, classes: list[int] | None, methods: list[int], rules: str | None,
 *         start_layer: int, top_classes: int)
 * -> (logits (B, C), classes (B, K) int64, {method name: maps (B, K, h, w)}) */
static PyObject *CoreModel_explain(CoreModel *self, PyObject *args)
{
    PyObject *x_obj, *classes_obj, *methods_obj;
    const char *rules = NULL;
    int start_layer = 0, top_classes = 1;
    if (!check_ready(self) ||
        !PyArg_ParseTuple(args, "OOOzii", &x_obj, &classes_obj, &methods_obj, &rules, &start_layer, &top_classes))
        return NULL;
    int *classes = NULL, n_classes = 0;
    rp_method *methods = NULL;
    int n_methods = 0;
    PyArrayObject *x = NULL;
    rp_explanation *e = NULL;
    PyObject *result = NULL, *logits = NULL, *cls = NULL, *maps = NULL;
    if (start_layer < 0 || top_classes < 1) {
        PyErr_SetString(PyExc_ValueError, start_layer < 0 ? "start_layer must be >= 0" : "top_classes must be >= 1");
        goto done;
    }
    if (classes_obj != Py_None) {
        PyObject *seq = PySequence_Fast(classes_obj, "classes: expected a list of ints");
        if (!seq)
            goto done;
        n_classes = (int)PySequence_Fast_GET_SIZE(seq);
        classes = PyMem_Calloc((size_t)n_classes + 1, sizeof *classes);
        for (int i = 0; classes && i < n_classes; i++) {
            long c = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
            if (c == -1 && PyErr_Occurred())
                break;
            if (c < 0 || c > INT32_MAX) {
                PyErr_Format(PyExc_ValueError, "class %ld: expected a class index >= 0", c);
                break;
            }
            classes[i] = (int)c;
        }
        Py_DECREF(seq);
        if (!classes) {
            PyErr_NoMemory();
            goto done;
        }
        if (PyErr_Occurred())
            goto done;
        if (n_classes == 0) {
            PyErr_SetString(PyExc_ValueError, "classes: an empty list (pass None for the top prediction)");
            goto done;
        }
    }
    PyObject *mseq = PySequence_Fast(methods_obj, "methods: expected a list");
    if (!mseq)
        goto done;
    n_methods = (int)PySequence_Fast_GET_SIZE(mseq);
    methods = PyMem_Calloc((size_t)n_methods + 1, sizeof *methods);
    for (int i = 0; methods && i < n_methods; i++) {
        long k = PyLong_AsLong(PySequence_Fast_GET_ITEM(mseq, i));
        if (k == -1 && PyErr_Occurred())
            break;
        if (k < 0 || k >= RP_METHOD_COUNT) {
            PyErr_Format(PyExc_ValueError, "method %ld out of range", k);
            break;
        }
        methods[i] = (rp_method)k;
    }
    Py_DECREF(mseq);
    if (!methods) {
        PyErr_NoMemory();
        goto done;
    }
    if (PyErr_Occurred())
        goto done;
    if (!(x = float32_array(x_obj, "x")) || !check_input(self, x))
        goto done;

    rp_tensor xt = tensor_view(x);
    rp_explain_options opt = {.start_layer = start_layer, .rules = rules, .top_classes = top_classes};
    rp_error err = {0};
    rp_status st;
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(self->lock, WAIT_LOCK);
    st = rp_explain(self->m, &xt, classes, n_classes, methods, n_methods, &opt, &e, &err);
    PyThread_release_lock(self->lock);
    Py_END_ALLOW_THREADS
    if (st) {
        raise_rp(&err);
        goto done;
    }
    int B = rp_explanation_batch(e), K = rp_explanation_class_count(e), M = rp_explanation_method_count(e);
    if (!(logits = array_from_tensor(rp_explanation_logits(e))))
        goto done;
    npy_intp cdims[2] = {B, K};
    if (!(cls = PyArray_SimpleNew(2, cdims, NPY_INT64)))
        goto done;
    for (int b = 0; b < B; b++)
        for (int ci = 0; ci < K; ci++)
            ((int64_t *)PyArray_DATA((PyArrayObject *)cls))[b * K + ci] = rp_explanation_sample_class(e, b, ci);
    if (!(maps = PyDict_New()))
        goto done;
    for (int mi = 0; mi < M; mi++) {
        const rp_tensor *first = rp_explanation_sample_map(e, 0, 0, mi);
        if (first->rank != 2) {
            PyErr_Format(PyExc_RuntimeError, "%s: map of rank %d, expected 2", rp_method_name(rp_explanation_method(e, mi)),
                         first->rank);
            goto done;
        }
        npy_intp mdims[4] = {B, K, (npy_intp)first->dims[0], (npy_intp)first->dims[1]};
        PyObject *a = PyArray_SimpleNew(4, mdims, NPY_FLOAT32);
        if (!a)
            goto done;
        float *dst = PyArray_DATA((PyArrayObject *)a);
        for (int b = 0; b < B; b++)
            for (int ci = 0; ci < K; ci++) {
                const rp_tensor *t = rp_explanation_sample_map(e, b, ci, mi);
                if (t->count != first->count) {
                    Py_DECREF(a);
                    PyErr_SetString(PyExc_RuntimeError, "maps of one method differ in size");
                    goto done;
                }
                memcpy(dst + ((int64_t)b * K + ci) * first->count, t->data, sizeof(float) * (size_t)t->count);
            }
        int rc = dict_set(maps, rp_method_name(rp_explanation_method(e, mi)), a);
        Py_DECREF(a);
        if (rc < 0)
            goto done;
    }
    result = PyTuple_Pack(3, logits, cls, maps);
done:
    Py_XDECREF(logits);
    Py_XDECREF(cls);
    Py_XDECREF(maps);
    Py_XDECREF(x);
    PyMem_Free(classes);
    PyMem_Free(methods);
    rp_explanation_free(e);
    return result;
}

static PyObject *value_list(CoreModel *self, bool inputs)
{
    int n = inputs ? rp_model_input_count(self->m) : rp_model_output_count(self->m);
    PyObject *l = PyList_New(n);
    for (int i = 0; l && i < n; i++) {
        const rp_tensor *t = inputs ? rp_model_input_info(self->m, i) : rp_model_output_info(self->m, i);
        PyObject *shape = shape_tuple(t);
        PyObject *d = shape ? Py_BuildValue("{sssssO}", "name",
                                            inputs ? rp_model_input_name(self->m, i) : rp_model_output_name(self->m, i),
                                            "dtype", dtype_name(t->dtype), "shape", shape)
                            : NULL;
        Py_XDECREF(shape);
        if (!d) {
            Py_CLEAR(l);
            break;
        }
        PyList_SET_ITEM(l, i, d);
    }
    return l;
}

/* Adds 1 to d[key] (a dict of str -> int). */
static int count_into(PyObject *d, const char *key)
{
    PyObject *k = PyUnicode_FromString(key);
    if (!k)
        return -1;
    PyObject *old = PyDict_GetItemWithError(d, k);
    long n = old ? PyLong_AsLong(old) : 0;
    PyObject *v = PyErr_Occurred() ? NULL : PyLong_FromLong(n + 1);
    int rc = v ? PyDict_SetItem(d, k, v) : -1;
    Py_XDECREF(v);
    Py_DECREF(k);
    return rc;
}

static int set_item(PyObject *d, const char *key, PyObject *v)
{
    if (!v)
        return -1;
    int rc = dict_set(d, key, v);
    Py_DECREF(v);
    return rc;
}

/* inspect(rules) -> dict: what `relprop inspect` prints, as data, for a
 * prepared model (ops counted after GELU fusion). A model with ops relprop
 * does not support never gets here: loading it raised, naming the node. */
static PyObject *CoreModel_inspect(CoreModel *self, PyObject *args)
{
    const char *rules = NULL;
    if (!check_ready(self) || !PyArg_ParseTuple(args, "|z", &rules))
        return NULL;
    rp_model *m = self->m;
    PyObject *d = PyDict_New(), *ops = PyDict_New(), *attn = PyList_New(0), *rule_counts = PyDict_New();
    if (!d || !ops || !attn || !rule_counts)
        goto fail;
    int n_nodes = rp_model_node_count(m), folded = 0;
    for (int i = 0; i < n_nodes; i++) {
        if (count_into(ops, rp_model_node_op(m, i)) < 0)
            goto fail;
        folded += rp_model_node_folded(m, i);
    }
    int fused = rp_model_fused_gelu_count(m);
    rp_error err = {0};
    for (int i = 0; i < rp_model_attention_count(m); i++) {
        rp_attention_info a;
        if (rp_model_attention(m, i, &a, &err)) {
            raise_rp(&err);
            goto fail;
        }
        PyObject *ad = Py_BuildValue("{sssssisi}", "softmax", a.softmax_node, "product", a.product_node, "heads",
                                     a.heads, "tokens", a.tokens);
        if (!ad || PyList_Append(attn, ad) < 0) {
            Py_XDECREF(ad);
            goto fail;
        }
        Py_DECREF(ad);
    }
    rp_token_layout tl;
    PyObject *layout;
    if (rp_model_token_layout(m, &tl, &err) == RP_OK) {
        PyObject *rows = PyList_New(tl.n_readout_rows);
        for (int k = 0; rows && k < tl.n_readout_rows; k++)
            PyList_SET_ITEM(rows, k, Py_BuildValue("(id)", tl.readout_rows[k], (double)tl.readout_weights[k]));
        layout = rows ? Py_BuildValue("{s(ii)s(ii)s(ii)sisisssssO}", "image", tl.image_h, tl.image_w, "patch",
                                      tl.patch_h, tl.patch_w, "grid", tl.grid_h, tl.grid_w, "prefix_tokens",
                                      tl.prefix_tokens, "tokens", tl.tokens, "patch_node", tl.patch_node, "readout",
                                      tl.readout ? tl.readout : "", "readout_rows", rows)
                      : NULL;
        Py_XDECREF(rows);
    } else {
        layout = Py_BuildValue("{ss}", "error", err.msg);
    }
    if (set_item(d, "layout", layout) < 0)
        goto fail;
    for (int i = 0; i < n_nodes; i++) {
        const char *kind, *rule;
        if (rp_model_node_rule(m, rules, i, &kind, &rule, &err)) {
            raise_rp(&err);
            goto fail;
        }
        if (!rule)
            continue;
        char label[200];
        snprintf(label, sizeof label, "%s -> %s", kind, rule);
        if (count_into(rule_counts, label) < 0)
            goto fail;
    }
    if (set_item(d, "path", PyUnicode_DecodeFSDefault(rp_model_path(m))) < 0 ||
        set_item(d, "opset", PyLong_FromLong(rp_model_opset(m))) < 0 ||
        set_item(d, "nodes", PyLong_FromLong(n_nodes)) < 0 ||
        set_item(d, "folded_nodes", PyLong_FromLong(folded - 4 * fused)) < 0 ||
        set_item(d, "fused_gelus", PyLong_FromLong(fused)) < 0 ||
        set_item(d, "inputs", value_list(self, true)) < 0 || set_item(d, "outputs", value_list(self, false)) < 0 ||
        set_item(d, "batch", PyLong_FromLong(rp_model_batch(m))) < 0 ||
        set_item(d, "dynamic_batch", PyBool_FromLong(self->dynamic_batch)) < 0 ||
        set_item(d, "rules", PyUnicode_FromString(rules ? rules : "paper")) < 0 ||
        dict_set(d, "ops", ops) < 0 || dict_set(d, "attention", attn) < 0 ||
        dict_set(d, "rule_counts", rule_counts) < 0)
        goto fail;
    Py_DECREF(ops);
    Py_DECREF(attn);
    Py_DECREF(rule_counts);
    return d;
fail:
    Py_XDECREF(d);
    Py_XDECREF(ops);
    Py_XDECREF(attn);
    Py_XDECREF(rule_counts);
    return NULL;
}

static PyObject *CoreModel_default_preprocess(CoreModel *self, PyObject *noargs)
{
    if (!check_ready(self))
        return NULL;
    rp_preprocess p;
    const char *source = NULL;
    rp_error err = {0};
    if (rp_model_default_preprocess(self->m, &p, &source, &err))
        return raise_rp(&err);
    return preprocess_to_dict(&p, source);
}

static PyObject *CoreModel_metadata(CoreModel *self, PyObject *args)
{
    const char *key;
    if (!check_ready(self) || !PyArg_ParseTuple(args, "s", &key))
        return NULL;
    const char *v = rp_model_metadata(self->m, key);
    return v ? PyUnicode_DecodeUTF8(v, (Py_ssize_t)strlen(v), "replace") : Py_NewRef(Py_None);
}

/* The patch size maps are drawn with, or None when the graph has no patch grid. */
static PyObject *CoreModel_patch(CoreModel *self, PyObject *noargs)
{
    if (!check_ready(self))
        return NULL;
    rp_token_layout tl;
    rp_error err = {0};
    if (rp_model_token_layout(self->m, &tl, &err))
        return Py_NewRef(Py_None);
    return Py_BuildValue("(ii)", tl.patch_h, tl.patch_w);
}

static PyObject *CoreModel_input_shape(CoreModel *self, void *closure)
{
    return check_ready(self) ? shape_tuple(rp_model_input_info(self->m, 0)) : NULL;
}

static PyObject *CoreModel_output_shape(CoreModel *self, void *closure)
{
    return check_ready(self) ? shape_tuple(rp_model_output_info(self->m, 0)) : NULL;
}

static PyObject *CoreModel_dynamic_batch(CoreModel *self, void *closure)
{
    return PyBool_FromLong(self->dynamic_batch);
}

static PyObject *CoreModel_path(CoreModel *self, void *closure)
{
    return check_ready(self) ? PyUnicode_DecodeFSDefault(rp_model_path(self->m)) : NULL;
}

static PyMethodDef CoreModel_methods[] = {
    {"run", (PyCFunction)CoreModel_run, METH_VARARGS, "run(x) -> logits"},
    {"explain", (PyCFunction)CoreModel_explain, METH_VARARGS,
     "explain(x, classes, methods, rules, start_layer, top_classes) -> (logits, classes, maps)"},
    {"inspect", (PyCFunction)CoreModel_inspect, METH_VARARGS, "inspect(rules=None) -> dict"},
    {"default_preprocess", (PyCFunction)CoreModel_default_preprocess, METH_NOARGS,
     "the preprocessing relprop explain uses for this model's images"},
    {"metadata", (PyCFunction)CoreModel_metadata, METH_VARARGS, "metadata(key) -> str or None"},
    {"patch", (PyCFunction)CoreModel_patch, METH_NOARGS, "(patch_h, patch_w) or None"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef CoreModel_getset[] = {
    {"input_shape", (getter)CoreModel_input_shape, NULL, "the prepared input shape", NULL},
    {"output_shape", (getter)CoreModel_output_shape, NULL, "the prepared output shape", NULL},
    {"dynamic_batch", (getter)CoreModel_dynamic_batch, NULL, "whether the input's batch is symbolic", NULL},
    {"path", (getter)CoreModel_path, NULL, "the model file", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject CoreModelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "relprop._core.CoreModel",
    .tp_basicsize = sizeof(CoreModel),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One relprop model prepared for one batch size (use relprop.Model).",
    .tp_new = CoreModel_new,
    .tp_init = (initproc)CoreModel_init,
    .tp_dealloc = (destructor)CoreModel_dealloc,
    .tp_methods = CoreModel_methods,
    .tp_getset = CoreModel_getset,
};

static PyMethodDef core_methods[] = {
    {"load_image", core_load_image, METH_VARARGS, "load_image(path, preprocessing, channels) -> (1, C, H, W) float32"},
    {"read_image", core_read_image, METH_VARARGS, "read_image(path) -> (H, W, 3) uint8"},
    {"preset", core_preset, METH_VARARGS, "preset(name) -> preprocessing dict"},
    {"overlay", core_overlay, METH_VARARGS, "overlay(x, map, patch_h, patch_w) -> (H, W, 3) uint8"},
    {"heatmap", core_heatmap, METH_VARARGS, "heatmap(map, patch_h, patch_w) -> (H, W, 3) uint8"},
    {"render_input", core_render_input, METH_VARARGS, "render_input(x) -> (H, W, 3) uint8"},
    {"write_png", core_write_png, METH_VARARGS, "write_png(path, image)"},
    {"set_threads", core_set_threads, METH_VARARGS, "set_threads(n) -> threads in use (process-wide)"},
    {"method_names", core_method_names, METH_NOARGS, "the methods, in rp_method order"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT, "relprop._core", "relprop's C library, bound to Python (see relprop).", -1, core_methods,
};

PyMODINIT_FUNC PyInit__core(void)
{
    import_array();
    if (PyType_Ready(&CoreModelType) < 0)
        return NULL;
    PyObject *mod = PyModule_Create(&core_module);
    if (!mod)
        return NULL;
    RelpropError = PyErr_NewExceptionWithDoc("relprop.Error",
                                             "An error from relprop, with its one-line message; .status names the "
                                             "kind (io, format, unsupported, shape, dtype, value, out of memory, argument, internal).",
                                             PyExc_RuntimeError, NULL);
    if (!RelpropError || PyModule_AddObjectRef(mod, "Error", RelpropError) < 0 ||
        PyModule_AddObjectRef(mod, "CoreModel", (PyObject *)&CoreModelType) < 0 ||
        PyModule_AddStringConstant(mod, "version", RP_VERSION_STRING) < 0) {
        Py_DECREF(mod);
        return NULL;
    }
    return mod;
}
