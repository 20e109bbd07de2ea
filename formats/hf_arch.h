/* hf_arch.h - Hugging Face checkpoint conventions for the llama family:
 * which model classes (config.json "architectures") we know, what llama.cpp
 * calls them, how their tensors are named and shaped, and how config.json
 * spells the hyper-parameters.
 *
 * This is format knowledge shared by convert/ (HF -> GGUF) and verify/
 * (running an HF directory directly); it writes nothing. The GGUF metadata a
 * converter derives from it lives in convert/arch.c.
 *
 * Tensor names: an HF name like "model.layers.7.self_attn.q_proj.weight" is
 * matched against the pattern "model.layers.#.self_attn.q_proj.weight" ('#'
 * = block id) and becomes "blk.7.attn_q.weight" (gguf-py TensorNameMap).
 */
#ifndef QF_HF_ARCH_H
#define QF_HF_ARCH_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"
#include "qf_error.h"

/* Symbolic dimensions of a tensor shape, resolved from config.json. */
typedef enum qf_dim {
    QF_DIM_NONE = 0,
    QF_DIM_VOCAB,   /* vocab_size */
    QF_DIM_EMBD,    /* hidden_size */
    QF_DIM_FF,      /* intermediate_size */
    QF_DIM_Q,       /* num_attention_heads * head_dim */
    QF_DIM_KV,      /* num_key_value_heads * head_dim */
    QF_DIM_HEAD,    /* head_dim */
    QF_DIM_QKV,     /* (num_attention_heads + 2 * num_key_value_heads) * head_dim: a fused q/k/v */
    QF_DIM_FF2,     /* 2 * intermediate_size: a fused gate/up */
    QF_DIM_EXPERT,  /* num_local_experts */
} qf_dim;

/* Architecture flags: they switch table rows on and pick the shared rules. */
enum {
    QF_ARCH_PERMUTE_QK = 1u << 0,  /* HF stores Q/K rows in rotate-half order; GGUF llama permutes them */
    QF_ARCH_QKV_BIAS = 1u << 1,    /* q/k/v projections carry a bias (Qwen2) */
    QF_ARCH_QK_NORM = 1u << 2,     /* per-head RMSNorm on q and k (Qwen3) */
    QF_ARCH_ROPE_LLAMA3 = 1u << 3, /* rope_scaling.rope_type "llama3" -> rope_freqs.weight */
    QF_ARCH_SPACE_PREFIX = 1u << 4,/* tokenizer_config add_prefix_space -> tokenizer.ggml.add_space_prefix */
    QF_ARCH_GEMMA_FAMILY = 1u << 5,       /* Gemma family: RMSNorm weights stored as w for (1 + w), the converter adds 1;
                                    * embeddings scaled by sqrt(n_embd); output tied (lm_head dropped);
                                    * tie_word_embeddings defaults to true; GELU-tanh gated MLP */
    QF_ARCH_SANDWICH_NORM = 1u << 6, /* Gemma 2: norms after attention and after the MLP too */
    QF_ARCH_NO_HEAD_DIM = 1u << 7, /* config.json head_dim is ignored (Granite): n_embd / n_head */
    QF_ARCH_FUSED = 1u << 8,       /* Phi-3: fused qkv_proj and gate_up_proj instead of q/k/v and gate/up */
    QF_ARCH_MOE = 1u << 9,         /* Mixtral: a router and per-expert w1/w2/w3 instead of the mlp */
};

enum { QF_PERMUTE_NONE = 0, QF_PERMUTE_Q, QF_PERMUTE_K };

/* One HF <-> GGUF tensor rule. An HF pattern with '%' (an expert id) names
 * one expert's matrix; the converter stacks the experts of a block into one
 * 3-D GGUF tensor [n_expert, rows, cols]. */
typedef struct qf_tensor_rule {
    const char *hf;         /* pattern, '#' = block id, '%' = expert id */
    const char *gguf;       /* pattern, '#' = block id */
    uint8_t shape[2];       /* HF row-major shape; shape[1] == QF_DIM_NONE for 1-D */
    uint8_t permute;        /* QF_PERMUTE_* (only when the arch has QF_ARCH_PERMUTE_QK) */
    uint32_t only_if;       /* rule exists only for archs with these flags (0 = all) */
    uint32_t required_if;   /* required for archs with these flags (QF_RULE_ALWAYS = all) */
    uint32_t unless;        /* rule does not exist for archs with any of these flags (0 = none) */
} qf_tensor_rule;

/* Rule r applies to arch flags f. */
static inline int qf_hf_rule_applies(const qf_tensor_rule *r, uint32_t f) {
    return (r->only_if & f) == r->only_if && !(r->unless & f);
}

#define QF_RULE_ALWAYS 0xFFFFFFFFu
#define QF_RULE_OPTIONAL 0u

/* A model class. */
typedef struct qf_hf_arch {
    const char *hf_class;   /* config.json architectures[0] */
    const char *gguf_arch;  /* general.architecture */
    uint32_t flags;         /* QF_ARCH_* */
} qf_hf_arch;

/* The shape hyper-parameters of config.json. */
typedef struct qf_hf_hparams {
    int64_t n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_vocab;
    int64_t n_expert, n_expert_used; /* num_local_experts, num_experts_per_tok (0 without MoE) */
    int tie_embeddings;     /* config.json tie_word_embeddings (default 0) */
} qf_hf_hparams;

const qf_hf_arch *qf_hf_arch_find(const char *hf_class);
/* The i-th known class (table order), NULL past the end. */
const qf_hf_arch *qf_hf_arch_at(size_t i);
/* "LlamaForCausalLM, MistralForCausalLM, ..." */
const char *qf_hf_arch_supported_list(void);

/* The shared tensor rules; a rule applies to arch `a` when
 * (rule.only_if & a->flags) == rule.only_if. */
const qf_tensor_rule *qf_hf_tensor_rules(uint32_t *n);

/* Match an HF tensor name against the rules of arch `a`. On a match writes
 * the GGUF name (cap bytes), the block id (-1 for global tensors) and returns
 * the rule; NULL if nothing matches. */
const qf_tensor_rule *qf_hf_map_tensor(const qf_hf_arch *a, const char *hf_name, char *gguf_name, size_t cap,
                                       int64_t *bid);
/* qf_hf_map_tensor that also returns the expert id of an expert rule (-1
 * for the others). */
const qf_tensor_rule *qf_hf_map_tensor_x(const qf_hf_arch *a, const char *hf_name, char *gguf_name, size_t cap,
                                         int64_t *bid, int64_t *xid);
/* 1 when HF tensor `name` is not a weight of arch `a` and is skipped (buffers
 * such as rotary_emb.inv_freq; Gemma's lm_head), 0 otherwise. */
int qf_hf_skip_tensor(const qf_hf_arch *a, const char *name);
/* The HF name of rule r for block bid (the inverse of qf_hf_map_tensor). */
void qf_hf_tensor_name(const qf_tensor_rule *r, int64_t bid, char *buf, size_t cap);

/* Resolve a symbolic dimension. */
int64_t qf_hf_dim_value(const qf_hf_hparams *hp, uint8_t dim);
const char *qf_hf_dim_name(uint8_t dim);

/* ---------------- config.json ---------------- */

/* First present key of a NULL-terminated alias list (even if null), -1 if
 * none: gguf-py find_hparam(). */
int qf_hf_cfg_first(const qf_json *cfg, const char *const *keys);
/* Integer value at token t; t < 0 or null: *present = 0. `what` names the
 * key in the message ("<cfg_path>: <what> is not an integer (line N)"). */
int qf_hf_cfg_int(const qf_json *cfg, const char *cfg_path, int t, const char *what, int64_t *v, int *present,
                  qf_err *err);

/* Read the model class and shape hyper-parameters of a parsed config.json
 * (the path is for messages): architectures[0] must be a known class. */
int qf_hf_config_read(const qf_json *cfg, const char *cfg_path, const qf_hf_arch **arch, qf_hf_hparams *hp,
                      qf_err *err);

/* What else inference needs from config.json, with llama.cpp's defaults
 * where the converter writes no key. */
typedef struct qf_hf_runtime {
    int64_t n_ctx_train;     /* max_position_embeddings | n_ctx (0 if absent) */
    double rms_norm_eps;     /* rms_norm_eps (required) */
    double rope_theta;       /* rope_theta (default 10000) */
    char rope_scaling[32];   /* rope_scaling.type / rope_type, "" when rope_scaling is absent or null */
    double rope_factor;      /* rope_scaling.factor (1 if absent) */
} qf_hf_runtime;
int qf_hf_config_runtime(const qf_json *cfg, const char *cfg_path, qf_hf_runtime *rt, qf_err *err);

/* llama.cpp's llama3 rope scaling factors (the rope_freqs.weight tensor its
 * converter generates), dim/2 values: LlamaModel.generate_extra_tensors of
 * convert_hf_to_gguf.py. Returns 0, or -1 for an odd dim or low == high. */
int qf_llama3_rope_factors(double base, int64_t dim, double factor, double low_freq_factor, double high_freq_factor,
                           double old_context_len, float *out);

/* When config.json asks for llama3 rope scaling (rope_scaling.rope_type
 * "llama3", read as llama.cpp's converter reads it, with its defaults:
 * factor 8, low_freq_factor 1, high_freq_factor 4, top-level
 * original_max_position_embeddings 8192, rope_theta 10000), fill
 * out[0..head_dim/2) and set *present = 1; otherwise *present = 0.
 * Convert writes these values as rope_freqs.weight, and verify uses them for
 * an HF directory, so both see the same frequencies. */
int qf_hf_llama3_rope_freqs(const qf_json *cfg, const char *cfg_path, int64_t head_dim, float *out, int *present,
                            qf_err *err);

/* Phi-3 longrope (rope_scaling type "longrope" or "su"): the long_factor
 * and short_factor lists (malloc'd, *n = rope_dim / 2 values each, as
 * llama.cpp's converter requires) and the attention factor it writes,
 * sqrt(1 + ln(max_pos / orig_max_pos) / ln(orig_max_pos)) when max_pos >
 * orig_max_pos, else 1. No rope_scaling: *present = 0. Another type, a
 * missing or wrong-length list -> QF_EFORMAT / QF_EUNSUPPORTED. */
int qf_hf_longrope(const qf_json *cfg, const char *cfg_path, int64_t rope_dim, float **long_f, float **short_f,
                   int64_t *n, double *attn_factor, int *present, qf_err *err);

#endif
