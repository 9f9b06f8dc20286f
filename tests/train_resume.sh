#!/usr/bin/env bash
# A training run interrupted after a checkpoint (cleanly with --stop-after,
# and by SIGKILL in the middle of an epoch) and resumed with --resume ends
# with a model file identical, byte for byte, to an uninterrupted run.
set -euo pipefail
BUILD=${1:?usage: train_resume.sh BUILD_DIR}
QUALM="$BUILD/qualm"
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${QUALM_DATA:-}" ]; then
  echo "SKIP: Fashion-MNIST not installed"; exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
common=(--model resnet8 --data fashion-mnist --epochs 3 --batch 64 --max-train 640 --max-val 500 --seed 7 --threads 2 --quiet)

"$QUALM" train "${common[@]}" --out "$tmp/full.qlm"

"$QUALM" train "${common[@]}" --out "$tmp/stop.qlm" --stop-after 1
"$QUALM" train "${common[@]}" --out "$tmp/stop.qlm" --resume --stop-after 1
"$QUALM" train "${common[@]}" --out "$tmp/stop.qlm" --resume
cmp "$tmp/full.qlm" "$tmp/stop.qlm" || { echo "FAIL: stop/resume differs from an uninterrupted run"; exit 1; }

# SIGKILL during the second epoch: wait for the first checkpoint, then kill.
"$QUALM" train "${common[@]}" --out "$tmp/kill.qlm" &
pid=$!
for _ in $(seq 1 600); do [ -e "$tmp/kill.qlm" ] && break; sleep 0.05; done
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
[ -e "$tmp/kill.qlm" ] || { echo "FAIL: no checkpoint was written"; exit 1; }
ls "$tmp"/kill.qlm.tmp.* >/dev/null 2>&1 && rm -f "$tmp"/kill.qlm.tmp.*
"$QUALM" train "${common[@]}" --out "$tmp/kill.qlm" --resume
cmp "$tmp/full.qlm" "$tmp/kill.qlm" || { echo "FAIL: kill/resume differs from an uninterrupted run"; exit 1; }

# Resuming with different settings is refused with a clear message.
if "$QUALM" train "${common[@]}" --seed 8 --out "$tmp/full.qlm" --resume 2>"$tmp/err"; then
  echo "FAIL: resume with another seed was accepted"; exit 1
fi
grep -q "seed" "$tmp/err" || { echo "FAIL: unclear message: $(cat "$tmp/err")"; exit 1; }
echo "3 passed, 0 failed"
