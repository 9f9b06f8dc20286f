#!/usr/bin/env bash
# qualm check and qualm export --device through the command line: usage
# errors (exit 2), bad files (exit 1, the file named), and on a small
# trained resnet8 in four forms (float, int8, fp16, dynamic): the Edge TPU
# report and exit codes (0 all mapped, 3 partial, 4 none), the Myriad X
# and CPU profiles, --json parsed by Python's json module, and export
# printing the summary, warning and still writing, or refusing a format the
# device cannot read.
set -uo pipefail
BUILD=${1:?usage: check_cli.sh BUILD_DIR}
QUALM="$BUILD/qualm"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# expect CODE PATTERN -- command...: exit code CODE, stdout+stderr matching PATTERN
expect() {
  local code=$1 pattern=$2; shift 3
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  if [ "$rc" -ne "$code" ]; then bad "$* exited $rc, want $code: $(head -c 300 "$tmp/err")"; return; fi
  if [ -n "$pattern" ] && ! grep -qE -- "$pattern" "$tmp/out" "$tmp/err"; then
    bad "$*: output lacks /$pattern/: $(head -c 300 "$tmp/out") $(head -c 300 "$tmp/err")"; return; fi
  ok
}

# json FILE EXPR: python3 loads FILE (JSON) as d and EXPR must be true
json() {
  python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2" && ok || bad "json $1: $2: $(head -c 300 "$1")"
}

"$QUALM" check --help >"$tmp/out" 2>&1 && grep -q -- "--device edgetpu|myriadx|cpu" "$tmp/out" && ok || bad "check --help"
"$QUALM" export --help | grep -q -- "--device" && ok || bad "export --help lacks --device"
"$QUALM" --help | grep -q "check" && ok || bad "qualm --help lacks check"
expect 2 "--device are required" -- "$QUALM" check
expect 2 "--device are required" -- "$QUALM" check "$tmp/x.qlm"
expect 2 "accepted: edgetpu\|myriadx\|cpu" -- "$QUALM" check "$tmp/x.qlm" --device tpu
expect 2 "accepted: int8\|uint8\|float" -- "$QUALM" check "$tmp/x.qlm" --device edgetpu --io int4
expect 1 "$tmp/missing.qlm" -- "$QUALM" check "$tmp/missing.qlm" --device edgetpu
echo "not a model" >"$tmp/text.qlm"
expect 1 "$tmp/text.qlm" -- "$QUALM" check "$tmp/text.qlm" --device myriadx

if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${QUALM_DATA:-}" ]; then
  echo "$pass passed, $fail failed (Fashion-MNIST missing: model tests skipped)"; [ "$fail" -eq 0 ]; exit
fi
small=(--batch 64 --max-train 256 --max-val 100 --threads 1 --quiet)
"$QUALM" train --model resnet8 --epochs 1 "${small[@]}" --out "$tmp/f.qlm" >/dev/null || bad "train"
"$QUALM" quantize "$tmp/f.qlm" --mode ptq --calib 64 --out "$tmp/q.qlm" >/dev/null || bad "quantize ptq"
"$QUALM" quantize "$tmp/f.qlm" --mode fp16 --out "$tmp/h.qlm" >/dev/null || bad "quantize fp16"
"$QUALM" quantize "$tmp/f.qlm" --mode dynamic --out "$tmp/d.qlm" >/dev/null || bad "quantize dynamic"

"$QUALM" train --quant qat --from "$tmp/f.qlm" --epochs 1 "${small[@]}" --out "$tmp/qat.qlm" >/dev/null || bad "train --quant qat"
expect 4 "QAT checkpoint" -- "$QUALM" check "$tmp/qat.qlm.ckpt" --device edgetpu
expect 0 "([0-9]+) of \\1 ops mapped to the Edge TPU$" -- "$QUALM" check "$tmp/qat.qlm" --device edgetpu

# a corrupted model: one byte flipped in the middle
cp "$tmp/q.qlm" "$tmp/c.qlm"
size=$(stat -c %s "$tmp/c.qlm")
printf '\x5a' | dd of="$tmp/c.qlm" bs=1 seek=$((size / 2)) conv=notrunc status=none
expect 1 "$tmp/c.qlm" -- "$QUALM" check "$tmp/c.qlm" --device edgetpu

# The Edge TPU
expect 0 "summary +([0-9]+) of \\1 ops mapped to the Edge TPU$" -- "$QUALM" check "$tmp/q.qlm" --device edgetpu
expect 0 "of [0-9]+ ops mapped to the Edge TPU" -- "$QUALM" check "$tmp/q.qlm" --device edgetpu --io uint8
expect 3 "CPU: op 1 \(QUANTIZE 'input'\): float input" -- "$QUALM" check "$tmp/q.qlm" --device edgetpu --io float
expect 4 "CPU from op 1 \(CONV_2D 'stem.conv'\): float32 tensors" -- "$QUALM" check "$tmp/f.qlm" --device edgetpu
expect 4 "CPU from op 1 \(CONV_2D 'stem.conv'\): float16 tensors" -- "$QUALM" check "$tmp/h.qlm" --device edgetpu
expect 4 "CPU from op 1 \(CONV_2D 'stem.conv'\): dynamic-range quantization" -- "$QUALM" check "$tmp/d.qlm" --device edgetpu

# JSON for every model x device; its exit_code field equals the exit status
for m in q f h d; do
  for dev in edgetpu myriadx cpu; do
    "$QUALM" check "$tmp/$m.qlm" --device "$dev" --json >"$tmp/$m.$dev.json"; rc=$?
    json "$tmp/$m.$dev.json" "d['exit_code'] == $rc and d['device'] == '$dev' and len(d['rows']) == d['ops'] and d['mapped'] == sum(r['status'] == 'mapped' for r in d['rows'])"
  done
done
json "$tmp/q.edgetpu.json" "d['mapped'] == d['ops'] and d['numerics'] == 'int8' and d['first_unsupported'] is None and d['exit_code'] == 0"
json "$tmp/f.edgetpu.json" "d['mapped'] == 0 and d['first_unsupported'] == 1 and d['rows'][0]['tensor'] == 'stem.conv' and 'float32' in d['rows'][0]['reason'] and d['exit_code'] == 4"
json "$tmp/d.edgetpu.json" "'dynamic-range' in d['rows'][0]['reason'] and d['model'] == 'dynamic'"
for m in q f h d; do
  json "$tmp/$m.myriadx.json" "d['mapped'] == d['ops'] and d['numerics'] == 'fp16' and d['exit_code'] == 0"
  json "$tmp/$m.cpu.json" "d['mapped'] == d['ops'] and d['exit_code'] == 0"
done
json "$tmp/q.myriadx.json" "'runs it as FP16' in d['note']"
json "$tmp/f.myriadx.json" "'FP16' in d['note'] and d['rows'][0]['openvino'] == 'Convolution'"

# qualm export --device: summary first, a warning but a file for a float model,
# a refusal (and no file) for a format the device cannot read
expect 0 "edgetpu: ([0-9]+) of \\1 ops mapped to the Edge TPU" -- "$QUALM" export "$tmp/q.qlm" --format tflite --device edgetpu --out "$tmp/q.tflite"
[ -s "$tmp/q.tflite" ] && ok || bad "export --device edgetpu wrote nothing"
expect 0 "warning: not every op of .*f.qlm maps to the Edge TPU" -- "$QUALM" export "$tmp/f.qlm" --format tflite --device edgetpu --out "$tmp/f.tflite"
grep -q "0 of [0-9]* ops mapped to the Edge TPU; CPU from op 1" "$tmp/out" && ok || bad "export summary: $(cat "$tmp/out")"
[ -s "$tmp/f.tflite" ] && ok || bad "export of a float model with --device edgetpu wrote nothing"
expect 2 "cannot target --device myriadx" -- "$QUALM" export "$tmp/q.qlm" --format tflite --device myriadx --out "$tmp/m.tflite"
[ ! -e "$tmp/m.tflite" ] && ok || bad "a refused export wrote a file"
expect 0 "cpu: ([0-9]+) of \\1 ops mapped to the CPU" -- "$QUALM" export "$tmp/q.qlm" --format tflite --device cpu --out "$tmp/c.tflite"
expect 1 "$tmp/missing.qlm" -- "$QUALM" export "$tmp/missing.qlm" --format tflite --device edgetpu --out "$tmp/x.tflite"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
