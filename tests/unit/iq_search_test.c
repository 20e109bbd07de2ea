/* iq_search_test.c - the i-quant grid-point search (iq_best_candidate,
 * codec_iquants.h): the AVX2 and AVX-512 versions against the scalar
 * reference on random and adversarial inputs (zeros, ties, duplicate
 * candidates, NaN and inf), and the reference against its definition
 * (the first candidate of least weighted squared error). */
#include "qf_test.h"

#include <float.h>

#include "codec_iq1.h"
#include "codec_iq4nl.h"
#include "codec_iquants.h"

static uint32_t rng_state = 12345;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}
static float rndf(void) { return (float)(rnd() >> 8) / (float)(1 << 24); } /* [0, 1) */

#define N_POINTS 2048
static uint8_t grid[N_POINTS * 8];

/* Every compiled version's answer equals the reference's; returns it. */
static int check_all(qf_test *t, int dim, int shift, const uint16_t *cand, int n, const float *v, const float *x,
                     const float *w, const char *what) {
    const int ref = iq_best_candidate_ref(grid, dim, shift, cand, n, v, x, w);
    const int got = iq_best_candidate(grid, dim, shift, cand, n, v, x, w);
    CHECK(t, got == ref, "%s: dim %d shift %d n %d: dispatched %d, reference %d", what, dim, shift, n, got, ref);
#if defined(__AVX2__)
    const int a2 = iq_best_candidate_avx2(grid, dim, shift, cand, n, v, x, w);
    CHECK(t, a2 == ref, "%s: dim %d shift %d n %d: avx2 %d, reference %d", what, dim, shift, n, a2, ref);
#endif
#if defined(__AVX512F__) && defined(__AVX512BW__)
    const int a5 = iq_best_candidate_avx512(grid, dim, shift, cand, n, v, x, w);
    CHECK(t, a5 == ref, "%s: dim %d shift %d n %d: avx512 %d, reference %d", what, dim, shift, n, a5, ref);
#endif
    return ref;
}

/* The weighted squared error of candidate c, as the reference defines it. */
static float d2_of(int dim, int shift, int c, const float *v, const float *x, const float *w) {
    float d2 = 0.f;
    for (int i = 0; i < dim; ++i) {
        const float diff = v[grid[c * dim + i] >> shift] - x[i];
        d2 += w[i] * diff * diff;
    }
    return d2;
}

static void fill_grid(int shift) {
    for (int i = 0; i < N_POINTS * 8; ++i) grid[i] = (uint8_t)(shift ? 2 * (rnd() % 8) + 1 : rnd() % 8);
}

static void test_random_inputs_match_reference(qf_test *t) {
    uint16_t cand[80];
    float v[8], x[8], w[8];
    for (int iter = 0; iter < 8000; ++iter) {
        const int dim = iter % 2 ? 8 : 4, shift = iter / 4 % 2;
        if (iter % 4 == 0) fill_grid(shift); /* shift 1: odd bytes 2l+1; shift 0: levels 0..7 */
        const int n = 1 + (int)(rnd() % 80);
        for (int j = 0; j < n; ++j) cand[j] = (uint16_t)(rnd() % (dim == 8 ? N_POINTS : 2 * N_POINTS));
        const float scale = 0.01f + rndf();
        for (int l = 0; l < 8; ++l) v[l] = scale * (float)(2 * l + 1) - (iter % 3 == 0 ? 1.5f : 0.f);
        for (int i = 0; i < dim; ++i) {
            x[i] = 10 * rndf() * scale;
            w[i] = rnd() % 7 == 0 ? 0.f : rndf();
        }
        const int best = check_all(t, dim, shift, cand, n, v, x, w, "random");
        if (t->failed) return;
        const float bd = d2_of(dim, shift, cand[best], v, x, w);
        for (int j = 0; j < n; ++j) {
            const float d = d2_of(dim, shift, cand[j], v, x, w);
            CHECK(t, j < best ? !(d <= bd) : !(d < bd), "position %d (d2 %g) beats the answer %d (d2 %g)", j, d, best, bd);
        }
        if (t->failed) return;
    }
}

static void test_ties_zeros_and_nonfinite(qf_test *t) {
    uint16_t cand[64];
    float v[8], x[8], w[8];
    fill_grid(1);
    for (int dim = 4; dim <= 8; dim += 4) {
        /* all zero: every d2 is 0, the first wins */
        for (int l = 0; l < 8; ++l) v[l] = 0.f;
        for (int i = 0; i < 8; ++i) x[i] = w[i] = 0.f;
        for (int n = 1; n <= 64; ++n) {
            for (int j = 0; j < n; ++j) cand[j] = (uint16_t)(rnd() % N_POINTS);
            CHECK(t, check_all(t, dim, 1, cand, n, v, x, w, "zeros") == 0, "all-zero input: position 0");
        }
        /* the same candidate repeated, with a better one at position p: p wins; without it, 0 */
        for (int l = 0; l < 8; ++l) v[l] = (float)(2 * l + 1);
        for (int i = 0; i < 8; ++i) x[i] = (float)(2 * (i % 3) + 1), w[i] = 1.f;
        int exact = -1;
        for (int c = 0; c < N_POINTS && exact < 0; ++c) {
            int ok = 1;
            for (int i = 0; i < dim; ++i) ok &= grid[c * dim + i] == (uint8_t)x[i];
            if (ok) exact = c;
        }
        if (exact < 0) { /* make one */
            exact = 7;
            for (int i = 0; i < dim; ++i) grid[exact * dim + i] = (uint8_t)x[i];
        }
        const int other = exact == 3 ? 4 : 3;
        for (int n = 1; n <= 64; ++n) {
            for (int j = 0; j < n; ++j) cand[j] = (uint16_t)other;
            CHECK(t, check_all(t, dim, 1, cand, n, v, x, w, "duplicates") == 0, "n %d", n);
            for (int p = 0; p < n; ++p) {
                cand[p] = (uint16_t)exact;
                if (p + 2 < n) cand[p + 2] = (uint16_t)exact; /* an equal later one loses */
                CHECK(t, check_all(t, dim, 1, cand, n, v, x, w, "tie") == p, "n %d p %d", n, p);
                for (int j = 0; j < n; ++j) cand[j] = (uint16_t)other;
            }
        }
        /* NaN in x or inf in w: no d2 below FLT_MAX -> position 0; one finite candidate among NaN ones */
        for (int i = 0; i < 8; ++i) x[i] = 1.f, w[i] = 1.f;
        x[dim - 1] = NAN;
        for (int n = 1; n <= 40; ++n) {
            for (int j = 0; j < n; ++j) cand[j] = (uint16_t)(rnd() % N_POINTS);
            CHECK(t, check_all(t, dim, 1, cand, n, v, x, w, "nan") == 0, "NaN: position 0");
        }
        x[dim - 1] = 1.f;
        w[0] = INFINITY;
        for (int n = 1; n <= 40; ++n) {
            for (int j = 0; j < n; ++j) cand[j] = (uint16_t)(rnd() % N_POINTS);
            check_all(t, dim, 1, cand, n, v, x, w, "inf");
        }
        w[0] = 1.f;
        v[7] = FLT_MAX; /* level 7 overflows d2 to inf */
        for (int n = 1; n <= 40; ++n) {
            for (int j = 0; j < n; ++j) cand[j] = (uint16_t)(rnd() % N_POINTS);
            check_all(t, dim, 1, cand, n, v, x, w, "overflow");
        }
    }
}

/* The IQ3_S grid itself (4 odd levels 1..15 per point, shift 1) with
 * neighbour-like candidate lists of every point. */
static void test_iq3s_grid(qf_test *t) {
    memcpy(grid, qf_iq3s_grid, sizeof qf_iq3s_grid);
    uint16_t cand[512];
    float v[8], x[4], w[4];
    for (int iter = 0; iter < 3000; ++iter) {
        const int n = 1 + (int)(rnd() % 512);
        for (int j = 0; j < n; ++j) cand[j] = (uint16_t)(rnd() % 512);
        const float scale = 0.001f + rndf();
        for (int l = 0; l < 8; ++l) v[l] = scale * (float)(2 * l + 1);
        for (int i = 0; i < 4; ++i) x[i] = 16 * scale * rndf(), w[i] = sqrtf(rndf());
        check_all(t, 4, 1, cand, n, v, x, w, "iq3s grid");
        if (t->failed) return;
    }
}

/* IQ1_S's split scan (iq1_s_scan) against iq1_s_scan_ref: random sorted
 * sub-blocks, zero weights (sumq2 = 0), all-equal values (ties) and
 * starting best scores from -FLT_MAX to above every score; the whole
 * state compared bit for bit after every i1. */
static void test_iq1_s_scan_matches_reference(qf_test *t) {
    static const float xx[2][3] = {{-1 + 0.125f, 0.125f, 1 + 0.125f}, {-1 - 0.125f, -0.125f, 1 - 0.125f}};
    float sumx[41], sumw[41];
    for (int iter = 0; iter < 4000; ++iter) {
        const int kind = iter % 4;
        memset(sumx, 0, sizeof sumx);
        memset(sumw, 0, sizeof sumw);
        for (int j = 0; j < 32; ++j) {
            const float x = kind == 1 ? 0.5f : kind == 2 ? 0.f : rndf() * 2 - 1;
            const float w = kind == 3 && j % 3 ? 0.f : rndf();
            sumx[j + 1] = sumx[j] + w * x;
            sumw[j + 1] = sumw[j] + w;
        }
        for (int j = 33; j < 41; ++j) sumx[j] = sumw[j] = rndf() * 100; /* the padding is never a split */
        iq1_split_best a = {iter % 5 == 0 ? 1e30f : -FLT_MAX, 1.f, 0, 0, 1}, b = a;
        for (int i1 = 0; i1 <= 32; ++i1) {
            iq1_s_scan_ref(sumx, sumw, i1, xx, &a);
            iq1_s_scan(sumx, sumw, i1, xx, &b);
            CHECK(t, memcmp(&a, &b, sizeof a) == 0, "iter %d i1 %d: best (%d,%d,%d) %a %a vs reference (%d,%d,%d) %a %a",
                  iter, i1, b.best1, b.best2, b.best_shift, b.best_score, b.scale, a.best1, a.best2, a.best_shift,
                  a.best_score, a.scale);
            if (t->failed) return;
        }
    }
}

/* The IQ4_NL/IQ4_XS trial fits (qf_iq4_nl_fit16) against the reference,
 * bit for bit: random blocks and scales, values on the level midpoints,
 * zero weights, zeros, NaN and inf. */
static void test_iq4_nl_fit16_matches_reference(qf_test *t) {
    float x[32], w[32], id[16], a[2][16], b[2][16];
    for (int iter = 0; iter < 20000; ++iter) {
        const int kind = iter % 6;
        for (int j = 0; j < 32; ++j) {
            x[j] = kind == 1 ? 0.f : (rndf() * 2 - 1) * (kind == 2 ? 1e-30f : 1.f);
            w[j] = kind == 3 && j % 2 ? 0.f : rndf();
        }
        if (kind == 4) x[rnd() % 32] = NAN;
        if (kind == 5) x[rnd() % 32] = INFINITY;
        for (int k = 0; k < 16; ++k) id[k] = (rndf() * 2 - 1) * 200;
        if (iter % 7 == 0) { /* products exactly on the midpoints */
            for (int k = 0; k < 16; ++k) id[k] = 1.f;
            for (int j = 0; j < 32; ++j) x[j] = qf_iq4_nl_midpoints[rnd() % 15];
        }
        qf_iq4_nl_fit16_ref(x, w, id, a[0], a[1]);
        qf_iq4_nl_fit16(x, w, id, b[0], b[1]);
        CHECK(t, memcmp(a, b, sizeof a) == 0, "iter %d: sums differ from the reference", iter);
        if (t->failed) return;
    }
}

QF_TEST_MAIN(test_iq4_nl_fit16_matches_reference, test_random_inputs_match_reference, test_ties_zeros_and_nonfinite, test_iq3s_grid,
             test_iq1_s_scan_matches_reference)
