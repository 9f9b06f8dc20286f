#!/usr/bin/python3
"""PyTorch timings of the bench_kernels layer list, for comparison only.

Same layers, batch 128, NCHW conv2d forward + backward (input gradient
except for the stem), best of `reps`. Needs the Debian python3-torch, so run
it with /usr/bin/python3 (the pyenv python3 on PATH has no torch):

    /usr/bin/python3 bench/bench_kernels_torch.py [threads=2] [reps=5]
        [all|resnet20|mobilenet] [--cpu]

--cpu reports process CPU time (steadier on a busy machine, 1 thread only),
matching `bench_kernels --clock cpu`.
"""
import sys
import time

import torch

LAYERS = [  # model, name, h, cin, cout, k, stride, pad, depthwise, needs_dx
    ("resnet20", "stem 3x3 1->16", 28, 1, 16, 3, 1, 1, 0, 0),
    ("resnet20", "s1 3x3 16->16", 28, 16, 16, 3, 1, 1, 0, 1),
    ("resnet20", "s2 3x3/2 16->32", 28, 16, 32, 3, 2, 1, 0, 1),
    ("resnet20", "s2 proj 1x1/2 16->32", 28, 16, 32, 1, 2, 0, 0, 1),
    ("resnet20", "s2 3x3 32->32", 14, 32, 32, 3, 1, 1, 0, 1),
    ("resnet20", "s3 3x3/2 32->64", 14, 32, 64, 3, 2, 1, 0, 1),
    ("resnet20", "s3 proj 1x1/2 32->64", 14, 32, 64, 1, 2, 0, 0, 1),
    ("resnet20", "s3 3x3 64->64", 7, 64, 64, 3, 1, 1, 0, 1),
    ("mobilenet", "stem 3x3 1->16", 28, 1, 16, 3, 1, 1, 0, 0),
    ("mobilenet", "b1 dw 16 @28", 28, 16, 16, 3, 1, 1, 1, 1),
    ("mobilenet", "b1 pw 16->32 @28", 28, 16, 32, 1, 1, 0, 0, 1),
    ("mobilenet", "b2 dw/2 32 @28", 28, 32, 32, 3, 2, 1, 1, 1),
    ("mobilenet", "b2 pw 32->64 @14", 14, 32, 64, 1, 1, 0, 0, 1),
    ("mobilenet", "b3 dw 64 @14", 14, 64, 64, 3, 1, 1, 1, 1),
    ("mobilenet", "b3 pw 64->64 @14", 14, 64, 64, 1, 1, 0, 0, 1),
    ("mobilenet", "b4 dw/2 64 @14", 14, 64, 64, 3, 2, 1, 1, 1),
    ("mobilenet", "b4 pw 64->128 @7", 7, 64, 128, 1, 1, 0, 0, 1),
    ("mobilenet", "b5 dw 128 @7", 7, 128, 128, 3, 1, 1, 1, 1),
    ("mobilenet", "b5 pw 128->128 @7", 7, 128, 128, 1, 1, 0, 0, 1),
    ("mobilenet", "b6 pw 128->256 @7", 7, 128, 256, 1, 1, 0, 0, 1),
    ("mobilenet", "b7-11 dw 256 @7", 7, 256, 256, 3, 1, 1, 1, 1),
    ("mobilenet", "b7-11 pw 256->256 @7", 7, 256, 256, 1, 1, 0, 0, 1),
    ("mobilenet", "b12 dw/2 256 @7", 7, 256, 256, 3, 2, 1, 1, 1),
    ("mobilenet", "b12 pw 256->512 @4", 4, 256, 512, 1, 1, 0, 0, 1),
    ("mobilenet", "b13 dw 512 @4", 4, 512, 512, 3, 1, 1, 1, 1),
    ("mobilenet", "b13 pw 512->512 @4", 4, 512, 512, 1, 1, 0, 0, 1),
]


def main():
    args = [a for a in sys.argv[1:] if a != "--cpu"]
    clock = time.process_time if "--cpu" in sys.argv else time.perf_counter
    threads = int(args[0]) if len(args) > 0 else 2
    reps = int(args[1]) if len(args) > 1 else 5
    which = args[2] if len(args) > 2 else "all"
    torch.set_num_threads(threads)
    print("# torch", torch.__version__, "threads", torch.get_num_threads())
    print("%-10s %-22s %9s %7s %9s %7s" %
          ("model", "layer", "fwd ms", "GF/s", "bwd ms", "GF/s"))
    for model, name, h, cin, cout, k, st, pad, dw, ndx in LAYERS:
        if which not in ("all", model):
            continue
        conv = torch.nn.Conv2d(cin, cout, k, st, pad,
                               groups=cin if dw else 1, bias=False)
        x = torch.randn(128, cin, h, h, requires_grad=bool(ndx))
        dy = torch.randn_like(conv(x))
        best_f = best_b = float("inf")
        for r in range(reps + 1):  # rep 0 warms up
            conv.zero_grad()
            x.grad = None
            t0 = clock()
            y = conv(x)
            t1 = clock()
            y.backward(dy)
            t2 = clock()
            if r:
                best_f, best_b = min(best_f, t1 - t0), min(best_b, t2 - t1)
        flops = 2.0 * y.numel() * k * k * (1 if dw else cin)
        print("%-10s %-22s %9.3f %7.1f %9.3f %7.1f" %
              (model, name, best_f * 1e3, flops / best_f * 1e-9, best_b * 1e3,
               flops * (2 if ndx else 1) / best_b * 1e-9))


if __name__ == "__main__":
    main()
