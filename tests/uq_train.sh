#!/usr/bin/env bash
# UE methods in training (docs/uq.md): every method trains and stores its
# head (META method=, section UQHD); DUQ / DDU / EDL runs stopped after an
# epoch and resumed end byte-identical to uninterrupted ones (head, centroids
# and spectral-norm state included); qualm quantize carries the head into
# int8 / fp16 / dynamic files; QAT and the float control of an EDL model
# keep its head and follow --profile's schedule; spectral normalization shows
# in the saved weights (tests/uq_sn_check.py).
set -euo pipefail
BUILD=${1:?usage: uq_train.sh BUILD_DIR}
QUALM="$BUILD/qualm"
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${QUALM_DATA:-}" ]; then
  echo "SKIP: Fashion-MNIST not installed"; exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
common=(--model resnet8 --epochs 2 --batch 64 --max-train 320 --max-val 128 --seed 3 --threads 1 --quiet)
pass=0
has_method() { grep -aq "method=$2" "$1" && grep -aq "UQHD" "$1"; }

for m in softmax temperature edl duq ddu mcdropout; do
  "$QUALM" train "${common[@]}" --method "$m" --out "$tmp/$m.qlm" >/dev/null
  if [ "$m" != softmax ]; then
    has_method "$tmp/$m.qlm" "$m" || { echo "FAIL: $m model lacks its head"; exit 1; }
  elif grep -aq "method=" "$tmp/softmax.qlm"; then
    echo "FAIL: softmax model has a method key"; exit 1
  fi
done
pass=$((pass + 1))

for m in edl duq ddu; do
  "$QUALM" train "${common[@]}" --method "$m" --out "$tmp/$m.stop.qlm" --stop-after 1 >/dev/null
  "$QUALM" train "${common[@]}" --method "$m" --out "$tmp/$m.stop.qlm" --resume >/dev/null
  cmp "$tmp/$m.qlm" "$tmp/$m.stop.qlm" || { echo "FAIL: $m stop/resume differs"; exit 1; }
done
pass=$((pass + 1))

# spectral normalization is in the saved weights: every backbone weight's largest
# singular value (numpy) within 25 % of the bound (one power iteration per step
# lags behind W), well above it without SN
SRC=$(cd "$(dirname "$0")" && pwd)
"$QUALM" train "${common[@]}" --method ddu --sn-coeff 1 --out "$tmp/ddu1.qlm" >/dev/null
sn=$(/usr/bin/python3 "$SRC/uq_sn_check.py" "$tmp/ddu1.qlm")
plain=$(/usr/bin/python3 "$SRC/uq_sn_check.py" "$tmp/softmax.qlm")
awk -v s="$sn" -v p="$plain" 'BEGIN { exit !(s <= 1.25 && p > 1.5) }' ||
  { echo "FAIL: largest singular value $sn with SN bound 1, $plain without"; exit 1; }
pass=$((pass + 1))

if "$QUALM" train "${common[@]}" --method edl --out "$tmp/duq.qlm" --resume 2>"$tmp/err" >/dev/null; then
  echo "FAIL: resuming a duq checkpoint as edl was accepted"; exit 1
fi
grep -q "method duq" "$tmp/err" || { echo "FAIL: unclear message: $(cat "$tmp/err")"; exit 1; }
pass=$((pass + 1))

for m in duq ddu edl; do
  for mode in ptq fp16 dynamic; do
    "$QUALM" quantize "$tmp/$m.qlm" --mode "$mode" --calib 64 --out "$tmp/$m.$mode.qlm" >/dev/null
    has_method "$tmp/$m.$mode.qlm" "$m" || { echo "FAIL: $mode $m file lacks the head"; exit 1; }
    "$QUALM" info "$tmp/$m.$mode.qlm" >/dev/null
  done
done
pass=$((pass + 1))

# QAT and the float control of the EDL model, quick profile: 1 epoch each.
ft=(--batch 64 --max-train 320 --max-val 128 --seed 3 --threads 1 --quiet --profile quick --json)
"$QUALM" train --quant qat --from "$tmp/edl.qlm" --out "$tmp/edl.qat.qlm" "${ft[@]}" >"$tmp/qat.json"
"$QUALM" train --quant none --from "$tmp/edl.qlm" --out "$tmp/edl.ctl.qlm" "${ft[@]}" >"$tmp/ctl.json"
grep -q '"epochs_run": 1' "$tmp/qat.json" || { echo "FAIL: qat quick is not 1 epoch: $(cat "$tmp/qat.json")"; exit 1; }
grep -q '"epochs_run": 1' "$tmp/ctl.json" || { echo "FAIL: control quick is not 1 epoch: $(cat "$tmp/ctl.json")"; exit 1; }
grep -q '"float-control"' "$tmp/ctl.json" || { echo "FAIL: control JSON: $(cat "$tmp/ctl.json")"; exit 1; }
has_method "$tmp/edl.qat.qlm" edl || { echo "FAIL: QAT model lacks the edl head"; exit 1; }
has_method "$tmp/edl.ctl.qlm" edl || { echo "FAIL: control model lacks the edl head"; exit 1; }
grep -aq "dtype=f32" "$tmp/edl.ctl.qlm" || { echo "FAIL: the control is not a float model"; exit 1; }
"$QUALM" info "$tmp/edl.ctl.qlm" >/dev/null
"$QUALM" train --quant qat --from "$tmp/duq.qlm" --out "$tmp/duq.qat.qlm" "${ft[@]}" >/dev/null
has_method "$tmp/duq.qat.qlm" duq || { echo "FAIL: QAT model lacks the duq head"; exit 1; }
if "$QUALM" train --quant qat --from "$tmp/edl.qlm" --method duq --out "$tmp/x.qlm" "${ft[@]}" 2>"$tmp/err" >/dev/null; then
  echo "FAIL: fine-tuning an edl model as duq was accepted"; exit 1
fi
grep -q "method edl" "$tmp/err" || { echo "FAIL: unclear message: $(cat "$tmp/err")"; exit 1; }
pass=$((pass + 1))

if "$QUALM" train "${common[@]}" --method bogus --out "$tmp/x.qlm" 2>"$tmp/err"; then
  echo "FAIL: unknown method accepted"; exit 1
fi
grep -q "bogus" "$tmp/err" || { echo "FAIL: unclear message: $(cat "$tmp/err")"; exit 1; }
pass=$((pass + 1))
echo "$pass passed, 0 failed"
