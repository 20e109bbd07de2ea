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
