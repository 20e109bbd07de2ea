/* forward.h - the reference forward pass of a llama-family model (model.h).
 *
 * One sequence at a time: qf_forward() runs a batch of consecutive tokens at
 * positions n_past .. n_past+n-1, appends their keys/values to the F32 KV
 * cache and returns logits for the positions asked for. Perplexity calls it
 * once per chunk after qf_ctx_reset(); generation calls it with one token at
 * a time.
 *
 * Everything is computed in F32 (weights dequantized on the fly, see
 * matmul.h). Results are bit-identical for any thread count (qf_ctx.n_threads).
 */
#ifndef QF_FORWARD_H
#define QF_FORWARD_H

#include <stdint.h>

#include "qf_error.h"
#include "model.h"

/* Called with the input of every weight matmul (for activation statistics):
 * x is [T, w->n_in]. `layer` is -1 for the output projection. */
typedef void (*qf_matmul_hook)(void *user, int layer, const qf_weight *w, const float *x, int64_t T);

typedef struct qf_ctx {
    const qf_model *m;
    int64_t n_ctx;        /* KV capacity (positions) */
    int64_t n_batch;      /* max tokens per qf_forward call */
    int64_t n_past;       /* positions already in the KV cache */

    /* activations, [n_batch, width] */
    float *x;             /* [T, n_embd]  residual stream */
    float *xb;            /* [T, n_embd]  normed input of a sub-block */
    float *q;             /* [T, n_head * head_dim_k] */
    float *k;             /* [T, n_head_kv * head_dim_k] */
    float *v;             /* [T, n_head_kv * head_dim_v] */
    float *att;           /* [T, n_head * head_dim_v] attention output */
    float *proj;          /* [T, n_embd]  output of attn_output / ffn_down */
    float *gate;          /* [T, n_ff] */
    float *up;            /* [T, n_ff] */
    float *qkv;           /* phi3: [T, (n_head + 2 n_head_kv) * head_dim] fused projection, else NULL */
    float *gate_up;       /* phi3: [T, 2 n_ff] fused gate/up projection, else NULL */
    /* MoE (n_expert > 0), else NULL */
    float *router;        /* [T, n_expert] router logits, then probabilities */
    int32_t *sel;         /* [T, n_expert_used] chosen experts, best first */
    float *sel_w;         /* [T, n_expert_used] their weights (renormalized) */
    int32_t *rows;        /* [T] tokens routed to the expert at hand */
    float *xe;            /* [T, n_embd] their normed inputs */
    float *de;            /* [T, n_embd] the expert's outputs */
    float *moe_out;       /* [T, n_expert_used, n_embd] per-slot outputs */

    /* KV cache. Keys are stored transposed so that a query's scores against
     * all keys are a run of contiguous axpys:
     *   k_cache [n_layer][n_head_kv][head_dim_k][n_ctx]
     *   v_cache [n_layer][n_head_kv][n_ctx][head_dim_v] */
    float *k_cache;
    float *v_cache;

    /* RoPE: cos/sin of theta(pos, i) for pos < n_ctx, i < n_rot/2 */
    float *rope_cos;
    float *rope_sin;

    float *logits;        /* [n_batch, n_vocab], allocated when a caller passes none */
    float *xr;            /* [T, max n_in] activations rounded for a matmul, or the
                           * Q8 blocks of qf_matmul_q8 (fewer bytes) */

    /* 1 (default): quantize each matmul's activations like llama.cpp's CPU
     * backend (qf_act_type_llamacpp) so perplexities agree with
     * llama-perplexity: integer dot products (qf_matmul_q8) for the types it
     * has, rounded activations + the F32 kernel for the others;
     * 0: plain F32 activations, F32 kernel. */
    int act_llamacpp;
    /* 1: emulate llama.cpp's F16 KV cache (its default, -ctk/-ctv f16): keys,
     * values, queries and attention weights rounded to F16 before the two
     * attention products. 0 (default): everything in F32 (-ctk f32 -ctv f32). */
    int kv_f16;
    /* threads for each step (qf_threads.h); qf_ctx_init sets 1 */
    int n_threads;

    /* 1 (default): weights with a static FP8 input scale (an FP8 checkpoint's
     * input_scale) get their activations rounded through E4M3 first,
     * e4m3(x / s) * s, as a W8A8 engine computes; 0: plain activations. */
    int act_fp8;

    qf_matmul_hook hook;  /* optional */
    void *hook_user;
} qf_ctx;

int qf_ctx_init(qf_ctx *c, const qf_model *m, int64_t n_ctx, int64_t n_batch, qf_err *err);
void qf_ctx_free(qf_ctx *c);
void qf_ctx_reset(qf_ctx *c);  /* forget the sequence: n_past = 0 */

/* Run tokens[0..n) at positions n_past.. and advance n_past by n.
 * Writes the logits of tokens out_first..n-1 to logits[(t - out_first) * n_vocab]
 * (logits NULL -> c->logits). out_first == n computes no logits. A model of
 * qf_model_load_rows has its parts fetched on the way (model.h): every block
 * is read again per call; a read error is returned as is. */
int qf_forward(qf_ctx *c, const int32_t *tokens, int64_t n, int64_t out_first, float *logits, qf_err *err);

/* One transformer block alone: x [T, n_embd] (hidden states entering block
 * `layer`) is replaced by the block's output, computed with the weights L
 * (m->layers[layer] or a modified copy, e.g. quantized) exactly as
 * qf_forward computes that block. Tokens sit at positions n_past..n_past+T-1
 * and their K/V go into the cache slot of `layer`; n_past is not advanced
 * (the caller runs the chunk through every block, then resets). The matmul
 * hook is called as in qf_forward. */
int qf_forward_layer(qf_ctx *c, int64_t layer, const qf_layer *L, float *x, int64_t T, qf_err *err);

/* The parts of one block, in order, on the context's buffers; running all
 * five on c->x [T, n_embd] is qf_forward_layer (bit for bit):
 *   QF_PART_ATTN      c->x -> c->att [T, n_head * head_dim_v], the input of
 *                     attn_output (K/V into the cache slot of `layer`)
 *   QF_PART_ATTN_OUT  c->x += c->att Wo^T
 *   QF_PART_FFN_NORM  c->xb = rmsnorm(c->x) * ffn_norm, the FFN's input
 *   QF_PART_FFN_ACT   c->gate [T, n_ff] = act(xb Wgate^T) * (xb Wup^T), the
 *                     input of ffn_down (nothing for a mixture of experts)
 *   QF_PART_FFN_DOWN  c->x += c->gate Wdown^T (mixture of experts: the whole
 *                     expert FFN on c->xb)
 * A part reads only its inputs above (a caller may refill them between
 * parts); the matmul hook is called as in qf_forward. */
typedef enum { QF_PART_ATTN, QF_PART_ATTN_OUT, QF_PART_FFN_NORM, QF_PART_FFN_ACT, QF_PART_FFN_DOWN } qf_block_part;

int qf_forward_part(qf_ctx *c, int64_t layer, const qf_layer *L, qf_block_part part, int64_t T, qf_err *err);

/* Greedy (argmax, first index on ties) decoding: run prompt[0..n_prompt)
 * then append up to n_new tokens, stopping after a token for which
 * is_stop(stop_user, id) is true (is_stop may be NULL). out must hold
 * n_prompt + n_new ids; *n_out = prompt + generated count. kv_f16 as in qf_ctx. */
int qf_generate_greedy(const qf_model *m, const int32_t *prompt, int64_t n_prompt, int64_t n_new, int kv_f16,
                       int n_threads, int (*is_stop)(const void *stop_user, int32_t id), const void *stop_user,
                       int32_t *out, int64_t *n_out, qf_err *err);

#endif
