/* budget.c - sensitivity measurement, its sidecar cache, and the allocator
 * that picks per-tensor types for a byte budget (budget.h). */
#include "budget.h"
#include "qf_threads.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "ggml_types.h"
#include "codecs.h"
#include "search.h"
#include "perplexity.h"
#include "text.h"
#include "qf_util.h"

#define CHUNK_F32_BYTES (8ull << 20)
#define CACHE_MAGIC "qforge-sensitivity 1"

static const uint32_t menu[] = {
    GGML_TYPE_F16,  GGML_TYPE_Q8_0, GGML_TYPE_Q6_K, GGML_TYPE_Q5_K,   GGML_TYPE_Q5_1, GGML_TYPE_Q5_0,
    GGML_TYPE_Q4_K, GGML_TYPE_Q4_1, GGML_TYPE_Q4_0, GGML_TYPE_IQ4_NL, GGML_TYPE_Q3_K, GGML_TYPE_Q2_K,
};
_Static_assert(sizeof menu / sizeof *menu <= QF_BUDGET_MAX_CAND, "menu fits qf_budget_tensor");

const uint32_t *qf_budget_menu(size_t *n) {
    *n = sizeof menu / sizeof *menu;
    return menu;
}

void qf_sensitivity_free(qf_sensitivity *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n; i++) free(s->t[i].name);
    free(s->t);
    memset(s, 0, sizeof *s);
}

uint64_t qf_budget_padded(uint64_t bytes, uint32_t align) {
    if (align <= 1) return bytes;
    return (bytes + align - 1) / align * align;
}

/* ---------------- identity ---------------- */

/* XXH3-64 of the first `limit` bytes of a file (all of it if limit is 0). */
static int hash_file(const char *path, uint64_t limit, uint64_t *h, struct stat *st, qf_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return qf_set_err(err, QF_EIO, "%s: %s", path, strerror(errno));
    if (fstat(fileno(f), st) != 0) {
        fclose(f);
        return qf_set_err(err, QF_EIO, "%s: %s", path, strerror(errno));
    }
    XXH3_state_t *x = XXH3_createState();
    if (!x) {
        fclose(f);
        return qf_set_err(err, QF_ENOMEM, "out of memory");
    }
    XXH3_64bits_reset(x);
    static char buf[1 << 16];
    uint64_t done = 0;
    size_t k;
    while ((!limit || done < limit) && (k = fread(buf, 1, sizeof buf, f)) > 0) {
        if (limit && done + k > limit) k = (size_t)(limit - done);
        XXH3_64bits_update(x, buf, k);
        done += k;
    }
    int bad = ferror(f);
    fclose(f);
    *h = XXH3_64bits_digest(x);
    XXH3_freeState(x);
    return bad ? qf_set_err(err, QF_EIO, "%s: read error", path) : 0;
}

/* A checkpoint directory's identity: of each *.json and *.safetensors file
 * in name order, its name, size, mtime and the hash of its first MiB; *st
 * gets the directory's own stat. */
static int hash_dir(const char *dir, uint64_t *h, struct stat *st, qf_err *err) {
    if (stat(dir, st) != 0) return qf_set_err(err, QF_EIO, "%s: %s", dir, strerror(errno));
    struct dirent **ents = NULL;
    const int n = scandir(dir, &ents, NULL, alphasort);
    if (n < 0) return qf_set_err(err, QF_EIO, "%s: %s", dir, strerror(errno));
    XXH3_state_t *x = XXH3_createState();
    int rc = x ? 0 : qf_set_err(err, QF_ENOMEM, "out of memory");
    if (x) XXH3_64bits_reset(x);
    for (int i = 0; i < n; i++) {
        const char *name = ents[i]->d_name;
        const size_t len = strlen(name);
        const int want = (len > 5 && !strcmp(name + len - 5, ".json")) ||
                         (len > 12 && !strcmp(name + len - 12, ".safetensors"));
        if (!rc && want) {
            char *path = qf_path_join(dir, name);
            struct stat fs;
            uint64_t part[4] = {0, 0, 0, 0};
            rc = path ? hash_file(path, 1 << 20, &part[0], &fs, err) : qf_set_err(err, QF_ENOMEM, "out of memory");
            free(path);
            if (!rc) {
                part[1] = (uint64_t)fs.st_size, part[2] = (uint64_t)fs.st_mtim.tv_sec, part[3] = (uint64_t)fs.st_mtim.tv_nsec;
                XXH3_64bits_update(x, name, len + 1);
                XXH3_64bits_update(x, part, sizeof part);
            }
        }
        free(ents[i]);
    }
    free(ents);
    if (x) {
        *h = XXH3_64bits_digest(x);
        XXH3_freeState(x);
    }
    return rc;
}

int qf_sensitivity_key(const char *in_path, const char *imatrix_path, int method, char key[33], qf_err *err) {
    struct stat st;
    uint64_t h_in, h_im = 0;
    const int is_dir = stat(in_path, &st) == 0 && S_ISDIR(st.st_mode);
    int rc = is_dir ? hash_dir(in_path, &h_in, &st, err) : hash_file(in_path, 1 << 20, &h_in, &st, err);
    if (rc) return rc;
    uint64_t parts[8] = {h_in, (uint64_t)st.st_size, (uint64_t)st.st_mtim.tv_sec, (uint64_t)st.st_mtim.tv_nsec,
                         0, (uint64_t)method, sizeof menu / sizeof *menu, 1 /* measure version */};
    if (imatrix_path) {
        struct stat st_im;
        if ((rc = hash_file(imatrix_path, 0, &h_im, &st_im, err))) return rc;
        parts[4] = h_im;
    }
    XXH128_hash_t k = XXH3_128bits(parts, sizeof parts);
    snprintf(key, 33, "%016llx%016llx", (unsigned long long)k.high64, (unsigned long long)k.low64);
    return 0;
}

/* ---------------- measurement ---------------- */

typedef struct meas {
    const qf_quant_preset *policy;
    int method, has_im;
    qf_search_opts search;
    float *x, *y;     /* chunk as F32, chunk dequantized */
    qf_quant_input *input; /* rows read through it (a directory), else from the tensors' data */
    uint8_t *rows;    /* a chunk's rows in the input type, with input */
    uint8_t *q;       /* chunk quantized */
    double *row_err;  /* per row of the chunk */
    float *w;         /* imatrix weights of the tensor [n_mat][ne0] */
    size_t w_cap;
    int n_threads;
} meas;

/* Quantize nr rows x[nr][ne0] to `type` as the run would, dequantize, and add
 * sum_j cw_j (x - y)^2 of every row to row_err (cw NULL: weight 1). */
static int chunk_error(meas *m, uint32_t type, const float *x, uint64_t nr, uint64_t ne0, const float *qw,
                       const float *cw, int searched) {
    uint64_t out_row;
    ggml_row_size(type, ne0, &out_row);
    const int n_threads = nr > 1 ? qf_threads_for((double)(nr * ne0), m->n_threads) : 1;
    int fail = 0;
    #pragma omp parallel num_threads(n_threads) reduction(| : fail)
    {
        const uint64_t nt = (uint64_t)omp_get_num_threads(), it = (uint64_t)omp_get_thread_num();
        const uint64_t a = nr * it / nt, b = nr * (it + 1) / nt;
        if (b > a) {
            int64_t n = searched ? qf_quantize_rows_opt_ex(type, x + a * ne0, m->q + a * out_row, (int64_t)(b - a),
                                                           (int64_t)ne0, qw, &m->search)
                                 : qf_quantize_rows(type, x + a * ne0, m->q + a * out_row, (int64_t)(b - a),
                                                    (int64_t)ne0, qw);
            if (n < 0 || (uint64_t)n != (b - a) * out_row) fail = 1;
            for (uint64_t r = a; r < b && !fail; r++) {
                float *y = m->y + r * ne0;
                const float *xr = x + r * ne0;
                if (qf_dequantize_row(type, m->q + r * out_row, y, (int64_t)ne0)) {
                    fail = 1;
                    break;
                }
                double e = 0;
                for (uint64_t j = 0; j < ne0; j++) {
                    const double d = (double)xr[j] - (double)y[j];
                    e += (cw ? (double)cw[j] : 1.0) * d * d;
                }
                m->row_err[r] = e;
            }
        }
    }
    return fail ? QF_EUNSUPPORTED : 0;
}

/* The candidates of one tensor: the menu after shape fallbacks, deduplicated. */
static void tensor_candidates(qf_budget_tensor *bt, const gguf_tensor_info *s) {
    bt->n_cand = 0;
    for (size_t i = 0; i < sizeof menu / sizeof *menu; i++) {
        uint32_t ty = qf_shape_fallback(menu[i], s->ne[0], NULL);
        const ggml_type_traits *tt = ggml_get_type_traits(ty);
        if (!tt || s->ne[0] % tt->block_size || !qf_quant_type_ok(ty)) continue;
        int dup = 0;
        for (size_t k = 0; k < bt->n_cand; k++) dup |= bt->cand[k].type == ty;
        if (dup) continue;
        uint64_t row;
        ggml_row_size(ty, s->ne[0], &row);
        bt->cand[bt->n_cand++] = (qf_budget_cand){ty, row * (s->n_elements / s->ne[0]), 0.0};
    }
}

static int cand_cmp(const void *a, const void *b) {
    const qf_budget_cand *x = a, *y = b;
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? -1 : 1;
    return x->type < y->type ? -1 : x->type > y->type;
}

/* Measure the error of every candidate of tensor s. */
static int measure_tensor(meas *m, const gguf_file *in, const qf_imatrix *im, uint64_t idx, qf_budget_tensor *bt,
                          qf_err *err) {
    const gguf_tensor_info *s = &in->tensors[idx];
    const uint64_t ne0 = s->ne[0], rows_per_mat = s->ne[1], n_mat = s->ne[2], n_mats = s->ne[2] * s->ne[3];
    const qf_imatrix_entry *e = im ? qf_imatrix_find(im, s->name) : NULL;
    if (e && (uint64_t)e->n_cols * e->n_mat != ne0 * n_mat) e = NULL; /* as plan.c: token_embd only */
    if (e) {
        size_t need = (size_t)(ne0 * n_mat);
        if (need > m->w_cap) {
            float *nw = realloc(m->w, need * sizeof *nw);
            if (!nw) return qf_set_err(err, QF_ENOMEM, "out of memory");
            m->w = nw;
            m->w_cap = need;
        }
        int rc = qf_imatrix_weights_for(im, s->name, ne0, n_mat, m->w, err);
        if (rc) return rc;
    }
    uint64_t in_row;
    ggml_row_size(s->type, ne0, &in_row);
    uint64_t rows_per_chunk = CHUNK_F32_BYTES / (ne0 * sizeof(float));
    if (rows_per_chunk < 1) rows_per_chunk = 1;
    if (rows_per_chunk > rows_per_mat) rows_per_chunk = rows_per_mat;
    for (uint64_t mat = 0; mat < n_mats; mat++) {
        const float *cw = e ? m->w + (mat % n_mat) * ne0 : NULL;
        for (uint64_t r0 = 0; r0 < rows_per_mat; r0 += rows_per_chunk) {
            const uint64_t nr = rows_per_mat - r0 < rows_per_chunk ? rows_per_mat - r0 : rows_per_chunk;
            const uint8_t *src = s->data + (mat * rows_per_mat + r0) * in_row;
            if (m->input) {
                int rc = qf_quant_input_read(m->input, idx, mat * rows_per_mat + r0, nr, m->rows, err);
                if (rc) return rc;
                src = m->rows;
            }
            for (uint64_t r = 0; r < nr; r++)
                if (qf_dequantize_row(s->type, src + r * in_row, m->x + r * ne0, (int64_t)ne0))
                    return qf_set_err(err, QF_EUNSUPPORTED, "%s: tensor '%s': cannot read type %u", in->path,
                                      s->name, s->type);
            for (uint64_t k = 0; k < nr * ne0; k++)
                if (!isfinite(m->x[k]))
                    return qf_set_err(err, QF_ERANGE, "%s: tensor '%s' has a non-finite value (nan or inf)",
                                      in->path, s->name);
            for (size_t c = 0; c < bt->n_cand; c++) {
                const uint32_t ty = bt->cand[c].type;
                const float *qw = cw && qf_quantize_uses_imatrix(ty) ? cw : NULL;
                const int searched = qf_quant_method_searches(m->method, m->policy, ty, m->has_im);
                if (chunk_error(m, ty, m->x, nr, ne0, qw, cw, searched))
                    return qf_set_err(err, QF_EUNSUPPORTED, "%s: tensor '%s': quantizing to %s failed", in->path,
                                      s->name, ggml_get_type_traits(ty)->name);
                double sum = 0; /* serial: the same bits for any thread count */
                for (uint64_t r = 0; r < nr; r++) sum += m->row_err[r];
                bt->cand[c].err += sum;
            }
        }
    }
    /* token_embd is read one row per token: the expected error of one lookup */
    if (qf_tensor_role_of(s->name) == QF_ROLE_TOKEN_EMBD && s->n_elements / ne0 > 0)
        for (size_t c = 0; c < bt->n_cand; c++) bt->cand[c].err /= (double)(s->n_elements / ne0);
    return 0;
}

/* qf_sensitivity_measure of in, its rows read through input when not NULL. */
static int measure(qf_sensitivity *s, const gguf_file *in, qf_quant_input *input, const qf_imatrix *im, int method,
                   const qf_quant_preset *policy, int n_threads, qf_err *err) {
    memset(s, 0, sizeof *s);
    meas m;
    memset(&m, 0, sizeof m);
    m.input = input;
    m.policy = policy;
    m.method = method;
    m.has_im = im != NULL;
    m.n_threads = n_threads;
    qf_search_opts_init(&m.search);
    if (method == QF_QUANT_METHOD_AUTO) m.search.effort = QF_SEARCH_EFFORT_FAST;
    int rc = 0;
    uint64_t max_ne0 = 0;
    for (uint64_t i = 0; i < in->n_tensors; i++)
        if (in->tensors[i].ne[0] > max_ne0) max_ne0 = in->tensors[i].ne[0];
    uint64_t buf = CHUNK_F32_BYTES > max_ne0 * 4 ? CHUNK_F32_BYTES : max_ne0 * 4;
    m.x = malloc((size_t)buf);
    m.y = malloc((size_t)buf);
    m.q = malloc((size_t)buf);
    m.row_err = malloc((size_t)(buf / 4 + 1) * sizeof *m.row_err);
    if (input) m.rows = malloc((size_t)buf); /* no input type takes more than 4 bytes an element */
    s->t = calloc(in->n_tensors ? in->n_tensors : 1, sizeof *s->t);
    if (!m.x || !m.y || !m.q || !m.row_err || !s->t || (input && !m.rows)) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory");
        goto done;
    }
    for (uint64_t i = 0; i < in->n_tensors; i++) {
        const gguf_tensor_info *ti = &in->tensors[i];
        s->n_elements += ti->n_elements;
        if (!qf_tensor_is_quantizable(ti->name, qf_tensor_n_dims(ti->ne))) {
            s->fixed_bytes += qf_budget_padded(ti->nbytes, 32);
            s->fixed_raw += ti->nbytes;
            continue;
        }
        qf_budget_tensor *bt = &s->t[s->n];
        bt->name = strdup(ti->name);
        if (!bt->name) {
            rc = qf_set_err(err, QF_ENOMEM, "out of memory");
            goto done;
        }
        s->n++;
        bt->n_elements = ti->n_elements;
        tensor_candidates(bt, ti);
        if (!bt->n_cand) {
            rc = qf_set_err(err, QF_EUNSUPPORTED, "%s: tensor '%s': no type fits rows of %llu", in->path, ti->name,
                            (unsigned long long)ti->ne[0]);
            goto done;
        }
        if ((rc = measure_tensor(&m, in, im, i, bt, err))) goto done;
        qsort(bt->cand, bt->n_cand, sizeof *bt->cand, cand_cmp);
    }
done:
    if (rc) qf_sensitivity_free(s);
    free(m.x);
    free(m.y);
    free(m.q);
    free(m.row_err);
    free(m.rows);
    free(m.w);
    return rc;
}

int qf_sensitivity_measure(qf_sensitivity *s, const gguf_file *in, const qf_imatrix *im, int method,
                           const qf_quant_preset *policy, int n_threads, qf_err *err) {
    return measure(s, in, NULL, im, method, policy, n_threads, err);
}

/* ---------------- the sidecar ----------------
 *   qforge-sensitivity 1
 *   key <32 hex>
 *   totals <n tensors> <fixed bytes> <fixed raw> <n elements>
 *   tensor <name> <n elements> <n candidates>
 *   cand <ggml type> <bytes> <error %.17g>      (n candidates lines)
 *   end
 */

int qf_sensitivity_save(const qf_sensitivity *s, const char *path, qf_err *err) {
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) return qf_set_err(err, QF_ENOMEM, "out of memory");
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        int rc = qf_set_err(err, QF_EIO, "%s: %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    fprintf(f, CACHE_MAGIC "\nkey %s\ntotals %zu %llu %llu %llu\n", s->key, s->n, (unsigned long long)s->fixed_bytes,
            (unsigned long long)s->fixed_raw, (unsigned long long)s->n_elements);
    for (size_t i = 0; i < s->n; i++) {
        const qf_budget_tensor *t = &s->t[i];
        fprintf(f, "tensor %s %llu %zu\n", t->name, (unsigned long long)t->n_elements, t->n_cand);
        for (size_t c = 0; c < t->n_cand; c++)
            fprintf(f, "cand %u %llu %.17g\n", t->cand[c].type, (unsigned long long)t->cand[c].bytes, t->cand[c].err);
    }
    fprintf(f, "end\n");
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    int rc = 0;
    if (bad || rename(tmp, path) != 0) {
        rc = qf_set_err(err, QF_EIO, "%s: cannot write the sensitivity cache", path);
        unlink(tmp);
    }
    free(tmp);
    return rc;
}

int qf_sensitivity_load(qf_sensitivity *s, const char *path, const char *key, qf_err *err) {
    memset(s, 0, sizeof *s);
    FILE *f = fopen(path, "r");
    if (!f) return QF_ENOTFOUND;
    char line[1024], name[512], k[64];
    int rc = QF_EFORMAT;
    size_t n;
    unsigned long long fb, fr, ne;
    if (!fgets(line, sizeof line, f) || strncmp(line, CACHE_MAGIC "\n", sizeof CACHE_MAGIC) != 0) goto bad;
    if (!fgets(line, sizeof line, f) || sscanf(line, "key %63s", k) != 1) goto bad;
    if (strcmp(k, key) != 0) {
        fclose(f);
        return QF_ENOTFOUND;
    }
    if (!fgets(line, sizeof line, f) || sscanf(line, "totals %zu %llu %llu %llu", &n, &fb, &fr, &ne) != 4) goto bad;
    if (n > (1u << 24)) goto bad;
    s->t = calloc(n ? n : 1, sizeof *s->t);
    if (!s->t) {
        rc = QF_ENOMEM;
        goto bad;
    }
    snprintf(s->key, sizeof s->key, "%s", key);
    s->fixed_bytes = fb;
    s->fixed_raw = fr;
    s->n_elements = ne;
    for (size_t i = 0; i < n; i++) {
        qf_budget_tensor *t = &s->t[i];
        unsigned long long tn;
        size_t nc;
        if (!fgets(line, sizeof line, f) || sscanf(line, "tensor %511s %llu %zu", name, &tn, &nc) != 3 || nc < 1 ||
            nc > QF_BUDGET_MAX_CAND)
            goto bad;
        if (!(t->name = strdup(name))) {
            rc = QF_ENOMEM;
            goto bad;
        }
        s->n++;
        t->n_elements = tn;
        t->n_cand = nc;
        for (size_t c = 0; c < nc; c++) {
            unsigned ty;
            unsigned long long b;
            double e;
            if (!fgets(line, sizeof line, f) || sscanf(line, "cand %u %llu %lg", &ty, &b, &e) != 3 ||
                ty >= GGML_TYPE_COUNT || !isfinite(e) || e < 0 || (c && b < t->cand[c - 1].bytes))
                goto bad;
            t->cand[c] = (qf_budget_cand){ty, b, e};
        }
    }
    if (!fgets(line, sizeof line, f) || strcmp(line, "end\n") != 0) goto bad; /* a cut file */
    fclose(f);
    return 0;
bad:
    fclose(f);
    qf_sensitivity_free(s);
    return qf_set_err(err, rc, "%s: %s", path, rc == QF_ENOMEM ? "out of memory" : "not a valid sensitivity cache");
}

/* ---------------- allocation ---------------- */

uint64_t qf_budget_min_bytes(const qf_budget_tensor *t, size_t n, uint32_t align) {
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t lo = UINT64_MAX;
        for (size_t c = 0; c < t[i].n_cand; c++) {
            uint64_t b = qf_budget_padded(t[i].cand[c].bytes, align);
            if (b < lo) lo = b;
        }
        sum += lo;
    }
    return sum;
}

typedef struct step {
    double gain_per_byte; /* error saved per byte */
    size_t tensor;
    size_t from, to;      /* candidate indices */
    uint32_t order;       /* position along the tensor's hull */
} step;

static int step_cmp(const void *a, const void *b) {
    const step *x = a, *y = b;
    if (x->gain_per_byte != y->gain_per_byte) return x->gain_per_byte > y->gain_per_byte ? -1 : 1;
    if (x->tensor != y->tensor) return x->tensor < y->tensor ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Lower convex hull of tensor t's (padded bytes, err) points, cheapest first:
 * hull[0..k) candidate indices. Points no cheaper-or-better than another are
 * dropped first. Returns k. */
static size_t hull_of(const qf_budget_tensor *t, uint32_t align, size_t *hull) {
    size_t idx[QF_BUDGET_MAX_CAND], n = 0;
    /* sort indices by (bytes, err) */
    for (size_t c = 0; c < t->n_cand; c++) {
        size_t k = n++;
        const uint64_t bc = qf_budget_padded(t->cand[c].bytes, align);
        while (k > 0) {
            const size_t p = idx[k - 1];
            const uint64_t bp = qf_budget_padded(t->cand[p].bytes, align);
            if (bp < bc || (bp == bc && t->cand[p].err <= t->cand[c].err)) break;
            idx[k] = p;
            k--;
        }
        idx[k] = c;
    }
    size_t h = 0;
    for (size_t q = 0; q < n; q++) {
        const size_t c = idx[q];
        const double bc = (double)qf_budget_padded(t->cand[c].bytes, align), ec = t->cand[c].err;
        if (h > 0 && ec >= t->cand[hull[h - 1]].err) continue; /* dominated: more bytes, no less error */
        while (h >= 2) {
            const size_t a = hull[h - 2], b = hull[h - 1];
            const double ba = (double)qf_budget_padded(t->cand[a].bytes, align), ea = t->cand[a].err;
            const double bb = (double)qf_budget_padded(t->cand[b].bytes, align), eb = t->cand[b].err;
            /* b is on or above the segment a-c: drop it */
            if ((eb - ea) * (bc - ba) >= (ec - ea) * (bb - ba)) h--;
            else break;
        }
        hull[h++] = c;
    }
    return h;
}

int qf_budget_allocate(const qf_budget_tensor *t, size_t n, uint64_t budget, uint32_t align, size_t *choice) {
    uint64_t used = qf_budget_min_bytes(t, n, align);
    if (used > budget) return QF_ERANGE;
    size_t n_steps = 0;
    for (size_t i = 0; i < n; i++) n_steps += t[i].n_cand ? t[i].n_cand - 1 : 0;
    step *st = malloc((n_steps ? n_steps : 1) * sizeof *st);
    uint8_t *blocked = calloc(n ? n : 1, 1);
    if (!st || !blocked) {
        free(st);
        free(blocked);
        return QF_ENOMEM;
    }
    size_t ns = 0;
    for (size_t i = 0; i < n; i++) {
        size_t hull[QF_BUDGET_MAX_CAND] = {0};
        size_t h = hull_of(&t[i], align, hull);
        choice[i] = hull[0];
        for (size_t k = 1; k < h; k++) {
            const double db = (double)(qf_budget_padded(t[i].cand[hull[k]].bytes, align) -
                                       qf_budget_padded(t[i].cand[hull[k - 1]].bytes, align));
            const double de = t[i].cand[hull[k - 1]].err - t[i].cand[hull[k]].err;
            st[ns++] = (step){de / db, i, hull[k - 1], hull[k], (uint32_t)k};
        }
    }
    qsort(st, ns, sizeof *st, step_cmp);
    for (size_t s = 0; s < ns; s++) {
        const step *p = &st[s];
        if (blocked[p->tensor]) continue;
        const uint64_t db = qf_budget_padded(t[p->tensor].cand[p->to].bytes, align) -
                            qf_budget_padded(t[p->tensor].cand[p->from].bytes, align);
        if (used + db > budget) {
            blocked[p->tensor] = 1;
            continue;
        }
        used += db;
        choice[p->tensor] = p->to;
    }
    free(st);
    free(blocked);
    return 0;
}

/* ---------------- budgets ---------------- */

static int kv_u64(const gguf_file *in, const char *key, uint64_t *out) {
    const gguf_kv *kv = gguf_find_kv(in, key);
    if (!kv) return QF_ENOTFOUND;
    const gguf_value *v = &kv->value;
    switch (v->type) {
    case GGUF_VT_UINT32: *out = v->u32; return 0;
    case GGUF_VT_INT32: *out = v->i32 < 0 ? 0 : (uint64_t)v->i32; return 0;
    case GGUF_VT_UINT64: *out = v->u64; return 0;
    case GGUF_VT_INT64: *out = v->i64 < 0 ? 0 : (uint64_t)v->i64; return 0;
    case GGUF_VT_UINT16: *out = v->u16; return 0;
    default: return QF_EFORMAT;
    }
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

int qf_vram_fit_compute(const gguf_file *in, uint64_t vram, uint64_t ctx, uint64_t batch, qf_vram_fit *f,
                        qf_err *err) {
    memset(f, 0, sizeof *f);
    f->vram = vram;
    f->ctx = ctx;
    f->batch = batch;
    for (uint64_t i = 0; i < in->n_tensors; i++) {
        const gguf_tensor_info *t = &in->tensors[i];
        /* attn_k.weight [n_embd, n_head_kv * head_dim_k]: the K row of a token is ne[1] wide */
        if (ends_with(t->name, "attn_k.weight") || ends_with(t->name, "attn_v.weight")) {
            f->kv_width += t->ne[1];
            if (ends_with(t->name, "attn_k.weight")) f->n_layer++;
        } else if (!strcmp(t->name, "token_embd.weight")) {
            f->n_embd = t->ne[0];
            f->n_vocab = t->ne[1];
        } else if (ends_with(t->name, "ffn_up.weight") && t->ne[1] > f->n_ff) {
            f->n_ff = t->ne[1];
        }
    }
    if (!f->n_layer || !f->kv_width)
        return qf_set_err(err, QF_ENOTFOUND, "%s: no attn_k/attn_v tensors: cannot size the KV cache", in->path);
    char *arch = NULL;
    uint64_t n_head = 0;
    if (!gguf_get_str(in, "general.architecture", &arch) && arch) {
        char key[256];
        snprintf(key, sizeof key, "%s.attention.head_count", arch);
        kv_u64(in, key, &n_head);
    }
    free(arch);
    f->n_head = (int)n_head;
    f->kv_bytes = 2ull * ctx * f->kv_width;
    f->compute_bytes = 4ull * batch * (f->n_vocab + n_head * ctx + 2 * f->n_ff + 4 * f->n_embd);
    const uint64_t other = f->kv_bytes + f->compute_bytes;
    f->weights = vram > other ? vram - other : 0;
    return 0;
}

uint32_t qf_budget_file_type(const qf_budget_tensor *t, size_t n, const size_t *choice) {
    size_t count[GGML_TYPE_COUNT] = {0};
    for (size_t i = 0; i < n; i++)
        if (t[i].cand[choice[i]].type < GGML_TYPE_COUNT) count[t[i].cand[choice[i]].type]++;
    uint32_t best = GGML_TYPE_F16;
    size_t best_n = 0;
    for (uint32_t ty = 0; ty < GGML_TYPE_COUNT; ty++)
        if (count[ty] > best_n) {
            best_n = count[ty];
            best = ty;
        }
    switch (best) {
    case GGML_TYPE_Q4_0: return QF_FTYPE_MOSTLY_Q4_0;
    case GGML_TYPE_Q4_1: return QF_FTYPE_MOSTLY_Q4_1;
    case GGML_TYPE_Q5_0: return QF_FTYPE_MOSTLY_Q5_0;
    case GGML_TYPE_Q5_1: return QF_FTYPE_MOSTLY_Q5_1;
    case GGML_TYPE_Q8_0: return QF_FTYPE_MOSTLY_Q8_0;
    case GGML_TYPE_Q2_K: return QF_FTYPE_MOSTLY_Q2_K;
    case GGML_TYPE_Q3_K: return QF_FTYPE_MOSTLY_Q3_K_M;
    case GGML_TYPE_Q4_K: return QF_FTYPE_MOSTLY_Q4_K_M;
    case GGML_TYPE_Q5_K: return QF_FTYPE_MOSTLY_Q5_K_M;
    case GGML_TYPE_Q6_K: return QF_FTYPE_MOSTLY_Q6_K;
    case GGML_TYPE_IQ4_NL: return QF_FTYPE_MOSTLY_IQ4_NL;
    default: return QF_FTYPE_MOSTLY_F16;
    }
}


/* ---------------- one budgeted plan ---------------- */

void qf_budget_plan_free(qf_budget_plan *bp) {
    if (!bp) return;
    qf_sensitivity_free(&bp->sens);
    free(bp->choice);
    free(bp->table);
    memset(bp, 0, sizeof *bp);
}

/* Metadata bytes of the output, from above: the input's header (its KVs and
 * tensor infos, which keep their sizes), plus the KVs quantize adds
 * (quantization version, file type, the imatrix record with its path and
 * dataset, at most 127 bytes each) and the padding before the data. */
static uint64_t header_bound(const gguf_file *in, const qf_budget_request *rq) {
    return in->data_offset + 1024;
}

int qf_budget_plan_make(const qf_budget_request *rq, qf_budget_plan *bp, qf_err *err) {
    memset(bp, 0, sizeof *bp);
    qf_quant_input qin;
    qf_imatrix im;
    qf_imatrix_init(&im);
    int rc = qf_quant_input_open(&qin, rq->in_path, err), have_im = 0;
    if (rc) return rc;
    const gguf_file *in = &qin.all; /* a directory: the GGUF convert --outtype auto writes, read row by row */
    char key[33];
    if ((rc = qf_sensitivity_key(rq->in_path, rq->imatrix_path, rq->method, key, err))) goto done;
    if (rq->calib_path) { /* the role weights depend on the text and how much of it is used */
        struct stat st;
        uint64_t parts[4] = {0, (uint64_t)rq->calib_ctx, (uint64_t)rq->calib_chunks, 0};
        if ((rc = hash_file(rq->calib_path, 0, &parts[0], &st, err))) goto done;
        parts[3] = XXH3_64bits(key, 32);
        XXH128_hash_t k = XXH3_128bits(parts, sizeof parts);
        snprintf(key, sizeof key, "%016llx%016llx", (unsigned long long)k.high64, (unsigned long long)k.low64);
    }
    for (int r = 0; r < QF_ROLE_COUNT; r++) bp->role_scale[r] = 1.0;
    if (rq->cache_path) {
        rc = qf_sensitivity_load(&bp->sens, rq->cache_path, key, err);
        if (rc == 0) bp->cached = 1;
        else if (rc != QF_ENOTFOUND) goto done;
    }
    if (!bp->cached) {
        if (rq->imatrix_path) {
            if ((rc = qf_imatrix_read(&im, rq->imatrix_path, err))) goto done;
            have_im = 1;
        }
        if ((rc = measure(&bp->sens, in, qin.src ? &qin : NULL, have_im ? &im : NULL, rq->method, rq->policy,
                          rq->qopts ? rq->qopts->n_threads : 1, err)))
            goto done;
        if (rq->calib_path &&
            (rc = qf_sensitivity_calibrate_roles(&bp->sens, rq->qopts, rq->calib_path, rq->calib_ctx,
                                                 rq->calib_chunks, rq->qopts->out_path, bp->role_scale, err)))
            goto done;
        snprintf(bp->sens.key, sizeof bp->sens.key, "%s", key);
        if (rq->cache_path && (rc = qf_sensitivity_save(&bp->sens, rq->cache_path, err))) goto done;
    }
    bp->calibrated = rq->calib_path != NULL;
    const qf_sensitivity *s = &bp->sens;
    bp->align = rq->mode == QF_BUDGET_BPW ? 1 : 32;
    bp->fixed_bytes = bp->align == 1 ? s->fixed_raw : s->fixed_bytes;
    const uint64_t min_q = qf_budget_min_bytes(s->t, s->n, bp->align);
    uint64_t overhead = bp->fixed_bytes; /* everything that is not the quantizable tensors */
    uint64_t total = rq->size;
    switch (rq->mode) {
    case QF_BUDGET_SIZE:
        bp->header_bytes = header_bound(in, rq);
        overhead += bp->header_bytes;
        break;
    case QF_BUDGET_BPW:
        if (!(rq->bpw > 0) || !s->n_elements) {
            rc = qf_set_err(err, QF_EINVAL, "budget: bits per weight must be > 0");
            goto done;
        }
        total = (uint64_t)(rq->bpw * (double)s->n_elements / 8.0);
        break;
    case QF_BUDGET_VRAM:
        if ((rc = qf_vram_fit_compute(in, rq->size, rq->ctx, rq->batch, &bp->vram, err))) goto done;
        overhead += bp->vram.kv_bytes + bp->vram.compute_bytes;
        break;
    default:
        rc = qf_set_err(err, QF_EINVAL, "budget: unknown mode %d", rq->mode);
        goto done;
    }
    bp->min_total = overhead + min_q;
    if (total < bp->min_total) {
        if (rq->mode == QF_BUDGET_BPW)
            rc = qf_set_err(err, QF_ERANGE,
                            "budget: %.4f bits per weight is below the smallest reachable %.4f bits per weight",
                            rq->bpw, 8.0 * (double)bp->min_total / (double)s->n_elements);
        else
            rc = qf_set_err(err, QF_ERANGE, "budget: %llu bytes is below the smallest reachable size: %llu bytes%s",
                            (unsigned long long)total, (unsigned long long)bp->min_total,
                            rq->mode == QF_BUDGET_VRAM ? " of VRAM (weights + KV cache + compute allowance)" : "");
        goto done;
    }
    bp->budget = total - overhead;
    bp->choice = calloc(s->n ? s->n : 1, sizeof *bp->choice);
    bp->table = calloc(s->n ? s->n : 1, sizeof *bp->table);
    if (!bp->choice || !bp->table) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = qf_budget_allocate(s->t, s->n, bp->budget, bp->align, bp->choice))) {
        rc = qf_set_err(err, rc, "budget: allocation failed");
        goto done;
    }
    for (size_t i = 0; i < s->n; i++) {
        const qf_budget_cand *c = &s->t[i].cand[bp->choice[i]];
        bp->tensor_bytes += qf_budget_padded(c->bytes, bp->align);
        bp->err += c->err;
        bp->table[i] = (qf_tensor_type_override){s->t[i].name, c->type};
    }
    bp->file_type = qf_budget_file_type(s->t, s->n, bp->choice);
done:
    if (have_im) qf_imatrix_free(&im);
    qf_quant_input_close(&qin);
    return rc;
}

/* ---------------- end-to-end role weights ---------------- */

/* A logits source that evaluates the base model once per chunk and serves
 * the kept logits afterwards. */
typedef struct memo_source {
    qf_logits_source src;
    qf_logits_source *inner;
    float **chunks; /* [n_chunks][(n_ctx - first) * n_vocab] */
    int64_t n_chunks;
} memo_source;

static int memo_chunk_logits(void *self, int64_t chunk, const int32_t *tokens, int64_t n_ctx, int64_t first,
                             float *logits, qf_err *err) {
    memo_source *m = self;
    const size_t n = (size_t)((n_ctx - first) * m->src.n_vocab);
    if (chunk < 0 || chunk >= m->n_chunks) return qf_set_err(err, QF_EINVAL, "budget: chunk %lld", (long long)chunk);
    if (!m->chunks[chunk]) {
        int rc = m->inner->chunk_logits(m->inner->self, chunk, tokens, n_ctx, first, logits, err);
        if (rc < 0) return rc;
        if (!(m->chunks[chunk] = malloc(n * sizeof(float)))) return qf_set_err(err, QF_ENOMEM, "out of memory");
        memcpy(m->chunks[chunk], logits, n * sizeof(float));
        return 0;
    }
    memcpy(logits, m->chunks[chunk], n * sizeof(float));
    return 0;
}

/* Probe candidate of a tensor: bits per weight nearest 4.5. */
static size_t probe_cand(const qf_budget_tensor *t) {
    size_t best = 0;
    double bd = 1e30;
    for (size_t c = 0; c < t->n_cand; c++) {
        double bpw = 8.0 * (double)t->cand[c].bytes / (double)t->n_elements, d = fabs(bpw - 4.5);
        if (d < bd) {
            bd = d;
            best = c;
        }
    }
    return best;
}

/* KLD of `path` against the memoized base on the tokens. */
static int probe_kld(const char *path, memo_source *base, const int32_t *ids, int64_t n_ids, const qf_ppl_params *pp,
                     double *kld, qf_err *err) {
    qf_model m;
    int rc = qf_model_load(&m, path, err);
    if (rc < 0) return rc;
    qf_model_source ms;
    if ((rc = qf_model_source_init(&ms, &m, pp->n_ctx, pp->n_ctx, err)) < 0) {
        qf_model_free(&m);
        return rc;
    }
    qf_kld_result r;
    memset(&r, 0, sizeof r);
    rc = qf_kl_divergence(&base->src, &ms.src, ids, n_ids, pp, &r, err);
    if (rc >= 0) *kld = r.kld_mean;
    qf_kld_result_free(&r);
    qf_model_source_free(&ms);
    qf_model_free(&m);
    return rc < 0 ? rc : 0;
}

static int read_input_rows(void *in, uint64_t idx, uint64_t row0, uint64_t nr, void *dst, qf_err *err) {
    return qf_quant_input_read(in, idx, row0, nr, dst, err);
}

int qf_sensitivity_calibrate_roles(qf_sensitivity *s, const qf_quantize_opts *o, const char *calib_path,
                                   int64_t n_ctx, int64_t n_chunks, const char *probe_dir_file,
                                   double scale[QF_ROLE_COUNT], qf_err *err) {
    for (int r = 0; r < QF_ROLE_COUNT; r++) scale[r] = 1.0;
    qf_model base;
    qf_text tx;
    memset(&tx, 0, sizeof tx);
    qf_quant_input qin; /* the input as a GGUF (a directory: as convert --outtype auto writes it) */
    int rc = qf_quant_input_open(&qin, o->in_path, err);
    if (rc < 0) return rc;
    /* the base model of that GGUF: a directory's read block by block in each forward pass (forward.h) */
    rc = qin.src ? qf_model_load_rows(&base, &qin.all, o->in_path, read_input_rows, &qin, err)
                 : qf_model_load(&base, o->in_path, err);
    if (rc < 0) {
        qf_quant_input_close(&qin);
        return rc;
    }
    char *text = NULL, *probe = NULL;
    size_t len = 0;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    int have_src = 0, have_tx = 0;
    qf_model_source bs;
    memo_source memo;
    memset(&memo, 0, sizeof memo);
    qf_tensor_type_override *table = NULL;
    const gguf_file *in = &qin.all;
    if ((rc = qf_text_init_model(&tx, &base, err)) < 0) goto done;
    have_tx = 1;
    if ((rc = qf_read_text_any(calib_path, &text, &len, err)) < 0) goto done;
    if ((rc = qf_text_encode(&tx, text, 1, &ids, &n_ids, err)) < 0) goto done;
    qf_ppl_params pp;
    memset(&pp, 0, sizeof pp);
    pp.n_ctx = n_ctx;
    pp.max_chunks = n_chunks;
    qf_text_bos(&tx, &pp.add_bos, &pp.bos_id);
    const int64_t nc = qf_ppl_chunk_count(n_ids, &pp);
    if (nc <= 0) {
        rc = qf_set_err(err, QF_EINVAL, "%s: needs at least %lld tokens for role weights (has %lld)", calib_path,
                        (long long)(2 * n_ctx), (long long)n_ids);
        goto done;
    }
    if ((rc = qf_model_source_init(&bs, &base, n_ctx, n_ctx, err)) < 0) goto done;
    have_src = 1;
    memo.inner = &bs.src;
    memo.n_chunks = nc;
    memo.src.n_vocab = bs.src.n_vocab;
    memo.src.chunk_logits = memo_chunk_logits;
    memo.src.self = &memo;
    memo.chunks = calloc((size_t)nc, sizeof *memo.chunks);
    table = calloc(s->n ? s->n : 1, sizeof *table);
    probe = malloc(strlen(probe_dir_file) + 64);
    if (!memo.chunks || !table || !probe) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory");
        goto done;
    }
    snprintf(probe, strlen(probe_dir_file) + 64, "%s.probe.tmp.%ld.gguf", probe_dir_file, (long)getpid());
    for (int role = 0; role < QF_ROLE_COUNT; role++) {
        double pred = 0;
        size_t n_role = 0;
        for (size_t i = 0; i < s->n; i++) {
            const gguf_tensor_info *ti = gguf_find_tensor(in, s->t[i].name);
            uint32_t ty = ti ? ti->type : GGML_TYPE_F32; /* unchanged */
            if ((int)qf_tensor_role_of(s->t[i].name) == role) {
                const qf_budget_cand *c = &s->t[i].cand[probe_cand(&s->t[i])];
                ty = c->type;
                pred += c->err;
                n_role++;
            }
            table[i] = (qf_tensor_type_override){s->t[i].name, ty};
        }
        if (!n_role) continue;
        qf_quantize_opts po = *o;
        po.out_path = probe;
        po.type_table = table;
        po.n_type_table = s->n;
        po.write_manifest = 0;
        po.progress = NULL;
        if ((rc = qf_quantize(&po, NULL, err))) goto done;
        double kld = 0;
        rc = probe_kld(probe, &memo, ids, n_ids, &pp, &kld, err);
        unlink(probe);
        if (rc) goto done;
        /* a probe below the measurement's resolution still counts a little */
        if (kld < 1e-7) kld = 1e-7;
        if (pred > 0) scale[role] = kld / pred;
    }
    for (size_t i = 0; i < s->n; i++) {
        const double f = scale[qf_tensor_role_of(s->t[i].name)];
        for (size_t c = 0; c < s->t[i].n_cand; c++) s->t[i].cand[c].err *= f;
    }
    rc = 0;
done:
    for (int64_t c = 0; c < memo.n_chunks && memo.chunks; c++) free(memo.chunks[c]);
    free(memo.chunks);
    free(table);
    free(probe);
    if (have_src) qf_model_source_free(&bs);
    if (have_tx) qf_text_free(&tx);
    free(text);
    free(ids);
    qf_model_free(&base);
    qf_quant_input_close(&qin);
    return rc < 0 ? rc : 0;
}
