#!/usr/bin/python3
"""Write the fixtures of tests/test_preprocess.c under tests/data/preprocess/:

  * small synthetic images (gradients, hard edges, a 1-pixel checkerboard, a
    little noise) in the formats relprop reads: PNG (RGB, gray, RGBA, palette
    with transparency, 16-bit gray), JPEG, BMP (24-bit bottom-up and top-down,
    32-bit, 8-bit palette, 16-bit 5-5-5 and 5-6-5), PPM/PGM (8-bit, maxval 100
    and 1000, 16-bit);
  * for each case in CASES, the tensor torchvision makes of it (PIL path:
    Image.open(...).convert("RGB"), [Grayscale(1)], Resize, CenterCrop,
    ToTensor, Normalize), saved as <case>.npy, and manifest.json listing
    image, settings, expected file and tolerance;
  * broken images for the error tests (text named .png, truncated files,
    zero-size headers, plain-text PPM, a GIF);
  * tiny ONNX models (Identity) carrying relprop.* metadata_props: meta_*.onnx.

    /usr/bin/python3 tools/make_preprocess_fixtures.py [tests/data/preprocess]

Everything is deterministic (fixed seeds, fixed JPEG quality), so rerunning
reproduces the files byte for byte with the same Pillow / libjpeg.
"""
import json
import os
import struct
import sys
import zlib

import numpy as np
import onnx
import PIL
import torch
import torchvision
from onnx import TensorProto, helper
from PIL import Image
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)

# Every case must match to 1 uint8 step (and in fact matches exactly): JPEG
# too, since relprop decodes it with libjpeg-turbo as Pillow does.
def pattern(w, h, seed):
    """RGB uint8 (h, w, 3): gradients, a sharp-edged box, a diagonal line, a
    disc, a 1-pixel checkerboard corner (aliasing bait) and a noise patch."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = x * 255.0 / max(w - 1, 1)
    g = y * 255.0 / max(h - 1, 1)
    b = 127.5 + 127.5 * np.sin((x + 2 * y) / 7.0)
    img = np.stack([r, g, b], axis=-1)
    img[h // 5:h // 2, w // 6:w // 3] = (250, 10, 40)
    disc = (x - 0.65 * w) ** 2 + (y - 0.55 * h) ** 2 < (0.18 * min(w, h)) ** 2
    img[disc] = (20, 220, 90)
    line = np.abs(x - y * w / h) < 1.0
    img[line] = (255, 255, 255)
    cw, ch = w // 5, h // 5
    checker = ((x + y) % 2 == 0) & (x >= w - cw) & (y >= h - ch)
    img[checker] = (0, 0, 0)
    img[(x >= w - cw) & (y >= h - ch) & ~checker] = (255, 255, 255)
    nh, nw = h // 6, w // 6
    img[0:nh, w - nw:w] = rng.integers(0, 256, size=(nh, nw, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def write_images(out):
    imgs = {}

    def save(name, im, **kw):
        im.save(os.path.join(out, name), **kw)
        imgs[name] = im

    rgb = pattern(300, 200, 1)
    save("rgb_300x200.png", Image.fromarray(rgb))
    save("photo_97x131.jpg", Image.fromarray(pattern(97, 131, 2)), quality=90)
    # The same JPEG as PIL decodes it, so the exact path can be checked on it.
    save("photo_97x131_pil.png", Image.open(os.path.join(out, "photo_97x131.jpg")).convert("RGB"))
    gray = pattern(48, 36, 3)[..., 1]
    save("gray_48x36.png", Image.fromarray(gray, "L"))
    rgba = np.dstack([pattern(80, 60, 4), (np.arange(80 * 60) * 7 % 256).reshape(60, 80).astype(np.uint8)])
    save("rgba_80x60.png", Image.fromarray(rgba, "RGBA"))
    save("rgb_64x64.bmp", Image.fromarray(pattern(64, 64, 5)))
    save("rgba_40x30.bmp", Image.fromarray(rgba[:30, :40], "RGBA"))  # 32-bit BMP
    pal = Image.fromarray(pattern(45, 35, 6)).quantize(colors=23, method=Image.Quantize.MEDIANCUT, dither=0)
    save("pal_45x35.bmp", pal)  # 8-bit palette BMP
    pal.info["transparency"] = 3
    save("pal_45x35.png", pal, transparency=3)
    save("rgb_50x40.ppm", Image.fromarray(pattern(50, 40, 7)))

    # 16-bit gray PNG: PIL opens it as mode "I" and convert("RGB") clips at 255.
    g16 = (np.arange(32 * 24).reshape(24, 32) * 89 % 65536).astype(np.uint16)
    g16[0, :8] = (0, 1, 100, 255, 256, 1000, 40000, 65535)
    save("gray16_32x24.png", Image.fromarray(g16))

    # PNM maxvals PIL rescales (PIL cannot write these, so by hand).
    def pnm(name, magic, w, h, maxval, values):
        data = np.asarray(values, dtype=np.int64).ravel()
        body = bytes(data.astype(np.uint8)) if maxval < 256 else data.astype(">u2").tobytes()
        with open(os.path.join(out, name), "wb") as f:
            f.write(b"%s\n# a comment\n%d %d\n%d\n" % (magic, w, h, maxval) + body)
        imgs[name] = Image.open(os.path.join(out, name))

    # BMPs PIL cannot write: 16-bit (5-5-5 plain, 5-6-5 bitfields) and a
    # top-down 24-bit one (negative height).
    def bmp(name, w, h, bpp, rows, comp=0, masks=b""):
        stride = (w * bpp + 31) // 32 * 4
        body = b"".join(r + b"\0" * (stride - len(r)) for r in rows)
        off = 54 + len(masks)
        hdr = struct.pack("<2sIHHI", b"BM", off + len(body), 0, 0, off)
        hdr += struct.pack("<IiiHHIIiiII", 40, w, h if bpp == 16 else -h, 1, bpp, comp, len(body), 2835, 2835, 0, 0)
        with open(os.path.join(out, name), "wb") as f:
            f.write(hdr + masks + body)
        imgs[name] = Image.open(os.path.join(out, name))

    p = pattern(21, 13, 9).astype(np.uint32)
    v555 = (p[..., 0] >> 3) << 10 | (p[..., 1] >> 3) << 5 | p[..., 2] >> 3
    v565 = (p[..., 0] >> 3) << 11 | (p[..., 1] >> 2) << 5 | p[..., 2] >> 3
    bmp("rgb555_21x13.bmp", 21, 13, 16, [v555[y].astype("<u2").tobytes() for y in range(12, -1, -1)])
    bmp("rgb565_21x13.bmp", 21, 13, 16, [v565[y].astype("<u2").tobytes() for y in range(12, -1, -1)], comp=3,
        masks=struct.pack("<III", 0xf800, 0x7e0, 0x1f))
    bmp("topdown_21x13.bmp", 21, 13, 24, [p[y, :, ::-1].astype(np.uint8).tobytes() for y in range(13)])

    rng = np.random.default_rng(8)
    pnm("gray_maxval100_13x7.pgm", b"P5", 13, 7, 100, rng.integers(0, 101, 13 * 7))
    pnm("rgb_maxval1000_11x9.ppm", b"P6", 11, 9, 1000, rng.integers(0, 1001, 11 * 9 * 3))
    pnm("rgb16_10x6.ppm", b"P6", 10, 6, 65535, rng.integers(0, 65536, 10 * 6 * 3))
    pnm("gray16_10x6.pgm", b"P5", 10, 6, 65535, np.r_[0, 1, 255, 256, rng.integers(0, 65536, 56)])
    return imgs


def interp_mode(name):
    return {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC,
            "nearest": T.InterpolationMode.NEAREST}[name]


# name, image, resize (int, (h, w) or None), crop ((h, w) or None), interp,
# mean, std, channels, preset (or None), pixel source for the expected tensor.
CASES = [
    # Antialiased downscale (support scaled by ~3-6), both filters.
    ("bilinear_down", "rgb_300x200.png", (53, 71), None, "bilinear", HALF, HALF, 3, None),
    ("bicubic_down", "rgb_300x200.png", (67, 89), None, "bicubic", IMAGENET_MEAN, IMAGENET_STD, 3, None),
    # Upscale to odd sizes; bicubic overshoots and must clip.
    ("bilinear_up", "rgba_80x60.png", (83, 101), None, "bilinear", HALF, HALF, 3, None),
    ("bicubic_up", "gray_48x36.png", (71, 97), None, "bicubic", IMAGENET_MEAN, IMAGENET_STD, 3, None),
    # One axis up, the other down.
    ("bicubic_mixed", "rgb_64x64.bmp", (41, 93), None, "bicubic", HALF, HALF, 3, None),
    # Only one axis changes: Pillow skips the other pass.
    ("bilinear_w_only", "rgb_64x64.bmp", (64, 37), None, "bilinear", HALF, HALF, 3, None),
    ("bicubic_h_only", "rgb_64x64.bmp", (29, 64), None, "bicubic", HALF, HALF, 3, None),
    # Resize(int) on a landscape image: 300x200 -> 96x64; the crop offsets are
    # (5/2, 1/2) which Python's round() takes to the even 2 and 0.
    ("short_side_crop", "rgb_300x200.png", 64, (59, 95), "bicubic", IMAGENET_MEAN, IMAGENET_STD, 3, None),
    # Resize(int) on a portrait image: 97x131 -> 50x67, then CenterCrop(48).
    ("portrait_crop", "photo_97x131_pil.png", 50, (48, 48), "bilinear", HALF, HALF, 3, None),
    ("nearest_down", "rgb_300x200.png", (47, 113), None, "nearest", HALF, HALF, 3, None),
    ("nearest_up", "rgb_50x40.ppm", (77, 91), None, "nearest", IMAGENET_MEAN, IMAGENET_STD, 3, None),
    # Luminance (PIL convert("L")) before the resize, one output channel.
    ("gray1_rgb", "rgb_300x200.png", (60, 90), None, "bilinear", (0.5,), (0.5,), 1, None),
    ("gray1_gray", "gray_48x36.png", 40, (33, 40), "bicubic", (0.2860,), (0.3530,), 1, None),
    # No resize: the decoders and PIL's convert("RGB") alone.
    ("plain_ppm", "rgb_50x40.ppm", None, None, "bilinear", IMAGENET_MEAN, IMAGENET_STD, 3, None),
    ("plain_rgba_bmp", "rgba_40x30.bmp", None, None, "bilinear", HALF, HALF, 3, None),
    ("plain_pal_bmp", "pal_45x35.bmp", None, None, "bilinear", HALF, HALF, 3, None),
    ("plain_gray16_png", "gray16_32x24.png", None, None, "bilinear", HALF, HALF, 3, None),
    ("plain_pgm_maxval100", "gray_maxval100_13x7.pgm", None, None, "bilinear", HALF, HALF, 3, None),
    ("plain_ppm_maxval1000", "rgb_maxval1000_11x9.ppm", None, None, "bilinear", HALF, HALF, 3, None),
    ("plain_ppm16", "rgb16_10x6.ppm", None, None, "bilinear", HALF, HALF, 3, None),
    ("plain_pgm16", "gray16_10x6.pgm", None, None, "bilinear", HALF, HALF, 3, None),
    ("plain_bmp555", "rgb555_21x13.bmp", None, None, "bilinear", HALF, HALF, 3, None),
    ("plain_bmp565", "rgb565_21x13.bmp", None, None, "bilinear", HALF, HALF, 3, None),
    ("plain_bmp_topdown", "topdown_21x13.bmp", None, None, "bilinear", HALF, HALF, 3, None),
    ("pal_png_down", "pal_45x35.png", (30, 40), None, "bilinear", HALF, HALF, 3, None),
    # The presets (as the notebook / torchvision ImageNet recipe define them).
    ("preset_vit", "photo_97x131_pil.png", (224, 224), None, "bilinear", HALF, HALF, 3, "vit"),
    ("preset_imagenet", "rgb_300x200.png", 256, (224, 224), "bicubic", IMAGENET_MEAN, IMAGENET_STD, 3,
     "imagenet"),
    # JPEG, decoded by libjpeg-turbo in both.
    ("jpeg_photo", "photo_97x131.jpg", 50, (48, 48), "bilinear", HALF, HALF, 3, None),
]


def expected(imgs, out, case):
    name, image, resize, crop, interp, mean, std, channels, _ = case
    steps = [T.Grayscale(1)] if channels == 1 else []
    if resize is not None:
        steps.append(T.Resize(resize if isinstance(resize, int) else list(resize), interpolation=interp_mode(interp)))
    if crop is not None:
        steps.append(T.CenterCrop(list(crop)))
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    im = Image.open(os.path.join(out, image)).convert("RGB")
    x = T.Compose(steps)(im).unsqueeze(0).numpy().astype(np.float32)
    assert x.shape[1] == channels
    np.save(os.path.join(out, name + ".npy"), x)
    rh, rw = (0, 0) if resize is None or isinstance(resize, int) else resize
    return {
        "name": name, "image": image, "preset": case[8],
        "resize": resize if isinstance(resize, int) else 0, "resize_h": rh, "resize_w": rw,
        "crop_h": crop[0] if crop else 0, "crop_w": crop[1] if crop else 0,
        "interpolation": interp, "mean": list(mean), "std": list(std), "channels": channels,
        "expected": name + ".npy", "shape": list(x.shape),
        "tolerance_steps": 1,
    }


def write_bad(out):
    def put(name, data):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)

    put("bad_text.png", b"this is not an image, just text with a .png name\n")
    png = open(os.path.join(out, "rgb_300x200.png"), "rb").read()
    put("bad_truncated.png", png[:len(png) // 2])
    jpg = open(os.path.join(out, "photo_97x131.jpg"), "rb").read()
    put("bad_truncated.jpg", jpg[:len(jpg) * 2 // 3])
    bmp = open(os.path.join(out, "rgb_64x64.bmp"), "rb").read()
    put("bad_truncated.bmp", bmp[:len(bmp) - 500])
    ppm = open(os.path.join(out, "rgb_50x40.ppm"), "rb").read()
    put("bad_truncated.ppm", ppm[:len(ppm) - 7])

    # A PNG whose header claims width 0 (valid CRC, tiny IDAT).
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xffffffff)
    ihdr = struct.pack(">IIBBBBB", 0, 5, 8, 2, 0, 0, 0)
    put("bad_zero_width.png", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
        chunk(b"IDAT", zlib.compress(b"\0" * 5)) + chunk(b"IEND", b""))
    put("bad_zero.ppm", b"P6\n0 0\n255\n")
    put("bad_maxval0.pgm", b"P5\n2 2\n0\n\0\0\0\0")
    put("bad_plain.ppm", b"P3\n1 1\n255\n1 2 3\n")
    put("bad_gif.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")


def vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def write_models(out):
    def model(fname, shape, props):
        g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"], name="id")], "g",
                              [vi("x", shape)], [vi("y", shape)])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        helper.set_model_props(m, props)
        onnx.save(m, os.path.join(out, fname))

    model("meta_none.onnx", [1, 3, 64, 64], {"author": "relprop tests"})
    model("meta_imagenet.onnx", [1, 3, 224, 224], {"relprop.preset": "imagenet"})
    model("meta_custom.onnx", [1, 3, 64, 64], {
        "relprop.resize": "72", "relprop.crop": "64", "relprop.interpolation": "bicubic",
        "relprop.mean": "0.5,0.4,0.3", "relprop.std": "0.2, 0.25, 0.3"})
    model("meta_hw.onnx", ["batch", 1, 64, 48], {
        "relprop.resize": "64,48", "relprop.interpolation": "nearest",
        "relprop.mean": "0.2860", "relprop.std": "0.3530"})
    model("meta_preset_override.onnx", [1, 3, 224, 224], {"relprop.preset": "vit", "relprop.mean": "0,0,0",
                                                          "relprop.std": "1,1,1"})
    model("meta_bad_size.onnx", [1, 3, 64, 64], {"relprop.preset": "vit"})
    model("meta_bad_crop_size.onnx", [1, 3, 64, 64], {"relprop.resize": "80", "relprop.crop": "70,64"})
    model("meta_bad_no_crop.onnx", [1, 3, 64, 64], {"relprop.resize": "64"})
    model("meta_bad_crop_gt_resize.onnx", [1, 3, 64, 64], {"relprop.resize": "60", "relprop.crop": "64"})
    model("meta_bad_interp.onnx", [1, 3, 64, 64], {"relprop.resize": "64,64", "relprop.interpolation": "lanczos"})
    model("meta_bad_resize.onnx", [1, 3, 64, 64], {"relprop.resize": "64x64"})
    model("meta_bad_crop.onnx", [1, 3, 64, 64], {"relprop.resize": "72", "relprop.crop": "-64"})
    model("meta_bad_mean.onnx", [1, 3, 64, 64], {"relprop.resize": "64,64", "relprop.mean": "0.5,0.5"})
    model("meta_bad_std.onnx", [1, 3, 64, 64], {"relprop.resize": "64,64", "relprop.std": "0.5,0,0.5"})
    model("meta_bad_preset.onnx", [1, 3, 64, 64], {"relprop.preset": "resnet"})
    model("meta_symbolic.onnx", [1, 3, "h", "w"], {"relprop.preset": "vit"})


def main(out):
    os.makedirs(out, exist_ok=True)
    imgs = write_images(out)
    cases = [expected(imgs, out, c) for c in CASES]
    write_bad(out)
    write_models(out)
    manifest = {
        "generator": "tools/make_preprocess_fixtures.py",
        "versions": {"Pillow": PIL.__version__, "torchvision": torchvision.__version__,
                     "torch": torch.__version__, "numpy": np.__version__},
        "note": "expected = torchvision PIL path: Image.open(image).convert('RGB'), [Grayscale(1) if channels == 1], "
                "Resize(resize or (resize_h, resize_w), interpolation), [CenterCrop((crop_h, crop_w))], ToTensor, "
                "Normalize(mean, std); tolerance in uint8 steps, scaled by 1/(255 std)",
        "cases": cases,
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(out, n)) for n in os.listdir(out))
    print(f"{len(cases)} cases, {len(os.listdir(out))} files, {total / 1e6:.2f} MB in {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "data",
                                                              "preprocess"))
