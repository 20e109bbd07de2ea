/* codec_iquants_avx512.c - the AVX-512 version of the i-quant grid-point
 * search (iq_best_candidate, codec_iquants.h): 16 candidates per vector,
 * each candidate's weighted squared error summed in its own lane with the
 * scalar reference's operations in its order (no FMA), so the sums and the
 * first-best choice are bit-identical to iq_best_candidate_ref. */
#include "codec_iquants.h"

#if defined(__AVX512F__) && defined(__AVX512BW__)

#include <float.h>
#include <immintrin.h>
#include <limits.h>

/* The level bytes of dimension i of 16 candidate rows of 8 bytes, rows
 * c0..c7 in a and c8..c15 in b, as int32 lanes in the order
 * (128-bit lane k: c2k, c2k+1, c8+2k, c9+2k). */

static inline __m512i rows16_dim(__m512i a, __m512i b, int i) {
    const __m128i ca = _mm_setr_epi8(0, -128, -128, -128, 8, -128, -128, -128, -128, -128, -128, -128, -128, -128,
                                     -128, -128);
    const __m128i cb = _mm_alignr_epi8(ca, _mm_set1_epi8(-128), 8); /* the same bytes moved to dwords 2, 3 */
    const __m512i bi = _mm512_set1_epi8((char)i);
    return _mm512_or_si512(_mm512_shuffle_epi8(a, _mm512_add_epi8(_mm512_broadcast_i32x4(ca), bi)),
                           _mm512_shuffle_epi8(b, _mm512_add_epi8(_mm512_broadcast_i32x4(cb), bi)));
}

int iq_best_candidate_avx512(const uint8_t *grid, int dim, int shift, const uint16_t *cand, int n, const float v[8],
                             const float *x, const float *w) {
    const __m512 vt = _mm512_zextps256_ps512(_mm256_loadu_ps(v));
    const __m128i sh = _mm_cvtsi32_si128(shift);
    const __m512i order = dim == 8 ? _mm512_setr_epi32(0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15)
                                   : _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512 best = _mm512_set1_ps(FLT_MAX);
    __m512i best_pos = _mm512_set1_epi32(INT_MAX);
    uint16_t pad[16];
    for (int j0 = 0; j0 < n; j0 += 16) {
        const uint16_t *c = cand + j0;
        if (n - j0 < 16) { /* the tail padded with candidate 0, which wins every tie with its copies */
            for (int k = 0; k < 16; ++k) pad[k] = cand[j0 + k < n ? j0 + k : 0];
            c = pad;
        }
        const __m512i idx = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)c));
        __m512 d2 = _mm512_setzero_ps();
        if (dim == 8) {
            const __m512i a = _mm512_i32gather_epi64(_mm512_castsi512_si256(idx), grid, 8);
            const __m512i b = _mm512_i32gather_epi64(_mm512_extracti64x4_epi64(idx, 1), grid, 8);
            for (int i = 0; i < 8; ++i) {
                const __m512i l = _mm512_srl_epi32(rows16_dim(a, b, i), sh);
                const __m512 diff = _mm512_sub_ps(_mm512_permutexvar_ps(l, vt), _mm512_set1_ps(x[i]));
                d2 = _mm512_add_ps(d2, _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(w[i]), diff), diff));
            }
        } else {
            const __m512i r = _mm512_i32gather_epi32(idx, grid, 4);
            for (int i = 0; i < 4; ++i) {
                const __m512i byte = _mm512_and_si512(_mm512_srl_epi32(r, _mm_cvtsi32_si128(8 * i)), _mm512_set1_epi32(0xFF));
                const __m512i l = _mm512_srl_epi32(byte, sh);
                const __m512 diff = _mm512_sub_ps(_mm512_permutexvar_ps(l, vt), _mm512_set1_ps(x[i]));
                d2 = _mm512_add_ps(d2, _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(w[i]), diff), diff));
            }
        }
        const __mmask16 lt = _mm512_cmp_ps_mask(d2, best, _CMP_LT_OQ);
        best = _mm512_mask_mov_ps(best, lt, d2);
        best_pos = _mm512_mask_mov_epi32(best_pos, lt, _mm512_add_epi32(order, _mm512_set1_epi32(j0)));
    }
    const float m = _mm512_reduce_min_ps(best);
    if (!(m < FLT_MAX)) return 0;
    const __mmask16 eq = _mm512_cmp_ps_mask(best, _mm512_set1_ps(m), _CMP_EQ_OQ);
    return _mm512_mask_reduce_min_epi32(eq, best_pos);
}

#endif
