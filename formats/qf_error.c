#include "qf_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int qf_set_err(qf_err *err, int code, const char *fmt, ...) {
    if (!err) return code;
    if (err->code != 0 && err->msg[0]) return code; /* keep the root cause */
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

void qf_err_prefix(qf_err *err, const char *prefix) {
    if (!err || !prefix) return;
    /* built by hand: snprintf("%s: %s") into a same-sized buffer trips
     * -Wformat-truncation under -Werror */
    char tmp[sizeof err->msg];
    size_t pl = strnlen(prefix, sizeof tmp - 3);
    memcpy(tmp, prefix, pl);
    memcpy(tmp + pl, ": ", 2);
    size_t ml = strnlen(err->msg, sizeof tmp - pl - 3);
    memcpy(tmp + pl + 2, err->msg, ml);
    tmp[pl + 2 + ml] = 0;
    memcpy(err->msg, tmp, sizeof tmp);
}

void qf_err_clear(qf_err *err) {
    if (!err) return;
    err->code = 0;
    err->msg[0] = 0;
}
