"""The package's surface: inspect, preprocessing, rendering, and errors —
relprop's own messages as relprop.Error, bad arguments as TypeError or
ValueError, never a crash."""
import os

import numpy as np
import pytest

import relprop
from conftest import DEMO_MODEL, ORACLE, ROOT, SAMPLES, VARIANTS

TIMM17 = os.path.join(ORACLE, "fmnist_vit_s__timm17")


@pytest.fixture(scope="module")
def demo():
    return relprop.Model(DEMO_MODEL)


def test_inspect(demo):
    info = demo.inspect()
    assert info["inputs"] == [{"name": "input", "dtype": "float32", "shape": (1, 3, 64, 64)}]
    assert info["outputs"][0]["shape"] == (1, 10)
    assert len(info["attention"]) == 4 and all(a["heads"] == 4 and a["tokens"] == 65 for a in info["attention"])
    lay = info["layout"]
    assert lay["grid"] == (8, 8) and lay["patch"] == (8, 8) and lay["prefix_tokens"] == 1
    assert lay["readout"] == "token row" and lay["readout_rows"] == [(0, 1.0)]
    assert info["rules"] == "paper" and info["rule_counts"]["first_conv -> zb"] == 1
    assert sum(info["ops"].values()) == info["nodes"]
    eps = demo.inspect(rules="epsilon")["rule_counts"]
    assert not any(k.startswith("linear -> alpha_beta") for k in eps), eps
    assert demo.labels[4] == "Coat" and len(demo.labels) == 10


def test_inspect_unsupported_layout():
    """The windowed fixture's attention is refused when loading, naming a Softmax node."""
    with pytest.raises(relprop.Error) as ei:
        m = relprop.Model(os.path.join(VARIANTS, "unsupported_windowed", "model.onnx"))
        m.explain(np.zeros(m.input_shape, np.float32))
    assert "Softmax" in str(ei.value) or "window" in str(ei.value).lower()


def test_load_image_options(demo):
    img = os.path.join(SAMPLES, "coat_tshirt.png")
    x = relprop.load_image(img, model=demo)
    assert x.shape == (1, 3, 64, 64) and x.dtype == np.float32
    assert demo.preprocessing()["source"] == "model metadata"
    # the vit preset resizes to 224 and normalises with 0.5: the pixel values map into [-1, 1]
    v = relprop.load_image(img, preset="vit")
    assert v.shape == (1, 3, 224, 224) and v.min() >= -1 and v.max() <= 1
    g = relprop.load_image(img, model=demo, channels=1)
    assert g.shape == (1, 1, 64, 64)
    n = relprop.load_image(img, resize=(32, 48), mean=(0, 0, 0), std=(1, 1, 1), interpolation="nearest")
    assert n.shape == (1, 3, 32, 48) and n.min() >= 0 and n.max() <= 1
    rgb = relprop.read_image(img)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3


def test_overlay_and_png(demo, tmp_path):
    x = demo.load_image(os.path.join(SAMPLES, "coat_tshirt.png"))
    e = demo.explain(x, methods=["transformer_attribution", "lrp_full"])
    o = relprop.overlay(x, e.map())
    assert o.shape == (64, 64, 3) and o.dtype == np.uint8
    assert np.array_equal(o, relprop.overlay(x[0], e.map(), patch=8))
    assert relprop.overlay(x, e.map("lrp_full")).shape == (64, 64, 3)
    assert relprop.render_input(x).shape == (64, 64, 3)
    relprop.write_png(tmp_path / "o.png", o)
    assert np.array_equal(relprop.read_image(tmp_path / "o.png"), o)
    # a constant map counts as all zeros (the notebook's min-max of a flat map)
    flat = relprop.overlay(x, np.ones((8, 8), np.float32))
    assert np.array_equal(flat, relprop.overlay(x, np.zeros((8, 8), np.float32)))


def test_explanation_object(demo):
    x = demo.load_image(os.path.join(SAMPLES, "coat_tshirt.png"))
    e = demo.explain(x, classes=np.array([4, 0]), methods=["rollout", "transformer_attribution", "rollout"])
    assert e.methods == ("rollout", "transformer_attribution")
    assert e.classes.tolist() == [[4, 0]] and e.logits.shape == (1, 10)
    assert e["rollout"].shape == (1, 2, 8, 8)
    assert np.array_equal(e.map("rollout", 0), e.maps["rollout"][0, 1])
    with pytest.raises(KeyError, match="not explained"):
        e.map("lrp_full")
    with pytest.raises(KeyError, match="class 3"):
        e.map("rollout", 3)
    with pytest.raises(IndexError):
        e.map("rollout", 4, row=1)
    top = relprop.top_k(e.logits, 3)
    assert [c for c, _, _ in top] == list(np.argsort(-e.logits[0], kind="stable")[:3])
    assert abs(sum(p for _, _, p in relprop.top_k(e.logits, 10)) - 1) < 1e-12
    # start_layer and rules reach the library: different maps, same logits
    e2 = demo.explain(x, classes=4, start_layer=3)
    e3 = demo.explain(x, classes=4, rules="epsilon")
    base = demo.explain(x, classes=4)
    assert not np.array_equal(e2.map(), base.map()) and not np.array_equal(e3.map(), base.map())
    assert np.array_equal(e3.logits, base.logits)


def error_of(fn, *args, **kw):
    with pytest.raises(relprop.Error) as ei:
        fn(*args, **kw)
    return ei.value


def test_errors_from_relprop(demo, tmp_path):
    e = error_of(relprop.Model, tmp_path / "missing.onnx")
    assert e.status == "io" and "missing.onnx" in str(e)
    (tmp_path / "junk.onnx").write_bytes(b"not a model at all" * 10)
    e = error_of(relprop.Model, tmp_path / "junk.onnx")
    assert e.status == "format" and "junk.onnx" in str(e)
    e = error_of(relprop.Model, DEMO_MODEL, max_memory=1024)
    assert "memory limit" in str(e) and "fmnist_vit.onnx" in str(e)
    e = error_of(relprop.Model, os.path.join(ROOT, "tests", "data", "bad", "unsupported_op.onnx"))
    assert e.status == "unsupported" and "unsupported_op.onnx" in str(e)
    x = demo.load_image(os.path.join(SAMPLES, "coat_tshirt.png"))
    e = error_of(demo.explain, x, classes=10)
    assert "10" in str(e)
    e = error_of(demo.explain, x, rules="no_such_rules")
    assert "no_such_rules" in str(e)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    e = error_of(demo.run, bad)
    assert "NaN" in str(e) or "finite" in str(e)
    e = error_of(relprop.load_image, tmp_path / "none.png", model=demo)
    assert "none.png" in str(e)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    e = error_of(relprop.load_image, tmp_path / "broken.png", model=demo)
    assert "broken.png" in str(e)
    e = error_of(relprop.load_image, os.path.join(SAMPLES, "coat_tshirt.png"), preset="nope")
    assert "nope" in str(e)
    e = error_of(relprop.write_png, tmp_path / "no" / "such" / "dir.png", np.zeros((4, 4, 3), np.uint8))
    assert e.status == "io"
    assert isinstance(e, RuntimeError)
    # the model still works after every failure
    assert demo.run(x).shape == (1, 10)


def test_bad_arguments(demo):
    x = np.zeros(demo.input_shape, np.float32)
    with pytest.raises(TypeError, match="float32"):
        demo.run(x.astype(np.float64))
    with pytest.raises(TypeError, match="numpy"):
        demo.run(x.tolist())
    with pytest.raises(ValueError, match=r"\(1, 3, 64, 64\)"):
        demo.run(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(ValueError, match="shape"):
        demo.explain(np.zeros((64, 64), np.float32))
    with pytest.raises(ValueError, match="unknown method"):
        demo.explain(x, methods="gradcam")
    with pytest.raises(ValueError, match="empty"):
        demo.explain(x, classes=[])
    with pytest.raises(ValueError, match="class -1"):
        demo.explain(x, classes=-1)
    with pytest.raises(TypeError):
        demo.explain(x, classes=[1.5])
    with pytest.raises(TypeError):
        demo.explain(x, classes=[[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="start_layer"):
        demo.explain(x, start_layer=-1)
    with pytest.raises(TypeError):
        demo.explain(x, rules=3)
    with pytest.raises(ValueError, match="max_memory"):
        relprop.Model(DEMO_MODEL, max_memory="lots")
    with pytest.raises(ValueError, match="patch"):
        relprop.overlay(x, np.zeros((7, 7), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        relprop.overlay(x, np.zeros((1, 8, 8), np.float32))
    with pytest.raises(TypeError, match="float32"):
        relprop.overlay(x, np.zeros((8, 8), np.float64))
    with pytest.raises(ValueError, match="one image"):
        relprop.overlay(np.zeros((2, 3, 64, 64), np.float32), np.zeros((8, 8), np.float32))
    with pytest.raises(TypeError, match="uint8"):
        relprop.write_png("/tmp/never.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="non-empty"):
        relprop.write_png("/tmp/never.png", np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="give a model"):
        relprop.load_image(os.path.join(SAMPLES, "coat_tshirt.png"))
    with pytest.raises(ValueError, match="65536"):
        relprop.load_image(os.path.join(SAMPLES, "coat_tshirt.png"), model=demo, resize=1 << 40)
    with pytest.raises(ValueError, match="resize"):
        relprop.load_image(os.path.join(SAMPLES, "coat_tshirt.png"), model=demo, resize=(0, 5))
    with pytest.raises(ValueError, match="interpolation"):
        relprop.load_image(os.path.join(SAMPLES, "coat_tshirt.png"), model=demo, interpolation="lanczos")
    with pytest.raises(ValueError, match="std"):
        relprop.load_image(os.path.join(SAMPLES, "coat_tshirt.png"), model=demo, std=(1, 0, 1))
    with pytest.raises(ValueError, match="channel"):
        relprop.load_image(os.path.join(SAMPLES, "coat_tshirt.png"), model=demo, channels=4)
    # a non-contiguous float32 view is fine (copied to C order)
    xs = np.zeros((1, 3, 64, 128), np.float32)[..., ::2]
    assert np.array_equal(demo.run(xs), demo.run(np.ascontiguousarray(xs)))


def test_set_threads():
    assert relprop.set_threads(1) == 1
    assert relprop.set_threads(None) >= 1


def test_map_defaults(demo):
    x = demo.load_image(os.path.join(SAMPLES, "dress_sandal.png"))
    e = demo.explain(x, methods=["rollout", "lrp_full"], top_classes=2)
    assert np.array_equal(e.map(), e.maps["rollout"][0, 0])
    assert e.classes[0].tolist() == [c for c, _, _ in relprop.top_k(e.logits, 2)]
