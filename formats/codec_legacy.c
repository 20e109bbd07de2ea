/* codec_legacy.c - scalar reference codecs of the legacy block types
 * (codec_legacy.h): ggml's *_ref quantizers, the importance-weighted
 * quantizers (ggml quantize_row_*_impl) and the dequantizers.
 *
 * These are the spec: each quantizer reproduces ggml bit for bit (same float
 * operations in the same order, same truncating or rounding casts; see
 * docs/formats-codecs.md), and each dequantizer multiplies in the order ggml
 * does so that results are identical to llama.cpp's to the last bit. The
 * vectorized versions live in codec_legacy_avx2.c and are tested against
 * these.
 */
#include "codec_legacy.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "codec_kernels.h"
#include "numfmt.h"


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


/* ---------------- packing ---------------- */

void qf_pack_q4_legacy(uint8_t qs[16], const uint8_t *L) {
    for (int j = 0; j < 16; ++j) qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
}

void qf_pack_q5_legacy(uint8_t qs[16], uint8_t qh_out[4], const uint8_t *L) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; ++j) {
        uint8_t a = L[j], b = L[j + 16];
        qs[j] = (uint8_t)((a & 0x0F) | ((b & 0x0F) << 4));
        qh |= (uint32_t)((a & 0x10u) >> 4) << j;
        qh |= (uint32_t)((b & 0x10u) >> 4) << (j + 16);
    }
    for (int k = 0; k < 4; ++k) qh_out[k] = (uint8_t)(qh >> (8 * k));
}

/* ---------------- legacy quantizers (ggml *_ref semantics) ---------------- */

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
        const float d = qk_signed_absmax(x, QK4_0) / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = qf_f32_to_f16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            const uint8_t q0 = (uint8_t)QK_MIN(15, trunc_i8(x[j] * id + 8.5f));
            const uint8_t q1 = (uint8_t)QK_MIN(15, trunc_i8(x[j + QK4_0 / 2] * id + 8.5f));
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* The asymmetric blocks' step d = (max-min)/nmax and offset min, stored as
 * F16 in *d16 and *m16; *min and the inverse step *id (0 when d is 0) are
 * what the levels are computed from. */
static void asym_scale(const float *x, int n, int nmax, float *min, float *id, uint16_t *d16, uint16_t *m16) {
    float max;
    block_min_max(x, n, min, &max);
    const float d = (max - *min) / nmax;
    *id = d ? 1.0f / d : 0.0f;
    *d16 = qf_f32_to_f16(d);
    *m16 = qf_f32_to_f16(*min);
}

/* Q4_1: d = (max-min)/15, q = trunc((x-min)/d + 0.5) capped at 15. */
void quantize_row_q4_1_ref(const float *x, block_q4_1 *y, int64_t k) {
    const int64_t nb = k / QK4_1;
    for (int64_t i = 0; i < nb; i++, x += QK4_1) {
        float min, id;
        asym_scale(x, QK4_1, 15, &min, &id, &y[i].d, &y[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            const uint8_t q0 = (uint8_t)QK_MIN(15, trunc_i8((x[j] - min) * id + 0.5f));
            const uint8_t q1 = (uint8_t)QK_MIN(15, trunc_i8((x[j + QK4_1 / 2] - min) * id + 0.5f));
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* Q5_0: d = max/-16, q = trunc(x/d + 16.5) capped at 31. */
void quantize_row_q5_0_ref(const float *x, block_q5_0 *y, int64_t k) {
    const int64_t nb = k / QK5_0;
    for (int64_t i = 0; i < nb; i++, x += QK5_0) {
        const float d = qk_signed_absmax(x, QK5_0) / -16;
        const float id = d ? 1.0f / d : 0.0f;
        uint8_t q[QK5_0];
        y[i].d = qf_f32_to_f16(d);
        for (int j = 0; j < QK5_0; j++) q[j] = (uint8_t)QK_MIN(31, trunc_i8(x[j] * id + 16.5f));
        qf_pack_q5_legacy(y[i].qs, y[i].qh, q);
    }
}

/* Q5_1: d = (max-min)/31, q = trunc((x-min)/d + 0.5) with no cap (ggml has none). */
void quantize_row_q5_1_ref(const float *x, block_q5_1 *y, int64_t k) {
    const int64_t nb = k / QK5_1;
    for (int64_t i = 0; i < nb; i++, x += QK5_1) {
        float min, id;
        uint8_t q[QK5_1];
        asym_scale(x, QK5_1, 31, &min, &id, &y[i].d, &y[i].m);
        for (int j = 0; j < QK5_1; j++) q[j] = trunc_low_byte((x[j] - min) * id + 0.5f);
        qf_pack_q5_legacy(y[i].qs, y[i].qh, q);
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

/* Weights for the legacy types: qw * sqrt(sigma2 + x^2), sigma2 = mean x^2 of
 * the whole row. Blocks are searched 8 at a time (one kernel batch). */
#define LEGACY_BATCH 8

static float row_sigma2(const float *x, int64_t n) {
    float sum_x2 = 0.f;
    for (int64_t j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
    return sum_x2 / (float)n;
}

static void legacy_weights(const float *x, const float *qw, float sigma2, int n, float *w) {
    for (int j = 0; j < n; ++j) w[j] = qw[j] * sqrtf(sigma2 + x[j] * x[j]);
}

/* Q4_0 / Q5_0 (symmetric, nmax 8 / 16) with importance weights. */
static void row_legacy_sym_imat(const qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw, int nmax) {
    const float sigma2 = row_sigma2(x, n);
    const int64_t nb = n / 32;
    float w[32 * LEGACY_BATCH], d[LEGACY_BATCH];
    int8_t L[32 * LEGACY_BATCH];
    for (int64_t b0 = 0; b0 < nb; b0 += LEGACY_BATCH) {
        int cnt = (int)QK_MIN((int64_t)LEGACY_BATCH, nb - b0);
        legacy_weights(x + b0 * 32, qw + b0 * 32, sigma2, 32 * cnt, w);
        kk->qx(cnt, 32, nmax, x + b0 * 32, w, L, d);
        for (int b = 0; b < cnt; ++b) {
            const uint8_t *Lb = (const uint8_t *)L + 32 * b;
            if (nmax == 8) {
                block_q4_0 *yb = (block_q4_0 *)y + b0 + b;
                yb->d = f2h(d[b]);
                qf_pack_q4_legacy(yb->qs, Lb);
            } else {
                block_q5_0 *yb = (block_q5_0 *)y + b0 + b;
                yb->d = f2h(d[b]);
                qf_pack_q5_legacy(yb->qs, yb->qh, Lb);
            }
        }
    }
}

/* Q4_1 / Q5_1 (with min, nmax 15 / 31) with importance weights. */
static void row_legacy_min_imat(const qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw, int nmax) {
    const float sigma2 = row_sigma2(x, n);
    const int64_t nb = n / 32;
    float w[32 * LEGACY_BATCH], d[LEGACY_BATCH], mn[LEGACY_BATCH];
    uint8_t L[32 * LEGACY_BATCH];
    for (int64_t b0 = 0; b0 < nb; b0 += LEGACY_BATCH) {
        int cnt = (int)QK_MIN((int64_t)LEGACY_BATCH, nb - b0);
        legacy_weights(x + b0 * 32, qw + b0 * 32, sigma2, 32 * cnt, w);
        kk->qkx(cnt, 32, nmax, x + b0 * 32, w, L, d, mn, -0.9f, 0.05f, 36, 0);
        for (int b = 0; b < cnt; ++b) {
            if (nmax == 15) {
                block_q4_1 *yb = (block_q4_1 *)y + b0 + b;
                yb->d = f2h(d[b]);
                yb->m = f2h(-mn[b]);
                qf_pack_q4_legacy(yb->qs, L + 32 * b);
            } else {
                block_q5_1 *yb = (block_q5_1 *)y + b0 + b;
                yb->d = f2h(d[b]);
                yb->m = f2h(-mn[b]);
                qf_pack_q5_legacy(yb->qs, yb->qh, L + 32 * b);
            }
        }
    }
}

void qf_quantize_row_q4_0_imat(const float *x, block_q4_0 *y, int64_t n, const float *qw) { row_legacy_sym_imat(&qk_kernels_scalar, x, y, n, qw, 8); }
void qf_quantize_row_q5_0_imat(const float *x, block_q5_0 *y, int64_t n, const float *qw) { row_legacy_sym_imat(&qk_kernels_scalar, x, y, n, qw, 16); }
void qf_quantize_row_q4_1_imat(const float *x, block_q4_1 *y, int64_t n, const float *qw) { row_legacy_min_imat(&qk_kernels_scalar, x, y, n, qw, 15); }
void qf_quantize_row_q5_1_imat(const float *x, block_q5_1 *y, int64_t n, const float *qw) { row_legacy_min_imat(&qk_kernels_scalar, x, y, n, qw, 31); }

/* ---------------- activation quantizer (llama.cpp CPU backend) ---------------- */

void qf_quantize_q8_0_block_ref(const float x[32], int8_t q[32], float *d, float *s) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) {
        const float a = fabsf(x[j]);
        if (a > amax) amax = a;
    }
    const float d32 = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        q[j] = (int8_t)nearbyintf(x[j] * id);
        sum += q[j];
    }
    *d = qf_f16_to_f32(qf_f32_to_f16(d32));
    if (s) *s = qf_f16_to_f32(qf_f32_to_f16(d32 * (float)sum));
}

/* ---------------- row quantizers for the traits table ---------------- */

void qk_from_float_q4_0(const qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw) {
    if (qw) row_legacy_sym_imat(kk, x, y, n, qw, 8);
    else if (kk == &qk_kernels_scalar) quantize_row_q4_0_ref(x, (block_q4_0 *)y, n);
    else quantize_row_q4_0(x, (block_q4_0 *)y, n); /* the fast path, same bytes */
}

void qk_from_float_q5_0(const qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw) {
    if (qw) row_legacy_sym_imat(kk, x, y, n, qw, 16);
    else quantize_row_q5_0_ref(x, (block_q5_0 *)y, n);
}

void qk_from_float_q4_1(const qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw) {
    if (qw) row_legacy_min_imat(kk, x, y, n, qw, 15);
    else quantize_row_q4_1_ref(x, (block_q4_1 *)y, n);
}

void qk_from_float_q5_1(const qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw) {
    if (qw) row_legacy_min_imat(kk, x, y, n, qw, 31);
    else quantize_row_q5_1_ref(x, (block_q5_1 *)y, n);
}

/* ggml's Q8_0 quantizer ignores the imatrix. */
void qk_from_float_q8_0(const qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw) {
    if (kk == &qk_kernels_scalar) quantize_row_q8_0_ref(x, (block_q8_0 *)y, n);
    else quantize_row_q8_0(x, (block_q8_0 *)y, n);
}
