#!/usr/bin/env bash
# qualm predict dumps for the four model kinds (float, int8, fp16,
# dynamic): sizes; the int8 input dump equals qlm_quantize_f32 of the
# float input dump with the model's input scale / zero point (recomputed
# in NumPy: float32 division, round half away from zero, clamp); the fp16
# input and output dumps are exactly binary16 values and the input equals
# NumPy's float16 rounding of the float input; eval and predict agree;
# int8 eval with the optimized kernels on 2 threads equals eval --ref.
# NumPy checks need /usr/bin/python3 with numpy (SKIPped otherwise).
set -uo pipefail
BUILD=${1:?usage: predict_dumps.sh BUILD_DIR}
QUALM="$BUILD/qualm"
PY=${QUALM_SYSTEM_PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${QUALM_DATA:-}" ]; then
  echo "SKIP: Fashion-MNIST missing"; echo "0 passed, 0 failed"; exit 0
fi
"$QUALM" train --model resnet8 --epochs 1 --batch 64 --max-train 256 --max-val 200 --threads 2 --quiet \
  --out "$tmp/m.qlm" >/dev/null || { echo "FAIL: could not train a small model"; exit 1; }
"$QUALM" quantize "$tmp/m.qlm" --mode ptq --calib 100 --out "$tmp/int8.qlm" >/dev/null || bad "quantize ptq"
"$QUALM" quantize "$tmp/m.qlm" --mode fp16 --out "$tmp/fp16.qlm" >/dev/null || bad "quantize fp16"
"$QUALM" quantize "$tmp/m.qlm" --mode dynamic --out "$tmp/dynamic.qlm" >/dev/null || bad "quantize dynamic"

N=37
declare -A ELEM=([m]=4 [int8]=1 [fp16]=4 [dynamic]=4)
for k in m int8 fp16 dynamic; do
  "$QUALM" predict "$tmp/$k.qlm" --split val --limit $N --dump-input "$tmp/$k.in" --dump-output "$tmp/$k.out" \
    2>"$tmp/$k.err" || { bad "predict $k: $(cat "$tmp/$k.err")"; continue; }
  [ "$(wc -l <"$tmp/$k.err")" -eq 1 ] && grep -q "$N samples" "$tmp/$k.err" && ok || bad "predict $k summary: $(cat "$tmp/$k.err")"
  [ "$(stat -c %s "$tmp/$k.in")" -eq $((N * 784 * ELEM[$k])) ] && ok || bad "$k input dump size"
  [ "$(stat -c %s "$tmp/$k.out")" -eq $((N * 10 * ELEM[$k])) ] && ok || bad "$k output dump size"
done
# The summary's accuracy is eval's on the same samples.
for k in int8 fp16; do
  acc=$("$QUALM" eval "$tmp/$k.qlm" --split val --limit $N --json | sed 's/.*"accuracy": \([0-9.]*\).*/\1/')
  want=$(awk -v a="$acc" 'BEGIN { printf "%.2f%%", 100 * a }')
  grep -q "accuracy $want" "$tmp/$k.err" && ok || bad "predict $k accuracy != eval $want: $(cat "$tmp/$k.err")"
done
# int8 eval: optimized kernels on 2 threads = reference kernels (--ref),
# accuracy and NLL to the last printed digit.
strip_time() { sed 's/, "seconds": [0-9.]*//'; }
e_opt=$("$QUALM" eval "$tmp/int8.qlm" --split val --limit $N --batch 16 --threads 2 --json | strip_time)
e_ref=$("$QUALM" eval "$tmp/int8.qlm" --split val --limit $N --batch 16 --threads 1 --ref --json | strip_time)
[ -n "$e_opt" ] && [ "$e_opt" = "$e_ref" ] && ok || bad "int8 eval optimized ($e_opt) != --ref ($e_ref)"

if ! "$PY" -c 'import numpy' >/dev/null 2>&1; then
  echo "SKIP: $PY lacks numpy (dump value checks)"; echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit
fi
"$QUALM" info "$tmp/int8.qlm" --json >"$tmp/int8.json" || bad "info --json"
"$PY" - "$tmp" <<'PYEOF' && ok || bad "dump values (see above)"
import json, sys
import numpy as np
d = sys.argv[1]
fails = 0
def check(cond, what):
    global fails
    if not cond:
        fails += 1
        print("FAIL:", what)
x = np.fromfile(d + "/m.in", dtype="<f4")
t = json.load(open(d + "/int8.json"))["tensors"]
q_in = [u for u in t if u["op"] == "quantize"][0]
s, zp = np.float32(q_in["scale"]), q_in["zero_point"]
r = (x / s).astype(np.float64)            # float32 division, as qlm_quantize_f32
r = np.sign(r) * np.floor(np.abs(r) + 0.5)  # roundf: half away from zero
q = np.clip(r, -128 - zp, 127 - zp).astype(np.int64) + zp
got = np.fromfile(d + "/int8.in", dtype=np.int8)
check(np.array_equal(got.astype(np.int64), q), "int8 input dump != quantize(float input): %d differ" % int((got != q).sum()))
for k in ("fp16.in", "fp16.out"):
    v = np.fromfile(d + "/" + k, dtype="<f4")
    check(np.array_equal(v.astype(np.float16).astype(np.float32), v), k + " holds values that are not binary16")
f16 = np.fromfile(d + "/fp16.in", dtype="<f4")
check(np.array_equal(f16, x.astype(np.float16).astype(np.float32)), "fp16 input != numpy float16(float input)")
check(np.any(f16 != x), "fp16 input identical to the float input: no rounding happened")
dyn = np.fromfile(d + "/dynamic.in", dtype="<f4")
check(np.array_equal(dyn, x), "dynamic input dump != float input dump")
for k in ("m", "fp16", "dynamic"):
    o = np.fromfile(d + "/" + k + ".out", dtype="<f4").reshape(-1, 10)
    check(np.all(np.isfinite(o)), k + " output not finite")
fo = np.fromfile(d + "/m.out", dtype="<f4").reshape(-1, 10)
for k in ("fp16", "dynamic"):
    o = np.fromfile(d + "/" + k + ".out", dtype="<f4").reshape(-1, 10)
    check(np.max(np.abs(o - fo)) < 0.1 * (1 + np.max(np.abs(fo))), k + " logits far from float")
sys.exit(1 if fails else 0)
PYEOF
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
