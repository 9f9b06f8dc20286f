#!/usr/bin/env bash
# The study survives SIGKILL: a tiny study killed at three random points and
# resumed ends with the same database content (cells, metrics, comparisons,
# curves; timings left out) as an uninterrupted run. Then the model cache:
# with results.db and the cell results deleted, a rerun builds no model
# (no train / quantize log appears) and again gives the same content.
# Usage: bash tests/study_resume.sh BUILD_DIR   (QUALM_KILL_SEED picks the kill times)
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
SRC=${QUALM_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
QUALM=$BUILD/qualm
cd "$SRC" # data/mnist (the OOD set) is found relative to the repository
T=$(mktemp -d /tmp/qualm-study-resume.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "study_resume: FAIL: $*" >&2; exit 1; }

dump() { # every row but timings and the run's environment; floats with all their digits (repr)
  python3 - "$1" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for q in ["SELECT id, hash, model, method, mode, device, seed, profile, parent_hash, status, error,"
          " model_path, params, model_bytes FROM cells ORDER BY id",
          "SELECT * FROM metrics ORDER BY cell_id, dataset, score, name",
          "SELECT * FROM comparisons ORDER BY cell_id, ref_cell_id, dataset, name",
          "SELECT * FROM curves ORDER BY cell_id, dataset, kind, idx"]:
    for row in db.execute(q):
        print(repr(row))
PY
}

STUDY=studies/tiny.json
"$QUALM" study "$STUDY" --out "$T/ref" --jobs 2 --quiet > "$T/ref.out"
dump "$T/ref/results.db" > "$T/ref.dump"
ndone=$(sqlite3 "$T/ref/results.db" "SELECT count(*) FROM cells WHERE status = 'done'")
nmet=$(sqlite3 "$T/ref/results.db" "SELECT count(*) FROM metrics")
[ "$ndone" -ge 4 ] || fail "uninterrupted run: only $ndone cells done"
[ "$nmet" -ge 50 ] || fail "uninterrupted run: only $nmet metric rows"
echo "study_resume: uninterrupted run: $ndone cells done, $nmet metric rows"
# negative control: the comparison sees a change of one metric by one ulp
cp "$T/ref/results.db" "$T/nudged.db"
python3 -c 'import sqlite3, sys, math
db = sqlite3.connect(sys.argv[1])
v, = db.execute("SELECT value FROM metrics WHERE cell_id = 1 AND dataset = \"test\" AND name = \"nll\"").fetchone()
db.execute("UPDATE metrics SET value = ? WHERE cell_id = 1 AND dataset = \"test\" AND name = \"nll\"", (math.nextafter(v, 9),))
db.commit()' "$T/nudged.db"
dump "$T/nudged.db" > "$T/nudged.dump"
! cmp -s "$T/ref.dump" "$T/nudged.dump" || fail "the dump comparison cannot see a one-ulp change"

# qualm results: every format shows every row
for what in metrics comparisons cells; do
  table=$what; [ "$what" = cells ] && table=cells
  n=$(sqlite3 "$T/ref/results.db" "SELECT count(*) FROM $table")
  csv=$("$QUALM" results --db "$T/ref/results.db" --what "$what" --format csv | python3 -c 'import csv,sys; print(len(list(csv.reader(sys.stdin))) - 1)')
  json=$("$QUALM" results --db "$T/ref/results.db" --what "$what" --format json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  tab=$("$QUALM" results --db "$T/ref/results.db" --what "$what" | wc -l)
  [ "$csv" = "$n" ] && [ "$json" = "$n" ] && [ "$tab" = $((n + 1)) ] \
    || fail "qualm results --what $what: $n rows in the database, csv $csv, json $json, table $tab lines"
done
# values survive the CSV exactly (17 significant digits)
"$QUALM" results --db "$T/ref/results.db" --format csv | python3 -c '
import csv, sqlite3, sys
rows = list(csv.DictReader(sys.stdin))
db = sqlite3.connect(sys.argv[1])
want = {(r[0], r[1], r[2], r[3]): r[4] for r in db.execute("SELECT cell_id, dataset, score, name, value FROM metrics")}
for r in rows:
    if float(r["value"]) != want[(int(r["cell"]), r["dataset"], r["score"], r["name"])]:
        sys.exit("csv value differs: %r" % r)
' "$T/ref/results.db" || fail "qualm results --format csv changes values"
echo "study_resume: qualm results table/csv/json show every row"

SEED=${QUALM_KILL_SEED:-$$}
RANDOM=$SEED
echo "study_resume: kill times from QUALM_KILL_SEED=$SEED"
for k in 1 2 3; do
  delay=$(( RANDOM % 14 + 2 )).$(( RANDOM % 10 ))
  "$QUALM" study "$STUDY" --out "$T/run" --jobs 2 --quiet > /dev/null 2>&1 &
  pid=$!
  sleep "$delay"
  if kill -9 "$pid" 2>/dev/null; then
    wait "$pid" 2>/dev/null || true
    have=$(sqlite3 "$T/run/results.db" "SELECT count(*) FROM cells" 2>/dev/null || echo 0)
    echo "study_resume: kill $k after ${delay}s: $have cells committed"
  else
    wait "$pid" 2>/dev/null || true
    echo "study_resume: kill $k after ${delay}s: the study had already finished"
  fi
  sleep 0.5
  # the cells die with the study (PR_SET_PDEATHSIG): nothing may still write into the folder
  if pgrep -f -- "--out $T/run" > /dev/null; then fail "processes of the killed study are still running"; fi
done
"$QUALM" study "$STUDY" --out "$T/run" --jobs 2 --quiet > "$T/run.out"
dump "$T/run/results.db" > "$T/run.dump"
if ! cmp -s "$T/ref.dump" "$T/run.dump"; then
  diff "$T/ref.dump" "$T/run.dump" | head -20 >&2
  fail "killed-and-resumed database differs from the uninterrupted one"
fi
echo "study_resume: killed 3 times and resumed: same $(wc -l < "$T/run.dump") rows as the uninterrupted run"

# A finished study run again does nothing.
"$QUALM" study "$STUDY" --out "$T/run" --jobs 2 --quiet > "$T/again.out"
grep -q "0 failed\|from earlier runs" "$T/again.out" || true
total=$(sqlite3 "$T/run/results.db" "SELECT count(*) FROM cells")
grep -q "($(sqlite3 "$T/run/results.db" "SELECT count(*) FROM cells WHERE status='done'") from earlier runs)" "$T/again.out" \
  || fail "second run of a finished study redid cells: $(cat "$T/again.out")"

# Cache: results gone, models kept -> nothing is trained or quantized again.
rm -rf "$T/run/results.db" "$T/run/cells" "$T/run/logs"
"$QUALM" study "$STUDY" --out "$T/run" --jobs 2 --quiet > /dev/null
built=$(find "$T/run/logs" -name '*.build.log' | wc -l)
# failed builds (methods qualm train does not know yet) are retried: only they may log
fails=$(sqlite3 "$T/run/results.db" "SELECT count(*) FROM cells WHERE error LIKE 'qualm train exited%' OR error LIKE 'qualm quantize exited%'")
[ "$built" -le "$fails" ] || fail "cache: $built models were built again ($fails failed builds allowed)"
dump "$T/run/results.db" > "$T/cache.dump"
cmp -s "$T/ref.dump" "$T/cache.dump" || fail "rerun from the model cache gives another database content"
echo "study_resume: rerun from the model cache: $total cells, no model rebuilt ($built build logs = retried failures), same content"
echo "study_resume: OK"
