#!/usr/bin/python3
"""Cross-check `qualm metrics --json` against scikit-learn, SciPy and NumPy.

Usage: /usr/bin/python3 tests/metrics_ref.py QUALM_BINARY

Writes random and adversarial CSV files into a temporary folder, runs the
binary on each and compares every JSON key with an independent reference:
scikit-learn (roc_auc_score, average_precision_score, log_loss, roc_curve),
SciPy (logsumexp, spearmanr, norm) or a NumPy formula written here from the
definitions in docs/metrics.md (ECE and its variants, Brier, AURC, E-AURC,
the float-vs-quantized divergences). The bootstrap intervals of --compare
are replicated exactly: PCG32 and the stratified draw are re-implemented
below and the percentiles come from numpy.percentile. Malformed files must
exit 1 with `FILE:LINE:` in the message. Ends with `N passed, M failed`.
"""
import json
import math
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
from scipy.special import logsumexp
from scipy.stats import norm, spearmanr
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score, roc_curve

TOL = 1e-9
BINS = 15
QUALM = sys.argv[1]
TMP = tempfile.mkdtemp(prefix="qualm-metrics-")
warnings.filterwarnings("ignore")
passed = failed = 0


def report(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)


# ------------------------------------------------------------------ files

def fmt(v):
    return repr(float(v)) if isinstance(v, (float, np.floating)) else str(v)


def write_csv(name, header, rows, crlf=False, tail=""):
    path = os.path.join(TMP, name)
    eol = "\r\n" if crlf else "\n"
    with open(path, "w", newline="") as f:
        f.write(",".join(header) + eol)
        for r in rows:
            f.write(",".join(fmt(v) for v in r) + eol)
        f.write(tail)
    return path


def class_csv(name, P=None, Z=None, y=None, u=None, ood=None, order=None, **kw):
    M = Z if Z is not None else P
    pre = "z" if Z is not None else "p"
    cols = {f"{pre}_{j}": M[:, j] for j in range(M.shape[1])}
    cols["label"] = y
    if u is not None:
        cols["u"] = u
    if ood is not None:
        cols["ood"] = ood
    header = order or list(cols)
    rows = [[cols[h][i] for h in header] for i in range(M.shape[0])]
    return write_csv(name, header, rows, **kw)


def run(*args):
    r = subprocess.run([QUALM, "metrics", *args], capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr


# --------------------------------------------------------------- reference

def softmax(Z):
    """Row softmax exp(z - max) / sum with math.exp and a left-to-right sum.

    Written per element on purpose: numpy's vectorized exp and pairwise sums
    can differ from libm by an ulp, which is harmless except where the tests
    rely on exact ties (duplicated rows, bootstrap resamples).
    """
    out = np.empty_like(Z, dtype=float)
    for i, z in enumerate(Z.tolist()):
        m = max(z)
        e = [math.exp(v - m) for v in z]
        s = 0.0
        for v in e:
            s += v
        out[i] = [v / s for v in e]
    return out


def entropy(P):
    """-sum p ln p with 0 ln 0 = 0, summed left to right (see softmax)."""
    out = np.empty(P.shape[0])
    for i, row in enumerate(P.tolist()):
        h = 0.0
        for v in row:
            if v > 0:
                h -= v * math.log(v)
        out[i] = h
    return out


def bin_of(c):
    """Bin i holds (i/15, (i+1)/15] with edges i / 15.0; c = 0 goes to bin 0."""
    edges = np.arange(BINS + 1) / float(BINS)
    return np.minimum(np.searchsorted(edges[1:], c, side="left"), BINS - 1)


def ece_groups(conf, hit, groups):
    n, e, m = len(conf), 0.0, 0.0
    for g in groups:
        if len(g) == 0:
            continue
        gap = abs(hit[g].mean() - conf[g].mean())
        e += len(g) / n * gap
        m = max(m, gap)
    return e, m


def width_groups(c):
    b = bin_of(c)
    return [np.nonzero(b == i)[0] for i in range(BINS)]


def aurc_ref(u, wrong):
    n = len(u)
    k = np.arange(1, n + 1)
    a = np.mean(np.cumsum(wrong[np.argsort(u, kind="stable")]) / k)
    best = np.mean(np.cumsum(np.sort(wrong)) / k)
    return a, a - best


def fpr95_ref(ood, u):
    fpr, tpr, _ = roc_curve(1 - ood, -u, drop_intermediate=False)
    return float(fpr[np.argmax(tpr >= 0.95)])


def nll_ref(P, Z, y, cross_check):
    n = len(y)
    if Z is not None:
        return float(np.mean(logsumexp(Z, axis=1) - Z[np.arange(n), y]))
    want = float(-np.mean(np.log(np.maximum(P[np.arange(n), y], 1e-12))))
    if cross_check and P.shape[1] >= 2:  # scikit-learn agrees up to its renormalization (< 1e-10)
        try:
            sk = log_loss(y, P, eps=1e-12, labels=list(range(P.shape[1])))
            report(abs(sk - want) <= 1e-9 * max(1, abs(want)), f"log_loss {sk} vs numpy {want}")
        except TypeError:
            pass
    return want


def class_ref(P, y, u=None, ood=None, Z=None, cross_check=True):
    """Every JSON key of a classification file; None where undefined."""
    if P is None:
        P = softmax(Z)
    n, K = P.shape
    ood = np.zeros(n, int) if ood is None else np.asarray(ood)
    uu = entropy(P) if u is None else np.asarray(u, float)
    idm = ood == 0
    Pi, yi, ui, Zi = P[idm], np.asarray(y)[idm], uu[idm], None if Z is None else Z[idm]
    m = len(yi)
    pred = np.argmax(Pi, axis=1)
    hit = (pred == yi).astype(float)
    wrong = 1 - hit.astype(int)
    conf = Pi[np.arange(m), pred]
    onehot = np.eye(K)[yi]
    ece, mce = ece_groups(conf, hit, width_groups(conf))
    adaptive = ece_groups(conf, hit, np.array_split(np.argsort(conf, kind="stable"), BINS))[0]
    cw = np.mean([ece_groups(Pi[:, j], (yi == j).astype(float), width_groups(Pi[:, j]))[0]
                  for j in range(K)])
    aurc, eaurc = aurc_ref(ui, wrong)
    both = 0 < wrong.sum() < m
    r = {"n": n, "accuracy": hit.mean(), "nll": nll_ref(Pi, Zi, yi, cross_check),
         "brier": np.mean(np.sum((Pi - onehot) ** 2, axis=1)), "ece": ece, "mce": mce,
         "adaptive_ece": adaptive, "classwise_ece": cw,
         "auroc_misclassification": roc_auc_score(wrong, ui) if both else None,
         "aupr_misclassification": average_precision_score(wrong, ui) if wrong.any() else None,
         "aurc": aurc, "eaurc": eaurc}
    if ood.any():
        r.update({"auroc_ood": roc_auc_score(ood, uu), "aupr_in": average_precision_score(1 - ood, -uu),
                  "aupr_out": average_precision_score(ood, uu), "fpr_at_95_tpr": fpr95_ref(ood, uu)})
    return r


def regression_ref(mu, sigma, y):
    e = y - mu
    r = {"n": len(y), "rmse": np.sqrt(np.mean(e ** 2)),
         "nll": np.mean(0.5 * np.log(2 * np.pi * sigma ** 2) + e ** 2 / (2 * sigma ** 2)),
         "mean_sigma": np.mean(sigma)}
    for q in (50, 90, 95):
        z = norm.ppf(0.5 + q / 200)
        r[f"picp_{q}"] = np.mean(np.abs(e) <= z * sigma)
        r[f"width_{q}"] = np.mean(2 * z * sigma)
    F = norm.cdf(e / sigma)
    levels = np.arange(1, 20) / 20.0
    r["calibration_error"] = np.mean([abs(p - np.mean(F <= p)) for p in levels])
    rho = spearmanr(sigma, np.abs(e)).correlation if len(y) > 1 else float("nan")
    r["spearman_sigma_error"] = None if np.isnan(rho) else rho
    return r


def same(got, want):
    if want is None or got is None:
        return got is None and want is None
    return abs(float(got) - float(want)) <= TOL * max(1.0, abs(float(want)))


def check_keys(case, got, want):
    ok = True
    for key, w in want.items():
        if key not in got:
            report(False, f"{case}: key {key} missing")
            ok = False
        elif not same(got[key], w):
            report(False, f"{case}: {key} = {got[key]!r}, want {w!r}")
            ok = False
    return ok


def check_case(case, path, want):
    rc, out, err = run("--input", path, "--json")
    if rc != 0:
        report(False, f"{case}: exit {rc}: {err.strip()}")
        return None
    got = json.loads(out)
    ood_keys = {"auroc_ood", "aupr_in", "aupr_out", "fpr_at_95_tpr"}
    if "accuracy" in want and ("auroc_ood" in want) != bool(ood_keys & set(got)):
        report(False, f"{case}: OOD keys present = {bool(ood_keys & set(got))}, want {'auroc_ood' in want}")
    report(check_keys(case, got, want), f"{case}: see above")
    return got


# ------------------------------------------------------------ the cases

rng = np.random.default_rng(20240601)


def dirichlet(n, K, a=1.0):
    return rng.dirichlet(np.full(K, a), size=n)


def noisy_labels(P, flip):
    y = np.argmax(P, axis=1)
    swap = rng.random(len(y)) < flip
    y[swap] = rng.integers(0, P.shape[1], swap.sum())
    return y


def classification_cases():
    cases = []
    for i, (n, K, a, flip) in enumerate([(500, 10, 0.3, 0.3), (300, 2, 1.0, 0.4), (777, 5, 0.5, 0.2),
                                         (5000, 10, 0.2, 0.15), (14, 4, 1.0, 0.5), (16, 3, 1.0, 0.5)]):
        P = dirichlet(n, K, a)
        cases.append((f"random{i}_n{n}_k{K}", dict(P=P, y=noisy_labels(P, flip))))
    Z = rng.normal(0, 3, size=(400, 10))
    cases.append(("logits", dict(Z=Z, y=noisy_labels(Z, 0.3))))
    Z = rng.normal(0, 200, size=(200, 6))  # log-softmax without a clamp
    cases.append(("logits_extreme", dict(Z=Z, y=rng.integers(0, 6, 200))))
    Zt = np.round(rng.normal(0, 1, size=(150, 4)))  # tied logits: argmax ties to the lowest index
    cases.append(("logits_ties", dict(Z=Zt, y=rng.integers(0, 4, 150))))
    P = dirichlet(1, 3)
    cases.append(("n1_right", dict(P=P, y=np.argmax(P, axis=1))))
    cases.append(("n1_wrong", dict(P=P, y=(np.argmax(P, axis=1) + 1) % 3)))
    P = dirichlet(200, 5, 0.5)
    cases.append(("all_correct", dict(P=P, y=np.argmax(P, axis=1))))
    cases.append(("all_wrong", dict(P=P, y=(np.argmax(P, axis=1) + 1) % 5)))
    P = dirichlet(120, 5)
    cases.append(("one_class_labels", dict(P=P, y=np.zeros(120, int))))
    cases.append(("single_class_k1", dict(P=np.ones((30, 1)), y=np.zeros(30, int))))
    # probabilities on a 1/8 grid: ties in confidence, argmax and u
    grid = rng.multinomial(8, [1 / 3] * 3, size=300) / 8.0
    cases.append(("grid_ties", dict(P=grid, y=rng.integers(0, 3, 300), u=1 - grid.max(axis=1))))
    P = dirichlet(300, 4)
    cases.append(("duplicated_u", dict(P=P, y=noisy_labels(P, 0.4), u=rng.integers(0, 4, 300) / 4.0)))
    cases.append(("constant_u", dict(P=P, y=noisy_labels(P, 0.4), u=np.full(300, 0.25))))
    # extreme rows from fixed templates: p = 1, p = 0, 1e-300 (NLL clamp at 1e-12)
    tmpl = np.array([[1.0, 0.0, 0.0], [1 - 1e-15, 1e-15, 0.0], [1e-300, 1 - 1e-300, 0.0],
                     [0.0, 0.0, 1.0], [1 / 3, 1 / 3, 1 - 2 / 3]])
    P = tmpl[rng.integers(0, len(tmpl), 250)]
    cases.append(("extreme_probs", dict(P=P, y=rng.integers(0, 3, 250))))
    # confidences exactly on the bin edges i/15 (and the rest spread below them)
    # confidences exactly on the bin edges i/15 next to ones inside the bins
    # on either side, so a wrong edge convention moves rows between bins
    c = np.repeat(np.concatenate([np.arange(1, 16) / 15.0, np.arange(1, 15) / 15.0 + 1 / 60,
                                  np.arange(2, 16) / 15.0 - 1 / 60]), 6)
    P = np.column_stack([c] + [(1 - c) / 15] * 15)
    cases.append(("bin_edges", dict(P=P, y=np.where(rng.random(len(c)) < c, 0, 1))))
    return cases


def ood_cases():
    cases = []
    P = dirichlet(400, 10, 0.3)
    ood = (rng.random(400) < 0.25).astype(int)
    y = noisy_labels(P, 0.2)
    cases.append(("ood_u_column", dict(P=P, y=y, ood=ood, u=entropy(P) + rng.normal(0, 0.1, 400))))
    cases.append(("ood_entropy", dict(P=P, y=y, ood=ood)))
    cases.append(("ood_tied_u", dict(P=P, y=y, ood=ood, u=np.round(entropy(P), 1))))
    # 20 in-distribution rows: TPR is exactly 0.95 after the 19 most certain,
    # and 6 OOD rows come before the 20th, so ">= 0.95" and "> 0.95" differ
    P = dirichlet(30, 3)
    ood = np.array([0] * 20 + [1] * 10)
    u = np.array(list(range(19)) + [25] + list(range(19, 25)) + list(range(26, 30))) / 100.0
    perm = rng.permutation(30)
    cases.append(("ood_tpr_boundary", dict(P=P[perm], y=np.argmax(P, axis=1)[perm], ood=ood[perm], u=u[perm])))
    P = dirichlet(100, 4)
    ood = np.array([0, 1] * 50)
    cases.append(("ood_label_ignored", dict(P=P, y=np.where(ood == 1, -7, noisy_labels(P, 0.3)), ood=ood)))
    return cases


def run_classification():
    for name, kw in classification_cases() + ood_cases():
        path = class_csv(name + ".csv", **kw)
        y = np.where(np.asarray(kw.get("ood", 0)) == 1, 0, kw["y"]) if "ood" in kw else kw["y"]
        want = class_ref(kw.get("P"), y, kw.get("u"), kw.get("ood"), kw.get("Z"))
        check_case(name, path, want)


def run_format_variants():
    """CRLF, trailing blank lines, float labels, reordered columns, quoted names."""
    P = dirichlet(60, 3)
    y = noisy_labels(P, 0.3)
    u = rng.random(60)
    want = class_ref(P, y, u)
    path = class_csv("crlf.csv", P=P, y=y.astype(float), u=u, crlf=True, tail="\r\n\r\n")
    check_case("crlf_float_labels", path, want)
    path = class_csv("reordered.csv", P=P, y=y, u=u, order=["u", "label", "p_2", "p_0", "p_1"])
    check_case("reordered_columns", path, want)
    rows = [[f'{p[0]!r}', f'{p[1]!r}', f'{p[2]!r}', str(l), f'{v!r}'] for p, l, v in zip(P, y, u)]
    path = write_csv("quoted.csv", ['"p_0"', '"p_1"', '"p_2"', '"label"', '"u"'], rows)
    check_case("quoted_header", path, want)


def run_regression():
    n = 1000
    mu = rng.normal(48, 10, n)
    sigma = np.exp(rng.normal(0.5, 0.6, n))
    y = mu + sigma * rng.normal(0, 1, n) * rng.uniform(0.5, 1.5, n)
    cases = [("reg_random", mu, sigma, y), ("reg_n1", mu[:1], sigma[:1], y[:1]),
             ("reg_const_sigma", mu[:50], np.full(50, 2.0), y[:50]),
             ("reg_exact", mu[:40], sigma[:40], mu[:40].copy())]
    for name, m, s, t in cases:
        path = write_csv(name + ".csv", ["mu", "sigma", "y"], list(zip(m, s, t)))
        check_case(name, path, regression_ref(m, s, t))


# ------------------------------------------------------------ bootstrap

M64 = (1 << 64) - 1


class PCG32:
    """qlm_rng: PCG32 XSH-RR with qlm_rng_seed's initialization and Lemire's bounded draw."""

    def __init__(self, seed, stream):
        self.state, self.inc = 0, ((stream << 1) | 1) & M64
        self.u32()
        self.state = (self.state + seed) & M64
        self.u32()

    def u32(self):
        old = self.state
        self.state = (old * 6364136223846793005 + self.inc) & M64
        xs = (((old >> 18) ^ old) >> 27) & 0xFFFFFFFF
        rot = old >> 59
        return ((xs >> rot) | (xs << ((-rot) & 31))) & 0xFFFFFFFF

    def below(self, n):
        m = self.u32() * n
        if (m & 0xFFFFFFFF) < n:
            t = ((1 << 32) - n) % n
            while (m & 0xFFFFFFFF) < t:
                m = self.u32() * n
        return m >> 32


def bootstrap_ref(sets, y, ood, R, seed, keys):
    """Replay qlm_bootstrap_delta: the same draws, reference metrics, numpy percentiles.

    sets: two dicts with P, u and optionally Z for the original rows; a
    resample indexes them, so duplicated rows stay bit-identical.
    """
    gen = PCG32(seed, 0)
    groups = [np.nonzero(ood == 0)[0], np.nonzero(ood == 1)[0]]
    deltas = {k: [] for k in keys}
    for _ in range(R):
        rows = np.array([g[gen.below(len(g))] for g in groups for _ in range(len(g))])
        va = [class_ref(s["P"][rows], y[rows], s["u"][rows], ood[rows],
                        None if s.get("Z") is None else s["Z"][rows], cross_check=False) for s in sets]
        for k in keys:
            if va[0][k] is not None and va[1][k] is not None:
                deltas[k].append(va[1][k] - va[0][k])
    return {k: (np.percentile(d, [2.5, 97.5]) if d else (None, None), len(d)) for k, d in deltas.items()}


def run_compare():
    n, K = 120, 4
    Pa = dirichlet(n, K, 0.4)
    Zb = np.log(np.maximum(Pa, 1e-6)) + rng.normal(0, 0.4, (n, K))  # "quantized": perturbed
    Pb = softmax(Zb)
    ood = (rng.random(n) < 0.2).astype(int)
    y = np.where(ood == 1, 0, noisy_labels(Pa, 0.25))
    fa = class_csv("cmp_a.csv", P=Pa, y=y, ood=ood)
    fb = class_csv("cmp_b.csv", Z=Zb, y=y, ood=ood)
    R, seed = 60, 77
    rc, out, err = run("--input", fa, "--compare", fb, "--json", "--resamples", str(R), "--seed", str(seed))
    if rc != 0:
        report(False, f"compare: exit {rc}: {err.strip()}")
        return
    got = json.loads(out)
    ia = class_ref(Pa, y, None, ood)
    ib = class_ref(Pb, y, None, ood, Z=Zb)
    idm = ood == 0
    p, q = Pa[idm], Pb[idm]
    kl = np.mean(np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / np.maximum(q, 1e-12)), 0), axis=1))
    mid = (p + q) / 2
    js = np.mean(0.5 * np.sum(p * np.log(p / mid), axis=1) + 0.5 * np.sum(q * np.log(q / mid), axis=1))
    agree = {"kl": kl, "js": js, "tv": np.mean(0.5 * np.sum(np.abs(p - q), axis=1)),
             "flip_rate": np.mean(np.argmax(p, 1) != np.argmax(q, 1)),
             "spearman_u": spearmanr(entropy(p), entropy(q)).correlation}
    report(check_keys("compare", got, agree), "compare agreement keys")
    keys = list(got["metrics"])
    sets = [{"P": Pa, "u": entropy(Pa)}, {"P": Pb, "u": entropy(Pb), "Z": Zb}]
    ref = bootstrap_ref(sets, y, ood, R, seed, keys)
    for k in keys:
        g = got["metrics"][k]
        (lo, hi), valid = ref[k]
        ok = (same(g["a"], ia[k]) and same(g["b"], ib[k]) and g["n_valid"] == valid
              and same(g["lo"], lo) and same(g["hi"], hi))
        report(ok, f"compare {k}: got {g}, want a {ia[k]} b {ib[k]} lo {lo} hi {hi} valid {valid}")
    rc2, out2, _ = run("--input", fa, "--compare", fb, "--json", "--resamples", str(R), "--seed", str(seed))
    report(rc2 == 0 and out2 == out, "compare: same seed, same output")
    rc3, out3, _ = run("--input", fa, "--compare", fb, "--json", "--resamples", str(R), "--seed", str(seed + 1))
    report(rc3 == 0 and out3 != out, "compare: another seed, other intervals")
    row = int(np.nonzero(ood == 0)[0][3])  # another label on a later in-distribution row
    y2 = y.copy()
    y2[row] = (y2[row] + 1) % K
    fc = class_csv("cmp_c.csv", P=Pa, y=y2, ood=ood)
    rc4, _, err4 = run("--input", fa, "--compare", fc)
    report(rc4 == 1 and f"cmp_c.csv:{row + 2}:" in err4, f"compare, other labels: exit {rc4}, {err4.strip()!r}")


# ------------------------------------------------------------ bad files

BAD = [
    # name, lines, line number in the message, text in the message
    ("ragged", ["p_0,p_1,label"] + ["0.5,0.5,0"] * 15 + ["0.5,0.5"], 17, "row has 2 fields, header has 3"),
    ("sum", ["p_0,p_1,label", "0.5,0.5,0", "0.6,0.41,1"], 3, "sum to"),
    ("label_range", ["p_0,p_1,label", "0.5,0.5,0", "0.5,0.5,1", "0.5,0.5,2"], 4, "outside"),
    ("label_negative", ["p_0,p_1,label", "0.5,0.5,-1"], 2, "outside"),
    ("label_fraction", ["p_0,p_1,label", "0.5,0.5,0.5"], 2, "not an integer"),
    ("label_text", ["p_0,p_1,label", "0.5,0.5,cat"], 2, "not a number"),
    ("nan_p", ["p_0,p_1,label", "nan,0.5,0"], 2, "not finite"),
    ("inf_u", ["p_0,p_1,label,u", "0.5,0.5,0,0.1", "0.5,0.5,0,inf"], 3, "not finite"),
    ("inf_z", ["z_0,z_1,label", "1,-inf,0"], 2, "not finite"),
    ("negative_p", ["p_0,p_1,label", "-0.5,1.5,0"], 2, "outside"),
    ("empty_field", ["p_0,p_1,label", "0.5,,0"], 2, "empty"),
    ("no_label", ["p_0,p_1", "0.5,0.5"], 1, "no label column"),
    ("unknown_column", ["p_0,p_1,label,weight", "0.5,0.5,0,1"], 1, "unknown column 'weight'"),
    ("duplicate_column", ["p_0,p_1,p_1,label", "0.5,0.5,0.5,0"], 1, "twice"),
    ("class_gap", ["p_0,p_2,label", "0.5,0.5,0"], 1, "p_2"),
    ("mixed_pz", ["p_0,z_1,label", "0.5,0.5,0"], 1, "both"),
    ("no_classes", ["label,u", "0,0.5"], 1, "no class columns"),
    ("empty_file", [], 1, "empty file"),
    ("header_only", ["p_0,p_1,label"], 2, "no data rows"),
    ("blank_line", ["p_0,p_1,label", "0.5,0.5,0", "", "0.5,0.5,1"], 3, "empty line"),
    ("ood_value", ["p_0,p_1,label,ood", "0.5,0.5,0,2"], 2, "want 0 or 1"),
    ("sigma_zero", ["mu,sigma,y", "1,0.5,1", "1,0,2"], 3, "sigma"),
    ("mixed_kinds", ["p_0,p_1,label,mu", "0.5,0.5,0,1"], 1, "mixes"),
]


def run_bad_files():
    for name, lines, line, text in BAD:
        path = os.path.join(TMP, f"bad_{name}.csv")
        with open(path, "w") as f:
            f.write("\n".join(lines) + ("\n" if lines else ""))
        rc, out, err = run("--input", path, "--json")
        want = f"{path}:{line}:"
        report(rc == 1 and want in err and text in err,
               f"bad file {name}: exit {rc}, stderr {err.strip()!r}, want exit 1 with {want!r} and {text!r}")
    rc, _, err = run("--json")
    report(rc == 2 and "--input" in err, f"no --input: exit {rc}, {err.strip()!r}")
    rc, _, err = run("--input", os.path.join(TMP, "missing.csv"))
    report(rc == 1 and "missing.csv" in err, f"missing file: exit {rc}, {err.strip()!r}")


def main():
    run_classification()
    run_format_variants()
    run_regression()
    run_compare()
    run_bad_files()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        subprocess.run(["rm", "-rf", TMP])
