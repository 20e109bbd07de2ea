/* memplan.c - predicted peak memory and disk of a quantize run (memplan.h). */
#include "memplan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "awq.h"
#include "ggml_types.h"
#include "gptq.h"
#include "gptq_run.h"

#define PROC_BYTES (4ull << 20)   /* the program, libc, OpenMP and thread stacks */
#define RELEASE_BYTES (64ull << 20) /* stored bytes converted to F32 between page releases (layerwise.c) */
#define CALIB_BYTES (8ull << 20)  /* the calibration run's fixed part: tokenizer tables, engine setup */

typedef struct lin {
    const qf_quant_tensor_plan *t;
    int64_t n_in, n_out;
    int gptq;                     /* solved by GPTQ (else the writer's usual path) */
} lin;

static const char *group_names[4][3] = {
    {"attn_q", "attn_k", "attn_v"}, {"attn_output", NULL, NULL}, {"ffn_gate", "ffn_up", NULL}, {"ffn_down", NULL, NULL}};
static const char *fused_names[4] = {"attn_qkv", NULL, "ffn_gate_up", NULL};

static int find_lin(const qf_quant_plan *p, const char *name, lin *out) {
    const long i = qf_quant_plan_find(p, name);
    if (i < 0) return 0;
    const qf_quant_tensor_plan *t = &p->t[i];
    out->t = t;
    out->n_in = (int64_t)t->ne[0];
    out->n_out = (int64_t)(t->ne[1] * t->ne[2] * t->ne[3]);
    out->gptq = t->convert && qf_gptq_supports(t->type) && t->ne[2] * t->ne[3] == 1;
    return 1;
}

/* The linears of block l in group order; n[g] per group. 0 if none. */
static int block_lins(const qf_quant_plan *p, int l, lin L[4][3], int n[4]) {
    char name[96];
    int any = 0;
    for (int g = 0; g < 4; g++) {
        n[g] = 0;
        for (int k = 0; k < 3 && group_names[g][k]; k++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, group_names[g][k]);
            if (find_lin(p, name, &L[g][n[g]])) n[g]++;
        }
        if (!n[g] && fused_names[g]) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, fused_names[g]);
            if (find_lin(p, name, &L[g][0])) n[g] = 1;
        }
        any |= n[g] > 0;
    }
    return any;
}

static void consider(qf_quant_mem *m, uint64_t bytes, const char *fmt, int l, const char *what) {
    if (bytes <= m->peak_rss) return;
    m->peak_rss = bytes;
    snprintf(m->peak_at, sizeof m->peak_at, fmt, l, what);
}

/* A directory input's calibration model (model.h qf_model_load_rows): the
 * bytes of its largest part (*part, its temporary file), and what it holds
 * in RAM besides (the one-row tensors read at load, convert's buffer of one
 * read, and that read's pages until given back). */
static uint64_t dir_model(const qf_quant_plan *p, uint64_t *part) {
    const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), chunk = 32ull << 20;
    uint64_t resident = 0, read = 0;
    int n_slots = 2; /* token_embd, output, then the blocks */
    for (size_t i = 0; i < p->n; i++) {
        int b;
        if (sscanf(p->t[i].name, "blk.%d.", &b) == 1 && b >= 0 && b + 3 > n_slots) n_slots = b + 3;
    }
    uint64_t *sz = calloc((size_t)n_slots, sizeof *sz);
    *part = 0;
    for (size_t i = 0; sz && i < p->n; i++) {
        const qf_quant_tensor_plan *t = &p->t[i];
        const uint64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
        int b = -1;
        const int slot = rows <= 1 ? -1 : !strcmp(t->name, "token_embd.weight") ? 0
                         : !strcmp(t->name, "output.weight") ? 1 : sscanf(t->name, "blk.%d.", &b) == 1 && b >= 0 ? b + 2 : -1;
        if (slot < 0) {
            resident += t->in_nbytes;
            continue;
        }
        sz[slot] += (t->in_nbytes + page - 1) / page * page;
        if (sz[slot] > *part) *part = sz[slot];
        const uint64_t row = t->in_nbytes / rows, r = row ? (row > chunk ? row : chunk / row * row) : 0;
        if ((r < t->in_nbytes ? r : t->in_nbytes) > read) read = r < t->in_nbytes ? r : t->in_nbytes;
    }
    free(sz);
    return resident + 2 * read;
}

/* The writer's largest step (memplan.h). */
static uint64_t writer_step(const qf_quant_plan *p, uint64_t chunk_bytes) {
    uint64_t best = 0;
    for (size_t i = 0; i < p->n; i++) {
        const qf_quant_tensor_plan *t = &p->t[i];
        const uint64_t ne0 = t->ne[0] ? t->ne[0] : 1, rows = t->ne[1] * t->ne[2] * t->ne[3];
        const uint64_t elems = ne0 * (rows ? rows : 1);
        uint64_t b;
        if (t->convert) {
            uint64_t rpc = chunk_bytes / (ne0 * 4);
            if (rpc < 1) rpc = 1;
            if (rpc > rows) rpc = rows;
            const double in_bpe = (double)t->in_nbytes / (double)elems, out_bpe = (double)t->out_nbytes / (double)elems;
            b = (uint64_t)((double)(rpc * ne0) * (4.0 + in_bpe + 2.0 * out_bpe)); /* and the previous chunk's output, written meanwhile */
        } else {
            b = t->in_nbytes < chunk_bytes ? t->in_nbytes : chunk_bytes;
        }
        if (b > best) best = b;
    }
    return best;
}

void qf_quant_predict_memory(const qf_quant_plan *p, uint64_t meta_bytes, const qf_quantize_opts *o,
                             qf_quant_mem *m) {
    memset(m, 0, sizeof *m);
    const uint64_t chunk_bytes = qf_quantize_chunk_bytes(o);
    const uint64_t base = PROC_BYTES + 2 * meta_bytes;
    m->out_bytes = p->out_tensor_bytes + meta_bytes + 32 * (uint64_t)p->n;
    m->disk_peak = m->out_bytes;
    consider(m, base + writer_step(p, chunk_bytes), "%.0d%s", 0, "writer");
    const int awq = o->method == QF_QUANT_METHOD_AWQ || o->method == QF_QUANT_METHOD_AWQ_GPTQ;
    if (o->method != QF_QUANT_METHOD_GPTQ && !awq) return;
    const qf_gptq_run_opts *c = awq ? (o->awq ? o->awq->calib : NULL) : o->gptq;
    if (!c) return;

    /* shapes: E from token_embd, the vocabulary from output (or token_embd) */
    lin emb = {0}, out = {0};
    find_lin(p, "token_embd.weight", &emb);
    const int has_out = find_lin(p, "output.weight", &out);
    const int64_t E = emb.t ? emb.n_in : 0;
    const int64_t ctx = c->n_ctx > 0 ? c->n_ctx : 512;
    int64_t chunks = c->max_chunks;
    struct stat st;
    const uint64_t text_bytes = c->calib_path && stat(c->calib_path, &st) == 0 ? (uint64_t)st.st_size : 0;
    if (chunks <= 0) chunks = (int64_t)(text_bytes / 3) / ctx;
    if (chunks < 1) chunks = 1;
    m->n_chunks = chunks;

    int n_layer = 0, n_blk[4];
    lin L[4][3];
    int64_t n_max = E, kv = 0, act = 0; /* widest input; K+V width; a token's activations */
    int64_t kept = 0;                   /* floats per token of a block's kept activation (layerwise.c) */
    uint64_t wmap = 0, store = 0;
    while (block_lins(p, n_layer, L, n_blk)) {
        uint64_t wb = 0;
        for (int g = 0; g < 4; g++)
            for (int k = 0; k < n_blk[g]; k++) {
                const lin *x = &L[g][k];
                if (x->n_in > n_max) n_max = x->n_in;
                wb += 4 * (uint64_t)(x->n_in * x->n_out);
                if (x->gptq || awq) store += x->t->out_nbytes;
                if (g == 0 && k > 0) kv += x->n_out;
                if (n_layer == 0) act += x->n_out;
            }
        if (wb > wmap) wmap = wb;
        for (int g = 1; g < 4; g += 2) /* attn_output's input; ffn_down's (dense) */
            if (n_blk[g] && L[g][0].n_in > kept) kept = L[g][0].n_in;
        n_layer++;
    }
    if (has_out && (out.gptq || awq)) store += out.t->out_nbytes;
    /* the hidden states, and (not for AWQ, which recomputes them) the
     * kept activations of a block */
    const uint64_t hidden = 4 * (uint64_t)(chunks * ctx * E);
    const uint64_t kept_bytes = awq ? 0 : 4 * (uint64_t)(chunks * ctx * kept);
    /* engine: a chunk's activations (every linear's output, 3 residual-width
     * buffers, the chunk copy) and its K/V cache for every layer */
    const uint64_t engine = 4 * (uint64_t)ctx * ((uint64_t)act + 4 * (uint64_t)E + (uint64_t)kv);
    uint64_t part = 0;
    const int is_dir = o->in_path && stat(o->in_path, &st) == 0 && S_ISDIR(st.st_mode);
    const uint64_t dir_rss = is_dir ? meta_bytes + dir_model(p, &part) : 0;
    const uint64_t pipe = base + CALIB_BYTES + hidden + kept_bytes + engine + 2 * text_bytes + dir_rss;
    const int nt = o->n_threads > 1 ? o->n_threads : 1;
    const uint64_t awq_extra = awq ? 8 * (uint64_t)(n_max * n_max) : 0;

    for (int l = 0; l < n_layer; l++) {
        block_lins(p, l, L, n_blk);
        for (int g = 0; g < 4; g++) {
            if (!n_blk[g]) continue;
            const uint64_t n = (uint64_t)L[g][0].n_in;
            uint64_t before = 0, rest = 0, own = 0, dst = 0, smp = 0, src = 0;
            for (int h = 0; h < 4; h++)
                for (int k = 0; k < n_blk[h]; k++) {
                    const lin *x = &L[h][k];
                    if (h < g) before += 4 * (uint64_t)(x->n_in * x->n_out);
                    else rest += x->t->in_nbytes;
                }
            for (int k = 0; k < n_blk[g]; k++) {
                const lin *x = &L[g][k];
                own += 4 * (uint64_t)(x->n_in * x->n_out);
                if (x->t->in_nbytes > src) src = x->t->in_nbytes < RELEASE_BYTES ? x->t->in_nbytes : RELEASE_BYTES;
                if (x->gptq && x->t->out_nbytes > dst) dst = x->t->out_nbytes;
                if (x->gptq) smp += 12 * (uint64_t)((x->n_out < QF_GPTQ_LOSS_ROWS ? x->n_out : QF_GPTQ_LOSS_ROWS)) * n;
            }
            /* solve: H, 2 x 64 n of band and panel scratch, per thread a row tile */
            const uint64_t solve = 8 * n * n + 2 * 64 * 8 * n + (uint64_t)nt * 24 * 6 * n + 2 * 64 * 8 * n;
            consider(m, pipe + awq_extra + solve + own + src + dst + smp, "blk.%d.%s solve", l, group_names[g][0]);
            /* the pass: H's lower triangle, the chunk's input packed as double for its sums */
            consider(m, pipe + awq_extra + 4 * n * n + 8 * (uint64_t)ctx * n + before + rest, "blk.%d.%s input pass", l,
                     group_names[g][0]);
        }
    }
    if (has_out) {
        const uint64_t ow = 4 * (uint64_t)(out.n_in * out.n_out);
        const uint64_t smp = out.gptq ? 12 * (uint64_t)QF_GPTQ_LOSS_ROWS * (uint64_t)E : 0;
        const uint64_t src = out.t->in_nbytes < RELEASE_BYTES ? out.t->in_nbytes : RELEASE_BYTES;
        consider(m, pipe + awq_extra + 8 * (uint64_t)(E * E) + ow + src + (out.gptq ? out.t->out_nbytes : 0) + smp,
                 "%.0d%s", 0, "output.weight solve");
    }
    uint64_t budget = c->mem_budget;
    if (!budget) budget = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE) / 4;
    const uint64_t spill = (hidden > budget ? hidden : 0) + (hidden + kept_bytes > budget ? kept_bytes : 0) +
                           part; /* with a directory's part file */
    /* the finished tensors stay on disk until the output is written */
    m->tmp_bytes = store + wmap + spill;
    m->disk_peak = store + (m->out_bytes > wmap + spill ? m->out_bytes : wmap + spill);
}
