/* engine_test.c - the reference engine (verify/model, matmul, forward,
 * perplexity) against oracles:
 *   - shared/models/stories260K/PROVENANCE.md: ids, mean NLL and top-5 logits of
 *     "Once upon a time, there was a little girl named Lily.", WikiText-2 chunk
 *     NLLs (numpy float64 forward pass);
 *   - shared/oracles/llamacpp/PROVENANCE.md + greedy-from-bos-60.txt: greedy ids
 *     of llama.cpp on every stories260K GGUF;
 *   - llama-perplexity -c 128 --chunks 4 -ctk f32 -ctv f32 -t 1 -b 128 on
 *     stories260K-F32.gguf + wiki.test.raw printed
 *     [1]71.2797,[2]66.4551,[3]72.8189,[4]79.0980 and PPL = 79.0980 +/- 16.72430;
 *   - the scalar reference matmul, and invariants (thread count, qwen2 layout).
 */
#include "qf_test.h"
#include "qf_test_blocks.h"

#include <math.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "forward.h"
#include "ggml_types.h"
#include "gguf.h"
#include "matmul.h"
#include "model.h"
#include "numfmt.h"
#include "perplexity.h"
#include "codecs.h"
#include "text.h"

#define ORACLES "oracles/llamacpp"

static const int32_t lily_ids[16] = {1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426};

static int load(qf_test *t, const char *rel, qf_model *m) {
    char path[1024];
    if (!qf_test_data(t, rel, path, sizeof path)) return 0;
    qf_err err = {0};
    int rc = qf_model_load(m, path, &err);
    CHECK(t, rc == 0, "load %s: %s", rel, err.msg);
    return rc == 0;
}

/* ------------------------------------------------------------------ */

static void test_sentence_nll_and_top5(qf_test *t) {
    qf_model m;
    if (!load(t, ORACLES "/stories260K-F32.gguf", &m)) return;
    qf_err err = {0};
    CHECK(t, m.hp.n_vocab == 512 && m.hp.n_embd == 64 && m.hp.n_layer == 5 && m.hp.n_ff == 172 &&
                 m.hp.n_head == 8 && m.hp.n_head_kv == 4 && m.tied_output,
          "hparams %lld %lld %lld", (long long)m.hp.n_vocab, (long long)m.hp.n_embd, (long long)m.hp.n_layer);

    /* tokenizer: the PROVENANCE ids */
    qf_text tx;
    REQUIRE(t, qf_text_init(&tx, &m.file, &err) == 0, "%s", err.msg);
    int32_t *ids = NULL;
    int64_t n = 0;
    int rc = qf_text_encode(&tx, "Once upon a time, there was a little girl named Lily.", 1, &ids, &n, &err);
    CHECK(t, rc == 0 && n == 16 && memcmp(ids, lily_ids, sizeof lily_ids) == 0, "ids differ (n=%lld) %s",
          (long long)n, err.msg);
    free(ids);
    qf_text_free(&tx);

    qf_ctx c;
    REQUIRE(t, qf_ctx_init(&c, &m, 64, 64, &err) == 0, "%s", err.msg);
    float *logits = malloc(16 * 512 * sizeof(float));
    REQUIRE(t, qf_forward(&c, lily_ids, 16, 0, logits, &err) == 0, "%s", err.msg);
    double nll = 0;
    for (int i = 0; i < 15; i++) nll += qf_nll(logits + i * 512, 512, lily_ids[i + 1]);
    nll /= 15;
    CHECK(t, fabs(nll - 0.10014) < 1e-4, "mean nll %.6f, oracle 0.10014", nll);

    static const int top_id[5] = {338, 385, 317, 342, 405};
    static const float top_logit[5] = {17.4565f, 14.7381f, 13.8856f, 11.7850f, 11.2950f};
    float *l = logits + 15 * 512;
    for (int k = 0; k < 5; k++) {
        int best = 0;
        for (int i = 1; i < 512; i++)
            if (l[i] > l[best]) best = i;
        CHECK(t, best == top_id[k] && fabsf(l[best] - top_logit[k]) < 2e-3f, "top-%d: id %d logit %.4f, oracle %d %.4f",
              k + 1, best, l[best], top_id[k], top_logit[k]);
        l[best] = -INFINITY;
    }

    /* batching does not matter: the same sentence one token at a time */
    qf_ctx_reset(&c);
    float *step = malloc(512 * sizeof(float));
    double nll1 = 0;
    for (int i = 0; i < 16 && step; i++) {
        REQUIRE(t, qf_forward(&c, &lily_ids[i], 1, 0, step, &err) == 0, "%s", err.msg);
        if (i < 15) nll1 += qf_nll(step, 512, lily_ids[i + 1]);
    }
    CHECK(t, fabs(nll1 / 15 - nll) < 1e-5, "token-by-token nll %.7f vs batched %.7f", nll1 / 15, nll);
    free(step);
    free(logits);
    qf_ctx_free(&c);
    qf_model_free(&m);
}

/* ------------------------------------------------------------------ */

/* ids for `name` from greedy-from-bos-60.txt */
static int greedy_oracle(qf_test *t, const char *name, int32_t *ids, int max) {
    char path[1024];
    if (!qf_test_data(t, ORACLES "/greedy-from-bos-60.txt", path, sizeof path)) return -1;
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[8192], want[256];
    snprintf(want, sizeof want, "== %s", name);
    int n = -1, found = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!found) {
            found = strcmp(line, want) == 0;
            continue;
        }
        if (strncmp(line, "ids: ", 5) == 0) {
            n = 0;
            for (char *p = line + 5, *end; n < max; p = end) {
                long v = strtol(p, &end, 10);
                if (end == p) break;
                ids[n++] = (int32_t)v;
            }
            break;
        }
    }
    fclose(f);
    return n;
}

static void test_greedy_matches_llamacpp(qf_test *t) {
    static const char *files[] = {"stories260K-F32.gguf",  "stories260K-F16.gguf",        "stories260K-BF16.gguf",
                                  "stories260K-Q8_0.gguf", "stories260K-Q5_0.gguf",       "stories260K-Q4_1.gguf",
                                  "stories260K-Q4_0.gguf", "stories260K-Q4_0-imat.gguf",  "stories260K-Q4_K_M.gguf",
                                  "stories260K-Q4_K_M-imat.gguf"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        int32_t want[128], got[128];
        int n_want = greedy_oracle(t, files[i], want, 128);
        if (t->skipped) return;
        CHECK(t, n_want == 61, "%s: oracle has %d ids", files[i], n_want);
        if (n_want != 61) continue;
        char rel[256];
        snprintf(rel, sizeof rel, ORACLES "/%s", files[i]);
        qf_model m;
        if (!load(t, rel, &m)) return;
        qf_err err = {0};
        int64_t n = 0;
        int32_t bos = 1;
        /* the oracle ran with llama.cpp's default F16 KV cache */
        int rc = qf_generate_greedy(&m, &bos, 1, 60, 1, 1, NULL, NULL, got, &n, &err);
        CHECK(t, rc == 0 && n == 61, "%s: %s", files[i], err.msg);
        int first_diff = -1;
        for (int k = 0; k < 61 && first_diff < 0; k++)
            if (got[k] != want[k]) first_diff = k;
        CHECK(t, first_diff < 0, "%s: greedy id %d is %d, llama.cpp %d", files[i], first_diff,
              first_diff >= 0 ? got[first_diff] : 0, first_diff >= 0 ? want[first_diff] : 0);
        qf_model_free(&m);
    }
}

/* ------------------------------------------------------------------ */

static int wiki_tokens(qf_test *t, qf_model *m, int add_bos, int32_t **ids, int64_t *n) {
    char path[1024];
    if (!qf_test_data(t, "corpus/wikitext-2-raw/wiki.test.raw", path, sizeof path)) return 0;
    qf_err err = {0};
    char *text = NULL;
    size_t len;
    qf_text tx;
    int ok = qf_read_text_file(path, &text, &len, &err) == 0 && qf_text_init(&tx, &m->file, &err) == 0;
    CHECK(t, ok, "%s", err.msg);
    if (!ok) {
        free(text);
        return 0;
    }
    ok = qf_text_encode(&tx, text, add_bos, ids, n, &err) == 0;
    CHECK(t, ok, "%s", err.msg);
    qf_text_free(&tx);
    free(text);
    return ok;
}

static void test_wikitext_chunk_nll(qf_test *t) {
    qf_model m;
    if (!load(t, ORACLES "/stories260K-F32.gguf", &m)) return;
    int32_t *ids = NULL;
    int64_t n = 0;
    if (!wiki_tokens(t, &m, 0, &ids, &n)) {
        qf_model_free(&m);
        return;
    }
    CHECK(t, n == 806355, "wiki.test.raw has %lld tokens without BOS, oracle 806355", (long long)n);
    /* PROVENANCE protocol: chunk c = [BOS] + tokens[511c : 511c+511], mean NLL of its 511 predictions */
    static const double oracle[4] = {4.72307, 4.52078, 5.21426, 4.68623};
    qf_err err = {0};
    qf_ctx c;
    float *logits = malloc((size_t)512 * 512 * sizeof(float));
    REQUIRE(t, logits && qf_ctx_init(&c, &m, 512, 512, &err) == 0, "%s", err.msg);
    int32_t chunk[512];
    for (int k = 0; k < 4 && n >= 2048; k++) {
        chunk[0] = 1;
        memcpy(chunk + 1, ids + 511 * k, 511 * sizeof(int32_t));
        qf_ctx_reset(&c);
        REQUIRE(t, qf_forward(&c, chunk, 512, 0, logits, &err) == 0, "%s", err.msg);
        double nll = 0;
        for (int i = 0; i < 511; i++) nll += qf_nll(logits + (size_t)i * 512, 512, chunk[i + 1]);
        nll /= 511;
        CHECK(t, fabs(nll - oracle[k]) < 1e-4, "chunk %d: mean nll %.6f, oracle %.5f", k, nll, oracle[k]);
    }
    qf_ctx_free(&c);
    free(logits);
    free(ids);
    qf_model_free(&m);
}

static void test_perplexity_matches_llama_perplexity(qf_test *t) {
    qf_model m;
    if (!load(t, ORACLES "/stories260K-F32.gguf", &m)) return;
    int32_t *ids = NULL;
    int64_t n = 0;
    if (!wiki_tokens(t, &m, 1, &ids, &n)) {
        qf_model_free(&m);
        return;
    }
    CHECK(t, n == 806356 && ids[0] == 1, "with BOS: %lld tokens, first %d", (long long)n, ids[0]);
    qf_err err = {0};
    qf_model_source ms;
    REQUIRE(t, qf_model_source_init(&ms, &m, 128, 0, &err) == 0, "%s", err.msg);
    qf_ppl_params p = {.n_ctx = 128, .max_chunks = 4, .add_bos = 1, .bos_id = 1};
    qf_ppl_result r;
    REQUIRE(t, qf_perplexity(&ms.src, ids, n, &p, &r, &err) == 0, "%s", err.msg);
    static const double running[4] = {71.2797, 66.4551, 72.8189, 79.0980};
    CHECK(t, r.n_chunks == 4 && r.n_scored == 63 && r.count == 252, "chunks %lld scored %lld",
          (long long)r.n_chunks, (long long)r.n_scored);
    for (int c = 0; c < 4 && c < r.n_chunks; c++)
        CHECK(t, fabs(r.running_ppl[c] - running[c]) < 1e-4 * running[c], "[%d] %.4f, llama-perplexity %.4f", c + 1,
              r.running_ppl[c], running[c]);
    CHECK(t, fabs(r.ppl - 79.0980) < 1e-3 && fabs(r.ppl_err - 16.72430) < 1e-3, "ppl %.4f +/- %.5f", r.ppl, r.ppl_err);
    qf_ppl_result_free(&r);

    /* the batch size does not change the numbers (chunks run in 3 forward calls) */
    qf_model_source ms2;
    REQUIRE(t, qf_model_source_init(&ms2, &m, 128, 50, &err) == 0, "%s", err.msg);
    qf_ppl_result r2;
    REQUIRE(t, qf_perplexity(&ms2.src, ids, n, &p, &r2, &err) == 0, "%s", err.msg);
    CHECK(t, fabs(r2.ppl - 79.0980) < 1e-3, "batch 50: ppl %.4f", r2.ppl);
    qf_ppl_result_free(&r2);
    qf_model_source_free(&ms2);

    /* too little text: llama-perplexity's rule (at least 2 * n_ctx tokens) */
    CHECK(t, qf_perplexity(&ms.src, ids, 255, &p, &r, &err) == QF_EINVAL && strstr(err.msg, "at least 256"),
          "short text: %s", err.msg);
    qf_model_source_free(&ms);
    free(ids);
    qf_model_free(&m);
}

static void test_kld(qf_test *t) {
    qf_model base, q;
    if (!load(t, ORACLES "/stories260K-F32.gguf", &base)) return;
    if (!load(t, ORACLES "/stories260K-Q4_0.gguf", &q)) {
        qf_model_free(&base);
        return;
    }
    int32_t *ids = NULL;
    int64_t n = 0;
    if (!wiki_tokens(t, &base, 1, &ids, &n)) {
        qf_model_free(&q);
        qf_model_free(&base);
        return;
    }
    qf_err err = {0};
    qf_model_source bs, qs, bs2;
    REQUIRE(t, qf_model_source_init(&bs, &base, 128, 0, &err) == 0 && qf_model_source_init(&bs2, &base, 128, 0, &err) == 0 &&
                   qf_model_source_init(&qs, &q, 128, 0, &err) == 0, "%s", err.msg);
    qf_ppl_params p = {.n_ctx = 128, .max_chunks = 3, .add_bos = 1, .bos_id = 1};
    qf_kld_result self, r;
    /* a model against itself: KLD 0, same top everywhere, ratio 1 */
    REQUIRE(t, qf_kl_divergence(&bs.src, &bs2.src, ids, n, &p, &self, &err) == 0, "%s", err.msg);
    CHECK(t, self.kld_mean == 0.0 && self.kld_pct[0] == 0.0 && self.same_top == 1.0 && self.ppl_ratio == 1.0,
          "self: kld %g max %g same %g ratio %g", self.kld_mean, self.kld_pct[0], self.same_top, self.ppl_ratio);
    /* Q4_0 against F32: small positive KLD, and its PPLs equal plain perplexity runs */
    REQUIRE(t, qf_kl_divergence(&bs.src, &qs.src, ids, n, &p, &r, &err) == 0, "%s", err.msg);
    qf_ppl_result pq, pb;
    REQUIRE(t, qf_perplexity(&qs.src, ids, n, &p, &pq, &err) == 0 && qf_perplexity(&bs.src, ids, n, &p, &pb, &err) == 0,
            "%s", err.msg);
    CHECK(t, r.kld_mean > 1e-4 && r.kld_mean < 0.2, "kld %g", r.kld_mean);
    CHECK(t, r.kld_pct[0] >= r.kld_pct[5] && r.kld_pct[5] >= r.kld_pct[10] && r.kld_pct[10] >= 0, "percentiles");
    CHECK(t, r.same_top > 0.5 && r.same_top < 1.0, "same top %g", r.same_top);
    CHECK(t, fabs(r.ppl - pq.ppl) < 1e-9 * pq.ppl && fabs(r.ppl_base - pb.ppl) < 1e-9 * pb.ppl,
          "kld ppl %.6f/%.6f vs perplexity %.6f/%.6f", r.ppl, r.ppl_base, pq.ppl, pb.ppl);
    CHECK(t, fabs(r.ppl_ratio - pq.ppl / pb.ppl) < 1e-9, "ratio");
    qf_ppl_result_free(&pq);
    qf_ppl_result_free(&pb);
    qf_kld_result_free(&self);
    qf_kld_result_free(&r);
    qf_model_source_free(&bs);
    qf_model_source_free(&bs2);
    qf_model_source_free(&qs);
    free(ids);
    qf_model_free(&q);
    qf_model_free(&base);
}

/* ------------------------------------------------------------------ */
/* matmul: fast vs scalar reference for every weight type */

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (uint32_t)((rng * 2685821657736338717ull) >> 32);
}
static float frand(void) { return (float)rnd() / 4294967296.0f * 2.0f - 1.0f; }

/* Random but valid weight rows of `type` (qf_test_blocks.h) from this file's generator. */
static void *random_weights(uint32_t type, int64_t n_in, int64_t n_out, size_t *row_bytes) {
    return qf_test_random_weights(rnd, frand, type, n_in, n_out, row_bytes);
}

static void test_matmul_matches_reference(qf_test *t) {
    static const uint32_t types[] = {GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1,
                                     GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K,
                                     GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
    static const int64_t Ts[] = {1, 3, 6, 9};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const uint32_t type = types[ti];
        const ggml_type_traits *tr = ggml_get_type_traits(type);
        /* row lengths with a partial 8-lane tail for the plain types */
        const int64_t n_in = tr->block_size == 1 ? 172 : tr->block_size == QK_K ? 2 * QK_K : 3 * 32;
        const int64_t n_out = 7;
        qf_weight w = {.name = "w", .type = type, .n_in = n_in, .n_out = n_out};
        void *data = random_weights(type, n_in, n_out, &w.row_bytes);
        REQUIRE(t, data, "weights of %s", tr->name);
        w.data = data;
        float *x = malloc(9 * n_in * sizeof(float)), *y = malloc(9 * n_out * sizeof(float));
        float *yr = malloc(9 * n_out * sizeof(float)), *row = malloc(n_in * sizeof(float));
        REQUIRE(t, x && y && yr && row, "alloc");
        for (int64_t i = 0; i < 9 * n_in; i++) x[i] = frand();
        for (size_t k = 0; k < sizeof Ts / sizeof Ts[0]; k++) {
            const int64_t T = Ts[k];
            CHECK(t, qf_matmul(&w, x, T, y, 1) == 0 && qf_matmul_ref(&w, x, T, yr) == 0, "%s: matmul failed", tr->name);
            double worst = 0;
            for (int64_t o = 0; o < n_out; o++) {
                qf_dequantize_row_ref(type, (const uint8_t *)data + o * w.row_bytes, row, n_in);
                for (int64_t tt = 0; tt < T; tt++) {
                    double mag = 0; /* sum |x||w|: the scale of the rounding error */
                    for (int64_t i = 0; i < n_in; i++) mag += fabs((double)x[tt * n_in + i] * row[i]);
                    double e = fabs((double)y[tt * n_out + o] - yr[tt * n_out + o]) / (mag + 1e-30);
                    if (e > worst) worst = e;
                }
            }
            CHECK(t, worst < 1e-5, "%s T=%lld: relative error %.3g", tr->name, (long long)T, worst);
        }
        free(x); free(y); free(yr); free(row); free(data);
    }
}

/* The F32/F16/BF16 fast path's summation order, spelled out: lane j of 8
 * sums x[i]*w[i] for i = j, j+8, ... with fused multiply-adds (the last
 * group zero-padded), then ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)), as
 * llama.cpp's tinyBLAS adds them. */
static float dot_tinyblas_order(const float *x, const float *w, int64_t n) {
    float l[8] = {0};
    int64_t i = 0;
    for (; i < n; i++) l[i & 7] = fmaf(x[i], w[i], l[i & 7]);
    for (; i & 7; i++) l[i & 7] = fmaf(0.0f, 0.0f, l[i & 7]);
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

/* qf_matmul on F32/F16/BF16 weights equals that order bit for bit, for every
 * kernel shape (token and row remainders), k blocking (rows longer than one
 * block, with a partial last group of 8) and thread count. */
static void test_matmul_summation_order(qf_test *t) {
    static const uint32_t types[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16};
    /* 1100 = 2 blocks of 512 + 76 (9 groups of 8 + 4); 1024: whole groups (the four-row F16 batch-1 path) */
    static const int64_t n_ins[] = {172, 1100, 1024};
    static const int64_t Ts[] = {1, 5, 9, 13};
    const int64_t n_out = 301;
    for (size_t ti = 0; ti < 3; ti++) {
        for (size_t ni = 0; ni < sizeof n_ins / sizeof n_ins[0]; ni++) {
            const int64_t n_in = n_ins[ni];
            qf_weight w = {.name = "w", .type = types[ti], .n_in = n_in, .n_out = n_out};
            void *data = random_weights(w.type, n_in, n_out, &w.row_bytes);
            float *x = malloc(13 * n_in * sizeof(float)), *y = malloc(13 * n_out * sizeof(float));
            float *wf = malloc(n_out * n_in * sizeof(float));
            REQUIRE(t, data && x && y && wf, "alloc");
            w.data = data;
            for (int64_t o = 0; o < n_out; o++)
                qf_dequantize_row_ref(w.type, (const uint8_t *)data + o * w.row_bytes, wf + o * n_in, n_in);
            for (int64_t i = 0; i < 13 * n_in; i++) x[i] = frand();
            for (int threads = 1; threads <= 2; threads++) {
                for (size_t k = 0; k < sizeof Ts / sizeof Ts[0]; k++) {
                    const int64_t T = Ts[k];
                    CHECK(t, qf_matmul(&w, x, T, y, threads) == 0, "matmul failed");
                    int64_t bad = 0;
                    for (int64_t tt = 0; tt < T; tt++)
                        for (int64_t o = 0; o < n_out; o++) {
                            const float want = dot_tinyblas_order(x + tt * n_in, wf + o * n_in, n_in);
                            if (memcmp(&want, &y[tt * n_out + o], sizeof want) != 0) bad++;
                        }
                    CHECK(t, bad == 0, "type %u n_in %lld T %lld threads %d: %lld of %lld outputs differ from the lane order",
                          w.type, (long long)n_in, (long long)T, threads, (long long)bad, (long long)(T * n_out));
                }
            }
            free(data); free(x); free(y); free(wf);
        }
    }
    float a[13], b[13];
    for (int i = 0; i < 13; i++) a[i] = frand(), b[i] = frand();
    const float d = qf_dot_f32(a, b, 13), want = dot_tinyblas_order(a, b, 13);
    CHECK(t, memcmp(&d, &want, sizeof d) == 0, "qf_dot_f32 %.9g, lane order %.9g", d, want);
}

/* llama.cpp activation rounding: the formats' own definitions */
static void test_activation_rounding(qf_test *t) {
    float x[QK_K], r[QK_K];
    for (int i = 0; i < QK_K; i++) x[i] = frand() * 3.0f;
    x[5] = 4.0f; /* the block-0 max of |x| */
    qf_round_activations(GGML_TYPE_Q8_0, x, r, QK_K);
    const float d = qf_f16_to_f32(qf_f32_to_f16(4.0f / 127.0f));
    CHECK(t, r[5] == 127.0f * d, "q8_0 max element %g, want %g", r[5], 127.0f * d);
    int bad = 0;
    for (int i = 0; i < 32; i++) {
        float q = r[i] / d;
        if (q != nearbyintf(q) || fabsf(q) > 127.0f || fabsf(r[i] - x[i]) > 0.5f * d * 1.001f) bad++;
    }
    CHECK(t, bad == 0, "%d q8_0 elements are not round(x/d)*d", bad);
    qf_round_activations(GGML_TYPE_Q8_K, x, r, QK_K);
    CHECK(t, fabsf(r[5] - 4.0f) < 1e-6f, "q8_K: the max element is exact (%g)", r[5]);
    qf_round_activations(GGML_TYPE_F16, x, r, 4);
    CHECK(t, r[0] == qf_f16_to_f32(qf_f32_to_f16(x[0])), "f16");
    CHECK(t, qf_act_type_llamacpp(GGML_TYPE_Q4_K) == GGML_TYPE_Q8_K && qf_act_type_llamacpp(GGML_TYPE_Q4_0) == GGML_TYPE_Q8_0 &&
                 qf_act_type_llamacpp(GGML_TYPE_Q4_1) == GGML_TYPE_Q8_1 && qf_act_type_llamacpp(GGML_TYPE_F32) == GGML_TYPE_F32,
          "vec_dot types");
}

/* ------------------------------------------------------------------ */

static void logits_with_threads(qf_test *t, const qf_model *m, int n_threads, float *out) {
    int32_t toks[64];
    for (int i = 0; i < 64; i++) toks[i] = i < 16 ? lily_ids[i] : (int32_t)(3 + (i * 37) % 500);
    qf_err err = {0};
    qf_ctx c;
    REQUIRE(t, qf_ctx_init(&c, m, 64, 64, &err) == 0, "%s", err.msg);
    c.n_threads = n_threads;
    CHECK(t, qf_forward(&c, toks, 64, 0, out, &err) == 0, "%s", err.msg);
    qf_ctx_free(&c);
}

static void test_threads_bit_identical(qf_test *t) {
    static const char *files[] = {ORACLES "/stories260K-F32.gguf", ORACLES "/stories260K-Q4_K_M.gguf",
                                  ORACLES "/synth-tinyk-Q4_K_M.gguf"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        qf_model m;
        if (!load(t, files[i], &m)) return;
        size_t n = (size_t)64 * m.hp.n_vocab;
        float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
        REQUIRE(t, a && b, "alloc");
        logits_with_threads(t, &m, 1, a);
        logits_with_threads(t, &m, 2, b);
        CHECK(t, memcmp(a, b, n * sizeof(float)) == 0, "%s: logits differ between 1 and 2 threads", files[i]);
        free(a);
        free(b);
        qf_model_free(&m);
    }
    /* a matmul big enough to be split in several tiles per thread */
    qf_weight w = {.name = "w", .type = GGML_TYPE_Q4_K, .n_in = 512, .n_out = 301};
    void *data = random_weights(w.type, w.n_in, w.n_out, &w.row_bytes);
    float *x = malloc(13 * 512 * sizeof(float)), *y1 = malloc(13 * 301 * sizeof(float)), *y2 = malloc(13 * 301 * sizeof(float));
    REQUIRE(t, data && x && y1 && y2, "alloc");
    w.data = data;
    for (int i = 0; i < 13 * 512; i++) x[i] = frand();
    qf_matmul(&w, x, 13, y1, 1);
    qf_matmul(&w, x, 13, y2, 2);
    CHECK(t, memcmp(y1, y2, 13 * 301 * sizeof(float)) == 0, "matmul differs between 1 and 2 threads");
    free(data); free(x); free(y1); free(y2);
}

/* ------------------------------------------------------------------ */
/* GGUF variants of stories260K written with the gguf writer */

typedef void (*tensor_edit)(const gguf_tensor_info *ti, uint32_t *n_dims, uint64_t *ne, const void **data,
                            void **owned);

/* Copy src to dst: KVs (keys starting with "llama." renamed to "<arch>.") and
 * tensors (edit may change shape/data), plus extra zero tensors. */
static int write_variant(const char *src, const char *dst, const char *arch, tensor_edit edit, const char **extra,
                         const uint64_t *extra_len, int n_extra, float extra_value, qf_err *err) {
    gguf_file f;
    int rc = gguf_open(&f, src, err);
    if (rc < 0) return rc;
    gguf_writer *w = gguf_writer_create(dst, err);
    if (!w) {
        gguf_close(&f);
        return QF_EIO;
    }
    for (uint64_t i = 0; i < f.n_kv; i++) {
        char key[256];
        if (strncmp(f.kv[i].key, "llama.", 6) == 0)
            snprintf(key, sizeof key, "%s.%s", arch, f.kv[i].key + 6);
        else
            snprintf(key, sizeof key, "%s", f.kv[i].key);
        gguf_writer_set_value(w, key, &f.kv[i].value);
    }
    gguf_writer_set_str(w, "general.architecture", arch);
    const void **datas = calloc(f.n_tensors, sizeof *datas);
    void **owned = calloc(f.n_tensors, sizeof *owned);
    uint64_t *sizes = calloc(f.n_tensors, sizeof *sizes);
    for (uint64_t i = 0; i < f.n_tensors; i++) {
        uint32_t nd = f.tensors[i].n_dims;
        uint64_t ne[GGUF_MAX_DIMS];
        memcpy(ne, f.tensors[i].ne, sizeof ne);
        datas[i] = f.tensors[i].data;
        if (edit) edit(&f.tensors[i], &nd, ne, &datas[i], &owned[i]);
        gguf_writer_add_tensor(w, f.tensors[i].name, f.tensors[i].type, nd, ne);
        sizes[i] = 4;
        for (uint32_t d = 0; d < nd; d++) sizes[i] *= ne[d];
    }
    for (int e = 0; e < n_extra; e++) gguf_writer_add_tensor(w, extra[e], GGML_TYPE_F32, 1, &extra_len[e]);
    gguf_writer_begin_data(w);
    for (uint64_t i = 0; i < f.n_tensors; i++) gguf_writer_write_tensor_data(w, datas[i], sizes[i]);
    for (int e = 0; e < n_extra; e++) {
        float *z = malloc(extra_len[e] * sizeof(float));
        for (uint64_t i = 0; i < extra_len[e]; i++) z[i] = extra_value;
        gguf_writer_write_tensor_data(w, z, extra_len[e] * sizeof(float));
        free(z);
    }
    rc = gguf_writer_finish(w);
    for (uint64_t i = 0; i < f.n_tensors; i++) free(owned[i]);
    free(owned);
    free(datas);
    free(sizes);
    gguf_close(&f);
    return rc < 0 ? qf_set_err(err, rc, "%s: write failed", dst) : 0;
}

static void edit_bad_k(const gguf_tensor_info *ti, uint32_t *n_dims, uint64_t *ne, const void **data, void **owned) {
    (void)n_dims; (void)data; (void)owned;
    if (strcmp(ti->name, "blk.3.attn_k.weight") == 0) ne[1] = 16;
}

static void test_bad_shape_message(qf_test *t) {
    char src[1024], dst[1024];
    if (!qf_test_data(t, ORACLES "/stories260K-F32.gguf", src, sizeof src)) return;
    snprintf(dst, sizeof dst, "%s/engine_bad_k.gguf", qf_test_tmpdir());
    qf_err err = {0};
    REQUIRE(t, write_variant(src, dst, "llama", edit_bad_k, NULL, NULL, 0, 0.0f, &err) == 0, "%s", err.msg);
    qf_model m;
    int rc = qf_model_load(&m, dst, &err);
    CHECK(t, rc == QF_EMISMATCH && strstr(err.msg, "engine_bad_k.gguf: tensor 'blk.3.attn_k.weight' has shape [64, 16], expected [64, 32]"),
          "rc %d: %s", rc, err.msg);
    if (rc == 0) qf_model_free(&m);
    remove(dst);
}

/* A context whose KV cache cannot fit is refused by size, before allocating
 * (n_layer 5 x 64 K+V values x 4 bytes x 2^40 tokens = 1.4 PB; 2^62 overflows). */
static void test_ctx_too_large(qf_test *t) {
    qf_model m;
    if (!load(t, ORACLES "/stories260K-F32.gguf", &m)) return;
    qf_err err = {0};
    qf_ctx c;
    int rc = qf_ctx_init(&c, &m, (int64_t)1 << 40, 512, &err);
    CHECK(t, rc == QF_ENOMEM && strstr(err.msg, "stories260K-F32.gguf: KV cache for ctx 1099511627776 would need 1.4 PB"),
          "rc %d: %s", rc, err.msg);
    err = (qf_err){0};
    rc = qf_ctx_init(&c, &m, (int64_t)1 << 62, 512, &err);
    CHECK(t, rc == QF_ENOMEM && strstr(err.msg, "KV cache for ctx 4611686018427387904 would need"), "rc %d: %s", rc,
          err.msg);
    qf_model_free(&m);
}

/* llama GGUFs store Q/K rows permuted for ggml's "normal" RoPE (pairs
 * 2i, 2i+1). Undoing the permutation gives the HF layout that NEOX RoPE
 * (halves i, i + d/2) expects: qwen2 with zero biases must then give the
 * same logits as llama. Row h*hd + j*hd/2 + i (HF) = row h*hd + 2i + j (GGUF). */
static void edit_unpermute_qk(const gguf_tensor_info *ti, uint32_t *n_dims, uint64_t *ne, const void **data,
                              void **owned) {
    (void)n_dims;
    if (!strstr(ti->name, "attn_q.weight") && !strstr(ti->name, "attn_k.weight")) return;
    const int64_t n_in = (int64_t)ne[0], rows = (int64_t)ne[1], hd = 8;
    const float *srcw = *data;
    float *w = malloc((size_t)(n_in * rows) * sizeof(float));
    for (int64_t h = 0; h < rows / hd; h++)
        for (int64_t j = 0; j < 2; j++)
            for (int64_t i = 0; i < hd / 2; i++)
                memcpy(w + (h * hd + j * hd / 2 + i) * n_in, srcw + (h * hd + 2 * i + j) * n_in, (size_t)n_in * sizeof(float));
    *data = w;
    *owned = w;
}

static void test_qwen2_layout_equals_llama(qf_test *t) {
    char src[1024], dst[1024];
    if (!qf_test_data(t, ORACLES "/stories260K-F32.gguf", src, sizeof src)) return;
    snprintf(dst, sizeof dst, "%s/engine_qwen2.gguf", qf_test_tmpdir());
    const char *bias_names[15];
    char names[15][64];
    uint64_t lens[15];
    for (int l = 0; l < 5; l++)
        for (int k = 0; k < 3; k++) {
            snprintf(names[l * 3 + k], 64, "blk.%d.attn_%c.bias", l, "qkv"[k]);
            bias_names[l * 3 + k] = names[l * 3 + k];
            lens[l * 3 + k] = k == 0 ? 64 : 32;
        }
    qf_err err = {0};
    REQUIRE(t, write_variant(src, dst, "qwen2", edit_unpermute_qk, bias_names, lens, 15, 0.0f, &err) == 0, "%s", err.msg);
    qf_model a, b;
    REQUIRE(t, qf_model_load(&a, src, &err) == 0, "%s", err.msg);
    int rc = qf_model_load(&b, dst, &err);
    CHECK(t, rc == 0 && b.hp.arch == QF_ARCH_QWEN2 && b.hp.rope_type == QF_ROPE_NEOX && b.layers[4].bv.data,
          "qwen2 load: %s", err.msg);
    if (rc == 0) {
        float *la = malloc(64 * 512 * sizeof(float)), *lb = malloc(64 * 512 * sizeof(float));
        logits_with_threads(t, &a, 1, la);
        logits_with_threads(t, &b, 1, lb);
        double worst = 0;
        for (int i = 0; i < 64 * 512; i++) worst = fmax(worst, fabs((double)la[i] - lb[i]));
        CHECK(t, worst < 1e-4, "qwen2 (NEOX, HF layout) vs llama logits differ by %g", worst);
        free(la);
        free(lb);
        qf_model_free(&b);
    }
    qf_model_free(&a);
    remove(dst);
}

/* qwen3 normalizes each query/key head (RMSNorm with attn_q_norm/attn_k_norm)
 * before RoPE, so scaling the rows of attn_q by 3 and attn_k by 1/2 must not
 * change the logits (up to eps): a check that both norms are applied. */
static float qk_scale_q = 1.0f, qk_scale_k = 1.0f;
static void edit_qwen3(const gguf_tensor_info *ti, uint32_t *n_dims, uint64_t *ne, const void **data, void **owned) {
    edit_unpermute_qk(ti, n_dims, ne, data, owned);
    const int is_q = strstr(ti->name, "attn_q.weight") != NULL, is_k = strstr(ti->name, "attn_k.weight") != NULL;
    if (!is_q && !is_k) return;
    float *w = *owned;
    for (uint64_t i = 0; i < ne[0] * ne[1]; i++) w[i] *= is_q ? qk_scale_q : qk_scale_k;
}

static void test_qwen3_qk_norm(qf_test *t) {
    char src[1024], dst1[1024], dst2[1024];
    if (!qf_test_data(t, ORACLES "/stories260K-F32.gguf", src, sizeof src)) return;
    snprintf(dst1, sizeof dst1, "%s/engine_qwen3_a.gguf", qf_test_tmpdir());
    snprintf(dst2, sizeof dst2, "%s/engine_qwen3_b.gguf", qf_test_tmpdir());
    const char *norm_names[10];
    char names[10][64];
    uint64_t lens[10];
    for (int l = 0; l < 5; l++)
        for (int k = 0; k < 2; k++) {
            snprintf(names[l * 2 + k], 64, "blk.%d.attn_%c_norm.weight", l, "qk"[k]);
            norm_names[l * 2 + k] = names[l * 2 + k];
            lens[l * 2 + k] = 8;
        }
    qf_err err = {0};
    qk_scale_q = qk_scale_k = 1.0f;
    REQUIRE(t, write_variant(src, dst1, "qwen3", edit_qwen3, norm_names, lens, 10, 1.0f, &err) == 0, "%s", err.msg);
    qk_scale_q = 3.0f;
    qk_scale_k = 0.5f;
    REQUIRE(t, write_variant(src, dst2, "qwen3", edit_qwen3, norm_names, lens, 10, 1.0f, &err) == 0, "%s", err.msg);
    qf_model a, b, ref;
    REQUIRE(t, qf_model_load(&a, dst1, &err) == 0 && qf_model_load(&b, dst2, &err) == 0 && qf_model_load(&ref, src, &err) == 0,
            "%s", err.msg);
    CHECK(t, a.hp.arch == QF_ARCH_QWEN3 && a.layers[0].q_norm.data && a.layers[4].k_norm.data, "qwen3 tensors");
    float *la = malloc(64 * 512 * sizeof(float)), *lb = malloc(64 * 512 * sizeof(float)), *lr = malloc(64 * 512 * sizeof(float));
    logits_with_threads(t, &a, 1, la);
    logits_with_threads(t, &b, 1, lb);
    logits_with_threads(t, &ref, 1, lr);
    double d_scaled = 0, d_llama = 0;
    for (int i = 0; i < 64 * 512; i++) {
        d_scaled = fmax(d_scaled, fabs((double)la[i] - lb[i]));
        d_llama = fmax(d_llama, fabs((double)la[i] - lr[i]));
    }
    CHECK(t, d_scaled < 2e-3, "scaling q/k rows changed qwen3 logits by %g", d_scaled);
    CHECK(t, d_llama > 0.1, "the q/k norms changed nothing (max diff to llama %g)", d_llama);
    free(la); free(lb); free(lr);
    qf_model_free(&a);
    qf_model_free(&b);
    qf_model_free(&ref);
    remove(dst1);
    remove(dst2);
}

QF_TEST_MAIN(test_sentence_nll_and_top5, test_greedy_matches_llamacpp, test_wikitext_chunk_nll,
             test_perplexity_matches_llama_perplexity, test_kld, test_matmul_matches_reference, test_matmul_summation_order,
             test_activation_rounding, test_threads_bit_identical, test_bad_shape_message, test_ctx_too_large,
             test_qwen2_layout_equals_llama, test_qwen3_qk_norm)
