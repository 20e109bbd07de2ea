/* fp8.h - FP8 E4M3 weight checkpoints: the row codec and the scale layouts
 * of the two on-disk conventions (docs/formats.md, "FP8 checkpoints").
 *
 *   compressed-tensors "float-quantized" (vLLM / llm-compressor):
 *     X.weight        F8_E4M3 [out, in]
 *     X.weight_scale  [1] or [] (tensor), [out, 1] or [out] (channel),
 *                     [ceil(out/br), ceil(in/bc)] (block, br x bc blocks)
 *     X.input_scale   [1] or [] (static activation scale, optional)
 *     W[r][c] = weight_scale[...] * e4m3(X.weight[r][c])
 *   quant_method "fp8" with weight_block_size [br, bc] (DeepSeek-V3, Qwen3-FP8):
 *     X.weight_scale_inv [ceil(out/br), ceil(in/bc)], same product
 *     (despite the name the stored value multiplies the code).
 *
 * Scales may be stored as F32, F16 or BF16 and are read into F32 (exact).
 * Every scale must be finite and > 0: anything else is a bad file.
 */
#ifndef QF_FP8_H
#define QF_FP8_H

#include <stddef.h>
#include <stdint.h>

#include "qf_error.h"
#include "json.h"
#include "safetensors.h"

#define QF_FP8_E4M3_MAX 448.0f

/* Row codec. qf_fp8_encode_row: codes[i] = e4m3(x[i] / scale), rounded to
 * nearest even and saturated to +-448 (qf_f32_to_e4m3). Returns -1, or the
 * index of the first non-finite x[i] (NaN/Inf weights are refused; the caller
 * names the tensor and element), codes then being unspecified. _ref is the
 * scalar specification; the default one may be vectorized and is identical. */
int64_t qf_fp8_encode_row(const float *x, float scale, uint8_t *codes, int64_t n);
int64_t qf_fp8_encode_row_ref(const float *x, float scale, uint8_t *codes, int64_t n);
/* out[i] = scale * e4m3_decode(codes[i]) (exact in F32 up to the product's rounding). */
void qf_fp8_decode_row(const uint8_t *codes, float scale, float *out, int64_t n);
/* Squared error of one scale: sum over i of (x[i] - scale * e4m3(x[i] / scale))^2
 * for finite x (what qf_fp8_encode_row then qf_fp8_decode_row would lose).
 * _ref is the scalar specification (double sum); the default one may be
 * vectorized: it squares x / scale - e4m3(x / scale) in float, sums them in
 * float within runs of 1024 values and scales by scale^2 (equal to the
 * reference within about 1e-5 relative, plus 1e-24 * scale^2 per value from
 * float underflow; |x / scale| must stay below 1e18). */
double qf_fp8_sqerr_row(const float *x, float scale, int64_t n);
double qf_fp8_sqerr_row_ref(const float *x, float scale, int64_t n);
/* x rounded through E4M3 with a static scale: e4m3(x / s) * s (W8A8 activations). */
void qf_fp8_fake_quant_row(float *x, float scale, int64_t n);

typedef enum qf_fp8_kind {
    QF_FP8_KIND_NONE = 0,       /* no quantization_config */
    QF_FP8_KIND_CT = 1,         /* compressed-tensors float-quantized */
    QF_FP8_KIND_BLOCK = 2,      /* quant_method "fp8" + weight_block_size */
} qf_fp8_kind;

typedef enum qf_fp8_scheme {
    QF_FP8_TENSOR = 0,
    QF_FP8_CHANNEL = 1,
    QF_FP8_BLOCK = 2,
} qf_fp8_scheme;

const char *qf_fp8_scheme_name(qf_fp8_scheme s); /* "tensor", "channel", "block" */

typedef struct qf_fp8_config {
    qf_fp8_kind kind;
    int64_t block_rows, block_cols; /* block scheme: rows x cols of one scale (128 x 128) */
    int static_input;               /* config says static input activations (informative) */
} qf_fp8_config;

/* Read config.json's quantization_config. Absent -> kind NONE and 0. An
 * unknown quant_method / format / strategy -> QF_EUNSUPPORTED "cfg_path: ...". */
int qf_fp8_config_read(const qf_json *cfg, const char *cfg_path, qf_fp8_config *c, qf_err *err);

/* 1 if `name` is a scale tensor of an FP8 checkpoint (weight_scale,
 * weight_scale_inv, input_scale, k_scale, v_scale), not a weight. */
int qf_fp8_is_scale_name(const char *name);

/* One FP8 weight with its scales read into memory. */
typedef struct qf_fp8_weight {
    const st_tensor *w;          /* F8_E4M3 [n_out, n_in] */
    int64_t n_out, n_in;
    qf_fp8_scheme scheme;
    int64_t block_rows, block_cols, n_block_cols; /* block scheme */
    float *scale;                /* owned: 1, n_out, or ceil(out/br)*ceil(in/bc) values */
    float input_scale;           /* 0 when the checkpoint has none */
} qf_fp8_weight;

/* Find and validate w's scale tensors in st (shapes, dtypes, finite > 0).
 * `where` names the file/directory in messages. */
int qf_fp8_weight_bind(const st_model *st, const qf_fp8_config *c, const st_tensor *w, const char *where,
                       qf_fp8_weight *fw, qf_err *err);
void qf_fp8_weight_free(qf_fp8_weight *fw);
/* Scale of element (row, col). */
static inline float qf_fp8_scale_at(const qf_fp8_weight *fw, int64_t row, int64_t col) {
    switch (fw->scheme) {
    case QF_FP8_TENSOR: return fw->scale[0];
    case QF_FP8_CHANNEL: return fw->scale[row];
    default: return fw->scale[(row / fw->block_rows) * fw->n_block_cols + col / fw->block_cols];
    }
}
/* Row `row` of the dequantized weight: out[c] = scale(row, c) * e4m3(codes[c]);
 * codes is that row's n_in bytes. */
void qf_fp8_dequant_row(const qf_fp8_weight *fw, int64_t row, const uint8_t *codes, float *out);

/* Read a scalar/vector of n floats stored as F32/F16/BF16 (unaligned ok). */
int qf_fp8_read_floats(const st_tensor *t, float *out, uint64_t n);

#endif
