/* arch.c - architecture table and tensor-name rules (see arch.h).
 *
 * Facts from llama.cpp convert_hf_to_gguf.py (gguf-py 0.15, the oracle
 * version): LlamaModel is registered for LlamaForCausalLM and
 * MistralForCausalLM (both "llama"), undoes HF's Q/K permutation and writes
 * vocab_size, rope.dimension_count and linear rope scaling; Qwen2Model
 * ("qwen2") keeps Q/K as they are, has q/k/v biases and writes yarn rope
 * scaling; Qwen3 ("qwen3") is Qwen2 plus per-head q/k RMSNorm weights.
 */
#include "arch.h"

#include <stdio.h>
#include <string.h>

/* ---------------- tensor rules (gguf-py TensorNameMap) ----------------
 * Shapes are HF's row-major shapes: a Linear weight is [out, in]. */
#define V QF_DIM_VOCAB
#define E QF_DIM_EMBD
#define F QF_DIM_FF
#define Q QF_DIM_Q
#define K QF_DIM_KV
#define H QF_DIM_HEAD
#define N QF_DIM_NONE
#define ALWAYS QF_RULE_ALWAYS
#define OPTIONAL QF_RULE_OPTIONAL

static const qf_tensor_rule rules[] = {
    /* hf pattern                                   gguf pattern              shape  permute          only_if            required_if */
    {"model.embed_tokens.weight",                   "token_embd.weight",      {V, E}, QF_PERMUTE_NONE, 0,                 ALWAYS},
    {"model.norm.weight",                           "output_norm.weight",     {E, N}, QF_PERMUTE_NONE, 0,                 ALWAYS},
    /* required unless tie_word_embeddings (checked by the converter) */
    {"lm_head.weight",                              "output.weight",          {V, E}, QF_PERMUTE_NONE, 0,                 OPTIONAL},
    {"model.layers.#.input_layernorm.weight",       "blk.#.attn_norm.weight", {E, N}, QF_PERMUTE_NONE, 0,                 ALWAYS},
    {"model.layers.#.self_attn.q_proj.weight",      "blk.#.attn_q.weight",    {Q, E}, QF_PERMUTE_Q,    0,                 ALWAYS},
    {"model.layers.#.self_attn.k_proj.weight",      "blk.#.attn_k.weight",    {K, E}, QF_PERMUTE_K,    0,                 ALWAYS},
    {"model.layers.#.self_attn.v_proj.weight",      "blk.#.attn_v.weight",    {K, E}, QF_PERMUTE_NONE, 0,                 ALWAYS},
    {"model.layers.#.self_attn.o_proj.weight",      "blk.#.attn_output.weight", {E, Q}, QF_PERMUTE_NONE, 0,               ALWAYS},
    {"model.layers.#.self_attn.q_proj.bias",        "blk.#.attn_q.bias",      {Q, N}, QF_PERMUTE_Q,    0,                 QF_ARCH_QKV_BIAS},
    {"model.layers.#.self_attn.k_proj.bias",        "blk.#.attn_k.bias",      {K, N}, QF_PERMUTE_K,    0,                 QF_ARCH_QKV_BIAS},
    {"model.layers.#.self_attn.v_proj.bias",        "blk.#.attn_v.bias",      {K, N}, QF_PERMUTE_NONE, 0,                 QF_ARCH_QKV_BIAS},
    {"model.layers.#.self_attn.o_proj.bias",        "blk.#.attn_output.bias", {E, N}, QF_PERMUTE_NONE, 0,                 OPTIONAL},
    {"model.layers.#.self_attn.q_norm.weight",      "blk.#.attn_q_norm.weight", {H, N}, QF_PERMUTE_NONE, QF_ARCH_QK_NORM, ALWAYS},
    {"model.layers.#.self_attn.k_norm.weight",      "blk.#.attn_k_norm.weight", {H, N}, QF_PERMUTE_NONE, QF_ARCH_QK_NORM, ALWAYS},
    {"model.layers.#.post_attention_layernorm.weight", "blk.#.ffn_norm.weight", {E, N}, QF_PERMUTE_NONE, 0,               ALWAYS},
    {"model.layers.#.mlp.gate_proj.weight",         "blk.#.ffn_gate.weight",  {F, E}, QF_PERMUTE_NONE, 0,                 ALWAYS},
    {"model.layers.#.mlp.up_proj.weight",           "blk.#.ffn_up.weight",    {F, E}, QF_PERMUTE_NONE, 0,                 ALWAYS},
    {"model.layers.#.mlp.down_proj.weight",         "blk.#.ffn_down.weight",  {E, F}, QF_PERMUTE_NONE, 0,                 ALWAYS},
    {"model.layers.#.mlp.gate_proj.bias",           "blk.#.ffn_gate.bias",    {F, N}, QF_PERMUTE_NONE, 0,                 OPTIONAL},
    {"model.layers.#.mlp.up_proj.bias",             "blk.#.ffn_up.bias",      {F, N}, QF_PERMUTE_NONE, 0,                 OPTIONAL},
    {"model.layers.#.mlp.down_proj.bias",           "blk.#.ffn_down.bias",    {E, N}, QF_PERMUTE_NONE, 0,                 OPTIONAL},
};

#undef V
#undef E
#undef F
#undef Q
#undef K
#undef H
#undef N

const qf_tensor_rule *qf_tensor_rules(uint32_t *n) {
    *n = (uint32_t)(sizeof rules / sizeof rules[0]);
    return rules;
}

/* ---------------- metadata hooks ---------------- */

static int set_u32_key(gguf_writer *w, const qf_arch *a, const char *suffix, int64_t v, qf_err *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", a->gguf_arch, suffix);
    if (v < 0 || v > UINT32_MAX) return qf_set_err(err, QF_ERANGE, "config.json: %s value %lld out of range", key, (long long)v);
    return gguf_writer_set_u32(w, key, (uint32_t)v) ? qf_set_err(err, QF_ENOMEM, "gguf writer: cannot set %s", key) : 0;
}

static int set_f32_key(gguf_writer *w, const qf_arch *a, const char *suffix, double v, qf_err *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", a->gguf_arch, suffix);
    return gguf_writer_set_f32(w, key, (float)v) ? qf_set_err(err, QF_ENOMEM, "gguf writer: cannot set %s", key) : 0;
}

static int set_str_key(gguf_writer *w, const qf_arch *a, const char *suffix, const char *v, qf_err *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", a->gguf_arch, suffix);
    return gguf_writer_set_str(w, key, v) ? qf_set_err(err, QF_ENOMEM, "gguf writer: cannot set %s", key) : 0;
}

/* rope_scaling object with a "factor" and a matching type: returns its token
 * and the factor, or -1. llama.cpp reads rope_scaling["type"] here. */
static int rope_scaling_of_type(const qf_json *cfg, const char *type, double *factor) {
    int rs = qf_json_find(cfg, 0, "rope_scaling");
    if (rs < 0 || qf_json_type_of(cfg, rs) != QF_JSON_OBJECT) return -1;
    int f = qf_json_find(cfg, rs, "factor");
    int t = qf_json_find(cfg, rs, "type");
    if (f < 0 || t < 0 || !qf_json_string_eq(cfg, t, type, strlen(type))) return -1;
    if (qf_json_get_double(cfg, f, factor, NULL)) return -1;
    return rs;
}

/* LlamaModel.set_gguf_parameters */
static int llama_params(const qf_arch *a, const qf_json *cfg, const qf_hparams *hp, gguf_writer *w, qf_err *err) {
    int rc;
    if ((rc = set_u32_key(w, a, "vocab_size", hp->n_vocab, err))) return rc;
    /* "head_dim" in hparams ? head_dim : hidden_size // num_attention_heads */
    int hd = qf_json_find(cfg, 0, "head_dim");
    int64_t rope_dim = hp->n_embd / hp->n_head;
    if (hd >= 0 && !qf_json_is_null(cfg, hd)) rope_dim = hp->head_dim;
    if ((rc = set_u32_key(w, a, "rope.dimension_count", rope_dim, err))) return rc;
    double factor;
    if (rope_scaling_of_type(cfg, "linear", &factor) >= 0) {
        if ((rc = set_str_key(w, a, "rope.scaling.type", "linear", err))) return rc;
        if ((rc = set_f32_key(w, a, "rope.scaling.factor", factor, err))) return rc;
    }
    return 0;
}

/* Qwen2Model.set_gguf_parameters (Qwen3 inherits it) */
static int qwen2_params(const qf_arch *a, const qf_json *cfg, const qf_hparams *hp, gguf_writer *w, qf_err *err) {
    (void)hp;
    double factor;
    int rs = rope_scaling_of_type(cfg, "yarn", &factor);
    if (rs < 0) return 0;
    int rc;
    int64_t orig;
    int o = qf_json_find(cfg, rs, "original_max_position_embeddings");
    if (o < 0 || qf_json_get_int64(cfg, o, &orig, NULL))
        return qf_set_err(err, QF_EFORMAT, "config.json: rope_scaling yarn without original_max_position_embeddings");
    if ((rc = set_str_key(w, a, "rope.scaling.type", "yarn", err))) return rc;
    if ((rc = set_f32_key(w, a, "rope.scaling.factor", factor, err))) return rc;
    return set_u32_key(w, a, "rope.scaling.original_context_length", orig, err);
}

/* ---------------- the table ---------------- */

static const qf_arch archs[] = {
    /* HF class               GGUF arch  flags                                                                   hook */
    {"LlamaForCausalLM",   "llama", QF_ARCH_PERMUTE_QK | QF_ARCH_ROPE_LLAMA3 | QF_ARCH_SPACE_PREFIX, llama_params},
    {"MistralForCausalLM", "llama", QF_ARCH_PERMUTE_QK | QF_ARCH_ROPE_LLAMA3 | QF_ARCH_SPACE_PREFIX, llama_params},
    {"Qwen2ForCausalLM",   "qwen2", QF_ARCH_QKV_BIAS,                                                qwen2_params},
    {"Qwen3ForCausalLM",   "qwen3", QF_ARCH_QK_NORM,                                                 qwen2_params},
};

const qf_arch *qf_arch_find(const char *hf_class) {
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (strcmp(archs[i].hf_class, hf_class) == 0) return &archs[i];
    return NULL;
}

const char *qf_arch_supported_list(void) {
    static char buf[512];
    if (!buf[0]) {
        size_t o = 0;
        for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
            o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s", i ? ", " : "", archs[i].hf_class);
    }
    return buf;
}

/* Match `name` against `pat` ('#' = a decimal block id without sign or
 * leading zeros other than "0"). */
static int match_pattern(const char *pat, const char *name, int64_t *bid) {
    *bid = -1;
    while (*pat) {
        if (*pat == '#') {
            if (*name < '0' || *name > '9') return 0;
            if (name[0] == '0' && name[1] >= '0' && name[1] <= '9') return 0;
            int64_t v = 0;
            while (*name >= '0' && *name <= '9') {
                v = v * 10 + (*name - '0');
                if (v > 1000000) return 0;
                name++;
            }
            *bid = v;
            pat++;
            continue;
        }
        if (*pat != *name) return 0;
        pat++;
        name++;
    }
    return *name == 0;
}

const qf_tensor_rule *qf_arch_map_tensor(const qf_arch *a, const char *hf_name, char *gguf_name, size_t cap,
                                         int64_t *bid) {
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        const qf_tensor_rule *r = &rules[i];
        if ((r->only_if & a->flags) != r->only_if) continue;
        if (!match_pattern(r->hf, hf_name, bid)) continue;
        size_t o = 0;
        for (const char *p = r->gguf; *p && o + 1 < cap; p++) {
            if (*p == '#') o += (size_t)snprintf(gguf_name + o, cap - o, "%lld", (long long)*bid);
            else gguf_name[o++] = *p;
        }
        if (o >= cap) o = cap - 1;
        gguf_name[o] = 0;
        return r;
    }
    return NULL;
}

int64_t qf_dim_value(const qf_hparams *hp, uint8_t dim) {
    switch (dim) {
    case QF_DIM_VOCAB: return hp->n_vocab;
    case QF_DIM_EMBD: return hp->n_embd;
    case QF_DIM_FF: return hp->n_ff;
    case QF_DIM_Q: return hp->n_head * hp->head_dim;
    case QF_DIM_KV: return hp->n_head_kv * hp->head_dim;
    case QF_DIM_HEAD: return hp->head_dim;
    default: return 0;
    }
}

const char *qf_dim_name(uint8_t dim) {
    switch (dim) {
    case QF_DIM_VOCAB: return "vocab_size";
    case QF_DIM_EMBD: return "hidden_size";
    case QF_DIM_FF: return "intermediate_size";
    case QF_DIM_Q: return "num_attention_heads*head_dim";
    case QF_DIM_KV: return "num_key_value_heads*head_dim";
    case QF_DIM_HEAD: return "head_dim";
    default: return "-";
    }
}
