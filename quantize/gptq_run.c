/* gptq_run.c - GPTQ over a whole model (gptq_run.h). */
#include "gptq_run.h"
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

void qf_gptq_blocks_free(uint8_t **blocks, size_t n) {
    if (!blocks) return;
    for (size_t i = 0; i < n; i++) free(blocks[i]);
    free(blocks);
}

#define LOSS_ROWS 128

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
    uint8_t *dst;            /* one tensor's blocks */
    size_t dst_cap;
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

/* ggml's round-to-nearest of the rows W [n_out * n_in], dequantized into out. */
static int rtn_values(state *s, uint32_t type, const float *W, int64_t n_out, int64_t n_in, float *out) {
    uint64_t rs;
    ggml_row_size(type, (uint64_t)n_in, &rs);
    uint8_t *q = realloc(s->rtn_q, (size_t)(rs * (uint64_t)n_out));
    if (!q) return QF_ENOMEM;
    s->rtn_q = q;
    if (qf_quantize_rows(type, W, q, n_out, n_in, NULL) < 0) return QF_EUNSUPPORTED;
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
    int rc = qf_blockstore_put(s->store, (size_t)pi, s->xblocks[pi], t->out_nbytes, err);
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

/* One GPTQ tensor of a group: its loss sample (W, Q, RTN rows) and report. */
typedef struct pending {
    qf_gptq_tensor_report tr;
    float *smp;              /* [3 * nr * n_in]: rows of W, of Q, of RTN */
    int64_t nr;
} pending;

/* GPTQ of group member i with the group's factor: blocks to the store, W
 * replaced by its quantized values, the loss sample kept in pd. */
static int gptq_tensor(state *s, const qf_lw_group *g, int i, const qf_quant_tensor_plan *t, long pi,
                       const qf_gptq_prep *prep, float *xbuf, pending *pd, qf_err *err) {
    const qf_weight *w = g->w[i];
    const int64_t n_in = g->n_in;
    float *qw = s->qw, *W = g->wf[i];
    fit_weights(s, g, w, qw, xbuf);
    qf_gptq_opts go;
    qf_gptq_opts_init(&go);
    if (s->o->damp > 0) go.damp = s->o->damp;
    go.act_order = s->o->act_order;
    go.fit = QF_GPTQ_FIT_SEARCH;
    go.fit_weights = qw;
    go.n_threads = s->o->n_threads;
    uint8_t *dst = w->n_expert > 0 ? expert_dst(s, pi, t, w) : s->dst;
    if (w->n_expert == 0 && t->out_nbytes > s->dst_cap) {
        uint8_t *d = realloc(s->dst, (size_t)t->out_nbytes);
        if (d) s->dst = d, s->dst_cap = (size_t)t->out_nbytes;
        dst = d;
    }
    if (!dst) return qf_set_err(err, QF_ENOMEM, "out of memory for '%s'", w->name);
    /* the losses on at most LOSS_ROWS evenly spaced rows (each costs n_in^2 / 2) */
    const int64_t step = (w->n_out + LOSS_ROWS - 1) / LOSS_ROWS, nr = (w->n_out + step - 1) / step;
    const size_t rb = (size_t)n_in * sizeof *pd->smp;
    memset(pd, 0, sizeof *pd);
    pd->smp = malloc(3 * (size_t)nr * rb);
    if (!pd->smp) return qf_set_err(err, QF_ENOMEM, "out of memory for '%s'", w->name);
    pd->nr = nr;
    for (int64_t r = 0; r < nr; r++) memcpy(pd->smp + r * n_in, W + r * step * n_in, rb);
    int rc = qf_gptq_quantize_prep(t->type, W, w->n_out, prep, &go, dst, W, err);
    if (rc) {
        qf_err_prefix(err, w->name);
        return rc;
    }
    rc = w->n_expert > 0 ? expert_done(s, pi, t, w, err) : qf_blockstore_put(s->store, (size_t)pi, dst, t->out_nbytes, err);
    if (rc) return rc;
    for (int64_t r = 0; r < nr; r++) memcpy(pd->smp + (nr + r) * n_in, W + r * step * n_in, rb);
    if (rtn_values(s, t->type, pd->smp, nr, n_in, pd->smp + 2 * nr * n_in))
        return qf_set_err(err, QF_ENOMEM, "out of memory for '%s'", w->name);
    snprintf(pd->tr.name, sizeof pd->tr.name, "%s", w->name);
    pd->tr.type = t->type;
    pd->tr.damp = prep->info.damp;
    pd->tr.retries = prep->info.retries;
    pd->tr.expert = w->n_expert > 0 ? w->expert : -1;
    return 0;
}

/* The group function: GPTQ for every tensor of the group that has a GPTQ
 * type, with one factorisation of the group's H (in place, restored before
 * the losses are measured on it). */
static int on_group(void *user, const qf_lw_group *g, qf_err *err) {
    state *s = user;
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
            if ((rc = qf_gptq_prepare(g->H, n_in, &go, &prep, err))) {
                qf_err_prefix(err, w->name);
                break;
            }
        }
        rc = gptq_tensor(s, g, i, t, pi, &prep, xbuf, &pd[n_pd], err);
        n_pd++;
    }
    qf_gptq_prep_free(&prep); /* H is whole again */
    for (int k = 0; k < n_pd; k++) {
        if (!rc) {
            const int64_t nr = pd[k].nr;
            const float *smp = pd[k].smp;
            const double ref = qf_gptq_output_error(smp, NULL, nr, n_in, g->H, s->o->n_threads);
            pd[k].tr.loss = qf_gptq_output_error(smp, smp + nr * n_in, nr, n_in, g->H, s->o->n_threads) / ref;
            pd[k].tr.loss_rtn = qf_gptq_output_error(smp, smp + 2 * nr * n_in, nr, n_in, g->H, s->o->n_threads) / ref;
            if (s->rep && pd[k].tr.retries) s->rep->retried++;
            if (add_report(s, &pd[k].tr)) rc = qf_set_err(err, QF_ENOMEM, "out of memory");
        }
        free(pd[k].smp);
    }
    free(xbuf);
    return rc;
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
    if (rc) goto done;
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
    rc = qf_calib_text_run(&ct, o, 0, 0, on_group, &s, &st, err);
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
    free(s.dst);
    free(s.rtn);
    free(s.rtn_q);
    qf_calib_text_free(&ct);
    return rc;
}
