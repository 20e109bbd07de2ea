/* gemv_bench - batch-1 matrix-vector products against the memory bandwidth.
 *
 *   gemv_bench bw                      read and copy bandwidth, 1 and 2 threads
 *   gemv_bench kernels [TYPES]         one matvec per type and shape, 1 and 2 threads
 *   gemv_bench model FILE [TOKENS]     a GGUF model decoded one token at a time:
 *                                      the whole forward pass, then its matmuls alone
 *
 * kernels: for each type (default f16 q8_0 q4_0 q4_k q6_k) and shape n_in ->
 * n_out (2048 -> 256, 2048 -> 2048, 2048 -> 5632, 5632 -> 2048) the weights are quantized
 * once and copied until GEMV_BENCH_MB MiB (default 256) so that every call
 * streams its weights from memory, as decoding does; each call goes through
 * the path the forward pass takes for one token (activation rounded or
 * quantized like llama.cpp, then qf_matmul / qf_matmul_q8). Printed: the best
 * of REPS (GEMV_BENCH_REPS, default 5) passes over the copies, as
 * microseconds per call and weight GB/s, next to the read bandwidth.
 * model: per-token milliseconds of qf_forward (one token at a time), of the
 * matmuls alone (the same weights in the same order), and of the rest.
 * Threads: 1 and 2 (GEMV_BENCH_THREADS overrides the second); GEMV_BENCH_CPU=1
 * times by CPU time. A benchmark,
 * not a test: tests/unit/matmul_q8_test.c and engine_test.c check results.
 * The OpenMP wait policy is the environment's (the qforge tools set
 * GOMP_SPINCOUNT=1000 when it is unset; run with it to time like them). */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codecs.h"
#include "forward.h"
#include "ggml_types.h"
#include "matmul.h"
#include "matmul_q8.h"
#include "model.h"
#include "bench_util.h"

/* GEMV_BENCH_CPU=1: time by the process's CPU time (all threads, spinning
 * included) instead of the wall clock: on a busy machine that leaves out the
 * time spent waiting for a CPU. */
static int use_cpu_time;

static double now(void) { return bench_now(use_cpu_time); }

static uint64_t rng = BENCH_SEED;
static float frand(void) { return bench_frand(&rng); }

static int env_int(const char *name, int def) {
    const char *s = getenv(name);
    return s && atoi(s) > 0 ? atoi(s) : def;
}

/* ---- bandwidth ---- */

/* Bytes per second reading n floats (n a multiple of 32; integer sums in
 * 4 independent vectors, so the loop is load-bound) on nt threads. */
static double read_bw(const float *a, size_t n, int nt, float *sink) {
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        uint32_t s = 0;
        const double t0 = now();
#pragma omp parallel for num_threads(nt) schedule(static) reduction(+ : s)
        for (size_t i = 0; i < n / (1 << 14); i++) {
            const __m256i *p = (const __m256i *)(a + (i << 14));
            __m256i l0 = _mm256_setzero_si256(), l1 = l0, l2 = l0, l3 = l0;
            for (int k = 0; k < (1 << 14) / 8; k += 4) {
                l0 = _mm256_add_epi32(l0, _mm256_loadu_si256(p + k));
                l1 = _mm256_add_epi32(l1, _mm256_loadu_si256(p + k + 1));
                l2 = _mm256_add_epi32(l2, _mm256_loadu_si256(p + k + 2));
                l3 = _mm256_add_epi32(l3, _mm256_loadu_si256(p + k + 3));
            }
            uint32_t l[8];
            _mm256_storeu_si256((__m256i *)l, _mm256_add_epi32(_mm256_add_epi32(l0, l1), _mm256_add_epi32(l2, l3)));
            for (int k = 0; k < 8; k++) s += l[k];
        }
        const double dt = now() - t0;
        if (dt < best) best = dt;
        *sink += (float)s;
    }
    return (double)n * sizeof(float) / best;
}

/* Bytes per second copied (bytes read, each also written) on nt threads. */
static double copy_bw(float *dst, const float *src, size_t n, int nt) {
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        const double t0 = now();
#pragma omp parallel num_threads(nt)
        {
            const size_t per = (n + (size_t)nt - 1) / (size_t)nt, i0 = per * (size_t)omp_get_thread_num();
            if (i0 < n) memcpy(dst + i0, src + i0, (i0 + per > n ? n - i0 : per) * sizeof(float));
        }
        const double dt = now() - t0;
        if (dt < best) best = dt;
    }
    return (double)n * sizeof(float) / best;
}

static double g_read_bw[3]; /* [threads index] */

static int run_bw(int n2) {
    const size_t n = (size_t)env_int("GEMV_BENCH_MB", 256) << 18; /* floats */
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float)), sink = 0.0f;
    if (!a || !b) return fprintf(stderr, "gemv_bench: error: out of memory\n"), 1;
    for (size_t i = 0; i < n; i++) a[i] = b[i] = (float)(i & 1023);
    const int th[2] = {1, n2};
    for (int i = 0; i < 2; i++) {
        g_read_bw[i] = read_bw(a, n, th[i], &sink);
        const double c = copy_bw(b, a, n, th[i]);
        printf("bandwidth %d thread(s): read %.1f GB/s, copy %.1f GB/s (bytes copied; read+write %.1f GB/s)\n",
               th[i], g_read_bw[i] * 1e-9, c * 1e-9, 2 * c * 1e-9);
    }
    free(a);
    free(b);
    return sink == 12345.0f; /* keeps the sums */
}

/* ---- one matvec as the forward pass does it ---- */

/* y = x W^T for one token: integer dots on Q8 activations for the types
 * that have them, else the activation rounded like llama.cpp + qf_matmul. */
static int matvec(const qf_weight *w, const float *x, float *y, float *xr, void *work, int nt) {
    if (qf_matmul_q8_supported(w->type)) return qf_matmul_q8(w, x, 1, y, work, nt);
    const uint32_t act = qf_act_type_llamacpp(w->type);
    if (act != GGML_TYPE_F32) {
        qf_round_activations(act, x, xr, w->n_in);
        x = xr;
    }
    return qf_matmul(w, x, 1, y, nt);
}

static const struct {
    const char *name;
    uint32_t type;
} types[] = {{"f16", GGML_TYPE_F16}, {"q8_0", GGML_TYPE_Q8_0}, {"q4_0", GGML_TYPE_Q4_0},
             {"q4_k", GGML_TYPE_Q4_K}, {"q6_k", GGML_TYPE_Q6_K}, {"q4_1", GGML_TYPE_Q4_1}};

static int run_kernels(int n2, int argc, char **argv) {
    static const int64_t shapes[][2] = {{2048, 256}, {2048, 2048}, {2048, 5632}, {5632, 2048}};
    const size_t budget = (size_t)env_int("GEMV_BENCH_MB", 256) << 20;
    const int reps = env_int("GEMV_BENCH_REPS", 5);
    if (g_read_bw[0] == 0) run_bw(n2);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        int want = argc == 0 && ti < 5;
        for (int a = 0; a < argc; a++) want |= !strcmp(argv[a], types[ti].name);
        if (!want) continue;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const int64_t n_in = shapes[s][0], n_out = shapes[s][1];
            uint64_t rb;
            if (ggml_row_size(types[ti].type, (uint64_t)n_in, &rb) != 0) return 1;
            const size_t mat = (size_t)rb * (size_t)n_out;
            const size_t copies = budget / mat < 2 ? 2 : budget / mat;
            float *src = malloc((size_t)(n_in * n_out) * sizeof(float));
            uint8_t *wd = malloc(mat * copies);
            float *x = aligned_alloc(64, (size_t)n_in * sizeof(float)), *xr = aligned_alloc(64, (size_t)n_in * sizeof(float));
            float *y = malloc((size_t)n_out * sizeof(float));
            void *work = aligned_alloc(64, (qf_matmul_q8_work_bytes(types[ti].type, n_in, 1) + 63) / 64 * 64 + 64);
            if (!src || !wd || !x || !xr || !y || !work) return fprintf(stderr, "gemv_bench: error: out of memory\n"), 1;
            for (int64_t i = 0; i < n_in * n_out; i++) src[i] = frand() * 0.05f;
            for (int64_t i = 0; i < n_in; i++) x[i] = frand();
            if (qf_quantize_rows_mt(types[ti].type, src, wd, n_out, n_in, NULL, n2) < 0)
                return fprintf(stderr, "gemv_bench: error: cannot quantize to %s\n", types[ti].name), 1;
            for (size_t c = 1; c < copies; c++) memcpy(wd + c * mat, wd, mat);
            const int th[2] = {1, n2};
            for (int i = 0; i < 2; i++) {
                double best = 1e30;
                for (int r = 0; r < reps; r++) {
                    const double t0 = now();
                    for (size_t c = 0; c < copies; c++) {
                        const qf_weight w = {.name = "w", .data = wd + c * mat, .type = types[ti].type,
                                             .n_in = n_in, .n_out = n_out, .row_bytes = (size_t)rb};
                        if (matvec(&w, x, y, xr, work, th[i]) != 0)
                            return fprintf(stderr, "gemv_bench: error: matmul failed\n"), 1;
                    }
                    const double dt = (now() - t0) / (double)copies;
                    if (dt < best) best = dt;
                }
                printf("%-5s %5lld -> %5lld  %d thread(s): %8.1f us  %6.1f GB/s  (%.0f%% of read bandwidth)\n",
                       types[ti].name, (long long)n_in, (long long)n_out, th[i], best * 1e6, (double)mat / best * 1e-9,
                       100.0 * (double)mat / best / g_read_bw[i]);
                fflush(stdout);
            }
            free(src);
            free(wd);
            free(x);
            free(xr);
            free(y);
            free(work);
        }
    }
    return 0;
}

/* ---- a model decoded token by token ---- */

/* The weight matmuls of one token, in the forward pass's order (dense llama layers). */
static int matmuls_of_token(const qf_model *m, float *x, float *y, float *xr, void *work, int nt) {
    for (int64_t l = 0; l < m->hp.n_layer; l++) {
        const qf_layer *L = &m->layers[l];
        const qf_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->ffn_gate, &L->ffn_up, &L->ffn_down};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++)
            if (ws[i]->data && matvec(ws[i], x, y, xr, work, nt) != 0) return 1;
    }
    return matvec(&m->output, x, y, xr, work, nt);
}

static int run_model(int n2, const char *path, int n_tok) {
    qf_model m;
    qf_err err = {0};
    if (qf_model_load(&m, path, &err) < 0) return fprintf(stderr, "gemv_bench: error: %s\n", err.msg), 1;
    qf_model_prefault(&m); /* as qforge-verify: no page faults in the timed passes */
    const qf_hparams *hp = &m.hp;
    const int64_t wmax = hp->n_ff > hp->n_vocab ? hp->n_ff : hp->n_vocab;
    float *x = aligned_alloc(64, (size_t)wmax * sizeof(float)), *xr = aligned_alloc(64, (size_t)wmax * sizeof(float));
    float *y = malloc((size_t)wmax * sizeof(float));
    void *work = aligned_alloc(64, (size_t)wmax * 2 + 4096);
    int32_t *tok = malloc((size_t)n_tok * sizeof(int32_t));
    if (!x || !xr || !y || !work || !tok) return fprintf(stderr, "gemv_bench: error: out of memory\n"), 1;
    for (int64_t i = 0; i < wmax; i++) x[i] = frand();
    for (int i = 0; i < n_tok; i++) tok[i] = (int32_t)((unsigned)(i * 7919 + 13) % (unsigned)hp->n_vocab);
    size_t bytes = m.output.row_bytes * (size_t)m.output.n_out;
    for (int64_t l = 0; l < hp->n_layer; l++) {
        const qf_layer *L = &m.layers[l];
        const qf_weight *ws[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->ffn_gate, &L->ffn_up, &L->ffn_down};
        for (size_t i = 0; i < 7; i++) bytes += ws[i]->row_bytes * (size_t)ws[i]->n_out;
    }
    const int th[2] = {1, n2};
    for (int i = 0; i < 2; i++) {
        qf_ctx c;
        if (qf_ctx_init(&c, &m, n_tok, 1, &err) < 0) return fprintf(stderr, "gemv_bench: error: %s\n", err.msg), 1;
        c.n_threads = th[i];
        double t0 = now();
        for (int t = 0; t < n_tok; t++)
            if (qf_forward(&c, tok + t, 1, 0, NULL, &err) < 0) return fprintf(stderr, "gemv_bench: error: %s\n", err.msg), 1;
        const double fwd = (now() - t0) / n_tok;
        qf_ctx_free(&c);
        t0 = now();
        for (int t = 0; t < n_tok; t++)
            if (matmuls_of_token(&m, x, y, xr, work, th[i]) != 0) return fprintf(stderr, "gemv_bench: error: matmul\n"), 1;
        const double mm = (now() - t0) / n_tok;
        printf("model %d thread(s): forward %.2f ms/token (%.1f tok/s), matmuls alone %.2f ms (%.1f GB/s of %.0f MB), rest %.2f ms\n",
               th[i], fwd * 1e3, 1.0 / fwd, mm * 1e3, (double)bytes / mm * 1e-9, (double)bytes * 1e-6, (fwd - mm) * 1e3);
        fflush(stdout);
    }
    free(x);
    free(xr);
    free(y);
    free(work);
    free(tok);
    qf_model_free(&m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        printf("usage: gemv_bench bw | kernels [TYPE...] | model FILE [TOKENS]\n"
               "  TYPE: f16 q8_0 q4_0 q4_k q6_k q4_1; env GEMV_BENCH_MB (256), GEMV_BENCH_REPS (5),\n"
               "  GEMV_BENCH_THREADS (2)\n");
        return argc < 2 ? 2 : 0;
    }
    const int n2 = env_int("GEMV_BENCH_THREADS", 2);
    use_cpu_time = env_int("GEMV_BENCH_CPU", 0) == 1;
    if (!strcmp(argv[1], "bw")) return run_bw(n2);
    if (!strcmp(argv[1], "kernels")) return run_kernels(n2, argc - 2, argv + 2);
    if (!strcmp(argv[1], "model") && argc >= 3) return run_model(n2, argv[2], argc > 3 ? atoi(argv[3]) : 32);
    fprintf(stderr, "gemv_bench: error: unknown mode '%s'\n", argv[1]);
    return 2;
}
