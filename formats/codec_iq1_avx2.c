/* codec_iq1_avx2.c - AVX2 versions of the IQ1_S and IQ1_M dequantizers
 * (codec_iq1.h), bit-identical to the _ref ones: the same float
 * operations, dl * (g + delta), 8 lanes at a time. */
#include "codec_iq1.h"

#include "codec_avx2.h"
#include "numfmt.h"

#ifdef __AVX2__

/* y[8] = dl * (g_j + delta) for the 8 int8 levels of grid point gi. */
static inline void store_group(float *y, int gi, __m256 dl, __m256 delta) {
    const __m256 g = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)&qf_iq1_grid[gi])));
    _mm256_storeu_ps(y, _mm256_mul_ps(dl, _mm256_add_ps(g, delta)));
}

void dequantize_row_iq1_s(const block_iq1_s *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / QK_IQ1; i++) {
        const float d = qf_f16_to_f32(x[i].d);
        for (int ib = 0; ib < QK_IQ1 / 32; ib++) {
            const unsigned qh = x[i].qh[ib];
            const __m256 dl = _mm256_set1_ps(d * (float)(2 * ((qh >> 12) & 7) + 1));
            const __m256 delta = _mm256_set1_ps(qh & 0x8000 ? -QF_IQ1_DELTA : QF_IQ1_DELTA);
            for (int l = 0; l < 4; l++, y += 8) store_group(y, x[i].qs[4 * ib + l] | (int)((qh >> 3 * l) & 7) << 8, dl, delta);
        }
    }
}

void dequantize_row_iq1_m(const block_iq1_m *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / QK_IQ1; i++) {
        const float d = qf_f16_to_f32(qf_iq1_m_d(&x[i]));
        for (int ib = 0; ib < QK_IQ1 / 32; ib++) {
            const unsigned sc = (unsigned)x[i].scales[2 * (ib / 2)] | (unsigned)x[i].scales[2 * (ib / 2) + 1] << 8;
            for (int h = 0; h < 2; h++) {
                const __m256 dl = _mm256_set1_ps(d * (float)(2 * ((sc >> (6 * (ib % 2) + 3 * h)) & 7) + 1));
                const unsigned qh = x[i].qh[2 * ib + h];
                for (int s = 0; s < 2; s++, y += 8) {
                    const unsigned q = qh >> 4 * s;
                    store_group(y, x[i].qs[4 * ib + 2 * h + s] | (int)(q & 7) << 8, dl,
                                _mm256_set1_ps(q & 8 ? -QF_IQ1_DELTA : QF_IQ1_DELTA));
                }
            }
        }
    }
}

#else

void dequantize_row_iq1_s(const block_iq1_s *x, float *y, int64_t k) { dequantize_row_iq1_s_ref(x, y, k); }
void dequantize_row_iq1_m(const block_iq1_m *x, float *y, int64_t k) { dequantize_row_iq1_m_ref(x, y, k); }

#endif
