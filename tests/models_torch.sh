#!/bin/bash
# models_torch.sh BUILD_DIR — cross-check the model zoo against PyTorch.
#
# Builds every zoo architecture of shared/design/models.md independently in
# PyTorch and compares, for several input sizes, with `qualm info --json`:
# the total trainable parameter count, the multiply-accumulates of the conv
# and linear layers, and the parameter count of every conv / batch-norm /
# linear layer in execution order. Skips (exit 0) when the CLI or a Python
# with torch is not available (Debian's python3-torch lives in
# /usr/bin/python3; a venv python3 on PATH usually lacks it).
set -euo pipefail
build=${1:-build}
qualm="$build/qualm"
py=/usr/bin/python3
if [ ! -x "$qualm" ]; then
    echo "SKIP: $qualm not built"
    exit 0
fi
if ! "$py" -c "import torch" 2>/dev/null; then
    echo "SKIP: $py has no torch"
    exit 0
fi

"$py" - "$qualm" <<'EOF'
import json, subprocess, sys
import torch
import torch.nn as nn

torch.set_num_threads(1)
qualm = sys.argv[1]

def conv_bn(cin, cout, k, stride, pad, groups=1):
    return [nn.Conv2d(cin, cout, k, stride, pad, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)]

class Block(nn.Module):
    """CIFAR BasicBlock with a 1x1 projection when the shape changes."""
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1, self.b1 = conv_bn(cin, cout, 3, stride, 1)
        self.c2, self.b2 = conv_bn(cout, cout, 3, 1, 1)
        self.proj = None
        if stride != 1 or cin != cout:
            self.proj = nn.Sequential(*conv_bn(cin, cout, 1, stride, 0))
    def forward(self, x):
        y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
        s = self.proj(x) if self.proj is not None else x
        return torch.relu(y + s)

def resnet(n, cin, k):
    layers = conv_bn(cin, 16, 3, 1, 1) + [nn.ReLU()]
    c = 16
    for s, w in enumerate((16, 32, 64)):
        for b in range(n):
            layers.append(Block(c, w, 2 if (s > 0 and b == 0) else 1))
            c = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(64, k))

def mobilenet(alpha, cin, k, hw):
    widths = (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
    small = (1, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1, 2, 1)
    large = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
    strides, s0 = (small, 1) if hw <= 64 else (large, 2)
    c = max(1, int(alpha * 32 + 0.5))
    layers = conv_bn(cin, c, 3, s0, 1) + [nn.ReLU6()]
    for w, s in zip(widths, strides):
        o = max(1, int(alpha * w + 0.5))
        layers += conv_bn(c, c, 3, s, 1, groups=c) + [nn.ReLU6()]
        layers += conv_bn(c, o, 1, 1, 0) + [nn.ReLU6()]
        c = o
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(c, k))

def duq_cnn(cin, k, hw):
    layers, c = [], cin
    for w, pad in ((64, 1), (128, 1), (128, 0)):
        layers += conv_bn(c, w, 3, 1, pad) + [nn.ReLU(), nn.MaxPool2d(2, 2)]
        c = w
    side = ((hw // 2) // 2 - 2) // 2
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(side * side * 128, 256),
                         nn.ReLU(), nn.Linear(256, k))

def torch_model(name, hw, cin, k):
    if name.startswith("resnet"):
        return resnet((int(name[6:]) - 2) // 6, cin, k)
    if name == "duq_cnn":
        return duq_cnn(cin, k, hw)
    alpha = {"mobilenet_v1": 0.5, "mobilenet_v1_100": 1.0,
             "mobilenet_v1_050": 0.5, "mobilenet_v1_025": 0.25}[name]
    return mobilenet(alpha, cin, k, hw)

def torch_profile(model, hw, cin):
    """Per-layer params in execution order, conv/linear MACs, output."""
    layers, macs = [], [0]
    def hook(m, inp, out):
        layers.append(sum(p.numel() for p in m.parameters(recurse=False)))
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            macs[0] += out[0].numel() * kh * kw * m.in_channels // m.groups
        elif isinstance(m, nn.Linear):
            macs[0] += m.in_features * m.out_features
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)):
            m.register_forward_hook(hook)
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, cin, hw, hw))
    total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, macs[0], layers, tuple(out.shape)

cases = []
for name in ("resnet8", "resnet20", "resnet32", "duq_cnn"):
    cases += [(name, 28, 1, 10), (name, 32, 3, 10)]
for name in ("mobilenet_v1", "mobilenet_v1_025", "mobilenet_v1_050", "mobilenet_v1_100"):
    cases += [(name, 28, 1, 10), (name, 96, 1, 30)]
cases += [("mobilenet_v1_100", 224, 3, 1000), ("resnet20", 96, 1, 30)]

failures = 0
for name, hw, cin, k in cases:
    tag = f"{name} {hw}x{hw}x{cin} K={k}"
    out = subprocess.run([qualm, "info", "--model", name, "--height", str(hw),
                          "--width", str(hw), "--channels", str(cin),
                          "--classes", str(k), "--json"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        print(f"FAIL {tag}: qualm info exited {out.returncode}: {out.stderr.strip()}")
        failures += 1
        continue
    q = json.loads(out.stdout)
    q_layers = [l["params"] for l in q["layers"]
                if l["op"] in ("conv2d", "batchnorm", "linear")]
    total, macs, layers, shape = torch_profile(torch_model(name, hw, cin, k), hw, cin)
    bad = []
    if q["params"] != total:
        bad.append(f"params {q['params']} vs torch {total}")
    if q["macs"] != macs:
        bad.append(f"macs {q['macs']} vs torch {macs}")
    if q_layers != layers:
        first = next((i for i, (a, b) in enumerate(zip(q_layers, layers)) if a != b),
                     min(len(q_layers), len(layers)))
        bad.append(f"per-layer params differ first at layer {first} "
                   f"({len(q_layers)} vs {len(layers)} layers)")
    if q["outputs"] != k or shape != (1, k):
        bad.append(f"outputs {q['outputs']} vs torch {shape}")
    print(("FAIL " if bad else "ok   ") + f"{tag}: params {total}, macs {macs}"
          + ("; " + "; ".join(bad) if bad else ""))
    failures += bool(bad)
print(f"{len(cases) - failures} of {len(cases)} architectures match PyTorch")
sys.exit(1 if failures else 0)
EOF
