/* codec_iq4nl_avx2.c - AVX2 versions of the IQ4_NL and IQ4_XS dequantizers
 * (codec_iq4nl.h), bit-identical to the _ref ones. */
#include "codec_iq4nl.h"

#include "codec_avx2.h"
#include "numfmt.h"

#ifdef __AVX2__

/* The table lookup is a byte shuffle (16 entries = one 128-bit register),
 * then the same float(q) * d as the reference (d * q and q * d are the same
 * IEEE product). */
void dequantize_row_iq4_nl(const block_iq4_nl *x, float *y, int64_t k) {
    const int64_t nb = k / QK4_NL;
    const __m128i table = _mm_loadu_si128((const __m128i *)kvalues_iq4nl);
    for (int64_t i = 0; i < nb; i++, y += QK4_NL) {
        const __m256 d = _mm256_set1_ps(qf_f16_to_f32(x[i].d));
        __m128i lo, hi;
        split_nibbles(_mm_loadu_si128((const __m128i *)x[i].qs), &lo, &hi);
        store_scaled16(y, _mm_shuffle_epi8(table, lo), d);
        store_scaled16(y + 16, _mm_shuffle_epi8(table, hi), d);
    }
}

/* As IQ4_NL per 32-element sub-block, with dl = d * (ls - 32) as the scale. */
void dequantize_row_iq4_xs(const block_iq4_xs *x, float *y, int64_t k) {
    const __m128i table = _mm_loadu_si128((const __m128i *)kvalues_iq4nl);
    for (int64_t i = 0; i < k / QK_IQ4_XS; i++) {
        const float d = qf_f16_to_f32(x[i].d);
        for (int ib = 0; ib < QK_IQ4_XS / 32; ib++, y += 32) {
            const int ls = ((x[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0x0F) | (((x[i].scales_h >> 2 * ib) & 3) << 4);
            const __m256 dl = _mm256_set1_ps(d * (float)(ls - 32));
            __m128i lo, hi;
            split_nibbles(_mm_loadu_si128((const __m128i *)(x[i].qs + 16 * ib)), &lo, &hi);
            store_scaled16(y, _mm_shuffle_epi8(table, lo), dl);
            store_scaled16(y + 16, _mm_shuffle_epi8(table, hi), dl);
        }
    }
}

/* kvalues_iq4nl[qf_iq4_nl_nearest(v)] for 8 lanes: the level of the last
 * midpoint at or below v (15 for NaN), as float. */
static inline __m256 iq4_nl_value8(__m256 v) {
    __m256 q = _mm256_set1_ps((float)kvalues_iq4nl[0]);
    for (int i = 0; i < 15; ++i)
        q = _mm256_blendv_ps(q, _mm256_set1_ps((float)kvalues_iq4nl[i + 1]),
                             _mm256_cmp_ps(v, _mm256_set1_ps(qf_iq4_nl_midpoints[i]), _CMP_GE_OQ));
    return _mm256_blendv_ps(q, _mm256_set1_ps((float)kvalues_iq4nl[15]), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}

void qf_iq4_nl_fit16(const float *x, const float *w, const float id[16], float sumqx[16], float sumq2[16]) {
    for (int h = 0; h < 16; h += 8) {
        const __m256 idv = _mm256_loadu_ps(id + h);
        __m256 sqx = _mm256_setzero_ps(), sq2 = _mm256_setzero_ps();
        for (int j = 0; j < QK4_NL; ++j) {
            const __m256 xj = _mm256_set1_ps(x[j]);
            const __m256 q = iq4_nl_value8(_mm256_mul_ps(idv, xj));
            const __m256 wq = _mm256_mul_ps(_mm256_set1_ps(w[j]), q);
            sqx = _mm256_add_ps(sqx, _mm256_mul_ps(wq, xj));
            sq2 = _mm256_add_ps(sq2, _mm256_mul_ps(wq, q));
        }
        _mm256_storeu_ps(sumqx + h, sqx);
        _mm256_storeu_ps(sumq2 + h, sq2);
    }
}

#else

void dequantize_row_iq4_nl(const block_iq4_nl *x, float *y, int64_t k) { dequantize_row_iq4_nl_ref(x, y, k); }
void dequantize_row_iq4_xs(const block_iq4_xs *x, float *y, int64_t k) { dequantize_row_iq4_xs_ref(x, y, k); }

void qf_iq4_nl_fit16(const float *x, const float *w, const float id[16], float sumqx[16], float sumq2[16]) {
    qf_iq4_nl_fit16_ref(x, w, id, sumqx, sumq2);
}

#endif
