/* qf_test.h - the in-house unit test runner (header-only).
 *
 *   static void test_something(qf_test *t) {
 *       CHECK(t, x == 3, "x=%d", x);
 *       if (!qf_test_data(t, "models/stories260K", path, sizeof path)) return; // SKIPs
 *   }
 *   QF_TEST_MAIN(test_something, test_other)
 *
 * Each test prints one line: "PASS suite/name", "FAIL suite/name: where: why"
 * or "SKIP suite/name: reason"; the binary ends with "N passed, N failed,
 * N skipped" and exits 1 if anything failed. tests/run.sh adds the lines up.
 */
#ifndef QF_TEST_H
#define QF_TEST_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>

typedef struct qf_test {
    const char *name;
    int failed;
    int skipped;
    char first_failure[512];
    char skip_reason[512];
    int n_checks_failed;
} qf_test;

static inline void qf_test_fail(qf_test *t, const char *file, int line, const char *fmt, ...) {
    if (!t->failed) {
        int n = snprintf(t->first_failure, sizeof t->first_failure, "%s:%d: ", file, line);
        va_list ap;
        va_start(ap, fmt);
        if (n > 0 && (size_t)n < sizeof t->first_failure)
            vsnprintf(t->first_failure + n, sizeof t->first_failure - n, fmt, ap);
        va_end(ap);
    }
    t->failed = 1;
    t->n_checks_failed++;
}

#define CHECK(t, cond, ...) do { if (!(cond)) qf_test_fail((t), __FILE__, __LINE__, "check failed: " #cond " -- " __VA_ARGS__); } while (0)
/* CHECK that also returns from the test on failure (for preconditions). */
#define REQUIRE(t, cond, ...) do { if (!(cond)) { qf_test_fail((t), __FILE__, __LINE__, "required: " #cond " -- " __VA_ARGS__); return; } } while (0)

static inline void qf_test_skip(qf_test *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->skip_reason, sizeof t->skip_reason, fmt, ap);
    va_end(ap);
    t->skipped = 1;
}

/* Directory with the shared test data: $QF_DATA or ../shared. */
static inline const char *qf_test_data_dir(void) {
    const char *d = getenv("QF_DATA");
    return (d && *d) ? d : "../shared";
}

/* Build "$QF_DATA/rel" into buf; if it does not exist, mark the test skipped
 * (naming the missing path) and return 0. */
static inline int qf_test_data(qf_test *t, const char *rel, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s", qf_test_data_dir(), rel);
    struct stat st;
    if (stat(buf, &st) != 0) {
        qf_test_skip(t, "test data %s not found (set QF_DATA)", buf);
        return 0;
    }
    return 1;
}

/* A scratch directory for this test binary: $QF_TMP or build/tmp. */
static inline const char *qf_test_tmpdir(void) {
    const char *d = getenv("QF_TMP");
    if (d && *d) return d;
    mkdir("build", 0777);
    mkdir("build/tmp", 0777);
    return "build/tmp";
}

/* Read a whole file into a malloc'd buffer with a NUL after the last byte
 * (*n = size). NULL if it cannot be read. */
static inline void *qf_test_read_file(const char *path, size_t *n) {
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = NULL;
    long sz = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (sz = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        b = malloc((size_t)sz + 1);
        if (b && sz > 0 && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
            free(b);
            b = NULL;
        }
    }
    fclose(f);
    if (!b) return NULL;
    b[sz] = 0;
    *n = (size_t)sz;
    return b;
}

/* The same as 0 / -1 with the buffer in *buf. */
static inline int qf_test_load(const char *path, unsigned char **buf, size_t *n) {
    *buf = qf_test_read_file(path, n);
    return *buf ? 0 : -1;
}

/* A small deterministic generator for test data (xorshift64; seed != 0). */
typedef struct qf_test_rng { uint64_t s; } qf_test_rng;
static inline uint64_t qf_test_rng_u64(qf_test_rng *r) {
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s;
}
/* Uniform in (0, 1). */
static inline float qf_test_rng_unif(qf_test_rng *r) { return (float)((qf_test_rng_u64(r) >> 40) + 0.5) / 16777216.f; }
/* Standard normal (Box-Muller). */
static inline float qf_test_rng_gauss(qf_test_rng *r) {
    float u = qf_test_rng_unif(r), v = qf_test_rng_unif(r);
    return sqrtf(-2.f * logf(u)) * cosf(6.2831853f * v);
}

/* Codec test rows with the awkward cases, one kind per row (row % 8, or
 * row % 9 with near_f16): small gaussian, outliers, zero sub-blocks,
 * constant/positive runs, small negatives, exact ties, tiny values, values
 * near the F16 range (near_f16 only), a scale varying by column. */
static inline void qf_test_awkward_rows(qf_test_rng *r, float *x, int64_t nrows, int64_t n, int near_f16) {
    for (int64_t row = 0; row < nrows; ++row) {
        float *xr = x + row * n;
        const int kind = (int)(row % (near_f16 ? 9 : 8));
        for (int64_t j = 0; j < n; ++j) {
            float g = qf_test_rng_gauss(r);
            switch (kind) {
            case 0: xr[j] = 0.02f * g; break;
            case 1: xr[j] = g * (qf_test_rng_unif(r) < 0.02f ? 30.f : 1.f); break;
            case 2: xr[j] = (j / 16) % 3 == 0 ? 0.f : g; break;
            case 3: xr[j] = (j / 32) % 2 ? 0.5f : fabsf(g); break;
            case 4: xr[j] = -fabsf(g) * 1e-3f; break;
            case 5: xr[j] = (float)((int)(g * 4.f)) * 0.25f; break;
            case 6: xr[j] = g * 1e-20f; break;
            case 7:
                if (near_f16) {
                    xr[j] = g * 8e3f;
                    break;
                }
                /* fall through */
            default: xr[j] = g * (1.f + 10.f * (float)(j % 7)); break;
            }
        }
    }
}

/* A log-normal importance row (strongly varying), with dead input columns
 * (every 37th from 5) when with_zeros. */
static inline void qf_test_imatrix(qf_test_rng *r, float *qw, int64_t n, int with_zeros) {
    for (int64_t j = 0; j < n; ++j) {
        qw[j] = expf(2.f * qf_test_rng_gauss(r));
        if (with_zeros && j % 37 == 5) qw[j] = 0.f;
    }
}

/* n standard-normal floats from seed (malloc'd; free with free). */
static inline float *qf_test_gauss_new(uint64_t seed, int64_t n) {
    qf_test_rng r = {seed};
    float *x = malloc((size_t)n * sizeof *x);
    for (int64_t i = 0; x && i < n; i++) x[i] = qf_test_rng_gauss(&r);
    return x;
}

/* 1 if files a and b both read and hold the same bytes. */
static inline int qf_test_same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = qf_test_read_file(a, &na), *y = qf_test_read_file(b, &nb);
    const int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

typedef void (*qf_test_fn)(qf_test *);

static inline int qf_test_main(const char *suite, const char *names, qf_test_fn *fns, int n, int argc, char **argv) {
    int passed = 0, failed = 0, skipped = 0;
    const char *filter = argc > 1 ? argv[1] : NULL;
    char namebuf[4096];
    snprintf(namebuf, sizeof namebuf, "%s", names);
    char *save = NULL;
    char *tok = strtok_r(namebuf, ", \t\n", &save);
    for (int i = 0; i < n && tok; i++, tok = strtok_r(NULL, ", \t\n", &save)) {
        const char *tn = strncmp(tok, "test_", 5) == 0 ? tok + 5 : tok;
        if (filter && !strstr(tn, filter)) continue;
        qf_test t;
        memset(&t, 0, sizeof t);
        t.name = tn;
        fns[i](&t);
        if (t.failed) {
            printf("FAIL %s/%s: %s", suite, tn, t.first_failure);
            if (t.n_checks_failed > 1) printf(" (+%d more)", t.n_checks_failed - 1);
            printf("\n");
            failed++;
        } else if (t.skipped) {
            printf("SKIP %s/%s: %s\n", suite, tn, t.skip_reason);
            skipped++;
        } else {
            printf("PASS %s/%s\n", suite, tn);
            passed++;
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}

#define QF_TEST_MAIN(...)                                                         \
    int main(int argc, char **argv) {                                             \
        qf_test_fn fns[] = {__VA_ARGS__};                                         \
        const char *suite = __FILE__;                                             \
        const char *slash = strrchr(suite, '/');                                  \
        char sname[128];                                                          \
        snprintf(sname, sizeof sname, "%s", slash ? slash + 1 : suite);           \
        char *dot = strstr(sname, "_test.c");                                     \
        if (dot) *dot = 0;                                                        \
        return qf_test_main(sname, #__VA_ARGS__, fns, (int)(sizeof fns / sizeof fns[0]), argc, argv); \
    }

#endif
