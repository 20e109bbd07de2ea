#include "qf_cli.h"
#include "hf_cache.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <time.h>

int qf_cli_fail(const char *prog, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: error: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int qf_cli_usage(const char *prog, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: error: ", prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see %s --help)\n", prog);
    va_end(ap);
    return 2;
}

int qf_parse_i64(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

void qf_cli_json_str(FILE *f, const char *s) {
    if (!s) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p == '\n') fputs("\\n", f);
        else if (*p == '\t') fputs("\\t", f);
        else if (*p == '\r') fputs("\\r", f);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

double qf_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int qf_cli_check_ctx(const char *prog, const char *model, int64_t n_ctx, int64_t n_ctx_train, int allow, int quiet) {
    if (n_ctx_train <= 0 || n_ctx <= n_ctx_train) return 0;
    if (!allow) {
        fprintf(stderr,
                "%s: error: a context of %lld tokens exceeds %s's training context of %lld (positions beyond it "
                "give meaningless numbers); use -c %lld or less, or --allow-long-ctx to run anyway\n",
                prog, (long long)n_ctx, model, (long long)n_ctx_train, (long long)n_ctx_train);
        return 2;
    }
    if (!quiet)
        fprintf(stderr, "%s: warning: a context of %lld tokens exceeds %s's training context of %lld\n", prog,
                (long long)n_ctx, model, (long long)n_ctx_train);
    return 0;
}

const char *qf_cli_model_arg(const char *prog, const char *arg, char **owned) {
    qf_err err = {0};
    *owned = NULL;
    int rc = qf_hf_cache_resolve(arg, owned, &err);
    if (rc < 0) {
        qf_cli_fail(prog, "%s", err.msg);
        return NULL;
    }
    return rc ? *owned : arg;
}

int qf_parse_size(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno || s[0] == '-') return -1;
    uint64_t mul = 1;
    switch (*end) {
    case 0: break;
    case 'K': case 'k': mul = 1000ull; end++; break;
    case 'M': case 'm': mul = 1000ull * 1000; end++; break;
    case 'G': case 'g': mul = 1000ull * 1000 * 1000; end++; break;
    case 'T': case 't': mul = 1000ull * 1000 * 1000 * 1000; end++; break;
    default: return -1;
    }
    if (*end || v == 0 || v > UINT64_MAX / mul) return -1;
    *out = v * mul;
    return 0;
}
