#!/usr/bin/python3
"""The authors' notebook flow with relprop's Python package: load the model,
preprocess an image, print the top-5, explain the two best classes, and save
their overlays as PNG (README, "From Python").

    /usr/bin/python3 examples/python/notebook.py [IMAGE] [-o OUT_DIR]

Needs the package importable (`pip install --no-build-isolation ./python`,
or PYTHONPATH=build/python after `make test-python`)."""
import argparse
import os

import numpy as np

import relprop

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("image", nargs="?", default=os.path.join(ROOT, "samples", "coat_tshirt.png"))
ap.add_argument("-o", "--out", default="python_out")
args = ap.parse_args()

# 1. the model (the shipped Fashion-MNIST ViT) and its class names
model = relprop.Model(os.path.join(ROOT, "models", "fmnist_vit.onnx"))
labels = model.labels

# 2. the image, preprocessed as `relprop explain --image` does (the model's metadata)
x = model.load_image(args.image)  # (1, 3, 64, 64) float32

# 3. the top-5
logits = model.run(x)
top = relprop.top_k(logits, 5)
for rank, (c, logit, p) in enumerate(top, 1):
    print(f"{rank}. {labels[c]:<12} logit {logit:7.3f}  p {p:.3f}")

# 4. explain the two best classes (one forward pass, one backward pass per class)
classes = [c for c, _, _ in top[:2]]
e = model.explain(x, classes=classes, methods="transformer_attribution")

# 5. the overlays, as the notebook shows them, saved as PNG; and a strip: input | class 1 | class 2
os.makedirs(args.out, exist_ok=True)
tiles = [relprop.render_input(x)]
for c in classes:
    rgb = relprop.overlay(x, e.map("transformer_attribution", c))  # (64, 64, 3) uint8
    path = os.path.join(args.out, f"{labels[c].replace('/', '_')}.png")
    relprop.write_png(path, rgb)
    print(f"wrote {path}")
    tiles.append(rgb)
strip = np.concatenate(tiles, axis=1).repeat(4, axis=0).repeat(4, axis=1)  # 4x, nearest neighbour
relprop.write_png(os.path.join(args.out, "strip.png"), strip)
print(f"wrote {os.path.join(args.out, 'strip.png')}")
