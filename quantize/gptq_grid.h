/* gptq_grid.h - a GGUF block type seen as the grid GPTQ rounds onto.
 *
 * A block of `block` weights (32 or 256) stores some scales (d, dmin, 4/6/8-bit
 * sub-block scales) and one level index per weight. Once the scales are
 * fixed, every weight of a sub-block of `sub` weights can take one of `nlev`
 * values: levels[u] = what the reference dequantizer returns for index u.
 * GPTQ fixes the scales of a block from the error-updated weights (fit),
 * reads the level tables (levels), rounds each weight to one of them and
 * finally stores the chosen indices (pack). The dequantized block is then
 * exactly the level values GPTQ used.
 *
 * Index u per type (u = 0..nlev-1, the stored value):
 *   Q4_0 q=u-8; Q4_1 q=u; Q5_0 q=u-16; Q5_1 q=u; Q8_0 q=u-127 (-128 unused:
 *   llama.cpp's int8 dot products take |q|); IQ4_NL, IQ4_XS kvalues_iq4nl[u]
 *   (IQ4_XS: times its sub-block's signed 6-bit scale);
 *   Q2_K u; Q3_K q=u-4; Q4_K u; Q5_K u; Q6_K q=u-32.
 *
 * Codebook grids (IQ3_S, IQ3_XXS, IQ2_S, IQ2_XS, IQ2_XXS): groups of dim
 * weights are one codebook point of magnitudes times sign bits, so a weight
 * cannot be rounded alone. There levels[s * nlev + l] is the value of
 * magnitude level l (codebook byte, ascending) in sub-block s with a clear
 * sign bit; a set bit negates it. GPTQ chooses each unit of QF_GPTQ_UNIT
 * weights jointly (qf_gptq_grid_choose_unit) when the sweep first reaches
 * it, then propagates each weight's error as for a level grid.
 */
#ifndef QF_GPTQ_GRID_H
#define QF_GPTQ_GRID_H

#include <stddef.h>
#include <math.h>
#include <stdint.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

typedef struct qf_gptq_grid {
    uint32_t type;      /* ggml type */
    int block;          /* weights per block */
    int sub;            /* weights sharing one level table */
    int nlev;           /* levels per table (codebook grids: magnitudes) */
    size_t block_bytes;
    /* codebook grids only (dim > 0): */
    int dim;            /* weights per codebook point (4 or 8); 0: a level grid */
    int n_points;       /* codebook points */
    int parity;         /* signs of each unit have even parity (7 stored bits per 8 weights) */
    const void *points; /* the codebook: dim magnitude bytes per point (uint32_t or uint64_t) */
    uint8_t lvl_of[64]; /* magnitude byte -> level index (0xFF: not used) */
    uint16_t lev_point[8]; /* level l is byte lev_pos[l] of point lev_point[l] */
    uint8_t lev_pos[8];
    int part;           /* a point is two parts of `part` weights (dim / 2) */
    uint8_t code[1024][2]; /* point p's two parts as numbers sum_i lvl_i nlev^i */
} qf_gptq_grid;

/* Weights chosen together on a codebook grid: 8 (one IQ2 point, two IQ3
 * points: the span of one sign byte). */
#define QF_GPTQ_UNIT 8

/* Fill g for `type`; 0, or -1 if the type is not a GPTQ grid. */
int qf_gptq_grid_get(uint32_t type, qf_gptq_grid *g);

/* How the block scales are fitted to the current weights. */
enum { QF_GPTQ_FIT_EXACT = 0, QF_GPTQ_FIT_SEARCH = 1 };

/* Fit the scales of one block to x[block] (the codec's own quantizer:
 * ggml's exact one, importance-weighted with qw[block] when qw is not NULL,
 * or the search quantizer; IQ2_XS and IQ2_XXS, which ggml quantizes only
 * with weights, get weights 1 when qw is NULL) and write the whole block to
 * blk. Returns 0 or a negative QF_E* code from the codec. */
int qf_gptq_grid_fit(const qf_gptq_grid *g, const float *x, const float *qw, int fit, void *blk);

/* levels[s * nlev + u] for every sub-block s < block/sub: the dequantized
 * value of index u under blk's stored scales. Overwrites blk's indices
 * (pack them afterwards). */
void qf_gptq_grid_levels(const qf_gptq_grid *g, void *blk, float *levels);

/* The scalar reference of qf_gptq_grid_levels: one dequantization per index
 * (the same values). */
void qf_gptq_grid_levels_ref(const qf_gptq_grid *g, void *blk, float *levels);

/* Store the indices u[block] into blk, keeping its scales (level grids). */
void qf_gptq_grid_pack(const qf_gptq_grid *g, const uint8_t *u, void *blk);

/* Codebook grids: store points idx[block / dim] and sign bits neg[block]
 * (1: negative) into blk, keeping its scales. With g->parity every unit's
 * neg has an even count (its last bit is implied). */
void qf_gptq_grid_pack_points(const qf_gptq_grid *g, const uint16_t *idx, const uint8_t *neg, void *blk);

/* Codebook grids: the points and signs of one unit of QF_GPTQ_UNIT weights
 * w (importance c >= 0) in a sub-block with levels lev[nlev] that minimize
 * sum_i c_i (w_i - q_i)^2 over the whole codebook, the parity rule included
 * (ties: the lower point). Writes the values q, sign bits neg and points
 * idx[QF_GPTQ_UNIT / dim]; q is exactly what the dequantizer returns. */
void qf_gptq_grid_choose_unit(const qf_gptq_grid *g, const float *lev, const float *w, const float *c, float *q,
                              uint8_t *neg, uint16_t *idx);

/* Index of the level nearest to v in lev[nlev] (the scalar reference). The
 * levels of a table are monotone (ascending or descending: a negative
 * scale), so a bisection finds the first level at or past v and the nearer
 * of it and its predecessor wins (ties: the lower index). */
static inline int qf_gptq_grid_nearest_ref(const float *lev, int nlev, float v) {
    const int asc = lev[nlev - 1] >= lev[0];
    int lo = 0, hi = nlev;
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (asc ? lev[mid] >= v : lev[mid] <= v) hi = mid;
        else lo = mid + 1;
    }
    if (lo == nlev) return nlev - 1;
    if (lo == 0) return 0;
    return fabsf(v - lev[lo - 1]) <= fabsf(lev[lo] - v) ? lo - 1 : lo;
}

/* Levels of lev[0, nlev) (nlev <= 64) that are not at or past v: !(lev >= v)
 * for an ascending table, !(lev <= v) for a descending one (a NaN v counts
 * every level, as the bisection runs past the end). */
static inline int qf_gptq_grid_count_before(const float *lev, int nlev, float v, int asc) {
    int lo = 0, i = 0;
#if defined(__AVX512F__)
    const __m512 vv = _mm512_set1_ps(v);
    for (; i < nlev; i += 16) {
        const __mmask16 m = nlev - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (nlev - i)) - 1);
        const __m512 l = _mm512_maskz_loadu_ps(m, lev + i);
        const __mmask16 c = asc ? _mm512_mask_cmp_ps_mask(m, l, vv, _CMP_NGE_UQ) : _mm512_mask_cmp_ps_mask(m, l, vv, _CMP_NLE_UQ);
        lo += __builtin_popcount((unsigned)c);
    }
#elif defined(__AVX2__)
    const __m256 vv = _mm256_set1_ps(v);
    for (; i + 8 <= nlev; i += 8) {
        const __m256 l = _mm256_loadu_ps(lev + i);
        const __m256 c = asc ? _mm256_cmp_ps(l, vv, _CMP_NGE_UQ) : _mm256_cmp_ps(l, vv, _CMP_NLE_UQ);
        lo += __builtin_popcount((unsigned)_mm256_movemask_ps(c));
    }
#endif
    for (; i < nlev; i++) lo += asc ? !(lev[i] >= v) : !(lev[i] <= v);
    return lo;
}

/* qf_gptq_grid_nearest_ref without branches on the data: on a monotone
 * table the first level at or past v is the count of levels not at or past
 * it, vector compares for up to 64 levels (bisection beyond). */
static inline int qf_gptq_grid_nearest(const float *lev, int nlev, float v) {
    if (nlev > 64) return qf_gptq_grid_nearest_ref(lev, nlev, v);
    const int lo = qf_gptq_grid_count_before(lev, nlev, v, lev[nlev - 1] >= lev[0]);
    if (lo == nlev) return nlev - 1;
    if (lo == 0) return 0;
    return fabsf(v - lev[lo - 1]) <= fabsf(lev[lo] - v) ? lo - 1 : lo;
}

#endif
