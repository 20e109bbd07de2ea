/* layerwise.c - the layer-sequential calibration pipeline (layerwise.h). */
#include "layerwise.h"
#include "qf_io.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "forward.h"
#include "qf_threads.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The hidden states: malloc'd, or a mapping of an unlinked temporary file. */
typedef struct hidden {
    float *x;
    size_t bytes;
    int mapped;
} hidden;

/* bytes in RAM when they fit the budget, else in an unlinked file in tmp_dir;
 * `what` names the contents in messages. */
static int hidden_alloc(hidden *h, size_t bytes, uint64_t budget, const char *tmp_dir, const char *what, qf_err *err) {
    memset(h, 0, sizeof *h);
    h->bytes = bytes;
    if (bytes <= budget) {
        h->x = malloc(bytes);
        if (h->x) return 0;
    }
    const char *dir = tmp_dir ? tmp_dir : getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    char path[4096];
    snprintf(path, sizeof path, "%s/qforge-hidden-XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0) return qf_set_err(err, QF_EIO, "%s: cannot create a temporary file for the %s", dir, what);
    unlink(path);
    if (ftruncate(fd, (off_t)bytes) != 0) {
        close(fd);
        return qf_set_err(err, QF_EIO, "%s: no room for %zu bytes of %s", dir, bytes, what);
    }
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return qf_set_err(err, QF_EIO, "%s: cannot map the temporary file of the %s", dir, what);
    h->x = p;
    h->mapped = 1;
    return 0;
}

static void hidden_free(hidden *h) {
    if (h->mapped) munmap(h->x, h->bytes);
    else free(h->x);
    memset(h, 0, sizeof *h);
}

/* Give back the pages of weight w if they lie in one of the model's GGUF
 * mappings (read-only, so nothing is lost); other storage is left alone. */
static void release_bytes(const qf_model *m, const void *data, uint64_t n) {
    if (!data || m->is_hf) return;
    const uint8_t *p = data;
    for (uint32_t s = 0; s <= m->n_shards; s++) {
        const gguf_file *f = s == 0 ? &m->file : &m->shards[s - 1];
        if (f->map && p >= f->map && p + n <= f->map + f->map_size) {
            qf_release_range(f->map, f->map_size, p, n, 0);
            return;
        }
    }
}

static void release_weight(const qf_model *m, const qf_weight *w) {
    if (w) release_bytes(m, w->data, (uint64_t)w->n_out * (uint64_t)w->row_bytes);
}

/* Keeps the input of one weight (the group's first) of the current chunk,
 * from the engine's matmul hook. */
typedef struct capture {
    const qf_weight *target;
    float *x;     /* [ctx, n] */
    int64_t n;
    int64_t T;    /* tokens kept */
} capture;

static void capture_hook(void *user, int layer, const qf_weight *w, const float *x, int64_t T) {
    capture *c = user;
    if (w != c->target) return;
    memcpy(c->x + c->T * c->n, x, (size_t)(T * c->n) * sizeof *x);
    c->T += T;
}

#define RELEASE_BYTES (64 << 20) /* stored bytes converted between releases of their pages */

/* w's values as F32 into out[n_out * n_in], the stored pages given back as
 * they are read (m's mapping), and with `paged` (out lies in a shared file
 * mapping) the written pages too; QF_ERANGE on a non-finite value. */
static int weight_f32(const qf_model *m, const qf_weight *w, float *out, int paged, qf_err *err) {
    const int64_t step = RELEASE_BYTES / (w->row_bytes ? w->row_bytes : 1) + 1;
    for (int64_t r = 0; r < w->n_out; r++) {
        if (r && r % step == 0) {
            release_bytes(m, (const uint8_t *)w->data + (r - step) * w->row_bytes, (uint64_t)step * w->row_bytes);
            if (paged) qf_release_range(NULL, 0, out + (r - step) * w->n_in, (uint64_t)(step * w->n_in) * sizeof *out, 0);
        }
        float *row = out + r * w->n_in;
        if (qf_weight_row(w, r, row) < 0)
            return qf_set_err(err, QF_EUNSUPPORTED, "tensor '%s': cannot read type %u", w->name, w->type);
        for (int64_t j = 0; j < w->n_in; j++)
            if (!isfinite(row[j]))
                return qf_set_err(err, QF_ERANGE, "tensor '%s' has a non-finite value (nan or inf) at row %lld",
                                  w->name, (long long)r);
    }
    return 0;
}

static qf_weight f32_view(const qf_weight *w, const float *data) {
    qf_weight v = *w;
    v.data = data;
    v.type = 0; /* GGML_TYPE_F32 */
    v.row_bytes = (size_t)w->n_in * sizeof(float);
    return v;
}

/* H is summed per chunk in row panels of at most this many doubles (or 32
 * rows), each panel added into H in chunk order (qf_dist.h). */
#define PANEL_CELLS ((int64_t)1 << 23)

static int64_t panel_rows(int64_t n) {
    int64_t rows = PANEL_CELLS / n / 32 * 32;
    if (rows < 32) rows = 32;
    return rows < n ? rows : n;
}

typedef struct run {
    const qf_model *m;
    const qf_lw_params *p;
    qf_dist *d;
    int64_t size, rank;      /* chunk k runs on rank k % size, as its local chunk k / size */
    qf_ctx c;
    hidden hs;               /* this rank's chunks */
    hidden sb;               /* this rank's chunks of a block's stored activation: the attention output,
                                then the FFN activation (the inputs of attn_output and ffn_down) */
    int64_t sb_width;        /* floats per token in sb */
    hidden wmap;             /* the F32 weights of one block, in an unlinked file */
    float *xbuf;             /* one chunk [ctx, E] */
    float *xcap;             /* one chunk's group input [ctx, n_in] */
    int64_t n_chunks, ctx;
    double *H;               /* [n_in * n_in], sized for the widest input, an anonymous mapping */
    size_t h_bytes;
    double *abs;             /* [n_in + 1]: sum |x_j|, then the token count */
    double *P, *abs_part;    /* one chunk's panel of H and its sum |x_j| */
    size_t p_bytes;
    qf_lw_group_fn fn;
    void *user;
    qf_lw_stats *st;
} run;

static int64_t n_parts(const run *r, int64_t j) {
    const int64_t left = r->n_chunks - j * r->size;
    return left < r->size ? left : r->size;
}

/* The seven weight slots of a block, in group order: q, k, v, o, gate, up,
 * down; a fused block (phi3) has attn_qkv in the q slot and the fused
 * gate/up in the gate slot, the k, v and up slots empty. */
static int block_slots(const qf_layer *L, qf_layer *Lq, qf_weight *slots[7], const qf_weight *orig[7]) {
    const int fused = L->wqkv.data != NULL;
    qf_layer dummy;
    if (!Lq) Lq = &dummy;
    qf_weight *s[7] = {fused ? &Lq->wqkv : &Lq->wq, &Lq->wk, &Lq->wv, &Lq->wo,
                       fused ? &Lq->ffn_gate_up : &Lq->ffn_gate, &Lq->ffn_up, &Lq->ffn_down};
    const qf_weight *o[7] = {fused ? &L->wqkv : &L->wq, &L->wk, &L->wv, &L->wo,
                             fused ? &L->ffn_gate_up : &L->ffn_gate, &L->ffn_up, &L->ffn_down};
    for (int i = 0; i < 7; i++) {
        const int empty = fused && (i == 1 || i == 2 || i == 5);
        if (slots) slots[i] = empty ? NULL : s[i];
        orig[i] = empty ? NULL : o[i];
    }
    return fused;
}

/* The whole pages inside anonymous memory [p, p + bytes) given back (they
 * read as zeros again); partial pages at the ends are left alone. */
static void release_inside(void *p, size_t bytes) {
    const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    const uintptr_t a = ((uintptr_t)p + pg - 1) / pg * pg;
    const uintptr_t b = ((uintptr_t)p + bytes) / pg * pg;
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

/* The panel scratch's pages given back (it is cleared before each use). */
static void release_panel(run *r) { release_inside(r->P, r->p_bytes); }

/* Block l's K/V cache given back once its passes are done: every pass
 * starts at position 0, so nothing reads it again, and the cache stays
 * one block's size whatever the depth. */
static void release_kv(run *r, int64_t l) {
    const qf_hparams *hp = &r->m->hp;
    const size_t kb = (size_t)(hp->n_head_kv * hp->head_dim_k * r->ctx) * sizeof(float);
    const size_t vb = (size_t)(hp->n_head_kv * hp->head_dim_v * r->ctx) * sizeof(float);
    if (r->c.k_cache) release_inside((uint8_t *)r->c.k_cache + (size_t)l * kb, kb);
    if (r->c.v_cache) release_inside((uint8_t *)r->c.v_cache + (size_t)l * vb, vb);
}

/* Mirror the accumulated lower triangle of r->H [n, n] into the full
 * matrix, in 64 x 64 tiles (both sides of a tile stay in cache); its time
 * counts as the sums'. */
static void symmetrize(run *r, int64_t n) {
    double *H = r->H;
    release_panel(r);
    const double t0 = now_seconds();
    for (int64_t i0 = 0; i0 < n; i0 += 64)
        for (int64_t j0 = 0; j0 <= i0; j0 += 64)
            for (int64_t i = i0; i < i0 + 64 && i < n; i++)
                for (int64_t j = j0; j < j0 + 64 && j < i; j++) H[j * n + i] = H[i * n + j];
    r->st->hessian_seconds += now_seconds() - t0;
}

/* H := 0 by returning its pages (they read as zeros again), so that only the
 * part an accumulation writes, the lower triangle, becomes resident. */
static void h_clear(run *r) {
    if (madvise(r->H, r->h_bytes, MADV_DONTNEED) != 0) memset(r->H, 0, r->h_bytes);
}

/* Drop the resident pages of block l's weights: the F32 copies (written
 * back to their file) and the model's mapping. */
static void release_block(run *r, int64_t l) {
    if (r->wmap.x) madvise(r->wmap.x, r->wmap.bytes, MADV_DONTNEED);
    const qf_weight *orig[7];
    block_slots(&r->m->layers[l], NULL, NULL, orig);
    for (int i = 0; i < 7; i++) release_weight(r->m, orig[i]);
}

static void begin_sums(run *r, int64_t n) {
    h_clear(r);
    memset(r->abs, 0, (size_t)(n + 1) * sizeof *r->abs);
}

/* Round j's chunk sums of x [T, n] (has: this rank holds a chunk) added
 * into H's lower triangle, panel by panel, and into abs, in chunk order. */
static void add_round(run *r, int64_t j, const float *x, int64_t T, int64_t n, int has) {
    const int nt = r->c.n_threads;
    const int64_t rows = panel_rows(n), np = n_parts(r, j);
    for (int64_t i0 = 0; i0 < n; i0 += rows) {
        const int64_t i1 = i0 + rows < n ? i0 + rows : n;
        if (has) {
            memset(r->P, 0, (size_t)((i1 - i0) * n) * sizeof *r->P);
            qf_syrk_lower_rows(r->P, x, T, n, i0, i1, nt);
        }
        if (r->size > 1) { /* one exchange per panel */
            qf_dist_reduce(r->d, r->H + i0 * n, has ? r->P : NULL, (size_t)((i1 - i0) * n), (int)np);
            continue;
        }
        for (int64_t i = i0; i < i1; i++) /* row i's lower part only: the upper triangle's pages stay untouched */
            qf_dist_reduce(r->d, r->H + i * n, r->P + (i - i0) * n, (size_t)(i + 1), (int)np);
    }
    if (has) {
        memset(r->abs_part, 0, (size_t)(n + 1) * sizeof *r->abs_part);
        qf_sumabs_cols(r->abs_part, x, T, n, n, nt);
        r->abs_part[n] = (double)T;
    }
    qf_dist_reduce(r->d, r->abs, has ? r->abs_part : NULL, (size_t)(n + 1), (int)np);
}

/* The stages of a block: each runs one part of every chunk with the
 * weights quantized so far and keeps its output for the next, so the block's
 * matmuls run once per chunk. */
typedef enum {
    ST_ATTN,     /* x -> attention output, stored (sb); the input of attn_output */
    ST_ATTN_OUT, /* x += att Wo^T (hidden states in place); the FFN's normed input */
    ST_FFN_ACT,  /* the FFN activation, stored (sb); the input of ffn_down */
    ST_FFN_DOWN, /* x += act Wdown^T (hidden states in place) */
} stage_kind;

/* Run stage s of block l (weights L) over every chunk; with `sum`, its
 * captured output summed into H and abs (n_in wide). */
static int stage(run *r, int64_t l, const qf_layer *L, stage_kind s, int sum, qf_err *err) {
    const qf_hparams *hp = &r->m->hp;
    const int64_t E = hp->n_embd, T = r->ctx, OD = hp->n_head * hp->head_dim_v, F = hp->n_ff;
    const int64_t n_in = s == ST_ATTN ? OD : s == ST_ATTN_OUT ? E : F;
    const size_t xb = (size_t)(T * E) * sizeof(float);
    const int keep = r->sb_width > 0; /* the attention output and FFN activation kept (sb), else recomputed */
    qf_ctx *c = &r->c;
    c->hook = NULL;
    if (sum) begin_sums(r, n_in);
    for (int64_t j = 0; j * r->size < r->n_chunks; j++) {
        const int has = j * r->size + r->rank < r->n_chunks;
        const float *cap = NULL;
        int rc = 0;
        if (has) {
            float *xk = r->hs.x + j * T * E, *sk = keep ? r->sb.x + j * T * r->sb_width : NULL;
            memcpy(c->x, xk, xb);
            c->n_past = 0;
            switch (s) {
            case ST_ATTN:
                rc = qf_forward_part(c, l, L, QF_PART_ATTN, T, err);
                if (keep) memcpy(sk, c->att, (size_t)(T * OD) * sizeof(float));
                cap = c->att;
                break;
            case ST_ATTN_OUT:
                if (keep) memcpy(c->att, sk, (size_t)(T * OD) * sizeof(float));
                else rc = qf_forward_part(c, l, L, QF_PART_ATTN, T, err);
                if (!rc) rc = qf_forward_part(c, l, L, QF_PART_ATTN_OUT, T, err);
                if (!rc && sum) rc = qf_forward_part(c, l, L, QF_PART_FFN_NORM, T, err);
                memcpy(xk, c->x, xb);
                cap = c->xb;
                break;
            case ST_FFN_ACT:
                rc = qf_forward_part(c, l, L, QF_PART_FFN_NORM, T, err);
                if (!rc) rc = qf_forward_part(c, l, L, QF_PART_FFN_ACT, T, err);
                if (keep) memcpy(sk, c->gate, (size_t)(T * F) * sizeof(float));
                cap = c->gate;
                break;
            case ST_FFN_DOWN:
                if (keep) {
                    memcpy(c->gate, sk, (size_t)(T * F) * sizeof(float));
                } else {
                    rc = qf_forward_part(c, l, L, QF_PART_FFN_NORM, T, err);
                    if (!rc) rc = qf_forward_part(c, l, L, QF_PART_FFN_ACT, T, err);
                }
                if (!rc) rc = qf_forward_part(c, l, L, QF_PART_FFN_DOWN, T, err);
                memcpy(xk, c->x, xb);
                break;
            }
        }
        if (!sum) {
            if (rc) return rc;
            continue;
        }
        if ((rc = qf_dist_check(r->d, rc, err))) return rc;
        const double t0 = now_seconds();
        add_round(r, j, cap, T, n_in, has);
        r->st->hessian_seconds += now_seconds() - t0;
    }
    release_block(r, l);
    if (sum) symmetrize(r, n_in);
    return 0;
}

/* The FFN of block l (weights L, a mixture of experts) on every chunk's
 * hidden states: with a target, its input summed (H, abs), the states left
 * as they are; else in place on the hidden states. */
static int pass_ffn(run *r, int64_t l, const qf_layer *L, const qf_weight *target, int64_t n_in, qf_err *err) {
    const int64_t E = r->m->hp.n_embd;
    const size_t xb = (size_t)(r->ctx * E) * sizeof(float);
    capture cap = {target, r->xcap, n_in, 0};
    if (target) {
        begin_sums(r, n_in);
        r->c.hook = capture_hook;
        r->c.hook_user = &cap;
    } else {
        r->c.hook = NULL;
    }
    for (int64_t j = 0; j * r->size < r->n_chunks; j++) {
        const int has = j * r->size + r->rank < r->n_chunks;
        int rc = 0;
        cap.T = 0;
        if (has) {
            float *xk = r->hs.x + j * r->ctx * E;
            memcpy(r->c.x, xk, xb);
            r->c.n_past = 0;
            rc = qf_forward_part(&r->c, l, L, QF_PART_FFN_NORM, r->ctx, err);
            if (!rc) rc = qf_forward_part(&r->c, l, L, QF_PART_FFN_DOWN, r->ctx, err);
            if (!rc && !target) memcpy(xk, r->c.x, xb);
        }
        if (!target) {
            if (rc) return rc;
            continue;
        }
        if ((rc = qf_dist_check(r->d, rc, err))) return rc;
        const double t0 = now_seconds();
        add_round(r, j, cap.x, cap.T, n_in, has);
        r->st->hessian_seconds += now_seconds() - t0;
    }
    r->c.hook = NULL;
    release_block(r, l);
    if (target) symmetrize(r, n_in);
    return 0;
}

/* The input of a group that reads rmsnorm(x) * nw straight from the hidden
 * states (attn_in, output_in): computed as the engine does, no block run. */
static int norm_capture(run *r, const float *nw, qf_err *err) {
    const int64_t E = r->m->hp.n_embd;
    begin_sums(r, E);
    for (int64_t j = 0; j * r->size < r->n_chunks; j++) {
        const int has = j * r->size + r->rank < r->n_chunks;
        if (has) {
            const float *xk = r->hs.x + j * r->ctx * E;
            #pragma omp parallel for schedule(static) num_threads(qf_threads_for((double)(r->ctx * E), r->c.n_threads))
            for (int64_t t = 0; t < r->ctx; t++) {
                const float *x = xk + t * E;
                double ss = 0.0;
                for (int64_t i = 0; i < E; i++) ss += (double)x[i] * (double)x[i];
                const float scale = 1.0f / sqrtf((float)(ss / (double)E) + r->m->hp.norm_eps);
                for (int64_t i = 0; i < E; i++) r->xbuf[t * E + i] = (x[i] * scale) * nw[i];
            }
        }
        int rc = qf_dist_check(r->d, 0, err);
        if (rc) return rc;
        const double t0 = now_seconds();
        add_round(r, j, r->xbuf, r->ctx, E, has);
        r->st->hessian_seconds += now_seconds() - t0;
    }
    symmetrize(r, E);
    return 0;
}

/* The group function on every rank, the sums (on rank 0) sent to the
 * others first; the ranks agree on its outcome. */
static int call_group(run *r, qf_lw_group *g, qf_err *err) {
    const int64_t n = g->n_in;
    if (r->size > 1) {
        int rc = qf_dist_check(r->d, 0, err);
        if (rc) return rc;
        qf_dist_bcast(r->d, r->H, (size_t)(n * n) * sizeof *r->H);
        qf_dist_bcast(r->d, r->abs, (size_t)(n + 1) * sizeof *r->abs);
    }
    g->n_layer = (int)r->m->hp.n_layer;
    g->H = r->H;
    g->abs_sum = r->abs;
    g->n_tokens = (int64_t)r->abs[n];
    const double t0 = now_seconds();
    int rc = r->fn(r->user, g, err);
    r->st->callback_seconds += now_seconds() - t0;
    return qf_dist_check(r->d, rc, err);
}

static void progress(run *r, int layer, const char *stage) {
    if (r->p->progress) r->p->progress(r->p->progress_user, layer, (int)r->m->hp.n_layer, stage);
}

/* Its input captured for group g: attn_in's by norm_capture, an expert's
 * by a pass through the FFN, the others by the stage before them (run with
 * the earlier groups replaced in Lq). */
static int capture_input(run *r, int64_t l, const qf_layer *Lq, const qf_lw_group *g, const qf_weight *target,
                         qf_err *err) {
    if (g->kind == QF_SITE_ATTN_IN) return norm_capture(r, r->m->layers[l].attn_norm.data, err);
    if (g->expert >= 0) return pass_ffn(r, l, Lq, target, g->n_in, err);
    const stage_kind s = g->kind == QF_SITE_ATTN_OUT ? ST_ATTN : g->kind == QF_SITE_FFN_IN ? ST_ATTN_OUT : ST_FFN_ACT;
    return stage(r, l, Lq, s, 1, err);
}

/* Run one group: its input captured (capture_input), the caller's function,
 * then its tensors' views in Lq (dst[i]) pointed at the F32 values left in
 * wf[i]. */
static int run_group(run *r, int64_t l, qf_layer *Lq, qf_lw_group *g, qf_weight *const dst[3], qf_err *err) {
    g->layer = (int)l;
    int rc = capture_input(r, l, Lq, g, dst[0], err);
    if (!rc) progress(r, (int)l, "summed");
    g->wf_paged = g->expert < 0; /* the dense weights live in the block's file (r->wmap) */
    for (int i = 0; i < g->n && !rc; i++) {
        rc = weight_f32(r->m, g->w[i], g->wf[i], g->wf_paged, err);
        release_weight(r->m, g->w[i]);
        if (g->wf_paged) qf_release_range(NULL, 0, g->wf[i], (uint64_t)(g->w[i]->n_out * g->n_in) * sizeof(float), 0);
    }
    if (!rc) progress(r, (int)l, "weights");
    if (rc || (rc = call_group(r, g, err))) return rc;
    progress(r, (int)l, "solved");
    for (int i = 0; i < g->n; i++) *dst[i] = f32_view(g->w[i], g->wf[i]);
    release_block(r, l); /* the next pass faults back what it reads */
    h_clear(r);
    return 0;
}

/* The groups of block l: attn_in, attn_out, then ffn_in and ffn_down, or
 * for MoE per expert e its ffn_in and ffn_down (layerwise.h), then the pass
 * that moves the hidden states on. wx[3 * n_expert]: F32 room for the
 * experts' gate, up, down matrices (expert-major). */
static int block(run *r, int64_t l, float *wf[7], float **wx, qf_err *err) {
    const qf_layer *L0 = &r->m->layers[l];
    const int64_t X = r->m->hp.n_expert;
    qf_layer Lq = *L0;
    qf_weight *slots[7];
    const qf_weight *orig[7];
    const int fused = block_slots(L0, &Lq, slots, orig);
    const struct { qf_site_kind kind; int first, n; const char *stage; } groups[4] = {
        {QF_SITE_ATTN_IN, 0, fused ? 1 : 3, "attn_in"}, {QF_SITE_ATTN_OUT, 3, 1, "attn_out"},
        {QF_SITE_FFN_IN, 4, fused ? 1 : 2, "ffn_in"},   {QF_SITE_FFN_DOWN, 6, 1, "ffn_down_in"}};
    qf_weight *xv = NULL; /* [gate views X][up views X][down views X], replaced as they are quantized */
    int rc = 0;
    if (X > 0) {
        if (!(xv = malloc((size_t)(3 * X) * sizeof *xv)))
            return qf_set_err(err, QF_ENOMEM, "out of memory for the experts of block %lld", (long long)l);
        memcpy(xv, L0->gate_exps, (size_t)X * sizeof *xv);
        memcpy(xv + X, L0->up_exps, (size_t)X * sizeof *xv);
        memcpy(xv + 2 * X, L0->down_exps, (size_t)X * sizeof *xv);
        Lq.gate_exps = xv, Lq.up_exps = xv + X, Lq.down_exps = xv + 2 * X;
    }
    for (int gi = 0; gi < 4 && !rc; gi++) {
        const int first = groups[gi].first;
        if (gi >= 2 && X > 0) break;
        progress(r, (int)l, groups[gi].stage);
        qf_lw_group g;
        memset(&g, 0, sizeof g);
        g.expert = -1;
        g.kind = groups[gi].kind;
        g.n = groups[gi].n;
        g.n_in = orig[first]->n_in;
        qf_weight *dst[3] = {0};
        for (int i = 0; i < g.n; i++) {
            g.w[i] = orig[first + i];
            g.wf[i] = wf[first + i];
            dst[i] = slots[first + i];
        }
        rc = run_group(r, l, &Lq, &g, dst, err);
    }
    if (X > 0 && !rc) rc = stage(r, l, &Lq, ST_ATTN_OUT, 0, err); /* the experts read x + att Wo^T */
    for (int64_t e = 0; e < X && !rc; e++) {
        const qf_weight *ow[3] = {&L0->gate_exps[e], &L0->up_exps[e], &L0->down_exps[e]};
        for (int down = 0; down < 2 && !rc; down++) {
            const int first = down ? 2 : 0;
            progress(r, (int)l, down ? "expert_down_in" : "expert_in");
            qf_lw_group g;
            memset(&g, 0, sizeof g);
            g.expert = (int)e;
            g.kind = down ? QF_SITE_FFN_DOWN : QF_SITE_FFN_IN;
            g.n = down ? 1 : 2;
            g.n_in = ow[first]->n_in;
            qf_weight *dst[3] = {0};
            for (int i = 0; i < g.n; i++) {
                g.w[i] = ow[first + i];
                g.wf[i] = wx[3 * e + first + i];
                dst[i] = xv + (first + i) * X + e;
            }
            rc = run_group(r, l, &Lq, &g, dst, err);
        }
    }
    if (!rc) {
        progress(r, (int)l, "advance");
        rc = X > 0 ? pass_ffn(r, l, &Lq, NULL, 0, err) : stage(r, l, &Lq, ST_FFN_DOWN, 0, err);
    }
    free(xv);
    return rc;
}

/* OUTPUT: the final norm's outputs of every token, then the group. */
static int output_group(run *r, float *wout, qf_err *err) {
    const qf_model *m = r->m;
    const int64_t E = m->hp.n_embd;
    progress(r, (int)m->hp.n_layer, "output_in");
    int rc = norm_capture(r, m->output_norm.data, err);
    if (!rc) progress(r, (int)m->hp.n_layer, "summed");
    if (rc || (rc = qf_model_fetch(m, m->hp.n_layer, err)) || (rc = weight_f32(m, &m->output, wout, 0, err))) return rc;
    release_weight(m, &m->output);
    progress(r, (int)m->hp.n_layer, "weights");
    qf_lw_group g;
    memset(&g, 0, sizeof g);
    g.layer = -1;
    g.expert = -1;
    g.kind = QF_SITE_OUTPUT;
    g.n = 1;
    g.n_in = E;
    g.w[0] = &m->output;
    g.wf[0] = wout;
    return call_group(r, &g, err);
}

int qf_layerwise_run(const qf_model *m, const int32_t *tokens, int64_t n_tokens, const qf_lw_params *p,
                     qf_lw_group_fn fn, void *user, qf_lw_stats *st, qf_err *err) {
    const qf_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, ctx = p->n_ctx;
    qf_lw_stats st_local;
    if (!st) st = &st_local;
    memset(st, 0, sizeof *st);
    if (ctx <= 0) return qf_set_err(err, QF_EINVAL, "calibration context %lld must be positive", (long long)ctx);
    int64_t n_chunks = n_tokens / ctx;
    if (p->max_chunks > 0 && n_chunks > p->max_chunks) n_chunks = p->max_chunks;
    if (n_chunks < 1)
        return qf_set_err(err, QF_EINVAL, "calibration text has %lld tokens, fewer than one chunk of %lld",
                          (long long)n_tokens, (long long)ctx);
    run r;
    memset(&r, 0, sizeof r);
    r.m = m;
    r.p = p;
    r.d = p->dist;
    r.size = qf_dist_size(p->dist);
    r.rank = qf_dist_rank(p->dist);
    r.n_chunks = n_chunks;
    r.ctx = ctx;
    r.fn = fn;
    r.user = user;
    r.st = st;
    const double t0 = now_seconds();
    uint64_t budget = p->mem_budget;
    if (!budget) budget = (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE) / 4;
    const int64_t n_local = r.rank < n_chunks ? (n_chunks - r.rank + r.size - 1) / r.size : 0;
    const size_t hbytes = (size_t)((n_local ? n_local : 1) * ctx * E) * sizeof(float);
    int64_t n_in_max = E > hp->n_ff ? E : hp->n_ff;
    if (hp->n_head * hp->head_dim_v > n_in_max) n_in_max = hp->n_head * hp->head_dim_v;
    float *wf[7] = {0}, *wout = NULL;
    const int64_t X = hp->n_expert;
    float **wx = calloc((size_t)(3 * X + 1), sizeof *wx); /* MoE: gate, up, down of every expert */
    if (!wx) return qf_set_err(err, QF_ENOMEM, "out of memory for the calibration pipeline");
    int rc = hidden_alloc(&r.hs, hbytes, budget, p->tmp_dir, "hidden states", err);
    if (rc) {
        free(wx);
        return rc;
    }
    const int64_t OD = hp->n_head * hp->head_dim_v;
    r.sb_width = p->fn_rewrites_producers ? 0 : X > 0 || OD > hp->n_ff ? OD : hp->n_ff;
    const size_t sbytes = (size_t)((n_local ? n_local : 1) * ctx * r.sb_width) * sizeof(float);
    if (sbytes && (rc = hidden_alloc(&r.sb, sbytes, budget > hbytes ? budget - hbytes : 0, p->tmp_dir,
                                     "block activations", err)))
        goto done;
    /* the F32 weights of the largest block, each tensor page-aligned, in a
     * file: only the group being solved and what a pass reads stay resident */
    const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t wbytes = pg;
    for (int64_t l = 0; l < hp->n_layer; l++) {
        const qf_weight *ws[7];
        block_slots(&m->layers[l], NULL, NULL, ws);
        size_t b = 0;
        for (int i = 0; i < 7; i++)
            if (ws[i] && ws[i]->data) b += ((size_t)(ws[i]->n_in * ws[i]->n_out) * sizeof(float) + pg - 1) / pg * pg;
        if (b > wbytes) wbytes = b;
    }
    if ((rc = hidden_alloc(&r.wmap, wbytes, 0, p->tmp_dir, "block weights", err))) goto done;
    st->n_chunks = n_chunks;
    st->n_tokens = n_chunks * ctx;
    st->hidden_bytes = hbytes + sbytes;
    st->spilled = r.hs.mapped || r.sb.mapped;
    if ((rc = qf_ctx_init(&r.c, m, ctx, ctx, err))) goto done;
    r.c.n_threads = p->n_threads > 1 ? p->n_threads : 1;
    r.c.act_llamacpp = 0; /* plain F32 activations: the inputs GPTQ's H describes */
    r.c.kv_f16 = 0;
    const int64_t p_cells = panel_rows(n_in_max) * n_in_max;
    r.xbuf = malloc((size_t)(ctx * E) * sizeof *r.xbuf);
    r.xcap = malloc((size_t)(ctx * n_in_max) * sizeof *r.xcap);
    r.h_bytes = (size_t)(n_in_max * n_in_max) * sizeof *r.H;
    r.H = mmap(NULL, r.h_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r.H == MAP_FAILED) r.H = NULL;
    r.abs = malloc((size_t)(n_in_max + 1) * sizeof *r.abs);
    r.abs_part = malloc((size_t)(n_in_max + 1) * sizeof *r.abs_part);
    r.p_bytes = (size_t)p_cells * sizeof *r.P;
    r.P = malloc(r.p_bytes);
    if (!r.xbuf || !r.xcap || !r.H || !r.abs || !r.abs_part || !r.P) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory for the calibration pipeline");
        goto done;
    }
    /* embeddings of this rank's chunks (first token BOS when the vocabulary adds one) */
    if ((rc = qf_model_fetch(m, -1, err))) goto done;
    for (int64_t j = 0; j < n_local; j++) {
        const int64_t k = j * r.size + r.rank;
        for (int64_t t = 0; t < ctx; t++) {
            int32_t id = tokens[k * ctx + t];
            if (t == 0 && p->add_bos) id = p->bos_id;
            if (id < 0 || id >= hp->n_vocab) {
                rc = qf_set_err(err, QF_EINVAL, "token id %d out of range", id);
                goto done;
            }
            if (qf_weight_row(&m->tok_embd, id, r.hs.x + (j * ctx + t) * E) < 0) {
                rc = qf_set_err(err, QF_EUNSUPPORTED, "cannot read row of '%s'", m->tok_embd.name);
                goto done;
            }
        }
    }
    release_weight(m, &m->tok_embd); /* the rows read; the output matrix when tied faults them back */
    rc = qf_dist_same(r.d, tokens, (size_t)(n_chunks * ctx) * sizeof *tokens, "the calibration text", err);
    for (int64_t l = 0; l < hp->n_layer && !rc; l++) {
        const qf_layer *L = &m->layers[l];
        const qf_weight *ws[7];
        block_slots(L, NULL, NULL, ws);
        size_t off = 0;
        for (int i = 0; i < 7; i++) { /* placed per block: shapes may differ between blocks */
            const int has = ws[i] && ws[i]->data; /* MoE: no dense FFN */
            wf[i] = has ? (float *)((uint8_t *)r.wmap.x + off) : NULL;
            if (has) off += ((size_t)(ws[i]->n_in * ws[i]->n_out) * sizeof(float) + pg - 1) / pg * pg;
        }
        for (int64_t i = 0; i < 3 * X && !rc; i++) {
            const qf_weight *w = i % 3 == 0 ? &L->gate_exps[i / 3] : i % 3 == 1 ? &L->up_exps[i / 3] : &L->down_exps[i / 3];
            free(wx[i]);
            wx[i] = malloc((size_t)(w->n_in * w->n_out) * sizeof(float));
            if (!wx[i]) rc = qf_set_err(err, QF_ENOMEM, "out of memory for the experts of block %lld", (long long)l);
        }
        if (!rc) rc = qf_model_fetch(m, l, err);
        if (!rc) rc = block(&r, l, wf, wx, err);
        release_kv(&r, l);
    }
    hidden_free(&r.wmap);
    if (!rc && !m->tied_output && m->output.data) {
        wout = malloc((size_t)(m->output.n_in * m->output.n_out) * sizeof *wout);
        rc = wout ? output_group(&r, wout, err) : qf_set_err(err, QF_ENOMEM, "out of memory for output.weight");
    }
done:
    st->forward_seconds = now_seconds() - t0 - st->callback_seconds - st->hessian_seconds;
    free(wout);
    if (r.wmap.x) hidden_free(&r.wmap);
    for (int64_t i = 0; i < 3 * X; i++) free(wx[i]);
    free(wx);
    free(r.xbuf);
    free(r.xcap);
    if (r.H) munmap(r.H, r.h_bytes);
    free(r.abs);
    free(r.abs_part);
    free(r.P);
    qf_ctx_free(&r.c);
    hidden_free(&r.hs);
    if (r.sb.x) hidden_free(&r.sb);
    return rc;
}
