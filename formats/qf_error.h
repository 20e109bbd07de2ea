/* qf_error.h - error codes and the error record every library function fills.
 *
 * Libraries never print and never exit: they return 0 (QF_OK) or one of the
 * negative codes below, and write a one-line lowercase message into a qf_err
 * that the program prints as "tool: error: <msg>".  The message names the
 * file and the problem ("model.safetensors: tensor 'x' data range [a,b)
 * exceeds file size N").
 */
#ifndef QF_ERROR_H
#define QF_ERROR_H

#include <stddef.h>

enum {
    QF_OK = 0,
    QF_EIO = -1,           /* read/write/open/mmap failed, disk full        */
    QF_EFORMAT = -2,       /* malformed or lying file                       */
    QF_ENOMEM = -3,        /* allocation failed                             */
    QF_EINVAL = -4,        /* bad argument from the caller / bad option     */
    QF_EUNSUPPORTED = -5,  /* well-formed but not something we handle       */
    QF_ENOTFOUND = -6,     /* missing tensor, key, file                     */
    QF_ERANGE = -7,        /* size overflow, value out of range, NaN weight */
    QF_EMISMATCH = -8,     /* checksum / shape / vocab disagreement         */
};

typedef struct qf_err {
    int code;
    char msg[1024];
} qf_err;

/* Record an error (printf-style) and return `code`, so callers can write
 * `return qf_set_err(err, QF_EFORMAT, "%s: bad magic", path);`.
 * `err` may be NULL. If an error is already recorded it is kept (the first
 * error is the root cause) unless code differs and msg is empty. */
int qf_set_err(qf_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix the recorded message with "prefix: " (e.g. a file name). */
void qf_err_prefix(qf_err *err, const char *prefix);

void qf_err_clear(qf_err *err);

/* Overflow-checked size arithmetic: return 0 on success, -1 on overflow. */
static inline int qf_mul_u64(unsigned long long a, unsigned long long b, unsigned long long *out) {
    return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}
static inline int qf_add_u64(unsigned long long a, unsigned long long b, unsigned long long *out) {
    return __builtin_add_overflow(a, b, out) ? -1 : 0;
}

#endif
