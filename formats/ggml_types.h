/* ggml_types.h - ggml tensor type ids and the type-traits table (GGUF stores these ids).
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

struct qk_kernels;
/* Row dequantizer: k elements (a multiple of the block size) from src to dst. */
typedef void (*ggml_to_float_fn)(const void *src, float *dst, int64_t k);
/* Row quantizer: n elements of x into y with the scale-search kernel set kk
 * (formats/codec_kernels.h); qw = the imatrix row or NULL. */
typedef void (*ggml_from_float_fn)(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw);

/* What an importance matrix does to a type's quantizer. */
enum { GGML_IMATRIX_IGNORED = 0, GGML_IMATRIX_USED = 1, GGML_IMATRIX_REQUIRED = 2 };

/* One row of the type-traits table: everything the rest of the code needs to
 * know about a type, so adding a block type means adding its codec file and
 * one row here (formats/ggml_types.c). */
typedef struct ggml_type_traits {
    const char *name;      /* "q4_0"; NULL for ids that are not (or no longer) types */
    uint32_t block_size;   /* elements per block (1 for plain types) */
    uint32_t type_size;    /* bytes per block */
    int is_quantized;
    uint32_t vec_dot_type; /* the type llama.cpp's CPU backend rounds activations to for a
                              dot product with this weight type (F32: no rounding) */
    int imatrix;           /* GGML_IMATRIX_*: what ggml's quantizer does with an imatrix */
    ggml_to_float_fn to_float;     /* fastest dequantizer; NULL: no codec */
    ggml_to_float_fn to_float_ref; /* the scalar reference (the spec) */
    ggml_from_float_fn from_float; /* quantizer; NULL: cannot be written */
} ggml_type_traits;

/* NULL if id is unknown/removed. */
const ggml_type_traits *ggml_get_type_traits(uint32_t type);
/* Case-insensitive name ("Q4_0", "f16") -> id, or -1. */
int ggml_type_from_name(const char *name);
/* Bytes for a row of n elements (n must be a multiple of block_size);
 * returns 0 and sets *out, or -1 if not a multiple / unknown / overflow. */
int ggml_row_size(uint32_t type, uint64_t n, uint64_t *out);

#endif
