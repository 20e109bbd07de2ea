/* codec_iquants_avx2.c - AVX2 versions of the grid i-quant dequantizers
 * (codec_iquants.h), bit-identical to the _ref ones. */
#include "codec_iquants.h"

#include <float.h>
#include <limits.h>
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

/* ------------------------------------------------------------------------ */
/* The grid-point search (iq_best_candidate)                                */
/* ------------------------------------------------------------------------ */

/* The smallest of the 8 int32 lanes of v. */
static inline int hmin8_epi32(__m256i v) {
    __m128i m = _mm_min_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    m = _mm_min_epi32(m, _mm_shuffle_epi32(m, 0x4E));
    m = _mm_min_epi32(m, _mm_shuffle_epi32(m, 0xB1));
    return _mm_cvtsi128_si32(m);
}

/* The level bytes of dimension i of 8 candidate rows of 8 bytes, rows
 * c0..c3 in a and c4..c7 in b, as int32 lanes in the order
 * c0 c1 c4 c5 c2 c3 c6 c7. */
static inline __m256i rows8_dim(__m256i a, __m256i b, int i) {
    const __m256i z = _mm256_set1_epi8(-128), bi = _mm256_set1_epi8((char)i);
    const __m256i ca = _mm256_setr_epi8(0, -128, -128, -128, 8, -128, -128, -128, -128, -128, -128, -128, -128, -128,
                                        -128, -128, 0, -128, -128, -128, 8, -128, -128, -128, -128, -128, -128, -128,
                                        -128, -128, -128, -128);
    const __m256i cb = _mm256_alignr_epi8(ca, z, 8); /* the same bytes moved to dwords 2, 3 */
    return _mm256_or_si256(_mm256_shuffle_epi8(a, _mm256_add_epi8(ca, bi)),
                           _mm256_shuffle_epi8(b, _mm256_add_epi8(cb, bi)));
}

int iq_best_candidate_avx2(const uint8_t *grid, int dim, int shift, const uint16_t *cand, int n, const float v[8],
                           const float *x, const float *w) {
    const __m256 vt = _mm256_loadu_ps(v);
    const __m128i sh = _mm_cvtsi32_si128(shift);
    const __m256i order = dim == 8 ? _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7) : _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256 best = _mm256_set1_ps(FLT_MAX);
    __m256i best_pos = _mm256_set1_epi32(INT_MAX);
    uint16_t pad[8];
    for (int j0 = 0; j0 < n; j0 += 8) {
        const uint16_t *c = cand + j0;
        if (n - j0 < 8) { /* the tail padded with candidate 0, which wins every tie with its copies */
            for (int k = 0; k < 8; ++k) pad[k] = cand[j0 + k < n ? j0 + k : 0];
            c = pad;
        }
        const __m256i idx = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)c));
        __m256 d2 = _mm256_setzero_ps();
        if (dim == 8) {
            const __m256i a = _mm256_i32gather_epi64((const long long *)grid, _mm256_castsi256_si128(idx), 8);
            const __m256i b = _mm256_i32gather_epi64((const long long *)grid, _mm256_extracti128_si256(idx, 1), 8);
            for (int i = 0; i < 8; ++i) {
                const __m256i l = _mm256_srl_epi32(rows8_dim(a, b, i), sh);
                const __m256 diff = _mm256_sub_ps(_mm256_permutevar8x32_ps(vt, l), _mm256_set1_ps(x[i]));
                d2 = _mm256_add_ps(d2, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(w[i]), diff), diff));
            }
        } else {
            const __m256i r = _mm256_i32gather_epi32((const int *)grid, idx, 4);
            for (int i = 0; i < 4; ++i) {
                const __m256i byte = _mm256_and_si256(_mm256_srl_epi32(r, _mm_cvtsi32_si128(8 * i)), _mm256_set1_epi32(0xFF));
                const __m256i l = _mm256_srl_epi32(byte, sh);
                const __m256 diff = _mm256_sub_ps(_mm256_permutevar8x32_ps(vt, l), _mm256_set1_ps(x[i]));
                d2 = _mm256_add_ps(d2, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(w[i]), diff), diff));
            }
        }
        const __m256 lt = _mm256_cmp_ps(d2, best, _CMP_LT_OQ);
        best = _mm256_blendv_ps(best, d2, lt);
        best_pos = _mm256_blendv_epi8(best_pos, _mm256_add_epi32(order, _mm256_set1_epi32(j0)), _mm256_castps_si256(lt));
    }
    const float m = hmin8(best);
    if (!(m < FLT_MAX)) return 0;
    const __m256 eq = _mm256_cmp_ps(best, _mm256_set1_ps(m), _CMP_EQ_OQ);
    return hmin8_epi32(_mm256_blendv_epi8(_mm256_set1_epi32(INT_MAX), best_pos, _mm256_castps_si256(eq)));
}

/* Short lists of groups of 4 stay scalar (the vector setup costs as much as
 * the few sums); up to 8 candidates take one AVX2 vector, more the AVX-512
 * version where compiled in. */
int iq_best_candidate(const uint8_t *grid, int dim, int shift, const uint16_t *cand, int n, const float v[8],
                      const float *x, const float *w) {
    if (dim == 4 && n <= 8) return iq_best_candidate_ref(grid, dim, shift, cand, n, v, x, w);
#if defined(__AVX512F__) && defined(__AVX512BW__)
    if (n > 8) return iq_best_candidate_avx512(grid, dim, shift, cand, n, v, x, w);
#endif
    return iq_best_candidate_avx2(grid, dim, shift, cand, n, v, x, w);
}

#else

void dequantize_row_iq3_s(const block_iq3_s *x, float *y, int64_t k) { dequantize_row_iq3_s_ref(x, y, k); }
void dequantize_row_iq3_xxs(const block_iq3_xxs *x, float *y, int64_t k) { dequantize_row_iq3_xxs_ref(x, y, k); }
void dequantize_row_iq2_xxs(const block_iq2_xxs *x, float *y, int64_t k) { dequantize_row_iq2_xxs_ref(x, y, k); }
int iq_best_candidate(const uint8_t *grid, int dim, int shift, const uint16_t *cand, int n, const float v[8],
                      const float *x, const float *w) {
    return iq_best_candidate_ref(grid, dim, shift, cand, n, v, x, w);
}

#endif
