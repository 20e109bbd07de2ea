/* fp8_write.h - write an FP8 checkpoint in the compressed-tensors
 * "float-quantized" layout vLLM loads (docs/formats.md, "FP8 checkpoints").
 *
 * From a Hugging Face directory (F32/F16/BF16 safetensors), or a GGUF of one
 * in F32/F16/BF16 (tensors renamed back to their HF names, Q/K rows back in
 * HF order; config.json and tokenizer files from hf_dir): every Linear
 * weight of the blocks (q, k, v, o, gate, up, down projections) becomes
 *   X.weight        F8_E4M3 [out, in], code = e4m3(W / scale) (RNE, saturating)
 *   X.weight_scale  source dtype; [1] (tensor), [out, 1] (channel) or
 *                   [ceil(out/128), ceil(in/128)] (block); amax / 448 rounded
 *                   to the source dtype (1 when amax is 0), or with
 *                   QF_FP8_SCALE_MSE the candidate amax / 448 * 2^(k/32),
 *                   k = -16 .. 15, whose round trip has the least squared error
 *   X.input_scale   source dtype [1], max|x| / 448 over the calibration
 *                   tokens (static FP8 only)
 * Everything else (embeddings, norms, lm_head) is copied byte for byte.
 * config.json is the source's with "quantization_config" added; tokenizer
 * and generation files are copied. Shards follow transformers' naming
 * (model.safetensors, or model-0000k-of-0000n.safetensors + index).
 *
 * The output goes to a temp directory next to out_dir renamed at the end: on
 * any failure nothing is left. out_dir must not exist. NaN/Inf weights are
 * refused with the tensor and element named.
 * Memory: one row of the widest tensor as F32 plus the scales (and with MSE
 * 32 error sums per scale); tensors are
 * read through the mapping and released as they are consumed, so the peak is
 * about the largest copied tensor's pages (the embeddings).
 */
#ifndef QF_FP8_WRITE_H
#define QF_FP8_WRITE_H

#include <stddef.h>
#include <stdint.h>

#include "qf_error.h"
#include "fp8.h"

typedef enum qf_fp8_scale_mode {
    QF_FP8_SCALE_AMAX = 0,        /* scale = amax / 448: the largest value maps to 448 */
    QF_FP8_SCALE_MSE = 1,         /* least squared round-trip error of 32 candidates */
} qf_fp8_scale_mode;

typedef struct qf_fp8_write_opts {
    const char *in_dir;           /* HF directory, or an F32/F16/BF16 GGUF file */
    const char *hf_dir;           /* GGUF input: the HF directory whose config.json and
                                   * tokenizer files go with it (the GGUF holds neither) */
    const char *out_dir;
    qf_fp8_scheme scheme;         /* weights: tensor, channel or block (128 x 128) */
    qf_fp8_scale_mode scale_mode; /* how each weight scale is chosen */
    int static_act;               /* 1: FP8 (static input scales), 0: FP8_DYNAMIC */
    /* static_act: max|x| of each Linear's input, by GGUF weight name
     * ("blk.0.attn_q.weight"), from calibration */
    const char *const *act_names;
    const float *act_amax;
    size_t n_act;
    uint64_t max_shard_bytes;     /* 0: 5 GB (transformers' default) */
    /* 1: instead of compressed-tensors, the quant_method "fp8" layout of
     * DeepSeek-V3/Qwen3-FP8 releases (block scheme only: weight_scale_inv,
     * weight_block_size [128, 128], no input scales); for test fixtures */
    int block_fp8_layout;
} qf_fp8_write_opts;

typedef struct qf_fp8_write_result {
    uint64_t n_quantized;         /* Linear weights written as FP8 */
    uint64_t n_kept;              /* tensors copied */
    uint32_t n_shards;
    uint64_t tensor_bytes;        /* sum of the written tensors' bytes */
} qf_fp8_write_result;

/* 1 if the GGUF name is a Linear weight of a block that FP8 quantizes. */
int qf_fp8_is_linear(const char *gguf_name);

int qf_fp8_write(const qf_fp8_write_opts *o, qf_fp8_write_result *res, qf_err *err);

#endif
