#!/usr/bin/env bash
# qualm train --quant qat through the command line: usage errors, a short
# run whose --out is an int8 model that qualm eval reads and whose --ckpt
# is a QAT checkpoint, and a refused --resume from a float model.
set -euo pipefail
BUILD=${1:?usage: qat_cli.sh BUILD_DIR}
QUALM="$BUILD/qualm"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

rc=0; "$QUALM" train --quant qat --out "$tmp/x.qlm" 2>"$tmp/err" || rc=$?
[ "$rc" = 2 ] && grep -q -- "--from" "$tmp/err" || fail "--quant qat without --from: rc $rc"
rc=0; "$QUALM" train --from "$tmp/f.qlm" --out "$tmp/x.qlm" 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "--from without --quant qat: rc $rc"
rc=0; "$QUALM" train --quant qat --from "$tmp/missing.qlm" --out "$tmp/x.qlm" 2>"$tmp/err" || rc=$?
[ "$rc" = 1 ] && grep -q "missing.qlm" "$tmp/err" || fail "missing --from: rc $rc"
"$QUALM" train --help | grep -q -- "--freeze-bn-epoch" || fail "--help lacks --freeze-bn-epoch"

if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${QUALM_DATA:-}" ]; then
  echo "SKIP: Fashion-MNIST not installed (data part)"; exit 0
fi
small=(--batch 64 --max-train 256 --max-val 100 --threads 1 --quiet)
"$QUALM" train --model resnet8 --epochs 1 "${small[@]}" --out "$tmp/f.qlm"
"$QUALM" train --quant qat --from "$tmp/f.qlm" --epochs 2 "${small[@]}" --out "$tmp/q.qlm" --json > "$tmp/q.json"
grep -q '"val_accuracy_int8"' "$tmp/q.json" || fail "no int8 accuracy in --json: $(cat "$tmp/q.json")"
[ -e "$tmp/q.qlm.ckpt" ] || fail "no checkpoint at <out>.ckpt"
"$QUALM" eval "$tmp/q.qlm" --limit 50 --threads 1 | grep -q "int8\|accuracy" || fail "qualm eval of the int8 model"
"$QUALM" eval "$tmp/q.qlm.ckpt" --limit 50 --threads 1 >/dev/null || fail "qualm eval of the QAT checkpoint"
"$QUALM" info "$tmp/q.qlm" | grep -qi "s8\|int8" || fail "qualm info does not see an int8 model"
# a completed run resumed: nothing to train, the int8 model is rewritten identically
cp "$tmp/q.qlm" "$tmp/q1.qlm"
"$QUALM" train --quant qat --from "$tmp/f.qlm" --epochs 2 "${small[@]}" --out "$tmp/q.qlm" --resume >/dev/null
cmp "$tmp/q.qlm" "$tmp/q1.qlm" || fail "re-running a finished QAT changed the int8 model"
rc=0; "$QUALM" train --quant qat --from "$tmp/f.qlm" --epochs 2 "${small[@]}" --out "$tmp/z.qlm" --ckpt "$tmp/f.qlm" --resume 2>"$tmp/err" || rc=$?
[ "$rc" = 1 ] && grep -q "not a QAT checkpoint" "$tmp/err" || fail "resume from a float model: rc $rc"
echo "qat_cli: ok"
