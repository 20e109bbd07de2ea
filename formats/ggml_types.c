/* ggml_types.c - the type-traits table: ids, names, block geometry, the
 * activation (vec_dot) type, the imatrix rule and the codec entry points of
 * every ggml type. The one place that lists the types: everything else asks
 * this table (formats/codecs.c dispatches through it).
 *
 * Facts from ggml include/ggml.h (enum ggml_type, type names as printed by
 * ggml_type_name), gguf-py gguf/constants.py GGML_QUANT_SIZES (elements,
 * bytes per block) and ggml-cpu's type_traits_cpu (vec_dot_type); see
 * docs/formats.md. Removed ids (4, 5, 31..33, 36..38) have no entry, so
 * ggml_get_type_traits() returns NULL for them. */
#include "ggml_types.h"

#include <string.h>
#include <strings.h>

#include "codecs.h"
#include "numfmt.h"

/* Plain types. */
static void f32_to_float(const void *src, float *dst, int64_t k) { memcpy(dst, src, (size_t)k * sizeof(float)); }
static void f16_to_float_ref(const void *src, float *dst, int64_t k) {
    const uint16_t *h = src;
    for (int64_t i = 0; i < k; i++) dst[i] = qf_f16_to_f32(h[i]);
}
static void bf16_to_float_ref(const void *src, float *dst, int64_t k) {
    const uint16_t *h = src;
    for (int64_t i = 0; i < k; i++) dst[i] = qf_bf16_to_f32(h[i]);
}
static void f16_to_float(const void *src, float *dst, int64_t k) { qf_f16_to_f32_row(src, dst, (size_t)k); }
static void bf16_to_float(const void *src, float *dst, int64_t k) { qf_bf16_to_f32_row(src, dst, (size_t)k); }
static void f32_from_float(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw) {
    memcpy(y, x, (size_t)n * sizeof(float));
}
static void f16_from_float(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw) {
    qf_f32_to_f16_row(x, (uint16_t *)y, (size_t)n);
}
static void bf16_from_float(const struct qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw) {
    qf_f32_to_bf16_row(x, (uint16_t *)y, (size_t)n);
}

/* void-pointer adapters of the block dequantizers: t_to_float / t_to_float_ref. */
#define ADAPT(t)                                                                                        \
    static void t##_to_float_ref(const void *s, float *d, int64_t k) { dequantize_row_##t##_ref(s, d, k); } \
    static void t##_to_float(const void *s, float *d, int64_t k) { dequantize_row_##t(s, d, k); }
ADAPT(q4_0) ADAPT(q4_1) ADAPT(q5_0) ADAPT(q5_1) ADAPT(q8_0) ADAPT(iq4_nl) ADAPT(iq4_xs) ADAPT(iq3_s) ADAPT(iq3_xxs) ADAPT(iq2_xxs)
ADAPT(iq2_xs) ADAPT(iq2_s)
ADAPT(iq1_s) ADAPT(iq1_m)
ADAPT(q2_K) ADAPT(q3_K) ADAPT(q4_K) ADAPT(q5_K) ADAPT(q6_K) ADAPT(q8_K)
#undef ADAPT

#define BLOCK(t) t##_to_float, t##_to_float_ref, qk_from_float_##t
#define IGN GGML_IMATRIX_IGNORED
#define USE GGML_IMATRIX_USED
#define REQ GGML_IMATRIX_REQUIRED

static const ggml_type_traits type_traits[GGML_TYPE_COUNT] = {
    /*                      name       block bytes quant vec_dot_type     imatrix codec */
    [GGML_TYPE_F32]     = {"f32",      1,    4,    0, GGML_TYPE_F32,  IGN, f32_to_float, f32_to_float, f32_from_float},
    [GGML_TYPE_F16]     = {"f16",      1,    2,    0, GGML_TYPE_F16,  IGN, f16_to_float, f16_to_float_ref, f16_from_float},
    [GGML_TYPE_Q4_0]    = {"q4_0",     32,   18,   1, GGML_TYPE_Q8_0, USE, BLOCK(q4_0)},
    [GGML_TYPE_Q4_1]    = {"q4_1",     32,   20,   1, GGML_TYPE_Q8_1, USE, BLOCK(q4_1)},
    [GGML_TYPE_Q5_0]    = {"q5_0",     32,   22,   1, GGML_TYPE_Q8_0, USE, BLOCK(q5_0)},
    [GGML_TYPE_Q5_1]    = {"q5_1",     32,   24,   1, GGML_TYPE_Q8_1, USE, BLOCK(q5_1)},
    [GGML_TYPE_Q8_0]    = {"q8_0",     32,   34,   1, GGML_TYPE_Q8_0, IGN, BLOCK(q8_0)},
    [GGML_TYPE_Q8_1]    = {"q8_1",     32,   36,   1, GGML_TYPE_F32,  IGN, NULL, NULL, NULL},
    [GGML_TYPE_Q2_K]    = {"q2_K",     256,  84,   1, GGML_TYPE_Q8_K, USE, BLOCK(q2_K)},
    [GGML_TYPE_Q3_K]    = {"q3_K",     256,  110,  1, GGML_TYPE_Q8_K, USE, BLOCK(q3_K)},
    [GGML_TYPE_Q4_K]    = {"q4_K",     256,  144,  1, GGML_TYPE_Q8_K, USE, BLOCK(q4_K)},
    [GGML_TYPE_Q5_K]    = {"q5_K",     256,  176,  1, GGML_TYPE_Q8_K, USE, BLOCK(q5_K)},
    [GGML_TYPE_Q6_K]    = {"q6_K",     256,  210,  1, GGML_TYPE_Q8_K, USE, BLOCK(q6_K)},
    [GGML_TYPE_Q8_K]    = {"q8_K",     256,  292,  1, GGML_TYPE_F32,  IGN, BLOCK(q8_K)},
    [GGML_TYPE_IQ2_XXS] = {"iq2_xxs",  256,  66,   1, GGML_TYPE_Q8_K, REQ, BLOCK(iq2_xxs)},
    [GGML_TYPE_IQ2_XS]  = {"iq2_xs",   256,  74,   1, GGML_TYPE_Q8_K, REQ, BLOCK(iq2_xs)},
    [GGML_TYPE_IQ3_XXS] = {"iq3_xxs",  256,  98,   1, GGML_TYPE_Q8_K, USE, BLOCK(iq3_xxs)},
    [GGML_TYPE_IQ1_S]   = {"iq1_s",    256,  50,   1, GGML_TYPE_Q8_K, REQ, BLOCK(iq1_s)},
    [GGML_TYPE_IQ4_NL]  = {"iq4_nl",   32,   18,   1, GGML_TYPE_Q8_0, USE, BLOCK(iq4_nl)},
    [GGML_TYPE_IQ3_S]   = {"iq3_s",    256,  110,  1, GGML_TYPE_Q8_K, USE, BLOCK(iq3_s)},
    [GGML_TYPE_IQ2_S]   = {"iq2_s",    256,  82,   1, GGML_TYPE_Q8_K, USE, BLOCK(iq2_s)},
    [GGML_TYPE_IQ4_XS]  = {"iq4_xs",   256,  136,  1, GGML_TYPE_Q8_K, USE, BLOCK(iq4_xs)},
    [GGML_TYPE_I8]      = {"i8",       1,    1,    0, GGML_TYPE_F32,  IGN, NULL, NULL, NULL},
    [GGML_TYPE_I16]     = {"i16",      1,    2,    0, GGML_TYPE_F32,  IGN, NULL, NULL, NULL},
    [GGML_TYPE_I32]     = {"i32",      1,    4,    0, GGML_TYPE_F32,  IGN, NULL, NULL, NULL},
    [GGML_TYPE_I64]     = {"i64",      1,    8,    0, GGML_TYPE_F32,  IGN, NULL, NULL, NULL},
    [GGML_TYPE_F64]     = {"f64",      1,    8,    0, GGML_TYPE_F32,  IGN, NULL, NULL, NULL},
    [GGML_TYPE_IQ1_M]   = {"iq1_m",    256,  56,   1, GGML_TYPE_Q8_K, USE, BLOCK(iq1_m)},
    [GGML_TYPE_BF16]    = {"bf16",     1,    2,    0, GGML_TYPE_BF16, IGN, bf16_to_float, bf16_to_float_ref, bf16_from_float},
    [GGML_TYPE_TQ1_0]   = {"tq1_0",    256,  54,   1, GGML_TYPE_F32,  IGN, NULL, NULL, NULL},
    [GGML_TYPE_TQ2_0]   = {"tq2_0",    256,  66,   1, GGML_TYPE_F32,  IGN, NULL, NULL, NULL},
    [GGML_TYPE_MXFP4]   = {"mxfp4",    32,   17,   1, GGML_TYPE_F32,  IGN, NULL, NULL, NULL},
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
