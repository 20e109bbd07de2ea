/* arch.h - the architecture table of qforge-convert: which Hugging Face model
 * classes we convert, what llama.cpp calls them, how their tensors are named
 * and shaped, and the few per-architecture metadata rules.
 *
 * Adding an architecture = one row in `qf_archs` (arch.c), plus at most one
 * small hook for metadata keys that the common code does not write.
 *
 * Tensor names: an HF name like "model.layers.7.self_attn.q_proj.weight" is
 * matched against the pattern "model.layers.#.self_attn.q_proj.weight" ('#'
 * = block id) and becomes "blk.7.attn_q.weight" (gguf-py TensorNameMap).
 */
#ifndef QF_CONVERT_ARCH_H
#define QF_CONVERT_ARCH_H

#include <stdint.h>

#include "gguf.h"
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
} qf_dim;

/* Architecture flags: they switch table rows on and pick the shared rules. */
enum {
    QF_ARCH_PERMUTE_QK = 1u << 0,  /* undo HF's rotate-half Q/K row order (Llama) */
    QF_ARCH_QKV_BIAS = 1u << 1,    /* q/k/v projections carry a bias (Qwen2) */
    QF_ARCH_QK_NORM = 1u << 2,     /* per-head RMSNorm on q and k (Qwen3) */
    QF_ARCH_ROPE_LLAMA3 = 1u << 3, /* rope_scaling.rope_type "llama3" -> rope_freqs.weight */
    QF_ARCH_SPACE_PREFIX = 1u << 4,/* tokenizer_config add_prefix_space -> tokenizer.ggml.add_space_prefix */
};

enum { QF_PERMUTE_NONE = 0, QF_PERMUTE_Q, QF_PERMUTE_K };

/* One HF -> GGUF tensor rule. */
typedef struct qf_tensor_rule {
    const char *hf;         /* pattern, '#' = block id */
    const char *gguf;       /* pattern, '#' = block id */
    uint8_t shape[2];       /* HF row-major shape; shape[1] == QF_DIM_NONE for 1-D */
    uint8_t permute;        /* QF_PERMUTE_* (only when the arch has QF_ARCH_PERMUTE_QK) */
    uint32_t only_if;       /* rule exists only for archs with these flags (0 = all) */
    uint32_t required_if;   /* required for archs with these flags (QF_RULE_ALWAYS = all) */
} qf_tensor_rule;

#define QF_RULE_ALWAYS 0xFFFFFFFFu
#define QF_RULE_OPTIONAL 0u

/* Hyper-parameters the converter needs (from config.json). */
typedef struct qf_hparams {
    int64_t n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_vocab;
    int tie_embeddings;     /* config.json tie_word_embeddings (default 0) */
} qf_hparams;

struct qf_arch;
/* Writes the arch-specific KV pairs after the common ones (Model.set_gguf_parameters). */
typedef int (*qf_arch_params_hook)(const struct qf_arch *a, const qf_json *cfg, const qf_hparams *hp,
                                   gguf_writer *w, qf_err *err);

typedef struct qf_arch {
    const char *hf_class;   /* config.json architectures[0] */
    const char *gguf_arch;  /* general.architecture */
    uint32_t flags;         /* QF_ARCH_* */
    qf_arch_params_hook params;
} qf_arch;

const qf_arch *qf_arch_find(const char *hf_class);
/* "LlamaForCausalLM, MistralForCausalLM, ..." */
const char *qf_arch_supported_list(void);

/* The shared tensor rules; a rule applies to arch `a` when
 * (rule.only_if & a->flags) == rule.only_if. */
const qf_tensor_rule *qf_tensor_rules(uint32_t *n);

/* Match an HF tensor name against the rules of arch `a`. On a match writes
 * the GGUF name (cap bytes), the block id (-1 for global tensors) and returns
 * the rule; NULL if nothing matches. */
const qf_tensor_rule *qf_arch_map_tensor(const qf_arch *a, const char *hf_name, char *gguf_name, size_t cap,
                                         int64_t *bid);

/* Resolve a symbolic dimension. */
int64_t qf_dim_value(const qf_hparams *hp, uint8_t dim);
const char *qf_dim_name(uint8_t dim);

#endif
