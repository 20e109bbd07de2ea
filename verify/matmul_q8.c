/* matmul_q8.c - integer-dot matmul for quantized weights (see matmul_q8.h).
 *
 * Plan of qf_matmul_q8:
 *   1. quantize every token row of x once (Q8_0/Q8_1/Q8_K, the activation
 *      quantizers of formats/codec_legacy.h and codec_kquants.h) into
 *      "act rows": int8 q[n] | float d[nb] | then
 *      float s[nb] (Q8_1) or int16 S32[n/32] (Q8_K: sums of 32 q);
 *   2. split the output rows in tiles (OpenMP, dynamic); a tile's weight rows
 *      are unpacked once into int8 values + float scales (qf_unpack_row_q8;
 *      K-quant sub-block scales expanded to one int8 per lane pair) and
 *      multiplied with all T token rows by a kernel of up to 4 tokens x 3 rows,
 *      so a weight block is loaded once per 4 tokens.
 * The unpacking is amortized over the T tokens; the kernel does the integer
 * products with maddubs/madd (or the VNNI dpbusd when compiled in, which gives
 * the same exact int32 lane sums) and accumulates in F32 in the order of
 * matmul_q8.h. Signed 32-block types (Q8_0 with VNNI, Q4_0, Q5_0) take
 * matmul_u32 instead: tokens and unpacked rows packed in panels, weights made
 * unsigned by an offset whose activation-sum correction starts each dot.
 * T = 1 reads the blocks directly (gemv).
 */
#include "matmul_q8.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_types.h"
#include "numfmt.h"
#include "qf_error.h"
#include "codecs.h"
#include "matmul_iq1.h"

#include "qf_threads.h"
#ifdef _OPENMP
#include <omp.h>
#else
static int omp_get_num_threads(void) { return 1; }
static int omp_get_thread_num(void) { return 0; }
#endif
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define QF_Q8_AVX2 1
#endif

#define MAX_NT 4 /* tokens per kernel call */
#define MAX_NR 3 /* weight rows per kernel call */
#define TILE_BYTES (192 * 1024) /* unpacked weight rows per tile (L2) */

/* ------------------------------------------------------------------ */
/* Row layouts */

/* The grid i-quants IQ2_XS, IQ2_S (a scale per 16) and IQ3_S, IQ3_XXS, IQ2_XXS
 * (a scale per 32, given to both 16-halves) unpack to signed 256-blocks with
 * a scale per 16, as Q6_K (no min). */
static int is_iq2_type(uint32_t type) {
    return type == GGML_TYPE_IQ2_XS || type == GGML_TYPE_IQ2_S || type == GGML_TYPE_IQ3_S ||
           type == GGML_TYPE_IQ3_XXS || type == GGML_TYPE_IQ2_XXS;
}
static int is_iq1(uint32_t type) { return type == GGML_TYPE_IQ1_S || type == GGML_TYPE_IQ1_M; }
static int is_k_type(uint32_t type) {
    return type == GGML_TYPE_Q4_K || type == GGML_TYPE_Q6_K || is_iq2_type(type) || is_iq1(type);
}
static int has_min(uint32_t type) {
    return type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q5_1 || type == GGML_TYPE_Q4_K;
}
#ifdef QF_Q8_AVX2
/* weights whose integers are >= 0 need no sign trick in maddubs */
static int is_unsigned(uint32_t type) {
    return type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q5_1 || type == GGML_TYPE_Q4_K;
}
#endif

/* Batched signed 32-blocks (matmul_u32): U_NT tokens x U_NR rows per kernel call. */
#define U_NT 4
#if defined(__AVX512VL__)
#define U_NR 4 /* 32 vector registers: 16 accumulators */
#else
#define U_NR 2
#endif

/* The offset OFF that makes a signed 32-block type's integers unsigned for
 * matmul_u32 (u = q + OFF), or 0 for the other types and where u does not fit
 * maddubs (Q8_0 without VNNI: two products 255 * 127 overflow int16). */
static int u32_offset(uint32_t type) {
#ifdef QF_Q8_AVX2
    switch (type) {
    case GGML_TYPE_Q4_0: return 8;
    case GGML_TYPE_Q5_0: return 16;
#if defined(__AVXVNNI__) || (defined(__AVX512VNNI__) && defined(__AVX512VL__))
    case GGML_TYPE_Q8_0: return 128;
#endif
    default: return 0;
    }
#else
    (void)type;
    return 0;
#endif
}

/* Bytes of one act panel: U_NT tokens' blocks interleaved (see matmul_u32). */
static size_t u32_act_panel_bytes(int64_t n) { return ((size_t)(n / 32) * U_NT * (64 + 4) + 63) / 64 * 64; }

int qf_matmul_q8_supported(uint32_t type) {
    switch (type) {
    case GGML_TYPE_Q4_0:
    case GGML_TYPE_Q4_1:
    case GGML_TYPE_Q5_0:
    case GGML_TYPE_Q5_1:
    case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q6_K:
    case GGML_TYPE_IQ2_XS:
    case GGML_TYPE_IQ2_S:
    case GGML_TYPE_IQ3_S:
    case GGML_TYPE_IQ3_XXS:
    case GGML_TYPE_IQ2_XXS:
    case GGML_TYPE_IQ1_S:
    case GGML_TYPE_IQ1_M: return 1;
    default: return 0;
    }
}

static size_t up64(size_t n) { return (n + 63) / 64 * 64; }

/* act row: q[n] | d[nb] | s[nb] (32-blocks) or S32[n/32] (Q8_K) */
typedef struct {
    const int8_t *q;
    const float *d;
    const float *s;
    const int16_t *S32;
} act_row;

static size_t act_row_bytes(int k, int64_t n) {
    const size_t nb = (size_t)(n / (k ? QK_K : 32));
    return k ? up64((size_t)n + 4 * nb + 2 * (size_t)(n / 32)) : up64((size_t)n + 8 * nb);
}

static act_row act_view(const uint8_t *p, int k, int64_t n) {
    act_row a = {(const int8_t *)p, (const float *)(p + n), NULL, NULL};
    if (k) a.S32 = (const int16_t *)(p + n + 4 * (n / QK_K));
    else a.s = (const float *)(p + n + 4 * (n / 32));
    return a;
}

static void quantize_act_row(int k, int want_s, const float *x, uint8_t *p, int64_t n, int ref) {
    int8_t *q = (int8_t *)p;
    if (k) {
        float *d = (float *)(p + n);
        int16_t *S32 = (int16_t *)(p + n + 4 * (n / QK_K));
        for (int64_t b = 0; b < n / QK_K; b++)
            (ref ? qf_quantize_q8_K_block_ref : qf_quantize_q8_K_block)(x + b * QK_K, q + b * QK_K, d + b,
                                                                         S32 + 8 * b);
    } else {
        float *d = (float *)(p + n), *s = (float *)(p + n + 4 * (n / 32));
        for (int64_t b = 0; b < n / 32; b++)
            (ref ? qf_quantize_q8_0_block_ref : qf_quantize_q8_0_block)(x + b * 32, q + b * 32, d + b,
                                                                         want_s ? s + b : NULL);
    }
}

size_t qf_matmul_q8_work_bytes(uint32_t type, int64_t n_in, int64_t T) {
    const size_t panels = u32_offset(type) ? (size_t)((T + U_NT - 1) / U_NT) * u32_act_panel_bytes(n_in) : 0;
    return act_row_bytes(is_k_type(type), n_in) * (size_t)T + panels;
}

/* ------------------------------------------------------------------ */
/* Weight unpacking */

/* One Q4_K super-block's scales: d, dmin, the 8 6-bit sub-block scales
 * (each twice: the 16-element groups the kernels use) and the 8 mins. */
static void q4k_scales(const block_q4_K *x, float *d, float *m, int8_t *sc, int16_t *mins) {
    *d = qf_f16_to_f32(x->d);
    *m = qf_f16_to_f32(x->dmin);
    for (int g = 0; g < 8; g++) {
        uint8_t s, mn;
        qf_get_scale_min_k4(g, x->scales, &s, &mn);
        sc[2 * g] = sc[2 * g + 1] = (int8_t)s;
        mins[g] = (int16_t)mn;
    }
}

/* IQ2_XS / IQ2_S rows as signed grid values q = +-g (|q| <= 43), the scales
 * 2 sc + 1 per 16 and d = d_w / 8: (d * (2sc+1)) * q is the reference
 * dequantization d_w * (0.5 + sc) * 0.25 * g exactly, and llama.cpp's AVX2
 * dot (integer sums with 2sc+1, FMA by d_w*d_x per lane, 0.125 * hsum at the
 * end) is this order scaled by the exact power of two 1/8. */
static int unpack_iq2_ref(uint32_t type, const void *row, int64_t n, int8_t *q, float *d, int8_t *sc) {
    for (int64_t b = 0; b < n / QK_K; b++) {
        const uint8_t *scales;
        if (type == GGML_TYPE_IQ2_XS) {
            const block_iq2_xs *x = (const block_iq2_xs *)row + b;
            d[b] = qf_f16_to_f32(x->d) * 0.125f;
            scales = x->scales;
            for (int g = 0; g < 32; g++) {
                const uint64_t pt = qf_iq2xs_grid[x->qs[g] & 511];
                const uint8_t s = qf_iq_signs(x->qs[g] >> 9);
                for (int j = 0; j < 8; j++) {
                    const int v = (int)((pt >> 8 * j) & 0xFF);
                    q[QK_K * b + 8 * g + j] = (int8_t)((s >> j) & 1 ? -v : v);
                }
            }
        } else {
            const block_iq2_s *x = (const block_iq2_s *)row + b;
            d[b] = qf_f16_to_f32(x->d) * 0.125f;
            scales = x->scales;
            for (int g = 0; g < 32; g++) {
                const uint64_t pt = qf_iq2s_grid[x->qs[g] | (((x->qh[g / 4] >> 2 * (g % 4)) & 3) << 8)];
                const uint8_t s = x->qs[QK_K / 8 + g];
                for (int j = 0; j < 8; j++) {
                    const int v = (int)((pt >> 8 * j) & 0xFF);
                    q[QK_K * b + 8 * g + j] = (int8_t)((s >> j) & 1 ? -v : v);
                }
            }
        }
        for (int k = 0; k < 16; k++) sc[16 * b + k] = (int8_t)(2 * ((scales[k / 2] >> 4 * (k % 2)) & 0x0F) + 1);
    }
    return 0;
}

/* g signed by bit j of s, for the n bytes of a grid point (little-endian in pt). */
static void put_signed(int8_t *q, uint64_t pt, unsigned s, int n) {
    for (int j = 0; j < n; j++) {
        const int v = (int)((pt >> 8 * j) & 0xFF);
        q[j] = (int8_t)((s >> j) & 1 ? -v : v);
    }
}

/* IQ3_S / IQ3_XXS / IQ2_XXS rows as signed grid values q = +-g (|q| <= 62),
 * the scale 2 sc + 1 of each 32 on both its 16-halves, and d = d_w (IQ3_S:
 * d_w (1 + 2sc) g), d_w / 4 (IQ3_XXS: d_w (0.5 + sc) 0.5 g) or d_w / 8
 * (IQ2_XXS: d_w (0.5 + sc) 0.25 g): (d * (2sc+1)) * q is the reference
 * dequantization exactly (the factors differ by powers of two). */
static int unpack_iq_grid32_ref(uint32_t type, const void *row, int64_t n, int8_t *q, float *d, int8_t *sc) {
    for (int64_t b = 0; b < n / QK_K; b++) {
        int8_t *qb = q + QK_K * b;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            int s;
            if (type == GGML_TYPE_IQ3_S) {
                const block_iq3_s *x = (const block_iq3_s *)row + b;
                d[b] = qf_f16_to_f32(x->d);
                s = (x->scales[ib / 2] >> 4 * (ib % 2)) & 0x0F;
                for (int g = 0; g < 8; g++)
                    put_signed(qb + 32 * ib + 4 * g, qf_iq3s_grid[x->qs[8 * ib + g] | (((x->qh[ib] >> g) & 1) << 8)],
                               (unsigned)x->signs[4 * ib + g / 2] >> 4 * (g % 2), 4);
            } else if (type == GGML_TYPE_IQ3_XXS) {
                const block_iq3_xxs *x = (const block_iq3_xxs *)row + b;
                uint32_t ss;
                memcpy(&ss, x->qs + QK_K / 4 + 4 * ib, 4);
                d[b] = qf_f16_to_f32(x->d) * 0.25f;
                s = (int)(ss >> 28);
                for (int g = 0; g < 8; g++)
                    put_signed(qb + 32 * ib + 4 * g, qf_iq3xxs_grid[x->qs[8 * ib + g]],
                               (unsigned)qf_iq_signs((ss >> 7 * (g / 2)) & 127) >> 4 * (g % 2), 4);
            } else {
                const block_iq2_xxs *x = (const block_iq2_xxs *)row + b;
                uint32_t w[2];
                memcpy(w, x->qs + 4 * ib, 8);
                d[b] = qf_f16_to_f32(x->d) * 0.125f;
                s = (int)(w[1] >> 28);
                for (int l = 0; l < 4; l++)
                    put_signed(qb + 32 * ib + 8 * l, qf_iq2xxs_grid[(w[0] >> 8 * l) & 0xFF],
                               qf_iq_signs((w[1] >> 7 * l) & 127), 8);
            }
            sc[16 * b + 2 * ib] = sc[16 * b + 2 * ib + 1] = (int8_t)(2 * s + 1);
        }
    }
    return 0;
}

/* Scalar unpacking (the spec; qf_matmul_q8_ref uses it, the fast path the
 * AVX2 version below, and the tests check that both matmuls agree bit for bit). */
static int unpack_row_ref(uint32_t type, const void *row, int64_t n, int8_t *q, float *d, float *m, int8_t *sc,
                          int16_t *mins) {
    switch (type) {
    case GGML_TYPE_Q8_0: {
        const block_q8_0 *x = row;
        for (int64_t b = 0; b < n / 32; b++) {
            d[b] = qf_f16_to_f32(x[b].d);
            memcpy(q + 32 * b, x[b].qs, 32);
        }
        return 0;
    }
    case GGML_TYPE_Q4_0: {
        const block_q4_0 *x = row;
        for (int64_t b = 0; b < n / 32; b++) {
            d[b] = qf_f16_to_f32(x[b].d);
            for (int j = 0; j < 16; j++) {
                q[32 * b + j] = (int8_t)((x[b].qs[j] & 0xF) - 8);
                q[32 * b + j + 16] = (int8_t)((x[b].qs[j] >> 4) - 8);
            }
        }
        return 0;
    }
    case GGML_TYPE_Q4_1: {
        const block_q4_1 *x = row;
        for (int64_t b = 0; b < n / 32; b++) {
            d[b] = qf_f16_to_f32(x[b].d);
            m[b] = qf_f16_to_f32(x[b].m);
            for (int j = 0; j < 16; j++) {
                q[32 * b + j] = (int8_t)(x[b].qs[j] & 0xF);
                q[32 * b + j + 16] = (int8_t)(x[b].qs[j] >> 4);
            }
        }
        return 0;
    }
    case GGML_TYPE_Q5_0:
    case GGML_TYPE_Q5_1: {
        const int is1 = type == GGML_TYPE_Q5_1;
        const size_t bs = is1 ? sizeof(block_q5_1) : sizeof(block_q5_0);
        for (int64_t b = 0; b < n / 32; b++) {
            const uint8_t *blk = (const uint8_t *)row + (size_t)b * bs;
            const uint8_t *qh_bytes = is1 ? ((const block_q5_1 *)blk)->qh : ((const block_q5_0 *)blk)->qh;
            const uint8_t *qs = is1 ? ((const block_q5_1 *)blk)->qs : ((const block_q5_0 *)blk)->qs;
            const uint32_t qh = (uint32_t)qh_bytes[0] | (uint32_t)qh_bytes[1] << 8 | (uint32_t)qh_bytes[2] << 16 |
                                (uint32_t)qh_bytes[3] << 24;
            const int off = is1 ? 0 : 16;
            if (is1) {
                d[b] = qf_f16_to_f32(((const block_q5_1 *)blk)->d);
                m[b] = qf_f16_to_f32(((const block_q5_1 *)blk)->m);
            } else {
                d[b] = qf_f16_to_f32(((const block_q5_0 *)blk)->d);
            }
            for (int j = 0; j < 16; j++) {
                q[32 * b + j] = (int8_t)(((qs[j] & 0xF) | (((qh >> j) << 4) & 0x10)) - off);
                q[32 * b + j + 16] = (int8_t)(((qs[j] >> 4) | ((qh >> (j + 12)) & 0x10)) - off);
            }
        }
        return 0;
    }
    case GGML_TYPE_Q4_K: {
        const block_q4_K *x = row;
        for (int64_t b = 0; b < n / QK_K; b++) {
            q4k_scales(&x[b], d + b, m + b, sc + 16 * b, mins + 8 * b);
            int8_t *qb = q + QK_K * b;
            for (int j = 0; j < 4; j++) /* 64 elements: low nibbles, then high nibbles of 32 bytes */
                for (int l = 0; l < 32; l++) {
                    qb[64 * j + l] = (int8_t)(x[b].qs[32 * j + l] & 0xF);
                    qb[64 * j + 32 + l] = (int8_t)(x[b].qs[32 * j + l] >> 4);
                }
        }
        return 0;
    }
    case GGML_TYPE_Q6_K: {
        const block_q6_K *x = row;
        for (int64_t b = 0; b < n / QK_K; b++) {
            d[b] = qf_f16_to_f32(x[b].d);
            memcpy(sc + 16 * b, x[b].scales, 16);
            for (int h = 0; h < 2; h++) { /* two halves of 128: ql 64 bytes, qh 32 bytes each */
                const uint8_t *ql = x[b].ql + 64 * h, *qh = x[b].qh + 32 * h;
                int8_t *qb = q + QK_K * b + 128 * h;
                for (int l = 0; l < 32; l++) {
                    qb[l] = (int8_t)(((ql[l] & 0xF) | ((qh[l] & 3) << 4)) - 32);
                    qb[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                    qb[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                    qb[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
                }
            }
        }
        return 0;
    }
    case GGML_TYPE_IQ2_XS:
    case GGML_TYPE_IQ2_S: return unpack_iq2_ref(type, row, n, q, d, sc);
    case GGML_TYPE_IQ3_S:
    case GGML_TYPE_IQ3_XXS:
    case GGML_TYPE_IQ2_XXS: return unpack_iq_grid32_ref(type, row, n, q, d, sc);
    default: return QF_EUNSUPPORTED;
    }
}

#ifdef QF_Q8_AVX2
/* AVX2 nibble/bit unpacking of the quants (scales and mins as in the reference). */
int qf_unpack_row_q8(uint32_t type, const void *row, int64_t n, int8_t *q, float *d, float *m, int8_t *sc,
                     int16_t *mins) {
    const __m128i m4 = _mm_set1_epi8(0x0F);
    switch (type) {
    case GGML_TYPE_Q4_0:
    case GGML_TYPE_Q4_1: {
        const int is1 = type == GGML_TYPE_Q4_1;
        const __m128i off = _mm_set1_epi8(is1 ? 0 : 8);
        for (int64_t b = 0; b < n / 32; b++) {
            const uint8_t *qs;
            if (is1) {
                const block_q4_1 *x = (const block_q4_1 *)row + b;
                d[b] = qf_f16_to_f32(x->d);
                m[b] = qf_f16_to_f32(x->m);
                qs = x->qs;
            } else {
                const block_q4_0 *x = (const block_q4_0 *)row + b;
                d[b] = qf_f16_to_f32(x->d);
                qs = x->qs;
            }
            const __m128i v = _mm_loadu_si128((const __m128i *)qs);
            _mm_storeu_si128((__m128i *)(q + 32 * b), _mm_sub_epi8(_mm_and_si128(v, m4), off));
            _mm_storeu_si128((__m128i *)(q + 32 * b + 16), _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), m4), off));
        }
        return 0;
    }
    case GGML_TYPE_Q4_K: {
        const block_q4_K *x = row;
        const __m256i m4y = _mm256_set1_epi8(0x0F);
        for (int64_t b = 0; b < n / QK_K; b++) {
            q4k_scales(&x[b], d + b, m + b, sc + 16 * b, mins + 8 * b);
            for (int j = 0; j < 4; j++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(x[b].qs + 32 * j));
                _mm256_storeu_si256((__m256i *)(q + QK_K * b + 64 * j), _mm256_and_si256(v, m4y));
                _mm256_storeu_si256((__m256i *)(q + QK_K * b + 64 * j + 32),
                                    _mm256_and_si256(_mm256_srli_epi16(v, 4), m4y));
            }
        }
        return 0;
    }
    case GGML_TYPE_Q6_K: {
        const block_q6_K *x = row;
        const __m256i m4y = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(0x03), o32 = _mm256_set1_epi8(32);
        for (int64_t b = 0; b < n / QK_K; b++) {
            d[b] = qf_f16_to_f32(x[b].d);
            memcpy(sc + 16 * b, x[b].scales, 16);
            for (int h = 0; h < 2; h++) {
                const __m256i L0 = _mm256_loadu_si256((const __m256i *)(x[b].ql + 64 * h));
                const __m256i L1 = _mm256_loadu_si256((const __m256i *)(x[b].ql + 64 * h + 32));
                const __m256i H = _mm256_loadu_si256((const __m256i *)(x[b].qh + 32 * h));
                int8_t *qb = q + QK_K * b + 128 * h;
                /* low 4 bits | 2 high bits << 4, minus 32 (shifts by 16-bit lanes, then masked per byte) */
                const __m256i q0 = _mm256_or_si256(_mm256_and_si256(L0, m4y),
                                                   _mm256_slli_epi16(_mm256_and_si256(H, m3), 4));
                const __m256i q1 = _mm256_or_si256(_mm256_and_si256(L1, m4y),
                                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(H, 2), m3), 4));
                const __m256i q2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L0, 4), m4y),
                                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(H, 4), m3), 4));
                const __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L1, 4), m4y),
                                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(H, 6), m3), 4));
                _mm256_storeu_si256((__m256i *)qb, _mm256_sub_epi8(q0, o32));
                _mm256_storeu_si256((__m256i *)(qb + 32), _mm256_sub_epi8(q1, o32));
                _mm256_storeu_si256((__m256i *)(qb + 64), _mm256_sub_epi8(q2, o32));
                _mm256_storeu_si256((__m256i *)(qb + 96), _mm256_sub_epi8(q3, o32));
            }
        }
        return 0;
    }
    default: return unpack_row_ref(type, row, n, q, d, m, sc, mins);
    }
}
#else
int qf_unpack_row_q8(uint32_t type, const void *row, int64_t n, int8_t *q, float *d, float *m, int8_t *sc,
                     int16_t *mins) {
    return unpack_row_ref(type, row, n, q, d, m, sc, mins);
}
#endif

/* ------------------------------------------------------------------ */
/* Scalar reference */

static float hsum8_ref(const float l[8]) { return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7])); }

/* One y element: weight row as unpacked integers, token as an act row. */
static float dot_ref(uint32_t type, int64_t n, const int8_t *wq, const float *wd, const float *wm, const int8_t *wsc,
                     const int16_t *wmins, act_row a) {
    float acc[8] = {0};
    if (!is_k_type(type)) {
        float summ = 0.0f;
        for (int64_t b = 0; b < n / 32; b++) {
            int32_t lane[8] = {0};
            for (int e = 0; e < 32; e++) lane[e >> 2] += (int32_t)wq[32 * b + e] * a.q[32 * b + e];
            const float scale = wd[b] * a.d[b];
            for (int l = 0; l < 8; l++) acc[l] = fmaf(scale, (float)lane[l], acc[l]);
            if (has_min(type)) {
                const float ms = wm[b] * a.s[b];
                summ = summ + ms;
            }
        }
        const float y = hsum8_ref(acc);
        return has_min(type) ? y + summ : y;
    }
    float accm[4] = {0};
    for (int64_t b = 0; b < n / QK_K; b++) {
        int32_t lane[8] = {0};
        for (int e = 0; e < QK_K; e++)
            lane[(e & 31) >> 2] += (int32_t)wsc[16 * b + e / 16] * ((int32_t)wq[QK_K * b + e] * a.q[QK_K * b + e]);
        const float scale = a.d[b] * wd[b];
        for (int l = 0; l < 8; l++) acc[l] = fmaf(scale, (float)lane[l], acc[l]);
        if (has_min(type)) {
            const float dmin = -(a.d[b] * wm[b]);
            const int16_t *mn = wmins + 8 * b, *S = a.S32 + 8 * b;
            for (int k = 0; k < 4; k++)
                accm[k] = fmaf(dmin, (float)((int32_t)mn[2 * k] * S[2 * k] + (int32_t)mn[2 * k + 1] * S[2 * k + 1]),
                               accm[k]);
        }
    }
    const float y = hsum8_ref(acc);
    return has_min(type) ? y + ((accm[0] + accm[2]) + (accm[1] + accm[3])) : y;
}

int qf_matmul_q8_ref(const qf_weight *w, const float *x, int64_t T, float *y) {
    const int64_t n = w->n_in;
    const int k = is_k_type(w->type);
    if (!w->data) return QF_EINVAL;
    if (!qf_matmul_q8_supported(w->type) || n % (k ? QK_K : 32) != 0) return QF_EUNSUPPORTED;
    const size_t arb = act_row_bytes(k, n);
    uint8_t *act = malloc(arb * (size_t)(T > 0 ? T : 1));
    int8_t *q = malloc((size_t)n), *sc = malloc((size_t)n / 16 + 1);
    float *d = malloc(((size_t)n / 32 + 1) * sizeof(float)), *m = malloc(((size_t)n / 32 + 1) * sizeof(float));
    int16_t *mins = malloc(((size_t)n / 32 + 1) * sizeof(int16_t));
    int rc = 0;
    if (!act || !q || !sc || !d || !m || !mins) {
        rc = QF_ENOMEM;
        goto done;
    }
    for (int64_t t = 0; t < T; t++)
        quantize_act_row(k, has_min(w->type), x + t * n, act + (size_t)t * arb, n, 1);
    for (int64_t o = 0; is_iq1(w->type) && o < w->n_out; o++) /* dots straight from the blocks */
        for (int64_t t = 0; t < T; t++) {
            const act_row a = act_view(act + (size_t)t * arb, k, n);
            const void *row = (const uint8_t *)w->data + (size_t)o * w->row_bytes;
            y[t * w->n_out + o] = (w->type == GGML_TYPE_IQ1_S ? qf_dot_iq1_s_ref : qf_dot_iq1_m_ref)(row, a.q, a.d, a.S32, n);
        }
    for (int64_t o = 0; !is_iq1(w->type) && o < w->n_out; o++) {
        unpack_row_ref(w->type, (const uint8_t *)w->data + (size_t)o * w->row_bytes, n, q, d, m, sc, mins);
        for (int64_t t = 0; t < T; t++)
            y[t * w->n_out + o] = dot_ref(w->type, n, q, d, m, sc, mins, act_view(act + (size_t)t * arb, k, n));
    }
done:
    free(act);
    free(q);
    free(sc);
    free(d);
    free(m);
    free(mins);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Fast path */

/* Unpacked weight row in a tile: q[n] | d[nb] | m[nb] | scx[n/2] | mins[n/32].
 * scx: for each 32 elements 16 int8, [sc(16e) x 8, sc(16e+16) x 8], the
 * scales of the 16 int16 pair sums maddubs makes of those 32 products. */
typedef struct {
    size_t d, m, scx, mins, bytes;
} wlayout;

static wlayout wrow_layout(uint32_t type, int64_t n) {
    const size_t nb = (size_t)(n / (is_k_type(type) ? QK_K : 32));
    wlayout L;
    L.d = up64((size_t)n);
    L.m = L.d + up64(4 * nb);
    L.scx = L.m + up64(4 * nb);
    L.mins = L.scx + (is_k_type(type) ? up64((size_t)n / 2) : 0);
    L.bytes = L.mins + (is_k_type(type) ? up64(2 * (size_t)(n / 32)) : 0);
    return L;
}

static void unpack_tile_row(uint32_t type, const void *src, int64_t n, uint8_t *dst, wlayout L, int8_t *sc_tmp) {
    qf_unpack_row_q8(type, src, n, (int8_t *)dst, (float *)(dst + L.d), (float *)(dst + L.m), sc_tmp,
                     (int16_t *)(dst + L.mins));
    if (is_k_type(type)) {
        int8_t *scx = (int8_t *)(dst + L.scx);
        for (int64_t g = 0; g < n / 32; g++) {
            memset(scx + 16 * g, sc_tmp[2 * g], 8);
            memset(scx + 16 * g + 8, sc_tmp[2 * g + 1], 8);
        }
    }
}

#ifdef QF_Q8_AVX2

static inline float hsum8(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v)); /* l0+l4 .. l3+l7 */
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

/* 8 int32 lanes, lane l = sum of the 4 products of bytes 4l..4l+3 of
 * u (unsigned) and s (signed); exact (no pair of products reaches 2^15). */
static inline __m256i dot4(__m256i u, __m256i s) {
#if defined(__AVXVNNI__)
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s);
#elif defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

/* Q8_0 family: y[t*ldy + r] for t < NT, r < NR over all nb blocks. */
static inline __attribute__((always_inline)) void kernel32(int NT, int NR, int SIGNED, int MIN, const uint8_t *w,
                                                           size_t wstride, wlayout L, const uint8_t *a, size_t astride,
                                                           int64_t n, float *y, int64_t ldy) {
    const int64_t nb = n / 32;
    __m256 acc[MAX_NT][MAX_NR];
    float summ[MAX_NT][MAX_NR];
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 3
        for (int r = 0; r < NR; r++) {
            acc[t][r] = _mm256_setzero_ps();
            summ[t][r] = 0.0f;
        }
    for (int64_t b = 0; b < nb; b++) {
        __m256i wq[MAX_NR], wu[MAX_NR];
        __m256 wd[MAX_NR];
#pragma GCC unroll 3
        for (int r = 0; r < NR; r++) {
            wq[r] = _mm256_loadu_si256((const __m256i *)(w + r * wstride + 32 * b));
            wu[r] = SIGNED ? _mm256_sign_epi8(wq[r], wq[r]) : wq[r];
            wd[r] = _mm256_broadcast_ss((const float *)(w + r * wstride + L.d) + b);
        }
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            const __m256i xq = _mm256_loadu_si256((const __m256i *)(a + t * astride + 32 * b));
            const __m256 xd = _mm256_broadcast_ss((const float *)(a + t * astride + n) + b);
#pragma GCC unroll 3
            for (int r = 0; r < NR; r++) {
                const __m256i lanes = dot4(wu[r], SIGNED ? _mm256_sign_epi8(xq, wq[r]) : xq);
                acc[t][r] = _mm256_fmadd_ps(_mm256_mul_ps(wd[r], xd), _mm256_cvtepi32_ps(lanes), acc[t][r]);
                if (MIN) {
                    const float ms = ((const float *)(w + r * wstride + L.m))[b] *
                                     ((const float *)(a + t * astride + n + 4 * nb))[b];
                    summ[t][r] = summ[t][r] + ms;
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 3
        for (int r = 0; r < NR; r++) {
            const float v = hsum8(acc[t][r]);
            y[t * ldy + r] = MIN ? v + summ[t][r] : v;
        }
}

/* K-quants (Q4_K: unsigned with mins, Q6_K: signed). */
static inline __attribute__((always_inline)) void kernelK(int NT, int NR, int SIGNED, int MIN, const uint8_t *w,
                                                          size_t wstride, wlayout L, const uint8_t *a, size_t astride,
                                                          int64_t n, float *y, int64_t ldy) {
    const int64_t nb = n / QK_K;
    __m256 acc[MAX_NT][MAX_NR];
    __m128 accm[MAX_NT][MAX_NR];
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 3
        for (int r = 0; r < NR; r++) {
            acc[t][r] = _mm256_setzero_ps();
            accm[t][r] = _mm_setzero_ps();
        }
    for (int64_t b = 0; b < nb; b++) {
        __m256i sumi[MAX_NT][MAX_NR];
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++)
#pragma GCC unroll 3
            for (int r = 0; r < NR; r++) sumi[t][r] = _mm256_setzero_si256();
        for (int g = 0; g < 8; g++) {
            const int64_t e = QK_K * b + 32 * g;
            __m256i wq[MAX_NR], wu[MAX_NR], sc[MAX_NR];
#pragma GCC unroll 3
            for (int r = 0; r < NR; r++) {
                wq[r] = _mm256_loadu_si256((const __m256i *)(w + r * wstride + e));
                wu[r] = SIGNED ? _mm256_sign_epi8(wq[r], wq[r]) : wq[r];
                sc[r] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + r * wstride + L.scx + e / 2)));
            }
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) {
                const __m256i xq = _mm256_loadu_si256((const __m256i *)(a + t * astride + e));
#pragma GCC unroll 3
                for (int r = 0; r < NR; r++) {
                    const __m256i p16 = _mm256_maddubs_epi16(wu[r], SIGNED ? _mm256_sign_epi8(xq, wq[r]) : xq);
                    sumi[t][r] = _mm256_add_epi32(sumi[t][r], _mm256_madd_epi16(p16, sc[r]));
                }
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            const float xd = ((const float *)(a + t * astride + n))[b];
#pragma GCC unroll 3
            for (int r = 0; r < NR; r++) {
                const float wd = ((const float *)(w + r * wstride + L.d))[b];
                acc[t][r] = _mm256_fmadd_ps(_mm256_set1_ps(xd * wd), _mm256_cvtepi32_ps(sumi[t][r]), acc[t][r]);
                if (MIN) {
                    const float dmin = -(xd * ((const float *)(w + r * wstride + L.m))[b]);
                    const __m128i mn = _mm_loadu_si128((const __m128i *)(w + r * wstride + L.mins) + b);
                    const __m128i S = _mm_loadu_si128((const __m128i *)(a + t * astride + n + 4 * nb) + b);
                    accm[t][r] = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(_mm_madd_epi16(mn, S)), accm[t][r]);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 3
        for (int r = 0; r < NR; r++) {
            const float v = hsum8(acc[t][r]);
            if (MIN) {
                __m128 m = accm[t][r];
                m = _mm_add_ps(m, _mm_movehl_ps(m, m));
                m = _mm_add_ss(m, _mm_movehdup_ps(m));
                y[t * ldy + r] = v + _mm_cvtss_f32(m);
            } else {
                y[t * ldy + r] = v;
            }
        }
}

#define KERNEL_SHAPES(KF, S, M)                                                 \
    switch (nt * 4 + nr) {                                                      \
    case 4 * 4 + 3: KF(4, 3, S, M, w, ws, L, a, as, n, y, ldy); break;          \
    case 4 * 4 + 2: KF(4, 2, S, M, w, ws, L, a, as, n, y, ldy); break;          \
    case 4 * 4 + 1: KF(4, 1, S, M, w, ws, L, a, as, n, y, ldy); break;          \
    case 3 * 4 + 3: KF(3, 3, S, M, w, ws, L, a, as, n, y, ldy); break;          \
    case 3 * 4 + 2: KF(3, 2, S, M, w, ws, L, a, as, n, y, ldy); break;          \
    case 3 * 4 + 1: KF(3, 1, S, M, w, ws, L, a, as, n, y, ldy); break;          \
    case 2 * 4 + 3: KF(2, 3, S, M, w, ws, L, a, as, n, y, ldy); break;          \
    case 2 * 4 + 2: KF(2, 2, S, M, w, ws, L, a, as, n, y, ldy); break;          \
    case 2 * 4 + 1: KF(2, 1, S, M, w, ws, L, a, as, n, y, ldy); break;          \
    case 1 * 4 + 3: KF(1, 3, S, M, w, ws, L, a, as, n, y, ldy); break;          \
    case 1 * 4 + 2: KF(1, 2, S, M, w, ws, L, a, as, n, y, ldy); break;          \
    default: KF(1, 1, S, M, w, ws, L, a, as, n, y, ldy); break;                 \
    }

static void kernel_signed32(int nt, int nr, const uint8_t *w, size_t ws, wlayout L, const uint8_t *a, size_t as,
                            int64_t n, float *y, int64_t ldy) {
    KERNEL_SHAPES(kernel32, 1, 0)
}
static void kernel_min32(int nt, int nr, const uint8_t *w, size_t ws, wlayout L, const uint8_t *a, size_t as,
                         int64_t n, float *y, int64_t ldy) {
    KERNEL_SHAPES(kernel32, 0, 1)
}
static void kernel_q4K(int nt, int nr, const uint8_t *w, size_t ws, wlayout L, const uint8_t *a, size_t as,
                       int64_t n, float *y, int64_t ldy) {
    KERNEL_SHAPES(kernelK, 0, 1)
}
static void kernel_q6K(int nt, int nr, const uint8_t *w, size_t ws, wlayout L, const uint8_t *a, size_t as,
                       int64_t n, float *y, int64_t ldy) {
    KERNEL_SHAPES(kernelK, 1, 0)
}

/* ---- Batch 1: rows straight from the blocks ----
 * One token against every row: unpacking a row into the tile costs more than
 * its dot product, so these read the blocks and unpack in registers. A row's
 * F32 accumulation is one chain of dependent FMAs (one per block), so the
 * kernels take GEMV_ROWS rows per pass: independent chains in flight, and one
 * load of each activation block for all of them. Every row gets the same
 * exact int32 lane sums and the same FMAs in the same order as kernel32 /
 * kernelK with NT = NR = 1, so results are bit-identical to the tiled path.
 * Signed weights are multiplied as unsigned u = q + bias with the activation
 * sums times the bias taken off again (exact integer identities, computed once
 * per token in gemv_prep): fewer operations per block than the sign trick. */

#define GEMV_ROWS 4

static inline float h2f(qf_half h) {
#ifdef __F16C__
    return _cvtsh_ss(h);
#else
    return qf_f16_to_f32(h);
#endif
}

/* acc + the 8 int32 lane sums of dot4 (u unsigned, s signed; exact). */
static inline __m256i dot4_acc(__m256i acc, __m256i u, __m256i s) {
#if defined(__AVXVNNI__)
    return _mm256_dpbusd_avx_epi32(acc, u, s);
#elif defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(acc, u, s);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

/* Per-token activation sums for the bias identities, one __m256i per 32
 * activations: Q4_0 the 8 lanes -8 * (x[4l] + .. + x[4l+3]); Q6_K the 16
 * pair sums 32 * (x[2i] + x[2i+1]) as int16. */
static void gemv_prep(uint32_t type, const uint8_t *a, int64_t n, __m256i *out) {
    const __m256i ones = _mm256_set1_epi8(1);
    for (int64_t g = 0; g < n / 32; g++) {
        const __m256i p = _mm256_maddubs_epi16(ones, _mm256_loadu_si256((const __m256i *)(a + 32 * g)));
        out[g] = type == GGML_TYPE_Q4_0 ? _mm256_madd_epi16(p, _mm256_set1_epi16(-8)) : _mm256_slli_epi16(p, 5);
    }
}

/* Q8_0 and Q4_1 (unsigned with a min): y[r] for NR rows of n
 * elements `stride` bytes apart; `type` and NR are constants at each call. */
static inline __attribute__((always_inline)) void gemv_legacy(uint32_t type, int NR, const uint8_t *rows,
                                                                size_t stride, const uint8_t *a, const __m256i *xb,
                                                                int64_t n, float *y, int64_t ys) {
    const int64_t nb = n / 32;
    const float *xd = (const float *)(a + n), *xs = (const float *)(a + n + 4 * nb);
    const __m256i m4 = _mm256_set1_epi8(0x0F), nib_shift = _mm256_set_epi64x(4, 4, 0, 0);
    __m256 acc[GEMV_ROWS];
    float summ[GEMV_ROWS];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        acc[r] = _mm256_setzero_ps();
        summ[r] = 0.0f;
    }
    for (int64_t b = 0; b < nb; b++) {
        const __m256i xq = _mm256_loadu_si256((const __m256i *)(a + 32 * b));
        const float xdb = xd[b];
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const uint8_t *row = rows + (size_t)r * stride;
            __m256i lanes;
            float wd;
            if (type == GGML_TYPE_Q8_0) {
                const block_q8_0 *x = (const block_q8_0 *)row + b;
                const __m256i wq = _mm256_loadu_si256((const __m256i *)x->qs);
                lanes = dot4_acc(_mm256_setzero_si256(), _mm256_sign_epi8(wq, wq), _mm256_sign_epi8(xq, wq));
                wd = h2f(x->d);
            } else {
                const uint8_t *qs = ((const block_q4_1 *)row + b)->qs;
                /* the 16 bytes in both halves, the high half shifted by 4: low nibbles | high nibbles */
                const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
                const __m256i u = _mm256_and_si256(_mm256_srlv_epi64(v, nib_shift), m4);
                lanes = dot4_acc(_mm256_setzero_si256(), u, xq);
                wd = h2f(((const block_q4_1 *)row + b)->d);
            }
            acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(wd), _mm256_set1_ps(xdb)), _mm256_cvtepi32_ps(lanes), acc[r]);
            if (type == GGML_TYPE_Q4_1) summ[r] = summ[r] + h2f(((const block_q4_1 *)row + b)->m) * xs[b];
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        const float v = hsum8(acc[r]);
        y[r * ys] = type == GGML_TYPE_Q4_1 ? v + summ[r] : v;
    }
}

/* Q4_0 rows against a Q8_0 row. The block scales d_w * d_x are taken
 * Q4_0_CHUNK blocks at a time: the F16 d_w of each row gathered by integer
 * loads, converted and multiplied by the d_x in one vector step, and read back
 * by the FMAs as broadcasts from memory. Each row gets kernel32's products
 * d_w * d_x, lane sums and FMAs in its order (the same bits); per block the
 * vector pipes only unpack the nibbles, take the integer dot, convert and FMA. */
#define Q4_0_CHUNK 8
static inline __attribute__((always_inline)) __m128i q4_0_d8(const uint8_t *row, int64_t b0, int nc) {
    uint64_t h0 = 0, h1 = 0;
#pragma GCC unroll 8
    for (int j = 0; j < nc; j++) {
        uint16_t d;
        memcpy(&d, &((const block_q4_0 *)row + b0 + j)->d, 2);
        if (j < 4) h0 |= (uint64_t)d << (16 * j);
        else h1 |= (uint64_t)d << (16 * (j - 4));
    }
#ifdef __GNUC__
    /* keeps the gather in integer registers: the compiler would otherwise build it with vector shuffles */
    __asm__("" : "+r"(h0), "+r"(h1));
#endif
    return _mm_set_epi64x((long long)h1, (long long)h0);
}

static inline __attribute__((always_inline)) void gemv_q4_0(int NR, const uint8_t *rows, size_t stride,
                                                              const uint8_t *a, const __m256i *xb, int64_t n, float *y,
                                                              int64_t ys) {
    const int64_t nb = n / 32;
    const float *xd = (const float *)(a + n);
    const __m256i m4 = _mm256_set1_epi8(0x0F), nib_shift = _mm256_set_epi64x(4, 4, 0, 0);
    __m256 acc[GEMV_ROWS];
    _Alignas(32) float s[GEMV_ROWS][Q4_0_CHUNK];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t b0 = 0; b0 < nb; b0 += Q4_0_CHUNK) {
        const int nc = nb - b0 < Q4_0_CHUNK ? (int)(nb - b0) : Q4_0_CHUNK;
        if (nc == Q4_0_CHUNK) {
            const __m256 xdv = _mm256_loadu_ps(xd + b0);
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++)
                _mm256_store_ps(s[r], _mm256_mul_ps(_mm256_cvtph_ps(q4_0_d8(rows + (size_t)r * stride, b0, Q4_0_CHUNK)), xdv));
        } else { /* the last, partial chunk */
            _Alignas(32) float t[Q4_0_CHUNK] = {0};
            memcpy(t, xd + b0, (size_t)nc * sizeof(float));
            for (int r = 0; r < NR; r++)
                _mm256_store_ps(s[r], _mm256_mul_ps(_mm256_cvtph_ps(q4_0_d8(rows + (size_t)r * stride, b0, nc)), _mm256_load_ps(t)));
        }
        for (int j = 0; j < nc; j++) {
            const int64_t b = b0 + j;
            __m256i xq = _mm256_loadu_si256((const __m256i *)(a + 32 * b)), bias = xb[b];
#ifdef __GNUC__
            __asm__("" : "+x"(xq), "+x"(bias)); /* one load each for all rows, not a memory operand per row */
#endif
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) {
                const block_q4_0 *x = (const block_q4_0 *)(rows + (size_t)r * stride) + b;
                /* the 16 bytes in both halves, the high half shifted by 4: low nibbles | high nibbles */
                const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)x->qs));
                const __m256i u = _mm256_and_si256(_mm256_srlv_epi64(v, nib_shift), m4);
                const __m256i lanes = dot4_acc(bias, u, xq); /* (u - 8) . x = u . x - 8 sum(x) */
                acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(&s[r][j]), _mm256_cvtepi32_ps(lanes), acc[r]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) y[r * ys] = hsum8(acc[r]);
}

/* The eight 6-bit scales and mins of a Q4_K super-block from its 12 packed
 * bytes, four at a time, as 8 bytes each (qf_get_scale_min_k4 one by one is
 * the reference). */
static inline void q4K_scales_mins(const uint8_t s[12], uint64_t *sc, uint64_t *mn) {
    uint32_t u[3];
    memcpy(u, s, 12);
    const uint32_t o0 = u[0] & 0x3f3f3f3fu, o1 = (u[2] & 0x0f0f0f0fu) | ((u[0] >> 6) & 0x03030303u) << 4;
    const uint32_t o2 = u[1] & 0x3f3f3f3fu, o3 = ((u[2] >> 4) & 0x0f0f0f0fu) | ((u[1] >> 6) & 0x03030303u) << 4;
    *sc = (uint64_t)o0 | (uint64_t)o1 << 32;
    *mn = (uint64_t)o2 | (uint64_t)o3 << 32;
}

/* Byte shuffles that spread int16 element k of each 128-bit lane over the lane. */
static inline __m256i bcast16_mask(int k) { return _mm256_set1_epi16((short)(2 * k | (2 * k + 1) << 8)); }

/* Q4_K rows (n a multiple of 256) against a Q8_K row; NR as in gemv_legacy. */
static inline __attribute__((always_inline)) void gemv_q4K(int NR, const uint8_t *rows, size_t stride,
                                                             const uint8_t *a, int64_t n, float *y, int64_t ys) {
    const int64_t nb = n / QK_K;
    const float *xd = (const float *)(a + n);
    const int16_t *S = (const int16_t *)(a + n + 4 * nb);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[GEMV_ROWS];
    __m128 accm[GEMV_ROWS];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        acc[r] = _mm256_setzero_ps();
        accm[r] = _mm_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *xq = a + QK_K * b;
        const __m128i Sv = _mm_loadu_si128((const __m128i *)(S + 8 * b));
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const block_q4_K *x = (const block_q4_K *)(rows + (size_t)r * stride) + b;
            uint64_t scb, mnb;
            q4K_scales_mins(x->scales, &scb, &mnb);
            const __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)scb)));
            __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) { /* 64 elements: the low, then the high nibbles of 32 bytes */
                const __m256i v = _mm256_loadu_si256((const __m256i *)(x->qs + 32 * j));
                const __m256i p0 = _mm256_maddubs_epi16(_mm256_and_si256(v, m4), _mm256_loadu_si256((const __m256i *)(xq + 64 * j)));
                const __m256i p1 = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4),
                                                        _mm256_loadu_si256((const __m256i *)(xq + 64 * j + 32)));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p0, _mm256_shuffle_epi8(sc16, bcast16_mask(2 * j))));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p1, _mm256_shuffle_epi8(sc16, bcast16_mask(2 * j + 1))));
            }
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(xd[b] * h2f(x->d)), _mm256_cvtepi32_ps(sumi), acc[r]);
            const float dmin = -(xd[b] * h2f(x->dmin));
            const __m128i mnv = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)mnb));
            accm[r] = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(_mm_madd_epi16(mnv, Sv)), accm[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        const float v = hsum8(acc[r]);
        __m128 m = _mm_add_ps(accm[r], _mm_movehl_ps(accm[r], accm[r]));
        m = _mm_add_ss(m, _mm_movehdup_ps(m));
        y[r * ys] = v + _mm_cvtss_f32(m);
    }
}

/* Q6_K rows against a Q8_K row: (q - 32) . x as q . x - 32 (pair sums of x),
 * in int16 (|q . x| <= 2*63*127 per pair), then the scales. */
static inline __attribute__((always_inline)) void gemv_q6K(int NR, const uint8_t *rows, size_t stride,
                                                             const uint8_t *a, const __m256i *xb, int64_t n, float *y,
                                                             int64_t ys) {
    const int64_t nb = n / QK_K;
    const float *xd = (const float *)(a + n);
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30), m3 = _mm256_set1_epi8(0x03);
    __m256 acc[GEMV_ROWS];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const block_q6_K *x = (const block_q6_K *)(rows + (size_t)r * stride) + b;
            /* scales as int16: [s0..s7 | s0..s7] and [s8..s15 | s8..s15] */
            const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x->scales));
            const __m256i sa = _mm256_permute2x128_si256(s16, s16, 0x00), sb = _mm256_permute2x128_si256(s16, s16, 0x11);
            __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) { /* two halves of 128: ql 64 bytes, qh 32 bytes each */
                const __m256i l0 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h));
                const __m256i l1 = _mm256_loadu_si256((const __m256i *)(x->ql + 64 * h + 32));
                const __m256i hb = _mm256_loadu_si256((const __m256i *)(x->qh + 32 * h));
                __m256i q[4];
                q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(hb, m3), 4));
                q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30));
                q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(hb, m30));
                q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                       _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30));
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    const int g = 4 * h + k; /* 32-element group: scales 2g (low 16) and 2g+1 (high 16) */
                    const __m256i xq = _mm256_loadu_si256((const __m256i *)(a + QK_K * b + 32 * g));
                    const __m256i p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(q[k], xq), xb[8 * b + g]);
                    const __m256i mask = _mm256_set_m128i(_mm256_castsi256_si128(bcast16_mask((2 * g + 1) & 7)),
                                                          _mm256_castsi256_si128(bcast16_mask((2 * g) & 7)));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, _mm256_shuffle_epi8(g < 4 ? sa : sb, mask)));
                }
            }
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(xd[b] * h2f(x->d)), _mm256_cvtepi32_ps(sumi), acc[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) y[r * ys] = hsum8(acc[r]);
}

static int gemv_supported(uint32_t type) {
    return type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q4_K ||
           type == GGML_TYPE_Q6_K;
}

/* NR rows `stride` bytes apart into y[0], y[ys], ..: one instance per type and NR. */
static inline __attribute__((always_inline)) void gemv_rows(uint32_t type, int NR, const uint8_t *rows, size_t stride,
                                                              const uint8_t *a, const __m256i *xb, int64_t n, float *y,
                                                              int64_t ys) {
    switch (type) {
    case GGML_TYPE_Q4_K: gemv_q4K(NR, rows, stride, a, n, y, ys); break;
    case GGML_TYPE_Q6_K: gemv_q6K(NR, rows, stride, a, xb, n, y, ys); break;
    case GGML_TYPE_Q8_0: gemv_legacy(GGML_TYPE_Q8_0, NR, rows, stride, a, xb, n, y, ys); break;
    case GGML_TYPE_Q4_0: gemv_q4_0(NR, rows, stride, a, xb, n, y, ys); break;
    default: gemv_legacy(GGML_TYPE_Q4_1, NR, rows, stride, a, xb, n, y, ys); break;
    }
}

static void gemv_group(uint32_t type, const uint8_t *rows, size_t stride, const uint8_t *a, const __m256i *xb,
                       int64_t n, float *y, int64_t ys) {
    gemv_rows(type, GEMV_ROWS, rows, stride, a, xb, n, y, ys);
}
static void gemv_one(uint32_t type, const uint8_t *row, const uint8_t *a, const __m256i *xb, int64_t n, float *y) {
    gemv_rows(type, 1, row, 0, a, xb, n, y, 1);
}

/* y[r] for every row r of w against the one quantized activation row a;
 * xb: n / 32 vectors of work memory for gemv_prep. Each thread takes a
 * contiguous run of rows and cuts it in GEMV_ROWS equal parts (the rest one by
 * one) walked side by side: every part is read front to back, so each stays one sequential stream
 * for the hardware prefetcher (adjacent rows side by side interleave their
 * reads within a page, which the prefetcher does not follow, and stall on
 * memory). */
static void gemv(const qf_weight *w, const uint8_t *a, __m256i *xb, float *y, int n_threads) {
    const int64_t n = w->n_in, n_out = w->n_out;
    const uint8_t *data = w->data;
    const size_t rb = w->row_bytes;
    if (w->type == GGML_TYPE_Q4_0 || w->type == GGML_TYPE_Q6_K) gemv_prep(w->type, a, n, xb);
#pragma omp parallel num_threads(n_threads)
    {
        const int nt = omp_get_num_threads(), it = omp_get_thread_num();
        /* an odd part length: the parts' distance in bytes is then never a multiple of the 4 KiB
         * page (row sizes hold at most 2^7), which would put the four streams in the same cache
         * sets and memory banks */
        const int64_t lo = n_out * it / nt, hi = n_out * (it + 1) / nt, even = (hi - lo) / GEMV_ROWS;
        const int64_t part = even > 1 && !(even & 1) ? even - 1 : even;
        for (int64_t i = 0; i < part; i++)
            gemv_group(w->type, data + (size_t)(lo + i) * rb, (size_t)part * rb, a, xb, n, y + lo + i, part);
        for (int64_t r = lo + GEMV_ROWS * part; r < hi; r++) gemv_one(w->type, data + (size_t)r * rb, a, xb, n, y + r);
    }
}

/* ---- Batched signed 32-blocks (Q8_0, Q4_0, Q5_0) ----
 * The weights q are taken as unsigned u = q + OFF (u32_offset) and OFF times
 * the activation sums taken off again: u . x - OFF sum(x) is the exact int32
 * lane sum q . x of kernel32. Each (token, row, block) then costs one dot
 * (dpbusd starting from the bias, or maddubs/madd + add), one conversion and
 * one FMA. Both operands are packed in panels so that the kernel walks three
 * pointers:
 *   act panel (U_NT tokens):  per block b: q[U_NT][32] | bias[U_NT][8 int32],
 *                             then dx[nb][U_NT]
 *   weight panel (U_NR rows): per block b: u[U_NR][32], then dw[nb][U_NR]
 * bias = -OFF * (x[4l] + .. + x[4l+3]) per lane. The scales d_w * d_x are the
 * same F32 products as kernel32's, taken for all blocks before the block
 * loop. Every y element gets the same lane sums and FMAs in the same order as
 * kernel32: bit-identical results. Missing tokens/rows of a panel are zeros. */

static size_t u32_w_panel_bytes(int64_t n) { return ((size_t)(n / 32) * U_NR * (32 + 4) + 63) / 64 * 64; }

/* Act panel p of tokens t0.. (nt of them) from their act rows (stride arb). */
static void u32_pack_act(int off, const uint8_t *act, size_t arb, int nt, int64_t n, uint8_t *p) {
    const int64_t nb = n / 32;
    const __m256i ones = _mm256_set1_epi8(1), moff = _mm256_set1_epi16((short)-off);
    float *dx = (float *)(p + (size_t)nb * U_NT * 64);
    for (int t = 0; t < U_NT; t++) {
        const uint8_t *a = act + (size_t)t * arb;
        for (int64_t b = 0; b < nb; b++) {
            __m256i *dst = (__m256i *)(p + (size_t)b * U_NT * 64);
            const __m256i xq = t < nt ? _mm256_loadu_si256((const __m256i *)(a + 32 * b)) : _mm256_setzero_si256();
            _mm256_store_si256(dst + t, xq);
            _mm256_store_si256(dst + U_NT + t, _mm256_madd_epi16(_mm256_maddubs_epi16(ones, xq), moff));
            dx[b * U_NT + t] = t < nt ? ((const float *)(a + n))[b] : 0.0f;
        }
    }
}

/* Weight panel of nr tile rows (unpacked, stride ws): u = q + OFF. */
static void u32_pack_w(int off, const uint8_t *tile, size_t ws, wlayout L, int nr, int64_t n, uint8_t *p) {
    const int64_t nb = n / 32;
    const __m256i o = _mm256_set1_epi8((char)off);
    float *dw = (float *)(p + (size_t)nb * U_NR * 32);
    for (int r = 0; r < U_NR; r++) {
        const uint8_t *row = tile + (size_t)r * ws;
        for (int64_t b = 0; b < nb; b++) {
            const __m256i u = r < nr ? _mm256_add_epi8(_mm256_loadu_si256((const __m256i *)(row + 32 * b)), o)
                                     : _mm256_setzero_si256();
            _mm256_store_si256((__m256i *)(p + ((size_t)b * U_NR + r) * 32), u);
            dw[b * U_NR + r] = r < nr ? ((const float *)(row + L.d))[b] : 0.0f;
        }
    }
}

/* sc[b][t][r] = dw[b][r] * dx[b][t] for the panels' blocks. */
static void u32_scales(const uint8_t *wp, const uint8_t *ap, int64_t nb, float *sc) {
    const float *dw = (const float *)(wp + (size_t)nb * U_NR * 32), *dx = (const float *)(ap + (size_t)nb * U_NT * 64);
#if defined(__AVX512F__) && U_NR == 4 && U_NT == 4
    const __m512i spread = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    for (int64_t b = 0; b < nb; b++) {
        const __m512 w4 = _mm512_broadcast_f32x4(_mm_loadu_ps(dw + 4 * b));
        const __m512 x4 = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(_mm_loadu_ps(dx + 4 * b)));
        _mm512_store_ps(sc + 16 * b, _mm512_mul_ps(w4, x4));
    }
#else
    for (int64_t b = 0; b < nb; b++)
        for (int t = 0; t < U_NT; t++)
            for (int r = 0; r < U_NR; r++) sc[(b * U_NT + t) * U_NR + r] = dw[b * U_NR + r] * dx[b * U_NT + t];
#endif
}

/* y[t * ldy + r] for t < NT, r < NR from a weight panel and an act panel. */
static inline __attribute__((always_inline)) void kernel_u32(int NT, int NR, const uint8_t *wp, const uint8_t *ap,
                                                             const float *sc, int64_t nb, float *y, int64_t ldy) {
    __m256 acc[U_NT][U_NR];
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) acc[t][r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const __m256i *wb = (const __m256i *)(wp + (size_t)b * U_NR * 32);
        const __m256i *xb = (const __m256i *)(ap + (size_t)b * U_NT * 64);
        const float *sb = sc + b * U_NT * U_NR;
        __m256i wu[U_NR];
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) wu[r] = _mm256_load_si256(wb + r);
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            const __m256i xq = _mm256_load_si256(xb + t), bias = _mm256_load_si256(xb + U_NT + t);
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++)
                acc[t][r] = _mm256_fmadd_ps(_mm256_broadcast_ss(sb + t * U_NR + r),
                                            _mm256_cvtepi32_ps(dot4_acc(bias, wu[r], xq)), acc[t][r]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) y[t * ldy + r] = hsum8(acc[t][r]);
}

static void kernel_u32_any(int nt, int nr, const uint8_t *wp, const uint8_t *ap, const float *sc, int64_t nb, float *y,
                           int64_t ldy) {
#define KU(T, R)                                                                                                      \
    case T * 8 + R: kernel_u32(T, R, wp, ap, sc, nb, y, ldy); break;
    switch (nt * 8 + nr) {
        KU(4, 1) KU(4, 2) KU(3, 1) KU(3, 2) KU(2, 1) KU(2, 2) KU(1, 2)
#if U_NR == 4
        KU(4, 3) KU(4, 4) KU(3, 3) KU(3, 4) KU(2, 3) KU(2, 4) KU(1, 3) KU(1, 4)
#endif
    default: kernel_u32(1, 1, wp, ap, sc, nb, y, ldy); break;
    }
#undef KU
}

/* qf_matmul_q8 for u32_offset types with T > 1: act rows, act panels (in
 * work after the rows), then tiles of weight rows unpacked and packed once
 * and multiplied with every act panel. Returns 0 or QF_ENOMEM. */
static int matmul_u32(const qf_weight *w, const float *x, int64_t T, float *y, uint8_t *act, size_t arb,
                      int n_threads) {
    const int64_t n = w->n_in, n_out = w->n_out, nb = n / 32;
    const uint32_t type = w->type;
    const int off = u32_offset(type);
    const wlayout L = wrow_layout(type, n);
    const size_t apb = u32_act_panel_bytes(n), wpb = u32_w_panel_bytes(n);
    uint8_t *panels = act + arb * (size_t)T;
    const int64_t n_groups = (T + U_NT - 1) / U_NT;
    const int64_t R = qf_tile_rows((int64_t)(TILE_BYTES / (L.bytes + wpb / U_NR)), n_out, n_threads, U_NR);
    const int64_t n_tiles = (n_out + R - 1) / R;
    int failed = 0;
#pragma omp parallel num_threads(n_threads)
    {
#pragma omp for schedule(static)
        for (int64_t t = 0; t < T; t++) quantize_act_row(0, 0, x + t * n, act + (size_t)t * arb, n, 0);
#pragma omp for schedule(static)
        for (int64_t g = 0; g < n_groups; g++) {
            const int nt = (int)(T - g * U_NT < U_NT ? T - g * U_NT : U_NT);
            u32_pack_act(off, act + (size_t)(g * U_NT) * arb, arb, nt, n, panels + (size_t)g * apb);
        }
        /* the implicit barrier: every act panel is ready */
        uint8_t *tile = aligned_alloc(64, (size_t)U_NR * L.bytes);
        uint8_t *wpan = aligned_alloc(64, (size_t)(R / U_NR) * wpb);
        float *sc = aligned_alloc(64, (size_t)nb * U_NT * U_NR * sizeof(float) + 64);
        if (!tile || !wpan || !sc) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t ti = 0; ti < n_tiles; ti++) {
            if (!tile || !wpan || !sc) continue;
            const int64_t o0 = ti * R, nr = n_out - o0 < R ? n_out - o0 : R;
            for (int64_t r0 = 0; r0 < nr; r0 += U_NR) {
                const int nrr = (int)(nr - r0 < U_NR ? nr - r0 : U_NR);
                for (int r = 0; r < nrr; r++)
                    unpack_tile_row(type, (const uint8_t *)w->data + (size_t)(o0 + r0 + r) * w->row_bytes, n,
                                    tile + (size_t)r * L.bytes, L, NULL);
                u32_pack_w(off, tile, L.bytes, L, nrr, n, wpan + (size_t)(r0 / U_NR) * wpb);
            }
            for (int64_t g = 0; g < n_groups; g++) {
                const int nt = (int)(T - g * U_NT < U_NT ? T - g * U_NT : U_NT);
                const uint8_t *ap = panels + (size_t)g * apb;
                for (int64_t r0 = 0; r0 < nr; r0 += U_NR) {
                    const int nrr = (int)(nr - r0 < U_NR ? nr - r0 : U_NR);
                    const uint8_t *wp = wpan + (size_t)(r0 / U_NR) * wpb;
                    u32_scales(wp, ap, nb, sc);
                    kernel_u32_any(nt, nrr, wp, ap, sc, nb, y + g * U_NT * n_out + o0 + r0, n_out);
                }
            }
        }
        free(tile);
        free(wpan);
        free(sc);
    }
    return failed ? QF_ENOMEM : 0;
}

#endif /* QF_Q8_AVX2 */

typedef void (*kernel_fn)(int nt, int nr, const uint8_t *w, size_t ws, wlayout L, const uint8_t *a, size_t as,
                          int64_t n, float *y, int64_t ldy);

/* Without AVX2: the reference dot on the unpacked tile rows. */
static void kernel_portable(uint32_t type, int nt, int nr, const uint8_t *w, size_t ws, wlayout L, const uint8_t *a,
                            size_t as, int64_t n, float *y, int64_t ldy, const int8_t *sc16) {
    for (int t = 0; t < nt; t++)
        for (int r = 0; r < nr; r++) {
            const uint8_t *wr = w + r * ws;
            y[t * ldy + r] = dot_ref(type, n, (const int8_t *)wr, (const float *)(wr + L.d), (const float *)(wr + L.m),
                                     sc16 + r * (n / 16), (const int16_t *)(wr + L.mins),
                                     act_view(a + t * as, is_k_type(type), n));
        }
}

/* IQ1_S / IQ1_M: the act rows, then every (token, row) dot read straight
 * from the blocks (matmul_iq1.h), rows split over the threads. */
static void iq1_matmul(const qf_weight *w, const float *x, int64_t T, float *y, uint8_t *act, size_t arb,
                       int n_threads_max) {
    const int64_t n = w->n_in, n_out = w->n_out;
    float (*dot)(const void *, const int8_t *, const float *, const int16_t *, int64_t) =
        w->type == GGML_TYPE_IQ1_S ? qf_dot_iq1_s : qf_dot_iq1_m;
    const int n_threads = qf_threads_for((double)T * (double)n * (double)n_out, n_threads_max);
#pragma omp parallel num_threads(n_threads)
    {
#pragma omp for schedule(static)
        for (int64_t t = 0; t < T; t++) quantize_act_row(1, 0, x + t * n, act + (size_t)t * arb, n, 0);
#pragma omp for schedule(static)
        for (int64_t o = 0; o < n_out; o++) {
            const void *row = (const uint8_t *)w->data + (size_t)o * w->row_bytes;
            for (int64_t t = 0; t < T; t++) {
                const act_row a = act_view(act + (size_t)t * arb, 1, n);
                y[t * n_out + o] = dot(row, a.q, a.d, a.S32, n);
            }
        }
    }
}

int qf_matmul_q8(const qf_weight *w, const float *x, int64_t T, float *y, void *work, int n_threads_max) {
    const int64_t n = w->n_in, n_out = w->n_out;
    const uint32_t type = w->type;
    const int k = is_k_type(type);
    if (!w->data) return QF_EINVAL;
    if (!qf_matmul_q8_supported(type) || n % (k ? QK_K : 32) != 0) return QF_EUNSUPPORTED;
    if (T <= 0 || n_out <= 0) return 0;

    const size_t arb = act_row_bytes(k, n);
    uint8_t *act = work, *owned = NULL;
    if (!act) {
        act = owned = aligned_alloc(64, qf_matmul_q8_work_bytes(type, n, T));
        if (!act) return QF_ENOMEM;
    }
    if (is_iq1(type)) {
        iq1_matmul(w, x, T, y, act, arb, n_threads_max);
        free(owned);
        return 0;
    }
    const wlayout L = wrow_layout(type, n);
    kernel_fn kf = NULL;
#ifdef QF_Q8_AVX2
    kf = type == GGML_TYPE_Q4_K   ? kernel_q4K
         : type == GGML_TYPE_Q6_K || is_iq2_type(type) ? kernel_q6K
         : is_unsigned(type)      ? kernel_min32
                                  : kernel_signed32;
#endif

    const int n_threads = qf_threads_for((double)T * (double)n * (double)n_out, n_threads_max);
#ifdef QF_Q8_AVX2
    if (T == 1 && gemv_supported(type)) {
        __m256i *xb = aligned_alloc(64, (size_t)(n / 32 + 1) * sizeof(__m256i));
        if (!xb) {
            free(owned);
            return QF_ENOMEM;
        }
        quantize_act_row(k, has_min(type), x, act, n, 0);
        gemv(w, act, xb, y, n_threads);
        free(xb);
        free(owned);
        return 0;
    }
#endif
#ifdef QF_Q8_AVX2
    if (u32_offset(type)) {
        const int rc = matmul_u32(w, x, T, y, act, arb, n_threads);
        free(owned);
        return rc;
    }
#endif
    /* tile: ~TILE_BYTES of unpacked rows, but every thread gets rows */
    const int64_t R = qf_tile_rows((int64_t)(TILE_BYTES / L.bytes), n_out, n_threads, MAX_NR);
    const int64_t n_tiles = (n_out + R - 1) / R;

    int failed = 0;
#pragma omp parallel num_threads(n_threads)
    {
#pragma omp for schedule(static)
        for (int64_t t = 0; t < T; t++) quantize_act_row(k, has_min(type), x + t * n, act + (size_t)t * arb, n, 0);
        /* the implicit barrier: every act row is ready */
        uint8_t *tile = aligned_alloc(64, (size_t)R * L.bytes);
        int8_t *sc16 = malloc((size_t)R * (size_t)(n / 16) + 1);
        if (!tile || !sc16) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t ti = 0; ti < n_tiles; ti++) {
            if (!tile || !sc16) continue;
            const int64_t o0 = ti * R;
            const int64_t nr = n_out - o0 < R ? n_out - o0 : R;
            for (int64_t r = 0; r < nr; r++)
                unpack_tile_row(type, (const uint8_t *)w->data + (size_t)(o0 + r) * w->row_bytes, n,
                                tile + (size_t)r * L.bytes, L, sc16 + r * (n / 16));
            for (int64_t t0 = 0; t0 < T; t0 += MAX_NT) {
                const int nt = (int)(T - t0 < MAX_NT ? T - t0 : MAX_NT);
                for (int64_t r0 = 0; r0 < nr; r0 += MAX_NR) {
                    const int nrr = (int)(nr - r0 < MAX_NR ? nr - r0 : MAX_NR);
                    const uint8_t *wt = tile + (size_t)r0 * L.bytes, *at = act + (size_t)t0 * arb;
                    float *yt = y + t0 * n_out + o0 + r0;
                    if (kf) kf(nt, nrr, wt, L.bytes, L, at, arb, n, yt, n_out);
                    else kernel_portable(type, nt, nrr, wt, L.bytes, L, at, arb, n, yt, n_out, sc16 + r0 * (n / 16));
                }
            }
        }
        free(tile);
        free(sc16);
    }
    free(owned);
    return failed ? QF_ENOMEM : 0;
}
