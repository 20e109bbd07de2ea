/* calibrate_test.c - calibrate/ (activation statistics) against oracles and
 * invariants:
 *   - shared/oracles/llamacpp/stories260K-imatrix-wiki64x512.dat, made by
 *     `llama-imatrix -m stories260K-F32.gguf -f wiki.test.raw -c 512
 *     --chunks 64 -t 2`: same 35 entry names, ncall 64, and weights within
 *     5e-4 relative, 2e-5 on average (measured 1.70e-4 and 1.10e-5; with an
 *     F32 KV cache instead of llama.cpp's F16 one the average is 3.3e-5, with
 *     no BOS at chunk starts 1.7e-2). A second accumulator in the same pass
 *     sums in float in token order as llama-imatrix does: blk.0.attn_q (whose
 *     input is just the normed embedding) then agrees within 2e-7 (measured
 *     6.7e-8), so the rest is llama-imatrix's float summation plus activation
 *     drift through the layers (ggml's approximate expf in softmax etc.);
 *   - kernels: AVX2 == scalar reference, bit for bit;
 *   - Hessian: symmetric, positive semi-definite (Cholesky), diag(H) == the
 *     imatrix sums bit for bit, |H_ij|^2 <= H_ii H_jj; mean |x| vs mean x^2
 *     (Cauchy-Schwarz);
 *   - 1 vs 2 threads: identical sums and Hessians;
 *   - llama-imatrix's rules: calls under 16 tokens skipped, tied output never
 *     collected, text shorter than a chunk refused;
 *   - imatrix GGUF/.dat round trips; text input: .gz and JSON Lines.
 */
#include "qf_test.h"

#include <math.h>
#include <stdint.h>
#include <unistd.h>
#include <zlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "calibrate.h"
#include "imatrix.h"
#include "model.h"
#include "text.h"

#define ORACLES "oracles/llamacpp"
#define WIKI "corpus/wikitext-2-raw/wiki.test.raw"

/* REQUIRE for functions returning 0 on failure */
#define REQUIRE0(t, cond, ...) do { if (!(cond)) { qf_test_fail((t), __FILE__, __LINE__, "required: " #cond " -- " __VA_ARGS__); return 0; } } while (0)

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* xorshift64*, uniform in [-1, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (float)((double)((rng_state * 2685821657736338717ull) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void test_kernels_match_reference(qf_test *t) {
    static const int64_t sizes[][2] = {{1, 1}, {3, 5}, {17, 4}, {16, 16}, {37, 70}, {5, 129}, {64, 33}, {200, 300}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int64_t T = sizes[s][0], n = sizes[s][1], ld = n + 3;
        float *x = malloc((size_t)(T * ld) * sizeof *x);
        double *a = calloc((size_t)(n * n), sizeof *a), *b = calloc((size_t)(n * n), sizeof *b);
        REQUIRE(t, x && a && b, "alloc");
        for (int64_t i = 0; i < T * ld; i++) x[i] = frand() * (i % 7 == 0 ? 1e3f : 1.0f);
        for (int64_t j = 0; j < n; j++) a[j] = b[j] = j * 0.25;
        for (int nt = 1; nt <= 3; nt += 2) { /* one thread, and more threads than tiles for the small sizes */
        for (int64_t j = 0; j < n; j++) a[j] = b[j] = j * 0.25;
        qf_sumsq_cols_ref(a, x, T, n, ld);
        qf_sumsq_cols(b, x, T, n, ld, nt);
        CHECK(t, memcmp(a, b, (size_t)n * sizeof *a) == 0, "sumsq T=%lld n=%lld threads %d", (long long)T, (long long)n, nt);
        qf_sumabs_cols_ref(a, x, T, n, ld);
        qf_sumabs_cols(b, x, T, n, ld, nt);
        CHECK(t, memcmp(a, b, (size_t)n * sizeof *a) == 0, "sumabs T=%lld n=%lld threads %d", (long long)T, (long long)n, nt);
        memset(a, 0, (size_t)(n * n) * sizeof *a);
        memset(b, 0, (size_t)(n * n) * sizeof *b);
        qf_syrk_lower_ref(a, x, T, n); /* x read with stride n: the first T*n values */
        qf_syrk_lower(b, x, T, n, nt);
        qf_syrk_lower_ref(a, x + 1, T - 1, n); /* a second, unaligned call accumulates */
        qf_syrk_lower(b, x + 1, T - 1, n, nt);
        CHECK(t, memcmp(a, b, (size_t)(n * n) * sizeof *a) == 0, "syrk T=%lld n=%lld threads %d", (long long)T, (long long)n, nt);
        /* row panels of 32 and 64 rows give the same rows, bit for bit */
        for (int64_t pr = 32; pr <= 64; pr += 32) {
            double *p = calloc((size_t)(pr * n), sizeof *p);
            REQUIRE(t, p, "alloc");
            int same = 1;
            for (int64_t i0 = 0; i0 < n; i0 += pr) {
                const int64_t i1 = i0 + pr < n ? i0 + pr : n;
                memset(p, 0, (size_t)(pr * n) * sizeof *p);
                qf_syrk_lower_rows(p, x, T, n, i0, i1, nt);
                qf_syrk_lower_rows(p, x + 1, T - 1, n, i0, i1, nt);
                same &= memcmp(p, b + i0 * n, (size_t)((i1 - i0) * n) * sizeof *p) == 0;
            }
            CHECK(t, same, "syrk rows %lld T=%lld n=%lld threads %d", (long long)pr, (long long)T, (long long)n, nt);
            free(p);
        }
        }
        int upper_zero = 1;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = i + 1; j < n; j++) upper_zero &= b[i * n + j] == 0.0;
        CHECK(t, upper_zero, "syrk wrote above the diagonal (n=%lld)", (long long)n);
        free(x);
        free(a);
        free(b);
    }
}

/* ------------------------------------------------------------------ */
/* a float accumulator summing like llama-imatrix (values[j] += x*x in
 * float, token order): the pluggable interface used from outside */

typedef struct f32_acc {
    qf_calib_acc base;
    int n;
    float **sum2;
} f32_acc;

static int f32_observe(qf_calib_acc *a, const qf_calib *cal, int index, const float *x, int64_t T, qf_err *err) {
    (void)err;
    f32_acc *f = (f32_acc *)a;
    const int64_t n = cal->targets[index].w->n_in;
    float *s = f->sum2[index];
    for (int64_t k = 0; k < T; k++)
        for (int64_t j = 0; j < n; j++) {
            const float v = x[k * n + j], p = v * v;
            s[j] = s[j] + p;
        }
    return 0;
}

static void f32_destroy(qf_calib_acc *a) {
    f32_acc *f = (f32_acc *)a;
    for (int i = 0; i < f->n; i++) free(f->sum2[i]);
    free(f->sum2);
    free(f);
}

static f32_acc *f32_new(const qf_calib *cal) {
    f32_acc *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->base.kind = "test-f32";
    f->base.observe = f32_observe;
    f->base.destroy = f32_destroy;
    f->n = cal->n_targets;
    f->sum2 = calloc((size_t)f->n, sizeof *f->sum2);
    for (int i = 0; i < f->n; i++) f->sum2[i] = calloc((size_t)cal->targets[i].w->n_in, sizeof(float));
    return f;
}

/* ------------------------------------------------------------------ */

typedef struct fixture {
    qf_model m;
    qf_text tx;
    int32_t *ids;
    int64_t n_ids;
    int add_bos;
    int32_t bos;
} fixture;

/* stories260K-F32 + wiki.test.raw tokenized like llama-imatrix (-f drops one
 * trailing newline; BOS first). Returns 0 (skipped / failed) or 1. */
static int fixture_load(qf_test *t, fixture *fx, const char *model_rel) {
    char mp[1024], tp[1024];
    memset(fx, 0, sizeof *fx);
    if (!qf_test_data(t, model_rel, mp, sizeof mp) || !qf_test_data(t, WIKI, tp, sizeof tp)) return 0;
    qf_err err = {0};
    int rc = qf_model_load(&fx->m, mp, &err);
    REQUIRE0(t, rc == 0, "%s", err.msg);
    rc = qf_text_init(&fx->tx, &fx->m.file, &err);
    if (rc < 0) {
        qf_model_free(&fx->m);
        CHECK(t, 0, "%s", err.msg);
        return 0;
    }
    char *text = NULL;
    size_t len = 0;
    rc = qf_read_text_any(tp, &text, &len, &err);
    if (rc == 0) {
        if (len && text[len - 1] == '\n') text[--len] = 0;
        rc = qf_text_encode(&fx->tx, text, 1, &fx->ids, &fx->n_ids, &err);
    }
    free(text);
    if (rc < 0) {
        qf_text_free(&fx->tx);
        qf_model_free(&fx->m);
        CHECK(t, 0, "%s", err.msg);
        return 0;
    }
    qf_text_bos(&fx->tx, &fx->add_bos, &fx->bos);
    return 1;
}

static void fixture_free(fixture *fx) {
    free(fx->ids);
    qf_text_free(&fx->tx);
    qf_model_free(&fx->m);
}

static qf_calib_params params(const fixture *fx, int64_t n_ctx, int64_t chunks) {
    qf_calib_params p = {0};
    p.n_ctx = n_ctx;
    p.max_chunks = chunks;
    p.add_bos = fx->add_bos;
    p.bos_id = fx->bos;
    p.kv_f16 = 1; /* llama-imatrix runs with the default F16 KV cache */
    return p;
}

static void test_tables_stories260K(qf_test *t) {
    char mp[1024];
    if (!qf_test_data(t, ORACLES "/stories260K-F32.gguf", mp, sizeof mp)) return;
    qf_model m;
    qf_err err = {0};
    REQUIRE(t, qf_model_load(&m, mp, &err) == 0, "%s", err.msg);
    for (int po = 0; po <= 1; po++) {
        qf_calib cal;
        qf_calib_options o = {.process_output = po};
        REQUIRE(t, qf_calib_init(&cal, &m, &o, &err) == 0, "%s", err.msg);
        /* tied output: token_embd is never collected, even with --process-output */
        CHECK(t, cal.n_targets == 35 && cal.n_sites == 20, "targets %d sites %d", cal.n_targets, cal.n_sites);
        CHECK(t, qf_calib_find_target(&cal, "token_embd.weight") < 0, "token_embd collected");
        int q = qf_calib_find_target(&cal, "blk.3.attn_q.weight"), v = qf_calib_find_target(&cal, "blk.3.attn_v.weight");
        int up = qf_calib_find_target(&cal, "blk.3.ffn_up.weight"), dn = qf_calib_find_target(&cal, "blk.3.ffn_down.weight");
        REQUIRE(t, q >= 0 && v >= 0 && up >= 0 && dn >= 0, "missing targets");
        const qf_calib_site *sq = &cal.sites[cal.targets[q].site], *sd = &cal.sites[cal.targets[dn].site];
        CHECK(t, cal.targets[q].site == cal.targets[v].site && sq->n_weights == 3 && sq->targets[0] == q &&
                     !strcmp(sq->name, "blk.3.attn_in") && sq->n_in == 64, "q/k/v share blk.3.attn_in");
        CHECK(t, cal.targets[up].site != cal.targets[q].site && cal.sites[cal.targets[up].site].n_weights == 2,
              "gate/up share their own site");
        CHECK(t, !strcmp(sd->name, "blk.3.ffn_down_in") && sd->n_in == 172, "down site %s %lld", sd->name,
              (long long)sd->n_in);
        qf_calib_free(&cal);
    }
    qf_model_free(&m);
}

/* The 64 x 512 oracle: one pass with our double accumulator and the float
 * accumulator above. ~8 s on one core. */
static void test_matches_llama_imatrix_oracle(qf_test *t) {
    char op[1024];
    if (!qf_test_data(t, ORACLES "/stories260K-imatrix-wiki64x512.dat", op, sizeof op)) return;
    fixture fx;
    if (!fixture_load(t, &fx, ORACLES "/stories260K-F32.gguf")) return;
    qf_err err = {0};
    qf_calib cal;
    qf_calib_acc *acc = NULL;
    qf_imatrix ours, oracle;
    qf_imatrix_init(&ours);
    qf_imatrix_init(&oracle);
    REQUIRE(t, qf_calib_init(&cal, &fx.m, NULL, &err) == 0, "%s", err.msg);
    f32_acc *f32 = f32_new(&cal);
    REQUIRE(t, qf_calib_imatrix_new(&cal, &acc, &err) == 0 && qf_calib_add(&cal, acc, &err) == 0 &&
                   qf_calib_add(&cal, &f32->base, &err) == 0, "%s", err.msg);
    qf_calib_params p = params(&fx, 512, 64);
    qf_calib_stats st;
    REQUIRE(t, qf_calib_run(&cal, fx.ids, fx.n_ids, &p, &st, &err) == 0, "%s", err.msg);
    CHECK(t, st.n_chunks == 64 && st.n_tokens == 32768, "chunks %lld", (long long)st.n_chunks);
    REQUIRE(t, qf_calib_imatrix_export(&cal, acc, 64, 512, "wiki.test.raw", &ours, &err) == 0, "%s", err.msg);
    REQUIRE(t, qf_imatrix_read_dat(&oracle, op, &err) == 0, "%s", err.msg);
    CHECK(t, ours.n_entries == 35 && oracle.n_entries == 35, "entries %zu / %zu", ours.n_entries, oracle.n_entries);
    double max_rel = 0, max_rel_f32 = 0, max_rel_f32_l0q = 0, sum_rel = 0;
    int64_t n_rel = 0;
    for (size_t i = 0; i < oracle.n_entries; i++) {
        const qf_imatrix_entry *eo = &oracle.entries[i];
        const qf_imatrix_entry *e = qf_imatrix_find(&ours, eo->name);
        if (!e) {
            CHECK(t, 0, "oracle entry %s missing", eo->name);
            continue;
        }
        const int tg = qf_calib_find_target(&cal, eo->name);
        CHECK(t, e->ncall == 64 && eo->ncall == 64 && e->counts[0] == 32768.0f && e->n_cols == eo->n_cols,
              "%s: ncall %lld/%lld counts %g", eo->name, (long long)e->ncall, (long long)eo->ncall, e->counts[0]);
        float *wo = malloc(eo->n_cols * sizeof *wo), *w = malloc(eo->n_cols * sizeof *w);
        qf_imatrix_entry_weights(eo, wo);
        qf_imatrix_entry_weights(e, w);
        for (uint32_t j = 0; j < eo->n_cols; j++) {
            /* llama-imatrix's value: (float sum / count) * ncall, read back / ncall */
            const float vf = (f32->sum2[tg][j] / 32768.0f) * 64.0f / 64.0f;
            const double r = fabs((double)w[j] - wo[j]) / wo[j], rf = fabs((double)vf - wo[j]) / wo[j];
            if (r > max_rel) max_rel = r;
            sum_rel += r;
            n_rel++;
            if (rf > max_rel_f32) max_rel_f32 = rf;
            if (!strcmp(eo->name, "blk.0.attn_q.weight") && rf > max_rel_f32_l0q) max_rel_f32_l0q = rf;
        }
        free(w);
        free(wo);
    }
    const double mean_rel = n_rel ? sum_rel / (double)n_rel : 1.0;
    printf("  oracle 64x512: max rel diff %.3e mean %.3e (double sums), max %.3e (float sums; blk.0.attn_q %.3e), "
           "%.0f tokens/s\n", max_rel, mean_rel, max_rel_f32, max_rel_f32_l0q, st.tokens_per_second);
    CHECK(t, max_rel < 5e-4, "max rel diff %.3e", max_rel);
    CHECK(t, mean_rel < 2e-5, "mean rel diff %.3e", mean_rel); /* F32 KV cache: 3.3e-5 */
    CHECK(t, max_rel_f32 < 3e-4, "float sums: max rel diff %.3e", max_rel_f32);
    CHECK(t, max_rel_f32_l0q < 2e-7, "float sums, blk.0.attn_q: max rel diff %.3e", max_rel_f32_l0q);
    qf_imatrix_free(&ours);
    qf_imatrix_free(&oracle);
    qf_calib_free(&cal);
    fixture_free(&fx);
}

/* Cholesky of H + eps*I; returns 1 if positive definite. */
static int cholesky_ok(const double *H, int64_t n, double eps) {
    double *L = calloc((size_t)(n * n), sizeof *L);
    int ok = L != NULL;
    for (int64_t i = 0; ok && i < n; i++)
        for (int64_t j = 0; ok && j <= i; j++) {
            double s = H[i * n + j] + (i == j ? eps : 0.0);
            for (int64_t k = 0; k < j; k++) s -= L[i * n + k] * L[j * n + k];
            if (i == j) {
                if (!(s > 0)) ok = 0;
                else L[i * n + i] = sqrt(s);
            } else {
                L[i * n + j] = s / L[j * n + j];
            }
        }
    free(L);
    return ok;
}

/* imatrix + hessian + absmean in one pass, 2 chunks of 64 tokens. */
static int run_all(qf_test *t, fixture *fx, int threads, qf_calib *cal, qf_calib_acc **im, qf_calib_acc **h,
                   qf_calib_acc **am) {
    qf_err err = {0};
    qf_calib_options o = {.n_threads = threads};
    REQUIRE0(t, qf_calib_init(cal, &fx->m, &o, &err) == 0, "%s", err.msg);
    REQUIRE0(t, qf_calib_imatrix_new(cal, im, &err) == 0 && qf_calib_add(cal, *im, &err) == 0, "%s", err.msg);
    REQUIRE0(t, qf_calib_hessian_new(cal, 0, 1000, h, &err) == 0 && qf_calib_add(cal, *h, &err) == 0, "%s", err.msg);
    REQUIRE0(t, qf_calib_absmean_new(cal, am, &err) == 0 && qf_calib_add(cal, *am, &err) == 0, "%s", err.msg);
    qf_calib_params p = params(fx, 64, 2);
    qf_calib_stats st;
    REQUIRE0(t, qf_calib_run(cal, fx->ids, fx->n_ids, &p, &st, &err) == 0, "%s", err.msg);
    return 1;
}

static void test_hessian_absmean_invariants(qf_test *t) {
    fixture fx;
    if (!fixture_load(t, &fx, ORACLES "/stories260K-F32.gguf")) return;
    qf_calib cal;
    qf_calib_acc *im, *h, *am;
    if (!run_all(t, &fx, 1, &cal, &im, &h, &am)) return;
    qf_err err = {0};
    for (int s = 0; s < cal.n_sites; s++) {
        const qf_calib_site *site = &cal.sites[s];
        const int64_t n = site->n_in;
        double *H = malloc((size_t)(n * n) * sizeof *H);
        int64_t ht = 0, at = 0, it = 0, calls = 0;
        REQUIRE(t, H && qf_calib_hessian_get(h, s, H, &ht, &err) == 0, "%s", err.msg);
        const double *sa = qf_calib_absmean_sum(am, s, &at);
        CHECK(t, ht == 128 && at == 128, "%s: tokens %lld %lld", site->name, (long long)ht, (long long)at);
        int sym = 1, cs = 1, diag = 1, absok = 1;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < n; j++) {
                sym &= H[i * n + j] == H[j * n + i];
                cs &= H[i * n + j] * H[i * n + j] <= H[i * n + i] * H[j * n + j] * (1 + 1e-12);
            }
        for (int w = 0; w < site->n_weights; w++) {
            const double *s2 = qf_calib_imatrix_sum2(im, site->targets[w], &it, &calls);
            REQUIRE(t, s2 && it == 128 && calls == 2, "%s: imatrix tokens %lld calls %lld", site->name, (long long)it,
                    (long long)calls);
            for (int64_t i = 0; i < n; i++) diag &= H[i * n + i] == s2[i];
            /* (sum |x|)^2 <= T sum x^2 */
            for (int64_t i = 0; i < n; i++) absok &= sa[i] >= 0 && sa[i] * sa[i] <= 128.0 * s2[i] * (1 + 1e-12);
        }
        double tr = 0;
        for (int64_t i = 0; i < n; i++) tr += H[i * n + i];
        CHECK(t, sym && cs, "%s: H not symmetric / Cauchy-Schwarz", site->name);
        CHECK(t, diag, "%s: diag(H) != imatrix sums", site->name);
        CHECK(t, absok, "%s: mean |x| vs mean x^2", site->name);
        /* PSD: 128 tokens >= width for every site but ffn_down_in (172), so
         * only the damped matrix is required to be definite */
        CHECK(t, cholesky_ok(H, n, 1e-9 * tr / (double)n), "%s: H + 1e-9 mean(diag) I not positive definite", site->name);
        free(H);
    }
    qf_calib_free(&cal);
    fixture_free(&fx);
}

static void test_thread_count_invariance(qf_test *t) {
    fixture fx;
    if (!fixture_load(t, &fx, ORACLES "/stories260K-F32.gguf")) return;
    qf_calib c1, c2;
    qf_calib_acc *im1, *h1, *am1, *im2, *h2, *am2;
    if (!run_all(t, &fx, 1, &c1, &im1, &h1, &am1)) return;
    if (!run_all(t, &fx, 2, &c2, &im2, &h2, &am2)) return;
    qf_err err = {0};
    int same = 1;
    for (int k = 0; k < c1.n_targets; k++) {
        const double *a = qf_calib_imatrix_sum2(im1, k, NULL, NULL), *b = qf_calib_imatrix_sum2(im2, k, NULL, NULL);
        same &= a && b && memcmp(a, b, (size_t)c1.targets[k].w->n_in * sizeof *a) == 0;
    }
    for (int s = 0; s < c1.n_sites; s++) {
        const int64_t n = c1.sites[s].n_in;
        double *A = malloc((size_t)(n * n) * sizeof *A), *B = malloc((size_t)(n * n) * sizeof *B);
        REQUIRE(t, qf_calib_hessian_get(h1, s, A, NULL, &err) == 0 && qf_calib_hessian_get(h2, s, B, NULL, &err) == 0,
                "%s", err.msg);
        same &= memcmp(A, B, (size_t)(n * n) * sizeof *A) == 0;
        same &= memcmp(qf_calib_absmean_sum(am1, s, NULL), qf_calib_absmean_sum(am2, s, NULL), (size_t)n * sizeof(double)) == 0;
        free(A);
        free(B);
    }
    CHECK(t, same, "1 and 2 threads differ");
    qf_calib_free(&c1);
    qf_calib_free(&c2);
    fixture_free(&fx);
}

/* llama-imatrix's rules: a chunk of 520 tokens runs as 512 + 8, the 8-token
 * call is skipped; text shorter than a chunk is refused. */
static void test_small_batches_and_short_text(qf_test *t) {
    fixture fx;
    if (!fixture_load(t, &fx, ORACLES "/stories260K-F32.gguf")) return;
    qf_err err = {0};
    qf_calib cal;
    qf_calib_acc *acc;
    REQUIRE(t, qf_calib_init(&cal, &fx.m, NULL, &err) == 0, "%s", err.msg);
    REQUIRE(t, qf_calib_imatrix_new(&cal, &acc, &err) == 0 && qf_calib_add(&cal, acc, &err) == 0, "%s", err.msg);
    qf_calib_params p = params(&fx, 520, 2);
    qf_calib_stats st;
    REQUIRE(t, qf_calib_run(&cal, fx.ids, fx.n_ids, &p, &st, &err) == 0, "%s", err.msg);
    int64_t tok = 0, calls = 0;
    qf_calib_imatrix_sum2(acc, 0, &tok, &calls);
    CHECK(t, tok == 1024 && calls == 2, "tokens %lld calls %lld", (long long)tok, (long long)calls);
    CHECK(t, cal.n_calls == 4 * 35 && cal.n_calls_skipped == 2 * 35, "calls %lld skipped %lld", (long long)cal.n_calls,
          (long long)cal.n_calls_skipped);
    p = params(&fx, 512, 0);
    int rc = qf_calib_run(&cal, fx.ids, 511, &p, &st, &err);
    CHECK(t, rc == QF_EINVAL && strstr(err.msg, "511 tokens"), "rc %d: %s", rc, err.msg);
    qf_calib_free(&cal);
    fixture_free(&fx);
}

/* The chunk-order rule (qf_dist.h): a 4-chunk pass's totals equal the
 * 1-chunk passes' totals added in chunk order, bit for bit (imatrix with its
 * counts, Hessian, mean |x|): what lets MPI ranks split the chunks. */
static void test_chunk_order(qf_test *t) {
    fixture fx;
    if (!fixture_load(t, &fx, ORACLES "/stories260K-F32.gguf")) return;
    qf_err err = {0};
    enum { NC = 4, CTX = 64, NA = 3 };
    double *sum[NA] = {0};
    size_t n[NA] = {0};
    int same = 1;
    for (int run = 0; run <= NC; run++) { /* run NC: all chunks at once */
        qf_calib cal;
        qf_calib_acc *a[NA];
        REQUIRE(t, qf_calib_init(&cal, &fx.m, NULL, &err) == 0, "%s", err.msg);
        REQUIRE(t, qf_calib_imatrix_new(&cal, &a[0], &err) == 0 && qf_calib_add(&cal, a[0], &err) == 0 &&
                       qf_calib_hessian_new(&cal, 0, 1000, &a[1], &err) == 0 && qf_calib_add(&cal, a[1], &err) == 0 &&
                       qf_calib_absmean_new(&cal, &a[2], &err) == 0 && qf_calib_add(&cal, a[2], &err) == 0,
                "%s", err.msg);
        qf_calib_params p = params(&fx, CTX, run < NC ? 1 : NC);
        qf_calib_stats st;
        const int32_t *ids = fx.ids + (run < NC ? run * CTX : 0);
        REQUIRE(t, qf_calib_run(&cal, ids, run < NC ? CTX : fx.n_ids, &p, &st, &err) == 0, "%s", err.msg);
        for (int i = 0; i < NA; i++) {
            if (run == 0) {
                n[i] = a[i]->n_part;
                sum[i] = calloc(n[i], sizeof(double));
                REQUIRE(t, sum[i] && n[i] > 0, "alloc");
            }
            if (run < NC)
                for (size_t j = 0; j < n[i]; j++) sum[i][j] += a[i]->total[j];
            else
                same &= memcmp(sum[i], a[i]->total, n[i] * sizeof(double)) == 0;
        }
        qf_calib_free(&cal);
    }
    CHECK(t, same, "a %d-chunk pass differs from its chunks' sums added in order", NC);
    for (int i = 0; i < NA; i++) free(sum[i]);
    fixture_free(&fx);
}

static void test_imatrix_file_round_trips(qf_test *t) {
    fixture fx;
    if (!fixture_load(t, &fx, ORACLES "/stories260K-F32.gguf")) return;
    qf_err err = {0};
    qf_calib cal;
    qf_calib_acc *acc;
    qf_imatrix im, g, d;
    qf_imatrix_init(&im);
    qf_imatrix_init(&g);
    qf_imatrix_init(&d);
    qf_calib_options o = {0};
    REQUIRE(t, qf_calib_init(&cal, &fx.m, &o, &err) == 0, "%s", err.msg);
    REQUIRE(t, qf_calib_imatrix_new(&cal, &acc, &err) == 0 && qf_calib_add(&cal, acc, &err) == 0, "%s", err.msg);
    qf_calib_params p = params(&fx, 128, 3);
    qf_calib_stats st;
    REQUIRE(t, qf_calib_run(&cal, fx.ids, fx.n_ids, &p, &st, &err) == 0, "%s", err.msg);
    REQUIRE(t, qf_calib_imatrix_export(&cal, acc, 3, 128, "wiki.test.raw", &im, &err) == 0, "%s", err.msg);
    char gp[512], dp[512];
    snprintf(gp, sizeof gp, "%s/calib-%ld.gguf", qf_test_tmpdir(), (long)getpid());
    snprintf(dp, sizeof dp, "%s/calib-%ld.dat", qf_test_tmpdir(), (long)getpid());
    REQUIRE(t, qf_imatrix_write_gguf(&im, gp, &err) == 0 && qf_imatrix_write_dat(&im, dp, &err) == 0, "%s", err.msg);
    REQUIRE(t, qf_imatrix_read(&g, gp, &err) == 0 && qf_imatrix_read(&d, dp, &err) == 0, "%s", err.msg);
    CHECK(t, g.n_entries == 35 && d.n_entries == 35 && g.chunk_count == 3 && g.chunk_size == 128 && d.chunk_count == 3,
          "entries %zu %zu chunks %u/%u", g.n_entries, d.n_entries, g.chunk_count, d.chunk_count);
    CHECK(t, g.n_datasets == 1 && !strcmp(g.datasets[0], "wiki.test.raw") && d.n_datasets == 1, "datasets");
    for (size_t i = 0; i < im.n_entries; i++) {
        const qf_imatrix_entry *e = &im.entries[i], *eg = qf_imatrix_find(&g, e->name), *ed = qf_imatrix_find(&d, e->name);
        REQUIRE(t, eg && ed, "%s missing after round trip", e->name);
        CHECK(t, e->ncall == 3 && ed->ncall == 3 && eg->counts[0] == 384.0f, "%s ncall %lld", e->name, (long long)e->ncall);
        CHECK(t, memcmp(e->sum2, eg->sum2, e->n_cols * sizeof(float)) == 0, "%s: gguf sums differ", e->name);
        float w[256], wd[256];
        qf_imatrix_entry_weights(e, w);
        qf_imatrix_entry_weights(ed, wd);
        for (uint32_t j = 0; j < e->n_cols; j++) /* .dat stores mean*ncall: one rounding each way */
            CHECK(t, fabsf(w[j] - wd[j]) <= 2.5e-7f * w[j], "%s[%u]: %g vs %g", e->name, j, w[j], wd[j]);
    }
    unlink(gp);
    unlink(dp);
    qf_imatrix_free(&im);
    qf_imatrix_free(&g);
    qf_imatrix_free(&d);
    qf_calib_free(&cal);
    fixture_free(&fx);
}

/* ------------------------------------------------------------------ */
/* text input: plain, .gz (by magic), JSON Lines */

static int write_file(const char *path, const char *s, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(s, 1, n, f) == n;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

static void test_text_any(qf_test *t) {
    char p[512], gz[512], jl[512], jlgz[512], bad[512];
    const char *tmp = qf_test_tmpdir();
    long pid = (long)getpid();
    snprintf(p, sizeof p, "%s/text-%ld.txt", tmp, pid);
    snprintf(gz, sizeof gz, "%s/text-%ld.bin", tmp, pid); /* gzip without a .gz name */
    snprintf(jl, sizeof jl, "%s/text-%ld.jsonl", tmp, pid);
    snprintf(jlgz, sizeof jlgz, "%s/text-%ld.jsonl.gz", tmp, pid);
    snprintf(bad, sizeof bad, "%s/bad-%ld.jsonl", tmp, pid);
    const char *plain = "Once upon a time\nthere was \"a\" cat.\n";
    const char *jsonl = "{\"text\": \"Once upon a time\\nthere was \\\"a\\\" cat.\", \"id\": 1}\n\n"
                        "  {\"meta\": {\"text\": 0}, \"text\": \"caf\\u00e9\"}\r\n";
    REQUIRE(t, write_file(p, plain, strlen(plain)) == 0 && write_file(jl, jsonl, strlen(jsonl)) == 0, "write");
    REQUIRE(t, write_file(bad, "{\"text\": \"a\"}\n{\"txt\": \"b\"}\n", 27) == 0, "write");
    gzFile g = gzopen(gz, "wb");
    REQUIRE(t, g && gzwrite(g, plain, (unsigned)strlen(plain)) > 0 && gzclose(g) == Z_OK, "gzip");
    g = gzopen(jlgz, "wb");
    REQUIRE(t, g && gzwrite(g, jsonl, (unsigned)strlen(jsonl)) > 0 && gzclose(g) == Z_OK, "gzip");
    qf_err err = {0};
    char *s = NULL;
    size_t n = 0;
    CHECK(t, qf_read_text_any(p, &s, &n, &err) == 0 && n == strlen(plain) && !strcmp(s, plain), "plain: %s", err.msg);
    free(s);
    CHECK(t, qf_read_text_any(gz, &s, &n, &err) == 0 && n == strlen(plain) && !strcmp(s, plain), "gzip: %s", err.msg);
    free(s);
    const char *want = "Once upon a time\nthere was \"a\" cat.\n\ncaf\xc3\xa9";
    CHECK(t, qf_read_text_any(jl, &s, &n, &err) == 0 && n == strlen(want) && !strcmp(s, want), "jsonl: %s", err.msg);
    free(s);
    CHECK(t, qf_read_text_any(jlgz, &s, &n, &err) == 0 && n == strlen(want) && !strcmp(s, want), "jsonl.gz: %s", err.msg);
    free(s);
    qf_err e2 = {0};
    int rc = qf_read_text_any(bad, &s, &n, &e2);
    CHECK(t, rc == QF_EFORMAT && strstr(e2.msg, "line 2") && strstr(e2.msg, "\"text\""), "bad jsonl: %d %s", rc, e2.msg);
    qf_err e3 = {0};
    rc = qf_read_text_any("/nonexistent/x.txt", &s, &n, &e3);
    CHECK(t, rc == QF_EIO && strstr(e3.msg, "/nonexistent/x.txt"), "missing: %d %s", rc, e3.msg);
    unlink(p);
    unlink(gz);
    unlink(jl);
    unlink(jlgz);
    unlink(bad);
}

QF_TEST_MAIN(test_kernels_match_reference, test_chunk_order, test_tables_stories260K, test_matches_llama_imatrix_oracle,
             test_hessian_absmean_invariants, test_thread_count_invariance, test_small_batches_and_short_text,
             test_imatrix_file_round_trips, test_text_any)
