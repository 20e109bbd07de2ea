/* ggml_types.c - the ggml type-traits table (ids, names, block geometry).
 *
 * Facts from ggml include/ggml.h (enum ggml_type, type names as printed by
 * ggml_type_name) and gguf-py gguf/constants.py GGML_QUANT_SIZES (elements,
 * bytes per block); see docs/formats.md. Removed ids (4, 5, 31..33, 36..38)
 * have no entry, so ggml_get_type_traits() returns NULL for them. */
#include "ggml_types.h"

#include <strings.h>

static const ggml_type_traits type_traits[GGML_TYPE_COUNT] = {
    /*                      name        block bytes quantized */
    [GGML_TYPE_F32]     = {"f32",       1,    4,    0},
    [GGML_TYPE_F16]     = {"f16",       1,    2,    0},
    [GGML_TYPE_Q4_0]    = {"q4_0",      32,   18,   1},
    [GGML_TYPE_Q4_1]    = {"q4_1",      32,   20,   1},
    [GGML_TYPE_Q5_0]    = {"q5_0",      32,   22,   1},
    [GGML_TYPE_Q5_1]    = {"q5_1",      32,   24,   1},
    [GGML_TYPE_Q8_0]    = {"q8_0",      32,   34,   1},
    [GGML_TYPE_Q8_1]    = {"q8_1",      32,   36,   1},
    [GGML_TYPE_Q2_K]    = {"q2_K",      256,  84,   1},
    [GGML_TYPE_Q3_K]    = {"q3_K",      256,  110,  1},
    [GGML_TYPE_Q4_K]    = {"q4_K",      256,  144,  1},
    [GGML_TYPE_Q5_K]    = {"q5_K",      256,  176,  1},
    [GGML_TYPE_Q6_K]    = {"q6_K",      256,  210,  1},
    [GGML_TYPE_Q8_K]    = {"q8_K",      256,  292,  1},
    [GGML_TYPE_IQ2_XXS] = {"iq2_xxs",   256,  66,   1},
    [GGML_TYPE_IQ2_XS]  = {"iq2_xs",    256,  74,   1},
    [GGML_TYPE_IQ3_XXS] = {"iq3_xxs",   256,  98,   1},
    [GGML_TYPE_IQ1_S]   = {"iq1_s",     256,  50,   1},
    [GGML_TYPE_IQ4_NL]  = {"iq4_nl",    32,   18,   1},
    [GGML_TYPE_IQ3_S]   = {"iq3_s",     256,  110,  1},
    [GGML_TYPE_IQ2_S]   = {"iq2_s",     256,  82,   1},
    [GGML_TYPE_IQ4_XS]  = {"iq4_xs",    256,  136,  1},
    [GGML_TYPE_I8]      = {"i8",        1,    1,    0},
    [GGML_TYPE_I16]     = {"i16",       1,    2,    0},
    [GGML_TYPE_I32]     = {"i32",       1,    4,    0},
    [GGML_TYPE_I64]     = {"i64",       1,    8,    0},
    [GGML_TYPE_F64]     = {"f64",       1,    8,    0},
    [GGML_TYPE_IQ1_M]   = {"iq1_m",     256,  56,   1},
    [GGML_TYPE_BF16]    = {"bf16",      1,    2,    0},
    [GGML_TYPE_TQ1_0]   = {"tq1_0",     256,  54,   1},
    [GGML_TYPE_TQ2_0]   = {"tq2_0",     256,  66,   1},
    [GGML_TYPE_MXFP4]   = {"mxfp4",     32,   17,   1},
};

const ggml_type_traits *ggml_get_type_traits(uint32_t type) {
    if (type >= GGML_TYPE_COUNT || !type_traits[type].name) return NULL;
    return &type_traits[type];
}

int ggml_type_from_name(const char *name) {
    if (!name) return -1;
    for (int t = 0; t < GGML_TYPE_COUNT; t++)
        if (type_traits[t].name && strcasecmp(type_traits[t].name, name) == 0) return t;
    return -1;
}

int ggml_row_size(uint32_t type, uint64_t n, uint64_t *out) {
    const ggml_type_traits *tt = ggml_get_type_traits(type);
    if (!tt || n % tt->block_size != 0) return -1;
    uint64_t bytes;
    if (__builtin_mul_overflow(n / tt->block_size, (uint64_t)tt->type_size, &bytes)) return -1;
    if (out) *out = bytes;
    return 0;
}
