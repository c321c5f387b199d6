"""Maps from Python against the CLI (bit for bit, same machine, same
library) and against the paper authors' implementation (tests/oracle, with
the tolerances of tests/test_oracle_maps.c); batches (tests/variants)."""
import glob
import json
import os

import numpy as np
import pytest

import relprop
from conftest import DEMO_MODEL, ORACLE, SAMPLES, VARIANTS, pearson, rel_error, run_cli

SAMPLE_IMAGES = sorted(glob.glob(os.path.join(SAMPLES, "*.png")))


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_samples_present():
    assert len(SAMPLE_IMAGES) >= 2, f"no sample images in {SAMPLES}"


@pytest.mark.parametrize("image", SAMPLE_IMAGES, ids=os.path.basename)
def test_image_explain_equals_cli(cli, tmp_path, image):
    """An image through load_image + explain + overlay gives the CLI's maps,
    overlays, heatmaps and logits, bit for bit."""
    m = relprop.Model(DEMO_MODEL)
    x = m.load_image(image)
    assert x.shape == m.input_shape and x.dtype == np.float32
    top = [c for c, _, _ in relprop.top_k(m.run(x), 2)]
    e = m.explain(x, classes=top, methods="all")
    run_cli(cli, "explain", "--onnx", DEMO_MODEL, "--image", image, "--class", str(top[0]), "--class", str(top[1]),
            "--method", "all", "-o", str(tmp_path))
    stem = os.path.splitext(os.path.basename(image))[0]
    summary = json.load(open(tmp_path / f"{stem}.json"))
    for p in summary["predictions"]:
        assert np.float32(p["logit"]) == e.logits[0, p["class"]], f"logit of class {p['class']}"
    compared = 0
    for c in top:
        for method in relprop.METHODS:
            base = tmp_path / f"{stem}.c{c}.{method}"
            want = np.load(f"{base}.npy")
            got = e.map(method, c)
            assert same_bits(got, want), f"{stem} class {c} {method}: differs from the CLI's map"
            assert np.array_equal(relprop.overlay(x, got), relprop.read_image(f"{base}.overlay.png")), \
                f"{stem} class {c} {method}: overlay differs from the CLI's"
            patch = (1, 1) if method == "lrp_full" else m.inspect()["layout"]["patch"]
            assert np.array_equal(relprop.heatmap(got, patch), relprop.read_image(f"{base}.heatmap.png"))
            compared += 1
    assert compared == 2 * len(relprop.METHODS)


def test_tensor_explain_and_run_equal_cli(cli, tmp_path):
    """A .npy input, the top-2 classes chosen by relprop, and a plain run."""
    case = os.path.join(ORACLE, "fmnist_vit_s__timm13")
    xpath = os.path.join(case, "inputs", "input_0.npy")
    x = np.load(xpath)
    model = os.path.join(case, "model.onnx")
    logits = relprop.Model(model).run(x)  # a fresh model, as the CLI's run is
    run_cli(cli, "run", "--onnx", model, "--input", xpath, "-o", str(tmp_path / "logits.npy"))
    assert same_bits(logits, np.load(tmp_path / "logits.npy"))
    e = relprop.Model(model).explain(x, methods=["transformer_attribution", "rollout"], top_classes=2)
    run_cli(cli, "explain", "--onnx", model, "--input", xpath, "--top-classes", "2", "--method",
            "transformer_attribution", "--method", "rollout", "-o", str(tmp_path))
    assert e.classes.shape == (1, 2)
    for c in e.classes[0]:
        for method in ("transformer_attribution", "rollout"):
            want = np.load(tmp_path / f"input_0.c{c}.{method}.npy")
            assert same_bits(e.map(method, c), want), f"class {c} {method}"


ORACLE_CASES = sorted(d for d in glob.glob(os.path.join(ORACLE, "*")) if os.path.isdir(d))


def test_oracle_cases_present():
    assert len(ORACLE_CASES) == 4, ORACLE_CASES


@pytest.mark.parametrize("case", ORACLE_CASES, ids=os.path.basename)
def test_oracle(case):
    """Every method against the authors' implementation: patch maps within
    1e-2 of its float32 maps relative to their largest magnitude and within
    1e-3 of its float64 maps; lrp_full correlates with float64 at r >= 0.99;
    logits within 1e-4."""
    meta = json.load(open(os.path.join(case, "meta.json")))
    m = relprop.Model(os.path.join(case, "model.onnx"))
    compared = 0
    for inp in meta["inputs"]:
        k = inp["index"]
        classes = [c for c in inp["explained_classes"]
                   if os.path.isdir(os.path.join(case, "expected", f"input_{k}", f"class_{c}"))]
        if not classes:
            continue
        x = np.load(os.path.join(case, "inputs", f"input_{k}.npy"))
        e = m.explain(x, classes=classes, methods="all")
        for c in classes:
            d = os.path.join(case, "expected", f"input_{k}", f"class_{c}")
            want_logits = np.load(os.path.join(d, "logits.npy"))
            assert np.abs(e.logits - want_logits).max() <= 1e-4
            for method in relprop.METHODS:
                got = e.map(method, c)
                if method == "lrp_full":
                    r = pearson(got, np.load(os.path.join(d, "f64", "lrp_full.npy")))
                    assert r >= 0.99, f"input {k} class {c} lrp_full: pearson {r:.4f}"
                else:
                    r32 = rel_error(got, np.load(os.path.join(d, f"{method}.npy")))
                    r64 = rel_error(got, np.load(os.path.join(d, "f64", f"{method}.npy")))
                    assert r32 <= 1e-2, f"input {k} class {c} {method}: {r32:.3e} vs the float32 reference"
                    assert r64 <= 1e-3, f"input {k} class {c} {method}: {r64:.3e} vs the float64 reference"
                compared += 1
    assert compared > 0


@pytest.mark.parametrize("variant", ["dynamic_batch_op13", "dynamic_batch_op17"])
def test_batch(cli, tmp_path, variant):
    """A symbolic-batch model explains a batch of 2 in one pass, each row for
    its own top class: equal to `relprop explain --batch 2` bit for bit, to
    the reference within 1e-3 (tests/variants/README.md), and to each row
    alone within float rounding (tests/test_variants.c's limits)."""
    d = os.path.join(VARIANTS, variant)
    model = os.path.join(d, "model.onnx")
    m = relprop.Model(model)
    assert m.dynamic_batch and m.input_shape[0] == 1
    x = np.load(os.path.join(d, "input_batch2.npy"))
    e = m.explain(x, methods="all")
    assert e.classes.shape == (2, 1) and e.logits.shape == (2, 10)
    assert np.array_equal(e.classes[:, 0], e.logits.argmax(axis=1))
    rows = []
    for b in range(2):
        np.save(tmp_path / f"row{b}.npy", x[b:b + 1])
        rows += ["--input", str(tmp_path / f"row{b}.npy")]
    run_cli(cli, "explain", "--onnx", model, *rows, "--batch", "2", "--method", "all", "-o", str(tmp_path))
    for b in range(2):
        c = int(e.classes[b, 0])
        alone = m.explain(x[b:b + 1], methods="all")
        assert alone.classes[0, 0] == c
        for method in relprop.METHODS:
            got = e.map(method, c, row=b)
            assert same_bits(got, np.load(tmp_path / f"row{b}.c{c}.{method}.npy")), f"row {b} {method} vs CLI"
            limit = 1e-3 if method == "lrp_full" else 1e-5
            assert rel_error(got, alone.map(method, c)) <= limit, f"row {b} {method}: batch 2 vs batch 1"
        for method in ("transformer_attribution", "rollout"):
            want = np.load(os.path.join(d, f"expected_batch2_{method}_{b}_class_{c}.npy"))
            assert rel_error(e.map(method, c, row=b), want) <= 1e-3
    # run() on the batch: the same logits as the explanation's forward pass
    assert np.abs(m.run(x) - e.logits).max() <= 1e-5 * np.abs(e.logits).max()
    # another batch size prepares another copy; the batch of 2 still works after it
    x3 = np.concatenate([x, x[:1]])
    e3 = m.explain(x3, classes=[1, 2], methods="rollout")
    assert e3.maps["rollout"].shape == (3, 2, 8, 8)
    assert rel_error(e3.maps["rollout"][2], e3.maps["rollout"][0]) <= 1e-5  # the same row, elsewhere in the batch
    assert same_bits(m.explain(x, methods="all").maps["lrp_full"], e.maps["lrp_full"])


def test_fixed_batch_rows_one_by_one():
    """A model with a fixed batch of 1 takes N rows one at a time: the same
    bits as N separate calls; given classes apply to every row."""
    m = relprop.Model(os.path.join(VARIANTS, "distilled_op17", "model.onnx"))
    assert not m.dynamic_batch
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3,) + m.input_shape[1:]).astype(np.float32)
    e = m.explain(x, classes=[2, 5], methods=["transformer_attribution", "lrp_full"])
    assert e.classes.tolist() == [[2, 5]] * 3
    logits = m.run(x)
    for b in range(3):
        one = m.explain(x[b:b + 1], classes=[2, 5], methods=["transformer_attribution", "lrp_full"])
        for method in one.methods:
            assert same_bits(e.maps[method][b], one.maps[method][0])
        assert same_bits(logits[b:b + 1], m.run(x[b:b + 1]))
    # one image may also be given without its batch axis
    assert same_bits(m.explain(x[0], classes=2).map(), e.map(cls=2, row=0))
