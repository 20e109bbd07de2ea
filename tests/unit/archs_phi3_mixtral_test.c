/* archs_phi3_mixtral_test.c - Phi-3 and Mixtral: the HF naming table (fused
 * and expert tensors), the longrope config reader, and the engine's view of
 * the llama.cpp oracle GGUFs (expert views against the HF source rows,
 * longrope factors against config.json). Oracles: QF_DATA
 * oracles/llamacpp/archs/{phi3,phi3-longrope,mixtral} (SKIP when absent). */
#include "qf_test.h"

#include "hf_arch.h"
#include "json.h"
#include "model.h"
#include "numfmt.h"
#include "safetensors.h"

static const qf_hf_arch *arch_of(const char *cls) { return qf_hf_arch_find(cls); }

static void test_table_phi3(qf_test *t) {
    const qf_hf_arch *a = arch_of("Phi3ForCausalLM");
    REQUIRE(t, a && strcmp(a->gguf_arch, "phi3") == 0, "Phi3ForCausalLM -> phi3");
    char g[96];
    int64_t bid, xid;
    const qf_tensor_rule *r = qf_hf_map_tensor_x(a, "model.layers.3.self_attn.qkv_proj.weight", g, sizeof g, &bid, &xid);
    CHECK(t, r && strcmp(g, "blk.3.attn_qkv.weight") == 0 && bid == 3 && xid == -1, "qkv -> %s", r ? g : "-");
    CHECK(t, r && r->shape[0] == QF_DIM_QKV && r->permute == QF_PERMUTE_NONE, "qkv shape/permute");
    r = qf_hf_map_tensor(a, "model.layers.0.mlp.gate_up_proj.weight", g, sizeof g, &bid);
    CHECK(t, r && strcmp(g, "blk.0.ffn_up.weight") == 0 && r->shape[0] == QF_DIM_FF2, "gate_up -> %s", r ? g : "-");
    /* the separate projections are not part of a Phi-3 checkpoint */
    CHECK(t, !qf_hf_map_tensor(a, "model.layers.0.self_attn.q_proj.weight", g, sizeof g, &bid), "q_proj mapped");
    CHECK(t, !qf_hf_map_tensor(a, "model.layers.0.mlp.gate_proj.weight", g, sizeof g, &bid), "gate_proj mapped");
    CHECK(t, qf_hf_map_tensor(a, "model.layers.0.mlp.down_proj.weight", g, sizeof g, &bid) != NULL, "down_proj");
    /* llama keeps its separate projections and has no fused ones */
    const qf_hf_arch *l = arch_of("LlamaForCausalLM");
    CHECK(t, qf_hf_map_tensor(l, "model.layers.0.self_attn.q_proj.weight", g, sizeof g, &bid) != NULL, "llama q");
    CHECK(t, !qf_hf_map_tensor(l, "model.layers.0.self_attn.qkv_proj.weight", g, sizeof g, &bid), "llama qkv");
    qf_hf_hparams hp = {.n_layer = 2, .n_embd = 64, .n_ff = 128, .n_head = 4, .n_head_kv = 2, .head_dim = 16};
    CHECK(t, qf_hf_dim_value(&hp, QF_DIM_QKV) == 128, "qkv rows (4+2+2)*16");
    CHECK(t, qf_hf_dim_value(&hp, QF_DIM_FF2) == 256, "gate_up rows 2*128");
}

static void test_table_mixtral(qf_test *t) {
    const qf_hf_arch *a = arch_of("MixtralForCausalLM");
    REQUIRE(t, a && strcmp(a->gguf_arch, "llama") == 0 && (a->flags & QF_ARCH_MOE), "MixtralForCausalLM -> llama MoE");
    char g[96];
    int64_t bid, xid;
    static const struct { const char *hf, *gguf; int64_t b, x; } cases[] = {
        {"model.layers.1.block_sparse_moe.experts.7.w1.weight", "blk.1.ffn_gate_exps.weight", 1, 7},
        {"model.layers.12.block_sparse_moe.experts.0.w2.weight", "blk.12.ffn_down_exps.weight", 12, 0},
        {"model.layers.0.block_sparse_moe.experts.10.w3.weight", "blk.0.ffn_up_exps.weight", 0, 10},
        {"model.layers.5.block_sparse_moe.gate.weight", "blk.5.ffn_gate_inp.weight", 5, -1},
        {"model.layers.5.self_attn.q_proj.weight", "blk.5.attn_q.weight", 5, -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const qf_tensor_rule *r = qf_hf_map_tensor_x(a, cases[i].hf, g, sizeof g, &bid, &xid);
        CHECK(t, r && !strcmp(g, cases[i].gguf) && bid == cases[i].b && xid == cases[i].x, "%s -> %s (%lld, %lld)",
              cases[i].hf, r ? g : "-", (long long)bid, (long long)xid);
    }
    /* leading zeros are not ids; the dense mlp does not exist */
    CHECK(t, !qf_hf_map_tensor_x(a, "model.layers.0.block_sparse_moe.experts.01.w1.weight", g, sizeof g, &bid, &xid),
          "expert 01 mapped");
    CHECK(t, !qf_hf_map_tensor(a, "model.layers.0.mlp.gate_proj.weight", g, sizeof g, &bid), "mlp mapped");
    CHECK(t, !qf_hf_map_tensor(a, "model.layers.0.mlp.down_proj.weight", g, sizeof g, &bid), "mlp down mapped");
}

static int parse(qf_json *j, const char *text, qf_err *err) { return qf_json_parse(j, text, strlen(text), "config.json", err); }

static void test_longrope_config(qf_test *t) {
    qf_err err = {0};
    qf_json j;
    const char *cfg = "{\"max_position_embeddings\": 512, \"original_max_position_embeddings\": 64,"
                      " \"rope_scaling\": {\"type\": \"longrope\", \"long_factor\": [1, 2, 4, 8],"
                      " \"short_factor\": [1, 1.5, 1.25, 1]}}";
    REQUIRE(t, parse(&j, cfg, &err) == 0, "%s", err.msg);
    float *lf = NULL, *sf = NULL;
    int64_t n = 0;
    double af = 0;
    int present = 0;
    int rc = qf_hf_longrope(&j, "config.json", 8, &lf, &sf, &n, &af, &present, &err);
    CHECK(t, rc == 0 && present && n == 4, "rc %d present %d n %lld: %s", rc, present, (long long)n, err.msg);
    /* sqrt(1 + ln(512/64) / ln 64) = sqrt(1.5) */
    CHECK(t, fabs(af - sqrt(1.5)) < 1e-12, "attn_factor %.17g", af);
    CHECK(t, lf && sf && lf[3] == 8.0f && sf[1] == 1.5f, "factors");
    free(lf);
    free(sf);
    /* the list length must be rope_dim / 2 */
    rc = qf_hf_longrope(&j, "config.json", 16, &lf, &sf, &n, &af, &present, &err);
    CHECK(t, rc == QF_EFORMAT && strstr(err.msg, "long_factor has 4 values"), "rc %d: %s", rc, err.msg);
    qf_json_free(&j);
    /* other scaling types are refused; none is nothing */
    REQUIRE(t, parse(&j, "{\"max_position_embeddings\": 512, \"original_max_position_embeddings\": 64,"
                         " \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 8}}", &err) == 0, "%s", err.msg);
    rc = qf_hf_longrope(&j, "config.json", 8, &lf, &sf, &n, &af, &present, &err);
    CHECK(t, rc == QF_EUNSUPPORTED && !present, "yarn: rc %d", rc);
    qf_json_free(&j);
    REQUIRE(t, parse(&j, "{\"rope_scaling\": null}", &err) == 0, "%s", err.msg);
    rc = qf_hf_longrope(&j, "config.json", 8, &lf, &sf, &n, &af, &present, &err);
    CHECK(t, rc == 0 && !present && af == 1.0, "null: rc %d", rc);
    qf_json_free(&j);
}

/* The engine's expert e of a stacked GGUF tensor reads the same rows as the
 * HF checkpoint's expert e (BF16 -> F32 is exact). */
static void test_mixtral_expert_views(qf_test *t) {
    char gguf[1024], hf[1024];
    if (!qf_test_data(t, "oracles/llamacpp/archs/mixtral/ref-f32.gguf", gguf, sizeof gguf)) return;
    if (!qf_test_data(t, "oracles/llamacpp/archs/mixtral/hf", hf, sizeof hf)) return;
    qf_err err = {0};
    qf_model m;
    REQUIRE(t, qf_model_load(&m, gguf, &err) == 0, "%s", err.msg);
    st_model st;
    if (st_open(&st, hf, &err) != 0) {
        qf_model_free(&m);
        REQUIRE(t, 0, "%s", err.msg);
    }
    CHECK(t, m.hp.n_expert == 4 && m.hp.n_expert_used == 2, "experts %lld used %lld", (long long)m.hp.n_expert,
          (long long)m.hp.n_expert_used);
    const int64_t E = m.hp.n_embd, F = m.hp.n_ff;
    float *a = malloc((size_t)(E > F ? E : F) * sizeof *a), *b = malloc((size_t)(E > F ? E : F) * sizeof *b);
    static const char *const w[3] = {"w1", "w2", "w3"};
    int bad = 0;
    for (int64_t l = 0; l < m.hp.n_layer && a && b; l++) {
        const qf_layer *L = &m.layers[l];
        const qf_weight *views[3] = {L->gate_exps, L->down_exps, L->up_exps};
        for (int k = 0; k < 3; k++)
            for (int32_t e = 0; e < (int32_t)m.hp.n_expert; e++) {
                const qf_weight *v = &views[k][e];
                char name[128];
                snprintf(name, sizeof name, "model.layers.%lld.block_sparse_moe.experts.%d.%s.weight", (long long)l, e, w[k]);
                const st_tensor *s = st_find(&st, name);
                if (!s || v->expert != e || v->n_expert != 4 || (int64_t)s->shape[0] != v->n_out) {
                    bad++;
                    continue;
                }
                for (int64_t r = 0; r < v->n_out; r += 13) {
                    qf_weight_row(v, r, a);
                    qf_bf16_to_f32_row((const uint16_t *)(s->data + (size_t)r * (size_t)v->n_in * 2), b, (size_t)v->n_in);
                    bad += memcmp(a, b, (size_t)v->n_in * sizeof *a) != 0;
                }
            }
    }
    CHECK(t, bad == 0, "%d expert rows differ from the HF source", bad);
    free(a);
    free(b);
    st_close(&st);
    qf_model_free(&m);
}

/* Phi-3 longrope: the GGUF factor tensors and attention factor are what
 * config.json says; the HF directory binds the same values. */
static void test_phi3_longrope_model(qf_test *t) {
    char gguf[1024], hf[1024];
    if (!qf_test_data(t, "oracles/llamacpp/archs/phi3-longrope/ref-f32.gguf", gguf, sizeof gguf)) return;
    if (!qf_test_data(t, "oracles/llamacpp/archs/phi3-longrope/hf", hf, sizeof hf)) return;
    qf_err err = {0};
    qf_model g, h;
    REQUIRE(t, qf_model_load(&g, gguf, &err) == 0, "%s", err.msg);
    if (qf_model_load(&h, hf, &err) != 0) {
        qf_model_free(&g);
        REQUIRE(t, 0, "%s", err.msg);
    }
    CHECK(t, g.hp.arch == QF_ARCH_PHI3 && g.hp.rope_type == QF_ROPE_NEOX && g.hp.n_ctx_orig == 64, "phi3 hparams");
    CHECK(t, fabsf(g.hp.rope_attn_factor - 1.2247449f) < 1e-6f && g.hp.rope_attn_factor == h.hp.rope_attn_factor,
          "attn_factor %g / %g", (double)g.hp.rope_attn_factor, (double)h.hp.rope_attn_factor);
    CHECK(t, g.hp.n_swa == 262144 && h.hp.n_swa == 262144, "sliding window %lld / %lld", (long long)g.hp.n_swa,
          (long long)h.hp.n_swa);
    REQUIRE(t, g.rope_long.data && h.rope_long.data && g.rope_short.data && h.rope_short.data, "factor tensors");
    CHECK(t, !memcmp(g.rope_long.data, h.rope_long.data, 8 * sizeof(float)) &&
             !memcmp(g.rope_short.data, h.rope_short.data, 8 * sizeof(float)), "factors differ");
    CHECK(t, ((const float *)g.rope_long.data)[7] == 24.0f, "long_factor[7]");
    CHECK(t, g.layers[0].wqkv.data && g.layers[0].wqkv.n_out == 128 && g.layers[0].ffn_gate_up.n_out == 256 &&
             !g.layers[0].wq.data && !g.layers[0].ffn_gate.data, "fused weights bound");
    qf_model_free(&h);
    qf_model_free(&g);
}

/* A Mixtral HF directory loads with the converted GGUF's hyperparameters;
 * each expert's view holds that expert's matrix (the GGUF F32 values: BF16
 * widens exactly), and the router is F32 as the converter writes it. */
static void test_mixtral_hf_experts(qf_test *t) {
    char hf[1024], gguf[1024];
    if (!qf_test_data(t, "oracles/llamacpp/archs/mixtral/hf", hf, sizeof hf) ||
        !qf_test_data(t, "oracles/llamacpp/archs/mixtral/ref-f32.gguf", gguf, sizeof gguf))
        return;
    qf_err err = {0};
    qf_model h, g;
    REQUIRE(t, qf_model_load(&h, hf, &err) == 0, "%s", err.msg);
    REQUIRE(t, qf_model_load(&g, gguf, &err) == 0, "%s", err.msg);
    CHECK(t, h.hp.n_expert == g.hp.n_expert && h.hp.n_expert_used == g.hp.n_expert_used && h.hp.n_expert == 4 &&
             h.hp.n_layer == g.hp.n_layer, "hparams");
    int bad = 0;
    float *x = malloc(256 * sizeof *x), *y = malloc(256 * sizeof *y);
    for (int64_t l = 0; l < h.hp.n_layer; l++) {
        const qf_layer *H = &h.layers[l], *G = &g.layers[l];
        bad += H->ffn_gate_inp.type != 0 /* F32 */;
        for (int64_t r = 0; r < G->ffn_gate_inp.n_out; r++) {
            qf_weight_row(&H->ffn_gate_inp, r, x);
            qf_weight_row(&G->ffn_gate_inp, r, y);
            bad += memcmp(x, y, (size_t)G->ffn_gate_inp.n_in * sizeof *x) != 0;
        }
        for (int64_t e = 0; e < h.hp.n_expert; e++) {
            const qf_weight *hv[3] = {&H->gate_exps[e], &H->up_exps[e], &H->down_exps[e]};
            const qf_weight *gv[3] = {&G->gate_exps[e], &G->up_exps[e], &G->down_exps[e]};
            for (int k = 0; k < 3; k++) {
                bad += hv[k]->expert != e || hv[k]->n_expert != 4 || strcmp(hv[k]->name, gv[k]->name) != 0;
                for (int64_t r = 0; r < gv[k]->n_out; r++) {
                    qf_weight_row(hv[k], r, x);
                    qf_weight_row(gv[k], r, y);
                    bad += memcmp(x, y, (size_t)gv[k]->n_in * sizeof *x) != 0;
                }
            }
        }
    }
    CHECK(t, bad == 0, "%d expert rows, routers or names differ", bad);
    free(x);
    free(y);
    qf_model_free(&h);
    qf_model_free(&g);
}

QF_TEST_MAIN(test_table_phi3, test_table_mixtral, test_longrope_config, test_mixtral_expert_views,
             test_phi3_longrope_model, test_mixtral_hf_experts)
