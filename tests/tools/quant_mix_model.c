/* quant_mix_model - write a many-layer llama GGUF (and an imatrix for it) that
 * exercises llama-quantize's per-tensor mix rules, to compare
 * qforge-quantize's choices with the peer binary's byte for byte.
 *
 *   quant_mix_model TEMPLATE.gguf OUT.gguf OUT_IMATRIX.dat [N_LAYERS [N_HEAD_KV]]
 *
 * TEMPLATE supplies the tokenizer (its vocabulary size sets token_embd and
 * output). The model: hidden 256, feed-forward 256, 4 heads of 64, N_HEAD_KV
 * kv heads (default 1, so n_gqa = 4), N_LAYERS blocks (default 16: the
 * use_more_bits, n/8 and n/16 layer rules all select some layers), an untied
 * output.weight, F16 weights ~ N(0, 0.02), F32 norms. Every row is 256 long,
 * so every type applies without a shape fallback. The legacy .dat imatrix
 * has an entry for every 2-D blk.* weight and for output.weight. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_types.h"
#include "gguf.h"
#include "imatrix.h"
#include "numfmt.h"

static uint64_t rng_s = 0x9e3779b97f4a7c15ull;
static uint64_t rng_u64(void) {
    rng_s ^= rng_s << 13;
    rng_s ^= rng_s >> 7;
    rng_s ^= rng_s << 17;
    return rng_s;
}
static float unif(void) { return (float)((rng_u64() >> 40) + 0.5) / 16777216.f; }
static float gauss(void) { return sqrtf(-2.f * logf(unif())) * cosf(6.2831853f * unif()); }

typedef struct spec {
    char name[64];
    uint32_t n_dims;
    uint64_t ne[2];
    uint32_t type;
} spec;

int main(int argc, char **argv) {
    if (argc < 4 || argc > 6) {
        fprintf(stderr, "usage: quant_mix_model TEMPLATE.gguf OUT.gguf OUT_IMATRIX.dat [N_LAYERS [N_HEAD_KV]]\n");
        return 2;
    }
    const int n_layer = argc > 4 ? atoi(argv[4]) : 16;
    const int n_head = 4, n_head_kv = argc > 5 ? atoi(argv[5]) : 1, n_embd = 256, n_ff = 256, head_dim = 64;
    if (n_layer < 1 || n_layer > 200 || n_head_kv < 1 || n_head % n_head_kv) {
        fprintf(stderr, "quant_mix_model: error: bad N_LAYERS or N_HEAD_KV\n");
        return 2;
    }
    qf_err err = {0};
    gguf_file in;
    gguf_writer *w = NULL;
    qf_imatrix im;
    qf_imatrix_init(&im);
    spec *t = NULL;
    uint16_t *buf = NULL;
    int rc = 0, have_in = 0;
    if ((rc = gguf_open(&in, argv[1], &err))) goto fail;
    have_in = 1;
    uint64_t n_vocab = 0;
    const gguf_kv *tok = gguf_find_kv(&in, "tokenizer.ggml.tokens");
    if (!tok || tok->value.type != GGUF_VT_ARRAY) {
        rc = qf_set_err(&err, QF_EFORMAT, "%s: no tokenizer.ggml.tokens", argv[1]);
        goto fail;
    }
    n_vocab = tok->value.arr.n;

    w = gguf_writer_create(argv[2], &err);
    if (!w) {
        rc = QF_EIO;
        goto fail;
    }
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_str(w, "general.type", "model");
    gguf_writer_set_str(w, "general.name", "Quant Mix");
    gguf_writer_set_u32(w, "llama.block_count", (uint32_t)n_layer);
    gguf_writer_set_u32(w, "llama.context_length", 512);
    gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)n_embd);
    gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)n_ff);
    gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)n_head);
    gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)n_head_kv);
    gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.f);
    gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    gguf_writer_set_u32(w, "general.file_type", 1);
    gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)n_vocab);
    gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)head_dim);
    for (uint64_t i = 0; i < in.n_kv; i++)
        if (!strncmp(in.kv[i].key, "tokenizer.", 10)) gguf_writer_set_value(w, in.kv[i].key, &in.kv[i].value);
    gguf_writer_set_u32(w, "general.quantization_version", 2);

    /* tensors in the converter's order */
    size_t n_t = 3 + 9 * (size_t)n_layer, k = 0;
    t = calloc(n_t, sizeof *t);
    if (!t) {
        rc = qf_set_err(&err, QF_ENOMEM, "out of memory");
        goto fail;
    }
#define ADD(nd, a, b, ty, ...)                                                \
    do {                                                                      \
        snprintf(t[k].name, sizeof t[k].name, __VA_ARGS__);                  \
        t[k].n_dims = nd;                                                     \
        t[k].ne[0] = a;                                                       \
        t[k].ne[1] = b;                                                       \
        t[k].type = ty;                                                       \
        k++;                                                                  \
    } while (0)
    ADD(2, n_embd, n_vocab, GGML_TYPE_F16, "token_embd.weight");
    for (int l = 0; l < n_layer; l++) {
        ADD(1, n_embd, 1, GGML_TYPE_F32, "blk.%d.attn_norm.weight", l);
        ADD(2, n_embd, n_embd, GGML_TYPE_F16, "blk.%d.attn_q.weight", l);
        ADD(2, n_embd, head_dim * n_head_kv, GGML_TYPE_F16, "blk.%d.attn_k.weight", l);
        ADD(2, n_embd, head_dim * n_head_kv, GGML_TYPE_F16, "blk.%d.attn_v.weight", l);
        ADD(2, n_embd, n_embd, GGML_TYPE_F16, "blk.%d.attn_output.weight", l);
        ADD(1, n_embd, 1, GGML_TYPE_F32, "blk.%d.ffn_norm.weight", l);
        ADD(2, n_embd, n_ff, GGML_TYPE_F16, "blk.%d.ffn_gate.weight", l);
        ADD(2, n_embd, n_ff, GGML_TYPE_F16, "blk.%d.ffn_up.weight", l);
        ADD(2, n_ff, n_embd, GGML_TYPE_F16, "blk.%d.ffn_down.weight", l);
    }
    ADD(1, n_embd, 1, GGML_TYPE_F32, "output_norm.weight");
    ADD(2, n_embd, n_vocab, GGML_TYPE_F16, "output.weight");
#undef ADD
    for (size_t i = 0; i < n_t && !rc; i++) {
        int64_t r = gguf_writer_add_tensor(w, t[i].name, t[i].type, t[i].n_dims, t[i].ne);
        if (r < 0) rc = (int)r;
        if (!rc && t[i].n_dims == 2 && strcmp(t[i].name, "token_embd.weight") != 0) {
            qf_imatrix_entry *e;
            rc = qf_imatrix_add(&im, t[i].name, (uint32_t)t[i].ne[0], 1, &e, &err);
            for (uint64_t j = 0; !rc && j < t[i].ne[0]; j++) e->sum2[j] = expf(1.5f * gauss()) * 32.f;
            if (!rc) {
                e->counts[0] = 32.f;
                e->ncall = 32;
            }
        }
    }
    if (!rc) rc = gguf_writer_begin_data(w);
    buf = malloc((size_t)n_embd * n_vocab * 4 + 4096);
    for (size_t i = 0; i < n_t && !rc && buf; i++) {
        uint64_t n = t[i].ne[0] * t[i].ne[1];
        if (t[i].type == GGML_TYPE_F32) {
            float *f = (float *)buf;
            for (uint64_t j = 0; j < n; j++) f[j] = 1.f + 0.1f * gauss();
            rc = gguf_writer_write_tensor_data(w, f, n * 4);
        } else {
            for (uint64_t j = 0; j < n; j++) buf[j] = qf_f32_to_f16(0.02f * gauss());
            rc = gguf_writer_write_tensor_data(w, buf, n * 2);
        }
    }
    if (!buf && !rc) rc = qf_set_err(&err, QF_ENOMEM, "out of memory");
    if (rc) goto fail;
    rc = gguf_writer_finish(w);
    w = NULL;
    if (rc) goto fail;
    im.chunk_count = 32;
    if ((rc = qf_imatrix_add_dataset(&im, "mix", &err)) || (rc = qf_imatrix_write_dat(&im, argv[3], &err))) goto fail;
    qf_imatrix_free(&im);
    gguf_close(&in);
    free(t);
    free(buf);
    return 0;
fail:
    if (w) gguf_writer_abort(w);
    if (have_in) gguf_close(&in);
    qf_imatrix_free(&im);
    free(t);
    free(buf);
    fprintf(stderr, "quant_mix_model: error: %s\n", err.msg[0] ? err.msg : "failed");
    return 1;
}
