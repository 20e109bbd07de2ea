/* matmul_q8_test.c - the integer-dot matmul (verify/matmul_q8.c): fast vs
 * scalar reference bit for bit, the unpacked integers vs the reference
 * dequantizers, the shared activation quantizers vs their scalar specs and
 * vs qf_round_activations, and the result vs the F32 path on rounded x. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "ggml_types.h"
#include "matmul.h"
#include "matmul_q8.h"
#include "numfmt.h"
#include "qf_test.h"
#include "qf_test_blocks.h"
#include "codecs.h"

static qf_test_rng rng = {0x9E3779B97F4A7C15ull};
static uint32_t rnd(void) { return (uint32_t)(qf_test_rng_u64(&rng) >> 32); }
static float frand(void) { return qf_test_rng_unif(&rng) * 2.0f - 1.0f; }

static const uint32_t types[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
                                 GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K, GGML_TYPE_IQ2_XS,
                                 GGML_TYPE_IQ2_S, GGML_TYPE_IQ3_S, GGML_TYPE_IQ3_XXS, GGML_TYPE_IQ2_XXS};
#define N_TYPES (sizeof types / sizeof types[0])
/* The types multiplied straight from their blocks (no unpacked rows). */
static const uint32_t block_dot_types[] = {GGML_TYPE_IQ1_S, GGML_TYPE_IQ1_M};

/* Random but valid weight rows of `type` (qf_test_blocks.h) from this file's generator. */
static void *random_weights(uint32_t type, int64_t n_in, int64_t n_out, size_t *row_bytes) {
    return qf_test_random_weights(rnd, frand, type, n_in, n_out, row_bytes);
}

/* Activations like a network's: mostly small, a few outliers, some exact
 * zeros and a block of all zeros (d = 0). */
static void random_x(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        x[i] = frand();
        if (rnd() % 50 == 0) x[i] *= 30.0f;
        if (rnd() % 40 == 0) x[i] = 0.0f;
    }
    if (n >= 512) memset(x + 256, 0, 256 * sizeof(float));
}

static void test_quantizers_match_spec(qf_test *t) {
    float x[QK_K];
    int bad0 = 0, badK = 0;
    for (int it = 0; it < 200; it++) {
        random_x(x, QK_K);
        if (it % 3 == 0) { x[7] = -100.0f; x[100] = 100.0f; } /* tie in |x|: the first one becomes -127 */
        if (it == 1) memset(x, 0, sizeof x);
        int8_t q1[QK_K], q2[QK_K];
        float d1, d2, s1, s2;
        for (int b = 0; b < QK_K; b += 32) {
            qf_quantize_q8_0_block(x + b, q1, &d1, &s1);
            qf_quantize_q8_0_block_ref(x + b, q2, &d2, &s2);
            if (memcmp(q1, q2, 32) || memcmp(&d1, &d2, 4) || memcmp(&s1, &s2, 4)) bad0++;
        }
        int16_t S1[8], S2[8];
        qf_quantize_q8_K_block(x, q1, &d1, S1);
        qf_quantize_q8_K_block_ref(x, q2, &d2, S2);
        if (memcmp(q1, q2, QK_K) || memcmp(&d1, &d2, 4) || memcmp(S1, S2, sizeof S1)) badK++;
        if (it % 3 == 0 && it != 0) CHECK(t, q2[7] == -127 && q2[100] == 127, "q8_K tie: %d %d", q2[7], q2[100]);
        /* qf_round_activations is q*d of the same quantizers */
        float r[QK_K];
        qf_round_activations(GGML_TYPE_Q8_K, x, r, QK_K);
        for (int j = 0; j < QK_K; j++)
            if (r[j] != (float)q2[j] * d2) badK++;
        qf_round_activations(GGML_TYPE_Q8_0, x, r, QK_K);
        for (int b = 0; b < QK_K; b += 32) {
            qf_quantize_q8_0_block_ref(x + b, q2, &d2, &s2);
            for (int j = 0; j < 32; j++)
                if (r[b + j] != (float)q2[j] * d2) bad0++;
        }
    }
    CHECK(t, bad0 == 0, "%d q8_0 blocks differ from the spec", bad0);
    CHECK(t, badK == 0, "%d q8_K blocks differ from the spec", badK);
    /* a hand-checked block: amax 4 -> d = f16(4/127), s = f16(4/127 * sum q) */
    float xb[32];
    for (int j = 0; j < 32; j++) xb[j] = j == 3 ? 4.0f : j == 9 ? -2.0f : 0.0f;
    int8_t q[32];
    float d, s;
    qf_quantize_q8_0_block(xb, q, &d, &s);
    CHECK(t, q[3] == 127 && q[9] == -64 && q[0] == 0, "q %d %d %d", q[3], q[9], q[0]); /* -63.5 -> -64 (even) */
    CHECK(t, d == qf_f16_to_f32(qf_f32_to_f16(4.0f / 127.0f)), "d %g", d);
    CHECK(t, s == qf_f16_to_f32(qf_f32_to_f16(4.0f / 127.0f * 63.0f)), "s %g", s);
}

/* The unpacked integers reproduce the reference dequantizer exactly. */
static void test_unpack_matches_dequantize(qf_test *t) {
    const int64_t n = 2 * QK_K;
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        const uint32_t type = types[ti];
        size_t rb;
        void *w = random_weights(type, n, 4, &rb);
        REQUIRE(t, w, "weights");
        int8_t q[2 * QK_K], sc[2 * QK_K / 16];
        float d[16], m[16], ref[2 * QK_K];
        int16_t mins[16];
        int bad = 0;
        for (int r = 0; r < 4; r++) {
            const void *row = (const uint8_t *)w + r * rb;
            CHECK(t, qf_unpack_row_q8(type, row, n, q, d, m, sc, mins) == 0, "unpack %u", type);
            qf_dequantize_row_ref(type, row, ref, n);
            for (int64_t i = 0; i < n; i++) {
                float v;
                switch (type) {
                case GGML_TYPE_Q4_1:
                case GGML_TYPE_Q5_1: v = (float)q[i] * d[i / 32] + m[i / 32]; break;
                case GGML_TYPE_Q4_K: v = (d[i / 256] * (float)sc[i / 16]) * (float)q[i] - m[i / 256] * (float)mins[i / 32]; break;
                case GGML_TYPE_Q6_K:
                case GGML_TYPE_IQ2_XS:
                case GGML_TYPE_IQ2_S:
                case GGML_TYPE_IQ3_S:
                case GGML_TYPE_IQ3_XXS:
                case GGML_TYPE_IQ2_XXS: v = (d[i / 256] * (float)sc[i / 16]) * (float)q[i]; break;
                default: v = (float)q[i] * d[i / 32]; break;
                }
                if (memcmp(&v, &ref[i], 4) != 0) bad++;
            }
        }
        CHECK(t, bad == 0, "%s: %d unpacked values differ from dequantize_ref", ggml_get_type_traits(type)->name, bad);
        free(w);
    }
    CHECK(t, qf_unpack_row_q8(GGML_TYPE_Q5_K, NULL, 256, NULL, NULL, NULL, NULL, NULL) == QF_EUNSUPPORTED, "q5_K");
}

/* Fast == reference bit for bit (any T, rows in several tiles, 1 or 2
 * threads), and close to the F32 path fed the rounded activations. */
static void test_fast_matches_reference(qf_test *t) {
    static const int64_t Ts[] = {1, 2, 3, 5, 9};
    const size_t n_block_dot = sizeof block_dot_types / sizeof *block_dot_types;
    for (size_t ti = 0; ti < N_TYPES + n_block_dot; ti++) {
        const uint32_t type = ti < N_TYPES ? types[ti] : block_dot_types[ti - N_TYPES];
        const char *name = ggml_get_type_traits(type)->name;
        const int k = ggml_get_type_traits(type)->block_size == QK_K;
        const int64_t n_in = k ? 3 * QK_K : 5 * 32, n_out = k ? 301 : 1001; /* several tiles per thread, a partial group of 4 rows */
        qf_weight w = {.name = "w", .type = type, .n_in = n_in, .n_out = n_out};
        void *data = random_weights(type, n_in, n_out, &w.row_bytes);
        float *x = malloc(9 * n_in * sizeof(float)), *xr = malloc(9 * n_in * sizeof(float));
        float *y = malloc(9 * n_out * sizeof(float)), *y2 = malloc(9 * n_out * sizeof(float));
        float *yr = malloc(9 * n_out * sizeof(float)), *yf = malloc(9 * n_out * sizeof(float));
        float *row = malloc(n_in * sizeof(float));
        REQUIRE(t, data && x && xr && y && y2 && yr && yf && row, "alloc");
        w.data = data;
        random_x(x, 9 * n_in);
        for (size_t kk = 0; kk < sizeof Ts / sizeof Ts[0]; kk++) {
            const int64_t T = Ts[kk];
            CHECK(t, qf_matmul_q8(&w, x, T, y, NULL, 1) == 0, "%s: fast", name);
            CHECK(t, qf_matmul_q8(&w, x, T, y2, NULL, 2) == 0, "%s: fast 2 threads", name);
            CHECK(t, qf_matmul_q8_ref(&w, x, T, yr) == 0, "%s: ref", name);
            CHECK(t, memcmp(y, yr, T * n_out * sizeof(float)) == 0, "%s T=%lld: fast != ref", name, (long long)T);
            CHECK(t, memcmp(y, y2, T * n_out * sizeof(float)) == 0, "%s T=%lld: 1 vs 2 threads", name, (long long)T);
            /* the F32 path on x rounded the same way: only the F32 summation differs */
            for (int64_t tt = 0; tt < T; tt++)
                qf_round_activations(qf_act_type_llamacpp(type), x + tt * n_in, xr + tt * n_in, n_in);
            CHECK(t, qf_matmul(&w, xr, T, yf, 1) == 0, "%s: f32 path", name);
            double worst = 0;
            for (int64_t o = 0; o < n_out; o++) {
                qf_dequantize_row_ref(type, (const uint8_t *)data + o * w.row_bytes, row, n_in);
                for (int64_t tt = 0; tt < T; tt++) {
                    double mag = 0;
                    for (int64_t i = 0; i < n_in; i++) mag += fabs((double)xr[tt * n_in + i] * row[i]);
                    double e = fabs((double)y[tt * n_out + o] - yf[tt * n_out + o]) / (mag + 1e-30);
                    if (e > worst) worst = e;
                }
            }
            /* Q4_1/Q5_1: Q8_1's s = d*sum(q) is stored as F16 (rel. error 2^-11 on the m*s term) */
            const double tol = type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q5_1 ? 2e-3 : 2e-6;
            CHECK(t, worst < tol, "%s T=%lld: relative difference to the f32 path %.3g", name, (long long)T, worst);
        }
        free(data); free(x); free(xr); free(y); free(y2); free(yr); free(yf); free(row);
    }
}

/* Batch 1 (one token: the kernels that read the blocks in place) == the
 * reference bit for bit, for row lengths that fill the 8-block scale chunks of
 * the Q4_0 kernel exactly, leave a partial last chunk, or hold one block, and
 * row counts that leave rows outside the groups of 4, on 1 and 2 threads. */
static void test_batch1_shapes(qf_test *t) {
    static const uint32_t gemv_types[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K};
    static const int64_t n_blocks32[] = {1, 8, 13, 64};
    static const int64_t n_outs[] = {1, 7, 45};
    for (size_t ti = 0; ti < sizeof gemv_types / sizeof *gemv_types; ti++) {
        const uint32_t type = gemv_types[ti];
        const int k = ggml_get_type_traits(type)->block_size == QK_K;
        for (size_t ni = 0; ni < sizeof n_blocks32 / sizeof *n_blocks32; ni++) {
            const int64_t n_in = k ? QK_K * (1 + n_blocks32[ni] / 8) : 32 * n_blocks32[ni];
            for (size_t oi = 0; oi < sizeof n_outs / sizeof *n_outs; oi++) {
                const int64_t n_out = n_outs[oi];
                qf_weight w = {.name = "w", .type = type, .n_in = n_in, .n_out = n_out};
                void *data = random_weights(type, n_in, n_out, &w.row_bytes);
                float *x = malloc(n_in * sizeof(float)), *y = malloc(n_out * sizeof(float));
                float *y2 = malloc(n_out * sizeof(float)), *yr = malloc(n_out * sizeof(float));
                REQUIRE(t, data && x && y && y2 && yr, "alloc");
                w.data = data;
                random_x(x, n_in);
                CHECK(t, qf_matmul_q8(&w, x, 1, y, NULL, 1) == 0 && qf_matmul_q8(&w, x, 1, y2, NULL, 2) == 0 &&
                             qf_matmul_q8_ref(&w, x, 1, yr) == 0,
                      "%s: matmul", ggml_get_type_traits(type)->name);
                CHECK(t, memcmp(y, yr, n_out * sizeof(float)) == 0, "%s n_in %lld n_out %lld: fast != ref",
                      ggml_get_type_traits(type)->name, (long long)n_in, (long long)n_out);
                CHECK(t, memcmp(y2, yr, n_out * sizeof(float)) == 0, "%s n_in %lld n_out %lld: 2 threads != ref",
                      ggml_get_type_traits(type)->name, (long long)n_in, (long long)n_out);
                free(data); free(x); free(y); free(y2); free(yr);
            }
        }
    }
}

/* A hand-computed product: Q8_0 weights q = 1..32 (d = 1), x = 1 everywhere
 * (q = 127, d = f16(1/127)): y = 528 * 127 * f16(1/127). */
static void test_hand_checked_q8_0(qf_test *t) {
    block_q8_0 wb[2];
    for (int b = 0; b < 2; b++) {
        wb[b].d = qf_f32_to_f16(1.0f);
        for (int j = 0; j < 32; j++) wb[b].qs[j] = (int8_t)(j + 1);
    }
    qf_weight w = {.name = "w", .type = GGML_TYPE_Q8_0, .n_in = 32, .n_out = 2, .row_bytes = sizeof(block_q8_0), .data = wb};
    float x[32], y[2];
    for (int j = 0; j < 32; j++) x[j] = 1.0f;
    REQUIRE(t, qf_matmul_q8(&w, x, 1, y, NULL, 1) == 0, "matmul");
    const float d = qf_f16_to_f32(qf_f32_to_f16(1.0f / 127.0f));
    /* lane l: 127 * (4l+1 + 4l+2 + 4l+3 + 4l+4) = 127 * (16l + 10), each times d exactly once */
    float lanes[8];
    for (int l = 0; l < 8; l++) lanes[l] = fmaf(d, (float)(127 * (16 * l + 10)), 0.0f);
    const float want = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
    CHECK(t, y[0] == want && y[1] == want, "y %.9g %.9g, want %.9g", y[0], y[1], want);
    CHECK(t, fabsf(y[0] - 528.0f) < 528.0f * 1e-3f, "y %.9g ~ 528", y[0]);
    CHECK(t, qf_matmul_q8_supported(GGML_TYPE_Q5_K) == 0 && qf_matmul_q8_supported(GGML_TYPE_F16) == 0, "supported");
    qf_weight bad = w;
    bad.n_in = 48;
    CHECK(t, qf_matmul_q8(&bad, x, 1, y, NULL, 1) == QF_EUNSUPPORTED, "n_in not a multiple of 32");
}

/* The extreme integers: Q8_0 weights of every byte value (-128 included)
 * against activations whose blocks quantize to +-127: the batched kernels'
 * unsigned weights (q + 128) and bias must still give the reference's exact
 * lane sums, for token counts that fill and do not fill a group of 4. */
static void test_extreme_q8_0(qf_test *t) {
    enum { NB = 9, N_OUT = 7 };
    static block_q8_0 wb[N_OUT * NB];
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < N_OUT * NB; i++) {
        wb[i].d = qf_f32_to_f16(0.01f * (float)(1 + i % 5));
        for (int j = 0; j < 32; j++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            wb[i].qs[j] = (int8_t)(i % 3 == 0 ? (j % 2 ? -128 : 127) : (int)(s >> 56) - 128);
        }
    }
    qf_weight w = {.name = "w", .type = GGML_TYPE_Q8_0, .n_in = 32 * NB, .n_out = N_OUT,
                   .row_bytes = sizeof(block_q8_0) * NB, .data = wb};
    static float x[6 * 32 * NB], y[6 * N_OUT], yr[6 * N_OUT];
    for (int i = 0; i < 6 * 32 * NB; i++) x[i] = (i / 32) % 2 ? (i % 2 ? -1.0f : 1.0f) : (i % 7 ? 3.0f : -3.0f);
    for (int64_t T = 2; T <= 6; T += 4) {
        REQUIRE(t, qf_matmul_q8(&w, x, T, y, NULL, 2) == 0, "matmul T=%lld", (long long)T);
        REQUIRE(t, qf_matmul_q8_ref(&w, x, T, yr) == 0, "ref T=%lld", (long long)T);
        CHECK(t, memcmp(y, yr, sizeof(float) * (size_t)(T * N_OUT)) == 0, "T=%lld: fast != ref", (long long)T);
    }
}

QF_TEST_MAIN(test_quantizers_match_spec, test_unpack_matches_dequantize, test_fast_matches_reference,
             test_batch1_shapes, test_hand_checked_q8_0, test_extreme_q8_0)
