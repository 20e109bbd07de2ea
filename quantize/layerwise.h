/* layerwise.h - the layer-sequential ("true sequential") calibration pipeline.
 *
 * The calibration chunks' hidden states [n_chunks * ctx, n_embd] F32 enter
 * block l after blocks 0..l-1 have been replaced by their quantized
 * versions. Inside a block the linears are visited in groups that read the
 * same input, in forward order:
 *
 *   ATTN_IN  (attn_q, attn_k, attn_v)  ATTN_OUT (attn_output)
 *   FFN_IN   (ffn_gate, ffn_up)        FFN_DOWN (ffn_down)
 *
 * and, after the last block, OUTPUT (output.weight, unless tied) reading the
 * final norm's output. A mixture-of-experts block has, instead of the two
 * FFN groups, per expert e in order FFN_IN (gate_e, up_e) and FFN_DOWN
 * (down_e), each H summed over the tokens the router sends to e only,
 * unweighted by the router's probabilities (a token that routes nowhere near
 * e says nothing about e; n_tokens may be 0). The router stays as stored.
 *
 * The block runs in stages, each over every chunk with the groups visited
 * so far replaced, each part of the block once per chunk: attn_in's input
 * is the attention norm of the hidden states; the attention (q, k, v, the
 * scores) gives attn_output's input, kept per chunk; attn_output moves the
 * hidden states to x + att Wo^T in place, whose FFN norm is the FFN_IN
 * input; gate and up give ffn_down's input (act(gate) * up), kept per
 * chunk; ffn_down then finishes the block in place. (With
 * fn_rewrites_producers the attention output and the FFN activation are
 * computed again, from the rewritten v and up, where they are read.) A MoE block's experts
 * are visited by passes through the expert FFN alone (the input of each
 * expert's matmul caught by the engine's hook). Each group's input is
 * accumulated: H = sum over tokens of x x^T (double, lower triangle with
 * qf_syrk_lower, then mirrored) and sum |x_j|, each summed per chunk and
 * the chunks' sums added in chunk order (H in row panels of at most 64 MiB);
 * with p->dist the chunks are split across ranks (chunk k on rank
 * k % size) and added on rank 0 in the same order: the same bytes for any
 * number of ranks (qf_dist.h). The caller's function gets the
 * group with its weights as F32 and may overwrite them (e.g. with their
 * quantized values); the next groups and blocks then run with what it left.
 *
 * Memory: the hidden states (4 * n_chunks * ctx * n_embd B, divided among
 * the ranks) and the kept activations (4 * n_chunks * ctx * max(n_head *
 * head_dim_v, n_ff) B, n_ff left out for MoE; none with
 * fn_rewrites_producers) stay in RAM up to mem_budget
 * and are otherwise kept in an unlinked temporary file (mapped; the kernel
 * pages it), plus the group's H
 * (8 * n_in^2 B, on every rank; while it accumulates only its lower
 * triangle is resident), one panel of a chunk's H
 * (up to 64 MiB), one chunk's group input (4 * ctx * n_in B, and 8 * ctx * n_in B
 * as double while it is summed) and the engine
 * for one chunk. The block's weights as F32 live in another unlinked file
 * (a MoE block's experts in RAM): a group's own are converted just before
 * its function runs, and the resident pages of the F32 weights, of H and of
 * the model's mapping are given back after each pass and group, so the
 * resident set does not grow with depth. A model of qf_model_load_rows
 * (model.h) is fetched part by part as the pipeline reaches it: the token
 * embedding, each block, the output matrix.
 * Bytes: everything is deterministic for any thread count (engine, syrk).
 */
#ifndef QF_LAYERWISE_H
#define QF_LAYERWISE_H

#include <stdint.h>

#include "calibrate.h"
#include "model.h"
#include "qf_dist.h"
#include "qf_error.h"

typedef struct qf_lw_group {
    int layer;                /* block index; -1 for OUTPUT */
    int expert;               /* MoE FFN groups: the expert whose views w[] are (of the stacked
                                 tensors named w[i]->name), H from its routed tokens only; else -1 */
    int n_layer;
    qf_site_kind kind;        /* calibrate.h's sites: ATTN_IN, ATTN_OUT, FFN_IN, FFN_DOWN, OUTPUT */
    int n;                    /* linears reading this input (1..3), forward order */
    const qf_weight *w[3];    /* the model's tensors (names, shapes, stored data) */
    float *wf[3];             /* their values as F32 [n_out * n_in]; may be overwritten */
    int wf_paged;             /* 1: wf[] lie in a shared file mapping, each from a page boundary to
                                 its own padding: the function may give their pages back
                                 (qf_release_range) and they fault back in as last written */
    int64_t n_in;
    double *H;                /* [n_in * n_in] full symmetric: sum over tokens of x x^T; the
                                 function may use it as workspace if it puts it back */
    const double *abs_sum;    /* [n_in] sum over tokens of |x_j| */
    int64_t n_tokens;
} qf_lw_group;

typedef int (*qf_lw_group_fn)(void *user, const qf_lw_group *g, qf_err *err);

typedef struct qf_lw_params {
    int64_t n_ctx;            /* tokens per chunk */
    int64_t max_chunks;       /* <= 0: all full chunks */
    int add_bos;              /* chunk's first token replaced by bos_id */
    int32_t bos_id;
    uint64_t mem_budget;      /* bytes of hidden states and kept activations in RAM; 0: a quarter of
                                 physical RAM */
    const char *tmp_dir;      /* for the spill file; NULL: $TMPDIR or /tmp */
    int n_threads;            /* threads for the engine and the accumulators; <= 1: one */
    /* progress: layer (n_layer = output), stage name ("attn_in", ...) */
    void (*progress)(void *user, int layer, int n_layer, const char *stage);
    void *progress_user;
    qf_dist *dist;            /* chunks split across ranks (qf_dist.h), fn run on every rank with
                                 the same sums (it may split its own work: qf_dist.h's
                                 collectives); NULL: one process */
    int fn_rewrites_producers; /* 1: fn may also rewrite the F32 weights that produce its group's
                                 input (v for attn_output, up for ffn_down: AWQ's folds); the
                                 stages after those groups then recompute the attention output
                                 and the FFN activation instead of keeping them */
} qf_lw_params;

typedef struct qf_lw_stats {
    int64_t n_chunks;
    int64_t n_tokens;
    uint64_t hidden_bytes;    /* hidden states and kept activations */
    int spilled;              /* some of them in a temporary file */
    double forward_seconds;   /* the engine's passes over the model (no H, no group function) */
    double hessian_seconds;   /* summing the groups' inputs: H, sum |x| */
    double callback_seconds;  /* time spent in the group function */
} qf_lw_stats;

/* Run the pipeline over tokens[n_tokens]; fn is called once per group.
 * QF_EINVAL if the text holds fewer than one chunk; QF_ERANGE for
 * non-finite weights; the group function's error is returned as is. */
int qf_layerwise_run(const qf_model *m, const int32_t *tokens, int64_t n_tokens, const qf_lw_params *p,
                     qf_lw_group_fn fn, void *user, qf_lw_stats *st, qf_err *err);

#endif
