/* ggml_types.h - ggml tensor type ids and their traits (GGUF stores these ids).
 * Ids and block geometry per ggml include/ggml.h and gguf-py constants.py. */
#ifndef QF_GGML_TYPES_H
#define QF_GGML_TYPES_H

#include <stdint.h>
#include <stddef.h>

typedef enum ggml_type {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    /* 4, 5 removed */
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_IQ2_XXS = 16,
    GGML_TYPE_IQ2_XS = 17,
    GGML_TYPE_IQ3_XXS = 18,
    GGML_TYPE_IQ1_S = 19,
    GGML_TYPE_IQ4_NL = 20,
    GGML_TYPE_IQ3_S = 21,
    GGML_TYPE_IQ2_S = 22,
    GGML_TYPE_IQ4_XS = 23,
    GGML_TYPE_I8 = 24,
    GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26,
    GGML_TYPE_I64 = 27,
    GGML_TYPE_F64 = 28,
    GGML_TYPE_IQ1_M = 29,
    GGML_TYPE_BF16 = 30,
    /* 31..33 removed (Q4_0_4_4 ...) */
    GGML_TYPE_TQ1_0 = 34,
    GGML_TYPE_TQ2_0 = 35,
    /* 36..38 removed */
    GGML_TYPE_MXFP4 = 39,
    GGML_TYPE_COUNT = 40,
} ggml_type;

typedef struct ggml_type_traits {
    const char *name;      /* "q4_0"; NULL for ids that are not (or no longer) types */
    uint32_t block_size;   /* elements per block (1 for plain types) */
    uint32_t type_size;    /* bytes per block */
    int is_quantized;
} ggml_type_traits;

/* NULL if id is unknown/removed. */
const ggml_type_traits *ggml_get_type_traits(uint32_t type);
/* Case-insensitive name ("Q4_0", "f16") -> id, or -1. */
int ggml_type_from_name(const char *name);
/* Bytes for a row of n elements (n must be a multiple of block_size);
 * returns 0 and sets *out, or -1 if not a multiple / unknown / overflow. */
int ggml_row_size(uint32_t type, uint64_t n, uint64_t *out);

#endif
