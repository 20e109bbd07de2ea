/* hf_arch.c - Hugging Face checkpoint naming and config.json conventions
 * (see hf_arch.h).
 *
 * Facts from llama.cpp convert_hf_to_gguf.py (gguf-py 0.15, the oracle
 * version): LlamaModel is registered for LlamaForCausalLM and
 * MistralForCausalLM (both "llama") and undoes HF's Q/K permutation;
 * Qwen2Model ("qwen2") keeps Q/K as they are and has q/k/v biases; Qwen3
 * ("qwen3") is Qwen2 plus per-head q/k RMSNorm weights. GemmaModel
 * ("gemma") and Gemma2Model ("gemma2") keep Q/K, add 1 to every norm weight
 * and drop lm_head; Gemma 2's post_attention_layernorm is the attention
 * output's norm and pre_feedforward_layernorm the MLP input's. GraniteModel
 * ("granite") is LlamaModel without head_dim.
 */
#include "hf_arch.h"
#include "qf_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------- tensor rules (gguf-py TensorNameMap) ----------------
 * Shapes are HF's row-major shapes: a Linear weight is [out, in]. */
#define V QF_DIM_VOCAB
#define E QF_DIM_EMBD
#define F QF_DIM_FF
#define Q QF_DIM_Q
#define K QF_DIM_KV
#define H QF_DIM_HEAD
#define QKV QF_DIM_QKV
#define F2 QF_DIM_FF2
#define X QF_DIM_EXPERT
#define FUSED QF_ARCH_FUSED
#define MOE QF_ARCH_MOE
#define N QF_DIM_NONE
#define ALWAYS QF_RULE_ALWAYS
#define OPTIONAL QF_RULE_OPTIONAL

/* rows leave trailing fields they do not need (unless) at zero */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const qf_tensor_rule rules[] = {
    /* hf pattern                                   gguf pattern              shape  permute          only_if            required_if */
    {"model.embed_tokens.weight",                   "token_embd.weight",      {V, E}, QF_PERMUTE_NONE, 0,                 ALWAYS},
    {"model.norm.weight",                           "output_norm.weight",     {E, N}, QF_PERMUTE_NONE, 0,                 ALWAYS},
    /* required unless tie_word_embeddings (checked by the converter) */
    {"lm_head.weight",                              "output.weight",          {V, E}, QF_PERMUTE_NONE, 0,                 OPTIONAL, QF_ARCH_GEMMA_FAMILY},
    {"model.layers.#.input_layernorm.weight",       "blk.#.attn_norm.weight", {E, N}, QF_PERMUTE_NONE, 0,                 ALWAYS},
    {"model.layers.#.self_attn.q_proj.weight",      "blk.#.attn_q.weight",    {Q, E}, QF_PERMUTE_Q,    0,                 ALWAYS, FUSED},
    {"model.layers.#.self_attn.k_proj.weight",      "blk.#.attn_k.weight",    {K, E}, QF_PERMUTE_K,    0,                 ALWAYS, FUSED},
    {"model.layers.#.self_attn.v_proj.weight",      "blk.#.attn_v.weight",    {K, E}, QF_PERMUTE_NONE, 0,                 ALWAYS, FUSED},
    {"model.layers.#.self_attn.o_proj.weight",      "blk.#.attn_output.weight", {E, Q}, QF_PERMUTE_NONE, 0,               ALWAYS},
    {"model.layers.#.self_attn.q_proj.bias",        "blk.#.attn_q.bias",      {Q, N}, QF_PERMUTE_Q,    0,                 QF_ARCH_QKV_BIAS},
    {"model.layers.#.self_attn.k_proj.bias",        "blk.#.attn_k.bias",      {K, N}, QF_PERMUTE_K,    0,                 QF_ARCH_QKV_BIAS},
    {"model.layers.#.self_attn.v_proj.bias",        "blk.#.attn_v.bias",      {K, N}, QF_PERMUTE_NONE, 0,                 QF_ARCH_QKV_BIAS},
    {"model.layers.#.self_attn.o_proj.bias",        "blk.#.attn_output.bias", {E, N}, QF_PERMUTE_NONE, 0,                 OPTIONAL},
    {"model.layers.#.self_attn.q_norm.weight",      "blk.#.attn_q_norm.weight", {H, N}, QF_PERMUTE_NONE, QF_ARCH_QK_NORM, ALWAYS},
    {"model.layers.#.self_attn.k_norm.weight",      "blk.#.attn_k_norm.weight", {H, N}, QF_PERMUTE_NONE, QF_ARCH_QK_NORM, ALWAYS},
    {"model.layers.#.post_attention_layernorm.weight", "blk.#.ffn_norm.weight", {E, N}, QF_PERMUTE_NONE, 0,               ALWAYS, QF_ARCH_SANDWICH_NORM},
    /* Gemma 2: post_attention_layernorm is a norm of the attention output, pre_feedforward_layernorm the MLP's input norm */
    {"model.layers.#.post_attention_layernorm.weight", "blk.#.post_attention_norm.weight", {E, N}, QF_PERMUTE_NONE, QF_ARCH_SANDWICH_NORM, ALWAYS},
    {"model.layers.#.pre_feedforward_layernorm.weight", "blk.#.ffn_norm.weight", {E, N}, QF_PERMUTE_NONE, QF_ARCH_SANDWICH_NORM, ALWAYS},
    {"model.layers.#.post_feedforward_layernorm.weight", "blk.#.post_ffw_norm.weight", {E, N}, QF_PERMUTE_NONE, QF_ARCH_SANDWICH_NORM, ALWAYS},
    {"model.layers.#.mlp.gate_proj.weight",         "blk.#.ffn_gate.weight",  {F, E}, QF_PERMUTE_NONE, 0,                 ALWAYS, FUSED | MOE},
    {"model.layers.#.mlp.up_proj.weight",           "blk.#.ffn_up.weight",    {F, E}, QF_PERMUTE_NONE, 0,                 ALWAYS, FUSED | MOE},
    {"model.layers.#.mlp.down_proj.weight",         "blk.#.ffn_down.weight",  {E, F}, QF_PERMUTE_NONE, 0,                 ALWAYS, MOE},
    {"model.layers.#.mlp.gate_proj.bias",           "blk.#.ffn_gate.bias",    {F, N}, QF_PERMUTE_NONE, 0,                 OPTIONAL},
    {"model.layers.#.mlp.up_proj.bias",             "blk.#.ffn_up.bias",      {F, N}, QF_PERMUTE_NONE, 0,                 OPTIONAL},
    {"model.layers.#.mlp.down_proj.bias",           "blk.#.ffn_down.bias",    {E, N}, QF_PERMUTE_NONE, 0,                 OPTIONAL},
    /* Phi-3 (Phi3MiniModel): q/k/v and gate/up fused; gate is the first half of gate_up */
    {"model.layers.#.self_attn.qkv_proj.weight",    "blk.#.attn_qkv.weight",  {QKV, E}, QF_PERMUTE_NONE, FUSED,           ALWAYS},
    {"model.layers.#.mlp.gate_up_proj.weight",      "blk.#.ffn_up.weight",    {F2, E}, QF_PERMUTE_NONE, FUSED,            ALWAYS},
    /* Mixtral: router and experts (w1 = gate, w2 = down, w3 = up) */
    {"model.layers.#.block_sparse_moe.gate.weight", "blk.#.ffn_gate_inp.weight", {X, E}, QF_PERMUTE_NONE, MOE,            ALWAYS},
    {"model.layers.#.block_sparse_moe.experts.%.w1.weight", "blk.#.ffn_gate_exps.weight", {F, E}, QF_PERMUTE_NONE, MOE,   ALWAYS},
    {"model.layers.#.block_sparse_moe.experts.%.w2.weight", "blk.#.ffn_down_exps.weight", {E, F}, QF_PERMUTE_NONE, MOE,   ALWAYS},
    {"model.layers.#.block_sparse_moe.experts.%.w3.weight", "blk.#.ffn_up_exps.weight",   {F, E}, QF_PERMUTE_NONE, MOE,   ALWAYS},
};
#pragma GCC diagnostic pop

#undef V
#undef E
#undef F
#undef Q
#undef K
#undef H
#undef QKV
#undef F2
#undef X
#undef FUSED
#undef MOE
#undef N

const qf_tensor_rule *qf_hf_tensor_rules(uint32_t *n) {
    *n = (uint32_t)(sizeof rules / sizeof rules[0]);
    return rules;
}

/* ---------------- the table ---------------- */

static const qf_hf_arch archs[] = {
    /* HF class               GGUF arch  flags */
    {"LlamaForCausalLM",   "llama", QF_ARCH_PERMUTE_QK | QF_ARCH_ROPE_LLAMA3 | QF_ARCH_SPACE_PREFIX},
    {"MistralForCausalLM", "llama", QF_ARCH_PERMUTE_QK | QF_ARCH_ROPE_LLAMA3 | QF_ARCH_SPACE_PREFIX},
    {"Qwen2ForCausalLM",   "qwen2", QF_ARCH_QKV_BIAS},
    {"Qwen3ForCausalLM",   "qwen3", QF_ARCH_QK_NORM},
    {"GemmaForCausalLM",   "gemma", QF_ARCH_GEMMA_FAMILY},
    {"Gemma2ForCausalLM",  "gemma2", QF_ARCH_GEMMA_FAMILY | QF_ARCH_SANDWICH_NORM},
    {"GraniteForCausalLM", "granite", QF_ARCH_PERMUTE_QK | QF_ARCH_ROPE_LLAMA3 | QF_ARCH_SPACE_PREFIX | QF_ARCH_NO_HEAD_DIM},
    {"Phi3ForCausalLM",    "phi3",  QF_ARCH_FUSED},
    {"MixtralForCausalLM", "llama", QF_ARCH_PERMUTE_QK | QF_ARCH_SPACE_PREFIX | QF_ARCH_MOE},
};

const qf_hf_arch *qf_hf_arch_at(size_t i) { return i < sizeof archs / sizeof archs[0] ? &archs[i] : NULL; }

const qf_hf_arch *qf_hf_arch_find(const char *hf_class) {
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (strcmp(archs[i].hf_class, hf_class) == 0) return &archs[i];
    return NULL;
}

const char *qf_hf_arch_supported_list(void) {
    static char buf[512];
    if (!buf[0]) {
        size_t o = 0;
        for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
            o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s", i ? ", " : "", archs[i].hf_class);
    }
    return buf;
}

int qf_hf_skip_tensor(const qf_hf_arch *a, const char *name) {
    if (qf_ends_with(name, ".attention.masked_bias") || qf_ends_with(name, ".attention.bias") ||
        qf_ends_with(name, ".rotary_emb.inv_freq"))
        return 1;
    /* llama.cpp's Gemma converters drop lm_head (always the tied embedding) */
    return (a->flags & QF_ARCH_GEMMA_FAMILY) && strcmp(name, "lm_head.weight") == 0;
}

/* Match `name` against `pat` ('#' = a decimal block id without sign or
 * leading zeros other than "0"). */
static int match_pattern(const char *pat, const char *name, int64_t *bid, int64_t *xid) {
    *bid = -1;
    *xid = -1;
    while (*pat) {
        if (*pat == '#' || *pat == '%') {
            if (*name < '0' || *name > '9') return 0;
            if (name[0] == '0' && name[1] >= '0' && name[1] <= '9') return 0;
            int64_t v = 0;
            while (*name >= '0' && *name <= '9') {
                v = v * 10 + (*name - '0');
                if (v > 1000000) return 0;
                name++;
            }
            *(*pat == '#' ? bid : xid) = v;
            pat++;
            continue;
        }
        if (*pat != *name) return 0;
        pat++;
        name++;
    }
    return *name == 0;
}

const qf_tensor_rule *qf_hf_map_tensor(const qf_hf_arch *a, const char *hf_name, char *gguf_name, size_t cap,
                                       int64_t *bid) {
    int64_t xid;
    return qf_hf_map_tensor_x(a, hf_name, gguf_name, cap, bid, &xid);
}

const qf_tensor_rule *qf_hf_map_tensor_x(const qf_hf_arch *a, const char *hf_name, char *gguf_name, size_t cap,
                                         int64_t *bid, int64_t *xid) {
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        const qf_tensor_rule *r = &rules[i];
        if (!qf_hf_rule_applies(r, a->flags)) continue;
        if (!match_pattern(r->hf, hf_name, bid, xid)) continue;
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

int64_t qf_hf_dim_value(const qf_hf_hparams *hp, uint8_t dim) {
    switch (dim) {
    case QF_DIM_VOCAB: return hp->n_vocab;
    case QF_DIM_EMBD: return hp->n_embd;
    case QF_DIM_FF: return hp->n_ff;
    case QF_DIM_Q: return hp->n_head * hp->head_dim;
    case QF_DIM_KV: return hp->n_head_kv * hp->head_dim;
    case QF_DIM_HEAD: return hp->head_dim;
    case QF_DIM_QKV: return (hp->n_head + 2 * hp->n_head_kv) * hp->head_dim;
    case QF_DIM_FF2: return 2 * hp->n_ff;
    case QF_DIM_EXPERT: return hp->n_expert;
    default: return 0;
    }
}

const char *qf_hf_dim_name(uint8_t dim) {
    switch (dim) {
    case QF_DIM_VOCAB: return "vocab_size";
    case QF_DIM_EMBD: return "hidden_size";
    case QF_DIM_FF: return "intermediate_size";
    case QF_DIM_Q: return "num_attention_heads*head_dim";
    case QF_DIM_KV: return "num_key_value_heads*head_dim";
    case QF_DIM_HEAD: return "head_dim";
    case QF_DIM_QKV: return "(num_attention_heads+2*num_key_value_heads)*head_dim";
    case QF_DIM_FF2: return "2*intermediate_size";
    case QF_DIM_EXPERT: return "num_local_experts";
    default: return "-";
    }
}

void qf_hf_tensor_name(const qf_tensor_rule *r, int64_t bid, char *buf, size_t cap) {
    size_t o = 0;
    if (cap == 0) return;
    for (const char *p = r->hf; *p && o + 1 < cap; p++) {
        if (*p == '#') o += (size_t)snprintf(buf + o, cap - o, "%lld", (long long)bid);
        else buf[o++] = *p;
    }
    if (o >= cap) o = cap - 1;
    buf[o] = 0;
}

/* ---------------- config.json ---------------- */

int qf_hf_cfg_first(const qf_json *cfg, const char *const *keys) {
    for (; *keys; keys++) {
        int t = qf_json_find(cfg, 0, *keys);
        if (t >= 0) return t;
    }
    return -1;
}

int qf_hf_cfg_int(const qf_json *cfg, const char *cfg_path, int t, const char *what, int64_t *v, int *present,
                  qf_err *err) {
    *present = 0;
    if (t < 0 || qf_json_is_null(cfg, t)) return 0;
    if (qf_json_type_of(cfg, t) != QF_JSON_NUMBER || qf_json_get_int64(cfg, t, v, NULL))
        return qf_set_err(err, QF_EFORMAT, "%s: %s is not an integer (line %u)", cfg_path, what, qf_json_line(cfg, t));
    *present = 1;
    return 0;
}

static int cfg_required_int(const qf_json *cfg, const char *cfg_path, const char *const *keys, int64_t *v,
                            qf_err *err) {
    int present, rc = qf_hf_cfg_int(cfg, cfg_path, qf_hf_cfg_first(cfg, keys), keys[0], v, &present, err);
    if (rc) return rc;
    if (!present) return qf_set_err(err, QF_EFORMAT, "%s: missing %s", cfg_path, keys[0]);
    if (*v <= 0) return qf_set_err(err, QF_EFORMAT, "%s: %s must be positive, got %lld", cfg_path, keys[0], (long long)*v);
    return 0;
}

int qf_hf_config_read(const qf_json *cfg, const char *cfg_path, const qf_hf_arch **arch, qf_hf_hparams *hp,
                      qf_err *err) {
    int rc;
    memset(hp, 0, sizeof *hp);
    *arch = NULL;
    if (qf_json_type_of(cfg, 0) != QF_JSON_OBJECT)
        return qf_set_err(err, QF_EFORMAT, "%s: top level is not a json object", cfg_path);
    int archs_tok = qf_json_find(cfg, 0, "architectures");
    qf_json_iter it;
    int first;
    char cls[128] = "";
    if (archs_tok < 0 || qf_json_iter_begin(&it, cfg, archs_tok) || qf_json_type_of(cfg, archs_tok) != QF_JSON_ARRAY ||
        !qf_json_iter_element(&it, &first) || qf_json_get_string_buf(cfg, first, cls, sizeof cls, NULL, NULL))
        return qf_set_err(err, QF_EFORMAT, "%s: no \"architectures\" list naming the model class", cfg_path);
    *arch = qf_hf_arch_find(cls);
    if (!*arch)
        return qf_set_err(err, QF_EUNSUPPORTED, "%s: architecture '%s' is not supported (supported: %s)", cfg_path,
                          cls, qf_hf_arch_supported_list());

    static const char *const k_layer[] = {"n_layers", "num_hidden_layers", "n_layer", "num_layers", NULL};
    static const char *const k_embd[] = {"hidden_size", "n_embd", NULL};
    static const char *const k_ff[] = {"intermediate_size", "n_inner", NULL};
    static const char *const k_head[] = {"num_attention_heads", "n_head", NULL};
    static const char *const k_vocab[] = {"vocab_size", NULL};
    if ((rc = cfg_required_int(cfg, cfg_path, k_layer, &hp->n_layer, err))) return rc;
    if ((rc = cfg_required_int(cfg, cfg_path, k_embd, &hp->n_embd, err))) return rc;
    if ((rc = cfg_required_int(cfg, cfg_path, k_ff, &hp->n_ff, err))) return rc;
    if ((rc = cfg_required_int(cfg, cfg_path, k_head, &hp->n_head, err))) return rc;
    if ((rc = cfg_required_int(cfg, cfg_path, k_vocab, &hp->n_vocab, err))) return rc;
    int present;
    if ((rc = qf_hf_cfg_int(cfg, cfg_path, qf_json_find(cfg, 0, "num_key_value_heads"), "num_key_value_heads",
                            &hp->n_head_kv, &present, err)))
        return rc;
    if (!present) hp->n_head_kv = hp->n_head;
    if ((rc = qf_hf_cfg_int(cfg, cfg_path, qf_json_find(cfg, 0, "head_dim"), "head_dim", &hp->head_dim, &present, err)))
        return rc;
    if ((*arch)->flags & QF_ARCH_NO_HEAD_DIM) present = 0;
    if (!present) {
        if (hp->n_embd % hp->n_head)
            return qf_set_err(err, QF_EFORMAT, "%s: hidden_size %lld is not a multiple of num_attention_heads %lld",
                              cfg_path, (long long)hp->n_embd, (long long)hp->n_head);
        hp->head_dim = hp->n_embd / hp->n_head;
    }
    if (hp->n_head_kv <= 0 || hp->head_dim <= 0)
        return qf_set_err(err, QF_EFORMAT, "%s: %s %lld must be positive", cfg_path,
                          hp->n_head_kv <= 0 ? "num_key_value_heads" : "head_dim",
                          (long long)(hp->n_head_kv <= 0 ? hp->n_head_kv : hp->head_dim));
    if (hp->n_layer > 100000) {
        const char *const *k = k_layer;
        while (k[1] && qf_json_find(cfg, 0, *k) < 0) k++;
        return qf_set_err(err, QF_EFORMAT, "%s: %s %lld is too large for any model", cfg_path, *k,
                          (long long)hp->n_layer);
    }
    /* each count and every width sized from them fits 2^40 (no model comes near) */
    const int64_t lim = (int64_t)1 << 40;
    const struct { const char *key; int64_t v; } big[] = {
        {k_embd[0], hp->n_embd}, {k_ff[0], hp->n_ff},
        {k_head[0], hp->n_head}, {k_vocab[0], hp->n_vocab}, {"num_key_value_heads", hp->n_head_kv},
        {"head_dim", hp->head_dim}};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++)
        if (big[i].v > lim)
            return qf_set_err(err, QF_EFORMAT, "%s: %s %lld is too large for any model", cfg_path, big[i].key,
                              (long long)big[i].v);
    /* per-head buffers (RoPE tables) are sized from head_dim before any tensor is seen */
    if (hp->head_dim > 65536)
        return qf_set_err(err, QF_EFORMAT, "%s: head_dim %lld is too large for any model (at most 65536)", cfg_path,
                          (long long)hp->head_dim);
    if (hp->head_dim > lim / hp->n_head || hp->head_dim > lim / hp->n_head_kv)
        return qf_set_err(err, QF_EFORMAT, "%s: %s %lld times head_dim %lld is too large for any model", cfg_path,
                          hp->head_dim > lim / hp->n_head ? "num_attention_heads" : "num_key_value_heads",
                          (long long)(hp->head_dim > lim / hp->n_head ? hp->n_head : hp->n_head_kv),
                          (long long)hp->head_dim);
    if ((*arch)->flags & QF_ARCH_MOE) {
        static const char *const k_exp[] = {"num_local_experts", NULL};
        static const char *const k_used[] = {"num_experts_per_tok", NULL};
        if ((rc = cfg_required_int(cfg, cfg_path, k_exp, &hp->n_expert, err))) return rc;
        if ((rc = cfg_required_int(cfg, cfg_path, k_used, &hp->n_expert_used, err))) return rc;
        if (hp->n_expert > 4096 || hp->n_expert_used > hp->n_expert)
            return qf_set_err(err, QF_EFORMAT, "%s: num_experts_per_tok %lld / num_local_experts %lld is not a valid MoE",
                              cfg_path, (long long)hp->n_expert_used, (long long)hp->n_expert);
    }
    int tie = qf_json_find(cfg, 0, "tie_word_embeddings");
    hp->tie_embeddings = ((*arch)->flags & QF_ARCH_GEMMA_FAMILY) != 0; /* the HF config class default */
    if (tie >= 0 && qf_json_type_of(cfg, tie) == QF_JSON_BOOL) qf_json_get_bool(cfg, tie, &hp->tie_embeddings, NULL);
    return 0;
}

static int cfg_double(const qf_json *cfg, const char *cfg_path, int obj, const char *key, double *v, int *present,
                      qf_err *err) {
    int t = qf_json_find(cfg, obj, key);
    *present = 0;
    if (t < 0 || qf_json_is_null(cfg, t)) return 0;
    if (qf_json_type_of(cfg, t) != QF_JSON_NUMBER || qf_json_get_double(cfg, t, v, NULL))
        return qf_set_err(err, QF_EFORMAT, "%s: %s is not a number (line %u)", cfg_path, key, qf_json_line(cfg, t));
    *present = 1;
    return 0;
}

int qf_hf_config_runtime(const qf_json *cfg, const char *cfg_path, qf_hf_runtime *rt, qf_err *err) {
    static const char *const k_ctx[] = {"max_position_embeddings", "n_ctx", NULL};
    int rc, present;
    memset(rt, 0, sizeof *rt);
    rt->rope_theta = 10000.0;
    rt->rope_factor = 1.0;
    if ((rc = qf_hf_cfg_int(cfg, cfg_path, qf_hf_cfg_first(cfg, k_ctx), k_ctx[0], &rt->n_ctx_train, &present, err)))
        return rc;
    if ((rc = cfg_double(cfg, cfg_path, 0, "rms_norm_eps", &rt->rms_norm_eps, &present, err))) return rc;
    if (!present) return qf_set_err(err, QF_EFORMAT, "%s: missing rms_norm_eps", cfg_path);
    if (!(rt->rms_norm_eps >= 0.0)) return qf_set_err(err, QF_EFORMAT, "%s: rms_norm_eps is negative", cfg_path);
    if ((rc = cfg_double(cfg, cfg_path, 0, "rope_theta", &rt->rope_theta, &present, err))) return rc;
    if (!(rt->rope_theta > 0.0)) return qf_set_err(err, QF_EFORMAT, "%s: rope_theta must be positive", cfg_path);
    int rs = qf_json_find(cfg, 0, "rope_scaling");
    if (rs < 0 || qf_json_is_null(cfg, rs)) return 0;
    if (qf_json_type_of(cfg, rs) != QF_JSON_OBJECT)
        return qf_set_err(err, QF_EFORMAT, "%s: rope_scaling is not an object (line %u)", cfg_path, qf_json_line(cfg, rs));
    /* llama.cpp reads rope_scaling["type"]; newer configs say "rope_type" */
    int t = qf_json_find(cfg, rs, "type");
    if (t < 0) t = qf_json_find(cfg, rs, "rope_type");
    if (t >= 0 && qf_json_get_string_buf(cfg, t, rt->rope_scaling, sizeof rt->rope_scaling, NULL, NULL))
        return qf_set_err(err, QF_EFORMAT, "%s: rope_scaling type is not a short string (line %u)", cfg_path,
                          qf_json_line(cfg, t));
    for (char *p = rt->rope_scaling; *p; p++) *p = (char)((*p >= 'A' && *p <= 'Z') ? *p - 'A' + 'a' : *p);
    /* every scaling number given must be a positive number */
    static const char *const k_pos[] = {"factor", "low_freq_factor", "high_freq_factor",
                                        "original_max_position_embeddings", NULL};
    for (int i = 0; k_pos[i]; i++) {
        double x = 0.0;
        if ((rc = cfg_double(cfg, cfg_path, rs, k_pos[i], &x, &present, err))) return rc;
        if (present && !(x > 0.0 && x < 1e300))
            return qf_set_err(err, QF_EFORMAT, "%s: rope_scaling %s is %g; it must be positive", cfg_path, k_pos[i], x);
        if (present && i == 0) rt->rope_factor = x;
    }
    return 0;
}

/* ---------------- llama3 rope factors ----------------
 * LlamaModel.generate_extra_tensors computes in float32 torch arithmetic:
 *   freqs = 1 / base ** (arange(0, dim, 2) / dim)
 *   wavelen = 2*pi / freq; < high_freq_wavelen -> 1; > low_freq_wavelen -> factor;
 *   else smooth = (old_ctx / wavelen - low) / (high - low); 1 / ((1 - smooth) / factor + smooth)
 * We follow the float32 steps; pow is evaluated in double and rounded once. */
int qf_llama3_rope_factors(double base, int64_t dim, double factor, double low_freq_factor, double high_freq_factor,
                           double old_context_len, float *out) {
    if (dim <= 0 || dim % 2) return -1;
    float low_wavelen = (float)(old_context_len / low_freq_factor);
    float high_wavelen = (float)(old_context_len / high_freq_factor);
    if (low_wavelen == high_wavelen) return -1;
    for (int64_t i = 0; i < dim / 2; i++) {
        float e = (float)(2 * i) / (float)dim;
        float p = (float)pow((double)(float)base, (double)e);
        float freq = 1.0f / p;
        float wavelen = (float)(2.0 * M_PI) / freq;
        if (wavelen < high_wavelen) {
            out[i] = 1.0f;
        } else if (wavelen > low_wavelen) {
            out[i] = (float)factor;
        } else {
            float smooth = ((float)old_context_len / wavelen - (float)low_freq_factor) /
                           (float)(high_freq_factor - low_freq_factor);
            out[i] = 1.0f / ((1.0f - smooth) / (float)factor + smooth);
        }
    }
    return 0;
}

int qf_hf_llama3_rope_freqs(const qf_json *cfg, const char *cfg_path, int64_t head_dim, float *out, int *present,
                            qf_err *err) {
    *present = 0;
    int rs = qf_json_find(cfg, 0, "rope_scaling");
    if (rs < 0 || qf_json_type_of(cfg, rs) != QF_JSON_OBJECT || qf_json_size(cfg, rs) == 0) return 0;
    int t = qf_json_find(cfg, rs, "rope_type");
    char type[32] = "";
    if (t < 0 || qf_json_get_string_buf(cfg, t, type, sizeof type, NULL, NULL)) return 0;
    for (char *p = type; *p; p++) *p = (char)((*p >= 'A' && *p <= 'Z') ? *p - 'A' + 'a' : *p);
    if (strcmp(type, "llama3") != 0) return 0;
    double base = 10000.0, factor = 8.0, low = 1.0, high = 4.0, old_ctx = 8192.0;
    if ((t = qf_json_find(cfg, 0, "rope_theta")) >= 0) qf_json_get_double(cfg, t, &base, NULL);
    if ((t = qf_json_find(cfg, rs, "factor")) >= 0) qf_json_get_double(cfg, t, &factor, NULL);
    if ((t = qf_json_find(cfg, rs, "low_freq_factor")) >= 0) qf_json_get_double(cfg, t, &low, NULL);
    if ((t = qf_json_find(cfg, rs, "high_freq_factor")) >= 0) qf_json_get_double(cfg, t, &high, NULL);
    /* llama.cpp reads the top-level original_max_position_embeddings here */
    if ((t = qf_json_find(cfg, 0, "original_max_position_embeddings")) >= 0) qf_json_get_double(cfg, t, &old_ctx, NULL);
    if (qf_llama3_rope_factors(base, head_dim, factor, low, high, old_ctx, out))
        return qf_set_err(err, QF_EFORMAT, "%s: bad llama3 rope_scaling (head_dim %lld, low/high freq factors %g/%g)",
                          cfg_path, (long long)head_dim, low, high);
    *present = 1;
    return 0;
}

/* ---------------- Phi-3 longrope ---------------- */

/* The number list cfg[rs][key] into a new array of n floats. */
static int float_list(const qf_json *cfg, const char *cfg_path, int rs, const char *key, int64_t n, float **out,
                      qf_err *err) {
    *out = NULL;
    int t = qf_json_find(cfg, rs, key);
    if (t < 0 || qf_json_type_of(cfg, t) != QF_JSON_ARRAY)
        return qf_set_err(err, QF_EFORMAT, "%s: rope_scaling has no %s list", cfg_path, key);
    if ((int64_t)qf_json_size(cfg, t) != n)
        return qf_set_err(err, QF_EFORMAT, "%s: rope_scaling %s has %lld values; head_dim/2 is %lld", cfg_path, key,
                          (long long)qf_json_size(cfg, t), (long long)n);
    float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof *f);
    if (!f) return qf_set_err(err, QF_ENOMEM, "out of memory");
    qf_json_iter it;
    int el, i = 0;
    qf_json_iter_begin(&it, cfg, t);
    while (qf_json_iter_element(&it, &el)) {
        double v;
        if (qf_json_type_of(cfg, el) != QF_JSON_NUMBER || qf_json_get_double(cfg, el, &v, NULL) || !(v > 0.0)) {
            free(f);
            return qf_set_err(err, QF_EFORMAT, "%s: rope_scaling %s[%d] is not a positive number (line %u)", cfg_path,
                              key, i, qf_json_line(cfg, el));
        }
        f[i++] = (float)v;
    }
    *out = f;
    return 0;
}

int qf_hf_longrope(const qf_json *cfg, const char *cfg_path, int64_t rope_dim, float **long_f, float **short_f,
                   int64_t *n, double *attn_factor, int *present, qf_err *err) {
    *present = 0;
    *long_f = *short_f = NULL;
    *n = rope_dim / 2;
    *attn_factor = 1.0;
    int rs = qf_json_find(cfg, 0, "rope_scaling");
    if (rs < 0 || qf_json_is_null(cfg, rs)) return 0;
    char type[32] = "";
    int t = qf_json_find(cfg, rs, "type");
    if (qf_json_type_of(cfg, rs) != QF_JSON_OBJECT || t < 0 ||
        qf_json_get_string_buf(cfg, t, type, sizeof type, NULL, NULL))
        return 0; /* the converter returns without a type */
    for (char *p = type; *p; p++) *p = (char)((*p >= 'A' && *p <= 'Z') ? *p - 'A' + 'a' : *p);
    if (!type[0]) return 0;
    if (strcmp(type, "longrope") != 0 && strcmp(type, "su") != 0)
        return qf_set_err(err, QF_EUNSUPPORTED, "%s: Phi-3 rope_scaling '%s' is not supported (longrope, su)", cfg_path,
                          type);
    static const char *const k_max[] = {"n_positions", "max_position_embeddings", NULL};
    int64_t max_pos, orig;
    int has_max, has_orig, rc;
    if ((rc = qf_hf_cfg_int(cfg, cfg_path, qf_hf_cfg_first(cfg, k_max), k_max[1], &max_pos, &has_max, err))) return rc;
    if ((rc = qf_hf_cfg_int(cfg, cfg_path, qf_json_find(cfg, 0, "original_max_position_embeddings"),
                            "original_max_position_embeddings", &orig, &has_orig, err)))
        return rc;
    if (!has_max || !has_orig || max_pos <= 0 || orig <= 0)
        return qf_set_err(err, QF_EFORMAT, "%s: longrope needs positive max_position_embeddings and "
                          "original_max_position_embeddings", cfg_path);
    double scale = (double)max_pos / (double)orig;
    *attn_factor = scale > 1.0 ? sqrt(1.0 + log(scale) / log((double)orig)) : 1.0;
    if ((rc = float_list(cfg, cfg_path, rs, "long_factor", *n, long_f, err))) return rc;
    if ((rc = float_list(cfg, cfg_path, rs, "short_factor", *n, short_f, err))) {
        free(*long_f);
        *long_f = NULL;
        return rc;
    }
    *present = 1;
    return 0;
}
