#!/usr/bin/env bash
# qualm bench through the command line: usage errors, then the four
# scenarios with short runs on a tiny float model and its int8 PTQ, --json
# parsed by python3, --accuracy passing, and the UE methods.
set -euo pipefail
BUILD=${1:?usage: bench_cli.sh BUILD_DIR}
QUALM="$BUILD/qualm"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
expect_rc() { # want_rc pattern args...
  local want=$1 pat=$2; shift 2
  local rc=0; "$QUALM" bench "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
  [ "$rc" = "$want" ] || fail "qualm bench $*: rc $rc, want $want ($(cat "$tmp/err"))"
  [ -z "$pat" ] || grep -q -- "$pat" "$tmp/err" || fail "qualm bench $*: stderr lacks '$pat': $(cat "$tmp/err")"
}

"$QUALM" bench --help | grep -q -- "--latency-bound-ms" || fail "--help lacks --latency-bound-ms"
"$QUALM" --help | grep -q "bench" || fail "qualm --help lacks bench"
expect_rc 2 "--scenario" "$tmp/m.qlm"
expect_rc 2 "bogus" "$tmp/m.qlm" --scenario bogus
expect_rc 2 "" "$tmp/m.qlm" --scenario offline --threads 0
expect_rc 2 "" "$tmp/m.qlm" --scenario offline --method nosuch
expect_rc 2 "target-qps" "$tmp/m.qlm" --scenario server --fixed-rate
expect_rc 1 "missing.qlm" "$tmp/missing.qlm" --scenario offline
echo "not a model" > "$tmp/junk.qlm"
expect_rc 1 "junk.qlm" "$tmp/junk.qlm" --scenario singlestream

if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${QUALM_DATA:-}" ]; then
  echo "SKIP: Fashion-MNIST not installed (model part)"; exit 0
fi
"$QUALM" train --model resnet8 --epochs 1 --batch 64 --max-train 256 --max-val 100 --threads 1 --quiet \
  --head-dropout 0.2 --out "$tmp/f.qlm" >/dev/null
"$QUALM" quantize "$tmp/f.qlm" --mode ptq --calib 100 --out "$tmp/q.qlm" >/dev/null
expect_rc 1 "duq" "$tmp/f.qlm" --scenario singlestream --method duq
expect_rc 2 "" "$tmp/f.qlm" --scenario singlestream --method tta --passes 9

short=(--duration 0.05 --sample-count 64 --threads 1 --accuracy --json)
check_json() { # file scenario metric
  python3 - "$1" "$2" "$3" <<'PY' || fail "bad JSON for $2: $(cat "$1")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["scenario"] == sys.argv[2], d["scenario"]
assert d["metric"]["name"] == sys.argv[3], d["metric"]
lat = d["latency_ms"]
assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"], lat
assert lat["min"] <= lat["mean"] <= lat["max"], lat
acc, n = d["accuracy"], d["result"]["samples"]
# a Server search checks the samples of every trial, the result is one run
assert acc["passed"] and n > 0 and (acc["checked"] >= n if d["settings"]["search"] else acc["checked"] == n), acc
assert d["accuracy"]["mismatched"] == 0
m = d["machine"]
assert m["cores"] >= 1 and m["cpu"] and m["qualm_version"] and m["compiler"], m
assert d["metric"]["value"] > 0
PY
}
for model in f q; do
  "$QUALM" bench "$tmp/$model.qlm" --scenario singlestream --min-queries 20 "${short[@]}" > "$tmp/ss.json"
  check_json "$tmp/ss.json" singlestream p90_latency_ms
  "$QUALM" bench "$tmp/$model.qlm" --scenario multistream --min-queries 5 --samples-per-query 3 "${short[@]}" > "$tmp/ms.json"
  check_json "$tmp/ms.json" multistream p99_latency_ms
  python3 -c "import json,sys; d=json.load(open('$tmp/ms.json')); assert d['result']['samples'] == 3 * d['result']['queries']" \
    || fail "multistream samples != 3 x queries"
  "$QUALM" bench "$tmp/$model.qlm" --scenario server --min-queries 30 --latency-bound-ms 1000 --search-trials 3 \
    --target-qps 200 "${short[@]}" > "$tmp/sv.json"
  check_json "$tmp/sv.json" server peak_qps
  "$QUALM" bench "$tmp/$model.qlm" --scenario offline --samples-per-query 100 --batch 16 "${short[@]}" > "$tmp/of.json"
  check_json "$tmp/of.json" offline samples_per_s
  python3 -c "import json; d=json.load(open('$tmp/of.json')); assert d['result']['samples'] == 100 and d['result']['queries'] == 1" \
    || fail "offline query is not 100 samples"
  for meth in mcdropout ensemble tta edl; do
    "$QUALM" bench "$tmp/$model.qlm" --scenario multistream --min-queries 3 --method "$meth" "${short[@]}" > "$tmp/u.json"
    check_json "$tmp/u.json" multistream p99_latency_ms
  done
done
# the table: the metric line and the machine line
"$QUALM" bench "$tmp/q.qlm" --scenario singlestream --min-queries 10 --duration 0 --sample-count 32 > "$tmp/table"
grep -q "^metric p90_latency_ms = " "$tmp/table" || fail "table lacks the metric: $(cat "$tmp/table")"
grep -q "^machine: .*cores, qualm" "$tmp/table" || fail "table lacks the machine: $(cat "$tmp/table")"
# a fixed-rate server run
"$QUALM" bench "$tmp/q.qlm" --scenario server --fixed-rate --target-qps 100 --min-queries 20 "${short[@]}" > "$tmp/fx.json"
check_json "$tmp/fx.json" server p99_latency_ms
echo "bench_cli: ok"
