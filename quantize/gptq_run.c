/* gptq_run.c - GPTQ over a whole model (gptq_run.h). */
#include "gptq_run.h"
#include "qf_io.h"
#include "qf_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_types.h"
#include "gptq.h"
#include "gptq_grid.h"
#include "calib_text.h"
#include "layerwise.h"
#include "model.h"
#include "numfmt.h"
#include "codecs.h"
#include "search.h"
#include "text.h"

void qf_gptq_report_free(qf_gptq_report *r) {
    if (!r) return;
    free(r->t);
    memset(r, 0, sizeof *r);
}

typedef struct state {
    const qf_quant_plan *plan;
    const qf_imatrix *im;
    const qf_gptq_run_opts *o;
    qf_blockstore *store;
    uint8_t **xblocks;       /* [plan->n] stacked expert tensors being filled, expert by expert */
    qf_gptq_report *rep;
    size_t cap;
    float *qw;               /* fit weights [n_in] */
    double *hdiag;           /* diag(H) [n_in], read before H is factored */
    uint8_t *dst[3];         /* the group's tensors' blocks */
    size_t dst_cap[3];
    float *rtn;              /* scratch for the RTN comparison */
    uint8_t *rtn_q;
} state;

static int add_report(state *s, const qf_gptq_tensor_report *t) {
    if (!s->rep) return 0;
    void *a = s->rep->t;
    if (qf_grow(&a, &s->cap, s->rep->n, sizeof *t)) return QF_ENOMEM;
    s->rep->t = a;
    s->rep->t[s->rep->n++] = *t;
    return 0;
}

/* ggml's round-to-nearest of the rows W [n_out * n_in], dequantized into out;
 * for the types ggml quantizes only with an importance matrix (IQ2_XXS,
 * IQ2_XS), with the last fit weights (the group's input). */
static int rtn_values(state *s, uint32_t type, const float *W, int64_t n_out, int64_t n_in, float *out) {
    uint64_t rs;
    ggml_row_size(type, (uint64_t)n_in, &rs);
    uint8_t *q = realloc(s->rtn_q, (size_t)(rs * (uint64_t)n_out));
    if (!q) return QF_ENOMEM;
    s->rtn_q = q;
    const int needs_qw = type == GGML_TYPE_IQ2_XXS || type == GGML_TYPE_IQ2_XS;
    if (qf_quantize_rows(type, W, q, n_out, n_in, needs_qw ? s->qw : NULL) < 0) return QF_EUNSUPPORTED;
    for (int64_t r = 0; r < n_out; r++) qf_dequantize_row_ref(type, q + r * rs, out + r * n_in, n_in);
    return 0;
}

/* x[n] rounded in place to what a tensor of type F16 or BF16 stores. */
static void round_to_stored(uint32_t type, float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        x[i] = type == GGML_TYPE_F16 ? qf_f16_to_f32(qf_f32_to_f16(x[i])) : qf_bf16_to_f32(qf_f32_to_bf16(x[i]));
}

/* The fit weights of w (n_in values) into qw: the imatrix's (expert e's
 * matrix for an expert view) if it has the tensor, else diag(H) / tokens,
 * else (no tokens) all 1. xbuf: room for every expert's weights. */
static void fit_weights(state *s, const qf_lw_group *g, const qf_weight *w, float *qw, float *xbuf) {
    const int64_t n_in = g->n_in;
    const int expert = g->expert >= 0 && w->n_expert > 0;
    if (s->im) {
        qf_err e2 = {0};
        float *out = expert ? xbuf : qw;
        if (qf_imatrix_weights_for(s->im, w->name, (uint64_t)n_in, expert ? (uint64_t)w->n_expert : 1, out, &e2) == 0) {
            if (expert) memcpy(qw, xbuf + (int64_t)w->expert * n_in, (size_t)n_in * sizeof *qw);
            return;
        }
    }
    for (int64_t j = 0; j < n_in; j++) qw[j] = g->n_tokens > 0 ? (float)(s->hdiag[j] / (double)g->n_tokens) : 1.0f;
}

/* An expert view's slice of its stacked tensor's bytes, the buffer
 * allocated with the first expert to arrive; NULL when out of memory. */
static uint8_t *expert_dst(state *s, long pi, const qf_quant_tensor_plan *t, const qf_weight *w) {
    if (!s->xblocks[pi] && !(s->xblocks[pi] = calloc(1, (size_t)t->out_nbytes))) return NULL;
    return s->xblocks[pi] + (size_t)w->expert * (size_t)(t->out_nbytes / (uint64_t)w->n_expert);
}

/* After an expert's slice: the last expert (they come in order) moves the
 * stacked tensor into the store. QF_EIO on a full disk. */
static int expert_done(state *s, long pi, const qf_quant_tensor_plan *t, const qf_weight *w, qf_err *err) {
    if (w->expert != w->n_expert - 1) return 0;
    int rc = qf_dist_rank(s->o->dist) ? 0 : qf_blockstore_put(s->store, (size_t)pi, s->xblocks[pi], t->out_nbytes, err);
    free(s->xblocks[pi]);
    s->xblocks[pi] = NULL;
    return rc;
}

/* An expert view no calibration token reached, quantized into its slice as
 * the plan's usual path does (search or ggml's rounding, with the
 * expert's imatrix weights when the plan uses them) and reported; W is
 * replaced by the dequantized values. xbuf: room for every expert's weights. */
static int usual_path(state *s, long pi, const qf_quant_tensor_plan *t, const qf_weight *w, float *W, float *xbuf,
                      qf_err *err) {
    const int64_t n_in = w->n_in;
    const float *qw = NULL;
    if (t->uses_imatrix && s->im) {
        int rc = qf_imatrix_weights_for(s->im, w->name, (uint64_t)n_in, (uint64_t)w->n_expert, xbuf, err);
        if (rc) return rc;
        qw = xbuf + (int64_t)w->expert * n_in;
    }
    uint8_t *dst = expert_dst(s, pi, t, w);
    if (!dst) return qf_set_err(err, QF_ENOMEM, "out of memory for '%s'", w->name);
    qf_search_opts so;
    qf_search_opts_init(&so);
    const int64_t n = t->search ? qf_quantize_rows_opt_ex(t->type, W, dst, w->n_out, n_in, qw, s->o->search ? s->o->search : &so)
                                : qf_quantize_rows(t->type, W, dst, w->n_out, n_in, qw);
    if (n < 0) return qf_set_err(err, QF_EUNSUPPORTED, "tensor '%s': quantizing expert %d to type %u failed", w->name,
                                 (int)w->expert, t->type);
    uint64_t rs;
    ggml_row_size(t->type, (uint64_t)n_in, &rs);
    for (int64_t r = 0; r < w->n_out; r++) qf_dequantize_row_ref(t->type, dst + r * rs, W + r * n_in, n_in);
    qf_gptq_tensor_report tr;
    memset(&tr, 0, sizeof tr);
    snprintf(tr.name, sizeof tr.name, "%s", w->name);
    tr.type = t->type;
    tr.expert = w->expert;
    tr.no_tokens = 1;
    if (s->rep) s->rep->no_token_experts++;
    if (add_report(s, &tr)) return qf_set_err(err, QF_ENOMEM, "out of memory");
    return expert_done(s, pi, t, w, err);
}

/* One GPTQ tensor of a group: where its blocks go, its loss sample (W, Q,
 * RTN rows) and report. */
typedef struct pending {
    int i;                   /* group member */
    long pi;                 /* plan slot */
    const qf_quant_tensor_plan *t;
    uint8_t *dst;            /* the tensor's blocks (an expert's slice) */
    size_t row_bytes;
    qf_gptq_tensor_report tr;
    float *smp;              /* [3 * nr * n_in]: rows of W, of Q, of RTN */
    int64_t nr, step;
} pending;

void qf_gptq_share_rows(const int64_t *n_out, int n, int64_t tile, int parts, int part, int64_t *row0, int64_t *row1) {
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += (n_out[i] + tile - 1) / tile;
    const int64_t a = total * part / parts, b = total * (part + 1) / parts; /* this part's tiles, group-wide */
    int64_t first = 0;
    for (int i = 0; i < n; i++) {
        const int64_t tiles = (n_out[i] + tile - 1) / tile;
        const int64_t lo = a > first ? a : first, hi = b < first + tiles ? b : first + tiles;
        row0[i] = row1[i] = 0;
        if (lo < hi) {
            row0[i] = (lo - first) * tile;
            row1[i] = (hi - first) * tile < n_out[i] ? (hi - first) * tile : n_out[i];
        }
        first += tiles;
    }
}

/* Group member i's blocks buffer and its rows of W for the loss (at most
 * QF_GPTQ_LOSS_ROWS evenly spaced rows: each costs n_in^2). */
static int gptq_begin(state *s, const qf_lw_group *g, int i, const qf_quant_tensor_plan *t, long pi, int slot,
                      pending *pd, qf_err *err) {
    const qf_weight *w = g->w[i];
    const int64_t n_in = g->n_in;
    memset(pd, 0, sizeof *pd);
    pd->i = i;
    pd->pi = pi;
    pd->t = t;
    uint64_t rs;
    ggml_row_size(t->type, (uint64_t)n_in, &rs);
    pd->row_bytes = (size_t)rs;
    uint8_t *dst = w->n_expert > 0 ? expert_dst(s, pi, t, w) : s->dst[slot];
    if (w->n_expert == 0 && t->out_nbytes > s->dst_cap[slot]) {
        uint8_t *d = realloc(s->dst[slot], (size_t)t->out_nbytes);
        if (d) s->dst[slot] = d, s->dst_cap[slot] = (size_t)t->out_nbytes;
        dst = d;
    }
    if (!dst) return qf_set_err(err, QF_ENOMEM, "out of memory for '%s'", w->name);
    pd->dst = dst;
    const int64_t step = (w->n_out + QF_GPTQ_LOSS_ROWS - 1) / QF_GPTQ_LOSS_ROWS, nr = (w->n_out + step - 1) / step;
    const size_t rb = (size_t)n_in * sizeof *pd->smp;
    pd->smp = malloc(3 * (size_t)nr * rb);
    if (!pd->smp) return qf_set_err(err, QF_ENOMEM, "out of memory for '%s'", w->name);
    pd->nr = nr;
    pd->step = step;
    for (int64_t r = 0; r < nr; r++) memcpy(pd->smp + r * n_in, g->wf[pd->i] + r * step * n_in, rb);
    return 0;
}

/* GPTQ of rows [row0, row1) of the member with the group's factor: its
 * blocks there and W there replaced by its quantized values. */
static int gptq_solve(state *s, const qf_lw_group *g, const pending *pd, const qf_gptq_prep *prep, float *xbuf,
                      int64_t row0, int64_t row1, qf_err *err) {
    const qf_weight *w = g->w[pd->i];
    float *W = g->wf[pd->i];
    fit_weights(s, g, w, s->qw, xbuf);
    qf_gptq_opts go;
    qf_gptq_opts_init(&go);
    if (s->o->damp > 0) go.damp = s->o->damp;
    go.act_order = s->o->act_order;
    go.fit = QF_GPTQ_FIT_SEARCH;
    go.fit_weights = s->qw;
    go.n_threads = s->o->n_threads;
    int rc = qf_gptq_quantize_prep_rows(pd->t->type, W, w->n_out, row0, row1, prep, &go, pd->dst, W, err);
    if (rc) qf_err_prefix(err, w->name);
    return rc;
}

/* Every rank's rows of the group's GPTQ tensors (their F32 values and
 * blocks) sent to every other rank, member by member, rank by rank. */
static void gptq_gather(state *s, const qf_lw_group *g, const pending *pd, int n_pd) {
    qf_dist *d = s->o->dist;
    const int size = qf_dist_size(d);
    int64_t n_out[3] = {0}, row0[3], row1[3];
    for (int k = 0; k < n_pd; k++) n_out[k] = g->w[pd[k].i]->n_out;
    for (int p = 0; p < size; p++) {
        qf_gptq_share_rows(n_out, n_pd, qf_gptq_row_tile(), size, p, row0, row1);
        for (int k = 0; k < n_pd; k++) {
            const int64_t a = row0[k], rows = row1[k] - row0[k];
            qf_dist_bcast_from(d, p, g->wf[pd[k].i] + a * g->n_in, (size_t)(rows * g->n_in) * sizeof(float));
            qf_dist_bcast_from(d, p, pd[k].dst + (size_t)a * pd[k].row_bytes, (size_t)rows * pd[k].row_bytes);
        }
    }
}

/* After the solve: the member's blocks to the store (rank 0) and its rows
 * of Q and RTN for the loss. */
static int gptq_end(state *s, const qf_lw_group *g, pending *pd, const qf_gptq_prep *prep, qf_err *err) {
    const qf_weight *w = g->w[pd->i];
    const int64_t n_in = g->n_in, nr = pd->nr;
    const float *W = g->wf[pd->i];
    int rc = w->n_expert > 0 ? expert_done(s, pd->pi, pd->t, w, err)
           : qf_dist_rank(s->o->dist) ? 0 : qf_blockstore_put(s->store, (size_t)pd->pi, pd->dst, pd->t->out_nbytes, err);
    if (rc) return rc;
    const size_t rb = (size_t)n_in * sizeof *pd->smp;
    for (int64_t r = 0; r < nr; r++) memcpy(pd->smp + (nr + r) * n_in, W + r * pd->step * n_in, rb);
    if ((rc = rtn_values(s, pd->t->type, pd->smp, nr, n_in, pd->smp + 2 * nr * n_in)))
        return qf_set_err(err, rc, rc == QF_ENOMEM ? "out of memory for '%s'" : "'%s': round-to-nearest for the loss report failed",
                          w->name);
    snprintf(pd->tr.name, sizeof pd->tr.name, "%s", w->name);
    pd->tr.type = pd->t->type;
    pd->tr.damp = prep->info.damp;
    pd->tr.retries = prep->info.retries;
    pd->tr.expert = w->n_expert > 0 ? w->expert : -1;
    return 0;
}

/* The members' losses (gptq_tensor_report) from their samples and H: the
 * 3 * n_pd sums of qf_gptq_output_error (W, W - Q, W - RTN per member),
 * sum c on rank c % size, each sent to every rank; the same values as one
 * process computes. */
static void gptq_losses(state *s, const qf_lw_group *g, pending *pd, int n_pd) {
    qf_dist *d = s->o->dist;
    const int size = qf_dist_size(d), rank = qf_dist_rank(d);
    const int64_t n_in = g->n_in;
    double v[9] = {0};
    for (int c = 0; c < 3 * n_pd; c++) {
        const pending *p = &pd[c / 3];
        if (c % size != rank) continue;
        const float *Q = c % 3 == 0 ? NULL : p->smp + (c % 3) * p->nr * n_in;
        v[c] = qf_gptq_output_error(p->smp, Q, p->nr, n_in, g->H, s->o->n_threads);
    }
    for (int c = 0; c < 3 * n_pd; c++) qf_dist_bcast_from(d, c % size, &v[c], sizeof v[c]);
    for (int k = 0; k < n_pd; k++) {
        pd[k].tr.loss = v[3 * k + 1] / v[3 * k];
        pd[k].tr.loss_rtn = v[3 * k + 2] / v[3 * k];
    }
}

/* Before H is rebuilt whole: the members' blocks (now in the store) freed,
 * and their F32 values' pages given back when they are file-backed. */
static void release_solved(state *s, const qf_lw_group *g, const pending *pd, int n_pd) {
    for (int k = 0; k < n_pd; k++) {
        const qf_weight *w = g->w[pd[k].i];
        if (g->wf_paged) qf_release_range(NULL, 0, g->wf[pd[k].i], (uint64_t)(w->n_out * g->n_in) * sizeof(float), 0);
    }
    for (int k = 0; k < 3 && g->expert < 0; k++) {
        free(s->dst[k]);
        s->dst[k] = NULL;
        s->dst_cap[k] = 0;
    }
}

/* Report a step of group g's solve through the run's progress callback. */
static void stage(const state *s, const qf_lw_group *g, const char *what) {
    if (s->o->progress) s->o->progress(s->o->progress_user, g->layer >= 0 ? g->layer : g->n_layer, g->n_layer, what);
}

/* The group function: GPTQ for every tensor of the group that has a GPTQ
 * type, with one factorisation of the group's H (in place, restored before
 * the losses are measured on it). With several ranks each factorises the
 * same H (the inverse split between them: qf_gptq_opts.dist), solves its
 * share of the tensors' row tiles (qf_gptq_share_rows), and the rows are
 * then exchanged; rank 0 keeps the blocks and reports. */
static int on_group(void *user, const qf_lw_group *g, qf_err *err) {
    state *s = user;
    qf_dist *d = s->o->dist;
    const int64_t n_in = g->n_in;
    float *qw = realloc(s->qw, (size_t)n_in * sizeof *qw);
    if (qw) s->qw = qw;
    double *hd = qw ? realloc(s->hdiag, (size_t)n_in * sizeof *hd) : NULL;
    if (!hd) return qf_set_err(err, QF_ENOMEM, "out of memory");
    s->hdiag = hd;
    for (int64_t j = 0; j < n_in; j++) hd[j] = g->H[j * n_in + j];
    const int no_tokens = g->n_tokens == 0 && g->expert >= 0; /* only an expert can see no token */
    float *xbuf = NULL;
    if (g->expert >= 0 && !(xbuf = malloc((size_t)(g->w[0]->n_expert * n_in) * sizeof *xbuf)))
        return qf_set_err(err, QF_ENOMEM, "out of memory");
    pending pd[3];
    memset(pd, 0, sizeof pd);
    int n_pd = 0, rc = 0;
    qf_gptq_prep prep;
    memset(&prep, 0, sizeof prep);
    for (int i = 0; i < g->n && !rc; i++) {
        const qf_weight *w = g->w[i];
        const long pi = qf_quant_plan_find(s->plan, w->name);
        if (pi < 0) continue;
        const qf_quant_tensor_plan *t = &s->plan->t[pi];
        if (t->convert && (t->type == GGML_TYPE_F16 || t->type == GGML_TYPE_BF16)) {
            round_to_stored(t->type, g->wf[i], w->n_out * n_in); /* the next groups see what the file holds */
            continue;
        }
        const int64_t n_mat = w->n_expert > 0 ? w->n_expert : 1;
        if (!t->convert || !qf_gptq_supports(t->type) || t->ne[2] * t->ne[3] != n_mat) continue;
        if (no_tokens) { /* H = 0: nothing to fit to; the usual path's bytes */
            rc = usual_path(s, pi, t, w, g->wf[i], xbuf, err);
            continue;
        }
        if (!prep.H) {
            qf_gptq_opts go;
            qf_gptq_opts_init(&go);
            if (s->o->damp > 0) go.damp = s->o->damp;
            go.act_order = s->o->act_order;
            go.n_threads = s->o->n_threads;
            go.dist = d; /* every rank inverts a share of the factor */
            if ((rc = qf_gptq_prepare(g->H, n_in, &go, &prep, err))) {
                qf_err_prefix(err, w->name);
                break;
            }
            stage(s, g, "factored");
        }
        rc = gptq_begin(s, g, i, t, pi, n_pd, &pd[n_pd], err);
        n_pd++;
    }
    int64_t n_out[3] = {0}, row0[3], row1[3];
    for (int k = 0; k < n_pd; k++) n_out[k] = g->w[pd[k].i]->n_out;
    qf_gptq_share_rows(n_out, n_pd, qf_gptq_row_tile(), qf_dist_size(d), qf_dist_rank(d), row0, row1);
    for (int k = 0; k < n_pd && !rc; k++) {
        rc = gptq_solve(s, g, &pd[k], &prep, xbuf, row0[k], row1[k], err);
        stage(s, g, "swept");
    }
    if (qf_dist_size(d) > 1 && !(rc = qf_dist_check(d, rc, err))) gptq_gather(s, g, pd, n_pd);
    for (int k = 0; k < n_pd && !rc; k++) rc = gptq_end(s, g, &pd[k], &prep, err);
    release_solved(s, g, pd, n_pd);
    qf_gptq_prep_free(&prep); /* H is whole again */
    if (qf_dist_size(d) > 1) rc = qf_dist_check(d, rc, err); /* before the losses' exchange */
    if (!rc) gptq_losses(s, g, pd, n_pd);
    for (int k = 0; k < n_pd; k++) {
        if (!rc && qf_dist_rank(d) == 0) {
            if (s->rep && pd[k].tr.retries) s->rep->retried++;
            if (add_report(s, &pd[k].tr)) rc = qf_set_err(err, QF_ENOMEM, "out of memory");
        }
        free(pd[k].smp);
    }
    free(xbuf);
    return rc;
}

/* FNV-1a of p[n] continued from h. */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* Collective check that every rank solves with rank 0's setup (the plan's
 * tensors and types, --damp, --act-order, the imatrix's sums), since each
 * rank's rows go into rank 0's file; QF_EMISMATCH on a rank whose setup
 * differs (qf_dist_same). */
static int same_setup(const qf_quant_plan *plan, const qf_imatrix *im, const qf_gptq_run_opts *o, qf_err *err) {
    if (qf_dist_size(o->dist) == 1) return 0;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < plan->n; i++) {
        const qf_quant_tensor_plan *t = &plan->t[i];
        const int32_t f[4] = {(int32_t)t->type, t->convert, t->search, t->uses_imatrix};
        h = fnv(fnv(h, t->name, strlen(t->name) + 1), f, sizeof f);
    }
    h = fnv(fnv(h, &o->damp, sizeof o->damp), &o->act_order, sizeof o->act_order);
    for (size_t i = 0; im && i < im->n_entries; i++) {
        const qf_imatrix_entry *e = &im->entries[i];
        h = fnv(h, e->name, strlen(e->name) + 1);
        h = fnv(h, e->sum2, (size_t)e->n_cols * e->n_mat * sizeof *e->sum2);
        h = fnv(h, e->counts, (size_t)e->n_mat * sizeof *e->counts);
    }
    return qf_dist_same(o->dist, &h, sizeof h, "the gptq setup (tensor types, --damp, --act-order, imatrix)", err);
}

int qf_gptq_run(const char *model_path, const qf_quant_plan *plan, const qf_imatrix *im, const qf_gptq_run_opts *o,
                qf_blockstore *store, qf_gptq_report *rep, qf_err *err) {
    memset(store, 0, sizeof *store);
    store->fd = -1;
    if (rep) memset(rep, 0, sizeof *rep);
    if (!o || !o->calib_path) return qf_set_err(err, QF_EINVAL, "gptq: a calibration text is required (--calib)");
    if (o->damp < 0 || o->damp != o->damp) return qf_set_err(err, QF_EINVAL, "gptq: damping must be positive");
    qf_calib_text ct;
    state s;
    memset(&s, 0, sizeof s);
    int rc = qf_dist_check(o->dist, qf_calib_text_open(&ct, model_path, o->calib_path, err), err);
    if (rc || (rc = same_setup(plan, im, o, err))) goto done;
    s.plan = plan;
    s.im = im;
    s.o = o;
    s.rep = rep;
    s.store = store;
    if (!(s.xblocks = calloc(plan->n ? plan->n : 1, sizeof *s.xblocks))) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = qf_blockstore_open(store, plan->n, NULL, err))) goto done;
    qf_lw_stats st;
    rc = qf_calib_text_run(&ct, o, 0, on_group, &s, &st, err);
    if (rep)
        qf_calib_text_report(&st, &rep->n_chunks, &rep->n_tokens, &rep->hidden_bytes, &rep->spilled,
                             &rep->forward_seconds, &rep->hessian_seconds, &rep->solve_seconds);
done:
    if (rc) qf_blockstore_close(store);
    if (s.xblocks)
        for (size_t i = 0; i < plan->n; i++) free(s.xblocks[i]);
    free(s.xblocks);
    free(s.qw);
    free(s.hdiag);
    for (int i = 0; i < 3; i++) free(s.dst[i]);
    free(s.rtn);
    free(s.rtn_q);
    qf_calib_text_free(&ct);
    return rc;
}
