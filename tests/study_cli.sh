#!/usr/bin/env bash
# qualm study / qualm results at the command line: config errors are one
# line naming the file and the key with a non-zero exit; the shipped studies
# validate; a database of another config is refused; qualm results rejects
# what is not a study database. (Running studies: study_resume.sh, study_mpi.sh.)
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
SRC=${QUALM_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
QUALM=$BUILD/qualm
T=$(mktemp -d /tmp/qualm-study-cli.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "study_cli: FAIL: $*" >&2; exit 1; }

expect_error() { # file key
  set +e
  "$QUALM" study "$1" --out "$T/o" > "$T/out" 2> "$T/err"
  rc=$?
  set -e
  [ $rc -ne 0 ] || fail "$1 was accepted"
  [ "$(wc -l < "$T/err")" -eq 1 ] || fail "$1: error is not one line: $(cat "$T/err")"
  grep -qF "$1" "$T/err" || fail "$1: error does not name the file: $(cat "$T/err")"
  grep -qF "$2" "$T/err" || fail "$1: error does not name $2: $(cat "$T/err")"
  [ ! -e "$T/o/results.db" ] || fail "$1: a database was written for a bad config"
}
printf '{"name": "x", "models": ["resnet8"], "methods": ["softmax"], "modes": ["fp32", "int3"]}' > "$T/mode.json"
expect_error "$T/mode.json" "key 'modes'"
printf '{"name": "x", "models": ["resnet8"], "methods": ["softmax"], "modes": ["fp32"], "options": {"bootstrap": 0}}' > "$T/boot.json"
expect_error "$T/boot.json" "key 'options.bootstrap'"
printf '{"name": "x", "models": ["resnet8"], "modes": ["fp32"]}' > "$T/nomethod.json"
expect_error "$T/nomethod.json" "key 'methods'"
printf '{"name": "x",\n"models": ["resnet8"\n' > "$T/trunc.json"
expect_error "$T/trunc.json" "not valid JSON"
expect_error "$T/missing.json" "missing.json"
echo "study_cli: config errors name the file and the key"

for s in tiny quick full; do
  "$QUALM" study "$SRC/studies/$s.json" --dry-run > "$T/$s.cells" || fail "studies/$s.json does not validate"
  echo "study_cli: studies/$s.json: $(head -1 "$T/$s.cells")"
done
grep -q "^quick: 50 cells" "$T/quick.cells" || fail "quick.json should have 50 cells"
[ "$(grep -c ' float-control ' "$T/quick.cells")" -eq "$(grep -c ' qat-int8 ' "$T/quick.cells")" ] \
  || fail "quick.json: a float control per QAT cell"

set +e
"$QUALM" study "$SRC/studies/tiny.json" > /dev/null 2> "$T/err"; rc=$?
set -e
[ $rc -eq 2 ] && grep -q -- "--out" "$T/err" || fail "missing --out: exit $rc, $(cat "$T/err")"

# A results database of another config is refused, untouched.
mkdir -p "$T/other"
sqlite3 "$T/other/results.db" "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
  INSERT INTO meta VALUES('schema_version', '1'), ('study_json', '{\"name\": \"other\"}');"
set +e
"$QUALM" study "$SRC/studies/tiny.json" --out "$T/other" --quiet > /dev/null 2> "$T/err"; rc=$?
set -e
[ $rc -ne 0 ] && grep -q "another study config" "$T/err" || fail "foreign database: exit $rc, $(cat "$T/err")"
[ -z "$(ls "$T/other/models")" ] || fail "foreign database: models were built anyway"
echo "study_cli: a database of another config is refused"

echo "not a database" > "$T/junk.db"
set +e
"$QUALM" results --db "$T/junk.db" > /dev/null 2> "$T/err"; rc=$?
"$QUALM" results --db "$T/none.db" > /dev/null 2> "$T/err2"; rc2=$?
"$QUALM" results > /dev/null 2> "$T/err3"; rc3=$?
set -e
[ $rc -ne 0 ] && grep -q "junk.db" "$T/err" || fail "results on junk: exit $rc, $(cat "$T/err")"
[ $rc2 -ne 0 ] && grep -q "none.db" "$T/err2" || fail "results on a missing file: exit $rc2, $(cat "$T/err2")"
[ $rc3 -eq 2 ] || fail "results without --db: exit $rc3"
"$QUALM" study --help | grep -q -- "--jobs" || fail "study --help"
"$QUALM" results --help | grep -q -- "--format" || fail "results --help"
echo "study_cli: OK"
