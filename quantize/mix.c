/* mix.c - the type menu and the per-tensor type rules of llama-quantize.
 *
 * Facts from llama.cpp src/llama-quant.cpp at c392e50 (llama_tensor_get_type,
 * llama_model_quantize_impl) and the oracle files in
 * shared/oracles/llamacpp; written down here as tables. docs/quantize.md has
 * the same tables in prose.
 */
#include "quantize.h"
#include "qf_util.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "ggml_types.h"
#include "codecs.h"
#include "search.h"

/* ---------------- the type menu ---------------- */

static const qf_quant_preset presets[] = {
    /* name      llama_ftype             base type           summary */
    {"Q8_0",   QF_FTYPE_MOSTLY_Q8_0,   GGML_TYPE_Q8_0, "8.50 bpw, one fp16 scale per 32 weights; nearly lossless"},
    {"Q6_K",   QF_FTYPE_MOSTLY_Q6_K,   GGML_TYPE_Q6_K, "6.56 bpw, Q6_K everywhere"},
    {"Q5_K_M", QF_FTYPE_MOSTLY_Q5_K_M, GGML_TYPE_Q5_K, "Q5_K; attn_v, ffn_down Q6_K in use_more_bits layers; output Q6_K"},
    {"Q5_K_S", QF_FTYPE_MOSTLY_Q5_K_S, GGML_TYPE_Q5_K, "Q5_K; output Q6_K"},
    {"Q5_1",   QF_FTYPE_MOSTLY_Q5_1,   GGML_TYPE_Q5_1, "6.00 bpw legacy: scale + min per 32; output Q6_K"},
    {"Q5_0",   QF_FTYPE_MOSTLY_Q5_0,   GGML_TYPE_Q5_0, "5.50 bpw legacy: scale per 32; output Q6_K"},
    {"Q4_K_M", QF_FTYPE_MOSTLY_Q4_K_M, GGML_TYPE_Q4_K, "Q4_K; attn_v, ffn_down Q6_K in use_more_bits layers; output Q6_K"},
    {"Q4_K_S", QF_FTYPE_MOSTLY_Q4_K_S, GGML_TYPE_Q4_K, "Q4_K; attn_v Q5_K (first 4), ffn_down Q5_K (first n/8); output Q6_K"},
    {"Q4_1",   QF_FTYPE_MOSTLY_Q4_1,   GGML_TYPE_Q4_1, "5.00 bpw legacy: scale + min per 32; output Q6_K"},
    {"Q4_0",   QF_FTYPE_MOSTLY_Q4_0,   GGML_TYPE_Q4_0, "4.50 bpw legacy: scale per 32; output Q6_K"},
    {"IQ4_NL", QF_FTYPE_MOSTLY_IQ4_NL, GGML_TYPE_IQ4_NL, "4.50 bpw: scale + non-linear 4-bit levels per 32; attn_v Q5_K if GQA >= 4; output Q6_K"},
    {"IQ4_XS", QF_FTYPE_MOSTLY_IQ4_XS, GGML_TYPE_IQ4_XS, "4.25 bpw: IQ4_NL levels, 6-bit scale per 32 in 256-blocks; attn_v Q5_K if GQA >= 4; output Q6_K"},
    {"IQ3_M",  QF_FTYPE_MOSTLY_IQ3_M,  GGML_TYPE_IQ3_S,  "3.66 bpw mix: IQ3_S; attn_v, attn_output Q4_K, ffn_down Q4_K (first n/8); output Q6_K"},
    {"IQ3_S",  QF_FTYPE_MOSTLY_IQ3_S,  GGML_TYPE_IQ3_S,  "3.44 bpw: grid of 512 4-tuples, sign bits, 4-bit scale per 32; attn_v Q4_K if GQA >= 4; output Q6_K"},
    {"IQ3_XS", QF_FTYPE_MOSTLY_IQ3_XS, GGML_TYPE_IQ3_S,  "3.3 bpw mix: IQ3_S; attn_q, attn_k and middle ffn_gate/ffn_up IQ3_XXS; attn_v Q4_K if GQA >= 4; output Q6_K"},
    {"Q3_K_L", QF_FTYPE_MOSTLY_Q3_K_L, GGML_TYPE_Q3_K, "Q3_K; attn_v, attn_output, ffn_down Q5_K; output Q6_K"},
    {"Q3_K_M", QF_FTYPE_MOSTLY_Q3_K_M, GGML_TYPE_Q3_K, "Q3_K; attn_v Q5_K (first 2) else Q4_K, attn_output, ffn_down Q4_K; output Q6_K"},
    {"Q3_K_S", QF_FTYPE_MOSTLY_Q3_K_S, GGML_TYPE_Q3_K, "Q3_K; output Q6_K"},
    {"Q2_K",   QF_FTYPE_MOSTLY_Q2_K,   GGML_TYPE_Q2_K, "Q2_K; attn_v, attn_output, ffn_down Q3_K; output Q6_K"},
    {"IQ3_XXS", QF_FTYPE_MOSTLY_IQ3_XXS, GGML_TYPE_IQ3_XXS, "3.06 bpw (needs --imatrix for its IQ2_S): grid of 256 4-tuples; attn_q, attn_k IQ2_S; attn_output, token_embd IQ3_S; output Q5_K"},
    {"Q2_K_S", QF_FTYPE_MOSTLY_Q2_K_S, GGML_TYPE_Q2_K, "Q2_K (needs --imatrix); attn_v Q4_K if GQA >= 4, ffn_down Q4_K (first n/8); output Q6_K"},
    {"IQ2_M",  QF_FTYPE_MOSTLY_IQ2_M,  GGML_TYPE_IQ2_S,  "2.7 bpw mix (needs --imatrix for its IQ2_S): IQ2_S; attn_v, attn_output, ffn_down (first n/8), token_embd IQ3_S; output Q5_K"},
    {"IQ2_S",  QF_FTYPE_MOSTLY_IQ2_S,  GGML_TYPE_IQ2_XS, "2.5 bpw mix (needs --imatrix): IQ2_XS; attn_v, attn_output, ffn_down (first n/8), token_embd IQ3_S; output Q5_K"},
    {"IQ2_XS", QF_FTYPE_MOSTLY_IQ2_XS, GGML_TYPE_IQ2_XS, "2.31 bpw (needs --imatrix): grid of 512 8-tuples, 4-bit scale per 16; attn_v, ffn_down (first n/8), token_embd Q2_K; output Q5_K"},
    {"IQ2_XXS", QF_FTYPE_MOSTLY_IQ2_XXS, GGML_TYPE_IQ2_XXS, "2.06 bpw (needs --imatrix): grid of 256 8-tuples; attn_v, ffn_down (first n/8), token_embd Q2_K; output Q5_K"},
    {"IQ1_M",  QF_FTYPE_MOSTLY_IQ1_M,  GGML_TYPE_IQ1_M, "1.75 bpw (needs --imatrix): ternary grid of 2048 8-tuples, shift per 8, scale per 16; attn_output IQ2_XXS; attn_v, ffn_down (first n/8), token_embd Q2_K; output Q5_K"},
    {"IQ1_S",  QF_FTYPE_MOSTLY_IQ1_S,  GGML_TYPE_IQ1_S, "1.56 bpw (needs --imatrix): ternary grid of 2048 8-tuples, shift and scale per 32; attn_output IQ2_XXS; attn_v, ffn_down (first n/8), token_embd Q2_K; output Q5_K"},
    {"F16",    QF_FTYPE_MOSTLY_F16,    GGML_TYPE_F16,  "16-bit IEEE half for every 2-D weight"},
    {"BF16",   QF_FTYPE_MOSTLY_BF16,   GGML_TYPE_BF16, "16-bit bfloat for every 2-D weight"},
    {"F32",    QF_FTYPE_ALL_F32,       GGML_TYPE_F32,  "32-bit float for every 2-D weight"},
};

const qf_quant_preset *qf_quant_presets(size_t *n) {
    if (n) *n = sizeof presets / sizeof presets[0];
    return presets;
}

const qf_quant_preset *qf_quant_preset_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (strcasecmp(presets[i].name, name) == 0) return &presets[i];
    return NULL;
}

int qf_quant_preset_requires_imatrix(const qf_quant_preset *p) {
    return p && (p->ftype == QF_FTYPE_MOSTLY_IQ2_XXS || p->ftype == QF_FTYPE_MOSTLY_IQ2_XS ||
                 p->ftype == QF_FTYPE_MOSTLY_IQ2_S || p->ftype == QF_FTYPE_MOSTLY_Q2_K_S ||
                 p->ftype == QF_FTYPE_MOSTLY_IQ1_S || p->ftype == QF_FTYPE_MOSTLY_IQ1_M);
}

int qf_quant_preset_is_grid(const qf_quant_preset *p) {
    if (!p) return 0;
    switch (p->base_type) {
    case GGML_TYPE_IQ1_S:
    case GGML_TYPE_IQ1_M:
    case GGML_TYPE_IQ2_XXS:
    case GGML_TYPE_IQ2_XS:
    case GGML_TYPE_IQ2_S:
    case GGML_TYPE_IQ3_XXS:
    case GGML_TYPE_IQ3_S: return 1;
    default: return 0;
    }
}

int qf_mix_requires_imatrix(const qf_quant_preset *p, uint32_t type, const char *name) {
    const int is_embd = name && strcmp(name, "token_embd.weight") == 0;
    const int is_output = name && strcmp(name, "output.weight") == 0;
    switch (type) {
    case GGML_TYPE_IQ2_XXS:
    case GGML_TYPE_IQ2_XS:
    case GGML_TYPE_IQ2_S:
    case GGML_TYPE_IQ1_S: return 1;
    case GGML_TYPE_IQ1_M: return !is_embd && !is_output;
    case GGML_TYPE_Q2_K: return p && p->ftype == QF_FTYPE_MOSTLY_Q2_K_S && !is_embd;
    default: return 0;
    }
}

int qf_quant_type_ok(uint32_t type) { return type < GGML_TYPE_COUNT && qf_quantize_supports(type); }

/* ---------------- how blocks are chosen ---------------- */

static const char *const method_names[] = { "exact", "search", "auto", "gptq", "awq", "awq+gptq" };

const char *qf_quant_method_name(int method) {
    return method >= 0 && method < (int)(sizeof method_names / sizeof *method_names) ? method_names[method] : "?";
}

int qf_quant_method_from_name(const char *s) {
    for (int i = 0; s && i < (int)(sizeof method_names / sizeof *method_names); i++)
        if (strcasecmp(s, method_names[i]) == 0) return i;
    return -1;
}

static int is_k_type(uint32_t t) {
    return t == GGML_TYPE_Q2_K || t == GGML_TYPE_Q3_K || t == GGML_TYPE_Q4_K || t == GGML_TYPE_Q5_K ||
           t == GGML_TYPE_Q6_K;
}

/* AUTO (docs/quantize.md; measurements in docs/quality.md; IQ2/IQ1 codebook
 * tensors are searched by --method search only, IQ3 ones as below):
 *  - K-quant presets, IQ4_NL and IQ4_XS: search every tensor that has a search,
 *    the shape fallbacks (IQ4_NL, Q5_0, Q5_1, Q8_0) included: it lowered KLD
 *    against llama.cpp's file in every such row measured, with and without
 *    imatrix;
 *  - legacy presets without an imatrix: exact, byte-identical to
 *    llama-quantize (the issue requires it);
 *  - legacy presets with an imatrix: search, except for Q4_1 and Q5_0
 *    tensors, where it came out slightly worse than exact on stories260K
 *    (+2.1% / +0.4% KLD) although it lowers their weighted error. */
/* The 2- and 1-bit codebook types, whose search (the points re-chosen under
 * ggml's scales) lowers the weighted error but raised KLD on distill-3M. */
static int is_lowbit_codebook(uint32_t t) {
    return t == GGML_TYPE_IQ2_S || t == GGML_TYPE_IQ2_XS || t == GGML_TYPE_IQ2_XXS || t == GGML_TYPE_IQ1_S ||
           t == GGML_TYPE_IQ1_M;
}

int qf_quant_method_searches(int method, const qf_quant_preset *p, uint32_t type, int has_imatrix) {
    if (!qf_quantize_search_supports(type)) return 0;
    if (is_lowbit_codebook(type) && method != QF_QUANT_METHOD_SEARCH) return 0; /* --method search only */
    if (method == QF_QUANT_METHOD_GPTQ) method = QF_QUANT_METHOD_AUTO; /* the tensors GPTQ leaves */
    if (method == QF_QUANT_METHOD_AWQ_GPTQ) method = QF_QUANT_METHOD_AUTO;
    if (method == QF_QUANT_METHOD_AWQ) method = QF_QUANT_METHOD_SEARCH; /* AWQ's baseline is the search (awq.h) */
    if (method == QF_QUANT_METHOD_SEARCH) return 1;
    if (method != QF_QUANT_METHOD_AUTO || !p) return 0;
    if (is_k_type(p->base_type) || p->base_type == GGML_TYPE_IQ4_NL || p->base_type == GGML_TYPE_IQ4_XS) return 1;
    return has_imatrix && type != GGML_TYPE_Q4_1 && type != GGML_TYPE_Q5_0;
}

/* ---------------- which tensors, and what they are ---------------- */

uint32_t qf_tensor_n_dims(const uint64_t ne[GGUF_MAX_DIMS]) {
    for (int d = GGUF_MAX_DIMS - 1; d >= 1; d--)
        if (ne[d] != 1) return (uint32_t)d + 1;
    return 1;
}

/* Tensors llama-quantize never quantizes although they are 2-D weights. */
static const char *const never_quantized_substr[] = {
    "_norm.weight",               /* norms (1-D anyway in llama models) */
    "ffn_gate_inp.weight",        /* MoE router */
    "ssm_conv1d.weight",          /* Mamba, tiny */
    "time_mix_first.weight",      /* RWKV6, small */
    "time_mix_w1.weight",
    "time_mix_w2.weight",
    "time_mix_decay_w1.weight",
    "time_mix_decay_w2.weight",
    "time_mix_lerp_fused.weight",
    "attn_rel_b.weight",          /* T5 relative position bias */
};
static const char *const never_quantized_exact[] = {
    "position_embd.weight",       /* learned positions (BERT, GPT-2) */
    "token_types.weight",         /* BERT token types */
};

int qf_tensor_is_quantizable(const char *name, uint32_t n_dims) {
    if (n_dims < 2 || !qf_ends_with(name, "weight")) return 0;
    for (size_t i = 0; i < sizeof never_quantized_substr / sizeof *never_quantized_substr; i++)
        if (strstr(name, never_quantized_substr[i])) return 0;
    for (size_t i = 0; i < sizeof never_quantized_exact / sizeof *never_quantized_exact; i++)
        if (strcmp(name, never_quantized_exact[i]) == 0) return 0;
    return 1;
}

/* Role by name, in llama.cpp's matching order (exact names first, then the
 * first substring that occurs). */
static const struct {
    qf_tensor_role role;
    const char *substr;
    const char *label;
} role_names[] = {
    {QF_ROLE_ATTN_V, "attn_v.weight", "attn_v"},
    {QF_ROLE_ATTN_K, "attn_k.weight", "attn_k"},
    {QF_ROLE_ATTN_Q, "attn_q.weight", "attn_q"},
    {QF_ROLE_FFN_DOWN, "ffn_down", "ffn_down"},
    {QF_ROLE_ATTN_OUTPUT, "attn_output.weight", "attn_output"},
    {QF_ROLE_ATTN_QKV, "attn_qkv.weight", "attn_qkv"},
    {QF_ROLE_FFN_GATE, "ffn_gate", "ffn_gate"},
    {QF_ROLE_FFN_UP, "ffn_up", "ffn_up"},
};

qf_tensor_role qf_tensor_role_of(const char *name) {
    if (strcmp(name, "output.weight") == 0) return QF_ROLE_OUTPUT;
    if (strcmp(name, "token_embd.weight") == 0) return QF_ROLE_TOKEN_EMBD;
    for (size_t i = 0; i < sizeof role_names / sizeof *role_names; i++)
        if (strstr(name, role_names[i].substr)) return role_names[i].role;
    return QF_ROLE_OTHER;
}

const char *qf_tensor_role_name(qf_tensor_role r) {
    if (r == QF_ROLE_OUTPUT) return "output";
    if (r == QF_ROLE_TOKEN_EMBD) return "token_embd";
    for (size_t i = 0; i < sizeof role_names / sizeof *role_names; i++)
        if (role_names[i].role == r) return role_names[i].label;
    return "other";
}

/* ---------------- the mix rules ---------------- */

int qf_use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

typedef enum { ARCH_ANY, ARCH_FALCON, ARCH_NOT_FALCON } arch_cond;
typedef enum {
    MODEL_ANY,
    MODEL_GQA4,        /* n_head / n_head_kv >= 4 */
    MODEL_EXPERTS8,    /* n_expert == 8 */
    MODEL_NOT_EXPERTS8,
    MODEL_IMATRIX,     /* an imatrix was given */
    MODEL_NO_IMATRIX,
} model_cond;
typedef enum {
    LAYERS_ALL,
    LAYERS_MORE_BITS,  /* use_more_bits(i, n) */
    LAYERS_FIRST_8TH,  /* i < n/8 */
    LAYERS_FIRST_16TH, /* i < n/16 */
    LAYERS_FIRST_2,    /* i < 2 */
    LAYERS_FIRST_4,    /* i < 4 */
    LAYERS_MIDDLE,     /* n/8 <= i < 7n/8 */
} layer_cond;

#define ANY_PRESET UINT32_MAX /* rule for every quantized preset */
#define KEEP UINT32_MAX       /* stay at the preset's base type (and stop) */

/* For attn_v, i/n = index among the attn_v tensors / n_attn_v; for ffn_down,
 * ffn_gate and ffn_up i/n = layer / n_layer. The first row that matches wins; no row: base type.
 * output.weight (and token_embd when there is no output.weight) is handled
 * in qf_mix_type below; tensors no row matches keep the base type. */
static const struct mix_rule {
    uint32_t ftype;
    qf_tensor_role role;
    arch_cond arch;
    model_cond model;
    layer_cond layers;
    uint32_t type;
} mix_rules[] = {
    /* preset                  tensor                 arch             model                layers             -> type */
    {ANY_PRESET,               QF_ROLE_ATTN_V,      ARCH_ANY,        MODEL_EXPERTS8,      LAYERS_ALL,        GGML_TYPE_Q8_0},
    {QF_FTYPE_MOSTLY_Q2_K,     QF_ROLE_ATTN_V,      ARCH_ANY,        MODEL_GQA4,          LAYERS_ALL,        GGML_TYPE_Q4_K},
    {QF_FTYPE_MOSTLY_Q2_K,     QF_ROLE_ATTN_V,      ARCH_ANY,        MODEL_ANY,           LAYERS_ALL,        GGML_TYPE_Q3_K},
    {QF_FTYPE_MOSTLY_Q2_K_S,   QF_ROLE_ATTN_V,      ARCH_ANY,        MODEL_GQA4,          LAYERS_ALL,        GGML_TYPE_Q4_K},
    {QF_FTYPE_MOSTLY_IQ3_XXS,  QF_ROLE_ATTN_V,      ARCH_ANY,        MODEL_GQA4,          LAYERS_ALL,        GGML_TYPE_Q4_K},
    {QF_FTYPE_MOSTLY_IQ3_XXS,  QF_ROLE_ATTN_V,      ARCH_ANY,        MODEL_NO_IMATRIX,    LAYERS_ALL,        GGML_TYPE_IQ3_S},
    {QF_FTYPE_MOSTLY_Q3_K_M,   QF_ROLE_ATTN_V,      ARCH_ANY,        MODEL_ANY,           LAYERS_FIRST_2,    GGML_TYPE_Q5_K},
    {QF_FTYPE_MOSTLY_Q3_K_M,   QF_ROLE_ATTN_V,      ARCH_ANY,        MODEL_ANY,           LAYERS_ALL,        GGML_TYPE_Q4_K},
    {QF_FTYPE_MOSTLY_Q3_K_L,   QF_ROLE_ATTN_V,      ARCH_ANY,        MODEL_ANY,           LAYERS_ALL,        GGML_TYPE_Q5_K},
    {QF_FTYPE_MOSTLY_Q4_K_M,   QF_ROLE_ATTN_V,      ARCH_ANY,        MODEL_ANY,           LAYERS_MORE_BITS,  GGML_TYPE_Q6_K},
    {QF_FTYPE_MOSTLY_Q5_K_M,   QF_ROLE_ATTN_V,      ARCH_ANY,        MODEL_ANY,           LAYERS_MORE_BITS,  GGML_TYPE_Q6_K},
    {QF_FTYPE_MOSTLY_IQ4_NL,   QF_ROLE_ATTN_V,      ARCH_ANY,        MODEL_GQA4,          LAYERS_ALL,        GGML_TYPE_Q5_K},
    {QF_FTYPE_MOSTLY_IQ3_S,    QF_ROLE_ATTN_V,      ARCH_ANY,        MODEL_GQA4,          LAYERS_ALL,        GGML_TYPE_Q4_K},
    {QF_FTYPE_MOSTLY_IQ3_XS,   QF_ROLE_ATTN_V,      ARCH_ANY,        MODEL_GQA4,          LAYERS_ALL,        GGML_TYPE_Q4_K},
    {QF_FTYPE_MOSTLY_IQ3_M,    QF_ROLE_ATTN_V,      ARCH_ANY,        MODEL_ANY,           LAYERS_ALL,        GGML_TYPE_Q4_K},
    {QF_FTYPE_MOSTLY_IQ4_XS,   QF_ROLE_ATTN_V,      ARCH_ANY,        MODEL_GQA4,          LAYERS_ALL,        GGML_TYPE_Q5_K},
    {QF_FTYPE_MOSTLY_Q4_K_S,   QF_ROLE_ATTN_V,      ARCH_ANY,        MODEL_ANY,           LAYERS_FIRST_4,    GGML_TYPE_Q5_K},

    {ANY_PRESET,               QF_ROLE_ATTN_K,      ARCH_ANY,        MODEL_EXPERTS8,      LAYERS_ALL,        GGML_TYPE_Q8_0},
    {QF_FTYPE_MOSTLY_IQ3_XS,   QF_ROLE_ATTN_K,      ARCH_ANY,        MODEL_ANY,           LAYERS_ALL,        GGML_TYPE_IQ3_XXS},
    {QF_FTYPE_MOSTLY_IQ3_XS,   QF_ROLE_ATTN_Q,      ARCH_ANY,        MODEL_ANY,           LAYERS_ALL,        GGML_TYPE_IQ3_XXS},
    {QF_FTYPE_MOSTLY_IQ3_XXS,  QF_ROLE_ATTN_K,      ARCH_ANY,        MODEL_ANY,           LAYERS_ALL,        GGML_TYPE_IQ2_S},
    {QF_FTYPE_MOSTLY_IQ3_XXS,  QF_ROLE_ATTN_Q,      ARCH_ANY,        MODEL_ANY,           LAYERS_ALL,        GGML_TYPE_IQ2_S},
    {QF_FTYPE_MOSTLY_IQ3_XS,   QF_ROLE_FFN_GATE,    ARCH_ANY,        MODEL_ANY,           LAYERS_MIDDLE,     GGML_TYPE_IQ3_XXS},
    {QF_FTYPE_MOSTLY_IQ3_XS,   QF_ROLE_FFN_UP,      ARCH_ANY,        MODEL_ANY,           LAYERS_MIDDLE,     GGML_TYPE_IQ3_XXS},

    {QF_FTYPE_MOSTLY_Q2_K,     QF_ROLE_FFN_DOWN,    ARCH_ANY,        MODEL_ANY,           LAYERS_ALL,        GGML_TYPE_Q3_K},
    {QF_FTYPE_MOSTLY_Q2_K_S,   QF_ROLE_FFN_DOWN,    ARCH_ANY,        MODEL_ANY,           LAYERS_FIRST_8TH,  GGML_TYPE_Q4_K},
    {QF_FTYPE_MOSTLY_IQ3_XXS,  QF_ROLE_FFN_DOWN,    ARCH_ANY,        MODEL_NO_IMATRIX,    LAYERS_FIRST_8TH,  GGML_TYPE_Q4_K},
    {QF_FTYPE_MOSTLY_IQ3_XXS,  QF_ROLE_FFN_DOWN,    ARCH_ANY,        MODEL_NO_IMATRIX,    LAYERS_ALL,        GGML_TYPE_Q3_K},
    {QF_FTYPE_MOSTLY_Q3_K_M,   QF_ROLE_FFN_DOWN,    ARCH_ANY,        MODEL_ANY,           LAYERS_FIRST_16TH, GGML_TYPE_Q5_K},
    {QF_FTYPE_MOSTLY_Q3_K_M,   QF_ROLE_FFN_DOWN,    ARCH_NOT_FALCON, MODEL_ANY,           LAYERS_ALL,        GGML_TYPE_Q4_K},
    {QF_FTYPE_MOSTLY_Q3_K_M,   QF_ROLE_FFN_DOWN,    ARCH_FALCON,     MODEL_ANY,           LAYERS_MORE_BITS,  GGML_TYPE_Q4_K},
    {QF_FTYPE_MOSTLY_Q3_K_L,   QF_ROLE_FFN_DOWN,    ARCH_FALCON,     MODEL_ANY,           LAYERS_ALL,        GGML_TYPE_Q4_K},
    {QF_FTYPE_MOSTLY_Q3_K_L,   QF_ROLE_FFN_DOWN,    ARCH_ANY,        MODEL_ANY,           LAYERS_ALL,        GGML_TYPE_Q5_K},
    {QF_FTYPE_MOSTLY_Q4_K_M,   QF_ROLE_FFN_DOWN,    ARCH_FALCON,     MODEL_ANY,           LAYERS_FIRST_16TH, GGML_TYPE_Q6_K},
    {QF_FTYPE_MOSTLY_Q4_K_M,   QF_ROLE_FFN_DOWN,    ARCH_FALCON,     MODEL_ANY,           LAYERS_MORE_BITS,  GGML_TYPE_Q5_K},
    {QF_FTYPE_MOSTLY_Q4_K_M,   QF_ROLE_FFN_DOWN,    ARCH_FALCON,     MODEL_ANY,           LAYERS_ALL,        KEEP},
    {QF_FTYPE_MOSTLY_Q4_K_M,   QF_ROLE_FFN_DOWN,    ARCH_ANY,        MODEL_ANY,           LAYERS_MORE_BITS,  GGML_TYPE_Q6_K},
    {QF_FTYPE_MOSTLY_Q5_K_M,   QF_ROLE_FFN_DOWN,    ARCH_ANY,        MODEL_ANY,           LAYERS_MORE_BITS,  GGML_TYPE_Q6_K},
    {QF_FTYPE_MOSTLY_Q4_K_S,   QF_ROLE_FFN_DOWN,    ARCH_NOT_FALCON, MODEL_ANY,           LAYERS_FIRST_8TH,  GGML_TYPE_Q5_K},
    {QF_FTYPE_MOSTLY_IQ4_NL,   QF_ROLE_FFN_DOWN,    ARCH_ANY,        MODEL_NO_IMATRIX,    LAYERS_FIRST_8TH,  GGML_TYPE_Q5_K},
    {QF_FTYPE_MOSTLY_IQ3_M,    QF_ROLE_FFN_DOWN,    ARCH_ANY,        MODEL_ANY,           LAYERS_FIRST_8TH,  GGML_TYPE_Q4_K},
    {QF_FTYPE_MOSTLY_IQ3_M,    QF_ROLE_FFN_DOWN,    ARCH_ANY,        MODEL_EXPERTS8,      LAYERS_MORE_BITS,  GGML_TYPE_Q4_K},
    {QF_FTYPE_MOSTLY_IQ4_XS,   QF_ROLE_FFN_DOWN,    ARCH_ANY,        MODEL_NO_IMATRIX,    LAYERS_FIRST_8TH,  GGML_TYPE_Q5_K},
    /* with an imatrix, Q4_0/Q5_0 guard the first ffn_down layers with the min variant */
    {QF_FTYPE_MOSTLY_Q4_0,     QF_ROLE_FFN_DOWN,    ARCH_ANY,        MODEL_IMATRIX,       LAYERS_FIRST_8TH,  GGML_TYPE_Q4_1},
    {QF_FTYPE_MOSTLY_Q5_0,     QF_ROLE_FFN_DOWN,    ARCH_ANY,        MODEL_IMATRIX,       LAYERS_FIRST_8TH,  GGML_TYPE_Q5_1},

    {QF_FTYPE_MOSTLY_Q2_K,     QF_ROLE_ATTN_OUTPUT, ARCH_NOT_FALCON, MODEL_EXPERTS8,      LAYERS_ALL,        GGML_TYPE_Q5_K},
    {QF_FTYPE_MOSTLY_Q3_K_S,   QF_ROLE_ATTN_OUTPUT, ARCH_NOT_FALCON, MODEL_EXPERTS8,      LAYERS_ALL,        GGML_TYPE_Q5_K},
    {QF_FTYPE_MOSTLY_Q3_K_M,   QF_ROLE_ATTN_OUTPUT, ARCH_NOT_FALCON, MODEL_EXPERTS8,      LAYERS_ALL,        GGML_TYPE_Q5_K},
    {QF_FTYPE_MOSTLY_IQ4_NL,   QF_ROLE_ATTN_OUTPUT, ARCH_NOT_FALCON, MODEL_EXPERTS8,      LAYERS_ALL,        GGML_TYPE_Q5_K},
    {QF_FTYPE_MOSTLY_IQ4_XS,   QF_ROLE_ATTN_OUTPUT, ARCH_NOT_FALCON, MODEL_EXPERTS8,      LAYERS_ALL,        GGML_TYPE_Q5_K},
    {QF_FTYPE_MOSTLY_IQ3_S,    QF_ROLE_ATTN_OUTPUT, ARCH_NOT_FALCON, MODEL_EXPERTS8,      LAYERS_ALL,        GGML_TYPE_Q5_K},
    {QF_FTYPE_MOSTLY_IQ3_M,    QF_ROLE_ATTN_OUTPUT, ARCH_NOT_FALCON, MODEL_EXPERTS8,      LAYERS_ALL,        GGML_TYPE_Q5_K},
    {QF_FTYPE_MOSTLY_IQ3_XXS,  QF_ROLE_ATTN_OUTPUT, ARCH_NOT_FALCON, MODEL_EXPERTS8,      LAYERS_ALL,        GGML_TYPE_Q5_K},
    {QF_FTYPE_MOSTLY_IQ3_XXS,  QF_ROLE_ATTN_OUTPUT, ARCH_NOT_FALCON, MODEL_NOT_EXPERTS8,  LAYERS_ALL,        GGML_TYPE_IQ3_S},
    {QF_FTYPE_MOSTLY_IQ3_M,    QF_ROLE_ATTN_OUTPUT, ARCH_NOT_FALCON, MODEL_NOT_EXPERTS8,  LAYERS_ALL,        GGML_TYPE_Q4_K},
    {QF_FTYPE_MOSTLY_Q4_K_S,   QF_ROLE_ATTN_OUTPUT, ARCH_NOT_FALCON, MODEL_EXPERTS8,      LAYERS_ALL,        GGML_TYPE_Q5_K},
    {QF_FTYPE_MOSTLY_Q4_K_M,   QF_ROLE_ATTN_OUTPUT, ARCH_NOT_FALCON, MODEL_EXPERTS8,      LAYERS_ALL,        GGML_TYPE_Q5_K},
    {QF_FTYPE_MOSTLY_Q2_K,     QF_ROLE_ATTN_OUTPUT, ARCH_NOT_FALCON, MODEL_NOT_EXPERTS8,  LAYERS_ALL,        GGML_TYPE_Q3_K},
    {QF_FTYPE_MOSTLY_Q3_K_M,   QF_ROLE_ATTN_OUTPUT, ARCH_NOT_FALCON, MODEL_NOT_EXPERTS8,  LAYERS_ALL,        GGML_TYPE_Q4_K},
    {QF_FTYPE_MOSTLY_Q3_K_L,   QF_ROLE_ATTN_OUTPUT, ARCH_NOT_FALCON, MODEL_NOT_EXPERTS8,  LAYERS_ALL,        GGML_TYPE_Q5_K},
    {QF_FTYPE_MOSTLY_Q3_K_L,   QF_ROLE_ATTN_OUTPUT, ARCH_FALCON,     MODEL_ANY,           LAYERS_ALL,        GGML_TYPE_Q4_K},

    {QF_FTYPE_MOSTLY_IQ3_XXS,  QF_ROLE_TOKEN_EMBD,  ARCH_ANY,        MODEL_ANY,           LAYERS_ALL,        GGML_TYPE_IQ3_S},

    {QF_FTYPE_MOSTLY_Q3_K_M,   QF_ROLE_ATTN_QKV,    ARCH_ANY,        MODEL_ANY,           LAYERS_ALL,        GGML_TYPE_Q4_K},
    {QF_FTYPE_MOSTLY_Q3_K_L,   QF_ROLE_ATTN_QKV,    ARCH_ANY,        MODEL_ANY,           LAYERS_ALL,        GGML_TYPE_Q4_K},
    {QF_FTYPE_MOSTLY_IQ3_M,    QF_ROLE_ATTN_QKV,    ARCH_ANY,        MODEL_ANY,           LAYERS_ALL,        GGML_TYPE_Q4_K},
    {QF_FTYPE_MOSTLY_Q4_K_M,   QF_ROLE_ATTN_QKV,    ARCH_ANY,        MODEL_ANY,           LAYERS_ALL,        GGML_TYPE_Q5_K},
    {QF_FTYPE_MOSTLY_Q5_K_M,   QF_ROLE_ATTN_QKV,    ARCH_ANY,        MODEL_ANY,           LAYERS_ALL,        GGML_TYPE_Q6_K},
};

static int arch_holds(arch_cond c, const qf_mix_model *m) {
    return c == ARCH_ANY || (c == ARCH_FALCON) == (m->is_falcon != 0);
}

static int model_holds(model_cond c, const qf_mix_model *m) {
    int n_gqa = m->n_head_kv > 0 ? m->n_head / m->n_head_kv : 0;
    switch (c) {
    case MODEL_ANY: return 1;
    case MODEL_GQA4: return n_gqa >= 4;
    case MODEL_EXPERTS8: return m->n_expert == 8;
    case MODEL_NOT_EXPERTS8: return m->n_expert != 8;
    case MODEL_IMATRIX: return m->has_imatrix != 0;
    case MODEL_NO_IMATRIX: return m->has_imatrix == 0;
    }
    return 0;
}

static int layers_hold(layer_cond c, int i, int n) {
    switch (c) {
    case LAYERS_ALL: return 1;
    case LAYERS_MORE_BITS: return qf_use_more_bits(i, n);
    case LAYERS_FIRST_8TH: return i < n / 8;
    case LAYERS_FIRST_16TH: return i < n / 16;
    case LAYERS_FIRST_2: return i < 2;
    case LAYERS_FIRST_4: return i < 4;
    case LAYERS_MIDDLE: return i >= n / 8 && i < 7 * n / 8;
    }
    return 0;
}

/* 1 for the presets of llama.cpp's 2-bit-and-below branch (IQ2_*, IQ1_*),
 * whose tensor rules replace the general ones below. */
static int is_low_bit_preset(uint32_t ftype) {
    return ftype == QF_FTYPE_MOSTLY_IQ2_XXS || ftype == QF_FTYPE_MOSTLY_IQ2_XS || ftype == QF_FTYPE_MOSTLY_IQ2_S ||
           ftype == QF_FTYPE_MOSTLY_IQ2_M || ftype == QF_FTYPE_MOSTLY_IQ1_S || ftype == QF_FTYPE_MOSTLY_IQ1_M;
}

/* IQ2_S and IQ2_M guard their sensitive tensors with IQ3_S where the other
 * low-bit presets use Q2_K. */
static int is_iq2_sm_preset(uint32_t ftype) { return ftype == QF_FTYPE_MOSTLY_IQ2_S || ftype == QF_FTYPE_MOSTLY_IQ2_M; }

/* llama.cpp's rules for the low-bit presets (after output.weight), with
 * G = IQ3_S for IQ2_S/IQ2_M and Q2_K for the others: token_embd G; attn_v
 * Q4_K with GQA >= 4 or >= 4 experts, else G; attn_k Q4_K with 8 experts;
 * ffn_down G in the first n/8 layers; attn_output Q5_K with 8 experts, else
 * IQ3_S for IQ2_S/IQ2_M and IQ2_XXS for IQ1_S/IQ1_M; everything else the
 * base type. */
static uint32_t low_bit_type(const qf_quant_preset *p, const qf_mix_model *m, qf_tensor_role role, int i, int n) {
    const int n_gqa = m->n_head_kv > 0 ? m->n_head / m->n_head_kv : 0;
    const int sm = is_iq2_sm_preset(p->ftype);
    const uint32_t guard = sm ? GGML_TYPE_IQ3_S : GGML_TYPE_Q2_K;
    switch (role) {
    case QF_ROLE_TOKEN_EMBD: return guard;
    case QF_ROLE_ATTN_V: return n_gqa >= 4 || m->n_expert >= 4 ? GGML_TYPE_Q4_K : guard;
    case QF_ROLE_ATTN_K: return m->n_expert == 8 ? GGML_TYPE_Q4_K : p->base_type;
    case QF_ROLE_FFN_DOWN: return i < n / 8 ? guard : p->base_type;
    case QF_ROLE_ATTN_OUTPUT:
        if (m->n_expert == 8) return GGML_TYPE_Q5_K;
        if (p->ftype == QF_FTYPE_MOSTLY_IQ1_S || p->ftype == QF_FTYPE_MOSTLY_IQ1_M) return GGML_TYPE_IQ2_XXS;
        return sm ? GGML_TYPE_IQ3_S : p->base_type;
    default: return p->base_type;
    }
}

uint32_t qf_mix_type(const qf_quant_preset *p, const qf_mix_model *m, qf_tensor_role role, int i, int n,
                     uint64_t ne0, int output_type) {
    const uint32_t base = p->base_type;
    const ggml_type_traits *bt = ggml_get_type_traits(base);
    if (!bt || !bt->is_quantized) return base; /* F16/BF16/F32 presets have no mix */

    /* The output matrix (a tied token_embd is the output matrix too):
     * --output-tensor-type, else Q8_0 for Falcon or rows the base type cannot
     * block, else Q6_K unless the preset is Q8_0 already. */
    if (role == QF_ROLE_OUTPUT || (role == QF_ROLE_TOKEN_EMBD && !m->has_output)) {
        if (output_type >= 0) return (uint32_t)output_type;
        if (m->is_falcon || ne0 % bt->block_size != 0) return GGML_TYPE_Q8_0;
        if (is_low_bit_preset(p->ftype) || p->ftype == QF_FTYPE_MOSTLY_IQ3_XXS) return GGML_TYPE_Q5_K;
        return base == GGML_TYPE_Q8_0 ? GGML_TYPE_Q8_0 : GGML_TYPE_Q6_K;
    }
    if (is_low_bit_preset(p->ftype)) return low_bit_type(p, m, role, i, n);

    uint32_t type = base;
    for (size_t r = 0; r < sizeof mix_rules / sizeof *mix_rules; r++) {
        const struct mix_rule *rule = &mix_rules[r];
        if (rule->role != role || (rule->ftype != ANY_PRESET && rule->ftype != p->ftype)) continue;
        if (!arch_holds(rule->arch, m) || !model_holds(rule->model, m) || !layers_hold(rule->layers, i, n)) continue;
        type = rule->type == KEEP ? base : rule->type;
        break;
    }
    /* A 70B model shares attn_v among 8 query heads, so attn_v is 8x smaller
     * than attn_q: llama.cpp spends more bits on it (the 8-expert Q8_0 rule
     * above still wins). */
    if (role == QF_ROLE_ATTN_V && m->is_70b && m->n_expert != 8 &&
        (type == GGML_TYPE_Q3_K || type == GGML_TYPE_Q4_K))
        type = GGML_TYPE_Q5_K;
    return type;
}

/* ---------------- shape fallbacks ---------------- */

/* When the row length ne0 is not a multiple of a type's block, use the
 * closest type with 32-element blocks; F16 when even that does not fit.
 * This is llama.cpp c392e50's table (llama_tensor_get_type): Q2_K/Q3_K ->
 * IQ4_NL, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_XS, IQ1_S and IQ1_M -> IQ4_NL, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, then F16 if the row
 * still does not divide. For the 32-block types themselves (legacy and
 * IQ4_NL) c392e50 aborts with "Unsupported tensor size"; we write F16
 * there, as the legacy oracle files were made (PROVENANCE.md). */
static const struct {
    uint32_t from, to;
} fallback_table[] = {
    {GGML_TYPE_Q2_K, GGML_TYPE_IQ4_NL},
    {GGML_TYPE_Q3_K, GGML_TYPE_IQ4_NL},
    {GGML_TYPE_IQ4_XS, GGML_TYPE_IQ4_NL},
    {GGML_TYPE_IQ3_S, GGML_TYPE_IQ4_NL},
    {GGML_TYPE_IQ3_XXS, GGML_TYPE_IQ4_NL},
    {GGML_TYPE_IQ2_XXS, GGML_TYPE_IQ4_NL},
    {GGML_TYPE_IQ2_XS, GGML_TYPE_IQ4_NL},
    {GGML_TYPE_IQ2_S, GGML_TYPE_IQ4_NL},
    {GGML_TYPE_IQ1_S, GGML_TYPE_IQ4_NL},
    {GGML_TYPE_IQ1_M, GGML_TYPE_IQ4_NL},
    {GGML_TYPE_Q4_K, GGML_TYPE_Q5_0},
    {GGML_TYPE_Q5_K, GGML_TYPE_Q5_1},
    {GGML_TYPE_Q6_K, GGML_TYPE_Q8_0},
    {GGML_TYPE_Q4_0, GGML_TYPE_F16},
    {GGML_TYPE_Q4_1, GGML_TYPE_F16},
    {GGML_TYPE_Q5_0, GGML_TYPE_F16},
    {GGML_TYPE_Q5_1, GGML_TYPE_F16},
    {GGML_TYPE_Q8_0, GGML_TYPE_F16},
    {GGML_TYPE_IQ4_NL, GGML_TYPE_F16},
};

static int fits(uint32_t type, uint64_t ne0) {
    const ggml_type_traits *tt = ggml_get_type_traits(type);
    return tt && tt->block_size && ne0 % tt->block_size == 0;
}

uint32_t qf_shape_fallback(uint32_t type, uint64_t ne0, uint32_t *table_type) {
    if (table_type) *table_type = type;
    if (fits(type, ne0)) return type;
    uint32_t to = GGML_TYPE_F16;
    for (size_t i = 0; i < sizeof fallback_table / sizeof *fallback_table; i++)
        if (fallback_table[i].from == type) to = fallback_table[i].to;
    if (table_type) *table_type = to;
    return fits(to, ne0) ? to : GGML_TYPE_F16;
}
