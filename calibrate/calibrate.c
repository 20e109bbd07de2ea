/* calibrate.c - target/site tables, the matmul hook and the chunked pass
 * (see calibrate.h). The statistics themselves live in stats.c. */
#include "calibrate.h"
#include "qf_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_MIN_TOKENS 16 /* llama-imatrix skips smaller batches */
#define DEFAULT_UBATCH 512    /* llama.cpp's default n_ubatch */

/* llama-imatrix's filter: "blk.*", and "output.weight" with --process-output. */
static int collected(const qf_calib *cal, const qf_weight *w) {
    if (!w->data || !w->name) return 0;
    if (strncmp(w->name, "blk.", 4) == 0) return 1;
    return cal->opt.process_output && strcmp(w->name, "output.weight") == 0;
}

static const char *site_suffix(qf_site_kind k) {
    switch (k) {
    case QF_SITE_ATTN_IN: return "attn_in";
    case QF_SITE_ATTN_OUT: return "attn_out";
    case QF_SITE_FFN_IN: return "ffn_in";
    case QF_SITE_FFN_DOWN: return "ffn_down_in";
    case QF_SITE_OUTPUT: return "output_in";
    }
    return "?";
}

/* Add the collected ones of ws[0..n) (all reading the same input) as one site. */
static void add_site(qf_calib *cal, int layer, qf_site_kind kind, const qf_weight *const *ws, int n) {
    qf_calib_site *s = &cal->sites[cal->n_sites];
    memset(s, 0, sizeof *s);
    for (int i = 0; i < n; i++) {
        if (!collected(cal, ws[i])) continue;
        qf_calib_target *t = &cal->targets[cal->n_targets];
        t->w = ws[i];
        t->layer = layer;
        t->site = cal->n_sites;
        s->targets[s->n_weights++] = cal->n_targets++;
        s->n_in = ws[i]->n_in;
    }
    if (s->n_weights == 0) return;
    s->layer = layer;
    s->kind = kind;
    if (layer >= 0)
        snprintf(s->name, sizeof s->name, "blk.%d.%s", layer, site_suffix(kind));
    else
        snprintf(s->name, sizeof s->name, "%s", site_suffix(kind));
    cal->n_sites++;
}

int qf_calib_init(qf_calib *cal, const qf_model *m, const qf_calib_options *opt, qf_err *err) {
    memset(cal, 0, sizeof *cal);
    cal->m = m;
    if (opt) cal->opt = *opt;
    if (cal->opt.min_tokens <= 0) cal->opt.min_tokens = DEFAULT_MIN_TOKENS;
    const int64_t L = m->hp.n_layer;
    const size_t X = (size_t)m->hp.n_expert; /* MoE: 3 expert views and 2 sites per expert, and the router */
    const size_t max_targets = (size_t)L * (7 + 3 * X + 1) + 1, max_sites = (size_t)L * (5 + 2 * X) + 1;
    cal->targets = calloc(max_targets, sizeof *cal->targets);
    cal->sites = calloc(max_sites, sizeof *cal->sites);
    if (!cal->targets || !cal->sites) {
        qf_calib_free(cal);
        return qf_set_err(err, QF_ENOMEM, "out of memory for the calibration tables");
    }
    for (int64_t l = 0; l < L; l++) {
        const qf_layer *ly = &m->layers[l];
        const qf_weight *attn_in[3] = {&ly->wq, &ly->wk, &ly->wv};
        const qf_weight *qkv[1] = {&ly->wqkv};
        const qf_weight *attn_out[1] = {&ly->wo};
        const qf_weight *ffn_in[2] = {&ly->ffn_gate, &ly->ffn_up};
        const qf_weight *gate_up[1] = {&ly->ffn_gate_up};
        const qf_weight *ffn_down[1] = {&ly->ffn_down};
        if (ly->wqkv.data) add_site(cal, (int)l, QF_SITE_ATTN_IN, qkv, 1);
        else add_site(cal, (int)l, QF_SITE_ATTN_IN, attn_in, 3);
        add_site(cal, (int)l, QF_SITE_ATTN_OUT, attn_out, 1);
        if (ly->gate_exps) { /* MoE: the router, then each expert's matrices */
            const qf_weight *router[1] = {&ly->ffn_gate_inp};
            add_site(cal, (int)l, QF_SITE_FFN_IN, router, 1);
            for (size_t e = 0; e < X; e++) {
                const qf_weight *x_in[2] = {&ly->gate_exps[e], &ly->up_exps[e]};
                const qf_weight *x_down[1] = {&ly->down_exps[e]};
                add_site(cal, (int)l, QF_SITE_FFN_IN, x_in, 2);
                add_site(cal, (int)l, QF_SITE_FFN_DOWN, x_down, 1);
            }
            continue;
        }
        if (ly->ffn_gate_up.data) add_site(cal, (int)l, QF_SITE_FFN_IN, gate_up, 1);
        else add_site(cal, (int)l, QF_SITE_FFN_IN, ffn_in, 2);
        add_site(cal, (int)l, QF_SITE_FFN_DOWN, ffn_down, 1);
    }
    const qf_weight *out[1] = {&m->output};
    add_site(cal, -1, QF_SITE_OUTPUT, out, 1);
    return 0;
}

void qf_calib_free(qf_calib *cal) {
    if (!cal) return;
    for (int i = 0; i < cal->n_accs; i++)
        if (cal->accs[i]) cal->accs[i]->destroy(cal->accs[i]);
    free(cal->targets);
    free(cal->sites);
    memset(cal, 0, sizeof *cal);
}

int qf_calib_add(qf_calib *cal, qf_calib_acc *acc, qf_err *err) {
    if (!acc) return qf_set_err(err, QF_EINVAL, "no accumulator given");
    if (cal->n_accs == QF_CALIB_MAX_ACCS) {
        acc->destroy(acc);
        return qf_set_err(err, QF_EINVAL, "too many accumulators (max %d)", QF_CALIB_MAX_ACCS);
    }
    cal->accs[cal->n_accs++] = acc;
    return 0;
}

int qf_calib_find_target(const qf_calib *cal, const char *name) {
    for (int i = 0; i < cal->n_targets; i++)
        if (strcmp(cal->targets[i].w->name, name) == 0) return i;
    return -1;
}

/* Target of weight w, or -1. Calls come in forward order, so the search
 * starts where the last one matched and almost always hits at once. */
static int target_of(qf_calib *cal, const qf_weight *w) {
    const int n = cal->n_targets;
    for (int k = 0; k < n; k++) {
        int i = (cal->hint + k) % n;
        if (cal->targets[i].w == w) {
            cal->hint = (i + 1) % n;
            return i;
        }
    }
    return -1;
}

void qf_calib_hook(void *user, int layer, const qf_weight *w, const float *x, int64_t T) {
    qf_calib *cal = user;
    if (cal->failed) return;
    const int t = cal->n_targets ? target_of(cal, w) : -1;
    if (t < 0) return;
    cal->n_calls++;
    /* llama-imatrix takes every call of an expert product, whatever its size */
    if (T < cal->opt.min_tokens && w->n_expert == 0) {
        cal->n_calls_skipped++;
        return;
    }
    const qf_calib_site *s = &cal->sites[cal->targets[t].site];
    const int site_lead = s->targets[0] == t;
    for (int i = 0; i < cal->n_accs; i++) {
        qf_calib_acc *a = cal->accs[i];
        int rc = 0;
        if (!a->per_site)
            rc = a->observe(a, cal, t, x, T, &cal->hook_err);
        else if (site_lead)
            rc = a->observe(a, cal, cal->targets[t].site, x, T, &cal->hook_err);
        if (rc < 0) {
            cal->failed = 1;
            return;
        }
    }
}

void qf_calib_attach(qf_calib *cal, qf_ctx *c) {
    c->hook = qf_calib_hook;
    c->hook_user = cal;
}

/* One chunk from an empty KV cache, in forward calls of at most n_ubatch
 * tokens; fails with the engine's or an accumulator's error. */
static int run_chunk(qf_calib *cal, qf_ctx *ctx, int32_t *chunk, const int32_t *tokens, int64_t n_ctx,
                     int64_t n_ubatch, const qf_calib_params *p, int want_output, qf_err *err) {
    memcpy(chunk, tokens, (size_t)n_ctx * sizeof *chunk);
    if (p->add_bos) chunk[0] = p->bos_id;
    qf_ctx_reset(ctx);
    for (int64_t b0 = 0; b0 < n_ctx; b0 += n_ubatch) {
        const int64_t nb = n_ctx - b0 < n_ubatch ? n_ctx - b0 : n_ubatch;
        /* logits (the output matmul) only when the output is collected */
        int rc = qf_forward(ctx, chunk + b0, nb, want_output ? 0 : nb, NULL, err);
        if (rc < 0) return rc;
        if (cal->failed)
            return qf_set_err(err, cal->hook_err.code ? cal->hook_err.code : QF_EINVAL, "%s", cal->hook_err.msg);
    }
    return 0;
}

int qf_calib_run(qf_calib *cal, const int32_t *tokens, int64_t n_tokens, const qf_calib_params *p,
                 qf_calib_stats *st, qf_err *err) {
    memset(st, 0, sizeof *st);
    const int64_t n_ctx = p->n_ctx;
    const int64_t n_ubatch = p->n_ubatch > 0 ? (p->n_ubatch < n_ctx ? p->n_ubatch : n_ctx)
                                             : (n_ctx < DEFAULT_UBATCH ? n_ctx : DEFAULT_UBATCH);
    if (n_ctx <= 0) return qf_set_err(err, QF_EINVAL, "context size %lld must be positive", (long long)n_ctx);
    if (n_tokens < n_ctx)
        return qf_set_err(err, QF_EINVAL, "the text has %lld tokens, fewer than one chunk of %lld", (long long)n_tokens,
                          (long long)n_ctx);
    int64_t n_chunks = n_tokens / n_ctx;
    if (p->max_chunks > 0 && p->max_chunks < n_chunks) n_chunks = p->max_chunks;

    qf_ctx ctx;
    int32_t *chunk = malloc((size_t)n_ctx * sizeof *chunk);
    if (!chunk) return qf_set_err(err, QF_ENOMEM, "out of memory");
    int rc = qf_ctx_init(&ctx, cal->m, n_ctx, n_ubatch, err);
    if (rc < 0) {
        free(chunk);
        return rc;
    }
    ctx.kv_f16 = p->kv_f16;
    ctx.act_llamacpp = !p->act_f32;
    ctx.n_threads = cal->opt.n_threads;
    qf_calib_attach(cal, &ctx);
    cal->failed = 0;
    qf_err_clear(&cal->hook_err);
    const int want_output = cal->n_targets > 0 && cal->targets[cal->n_targets - 1].layer < 0;
    qf_dist *d = cal->opt.dist;
    const int64_t size = qf_dist_size(d), rank = qf_dist_rank(d);
    if ((rc = qf_dist_same(d, tokens, (size_t)(n_chunks * n_ctx) * sizeof *tokens, "the calibration text", err)))
        goto done;
    const double t0 = qf_now_seconds();
    /* round j: chunk j*size + rank here; the chunks' sums added in chunk order */
    for (int64_t j = 0; j * size < n_chunks; j++) {
        const int64_t c = j * size + rank, n_parts = n_chunks - j * size < size ? n_chunks - j * size : size;
        for (int i = 0; i < cal->n_accs; i++)
            if (cal->accs[i]->n_part) memset(cal->accs[i]->part, 0, cal->accs[i]->n_part * sizeof(double));
        if (c < n_chunks) rc = run_chunk(cal, &ctx, chunk, tokens + c * n_ctx, n_ctx, n_ubatch, p, want_output, err);
        if ((rc = qf_dist_check(d, rc, err))) goto done;
        for (int i = 0; i < cal->n_accs; i++)
            if (cal->accs[i]->n_part)
                qf_dist_reduce(d, cal->accs[i]->total, cal->accs[i]->part, cal->accs[i]->n_part, (int)n_parts);
        const int64_t done_chunks = j * size + n_parts;
        st->n_chunks = done_chunks;
        st->n_tokens = done_chunks * n_ctx;
        st->seconds = qf_now_seconds() - t0;
        if (p->progress) p->progress(p->progress_user, done_chunks, n_chunks, st->n_tokens, st->seconds);
    }
    if (size > 1) { /* the call counts of every rank, on rank 0 */
        double calls[2] = {(double)cal->n_calls, (double)cal->n_calls_skipped}, sum[2] = {0, 0};
        qf_dist_reduce(d, sum, calls, 2, (int)(n_chunks < size ? n_chunks : size));
        if (rank == 0) {
            cal->n_calls = (int64_t)sum[0];
            cal->n_calls_skipped = (int64_t)sum[1];
        }
    }
    st->seconds = qf_now_seconds() - t0;
    st->tokens_per_second = st->seconds > 0 ? (double)st->n_tokens / st->seconds : 0.0;
done:
    qf_ctx_free(&ctx);
    free(chunk);
    return rc;
}
