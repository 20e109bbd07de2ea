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
#define CALIB_BYTES (2ull << 20)  /* the calibration run's fixed part, and per vocabulary entry: */
#define VOCAB_BYTES 128ull        /* the tokenizer's tables */
#define PANEL_CELLS (1ull << 23)  /* doubles in one panel of a chunk's H (layerwise.c) */
#define NB 64                     /* panel width of the factorisation and inverse (gptq.c) */
#define ROW_TILE 48               /* rows one thread sweeps together (gptq.c) */
#define TOKENIZE_PER_BYTE 30      /* the text and SentencePiece's symbol list and pair heap, per byte of text */

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

/* ---- H's resident pages (layerwise.c, gptq.c); H starts on a page ---- */

static uint64_t pgsz(void) { return (uint64_t)sysconf(_SC_PAGESIZE); }

/* Bytes of the pages written when H [n, n] (doubles) gets only its lower
 * triangle: row i's columns 0..i. */
static uint64_t h_lower(uint64_t n) {
    const uint64_t pg = pgsz();
    uint64_t pages = 0, next = 0; /* first page not yet counted */
    for (uint64_t i = 0; i < n; i++) {
        uint64_t a = 8 * i * n / pg;
        const uint64_t b = (8 * (i * n + i + 1) - 1) / pg;
        if (a < next) a = next;
        if (b >= a) pages += b - a + 1, next = b + 1;
    }
    return pages * pg;
}

/* Bytes of the pages of the whole H [n, n]. */
static uint64_t h_full(uint64_t n) { return (8 * n * n + pgsz() - 1) / pgsz() * pgsz(); }

/* Bytes given back once the factor of H^-1 is in place (gptq.c
 * release_dead_half): the whole pages of row r's bytes [4 (r + 1), 8 (r + 1)). */
static uint64_t h_dead(uint64_t n) {
    const uint64_t pg = pgsz();
    uint64_t pages = 0;
    for (uint64_t r = 0; r < n; r++) {
        const uint64_t row = 8 * r * n, a = (row + 4 * (r + 1) + pg - 1) / pg, b = (row + 8 * (r + 1)) / pg;
        if (b > a) pages += b - a;
    }
    return pages * pg;
}

/* One panel of a chunk's H (layerwise.c panel_rows) and the chunk's input
 * packed as double for its sums (calibrate/stats.c, 16-column panels). */
static uint64_t sum_scratch(uint64_t n, uint64_t ctx) {
    uint64_t rows = PANEL_CELLS / n / 32 * 32;
    if (rows < 32) rows = 32;
    if (rows > n) rows = n;
    return 8 * rows * n + 8 * ctx * ((n + 15) / 16 * 16);
}

/* Converting linear x to F32 (layerwise.c weight_f32): the stored rows and
 * F32 rows between two page releases (paged: the F32 copy lives in the
 * block's file; else all of it stays). */
static uint64_t load_step(const lin *x, int paged) {
    const uint64_t rows = (uint64_t)x->n_out, rb = rows ? x->t->in_nbytes / rows : 0;
    uint64_t step = RELEASE_BYTES / (rb ? rb : 1) + 1;
    if (step > rows) step = rows;
    return step * rb + 4 * (paged ? step : rows) * (uint64_t)x->n_in;
}

/* The members of group g of a block as F32, their GPTQ blocks and loss
 * samples, the largest conversion step; *any: one is solved by GPTQ. */
typedef struct grp {
    uint64_t n, f32, out, smp, load, max_out, sum_out, max_blocks, sum_blocks, max_grid;
    int any;
} grp;

static grp group_of(const lin *L, int k) {
    grp g;
    memset(&g, 0, sizeof g);
    g.n = (uint64_t)L[0].n_in;
    for (int i = 0; i < k; i++) {
        const lin *x = &L[i];
        const uint64_t n_out = (uint64_t)x->n_out, ld = load_step(x, 1);
        g.f32 += 4 * n_out * g.n;
        g.sum_out += n_out;
        if (n_out > g.max_out) g.max_out = n_out;
        if (ld > g.load) g.load = ld;
        if (x->t->out_nbytes > g.max_blocks) g.max_blocks = x->t->out_nbytes;
        g.sum_blocks += x->t->out_nbytes;
        const uint64_t st = (uint64_t)qf_awq_grid_stride((int64_t)n_out);
        if ((n_out + st - 1) / st > g.max_grid) g.max_grid = (n_out + st - 1) / st;
        if (!x->gptq) continue;
        g.any = 1;
        g.out += x->t->out_nbytes;
        const uint64_t step = (n_out + QF_GPTQ_LOSS_ROWS - 1) / QF_GPTQ_LOSS_ROWS;
        g.smp += 12 * ((n_out + step - 1) / step) * g.n;
    }
    return g;
}

/* GPTQ's solve of a group on top of `fixed`: H made whole (8 n^2) while its
 * weights are converted; factored (band and scratch); the sweep with the
 * unused half of H given back, the members' F32 rows and blocks; H restored
 * for the losses (the members' F32 pages and blocks released first). */
static void gptq_solve_stages(qf_quant_mem *m, uint64_t fixed, const grp *g, uint64_t extra, int nt, const char *fmt,
                              int l, const char *what) {
    const uint64_t n = g->n, full = h_full(n);
    char name[64];
    snprintf(name, sizeof name, "%s weights", what);
    consider(m, fixed + full + g->load + extra, fmt, l, name);
    if (!g->any) return;
    snprintf(name, sizeof name, "%s factor", what);
    consider(m, fixed + full + 2 * NB * 8 * n + (uint64_t)nt * 4 * n + extra, fmt, l, name);
    const uint64_t tiles = (uint64_t)nt * ROW_TILE * n * 16;
    snprintf(name, sizeof name, "%s sweep", what);
    consider(m, fixed + full - h_dead(n) + NB * 8 * n + g->f32 + g->out + g->smp + tiles + extra, fmt, l, name);
    snprintf(name, sizeof name, "%s restore", what);
    consider(m, fixed + full + g->smp + extra, fmt, l, name);
}

/* AWQ's search and quantization of a group (awq.c on_group): H, its scaled
 * copy Hs and the float copy, the scaled weights, their quantized values and
 * blocks, the error rows, every member's quantized values, the members as
 * F32, every member's blocks (kept for reuse), the alpha grid's sampled rows
 * (Wu); awq+gptq adds GPTQ's copy of Hs, awq the
 * clipping's copies (every member's clipped weights, and the clip search's
 * weights and values of one). */
static uint64_t awq_group(const grp *g, int gptq) {
    const uint64_t n = g->n, np = (n + 15) / 16 * 16, ro = (g->max_out + 15) / 16 * 16;
    return h_full(n) + 8 * n * n + 4 * n * np + 12 * g->max_out * n + 4 * ro * np + 4 * g->sum_out * n + g->f32 +
           g->max_blocks + g->sum_blocks + 4 * g->max_grid * n + (gptq ? 8 * n * n : 4 * g->sum_out * n + 8 * g->max_out * n);
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
    const int awq_gptq = o->method == QF_QUANT_METHOD_AWQ_GPTQ;
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
    /* tokenizing the whole text, before the pipeline */
    consider(m, base + TOKENIZE_PER_BYTE * text_bytes, "%.0d%s", 0, "tokenize");

    int n_layer = 0, n_blk[4];
    lin L[4][3];
    int64_t n_max = E, kv = 0, act = 0, widest = E; /* widest input; K+V width; a token's activations */
    int64_t kept = 0;                   /* floats per token of a block's kept activation (layerwise.c) */
    uint64_t wmap = 0, store = 0;
    while (block_lins(p, n_layer, L, n_blk)) {
        uint64_t wb = 0;
        int64_t kvl = 0, actl = 0;
        for (int g = 0; g < 4; g++)
            for (int k = 0; k < n_blk[g]; k++) {
                const lin *x = &L[g][k];
                if (x->n_in > n_max) n_max = x->n_in;
                wb += 4 * (uint64_t)(x->n_in * x->n_out);
                if (x->gptq || awq) store += x->t->out_nbytes;
                if (g == 0 && k > 0) kvl += x->n_out;
                actl += x->n_out;
                if (x->n_out > widest) widest = x->n_out;
            }
        if (wb > wmap) wmap = wb;
        if (kvl > kv) kv = kvl;
        if (actl > act) act = actl;
        for (int g = 1; g < 4; g += 2) /* attn_output's input; ffn_down's (dense) */
            if (n_blk[g] && L[g][0].n_in > kept) kept = L[g][0].n_in;
        n_layer++;
    }
    if (n_max > widest) widest = n_max;
    if (has_out && (out.gptq || awq)) store += out.t->out_nbytes;
    /* the hidden states, and (not for AWQ, which recomputes them) the
     * kept activations of a block */
    const uint64_t hidden = 4 * (uint64_t)(chunks * ctx * E);
    const uint64_t kept_bytes = awq ? 0 : 4 * (uint64_t)(chunks * ctx * kept);
    /* engine (verify/forward.c qf_ctx_init): a chunk's activations (every
     * linear's output, 3 residual-width buffers, the widest matmul input),
     * one block's K/V cache (given back after the block), the pipeline's
     * chunk of normed states */
    const uint64_t engine = 4 * (uint64_t)ctx * ((uint64_t)act + 4 * (uint64_t)E + (uint64_t)widest + (uint64_t)kv);
    uint64_t part = 0;
    const int is_dir = o->in_path && stat(o->in_path, &st) == 0 && S_ISDIR(st.st_mode);
    const uint64_t dir_rss = is_dir ? meta_bytes + dir_model(p, &part) : 0;
    /* the text and its token ids (about a token per 3 bytes) stay */
    const uint64_t vocab = emb.t ? VOCAB_BYTES * (uint64_t)emb.n_out : 0;
    const uint64_t pipe = base + CALIB_BYTES + vocab + hidden + kept_bytes + engine + text_bytes + 4 * (text_bytes / 3) + dir_rss;
    const int nt = o->n_threads > 1 ? o->n_threads : 1;

    for (int l = 0; l < n_layer; l++) {
        block_lins(p, l, L, n_blk);
        grp G[4];
        for (int g = 0; g < 4; g++) G[g] = group_of(L[g], n_blk[g]);
        /* the producer AWQ holds from its group to the next one: v (attn_in ->
         * attn_out), up (ffn_in -> ffn_down), its scaled copy and (awq+gptq) Hs */
        uint64_t held[4] = {0};
        for (int g = 0; awq && g < 4; g += 2) {
            const lin *pr = n_blk[g] > 1 ? &L[g][n_blk[g] - 1] : NULL;
            if (!pr) continue;
            const uint64_t x = 4 * (uint64_t)(pr->n_out * pr->n_in) + (awq_gptq ? 8 * (uint64_t)(pr->n_in * pr->n_in) : 0);
            held[g] = x;         /* made at the end of its group */
            held[g + 1] = 2 * x; /* and its quantized values (and GPTQ's copy of Hs) when the next group finishes it */
        }
        for (int g = 0; g < 4; g++) {
            if (!n_blk[g]) continue;
            const uint64_t n = G[g].n;
            /* the pass collecting the input runs the groups before it as
             * F32: the one before (GPTQ keeps its inputs), or for AWQ, which
             * recomputes them, both attention groups before the FFN's */
            uint64_t reads = g > 0 && n_blk[g - 1] ? G[g - 1].f32 : 0;
            if (awq && g == 2 && n_blk[0]) reads += G[0].f32;
            consider(m, pipe + held[g] + h_lower(n) + sum_scratch(n, (uint64_t)ctx) + reads, "blk.%d.%s input pass", l,
                     group_names[g][0]);
            if (awq) {
                consider(m, pipe + held[g] + awq_group(&G[g], awq_gptq), "blk.%d.%s search", l, group_names[g][0]);
                continue;
            }
            char what[32];
            snprintf(what, sizeof what, "%s", group_names[g][0]);
            gptq_solve_stages(m, pipe, &G[g], 0, nt, "blk.%d.%s", l, what);
        }
    }
    if (has_out) {
        /* output.weight: its F32 copy is not paged and stays through the solve */
        const uint64_t ow = 4 * (uint64_t)(out.n_in * out.n_out);
        consider(m, pipe + h_lower((uint64_t)E) + sum_scratch((uint64_t)E, (uint64_t)ctx), "%.0d%s", 0,
                 "output.weight input pass");
        grp G = group_of(&out, 1);
        G.load = load_step(&out, 0) - ow; /* counted in fixed below */
        G.f32 = 0;
        if (awq) consider(m, pipe + awq_group(&G, awq_gptq), "%.0d%s", 0, "output.weight search");
        else gptq_solve_stages(m, pipe + ow, &G, 0, nt, "%.0d%s", 0, "output.weight");
    }
    uint64_t budget = c->mem_budget;
    if (!budget) budget = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE) / 4;
    const uint64_t spill = (hidden > budget ? hidden : 0) + (hidden + kept_bytes > budget ? kept_bytes : 0) +
                           part; /* with a directory's part file */
    /* the finished tensors stay on disk until the output is written */
    m->tmp_bytes = store + wmap + spill;
    m->disk_peak = store + (m->out_bytes > wmap + spill ? m->out_bytes : wmap + spill);
}
