/*
 * qualm report: render a study's results database into one self-contained
 * HTML file (docs/report.md). The database is opened read-only.
 */
#include <stdio.h>

#include "cli.h"
#include "commands.h"
#include "qualm/report.h"

int cmd_report(int argc, char **argv) {
    const char *db = NULL, *out = NULL;
    const cli_opt opts[] = {
        {"db", OPT_STR, &db, "FILE", "study results database (SQLite, written by qualm study)", NULL, 0, 0},
        {"out", OPT_STR, &out, "FILE.html", "report to write (atomically)", NULL, 0, 0},
    };
    const cli_command cmd = {"report", "--db FILE --out FILE.html",
                             "Render the study report (tables, SVG figures, summary of the research "
                             "questions) from the results database alone; no network, no scripts.",
                             opts, (int)(sizeof opts / sizeof *opts), NULL};
    int rc = cli_parse(&cmd, argc, argv, NULL);
    if (rc >= 0) return rc;
    if (!db || !out) {
        fprintf(stderr, "qualm report: --db and --out are required (see qualm report --help)\n");
        return EXIT_USAGE;
    }
    qlm_err err = {0};
    if (qlm_report_render(db, out, &err) != QLM_OK) return cli_fail("report", &err);
    printf("report: %s\n", out);
    return EXIT_OK;
}
