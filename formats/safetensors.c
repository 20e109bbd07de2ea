/* safetensors.c - safetensors reader (single file, sharded index, model
 * directory) and writer.
 *
 * Reader: every shard is mmap'd read-only; tensor data is never copied, a
 * st_tensor points into its shard's mapping. The JSON header is validated
 * completely before anything is returned (rules in docs/formats.md),
 * so callers can trust dtype/shape/nbytes/data.
 *
 * Writer: produces the bytes Hugging Face's safetensors library writes for a
 * single-dtype checkpoint: compact JSON with "__metadata__" first, then the
 * tensors sorted by name as {"dtype":..,"shape":[..],"data_offsets":[b,e]},
 * padded with spaces to a multiple of 8; data contiguous in the same order.
 */
#include "safetensors.h"
#include "qf_util.h"
#include "json.h"
#include "qf_tmpfile.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "qf_io.h"

/* ---------------- dtypes ---------------- */

static const struct {
    const char *name;
    size_t size;
} dtype_info[ST_DTYPE_COUNT] = {
    [ST_F64] = {"F64", 8},   [ST_F32] = {"F32", 4},   [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2}, [ST_I64] = {"I64", 8},   [ST_I32] = {"I32", 4},
    [ST_I16] = {"I16", 2},   [ST_I8] = {"I8", 1},     [ST_U8] = {"U8", 1},
    [ST_BOOL] = {"BOOL", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *st_dtype_name(st_dtype t) {
    return (unsigned)t < ST_DTYPE_COUNT ? dtype_info[t].name : "?";
}

size_t st_dtype_size(st_dtype t) {
    return (unsigned)t < ST_DTYPE_COUNT ? dtype_info[t].size : 0;
}

int st_dtype_from_name(const char *s, size_t len) {
    for (int t = 0; t < ST_DTYPE_COUNT; t++)
        if (strlen(dtype_info[t].name) == len && memcmp(dtype_info[t].name, s, len) == 0) return t;
    return -1;
}

/* dtypes the safetensors format defines that we do not handle */
static int dtype_known_unsupported(const char *s) {
    static const char *const names[] = {"U16", "U32", "U64", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ",
                                        "F4", "F6_E2M3", "F6_E3M2", "C64"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i]) == 0) return 1;
    return 0;
}

/* ---------------- reader ---------------- */

static uint64_t rd_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* A printable, bounded copy of a name for one-line error messages: control
 * and non-ASCII-printable bytes become \xNN, long names are cut with "...". */
static const char *show(const char *s, char *buf, size_t cap) {
    size_t o = 0;
    for (; *s && o + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != 0x7F && c != '\\') buf[o++] = (char)c;
        else o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
    }
    if (*s) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = 0;
    return buf;
}
#define SHOW_CAP 160

/* Growable tensor list while loading. */
typedef struct tlist {
    st_tensor *v;
    uint64_t n, cap;
} tlist;

static int tlist_push(tlist *l, st_tensor *t) {
    if (l->n == l->cap) {
        uint64_t cap = l->cap ? l->cap * 2 : 64;
        st_tensor *v = realloc(l->v, sizeof *v * cap);
        if (!v) return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *t;
    return 0;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int cmp_tensor_ptr_name(const void *a, const void *b) {
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

static int cmp_tensor_ptr_begin(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    if (x->file_offset != y->file_offset) return x->file_offset < y->file_offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* Parse the shape array of tensor `name`. */
static int parse_shape(const qf_json *j, int tok, st_tensor *t, const char *file, const char *tn, qf_err *err) {
    if (qf_json_type_of(j, tok) != QF_JSON_ARRAY)
        return qf_set_err(err, QF_EFORMAT, "%s: tensor '%s': shape is not an array", file, tn);
    if (qf_json_size(j, tok) > ST_MAX_DIMS)
        return qf_set_err(err, QF_EUNSUPPORTED, "%s: tensor '%s': %u dims, more than the %d supported", file, tn,
                          qf_json_size(j, tok), ST_MAX_DIMS);
    qf_json_iter it;
    qf_json_iter_begin(&it, j, tok);
    int e;
    unsigned long long n_el = 1;
    t->n_dims = 0;
    while (qf_json_iter_element(&it, &e)) {
        int64_t sd;
        if (qf_json_type_of(j, e) != QF_JSON_NUMBER || qf_json_get_int64(j, e, &sd, NULL) != 0 || sd < 0)
            return qf_set_err(err, QF_EFORMAT, "%s: tensor '%s': shape must be an array of non-negative integers", file,
                              tn);
        if (qf_mul_u64(n_el, (uint64_t)sd, &n_el))
            return qf_set_err(err, QF_ERANGE, "%s: tensor '%s': element count overflows 64 bits", file, tn);
        t->shape[t->n_dims++] = (uint64_t)sd;
    }
    t->n_elements = n_el;
    unsigned long long nb;
    if (qf_mul_u64(n_el, st_dtype_size(t->dtype), &nb))
        return qf_set_err(err, QF_ERANGE, "%s: tensor '%s': byte size (%llu elements x %zu) overflows 64 bits", file,
                          tn, n_el, st_dtype_size(t->dtype));
    t->nbytes = nb;
    return 0;
}

/* One tensor entry {"dtype":..,"shape":..,"data_offsets":..}. */
static int parse_tensor(const qf_json *j, int tok, st_tensor *t, const st_shard *sh, const char *tn, qf_err *err) {
    const char *file = sh->path;
    if (qf_json_type_of(j, tok) != QF_JSON_OBJECT)
        return qf_set_err(err, QF_EFORMAT, "%s: tensor '%s': entry is not an object", file, tn);
    int dt = -1, shape = -1, offs = -1, k, v;
    qf_json_iter it;
    qf_json_iter_begin(&it, j, tok);
    while (qf_json_iter_member(&it, &k, &v)) {
        int *slot = qf_json_string_eq(j, k, "dtype", 5)          ? &dt
                    : qf_json_string_eq(j, k, "shape", 5)        ? &shape
                    : qf_json_string_eq(j, k, "data_offsets", 12) ? &offs
                                                                   : NULL;
        if (!slot) continue; /* unknown fields are ignored */
        if (*slot >= 0) return qf_set_err(err, QF_EFORMAT, "%s: tensor '%s': duplicate field", file, tn);
        *slot = v;
    }
    if (dt < 0 || shape < 0 || offs < 0)
        return qf_set_err(err, QF_EFORMAT, "%s: tensor '%s': missing field '%s'", file, tn,
                          dt < 0 ? "dtype" : shape < 0 ? "shape" : "data_offsets");

    char dname[32];
    if (qf_json_type_of(j, dt) != QF_JSON_STRING)
        return qf_set_err(err, QF_EFORMAT, "%s: tensor '%s': dtype is not a string", file, tn);
    size_t dl = 0;
    if (qf_json_get_string_buf(j, dt, dname, sizeof dname, &dl, NULL) != 0 || strlen(dname) != dl)
        return qf_set_err(err, QF_EFORMAT, "%s: tensor '%s': unknown dtype", file, tn);
    int d = st_dtype_from_name(dname, dl);
    if (d < 0)
        return qf_set_err(err, dtype_known_unsupported(dname) ? QF_EUNSUPPORTED : QF_EFORMAT, "%s: tensor '%s': %s dtype '%s'",
                          file, tn, dtype_known_unsupported(dname) ? "unsupported" : "unknown",
                          show(dname, (char[SHOW_CAP]){0}, SHOW_CAP));
    t->dtype = (st_dtype)d;

    int rc = parse_shape(j, shape, t, file, tn, err);
    if (rc) return rc;

    if (qf_json_type_of(j, offs) != QF_JSON_ARRAY || qf_json_size(j, offs) != 2)
        return qf_set_err(err, QF_EFORMAT, "%s: tensor '%s': data_offsets is not an array of 2 integers", file, tn);
    uint64_t be[2];
    int e, n = 0;
    qf_json_iter_begin(&it, j, offs);
    while (qf_json_iter_element(&it, &e)) {
        int64_t sv;
        if (qf_json_type_of(j, e) != QF_JSON_NUMBER || qf_json_get_int64(j, e, &sv, NULL) != 0 || sv < 0)
            return qf_set_err(err, QF_EFORMAT, "%s: tensor '%s': data_offsets must be non-negative integers", file,
                              tn);
        be[n++] = (uint64_t)sv;
    }
    uint64_t data_size = sh->size - sh->data_start;
    if (be[0] > be[1])
        return qf_set_err(err, QF_EFORMAT, "%s: tensor '%s': data_offsets begin %llu > end %llu", file, tn,
                          (unsigned long long)be[0], (unsigned long long)be[1]);
    if (be[1] - be[0] != t->nbytes)
        return qf_set_err(err, QF_EFORMAT,
                          "%s: tensor '%s': data_offsets span %llu bytes but %s shape needs %llu (size mismatch)", file,
                          tn, (unsigned long long)(be[1] - be[0]), st_dtype_name(t->dtype),
                          (unsigned long long)t->nbytes);
    if (be[1] > data_size)
        return qf_set_err(err, QF_EFORMAT, "%s: tensor '%s': data range [%llu,%llu) exceeds the %llu byte data area (file size %llu)",
                          file, tn, (unsigned long long)be[0], (unsigned long long)be[1],
                          (unsigned long long)data_size, (unsigned long long)sh->size);
    t->file_offset = sh->data_start + be[0];
    t->data = sh->map + t->file_offset;
    return 0;
}

static int parse_metadata(st_model *m, const qf_json *j, int tok, int keep, const char *file, qf_err *err) {
    if (qf_json_type_of(j, tok) != QF_JSON_OBJECT)
        return qf_set_err(err, QF_EFORMAT, "%s: __metadata__ is not an object", file);
    uint32_t n = qf_json_size(j, tok);
    if (keep && n) {
        m->meta_keys = calloc(n, sizeof *m->meta_keys);
        m->meta_values = calloc(n, sizeof *m->meta_values);
        if (!m->meta_keys || !m->meta_values) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", file);
    }
    qf_json_iter it;
    qf_json_iter_begin(&it, j, tok);
    int k, v;
    while (qf_json_iter_member(&it, &k, &v)) {
        char *key = NULL, *val = NULL;
        size_t kl, vl;
        if (qf_json_get_string(j, k, &key, &kl, NULL)) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", file);
        if (qf_json_type_of(j, v) != QF_JSON_STRING) {
            char kn[SHOW_CAP];
            qf_set_err(err, QF_EFORMAT, "%s: __metadata__ value of '%s' is not a string", file, show(key, kn, sizeof kn));
            free(key);
            return QF_EFORMAT;
        }
        if (!keep) {
            free(key);
            continue;
        }
        if (qf_json_get_string(j, v, &val, &vl, NULL)) {
            free(key);
            return qf_set_err(err, QF_ENOMEM, "%s: out of memory", file);
        }
        for (uint64_t i = 0; i < m->n_meta; i++) {
            if (strcmp(m->meta_keys[i], key) == 0) {
                char kn[SHOW_CAP];
                qf_set_err(err, QF_EFORMAT, "%s: __metadata__ key '%s' appears twice", file, show(key, kn, sizeof kn));
                free(key);
                free(val);
                return QF_EFORMAT;
            }
        }
        m->meta_keys[m->n_meta] = key;
        m->meta_values[m->n_meta] = val;
        m->n_meta++;
    }
    return 0;
}

/* Parse the header of shard `si` (already mapped) and append its tensors. */
static int parse_shard(st_model *m, uint32_t si, tlist *out, qf_err *err) {
    st_shard *sh = &m->shards[si];
    const char *file = sh->path;
    qf_json j;
    memset(&j, 0, sizeof j);
    st_tensor t;
    memset(&t, 0, sizeof t);
    st_tensor **order = NULL;
    uint64_t first = out->n;
    int rc = 0, have_meta = 0;

    if (sh->size < 8) {
        rc = qf_set_err(err, QF_EFORMAT, "%s: file too small (%llu bytes) for the 8-byte header length", file,
                        (unsigned long long)sh->size);
        goto fail;
    }
    uint64_t hlen = rd_le64(sh->map);
    const char *kind = qf_sniff(sh->map, sh->size < 64 ? (size_t)sh->size : 64);
    if (hlen > sh->size - 8 && (!strcmp(kind, "text") || !strcmp(kind, "a GGUF file") || !strcmp(kind, "gzip data"))) {
        rc = qf_set_err(err, QF_EFORMAT, "%s: not a safetensors file (it looks like %s)", file, kind);
        goto fail;
    }
    if (hlen > ST_MAX_HEADER) {
        rc = qf_set_err(err, QF_EFORMAT, "%s: header length %llu exceeds the %u byte limit", file,
                        (unsigned long long)hlen, ST_MAX_HEADER);
        goto fail;
    }
    if (hlen > sh->size - 8) {
        rc = qf_set_err(err, QF_EFORMAT, "%s: header length %llu exceeds file size %llu", file,
                        (unsigned long long)hlen, (unsigned long long)sh->size);
        goto fail;
    }
    sh->data_start = 8 + hlen;
    char hname[300];
    snprintf(hname, sizeof hname, "%s: header", file);
    rc = qf_json_parse(&j, (const char *)sh->map + 8, (size_t)hlen, hname, err);
    if (rc) goto fail;
    if (qf_json_type_of(&j, 0) != QF_JSON_OBJECT) {
        rc = qf_set_err(err, QF_EFORMAT, "%s: header is not a json object", file);
        goto fail;
    }
    qf_json_iter it;
    qf_json_iter_begin(&it, &j, 0);
    int k, v;
    while (qf_json_iter_member(&it, &k, &v)) {
        if (qf_json_string_eq(&j, k, "__metadata__", 12)) {
            if (have_meta) {
                rc = qf_set_err(err, QF_EFORMAT, "%s: __metadata__ appears twice", file);
                goto fail;
            }
            have_meta = 1;
            rc = parse_metadata(m, &j, v, si == 0, file, err);
            if (rc) goto fail;
            continue;
        }
        memset(&t, 0, sizeof t);
        size_t nl;
        if (qf_json_get_string(&j, k, &t.name, &nl, NULL)) {
            rc = qf_set_err(err, QF_ENOMEM, "%s: out of memory", file);
            goto fail;
        }
        if (strlen(t.name) != nl) {
            char tn[SHOW_CAP];
            rc = qf_set_err(err, QF_EFORMAT, "%s: tensor name '%s' contains a NUL character", file, show(t.name, tn, sizeof tn));
            goto fail;
        }
        t.shard = si;
        char tn[SHOW_CAP];
        rc = parse_tensor(&j, v, &t, sh, show(t.name, tn, sizeof tn), err);
        if (rc) goto fail;
        if (tlist_push(out, &t)) {
            rc = qf_set_err(err, QF_ENOMEM, "%s: out of memory", file);
            goto fail;
        }
        t.name = NULL;
    }
    sh->n_tensors = out->n - first;

    /* no two tensors may share bytes: sort this shard's ranges by begin */
    if (sh->n_tensors > 1) {
        order = malloc(sizeof *order * sh->n_tensors);
        if (!order) {
            rc = qf_set_err(err, QF_ENOMEM, "%s: out of memory", file);
            goto fail;
        }
        for (uint64_t i = 0; i < sh->n_tensors; i++) order[i] = &out->v[first + i];
        /* duplicates first: a repeated entry would also "overlap" itself */
        qsort(order, sh->n_tensors, sizeof *order, cmp_tensor_ptr_name);
        for (uint64_t i = 1; i < sh->n_tensors; i++) {
            if (strcmp(order[i - 1]->name, order[i]->name) == 0) {
                char an[SHOW_CAP];
                rc = qf_set_err(err, QF_EFORMAT, "%s: duplicate tensor name '%s'", file, show(order[i]->name, an, sizeof an));
                goto fail;
            }
        }
        qsort(order, sh->n_tensors, sizeof *order, cmp_tensor_ptr_begin);
        for (uint64_t i = 1; i < sh->n_tensors; i++) {
            const st_tensor *a = order[i - 1], *b = order[i];
            if (b->file_offset < a->file_offset + a->nbytes) {
                char an[SHOW_CAP], bn[SHOW_CAP];
                rc = qf_set_err(err, QF_EFORMAT, "%s: tensors '%s' and '%s' overlap (data offsets [%llu,%llu) and [%llu,%llu))",
                                file, show(a->name, an, sizeof an), show(b->name, bn, sizeof bn), (unsigned long long)(a->file_offset - sh->data_start),
                                (unsigned long long)(a->file_offset - sh->data_start + a->nbytes),
                                (unsigned long long)(b->file_offset - sh->data_start),
                                (unsigned long long)(b->file_offset - sh->data_start + b->nbytes));
                goto fail;
            }
        }
    }
fail:
    free(order);
    free(t.name);
    qf_json_free(&j);
    return rc;
}

static void free_tensors(st_tensor *v, uint64_t n) {
    if (!v) return;
    for (uint64_t i = 0; i < n; i++) free(v[i].name);
    free(v);
}

/* Sort all tensors by name; report duplicates (within or across shards). */
static int finish_tensors(st_model *m, tlist *l, qf_err *err) {
    if (l->n > 1) qsort(l->v, l->n, sizeof *l->v, cmp_tensor_name); /* l->v is NULL when empty */
    for (uint64_t i = 1; i < l->n; i++) {
        const st_tensor *a = &l->v[i - 1], *b = &l->v[i];
        if (strcmp(a->name, b->name) != 0) continue;
        char an[SHOW_CAP];
        show(a->name, an, sizeof an);
        if (a->shard == b->shard)
            return qf_set_err(err, QF_EFORMAT, "%s: duplicate tensor name '%s'", m->shards[a->shard].path, an);
        return qf_set_err(err, QF_EFORMAT, "tensor '%s' appears in two shards: %s and %s", an,
                          m->shards[a->shard].path, m->shards[b->shard].path);
    }
    m->tensors = l->v;
    m->n_tensors = l->n;
    l->v = NULL;
    l->n = l->cap = 0;
    return 0;
}

void st_close(st_model *m) {
    if (!m) return;
    for (uint32_t i = 0; i < m->n_shards; i++) {
        st_shard *sh = &m->shards[i];
        if (sh->fd >= 0) {
            if (sh->map && sh->size) munmap((void *)sh->map, sh->size);
            close(sh->fd);
        }
        free(sh->path);
    }
    free(m->shards);
    free_tensors(m->tensors, m->n_tensors);
    for (uint64_t i = 0; i < m->n_meta; i++) {
        free(m->meta_keys[i]);
        free(m->meta_values[i]);
    }
    free(m->meta_keys);
    free(m->meta_values);
    memset(m, 0, sizeof *m);
}

int st_open_buffer(st_model *m, const void *buf, uint64_t size, const char *name, qf_err *err) {
    tlist l = {0};
    int rc = 0;
    memset(m, 0, sizeof *m);
    m->shards = calloc(1, sizeof *m->shards);
    if (!m->shards) return qf_set_err(err, QF_ENOMEM, "out of memory");
    m->n_shards = 1;
    m->shards[0].fd = -1; /* not ours to unmap */
    m->shards[0].path = strdup(name ? name : "buffer");
    m->shards[0].map = buf;
    m->shards[0].size = size;
    if (!m->shards[0].path) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory");
        goto fail;
    }
    rc = parse_shard(m, 0, &l, err);
    if (rc) goto fail;
    rc = finish_tensors(m, &l, err);
    if (rc) goto fail;
    return 0;
fail:
    free_tensors(l.v, l.n);
    st_close(m);
    return rc;
}

/* Map shard file `path` into m->shards[si]. */
static int map_shard(st_model *m, uint32_t si, const char *path, qf_err *err) {
    st_shard *sh = &m->shards[si];
    sh->fd = -1;
    sh->path = strdup(path);
    if (!sh->path) return qf_set_err(err, QF_ENOMEM, "out of memory");
    int fd = qf_open_input(path, err);
    if (fd < 0) return fd;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return qf_set_err(err, QF_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return qf_set_err(err, QF_EIO, "%s: not a regular file", path);
    }
    sh->fd = fd;
    sh->size = (uint64_t)sb.st_size;
    if (sh->size < 8)
        return qf_set_err(err, QF_EFORMAT, "%s: file too small (%llu bytes) for the 8-byte header length", path,
                          (unsigned long long)sh->size);
    void *p = mmap(NULL, (size_t)sh->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
        sh->size = 0;
        return qf_set_err(err, QF_EIO, "%s: mmap failed: %s", path, strerror(errno));
    }
    sh->map = p;
    return 0;
}

static int open_single(st_model *m, const char *path, qf_err *err) {
    tlist l = {0};
    int rc;
    m->shards = calloc(1, sizeof *m->shards);
    if (!m->shards) return qf_set_err(err, QF_ENOMEM, "out of memory");
    m->n_shards = 1;
    rc = map_shard(m, 0, path, err);
    if (rc) goto fail;
    rc = parse_shard(m, 0, &l, err);
    if (rc) goto fail;
    rc = finish_tensors(m, &l, err);
fail:
    free_tensors(l.v, l.n);
    return rc;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int bsearch_tensor(const st_tensor *v, uint64_t n, const char *name) {
    uint64_t lo = 0, hi = n;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(v[mid].name, name);
        if (c == 0) return (int)mid;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

/* A shard file name from an index: relative, no ".." component. */
static int safe_rel_name(const char *s) {
    if (!s[0] || s[0] == '/') return 0;
    for (const char *p = s; *p;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') return 0;
        p += n;
        if (*p == '/') p++;
    }
    return 1;
}

static int open_index(st_model *m, const char *index_path, qf_err *err) {
    qf_json j;
    tlist l = {0};
    char **files = NULL;     /* distinct shard file names, sorted */
    uint32_t n_files = 0;
    char **map_names = NULL; /* weight_map entries */
    uint32_t *map_file = NULL;
    uint32_t n_map = 0;
    uint8_t *listed = NULL;
    char *dir = NULL;
    char *path = NULL;
    int rc = qf_json_parse_file(&j, index_path, 0, err);
    if (rc) return rc;

    const char *slash = strrchr(index_path, '/');
    dir = slash ? strndup(index_path, (size_t)(slash - index_path + 1)) : strdup("");
    if (!dir) { rc = qf_set_err(err, QF_ENOMEM, "out of memory"); goto fail; }
    int wm = qf_json_find(&j, 0, "weight_map");
    if (qf_json_type_of(&j, 0) != QF_JSON_OBJECT || qf_json_type_of(&j, wm) != QF_JSON_OBJECT) {
        rc = qf_set_err(err, QF_EFORMAT, "%s: index has no \"weight_map\" object", index_path);
        goto fail;
    }
    uint32_t n = qf_json_size(&j, wm);
    files = calloc(n ? n : 1, sizeof *files);
    map_names = calloc(n ? n : 1, sizeof *map_names);
    map_file = calloc(n ? n : 1, sizeof *map_file);
    if (!files || !map_names || !map_file) { rc = qf_set_err(err, QF_ENOMEM, "out of memory"); goto fail; }
    qf_json_iter it;
    qf_json_iter_begin(&it, &j, wm);
    int k, v;
    char **vals = files; /* first collect every value, then dedupe */
    while (qf_json_iter_member(&it, &k, &v)) {
        size_t kl, vl;
        if (qf_json_type_of(&j, v) != QF_JSON_STRING) {
            rc = qf_set_err(err, QF_EFORMAT, "%s: weight_map value at line %u is not a string", index_path, qf_json_line(&j, v));
            goto fail;
        }
        if (qf_json_get_string(&j, k, &map_names[n_map], &kl, NULL) || qf_json_get_string(&j, v, &vals[n_map], &vl, NULL)) {
            n_map++;
            rc = qf_set_err(err, QF_ENOMEM, "out of memory");
            goto fail;
        }
        n_map++;
        if (strlen(vals[n_map - 1]) != vl || !safe_rel_name(vals[n_map - 1])) {
            char fn[SHOW_CAP];
            rc = qf_set_err(err, QF_EFORMAT, "%s: weight_map file name '%s' is not a relative path inside the model directory",
                            index_path, show(vals[n_map - 1], fn, sizeof fn));
            goto fail;
        }
    }
    if (n_map == 0) {
        rc = qf_set_err(err, QF_EFORMAT, "%s: weight_map is empty", index_path);
        goto fail;
    }
    /* value i belongs to entry i; sort a copy of the pointers to dedupe */
    char **sorted = malloc(sizeof *sorted * n_map);
    if (!sorted) { rc = qf_set_err(err, QF_ENOMEM, "out of memory"); goto fail; }
    memcpy(sorted, vals, sizeof *sorted * n_map);
    qsort(sorted, n_map, sizeof *sorted, cmp_str);
    char **uniq = malloc(sizeof *uniq * n_map);
    if (!uniq) { free(sorted); rc = qf_set_err(err, QF_ENOMEM, "out of memory"); goto fail; }
    for (uint32_t i = 0; i < n_map; i++)
        if (n_files == 0 || strcmp(uniq[n_files - 1], sorted[i]) != 0) uniq[n_files++] = sorted[i];
    free(sorted);
    /* map each entry to its file index; then keep only uniq names owned */
    for (uint32_t i = 0; i < n_map; i++) {
        uint32_t lo = 0, hi = n_files;
        while (lo < hi) {
            uint32_t mid = (lo + hi) / 2;
            int c = strcmp(uniq[mid], vals[i]);
            if (c == 0) { lo = mid; break; }
            if (c < 0) lo = mid + 1;
            else hi = mid;
        }
        map_file[i] = lo;
    }
    m->shards = calloc(n_files, sizeof *m->shards);
    if (!m->shards) { free(uniq); rc = qf_set_err(err, QF_ENOMEM, "out of memory"); goto fail; }
    m->n_shards = n_files;
    for (uint32_t s = 0; s < n_files; s++) m->shards[s].fd = -1;
    for (uint32_t s = 0; s < n_files; s++) {
        size_t pl = strlen(dir) + strlen(uniq[s]) + 1;
        free(path);
        path = malloc(pl);
        if (!path) { free(uniq); rc = qf_set_err(err, QF_ENOMEM, "out of memory"); goto fail; }
        snprintf(path, pl, "%s%s", dir, uniq[s]);
        rc = map_shard(m, s, path, err);
        if (rc == QF_ENOTFOUND) {
            qf_err_clear(err);
            rc = qf_set_err(err, QF_ENOTFOUND, "%s: shard '%s' listed in the index is missing", index_path, path);
        }
        if (rc) { free(uniq); goto fail; }
        rc = parse_shard(m, s, &l, err);
        if (rc) { free(uniq); goto fail; }
    }
    free(uniq);
    rc = finish_tensors(m, &l, err);
    if (rc) goto fail;

    /* every index entry is in its shard, every shard tensor is in the index */
    listed = calloc(m->n_tensors ? m->n_tensors : 1, 1);
    if (!listed) { rc = qf_set_err(err, QF_ENOMEM, "out of memory"); goto fail; }
    for (uint32_t i = 0; i < n_map; i++) {
        int ti = bsearch_tensor(m->tensors, m->n_tensors, map_names[i]);
        const char *want = m->shards[map_file[i]].path;
        char tn[SHOW_CAP];
        show(map_names[i], tn, sizeof tn);
        if (ti < 0) {
            rc = qf_set_err(err, QF_ENOTFOUND, "%s: tensor '%s' is listed in the index but missing from %s", index_path,
                            tn, want);
            goto fail;
        }
        if (m->tensors[ti].shard != map_file[i]) {
            rc = qf_set_err(err, QF_EFORMAT, "%s: index maps tensor '%s' to %s but it is in %s", index_path,
                            tn, want, m->shards[m->tensors[ti].shard].path);
            goto fail;
        }
        if (listed[ti]) {
            rc = qf_set_err(err, QF_EFORMAT, "%s: tensor '%s' is listed twice in the index", index_path, tn);
            goto fail;
        }
        listed[ti] = 1;
    }
    for (uint64_t i = 0; i < m->n_tensors; i++) {
        if (!listed[i]) {
            char tn[SHOW_CAP];
            rc = qf_set_err(err, QF_EFORMAT, "%s: tensor '%s' in %s is not listed in the index", index_path,
                            show(m->tensors[i].name, tn, sizeof tn), m->shards[m->tensors[i].shard].path);
            goto fail;
        }
    }
fail:
    for (uint32_t i = 0; i < n_map; i++) {
        free(map_names[i]);
        free(vals[i]);
    }
    free(map_names);
    free(files);
    free(map_file);
    free(listed);
    free(dir);
    free(path);
    free_tensors(l.v, l.n);
    qf_json_free(&j);
    return rc;
}

static int path_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Is name a PyTorch checkpoint file as Hugging Face repos ship them
 * (pytorch_model.bin, pytorch_model-00001-of-00002.bin and its index,
 * consolidated.00.pth, *.pt)? */
static int torch_checkpoint_name(const char *name) {
    return (!strncmp(name, "pytorch_model", 13) && (qf_ends_with(name, ".bin") || qf_ends_with(name, ".bin.index.json"))) ||
           qf_ends_with(name, ".pth") || qf_ends_with(name, ".pt");
}

/* Does the file start like torch.save output: a zip archive, or a pickle
 * (protocol 2 to 5)? */
static int torch_magic(const char *path) {
    unsigned char h[4] = {0};
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(h, 1, sizeof h, f) : 0;
    if (f) fclose(f);
    return (n == 4 && !memcmp(h, "PK\x03\x04", 4)) || (n >= 2 && h[0] == 0x80 && h[1] >= 2 && h[1] <= 5);
}

#define TORCH_ADVICE "qforge reads safetensors only (model.safetensors, or model-*.safetensors with " \
                     "model.safetensors.index.json): download the repo's safetensors files"

/* Pick the file to open inside a model directory. */
static int resolve_dir(const char *dir, char **out, qf_err *err) {
    static const char *const preferred[] = {"model.safetensors.index.json", "model.safetensors"};
    size_t dl = strlen(dir);
    *out = NULL;
    for (int i = 0; i < 2; i++) {
        char *p = malloc(dl + strlen(preferred[i]) + 2);
        if (!p) return qf_set_err(err, QF_ENOMEM, "out of memory");
        sprintf(p, "%s/%s", dir, preferred[i]);
        if (path_exists(p)) {
            *out = p;
            return 0;
        }
        free(p);
    }
    DIR *d = opendir(dir);
    if (!d) return qf_set_err(err, QF_EIO, "%s: cannot open directory: %s", dir, strerror(errno));
    char index[1024] = "", single[1024] = "", torch[1024] = "";
    int n_index = 0, n_single = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (torch_checkpoint_name(e->d_name) && (!torch[0] || strcmp(e->d_name, torch) < 0))
            snprintf(torch, sizeof torch, "%s", e->d_name);
        if (qf_ends_with(e->d_name, ".safetensors.index.json")) {
            n_index++;
            snprintf(index, sizeof index, "%s", e->d_name);
        } else if (qf_ends_with(e->d_name, ".safetensors")) {
            n_single++;
            snprintf(single, sizeof single, "%s", e->d_name);
        }
    }
    closedir(d);
    const char *pick = NULL;
    if (n_index == 1) pick = index;
    else if (n_index > 1)
        return qf_set_err(err, QF_EINVAL, "%s: %d *.safetensors.index.json files and no model.safetensors.index.json; open one explicitly",
                          dir, n_index);
    else if (n_single == 1) pick = single;
    else if (n_single > 1)
        return qf_set_err(err, QF_EINVAL, "%s: %d .safetensors files and no index; open one explicitly", dir, n_single);
    else if (torch[0])
        return qf_set_err(err, QF_EUNSUPPORTED, "%s: holds a PyTorch checkpoint (%s) and no safetensors; " TORCH_ADVICE, dir,
                          torch);
    else return qf_set_err(err, QF_ENOTFOUND, "%s: no .safetensors file or index in the directory", dir);
    char *p = malloc(dl + strlen(pick) + 2);
    if (!p) return qf_set_err(err, QF_ENOMEM, "out of memory");
    sprintf(p, "%s/%s", dir, pick);
    *out = p;
    return 0;
}

int st_open(st_model *m, const char *path, qf_err *err) {
    char *resolved = NULL;
    int rc;
    memset(m, 0, sizeof *m);
    struct stat sb;
    if (stat(path, &sb) != 0)
        return qf_set_err(err, errno == ENOENT ? QF_ENOTFOUND : QF_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        rc = resolve_dir(path, &resolved, err);
        if (rc) return rc;
        path = resolved;
    }
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if ((torch_checkpoint_name(base) || qf_ends_with(base, ".bin")) && torch_magic(path))
        rc = qf_set_err(err, QF_EUNSUPPORTED, "%s: a PyTorch checkpoint, not safetensors; " TORCH_ADVICE, path);
    else if (qf_ends_with(path, ".json")) rc = open_index(m, path, err);
    else rc = open_single(m, path, err);
    free(resolved);
    if (rc) st_close(m);
    return rc;
}

const st_tensor *st_find(const st_model *m, const char *name) {
    int i = bsearch_tensor(m->tensors, m->n_tensors, name);
    return i < 0 ? NULL : &m->tensors[i];
}

void st_release(const st_model *m, const st_tensor *t) {
    if (!m || !t || t->nbytes == 0 || t->shard >= m->n_shards) return;
    const st_shard *sh = &m->shards[t->shard];
    if (sh->fd < 0) return; /* a caller's buffer: not ours to drop */
    /* pages shared with neighbouring tensors are dropped too: harmless on a
     * read-only file mapping, they are faulted back in from the file */
    qf_release_range(NULL, 0, t->data, t->nbytes, 0);
}

/* ---------------- writer ---------------- */

typedef struct wtensor {
    char *name;
    st_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[ST_MAX_DIMS];
    uint64_t nbytes;
} wtensor;

struct st_writer {
    qf_err *err;
    char *path, *tmp_path;
    FILE *f;
    int rc;              /* first error, sticky */
    int state;           /* 0 adding, 1 data, 2 done */
    wtensor *t;
    uint64_t n, cap;
    char **meta_k, **meta_v;
    uint64_t n_meta, cap_meta;
    uint64_t data_total, data_written;
    char *hdr;           /* header being built */
    size_t hlen, hcap;
};

static int w_fail(st_writer *w, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int w_fail(st_writer *w, int code, const char *fmt, ...) {
    char msg[sizeof w->err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!w->rc) {
        w->rc = code;
        qf_set_err(w->err, code, "%s: %s", w->path, msg);
    }
    return w->rc;
}

st_writer *st_writer_create(const char *path, qf_err *err) {
    st_writer *w = calloc(1, sizeof *w);
    if (!w) {
        qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
        return NULL;
    }
    w->err = err;
    w->path = strdup(path);
    if (!w->path) goto oom;
    int fd = qf_tmpfile_create(path, &w->tmp_path, err); /* qf_tmpfile.h */
    if (fd < 0) {
        free(w->path);
        free(w);
        return NULL;
    }
    w->f = fdopen(fd, "wb");
    if (!w->f) {
        close(fd);
        unlink(w->tmp_path);
        qf_tmpfile_forget(w->tmp_path);
        goto oom;
    }
    setvbuf(w->f, NULL, _IOFBF, 1 << 20);
    return w;
oom:
    qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
    free(w->tmp_path);
    free(w->path);
    free(w);
    return NULL;
}

int st_writer_add_metadata(st_writer *w, const char *key, const char *value) {
    if (w->rc) return w->rc;
    if (w->state != 0) return w_fail(w, QF_EINVAL, "metadata added after the header was written");
    if (!qf_json_utf8_valid(key, strlen(key)) || !qf_json_utf8_valid(value, strlen(value)))
        return w_fail(w, QF_EINVAL, "metadata '%s' is not valid utf-8", key);
    for (uint64_t i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta_k[i], key) == 0) return w_fail(w, QF_EINVAL, "metadata key '%s' added twice", key);
    if (w->n_meta == w->cap_meta) {
        uint64_t cap = w->cap_meta ? 2 * w->cap_meta : 8;
        char **k = realloc(w->meta_k, sizeof *k * cap);
        if (!k) return w_fail(w, QF_ENOMEM, "out of memory");
        w->meta_k = k;
        char **v = realloc(w->meta_v, sizeof *v * cap);
        if (!v) return w_fail(w, QF_ENOMEM, "out of memory");
        w->meta_v = v;
        w->cap_meta = cap;
    }
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return w_fail(w, QF_ENOMEM, "out of memory");
    }
    w->meta_k[w->n_meta] = k;
    w->meta_v[w->n_meta] = v;
    w->n_meta++;
    return 0;
}

int st_writer_add_tensor(st_writer *w, const char *name, st_dtype dtype, uint32_t n_dims, const uint64_t *shape) {
    if (w->rc) return w->rc;
    if (w->state != 0) return w_fail(w, QF_EINVAL, "tensor '%s' added after the header was written", name);
    if ((unsigned)dtype >= ST_DTYPE_COUNT) return w_fail(w, QF_EINVAL, "tensor '%s': bad dtype %d", name, (int)dtype);
    if (n_dims > ST_MAX_DIMS) return w_fail(w, QF_EINVAL, "tensor '%s': %u dims (max %d)", name, n_dims, ST_MAX_DIMS);
    if (!qf_json_utf8_valid(name, strlen(name))) return w_fail(w, QF_EINVAL, "tensor name is not valid utf-8");
    if (strcmp(name, "__metadata__") == 0) return w_fail(w, QF_EINVAL, "'__metadata__' is not a tensor name");
    unsigned long long nb = st_dtype_size(dtype);
    for (uint32_t d = 0; d < n_dims; d++)
        if (qf_mul_u64(nb, shape[d], &nb)) return w_fail(w, QF_ERANGE, "tensor '%s': byte size overflows", name);
    if (w->n == w->cap) {
        uint64_t cap = w->cap ? 2 * w->cap : 64;
        wtensor *t = realloc(w->t, sizeof *t * cap);
        if (!t) return w_fail(w, QF_ENOMEM, "out of memory");
        w->t = t;
        w->cap = cap;
    }
    wtensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    if (!t->name) return w_fail(w, QF_ENOMEM, "out of memory");
    t->dtype = dtype;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < n_dims; d++) t->shape[d] = shape[d];
    t->nbytes = nb;
    w->n++;
    return 0;
}

static int h_put(st_writer *w, const char *s, size_t n) {
    if (w->hlen + n + 1 > w->hcap) {
        size_t cap = w->hcap ? w->hcap : 4096;
        while (cap < w->hlen + n + 1) cap *= 2;
        char *h = realloc(w->hdr, cap);
        if (!h) return -1;
        w->hdr = h;
        w->hcap = cap;
    }
    memcpy(w->hdr + w->hlen, s, n);
    w->hlen += n;
    return 0;
}

static int h_puts(st_writer *w, const char *s) {
    return h_put(w, s, strlen(s));
}

static int h_u64(st_writer *w, uint64_t v) {
    char b[24];
    int n = snprintf(b, sizeof b, "%llu", (unsigned long long)v);
    return h_put(w, b, (size_t)n);
}

/* A JSON string as serde_json writes it: escape '"', '\\' and control
 * characters (\b \f \n \r \t short forms, others \u00xx lowercase);
 * everything else, including non-ASCII UTF-8 and '/', verbatim. */
static int h_str(st_writer *w, const char *s) {
    static const char hex[] = "0123456789abcdef";
    if (h_put(w, "\"", 1)) return -1;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char e[7];
        size_t n = 2;
        e[0] = '\\';
        switch (c) {
        case '"': e[1] = '"'; break;
        case '\\': e[1] = '\\'; break;
        case '\b': e[1] = 'b'; break;
        case '\f': e[1] = 'f'; break;
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        default:
            if (c < 0x20) {
                memcpy(e + 1, "u00", 3);
                e[4] = hex[c >> 4];
                e[5] = hex[c & 15];
                n = 6;
            } else {
                e[0] = (char)c;
                n = 1;
            }
        }
        if (h_put(w, e, n)) return -1;
    }
    return h_put(w, "\"", 1);
}

static int cmp_wtensor(const void *a, const void *b) {
    return strcmp(((const wtensor *)a)->name, ((const wtensor *)b)->name);
}


int st_writer_begin_data(st_writer *w) {
    if (w->rc) return w->rc;
    if (w->state != 0) return w_fail(w, QF_EINVAL, "begin_data called twice");
    if (w->n > 1) qsort(w->t, w->n, sizeof *w->t, cmp_wtensor); /* w->t is NULL when empty */
    for (uint64_t i = 1; i < w->n; i++)
        if (strcmp(w->t[i - 1].name, w->t[i].name) == 0)
            return w_fail(w, QF_EINVAL, "tensor '%s' added twice", w->t[i].name);
    /* metadata keys sorted too, so the header is deterministic (insertion
     * sort: a handful of entries) */
    for (uint64_t i = 1; i < w->n_meta; i++) {
        char *k = w->meta_k[i], *v = w->meta_v[i];
        uint64_t j = i;
        for (; j > 0 && strcmp(w->meta_k[j - 1], k) > 0; j--) {
            w->meta_k[j] = w->meta_k[j - 1];
            w->meta_v[j] = w->meta_v[j - 1];
        }
        w->meta_k[j] = k;
        w->meta_v[j] = v;
    }

    int bad = h_puts(w, "{");
    int first = 1;
    if (w->n_meta) {
        bad |= h_puts(w, "\"__metadata__\":{");
        for (uint64_t i = 0; i < w->n_meta; i++) {
            if (i) bad |= h_puts(w, ",");
            bad |= h_str(w, w->meta_k[i]);
            bad |= h_puts(w, ":");
            bad |= h_str(w, w->meta_v[i]);
        }
        bad |= h_puts(w, "}");
        first = 0;
    }
    uint64_t off = 0;
    for (uint64_t i = 0; i < w->n; i++) {
        const wtensor *t = &w->t[i];
        if (!first) bad |= h_puts(w, ",");
        first = 0;
        bad |= h_str(w, t->name);
        bad |= h_puts(w, ":{\"dtype\":");
        bad |= h_str(w, st_dtype_name(t->dtype));
        bad |= h_puts(w, ",\"shape\":[");
        for (uint32_t d = 0; d < t->n_dims; d++) {
            if (d) bad |= h_puts(w, ",");
            bad |= h_u64(w, t->shape[d]);
        }
        bad |= h_puts(w, "],\"data_offsets\":[");
        bad |= h_u64(w, off);
        bad |= h_puts(w, ",");
        unsigned long long end;
        if (qf_add_u64(off, t->nbytes, &end)) return w_fail(w, QF_ERANGE, "total data size overflows");
        bad |= h_u64(w, end);
        bad |= h_puts(w, "]}");
        off = end;
    }
    bad |= h_puts(w, "}");
    while (!bad && w->hlen % 8) bad |= h_puts(w, " ");
    if (bad) return w_fail(w, QF_ENOMEM, "out of memory building the header");
    if (w->hlen > ST_MAX_HEADER) return w_fail(w, QF_ERANGE, "header of %zu bytes exceeds the limit", w->hlen);
    w->data_total = off;
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)((uint64_t)w->hlen >> (8 * i));
    if (fwrite(le, 1, 8, w->f) != 8 || fwrite(w->hdr, 1, w->hlen, w->f) != w->hlen)
        return w_fail(w, QF_EIO, "write failed: %s", strerror(errno));
    free(w->hdr);
    w->hdr = NULL;
    w->state = 1;
    return 0;
}

const char *st_writer_tensor_name(const st_writer *w, uint64_t i) {
    return (w && w->state >= 1 && i < w->n) ? w->t[i].name : NULL;
}

int st_writer_write(st_writer *w, const void *data, size_t nbytes) {
    if (w->rc) return w->rc;
    if (w->state != 1) return w_fail(w, QF_EINVAL, "data written before begin_data");
    if (nbytes > w->data_total - w->data_written)
        return w_fail(w, QF_EINVAL, "%llu bytes of tensor data written, more than the %llu the header declares",
                      (unsigned long long)(w->data_written + nbytes), (unsigned long long)w->data_total);
    if (nbytes && fwrite(data, 1, nbytes, w->f) != nbytes) return w_fail(w, QF_EIO, "write failed: %s", strerror(errno));
    w->data_written += nbytes;
    return 0;
}

static void writer_free(st_writer *w) {
    if (w->f) {
        fclose(w->f);
        w->f = NULL;
        unlink(w->tmp_path);
    }
    qf_tmpfile_forget(w->tmp_path);
    for (uint64_t i = 0; i < w->n; i++) free(w->t[i].name);
    for (uint64_t i = 0; i < w->n_meta; i++) {
        free(w->meta_k[i]);
        free(w->meta_v[i]);
    }
    free(w->t);
    free(w->meta_k);
    free(w->meta_v);
    free(w->hdr);
    free(w->path);
    free(w->tmp_path);
    free(w);
}

int st_writer_finish(st_writer *w) {
    int rc = w->rc;
    if (!rc && w->state == 0) rc = st_writer_begin_data(w); /* no tensors written yet is fine if there is no data */
    if (!rc && w->data_written != w->data_total)
        rc = w_fail(w, QF_EINVAL, "only %llu of %llu bytes of tensor data were written",
                    (unsigned long long)w->data_written, (unsigned long long)w->data_total);
    if (!rc) {
        FILE *f = w->f;
        w->f = NULL;
        int bad = fflush(f) != 0;
        bad = bad || fsync(fileno(f)) != 0;
        int e = errno;
        bad = (fclose(f) != 0) || bad;
        if (bad) {
            rc = w_fail(w, QF_EIO, "write failed: %s", strerror(e ? e : errno));
            unlink(w->tmp_path);
        } else if (rename(w->tmp_path, w->path) != 0) {
            rc = w_fail(w, QF_EIO, "cannot rename %s: %s", w->tmp_path, strerror(errno));
            unlink(w->tmp_path);
        }
    }
    writer_free(w);
    return rc;
}

void st_writer_abort(st_writer *w) {
    if (w) writer_free(w);
}
