#!/usr/bin/python3
"""Writes tests/data/images/: PNG and BMP files of every layout relprop's
readers (src/image/png.c, src/image/bmp.c) must read, hostile ones included
(pixel indices beyond the palette, which made stb_image read uninitialised
memory), and some they must refuse; for tests/test_images.c. Needs Debian's
python3-pil (Pillow 9.4).

    /usr/bin/python3 tools/make_image_fixtures.py

The files are written byte by byte here (Pillow writes neither interlaced
PNGs nor short palettes), then opened with Pillow: for each file Pillow
opens, pil/<name>.ppm holds Image.open(f).convert("RGB"), the pixels relprop
must return exactly. MANIFEST.tsv lists name, expected outcome (ok, or the
rp_status the loader must return), a phrase the refusal must contain ("-"
for ok) and what the file is."""
import os
import struct
import warnings
import zlib

from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "images")
rows = []


def add(name, data, expect, what, needle="-"):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
    rows.append((name, expect, needle, what))


def noise(n, seed):
    out = bytearray()
    for _ in range(n):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(seed >> 16 & 255)
    return bytes(out)


# ---- PNG ----

def chunk(t, d, crc_ok=True):
    c = zlib.crc32(t + d) & 0xFFFFFFFF
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", c if crc_ok else c ^ 1)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png(w, h, depth, ctype, samples, plte=None, trns=None, interlace=False, extra=b""):
    """samples: h rows of w pixels, each a tuple of channel values."""
    ch = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]

    def pack_row(px):
        if depth >= 8:
            return b"".join(v.to_bytes(depth // 8, "big") for p in px for v in p)
        bits, out, acc, n = depth, bytearray(), 0, 0
        for p in px:
            acc = acc << bits | p[0]
            n += bits
            if n == 8:
                out.append(acc)
                acc, n = 0, 0
        if n:
            out.append(acc << (8 - n))
        return bytes(out)

    if interlace:
        raw = b""
        for x0, y0, dx, dy in ADAM7:
            xs = range(x0, w, dx)
            if not xs:
                continue
            for y in range(y0, h, dy):
                raw += b"\0" + pack_row([samples[y][x] for x in xs])
    else:
        raw = b"".join(b"\0" + pack_row(r) for r in samples)
    assert all(len(p) == ch for r in samples for p in r)
    s = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, int(interlace)))
    if plte is not None:
        s += chunk(b"PLTE", bytes(v for c in plte for v in c))
    if trns is not None:
        s += chunk(b"tRNS", trns)
    return s + extra + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def grid(w, h, f):
    return [[f(x, y) for x in range(w)] for y in range(h)]


def pngs():
    r = noise(64 * 64 * 8, 7)
    # Palette indices beyond the palette: Pillow shows gray (i, i, i).
    add("png_pal8_oob.png", png(16, 16, 8, 3, grid(16, 16, lambda x, y: (y * 16 + x,)),
                                plte=[(200, 30, 40), (10, 220, 60), (0, 0, 250)]),
        "ok", "8-bit palette of 3 colours, indices 0..255")
    add("png_pal4_oob.png", png(16, 5, 4, 3, grid(16, 5, lambda x, y: ((x + y) % 16,)), plte=[(9, 99, 199), (250, 5, 5)]),
        "ok", "4-bit palette of 2 colours, indices 0..15")
    add("png_pal1_oob.png", png(9, 3, 1, 3, grid(9, 3, lambda x, y: ((x + y) % 2,)), plte=[(77, 88, 99)]),
        "ok", "1-bit palette of 1 colour, index 1 beyond it")
    add("png_pal8_trns.png", png(7, 5, 8, 3, grid(7, 5, lambda x, y: ((x * 3 + y) % 4,)),
                                 plte=[(1, 2, 3), (40, 50, 60), (200, 100, 0), (255, 255, 255)], trns=b"\x00\x80"),
        "ok", "8-bit palette with tRNS (alpha dropped)")
    add("png_pal2_interlaced.png", png(13, 11, 2, 3, grid(13, 11, lambda x, y: ((x * y) % 4,)),
                                       plte=[(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)], interlace=True),
        "ok", "2-bit palette, Adam7")
    add("png_rgb_interlaced.png", png(23, 17, 8, 2, grid(23, 17, lambda x, y: tuple(r[(y * 23 + x) * 3 + k]
                                                                                    for k in range(3))),
                                      interlace=True), "ok", "8-bit RGB, Adam7")
    add("png_rgb16.png", png(9, 7, 16, 2, grid(9, 7, lambda x, y: tuple(r[(y * 9 + x) * 6 + k] << 8 |
                                                                        r[(y * 9 + x) * 6 + k + 3] for k in range(3)))),
        "ok", "16-bit RGB (the high bytes)")
    add("png_rgba16_interlaced.png", png(10, 9, 16, 6, grid(10, 9, lambda x, y: tuple(
        r[(y * 10 + x) * 8 + k] << 8 | r[(y * 10 + x) * 8 + k + 4] for k in range(4))), interlace=True),
        "ok", "16-bit RGBA, Adam7 (alpha dropped)")
    add("png_rgba8.png", png(6, 4, 8, 6, grid(6, 4, lambda x, y: (x * 40, y * 60, 7, (x * y * 30) % 256))),
        "ok", "8-bit RGBA (alpha dropped, not composited)")
    add("png_gray_alpha8.png", png(8, 3, 8, 4, grid(8, 3, lambda x, y: (x * 30 + y, 255 - x * 20))),
        "ok", "8-bit gray + alpha")
    add("png_gray_alpha16.png", png(8, 3, 16, 4, grid(8, 3, lambda x, y: (x * 7000 + y * 33, 65535 - x))),
        "ok", "16-bit gray + alpha (the high byte)")
    add("png_gray16_clip.png", png(8, 2, 16, 0, grid(8, 2, lambda x, y: (x * 9000 + y * 40,))),
        "ok", "16-bit gray: Pillow's mode I, clipped at 255")
    for d in (1, 2, 4):
        add("png_gray%d.png" % d, png(11, 3, d, 0, grid(11, 3, lambda x, y: ((x + y) % (1 << d),))),
            "ok", "%d-bit gray, scaled to 0..255" % d)
    add("png_gray4_interlaced.png", png(9, 9, 4, 0, grid(9, 9, lambda x, y: ((x * 3 + y) % 16,)), interlace=True),
        "ok", "4-bit gray, Adam7")
    # Ancillary chunks relprop skips unread: a zTXt of 1 MiB of zeros
    # (inflated by libpng otherwise), an iCCP, a private chunk.
    ztxt = b"Comment\0\0" + zlib.compress(bytes(1 << 20))
    add("png_ancillary.png", png(5, 5, 8, 2, grid(5, 5, lambda x, y: (x * 50, y * 50, 100)),
                                 extra=chunk(b"zTXt", ztxt) + chunk(b"iCCP", b"x\0\0" + zlib.compress(b"junk")) +
                                 chunk(b"prIv", b"private")), "ok", "zTXt bomb, bad iCCP, a private chunk")
    # Refused.
    add("png_ancillary_bad_crc.png", png(5, 5, 8, 2, grid(5, 5, lambda x, y: (x, y, 9)),
                                         extra=chunk(b"tEXt", b"a\0b", crc_ok=False)),
        "RP_ERR_FORMAT", "an ancillary chunk with a bad CRC (Pillow refuses it too)", "CRC error")
    good = png(16, 16, 8, 2, grid(16, 16, lambda x, y: tuple(r[(y * 16 + x) * 3 + k] for k in range(3))))
    idat = good.index(b"IDAT")
    add("png_truncated.png", good[:idat + 30], "RP_ERR_FORMAT", "cut inside IDAT", "truncated PNG")
    add("png_idat_crc.png", good[:len(good) - 16] + bytes([good[len(good) - 16] ^ 1]) + good[len(good) - 15:],
        "RP_ERR_FORMAT", "IDAT CRC wrong", "corrupt PNG: IDAT: CRC error")
    bad_zlib = bytearray(good)
    bad_zlib[idat + 6] ^= 0xFF
    bad_zlib[idat + 7] ^= 0x55
    # fix the CRC so that only the deflate stream is wrong
    ln = struct.unpack(">I", good[idat - 4:idat])[0]
    bad_zlib[idat + 4 + ln:idat + 8 + ln] = struct.pack(">I", zlib.crc32(bytes(bad_zlib[idat:idat + 4 + ln])) & 0xFFFFFFFF)
    add("png_bad_deflate.png", bytes(bad_zlib), "RP_ERR_FORMAT", "corrupt deflate data in IDAT", "corrupt PNG")
    add("png_no_plte.png", png(4, 4, 8, 3, grid(4, 4, lambda x, y: (0,))), "RP_ERR_FORMAT",
        "palette image without PLTE", "corrupt PNG")


# ---- BMP ----

def bmp(w, h, bits, pixels_rows, palette=None, colors=None, hsz=40, comp=0, masks=None, top_down=False,
        os2=False, offset=None):
    """pixels_rows: top-to-bottom rows of packed bytes (without padding)."""
    stride = (w * bits + 31) // 32 * 4
    data = b"".join(r + bytes(stride - len(r)) for r in (pixels_rows if top_down else pixels_rows[::-1]))
    pal = b""
    if palette is not None:
        pal = b"".join(bytes((b, g, r)) + (b"" if os2 else b"\0") for r, g, b in palette)
    if os2:
        info = struct.pack("<IHHHH", 12, w, h, 1, bits)
    else:
        info = struct.pack("<IiiHHIIiiII", hsz, w, -h if top_down else h, 1, bits, comp, len(data), 2835, 2835,
                           len(palette) if colors is None and palette is not None else (colors or 0), 0)
        if masks is not None and hsz == 40:
            info += struct.pack("<III", *masks[:3])
        elif hsz > 40:
            m = masks or (0, 0, 0, 0)
            ext = (struct.pack("<IIII", *m) + bytes(max(0, hsz - 56)))[:hsz - 40]
            info += ext
    off = 14 + len(info) + len(pal) if offset is None else offset
    return b"BM" + struct.pack("<IHHI", off + len(data), 0, 0, off) + info + pal + data


def pack_bits(idx, bits):
    out, acc, n = bytearray(), 0, 0
    for i in idx:
        acc = acc << bits | i
        n += bits
        if n == 8:
            out.append(acc)
            acc, n = 0, 0
    if n:
        out.append(acc << (8 - n))
    return bytes(out)


def bmps():
    r = noise(40 * 40 * 4, 11)
    W, H = 13, 7
    idx8 = [bytes((y * W + x) * 3 % 256 for x in range(W)) for y in range(H)]
    # Indices beyond the palette (stb read its uninitialised palette buffer).
    add("bmp_pal8_oob.bmp", bmp(W, H, 8, idx8, palette=[(200, 10, 20), (30, 220, 40)]), "ok",
        "8-bit, palette of 2 colours, indices up to 252")
    add("bmp_pal8_full.bmp", bmp(W, H, 8, idx8, palette=[(i, 255 - i, i // 2) for i in range(256)], colors=0),
        "ok", "8-bit, 256 colours (colours field 0)")
    add("bmp_pal4_oob.bmp", bmp(W, H, 4, [pack_bits([(x + y) % 16 for x in range(W)], 4) for y in range(H)],
                                palette=[(1, 2, 3), (90, 80, 70), (255, 0, 255)]), "ok",
        "4-bit, palette of 3 colours, indices 0..15")
    add("bmp_pal1.bmp", bmp(W, H, 1, [pack_bits([(x * y) % 2 for x in range(W)], 1) for y in range(H)],
                            palette=[(10, 20, 30), (240, 230, 220)]), "ok", "1-bit, 2 colours")
    add("bmp_pal1_bw.bmp", bmp(W, H, 1, [pack_bits([(x + y) % 2 for x in range(W)], 1) for y in range(H)],
                               palette=[(0, 0, 0), (255, 255, 255)]), "ok", "1-bit black and white (Pillow's mode 1)")
    add("bmp_gray8_ramp.bmp", bmp(W, H, 8, idx8, palette=[(i, i, i) for i in range(100)]), "ok",
        "8-bit, gray-ramp palette of 100 (Pillow's mode L), indices beyond it")
    add("bmp_os2_pal8.bmp", bmp(W, H, 8, idx8, palette=[(i, i * 2 % 256, 255 - i) for i in range(256)], os2=True),
        "ok", "OS/2 1.x header, 3-byte palette entries")
    add("bmp_pal8_offset_at_palette.bmp", bmp(W, H, 8, idx8, palette=[(i, 0, 255 - i) for i in range(256)],
                                              colors=0, offset=54), "ok",
        "pixel offset pointing at the palette (Pillow skips the palette)")
    rgb24 = [bytes(r[(y * W + x) * 3 + k] for x in range(W) for k in range(3)) for y in range(H)]
    add("bmp_rgb24_v5.bmp", bmp(W, H, 24, rgb24, hsz=124), "ok", "24-bit, BITMAPV5HEADER")
    add("bmp_rgb24_topdown_v4.bmp", bmp(W, H, 24, rgb24, hsz=108, top_down=True), "ok", "24-bit top-down, V4 header")
    rgb32 = [bytes(r[(y * W + x) * 4 + k] for x in range(W) for k in range(4)) for y in range(H)]
    add("bmp_rgb32.bmp", bmp(W, H, 32, rgb32), "ok", "32-bit BGRX")
    for nm, m in (("xbgr", (0xFF000000, 0xFF0000, 0xFF00, 0)), ("abgr", (0xFF000000, 0xFF0000, 0xFF00, 0xFF)),
                  ("rgba", (0xFF, 0xFF00, 0xFF0000, 0xFF000000)), ("bgra", (0xFF0000, 0xFF00, 0xFF, 0xFF000000)),
                  ("zero", (0, 0, 0, 0))):
        add("bmp_bf32_%s.bmp" % nm, bmp(W, H, 32, rgb32, hsz=108, comp=3, masks=m), "ok",
            "32-bit bitfields %s" % nm.upper())
    add("bmp_bf24.bmp", bmp(W, H, 24, rgb24, comp=3, masks=(0xFF0000, 0xFF00, 0xFF)), "ok", "24-bit bitfields BGR")
    rgb16 = [bytes(r[(y * W + x) * 2 + k] for x in range(W) for k in range(2)) for y in range(H)]
    add("bmp_bf16_565.bmp", bmp(W, H, 16, rgb16, comp=3, masks=(0xF800, 0x7E0, 0x1F)), "ok",
        "16-bit bitfields 5-6-5, 40-byte header (masks after it)")
    add("bmp_rgb16.bmp", bmp(W, H, 16, rgb16), "ok", "16-bit 5-5-5")
    # Refused.
    add("bmp_rle8.bmp", bmp(W, H, 8, idx8, palette=[(1, 1, 1)] * 4, comp=1), "RP_ERR_UNSUPPORTED", "RLE8",
        "RLE8 compression")
    add("bmp_bf32_odd.bmp", bmp(W, H, 32, rgb32, hsz=108, comp=3, masks=(0xFF, 0xFF00, 0xFF0000, 0)),
        "RP_ERR_UNSUPPORTED", "32-bit bitfields Pillow does not list", "bitfields with masks")
    add("bmp_gray4_ramp.bmp", bmp(W, H, 4, [pack_bits([(x + y) % 16 for x in range(W)], 4) for y in range(H)],
                                  palette=[(i, i, i) for i in range(16)]), "RP_ERR_UNSUPPORTED",
        "4-bit gray-ramp palette (Pillow misreads it as 8-bit)", "misreads")
    add("bmp_pal8_bw.bmp", bmp(W, H, 8, idx8, palette=[(0, 0, 0), (255, 255, 255)]), "RP_ERR_UNSUPPORTED",
        "8-bit black-and-white palette (Pillow misreads it as 1-bit)", "misreads")
    full = bmp(W, H, 8, idx8, palette=[(i, i, 0) for i in range(50)])
    add("bmp_truncated_pixels.bmp", full[:-5], "RP_ERR_FORMAT", "pixel data 5 bytes short", "truncated BMP")
    add("bmp_truncated_palette.bmp", full[:14 + 40 + 30], "RP_ERR_FORMAT", "cut inside the palette",
        "truncated BMP: the file ends inside its 50-colour palette")
    add("bmp_header_52.bmp", bmp(W, H, 24, rgb24, hsz=52), "RP_ERR_UNSUPPORTED", "52-byte info header",
        "info header of 52 bytes")
    add("bmp_palette_300.bmp", bmp(W, H, 8, idx8, palette=[(1, 2, 3)] * 300), "RP_ERR_UNSUPPORTED",
        "palette of 300 colours", "300 colours")


def main():
    # Pillow's advice on palette transparency, irrelevant to convert("RGB").
    warnings.simplefilter("ignore", UserWarning)
    os.makedirs(os.path.join(OUT, "pil"), exist_ok=True)
    for d in (OUT, os.path.join(OUT, "pil")):
        for f in os.listdir(d):
            if os.path.isfile(os.path.join(d, f)):
                os.remove(os.path.join(d, f))
    pngs()
    bmps()
    for name, expect, _, _ in rows:
        path = os.path.join(OUT, name)
        if expect == "ok":
            Image.open(path).convert("RGB").save(os.path.join(OUT, "pil", name + ".ppm"))
        else:
            try:
                Image.open(path).convert("RGB")
                print("note: Pillow reads %s, relprop refuses it" % name)
            except Exception as e:  # noqa: BLE001 - any refusal
                print("note: Pillow refuses %s too: %s" % (name, e))
    with open(os.path.join(OUT, "MANIFEST.tsv"), "w") as f:
        f.write("# generated by tools/make_image_fixtures.py; name\texpect\trefusal contains\twhat\n")
        for r in rows:
            f.write("\t".join(r) + "\n")
    print("tests/data/images: %d files" % len(rows))


main()
