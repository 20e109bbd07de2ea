/* awq.h - qforge-quantize --method awq / awq+gptq: activation-aware scaling
 * (Lin et al. 2023, "AWQ") folded into a standard GGUF, on the
 * layer-sequential pipeline (layerwise.h).
 *
 * For a group of linears reading the same input x [n_in], a per-channel
 * scale s > 0 is searched: W' = W diag(s), x' = x / s, where the division
 * is folded into the operation producing x (so the model computes the same
 * function before quantization, exactly up to float rounding):
 *
 *   group (linears)       input produced by          fold x / s into
 *   attn_in (q, k, v)     attn_norm (RMSNorm)        attn_norm.weight / s
 *   attn_out (o)          attention (linear in v)    v's output rows / s  (and v's bias)
 *   ffn_in (gate, up)     ffn_norm (RMSNorm)         ffn_norm.weight / s
 *   ffn_down (down)       silu(gate) * up            up's output rows / s
 *   output (output)       output_norm (untied only)  output_norm.weight / s
 *
 * attn_out with GQA: o's input column c = head h, dim d reads v row
 * (h / (n_head / n_head_kv)) * head_dim_v + d, so several o columns read the
 * same v row; the scale is therefore one per v row (the mean |x| of a v row
 * is the mean over the o columns reading it) and broadcast to those columns.
 * Qwen2's q/k/v biases are added after the projection, so input scaling does
 * not touch them; v's bias is divided with v's rows for the attn_out fold.
 * Qwen3's q_norm/k_norm act on q/k after the projection: the attn_in fold
 * (into attn_norm) leaves q and k unchanged, so it stays exact. A tied
 * output (token_embd) is not scaled (it is also the embedding table).
 *
 * s = m^alpha, m = mean |x| per channel over the calibration tokens,
 * normalised by sqrt(max s * min s). The measured loss of a choice is the
 * group's relative output error sum_i ||W_i X - Q_i X||^2 / sum_i ||W_i X||^2
 * (through H = X X^T), where Q_i = deq(quant(W_i diag(s))) diag(1/s) is
 * what the codec writes: the tensor's planned type and quantizer (search
 * at --method search's full effort, or exact; fit weights = imatrix / s^2).
 * alpha runs over {0, 0.05, ..., 0.95}, each scored on a row sample (about
 * 512 rows of each tensor, a fixed stride) with the codec; the best is
 * then measured on all rows with the codec and taken
 * only if strictly below alpha 0's loss (measured the same way), so the
 * chosen loss never exceeds the un-scaled one. For
 * awq+gptq the chosen alpha is then measured again with GPTQ itself, on
 * H' = diag(1/s) (H + lambda I) diag(1/s) (lambda: GPTQ's damping, added
 * before the scaling so that GPTQ minimises the same damped objective as
 * without a scale), and kept only if that objective,
 * sum_i (W_i - Q_i)(H + lambda I)(W_i - Q_i)^T, is strictly below plain
 * GPTQ's (alpha 0, whose bytes are --method gptq's). By default the search runs on o,
 * down and output; q/k/v and gate/up keep s = 1 (awq.c's rule table says
 * why; all_groups searches them too).
 *
 * Clipping (awq, all but q and k): per codec block of each row, the weights
 * are clamped to +-shrink * max|w| (shrink = 1 - i/20, i = 0..9) before the
 * codec fits the block; the shrink with the least
 * block output error d^T H_bb d (d = codec result - unclamped weights,
 * unscaled, H_bb the block's part of H) wins. The clipped group is kept
 * only if its measured loss (full codec, all rows) is strictly below the
 * unclipped one. The stored block is a standard block. awq+gptq does not
 * clip: GPTQ compensates each rounding error itself.
 *
 * Bytes do not depend on the thread count. Memory: that of --method gptq
 * plus, per block, a copy of v and up as F32 and of two input Hessians
 * (awq+gptq). Finished tensors go to a block store (blockstore.h) as
 * GPTQ's do, so memory does not grow with depth.
 */
#ifndef QF_AWQ_H
#define QF_AWQ_H

#include <stddef.h>
#include <stdint.h>

#include "gptq_run.h"
#include "imatrix.h"
#include "qf_error.h"
#include "quantize.h"
#include "search.h"

typedef struct qf_awq_run_opts {
    const qf_gptq_run_opts *calib; /* calibration text, chunks, memory, progress; damping/act-order for awq+gptq */
    int gptq;                      /* 1: awq+gptq */
    double alpha;                  /* < 0: search the grid; else every group uses this alpha */
    int no_clip;                   /* 1: no clipping search (awq+gptq never clips) */
    int all_groups;                /* 1: search the norm-fed groups' scales too (default: ROWS groups and output) */
} qf_awq_run_opts;

typedef struct qf_awq_group_report {
    char name[64];                 /* "blk.3.attn_in", ..., "output" */
    double alpha;                  /* chosen */
    double loss0;                  /* relative output error at alpha = 0 (no clipping) */
    double loss;                   /* at the chosen alpha and clipping */
    double loss_final;             /* of what is written (clipping, GPTQ), relative */
    int folded;                    /* 0: scale 1 (no fold possible) */
    int clipped;                   /* 1: clipping kept (it lowered the measured loss) */
    int gptq_compared;             /* awq+gptq, the codec chose alpha > 0: loss0 and loss are GPTQ's
                                      damped objective at alpha 0 and at the choice (the smaller wins) */
    int no_tokens;                 /* an expert no calibration token reached: quantized as the usual
                                      path does, no scale, no clipping, losses 0 */
    double seconds;                /* wall time of the group's search and quantization */
    double cpu_seconds;            /* the process's CPU time over the same span (all threads) */
} qf_awq_group_report;

typedef struct qf_awq_report {
    size_t n;
    qf_awq_group_report *g;        /* in pipeline order */
    int64_t n_chunks, n_tokens;
    uint64_t hidden_bytes;
    int spilled;
    double forward_seconds, hessian_seconds, search_seconds; /* forward: the model's passes alone */
} qf_awq_report;

void qf_awq_report_free(qf_awq_report *r);

/* The scale of one group for a given alpha: s[n] from the channel means
 * m[n] (mean |x|), classes cls[n] (channels sharing a scale; NULL: each its
 * own) with n_cls classes. alpha = 0 gives s = 1. */
void qf_awq_scales(const double *m, const int64_t *cls, int64_t n, int64_t n_cls, double alpha, float *s);

/* The output error sum_r e_r^T H e_r of the rows of E, in float with
 * double partial sums (the scale search's loss kernel). Layout: H as
 * qf_awq_qf_hessian returns it (n_in rows of qf_awq_qf_pad(n_in) floats,
 * 64-byte aligned, zero padding); E [ceil(n_out / 4) * 4 rows of
 * qf_awq_qf_pad(n_in)], 64-byte aligned, zero padding. Symmetric H: only
 * the 64-column panels on and above the diagonal are read. The result does
 * not depend on n_threads. NAN when out of memory. */
int64_t qf_awq_qf_pad(int64_t n);
float *qf_awq_qf_hessian(const double *H, int64_t n, int n_threads); /* NULL: no memory; free() it */
double qf_awq_quad_error(const float *E, int64_t n_out, int64_t n_in, const float *Hf, int n_threads);

/* Run AWQ (and GPTQ with o->gptq) over the model at model_path for the
 * tensors of `plan`. On success the store (opened here, in $TMPDIR) holds
 * the output bytes of plan->t[i] in slot i (quantized linears and rescaled
 * norms/biases; empty for tensors left to the usual path); close it with
 * qf_blockstore_close. On failure it is closed already. search: the
 * options of the search quantizer for tensors whose plan says search. */
int qf_awq_run(const char *model_path, const qf_quant_plan *plan, const qf_imatrix *im, const qf_awq_run_opts *o,
               const qf_search_opts *search, qf_blockstore *store, qf_awq_report *rep, qf_err *err);

/* The alpha grid is scored on about QF_AWQ_GRID_ROWS rows of each tensor:
 * rows 0, stride, 2 stride, ... (awq.c; the memory planner sizes its scratch). */
#define QF_AWQ_GRID_ROWS 512
static inline int64_t qf_awq_grid_stride(int64_t n_out) {
    return n_out > QF_AWQ_GRID_ROWS ? n_out / QF_AWQ_GRID_ROWS : 1;
}

#endif
