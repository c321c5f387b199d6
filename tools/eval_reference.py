#!/usr/bin/python3
"""numpy reference for `relprop eval` (docs/method.md §7).

Recomputes every metric of `relprop eval --dump DUMP` from what relprop
dumped -- the maps as explained (<stem>.c<C>.<method>.map.npy) and the
perturbation hits (hits.csv; they need the model's forward passes, which
numpy cannot run) -- and from the masks named in LIST.csv, read with PIL:

    /usr/bin/python3 tools/eval_reference.py --data LIST.csv --dump DUMP [--out ref.json]
                                             [--compare results.json] [--tol 1e-6]

It also upsamples every map itself and checks relprop's pixel map
(<stem>.c<C>.<method>.pixmap.npy) against it. Definitions, written
independently of the C (src/methods/eval_metrics.c):

  pixel map     torch's interpolate(scale_factor=patch, mode='bilinear',
                align_corners=False) in float32; lrp_full maps are pixels already
  AUC           100 * np.trapz(mean hit curve, dx=0.1), x = 0, 0.1, ..., 0.9
  segmentation  m = min-max normalised pixel map (float32; zeros if constant),
                foreground = m > mean(m); pixel accuracy and per-class IoU from
                counts summed over all masked rows; mIoU = mean of the two IoUs;
                mAP = mean over rows of (AP(m, mask) + AP(1 - m, 1 - mask)) / 2;
                map_pooled = mean over rows of one AP of [m, 1 - m] against
                [mask, 1 - mask] (the paper script's get_ap_scores);
                AP as sklearn.metrics.average_precision_score (re-implemented
                here from sklearn's _binary_clf_curve / precision_recall_curve,
                since sklearn is not installed on CI)
  specificity   rows of images with >= 2 masked objects: positive relevance
                max(pixmap, 0); s_t = share inside the explained mask, s_o =
                share inside the other masks (outside the explained one);
                specificity = mean of s_t / (s_t + s_o) (1/2 if both are 0);
                pointing = mean of [mask[argmax pixmap] != 0] (first on ties)
All reported values are percentages. Masks must already have the model's
input size (the reference does not resize).
"""
import argparse
import csv
import json
import os
import sys

import numpy as np
from PIL import Image

STEPS = 10


def torch_bilinear_taps(n_in, factor):
    """(i0, i1, w0, w1) per output index, as torch 1.13 computes them."""
    n_out = n_in * factor
    scale = float(np.float32(1.0 / factor))
    i0 = np.zeros(n_out, np.int64)
    i1 = np.zeros(n_out, np.int64)
    w1 = np.zeros(n_out, np.float32)
    for d in range(n_out):
        src = max(scale * (d + 0.5) - 0.5, 0.0)
        a = min(int(np.floor(src)), n_in - 1)
        lam = np.float32(min(max(src - a, 0.0), 1.0))
        i0[d], i1[d], w1[d] = a, a + 1 if a < n_in - 1 else a, lam
    return i0, i1, np.float32(1.0) - w1, w1


def upsample(m, fh, fw):
    """float32 bilinear upsampling: along x within the two source rows, then along y."""
    m = m.astype(np.float32)
    yi0, yi1, yw0, yw1 = torch_bilinear_taps(m.shape[0], fh)
    xi0, xi1, xw0, xw1 = torch_bilinear_taps(m.shape[1], fw)
    rows = m[:, xi0] * xw0[None, :] + m[:, xi1] * xw1[None, :]  # (gh, W) float32
    return rows[yi0, :] * yw0[:, None] + rows[yi1, :] * yw1[:, None]


def average_precision(y_true, y_score):
    """sklearn's average_precision_score for binary labels (nan -> 0, as the paper's nan_to_num)."""
    y_true = np.asarray(y_true).astype(bool).ravel()
    y_score = np.asarray(y_score).ravel()
    if not y_true.any():
        return 0.0
    desc = np.argsort(y_score, kind="mergesort")[::-1]
    y_score, y_true = y_score[desc], y_true[desc]
    distinct = np.where(np.diff(y_score))[0]
    thr = np.r_[distinct, y_true.size - 1]
    tps = np.cumsum(y_true, dtype=np.float64)[thr]
    fps = 1 + thr - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    precision = np.r_[precision[::-1], 1.0]
    recall = np.r_[recall[::-1], 0.0]
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def normalise(p):
    lo, hi = p.min(), p.max()
    rng = np.float32(hi - lo)
    if rng > 0:
        return ((p - lo) / rng).astype(np.float32)
    return np.zeros_like(p, dtype=np.float32)


def read_list(path):
    folder = os.path.dirname(path)
    images = {}  # stem -> {cls: mask path or None}
    with open(path, newline="") as f:
        r = csv.reader(f)
        header = next(r)
        assert header == ["image", "class", "mask"], "%s: header %r" % (path, header)
        for row in r:
            if not row:
                continue
            stem = os.path.splitext(os.path.basename(row[0]))[0]
            images.setdefault(stem, {})[int(row[1])] = os.path.join(folder, row[2]) if row[2] else None
    return images


def load_mask(path):
    return np.asarray(Image.open(path).convert("L")) > 0


def compute(list_path, dump):
    images = read_list(list_path)
    hits = {}  # (stem, cls, method) -> {"pos": [...], "neg": [...]}
    methods = []
    with open(os.path.join(dump, "hits.csv"), newline="") as f:
        r = csv.DictReader(f)
        for row in r:
            key = (row["stem"], int(row["class"]), row["method"])
            if row["method"] not in methods:
                methods.append(row["method"])
            hits.setdefault(key, {})[row["direction"]] = [int(row["h%d" % s]) for s in range(STEPS)]
    masks = {stem: {c: (load_mask(p) if p else None) for c, p in rows.items()} for stem, rows in images.items()}
    worst_pix = 0.0
    out = []
    for method in methods:
        keys = [k for k in hits if k[2] == method]
        pos = np.array([hits[k]["pos"] for k in keys], np.float64)
        neg = np.array([hits[k]["neg"] for k in keys], np.float64)
        curve_pos, curve_neg = pos.mean(axis=0), neg.mean(axis=0)
        inter, union = np.zeros(2, np.int64), np.zeros(2, np.int64)
        correct = labeled = 0
        ap_fg, ap_bg, ap_mean, ap_pool, spec, point, s_t_sum, s_o_sum = [], [], [], [], [], [], [], []
        for stem, cls, _ in keys:
            base = os.path.join(dump, "%s.c%d.%s" % (stem, cls, method))
            raw = np.load(base + ".map.npy")
            pix_c = np.load(base + ".pixmap.npy")
            H, W = pix_c.shape
            pix = raw.astype(np.float32) if raw.shape == (H, W) else upsample(raw, H // raw.shape[0], W // raw.shape[1])
            worst_pix = max(worst_pix, float(np.max(np.abs(pix - pix_c))))
            mask = masks[stem][cls]
            if mask is None:
                continue
            assert mask.shape == (H, W), "%s: mask %r, map %r" % (stem, mask.shape, (H, W))
            m = normalise(pix)
            # In float64 on both sides, as eval_metrics.c compares: numpy
            # would round a float64 scalar to float32 against a float32
            # array, and a pixel within half a float32 step of the mean
            # would then fall on the other side.
            fg = m.astype(np.float64) > m.astype(np.float64).mean()
            correct += int(np.sum(fg == mask))
            labeled += mask.size
            for c, (p, t) in enumerate([(~fg, ~mask), (fg, mask)]):
                i = int(np.sum(p & t))
                inter[c] += i
                union[c] += int(p.sum()) + int(t.sum()) - i
            a1 = average_precision(mask, m)
            a0 = average_precision(~mask, np.float32(1.0) - m)
            ap_fg.append(a1)
            ap_bg.append(a0)
            ap_mean.append((a1 + a0) / 2)
            ap_pool.append(average_precision(np.r_[mask.ravel(), ~mask.ravel()],
                                             np.r_[m.ravel(), (np.float32(1.0) - m).ravel()]))
            others = [mm for c2, mm in masks[stem].items() if c2 != cls and mm is not None]
            if others:
                pr = np.maximum(pix.astype(np.float64), 0)
                total = pr.sum()
                o = np.logical_or.reduce(others) & ~mask
                s_t = pr[mask].sum() / total if total > 0 else 0.0
                s_o = pr[o].sum() / total if total > 0 else 0.0
                s_t_sum.append(s_t)
                s_o_sum.append(s_o)
                spec.append(s_t / (s_t + s_o) if s_t + s_o > 0 else 0.5)
                point.append(float(mask.ravel()[int(np.argmax(pix.ravel()))]))
        rec = dict(method=method,
                   neg_auc=100 * float(np.trapz(curve_neg, dx=0.1)),
                   pos_auc=100 * float(np.trapz(curve_pos, dx=0.1)),
                   curve_pos=curve_pos.tolist(), curve_neg=curve_neg.tolist(),
                   n_perturbation=len(keys), n_segmentation=len(ap_mean), n_specificity=len(spec))
        seg = labeled > 0
        iou = 100.0 * inter / np.maximum(union, 1) if seg else None
        rec.update(pixel_acc=100.0 * correct / labeled if seg else None,
                   miou=float(iou.mean()) if seg else None,
                   map=100 * float(np.mean(ap_mean)) if seg else None,
                   iou_background=float(iou[0]) if seg else None,
                   iou_foreground=float(iou[1]) if seg else None,
                   ap_foreground=100 * float(np.mean(ap_fg)) if seg else None,
                   ap_background=100 * float(np.mean(ap_bg)) if seg else None,
                   map_pooled=100 * float(np.mean(ap_pool)) if seg else None,
                   specificity=100 * float(np.mean(spec)) if spec else None,
                   pointing=100 * float(np.mean(point)) if spec else None,
                   explained_share=100 * float(np.mean(s_t_sum)) if spec else None,
                   others_share=100 * float(np.mean(s_o_sum)) if spec else None)
        out.append(rec)
    return dict(methods=out, max_pixmap_difference=worst_pix)


def compare(ref, got, tol):
    """Every key of the reference against relprop's results.json; returns problems."""
    bad = []
    by_name = {m["method"]: m for m in got["methods"]}
    if ref["max_pixmap_difference"] > tol:
        bad.append("pixel maps differ from the reference upsampling by %g" % ref["max_pixmap_difference"])
    for r in ref["methods"]:
        g = by_name.get(r["method"])
        if g is None:
            bad.append("%s: missing in results.json" % r["method"])
            continue
        for key, v in r.items():
            if key == "method":
                continue
            w = g.get(key, "absent")
            if isinstance(v, list):
                if not isinstance(w, list) or len(w) != len(v) or any(abs(a - b) > tol for a, b in zip(v, w)):
                    bad.append("%s.%s: reference %r, relprop %r" % (r["method"], key, v, w))
            elif v is None or w is None:
                if v is not w:
                    bad.append("%s.%s: reference %r, relprop %r" % (r["method"], key, v, w))
            elif abs(v - w) > tol:
                bad.append("%s.%s: reference %.10g, relprop %.10g" % (r["method"], key, v, w))
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the LIST.csv relprop eval read")
    ap.add_argument("--dump", required=True, help="the --dump folder of relprop eval")
    ap.add_argument("--out", help="write the reference metrics as JSON here")
    ap.add_argument("--compare", help="relprop's results.json to check against the reference")
    ap.add_argument("--tol", type=float, default=1e-6)
    a = ap.parse_args()
    ref = compute(a.data, a.dump)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(ref, f, indent=1, sort_keys=True)
            f.write("\n")
    if a.compare:
        with open(a.compare) as f:
            got = json.load(f)
        bad = compare(ref, got, a.tol)
        for b in bad:
            print("eval_reference: " + b, file=sys.stderr)
        print("eval_reference: %d methods, %s (tolerance %g)" % (len(ref["methods"]), "MISMATCH" if bad else "match",
                                                                    a.tol))
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
