/* gptq_test.c - the GPTQ solver and its block grids (quantize/gptq.h). */
#include <omp.h>
#include <pthread.h>

#include "qf_test.h"
#include "qf_test_blocks.h"
#include "ggml_types.h"
#include "gptq.h"
#include "gptq_grid.h"
#include "gptq_run.h"
#include "gptq_kernels.h"
#include "codecs.h"
#include "codecs.h"
#include "search.h"
#include "calibrate.h"
#include "forward.h"
#include "layerwise.h"
#include "model.h"
#include "text.h"

static const uint32_t TYPES[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
                                 GGML_TYPE_Q8_0, GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K,
                                 GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])
/* The codebook grids (groups of 4 or 8 weights per point). */
static const uint32_t CB_TYPES[] = {GGML_TYPE_IQ3_S, GGML_TYPE_IQ3_XXS, GGML_TYPE_IQ2_S, GGML_TYPE_IQ2_XS,
                                    GGML_TYPE_IQ2_XXS};
#define N_CB_TYPES (sizeof CB_TYPES / sizeof CB_TYPES[0])

#define tname(t) qf_test_type_name(t)
#define row_size(t, n) qf_test_row_bytes(t, n)
#define gauss(seed, n) qf_test_gauss_new(seed, n)
#define dequant(type, q, rows, n) qf_test_dequant_rows(type, q, rows, n)
static int is_kquant(uint32_t t) { return t >= GGML_TYPE_Q2_K && t <= GGML_TYPE_Q6_K; }

/* X [N, n]: correlated inputs x = A z with a random mixing that has a few
 * strong directions, and channel scales that vary (like LLM activations). */
static float *make_inputs(uint64_t seed, int64_t N, int64_t n) {
    qf_test_rng r = {seed};
    float *X = malloc((size_t)(N * n) * sizeof *X), *scale = malloc((size_t)n * sizeof *scale);
    const int64_t k = 8; /* shared factors */
    float *F = malloc((size_t)(k * n) * sizeof *F);
    for (int64_t j = 0; j < n; j++) scale[j] = 0.2f + 2.0f * qf_test_rng_unif(&r);
    for (int64_t i = 0; i < k * n; i++) F[i] = qf_test_rng_gauss(&r);
    for (int64_t t = 0; t < N; t++) {
        float z[8];
        for (int64_t i = 0; i < k; i++) z[i] = qf_test_rng_gauss(&r);
        for (int64_t j = 0; j < n; j++) {
            float v = 0.5f * qf_test_rng_gauss(&r);
            for (int64_t i = 0; i < k; i++) v += z[i] * F[i * n + j];
            X[t * n + j] = v * scale[j];
        }
    }
    free(scale);
    free(F);
    return X;
}

static double *hessian(const float *X, int64_t N, int64_t n) {
    double *H = calloc((size_t)(n * n), sizeof *H);
    for (int64_t t = 0; t < N; t++)
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) H[i * n + j] += (double)X[t * n + i] * X[t * n + j];
    return H;
}

/* H = I: no error is propagated, so GPTQ is the grid's round-to-nearest with
 * the codec's own (ggml exact) scales. For the K-quants ggml itself rounds
 * every weight to the nearest level of the stored scales: same bytes. For
 * Q4_0..Q8_0, IQ4_NL and IQ4_XS ggml rounds with the unrounded 1/d: same
 * scales (IQ4_XS: d and the eight sub-scales), and where a weight differs
 * GPTQ's level is at least as near the weight. */
static void test_identity_is_exact(qf_test *t) {
    const int64_t rows = 8, n = 512;
    double *H = calloc((size_t)(n * n), sizeof *H);
    for (int64_t i = 0; i < n; i++) H[i * n + i] = 1;
    float *W = gauss(7, rows * n);
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const uint32_t type = TYPES[ti];
        const size_t rs = row_size(type, n);
        uint8_t *a = malloc(rows * rs), *b = malloc(rows * rs);
        qf_gptq_opts o;
        qf_gptq_opts_init(&o);
        qf_err err = {0};
        REQUIRE(t, qf_gptq_quantize(type, W, rows, n, H, &o, a, NULL, NULL, &err) == 0, "%s: %s", tname(type), err.msg);
        REQUIRE(t, qf_quantize_rows(type, W, b, rows, n, NULL) == (int64_t)(rows * rs), "%s", tname(type));
        if (is_kquant(type)) {
            CHECK(t, memcmp(a, b, rows * rs) == 0, "%s: bytes differ from ggml", tname(type));
        } else {
            float *ya = dequant(type, a, rows, n), *yb = dequant(type, b, rows, n);
            qf_gptq_grid g;
            qf_gptq_grid_get(type, &g);
            int64_t worse = 0, differ = 0, scale_differ = 0;
            for (int64_t i = 0; i < rows * n; i++) {
                differ += ya[i] != yb[i];
                worse += fabsf(W[i] - ya[i]) > fabsf(W[i] - yb[i]);
            }
            const size_t scale_bytes = type == GGML_TYPE_IQ4_XS ? 8 : 2; /* the scales lead every block */
            for (int64_t blk = 0; blk < rows * n / g.block; blk++)
                scale_differ += memcmp(a + blk * g.block_bytes, b + blk * g.block_bytes, scale_bytes) != 0;
            CHECK(t, worse == 0 && scale_differ == 0, "%s: %lld weights farther, %lld scales differ", tname(type),
                  (long long)worse, (long long)scale_differ);
            CHECK(t, differ * 100 < rows * n, "%s: %lld of %lld weights differ from ggml", tname(type), (long long)differ,
                  (long long)(rows * n));
            free(ya);
            free(yb);
        }
        free(a);
        free(b);
    }
    free(H);
    free(W);
}

/* A correlated-input case: inputs X [N, n], H = X^T X, the imatrix diag(H) / N
 * and gaussian weights W [rows, n]. */
typedef struct corr_case { float *X; double *H; float *imat; float *W; } corr_case;

static corr_case corr_case_make(uint64_t x_seed, uint64_t w_seed, int64_t N, int64_t n, int64_t rows) {
    corr_case c;
    c.X = make_inputs(x_seed, N, n);
    c.H = hessian(c.X, N, n);
    c.imat = malloc((size_t)n * sizeof *c.imat);
    for (int64_t j = 0; j < n; j++) c.imat[j] = (float)(c.H[j * n + j] / (double)N);
    c.W = gauss(w_seed, rows * n);
    return c;
}

static void corr_case_free(corr_case *c) { free(c->X); free(c->H); free(c->imat); free(c->W); }

/* On correlated inputs GPTQ's output error is below round-to-nearest
 * (ggml exact) and below the search quantizer with the imatrix (diag H),
 * for every type and several seeds; the written blocks dequantize to exactly
 * the weights GPTQ accounted for. */
static void test_beats_rtn_and_search(qf_test *t) {
    const int64_t rows = 32, n = 256, N = 1024;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        corr_case c = corr_case_make(seed * 977, seed * 31 + 5, N, n, rows);
        float *imat = c.imat, *W = c.W;
        double *H = c.H;
        for (size_t ti = 0; ti < N_TYPES; ti++) {
            const uint32_t type = TYPES[ti];
            const size_t rs = row_size(type, n);
            uint8_t *q = malloc(rows * rs), *qr = malloc(rows * rs), *qs = malloc(rows * rs);
            float *acc = malloc((size_t)(rows * n) * sizeof *acc);
            for (int act = 0; act <= 1; act++) {
                qf_gptq_opts o;
                qf_gptq_opts_init(&o);
                o.act_order = act;
                o.fit = QF_GPTQ_FIT_SEARCH;
                o.fit_weights = imat;
                qf_err err = {0};
                REQUIRE(t, qf_gptq_quantize(type, W, rows, n, H, &o, q, acc, NULL, &err) == 0, "%s: %s", tname(type),
                        err.msg);
                float *yq = dequant(type, q, rows, n);
                CHECK(t, memcmp(yq, acc, (size_t)(rows * n) * sizeof *acc) == 0,
                      "%s act %d seed %llu: dequantized blocks differ from the accounted weights", tname(type), act,
                      (unsigned long long)seed);
                qf_quantize_rows(type, W, qr, rows, n, NULL);
                int64_t ns = qf_quantize_search_supports(type) ? qf_quantize_rows_opt(type, W, qs, rows, n, imat)
                                                               : qf_quantize_rows(type, W, qs, rows, n, imat);
                REQUIRE(t, ns == (int64_t)(rows * rs), "%s", tname(type));
                float *yr = dequant(type, qr, rows, n), *ys = dequant(type, qs, rows, n);
                const double eg = qf_gptq_output_error(W, yq, rows, n, H, 2);
                const double er = qf_gptq_output_error(W, yr, rows, n, H, 2);
                const double es = qf_gptq_output_error(W, ys, rows, n, H, 2);
                CHECK(t, eg < er && eg < es, "%s act %d seed %llu: gptq %.4g rtn %.4g search %.4g", tname(type), act,
                      (unsigned long long)seed, eg, er, es);
                if (getenv("QF_GPTQ_VERBOSE"))
                    fprintf(stderr, "%-7s act %d seed %llu: gptq/rtn %.3f gptq/search %.3f\n", tname(type), act,
                            (unsigned long long)seed, eg / er, eg / es);
                free(yq);
                free(yr);
                free(ys);
            }
            free(q);
            free(qr);
            free(qs);
            free(acc);
        }
        corr_case_free(&c);
    }
}

/* Codebook grids: random points and sign bits (even parity where the type
 * requires it) packed into a fitted block dequantize to +-levels of their
 * magnitudes; and the unit choice's values are the dequantizer's. */
static void test_codebook_pack(qf_test *t) {
    qf_test_rng r = {4321};
    for (size_t ti = 0; ti < N_CB_TYPES; ti++) {
        qf_gptq_grid g;
        REQUIRE(t, qf_gptq_grid_get(CB_TYPES[ti], &g) == 0 && g.dim, "grid");
        float *x = gauss(ti + 11, g.block), ones[256], lev[8 * 16], y[256], q[256], c[8];
        for (int i = 0; i < 256; i++) ones[i] = 1;
        uint8_t blk[256], neg[256];
        uint16_t idx[64];
        REQUIRE(t, qf_gptq_grid_fit(&g, x, ones, QF_GPTQ_FIT_EXACT, blk) == 0, "fit");
        qf_gptq_grid_levels(&g, blk, lev);
        for (int k = 0; k < g.block / g.dim; k++) idx[k] = (uint16_t)(qf_test_rng_u64(&r) % (uint64_t)g.n_points);
        for (int i = 0; i < g.block; i++) neg[i] = (uint8_t)(qf_test_rng_u64(&r) & 1);
        if (g.parity)
            for (int m = 0; m < g.block / 8; m++) {
                int odd = 0;
                for (int j = 0; j < 7; j++) odd ^= neg[8 * m + j];
                neg[8 * m + 7] = (uint8_t)odd;
            }
        qf_gptq_grid_pack_points(&g, idx, neg, blk);
        qf_dequantize_row_ref(g.type, blk, y, g.block);
        int bad = 0;
        for (int i = 0; i < g.block; i++) {
            const int p = idx[i / g.dim], j = i % g.dim;
            const int b = g.dim == 8 ? (int)((((const uint64_t *)g.points)[p] >> 8 * j) & 255)
                                     : (int)((((const uint32_t *)g.points)[p] >> 8 * j) & 255);
            const float v = lev[(i / g.sub) * g.nlev + g.lvl_of[b]];
            bad += y[i] != (neg[i] ? -v : v);
        }
        CHECK(t, bad == 0, "%s: %d of %d weights differ from +-levels", tname(g.type), bad, g.block);
        /* the unit choice on x: its values are what the packed block dequantizes to */
        for (int i = 0; i < 8; i++) c[i] = 0.5f + (float)i;
        for (int m = 0; m < g.block / 8; m++)
            qf_gptq_grid_choose_unit(&g, lev + (8 * m / g.sub) * g.nlev, x + 8 * m, c, q + 8 * m, neg + 8 * m,
                                     idx + 8 * m / g.dim);
        qf_gptq_grid_pack_points(&g, idx, neg, blk);
        qf_dequantize_row_ref(g.type, blk, y, g.block);
        CHECK(t, memcmp(y, q, (size_t)g.block * sizeof *q) == 0, "%s: chosen values differ from the dequantized block",
              tname(g.type));
        free(x);
    }
}

/* Codebook grids, H = I: no error is propagated, the scales are ggml's
 * (same fit on the same weights), and each unit takes the codebook point
 * and signs nearest to its weights, so every block's squared error is at
 * most that of ggml's own choice (same weights ones for both). */
static void test_codebook_identity(qf_test *t) {
    const int64_t rows = 8, n = 512;
    double *H = calloc((size_t)(n * n), sizeof *H);
    for (int64_t i = 0; i < n; i++) H[i * n + i] = 1;
    float *W = gauss(9, rows * n), *ones = malloc((size_t)n * sizeof *ones);
    for (int64_t i = 0; i < n; i++) ones[i] = 1;
    for (size_t ti = 0; ti < N_CB_TYPES; ti++) {
        const uint32_t type = CB_TYPES[ti];
        const size_t rs = row_size(type, n);
        uint8_t *a = malloc(rows * rs), *b = malloc(rows * rs);
        qf_gptq_opts o;
        qf_gptq_opts_init(&o);
        o.fit_weights = ones;
        qf_err err = {0};
        REQUIRE(t, qf_gptq_quantize(type, W, rows, n, H, &o, a, NULL, NULL, &err) == 0, "%s: %s", tname(type), err.msg);
        REQUIRE(t, qf_quantize_rows(type, W, b, rows, n, ones) == (int64_t)(rows * rs), "%s", tname(type));
        float *ya = dequant(type, a, rows, n), *yb = dequant(type, b, rows, n);
        int64_t worse = 0, better = 0, d_differ = 0;
        for (int64_t blk = 0; blk < rows * n / 256; blk++) {
            double ea = 0, eb = 0;
            for (int64_t i = blk * 256; i < (blk + 1) * 256; i++) {
                ea += ((double)W[i] - ya[i]) * ((double)W[i] - ya[i]);
                eb += ((double)W[i] - yb[i]) * ((double)W[i] - yb[i]);
            }
            worse += ea > eb * (1 + 1e-5);
            better += ea < eb;
            const size_t bb = rs / (size_t)(n / 256);
            d_differ += memcmp(a + blk * bb, b + blk * bb, 2) != 0;
        }
        CHECK(t, worse == 0 && d_differ == 0, "%s: %lld blocks worse than ggml's, %lld scales differ", tname(type),
              (long long)worse, (long long)d_differ);
        CHECK(t, better > 0, "%s: no block better than ggml's", tname(type));
        free(ya); free(yb); free(a); free(b);
    }
    free(H); free(W); free(ones);
}

/* Codebook grids on correlated inputs: GPTQ's output error is below ggml's
 * exact quantizer with the imatrix (diag H), plain and act-order; the
 * written blocks dequantize to exactly the accounted weights; 1 and 2
 * threads give the same bytes. */
static void test_codebook_beats_exact(qf_test *t) {
    const int64_t rows = 32, n = 512, N = 1024;
    for (uint64_t seed = 1; seed <= 2; seed++) {
        corr_case c = corr_case_make(seed * 313, seed * 17 + 3, N, n, rows);
        float *imat = c.imat, *W = c.W;
        double *H = c.H;
        for (size_t ti = 0; ti < N_CB_TYPES; ti++) {
            const uint32_t type = CB_TYPES[ti];
            const size_t rs = row_size(type, n);
            uint8_t *q = malloc(rows * rs), *q2 = malloc(rows * rs), *qe = malloc(rows * rs);
            float *acc = malloc((size_t)(rows * n) * sizeof *acc);
            REQUIRE(t, qf_quantize_rows(type, W, qe, rows, n, imat) == (int64_t)(rows * rs), "%s", tname(type));
            float *ye = dequant(type, qe, rows, n);
            const double ee = qf_gptq_output_error(W, ye, rows, n, H, 2);
            for (int act = 0; act <= 1; act++) {
                qf_gptq_opts o;
                qf_gptq_opts_init(&o);
                o.act_order = act;
                o.fit = QF_GPTQ_FIT_SEARCH;
                o.fit_weights = imat;
                qf_err err = {0};
                REQUIRE(t, qf_gptq_quantize(type, W, rows, n, H, &o, q, acc, NULL, &err) == 0, "%s: %s", tname(type),
                        err.msg);
                float *yq = dequant(type, q, rows, n);
                CHECK(t, memcmp(yq, acc, (size_t)(rows * n) * sizeof *acc) == 0,
                      "%s act %d seed %llu: dequantized blocks differ from the accounted weights", tname(type), act,
                      (unsigned long long)seed);
                const double eg = qf_gptq_output_error(W, yq, rows, n, H, 2);
                CHECK(t, eg < ee, "%s act %d seed %llu: gptq %.4g exact %.4g", tname(type), act,
                      (unsigned long long)seed, eg, ee);
                if (getenv("QF_GPTQ_VERBOSE"))
                    fprintf(stderr, "%-7s act %d seed %llu: gptq/exact %.3f\n", tname(type), act,
                            (unsigned long long)seed, eg / ee);
                o.n_threads = 2;
                REQUIRE(t, qf_gptq_quantize(type, W, rows, n, H, &o, q2, NULL, NULL, &err) == 0, "%s", err.msg);
                CHECK(t, memcmp(q, q2, rows * rs) == 0, "%s act %d: 1 vs 2 threads differ", tname(type), act);
                free(yq);
            }
            free(q); free(q2); free(qe); free(acc); free(ye);
        }
        corr_case_free(&c);
    }
}

/* Zero input columns (dead) and duplicated columns make H singular: the
 * damping handles them, the output is finite and dequantizes to the
 * accounted weights. */
static void test_singular_hessian(qf_test *t) {
    const int64_t rows = 16, n = 256, N = 512;
    float *X = make_inputs(99, N, n);
    for (int64_t tk = 0; tk < N; tk++) {
        for (int64_t j = 0; j < 32; j++) X[tk * n + j] = 0;               /* dead */
        for (int64_t j = 64; j < 96; j++) X[tk * n + j] = X[tk * n + 100]; /* duplicates */
    }
    double *H = hessian(X, N, n);
    float *W = gauss(3, rows * n);
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const uint32_t type = TYPES[ti];
        const size_t rs = row_size(type, n);
        uint8_t *q = malloc(rows * rs);
        float *acc = malloc((size_t)(rows * n) * sizeof *acc);
        qf_gptq_opts o;
        qf_gptq_opts_init(&o);
        o.act_order = (int)(ti & 1);
        qf_gptq_info info;
        qf_err err = {0};
        REQUIRE(t, qf_gptq_quantize(type, W, rows, n, H, &o, q, acc, &info, &err) == 0, "%s: %s", tname(type), err.msg);
        CHECK(t, info.n_dead == 32, "%s: %lld dead", tname(type), (long long)info.n_dead);
        float *y = dequant(type, q, rows, n);
        int finite = 1;
        for (int64_t i = 0; i < rows * n; i++) finite &= isfinite(y[i]) != 0;
        CHECK(t, finite, "%s: non-finite output", tname(type));
        CHECK(t, memcmp(y, acc, (size_t)(rows * n) * sizeof *y) == 0, "%s: output differs from accounted", tname(type));
        free(y);
        free(q);
        free(acc);
    }
    free(X);
    free(H);
    free(W);
}

/* An indefinite H (eigenvalue -1.5 against mean diagonal 1) needs the damping
 * raised 10x three times (0.01, 0.1, 1 fail; 10 works): reported in info;
 * with fewer retries allowed, or a NaN in H, a clear error and no output. */
static void test_retry_and_failure(qf_test *t) {
    const int64_t n = 32, rows = 2;
    double *H = calloc((size_t)(n * n), sizeof *H);
    for (int64_t i = 0; i < n; i++) H[i * n + i] = 1;
    H[0 * n + 1] = H[1 * n + 0] = 2.5; /* eigenvalues 3.5 and -1.5 */
    float *W = gauss(11, rows * n);
    uint8_t q[2 * sizeof(block_q8_0)];
    float acc[64];
    qf_gptq_opts o;
    qf_gptq_opts_init(&o);
    qf_gptq_info info;
    qf_err err = {0};
    CHECK(t, qf_gptq_quantize(GGML_TYPE_Q8_0, W, rows, n, H, &o, q, acc, &info, &err) == 0, "%s", err.msg);
    CHECK(t, info.retries == 3 && fabs(info.damp - 10.0) < 1e-9, "retries %d damp %g", info.retries, info.damp);
    int finite = 1;
    for (int i = 0; i < 64; i++) finite &= isfinite(acc[i]) != 0;
    CHECK(t, finite, "non-finite");
    o.max_retries = 2;
    memset(&err, 0, sizeof err);
    CHECK(t, qf_gptq_quantize(GGML_TYPE_Q8_0, W, rows, n, H, &o, q, acc, &info, &err) == QF_ERANGE, "rc");
    CHECK(t, strstr(err.msg, "singular") != NULL, "message: %s", err.msg);
    H[5 * n + 5] = NAN;
    o.max_retries = 3;
    memset(&err, 0, sizeof err);
    CHECK(t, qf_gptq_quantize(GGML_TYPE_Q8_0, W, rows, n, H, &o, q, acc, &info, &err) == QF_ERANGE, "nan H accepted");
    memset(&err, 0, sizeof err);
    CHECK(t, qf_gptq_quantize(GGML_TYPE_Q8_0, W, rows, 33, H, &o, q, acc, &info, &err) == QF_EINVAL, "bad width");
    CHECK(t, qf_gptq_quantize(GGML_TYPE_F16, W, rows, n, H, &o, q, acc, &info, &err) == QF_EUNSUPPORTED, "F16");
    free(H);
    free(W);
}

/* Bytes identical with 1 and 2 threads (act-order on, so the permutation
 * and the block fits are exercised). */
static void test_threads(qf_test *t) {
    const int64_t rows = 37, n = 512, N = 600;
    float *X = make_inputs(5, N, n);
    double *H = hessian(X, N, n);
    float *W = gauss(17, rows * n);
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const uint32_t type = TYPES[ti];
        const size_t rs = row_size(type, n);
        uint8_t *a = malloc(rows * rs), *b = malloc(rows * rs);
        qf_gptq_opts o;
        qf_gptq_opts_init(&o);
        o.act_order = 1;
        o.fit = QF_GPTQ_FIT_SEARCH;
        qf_err err = {0};
        o.n_threads = 1;
        REQUIRE(t, qf_gptq_quantize(type, W, rows, n, H, &o, a, NULL, NULL, &err) == 0, "%s", err.msg);
        o.n_threads = 2;
        REQUIRE(t, qf_gptq_quantize(type, W, rows, n, H, &o, b, NULL, NULL, &err) == 0, "%s", err.msg);
        CHECK(t, memcmp(a, b, rows * rs) == 0, "%s: 1 vs 2 threads differ", tname(type));
        free(a);
        free(b);
    }
    free(X);
    free(H);
    free(W);
}

/* Every type's packing: random indices packed into a fitted block
 * dequantize to the level tables' values. */
static void test_grid_pack(qf_test *t) {
    qf_test_rng r = {1234};
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        qf_gptq_grid g;
        REQUIRE(t, qf_gptq_grid_get(TYPES[ti], &g) == 0, "grid");
        float *x = gauss(ti + 1, g.block);
        uint8_t blk[256], u[256];
        float lev[16 * 255], y[256];
        REQUIRE(t, qf_gptq_grid_fit(&g, x, NULL, QF_GPTQ_FIT_EXACT, blk) == 0, "fit");
        qf_gptq_grid_levels(&g, blk, lev);
        for (int i = 0; i < g.block; i++) u[i] = (uint8_t)(qf_test_rng_u64(&r) % (uint64_t)g.nlev);
        qf_gptq_grid_pack(&g, u, blk);
        qf_dequantize_row_ref(g.type, blk, y, g.block);
        int bad = 0;
        for (int i = 0; i < g.block; i++) bad += y[i] != lev[(i / g.sub) * g.nlev + u[i]];
        CHECK(t, bad == 0, "%s: %d elements", tname(g.type), bad);
        free(x);
    }
}

/* The branch-free nearest level equals the bisection on the level tables of
 * blocks fitted to random inputs of every type, at each level, each
 * midpoint and the floats next to them, beyond both ends and at random
 * points; and on a table of equal levels (a zero scale). */
static void test_grid_nearest_reference(qf_test *t) {
    qf_test_rng r = {77};
    int bad = 0, n_checked = 0;
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        qf_gptq_grid g;
        REQUIRE(t, qf_gptq_grid_get(TYPES[ti], &g) == 0, "grid");
        for (int seed = 0; seed < 8; seed++) {
            float *x = gauss(300 + 11 * ti + seed, g.block);
            if (seed % 2) for (int i = 0; i < g.block; i++) x[i] = -fabsf(x[i]) * 0.01f; /* negative-only blocks */
            uint8_t blk[256];
            float lev[16 * 255];
            REQUIRE(t, qf_gptq_grid_fit(&g, x, NULL, QF_GPTQ_FIT_SEARCH, blk) == 0, "fit");
            qf_gptq_grid_levels(&g, blk, lev);
            for (int sb = 0; sb < g.block / g.sub; sb++) {
                const float *L = lev + sb * g.nlev;
                for (int i = 0; i < g.nlev; i++) {
                    const float m = i + 1 < g.nlev ? 0.5f * (L[i] + L[i + 1]) : L[i] + 1.0f;
                    const float v[7] = {L[i], nextafterf(L[i], -INFINITY), nextafterf(L[i], INFINITY), m,
                                        nextafterf(m, -INFINITY), nextafterf(m, INFINITY),
                                        (float)(qf_test_rng_gauss(&r) * 0.05)};
                    for (int k = 0; k < 7; k++, n_checked++)
                        bad += qf_gptq_grid_nearest(L, g.nlev, v[k]) != qf_gptq_grid_nearest_ref(L, g.nlev, v[k]);
                }
            }
            free(x);
        }
    }
    const float flat[16] = {0};
    for (int k = -2; k <= 2; k++, n_checked++) bad += qf_gptq_grid_nearest(flat, 16, (float)k) != qf_gptq_grid_nearest_ref(flat, 16, (float)k);
    CHECK(t, bad == 0, "%d of %d lookups differ from the bisection", bad, n_checked);
}

/* The triangle-only output error equals the full-H reference to rounding
 * (relative 1e-12) over tile and row-pass boundaries, with Q and without,
 * and gives the same value for 1 and 2 threads. */
static void test_output_error_reference(qf_test *t) {
    const int64_t shapes[][2] = {{1, 32}, {70, 96}, {130, 600}, {5, 513}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int64_t rows = shapes[si][0], n = shapes[si][1];
        float *X = make_inputs(40 + si, 2 * n, n);
        double *H = hessian(X, 2 * n, n);
        float *W = gauss(50 + si, rows * n), *Q = gauss(60 + si, rows * n);
        for (int64_t i = 0; i < rows * n; i++) Q[i] = W[i] + 0.1f * Q[i];
        for (int withq = 0; withq < 2; withq++) {
            const float *q = withq ? Q : NULL;
            const double ref = qf_gptq_output_error_ref(W, q, rows, n, H);
            const double a = qf_gptq_output_error(W, q, rows, n, H, 1), b = qf_gptq_output_error(W, q, rows, n, H, 2);
            CHECK(t, fabs(a - ref) <= 1e-12 * fabs(ref), "%lld x %lld q=%d: %.17g vs reference %.17g", (long long)rows,
                  (long long)n, withq, a, ref);
            CHECK(t, a == b, "%lld x %lld: 1 vs 2 threads %.17g %.17g", (long long)rows, (long long)n, a, b);
        }
        free(X); free(H); free(W); free(Q);
    }
}

/* The level tables read several indices per dequantization equal the
 * reference's one index per dequantization, bit for bit, on blocks fitted
 * to many random (also scaled, shifted) inputs of every type. */
static void test_grid_levels_reference(qf_test *t) {
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        qf_gptq_grid g;
        REQUIRE(t, qf_gptq_grid_get(TYPES[ti], &g) == 0, "grid");
        int bad = 0;
        for (int seed = 0; seed < 20; seed++) {
            float *x = gauss(100 + 7 * ti + seed, g.block);
            for (int i = 0; i < g.block; i++) x[i] = x[i] * (seed % 3 ? 1e-3f : 5.0f) + (seed % 2 ? 0.f : 0.5f);
            uint8_t blk[256];
            float a[16 * 255], b[16 * 255];
            REQUIRE(t, qf_gptq_grid_fit(&g, x, NULL, seed % 2 ? QF_GPTQ_FIT_SEARCH : QF_GPTQ_FIT_EXACT, blk) == 0, "fit");
            qf_gptq_grid_levels(&g, blk, a);
            qf_gptq_grid_levels_ref(&g, blk, b);
            bad += memcmp(a, b, (size_t)(g.block / g.sub * g.nlev) * sizeof *a) != 0;
            free(x);
        }
        CHECK(t, bad == 0, "%s: %d of 20 blocks' level tables differ from the reference", tname(g.type), bad);
    }
}

/* The layer-sequential pipeline with a function that leaves the weights as
 * they are sees exactly what qforge-calibrate's Hessian accumulator sees
 * (same chunks, F32 activations and KV cache): every group's H equals the
 * site's, bit for bit, in forward order (q,k,v) -> o -> (gate,up) -> down
 * of every block, then output; with the block's activations kept between
 * its stages or recomputed (fn_rewrites_producers). */
typedef struct lw_check {
    qf_test *t;
    const qf_calib *cal;
    const qf_calib_acc *acc;
    int next_site;
    int bad;
} lw_check;

static int lw_compare(void *user, const qf_lw_group *g, qf_err *err) {
    lw_check *c = user;
    const qf_calib_site *site = &c->cal->sites[c->next_site];
    const qf_weight *w0 = c->cal->targets[site->targets[0]].w;
    if (w0->n_out > 0 && w0 == &c->cal->m->layers[site->layer >= 0 ? site->layer : 0].ffn_gate_inp) {
        site = &c->cal->sites[++c->next_site]; /* MoE router: no group (not quantized) */
        w0 = c->cal->targets[site->targets[0]].w;
    }
    /* an expert group is the site of that expert's views */
    if (g->expert >= 0 && (w0->expert != g->expert || w0 != g->w[0])) {
        c->bad++;
        return 0;
    }
    if (site->layer != g->layer || site->kind != g->kind || site->n_in != g->n_in) {
        c->bad++;
        return 0;
    }
    double *H = malloc((size_t)(g->n_in * g->n_in) * sizeof *H);
    int64_t tokens = 0;
    if (qf_calib_hessian_get(c->acc, c->next_site, H, &tokens, err) < 0) return err->code;
    if (tokens != g->n_tokens || memcmp(H, g->H, (size_t)(g->n_in * g->n_in) * sizeof *H) != 0) c->bad++;
    free(H);
    c->next_site++;
    return 0;
}

/* The model at mp, the first 20000 bytes of the text at tp encoded, and
 * qforge-calibrate's Hessians of every site over 3 chunks of 64 (F32
 * activations), with the layerwise parameters of the same run in lp. */
typedef struct {
    qf_model m;
    qf_text tx;
    char *text;
    int32_t *ids;
    int64_t n_ids;
    qf_calib cal;
    qf_calib_acc *acc;
    qf_lw_params lp;
    int have_model, have_tx, have_cal;
} calib_fixture;

static int calib_fixture_open(calib_fixture *f, const char *mp, const char *tp, qf_err *err) {
    memset(f, 0, sizeof *f);
    size_t len;
    if (qf_model_load(&f->m, mp, err) != 0) return -1;
    f->have_model = 1;
    if (qf_text_init_model(&f->tx, &f->m, err) != 0) return -1;
    f->have_tx = 1;
    if (qf_read_text_any(tp, &f->text, &len, err) != 0) return -1;
    f->text[len < 20000 ? len : 20000] = 0;
    if (qf_text_encode(&f->tx, f->text, 1, &f->ids, &f->n_ids, err) != 0) return -1;
    qf_calib_options co = {0};
    co.process_output = 1;
    co.min_tokens = 1;
    if (qf_calib_init(&f->cal, &f->m, &co, err) != 0) return -1;
    f->have_cal = 1;
    if (qf_calib_hessian_new(&f->cal, 0, (int)f->m.hp.n_layer, &f->acc, err) != 0 || qf_calib_add(&f->cal, f->acc, err) != 0)
        return -1;
    qf_calib_params cp = {0};
    cp.n_ctx = 64;
    cp.max_chunks = 3;
    cp.act_f32 = 1;
    qf_text_bos(&f->tx, &cp.add_bos, &cp.bos_id);
    qf_calib_stats cst;
    if (qf_calib_run(&f->cal, f->ids, f->n_ids, &cp, &cst, err) != 0) return -1;
    f->lp.n_ctx = 64;
    f->lp.max_chunks = 3;
    f->lp.add_bos = cp.add_bos;
    f->lp.bos_id = cp.bos_id;
    return 0;
}

static void calib_fixture_free(calib_fixture *f) {
    if (f->have_cal) qf_calib_free(&f->cal);
    free(f->ids);
    free(f->text);
    if (f->have_tx) qf_text_free(&f->tx);
    if (f->have_model) qf_model_free(&f->m);
}

static void test_layerwise_matches_calibrate(qf_test *t) {
    char mp[4096], tp[4096];
    if (!qf_test_data(t, "models/stories260K", mp, sizeof mp) ||
        !qf_test_data(t, "corpus/tinystories-gen/calib.txt", tp, sizeof tp))
        return;
    calib_fixture f;
    qf_err err = {0};
    const int rc = calib_fixture_open(&f, mp, tp, &err);
    if (rc != 0) calib_fixture_free(&f);
    REQUIRE(t, rc == 0, "%s", err.msg);
    qf_lw_params lp = f.lp;
    lp.mem_budget = 1; /* the hidden states go to the temp file: that path too */
    lp.n_threads = 2;
    qf_lw_stats st;
    for (int re = 0; re < 2; re++) { /* kept activations, then recomputed ones */
        lp.fn_rewrites_producers = re;
        lw_check c = {t, &f.cal, f.acc, 0, 0};
        CHECK(t, qf_layerwise_run(&f.m, f.ids, f.n_ids, &lp, lw_compare, &c, &st, &err) == 0, "%s", err.msg);
        CHECK(t, c.bad == 0 && c.next_site == f.cal.n_sites, "rewrites %d: %d of %d sites differ (%d visited)", re,
              c.bad, f.cal.n_sites, c.next_site);
        CHECK(t, st.spilled == 1 && st.n_chunks == 3, "spilled %d chunks %lld", st.spilled, (long long)st.n_chunks);
    }
    lw_check c = {t, &f.cal, f.acc, 0, 0};
    /* fewer tokens than one chunk: a clear error */
    memset(&err, 0, sizeof err);
    CHECK(t, qf_layerwise_run(&f.m, f.ids, 10, &lp, lw_compare, &c, &st, &err) == QF_EINVAL &&
                 strstr(err.msg, "fewer than one chunk"), "%s", err.msg);
    calib_fixture_free(&f);
}

/* Mixture of experts: each expert's groups get the H of exactly the tokens
 * qforge-calibrate's per-expert sites see (the routed ones), bit for bit,
 * router site skipped; an expert group names its own views. */
static void test_layerwise_moe_matches_calibrate(qf_test *t) {
    char mp[4096], tp[4096];
    if (!qf_test_data(t, "oracles/llamacpp/archs/mixtral/ref-f32.gguf", mp, sizeof mp) ||
        !qf_test_data(t, "corpus/tinystories-gen/calib.txt", tp, sizeof tp))
        return;
    calib_fixture f;
    qf_err err = {0};
    const int rc = calib_fixture_open(&f, mp, tp, &err);
    if (rc != 0) calib_fixture_free(&f);
    REQUIRE(t, rc == 0, "%s", err.msg);
    qf_lw_params lp = f.lp;
    lp.n_threads = 2;
    qf_lw_stats st;
    for (int re = 0; re < 2; re++) { /* kept attention output, then recomputed */
        lp.fn_rewrites_producers = re;
        lw_check c = {t, &f.cal, f.acc, 0, 0};
        CHECK(t, qf_layerwise_run(&f.m, f.ids, f.n_ids, &lp, lw_compare, &c, &st, &err) == 0, "%s", err.msg);
        CHECK(t, c.bad == 0 && c.next_site == f.cal.n_sites, "rewrites %d: %d of %d sites differ (%d visited)", re,
              c.bad, f.cal.n_sites, c.next_site);
    }
    calib_fixture_free(&f);
}

/* The vector GEMM kernels equal the scalar reference bit for bit on shapes
 * that exercise the register tiles (full, 4, 2 and 1 rows), the column
 * leftovers, the packed panels of far-apart B rows and the K chunks. */
static void test_kernels_match_reference(qf_test *t) {
    static const int64_t shapes[][3] = {{1, 1, 1}, {5, 37, 3}, {16, 128, 128}, {13, 200, 300}, {4, 64, 256},
                                        {7, 300, 513}, {64, 96, 64}, {8, 70, 33}, {15, 260, 300}, {64, 160, 600}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int64_t M = shapes[si][0], N = shapes[si][1], K = shapes[si][2];
        const int64_t lda = K + 3, ldb = N + 5, ldc = N + 1;
        float *A = gauss(100 + si, M * lda), *B = gauss(200 + si, K * ldb), *C = gauss(300 + si, M * ldc);
        float *C2 = malloc((size_t)(M * ldc) * sizeof *C2);
        memcpy(C2, C, (size_t)(M * ldc) * sizeof *C2);
        qf_gemm_sub_f32(C, ldc, A, lda, B, ldb, M, N, K);
        qf_gemm_sub_f32_ref(C2, ldc, A, lda, B, ldb, M, N, K);
        CHECK(t, memcmp(C, C2, (size_t)(M * ldc) * sizeof *C) == 0, "f32 %lldx%lldx%lld differs", (long long)M,
              (long long)N, (long long)K);
        double *Ad = malloc((size_t)(M * lda) * sizeof *Ad), *Bd = malloc((size_t)(K * ldb) * sizeof *Bd),
               *Cd = malloc((size_t)(M * ldc) * sizeof *Cd), *Cd2 = malloc((size_t)(M * ldc) * sizeof *Cd2);
        for (int64_t i = 0; i < M * lda; i++) Ad[i] = (double)A[i] / 3;
        for (int64_t i = 0; i < K * ldb; i++) Bd[i] = (double)B[i] / 7;
        for (int64_t i = 0; i < M * ldc; i++) Cd[i] = Cd2[i] = (double)C2[i];
        qf_gemm_sub_f64(Cd, ldc, Ad, lda, Bd, ldb, M, N, K);
        qf_gemm_sub_f64_ref(Cd2, ldc, Ad, lda, Bd, ldb, M, N, K);
        CHECK(t, memcmp(Cd, Cd2, (size_t)(M * ldc) * sizeof *Cd) == 0, "f64 %lldx%lldx%lld differs", (long long)M,
              (long long)N, (long long)K);
        free(A); free(B); free(C); free(C2); free(Ad); free(Bd); free(Cd); free(Cd2);
    }
}

/* The blocked, threaded factorisation and sweep give the reference's bytes:
 * the factor U bit for bit (sizes that are not a multiple of the panel,
 * dead columns, act-order), and every type's blocks. */
static void test_fast_equals_reference(qf_test *t) {
    static const int64_t sizes[] = {333, 224, 768};
    for (size_t si = 0; si < 3; si++) {
        const int64_t n = sizes[si], N = n + 64, rows = 21;
        float *X = make_inputs(40 + si, N, n);
        for (int64_t tk = 0; tk < N; tk++) X[tk * n + 5] = 0; /* a dead input */
        double *H = hessian(X, N, n);
        float *U1 = malloc((size_t)(n * n) * sizeof *U1), *U2 = malloc((size_t)(n * n) * sizeof *U2);
        qf_gptq_opts o;
        qf_gptq_opts_init(&o);
        qf_err err = {0};
        o.reference = 1;
        REQUIRE(t, qf_gptq_factor(H, n, NULL, &o, U1, NULL, &err) == 0, "%s", err.msg);
        o.reference = 0;
        o.n_threads = 3;
        REQUIRE(t, qf_gptq_factor(H, n, NULL, &o, U2, NULL, &err) == 0, "%s", err.msg);
        CHECK(t, memcmp(U1, U2, (size_t)(n * n) * sizeof *U1) == 0, "n=%lld: blocked factor differs", (long long)n);
        /* U^T U = (H + damp)^-1: check one column of (H + damp) U^T U = I */
        double mean = 0;
        for (int64_t j = 0; j < n; j++) mean += H[j * n + j] > 0 ? H[j * n + j] : 1;
        mean /= (double)n;
        double worst = 0;
        for (int64_t i = 0; i < n; i++) {
            const int64_t c = n / 2;
            double s = 0;
            for (int64_t k = 0; k < n; k++) {
                double hk = k == i ? (H[i * n + i] > 0 ? H[i * n + i] : 1) + 0.01 * mean : H[i * n + k];
                double uu = 0; /* (U^T U)[k][c] */
                for (int64_t m = 0; m <= (k < c ? k : c); m++) uu += (double)U1[m * n + k] * U1[m * n + c];
                s += hk * uu;
            }
            const double d = fabs(s - (i == c));
            if (d > worst) worst = d;
        }
        CHECK(t, worst < 1e-3, "n=%lld: (H + damp) U^T U deviates from I by %g", (long long)n, worst);
        free(U1); free(U2);
        float *W = gauss(70 + si, rows * n);
        for (size_t ti = 0; ti < N_TYPES; ti++) {
            const uint32_t type = TYPES[ti];
            qf_gptq_grid g;
            qf_gptq_grid_get(type, &g);
            if (n % g.block) continue;
            const size_t rs = row_size(type, n);
            uint8_t *a = malloc(rows * rs), *b = malloc(rows * rs);
            qf_gptq_opts_init(&o);
            o.act_order = si != 1;
            o.fit = QF_GPTQ_FIT_SEARCH;
            o.reference = 1;
            REQUIRE(t, qf_gptq_quantize(type, W, rows, n, H, &o, a, NULL, NULL, &err) == 0, "%s", err.msg);
            o.reference = 0;
            o.n_threads = 3;
            REQUIRE(t, qf_gptq_quantize(type, W, rows, n, H, &o, b, NULL, NULL, &err) == 0, "%s", err.msg);
            CHECK(t, memcmp(a, b, rows * rs) == 0, "%s n=%lld: fast sweep differs from the reference", tname(type),
                  (long long)n);
            free(a); free(b);
        }
        free(W); free(X); free(H);
    }
}

/* The in-place factor: qf_gptq_prep_free puts H back bit for bit (plain,
 * act-order, after a damping retry, after a failure), and one factor shared
 * by several tensors (with q_out = W, in place) gives each tensor the bytes
 * and values of its own qf_gptq_quantize. */
static void shared_factor(qf_test *t, int64_t n) {
    const int64_t N = n + 80, rows = 29;
    float *X = make_inputs(77, N, n);
    for (int64_t tk = 0; tk < N; tk++) X[tk * n + 7] = 0; /* a dead input */
    double *H = hessian(X, N, n), *H0 = malloc((size_t)(n * n) * sizeof *H0);
    memcpy(H0, H, (size_t)(n * n) * sizeof *H0);
    qf_err err = {0};
    for (int mode = 0; mode < 3; mode++) {
        qf_gptq_opts o;
        qf_gptq_opts_init(&o);
        o.act_order = mode == 1;
        o.n_threads = 2;
        o.fit = QF_GPTQ_FIT_SEARCH;
        qf_gptq_prep p;
        REQUIRE(t, qf_gptq_prepare(H, n, &o, &p, &err) == 0, "%s", err.msg);
        for (size_t ti = 0; ti < N_TYPES; ti += mode + 1) {
            const uint32_t type = TYPES[ti];
            if (n % ggml_get_type_traits(type)->block_size) continue;
            const size_t rs = row_size(type, n);
            float *W = gauss(300 + ti, rows * n), *Wq = malloc((size_t)(rows * n) * sizeof *Wq),
                  *Q = malloc((size_t)(rows * n) * sizeof *Q);
            uint8_t *a = malloc(rows * rs), *b = malloc(rows * rs);
            memcpy(Wq, W, (size_t)(rows * n) * sizeof *W);
            REQUIRE(t, qf_gptq_quantize(type, W, rows, n, H0, &o, a, Q, NULL, &err) == 0, "%s", err.msg);
            REQUIRE(t, qf_gptq_quantize_prep(type, Wq, rows, &p, &o, b, Wq, &err) == 0, "%s", err.msg);
            CHECK(t, memcmp(a, b, rows * rs) == 0, "%s mode %d: shared factor gives other bytes", tname(type), mode);
            CHECK(t, memcmp(Q, Wq, (size_t)(rows * n) * sizeof *Q) == 0, "%s mode %d: in-place values differ",
                  tname(type), mode);
            free(W); free(Wq); free(Q); free(a); free(b);
        }
        qf_gptq_prep_free(&p);
        CHECK(t, memcmp(H, H0, (size_t)(n * n) * sizeof *H) == 0, "mode %d: H not restored", mode);
    }
    /* a retry (an indefinite H that damping 10x fixes) and a failure leave H whole too */
    for (int64_t j = 0; j < n; j++) H[j * n + j] -= 0.02 * H0[j * n + j];
    memcpy(H0, H, (size_t)(n * n) * sizeof *H0);
    qf_gptq_opts o;
    qf_gptq_opts_init(&o);
    o.damp = 1e-6;
    qf_gptq_prep p;
    const int rc = qf_gptq_prepare(H, n, &o, &p, &err);
    if (rc == 0) qf_gptq_prep_free(&p);
    CHECK(t, memcmp(H, H0, (size_t)(n * n) * sizeof *H) == 0, "H not restored after rc %d", rc);
    free(X); free(H); free(H0);
}

static void test_shared_factor(qf_test *t) {
    shared_factor(t, 544); /* not a multiple of the 64-wide diagonal blocks: legacy types */
    shared_factor(t, 512);
}

/* The ranks' shares of a group (qf_gptq_share_rows): every row of every
 * tensor exactly once, ranges on tile boundaries, parts' tile counts within
 * one of each other. */
static void test_share_rows(qf_test *t) {
    uint64_t seed = 12345;
    for (int trial = 0; trial < 400; trial++) {
        int64_t n_out[3];
        const int n = 1 + (int)(trial % 3);
        const int64_t tile = trial % 4 == 0 ? 1 : trial % 4 == 1 ? 24 : trial % 4 == 2 ? 7 : 64;
        for (int i = 0; i < n; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            n_out[i] = 1 + (int64_t)((seed >> 33) % 300);
        }
        for (int parts = 1; parts <= 8; parts++) {
            int64_t covered[3] = {0, 0, 0}, tmin = INT64_MAX, tmax = 0;
            int64_t next[3] = {0, 0, 0}; /* parts come in order: each starts where the last ended */
            for (int k = 0; k < parts; k++) {
                int64_t r0[3], r1[3], tiles = 0;
                qf_gptq_share_rows(n_out, n, tile, parts, k, r0, r1);
                for (int i = 0; i < n; i++) {
                    REQUIRE(t, r0[i] <= r1[i] && r1[i] <= n_out[i], "range %lld..%lld of %lld", (long long)r0[i],
                            (long long)r1[i], (long long)n_out[i]);
                    if (r0[i] == r1[i]) continue;
                    CHECK(t, r0[i] == next[i], "tensor %d part %d starts at %lld, want %lld", i, k, (long long)r0[i],
                          (long long)next[i]);
                    CHECK(t, r0[i] % tile == 0 && (r1[i] % tile == 0 || r1[i] == n_out[i]),
                          "part %d of %d: rows %lld..%lld off the %lld-row tiles", k, parts, (long long)r0[i],
                          (long long)r1[i], (long long)tile);
                    next[i] = r1[i];
                    covered[i] += r1[i] - r0[i];
                    tiles += (r1[i] - r0[i] + tile - 1) / tile;
                }
                if (tiles < tmin) tmin = tiles;
                if (tiles > tmax) tmax = tiles;
            }
            for (int i = 0; i < n; i++)
                CHECK(t, covered[i] == n_out[i] && next[i] == n_out[i], "%d parts: tensor %d covers %lld of %lld rows",
                      parts, i, (long long)covered[i], (long long)n_out[i]);
            CHECK(t, tmax - tmin <= 1, "%d parts: %lld to %lld tiles a part", parts, (long long)tmin, (long long)tmax);
        }
    }
}

/* Solving a tensor in row ranges (qf_gptq_quantize_prep_rows, the ranks'
 * shares) gives the bytes and values of the whole solve; a range off the
 * tiles is refused. */
static void test_row_ranges(qf_test *t) {
    const int64_t n = 256, N = 400, tile = qf_gptq_row_tile();
    const int64_t n_out[3] = {2 * tile + 5, 7, tile + 1};
    float *X = make_inputs(91, N, n);
    double *H = hessian(X, N, n);
    qf_err err = {0};
    qf_gptq_opts o;
    qf_gptq_opts_init(&o);
    o.fit = QF_GPTQ_FIT_SEARCH;
    o.act_order = 1;
    qf_gptq_prep p;
    REQUIRE(t, qf_gptq_prepare(H, n, &o, &p, &err) == 0, "%s", err.msg);
    const uint32_t types[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
    for (int ti = 0; ti < 3; ti++) {
        const uint32_t type = types[ti];
        const size_t rs = row_size(type, n);
        float *W[3], *Wp[3];
        uint8_t *a[3], *b[3];
        for (int i = 0; i < 3; i++) {
            W[i] = gauss(500 + 3 * ti + i, n_out[i] * n);
            Wp[i] = malloc((size_t)(n_out[i] * n) * sizeof *Wp[i]);
            a[i] = malloc(n_out[i] * rs);
            b[i] = malloc(n_out[i] * rs);
        }
        for (int i = 0; i < 3; i++)
            REQUIRE(t, qf_gptq_quantize_prep(type, W[i], n_out[i], &p, &o, a[i], W[i], &err) == 0, "%s", err.msg);
        for (int parts = 1; parts <= 4; parts++) {
            for (int i = 0; i < 3; i++) {
                memset(b[i], 0xAA, n_out[i] * rs);
            }
            for (int i = 0; i < 3; i++) { /* the original weights again: gauss is deterministic */
                float *w0 = gauss(500 + 3 * ti + i, n_out[i] * n);
                memcpy(Wp[i], w0, (size_t)(n_out[i] * n) * sizeof *w0);
                free(w0);
            }
            for (int k = 0; k < parts; k++) {
                int64_t r0[3], r1[3];
                qf_gptq_share_rows(n_out, 3, tile, parts, k, r0, r1);
                for (int i = 0; i < 3; i++)
                    REQUIRE(t, qf_gptq_quantize_prep_rows(type, Wp[i], n_out[i], r0[i], r1[i], &p, &o, b[i], Wp[i], &err) == 0,
                            "%s", err.msg);
            }
            for (int i = 0; i < 3; i++) {
                CHECK(t, memcmp(a[i], b[i], n_out[i] * rs) == 0, "%s, %d parts: tensor %d's bytes differ", tname(type),
                      parts, i);
                CHECK(t, memcmp(W[i], Wp[i], (size_t)(n_out[i] * n) * sizeof *Wp[i]) == 0,
                      "%s, %d parts: tensor %d's values differ", tname(type), parts, i);
            }
        }
        CHECK(t, qf_gptq_quantize_prep_rows(type, Wp[0], n_out[0], 1, tile, &p, &o, b[0], Wp[0], &err) == QF_EINVAL,
              "a range off the tiles accepted");
        CHECK(t, qf_gptq_quantize_prep_rows(type, Wp[0], n_out[0], 0, tile + 1, &p, &o, b[0], Wp[0], &err) == QF_EINVAL,
              "a range ending inside a tile accepted");
        for (int i = 0; i < 3; i++) {
            free(W[i]); free(Wp[i]); free(a[i]); free(b[i]);
        }
    }
    qf_gptq_prep_free(&p);
    free(X);
    free(H);
}

/* Ranks as threads of this process for qf_dist (agree and broadcasts over
 * a barrier), to run qf_gptq_prepare split over "ranks". */
typedef struct fake_world {
    pthread_barrier_t bar;
    int size;
    int failed[8];
    void *pub;
} fake_world;

static int fake_agree(qf_dist *d, int failed) {
    fake_world *w = d->impl;
    w->failed[d->rank] = failed;
    pthread_barrier_wait(&w->bar);
    int low = -1;
    for (int r = w->size - 1; r >= 0; r--)
        if (w->failed[r]) low = r;
    pthread_barrier_wait(&w->bar);
    return low;
}

static void fake_bcast_from(qf_dist *d, int root, void *buf, size_t bytes) {
    fake_world *w = d->impl;
    if (d->rank == root) w->pub = buf;
    pthread_barrier_wait(&w->bar);
    if (d->rank != root) memcpy(buf, w->pub, bytes);
    pthread_barrier_wait(&w->bar);
}

static void fake_bcast(qf_dist *d, void *buf, size_t bytes) { fake_bcast_from(d, 0, buf, bytes); }

typedef struct fake_rank {
    qf_dist d;
    double *H;
    int64_t n;
    qf_gptq_opts o;
    qf_gptq_prep p;
    int rc;
} fake_rank;

static void *fake_prepare(void *arg) {
    fake_rank *r = arg;
    qf_err err = {0};
    r->o.dist = &r->d;
    r->rc = qf_gptq_prepare(r->H, r->n, &r->o, &r->p, &err);
    return NULL;
}

/* qf_gptq_prepare split over 2 and 3 ranks (each inverts its column tiles,
 * then they exchange them) gives every rank the one-process factor bit for
 * bit, with act-order and with a damping retry; H is restored. */
static void test_prepare_split(qf_test *t) {
    const int64_t n = 300, N = 420; /* 5 tiles of 64 and one of 44 */
    float *X = make_inputs(31, N, n);
    double *H0 = hessian(X, N, n);
    for (int mode = 0; mode < 3; mode++) {
        double *H = malloc((size_t)(n * n) * sizeof *H);
        memcpy(H, H0, (size_t)(n * n) * sizeof *H);
        if (mode == 2)
            for (int64_t j = 0; j < n; j++) H[j * n + j] -= 0.05 * H0[j * n + j]; /* indefinite: a retry */
        qf_gptq_opts o;
        qf_gptq_opts_init(&o);
        o.act_order = mode == 1;
        if (mode == 2) o.damp = 1e-3;
        qf_gptq_prep one;
        qf_err err = {0};
        double *H1 = malloc((size_t)(n * n) * sizeof *H1);
        memcpy(H1, H, (size_t)(n * n) * sizeof *H1);
        REQUIRE(t, qf_gptq_prepare(H1, n, &o, &one, &err) == 0, "%s", err.msg);
        for (int size = 2; size <= 3; size++) {
            fake_world w;
            memset(&w, 0, sizeof w);
            w.size = size;
            pthread_barrier_init(&w.bar, NULL, (unsigned)size);
            fake_rank rk[3];
            pthread_t th[3];
            memset(rk, 0, sizeof rk);
            for (int r = 0; r < size; r++) {
                rk[r].d = (qf_dist){.rank = r, .size = size, .failed_rank = -1, .agree = fake_agree,
                                    .bcast = fake_bcast, .bcast_from = fake_bcast_from, .impl = &w};
                rk[r].H = malloc((size_t)(n * n) * sizeof *rk[r].H);
                memcpy(rk[r].H, H, (size_t)(n * n) * sizeof *H);
                rk[r].n = n;
                rk[r].o = o;
                pthread_create(&th[r], NULL, fake_prepare, &rk[r]);
            }
            for (int r = 0; r < size; r++) pthread_join(th[r], NULL);
            for (int r = 0; r < size; r++) {
                CHECK(t, rk[r].rc == 0, "mode %d, %d ranks: rank %d failed", mode, size, r);
                if (rk[r].rc) continue;
                int same = rk[r].p.info.retries == one.info.retries && rk[r].p.info.damp == one.info.damp;
                for (int64_t k = 0; k < n && same; k++) {
                    same = !one.perm || rk[r].p.perm[k] == one.perm[k];
                    for (int64_t m = k; m < n && same; m++)
                        same = memcmp(&rk[r].p.U[k * rk[r].p.ldu + m], &one.U[k * one.ldu + m], sizeof(float)) == 0;
                }
                CHECK(t, same, "mode %d, %d ranks: rank %d's factor differs from one process's", mode, size, r);
                qf_gptq_prep_free(&rk[r].p);
                CHECK(t, memcmp(rk[r].H, H, (size_t)(n * n) * sizeof *H) == 0, "mode %d: rank %d's H not restored", mode, r);
                free(rk[r].H);
            }
            if (mode == 2) CHECK(t, one.info.retries > 0, "no retry in the retry case");
            pthread_barrier_destroy(&w.bar);
        }
        qf_gptq_prep_free(&one);
        free(H1);
        free(H);
    }
    free(X);
    free(H0);
}

QF_TEST_MAIN(test_codebook_pack, test_codebook_identity, test_codebook_beats_exact, test_output_error_reference, test_grid_nearest_reference, test_grid_levels_reference, test_prepare_split, test_share_rows, test_row_ranges, test_shared_factor, test_kernels_match_reference, test_fast_equals_reference, test_layerwise_matches_calibrate,
             test_layerwise_moe_matches_calibrate, test_grid_pack, test_identity_is_exact, test_beats_rtn_and_search, test_singular_hessian,
             test_retry_and_failure, test_threads)
