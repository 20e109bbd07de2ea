/* codec_iq4nl_avx2.c - AVX2 version of the IQ4_NL dequantizer
 * (codec_iq4nl.h), bit-identical to dequantize_row_iq4_nl_ref. */
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


#else

void dequantize_row_iq4_nl(const block_iq4_nl *x, float *y, int64_t k) { dequantize_row_iq4_nl_ref(x, y, k); }

#endif
