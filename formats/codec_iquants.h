/* codec_iquants.h - the grid i-quants: 256-element super-blocks whose
 * groups of 4 (IQ3) or 8 (IQ2, IQ1) weights are indices into a fixed
 * codebook ("grid") of points, with separate sign bits and per-32 (or per-16)
 * sub-block scales. Layouts and codecs; the scalar references
 * (codec_iquants.c) reproduce ggml bit for bit.
 *
 *   IQ3_S  (3.44 bpw): x = d * (1 + 2*sc) * grid[idx][j] * sign, grid of 512 4-tuples
 *                      of odd levels 1..15, 9-bit indices (qs + one qh bit),
 *                      one sign bit per weight, 4-bit sc per 32.
 *   IQ3_XXS (3.06 bpw): x = d * (0.5 + sc) * 0.5 * grid[idx][j] * sign, grid of 256
 *                      4-tuples of levels 4, 12, .., 52, 62; 8-bit indices; signs
 *                      as 7-bit indices per 8 weights (even parity); 4-bit sc per 32.
 *   IQ2_XXS (2.06 bpw): x = d * (0.5 + sc) * 0.25 * grid[idx][j] * sign, grid of 256
 *                      8-tuples of levels 8, 25, 43; signs as IQ3_XXS; 4-bit sc per 32.
 */
#ifndef QF_CODEC_IQUANTS_H
#define QF_CODEC_IQUANTS_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "codec_legacy.h" /* qf_half */

#define QK_IQ 256

/* IQ3_S: sub-block ib (32 weights) = groups g = 0..7 of 4; group g's grid
 * index is qs[8ib+g] | (qh[ib] >> g & 1) << 8, its signs are bits 4(g%2)..
 * of signs[4ib + g/2] (bit set: negative); sc = scales[ib/2] >> 4*(ib%2) & 15. */
typedef struct {
    qf_half d;
    uint8_t qs[QK_IQ / 4];
    uint8_t qh[QK_IQ / 32];
    uint8_t signs[QK_IQ / 8];
    uint8_t scales[QK_IQ / 64];
} block_iq3_s;
static_assert(sizeof(block_iq3_s) == 110, "block_iq3_s size");
extern const uint32_t qf_iq3s_grid[512];

void dequantize_row_iq3_s_ref(const block_iq3_s *x, float *y, int64_t k);
void dequantize_row_iq3_s(const block_iq3_s *x, float *y, int64_t k); /* AVX2 where compiled in */
/* ggml quantize_iq3_s (QK_IQ | k): weights x^2 without an imatrix, else
 * qw * sqrt(sigma2 + x^2), sigma2 = 2 * mean x^2 of the 256. Returns 0, or -1
 * if the grid's neighbour index could not be built (never for this grid). */
int qf_quantize_row_iq3_s(const float *x, block_iq3_s *y, int64_t k, const float *qw);

/* IQ3_XXS: sub-block ib = groups g = 0..7 of 4 weights with 8-bit grid
 * indices qs[8ib+g] into 256 points; the 32-bit word
 * ss = qs[64+4ib .. 64+4ib+4) (little-endian) holds four 7-bit sign indices
 * (pair l = groups 2l, 2l+1: ss >> 7l & 127, expanded to 8 signs with even
 * parity) and the 4-bit scale ss >> 28: db = d * (0.5 + sc) * 0.5. */
typedef struct {
    qf_half d;
    uint8_t qs[3 * QK_IQ / 8];
} block_iq3_xxs;
static_assert(sizeof(block_iq3_xxs) == 98, "block_iq3_xxs size");
extern const uint32_t qf_iq3xxs_grid[256];

/* The 8 sign bits of a 7-bit sign index: bit 7 set when i has an odd number
 * of bits, so every pattern has an even number of negative signs. */
static inline uint8_t qf_iq_signs(int i) { return (uint8_t)(i | (__builtin_parity((unsigned)i) << 7)); }

void dequantize_row_iq3_xxs_ref(const block_iq3_xxs *x, float *y, int64_t k);
void dequantize_row_iq3_xxs(const block_iq3_xxs *x, float *y, int64_t k);
/* ggml quantize_iq3_xxs; as qf_quantize_row_iq3_s. */
int qf_quantize_row_iq3_xxs(const float *x, block_iq3_xxs *y, int64_t k, const float *qw);

/* IQ2_XXS: sub-block ib (32 weights) = words w0, w1 at qs[4ib], qs[4ib+2]
 * (little-endian): byte l of w0 is the grid index of weights 8l..8l+7 (256
 * points of 8 levels 8, 25, 43), bits 7l..7l+6 of w1 their sign index
 * (qf_iq_signs) and bits 28..31 the scale: db = d * (0.5 + sc) * 0.25. */
typedef struct {
    qf_half d;
    uint16_t qs[QK_IQ / 8];
} block_iq2_xxs;
static_assert(sizeof(block_iq2_xxs) == 66, "block_iq2_xxs size");
extern const uint64_t qf_iq2xxs_grid[256];

void dequantize_row_iq2_xxs_ref(const block_iq2_xxs *x, float *y, int64_t k);
void dequantize_row_iq2_xxs(const block_iq2_xxs *x, float *y, int64_t k);
/* ggml quantize_iq2_xxs: qw (the imatrix row) is required; -1 without it. */
int qf_quantize_row_iq2_xxs(const float *x, block_iq2_xxs *y, int64_t k, const float *qw);

/* Shared by the grid codecs (codec_iquants.c, codec_iq2.c): ggml's
 * quantizer view of a grid of 8-tuples of the levels 2l+1, l in 0..2.
 * map[code] (code = sum l_j << 2j < 43692, ggml's kmap size: 0xAAAA is the
 * largest code of levels <= 2) is the grid index of the point, or
 * -(1 + offset) for a point off the grid, where neighbours[offset] = n and
 * neighbours[offset+1..n] are the grid points in its nshell nearest distance
 * shells, by (squared distance, index). */
#define IQ2_MAP_SIZE 43692
typedef struct {
    uint64_t grid[1024]; /* levels 2l+1 */
    int n_grid;
    int map[IQ2_MAP_SIZE];
    uint16_t *neighbours; /* NULL until built, or if they did not fit */
} iq2_index;
/* Builds ix from a dequantization grid deq (n_grid <= 1024 points) whose
 * bytes are the levels[3] (ascending) into nb (cap entries). */
void iq2_index_build(iq2_index *ix, const uint64_t *deq, int n_grid, const uint8_t levels[3], int nshell,
                     uint16_t *nb, size_t cap);
/* The quantizer's view of either grid kind, for the shared search below:
 * an iq2_index (groups of 8, levels l in 0..2, 2 bits each) or ggml's
 * 4-tuple grids (groups of 4, l in 0..7, 3 bits each); grid holds each
 * point's dim bytes 2l+1, map/neighbours as iq2_index, codes < map_size. */
typedef struct {
    const uint8_t *grid;
    const int *map;
    const uint16_t *neighbours;
    int dim, bits, l_max, map_size;
} iq_grid;
/* The shared search's view of an iq2_index. */
static inline iq_grid iq2_grid(const iq2_index *ix) {
    return (iq_grid){(const uint8_t *)ix->grid, ix->map, ix->neighbours, 8, 2, 2, IQ2_MAP_SIZE};
}
/* The trial-scale search of one sub-block of n <= 32 magnitudes xval (ggml's
 * loop over is = -n_trials..n_trials): each inverse scale
 * (base + step * is) / max rounds every group to the grid (off-grid codes to
 * their best neighbour under the weights waux), and the largest
 * (sum w x q)^2 / sum w q^2, q = 2L+1, sets L[n], on_grid (if not NULL: 1 per
 * group on the grid) and the returned scale; when no trial has a positive
 * sum w q^2 they keep `scale` and their contents. */
float iq_trial_scales(const iq_grid *g, const float *weight, const float *xval, const float *waux, int n, float max,
                      float base, float step, int n_trials, float scale, int8_t *L, int *on_grid);
/* Rounds the groups of L again at `scale` (all, or only those with keep[k]
 * == 0 when keep is not NULL) and returns the least-squares refit of the
 * scale (unchanged when sum w q^2 is 0). */
float iq_regrid(const iq_grid *g, const float *weight, const float *xval, const float *waux, int n, float scale,
                const int *keep, int8_t *L);
/* The grid-point search of the i-quant quantizers: among the n >= 1
 * candidates cand[0..n) (rows of dim = 4 or 8 bytes of grid, level
 * l_i = byte_i >> shift, l_i < 8), the position of the one minimising
 * d2 = sum_i w_i (v[l_i] - x_i)^2 (summed i = 0..dim-1 from 0, each term
 * (w_i * diff) * diff), the first on ties; 0 when no d2 is below FLT_MAX
 * (all NaN or huge). iq_best_candidate is the AVX2 (AVX-512) version,
 * bit-identical: each candidate's sum in its own lane. */
int iq_best_candidate_ref(const uint8_t *grid, int dim, int shift, const uint16_t *cand, int n, const float v[8],
                          const float *x, const float *w);
int iq_best_candidate(const uint8_t *grid, int dim, int shift, const uint16_t *cand, int n, const float v[8],
                      const float *x, const float *w);
#if defined(__AVX2__)
int iq_best_candidate_avx2(const uint8_t *grid, int dim, int shift, const uint16_t *cand, int n, const float v[8],
                           const float *x, const float *w);
#endif
#if defined(__AVX512F__) && defined(__AVX512BW__)
int iq_best_candidate_avx512(const uint8_t *grid, int dim, int shift, const uint16_t *cand, int n, const float v[8],
                             const float *x, const float *w);
#endif
/* 1 when every one of the n on_grid flags is set. */
int iq_all_on_grid(const int *on_grid, int n);
/* The grid index of the group levels L[dim] (on the grid after a search;
 * 0 for a code off the grid or out of the map). */
int iq_grid_index(const iq_grid *g, const int8_t *L);
/* One sub-block's inputs to the grid search: the importance weights
 * (iq_group_weights) and their roots waux, the magnitudes xval and the sign
 * patterns of its n/8 groups (sign bits, bit i set: weight i negative; when
 * `even`, 7-bit sign indices of an even number of minus signs, the smallest
 * w x^2 of a group with an odd count taking the wrong sign, as ggml);
 * returns the largest magnitude. */
float iq_sub_block(const float *xb, const float *qw, float sigma2, int n, int quarter_sigma, int even, float *weight,
                   float *waux, float *xval, uint8_t *block_signs);
/* |scale|; a negative scale inverts the n_groups sign patterns (within mask). */
float iq_abs_scale(float scale, uint8_t *block_signs, int n_groups, uint8_t mask);
/* ggml's 4-bit sub-block scale round((s/d - 1)/2) clamped to 0..15, id = 1/d. */
int iq_scale_nibble(float id, float s);
/* dim dequantized weights db * pg[j], negated where bit j of s is set (ggml
 * multiplies by -1: the same for every value but NaN payload signs). */
static inline void iq_put_group(float *y, float db, const uint8_t *pg, int dim, uint8_t s) {
    for (int j = 0; j < dim; j++) {
        const float v = db * (float)pg[j];
        y[j] = (s >> j) & 1 ? -v : v;
    }
}
/* ggml's block variance of the i-quant quantizers: factor * (sum of x_i^2
 * over the n values) / n, with the factor (1 or 2) each type uses. */
float iq_sigma2(const float *x, int n, float factor);

/* The importance weights of the n values xb: qw_i * sqrt(sigma2 + x_i^2)
 * with an imatrix (qw points at the group's entries), else x_i^2, or
 * 0.25 * sigma2 + x_i^2 when quarter_sigma (IQ2_S); and, when waux is not
 * NULL, their square roots. */
void iq_group_weights(const float *xb, const float *qw, float sigma2, int n, int quarter_sigma, float *weight,
                      float *waux);

/* Row quantizers for the traits table (ggml_types.c). */
struct qk_kernels;
void qk_from_float_iq3_s(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw);
void qk_from_float_iq2_xxs(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw);
void qk_from_float_iq3_xxs(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw);

#endif
