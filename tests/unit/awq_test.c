/* awq_test - AWQ's per-channel scales (awq.h): alpha 0 is the identity,
 * the normalisation, scales shared by a class (GQA: o columns of one v row),
 * monotone in the channel mean; on stories260K through qf_quantize: alpha 0
 * without clipping writes --method search's bytes, and the chosen scales
 * and clipping never raise a group's measured loss over alpha 0. The other
 * end-to-end properties (exact folding, threads, llama.cpp) are in
 * tests/cli/awq.sh. */
#include "qf_test.h"

#include "awq.h"
#include "gptq_run.h"
#include "quantize.h"

#include <stdlib.h>
#include <string.h>

static void test_alpha0_is_identity(qf_test *t) {
    double m[5] = {0.1, 3.0, 0.0, 7.5, 1e-9};
    float s[5];
    qf_awq_scales(m, NULL, 5, 5, 0.0, s);
    for (int j = 0; j < 5; j++) CHECK(t, s[j] == 1.0f, "s[%d] = %g", j, s[j]);
}

static void test_normalised(qf_test *t) {
    double m[6] = {0.5, 2.0, 8.0, 0.25, 1.0, 4.0};
    float s[6];
    for (int a = 1; a < 20; a++) {
        qf_awq_scales(m, NULL, 6, 6, a / 20.0, s);
        float mx = 0, mn = INFINITY;
        for (int j = 0; j < 6; j++) {
            mx = fmaxf(mx, s[j]);
            mn = fminf(mn, s[j]);
        }
        CHECK(t, fabs(sqrt((double)mx * mn) - 1.0) < 1e-6, "alpha %d/20: sqrt(max*min) = %g", a, sqrt((double)mx * mn));
        /* s_j / s_k = (m_j / m_k)^alpha */
        CHECK(t, fabs(s[2] / s[3] - pow(32.0, a / 20.0)) < 1e-4 * pow(32.0, a / 20.0), "ratio at alpha %d/20", a);
    }
}

static void test_classes_share(qf_test *t) {
    /* 4 o columns (2 q-heads x head_dim 2) reading 2 v rows (1 kv head):
     * column c reads v row c % 2 */
    double m[4] = {1.0, 4.0, 3.0, 8.0};
    int64_t cls[4] = {0, 1, 0, 1};
    float s[4];
    qf_awq_scales(m, cls, 4, 2, 0.5, s);
    CHECK(t, s[0] == s[2] && s[1] == s[3], "scales of one class differ: %g %g %g %g", s[0], s[1], s[2], s[3]);
    /* class means 2 and 6: ratio sqrt(3) */
    CHECK(t, fabs(s[1] / s[0] - sqrt(3.0)) < 1e-5, "class ratio %g", s[1] / s[0]);
}

static void test_dead_channel_finite(qf_test *t) {
    double m[3] = {0.0, 1.0, 100.0};
    float s[3];
    qf_awq_scales(m, NULL, 3, 3, 0.95, s);
    for (int j = 0; j < 3; j++) CHECK(t, isfinite(s[j]) && s[j] > 0, "s[%d] = %g", j, s[j]);
}

/* The loss kernel against the plain double sum, for shapes with padding
 * (n_in not a multiple of 64, n_out not of 4), and thread-count independence. */
static void test_quad_error(qf_test *t) {
    const int64_t shapes[3][2] = {{5, 70}, {9, 130}, {4, 64}};
    for (int c = 0; c < 3; c++) {
        const int64_t no = shapes[c][0], n = shapes[c][1], np = qf_awq_qf_pad(n), ro = (no + 3) / 4 * 4;
        double *X = malloc((size_t)(n * 3 * n) * sizeof *X), *H = calloc((size_t)(n * n), sizeof *H);
        float *E = aligned_alloc(64, (size_t)(ro * np) * sizeof *E);
        uint32_t st = 12345u + (uint32_t)c;
        for (int64_t k = 0; k < n * 3 * n; k++) {
            st = st * 1664525u + 1013904223u;
            X[k] = ((double)(st >> 8) / 16777216.0 - 0.5) * (1.0 + (double)(k % n) / (double)n);
        }
        for (int64_t i = 0; i < n; i++) /* H = X X^T: positive semi-definite */
            for (int64_t j = 0; j < n; j++)
                for (int64_t k = 0; k < 3 * n; k++) H[i * n + j] += X[i * 3 * n + k] * X[j * 3 * n + k];
        memset(E, 0, (size_t)(ro * np) * sizeof *E);
        for (int64_t r = 0; r < no; r++)
            for (int64_t j = 0; j < n; j++) {
                st = st * 1664525u + 1013904223u;
                E[r * np + j] = (float)((double)(st >> 8) / 16777216.0 - 0.5);
            }
        double ref = 0;
        for (int64_t r = 0; r < no; r++)
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < n; j++) ref += (double)E[r * np + i] * H[i * n + j] * (double)E[r * np + j];
        float *Hf = qf_awq_qf_hessian(H, n, 1);
        const double q1 = qf_awq_quad_error(E, no, n, Hf, 1), q2 = qf_awq_quad_error(E, no, n, Hf, 2);
        CHECK(t, fabs(q1 - ref) <= 1e-5 * fabs(ref), "%lldx%lld: kernel %.9g, reference %.9g", (long long)no, (long long)n,
              q1, ref);
        CHECK(t, q1 == q2, "%lldx%lld: 1 thread %.17g, 2 threads %.17g", (long long)no, (long long)n, q1, q2);
        free(X);
        free(H);
        free(E);
        free(Hf);
    }
}

/* qf_quantize of stories260K (F32) to `type` with the oracle imatrix:
 * --method `method`, AWQ options alpha/no_clip (calibration: 4 chunks of
 * 128 tokens of tinystories-gen/calib.txt), its report (zeroed first) in rep.
 * 0 when the data is missing or the run fails, rep then freed. */
static int quantize_260k(qf_test *t, const char *out, const char *type, int method, double alpha, int no_clip,
                         qf_awq_report *rep) {
    char in[1024], im[1024], cal[1024];
    if (rep) memset(rep, 0, sizeof *rep);
    if (!qf_test_data(t, "oracles/llamacpp/stories260K-F32.gguf", in, sizeof in) ||
        !qf_test_data(t, "oracles/llamacpp/stories260K-imatrix-wiki64x512.dat", im, sizeof im) ||
        !qf_test_data(t, "corpus/tinystories-gen/calib.txt", cal, sizeof cal))
        return 0;
    qf_quantize_opts o;
    qf_quantize_opts_init(&o);
    o.in_path = in;
    o.out_path = out;
    o.preset = qf_quant_preset_find(type);
    o.imatrix_path = im;
    o.method = method;
    o.n_threads = 2;
    qf_gptq_run_opts g;
    memset(&g, 0, sizeof g);
    g.calib_path = cal;
    g.n_ctx = 128;
    g.max_chunks = 4;
    g.n_threads = 2;
    qf_awq_run_opts a;
    memset(&a, 0, sizeof a);
    a.calib = &g;
    a.gptq = method == QF_QUANT_METHOD_AWQ_GPTQ;
    a.alpha = alpha;
    a.no_clip = no_clip;
    o.gptq = &g;
    o.awq = &a;
    o.awq_report = rep;
    qf_err err = {0};
    const int rc = qf_quantize(&o, NULL, &err);
    CHECK(t, rc == 0, "%s %s: %s", type, out, err.msg);
    if (rc && rep) qf_awq_report_free(rep);
    return rc == 0;
}

/* alpha 0 without clipping is the un-scaled quantization, byte for byte. */
static void test_alpha0_bytes(qf_test *t) {
    const char *types[] = {"Q4_0", "Q4_K_M"};
    for (int i = 0; i < 2; i++) {
        char a[512], b[512];
        snprintf(a, sizeof a, "%s/awq-a0-%s.gguf", qf_test_tmpdir(), types[i]);
        snprintf(b, sizeof b, "%s/awq-search-%s.gguf", qf_test_tmpdir(), types[i]);
        qf_awq_report rep;
        if (!quantize_260k(t, a, types[i], QF_QUANT_METHOD_AWQ, 0.0, 1, &rep) ||
            !quantize_260k(t, b, types[i], QF_QUANT_METHOD_SEARCH, -1, 0, NULL)) {
            qf_awq_report_free(&rep);
            return;
        }
        CHECK(t, rep.n > 0, "%s: no groups", types[i]);
        for (size_t k = 0; k < rep.n; k++)
            CHECK(t, rep.g[k].alpha == 0 && !rep.g[k].clipped, "%s %s: alpha %g clipped %d", types[i], rep.g[k].name,
                  rep.g[k].alpha, rep.g[k].clipped);
        CHECK(t, qf_test_same_file(a, b), "%s: awq --awq-alpha 0 --awq-no-clip differs from --method search", types[i]);
        qf_awq_report_free(&rep);
        remove(a);
        remove(b);
    }
}

/* The search never ends above alpha 0's measured loss, and it does move
 * (some group takes an alpha > 0 or clipping, else the check says nothing). */
static void test_loss_not_raised(qf_test *t) {
    const char *types[] = {"Q4_0", "Q2_K"};
    for (int i = 0; i < 2; i++) {
        char a[512];
        snprintf(a, sizeof a, "%s/awq-search-%s.gguf", qf_test_tmpdir(), types[i]);
        qf_awq_report rep;
        if (!quantize_260k(t, a, types[i], QF_QUANT_METHOD_AWQ, -1, 0, &rep)) return;
        int moved = 0;
        for (size_t k = 0; k < rep.n; k++) {
            const qf_awq_group_report *g = &rep.g[k];
            CHECK(t, g->loss <= g->loss0, "%s %s: alpha %g loss %.9g above alpha 0's %.9g", types[i], g->name, g->alpha,
                  g->loss, g->loss0);
            CHECK(t, g->alpha > 0 || g->clipped || g->loss == g->loss0, "%s %s: alpha 0 with loss %.9g != %.9g", types[i], g->name,
                  g->loss, g->loss0);
            moved |= g->alpha > 0 || g->clipped;
        }
        CHECK(t, rep.n > 0 && moved, "%s: %zu groups, none scaled", types[i], rep.n);
        qf_awq_report_free(&rep);
        remove(a);
    }
}

/* awq+gptq: a group whose codec search chose a scale keeps it only if
 * GPTQ's own (damped) objective at that scale is below plain GPTQ's, and
 * what is written is what was measured; some group is compared. */
static void test_gptq_loss_not_raised(qf_test *t) {
    const char *types[] = {"Q4_0", "Q3_K_M"};
    for (int i = 0; i < 2; i++) {
        char a[512];
        snprintf(a, sizeof a, "%s/awqg-%s.gguf", qf_test_tmpdir(), types[i]);
        qf_awq_report rep;
        if (!quantize_260k(t, a, types[i], QF_QUANT_METHOD_AWQ_GPTQ, -1, 0, &rep)) return;
        int compared = 0;
        for (size_t k = 0; k < rep.n; k++) {
            const qf_awq_group_report *g = &rep.g[k];
            CHECK(t, !g->clipped, "%s %s: clipped under awq+gptq", types[i], g->name);
            if (!g->gptq_compared) continue;
            compared++;
            CHECK(t, g->loss <= g->loss0, "%s %s: GPTQ objective %.9g at alpha %g above plain GPTQ's %.9g", types[i],
                  g->name, g->loss, g->alpha, g->loss0);
            CHECK(t, g->alpha == 0 ? g->loss == g->loss0 : g->loss < g->loss0, "%s %s: alpha %g kept with %.9g vs %.9g",
                  types[i], g->name, g->alpha, g->loss, g->loss0);
        }
        CHECK(t, compared > 0, "%s: no group compared against plain GPTQ", types[i]);
        qf_awq_report_free(&rep);
        remove(a);
    }
}

QF_TEST_MAIN(test_alpha0_bytes, test_loss_not_raised, test_gptq_loss_not_raised, test_quad_error, test_alpha0_is_identity, test_normalised, test_classes_share, test_dead_channel_finite)
