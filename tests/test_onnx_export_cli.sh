#!/usr/bin/env bash
# qualm export --format onnx from the command line: a float, an int8 (PTQ)
# and an fp16 model of a briefly trained resnet8 export as fp32, QDQ and
# fp16 ONNX files that onnx.checker accepts (when python3-onnx is there);
# a dynamic model, --io, a truncated file and an unknown format give one
# clear error line and the documented exit code. Exit 77 (skipped) without
# Fashion-MNIST.
set -uo pipefail
BUILD=${1:?usage: test_onnx_export_cli.sh BUILD_DIR}
QUALM="$BUILD/qualm"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# expect CODE PATTERN -- command...: exit code CODE and output matching PATTERN
expect() {
  local code=$1 pattern=$2; shift 3
  "$@" >"$tmp/out" 2>&1; local rc=$?
  if [ "$rc" -ne "$code" ]; then bad "$* exited $rc, want $code: $(head -c 300 "$tmp/out")"; return; fi
  if [ -n "$pattern" ] && ! grep -qE -- "$pattern" "$tmp/out"; then
    bad "$*: output lacks /$pattern/: $(head -c 300 "$tmp/out")"; return; fi
  ok
}

if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${QUALM_DATA:-}" ]; then
  echo "SKIP: Fashion-MNIST missing"; exit 77
fi

"$QUALM" export --help | grep -q "tflite|onnx" && ok || bad "export --help lacks onnx"
"$QUALM" train --model resnet8 --epochs 1 --max-train 256 --max-val 64 --threads 1 --quiet \
  --out "$tmp/f.qlm" >/dev/null 2>&1 || { echo "FAIL: qualm train"; exit 1; }
"$QUALM" quantize "$tmp/f.qlm" --mode ptq --calib 64 --out "$tmp/q.qlm" >/dev/null 2>&1 || bad "quantize ptq"
"$QUALM" quantize "$tmp/f.qlm" --mode fp16 --out "$tmp/h.qlm" >/dev/null 2>&1 || bad "quantize fp16"
"$QUALM" quantize "$tmp/f.qlm" --mode dynamic --out "$tmp/d.qlm" >/dev/null 2>&1 || bad "quantize dynamic"

expect 0 "ONNX fp32 model \(IR 8, opset 13\)" -- "$QUALM" export "$tmp/f.qlm" --format onnx --out "$tmp/f.onnx"
expect 0 "ONNX qdq model" -- "$QUALM" export "$tmp/q.qlm" --format onnx --out "$tmp/q.onnx"
expect 0 "ONNX fp16 model" -- "$QUALM" export "$tmp/h.qlm" --format onnx --out "$tmp/h.onnx"
expect 1 "d.qlm: a dynamic model has no ONNX form" -- "$QUALM" export "$tmp/d.qlm" --format onnx --out "$tmp/d.onnx"
[ ! -e "$tmp/d.onnx" ] && ok || bad "a refused export left a file"
expect 2 "--io applies to --format tflite only" -- "$QUALM" export "$tmp/q.qlm" --format onnx --io uint8 --out "$tmp/x.onnx"
expect 2 "accepted: tflite\|onnx" -- "$QUALM" export "$tmp/q.qlm" --format caffe --out "$tmp/x.onnx"
head -c 200 "$tmp/q.qlm" > "$tmp/t.qlm"
expect 1 "t.qlm" -- "$QUALM" export "$tmp/t.qlm" --format onnx --out "$tmp/x.onnx"
expect 1 "nothere.qlm" -- "$QUALM" export "$tmp/nothere.qlm" --format onnx --out "$tmp/x.onnx"

if /usr/bin/python3 -c 'import onnx.checker' 2>/dev/null; then
  for f in f q h; do
    /usr/bin/python3 -c 'import onnx, sys
m = onnx.load(sys.argv[1]); onnx.checker.check_model(m, full_check=True)
kinds = {n.op_type for n in m.graph.node}
want = {"f": "Gemm", "q": "QuantizeLinear", "h": "Cast"}[sys.argv[2]]
assert want in kinds, (want, kinds)
assert m.graph.input[0].name == "input" and m.graph.output[0].name == "output"' "$tmp/$f.onnx" "$f" \
      && ok || bad "onnx.checker on $f.onnx"
  done
else
  echo "note: python3-onnx missing, onnx.checker not run"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
