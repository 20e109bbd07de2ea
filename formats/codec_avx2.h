/* codec_avx2.h - internal: AVX2 building blocks shared by the codec_*_avx2.c
 * files (conversions and stores that keep the scalar references' operation
 * order: multiply, then add/subtract, never FMA). */
#ifndef QF_CODEC_AVX2_H
#define QF_CODEC_AVX2_H

#if defined(__AVX2__)
#include <immintrin.h>

/* 8 signed bytes (low half of v) -> 8 floats. */
static inline __m256 i8x8_to_f32(__m128i v) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
}

/* 16 signed bytes -> y[0..15] = float(q) * d. */
static inline void store_scaled16(float *y, __m128i q, __m256 d) {
    _mm256_storeu_ps(y, _mm256_mul_ps(i8x8_to_f32(q), d));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(i8x8_to_f32(_mm_srli_si128(q, 8)), d));
}

/* 16 signed bytes -> y[0..15] = float(q) * d + m. */
static inline void store_muladd16(float *y, __m128i q, __m256 d, __m256 m) {
    _mm256_storeu_ps(y, _mm256_add_ps(_mm256_mul_ps(i8x8_to_f32(q), d), m));
    _mm256_storeu_ps(y + 8, _mm256_add_ps(_mm256_mul_ps(i8x8_to_f32(_mm_srli_si128(q, 8)), d), m));
}

/* 16 signed bytes -> y[0..15] = d * float(q) - m. */
static inline void store_affine16(float *y, __m128i q, __m256 d, __m256 m) {
    _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(d, i8x8_to_f32(q)), m));
    _mm256_storeu_ps(y + 8, _mm256_sub_ps(_mm256_mul_ps(d, i8x8_to_f32(_mm_srli_si128(q, 8))), m));
}

/* 8 unsigned grid bytes (low half of g) -> y[0..7] = db * g, negated (sign
 * bit flipped, as the i-quant references do) where the 8 sign bits s are set. */
static inline void store_signed_grid8(float *y, __m128i g, __m256 db, uint8_t s) {
    const __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(g));
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256i neg = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(s), bit), bit);
    const __m256 sign = _mm256_and_ps(_mm256_castsi256_ps(neg), _mm256_set1_ps(-0.0f));
    _mm256_storeu_ps(y, _mm256_xor_ps(_mm256_mul_ps(db, v), sign));
}

/* 4 vectors of 32-bit lanes holding 0..255 -> 32 bytes in element order. */
static inline __m256i pack_u8x32(__m256i a, __m256i b, __m256i c, __m256i d) {
    __m256i ab = _mm256_packus_epi32(a, b); /* per lane: a0-3 b0-3 | a4-7 b4-7 */
    __m256i cd = _mm256_packus_epi32(c, d);
    __m256i abcd = _mm256_packus_epi16(ab, cd); /* a0-3 b0-3 c0-3 d0-3 | a4-7 b4-7 c4-7 d4-7 */
    return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* The smallest of the 8 floats of v. */
static inline float hmin8(__m256 v) {
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    m = _mm_min_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline __m256 abs_ps(__m256 v) {
    return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
}

/* 16 packed bytes -> (low nibbles, high nibbles) as unsigned bytes. */
static inline void split_nibbles(__m128i raw, __m128i *lo, __m128i *hi) {
    const __m128i mask = _mm_set1_epi8(0x0F);
    *lo = _mm_and_si128(raw, mask);
    *hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
}

#endif
#endif
