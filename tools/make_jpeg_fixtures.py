#!/usr/bin/python3
"""Writes tests/data/jpeg/: real JPEG files of every kind relprop must read
(and a few it must refuse), for tests/test_jpeg.c. Needs Debian's
python3-pil (Pillow 9.4) and libjpeg-turbo-progs (cjpeg, jpegtran, 2.1.5).

    /usr/bin/python3 tools/make_jpeg_fixtures.py

Each file is written with the encoder's own options; MANIFEST.tsv lists
name, expected outcome (ok, or the rp_status the loader must return), a
phrase the refusal must contain ("-" for ok) and how the file was made. For
every file Pillow opens, pil/<name>.ppm holds Image.open(f).convert("RGB"),
the pixels relprop must return exactly. A small 61x47 image (odd sizes:
partial MCUs), in colour and gray, with gradients, edges and noise so that
every Huffman table is used."""
import io
import os
import subprocess
import tempfile

from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "jpeg")
W, H = 61, 47
rows = []


def base_image():
    im = Image.new("RGB", (W, H))
    px = im.load()
    seed = 12345
    for y in range(H):
        for x in range(W):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            noise = (seed >> 16) % 41 - 20
            r = (x * 255) // (W - 1)
            g = (y * 255) // (H - 1)
            b = 230 if (x // 8 + y // 8) % 2 else 25
            if (x - 30) ** 2 + (y - 23) ** 2 < 150:
                r, g, b = 250, 240, 20
            px[x, y] = tuple(max(0, min(255, v + noise)) for v in (r, g, b))
    return im


def add(name, expect, how, needle="-"):
    rows.append((name, expect, needle, how))


def pil(im, name, how, **kw):
    im.save(os.path.join(OUT, name), "JPEG", **kw)
    add(name, "ok", "PIL " + how)


def run(cmd, out_name, expect="ok", how=None):
    with open(os.path.join(OUT, out_name), "wb") as f:
        subprocess.run(cmd, stdout=f, check=True)
    add(out_name, expect, how or " ".join(os.path.basename(c) if c.startswith("/") else c for c in cmd))


def segments(b):
    """(start, end, marker) of each segment, a scan's entropy data included."""
    out, p = [], 2
    while p < len(b):
        assert b[p] == 0xFF, p
        m = b[p + 1]
        if m == 0xD9:
            out.append((p, p + 2, m))
            break
        q = p + 2 + (b[p + 2] << 8 | b[p + 3])
        if m == 0xDA:
            while not (b[q] == 0xFF and b[q + 1] != 0 and not 0xD0 <= b[q + 1] <= 0xD7):
                q += 1
        out.append((p, q, m))
        p = q
    return out


def many_scans(w, h, copies):
    """A progressive gray w x h JPEG whose last scan (an AC refinement, with
    the DHT before it) is repeated `copies` more times: libjpeg only warns
    about the bogus progression and decodes every copy, each a pass over all
    blocks for a few bytes of file."""
    bio = io.BytesIO()
    Image.new("L", (w, h), 128).save(bio, "JPEG", progressive=True, quality=90)
    b = bio.getvalue()
    segs = segments(b)
    i = max(k for k, s in enumerate(segs) if s[2] == 0xDA)
    j = i
    while segs[j - 1][2] == 0xC4:
        j -= 1
    eoi = segs[-1][0]
    return b[:eoi] + b[segs[j][0]:segs[i][1]] * copies + b[eoi:]


def main():
    os.makedirs(os.path.join(OUT, "pil"), exist_ok=True)
    for d in (OUT, os.path.join(OUT, "pil")):
        for f in os.listdir(d):
            if os.path.isfile(os.path.join(d, f)):
                os.remove(os.path.join(d, f))
    rgb = base_image()
    gray = rgb.convert("L")
    tmp = tempfile.mkdtemp()
    ppm, pgm = os.path.join(tmp, "in.ppm"), os.path.join(tmp, "in.pgm")
    rgb.save(ppm)
    gray.save(pgm)

    # Pillow (libjpeg-turbo underneath): qualities, subsampling, progressive.
    for q in (5, 50, 75, 95, 100):
        pil(rgb, "pil_q%d.jpg" % q, "quality=%d" % q, quality=q)
    for ss, nm in ((0, "444"), (1, "422"), (2, "420")):
        pil(rgb, "pil_%s.jpg" % nm, "subsampling=%d quality=85" % ss, quality=85, subsampling=ss)
    pil(rgb, "pil_progressive.jpg", "progressive quality=80", quality=80, progressive=True)
    pil(rgb, "pil_progressive_optimize.jpg", "progressive optimize quality=60", quality=60, progressive=True,
        optimize=True)
    pil(rgb, "pil_optimize.jpg", "optimize quality=70", quality=70, optimize=True)
    pil(gray, "pil_gray.jpg", "mode L quality=75", quality=75)
    pil(gray, "pil_gray_progressive.jpg", "mode L progressive quality=90", quality=90, progressive=True)
    pil(rgb.convert("CMYK"), "pil_cmyk.jpg", "mode CMYK quality=85 (Adobe APP14, 4 components)", quality=85)
    exif = Image.Exif()
    exif[0x010E] = "relprop test"  # ImageDescription
    exif[0x0112] = 1                # Orientation
    pil(rgb, "pil_exif.jpg", "quality=75 with an EXIF APP1", quality=75, exif=exif.tobytes())

    # cjpeg / jpegtran: restart intervals, multi-scan baseline, RGB, sampling.
    cj, jt = "/usr/bin/cjpeg", "/usr/bin/jpegtran"
    run([cj, "-quality", "80", "-restart", "1", ppm], "cjpeg_restart_1row.jpg")
    run([cj, "-quality", "80", "-restart", "3B", ppm], "cjpeg_restart_3blocks.jpg")
    run([cj, "-quality", "80", "-restart", "1B", "-progressive", ppm], "cjpeg_progressive_restart.jpg")
    run([cj, "-quality", "90", "-sample", "1x2,1x1,1x1", ppm], "cjpeg_sample_1x2.jpg")
    run([cj, "-quality", "90", "-sample", "2x2,2x1,1x1", ppm], "cjpeg_sample_mixed.jpg")
    run([cj, "-quality", "90", "-sample", "4x1,1x1,1x1", ppm], "cjpeg_sample_4x1.jpg")
    run([cj, "-quality", "75", "-rgb", ppm], "cjpeg_rgb.jpg")
    run([cj, "-quality", "75", "-grayscale", "-restart", "2", pgm], "cjpeg_gray_restart.jpg")
    run([cj, "-quality", "75", "-dct", "float", "-smooth", "10", ppm], "cjpeg_float_smooth.jpg")
    # Multi-scan sequential (non-interleaved) JPEG, each scan with its own
    # optimised Huffman tables: DHT segments between the scans.
    scans = os.path.join(tmp, "scans.txt")
    with open(scans, "w") as f:
        f.write("0;\n1;\n2;\n")
    run([cj, "-quality", "80", "-optimize", "-scans", scans, ppm], "cjpeg_multiscan_baseline.jpg",
        how="cjpeg -optimize -scans '0; 1; 2;' (three non-interleaved baseline scans)")
    run([cj, "-quality", "80", "-optimize", "-progressive", ppm], "cjpeg_progressive_optimize.jpg")
    run([jt, "-progressive", "-restart", "2", os.path.join(OUT, "pil_q75.jpg")], "jpegtran_progressive_restart.jpg")
    run([jt, "-copy", "all", "-optimize", os.path.join(OUT, "pil_exif.jpg")], "jpegtran_optimize_exif.jpg")
    # Arithmetic coding: libjpeg-turbo decodes it, so Pillow does too.
    run([cj, "-quality", "75", "-arithmetic", ppm], "cjpeg_arithmetic.jpg")
    run([cj, "-quality", "75", "-arithmetic", "-progressive", ppm], "cjpeg_arithmetic_progressive.jpg")

    # Valid but unusual layouts, written by hand from pil_q75.jpg: fill bytes
    # (0xFF padding) before markers, a COM segment, and an APP1 holding a
    # whole JPEG (a thumbnail, with its own SOI/SOS/EOI inside the segment).
    src = open(os.path.join(OUT, "pil_q75.jpg"), "rb").read()
    thumb = open(os.path.join(OUT, "pil_gray.jpg"), "rb").read()
    assert src[:2] == b"\xff\xd8"
    padded = src[:2] + b"\xff\xff\xff" + src[2:].replace(b"\xff\xda", b"\xff\xff\xff\xda", 1)
    open(os.path.join(OUT, "hand_fill_bytes.jpg"), "wb").write(padded)
    add("hand_fill_bytes.jpg", "ok", "pil_q75.jpg with 0xFF fill bytes before the first marker and before SOS")
    com = b"hello \xff\xd9 \xff\xda not markers"
    app1 = b"Exif\x00\x00" + thumb
    body = (src[:2] + b"\xff\xfe" + (len(com) + 2).to_bytes(2, "big") + com +
            b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + src[2:])
    open(os.path.join(OUT, "hand_com_thumbnail.jpg"), "wb").write(body)
    add("hand_com_thumbnail.jpg", "ok", "pil_q75.jpg with a COM holding FF D9 / FF DA and an APP1 holding a JPEG")
    trailing = src + b"\x00" * 7 + b"trailing garbage \xff\xd8"
    open(os.path.join(OUT, "hand_trailing.jpg"), "wb").write(trailing)
    add("hand_trailing.jpg", "ok", "pil_q75.jpg followed by bytes after EOI")

    # CMYK variants of pil_cmyk.jpg: the Adobe marker's transform set to 2
    # (YCCK: libjpeg converts to CMYK), and the Adobe marker removed (plain
    # CMYK; Pillow still reads it inverted).
    cmyk = open(os.path.join(OUT, "pil_cmyk.jpg"), "rb").read()
    app14 = [s for s in segments(cmyk) if s[2] == 0xEE]
    assert len(app14) == 1 and cmyk[app14[0][0] + 4:app14[0][0] + 9] == b"Adobe"
    a0, a1 = app14[0][0], app14[0][1]
    ycck = bytearray(cmyk)
    assert ycck[a1 - 1] == 0
    ycck[a1 - 1] = 2
    open(os.path.join(OUT, "hand_ycck.jpg"), "wb").write(bytes(ycck))
    add("hand_ycck.jpg", "ok", "pil_cmyk.jpg with the Adobe transform byte set to 2 (YCCK)")
    open(os.path.join(OUT, "hand_cmyk_no_adobe.jpg"), "wb").write(cmyk[:a0] + cmyk[a1:])
    add("hand_cmyk_no_adobe.jpg", "ok", "pil_cmyk.jpg without its Adobe APP14 segment")

    # Refused: too many scans (Pillow decodes them, for minutes on large
    # images), and too much work in fewer scans.
    open(os.path.join(OUT, "many_scans_1000.jpg"), "wb").write(many_scans(256, 256, 1000))
    add("many_scans_1000.jpg", "RP_ERR_UNSUPPORTED", "gray 256x256 progressive, last scan repeated 1000 times",
        "more than 500 scans")
    open(os.path.join(OUT, "many_scans_work.jpg"), "wb").write(many_scans(4096, 4096, 140))
    add("many_scans_work.jpg", "RP_ERR_UNSUPPORTED", "gray 4096x4096 progressive, last scan repeated 140 times",
        "visit more than 33554432 blocks")

    for f in os.listdir(tmp):
        os.remove(os.path.join(tmp, f))
    os.rmdir(tmp)
    for name, expect, _, _ in rows:
        if expect == "ok":
            Image.open(os.path.join(OUT, name)).convert("RGB").save(os.path.join(OUT, "pil", name + ".ppm"))
    with open(os.path.join(OUT, "MANIFEST.tsv"), "w") as f:
        f.write("# generated by tools/make_jpeg_fixtures.py; name\texpect\trefusal contains\thow\n")
        for r in rows:
            f.write("\t".join(r) + "\n")
    print("tests/data/jpeg: %d files" % len(rows))


main()
