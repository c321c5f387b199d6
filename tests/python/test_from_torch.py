"""from_torch: a plain PyTorch ViT (tools/reference.py's RefViT, random
weights, no changes to its code) exported by the package and explained,
against the same module's maps computed by tools/reference.py in float64
(the variants' tolerance, tests/variants/README.md) and against the CLI on
the exported file, bit for bit. Skipped, saying so, only where torch is not
installed."""
import copy
import os
import sys

import numpy as np
import pytest

import relprop
from conftest import ROOT, pearson, rel_error, run_cli

torch = pytest.importorskip("torch", reason="torch is not installed (Debian: python3-torch); from_torch is not tested")
sys.path.insert(0, os.path.join(ROOT, "tools"))
import reference  # noqa: E402  (tools/reference.py, needs torch)


def small_vit():
    # Seed 2: the float32 reference is within 2e-6 of float64 on this input
    # (checked below), so the 1e-3 limit measures relprop, not conditioning.
    torch.manual_seed(2)
    m = reference.RefViT(img_size=32, patch=4, dim=48, depth=2, heads=3, mlp_ratio=1.5, num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    return m, x


def test_from_torch_matches_reference(cli, tmp_path):
    module, x = small_vit()
    ref64_model, ref32_model = copy.deepcopy(module), copy.deepcopy(module)
    with torch.no_grad():
        torch_logits = module(x).numpy()
    m = relprop.from_torch(module, x[:1], path=tmp_path / "vit.onnx")
    assert m.dynamic_batch and m.input_shape == (1, 3, 32, 32)
    xn = x.numpy()
    e = m.explain(xn[:1], methods="all")
    assert np.abs(e.logits - torch_logits[:1]).max() <= 1e-4
    cls = int(e.classes[0, 0])
    assert cls == int(torch_logits[0].argmax())
    want = reference.explain(ref64_model, xn[:1], cls, dtype=torch.float64)
    cond = reference.explain(ref32_model, xn[:1], cls, dtype=torch.float32)
    for method in relprop.METHODS:
        if method == "lrp_full":
            assert pearson(e.map(method), want[method]) >= 0.99
            continue
        assert rel_error(cond[method], want[method]) <= 2e-4, f"{method}: the fixture is ill-conditioned"
        r = rel_error(e.map(method).ravel(), want[method])
        assert r <= 1e-3, f"{method}: {r:.2e} from the float64 reference"
    # the exported file through the CLI: the same bits
    np.save(tmp_path / "x.npy", xn[:1])
    run_cli(cli, "explain", "--onnx", str(tmp_path / "vit.onnx"), "--input", str(tmp_path / "x.npy"), "--method",
            "all", "-o", str(tmp_path / "out"))
    for method in relprop.METHODS:
        got = np.load(tmp_path / "out" / f"x.c{cls}.{method}.npy")
        assert got.tobytes() == e.map(method).tobytes(), method
    # a batch of two through the symbolic batch from_torch exports by default
    e2 = m.explain(xn, methods="transformer_attribution")
    assert np.abs(e2.logits - torch_logits).max() <= 1e-4
    assert e2.classes[:, 0].tolist() == torch_logits.argmax(axis=1).tolist()


def test_from_torch_temporary_file_and_mode():
    module, x = small_vit()
    module.train()
    m = relprop.from_torch(module, x[:1], opset_version=13)
    assert module.training, "from_torch left the module in eval mode"
    tmp = m.path
    assert os.path.exists(tmp)
    assert m.run(x.numpy()).shape == (2, 10)  # a second batch size reads the kept file
    del m
    import gc
    gc.collect()
    assert not os.path.exists(tmp), "the temporary export was not removed with the model"
