/* memplan_test.c - invariants of the predicted peak memory (memplan.h) on
 * synthetic Llama-shaped plans: GPTQ's peak grows with the FFN width, does
 * not depend on depth (only the temporary files do), holds at least the
 * whole Hessian of ffn_down, and stays under 8 GiB at Llama-3-70B widths
 * with 2 x 256 calibration tokens. The prediction against a measured peak
 * is tests/cli/gptq.sh "predict-rss-*". */
#include "qf_test.h"

#include "awq.h"
#include "ggml_types.h"
#include "gptq_run.h"
#include "memplan.h"
#include "quantize.h"

typedef struct shape {
    int64_t E, F, n_head, n_kv, V, n_layer;
} shape;

static void add(qf_quant_plan *p, const char *name, uint64_t ne0, uint64_t ne1, uint32_t type) {
    qf_quant_tensor_plan *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->ne[0] = ne0, t->ne[1] = ne1, t->ne[2] = t->ne[3] = 1;
    t->n_dims = ne1 > 1 ? 2 : 1;
    t->src_type = ne1 > 1 ? GGML_TYPE_F16 : GGML_TYPE_F32;
    t->in_nbytes = ne0 * ne1 * (ne1 > 1 ? 2 : 4);
    t->type = t->wanted_type = ne1 > 1 ? type : GGML_TYPE_F32;
    t->convert = t->type != t->src_type;
    uint64_t rs = 0;
    ggml_row_size(t->type, ne0, &rs);
    t->out_nbytes = rs * ne1;
    p->in_tensor_bytes += t->in_nbytes;
    p->out_tensor_bytes += t->out_nbytes;
    p->n_elements += ne0 * ne1;
}

/* A plan of s's tensors (F16 matrices as Q4_K, norms as F32). */
static void make_plan(qf_quant_plan *p, const shape *s) {
    memset(p, 0, sizeof *p);
    p->t = calloc((size_t)(3 + 9 * s->n_layer), sizeof *p->t);
    const int64_t hd = s->E / s->n_head, KV = s->n_kv * hd;
    add(p, "token_embd.weight", s->E, s->V, GGML_TYPE_Q4_K);
    add(p, "output_norm.weight", s->E, 1, 0);
    add(p, "output.weight", s->E, s->V, GGML_TYPE_Q6_K);
    for (int64_t l = 0; l < s->n_layer; l++) {
        char n[96];
#define T(what, ne0, ne1)                                                   \
        snprintf(n, sizeof n, "blk.%lld.%s.weight", (long long)l, what); \
        add(p, n, ne0, ne1, GGML_TYPE_Q4_K)
        T("attn_norm", s->E, 1);
        T("attn_q", s->E, s->E);
        T("attn_k", s->E, KV);
        T("attn_v", s->E, KV);
        T("attn_output", s->E, s->E);
        T("ffn_norm", s->E, 1);
        T("ffn_gate", s->E, s->F);
        T("ffn_up", s->E, s->F);
        T("ffn_down", s->F, s->E);
#undef T
    }
}

/* The prediction for s with --method method, chunks x ctx tokens. */
static qf_quant_mem predict(const shape *s, int method, int64_t chunks, int64_t ctx) {
    qf_quant_plan p;
    make_plan(&p, s);
    qf_gptq_run_opts g;
    memset(&g, 0, sizeof g);
    g.n_ctx = ctx;
    g.max_chunks = chunks;
    g.mem_budget = 1ull << 40; /* the hidden states in RAM whatever this machine has */
    g.n_threads = 2;
    qf_awq_run_opts a;
    memset(&a, 0, sizeof a);
    a.calib = &g;
    qf_quantize_opts o;
    qf_quantize_opts_init(&o);
    o.method = method;
    o.n_threads = 2;
    o.gptq = &g;
    o.awq = &a;
    qf_quant_mem m;
    qf_quant_predict_memory(&p, 1u << 20, &o, &m);
    qf_quant_plan_free(&p);
    return m;
}

static const shape LLAMA3_70B = {8192, 28672, 64, 8, 128256, 2};

static void test_gptq_peak_grows_with_ffn(qf_test *t) {
    static const int64_t F[] = {2816, 5632, 11008, 14336, 22016, 28672};
    uint64_t last = 0;
    for (size_t i = 0; i < sizeof F / sizeof *F; i++) {
        shape s = {2048, F[i], 32, 4, 32000, 2};
        const qf_quant_mem m = predict(&s, QF_QUANT_METHOD_GPTQ, 2, 256);
        CHECK(t, m.peak_rss > last, "n_ff %lld: %llu after %llu", (long long)F[i], (unsigned long long)m.peak_rss,
              (unsigned long long)last);
        /* ffn_down's H is whole (8 n_ff^2) while its weights are converted and when it is restored */
        CHECK(t, m.peak_rss >= 8ull * (uint64_t)(F[i] * F[i]), "n_ff %lld: %llu", (long long)F[i],
              (unsigned long long)m.peak_rss);
        last = m.peak_rss;
    }
}

static void test_peak_independent_of_depth(qf_test *t) {
    static const int methods[] = {QF_QUANT_METHOD_GPTQ, QF_QUANT_METHOD_AWQ, QF_QUANT_METHOD_AWQ_GPTQ};
    for (size_t k = 0; k < 3; k++) {
        shape s = {2048, 5632, 32, 4, 32000, 2};
        const qf_quant_mem m2 = predict(&s, methods[k], 8, 512);
        s.n_layer = 22;
        const qf_quant_mem m22 = predict(&s, methods[k], 8, 512);
        CHECK(t, m2.peak_rss == m22.peak_rss, "method %d: 2 layers %llu, 22 layers %llu (%s)", methods[k],
              (unsigned long long)m2.peak_rss, (unsigned long long)m22.peak_rss, m22.peak_at);
        CHECK(t, m22.tmp_bytes > m2.tmp_bytes && m22.out_bytes > m2.out_bytes, "method %d: disk does not grow",
              methods[k]);
    }
}

static void test_llama3_70b_widths_under_8_gib(qf_test *t) {
    shape s = LLAMA3_70B;
    const qf_quant_mem m2 = predict(&s, QF_QUANT_METHOD_GPTQ, 2, 256);
    s.n_layer = 80;
    const qf_quant_mem m80 = predict(&s, QF_QUANT_METHOD_GPTQ, 2, 256);
    CHECK(t, m2.peak_rss == m80.peak_rss, "2 layers %llu, 80 layers %llu", (unsigned long long)m2.peak_rss,
          (unsigned long long)m80.peak_rss);
    CHECK(t, m80.peak_rss < (8ull << 30), "%llu at %s", (unsigned long long)m80.peak_rss, m80.peak_at);
    CHECK(t, strstr(m80.peak_at, "ffn_down") != NULL, "peak at %s", m80.peak_at);
    /* 128 x 512 tokens: the hidden states and kept activations add 4 * 65536 * (8192 + 28672) bytes */
    const qf_quant_mem big = predict(&s, QF_QUANT_METHOD_GPTQ, 128, 512);
    const uint64_t more = 4ull * 65536 * (8192 + 28672) - 4ull * 512 * (8192 + 28672);
    CHECK(t, big.peak_rss >= m80.peak_rss + more, "%llu vs %llu + %llu", (unsigned long long)big.peak_rss,
          (unsigned long long)m80.peak_rss, (unsigned long long)more);
}

QF_TEST_MAIN(test_gptq_peak_grows_with_ffn, test_peak_independent_of_depth, test_llama3_70b_widths_under_8_gib)
