/* codec_iq2_avx2.c - AVX2 versions of the IQ2_XS and IQ2_S dequantizers
 * (codec_iq2.h), bit-identical to the _ref ones. */
#include "codec_iq2.h"

#include "codec_avx2.h"
#include "numfmt.h"

#ifdef __AVX2__

/* The scale of group g (8 weights): sub-block g/2's nibble of scales[g/4]. */
static inline __m256 group_scale(float d, const uint8_t *scales, int g) {
    return _mm256_set1_ps(d * (0.5f + (float)((scales[g / 4] >> 4 * (g / 2 % 2)) & 0x0F)) * 0.25f);
}

void dequantize_row_iq2_xs(const block_iq2_xs *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / QK_IQ; i++) {
        const float d = qf_f16_to_f32(x[i].d);
        for (int g = 0; g < QK_IQ / 8; g++, y += 8) {
            const uint16_t q = x[i].qs[g];
            store_signed_grid8(y, _mm_cvtsi64_si128((long long)qf_iq2xs_grid[q & 511]), group_scale(d, x[i].scales, g),
                               qf_iq_signs(q >> 9));
        }
    }
}

void dequantize_row_iq2_s(const block_iq2_s *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / QK_IQ; i++) {
        const float d = qf_f16_to_f32(x[i].d);
        for (int g = 0; g < QK_IQ / 8; g++, y += 8) {
            const int idx = x[i].qs[g] | (((x[i].qh[g / 4] >> 2 * (g % 4)) & 3) << 8);
            store_signed_grid8(y, _mm_cvtsi64_si128((long long)qf_iq2s_grid[idx]), group_scale(d, x[i].scales, g),
                               x[i].qs[QK_IQ / 8 + g]);
        }
    }
}

#else

void dequantize_row_iq2_xs(const block_iq2_xs *x, float *y, int64_t k) { dequantize_row_iq2_xs_ref(x, y, k); }
void dequantize_row_iq2_s(const block_iq2_s *x, float *y, int64_t k) { dequantize_row_iq2_s_ref(x, y, k); }

#endif
