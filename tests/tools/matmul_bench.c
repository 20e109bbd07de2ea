/* matmul_bench - time qf_matmul at the TinyLlama-1.1B shapes.
 *
 *   matmul_bench [TYPE [T [REPS]]]     TYPE f32|f16|bf16|q8_0|q4_0|q4_1|q4_k|q6_k (default f16),
 *                                      T tokens (512), REPS (5)
 *
 * For each shape n_in -> n_out (2048 -> 2048 (wq, wo), 2048 -> 256 (wk, wv),
 * 2048 -> 5632 (gate, up), 5632 -> 2048 (down)) multiplies random weights of
 * TYPE with T random token rows REPS times and prints the best time and
 * GFLOP/s (2 * T * n_in * n_out / s), then the layer-weighted total (the 7
 * matmuls of one layer). Quantized types go through qf_matmul_q8 (activations
 * quantized like llama.cpp, integer dots), as the forward pass does; their
 * GFLOP/s count each multiply-add as 2 operations too. Threads: OMP_NUM_THREADS. A benchmark, not a test:
 * the results are not checked (tests/unit/engine_test.c does that).
 * MATMUL_BENCH_CPU=1 times by process CPU time (see now()). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ggml_types.h"
#include "codecs.h"
#include "matmul.h"
#include "matmul_q8.h"
#include "numfmt.h"
#include "bench_util.h"

/* MATMUL_BENCH_CPU=1: time by process CPU time instead of the wall clock
 * (with 1 thread on a busy machine, that leaves out the time the process
 * waited for a CPU). */
static int use_cpu_time;

static double now(void) { return bench_now(use_cpu_time); }

static uint64_t rng = BENCH_SEED;
static float frand(void) { return bench_frand(&rng); }

int main(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: matmul_bench [f32|f16|bf16|q8_0|q4_0|q4_1|q4_k|q6_k [T [REPS]]]\n");
        return 0;
    }
    const char *cpu = getenv("MATMUL_BENCH_CPU");
    use_cpu_time = cpu && !strcmp(cpu, "1");
    const char *tname = argc > 1 ? argv[1] : "f16";
    const int64_t T = argc > 2 ? atoll(argv[2]) : 512;
    const int reps = argc > 3 ? atoi(argv[3]) : 5;
    uint32_t type;
    if (!strcmp(tname, "f32")) type = GGML_TYPE_F32;
    else if (!strcmp(tname, "f16")) type = GGML_TYPE_F16;
    else if (!strcmp(tname, "bf16")) type = GGML_TYPE_BF16;
    else if (!strcmp(tname, "q8_0")) type = GGML_TYPE_Q8_0;
    else if (!strcmp(tname, "q4_0")) type = GGML_TYPE_Q4_0;
    else if (!strcmp(tname, "q4_1")) type = GGML_TYPE_Q4_1;
    else if (!strcmp(tname, "q4_k")) type = GGML_TYPE_Q4_K;
    else if (!strcmp(tname, "q6_k")) type = GGML_TYPE_Q6_K;
    else {
        fprintf(stderr, "matmul_bench: error: unknown type '%s'\n", tname);
        return 2;
    }
    if (T <= 0 || reps <= 0) {
        fprintf(stderr, "matmul_bench: error: T and REPS must be positive\n");
        return 2;
    }
    static const int64_t shapes[][3] = {{2048, 2048, 2}, {2048, 256, 2}, {2048, 5632, 2}, {5632, 2048, 1}};
    double total_s = 0, total_flop = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t n_in = shapes[s][0], n_out = shapes[s][1], per_layer = shapes[s][2];
        const int quant = type != GGML_TYPE_F32 && type != GGML_TYPE_F16 && type != GGML_TYPE_BF16;
        uint64_t rb;
        if (ggml_row_size(type, (uint64_t)n_in, &rb) != 0) return 1;
        uint8_t *wd = malloc((size_t)rb * (size_t)n_out);
        float *src = malloc((size_t)n_in * (size_t)n_out * sizeof(float));
        float *x = aligned_alloc(64, (size_t)T * (size_t)n_in * sizeof(float));
        float *y = malloc((size_t)T * (size_t)n_out * sizeof(float));
        void *work = quant ? aligned_alloc(64, (qf_matmul_q8_work_bytes(type, n_in, T) + 63) / 64 * 64) : NULL;
        if (!wd || !src || !x || !y || (quant && !work)) {
            fprintf(stderr, "matmul_bench: error: out of memory\n");
            return 1;
        }
        for (int64_t i = 0; i < n_in * n_out; i++) {
            const float v = frand() * 0.05f;
            src[i] = v;
            if (type == GGML_TYPE_F32) ((float *)wd)[i] = v;
            else if (type == GGML_TYPE_F16) ((uint16_t *)wd)[i] = qf_f32_to_f16(v);
            else if (type == GGML_TYPE_BF16) ((uint16_t *)wd)[i] = qf_f32_to_bf16(v);
        }
        if (quant && qf_quantize_rows_mt(type, src, wd, n_out, n_in, NULL, omp_get_max_threads()) < 0) {
            fprintf(stderr, "matmul_bench: error: cannot quantize to %s\n", tname);
            return 1;
        }
        for (int64_t i = 0; i < T * n_in; i++) x[i] = frand();
        qf_weight w = {.name = "w", .data = wd, .type = type, .n_in = n_in, .n_out = n_out, .row_bytes = (size_t)rb};
        double best = 1e30;
        for (int r = 0; r < reps; r++) {
            const double t0 = now();
            const int rc = quant ? qf_matmul_q8(&w, x, T, y, work, omp_get_max_threads())
                                 : qf_matmul(&w, x, T, y, omp_get_max_threads());
            if (rc != 0) {
                fprintf(stderr, "matmul_bench: error: matmul failed\n");
                return 1;
            }
            const double dt = now() - t0;
            if (dt < best) best = dt;
        }
        const double flop = 2.0 * (double)T * (double)n_in * (double)n_out;
        printf("%s T=%lld %5lld -> %5lld: %8.2f ms  %6.1f GFLOP/s  (y[0]=%g)\n", tname, (long long)T,
               (long long)n_in, (long long)n_out, best * 1e3, flop / best * 1e-9, (double)y[0]);
        total_s += best * per_layer;
        total_flop += flop * per_layer;
        free(wd);
        free(src);
        free(x);
        free(y);
        free(work);
    }
    printf("%s T=%lld layer: %8.2f ms  %6.1f GFLOP/s\n", tname, (long long)T, total_s * 1e3, total_flop / total_s * 1e-9);
    return 0;
}
