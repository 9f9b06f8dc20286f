#!/usr/bin/env bash
# scripts/main.sh — the main job: set up, build, then run the quick study
# (studies/quick.json: resnet8 and mobilenet_v1_050 x softmax, edl, duq, ddu,
# mcdropout x fp32, fp16, PTQ int8, QAT int8 and the float control of every
# QAT cell) into runs/quick/, and print where the report is.
# Extra arguments are passed to `qualm study` (e.g. --jobs 2).
# A killed run resumes where it stopped when started again.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BUILD_DIR=${QUALM_BUILD_DIR:-build}
STUDY=${QUALM_STUDY:-studies/quick.json}
OUT=${QUALM_STUDY_OUT:-runs/quick}

QUALM_BUILD_DIR=$BUILD_DIR bash scripts/setup.sh
QLM=$BUILD_DIR/qualm
[ -x "$QLM" ] || { echo "main.sh: $QLM was not built" >&2; exit 1; }

mkdir -p "$(dirname "$OUT")"
echo "== qualm study $STUDY --out $OUT"
"$QLM" study "$STUDY" --out "$OUT" --jobs "$(nproc)" "$@"
echo "== results: $OUT/results.db (qualm results --db $OUT/results.db)"
echo "== report:  $ROOT/$OUT/report.html"
