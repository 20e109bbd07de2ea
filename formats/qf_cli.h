/* qf_cli.h - small helpers for the programs (bin/qforge-*): error lines,
 * option parsing, numbers, JSON strings, thread counts, --version. Library
 * code never calls these: libraries do not print. */
#ifndef QF_CLI_H
#define QF_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "qf_util.h"

#define QF_VERSION "0.1.0"

/* "PROG: error: <message>" on stderr; returns 1 (the failure exit code). */
int qf_cli_fail(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same plus "(see PROG --help)"; returns 2 (the usage-error exit code). */
int qf_cli_usage(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A whole-string base-10 integer; 0 on success, -1 otherwise. */
int qf_parse_i64(const char *s, int64_t *out);
/* A byte count: a decimal number ("4.2") with an optional suffix K, M, G or T
 * (powers of 1024 when k_is_1024, else of 1000), KiB..TiB (always 1024),
 * KB..TB (always 1000) or B; rounded to whole bytes. 0 on success, -1 for
 * anything else (negative, trailing text, >= 1.8e19). */
int qf_parse_bytes(const char *s, int k_is_1024, uint64_t *out);
/* A positive byte count as gguf-split reads it (K = 1000); 0 or -1. */
int qf_parse_size(const char *s, uint64_t *out);
/* A JSON string literal (null for NULL) with the required escapes. */
void qf_cli_json_str(FILE *f, const char *s);
/* A context of n_ctx tokens on a model trained on n_ctx_train (0: unknown):
 * beyond it, refuse with an error line naming --allow-long-ctx (returns 2,
 * the usage exit code) unless allow is set, then warn (unless quiet) and
 * return 0. */
int qf_cli_check_ctx(const char *prog, const char *model, int64_t n_ctx, int64_t n_ctx_train, int allow, int quiet);
/* A model argument with Hugging Face cache names resolved (hf_cache.h): the
 * snapshot directory (in *owned, to free) or arg itself; NULL after printing
 * the error when a cache entry is unusable. */
const char *qf_cli_model_arg(const char *prog, const char *arg, char **owned);
/* --version on stdout: version, git commit, compiler and flags, the
 * instruction sets compiled in and those of this CPU, the OpenMP wait policy
 * in effect. */
void qf_cli_version(const char *prog);

/* Idle OpenMP threads spin this many rounds (a few microseconds) before
 * sleeping: long enough to catch the next parallel region of a busy loop on
 * a quiet machine, short enough not to take a loaded machine's cores from
 * the working threads (bench/busy.sh measures the choice). */
#define QF_CLI_SPINCOUNT "1000"

/* Every program calls this first. libgomp's default spin (300000 rounds)
 * takes the cores the working threads need on a busy machine (a CI runner);
 * sleeping at once (passive) costs time on a quiet one. libgomp reads its
 * settings when it is loaded, so when the user set neither OMP_WAIT_POLICY
 * nor GOMP_SPINCOUNT the program re-executes itself once with
 * GOMP_SPINCOUNT=QF_CLI_SPINCOUNT. Returns (and the program goes on with
 * OpenMP's default) if that fails. */
void qf_cli_wait_policy(char **argv);

/* The most threads -t accepts: 4 x the processors this process may use. */
int qf_cli_threads_max(void);
/* The thread count to pass to the libraries: `given` (-t, 0 = not given),
 * else OMP_NUM_THREADS, else the processors this process may use. Returns -1
 * and sets *out, or prints a usage error naming OMP_NUM_THREADS and returns 2. */
int qf_cli_threads(const char *prog, int64_t given, int *out);

/* One argument of the option loop: "--name=value" is split at the first
 * '='; otherwise the value, if the option takes one, is the next argument. */
typedef struct qf_arg {
    const char *name;   /* the option as written, without "=value" */
    const char *val;    /* after '=', else the next argument (NULL at the end) */
    int inline_val;     /* the value came after '=' */
    int used;           /* the option took its value */
    char buf[64];
} qf_arg;
void qf_arg_split(qf_arg *g, int argc, char **argv, int i);

/* Option parsing inside the loop body that QF_ARG_BEGIN starts. NEED_VAL takes the option's
 * value (usage error if absent); NUM / NUM_RANGE take it as an integer in
 * [minv, maxv]; QF_ARG_END refuses "--flag=value" for an option without a
 * value. Usage errors name the option and the accepted range. */
#define NEED_VAL()                                                              \
    do {                                                                        \
        if (!val) return qf_cli_usage(PROG, "option %s needs a value", a);      \
        if (!arg.inline_val) i++;                                               \
        arg.used = 1;                                                           \
    } while (0)
#define NUM_RANGE(dst, minv, maxv)                                              \
    do {                                                                        \
        NEED_VAL();                                                             \
        int64_t num_;                                                           \
        if (qf_parse_i64(val, &num_) < 0 || num_ < (minv) || num_ > (maxv))      \
            return qf_cli_bad_range(PROG, a, val, (minv), (maxv));              \
        (dst) = num_;                                                           \
    } while (0)
#define NUM(dst, minv) NUM_RANGE(dst, minv, INT64_MAX)
#define QF_ARG_END()                                                            \
    do {                                                                        \
        if (arg.inline_val && !arg.used)                                        \
            return qf_cli_usage(PROG, "option %s takes no value", a);           \
    } while (0)

/* The options the programs share, and what they set. `accept` says which a
 * program takes besides -h/--help and --version (all take those). */
enum {
    QF_CLI_THREADS = 1, /* -t, --threads N (1 to qf_cli_threads_max()) */
    QF_CLI_QUIET = 2,   /* --quiet */
    QF_CLI_Q = 4,       /* -q as well as --quiet */
    QF_CLI_JSON = 8,    /* --json */
};
typedef struct qf_cli_common {
    unsigned accept;  /* QF_CLI_* */
    int quiet, json;  /* the flag was given */
    int64_t threads;  /* -t as given, 0 when not given (see qf_cli_threads) */
} qf_cli_common;

/* qf_cli_common_opt's answers besides an exit code. */
#define QF_CLI_OTHER (-1) /* not a shared option */
#define QF_CLI_TAKEN (-2) /* taken into c (and *i moved past a separate value) */
/* Answers argument *i (split into g) when it is a shared option: help and
 * version are printed (returns 0, the program then exits 0); a flag or
 * thread count is stored in c (QF_CLI_TAKEN); a missing or out-of-range
 * value or a flag given "=value" is a usage error (returns 2). QF_CLI_OTHER
 * for any other argument. */
int qf_cli_common_opt(const char *prog, void (*usage)(FILE *), qf_arg *g, int *i, qf_cli_common *c);

/* The start of the option loop's body (`for (int i = 1; i < argc; i++)`,
 * with PROG defined; usage_fn prints the help): splits argument i into arg, a (the name)
 * and val (its value), answers the shared options of *common and goes on to
 * the next argument, or returns the exit code of help, version or a usage
 * error. The body goes on with the program's own options and ends with
 * QF_ARG_END(). */
#define QF_ARG_BEGIN(common, usage_fn)                                                \
    qf_arg arg;                                                                 \
    qf_arg_split(&arg, argc, argv, i);                                          \
    const char *a = arg.name, *val = arg.val;                                   \
    (void)val;                                                                  \
    {                                                                           \
        int common_rc_ = qf_cli_common_opt(PROG, (usage_fn), &arg, &i, (common)); \
        if (common_rc_ == QF_CLI_TAKEN) continue;                               \
        if (common_rc_ != QF_CLI_OTHER) return common_rc_;                      \
    }

/* The last branch of the option chain, for any argument not taken before:
 * an unknown option ("-x", "--x", not "-" alone) or an argument beyond the
 * first max is a usage error (returns 2); else it goes to pos[(*n)++]
 * (returns QF_CLI_TAKEN). */
int qf_cli_positional(const char *prog, const char *arg, const char **pos, int max, int *n);
#define QF_ARG_POSITIONAL(pos, max, n)                                          \
    do {                                                                        \
        int pos_rc_ = qf_cli_positional(PROG, argv[i], (pos), (max), (n));      \
        if (pos_rc_ != QF_CLI_TAKEN) return pos_rc_;                            \
    } while (0)

/* "OPT: expected an integer from MIN to MAX (or >= MIN), not 'VAL'"; returns 2. */
int qf_cli_bad_range(const char *prog, const char *opt, const char *val, int64_t minv, int64_t maxv);

#endif
