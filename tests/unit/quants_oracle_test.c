/* quants_oracle_test.c - our codecs against files written by llama.cpp
 * (shared/oracles/llamacpp, see its PROVENANCE.md):
 *   - every Q8_0/Q4_0/Q4_1/Q5_0 tensor llama-quantize wrote from
 *     stories260K-F32.gguf equals our reference quantizer's bytes (and the
 *     fast Q8_0/Q4_0 quantizers'); the F16 fallback tensors equal our f32->f16;
 *   - the converter's F16/BF16 files equal our f32->f16 / f32->bf16;
 *   - every tensor of every oracle file dequantizes (fast == ref, finite);
 *   - synth-tinyk K-quant tensors dequantize to within a per-type relative
 *     RMS error of their F16 source (a wrong layout gives ~100%).
 */
#include "qf_test.h"
#include "gguf.h"
#include "numfmt.h"
#include "codecs.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define ORACLES "oracles/llamacpp/"

static const char *ggml_type_label(uint32_t type) {
    const ggml_type_traits *tr = ggml_get_type_traits(type);
    return tr && tr->name ? tr->name : "?";
}

static int open_oracle(qf_test *t, const char *name, gguf_file *f) {
    char path[1024];
    char rel[256];
    snprintf(rel, sizeof rel, ORACLES "%s", name);
    if (!qf_test_data(t, rel, path, sizeof path)) return 0;
    qf_err err = {0};
    int rc = gguf_open(f, path, &err);
    CHECK(t, rc == 0, "gguf_open %s: %s", path, err.msg);
    return rc == 0;
}

static int is_legacy_quant(uint32_t type) {
    return type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q5_0 ||
           type == GGML_TYPE_Q5_1 || type == GGML_TYPE_Q8_0;
}

/* Quantize n f32 values with our reference codec of `type` into out. */
static void quantize_ref(uint32_t type, const float *x, void *out, int64_t n) {
    switch (type) {
    case GGML_TYPE_Q4_0: quantize_row_q4_0_ref(x, out, n); break;
    case GGML_TYPE_Q4_1: quantize_row_q4_1_ref(x, out, n); break;
    case GGML_TYPE_Q5_0: quantize_row_q5_0_ref(x, out, n); break;
    case GGML_TYPE_Q5_1: quantize_row_q5_1_ref(x, out, n); break;
    case GGML_TYPE_Q8_0: quantize_row_q8_0_ref(x, out, n); break;
    }
}

typedef struct counts { int quantized, f16, mismatched, fast_mismatched; } counts;

/* Compare every legacy-quantized and F16 tensor of `qfile` against our
 * codecs applied to the same tensor of the F32 source. */
static void compare_with_source(qf_test *t, const gguf_file *src, const gguf_file *q, counts *c) {
    for (uint64_t i = 0; i < q->n_tensors; i++) {
        const gguf_tensor_info *ti = &q->tensors[i];
        if (!is_legacy_quant(ti->type) && ti->type != GGML_TYPE_F16) continue;
        const gguf_tensor_info *s = gguf_find_tensor(src, ti->name);
        REQUIRE(t, s && s->type == GGML_TYPE_F32 && s->n_elements == ti->n_elements, "%s: no f32 source", ti->name);
        const float *x = (const float *)s->data;
        const int64_t n = (int64_t)ti->n_elements;
        uint8_t *ours = malloc(ti->nbytes);
        REQUIRE(t, ours, "oom");
        if (ti->type == GGML_TYPE_F16) {
            for (int64_t j = 0; j < n; j++) ((uint16_t *)ours)[j] = qf_f32_to_f16(x[j]);
            c->f16++;
        } else {
            /* rows are whole blocks (ne[0] % 32 == 0), so the tensor is one long row */
            quantize_ref(ti->type, x, ours, n);
            c->quantized++;
        }
        if (memcmp(ours, ti->data, ti->nbytes) != 0) {
            c->mismatched++;
            CHECK(t, 0, "%s (%s): our bytes differ from llama.cpp's", ti->name, ggml_type_label(ti->type));
        }
        if (ti->type == GGML_TYPE_Q8_0 || ti->type == GGML_TYPE_Q4_0) {
            if (ti->type == GGML_TYPE_Q8_0) quantize_row_q8_0(x, (block_q8_0 *)ours, n);
            else quantize_row_q4_0(x, (block_q4_0 *)ours, n);
            if (memcmp(ours, ti->data, ti->nbytes) != 0) c->fast_mismatched++;
        }
        free(ours);
    }
}

static void test_legacy_quantizers_match_llamacpp(qf_test *t) {
    gguf_file src;
    if (!open_oracle(t, "stories260K-F32.gguf", &src)) return;
    /* file, quantized tensors expected (blocks of the file's type + Q8_0 token_embd), F16 fallbacks */
    static const struct { const char *file; int n_quantized, n_f16; } files[] = {
        {"stories260K-Q8_0.gguf", 31, 5},   /* 5 layers x 6 + token_embd; ffn_down (172 cols) F16 */
        {"stories260K-Q4_0.gguf", 31, 5},
        {"stories260K-Q4_1.gguf", 31, 5},
        {"stories260K-Q5_0.gguf", 31, 5},
        {"stories260K-Q4_K_M.gguf", 31, 5}, /* Q5_0/Q8_0 fallbacks, see PROVENANCE */
    };
    int total = 0;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        gguf_file q;
        if (!open_oracle(t, files[f].file, &q)) break;
        counts c = {0};
        compare_with_source(t, &src, &q, &c);
        CHECK(t, c.quantized == files[f].n_quantized && c.f16 == files[f].n_f16,
              "%s: compared %d quantized + %d f16 tensors, expected %d + %d", files[f].file, c.quantized, c.f16,
              files[f].n_quantized, files[f].n_f16);
        CHECK(t, c.mismatched == 0, "%s: %d tensors differ", files[f].file, c.mismatched);
        CHECK(t, c.fast_mismatched == 0, "%s: fast quantizer differs on %d tensors", files[f].file, c.fast_mismatched);
        total += c.quantized + c.f16;
        if (getenv("QF_TEST_VERBOSE"))
            printf("# %s: %d quantized + %d f16 tensors byte-identical\n", files[f].file, c.quantized, c.f16);
        gguf_close(&q);
    }
    CHECK(t, total > 0, "nothing compared");
    gguf_close(&src);
}

/* stories260K-F16/-BF16 (convert_hf_to_gguf, numpy RNE) vs our conversions
 * of the F32 file, scalar and row versions. Norms stay F32 there. */
static void test_f16_bf16_match_converter(qf_test *t) {
    gguf_file src;
    if (!open_oracle(t, "stories260K-F32.gguf", &src)) return;
    static const struct { const char *file; uint32_t type; } files[] = {
        {"stories260K-F16.gguf", GGML_TYPE_F16},
        {"stories260K-BF16.gguf", GGML_TYPE_BF16},
    };
    for (size_t f = 0; f < 2; f++) {
        gguf_file h;
        if (!open_oracle(t, files[f].file, &h)) break;
        int compared = 0, bad = 0;
        for (uint64_t i = 0; i < h.n_tensors; i++) {
            const gguf_tensor_info *ti = &h.tensors[i];
            if (ti->type != files[f].type) continue;
            const gguf_tensor_info *s = gguf_find_tensor(&src, ti->name);
            REQUIRE(t, s && s->type == GGML_TYPE_F32 && s->n_elements == ti->n_elements, "%s: no source", ti->name);
            const float *x = (const float *)s->data;
            const uint16_t *want = (const uint16_t *)ti->data;
            uint16_t *row = malloc(ti->n_elements * sizeof *row);
            REQUIRE(t, row, "oom");
            if (files[f].type == GGML_TYPE_F16) qf_f32_to_f16_row(x, row, ti->n_elements);
            else qf_f32_to_bf16_row(x, row, ti->n_elements);
            for (uint64_t j = 0; j < ti->n_elements; j++) {
                uint16_t scalar = files[f].type == GGML_TYPE_F16 ? qf_f32_to_f16(x[j]) : qf_f32_to_bf16(x[j]);
                bad += scalar != want[j] || row[j] != want[j];
            }
            free(row);
            compared++;
        }
        CHECK(t, compared == 36, "%s: %d tensors compared, expected 36 (all but the 11 norms)", files[f].file, compared);
        CHECK(t, bad == 0, "%s: %d values differ", files[f].file, bad);
        if (getenv("QF_TEST_VERBOSE")) printf("# %s: %d tensors byte-identical\n", files[f].file, compared);
        gguf_close(&h);
    }
    gguf_close(&src);
}

static const char *const all_oracles[] = {
    "stories260K-F32.gguf", "stories260K-F16.gguf", "stories260K-BF16.gguf", "stories260K-Q8_0.gguf",
    "stories260K-Q5_0.gguf", "stories260K-Q4_1.gguf", "stories260K-Q4_0.gguf", "stories260K-Q4_0-imat.gguf",
    "stories260K-Q4_K_M.gguf", "stories260K-Q4_K_M-imat.gguf", "synth-tinyk-F16.gguf", "synth-tinyk-Q6_K.gguf",
    "synth-tinyk-Q5_K_M.gguf", "synth-tinyk-Q4_K_M.gguf", "synth-tinyk-Q3_K_M.gguf", "synth-tinyk-Q2_K.gguf",
};

/* Every tensor of every oracle: a codec exists, fast == ref bit for bit, and
 * all values are finite. */
static void test_dequantize_every_oracle_tensor(qf_test *t) {
    int files = 0, tensors = 0;
    for (size_t f = 0; f < sizeof all_oracles / sizeof all_oracles[0]; f++) {
        gguf_file g;
        if (!open_oracle(t, all_oracles[f], &g)) return;
        for (uint64_t i = 0; i < g.n_tensors; i++) {
            const gguf_tensor_info *ti = &g.tensors[i];
            const int64_t n = (int64_t)ti->n_elements;
            float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
            REQUIRE(t, a && b, "oom");
            CHECK(t, qf_dequantize_row(ti->type, ti->data, a, n) == 0, "%s: %s fast", all_oracles[f], ti->name);
            CHECK(t, qf_dequantize_row_ref(ti->type, ti->data, b, n) == 0, "%s: %s ref", all_oracles[f], ti->name);
            int nonfinite = 0;
            for (int64_t j = 0; j < n; j++) nonfinite += !isfinite(a[j]);
            CHECK(t, nonfinite == 0, "%s: %s has %d non-finite values", all_oracles[f], ti->name, nonfinite);
            CHECK(t, memcmp(a, b, n * sizeof *a) == 0, "%s: %s fast != ref", all_oracles[f], ti->name);
            free(a);
            free(b);
            tensors++;
        }
        gguf_close(&g);
        files++;
    }
    /* 10 stories260K files x 47 tensors + 6 synth-tinyk files x 11 */
    CHECK(t, files == 16 && tensors == 536, "%d files, %d tensors (expected 16, 536)", files, tensors);
    if (getenv("QF_TEST_VERBOSE")) printf("# dequantized %d tensors of %d files\n", tensors, files);
}

/* Relative RMS error sqrt(sum (q-x)^2 / sum x^2) of each K-quant tensor
 * against the F16 tensor it was quantized from, worst per type. */
static void test_kquant_error_vs_f16_source(qf_test *t) {
    gguf_file src;
    if (!open_oracle(t, "synth-tinyk-F16.gguf", &src)) return;
    /* worst measured: 0.2979, 0.1514, 0.0716, 0.0363, 0.0179 (gaussian
     * weights); bounds ~15% above. A wrong bit layout gives ~1.0 or more. */
    static const struct { uint32_t type; double bound; } bounds[] = {
        {GGML_TYPE_Q2_K, 0.34}, {GGML_TYPE_Q3_K, 0.175}, {GGML_TYPE_Q4_K, 0.082},
        {GGML_TYPE_Q5_K, 0.042}, {GGML_TYPE_Q6_K, 0.0205},
    };
    double worst[5] = {0};
    int seen[5] = {0};
    static const char *const kfiles[] = {"synth-tinyk-Q6_K.gguf", "synth-tinyk-Q5_K_M.gguf", "synth-tinyk-Q4_K_M.gguf",
                                         "synth-tinyk-Q3_K_M.gguf", "synth-tinyk-Q2_K.gguf"};
    for (size_t f = 0; f < 5; f++) {
        gguf_file q;
        if (!open_oracle(t, kfiles[f], &q)) break;
        for (uint64_t i = 0; i < q.n_tensors; i++) {
            const gguf_tensor_info *ti = &q.tensors[i];
            if (ti->type < GGML_TYPE_Q2_K || ti->type > GGML_TYPE_Q6_K) continue;
            const gguf_tensor_info *s = gguf_find_tensor(&src, ti->name);
            REQUIRE(t, s && s->type == GGML_TYPE_F16 && s->n_elements == ti->n_elements, "%s: no f16 source", ti->name);
            const int64_t n = (int64_t)ti->n_elements;
            float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
            REQUIRE(t, a && b, "oom");
            REQUIRE(t, qf_dequantize_row(ti->type, ti->data, a, n) == 0, "%s", ti->name);
            REQUIRE(t, qf_dequantize_row(GGML_TYPE_F16, s->data, b, n) == 0, "%s", ti->name);
            double se = 0, ss = 0;
            for (int64_t j = 0; j < n; j++) {
                se += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
                ss += (double)b[j] * b[j];
            }
            const double rel = sqrt(se / ss);
            const int k = (int)(ti->type - GGML_TYPE_Q2_K);
            if (rel > worst[k]) worst[k] = rel;
            seen[k]++;
            free(a);
            free(b);
        }
        gguf_close(&q);
    }
    for (int k = 0; k < 5; k++) {
        if (getenv("QF_TEST_VERBOSE"))
            printf("# %s: %d tensors, worst relative rms %.5f\n", ggml_type_label(bounds[k].type), seen[k], worst[k]);
        CHECK(t, seen[k] > 0, "no %s tensors found", ggml_type_label(bounds[k].type));
        CHECK(t, worst[k] < bounds[k].bound, "%s: relative rms %.4f >= %.4f", ggml_type_label(bounds[k].type),
              worst[k], bounds[k].bound);
    }
    gguf_close(&src);
}

QF_TEST_MAIN(test_legacy_quantizers_match_llamacpp, test_f16_bf16_match_converter,
             test_dequantize_every_oracle_tensor, test_kquant_error_vs_f16_source)
