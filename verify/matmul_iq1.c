/* matmul_iq1.c - IQ1_S / IQ1_M rows dotted with Q8_K rows (matmul_iq1.h):
 * the scalar spec and its AVX2 twin. */
#include "matmul_iq1.h"

#include <math.h>
#include <string.h>

#include "codec_iq1.h"
#include "codec_kquants.h" /* QK_K */
#include "numfmt.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define QF_IQ1_AVX2 1
#endif

static float hsum8_ref(const float v[8]) { return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7])); }

/* Level j of grid point gi: -1, 0 or 1. */
static inline int grid_level(int gi, int j) { return (int8_t)(qf_iq1_grid[gi] >> 8 * j); }

float qf_dot_iq1_s_ref(const void *row, const int8_t *xq, const float *xd, const int16_t *S32, int64_t n) {
    const block_iq1_s *x = row;
    float acc[8] = {0}, acc1 = 0.f;
    for (int64_t b = 0; b < n / QK_K; b++) {
        int32_t lane[8] = {0}, dsum = 0;
        const int8_t *q = xq + QK_K * b;
        for (int ib = 0; ib < 8; ib++) {
            const unsigned qh = x[b].qh[ib];
            const int ls = 2 * ((qh >> 12) & 7) + 1;
            for (int e = 0; e < 32; e++) {
                const int gi = x[b].qs[4 * ib + e / 8] | (int)((qh >> 3 * (e / 8)) & 7) << 8;
                lane[e >> 2] += ls * grid_level(gi, e % 8) * q[32 * ib + e];
            }
            dsum += S32[8 * b + ib] * (qh & 0x8000 ? -1 : 1) * ls;
        }
        const float D = xd[b] * qf_f16_to_f32(x[b].d);
        for (int l = 0; l < 8; l++) acc[l] = fmaf(D, (float)lane[l], acc[l]);
        acc1 = fmaf(D, (float)dsum, acc1);
    }
    return hsum8_ref(acc) + QF_IQ1_DELTA * acc1;
}

float qf_dot_iq1_m_ref(const void *row, const int8_t *xq, const float *xd, const int16_t *S32, int64_t n) {
    const block_iq1_m *x = row;
    float acc[8] = {0}, acc2[8] = {0};
    for (int64_t b = 0; b < n / QK_K; b++) {
        int32_t lane[8] = {0}, dlane[8] = {0};
        const int8_t *q = xq + QK_K * b;
        for (int ib = 0; ib < 8; ib++) {
            const unsigned sc = (unsigned)x[b].scales[2 * (ib / 2)] | (unsigned)x[b].scales[2 * (ib / 2) + 1] << 8;
            for (int e = 0; e < 32; e++) {
                const int l = e / 8, h = e / 16;
                const unsigned qh = x[b].qh[2 * ib + h] >> 4 * (l % 2);
                const int ls = 2 * ((sc >> (6 * (ib % 2) + 3 * h)) & 7) + 1;
                const int gi = x[b].qs[4 * ib + l] | (int)(qh & 7) << 8;
                lane[e >> 2] += ls * grid_level(gi, e % 8) * q[32 * ib + e];
                dlane[e >> 2] += ls * (qh & 8 ? -1 : 1) * q[32 * ib + e];
            }
        }
        const float D = xd[b] * qf_f16_to_f32(qf_iq1_m_d(&x[b]));
        for (int l = 0; l < 8; l++) {
            acc[l] = fmaf(D, (float)lane[l], acc[l]);
            acc2[l] = fmaf(D, (float)dlane[l], acc2[l]);
        }
    }
    (void)S32;
    return hsum8_ref(acc) + QF_IQ1_DELTA * hsum8_ref(acc2);
}

#ifdef QF_IQ1_AVX2

static inline float hsum8(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

/* The 32 levels of four grid points, 8 bytes each. */
static inline __m256i grid4(int i0, int i1, int i2, int i3) {
    return _mm256_set_epi64x((long long)qf_iq1_grid[i3], (long long)qf_iq1_grid[i2], (long long)qf_iq1_grid[i1],
                             (long long)qf_iq1_grid[i0]);
}

/* 8 int32 lanes of sum_{4 bytes} w*x, each 16-bit pair sum times its scale
 * (sc: one int16 per pair); w in -1..1 (the signs moved onto x). */
static inline __m256i lanes(__m256i w, __m256i x, __m256i sc) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)), sc);
}

float qf_dot_iq1_s(const void *row, const int8_t *xq, const float *xd, const int16_t *S32, int64_t n) {
    const block_iq1_s *x = row;
    __m256 acc = _mm256_setzero_ps();
    float acc1 = 0.f;
    for (int64_t b = 0; b < n / QK_K; b++) {
        const int8_t *q = xq + QK_K * b;
        const uint8_t *qs = x[b].qs;
        __m256i sumi = _mm256_setzero_si256();
        int32_t dsum = 0;
        for (int ib = 0; ib < 8; ib++, qs += 4) {
            const unsigned qh = x[b].qh[ib];
            const int ls = 2 * ((qh >> 12) & 7) + 1;
            const __m256i g = grid4(qs[0] | (int)(qh & 7) << 8, qs[1] | (int)((qh >> 3) & 7) << 8,
                                    qs[2] | (int)((qh >> 6) & 7) << 8, qs[3] | (int)((qh >> 9) & 7) << 8);
            sumi = _mm256_add_epi32(sumi, lanes(g, _mm256_loadu_si256((const __m256i *)(q + 32 * ib)),
                                                _mm256_set1_epi16((short)ls)));
            dsum += S32[8 * b + ib] * (qh & 0x8000 ? -1 : 1) * ls;
        }
        const float D = xd[b] * qf_f16_to_f32(x[b].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(D), _mm256_cvtepi32_ps(sumi), acc);
        acc1 = fmaf(D, (float)dsum, acc1);
    }
    return hsum8(acc) + QF_IQ1_DELTA * acc1;
}

float qf_dot_iq1_m(const void *row, const int8_t *xq, const float *xd, const int16_t *S32, int64_t n) {
    const block_iq1_m *x = row;
    const __m256i one = _mm256_set1_epi8(1);
    __m256 acc = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK_K; b++) {
        const int8_t *q = xq + QK_K * b;
        const uint8_t *qs = x[b].qs, *qh = x[b].qh;
        __m256i sumi = _mm256_setzero_si256(), sumd = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++, qs += 4, qh += 2) {
            const unsigned sc = (unsigned)x[b].scales[2 * (ib / 2)] | (unsigned)x[b].scales[2 * (ib / 2) + 1] << 8;
            const short ls0 = (short)(2 * ((sc >> (6 * (ib % 2))) & 7) + 1);
            const short ls1 = (short)(2 * ((sc >> (6 * (ib % 2) + 3)) & 7) + 1);
            const __m256i scv = _mm256_set_m128i(_mm_set1_epi16(ls1), _mm_set1_epi16(ls0));
            const __m256i g = grid4(qs[0] | (qh[0] & 7) << 8, qs[1] | ((qh[0] >> 4) & 7) << 8, qs[2] | (qh[1] & 7) << 8,
                                    qs[3] | ((qh[1] >> 4) & 7) << 8);
            const long long m = 0x0101010101010101LL;
            const __m256i sgn = _mm256_set_epi64x(qh[1] & 0x80 ? -m : m, qh[1] & 0x08 ? -m : m, qh[0] & 0x80 ? -m : m,
                                                  qh[0] & 0x08 ? -m : m);
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(q + 32 * ib));
            sumi = _mm256_add_epi32(sumi, lanes(g, xv, scv));
            sumd = _mm256_add_epi32(sumd, _mm256_madd_epi16(_mm256_maddubs_epi16(one, _mm256_sign_epi8(xv, sgn)), scv));
        }
        const __m256 D = _mm256_set1_ps(xd[b] * qf_f16_to_f32(qf_iq1_m_d(&x[b])));
        acc = _mm256_fmadd_ps(D, _mm256_cvtepi32_ps(sumi), acc);
        acc2 = _mm256_fmadd_ps(D, _mm256_cvtepi32_ps(sumd), acc2);
    }
    (void)S32;
    return hsum8(acc) + QF_IQ1_DELTA * hsum8(acc2);
}

#else

float qf_dot_iq1_s(const void *row, const int8_t *xq, const float *xd, const int16_t *S32, int64_t n) {
    return qf_dot_iq1_s_ref(row, xq, xd, S32, n);
}
float qf_dot_iq1_m(const void *row, const int8_t *xq, const float *xd, const int16_t *S32, int64_t n) {
    return qf_dot_iq1_m_ref(row, xq, xd, S32, n);
}

#endif
