/* The report's text buffer: append, printf, HTML escaping, numbers. */
#include "report_internal.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rpt_buf_free(rpt_buf *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}

static bool reserve(rpt_buf *b, size_t extra) {
    if (b->oom) return false;
    if (b->len + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra + 1) cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) {
        b->oom = true;
        return false;
    }
    b->s = s;
    b->cap = cap;
    return true;
}

static void put_n(rpt_buf *b, const char *s, size_t n) {
    if (!reserve(b, n)) return;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void rpt_puts(rpt_buf *b, const char *s) { put_n(b, s, strlen(s)); }

void rpt_printf(rpt_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void rpt_esc(rpt_buf *b, const char *s) {
    if (!s) return;
    for (const char *p = s; *p; p++) {
        switch (*p) {
        case '&': rpt_puts(b, "&amp;"); break;
        case '<': rpt_puts(b, "&lt;"); break;
        case '>': rpt_puts(b, "&gt;"); break;
        case '"': rpt_puts(b, "&quot;"); break;
        case '\'': rpt_puts(b, "&#39;"); break;
        default:
            /* Control characters other than tab/newline are not valid in
             * XML (the SVGs): drop them rather than break the document. */
            if ((unsigned char)*p < 0x20 && *p != '\n' && *p != '\t') break;
            put_n(b, p, 1);
        }
    }
}

void rpt_num(rpt_buf *b, double v, int digits) {
    if (!isfinite(v)) {
        rpt_puts(b, "&#8212;");
        return;
    }
    /* Avoid "-0.000": a tiny negative rounds to plain zero. */
    double scale = pow(10.0, digits);
    if (fabs(v) * scale < 0.5) v = 0.0;
    rpt_printf(b, "%.*f", digits, v);
}

void rpt_id(rpt_buf *b, const char *s) {
    for (const char *p = s ? s : ""; *p; p++) {
        char c = (isalnum((unsigned char)*p) || *p == '-' || *p == '_') ? *p : '_';
        put_n(b, &c, 1);
    }
}
