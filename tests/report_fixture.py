#!/usr/bin/env python3
"""Write a synthetic but plausible study results database (schema version 1,
docs/study-db.md) for the report tests.

    report_fixture.py OUT.db [--variant full|empty|nocurves|noedl|odd|v2]

full: 2 models x 3 methods (softmax, edl, ddu) x fp32 / ptq-int8 / qat-int8 /
float-control, a ptq-int8 cell on the edgetpu profile, a second seed for
resnet8/softmax, curves (with empty reliability bins), shifts, timings, two
failed cells (one a float control) whose error text holds HTML, and a note
on a finished cell. The numbers follow simple generative rules (seeded), so
the report's summary can be checked against values recomputed from the DB.
"""
import math
import random
import sqlite3
import sys

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cells(
  id INTEGER PRIMARY KEY, hash TEXT UNIQUE NOT NULL,
  model TEXT NOT NULL, method TEXT NOT NULL, mode TEXT NOT NULL, device TEXT NOT NULL,
  seed INTEGER NOT NULL, profile TEXT NOT NULL, parent_hash TEXT, status TEXT NOT NULL,
  error TEXT, model_path TEXT, params INTEGER, model_bytes INTEGER,
  train_seconds REAL, eval_seconds REAL);
CREATE TABLE metrics(cell_id INTEGER NOT NULL REFERENCES cells(id), dataset TEXT NOT NULL,
  score TEXT NOT NULL, name TEXT NOT NULL, value REAL NOT NULL, lo REAL, hi REAL,
  PRIMARY KEY(cell_id, dataset, score, name));
CREATE TABLE comparisons(cell_id INTEGER NOT NULL, ref_cell_id INTEGER NOT NULL, dataset TEXT NOT NULL,
  name TEXT NOT NULL, value REAL NOT NULL, lo REAL, hi REAL,
  PRIMARY KEY(cell_id, ref_cell_id, dataset, name));
CREATE TABLE curves(cell_id INTEGER NOT NULL, dataset TEXT NOT NULL, kind TEXT NOT NULL,
  idx INTEGER NOT NULL, x REAL NOT NULL, y REAL NOT NULL, w REAL,
  PRIMARY KEY(cell_id, dataset, kind, idx));
CREATE TABLE timings(cell_id INTEGER NOT NULL, scenario TEXT NOT NULL, threads INTEGER NOT NULL,
  key TEXT NOT NULL, value REAL NOT NULL, PRIMARY KEY(cell_id, scenario, threads, key));
"""

MODELS = {"resnet8": (78_042, 0.905), "mobilenet_v1_050": (220_000, 0.915)}
METHODS = {"softmax": ("msp", 0.0), "edl": ("vacuity", 0.01), "ddu": ("gda_density", -0.005)}
# Per-mode shifts of (accuracy, ece, auroc_ood) and the weight bytes factor.
MODES = {
    "fp32": (0.0, 0.0, 0.0, 4.0),
    "float-control": (0.002, -0.002, 0.0, 4.0),
    "ptq-int8": (-0.008, 0.012, -0.03, 1.0),
    "qat-int8": (-0.003, 0.006, -0.015, 1.0),
}
# How strongly each method's OOD detection reacts to int8 (edl least).
OOD_SENS = {"softmax": 1.0, "edl": 0.4, "ddu": 1.6}
SHIFTS = ["gaussian_noise", "contrast"]
# a failed QAT cell, and a failed float control (its QAT cell falls back to the fp32 parent)
FAILED = {("mobilenet_v1_050", "ddu", "qat-int8"), ("mobilenet_v1_050", "edl", "float-control")}
FAILED_ERROR = "<script>alert('x')</script> training diverged: loss = nan & grad > 1e9"


class Writer:
    def __init__(self, db, rng):
        self.db, self.rng, self.next_id = db, rng, 1

    def cell(self, model, method, mode, device, seed, parent, status="done", error=None):
        cid = self.next_id
        self.next_id += 1
        h = "h%04d-%s-%s-%s-%s-%d" % (cid, model, method, mode, device, seed)
        params, _ = MODELS[model]
        nbytes = int(params * MODES[mode][3]) + 4096 if status == "done" else None
        self.db.execute(
            "INSERT INTO cells VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (cid, h, model, method, mode, device, seed, "quick", parent, status, error,
             "cells/%s.qlm" % h if status == "done" else None, params, nbytes,
             12.5 if mode in ("fp32", "qat-int8", "float-control") else None, 1.5))
        return cid, h

    def metric(self, cid, ds, score, name, v, ci=0.01):
        self.db.execute("INSERT INTO metrics VALUES(?,?,?,?,?,?,?)", (cid, ds, score, name, v, v - ci, v + ci))

    def compare(self, cid, ref, ds, name, v, ci=0.004):
        self.db.execute("INSERT INTO comparisons VALUES(?,?,?,?,?,?,?)", (cid, ref, ds, name, v, v - ci, v + ci))

    def curve(self, cid, ds, kind, pts):
        self.db.executemany("INSERT INTO curves VALUES(?,?,?,?,?,?,?)",
                            [(cid, ds, kind, i, x, y, w) for i, (x, y, w) in enumerate(pts)])


NOTE = "no comparison with <float-control> cell: it was skipped"


def cell_numbers(model, method, mode, device, seed, rng):
    _, acc0 = MODELS[model]
    da, de, dood, _ = MODES[mode]
    acc = acc0 + METHODS[method][1] + da + 0.002 * seed
    ece = 0.03 + (0.01 if method == "softmax" else 0.0) + de
    ood = 0.86 + (0.03 if method == "ddu" else 0.0) + dood * OOD_SENS[method]
    if device == "edgetpu":
        acc, ece, ood = acc - 0.002, ece + 0.003, ood - 0.01
    return {"accuracy": acc, "ece": ece, "auroc_ood": ood,
            "nll": 0.25 + 2.0 * ece + (1 - acc), "brier": 0.12 + (1 - acc) * 0.5,
            "auroc_misclassification": 0.88 - 0.5 * ece + rng.uniform(-0.005, 0.005)}


def write_metrics(w, cid, m, method, rng, curves):
    score = METHODS[method][0]
    for name in ("accuracy", "nll", "ece", "brier"):
        w.metric(cid, "test", "", name, m[name])
    w.metric(cid, "test", score, "auroc_misclassification", m["auroc_misclassification"])
    w.metric(cid, "test", "entropy", "auroc_misclassification", m["auroc_misclassification"] - 0.02)
    w.metric(cid, "ood:mnist", score, "auroc_ood", m["auroc_ood"])
    w.metric(cid, "ood:mnist", "entropy", "auroc_ood", m["auroc_ood"] - 0.05)
    w.metric(cid, "ood:uniform", score, "auroc_ood", 0.97)
    for s_i, shift in enumerate(SHIFTS):
        for sev in range(1, 4):
            drop = 0.04 * sev * (1 + s_i)
            w.metric(cid, "shift:%s:%d" % (shift, sev), "", "accuracy", m["accuracy"] - drop)
            w.metric(cid, "shift:%s:%d" % (shift, sev), "", "ece", m["ece"] + 0.5 * drop)
    if not curves:
        return
    over = m["ece"] * 2.5  # overconfidence of the upper bins
    # bins 0-1 empty (count 0, as the runner writes them): the report skips them
    w.curve(cid, "test", "reliability",
            [(0.0, 0.0, 0)] * 2 +
            [(0.15 + 0.085 * b, min(1.0, max(0.0, 0.15 + 0.085 * b - over * (b / 9.0) + rng.uniform(-0.01, 0.01))),
              50 + 100 * b) for b in range(10)])
    err = 1 - m["accuracy"]
    w.curve(cid, "test", "risk_coverage",
            [(c / 50.0, err * (c / 50.0) ** 2.2, None) for c in range(1, 51)])
    shift = (0.9 - m["auroc_ood"]) * 2
    for ds, mu in (("test", 0.25), ("ood:mnist", 0.65 + shift)):
        pts = []
        for b in range(20):
            x = (b + 0.5) / 20
            d = math.exp(-((x - mu) ** 2) / (2 * 0.12 ** 2)) / (0.12 * math.sqrt(2 * math.pi))
            pts.append((x, d, int(d * 100)))
        w.curve(cid, ds, "hist", pts)


def scatter(w, cid, rng, noise):
    pts = []
    for _ in range(150):
        u = rng.betavariate(1.2, 3.0)
        pts.append((u, min(1.0, max(0.0, u + rng.gauss(0, noise))), None))
    w.curve(cid, "test", "scatter_float_int8", pts)


def timings(w, cid, mode, params):
    base = params / 1e5 * (0.35 if "int8" in mode else 1.0)
    for thr in (1, 2):
        w.db.execute("INSERT INTO timings VALUES(?,?,?,?,?)", (cid, "single_stream", thr, "p50_ms", base / thr))
        w.db.execute("INSERT INTO timings VALUES(?,?,?,?,?)", (cid, "single_stream", thr, "p99_ms", 1.5 * base / thr))
    w.db.execute("INSERT INTO timings VALUES(?,?,?,?,?)", (cid, "offline", 2, "samples_per_s", 1000 / base))


def comparisons(w, cid, ref, m, mr, rng):
    for name in ("accuracy", "ece", "nll", "auroc_misclassification"):
        w.compare(cid, ref, "test", "d_" + name, m[name] - mr[name])
    w.compare(cid, ref, "ood:mnist", "d_auroc_ood", m["auroc_ood"] - mr["auroc_ood"])
    w.compare(cid, ref, "test", "flip_rate", abs(m["accuracy"] - mr["accuracy"]) + 0.01)
    w.compare(cid, ref, "test", "spearman_u", 0.97 - abs(m["ece"] - mr["ece"]) * 3)


def fill(db, variant):
    rng = random.Random(20261204)
    db.executescript(SCHEMA)
    meta = {"schema_version": "2" if variant == "v2" else "1",
            "study_name": "fixture <quick> & co", "qualm_version": "0.1.0", "git_commit": "abc1234",
            "cpu": "Synthetic CPU @ 2 cores", "compiler": "gcc 12.2", "threads": "2",
            "created_utc": "2026-12-04T07:00:00Z", "study_json": "{\"name\": \"fixture\"}"}
    db.executemany("INSERT INTO meta VALUES(?,?)", meta.items())
    if variant == "empty":
        return
    w = Writer(db, rng)
    curves = variant != "nocurves"
    methods = [m for m in METHODS if not (variant == "noedl" and m == "edl")]
    for model in MODELS:
        for method in methods:
            seeds = [0, 1] if (model, method) == ("resnet8", "softmax") else [0]
            for seed in seeds:
                pid, ph = w.cell(model, method, "fp32", "cpu", seed, None)
                mp = cell_numbers(model, method, "fp32", "cpu", seed, rng)
                write_metrics(w, pid, mp, method, rng, curves)
                timings(w, pid, "fp32", MODELS[model][0])
                ctl = None
                for mode, device in (("float-control", "cpu"), ("ptq-int8", "cpu"), ("qat-int8", "cpu"),
                                     ("ptq-int8", "edgetpu")):
                    if device == "edgetpu" and (model, method, seed) != ("resnet8", "softmax", 0):
                        continue
                    if (model, method, mode) in FAILED:
                        w.cell(model, method, mode, device, seed, ph, "failed", FAILED_ERROR)
                        continue
                    note = NOTE if (model, method, mode, seed) == ("resnet8", "ddu", "ptq-int8", 0) else None
                    cid, _ = w.cell(model, method, mode, device, seed, ph, error=note)
                    m = cell_numbers(model, method, mode, device, seed, rng)
                    write_metrics(w, cid, m, method, rng, curves)
                    if device == "cpu":
                        timings(w, cid, mode, MODELS[model][0])
                    comparisons(w, cid, pid, m, mp, rng)
                    if mode == "float-control":
                        ctl = (cid, m)
                    if mode == "qat-int8" and ctl:
                        comparisons(w, cid, ctl[0], m, ctl[1], rng)
                    if curves and mode != "float-control":
                        scatter(w, cid, rng, 0.02 if mode == "qat-int8" else 0.05)


def add_odd(db):
    """Hostile but valid content: names with markup and quotes, an infinite
    metric, NULL sizes, modes and devices the report has no colour for, a
    cell without parent."""
    db.execute("UPDATE metrics SET value = 9e999 WHERE rowid = (SELECT MIN(rowid) FROM metrics WHERE name='nll')")
    db.execute("UPDATE cells SET model_bytes = NULL, params = NULL WHERE id = 2")
    parent = db.execute("SELECT hash FROM cells WHERE id = 1").fetchone()[0]
    rows = [(900, "odd-1", 'we"ird <model> & \'co\'', "softmax", "fp16", "myriadx", 0, None),
            (901, "odd-2", "resnet8", "softmax", "int4-experimental", "cpu", 0, parent),
            (902, "odd-3", "resnet8", "softmax", "fp16", "myriadx", 0, parent)]
    for cid, h, model, method, mode, device, seed, ph in rows:
        db.execute("INSERT INTO cells(id, hash, model, method, mode, device, seed, profile, parent_hash, status, "
                   "model_bytes) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                   (cid, h, model, method, mode, device, seed, "quick", ph, "done", 50000))
        db.execute("INSERT INTO metrics VALUES(?,?,?,?,?,?,?)", (cid, "test", "", "accuracy", 0.5, None, None))
        db.execute("INSERT INTO metrics VALUES(?,?,?,?,?,?,?)", (cid, "test", "", "ece", 0.1, None, None))


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: report_fixture.py OUT.db [--variant full|empty|nocurves|noedl|odd|v2]")
    variant = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--variant" else "full"
    db = sqlite3.connect(sys.argv[1])
    with db:
        fill(db, "full" if variant == "odd" else variant)
        if variant == "odd":
            add_odd(db)
    db.close()


if __name__ == "__main__":
    main()
