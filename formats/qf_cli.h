/* qf_cli.h - small helpers for the programs (bin/qforge-*): error lines,
 * number parsing, JSON strings, a clock. Library code never calls these:
 * libraries do not print. */
#ifndef QF_CLI_H
#define QF_CLI_H

#include <stdint.h>
#include <stdio.h>

/* "PROG: error: <message>" on stderr; returns 1 (the failure exit code). */
int qf_cli_fail(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same plus "(see PROG --help)"; returns 2 (the usage-error exit code). */
int qf_cli_usage(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A whole-string base-10 integer; 0 on success, -1 otherwise. */
int qf_parse_i64(const char *s, int64_t *out);
/* A positive byte count with an optional K, M, G or T suffix (10^3..10^12);
 * 0 on success, -1 otherwise. */
int qf_parse_size(const char *s, uint64_t *out);
/* A JSON string literal (null for NULL) with the required escapes. */
void qf_cli_json_str(FILE *f, const char *s);
/* Monotonic seconds, for rates and ETAs. */
double qf_now_seconds(void);
/* A context of n_ctx tokens on a model trained on n_ctx_train (0: unknown):
 * beyond it, refuse with an error line naming --allow-long-ctx (returns 2,
 * the usage exit code) unless allow is set, then warn (unless quiet) and
 * return 0. */
int qf_cli_check_ctx(const char *prog, const char *model, int64_t n_ctx, int64_t n_ctx_train, int allow, int quiet);
/* A model argument with Hugging Face cache names resolved (hf_cache.h): the
 * snapshot directory (in *owned, to free) or arg itself; NULL after printing
 * the error when a cache entry is unusable. */
const char *qf_cli_model_arg(const char *prog, const char *arg, char **owned);

/* Option parsing inside `for (int i = 1; i < argc; i++)` with locals
 * `const char *a = argv[i]` and `const char *val = i + 1 < argc ? argv[i + 1] : NULL`
 * and a PROG macro: take the option's value (usage error if absent), or take
 * it as an integer >= minv. */
#define NEED_VAL()                                                              \
    do {                                                                        \
        if (!val) return qf_cli_usage(PROG, "option %s needs a value", a);      \
        i++;                                                                    \
    } while (0)
#define NUM(dst, minv)                                                          \
    do {                                                                        \
        NEED_VAL();                                                             \
        if (qf_parse_i64(val, &(dst)) < 0 || (dst) < (minv))                    \
            return qf_cli_usage(PROG, "bad number '%s'", val);                  \
    } while (0)

#endif
