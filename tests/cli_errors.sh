#!/usr/bin/env bash
# The CLI on bad input: usage errors exit 2 with a message saying what is
# accepted; corrupted model files and a truncated IDX file exit 1 with a
# one-line message naming the file; nothing crashes (no exit code >= 128).
set -uo pipefail
BUILD=${1:?usage: cli_errors.sh BUILD_DIR}
QUALM="$BUILD/qualm"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()   { pass=$((pass + 1)); }
bad()  { fail=$((fail + 1)); echo "FAIL: $*"; }

# expect CODE PATTERN -- command...: exit code CODE and stderr matching PATTERN
expect() {
  local code=$1 pattern=$2; shift 3
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  if [ "$rc" -ne "$code" ]; then bad "$* exited $rc, want $code: $(head -c 300 "$tmp/err")"; return; fi
  if [ -n "$pattern" ] && ! grep -qE -- "$pattern" "$tmp/err"; then
    bad "$*: stderr lacks /$pattern/: $(head -c 300 "$tmp/err")"; return; fi
  ok
}

for c in train eval info; do
  "$QUALM" "$c" --help >"$tmp/out" 2>&1 && grep -q "usage: qualm $c" "$tmp/out" && ok || bad "$c --help"
done
"$QUALM" --help | grep -q "commands:" && ok || bad "qualm --help"
expect 2 "unknown command 'frobnicate'" -- "$QUALM" frobnicate
expect 2 "unknown option '--nope'" -- "$QUALM" train --nope
expect 2 "accepted: .*resnet20" -- "$QUALM" train --model resnet21 --out "$tmp/x.qlm"
expect 2 "accepted: quick\|full" -- "$QUALM" train --model resnet8 --profile slow --out "$tmp/x.qlm"
expect 2 "is not an integer" -- "$QUALM" train --model resnet8 --epochs three --out "$tmp/x.qlm"
expect 2 "out of range" -- "$QUALM" train --model resnet8 --threads 0 --out "$tmp/x.qlm"
expect 2 "needs a value" -- "$QUALM" train --model
expect 2 "--out FILE.qlm is required" -- "$QUALM" train --model resnet8
expect 2 "accepted: test\|val\|train" -- "$QUALM" eval "$tmp/x.qlm" --split dev
expect 1 "$tmp/missing.qlm" -- "$QUALM" info "$tmp/missing.qlm"

if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${QUALM_DATA:-}" ]; then
  echo "$pass passed, $fail failed (Fashion-MNIST missing: file tests skipped)"; [ "$fail" -eq 0 ]; exit
fi
"$QUALM" train --model resnet8 --epochs 1 --batch 64 --max-train 128 --max-val 200 --threads 2 --quiet --out "$tmp/m.qlm" \
  || { echo "FAIL: could not train a small model"; exit 1; }
"$QUALM" info "$tmp/m.qlm" >/dev/null && ok || bad "info on a good file"
size=$(stat -c %s "$tmp/m.qlm")

# 50 corrupted files: 25 truncations, 25 flipped bytes, each from a fixed seed.
RANDOM=1234
for i in $(seq 1 50); do
  f="$tmp/bad$i.qlm"
  if [ "$i" -le 25 ]; then
    case $i in 1) n=0;; 2) n=1;; 3) n=8;; 4) n=63;; 5) n=64;; 6) n=$((size - 1));; 7) n=$((size - 4));;
      *) n=$(( (RANDOM * 32768 + RANDOM) % size ));; esac
    head -c "$n" "$tmp/m.qlm" >"$f"
  else
    cp "$tmp/m.qlm" "$f"
    off=$(( (RANDOM * 32768 + RANDOM) % size ))
    byte=$(od -An -tu1 -j "$off" -N1 "$f" | tr -d ' ')
    printf "$(printf '\\%03o' $(( (byte ^ (1 + RANDOM % 255)) & 255 )))" | dd of="$f" bs=1 seek="$off" conv=notrunc status=none
  fi
  for cmd in info eval; do
    "$QUALM" "$cmd" "$f" >"$tmp/out" 2>"$tmp/err"; rc=$?
    lines=$(wc -l <"$tmp/err")
    if [ "$rc" -ne 1 ] || [ "$lines" -ne 1 ] || ! grep -q "bad$i.qlm" "$tmp/err"; then
      bad "$cmd corrupted file $i: exit $rc, stderr: $(head -c 300 "$tmp/err")"
    else ok; fi
  done
done

# A truncated IDX file: a clear error naming it, exit 1.
mkdir -p "$tmp/fm"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-labels-idx1-ubyte; do
  ln -s "/usr/share/datasets/fashion-mnist/$f.gz" "$tmp/fm/$f.gz"
done
gzip -dc /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz | head -c 100000 >"$tmp/fm/t10k-images-idx3-ubyte"
expect 1 "t10k-images-idx3-ubyte.*truncated" -- "$QUALM" eval "$tmp/m.qlm" --data-dir "$tmp/fm"

# fp16 and dynamic models (qualm quantize --mode fp16|dynamic): the same
# corruption test, 20 truncations and 20 flipped bytes each, for info, eval
# and predict; plus the usage errors of quantize and predict.
for c in quantize predict; do
  "$QUALM" "$c" --help >"$tmp/out" 2>&1 && grep -q "usage: qualm $c" "$tmp/out" && ok || bad "$c --help"
done
expect 2 "accepted: ptq\|fp16\|dynamic" -- "$QUALM" quantize "$tmp/m.qlm" --mode fp8 --out "$tmp/x.qlm"
expect 2 "dump-input" -- "$QUALM" predict "$tmp/m.qlm"
expect 2 "accepted: test\|val\|train" -- "$QUALM" predict "$tmp/m.qlm" --split dev --dump-output "$tmp/o.bin"
expect 1 "$tmp/missing.qlm" -- "$QUALM" predict "$tmp/missing.qlm" --dump-output "$tmp/o.bin"
expect 1 "$tmp/missing.qlm" -- "$QUALM" quantize "$tmp/missing.qlm" --mode fp16 --out "$tmp/x.qlm"
expect 1 "nodir/o.bin" -- "$QUALM" predict "$tmp/m.qlm" --limit 3 --dump-output "$tmp/nodir/o.bin"
for mode in fp16 dynamic; do
  "$QUALM" quantize "$tmp/m.qlm" --mode "$mode" --out "$tmp/$mode.qlm" >/dev/null \
    || { bad "quantize --mode $mode"; continue; }
  "$QUALM" info "$tmp/$mode.qlm" | grep -q "($mode, batch norm folded)" && ok || bad "info $mode"
  msize=$(stat -c %s "$tmp/$mode.qlm")
  for i in $(seq 1 40); do
    f="$tmp/bad-$mode-$i.qlm"
    if [ "$i" -le 20 ]; then
      case $i in 1) n=0;; 2) n=63;; 3) n=$((msize - 1));; 4) n=$((msize - 4));;
        *) n=$(( (RANDOM * 32768 + RANDOM) % msize ));; esac
      head -c "$n" "$tmp/$mode.qlm" >"$f"
    else
      cp "$tmp/$mode.qlm" "$f"
      off=$(( (RANDOM * 32768 + RANDOM) % msize ))
      byte=$(od -An -tu1 -j "$off" -N1 "$f" | tr -d ' ')
      printf "$(printf '\\%03o' $(( (byte ^ (1 + RANDOM % 255)) & 255 )))" | dd of="$f" bs=1 seek="$off" conv=notrunc status=none
    fi
    for cmd in info eval predict; do
      extra=(); [ "$cmd" = predict ] && extra=(--limit 5 --dump-output "$tmp/o.bin")
      "$QUALM" "$cmd" "$f" "${extra[@]}" >"$tmp/out" 2>"$tmp/err"; rc=$?
      lines=$(wc -l <"$tmp/err")
      if [ "$rc" -ne 1 ] || [ "$lines" -ne 1 ] || ! grep -q "bad-$mode-$i.qlm" "$tmp/err"; then
        bad "$cmd corrupted $mode file $i: exit $rc, stderr: $(head -c 300 "$tmp/err")"
      else ok; fi
    done
  done
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
