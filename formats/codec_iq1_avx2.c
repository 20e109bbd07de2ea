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

/* The scores of the splits (i1, i2..i2+7) for the level set x: sumqx and
 * sumq2 of iq1_s_scan_ref, one split per lane, the same operations. */
static inline void split_scores8(const float *sumx, const float *sumw, int i1, int i2, const float *x, __m256 *qx,
                                 __m256 *q2) {
    const __m256 x0 = _mm256_set1_ps(x[0]), x1 = _mm256_set1_ps(x[1]), x2 = _mm256_set1_ps(x[2]);
    const __m256 sx2 = _mm256_loadu_ps(sumx + i2), sw2 = _mm256_loadu_ps(sumw + i2);
    const __m256 p = _mm256_set1_ps(sumx[i1] - sumx[0]), pw = _mm256_set1_ps(sumw[i1] - sumw[0]);
    const __m256 q = _mm256_sub_ps(sx2, _mm256_set1_ps(sumx[i1])), qw = _mm256_sub_ps(sw2, _mm256_set1_ps(sumw[i1]));
    const __m256 r = _mm256_sub_ps(_mm256_set1_ps(sumx[32]), sx2), rw = _mm256_sub_ps(_mm256_set1_ps(sumw[32]), sw2);
    *qx = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, x0), _mm256_mul_ps(q, x1)), _mm256_mul_ps(r, x2));
    *q2 = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(pw, x0), x0), _mm256_mul_ps(_mm256_mul_ps(qw, x1), x1)),
                        _mm256_mul_ps(_mm256_mul_ps(rw, x2), x2));
}

/* Eight splits at a time for both level sets; when a lane of either would
 * replace the best at the current best_score, the eight are replayed in the
 * reference's order (i2, s) from the stored scores. */
void iq1_s_scan(const float *sumx, const float *sumw, int i1, const float xx[2][3], iq1_split_best *b) {
    for (int i2 = i1; i2 <= 32; i2 += 8) {
        __m256 qx[2], q2[2];
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        const __m256 valid = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(33 - i2), lane));
        const __m256 best = _mm256_set1_ps(b->best_score);
        int any = 0;
        for (int s = 0; s < 2; ++s) {
            split_scores8(sumx, sumw, i1, i2, xx[s], &qx[s], &q2[s]);
            const __m256 pos = _mm256_cmp_ps(q2[s], _mm256_setzero_ps(), _CMP_GT_OQ);
            const __m256 wins = _mm256_cmp_ps(_mm256_mul_ps(qx[s], qx[s]), _mm256_mul_ps(best, q2[s]), _CMP_GT_OQ);
            any |= _mm256_movemask_ps(_mm256_and_ps(valid, _mm256_and_ps(pos, wins)));
        }
        if (!any) continue;
        float sqx[2][8], sq2[2][8];
        for (int s = 0; s < 2; ++s) {
            _mm256_storeu_ps(sqx[s], qx[s]);
            _mm256_storeu_ps(sq2[s], q2[s]);
        }
        for (int k = 0; k < 8 && i2 + k <= 32; ++k)
            for (int s = 0; s < 2; ++s)
                if (sq2[s][k] > 0 && sqx[s][k] * sqx[s][k] > b->best_score * sq2[s][k]) {
                    b->scale = sqx[s][k] / sq2[s][k];
                    b->best_score = b->scale * sqx[s][k];
                    b->best1 = i1;
                    b->best2 = i2 + k;
                    b->best_shift = s ? -1 : 1;
                }
    }
}

#else

void dequantize_row_iq1_s(const block_iq1_s *x, float *y, int64_t k) { dequantize_row_iq1_s_ref(x, y, k); }
void dequantize_row_iq1_m(const block_iq1_m *x, float *y, int64_t k) { dequantize_row_iq1_m_ref(x, y, k); }
void iq1_s_scan(const float *sumx, const float *sumw, int i1, const float xx[2][3], iq1_split_best *b) {
    iq1_s_scan_ref(sumx, sumw, i1, xx, b);
}

#endif
