#!/usr/bin/python3
"""PyTorch int8 peer of bench/bench_int8.c: the same models, the same figures.

Builds resnet20 and mobilenet_v1_050 as bench/torch_peer.py does (the
architectures of shared/design/models.md, 1x28x28 input, 10 classes), with
random weights and random batch-norm statistics, quantizes them with FX
graph mode post-training static quantization (conv + batch norm + ReLU
fused, the engine's default qconfig: per-channel int8 weights, per-tensor
activations; calibration on random images), then TorchScript (trace +
freeze). Quantized engines of Debian's python3-torch: onednn and qnnpack
(no fbgemm). For each engine and input memory format, and each thread
count (torch.set_num_threads), it tries every variant briefly (comment
lines), then measures the fastest one:

  b1_median / b1_p90   batch-1 latency (ms) over --runs runs (float in,
                       float logits out: quantize ... dequantize, as
                       qualm's runtime)
  b256                 batch-256 throughput (images/s)

and prints data lines

  torch <model> <threads> <figure> <unit> <value> <engine>/<format>

(p90 is the variant with the best median's). bench_int8 runs this script
and divides its own figures by these.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from torch.ao.quantization import get_default_qconfig_mapping  # noqa: E402
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx  # noqa: E402

from torch_peer import FMNIST_MEAN, FMNIST_STD, build  # noqa: E402


def random_images(gen, n, memory_format):
    x = (torch.rand(n, 1, 28, 28, generator=gen) - FMNIST_MEAN) / FMNIST_STD
    return x.contiguous(memory_format=memory_format)


def randomize_bn(model, gen):
    """Batch-norm statistics away from the identity (as bench_int8.c)."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = 0.5 + torch.rand(c, generator=gen)
            m.bias.data = 0.5 * (torch.rand(c, generator=gen) - 0.5)
            m.running_mean = 0.4 * (torch.rand(c, generator=gen) - 0.5)
            m.running_var = 0.5 + 1.5 * torch.rand(c, generator=gen)


def quantized_model(name, engine, memory_format, n_calib):
    torch.backends.quantized.engine = engine
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model, _ = build(name)
    randomize_bn(model, gen)
    model.eval()
    example = (random_images(gen, 1, memory_format),)
    prepared = prepare_fx(model, get_default_qconfig_mapping(engine), example)
    with torch.no_grad():
        for _ in range(max(1, n_calib // 16)):
            prepared(random_images(gen, 16, memory_format))
        q = convert_fx(prepared)
        return torch.jit.freeze(torch.jit.trace(q, example).eval())


def time_latency(model, memory_format, runs):
    gen = torch.Generator().manual_seed(2)
    x = random_images(gen, 1, memory_format)
    times = []
    with torch.no_grad():
        for _ in range(30):
            model(x)
        for _ in range(runs):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    times.sort()
    n = len(times)
    median = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    p90 = times[max(0, -(-9 * n // 10) - 1)]  # nearest rank, as bench_int8.c
    return median * 1e3, p90 * 1e3


def time_throughput(model, memory_format, batch, steps):
    gen = torch.Generator().manual_seed(3)
    x = random_images(gen, batch, memory_format)
    with torch.no_grad():
        model(x)
        t0 = time.perf_counter()
        for _ in range(steps):
            model(x)
        dt = time.perf_counter() - t0
    return steps * batch / dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2", help="comma list of thread counts")
    ap.add_argument("--model", action="append",
                    help="resnet20 and/or mobilenet_v1_050 (default: both)")
    ap.add_argument("--runs", type=int, default=1000, help="timed batch-1 runs")
    ap.add_argument("--big-batch", type=int, default=256)
    ap.add_argument("--big-steps", type=int, default=4, help="timed batch-256 runs")
    ap.add_argument("--trial-runs", type=int, default=100,
                    help="batch-1 runs of each variant's trial")
    ap.add_argument("--calib", type=int, default=64, help="calibration images")
    ap.add_argument("--engines", default="onednn,qnnpack")
    ap.add_argument("--formats", default="nchw,nhwc")
    args = ap.parse_args()

    fmts = {"nchw": torch.contiguous_format, "nhwc": torch.channels_last}
    engines = [e for e in args.engines.split(",") if e]
    for e in engines:
        if e not in torch.backends.quantized.supported_engines:
            raise SystemExit("torch_int8_peer: engine %s not in this torch (%s)"
                             % (e, torch.backends.quantized.supported_engines))
    formats = [f for f in args.formats.split(",") if f]
    for f in formats:
        if f not in fmts:
            raise SystemExit("torch_int8_peer: unknown format " + f)
    threads = [int(t) for t in args.threads.split(",") if t]
    torch.set_num_interop_threads(1)
    print("# torch %s, quantized engines %s, OMP_NUM_THREADS=%s"
          % (torch.__version__, torch.backends.quantized.supported_engines,
             os.environ.get("OMP_NUM_THREADS", "-")))

    for name in args.model or ["resnet20", "mobilenet_v1_050"]:
        models = {}
        for e in engines:
            for f in formats:
                models[e + "/" + f] = (e, fmts[f], quantized_model(name, e, fmts[f], args.calib))
        for t in threads:
            torch.set_num_threads(t)
            # Trial of every variant (--trial-runs runs, one batch of
            # big_batch / 8), then the full measurement of the fastest only:
            # qnnpack is several times slower here, and timing it 1000 times
            # would take most of the benchmark's budget.
            med, thr = [], []
            for v, (e, mf, m) in models.items():
                torch.backends.quantized.engine = e
                med.append((v, time_latency(m, mf, args.trial_runs)[0]))
                thr.append((v, time_throughput(m, mf, max(1, args.big_batch // 8), 1)))
            for v, val in med:
                print("# torch %s %d trial_b1_median ms %.4g %s" % (name, t, val, v))
            for v, val in thr:
                print("# torch %s %d trial_b%d img_s %.4g %s"
                      % (name, t, max(1, args.big_batch // 8), val, v))
            best = min(med, key=lambda r: r[1])[0]
            e, mf, m = models[best]
            torch.backends.quantized.engine = e
            a, b = time_latency(m, mf, args.runs)
            print("torch %s %d b1_median ms %.5g %s" % (name, t, a, best))
            print("torch %s %d b1_p90 ms %.5g %s" % (name, t, b, best))
            best = max(thr, key=lambda r: r[1])[0]
            e, mf, m = models[best]
            torch.backends.quantized.engine = e
            v = time_throughput(m, mf, args.big_batch, args.big_steps)
            print("torch %s %d b%d img_s %.5g %s" % (name, t, args.big_batch, v, best))
            sys.stdout.flush()

if __name__ == "__main__":
    main()
