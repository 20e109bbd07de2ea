/* kquant_test.c - K-quant / importance-weighted quantizers and imatrix files.
 *
 * Oracles (llama.cpp c392e50 outputs in $QF_DATA/oracles/llamacpp, see its
 * PROVENANCE.md): every tensor of the synth-tinyk K-quant files and of the
 * stories260K imatrix-quantized files must come out byte-identical. The rest
 * are invariants: AVX2 == scalar, thread-count independence, weighting
 * lowers the weighted error, imatrix file round trips. */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_types.h"
#include "gguf.h"
#include "imatrix.h"
#include "numfmt.h"
#include "codecs.h"
#include "codec_kernels.h"
#include "qf_test.h"
#include "qf_test_blocks.h"

#define ORACLES "oracles/llamacpp"

/* ---------------------------------------------------------------- helpers */

typedef qf_test_rng rng;

static const uint32_t QUANT_TYPES[] = {
    GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0, GGML_TYPE_Q2_K,
    GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_Q8_K,
};
#define N_QUANT_TYPES (sizeof QUANT_TYPES / sizeof QUANT_TYPES[0])


/* First differing byte, or -1. */
static int64_t first_diff(const void *a, const void *b, size_t n) {
    const uint8_t *x = a, *y = b;
    for (size_t i = 0; i < n; ++i)
        if (x[i] != y[i]) return (int64_t)i;
    return -1;
}

/* Tensor data as float (F32/F16/BF16). Caller frees. */
static float *tensor_as_f32(const gguf_tensor_info *t) {
    float *out = malloc(t->n_elements * sizeof(float));
    if (!out) return NULL;
    switch (t->type) {
    case GGML_TYPE_F32: memcpy(out, t->data, t->n_elements * sizeof(float)); break;
    case GGML_TYPE_F16: qf_f16_to_f32_row((const uint16_t *)t->data, out, t->n_elements); break;
    case GGML_TYPE_BF16: qf_bf16_to_f32_row((const uint16_t *)t->data, out, t->n_elements); break;
    default: free(out); return NULL;
    }
    return out;
}

/* The branch-free IQ4_NL level lookup gives the bisection's index (the
 * spec) for every float; all 2^32 are compared by
 * build/tools/iq4nl_nearest_exhaustive (30 s, not in make check), here: the midpoints and levels and 64 floats on each side of them, random
 * bit patterns, random values over the table range, and the special values. */
static void test_iq4_nl_nearest_equals_ref(qf_test *t) {
    long bad = 0, n = 0;
    float first_bad = 0.f;
#define IQ4_CHECK(v)                                                                     \
    do {                                                                                 \
        const float v_ = (v);                                                            \
        n++;                                                                             \
        if (qf_iq4_nl_nearest(v_) != qf_iq4_nl_nearest_ref(v_) && bad++ == 0) first_bad = v_; \
    } while (0)
    for (int i = 0; i < 15; ++i)
        CHECK(t, qf_iq4_nl_midpoints[i] == 0.5f * (float)(kvalues_iq4nl[i] + kvalues_iq4nl[i + 1]),
              "midpoint %d is %g", i, qf_iq4_nl_midpoints[i]);
    for (int i = 0; i < 31; ++i) {
        const float c = i % 2 ? qf_iq4_nl_midpoints[i / 2] : (float)kvalues_iq4nl[i / 2];
        for (int s = -1; s <= 1; s += 2) {
            float v = c;
            for (int k = 0; k <= 64; ++k, v = nextafterf(v, s * INFINITY)) IQ4_CHECK(v);
        }
    }
    qf_test_rng r = { 0x1234567ull };
    for (int k = 0; k < 1000000; ++k) {
        uint32_t b = (uint32_t)qf_test_rng_u64(&r);
        float v;
        memcpy(&v, &b, sizeof v);
        IQ4_CHECK(v);
        IQ4_CHECK(280.f * qf_test_rng_unif(&r) - 140.f);
    }
    const float special[] = { 0.f, -0.f, INFINITY, -INFINITY, NAN, -NAN, FLT_MAX, -FLT_MAX, FLT_MIN, -FLT_MIN,
                              1e-45f, -1e-45f, 127.f, -128.f, 113.f, 200.f };
    for (size_t k = 0; k < sizeof special / sizeof *special; ++k) IQ4_CHECK(special[k]);
#undef IQ4_CHECK
    CHECK(t, bad == 0, "%ld of %ld values differ from the bisection (first: %a)", bad, n, first_bad);
}

/* --------------------------------------------------------------- basics */

static void test_nearest_int_is_round_half_even(qf_test *t) {
    const float in[] = { 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 0.49999997f, 3.7f, -3.7f, 4194303.f, -4194303.f };
    const int want[] = { 0, 2, 2, 0, -2, -2, 0, 4, -4, 4194303, -4194303 };
    for (size_t i = 0; i < sizeof in / sizeof in[0]; ++i)
        CHECK(t, qk_nearest_int(in[i]) == want[i], "nearest_int(%g) = %d, want %d", (double)in[i],
              qk_nearest_int(in[i]), want[i]);
}

static void test_entry_errors(qf_test *t) {
    float x[512] = { 0 };
    uint8_t y[4096];
    CHECK(t, qf_quantize_rows(GGML_TYPE_TQ1_0, x, y, 1, 256, NULL) == QF_EUNSUPPORTED, "tq1_0 unsupported");
    CHECK(t, qf_quantize_rows(GGML_TYPE_IQ2_XXS, x, y, 1, 256, NULL) == QF_EINVAL, "iq2_xxs without imatrix");
    CHECK(t, qf_quantize_rows(GGML_TYPE_Q4_K, x, y, 1, 128, NULL) == QF_EINVAL, "row of 128 for q4_K");
    CHECK(t, qf_quantize_rows(GGML_TYPE_Q4_0, x, y, 1, 48, NULL) == QF_EINVAL, "row of 48 for q4_0");
    CHECK(t, qf_quantize_rows(GGML_TYPE_Q4_0, x, y, -1, 32, NULL) == QF_EINVAL, "negative rows");
    CHECK(t, qf_quantize_rows(GGML_TYPE_Q6_K, x, y, 2, 256, NULL) == 2 * 210, "q6_K returns bytes");
    CHECK(t, qf_quantize_rows(GGML_TYPE_Q4_0, x, y, 0, 32, NULL) == 0, "zero rows");
    CHECK(t, qf_quantize_requires_imatrix(GGML_TYPE_IQ2_XS) && !qf_quantize_requires_imatrix(GGML_TYPE_Q2_K),
          "requires_imatrix");
    CHECK(t, !qf_quantize_uses_imatrix(GGML_TYPE_Q8_0) && qf_quantize_uses_imatrix(GGML_TYPE_Q6_K),
          "uses_imatrix: ggml ignores it for q8_0 only among ours");
}

/* ------------------------------------------------ fast path == reference */

static void test_fast_kernels_equal_scalar(qf_test *t) {
    rng r = { 0x9e3779b97f4a7c15ull };
    const int64_t nrows = 40, n = 1024;
    float *x = malloc(nrows * n * sizeof(float)), *qw = malloc(n * sizeof(float));
    uint8_t *a = malloc(nrows * qf_test_row_bytes(GGML_TYPE_Q8_K, n)), *b = malloc(nrows * qf_test_row_bytes(GGML_TYPE_Q8_K, n));
    REQUIRE(t, x && qw && a && b, "alloc");
    qf_test_awkward_rows(&r, x, nrows, n, 0);
    int compared = 0;
    for (int pass = 0; pass < 3; ++pass) {
        qf_test_imatrix(&r, qw, n, pass == 2);
        for (size_t ti = 0; ti < N_QUANT_TYPES; ++ti) {
            const uint32_t type = QUANT_TYPES[ti];
            const float *im = pass == 0 ? NULL : qw;
            const size_t nb = nrows * qf_test_row_bytes(type, n);
            memset(a, 0x55, nb);
            memset(b, 0xAA, nb);
            int64_t ra = qf_quantize_rows(type, x, a, nrows, n, im);
            int64_t rb = qf_quantize_rows_ref(type, x, b, nrows, n, im);
            CHECK(t, ra == (int64_t)nb && rb == (int64_t)nb, "%s: returned %lld/%lld, want %zu",
                  ggml_get_type_traits(type)->name, (long long)ra, (long long)rb, nb);
            int64_t d = first_diff(a, b, nb);
            CHECK(t, d < 0, "%s pass %d (%s kernels): fast differs from scalar at byte %lld",
                  ggml_get_type_traits(type)->name, pass, qf_quantize_kernel_name(), (long long)d);
            compared++;
        }
    }
    /* the public single-row functions are the same code as the generic entry */
    qf_test_imatrix(&r, qw, n, 0);
    block_q4_K q4k[4];
    block_q6_K q6k[4];
    block_q3_K q3k[4];
    block_q4_1 q41[32];
    qf_quantize_row_q4_K_imat(x + n, q4k, n, qw);
    qf_quantize_rows(GGML_TYPE_Q4_K, x + n, a, 1, n, qw);
    CHECK(t, memcmp(a, q4k, sizeof q4k) == 0, "q4_K _imat row");
    quantize_row_q6_K_ref(x + 2 * n, q6k, n);
    qf_quantize_rows(GGML_TYPE_Q6_K, x + 2 * n, a, 1, n, NULL);
    CHECK(t, memcmp(a, q6k, sizeof q6k) == 0, "q6_K _ref row");
    quantize_row_q3_K_ref(x + 3 * n, q3k, n);
    qf_quantize_rows(GGML_TYPE_Q3_K, x + 3 * n, a, 1, n, NULL);
    CHECK(t, memcmp(a, q3k, sizeof q3k) == 0, "q3_K _ref row");
    qf_quantize_row_q4_1_imat(x + 7 * n, q41, n, qw);
    qf_quantize_rows(GGML_TYPE_Q4_1, x + 7 * n, a, 1, n, qw);
    CHECK(t, memcmp(a, q41, sizeof q41) == 0, "q4_1 _imat row");
    printf("  fast(%s) == scalar: %d type/imatrix combinations x %lld rows of %lld\n", qf_quantize_kernel_name(),
           compared, (long long)nrows, (long long)n);
    free(x); free(qw); free(a); free(b);
}

static void test_thread_count_does_not_change_bytes(qf_test *t) {
    rng r = { 12345 };
    const int64_t nrows = 37, n = 512;
    float *x = malloc(nrows * n * sizeof(float)), qw[512];
    size_t cap = nrows * qf_test_row_bytes(GGML_TYPE_Q8_K, n);
    uint8_t *ref = malloc(cap), *got = malloc(cap);
    REQUIRE(t, x && ref && got, "alloc");
    qf_test_awkward_rows(&r, x, nrows, n, 0);
    qf_test_imatrix(&r, qw, n, 1);
    for (size_t ti = 0; ti < N_QUANT_TYPES; ++ti) {
        const uint32_t type = QUANT_TYPES[ti];
        const size_t nb = nrows * qf_test_row_bytes(type, n);
        qf_quantize_rows(type, x, ref, nrows, n, qw);
        for (int nt = 2; nt <= 3; ++nt) {
            memset(got, 0, nb);
            qf_quantize_rows_mt(type, x, got, nrows, n, qw, nt);
            CHECK(t, memcmp(ref, got, nb) == 0, "%s: %d threads differ from 1 thread",
                  ggml_get_type_traits(type)->name, nt);
        }
    }
    free(x); free(ref); free(got);
}

/* ------------------------------------------------------------ invariants */

static double weighted_err(uint32_t type, const float *x, const void *q, int64_t nrows, int64_t n, const float *qw) {
    float *y = malloc(n * sizeof(float));
    double e = 0;
    for (int64_t row = 0; row < nrows; ++row) {
        qf_dequantize_row_ref(type, (const uint8_t *)q + row * qf_test_row_bytes(type, n), y, n);
        for (int64_t j = 0; j < n; ++j) {
            double d = (double)x[row * n + j] - y[j];
            e += qw[j] * d * d;
        }
    }
    free(y);
    return e;
}

static void test_imatrix_lowers_weighted_error(qf_test *t) {
    rng r = { 777 };
    const int64_t nrows = 64, n = 512;
    float *x = malloc(nrows * n * sizeof(float)), qw[512];
    uint8_t *q = malloc(nrows * qf_test_row_bytes(GGML_TYPE_Q8_K, n));
    REQUIRE(t, x && q, "alloc");
    for (int64_t i = 0; i < nrows * n; ++i) x[i] = qf_test_rng_gauss(&r) * 0.02f;
    qf_test_imatrix(&r, qw, n, 0);
    for (size_t ti = 0; ti < N_QUANT_TYPES; ++ti) {
        const uint32_t type = QUANT_TYPES[ti];
        if (!qf_quantize_uses_imatrix(type)) continue;
        qf_quantize_rows(type, x, q, nrows, n, NULL);
        double plain = weighted_err(type, x, q, nrows, n, qw);
        qf_quantize_rows(type, x, q, nrows, n, qw);
        double weighted = weighted_err(type, x, q, nrows, n, qw);
        printf("  %-5s weighted sq. error: plain %.4e, with imatrix %.4e (%.1f%%)\n", ggml_get_type_traits(type)->name,
               plain, weighted, 100.0 * (weighted / plain - 1));
        CHECK(t, weighted < 0.95 * plain, "%s: imatrix did not lower the weighted error (%g vs %g)",
              ggml_get_type_traits(type)->name, weighted, plain);
    }
    /* and the quantizers are quantizers: plain relative rms error bounds */
    static const struct { uint32_t type; double max_rel; } bound[] = {
        { GGML_TYPE_Q2_K, 0.45 }, { GGML_TYPE_Q3_K, 0.22 }, { GGML_TYPE_Q4_K, 0.11 },
        { GGML_TYPE_Q5_K, 0.055 }, { GGML_TYPE_Q6_K, 0.03 }, { GGML_TYPE_Q8_K, 0.01 },
    };
    float ones[512];
    for (int j = 0; j < 512; ++j) ones[j] = 1.f;
    double energy = 0;
    for (int64_t i = 0; i < nrows * n; ++i) energy += (double)x[i] * x[i];
    for (size_t i = 0; i < sizeof bound / sizeof bound[0]; ++i) {
        qf_quantize_rows(bound[i].type, x, q, nrows, n, NULL);
        double rel = sqrt(weighted_err(bound[i].type, x, q, nrows, n, ones) / energy);
        CHECK(t, rel < bound[i].max_rel, "%s relative rms error %.4f > %.4f", ggml_get_type_traits(bound[i].type)->name,
              rel, bound[i].max_rel);
    }
    free(x); free(q);
}

static void test_q8_K_block_sums(qf_test *t) {
    rng r = { 99 };
    float x[512], y[512];
    block_q8_K b[2];
    for (int i = 0; i < 512; ++i) x[i] = qf_test_rng_gauss(&r);
    quantize_row_q8_K_ref(x, b, 512);
    dequantize_row_q8_K_ref(b, y, 512);
    for (int blk = 0; blk < 2; ++blk)
        for (int j = 0; j < 16; ++j) {
            int s = 0;
            for (int i = 0; i < 16; ++i) s += b[blk].qs[16 * j + i];
            CHECK(t, s == b[blk].bsums[j], "bsums[%d][%d]", blk, j);
        }
    double e = 0, s = 0;
    for (int i = 0; i < 512; ++i) { e += (x[i] - y[i]) * (x[i] - y[i]); s += x[i] * x[i]; }
    CHECK(t, sqrt(e / s) < 0.01, "q8_K rel error %g", sqrt(e / s));
}

/* All-zero importance for a whole row (an input column range no token ever
 * used) and all-zero rows must give finite blocks. llama-quantize at c392e50
 * writes a NaN super-block scale for a zero-weight K-quant super-block (and
 * then refuses the file); qforge writes scale 0 like newer ggml. */
static void test_degenerate_rows_stay_finite(qf_test *t) {
    rng r = { 4242 };
    const int64_t n = 512;
    float x[3 * 512], qw[512], y[512];
    uint8_t q[3 * 2 * 292];
    for (int64_t j = 0; j < n; ++j) {
        x[j] = qf_test_rng_gauss(&r);
        x[n + j] = 0.f;
        x[2 * n + j] = 1e-25f * qf_test_rng_gauss(&r);
        qw[j] = 0.f;
    }
    for (size_t ti = 0; ti < N_QUANT_TYPES; ++ti) {
        const uint32_t type = QUANT_TYPES[ti];
        for (int im = 0; im < 2; ++im) {
            int64_t got = qf_quantize_rows(type, x, q, 3, n, im ? qw : NULL);
            REQUIRE(t, got == 3 * (int64_t)qf_test_row_bytes(type, n), "%s size", ggml_get_type_traits(type)->name);
            for (int row = 0; row < 3; ++row) {
                qf_dequantize_row_ref(type, q + row * qf_test_row_bytes(type, n), y, n);
                int finite = 1;
                for (int64_t j = 0; j < n; ++j) finite &= isfinite(y[j]) != 0;
                CHECK(t, finite, "%s%s row %d: non-finite output", ggml_get_type_traits(type)->name,
                      im ? " (zero imatrix)" : "", row);
                if (row == 1)
                    for (int64_t j = 0; j < n; ++j) CHECK(t, y[j] == 0.f, "zero row must decode to 0");
            }
        }
    }
}

/* ---------------------------------------------------------------- oracles */

/* Quantize every tensor of `ref` from the same-named tensor of `src` (widened
 * to f32) to ref's type, with the imatrix weights when `im` has an entry, and
 * compare bytes. Returns tensors compared; *n2d counts 2-d ones; *bad the
 * mismatches; *n_imat those that used imatrix weights. */
static int compare_file(qf_test *t, const gguf_file *src, const gguf_file *ref, const qf_imatrix *im, int use_ref,
                        int *n2d, int *bad, int *n_imat) {
    int compared = 0;
    *n2d = *bad = *n_imat = 0;
    for (uint64_t i = 0; i < ref->n_tensors; ++i) {
        const gguf_tensor_info *rt = &ref->tensors[i];
        const gguf_tensor_info *st = gguf_find_tensor(src, rt->name);
        CHECK(t, st != NULL, "%s missing in source", rt->name);
        if (!st) continue;
        CHECK(t, st->n_elements == rt->n_elements && st->ne[0] == rt->ne[0], "%s shape differs", rt->name);
        float *x = tensor_as_f32(st);
        uint8_t *q = malloc(rt->nbytes);
        float *w = NULL;
        if (!x || !q) {
            CHECK(t, 0, "%s: cannot load", rt->name);
            free(x); free(q);
            continue;
        }
        const int64_t n = (int64_t)rt->ne[0], nrows = (int64_t)(rt->n_elements / rt->ne[0]);
        if (im && qf_imatrix_find(im, rt->name)) {
            w = malloc(n * sizeof(float));
            int rc = qf_imatrix_weights_for(im, rt->name, (uint64_t)n, 1, w, NULL);
            CHECK(t, rc == 0, "%s: imatrix weights rc %d", rt->name, rc);
            if (qf_quantize_uses_imatrix(rt->type)) (*n_imat)++;
        }
        int64_t got = use_ref ? qf_quantize_rows_ref(rt->type, x, q, nrows, n, w)
                              : qf_quantize_rows(rt->type, x, q, nrows, n, w);
        CHECK(t, got == (int64_t)rt->nbytes, "%s: quantized %lld bytes, oracle has %llu", rt->name, (long long)got,
              (unsigned long long)rt->nbytes);
        int64_t d = got == (int64_t)rt->nbytes ? first_diff(q, rt->data, rt->nbytes) : 0;
        if (d >= 0) {
            (*bad)++;
            CHECK(t, 0, "%s (%s, %s): first differing byte %lld of %llu", rt->name, ggml_get_type_traits(rt->type)->name,
                  use_ref ? "scalar" : "fast", (long long)d, (unsigned long long)rt->nbytes);
        }
        compared++;
        if (rt->n_dims == 2) (*n2d)++;
        free(x); free(q); free(w);
    }
    return compared;
}

static int count_2d(const gguf_file *f) {
    int n = 0;
    for (uint64_t i = 0; i < f->n_tensors; ++i) n += f->tensors[i].n_dims == 2;
    return n;
}

static void test_oracle_synth_kquants(qf_test *t) {
    char src_path[1024], ref_path[1024];
    if (!qf_test_data(t, ORACLES "/synth-tinyk-F16.gguf", src_path, sizeof src_path)) return;
    static const char *files[] = { "Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K" };
    gguf_file src;
    qf_err err = { 0 };
    REQUIRE(t, gguf_open(&src, src_path, &err) == 0, "%s", err.msg);
    for (size_t fi = 0; fi < sizeof files / sizeof files[0]; ++fi) {
        char rel[256];
        snprintf(rel, sizeof rel, ORACLES "/synth-tinyk-%s.gguf", files[fi]);
        if (!qf_test_data(t, rel, ref_path, sizeof ref_path)) break;
        gguf_file ref;
        REQUIRE(t, gguf_open(&ref, ref_path, &err) == 0, "%s", err.msg);
        int types[GGML_TYPE_COUNT] = { 0 };
        for (uint64_t i = 0; i < ref.n_tensors; ++i) types[ref.tensors[i].type]++;
        for (int pass = 0; pass < 2; ++pass) {
            int n2d, bad, n_imat;
            int n = compare_file(t, &src, &ref, NULL, pass, &n2d, &bad, &n_imat);
            CHECK(t, n2d == count_2d(&ref) && n == (int)ref.n_tensors, "%s: compared %d of %llu tensors", files[fi], n,
                  (unsigned long long)ref.n_tensors);
            if (pass == 0) {
                printf("  synth-tinyk-%-6s: %d/%d 2-d tensors byte-identical (", files[fi], n2d - bad, count_2d(&ref));
                for (int ty = 0; ty < GGML_TYPE_COUNT; ++ty)
                    if (types[ty] && ty != GGML_TYPE_F32) printf(" %s:%d", ggml_get_type_traits(ty)->name, types[ty]);
                printf(" ), scalar kernels too\n");
            }
        }
        gguf_close(&ref);
    }
    gguf_close(&src);
}

static void test_oracle_stories_imatrix(qf_test *t) {
    char src_path[1024], ref_path[1024], im_path[1024];
    if (!qf_test_data(t, ORACLES "/stories260K-F32.gguf", src_path, sizeof src_path)) return;
    if (!qf_test_data(t, ORACLES "/stories260K-imatrix-wiki64x512.dat", im_path, sizeof im_path)) return;
    qf_err err = { 0 };
    qf_imatrix im;
    qf_imatrix_init(&im);
    REQUIRE(t, qf_imatrix_read(&im, im_path, &err) == 0, "%s", err.msg);
    gguf_file src;
    REQUIRE(t, gguf_open(&src, src_path, &err) == 0, "%s", err.msg);
    static const struct { const char *file; int imat; } files[] = {
        { "Q4_0-imat", 1 }, { "Q4_K_M-imat", 1 }, { "Q4_0", 0 }, { "Q4_1", 0 },
        { "Q5_0", 0 },      { "Q8_0", 0 },        { "Q4_K_M", 0 },
    };
    for (size_t fi = 0; fi < sizeof files / sizeof files[0]; ++fi) {
        char rel[256];
        snprintf(rel, sizeof rel, ORACLES "/stories260K-%s.gguf", files[fi].file);
        if (!qf_test_data(t, rel, ref_path, sizeof ref_path)) break;
        gguf_file ref;
        REQUIRE(t, gguf_open(&ref, ref_path, &err) == 0, "%s", err.msg);
        int n2d, bad, n_imat;
        compare_file(t, &src, &ref, files[fi].imat ? &im : NULL, 0, &n2d, &bad, &n_imat);
        CHECK(t, n2d == count_2d(&ref), "%s: compared %d 2-d tensors of %d", files[fi].file, n2d, count_2d(&ref));
        if (files[fi].imat) CHECK(t, n_imat > 20, "%s: only %d tensors used the imatrix", files[fi].file, n_imat);
        printf("  stories260K-%-11s: %d/%d 2-d tensors byte-identical, %d quantized with imatrix weights\n",
               files[fi].file, n2d - bad, n2d, n_imat);
        gguf_close(&ref);
    }
    gguf_close(&src);
    qf_imatrix_free(&im);
}

/* ---------------------------------------------------------------- imatrix */

static void test_imatrix_dat_and_gguf_round_trip(qf_test *t) {
    char im_path[1024], out[1024];
    if (!qf_test_data(t, ORACLES "/stories260K-imatrix-wiki64x512.dat", im_path, sizeof im_path)) return;
    qf_err err = { 0 };
    qf_imatrix im, back;
    qf_imatrix_init(&im);
    qf_imatrix_init(&back);
    REQUIRE(t, qf_imatrix_read_dat(&im, im_path, &err) == 0, "%s", err.msg);
    CHECK(t, im.n_entries == 35, "entries %zu", im.n_entries);
    CHECK(t, im.chunk_count == 64, "chunk_count %u", im.chunk_count);
    CHECK(t, im.n_datasets == 1 && strcmp(im.datasets[0], "wiki.test.raw") == 0, "dataset");
    CHECK(t, qf_imatrix_find(&im, "token_embd.weight") == NULL, "token_embd has no entry");
    const qf_imatrix_entry *e = qf_imatrix_find(&im, "blk.4.ffn_down.weight");
    REQUIRE(t, e && e->n_cols == 172 && e->ncall == 64, "ffn_down entry");
    float w[172];
    qf_imatrix_entry_weights(e, w);
    CHECK(t, w[0] == 17.478559494018555f / 64.f, "weight = value / ncall: %.9g", (double)w[0]);

    /* .dat -> .dat is byte-identical */
    snprintf(out, sizeof out, "%s/kquant_imatrix.dat", qf_test_tmpdir());
    REQUIRE(t, qf_imatrix_write_dat(&im, out, &err) == 0, "%s", err.msg);
    uint8_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    REQUIRE(t, qf_test_load(im_path, &a, &na) == 0 && qf_test_load(out, &b, &nb) == 0, "read back");
    CHECK(t, na == nb && memcmp(a, b, na) == 0, ".dat round trip differs (%zu vs %zu bytes)", na, nb);
    free(a); free(b);

    /* .dat -> GGUF -> same weights, metadata */
    snprintf(out, sizeof out, "%s/kquant_imatrix.gguf", qf_test_tmpdir());
    REQUIRE(t, qf_imatrix_write_gguf(&im, out, &err) == 0, "%s", err.msg);
    REQUIRE(t, qf_imatrix_read(&back, out, &err) == 0, "%s", err.msg);
    CHECK(t, back.n_entries == 35 && back.chunk_count == 64 && back.n_datasets == 1 &&
                 strcmp(back.datasets[0], "wiki.test.raw") == 0, "gguf metadata");
    int same = 0;
    for (size_t i = 0; i < im.n_entries; ++i) {
        const qf_imatrix_entry *x = &im.entries[i], *y = qf_imatrix_find(&back, x->name);
        if (!y || y->n_cols != x->n_cols || y->n_mat != 1) continue;
        float wx[256], wy[256];
        qf_imatrix_entry_weights(x, wx);
        qf_imatrix_entry_weights(y, wy);
        same += memcmp(wx, wy, x->n_cols * sizeof(float)) == 0;
    }
    CHECK(t, same == 35, "%d of 35 entries have identical weights after gguf round trip", same);
    /* entries are sorted by name in the gguf */
    for (size_t i = 1; i < back.n_entries; ++i)
        CHECK(t, strcmp(back.entries[i - 1].name, back.entries[i].name) < 0, "gguf entries sorted");

    /* GGUF -> .dat gives the original file back (counts == ncall) */
    snprintf(out, sizeof out, "%s/kquant_imatrix2.dat", qf_test_tmpdir());
    REQUIRE(t, qf_imatrix_write_dat(&back, out, &err) == 0, "%s", err.msg);
    qf_imatrix again;
    qf_imatrix_init(&again);
    REQUIRE(t, qf_imatrix_read(&again, out, &err) == 0, "%s", err.msg);
    const qf_imatrix_entry *e2 = qf_imatrix_find(&again, "blk.4.ffn_down.weight");
    CHECK(t, e2 && e2->ncall == 64 && memcmp(e2->sum2, e->sum2, 172 * sizeof(float)) == 0, "gguf -> dat values");
    qf_imatrix_free(&again);
    qf_imatrix_free(&back);
    qf_imatrix_free(&im);
}

/* A GGUF-style entry with token counts (and a MoE entry with an unused
 * expert) survives GGUF and converts to .dat as llama-imatrix does. */
static void test_imatrix_counts_and_experts(qf_test *t) {
    qf_err err = { 0 };
    qf_imatrix im, back;
    qf_imatrix_init(&im);
    qf_imatrix_init(&back);
    qf_imatrix_entry *e;
    REQUIRE(t, qf_imatrix_add(&im, "blk.0.ffn_up_exps.weight", 4, 3, &e, &err) == 0, "%s", err.msg);
    for (int j = 0; j < 12; ++j) e->sum2[j] = (float)(j + 1);
    e->counts[0] = 1000.f; e->counts[1] = 0.f; e->counts[2] = 24.f;
    REQUIRE(t, qf_imatrix_add(&im, "blk.0.attn_q.weight", 4, 1, &e, &err) == 0, "%s", err.msg);
    for (int j = 0; j < 4; ++j) e->sum2[j] = 3.f * (float)j;
    e->counts[0] = 512.f;
    CHECK(t, qf_imatrix_add(&im, "blk.0.attn_q.weight", 4, 1, NULL, &err) == QF_EINVAL, "duplicate rejected");
    im.chunk_size = 512;
    im.chunk_count = 2;
    qf_imatrix_add_dataset(&im, "a.txt", &err);
    qf_imatrix_add_dataset(&im, "b.txt", &err);
    float w[12];
    REQUIRE(t, qf_imatrix_weights_for(&im, "blk.0.ffn_up_exps.weight", 4, 3, w, &err) == 0, "%s", err.msg);
    CHECK(t, w[0] == 1.f / 1000.f && w[4] == 1.f && w[7] == 1.f && w[8] == 9.f / 24.f, "per-expert weights");
    qf_err e2 = { 0 };
    CHECK(t, qf_imatrix_weights_for(&im, "blk.0.ffn_up_exps.weight", 4, 1, w, &e2) == QF_EMISMATCH, "size mismatch");
    CHECK(t, qf_imatrix_weights_for(&im, "output.weight", 4, 1, w, &e2) == QF_ENOTFOUND, "missing entry");

    char out[1024];
    snprintf(out, sizeof out, "%s/kquant_moe.gguf", qf_test_tmpdir());
    REQUIRE(t, qf_imatrix_write_gguf(&im, out, &err) == 0, "%s", err.msg);
    REQUIRE(t, qf_imatrix_read_gguf(&back, out, &err) == 0, "%s", err.msg);
    const qf_imatrix_entry *b = qf_imatrix_find(&back, "blk.0.ffn_up_exps.weight");
    CHECK(t, b && b->n_cols == 4 && b->n_mat == 3 && b->counts[2] == 24.f && b->sum2[11] == 12.f, "moe entry");
    CHECK(t, back.chunk_size == 512 && back.n_datasets == 2 && strcmp(back.datasets[1], "b.txt") == 0, "metadata");

    /* .dat: ncall = ceil(max count / chunk_size) = 2 for the experts, 1 for attn_q;
     * values = mean * ncall, an expert without data stores 1 */
    snprintf(out, sizeof out, "%s/kquant_moe.dat", qf_test_tmpdir());
    REQUIRE(t, qf_imatrix_write_dat(&im, out, &err) == 0, "%s", err.msg);
    qf_imatrix dat;
    qf_imatrix_init(&dat);
    REQUIRE(t, qf_imatrix_read_dat(&dat, out, &err) == 0, "%s", err.msg);
    const qf_imatrix_entry *d = qf_imatrix_find(&dat, "blk.0.ffn_up_exps.weight");
    REQUIRE(t, d && d->ncall == 2 && d->n_cols == 12, "legacy entry");
    CHECK(t, d->sum2[0] == (1.f / 1000.f) * 2.f && d->sum2[5] == 2.f, "legacy values");
    const qf_imatrix_entry *q = qf_imatrix_find(&dat, "blk.0.attn_q.weight");
    CHECK(t, q && q->ncall == 1 && q->sum2[3] == 9.f / 512.f, "attn_q legacy");
    CHECK(t, dat.chunk_count == 2 && dat.n_datasets == 1 && strcmp(dat.datasets[0], "b.txt") == 0, "trailer");
    qf_imatrix_free(&dat);
    qf_imatrix_free(&back);
    qf_imatrix_free(&im);
}

static size_t put32(uint8_t *p, int32_t v) { memcpy(p, &v, 4); return 4; }

static void test_imatrix_rejects_bad_files(qf_test *t) {
    uint8_t buf[256];
    qf_imatrix im;
    qf_imatrix_init(&im);
    const float bad_values[] = { NAN, INFINITY, -1.f };
    const int want[] = { QF_ERANGE, QF_ERANGE, QF_ERANGE };
    for (int k = 0; k < 3; ++k) {
        size_t o = 0;
        o += put32(buf + o, 1);
        o += put32(buf + o, 3);
        memcpy(buf + o, "w.x", 3); o += 3;
        o += put32(buf + o, 10);
        o += put32(buf + o, 2);
        float v[2] = { 1.f, bad_values[k] };
        memcpy(buf + o, v, 8); o += 8;
        qf_err err = { 0 };
        int rc = qf_imatrix_read_dat_buffer(&im, buf, o, "bad.dat", &err);
        CHECK(t, rc == want[k], "value %g: rc %d", (double)bad_values[k], rc);
        CHECK(t, strstr(err.msg, "bad.dat") && strstr(err.msg, "w.x"), "message names file and entry: %s", err.msg);
        CHECK(t, im.n_entries == 0, "freed on error");
        /* truncated: drop the last byte */
        qf_err err2 = { 0 };
        CHECK(t, qf_imatrix_read_dat_buffer(&im, buf, o - 1, "short.dat", &err2) == QF_EFORMAT, "truncated");
    }
    qf_err err = { 0 };
    size_t o = put32(buf, 0);
    CHECK(t, qf_imatrix_read_dat_buffer(&im, buf, o, "empty.dat", &err) == QF_EFORMAT, "no entries");
    /* duplicate names */
    o = 0;
    o += put32(buf + o, 2);
    for (int k = 0; k < 2; ++k) {
        o += put32(buf + o, 1);
        buf[o++] = 'a';
        o += put32(buf + o, 1);
        o += put32(buf + o, 1);
        float v = 1.f;
        memcpy(buf + o, &v, 4); o += 4;
    }
    qf_err err3 = { 0 };
    CHECK(t, qf_imatrix_read_dat_buffer(&im, buf, o, "dup.dat", &err3) != 0, "duplicate entry rejected");
    /* trailing garbage after the trailer */
    o = 0;
    o += put32(buf + o, 1);
    o += put32(buf + o, 1);
    buf[o++] = 'a';
    o += put32(buf + o, 1);
    o += put32(buf + o, 1);
    float v = 2.f;
    memcpy(buf + o, &v, 4); o += 4;
    o += put32(buf + o, 7);
    o += put32(buf + o, 1);
    buf[o++] = 'd';
    qf_err err4 = { 0 };
    REQUIRE(t, qf_imatrix_read_dat_buffer(&im, buf, o, "ok.dat", &err4) == 0, "%s", err4.msg);
    CHECK(t, im.chunk_count == 7 && im.n_datasets == 1 && strcmp(im.datasets[0], "d") == 0, "trailer parsed");
    qf_imatrix_free(&im);
    buf[o++] = 'x';
    qf_err err5 = { 0 };
    CHECK(t, qf_imatrix_read_dat_buffer(&im, buf, o, "junk.dat", &err5) == QF_EFORMAT, "junk after trailer");
    qf_imatrix_free(&im);
}

QF_TEST_MAIN(test_nearest_int_is_round_half_even, test_iq4_nl_nearest_equals_ref, test_entry_errors, test_fast_kernels_equal_scalar,
             test_thread_count_does_not_change_bytes, test_imatrix_lowers_weighted_error, test_q8_K_block_sums,
             test_degenerate_rows_stay_finite,
             test_oracle_synth_kquants, test_oracle_stories_imatrix, test_imatrix_dat_and_gguf_round_trip,
             test_imatrix_counts_and_experts, test_imatrix_rejects_bad_files)
