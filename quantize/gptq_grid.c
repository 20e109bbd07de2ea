/* gptq_grid.c - GGUF block types as GPTQ grids: fit, level tables, packing.
 *
 * The level tables are read from the reference dequantizer itself (every
 * index u written into the whole block, the block dequantized), so they are
 * exactly what llama.cpp reconstructs, whatever the type's arithmetic.
 * Packing follows the layouts documented at each dequantizer in
 * formats/quants.c.
 */
#include "gptq_grid.h"

#include <string.h>

#include "ggml_types.h"
#include "codecs.h"
#include "search.h"

/* Magnitude byte j of codebook point p. */
static inline int point_byte(const qf_gptq_grid *g, int p, int j) {
    return g->dim == 8 ? (int)((((const uint64_t *)g->points)[p] >> 8 * j) & 0xFF)
                       : (int)((((const uint32_t *)g->points)[p] >> 8 * j) & 0xFF);
}

/* A codebook grid's level view: its magnitude bytes in ascending order as
 * levels, and for each the lowest point (and position) that carries it. */
static void codebook(qf_gptq_grid *g, int dim, int n_points, int parity, const void *points) {
    g->dim = dim;
    g->n_points = n_points;
    g->parity = parity;
    g->points = points;
    memset(g->lvl_of, 0xFF, sizeof g->lvl_of);
    uint8_t seen[64] = {0};
    for (int p = 0; p < n_points; p++)
        for (int j = 0; j < dim; j++) seen[point_byte(g, p, j) & 63] = 1;
    int l = 0;
    for (int b = 0; b < 64 && l < 8; b++)
        if (seen[b]) g->lvl_of[b] = (uint8_t)l++;
    g->nlev = l;
    for (int p = n_points - 1; p >= 0; p--)
        for (int j = dim - 1; j >= 0; j--) {
            const int lv = g->lvl_of[point_byte(g, p, j)];
            g->lev_point[lv] = (uint16_t)p;
            g->lev_pos[lv] = (uint8_t)j;
        }
    g->part = dim / 2;
    for (int p = 0; p < n_points; p++)
        for (int h = 0; h < 2; h++) {
            int code = 0;
            for (int i = g->part - 1; i >= 0; i--) code = code * l + g->lvl_of[point_byte(g, p, h * g->part + i)];
            g->code[p][h] = (uint8_t)code;
        }
}

static void codebook_levels(const qf_gptq_grid *g, void *blk, float *levels);

int qf_gptq_grid_get(uint32_t type, qf_gptq_grid *g) {
    memset(g, 0, sizeof *g);
    g->type = type;
    switch (type) {
    case GGML_TYPE_Q4_0: g->block = 32; g->sub = 32; g->nlev = 16; g->block_bytes = sizeof(block_q4_0); break;
    case GGML_TYPE_Q4_1: g->block = 32; g->sub = 32; g->nlev = 16; g->block_bytes = sizeof(block_q4_1); break;
    case GGML_TYPE_Q5_0: g->block = 32; g->sub = 32; g->nlev = 32; g->block_bytes = sizeof(block_q5_0); break;
    case GGML_TYPE_Q5_1: g->block = 32; g->sub = 32; g->nlev = 32; g->block_bytes = sizeof(block_q5_1); break;
    case GGML_TYPE_Q8_0: g->block = 32; g->sub = 32; g->nlev = 255; g->block_bytes = sizeof(block_q8_0); break;
    case GGML_TYPE_IQ4_NL: g->block = 32; g->sub = 32; g->nlev = 16; g->block_bytes = sizeof(block_iq4_nl); break;
    case GGML_TYPE_IQ4_XS: g->block = 256; g->sub = 32; g->nlev = 16; g->block_bytes = sizeof(block_iq4_xs); break;
    case GGML_TYPE_Q2_K: g->block = 256; g->sub = 16; g->nlev = 4; g->block_bytes = sizeof(block_q2_K); break;
    case GGML_TYPE_Q3_K: g->block = 256; g->sub = 16; g->nlev = 8; g->block_bytes = sizeof(block_q3_K); break;
    case GGML_TYPE_Q4_K: g->block = 256; g->sub = 32; g->nlev = 16; g->block_bytes = sizeof(block_q4_K); break;
    case GGML_TYPE_Q5_K: g->block = 256; g->sub = 32; g->nlev = 32; g->block_bytes = sizeof(block_q5_K); break;
    case GGML_TYPE_Q6_K: g->block = 256; g->sub = 16; g->nlev = 64; g->block_bytes = sizeof(block_q6_K); break;
    case GGML_TYPE_IQ3_S:
        g->block = 256; g->sub = 32; g->block_bytes = sizeof(block_iq3_s);
        codebook(g, 4, 512, 0, qf_iq3s_grid);
        break;
    case GGML_TYPE_IQ3_XXS:
        g->block = 256; g->sub = 32; g->block_bytes = sizeof(block_iq3_xxs);
        codebook(g, 4, 256, 1, qf_iq3xxs_grid);
        break;
    case GGML_TYPE_IQ2_S:
        g->block = 256; g->sub = 16; g->block_bytes = sizeof(block_iq2_s);
        codebook(g, 8, 1024, 0, qf_iq2s_grid);
        break;
    case GGML_TYPE_IQ2_XS:
        g->block = 256; g->sub = 16; g->block_bytes = sizeof(block_iq2_xs);
        codebook(g, 8, 512, 1, qf_iq2xs_grid);
        break;
    case GGML_TYPE_IQ2_XXS:
        g->block = 256; g->sub = 32; g->block_bytes = sizeof(block_iq2_xxs);
        codebook(g, 8, 256, 1, qf_iq2xxs_grid);
        break;
    default: return -1;
    }
    return 0;
}

int qf_gptq_grid_fit(const qf_gptq_grid *g, const float *x, const float *qw, int fit, void *blk) {
    int64_t n;
    if (fit == QF_GPTQ_FIT_SEARCH && qf_quantize_search_supports(g->type)) {
        qf_search_opts so;
        qf_search_opts_init(&so);
        so.effort = QF_SEARCH_EFFORT_FAST;
        n = qf_quantize_rows_opt_ex(g->type, x, blk, 1, g->block, qw, &so);
    } else {
        float ones[256];
        if (!qw && (g->type == GGML_TYPE_IQ2_XS || g->type == GGML_TYPE_IQ2_XXS)) { /* ggml requires weights */
            for (int i = 0; i < g->block; i++) ones[i] = 1.0f;
            qw = ones;
        }
        n = qf_quantize_rows(g->type, x, blk, 1, g->block, qw);
    }
    return n < 0 ? (int)n : 0;
}

/* 4-bit indices of a 32-block: byte j holds u[j] (low) and u[j+16] (high). */
static void pack_nibbles32(const uint8_t *u, uint8_t *qs) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((u[j] & 15) | (u[j + 16] & 15) << 4);
}

/* 5-bit indices of a 32-block: nibbles as above, bit 4 of u[j] in bit j of qh. */
static void pack_5bit32(const uint8_t *u, uint8_t *qs, uint8_t qh_bytes[4]) {
    pack_nibbles32(u, qs);
    uint32_t qh = 0;
    for (int j = 0; j < 32; j++) qh |= (uint32_t)((u[j] >> 4) & 1) << j;
    memcpy(qh_bytes, &qh, 4);
}

/* Low 2 bits of a 256-block in the Q2_K/Q3_K layout: element
 * 128h + 32s + m (m < 32) at bits 2s of qs[32h + m]. */
static void pack_2bit256(const uint8_t *u, uint8_t *qs) {
    memset(qs, 0, 64);
    for (int h = 0; h < 2; h++)
        for (int s = 0; s < 4; s++)
            for (int m = 0; m < 32; m++) qs[32 * h + m] |= (uint8_t)((u[128 * h + 32 * s + m] & 3) << (2 * s));
}

void qf_gptq_grid_pack(const qf_gptq_grid *g, const uint8_t *u, void *blk) {
    switch (g->type) {
    case GGML_TYPE_Q4_0: pack_nibbles32(u, ((block_q4_0 *)blk)->qs); break;
    case GGML_TYPE_Q4_1: pack_nibbles32(u, ((block_q4_1 *)blk)->qs); break;
    case GGML_TYPE_IQ4_NL: pack_nibbles32(u, ((block_iq4_nl *)blk)->qs); break;
    case GGML_TYPE_IQ4_XS: /* sub-block s of 32: nibbles as IQ4_NL in qs[16s .. 16s+16) */
        for (int s = 0; s < 8; s++) pack_nibbles32(u + 32 * s, ((block_iq4_xs *)blk)->qs + 16 * s);
        break;
    case GGML_TYPE_Q5_0: pack_5bit32(u, ((block_q5_0 *)blk)->qs, ((block_q5_0 *)blk)->qh); break;
    case GGML_TYPE_Q5_1: pack_5bit32(u, ((block_q5_1 *)blk)->qs, ((block_q5_1 *)blk)->qh); break;
    case GGML_TYPE_Q8_0:
        for (int j = 0; j < 32; j++) ((block_q8_0 *)blk)->qs[j] = (int8_t)(u[j] - 127);
        break;
    case GGML_TYPE_Q2_K: pack_2bit256(u, ((block_q2_K *)blk)->qs); break;
    case GGML_TYPE_Q3_K: { /* low 2 bits as Q2_K; hmask bit (4h + s) of byte m set when u >= 4 */
        block_q3_K *b = blk;
        pack_2bit256(u, b->qs);
        memset(b->hmask, 0, sizeof b->hmask);
        for (int h = 0; h < 2; h++)
            for (int s = 0; s < 4; s++)
                for (int m = 0; m < 32; m++)
                    if (u[128 * h + 32 * s + m] >= 4) b->hmask[m] |= (uint8_t)(1u << (4 * h + s));
        break;
    }
    case GGML_TYPE_Q4_K: { /* chunk c of 64: qs[32c + l] = u[64c + l] | u[64c + 32 + l] << 4 */
        block_q4_K *b = blk;
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) b->qs[32 * c + l] = (uint8_t)((u[64 * c + l] & 15) | (u[64 * c + 32 + l] & 15) << 4);
        break;
    }
    case GGML_TYPE_Q5_K: { /* Q4_K nibbles; bit 4 in qh[l] at bit 2c (low half) / 2c+1 (high half) */
        block_q5_K *b = blk;
        memset(b->qh, 0, sizeof b->qh);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                const uint8_t a = u[64 * c + l], z = u[64 * c + 32 + l];
                b->qs[32 * c + l] = (uint8_t)((a & 15) | (z & 15) << 4);
                b->qh[l] |= (uint8_t)(((a >> 4) & 1) << (2 * c) | ((z >> 4) & 1) << (2 * c + 1));
            }
        break;
    }
    case GGML_TYPE_Q6_K: { /* half h, element 128h + 32r + l: low 4 bits in ql[64h + l + 32(r&1)]
                              (low nibble r < 2, high r >= 2), high 2 bits in qh[32h + l] at bit 2r */
        block_q6_K *b = blk;
        memset(b->ql, 0, sizeof b->ql);
        memset(b->qh, 0, sizeof b->qh);
        for (int h = 0; h < 2; h++)
            for (int r = 0; r < 4; r++)
                for (int l = 0; l < 32; l++) {
                    const uint8_t v = u[128 * h + 32 * r + l];
                    b->ql[64 * h + l + 32 * (r & 1)] |= (uint8_t)((v & 15) << (r < 2 ? 0 : 4));
                    b->qh[32 * h + l] |= (uint8_t)(((v >> 4) & 3) << (2 * r));
                }
        break;
    }
    default: break;
    }
}

void qf_gptq_grid_levels_ref(const qf_gptq_grid *g, void *blk, float *levels) {
    if (g->dim) { codebook_levels(g, blk, levels); return; }
    uint8_t u[256];
    float y[256];
    const int n_sub = g->block / g->sub;
    for (int v = 0; v < g->nlev; v++) {
        memset(u, v, (size_t)g->block);
        qf_gptq_grid_pack(g, u, blk);
        qf_dequantize_row_ref(g->type, blk, y, g->block);
        for (int s = 0; s < n_sub; s++) levels[s * g->nlev + v] = y[s * g->sub];
    }
}

/* Each weight's value depends only on its own index and its sub-block's
 * scales, so one dequantization reads `sub` levels of every sub-block at
 * once: element e of a sub-block carries index base + e. */
void qf_gptq_grid_levels(const qf_gptq_grid *g, void *blk, float *levels) {
    if (g->dim) { codebook_levels(g, blk, levels); return; }
    uint8_t u[256];
    float y[256];
    const int n_sub = g->block / g->sub;
    for (int base = 0; base < g->nlev; base += g->sub) {
        const int cnt = g->nlev - base < g->sub ? g->nlev - base : g->sub;
        for (int s = 0; s < n_sub; s++)
            for (int e = 0; e < g->sub; e++) u[s * g->sub + e] = (uint8_t)(base + (e < cnt ? e : 0));
        qf_gptq_grid_pack(g, u, blk);
        qf_dequantize_row_ref(g->type, blk, y, g->block);
        for (int s = 0; s < n_sub; s++)
            for (int e = 0; e < cnt; e++) levels[s * g->nlev + base + e] = y[s * g->sub + e];
    }
}

/* Codebook grids: the 7 stored sign bits of 8 (the 8th is their parity). */
static inline uint32_t signs7(const uint8_t *neg) {
    uint32_t v = 0;
    for (int j = 0; j < 7; j++) v |= (uint32_t)(neg[j] & 1) << j;
    return v;
}

void qf_gptq_grid_pack_points(const qf_gptq_grid *g, const uint16_t *idx, const uint8_t *neg, void *blk) {
    switch (g->type) {
    case GGML_TYPE_IQ3_S: { /* point q of sub-block ib: qs[8ib+q] low 8 bits, qh[ib] bit q; signs per 4 weights */
        block_iq3_s *b = blk;
        memset(b->qh, 0, sizeof b->qh);
        memset(b->signs, 0, sizeof b->signs);
        for (int k = 0; k < 64; k++) {
            b->qs[k] = (uint8_t)(idx[k] & 255);
            b->qh[k / 8] |= (uint8_t)(((idx[k] >> 8) & 1) << (k % 8));
            for (int j = 0; j < 4; j++) b->signs[k / 2] |= (uint8_t)((neg[4 * k + j] & 1) << (4 * (k % 2) + j));
        }
        break;
    }
    case GGML_TYPE_IQ3_XXS: { /* qs[8ib+q] points; word ss of ib: 7 sign bits per pair of points, scale kept */
        block_iq3_xxs *b = blk;
        for (int k = 0; k < 64; k++) b->qs[k] = (uint8_t)idx[k];
        for (int ib = 0; ib < 8; ib++) {
            uint32_t ss;
            memcpy(&ss, b->qs + 64 + 4 * ib, 4);
            ss &= 0xF0000000u;
            for (int l = 0; l < 4; l++) ss |= signs7(neg + 32 * ib + 8 * l) << (7 * l);
            memcpy(b->qs + 64 + 4 * ib, &ss, 4);
        }
        break;
    }
    case GGML_TYPE_IQ2_XXS: { /* words w0 (4 point bytes), w1 (4 x 7 sign bits, scale kept) per sub-block */
        block_iq2_xxs *b = blk;
        for (int ib = 0; ib < 8; ib++) {
            uint32_t w0 = 0, w1;
            memcpy(&w1, b->qs + 4 * ib + 2, 4);
            w1 &= 0xF0000000u;
            for (int l = 0; l < 4; l++) {
                w0 |= (uint32_t)(idx[4 * ib + l] & 255) << (8 * l);
                w1 |= signs7(neg + 32 * ib + 8 * l) << (7 * l);
            }
            memcpy(b->qs + 4 * ib, &w0, 4);
            memcpy(b->qs + 4 * ib + 2, &w1, 4);
        }
        break;
    }
    case GGML_TYPE_IQ2_XS: /* qs[k] = 9-bit point | 7 sign bits << 9 */
        for (int k = 0; k < 32; k++)
            ((block_iq2_xs *)blk)->qs[k] = (uint16_t)((idx[k] & 511) | signs7(neg + 8 * k) << 9);
        break;
    case GGML_TYPE_IQ2_S: { /* qs[k] low 8 bits, qh[k/4] 2 bits at 2(k%4), qs[32+k] 8 sign bits */
        block_iq2_s *b = blk;
        memset(b->qh, 0, sizeof b->qh);
        for (int k = 0; k < 32; k++) {
            b->qs[k] = (uint8_t)(idx[k] & 255);
            b->qh[k / 4] |= (uint8_t)(((idx[k] >> 8) & 3) << (2 * (k % 4)));
            uint8_t sg = 0;
            for (int j = 0; j < 8; j++) sg |= (uint8_t)((neg[8 * k + j] & 1) << j);
            b->qs[32 + k] = sg;
        }
        break;
    }
    default: break;
    }
}

/* Codebook grids: level l of every sub-block read from one dequantization
 * of the block with every point set to one that carries l, signs clear. */
static void codebook_levels(const qf_gptq_grid *g, void *blk, float *levels) {
    uint16_t idx[256 / 4];
    uint8_t neg[256] = {0};
    float y[256];
    const int n_sub = g->block / g->sub;
    for (int l = 0; l < g->nlev; l++) {
        for (int k = 0; k < g->block / g->dim; k++) idx[k] = g->lev_point[l];
        qf_gptq_grid_pack_points(g, idx, neg, blk);
        qf_dequantize_row_ref(g->type, blk, y, g->block);
        for (int s = 0; s < n_sub; s++) levels[s * g->nlev + l] = y[s * g->sub + g->lev_pos[l]];
    }
}

/* The best point of one codebook group of dim weights with magnitudes a,
 * importance c and level magnitudes val[nlev]: the cost without a sign flip
 * (best0 at *p0) and with the cheapest single flip (best1 at *p1, flipping
 * *f1). The costs of every level pattern of each half of the group are
 * tabulated first, so a point costs two lookups. */
static void best_points(const qf_gptq_grid *g, const float *a, const float *c, const float *val, float *best0,
                        int *p0, float *best1, int *p1, int *f1) {
    const int nl = g->nlev, P = g->part, ncode = P == 4 ? nl * nl * nl * nl : nl * nl;
    float cost[2][81], flip[2][81];
    uint8_t fpos[2][81];
    for (int h = 0; h < 2; h++)
        for (int code = 0; code < ncode; code++) {
            float cs = 0, fm = INFINITY;
            int fj = 0;
            for (int i = 0, r = code; i < P; i++, r /= nl) {
                const int j = h * P + i;
                const float m = val[r % nl], d = a[j] - m, fc = 4.0f * c[j] * a[j] * m;
                cs += c[j] * d * d;
                if (fc < fm) { fm = fc; fj = j; }
            }
            cost[h][code] = cs;
            flip[h][code] = fm;
            fpos[h][code] = (uint8_t)fj;
        }
    float b0 = INFINITY, b1 = INFINITY;
    int i0 = 0, i1 = 0;
    for (int p = 0; p < g->n_points; p++) {
        const float cp = cost[0][g->code[p][0]] + cost[1][g->code[p][1]];
        if (cp < b0) { b0 = cp; i0 = p; }
    }
    if (g->parity)
        for (int p = 0; p < g->n_points; p++) {
            const int x = g->code[p][0], y = g->code[p][1];
            const float cp = cost[0][x] + cost[1][y] + (flip[0][x] <= flip[1][y] ? flip[0][x] : flip[1][y]);
            if (cp < b1) { b1 = cp; i1 = p; }
        }
    *best0 = b0; *p0 = i0; *best1 = b1; *p1 = i1;
    *f1 = flip[0][g->code[i1][0]] <= flip[1][g->code[i1][1]] ? fpos[0][g->code[i1][0]] : fpos[1][g->code[i1][1]];
}

void qf_gptq_grid_choose_unit(const qf_gptq_grid *g, const float *lev, const float *w, const float *c, float *q,
                              uint8_t *neg, uint16_t *idx) {
    const int U = QF_GPTQ_UNIT, nh = U / g->dim;
    const int lev_neg = lev[g->nlev - 1] < 0 || lev[0] < 0; /* the sub-block's scale is negative */
    float val[8], a[QF_GPTQ_UNIT];
    for (int l = 0; l < g->nlev; l++) val[l] = fabsf(lev[l]);
    int odd = 0;
    for (int i = 0; i < U; i++) {
        a[i] = fabsf(w[i]);
        neg[i] = (uint8_t)((w[i] < 0) != lev_neg); /* the sign that puts q on w's side */
        odd ^= neg[i];
    }
    float b0[2], b1[2];
    int p0[2], p1[2], f1[2];
    for (int h = 0; h < nh; h++)
        best_points(g, a + h * g->dim, c + h * g->dim, val, &b0[h], &p0[h], &b1[h], &p1[h], &f1[h]);
    int flip_h = -1; /* the half that takes the parity flip */
    if (g->parity && odd) flip_h = nh == 1 || b1[0] + b0[1] <= b0[0] + b1[1] ? 0 : 1;
    for (int h = 0; h < nh; h++) {
        idx[h] = (uint16_t)(h == flip_h ? p1[h] : p0[h]);
        if (h == flip_h) neg[h * g->dim + f1[h]] ^= 1;
        for (int j = 0; j < g->dim; j++) {
            const float v = lev[g->lvl_of[point_byte(g, idx[h], j)]];
            q[h * g->dim + j] = neg[h * g->dim + j] ? -v : v;
        }
    }
}
