/* model.c - bind a GGUF file's tensors to a llama-family model (see model.h). */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_types.h"
#include "quants.h"

const char *qf_arch_name(qf_arch arch) {
    switch (arch) {
    case QF_ARCH_LLAMA: return "llama";
    case QF_ARCH_QWEN2: return "qwen2";
    case QF_ARCH_QWEN3: return "qwen3";
    }
    return "?";
}

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
        return qf_set_err(err, QF_EFORMAT, "%s: missing key '%s'", m->file.path, key);
    if (rc < 0 || v > (uint64_t)1 << 40)
        return qf_set_err(err, QF_EFORMAT, "%s: key '%s' is not a valid count", m->file.path, key);
    *out = (int64_t)v;
    return 0;
}

static int get_hp_f32(qf_model *m, const char *suffix, int required, float *out, qf_err *err) {
    char key[128];
    int rc = gguf_get_f32(&m->file, akey(m, suffix, key, sizeof key), out);
    if (rc == QF_ENOTFOUND && !required) return 0;
    if (rc == QF_ENOTFOUND)
        return qf_set_err(err, QF_EFORMAT, "%s: missing key '%s'", m->file.path, key);
    if (rc < 0) return qf_set_err(err, QF_EFORMAT, "%s: key '%s' is not a float", m->file.path, key);
    return 0;
}

static void shape_str(char *buf, size_t n, const int64_t *ne, int n_dims) {
    int k = snprintf(buf, n, "[");
    for (int i = 0; i < n_dims && k > 0 && (size_t)k < n; i++)
        k += snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)ne[i]);
    if (k > 0 && (size_t)k < n) snprintf(buf + k, n - k, "]");
}

/* Widen a small 1-D tensor to an owned F32 copy (norms/biases stored as F16 etc.). */
static int widen_to_f32(qf_model *m, qf_weight *w, qf_err *err) {
    float *buf = malloc((size_t)w->n_in * sizeof(float));
    void **owned = realloc(m->owned, (m->n_owned + 1) * sizeof *owned);
    if (!buf || !owned) {
        free(buf);
        if (owned) m->owned = owned;
        return qf_set_err(err, QF_ENOMEM, "%s: out of memory", m->file.path);
    }
    m->owned = owned;
    m->owned[m->n_owned++] = buf;
    if (qf_dequantize_row(w->type, w->data, buf, w->n_in) != 0) {
        return qf_set_err(err, QF_EUNSUPPORTED, "%s: tensor '%s' has type %s, which cannot be read as f32",
                          m->file.path, w->name, type_name(w->type));
    }
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

/* gguf-split layout: every shard carries split.no (0-based), split.count and
 * split.tensors.count, and is named PREFIX-%05d-of-%05d.gguf (1-based). Open
 * shards 2..N next to the first one and check that they belong together. */
static int open_split_shards(qf_model *m, const char *path, qf_err *err) {
    uint32_t count = 0, no = 0;
    if (gguf_get_u32(&m->file, "split.count", &count) != 0 || count <= 1) return 0;
    if (gguf_get_u32(&m->file, "split.no", &no) != 0 || no != 0)
        return qf_set_err(err, QF_EINVAL, "%s: this is shard %u of a split model; open the first shard (-00001-of-%05u.gguf)",
                          path, no + 1, count);
    size_t len = strlen(path);
    char suffix[64];
    snprintf(suffix, sizeof suffix, "-00001-of-%05u.gguf", count);
    size_t sl = strlen(suffix);
    if (len < sl || strcmp(path + len - sl, suffix) != 0)
        return qf_set_err(err, QF_EFORMAT, "%s: split model (split.count %u) but the name does not end in '%s'",
                          path, count, suffix);
    m->shards = calloc(count - 1, sizeof *m->shards);
    if (!m->shards) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
    char *name = malloc(len + 1);
    if (!name) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
    int rc = 0;
    uint64_t n_tensors = m->file.n_tensors;
    for (uint32_t i = 1; i < count && rc == 0; i++) {
        memcpy(name, path, len - sl);
        snprintf(name + len - sl, sl + 1, "-%05u-of-%05u.gguf", i + 1, count);
        gguf_file *f = &m->shards[m->n_shards];
        if ((rc = gguf_open(f, name, err)) < 0) break;
        m->n_shards++;
        uint32_t fno = 0, fcount = 0;
        if (gguf_get_u32(f, "split.no", &fno) != 0 || gguf_get_u32(f, "split.count", &fcount) != 0 ||
            fno != i || fcount != count)
            rc = qf_set_err(err, QF_EMISMATCH, "%s: split.no/split.count do not say shard %u of %u", name, i + 1, count);
        n_tensors += f->n_tensors;
    }
    uint32_t total = 0;
    if (rc == 0 && gguf_get_u32(&m->file, "split.tensors.count", &total) == 0 && total != n_tensors)
        rc = qf_set_err(err, QF_EMISMATCH, "%s: split.tensors.count is %u but the %u shards hold %llu tensors",
                        path, total, count, (unsigned long long)n_tensors);
    free(name);
    return rc;
}

/* Bind tensor `name` with expected shape [n_in] (n_out == 0) or [n_in, n_out].
 * Missing + optional -> w->data = NULL and 0. */
static int bind(qf_model *m, qf_weight *w, const char *name, int64_t n_in, int64_t n_out,
                int optional, qf_err *err) {
    memset(w, 0, sizeof *w);
    const gguf_tensor_info *ti = find_tensor(m, name);
    if (!ti) {
        if (optional) return 0;
        return qf_set_err(err, QF_ENOTFOUND, "%s: missing tensor '%s'", m->file.path, name);
    }
    int want_dims = n_out ? 2 : 1;
    int64_t want[2] = {n_in, n_out};
    int64_t have[GGUF_MAX_DIMS];
    int have_dims = (int)ti->n_dims;
    for (int i = 0; i < GGUF_MAX_DIMS; i++) have[i] = (int64_t)ti->ne[i];
    /* A 1-D tensor may be stored as [n, 1]: trailing dims of 1 do not count. */
    while (have_dims > 1 && have[have_dims - 1] == 1) have_dims--;
    if (have_dims != want_dims || have[0] != want[0] || (n_out && have[1] != want[1])) {
        char hs[96], ws[96];
        shape_str(hs, sizeof hs, have, have_dims);
        shape_str(ws, sizeof ws, want, want_dims);
        return qf_set_err(err, QF_EMISMATCH, "%s: tensor '%s' has shape %s, expected %s",
                          m->file.path, name, hs, ws);
    }
    if (!qf_has_dequantize(ti->type))
        return qf_set_err(err, QF_EUNSUPPORTED, "%s: tensor '%s' has type %s, which verify cannot compute with",
                          m->file.path, name, type_name(ti->type));
    uint64_t rb;
    if (ggml_row_size(ti->type, (uint64_t)n_in, &rb) != 0)
        return qf_set_err(err, QF_EFORMAT, "%s: tensor '%s' row of %lld elements does not fit type %s",
                          m->file.path, name, (long long)n_in, type_name(ti->type));
    w->name = ti->name;
    w->data = ti->data;
    w->type = ti->type;
    w->n_in = n_in;
    w->n_out = n_out ? n_out : 1;
    w->row_bytes = (size_t)rb;
    if (!n_out && w->type != GGML_TYPE_F32) return widen_to_f32(m, w, err);
    return 0;
}

static int read_hparams(qf_model *m, qf_err *err) {
    qf_hparams *hp = &m->hp;
    int rc;
    char *arch = NULL;
    rc = gguf_get_str(&m->file, "general.architecture", &arch);
    if (rc < 0) return qf_set_err(err, QF_EFORMAT, "%s: missing key 'general.architecture'", m->file.path);
    if (strcmp(arch, "llama") == 0) {
        hp->arch = QF_ARCH_LLAMA;
        hp->rope_type = QF_ROPE_NORM;
    } else if (strcmp(arch, "qwen2") == 0) {
        hp->arch = QF_ARCH_QWEN2;
        hp->rope_type = QF_ROPE_NEOX;
    } else if (strcmp(arch, "qwen3") == 0) {
        hp->arch = QF_ARCH_QWEN3;
        hp->rope_type = QF_ROPE_NEOX;
    } else {
        rc = qf_set_err(err, QF_EUNSUPPORTED, "%s: architecture '%s' is not supported (llama, qwen2, qwen3)",
                        m->file.path, arch);
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
    if (hp->n_embd <= 0 || hp->n_layer <= 0 || hp->n_ff <= 0 || hp->n_head <= 0 || hp->n_head_kv <= 0)
        return qf_set_err(err, QF_EFORMAT, "%s: hyperparameters must be positive", m->file.path);
    if (hp->n_head % hp->n_head_kv != 0)
        return qf_set_err(err, QF_EFORMAT, "%s: head_count %lld is not a multiple of head_count_kv %lld",
                          m->file.path, (long long)hp->n_head, (long long)hp->n_head_kv);
    hp->head_dim_k = 0;
    if ((rc = get_hp_i64(m, "attention.key_length", 0, &hp->head_dim_k, err)) < 0) return rc;
    if (hp->head_dim_k == 0) {
        if (hp->n_embd % hp->n_head != 0)
            return qf_set_err(err, QF_EFORMAT, "%s: embedding_length %lld is not a multiple of head_count %lld",
                              m->file.path, (long long)hp->n_embd, (long long)hp->n_head);
        hp->head_dim_k = hp->n_embd / hp->n_head;
    }
    hp->head_dim_v = hp->head_dim_k;
    if ((rc = get_hp_i64(m, "attention.value_length", 0, &hp->head_dim_v, err)) < 0) return rc;
    hp->n_rot = hp->head_dim_k;
    if ((rc = get_hp_i64(m, "rope.dimension_count", 0, &hp->n_rot, err)) < 0) return rc;
    if (hp->head_dim_k <= 0 || hp->head_dim_v <= 0 || hp->n_rot <= 0 || hp->n_rot > hp->head_dim_k || hp->n_rot % 2)
        return qf_set_err(err, QF_EFORMAT, "%s: rope.dimension_count %lld does not fit head size %lld",
                          m->file.path, (long long)hp->n_rot, (long long)hp->head_dim_k);

    hp->rope_freq_base = 10000.0f;
    if ((rc = get_hp_f32(m, "rope.freq_base", 0, &hp->rope_freq_base, err)) < 0) return rc;
    if ((rc = get_hp_f32(m, "attention.layer_norm_rms_epsilon", 1, &hp->norm_eps, err)) < 0) return rc;

    /* RoPE scaling: linear divides positions by the factor; anything else
     * (yarn, longrope) changes the attention math and is refused. */
    hp->rope_freq_scale = 1.0f;
    char key[128], *stype = NULL;
    float factor = 0.0f;
    if ((rc = get_hp_f32(m, "rope.scaling.factor", 0, &factor, err)) < 0) return rc;
    if (factor == 0.0f && (rc = get_hp_f32(m, "rope.scale_linear", 0, &factor, err)) < 0) return rc;
    rc = gguf_get_str(&m->file, akey(m, "rope.scaling.type", key, sizeof key), &stype);
    if (rc == 0) {
        int ok = strcmp(stype, "none") == 0 || strcmp(stype, "linear") == 0;
        if (!ok) {
            rc = qf_set_err(err, QF_EUNSUPPORTED, "%s: rope scaling '%s' is not supported (none, linear)",
                            m->file.path, stype);
            free(stype);
            return rc;
        }
        if (strcmp(stype, "none") == 0) factor = 0.0f;
        free(stype);
    } else if (rc != QF_ENOTFOUND) {
        return qf_set_err(err, QF_EFORMAT, "%s: key '%s' is not a string", m->file.path, key);
    }
    if (factor != 0.0f && factor != 1.0f) {
        if (!(factor > 0.0f)) return qf_set_err(err, QF_EFORMAT, "%s: bad rope scaling factor", m->file.path);
        hp->rope_freq_scale = 1.0f / factor;
    }
    return 0;
}

int qf_model_load(qf_model *m, const char *path, qf_err *err) {
    int rc;
    memset(m, 0, sizeof *m);
    m->file.fd = -1;
    if ((rc = gguf_open(&m->file, path, err)) < 0) {
        memset(m, 0, sizeof *m);
        return rc;
    }
    if ((rc = open_split_shards(m, path, err)) < 0) goto fail;
    if ((rc = read_hparams(m, err)) < 0) goto fail;
    qf_hparams *hp = &m->hp;

    /* The vocabulary size comes from the embedding matrix. */
    const gguf_tensor_info *te = find_tensor(m, "token_embd.weight");
    if (!te) {
        rc = qf_set_err(err, QF_ENOTFOUND, "%s: missing tensor 'token_embd.weight'", path);
        goto fail;
    }
    hp->n_vocab = te->n_dims >= 2 ? (int64_t)te->ne[1] : 0;
    if (hp->n_vocab <= 0) {
        rc = qf_set_err(err, QF_EFORMAT, "%s: tensor 'token_embd.weight' is not a matrix", path);
        goto fail;
    }
    const int64_t E = hp->n_embd, V = hp->n_vocab;
    const int64_t QD = hp->n_head * hp->head_dim_k, KD = hp->n_head_kv * hp->head_dim_k;
    const int64_t VD = hp->n_head_kv * hp->head_dim_v, OD = hp->n_head * hp->head_dim_v;

    if ((rc = bind(m, &m->tok_embd, "token_embd.weight", E, V, 0, err)) < 0) goto fail;
    if ((rc = bind(m, &m->output_norm, "output_norm.weight", E, 0, 0, err)) < 0) goto fail;
    if ((rc = bind(m, &m->output, "output.weight", E, V, 1, err)) < 0) goto fail;
    if (!m->output.data) {
        m->output = m->tok_embd;
        m->tied_output = 1;
    }
    if ((rc = bind(m, &m->rope_freqs, "rope_freqs.weight", hp->n_rot / 2, 0, 1, err)) < 0) goto fail;

    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        rc = qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    const int has_bias = hp->arch == QF_ARCH_QWEN2;
    const int has_qk_norm = hp->arch == QF_ARCH_QWEN3;
    for (int64_t l = 0; l < hp->n_layer; l++) {
        qf_layer *L = &m->layers[l];
        char n[96];
#define BIND(field, suffix, n_in, n_out, opt)                                    \
        snprintf(n, sizeof n, "blk.%lld." suffix, (long long)l);                 \
        if ((rc = bind(m, &L->field, n, n_in, n_out, opt, err)) < 0) goto fail;
        BIND(attn_norm, "attn_norm.weight", E, 0, 0);
        BIND(wq, "attn_q.weight", E, QD, 0);
        BIND(wk, "attn_k.weight", E, KD, 0);
        BIND(wv, "attn_v.weight", E, VD, 0);
        BIND(bq, "attn_q.bias", QD, 0, !has_bias);
        BIND(bk, "attn_k.bias", KD, 0, !has_bias);
        BIND(bv, "attn_v.bias", VD, 0, !has_bias);
        BIND(q_norm, "attn_q_norm.weight", hp->head_dim_k, 0, !has_qk_norm);
        BIND(k_norm, "attn_k_norm.weight", hp->head_dim_k, 0, !has_qk_norm);
        BIND(wo, "attn_output.weight", OD, E, 0);
        BIND(ffn_norm, "ffn_norm.weight", E, 0, 0);
        BIND(ffn_gate, "ffn_gate.weight", E, hp->n_ff, 0);
        BIND(ffn_up, "ffn_up.weight", E, hp->n_ff, 0);
        BIND(ffn_down, "ffn_down.weight", hp->n_ff, E, 0);
#undef BIND
    }
    return 0;
fail:
    qf_model_free(m);
    return rc;
}

void qf_model_free(qf_model *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    for (uint32_t i = 0; i < m->n_shards; i++) gguf_close(&m->shards[i]);
    free(m->shards);
    if (m->file.map || m->file.path) gguf_close(&m->file);
    memset(m, 0, sizeof *m);
}

int qf_weight_row(const qf_weight *w, int64_t row, float *out) {
    if (!w->data || row < 0 || row >= w->n_out) return QF_EINVAL;
    const uint8_t *src = (const uint8_t *)w->data + (size_t)row * w->row_bytes;
    return qf_dequantize_row(w->type, src, out, w->n_in) == 0 ? 0 : QF_EUNSUPPORTED;
}
