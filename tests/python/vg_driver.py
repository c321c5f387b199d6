"""Every entry point of the package a few times, for tests/python/valgrind.sh
(memcheck over the extension and the library): models, preprocessing, runs,
explanations (one row and a batch), rendering, PNG, and the error paths."""
import os
import sys
import tempfile

import numpy as np

import relprop

root = sys.argv[1]
model = os.path.join(root, "models", "fmnist_vit.onnx")
variant = os.path.join(root, "tests", "variants", "dynamic_batch_op17")
out = tempfile.mkdtemp(prefix="relprop_vg_")
for _ in range(1):
    m = relprop.Model(model, threads=2)
    x = m.load_image(os.path.join(root, "samples", "coat_tshirt.png"))
    logits = m.run(x)
    e = m.explain(x, classes=[int(logits.argmax()), 0], methods="all")
    relprop.write_png(os.path.join(out, "o.png"), relprop.overlay(x, e.map()))
    relprop.heatmap(e.map("lrp_full"))
    relprop.render_input(x)
    relprop.read_image(os.path.join(out, "o.png"))
    relprop.load_image(os.path.join(root, "samples", "dress_sandal.png"), preset="vit")
    m.inspect(rules="epsilon")
    b = relprop.Model(os.path.join(variant, "model.onnx"))
    xb = np.load(os.path.join(variant, "input_batch2.npy"))
    b.explain(xb, methods=["transformer_attribution", "lrp_full"])
    b.run(np.concatenate([xb, xb[:1]]))
    for bad in (lambda: relprop.Model(os.path.join(out, "missing.onnx")),
                lambda: m.explain(x, classes=99),
                lambda: m.explain(x, rules="no_such_rules"),
                lambda: m.run(x.astype(np.float64)),
                lambda: m.run(np.zeros((1, 3, 8, 8), np.float32)),
                lambda: relprop.load_image(os.path.join(out, "missing.png"), model=m),
                lambda: relprop.overlay(x, np.zeros((7, 7), np.float32)),
                lambda: relprop.Model(os.path.join(root, "tests", "data", "bad", "unsupported_op.onnx"))):
        try:
            bad()
        except (relprop.Error, TypeError, ValueError):
            pass
        else:
            raise SystemExit("an error path did not raise")
    del m, b, e
print("vg_driver: done")
