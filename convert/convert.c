/* convert.c - HF checkpoint directory -> GGUF (see convert.h, docs/convert.md).
 *
 * What llama.cpp's convert_hf_to_gguf.py does, and so what we do:
 *  - KV order: general.architecture, general.type, general.name/version/
 *    organization/finetune/basename/size_label, the common hparams
 *    (Model.set_gguf_parameters), general.file_type, the arch hook, the
 *    tokenizer, general.quantization_version.
 *  - tensor order: generated tensors (llama3 rope_freqs) first, then the
 *    safetensors shards in file-name order, each shard's tensors sorted by
 *    name (safetensors safe_open().keys() is sorted).
 *  - tensor types: 1-D tensors, "*_norm.weight" and anything not ending in
 *    ".weight" (biases) are F32; the rest follow --outtype; Q8_0 rows whose
 *    length is not a multiple of 32 fall back to F16 (gguf-py QuantError).
 *  - Llama/Mistral Q and K rows are permuted back from HF's rotate-half
 *    layout: reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2), with
 *    n_head = num_attention_heads for q and num_key_value_heads for k.
 * Conversions are row-wise and run on the calling thread, chunk by chunk
 * (see DEFAULT_CHUNK_BYTES), so the output bytes do not depend on --threads.
 */
#include "convert.h"

#include "arch.h"
#include "gguf.h"
#include "gguf_split.h"
#include "hf_tokenizer.h"
#include "json.h"
#include "fp8.h"
#include "manifest.h"
#include "numfmt.h"
#include "qf_util.h"
#include "codecs.h"
#include "hf_cache.h"
#include "model_card.h"
#include "safetensors.h"
#include "vocab.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <unistd.h>

/* Small chunks, converted on the calling thread and written at once, while
 * the output is still in the core's cache: write() copies it into the page
 * cache, and that copy is cheapest from a cache-sized buffer. The conversion
 * itself (BF16/F16/F32 -> F32/F16/BF16/Q8_0, AVX2) is a small part of the
 * time, so threads are not used: neither an OpenMP team per chunk nor a
 * converter/writer thread pair paid for itself (docs/convert.md "Speed"). */
#define DEFAULT_CHUNK_BYTES (256ull << 10)
#define GGML_QUANT_VERSION 2
/* plan slots beyond one per source tensor: generated tensors (rope_freqs, or
 * Phi-3's two longrope factor sets) */
#define PLAN_EXTRA 2

/* llama.cpp LlamaFileType values written as general.file_type */
enum { FTYPE_ALL_F32 = 0, FTYPE_MOSTLY_F16 = 1, FTYPE_MOSTLY_Q8_0 = 7, FTYPE_MOSTLY_BF16 = 32 };

typedef struct plan_tensor {
    char name[96];
    const st_tensor *src;     /* NULL for generated tensors; the first part of a stacked one */
    const st_tensor **parts;  /* MoE experts stacked into one 3-D tensor, in expert order (owned), else NULL */
    uint32_t n_parts;
    qf_fp8_weight *fp8;       /* F8_E4M3 source: its scales (owned), else NULL */
    float *gen;               /* generated F32 data */
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS];  /* GGUF order: ne[0] = row length */
    uint64_t n_elements;
    uint32_t type;            /* output ggml type */
    uint64_t nbytes;
    uint8_t permute;
    uint8_t add_one;          /* Gemma norm: stored w, written as 1 + w (F32 output) */
    int64_t perm_heads;
    uint32_t shard;
    qf_hash128 hash;          /* XXH3-128 of the written data, for --manifest */
} plan_tensor;

typedef struct conv {
    const qf_convert_opts *o;
    qf_err *err;
    char *cfg_path;
    qf_json cfg;
    int has_cfg;
    const qf_arch *arch;
    qf_hparams hp;
    st_model st;
    int has_st;
    qf_fp8_config fp8;        /* config.json quantization_config (FP8 checkpoints) */
    qf_vocab vocab;
    int has_vocab;
    qf_hf_tokenizer_info tok;
    plan_tensor *t;
    uint64_t n_t;
    uint32_t file_type;
    uint64_t n_params;
    uint32_t n_shards;
    uint64_t bytes_total, bytes_done;
    uint64_t src_done;        /* source bytes consumed, in plan order */
    uint64_t pf_idx, pf_off;  /* readahead cursor: tensor index, byte offset in its source */
    uint32_t pf_part;         /* readahead cursor: the part of a stacked tensor */
    uint64_t pf_done;         /* source bytes advised so far, in plan order */
    char **done_paths;        /* finished shards (removed on failure) */
    uint32_t n_done;
    /* general.* */
    char name[256], version[256], org[256], finetune[256], basename[256], size_label[256];
    int has_version, has_org, has_finetune, has_basename, has_size_label;
    qf_model_card card; /* README.md front matter */
    qf_card_meta meta;  /* the general.* values it gives */
} conv;

/* ---------------- small helpers ---------------- */

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int qf_outtype_from_name(const char *s) {
    if (!strcmp(s, "f32")) return QF_OUTTYPE_F32;
    if (!strcmp(s, "f16")) return QF_OUTTYPE_F16;
    if (!strcmp(s, "bf16")) return QF_OUTTYPE_BF16;
    if (!strcmp(s, "q8_0")) return QF_OUTTYPE_Q8_0;
    if (!strcmp(s, "auto")) return QF_OUTTYPE_AUTO;
    return -1;
}

void qf_convert_shard_path(const char *out_path, uint32_t i, uint32_t n, char *buf, size_t cap) {
    gguf_split_path(out_path, i, n, buf, cap);
}

/* ---------------- config.json ---------------- */

/* First present key (even if null), -1 if none: gguf-py find_hparam(). */
static int cfg_first(const qf_json *j, const char *const *keys) { return qf_hf_cfg_first(j, keys); }

/* Integer value at token t (t < 0 or null: *present = 0). */
static int cfg_int_tok(conv *c, int t, const char *what, int64_t *v, int *present) {
    return qf_hf_cfg_int(&c->cfg, c->cfg_path, t, what, v, present, c->err);
}

static int load_config(conv *c) {
    c->cfg_path = qf_path_join(c->o->model_dir, "config.json");
    if (!c->cfg_path) return qf_set_err(c->err, QF_ENOMEM, "out of memory");
    struct stat st;
    if (stat(c->o->model_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return qf_set_err(c->err, QF_ENOTFOUND, "%s: not a model directory", c->o->model_dir);
    if (stat(c->cfg_path, &st) != 0) return qf_set_err(c->err, QF_ENOTFOUND, "%s: not found", c->cfg_path);
    int rc = qf_json_parse_file(&c->cfg, c->cfg_path, 0, c->err);
    if (rc) return rc;
    c->has_cfg = 1;
    /* refuse now what verify would refuse or mis-run later */
    qf_hf_runtime rt;
    if ((rc = qf_json_check_unique_keys(&c->cfg, c->err)) || (rc = qf_hf_config_runtime(&c->cfg, c->cfg_path, &rt, c->err)))
        return rc;
    return qf_hf_config_read(&c->cfg, c->cfg_path, &c->arch, &c->hp, c->err);
}

/* ---------------- tensor plan ---------------- */

static int st_dtype_ok(st_dtype d) { return d == ST_F32 || d == ST_F16 || d == ST_BF16; }

static uint32_t st_to_ggml(st_dtype d) {
    return d == ST_F32 ? GGML_TYPE_F32 : d == ST_F16 ? GGML_TYPE_F16 : GGML_TYPE_BF16;
}

static const char *shard_name(const conv *c, const st_tensor *t) {
    return base_name(c->st.shards[t->shard].path);
}

static int choose_type(conv *c, plan_tensor *p, st_dtype src) {
    int is_weight = qf_ends_with(p->name, ".weight");
    /* gguf-py keeps the MoE router (ffn_gate_inp) in F32 as well */
    if (p->n_dims <= 1 || qf_ends_with(p->name, "_norm.weight") || !is_weight ||
        qf_ends_with(p->name, "ffn_gate_inp.weight")) {
        p->type = GGML_TYPE_F32;
    } else {
        switch (c->o->outtype) {
        case QF_OUTTYPE_F32: p->type = GGML_TYPE_F32; break;
        case QF_OUTTYPE_F16: p->type = GGML_TYPE_F16; break;
        case QF_OUTTYPE_BF16: p->type = GGML_TYPE_BF16; break;
        case QF_OUTTYPE_Q8_0: p->type = (p->ne[0] % QK8_0) ? GGML_TYPE_F16 : GGML_TYPE_Q8_0; break;
        /* an FP8 weight's values, scale * e4m3(code), need F32 to stay exact */
        default: p->type = src == ST_F8_E4M3 ? GGML_TYPE_F32 : st_to_ggml(src); break;
        }
    }
    uint64_t row;
    unsigned long long total;
    if (ggml_row_size(p->type, p->ne[0], &row) || qf_mul_u64(row, p->n_elements / p->ne[0], &total))
        return qf_set_err(c->err, QF_ERANGE, "tensor '%s': size overflow", p->name);
    p->nbytes = total;
    return 0;
}

static int add_rope_freqs(conv *c) {
    const int64_t dim = c->hp.head_dim;
    plan_tensor *p = &c->t[c->n_t];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "rope_freqs.weight");
    p->gen = malloc((size_t)(dim / 2 > 0 ? dim / 2 : 1) * sizeof(float));
    if (!p->gen) return qf_set_err(c->err, QF_ENOMEM, "out of memory");
    int present = 0, rc = qf_hf_llama3_rope_freqs(&c->cfg, c->cfg_path, dim, p->gen, &present, c->err);
    if (rc < 0 || !present) {
        free(p->gen);
        p->gen = NULL;
        return rc;
    }
    c->n_t++;
    p->n_dims = 1;
    p->ne[0] = (uint64_t)(dim / 2);
    p->ne[1] = p->ne[2] = p->ne[3] = 1;
    p->n_elements = p->ne[0];
    return choose_type(c, p, ST_F32);
}

/* Phi3MiniModel.generate_extra_tensors: rope_scaling longrope (or "su")
 * -> rope_factors_long.weight and rope_factors_short.weight (F32, head_dim/2
 * values each, from config.json). Other archs or no rope_scaling: nothing. */
static int add_longrope_factors(conv *c) {
    if (strcmp(c->arch->gguf_arch, "phi3") != 0) return 0;
    float *f[2] = {NULL, NULL};
    int64_t n = 0;
    int present = 0;
    double attn_factor;
    /* rope_dims = n_embd // n_head in Phi3MiniModel */
    int rc = qf_hf_longrope(&c->cfg, c->cfg_path, c->hp.n_embd / c->hp.n_head, &f[0], &f[1], &n, &attn_factor,
                            &present, c->err);
    if (rc || !present) return rc;
    static const char *const names[2] = {"rope_factors_long.weight", "rope_factors_short.weight"};
    for (int k = 0; k < 2; k++) {
        plan_tensor *p = &c->t[c->n_t++];
        memset(p, 0, sizeof *p);
        snprintf(p->name, sizeof p->name, "%s", names[k]);
        p->gen = f[k];
        p->n_dims = 1;
        p->ne[0] = (uint64_t)n;
        p->ne[1] = p->ne[2] = p->ne[3] = 1;
        p->n_elements = p->ne[0];
        if ((rc = choose_type(c, p, ST_F32))) {
            if (k == 0) free(f[1]);
            return rc;
        }
    }
    return 0;
}

static int cmp_shard(const void *a, const void *b, void *arg);

/* Source tensor s against the shape config.json implies for rule r. */
static int check_shape(conv *c, const st_tensor *s, const qf_tensor_rule *r) {
    const qf_hparams *hp = &c->hp;
    uint32_t want_dims = r->shape[1] == QF_DIM_NONE ? 1 : 2;
    int64_t want[2] = {qf_dim_value(hp, r->shape[0]), want_dims == 2 ? qf_dim_value(hp, r->shape[1]) : 0};
    int ok = s->n_dims == want_dims && (int64_t)s->shape[0] == want[0] &&
             (want_dims == 1 || (int64_t)s->shape[1] == want[1]);
    if (ok) return 0;
    char got[128] = "", exp[160];
    size_t o = 0;
    for (uint32_t d = 0; d < s->n_dims && o < sizeof got; d++)
        o += (size_t)snprintf(got + o, sizeof got - o, "%s%llu", d ? ", " : "", (unsigned long long)s->shape[d]);
    if (want_dims == 2)
        snprintf(exp, sizeof exp, "[%lld, %lld] (%s, %s)", (long long)want[0], (long long)want[1],
                 qf_dim_name(r->shape[0]), qf_dim_name(r->shape[1]));
    else
        snprintf(exp, sizeof exp, "[%lld] (%s)", (long long)want[0], qf_dim_name(r->shape[0]));
    return qf_set_err(c->err, QF_EMISMATCH, "%s: tensor '%s' has shape [%s] but config.json implies %s",
                      shard_name(c, s), s->name, got, exp);
}

/* MoE experts waiting to be stacked: slot [block][matrix][expert], matrix =
 * w1, w2, w3 in rule order. */
typedef struct moe_pending {
    const st_tensor **slot;
    const qf_tensor_rule *rule[3];
    uint32_t n_rule;
    int64_t *count;           /* per block */
} moe_pending;

/* Record expert xid's matrix of rule r in block bid; when the block has all
 * 3 x n_expert of them, append the three stacked tensors (w1, w2, w3 order,
 * as llama.cpp's converter emits them). Duplicates or ids beyond
 * num_local_experts -> QF_EMISMATCH. */
static int add_expert(conv *c, moe_pending *m, const st_tensor *s, const qf_tensor_rule *r, int64_t bid, int64_t xid) {
    const int64_t X = c->hp.n_expert;
    if (xid >= X)
        return qf_set_err(c->err, QF_EMISMATCH, "%s: tensor '%s' is expert %lld but config.json has %lld experts",
                          shard_name(c, s), s->name, (long long)xid, (long long)X);
    uint32_t k = 0;
    while (k < m->n_rule && m->rule[k] != r) k++;
    if (k == m->n_rule) {
        if (k == 3) return qf_set_err(c->err, QF_EUNSUPPORTED, "%s: unexpected expert tensor '%s'", shard_name(c, s), s->name);
        m->rule[m->n_rule++] = r;
    }
    const st_tensor **slot = &m->slot[((uint64_t)bid * 3 + k) * (uint64_t)X + (uint64_t)xid];
    if (*slot) return qf_set_err(c->err, QF_EMISMATCH, "%s: tensor '%s' appears twice", shard_name(c, s), s->name);
    *slot = s;
    if (++m->count[bid] < 3 * X) return 0;
    if (m->n_rule != 3) return qf_set_err(c->err, QF_EMISMATCH, "%s: block %lld: expert matrices missing", c->o->model_dir, (long long)bid);
    for (uint32_t j = 0; j < 3; j++) { /* in table order: w1, w2, w3 */
        uint32_t kj = 0;   /* the slot row of the j-th expert rule of the table */
        for (uint32_t q = 0; q < 3; q++) {
            int rank = 0;
            for (uint32_t q2 = 0; q2 < 3; q2++) rank += m->rule[q2] < m->rule[q];
            if (rank == (int)j) kj = q;
        }
        const qf_tensor_rule *lowest = m->rule[kj];
        plan_tensor *p = &c->t[c->n_t];
        memset(p, 0, sizeof *p);
        size_t o = 0;
        for (const char *g = lowest->gguf; *g && o + 24 < sizeof p->name; g++) {
            if (*g == '#') o += (size_t)snprintf(p->name + o, sizeof p->name - o, "%lld", (long long)bid);
            else p->name[o++] = *g;
        }
        p->name[o] = 0;
        p->parts = malloc((size_t)X * sizeof *p->parts);
        if (!p->parts) return qf_set_err(c->err, QF_ENOMEM, "out of memory");
        const st_tensor **row = &m->slot[((uint64_t)bid * 3 + kj) * (uint64_t)X];
        for (int64_t e = 0; e < X; e++) {
            p->parts[e] = row[e];
            if (row[e]->dtype != row[0]->dtype)
                return qf_set_err(c->err, QF_EMISMATCH, "%s: tensor '%s' has dtype %s, expert 0 has %s",
                                  shard_name(c, row[e]), row[e]->name, st_dtype_name(row[e]->dtype),
                                  st_dtype_name(row[0]->dtype));
        }
        p->n_parts = (uint32_t)X;
        p->src = row[0];
        p->n_dims = 3;
        p->ne[0] = row[0]->shape[1];
        p->ne[1] = row[0]->shape[0];
        p->ne[2] = (uint64_t)X;
        p->ne[3] = 1;
        p->n_elements = p->ne[0] * p->ne[1] * p->ne[2];
        c->n_t++;
        int rc = choose_type(c, p, row[0]->dtype);
        if (rc) return rc;
    }
    return 0;
}

static int plan_tensors(conv *c) {
    const qf_arch *a = c->arch;
    const qf_hparams *hp = &c->hp;
    int rc = 0;
    uint32_t n_rules;
    const qf_tensor_rule *rules = qf_tensor_rules(&n_rules);
    uint64_t slots = (uint64_t)n_rules * (uint64_t)(hp->n_layer + 1);
    uint8_t *seen = calloc(slots, 1);
    uint32_t *order = calloc(c->st.n_shards ? c->st.n_shards : 1, sizeof *order);
    c->t = calloc(c->st.n_tensors + PLAN_EXTRA, sizeof *c->t);
    moe_pending moe = {0};
    if (a->flags & QF_ARCH_MOE) {
        moe.slot = calloc((size_t)(hp->n_layer * 3 * hp->n_expert), sizeof *moe.slot);
        moe.count = calloc((size_t)hp->n_layer, sizeof *moe.count);
    }
    if (!seen || !order || !c->t || ((a->flags & QF_ARCH_MOE) && (!moe.slot || !moe.count))) {
        rc = qf_set_err(c->err, QF_ENOMEM, "out of memory");
        goto done;
    }
    if (a->flags & QF_ARCH_ROPE_LLAMA3)
        if ((rc = add_rope_freqs(c))) goto done;
    if ((rc = add_longrope_factors(c))) goto done;
    const qf_tensor_rule *embd_rule = NULL;
    for (uint32_t ri = 0; ri < n_rules; ri++)
        if (strcmp(rules[ri].gguf, "token_embd.weight") == 0) embd_rule = &rules[ri];
    int embd_in_lm_head = hp->tie_embeddings && embd_rule && !st_find(&c->st, embd_rule->hf) &&
                          st_find(&c->st, "lm_head.weight");

    /* shards in file-name order (convert_hf_to_gguf sorts the part names) */
    for (uint32_t i = 0; i < c->st.n_shards; i++) order[i] = i;
    for (uint32_t i = 1; i < c->st.n_shards; i++)   /* insertion sort: few shards */
        for (uint32_t k = i; k > 0 && cmp_shard(&order[k - 1], &order[k], &c->st) > 0; k--) {
            uint32_t tmp = order[k];
            order[k] = order[k - 1];
            order[k - 1] = tmp;
        }
    for (uint32_t si = 0; si < c->st.n_shards; si++) {
        for (uint64_t i = 0; i < c->st.n_tensors; i++) {
            const st_tensor *s = &c->st.tensors[i];
            if (s->shard != order[si]) continue;
            if (qf_hf_skip_tensor(a, s->name)) continue;
            if (c->fp8.kind != QF_FP8_KIND_NONE && qf_fp8_is_scale_name(s->name))
                continue;   /* read with its FP8 weight */
            plan_tensor *p = &c->t[c->n_t];
            memset(p, 0, sizeof *p);
            int64_t bid, xid;
            const qf_tensor_rule *r = qf_hf_map_tensor_x(a, s->name, p->name, sizeof p->name, &bid, &xid);
            if (!r) {
                rc = qf_set_err(c->err, QF_EUNSUPPORTED, "%s: cannot map tensor '%s' for %s", shard_name(c, s), s->name,
                                a->hf_class);
                goto done;
            }
            if (bid >= hp->n_layer) {
                rc = qf_set_err(c->err, QF_EMISMATCH, "%s: tensor '%s' is in block %lld but config.json has %lld layers",
                                shard_name(c, s), s->name, (long long)bid, (long long)hp->n_layer);
                goto done;
            }
            if (embd_in_lm_head && strcmp(p->name, "output.weight") == 0) {
                /* tied embeddings stored only as lm_head.weight: that matrix is token_embd */
                r = embd_rule;
                snprintf(p->name, sizeof p->name, "token_embd.weight");
            }
            if (s->dtype == ST_F8_E4M3) {
                qf_fp8_weight *fw = calloc(1, sizeof *fw);
                if (!fw) {
                    rc = qf_set_err(c->err, QF_ENOMEM, "out of memory");
                    goto done;
                }
                p->fp8 = fw;   /* freed with the plan, also on failure */
                if ((rc = qf_fp8_weight_bind(&c->st, &c->fp8, s, shard_name(c, s), fw, c->err))) goto done;
            } else if (!st_dtype_ok(s->dtype)) {
                rc = qf_set_err(c->err, QF_EUNSUPPORTED, "%s: tensor '%s' has dtype %s (supported: F32, F16, BF16; F8_E4M3 with a quantization_config)",
                                shard_name(c, s), s->name, st_dtype_name(s->dtype));
                goto done;
            }
            if ((rc = check_shape(c, s, r))) goto done;
            if (xid >= 0) { /* one expert's matrix: stacked once the block has them all */
                if ((rc = add_expert(c, &moe, s, r, bid, xid))) goto done;
                continue;
            }
            seen[(uint64_t)(r - rules) * (uint64_t)(hp->n_layer + 1) + (uint64_t)(bid + 1)] = 1;
            p->src = s;
            p->n_dims = s->n_dims;
            for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) p->ne[d] = d < s->n_dims ? s->shape[s->n_dims - 1 - d] : 1;
            p->n_elements = s->n_elements;
            if ((a->flags & QF_ARCH_PERMUTE_QK) && r->permute != QF_PERMUTE_NONE) {
                p->permute = r->permute;
                p->perm_heads = r->permute == QF_PERMUTE_Q ? hp->n_head : hp->n_head_kv;
                if (s->shape[0] % (uint64_t)(2 * p->perm_heads)) {
                    rc = qf_set_err(c->err, QF_EMISMATCH, "%s: tensor '%s': %llu rows cannot be split into %lld heads of even size",
                                    shard_name(c, s), s->name, (unsigned long long)s->shape[0], (long long)p->perm_heads);
                    goto done;
                }
            }
            if ((rc = choose_type(c, p, s->dtype))) goto done;
            p->add_one = (a->flags & QF_ARCH_GEMMA_FAMILY) && qf_ends_with(s->name, "norm.weight") && p->type == GGML_TYPE_F32;
            c->n_t++;
        }
    }
    /* every required tensor present? */
    for (uint32_t ri = 0; ri < n_rules; ri++) {
        const qf_tensor_rule *r = &rules[ri];
        if (!qf_hf_rule_applies(r, a->flags) || strchr(r->hf, '%')) continue;   /* experts: checked below */
        int required = r->required_if == QF_RULE_ALWAYS || (r->required_if & a->flags);
        if (strcmp(r->gguf, "output.weight") == 0) required = !hp->tie_embeddings;
        if (!required) continue;
        int per_layer = strchr(r->hf, '#') != NULL;
        for (int64_t b = per_layer ? 0 : -1; b < (per_layer ? hp->n_layer : 0); b++) {
            if (seen[(uint64_t)ri * (uint64_t)(hp->n_layer + 1) + (uint64_t)(b + 1)]) continue;
            char name[160];
            size_t o = 0;
            for (const char *q = r->hf; *q && o + 24 < sizeof name; q++) {
                if (*q == '#') o += (size_t)snprintf(name + o, sizeof name - o, "%lld", (long long)b);
                else name[o++] = *q;
            }
            name[o] = 0;
            rc = qf_set_err(c->err, QF_ENOTFOUND, "%s: missing tensor '%s'%s", c->o->model_dir, name,
                            strcmp(r->gguf, "output.weight") == 0 ? " (config.json: tie_word_embeddings is false)" : "");
            goto done;
        }
    }
    for (int64_t b = 0; moe.count && b < hp->n_layer; b++)
        if (moe.count[b] != 3 * hp->n_expert) {
            rc = qf_set_err(c->err, QF_ENOTFOUND, "%s: block %lld has %lld of its %lld expert matrices (w1/w2/w3 x %lld experts)",
                            c->o->model_dir, (long long)b, (long long)moe.count[b], (long long)(3 * hp->n_expert),
                            (long long)hp->n_expert);
            goto done;
        }
    for (uint64_t i = 0; i < c->n_t; i++) c->n_params += c->t[i].n_elements;
done:
    free(moe.slot);
    free(moe.count);
    free(seen);
    free(order);
    return rc;
}

static int cmp_shard(const void *a, const void *b, void *arg) {
    const st_model *m = arg;
    return strcmp(base_name(m->shards[*(const uint32_t *)a].path), base_name(m->shards[*(const uint32_t *)b].path));
}

/* general.file_type: the --outtype, or for auto the first tensor's source type
 * (llama.cpp's "auto" guesses from the first tensor as well). */
static void pick_file_type(conv *c) {
    switch (c->o->outtype) {
    case QF_OUTTYPE_F32: c->file_type = FTYPE_ALL_F32; return;
    case QF_OUTTYPE_F16: c->file_type = FTYPE_MOSTLY_F16; return;
    case QF_OUTTYPE_BF16: c->file_type = FTYPE_MOSTLY_BF16; return;
    case QF_OUTTYPE_Q8_0: c->file_type = FTYPE_MOSTLY_Q8_0; return;
    default: break;
    }
    c->file_type = FTYPE_ALL_F32;
    for (uint64_t i = 0; i < c->n_t; i++) {
        if (!c->t[i].src) continue;
        st_dtype d = c->t[i].src->dtype;
        c->file_type = d == ST_F16 ? FTYPE_MOSTLY_F16 : d == ST_BF16 ? FTYPE_MOSTLY_BF16 : FTYPE_ALL_F32;
        return;
    }
}

/* ---------------- general.* (gguf-py Metadata) ---------------- */

static void take_components(conv *c, const qf_model_id *m) {
    if (!c->name[0] && m->has_name) qf_id_to_title(m->name, c->name, sizeof c->name);
    if (!c->has_org && m->has_org) {
        qf_id_to_title(m->org, c->org, sizeof c->org);
        c->has_org = 1;
    }
#define TAKE(field)                                                   \
    if (!c->has_##field && m->has_##field) {                          \
        snprintf(c->field, sizeof c->field, "%s", m->field);          \
        c->has_##field = 1;                                           \
    }
    TAKE(basename)
    TAKE(finetune)
    TAKE(version)
    TAKE(size_label)
#undef TAKE
}

/* The model card's values come first (gguf-py applies them before the
 * _name_or_path and directory heuristics, which only fill what is unset). */
static int card_components(conv *c) {
    int rc = qf_model_card_load(&c->card, c->o->model_dir, c->err);
    if (!rc) rc = qf_card_meta_from(&c->meta, &c->card, (int64_t)c->n_params, c->err);
    if (rc) return rc;
    const qf_card_meta *m = &c->meta;
    if (m->name) snprintf(c->name, sizeof c->name, "%.255s", m->name);
#define CARD(field, src)                                                   \
    if (m->src) {                                                          \
        snprintf(c->field, sizeof c->field, "%.255s", m->src);             \
        c->has_##field = 1;                                                \
    }
    CARD(version, version)
    CARD(org, organization)
    CARD(finetune, finetune)
    CARD(basename, basename)
    CARD(size_label, size_label)
#undef CARD
    return 0;
}

static int name_model(conv *c) {
    int have_name = 0;
    int rc = card_components(c);
    if (rc) return rc;
    /* config.json _name_or_path when it looks like "org/model" (at most one '/') */
    int t = qf_json_find(&c->cfg, 0, "_name_or_path");
    char id[512];
    if (t >= 0 && qf_json_get_string_buf(&c->cfg, t, id, sizeof id, NULL, NULL) == 0) {
        int slashes = 0;
        for (const char *p = id; *p; p++) slashes += *p == '/';
        if (slashes <= 1) {
            qf_model_id m;
            qf_model_id_components(id, (int64_t)c->n_params, &m);
            take_components(c, &m);
            have_name = c->name[0] != 0 || m.has_name;
        }
    }
    /* the directory name */
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", c->o->model_dir);
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') dir[--n] = 0;
    const char *dname = base_name(dir);
    char real[PATH_MAX], repo[512];
    if (!strcmp(dname, ".") || !strcmp(dname, "..") || !*dname) {
        if (realpath(c->o->model_dir, real)) dname = base_name(real);
    }
    /* a hub cache snapshot is named by its commit: take the repo id */
    if (qf_hf_cache_repo_id(c->o->model_dir, repo, sizeof repo) ||
        (realpath(c->o->model_dir, real) && qf_hf_cache_repo_id(real, repo, sizeof repo)))
        dname = repo;
    qf_model_id m;
    qf_model_id_components(dname, (int64_t)c->n_params, &m);
    take_components(c, &m);
    if (!c->name[0] && !have_name) snprintf(c->name, sizeof c->name, "%.255s", dname);
    if (c->o->model_name && *c->o->model_name) snprintf(c->name, sizeof c->name, "%.255s", c->o->model_name);
    if (!c->has_size_label && c->n_params > 0) {
        /* gguf-py: "<n_expert>x<shared + one expert's parameters>" for MoE */
        uint64_t shared = 0, per_expert = 0, n_x = 0;
        for (uint64_t i = 0; i < c->n_t; i++) {
            if (c->t[i].n_parts) {
                per_expert += c->t[i].n_elements / c->t[i].n_parts;
                n_x = c->t[i].n_parts;
            } else {
                shared += c->t[i].n_elements;
            }
        }
        if (n_x) {
            char l[64];
            qf_size_label(shared + per_expert, l, sizeof l);
            snprintf(c->size_label, sizeof c->size_label, "%llux%s", (unsigned long long)n_x, l);
        } else {
            qf_size_label(c->n_params, c->size_label, sizeof c->size_label);
        }
        c->has_size_label = 1;
    }
    return 0;
}

/* ---------------- KV writing ---------------- */

static int wr(conv *c, int rc, const char *key) {
    if (rc && (!c->err || !c->err->msg[0])) qf_set_err(c->err, rc, "gguf writer: cannot set '%s'", key);
    return rc;
}

static int arch_key(conv *c, char *key, size_t cap, const char *suffix) {
    snprintf(key, cap, "%s.%s", c->arch->gguf_arch, suffix);
    return 0;
}

static int kv_u32_from_cfg(conv *c, gguf_writer *w, const char *const *keys, const char *suffix) {
    int64_t v;
    int present;
    int rc = cfg_int_tok(c, cfg_first(&c->cfg, keys), keys[0], &v, &present);
    if (rc || !present) return rc;
    char key[128];
    arch_key(c, key, sizeof key, suffix);
    if (v < 0 || v > UINT32_MAX)
        return qf_set_err(c->err, QF_ERANGE, "%s: %s = %lld does not fit %s", c->cfg_path, keys[0], (long long)v, key);
    return wr(c, gguf_writer_set_u32(w, key, (uint32_t)v), key);
}

static int kv_f32_from_cfg(conv *c, gguf_writer *w, const char *const *keys, const char *suffix) {
    int t = cfg_first(&c->cfg, keys);
    if (t < 0 || qf_json_is_null(&c->cfg, t)) return 0;
    double v;
    if (qf_json_type_of(&c->cfg, t) != QF_JSON_NUMBER || qf_json_get_double(&c->cfg, t, &v, NULL))
        return qf_set_err(c->err, QF_EFORMAT, "%s: %s is not a number", c->cfg_path, keys[0]);
    char key[128];
    arch_key(c, key, sizeof key, suffix);
    return wr(c, gguf_writer_set_f32(w, key, (float)v), key);
}

/* Model.set_gguf_parameters */
static int write_common_params(conv *c, gguf_writer *w) {
    static const char *const k_ctx[] = {"max_position_embeddings", "n_ctx", NULL};
    static const char *const k_embd[] = {"hidden_size", "n_embd", NULL};
    static const char *const k_ff[] = {"intermediate_size", "n_inner", NULL};
    static const char *const k_head[] = {"num_attention_heads", "n_head", NULL};
    static const char *const k_kv[] = {"num_key_value_heads", NULL};
    static const char *const k_theta[] = {"rope_theta", NULL};
    static const char *const k_rms[] = {"rms_norm_eps", NULL};
    static const char *const k_norm[] = {"layer_norm_eps", "layer_norm_epsilon", "norm_epsilon", NULL};
    static const char *const k_exp[] = {"num_local_experts", NULL};
    static const char *const k_exp_used[] = {"num_experts_per_tok", NULL};
    static const char *const k_head_dim[] = {"head_dim", NULL};
    char key[128];
    int rc;
    qf_arch_params_hook own = qf_arch_common_params(c->arch);
    if (own) {
        if ((rc = own(c->arch, &c->cfg, &c->hp, w, c->err))) return rc;
        return wr(c, gguf_writer_set_u32(w, "general.file_type", c->file_type), "general.file_type");
    }
    arch_key(c, key, sizeof key, "block_count");
    if ((rc = wr(c, gguf_writer_set_u32(w, key, (uint32_t)c->hp.n_layer), key))) return rc;
    if ((rc = kv_u32_from_cfg(c, w, k_ctx, "context_length"))) return rc;
    if ((rc = kv_u32_from_cfg(c, w, k_embd, "embedding_length"))) return rc;
    if ((rc = kv_u32_from_cfg(c, w, k_ff, "feed_forward_length"))) return rc;
    if ((rc = kv_u32_from_cfg(c, w, k_head, "attention.head_count"))) return rc;
    if ((rc = kv_u32_from_cfg(c, w, k_kv, "attention.head_count_kv"))) return rc;
    if ((rc = kv_f32_from_cfg(c, w, k_theta, "rope.freq_base"))) return rc;
    if ((rc = kv_f32_from_cfg(c, w, k_rms, "attention.layer_norm_rms_epsilon"))) return rc;
    if ((rc = kv_f32_from_cfg(c, w, k_norm, "attention.layer_norm_epsilon"))) return rc;
    if ((rc = kv_u32_from_cfg(c, w, k_exp, "expert_count"))) return rc;
    if ((rc = kv_u32_from_cfg(c, w, k_exp_used, "expert_used_count"))) return rc;
    if (!(c->arch->flags & QF_ARCH_NO_HEAD_DIM)) {
        if ((rc = kv_u32_from_cfg(c, w, k_head_dim, "attention.key_length"))) return rc;
        if ((rc = kv_u32_from_cfg(c, w, k_head_dim, "attention.value_length"))) return rc;
    }
    return wr(c, gguf_writer_set_u32(w, "general.file_type", c->file_type), "general.file_type");
}

/* Tokenizer KVs in the order llama.cpp writes them (_set_vocab_sentencepiece /
 * _set_vocab_gpt2, then SpecialVocab.add_to_gguf, then LlamaModel.set_vocab). */
static int write_vocab(conv *c, gguf_writer *w) {
    static const char *const id_keys[QF_SPECIAL_COUNT] = {
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.seperator_token_id", "tokenizer.ggml.padding_token_id", "tokenizer.ggml.cls_token_id",
        "tokenizer.ggml.mask_token_id"};
    const qf_vocab *v = &c->vocab;
    int rc;
    if ((rc = wr(c, gguf_writer_set_str(w, "tokenizer.ggml.model", v->model), "tokenizer.ggml.model"))) return rc;
    if ((rc = wr(c, gguf_writer_set_str(w, "tokenizer.ggml.pre", v->pre), "tokenizer.ggml.pre"))) return rc;
    uint64_t *lens = malloc((v->n_tokens ? v->n_tokens : 1) * sizeof *lens);
    if (!lens) return qf_set_err(c->err, QF_ENOMEM, "out of memory");
    for (uint32_t i = 0; i < v->n_tokens; i++) lens[i] = v->token_lens[i];
    rc = wr(c, gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->tokens, lens, v->n_tokens),
            "tokenizer.ggml.tokens");
    free(lens);
    if (rc) return rc;
    if (v->scores &&
        (rc = wr(c, gguf_writer_set_arr(w, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, v->scores, v->n_tokens),
                 "tokenizer.ggml.scores")))
        return rc;
    if ((rc = wr(c, gguf_writer_set_arr(w, "tokenizer.ggml.token_type", GGUF_VT_INT32, v->types, v->n_tokens),
                 "tokenizer.ggml.token_type")))
        return rc;
    if (v->n_merges && !v->hf.enabled &&
        (rc = wr(c, gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)v->merges, NULL, v->n_merges),
                 "tokenizer.ggml.merges")))
        return rc;
    for (int i = 0; i < c->tok.n_special; i++) {
        int kind = c->tok.special_order[i];
        int64_t id = kind == QF_SPECIAL_BOS ? v->bos_id : kind == QF_SPECIAL_EOS ? v->eos_id
                   : kind == QF_SPECIAL_UNK ? v->unk_id : kind == QF_SPECIAL_SEP ? v->sep_id
                   : kind == QF_SPECIAL_PAD ? v->pad_id : kind == QF_SPECIAL_CLS ? v->cls_id : v->mask_id;
        if (id < 0 || id > UINT32_MAX) continue;
        if ((rc = wr(c, gguf_writer_set_u32(w, id_keys[kind], (uint32_t)id), id_keys[kind]))) return rc;
    }
    if (v->add_bos >= 0 &&
        (rc = wr(c, gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", v->add_bos), "tokenizer.ggml.add_bos_token")))
        return rc;
    if (v->add_eos >= 0 &&
        (rc = wr(c, gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", v->add_eos), "tokenizer.ggml.add_eos_token")))
        return rc;
    if ((rc = qf_write_named_chat_templates(c->o->model_dir, w, c->err))) return rc;
    if (v->chat_template &&
        (rc = wr(c, gguf_writer_set_str(w, "tokenizer.chat_template", v->chat_template), "tokenizer.chat_template")))
        return rc;
    if (c->arch->flags & QF_ARCH_GEMMA_FAMILY) {
        /* GemmaModel.set_vocab names <end_of_turn> (id 107) as EOT; Gemma2Model does not */
        if (!(c->arch->flags & QF_ARCH_SANDWICH_NORM) && v->n_tokens > 107 &&
            (rc = wr(c, gguf_writer_set_u32(w, "tokenizer.ggml.eot_token_id", 107), "tokenizer.ggml.eot_token_id")))
            return rc;
        if ((rc = wr(c, gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", 0), "tokenizer.ggml.add_space_prefix")))
            return rc;
    }
    if (c->arch->flags & QF_ARCH_SPACE_PREFIX) {
        if (v->add_space_prefix >= 0 &&
            (rc = wr(c, gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", v->add_space_prefix),
                     "tokenizer.ggml.add_space_prefix")))
            return rc;
        /* LlamaModel.set_vocab: "granite small models" (vocab 49152) never add BOS */
        if (c->hp.n_vocab == 49152 &&
            (rc = wr(c, gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", 0), "tokenizer.ggml.add_bos_token")))
            return rc;
    }
    return 0;
}

static int write_all_kv(conv *c, gguf_writer *w) {
    int rc;
    if ((rc = wr(c, gguf_writer_set_str(w, "general.architecture", c->arch->gguf_arch), "general.architecture"))) return rc;
    qf_arch_params_hook early = qf_arch_early_params(c->arch);
    if (early && (rc = early(c->arch, &c->cfg, &c->hp, w, c->err))) return rc;
    if ((rc = wr(c, gguf_writer_set_str(w, "general.type", "model"), "general.type"))) return rc;
    if ((rc = wr(c, gguf_writer_set_str(w, "general.name", c->name), "general.name"))) return rc;
    if (c->meta.author && (rc = wr(c, gguf_writer_set_str(w, "general.author", c->meta.author), "general.author")))
        return rc;
    if (c->has_version && (rc = wr(c, gguf_writer_set_str(w, "general.version", c->version), "general.version"))) return rc;
    if (c->has_org && (rc = wr(c, gguf_writer_set_str(w, "general.organization", c->org), "general.organization"))) return rc;
    if (c->has_finetune && (rc = wr(c, gguf_writer_set_str(w, "general.finetune", c->finetune), "general.finetune")))
        return rc;
    if (c->has_basename && (rc = wr(c, gguf_writer_set_str(w, "general.basename", c->basename), "general.basename")))
        return rc;
    if (c->meta.description &&
        (rc = wr(c, gguf_writer_set_str(w, "general.description", c->meta.description), "general.description")))
        return rc;
    if (c->has_size_label &&
        (rc = wr(c, gguf_writer_set_str(w, "general.size_label", c->size_label), "general.size_label")))
        return rc;
    if ((rc = qf_card_meta_write(&c->meta, w, c->err))) return rc;
    qf_arch_own_params_hook own = qf_arch_own_params(c->arch);
    if (own) {
        if ((rc = own(c->arch, &c->cfg, &c->hp, c->file_type, w, c->err))) return rc;
    } else {
        if ((rc = write_common_params(c, w))) return rc;
        qf_arch_params_hook params = qf_arch_params(c->arch);
        if (params && (rc = params(c->arch, &c->cfg, &c->hp, w, c->err))) return rc;
    }
    if ((rc = write_vocab(c, w))) return rc;
    return wr(c, gguf_writer_set_u32(w, "general.quantization_version", GGML_QUANT_VERSION),
              "general.quantization_version");
}

/* ---------------- tensor data ---------------- */

/* One row: n elements of src (dtype sd) -> dst (ggml type dt). `f` and `raw`
 * are per-thread scratch of n floats each. Returns the index of the first
 * element the output cannot hold (NaN, inf, or beyond fp16 for F16/Q8_0),
 * its value in *bad; -1 when the row is fine. */
static int64_t convert_row(const uint8_t *src, st_dtype sd, uint8_t *dst, uint32_t dt, uint64_t n, float *f,
                           float *raw, float *bad) {
    size_t es = st_dtype_size(sd);
    const float limit = dt == GGML_TYPE_F16 || dt == GGML_TYPE_Q8_0 ? QF_F16_MAX : INFINITY;
    if (st_to_ggml(sd) == dt) {   /* same precision: copy the bits */
        memcpy(dst, src, n * es);
        if (sd != ST_F32) { /* NaN/inf: all exponent bits set */
            const uint16_t mask = sd == ST_F16 ? 0x7c00 : 0x7f80;
            for (uint64_t i = 0; i < n; i++) {
                uint16_t h;
                memcpy(&h, src + 2 * i, 2);
                if ((h & mask) == mask) {
                    *bad = sd == ST_F16 ? qf_f16_to_f32(h) : qf_bf16_to_f32(h);
                    return (int64_t)i;
                }
            }
            return -1;
        }
    }
    const void *s = src;
    if ((uintptr_t)src % es) {   /* safetensors offsets need not be aligned */
        memcpy(raw, src, n * es);
        s = raw;
    }
    const float *x;
    if (sd == ST_F32) {
        x = s;
    } else if (sd == ST_F16) {
        qf_f16_to_f32_row(s, f, n);
        x = f;
    } else {
        qf_bf16_to_f32_row(s, f, n);
        x = f;
    }
    const int64_t k = qf_f32_first_beyond(x, (size_t)n, limit);
    if (k >= 0) {
        *bad = x[k];
        return k;
    }
    if (st_to_ggml(sd) == dt) return -1; /* F32 copied above */
    qf_quantize_rows(dt, x, dst, 1, (int64_t)n, NULL); /* the planned types all have a codec */
    return -1;
}

/* y[i] = 1 + y[i], computed as llama.cpp's converter does: in F32 after
 * the BF16 upcast, in F16 (rounded) for an F16 source. */
static void add_one_row(float *y, uint64_t n, st_dtype src) {
    for (uint64_t i = 0; i < n; i++) {
        y[i] += 1.0f;
        if (src == ST_F16) y[i] = qf_f16_to_f32(qf_f32_to_f16(y[i]));
    }
}

/* Source row of output row r under the Q/K permutation. */
static inline uint64_t permuted_row(uint64_t r, uint64_t group) {
    uint64_t h = r / group, w = r % group, half = group / 2;
    return h * group + (w % 2) * half + w / 2;
}

/* Reading. The source rows of a chunk are read() from the shard file into a
 * buffer (pread at the tensor's file offset) instead of being touched
 * through the shard's mmap: faulting the mapping in and madvise(DONTNEED)ing
 * it behind the cursor costs more kernel time than the copy of read(), and
 * read() leaves nothing mapped (RSS stays at the buffers).
 *
 * Reading ahead: on a cold page cache a read() that finds no page waits for
 * the disk. posix_fadvise(WILLNEED) starts the reads of the next
 * READAHEAD_BYTES of source in plan order (across tensors, which need not be
 * in file order, and shards) without waiting; the pages go to the page cache,
 * not to this process. The window is topped up in steps of half its size so
 * the kernel gets large reads. */
#define READAHEAD_BYTES (32ull << 20)

/* Advise the source bytes up to READAHEAD_BYTES past c->src_done, once less
 * than half of that is advised ahead. */
static void read_ahead(conv *c) {
    uint64_t want = c->src_done + READAHEAD_BYTES;
    if (c->pf_done > c->src_done + READAHEAD_BYTES / 2) return;
    while (c->pf_done < want && c->pf_idx < c->n_t) {
        const plan_tensor *pt = &c->t[c->pf_idx];
        const st_tensor *s = pt->parts ? pt->parts[c->pf_part] : pt->src;
        uint64_t size = s ? s->nbytes : 0;
        if (c->pf_off >= size) {   /* the next part of a stacked tensor, or the next tensor */
            if (pt->parts && c->pf_part + 1 < pt->n_parts) {
                c->pf_part++;
            } else {
                c->pf_idx++;
                c->pf_part = 0;
            }
            c->pf_off = 0;
            continue;
        }
        uint64_t k = size - c->pf_off;
        if (k > want - c->pf_done) k = want - c->pf_done;
        const st_shard *sh = &c->st.shards[s->shard];
        if (sh->fd >= 0)   /* a hint: failure only costs speed */
            posix_fadvise(sh->fd, (off_t)(s->file_offset + c->pf_off), (off_t)k, POSIX_FADV_WILLNEED);
        c->pf_off += k;
        c->pf_done += k;
    }
}

static void report(conv *c, uint64_t idx, const plan_tensor *p) {
    if (!c->o->progress) return;
    qf_convert_progress pr = {idx, c->n_t, p->name, c->bytes_done, c->bytes_total};
    c->o->progress(&pr, c->o->progress_user);
}

/* How a source tensor is cut into chunks. */
typedef struct chunking {
    uint64_t row_len, n_rows;
    uint64_t group;            /* rows of one permuted head group (1 if not permuted) */
    uint64_t src_row_bytes, out_row_bytes;
    uint64_t rows_per_chunk;
} chunking;

static void chunking_of(const conv *c, const plan_tensor *p, chunking *g) {
    const st_tensor *s = p->src;
    /* rows along HF dim 0; a permuted 1-D tensor (a bias) has rows of 1 */
    g->row_len = p->n_dims == 1 ? (p->permute ? 1 : p->ne[0]) : p->ne[0];
    g->n_rows = (p->parts ? p->n_elements / p->n_parts : p->n_elements) / g->row_len; /* per part */
    g->group = p->permute ? g->n_rows / (uint64_t)p->perm_heads : 1;
    g->src_row_bytes = g->row_len * st_dtype_size(s->dtype);
    ggml_row_size(p->type, g->row_len, &g->out_row_bytes);
    uint64_t chunk = c->o->chunk_bytes ? c->o->chunk_bytes : DEFAULT_CHUNK_BYTES;
    /* both the source pages and the output buffer of a chunk stay <= chunk */
    uint64_t row_bytes = g->src_row_bytes > g->out_row_bytes ? g->src_row_bytes : g->out_row_bytes;
    g->rows_per_chunk = chunk / row_bytes / g->group * g->group;
    if (g->rows_per_chunk < g->group) g->rows_per_chunk = g->group;
    if (g->rows_per_chunk > g->n_rows) g->rows_per_chunk = g->n_rows;
}

/* n bytes at off of fd, all of them. */
static int read_full(int fd, uint8_t *p, size_t n, uint64_t off) {
    while (n) {
        ssize_t k = pread(fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -errno;
        if (k == 0) return -EIO;   /* the file shrank since it was opened */
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

/* Source rows [row0, row0 + nr) of part `part` of p (rows of g->row_len
 * elements) converted into out (nr * g->out_row_bytes). The source rows read
 * are those of the whole head groups holding them (the permutation stays
 * inside a group); `inbuf` holds them, `scratch` 3 x row_len floats. */
static int convert_rows(conv *c, const plan_tensor *p, const chunking *g, uint32_t part, uint64_t row0, uint64_t nr,
                        uint8_t *inbuf, float *scratch, uint8_t *out) {
    const st_tensor *s = p->parts ? p->parts[part] : p->src;
    const st_shard *sh = &c->st.shards[s->shard];
    const uint64_t src0 = row0 / g->group * g->group, src1 = (row0 + nr + g->group - 1) / g->group * g->group;
    const uint8_t *rows = s->data + src0 * g->src_row_bytes;
    if (sh->fd >= 0) { /* else the data is a caller's buffer */
        int e = read_full(sh->fd, inbuf, (size_t)((src1 - src0) * g->src_row_bytes), s->file_offset + src0 * g->src_row_bytes);
        if (e)
            return qf_set_err(c->err, QF_EIO, "%s: reading tensor '%s' failed: %s", sh->path, s->name,
                              e == -EIO ? "unexpected end of file" : strerror(-e));
        rows = inbuf;
    }
    for (uint64_t i = 0; i < nr; i++) {
        uint64_t r = row0 + i;
        uint64_t sr = p->permute ? permuted_row(r, g->group) : r;
        float v;
        int64_t k;
        if (p->fp8) { /* scale * e4m3(code) in F32, then to the output type */
            float *deq = scratch + 2 * g->row_len;
            qf_fp8_dequant_row(p->fp8, (int64_t)sr, rows + (sr - src0) * g->src_row_bytes, deq);
            k = convert_row((const uint8_t *)deq, ST_F32, out + i * g->out_row_bytes, p->type, g->row_len, scratch,
                            scratch + g->row_len, &v);
        } else {
            k = convert_row(rows + (sr - src0) * g->src_row_bytes, s->dtype, out + i * g->out_row_bytes, p->type,
                            g->row_len, scratch, scratch + g->row_len, &v);
        }
        if (k < 0 && p->add_one) add_one_row((float *)(out + i * g->out_row_bytes), g->row_len, s->dtype);
        if (k >= 0) {
            const unsigned long long el = (unsigned long long)(sr * g->row_len + (uint64_t)k);
            return isfinite(v) ? qf_set_err(c->err, QF_ERANGE,
                                            "%s: tensor '%s': element %llu is %g, beyond what %s holds (|x| <= %g, fp16)",
                                            sh->path, s->name, el, (double)v, p->type == GGML_TYPE_F16 ? "f16" : "q8_0",
                                            (double)QF_F16_MAX)
                               : qf_set_err(c->err, QF_ERANGE, "%s: tensor '%s': element %llu is %g", sh->path, s->name,
                                            el, (double)v);
        }
    }
    return 0;
}

/* Convert tensor idx chunk by chunk (source rows read into `inbuf`,
 * converted into `out`) and write the chunks. `scratch` holds 3 x the
 * longest row of floats. */
static int write_tensor(conv *c, gguf_writer *w, uint64_t idx, float *scratch, uint8_t *inbuf, uint8_t *out) {
    plan_tensor *p = &c->t[idx];
    /* the tensor hashes are only for the manifest: XXH3 is ~6% of the time */
    qf_hasher *hs = c->o->write_manifest ? qf_hasher_new() : NULL;
    int rc = 0;
    if (c->o->write_manifest && !hs) return qf_set_err(c->err, QF_ENOMEM, "out of memory");
    if (!p->src) {   /* generated, F32; lives until the end of qf_convert */
        if (hs) qf_hasher_update(hs, p->gen, p->nbytes);
        if ((rc = gguf_writer_write_tensor_data(w, p->gen, p->nbytes))) goto done;
        c->bytes_done += p->nbytes;
        report(c, idx, p);
        goto done;
    }
    chunking g;
    chunking_of(c, p, &g);
    for (uint32_t part = 0; part < (p->parts ? p->n_parts : 1); part++) { /* stacked experts: one after another */
        for (uint64_t row0 = 0; row0 < g.n_rows; row0 += g.rows_per_chunk) {
            uint64_t nr = g.n_rows - row0 < g.rows_per_chunk ? g.n_rows - row0 : g.rows_per_chunk;
            read_ahead(c);
            if ((rc = convert_rows(c, p, &g, part, row0, nr, inbuf, scratch, out))) goto done;
            size_t nbytes = (size_t)(nr * g.out_row_bytes);
            if (hs) qf_hasher_update(hs, out, nbytes);
            if ((rc = gguf_writer_write_tensor_data(w, out, nbytes))) goto done;
            c->src_done += nr * g.src_row_bytes;
            c->bytes_done += nbytes;
            report(c, idx, p);
        }
    }
done:
    if (rc && c->err && !c->err->msg[0]) qf_set_err(c->err, rc, "%s: writing tensor '%s' failed", c->o->out_path, p->name);
    if (!rc && hs) p->hash = qf_hasher_digest(hs);
    if (hs) qf_hasher_free(hs);
    return rc;
}

/* Tensors [first, last), buffers sized for the largest chunk. */
static int write_tensors(conv *c, gguf_writer *w, uint64_t first, uint64_t last) {
    size_t out_bytes = 1, in_bytes = 1;
    uint64_t max_row = 1;
    for (uint64_t i = first; i < last; i++) {
        if (!c->t[i].src) continue;
        chunking g;
        chunking_of(c, &c->t[i], &g);
        if (g.rows_per_chunk * g.out_row_bytes > out_bytes) out_bytes = (size_t)(g.rows_per_chunk * g.out_row_bytes);
        if (g.row_len > max_row) max_row = g.row_len;
        if (g.rows_per_chunk * g.src_row_bytes > in_bytes) in_bytes = (size_t)(g.rows_per_chunk * g.src_row_bytes);
    }
    float *scratch = malloc(3 * (size_t)max_row * sizeof(float));
    uint8_t *inbuf = malloc(in_bytes), *out = malloc(out_bytes);
    int rc = 0;
    if (!scratch || !inbuf || !out) rc = qf_set_err(c->err, QF_ENOMEM, "out of memory");
    for (uint64_t i = first; !rc && i < last; i++) rc = write_tensor(c, w, i, scratch, inbuf, out);
    free(scratch);
    free(inbuf);
    free(out);
    return rc;
}

static int write_shard(conv *c, uint32_t s, const char *path, uint64_t first, uint64_t last) {
    int rc = 0;
    gguf_writer *w = gguf_writer_create(path, c->err);
    if (!w) return c->err && c->err->code ? c->err->code : QF_EIO;
    if (c->o->fsync_output && (rc = gguf_writer_set_fsync(w, 1))) goto fail;
    if (s == 0 && (rc = write_all_kv(c, w))) goto fail;
    if (c->n_shards > 1) {   /* as llama-gguf-split writes them */
        if ((rc = wr(c, gguf_writer_set_u16(w, "split.no", (uint16_t)s), "split.no"))) goto fail;
        if ((rc = wr(c, gguf_writer_set_i32(w, "split.tensors.count", (int32_t)c->n_t), "split.tensors.count"))) goto fail;
        if ((rc = wr(c, gguf_writer_set_u16(w, "split.count", (uint16_t)c->n_shards), "split.count"))) goto fail;
    }
    for (uint64_t i = first; i < last; i++) {
        int64_t ti = gguf_writer_add_tensor(w, c->t[i].name, c->t[i].type, c->t[i].n_dims, c->t[i].ne);
        if (ti < 0) {
            rc = wr(c, (int)ti, c->t[i].name);
            goto fail;
        }
    }
    if ((rc = gguf_writer_begin_data(w))) goto fail;
    if ((rc = write_tensors(c, w, first, last))) goto fail;
    rc = gguf_writer_finish(w);
    w = NULL;
    if (rc) goto fail;
    return 0;
fail:
    if (c->err && !c->err->msg[0]) qf_set_err(c->err, rc ? rc : QF_EIO, "%s: write failed", path);
    if (w) gguf_writer_abort(w);
    return rc ? rc : QF_EIO;
}

/* ---------------- manifest ---------------- */

/* OUT.gguf.xxh in formats/manifest.h's format: every tensor's hash, computed
 * while it was written, then every shard file's. */
static int write_manifest(conv *c) {
    size_t n = strlen(c->o->out_path);
    char *path = malloc(n + 8);
    qf_manifest_tensor *mt = calloc(c->n_t ? c->n_t : 1, sizeof *mt);
    char **files = calloc(c->n_shards, sizeof *files);
    int rc = 0;
    if (!path || !mt || !files) {
        rc = qf_set_err(c->err, QF_ENOMEM, "out of memory");
        goto done;
    }
    snprintf(path, n + 8, "%s.xxh", c->o->out_path);
    for (uint64_t i = 0; i < c->n_t; i++) {
        mt[i].name = c->t[i].name;
        mt[i].hash = c->t[i].hash;
    }
    for (uint32_t s = 0; s < c->n_shards; s++) {
        files[s] = malloc(PATH_MAX);
        if (!files[s]) {
            rc = qf_set_err(c->err, QF_ENOMEM, "out of memory");
            goto done;
        }
        qf_convert_shard_path(c->o->out_path, s, c->n_shards, files[s], PATH_MAX);
    }
    rc = qf_manifest_write(path, "qforge-convert", mt, c->n_t, (const char *const *)files, c->n_shards, c->err);
done:
    if (files)
        for (uint32_t s = 0; s < c->n_shards; s++) free(files[s]);
    free(files);
    free(mt);
    free(path);
    return rc;
}

/* ---------------- driver ---------------- */

/* Everything before the tensor data: config, quantization_config,
 * safetensors, tokenizer, the tensor plan and the names. */
static int conv_prepare(conv *c, const qf_convert_opts *o, qf_err *err) {
    memset(c, 0, sizeof *c);
    c->o = o;
    c->err = err;
    qf_vocab_init(&c->vocab);
    int rc;
    if ((rc = load_config(c))) return rc;
    if ((rc = qf_fp8_config_read(&c->cfg, c->cfg_path, &c->fp8, err))) return rc;
    if ((rc = st_open(&c->st, o->model_dir, err))) return rc;
    c->has_st = 1;
    if ((rc = qf_vocab_from_hf_dir_ex(&c->vocab, o->model_dir, &c->tok, err))) return rc;
    c->has_vocab = 1;
    if ((int64_t)c->vocab.n_tokens != c->hp.n_vocab)
        return qf_set_err(err, QF_EMISMATCH, "%s: tokenizer has %u tokens but config.json vocab_size is %lld",
                          o->model_dir, c->vocab.n_tokens, (long long)c->hp.n_vocab);
    if ((rc = plan_tensors(c))) return rc;
    /* the FP8 scales were read through the shards' mappings: give those
     * pages back (the tensor data is read with pread, not mapped) */
    for (uint32_t i = 0; c->fp8.kind != QF_FP8_KIND_NONE && i < c->st.n_shards; i++)
        if (c->st.shards[i].fd >= 0 && c->st.shards[i].map && c->st.shards[i].size)
            madvise((void *)c->st.shards[i].map, (size_t)c->st.shards[i].size, MADV_DONTNEED);
    pick_file_type(c);
    return name_model(c);
}

/* Free what conv_prepare (and the writing) allocated. */
static void conv_free(conv *c) {
    for (uint32_t i = 0; i < c->n_done; i++) free(c->done_paths[i]);
    free(c->done_paths);
    if (c->t) {
        for (uint64_t i = 0; i < c->n_t; i++) free(c->t[i].gen);
        for (uint64_t i = 0; i < c->st.n_tensors + PLAN_EXTRA; i++) {   /* the plan's slots, a failed one included */
            free(c->t[i].parts);
            if (c->t[i].fp8) qf_fp8_weight_free(c->t[i].fp8);
            free(c->t[i].fp8);
        }
    }
    free(c->t);
    if (c->has_vocab) qf_vocab_free(&c->vocab);
    qf_card_meta_free(&c->meta);
    qf_model_card_free(&c->card);
    if (c->has_st) st_close(&c->st);
    if (c->has_cfg) qf_json_free(&c->cfg);
    free(c->cfg_path);
    memset(c, 0, sizeof *c);
}

int qf_convert(const qf_convert_opts *o, qf_convert_result *res, qf_err *err) {
    conv cv;
    conv *c = &cv;
    uint64_t *shard_first = NULL;
    int rc;
    if ((rc = conv_prepare(c, o, err))) goto fail;

    /* shards: llama-gguf-split's rule, counting padded tensor sizes */
    shard_first = calloc(c->n_t + 2, sizeof *shard_first);
    if (!shard_first) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory");
        goto fail;
    }
    c->n_shards = 1;
    uint64_t cur = 0, cur_n = 0;
    for (uint64_t i = 0; i < c->n_t; i++) {
        uint64_t padded = (c->t[i].nbytes + GGUF_DEFAULT_ALIGNMENT - 1) / GGUF_DEFAULT_ALIGNMENT * GGUF_DEFAULT_ALIGNMENT;
        if (o->split_max_size && cur_n > 0 && cur + padded > o->split_max_size) {
            shard_first[c->n_shards++] = i;
            cur = 0;
            cur_n = 0;
        }
        cur += padded;
        cur_n++;
        c->t[i].shard = c->n_shards - 1;
        c->bytes_total += c->t[i].nbytes;
    }
    shard_first[c->n_shards] = c->n_t;
    if (c->n_shards > 65535) {
        rc = qf_set_err(err, QF_ERANGE, "--split-max-size %llu gives %u shards (at most 65535)",
                        (unsigned long long)o->split_max_size, c->n_shards);
        goto fail;
    }
    c->done_paths = calloc(c->n_shards, sizeof *c->done_paths);
    if (!c->done_paths) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory");
        goto fail;
    }
    for (uint32_t s = 0; s < c->n_shards; s++) {
        char path[PATH_MAX];
        qf_convert_shard_path(o->out_path, s, c->n_shards, path, sizeof path);
        if ((rc = write_shard(c, s, path, shard_first[s], shard_first[s + 1]))) goto fail;
        c->done_paths[c->n_done] = strdup(path);
        if (!c->done_paths[c->n_done]) {
            unlink(path);
            rc = qf_set_err(err, QF_ENOMEM, "out of memory");
            goto fail;
        }
        c->n_done++;
    }
    if (o->write_manifest && (rc = write_manifest(c))) goto fail;
    if (res) {
        res->n_shards = c->n_shards;
        res->n_tensors = c->n_t;
        res->n_params = c->n_params;
        res->tensor_bytes = c->bytes_total;
        res->file_type = c->file_type;
        res->tokenizer_unmerged = c->tok.spm_bpe_unmerged;
        res->tokenizer_missing_bytes = c->tok.spm_bpe_missing_bytes;
    }
    rc = 0;
    goto cleanup;
fail:
    if (!rc) rc = QF_EIO;
    if (err && !err->msg[0]) qf_set_err(err, rc, "conversion failed");
    for (uint32_t i = 0; i < c->n_done; i++) unlink(c->done_paths[i]);
cleanup:
    free(shard_first);
    conv_free(c);
    return rc;
}

/* ---------------- the checkpoint as a GGUF read on the fly ---------------- */

struct qf_convert_source {
    qf_convert_opts opts; /* a copy: the plan points at it */
    conv c;
    gguf_file file;       /* header only */
    uint8_t *inbuf;       /* source rows of one read */
    size_t inbuf_cap;
    float *scratch;       /* 3 x the longest row */
};

int qf_convert_source_open_auto(qf_convert_source **out, const char *dir, qf_err *err) {
    qf_convert_opts co;
    memset(&co, 0, sizeof co);
    co.model_dir = dir;
    co.outtype = QF_OUTTYPE_AUTO;
    return qf_convert_source_open(out, &co, err);
}

int qf_convert_source_open(qf_convert_source **out, const qf_convert_opts *o, qf_err *err) {
    *out = NULL;
    qf_convert_source *s = calloc(1, sizeof *s);
    if (!s) return qf_set_err(err, QF_ENOMEM, "out of memory");
    s->file.fd = -1;
    s->opts = *o;
    conv *c = &s->c;
    int rc = conv_prepare(c, &s->opts, err);
    uint64_t max_row = 1;
    for (uint64_t i = 0; !rc && i < c->n_t; i++)
        if (c->t[i].ne[0] > max_row) max_row = c->t[i].ne[0];
    if (!rc && !(s->scratch = malloc(3 * (size_t)max_row * sizeof(float))))
        rc = qf_set_err(err, QF_ENOMEM, "out of memory");
    gguf_writer *w = rc ? NULL : gguf_writer_create_mem(o->model_dir, err);
    if (!rc && !w) rc = err && err->code ? err->code : QF_ENOMEM;
    if (!rc) rc = write_all_kv(c, w);
    for (uint64_t i = 0; !rc && i < c->n_t; i++) {
        int64_t ti = gguf_writer_add_tensor(w, c->t[i].name, c->t[i].type, c->t[i].n_dims, c->t[i].ne);
        if (ti < 0) rc = wr(c, (int)ti, c->t[i].name);
    }
    if (w) {
        int hrc = gguf_writer_to_header(w, &s->file, err); /* frees w */
        if (!rc) rc = hrc;
    }
    if (rc) {
        qf_convert_source_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

const gguf_file *qf_convert_source_file(const qf_convert_source *s) { return &s->file; }

int qf_convert_source_read(qf_convert_source *s, uint64_t idx, uint64_t row0, uint64_t nr, void *dst, qf_err *err) {
    conv *c = &s->c;
    c->err = err;
    if (idx >= c->n_t) return qf_set_err(err, QF_EINVAL, "%s: no tensor %llu", c->o->model_dir, (unsigned long long)idx);
    const plan_tensor *p = &c->t[idx];
    uint64_t row_bytes;
    ggml_row_size(p->type, p->ne[0], &row_bytes);
    const uint64_t n_rows = p->n_elements / p->ne[0];
    if (row0 > n_rows || nr > n_rows - row0)
        return qf_set_err(err, QF_EINVAL, "%s: tensor '%s': rows [%llu, %llu) of %llu", c->o->model_dir, p->name,
                          (unsigned long long)row0, (unsigned long long)(row0 + nr), (unsigned long long)n_rows);
    if (!p->src) { /* generated, F32 */
        memcpy(dst, (const uint8_t *)p->gen + row0 * row_bytes, (size_t)(nr * row_bytes));
        return 0;
    }
    chunking g;
    chunking_of(c, p, &g);
    /* GGUF rows of ne[0] elements -> source rows of g.row_len (ne[0], or 1
     * for a permuted bias), part by part */
    const uint64_t per = p->ne[0] / g.row_len;
    uint64_t r = row0 * per, end = (row0 + nr) * per;
    uint8_t *o = dst;
    while (r < end) {
        const uint32_t part = (uint32_t)(r / g.n_rows);
        const uint64_t pr = r % g.n_rows;
        const uint64_t k = end - r < g.n_rows - pr ? end - r : g.n_rows - pr;
        const uint64_t src_rows = (pr + k + g.group - 1) / g.group * g.group - pr / g.group * g.group;
        const size_t need = (size_t)(src_rows * g.src_row_bytes);
        if (need > s->inbuf_cap) {
            uint8_t *nb = realloc(s->inbuf, need);
            if (!nb) return qf_set_err(err, QF_ENOMEM, "out of memory (%zu bytes of source rows)", need);
            s->inbuf = nb;
            s->inbuf_cap = need;
        }
        int rc = convert_rows(c, p, &g, part, pr, k, s->inbuf, s->scratch, o);
        if (rc) return rc;
        o += k * g.out_row_bytes;
        r += k;
    }
    return 0;
}

void qf_convert_source_close(qf_convert_source *s) {
    if (!s) return;
    if (s->file.arena) gguf_close(&s->file);
    conv_free(&s->c);
    free(s->inbuf);
    free(s->scratch);
    free(s);
}
