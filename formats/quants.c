/* quants.c - scalar reference codecs for the GGUF block formats.
 *
 * These are the spec: each quantizer reproduces ggml's quantize_row_*_ref
 * bit for bit (same float operations in the same order, same truncating or
 * rounding casts; see docs/formats-codecs.md), and each dequantizer follows
 * the block layout of ggml-common.h, multiplying in the order ggml does so
 * that results are identical to llama.cpp's to the last bit. The vectorized
 * versions live in quants_avx2.c and are tested against these.
 *
 * Block layouts (k = elements per block, q = unsigned quant, d/m/dmin fp16):
 *   Q4_0  d, qs[16]          x = d*(q-8),  byte j: elem j low nibble, elem j+16 high
 *   Q4_1  d, m, qs[16]       x = d*q + m
 *   Q5_0  d, qh[4], qs[16]   x = d*(q-16), bit j of qh = bit 4 of elem j
 *   Q5_1  d, m, qh[4], qs    x = d*q + m
 *   Q8_0  d, qs[32] int8     x = d*q
 *   IQ4_NL d, qs[16]         x = d*kvalues_iq4nl[q], nibbles as Q4_0
 *   Q2_K..Q6_K: 256-element super-blocks of 16 or 32-element sub-blocks with
 *   quantized sub-scales; see each dequantizer below.
 */
#include "quants.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ggml_types.h"
#include "numfmt.h"

#define QF_MIN(a, b) ((a) < (b) ? (a) : (b))

static inline float fp16(qf_half h) { return qf_f16_to_f32(h); }

/* ggml writes `(int8_t)v` / `(uint8_t)v` for float v; x86-64 compilers emit a
 * truncating conversion to int32 (NaN and out-of-range give INT32_MIN) and
 * keep the low byte. We spell that out so the reference is defined C and the
 * vector code can match it. It only matters for blocks whose scale d is so
 * small that 1/d overflows to Inf (|x| below ~1e-36); in range it is plain
 * truncation toward zero. */
static inline uint8_t trunc_low_byte(float v) {
    int32_t i = (v > -2147483648.0f && v < 2147483648.0f) ? (int32_t)v : INT32_MIN;
    return (uint8_t)((uint32_t)i & 0xFF);
}
static inline int trunc_i8(float v) { return (int8_t)trunc_low_byte(v); }

/* ---------------- legacy quantizers (ggml *_ref semantics) ---------------- */

/* The element of largest magnitude, with its sign; the first one on ties.
 * An all-zero block gives +0 (so d = 0/-8 = -0, as ggml stores it). */
static float signed_absmax(const float *x, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void block_min_max(const float *x, int n, float *min, float *max) {
    float lo = 3.402823466e+38f, hi = -3.402823466e+38f;
    for (int j = 0; j < n; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *min = lo;
    *max = hi;
}

/* Q4_0: d = max/-8 so the extreme element maps to q=0; q = trunc(x/d + 8.5)
 * capped at 15. id comes from the unrounded d, not from the stored fp16. */
void quantize_row_q4_0_ref(const float *x, block_q4_0 *y, int64_t k) {
    const int64_t nb = k / QK4_0;
    for (int64_t i = 0; i < nb; i++, x += QK4_0) {
        const float d = signed_absmax(x, QK4_0) / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = qf_f32_to_f16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            const uint8_t q0 = (uint8_t)QF_MIN(15, trunc_i8(x[j] * id + 8.5f));
            const uint8_t q1 = (uint8_t)QF_MIN(15, trunc_i8(x[j + QK4_0 / 2] * id + 8.5f));
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* Q4_1: d = (max-min)/15, q = trunc((x-min)/d + 0.5) capped at 15. */
void quantize_row_q4_1_ref(const float *x, block_q4_1 *y, int64_t k) {
    const int64_t nb = k / QK4_1;
    for (int64_t i = 0; i < nb; i++, x += QK4_1) {
        float min, max;
        block_min_max(x, QK4_1, &min, &max);
        const float d = (max - min) / ((1 << 4) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = qf_f32_to_f16(d);
        y[i].m = qf_f32_to_f16(min);
        for (int j = 0; j < QK4_1 / 2; j++) {
            const uint8_t q0 = (uint8_t)QF_MIN(15, trunc_i8((x[j] - min) * id + 0.5f));
            const uint8_t q1 = (uint8_t)QF_MIN(15, trunc_i8((x[j + QK4_1 / 2] - min) * id + 0.5f));
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* Store 32 five-bit quants: low nibbles as in Q4, bit 4 of element j in bit j of qh. */
static void pack_5bit(const uint8_t q[32], uint8_t qs[16], uint8_t qh_bytes[4]) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
        qh |= (uint32_t)((q[j] >> 4) & 1) << j;
        qh |= (uint32_t)((q[j + 16] >> 4) & 1) << (j + 16);
    }
    memcpy(qh_bytes, &qh, 4); /* little-endian u32, as ggml does */
}

/* Q5_0: d = max/-16, q = trunc(x/d + 16.5) capped at 31. */
void quantize_row_q5_0_ref(const float *x, block_q5_0 *y, int64_t k) {
    const int64_t nb = k / QK5_0;
    for (int64_t i = 0; i < nb; i++, x += QK5_0) {
        const float d = signed_absmax(x, QK5_0) / -16;
        const float id = d ? 1.0f / d : 0.0f;
        uint8_t q[QK5_0];
        y[i].d = qf_f32_to_f16(d);
        for (int j = 0; j < QK5_0; j++) q[j] = (uint8_t)QF_MIN(31, trunc_i8(x[j] * id + 16.5f));
        pack_5bit(q, y[i].qs, y[i].qh);
    }
}

/* Q5_1: d = (max-min)/31, q = trunc((x-min)/d + 0.5) with no cap (ggml has none). */
void quantize_row_q5_1_ref(const float *x, block_q5_1 *y, int64_t k) {
    const int64_t nb = k / QK5_1;
    for (int64_t i = 0; i < nb; i++, x += QK5_1) {
        float min, max;
        block_min_max(x, QK5_1, &min, &max);
        const float d = (max - min) / ((1 << 5) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        uint8_t q[QK5_1];
        y[i].d = qf_f32_to_f16(d);
        y[i].m = qf_f32_to_f16(min);
        for (int j = 0; j < QK5_1; j++) q[j] = trunc_low_byte((x[j] - min) * id + 0.5f);
        pack_5bit(q, y[i].qs, y[i].qh);
    }
}

/* Q8_0: d = amax/127, q = roundf(x/d) (half away from zero). */
void quantize_row_q8_0_ref(const float *x, block_q8_0 *y, int64_t k) {
    const int64_t nb = k / QK8_0;
    for (int64_t i = 0; i < nb; i++, x += QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / ((1 << 7) - 1);
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = qf_f32_to_f16(d);
        for (int j = 0; j < QK8_0; j++) y[i].qs[j] = (int8_t)trunc_low_byte(roundf(x[j] * id));
    }
}

/* ---------------- legacy dequantizers ---------------- */

void dequantize_row_q4_0_ref(const block_q4_0 *x, float *y, int64_t k) {
    const int64_t nb = k / QK4_0;
    for (int64_t i = 0; i < nb; i++, y += QK4_0) {
        const float d = fp16(x[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[j] = (float)((x[i].qs[j] & 0x0F) - 8) * d;
            y[j + QK4_0 / 2] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

void dequantize_row_q4_1_ref(const block_q4_1 *x, float *y, int64_t k) {
    const int64_t nb = k / QK4_1;
    for (int64_t i = 0; i < nb; i++, y += QK4_1) {
        const float d = fp16(x[i].d), m = fp16(x[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            y[j] = (float)(x[i].qs[j] & 0x0F) * d + m;
            y[j + QK4_1 / 2] = (float)(x[i].qs[j] >> 4) * d + m;
        }
    }
}

/* The 32 five-bit quants of a Q5 block. */
static void unpack_5bit(const uint8_t qs[16], const uint8_t qh_bytes[4], int q[32]) {
    uint32_t qh;
    memcpy(&qh, qh_bytes, 4);
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 0x0F) | (int)(((qh >> j) & 1) << 4);
        q[j + 16] = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
    }
}

void dequantize_row_q5_0_ref(const block_q5_0 *x, float *y, int64_t k) {
    const int64_t nb = k / QK5_0;
    for (int64_t i = 0; i < nb; i++, y += QK5_0) {
        const float d = fp16(x[i].d);
        int q[QK5_0];
        unpack_5bit(x[i].qs, x[i].qh, q);
        for (int j = 0; j < QK5_0; j++) y[j] = (float)(q[j] - 16) * d;
    }
}

void dequantize_row_q5_1_ref(const block_q5_1 *x, float *y, int64_t k) {
    const int64_t nb = k / QK5_1;
    for (int64_t i = 0; i < nb; i++, y += QK5_1) {
        const float d = fp16(x[i].d), m = fp16(x[i].m);
        int q[QK5_1];
        unpack_5bit(x[i].qs, x[i].qh, q);
        for (int j = 0; j < QK5_1; j++) y[j] = (float)q[j] * d + m;
    }
}

void dequantize_row_q8_0_ref(const block_q8_0 *x, float *y, int64_t k) {
    const int64_t nb = k / QK8_0;
    for (int64_t i = 0; i < nb; i++, y += QK8_0) {
        const float d = fp16(x[i].d);
        for (int j = 0; j < QK8_0; j++) y[j] = (float)x[i].qs[j] * d;
    }
}

/* ---------------- IQ4_NL ---------------- */

/* ggml-common.h kvalues_iq4nl: 16 levels, denser near zero, asymmetric
 * (-127 .. 113), so the scale d can put the largest element on -127. */
const int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* IQ4_NL: x = d * kvalues_iq4nl[q]; byte j holds element j (low nibble) and
 * element j+16 (high nibble). */
void dequantize_row_iq4_nl_ref(const block_iq4_nl *x, float *y, int64_t k) {
    const int64_t nb = k / QK4_NL;
    for (int64_t i = 0; i < nb; i++, y += QK4_NL) {
        const float d = fp16(x[i].d);
        for (int j = 0; j < QK4_NL / 2; j++) {
            y[j] = d * (float)kvalues_iq4nl[x[i].qs[j] & 0x0F];
            y[j + QK4_NL / 2] = d * (float)kvalues_iq4nl[x[i].qs[j] >> 4];
        }
    }
}

/* ---------------- K-quant dequantizers ---------------- */

/* Q2_K: 16 sub-blocks of 16. scales[s] = scale (low nibble) | min (high nibble).
 * Each 128-element half uses 32 qs bytes four times over (shifts 0,2,4,6);
 * shift pass p covers elements 32p..32p+31 of the half, in two sub-blocks.
 *   x = d*scale*q - dmin*min,  q in 0..3 */
void dequantize_row_q2_K_ref(const block_q2_K *x, float *y, int64_t k) {
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = fp16(x[i].d), dmin = fp16(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int s = 0;
        for (int half = 0; half < QK_K; half += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int sub = 0; sub < 2; sub++, s++) {
                    const float dl = d * (float)(x[i].scales[s] & 0x0F);
                    const float ml = dmin * (float)(x[i].scales[s] >> 4);
                    for (int l = 0; l < 16; l++)
                        *y++ = dl * (float)((q[16 * sub + l] >> shift) & 3) - ml;
                }
            }
        }
    }
}

/* The 16 signed 6-bit sub-scales of a Q3_K block (stored +32): low 4 bits
 * are nibbles of bytes 0..7 (sub-blocks 0..7 low nibble, 8..15 high nibble),
 * the top 2 bits of sub-block s sit in byte 8 + s%4 at bit 2*(s/4). */
static void q3_K_scales(const uint8_t packed[12], int sc[16]) {
    for (int s = 0; s < 16; s++) {
        int lo = s < 8 ? packed[s] & 0x0F : packed[s - 8] >> 4;
        int hi = (packed[8 + s % 4] >> (2 * (s / 4))) & 3;
        sc[s] = (lo | (hi << 4)) - 32;
    }
}

/* Q3_K: like Q2_K's layout for the low 2 bits, plus a high bit per element in
 * hmask (bit p of hmask[l] for shift pass p over both halves: 8 passes).
 * q = low2 - (high bit ? 0 : 4), in -4..3;  x = d*sc*q */
void dequantize_row_q3_K_ref(const block_q3_K *x, float *y, int64_t k) {
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d_all = fp16(x[i].d);
        const uint8_t *q = x[i].qs;
        const uint8_t *hm = x[i].hmask;
        int sc[16];
        q3_K_scales(x[i].scales, sc);
        int s = 0;
        uint8_t m = 1;
        for (int half = 0; half < QK_K; half += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
                for (int sub = 0; sub < 2; sub++, s++) {
                    const float dl = d_all * (float)sc[s];
                    for (int l = 16 * sub; l < 16 * sub + 16; l++) {
                        const int v = ((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4);
                        *y++ = dl * (float)v;
                    }
                }
            }
        }
    }
}

/* 6-bit scale and min of sub-block j (0..7) of Q4_K/Q5_K: j < 4 in the low 6
 * bits of bytes j / j+4; j >= 4 as nibbles of byte j+4 with the top 2 bits in
 * bits 6-7 of bytes j-4 (scale) and j (min). */
static inline void get_scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* Q4_K: 8 sub-blocks of 32; each 64-element chunk is 32 qs bytes, low nibbles
 * for the first sub-block, high nibbles for the second.
 *   x = (d*sc)*q - (dmin*m),  q in 0..15 */
void dequantize_row_q4_K_ref(const block_q4_K *x, float *y, int64_t k) {
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = fp16(x[i].d), dmin = fp16(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int j = 0; j < QK_K / 32; j += 2, q += 32) {
            uint8_t sc, m;
            get_scale_min_k4(j, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            get_scale_min_k4(j + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0x0F) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

/* Q5_K: Q4_K plus a fifth bit: bit 2c of qh[l] for the low-nibble sub-block
 * of chunk c, bit 2c+1 for the high-nibble one. q in 0..31. */
void dequantize_row_q5_K_ref(const block_q5_K *x, float *y, int64_t k) {
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = fp16(x[i].d), dmin = fp16(x[i].dmin);
        const uint8_t *ql = x[i].qs, *qh = x[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < QK_K / 32; j += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, m;
            get_scale_min_k4(j, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            get_scale_min_k4(j + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)((ql[l] & 0x0F) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

/* Q6_K: 16 sub-blocks of 16 with int8 scales. Per 128-element half, element
 * l + 32r (r = 0..3, l = 0..31) has its low 4 bits in ql[l + 32*(r&1)]
 * (low nibble for r < 2, high for r >= 2) and its high 2 bits in qh[l] at
 * bit 2r.  x = (d*sc)*(q-32),  q in 0..63 */
void dequantize_row_q6_K_ref(const block_q6_K *x, float *y, int64_t k) {
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++) {
        const float d = fp16(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int half = 0; half < QK_K; half += 128, ql += 64, qh += 32, sc += 8, y += 128) {
            for (int r = 0; r < 4; r++) {
                for (int l = 0; l < 32; l++) {
                    const uint8_t lo = r < 2 ? ql[l + 32 * r] & 0x0F : ql[l + 32 * (r - 2)] >> 4;
                    const int q = (lo | (((qh[l] >> (2 * r)) & 3) << 4)) - 32;
                    y[32 * r + l] = d * (float)sc[2 * r + l / 16] * (float)q;
                }
            }
        }
    }
}

/* Q8_K: float d, int8 q (bsums are only for dot products). x = d*q */
void dequantize_row_q8_K_ref(const block_q8_K *x, float *y, int64_t k) {
    const int64_t nb = k / QK_K;
    for (int64_t i = 0; i < nb; i++, y += QK_K)
        for (int j = 0; j < QK_K; j++) y[j] = x[i].d * (float)x[i].qs[j];
}

/* ---------------- generic entry points ---------------- */

typedef void (*dequant_fn)(const void *src, float *dst, int64_t k);

static void f32_copy(const void *src, float *dst, int64_t k) { memcpy(dst, src, (size_t)k * sizeof(float)); }
static void f16_row_ref(const void *src, float *dst, int64_t k) {
    const uint16_t *h = src;
    for (int64_t i = 0; i < k; i++) dst[i] = qf_f16_to_f32(h[i]);
}
static void bf16_row_ref(const void *src, float *dst, int64_t k) {
    const uint16_t *h = src;
    for (int64_t i = 0; i < k; i++) dst[i] = qf_bf16_to_f32(h[i]);
}
static void f16_row(const void *src, float *dst, int64_t k) { qf_f16_to_f32_row(src, dst, (size_t)k); }
static void bf16_row(const void *src, float *dst, int64_t k) { qf_bf16_to_f32_row(src, dst, (size_t)k); }

/* void-pointer adapters: name_ref_v / name_v call the typed functions. */
#define ADAPT(t)                                                                                    \
    static void dq_##t##_ref(const void *s, float *d, int64_t k) { dequantize_row_##t##_ref(s, d, k); } \
    static void dq_##t(const void *s, float *d, int64_t k) { dequantize_row_##t(s, d, k); }
ADAPT(q4_0) ADAPT(q4_1) ADAPT(q5_0) ADAPT(q5_1) ADAPT(q8_0) ADAPT(iq4_nl)
ADAPT(q2_K) ADAPT(q3_K) ADAPT(q4_K) ADAPT(q5_K) ADAPT(q6_K) ADAPT(q8_K)
#undef ADAPT

typedef struct codec {
    uint32_t type;
    int block; /* elements per block */
    dequant_fn ref;
    dequant_fn fast;
} codec;

static const codec codecs[] = {
    {GGML_TYPE_F32, 1, f32_copy, f32_copy},
    {GGML_TYPE_F16, 1, f16_row_ref, f16_row},
    {GGML_TYPE_BF16, 1, bf16_row_ref, bf16_row},
    {GGML_TYPE_Q4_0, QK4_0, dq_q4_0_ref, dq_q4_0},
    {GGML_TYPE_Q4_1, QK4_1, dq_q4_1_ref, dq_q4_1},
    {GGML_TYPE_Q5_0, QK5_0, dq_q5_0_ref, dq_q5_0},
    {GGML_TYPE_Q5_1, QK5_1, dq_q5_1_ref, dq_q5_1},
    {GGML_TYPE_Q8_0, QK8_0, dq_q8_0_ref, dq_q8_0},
    {GGML_TYPE_IQ4_NL, QK4_NL, dq_iq4_nl_ref, dq_iq4_nl},
    {GGML_TYPE_Q2_K, QK_K, dq_q2_K_ref, dq_q2_K},
    {GGML_TYPE_Q3_K, QK_K, dq_q3_K_ref, dq_q3_K},
    {GGML_TYPE_Q4_K, QK_K, dq_q4_K_ref, dq_q4_K},
    {GGML_TYPE_Q5_K, QK_K, dq_q5_K_ref, dq_q5_K},
    {GGML_TYPE_Q6_K, QK_K, dq_q6_K_ref, dq_q6_K},
    {GGML_TYPE_Q8_K, QK_K, dq_q8_K_ref, dq_q8_K},
};

static const codec *find_codec(uint32_t type) {
    for (size_t i = 0; i < sizeof codecs / sizeof codecs[0]; i++)
        if (codecs[i].type == type) return &codecs[i];
    return NULL;
}

int qf_has_dequantize(uint32_t type) { return find_codec(type) != NULL; }

static int dequantize_with(uint32_t type, const void *src, float *dst, int64_t k, int fast) {
    const codec *c = find_codec(type);
    if (!c || k < 0 || k % c->block != 0) return -1;
    (fast ? c->fast : c->ref)(src, dst, k);
    return 0;
}

int qf_dequantize_row(uint32_t type, const void *src, float *dst, int64_t k) {
    return dequantize_with(type, src, dst, k, 1);
}

int qf_dequantize_row_ref(uint32_t type, const void *src, float *dst, int64_t k) {
    return dequantize_with(type, src, dst, k, 0);
}
