#!/usr/bin/env bash
# scripts/mnist_to_idx.js on a small fake `mnist` package: the IDX bytes
# must equal what an independent Python writer produces, bad inputs must
# fail without leaving files. Skips (exit 0) without node or python3.
set -euo pipefail
src=${QUALM_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
script="$src/scripts/mnist_to_idx.js"
for tool in node python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "note: $tool not found; test_mnist_to_idx skipped"
    exit 0
  fi
done
tmp=$(mktemp -d /tmp/qlm_mnist_to_idx.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# Fake package: digit d has d % 3 + 1 images; values rounded to 3 decimals
# like the real package, plus out-of-range values that must clamp.
python3 - "$tmp/pkg" "$tmp/want" <<'EOF'
import json, os, struct, sys
pkg, want = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(pkg, "src", "digits"))
os.makedirs(want)
images, labels = bytearray(), bytearray()
for d in range(10):
    vals = []
    for m in range(d % 3 + 1):
        px = [(k * 7 + m * 3 + d) % 256 for k in range(784)]
        v = [round(p / 255, 3) for p in px]
        v[0], v[1] = -0.25, 1.5  # clamp to 0 and 255
        px[0], px[1] = 0, 255
        vals += v
        images += bytes(px)
        labels.append(d)
    with open(os.path.join(pkg, "src", "digits", "%d.json" % d), "w") as f:
        json.dump({"data": vals}, f)
n = len(labels)
with open(os.path.join(want, "t10k-images-idx3-ubyte"), "wb") as f:
    f.write(bytes([0, 0, 8, 3]) + struct.pack(">III", n, 28, 28) + images)
with open(os.path.join(want, "t10k-labels-idx1-ubyte"), "wb") as f:
    f.write(bytes([0, 0, 8, 1]) + struct.pack(">I", n) + labels)
EOF

fails=0
check() { # description, command...
  local what=$1; shift
  if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; fails=$((fails + 1)); fi
}

node "$script" "$tmp/pkg" "$tmp/out/nested" >/dev/null
for f in t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  check "$f matches the reference bytes" cmp "$tmp/want/$f" "$tmp/out/nested/$f"
done
check "no temp files left" test "$(ls "$tmp/out/nested" | wc -l)" -eq 2

rc=0; node "$script" >/dev/null 2>&1 || rc=$?
check "usage exits 2" test "$rc" -eq 2

# A digit file with 785 values, then one with a null value: exit 1, no output.
cp -r "$tmp/pkg" "$tmp/bad1"
python3 -c 'import json,sys; json.dump({"data": [0.5] * 785}, open(sys.argv[1], "w"))' \
  "$tmp/bad1/src/digits/4.json"
cp -r "$tmp/pkg" "$tmp/bad2"
python3 -c 'import json,sys; json.dump({"data": [0.5] * 783 + [None]}, open(sys.argv[1], "w"))' \
  "$tmp/bad2/src/digits/7.json"
for bad in bad1 bad2; do
  rc=0; node "$script" "$tmp/$bad" "$tmp/out_$bad" 2>"$tmp/err" || rc=$?
  check "$bad exits 1" test "$rc" -eq 1
  check "$bad names the file" grep -q "digits/" "$tmp/err"
  check "$bad writes nothing" test ! -e "$tmp/out_$bad/t10k-images-idx3-ubyte"
done

echo "$fails failures"
test "$fails" -eq 0
