#!/usr/bin/env bash
# qualm eval --method/--ood/--shift: the JSON figures cross-checked against
# scikit-learn / NumPy recomputed from `qualm predict` dumps of the same
# samples (float and int8 models): accuracy, NLL (log_loss), Brier, ECE,
# misclassification AUROC / AUPR (roc_auc_score, average_precision_score)
# on the entropy score, OOD AUROC / AUPR-in / AUPR-out / FPR@95 against
# MNIST, the temperature (a minimum of the validation NLL) and the int8
# softmax view (softmax on the 1/256 grid); bootstrap intervals reproducible
# by seed; TTA deterministic; shift blocks present; bad options rejected.
set -uo pipefail
BUILD=${1:?usage: eval_uq.sh BUILD_DIR}
QUALM="$BUILD/qualm"
PY=${QUALM_SYSTEM_PYTHON:-/usr/bin/python3}
SRC=${QUALM_SOURCE_DIR:-$(dirname "$0")/..}
FM=/usr/share/datasets/fashion-mnist
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

if [ ! -e $FM/t10k-labels-idx1-ubyte.gz ] || ! "$PY" -c 'import numpy, sklearn' >/dev/null 2>&1; then
  echo "SKIP: Fashion-MNIST or numpy/sklearn missing"; echo "0 passed, 0 failed"; exit 0
fi
MNIST=${QUALM_DATA:+$QUALM_DATA/mnist}
[ -n "$MNIST" ] && [ -e "$MNIST/t10k-images-idx3-ubyte" ] || MNIST="$SRC/data/mnist"
[ -e "$MNIST/t10k-images-idx3-ubyte" ] || [ -e "$MNIST/t10k-images-idx3-ubyte.gz" ] || MNIST=""

"$QUALM" train --model resnet8 --epochs 1 --batch 64 --max-train 512 --max-val 200 --threads 2 --quiet \
  --head-dropout 0.3 --out "$tmp/m.qlm" >/dev/null || { echo "FAIL: could not train a small model"; exit 1; }
"$QUALM" quantize "$tmp/m.qlm" --mode ptq --calib 100 --out "$tmp/int8.qlm" >/dev/null || bad "quantize ptq"
"$QUALM" info "$tmp/int8.qlm" --json >"$tmp/int8.info" || bad "info --json"

N=300
E=("$QUALM" eval --limit $N --threads 2 --bootstrap 0 --json)
for k in m int8; do
  "$QUALM" predict "$tmp/$k.qlm" --split test --limit $N --dump-output "$tmp/$k.test" 2>/dev/null || bad "predict $k test"
  "$QUALM" predict "$tmp/$k.qlm" --split val --limit $N --dump-output "$tmp/$k.val" 2>/dev/null || bad "predict $k val"
  if [ -n "$MNIST" ]; then
    "$QUALM" predict "$tmp/$k.qlm" --data mnist --data-dir "$MNIST" --limit $N --dump-output "$tmp/$k.mnist" \
      2>/dev/null || bad "predict $k mnist"
  fi
done
OOD=(); [ -n "$MNIST" ] && OOD=(--ood mnist --ood-dir "$MNIST")
"${E[@]}" "$tmp/m.qlm" --method softmax "${OOD[@]}" >"$tmp/soft.json" || bad "eval softmax"
"${E[@]}" "$tmp/m.qlm" --method temperature >"$tmp/temp.json" || bad "eval temperature"
"${E[@]}" "$tmp/int8.qlm" --method temperature "${OOD[@]}" >"$tmp/int8.json" || bad "eval int8 temperature"

"$PY" - "$tmp" "$N" "${MNIST:+1}" <<'PYEOF' && ok || bad "figures vs scikit-learn (see above)"
import gzip, json, sys
import numpy as np
from sklearn.metrics import roc_auc_score, average_precision_score, log_loss
d, n, has_mnist = sys.argv[1], int(sys.argv[2]), len(sys.argv) > 3 and sys.argv[3] == "1"
fails = 0
def near(got, want, what, tol=1e-6):
    global fails
    if got is None or not abs(got - want) <= tol * (1 + abs(want)):
        fails += 1
        print("FAIL: %s = %r, want %r" % (what, got, want))
def labels(name, first):
    with gzip.open("/usr/share/datasets/fashion-mnist/" + name, "rb") as f:
        return np.frombuffer(f.read()[8:], dtype=np.uint8).astype(int)[first:first + n]
y = labels("t10k-labels-idx1-ubyte.gz", 0)
yv = labels("train-labels-idx1-ubyte.gz", 55000)
info = json.load(open(d + "/int8.info"))["tensors"]
fc = [t for t in info if t["op"] != "dequantize"][-1]
def logits(kind, split):
    if kind == "m":
        return np.fromfile("%s/m.%s" % (d, split), dtype="<f4").reshape(-1, 10).astype(np.float64)
    q = np.fromfile("%s/int8.%s" % (d, split), dtype=np.int8).reshape(-1, 10).astype(np.float32)
    return ((q - np.float32(fc["zero_point"])) * np.float32(fc["scale"])).astype(np.float64)
def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)
def entropy(p):
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0).sum(axis=1)
def ece(p, y):
    c, pred = p.max(axis=1), p.argmax(axis=1)
    b = np.clip(np.ceil(c * 15).astype(int) - 1, 0, 14)
    return sum(abs((pred[b == i] == y[b == i]).mean() - c[b == i].mean()) * (b == i).sum() / len(y)
               for i in range(15) if (b == i).any())
def check_in(blk, p, y, what, nll=None):
    wrong = (p.argmax(axis=1) != y).astype(int)
    u = entropy(p)
    near(blk["accuracy"], 1 - wrong.mean(), what + " accuracy")
    near(blk["nll"], log_loss(y, p, labels=range(10)) if nll is None else nll, what + " nll", 1e-5)
    near(blk["brier"], ((p - np.eye(10)[y]) ** 2).sum(axis=1).mean(), what + " brier")
    near(blk["ece"], ece(p, y), what + " ece", 1e-5)
    near(blk["auroc_misclassification"], roc_auc_score(wrong, u), what + " auroc_misclassification")
    near(blk["aupr_misclassification"], average_precision_score(wrong, u), what + " aupr_misclassification")
def check_ood(blk, p_in, p_out, what):
    u = np.concatenate([entropy(p_in), entropy(p_out)])
    o = np.concatenate([np.zeros(len(p_in)), np.ones(len(p_out))])
    near(blk["auroc_ood"], roc_auc_score(o, u), what + " auroc_ood")
    near(blk["aupr_out"], average_precision_score(o, u), what + " aupr_out")
    near(blk["aupr_in"], average_precision_score(1 - o, -u), what + " aupr_in")
    s = -u[o == 0]                           # in-distribution positives, score -u
    t = np.sort(s)[::-1]
    thr = t[int(np.ceil(0.95 * len(t))) - 1]  # first threshold with TPR >= 0.95
    near(blk["fpr_at_95_tpr"], (-u[o == 1] >= thr).mean(), what + " fpr_at_95_tpr")

soft = json.load(open(d + "/soft.json"))
z = logits("m", "test")
check_in(soft["test"], softmax(z), y, "float softmax")
# figure data: reliability bins reproduce the ECE, risk-coverage the risks
rel = soft["test"]["reliability"]
near(sum(b["count"] for b in rel), n, "reliability counts")
near(sum(b["count"] / n * abs(b["acc"] - b["conf"]) for b in rel), soft["test"]["ece"], "ece from bins", 1e-5)
p0 = softmax(z)
order = np.argsort(entropy(p0), kind="stable")
wrong_sorted = (p0.argmax(axis=1) != y)[order]
for cov, risk in soft["test"]["risk_coverage"]:
    m = int(round(cov * n))
    near(risk, wrong_sorted[:m].mean(), "risk at coverage %g" % cov)
near(soft["test"]["n"], n, "n")
if has_mnist:
    check_ood(soft["ood"]["mnist"], softmax(z), softmax(logits("m", "mnist")), "float softmax mnist")

temp = json.load(open(d + "/temp.json"))
T = temp["temperature"]
zv = logits("m", "val")
nll_val = lambda t: log_loss(yv, softmax(zv / t), labels=range(10))
if not (nll_val(T) <= nll_val(T * 1.01) + 1e-9 and nll_val(T) <= nll_val(T / 1.01) + 1e-9):
    fails += 1; print("FAIL: T = %g is no minimum of the validation NLL" % T)
check_in(temp["test"], softmax(z / T), y, "float temperature")

q = json.load(open(d + "/int8.json"))
Tq = q["temperature"]
zq, zqv = logits("int8", "test"), logits("int8", "val")
nll_q = lambda t: log_loss(yv, softmax(zqv / t), labels=range(10))
if not (nll_q(Tq) <= nll_q(Tq * 1.01) + 1e-9 and nll_q(Tq) <= nll_q(Tq / 1.01) + 1e-9):
    fails += 1; print("FAIL: int8 T = %g is no minimum of its validation NLL" % Tq)
check_in(q["test"], softmax(zq / Tq), y, "int8 temperature")
p8 = np.minimum(np.floor(softmax(zq / Tq) * 256 + 0.5), 255) / 256
nll8 = -np.log(np.maximum(p8[np.arange(n), y], 1e-12)).mean()
check_in(q["test"]["int8_softmax"], p8, y, "int8 softmax view", nll=nll8)
if has_mnist:
    pm8 = np.minimum(np.floor(softmax(logits("int8", "mnist") / Tq) * 256 + 0.5), 255) / 256
    check_ood(q["ood"]["mnist"]["int8_softmax"], p8, pm8, "int8 softmax view mnist")
sys.exit(1 if fails else 0)
PYEOF

# Bootstrap intervals: reproducible, and they bracket the value.
B=("$QUALM" eval "$tmp/m.qlm" --limit 200 --threads 2 --bootstrap 50 --ood uniform --json)
"${B[@]}" | sed 's/, "seconds": [0-9.]*//' >"$tmp/b1.json" || bad "eval --bootstrap"
"$QUALM" eval "$tmp/m.qlm" --limit 200 --threads 1 --bootstrap 50 --ood uniform --json | sed 's/, "seconds": [0-9.]*//' \
  >"$tmp/b2.json" || bad "eval --bootstrap, 1 thread"
cmp -s "$tmp/b1.json" "$tmp/b2.json" && ok || bad "bootstrap intervals differ between runs / thread counts"
"$PY" -c '
import json, sys
j = json.load(open(sys.argv[1]))
for blk, key in ((j["test"], "accuracy"), (j["test"], "ece"), (j["ood"]["uniform"], "auroc_ood")):
    lo, hi = blk["ci"][key]
    assert lo <= blk[key] <= hi and lo < hi, (key, lo, blk[key], hi)
' "$tmp/b1.json" && ok || bad "intervals do not bracket the values"

# TTA and MC dropout: deterministic by seed, the seed matters for dropout.
T1=("$QUALM" eval "$tmp/m.qlm" --limit 100 --threads 2 --bootstrap 0 --json --shift contrast:5)
"${T1[@]}" --method tta | sed 's/, "seconds": [0-9.]*//' >"$tmp/t1.json" || bad "eval tta"
"${T1[@]}" --method tta | sed 's/, "seconds": [0-9.]*//' >"$tmp/t2.json" || bad "eval tta again"
cmp -s "$tmp/t1.json" "$tmp/t2.json" && ok || bad "tta not deterministic"
grep -q '"passes": 8' "$tmp/t1.json" && grep -q '"mutual_information"' "$tmp/t1.json" && ok || bad "tta JSON"
"$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); assert 0 <= j["shift"]["contrast"]["5"]["accuracy"] <= 1' \
  "$tmp/t1.json" && ok || bad "shift block missing"
"${T1[@]}" --method mcdropout --passes 4 --seed 1 | sed 's/, "seconds": [0-9.]*//' >"$tmp/d1.json" || bad "eval mcdropout"
"${T1[@]}" --method mcdropout --passes 4 --seed 2 | sed 's/, "seconds": [0-9.]*//' >"$tmp/d2.json" || bad "eval mcdropout seed 2"
! cmp -s "$tmp/d1.json" "$tmp/d2.json" && ok || bad "mcdropout ignores the seed"

# MC dropout on int8 samples only the head: the last layer in float on the
# dequantized features. With p -> 0 it is the int8 model up to the rounding
# of the int8 logits.
H=("$QUALM" eval "$tmp/int8.qlm" --limit 200 --threads 2 --bootstrap 0 --json)
"${H[@]}" --method mcdropout --dropout 0.000001 --passes 1 >"$tmp/h0.json" || bad "int8 head-only mcdropout"
"${H[@]}" --method softmax >"$tmp/s0.json" || bad "int8 softmax"
"${H[@]}" --method mcdropout --dropout 0.3 --passes 4 >"$tmp/h3.json" || bad "int8 head-only mcdropout p 0.3"
"$PY" -c '
import json, sys
h, s, h3 = (json.load(open(f)) for f in sys.argv[1:4])
assert h["head_only"] and "samples only the head" in h["note"], "no head-only note"
assert abs(h["test"]["accuracy"] - s["test"]["accuracy"]) <= 0.02, (h["test"]["accuracy"], s["test"]["accuracy"])
assert abs(h["test"]["nll"] - s["test"]["nll"]) <= 0.02 * (1 + s["test"]["nll"]), (h["test"]["nll"], s["test"]["nll"])
assert h3["test"]["by_score"]["mutual_information"]["aurc"] is not None
assert h3["test"]["nll"] != h["test"]["nll"], "dropout had no effect"
' "$tmp/h0.json" "$tmp/s0.json" "$tmp/h3.json" && ok || bad "int8 head-only MC dropout vs int8 softmax"

# Repeated / unordered set lists: each block once, severities grouped by corruption.
"$QUALM" eval "$tmp/m.qlm" --limit 30 --threads 1 --bootstrap 0 --json --ood uniform,constant,uniform \
  --shift contrast:3,rotation:1,contrast:1,contrast:3 >"$tmp/l.json" || bad "eval with repeated sets"
"$PY" -c '
import json, sys
j = json.load(open(sys.argv[1]))
assert list(j["ood"]) == ["uniform", "constant"], list(j["ood"])
assert {k: list(v) for k, v in j["shift"].items()} == {"contrast": ["1", "3"], "rotation": ["1"]}, j["shift"].keys()
' "$tmp/l.json" && ok || bad "repeated sets not merged"

# Bad options: one line, non-zero exit.
expect() { # code pattern command...
  local code=$1 pat=$2; shift 2
  "$@" >"$tmp/o" 2>"$tmp/e"; local rc=$?
  [ $rc -eq "$code" ] && grep -q "$pat" "$tmp/e" && ok || bad "$* -> rc $rc, $(cat "$tmp/e")"
}
expect 2 "unknown set 'bogus'" "$QUALM" eval "$tmp/m.qlm" --ood bogus
expect 2 "severity '9'" "$QUALM" eval "$tmp/m.qlm" --shift contrast:9
expect 2 "unknown corruption 'fog'" "$QUALM" eval "$tmp/m.qlm" --shift fog
expect 2 "accepted" "$QUALM" eval "$tmp/m.qlm" --method nope
expect 1 "samples only the head.*--dropout P" "$QUALM" eval "$tmp/int8.qlm" --method mcdropout --limit 10
expect 1 "carries a softmax head, not edl" "$QUALM" eval "$tmp/m.qlm" --method edl --limit 10
expect 1 "at most 8" "$QUALM" eval "$tmp/m.qlm" --method tta --passes 9 --limit 10
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
