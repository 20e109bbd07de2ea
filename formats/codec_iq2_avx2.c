/* codec_iq2_avx2.c - AVX2 versions of the IQ2_XS and IQ2_S dequantizers
 * (codec_iq2.h), bit-identical to the _ref ones. */
#include "codec_iq2.h"

#include "codec_avx2.h"
#include "numfmt.h"

#ifdef __AVX2__

/* One grid point (8 level bytes) -> 8 floats db * g, negated (sign bit
 * flipped, as the reference does) where the 8 sign bits s are set. */
static inline void store_point8(float *y, uint64_t g, __m256 db, uint8_t s) {
    const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)g)));
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256i neg = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(s), bit), bit);
    const __m256 sign = _mm256_and_ps(_mm256_castsi256_ps(neg), _mm256_set1_ps(-0.0f));
    _mm256_storeu_ps(y, _mm256_xor_ps(_mm256_mul_ps(db, v), sign));
}

void dequantize_row_iq2_xs(const block_iq2_xs *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / QK_IQ; i++) {
        const float d = qf_f16_to_f32(x[i].d);
        for (int ib = 0; ib < QK_IQ / 32; ib++) {
            const uint8_t sc = x[i].scales[ib];
            const __m256 db[2] = {_mm256_set1_ps(d * (0.5f + (float)(sc & 0x0F)) * 0.25f),
                                  _mm256_set1_ps(d * (0.5f + (float)(sc >> 4)) * 0.25f)};
            for (int l = 0; l < 4; l++, y += 8) {
                const uint16_t q = x[i].qs[4 * ib + l];
                store_point8(y, qf_iq2xs_grid[q & 511], db[l / 2], qf_iq_signs(q >> 9));
            }
        }
    }
}

void dequantize_row_iq2_s(const block_iq2_s *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / QK_IQ; i++) {
        const float d = qf_f16_to_f32(x[i].d);
        for (int ib = 0; ib < QK_IQ / 32; ib++) {
            const uint8_t sc = x[i].scales[ib];
            const __m256 db[2] = {_mm256_set1_ps(d * (0.5f + (float)(sc & 0x0F)) * 0.25f),
                                  _mm256_set1_ps(d * (0.5f + (float)(sc >> 4)) * 0.25f)};
            for (int l = 0; l < 4; l++, y += 8) {
                const int g = 4 * ib + l;
                const int idx = x[i].qs[g] | (((x[i].qh[ib] >> 2 * l) & 3) << 8);
                store_point8(y, qf_iq2s_grid[idx], db[l / 2], x[i].qs[QK_IQ / 8 + g]);
            }
        }
    }
}

#else

void dequantize_row_iq2_xs(const block_iq2_xs *x, float *y, int64_t k) { dequantize_row_iq2_xs_ref(x, y, k); }
void dequantize_row_iq2_s(const block_iq2_s *x, float *y, int64_t k) { dequantize_row_iq2_s_ref(x, y, k); }

#endif
