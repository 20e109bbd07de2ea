/* memplan.h - predicted peak memory and disk of a qforge-quantize run, from
 * the plan alone (what --dry-run prints; the formulas of docs/gptq.md,
 * "Memory", and of docs/quantize.md).
 *
 * Every method: the process (PROC_BYTES), the input's metadata (twice: the
 * mapped header and its parsed copy) and the writer's step, the largest of
 * rows_per_chunk * ne0 * (4 + in + out bytes per element) over the
 * converted tensors (F32 buffer, the output buffer, the input pages of one
 * chunk until released).
 * gptq and awq add the largest of their stages (docs/gptq.md "Memory") on
 * top of the hidden states, a block's kept activation (not for awq, which
 * recomputes it), the engine for one chunk (one block's K/V cache), the
 * text, its tokens and the tokenizer's tables; per group reading n inputs:
 *   tokenizing the text: 30 bytes per byte (before the pipeline);
 *   the pass collecting its input: the pages of H's lower triangle, one
 *     panel of a chunk's H, the chunk as double, the group before as F32;
 *   converting its weights: 8 n^2 (H whole) and one conversion step;
 *   gptq's factor (8 n^2 and the band), sweep (8 n^2 less the half of H
 *     given back, the members as F32, their blocks and loss samples, the
 *     threads' tiles) and restore (8 n^2 and the samples);
 *   awq's search: H, its scaled and float copies, the scaled weights and
 *     values, the error rows, the members as F32, the producer it holds;
 *     awq+gptq GPTQ's copy of H, awq the clipping copies;
 *   output.weight: the same stages with its F32 copy throughout.
 * A directory input adds to gptq / awq its calibration model's header, the
 * one-row tensors, twice the bytes of one read (at most 32 MiB of stored
 * rows) and, on disk, the largest part (a block's, the embedding's or the
 * output's stored bytes).
 * Disk: the output file; gptq and awq also their temporary files (the
 * finished tensors, one block's weights as F32, hidden states and kept
 * activations beyond the budget).
 */
#ifndef QF_MEMPLAN_H
#define QF_MEMPLAN_H

#include <stdint.h>

#include "quantize.h"

typedef struct qf_quant_mem {
    uint64_t peak_rss;       /* bytes */
    char peak_at[64];        /* the stage that sets it ("writer", "blk.3.ffn_down weights", ...) */
    uint64_t out_bytes;      /* the output file(s) */
    uint64_t tmp_bytes;      /* temporary files at their largest */
    uint64_t disk_peak;      /* output and temporary files at the fullest moment */
    int64_t n_chunks;        /* calibration chunks assumed (gptq/awq) */
} qf_quant_mem;

/* Predict for plan (built by qf_quant_plan_build for o) with meta_bytes of
 * input metadata (file bytes - tensor bytes). The calibration chunks are
 * o's --calib-chunks, else the text's bytes / 3 tokens in chunks of ctx. */
void qf_quant_predict_memory(const qf_quant_plan *plan, uint64_t meta_bytes, const qf_quantize_opts *o,
                             qf_quant_mem *m);

#endif
