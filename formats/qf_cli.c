#include "qf_cli.h"
#include "hf_cache.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

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

int qf_cli_bad_range(const char *prog, const char *opt, const char *val, int64_t minv, int64_t maxv) {
    if (maxv == INT64_MAX) return qf_cli_usage(prog, "%s: expected an integer >= %lld, not '%s'", opt, (long long)minv, val);
    return qf_cli_usage(prog, "%s: expected an integer from %lld to %lld, not '%s'", opt, (long long)minv,
                        (long long)maxv, val);
}

void qf_arg_split(qf_arg *g, int argc, char **argv, int i) {
    const char *s = argv[i], *eq = strchr(s, '=');
    memset(g, 0, sizeof *g);
    g->name = s;
    g->val = i + 1 < argc ? argv[i + 1] : NULL;
    if (s[0] == '-' && s[1] == '-' && eq && (size_t)(eq - s) < sizeof g->buf) {
        memcpy(g->buf, s, (size_t)(eq - s));
        g->name = g->buf;
        g->val = eq + 1;
        g->inline_val = 1;
    }
}

void qf_cli_wait_policy(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    if (setenv("GOMP_SPINCOUNT", QF_CLI_SPINCOUNT, 1) != 0) return;
    execv("/proc/self/exe", argv);
    /* not re-executed: the setting would not take effect; leave no trace */
    unsetenv("GOMP_SPINCOUNT");
}

static int n_procs(void) {
#ifdef _OPENMP
    int n = omp_get_num_procs();
#else
    int n = (int)sysconf(_SC_NPROCESSORS_ONLN);
#endif
    return n > 0 ? n : 1;
}

int qf_cli_threads_max(void) { return 4 * n_procs(); }

int qf_cli_threads(const char *prog, int64_t given, int *out) {
    if (given > 0) {
        *out = (int)given;
        return -1;
    }
    const char *env = getenv("OMP_NUM_THREADS");
    if (env && *env) {
        /* OpenMP's form: a list "N[,N...]"; the first level counts here */
        char first[32];
        size_t k = strcspn(env, ",");
        int64_t n;
        if (k >= sizeof first) k = sizeof first - 1;
        memcpy(first, env, k);
        first[k] = 0;
        if (qf_parse_i64(first, &n) < 0 || n < 1 || n > qf_cli_threads_max())
            return qf_cli_usage(prog, "OMP_NUM_THREADS=%s: expected an integer from 1 to %d", env, qf_cli_threads_max());
        *out = (int)n;
        return -1;
    }
    *out = n_procs();
    return -1;
}

#ifndef QF_GIT_COMMIT
#define QF_GIT_COMMIT "unknown"
#endif
#ifndef QF_BUILD_FLAGS
#define QF_BUILD_FLAGS "unknown"
#endif

void qf_cli_version(const char *prog) {
    printf("%s %s (commit %s)\n", prog, QF_VERSION, QF_GIT_COMMIT);
    printf("built with: %s\n", QF_BUILD_FLAGS);
    printf("compiled for:");
#if defined(__x86_64__)
    printf(" x86-64");
#elif defined(__aarch64__)
    printf(" aarch64");
#endif
#ifdef __AVX2__
    printf(" avx2");
#endif
#ifdef __FMA__
    printf(" fma");
#endif
#ifdef __F16C__
    printf(" f16c");
#endif
#ifdef __AVX512F__
    printf(" avx512f");
#endif
#ifdef __AVX512BW__
    printf(" avx512bw");
#endif
#ifdef __AVX512VNNI__
    printf(" avx512vnni");
#endif
#ifdef __AVXVNNI__
    printf(" avxvnni");
#endif
#ifdef _OPENMP
    printf(" openmp");
#endif
    printf("\n");
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    printf("this cpu:");
    if (__builtin_cpu_supports("avx2")) printf(" avx2");
    if (__builtin_cpu_supports("fma")) printf(" fma");
    if (__builtin_cpu_supports("avx512f")) printf(" avx512f");
    if (__builtin_cpu_supports("avx512bw")) printf(" avx512bw");
    if (__builtin_cpu_supports("avx512vnni")) printf(" avx512vnni");
    printf("\n");
#endif
#ifdef _OPENMP
    const char *wp = getenv("OMP_WAIT_POLICY"), *sc = getenv("GOMP_SPINCOUNT");
    printf("openmp wait policy: %s%s%s\n", wp ? wp : "libgomp default", sc ? ", GOMP_SPINCOUNT=" : "", sc ? sc : "");
#endif
}

int qf_cli_common_opt(const char *prog, void (*usage)(FILE *), qf_arg *g, int *i, qf_cli_common *c) {
    const char *a = g->name;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(a, "--version")) {
        qf_cli_version(prog);
        return 0;
    }
    if ((c->accept & QF_CLI_THREADS) && (!strcmp(a, "-t") || !strcmp(a, "--threads"))) {
        int64_t n;
        if (!g->val) return qf_cli_usage(prog, "option %s needs a value", a);
        if (!g->inline_val) (*i)++;
        if (qf_parse_i64(g->val, &n) < 0 || n < 1 || n > qf_cli_threads_max())
            return qf_cli_bad_range(prog, a, g->val, 1, qf_cli_threads_max());
        c->threads = n;
        return QF_CLI_TAKEN;
    }
    int *flag;
    if ((c->accept & QF_CLI_QUIET) && (!strcmp(a, "--quiet") || ((c->accept & QF_CLI_Q) && !strcmp(a, "-q"))))
        flag = &c->quiet;
    else if ((c->accept & QF_CLI_JSON) && !strcmp(a, "--json"))
        flag = &c->json;
    else
        return QF_CLI_OTHER;
    if (g->inline_val) return qf_cli_usage(prog, "option %s takes no value", a);
    *flag = 1;
    return QF_CLI_TAKEN;
}

int qf_cli_positional(const char *prog, const char *arg, const char **pos, int max, int *n) {
    if (arg[0] == '-' && arg[1]) return qf_cli_usage(prog, "unknown option '%s'", arg);
    if (*n >= max) return qf_cli_usage(prog, "unexpected argument '%s'", arg);
    pos[(*n)++] = arg;
    return QF_CLI_TAKEN;
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

int qf_parse_bytes(const char *s, int k_is_1024, uint64_t *out) {
    if (!s || !*s || *s == '-' || *s == '+') return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v >= 0)) return -1;
    double k = k_is_1024 ? 1024.0 : 1000.0, mul = 1;
    int e = 0; /* power of k */
    switch (*end) {
    case 'K': case 'k': e = 1; break;
    case 'M': case 'm': e = 2; break;
    case 'G': case 'g': e = 3; break;
    case 'T': case 't': e = 4; break;
    case 'B': case 0: break;
    default: return -1;
    }
    if (e) {
        end++;
        if (!strcmp(end, "iB")) k = 1024.0, end += 2;
        else if (!strcmp(end, "B")) k = 1000.0, end++;
    } else if (*end == 'B') {
        end++;
    }
    if (*end) return -1;
    for (int i = 0; i < e; i++) mul *= k;
    double b = v * mul;
    if (b >= 1.8e19) return -1;
    *out = (uint64_t)(b + 0.5);
    return 0;
}

int qf_parse_size(const char *s, uint64_t *out) {
    uint64_t v;
    if (qf_parse_bytes(s, 0, &v) || v == 0) return -1;
    *out = v;
    return 0;
}
