#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void print_default(const cli_opt *o, FILE *out) {
    switch (o->type) {
    case OPT_FLAG: break;
    case OPT_STR: {
        const char *v = *(const char **)o->dst;
        if (v) fprintf(out, " (default: %s)", v);
        break;
    }
    case OPT_INT: fprintf(out, " (default: %d)", *(int *)o->dst); break;
    case OPT_U64: fprintf(out, " (default: %llu)", (unsigned long long)*(uint64_t *)o->dst); break;
    case OPT_FLOAT: fprintf(out, " (default: %g)", *(float *)o->dst); break;
    }
}

void cli_usage(const cli_command *cmd, FILE *out) {
    fprintf(out, "usage: qualm %s %s\n\n%s\n\noptions:\n", cmd->name, cmd->synopsis, cmd->about);
    for (int i = 0; i < cmd->n_opts; i++) {
        const cli_opt *o = &cmd->opts[i];
        char lhs[64];
        if (o->type == OPT_FLAG) snprintf(lhs, sizeof lhs, "--%s", o->name);
        else snprintf(lhs, sizeof lhs, "--%s %s", o->name, o->choices ? o->choices : o->metavar);
        fprintf(out, "  %-28s %s", lhs, o->help);
        print_default(o, out);
        fputc('\n', out);
    }
    fprintf(out, "  %-28s %s\n", "--help", "show this help and exit");
}

static int bad_value(const cli_command *cmd, const cli_opt *o, const char *v, const char *why) {
    fprintf(stderr, "qualm %s: --%s: '%s' %s", cmd->name, o->name, v, why);
    if (o->choices) fprintf(stderr, " (accepted: %s)", o->choices);
    else if (o->type != OPT_STR) fprintf(stderr, " (accepted: %g to %g)", o->min, o->max);
    fputc('\n', stderr);
    return EXIT_USAGE;
}

static bool in_choices(const char *choices, const char *v) {
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0) return true;
        if (!bar) break;
        p = bar + 1;
    }
    return false;
}

static int set_value(const cli_command *cmd, const cli_opt *o, const char *v) {
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case OPT_FLAG: return -1;
    case OPT_STR:
        if (!*v) return bad_value(cmd, o, v, "is empty");
        if (o->choices && !in_choices(o->choices, v)) return bad_value(cmd, o, v, "is not accepted");
        *(const char **)o->dst = v;
        return -1;
    case OPT_INT:
    case OPT_U64: {
        if (*v == '-' && o->type == OPT_U64) return bad_value(cmd, o, v, "is negative");
        long long x = strtoll(v, &end, 10);
        if (errno || !*v || *end) return bad_value(cmd, o, v, "is not an integer");
        if (x < o->min || x > o->max) return bad_value(cmd, o, v, "is out of range");
        if (o->type == OPT_INT) *(int *)o->dst = (int)x;
        else *(uint64_t *)o->dst = (uint64_t)x;
        return -1;
    }
    case OPT_FLOAT: {
        double x = strtod(v, &end);
        if (errno || !*v || *end || !isfinite(x)) return bad_value(cmd, o, v, "is not a number");
        if (x < o->min || x > o->max) return bad_value(cmd, o, v, "is out of range");
        *(float *)o->dst = (float)x;
        return -1;
    }
    }
    return -1;
}

static const cli_opt *find_opt(const cli_command *cmd, const char *name, size_t len) {
    for (int i = 0; i < cmd->n_opts; i++)
        if (strlen(cmd->opts[i].name) == len && strncmp(cmd->opts[i].name, name, len) == 0)
            return &cmd->opts[i];
    return NULL;
}

int cli_parse(const cli_command *cmd, int argc, char **argv, const char **positional) {
    if (positional) *positional = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            cli_usage(cmd, stdout);
            return EXIT_OK;
        }
        if (strncmp(a, "--", 2) != 0) {
            if (!cmd->positional || !positional || *positional) {
                fprintf(stderr, "qualm %s: unexpected argument '%s' (see qualm %s --help)\n",
                        cmd->name, a, cmd->name);
                return EXIT_USAGE;
            }
            *positional = a;
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const cli_opt *o = find_opt(cmd, name, len);
        if (!o) {
            fprintf(stderr, "qualm %s: unknown option '--%.*s' (see qualm %s --help)\n", cmd->name,
                    (int)len, name, cmd->name);
            return EXIT_USAGE;
        }
        if (o->type == OPT_FLAG) {
            if (eq) {
                fprintf(stderr, "qualm %s: --%s takes no value\n", cmd->name, o->name);
                return EXIT_USAGE;
            }
            *(bool *)o->dst = true;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) {
            fprintf(stderr, "qualm %s: --%s needs a value %s\n", cmd->name, o->name,
                    o->choices ? o->choices : o->metavar);
            return EXIT_USAGE;
        }
        int rc = set_value(cmd, o, v);
        if (rc >= 0) return rc;
    }
    return -1;
}

int cli_fail(const char *cmd, const qlm_err *err) {
    fprintf(stderr, "qualm %s: %s\n", cmd,
            err->msg[0] ? err->msg : qlm_status_str(err->status));
    return EXIT_FAIL;
}

void json_str(FILE *out, const char *s) {
    fputc('"', out);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(out, "\\%c", ch);
        else if (ch < 0x20) fprintf(out, "\\u%04x", ch);
        else fputc(ch, out);
    }
    fputc('"', out);
}

bool cli_stderr_tty(void) { return isatty(STDERR_FILENO) != 0; }
