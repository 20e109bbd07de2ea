/* imatrix.c - importance matrices: in-memory form, legacy .dat and GGUF I/O.
 * Formats are described in imatrix.h and docs/formats-codecs.md. */
#include "imatrix.h"
#include "qf_tmpfile.h"
#include "qf_util.h"
#include "qf_io.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ggml_types.h"
#include "gguf.h"

#define KV_GENERAL_TYPE "general.type"
#define KV_DATASETS "imatrix.datasets"
#define KV_CHUNK_COUNT "imatrix.chunk_count"
#define KV_CHUNK_SIZE "imatrix.chunk_size"
#define SUFFIX_SUM2 ".in_sum2"
#define SUFFIX_COUNTS ".counts"

/* Sanity cap on a legacy entry name (GGUF tensor names are < 64 bytes). */
#define MAX_NAME_LEN 4096

void qf_imatrix_init(qf_imatrix *im) { memset(im, 0, sizeof *im); }

static void entry_free(qf_imatrix_entry *e) {
    free(e->name);
    free(e->sum2);
    free(e->counts);
}

void qf_imatrix_free(qf_imatrix *im) {
    if (!im) return;
    for (size_t i = 0; i < im->n_entries; ++i) entry_free(&im->entries[i]);
    free(im->entries);
    for (size_t i = 0; i < im->n_datasets; ++i) free(im->datasets[i]);
    free(im->datasets);
    memset(im, 0, sizeof *im);
}

const qf_imatrix_entry *qf_imatrix_find(const qf_imatrix *im, const char *name) {
    for (size_t i = 0; i < im->n_entries; ++i)
        if (strcmp(im->entries[i].name, name) == 0) return &im->entries[i];
    return NULL;
}

/* Add an entry taking `name` (malloc'd, length name_len) by ownership. */
static int add_entry_owned(qf_imatrix *im, char *name, size_t name_len, uint32_t n_cols, uint32_t n_mat,
                           qf_imatrix_entry **out, qf_err *err) {
    int rc = QF_OK;
    float *sum2 = NULL, *counts = NULL;
    if (name_len == 0 || memchr(name, 0, name_len)) {
        rc = qf_set_err(err, QF_EINVAL, "imatrix: entry name is empty or contains a nul byte");
        goto fail;
    }
    if (n_cols == 0 || n_mat == 0) {
        rc = qf_set_err(err, QF_EINVAL, "imatrix: entry '%s' has zero size (%u x %u)", name, n_cols, n_mat);
        goto fail;
    }
    if (qf_imatrix_find(im, name)) {
        rc = qf_set_err(err, QF_EINVAL, "imatrix: duplicate entry '%s'", name);
        goto fail;
    }
    unsigned long long nval;
    if (qf_mul_u64(n_cols, n_mat, &nval) || nval > SIZE_MAX / sizeof(float)) {
        rc = qf_set_err(err, QF_ERANGE, "imatrix: entry '%s' is too large", name);
        goto fail;
    }
    sum2 = calloc((size_t)nval, sizeof(float));
    counts = calloc(n_mat, sizeof(float));
    if (!sum2 || !counts) {
        rc = qf_set_err(err, QF_ENOMEM, "imatrix: out of memory for entry '%s'", name);
        goto fail;
    }
    qf_imatrix_entry *grown = realloc(im->entries, (im->n_entries + 1) * sizeof *grown);
    if (!grown) {
        rc = qf_set_err(err, QF_ENOMEM, "imatrix: out of memory");
        goto fail;
    }
    im->entries = grown;
    qf_imatrix_entry *e = &im->entries[im->n_entries++];
    e->name = name;
    e->n_cols = n_cols;
    e->n_mat = n_mat;
    e->sum2 = sum2;
    e->counts = counts;
    e->ncall = -1;
    if (out) *out = e;
    return QF_OK;
fail:
    free(name);
    free(sum2);
    free(counts);
    return rc;
}

int qf_imatrix_add(qf_imatrix *im, const char *name, uint32_t n_cols, uint32_t n_mat, qf_imatrix_entry **out,
                   qf_err *err) {
    if (!name) return qf_set_err(err, QF_EINVAL, "imatrix: entry name is null");
    size_t len = strlen(name);
    char *copy = qf_strndup(name, len);
    if (!copy) return qf_set_err(err, QF_ENOMEM, "imatrix: out of memory");
    return add_entry_owned(im, copy, len, n_cols, n_mat, out, err);
}

static int add_dataset_n(qf_imatrix *im, const char *name, size_t len, qf_err *err) {
    char *copy = qf_strndup(name, len);
    char **grown = copy ? realloc(im->datasets, (im->n_datasets + 1) * sizeof *grown) : NULL;
    if (!grown) {
        free(copy);
        return qf_set_err(err, QF_ENOMEM, "imatrix: out of memory");
    }
    im->datasets = grown;
    im->datasets[im->n_datasets++] = copy;
    return QF_OK;
}

int qf_imatrix_add_dataset(qf_imatrix *im, const char *name, qf_err *err) {
    if (!name) return qf_set_err(err, QF_EINVAL, "imatrix: dataset name is null");
    return add_dataset_n(im, name, strlen(name), err);
}

void qf_imatrix_entry_weights(const qf_imatrix_entry *e, float *out) {
    for (uint32_t m = 0; m < e->n_mat; ++m) {
        const float count = e->counts[m];
        const float *s = e->sum2 + (size_t)m * e->n_cols;
        float *o = out + (size_t)m * e->n_cols;
        if (count > 0.f) {
            for (uint32_t j = 0; j < e->n_cols; ++j) o[j] = s[j] / count;
        } else {
            /* matrix never saw a token (an unused expert): no information */
            for (uint32_t j = 0; j < e->n_cols; ++j) o[j] = 1.f;
        }
    }
}

int qf_imatrix_weights_for(const qf_imatrix *im, const char *name, uint64_t n_per_row, uint64_t n_mat, float *out,
                           qf_err *err) {
    const qf_imatrix_entry *e = qf_imatrix_find(im, name);
    if (!e) return qf_set_err(err, QF_ENOTFOUND, "imatrix: no entry for '%s'", name);
    const uint64_t have = (uint64_t)e->n_cols * e->n_mat;
    if (have != n_per_row * n_mat)
        return qf_set_err(err, QF_EMISMATCH,
                          "imatrix: entry '%s' has %llu values, tensor needs %llu (%llu per row x %llu matrices)",
                          name, (unsigned long long)have, (unsigned long long)(n_per_row * n_mat),
                          (unsigned long long)n_per_row, (unsigned long long)n_mat);
    qf_imatrix_entry_weights(e, out);
    return QF_OK;
}

int qf_imatrix_validate(const qf_imatrix *im, qf_err *err) {
    for (size_t i = 0; i < im->n_entries; ++i) {
        const qf_imatrix_entry *e = &im->entries[i];
        if (!e->name || !e->name[0])
            return qf_set_err(err, QF_EFORMAT, "imatrix: entry %zu has an empty name", i);
        if (e->n_cols == 0 || e->n_mat == 0)
            return qf_set_err(err, QF_EFORMAT, "imatrix: entry '%s' has zero size", e->name);
        for (size_t k = 0; k < i; ++k)
            if (strcmp(im->entries[k].name, e->name) == 0)
                return qf_set_err(err, QF_EFORMAT, "imatrix: duplicate entry '%s'", e->name);
        const size_t nval = (size_t)e->n_cols * e->n_mat;
        for (size_t j = 0; j < nval; ++j) {
            const float v = e->sum2[j];
            if (!isfinite(v) || v < 0.f)
                return qf_set_err(err, QF_ERANGE, "imatrix: entry '%s' value %zu is %s (%g)", e->name, j,
                                  isnan(v) ? "nan" : isinf(v) ? "infinite" : "negative", (double)v);
        }
        for (uint32_t m = 0; m < e->n_mat; ++m) {
            const float c = e->counts[m];
            if (!isfinite(c) || c < 0.f)
                return qf_set_err(err, QF_ERANGE, "imatrix: entry '%s' count %u is %s (%g)", e->name, m,
                                  isnan(c) ? "nan" : isinf(c) ? "infinite" : "negative", (double)c);
        }
    }
    return QF_OK;
}

/* ------------------------------------------------------------------------ */
/* legacy .dat                                                              */
/* ------------------------------------------------------------------------ */

typedef struct rd {
    const uint8_t *p;
    size_t left;
} rd;

static int rd_i32(rd *r, int32_t *v) {
    if (r->left < 4) return -1;
    uint32_t u = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
    memcpy(v, &u, 4);
    r->p += 4;
    r->left -= 4;
    return 0;
}

/* The count a legacy entry stands for: values are mean*ncall, readers divide
 * by ncall only when it is positive. */
static float legacy_count(int64_t ncall) { return ncall > 0 ? (float)ncall : 1.f; }

int qf_imatrix_read_dat_buffer(qf_imatrix *im, const void *buf, size_t size, const char *name, qf_err *err) {
    int rc = QF_OK;
    rd r = { (const uint8_t *)buf, size };
    int32_t n_entries;
    if (rd_i32(&r, &n_entries) || n_entries < 1) {
        rc = qf_set_err(err, QF_EFORMAT, "%s: not an imatrix .dat file (no entries)", name);
        goto fail;
    }
    for (int32_t i = 0; i < n_entries; ++i) {
        int32_t len, ncall, nval;
        if (rd_i32(&r, &len)) goto truncated;
        if (len < 1 || len > MAX_NAME_LEN) {
            rc = qf_set_err(err, QF_EFORMAT, "%s: entry %d has a bad name length %d", name, i, len);
            goto fail;
        }
        if (r.left < (size_t)len) goto truncated;
        char *ename = qf_strndup((const char *)r.p, (size_t)len);
        if (!ename) {
            rc = qf_set_err(err, QF_ENOMEM, "%s: out of memory", name);
            goto fail;
        }
        r.p += len;
        r.left -= (size_t)len;
        if (rd_i32(&r, &ncall) || rd_i32(&r, &nval)) {
            free(ename);
            goto truncated;
        }
        if (nval < 1 || ncall < 0) {
            rc = qf_set_err(err, QF_EFORMAT, "%s: entry '%s' has nval %d, ncall %d", name, ename, nval, ncall);
            free(ename);
            goto fail;
        }
        if (r.left / 4 < (size_t)nval) {
            free(ename);
            goto truncated;
        }
        qf_imatrix_entry *e;
        rc = add_entry_owned(im, ename, (size_t)len, (uint32_t)nval, 1, &e, err);
        if (rc) {
            qf_err_prefix(err, name);
            goto fail;
        }
        memcpy(e->sum2, r.p, (size_t)nval * 4); /* little-endian host */
        r.p += (size_t)nval * 4;
        r.left -= (size_t)nval * 4;
        e->counts[0] = legacy_count(ncall);
        e->ncall = ncall;
    }
    if (r.left > 0) { /* optional trailer: last chunk and dataset name */
        int32_t last_chunk, len;
        if (rd_i32(&r, &last_chunk) || rd_i32(&r, &len)) goto truncated;
        if (last_chunk < 0 || len < 0) {
            rc = qf_set_err(err, QF_EFORMAT, "%s: bad trailer (last chunk %d, name length %d)", name, last_chunk, len);
            goto fail;
        }
        if (r.left < (size_t)len) goto truncated;
        rc = add_dataset_n(im, (const char *)r.p, (size_t)len, err);
        if (rc) goto fail;
        r.p += len;
        r.left -= (size_t)len;
        im->chunk_count = (uint32_t)last_chunk;
        if (r.left > 0) {
            rc = qf_set_err(err, QF_EFORMAT, "%s: %zu unexpected bytes after the trailer", name, r.left);
            goto fail;
        }
    }
    rc = qf_imatrix_validate(im, err);
    if (rc) {
        qf_err_prefix(err, name);
        goto fail;
    }
    return QF_OK;
truncated:
    rc = qf_set_err(err, QF_EFORMAT, "%s: truncated imatrix .dat file", name);
fail:
    qf_imatrix_free(im);
    return rc;
}

/* Map a whole file read-only (an empty file maps to a NULL buffer). */
static int map_file(const char *path, void **buf, size_t *size, qf_err *err) {
    *buf = NULL;
    *size = 0;
    int fd = qf_open_input(path, err);
    if (fd < 0) return fd;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return qf_set_err(err, QF_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return qf_set_err(err, QF_EIO, "%s: cannot map: %s", path, strerror(e));
        }
        *buf = p;
        *size = (size_t)st.st_size;
    }
    close(fd);
    return QF_OK;
}

int qf_imatrix_read_dat(qf_imatrix *im, const char *path, qf_err *err) {
    void *buf;
    size_t size;
    int rc = map_file(path, &buf, &size, err);
    if (rc) return rc;
    rc = qf_imatrix_read_dat_buffer(im, buf, size, path, err);
    if (buf) munmap(buf, size);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* GGUF                                                                     */
/* ------------------------------------------------------------------------ */

int qf_imatrix_read_gguf(qf_imatrix *im, const char *path, qf_err *err) {
    gguf_file f;
    int rc = gguf_open(&f, path, err);
    if (rc) return rc;
    char *type = NULL, *counts_name = NULL;

    if (gguf_get_str(&f, KV_GENERAL_TYPE, &type) == QF_OK && strcmp(type, "imatrix") != 0) {
        rc = qf_set_err(err, QF_EFORMAT, "%s: general.type is '%s', not 'imatrix'", path, type);
        goto fail;
    }
    uint64_t n_ds = 0;
    const void *ds = NULL;
    int r = gguf_get_arr(&f, KV_DATASETS, GGUF_VT_STRING, &n_ds, &ds);
    if (r != QF_OK && r != QF_ENOTFOUND) {
        rc = qf_set_err(err, QF_EFORMAT, "%s: %s is not a string array", path, KV_DATASETS);
        goto fail;
    }
    for (uint64_t i = 0; r == QF_OK && i < n_ds; ++i) {
        const gguf_str *s = (const gguf_str *)ds + i;
        rc = add_dataset_n(im, s->data, (size_t)s->len, err);
        if (rc) goto fail;
    }
    r = gguf_get_u32(&f, KV_CHUNK_COUNT, &im->chunk_count);
    if (r != QF_OK && r != QF_ENOTFOUND) {
        rc = qf_set_err(err, QF_EFORMAT, "%s: %s is not a u32", path, KV_CHUNK_COUNT);
        goto fail;
    }
    r = gguf_get_u32(&f, KV_CHUNK_SIZE, &im->chunk_size);
    if (r != QF_OK && r != QF_ENOTFOUND) {
        rc = qf_set_err(err, QF_EFORMAT, "%s: %s is not a u32", path, KV_CHUNK_SIZE);
        goto fail;
    }

    for (uint64_t t = 0; t < f.n_tensors; ++t) {
        const gguf_tensor_info *ts = &f.tensors[t];
        if (qf_ends_with(ts->name, SUFFIX_COUNTS)) {
            size_t base = strlen(ts->name) - strlen(SUFFIX_COUNTS);
            char probe[256];
            if (base + strlen(SUFFIX_SUM2) < sizeof probe) {
                memcpy(probe, ts->name, base);
                strcpy(probe + base, SUFFIX_SUM2);
                if (gguf_find_tensor(&f, probe)) continue;
            }
            rc = qf_set_err(err, QF_EFORMAT, "%s: tensor '%s' has no matching %s tensor", path, ts->name, SUFFIX_SUM2);
            goto fail;
        }
        if (!qf_ends_with(ts->name, SUFFIX_SUM2)) continue; /* in_sum and other statistics: not used */
        const size_t base = strlen(ts->name) - strlen(SUFFIX_SUM2);
        char *ename = qf_strndup(ts->name, base);
        free(counts_name);
        counts_name = malloc(base + strlen(SUFFIX_COUNTS) + 1);
        if (!ename || !counts_name) {
            free(ename);
            rc = qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
            goto fail;
        }
        memcpy(counts_name, ts->name, base);
        strcpy(counts_name + base, SUFFIX_COUNTS);
        const gguf_tensor_info *tc = gguf_find_tensor(&f, counts_name);
        if (!tc) {
            rc = qf_set_err(err, QF_EFORMAT, "%s: tensor '%s' has no matching '%s'", path, ts->name, counts_name);
            free(ename);
            goto fail;
        }
        if (ts->type != GGML_TYPE_F32 || tc->type != GGML_TYPE_F32 || ts->n_dims > 2 || tc->n_dims > 2) {
            rc = qf_set_err(err, QF_EFORMAT, "%s: imatrix tensors of '%s' must be 2-d f32", path, ename);
            free(ename);
            goto fail;
        }
        if (tc->ne[0] != 1 || tc->ne[1] != ts->ne[1] || ts->ne[0] == 0 || ts->ne[1] == 0 ||
            ts->ne[0] > UINT32_MAX || ts->ne[1] > UINT32_MAX) {
            rc = qf_set_err(err, QF_EMISMATCH, "%s: '%s' is [%llu, %llu] but '%s' is [%llu, %llu]", path, ts->name,
                            (unsigned long long)ts->ne[0], (unsigned long long)ts->ne[1], tc->name,
                            (unsigned long long)tc->ne[0], (unsigned long long)tc->ne[1]);
            free(ename);
            goto fail;
        }
        qf_imatrix_entry *e;
        rc = add_entry_owned(im, ename, base, (uint32_t)ts->ne[0], (uint32_t)ts->ne[1], &e, err);
        if (rc) {
            qf_err_prefix(err, path);
            goto fail;
        }
        memcpy(e->sum2, ts->data, (size_t)e->n_cols * e->n_mat * sizeof(float));
        memcpy(e->counts, tc->data, (size_t)e->n_mat * sizeof(float));
    }
    if (im->n_entries == 0) {
        rc = qf_set_err(err, QF_EFORMAT, "%s: no imatrix entries (no *.in_sum2 tensors)", path);
        goto fail;
    }
    rc = qf_imatrix_validate(im, err);
    if (rc) {
        qf_err_prefix(err, path);
        goto fail;
    }
    free(type);
    free(counts_name);
    gguf_close(&f);
    return QF_OK;
fail:
    free(type);
    free(counts_name);
    gguf_close(&f);
    qf_imatrix_free(im);
    return rc;
}

int qf_imatrix_read(qf_imatrix *im, const char *path, qf_err *err) {
    uint8_t magic[64] = { 0 };
    FILE *fp = qf_fopen_input(path, err);
    if (!fp) return err ? err->code : QF_EIO;
    size_t got = fread(magic, 1, sizeof magic, fp);
    fclose(fp);
    if (got >= 4 && memcmp(magic, "GGUF", 4) == 0) return qf_imatrix_read_gguf(im, path, err);
    /* a .dat starts with two small int32 counts, never with 8 text bytes */
    const char *kind = qf_sniff(magic, got);
    if (strcmp(kind, "binary data") && (strcmp(kind, "text") || got >= 8))
        return qf_set_err(err, QF_EFORMAT, "%s: not an imatrix file (.dat or GGUF): it looks like %s", path, kind);
    return qf_imatrix_read_dat(im, path, err);
}

/* ------------------------------------------------------------------------ */
/* writers                                                                  */
/* ------------------------------------------------------------------------ */

/* ncall written to .dat for entry e. */
static int64_t dat_ncall(const qf_imatrix *im, const qf_imatrix_entry *e) {
    if (e->ncall >= 0) return e->ncall;
    float maxc = 0.f;
    for (uint32_t m = 0; m < e->n_mat; ++m)
        if (e->counts[m] > maxc) maxc = e->counts[m];
    int64_t c = (int64_t)maxc;
    if (im->chunk_size > 0) return (c + im->chunk_size - 1) / im->chunk_size; /* ceil, as llama-imatrix */
    return c > 0 ? c : 1;
}

static void put_i32(uint8_t *p, int32_t v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    p[0] = (uint8_t)u;
    p[1] = (uint8_t)(u >> 8);
    p[2] = (uint8_t)(u >> 16);
    p[3] = (uint8_t)(u >> 24);
}

static int fwrite_i32(FILE *fp, int32_t v) {
    uint8_t b[4];
    put_i32(b, v);
    return fwrite(b, 1, 4, fp) == 4 ? 0 : -1;
}

/* Create a unique "<path>.tmp.<pid>.<n>" next to path (qf_tmpfile.h). */
static int open_temp(const char *path, FILE **out, char **tmp_path, qf_err *err) {
    char *tmp = NULL;
    int fd = qf_tmpfile_create(path, &tmp, err);
    if (fd < 0) return fd;
    FILE *fp = fdopen(fd, "wb");
    if (!fp) {
        int rc = qf_set_err(err, QF_EIO, "%s: cannot open temp file: %s", path, strerror(errno));
        close(fd);
        unlink(tmp);
        qf_tmpfile_forget(tmp);
        free(tmp);
        return rc;
    }
    *tmp_path = tmp;
    *out = fp;
    return QF_OK;
}

int qf_imatrix_write_dat(const qf_imatrix *im, const char *path, qf_err *err) {
    int rc = qf_imatrix_validate(im, err);
    if (rc) return rc;
    if (im->n_entries == 0 || im->n_entries > INT32_MAX)
        return qf_set_err(err, QF_EINVAL, "%s: imatrix has %zu entries", path, im->n_entries);
    char *tmp = NULL;
    float *vals = NULL;
    FILE *fp = NULL;
    if ((rc = open_temp(path, &fp, &tmp, err))) return rc;
    if (fwrite_i32(fp, (int32_t)im->n_entries)) goto io_fail;
    for (size_t i = 0; i < im->n_entries; ++i) {
        const qf_imatrix_entry *e = &im->entries[i];
        const size_t len = strlen(e->name);
        const uint64_t nval = (uint64_t)e->n_cols * e->n_mat;
        const int64_t ncall = dat_ncall(im, e);
        if (len > INT32_MAX || nval > INT32_MAX || ncall > INT32_MAX) {
            rc = qf_set_err(err, QF_ERANGE, "%s: entry '%s' does not fit the .dat format", path, e->name);
            goto fail;
        }
        if (fwrite_i32(fp, (int32_t)len) || fwrite(e->name, 1, len, fp) != len || fwrite_i32(fp, (int32_t)ncall) ||
            fwrite_i32(fp, (int32_t)nval))
            goto io_fail;
        const float cnt = legacy_count(ncall);
        int verbatim = 1;
        for (uint32_t m = 0; m < e->n_mat; ++m) verbatim &= e->counts[m] == cnt;
        const float *out = e->sum2;
        if (!verbatim) {
            free(vals);
            vals = malloc((size_t)nval * sizeof(float));
            if (!vals) {
                rc = qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
                goto fail;
            }
            /* value = mean * ncall; a matrix with no data stores 1 (weight 1) */
            for (uint32_t m = 0; m < e->n_mat; ++m) {
                for (uint32_t j = 0; j < e->n_cols; ++j) {
                    size_t k = (size_t)m * e->n_cols + j;
                    float c = e->counts[m], v = e->sum2[k];
                    if (c == 0.f) {
                        v = 1.f;
                        c = 1.f;
                    }
                    vals[k] = (v / c) * cnt;
                }
            }
            out = vals;
        }
        if (fwrite(out, sizeof(float), (size_t)nval, fp) != (size_t)nval) goto io_fail; /* little-endian host */
    }
    if (im->n_datasets > 0) {
        const char *ds = im->datasets[im->n_datasets - 1];
        const size_t len = strlen(ds);
        if (im->chunk_count > INT32_MAX || len > INT32_MAX) {
            rc = qf_set_err(err, QF_ERANGE, "%s: trailer does not fit the .dat format", path);
            goto fail;
        }
        if (fwrite_i32(fp, (int32_t)im->chunk_count) || fwrite_i32(fp, (int32_t)len) || fwrite(ds, 1, len, fp) != len)
            goto io_fail;
    }
    if (fflush(fp) != 0 || fsync(fileno(fp)) != 0) goto io_fail;
    if (fclose(fp) != 0) {
        fp = NULL;
        goto io_fail;
    }
    fp = NULL;
    if (rename(tmp, path) != 0) goto io_fail;
    qf_tmpfile_forget(tmp);
    free(tmp);
    free(vals);
    return QF_OK;
io_fail:
    rc = qf_set_err(err, QF_EIO, "%s: write failed: %s", path, strerror(errno));
fail:
    if (fp) fclose(fp);
    unlink(tmp);
    qf_tmpfile_forget(tmp);
    free(tmp);
    free(vals);
    return rc;
}

static int cmp_entry_name(const void *a, const void *b) {
    const qf_imatrix_entry *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

int qf_imatrix_write_gguf(const qf_imatrix *im, const char *path, qf_err *err) {
    int rc = qf_imatrix_validate(im, err);
    if (rc) return rc;
    const qf_imatrix_entry **order = NULL;
    char *tname = NULL;
    gguf_writer *w = gguf_writer_create(path, err);
    if (!w) return err && err->code ? err->code : QF_EIO;
    gguf_writer_set_fsync(w, 1);   /* a few MiB: as durable as the legacy .dat writer */
    order = malloc((im->n_entries ? im->n_entries : 1) * sizeof *order);
    if (!order) {
        rc = qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    for (size_t i = 0; i < im->n_entries; ++i) order[i] = &im->entries[i];
    qsort(order, im->n_entries, sizeof *order, cmp_entry_name); /* deterministic order, as llama-imatrix */

    if ((rc = gguf_writer_set_str(w, KV_GENERAL_TYPE, "imatrix")) ||
        (rc = gguf_writer_set_arr_str(w, KV_DATASETS, (const char *const *)im->datasets, NULL, im->n_datasets)) ||
        (rc = gguf_writer_set_u32(w, KV_CHUNK_COUNT, im->chunk_count)) ||
        (rc = gguf_writer_set_u32(w, KV_CHUNK_SIZE, im->chunk_size)))
        goto writer_fail;
    for (size_t i = 0; i < im->n_entries; ++i) {
        const qf_imatrix_entry *e = order[i];
        const size_t base = strlen(e->name);
        free(tname);
        tname = malloc(base + 16);
        if (!tname) {
            rc = qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
            goto fail;
        }
        const uint64_t ne_sum[2] = { e->n_cols, e->n_mat }, ne_cnt[2] = { 1, e->n_mat };
        snprintf(tname, base + 16, "%s%s", e->name, SUFFIX_SUM2);
        int64_t r1 = gguf_writer_add_tensor(w, tname, GGML_TYPE_F32, 2, ne_sum);
        snprintf(tname, base + 16, "%s%s", e->name, SUFFIX_COUNTS);
        int64_t r2 = r1 < 0 ? r1 : gguf_writer_add_tensor(w, tname, GGML_TYPE_F32, 2, ne_cnt);
        if (r1 < 0 || r2 < 0) {
            rc = (int)(r1 < 0 ? r1 : r2);
            goto writer_fail;
        }
    }
    if ((rc = gguf_writer_begin_data(w))) goto writer_fail;
    for (size_t i = 0; i < im->n_entries; ++i) {
        const qf_imatrix_entry *e = order[i];
        if ((rc = gguf_writer_write_tensor_data(w, e->sum2, (size_t)e->n_cols * e->n_mat * sizeof(float))) ||
            (rc = gguf_writer_write_tensor_data(w, e->counts, (size_t)e->n_mat * sizeof(float))))
            goto writer_fail;
    }
    free(order);
    free(tname);
    return gguf_writer_finish(w); /* frees w; errors land in err (given at create) */
writer_fail:
    /* the writer already recorded its error in err */
    if (rc >= 0) rc = qf_set_err(err, QF_EIO, "%s: gguf writer failed", path);
fail:
    if (w) gguf_writer_abort(w);
    free(order);
    free(tname);
    return rc;
}
