#!/usr/bin/env bash
# bench/run.sh — qualm vs PyTorch on the same models, threads and figures.
#
#   bash bench/run.sh [--threads T] [--quick] [--no-torch] [--model NAME]...
#   bash bench/run.sh --table-only     # re-print the table of the last run
#   bash bench/run.sh --int8 [--quick] [--no-torch]   # int8 runtime only:
#                       bench_int8 (qualm vs TFLite 2.2 and PyTorch int8)
#
# Builds bench_train (Release) in $QUALM_BUILD_DIR (default: build), runs it
# and bench/torch_peer.py with T threads (default 2), and prints a table of
# the ratio qualm/PyTorch per figure. Raw outputs are kept in
# $QUALM_BENCH_OUT (default: runs/bench). PyTorch comes from Debian's
# python3-torch (`bash scripts/setup.sh --bench`); set QUALM_PYTHON to use
# another interpreter. See docs/bench.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

THREADS=2
QUICK=()
MODELS=()
TORCH=1
RUN=1
INT8=0
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=${2:?--threads needs a value}; shift ;;
    --quick) QUICK=(--quick) ;;
    --no-torch) TORCH=0 ;;
    --table-only) RUN=0 ;;
    --int8) INT8=1 ;;
    --model) MODELS+=(--model "${2:?--model needs a value}"); shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
case "$THREADS" in ''|*[!0-9]*|0) echo "bench/run.sh: --threads must be a positive integer" >&2; exit 2 ;; esac

BUILD_DIR=${QUALM_BUILD_DIR:-build}
OUT=${QUALM_BENCH_OUT:-runs/bench}
PY=${QUALM_PYTHON:-/usr/bin/python3}
mkdir -p "$OUT"

if [ "$INT8" = 1 ]; then # int8 runtime: 1 and 2 threads, ratios printed by bench_int8
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD_DIR" -j"$(nproc)" --target bench_int8 >/dev/null
  INT8_ARGS=("${QUICK[@]}"); [ "$TORCH" = 1 ] || INT8_ARGS+=(--no-torch)
  QUALM_SOURCE_DIR=$ROOT QUALM_PYTHON=$PY "$BUILD_DIR/bench_int8" "${INT8_ARGS[@]}" | tee "$OUT/int8.txt"
  exit "${PIPESTATUS[0]}"
fi

run_benchmarks() {
  echo "== building bench_train in $BUILD_DIR (Release)"
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD_DIR" -j"$(nproc)" --target bench_train >/dev/null

  # Both sides get the same thread budget, also for the libraries below them.
  export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS

  echo "== qualm: bench_train --threads $THREADS"
  "$BUILD_DIR/bench_train" --threads "$THREADS" "${QUICK[@]}" "${MODELS[@]}" | tee "$OUT/qualm.txt"

  if [ "$TORCH" = 1 ]; then
    "$PY" -c 'import torch' 2>/dev/null \
      || { echo "bench/run.sh: $PY has no torch; run 'bash scripts/setup.sh --bench' or set QUALM_PYTHON" >&2; exit 1; }
    echo "== torch: torch_peer.py --threads $THREADS"
    "$PY" bench/torch_peer.py --threads "$THREADS" "${QUICK[@]}" "${MODELS[@]}" | tee "$OUT/torch.txt"
  else
    : >"$OUT/torch.txt"
  fi
}

[ "$RUN" = 1 ] && run_benchmarks
[ -s "$OUT/qualm.txt" ] || { echo "bench/run.sh: no $OUT/qualm.txt to tabulate" >&2; exit 1; }
touch "$OUT/torch.txt"

echo
echo "== qualm vs PyTorch ($(grep -m1 -o "threads [0-9]*" "$OUT/qualm.txt" || echo "threads ?"))"
echo "   ratio = qualm/torch of the figure; speed-up > 1 means qualm is faster"
echo "   (throughput: qualm/torch; latency: torch/qualm)"
awk '
  /^#/ || NF < 4 { next }
  { key = $2 " " $3 " " $4; if (!(key in seen)) { seen[key] = 1; order[n++] = key } }
  $1 == "qualm" { q[key] = $5 }
  $1 == "torch" { t[key] = $5; v[key] = (NF >= 6 ? $6 : "") }
  END {
    printf "%-18s %-11s %-18s %12s %12s %-14s %8s %9s\n", "model", "figure", "unit",
           "qualm", "torch", "(torch var.)", "ratio", "speed-up"
    for (i = 0; i < n; i++) {
      split(order[i], k, " ")
      qs = (order[i] in q) ? sprintf("%.3f", q[order[i]]) : "-"
      ts = (order[i] in t) ? sprintf("%.3f", t[order[i]]) : "-"
      ratio = "-"; speed = "-"
      if ((order[i] in q) && (order[i] in t) && q[order[i]] > 0 && t[order[i]] > 0) {
        ratio = sprintf("%.3f", q[order[i]] / t[order[i]])
        speed = (k[3] ~ /^latency/) ? sprintf("%.3fx", t[order[i]] / q[order[i]]) \
                                    : sprintf("%.3fx", q[order[i]] / t[order[i]])
      }
      printf "%-18s %-11s %-18s %12s %12s %-14s %8s %9s\n", k[1], k[2], k[3], qs, ts,
             v[order[i]], ratio, speed
    }
  }' "$OUT/qualm.txt" "$OUT/torch.txt" | tee "$OUT/table.txt"
