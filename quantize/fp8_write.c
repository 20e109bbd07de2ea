/* fp8_write.c - HF directory -> compressed-tensors FP8 directory (fp8_write.h). */
#include "fp8_write.h"
#include "qf_io.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ggml_types.h"
#include "gguf.h"
#include "hf_arch.h"
#include "json.h"
#include "numfmt.h"
#include "qf_tmpfile.h"
#include "quantize.h"
#include "qf_util.h"
#include "safetensors.h"

#define FP8_BLOCK 128
#define DEFAULT_SHARD_BYTES 5000000000ull

/* One source tensor under its HF name: a safetensors tensor, or a GGUF
 * tensor whose rows may be in GGUF's permuted Q/K order. */
typedef struct srct {
    char name[320];
    st_dtype dtype;            /* F32, F16 or BF16 */
    uint32_t n_dims;
    uint64_t shape[ST_MAX_DIMS]; /* row-major (HF order) */
    uint64_t nbytes;
    const uint8_t *data;       /* into the input's mapping */
    const st_tensor *st;       /* HF input: the tensor (for st_release) */
    uint64_t perm_group;       /* GGUF Q/K: rows of one permuted head group; 0: HF row order */
    st_dtype keep_dtype;       /* dtype a copied tensor is written in (F32 GGUF norms: the model's) */
} srct;

/* One written tensor. */
typedef struct job {
    char name[320];            /* HF name as written */
    int kind;                  /* KEEP, WEIGHT, WSCALE, ISCALE */
    int lin;                   /* index into linears (quantized kinds) */
    const srct *src;           /* KEEP: the source tensor */
    st_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[2];
    uint64_t nbytes;
    uint32_t shard;
    int kept_linear;           /* KEEP: a block matrix (a Linear) left unquantized: listed in "ignore" */
} job;
enum { KEEP = 0, WEIGHT = 1, WSCALE = 2, ISCALE = 3 };

/* One quantized Linear. */
typedef struct linear {
    const srct *src;           /* [out, in] F32/F16/BF16 */
    char gguf[96];
    int64_t n_out, n_in, nbr, nbc;
    float *scale;              /* computed on first use, freed after the weight_scale */
    float act_amax;            /* static: max|x| of the input */
} linear;

typedef struct wctx {
    const qf_fp8_write_opts *o;
    qf_err *err;
    const char *hf_dir;        /* config.json and the tokenizer files */
    st_model st;               /* HF input */
    qf_quant_input gg;         /* GGUF input (all shards of a split one) */
    srct *srcs;
    size_t n_srcs;
    job *jobs;
    size_t n_jobs;
    linear *lins;
    size_t n_lins;
    char **tracked;            /* temp paths recorded for removal on a fatal signal */
    size_t n_tracked;
    float *row;                /* n_in of the widest tensor */
    uint8_t *buf;              /* one output row */
} wctx;

int qf_fp8_is_linear(const char *g) {
    static const char *const suffix[] = {".attn_q.weight",   ".attn_k.weight",  ".attn_v.weight", ".attn_output.weight",
                                         ".ffn_gate.weight", ".ffn_up.weight", ".ffn_down.weight"};
    if (strncmp(g, "blk.", 4) != 0) return 0;
    const char *dot = strchr(g + 4, '.');
    if (!dot || dot == g + 4) return 0;
    for (size_t i = 0; i < sizeof suffix / sizeof *suffix; i++)
        if (!strcmp(dot, suffix[i])) return 1;
    return 0;
}

/* GGUF row holding HF row r when GGUF interleaves the two rotary halves of
 * each head group of `group` rows (the inverse of convert's permutation). */
static uint64_t gguf_row_of(uint64_t r, uint64_t group) {
    uint64_t h = r / group, q = r % group, half = group / 2;
    return h * group + (q < half ? 2 * q : 2 * (q - half) + 1);
}

/* Row r (HF order) of a 2-D F32/F16/BF16 tensor as F32 (the mapping need not be aligned). */
static void read_row(const srct *t, int64_t r, int64_t n, float *out) {
    uint64_t row = t->perm_group ? gguf_row_of((uint64_t)r, t->perm_group) : (uint64_t)r;
    const uint8_t *p = t->data + (size_t)row * (size_t)n * st_dtype_size(t->dtype);
    if (t->dtype == ST_F32) {
        memcpy(out, p, (size_t)n * 4);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        out[i] = t->dtype == ST_F16 ? qf_f16_to_f32(h) : qf_bf16_to_f32(h);
    }
}

/* v rounded to dtype d (F32/F16/BF16) and back. */
static float round_to(st_dtype d, float v) {
    return d == ST_F16 ? qf_f16_to_f32(qf_f32_to_f16(v)) : d == ST_BF16 ? qf_bf16_to_f32(qf_f32_to_bf16(v)) : v;
}

/* amax / 448 as stored (dtype d); 1 for an all-zero range. A scale that
 * rounds to 0 or Inf in the dtype is a bad input. */
static int scale_of(wctx *w, const char *what, st_dtype d, float amax, float *out) {
    float s = amax > 0 ? round_to(d, amax / QF_FP8_E4M3_MAX) : 1.0f;
    if (!(s > 0) || !isfinite(s))
        return qf_set_err(w->err, QF_ERANGE, "%s: %s: max |value| %g gives no usable scale in %s", w->o->in_dir, what,
                          (double)amax, st_dtype_name(d));
    *out = s;
    return 0;
}

/* Candidate k of a scale group whose largest |value| is amax: amax / 448 *
 * 2^((k - MSE_BELOW) / MSE_PER_OCTAVE) rounded to dtype d; 0 if unusable. A
 * factor below 1 saturates the largest values, above 1 moves every value to
 * another point of E4M3's grid (an octave apart the grid repeats). */
#define MSE_CANDIDATES 32
#define MSE_PER_OCTAVE 32
#define MSE_BELOW 16
static float mse_candidate(st_dtype d, float amax, int k) {
    float s = round_to(d, amax / QF_FP8_E4M3_MAX * exp2f((float)(k - MSE_BELOW) / MSE_PER_OCTAVE));
    return s > 0 && isfinite(s) ? s : 0;
}

/* Second pass over L's rows: each scale group's squared round-trip error under
 * every candidate; L->scale[g] becomes the least-error candidate (ties keep
 * the amax scale, then the smaller k). Fails only when out of memory. */
static int mse_scales(wctx *w, linear *L, const float *amax, size_t n) {
    const qf_fp8_scheme sc = w->o->scheme;
    const st_dtype d = L->src->dtype;
    double *e = calloc(n * MSE_CANDIDATES, sizeof *e);
    float *cand = malloc(n * MSE_CANDIDATES * sizeof *cand);
    if (!e || !cand) {
        free(e);
        free(cand);
        return qf_set_err(w->err, QF_ENOMEM, "out of memory");
    }
    for (size_t g = 0; g < n; g++)
        for (int k = 0; k < MSE_CANDIDATES; k++) cand[g * MSE_CANDIDATES + k] = amax[g] > 0 ? mse_candidate(d, amax[g], k) : 0;
    const int64_t seg = sc == QF_FP8_BLOCK ? FP8_BLOCK : L->n_in;
    for (int64_t r = 0; r < L->n_out; r++) {
        read_row(L->src, r, L->n_in, w->row);
        for (int64_t c0 = 0; c0 < L->n_in; c0 += seg) {
            int64_t m = L->n_in - c0 < seg ? L->n_in - c0 : seg;
            size_t g = sc == QF_FP8_TENSOR ? 0 : sc == QF_FP8_CHANNEL ? (size_t)r : (size_t)((r / FP8_BLOCK) * L->nbc + c0 / FP8_BLOCK);
            const float *cg = cand + g * MSE_CANDIDATES;
            double *eg = e + g * MSE_CANDIDATES;
            double v = 0;
            for (int k = 0; k < MSE_CANDIDATES; k++) {
                if (!(cg[k] > 0)) continue;
                if (k == 0 || cg[k] != cg[k - 1]) v = qf_fp8_sqerr_row(w->row + c0, cg[k], m);
                eg[k] += v;
            }
        }
    }
    for (size_t g = 0; g < n; g++) {
        const float *cg = cand + g * MSE_CANDIDATES;
        const double *eg = e + g * MSE_CANDIDATES;
        if (!(amax[g] > 0) || cg[MSE_BELOW] != L->scale[g]) continue; /* all-zero group: scale 1 */
        int best = MSE_BELOW;
        for (int k = 0; k < MSE_CANDIDATES; k++)
            if (cg[k] > 0 && eg[k] < eg[best]) best = k;
        L->scale[g] = cg[best];
    }
    free(e);
    free(cand);
    return 0;
}

/* Pass over the rows of L: the weight scales of the chosen scheme. */
static int compute_scales(wctx *w, linear *L) {
    const qf_fp8_scheme sc = w->o->scheme;
    size_t n = sc == QF_FP8_TENSOR ? 1 : sc == QF_FP8_CHANNEL ? (size_t)L->n_out : (size_t)(L->nbr * L->nbc);
    float *amax = calloc(n, sizeof *amax);
    L->scale = malloc(n * sizeof *L->scale);
    if (!amax || !L->scale) {
        free(amax);
        return qf_set_err(w->err, QF_ENOMEM, "out of memory");
    }
    for (int64_t r = 0; r < L->n_out; r++) {
        read_row(L->src, r, L->n_in, w->row);
        for (int64_t c = 0; c < L->n_in; c++) {
            float a = fabsf(w->row[c]);
            if (!isfinite(a)) {
                free(amax);
                return qf_set_err(w->err, QF_ERANGE, "%s: tensor '%s' element [%lld, %lld] is %s", w->o->in_dir,
                                  L->src->name, (long long)r, (long long)c, isnan(w->row[c]) ? "NaN" : "Inf");
            }
            size_t k = sc == QF_FP8_TENSOR ? 0 : sc == QF_FP8_CHANNEL ? (size_t)r
                                                   : (size_t)((r / FP8_BLOCK) * L->nbc + c / FP8_BLOCK);
            if (a > amax[k]) amax[k] = a;
        }
    }
    int rc = 0;
    for (size_t k = 0; k < n && !rc; k++) rc = scale_of(w, L->src->name, L->src->dtype, amax[k], &L->scale[k]);
    if (!rc && w->o->scale_mode == QF_FP8_SCALE_MSE) rc = mse_scales(w, L, amax, n);
    free(amax);
    return rc;
}

/* Write `n` floats as dtype d. */
static int write_floats(wctx *w, st_writer *sw, st_dtype d, const float *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint8_t b[4];
        size_t k = st_dtype_size(d);
        if (d == ST_F32) memcpy(b, &v[i], 4);
        else {
            uint16_t h = d == ST_F16 ? qf_f32_to_f16(v[i]) : qf_f32_to_bf16(v[i]);
            memcpy(b, &h, 2);
        }
        if (st_writer_write(sw, b, k)) return QF_EIO;
    }
    return 0;
}

/* Drop the pages of a consumed source tensor (the mapping is read-only). */
static void release(wctx *w, const srct *t) {
    if (t->st) {
        st_release(&w->st, t->st);
        return;
    }
    qf_release_range(NULL, 0, t->data, t->nbytes, 0);
}

static int emit(wctx *w, st_writer *sw, job *j) {
    int rc = 0;
    if (j->kind == KEEP && j->dtype != j->src->dtype) { /* F32 -> the model's dtype, exact (srcs_from_gguf) */
        const uint64_t n = j->src->nbytes / 4;
        for (uint64_t i = 0; i < n && !rc; i++) {
            float v;
            memcpy(&v, j->src->data + 4 * i, 4);
            rc = write_floats(w, sw, j->dtype, &v, 1);
        }
        release(w, j->src);
        return rc;
    }
    if (j->kind == KEEP) {
        rc = st_writer_write(sw, j->src->data, (size_t)j->src->nbytes);
        release(w, j->src);
        return rc;
    }
    linear *L = &w->lins[j->lin];
    if (!L->scale && (rc = compute_scales(w, L))) return rc;
    if (j->kind == ISCALE) {
        float s;
        char what[400];
        snprintf(what, sizeof what, "input of '%s'", L->src->name);
        if ((rc = scale_of(w, what, L->src->dtype, L->act_amax, &s))) return rc;
        return write_floats(w, sw, j->dtype, &s, 1);
    }
    if (j->kind == WSCALE) {
        size_t n = w->o->scheme == QF_FP8_TENSOR ? 1 : w->o->scheme == QF_FP8_CHANNEL ? (size_t)L->n_out
                                                                                      : (size_t)(L->nbr * L->nbc);
        rc = write_floats(w, sw, j->dtype, L->scale, n);
        free(L->scale);
        L->scale = NULL;
        return rc;
    }
    for (int64_t r = 0; r < L->n_out && !rc; r++) { /* WEIGHT */
        read_row(L->src, r, L->n_in, w->row);
        int64_t bad = -1;
        if (w->o->scheme == QF_FP8_BLOCK) {
            for (int64_t c0 = 0; c0 < L->n_in && bad < 0; c0 += FP8_BLOCK) {
                int64_t m = L->n_in - c0 < FP8_BLOCK ? L->n_in - c0 : FP8_BLOCK;
                float s = L->scale[(r / FP8_BLOCK) * L->nbc + c0 / FP8_BLOCK];
                bad = qf_fp8_encode_row(w->row + c0, s, w->buf + c0, m);
                if (bad >= 0) bad += c0;
            }
        } else {
            bad = qf_fp8_encode_row(w->row, w->o->scheme == QF_FP8_TENSOR ? L->scale[0] : L->scale[r], w->buf, L->n_in);
        }
        if (bad >= 0)
            return qf_set_err(w->err, QF_ERANGE, "%s: tensor '%s' element [%lld, %lld] is not finite", w->o->in_dir,
                              L->src->name, (long long)r, (long long)bad);
        rc = st_writer_write(sw, w->buf, (size_t)L->n_in);
    }
    release(w, L->src);
    return rc;
}

/* ---------------- plan ---------------- */

static int add_job(wctx *w, const char *name, int kind, int lin, const srct *src, st_dtype d, uint32_t nd,
                   uint64_t d0, uint64_t d1) {
    job *j = &w->jobs[w->n_jobs++];
    memset(j, 0, sizeof *j);
    if ((size_t)snprintf(j->name, sizeof j->name, "%s", name) >= sizeof j->name)
        return qf_set_err(w->err, QF_ERANGE, "%s: tensor name '%s' is too long", w->o->in_dir, name);
    j->kind = kind;
    j->lin = lin;
    j->src = src;
    j->dtype = d;
    j->n_dims = nd;
    j->shape[0] = d0;
    j->shape[1] = d1;
    j->nbytes = d0 * (nd > 1 ? d1 : 1) * st_dtype_size(d);
    return 0;
}

static float act_amax_of(const qf_fp8_write_opts *o, const char *gguf, int *found) {
    for (size_t i = 0; i < o->n_act; i++)
        if (!strcmp(o->act_names[i], gguf)) {
            *found = 1;
            return o->act_amax[i];
        }
    *found = 0;
    return 0;
}

static int plan(wctx *w, const qf_hf_arch *a) {
    w->jobs = calloc(3 * w->n_srcs + 1, sizeof *w->jobs);
    w->lins = calloc(w->n_srcs + 1, sizeof *w->lins);
    if (!w->jobs || !w->lins) return qf_set_err(w->err, QF_ENOMEM, "out of memory");
    uint64_t max_in = 1;
    for (size_t i = 0; i < w->n_srcs; i++) {
        const srct *t = &w->srcs[i];
        char g[96], nm[320];
        int64_t bid;
        int rc;
        if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16)
            return qf_set_err(w->err, QF_EUNSUPPORTED, "%s: tensor '%s' has dtype %s (FP8 output needs F32, F16 or BF16)",
                              w->o->in_dir, t->name, st_dtype_name(t->dtype));
        const int mapped = t->n_dims == 2 && qf_hf_map_tensor(a, t->name, g, sizeof g, &bid);
        int lin = mapped && qf_fp8_is_linear(g);
        if (!lin) {
            if ((rc = add_job(w, t->name, KEEP, -1, t, t->keep_dtype, t->n_dims, t->n_dims ? t->shape[0] : 1,
                              t->n_dims > 1 ? t->shape[1] : 1)))
                return rc;
            /* fused (phi3 attn_qkv), expert and router matrices stay as they are */
            w->jobs[w->n_jobs - 1].kept_linear = mapped && !strncmp(g, "blk.", 4) && qf_ends_with(t->name, ".weight");
            w->jobs[w->n_jobs - 1].n_dims = t->n_dims; /* scalars and 3-D+ copied as they are */
            w->jobs[w->n_jobs - 1].nbytes = t->nbytes / st_dtype_size(t->dtype) * st_dtype_size(t->keep_dtype);
            continue;
        }
        linear *L = &w->lins[w->n_lins];
        L->src = t;
        snprintf(L->gguf, sizeof L->gguf, "%s", g);
        L->n_out = (int64_t)t->shape[0];
        L->n_in = (int64_t)t->shape[1];
        L->nbr = (L->n_out + FP8_BLOCK - 1) / FP8_BLOCK;
        L->nbc = (L->n_in + FP8_BLOCK - 1) / FP8_BLOCK;
        if (t->shape[1] > max_in) max_in = t->shape[1];
        if (w->o->static_act) {
            int found;
            L->act_amax = act_amax_of(w->o, g, &found);
            if (!found)
                return qf_set_err(w->err, QF_ENOTFOUND, "%s: no calibration statistics for '%s' (%s)", w->o->in_dir,
                                  t->name, g);
        }
        int li = (int)w->n_lins++;
        size_t base = strlen(t->name) - strlen("weight");
        if ((rc = add_job(w, t->name, WEIGHT, li, NULL, ST_F8_E4M3, 2, t->shape[0], t->shape[1]))) return rc;
        snprintf(nm, sizeof nm, "%s_scale%s", t->name, w->o->block_fp8_layout ? "_inv" : "");
        if (w->o->scheme == QF_FP8_TENSOR) rc = add_job(w, nm, WSCALE, li, NULL, t->dtype, 1, 1, 1);
        else if (w->o->scheme == QF_FP8_CHANNEL) rc = add_job(w, nm, WSCALE, li, NULL, t->dtype, 2, t->shape[0], 1);
        else rc = add_job(w, nm, WSCALE, li, NULL, t->dtype, 2, (uint64_t)L->nbr, (uint64_t)L->nbc);
        if (rc) return rc;
        if (w->o->static_act) {
            snprintf(nm, sizeof nm, "%.*sinput_scale", (int)base, t->name);
            if ((rc = add_job(w, nm, ISCALE, li, NULL, t->dtype, 1, 1, 1))) return rc;
        }
    }
    w->row = malloc((size_t)max_in * sizeof(float));
    w->buf = malloc((size_t)max_in);
    if (!w->row || !w->buf) return qf_set_err(w->err, QF_ENOMEM, "out of memory");
    return 0;
}

/* ---------------- sources ---------------- */

static int cmp_src(const void *a, const void *b) { return strcmp(((const srct *)a)->name, ((const srct *)b)->name); }

static int srcs_alloc(wctx *w, uint64_t n) {
    w->srcs = calloc(n + 1, sizeof *w->srcs);
    return w->srcs ? 0 : qf_set_err(w->err, QF_ENOMEM, "out of memory");
}

/* The tensors of an HF directory as they are. */
static int srcs_from_st(wctx *w) {
    int rc = srcs_alloc(w, w->st.n_tensors);
    for (uint64_t i = 0; i < w->st.n_tensors && !rc; i++) {
        const st_tensor *t = &w->st.tensors[i];
        srct *s = &w->srcs[w->n_srcs++];
        if ((size_t)snprintf(s->name, sizeof s->name, "%s", t->name) >= sizeof s->name)
            return qf_set_err(w->err, QF_ERANGE, "%s: tensor name '%s' is too long", w->o->in_dir, t->name);
        s->dtype = t->dtype;
        s->n_dims = t->n_dims;
        memcpy(s->shape, t->shape, sizeof s->shape);
        s->nbytes = t->nbytes;
        s->data = t->data;
        s->st = t;
        s->keep_dtype = t->dtype;
    }
    return rc;
}

/* 1 if every F32 value of t is exact in dtype d. */
static int exact_in(const srct *t, st_dtype d) {
    for (uint64_t i = 0; i < t->nbytes / 4; i++) {
        float v;
        memcpy(&v, t->data + 4 * i, 4);
        if (round_to(d, v) != v && !(v != v)) return 0;
    }
    return 1;
}

/* The tensors of a GGUF under their HF names (arch a's rules), shapes checked
 * against config.json; Q/K rows are read back in HF order. rope_freqs (made
 * by the converter from config.json) is left out. Gemma-family GGUFs (norms
 * stored as 1 + w) are refused. A copied F32 tensor whose
 * values are all exact in the model's dtype (model_dtype: config.json's
 * torch_dtype; converters keep norms in F32) is written back in it. Quantized
 * GGUF types and tensors without an HF name are refused. */
static int srcs_from_gguf(wctx *w, const qf_hf_arch *a, const qf_hf_hparams *hp, st_dtype model_dtype) {
    if (a->flags & QF_ARCH_GEMMA_FAMILY) /* the converter changed the norms' values (1 + w) */
        return qf_set_err(w->err, QF_EUNSUPPORTED, "%s: GGUF input of %s is not supported (use the HF directory)",
                          w->o->in_dir, a->hf_class);
    int rc = srcs_alloc(w, w->gg.all.n_tensors);
    for (uint64_t i = 0; i < w->gg.all.n_tensors && !rc; i++) {
        const gguf_tensor_info *g = &w->gg.all.tensors[i];
        if (!strcmp(g->name, "rope_freqs.weight")) continue;
        srct *s = &w->srcs[w->n_srcs];
        int64_t bid;
        const qf_tensor_rule *r = qf_hf_map_gguf_tensor(a, g->name, s->name, sizeof s->name, &bid);
        if (!r)
            return qf_set_err(w->err, QF_EUNSUPPORTED, "%s: tensor '%s' has no Hugging Face name for %s", w->o->in_dir,
                              g->name, a->hf_class);
        if (g->type != GGML_TYPE_F32 && g->type != GGML_TYPE_F16 && g->type != GGML_TYPE_BF16)
            return qf_set_err(w->err, QF_EUNSUPPORTED,
                              "%s: tensor '%s' is %s (FP8 output needs an F32, F16 or BF16 GGUF)", w->o->in_dir,
                              g->name, ggml_get_type_traits(g->type) ? ggml_get_type_traits(g->type)->name : "an unknown type");
        s->dtype = g->type == GGML_TYPE_F32 ? ST_F32 : g->type == GGML_TYPE_F16 ? ST_F16 : ST_BF16;
        s->n_dims = g->n_dims;
        for (uint32_t d = 0; d < g->n_dims; d++) s->shape[d] = g->ne[g->n_dims - 1 - d];
        int64_t want0 = qf_hf_dim_value(hp, r->shape[0]), want1 = r->shape[1] ? qf_hf_dim_value(hp, r->shape[1]) : 0;
        if (g->n_dims != (r->shape[1] ? 2u : 1u) || (int64_t)s->shape[0] != want0 ||
            (r->shape[1] && (int64_t)s->shape[1] != want1))
            return qf_set_err(w->err, QF_EFORMAT, "%s: tensor '%s' does not have the shape config.json gives", w->o->in_dir,
                              g->name);
        s->nbytes = g->nbytes;
        s->data = g->data;
        s->keep_dtype = s->dtype;
        if (s->dtype == ST_F32 && model_dtype != ST_F32 && exact_in(s, model_dtype)) s->keep_dtype = model_dtype;
        if ((a->flags & QF_ARCH_PERMUTE_QK) && r->permute != QF_PERMUTE_NONE) {
            if (g->n_dims != 2)
                return qf_set_err(w->err, QF_EUNSUPPORTED, "%s: tensor '%s': permuted 1-D tensors are not supported",
                                  w->o->in_dir, g->name);
            s->perm_group = s->shape[0] / (uint64_t)(r->permute == QF_PERMUTE_Q ? hp->n_head : hp->n_head_kv);
        }
        w->n_srcs++;
    }
    return rc;
}

/* ---------------- files ---------------- */

/* Record a path of the temp directory (or the directory) for removal on a
 * fatal signal (qf_tmpfile_track; nothing unless the program installed it). */
static void track(wctx *w, const char *path) {
    char **t = realloc(w->tracked, (w->n_tracked + 1) * sizeof *t);
    if (!t) return;
    w->tracked = t;
    if ((t[w->n_tracked] = strdup(path))) qf_tmpfile_track(t[w->n_tracked++]);
}

static int shard_path(char *buf, size_t cap, const char *dir, uint32_t s, uint32_t n) {
    if (n == 1) return snprintf(buf, cap, "%s/model.safetensors", dir) >= (int)cap;
    return snprintf(buf, cap, "%s/model-%05u-of-%05u.safetensors", dir, s + 1, n) >= (int)cap;
}

static int write_shard(wctx *w, const char *dir, uint32_t s, uint32_t n_shards) {
    char path[PATH_MAX];
    if (shard_path(path, sizeof path, dir, s, n_shards))
        return qf_set_err(w->err, QF_ERANGE, "%s: path too long", dir);
    track(w, path);
    st_writer *sw = st_writer_create(path, w->err);
    if (!sw) return QF_EIO;
    st_writer_add_metadata(sw, "format", "pt");
    for (size_t i = 0; i < w->n_jobs; i++) {
        job *j = &w->jobs[i];
        if (j->shard == s) st_writer_add_tensor(sw, j->name, j->dtype, j->n_dims, j->src ? j->src->shape : j->shape);
    }
    int rc = st_writer_begin_data(sw);
    for (uint64_t k = 0; !rc; k++) {
        const char *nm = st_writer_tensor_name(sw, k);
        if (!nm) break;
        job *j = NULL;
        for (size_t i = 0; i < w->n_jobs && !j; i++)
            if (w->jobs[i].shard == s && !strcmp(w->jobs[i].name, nm)) j = &w->jobs[i];
        rc = j ? emit(w, sw, j) : qf_set_err(w->err, QF_EINVAL, "internal: tensor '%s' has no job", nm);
    }
    if (rc) {
        st_writer_abort(sw);
        return rc < 0 ? rc : QF_EIO;
    }
    return st_writer_finish(sw);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static int write_index(wctx *w, const char *dir, uint32_t n_shards, uint64_t total) {
    char *path = qf_path_join(dir, "model.safetensors.index.json");
    if (path) track(w, path);
    FILE *f = path ? fopen(path, "w") : NULL;
    if (!f) {
        int rc = qf_set_err(w->err, QF_EIO, "%s: cannot create model.safetensors.index.json", dir);
        free(path);
        return rc;
    }
    fprintf(f, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n  \"weight_map\": {", (unsigned long long)total);
    for (size_t i = 0; i < w->n_jobs; i++) {
        char sp[64];
        if (w->jobs[i].shard + 1 > n_shards) continue;
        snprintf(sp, sizeof sp, "model-%05u-of-%05u.safetensors", w->jobs[i].shard + 1, n_shards);
        fprintf(f, "%s\n    ", i ? "," : "");
        json_str(f, w->jobs[i].name);
        fprintf(f, ": \"%s\"", sp);
    }
    fprintf(f, "\n  }\n}\n");
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    free(path);
    return bad ? qf_set_err(w->err, QF_EIO, "%s: writing model.safetensors.index.json failed", dir) : 0;
}

/* The compressed-tensors quantization_config (docs/formats.md lists each field's source). */
static void write_qconfig(FILE *f, const qf_fp8_write_opts *o, const wctx *w) {
    if (o->block_fp8_layout) {
        fprintf(f, "  \"quantization_config\": {\n    \"activation_scheme\": \"dynamic\",\n    \"fmt\": \"e4m3\",\n"
                   "    \"quant_method\": \"fp8\",\n    \"weight_block_size\": [128, 128]\n  }\n");
        return;
    }
    const char *ws = qf_fp8_scheme_name(o->scheme);
    fprintf(f, "  \"quantization_config\": {\n    \"config_groups\": {\n      \"group_0\": {\n");
    if (o->static_act)
        fprintf(f, "        \"input_activations\": {\"actorder\": null, \"block_structure\": null, \"dynamic\": false, "
                   "\"group_size\": null, \"num_bits\": 8, \"observer\": \"minmax\", \"observer_kwargs\": {}, "
                   "\"strategy\": \"tensor\", \"symmetric\": true, \"type\": \"float\"},\n");
    else if (o->scheme == QF_FP8_BLOCK)
        fprintf(f, "        \"input_activations\": {\"actorder\": null, \"block_structure\": null, \"dynamic\": true, "
                   "\"group_size\": 128, \"num_bits\": 8, \"observer\": null, \"observer_kwargs\": {}, "
                   "\"strategy\": \"group\", \"symmetric\": true, \"type\": \"float\"},\n");
    else
        fprintf(f, "        \"input_activations\": {\"actorder\": null, \"block_structure\": null, \"dynamic\": true, "
                   "\"group_size\": null, \"num_bits\": 8, \"observer\": null, \"observer_kwargs\": {}, "
                   "\"strategy\": \"token\", \"symmetric\": true, \"type\": \"float\"},\n");
    fprintf(f, "        \"output_activations\": null,\n        \"targets\": [\"Linear\"],\n");
    fprintf(f, "        \"weights\": {\"actorder\": null, \"block_structure\": %s, \"dynamic\": false, "
               "\"group_size\": null, \"num_bits\": 8, \"observer\": \"minmax\", \"observer_kwargs\": {}, "
               "\"strategy\": \"%s\", \"symmetric\": true, \"type\": \"float\"}\n",
            o->scheme == QF_FP8_BLOCK ? "[128, 128]" : "null", ws);
    fprintf(f, "      }\n    },\n    \"format\": \"float-quantized\",\n    \"global_compression_ratio\": null,\n"
               "    \"ignore\": [\"lm_head\"");
    for (size_t i = 0; i < w->n_jobs; i++) { /* the module names of the block matrices kept unquantized */
        if (!w->jobs[i].kept_linear) continue;
        char mod[320];
        snprintf(mod, sizeof mod, "%.*s", (int)(strlen(w->jobs[i].name) - strlen(".weight")), w->jobs[i].name);
        fprintf(f, ", ");
        json_str(f, mod);
    }
    fprintf(f, "],\n    \"kv_cache_scheme\": null,\n"
               "    \"quant_method\": \"compressed-tensors\",\n    \"quantization_status\": \"compressed\",\n"
               "    \"sparsity_config\": {},\n    \"transform_config\": {},\n    \"version\": \"0.10.2\"\n  }\n");
}

/* config.json = the source's members + quantization_config. */
static int write_config(wctx *w, const char *dir, const char *text, size_t len) {
    size_t end = len;
    while (end > 0 && text[end - 1] != '}') end--;
    if (end == 0) return qf_set_err(w->err, QF_EFORMAT, "%s/config.json: not a JSON object", w->o->in_dir);
    size_t body = end - 1; /* index of the closing brace */
    while (body > 0 && (text[body - 1] == ' ' || text[body - 1] == '\n' || text[body - 1] == '\r' || text[body - 1] == '\t'))
        body--;
    int empty = text[body - 1] == '{';
    char *path = qf_path_join(dir, "config.json");
    if (path) track(w, path);
    FILE *f = path ? fopen(path, "w") : NULL;
    if (!f) {
        free(path);
        return qf_set_err(w->err, QF_EIO, "%s: cannot create config.json", dir);
    }
    fwrite(text, 1, body, f);
    fprintf(f, "%s\n", empty ? "" : ",");
    write_qconfig(f, w->o, w);
    fprintf(f, "}\n");
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    free(path);
    return bad ? qf_set_err(w->err, QF_EIO, "%s: writing config.json failed", dir) : 0;
}

static int copy_file(wctx *w, const char *from_dir, const char *to_dir, const char *name) {
    char *src = qf_path_join(from_dir, name), *dst = qf_path_join(to_dir, name);
    int rc = 0;
    struct stat st;
    if (!src || !dst) rc = qf_set_err(w->err, QF_ENOMEM, "out of memory");
    else if (stat(src, &st) == 0) {
        uint8_t *data = NULL;
        uint64_t n = 0;
        if ((rc = qf_read_file(src, &data, &n, w->err)) == 0) {
            track(w, dst);
            FILE *f = fopen(dst, "wb");
            if (!f || fwrite(data, 1, (size_t)n, f) != n) rc = qf_set_err(w->err, QF_EIO, "%s: cannot write", dst);
            if (f && fclose(f) != 0 && !rc) rc = qf_set_err(w->err, QF_EIO, "%s: cannot write", dst);
        }
        free(data);
    }
    free(src);
    free(dst);
    return rc;
}

/* Remove every regular file in dir, then dir. */
static void rm_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char *p = qf_path_join(dir, e->d_name);
            if (p) unlink(p);
            free(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

/* A new directory "out_dir.tmp.PID.N" (the temp name of qf_tmpfile.h) with
 * the usual (umask) permissions, unlike mkdtemp's 0700. -1 with errno on
 * failure. */
static int make_tmp_dir(wctx *w, char *buf, size_t cap, const char *out_dir) {
    for (unsigned k = 0; k < 1000; k++) {
        if ((size_t)snprintf(buf, cap, "%s.tmp.%ld.%u", out_dir, (long)getpid(), k) >= cap) {
            errno = ENAMETOOLONG;
            return -1;
        }
        track(w, buf); /* before it exists: a signal right after mkdir still removes it */
        if (mkdir(buf, 0777) == 0) return 0;
        int e = errno;
        if (w->n_tracked && !strcmp(w->tracked[w->n_tracked - 1], buf)) {
            qf_tmpfile_forget(w->tracked[--w->n_tracked]);
            free(w->tracked[w->n_tracked]);
        }
        errno = e;
        if (errno != EEXIST) return -1;
    }
    return -1;
}

int qf_fp8_write(const qf_fp8_write_opts *o, qf_fp8_write_result *res, qf_err *err) {
    wctx w;
    memset(&w, 0, sizeof w);
    w.o = o;
    w.err = err;
    qf_json cfg;
    memset(&cfg, 0, sizeof cfg);
    struct stat sb;
    const int gguf_in = stat(o->in_dir, &sb) == 0 && !S_ISDIR(sb.st_mode);
    w.hf_dir = gguf_in ? o->hf_dir : o->in_dir;
    if (!w.hf_dir)
        return qf_set_err(err, QF_EINVAL, "%s: a GGUF input needs the Hugging Face directory of its config.json and "
                                          "tokenizer files (hf_dir)", o->in_dir);
    char *cfg_path = qf_path_join(w.hf_dir, "config.json");
    char tmp[PATH_MAX] = "";
    int rc, has_st = 0, has_gg = 0;
    if (!cfg_path) return qf_set_err(err, QF_ENOMEM, "out of memory");
    if (stat(o->out_dir, &sb) == 0) {
        rc = qf_set_err(err, QF_EINVAL, "%s: already exists (not overwritten)", o->out_dir);
        goto done;
    }
    if (o->block_fp8_layout && (o->scheme != QF_FP8_BLOCK || o->static_act)) {
        rc = qf_set_err(err, QF_EINVAL, "the quant_method fp8 layout has 128x128 block scales and no input scales");
        goto done;
    }
    if ((rc = qf_json_parse_file(&cfg, cfg_path, 0, err))) goto done;
    const qf_hf_arch *a;
    qf_hf_hparams hp;
    if ((rc = qf_hf_config_read(&cfg, cfg_path, &a, &hp, err))) goto done;
    if (qf_json_find(&cfg, 0, "quantization_config") >= 0) {
        rc = qf_set_err(err, QF_EUNSUPPORTED, "%s: the model is already quantized (config.json has quantization_config)",
                        cfg_path);
        goto done;
    }
    if (gguf_in) {
        if ((rc = qf_quant_input_open(&w.gg, o->in_dir, err))) goto done;
        has_gg = 1;
        int td = qf_json_find(&cfg, 0, "torch_dtype");
        st_dtype model_dtype = td >= 0 && qf_json_string_eq(&cfg, td, "bfloat16", 8) ? ST_BF16
                               : td >= 0 && qf_json_string_eq(&cfg, td, "float16", 7) ? ST_F16 : ST_F32;
        rc = srcs_from_gguf(&w, a, &hp, model_dtype);
    } else {
        if ((rc = st_open(&w.st, o->in_dir, err))) goto done;
        has_st = 1;
        rc = srcs_from_st(&w);
    }
    if (rc) goto done;
    if (w.n_srcs > 1) qsort(w.srcs, w.n_srcs, sizeof *w.srcs, cmp_src);
    if ((rc = plan(&w, a))) goto done;
    if (w.n_lins == 0) {
        rc = qf_set_err(err, QF_ENOTFOUND, "%s: no Linear weights of blocks to quantize", o->in_dir);
        goto done;
    }
    /* shards: greedy in name order, a Linear's tensors together */
    uint64_t cap = o->max_shard_bytes ? o->max_shard_bytes : DEFAULT_SHARD_BYTES, cur = 0, total = 0;
    uint32_t shard = 0;
    for (size_t i = 0; i < w.n_jobs; i++) {
        job *j = &w.jobs[i];
        int starts_unit = j->kind == KEEP || j->kind == WEIGHT;
        if (starts_unit && cur > 0 && cur + j->nbytes > cap) {
            shard++;
            cur = 0;
        }
        j->shard = shard;
        cur += j->nbytes;
        total += j->nbytes;
    }
    uint32_t n_shards = shard + 1;
    /* temp directory next to out_dir, renamed at the end */
    if (make_tmp_dir(&w, tmp, sizeof tmp, o->out_dir) != 0) {
        rc = qf_set_err(err, QF_EIO, "%s: cannot create a temp directory next to it: %s", o->out_dir, strerror(errno));
        tmp[0] = 0;
        goto done;
    }
    for (uint32_t s = 0; s < n_shards && !rc; s++) rc = write_shard(&w, tmp, s, n_shards);
    if (!rc && n_shards > 1) rc = write_index(&w, tmp, n_shards, total);
    if (!rc) rc = write_config(&w, tmp, cfg.text, cfg.len);
    static const char *const side[] = {"tokenizer.json",    "tokenizer_config.json", "special_tokens_map.json",
                                       "tokenizer.model",   "generation_config.json", "vocab.json",
                                       "merges.txt",        "added_tokens.json",      "chat_template.jinja"};
    for (size_t i = 0; i < sizeof side / sizeof *side && !rc; i++) rc = copy_file(&w, w.hf_dir, tmp, side[i]);
    if (!rc && rename(tmp, o->out_dir) != 0)
        rc = qf_set_err(err, QF_EIO, "%s: cannot rename %s into place: %s", o->out_dir, tmp, strerror(errno));
    if (!rc) {
        tmp[0] = 0;
        if (res) {
            res->n_quantized = w.n_lins;
            res->n_kept = 0;
            for (size_t i = 0; i < w.n_jobs; i++) res->n_kept += w.jobs[i].kind == KEEP;
            res->n_shards = n_shards;
            res->tensor_bytes = total;
        }
    }
done:
    if (tmp[0]) rm_dir(tmp);
    for (size_t i = 0; i < w.n_tracked; i++) {
        qf_tmpfile_forget(w.tracked[i]);
        free(w.tracked[i]);
    }
    free(w.tracked);
    if (w.lins)
        for (size_t i = 0; i < w.n_lins; i++) free(w.lins[i].scale);
    free(w.lins);
    free(w.jobs);
    free(w.row);
    free(w.buf);
    free(w.srcs);
    if (has_st) st_close(&w.st);
    if (has_gg) qf_quant_input_close(&w.gg);
    qf_json_free(&cfg);
    free(cfg_path);
    return rc;
}
