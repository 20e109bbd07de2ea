/* forward.c - llama-family forward pass over a batch of tokens of one sequence.
 *
 * Notation: T tokens in the batch, E = n_embd, H = n_head, Hkv = n_head_kv,
 * Dk/Dv = head dims, F = n_ff, V = n_vocab, P = n_past (position of token 0).
 *
 *   x = embed(tokens)                                   [T, E]
 *   for each layer:
 *     xb = rmsnorm(x) * attn_norm                       [T, E]
 *     q = xb Wq^T (+bq), k = xb Wk^T (+bk), v = xb Wv^T (+bv)
 *       (phi3: [q k v] = xb Wqkv^T)
 *     (qwen3) q, k = rmsnorm per head * q_norm/k_norm
 *     q, k = rope(q, k, pos = P + t)
 *     att[t, h] = softmax(q[t,h] . K[0..P+t, h/(H/Hkv)] / sqrt(Dk)) V
 *     x += att Wo^T
 *     xb = rmsnorm(x) * ffn_norm
 *     x += (silu(xb Wgate^T) * (xb Wup^T)) Wdown^T
 *       (phi3: [gate up] = xb Wup^T; MoE: sum over the top-k experts e of
 *        w_e * (silu(xb Wgate_e^T) * (xb Wup_e^T)) Wdown_e^T, w = renormalized
 *        softmax(xb Wrouter^T))
 *   logits = (rmsnorm(x) * output_norm) Wout^T          [T, V]
 *
 * Architecture variants (model.h): x = embed * embd_scale; q *= q_scale; the
 * scores are scaled by kq_scale (not 1/sqrt(Dk)), soft-capped
 * (cap * tanh(s / cap)) and, on even layers (every layer for phi3) with n_swa > 0, limited to the
 * last n_swa positions; each sub-block output may pass a post-norm
 * (post_attn_norm, post_ffw_norm) and is multiplied by residual_scale before
 * the residual add; the MLP may be GELU-gated; logits are divided by
 * logit_scale and soft-capped by final_softcap.
 */
#include "forward.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ggml_types.h"
#include "fp8.h"
#include "matmul.h"
#include "matmul_q8.h"
#include "numfmt.h"

#include "qf_threads.h"
#include <pthread.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define QF_FWD_AVX2 1
#ifdef __AVX512F__
#define QF_FWD_AVX512 1
#endif
#endif

/* ------------------------------------------------------------------ */
/* small vector kernels: each y[i] is computed the same way on every path */

/* out[j] = sum_i a[i] * M[i * ldm + j] for j < n, i < k: a row vector times a
 * row-major matrix. Each out[j] sums over i in order with fused multiply-adds,
 * so the AVX-512, AVX2 and scalar paths agree bit for bit. Attention uses it
 * twice: the scores of one query against n keys stored transposed
 * (a = q [Dk], M = K^T [Dk, n]) and the weighted sum of the values
 * (a = p [n_keys], M = V [n_keys, Dv]). */
static void row_times_matrix(const float *a, const float *M, int64_t ldm, int64_t k, int64_t n, float *out) {
    int64_t j = 0;
#ifdef QF_FWD_AVX512
    for (; j + 64 <= n; j += 64) { /* 16 columns per register, 4 registers */
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t i = 0; i < k; i++) {
            const __m512 ai = _mm512_set1_ps(a[i]);
            const float *m = M + i * ldm + j;
            a0 = _mm512_fmadd_ps(ai, _mm512_loadu_ps(m), a0);
            a1 = _mm512_fmadd_ps(ai, _mm512_loadu_ps(m + 16), a1);
            a2 = _mm512_fmadd_ps(ai, _mm512_loadu_ps(m + 32), a2);
            a3 = _mm512_fmadd_ps(ai, _mm512_loadu_ps(m + 48), a3);
        }
        _mm512_storeu_ps(out + j, a0);
        _mm512_storeu_ps(out + j + 16, a1);
        _mm512_storeu_ps(out + j + 32, a2);
        _mm512_storeu_ps(out + j + 48, a3);
    }
#endif
#ifdef QF_FWD_AVX2
    for (; j + 32 <= n; j += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t i = 0; i < k; i++) {
            const __m256 ai = _mm256_set1_ps(a[i]);
            const float *m = M + i * ldm + j;
            a0 = _mm256_fmadd_ps(ai, _mm256_loadu_ps(m), a0);
            a1 = _mm256_fmadd_ps(ai, _mm256_loadu_ps(m + 8), a1);
            a2 = _mm256_fmadd_ps(ai, _mm256_loadu_ps(m + 16), a2);
            a3 = _mm256_fmadd_ps(ai, _mm256_loadu_ps(m + 24), a3);
        }
        _mm256_storeu_ps(out + j, a0);
        _mm256_storeu_ps(out + j + 8, a1);
        _mm256_storeu_ps(out + j + 16, a2);
        _mm256_storeu_ps(out + j + 24, a3);
    }
    for (; j + 8 <= n; j += 8) {
        __m256 acc = _mm256_setzero_ps();
        for (int64_t i = 0; i < k; i++) acc = _mm256_fmadd_ps(_mm256_set1_ps(a[i]), _mm256_loadu_ps(M + i * ldm + j), acc);
        _mm256_storeu_ps(out + j, acc);
    }
#endif
    for (; j < n; j++) {
        float acc = 0.0f;
        for (int64_t i = 0; i < k; i++) acc = fmaf(a[i], M[i * ldm + j], acc);
        out[j] = acc;
    }
}

/* out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i]; the mean is accumulated in double. */
static void rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
    const float scale = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (int64_t i = 0; i < n; i++) out[i] = (x[i] * scale) * w[i];
}

/* x[i] = round_f16(x[i]) for i < n with the vectorized row converters
 * (bit-identical to scalar qf_f16_to_f32(qf_f32_to_f16(x))), through a small stack buffer. */
/* Matmul inputs are 64-byte aligned so that 32-byte loads of rows whose
 * length is a multiple of 16 floats never split a cache line. */
static float *alloc_matmul_input(size_t bytes) { return aligned_alloc(64, (bytes + 63) / 64 * 64); }

static void round_f16_row(float *x, int64_t n) {
    uint16_t h[256];
    for (int64_t i = 0; i < n; i += 256) {
        const size_t m = (size_t)(n - i < 256 ? n - i : 256);
        qf_f32_to_f16_row(x + i, h, m);
        qf_f16_to_f32_row(h, x + i, m);
    }
}

/* ggml-cpu's GELU (tanh form) goes through a table: x is rounded to fp16
 * and the table holds fp16(gelu(x)) for every fp16 x; x <= -10 gives 0 and
 * x >= 10 gives x. The table is a constant, filled once. */
static float gelu_table[1 << 16];
static pthread_once_t gelu_once = PTHREAD_ONCE_INIT;

static float gelu_tanh(float x) {
    const float sqrt_2_over_pi = 0.79788456080286535587989211986876f, a = 0.044715f;
    return 0.5f * x * (1.0f + tanhf(sqrt_2_over_pi * x * (1.0f + a * x * x)));
}

static void gelu_table_fill(void) {
    for (uint32_t i = 0; i < (1u << 16); i++)
        gelu_table[i] = qf_f16_to_f32(qf_f32_to_f16(gelu_tanh(qf_f16_to_f32((uint16_t)i))));
}

/* y = gelu(x) as llama.cpp's CPU backend computes it. */
static inline float gelu_ggml(float x) {
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    return gelu_table[qf_f32_to_f16(x)];
}

static int failed_matmul(int rc, const qf_weight *w, qf_err *err) {
    if (rc == QF_ENOMEM) return qf_set_err(err, rc, "out of memory in matmul '%s'", w->name);
    return qf_set_err(err, rc, "cannot multiply with tensor '%s' (type %u)", w->name, w->type);
}

static int matmul(qf_ctx *c, int layer, const qf_weight *w, const float *x, int64_t T, float *y, qf_err *err) {
    if (c->hook) c->hook(c->hook_user, layer, w, x, T);
    int rc;
    if (c->act_fp8 && w->act_scale > 0) { /* W8A8: activations through E4M3 with the static scale */
        const int64_t n = w->n_in;
        float *xr = c->xr;
        memcpy(xr, x, (size_t)(T * n) * sizeof(float));
#pragma omp parallel for schedule(static) num_threads(qf_threads_for((double)(T * n), c->n_threads))
        for (int64_t t = 0; t < T; t++) qf_fp8_fake_quant_row(xr + t * n, w->act_scale, n);
        rc = qf_matmul(w, xr, T, y, c->n_threads);
        return rc < 0 ? failed_matmul(rc, w, err) : 0;
    }
    if (c->act_llamacpp && qf_matmul_q8_supported(w->type)) { /* integer dots on x quantized to Q8 (once, inside) */
        const int fits = qf_matmul_q8_work_bytes(w->type, w->n_in, T) <= (size_t)(T * w->n_in) * sizeof(float);
        rc = qf_matmul_q8(w, x, T, y, fits ? c->xr : NULL, c->n_threads);
        return rc < 0 ? failed_matmul(rc, w, err) : 0;
    }
    const uint32_t act = c->act_llamacpp ? qf_act_type_llamacpp(w->type) : GGML_TYPE_F32;
    if (act != GGML_TYPE_F32) {
        const int64_t n = w->n_in;
        float *xr = c->xr;
/* rounding to a block type: about four operations per element */
#pragma omp parallel for schedule(static) num_threads(qf_threads_for(4.0 * (double)(T * n), c->n_threads))
        for (int64_t t = 0; t < T; t++) qf_round_activations(act, x + t * n, xr + t * n, n);
        x = xr;
    }
    rc = qf_matmul(w, x, T, y, c->n_threads);
    return rc < 0 ? failed_matmul(rc, w, err) : 0;
}

/* Element-wise passes over [T, n] (norms, RoPE, SwiGLU, residuals) are split
 * among the threads by token when they are large enough (qf_threads_for):
 * every element is computed the same way on any thread, so results do not
 * depend on the thread count, and the other thread does not idle in
 * OpenMP's wait between two matmuls. */
#define PAR(work) num_threads(qf_threads_for((double)(work), c->n_threads))

/* y[t, :] += b */
static void add_bias(float *y, const qf_weight *b, int64_t T) {
    if (!b->data) return;
    const float *bias = b->data;
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < b->n_in; i++) y[t * b->n_in + i] += bias[i];
}

/* ------------------------------------------------------------------ */

/* "2.7 TB": a byte count for a message. */
static void fmt_bytes(char *buf, size_t n, double bytes) {
    static const char *const unit[] = {"B", "KB", "MB", "GB", "TB", "PB", "EB"};
    int u = 0;
    while (bytes >= 1000.0 && u < 6) bytes /= 1000.0, u++;
    snprintf(buf, n, "%.1f %s", bytes, unit[u]);
}

/* The engine's buffer sizes for n_ctx/n_batch, overflow-checked and bounded
 * by the machine's memory before anything is allocated; too large -> QF_ENOMEM
 * with a message naming the quantity and its size. */
static int check_ctx_size(const qf_model *m, int64_t n_ctx, int64_t n_batch, qf_err *err) {
    const qf_hparams *hp = &m->hp;
    const uint64_t KD = (uint64_t)(hp->n_head_kv * hp->head_dim_k), VD = (uint64_t)(hp->n_head_kv * hp->head_dim_v);
    const uint64_t QD = (uint64_t)(hp->n_head * hp->head_dim_k), OD = (uint64_t)(hp->n_head * hp->head_dim_v);
    const uint64_t E = (uint64_t)hp->n_embd, F = (uint64_t)hp->n_ff, f = sizeof(float);
    uint64_t kv, per_tok, batch, total;
    int ovf = __builtin_mul_overflow((uint64_t)hp->n_layer, KD + VD, &kv) ||
              __builtin_mul_overflow(kv, (uint64_t)n_ctx, &kv) || __builtin_mul_overflow(kv, f, &kv);
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    const double mem = pages > 0 && page > 0 ? (double)pages * (double)page : 0.0;
    char need[32], have[32];
    fmt_bytes(have, sizeof have, mem);
    if (ovf || (mem > 0 && (double)kv > mem)) {
        fmt_bytes(need, sizeof need,
                  (double)hp->n_layer * (double)(KD + VD) * (double)n_ctx * (double)f);
        return qf_set_err(err, QF_ENOMEM, "%s: KV cache for ctx %lld would need %s (block_count %lld x %llu K+V "
                          "values per token), more than this machine's %s", m->path, (long long)n_ctx, need,
                          (long long)hp->n_layer, (unsigned long long)(KD + VD), have);
    }
    per_tok = 3 * E + QD + KD + VD + 2 * OD + 3 * F;
    if (hp->arch == QF_ARCH_PHI3) per_tok += QD + KD + VD + 2 * F;
    if (hp->n_expert > 0) per_tok += (uint64_t)hp->n_expert + (uint64_t)hp->n_expert_used * (E + 2) + 3 * E + 1;
    ovf = __builtin_mul_overflow(per_tok * f, (uint64_t)n_batch, &batch) ||
          __builtin_add_overflow(kv, batch, &total) ||
          __builtin_add_overflow(total, (uint64_t)hp->n_rot * f * (uint64_t)n_ctx, &total);
    if (ovf || (mem > 0 && (double)total > mem)) {
        fmt_bytes(need, sizeof need, (double)per_tok * (double)f * (double)n_batch + (double)kv);
        return qf_set_err(err, QF_ENOMEM, "%s: buffers for ctx %lld and batch %lld would need %s, more than this "
                          "machine's %s", m->path, (long long)n_ctx, (long long)n_batch, need, have);
    }
    return 0;
}

int qf_ctx_init(qf_ctx *c, const qf_model *m, int64_t n_ctx, int64_t n_batch, qf_err *err) {
    memset(c, 0, sizeof *c);
    const qf_hparams *hp = &m->hp;
    if (n_ctx <= 0 || n_batch <= 0)
        return qf_set_err(err, QF_EINVAL, "context size %lld and batch %lld must be positive",
                          (long long)n_ctx, (long long)n_batch);
    if (n_batch > n_ctx) n_batch = n_ctx;
    int rc = check_ctx_size(m, n_ctx, n_batch, err);
    if (rc < 0) return rc;
    c->m = m;
    c->n_ctx = n_ctx;
    c->n_batch = n_batch;
    const int64_t E = hp->n_embd, F = hp->n_ff;
    const int64_t QD = hp->n_head * hp->head_dim_k, KD = hp->n_head_kv * hp->head_dim_k;
    const int64_t VD = hp->n_head_kv * hp->head_dim_v, OD = hp->n_head * hp->head_dim_v;
    const size_t f = sizeof(float);
    const size_t B = (size_t)n_batch, L = (size_t)hp->n_layer, N = (size_t)n_ctx;
    c->x = malloc(B * E * f);
    c->xb = alloc_matmul_input(B * E * f);
    c->q = malloc(B * QD * f);
    c->k = malloc(B * KD * f);
    c->v = malloc(B * VD * f);
    c->att = alloc_matmul_input(B * OD * f);
    c->proj = malloc(B * E * f);
    c->gate = alloc_matmul_input(B * F * f);
    c->up = malloc(B * F * f);
    c->k_cache = calloc(L * KD * N, f);
    c->v_cache = calloc(L * VD * N, f);
    c->rope_cos = malloc(N * (hp->n_rot / 2) * f);
    c->rope_sin = malloc(N * (hp->n_rot / 2) * f);
    c->logits = NULL; /* allocated on first use: callers usually pass their own buffer */
    int extra_ok = 1;
    if (hp->arch == QF_ARCH_PHI3) {
        c->qkv = malloc(B * (QD + KD + VD) * f);
        c->gate_up = malloc(B * 2 * F * f);
        extra_ok = c->qkv && c->gate_up;
    }
    if (hp->n_expert > 0) {
        const size_t X = (size_t)hp->n_expert, K = (size_t)hp->n_expert_used;
        c->router = malloc(B * X * f);
        c->sel = malloc(B * K * sizeof *c->sel);
        c->sel_w = malloc(B * K * f);
        c->rows = malloc(B * sizeof *c->rows);
        c->xe = alloc_matmul_input(B * E * f);
        c->de = malloc(B * E * f);
        c->moe_out = malloc(B * K * E * f);
        extra_ok = c->router && c->sel && c->sel_w && c->rows && c->xe && c->de && c->moe_out;
    }
    int64_t max_in = E > F ? E : F;
    if (OD > max_in) max_in = OD;
    c->xr = alloc_matmul_input(B * max_in * f);
    c->act_llamacpp = 1;
    c->n_threads = 1;
    c->act_fp8 = 1;
    if (!c->x || !c->xb || !c->q || !c->k || !c->v || !c->att || !c->proj || !c->gate || !c->up ||
        !c->k_cache || !c->v_cache || !c->rope_cos || !c->rope_sin || !c->xr || !extra_ok) {
        qf_ctx_free(c);
        return qf_set_err(err, QF_ENOMEM, "%s: out of memory for a context of %lld tokens", m->path, (long long)n_ctx);
    }

    /* theta(pos, i) = pos * freq_scale * base^(-2i / n_rot) / freq_factor[i],
     * computed in double and rounded once; cos and sin are scaled by the
     * attention factor (longrope). Longrope takes its long factors when the
     * context exceeds the original one, as llama.cpp decides by n_ctx. */
    const int64_t half = hp->n_rot / 2;
    const float *ff = m->rope_freqs.data;
    if (!ff && m->rope_long.data) ff = n_ctx > hp->n_ctx_orig ? m->rope_long.data : m->rope_short.data;
    const double mscale = hp->rope_attn_factor > 0.0f ? (double)hp->rope_attn_factor : 1.0;
    for (int64_t i = 0; i < half; i++) {
        double inv_freq = pow((double)hp->rope_freq_base, -2.0 * (double)i / (double)hp->n_rot);
        if (ff) inv_freq /= (double)ff[i];
        for (int64_t p = 0; p < n_ctx; p++) {
            double theta = (double)p * (double)hp->rope_freq_scale * inv_freq;
            c->rope_cos[p * half + i] = (float)(cos(theta) * mscale);
            c->rope_sin[p * half + i] = (float)(sin(theta) * mscale);
        }
    }
    return 0;
}

void qf_ctx_free(qf_ctx *c) {
    if (!c) return;
    free(c->x); free(c->xb); free(c->q); free(c->k); free(c->v); free(c->att);
    free(c->proj); free(c->gate); free(c->up); free(c->k_cache); free(c->v_cache);
    free(c->rope_cos); free(c->rope_sin); free(c->logits); free(c->xr);
    free(c->qkv); free(c->gate_up); free(c->router); free(c->sel); free(c->sel_w); free(c->rows);
    free(c->xe); free(c->de); free(c->moe_out);
    memset(c, 0, sizeof *c);
}

void qf_ctx_reset(qf_ctx *c) { c->n_past = 0; }

/* Rotate one head vector x[head_dim] in place at position pos. */
static void rope_head(const qf_ctx *c, float *x, int64_t pos) {
    const qf_hparams *hp = &c->m->hp;
    const int64_t half = hp->n_rot / 2;
    const float *cs = c->rope_cos + pos * half, *sn = c->rope_sin + pos * half;
    if (hp->rope_type == QF_ROPE_NORM) {
        for (int64_t i = 0; i < half; i++) { /* pair (x[2i], x[2i+1]) */
            float x0 = x[2 * i], x1 = x[2 * i + 1];
            x[2 * i] = x0 * cs[i] - x1 * sn[i];
            x[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
        }
    } else {
        for (int64_t i = 0; i < half; i++) { /* pair (x[i], x[i + n_rot/2]) */
            float x0 = x[i], x1 = x[i + half];
            x[i] = x0 * cs[i] - x1 * sn[i];
            x[i + half] = x0 * sn[i] + x1 * cs[i];
        }
    }
}

/* att[t, h*Dv..] for all tokens t and query heads h of one layer.
 * Query t sits at position P + t and sees keys 0..P+t (causal). */
static int attention(qf_ctx *c, int64_t layer, int64_t T) {
    const qf_hparams *hp = &c->m->hp;
    const int64_t H = hp->n_head, Hkv = hp->n_head_kv, Dk = hp->head_dim_k, Dv = hp->head_dim_v;
    const int64_t N = c->n_ctx, P = c->n_past;
    const int64_t group = H / Hkv; /* query heads per KV head */
    const float scale = hp->kq_scale, cap = hp->attn_softcap;
    /* Gemma 2: even layers see only the last n_swa positions; Phi-3: every layer */
    const int64_t window = hp->n_swa > 0 && (hp->swa_all_layers || layer % 2 == 0) ? hp->n_swa : 0;
    const float *Kl = c->k_cache + layer * Hkv * Dk * N; /* [Hkv][Dk][N] */
    const float *Vl = c->v_cache + layer * Hkv * N * Dv; /* [Hkv][N][Dv] */
    int failed = 0;
    const int64_t n_items = H * T;
    /* up to (P+T)*(Dk+Dv) multiply-adds per item, plus the softmax: counted twice */
    const int n_threads = qf_threads_for(2.0 * (double)n_items * (double)(P + T) * (double)(Dk + Dv), c->n_threads);
#pragma omp parallel num_threads(n_threads)
    {
        float *s = malloc((size_t)(P + T) * sizeof(float));
        float *q16 = malloc((size_t)Dk * sizeof(float));
        if (!s || !q16) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 4)
        for (int64_t item = 0; item < n_items; item++) {
            if (!s || !q16) continue;
            const int64_t h = item % H, t = item / H;
            const int64_t n_keys = P + t + 1;
            const int64_t kvh = h / group;
            const float *q = c->q + t * H * Dk + h * Dk;
            if (c->kv_f16) { /* llama.cpp converts q to the cache type for K^T q */
                memcpy(q16, q, (size_t)Dk * sizeof(float));
                round_f16_row(q16, Dk);
                q = q16;
            }
            const float *Kt = Kl + kvh * Dk * N;
            const float *Vh = Vl + kvh * N * Dv;
            float *out = c->att + t * H * Dv + h * Dv;

            /* s[j] = q . k_j * scale, soft-capped; keys before j0 are outside the window */
            row_times_matrix(q, Kt, N, Dk, n_keys, s); /* s[j] = q . k_j */
            const int64_t j0 = window && n_keys > window ? n_keys - window : 0;
            float mx = -INFINITY;
            for (int64_t j = j0; j < n_keys; j++) {
                s[j] *= scale;
                if (cap > 0.0f) s[j] = tanhf(s[j] * (1.0f / cap)) * cap;
                if (s[j] > mx) mx = s[j];
            }
            /* softmax with the max subtracted; sum in double */
            for (int64_t j = 0; j < j0; j++) s[j] = 0.0f;
            for (int64_t j = j0; j < n_keys; j++) s[j] = expf(s[j] - mx);
            double sum = 0.0; /* a separate loop: no sum kept live across expf calls */
            for (int64_t j = j0; j < n_keys; j++) sum += s[j];
            const float inv = (float)(1.0 / sum);
            /* p_j = s_j / sum; out = sum_j p_j v_j */
            for (int64_t j = j0; j < n_keys; j++) s[j] *= inv;
            if (c->kv_f16) round_f16_row(s, n_keys);
            row_times_matrix(s, Vh, Dv, n_keys, Dv, out); /* out = sum_j p_j v_j */
        }
        free(s);
        free(q16);
    }
    return failed ? QF_ENOMEM : 0;
}

/* Route token t: softmax of its router logits r[X] in place, the K best
 * experts (highest first, lower id first on ties) into sel[K] and their
 * probabilities, renormalized to sum 1, into w[K]. */
static void route_token(float *r, int64_t X, int64_t K, int32_t *sel, float *w) {
    float mx = -INFINITY;
    for (int64_t e = 0; e < X; e++) mx = r[e] > mx ? r[e] : mx;
    double sum = 0.0;
    for (int64_t e = 0; e < X; e++) sum += (r[e] = expf(r[e] - mx));
    for (int64_t e = 0; e < X; e++) r[e] = (float)(r[e] / sum);
    float wsum = 0.0f;
    for (int64_t k = 0; k < K; k++) {
        int32_t best = -1;
        for (int64_t e = 0; e < X; e++) {
            int taken = 0;
            for (int64_t j = 0; j < k; j++) taken |= sel[j] == e;
            if (!taken && (best < 0 || r[e] > r[best])) best = (int32_t)e;
        }
        sel[k] = best;
        w[k] = r[best];
        wsum += w[k];
    }
    for (int64_t k = 0; k < K; k++) w[k] /= wsum;
}

/* The MoE feed-forward of block l on the normed c->xb [T, E] into c->proj
 * [T, E]: per token the K routed experts' SwiGLU outputs, weighted and summed
 * in slot order. Each expert runs once on the tokens routed to it (the
 * matmul hook sees its view, also with 0 tokens, so statistics count calls
 * as llama.cpp's per-batch expert product does). */
static int moe_ffn(qf_ctx *c, int64_t l, const qf_layer *L, int64_t T, qf_err *err) {
    const qf_hparams *hp = &c->m->hp;
    const int64_t E = hp->n_embd, F = hp->n_ff, X = hp->n_expert, K = hp->n_expert_used;
    int rc;
    if ((rc = matmul(c, (int)l, &L->ffn_gate_inp, c->xb, T, c->router, err)) < 0) return rc; /* [T, X] */
    for (int64_t t = 0; t < T; t++) route_token(c->router + t * X, X, K, c->sel + t * K, c->sel_w + t * K);
    for (int64_t e = 0; e < X; e++) {
        int64_t n = 0;
        for (int64_t t = 0; t < T; t++)
            for (int64_t k = 0; k < K; k++)
                if (c->sel[t * K + k] == e) {
                    c->rows[n] = (int32_t)(t * K + k); /* token t, slot k */
                    memcpy(c->xe + n * E, c->xb + t * E, (size_t)E * sizeof(float));
                    n++;
                }
        if (n == 0) { /* no token: only the hooks hear of the call */
            if (c->hook) {
                c->hook(c->hook_user, (int)l, &L->gate_exps[e], c->xe, 0);
                c->hook(c->hook_user, (int)l, &L->up_exps[e], c->xe, 0);
                c->hook(c->hook_user, (int)l, &L->down_exps[e], c->gate, 0);
            }
            continue;
        }
        if ((rc = matmul(c, (int)l, &L->gate_exps[e], c->xe, n, c->gate, err)) < 0) return rc; /* [n, F] */
        if ((rc = matmul(c, (int)l, &L->up_exps[e], c->xe, n, c->up, err)) < 0) return rc;     /* [n, F] */
        for (int64_t i = 0; i < n * F; i++) {
            const float g = c->gate[i];
            c->gate[i] = g / (1.0f + expf(-g)) * c->up[i];
        }
        if ((rc = matmul(c, (int)l, &L->down_exps[e], c->gate, n, c->de, err)) < 0) return rc; /* [n, E] */
        for (int64_t r = 0; r < n; r++)
            memcpy(c->moe_out + (int64_t)c->rows[r] * E, c->de + r * E, (size_t)E * sizeof(float));
    }
    for (int64_t t = 0; t < T; t++) {
        float *out = c->proj + t * E;
        for (int64_t i = 0; i < E; i++) out[i] = 0.0f;
        for (int64_t k = 0; k < K; k++) {
            const float w = c->sel_w[t * K + k], *o = c->moe_out + (t * K + k) * E;
            for (int64_t i = 0; i < E; i++) out[i] += o[i] * w;
        }
    }
    return 0;
}

/* x[E] += sub-block output y[E]: y is first normed by `post` (when the
 * layer has it) and scaled by residual_scale (when not 1). y is clobbered. */
static void residual_add(float *x, float *y, const qf_weight *post, const qf_hparams *hp) {
    const int64_t E = hp->n_embd;
    if (post->data) rmsnorm(y, y, post->data, E, hp->norm_eps);
    if (hp->residual_scale != 1.0f)
        for (int64_t i = 0; i < E; i++) y[i] *= hp->residual_scale;
    for (int64_t i = 0; i < E; i++) x[i] += y[i];
}

/* QF_PART_ATTN: c->x [T, E] -> c->att [T, H*Dv], the attention output
 * before attn_output (tokens at positions n_past..n_past+T-1; their K/V go
 * into cache slot `l`). */
static int part_attn(qf_ctx *c, int64_t l, const qf_layer *L, int64_t T, qf_err *err) {
    const qf_hparams *hp = &c->m->hp;
    const int64_t E = hp->n_embd;
    const int64_t H = hp->n_head, Hkv = hp->n_head_kv, Dk = hp->head_dim_k, Dv = hp->head_dim_v;
    const int64_t N = c->n_ctx, P = c->n_past;
    int rc;
#pragma omp parallel for schedule(static) PAR(T * E)
    for (int64_t t = 0; t < T; t++) rmsnorm(c->xb + t * E, c->x + t * E, L->attn_norm.data, E, hp->norm_eps);
    if (L->wqkv.data) { /* phi3: one projection [T, H*Dk + Hkv*Dk + Hkv*Dv], split */
        const int64_t QD = H * Dk, KD = Hkv * Dk, VD = Hkv * Dv, W = QD + KD + VD;
        if ((rc = matmul(c, (int)l, &L->wqkv, c->xb, T, c->qkv, err)) < 0) return rc;
        for (int64_t t = 0; t < T; t++) {
            memcpy(c->q + t * QD, c->qkv + t * W, (size_t)QD * sizeof(float));
            memcpy(c->k + t * KD, c->qkv + t * W + QD, (size_t)KD * sizeof(float));
            memcpy(c->v + t * VD, c->qkv + t * W + QD + KD, (size_t)VD * sizeof(float));
        }
    } else {
        if ((rc = matmul(c, (int)l, &L->wq, c->xb, T, c->q, err)) < 0) return rc; /* [T, H*Dk]   */
        if ((rc = matmul(c, (int)l, &L->wk, c->xb, T, c->k, err)) < 0) return rc; /* [T, Hkv*Dk] */
        if ((rc = matmul(c, (int)l, &L->wv, c->xb, T, c->v, err)) < 0) return rc; /* [T, Hkv*Dv] */
    }
    add_bias(c->q, &L->bq, T);
    add_bias(c->k, &L->bk, T);
    add_bias(c->v, &L->bv, T);
#pragma omp parallel for schedule(static) PAR(T * (H + Hkv) * Dk)
    for (int64_t t = 0; t < T; t++) {
        float *qt = c->q + t * H * Dk, *kt = c->k + t * Hkv * Dk;
        if (L->q_norm.data) /* qwen3: RMSNorm of each head before RoPE */
            for (int64_t h = 0; h < H; h++) rmsnorm(qt + h * Dk, qt + h * Dk, L->q_norm.data, Dk, hp->norm_eps);
        if (L->k_norm.data)
            for (int64_t h = 0; h < Hkv; h++) rmsnorm(kt + h * Dk, kt + h * Dk, L->k_norm.data, Dk, hp->norm_eps);
        for (int64_t h = 0; h < H; h++) rope_head(c, qt + h * Dk, P + t);
        for (int64_t h = 0; h < Hkv; h++) rope_head(c, kt + h * Dk, P + t);
        if (hp->q_scale != 1.0f) /* gemma: the query is scaled, not the scores */
            for (int64_t i = 0; i < H * Dk; i++) qt[i] *= hp->q_scale;
    }
    /* append k (transposed) and v to the cache */
    float *Kl = c->k_cache + l * Hkv * Dk * N, *Vl = c->v_cache + l * Hkv * N * Dv;
    if (c->kv_f16) {
        round_f16_row(c->k, T * Hkv * Dk);
        round_f16_row(c->v, T * Hkv * Dv);
    }
    for (int64_t t = 0; t < T; t++) {
        for (int64_t h = 0; h < Hkv; h++) {
            for (int64_t d = 0; d < Dk; d++) Kl[(h * Dk + d) * N + P + t] = c->k[t * Hkv * Dk + h * Dk + d];
            memcpy(Vl + (h * N + P + t) * Dv, c->v + t * Hkv * Dv + h * Dv, (size_t)Dv * sizeof(float));
        }
    }
    if ((rc = attention(c, l, T)) < 0) return qf_set_err(err, rc, "out of memory in attention");
    return 0;
}

/* QF_PART_ATTN_OUT: c->x += c->att Wo^T (through the post-norm and scale). */
static int part_attn_out(qf_ctx *c, int64_t l, const qf_layer *L, int64_t T, qf_err *err) {
    const qf_hparams *hp = &c->m->hp;
    const int64_t E = hp->n_embd;
    int rc;
    if ((rc = matmul(c, (int)l, &L->wo, c->att, T, c->proj, err)) < 0) return rc; /* [T, E] */
#pragma omp parallel for schedule(static) PAR(T * E)
    for (int64_t t = 0; t < T; t++) residual_add(c->x + t * E, c->proj + t * E, &L->post_attn_norm, hp);
    return 0;
}

/* QF_PART_FFN_NORM: c->xb = rmsnorm(c->x) * ffn_norm. */
static void part_ffn_norm(qf_ctx *c, const qf_layer *L, int64_t T) {
    const qf_hparams *hp = &c->m->hp;
    const int64_t E = hp->n_embd;
#pragma omp parallel for schedule(static) PAR(T * E)
    for (int64_t t = 0; t < T; t++) rmsnorm(c->xb + t * E, c->x + t * E, L->ffn_norm.data, E, hp->norm_eps);
}

/* QF_PART_FFN_ACT: c->gate [T, F] = act(xb Wgate^T) * (xb Wup^T), the input
 * of ffn_down; nothing for a mixture of experts. */
static int part_ffn_act(qf_ctx *c, int64_t l, const qf_layer *L, int64_t T, qf_err *err) {
    const qf_hparams *hp = &c->m->hp;
    const int64_t F = hp->n_ff;
    int rc;
    if (L->gate_exps) return 0;
    if (L->ffn_gate_up.data) { /* phi3: [T, 2F] = gate rows, then up rows */
        if ((rc = matmul(c, (int)l, &L->ffn_gate_up, c->xb, T, c->gate_up, err)) < 0) return rc;
        for (int64_t t = 0; t < T; t++) {
            memcpy(c->gate + t * F, c->gate_up + t * 2 * F, (size_t)F * sizeof(float));
            memcpy(c->up + t * F, c->gate_up + t * 2 * F + F, (size_t)F * sizeof(float));
        }
    } else {
        if ((rc = matmul(c, (int)l, &L->ffn_gate, c->xb, T, c->gate, err)) < 0) return rc; /* [T, F] */
        if ((rc = matmul(c, (int)l, &L->ffn_up, c->xb, T, c->up, err)) < 0) return rc;     /* [T, F] */
    }
    if (hp->ffn_act == QF_FFN_GELU) pthread_once(&gelu_once, gelu_table_fill);
#pragma omp parallel for schedule(static) PAR(T * F)
    for (int64_t t = 0; t < T; t++) {
        for (int64_t i = t * F; i < (t + 1) * F; i++) {
            const float g = c->gate[i];
            if (hp->ffn_act == QF_FFN_GELU) c->gate[i] = gelu_ggml(g) * c->up[i]; /* gelu(g) * u */
            else c->gate[i] = g / (1.0f + expf(-g)) * c->up[i]; /* silu(g) * u */
        }
    }
    return 0;
}

/* QF_PART_FFN_DOWN: c->x += c->gate Wdown^T, or for a mixture of experts
 * c->x += moe(c->xb); through the post-norm and scale. */
static int part_ffn_down(qf_ctx *c, int64_t l, const qf_layer *L, int64_t T, qf_err *err) {
    const qf_hparams *hp = &c->m->hp;
    const int64_t E = hp->n_embd;
    int rc;
    if (L->gate_exps) rc = moe_ffn(c, l, L, T, err);
    else rc = matmul(c, (int)l, &L->ffn_down, c->gate, T, c->proj, err); /* [T, E] */
    if (rc < 0) return rc;
#pragma omp parallel for schedule(static) PAR(T * E)
    for (int64_t t = 0; t < T; t++) residual_add(c->x + t * E, c->proj + t * E, &L->post_ffw_norm, hp);
    return 0;
}

int qf_forward_part(qf_ctx *c, int64_t l, const qf_layer *L, qf_block_part part, int64_t T, qf_err *err) {
    switch (part) {
    case QF_PART_ATTN: return part_attn(c, l, L, T, err);
    case QF_PART_ATTN_OUT: return part_attn_out(c, l, L, T, err);
    case QF_PART_FFN_NORM: part_ffn_norm(c, L, T); return 0;
    case QF_PART_FFN_ACT: return part_ffn_act(c, l, L, T, err);
    case QF_PART_FFN_DOWN: return part_ffn_down(c, l, L, T, err);
    }
    return qf_set_err(err, QF_EINVAL, "unknown block part %d", (int)part);
}

/* One transformer block on c->x [T, E] in place (tokens at positions
 * n_past..n_past+T-1; KV cache slot `l`), with the block's weights L: its
 * parts in order. */
static int forward_layer(qf_ctx *c, int64_t l, const qf_layer *L, int64_t T, qf_err *err) {
    int rc;
    for (int part = QF_PART_ATTN; part <= QF_PART_FFN_DOWN; part++)
        if ((rc = qf_forward_part(c, l, L, (qf_block_part)part, T, err)) < 0) return rc;
    return 0;
}

int qf_forward_layer(qf_ctx *c, int64_t layer, const qf_layer *L, float *x, int64_t T, qf_err *err) {
    if (T <= 0 || T > c->n_batch || c->n_past + T > c->n_ctx || layer < 0 || layer >= c->m->hp.n_layer)
        return qf_set_err(err, QF_EINVAL, "layer %lld: batch of %lld tokens at %lld does not fit", (long long)layer,
                          (long long)T, (long long)c->n_past);
    const size_t bytes = (size_t)(T * c->m->hp.n_embd) * sizeof(float);
    memcpy(c->x, x, bytes);
    int rc = forward_layer(c, layer, L, T, err);
    if (rc == 0) memcpy(x, c->x, bytes);
    return rc;
}

int qf_forward(qf_ctx *c, const int32_t *tokens, int64_t T, int64_t out_first, float *logits, qf_err *err) {
    const qf_model *m = c->m;
    const qf_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, V = hp->n_vocab;
    const int64_t N = c->n_ctx, P = c->n_past;
    int rc;
    if (T <= 0 || T > c->n_batch)
        return qf_set_err(err, QF_EINVAL, "batch of %lld tokens (max %lld)", (long long)T, (long long)c->n_batch);
    if (P + T > N)
        return qf_set_err(err, QF_EINVAL, "context full: %lld + %lld tokens exceed %lld", (long long)P,
                          (long long)T, (long long)N);
    if (out_first < 0 || out_first > T) return qf_set_err(err, QF_EINVAL, "bad logits range");
    if (!logits && T > out_first) {
        if (!c->logits) c->logits = malloc((size_t)c->n_batch * (size_t)V * sizeof(float));
        if (!c->logits) return qf_set_err(err, QF_ENOMEM, "out of memory for %lld x %lld logits",
                                          (long long)c->n_batch, (long long)V);
        logits = c->logits;
    }

    /* x = embed(tokens)  [T, E]; a model of qf_model_load_rows fetches each part as it is reached */
    if ((rc = qf_model_fetch(m, -1, err)) < 0) return rc;
    for (int64_t t = 0; t < T; t++) {
        if (tokens[t] < 0 || tokens[t] >= V)
            return qf_set_err(err, QF_EINVAL, "token id %d out of range (vocabulary %lld)", tokens[t], (long long)V);
        if (qf_weight_row(&m->tok_embd, tokens[t], c->x + t * E) < 0)
            return qf_set_err(err, QF_EUNSUPPORTED, "cannot read row of '%s'", m->tok_embd.name);
        if (hp->embd_scale != 1.0f)
            for (int64_t i = 0; i < E; i++) c->x[t * E + i] *= hp->embd_scale;
    }

    for (int64_t l = 0; l < hp->n_layer; l++)
        if ((rc = qf_model_fetch(m, l, err)) < 0 || (rc = forward_layer(c, l, &m->layers[l], T, err)) < 0) return rc;

    /* logits for tokens out_first..T-1 */
    const int64_t n_out = T - out_first;
    if (n_out > 0) {
        if ((rc = qf_model_fetch(m, m->tied_output ? -1 : hp->n_layer, err)) < 0) return rc;
#pragma omp parallel for schedule(static) PAR(n_out * E)
        for (int64_t t = 0; t < n_out; t++)
            rmsnorm(c->xb + t * E, c->x + (out_first + t) * E, m->output_norm.data, E, hp->norm_eps);
        if ((rc = matmul(c, -1, &m->output, c->xb, n_out, logits, err)) < 0) return rc; /* [n_out, V] */
        if (hp->logit_scale != 1.0f || hp->final_softcap > 0.0f) {
            const float inv_scale = 1.0f / hp->logit_scale, cap = hp->final_softcap;
#pragma omp parallel for schedule(static) PAR(n_out * V)
            for (int64_t i = 0; i < n_out * V; i++) {
                float y = logits[i];
                if (hp->logit_scale != 1.0f) y *= inv_scale;
                if (cap > 0.0f) y = tanhf(y * (1.0f / cap)) * cap;
                logits[i] = y;
            }
        }
    }
    c->n_past += T;
    return 0;
}

int qf_generate_greedy(const qf_model *m, const int32_t *prompt, int64_t n_prompt, int64_t n_new, int kv_f16,
                       int n_threads, int (*is_stop)(const void *stop_user, int32_t id), const void *stop_user,
                       int32_t *out, int64_t *n_out, qf_err *err) {
    const int64_t V = m->hp.n_vocab;
    *n_out = 0;
    if (n_prompt <= 0) return qf_set_err(err, QF_EINVAL, "greedy decoding needs at least one prompt token");
    qf_ctx c;
    float *logits = malloc((size_t)V * sizeof(float));
    if (!logits) return qf_set_err(err, QF_ENOMEM, "out of memory");
    int rc = qf_ctx_init(&c, m, n_prompt + n_new, n_prompt, err);
    if (rc < 0) {
        free(logits);
        return rc;
    }
    c.kv_f16 = kv_f16;
    c.n_threads = n_threads;
    memcpy(out, prompt, (size_t)n_prompt * sizeof *out);
    int64_t n = n_prompt;
    /* the prompt in one batch (logits of its last token), then one token at a time */
    rc = qf_forward(&c, prompt, n_prompt, n_prompt - 1, logits, err);
    while (rc == 0 && n < n_prompt + n_new) {
        int32_t best = 0;
        for (int64_t i = 1; i < V; i++)
            if (logits[i] > logits[best]) best = (int32_t)i;
        out[n++] = best;
        if ((is_stop && is_stop(stop_user, best)) || n == n_prompt + n_new) break;
        rc = qf_forward(&c, &out[n - 1], 1, 0, logits, err);
    }
    *n_out = n;
    qf_ctx_free(&c);
    free(logits);
    return rc;
}
