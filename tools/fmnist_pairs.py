#!/usr/bin/python3
"""Deterministic "fmnist pairs" canvases: two Fashion-MNIST items of different
classes, each tinted with a random colour and placed in its own
non-overlapping square box on a dark, lightly noisy RGB canvas.

    ds = FmnistPairs('test', size=64, seed=2021)
    image, labels, masks = ds[i]   # float32 [3,S,S] in [0,1], int64 (2,), uint8 (2,S,S)

Canvas i depends only on (split, size, seed, i).  The train split draws items
from the Debian train-*-ubyte.gz files, the test split from t10k-*-ubyte.gz.

CLI (writes PNGs plus DIR/LIST.csv with header image,class,mask; one row per
(image, item), paths relative to DIR, class = integer class index 0..9):

    /usr/bin/python3 tools/fmnist_pairs.py --split test --count 100 --out DIR
"""
import argparse
import gzip
import os

import numpy as np
from PIL import Image

DATA_DIR = "/usr/share/datasets/fashion-mnist"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
           "Shirt", "Sneaker", "Bag", "Ankle boot"]

_CACHE = {}


def load_idx(split, data_dir=DATA_DIR):
    """(images uint8 [N,28,28], labels int64 [N]) from the idx .gz files."""
    key = (split, data_dir)
    if key not in _CACHE:
        pre = {"train": "train", "test": "t10k"}[split]
        with gzip.open(os.path.join(data_dir, pre + "-images-idx3-ubyte.gz")) as f:
            buf = f.read()
        n = int.from_bytes(buf[4:8], "big")
        imgs = np.frombuffer(buf, np.uint8, offset=16).reshape(n, 28, 28)
        with gzip.open(os.path.join(data_dir, pre + "-labels-idx1-ubyte.gz")) as f:
            buf = f.read()
        labels = np.frombuffer(buf, np.uint8, offset=8).astype(np.int64)
        assert len(labels) == n
        _CACHE[key] = (imgs, labels)
    return _CACHE[key]


class FmnistPairs:
    """Two-item multi-label canvases.  Indexable; length is nominal (`length`)."""

    def __init__(self, split="train", size=64, seed=0, length=None,
                 min_box=None, max_box=None, noise=0.1, mask_thresh=0.15):
        assert split in ("train", "test")
        self.split, self.size, self.seed = split, int(size), int(seed)
        self.imgs, self.labels = load_idx(split)
        self.length = length if length is not None else len(self.labels)
        s = self.size
        self.min_box = min_box if min_box is not None else int(round(s * 24 / 64))
        self.max_box = max_box if max_box is not None else int(round(s * 32 / 64))
        self.noise = noise
        self.mask_thresh = mask_thresh
        self.by_class = [np.flatnonzero(self.labels == c) for c in range(10)]

    def __len__(self):
        return self.length

    def sample(self, idx):
        """Full description of canvas idx (dict) plus image/labels/masks."""
        rng = np.random.default_rng([self.seed, int(idx), 0x5eed])
        S = self.size
        c0, c1 = rng.choice(10, size=2, replace=False)
        srcs = [int(rng.choice(self.by_class[c])) for c in (c0, c1)]
        # non-overlapping square place boxes: rejection-sample the pair
        for _try in range(10000):
            boxes = []
            for _ in range(2):
                b = int(rng.integers(self.min_box, self.max_box + 1))
                x0 = int(rng.integers(0, S - b + 1))
                y0 = int(rng.integers(0, S - b + 1))
                boxes.append((x0, y0, x0 + b, y0 + b))
            p, q = boxes
            if p[0] >= q[2] or q[0] >= p[2] or p[1] >= q[3] or q[1] >= p[3]:
                break
        else:
            raise RuntimeError("placement failed")
        colours = []
        for _ in range(2):
            col = rng.uniform(0.0, 1.0, size=3)
            col = col / max(col.max(), 1e-6) * rng.uniform(0.7, 1.0)  # bright enough
            colours.append(col.astype(np.float32))
        canvas = rng.uniform(0.0, self.noise, size=(3, S, S)).astype(np.float32)
        masks = np.zeros((2, S, S), np.uint8)
        bboxes = []
        for k, (src, box, col) in enumerate(zip(srcs, boxes, colours)):
            x0, y0, x1, y1 = box
            b = x1 - x0
            item = Image.fromarray(self.imgs[src]).resize((b, b), Image.BILINEAR)
            v = np.asarray(item, np.float32) / 255.0
            region = canvas[:, y0:y1, x0:x1]
            canvas[:, y0:y1, x0:x1] = np.maximum(region, col[:, None, None] * v[None])
            m = v > self.mask_thresh
            masks[k, y0:y1, x0:x1] = m
            ys, xs = np.nonzero(m)
            bboxes.append((x0 + int(xs.min()), y0 + int(ys.min()),
                           x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1) if len(xs) else box)
        canvas = np.clip(canvas, 0.0, 1.0)
        labels = np.array([c0, c1], np.int64)
        info = dict(classes=[int(c0), int(c1)], place_boxes_xyxy=boxes, bboxes_xyxy=bboxes,
                    colours_rgb=[c.tolist() for c in colours], fmnist_source_indices=srcs)
        return canvas, labels, masks, info

    def __getitem__(self, idx):
        img, labels, masks, _ = self.sample(idx)
        return img, labels, masks

    def batch(self, indices):
        """Stacked (images [B,3,S,S], labels [B,2], masks [B,2,S,S])."""
        out = [self[i] for i in indices]
        return (np.stack([o[0] for o in out]), np.stack([o[1] for o in out]),
                np.stack([o[2] for o in out]))


def to_png_u8(img):
    return (np.clip(img, 0, 1) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", default="test", choices=["train", "test"])
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--start", type=int, default=0, help="first canvas index")
    ap.add_argument("--seed", type=int, default=2021)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    ds = FmnistPairs(a.split, size=a.size, seed=a.seed)
    rows = ["image,class,mask"]
    for i in range(a.start, a.start + a.count):
        img, labels, masks = ds[i]
        name = "%s_%d_%06d" % (a.split, a.seed, i)
        Image.fromarray(to_png_u8(img), "RGB").save(os.path.join(a.out, name + ".png"))
        for k in range(2):
            mname = "%s_mask%d.png" % (name, k)
            Image.fromarray(masks[k] * 255, "L").save(os.path.join(a.out, mname))
            rows.append("%s.png,%d,%s" % (name, int(labels[k]), mname))
    with open(os.path.join(a.out, "LIST.csv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    print("wrote %d canvases (%d rows) to %s" % (a.count, len(rows) - 1, a.out))


if __name__ == "__main__":
    main()
