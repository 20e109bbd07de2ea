/* quantize_search_test.c - the error-minimizing quantizers (quantize/search.h).
 *
 * Invariants: per block, the search's weighted squared error is never above
 * the exact (ggml) path's, for every type, weight mode, with and without
 * imatrix, on adversarial random rows and on real weights; the bytes do not
 * depend on the thread count or on AVX2 vs scalar; the blocks decode with
 * the reference dequantizers to finite values; and on real weights
 * (stories260K, tinystories-distill-3M) the weighted error is lower than
 * ggml's by at least a margin measured beforehand (docs/quality.md). */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_types.h"
#include "gguf.h"
#include "numfmt.h"
#include "qf_error.h"
#include "codecs.h"
#include "search.h"
#include "search_kernels.h"
#include "safetensors.h"
#include "qf_test.h"
#include "qf_test_blocks.h"

/* ---------------------------------------------------------------- helpers */

typedef qf_test_rng rng;

static const uint32_t SEARCH_TYPES[] = {
    GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0,
    GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_IQ4_NL,
    GGML_TYPE_IQ4_XS,
};
#define N_SEARCH_TYPES (sizeof SEARCH_TYPES / sizeof SEARCH_TYPES[0])

#define tname(type) qf_test_type_name(type)
#define row_bytes(type, n) qf_test_row_bytes(type, n)

/* Per-block comparison of the search output q against the exact output e
 * under the weights of `mode`: counts blocks where the search is worse
 * (must stay 0) and where it is strictly better, and sums both errors. */
typedef struct cmp_stats {
    int64_t blocks, worse, better, nonfinite;
    double err_search, err_exact;
    double worst_excess; /* largest (search - exact) / exact over the blocks */
} cmp_stats;

static void compare_rows(uint32_t type, int mode, const float *x, const float *qw, int64_t nrows, int64_t n,
                         const uint8_t *q, const uint8_t *e, cmp_stats *st) {
    const size_t rs = row_bytes(type, n);
    float *w = malloc((size_t)n * sizeof *w), *y = malloc((size_t)n * sizeof *y);
    double *bq = malloc((size_t)(n / 32 + 1) * sizeof *bq), *be = malloc((size_t)(n / 32 + 1) * sizeof *be);
    for (int64_t r = 0; r < nrows; ++r) {
        qf_search_row_weights(type, mode, x + r * n, n, qw, w);
        const int64_t nb = qf_search_block_errors(type, q + r * rs, x + r * n, w, n, bq);
        qf_search_block_errors(type, e + r * rs, x + r * n, w, n, be);
        for (int64_t b = 0; b < nb; ++b) {
            st->blocks++;
            st->err_search += bq[b];
            st->err_exact += be[b];
            if (bq[b] > be[b]) {
                st->worse++;
                const double ex = be[b] > 0 ? (bq[b] - be[b]) / be[b] : INFINITY;
                if (ex > st->worst_excess) st->worst_excess = ex;
            }
            st->better += bq[b] < be[b];
        }
        qf_dequantize_row_ref(type, q + r * rs, y, n);
        for (int64_t j = 0; j < n; ++j) st->nonfinite += !isfinite(y[j]);
    }
    free(w);
    free(y);
    free(bq);
    free(be);
}

/* ------------------------------------------------------------------ tests */

/* The invariant on adversarial random rows: every type, every weight mode,
 * with and without an imatrix. */
static void test_never_worse_than_exact_random(qf_test *t) {
    const int64_t nrows = 18, n = 512;
    rng r = { 0x9e3779b97f4a7c15ull };
    float *x = malloc(nrows * n * sizeof *x), *qw = malloc(n * sizeof *qw);
    qf_test_awkward_rows(&r, x, nrows, n, 1);
    qf_test_imatrix(&r, qw, n, 1);
    for (size_t ti = 0; ti < N_SEARCH_TYPES; ++ti) {
        const uint32_t type = SEARCH_TYPES[ti];
        const size_t bytes = row_bytes(type, n) * nrows;
        uint8_t *q = malloc(bytes), *e = malloc(bytes);
        for (int im = 0; im < 2; ++im) {
            const float *w = im ? qw : NULL;
            REQUIRE(t, qf_quantize_rows(type, x, e, nrows, n, w) == (int64_t)bytes, "%s exact", tname(type));
            for (int mode = 0; mode < QF_SEARCH_W_COUNT; ++mode) {
                qf_search_opts o;
                qf_search_opts_init(&o);
                o.weights = mode;
                REQUIRE(t, qf_quantize_rows_opt_ex(type, x, q, nrows, n, w, &o) == (int64_t)bytes, "%s", tname(type));
                cmp_stats st = { 0 };
                compare_rows(type, mode, x, w, nrows, n, q, e, &st);
                CHECK(t, st.worse == 0, "%s imat=%d mode %d: %lld of %lld blocks worse than exact (by up to %.3g)",
                      tname(type), im, mode, (long long)st.worse, (long long)st.blocks, st.worst_excess);
                CHECK(t, st.nonfinite == 0, "%s imat=%d mode %d: %lld non-finite values", tname(type), im, mode,
                      (long long)st.nonfinite);
            }
        }
        free(q);
        free(e);
    }
    free(x);
    free(qw);
}

/* The search alone (keep_exact = 0) on gaussian rows: it must beat ggml on
 * most blocks by itself (a packing or decoding mistake would make its
 * blocks worse than its own error estimate, and lose). */
static void test_search_alone_beats_exact_on_gaussian_rows(qf_test *t) {
    const int64_t nrows = 16, n = 512;
    rng r = { 12345 };
    float *x = malloc(nrows * n * sizeof *x), *qw = malloc(n * sizeof *qw);
    for (int64_t i = 0; i < nrows * n; ++i) x[i] = 0.02f * qf_test_rng_gauss(&r);
    qf_test_imatrix(&r, qw, n, 1);
    for (size_t ti = 0; ti < N_SEARCH_TYPES; ++ti) {
        const uint32_t type = SEARCH_TYPES[ti];
        const size_t bytes = row_bytes(type, n) * nrows;
        uint8_t *q = malloc(bytes), *e = malloc(bytes);
        for (int im = 0; im < 2; ++im) {
            const float *w = im ? qw : NULL;
            qf_search_opts o;
            qf_search_opts_init(&o);
            o.keep_exact = 0;
            qf_quantize_rows(type, x, e, nrows, n, w);
            REQUIRE(t, qf_quantize_rows_opt_ex(type, x, q, nrows, n, w, &o) == (int64_t)bytes, "%s", tname(type));
            cmp_stats st = { 0 };
            compare_rows(type, QF_SEARCH_W_DEFAULT, x, w, nrows, n, q, e, &st);
            /* ggml's imatrix Q4_0/Q5_0/Q4_1/Q5_1 search is already close to optimal
             * per block: the exact sweep ties it on many blocks */
            const double min_better = (type <= GGML_TYPE_Q5_1 && im) ? 0.25 : 0.8;
            CHECK(t, st.better >= min_better * (double)st.blocks, "%s imat=%d: search alone better on %lld of %lld",
                  tname(type), im, (long long)st.better, (long long)st.blocks);
            CHECK(t, st.err_search < st.err_exact, "%s imat=%d: total %.6g vs exact %.6g", tname(type), im,
                  st.err_search, st.err_exact);
        }
        free(q);
        free(e);
    }
    free(x);
    free(qw);
}

static void test_threads_and_kernels_give_same_bytes(qf_test *t) {
    const int64_t nrows = 27, n = 256;
    rng r = { 777 };
    float *x = malloc(nrows * n * sizeof *x), *qw = malloc(n * sizeof *qw);
    qf_test_awkward_rows(&r, x, nrows, n, 1);
    qf_test_imatrix(&r, qw, n, 1);
    for (size_t ti = 0; ti < N_SEARCH_TYPES; ++ti) {
        const uint32_t type = SEARCH_TYPES[ti];
        const size_t bytes = row_bytes(type, n) * nrows;
        uint8_t *ref = malloc(bytes), *q = malloc(bytes);
        for (int im = 0; im < 2; ++im) {
            const float *w = im ? qw : NULL;
            qf_search_opts o;
            qf_search_opts_init(&o);
            o.force_scalar = 1;
            qf_quantize_rows_opt_ex(type, x, ref, nrows, n, w, &o);
            for (int nt = 1; nt <= 3; ++nt) {
                qf_search_opts of;
                qf_search_opts_init(&of);
                of.n_threads = nt;
                qf_quantize_rows_opt_ex(type, x, q, nrows, n, w, &of);
                CHECK(t, !memcmp(ref, q, bytes), "%s imat=%d: %d threads (fast kernel) differ from 1 thread scalar",
                      tname(type), im, nt);
            }
        }
        free(ref);
        free(q);
    }
    free(x);
    free(qw);
}

/* QF_SEARCH_EFFORT_FAST (qforge-quantize's default for K-quant blocks): per
 * block never worse than exact; for Q2_K/Q4_K/Q5_K never better than the
 * full search (it is the full search's first descent with fewer rounds; 1e-4
 * relative slack for the float vs double scoring of near-ties), for
 * Q3_K/Q6_K (a grid-seeded start instead) at least half of the full
 * search's gain over exact in total on gaussian rows; the same bytes as the
 * full search for the 32-blocks, independent of threads and kernels, and on
 * gaussian rows clearly better than exact in total. */
static void test_fast_effort(qf_test *t) {
    const int64_t nrows = 27, n = 512;
    rng r = { 4242 };
    float *x = malloc(nrows * n * sizeof *x), *qw = malloc(n * sizeof *qw);
    qf_test_awkward_rows(&r, x, nrows, n, 1);
    for (int64_t i = 0; i < 9 * n; ++i) x[i] = 0.02f * qf_test_rng_gauss(&r); /* rows 0-8: gaussian */
    qf_test_imatrix(&r, qw, n, 1);
    for (size_t ti = 0; ti < N_SEARCH_TYPES; ++ti) {
        const uint32_t type = SEARCH_TYPES[ti];
        const int is_k = ggml_get_type_traits(type)->block_size == QK_K;
        const int is_ksym = type == GGML_TYPE_Q3_K || type == GGML_TYPE_Q6_K;
        const size_t bytes = row_bytes(type, n) * nrows;
        uint8_t *e = malloc(bytes), *f = malloc(bytes), *f1 = malloc(bytes), *s = malloc(bytes);
        double *be = malloc((size_t)(n / 32) * sizeof *be), *bf = malloc((size_t)(n / 32) * sizeof *bf),
               *bs = malloc((size_t)(n / 32) * sizeof *bs);
        float *w = malloc((size_t)n * sizeof *w);
        for (int im = 0; im < 2; ++im) {
            const float *iw = im ? qw : NULL;
            qf_search_opts o;
            qf_search_opts_init(&o);
            REQUIRE(t, qf_quantize_rows(type, x, e, nrows, n, iw) == (int64_t)bytes, "%s exact", tname(type));
            REQUIRE(t, qf_quantize_rows_opt_ex(type, x, s, nrows, n, iw, &o) == (int64_t)bytes, "%s full", tname(type));
            o.effort = QF_SEARCH_EFFORT_FAST;
            o.n_threads = 3;
            REQUIRE(t, qf_quantize_rows_opt_ex(type, x, f, nrows, n, iw, &o) == (int64_t)bytes, "%s fast", tname(type));
            o.force_scalar = 1;
            o.n_threads = 1;
            qf_quantize_rows_opt_ex(type, x, f1, nrows, n, iw, &o);
            CHECK(t, !memcmp(f, f1, bytes), "%s imat=%d: fast, 3 threads AVX2 vs 1 thread scalar differ", tname(type), im);
            if (!is_k) {
                CHECK(t, !memcmp(f, s, bytes), "%s imat=%d: fast changed a 32-block type", tname(type), im);
                continue;
            }
            int64_t worse = 0, above_full = 0, nb = 0;
            double te = 0, tf = 0, ts = 0; /* totals over the gaussian rows */
            for (int64_t row = 0; row < nrows; ++row) {
                const size_t rs = row_bytes(type, n);
                qf_search_row_weights(type, QF_SEARCH_W_DEFAULT, x + row * n, n, iw, w);
                const int64_t k = qf_search_block_errors(type, e + row * rs, x + row * n, w, n, be);
                qf_search_block_errors(type, f + row * rs, x + row * n, w, n, bf);
                qf_search_block_errors(type, s + row * rs, x + row * n, w, n, bs);
                for (int64_t b = 0; b < k; ++b, ++nb) {
                    worse += bf[b] > be[b];
                    above_full += bs[b] > bf[b] * (1 + 1e-4) + 1e-30;
                    if (row < 9) { te += be[b]; tf += bf[b]; ts += bs[b]; }
                }
            }
            CHECK(t, worse == 0, "%s imat=%d: fast worse than exact on %lld of %lld blocks", tname(type), im,
                  (long long)worse, (long long)nb);
            CHECK(t, is_ksym || above_full == 0, "%s imat=%d: full search worse than fast on %lld of %lld blocks",
                  tname(type), im, (long long)above_full, (long long)nb);
            /* measured on these rows: fast 1.6-24% below exact in total, full 3-31% */
            CHECK(t, tf < 0.995 * te && (is_ksym ? te - tf >= 0.5 * (te - ts) : ts <= tf),
                  "%s imat=%d: gaussian totals exact %.6g fast %.6g full %.6g", tname(type), im, te, tf, ts);
            printf("# %s imat=%d gaussian: exact %.4g fast %.4g (%.1f%%) full %.4g (%.1f%%)\n", tname(type), im, te,
                   tf, 100 * (tf / te - 1), ts, 100 * (ts / te - 1));
        }
        free(e); free(f); free(f1); free(s); free(be); free(bf); free(bs); free(w);
    }
    free(x);
    free(qw);
}

/* The inner loop: AVX2 == scalar, bit for bit, on random groups. */
static void test_group_err_kernel_avx2_equals_scalar(qf_test *t) {
#if defined(__AVX2__)
    rng r = { 4242 };
    float x[32], w[32];
    int8_t q1[32], q2[32];
    int mismatches = 0, grid_mismatches = 0;
    for (int it = 0; it < 20000; ++it) {
        const int n = it % 2 ? 32 : 16;
        for (int i = 0; i < n; ++i) {
            x[i] = qf_test_rng_gauss(&r) * (it % 5 == 0 ? 1e-3f : 1.f);
            w[i] = qf_test_rng_unif(&r);
        }
        const float d = (it % 97 == 0) ? 0.f : qf_test_rng_gauss(&r) * 0.3f;
        const float mo = it % 3 ? 0.f : fabsf(qf_test_rng_gauss(&r));
        const int lo = it % 3 ? -32 : 0, hi = it % 3 ? 31 : 15;
        const float e1 = qs_group_err_scalar(x, w, n, d, mo, lo, hi, q1);
        const float e2 = qs_group_err_avx2(x, w, n, d, mo, lo, hi, q2);
        mismatches += memcmp(&e1, &e2, sizeof e1) != 0 || memcmp(q1, q2, (size_t)n) != 0;
        /* the grid kernel: QS_GRID scales at once, some 0 */
        float dg[QS_GRID], g1[QS_GRID], g2[QS_GRID];
        for (int k = 0; k < QS_GRID; ++k) dg[k] = (it + k) % 53 == 0 ? 0.f : qf_test_rng_gauss(&r) * 0.3f;
        for (int k = 0; k < QS_GRID; ++k)
            if ((it + k) % 89 == 0) dg[k] = NAN; /* a NaN error: never the smallest */
        const int k1 = qs_grid_err_scalar(x, w, n, dg, lo, hi, g1);
        const int k2 = qs_grid_err_avx2(x, w, n, dg, lo, hi, g2);
        grid_mismatches += memcmp(g1, g2, sizeof g1) != 0 || k1 != k2;
    }
    CHECK(t, mismatches == 0, "%d of 20000 groups differ", mismatches);
    CHECK(t, grid_mismatches == 0, "qs_grid_err: %d of 20000 groups differ", grid_mismatches);
#else
    qf_test_skip(t, "built without AVX2");
#endif
}

/* A random group of n values (some tiny, some zero weights), and nc
 * candidates (d, mo) around its scale, some d 0, some NaN. */
static void cand_case(rng *r, int it, int n, float *x, float *w, float *d, float *mo, int nc, int *lo, int *hi) {
    for (int i = 0; i < n; ++i) {
        x[i] = qf_test_rng_gauss(r) * (it % 5 == 0 ? 1e-3f : 1.f);
        w[i] = it % 7 == 0 && i % 3 == 0 ? 0.f : qf_test_rng_unif(r);
    }
    const int asym = it % 3 == 0;
    *lo = asym ? 0 : -32;
    *hi = asym ? 15 : 31;
    for (int c = 0; c < nc; ++c) {
        d[c] = (it + c) % 41 == 0 ? 0.f : qf_test_rng_gauss(r) * 0.3f;
        if ((it + c) % 997 == 0) d[c] = NAN;
        mo[c] = asym ? fabsf(qf_test_rng_gauss(r)) : 0.f;
    }
}

/* The candidate kernel equals qs_group_err candidate by candidate, and
 * every fast kernel (candidates, block error, AVX-512 group and grid)
 * equals its scalar reference, bit for bit: group sizes
 * 8..64 (16 = the K-quant sub-block, 32 = Q4_K/Q5_K), 1..QS_CAND candidates. */
static void test_cand_and_avx512_kernels_equal_scalar(qf_test *t) {
    rng r = { 777 };
    float x[64], w[64], d[QS_CAND], mo[QS_CAND], e0[QS_CAND];
#if defined(__AVX2__)
    float e1[QS_CAND];
#endif
    int8_t q0[64];
    int bad_ref = 0, bad_avx2 = 0, bad_avx512 = 0;
    for (int it = 0; it < 20000; ++it) {
        const int n = 8 * (1 + it % 8), nc = 1 + it % QS_CAND;
        int lo, hi;
        cand_case(&r, it, n, x, w, d, mo, nc, &lo, &hi);
        /* the block error in double: y a rounded copy of x */
        float y[64];
        for (int i = 0; i < n; ++i) y[i] = i % 5 == 0 ? x[i] : roundf(x[i] * 8.f) / 8.f;
        const double s0 = qs_wsq_err_scalar(x, y, w, n);
        (void)s0;
#if defined(__AVX2__)
        const double s1 = qs_wsq_err_avx2(x, y, w, n);
        bad_avx2 += memcmp(&s0, &s1, sizeof s0) != 0;
#endif
#if defined(__AVX512F__)
        const double s2 = qs_wsq_err_avx512(x, y, w, n);
        bad_avx512 += memcmp(&s0, &s2, sizeof s0) != 0;
#endif
        qs_cand_err_scalar(x, w, n, d, mo, nc, lo, hi, e0);
        for (int c = 0; c < nc; ++c) {
            const float e = qs_group_err_scalar(x, w, n, d[c], mo[c], lo, hi, q0);
            bad_ref += memcmp(&e, &e0[c], sizeof e) != 0;
        }
#if defined(__AVX2__)
        qs_cand_err_avx2(x, w, n, d, mo, nc, lo, hi, e1);
        bad_avx2 += memcmp(e0, e1, (size_t)nc * sizeof *e0) != 0;
#endif
#if defined(__AVX512F__)
        qs_cand_err_avx512(x, w, n, d, mo, nc, lo, hi, e1);
        int bad = memcmp(e0, e1, (size_t)nc * sizeof *e0) != 0;
        const float a = qs_group_err_scalar(x, w, n, d[0], mo[0], lo, hi, q0);
        int8_t q1[64];
        const float b = qs_group_err_avx512(x, w, n, d[0], mo[0], lo, hi, q1);
        bad |= memcmp(&a, &b, sizeof a) != 0 || memcmp(q0, q1, (size_t)n) != 0;
        if (n <= QS_GRID) {
            float dg[QS_GRID], g0[QS_GRID], g1[QS_GRID];
            for (int k = 0; k < QS_GRID; ++k)
                dg[k] = (it + k) % 53 == 0 ? 0.f : (it + k) % 89 == 0 ? NAN : qf_test_rng_gauss(&r) * 0.3f;
            const int k0 = qs_grid_err_scalar(x, w, n, dg, lo, hi, g0);
            const int k1 = qs_grid_err_avx512(x, w, n, dg, lo, hi, g1);
            bad |= memcmp(g0, g1, sizeof g0) != 0 || k0 != k1;
        }
        bad_avx512 += bad;
#endif
    }
    CHECK(t, bad_ref == 0, "qs_cand_err_scalar != qs_group_err_scalar in %d of 20000 cases", bad_ref);
    CHECK(t, bad_avx2 == 0, "qs_cand_err_avx2 != scalar in %d of 20000 cases", bad_avx2);
    CHECK(t, bad_avx512 == 0, "AVX-512 kernels != scalar in %d of 20000 cases", bad_avx512);
}

/* Degenerate rows: all zero, constant, 1e-30, one huge value. */
static void test_degenerate_rows(qf_test *t) {
    const int64_t nrows = 5, n = 256;
    float *x = calloc(nrows * n, sizeof *x);
    for (int64_t j = 0; j < n; ++j) {
        x[1 * n + j] = 0.25f;
        x[2 * n + j] = (j % 2 ? 1e-30f : -1e-30f);
        x[3 * n + j] = j == 77 ? 6e4f : 0.f;
        x[4 * n + j] = (float)(j % 5) - 2.f;
    }
    for (size_t ti = 0; ti < N_SEARCH_TYPES; ++ti) {
        const uint32_t type = SEARCH_TYPES[ti];
        const size_t bytes = row_bytes(type, n) * nrows;
        uint8_t *q = malloc(bytes), *e = malloc(bytes);
        qf_quantize_rows(type, x, e, nrows, n, NULL);
        REQUIRE(t, qf_quantize_rows_opt(type, x, q, nrows, n, NULL) == (int64_t)bytes, "%s", tname(type));
        cmp_stats st = { 0 };
        compare_rows(type, QF_SEARCH_W_DEFAULT, x, NULL, nrows, n, q, e, &st);
        CHECK(t, st.worse == 0 && st.nonfinite == 0, "%s: %lld worse, %lld non-finite", tname(type),
              (long long)st.worse, (long long)st.nonfinite);
        /* an all-zero row stays exactly zero */
        float y[256];
        qf_dequantize_row_ref(type, q, y, n);
        int nz = 0;
        for (int j = 0; j < n; ++j) nz += y[j] != 0.f;
        CHECK(t, nz == 0, "%s: zero row decodes to %d non-zero values", tname(type), nz);
        free(q);
        free(e);
    }
    free(x);
}

static void test_api_errors(qf_test *t) {
    float x[256] = { 0 };
    uint8_t q[512];
    CHECK(t, qf_quantize_rows_opt(GGML_TYPE_F16, x, q, 1, 256, NULL) == QF_EUNSUPPORTED, "F16");
    CHECK(t, qf_quantize_rows_opt(GGML_TYPE_Q8_K, x, q, 1, 256, NULL) == QF_EUNSUPPORTED, "Q8_K");
    CHECK(t, qf_quantize_rows_opt(GGML_TYPE_Q4_K, x, q, 1, 128, NULL) == QF_EINVAL, "row not a multiple of 256");
    CHECK(t, qf_quantize_rows_opt(GGML_TYPE_Q4_0, x, q, 1, 48, NULL) == QF_EINVAL, "row not a multiple of 32");
    CHECK(t, qf_quantize_rows_opt(GGML_TYPE_Q4_0, NULL, q, 1, 32, NULL) == QF_EINVAL, "NULL src");
    CHECK(t, qf_quantize_rows_opt(GGML_TYPE_Q4_0, x, q, 0, 32, NULL) == 0, "no rows");
    qf_search_opts o;
    qf_search_opts_init(&o);
    o.weights = QF_SEARCH_W_COUNT;
    CHECK(t, qf_quantize_rows_opt_ex(GGML_TYPE_Q4_0, x, q, 1, 32, NULL, &o) == QF_EINVAL, "bad weight mode");
    CHECK(t, qf_quantize_search_supports(GGML_TYPE_Q6_K) && !qf_quantize_search_supports(GGML_TYPE_F32), "supports");
}

/* ------------------------------------------------------------ real weights */

/* Quantize real rows with both paths and check the invariant and a margin:
 * the summed weighted error of the search must be at most max_ratio times
 * ggml's (the measured ratios are in docs/quality.md; the thresholds
 * here keep about half of the measured gain). */
static void check_real(qf_test *t, const char *what, uint32_t type, const float *x, int64_t nrows, int64_t n,
                       const float *qw, double max_ratio) {
    const size_t bytes = row_bytes(type, n) * nrows;
    uint8_t *q = malloc(bytes), *e = malloc(bytes);
    qf_quantize_rows(type, x, e, nrows, n, qw);
    if (qf_quantize_rows_opt(type, x, q, nrows, n, qw) != (int64_t)bytes) {
        CHECK(t, 0, "%s %s: quantizer failed", what, tname(type));
    } else {
        cmp_stats st = { 0 };
        compare_rows(type, QF_SEARCH_W_DEFAULT, x, qw, nrows, n, q, e, &st);
        const double ratio = st.err_search / st.err_exact;
        CHECK(t, st.worse == 0, "%s %s%s: %lld blocks worse", what, tname(type), qw ? " imat" : "",
              (long long)st.worse);
        CHECK(t, ratio <= max_ratio, "%s %s%s: error ratio search/exact %.4f > %.4f", what, tname(type),
              qw ? " imat" : "", ratio, max_ratio);
    }
    free(q);
    free(e);
}

typedef struct margin { uint32_t type; double noimat, imat; } margin;

/* Largest allowed error ratio search/exact per type, without / with the
 * (synthetic, log-normal) imatrix. Measured worst ratios over the tensors
 * below (stories260K blk.0.attn_q, blk.2.ffn_up, token_embd;
 * tinystories-distill-3M layers.1 q_proj, layers.2 down_proj):
 *   Q4_0 0.902 / 0.975   Q4_1 0.799 / 0.914   Q5_0 0.887 / 0.941
 *   Q5_1 0.781 / 0.871   Q8_0 0.892 / 0.736   Q2_K 0.851 / 0.878
 *   Q3_K 0.926 / 0.951   Q4_K 0.960 / 0.882   Q5_K 0.882 / 0.734
 *   Q6_K 0.851 / 0.671   IQ4_NL 0.958 / 0.877
 *   IQ4_XS 0.931 / 0.782 (distill-3M only: 256-blocks)
 * The thresholds keep about half of each gain. */
static const margin MARGINS[] = {
    { GGML_TYPE_Q4_0, 0.95, 0.99 }, { GGML_TYPE_Q4_1, 0.90, 0.96 }, { GGML_TYPE_Q5_0, 0.94, 0.97 },
    { GGML_TYPE_Q5_1, 0.89, 0.94 }, { GGML_TYPE_Q8_0, 0.95, 0.87 }, { GGML_TYPE_IQ4_NL, 0.98, 0.94 },
    /* 32-blocks first: stories260K uses these */
    { GGML_TYPE_Q2_K, 0.93, 0.94 }, { GGML_TYPE_Q3_K, 0.96, 0.975 }, { GGML_TYPE_Q4_K, 0.98, 0.94 },
    { GGML_TYPE_Q5_K, 0.94, 0.87 }, { GGML_TYPE_Q6_K, 0.93, 0.84 },
    { GGML_TYPE_IQ4_XS, 0.97, 0.89 },
};
#define N_LEGACY_MARGINS 6

/* stories260K: 64-long rows, legacy types only (K-quants need 256). */
static void test_real_stories260K(qf_test *t) {
    char path[1024];
    if (!qf_test_data(t, "oracles/llamacpp/stories260K-F32.gguf", path, sizeof path)) return;
    gguf_file f;
    qf_err err = { 0 };
    REQUIRE(t, gguf_open(&f, path, &err) == 0, "%s", err.msg);
    const margin *M = MARGINS;
    rng r = { 99 };
    const char *names[] = { "blk.0.attn_q.weight", "blk.2.ffn_up.weight", "token_embd.weight" };
    for (size_t k = 0; k < sizeof names / sizeof names[0]; ++k) {
        const gguf_tensor_info *ti = gguf_find_tensor(&f, names[k]);
        REQUIRE(t, ti && ti->type == GGML_TYPE_F32, "%s", names[k]);
        const int64_t n = (int64_t)ti->ne[0], nrows = (int64_t)(ti->n_elements / ti->ne[0]);
        float *qw = malloc(n * sizeof *qw);
        qf_test_imatrix(&r, qw, n, 1);
        for (size_t m = 0; m < N_LEGACY_MARGINS; ++m) {
            check_real(t, names[k], M[m].type, (const float *)ti->data, nrows, n, NULL, M[m].noimat);
            check_real(t, names[k], M[m].type, (const float *)ti->data, nrows, n, qw, M[m].imat);
        }
        free(qw);
    }
    gguf_close(&f);
}

/* tinystories-distill-3M (BF16): 256- and 768-long rows, every type. */
static void test_real_tinystories_distill_3M(qf_test *t) {
    char path[1024];
    if (!qf_test_data(t, "models/tinystories-distill-3M/model.safetensors", path, sizeof path)) return;
    st_model m;
    qf_err err = { 0 };
    REQUIRE(t, st_open(&m, path, &err) == 0, "%s", err.msg);
    const margin *M = MARGINS;
    rng r = { 2024 };
    const char *names[] = { "model.layers.1.self_attn.q_proj.weight", "model.layers.2.mlp.down_proj.weight" };
    for (size_t k = 0; k < sizeof names / sizeof names[0]; ++k) {
        const st_tensor *ti = st_find(&m, names[k]);
        REQUIRE(t, ti && ti->dtype == ST_BF16 && ti->n_dims == 2, "%s", names[k]);
        const int64_t nrows = (int64_t)ti->shape[0], n = (int64_t)ti->shape[1];
        float *x = malloc(ti->n_elements * sizeof *x), *qw = malloc(n * sizeof *qw);
        qf_bf16_to_f32_row((const uint16_t *)ti->data, x, ti->n_elements);
        qf_test_imatrix(&r, qw, n, 1);
        for (size_t j = 0; j < sizeof MARGINS / sizeof MARGINS[0]; ++j) {
            check_real(t, names[k], M[j].type, x, nrows, n, NULL, M[j].noimat);
            check_real(t, names[k], M[j].type, x, nrows, n, qw, M[j].imat);
        }
        free(x);
        free(qw);
    }
    st_close(&m);
}

QF_TEST_MAIN(test_never_worse_than_exact_random, test_search_alone_beats_exact_on_gaussian_rows,
             test_threads_and_kernels_give_same_bytes, test_fast_effort, test_group_err_kernel_avx2_equals_scalar,
             test_cand_and_avx512_kernels_equal_scalar,
             test_degenerate_rows, test_api_errors, test_real_stories260K, test_real_tinystories_distill_3M)
