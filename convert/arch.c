/* arch.c - per-architecture GGUF metadata hooks of qforge-convert (see
 * arch.h; the naming table itself is formats/hf_arch.c).
 *
 * Facts from llama.cpp convert_hf_to_gguf.py (gguf-py 0.15, the oracle
 * version): LlamaModel writes vocab_size, rope.dimension_count and linear
 * rope scaling; Qwen2Model (and Qwen3, which inherits it) writes yarn rope
 * scaling. GemmaModel and Gemma2Model write their own hparams (no
 * rope.freq_base, key/value length from head_dim); Gemma2 adds the two
 * soft-caps and the sliding window; GraniteModel is LlamaModel without
 * head_dim plus its four multipliers.
 */
#include "arch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* int config.json value of the first present key; missing -> QF_EFORMAT. */
static int cfg_req_int(const qf_json *cfg, const char *const *keys, int64_t *v, qf_err *err) {
    int present, rc = qf_hf_cfg_int(cfg, "config.json", qf_hf_cfg_first(cfg, keys), keys[0], v, &present, err);
    if (rc) return rc;
    return present ? 0 : qf_set_err(err, QF_EFORMAT, "config.json: missing %s", keys[0]);
}

/* Phi3MiniModel.set_gguf_parameters: its own key set and order, the
 * sliding window always (0 when config.json has null: Phi-4's full
 * attention). */
static int phi3_params(const qf_arch *a, const qf_json *cfg, const qf_hparams *hp, uint32_t file_type, gguf_writer *w,
                       qf_err *err) {
    static const char *const k_ctx[] = {"n_positions", "max_position_embeddings", NULL};
    static const char *const k_orig[] = {"original_max_position_embeddings", NULL};
    static const char *const k_ff[] = {"intermediate_size", NULL};
    static const char *const k_theta[] = {"rope_theta", NULL};
    static const char *const k_eps[] = {"rms_norm_eps", NULL};
    int64_t ctx, orig, ff;
    double theta, eps;
    int rc;
    if ((rc = cfg_req_int(cfg, k_ctx, &ctx, err)) || (rc = cfg_req_int(cfg, k_orig, &orig, err)) ||
        (rc = cfg_req_int(cfg, k_ff, &ff, err)))
        return rc;
    int t = qf_hf_cfg_first(cfg, k_theta);
    if (t < 0 || qf_json_get_double(cfg, t, &theta, NULL)) return qf_set_err(err, QF_EFORMAT, "config.json: missing rope_theta");
    t = qf_hf_cfg_first(cfg, k_eps);
    if (t < 0 || qf_json_get_double(cfg, t, &eps, NULL)) return qf_set_err(err, QF_EFORMAT, "config.json: missing rms_norm_eps");
    int64_t swa = 0;
    t = qf_json_find(cfg, 0, "sliding_window");
    if (t >= 0 && !qf_json_is_null(cfg, t) && qf_json_get_int64(cfg, t, &swa, NULL))
        return qf_set_err(err, QF_EFORMAT, "config.json: sliding_window is not an integer");
    if ((rc = set_u32_key(w, a, "context_length", ctx, err))) return rc;
    if ((rc = set_u32_key(w, a, "rope.scaling.original_context_length", orig, err))) return rc;
    if ((rc = set_u32_key(w, a, "embedding_length", hp->n_embd, err))) return rc;
    if ((rc = set_u32_key(w, a, "feed_forward_length", ff, err))) return rc;
    if ((rc = set_u32_key(w, a, "block_count", hp->n_layer, err))) return rc;
    if ((rc = set_u32_key(w, a, "attention.head_count", hp->n_head, err))) return rc;
    if ((rc = set_u32_key(w, a, "attention.head_count_kv", hp->n_head_kv, err))) return rc;
    if ((rc = set_f32_key(w, a, "attention.layer_norm_rms_epsilon", eps, err))) return rc;
    if ((rc = set_u32_key(w, a, "rope.dimension_count", hp->n_embd / hp->n_head, err))) return rc;
    if ((rc = set_f32_key(w, a, "rope.freq_base", theta, err))) return rc;
    if (gguf_writer_set_u32(w, "general.file_type", file_type))
        return qf_set_err(err, QF_ENOMEM, "gguf writer: cannot set general.file_type");
    return set_u32_key(w, a, "attention.sliding_window", swa, err);
}

/* Phi3MiniModel.generate_extra_tensors: the longrope attention factor. */
static int phi3_early_params(const qf_arch *a, const qf_json *cfg, const qf_hparams *hp, gguf_writer *w, qf_err *err) {
    float *lf, *sf;
    int64_t n;
    double attn_factor;
    int present;
    int rc = qf_hf_longrope(cfg, "config.json", hp->n_embd / hp->n_head, &lf, &sf, &n, &attn_factor, &present, err);
    if (rc || !present) return rc;
    free(lf);
    free(sf);
    return set_f32_key(w, a, "rope.scaling.attn_factor", attn_factor, err);
}

/* A required number of config.json. */
static int cfg_number(const qf_json *cfg, const char *key, double *v, qf_err *err) {
    int t = qf_json_find(cfg, 0, key);
    if (t < 0 || qf_json_type_of(cfg, t) != QF_JSON_NUMBER || qf_json_get_double(cfg, t, v, NULL))
        return qf_set_err(err, QF_EFORMAT, "config.json: %s is missing or not a number", key);
    return 0;
}

/* GemmaModel.set_gguf_parameters (Gemma2Model's starts the same way) */
static int gemma_common(const qf_arch *a, const qf_json *cfg, const qf_hparams *hp, gguf_writer *w, qf_err *err) {
    int rc;
    double ctx, eps;
    if ((rc = cfg_number(cfg, "max_position_embeddings", &ctx, err))) return rc;
    if ((rc = cfg_number(cfg, "rms_norm_eps", &eps, err))) return rc;
    if ((rc = set_u32_key(w, a, "context_length", (int64_t)ctx, err))) return rc;
    if ((rc = set_u32_key(w, a, "embedding_length", hp->n_embd, err))) return rc;
    if ((rc = set_u32_key(w, a, "block_count", hp->n_layer, err))) return rc;
    if ((rc = set_u32_key(w, a, "feed_forward_length", hp->n_ff, err))) return rc;
    if ((rc = set_u32_key(w, a, "attention.head_count", hp->n_head, err))) return rc;
    if ((rc = set_u32_key(w, a, "attention.head_count_kv", hp->n_head_kv, err))) return rc;
    if ((rc = set_f32_key(w, a, "attention.layer_norm_rms_epsilon", eps, err))) return rc;
    if ((rc = set_u32_key(w, a, "attention.key_length", hp->head_dim, err))) return rc;
    return set_u32_key(w, a, "attention.value_length", hp->head_dim, err);
}

/* Gemma2Model.set_gguf_parameters after the common part */
static int gemma2_params(const qf_arch *a, const qf_json *cfg, const qf_hparams *hp, gguf_writer *w, qf_err *err) {
    (void)hp;
    int rc;
    double attn_cap, final_cap, window;
    if ((rc = cfg_number(cfg, "attn_logit_softcapping", &attn_cap, err))) return rc;
    if ((rc = cfg_number(cfg, "final_logit_softcapping", &final_cap, err))) return rc;
    if ((rc = cfg_number(cfg, "sliding_window", &window, err))) return rc;
    if ((rc = set_f32_key(w, a, "attn_logit_softcapping", attn_cap, err))) return rc;
    if ((rc = set_f32_key(w, a, "final_logit_softcapping", final_cap, err))) return rc;
    return set_u32_key(w, a, "attention.sliding_window", (int64_t)window, err);
}

/* GraniteModel.set_gguf_parameters: LlamaModel's, then each multiplier that is present and non-zero */
static int granite_params(const qf_arch *a, const qf_json *cfg, const qf_hparams *hp, gguf_writer *w, qf_err *err) {
    static const char *const keys[][2] = {{"attention_multiplier", "attention.scale"},
                                          {"embedding_multiplier", "embedding_scale"},
                                          {"residual_multiplier", "residual_scale"},
                                          {"logits_scaling", "logit_scale"}};
    int rc = llama_params(a, cfg, hp, w, err);
    for (size_t i = 0; !rc && i < sizeof keys / sizeof keys[0]; i++) {
        int t = qf_json_find(cfg, 0, keys[i][0]);
        double v = 0.0;
        if (t < 0 || qf_json_type_of(cfg, t) != QF_JSON_NUMBER || qf_json_get_double(cfg, t, &v, NULL) || v == 0.0)
            continue;
        rc = set_f32_key(w, a, keys[i][1], v, err);
    }
    return rc;
}

/* ---------------- the table ---------------- */

qf_arch_own_params_hook qf_arch_own_params(const qf_arch *a) {
    return strcmp(a->gguf_arch, "phi3") == 0 ? phi3_params : NULL;
}

qf_arch_params_hook qf_arch_early_params(const qf_arch *a) {
    return strcmp(a->gguf_arch, "phi3") == 0 ? phi3_early_params : NULL;
}

qf_arch_params_hook qf_arch_common_params(const qf_arch *a) {
    return (a->flags & QF_ARCH_GEMMA_FAMILY) ? gemma_common : NULL;
}


qf_arch_params_hook qf_arch_params(const qf_arch *a) {
    if (strcmp(a->gguf_arch, "llama") == 0) return llama_params;
    if (strcmp(a->gguf_arch, "qwen2") == 0 || strcmp(a->gguf_arch, "qwen3") == 0) return qwen2_params;
    if (strcmp(a->gguf_arch, "gemma2") == 0) return gemma2_params;
    if (strcmp(a->gguf_arch, "granite") == 0) return granite_params;
    return NULL;
}
