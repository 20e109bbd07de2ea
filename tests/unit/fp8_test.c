/* fp8_test.c - E4M3 encoding against a brute-force reference, the row codec,
 * FP8 checkpoint scales (formats/fp8.h) and the writer's round trip
 * (quantize/fp8_write.h). */
#include "qf_test.h"

#include <unistd.h>

#include "fp8.h"
#include "fp8_write.h"
#include "json.h"
#include "numfmt.h"
#include "qf_util.h"
#include "safetensors.h"

/* Value of positive code c < 0x7F from the definition: bias 7, 3 mantissa bits. */
static double e4m3_def(int c) {
    int e = c >> 3, m = c & 7;
    return e == 0 ? ldexp(m / 8.0, -6) : ldexp(1.0 + m / 8.0, e - 7);
}

/* Brute-force encoder: the nearest of the 127 finite magnitudes, ties to the
 * even code, beyond 448 saturate; NaN -> 0x7F | sign. The spec of qf_f32_to_e4m3. */
static uint8_t e4m3_brute(float f) {
    uint8_t sign = signbit(f) ? 0x80 : 0;
    if (isnan(f)) return sign | 0x7F;
    double a = fabs((double)f);
    if (a >= 448.0) return sign | 0x7E;
    int best = 0;
    double bd = a;
    for (int c = 1; c < 0x7F; c++) {
        double d = fabs(a - e4m3_def(c));
        if (d < bd || (d == bd && (c & 1) == 0 && (best & 1))) {
            best = c;
            bd = d;
        }
    }
    return sign | (uint8_t)best;
}

static void test_decode_all_codes(qf_test *t) {
    int bad = 0;
    for (int v = 0; v < 256; v++) {
        float f = qf_e4m3_to_f32((uint8_t)v);
        int c = v & 0x7F;
        if (c == 0x7F) {
            bad += !isnan(f);
            continue;
        }
        double want = (v & 0x80) ? -e4m3_def(c) : e4m3_def(c);
        bad += (double)f != want || (signbit(f) != 0) != ((v & 0x80) != 0);
    }
    CHECK(t, bad == 0, "%d of 256 codes decode wrong", bad);
}

/* Every midpoint between adjacent codes and its float neighbours, every code
 * value and its neighbours, 0, the subnormal range and saturation. */
static void test_encode_boundaries(qf_test *t) {
    int bad = 0, n = 0;
    float first_bad = 0;
    for (int c = 0; c < 0x7E; c++) {
        float lo = (float)e4m3_def(c), hi = (float)e4m3_def(c + 1);
        float mid = (float)((e4m3_def(c) + e4m3_def(c + 1)) / 2); /* exact in f32 */
        float xs[] = {lo, nextafterf(lo, INFINITY), nextafterf(lo, 0), mid, nextafterf(mid, 0), nextafterf(mid, INFINITY),
                      hi, nextafterf(hi, 0)};
        for (size_t i = 0; i < sizeof xs / sizeof *xs; i++)
            for (int s = 0; s < 2; s++) {
                float x = s ? -xs[i] : xs[i];
                n++;
                if (qf_f32_to_e4m3(x) != e4m3_brute(x)) {
                    if (!bad) first_bad = x;
                    bad++;
                }
            }
    }
    /* saturation: 448 .. 480 (the would-be next code's midpoint) .. Inf */
    float sat[] = {448.0f, nextafterf(448.0f, INFINITY), 464.0f, nextafterf(464.0f, INFINITY), 480.0f, 1e6f, 3.4e38f,
                   INFINITY, 0x1p-10f, nextafterf(0x1p-10f, INFINITY), 0x1p-30f, 1e-45f, 0.0f, -0.0f};
    for (size_t i = 0; i < sizeof sat / sizeof *sat; i++)
        for (int s = 0; s < 2; s++) {
            float x = s ? -sat[i] : sat[i];
            n++;
            if (qf_f32_to_e4m3(x) != e4m3_brute(x)) {
                if (!bad) first_bad = x;
                bad++;
            }
        }
    CHECK(t, bad == 0, "%d of %d boundary values encode differently from the reference (first %a)", bad, n,
          (double)first_bad);
    CHECK(t, qf_f32_to_e4m3(0x1p-10f) == 0 && qf_f32_to_e4m3(nextafterf(0x1p-10f, 1)) == 1, "half the min subnormal");
    CHECK(t, qf_f32_to_e4m3(464.0f) == 0x7E && qf_f32_to_e4m3(-INFINITY) == 0xFE, "saturation");
}

/* Random floats over the whole range of E4M3 magnitudes (and a bit beyond). */
static void test_encode_random(qf_test *t) {
    uint64_t s = 12345;
    int bad = 0;
    for (int i = 0; i < 300000; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t r = (uint32_t)(s >> 32);
        int e = (int)(r % 32) - 22;                               /* 2^-22 .. 2^9 */
        float x = ldexpf(1.0f + (float)(r >> 8 & 0xFFFFF) / 1048576.0f, e) * ((r & 1) ? -1.0f : 1.0f);
        bad += qf_f32_to_e4m3(x) != e4m3_brute(x);
    }
    CHECK(t, bad == 0, "%d random values differ", bad);
}

static void test_row_codec(qf_test *t) {
    enum { N = 1003 };
    float x[N], y[N];
    uint8_t a[N], b[N];
    for (int i = 0; i < N; i++) x[i] = sinf((float)i * 0.37f) * (float)(i % 17) * 3.1f;
    float scale = 0.0371f;
    CHECK(t, qf_fp8_encode_row(x, scale, a, N) == -1 && qf_fp8_encode_row_ref(x, scale, b, N) == -1, "finite row");
    CHECK(t, memcmp(a, b, N) == 0, "fast row encoder == reference");
    int bad = 0;
    for (int i = 0; i < N; i++) bad += a[i] != qf_f32_to_e4m3(x[i] / scale);
    CHECK(t, bad == 0, "row = scalar e4m3(x / scale)");
    qf_fp8_decode_row(a, scale, y, N);
    bad = 0;
    for (int i = 0; i < N; i++) bad += y[i] != scale * qf_e4m3_to_f32(a[i]);
    CHECK(t, bad == 0, "decode = scale * e4m3(code)");
    x[700] = NAN;
    CHECK(t, qf_fp8_encode_row(x, scale, a, N) == 700, "NaN found at its index");
    x[700] = 0;
    x[5] = -INFINITY;
    CHECK(t, qf_fp8_encode_row(x, scale, a, N) == 5, "Inf found at its index");
}

/* The (vectorized) row encoder equals the scalar reference bit for bit on
 * every boundary value, f32 subnormals, saturation and random values, for
 * several scales. */
static void test_row_fast_vs_ref(qf_test *t) {
    enum { N = 200003 };
    float *x = malloc(N * sizeof *x);
    uint8_t *a = malloc(N), *b = malloc(N);
    REQUIRE(t, x && a && b, "alloc");
    int64_t n = 0;
    for (int c = 0; c < 0x7E; c++) {
        float lo = (float)e4m3_def(c), mid = (float)((e4m3_def(c) + e4m3_def(c + 1)) / 2);
        float xs[] = {lo, nextafterf(lo, INFINITY), nextafterf(lo, 0), mid, nextafterf(mid, 0), nextafterf(mid, INFINITY)};
        for (size_t i = 0; i < 6; i++) {
            x[n++] = xs[i];
            x[n++] = -xs[i];
        }
    }
    float sp[] = {448.0f, 464.0f, nextafterf(464.0f, 0), 480.0f, 1e30f, 3.4e38f, 1e-40f, -1e-45f, 0.0f, -0.0f, 0x1p-10f};
    for (size_t i = 0; i < sizeof sp / sizeof *sp; i++) x[n++] = sp[i];
    uint64_t r = 99;
    while (n < N) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t u = (uint32_t)(r >> 32);
        x[n++] = ldexpf(1.0f + (float)(u >> 9 & 0x3FFFFF) / 4194304.0f, (int)(u % 48) - 36) * ((u & 1) ? -1.0f : 1.0f);
    }
    float scales[] = {1.0f, 0.0371f, 3.3e-3f, 7.0f, 1e-20f};
    int bad = 0;
    for (size_t k = 0; k < sizeof scales / sizeof *scales; k++) {
        for (int64_t off = 0; off < 3; off++) { /* unaligned starts and odd lengths */
            CHECK(t, qf_fp8_encode_row(x + off, scales[k], a, N - off) == -1, "finite");
            qf_fp8_encode_row_ref(x + off, scales[k], b, N - off);
            for (int64_t i = 0; i < N - off; i++) bad += a[i] != b[i];
        }
    }
    CHECK(t, bad == 0, "%d codes differ between the row encoder and the reference", bad);
    for (int64_t p = 0; p < 40; p += 13) { /* a NaN anywhere is found at its index */
        float keep = x[p * 7 + 3];
        x[p * 7 + 3] = NAN;
        CHECK(t, qf_fp8_encode_row(x, 1.0f, a, N) == p * 7 + 3, "NaN index %lld", (long long)(p * 7 + 3));
        x[p * 7 + 3] = keep;
    }
    free(x);
    free(a);
    free(b);
}

/* The squared-error kernel against its scalar reference (and against a
 * direct encode + decode), for unaligned starts, odd lengths and scales that
 * saturate part of the row. */
static void test_sqerr_fast_vs_ref(qf_test *t) {
    enum { N = 4099 };
    float x[N], back[N];
    uint8_t codes[N];
    uint64_t r = 7;
    for (int i = 0; i < N; i++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = ((float)(r >> 40) / 16777216.0f - 0.5f) * ((i % 53) ? 1.0f : 40.0f);
    }
    float scales[] = {20.0f / 448, 1.0f / 448, 0.3f / 448, 1e-3f};
    int bad = 0;
    for (size_t k = 0; k < sizeof scales / sizeof *scales; k++)
        for (int off = 0; off < 3; off++) {
            int64_t n = N - off - 2 * (int)k;
            double a = qf_fp8_sqerr_row(x + off, scales[k], n), b = qf_fp8_sqerr_row_ref(x + off, scales[k], n);
            qf_fp8_encode_row_ref(x + off, scales[k], codes, n);
            qf_fp8_decode_row(codes, scales[k], back, n);
            double c = 0;
            for (int64_t i = 0; i < n; i++) c += ((double)x[off + i] - back[i]) * ((double)x[off + i] - back[i]);
            bad += !(fabs(a - b) <= 1e-5 * b) || c != b; /* the kernel sums in float within 1024-value runs */
        }
    CHECK(t, bad == 0, "%d squared errors differ from the reference or from encode + decode", bad);
    /* one value per 8-lane vector (the rest 0, which adds exactly 0): every
     * code, midpoint and their neighbours, subnormals and saturation; a value
     * rounded to another code would be off by a whole step */
    int bad1 = 0;
    for (int c = 0; c < 0x7E; c++) {
        float lo = (float)e4m3_def(c), mid = (float)((e4m3_def(c) + e4m3_def(c + 1)) / 2);
        float vs[] = {lo, nextafterf(lo, INFINITY), nextafterf(lo, 0), mid, nextafterf(mid, 0), nextafterf(mid, INFINITY),
                      448.0f, 464.0f, nextafterf(464.0f, 0), 1e15f, 1e-40f};
        for (size_t i = 0; i < sizeof vs / sizeof *vs; i++)
            for (int sg = 0; sg < 2; sg++) {
                float v8[8] = {0};
                v8[c % 8] = sg ? -vs[i] : vs[i];
                double a = qf_fp8_sqerr_row(v8, 1.0f, 8), e = qf_fp8_sqerr_row_ref(v8, 1.0f, 8);
                bad1 += !(fabs(a - e) <= 1e-6 * e + 1e-24);
            }
    }
    CHECK(t, bad1 == 0, "%d single values round differently in the vector kernel", bad1);
}

/* ---- a tiny llama checkpoint in a temp dir ---- */

static const char *CONFIG =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 160, "
    "\"intermediate_size\": 200, \"num_hidden_layers\": 1, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
    "\"vocab_size\": 32, \"max_position_embeddings\": 64, \"rms_norm_eps\": 1e-5, \"torch_dtype\": \"bfloat16\", "
    "\"tie_word_embeddings\": false}";

static int write_text(const char *dir, const char *name, const char *text) {
    char *p = qf_path_join(dir, name);
    FILE *f = p ? fopen(p, "w") : NULL;
    free(p);
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

static float synth(const char *name, uint64_t i) {
    uint64_t h = 1469598103934665603ull;
    for (const char *c = name; *c; c++) h = (h ^ (uint8_t)*c) * 1099511628211ull;
    h ^= i * 0x9E3779B97F4A7C15ull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    float v = ((float)(h & 0xFFFFFF) / 16777216.0f - 0.5f) * 0.2f;
    if (i % 97 == 0) v *= 30.0f; /* outliers */
    return v;
}

static int make_model(const char *dir, int nan_at) {
    static const struct { const char *name; uint64_t d0, d1; } T[] = {
        {"model.embed_tokens.weight", 32, 160}, {"lm_head.weight", 32, 160}, {"model.norm.weight", 160, 0},
        {"model.layers.0.input_layernorm.weight", 160, 0}, {"model.layers.0.post_attention_layernorm.weight", 160, 0},
        {"model.layers.0.self_attn.q_proj.weight", 160, 160}, {"model.layers.0.self_attn.k_proj.weight", 80, 160},
        {"model.layers.0.self_attn.v_proj.weight", 80, 160}, {"model.layers.0.self_attn.o_proj.weight", 160, 160},
        {"model.layers.0.mlp.gate_proj.weight", 200, 160}, {"model.layers.0.mlp.up_proj.weight", 200, 160},
        {"model.layers.0.mlp.down_proj.weight", 160, 200}};
    if (mkdir(dir, 0777) != 0 || write_text(dir, "config.json", CONFIG) != 0) return -1;
    qf_err err = {0};
    char *p = qf_path_join(dir, "model.safetensors");
    st_writer *w = st_writer_create(p, &err);
    free(p);
    if (!w) return -1;
    for (size_t i = 0; i < sizeof T / sizeof *T; i++) {
        uint64_t sh[2] = {T[i].d0, T[i].d1};
        st_writer_add_tensor(w, T[i].name, ST_BF16, T[i].d1 ? 2 : 1, sh);
    }
    st_writer_begin_data(w);
    for (uint64_t k = 0;; k++) {
        const char *nm = st_writer_tensor_name(w, k);
        if (!nm) break;
        size_t i = 0;
        while (strcmp(T[i].name, nm)) i++;
        uint64_t n = T[i].d0 * (T[i].d1 ? T[i].d1 : 1);
        for (uint64_t e = 0; e < n; e++) {
            float v = T[i].d1 ? synth(nm, e) : 1.0f;
            if (nan_at && strstr(nm, "up_proj") && e == 321) v = NAN;
            uint16_t h = qf_f32_to_bf16(v);
            st_writer_write(w, &h, 2);
        }
    }
    return st_writer_finish(w);
}

static void rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return;
}

/* A temp dir base (a mkdtemp template) holding the synthetic model in
 * base/in (with a NaN weight when nan); -1 if either cannot be made. */
static int temp_model(char *base, char *in, size_t n_in, int nan) {
    if (!mkdtemp(base)) return -1;
    snprintf(in, n_in, "%s/in", base);
    return make_model(in, nan);
}

/* A written checkpoint read back beside its source: both models and the
 * FP8 config of out/config.json. */
typedef struct {
    st_model src, m;
    qf_json cfg;
    qf_fp8_config fc;
    char *cp;
} written;

/* Opens w (close it with written_close); fails with the reader's error. */
static int written_open(written *w, const char *in, const char *out, qf_err *err) {
    memset(w, 0, sizeof *w);
    w->cp = qf_path_join(out, "config.json");
    if (st_open(&w->src, in, err) != 0 || st_open(&w->m, out, err) != 0) return -1;
    if (qf_json_parse_file(&w->cfg, w->cp, 0, err) != 0 || qf_fp8_config_read(&w->cfg, w->cp, &w->fc, err) != 0)
        return -1;
    return 0;
}

static void written_close(written *w) {
    qf_json_free(&w->cfg);
    free(w->cp);
    st_close(&w->m);
    st_close(&w->src);
}

/* Write each scheme, read back: the dequantized weight is scale * e4m3(code)
 * exactly, the scales are amax/448 rounded to BF16, and the error is within
 * E4M3's half-ulp (or the saturation step). */
static void test_write_read_round_trip(qf_test *t) {
    char base[] = "/tmp/qf-fp8-test-XXXXXX", in[300], out[300];
    REQUIRE(t, temp_model(base, in, sizeof in, 0) == 0, "synthetic model in a temp dir");
    qf_fp8_scheme schemes[] = {QF_FP8_TENSOR, QF_FP8_CHANNEL, QF_FP8_BLOCK};
    for (int si = 0; si < 3; si++) {
        snprintf(out, sizeof out, "%s/out%d", base, si);
        qf_fp8_write_opts o = {0};
        qf_fp8_write_result r;
        qf_err err = {0};
        o.in_dir = in;
        o.out_dir = out;
        o.scheme = schemes[si];
        REQUIRE(t, qf_fp8_write(&o, &r, &err) == 0, "write %s: %s", qf_fp8_scheme_name(schemes[si]), err.msg);
        CHECK(t, r.n_quantized == 7 && r.n_kept == 5, "7 Linear weights, 5 kept (%llu, %llu)",
              (unsigned long long)r.n_quantized, (unsigned long long)r.n_kept);
        written w;
        REQUIRE(t, written_open(&w, in, out, &err) == 0, "%s", err.msg);
        CHECK(t, w.fc.kind == QF_FP8_KIND_CT, "compressed-tensors config read back");
        int bad_exact = 0, bad_err = 0, bad_scale = 0, n_fp8 = 0;
        for (uint64_t i = 0; i < w.m.n_tensors; i++) {
            const st_tensor *q = &w.m.tensors[i];
            if (q->dtype != ST_F8_E4M3) continue;
            n_fp8++;
            qf_fp8_weight fw;
            REQUIRE(t, qf_fp8_weight_bind(&w.m, &w.fc, q, out, &fw, &err) == 0, "%s", err.msg);
            CHECK(t, fw.scheme == schemes[si], "scheme of %s", q->name);
            const st_tensor *s = st_find(&w.src, q->name);
            float *row = malloc((size_t)fw.n_in * sizeof *row), *orig = malloc((size_t)fw.n_in * sizeof *orig);
            for (int64_t r0 = 0; r0 < fw.n_out; r0++) {
                qf_fp8_dequant_row(&fw, r0, q->data + r0 * fw.n_in, row);
                for (int64_t c = 0; c < fw.n_in; c++) {
                    uint16_t h;
                    memcpy(&h, s->data + 2 * (r0 * fw.n_in + c), 2);
                    orig[c] = qf_bf16_to_f32(h);
                    float sc = qf_fp8_scale_at(&fw, r0, c);
                    float want = sc * qf_e4m3_to_f32(q->data[r0 * fw.n_in + c]);
                    bad_exact += memcmp(&row[c], &want, 4) != 0;
                    /* |w/s| <= 448 * (1 + 2^-8) after BF16 rounding of s; error <= half an E4M3 step */
                    float rel = fabsf(orig[c] / sc);
                    float step = rel < 0x1p-6f ? 0x1p-9f : ldexpf(1.0f, (int)floorf(log2f(rel)) - 3);
                    float tol = sc * (rel > 448.0f ? rel - 448.0f + 1e-3f : step / 2 * 1.0001f);
                    bad_err += fabsf(row[c] - orig[c]) > tol;
                }
            }
            /* scales: amax/448 rounded to BF16 */
            int64_t nb = fw.scheme == QF_FP8_TENSOR ? 1 : fw.scheme == QF_FP8_CHANNEL ? fw.n_out
                        : ((fw.n_out + 127) / 128) * ((fw.n_in + 127) / 128);
            for (int64_t k = 0; k < nb; k++) {
                float amax = 0;
                for (int64_t r0 = 0; r0 < fw.n_out; r0++)
                    for (int64_t c = 0; c < fw.n_in; c++) {
                        int64_t kk = fw.scheme == QF_FP8_TENSOR ? 0 : fw.scheme == QF_FP8_CHANNEL ? r0
                                    : (r0 / 128) * fw.n_block_cols + c / 128;
                        uint16_t h;
                        memcpy(&h, s->data + 2 * (r0 * fw.n_in + c), 2);
                        if (kk == k && fabsf(qf_bf16_to_f32(h)) > amax) amax = fabsf(qf_bf16_to_f32(h));
                    }
                bad_scale += fw.scale[k] != qf_bf16_to_f32(qf_f32_to_bf16(amax / 448.0f));
            }
            free(row);
            free(orig);
            qf_fp8_weight_free(&fw);
        }
        CHECK(t, n_fp8 == 7, "7 FP8 tensors read back (%d)", n_fp8);
        CHECK(t, bad_exact == 0, "%s: %d dequantized values != scale * e4m3(code)", qf_fp8_scheme_name(schemes[si]),
              bad_exact);
        CHECK(t, bad_err == 0, "%s: %d values off by more than half an E4M3 step", qf_fp8_scheme_name(schemes[si]),
              bad_err);
        CHECK(t, bad_scale == 0, "%s: %d scales != bf16(amax/448)", qf_fp8_scheme_name(schemes[si]), bad_scale);
        const st_tensor *e = st_find(&w.m, "model.embed_tokens.weight"), *e0 = st_find(&w.src, "model.embed_tokens.weight");
        CHECK(t, e && e->dtype == ST_BF16 && !memcmp(e->data, e0->data, e0->nbytes), "embeddings copied as they are");
        written_close(&w);
    }
    /* an existing output directory is refused, not overwritten */
    qf_fp8_write_opts o = {0};
    qf_err err = {0};
    o.in_dir = in;
    o.out_dir = out;
    o.scheme = QF_FP8_CHANNEL;
    CHECK(t, qf_fp8_write(&o, NULL, &err) != 0 && strstr(err.msg, "already exists"), "existing dir: %s", err.msg);
    rm_rf(base);
}

/* MSE scales: every scale is a candidate amax/448 * 2^(k/32) (k = -16..15)
 * rounded to BF16, its group's round-trip error is at most the amax scale's,
 * for most groups strictly less, and dequantization stays scale * e4m3(code). */
static void test_write_mse_scales(qf_test *t) {
    char base[] = "/tmp/qf-fp8-test-XXXXXX", in[300], out[300];
    REQUIRE(t, temp_model(base, in, sizeof in, 0) == 0, "synthetic model in a temp dir");
    qf_fp8_scheme schemes[] = {QF_FP8_TENSOR, QF_FP8_CHANNEL, QF_FP8_BLOCK};
    for (int si = 0; si < 3; si++) {
        snprintf(out, sizeof out, "%s/out%d", base, si);
        qf_fp8_write_opts o = {0};
        qf_err err = {0};
        o.in_dir = in;
        o.out_dir = out;
        o.scheme = schemes[si];
        o.scale_mode = QF_FP8_SCALE_MSE;
        REQUIRE(t, qf_fp8_write(&o, NULL, &err) == 0, "write: %s", err.msg);
        written w;
        REQUIRE(t, written_open(&w, in, out, &err) == 0, "%s", err.msg);
        int n_groups = 0, n_better = 0, bad_worse = 0, bad_cand = 0, bad_exact = 0;
        for (uint64_t i = 0; i < w.m.n_tensors; i++) {
            const st_tensor *q = &w.m.tensors[i];
            if (q->dtype != ST_F8_E4M3) continue;
            qf_fp8_weight fw;
            REQUIRE(t, qf_fp8_weight_bind(&w.m, &w.fc, q, out, &fw, &err) == 0, "%s", err.msg);
            const st_tensor *s = st_find(&w.src, q->name);
            int64_t br = fw.scheme == QF_FP8_CHANNEL ? 1 : fw.scheme == QF_FP8_TENSOR ? fw.n_out : 128;
            int64_t bc = fw.scheme == QF_FP8_BLOCK ? 128 : fw.n_in;
            float *g = malloc((size_t)(fw.n_out * fw.n_in) * sizeof *g), *row = malloc((size_t)fw.n_in * sizeof *row);
            for (int64_t r0 = 0; r0 < fw.n_out; r0++) {
                qf_fp8_dequant_row(&fw, r0, q->data + r0 * fw.n_in, row);
                for (int64_t c = 0; c < fw.n_in; c++) {
                    float want = qf_fp8_scale_at(&fw, r0, c) * qf_e4m3_to_f32(q->data[r0 * fw.n_in + c]);
                    bad_exact += memcmp(&row[c], &want, 4) != 0;
                }
            }
            for (int64_t r0 = 0; r0 < fw.n_out; r0 += br)
                for (int64_t c0 = 0; c0 < fw.n_in; c0 += bc) {
                    int64_t nr = fw.n_out - r0 < br ? fw.n_out - r0 : br, nc = fw.n_in - c0 < bc ? fw.n_in - c0 : bc;
                    float amax = 0;
                    for (int64_t a = 0; a < nr; a++)
                        for (int64_t c = 0; c < nc; c++) {
                            uint16_t h;
                            memcpy(&h, s->data + 2 * ((r0 + a) * fw.n_in + c0 + c), 2);
                            g[a * nc + c] = qf_bf16_to_f32(h);
                            if (fabsf(g[a * nc + c]) > amax) amax = fabsf(g[a * nc + c]);
                        }
                    float sc = qf_fp8_scale_at(&fw, r0, c0), s0 = qf_bf16_to_f32(qf_f32_to_bf16(amax / 448.0f));
                    int is_cand = 0;
                    for (int k = -16; k < 16; k++)
                        is_cand |= sc == qf_bf16_to_f32(qf_f32_to_bf16(amax / 448.0f * exp2f((float)k / 32)));
                    double e = qf_fp8_sqerr_row_ref(g, sc, nr * nc), e0 = qf_fp8_sqerr_row_ref(g, s0, nr * nc);
                    n_groups++;
                    bad_cand += !is_cand;
                    bad_worse += e > e0 * (1 + 1e-12);
                    n_better += e < e0;
                }
            free(g);
            free(row);
            qf_fp8_weight_free(&fw);
        }
        const char *nm = qf_fp8_scheme_name(schemes[si]);
        CHECK(t, bad_exact == 0, "%s: %d dequantized values != scale * e4m3(code)", nm, bad_exact);
        CHECK(t, bad_cand == 0, "%s: %d of %d scales are not a candidate", nm, bad_cand, n_groups);
        CHECK(t, bad_worse == 0, "%s: %d of %d groups have more error than amax/448", nm, bad_worse, n_groups);
        CHECK(t, n_better * 2 > n_groups, "%s: only %d of %d groups improved on amax/448", nm, n_better, n_groups);
        written_close(&w);
    }
    rm_rf(base);
}

/* A NaN weight: an error naming the tensor and element, and no output directory. */
static void test_write_refuses_nan(qf_test *t) {
    char base[] = "/tmp/qf-fp8-test-XXXXXX", in[300], out[300];
    REQUIRE(t, temp_model(base, in, sizeof in, 1) == 0, "synthetic model in a temp dir");
    snprintf(out, sizeof out, "%s/out", base);
    qf_fp8_write_opts o = {0};
    qf_err err = {0};
    o.in_dir = in;
    o.out_dir = out;
    o.scheme = QF_FP8_CHANNEL;
    CHECK(t, qf_fp8_write(&o, NULL, &err) == QF_ERANGE, "NaN refused");
    CHECK(t, strstr(err.msg, "model.layers.0.mlp.up_proj.weight") && strstr(err.msg, "[2, 1]") &&
                 strstr(err.msg, "NaN"),
          "message names tensor and element: %s", err.msg);
    struct stat sb;
    CHECK(t, stat(out, &sb) != 0, "no output directory");
    char cmd[400];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -c tmp > /dev/null", base);
    CHECK(t, system(cmd) != 0, "no temp directory left");
    rm_rf(base);
}

static void test_config_errors(qf_test *t) {
    static const struct { const char *json; int ok; qf_fp8_kind kind; } C[] = {
        {"{}", 1, QF_FP8_KIND_NONE},
        {"{\"quantization_config\": {\"quant_method\": \"fp8\", \"weight_block_size\": [128, 128]}}", 1,
         QF_FP8_KIND_BLOCK},
        {"{\"quantization_config\": {\"quant_method\": \"fp8\"}}", 0, 0},
        {"{\"quantization_config\": {\"quant_method\": \"gptq\", \"bits\": 4}}", 0, 0},
        {"{\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": \"pack-quantized\"}}", 0, 0},
        {"{\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": \"float-quantized\", "
         "\"config_groups\": {\"group_0\": {\"weights\": {\"num_bits\": 8, \"type\": \"float\", \"strategy\": "
         "\"channel\"}}}}}",
         1, QF_FP8_KIND_CT},
        {"{\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": \"float-quantized\", "
         "\"config_groups\": {\"group_0\": {\"weights\": {\"num_bits\": 4, \"type\": \"int\", \"strategy\": "
         "\"group\"}}}}}",
         0, 0},
    };
    for (size_t i = 0; i < sizeof C / sizeof *C; i++) {
        qf_json j;
        qf_err err = {0};
        qf_fp8_config c;
        REQUIRE(t, qf_json_parse(&j, C[i].json, strlen(C[i].json), "config.json", &err) == 0, "parse %zu", i);
        int rc = qf_fp8_config_read(&j, "config.json", &c, &err);
        CHECK(t, (rc == 0) == C[i].ok, "case %zu: rc %d (%s)", i, rc, err.msg);
        if (C[i].ok) CHECK(t, c.kind == C[i].kind, "case %zu kind %d", i, c.kind);
        else CHECK(t, strncmp(err.msg, "config.json: ", 13) == 0, "case %zu message names the file: %s", i, err.msg);
        qf_json_free(&j);
    }
}

QF_TEST_MAIN(test_decode_all_codes, test_encode_boundaries, test_encode_random, test_row_codec, test_row_fast_vs_ref,
             test_sqerr_fast_vs_ref, test_write_read_round_trip, test_write_mse_scales, test_write_refuses_nan, test_config_errors)
