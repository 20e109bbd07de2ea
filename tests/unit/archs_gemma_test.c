/* archs_gemma_test.c - Gemma, Gemma 2 and Granite: the HF naming rules and
 * config.json defaults of formats/hf_arch.c, and the forward pass of
 * verify/ against llama.cpp's oracles (shared/oracles/llamacpp/archs:
 * llama-perplexity's numbers on llama.cpp's own GGUFs, PROVENANCE.md). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qf_test.h"
#include "hf_arch.h"
#include "json.h"
#include "model.h"
#include "perplexity.h"
#include "text.h"

#define ARCHS "oracles/llamacpp/archs"
#define TEXT "corpus/tinystories-gen/test.txt"

/* GGUF name of HF tensor `hf` for class `cls` ("" when unmapped). */
static const char *map(const char *cls, const char *hf, char *buf, size_t n) {
    const qf_hf_arch *a = qf_hf_arch_find(cls);
    int64_t bid;
    buf[0] = 0;
    if (a && !qf_hf_map_tensor(a, hf, buf, n, &bid)) buf[0] = 0;
    return buf;
}

static void test_tensor_names(qf_test *t) {
    char b[128];
    const qf_hf_arch *g = qf_hf_arch_find("GemmaForCausalLM"), *g2 = qf_hf_arch_find("Gemma2ForCausalLM");
    const qf_hf_arch *gr = qf_hf_arch_find("GraniteForCausalLM"), *ll = qf_hf_arch_find("LlamaForCausalLM");
    REQUIRE(t, g && g2 && gr && ll, "classes known");
    CHECK(t, !strcmp(g->gguf_arch, "gemma") && !strcmp(g2->gguf_arch, "gemma2") && !strcmp(gr->gguf_arch, "granite"),
          "gguf arch names");
    /* Gemma 2's post_attention_layernorm is a norm of the attention output, not the MLP input */
    CHECK(t, !strcmp(map("Gemma2ForCausalLM", "model.layers.3.post_attention_layernorm.weight", b, sizeof b),
                     "blk.3.post_attention_norm.weight"), "%s", b);
    CHECK(t, !strcmp(map("Gemma2ForCausalLM", "model.layers.3.pre_feedforward_layernorm.weight", b, sizeof b),
                     "blk.3.ffn_norm.weight"), "%s", b);
    CHECK(t, !strcmp(map("Gemma2ForCausalLM", "model.layers.0.post_feedforward_layernorm.weight", b, sizeof b),
                     "blk.0.post_ffw_norm.weight"), "%s", b);
    CHECK(t, !strcmp(map("GemmaForCausalLM", "model.layers.3.post_attention_layernorm.weight", b, sizeof b),
                     "blk.3.ffn_norm.weight"), "%s", b);
    CHECK(t, !strcmp(map("GemmaForCausalLM", "model.layers.3.pre_feedforward_layernorm.weight", b, sizeof b), ""),
          "gemma 1 has no pre_feedforward_layernorm: %s", b);
    /* Gemma drops lm_head (tied); the others keep it */
    CHECK(t, qf_hf_skip_tensor(g, "lm_head.weight") && qf_hf_skip_tensor(g2, "lm_head.weight"), "gemma lm_head");
    CHECK(t, !qf_hf_skip_tensor(ll, "lm_head.weight") && !qf_hf_skip_tensor(gr, "lm_head.weight"), "llama lm_head");
    CHECK(t, !strcmp(map("GraniteForCausalLM", "lm_head.weight", b, sizeof b), "output.weight"), "%s", b);
    CHECK(t, qf_hf_skip_tensor(g2, "model.layers.0.self_attn.rotary_emb.inv_freq"), "buffers skipped");
}

static int read_cfg(const char *text, const qf_hf_arch **a, qf_hf_hparams *hp, qf_err *err) {
    qf_json j;
    int rc = qf_json_parse(&j, text, strlen(text), "config.json", err);
    if (rc < 0) return rc;
    rc = qf_hf_config_read(&j, "config.json", a, hp, err);
    qf_json_free(&j);
    return rc;
}

static void test_config_defaults(qf_test *t) {
    const qf_hf_arch *a;
    qf_hf_hparams hp;
    qf_err err = {0};
    const char *gemma = "{\"architectures\":[\"GemmaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":128,"
                        "\"num_attention_heads\":4,\"num_hidden_layers\":2,\"vocab_size\":640,\"head_dim\":32}";
    REQUIRE(t, read_cfg(gemma, &a, &hp, &err) == 0, "%s", err.msg);
    CHECK(t, hp.tie_embeddings == 1 && hp.head_dim == 32, "gemma ties by default (tie %d, head_dim %lld)",
          hp.tie_embeddings, (long long)hp.head_dim);
    const char *llama = "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":128,"
                        "\"num_attention_heads\":4,\"num_hidden_layers\":2,\"vocab_size\":640}";
    REQUIRE(t, read_cfg(llama, &a, &hp, &err) == 0, "%s", err.msg);
    CHECK(t, hp.tie_embeddings == 0, "llama does not tie by default");
    /* Granite ignores head_dim (llama.cpp's converter pops it) */
    const char *granite = "{\"architectures\":[\"GraniteForCausalLM\"],\"hidden_size\":64,\"intermediate_size\":128,"
                          "\"num_attention_heads\":4,\"num_hidden_layers\":2,\"vocab_size\":512,\"head_dim\":8}";
    REQUIRE(t, read_cfg(granite, &a, &hp, &err) == 0, "%s", err.msg);
    CHECK(t, hp.head_dim == 16, "granite head_dim %lld, want 64/4", (long long)hp.head_dim);
}

/* Perplexity of `model` over the first 20 chunks of 128 tokens of the test
 * text, llama-perplexity's protocol (the oracle's command). */
static int ppl_of(qf_test *t, const char *model, int act_llamacpp, double *ppl) {
    char text[512];
    if (!qf_test_data(t, TEXT, text, sizeof text)) return -1;
    qf_err err = {0};
    qf_model m;
    if (qf_model_load(&m, model, &err) < 0) {
        CHECK(t, 0, "%s", err.msg);
        return -1;
    }
    qf_text tx;
    int rc = qf_text_init_model(&tx, &m, &err);
    int32_t *ids = NULL;
    int64_t n = 0;
    if (rc == 0) rc = qf_text_encode_file(&tx, text, 20 * 128, 1, &ids, &n, &err);
    qf_ppl_params p = {.n_ctx = 128, .max_chunks = 20, .n_threads = 1};
    if (rc == 0) qf_text_bos(&tx, &p.add_bos, &p.bos_id);
    qf_model_source ms;
    int have_ms = 0;
    if (rc == 0 && (rc = qf_model_source_init(&ms, &m, 128, 0, &err)) == 0) {
        have_ms = 1;
        ms.ctx.act_llamacpp = act_llamacpp;
        ms.ctx.n_threads = 1;
    }
    qf_ppl_result r;
    memset(&r, 0, sizeof r);
    if (rc == 0) rc = qf_perplexity(&ms.src, ids, n, &p, &r, &err);
    if (rc == 0) *ppl = r.ppl;
    CHECK(t, rc == 0 && r.n_chunks == 20, "%s: %s", model, err.msg);
    qf_ppl_result_free(&r);
    if (have_ms) qf_model_source_free(&ms);
    free(ids);
    if (tx.impl) qf_text_free(&tx);
    qf_model_free(&m);
    return rc;
}

/* llama-perplexity's final estimate for arch/ref-<type>.gguf from ref.json. */
static int oracle_ppl(qf_test *t, const char *arch, const char *type, double *ppl) {
    char rel[256], path[512];
    snprintf(rel, sizeof rel, ARCHS "/%s/ref.json", arch);
    if (!qf_test_data(t, rel, path, sizeof path)) return -1;
    qf_json j;
    qf_err err = {0};
    if (qf_json_parse_file(&j, path, 0, &err) < 0) {
        CHECK(t, 0, "%s", err.msg);
        return -1;
    }
    int tok = qf_json_find_path(&j, 0, "perplexity", type, "ppl", NULL);
    int rc = tok >= 0 && qf_json_get_double(&j, tok, ppl, NULL) == 0 ? 0 : -1;
    CHECK(t, rc == 0, "%s: no perplexity.%s.ppl", path, type);
    qf_json_free(&j);
    return rc;
}

/* Our perplexity of llama.cpp's F32 and F16 GGUFs against llama-perplexity's
 * within `tol` (relative), and the HF directory with plain F32 activations
 * equal to the F32 GGUF's (same weights, same math). */
static void check_arch(qf_test *t, const char *arch, double tol) {
    static const char *const types[] = {"f32", "f16"};
    double ours[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        char rel[256], path[512];
        double want;
        snprintf(rel, sizeof rel, ARCHS "/%s/ref-%s.gguf", arch, types[i]);
        if (!qf_test_data(t, rel, path, sizeof path) || oracle_ppl(t, arch, types[i], &want) < 0) return;
        if (ppl_of(t, path, 1, &ours[i]) < 0) return;
        double rel_diff = ours[i] / want - 1.0;
        CHECK(t, fabs(rel_diff) <= tol, "%s %s: ppl %.4f vs llama.cpp %.4f (rel %.2e > %.1e)", arch, types[i], ours[i],
              want, rel_diff, tol);
        printf("  %s %s: ppl %.4f, llama-perplexity %.4f, rel %+.2e\n", arch, types[i], ours[i], want, rel_diff);
    }
    char rel[256], dir[512];
    double hf;
    snprintf(rel, sizeof rel, ARCHS "/%s/hf", arch);
    if (!qf_test_data(t, rel, dir, sizeof dir) || ppl_of(t, dir, 0, &hf) < 0) return;
    CHECK(t, fabs(hf / ours[0] - 1.0) <= 1e-6, "%s: HF directory ppl %.6f vs its F32 GGUF %.6f", arch, hf, ours[0]);
}

/* Tolerances: the measured agreement (docs/convert.md) with some room; the
 * Gemma 2 models are deep and their GELU goes through an fp16 table, where a
 * last-bit difference in the input can pick the neighbouring entry. */
static void test_gemma_ppl(qf_test *t) { check_arch(t, "gemma", 5e-5); }
static void test_gemma2_ppl(qf_test *t) { check_arch(t, "gemma2", 2e-4); }
static void test_gemma2_l46_ppl(qf_test *t) { check_arch(t, "gemma2-l46", 2e-4); }
static void test_granite_ppl(qf_test *t) { check_arch(t, "granite", 1e-5); }

QF_TEST_MAIN(test_tensor_names, test_config_defaults, test_gemma_ppl, test_gemma2_ppl, test_gemma2_l46_ppl,
             test_granite_ppl)
