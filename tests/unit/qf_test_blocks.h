/* qf_test_blocks.h - test data for the codec and matmul tests (header-only;
 * needs the library's codecs.h): random but valid weight rows of any type. */
#ifndef QF_TEST_BLOCKS_H
#define QF_TEST_BLOCKS_H

#include <stdint.h>
#include <stdlib.h>

#include "codecs.h"
#include "numfmt.h"

/* The type's ggml name (q4_K). */
static inline const char *qf_test_type_name(uint32_t type) { return ggml_get_type_traits(type)->name; }

/* Bytes of one row of n elements of type (0 if n does not fit the type). */
static inline size_t qf_test_row_bytes(uint32_t type, int64_t n) {
    uint64_t rs = 0;
    ggml_row_size(type, (uint64_t)n, &rs);
    return (size_t)rs;
}

/* rows x n floats dequantized from q by the reference dequantizer (malloc'd). */
static inline float *qf_test_dequant_rows(uint32_t type, const void *q, int64_t rows, int64_t n) {
    float *y = malloc((size_t)(rows * n) * sizeof *y);
    const size_t rs = qf_test_row_bytes(type, n);
    for (int64_t r = 0; y && r < rows; r++) qf_dequantize_row_ref(type, (const uint8_t *)q + r * rs, y + r * n, n);
    return y;
}

/* A small positive F16 scale, 0.001 + 0.02 * (rnd() % 1000) / 1000. */
static inline qf_half qf_test_small_half(uint32_t (*rnd)(void)) {
    return qf_f32_to_f16(0.001f + 0.02f * (float)(rnd() % 1000) / 1000.0f);
}

/* n_out rows of n_in weights of `type` (row size into *row_bytes): random
 * bytes from rnd, then every block's F16 scales set to small finite values
 * (F32/F16/BF16 elements to frand() in [-1, 1)); NULL if n_in does not fit
 * the type or on allocation failure. */
static inline void *qf_test_random_weights(uint32_t (*rnd)(void), float (*frand)(void), uint32_t type, int64_t n_in,
                                           int64_t n_out, size_t *row_bytes) {
    uint64_t rb;
    if (ggml_row_size(type, (uint64_t)n_in, &rb) != 0) return NULL;
    uint8_t *w = malloc(rb * (size_t)n_out);
    if (!w) return NULL;
    for (size_t i = 0; i < rb * (size_t)n_out; i++) w[i] = (uint8_t)rnd();
    const ggml_type_traits *tr = ggml_get_type_traits(type);
    const size_t n_blocks = rb * (size_t)n_out / tr->type_size;
    for (size_t b = 0; b < n_blocks; b++) {
        void *blk = w + b * tr->type_size;
        switch (type) {
        case GGML_TYPE_F32: ((float *)w)[b] = frand(); break;
        case GGML_TYPE_F16: ((qf_half *)w)[b] = qf_f32_to_f16(frand()); break;
        case GGML_TYPE_BF16: ((uint16_t *)w)[b] = qf_f32_to_bf16(frand()); break;
        case GGML_TYPE_Q4_0: ((block_q4_0 *)blk)->d = qf_test_small_half(rnd); break;
        case GGML_TYPE_Q4_1:
            ((block_q4_1 *)blk)->d = qf_test_small_half(rnd);
            ((block_q4_1 *)blk)->m = qf_test_small_half(rnd);
            break;
        case GGML_TYPE_Q5_0: ((block_q5_0 *)blk)->d = qf_test_small_half(rnd); break;
        case GGML_TYPE_Q5_1:
            ((block_q5_1 *)blk)->d = qf_test_small_half(rnd);
            ((block_q5_1 *)blk)->m = qf_test_small_half(rnd);
            break;
        case GGML_TYPE_Q8_0: ((block_q8_0 *)blk)->d = qf_test_small_half(rnd); break;
        case GGML_TYPE_Q2_K:
            ((block_q2_K *)blk)->d = qf_test_small_half(rnd);
            ((block_q2_K *)blk)->dmin = qf_test_small_half(rnd);
            break;
        case GGML_TYPE_Q3_K: ((block_q3_K *)blk)->d = qf_test_small_half(rnd); break;
        case GGML_TYPE_Q4_K:
            ((block_q4_K *)blk)->d = qf_test_small_half(rnd);
            ((block_q4_K *)blk)->dmin = qf_test_small_half(rnd);
            break;
        case GGML_TYPE_Q5_K:
            ((block_q5_K *)blk)->d = qf_test_small_half(rnd);
            ((block_q5_K *)blk)->dmin = qf_test_small_half(rnd);
            break;
        case GGML_TYPE_Q6_K: ((block_q6_K *)blk)->d = qf_test_small_half(rnd); break;
        case GGML_TYPE_IQ2_XS: ((block_iq2_xs *)blk)->d = qf_test_small_half(rnd); break;
        case GGML_TYPE_IQ2_S: ((block_iq2_s *)blk)->d = qf_test_small_half(rnd); break;
        case GGML_TYPE_IQ3_S: ((block_iq3_s *)blk)->d = qf_test_small_half(rnd); break;
        case GGML_TYPE_IQ3_XXS: ((block_iq3_xxs *)blk)->d = qf_test_small_half(rnd); break;
        case GGML_TYPE_IQ2_XXS: ((block_iq2_xxs *)blk)->d = qf_test_small_half(rnd); break;
        case GGML_TYPE_IQ1_S: ((block_iq1_s *)blk)->d = qf_test_small_half(rnd); break;
        case GGML_TYPE_IQ1_M: { /* d's four nibbles in the top of the four scale words */
            const qf_half d = qf_test_small_half(rnd);
            uint8_t *s = ((block_iq1_m *)blk)->scales;
            for (int k = 0; k < 4; k++) s[2 * k + 1] = (uint8_t)((s[2 * k + 1] & 0x0F) | ((d >> 4 * k) & 0xF) << 4);
            break;
        }
        }
    }
    *row_bytes = (size_t)rb;
    return w;
}

#endif
