/* codec_iquants_avx2.c - AVX2 versions of the grid i-quant dequantizers
 * (codec_iquants.h), bit-identical to the _ref ones. */
#include "codec_iquants.h"

#include <string.h>

#include "codec_avx2.h"
#include "numfmt.h"

#ifdef __AVX2__

/* Two grid points (4 bytes each) -> 8 floats db * g with signs s. */
static inline void store_grid8(float *y, uint32_t g0, uint32_t g1, __m256 db, uint8_t s) {
    store_signed_grid8(y, _mm_set_epi32(0, 0, (int)g1, (int)g0), db, s);
}

void dequantize_row_iq3_s(const block_iq3_s *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / QK_IQ; i++) {
        const float d = qf_f16_to_f32(x[i].d);
        for (int ib = 0; ib < QK_IQ / 32; ib++) {
            const __m256 db = _mm256_set1_ps(d * (float)(1 + 2 * ((x[i].scales[ib / 2] >> 4 * (ib % 2)) & 0x0F)));
            for (int l = 0; l < 4; l++, y += 8) {
                const int g = 2 * l;
                const int i0 = x[i].qs[8 * ib + g] | (((x[i].qh[ib] >> g) & 1) << 8);
                const int i1 = x[i].qs[8 * ib + g + 1] | (((x[i].qh[ib] >> (g + 1)) & 1) << 8);
                store_grid8(y, qf_iq3s_grid[i0], qf_iq3s_grid[i1], db, x[i].signs[4 * ib + l]);
            }
        }
    }
}
void dequantize_row_iq3_xxs(const block_iq3_xxs *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / QK_IQ; i++) {
        const float d = qf_f16_to_f32(x[i].d);
        for (int ib = 0; ib < QK_IQ / 32; ib++) {
            uint32_t ss;
            memcpy(&ss, x[i].qs + QK_IQ / 4 + 4 * ib, 4);
            const __m256 db = _mm256_set1_ps(d * (0.5f + (float)(ss >> 28)) * 0.5f);
            for (int l = 0; l < 4; l++, y += 8)
                store_grid8(y, qf_iq3xxs_grid[x[i].qs[8 * ib + 2 * l]], qf_iq3xxs_grid[x[i].qs[8 * ib + 2 * l + 1]], db,
                            qf_iq_signs((ss >> 7 * l) & 127));
        }
    }
}
/* 8 grid bytes -> 8 floats db * g, negated where the sign bits s are set. */
void dequantize_row_iq2_xxs(const block_iq2_xxs *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / QK_IQ; i++) {
        const float d = qf_f16_to_f32(x[i].d);
        for (int ib = 0; ib < QK_IQ / 32; ib++) {
            uint32_t w[2];
            memcpy(w, x[i].qs + 4 * ib, 8);
            const __m256 db = _mm256_set1_ps(d * (0.5f + (float)(w[1] >> 28)) * 0.25f);
            for (int l = 0; l < 4; l++, y += 8) {
                const uint64_t g = qf_iq2xxs_grid[(w[0] >> 8 * l) & 0xFF];
                store_signed_grid8(y, _mm_cvtsi64_si128((long long)g), db, qf_iq_signs((w[1] >> 7 * l) & 127));
            }
        }
    }
}

#else

void dequantize_row_iq3_s(const block_iq3_s *x, float *y, int64_t k) { dequantize_row_iq3_s_ref(x, y, k); }
void dequantize_row_iq3_xxs(const block_iq3_xxs *x, float *y, int64_t k) { dequantize_row_iq3_xxs_ref(x, y, k); }
void dequantize_row_iq2_xxs(const block_iq2_xxs *x, float *y, int64_t k) { dequantize_row_iq2_xxs_ref(x, y, k); }

#endif
