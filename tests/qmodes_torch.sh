#!/usr/bin/env bash
# fp16 and dynamic models against an independent PyTorch/NumPy simulation
# (tests/qmodes_sim.py) that reads the .qlm file from its documented layout
# (META, MGRF, HPRM / DPRM), rebuilds the network with torch ops, applies
# the mode's numerics and compares with `qualm predict --dump-output`:
# >= 99 % of the logits must be identical (observed: 100 %). Negative
# control: simulating the dynamic model with batches of 50 instead of 256
# must NOT match (per-batch ranges change the logits).
# Skips when Fashion-MNIST or /usr/bin/python3 with torch is missing.
set -uo pipefail
BUILD=${1:?usage: qmodes_torch.sh BUILD_DIR}
QUALM="$BUILD/qualm"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${QUALM_SYSTEM_PYTHON:-/usr/bin/python3}
if ! "$PY" -c 'import torch, numpy' >/dev/null 2>&1; then
  echo "SKIP: $PY lacks torch/numpy"; echo "0 passed, 0 failed"; exit 0
fi
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${QUALM_DATA:-}" ]; then
  echo "SKIP: Fashion-MNIST missing"; echo "0 passed, 0 failed"; exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
"$QUALM" train --model resnet8 --epochs 1 --batch 64 --max-train 256 --max-val 200 --threads 2 --quiet \
  --out "$tmp/m.qlm" >/dev/null || { echo "FAIL: could not train a small model"; exit 1; }
for mode in fp16 dynamic; do
  "$QUALM" quantize "$tmp/m.qlm" --mode $mode --out "$tmp/$mode.qlm" >/dev/null || { bad "quantize $mode"; continue; }
  "$QUALM" predict "$tmp/$mode.qlm" --limit 300 --dump-input "$tmp/$mode.in" --dump-output "$tmp/$mode.out" \
    2>/dev/null || { bad "predict $mode"; continue; }
  OMP_NUM_THREADS=1 "$PY" "$HERE/qmodes_sim.py" "$tmp/$mode.qlm" "$tmp/$mode.in" "$tmp/$mode.out" 256 99 \
    && ok || bad "$mode: qualm differs from the torch simulation"
done
OMP_NUM_THREADS=1 "$PY" "$HERE/qmodes_sim.py" "$tmp/dynamic.qlm" "$tmp/dynamic.in" "$tmp/dynamic.out" 50 -50 \
  && ok || bad "negative control: dynamic simulated with batch 50 still matches"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
