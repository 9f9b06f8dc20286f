#!/usr/bin/env bash
# qualm report: render synthetic study databases (tests/report_fixture.py)
# and check the HTML against the database (tests/report_check.py): structure,
# no network references, every figure by id, table deltas, the summary's
# answers recomputed in Python, failed cells and escaping. Then bad inputs
# (missing file, not SQLite, other schema version, unwritable output) must
# exit non-zero with one line naming the file, and the database must come
# out unchanged. Last, headless Chromium renders the report to a PNG: no
# console errors, and the page is not blank (the figures' colours are
# there). Without chromium that part is skipped with a message
# (scripts/setup.sh installs it).
set -uo pipefail
BUILD=${1:?usage: report_render.sh BUILD_DIR}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
QUALM=$BUILD/qualm
PY=${QUALM_SYSTEM_PYTHON:-/usr/bin/python3}
T=$(mktemp -d /tmp/qualm-report.XXXXXX)
trap 'rm -rf "$T"' EXIT
PASS=0
FAIL=0
ok() { PASS=$((PASS + 1)); }
bad() { FAIL=$((FAIL + 1)); echo "FAIL: $*"; }
finish() { echo "$PASS passed, $FAIL failed"; [ "$FAIL" -eq 0 ]; exit $?; }

[ -x "$QUALM" ] || { bad "$QUALM not built"; finish; }

fixture() { "$PY" "$HERE/report_fixture.py" "$T/$1.db" --variant "$1" || bad "fixture $1"; }

# ---------------------------------------------------------------- renders
for v in full nocurves noedl odd empty; do
  fixture "$v"
  sum_before=$(sha256sum "$T/$v.db" | cut -d' ' -f1)
  if out=$("$QUALM" report --db "$T/$v.db" --out "$T/$v.html" 2>&1); then ok; else bad "$v: qualm report failed: $out"; continue; fi
  [ "$(sha256sum "$T/$v.db" | cut -d' ' -f1)" = "$sum_before" ] && ok || bad "$v: the database changed"
  extra=()
  [ "$v" = empty ] && extra=(--expect-empty)
  if res=$("$PY" "$HERE/report_check.py" "$T/$v.html" "$T/$v.db" "${extra[@]}"); then ok; else bad "$v: $res"; fi
done
ls "$T"/*.tmp.* >/dev/null 2>&1 && bad "temporary file left behind" || ok
grep -q 'no curve in the database' "$T/nocurves.html" && ok || bad "nocurves: missing curves not said"
grep -q 'the study has no edl cells' "$T/noedl.html" && ok || bad "noedl: missing edl not said"

# The checker itself must catch a wrong number: tamper one delta after rendering.
cp "$T/full.db" "$T/tampered.db"
"$PY" - "$T/tampered.db" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("UPDATE comparisons SET value = value + 0.1 WHERE rowid = (SELECT MIN(rowid) FROM comparisons WHERE name='d_ece')")
db.commit()
EOF
if "$PY" "$HERE/report_check.py" "$T/full.html" "$T/tampered.db" >/dev/null; then bad "checker accepts a tampered database"; else ok; fi

# ------------------------------------------------------------- bad inputs
fixture v2
printf 'this is not a database\n%.0s' {1..40} > "$T/garbage.db"
expect_fail() { # name, expected exit code, pattern, args...
  local name=$1 code=$2 pat=$3
  shift 3
  local err rc
  err=$("$QUALM" report "$@" 2>&1 >/dev/null)
  rc=$?
  if [ "$rc" -ne "$code" ]; then bad "$name: exit $rc, expected $code ($err)"; return; fi
  if [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ]; then bad "$name: message is not one line: $err"; return; fi
  if ! printf '%s' "$err" | grep -q -- "$pat"; then bad "$name: message lacks '$pat': $err"; return; fi
  ok
}
expect_fail "missing db" 1 "$T/none.db: no such file" --db "$T/none.db" --out "$T/x.html"
expect_fail "not sqlite" 1 "$T/garbage.db" --db "$T/garbage.db" --out "$T/x.html"
expect_fail "schema v2" 1 "schema version '2'" --db "$T/v2.db" --out "$T/x.html"
expect_fail "bad out dir" 1 "$T/no/dir/x.html" --db "$T/full.db" --out "$T/no/dir/x.html"
expect_fail "no --db" 2 "required" --out "$T/x.html"
"$QUALM" report --help | grep -q -- '--db FILE' && ok || bad "report --help"
[ -e "$T/x.html" ] && bad "a failed render wrote its output" || ok

# --------------------------------------------------------------- Chromium
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ]; then
  echo "SKIP: chromium not installed (apt-get install chromium): no browser rendering"
  finish
fi
# A private profile and no D-Bus: the headless browser needs neither.
timeout 180 "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$T/profile" \
  --enable-logging=stderr --v=0 --window-size=1400,4000 --screenshot="$T/full.png" \
  "file://$T/full.html" >"$T/chromium.log" 2>&1
rc=$?
[ "$rc" -eq 0 ] && [ -s "$T/full.png" ] && ok || { bad "chromium exit $rc, no screenshot"; tail -5 "$T/chromium.log"; }
CONSOLE_RE='Uncaught|:CONSOLE|CONSOLE\(|Refused to|net::ERR'
if grep -E "$CONSOLE_RE" "$T/chromium.log"; then bad "console messages while rendering"; else ok; fi
# ... and that check can fail: a page with a script error is caught.
printf '<!DOCTYPE html><html><body><script>noSuchFunction();</script></body></html>\n' > "$T/bad.html"
timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$T/profile" \
  --enable-logging=stderr --v=0 --window-size=400,300 --screenshot="$T/bad.png" "file://$T/bad.html" >"$T/bad.log" 2>&1
grep -qE "$CONSOLE_RE" "$T/bad.log" && ok || bad "the console check misses a script error"
# The page has ink and the figures' colours: text, tables and 20+ figures
# make a few percent of the pixels non-white, and each mode colour (fp32
# blue, ptq red, qat orange) covers hundreds of pixels.
png_ok() {
  local stats
  stats=$("$PY" "$HERE/report_png.py" stats "$1") || return 1
  echo "screenshot $(basename "$1"): $stats"
  "$PY" - "$stats" <<'EOF'
import re, sys
s = sys.argv[1]
w, h = map(int, re.search(r"size (\d+)x(\d+)", s).groups())
nonwhite = int(re.search(r"non_white (\d+)", s).group(1))
cols = {k: int(v) for k, v in re.findall(r"(\w+[-\w]*)=(\d+)", s)}
sys.exit(0 if nonwhite > 0.03 * w * h and all(v > 300 for v in cols.values()) else 1)
EOF
}
if [ -s "$T/full.png" ]; then
  png_ok "$T/full.png" && ok || bad "the screenshot looks blank or lacks the figures' colours"
  [ -n "${QUALM_REPORT_PNG:-}" ] && cp "$T/full.png" "$QUALM_REPORT_PNG"
fi
# ... and that check can fail: the near-empty page above does not pass it.
if [ -s "$T/bad.png" ]; then png_ok "$T/bad.png" >/dev/null && bad "the PNG check accepts a blank page" || ok; fi
finish
