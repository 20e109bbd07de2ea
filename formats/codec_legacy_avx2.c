/* codec_legacy_avx2.c - AVX2 versions of the hot legacy block codecs
 * (codec_legacy.h).
 *
 * Every function here computes exactly what its scalar `_ref` twin in
 * codec_legacy.c computes: the same IEEE operations (multiply, then
 * add/subtract: no FMA, which would round once instead of twice), the same
 * per-block scale arithmetic done in scalar float, and the same
 * truncating/rounding conversions. tests/unit/quants_test.c checks fast == ref
 * bit for bit on random, zero, subnormal and huge inputs. Types without a
 * vector version forward to the reference.
 */
#include "codec_legacy.h"

#include <math.h>
#include <string.h>

#include "codec_avx2.h"
#include "numfmt.h"

#ifdef __AVX2__

/* ---------------- quantize ---------------- */

/* roundf (half away from zero) of each lane, as float: truncate, then step
 * one away from zero if the dropped fraction (exact) is >= 0.5. */
static inline __m256 round_half_away(__m256 v) {
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = abs_ps(_mm256_sub_ps(v, t));
    __m256 step = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(v, _mm256_set1_ps(-0.0f)));
    __m256 up = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    return _mm256_add_ps(t, _mm256_and_ps(up, step));
}

/* Lane-wise maxima of 8 vectors -> [hmax(a[0]), ..., hmax(a[7])]. The inputs
 * hold no NaN, so the order of the max operations does not matter. */
static inline __m256 hmax8_x8(const __m256 a[8]) {
    __m256 s01 = _mm256_max_ps(_mm256_unpacklo_ps(a[0], a[1]), _mm256_unpackhi_ps(a[0], a[1]));
    __m256 s23 = _mm256_max_ps(_mm256_unpacklo_ps(a[2], a[3]), _mm256_unpackhi_ps(a[2], a[3]));
    __m256 s45 = _mm256_max_ps(_mm256_unpacklo_ps(a[4], a[5]), _mm256_unpackhi_ps(a[4], a[5]));
    __m256 s67 = _mm256_max_ps(_mm256_unpacklo_ps(a[6], a[7]), _mm256_unpackhi_ps(a[6], a[7]));
    /* per 128-bit half: [a0, a1, a2, a3] (resp. a4..a7) reduced over that half */
    __m256 u = _mm256_max_ps(_mm256_shuffle_ps(s01, s23, _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm256_shuffle_ps(s01, s23, _MM_SHUFFLE(3, 2, 3, 2)));
    __m256 w = _mm256_max_ps(_mm256_shuffle_ps(s45, s67, _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm256_shuffle_ps(s45, s67, _MM_SHUFFLE(3, 2, 3, 2)));
    return _mm256_max_ps(_mm256_permute2f128_ps(u, w, 0x20), _mm256_permute2f128_ps(u, w, 0x31));
}

/* 32 floats -> 32 signed bytes round_half_away(x * id), as the reference. */
static inline void q8_0_bytes(const __m256 v[4], float id, int8_t *qs) {
    const __m256i low_byte = _mm256_set1_epi32(0xFF);
    __m256i q[4];
    for (int r = 0; r < 4; r++) {
        __m256 rounded = round_half_away(_mm256_mul_ps(v[r], _mm256_set1_ps(id)));
        /* cvtps gives INT32_MIN for NaN/huge, like the scalar path; keep the low byte */
        q[r] = _mm256_and_si256(_mm256_cvtps_epi32(rounded), low_byte);
    }
    _mm256_storeu_si256((__m256i *)qs, pack_u8x32(q[0], q[1], q[2], q[3]));
}

/* Eight blocks at a time: their scales d = amax/127, id = 1/d and the F16
 * conversion of d are computed in one vector each (the same IEEE operations
 * as the scalar reference, and F16C's round-to-nearest-even equals
 * qf_f32_to_f16 on every input), which takes the serial per-block scale
 * arithmetic off the critical path. */
void quantize_row_q8_0(const float *x, block_q8_0 *y, int64_t k) {
    const int64_t nb = k / QK8_0;
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8, x += 8 * QK8_0) {
        __m256 amax[8];
        for (int b = 0; b < 8; b++) {
            amax[b] = _mm256_setzero_ps();
            for (int r = 0; r < 4; r++) /* NaN lanes keep amax, like fmaxf */
                amax[b] = _mm256_max_ps(abs_ps(_mm256_loadu_ps(x + b * QK8_0 + 8 * r)), amax[b]);
        }
        const __m256 d = _mm256_div_ps(hmax8_x8(amax), _mm256_set1_ps((1 << 7) - 1));
        const __m256 nonzero = _mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_NEQ_UQ);
        const __m256 id = _mm256_and_ps(nonzero, _mm256_div_ps(_mm256_set1_ps(1.0f), d));
        uint16_t dh[8];
        float idv[8];
        _mm_storeu_si128((__m128i *)dh, _mm256_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        _mm256_storeu_ps(idv, id);
        for (int b = 0; b < 8; b++) {
            __m256 v[4];
            for (int r = 0; r < 4; r++) v[r] = _mm256_loadu_ps(x + b * QK8_0 + 8 * r);
            y[i + b].d = dh[b];
            q8_0_bytes(v, idv[b], y[i + b].qs);
        }
    }
    for (; i < nb; i++, x += QK8_0) {
        __m256 v[4], amax = _mm256_setzero_ps();
        for (int r = 0; r < 4; r++) {
            v[r] = _mm256_loadu_ps(x + 8 * r);
            amax = _mm256_max_ps(abs_ps(v[r]), amax); /* NaN lanes keep amax, like fmaxf */
        }
        const float d = hmax8(amax) / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = qf_f32_to_f16(d);
        q8_0_bytes(v, id, y[i].qs);
    }
}

/* The element of largest magnitude with its sign, first on ties, +0 if all
 * are zero (see qk_signed_absmax). */
static inline float signed_absmax32(const float *x, const __m256 v[4]) {
    __m256 amax = _mm256_setzero_ps();
    for (int r = 0; r < 4; r++) amax = _mm256_max_ps(abs_ps(v[r]), amax); /* NaN lanes keep amax, like fmaxf */
    const float a = hmax8(amax);
    if (a == 0.0f) return 0.0f;
    const __m256 va = _mm256_set1_ps(a);
    uint32_t hit = 0;
    for (int r = 0; r < 4; r++)
        hit |= (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(abs_ps(v[r]), va, _CMP_EQ_OQ)) << (8 * r);
    return x[__builtin_ctz(hit)];
}

void quantize_row_q4_0(const float *x, block_q4_0 *y, int64_t k) {
    const int64_t nb = k / QK4_0;
    const __m256i nibble = _mm256_set1_epi32(0x0F);
    for (int64_t i = 0; i < nb; i++, x += QK4_0) {
        __m256 v[4];
        for (int r = 0; r < 4; r++) v[r] = _mm256_loadu_ps(x + 8 * r);
        const float d = signed_absmax32(x, v) / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = qf_f32_to_f16(d);
        __m256i q[4];
        for (int r = 0; r < 4; r++) {
            __m256 shifted = _mm256_add_ps(_mm256_mul_ps(v[r], _mm256_set1_ps(id)), _mm256_set1_ps(8.5f));
            __m256i t = _mm256_min_epi32(_mm256_cvttps_epi32(shifted), _mm256_set1_epi32(15));
            q[r] = _mm256_and_si256(t, nibble); /* INT32_MIN (NaN/Inf) -> 0, as in the reference */
        }
        /* byte j = elem j | elem j+16 << 4 */
        __m256i lo = _mm256_or_si256(q[0], _mm256_slli_epi32(q[2], 4));
        __m256i hi = _mm256_or_si256(q[1], _mm256_slli_epi32(q[3], 4));
        __m256i w = _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xD8); /* 16 x u16 in order */
        __m128i bytes = _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
        _mm_storeu_si128((__m128i *)y[i].qs, bytes);
    }
}


/* ---------------- dequantize ---------------- */

void dequantize_row_q4_0(const block_q4_0 *x, float *y, int64_t k) {
    const int64_t nb = k / QK4_0;
    const __m128i eight = _mm_set1_epi8(8);
    for (int64_t i = 0; i < nb; i++, y += QK4_0) {
        const __m256 d = _mm256_set1_ps(qf_f16_to_f32(x[i].d));
        __m128i lo, hi;
        split_nibbles(_mm_loadu_si128((const __m128i *)x[i].qs), &lo, &hi);
        store_scaled16(y, _mm_sub_epi8(lo, eight), d);
        store_scaled16(y + 16, _mm_sub_epi8(hi, eight), d);
    }
}

void dequantize_row_q4_1(const block_q4_1 *x, float *y, int64_t k) {
    const int64_t nb = k / QK4_1;
    for (int64_t i = 0; i < nb; i++, y += QK4_1) {
        const __m256 d = _mm256_set1_ps(qf_f16_to_f32(x[i].d));
        const __m256 m = _mm256_set1_ps(qf_f16_to_f32(x[i].m));
        __m128i lo, hi;
        split_nibbles(_mm_loadu_si128((const __m128i *)x[i].qs), &lo, &hi);
        store_muladd16(y, lo, d, m);
        store_muladd16(y + 16, hi, d, m);
    }
}

void dequantize_row_q8_0(const block_q8_0 *x, float *y, int64_t k) {
    const int64_t nb = k / QK8_0;
    for (int64_t i = 0; i < nb; i++, y += QK8_0) {
        const __m256 d = _mm256_set1_ps(qf_f16_to_f32(x[i].d));
        store_scaled16(y, _mm_loadu_si128((const __m128i *)x[i].qs), d);
        store_scaled16(y + 16, _mm_loadu_si128((const __m128i *)(x[i].qs + 16)), d);
    }
}

/* The llama.cpp AVX2 activation quantizer, as qf_quantize_q8_0_block_ref. */
void qf_quantize_q8_0_block(const float x[32], int8_t q[32], float *d, float *s) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4];
    for (int j = 0; j < 4; j++) v[j] = _mm256_loadu_ps(x + 8 * j);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                             _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float d32 = amax / 127.0f;
    const __m256 vid = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
    __m256i i[4];
    for (int j = 0; j < 4; j++)
        i[j] = _mm256_cvtps_epi32(
            _mm256_round_ps(_mm256_mul_ps(v[j], vid), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    if (s) {
        __m256i t = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
        __m128i t4 = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
        t4 = _mm_add_epi32(t4, _mm_shuffle_epi32(t4, 0x4e));
        t4 = _mm_add_epi32(t4, _mm_shuffle_epi32(t4, 0xb1));
        *s = qf_f16_to_f32(qf_f32_to_f16(d32 * (float)_mm_cvtsi128_si32(t4)));
    }
    /* packs work per 128-bit half: bytes come out as 4-element groups
     * 0 2 4 6 1 3 5 7; the permute puts them back in order */
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i[0], i[1]), _mm256_packs_epi32(i[2], i[3]));
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)q, p);
    *d = qf_f16_to_f32(qf_f32_to_f16(d32));
}

#else /* no AVX2: the references are the fast versions */

void quantize_row_q4_0(const float *x, block_q4_0 *y, int64_t k) { quantize_row_q4_0_ref(x, y, k); }
void quantize_row_q8_0(const float *x, block_q8_0 *y, int64_t k) { quantize_row_q8_0_ref(x, y, k); }
void dequantize_row_q4_0(const block_q4_0 *x, float *y, int64_t k) { dequantize_row_q4_0_ref(x, y, k); }
void dequantize_row_q4_1(const block_q4_1 *x, float *y, int64_t k) { dequantize_row_q4_1_ref(x, y, k); }
void dequantize_row_q8_0(const block_q8_0 *x, float *y, int64_t k) { dequantize_row_q8_0_ref(x, y, k); }
void qf_quantize_q8_0_block(const float x[32], int8_t q[32], float *d, float *s) { qf_quantize_q8_0_block_ref(x, q, d, s); }

#endif

/* No vector version (rarely on a hot path). */
void dequantize_row_q5_0(const block_q5_0 *x, float *y, int64_t k) { dequantize_row_q5_0_ref(x, y, k); }
void dequantize_row_q5_1(const block_q5_1 *x, float *y, int64_t k) { dequantize_row_q5_1_ref(x, y, k); }
