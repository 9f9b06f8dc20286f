#!/usr/bin/env bash
# scripts/main.sh — the main job: set up, then train resnet8 on
# Fashion-MNIST with the quick profile and evaluate it on the test split.
# Extra arguments are passed to `qualm train` (e.g. --threads 2).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BUILD_DIR=${QUALM_BUILD_DIR:-build}
MODEL=runs/resnet8-quick.qlm

QUALM_BUILD_DIR=$BUILD_DIR bash scripts/setup.sh
QLM=$BUILD_DIR/qualm
[ -x "$QLM" ] || { echo "main.sh: $QLM was not built" >&2; exit 1; }

mkdir -p runs
echo "== qualm train (resnet8, fashion-mnist, quick profile) -> $MODEL"
"$QLM" train --model resnet8 --data fashion-mnist --profile quick --out "$MODEL" "$@"
echo "== qualm eval $MODEL on the fashion-mnist test split"
"$QLM" eval "$MODEL" --data fashion-mnist --split test
