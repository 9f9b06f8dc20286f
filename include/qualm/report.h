/*
 * qualm/report.h — the study report: one self-contained HTML file (inline
 * CSS and SVG, no scripts, no network) rendered from a study's results
 * database alone (schema: docs/study-db.md; the report: docs/report.md).
 */
#ifndef QUALM_REPORT_H
#define QUALM_REPORT_H

#include "qualm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Render the report of the study database db_path into html_path.
 *
 * @param[in] db_path   SQLite results database (schema version 1), opened
 *                      read-only; it is never modified.
 * @param[in] html_path output file, written atomically (temp + rename): a
 *                      reader never sees half a report.
 * @param[out] err      one-line message naming the file on failure.
 * @return QLM_OK; QLM_ERR_IO (cannot open/read/write), QLM_ERR_FORMAT (not a
 *         qualm study database), QLM_ERR_VERSION (other schema version),
 *         QLM_ERR_NOMEM. Missing cells, methods or modes are not errors:
 *         the report says what it could not show.
 */
qlm_status qlm_report_render(const char *db_path, const char *html_path, qlm_err *err);

#ifdef __cplusplus
}
#endif

#endif
