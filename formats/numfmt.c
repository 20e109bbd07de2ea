/* numfmt.c - IEEE half, bfloat16 and FP8 (E4M3 "fn", E5M2) <-> f32.
 *
 * All narrowing conversions share one integer encoder (encode_magnitude) that
 * rounds the f32 significand to nearest, ties to even, including the
 * subnormal range of the narrow format; each format then only decides what
 * codes past its largest finite value mean (Inf for f16/E5M2, saturate for
 * E4M3). NaN handling follows the hardware (F16C) and torch conventions:
 *   f16:  sign | 0x7E00 | top 9 payload bits (quieted, as vcvtps2ph does)
 *   bf16: top 16 bits | 0x0040 (quieted, as ggml and gguf-py do)
 *   E4M3: 0x7F | sign, E5M2: 0x7F | sign (as torch's float8 casts do)
 * The row converters use F16C/AVX2 when compiled in and are bit-identical to
 * the scalar functions (tests/unit/numfmt_test.c checks every f16 code).
 */
#include "numfmt.h"

#include <math.h>
#include <string.h>

#if defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>
#define QF_NUMFMT_SIMD 1
#endif

static inline uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* v / 2^shift rounded to nearest, ties to even. shift >= 0; large shifts give 0. */
static inline uint32_t shift_rne(uint32_t v, int shift) {
    if (shift == 0) return v;
    if (shift > 25) return 0; /* v < 2^24 < half of 2^shift */
    uint32_t q = v >> shift;
    uint32_t rem = v & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return q;
}

/* Code (without sign) of the finite f32 magnitude `abits` in a binary format
 * with `mbits` stored mantissa bits and exponent bias `bias`, rounded to
 * nearest even. Codes are ordered like the values, so a rounding carry out of
 * the mantissa moves into the exponent by itself. Unbounded above: codes past
 * the format's largest finite value are the caller's business. */
static uint32_t encode_magnitude(uint32_t abits, int mbits, int bias) {
    int e32 = (int)(abits >> 23);
    uint32_t sig = abits & 0x7FFFFFu;
    if (e32) sig |= 0x800000u; /* implicit bit */
    else e32 = 1;              /* f32 subnormal: same scale as exponent 1 */
    int te = e32 - 127 + bias; /* biased exponent in the narrow format */
    int shift = 23 - mbits;
    uint32_t base = 0;
    if (te >= 1) base = (uint32_t)(te - 1) << mbits; /* + implicit bit = te << mbits */
    else shift += 1 - te;                             /* subnormal in the narrow format */
    return base + shift_rne(sig, shift);
}

/* Value of a non-NaN, non-Inf magnitude code. Exact (ldexpf of a small int). */
static float decode_magnitude(uint32_t code, int mbits, int bias) {
    uint32_t e = code >> mbits;
    uint32_t m = code & ((1u << mbits) - 1);
    if (e == 0) return ldexpf((float)m, 1 - bias - mbits);
    return ldexpf((float)(m | (1u << mbits)), (int)e - bias - mbits);
}

/* ---------------- IEEE half ---------------- */

float qf_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t mant = h & 0x3FFu;
    if (exp == 0x1F) /* Inf, or NaN quieted like vcvtph2ps */
        return bits_f32(sign | 0x7F800000u | (mant ? 0x400000u | (mant << 13) : 0));
    if (exp == 0) { /* zero or subnormal: mant * 2^-24, exact */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t qf_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) /* NaN: quiet, keep the top payload bits */
        return sign | 0x7E00u | (uint16_t)((a >> 13) & 0x3FFu);
    uint32_t code = encode_magnitude(a, 10, 15);
    if (code > 0x7C00u) code = 0x7C00u; /* overflow (and Inf) -> Inf */
    return sign | (uint16_t)code;
}

/* ---------------- bfloat16 ---------------- */

float qf_bf16_to_f32(uint16_t h) {
    return bits_f32((uint32_t)h << 16);
}

uint16_t qf_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40u);
    /* RNE on the low 16 bits; a carry rolls into the exponent (-> Inf at the top). */
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/* ---------------- FP8 ---------------- */

float qf_e4m3_to_f32(uint8_t v) {
    uint32_t a = v & 0x7Fu;
    float m = a == 0x7F ? NAN : decode_magnitude(a, 3, 7);
    return (v & 0x80) ? -m : m;
}

/* f as an FP8 code with mbits mantissa bits and exponent bias `bias`, the
 * magnitude's code capped at max_code; NaN -> 0x7F with f's sign. */
static uint8_t f32_to_fp8(float f, int mbits, int bias, uint32_t max_code) {
    uint32_t u = f32_bits(f);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80u);
    uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return sign | 0x7F;
    uint32_t code = encode_magnitude(a, mbits, bias);
    if (code > max_code) code = max_code;
    return sign | (uint8_t)code;
}

uint8_t qf_f32_to_e4m3(float f) {
    return f32_to_fp8(f, 3, 7, 0x7E); /* satfinite: beyond 448 (and Inf) -> 448 */
}

float qf_e5m2_to_f32(uint8_t v) {
    uint32_t a = v & 0x7Fu;
    float m = a == 0x7C ? INFINITY : a > 0x7C ? NAN : decode_magnitude(a, 2, 15);
    return (v & 0x80) ? -m : m;
}

uint8_t qf_f32_to_e5m2(float f) {
    return f32_to_fp8(f, 2, 15, 0x7C); /* overflow (and Inf) -> Inf */
}

/* ---------------- row converters ---------------- */

void qf_f16_to_f32_row(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
#ifdef QF_NUMFMT_SIMD
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
#endif
    for (; i < n; i++) dst[i] = qf_f16_to_f32(src[i]);
}

void qf_f32_to_f16_row(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
#ifdef QF_NUMFMT_SIMD
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(src + i);
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
#endif
    for (; i < n; i++) dst[i] = qf_f32_to_f16(src[i]);
}

void qf_bf16_to_f32_row(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
#ifdef QF_NUMFMT_SIMD
    for (; i + 8 <= n; i += 8) {
        __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_slli_epi32(h, 16));
    }
#endif
    for (; i < n; i++) dst[i] = qf_bf16_to_f32(src[i]);
}

#ifdef QF_NUMFMT_SIMD
/* 8 lanes of qf_f32_to_bf16, each result in the low 16 bits of a 32-bit lane. */
static inline __m256i f32_to_bf16_x8(__m256i u) {
    const __m256i abs_mask = _mm256_set1_epi32(0x7FFFFFFF);
    const __m256i inf = _mm256_set1_epi32(0x7F800000);
    __m256i is_nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i bias = _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF));
    __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
    __m256i nan = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    return _mm256_blendv_epi8(rounded, nan, is_nan);
}
#endif

void qf_f32_to_bf16_row(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
#ifdef QF_NUMFMT_SIMD
    for (; i + 16 <= n; i += 16) {
        __m256i a = f32_to_bf16_x8(_mm256_loadu_si256((const __m256i *)(src + i)));
        __m256i b = f32_to_bf16_x8(_mm256_loadu_si256((const __m256i *)(src + i + 8)));
        /* packus works per 128-bit lane: a0-3 b0-3 | a4-7 b4-7 -> reorder quads */
        __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8);
        _mm256_storeu_si256((__m256i *)(dst + i), packed);
    }
#endif
    for (; i < n; i++) dst[i] = qf_f32_to_bf16(src[i]);
}

int64_t qf_f32_first_beyond(const float *x, size_t n, float limit) {
    for (size_t i = 0; i < n; i++)
        if (!(fabsf(x[i]) <= limit && fabsf(x[i]) < INFINITY)) return (int64_t)i;
    return -1;
}
