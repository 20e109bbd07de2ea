/* fp8_write.c - HF directory -> compressed-tensors FP8 directory (fp8_write.h). */
#include "fp8_write.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hf_arch.h"
#include "json.h"
#include "numfmt.h"
#include "qf_util.h"
#include "safetensors.h"

#define FP8_BLOCK 128
#define DEFAULT_SHARD_BYTES 5000000000ull

/* One written tensor. */
typedef struct job {
    char name[320];            /* HF name as written */
    int kind;                  /* KEEP, WEIGHT, WSCALE, ISCALE */
    int lin;                   /* index into linears (quantized kinds) */
    const st_tensor *src;      /* KEEP: the source tensor */
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
    const st_tensor *src;      /* [out, in] F32/F16/BF16 */
    char gguf[96];
    int64_t n_out, n_in, nbr, nbc;
    float *scale;              /* computed on first use, freed after the weight_scale */
    float act_amax;            /* static: max|x| of the input */
} linear;

typedef struct wctx {
    const qf_fp8_write_opts *o;
    qf_err *err;
    st_model st;
    job *jobs;
    size_t n_jobs;
    linear *lins;
    size_t n_lins;
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

/* Row r of a 2-D F32/F16/BF16 tensor as F32 (the mapping need not be aligned). */
static void read_row(const st_tensor *t, int64_t r, int64_t n, float *out) {
    const uint8_t *p = t->data + (size_t)r * (size_t)n * st_dtype_size(t->dtype);
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

static int emit(wctx *w, st_writer *sw, job *j) {
    int rc = 0;
    if (j->kind == KEEP) {
        rc = st_writer_write(sw, j->src->data, (size_t)j->src->nbytes);
        st_release(&w->st, j->src);
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
    st_release(&w->st, L->src);
    return rc;
}

/* ---------------- plan ---------------- */

static int add_job(wctx *w, const char *name, int kind, int lin, const st_tensor *src, st_dtype d, uint32_t nd,
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
    const st_model *m = &w->st;
    w->jobs = calloc(3 * m->n_tensors + 1, sizeof *w->jobs);
    w->lins = calloc(m->n_tensors + 1, sizeof *w->lins);
    if (!w->jobs || !w->lins) return qf_set_err(w->err, QF_ENOMEM, "out of memory");
    uint64_t max_in = 1;
    for (uint64_t i = 0; i < m->n_tensors; i++) {
        const st_tensor *t = &m->tensors[i];
        char g[96], nm[320];
        int64_t bid;
        int rc;
        if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16)
            return qf_set_err(w->err, QF_EUNSUPPORTED, "%s: tensor '%s' has dtype %s (FP8 output needs F32, F16 or BF16)",
                              w->o->in_dir, t->name, st_dtype_name(t->dtype));
        const int mapped = t->n_dims == 2 && qf_hf_map_tensor(a, t->name, g, sizeof g, &bid);
        int lin = mapped && qf_fp8_is_linear(g);
        if (!lin) {
            if ((rc = add_job(w, t->name, KEEP, -1, t, t->dtype, t->n_dims, t->n_dims ? t->shape[0] : 1,
                              t->n_dims > 1 ? t->shape[1] : 1)))
                return rc;
            /* fused (phi3 attn_qkv), expert and router matrices stay as they are */
            w->jobs[w->n_jobs - 1].kept_linear = mapped && !strncmp(g, "blk.", 4) && qf_ends_with(t->name, ".weight");
            w->jobs[w->n_jobs - 1].n_dims = t->n_dims; /* scalars and 3-D+ copied as they are */
            w->jobs[w->n_jobs - 1].nbytes = t->nbytes;
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

/* ---------------- files ---------------- */

static int shard_path(char *buf, size_t cap, const char *dir, uint32_t s, uint32_t n) {
    if (n == 1) return snprintf(buf, cap, "%s/model.safetensors", dir) >= (int)cap;
    return snprintf(buf, cap, "%s/model-%05u-of-%05u.safetensors", dir, s + 1, n) >= (int)cap;
}

static int write_shard(wctx *w, const char *dir, uint32_t s, uint32_t n_shards) {
    char path[PATH_MAX];
    if (shard_path(path, sizeof path, dir, s, n_shards))
        return qf_set_err(w->err, QF_ERANGE, "%s: path too long", dir);
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

/* A new directory "out_dir.tmp-PID-N" with the usual (umask) permissions,
 * unlike mkdtemp's 0700. -1 with errno on failure. */
static int make_tmp_dir(char *buf, size_t cap, const char *out_dir) {
    for (unsigned k = 0; k < 1000; k++) {
        if ((size_t)snprintf(buf, cap, "%s.tmp-%ld-%u", out_dir, (long)getpid(), k) >= cap) {
            errno = ENAMETOOLONG;
            return -1;
        }
        if (mkdir(buf, 0777) == 0) return 0;
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
    char *cfg_path = qf_path_join(o->in_dir, "config.json");
    char tmp[PATH_MAX] = "";
    int rc, has_st = 0;
    struct stat sb;
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
    if ((rc = st_open(&w.st, o->in_dir, err))) goto done;
    has_st = 1;
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
    if (make_tmp_dir(tmp, sizeof tmp, o->out_dir) != 0) {
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
    for (size_t i = 0; i < sizeof side / sizeof *side && !rc; i++) rc = copy_file(&w, o->in_dir, tmp, side[i]);
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
    if (w.lins)
        for (size_t i = 0; i < w.n_lins; i++) free(w.lins[i].scale);
    free(w.lins);
    free(w.jobs);
    free(w.row);
    free(w.buf);
    if (has_st) st_close(&w.st);
    qf_json_free(&cfg);
    free(cfg_path);
    return rc;
}
