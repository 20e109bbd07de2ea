/* gptq_bench - time the GPTQ solver's stages at one linear's shape.
 *
 *   gptq_bench N_IN N_OUT TYPE [THREADS [SEED]]   TYPE q4_k|q6_k|q4_0|q2_k|q3_k (default threads 1)
 *
 * H is a Kac-Murdock-Szego matrix (rho 0.9, positive definite) scaled by
 * random per-input factors, W random; prints the CPU seconds of the
 * factorisation (qf_gptq_prepare), the sweep (qf_gptq_quantize_prep, search
 * fit as the pipeline uses) and two output errors on 256 rows, the loss
 * ||WX - QX||^2 / ||WX||^2 on those rows, and an FNV-1a hash of the blocks (equal hashes: equal bytes). A
 * benchmark, not a test: tests/unit/gptq_test.c checks the results. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ggml_types.h"
#include "gptq.h"
#include "gptq_grid.h"
#include "bench_util.h"

static double cpu_now(void) { return bench_now(1); }
static double wall_now(void) { return bench_now(0); }

static uint64_t rng = BENCH_SEED;
static float frand(void) { return bench_frand(&rng); }

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: gptq_bench N_IN N_OUT q4_k|q6_k|q4_0|q2_k|q3_k|TYPE [THREADS [SEED]]\n");
        return 2;
    }
    const int64_t n = atoll(argv[1]), n_out = atoll(argv[2]);
    const int nt = argc > 4 ? atoi(argv[4]) : 1;
    if (argc > 5) rng ^= (uint64_t)atoll(argv[5]) * 0x2545F4914F6CDD1Dull;
    uint32_t type;
    if (!strcmp(argv[3], "q4_k")) type = GGML_TYPE_Q4_K;
    else if (!strcmp(argv[3], "q6_k")) type = GGML_TYPE_Q6_K;
    else if (!strcmp(argv[3], "q4_0")) type = GGML_TYPE_Q4_0;
    else if (!strcmp(argv[3], "q2_k")) type = GGML_TYPE_Q2_K;
    else if (!strcmp(argv[3], "q3_k")) type = GGML_TYPE_Q3_K;
    else if (ggml_type_from_name(argv[3]) >= 0 && qf_gptq_supports((uint32_t)ggml_type_from_name(argv[3])))
        type = (uint32_t)ggml_type_from_name(argv[3]);
    else {
        fprintf(stderr, "gptq_bench: error: unknown type '%s'\n", argv[3]);
        return 2;
    }
    qf_gptq_grid g;
    qf_gptq_grid_get(type, &g);
    if (n <= 0 || n_out <= 0 || n % g.block) {
        fprintf(stderr, "gptq_bench: error: N_IN must be a positive multiple of %d\n", g.block);
        return 2;
    }
    double *H = malloc((size_t)(n * n) * sizeof *H);
    float *W = malloc((size_t)(n_out * n) * sizeof *W), *Q = malloc((size_t)(n_out * n) * sizeof *Q);
    float *s = malloc((size_t)n * sizeof *s), *qw = malloc((size_t)n * sizeof *qw);
    const size_t bytes = (size_t)(n_out * (n / g.block) * g.block_bytes);
    uint8_t *dst = malloc(bytes);
    if (!H || !W || !Q || !s || !qw || !dst) return 1;
    for (int64_t i = 0; i < n; i++) s[i] = 0.5f + fabsf(frand());
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) H[i * n + j] = pow(0.9, (double)llabs(i - j)) * s[i] * s[j];
    for (int64_t i = 0; i < n_out * n; i++) W[i] = 0.02f * frand();
    for (int64_t i = 0; i < n; i++) qw[i] = (float)H[i * n + i];
    qf_gptq_opts o;
    qf_gptq_opts_init(&o);
    o.n_threads = nt;
    o.fit = QF_GPTQ_FIT_SEARCH;
    o.fit_weights = qw;
    qf_gptq_prep p;
    qf_err err = {0};
    double c0 = cpu_now(), w0 = wall_now();
    if (qf_gptq_prepare(H, n, &o, &p, &err)) {
        fprintf(stderr, "gptq_bench: error: %s\n", err.msg);
        return 1;
    }
    double c1 = cpu_now(), w1 = wall_now();
    if (qf_gptq_quantize_prep(type, W, n_out, &p, &o, dst, Q, &err)) {
        fprintf(stderr, "gptq_bench: error: %s\n", err.msg);
        return 1;
    }
    double c2 = cpu_now(), w2 = wall_now();
    qf_gptq_prep_free(&p);
    const int64_t nr = n_out < 256 ? n_out : 256;
    const double e0 = qf_gptq_output_error(W, NULL, nr, n, H, nt), e = qf_gptq_output_error(W, Q, nr, n, H, nt) / e0;
    double c3 = cpu_now(), w3 = wall_now();
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < bytes; i++) h = (h ^ dst[i]) * 1099511628211ull;
    printf("n_in %lld n_out %lld %s threads %d: cpu s factor %.3f sweep %.3f (%.3f ms/row) report %.3f | wall s "
           "%.3f %.3f %.3f | hash %016llx loss %.6g\n",
           (long long)n, (long long)n_out, argv[3], nt, c1 - c0, c2 - c1, 1e3 * (c2 - c1) / (double)n_out, c3 - c2,
           w1 - w0, w2 - w1, w3 - w2, (unsigned long long)h, e);
    free(H); free(W); free(Q); free(s); free(qw); free(dst);
    return 0;
}
