#!/usr/bin/python3
"""Largest singular value of every conv / linear weight but the last in a
float .qlm (layout in docs/qlm-format.md), as C_out x rest matrices; prints
the maximum. Used by tests/uq_train.sh to see spectral normalization in the
saved weights."""
import struct
import sys

import numpy as np

CONV2D, LINEAR = 1, 9


def sections(buf):
    off, n = struct.unpack_from("<I", buf, 12)[0], struct.unpack_from("<I", buf, 24)[0]
    out = {}
    for _ in range(n):
        tag = buf[off:off + 4].decode("ascii", "replace")
        length = struct.unpack_from("<Q", buf, off + 8)[0]
        out[tag] = buf[off + 16:off + 16 + length]
        off += 16 + ((length + 7) & ~7)
    return out


def main(path):
    s = sections(open(path, "rb").read())
    grph, parm = s["GRPH"], s["PARM"]
    nodes = struct.unpack_from("<I", grph, 0)[0]
    params = np.frombuffer(parm, dtype="<f4", offset=8)
    worst = 0.0
    for i in range(1, nodes - 1):  # the last node is the head
        r = grph[4 + 160 * i:4 + 160 * (i + 1)]
        kind, out_c, has_bias = struct.unpack_from("<I", r, 0)[0], *struct.unpack_from("<ii", r, 44)
        c = struct.unpack_from("<i", r, 72)[0]
        off, n = struct.unpack_from("<qq", r, 80)
        if kind not in (CONV2D, LINEAR):
            continue
        rows = c if kind == CONV2D else out_c
        wn = n - (rows if has_bias else 0)
        w = params[off:off + wn].reshape(rows, -1).astype(np.float64)
        worst = max(worst, np.linalg.svd(w, compute_uv=False)[0])
    print("%.6f" % worst)


if __name__ == "__main__":
    main(sys.argv[1])
