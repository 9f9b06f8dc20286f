/* Status codes and the caller-owned error message sink. */
#include "qualm/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const status_names[QLM_STATUS_COUNT] = {
    [QLM_OK] = "ok",
    [QLM_ERR_ARG] = "bad argument",
    [QLM_ERR_NOMEM] = "out of memory",
    [QLM_ERR_IO] = "input/output error",
    [QLM_ERR_FORMAT] = "malformed file",
    [QLM_ERR_VERSION] = "unsupported file version",
    [QLM_ERR_CHECKSUM] = "checksum mismatch",
    [QLM_ERR_SHAPE] = "shape mismatch",
    [QLM_ERR_UNSUPPORTED] = "unsupported",
    [QLM_ERR_NUMERIC] = "non-finite value",
    [QLM_ERR_INTERNAL] = "internal error",
};
_Static_assert(QLM_STATUS_COUNT == 11, "add the new status to status_names");

const char *qlm_status_str(qlm_status s) {
    if ((unsigned)s >= QLM_STATUS_COUNT) return "unknown status";
    return status_names[s];
}

qlm_status qlm_err_set(qlm_err *err, qlm_status s, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = s;
    }
    return s;
}

void qlm_err_clear(qlm_err *err) {
    if (!err) return;
    err->status = QLM_OK;
    err->msg[0] = '\0';
}
