/* budget_test.c - the size-budget allocator against brute force, the
 * sensitivity cache round trip, size parsing, and the measurement on
 * stories260K (quantize/budget.h). */
#include <unistd.h>

#include "budget.h"
#include "convert.h"
#include "ggml_types.h"
#include "qf_test.h"
#include "qf_util.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double rndu(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }

/* A random instance: n tensors, 1..5 candidates each, bytes 1..60 distinct
 * per tensor, errors random but falling with bytes most of the time (so
 * hulls have several points, and some points are dominated or above it). */
static void make_instance(qf_budget_tensor *t, size_t n) {
    for (size_t i = 0; i < n; i++) {
        t[i].name = NULL;
        t[i].n_cand = 1 + rnd() % 5;
        uint64_t b = 1 + rnd() % 8;
        double e = 50 + 50 * rndu();
        for (size_t c = 0; c < t[i].n_cand; c++) {
            t[i].cand[c] = (qf_budget_cand){(uint32_t)c, b, e};
            b += 1 + rnd() % 15;
            e = rnd() % 5 == 0 ? e * (0.9 + 0.3 * rndu()) : e * rndu();
        }
    }
}

typedef struct combo {
    uint64_t bytes;
    double err;
} combo;

static int combo_cmp(const void *a, const void *b) {
    const combo *x = a, *y = b;
    return x->bytes < y->bytes ? -1 : x->bytes > y->bytes;
}

/* opt[B] for B in [0, max_b]: the least summed error of any choice with
 * padded bytes <= B (INFINITY if none), by enumerating every choice. */
static double *brute_force(const qf_budget_tensor *t, size_t n, uint32_t align, uint64_t *max_b) {
    size_t total = 1;
    for (size_t i = 0; i < n; i++) total *= t[i].n_cand;
    combo *cs = malloc(total * sizeof *cs);
    size_t idx[8] = {0};
    for (size_t k = 0; k < total; k++) {
        uint64_t b = 0;
        double e = 0;
        for (size_t i = 0; i < n; i++) {
            b += qf_budget_padded(t[i].cand[idx[i]].bytes, align);
            e += t[i].cand[idx[i]].err;
        }
        cs[k] = (combo){b, e};
        for (size_t i = 0; i < n; i++) {
            if (++idx[i] < t[i].n_cand) break;
            idx[i] = 0;
        }
    }
    qsort(cs, total, sizeof *cs, combo_cmp);
    *max_b = cs[total - 1].bytes;
    double *opt = malloc((*max_b + 1) * sizeof *opt);
    size_t k = 0;
    double best = INFINITY;
    for (uint64_t b = 0; b <= *max_b; b++) {
        while (k < total && cs[k].bytes <= b) {
            if (cs[k].err < best) best = cs[k].err;
            k++;
        }
        opt[b] = best;
    }
    free(cs);
    return opt;
}

static void result_of(const qf_budget_tensor *t, size_t n, const size_t *ch, uint32_t align, uint64_t *bytes,
                      double *err) {
    *bytes = 0;
    *err = 0;
    for (size_t i = 0; i < n; i++) {
        *bytes += qf_budget_padded(t[i].cand[ch[i]].bytes, align);
        *err += t[i].cand[ch[i]].err;
    }
}

/* The largest byte step between neighbours of any tensor (bounds the hull steps). */
static uint64_t max_step(const qf_budget_tensor *t, size_t n, uint32_t align) {
    uint64_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t lo = UINT64_MAX, hi = 0;
        for (size_t c = 0; c < t[i].n_cand; c++) {
            uint64_t b = qf_budget_padded(t[i].cand[c].bytes, align);
            if (b < lo) lo = b;
            if (b > hi) hi = b;
        }
        if (hi - lo > m) m = hi - lo;
    }
    return m;
}

/* For every budget of random instances: the bytes fit, the error is never
 * below the optimum (sanity of the oracle), and it is no worse than the
 * optimum for a budget one tensor's step smaller; the error never rises
 * when the budget grows; below the smallest size it fails with QF_ERANGE. */
static void test_allocator_vs_brute_force(qf_test *t) {
    for (int inst = 0; inst < 300; inst++) {
        qf_budget_tensor ts[6];
        const size_t n = 1 + rnd() % 5;
        const uint32_t align = inst % 3 == 0 ? 4 : 1;
        make_instance(ts, n);
        uint64_t max_b;
        double *opt = brute_force(ts, n, align, &max_b);
        const uint64_t lo = qf_budget_min_bytes(ts, n, align), step = max_step(ts, n, align);
        size_t ch[6];
        CHECK(t, qf_budget_allocate(ts, n, lo - 1, align, ch) == QF_ERANGE, "instance %d", inst);
        double prev = INFINITY;
        for (uint64_t b = lo; b <= max_b + 3; b++) {
            REQUIRE(t, qf_budget_allocate(ts, n, b, align, ch) == 0, "instance %d budget %llu", inst,
                    (unsigned long long)b);
            uint64_t used;
            double e;
            result_of(ts, n, ch, align, &used, &e);
            const double o = opt[b > max_b ? max_b : b];
            CHECK(t, used <= b, "instance %d: %llu bytes > budget %llu", inst, (unsigned long long)used,
                  (unsigned long long)b);
            CHECK(t, e >= o - 1e-9 * (1 + o), "instance %d budget %llu: %g below the optimum %g", inst,
                  (unsigned long long)b, e, o);
            if (b >= lo + step) {
                const double o_step = opt[b - step > max_b ? max_b : b - step];
                CHECK(t, e <= o_step + 1e-9 * (1 + o_step), "instance %d budget %llu: %g > opt(B - %llu) = %g", inst,
                      (unsigned long long)b, e, (unsigned long long)step, o_step);
            }
            CHECK(t, e <= prev + 1e-9 * (1 + prev), "instance %d budget %llu: error %g rose from %g", inst,
                  (unsigned long long)b, e, prev);
            prev = e;
        }
        CHECK(t, prev <= opt[max_b] + 1e-9 * (1 + opt[max_b]), "instance %d: all bytes, %g vs %g", inst, prev,
              opt[max_b]);
        free(opt);
    }
}

/* At a Lagrangian budget (each tensor independently minimises err + lambda x
 * bytes; the budget is the sum of those bytes) the allocation is exactly
 * optimal: its error equals the brute-force optimum. */
static void test_allocator_exact_at_lagrangian_budgets(qf_test *t) {
    int checked = 0;
    for (int inst = 0; inst < 300; inst++) {
        qf_budget_tensor ts[6];
        const size_t n = 1 + rnd() % 5;
        make_instance(ts, n);
        uint64_t max_b;
        double *opt = brute_force(ts, n, 1, &max_b);
        for (int k = 0; k < 8; k++) {
            const double lambda = exp(-4 + 8 * rndu());
            uint64_t b = 0;
            for (size_t i = 0; i < n; i++) {
                size_t best = 0;
                for (size_t c = 1; c < ts[i].n_cand; c++)
                    if (ts[i].cand[c].err + lambda * (double)ts[i].cand[c].bytes <
                        ts[i].cand[best].err + lambda * (double)ts[i].cand[best].bytes)
                        best = c;
                b += ts[i].cand[best].bytes;
            }
            size_t ch[6];
            REQUIRE(t, qf_budget_allocate(ts, n, b, 1, ch) == 0, "instance %d", inst);
            uint64_t used;
            double e;
            result_of(ts, n, ch, 1, &used, &e);
            CHECK(t, fabs(e - opt[b]) <= 1e-9 * (1 + opt[b]), "instance %d lambda %g budget %llu: %g, optimum %g",
                  inst, lambda, (unsigned long long)b, e, opt[b]);
            checked++;
        }
        free(opt);
    }
    CHECK(t, checked == 2400, "%d", checked);
}

/* Ties and degenerate tensors: one candidate, equal bytes, equal errors. */
static void test_allocator_degenerate(qf_test *t) {
    qf_budget_tensor ts[3] = {{.n_cand = 1, .cand = {{0, 10, 5.0}}},
                              {.n_cand = 3, .cand = {{0, 4, 9.0}, {1, 4, 3.0}, {2, 8, 3.0}}},
                              {.n_cand = 2, .cand = {{0, 6, 1.0}, {1, 9, 1.0}}}};
    size_t ch[3];
    CHECK(t, qf_budget_min_bytes(ts, 3, 1) == 20, "%llu", (unsigned long long)qf_budget_min_bytes(ts, 3, 1));
    REQUIRE(t, qf_budget_allocate(ts, 3, 100, 1, ch) == 0, "alloc");
    CHECK(t, ch[0] == 0 && ch[1] == 1 && ch[2] == 0, "%zu %zu %zu: dominated points must not be taken", ch[0], ch[1],
          ch[2]);
    CHECK(t, qf_budget_padded(33, 32) == 64 && qf_budget_padded(64, 32) == 64 && qf_budget_padded(7, 1) == 7, "pad");
}

static void test_cache_round_trip(qf_test *t) {
    char path[] = "/tmp/qf-budget-test.XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(t, fd >= 0, "mkstemp");
    close(fd);
    qf_budget_tensor ts[2] = {{.name = "blk.0.attn_q.weight", .n_elements = 4096, .n_cand = 2,
                               .cand = {{GGML_TYPE_Q4_0, 2304, 0.125}, {GGML_TYPE_Q8_0, 4352, 1.0 / 3}}},
                              {.name = "output.weight", .n_elements = 256, .n_cand = 1,
                               .cand = {{GGML_TYPE_F16, 512, 0}}}};
    qf_sensitivity s = {.key = "0123456789abcdef0123456789abcdef", .n = 2, .t = ts, .fixed_bytes = 96,
                        .fixed_raw = 80, .n_elements = 4372};
    qf_err err;
    REQUIRE(t, qf_sensitivity_save(&s, path, &err) == 0, "%s", err.msg);
    qf_sensitivity r;
    REQUIRE(t, qf_sensitivity_load(&r, path, s.key, &err) == 0, "%s", err.msg);
    CHECK(t, r.n == 2 && r.fixed_bytes == 96 && r.fixed_raw == 80 && r.n_elements == 4372, "totals");
    for (size_t i = 0; i < 2 && r.n == 2; i++) {
        CHECK(t, !strcmp(r.t[i].name, ts[i].name) && r.t[i].n_cand == ts[i].n_cand, "tensor %zu", i);
        for (size_t c = 0; c < ts[i].n_cand; c++)
            CHECK(t, r.t[i].cand[c].type == ts[i].cand[c].type && r.t[i].cand[c].bytes == ts[i].cand[c].bytes &&
                         r.t[i].cand[c].err == ts[i].cand[c].err,
                  "tensor %zu cand %zu: the error must survive bit for bit", i, c);
    }
    qf_sensitivity_free(&r);
    CHECK(t, qf_sensitivity_load(&r, path, "ffffffffffffffffffffffffffffffff", &err) == QF_ENOTFOUND, "other key");
    FILE *f = fopen(path, "r+");
    REQUIRE(t, f, "reopen");
    fseek(f, -8, SEEK_END);
    fputs("garbage\n", f);
    fclose(f);
    CHECK(t, qf_sensitivity_load(&r, path, s.key, &err) == QF_EFORMAT, "garbled");
    unlink(path);
    CHECK(t, qf_sensitivity_load(&r, path, s.key, &err) == QF_ENOTFOUND, "absent");
}

/* Every truncation and many single-byte corruptions of a valid sidecar load
 * cleanly or fail with QF_EFORMAT / QF_ENOTFOUND (no crash, nothing half
 * filled: a failed load leaves an empty struct). */
static void test_cache_corrupt(qf_test *t) {
    char path[] = "/tmp/qf-budget-corrupt.XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(t, fd >= 0, "mkstemp");
    close(fd);
    qf_budget_tensor ts[2] = {{.name = "blk.0.ffn_up.weight", .n_elements = 8192, .n_cand = 3,
                               .cand = {{GGML_TYPE_Q2_K, 2688, 9.5}, {GGML_TYPE_Q4_K, 4608, 1.25},
                                        {GGML_TYPE_Q8_0, 8704, 0.01}}},
                              {.name = "output.weight", .n_elements = 256, .n_cand = 1,
                               .cand = {{GGML_TYPE_F16, 512, 0}}}};
    qf_sensitivity s = {.key = "00112233445566778899aabbccddeeff", .n = 2, .t = ts, .n_elements = 8448};
    qf_err err;
    REQUIRE(t, qf_sensitivity_save(&s, path, &err) == 0, "%s", err.msg);
    uint8_t *buf;
    uint64_t size;
    REQUIRE(t, qf_read_file(path, &buf, &size, &err) == 0, "%s", err.msg);
    int n_ok = 0, n_bad = 0;
    for (uint64_t cut = 0; cut <= size; cut++) {
        for (int flip = -1; flip < 3; flip++) {
            FILE *f = fopen(path, "w");
            REQUIRE(t, f, "rewrite");
            fwrite(buf, 1, (size_t)cut, f);
            fclose(f);
            if (flip >= 0 && cut > 0) { /* corrupt one byte of the prefix */
                f = fopen(path, "r+");
                const uint64_t at = (rnd() % cut);
                fseek(f, (long)at, SEEK_SET);
                static const char junk[3] = {'9', ' ', '\n'};
                fputc(junk[flip], f);
                fclose(f);
            }
            qf_sensitivity r;
            int rc = qf_sensitivity_load(&r, path, s.key, &err);
            CHECK(t, rc == 0 || rc == QF_EFORMAT || rc == QF_ENOTFOUND, "cut %llu flip %d: rc %d",
                  (unsigned long long)cut, flip, rc);
            if (rc == 0) {
                n_ok++;
                for (size_t i = 0; i < r.n; i++)
                    CHECK(t, r.t[i].n_cand >= 1 && r.t[i].n_cand <= QF_BUDGET_MAX_CAND, "cand count");
                qf_sensitivity_free(&r);
            } else {
                n_bad++;
                CHECK(t, r.n == 0 && r.t == NULL, "a failed load leaves an empty struct");
            }
        }
    }
    /* a cut file never loads: only the whole file (with or without a harmless flip) does */
    CHECK(t, n_ok >= 1 && n_ok <= 4 && n_bad > (int)size, "ok %d, refused %d", n_ok, n_bad);
    free(buf);
    unlink(path);
}

/* general.file_type: llama.cpp's guess from the type most tensors have. */
static void test_file_type(qf_test *t) {
    qf_budget_tensor ts[3] = {{.n_cand = 2, .cand = {{GGML_TYPE_Q4_K, 1, 0}, {GGML_TYPE_Q6_K, 2, 0}}},
                              {.n_cand = 2, .cand = {{GGML_TYPE_Q4_K, 1, 0}, {GGML_TYPE_Q6_K, 2, 0}}},
                              {.n_cand = 2, .cand = {{GGML_TYPE_Q3_K, 1, 0}, {GGML_TYPE_Q6_K, 2, 0}}}};
    size_t ch[3] = {0, 0, 1};
    CHECK(t, qf_budget_file_type(ts, 3, ch) == QF_FTYPE_MOSTLY_Q4_K_M, "Q4_K majority");
    size_t ch2[3] = {1, 1, 0};
    CHECK(t, qf_budget_file_type(ts, 3, ch2) == QF_FTYPE_MOSTLY_Q6_K, "Q6_K majority");
    size_t ch3[3] = {1, 0, 0};
    CHECK(t, qf_budget_file_type(ts, 3, ch3) == QF_FTYPE_MOSTLY_Q3_K_M, "tie: the lower type id (Q3_K) first");
}

/* On stories260K: every tensor has candidates in bytes order; the error falls
 * as the bits rise within the legacy types (Q4_0 > Q5_0 > Q8_0, Q4_1 > Q5_1 >
 * Q8_0) and the K-quants where the rows fit them (Q2_K > .. > Q6_K > Q8_0);
 * F16 is below Q8_0. */
static void test_measure_stories260k(qf_test *t) {
    char dir[4096];
    if (!qf_test_data(t, "models/stories260K", dir, sizeof dir)) return;
    char gguf[] = "/tmp/qf-budget-s260.XXXXXX";
    int fd = mkstemp(gguf);
    REQUIRE(t, fd >= 0, "mkstemp");
    close(fd);
    qf_err err;
    qf_convert_opts co;
    memset(&co, 0, sizeof co);
    co.model_dir = dir;
    co.out_path = gguf;
    co.outtype = QF_OUTTYPE_AUTO;
    if (qf_convert(&co, NULL, &err)) {
        unlink(gguf);
        REQUIRE(t, 0, "convert: %s", err.msg);
    }
    gguf_file in;
    REQUIRE(t, gguf_open(&in, gguf, &err) == 0, "%s", err.msg);
    qf_sensitivity s;
    int rc = qf_sensitivity_measure(&s, &in, NULL, QF_QUANT_METHOD_EXACT, qf_quant_preset_find("Q4_K_M"), 2, &err);
    gguf_close(&in);
    unlink(gguf);
    REQUIRE(t, rc == 0, "%s", err.msg);
    CHECK(t, s.n > 0, "no tensors");
    int n_checked = 0;
    for (size_t i = 0; i < s.n; i++) {
        const qf_budget_tensor *bt = &s.t[i];
        double e[GGML_TYPE_COUNT];
        for (size_t k = 0; k < GGML_TYPE_COUNT; k++) e[k] = -1;
        for (size_t c = 0; c < bt->n_cand; c++) {
            if (c) CHECK(t, bt->cand[c].bytes >= bt->cand[c - 1].bytes, "%s: bytes order", bt->name);
            CHECK(t, bt->cand[c].err >= 0 && isfinite(bt->cand[c].err), "%s", bt->name);
            e[bt->cand[c].type] = bt->cand[c].err;
        }
        CHECK(t, e[GGML_TYPE_F16] >= 0, "%s: F16 fits every row", bt->name);
        /* pairs (more bits, fewer bits) where both fit the rows */
        static const uint32_t pairs[][2] = {
            {GGML_TYPE_F16, GGML_TYPE_Q8_0},  {GGML_TYPE_Q8_0, GGML_TYPE_Q5_0}, {GGML_TYPE_Q5_0, GGML_TYPE_Q4_0},
            {GGML_TYPE_Q8_0, GGML_TYPE_Q5_1}, {GGML_TYPE_Q5_1, GGML_TYPE_Q4_1}, {GGML_TYPE_Q8_0, GGML_TYPE_Q6_K},
            {GGML_TYPE_Q6_K, GGML_TYPE_Q5_K}, {GGML_TYPE_Q5_K, GGML_TYPE_Q4_K}, {GGML_TYPE_Q4_K, GGML_TYPE_Q3_K},
            {GGML_TYPE_Q3_K, GGML_TYPE_Q2_K},
        };
        for (size_t p = 0; p < sizeof pairs / sizeof *pairs; p++) {
            const double hi = e[pairs[p][0]], lo = e[pairs[p][1]];
            if (hi < 0 || lo < 0) continue;
            CHECK(t, hi < lo, "%s: %s error %g not below %s's %g", bt->name, ggml_get_type_traits(pairs[p][0])->name,
                  hi, ggml_get_type_traits(pairs[p][1])->name, lo);
            n_checked++;
        }
    }
    CHECK(t, n_checked > 2 * s.n, "%d pairs checked for %zu tensors", n_checked, s.n);
    qf_sensitivity_free(&s);
}

QF_TEST_MAIN(test_allocator_vs_brute_force, test_allocator_exact_at_lagrangian_budgets, test_allocator_degenerate,
             test_cache_round_trip, test_cache_corrupt, test_file_type, test_measure_stories260k)
