#!/usr/bin/python3
"""Reference pictures for src/image/render.c (docs/method.md §6).

An independent numpy transcription of the authors' notebook visualisation,
kept in RGB (the notebook mixes OpenCV's BGR with RGB; relprop does not):

    m   = interpolate(map, scale_factor=patch, mode='bilinear')   # torch, align_corners=False
    m   = (m - m.min()) / (m.max() - m.min())
    img = (x - x.min()) / (x.max() - x.min())                      # x = input[0] as H x W x C
    cam = JET[uint8(255 * m)] / 255 + img;  cam = cam / cam.max()
    vis = uint8(255 * cam)

Everything is float32, operation by operation, as torch and numpy compute it.
Uses numpy only: no OpenCV, no torch. The JET table is derived here from
OpenCV's definition (see jet_table) rather than copied from render.c, so the
test compares two derivations.

For the oracle case tests/oracle/fmnist_vit_s__timm17 (input_0, class 6,
patch 8, grid 8 x 8) it writes into tests/data/render/:
    input.png                               the min-max scaled input
    overlay_transformer_attribution.png     the grid map, upsampled x8
    heatmap_transformer_attribution.png
    overlay_lrp_full.png                    the pixel map, used as is
    heatmap_lrp_full.png
    jet_rgb.txt                             the 256 JET entries, "r g b" per line

Run from anywhere:  /usr/bin/python3 tools/reference_overlay.py
"""
import argparse
import os
import struct
import zlib

import numpy as np

F32 = np.float32
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def jet_table():
    """OpenCV's COLORMAP_JET as 256 x 3 uint8, RGB order.

    OpenCV (modules/imgproc/src/colormap.cpp, class Jet) stores GNU Octave's
    jet(256) as 256 float32 values per channel: ramps of slope 4/255 per
    entry through odd multiples of 0.5/255. It interpolates them with its
    float32 interp1 from X = linspace(0, 1, 256) to the same 256 points and
    converts with Mat::convertTo(CV_8U, 255.), which multiplies in float32 and
    rounds half to even. Most exact values are k + 0.5, so these float32 steps
    decide the last bit; they are emulated here one by one."""
    def ramps(i):
        r = 0 if i < 96 else (1.5 + 4 * (i - 96)) / 255 if i < 160 else 1 if i < 224 else (251.5 - 4 * (i - 224)) / 255
        g = (0 if i < 32 else (0.5 + 4 * (i - 32)) / 255 if i < 96 else 1 if i < 160
             else (252.5 - 4 * (i - 160)) / 255 if i < 224 else 0)
        b = (127.5 + 4 * i) / 255 if i < 32 else 1 if i < 96 else (253.5 - 4 * (i - 96)) / 255 if i < 160 else 0
        return r, g, b

    base = np.array([ramps(i) for i in range(256)], dtype=np.float64).astype(F32)  # 256 x 3
    step = F32(F32(1) - F32(0)) / F32(255)  # OpenCV's linspace(0, 1, 256)
    X = [F32(F32(0) + F32(i) * step) for i in range(256)]
    table = np.zeros((256, 3), dtype=np.uint8)
    for ch in range(3):
        Y = base[:, ch]
        for i in range(256):
            xi, low, high = X[i], 0, 255
            if xi < X[low]:
                high = 1
            if xi > X[high]:
                low = high - 1
            while high - low > 1:  # OpenCV's binary search
                c = low + ((high - low) >> 1)
                if xi > X[c]:
                    low = c
                else:
                    high = c
            y = F32(Y[low] + F32(F32(F32(xi - X[low]) * F32(Y[high] - Y[low])) / F32(X[high] - X[low])))
            table[i, ch] = int(np.rint(F32(y * F32(255))))  # rint: half to even, like cvRound
    return table


def axis_taps(n_in, factor):
    """torch's upsample_bilinear2d indices and weights along one axis
    (align_corners=False, scale_factor given): scale = float32(1 / factor),
    src = scale * (dst + 0.5) - 0.5 evaluated in double (as torch 1.13 does;
    the weights then equal torch's bit for bit), clamped at 0;
    lambda = float32(src - i0), weights (1 - lambda, lambda) in float32."""
    n_out = n_in * factor
    scale = float(F32(1.0 / factor))
    src = np.maximum(scale * (np.arange(n_out, dtype=np.float64) + 0.5) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    lam = np.clip(src - i0, 0.0, 1.0).astype(F32)
    i1 = np.where(i0 < n_in - 1, i0 + 1, i0)
    return i0, i1, (F32(1) - lam).astype(F32), lam


def upsample(m, fh, fw):
    m = m.astype(F32)
    y0, y1, wy0, wy1 = axis_taps(m.shape[0], fh)
    x0, x1, wx0, wx1 = axis_taps(m.shape[1], fw)
    # torch's generic kernel order: along x within each source row, then along y
    # (torch's own rounding varies with its build; agreement is ~1 ulp)
    t0 = m[y0][:, x0] * wx0 + m[y0][:, x1] * wx1
    t1 = m[y1][:, x0] * wx0 + m[y1][:, x1] * wx1
    return (t0 * wy0[:, None] + t1 * wy1[:, None]).astype(F32)


def minmax(a):
    lo, hi = a.min(), a.max()
    if hi == lo:  # the notebook would give NaN; relprop gives zeros
        return np.zeros_like(a, dtype=F32)
    return ((a - lo) / (hi - lo)).astype(F32)


def heat_index(m):
    return (F32(255) * m).astype(np.uint8)  # np.uint8 truncates


def render_heatmap(jet, m, fh, fw):
    return jet[heat_index(minmax(upsample(m, fh, fw)))]


def render_input(x):
    img = minmax(x[0].transpose(1, 2, 0).astype(F32))
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return img


def render_overlay(jet, x, m, fh, fw):
    if m.shape == x.shape[2:]:
        fh = fw = 1  # a pixel map, used as is
    heat = jet[heat_index(minmax(upsample(m, fh, fw)))].astype(F32) / F32(255)
    cam = heat + render_input(x)
    cam = cam / np.max(cam)
    return (F32(255) * cam).astype(np.uint8)


def write_png(path, rgb):
    """8-bit RGB PNG with the standard library only (zlib)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(png)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", default=os.path.join(ROOT, "tests/oracle/fmnist_vit_s__timm17"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/data/render"))
    ap.add_argument("--patch", type=int, default=8)
    ap.add_argument("--grid", type=int, nargs=2, default=[8, 8])
    args = ap.parse_args()

    x = np.load(os.path.join(args.case, "inputs/input_0.npy")).astype(F32)
    maps = os.path.join(args.case, "expected/input_0/class_6")
    ta = np.load(os.path.join(maps, "transformer_attribution.npy")).astype(F32).reshape(args.grid)
    lrp = np.load(os.path.join(maps, "lrp_full.npy")).astype(F32).reshape(x.shape[2:])

    os.makedirs(args.out, exist_ok=True)
    jet = jet_table()
    with open(os.path.join(args.out, "jet_rgb.txt"), "w") as f:
        f.writelines("%d %d %d\n" % tuple(c) for c in jet)
    p = args.patch
    write_png(os.path.join(args.out, "input.png"), (F32(255) * render_input(x)).astype(np.uint8))
    write_png(os.path.join(args.out, "overlay_transformer_attribution.png"), render_overlay(jet, x, ta, p, p))
    write_png(os.path.join(args.out, "heatmap_transformer_attribution.png"), render_heatmap(jet, ta, p, p))
    write_png(os.path.join(args.out, "overlay_lrp_full.png"), render_overlay(jet, x, lrp, p, p))
    write_png(os.path.join(args.out, "heatmap_lrp_full.png"), render_heatmap(jet, lrp, 1, 1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
