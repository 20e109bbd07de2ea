/* verify_test.c - the CI-gate side of verify/: top-k summaries and saved
 * logits (logits_file.c), the top-k KLD (perplexity.c), gates (gate.c),
 * text input formats (text.c) and HF directories as models (model.c).
 *
 * Oracles and invariants:
 *  - top-k selection and log-probabilities against a brute-force sort in
 *    double precision;
 *  - KL-divergence from full saved logits is bit-identical to the live base;
 *    merging outcomes never increases a divergence, so for nested top-k sets
 *    KLD_4 <= KLD_16 <= KLD_64 <= KLD_full, and with k = n_vocab - 1 (a
 *    single token merged, i.e. nothing lost) KLD_k equals KLD_full up to the
 *    fp16 rounding of the stored log-probs;
 *  - stories260K: the HF directory and llama.cpp's converted F32 GGUF have
 *    the same hyperparameters, tokenize text to the same ids and give logits
 *    within 1e-4.
 */
#include "qf_test.h"

#include <limits.h>
#include <math.h>
#include <unistd.h>
#include <zlib.h>

#include "gate.h"
#include "logits_file.h"
#include "hf_arch.h"
#include "model.h"
#include "perplexity.h"
#include "text.h"

static void tmp_path(const char *name, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/verify-%ld-%s", qf_test_tmpdir(), (long)getpid(), name);
}

/* ------------------------------------------------------------------ */
/* a synthetic logits source: logits are a deterministic function of
 * (seed, chunk, position, token id) */

typedef struct fake_source {
    qf_logits_source src;
    uint64_t seed;
    float noise;        /* 0: the "base"; > 0: a perturbed "model" */
} fake_source;

static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}
static float unit(uint64_t h) { return (float)((double)(h >> 11) / 9007199254740992.0) * 2.0f - 1.0f; }

static int fake_chunk(void *self, int64_t chunk, const int32_t *tokens, int64_t n_ctx, int64_t first, float *logits,
                      qf_err *err) {
    (void)err;
    fake_source *f = self;
    const int64_t V = f->src.n_vocab;
    for (int64_t pos = first; pos < n_ctx; pos++) {
        float *l = logits + (pos - first) * V;
        for (int64_t i = 0; i < V; i++) {
            uint64_t h = mix(((uint64_t)chunk << 40) ^ ((uint64_t)pos << 20) ^ (uint64_t)i ^ ((uint64_t)tokens[pos] << 50));
            /* a peaked distribution: a few big logits, a long low tail */
            float v = 3.0f * unit(h) - 0.02f * (float)i;
            if (i % 37 == (pos * 7) % 37) v += 6.0f;
            if (f->noise > 0) v += f->noise * unit(mix(h ^ 0x9e3779b97f4a7c15ull));
            l[i] = v;
        }
    }
    return 0;
}

static void fake_init(fake_source *f, int64_t V, float noise) {
    memset(f, 0, sizeof *f);
    f->src.n_vocab = V;
    f->src.chunk_logits = fake_chunk;
    f->src.self = f;
    f->noise = noise;
}

static void test_topk_selection(qf_test *t) {
    enum { V = 200, K = 20 };
    float l[V];
    for (int i = 0; i < V; i++) l[i] = (float)((i * 37) % 23) * 0.5f; /* many ties */
    int32_t ids[K];
    double lp[K], tail;
    qf_logits_topk(l, V, K, ids, lp, &tail);
    /* brute force: order by (value desc, id asc) */
    int32_t order[V];
    for (int i = 0; i < V; i++) order[i] = i;
    for (int i = 0; i < V; i++)
        for (int j = i + 1; j < V; j++)
            if (l[order[j]] > l[order[i]] || (l[order[j]] == l[order[i]] && order[j] < order[i])) {
                int32_t tmp = order[i];
                order[i] = order[j];
                order[j] = tmp;
            }
    double mx = l[order[0]], z = 0.0;
    for (int i = 0; i < V; i++) z += exp((double)l[i] - mx);
    double top = 0.0;
    for (int i = 0; i < K; i++) {
        CHECK(t, ids[i] == order[i], "rank %d: id %d, want %d", i, ids[i], order[i]);
        const double want = (double)l[order[i]] - mx - log(z);
        CHECK(t, fabs(lp[i] - want) < 1e-6, "rank %d: log p %.9f, want %.9f", i, lp[i], want);
        top += exp(want);
    }
    CHECK(t, fabs(exp(tail) - (1.0 - top)) < 1e-6, "tail mass %.9f, want %.9f", exp(tail), 1.0 - top);
    /* k >= n: everything, no tail */
    int32_t all[8];
    double lpa[8];
    float small[5] = {1, 5, 5, 2, -1};
    qf_logits_topk(small, 5, 8, all, lpa, &tail);
    CHECK(t, all[0] == 1 && all[1] == 2 && all[2] == 3 && all[3] == 0 && all[4] == 4 && isinf(tail) && tail < 0,
          "small: %d %d %d %d %d tail %g", all[0], all[1], all[2], all[3], all[4], tail);
}

/* KLD of `model` against a base read back from a file saved with top-k k. */
static int kld_via_file(qf_test *t, int64_t V, uint32_t k, const int32_t *tokens, int64_t n, const qf_ppl_params *p,
                        qf_kld_result *r, const char *name) {
    char path[512];
    tmp_path(name, path, sizeof path);
    fake_source base, model;
    fake_init(&base, V, 0);
    fake_init(&model, V, 0.3f);
    qf_err err = {0};
    qf_logits_tee tee;
    if (qf_logits_tee_open(&tee, &base.src, path, k, tokens, n, p, &err) < 0) {
        CHECK(t, 0, "tee open: %s", err.msg);
        return -1;
    }
    qf_ppl_result pr;
    int rc = qf_perplexity(&tee.src, tokens, n, p, &pr, &err);
    qf_ppl_result_free(&pr);
    if (rc == 0) rc = qf_logits_tee_finish(&tee, &err);
    else qf_logits_tee_abort(&tee);
    if (rc < 0) {
        CHECK(t, 0, "save: %s", err.msg);
        return -1;
    }
    qf_saved_logits s;
    if (qf_saved_logits_open(&s, path, &err) < 0 || qf_saved_logits_check(&s, V, tokens, n, p, &err) < 0 ||
        qf_kl_divergence(&s.src, &model.src, tokens, n, p, r, &err) < 0) {
        CHECK(t, 0, "%s: %s", name, err.msg);
        qf_saved_logits_close(&s);
        unlink(path);
        return -1;
    }
    CHECK(t, (k == 0) == (s.src.chunk_logits != NULL) && (k == 0 || s.src.topk == (int64_t)k), "%s: kind", name);
    qf_saved_logits_close(&s);
    unlink(path);
    return 0;
}

static void test_saved_logits_kld(qf_test *t) {
    enum { V = 300, N = 16 * 6 };
    int32_t tokens[N];
    for (int i = 0; i < N; i++) tokens[i] = (int32_t)(mix((uint64_t)i) % V);
    qf_ppl_params p = {.n_ctx = 16, .max_chunks = 5, .add_bos = 1, .bos_id = 1};
    fake_source base, model;
    fake_init(&base, V, 0);
    fake_init(&model, V, 0.3f);
    qf_err err = {0};
    qf_kld_result live, full, k4, k16, k64, kall;
    REQUIRE(t, qf_kl_divergence(&base.src, &model.src, tokens, N, &p, &live, &err) == 0, "%s", err.msg);
    REQUIRE(t, kld_via_file(t, V, 0, tokens, N, &p, &full, "full.qfl") == 0, "full");
    /* full: bit-identical figures */
    CHECK(t, full.kld_mean == live.kld_mean && full.ppl_base == live.ppl_base && full.same_top == live.same_top &&
                 !memcmp(full.kld_values, live.kld_values, (size_t)live.count * sizeof(float)),
          "full %.17g vs live %.17g", full.kld_mean, live.kld_mean);
    REQUIRE(t, kld_via_file(t, V, 4, tokens, N, &p, &k4, "k4.qfl") == 0, "k4");
    REQUIRE(t, kld_via_file(t, V, 16, tokens, N, &p, &k16, "k16.qfl") == 0, "k16");
    REQUIRE(t, kld_via_file(t, V, 64, tokens, N, &p, &k64, "k64.qfl") == 0, "k64");
    REQUIRE(t, kld_via_file(t, V, V - 1, tokens, N, &p, &kall, "kall.qfl") == 0, "k=V-1");
    const double f = live.kld_mean;
    CHECK(t, live.kld_mean > 0.001, "the synthetic pair should differ (kld %g)", f);
    CHECK(t, k4.kld_mean <= k16.kld_mean * (1 + 1e-4) && k16.kld_mean <= k64.kld_mean * (1 + 1e-4) &&
                 k64.kld_mean <= f * (1 + 1e-4),
          "not monotone: %g %g %g %g", k4.kld_mean, k16.kld_mean, k64.kld_mean, f);
    CHECK(t, fabs(kall.kld_mean - f) <= 1e-3 * f, "k = V-1: %.9g vs full %.9g", kall.kld_mean, f);
    /* exact parts: base perplexity and top-1 agreement */
    CHECK(t, k16.ppl_base == live.ppl_base && k16.same_top == live.same_top && k16.ppl == live.ppl,
          "ppl_base %.17g/%.17g same_top %g/%g", k16.ppl_base, live.ppl_base, k16.same_top, live.same_top);
    CHECK(t, k4.tail_mass > k16.tail_mass && k16.tail_mass > k64.tail_mass && k64.tail_mass > 0 && live.tail_mass == 0,
          "tail mass %g %g %g", k4.tail_mass, k16.tail_mass, k64.tail_mass);
    if (getenv("QF_TEST_VERBOSE"))
        printf("# kld full %.6f, top4 %.6f, top16 %.6f, top64 %.6f, top299 %.6f; tail %.4f %.4f %.6f\n", f,
               k4.kld_mean, k16.kld_mean, k64.kld_mean, kall.kld_mean, k4.tail_mass, k16.tail_mass, k64.tail_mass);
    qf_kld_result_free(&live);
    qf_kld_result_free(&full);
    qf_kld_result_free(&k4);
    qf_kld_result_free(&k16);
    qf_kld_result_free(&k64);
    qf_kld_result_free(&kall);
}

static void test_saved_logits_refuses(qf_test *t) {
    enum { V = 50, N = 8 * 4 };
    int32_t tokens[N], other[N];
    for (int i = 0; i < N; i++) tokens[i] = other[i] = (int32_t)(i * 7 % V);
    other[20] = 3;
    qf_ppl_params p = {.n_ctx = 8, .add_bos = 1, .bos_id = 1};
    char path[512];
    tmp_path("refuse.qfl", path, sizeof path);
    fake_source base;
    fake_init(&base, V, 0);
    qf_err err = {0};
    qf_logits_tee tee;
    REQUIRE(t, qf_logits_tee_open(&tee, &base.src, path, 8, tokens, N, &p, &err) == 0, "%s", err.msg);
    /* finishing before every chunk was written fails and leaves nothing */
    CHECK(t, qf_logits_tee_finish(&tee, &err) == QF_EINVAL && strstr(err.msg, "0 of 4 chunks written"), "%s", err.msg);
    CHECK(t, access(path, F_OK) != 0, "a partial file was left");
    REQUIRE(t, qf_logits_tee_open(&tee, &base.src, path, 8, tokens, N, &p, &err) == 0, "%s", err.msg);
    qf_ppl_result pr;
    REQUIRE(t, qf_perplexity(&tee.src, tokens, N, &p, &pr, &err) == 0, "%s", err.msg);
    qf_ppl_result_free(&pr);
    REQUIRE(t, qf_logits_tee_finish(&tee, &err) == 0, "%s", err.msg);
    qf_saved_logits s;
    REQUIRE(t, qf_saved_logits_open(&s, path, &err) == 0, "%s", err.msg);
    CHECK(t, qf_saved_logits_check(&s, V, tokens, N, &p, &err) == 0, "%s", err.msg);
    qf_err_clear(&err);
    CHECK(t, qf_saved_logits_check(&s, V + 1, tokens, N, &p, &err) == QF_EMISMATCH && strstr(err.msg, "vocabulary of 50"),
          "%s", err.msg);
    qf_err_clear(&err);
    CHECK(t, qf_saved_logits_check(&s, V, other, N, &p, &err) == QF_EMISMATCH && strstr(err.msg, "token 20 is"), "%s",
          err.msg);
    qf_ppl_params p2 = p;
    p2.n_ctx = 4;
    qf_err_clear(&err);
    CHECK(t, qf_saved_logits_check(&s, V, tokens, N, &p2, &err) == QF_EMISMATCH && strstr(err.msg, "context of 8"),
          "%s", err.msg);
    p2 = p;
    p2.add_bos = 0;
    qf_err_clear(&err);
    CHECK(t, qf_saved_logits_check(&s, V, tokens, N, &p2, &err) == QF_EMISMATCH && strstr(err.msg, "BOS"), "%s",
          err.msg);
    /* a prefix of the chunks is fine */
    p2 = p;
    p2.max_chunks = 2;
    qf_err_clear(&err);
    CHECK(t, qf_saved_logits_check(&s, V, other, 16, &p2, &err) == 0, "%s", err.msg);
    /* a top-k file gives no perplexity by itself */
    qf_err_clear(&err);
    CHECK(t, qf_perplexity(&s.src, tokens, N, &p, &pr, &err) == QF_EINVAL, "perplexity from top-k");
    qf_saved_logits_close(&s);
    unlink(path);
}

/* ------------------------------------------------------------------ */

static void test_gates(qf_test *t) {
    char msg[200];
    double v;
    CHECK(t, qf_gate_parse(QF_GATE_MIN_TOP1, "0.95", &v, msg, sizeof msg) == 0 && v == 0.95, "fraction");
    CHECK(t, qf_gate_parse(QF_GATE_MIN_TOP1, "95%", &v, msg, sizeof msg) == 0 && fabs(v - 0.95) < 1e-15, "percent");
    CHECK(t, qf_gate_parse(QF_GATE_MIN_TOP1, "95", &v, msg, sizeof msg) < 0 && strstr(msg, "more than 1"), "%s", msg);
    CHECK(t, qf_gate_parse(QF_GATE_MAX_KLD, "0.05x", &v, msg, sizeof msg) < 0, "junk accepted");
    CHECK(t, qf_gate_parse(QF_GATE_MAX_KLD, "5%", &v, msg, sizeof msg) < 0, "percent KLD accepted");
    CHECK(t, qf_gate_parse(QF_GATE_MAX_PPL, "0", &v, msg, sizeof msg) < 0, "zero ppl accepted");
    CHECK(t, qf_gate_parse(QF_GATE_MAX_PPL_INCREASE, "-1", &v, msg, sizeof msg) == 0 && v == -1, "negative increase");
    qf_gate_figures fig = {.ppl = 110.0, .has_base = 1, .base_ppl = 100.0, .kld_mean = 0.0712, .top1 = 0.9};
    qf_gate g = {.kind = QF_GATE_MAX_KLD, .limit = 0.05};
    CHECK(t, !qf_gate_eval(&g, &fig) && !strcmp(g.reason, "mean KLD 0.0712 > 0.05"), "'%s'", g.reason);
    g.limit = 0.0712;
    CHECK(t, qf_gate_eval(&g, &fig), "equal passes");
    g = (qf_gate){.kind = QF_GATE_MAX_PPL_INCREASE, .limit = 10.000001};
    CHECK(t, qf_gate_eval(&g, &fig) && fabs(g.value - 10.0) < 1e-9, "increase %g", g.value);
    g.limit = 9.99;
    CHECK(t, !qf_gate_eval(&g, &fig) && strstr(g.reason, "perplexity increase 10% > 9.99%"), "'%s'", g.reason);
    g = (qf_gate){.kind = QF_GATE_MIN_TOP1, .limit = 0.95};
    CHECK(t, !qf_gate_eval(&g, &fig) && !strcmp(g.reason, "top-1 agreement 90% < 95%"), "'%s'", g.reason);
    g = (qf_gate){.kind = QF_GATE_MAX_PPL, .limit = 100};
    CHECK(t, !qf_gate_eval(&g, &fig) && !strcmp(g.reason, "perplexity 110 > 100"), "'%s'", g.reason);
    fig.ppl = NAN;
    CHECK(t, !qf_gate_eval(&g, &fig), "NaN passes");
    fig.has_base = 0;
    g = (qf_gate){.kind = QF_GATE_MAX_KLD, .limit = 1};
    CHECK(t, !qf_gate_eval(&g, &fig) && strstr(g.reason, "needs a base"), "no base");
}

/* ------------------------------------------------------------------ */

static int write_file(const char *path, const char *s, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fwrite(s, 1, n, f);
    return fclose(f);
}

static void test_text_formats(qf_test *t) {
    char path[512], *text = NULL;
    size_t len = 0;
    qf_err err = {0};
    const char plain[] = "Once upon a time\nthere was a \"cat\".\n";
    tmp_path("a.txt", path, sizeof path);
    REQUIRE(t, write_file(path, plain, sizeof plain - 1) == 0, "write");
    REQUIRE(t, qf_read_text_file(path, &text, &len, &err) == 0, "%s", err.msg);
    CHECK(t, len == sizeof plain - 1 && !strcmp(text, plain), "plain");
    free(text);
    /* gzip, even under a plain name */
    tmp_path("b.txt", path, sizeof path);
    gzFile gz = gzopen(path, "wb");
    REQUIRE(t, gz != NULL, "gzopen");
    gzwrite(gz, plain, sizeof plain - 1);
    gzclose(gz);
    REQUIRE(t, qf_read_text_file(path, &text, &len, &err) == 0, "%s", err.msg);
    CHECK(t, len == sizeof plain - 1 && !strcmp(text, plain), "gz");
    free(text);
    /* JSONL: "text" fields joined by a blank line; escapes decoded; other fields ignored */
    const char jsonl[] = "{\"id\": 1, \"text\": \"Once upon a time\\nthere\"}\r\n\n"
                         "  {\"meta\": {\"text\": 5}, \"text\": \"was a \\\"cat\\\". \\u00e9\"}\n";
    tmp_path("c.jsonl", path, sizeof path);
    REQUIRE(t, write_file(path, jsonl, sizeof jsonl - 1) == 0, "write");
    REQUIRE(t, qf_read_text_file(path, &text, &len, &err) == 0, "%s", err.msg);
    const char want[] = "Once upon a time\nthere\n\nwas a \"cat\". \xc3\xa9";
    CHECK(t, len == sizeof want - 1 && !strcmp(text, want), "jsonl: '%s'", text);
    free(text);
    static const struct {
        const char *name, *content, *msg;
    } bad[] = {
        {"empty.txt", "", "empty.txt: empty file"},
        {"nul.txt", "a\0b", "contains NUL bytes"},
        {"d.jsonl", "{\"text\": \"a\"}\n[1, 2]\n", "d.jsonl: line 2: not a json object with a string \"text\" field"},
        {"e.jsonl", "{\"text\": 3}\n", "e.jsonl: line 1: not a json object"},
        {"f.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"\n", "f.jsonl: line 2"},
        {"g.jsonl", "\n\n  \n", "g.jsonl: no json records"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tmp_path(bad[i].name, path, sizeof path);
        size_t n = strlen(bad[i].content);
        if (!strcmp(bad[i].name, "nul.txt")) n = 3;
        REQUIRE(t, write_file(path, bad[i].content, n) == 0, "write");
        qf_err_clear(&err);
        text = NULL;
        CHECK(t, qf_read_text_file(path, &text, &len, &err) < 0 && strstr(err.msg, bad[i].msg), "%s: '%s'", bad[i].name,
              err.msg);
        free(text);
        unlink(path);
    }
    /* truncated gzip */
    tmp_path("h.gz", path, sizeof path);
    gz = gzopen(path, "wb");
    for (int i = 0; i < 200; i++) gzprintf(gz, "line %d of some text that compresses\n", i * 7919 % 1000);
    gzclose(gz);
    FILE *f = fopen(path, "rb");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    REQUIRE(t, n > 100 && write_file(path, buf, n / 2) == 0, "truncate");
    qf_err_clear(&err);
    text = NULL;
    CHECK(t, qf_read_text_file(path, &text, &len, &err) < 0 && strstr(err.msg, "h.gz: "), "truncated gz: '%s'", err.msg);
    free(text);
    unlink(path);
}

/* ------------------------------------------------------------------ */

static void test_hf_dir_model(qf_test *t) {
    char hf[512], gg[512], wiki[512];
    if (!qf_test_data(t, "models/stories260K", hf, sizeof hf) ||
        !qf_test_data(t, "oracles/llamacpp/stories260K-F32.gguf", gg, sizeof gg) ||
        !qf_test_data(t, "corpus/wikitext-2-raw/wiki.test.raw", wiki, sizeof wiki))
        return;
    qf_err err = {0};
    qf_model a, b;
    REQUIRE(t, qf_model_load(&a, hf, &err) == 0, "%s", err.msg);
    if (qf_model_load(&b, gg, &err) != 0) {
        qf_model_free(&a);
        REQUIRE(t, 0, "%s", err.msg);
    }
    const qf_hparams *x = &a.hp, *y = &b.hp;
    CHECK(t, a.is_hf && !b.is_hf && x->arch == y->arch && x->n_vocab == y->n_vocab && x->n_embd == y->n_embd &&
                 x->n_layer == y->n_layer && x->n_ff == y->n_ff && x->n_head == y->n_head &&
                 x->n_head_kv == y->n_head_kv && x->head_dim_k == y->head_dim_k && x->n_rot == y->n_rot &&
                 x->rope_freq_base == y->rope_freq_base && x->norm_eps == y->norm_eps &&
                 x->n_ctx_train == y->n_ctx_train && a.tied_output && b.tied_output,
          "hparams differ");
    CHECK(t, x->rope_type == QF_ROPE_NEOX && y->rope_type == QF_ROPE_NORM, "rope types %d %d", x->rope_type, y->rope_type);
    CHECK(t, !strcmp(a.layers[2].wq.name, "blk.2.attn_q.weight") && a.layers[2].wq.type == b.layers[2].wq.type,
          "names are GGUF names: %s", a.layers[2].wq.name);
    CHECK(t, !memcmp(a.tok_embd.data, b.tok_embd.data, 512 * 64 * 4) &&
                 !memcmp(a.layers[1].wv.data, b.layers[1].wv.data, 32 * 64 * 4),
          "unpermuted tensors must be byte-identical");
    /* same token ids from the HF tokenizer files and from the GGUF vocabulary */
    qf_text ta, tb;
    REQUIRE(t, qf_text_init_model(&ta, &a, &err) == 0 && qf_text_init_model(&tb, &b, &err) == 0, "%s", err.msg);
    CHECK(t, qf_text_vocab_diff(&ta, &tb) == -1, "vocabularies differ at %lld", (long long)qf_text_vocab_diff(&ta, &tb));
    char *text = NULL;
    size_t len = 0;
    REQUIRE(t, qf_read_text_file(wiki, &text, &len, &err) == 0, "%s", err.msg);
    if (len > 20000) text[20000] = 0;
    int32_t *ia = NULL, *ib = NULL;
    int64_t na = 0, nb = 0;
    REQUIRE(t, qf_text_encode(&ta, text, 1, &ia, &na, &err) == 0 && qf_text_encode(&tb, text, 1, &ib, &nb, &err) == 0,
            "%s", err.msg);
    CHECK(t, na == nb && na > 10000 && !memcmp(ia, ib, (size_t)na * sizeof *ia), "ids differ (%lld vs %lld)",
          (long long)na, (long long)nb);
    /* one chunk's logits */
    qf_model_source sa, sb;
    REQUIRE(t, qf_model_source_init(&sa, &a, 128, 0, &err) == 0 && qf_model_source_init(&sb, &b, 128, 0, &err) == 0,
            "%s", err.msg);
    float *la = malloc(64 * 512 * sizeof(float)), *lb = malloc(64 * 512 * sizeof(float));
    REQUIRE(t, sa.src.chunk_logits(&sa, 0, ia, 128, 64, la, &err) == 0 && sb.src.chunk_logits(&sb, 0, ia, 128, 64, lb, &err) == 0,
            "%s", err.msg);
    double md = 0;
    for (int i = 0; i < 64 * 512; i++) md = fmax(md, fabs((double)la[i] - (double)lb[i]));
    CHECK(t, md < 1e-4, "max logit difference %g", md);
    free(la);
    free(lb);
    qf_model_source_free(&sa);
    qf_model_source_free(&sb);
    free(ia);
    free(ib);
    free(text);
    qf_text_free(&ta);
    qf_text_free(&tb);
    qf_model_free(&a);
    qf_model_free(&b);
}

static void test_hf_dir_errors(qf_test *t) {
    char hf[512];
    if (!qf_test_data(t, "models/stories260K", hf, sizeof hf)) return;
    qf_err err = {0};
    qf_model m;
    /* a directory without config.json */
    CHECK(t, qf_model_load(&m, qf_test_tmpdir(), &err) == QF_ENOTFOUND && strstr(err.msg, "no config.json"), "%s",
          err.msg);
    /* a config.json naming an unknown class (copy the checkpoint's files by symlink) */
    char dir[512], p[PATH_MAX + 32], q[1024], abs_hf[PATH_MAX];
    REQUIRE(t, realpath(hf, abs_hf) != NULL, "realpath");
    tmp_path("hfdir", dir, sizeof dir);
    mkdir(dir, 0777);
    snprintf(p, sizeof p, "%s/model.safetensors", abs_hf);
    snprintf(q, sizeof q, "%s/model.safetensors", dir);
    unlink(q);
    REQUIRE(t, symlink(p, q) == 0 || access(q, F_OK) == 0, "symlink");
    snprintf(q, sizeof q, "%s/config.json", dir);
    const char cfg[] = "{\"architectures\": [\"GPT2LMHeadModel\"], \"hidden_size\": 64}";
    REQUIRE(t, write_file(q, cfg, sizeof cfg - 1) == 0, "write");
    qf_err_clear(&err);
    CHECK(t, qf_model_load(&m, dir, &err) == QF_EUNSUPPORTED && strstr(err.msg, "architecture 'GPT2LMHeadModel'"), "%s",
          err.msg);
    /* rope scaling in an HF directory: llama3 gives the converter's rope_freqs divisors,
     * yarn is refused */
    char src[1024];
    snprintf(src, sizeof src, "%s/config.json", hf);
    FILE *g = fopen(src, "rb");
    REQUIRE(t, g != NULL, "open");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, g);
    fclose(g);
    buf[n] = 0;
    char *rs = strstr(buf, "\"rope_scaling\": null");
    REQUIRE(t, rs != NULL, "config.json has no rope_scaling null");
    static const char *const scalings[] = {"{\"rope_type\": \"llama3\", \"factor\": 8.0}", "{\"type\": \"yarn\", \"factor\": 4.0}"};
    for (int k = 0; k < 2; k++) {
        FILE *f = fopen(q, "wb");
        REQUIRE(t, f != NULL, "open");
        fprintf(f, "%.*s\"rope_scaling\": %s%s", (int)(rs - buf), buf, scalings[k], rs + strlen("\"rope_scaling\": null"));
        fclose(f);
        qf_err_clear(&err);
        int rc = qf_model_load(&m, dir, &err);
        if (k == 0) {
            CHECK(t, rc == 0, "%s", err.msg);
            if (rc == 0) {
                /* stories260K: head_dim 8, rope_theta 10000 (default), factors 8/1/4, 8192 */
                float want[4];
                REQUIRE(t, qf_llama3_rope_factors(10000.0, m.hp.n_rot, 8.0, 1.0, 4.0, 8192.0, want) == 0, "factors");
                CHECK(t, m.rope_freqs.data && m.rope_freqs.n_in == m.hp.n_rot / 2 &&
                             !memcmp(m.rope_freqs.data, want, sizeof(float) * (size_t)(m.hp.n_rot / 2)),
                      "rope_freqs not bound to the llama3 factors");
                qf_model_free(&m);
            }
        } else {
            CHECK(t, rc == QF_EUNSUPPORTED && strstr(err.msg, "rope_scaling 'yarn' is not supported"), "%s", err.msg);
        }
    }
    snprintf(q, sizeof q, "%s/config.json", dir);
    unlink(q);
    snprintf(q, sizeof q, "%s/model.safetensors", dir);
    unlink(q);
    rmdir(dir);
}

QF_TEST_MAIN(test_topk_selection, test_saved_logits_kld, test_saved_logits_refuses, test_gates, test_text_formats,
             test_hf_dir_model, test_hf_dir_errors)
