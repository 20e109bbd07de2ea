/* gen_synth_model - write a synthetic Hugging Face checkpoint directory.
 *
 * Random weights (deterministic from --seed and the tensor name), a real
 * config.json, and a real tokenizer: SentencePiece tokenizer.model for the
 * Llama/Mistral family, byte-level BPE tokenizer.json for Qwen2/Qwen3. Used by
 * tests (other architectures, sharding, BF16, tied/untied), by the demo when
 * the shared models are absent, and by the 1B-shape benchmarks.
 *
 *   gen_synth_model --arch llama|mistral|qwen2|qwen3|mixtral --out DIR
 *       [--hidden 64] [--ff 128] [--layers 2] [--heads 4] [--kv-heads 2]
 *       [--head-dim N] [--vocab 512] [--ctx 512] [--tie] [--dtype f32|f16|bf16]
 *       [--shards 1] [--seed 1] [--rope-scaling llama3] [--experts 8 --experts-used 2 (mixtral)]
 *
 * Memory: one tensor chunk at a time (weights are streamed to the writer).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "numfmt.h"
#include "safetensors.h"

typedef struct synth_cfg {
    const char *arch;      /* llama | mistral | qwen2 | qwen3 | mixtral */
    const char *out;
    int hidden, ff, layers, heads, kv_heads, head_dim, vocab, ctx, tie, shards;
    uint64_t seed;
    st_dtype dtype;
    int rope_llama3;
    int experts, experts_used; /* mixtral */
} synth_cfg;

static int is_qwen(const synth_cfg *c) { return strncmp(c->arch, "qwen", 4) == 0; }

/* ---------------------------------------------------------------- weights */

/* splitmix64: a tiny, well-mixed generator; one stream per (seed, tensor, chunk). */
static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

typedef struct tensor_spec {
    char name[128];
    uint32_t n_dims;
    uint64_t shape[2];
    int is_norm;   /* 1-D norm weight: values around 1 */
    int is_bias;   /* 1-D bias: small values */
} tensor_spec;

/* Element i of a tensor: uniform with std 0.02 for matrices (roughly the
 * scale of trained weights), 1 +- 0.1 for norms, +-0.01 for biases. Each
 * element depends only on (seed, name, i), so the output does not depend on
 * the order tensors are written or on sharding. */
static void fill_values(const tensor_spec *t, uint64_t seed, uint64_t first, float *dst, size_t n) {
    uint64_t base = seed * 0x100000001B3ull ^ hash_name(t->name);
    const float amp = 0.02f * 1.7320508f; /* uniform(-a, a) has std a/sqrt(3) */
    for (size_t j = 0; j < n; j++) {
        uint64_t s = base + (first + j) * 0x9E3779B97F4A7C15ull;
        uint64_t r = splitmix64(&s);
        float u = (float)((r >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; /* [-1, 1) */
        if (t->is_norm) dst[j] = 1.0f + 0.1f * u;
        else if (t->is_bias) dst[j] = 0.01f * u;
        else dst[j] = amp * u;
    }
}

static int add_spec(tensor_spec *specs, int n, const char *name, uint64_t rows, uint64_t cols) {
    tensor_spec *t = &specs[n];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    if (cols == 0) {
        t->n_dims = 1;
        t->shape[0] = rows;
        t->is_norm = strstr(name, "norm") != NULL;
        t->is_bias = strstr(name, ".bias") != NULL;
    } else {
        t->n_dims = 2;
        t->shape[0] = rows;
        t->shape[1] = cols;
    }
    return n + 1;
}

/* The HF tensor list of the architecture; shapes are row-major [out, in]. */
static int build_specs(const synth_cfg *c, tensor_spec *specs) {
    int n = 0;
    char nm[128];
    uint64_t H = c->hidden, F = c->ff, V = c->vocab;
    uint64_t q_dim = (uint64_t)c->heads * c->head_dim, kv_dim = (uint64_t)c->kv_heads * c->head_dim;
    n = add_spec(specs, n, "model.embed_tokens.weight", V, H);
    for (int l = 0; l < c->layers; l++) {
#define LAYER(fmt, r, cc) do { snprintf(nm, sizeof nm, "model.layers.%d." fmt, l); n = add_spec(specs, n, nm, r, cc); } while (0)
        LAYER("input_layernorm.weight", H, 0);
        LAYER("self_attn.q_proj.weight", q_dim, H);
        LAYER("self_attn.k_proj.weight", kv_dim, H);
        LAYER("self_attn.v_proj.weight", kv_dim, H);
        if (strcmp(c->arch, "qwen2") == 0) {
            LAYER("self_attn.q_proj.bias", q_dim, 0);
            LAYER("self_attn.k_proj.bias", kv_dim, 0);
            LAYER("self_attn.v_proj.bias", kv_dim, 0);
        }
        if (strcmp(c->arch, "qwen3") == 0) {
            LAYER("self_attn.q_norm.weight", (uint64_t)c->head_dim, 0);
            LAYER("self_attn.k_norm.weight", (uint64_t)c->head_dim, 0);
        }
        LAYER("self_attn.o_proj.weight", H, q_dim);
        LAYER("post_attention_layernorm.weight", H, 0);
        if (strcmp(c->arch, "mixtral") == 0) { /* router, then w1 = gate, w2 = down, w3 = up per expert */
            LAYER("block_sparse_moe.gate.weight", (uint64_t)c->experts, H);
            for (int e = 0; e < c->experts; e++) {
                char x[96];
                snprintf(x, sizeof x, "block_sparse_moe.experts.%d.w1.weight", e);
                snprintf(nm, sizeof nm, "model.layers.%d.%s", l, x); n = add_spec(specs, n, nm, F, H);
                snprintf(x, sizeof x, "block_sparse_moe.experts.%d.w2.weight", e);
                snprintf(nm, sizeof nm, "model.layers.%d.%s", l, x); n = add_spec(specs, n, nm, H, F);
                snprintf(x, sizeof x, "block_sparse_moe.experts.%d.w3.weight", e);
                snprintf(nm, sizeof nm, "model.layers.%d.%s", l, x); n = add_spec(specs, n, nm, F, H);
            }
        } else {
            LAYER("mlp.gate_proj.weight", F, H);
            LAYER("mlp.up_proj.weight", F, H);
            LAYER("mlp.down_proj.weight", H, F);
        }
#undef LAYER
    }
    n = add_spec(specs, n, "model.norm.weight", H, 0);
    if (!c->tie) n = add_spec(specs, n, "lm_head.weight", V, H);
    return n;
}

/* Which shard a tensor goes to: layers split evenly, embeddings first, head last. */
static int shard_of(const synth_cfg *c, const char *name) {
    if (c->shards <= 1) return 0;
    const char *p = strstr(name, "layers.");
    if (p) {
        int l = atoi(p + 7);
        return (int)((int64_t)l * c->shards / c->layers);
    }
    if (strstr(name, "embed_tokens")) return 0;
    return c->shards - 1;
}

static int write_tensor_data(st_writer *w, const tensor_spec *t, const synth_cfg *c) {
    uint64_t n = t->shape[0] * (t->n_dims == 2 ? t->shape[1] : 1);
    enum { CHUNK = 1 << 20 };
    float *f = malloc(CHUNK * sizeof(float));
    void *buf = malloc(CHUNK * 4);
    int rc = 0;
    if (!f || !buf) { rc = -1; goto done; }
    for (uint64_t i = 0; i < n && rc == 0; i += CHUNK) {
        size_t m = (size_t)(n - i < CHUNK ? n - i : CHUNK);
        fill_values(t, c->seed, i, f, m);
        size_t bytes;
        if (c->dtype == ST_F32) { memcpy(buf, f, m * 4); bytes = m * 4; }
        else if (c->dtype == ST_F16) { qf_f32_to_f16_row(f, buf, m); bytes = m * 2; }
        else { qf_f32_to_bf16_row(f, buf, m); bytes = m * 2; }
        rc = st_writer_write(w, buf, bytes);
    }
done:
    free(f);
    free(buf);
    return rc;
}

static const tensor_spec *find_spec(const tensor_spec *specs, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(specs[i].name, name) == 0) return &specs[i];
    return NULL;
}

static int write_weights(const synth_cfg *c, qf_err *err) {
    int cap = 16 + c->layers * (16 + 3 * c->experts);
    tensor_spec *specs = calloc(cap, sizeof *specs);
    if (!specs) return qf_set_err(err, QF_ENOMEM, "out of memory");
    int n = build_specs(c, specs);
    int rc = 0;
    char path[4096];
    FILE *index = NULL;
    uint64_t total_size = 0;
    for (int s = 0; s < c->shards && rc == 0; s++) {
        if (c->shards == 1) snprintf(path, sizeof path, "%s/model.safetensors", c->out);
        else snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", c->out, s + 1, c->shards);
        st_writer *w = st_writer_create(path, err);
        if (!w) { rc = err->code ? err->code : QF_EIO; break; }
        st_writer_add_metadata(w, "format", "pt");
        uint64_t n_here = 0;
        for (int i = 0; i < n; i++) {
            if (shard_of(c, specs[i].name) != s) continue;
            rc = st_writer_add_tensor(w, specs[i].name, c->dtype, specs[i].n_dims, specs[i].shape);
            if (rc) break;
            total_size += specs[i].shape[0] * (specs[i].n_dims == 2 ? specs[i].shape[1] : 1) * st_dtype_size(c->dtype);
            n_here++;
        }
        if (rc == 0) rc = st_writer_begin_data(w);
        for (uint64_t i = 0; i < n_here && rc == 0; i++) {
            const tensor_spec *t = find_spec(specs, n, st_writer_tensor_name(w, i));
            rc = t ? write_tensor_data(w, t, c) : QF_EINVAL;
        }
        if (rc == 0) rc = st_writer_finish(w);
        else st_writer_abort(w);
    }
    if (rc == 0 && c->shards > 1) {
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", c->out);
        index = fopen(path, "w");
        if (!index) { rc = qf_set_err(err, QF_EIO, "%s: %s", path, strerror(errno)); goto done; }
        fprintf(index, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n  \"weight_map\": {\n",
                (unsigned long long)total_size);
        /* names sorted, as transformers writes them */
        const char **names = malloc(n * sizeof *names);
        for (int i = 0; i < n; i++) names[i] = specs[i].name;
        for (int i = 1; i < n; i++)
            for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
                const char *t = names[j]; names[j] = names[j - 1]; names[j - 1] = t;
            }
        for (int i = 0; i < n; i++)
            fprintf(index, "    \"%s\": \"model-%05d-of-%05d.safetensors\"%s\n", names[i],
                    shard_of(c, names[i]) + 1, c->shards, i + 1 < n ? "," : "");
        fprintf(index, "  }\n}\n");
        free(names);
        if (fclose(index) != 0) rc = qf_set_err(err, QF_EIO, "%s: write failed", path);
    }
done:
    free(specs);
    return rc;
}

/* ---------------------------------------------------------------- config */

static const char *dtype_torch(st_dtype d) {
    return d == ST_F32 ? "float32" : d == ST_F16 ? "float16" : "bfloat16";
}

static int write_config(const synth_cfg *c, qf_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", c->out);
    FILE *f = fopen(path, "w");
    if (!f) return qf_set_err(err, QF_EIO, "%s: %s", path, strerror(errno));
    const char *cls = strcmp(c->arch, "llama") == 0 ? "LlamaForCausalLM"
                    : strcmp(c->arch, "mistral") == 0 ? "MistralForCausalLM"
                    : strcmp(c->arch, "mixtral") == 0 ? "MixtralForCausalLM"
                    : strcmp(c->arch, "qwen2") == 0 ? "Qwen2ForCausalLM" : "Qwen3ForCausalLM";
    int bos = is_qwen(c) ? c->vocab - 3 : 1, eos = is_qwen(c) ? c->vocab - 3 : 2;
    fprintf(f, "{\n  \"architectures\": [\n    \"%s\"\n  ],\n", cls);
    fprintf(f, "  \"attention_dropout\": 0.0,\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n", bos, eos);
    fprintf(f, "  \"head_dim\": %d,\n  \"hidden_act\": \"silu\",\n  \"hidden_size\": %d,\n", c->head_dim, c->hidden);
    fprintf(f, "  \"initializer_range\": 0.02,\n  \"intermediate_size\": %d,\n", c->ff);
    fprintf(f, "  \"max_position_embeddings\": %d,\n  \"model_type\": \"%s\",\n", c->ctx, c->arch);
    fprintf(f, "  \"num_attention_heads\": %d,\n  \"num_hidden_layers\": %d,\n  \"num_key_value_heads\": %d,\n",
            c->heads, c->layers, c->kv_heads);
    fprintf(f, "  \"rms_norm_eps\": %s,\n", is_qwen(c) ? "1e-06" : "1e-05");
    if (c->rope_llama3)
        fprintf(f, "  \"rope_scaling\": {\n    \"factor\": 8.0,\n    \"high_freq_factor\": 4.0,\n"
                   "    \"low_freq_factor\": 1.0,\n    \"original_max_position_embeddings\": 8192,\n"
                   "    \"rope_type\": \"llama3\"\n  },\n");
    else
        fprintf(f, "  \"rope_scaling\": null,\n");
    fprintf(f, "  \"rope_theta\": %s,\n", is_qwen(c) ? "1000000.0" : c->rope_llama3 ? "500000.0" : "10000.0");
    if (strcmp(c->arch, "mistral") == 0) fprintf(f, "  \"sliding_window\": null,\n");
    if (strcmp(c->arch, "mixtral") == 0)
        fprintf(f, "  \"num_local_experts\": %d,\n  \"num_experts_per_tok\": %d,\n", c->experts, c->experts_used);
    if (is_qwen(c)) fprintf(f, "  \"use_sliding_window\": false,\n  \"sliding_window\": %d,\n  \"max_window_layers\": %d,\n", c->ctx, c->layers);
    if (strcmp(c->arch, "qwen2") == 0) fprintf(f, "  \"attention_bias\": true,\n");
    fprintf(f, "  \"tie_word_embeddings\": %s,\n  \"torch_dtype\": \"%s\",\n", c->tie ? "true" : "false", dtype_torch(c->dtype));
    fprintf(f, "  \"use_cache\": true,\n  \"vocab_size\": %d\n}\n", c->vocab);
    if (fclose(f) != 0) return qf_set_err(err, QF_EIO, "%s: write failed", path);
    snprintf(path, sizeof path, "%s/generation_config.json", c->out);
    f = fopen(path, "w");
    if (!f) return qf_set_err(err, QF_EIO, "%s: %s", path, strerror(errno));
    fprintf(f, "{\n  \"_from_model_config\": true,\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d\n}\n", bos, eos);
    if (fclose(f) != 0) return qf_set_err(err, QF_EIO, "%s: write failed", path);
    return 0;
}

/* ------------------------------------------------- SentencePiece tokenizer */

/* Protobuf wire format: key = (field << 3) | wire_type; 0 varint, 2 bytes, 5 fixed32. */
typedef struct pbuf { uint8_t *p; size_t n, cap; } pbuf;

static void pb_byte(pbuf *b, uint8_t v) {
    if (b->n == b->cap) { b->cap = b->cap ? 2 * b->cap : 4096; b->p = realloc(b->p, b->cap); }
    b->p[b->n++] = v;
}
static void pb_varint(pbuf *b, uint64_t v) {
    while (v >= 0x80) { pb_byte(b, (uint8_t)(v | 0x80)); v >>= 7; }
    pb_byte(b, (uint8_t)v);
}
static void pb_bytes(pbuf *b, int field, const void *data, size_t n) {
    pb_varint(b, ((uint64_t)field << 3) | 2);
    pb_varint(b, n);
    for (size_t i = 0; i < n; i++) pb_byte(b, ((const uint8_t *)data)[i]);
}
static void pb_uint(pbuf *b, int field, uint64_t v) { pb_varint(b, (uint64_t)field << 3); pb_varint(b, v); }
static void pb_float(pbuf *b, int field, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    pb_varint(b, ((uint64_t)field << 3) | 5);
    for (int i = 0; i < 4; i++) pb_byte(b, (uint8_t)(u >> (8 * i)));
}

enum { SP_NORMAL = 1, SP_UNKNOWN = 2, SP_CONTROL = 3, SP_BYTE = 6 };

static void sp_piece(pbuf *model, const char *piece, float score, int type) {
    pbuf p = {0};
    pb_bytes(&p, 1, piece, strlen(piece));
    pb_float(&p, 2, score);
    if (type != SP_NORMAL) pb_uint(&p, 3, (uint64_t)type);
    pb_bytes(model, 1, p.p, p.n);
    free(p.p);
}

/* Pieces after the 259 fixed ones: "▁", single characters, then "▁x", then
 * pairs, then triples, so every piece is the concatenation of two earlier
 * pieces (SentencePiece BPE merges by score, higher first). */
static const char SP_ALPHABET[] = "etaoinshrdlucmfwypvbgkjqxzETAOINSHRDLUCMFWYPVBGKJQXZ.,'!?0123456789-";

static int sp_nth_piece(int k, char *out, size_t cap) {
    const int A = (int)sizeof SP_ALPHABET - 1;
    const char *ws = "\xe2\x96\x81"; /* U+2581 */
    if (k == 0) { snprintf(out, cap, "%s", ws); return 0; }
    k -= 1;
    if (k < A) { snprintf(out, cap, "%c", SP_ALPHABET[k]); return 0; }
    k -= A;
    if (k < A) { snprintf(out, cap, "%s%c", ws, SP_ALPHABET[k]); return 0; }
    k -= A;
    if (k < A * A) { snprintf(out, cap, "%c%c", SP_ALPHABET[k / A], SP_ALPHABET[k % A]); return 0; }
    k -= A * A;
    if (k < A * A) { snprintf(out, cap, "%s%c%c", ws, SP_ALPHABET[k / A], SP_ALPHABET[k % A]); return 0; }
    k -= A * A;
    if (k < A * A * A) {
        snprintf(out, cap, "%c%c%c", SP_ALPHABET[k / (A * A)], SP_ALPHABET[(k / A) % A], SP_ALPHABET[k % A]);
        return 0;
    }
    return -1;
}

static int write_spm_tokenizer(const synth_cfg *c, qf_err *err) {
    pbuf m = {0};
    char piece[64], path[4096];
    int rc = 0;
    sp_piece(&m, "<unk>", 0.0f, SP_UNKNOWN);
    sp_piece(&m, "<s>", 0.0f, SP_CONTROL);
    sp_piece(&m, "</s>", 0.0f, SP_CONTROL);
    for (int b = 0; b < 256; b++) {
        snprintf(piece, sizeof piece, "<0x%02X>", b);
        sp_piece(&m, piece, 0.0f, SP_BYTE);
    }
    for (int i = 259; i < c->vocab; i++) {
        if (sp_nth_piece(i - 259, piece, sizeof piece) != 0) {
            rc = qf_set_err(err, QF_EINVAL, "vocab %d is too large for the synthetic tokenizer", c->vocab);
            goto done;
        }
        sp_piece(&m, piece, -(float)(i - 259), SP_NORMAL);
    }
    /* trainer_spec (field 2): model_type=BPE(2) #3, vocab_size #4, byte_fallback #35,
     * unk_id #40, bos_id #41, eos_id #42, pad_id #43 (-1 as a 64-bit varint). */
    pbuf t = {0};
    pb_uint(&t, 3, 2);
    pb_uint(&t, 4, (uint64_t)c->vocab);
    pb_uint(&t, 35, 1);
    pb_uint(&t, 40, 0);
    pb_uint(&t, 41, 1);
    pb_uint(&t, 42, 2);
    pb_uint(&t, 43, (uint64_t)(int64_t)-1);
    pb_bytes(&m, 2, t.p, t.n);
    free(t.p);
    /* normalizer_spec (field 3): name #1 "identity", add_dummy_prefix #3,
     * remove_extra_whitespaces #4 false, escape_whitespaces #5. */
    pbuf ns = {0};
    pb_bytes(&ns, 1, "identity", 8);
    pb_uint(&ns, 3, 1);
    pb_uint(&ns, 4, 0);
    pb_uint(&ns, 5, 1);
    pb_bytes(&m, 3, ns.p, ns.n);
    free(ns.p);

    snprintf(path, sizeof path, "%s/tokenizer.model", c->out);
    FILE *f = fopen(path, "wb");
    if (!f) { rc = qf_set_err(err, QF_EIO, "%s: %s", path, strerror(errno)); goto done; }
    if (fwrite(m.p, 1, m.n, f) != m.n) rc = qf_set_err(err, QF_EIO, "%s: write failed", path);
    if (fclose(f) != 0 && rc == 0) rc = qf_set_err(err, QF_EIO, "%s: write failed", path);
    if (rc) goto done;

    snprintf(path, sizeof path, "%s/tokenizer_config.json", c->out);
    f = fopen(path, "w");
    if (!f) { rc = qf_set_err(err, QF_EIO, "%s: %s", path, strerror(errno)); goto done; }
    fprintf(f, "{\n  \"add_bos_token\": true,\n  \"add_eos_token\": false,\n  \"bos_token\": \"<s>\",\n"
               "  \"eos_token\": \"</s>\",\n  \"unk_token\": \"<unk>\",\n  \"pad_token\": null,\n"
               "  \"legacy\": true,\n  \"model_max_length\": %d,\n  \"tokenizer_class\": \"LlamaTokenizer\"\n}\n",
            c->ctx);
    if (fclose(f) != 0) rc = qf_set_err(err, QF_EIO, "%s: write failed", path);
    if (rc) goto done;
    snprintf(path, sizeof path, "%s/special_tokens_map.json", c->out);
    f = fopen(path, "w");
    if (!f) { rc = qf_set_err(err, QF_EIO, "%s: %s", path, strerror(errno)); goto done; }
    fprintf(f, "{\n  \"bos_token\": \"<s>\",\n  \"eos_token\": \"</s>\",\n  \"unk_token\": \"<unk>\"\n}\n");
    if (fclose(f) != 0) rc = qf_set_err(err, QF_EIO, "%s: write failed", path);
done:
    free(m.p);
    return rc;
}

/* ------------------------------------------------ byte-level BPE tokenizer */

/* GPT-2 byte->unicode map: printable bytes map to themselves, the other 68
 * bytes to U+0100 + n in byte order. Writes the UTF-8 of byte b's symbol. */
static void byte_symbol(int b, char *out) {
    int cp;
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) cp = b;
    else {
        int n = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) n++;
        cp = 256 + n;
    }
    if (cp < 0x80) { out[0] = (char)cp; out[1] = 0; }
    else { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); out[2] = 0; }
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
        else if ((uint8_t)*s < 0x20) fprintf(f, "\\u%04x", (uint8_t)*s);
        else fputc(*s, f);
    }
    fputc('"', f);
}

static const char BPE_LETTERS[] = "etaoinsrhldcumfpgwybvkxjqz";

static int write_bpe_tokenizer(const synth_cfg *c, qf_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", c->out);
    FILE *f = fopen(path, "w");
    if (!f) return qf_set_err(err, QF_EIO, "%s: %s", path, strerror(errno));
    const int n_special = 3, L = 26;
    int n_regular = c->vocab - n_special;
    if (n_regular < 256) {
        fclose(f);
        remove(path);
        return qf_set_err(err, QF_EINVAL, "vocab %d too small for a byte-level tokenizer (needs >= 259)", c->vocab);
    }
    /* merges: "Ġ x" for letters, then "x y" pairs, then "Ġx y" */
    int n_merges = n_regular - 256;
    if (n_merges > L + L * L + L * L) n_merges = L + L * L + L * L;
    const char *special[3] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    const char *pat = strcmp(c->arch, "qwen2") == 0 || strcmp(c->arch, "qwen3") == 0
        ? "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
        : "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    fprintf(f, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [\n");
    for (int i = 0; i < n_special; i++)
        fprintf(f, "    {\"id\": %d, \"content\": \"%s\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                   "\"normalized\": false, \"special\": true}%s\n", n_regular + i, special[i], i + 1 < n_special ? "," : "");
    fprintf(f, "  ],\n  \"normalizer\": {\"type\": \"NFC\"},\n");
    fprintf(f, "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": ");
    json_str(f, pat); /* the regex's backslashes need JSON escaping */
    fprintf(f, "}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
               "\"trim_offsets\": false, \"use_regex\": false}]},\n");
    fprintf(f, "  \"post_processor\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false},\n");
    fprintf(f, "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false},\n");
    fprintf(f, "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
               "    \"continuing_subword_prefix\": \"\",\n    \"end_of_word_suffix\": \"\",\n    \"fuse_unk\": false,\n"
               "    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n    \"vocab\": {\n");
    char sym[8], tok[72], left[32], right[32];
    int id = 0;
    for (int b = 0; b < 256; b++, id++) {
        byte_symbol(b, sym);
        fprintf(f, "      ");
        json_str(f, sym);
        fprintf(f, ": %d%s\n", id, id + 1 < n_regular ? "," : "");
    }
    char (*merge_l)[32] = calloc(n_merges > 0 ? n_merges : 1, 32), (*merge_r)[32] = calloc(n_merges > 0 ? n_merges : 1, 32);
    for (int k = 0; k < n_merges; k++) {
        if (k < L) { snprintf(left, sizeof left, "\xc4\xa0"); snprintf(right, sizeof right, "%c", BPE_LETTERS[k]); }
        else if (k < L + L * L) { int j = k - L; snprintf(left, sizeof left, "%c", BPE_LETTERS[j / L]); snprintf(right, sizeof right, "%c", BPE_LETTERS[j % L]); }
        else { int j = k - L - L * L; snprintf(left, sizeof left, "\xc4\xa0%c", BPE_LETTERS[j / L]); snprintf(right, sizeof right, "%c", BPE_LETTERS[j % L]); }
        snprintf(tok, sizeof tok, "%s%s", left, right);
        memcpy(merge_l[k], left, 32);
        memcpy(merge_r[k], right, 32);
        fprintf(f, "      ");
        json_str(f, tok);
        fprintf(f, ": %d%s\n", id, id + 1 < n_regular ? "," : "");
        id++;
    }
    /* pad the regular vocab with unreachable tokens if merges ran out */
    for (; id < n_regular; id++)
        fprintf(f, "      \"<|unused_%d|>\": %d%s\n", id, id, id + 1 < n_regular ? "," : "");
    fprintf(f, "    },\n    \"merges\": [\n");
    for (int k = 0; k < n_merges; k++) {
        fprintf(f, "      ");
        snprintf(tok, sizeof tok, "%s %s", merge_l[k], merge_r[k]);
        json_str(f, tok);
        fprintf(f, "%s\n", k + 1 < n_merges ? "," : "");
    }
    fprintf(f, "    ]\n  }\n}\n");
    free(merge_l);
    free(merge_r);
    if (fclose(f) != 0) return qf_set_err(err, QF_EIO, "%s: write failed", path);

    snprintf(path, sizeof path, "%s/tokenizer_config.json", c->out);
    f = fopen(path, "w");
    if (!f) return qf_set_err(err, QF_EIO, "%s: %s", path, strerror(errno));
    fprintf(f, "{\n  \"add_bos_token\": false,\n  \"add_prefix_space\": false,\n  \"bos_token\": null,\n"
               "  \"chat_template\": \"{%% for message in messages %%}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{%% endfor %%}\",\n"
               "  \"eos_token\": \"<|endoftext|>\",\n  \"pad_token\": \"<|endoftext|>\",\n  \"unk_token\": null,\n"
               "  \"model_max_length\": %d,\n  \"tokenizer_class\": \"Qwen2Tokenizer\"\n}\n", c->ctx);
    if (fclose(f) != 0) return qf_set_err(err, QF_EIO, "%s: write failed", path);
    return 0;
}

/* ------------------------------------------------------------------ main */

static void usage(FILE *f) {
    fprintf(f, "usage: gen_synth_model --arch llama|mistral|qwen2|qwen3|mixtral --out DIR [--hidden 64] [--ff 128]\n"
               "       [--layers 2] [--heads 4] [--kv-heads 2] [--head-dim N] [--vocab 512] [--ctx 512]\n"
               "       [--tie] [--dtype f32|f16|bf16] [--shards 1] [--seed 1] [--rope-scaling llama3]\n"
               "       [--experts N --experts-used K] (mixtral)\n");
}

int main(int argc, char **argv) {
    synth_cfg c = {.arch = "llama", .out = NULL, .hidden = 64, .ff = 128, .layers = 2, .heads = 4,
                   .kv_heads = 2, .head_dim = 0, .vocab = 512, .ctx = 512, .tie = 0, .shards = 1,
                   .seed = 1, .dtype = ST_F32, .rope_llama3 = 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define INTOPT(flag, field) if (strcmp(a, flag) == 0 && v) { c.field = atoi(v); i++; continue; }
        INTOPT("--hidden", hidden) INTOPT("--ff", ff) INTOPT("--layers", layers) INTOPT("--heads", heads)
        INTOPT("--kv-heads", kv_heads) INTOPT("--head-dim", head_dim) INTOPT("--vocab", vocab)
        INTOPT("--ctx", ctx) INTOPT("--shards", shards) INTOPT("--experts", experts) INTOPT("--experts-used", experts_used)
#undef INTOPT
        if (strcmp(a, "--arch") == 0 && v) { c.arch = v; i++; }
        else if (strcmp(a, "--out") == 0 && v) { c.out = v; i++; }
        else if (strcmp(a, "--seed") == 0 && v) { c.seed = strtoull(v, NULL, 10); i++; }
        else if (strcmp(a, "--tie") == 0) c.tie = 1;
        else if (strcmp(a, "--rope-scaling") == 0 && v && strcmp(v, "llama3") == 0) { c.rope_llama3 = 1; i++; }
        else if (strcmp(a, "--dtype") == 0 && v) {
            c.dtype = strcmp(v, "f32") == 0 ? ST_F32 : strcmp(v, "f16") == 0 ? ST_F16 : strcmp(v, "bf16") == 0 ? ST_BF16 : ST_DTYPE_COUNT;
            i++;
            if (c.dtype == ST_DTYPE_COUNT) { fprintf(stderr, "gen_synth_model: error: unknown dtype '%s'\n", v); return 2; }
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) { usage(stdout); return 0; }
        else { fprintf(stderr, "gen_synth_model: error: unknown option '%s'\n", a); usage(stderr); return 2; }
    }
    if (!c.out) { usage(stderr); return 2; }
    if (strcmp(c.arch, "mixtral") == 0 && (c.experts < 1 || c.experts_used < 1 || c.experts_used > c.experts)) {
        fprintf(stderr, "gen_synth_model: error: mixtral needs --experts N and --experts-used K (1 <= K <= N)\n");
        return 2;
    }
    if (strcmp(c.arch, "mixtral") != 0) c.experts = 0;
    if (strcmp(c.arch, "llama") && strcmp(c.arch, "mistral") && strcmp(c.arch, "qwen2") && strcmp(c.arch, "qwen3") &&
        strcmp(c.arch, "mixtral")) {
        fprintf(stderr, "gen_synth_model: error: unknown arch '%s'\n", c.arch);
        return 2;
    }
    if (c.head_dim == 0) c.head_dim = c.hidden / c.heads;
    if (c.hidden <= 0 || c.ff <= 0 || c.layers <= 0 || c.heads <= 0 || c.kv_heads <= 0 || c.heads % c.kv_heads ||
        c.shards <= 0 || c.shards > c.layers + 1 || c.vocab < 259) {
        fprintf(stderr, "gen_synth_model: error: inconsistent shape options\n");
        return 2;
    }
    if (mkdir(c.out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "gen_synth_model: error: %s: %s\n", c.out, strerror(errno));
        return 1;
    }
    qf_err err = {0};
    int rc = write_config(&c, &err);
    if (rc == 0) rc = is_qwen(&c) ? write_bpe_tokenizer(&c, &err) : write_spm_tokenizer(&c, &err);
    if (rc == 0) rc = write_weights(&c, &err);
    if (rc) {
        fprintf(stderr, "gen_synth_model: error: %s\n", err.msg[0] ? err.msg : "failed");
        return 1;
    }
    printf("%s\n", c.out);
    return 0;
}
