/* model.c - bind a GGUF file's (or an HF directory's) tensors to a
 * llama-family model (see model.h). */
#include "model.h"

#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ggml_types.h"
#include "hf_arch.h"
#include "gguf_split.h"
#include "json.h"
#include "qf_util.h"
#include "codecs.h"
#include "numfmt.h"
#include "qf_io.h"

/* qf_model_load_rows: the reader and the part in memory. */
struct qf_model_rows {
    qf_model_read_fn read;
    void *user;
    uint8_t *map;          /* the current part, an unlinked file mapped shared */
    size_t map_bytes;
    int64_t *part;         /* [n_tensors] the part of each tensor */
    int64_t cur;           /* the part in map, when have */
    int have;
};

static const char *type_name(uint32_t type) {
    const ggml_type_traits *tr = ggml_get_type_traits(type);
    return tr && tr->name ? tr->name : "unknown";
}

/* "<arch>.<suffix>" */
static const char *akey(const qf_model *m, const char *suffix, char *buf, size_t n) {
    snprintf(buf, n, "%s.%s", m->hp.arch_name, suffix);
    return buf;
}

/* Integer hyperparameter; `required` = 0 keeps *out when the key is absent. */
static int get_hp_i64(qf_model *m, const char *suffix, int required, int64_t *out, qf_err *err) {
    char key[128];
    uint64_t v;
    int rc = gguf_get_u64(&m->file, akey(m, suffix, key, sizeof key), &v);
    if (rc == QF_ENOTFOUND && !required) return 0;
    if (rc == QF_ENOTFOUND)
        return qf_set_err(err, QF_EFORMAT, "%s: missing key '%s'", m->path, key);
    if (rc < 0 || v > (uint64_t)1 << 40)
        return qf_set_err(err, QF_EFORMAT, "%s: key '%s' is not a valid count", m->path, key);
    *out = (int64_t)v;
    return 0;
}

static int get_hp_f32(qf_model *m, const char *suffix, int required, float *out, qf_err *err) {
    char key[128];
    int rc = gguf_get_f32(&m->file, akey(m, suffix, key, sizeof key), out);
    if (rc == QF_ENOTFOUND && !required) return 0;
    if (rc == QF_ENOTFOUND)
        return qf_set_err(err, QF_EFORMAT, "%s: missing key '%s'", m->path, key);
    if (rc < 0) return qf_set_err(err, QF_EFORMAT, "%s: key '%s' is not a float", m->path, key);
    return 0;
}

static void shape_str(char *buf, size_t n, const int64_t *ne, int n_dims) {
    int k = snprintf(buf, n, "[");
    for (int i = 0; i < n_dims && k > 0 && (size_t)k < n; i++)
        k += snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)ne[i]);
    if (k > 0 && (size_t)k < n) snprintf(buf + k, n - k, "]");
}

/* Keep p (malloc'd) until qf_model_free; NULL p or no room -> NULL. */
static void *own(qf_model *m, void *p) {
    void **owned = p ? realloc(m->owned, (m->n_owned + 1) * sizeof *owned) : NULL;
    if (!owned) {
        free(p);
        return NULL;
    }
    m->owned = owned;
    m->owned[m->n_owned++] = p;
    return p;
}

/* Widen a tensor to an owned F32 copy: norms and biases stored as F16 etc.,
 * and the MoE router of an HF checkpoint, which the converter always writes
 * as F32. Unreadable type -> QF_EUNSUPPORTED. */
static int widen_to_f32(qf_model *m, qf_weight *w, qf_err *err) {
    if (w->type == GGML_TYPE_F32) return 0;
    float *buf = own(m, malloc((size_t)(w->n_in * w->n_out) * sizeof(float)));
    if (!buf) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", m->path);
    for (int64_t r = 0; r < w->n_out; r++)
        if (qf_dequantize_row(w->type, (const uint8_t *)w->data + (size_t)r * w->row_bytes, buf + r * w->n_in, w->n_in))
            return qf_set_err(err, QF_EUNSUPPORTED, "%s: tensor '%s' has type %s, which cannot be read as f32",
                              m->path, w->name, type_name(w->type));
    w->data = buf;
    w->type = GGML_TYPE_F32;
    w->row_bytes = (size_t)w->n_in * sizeof(float);
    return 0;
}

/* A tensor by name, in the main file or any shard of a split model. */
static const gguf_tensor_info *find_tensor(const qf_model *m, const char *name) {
    const gguf_tensor_info *ti = gguf_find_tensor(&m->file, name);
    for (uint32_t i = 0; !ti && i < m->n_shards; i++) ti = gguf_find_tensor(&m->shards[i], name);
    return ti;
}

/* gguf-split layout (formats/gguf_split.h): open shards 2..N next to the
 * first one and check that they belong together. */
static int open_split_shards(qf_model *m, const char *path, qf_err *err) {
    return gguf_split_open_rest(&m->file, path, &m->shards, &m->n_shards, err);
}

/* A tensor as stored, from either source. */
typedef struct tensor_view {
    const char *name;     /* GGUF name, lives as long as the model */
    const void *data;
    uint32_t type;        /* ggml_type; GGML_TYPE_COUNT for a dtype verify cannot compute with */
    const char *type_name;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ggml order: ne[0] = row length */
    const st_tensor *st;  /* HF source tensor (NULL for GGUF) */
} tensor_view;

/* HF directory: GGUF name -> safetensors tensor, built once at load. */
struct qf_hf_tensor {
    char name[GGUF_MAX_NAME];
    const st_tensor *t;
    int64_t expert;       /* MoE: the expert id of one matrix of a stacked GGUF tensor, else -1 */
};

static uint32_t st_to_ggml(st_dtype d) {
    switch (d) {
    case ST_F32: return GGML_TYPE_F32;
    case ST_F16: return GGML_TYPE_F16;
    case ST_BF16: return GGML_TYPE_BF16;
    default: return GGML_TYPE_COUNT;
    }
}

/* The safetensors dtype of GGUF-named tensor `name` of an HF model (ST_F32 if unknown). */
static st_dtype find_st_dtype(const qf_model *m, const char *name) {
    for (uint64_t i = 0; i < m->n_hf_tensors; i++)
        if (strcmp(m->hf_tensors[i].name, name) == 0) return m->hf_tensors[i].t->dtype;
    return ST_F32;
}

static int find_view(qf_model *m, const char *name, tensor_view *v) {
    memset(v, 0, sizeof *v);
    if (!m->is_hf) {
        const gguf_tensor_info *ti = find_tensor(m, name);
        if (!ti) return 0;
        v->name = ti->name;
        v->data = ti->data;
        v->type = ti->type;
        v->type_name = type_name(ti->type);
        v->n_dims = (int)ti->n_dims;
        for (int i = 0; i < GGUF_MAX_DIMS; i++) v->ne[i] = (int64_t)ti->ne[i];
        return 1;
    }
    for (uint64_t i = 0; i < m->n_hf_tensors; i++) {
        if (strcmp(m->hf_tensors[i].name, name) != 0) continue;
        const st_tensor *t = m->hf_tensors[i].t;
        v->name = m->hf_tensors[i].name;
        v->data = t->data;
        v->type = st_to_ggml(t->dtype);
        v->type_name = st_dtype_name(t->dtype);
        v->st = t;
        v->n_dims = (int)t->n_dims;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) v->ne[d] = d < (int)t->n_dims ? (int64_t)t->shape[t->n_dims - 1 - d] : 1;
        return 1;
    }
    return 0;
}

/* A view of an n_out x n_in matrix (n_out 1 for a vector) of `type` at data,
 * rows of row_bytes; expert e of n_expert for an MoE view, else 0 of 0. */
static qf_weight weight_view(const char *name, const void *data, uint32_t type, int64_t n_in, int64_t n_out,
                             size_t row_bytes, int64_t e, int64_t n_expert) {
    return (qf_weight){.name = name, .data = data, .type = type, .n_in = n_in, .n_out = n_out,
                       .row_bytes = row_bytes, .expert = (int32_t)e, .n_expert = (int32_t)n_expert};
}

/* The bytes of one n_in row of the GGUF tensor `name` (view tv) into *rb;
 * QF_EUNSUPPORTED for a type verify cannot dequantize, QF_EFORMAT when the
 * row does not fit the type's blocks. */
static int view_row_bytes(qf_model *m, const char *name, const tensor_view *tv, int64_t n_in, size_t *rb,
                          qf_err *err) {
    if (tv->type >= GGML_TYPE_COUNT || !qf_has_dequantize(tv->type))
        return qf_set_err(err, QF_EUNSUPPORTED, "%s: tensor '%s' has type %s, which verify cannot compute with",
                          m->path, name, tv->type_name);
    uint64_t b;
    if (ggml_row_size(tv->type, (uint64_t)n_in, &b) != 0)
        return qf_set_err(err, QF_EFORMAT, "%s: tensor '%s' row of %lld elements does not fit type %s", m->path, name,
                          (long long)n_in, tv->type_name);
    *rb = (size_t)b;
    return 0;
}

/* An FP8 weight of an HF checkpoint: dequantized at load into an owned F32
 * copy (scale * e4m3(code), exact), its static input scale kept for the
 * W8A8 emulation (forward.h act_fp8). Bad scales -> QF_EFORMAT/EMISMATCH. */
static int bind_fp8(qf_model *m, qf_weight *w, const char *name, const st_tensor *t, qf_err *err) {
    qf_fp8_weight fw;
    int rc = qf_fp8_weight_bind(&m->st, &m->fp8, t, m->path, &fw, err);
    if (rc < 0) return rc;
    size_t n = (size_t)(fw.n_out * fw.n_in);
    float *buf = own(m, malloc((n ? n : 1) * sizeof(float)));
    if (!buf) {
        qf_fp8_weight_free(&fw);
        return qf_set_err(err, QF_ENOMEM, "%s: out of memory dequantizing '%s'", m->path, t->name);
    }
    for (int64_t r = 0; r < fw.n_out; r++) /* one thread: model loading has no thread count */
        qf_fp8_dequant_row(&fw, r, t->data + (size_t)r * (size_t)fw.n_in, buf + (size_t)r * (size_t)fw.n_in);
    *w = weight_view(name, buf, GGML_TYPE_F32, fw.n_in, fw.n_out, (size_t)fw.n_in * sizeof(float), 0, 0);
    w->act_scale = fw.input_scale;
    qf_fp8_weight_free(&fw);
    return 0;
}

/* Bind tensor `name` (GGUF name) with expected shape [n_in] (n_out == 0) or
 * [n_in, n_out]. Missing + optional -> w->data = NULL and 0. */
static int bind(qf_model *m, qf_weight *w, const char *name, int64_t n_in, int64_t n_out,
                int optional, qf_err *err) {
    memset(w, 0, sizeof *w);
    tensor_view tv;
    if (!find_view(m, name, &tv)) {
        if (optional) return 0;
        return qf_set_err(err, QF_ENOTFOUND, "%s: missing tensor '%s'", m->path, name);
    }
    int want_dims = n_out ? 2 : 1;
    int64_t want[2] = {n_in, n_out};
    int64_t have[GGUF_MAX_DIMS];
    int have_dims = tv.n_dims;
    for (int i = 0; i < GGUF_MAX_DIMS; i++) have[i] = tv.ne[i];
    /* A 1-D tensor may be stored as [n, 1]: trailing dims of 1 do not count. */
    while (have_dims > 1 && have[have_dims - 1] == 1) have_dims--;
    if (have_dims != want_dims || have[0] != want[0] || (n_out && have[1] != want[1])) {
        char hs[96], ws[96];
        shape_str(hs, sizeof hs, have, have_dims);
        shape_str(ws, sizeof ws, want, want_dims);
        return qf_set_err(err, QF_EMISMATCH, "%s: tensor '%s' has shape %s, expected %s",
                          m->path, name, hs, ws);
    }
    if (tv.st && tv.st->dtype == ST_F8_E4M3 && n_out) return bind_fp8(m, w, tv.name, tv.st, err);
    size_t rb;
    int rc = view_row_bytes(m, name, &tv, n_in, &rb, err);
    if (rc < 0) return rc;
    *w = weight_view(tv.name, tv.data, tv.type, n_in, n_out ? n_out : 1, rb, 0, 0);
    if (!n_out) return widen_to_f32(m, w, err);
    return 0;
}

/* The per-architecture constants once the shape is known (both sources). */
static void arch_defaults(qf_hparams *hp) {
    const int gemma = hp->arch == QF_ARCH_GEMMA || hp->arch == QF_ARCH_GEMMA2;
    hp->ffn_act = gemma ? QF_FFN_GELU : QF_FFN_SILU;
    hp->embd_scale = gemma ? sqrtf((float)hp->n_embd) : 1.0f;
    hp->q_scale = gemma ? 1.0f / sqrtf((float)hp->head_dim_k) : 1.0f;
    hp->kq_scale = gemma ? 1.0f : 1.0f / sqrtf((float)hp->head_dim_k);
    hp->attn_softcap = hp->final_softcap = 0.0f;
    hp->residual_scale = hp->logit_scale = 1.0f;
    hp->n_swa = 0;
    hp->swa_all_layers = 0;
}

/* Granite's attention, embedding, residual and logit multipliers (0 = unset). */
static void granite_scales(qf_hparams *hp, const float v[4]) {
    if (v[0] != 0.0f) hp->kq_scale = v[0];
    if (v[1] != 0.0f) hp->embd_scale = v[1];
    if (v[2] != 0.0f) hp->residual_scale = v[2];
    if (v[3] != 0.0f) hp->logit_scale = v[3];
}

static int read_hparams(qf_model *m, qf_err *err) {
    qf_hparams *hp = &m->hp;
    int rc;
    char key[128], *arch = NULL;
    rc = gguf_get_str(&m->file, "general.architecture", &arch);
    if (rc < 0) return qf_set_err(err, QF_EFORMAT, "%s: missing key 'general.architecture'", m->path);
    if (strcmp(arch, "llama") == 0) {
        hp->arch = QF_ARCH_LLAMA;
        hp->rope_type = QF_ROPE_NORM;
    } else if (strcmp(arch, "qwen2") == 0) {
        hp->arch = QF_ARCH_QWEN2;
        hp->rope_type = QF_ROPE_NEOX;
    } else if (strcmp(arch, "qwen3") == 0) {
        hp->arch = QF_ARCH_QWEN3;
        hp->rope_type = QF_ROPE_NEOX;
    } else if (strcmp(arch, "gemma") == 0 || strcmp(arch, "gemma2") == 0) {
        hp->arch = strcmp(arch, "gemma2") == 0 ? QF_ARCH_GEMMA2 : QF_ARCH_GEMMA;
        hp->rope_type = QF_ROPE_NEOX;
    } else if (strcmp(arch, "granite") == 0) {
        hp->arch = QF_ARCH_GRANITE;
        hp->rope_type = QF_ROPE_NORM;
    } else if (strcmp(arch, "phi3") == 0) {
        hp->arch = QF_ARCH_PHI3;
        hp->rope_type = QF_ROPE_NEOX;
    } else {
        rc = qf_set_err(err, QF_EUNSUPPORTED,
                        "%s: architecture '%s' is not supported (llama, qwen2, qwen3, gemma, gemma2, granite, phi3)",
                        m->path, arch);
        free(arch);
        return rc;
    }
    snprintf(hp->arch_name, sizeof hp->arch_name, "%s", arch);
    free(arch);

    if ((rc = get_hp_i64(m, "context_length", 1, &hp->n_ctx_train, err)) < 0) return rc;
    if ((rc = get_hp_i64(m, "embedding_length", 1, &hp->n_embd, err)) < 0) return rc;
    if ((rc = get_hp_i64(m, "block_count", 1, &hp->n_layer, err)) < 0) return rc;
    if ((rc = get_hp_i64(m, "feed_forward_length", 1, &hp->n_ff, err)) < 0) return rc;
    if ((rc = get_hp_i64(m, "attention.head_count", 1, &hp->n_head, err)) < 0) return rc;
    hp->n_head_kv = hp->n_head;
    if ((rc = get_hp_i64(m, "attention.head_count_kv", 0, &hp->n_head_kv, err)) < 0) return rc;
    const struct { const char *suffix; int64_t v; } pos[] = {
        {"embedding_length", hp->n_embd}, {"block_count", hp->n_layer}, {"feed_forward_length", hp->n_ff},
        {"attention.head_count", hp->n_head}, {"attention.head_count_kv", hp->n_head_kv}};
    for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++)
        if (pos[i].v <= 0)
            return qf_set_err(err, QF_EFORMAT, "%s: key '%s' is %lld, not a positive count", m->path,
                              akey(m, pos[i].suffix, key, sizeof key), (long long)pos[i].v);
    if (hp->n_head % hp->n_head_kv != 0)
        return qf_set_err(err, QF_EFORMAT, "%s: key '%s' (%lld) does not divide head_count %lld", m->path,
                          akey(m, "attention.head_count_kv", key, sizeof key), (long long)hp->n_head_kv,
                          (long long)hp->n_head);
    hp->head_dim_k = 0;
    if ((rc = get_hp_i64(m, "attention.key_length", 0, &hp->head_dim_k, err)) < 0) return rc;
    if (hp->head_dim_k == 0) {
        if (hp->n_embd % hp->n_head != 0)
            return qf_set_err(err, QF_EFORMAT, "%s: embedding_length %lld is not a multiple of head_count %lld",
                              m->path, (long long)hp->n_embd, (long long)hp->n_head);
        hp->head_dim_k = hp->n_embd / hp->n_head;
    }
    hp->head_dim_v = hp->head_dim_k;
    if ((rc = get_hp_i64(m, "attention.value_length", 0, &hp->head_dim_v, err)) < 0) return rc;
    hp->n_rot = hp->head_dim_k;
    if ((rc = get_hp_i64(m, "rope.dimension_count", 0, &hp->n_rot, err)) < 0) return rc;
    if (hp->head_dim_k <= 0 || hp->head_dim_v <= 0 || hp->n_rot <= 0 || hp->n_rot > hp->head_dim_k || hp->n_rot % 2)
        return qf_set_err(err, QF_EFORMAT, "%s: rope.dimension_count %lld does not fit head size %lld",
                          m->path, (long long)hp->n_rot, (long long)hp->head_dim_k);

    hp->rope_freq_base = 10000.0f;
    if ((rc = get_hp_f32(m, "rope.freq_base", 0, &hp->rope_freq_base, err)) < 0) return rc;
    if ((rc = get_hp_i64(m, "expert_count", 0, &hp->n_expert, err)) < 0) return rc;
    if ((rc = get_hp_i64(m, "expert_used_count", 0, &hp->n_expert_used, err)) < 0) return rc;
    if (hp->n_expert > 4096 || hp->n_expert_used > hp->n_expert || (hp->n_expert > 0 && hp->n_expert_used <= 0))
        return qf_set_err(err, QF_EFORMAT, "%s: expert_used_count %lld / expert_count %lld is not a valid MoE", m->path,
                          (long long)hp->n_expert_used, (long long)hp->n_expert);
    if ((rc = get_hp_i64(m, "rope.scaling.original_context_length", 0, &hp->n_ctx_orig, err)) < 0) return rc;
    hp->rope_attn_factor = 1.0f;
    if ((rc = get_hp_f32(m, "rope.scaling.attn_factor", 0, &hp->rope_attn_factor, err)) < 0) return rc;
    if (!(hp->rope_attn_factor > 0.0f) || !isfinite(hp->rope_attn_factor))
        return qf_set_err(err, QF_EFORMAT, "%s: rope.scaling.attn_factor %g is not a positive number", m->path,
                          (double)hp->rope_attn_factor);
    if ((rc = get_hp_f32(m, "attention.layer_norm_rms_epsilon", 1, &hp->norm_eps, err)) < 0) return rc;

    /* RoPE scaling: linear divides positions by the factor; anything else
     * (yarn, longrope) changes the attention math and is refused. */
    hp->rope_freq_scale = 1.0f;
    char *stype = NULL;
    float factor = 0.0f;
    if ((rc = get_hp_f32(m, "rope.scaling.factor", 0, &factor, err)) < 0) return rc;
    if (factor == 0.0f && (rc = get_hp_f32(m, "rope.scale_linear", 0, &factor, err)) < 0) return rc;
    rc = gguf_get_str(&m->file, akey(m, "rope.scaling.type", key, sizeof key), &stype);
    if (rc == 0) {
        int ok = strcmp(stype, "none") == 0 || strcmp(stype, "linear") == 0;
        if (!ok) {
            rc = qf_set_err(err, QF_EUNSUPPORTED, "%s: rope scaling '%s' is not supported (none, linear)",
                            m->path, stype);
            free(stype);
            return rc;
        }
        if (strcmp(stype, "none") == 0) factor = 0.0f;
        free(stype);
    } else if (rc != QF_ENOTFOUND) {
        return qf_set_err(err, QF_EFORMAT, "%s: key '%s' is not a string", m->path, key);
    }
    if (factor != 0.0f && factor != 1.0f) {
        if (!(factor > 0.0f)) return qf_set_err(err, QF_EFORMAT, "%s: bad rope scaling factor", m->path);
        hp->rope_freq_scale = 1.0f / factor;
    }
    arch_defaults(hp);
    if (hp->arch == QF_ARCH_PHI3) { /* every layer, 0 = none (Phi-4) */
        if ((rc = get_hp_i64(m, "attention.sliding_window", 0, &hp->n_swa, err)) < 0) return rc;
        hp->swa_all_layers = 1;
    }
    if (hp->arch == QF_ARCH_GEMMA2) {
        /* llama.cpp keys the Q scale on the model size: 46 layers (27B) use n_embd / n_head */
        if (hp->n_layer == 46) hp->q_scale = 1.0f / sqrtf((float)(hp->n_embd / hp->n_head));
        hp->attn_softcap = 50.0f;
        hp->final_softcap = 30.0f;
        if ((rc = get_hp_f32(m, "attn_logit_softcapping", 0, &hp->attn_softcap, err)) < 0) return rc;
        if ((rc = get_hp_f32(m, "final_logit_softcapping", 0, &hp->final_softcap, err)) < 0) return rc;
        if ((rc = get_hp_i64(m, "attention.sliding_window", 1, &hp->n_swa, err)) < 0) return rc;
    }
    if (hp->arch == QF_ARCH_GRANITE) {
        float v[4] = {0, 0, 0, 0};
        static const char *const keys[4] = {"attention.scale", "embedding_scale", "residual_scale", "logit_scale"};
        for (int i = 0; i < 4; i++)
            if ((rc = get_hp_f32(m, keys[i], 0, &v[i], err)) < 0) return rc;
        granite_scales(hp, v);
    }
    return 0;
}

/* Where a hyperparameter came from: the GGUF key or the config.json field. */
enum { HP_EMBD, HP_LAYER, HP_FF, HP_HEAD, HP_HEAD_KV, HP_HEAD_DIM_K, HP_HEAD_DIM_V };
static const char *hp_key(const qf_model *m, int which, char *buf, size_t n) {
    static const char *const gguf[] = {"embedding_length", "block_count", "feed_forward_length",
                                       "attention.head_count", "attention.head_count_kv",
                                       "attention.key_length", "attention.value_length"};
    static const char *const hf[] = {"hidden_size", "num_hidden_layers", "intermediate_size",
                                     "num_attention_heads", "num_key_value_heads", "head_dim", "head_dim"};
    if (m->is_hf) snprintf(buf, n, "config.json %s", hf[which]);
    else snprintf(buf, n, "key '%s.%s'", m->hp.arch_name, gguf[which]);
    return buf;
}

/* Block index of a "blk.N." tensor name, or -1. */
static int64_t block_of(const char *name) {
    if (strncmp(name, "blk.", 4) != 0) return -1;
    char *end;
    long long b = strtoll(name + 4, &end, 10);
    return end != name + 4 && *end == '.' && b >= 0 ? (int64_t)b : -1;
}

/* Blocks the file (or checkpoint) holds tensors for: 1 + the highest "blk.N". */
static int64_t file_blocks(const qf_model *m) {
    int64_t n = 0, b;
    if (m->is_hf) {
        for (uint64_t i = 0; i < m->n_hf_tensors; i++)
            if ((b = block_of(m->hf_tensors[i].name)) >= n) n = b + 1;
        return n;
    }
    for (uint32_t s = 0; s <= m->n_shards; s++) {
        const gguf_file *f = s ? &m->shards[s - 1] : &m->file;
        for (uint64_t i = 0; i < f->n_tensors; i++)
            if ((b = block_of(f->tensors[i].name)) >= n) n = b + 1;
    }
    return n;
}

/* A width the hyperparameters imply against the tensor that has it (its
 * dimension `dim`), so a lying key is named before anything is sized from it;
 * a missing tensor is left for bind() to report. Mismatch -> QF_EMISMATCH. */
static int check_width(qf_model *m, const char *tensor, int dim, int64_t want, int which, const char *what,
                       qf_err *err) {
    tensor_view tv;
    if (!find_view(m, tensor, &tv) || tv.ne[dim] == want) return 0;
    char k[160];
    return qf_set_err(err, QF_EMISMATCH, "%s: %s gives %s %lld but tensor '%s' has %lld", m->path,
                      hp_key(m, which, k, sizeof k), what, (long long)want, tv.name, (long long)tv.ne[dim]);
}

/* Every quantity sized from the hyperparameters checked against the tensors
 * actually present, before any allocation. Mismatch -> QF_EMISMATCH. */
static int check_hparams(qf_model *m, qf_err *err) {
    const qf_hparams *hp = &m->hp;
    char k[160], k2[160];
    int64_t have = file_blocks(m);
    if (hp->n_layer != have)
        return qf_set_err(err, QF_EMISMATCH, "%s: %s is %lld but the file has tensors for %lld blocks", m->path,
                          hp_key(m, HP_LAYER, k, sizeof k), (long long)hp->n_layer, (long long)have);
    const int64_t lim = (int64_t)1 << 40;
    if (hp->head_dim_k > lim / hp->n_head || hp->head_dim_v > lim / hp->n_head)
        return qf_set_err(err, QF_EFORMAT, "%s: %s (%lld) times %s (%lld) overflows", m->path,
                          hp_key(m, HP_HEAD, k, sizeof k), (long long)hp->n_head,
                          hp_key(m, hp->head_dim_k > lim / hp->n_head ? HP_HEAD_DIM_K : HP_HEAD_DIM_V, k2, sizeof k2),
                          (long long)(hp->head_dim_k > hp->head_dim_v ? hp->head_dim_k : hp->head_dim_v));
    int rc;
    if ((rc = check_width(m, "token_embd.weight", 0, hp->n_embd, HP_EMBD, "a width of", err)) < 0) return rc;
    if ((rc = check_width(m, "blk.0.attn_q.weight", 1, hp->n_head * hp->head_dim_k, HP_HEAD, "query rows", err)) < 0)
        return rc;
    if ((rc = check_width(m, "blk.0.attn_k.weight", 1, hp->n_head_kv * hp->head_dim_k, HP_HEAD_KV, "key rows", err)) < 0)
        return rc;
    if ((rc = check_width(m, "blk.0.attn_v.weight", 1, hp->n_head_kv * hp->head_dim_v, HP_HEAD_DIM_V, "value rows",
                          err)) < 0)
        return rc;
    /* phi3's ffn_up is gate and up fused: 2 n_ff rows */
    const int64_t up_rows = hp->arch == QF_ARCH_PHI3 ? 2 * hp->n_ff : hp->n_ff;
    if ((rc = check_width(m, "blk.0.ffn_up.weight", 1, up_rows, HP_FF, "feed-forward rows", err)) < 0) return rc;
    return 0;
}

/* Bind the n_expert separate HF matrices [n_in, n_out] that the GGUF stacks
 * as `name` as n_expert views (owned array in *views), expert e from
 * "...experts.e..."; they must share one dtype. Missing -> QF_ENOTFOUND,
 * other shape or dtype -> QF_EMISMATCH. */
static int bind_hf_experts(qf_model *m, qf_weight **views, const char *name, int64_t n_in, int64_t n_out,
                           qf_err *err) {
    const int64_t X = m->hp.n_expert;
    qf_weight *v = own(m, calloc((size_t)X, sizeof *v));
    if (!v) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", m->path);
    for (int64_t e = 0; e < X; e++) {
        const struct qf_hf_tensor *h = NULL;
        for (uint64_t i = 0; i < m->n_hf_tensors && !h; i++)
            if (m->hf_tensors[i].expert == e && strcmp(m->hf_tensors[i].name, name) == 0) h = &m->hf_tensors[i];
        if (!h) return qf_set_err(err, QF_ENOTFOUND, "%s: missing expert %lld of tensor '%s'", m->path, (long long)e, name);
        const st_tensor *t = h->t;
        if (t->n_dims != 2 || (int64_t)t->shape[1] != n_in || (int64_t)t->shape[0] != n_out)
            return qf_set_err(err, QF_EMISMATCH, "%s: tensor '%s' is not a [%lld, %lld] matrix", m->path, t->name,
                              (long long)n_out, (long long)n_in);
        const uint32_t type = st_to_ggml(t->dtype);
        if (e > 0 && type != v[0].type)
            return qf_set_err(err, QF_EMISMATCH, "%s: tensor '%s' has dtype %s, expert 0 has another", m->path,
                              t->name, st_dtype_name(t->dtype));
        uint64_t rb;
        if (type >= GGML_TYPE_COUNT || ggml_row_size(type, (uint64_t)n_in, &rb) != 0)
            return qf_set_err(err, QF_EUNSUPPORTED, "%s: tensor '%s' has dtype %s, which verify cannot compute with",
                              m->path, t->name, st_dtype_name(t->dtype));
        v[e] = weight_view(h->name, t->data, type, n_in, n_out, (size_t)rb, e, X);
    }
    *views = v;
    return 0;
}

/* Bind the 3-D MoE tensor `name` [n_in, n_out, n_expert] as n_expert views
 * (owned array in *views). Missing -> QF_ENOTFOUND, other shape ->
 * QF_EMISMATCH. */
static int bind_experts(qf_model *m, qf_weight **views, const char *name, int64_t n_in, int64_t n_out, qf_err *err) {
    const int64_t X = m->hp.n_expert;
    if (m->is_hf) return bind_hf_experts(m, views, name, n_in, n_out, err);
    tensor_view tv;
    if (!find_view(m, name, &tv)) return qf_set_err(err, QF_ENOTFOUND, "%s: missing tensor '%s'", m->path, name);
    if (tv.n_dims != 3 || tv.ne[0] != n_in || tv.ne[1] != n_out || tv.ne[2] != X) {
        char hs[96], ws[96];
        const int64_t want[3] = {n_in, n_out, X};
        shape_str(hs, sizeof hs, tv.ne, tv.n_dims);
        shape_str(ws, sizeof ws, want, 3);
        return qf_set_err(err, QF_EMISMATCH, "%s: tensor '%s' has shape %s, expected %s", m->path, name, hs, ws);
    }
    size_t rb;
    int rc = view_row_bytes(m, name, &tv, n_in, &rb, err);
    if (rc < 0) return rc;
    qf_weight *v = own(m, calloc((size_t)X, sizeof *v));
    if (!v) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", m->path);
    for (int64_t e = 0; e < X; e++)
        v[e] = weight_view(tv.name, (const uint8_t *)tv.data + (size_t)e * (size_t)n_out * rb, tv.type, n_in, n_out, rb,
                           e, X);
    *views = v;
    return 0;
}

/* An HF Gemma norm holds w for (1 + w): an owned F32 copy with the 1 added
 * as the converter adds it (F32 sums; an F16 source rounded back to F16). */
static int gemma_norm_plus_one(qf_model *m, qf_weight *w, qf_err *err) {
    if (!w->data) return 0;
    const int f16 = w->name && m->is_hf && find_st_dtype(m, w->name) == ST_F16;
    float *buf = own(m, malloc((size_t)w->n_in * sizeof(float)));
    if (!buf) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", m->path);
    memcpy(buf, w->data, (size_t)w->n_in * sizeof(float)); /* 1-D tensors are F32 after bind() */
    for (int64_t i = 0; i < w->n_in; i++) {
        buf[i] += 1.0f;
        if (f16) buf[i] = qf_f16_to_f32(qf_f32_to_f16(buf[i]));
    }
    w->data = buf;
    return 0;
}

/* Bind every tensor for the hyperparameters in m->hp (both sources). */
static int bind_all(qf_model *m, qf_err *err) {
    qf_hparams *hp = &m->hp;
    int rc;
    /* The vocabulary size comes from the embedding matrix. */
    tensor_view te;
    if (!find_view(m, "token_embd.weight", &te))
        return qf_set_err(err, QF_ENOTFOUND, "%s: missing tensor '%s'", m->path,
                          m->is_hf ? "model.embed_tokens.weight" : "token_embd.weight");
    hp->n_vocab = te.n_dims >= 2 ? te.ne[1] : 0;
    if (hp->n_vocab <= 0) return qf_set_err(err, QF_EFORMAT, "%s: tensor '%s' is not a matrix", m->path, te.name);
    /* every width below must fit and match the file before anything is sized from it */
    if ((rc = check_hparams(m, err)) < 0) return rc;
    if (!(hp->rope_freq_base > 0.0f) || !isfinite(hp->rope_freq_base))
        return qf_set_err(err, QF_EFORMAT, "%s: rope frequency base %g is not a positive number", m->path,
                          (double)hp->rope_freq_base);
    if (!(hp->norm_eps >= 0.0f) || !isfinite(hp->norm_eps))
        return qf_set_err(err, QF_EFORMAT, "%s: norm epsilon %g is not a non-negative number", m->path,
                          (double)hp->norm_eps);
    const int64_t E = hp->n_embd, V = hp->n_vocab;
    const int64_t QD = hp->n_head * hp->head_dim_k, KD = hp->n_head_kv * hp->head_dim_k;
    const int64_t VD = hp->n_head_kv * hp->head_dim_v, OD = hp->n_head * hp->head_dim_v;

    if ((rc = bind(m, &m->tok_embd, "token_embd.weight", E, V, 0, err)) < 0) return rc;
    if ((rc = bind(m, &m->output_norm, "output_norm.weight", E, 0, 0, err)) < 0) return rc;
    if ((rc = bind(m, &m->output, "output.weight", E, V, 1, err)) < 0) return rc;
    if (m->is_hf && (hp->arch == QF_ARCH_GEMMA || hp->arch == QF_ARCH_GEMMA2) &&
        (rc = gemma_norm_plus_one(m, &m->output_norm, err)) < 0)
        return rc;
    if (!m->output.data) {
        m->output = m->tok_embd;
        m->tied_output = 1;
    }
    if ((rc = bind(m, &m->rope_freqs, "rope_freqs.weight", hp->n_rot / 2, 0, 1, err)) < 0) return rc;
    if (!m->rope_freqs.data && m->hf_rope_freqs) {
        m->rope_freqs.name = "rope_freqs.weight";
        m->rope_freqs.data = m->hf_rope_freqs;
        m->rope_freqs.type = GGML_TYPE_F32;
        m->rope_freqs.n_in = hp->n_rot / 2;
        m->rope_freqs.n_out = 1;
        m->rope_freqs.row_bytes = (size_t)(hp->n_rot / 2) * sizeof(float);
    }

    /* phi3 longrope: both factor sets or neither */
    if ((rc = bind(m, &m->rope_long, "rope_factors_long.weight", hp->n_rot / 2, 0, 1, err)) < 0) return rc;
    if ((rc = bind(m, &m->rope_short, "rope_factors_short.weight", hp->n_rot / 2, 0, 1, err)) < 0) return rc;
    if (!m->rope_long.data && m->hf_rope_long) {
        const float *src[2] = {m->hf_rope_long, m->hf_rope_short};
        qf_weight *dst[2] = {&m->rope_long, &m->rope_short};
        for (int k = 0; k < 2; k++) {
            dst[k]->name = k ? "rope_factors_short.weight" : "rope_factors_long.weight";
            dst[k]->data = src[k];
            dst[k]->type = GGML_TYPE_F32;
            dst[k]->n_in = hp->n_rot / 2;
            dst[k]->n_out = 1;
            dst[k]->row_bytes = (size_t)(hp->n_rot / 2) * sizeof(float);
        }
    }
    if (!m->rope_long.data != !m->rope_short.data)
        return qf_set_err(err, QF_ENOTFOUND, "%s: missing tensor '%s'", m->path,
                          m->rope_long.data ? "rope_factors_short.weight" : "rope_factors_long.weight");

    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", m->path);
    const int has_bias = hp->arch == QF_ARCH_QWEN2;
    const int has_qk_norm = hp->arch == QF_ARCH_QWEN3;
    for (int64_t l = 0; l < hp->n_layer; l++) {
        qf_layer *L = &m->layers[l];
        char n[96];
#define BIND(field, suffix, n_in, n_out, opt)                                    \
        snprintf(n, sizeof n, "blk.%lld." suffix, (long long)l);                 \
        if ((rc = bind(m, &L->field, n, n_in, n_out, opt, err)) < 0) return rc;
        const int fused = hp->arch == QF_ARCH_PHI3, moe = hp->n_expert > 0;
        BIND(attn_norm, "attn_norm.weight", E, 0, 0);
        if (fused) {
            BIND(wqkv, "attn_qkv.weight", E, QD + KD + VD, 0);
        } else {
            BIND(wq, "attn_q.weight", E, QD, 0);
            BIND(wk, "attn_k.weight", E, KD, 0);
            BIND(wv, "attn_v.weight", E, VD, 0);
        }
        BIND(bq, "attn_q.bias", QD, 0, !has_bias);
        BIND(bk, "attn_k.bias", KD, 0, !has_bias);
        BIND(bv, "attn_v.bias", VD, 0, !has_bias);
        BIND(q_norm, "attn_q_norm.weight", hp->head_dim_k, 0, !has_qk_norm);
        BIND(k_norm, "attn_k_norm.weight", hp->head_dim_k, 0, !has_qk_norm);
        BIND(wo, "attn_output.weight", OD, E, 0);
        BIND(ffn_norm, "ffn_norm.weight", E, 0, 0);
        if (moe) {
            BIND(ffn_gate_inp, "ffn_gate_inp.weight", E, hp->n_expert, 0);
            if (m->is_hf && (rc = widen_to_f32(m, &L->ffn_gate_inp, err)) < 0) return rc;
#define BIND_X(field, suffix, n_in, n_out)                                       \
            snprintf(n, sizeof n, "blk.%lld." suffix, (long long)l);             \
            if ((rc = bind_experts(m, &L->field, n, n_in, n_out, err)) < 0) return rc;
            BIND_X(gate_exps, "ffn_gate_exps.weight", E, hp->n_ff);
            BIND_X(up_exps, "ffn_up_exps.weight", E, hp->n_ff);
            BIND_X(down_exps, "ffn_down_exps.weight", hp->n_ff, E);
#undef BIND_X
        } else if (fused) {
            BIND(ffn_gate_up, "ffn_up.weight", E, 2 * hp->n_ff, 0);
            BIND(ffn_down, "ffn_down.weight", hp->n_ff, E, 0);
        } else {
            BIND(ffn_gate, "ffn_gate.weight", E, hp->n_ff, 0);
            BIND(ffn_up, "ffn_up.weight", E, hp->n_ff, 0);
            BIND(ffn_down, "ffn_down.weight", hp->n_ff, E, 0);
        }
        BIND(post_attn_norm, "post_attention_norm.weight", E, 0, hp->arch != QF_ARCH_GEMMA2);
        BIND(post_ffw_norm, "post_ffw_norm.weight", E, 0, hp->arch != QF_ARCH_GEMMA2);
        if (m->is_hf && (hp->arch == QF_ARCH_GEMMA || hp->arch == QF_ARCH_GEMMA2)) {
            qf_weight *norms[] = {&L->attn_norm, &L->ffn_norm, &L->post_attn_norm, &L->post_ffw_norm};
            for (size_t i = 0; i < sizeof norms / sizeof norms[0]; i++)
                if ((rc = gemma_norm_plus_one(m, norms[i], err)) < 0) return rc;
        }
#undef BIND
    }
    return 0;
}

static int load_gguf(qf_model *m, const char *path, qf_err *err) {
    int rc;
    if ((rc = gguf_open(&m->file, path, err)) < 0) {
        memset(&m->file, 0, sizeof m->file);
        return rc;
    }
    m->path = m->file.path;
    if ((rc = open_split_shards(m, path, err)) < 0) return rc;
    if ((rc = read_hparams(m, err)) < 0) return rc;
    return bind_all(m, err);
}

/* ---------------- HF directory ---------------- */

/* A number of config.json: absent or null leaves *v; else it must be a number. */
static int cfg_num(const qf_json *cfg, const char *cfg_path, const char *key, float *v, qf_err *err) {
    int t = qf_json_find(cfg, 0, key);
    double d;
    if (t < 0 || qf_json_is_null(cfg, t)) return 0;
    if (qf_json_type_of(cfg, t) != QF_JSON_NUMBER || qf_json_get_double(cfg, t, &d, NULL))
        return qf_set_err(err, QF_EFORMAT, "%s: %s is not a number (line %u)", cfg_path, key, qf_json_line(cfg, t));
    *v = (float)d;
    return 0;
}

/* Gemma 2's query scale, soft-caps and window, Granite's multipliers, from
 * config.json (HF's semantics; the converter writes the same numbers). */
static int hf_arch_scales(qf_hparams *hp, const qf_json *cfg, const char *cfg_path, qf_err *err) {
    int rc;
    if (hp->arch == QF_ARCH_GEMMA2) {
        float qpas = (float)hp->head_dim_k, window = 0.0f;
        if ((rc = cfg_num(cfg, cfg_path, "query_pre_attn_scalar", &qpas, err)) < 0) return rc;
        if ((rc = cfg_num(cfg, cfg_path, "attn_logit_softcapping", &hp->attn_softcap, err)) < 0) return rc;
        if ((rc = cfg_num(cfg, cfg_path, "final_logit_softcapping", &hp->final_softcap, err)) < 0) return rc;
        if ((rc = cfg_num(cfg, cfg_path, "sliding_window", &window, err)) < 0) return rc;
        if (!(qpas > 0.0f)) return qf_set_err(err, QF_EFORMAT, "%s: query_pre_attn_scalar must be positive", cfg_path);
        hp->q_scale = 1.0f / sqrtf(qpas);
        hp->n_swa = window > 0.0f ? (int64_t)window : 0;
    }
    if (hp->arch == QF_ARCH_GRANITE) {
        float v[4] = {0, 0, 0, 0};
        static const char *const keys[4] = {"attention_multiplier", "embedding_multiplier", "residual_multiplier",
                                            "logits_scaling"};
        for (int i = 0; i < 4; i++)
            if ((rc = cfg_num(cfg, cfg_path, keys[i], &v[i], err)) < 0) return rc;
        granite_scales(hp, v);
    }
    return 0;
}

/* config.json -> m->hp, the way the converter would write the GGUF keys
 * (convert/convert.c write_common_params + arch hooks) and model.c read them. */
static int hf_hparams(qf_model *m, const qf_json *cfg, const char *cfg_path, qf_err *err) {
    qf_hf_hparams h;
    qf_hf_runtime rt;
    const qf_hf_arch *a;
    int rc;
    if ((rc = qf_hf_config_read(cfg, cfg_path, &a, &h, err)) < 0) return rc;
    if ((rc = qf_hf_config_runtime(cfg, cfg_path, &rt, err)) < 0) return rc;
    m->hf_arch = a;
    qf_hparams *hp = &m->hp;
    if (!strcmp(a->gguf_arch, "llama")) hp->arch = QF_ARCH_LLAMA;
    else if (!strcmp(a->gguf_arch, "qwen2")) hp->arch = QF_ARCH_QWEN2;
    else if (!strcmp(a->gguf_arch, "qwen3")) hp->arch = QF_ARCH_QWEN3;
    else if (!strcmp(a->gguf_arch, "gemma")) hp->arch = QF_ARCH_GEMMA;
    else if (!strcmp(a->gguf_arch, "gemma2")) hp->arch = QF_ARCH_GEMMA2;
    else if (!strcmp(a->gguf_arch, "granite")) hp->arch = QF_ARCH_GRANITE;
    else if (!strcmp(a->gguf_arch, "phi3")) hp->arch = QF_ARCH_PHI3;
    else return qf_set_err(err, QF_EUNSUPPORTED, "%s: architecture '%s' is not supported", cfg_path, a->gguf_arch);
    snprintf(hp->arch_name, sizeof hp->arch_name, "%s", a->gguf_arch);
    /* HF keeps Q/K in rotate-half order for every architecture here */
    hp->rope_type = QF_ROPE_NEOX;
    hp->n_ctx_train = rt.n_ctx_train;
    hp->n_embd = h.n_embd;
    hp->n_layer = h.n_layer;
    hp->n_ff = h.n_ff;
    hp->n_head = h.n_head;
    hp->n_head_kv = h.n_head_kv;
    hp->head_dim_k = hp->head_dim_v = hp->n_rot = h.head_dim;
    if (hp->n_head % hp->n_head_kv != 0)
        return qf_set_err(err, QF_EFORMAT, "%s: num_attention_heads %lld is not a multiple of num_key_value_heads %lld",
                          cfg_path, (long long)hp->n_head, (long long)hp->n_head_kv);
    if (hp->n_rot % 2) return qf_set_err(err, QF_EFORMAT, "%s: head_dim %lld is odd", cfg_path, (long long)hp->n_rot);
    hp->rope_freq_base = (float)rt.rope_theta;
    hp->norm_eps = (float)rt.rms_norm_eps;
    hp->rope_freq_scale = 1.0f;
    const char *rs = rt.rope_scaling;
    if (rs[0] == 0 || !strcmp(rs, "none") || !strcmp(rs, "default")) {
        /* no scaling */
    } else if (!strcmp(rs, "linear")) {
        if (!(rt.rope_factor > 0.0)) return qf_set_err(err, QF_EFORMAT, "%s: bad rope_scaling factor", cfg_path);
        hp->rope_freq_scale = (float)(1.0 / rt.rope_factor);
    } else if ((!strcmp(rs, "longrope") || !strcmp(rs, "su")) && hp->arch == QF_ARCH_PHI3) {
        /* factor sets and attention factor: read below */
    } else if (!strcmp(rs, "llama3") && (a->flags & QF_ARCH_ROPE_LLAMA3)) {
        /* the same per-frequency divisors the converter writes as rope_freqs.weight */
        float *ff = own(m, malloc((size_t)(hp->n_rot / 2) * sizeof(float)));
        int present = 0;
        if (!ff) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", cfg_path);
        if ((rc = qf_hf_llama3_rope_freqs(cfg, cfg_path, hp->n_rot, ff, &present, err)) < 0) return rc;
        if (!present) /* "type": "llama3" without "rope_type": llama.cpp's converter ignores it too */
            return qf_set_err(err, QF_EUNSUPPORTED, "%s: rope_scaling llama3 without \"rope_type\" is not supported",
                              cfg_path);
        m->hf_rope_freqs = ff;
    } else {
        return qf_set_err(err, QF_EUNSUPPORTED,
                          "%s: rope_scaling '%s' is not supported for HF directories (none, linear, llama3, phi3 longrope); "
                          "convert the model to GGUF first",
                          cfg_path, rs);
    }
    arch_defaults(hp);
    hp->n_expert = h.n_expert;
    hp->n_expert_used = h.n_expert_used;
    if (hp->n_expert > 4096 || hp->n_expert_used > hp->n_expert || (hp->n_expert > 0 && hp->n_expert_used <= 0))
        return qf_set_err(err, QF_EFORMAT, "%s: num_experts_per_tok %lld / num_local_experts %lld is not a valid MoE",
                          cfg_path, (long long)hp->n_expert_used, (long long)hp->n_expert);
    hp->rope_attn_factor = 1.0f;
    if (hp->arch == QF_ARCH_PHI3) {
        /* as the converter writes them: sliding window (null -> 0) on every layer, longrope */
        hp->swa_all_layers = 1;
        int t = qf_json_find(cfg, 0, "sliding_window");
        if (t >= 0 && !qf_json_is_null(cfg, t) && qf_json_get_int64(cfg, t, &hp->n_swa, NULL))
            return qf_set_err(err, QF_EFORMAT, "%s: sliding_window is not an integer", cfg_path);
        if (hp->n_swa < 0) return qf_set_err(err, QF_EFORMAT, "%s: sliding_window is negative", cfg_path);
        float *lf, *sf;
        int64_t n;
        double af;
        int present;
        if ((rc = qf_hf_longrope(cfg, cfg_path, hp->n_embd / hp->n_head, &lf, &sf, &n, &af, &present, err)) < 0)
            return rc;
        if (present) {
            if (!own(m, lf) | !own(m, sf)) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", cfg_path);
            m->hf_rope_long = lf;
            m->hf_rope_short = sf;
            hp->rope_attn_factor = (float)af;
            int o = qf_json_find(cfg, 0, "original_max_position_embeddings");
            if (o >= 0) qf_json_get_int64(cfg, o, &hp->n_ctx_orig, NULL);
        }
    }
    if ((rc = hf_arch_scales(hp, cfg, cfg_path, err)) < 0) return rc;
    m->hf_embd_in_lm_head = h.tie_embeddings && !st_find(&m->st, "model.embed_tokens.weight") &&
                            st_find(&m->st, "lm_head.weight");
    if (h.tie_embeddings == 0 && !(a->flags & QF_ARCH_GEMMA_FAMILY) && !st_find(&m->st, "lm_head.weight"))
        return qf_set_err(err, QF_ENOTFOUND, "%s: missing tensor 'lm_head.weight' (config.json: tie_word_embeddings is false)",
                          m->path);
    return 0;
}

/* Name every safetensors tensor the GGUF way; unknown tensors are errors
 * (they would change what the model computes). */
static int hf_index(qf_model *m, qf_err *err) {
    m->hf_tensors = calloc(m->st.n_tensors ? m->st.n_tensors : 1, sizeof *m->hf_tensors);
    if (!m->hf_tensors) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", m->path);
    for (uint64_t i = 0; i < m->st.n_tensors; i++) {
        const st_tensor *t = &m->st.tensors[i];
        if (qf_hf_skip_tensor(m->hf_arch, t->name))
            continue; /* buffers, not weights (the converter skips them too) */
        if (m->fp8.kind != QF_FP8_KIND_NONE && qf_fp8_is_scale_name(t->name))
            continue; /* FP8 scales: read with their weight (bind_fp8) */
        if (m->fp8.kind == QF_FP8_KIND_NONE && t->dtype == ST_F8_E4M3)
            return qf_set_err(err, QF_EFORMAT, "%s: tensor '%s' is F8_E4M3 but config.json has no quantization_config",
                              m->path, t->name);
        struct qf_hf_tensor *e = &m->hf_tensors[m->n_hf_tensors];
        int64_t bid;
        if (!qf_hf_map_tensor_x(m->hf_arch, t->name, e->name, sizeof e->name, &bid, &e->expert))
            return qf_set_err(err, QF_EUNSUPPORTED, "%s: tensor '%s' is not part of a %s model", m->path, t->name,
                              m->hf_arch->hf_class);
        if (bid >= m->hp.n_layer)
            return qf_set_err(err, QF_EMISMATCH, "%s: tensor '%s' is in block %lld but config.json has %lld layers",
                              m->path, t->name, (long long)bid, (long long)m->hp.n_layer);
        if (m->hf_embd_in_lm_head && strcmp(e->name, "output.weight") == 0)
            snprintf(e->name, sizeof e->name, "token_embd.weight");
        e->t = t;
        m->n_hf_tensors++;
    }
    return 0;
}

static int load_hf(qf_model *m, const char *dir, qf_err *err) {
    int rc;
    qf_json cfg;
    memset(&cfg, 0, sizeof cfg);
    m->is_hf = 1;
    m->hf_dir = strdup(dir);
    char *cfg_path = qf_path_join(dir, "config.json");
    if (!m->hf_dir || !cfg_path) {
        free(cfg_path);
        return qf_set_err(err, QF_ENOMEM, "out of memory");
    }
    m->path = m->hf_dir;
    struct stat st;
    if (stat(cfg_path, &st) != 0) {
        rc = qf_set_err(err, QF_ENOTFOUND, "%s: not a model directory (no config.json)", dir);
        goto done;
    }
    if ((rc = qf_json_parse_file(&cfg, cfg_path, 0, err)) < 0) goto done;
    /* the model class first: "not supported" says more than a missing shard */
    const qf_hf_arch *a;
    qf_hf_hparams h;
    if ((rc = qf_hf_config_read(&cfg, cfg_path, &a, &h, err)) < 0) goto done;
    if ((rc = qf_fp8_config_read(&cfg, cfg_path, &m->fp8, err)) < 0) goto done;
    if ((rc = st_open(&m->st, dir, err)) < 0) {
        memset(&m->st, 0, sizeof m->st);
        goto done;
    }
    if ((rc = hf_hparams(m, &cfg, cfg_path, err)) < 0) goto done;
    if ((rc = hf_index(m, err)) < 0) goto done;
    rc = bind_all(m, err);
done:
    qf_json_free(&cfg);
    free(cfg_path);
    return rc;
}

int qf_model_load(qf_model *m, const char *path, qf_err *err) {
    int rc;
    memset(m, 0, sizeof *m);
    m->file.fd = -1;
    m->path = path;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) rc = load_hf(m, path, err);
    else rc = load_gguf(m, path, err);
    if (rc < 0) qf_model_free(m);
    return rc;
}

void qf_model_free(qf_model *m) {
    if (!m) return;
    if (m->rows) { /* m->file is a view of the caller's header with a copied tensor table */
        if (m->rows->map) munmap(m->rows->map, m->rows->map_bytes);
        free(m->rows->part);
        free(m->rows);
        free(m->file.tensors);
        memset(&m->file, 0, sizeof m->file);
    }
    for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    free(m->hf_tensors);
    if (m->is_hf) st_close(&m->st);
    free(m->hf_dir);
    gguf_split_close(m->shards, m->n_shards);
    if (m->file.map || m->file.path) gguf_close(&m->file);
    memset(m, 0, sizeof *m);
}

static void prefault(const gguf_file *f) {
#ifdef MADV_POPULATE_READ
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), lo = (uintptr_t)f->map & ~(page - 1);
    if (f->map && f->map_size > 0) madvise((void *)lo, (uintptr_t)f->map + f->map_size - lo, MADV_POPULATE_READ);
#else
    (void)f;
#endif
}

void qf_model_prefault(const qf_model *m) {
    if (m->is_hf || m->rows) return; /* a rows model's mapping holds one part, fetched on use */
    prefault(&m->file);
    for (uint32_t i = 0; i < m->n_shards; i++) prefault(&m->shards[i]);
}

int qf_weight_row(const qf_weight *w, int64_t row, float *out) {
    if (!w->data || row < 0 || row >= w->n_out) return QF_EINVAL;
    const uint8_t *src = (const uint8_t *)w->data + (size_t)row * w->row_bytes;
    return qf_dequantize_row(w->type, src, out, w->n_in) == 0 ? 0 : QF_EUNSUPPORTED;
}

/* ---------------- a GGUF read through a row reader ---------------- */

#define PART_RESIDENT INT64_MIN      /* read at load, always in memory */
#define PART_OUTPUT (INT64_MIN + 1)  /* output.weight */
#define PART_CHUNK_BYTES (32u << 20) /* stored bytes per read of qf_model_fetch */

/* The part of tensor t: -1 for token_embd, its block, PART_OUTPUT for
 * output.weight; one-row tensors and the rest are PART_RESIDENT. */
static int64_t part_of(const gguf_tensor_info *t) {
    if (t->n_elements == t->ne[0]) return PART_RESIDENT;
    if (!strcmp(t->name, "token_embd.weight")) return -1;
    if (!strcmp(t->name, "output.weight")) return PART_OUTPUT;
    const int64_t b = block_of(t->name);
    return b >= 0 ? b : PART_RESIDENT;
}

/* Slot of a non-resident part in per-part arrays of n_blocks + 2. */
static size_t part_slot(int64_t part) {
    return part == -1 ? 0 : part == PART_OUTPUT ? 1 : (size_t)part + 2;
}

static uint64_t round_up(uint64_t n, uint64_t page) {
    return (n + page - 1) / page * page;
}

/* Bytes of every part (n_blocks + 2 entries, calloc'd) or NULL. */
static uint64_t *part_sizes(const gguf_file *f, uint64_t page, size_t *n_slots) {
    int64_t nb = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const int64_t p = part_of(&f->tensors[i]);
        if (p >= nb) nb = p + 1;
    }
    *n_slots = (size_t)nb + 2;
    uint64_t *sz = calloc(*n_slots, sizeof *sz);
    for (uint64_t i = 0; sz && i < f->n_tensors; i++) {
        const int64_t p = part_of(&f->tensors[i]);
        if (p != PART_RESIDENT) sz[part_slot(p)] += round_up(f->tensors[i].nbytes, page);
    }
    return sz;
}

uint64_t qf_model_rows_part_bytes(const gguf_file *f, uint64_t page) {
    size_t n;
    uint64_t *sz = part_sizes(f, page, &n), best = 0;
    for (size_t i = 0; sz && i < n; i++)
        if (sz[i] > best) best = sz[i];
    free(sz);
    return best;
}

/* The part file: bytes in an unlinked file of $TMPDIR (or /tmp), mapped shared. */
static int part_map(struct qf_model_rows *r, size_t bytes, qf_err *err) {
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    char path[4096];
    snprintf(path, sizeof path, "%s/qforge-weights-XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0) return qf_set_err(err, QF_EIO, "%s: cannot create a temporary file for the model's weights", dir);
    unlink(path);
    if (ftruncate(fd, (off_t)bytes) != 0) {
        close(fd);
        return qf_set_err(err, QF_EIO, "%s: no room for %zu bytes of model weights", dir, bytes);
    }
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return qf_set_err(err, QF_EIO, "%s: cannot map the temporary file of the model's weights", dir);
    r->map = p;
    r->map_bytes = bytes;
    return 0;
}

/* Tensor i's data: resident tensors read now into owned memory, the others
 * placed at their offset in their part's layout. */
static int rows_place(qf_model *m, uint64_t *off, qf_err *err) {
    struct qf_model_rows *r = m->rows;
    const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    for (uint64_t i = 0; i < m->file.n_tensors; i++) {
        gguf_tensor_info *t = &m->file.tensors[i];
        r->part[i] = part_of(t);
        if (r->part[i] != PART_RESIDENT) {
            const size_t s = part_slot(r->part[i]);
            t->data = r->map + off[s];
            off[s] += round_up(t->nbytes, page);
            continue;
        }
        uint8_t *buf = own(m, malloc(t->nbytes ? (size_t)t->nbytes : 1));
        if (!buf) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", m->path);
        int rc = r->read(r->user, i, 0, t->ne[0] ? t->n_elements / t->ne[0] : 0, buf, err);
        if (rc) return rc < 0 ? rc : -rc;
        t->data = buf;
    }
    return 0;
}

int qf_model_load_rows(qf_model *m, const gguf_file *f, const char *path, qf_model_read_fn read, void *user,
                       qf_err *err) {
    memset(m, 0, sizeof *m);
    m->path = path;
    struct qf_model_rows *r = m->rows = calloc(1, sizeof *m->rows);
    if (!r) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
    r->read = read;
    r->user = user;
    m->file = *f; /* freed as a view (qf_model_free) */
    m->file.fd = -1;
    m->file.tensors = malloc((f->n_tensors ? f->n_tensors : 1) * sizeof *f->tensors);
    r->part = malloc((f->n_tensors ? f->n_tensors : 1) * sizeof *r->part);
    size_t n_slots = 0;
    uint64_t *off = part_sizes(f, 1, &n_slots); /* its length; zeroed below */
    int rc;
    if (!m->file.tensors || !r->part || !off) {
        rc = qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    memcpy(m->file.tensors, f->tensors, f->n_tensors * sizeof *f->tensors);
    memset(off, 0, n_slots * sizeof *off);
    const uint64_t bytes = qf_model_rows_part_bytes(f, (uint64_t)sysconf(_SC_PAGESIZE));
    if (bytes && (rc = part_map(r, (size_t)bytes, err)) < 0) goto done;
    m->file.map = r->map;
    m->file.map_size = r->map_bytes;
    if ((rc = rows_place(m, off, err)) < 0) goto done;
    if ((rc = read_hparams(m, err)) < 0) goto done;
    rc = bind_all(m, err);
done:
    free(off);
    if (rc < 0) qf_model_free(m);
    return rc;
}

int qf_model_fetch(const qf_model *m, int64_t part, qf_err *err) {
    struct qf_model_rows *r = m->rows;
    if (!r) return 0;
    const int64_t want = part == m->hp.n_layer ? PART_OUTPUT : part;
    if (r->have && r->cur == want) return 0;
    r->have = 0;
    qf_release_range(r->map, r->map_bytes, r->map, r->map_bytes, 0);
    for (uint64_t i = 0; i < m->file.n_tensors; i++) {
        if (r->part[i] != want) continue;
        const gguf_tensor_info *t = &m->file.tensors[i];
        uint64_t rb;
        if (ggml_row_size(t->type, t->ne[0], &rb) || !rb) continue;
        const uint64_t n_rows = t->nbytes / rb, step = PART_CHUNK_BYTES / rb ? PART_CHUNK_BYTES / rb : 1;
        for (uint64_t row = 0; row < n_rows; row += step) {
            const uint64_t k = n_rows - row < step ? n_rows - row : step;
            uint8_t *dst = (uint8_t *)t->data + row * rb;
            int rc = r->read(r->user, i, row, k, dst, err);
            if (rc) return rc < 0 ? rc : -rc;
            qf_release_range(r->map, r->map_bytes, dst, k * rb, 0);
        }
    }
    r->cur = want;
    r->have = 1;
    return 0;
}
