#!/usr/bin/python3
"""PyTorch peer of bench/bench_train.c: the same models, the same figures.

Builds resnet20 and mobilenet_v1_050 exactly as shared/design/models.md
defines them (1x28x28 input, 10 classes), checks the trainable parameter
counts, and measures with T threads:

  train_b128   fp32 training images/s at batch 128 (forward, cross-entropy,
               backward, SGD momentum 0.9, weight decay 5e-4, lr 0.1)
  infer_b1     inference latency at batch 1, median and p90 in ms
  infer_b256   inference images/s at batch 256

Every figure is measured for several PyTorch variants (eager NCHW,
channels_last, TorchScript frozen for inference); the fastest is printed as

  torch <model> <figure> <unit> <value> <variant>

and the others as comment lines starting with '#'. Run it with Debian's
/usr/bin/python3 (python3-torch). See docs/bench.md.
"""
import argparse
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

EXPECTED_PARAMS = {"resnet20": 272186, "mobilenet_v1_050": 823434}


# ------------------------------------------------------------------ models

def conv_bn(cin, cout, k, stride, groups=1):
    """conv (no bias) + batch norm (eps 1e-5, momentum 0.1), as models.md."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = conv_bn(cin, cout, 3, stride)
        self.c2 = conv_bn(cout, cout, 3, 1)
        # Projection shortcut only where the shape changes (models.md).
        self.short = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else None

    def forward(self, x):
        y = F.relu(self.c1(x))
        y = self.c2(y)
        s = x if self.short is None else self.short(x)
        return F.relu(y + s)


class ResNetCifar(nn.Module):
    def __init__(self, n_blocks, n_classes=10, in_c=1):
        super().__init__()
        self.stem = conv_bn(in_c, 16, 3, 1)
        layers, cin = [], 16
        for i, cout in enumerate((16, 32, 64)):
            for b in range(n_blocks):
                stride = 2 if (i > 0 and b == 0) else 1
                layers.append(BasicBlock(cin, cout, stride))
                cin = cout
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(64, n_classes)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = self.blocks(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


MBV1_CHANNELS = (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
MBV1_STRIDES_28 = (1, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1)  # maps 28, 14, 7, 4


class MobileNetV1(nn.Module):
    def __init__(self, alpha, n_classes=10, in_c=1):
        super().__init__()
        c0 = int(round(32 * alpha))
        layers = [conv_bn(in_c, c0, 3, 1), nn.ReLU6(inplace=True)]
        cin = c0
        for ch, s in zip(MBV1_CHANNELS, MBV1_STRIDES_28):
            cout = int(round(ch * alpha))
            layers += [conv_bn(cin, cin, 3, s, groups=cin), nn.ReLU6(inplace=True),
                       conv_bn(cin, cout, 1, 1), nn.ReLU6(inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, n_classes)

    def forward(self, x):
        x = self.features(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


def build(name):
    if name == "resnet20":
        m = ResNetCifar(3)
    elif name == "mobilenet_v1_050":
        m = MobileNetV1(0.5)
    else:
        raise SystemExit("unknown model " + name)
    n = sum(p.numel() for p in m.parameters() if p.requires_grad)
    if n != EXPECTED_PARAMS[name]:
        raise SystemExit("%s: %d trainable parameters, models.md says %d"
                         % (name, n, EXPECTED_PARAMS[name]))
    return m, n


# ----------------------------------------------------------- measurements

FMNIST_MEAN, FMNIST_STD = 0.2860, 0.3530


def random_batch(gen, n, memory_format):
    """Uniform pixels normalized as Fashion-MNIST, and random labels."""
    x = (torch.rand(n, 1, 28, 28, generator=gen) - FMNIST_MEAN) / FMNIST_STD
    y = torch.randint(0, 10, (n,), generator=gen)
    return x.contiguous(memory_format=memory_format), y


def time_train(name, memory_format, args):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model, _ = build(name)
    model = model.to(memory_format=memory_format).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x, y = random_batch(gen, args.batch, memory_format)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(args.warmup):
        loss = step()
    if not torch.isfinite(loss):
        raise SystemExit("%s: training loss is not finite after warm-up" % name)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    dt = time.perf_counter() - t0
    return args.steps * args.batch / dt


def eval_model(name, memory_format, script):
    torch.manual_seed(0)
    model, _ = build(name)
    model = model.to(memory_format=memory_format).eval()
    if script:
        with torch.no_grad():
            ex = torch.zeros(1, 1, 28, 28).contiguous(memory_format=memory_format)
            model = torch.jit.freeze(torch.jit.trace(model, ex))
    return model


def time_latency(model, memory_format, args):
    gen = torch.Generator().manual_seed(2)
    x, _ = random_batch(gen, 1, memory_format)
    times = []
    with torch.no_grad():
        for _ in range(args.warmup * 10):
            model(x)
        for _ in range(args.runs):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2] if len(times) % 2 else \
        0.5 * (times[len(times) // 2 - 1] + times[len(times) // 2])
    p90 = times[max(0, -(-9 * len(times) // 10) - 1)]  # nearest rank
    return median * 1e3, p90 * 1e3


def time_throughput(model, memory_format, args):
    gen = torch.Generator().manual_seed(3)
    x, _ = random_batch(gen, args.big_batch, memory_format)
    with torch.no_grad():
        for _ in range(args.warmup):
            model(x)
        t0 = time.perf_counter()
        for _ in range(args.big_steps):
            model(x)
        dt = time.perf_counter() - t0
    return args.big_steps * args.big_batch / dt


# -------------------------------------------------------------- reporting

def report(name, figure, unit, results, higher_is_better):
    """Print every variant as a comment, then the best as the data line."""
    for variant, value in results:
        print("# torch %s %s %s %.4g %s" % (name, figure, unit, value, variant))
    pick = max if higher_is_better else min
    variant, value = pick(results, key=lambda r: r[1])
    print("torch %s %s %s %.4f %s" % (name, figure, unit, value, variant))
    sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", action="append",
                    help="resnet20 and/or mobilenet_v1_050 (default: both)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20, help="timed training steps")
    ap.add_argument("--runs", type=int, default=300, help="timed batch-1 runs")
    ap.add_argument("--big-batch", type=int, default=256)
    ap.add_argument("--big-steps", type=int, default=10, help="timed batch-256 runs")
    ap.add_argument("--variants", default="eager,channels_last,script,script_cl",
                    help="comma list of eager, channels_last, script, script_cl")
    ap.add_argument("--quick", action="store_true",
                    help="few steps, for a smoke test (numbers are noisy)")
    args = ap.parse_args()
    if args.quick:
        args.warmup, args.steps, args.runs, args.big_steps = 2, 3, 20, 2

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    variants = [v for v in args.variants.split(",") if v]
    fmt = {"eager": torch.contiguous_format, "channels_last": torch.channels_last,
           "script": torch.contiguous_format, "script_cl": torch.channels_last}
    for v in variants:
        if v not in fmt:
            raise SystemExit("unknown variant " + v)
    print("# torch %s, threads %d (intra-op %d), mkldnn %s, OMP_NUM_THREADS=%s"
          % (torch.__version__, args.threads, torch.get_num_threads(),
             torch.backends.mkldnn.is_available(), os.environ.get("OMP_NUM_THREADS", "-")))

    for name in args.model or ["resnet20", "mobilenet_v1_050"]:
        _, n_params = build(name)
        print("# torch %s params %d" % (name, n_params))
        # TorchScript adds nothing to training here; eager and channels_last.
        train = [(v, time_train(name, fmt[v], args))
                 for v in variants if not v.startswith("script")]
        report(name, "train_b%d" % args.batch, "images_per_s", train, True)
        lat_med, lat_p90, thr = [], [], []
        for v in variants:
            model = eval_model(name, fmt[v], v.startswith("script"))
            med, p90 = time_latency(model, fmt[v], args)
            lat_med.append((v, med))
            lat_p90.append((v, p90))
            thr.append((v, time_throughput(model, fmt[v], args)))
        # The p90 line uses the variant with the best median, so both
        # latency figures describe one configuration.
        best = min(lat_med, key=lambda r: r[1])[0]
        report(name, "infer_b1", "latency_ms_median", lat_med, False)
        for v, val in lat_p90:
            print("# torch %s infer_b1 latency_ms_p90 %.4g %s" % (name, val, v))
        print("torch %s infer_b1 latency_ms_p90 %.4f %s"
              % (name, dict(lat_p90)[best], best))
        report(name, "infer_b%d" % args.big_batch, "images_per_s", thr, True)


if __name__ == "__main__":
    main()
