/*
 * The study's pure parts: SHA-256 against the FIPS 180-2 example vectors,
 * config validation (every error names the file and the key), grid
 * expansion, and which settings change which content hash (the cache key
 * must change exactly when the model file would).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>
#include <unistd.h>

#include "harness.h"
#include "qualm/study.h"

static void test_sha256(void) {
    char h[QLM_STUDY_HASH_LEN];
    qlm_sha256_hex("", 0, h);
    CHECK(strcmp(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
    qlm_sha256_hex("abc", 3, h);
    CHECK(strcmp(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"; /* 56 bytes: 2 padding blocks */
    qlm_sha256_hex(two, strlen(two), h);
    CHECK(strcmp(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0);
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    qlm_sha256_hex(a, 1000000, h);
    CHECK(strcmp(h, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
    free(a);
}

static const char *BASE =
    "{\"name\": \"t\", \"models\": [\"resnet8\"], \"methods\": [\"softmax\", \"edl\"],"
    " \"modes\": [\"fp32\", \"fp16\", \"ptq-int8\", \"qat-int8\"], \"devices\": [\"cpu\", \"edgetpu\"],"
    " \"seeds\": [0, 1], \"ood\": [\"mnist\"], \"options\": {%s}}";

static qlm_study *parse_opts(const char *opts) {
    char text[2048];
    snprintf(text, sizeof text, BASE, opts);
    qlm_study *s = NULL;
    qlm_err err;
    qlm_err_clear(&err);
    CHECK_MSG(qlm_study_parse(text, "t.json", &s, &err) == QLM_OK, "%s", err.msg);
    return s;
}

static void test_expand(void) {
    qlm_study *s = parse_opts("\"calib\": 100");
    if (!s) return;
    qlm_study_cell *c = NULL;
    int n = 0;
    qlm_err err;
    CHECK(qlm_study_expand(s, &c, &n, &err) == QLM_OK);
    /* per family: fp32, fp16 cpu, ptq cpu, ptq edgetpu, control, qat cpu, qat edgetpu = 7; 2 methods x 2 seeds */
    CHECK_MSG(n == 28, "n = %d", n);
    for (int i = 0; i < n; i++) {
        CHECK(c[i].id == i + 1);
        if (c[i].mode == QLM_STUDY_FP32) CHECK(c[i].parent == -1 && c[i].family == i);
        else CHECK(c[i].parent >= 0 && c[c[i].parent].mode == QLM_STUDY_FP32 && c[i].family == c[i].parent);
        if (c[i].mode == QLM_STUDY_QAT_INT8) CHECK(c[i].control >= 0 && c[c[i].control].mode == QLM_STUDY_FLOAT_CONTROL);
        else CHECK(c[i].control == -1);
        if (c[i].mode == QLM_STUDY_FP16) CHECK(strcmp(c[i].device, "cpu") == 0); /* edgetpu runs no fp16 */
        for (int j = 0; j < i; j++) CHECK(strcmp(c[i].hash, c[j].hash) != 0);
    }
    /* ptq on cpu and on edgetpu: one model file, two cells */
    CHECK(c[2].mode == QLM_STUDY_PTQ_INT8 && c[3].mode == QLM_STUDY_PTQ_INT8);
    CHECK(strcmp(c[2].model_hash, c[3].model_hash) == 0 && strcmp(c[2].hash, c[3].hash) != 0);
    /* seeds make different models */
    CHECK(strcmp(c[0].model_hash, c[7].model_hash) != 0 && c[7].seed == 1);
    free(c);
    qlm_study_free(s);
}

/* Which option changes which hash. */
static void test_hash_sensitivity(void) {
    qlm_study *a = parse_opts("\"calib\": 100"), *b = parse_opts("\"calib\": 200"),
              *e = parse_opts("\"calib\": 100, \"epochs\": 2"), *l = parse_opts("\"calib\": 100, \"eval_limit\": 50"),
              *a2 = parse_opts("\"calib\": 100");
    if (!a || !b || !e || !l || !a2) return;
    qlm_study_cell *ca, *cb, *ce, *cl, *ca2;
    int n;
    qlm_err err;
    CHECK(qlm_study_expand(a, &ca, &n, &err) == QLM_OK);
    CHECK(qlm_study_expand(b, &cb, &n, &err) == QLM_OK);
    CHECK(qlm_study_expand(e, &ce, &n, &err) == QLM_OK);
    CHECK(qlm_study_expand(l, &cl, &n, &err) == QLM_OK);
    CHECK(qlm_study_expand(a2, &ca2, &n, &err) == QLM_OK);
    for (int i = 0; i < n; i++) {
        CHECK(strcmp(ca[i].hash, ca2[i].hash) == 0); /* deterministic */
        bool ptq = ca[i].mode == QLM_STUDY_PTQ_INT8;
        /* calib: only PTQ models change */
        CHECK((strcmp(ca[i].model_hash, cb[i].model_hash) != 0) == ptq);
        /* float epochs: the fp32 model and, through the parent hash, every child */
        CHECK(strcmp(ca[i].model_hash, ce[i].model_hash) != 0);
        /* evaluation settings: no model changes, every cell does */
        CHECK(strcmp(ca[i].model_hash, cl[i].model_hash) == 0);
        CHECK(strcmp(ca[i].hash, cl[i].hash) != 0);
    }
    free(ca), free(cb), free(ce), free(cl), free(ca2);
    qlm_study_free(a), qlm_study_free(b), qlm_study_free(e), qlm_study_free(l), qlm_study_free(a2);
}

/* Each bad config: an error that names the file and the key. */
static void test_errors(void) {
    static const struct {
        const char *text, *key;
    } bad[] = {
        {"{\"models\": [\"resnet8\"], \"methods\": [\"softmax\"], \"modes\": [\"fp32\"]}", "'name'"},
        {"{\"name\": \"x\", \"methods\": [\"softmax\"], \"modes\": [\"fp32\"]}", "'models'"},
        {"{\"name\": \"x\", \"models\": [\"resnet9\"], \"methods\": [\"softmax\"], \"modes\": [\"fp32\"]}", "'models'"},
        {"{\"name\": \"x\", \"models\": [], \"methods\": [\"softmax\"], \"modes\": [\"fp32\"]}", "'models'"},
        {"{\"name\": \"x\", \"models\": [\"resnet8\"], \"methods\": [\"bayes\"], \"modes\": [\"fp32\"]}", "'methods'"},
        {"{\"name\": \"x\", \"models\": [\"resnet8\"], \"methods\": [\"softmax\"], \"modes\": [\"int4\"]}", "'modes'"},
        {"{\"name\": \"x\", \"models\": [\"resnet8\"], \"methods\": [\"softmax\", \"softmax\"], \"modes\": [\"fp32\"]}", "'methods'"},
        {"{\"name\": \"x\", \"models\": [\"resnet8\"], \"methods\": [\"softmax\"], \"modes\": [\"fp32\"], \"devices\": [\"tpu\"]}", "'devices'"},
        {"{\"name\": \"x\", \"models\": [\"resnet8\"], \"methods\": [\"softmax\"], \"modes\": [\"fp32\"], \"seeds\": [-1]}", "'seeds'"},
        {"{\"name\": \"x\", \"models\": [\"resnet8\"], \"methods\": [\"softmax\"], \"modes\": [\"fp32\"], \"seeds\": [1.5]}", "'seeds'"},
        {"{\"name\": \"x\", \"models\": [\"resnet8\"], \"methods\": [\"softmax\"], \"modes\": [\"fp32\"], \"ood\": [\"cifar\"]}", "'ood'"},
        {"{\"name\": \"x\", \"models\": [\"resnet8\"], \"methods\": [\"softmax\"], \"modes\": [\"fp32\"], \"shift\": [\"blur:3\"]}", "'shift'"},
        {"{\"name\": \"x\", \"models\": [\"resnet8\"], \"methods\": [\"softmax\"], \"modes\": [\"fp32\"], \"shift\": [\"contrast:6\"]}", "'shift'"},
        {"{\"name\": \"x\", \"models\": [\"resnet8\"], \"methods\": [\"softmax\"], \"modes\": [\"fp32\"], \"profile\": \"long\"}", "'profile'"},
        {"{\"name\": \"x\", \"models\": [\"resnet8\"], \"methods\": [\"softmax\"], \"modes\": [\"fp32\"], \"options\": {\"calib\": 0}}", "'options.calib'"},
        {"{\"name\": \"x\", \"models\": [\"resnet8\"], \"methods\": [\"softmax\"], \"modes\": [\"fp32\"], \"options\": {\"calibration\": 5}}", "'options.calibration'"},
        {"{\"name\": \"x\", \"models\": [\"resnet8\"], \"methods\": [\"softmax\"], \"modes\": [\"fp32\"], \"options\": {\"observer\": \"max\"}}", "'options.observer'"},
        {"{\"name\": \"x\", \"models\": [\"resnet8\"], \"methods\": [\"softmax\"], \"modes\": [\"fp32\"], \"options\": {\"max_train\": 10}}", "'options.max_train'"},
        {"{\"name\": \"x\", \"models\": [\"resnet8\"], \"methods\": [\"softmax\"], \"modes\": [\"fp32\"], \"option\": {}}", "'option'"},
        {"{\"name\": \"a b\", \"models\": [\"resnet8\"], \"methods\": [\"softmax\"], \"modes\": [\"fp32\"]}", "'name'"},
        {"{\"name\": \"x\", \"models\": \"resnet8\", \"methods\": [\"softmax\"], \"modes\": [\"fp32\"]}", "'models'"},
        {"{\"name\": \"x\",\n \"models\": [\"resnet8\"],,\n}", "line 2"},
        {"[1, 2]", "JSON object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        qlm_study *s = NULL;
        qlm_err err;
        qlm_err_clear(&err);
        qlm_status st = qlm_study_parse(bad[i].text, "cfg/bad.json", &s, &err);
        CHECK_MSG(st != QLM_OK && s == NULL, "case %zu accepted", i);
        CHECK_MSG(strncmp(err.msg, "cfg/bad.json: ", 14) == 0 && strstr(err.msg, bad[i].key),
                  "case %zu: message '%s' should name the file and %s", i, err.msg, bad[i].key);
        CHECK_MSG(!strchr(err.msg, '\n'), "case %zu: message is not one line", i);
    }
    /* a mode no listed device runs */
    qlm_study *s = NULL;
    qlm_err err;
    CHECK(qlm_study_parse("{\"name\": \"x\", \"models\": [\"resnet8\"], \"methods\": [\"softmax\"], "
                          "\"modes\": [\"fp16\"], \"devices\": [\"edgetpu\"]}", "d.json", &s, &err) == QLM_OK);
    qlm_study_cell *c = NULL;
    int n = 0;
    if (s) CHECK(qlm_study_expand(s, &c, &n, &err) != QLM_OK && strstr(err.msg, "d.json: key 'modes'"));
    free(c);
    qlm_study_free(s);
}

/* The shipped studies parse; "all" expands to 9 corruptions x 5 severities. */
static void test_shipped(void) {
    const char *src = getenv("QUALM_SOURCE_DIR");
    if (!src) src = ".";
    const char *names[] = {"tiny", "quick", "full"};
    for (int i = 0; i < 3; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/studies/%s.json", src, names[i]);
        qlm_study *s = NULL;
        qlm_err err;
        qlm_err_clear(&err);
        CHECK_MSG(qlm_study_load(path, &s, &err) == QLM_OK, "%s", err.msg);
        if (!s) continue;
        if (i == 2) CHECK(s->n_shift == 45 && strcmp(s->shift[44], "elastic:5") == 0);
        if (i == 1) CHECK(s->n_models == 2 && s->n_methods == 5 && s->n_modes == 4);
        qlm_study_free(s);
    }
}

static int64_t count(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    sqlite3_stmt *q = NULL;
    int64_t n = -1;
    if (sqlite3_open(path, &db) == SQLITE_OK && sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return n;
}

/* Commit: a retried cell replaces its failed row and leaves no old rows;
 * a result of another cell and a database of another config are refused. */
static void test_db(void) {
    qlm_study *s = parse_opts("\"calib\": 100");
    if (!s) return;
    qlm_study_cell *c = NULL;
    int n = 0;
    qlm_err err;
    qlm_err_clear(&err);
    CHECK(qlm_study_expand(s, &c, &n, &err) == QLM_OK);
    char path[] = "/tmp/qualm-test-study-XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    qlm_study_db *db = NULL;
    CHECK_MSG(qlm_study_db_open(path, s, &db, &err) == QLM_OK, "%s", err.msg);
    if (!db) return;
    char json[2048];
    snprintf(json, sizeof json, "{\"hash\":\"%s\",\"status\":\"failed\",\"error\":\"boom\"}", c[2].hash);
    CHECK(qlm_study_db_commit(db, c, n, 2, json, &err) == QLM_OK);
    bool done = true;
    CHECK(qlm_study_db_is_done(db, c[2].hash, &done, &err) == QLM_OK && !done);
    snprintf(json, sizeof json,
             "{\"hash\":\"%s\",\"status\":\"done\",\"model_path\":\"models/x.qlm\",\"params\":77754,"
             "\"metrics\":[{\"dataset\":\"test\",\"score\":\"\",\"name\":\"accuracy\",\"value\":0.5,\"lo\":null,\"hi\":null}],"
             "\"comparisons\":[{\"ref_id\":1,\"dataset\":\"test\",\"name\":\"d_ece\",\"value\":-0.01,\"lo\":-0.02,\"hi\":0.001}],"
             "\"curves\":[{\"dataset\":\"test\",\"kind\":\"hist\",\"idx\":0,\"x\":0.1,\"y\":2,\"w\":null}]}", c[2].hash);
    CHECK(qlm_study_db_commit(db, c, n, 2, json, &err) == QLM_OK);
    CHECK(qlm_study_db_is_done(db, c[2].hash, &done, &err) == QLM_OK && done);
    /* committing the same result again (a resumed run) changes nothing */
    CHECK(qlm_study_db_commit(db, c, n, 2, json, &err) == QLM_OK);
    /* another cell's result is refused */
    CHECK(qlm_study_db_commit(db, c, n, 3, json, &err) != QLM_OK && strstr(err.msg, "another cell"));
    CHECK(qlm_study_db_commit(db, c, n, 3, "{not json", &err) != QLM_OK);
    qlm_study_db_close(db);
    CHECK(count(path, "SELECT count(*) FROM cells") == 1);
    CHECK(count(path, "SELECT count(*) FROM cells WHERE id = 3 AND status = 'done' AND error IS NULL AND params = 77754") == 1);
    CHECK(count(path, "SELECT count(*) FROM metrics WHERE cell_id = 3") == 1);
    CHECK(count(path, "SELECT count(*) FROM comparisons WHERE cell_id = 3 AND lo < value AND hi > value") == 1);
    CHECK(count(path, "SELECT count(*) FROM curves WHERE cell_id = 3 AND w IS NULL") == 1);
    CHECK(count(path, "SELECT count(*) FROM meta WHERE key = 'schema_version' AND value = '1'") == 1);
    CHECK(count(path, "SELECT count(*) FROM meta") == 9);
    /* the same file under another config: refused */
    qlm_study *other = parse_opts("\"calib\": 101");
    qlm_study_db *db2 = NULL;
    if (other) CHECK(qlm_study_db_open(path, other, &db2, &err) != QLM_OK && strstr(err.msg, "another study config"));
    qlm_study_db_close(db2);
    qlm_study_free(other);
    unlink(path);
    free(c);
    qlm_study_free(s);
}

int main(void) {
    RUN(test_sha256);
    RUN(test_expand);
    RUN(test_hash_sensitivity);
    RUN(test_errors);
    RUN(test_shipped);
    RUN(test_db);
    return qlm_test_finish();
}
