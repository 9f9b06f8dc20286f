/* Option parsing and output helpers shared by the qualm subcommands. */
#ifndef QLM_TOOLS_CLI_H
#define QLM_TOOLS_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "qualm/core.h"

/* Exit codes of the tool. */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

typedef enum { OPT_FLAG, OPT_STR, OPT_INT, OPT_U64, OPT_FLOAT } cli_opt_type;

typedef struct {
    const char *name;    /* long name without "--" */
    cli_opt_type type;
    void *dst;           /* bool*, const char**, int*, uint64_t*, float* */
    const char *metavar; /* "N", "FILE", ... */
    const char *help;    /* one line; the default is printed from *dst */
    const char *choices; /* OPT_STR: "a|b|c" accepted values, or NULL */
    double min, max;     /* OPT_INT/U64/FLOAT range (inclusive) */
} cli_opt;

typedef struct {
    const char *name;    /* subcommand */
    const char *synopsis;
    const char *about;
    const cli_opt *opts;
    int n_opts;
    const char *positional; /* metavar of the positional argument or NULL */
} cli_command;

/**
 * Parse argv[1..argc) into the option destinations. At most one positional
 * argument is accepted (stored in *positional). Returns -1 when parsing
 * succeeded, or the exit code to return (help printed: EXIT_OK; error
 * printed to stderr: EXIT_USAGE).
 */
int cli_parse(const cli_command *cmd, int argc, char **argv, const char **positional);

void cli_usage(const cli_command *cmd, FILE *out);

/** Print "qualm <cmd>: <message>" to stderr for a failed status; returns EXIT_FAIL. */
int cli_fail(const char *cmd, const qlm_err *err);

/** Write s as a JSON string literal (quoted, escaped). */
void json_str(FILE *out, const char *s);

/** True when stderr is a terminal (progress bars). */
bool cli_stderr_tty(void);

#endif
