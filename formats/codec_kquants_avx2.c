/* codec_kquants_avx2.c - AVX2 versions of the hot K-quant codecs
 * (codec_kquants.h): the Q4_K, Q6_K and Q8_K dequantizers and the Q8_K
 * block quantizer, bit-identical to their scalar `_ref` twins in
 * codec_kquants.c (tests/unit/quants_test.c, matmul_q8_test.c). Types without
 * a vector version forward to the reference.
 */
#include "codec_kquants.h"

#include <math.h>
#include <string.h>

#include "codec_avx2.h"
#include "numfmt.h"

#ifdef __AVX2__

void dequantize_row_q4_K(const block_q4_K *x, float *y, int64_t k) {
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = qf_f16_to_f32(x[i].d), dmin = qf_f16_to_f32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int j = 0; j < QK_K / 32; j += 2, q += 32, y += 64) {
            uint8_t sc, m;
            qf_get_scale_min_k4(j, x[i].scales, &sc, &m);
            const __m256 d1 = _mm256_set1_ps(d * sc), m1 = _mm256_set1_ps(dmin * m);
            qf_get_scale_min_k4(j + 1, x[i].scales, &sc, &m);
            const __m256 d2 = _mm256_set1_ps(d * sc), m2 = _mm256_set1_ps(dmin * m);
            for (int h = 0; h < 32; h += 16) {
                __m128i lo, hi;
                split_nibbles(_mm_loadu_si128((const __m128i *)(q + h)), &lo, &hi);
                store_affine16(y + h, lo, d1, m1);
                store_affine16(y + 32 + h, hi, d2, m2);
            }
        }
    }
}

/* Q6_K, one 128-element half: quants of rows r = 0..3 (elements 32r..32r+31). */
static inline void q6_K_rows(const uint8_t *ql, const uint8_t *qh, __m256i rows[4]) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x03);
    const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
    const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
    const __m256i h = _mm256_loadu_si256((const __m256i *)qh);
    const __m256i lows[4] = {
        _mm256_and_si256(l0, m4), _mm256_and_si256(l1, m4),
        _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
    };
    for (int r = 0; r < 4; r++) {
        __m256i high = _mm256_and_si256(_mm256_srli_epi16(h, 2 * r), m2);
        __m256i q = _mm256_or_si256(lows[r], _mm256_slli_epi16(high, 4)); /* 0..63 */
        rows[r] = _mm256_sub_epi8(q, _mm256_set1_epi8(32));
    }
}

void dequantize_row_q6_K(const block_q6_K *x, float *y, int64_t k) {
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = qf_f16_to_f32(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, y += 128) {
            __m256i rows[4];
            q6_K_rows(ql, qh, rows);
            for (int r = 0; r < 4; r++) {
                /* (d*sc)*q, as the reference multiplies */
                const __m256 s0 = _mm256_set1_ps(d * (float)sc[2 * r]);
                const __m256 s1 = _mm256_set1_ps(d * (float)sc[2 * r + 1]);
                store_scaled16(y + 32 * r, _mm256_castsi256_si128(rows[r]), s0);
                store_scaled16(y + 32 * r + 16, _mm256_extracti128_si256(rows[r], 1), s1);
            }
        }
    }
}

void dequantize_row_q8_K(const block_q8_K *x, float *y, int64_t k) {
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++, y += QK_K) {
        const __m256 d = _mm256_set1_ps(x[i].d);
        for (int j = 0; j < QK_K; j += 16)
            store_scaled16(y + j, _mm_loadu_si128((const __m128i *)(x[i].qs + j)), d);
    }
}

/* Round-half-even through _mm256_round_ps equals qk_nearest_int for these
 * magnitudes (|iscale*x| <= 127). */
void qf_quantize_q8_K_block(const float x[256], int8_t q[256], float *d, int16_t sum32[8]) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_andnot_ps(sign, _mm256_loadu_ps(x));
    for (int j = 8; j < QK_K; j += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    if (amax == 0.0f) {
        *d = 0.0f;
        memset(q, 0, QK_K);
        memset(sum32, 0, 8 * sizeof *sum32);
        return;
    }
    int first = 0; /* the first element of largest magnitude sets the sign */
    while (fabsf(x[first]) != amax) first++;
    const float iscale = -127.0f / x[first];
    const __m256 vis = _mm256_set1_ps(iscale), v127 = _mm256_set1_ps(127.0f);
    for (int g = 0; g < 8; g++) {
        __m256i i[4];
        for (int j = 0; j < 4; j++) {
            __m256 v = _mm256_round_ps(_mm256_mul_ps(vis, _mm256_loadu_ps(x + 32 * g + 8 * j)),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            i[j] = _mm256_cvtps_epi32(_mm256_min_ps(v, v127));
        }
        __m256i t = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
        __m128i t4 = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
        t4 = _mm_add_epi32(t4, _mm_shuffle_epi32(t4, 0x4e));
        t4 = _mm_add_epi32(t4, _mm_shuffle_epi32(t4, 0xb1));
        sum32[g] = (int16_t)_mm_cvtsi128_si32(t4);
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i[0], i[1]), _mm256_packs_epi32(i[2], i[3]));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + 32 * g), p);
    }
    *d = 1.0f / iscale;
}

#else

void dequantize_row_q4_K(const block_q4_K *x, float *y, int64_t k) { dequantize_row_q4_K_ref(x, y, k); }
void dequantize_row_q6_K(const block_q6_K *x, float *y, int64_t k) { dequantize_row_q6_K_ref(x, y, k); }
void dequantize_row_q8_K(const block_q8_K *x, float *y, int64_t k) { dequantize_row_q8_K_ref(x, y, k); }
void qf_quantize_q8_K_block(const float x[256], int8_t q[256], float *d, int16_t sum32[8]) {
    qf_quantize_q8_K_block_ref(x, q, d, sum32);
}

#endif

/* No vector version (rarely on a hot path). */
void dequantize_row_q2_K(const block_q2_K *x, float *y, int64_t k) { dequantize_row_q2_K_ref(x, y, k); }
void dequantize_row_q3_K(const block_q3_K *x, float *y, int64_t k) { dequantize_row_q3_K_ref(x, y, k); }
void dequantize_row_q5_K(const block_q5_K *x, float *y, int64_t k) { dequantize_row_q5_K_ref(x, y, k); }
