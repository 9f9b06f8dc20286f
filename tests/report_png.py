#!/usr/bin/env python3
"""Minimal PNG reader (8-bit RGB/RGBA/grey, non-interlaced, zlib + the five
row filters) for the report test: counts non-white pixels and pixels of the
report's mode colours, and can crop a region to a new PNG for a closer look.

    report_png.py stats FILE.png
    report_png.py crop FILE.png X Y W H OUT.png
"""
import struct
import sys
import zlib


def read_png(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("%s: not a PNG file" % path)
    pos, idat, hdr = 8, [], None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    w, h, depth, ctype, _, _, interlace = hdr
    if depth != 8 or interlace or ctype not in (0, 2, 6):
        raise ValueError("%s: unsupported PNG (depth %d, colour type %d, interlace %d)" % (path, depth, ctype, interlace))
    bpp = {0: 1, 2: 3, 6: 4}[ctype]
    raw = zlib.decompress(b"".join(idat))
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


def pixels(w, bpp, row):
    for x in range(w):
        px = row[x * bpp:(x + 1) * bpp]
        yield (px[0], px[0], px[0]) if bpp == 1 else tuple(px[:3])


def stats(path):
    """(width, height, non-white pixels, {colour: count near it})."""
    targets = {"fp32 blue": (0x1f, 0x77, 0xb4), "ptq-int8 red": (0xd6, 0x27, 0x28),
               "qat-int8 orange": (0xff, 0x7f, 0x0e)}
    w, h, bpp, rows = read_png(path)
    nonwhite, near = 0, {k: 0 for k in targets}
    for row in rows:
        for p in pixels(w, bpp, row):
            if p[0] < 245 or p[1] < 245 or p[2] < 245:
                nonwhite += 1
            for k, t in targets.items():
                if abs(p[0] - t[0]) + abs(p[1] - t[1]) + abs(p[2] - t[2]) < 40:
                    near[k] += 1
    return w, h, nonwhite, near


def crop(path, x0, y0, cw, ch, out):
    w, h, bpp, rows = read_png(path)
    body = b"".join(b"\x00" + rows[y][x0 * bpp:(x0 + cw) * bpp] for y in range(y0, min(h, y0 + ch)))
    ctype = {1: 0, 3: 2, 4: 6}[bpp]

    def chunk(kind, b):
        return struct.pack(">I", len(b)) + kind + b + struct.pack(">I", zlib.crc32(kind + b) & 0xffffffff)

    ihdr = struct.pack(">IIBBBBB", min(cw, w - x0), min(ch, h - y0), 8, ctype, 0, 0, 0)
    open(out, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(body))
                          + chunk(b"IEND", b""))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "stats":
        w, h, nw, near = stats(sys.argv[2])
        print("size %dx%d non_white %d (%.1f%%) %s" % (w, h, nw, 100.0 * nw / (w * h),
              " ".join("%s=%d" % (k.replace(" ", "_"), v) for k, v in near.items())))
    elif len(sys.argv) == 8 and sys.argv[1] == "crop":
        crop(sys.argv[2], *map(int, sys.argv[3:7]), sys.argv[7])
    else:
        sys.exit(__doc__)
