#!/usr/bin/env python3
"""Check a rendered study report against its database.

    report_check.py REPORT.html STUDY.db [--expect-empty]

Structure: the HTML nests properly (every non-void element closed in
order), there is no <script>, <link>, <iframe> or <object>, no attribute
points to the network (http:, https:, //), the CSS loads nothing, every
figure the database calls for is present once by id, and the reliability
diagrams draw one line per finished cell of their family.
Content, recomputed here from the database with sqlite3 (independently of
the C code): the Q2 winner and its score, the Q3 EDL-QAT vs softmax-QAT
numbers, every comparison delta of the tables with its interval, the failed
cells (with HTML in their error text, shown as text) and the study name.
Prints one line per failure and 'N passed, N failed'; exit 1 on failure.
"""
import html.parser
import math
import re
import sqlite3
import sys

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
# SVG children written self-closed (<line .../>): html.parser reports them
# through handle_startendtag, so they never open an element.
FORBIDDEN = {"script", "link", "iframe", "object", "embed", "base"}
MULTI_PASS = {"mcdropout", "ensemble", "tta"}


class Parser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.svg_ids, self.text = [], [], [], []
        self.svg_polylines, self.cur_svg, self.style, self.svg_tags = {}, None, [], {}

    def check_attrs(self, tag, attrs):
        if tag in FORBIDDEN:
            self.errors.append("forbidden element <%s>" % tag)
        for k, v in attrs:
            if k == "xmlns":
                continue  # a namespace name, never fetched
            if v and re.match(r"\s*(https?:|//|ftp:)", v, re.I):
                self.errors.append("network reference %s=%r on <%s>" % (k, v, tag))
            if k.startswith("on"):
                self.errors.append("event handler %s on <%s>" % (k, tag))

    def count(self, tag):
        if self.cur_svg:
            key = (self.cur_svg, tag)
            self.svg_tags[key] = self.svg_tags.get(key, 0) + 1

    def handle_starttag(self, tag, attrs):
        self.check_attrs(tag, attrs)
        self.count(tag)
        if tag == "svg":
            self.cur_svg = dict(attrs).get("id")
            self.svg_ids.append(self.cur_svg)
            self.svg_polylines[self.cur_svg] = 0
        if tag == "polyline" and self.cur_svg:
            self.svg_polylines[self.cur_svg] += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.check_attrs(tag, attrs)
        self.count(tag)
        if tag == "polyline" and self.cur_svg:
            self.svg_polylines[self.cur_svg] += 1

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append("</%s> closes <%s>" % (tag, self.stack[-1] if self.stack else "nothing"))
            return
        self.stack.pop()
        if tag == "svg":
            self.cur_svg = None

    def handle_data(self, data):
        if self.stack and self.stack[-1] == "style":
            self.style.append(data)
        self.text.append(data)


def fmt(v):
    """The report's number format: 3 decimals, tiny values as plain 0."""
    if v is None or not math.isfinite(v):
        return "\u2014"
    if abs(v) * 1000 < 0.5:
        v = 0.0
    return "%.3f" % v


def sfmt(v):
    return ("+" if v is not None and math.isfinite(v) and abs(v) * 1000 >= 0.5 and v > 0 else "") + fmt(v)


class Study:
    def __init__(self, path):
        self.db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
        q = self.db.execute
        self.cells = {r[0]: dict(zip(("id", "hash", "model", "method", "mode", "device", "seed", "parent_hash",
                                      "status", "error"), r))
                      for r in q("SELECT id, hash, model, method, mode, device, seed, parent_hash, status, error "
                                 "FROM cells")}
        by_hash = {c["hash"]: i for i, c in self.cells.items()}
        for c in self.cells.values():
            c["parent"] = by_hash.get(c["parent_hash"])
            c["control"] = None
        for c in self.cells.values():
            if c["mode"] != "qat-int8" or not c["parent_hash"]:
                continue
            for o in self.cells.values():
                if (o["status"] == "done" and o["mode"] == "float-control" and o["parent_hash"] == c["parent_hash"]
                        and o["device"] == c["device"]):
                    c["control"] = o["id"]
        row = q("SELECT dataset FROM metrics WHERE dataset LIKE 'ood:%' AND name='auroc_ood' GROUP BY dataset "
                "ORDER BY COUNT(DISTINCT cell_id) DESC, dataset LIMIT 1").fetchone()
        self.ood = row[0] if row else None

    def metric(self, cid, ds, name):
        r = self.db.execute("SELECT value FROM metrics WHERE cell_id=? AND dataset=? AND name=? "
                            "ORDER BY (score<>''), rowid LIMIT 1", (cid, ds, name)).fetchone()
        return r[0] if r else None

    def delta(self, cid, ref, ds, name):
        r = self.db.execute("SELECT value FROM comparisons WHERE cell_id=? AND ref_cell_id=? AND dataset=? "
                            "AND name=?", (cid, ref, ds, "d_" + name)).fetchone()
        if r:
            return r[0]
        a, b = self.metric(cid, ds, name), self.metric(ref, ds, name)
        return None if a is None or b is None else a - b

    def done(self):
        return [c for c in self.cells.values() if c["status"] == "done"]


def mean(xs):
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(xs) / len(xs) if xs else None


def expected_q2(st):
    ranked = []
    methods = []
    for c in sorted(st.cells.values(), key=lambda c: c["id"]):
        if c["method"] not in methods:
            methods.append(c["method"])
    for m in methods:
        if m in MULTI_PASS:
            continue
        scores = []
        for c in st.done():
            if c["method"] != m or "int8" not in c["mode"]:
                continue
            ref = c["control"] if c["control"] is not None else c["parent"]
            if ref is None:
                continue
            dd, de = st.delta(c["id"], ref, st.ood, "auroc_ood"), st.delta(c["id"], ref, "test", "ece")
            if dd is None or de is None:
                continue
            scores.append(abs(dd) + abs(de))
        if scores:
            ranked.append((sum(scores) / len(scores), m))
    ranked.sort()
    return ranked


def main():
    html_path, db_path = sys.argv[1], sys.argv[2]
    expect_empty = "--expect-empty" in sys.argv
    page = open(html_path, encoding="utf-8").read()
    p = Parser()
    p.feed(page)
    p.close()
    text = re.sub(r"\s+", " ", "".join(p.text))
    st = Study(db_path)
    passed, failed = 0, 0

    def check(ok, what):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
            print("FAIL: %s" % what)

    check(not p.errors, "HTML structure: %s" % "; ".join(p.errors[:5]))
    check(not p.stack, "elements left open at the end: %s" % p.stack)
    css = "".join(p.style)
    check("url(" not in css and "@import" not in css, "the CSS loads something")
    check(page.startswith("<!DOCTYPE html>"), "no doctype")
    check(len(p.svg_ids) == len(set(p.svg_ids)), "duplicate svg ids")

    name = st.db.execute("SELECT value FROM meta WHERE key='study_name'").fetchone()
    check(name and ("qualm study report: " + name[0]) in text, "study name missing or not escaped right")

    if expect_empty:
        check("holds no cells" in text, "empty database not reported")
        print("%d passed, %d failed" % (passed, failed))
        return 1 if failed else 0

    # Figures: five per (model, method) with a finished cell, plus two global.
    expected = {"fig-size", "fig-latency"}
    families = {}
    for c in st.done():
        families.setdefault((c["model"], c["method"]), []).append(c)
    for (model, method), cells in families.items():
        for kind in ("reliability", "risk_coverage", "hist", "scatter", "shift"):
            expected.add(re.sub(r"[^A-Za-z0-9_-]", "_", "fig-%s-%s-%s" % (kind, model, method)))
    missing = expected - set(p.svg_ids)
    check(not missing, "svg figures missing: %s" % sorted(missing))
    for (model, method), cells in families.items():
        seed = min(c["seed"] for c in cells)
        n = sum(1 for c in cells if c["seed"] == seed and st.db.execute(
            "SELECT 1 FROM curves WHERE cell_id=? AND kind='reliability' AND dataset='test' AND (w IS NULL OR w > 0)",
            (c["id"],)).fetchone())
        fid = re.sub(r"[^A-Za-z0-9_-]", "_", "fig-reliability-%s-%s" % (model, method))
        want = n + 1  # one line per cell with curve points + the diagonal
        check(p.svg_polylines.get(fid) == want,
              "%s: %s polylines, expected %d" % (fid, p.svg_polylines.get(fid), want))
        # one marker per non-empty bin (count > 0) of those cells
        ids = [c["id"] for c in cells if c["seed"] == seed]
        bins = st.db.execute("SELECT COUNT(*) FROM curves WHERE kind='reliability' AND dataset='test' AND "
                             "(w IS NULL OR w > 0) AND cell_id IN (%s)" % ",".join("?" * len(ids)), ids).fetchone()[0]
        got = p.svg_tags.get((fid, "circle"), 0)
        check(got == bins, "%s: %d bin markers, expected %d non-empty bins" % (fid, got, bins))

    # Failed cells: listed, their error text shown as text.
    failed_cells = [c for c in st.cells.values() if c["status"] != "done"]
    if failed_cells:
        check("%d cell%s failed" % (len(failed_cells), "" if len(failed_cells) == 1 else "s") in text,
              "failed cell count")
        for c in failed_cells:
            check(re.sub(r"\s+", " ", c["error"] or "") in text, "error text of failed cell %d" % c["id"])

    # Notes the runner left on finished cells are shown.
    for c in st.done():
        if c["error"]:
            check(re.sub(r"\s+", " ", c["error"]) in text, "note of finished cell %d not shown" % c["id"])

    # Table deltas with their intervals.
    n_rows = 0
    for c in st.done():
        for ref in (c["parent"], c["control"]):
            if ref is None:
                continue
            for ds, name in (("test", "d_ece"), ("test", "d_accuracy"), (st.ood, "d_auroc_ood")):
                r = st.db.execute("SELECT value, lo, hi FROM comparisons WHERE cell_id=? AND ref_cell_id=? AND "
                                  "dataset=? AND name=?", (c["id"], ref, ds, name)).fetchone()
                if not r or r[1] is None:
                    continue
                n_rows += 1
                s = "\u0394 %s [%s, %s]" % (sfmt(r[0]), fmt(r[1]), fmt(r[2]))
                check(s in text, "cell %d vs %d %s: %r not in the table" % (c["id"], ref, name, s))
    check(n_rows > 0 or not st.db.execute("SELECT 1 FROM comparisons").fetchone(), "no comparison checked")

    # Per-OOD-set table: mean AUROC per (method, mode@device) and set.
    oods = [r[0] for r in st.db.execute("SELECT DISTINCT dataset FROM metrics WHERE dataset LIKE 'ood:%' AND "
                                         "name='auroc_ood' ORDER BY dataset")]
    if len(oods) > 1:
        groups = {}
        for c in sorted(st.done(), key=lambda c: c["id"]):
            label = c["mode"] if c["device"] == "cpu" else "%s@%s" % (c["mode"], c["device"])
            groups.setdefault((c["method"], label), []).append(c["id"])
        for (method, label), ids in groups.items():
            vals = [fmt(mean([st.metric(i, o, "auroc_ood") for i in ids])) for o in oods]
            row = method + label + "".join(vals)
            check(row in text, "OOD-set table: row %r missing" % row)
    else:
        check("OOD detection per OOD set" not in text, "OOD-set table with a single OOD set")

    # Q2: the winner by the stated criterion.
    ranked = expected_q2(st)
    if ranked:
        tied = [m for sc, m in ranked if fmt(sc) == fmt(ranked[0][0])]
        if len(tied) == 1:
            want = "Answer: %s (score %s" % (tied[0], fmt(ranked[0][0]))
            check(want in text, "Q2: %r not in the summary" % want)
        else:
            got = re.search(r"Answer: a tie between (.*?) \(score ([0-9.]+)\)", text)
            names = set(re.split(r", | and ", got.group(1))) if got else set()
            check(got and names == set(tied) and got.group(2) == fmt(ranked[0][0]),
                  "Q2: tie between %s not reported (%s)" % (tied, got.group(0) if got else "no tie sentence"))
    else:
        check("Q2. Which single-pass method" in text and "Cannot answer" in text, "Q2 without data not said")

    # Q3: EDL-QAT vs softmax-QAT per model.
    methods = {c["method"] for c in st.cells.values()}
    if "edl" in methods and "softmax" in methods:
        for model in sorted({c["model"] for c in st.cells.values()}):
            vals = {}
            for m in ("edl", "softmax"):
                cs = [c for c in st.done() if c["model"] == model and c["method"] == m and c["mode"] == "qat-int8"]
                vals[m] = mean([st.metric(c["id"], "test", "accuracy") for c in cs])
            if vals["edl"] is None or vals["softmax"] is None:
                check("%s: cannot compare" % model in text, "Q3 %s: missing QAT cell not said" % model)
                continue
            want = "accuracy EDL-QAT %s vs softmax-QAT %s (%s)" % (fmt(vals["edl"]), fmt(vals["softmax"]),
                                                                  sfmt(vals["edl"] - vals["softmax"]))
            check(want in text, "Q3 %s: %r not in the summary" % (model, want))
            # the verdict: |dECE| + |dAUROC OOD| of QAT against its control (else parent)
            sens = {}
            for m in ("edl", "softmax"):
                cs = [c for c in st.done() if c["model"] == model and c["method"] == m and c["mode"] == "qat-int8"]
                ref = lambda c: c["control"] if c["control"] is not None else c["parent"]
                de = mean([st.delta(c["id"], ref(c), "test", "ece") for c in cs])
                do = mean([st.delta(c["id"], ref(c), st.ood, "auroc_ood") for c in cs])
                sens[m] = None if de is None or do is None else abs(de) + abs(do)
            if None not in sens.values():
                verdict = ("equally sensitive" if fmt(sens["edl"]) == fmt(sens["softmax"]) else
                           "less sensitive" if sens["edl"] < sens["softmax"] else "more sensitive")
                seg = text[text.find("%s: accuracy EDL-QAT" % model):]
                seg = seg[:seg.find("QAT cells)")]
                check(verdict in seg, "Q3 %s: verdict %r not in %r" % (model, verdict, seg[-160:]))
    else:
        check("Cannot answer: the study has no" in text, "Q3 without edl/softmax not said")

    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
