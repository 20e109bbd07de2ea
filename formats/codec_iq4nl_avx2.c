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

#else

void dequantize_row_iq4_nl(const block_iq4_nl *x, float *y, int64_t k) { dequantize_row_iq4_nl_ref(x, y, k); }
void dequantize_row_iq4_xs(const block_iq4_xs *x, float *y, int64_t k) { dequantize_row_iq4_xs_ref(x, y, k); }

#endif
