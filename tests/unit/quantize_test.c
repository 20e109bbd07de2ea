/* quantize_test.c - the quantize library: type menu, mix rules (against the
 * per-tensor tables of shared/oracles/llamacpp/PROVENANCE.md and the notes
 * file), fallbacks, plans, streaming invariants (chunk size, threads), read
 * back of every type, imatrix and bad-input errors, manifests.
 * Byte identity with the llama-quantize oracle files and the peer binary is
 * checked on the program in tests/cli/quantize.sh. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ggml_types.h"
#include "gguf.h"
#include "imatrix.h"
#include "manifest.h"
#include "quantize.h"
#include "codecs.h"
#include "qf_test.h"

#define ORACLES "oracles/llamacpp"

static const char *tn(uint32_t t) {
    const ggml_type_traits *tt = ggml_get_type_traits(t);
    return tt && tt->name ? tt->name : "?";
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static int same_bytes(const char *a, const char *b) {
    size_t na, nb;
    unsigned char *x = qf_test_read_file(a, &na), *y = qf_test_read_file(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

/* Files in dir whose name starts with prefix (temp file leftovers). */
static int count_prefixed(const char *dir, const char *prefix) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "ls -a '%s' 2>/dev/null | grep -c '^%s' ", dir, prefix);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = -1;
        pclose(p);
    }
    return n;
}

static void tmp_path(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/quantize_test-%s", qf_test_tmpdir(), name); }

/* ---------------- the menu and the rules ---------------- */

static void test_presets_and_ftypes(qf_test *t) {
    /* llama_ftype values from the notes file */
    static const struct { const char *name; uint32_t ftype, base; } want[] = {
        {"F32", 0, GGML_TYPE_F32},       {"F16", 1, GGML_TYPE_F16},       {"Q4_0", 2, GGML_TYPE_Q4_0},
        {"Q4_1", 3, GGML_TYPE_Q4_1},     {"Q8_0", 7, GGML_TYPE_Q8_0},     {"Q5_0", 8, GGML_TYPE_Q5_0},
        {"Q5_1", 9, GGML_TYPE_Q5_1},     {"Q2_K", 10, GGML_TYPE_Q2_K},    {"Q3_K_S", 11, GGML_TYPE_Q3_K},
        {"Q3_K_M", 12, GGML_TYPE_Q3_K},  {"Q3_K_L", 13, GGML_TYPE_Q3_K},  {"Q4_K_S", 14, GGML_TYPE_Q4_K},
        {"Q4_K_M", 15, GGML_TYPE_Q4_K},  {"Q5_K_S", 16, GGML_TYPE_Q5_K},  {"Q5_K_M", 17, GGML_TYPE_Q5_K},
        {"Q6_K", 18, GGML_TYPE_Q6_K},    {"IQ4_NL", 25, GGML_TYPE_IQ4_NL}, {"BF16", 32, GGML_TYPE_BF16},
        {"IQ4_XS", 30, GGML_TYPE_IQ4_XS}, {"IQ3_S", 26, GGML_TYPE_IQ3_S},   {"IQ3_M", 27, GGML_TYPE_IQ3_S},
        {"IQ3_XS", 22, GGML_TYPE_IQ3_S},  {"IQ2_XXS", 19, GGML_TYPE_IQ2_XXS}, {"IQ2_XS", 20, GGML_TYPE_IQ2_XS},
        {"Q2_K_S", 21, GGML_TYPE_Q2_K},   {"IQ3_XXS", 23, GGML_TYPE_IQ3_XXS}, {"IQ2_S", 28, GGML_TYPE_IQ2_XS},
        {"IQ2_M", 29, GGML_TYPE_IQ2_S},   {"IQ1_S", 24, GGML_TYPE_IQ1_S},   {"IQ1_M", 31, GGML_TYPE_IQ1_M},
    };
    size_t n;
    qf_quant_presets(&n);
    CHECK(t, n == sizeof want / sizeof *want, "%zu presets", n);
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        const qf_quant_preset *p = qf_quant_preset_find(want[i].name);
        REQUIRE(t, p, "%s missing", want[i].name);
        CHECK(t, p->ftype == want[i].ftype && p->base_type == want[i].base, "%s: ftype %u base %s", want[i].name,
              p->ftype, tn(p->base_type));
    }
    CHECK(t, qf_quant_preset_find("q4_k_m") == qf_quant_preset_find("Q4_K_M"), "case-insensitive");
    CHECK(t, qf_quant_preset_find("Q4_K") == NULL && qf_quant_preset_find("IQ4_XT") == NULL, "unknown names");
}

static void test_use_more_bits(qf_test *t) {
    /* notes file: for n = 32, layers 0-3, 28-31 and 6, 9, ..., 27 */
    char got[256] = "";
    for (int i = 0; i < 32; i++)
        if (qf_use_more_bits(i, 32)) snprintf(got + strlen(got), sizeof got - strlen(got), "%d ", i);
    CHECK(t, strcmp(got, "0 1 2 3 6 9 12 15 18 21 24 27 28 29 30 31 ") == 0, "n=32: %s", got);
    /* PROVENANCE: stories260K (5 layers) Q4_K_M attn_v gets more bits in layers 2 and 4 */
    got[0] = 0;
    for (int i = 0; i < 5; i++)
        if (qf_use_more_bits(i, 5)) snprintf(got + strlen(got), sizeof got - strlen(got), "%d ", i);
    CHECK(t, strcmp(got, "2 4 ") == 0, "n=5: %s", got);
}

static void test_quantizable_and_roles(qf_test *t) {
    const uint64_t ne2[4] = {64, 32, 1, 1}, ne1[4] = {64, 1, 1, 1};
    CHECK(t, qf_tensor_n_dims(ne2) == 2 && qf_tensor_n_dims(ne1) == 1, "n_dims");
    const uint64_t ne3[4] = {64, 1, 8, 1};
    CHECK(t, qf_tensor_n_dims(ne3) == 3, "n_dims with a middle 1");
    CHECK(t, qf_tensor_is_quantizable("blk.0.attn_q.weight", 2), "attn_q");
    CHECK(t, qf_tensor_is_quantizable("token_embd.weight", 2), "token_embd");
    CHECK(t, !qf_tensor_is_quantizable("blk.0.attn_q.weight", 1), "1-D");
    CHECK(t, !qf_tensor_is_quantizable("blk.0.attn_norm.weight", 2), "norm");
    CHECK(t, !qf_tensor_is_quantizable("blk.0.attn_q.bias", 2), "bias");
    CHECK(t, !qf_tensor_is_quantizable("blk.0.ffn_gate_inp.weight", 2), "router");
    CHECK(t, !qf_tensor_is_quantizable("position_embd.weight", 2), "positions");
    CHECK(t, !qf_tensor_is_quantizable("blk.3.ssm_conv1d.weight", 2), "ssm_conv1d");
    CHECK(t, qf_tensor_role_of("output.weight") == QF_ROLE_OUTPUT, "output");
    CHECK(t, qf_tensor_role_of("token_embd.weight") == QF_ROLE_TOKEN_EMBD, "token_embd");
    CHECK(t, qf_tensor_role_of("blk.1.attn_v.weight") == QF_ROLE_ATTN_V, "attn_v");
    CHECK(t, qf_tensor_role_of("blk.1.attn_kv_b.weight") == QF_ROLE_OTHER, "attn_kv_b is not attn_k");
    CHECK(t, qf_tensor_role_of("blk.1.ffn_down_exps.weight") == QF_ROLE_FFN_DOWN, "experts");
    CHECK(t, qf_tensor_role_of("blk.1.attn_qkv.weight") == QF_ROLE_ATTN_QKV, "qkv");
    CHECK(t, qf_tensor_role_of("blk.1.ffn_gate.weight") == QF_ROLE_FFN_GATE, "gate");
}

static void test_shape_fallbacks(qf_test *t) {
    static const struct { uint32_t type; uint64_t ne0; uint32_t table, used; } c[] = {
        {GGML_TYPE_Q4_K, 256, GGML_TYPE_Q4_K, GGML_TYPE_Q4_K}, {GGML_TYPE_Q4_K, 64, GGML_TYPE_Q5_0, GGML_TYPE_Q5_0},
        {GGML_TYPE_Q4_K, 172, GGML_TYPE_Q5_0, GGML_TYPE_F16},  {GGML_TYPE_Q5_K, 64, GGML_TYPE_Q5_1, GGML_TYPE_Q5_1},
        {GGML_TYPE_Q6_K, 64, GGML_TYPE_Q8_0, GGML_TYPE_Q8_0},  {GGML_TYPE_Q6_K, 172, GGML_TYPE_Q8_0, GGML_TYPE_F16},
        {GGML_TYPE_Q2_K, 96, GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_NL}, {GGML_TYPE_Q3_K, 64, GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_NL},
        {GGML_TYPE_Q3_K, 172, GGML_TYPE_IQ4_NL, GGML_TYPE_F16}, {GGML_TYPE_IQ4_NL, 172, GGML_TYPE_F16, GGML_TYPE_F16},
        {GGML_TYPE_Q8_0, 172, GGML_TYPE_F16, GGML_TYPE_F16},   {GGML_TYPE_Q4_0, 33, GGML_TYPE_F16, GGML_TYPE_F16},
        {GGML_TYPE_IQ4_XS, 64, GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_NL}, {GGML_TYPE_IQ3_S, 96, GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_NL}, {GGML_TYPE_IQ4_XS, 172, GGML_TYPE_IQ4_NL, GGML_TYPE_F16},
        {GGML_TYPE_F16, 7, GGML_TYPE_F16, GGML_TYPE_F16},      {GGML_TYPE_BF16, 7, GGML_TYPE_BF16, GGML_TYPE_BF16},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        uint32_t table;
        uint32_t used = qf_shape_fallback(c[i].type, c[i].ne0, &table);
        CHECK(t, used == c[i].used && table == c[i].table, "%s ne0 %llu -> %s via %s", tn(c[i].type),
              (unsigned long long)c[i].ne0, tn(used), tn(table));
    }
}

static uint32_t mix(const char *preset, const qf_mix_model *m, qf_tensor_role r, int i, int n, uint64_t ne0) {
    return qf_mix_type(qf_quant_preset_find(preset), m, r, i, n, ne0, -1);
}

/* PROVENANCE synth-tinyk table (1 layer, 4 heads / 2 kv heads, tied
 * embeddings, rows of 256). Roles in the table's column order. */
static void test_mix_table_synth_tinyk(qf_test *t) {
    qf_mix_model m = {.n_layer = 1, .n_attn_v = 1, .n_head = 4, .n_head_kv = 2};
    static const struct {
        const char *preset;
        uint32_t token_embd, attn_q, attn_k, attn_v, attn_output, ffn_gate_up, ffn_down;
    } rows[] = {
        {"Q6_K", GGML_TYPE_Q6_K, GGML_TYPE_Q6_K, GGML_TYPE_Q6_K, GGML_TYPE_Q6_K, GGML_TYPE_Q6_K, GGML_TYPE_Q6_K, GGML_TYPE_Q6_K},
        {"Q5_K_M", GGML_TYPE_Q6_K, GGML_TYPE_Q5_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_Q5_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K},
        {"Q4_K_M", GGML_TYPE_Q6_K, GGML_TYPE_Q4_K, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K, GGML_TYPE_Q4_K, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K},
        {"Q3_K_M", GGML_TYPE_Q6_K, GGML_TYPE_Q3_K, GGML_TYPE_Q3_K, GGML_TYPE_Q5_K, GGML_TYPE_Q4_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K},
        {"Q2_K", GGML_TYPE_Q6_K, GGML_TYPE_Q2_K, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q3_K, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K},
    };
    for (size_t k = 0; k < sizeof rows / sizeof *rows; k++) {
        const char *p = rows[k].preset;
        CHECK(t, mix(p, &m, QF_ROLE_TOKEN_EMBD, 0, 0, 256) == rows[k].token_embd, "%s token_embd", p);
        CHECK(t, mix(p, &m, QF_ROLE_ATTN_Q, 0, 0, 256) == rows[k].attn_q, "%s attn_q", p);
        CHECK(t, mix(p, &m, QF_ROLE_ATTN_K, 0, 0, 256) == rows[k].attn_k, "%s attn_k", p);
        CHECK(t, mix(p, &m, QF_ROLE_ATTN_V, 0, 1, 256) == rows[k].attn_v, "%s attn_v", p);
        CHECK(t, mix(p, &m, QF_ROLE_ATTN_OUTPUT, 0, 0, 256) == rows[k].attn_output, "%s attn_output", p);
        CHECK(t, mix(p, &m, QF_ROLE_FFN_GATE, 0, 0, 256) == rows[k].ffn_gate_up, "%s ffn_gate", p);
        CHECK(t, mix(p, &m, QF_ROLE_FFN_UP, 0, 0, 256) == rows[k].ffn_gate_up, "%s ffn_up", p);
        CHECK(t, mix(p, &m, QF_ROLE_FFN_DOWN, 0, 1, 256) == rows[k].ffn_down, "%s ffn_down", p);
    }
}

/* Rules of the notes file / llama.cpp for a 32-layer llama and friends. */
static void test_mix_rules_32_layers(qf_test *t) {
    qf_mix_model m = {.n_layer = 32, .n_attn_v = 32, .n_head = 32, .n_head_kv = 8, .has_output = 1};
    int n_q6 = 0;
    for (int i = 0; i < 32; i++) {
        uint32_t v = mix("Q4_K_M", &m, QF_ROLE_ATTN_V, i, 32, 4096), d = mix("Q4_K_M", &m, QF_ROLE_FFN_DOWN, i, 32, 14336);
        CHECK(t, v == (qf_use_more_bits(i, 32) ? GGML_TYPE_Q6_K : GGML_TYPE_Q4_K), "Q4_K_M attn_v %d", i);
        CHECK(t, d == v, "Q4_K_M ffn_down %d", i);
        n_q6 += v == GGML_TYPE_Q6_K;
    }
    CHECK(t, n_q6 == 16, "16 of 32 layers get Q6_K: %d", n_q6);
    CHECK(t, mix("Q4_K_M", &m, QF_ROLE_OUTPUT, 0, 0, 4096) == GGML_TYPE_Q6_K, "output Q6_K");
    CHECK(t, mix("Q4_K_M", &m, QF_ROLE_TOKEN_EMBD, 0, 0, 4096) == GGML_TYPE_Q4_K, "untied token_embd stays");
    CHECK(t, mix("Q4_0", &m, QF_ROLE_OUTPUT, 0, 0, 4096) == GGML_TYPE_Q6_K, "Q4_0 output Q6_K");
    CHECK(t, mix("Q8_0", &m, QF_ROLE_OUTPUT, 0, 0, 4096) == GGML_TYPE_Q8_0, "Q8_0 output stays");
    CHECK(t, mix("Q4_K_M", &m, QF_ROLE_OUTPUT, 0, 0, 4000) == GGML_TYPE_Q8_0, "output row not /256 -> Q8_0");
    CHECK(t, qf_mix_type(qf_quant_preset_find("Q4_K_M"), &m, QF_ROLE_OUTPUT, 0, 0, 4096, GGML_TYPE_Q8_0) == GGML_TYPE_Q8_0,
          "--output-tensor-type");
    CHECK(t, mix("Q4_K_M", &m, QF_ROLE_ATTN_QKV, 0, 0, 4096) == GGML_TYPE_Q5_K, "fused qkv Q5_K");
    CHECK(t, mix("F16", &m, QF_ROLE_OUTPUT, 0, 0, 4096) == GGML_TYPE_F16, "no mix for F16");
    /* Q4_K_S: attn_v Q5_K in the first 4, ffn_down Q5_K for i < n/8 */
    CHECK(t, mix("Q4_K_S", &m, QF_ROLE_ATTN_V, 3, 32, 4096) == GGML_TYPE_Q5_K, "Q4_K_S attn_v 3");
    CHECK(t, mix("Q4_K_S", &m, QF_ROLE_ATTN_V, 4, 32, 4096) == GGML_TYPE_Q4_K, "Q4_K_S attn_v 4");
    CHECK(t, mix("Q4_K_S", &m, QF_ROLE_FFN_DOWN, 3, 32, 4096) == GGML_TYPE_Q5_K, "Q4_K_S ffn_down 3");
    CHECK(t, mix("Q4_K_S", &m, QF_ROLE_FFN_DOWN, 4, 32, 4096) == GGML_TYPE_Q4_K, "Q4_K_S ffn_down 4");
    /* Q3_K_M: ffn_down Q5_K for i < n/16, else Q4_K; Q3_K_L Q5_K */
    CHECK(t, mix("Q3_K_M", &m, QF_ROLE_FFN_DOWN, 1, 32, 4096) == GGML_TYPE_Q5_K, "Q3_K_M ffn_down 1");
    CHECK(t, mix("Q3_K_M", &m, QF_ROLE_FFN_DOWN, 2, 32, 4096) == GGML_TYPE_Q4_K, "Q3_K_M ffn_down 2");
    CHECK(t, mix("Q3_K_L", &m, QF_ROLE_FFN_DOWN, 20, 32, 4096) == GGML_TYPE_Q5_K, "Q3_K_L ffn_down");
    CHECK(t, mix("Q3_K_S", &m, QF_ROLE_FFN_DOWN, 0, 32, 4096) == GGML_TYPE_Q3_K, "Q3_K_S ffn_down");
    /* Q2_K with GQA >= 4: attn_v Q4_K */
    CHECK(t, mix("Q2_K", &m, QF_ROLE_ATTN_V, 5, 32, 4096) == GGML_TYPE_Q4_K, "Q2_K attn_v gqa 4");
    /* Q4_0 / Q5_0 with an imatrix: ffn_down of the first n/8 layers Q4_1 / Q5_1 */
    CHECK(t, mix("Q4_0", &m, QF_ROLE_FFN_DOWN, 0, 32, 4096) == GGML_TYPE_Q4_0, "Q4_0 no imatrix");
    m.has_imatrix = 1;
    CHECK(t, mix("Q4_0", &m, QF_ROLE_FFN_DOWN, 3, 32, 4096) == GGML_TYPE_Q4_1, "Q4_0 imatrix 3");
    CHECK(t, mix("Q4_0", &m, QF_ROLE_FFN_DOWN, 4, 32, 4096) == GGML_TYPE_Q4_0, "Q4_0 imatrix 4");
    CHECK(t, mix("Q5_0", &m, QF_ROLE_FFN_DOWN, 0, 32, 4096) == GGML_TYPE_Q5_1, "Q5_0 imatrix");
    /* IQ4_NL: ffn_down Q5_K in the first n/8 layers only without an imatrix; attn_v Q5_K with GQA >= 4 */
    CHECK(t, mix("IQ4_NL", &m, QF_ROLE_FFN_DOWN, 0, 32, 4096) == GGML_TYPE_IQ4_NL, "IQ4_NL imatrix ffn_down 0");
    m.has_imatrix = 0;
    CHECK(t, mix("IQ4_NL", &m, QF_ROLE_FFN_DOWN, 3, 32, 4096) == GGML_TYPE_Q5_K, "IQ4_NL ffn_down 3");
    CHECK(t, mix("IQ4_NL", &m, QF_ROLE_FFN_DOWN, 4, 32, 4096) == GGML_TYPE_IQ4_NL, "IQ4_NL ffn_down 4");
    CHECK(t, mix("IQ4_NL", &m, QF_ROLE_ATTN_V, 9, 32, 4096) == GGML_TYPE_Q5_K, "IQ4_NL attn_v gqa 4");
    CHECK(t, mix("IQ4_NL", &m, QF_ROLE_OUTPUT, 0, 0, 4096) == GGML_TYPE_Q6_K, "IQ4_NL output Q6_K");
    CHECK(t, mix("IQ4_NL", &m, QF_ROLE_ATTN_Q, 0, 32, 4096) == GGML_TYPE_IQ4_NL, "IQ4_NL attn_q");
    /* IQ4_XS: the same rules as IQ4_NL */
    CHECK(t, mix("IQ4_XS", &m, QF_ROLE_FFN_DOWN, 3, 32, 4096) == GGML_TYPE_Q5_K, "IQ4_XS ffn_down 3");
    CHECK(t, mix("IQ4_XS", &m, QF_ROLE_FFN_DOWN, 4, 32, 4096) == GGML_TYPE_IQ4_XS, "IQ4_XS ffn_down 4");
    CHECK(t, mix("IQ4_XS", &m, QF_ROLE_ATTN_V, 9, 32, 4096) == GGML_TYPE_Q5_K, "IQ4_XS attn_v gqa 4");
    CHECK(t, mix("IQ4_XS", &m, QF_ROLE_OUTPUT, 0, 0, 4096) == GGML_TYPE_Q6_K, "IQ4_XS output Q6_K");
    CHECK(t, mix("IQ4_XS", &m, QF_ROLE_ATTN_Q, 0, 32, 4096) == GGML_TYPE_IQ4_XS, "IQ4_XS attn_q");
    /* IQ3_S / IQ3_M */
    CHECK(t, mix("IQ3_S", &m, QF_ROLE_ATTN_V, 9, 32, 4096) == GGML_TYPE_Q4_K, "IQ3_S attn_v gqa 4");
    CHECK(t, mix("IQ3_S", &m, QF_ROLE_FFN_DOWN, 0, 32, 4096) == GGML_TYPE_IQ3_S, "IQ3_S ffn_down");
    CHECK(t, mix("IQ3_S", &m, QF_ROLE_OUTPUT, 0, 0, 4096) == GGML_TYPE_Q6_K, "IQ3_S output");
    CHECK(t, mix("IQ3_M", &m, QF_ROLE_FFN_DOWN, 3, 32, 4096) == GGML_TYPE_Q4_K, "IQ3_M ffn_down 3");
    CHECK(t, mix("IQ3_M", &m, QF_ROLE_FFN_DOWN, 4, 32, 4096) == GGML_TYPE_IQ3_S, "IQ3_M ffn_down 4");
    CHECK(t, mix("IQ3_M", &m, QF_ROLE_ATTN_OUTPUT, 4, 32, 4096) == GGML_TYPE_Q4_K, "IQ3_M attn_output");
    CHECK(t, mix("IQ3_M", &m, QF_ROLE_ATTN_Q, 4, 32, 4096) == GGML_TYPE_IQ3_S, "IQ3_M attn_q");
    CHECK(t, mix("IQ3_XS", &m, QF_ROLE_ATTN_Q, 4, 32, 4096) == GGML_TYPE_IQ3_XXS, "IQ3_XS attn_q");
    /* IQ2_XXS: llama.cpp's low-bit branch (GQA 4 here) */
    CHECK(t, mix("IQ2_XXS", &m, QF_ROLE_ATTN_V, 4, 32, 4096) == GGML_TYPE_Q4_K, "IQ2_XXS attn_v gqa 4");
    CHECK(t, mix("IQ2_XXS", &m, QF_ROLE_FFN_DOWN, 3, 32, 4096) == GGML_TYPE_Q2_K, "IQ2_XXS ffn_down 3");
    CHECK(t, mix("IQ2_XXS", &m, QF_ROLE_FFN_DOWN, 4, 32, 4096) == GGML_TYPE_IQ2_XXS, "IQ2_XXS ffn_down 4");
    CHECK(t, mix("IQ2_XXS", &m, QF_ROLE_OUTPUT, 0, 0, 4096) == GGML_TYPE_Q5_K, "IQ2_XXS output");
    CHECK(t, mix("IQ2_XXS", &m, QF_ROLE_TOKEN_EMBD, 0, 0, 4096) == GGML_TYPE_Q2_K, "IQ2_XXS token_embd");
    CHECK(t, mix("IQ2_XXS", &m, QF_ROLE_ATTN_OUTPUT, 0, 32, 4096) == GGML_TYPE_IQ2_XXS, "IQ2_XXS attn_output");
    /* IQ1_S / IQ1_M: the same branch, attn_output IQ2_XXS; rows of 4000 fall back to IQ4_NL */
    CHECK(t, mix("IQ1_S", &m, QF_ROLE_ATTN_OUTPUT, 0, 32, 4096) == GGML_TYPE_IQ2_XXS, "IQ1_S attn_output");
    CHECK(t, mix("IQ1_M", &m, QF_ROLE_ATTN_OUTPUT, 0, 32, 4096) == GGML_TYPE_IQ2_XXS, "IQ1_M attn_output");
    CHECK(t, mix("IQ1_S", &m, QF_ROLE_ATTN_V, 4, 32, 4096) == GGML_TYPE_Q4_K, "IQ1_S attn_v gqa 4");
    CHECK(t, mix("IQ1_M", &m, QF_ROLE_FFN_DOWN, 3, 32, 4096) == GGML_TYPE_Q2_K, "IQ1_M ffn_down 3");
    CHECK(t, mix("IQ1_M", &m, QF_ROLE_FFN_DOWN, 4, 32, 4096) == GGML_TYPE_IQ1_M, "IQ1_M ffn_down 4");
    CHECK(t, mix("IQ1_S", &m, QF_ROLE_FFN_UP, 4, 32, 4096) == GGML_TYPE_IQ1_S, "IQ1_S ffn_up");
    CHECK(t, mix("IQ1_M", &m, QF_ROLE_OUTPUT, 0, 0, 4096) == GGML_TYPE_Q5_K, "IQ1_M output");
    CHECK(t, mix("IQ1_S", &m, QF_ROLE_TOKEN_EMBD, 0, 0, 4096) == GGML_TYPE_Q2_K, "IQ1_S token_embd");
    CHECK(t, qf_shape_fallback(GGML_TYPE_IQ1_S, 4000, NULL) == GGML_TYPE_IQ4_NL, "IQ1_S fallback");
    CHECK(t, qf_shape_fallback(GGML_TYPE_IQ1_M, 4000, NULL) == GGML_TYPE_IQ4_NL, "IQ1_M fallback");
    CHECK(t, qf_quant_preset_requires_imatrix(qf_quant_preset_find("IQ1_S")) &&
                 qf_quant_preset_requires_imatrix(qf_quant_preset_find("IQ1_M")), "IQ1 presets need an imatrix");
    CHECK(t, mix("IQ3_XS", &m, QF_ROLE_ATTN_K, 4, 32, 4096) == GGML_TYPE_IQ3_XXS, "IQ3_XS attn_k");
    CHECK(t, mix("IQ3_XS", &m, QF_ROLE_FFN_UP, 3, 32, 4096) == GGML_TYPE_IQ3_S, "IQ3_XS ffn_up 3");
    CHECK(t, mix("IQ3_XS", &m, QF_ROLE_FFN_UP, 4, 32, 4096) == GGML_TYPE_IQ3_XXS, "IQ3_XS ffn_up 4");
    CHECK(t, mix("IQ3_XS", &m, QF_ROLE_FFN_GATE, 27, 32, 4096) == GGML_TYPE_IQ3_XXS, "IQ3_XS ffn_gate 27");
    CHECK(t, mix("IQ3_XS", &m, QF_ROLE_FFN_GATE, 28, 32, 4096) == GGML_TYPE_IQ3_S, "IQ3_XS ffn_gate 28");
    /* IQ2_XS / IQ2_S / IQ2_M: the low-bit branch, IQ3_S guards for IQ2_S/IQ2_M; IQ3_XXS; Q2_K_S (GQA 4 here) */
    CHECK(t, mix("IQ2_XS", &m, QF_ROLE_FFN_DOWN, 3, 32, 4096) == GGML_TYPE_Q2_K, "IQ2_XS ffn_down 3");
    CHECK(t, mix("IQ2_S", &m, QF_ROLE_FFN_DOWN, 3, 32, 4096) == GGML_TYPE_IQ3_S, "IQ2_S ffn_down 3");
    CHECK(t, mix("IQ2_S", &m, QF_ROLE_FFN_UP, 3, 32, 4096) == GGML_TYPE_IQ2_XS, "IQ2_S ffn_up");
    CHECK(t, mix("IQ2_M", &m, QF_ROLE_ATTN_OUTPUT, 3, 32, 4096) == GGML_TYPE_IQ3_S, "IQ2_M attn_output");
    CHECK(t, mix("IQ2_M", &m, QF_ROLE_TOKEN_EMBD, 0, 0, 4096) == GGML_TYPE_IQ3_S, "IQ2_M token_embd");
    CHECK(t, mix("IQ2_M", &m, QF_ROLE_OUTPUT, 0, 0, 4096) == GGML_TYPE_Q5_K, "IQ2_M output");
    CHECK(t, mix("IQ3_XXS", &m, QF_ROLE_ATTN_Q, 0, 32, 4096) == GGML_TYPE_IQ2_S, "IQ3_XXS attn_q");
    CHECK(t, mix("IQ3_XXS", &m, QF_ROLE_ATTN_OUTPUT, 0, 32, 4096) == GGML_TYPE_IQ3_S, "IQ3_XXS attn_output");
    CHECK(t, mix("IQ3_XXS", &m, QF_ROLE_FFN_DOWN, 3, 32, 4096) == GGML_TYPE_Q4_K, "IQ3_XXS ffn_down 3 no imatrix");
    CHECK(t, mix("IQ3_XXS", &m, QF_ROLE_OUTPUT, 0, 0, 4096) == GGML_TYPE_Q5_K, "IQ3_XXS output");
    CHECK(t, mix("Q2_K_S", &m, QF_ROLE_FFN_DOWN, 3, 32, 4096) == GGML_TYPE_Q4_K, "Q2_K_S ffn_down 3");
    CHECK(t, mix("Q2_K_S", &m, QF_ROLE_FFN_DOWN, 4, 32, 4096) == GGML_TYPE_Q2_K, "Q2_K_S ffn_down 4");
    CHECK(t, mix("Q2_K_S", &m, QF_ROLE_ATTN_V, 4, 32, 4096) == GGML_TYPE_Q4_K, "Q2_K_S attn_v gqa 4");
    m.has_imatrix = 1;
    CHECK(t, mix("IQ4_XS", &m, QF_ROLE_FFN_DOWN, 0, 32, 4096) == GGML_TYPE_IQ4_XS, "IQ4_XS imatrix ffn_down 0");
    m.has_imatrix = 0;
    /* 70B: attn_v Q3_K/Q4_K -> Q5_K */
    m.is_70b = 1;
    CHECK(t, mix("Q4_K_M", &m, QF_ROLE_ATTN_V, 11, 80, 8192) == GGML_TYPE_Q5_K, "70B attn_v");
    CHECK(t, mix("Q4_K_M", &m, QF_ROLE_ATTN_V, 0, 80, 8192) == GGML_TYPE_Q6_K, "70B attn_v more bits");
    m.is_70b = 0;
    /* 8 experts: attn_v/attn_k Q8_0, attn_output Q5_K */
    m.n_expert = 8;
    CHECK(t, mix("Q4_K_M", &m, QF_ROLE_ATTN_V, 4, 32, 4096) == GGML_TYPE_Q8_0, "experts attn_v");
    CHECK(t, mix("Q4_0", &m, QF_ROLE_ATTN_K, 4, 32, 4096) == GGML_TYPE_Q8_0, "experts attn_k");
    CHECK(t, mix("Q4_K_M", &m, QF_ROLE_ATTN_OUTPUT, 4, 32, 4096) == GGML_TYPE_Q5_K, "experts attn_output");
    CHECK(t, mix("Q3_K_L", &m, QF_ROLE_ATTN_OUTPUT, 4, 32, 4096) == GGML_TYPE_Q3_K, "experts Q3_K_L attn_output");
    m.n_expert = 0;
    /* Falcon */
    m.is_falcon = 1;
    CHECK(t, mix("Q4_K_M", &m, QF_ROLE_OUTPUT, 0, 0, 4096) == GGML_TYPE_Q8_0, "falcon output");
    CHECK(t, mix("Q4_K_M", &m, QF_ROLE_FFN_DOWN, 1, 32, 4096) == GGML_TYPE_Q6_K, "falcon ffn_down i<n/16");
    CHECK(t, mix("Q4_K_M", &m, QF_ROLE_FFN_DOWN, 6, 32, 4096) == GGML_TYPE_Q5_K, "falcon ffn_down more bits");
    CHECK(t, mix("Q4_K_M", &m, QF_ROLE_FFN_DOWN, 7, 32, 4096) == GGML_TYPE_Q4_K, "falcon ffn_down");
    CHECK(t, mix("Q3_K_L", &m, QF_ROLE_ATTN_OUTPUT, 7, 32, 4096) == GGML_TYPE_Q4_K, "falcon Q3_K_L attn_output");
    CHECK(t, mix("Q3_K_M", &m, QF_ROLE_FFN_DOWN, 7, 32, 4096) == GGML_TYPE_Q3_K, "falcon Q3_K_M ffn_down");
}

/* ---------------- plans of real files ---------------- */

static void test_plan_stories260K_q4_k_m(qf_test *t) {
    char in_path[512];
    if (!qf_test_data(t, ORACLES "/stories260K-F32.gguf", in_path, sizeof in_path)) return;
    gguf_file in;
    qf_err err = {0};
    REQUIRE(t, gguf_open(&in, in_path, &err) == 0, "%s", err.msg);
    qf_quantize_opts o;
    qf_quantize_opts_init(&o);
    o.preset = qf_quant_preset_find("Q4_K_M");
    qf_quant_plan p;
    int rc = qf_quant_plan_build(&p, &in, &o, NULL, &err);
    CHECK(t, rc == 0, "%s", err.msg);
    if (!rc) {
        REQUIRE(t, p.n == 47, "%zu tensors", p.n);
        CHECK(t, !strcmp(p.t[0].name, "output_norm.weight") && !strcmp(p.t[1].name, "token_embd.weight") &&
                     !strcmp(p.t[2].name, "blk.0.attn_k.weight") && !strcmp(p.t[46].name, "blk.4.ffn_up.weight"),
              "order: %s %s %s ... %s", p.t[0].name, p.t[1].name, p.t[2].name, p.t[46].name);
        /* PROVENANCE per-tensor table */
        for (size_t i = 0; i < p.n; i++) {
            const qf_quant_tensor_plan *x = &p.t[i];
            uint32_t want;
            if (x->n_dims == 1) want = GGML_TYPE_F32;
            else if (!strcmp(x->name, "token_embd.weight")) want = GGML_TYPE_Q8_0;
            else if (x->role == QF_ROLE_FFN_DOWN) want = GGML_TYPE_F16;
            else if (x->role == QF_ROLE_ATTN_V && (strstr(x->name, "blk.2.") || strstr(x->name, "blk.4.")))
                want = GGML_TYPE_Q8_0;
            else want = GGML_TYPE_Q5_0;
            CHECK(t, x->type == want, "%s: %s, want %s", x->name, tn(x->type), tn(want));
        }
        CHECK(t, p.n_fallbacks == 35, "35 fallbacks (7 per layer), got %zu", p.n_fallbacks);
        CHECK(t, p.n_converted == 36, "36 converted, got %zu", p.n_converted);
        CHECK(t, p.type_count[GGML_TYPE_Q5_0] == 28 && p.type_count[GGML_TYPE_Q8_0] == 3 &&
                     p.type_count[GGML_TYPE_F16] == 5 && p.type_count[GGML_TYPE_F32] == 11,
              "type counts");
        /* sizes: the oracle file's tensors */
        char ref[512];
        gguf_file o4;
        if (qf_test_data(t, ORACLES "/stories260K-Q4_K_M.gguf", ref, sizeof ref) && gguf_open(&o4, ref, &err) == 0) {
            uint64_t sum = 0;
            for (uint64_t i = 0; i < o4.n_tensors; i++) sum += o4.tensors[i].nbytes;
            CHECK(t, p.out_tensor_bytes == sum, "out bytes %llu, oracle %llu", (unsigned long long)p.out_tensor_bytes,
                  (unsigned long long)sum);
            gguf_close(&o4);
        }
    }
    qf_quant_plan_free(&p);
    gguf_close(&in);
}

/* ---------------- running the whole thing ---------------- */

static int run(const char *in, const char *out, const char *preset, const char *imatrix, qf_quantize_opts *extra,
               qf_err *err) {
    qf_quantize_opts o;
    if (extra) o = *extra;
    else qf_quantize_opts_init(&o);
    o.in_path = in;
    o.out_path = out;
    o.preset = qf_quant_preset_find(preset);
    o.imatrix_path = imatrix;
    qf_err_clear(err);
    return qf_quantize(&o, NULL, err);
}

static void test_chunk_size_and_threads_do_not_change_bytes(qf_test *t) {
    char in_path[512], im_path[512], a[512], b[512];
    if (!qf_test_data(t, ORACLES "/stories260K-F32.gguf", in_path, sizeof in_path)) return;
    if (!qf_test_data(t, ORACLES "/stories260K-imatrix-wiki64x512.dat", im_path, sizeof im_path)) return;
    tmp_path(a, sizeof a, "chunk-a.gguf");
    tmp_path(b, sizeof b, "chunk-b.gguf");
    qf_err err;
    const char *presets[] = {"Q4_K_M", "Q4_1", "Q8_0"};
    for (size_t k = 0; k < 3; k++) {
        qf_quantize_opts o;
        qf_quantize_opts_init(&o);
        o.n_threads = 1;
        REQUIRE(t, run(in_path, a, presets[k], im_path, &o, &err) == 0, "%s", err.msg);
        o.n_threads = 2;
        o.chunk_bytes = 1;           /* one row per step */
        o.parallel_min_elements = 1; /* and threads even for tiny chunks */
        REQUIRE(t, run(in_path, b, presets[k], im_path, &o, &err) == 0, "%s", err.msg);
        CHECK(t, same_bytes(a, b), "%s: 1 thread, 32 MiB chunks vs 2 threads, 1-row chunks differ", presets[k]);
        o.n_threads = 3;
        o.chunk_bytes = 3000; /* chunks of 11 rows of 64 and of 4 rows of 172 */
        REQUIRE(t, run(in_path, b, presets[k], im_path, &o, &err) == 0, "%s", err.msg);
        CHECK(t, same_bytes(a, b), "%s: 3 threads, 3000-byte chunks differ", presets[k]);
    }
    unlink(a);
    unlink(b);
}

/* Relative RMS error of dequantized output vs input, by output type. */
static double max_rel_rmse(uint32_t type) {
    /* measured maxima on stories260K and synth-tinyk: f16 2.1e-4, bf16 2.0e-3,
     * q8_0 6.2e-3, q6_K 0.018, q5_* 0.050, q4_* 0.096, iq4_nl 0.071, iq4_xs 0.077, iq3_s 0.165, iq3_xxs 0.214, q3_K 0.151, q2_K 0.298 */
    switch (type) {
    case GGML_TYPE_F32: return 0;
    case GGML_TYPE_F16: return 5e-4;
    case GGML_TYPE_BF16: return 4e-3;
    case GGML_TYPE_Q8_0: return 0.009;
    case GGML_TYPE_Q6_K: return 0.025;
    case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1: case GGML_TYPE_Q5_K: return 0.06;
    case GGML_TYPE_Q4_0: case GGML_TYPE_Q4_1: case GGML_TYPE_Q4_K: case GGML_TYPE_IQ4_NL: case GGML_TYPE_IQ4_XS: return 0.12;
    case GGML_TYPE_Q3_K: case GGML_TYPE_IQ3_S: return 0.2;
    case GGML_TYPE_IQ3_XXS: return 0.26;
    case GGML_TYPE_Q2_K: return 0.4;
    }
    return 0;
}

/* Every preset: the output opens, says what it is, and every tensor
 * dequantizes to within the type's error bound of the input. */
static void every_type_reads_back(qf_test *t, const char *data_rel) {
    char in_path[512], out[512];
    if (!qf_test_data(t, data_rel, in_path, sizeof in_path)) return;
    tmp_path(out, sizeof out, "every.gguf");
    gguf_file in;
    qf_err err = {0};
    REQUIRE(t, gguf_open(&in, in_path, &err) == 0, "%s", err.msg);
    size_t np;
    const qf_quant_preset *presets = qf_quant_presets(&np);
    for (size_t k = 0; k < np; k++) {
        const qf_quant_preset *p = &presets[k];
        qf_quantize_result res;
        qf_quantize_opts o;
        qf_quantize_opts_init(&o);
        o.in_path = in_path;
        o.out_path = out;
        o.preset = p;
        err = (qf_err){0};
        int rc = qf_quantize(&o, &res, &err);
        /* refused without an imatrix (tests/cli/iquant_peer.sh has the files): the presets llama-quantize
         * refuses; IQ3_XXS and IQ2_M too where an IQ2_S tensor (attn_q/attn_k, resp. most) keeps its type
         * (rows of 256), which needs one */
        const int may_refuse = (p->ftype == 23 || p->ftype == 29) && rc != 0;
        if (qf_quant_preset_requires_imatrix(p) || qf_quantize_requires_imatrix(p->base_type) || may_refuse) {
            CHECK(t, rc != 0 && strstr(err.msg, "importance matrix"), "%s without imatrix: rc %d", p->name, rc);
            if (rc == 0) qf_quantize_result_free(&res);
            continue;
        }
        CHECK(t, rc == 0, "%s: %s", p->name, err.msg);
        gguf_file q;
        if (rc || gguf_open(&q, out, &err)) {
            CHECK(t, 0, "%s: cannot open output: %s", p->name, err.msg);
            qf_quantize_result_free(&res);
            continue;
        }
        uint32_t ft = 99, qv = 0;
        CHECK(t, gguf_get_u32(&q, "general.file_type", &ft) == 0 && ft == p->ftype, "%s: file_type %u", p->name, ft);
        CHECK(t, gguf_get_u32(&q, "general.quantization_version", &qv) == 0 && qv == 2, "%s: qv %u", p->name, qv);
        CHECK(t, q.n_tensors == in.n_tensors && q.n_tensors == res.plan.n, "%s: tensor count", p->name);
        CHECK(t, res.out_file_bytes == q.map_size, "%s: reported size", p->name);
        for (uint64_t i = 0; i < q.n_tensors; i++) {
            const gguf_tensor_info *qt = &q.tensors[i];
            const gguf_tensor_info *it = gguf_find_tensor(&in, qt->name);
            REQUIRE(t, it && it->n_elements == qt->n_elements, "%s: %s", p->name, qt->name);
            CHECK(t, qt->type == res.plan.t[i].type, "%s: %s type %s vs plan %s", p->name, qt->name, tn(qt->type),
                  tn(res.plan.t[i].type));
            float *x = malloc(qt->n_elements * sizeof *x), *y = malloc(qt->n_elements * sizeof *y);
            REQUIRE(t, x && y, "oom");
            int d1 = qf_dequantize_row(it->type, it->data, x, (int64_t)it->n_elements);
            int d2 = qf_dequantize_row(qt->type, qt->data, y, (int64_t)qt->n_elements);
            CHECK(t, d1 == 0 && d2 == 0, "%s: %s does not dequantize", p->name, qt->name);
            double se = 0, sx = 0;
            for (uint64_t j = 0; j < qt->n_elements; j++) {
                double dlt = (double)y[j] - (double)x[j];
                se += dlt * dlt;
                sx += (double)x[j] * x[j];
            }
            double rel = sx > 0 ? sqrt(se / sx) : sqrt(se);
            CHECK(t, isfinite(rel) && rel <= max_rel_rmse(qt->type), "%s: %s as %s: relative rms error %.4g > %.4g",
                  p->name, qt->name, tn(qt->type), rel, max_rel_rmse(qt->type));
            free(x);
            free(y);
        }
        gguf_close(&q);
        qf_quantize_result_free(&res);
    }
    unlink(out);
    gguf_close(&in);
}

static void test_every_type_reads_back_stories260K(qf_test *t) { every_type_reads_back(t, ORACLES "/stories260K-F32.gguf"); }
static void test_every_type_reads_back_synth_tinyk(qf_test *t) { every_type_reads_back(t, ORACLES "/synth-tinyk-F16.gguf"); }

/* ---------------- options ---------------- */

static void test_overrides_pure_and_output_types(qf_test *t) {
    char in_path[512], out[512];
    if (!qf_test_data(t, ORACLES "/synth-tinyk-F16.gguf", in_path, sizeof in_path)) return;
    tmp_path(out, sizeof out, "ov.gguf");
    gguf_file in;
    qf_err err = {0};
    REQUIRE(t, gguf_open(&in, in_path, &err) == 0, "%s", err.msg);
    qf_tensor_type_override ov[] = {
        {"attn_(q|k)\\.", GGML_TYPE_Q8_0},
        {"blk\\.\\d+\\.ffn_up", GGML_TYPE_F16},
        {"ffn_", GGML_TYPE_Q5_0}, /* first match wins: ffn_up stays F16 */
    };
    qf_quantize_opts o;
    qf_quantize_opts_init(&o);
    o.preset = qf_quant_preset_find("Q4_K_M");
    o.overrides = ov;
    o.n_overrides = 3;
    qf_quant_plan p;
    REQUIRE(t, qf_quant_plan_build(&p, &in, &o, NULL, &err) == 0, "%s", err.msg);
    for (size_t i = 0; i < p.n; i++) {
        const qf_quant_tensor_plan *x = &p.t[i];
        uint32_t want = x->type;
        if (x->role == QF_ROLE_ATTN_Q || x->role == QF_ROLE_ATTN_K) want = GGML_TYPE_Q8_0;
        else if (x->role == QF_ROLE_FFN_UP) want = GGML_TYPE_F16;
        else if (x->role == QF_ROLE_FFN_GATE || x->role == QF_ROLE_FFN_DOWN) want = GGML_TYPE_Q5_0;
        else if (x->role == QF_ROLE_ATTN_V) want = GGML_TYPE_Q6_K;
        CHECK(t, x->type == want, "override: %s is %s, want %s", x->name, tn(x->type), tn(want));
    }
    qf_quant_plan_free(&p);

    /* --pure: every 2-D weight Q4_K, tied token_embd included */
    qf_quantize_opts_init(&o);
    o.preset = qf_quant_preset_find("Q4_K_M");
    o.pure = 1;
    REQUIRE(t, qf_quant_plan_build(&p, &in, &o, NULL, &err) == 0, "%s", err.msg);
    for (size_t i = 0; i < p.n; i++)
        CHECK(t, p.t[i].type == (p.t[i].n_dims == 2 ? GGML_TYPE_Q4_K : GGML_TYPE_F32), "pure: %s is %s", p.t[i].name,
              tn(p.t[i].type));
    qf_quant_plan_free(&p);

    /* --output-tensor-type reaches a tied token_embd through the mix; --token-embedding-type wins */
    qf_quantize_opts_init(&o);
    o.preset = qf_quant_preset_find("Q4_K_M");
    o.output_tensor_type = GGML_TYPE_Q8_0;
    REQUIRE(t, qf_quant_plan_build(&p, &in, &o, NULL, &err) == 0, "%s", err.msg);
    CHECK(t, p.t[1].type == GGML_TYPE_Q8_0 && !strcmp(p.t[1].name, "token_embd.weight"), "tied output type: %s %s",
          p.t[1].name, tn(p.t[1].type));
    qf_quant_plan_free(&p);
    o.token_embedding_type = GGML_TYPE_Q4_0;
    REQUIRE(t, qf_quant_plan_build(&p, &in, &o, NULL, &err) == 0, "%s", err.msg);
    CHECK(t, p.t[1].type == GGML_TYPE_Q4_0, "token embedding type: %s", tn(p.t[1].type));
    qf_quant_plan_free(&p);

    /* a bad regex is an error naming it */
    qf_tensor_type_override bad[] = {{"attn_(q", GGML_TYPE_Q8_0}};
    qf_quantize_opts_init(&o);
    o.preset = qf_quant_preset_find("Q4_K_M");
    o.overrides = bad;
    o.n_overrides = 1;
    CHECK(t, qf_quant_plan_build(&p, &in, &o, NULL, &err) == QF_EINVAL && strstr(err.msg, "attn_(q"), "bad regex: %s",
          err.msg);
    gguf_close(&in);
}

/* ---------------- errors ---------------- */

static void test_requantize(qf_test *t) {
    char in_path[512], q8[512], out[512];
    if (!qf_test_data(t, ORACLES "/synth-tinyk-F16.gguf", in_path, sizeof in_path)) return;
    qf_err err;
    tmp_path(q8, sizeof q8, "requant-q8.gguf");
    tmp_path(out, sizeof out, "requant-out.gguf");
    REQUIRE(t, run(in_path, q8, "Q8_0", NULL, NULL, &err) == 0, "%s", err.msg);
    unlink(out);
    int rc = run(q8, out, "Q4_K_M", NULL, NULL, &err);
    CHECK(t, rc == QF_EINVAL && strstr(err.msg, "already quantized") && strstr(err.msg, "--allow-requantize"),
          "rc %d: %s", rc, err.msg);
    CHECK(t, !file_exists(out), "nothing written");
    /* same type again: every tensor is copied, llama.cpp allows that */
    CHECK(t, run(q8, out, "Q8_0", NULL, NULL, &err) == 0 && same_bytes(q8, out), "Q8_0 -> Q8_0: %s", err.msg);
    qf_quantize_opts o;
    qf_quantize_opts_init(&o);
    o.allow_requantize = 1;
    rc = run(q8, out, "Q4_K_M", NULL, &o, &err);
    CHECK(t, rc == 0, "with allow_requantize: %s", err.msg);
    gguf_file g;
    if (!rc && gguf_open(&g, out, &err) == 0) {
        const gguf_tensor_info *a = gguf_find_tensor(&g, "blk.0.attn_q.weight");
        CHECK(t, a && a->type == GGML_TYPE_Q4_K, "requantized to q4_K");
        gguf_close(&g);
    }
    unlink(q8);
    unlink(out);
}

static void test_imatrix_errors(qf_test *t) {
    char in_path[512], dat[512], bad[512], out[512];
    if (!qf_test_data(t, ORACLES "/stories260K-F32.gguf", in_path, sizeof in_path)) return;
    if (!qf_test_data(t, ORACLES "/stories260K-imatrix-wiki64x512.dat", dat, sizeof dat)) return;
    tmp_path(bad, sizeof bad, "bad-imatrix.dat");
    tmp_path(out, sizeof out, "imat-out.gguf");
    qf_err err = {0};
    qf_imatrix im;
    qf_imatrix_init(&im);
    REQUIRE(t, qf_imatrix_read(&im, dat, &err) == 0, "%s", err.msg);
    REQUIRE(t, im.n_entries == 35, "%zu entries", im.n_entries);

    /* another model: every entry renamed */
    char **names = malloc(im.n_entries * sizeof *names);
    for (size_t i = 0; i < im.n_entries; i++) {
        names[i] = im.entries[i].name;
        size_t n = strlen(names[i]) + 8;
        im.entries[i].name = malloc(n);
        snprintf(im.entries[i].name, n, "model.%s", names[i]);
    }
    REQUIRE(t, qf_imatrix_write_dat(&im, bad, &err) == 0, "%s", err.msg);
    int rc = run(in_path, out, "Q4_K_M", bad, NULL, &err);
    CHECK(t, rc == QF_EMISMATCH && strstr(err.msg, "another model"), "renamed: %d %s", rc, err.msg);
    CHECK(t, !file_exists(out), "renamed: nothing written");
    for (size_t i = 0; i < im.n_entries; i++) {
        free(im.entries[i].name);
        im.entries[i].name = names[i];
    }
    free(names);
    qf_imatrix_free(&im);

    /* one entry of the wrong length: error naming the tensor and both lengths */
    qf_imatrix_init(&im);
    REQUIRE(t, qf_imatrix_read(&im, dat, &err) == 0, "%s", err.msg);
    qf_imatrix wrong;
    qf_imatrix_init(&wrong);
    for (size_t i = 0; i < im.n_entries; i++) {
        const qf_imatrix_entry *e = &im.entries[i];
        int twice = !strcmp(e->name, "blk.1.attn_q.weight");
        qf_imatrix_entry *ne;
        REQUIRE(t, qf_imatrix_add(&wrong, e->name, e->n_cols * (twice ? 2 : 1), 1, &ne, &err) == 0, "%s", err.msg);
        for (uint32_t j = 0; j < ne->n_cols; j++) ne->sum2[j] = e->sum2[j % e->n_cols];
        ne->counts[0] = e->counts[0];
        ne->ncall = e->ncall;
    }
    wrong.chunk_count = 64;
    REQUIRE(t, qf_imatrix_write_dat(&wrong, bad, &err) == 0, "%s", err.msg);
    rc = run(in_path, out, "Q4_0", bad, NULL, &err);
    CHECK(t, rc == QF_EMISMATCH && strstr(err.msg, "blk.1.attn_q.weight") && strstr(err.msg, "128") &&
                 strstr(err.msg, "64"),
          "wrong length: %d %s", rc, err.msg);
    CHECK(t, !file_exists(out), "wrong length: nothing written");
    qf_imatrix_free(&wrong);

    /* token_embd of the wrong length is tolerated (llama.cpp does the same) */
    qf_imatrix_init(&wrong);
    for (size_t i = 0; i < im.n_entries; i++) {
        const qf_imatrix_entry *e = &im.entries[i];
        qf_imatrix_entry *ne;
        REQUIRE(t, qf_imatrix_add(&wrong, e->name, e->n_cols, 1, &ne, &err) == 0, "%s", err.msg);
        memcpy(ne->sum2, e->sum2, e->n_cols * sizeof *ne->sum2);
        ne->counts[0] = e->counts[0];
        ne->ncall = e->ncall;
    }
    qf_imatrix_entry *te;
    REQUIRE(t, qf_imatrix_add(&wrong, "token_embd.weight", 512, 1, &te, &err) == 0, "%s", err.msg);
    te->counts[0] = 1;
    REQUIRE(t, qf_imatrix_write_dat(&wrong, bad, &err) == 0, "%s", err.msg);
    rc = run(in_path, out, "Q4_0", bad, NULL, &err);
    CHECK(t, rc == 0, "token_embd of another length: %s", err.msg);
    qf_imatrix_free(&wrong);
    qf_imatrix_free(&im);
    unlink(bad);
    unlink(out);
}

static void test_output_path_checks(qf_test *t) {
    char src[512], in_copy[512], out[512], tmpdir[512];
    if (!qf_test_data(t, ORACLES "/stories260K-F32.gguf", src, sizeof src)) return;
    tmp_path(in_copy, sizeof in_copy, "paths-in.gguf");
    tmp_path(out, sizeof out, "paths-out.gguf");
    snprintf(tmpdir, sizeof tmpdir, "%s", qf_test_tmpdir());
    qf_err err;
    REQUIRE(t, run(src, in_copy, "F32", NULL, NULL, &err) == 0, "%s", err.msg);
    size_t n0;
    unsigned char *before = qf_test_read_file(in_copy, &n0);

    /* output == input, also through another spelling of the path */
    int rc = run(in_copy, in_copy, "Q8_0", NULL, NULL, &err);
    CHECK(t, rc == QF_EINVAL && strstr(err.msg, "output is the input"), "same path: %d %s", rc, err.msg);
    char other[600];
    snprintf(other, sizeof other, "%s/./quantize_test-paths-in.gguf", tmpdir);
    rc = run(in_copy, other, "Q8_0", NULL, NULL, &err);
    CHECK(t, rc == QF_EINVAL, "same file, other path: %d %s", rc, err.msg);
    size_t n1;
    unsigned char *after = qf_test_read_file(in_copy, &n1);
    CHECK(t, before && after && n0 == n1 && !memcmp(before, after, n0), "input untouched");
    free(after);

    /* unwritable output: a directory that does not exist */
    rc = run(in_copy, "/nonexistent-qforge-dir/out.gguf", "Q8_0", NULL, NULL, &err);
    CHECK(t, rc != 0 && strstr(err.msg, "/nonexistent-qforge-dir/out.gguf"), "unwritable: %d %s", rc, err.msg);

    /* a failure keeps an existing output file as it was, and leaves no temp file */
    FILE *fp = fopen(out, "wb");
    REQUIRE(t, fp, "cannot create %s", out);
    fputs("previous contents", fp);
    fclose(fp);
    qf_quantize_opts o;
    qf_quantize_opts_init(&o);
    o.write_manifest = 1;
    rc = run(in_copy, out, "Q8_0", "/nonexistent-imatrix.dat", &o, &err);
    CHECK(t, rc != 0, "missing imatrix must fail");
    size_t n2;
    unsigned char *kept = qf_test_read_file(out, &n2);
    CHECK(t, kept && n2 == 17 && !memcmp(kept, "previous contents", 17), "existing output overwritten");
    free(kept);
    CHECK(t, count_prefixed(tmpdir, "quantize_test-paths-out.gguf.") == 0, "temp files left in %s", tmpdir);

    /* a directory that is not a Hugging Face checkpoint: the converter says why, nothing is left */
    rc = run(tmpdir, out, "Q8_0", NULL, NULL, &err);
    CHECK(t, rc != 0 && strstr(err.msg, "config.json"), "directory input: %s", err.msg);
    CHECK(t, count_prefixed(tmpdir, "quantize_test-paths-out.gguf.") == 0, "temp files left in %s", tmpdir);
    free(before);
    unlink(in_copy);
    unlink(out);
}

static void test_non_finite_input(qf_test *t) {
    char path[512], out[512];
    tmp_path(path, sizeof path, "nan.gguf");
    tmp_path(out, sizeof out, "nan-out.gguf");
    qf_err err = {0};
    gguf_writer *w = gguf_writer_create(path, &err);
    REQUIRE(t, w, "%s", err.msg);
    uint64_t ne[2] = {64, 4};
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_add_tensor(w, "blk.0.attn_q.weight", GGML_TYPE_F32, 2, ne);
    REQUIRE(t, gguf_writer_begin_data(w) == 0, "begin");
    float x[256];
    for (int i = 0; i < 256; i++) x[i] = 0.01f * (float)(i % 17);
    x[100] = NAN;
    gguf_writer_write_tensor_data(w, x, sizeof x);
    REQUIRE(t, gguf_writer_finish(w) == 0, "finish");
    int rc = run(path, out, "Q8_0", NULL, NULL, &err);
    CHECK(t, rc == QF_ERANGE && strstr(err.msg, "blk.0.attn_q.weight") && strstr(err.msg, "100"), "nan: %d %s", rc,
          err.msg);
    CHECK(t, !file_exists(out), "nothing written");
    unlink(path);
}

/* ---------------- manifest ---------------- */

static void test_manifest(qf_test *t) {
    char in_path[512], out[512], man[600];
    if (!qf_test_data(t, ORACLES "/synth-tinyk-F16.gguf", in_path, sizeof in_path)) return;
    tmp_path(out, sizeof out, "manifest.gguf");
    snprintf(man, sizeof man, "%s.xxh", out);
    unlink(man);
    qf_quantize_opts o;
    qf_quantize_opts_init(&o);
    o.write_manifest = 1;
    qf_err err;
    REQUIRE(t, run(in_path, out, "Q4_K_M", NULL, &o, &err) == 0, "%s", err.msg);
    gguf_file g;
    REQUIRE(t, gguf_open(&g, out, &err) == 0, "%s", err.msg);
    FILE *fp = fopen(man, "r");
    REQUIRE(t, fp, "no manifest %s", man);
    char line[512];
    size_t n_tensor_lines = 0, n_file_lines = 0;
    int first = 1;
    while (fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\n")] = 0;
        if (first) {
            CHECK(t, !strncmp(line, "# qforge-quantize manifest v1", 29), "header: %s", line);
            first = 0;
            continue;
        }
        char kind[16], hex[64], name[256];
        REQUIRE(t, sscanf(line, "%15s %63s %255s", kind, hex, name) == 3, "line: %s", line);
        char want[33];
        if (!strcmp(kind, "tensor")) {
            const gguf_tensor_info *ti = gguf_find_tensor(&g, name);
            REQUIRE(t, ti, "no tensor %s", name);
            CHECK(t, !strcmp(ti->name, g.tensors[n_tensor_lines].name), "tensor line order");
            qf_hash128 h = qf_hash128_of(ti->data, ti->nbytes);
            qf_hash128_hex(&h, want);
            CHECK(t, !strcmp(hex, want), "%s: %s != %s", name, hex, want);
            n_tensor_lines++;
        } else if (!strcmp(kind, "file")) {
            qf_hash128 h = qf_hash128_of(g.map, g.map_size);
            qf_hash128_hex(&h, want);
            CHECK(t, !strcmp(hex, want) && !strcmp(name, "quantize_test-manifest.gguf"), "file line: %s", line);
            n_file_lines++;
        } else {
            CHECK(t, 0, "unknown line %s", line);
        }
    }
    fclose(fp);
    CHECK(t, n_tensor_lines == g.n_tensors && n_file_lines == 1, "%zu tensor lines, %zu file lines", n_tensor_lines,
          n_file_lines);
    /* known-answer: XXH3-128 of "" (xxhsum -H2 < /dev/null) */
    qf_hash128 e = qf_hash128_of("", 0);
    char hex[33];
    qf_hash128_hex(&e, hex);
    CHECK(t, !strcmp(hex, "99aa06d3014798d86001c324468d497f"), "empty: %s", hex);
    gguf_close(&g);
    unlink(out);
    unlink(man);
}

QF_TEST_MAIN(test_presets_and_ftypes, test_use_more_bits, test_quantizable_and_roles, test_shape_fallbacks,
             test_mix_table_synth_tinyk, test_mix_rules_32_layers, test_plan_stories260K_q4_k_m,
             test_chunk_size_and_threads_do_not_change_bytes, test_every_type_reads_back_stories260K,
             test_every_type_reads_back_synth_tinyk, test_overrides_pure_and_output_types, test_requantize,
             test_imatrix_errors, test_output_path_checks, test_non_finite_input, test_manifest)
