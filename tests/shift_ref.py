#!/usr/bin/python3
"""Independent re-implementation of three corruptions of src/data/shift.c
(contrast, brightness and Gaussian blur; the deterministic ones) with numpy and
scipy.ndimage, checked against the bytes qualm wrote.

usage: shift_ref.py FILE   where FILE holds n, h, w (int32) then the n input
images (u8) and, for each corruption in (contrast, brightness, gaussian_blur)
and severity 1..5, the n corrupted images (u8)."""
import sys
import numpy as np
from scipy.ndimage import gaussian_filter

CONTRAST = [0.75, 0.5, 0.4, 0.3, 0.15]
BRIGHTNESS = [0.05, 0.10, 0.15, 0.20, 0.30]
BLUR = [0.4, 0.6, 0.7, 0.8, 1.0]


def to_u8(x):
    """Round half up like qualm; also mark the values within 1e-9 of a .5 tie,
    where the order of floating-point sums may round either way."""
    v = np.clip(x, 0, 1) * 255.0
    tie = np.abs(v - np.floor(v) - 0.5) < 1e-9
    return np.floor(v + 0.5).astype(np.uint8), tie


def contrast(x, c):
    m = x.mean(axis=(1, 2), keepdims=True)
    return to_u8((x - m) * c + m)


def brightness(x, c):  # grey: HSV value + c is x + c
    return to_u8(x + c)


def blur(x, s):
    return to_u8(np.stack([gaussian_filter(im, sigma=s, mode="nearest", truncate=4.0) for im in x]))


def main():
    raw = np.fromfile(sys.argv[1], dtype=np.uint8)
    n, h, w = np.frombuffer(raw[:12].tobytes(), dtype=np.int32)
    size = n * h * w
    x = raw[12:12 + size].reshape(n, h, w).astype(np.float64) / 255.0
    at = 12 + size
    bad = 0
    for name, fn, params in (("contrast", contrast, CONTRAST), ("brightness", brightness, BRIGHTNESS),
                             ("gaussian_blur", blur, BLUR)):
        for sev, p in enumerate(params, 1):
            got = raw[at:at + size].reshape(n, h, w).astype(int)
            at += size
            want, tie = fn(x, p)
            diff = np.abs(got - want.astype(int))
            # Only a value on a .5 tie may round either way (by one).
            off = int(((diff > 0) & ~tie).sum())
            if diff.max() > 1 or off:
                print(f"{name} severity {sev}: max diff {diff.max()}, {off} of {size} pixels differ off ties")
                bad += 1
    print("shift_ref: %s" % ("FAILED" if bad else "ok"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
