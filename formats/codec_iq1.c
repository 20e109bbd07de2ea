/* codec_iq1.c - IQ1_S and IQ1_M (codec_iq1.h): the grid, the reference
 * dequantizers and ggml's quantizers, bit for bit. */
#include "codec_iq1.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "codec_iquants.h"
#include "codec_kernels.h"

/* ------------------------------------------------------------------------ */
/* The grid                                                                 */
/* ------------------------------------------------------------------------ */

#include "codec_iq1_grid.inc"

/* The quantizer's view of the grid: levels l_j = v_j + 1 in 0..2, a point's
 * code is sum l_j << 2j (< IQ1_MAP_SIZE). map[code] is the grid index of an
 * on-grid code, else -(1 + offset) with neighbours[offset] = n followed by
 * the n grid indices of the points in the 3 nearest squared-distance shells,
 * by (distance, index) - ggml's iq2xs_init_impl with nwant 3. */
#define IQ1_MAP_SIZE 43692
#define IQ1_SHELLS 3
typedef struct {
    uint8_t lev[2048][8]; /* l_j of every grid point */
    int map[IQ1_MAP_SIZE];
    uint16_t *neighbours; /* NULL if it could not be built */
} iq1_index;

static iq1_index iq1_ix;
static pthread_once_t iq1_once = PTHREAD_ONCE_INIT;

/* Appends the neighbours of the off-grid code to *nb (size *n, capacity
 * *cap); returns 0, or -1 out of memory. Distances are taken in the levels
 * 2l+1 as ggml does: a level step costs 4, two steps 16. */
static int iq1_add_neighbours(int code, uint16_t **nb, size_t *n, size_t *cap) {
    uint8_t d2[2048];
    int count[129] = {0};
    uint8_t pos[8];
    for (int k = 0; k < 8; ++k) pos[k] = (uint8_t)((code >> 2 * k) & 3);
    for (int j = 0; j < 2048; ++j) {
        int s = 0;
        for (int k = 0; k < 8; ++k) {
            const int diff = 2 * (iq1_ix.lev[j][k] - pos[k]);
            s += diff * diff;
        }
        d2[j] = (uint8_t)s;
        count[s]++;
    }
    int shell[IQ1_SHELLS], n_shell = 0, total = 0;
    for (int s = 0; s <= 128 && n_shell < IQ1_SHELLS; ++s)
        if (count[s]) {
            shell[n_shell++] = s;
            total += count[s];
        }
    if (*n + 1 + (size_t)total > *cap) {
        size_t c = *cap ? *cap : 1 << 16;
        while (c < *n + 1 + (size_t)total) c *= 2;
        uint16_t *p = realloc(*nb, c * sizeof *p);
        if (!p) return -1;
        *nb = p;
        *cap = c;
    }
    iq1_ix.map[code] = -(int)(*n + 1);
    (*nb)[(*n)++] = (uint16_t)total;
    for (int h = 0; h < n_shell; ++h)
        for (int j = 0; j < 2048; ++j)
            if (d2[j] == shell[h]) (*nb)[(*n)++] = (uint16_t)j;
    return 0;
}

static void iq1_index_init(void) {
    for (int i = 0; i < IQ1_MAP_SIZE; ++i) iq1_ix.map[i] = -1;
    for (int j = 0; j < 2048; ++j) {
        int code = 0;
        for (int k = 0; k < 8; ++k) {
            const int l = (int8_t)(qf_iq1_grid[j] >> 8 * k) + 1;
            iq1_ix.lev[j][k] = (uint8_t)l;
            code |= l << 2 * k;
        }
        iq1_ix.map[code] = j;
    }
    uint16_t *nb = NULL;
    size_t n = 0, cap = 0;
    for (int code = 0; code < IQ1_MAP_SIZE; ++code) {
        if (iq1_ix.map[code] >= 0) continue;
        if (iq1_add_neighbours(code, &nb, &n, &cap)) {
            free(nb);
            return;
        }
    }
    iq1_ix.neighbours = nb;
}

/* The grid index for the levels L[8] (0..2): the point itself when it is on
 * the grid, else the neighbour minimising sum w_j (scale*xx[l_j] - x_j)^2
 * (the first on ties; ggml's iq1_find_best_neighbour2). *on_grid says which. */
static int iq1_grid_index(const int8_t *L, const float *x, const float *w, float scale, const float *xx, int *on_grid) {
    int code = 0;
    for (int j = 0; j < 8; ++j) code |= L[j] << 2 * j;
    const int gi = iq1_ix.map[code];
    *on_grid = gi >= 0;
    if (gi >= 0) return gi;
    const uint16_t *nb = iq1_ix.neighbours + (-gi - 1);
    const float v[8] = {scale * xx[0], scale * xx[1], scale * xx[2]};
    return nb[1 + iq_best_candidate(iq1_ix.lev[0], 8, 0, nb + 1, nb[0], v, x, w)];
}

/* ------------------------------------------------------------------------ */
/* Dequantization                                                           */
/* ------------------------------------------------------------------------ */

/* y[8] = dl * (g_j + delta) for grid point gi. */
static inline void iq1_group(float *y, int gi, float dl, float delta) {
    const uint64_t g = qf_iq1_grid[gi];
    for (int j = 0; j < 8; ++j) y[j] = dl * ((float)(int8_t)(g >> 8 * j) + delta);
}

void dequantize_row_iq1_s_ref(const block_iq1_s *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / QK_IQ1; i++) {
        const float d = h2f(x[i].d);
        for (int ib = 0; ib < QK_IQ1 / 32; ib++) {
            const unsigned qh = x[i].qh[ib];
            const float dl = d * (float)(2 * ((qh >> 12) & 7) + 1);
            const float delta = qh & 0x8000 ? -QF_IQ1_DELTA : QF_IQ1_DELTA;
            for (int l = 0; l < 4; l++, y += 8) iq1_group(y, x[i].qs[4 * ib + l] | (int)((qh >> 3 * l) & 7) << 8, dl, delta);
        }
    }
}

void dequantize_row_iq1_m_ref(const block_iq1_m *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / QK_IQ1; i++) {
        const float d = h2f(qf_iq1_m_d(&x[i]));
        for (int ib = 0; ib < QK_IQ1 / 32; ib++) {
            const unsigned sc = (unsigned)x[i].scales[2 * (ib / 2)] | (unsigned)x[i].scales[2 * (ib / 2) + 1] << 8;
            for (int l = 0; l < 4; l++, y += 8) {
                const int h = l / 2;
                const unsigned qh = x[i].qh[2 * ib + h] >> 4 * (l % 2);
                const float dl = d * (float)(2 * ((sc >> (6 * (ib % 2) + 3 * h)) & 7) + 1);
                iq1_group(y, x[i].qs[4 * ib + l] | (int)(qh & 7) << 8, dl, qh & 8 ? -QF_IQ1_DELTA : QF_IQ1_DELTA);
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* The split search shared by both quantizers                               */
/* ------------------------------------------------------------------------ */

/* The shifted levels: x_p = {-1, 0, 1} + 1/8 (delta bit clear), x_m = - 1/8. */
static const float iq1_xp[3] = {-1 + QF_IQ1_DELTA, QF_IQ1_DELTA, 1 + QF_IQ1_DELTA};
static const float iq1_xm[3] = {-1 - QF_IQ1_DELTA, -QF_IQ1_DELTA, 1 - QF_IQ1_DELTA};
static const float iq1_xx[2][3] = {{-1 + QF_IQ1_DELTA, QF_IQ1_DELTA, 1 + QF_IQ1_DELTA},
                                   {-1 - QF_IQ1_DELTA, -QF_IQ1_DELTA, 1 - QF_IQ1_DELTA}};

typedef struct {
    float x;
    int i;
} iq1_pair;

static int iq1_pair_cmp(const void *a, const void *b) {
    const float l = ((const iq1_pair *)a)->x, r = ((const iq1_pair *)b)->x;
    return l < r ? -1 : l > r ? 1 : 0;
}

/* Sorts the n weights of xb ascending into p (qsort, as ggml: equal values
 * keep whatever order the C library's qsort gives them). */
static void iq1_sort(const float *xb, int n, iq1_pair *p) {
    for (int j = 0; j < n; ++j) {
        p[j].x = xb[j];
        p[j].i = j;
    }
    qsort(p, (size_t)n, sizeof *p, iq1_pair_cmp);
}

/* L[p[j].i] = 0 below split i1, 1 up to i2, 2 from there on. */
static void iq1_split_levels(const iq1_pair *p, int n, int i1, int i2, int8_t *L) {
    for (int j = 0; j < n; ++j) L[p[j].i] = (int8_t)(j < i1 ? 0 : j < i2 ? 1 : 2);
}

/* ------------------------------------------------------------------------ */
/* IQ1_S                                                                    */
/* ------------------------------------------------------------------------ */

void iq1_s_scan_ref(const float *sumx, const float *sumw, int i1, const float xx[2][3], iq1_split_best *b) {
    for (int i2 = i1; i2 <= 32; ++i2) {
        for (int s = 0; s < 2; ++s) {
            const float *x = xx[s];
            const float sumqx = (sumx[i1] - sumx[0]) * x[0] + (sumx[i2] - sumx[i1]) * x[1] + (sumx[32] - sumx[i2]) * x[2];
            const float sumq2 = (sumw[i1] - sumw[0]) * x[0] * x[0] + (sumw[i2] - sumw[i1]) * x[1] * x[1] +
                                (sumw[32] - sumw[i2]) * x[2] * x[2];
            if (sumq2 > 0 && sumqx * sumqx > b->best_score * sumq2) {
                b->scale = sumqx / sumq2;
                b->best_score = b->scale * sumqx;
                b->best1 = i1;
                b->best2 = i2;
                b->best_shift = s ? -1 : 1;
            }
        }
    }
}

/* One 32-weight sub-block of IQ1_S (ggml quantize_row_iq1_s_impl): the
 * weights sorted, every split i1 <= i2 of the sorted order into the levels
 * -1, 0, 1, each with shift +1/8 and -1/8, scored by the weighted
 * least-squares fit (sum w x q)^2 / sum w q^2 from prefix sums; the best
 * split (a negative scale mirrors levels and shift) is rounded to the grid
 * group by group, and if a group was off the grid the scale is refit.
 * Writes the 4 index bytes and the 12 low qh bits; returns the scale, *shift
 * gets +1 or -1. */
static float iq1_s_sub_block(const float *xb, const float *weight, float max, block_iq1_s *y, int ib, int *shift) {
    iq1_pair p[32];
    float sumx[33 + 8] = {0}, sumw[33 + 8] = {0};
    int8_t L[32];
    iq1_sort(xb, 32, p);
    for (int j = 0; j < 32; ++j) {
        const int i = p[j].i;
        sumx[j + 1] = sumx[j] + weight[i] * xb[i];
        sumw[j + 1] = sumw[j] + weight[i];
    }
    iq1_split_best b = {-FLT_MAX, max, 0, 0, 1};
    for (int i1 = 0; i1 <= 32; ++i1) iq1_s_scan(sumx, sumw, i1, iq1_xx, &b);
    float scale = b.scale;
    const int best1 = b.best1, best2 = b.best2;
    int best_shift = b.best_shift;
    iq1_split_levels(p, 32, best1, best2, L);
    if (scale < 0) {
        for (int j = 0; j < 32; ++j) L[j] = (int8_t)(2 - L[j]);
        scale = -scale;
        best_shift = -best_shift;
    }
    const float *xx = best_shift == 1 ? iq1_xp : iq1_xm;
    int index[4], all_on_grid = 1;
    for (int k = 0; k < 4; ++k) {
        int on;
        index[k] = iq1_grid_index(L + 8 * k, xb + 8 * k, weight + 8 * k, scale, xx, &on);
        all_on_grid &= on;
    }
    if (!all_on_grid) {
        float sumqx = 0.f, sumq2 = 0.f;
        for (int k = 0; k < 4; ++k)
            for (int j = 0; j < 8; ++j) {
                const float w = weight[8 * k + j], q = xx[iq1_ix.lev[index[k]][j]];
                sumqx += w * q * xb[8 * k + j];
                sumq2 += w * q * q;
            }
        if (sumqx > 0 && sumq2 > 0) scale = sumqx / sumq2;
    }
    unsigned h = 0;
    for (int k = 0; k < 4; ++k) {
        y->qs[4 * ib + k] = (uint8_t)(index[k] & 255);
        h |= (unsigned)(index[k] >> 8) << 3 * k;
    }
    y->qh[ib] = (uint16_t)h;
    *shift = best_shift;
    return scale;
}

/* One 256-block of IQ1_S: weights qw * sqrt(sigma2 + x^2), sigma2 = 2 *
 * mean x^2; sub-blocks with max |x| < 1e-12 stay index 0 with scale 0; then
 * d = max scale / 15, written as d * 1.125, and per sub-block the 3-bit
 * l = round((s/d - 1)/2) with the shift's sign bit. shifts[8] carries the
 * last shift of each sub-block position from block to block: a zero
 * sub-block reuses it, as ggml's buffer does. */
static void iq1_s_block(const float *x, const float *qw, block_iq1_s *y, int shifts[8]) {
    float scales[8], weight[32];
    memset(y, 0, sizeof *y);
    const float sigma2 = iq_sigma2(x, QK_IQ1, 2);
    float max_scale = 0.f;
    for (int ib = 0; ib < 8; ++ib) {
        const float *xb = x + 32 * ib;
        iq_group_weights(xb, qw + 32 * ib, sigma2, 32, 0, weight, NULL);
        float max = fabsf(xb[0]);
        for (int i = 1; i < 32; ++i) max = QK_MAX(max, fabsf(xb[i]));
        if (max < 1e-12f) {
            scales[ib] = 0;
            continue;
        }
        scales[ib] = iq1_s_sub_block(xb, weight, max, y, ib, &shifts[ib]);
        max_scale = QK_MAX(max_scale, scales[ib]);
    }
    if (!max_scale) return;
    const float d = max_scale / 15;
    y->d = f2h(d * 1.125f);
    const float id = 1 / d;
    for (int ib = 0; ib < 8; ++ib) {
        int l = QK_MAX(0, QK_MIN(7, qk_nearest_int(0.5f * (id * scales[ib] - 1))));
        if (shifts[ib] == -1) l |= 8;
        y->qh[ib] |= (uint16_t)(l << 12);
    }
}

int qf_quantize_row_iq1_s(const float *x, block_iq1_s *y, int64_t k, const float *qw) {
    if (!qw) return -1;
    pthread_once(&iq1_once, iq1_index_init);
    if (!iq1_ix.neighbours) return -1;
    int shifts[8] = {0};
    for (int64_t b = 0; b < k / QK_IQ1; ++b) iq1_s_block(x + b * QK_IQ1, qw + b * QK_IQ1, y + b, shifts);
    return 0;
}

void qk_from_float_iq1_s(const qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw) {
    if (qf_quantize_row_iq1_s(x, (block_iq1_s *)y, n, qw) != 0) memset(y, 0, (size_t)(n / QK_IQ1) * sizeof(block_iq1_s));
}

/* ------------------------------------------------------------------------ */
/* IQ1_M                                                                    */
/* ------------------------------------------------------------------------ */

/* The shifted levels of group k (0 or 1) of an IQ1_M 16-weight sub-block
 * with shift pattern s: bit 1 of s is group 0's minus, bit 0 group 1's. */
static const float *iq1_m_levels(int s, int k) { return (k == 0 ? s >> 1 : s & 1) ? iq1_xm : iq1_xp; }

/* Adds sorted weight j at level lev to the 4 patterns' sums: t holds
 * (w q) x and (w q) q per j, level and shift (+: 0, -: 1); patterns 0..3 are
 * the (group 0, group 1) shifts ++, +-, -+, --. */
typedef struct {
    float qx[16][3][2], q2[16][3][2];
    int second[16]; /* the weight is in group 1 */
} iq1_m_terms;

static inline void iq1_m_add(const iq1_m_terms *t, int j, int lev, float sqx[4], float sq2[4]) {
    const int s = t->second[j];
    sqx[0] += t->qx[j][lev][0];
    sq2[0] += t->q2[j][lev][0];
    sqx[3] += t->qx[j][lev][1];
    sq2[3] += t->q2[j][lev][1];
    sqx[1] += t->qx[j][lev][s];
    sq2[1] += t->q2[j][lev][s];
    sqx[2] += t->qx[j][lev][!s];
    sq2[2] += t->q2[j][lev][!s];
}

/* One 16-weight sub-block of IQ1_M (ggml quantize_row_iq1_m_impl): as IQ1_S
 * but each of the two groups of 8 has its own shift, so every split is
 * scored for the 4 shift patterns, each sum accumulated weight by weight in
 * sorted order from 0 (as ggml; the sums of the weights below i1 and below
 * i2 are shared between splits since they are the same float additions).
 * Writes qs and the low qh bits; returns the scale, *shift gets the pattern
 * 0..3. */
static float iq1_m_sub_block(const float *xb, const float *weight, float max, block_iq1_m *y, int ib, int *shift) {
    iq1_pair p[16];
    int8_t L[16];
    iq1_m_terms t;
    iq1_sort(xb, 16, p);
    for (int j = 0; j < 16; ++j) {
        const int i = p[j].i;
        t.second[j] = i >= 8;
        for (int lev = 0; lev < 3; ++lev) {
            const float wp = weight[i] * iq1_xp[lev], wm = weight[i] * iq1_xm[lev];
            t.qx[j][lev][0] = wp * xb[i];
            t.q2[j][lev][0] = wp * iq1_xp[lev];
            t.qx[j][lev][1] = wm * xb[i];
            t.q2[j][lev][1] = wm * iq1_xm[lev];
        }
    }
    float best_score = -FLT_MAX, scale = max;
    int best1 = 0, best2 = 0, best_k = 0;
    float p0qx[4] = {0}, p0q2[4] = {0}; /* weights j < i1 at level 0 */
    for (int i1 = 0; i1 <= 16; ++i1) {
        float rqx[4], rq2[4]; /* then i1 <= j < i2 at level 1 */
        memcpy(rqx, p0qx, sizeof rqx);
        memcpy(rq2, p0q2, sizeof rq2);
        for (int i2 = i1; i2 <= 16; ++i2) {
            float sumqx[4], sumq2[4]; /* then j >= i2 at level 2 */
            memcpy(sumqx, rqx, sizeof sumqx);
            memcpy(sumq2, rq2, sizeof sumq2);
            for (int j = i2; j < 16; ++j) iq1_m_add(&t, j, 2, sumqx, sumq2);
            for (int k = 0; k < 4; ++k) {
                if (sumq2[k] > 0 && sumqx[k] * sumqx[k] > best_score * sumq2[k]) {
                    scale = sumqx[k] / sumq2[k];
                    best_score = scale * sumqx[k];
                    best1 = i1;
                    best2 = i2;
                    best_k = k;
                }
            }
            if (i2 < 16) iq1_m_add(&t, i2, 1, rqx, rq2);
        }
        if (i1 < 16) iq1_m_add(&t, i1, 0, p0qx, p0q2);
    }
    iq1_split_levels(p, 16, best1, best2, L);
    if (scale < 0) {
        for (int j = 0; j < 16; ++j) L[j] = (int8_t)(2 - L[j]);
        scale = -scale;
        best_k = 3 - best_k;
    }
    int index[2], all_on_grid = 1;
    for (int k = 0; k < 2; ++k) {
        int on;
        index[k] = iq1_grid_index(L + 8 * k, xb + 8 * k, weight + 8 * k, scale, iq1_m_levels(best_k, k), &on);
        all_on_grid &= on;
    }
    if (!all_on_grid) {
        float sumqx = 0.f, sumq2 = 0.f;
        for (int k = 0; k < 2; ++k) {
            const float *xx = iq1_m_levels(best_k, k);
            for (int j = 0; j < 8; ++j) {
                const float w = weight[8 * k + j], q = xx[iq1_ix.lev[index[k]][j]];
                sumqx += w * q * xb[8 * k + j];
                sumq2 += w * q * q;
            }
        }
        if (sumqx > 0 && sumq2 > 0) scale = sumqx / sumq2;
    }
    y->qs[2 * ib] = (uint8_t)(index[0] & 255);
    y->qs[2 * ib + 1] = (uint8_t)(index[1] & 255);
    y->qh[ib] = (uint8_t)((index[0] >> 8) | (index[1] >> 8) << 4);
    *shift = best_k;
    return scale;
}

/* One 256-block of IQ1_M: 16 sub-blocks of 16 (those with max |x| < 1e-7
 * keep index 0 and scale 0); per sub-block the 3-bit l = round((s/d - 1)/2)
 * with d = max scale / 15, the shift bits in qh; then d itself is refit by
 * least squares over all 256 weights with their stored levels and l, and
 * written (times 1.1125) as fp16 into the scale words' top nibbles. shifts
 * carries over blocks as in IQ1_S. */
static void iq1_m_block(const float *x, const float *qw, block_iq1_m *y, int shifts[16]) {
    static const uint8_t masks[4] = {0x00, 0x80, 0x08, 0x88};
    float scales[16], weight[16];
    memset(y, 0, sizeof *y);
    const float sigma2 = iq_sigma2(x, QK_IQ1, 2);
    float max_scale = 0.f;
    for (int ib = 0; ib < 16; ++ib) {
        const float *xb = x + 16 * ib;
        iq_group_weights(xb, qw ? qw + 16 * ib : NULL, sigma2, 16, 0, weight, NULL);
        float max = fabsf(xb[0]);
        for (int i = 1; i < 16; ++i) max = QK_MAX(max, fabsf(xb[i]));
        if (max < 1e-7f) {
            scales[ib] = 0;
            continue;
        }
        scales[ib] = iq1_m_sub_block(xb, weight, max, y, ib, &shifts[ib]);
        max_scale = QK_MAX(max_scale, scales[ib]);
    }
    if (!max_scale) return;
    uint16_t sc[4] = {0};
    float d = max_scale / 15;
    const float id = 1 / d;
    float sumqx = 0.f, sumq2 = 0.f;
    for (int ib = 0; ib < 16; ++ib) {
        const int l = QK_MAX(0, QK_MIN(7, qk_nearest_int(0.5f * (id * scales[ib] - 1))));
        sc[ib / 4] |= (uint16_t)(l << 3 * (ib % 4));
        y->qh[ib] |= masks[shifts[ib]];
        const float *xb = x + 16 * ib;
        iq_group_weights(xb, qw ? qw + 16 * ib : NULL, sigma2, 16, 0, weight, NULL);
        for (int k = 0; k < 2; ++k) {
            const float *xx = iq1_m_levels(shifts[ib], k);
            const int gi = y->qs[2 * ib + k] | ((y->qh[ib] >> 4 * k) & 7) << 8;
            for (int j = 0; j < 8; ++j) {
                const float w = weight[8 * k + j], q = xx[iq1_ix.lev[gi][j]] * (float)(2 * l + 1);
                sumqx += w * q * xb[8 * k + j];
                sumq2 += w * q * q;
            }
        }
    }
    if (sumq2 > 0) d = sumqx / sumq2;
    const uint16_t h = f2h(d * 1.1125f);
    sc[0] |= (uint16_t)((h & 0x000f) << 12);
    sc[1] |= (uint16_t)((h & 0x00f0) << 8);
    sc[2] |= (uint16_t)((h & 0x0f00) << 4);
    sc[3] |= (uint16_t)(h & 0xf000);
    for (int i = 0; i < 4; ++i) {
        y->scales[2 * i] = (uint8_t)(sc[i] & 0xFF);
        y->scales[2 * i + 1] = (uint8_t)(sc[i] >> 8);
    }
}

int qf_quantize_row_iq1_m(const float *x, block_iq1_m *y, int64_t k, const float *qw) {
    pthread_once(&iq1_once, iq1_index_init);
    if (!iq1_ix.neighbours) return -1;
    int shifts[16] = {0};
    for (int64_t b = 0; b < k / QK_IQ1; ++b) iq1_m_block(x + b * QK_IQ1, qw ? qw + b * QK_IQ1 : NULL, y + b, shifts);
    return 0;
}

void qk_from_float_iq1_m(const qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw) {
    if (qf_quantize_row_iq1_m(x, (block_iq1_m *)y, n, qw) != 0) memset(y, 0, (size_t)(n / QK_IQ1) * sizeof(block_iq1_m));
}
