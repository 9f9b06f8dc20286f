/*
 * The report's building blocks: HTML escaping, number format, ids, tick
 * placement, the SVG writer's handling of values an axis cannot show, and
 * qlm_report_render's statuses on a database made here with SQLite's C API.
 * (The rendered report as a whole is checked by tests/report_render.sh.)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "qualm/report.h"
#include "study/report_internal.h"

static void test_escape(void) {
    rpt_buf b = {0};
    rpt_esc(&b, "a<b>&\"c\"'d'\x01\x7f\ttab");
    CHECK_MSG(strcmp(b.s, "a&lt;b&gt;&amp;&quot;c&quot;&#39;d&#39;\x7f\ttab") == 0, "got %s", b.s);
    rpt_buf_free(&b);
    rpt_esc(&b, NULL); /* nothing, no crash */
    rpt_puts(&b, "");
    CHECK(b.len == 0);
    rpt_id(&b, "we\"ird <m>-x_1");
    CHECK_MSG(strcmp(b.s, "we_ird__m_-x_1") == 0, "got %s", b.s);
    rpt_buf_free(&b);
}

static void test_numbers(void) {
    static const struct {
        double v;
        int digits;
        const char *want;
    } cases[] = {
        {1.23456, 3, "1.235"}, {-0.0004, 3, "0.000"}, {-0.0006, 3, "-0.001"}, {NAN, 3, "&#8212;"},
        {INFINITY, 2, "&#8212;"}, {-INFINITY, 2, "&#8212;"}, {0.5, 0, "0"}, {12.0, 1, "12.0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        rpt_buf b = {0};
        rpt_num(&b, cases[i].v, cases[i].digits);
        CHECK_MSG(b.s && strcmp(b.s, cases[i].want) == 0, "%g: got %s, want %s", cases[i].v, b.s, cases[i].want);
        rpt_buf_free(&b);
    }
}

/* Ticks lie in [lo, hi], are evenly spaced by 1, 2, 2.5 or 5 x 10^k, and
 * there are at most max of them and, for max >= 6 (what the plots ask),
 * at least 2: the chosen step is at most 2.5x the smallest that fits, so
 * range/step > (max-1)/2.5 >= 2. Spacing is compared relative to
 * the tick magnitude: a step of 1e-7 at 1e4 is exact only to ~1e-12. */
static void check_ticks(double lo, double hi, int max) {
    double t[32];
    int n = rpt_nice_ticks(lo, hi, max, t);
    CHECK_MSG(n <= max && (max < 6 || n >= 2), "[%g, %g] max %d: %d ticks", lo, hi, max, n);
    if (n < 2) return;
    double step = t[1] - t[0], scale = fmax(fabs(lo), fabs(hi)), eps = 1e-9 * (hi - lo) + 1e-13 * scale;
    double mant = step / pow(10.0, floor(log10(step) + 1e-9)), tol = 1e-6 + 1e-12 * scale / step;
    bool nice = fabs(mant - 1) < tol || fabs(mant - 2) < tol || fabs(mant - 2.5) < tol || fabs(mant - 5) < tol ||
                fabs(mant - 10) < tol;
    CHECK_MSG(nice, "[%g, %g]: step %g", lo, hi, step);
    for (int i = 0; i < n; i++) {
        CHECK_MSG(t[i] >= lo - eps && t[i] <= hi + eps, "[%g, %g]: tick %g outside", lo, hi, t[i]);
        if (i) CHECK_MSG(fabs(t[i] - t[i - 1] - step) < tol * step, "[%g, %g]: uneven at %d", lo, hi, i);
    }
    /* no room for another tick on either side */
    CHECK_MSG(t[0] - step < lo + eps && t[n - 1] + step > hi - eps, "[%g, %g]: a tick is missing", lo, hi);
}

static void test_ticks(void) {
    double t[16];
    int n = rpt_nice_ticks(0, 1, 6, t);
    CHECK(n == 6);
    for (int i = 0; i < n && n == 6; i++) CHECK_NEAR(t[i], 0.2 * i, 1e-12, 0);
    CHECK(rpt_nice_ticks(1, 1, 6, t) == 0); /* empty range: the caller widens first */
    CHECK(rpt_nice_ticks(0, 1, 1, t) == 0);
    check_ticks(0.89, 0.93, 6);
    check_ticks(-0.048, 0.067, 6);
    check_ticks(1e-7, 3e-7, 6);
    check_ticks(-5e4, 1e6, 6);
    qlm_rng r;
    qlm_rng_seed(&r, 7, 1);
    for (int i = 0; i < 500; i++) {
        double a = (qlm_rng_uniform(&r) - 0.5) * pow(10.0, (int)qlm_rng_below(&r, 12) - 6);
        double w = qlm_rng_uniform(&r) * pow(10.0, (int)qlm_rng_below(&r, 12) - 6) + 1e-9;
        check_ticks(a, a + w, 2 + (int)qlm_rng_below(&r, 10));
    }
}

static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p++) n++;
    return n;
}

static void test_svg(void) {
    rpt_buf b = {0};
    rpt_svg_open(&b, "fig-x y", 300, 200, "a <title>");
    rpt_plot p;
    rpt_plot_init(&p, &b, 0, 0, 300, 200, 1, 1000, 0, 1, true);
    rpt_plot_axes(&p, "t & t", "x", "y");
    /* a log axis cannot show x <= 0; NaN and Inf are never drawn */
    double x[] = {-1, 0, 10, NAN, 100, INFINITY}, y[] = {0.5, 0.5, 0.5, 0.5, NAN, 0.5};
    const char *tip[] = {"a", "b", "c<", "d", "e", "f"};
    rpt_plot_points(&p, x, y, 6, "#123456", tip);
    rpt_plot_legend(&p, "l<1>", "#123456", 1, true);
    rpt_svg_close(&b);
    CHECK(!b.oom);
    CHECK_MSG(count(b.s, "<circle") == 1, "%d circles", count(b.s, "<circle"));
    CHECK(strstr(b.s, "<title>c&lt;</title>") != NULL);
    CHECK(strstr(b.s, "id=\"fig-x_y\"") != NULL);
    CHECK(strstr(b.s, "t &amp; t") && strstr(b.s, "l&lt;1&gt;") && strstr(b.s, "a &lt;title&gt;"));
    CHECK(!strstr(b.s, "nan") && !strstr(b.s, "inf"));
    /* decades 1 .. 1000 labelled */
    CHECK(strstr(b.s, ">1</text>") && strstr(b.s, ">1k</text>"));
    CHECK(count(b.s, "<svg") == 1 && count(b.s, "</svg>") == 1);
    rpt_buf_free(&b);
}

/* ---------------------------------------------------- qlm_report_render */

static const char *const schema =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE cells(id INTEGER PRIMARY KEY, hash TEXT UNIQUE NOT NULL, model TEXT NOT NULL, method TEXT NOT NULL,"
    " mode TEXT NOT NULL, device TEXT NOT NULL, seed INTEGER NOT NULL, profile TEXT NOT NULL, parent_hash TEXT,"
    " status TEXT NOT NULL, error TEXT, model_path TEXT, params INTEGER, model_bytes INTEGER, train_seconds REAL,"
    " eval_seconds REAL);"
    "CREATE TABLE metrics(cell_id INTEGER NOT NULL, dataset TEXT NOT NULL, score TEXT NOT NULL, name TEXT NOT NULL,"
    " value REAL NOT NULL, lo REAL, hi REAL, PRIMARY KEY(cell_id, dataset, score, name));"
    "CREATE TABLE comparisons(cell_id INTEGER NOT NULL, ref_cell_id INTEGER NOT NULL, dataset TEXT NOT NULL,"
    " name TEXT NOT NULL, value REAL NOT NULL, lo REAL, hi REAL, PRIMARY KEY(cell_id, ref_cell_id, dataset, name));"
    "CREATE TABLE curves(cell_id INTEGER NOT NULL, dataset TEXT NOT NULL, kind TEXT NOT NULL, idx INTEGER NOT NULL,"
    " x REAL NOT NULL, y REAL NOT NULL, w REAL, PRIMARY KEY(cell_id, dataset, kind, idx));"
    "CREATE TABLE timings(cell_id INTEGER NOT NULL, scenario TEXT NOT NULL, threads INTEGER NOT NULL,"
    " key TEXT NOT NULL, value REAL NOT NULL, PRIMARY KEY(cell_id, scenario, threads, key));";

static bool make_db(const char *path, const char *version, const char *extra_sql) {
    unlink(path);
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK) return false;
    char sql[512];
    snprintf(sql, sizeof sql, "INSERT INTO meta VALUES('schema_version','%s'),('study_name','api');", version);
    bool ok = sqlite3_exec(db, schema, NULL, NULL, NULL) == SQLITE_OK &&
              sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK &&
              sqlite3_exec(db, extra_sql, NULL, NULL, NULL) == SQLITE_OK;
    sqlite3_close(db);
    return ok;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (s) s[n] = '\0';
    fclose(f);
    return s;
}

static void test_render_api(void) {
    char dir[] = "/tmp/qualm-report-api.XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(!"mkdtemp");
        return;
    }
    char db[256], html[256], bad[256];
    snprintf(db, sizeof db, "%s/r.db", dir);
    snprintf(html, sizeof html, "%s/r.html", dir);
    snprintf(bad, sizeof bad, "%s/missing/r.html", dir);
    qlm_err err = {0};
    CHECK(qlm_report_render(NULL, html, &err) == QLM_ERR_ARG);
    CHECK(qlm_report_render(db, html, &err) == QLM_ERR_IO && strstr(err.msg, db));

    const char *cells = "INSERT INTO cells(id,hash,model,method,mode,device,seed,profile,parent_hash,status) VALUES"
                        "(1,'a','resnet8','softmax','fp32','cpu',0,'quick',NULL,'done'),"
                        "(2,'b','resnet8','softmax','ptq-int8','cpu',0,'quick','a','done');"
                        "INSERT INTO metrics VALUES(1,'test','','accuracy',0.9,NULL,NULL),"
                        "(2,'test','','accuracy',0.875,NULL,NULL);";
    CHECK(make_db(db, "1", cells));
    CHECK_MSG(qlm_report_render(db, html, &err) == QLM_OK, "%s", err.msg);
    char *s = slurp(html);
    CHECK(s && strstr(s, "0.875") && strstr(s, "&#916; -0.025"));
    free(s);
    CHECK(qlm_report_render(db, bad, &err) == QLM_ERR_IO && strstr(err.msg, bad));
    CHECK(qlm_report_render(db, db, &err) == QLM_ERR_ARG && strstr(err.msg, "overwrite the database"));
    CHECK(qlm_report_render(db, html, &err) == QLM_OK); /* the database is intact */

    CHECK(make_db(db, "2", ""));
    CHECK(qlm_report_render(db, html, &err) == QLM_ERR_VERSION && strstr(err.msg, "'2'"));
    CHECK(make_db(db, "1", "DROP TABLE curves;"));
    CHECK(qlm_report_render(db, html, &err) == QLM_ERR_FORMAT && strstr(err.msg, "curves"));
    unlink(db);
    unlink(html);
    rmdir(dir);
}

int main(void) {
    RUN(test_escape);
    RUN(test_numbers);
    RUN(test_ticks);
    RUN(test_svg);
    RUN(test_render_api);
    return qlm_test_finish();
}
