"""relprop from Python: explain ONNX Vision Transformers with LRP.

A thin binding over relprop's C library (include/relprop/relprop.h); numpy
in, numpy out, the same code and the same bits as the ``relprop`` command::

    import relprop
    m = relprop.Model("models/fmnist_vit.onnx")
    x = m.load_image("samples/coat_tshirt.png")         # (1, 3, H, W) float32
    logits = m.run(x)                                     # (1, classes) float32
    e = m.explain(x, classes=[4, 0], methods="all")
    rgb = relprop.overlay(x, e.map("transformer_attribution", 4))
    relprop.write_png("coat.png", rgb)

Threads: relprop releases the GIL while it computes. Two ``Model`` objects
used from two threads compute at once; one ``Model`` used from two threads
is safe, its calls take a per-model lock and run one after the other.
"""
import os
import tempfile

import numpy as np

from . import _core
from ._core import Error

__all__ = ["Model", "Explanation", "Error", "load_image", "read_image", "overlay", "heatmap", "render_input",
           "write_png", "top_k", "softmax", "set_threads", "from_torch", "METHODS", "__version__"]

__version__ = _core.version

#: The methods, in the order "all" lists them.
METHODS = tuple(_core.method_names())


def set_threads(n=None):
    """Threads for all of relprop's work, process-wide (relprop's own pool;
    None or <= 0: one per core, the default). Returns the count in use."""
    return _core.set_threads(0 if n is None else int(n))


def _parse_bytes(v):
    if v is None:
        return 0
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        if v <= 0:
            raise ValueError(f"max_memory must be positive, got {v}")
        return int(v)
    if isinstance(v, str):
        s = v.strip()
        units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
        num, unit = s, 1
        if num[-1:].lower() == "b":
            num = num[:-1]
        if num[-1:].lower() in units:
            unit = units[num[-1].lower()]
            num = num[:-1]
        try:
            val = float(num)
        except ValueError:
            val = -1
        if not val > 0 or val * unit > 9e18:
            raise ValueError(f"max_memory must be a size like 512M or 2G, got '{v}'")
        return int(val * unit)
    raise TypeError(f"max_memory: expected bytes as an int or a string like '2G', got {type(v).__name__}")


def _method_list(methods):
    if isinstance(methods, str):
        methods = list(METHODS) if methods == "all" else [methods]
    out = []
    for name in methods:
        if not isinstance(name, str):
            raise TypeError(f"methods: expected names, got {name!r}")
        if name == "all":
            return list(range(len(METHODS)))
        if name not in METHODS:
            raise ValueError(f"unknown method '{name}'; known: {', '.join(METHODS)} or 'all'")
        k = METHODS.index(name)
        if k not in out:
            out.append(k)
    if not out:
        raise ValueError("methods: none given")
    return out


def _class_list(classes):
    if classes is None:
        return None
    if isinstance(classes, (int, np.integer)) and not isinstance(classes, bool):
        return [int(classes)]
    if isinstance(classes, np.ndarray):
        if classes.ndim > 1:
            raise ValueError("classes: one class or a flat list of classes (every row gets them all)")
        classes = classes.tolist()
    out = []
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
            raise TypeError(f"classes: expected class indices (int), got {c!r}")
        out.append(int(c))
    return out


class Explanation:
    """What ``Model.explain`` returns.

    - ``logits``: (N, C) float32, the forward pass's.
    - ``classes``: (N, K) int64, the classes explained per row.
    - ``methods``: the method names, in the order asked.
    - ``maps``: {method: (N, K, h, w) float32}; (h, w) is the patch grid, or
      the image's pixels for ``lrp_full``.
    """

    def __init__(self, logits, classes, maps, methods, patch):
        self.logits = logits
        self.classes = classes
        self.maps = maps
        self.methods = tuple(methods)
        self.patch = patch

    def map(self, method=None, cls=None, row=0):
        """One (h, w) map: of `method` (default: the first asked), for class
        `cls` (default: the row's first explained class) of input row `row`."""
        if method is None:
            method = self.methods[0]
        if method not in self.maps:
            raise KeyError(f"method '{method}' was not explained; this explanation has {', '.join(self.methods)}")
        if not 0 <= row < self.classes.shape[0]:
            raise IndexError(f"row {row}: the explanation has {self.classes.shape[0]} rows")
        ks = self.classes[row].tolist()
        if cls is None:
            k = 0
        elif int(cls) in ks:
            k = ks.index(int(cls))
        else:
            raise KeyError(f"class {cls} was not explained for row {row}; explained: {ks}")
        return self.maps[method][row, k]

    def __getitem__(self, method):
        return self.maps[method]

    def __repr__(self):
        n, k = self.classes.shape
        return f"<relprop.Explanation rows={n} classes={self.classes.tolist()} methods={list(self.methods)}>"


class Model:
    """An ONNX model relprop can run and explain.

    ``Model(path, threads=None, max_memory=None, check_finite=True)``:
    `threads` sets relprop's process-wide thread count (``set_threads``);
    `max_memory` caps the bytes the model's tensors may take (an int, or
    '512M', '2G'; default as the CLI's ``--max-memory``).

    Inputs are float32 arrays (N, C, H, W) (or one image (C, H, W)). A
    model exported with a symbolic batch runs N rows in one pass (as
    ``relprop explain --batch N``; a second copy of the model is prepared
    for that batch size and kept for the next call with the same N); a
    model with a fixed batch of 1 runs the rows one by one.
    """

    def __init__(self, path, threads=None, max_memory=None, check_finite=True):
        if threads is not None:
            set_threads(threads)
        self._path = os.fspath(path)
        self._max_memory = _parse_bytes(max_memory)
        self._check_finite = bool(check_finite)
        self._base = _core.CoreModel(self._path, self._max_memory, self._check_finite, 1)
        self._batched = None  # (N, CoreModel) for the last batch size used
        self._patch = self._base.patch()

    @property
    def path(self):
        return self._path

    @property
    def input_shape(self):
        """The input of one image, e.g. (1, 3, 224, 224)."""
        return self._base.input_shape

    @property
    def dynamic_batch(self):
        """Whether the model was exported with a symbolic batch dimension."""
        return self._base.dynamic_batch

    @property
    def labels(self):
        """Class names from the model's ``relprop.labels`` metadata, or None."""
        text = self._base.metadata("relprop.labels")
        return text.split("\n") if text else None

    def metadata(self, key):
        """An ONNX metadata_props value, or None."""
        return self._base.metadata(key)

    def inspect(self, rules=None):
        """What ``relprop inspect`` reports, as a dict: inputs, outputs, op
        counts (after GELU fusion), folded nodes, attention layers, the patch
        grid and readout (``layout``; ``{"error": ...}`` when there is none),
        and how many nodes get each relevance rule under rule set `rules`
        (default "paper"), as ``rule_counts`` {"kind -> rule": n}. (A model
        with an op relprop does not support fails to load, naming the node.)"""
        return self._base.inspect(_rules_arg(rules))

    def preprocessing(self):
        """The preprocessing ``relprop explain`` uses for this model's
        images when given no options (a dict; see ``load_image``)."""
        return self._base.default_preprocess()

    def load_image(self, path, **options):
        """``load_image(path, model=self, **options)``."""
        return load_image(path, model=self, **options)

    # ---- rows ----

    def _rows(self, x):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"x: expected a numpy float32 array, got {type(x).__name__}")
        if x.dtype != np.float32:
            raise TypeError(f"x: expected dtype float32, got {x.dtype} (use .astype(numpy.float32))")
        one = self._base.input_shape
        if x.ndim == len(one) - 1:
            x = x[None]
        if x.ndim != len(one) or tuple(x.shape[1:]) != tuple(one[1:]) or x.shape[0] < 1:
            raise ValueError(f"x: shape {tuple(x.shape)}, but the model takes {tuple(one)} "
                             f"(or (N,) + {tuple(one[1:])} for N images)")
        return x

    def _core_for(self, n):
        """The CoreModel for n rows at once, or None: the rows go one by one."""
        if n == self._base.input_shape[0]:
            return self._base
        if not self._base.dynamic_batch:
            return None
        cached = self._batched
        if cached is None or cached[0] != n:
            cached = (n, _core.CoreModel(self._path, self._max_memory, self._check_finite, n))
            self._batched = cached
        return cached[1]

    def run(self, x):
        """Logits (N, C) float32 for float32 inputs x (N, C, H, W)."""
        x = self._rows(x)
        core = self._core_for(x.shape[0])
        if core is not None:
            return core.run(np.ascontiguousarray(x))
        return np.concatenate([self._base.run(np.ascontiguousarray(x[i:i + 1])) for i in range(x.shape[0])])

    def explain(self, x, classes=None, methods="transformer_attribution", rules="paper", start_layer=0,
                top_classes=1):
        """Explain x (N, C, H, W) float32.

        classes: None (each row its own top-`top_classes` predictions), a
        class index, or a list of them (every row explained for each).
        methods: a name, a list of names, or "all" (``relprop.METHODS``).
        rules: a built-in rule set ("paper", "attnlrp", "epsilon", "zplus",
        "alpha2beta1", "gamma") or a JSON rule-set file (docs/rules.md).
        Returns an ``Explanation``.
        """
        x = self._rows(x)
        cls = _class_list(classes)
        mlist = _method_list(methods)
        if not isinstance(start_layer, (int, np.integer)) or isinstance(start_layer, bool):
            raise TypeError("start_layer: expected an int")
        if not isinstance(top_classes, (int, np.integer)) or isinstance(top_classes, bool):
            raise TypeError("top_classes: expected an int")
        args = (cls, mlist, _rules_arg(rules), int(start_layer), int(top_classes))
        core = self._core_for(x.shape[0])
        if core is not None:
            logits, got, maps = core.explain(np.ascontiguousarray(x), *args)
        else:
            parts = [self._base.explain(np.ascontiguousarray(x[i:i + 1]), *args) for i in range(x.shape[0])]
            logits = np.concatenate([p[0] for p in parts])
            got = np.concatenate([p[1] for p in parts])
            maps = {k: np.concatenate([p[2][k] for p in parts]) for k in parts[0][2]}
        return Explanation(logits, got, maps, [METHODS[k] for k in mlist], self._patch)

    def __repr__(self):
        return f"<relprop.Model {self._path!r} input={self.input_shape} dynamic_batch={self.dynamic_batch}>"


def _rules_arg(rules):
    if rules is None:
        return None
    if isinstance(rules, os.PathLike):
        return os.fspath(rules)
    if not isinstance(rules, str):
        raise TypeError(f"rules: expected a rule-set name or a JSON file path, got {type(rules).__name__}")
    return rules


def _size(v, what):
    """N or (h, w), each in 1..65536 as the CLI's --resize and --crop take."""
    if v is None:
        return None
    if isinstance(v, (int, np.integer)):
        v = (int(v), int(v))
    v = tuple(int(a) for a in v)
    if len(v) != 2 or min(v) < 1 or max(v) > 65536:
        raise ValueError(f"{what}: expected N or (h, w), from 1 to 65536, got {v}")
    return v


def load_image(path, model=None, preset=None, resize=None, crop=None, interpolation=None, mean=None, std=None,
               channels=None):
    """An image file as the model's input: (1, C, H, W) float32, made by the
    same C code as ``relprop explain --image`` (torchvision's Resize,
    CenterCrop, ToTensor, Normalize with PIL's filters).

    The preprocessing comes, as the CLI's does, from: the options here
    (`preset` "vit" or "imagenet"; `resize` N (shorter side) or (h, w);
    `crop` N or (h, w); `interpolation`; `mean`, `std` three numbers) over
    the model's metadata over a resize to the model's input with
    mean = std = 0.5. Without a model, `preset` (or every option) must say
    what to do. `channels` (1 or 3) defaults to the model's input's.
    """
    if preset is not None:
        pre = _core.preset(preset)
    elif model is not None:
        pre = model.preprocessing()
    elif resize is None or mean is None or std is None:
        raise ValueError("load_image: give a model, a preset ('vit', 'imagenet'), or resize, mean and std")
    else:
        pre = {"interpolation": "bilinear"}
    pre = dict(pre)
    if resize is not None:
        if isinstance(resize, (int, np.integer)):
            pre["resize"], pre["resize_hw"] = _size(resize, "resize")[0], None
        else:
            pre["resize"], pre["resize_hw"] = None, _size(resize, "resize")
    if crop is not None:
        pre["crop"] = _size(crop, "crop")
    if interpolation is not None:
        pre["interpolation"] = interpolation
    if mean is not None:
        pre["mean"] = tuple(float(a) for a in mean)
    if std is not None:
        pre["std"] = tuple(float(a) for a in std)
    if channels is None:
        shape = model.input_shape if model is not None else None
        channels = shape[1] if shape is not None and len(shape) == 4 else 3
    if channels not in (1, 3):
        raise ValueError(f"the model takes {channels}-channel images; relprop feeds 1 (gray) or 3 (RGB)")
    return _core.load_image(os.fspath(path), pre, int(channels))


def read_image(path):
    """An image file decoded to (H, W, 3) uint8 RGB (PNG, JPEG, BMP, PPM/PGM)."""
    return _core.read_image(os.fspath(path))


def _patch_for(image, m, patch):
    if patch is not None:
        ph, pw = _size(patch, "patch")
        return ph, pw
    if not isinstance(image, np.ndarray) or not isinstance(m, np.ndarray) or image.ndim < 2 or m.ndim != 2:
        return 1, 1  # the C code names what is wrong
    h, w = image.shape[-2:]
    gh, gw = m.shape
    if gh < 1 or gw < 1 or h % gh or w % gw:
        raise ValueError(f"map {m.shape} does not divide the image {h}x{w} into whole patches; pass patch=(ph, pw)")
    return h // gh, w // gw


def overlay(image, map, patch=None):
    """The authors' notebook overlay, as ``relprop explain`` draws it: the
    map upsampled bilinearly to the image, min-max normalised, JET colours
    added to the input (the model's input tensor (1, C, H, W) or (C, H, W)
    float32, min-max scaled). Returns (H, W, 3) uint8 RGB. The patch size
    is the image size over the map's (give `patch` if that does not divide)."""
    ph, pw = _patch_for(image, map, patch)
    return _core.overlay(image, map, ph, pw)


def heatmap(map, patch=(1, 1)):
    """The map alone in JET colours, upsampled by `patch`: (h*ph, w*pw, 3) uint8."""
    ph, pw = _size(patch, "patch")
    return _core.heatmap(map, ph, pw)


def render_input(image):
    """The model input (1, C, H, W) float32 min-max scaled to (H, W, 3) uint8."""
    return _core.render_input(image)


def write_png(path, image):
    """Write (H, W, 3) or (H, W) uint8 as PNG (atomically)."""
    _core.write_png(os.fspath(path), image)


def softmax(logits):
    """Softmax over the last axis, in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def top_k(logits, k=5):
    """The k best classes of one row of logits (C,) or (1, C): a list of
    (class, logit, softmax probability), ties by class index as the CLI
    lists them."""
    row = np.asarray(logits)
    if row.ndim == 2 and row.shape[0] == 1:
        row = row[0]
    if row.ndim != 1:
        raise ValueError(f"top_k: expected one row of logits, got shape {np.asarray(logits).shape}")
    order = sorted(range(row.shape[0]), key=lambda c: (-float(row[c]), c))[:k]
    p = softmax(row)
    return [(c, float(row[c]), float(p[c])) for c in order]


def from_torch(module, example_input, path=None, **export_kwargs):
    """Export a torch module with ``torch.onnx.export`` and load it.

    `example_input` is a tensor (N, C, H, W) the module accepts. Keyword
    arguments go to ``torch.onnx.export`` (defaults: opset_version=17,
    input_names=['input'], output_names=['logits'], do_constant_folding=True,
    and a symbolic batch ``dynamic_axes={'input': {0: 'batch'}, 'logits':
    {0: 'batch'}}``). The file goes to a temporary folder that is removed
    when the model is garbage collected (give `path` to keep it). The module is put in eval mode
    for the export and left as it was. Returns a ``Model``.
    """
    try:
        import torch
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise ImportError("relprop.from_torch needs torch (Debian: python3-torch)") from e
    kw = {"opset_version": 17, "input_names": ["input"], "output_names": ["logits"], "do_constant_folding": True}
    kw.update(export_kwargs)
    if "dynamic_axes" not in export_kwargs:
        kw["dynamic_axes"] = {kw["input_names"][0]: {0: "batch"}, kw["output_names"][0]: {0: "batch"}}
    model_kwargs = {}
    for key in ("threads", "max_memory", "check_finite"):
        if key in kw:
            model_kwargs[key] = kw.pop(key)
    was_training = module.training
    module.eval()
    try:
        if path is not None:
            with torch.no_grad():
                torch.onnx.export(module, example_input, os.fspath(path), **kw)
            return Model(path, **model_kwargs)
        tmp = tempfile.TemporaryDirectory(prefix="relprop_")
        try:
            out = os.path.join(tmp.name, "model.onnx")
            with torch.no_grad():
                torch.onnx.export(module, example_input, out, **kw)
            m = Model(out, **model_kwargs)
        except BaseException:
            tmp.cleanup()
            raise
        # The file stays while the model lives: a batch of another size
        # prepares a second copy from it.
        m._tmpdir = tmp
        return m
    finally:
        module.train(was_training)
