/* gguf.c - GGUF v3 (and v2) reader with full validation, and a streaming writer.
 *
 * Spec facts (ggml docs/gguf.md, src/gguf.cpp; see docs/formats.md "GGUF"):
 * header "GGUF" u32 version u64 n_tensors u64 n_kv; n_kv x (string key, u32
 * type, value); n_tensors x (string name, u32 n_dims, u64 ne[n_dims], u32
 * ggml type, u64 offset); zero padding to general.alignment (default 32);
 * tensor data, each tensor at an aligned offset relative to the data section.
 *
 * The reader never trusts a count or a length: every one is checked against
 * the bytes that remain before anything is allocated for it, so opening a
 * file costs O(metadata) time and memory whatever the header claims. */
#define _GNU_SOURCE /* sync_file_range */
#include "gguf.h"
#include "qf_tmpfile.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "qf_io.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c assumes a little-endian host (GGUF files are little-endian)"
#endif

typedef unsigned long long ull; /* for printf */

/* ------------------------------------------------------------------ */
/* value types                                                          */

static const char *const vtype_names[GGUF_VT_COUNT] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool", "string", "array", "uint64", "int64", "float64",
};
static const uint8_t vtype_sizes[GGUF_VT_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *gguf_vtype_name(uint32_t t) { return t < GGUF_VT_COUNT ? vtype_names[t] : "unknown"; }
size_t gguf_vtype_size(uint32_t t) { return t < GGUF_VT_COUNT ? vtype_sizes[t] : 0; }

/* Smallest encoding of one array element of type t (string: its u64 length;
 * array: u32 elem type + u64 count). Bounds counts before any allocation. */
static uint64_t vtype_min_size(uint32_t t) {
    if (t == GGUF_VT_STRING) return 8;
    if (t == GGUF_VT_ARRAY) return 12;
    return vtype_sizes[t];
}

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    while (*s) h = (h ^ (uint8_t)*s++) * 1099511628211ull;
    return h;
}

/* Escape a name for a one-line message: printable ASCII kept, the rest as
 * \xNN, long names cut with "...". */
static const char *show(char *buf, size_t cap, const char *s, uint64_t len) {
    size_t o = 0;
    for (uint64_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (o + 8 >= cap) { memcpy(buf + o, "...", 4); return buf; }
        if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') buf[o++] = (char)c;
        else o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
    }
    buf[o] = 0;
    return buf;
}

/* ------------------------------------------------------------------ */
/* reader internals: arena + name hash tables                           */

typedef struct arena_block {
    struct arena_block *next;
    size_t cap, used;
    max_align_t data[];
} arena_block;

typedef struct name_index {
    uint64_t cap;    /* power of two */
    uint64_t *slot;  /* index + 1, 0 = empty */
} name_index;

typedef struct gguf_internal {
    arena_block *blocks;
    int owns_map;
    int owns_buf;    /* f->map is malloc'd (gguf_writer_to_header) */
    int header_only; /* no data section: tensors' data stay NULL */
    name_index kv_index, tensor_index;
    uint64_t kv_cap, tensor_cap;
} gguf_internal;

#define ARENA_CHUNK (64u * 1024)

static void *arena_alloc(gguf_internal *in, uint64_t n) {
    if (n > SIZE_MAX / 2) return NULL;
    n = (n + 15) & ~(uint64_t)15;
    arena_block *b = in->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > ARENA_CHUNK ? (size_t)n : ARENA_CHUNK;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->cap = cap;
        b->used = 0;
        b->next = in->blocks;
        in->blocks = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += (size_t)n;
    return p;
}

static int index_grow(name_index *ix, const char *(*name_of)(const void *, uint64_t), const void *ctx, uint64_t n) {
    uint64_t cap = ix->cap ? ix->cap * 2 : 64;
    uint64_t *slot = calloc(cap, sizeof *slot);
    if (!slot) return -1;
    for (uint64_t i = 0; i < ix->cap; i++) {
        if (!ix->slot[i]) continue;
        uint64_t h = hash_str(name_of(ctx, ix->slot[i] - 1)) & (cap - 1);
        while (slot[h]) h = (h + 1) & (cap - 1);
        slot[h] = ix->slot[i];
    }
    free(ix->slot);
    ix->slot = slot;
    ix->cap = cap;
    (void)n;
    return 0;
}

/* Find name; returns its index or -1. */
static int64_t index_find(const name_index *ix, const char *(*name_of)(const void *, uint64_t), const void *ctx, const char *name) {
    if (!ix->cap) return -1;
    uint64_t h = hash_str(name) & (ix->cap - 1);
    while (ix->slot[h]) {
        if (strcmp(name_of(ctx, ix->slot[h] - 1), name) == 0) return (int64_t)(ix->slot[h] - 1);
        h = (h + 1) & (ix->cap - 1);
    }
    return -1;
}

/* Insert index i (whose name is name_of(i)); n = entries already present. */
static int index_insert(name_index *ix, const char *(*name_of)(const void *, uint64_t), const void *ctx, uint64_t i, uint64_t n) {
    if ((n + 1) * 2 > ix->cap && index_grow(ix, name_of, ctx, n) != 0) return -1;
    uint64_t h = hash_str(name_of(ctx, i)) & (ix->cap - 1);
    while (ix->slot[h]) h = (h + 1) & (ix->cap - 1);
    ix->slot[h] = i + 1;
    return 0;
}

static const char *kv_name_of(const void *f, uint64_t i) { return ((const gguf_file *)f)->kv[i].key; }
static const char *tensor_name_of(const void *f, uint64_t i) { return ((const gguf_file *)f)->tensors[i].name; }

/* ------------------------------------------------------------------ */
/* cursor                                                               */

typedef struct rd {
    const uint8_t *p;
    uint64_t size, pos;
    const char *name;
    qf_err *err;
    gguf_internal *in;
    const char *what; /* context for messages: "kv 'x'" / "tensor 3" */
} rd;

static int rd_need(rd *r, uint64_t n, const char *field) {
    if (n > r->size - r->pos)
        return qf_set_err(r->err, QF_EFORMAT,
                          "%s: truncated file: %s%s%s needs %llu bytes at offset %llu but file size is %llu",
                          r->name, r->what ? r->what : "", r->what ? ": " : "", field, (ull)n, (ull)r->pos,
                          (ull)r->size);
    return 0;
}

static uint32_t ld_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t ld_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static int rd_u32(rd *r, uint32_t *v, const char *field) {
    int rc = rd_need(r, 4, field);
    if (rc) return rc;
    *v = ld_u32(r->p + r->pos);
    r->pos += 4;
    return 0;
}
static int rd_u64(rd *r, uint64_t *v, const char *field) {
    int rc = rd_need(r, 8, field);
    if (rc) return rc;
    *v = ld_u64(r->p + r->pos);
    r->pos += 8;
    return 0;
}

/* A string: u64 length + bytes; *s points into the buffer. */
static int rd_str(rd *r, gguf_str *s, const char *field) {
    uint64_t len;
    int rc = rd_u64(r, &len, field);
    if (rc) return rc;
    if (len > r->size - r->pos)
        return qf_set_err(r->err, QF_EFORMAT,
                          "%s: %s%s%s length %llu at offset %llu exceeds file size %llu", r->name,
                          r->what ? r->what : "", r->what ? ": " : "", field, (ull)len, (ull)(r->pos - 8),
                          (ull)r->size);
    s->len = len;
    s->data = (const char *)r->p + r->pos;
    r->pos += len;
    return 0;
}

/* Read a value of `type` (already read). With build == 0 only validates and
 * advances; with build == 1 fills *out, allocating arrays from the arena (only
 * ever called on data that a build == 0 pass has already validated, so every
 * allocation is bounded by bytes actually present in the file). */
static int rd_value(rd *r, uint32_t type, int depth, gguf_value *out, int build) {
    int rc;
    if (type >= GGUF_VT_COUNT)
        return qf_set_err(r->err, QF_EFORMAT, "%s: %s: invalid value type %u at offset %llu", r->name, r->what,
                          type, (ull)(r->pos - 4));
    if (build) out->type = type;
    if (type == GGUF_VT_STRING) {
        gguf_str s;
        if ((rc = rd_str(r, &s, "string"))) return rc;
        if (build) out->str = s;
        return 0;
    }
    if (type != GGUF_VT_ARRAY) {
        size_t sz = vtype_sizes[type];
        if ((rc = rd_need(r, sz, vtype_names[type]))) return rc;
        if (build) memcpy(&out->u64, r->p + r->pos, sz); /* union: all scalars start at offset 0 */
        r->pos += sz;
        return 0;
    }
    /* array */
    uint32_t et;
    uint64_t n;
    uint64_t arr_pos = r->pos;
    if ((rc = rd_u32(r, &et, "array element type"))) return rc;
    if (et >= GGUF_VT_COUNT)
        return qf_set_err(r->err, QF_EFORMAT, "%s: %s: invalid array element type %u at offset %llu", r->name,
                          r->what, et, (ull)arr_pos);
    if ((rc = rd_u64(r, &n, "array count"))) return rc;
    if (et == GGUF_VT_ARRAY && depth + 1 >= GGUF_MAX_ARRAY_DEPTH)
        return qf_set_err(r->err, QF_EFORMAT, "%s: %s: arrays nested deeper than %d levels", r->name, r->what,
                          GGUF_MAX_ARRAY_DEPTH);
    uint64_t min = vtype_min_size(et), remain = r->size - r->pos;
    if (n > remain / min)
        return qf_set_err(r->err, QF_EFORMAT,
                          "%s: %s: array of %llu %s elements at offset %llu needs at least %llu bytes per element "
                          "but only %llu bytes remain in file",
                          r->name, r->what, (ull)n, vtype_names[et], (ull)arr_pos, (ull)min, (ull)remain);
    if (build) {
        out->arr.elem_type = et;
        out->arr.n = n;
        out->arr.data = NULL;
    }
    if (et != GGUF_VT_STRING && et != GGUF_VT_ARRAY) {
        uint64_t bytes = n * min; /* cannot overflow: n <= remain / min */
        if (build && n) {
            void *d = arena_alloc(r->in, bytes);
            if (!d) return qf_set_err(r->err, QF_ENOMEM, "%s: out of memory for %s", r->name, r->what);
            memcpy(d, r->p + r->pos, bytes);
            out->arr.data = d;
        }
        r->pos += bytes;
        return 0;
    }
    if (et == GGUF_VT_STRING) {
        gguf_str *strs = NULL;
        if (build && n) {
            strs = arena_alloc(r->in, n * sizeof *strs);
            if (!strs) return qf_set_err(r->err, QF_ENOMEM, "%s: out of memory for %s", r->name, r->what);
            out->arr.data = strs;
        }
        for (uint64_t i = 0; i < n; i++) {
            gguf_str s;
            if ((rc = rd_str(r, &s, "array string"))) return rc;
            if (strs) strs[i] = s;
        }
        return 0;
    }
    gguf_value *vals = NULL;
    if (build && n) {
        vals = arena_alloc(r->in, n * sizeof *vals);
        if (!vals) return qf_set_err(r->err, QF_ENOMEM, "%s: out of memory for %s", r->name, r->what);
        out->arr.data = vals;
    }
    for (uint64_t i = 0; i < n; i++)
        if ((rc = rd_value(r, GGUF_VT_ARRAY, depth + 1, vals ? &vals[i] : NULL, build))) return rc;
    return 0;
}

/* Copy a name into the arena as a C string; names with NUL bytes are rejected
 * because every consumer treats names as C strings. */
static int name_copy(rd *r, gguf_str s, char **out, const char *kind, uint64_t i) {
    if (memchr(s.data, 0, s.len))
        return qf_set_err(r->err, QF_EFORMAT, "%s: %s %llu contains a nul byte", r->name, kind, (ull)i);
    char *c = arena_alloc(r->in, s.len + 1);
    if (!c) return qf_set_err(r->err, QF_ENOMEM, "%s: out of memory", r->name);
    memcpy(c, s.data, s.len);
    c[s.len] = 0;
    *out = c;
    return 0;
}

static int grow(void **arr, uint64_t *cap, uint64_t need, size_t elem) {
    if (need <= *cap) return 0;
    uint64_t nc = *cap ? *cap * 2 : 16;
    while (nc < need) nc *= 2;
    void *p = realloc(*arr, nc * elem);
    if (!p) return -1;
    *arr = p;
    *cap = nc;
    return 0;
}

typedef struct span { uint64_t begin, end, idx; } span;
static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

#define MIN_KV_BYTES 14     /* u64 key len + 1 key byte + u32 type + 1 value byte */
#define MIN_TENSOR_BYTES 33 /* u64 name len + 1 name byte + u32 n_dims + u64 ne + u32 type + u64 offset */

static int parse(gguf_file *f, qf_err *err) {
    gguf_internal *in = f->arena;
    rd r = {.p = f->map, .size = f->map_size, .pos = 0, .name = f->path, .err = err, .in = in, .what = NULL};
    const char *nm = f->path;
    char sb[256];
    int rc;

    if (r.size < 4)
        return qf_set_err(err, QF_EFORMAT, "%s: truncated header: file size %llu is smaller than the 24-byte gguf header",
                          nm, (ull)r.size);
    uint32_t magic = ld_u32(r.p);
    /* torch.save output: a zip archive, or a pickle of protocol 2 to 5 */
    int torch = !memcmp(r.p, "PK\x03\x04", 4) || (r.p[0] == 0x80 && r.p[1] >= 2 && r.p[1] <= 5);
    if (magic != GGUF_MAGIC)
        return qf_set_err(err, QF_EFORMAT, "%s: bad magic '%s' (expected 'GGUF'): not a gguf file%s", nm,
                          show(sb, sizeof sb, (const char *)r.p, 4),
                          torch ? " (it looks like a PyTorch checkpoint: give a GGUF file or a safetensors checkpoint "
                                  "directory)" : "");
    if (r.size < 24)
        return qf_set_err(err, QF_EFORMAT, "%s: truncated header: file size %llu is smaller than the 24-byte gguf header",
                          nm, (ull)r.size);
    f->version = ld_u32(r.p + 4);
    if (f->version != 2 && f->version != 3) {
        if ((f->version & 0xffff) == 0 && f->version)
            return qf_set_err(err, QF_EUNSUPPORTED,
                              "%s: gguf version field 0x%08x looks byte-swapped: big-endian gguf is not supported", nm,
                              f->version);
        return qf_set_err(err, QF_EUNSUPPORTED, "%s: unsupported gguf version %u (supported: 2 and 3)", nm, f->version);
    }
    f->n_tensors = ld_u64(r.p + 8);
    f->n_kv = ld_u64(r.p + 16);
    r.pos = 24;
    uint64_t remain = r.size - r.pos;
    if (f->n_kv > remain / MIN_KV_BYTES)
        return qf_set_err(err, QF_EFORMAT, "%s: kv count %llu is impossible: the %llu bytes after the header hold at most %llu",
                          nm, (ull)f->n_kv, (ull)remain, (ull)(remain / MIN_KV_BYTES));
    if (f->n_tensors > remain / MIN_TENSOR_BYTES)
        return qf_set_err(err, QF_EFORMAT,
                          "%s: tensor count %llu is impossible: the %llu bytes after the header hold at most %llu", nm,
                          (ull)f->n_tensors, (ull)remain, (ull)(remain / MIN_TENSOR_BYTES));
    if (f->n_tensors * MIN_TENSOR_BYTES > remain - f->n_kv * MIN_KV_BYTES) /* both terms <= remain */
        return qf_set_err(err, QF_EFORMAT, "%s: kv count %llu and tensor count %llu cannot fit in the %llu bytes after the header",
                          nm, (ull)f->n_kv, (ull)f->n_tensors, (ull)remain);

    /* key-value pairs */
    uint64_t n_kv = f->n_kv;
    f->n_kv = 0; /* counts entries filled so far (gguf_close stays safe) */
    for (uint64_t i = 0; i < n_kv; i++) {
        char what[300];
        snprintf(what, sizeof what, "kv %llu", (ull)i);
        r.what = what;
        gguf_str key;
        if ((rc = rd_str(&r, &key, "key"))) return rc;
        if (key.len == 0) return qf_set_err(err, QF_EFORMAT, "%s: kv %llu has an empty key", nm, (ull)i);
        if (grow((void **)&f->kv, &in->kv_cap, i + 1, sizeof *f->kv))
            return qf_set_err(err, QF_ENOMEM, "%s: out of memory", nm);
        gguf_kv *kv = &f->kv[i];
        memset(kv, 0, sizeof *kv);
        if ((rc = name_copy(&r, key, &kv->key, "key of kv", i))) return rc;
        snprintf(what, sizeof what, "kv '%s'", show(sb, sizeof sb, key.data, key.len));
        if (index_find(&in->kv_index, kv_name_of, f, kv->key) >= 0)
            return qf_set_err(err, QF_EFORMAT, "%s: duplicate key '%s'", nm, sb);
        uint32_t type;
        if ((rc = rd_u32(&r, &type, "value type"))) return rc;
        uint64_t vpos = r.pos;
        if ((rc = rd_value(&r, type, 0, NULL, 0))) return rc;
        r.pos = vpos;
        if ((rc = rd_value(&r, type, 0, &kv->value, 1))) return rc;
        f->n_kv = i + 1;
        if (index_insert(&in->kv_index, kv_name_of, f, i, i))
            return qf_set_err(err, QF_ENOMEM, "%s: out of memory", nm);
        if (strcmp(kv->key, "general.alignment") == 0) {
            if (type != GGUF_VT_UINT32)
                return qf_set_err(err, QF_EFORMAT, "%s: general.alignment has type %s; it must be uint32", nm,
                                  gguf_vtype_name(type));
            uint32_t a = kv->value.u32;
            if (a == 0 || (a & (a - 1)))
                return qf_set_err(err, QF_EFORMAT, "%s: general.alignment %u is not a nonzero power of two", nm, a);
            /* the spec asks for a multiple of 8; less would misalign f32/f64 data */
            if (a < 8) return qf_set_err(err, QF_EFORMAT, "%s: general.alignment %u is not a multiple of 8", nm, a);
            f->alignment = a;
        }
    }
    r.what = NULL;

    /* tensor infos */
    uint64_t n_tensors = f->n_tensors;
    f->n_tensors = 0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        char what[64];
        snprintf(what, sizeof what, "tensor %llu", (ull)i);
        r.what = what;
        gguf_str name;
        if ((rc = rd_str(&r, &name, "name"))) return rc;
        if (name.len == 0) return qf_set_err(err, QF_EFORMAT, "%s: tensor %llu has an empty name", nm, (ull)i);
        show(sb, sizeof sb, name.data, name.len);
        if (name.len >= GGUF_MAX_NAME)
            return qf_set_err(err, QF_EFORMAT, "%s: tensor %llu name '%s' is %llu bytes long; names must be shorter than %d",
                              nm, (ull)i, sb, (ull)name.len, GGUF_MAX_NAME);
        if (grow((void **)&f->tensors, &in->tensor_cap, i + 1, sizeof *f->tensors))
            return qf_set_err(err, QF_ENOMEM, "%s: out of memory", nm);
        gguf_tensor_info *t = &f->tensors[i];
        memset(t, 0, sizeof *t);
        if ((rc = name_copy(&r, name, &t->name, "name of tensor", i))) return rc;
        if (index_find(&in->tensor_index, tensor_name_of, f, t->name) >= 0)
            return qf_set_err(err, QF_EFORMAT, "%s: duplicate tensor name '%s'", nm, sb);
        f->n_tensors = i + 1;
        if (index_insert(&in->tensor_index, tensor_name_of, f, i, i))
            return qf_set_err(err, QF_ENOMEM, "%s: out of memory", nm);
        if ((rc = rd_u32(&r, &t->n_dims, "n_dims"))) return rc;
        if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
            return qf_set_err(err, QF_EFORMAT, "%s: tensor '%s' has %u dimensions; must be 1..%d", nm, sb, t->n_dims,
                              GGUF_MAX_DIMS);
        uint64_t nel = 1;
        for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
            t->ne[d] = 1;
            if (d >= t->n_dims) continue;
            if ((rc = rd_u64(&r, &t->ne[d], "dimension"))) return rc;
            if (t->ne[d] == 0)
                return qf_set_err(err, QF_EFORMAT, "%s: tensor '%s' dimension ne[%u] is 0", nm, sb, d);
            if (t->ne[d] > (uint64_t)INT64_MAX)
                return qf_set_err(err, QF_EFORMAT, "%s: tensor '%s' dimension ne[%u] = %llu is negative as int64", nm,
                                  sb, d, (ull)t->ne[d]);
            if (__builtin_mul_overflow(nel, t->ne[d], &nel) || nel > (uint64_t)INT64_MAX)
                return qf_set_err(err, QF_EFORMAT, "%s: tensor '%s' element count overflows int64", nm, sb);
        }
        t->n_elements = nel;
        if ((rc = rd_u32(&r, &t->type, "type"))) return rc;
        const ggml_type_traits *tt = ggml_get_type_traits(t->type);
        if (!tt) return qf_set_err(err, QF_EFORMAT, "%s: tensor '%s' has unknown ggml type %u", nm, sb, t->type);
        if (t->ne[0] % tt->block_size)
            return qf_set_err(err, QF_EFORMAT,
                              "%s: tensor '%s' row length ne[0] = %llu is not a multiple of the %s block size %u", nm, sb,
                              (ull)t->ne[0], tt->name, tt->block_size);
        uint64_t nb;
        if (ggml_row_size(t->type, t->ne[0], &nb) || __builtin_mul_overflow(nb, nel / t->ne[0], &nb) ||
            nb > (uint64_t)INT64_MAX)
            return qf_set_err(err, QF_EFORMAT, "%s: tensor '%s' byte size overflows", nm, sb);
        t->nbytes = nb;
        if ((rc = rd_u64(&r, &t->offset, "offset"))) return rc;
    }
    r.what = NULL;

    /* data section */
    uint64_t a = f->alignment;
    uint64_t header_end = r.pos;
    if (__builtin_add_overflow(header_end, (a - header_end % a) % a, &f->data_offset))
        return qf_set_err(err, QF_EFORMAT, "%s: data offset overflows", nm);
    if (f->n_tensors == 0 || in->header_only) return 0;
    if (f->data_offset > r.size)
        return qf_set_err(err, QF_EFORMAT, "%s: data section starts at %llu, past the end of the file (size %llu)", nm,
                          (ull)f->data_offset, (ull)r.size);
    span *sp = malloc(f->n_tensors * sizeof *sp);
    if (!sp) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", nm);
    rc = 0;
    for (uint64_t i = 0; i < f->n_tensors && !rc; i++) {
        gguf_tensor_info *t = &f->tensors[i];
        show(sb, sizeof sb, t->name, strlen(t->name));
        uint64_t b, e;
        if (t->offset % a)
            rc = qf_set_err(err, QF_EFORMAT, "%s: tensor '%s' offset %llu is not a multiple of the alignment %llu", nm,
                            sb, (ull)t->offset, (ull)a);
        else if (__builtin_add_overflow(f->data_offset, t->offset, &b) || __builtin_add_overflow(b, t->nbytes, &e))
            rc = qf_set_err(err, QF_EFORMAT, "%s: tensor '%s' offset %llu overflows", nm, sb, (ull)t->offset);
        else if (e > r.size)
            rc = qf_set_err(err, QF_EFORMAT, "%s: tensor '%s' data [%llu, %llu) exceeds file size %llu", nm, sb, (ull)b,
                            (ull)e, (ull)r.size);
        else {
            t->data = f->map + b;
            sp[i] = (span){b, e, i};
        }
    }
    if (!rc) {
        qsort(sp, f->n_tensors, sizeof *sp, span_cmp);
        for (uint64_t i = 1; i < f->n_tensors; i++) {
            if (sp[i].begin >= sp[i - 1].end) continue;
            char sb2[256];
            rc = qf_set_err(err, QF_EFORMAT, "%s: tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) overlap", nm,
                            show(sb, sizeof sb, f->tensors[sp[i - 1].idx].name, strlen(f->tensors[sp[i - 1].idx].name)),
                            (ull)sp[i - 1].begin, (ull)sp[i - 1].end,
                            show(sb2, sizeof sb2, f->tensors[sp[i].idx].name, strlen(f->tensors[sp[i].idx].name)),
                            (ull)sp[i].begin, (ull)sp[i].end);
            break;
        }
    }
    free(sp);
    return rc;
}

static int open_common(gguf_file *f, qf_err *err) {
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    int rc = parse(f, err);
    if (rc) gguf_close(f);
    return rc;
}

static int init_file(gguf_file *f, const char *name, qf_err *err) {
    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->path = strdup(name ? name : "<buffer>");
    f->arena = calloc(1, sizeof(gguf_internal));
    if (!f->path || !f->arena) {
        gguf_close(f);
        return qf_set_err(err, QF_ENOMEM, "%s: out of memory", name ? name : "<buffer>");
    }
    return 0;
}

int gguf_open(gguf_file *f, const char *path, qf_err *err) {
    int rc = init_file(f, path, err);
    if (rc) return rc;
    struct stat st;
    f->fd = qf_open_input(path, err);
    if (f->fd < 0) {
        rc = f->fd;
        goto fail;
    }
    if (fstat(f->fd, &st) != 0) {
        rc = qf_set_err(err, QF_EIO, "%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = qf_set_err(err, QF_EINVAL, "%s: not a regular file", path);
        goto fail;
    }
    f->map_size = (uint64_t)st.st_size;
    if (f->map_size > 0) {
        void *m = mmap(NULL, (size_t)f->map_size, PROT_READ, MAP_PRIVATE, f->fd, 0);
        if (m == MAP_FAILED) {
            rc = qf_set_err(err, QF_EIO, "%s: cannot mmap %llu bytes: %s", path, (ull)f->map_size, strerror(errno));
            goto fail;
        }
        f->map = m;
        ((gguf_internal *)f->arena)->owns_map = 1;
    } else {
        f->map = (const uint8_t *)"";
    }
    return open_common(f, err);
fail:
    gguf_close(f);
    return rc;
}

int gguf_open_buffer(gguf_file *f, const void *buf, uint64_t size, const char *name, qf_err *err) {
    int rc = init_file(f, name, err);
    if (rc) return rc;
    f->map = buf ? buf : (const void *)"";
    f->map_size = buf ? size : 0;
    return open_common(f, err);
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    gguf_internal *in = f->arena;
    if (in) {
        if (in->owns_map && f->map) munmap((void *)f->map, (size_t)f->map_size);
        if (in->owns_buf) free((void *)f->map);
        for (arena_block *b = in->blocks, *nx; b; b = nx) {
            nx = b->next;
            free(b);
        }
        free(in->kv_index.slot);
        free(in->tensor_index.slot);
        free(in);
    }
    if (f->fd >= 0) close(f->fd);
    free(f->kv);
    free(f->tensors);
    free(f->path);
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

/* ------------------------------------------------------------------ */
/* lookups and typed getters                                            */

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key) {
    if (!f || !f->arena || !key) return NULL;
    int64_t i = index_find(&((gguf_internal *)f->arena)->kv_index, kv_name_of, f, key);
    return i < 0 ? NULL : &f->kv[i];
}

int64_t gguf_find_tensor_index(const gguf_file *f, const char *name) {
    if (!f || !f->arena || !name) return -1;
    return index_find(&((gguf_internal *)f->arena)->tensor_index, tensor_name_of, f, name);
}

const gguf_tensor_info *gguf_find_tensor(const gguf_file *f, const char *name) {
    int64_t i = gguf_find_tensor_index(f, name);
    return i < 0 ? NULL : &f->tensors[i];
}

/* Integer value widened: *neg = 1 means the value is s < 0. */
static int value_int(const gguf_value *v, uint64_t *u, int64_t *s, int *neg) {
    *neg = 0;
    switch (v->type) {
    case GGUF_VT_UINT8: *u = v->u8; break;
    case GGUF_VT_UINT16: *u = v->u16; break;
    case GGUF_VT_UINT32: *u = v->u32; break;
    case GGUF_VT_UINT64: *u = v->u64; break;
    case GGUF_VT_INT8: *s = v->i8; goto sgn;
    case GGUF_VT_INT16: *s = v->i16; goto sgn;
    case GGUF_VT_INT32: *s = v->i32; goto sgn;
    case GGUF_VT_INT64: *s = v->i64; goto sgn;
    default: return QF_EFORMAT;
    }
    *s = *u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)*u;
    return 0;
sgn:
    *neg = *s < 0;
    *u = *neg ? 0 : (uint64_t)*s;
    return 0;
}

/* The integer value of key as value_int gives it; QF_ENOTFOUND, or QF_EFORMAT if not an integer. */
static int get_int(const gguf_file *f, const char *key, uint64_t *u, int64_t *s, int *neg) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return QF_ENOTFOUND;
    return value_int(&kv->value, u, s, neg);
}

int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out) {
    uint64_t u;
    int64_t s;
    int neg;
    int rc = get_int(f, key, &u, &s, &neg);
    if (rc) return rc;
    if (neg) return QF_EFORMAT;
    *out = u;
    return 0;
}

int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out) {
    uint64_t u;
    int rc = gguf_get_u64(f, key, &u);
    if (rc) return rc;
    if (u > UINT32_MAX) return QF_EFORMAT;
    *out = (uint32_t)u;
    return 0;
}

int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out) {
    uint64_t u;
    int64_t s;
    int neg;
    int rc = get_int(f, key, &u, &s, &neg);
    if (rc) return rc;
    if (!neg && u > (uint64_t)INT64_MAX) return QF_EFORMAT;
    *out = s;
    return 0;
}

int gguf_get_f32(const gguf_file *f, const char *key, float *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return QF_ENOTFOUND;
    if (kv->value.type == GGUF_VT_FLOAT32) *out = kv->value.f32;
    else if (kv->value.type == GGUF_VT_FLOAT64) *out = (float)kv->value.f64;
    else return QF_EFORMAT;
    return 0;
}

int gguf_get_bool(const gguf_file *f, const char *key, int *out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return QF_ENOTFOUND;
    if (kv->value.type != GGUF_VT_BOOL) return QF_EFORMAT;
    *out = kv->value.b != 0;
    return 0;
}

int gguf_get_str(const gguf_file *f, const char *key, char **out) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return QF_ENOTFOUND;
    if (kv->value.type != GGUF_VT_STRING) return QF_EFORMAT;
    char *s = malloc(kv->value.str.len + 1);
    if (!s) return QF_ENOMEM;
    memcpy(s, kv->value.str.data, kv->value.str.len);
    s[kv->value.str.len] = 0;
    *out = s;
    return 0;
}

int gguf_get_arr(const gguf_file *f, const char *key, uint32_t elem_type, uint64_t *n, const void **data) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return QF_ENOTFOUND;
    if (kv->value.type != GGUF_VT_ARRAY || kv->value.arr.elem_type != elem_type) return QF_EFORMAT;
    *n = kv->value.arr.n;
    *data = kv->value.arr.data;
    return 0;
}

/* ------------------------------------------------------------------ */
/* writer                                                               */

typedef struct bytes { uint8_t *p; size_t n, cap; } bytes;

static int bytes_put(bytes *b, const void *src, size_t n) {
    if (n > SIZE_MAX - b->n) return -1;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n) {
            if (cap > SIZE_MAX / 2) return -1;
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
    return 0;
}
static int bytes_u32(bytes *b, uint32_t v) { return bytes_put(b, &v, 4); }
static int bytes_u64(bytes *b, uint64_t v) { return bytes_put(b, &v, 8); }

typedef struct wkv {
    char *key;
    bytes enc; /* u32 type + value, as it goes into the file */
} wkv;

typedef struct wtensor {
    char *name;
    uint32_t n_dims, type;
    uint64_t ne[GGUF_MAX_DIMS];
    uint64_t nbytes, offset;
} wtensor;

#define WBUF_SIZE (1u << 20)
/* Pieces at least this big skip the buffer: write() them directly instead of
 * copying them into it first (the buffer exists for the small header
 * fields and paddings). */
#define WBUF_DIRECT (64u << 10)
/* With fsync on: start writeback of every this many new bytes. */
#define WRITEBACK_STEP (8ull << 20)

struct gguf_writer {
    char *path, *tmp_path;
    int fd;
    qf_err *err;
    qf_err own_err;
    int failed; /* negative error code once anything failed */
    int started; /* begin_data done */
    uint32_t alignment;
    wkv *kv;
    uint64_t n_kv, cap_kv;
    wtensor *t;
    uint64_t n_t, cap_t;
    uint64_t cur, cur_written; /* tensor being written, bytes of it so far */
    uint8_t *buf;
    size_t buf_n;
    int fsync_on;
    uint64_t file_pos;      /* bytes written to fd so far */
    uint64_t writeback_pos; /* bytes handed to sync_file_range so far */
};

static int wfail(gguf_writer *w, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int wfail(gguf_writer *w, int code, const char *fmt, ...) {
    if (!w->err->code || !w->err->msg[0]) {
        va_list ap;
        va_start(ap, fmt);
        char msg[sizeof w->err->msg];
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        qf_set_err(w->err, code, "%s", msg);
    }
    if (!w->failed) w->failed = code;
    return code;
}

static int wcheck(gguf_writer *w) {
    if (!w) return QF_EINVAL;
    return w->failed;
}

gguf_writer *gguf_writer_create(const char *path, qf_err *err) {
    gguf_writer *w = calloc(1, sizeof *w);
    if (!w) {
        qf_set_err(err, QF_ENOMEM, "%s: out of memory", path ? path : "gguf");
        return NULL;
    }
    w->err = err ? err : &w->own_err;
    w->fd = -1;
    w->alignment = GGUF_DEFAULT_ALIGNMENT;
    w->path = path ? strdup(path) : NULL;
    w->buf = malloc(WBUF_SIZE);
    if (!path || !*path) {
        qf_set_err(err, QF_EINVAL, "gguf writer: empty output path");
        goto fail;
    }
    if (!w->path || !w->buf) {
        qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    /* Temp file next to the target so rename() is atomic (qf_tmpfile.h) */
    w->fd = qf_tmpfile_create(path, &w->tmp_path, err);
    if (w->fd < 0) goto fail;
    return w;
fail:
    free(w->path);
    free(w->tmp_path);
    free(w->buf);
    free(w);
    return NULL;
}

static uint64_t pad_to(uint64_t x, uint64_t a) { return (a - x % a) % a; }

gguf_writer *gguf_writer_create_mem(const char *name, qf_err *err) {
    gguf_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(name ? name : "<memory>"))) {
        free(w);
        qf_set_err(err, QF_ENOMEM, "%s: out of memory", name ? name : "gguf");
        return NULL;
    }
    w->err = err ? err : &w->own_err;
    w->fd = -1;
    w->alignment = GGUF_DEFAULT_ALIGNMENT;
    return w;
}

static void writer_free(gguf_writer *w);

int gguf_writer_to_header(gguf_writer *w, gguf_file *f, qf_err *err) {
    int rc = wcheck(w);
    bytes b = {0};
    memset(f, 0, sizeof *f);
    f->fd = -1;
    if (!w) return qf_set_err(err, QF_EINVAL, "gguf writer: none");
    if (!rc && w->started) rc = wfail(w, QF_EINVAL, "%s: gguf_writer_to_header after begin_data", w->path);
    uint64_t off = 0;
    int bad = 0;
    if (!rc) {
        bad = bytes_u32(&b, GGUF_MAGIC) || bytes_u32(&b, GGUF_VERSION) || bytes_u64(&b, w->n_t) ||
              bytes_u64(&b, w->n_kv);
        for (uint64_t i = 0; i < w->n_kv && !bad; i++) {
            uint64_t len = strlen(w->kv[i].key);
            bad = bytes_u64(&b, len) || bytes_put(&b, w->kv[i].key, len) || bytes_put(&b, w->kv[i].enc.p, w->kv[i].enc.n);
        }
        for (uint64_t i = 0; i < w->n_t && !bad; i++) { /* offsets as begin_data lays them out */
            const wtensor *t = &w->t[i];
            uint64_t len = strlen(t->name);
            bad = bytes_u64(&b, len) || bytes_put(&b, t->name, len) || bytes_u32(&b, t->n_dims) ||
                  bytes_put(&b, t->ne, 8 * (size_t)t->n_dims) || bytes_u32(&b, t->type) || bytes_u64(&b, off);
            off += t->nbytes + pad_to(t->nbytes, w->alignment);
        }
        if (bad) rc = wfail(w, QF_ENOMEM, "%s: out of memory", w->path);
    }
    if (!rc && !(rc = init_file(f, w->path, err))) {
        gguf_internal *in = f->arena;
        in->owns_buf = in->header_only = 1;
        f->map = b.p;
        f->map_size = b.n;
        b.p = NULL;
        rc = open_common(f, err);
    }
    free(b.p);
    writer_free(w);
    return rc;
}

static void writer_free(gguf_writer *w) {
    for (uint64_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].enc.p);
    }
    for (uint64_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w->buf);
    free(w->path);
    free(w->tmp_path);
    free(w);
}

void gguf_writer_abort(gguf_writer *w) {
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    if (w->tmp_path) unlink(w->tmp_path);
    qf_tmpfile_forget(w->tmp_path);
    writer_free(w);
}

const qf_err *gguf_writer_error(const gguf_writer *w) { return w ? w->err : NULL; }

int gguf_writer_set_fsync(gguf_writer *w, int on) {
    int rc = wcheck(w);
    if (rc) return rc;
    if (w->file_pos || w->buf_n) return wfail(w, QF_EINVAL, "%s: gguf_writer_set_fsync after data was written", w->path);
    w->fsync_on = on != 0;
    return 0;
}

static int64_t writer_find_kv(const gguf_writer *w, const char *key) {
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0) return (int64_t)i;
    return -1;
}

/* Encode the payload of a value of type `type` (no type tag). */
static int encode_payload(gguf_writer *w, bytes *b, const char *key, uint32_t type, const gguf_value *v, int depth) {
    if (type >= GGUF_VT_COUNT) return wfail(w, QF_EINVAL, "%s: kv '%s': invalid value type %u", w->path, key, type);
    if (v->type != type)
        return wfail(w, QF_EINVAL, "%s: kv '%s': array element has type %s, array says %s", w->path, key,
                     gguf_vtype_name(v->type), gguf_vtype_name(type));
    int bad = 0;
    if (type == GGUF_VT_STRING) {
        if (v->str.len && !v->str.data) return wfail(w, QF_EINVAL, "%s: kv '%s': string without data", w->path, key);
        bad = bytes_u64(b, v->str.len) || bytes_put(b, v->str.data, v->str.len);
    } else if (type != GGUF_VT_ARRAY) {
        bad = bytes_put(b, &v->u64, vtype_sizes[type]);
    } else {
        uint32_t et = v->arr.elem_type;
        uint64_t n = v->arr.n;
        if (et >= GGUF_VT_COUNT)
            return wfail(w, QF_EINVAL, "%s: kv '%s': invalid array element type %u", w->path, key, et);
        if (et == GGUF_VT_ARRAY && depth + 1 >= GGUF_MAX_ARRAY_DEPTH)
            return wfail(w, QF_EINVAL, "%s: kv '%s': arrays nested deeper than %d levels", w->path, key,
                         GGUF_MAX_ARRAY_DEPTH);
        if (n && !v->arr.data) return wfail(w, QF_EINVAL, "%s: kv '%s': array without data", w->path, key);
        bad = bytes_u32(b, et) || bytes_u64(b, n);
        if (!bad && et == GGUF_VT_STRING) {
            const gguf_str *s = v->arr.data;
            for (uint64_t i = 0; i < n && !bad; i++) {
                if (s[i].len && !s[i].data) return wfail(w, QF_EINVAL, "%s: kv '%s': string without data", w->path, key);
                bad = bytes_u64(b, s[i].len) || bytes_put(b, s[i].data, s[i].len);
            }
        } else if (!bad && et == GGUF_VT_ARRAY) {
            const gguf_value *e = v->arr.data;
            for (uint64_t i = 0; i < n; i++) {
                int rc = encode_payload(w, b, key, GGUF_VT_ARRAY, &e[i], depth + 1);
                if (rc) return rc;
            }
        } else if (!bad) {
            uint64_t nb;
            if (__builtin_mul_overflow(n, (uint64_t)vtype_sizes[et], &nb) || nb > SIZE_MAX)
                return wfail(w, QF_ERANGE, "%s: kv '%s': array too large", w->path, key);
            bad = bytes_put(b, v->arr.data, (size_t)nb);
        }
    }
    if (bad) return wfail(w, QF_ENOMEM, "%s: out of memory encoding kv '%s'", w->path, key);
    return 0;
}

/* Store an encoded value under key (replacing in place or appending). */
static int writer_put(gguf_writer *w, const char *key, bytes enc) {
    int rc = wcheck(w);
    if (!rc && w->started) rc = wfail(w, QF_EINVAL, "%s: kv '%s' set after gguf_writer_begin_data", w->path, key);
    if (!rc && (!key || !*key)) rc = wfail(w, QF_EINVAL, "%s: empty kv key", w->path);
    if (rc) {
        free(enc.p);
        return rc;
    }
    uint32_t type = ld_u32(enc.p);
    if (strcmp(key, "general.alignment") == 0) {
        uint32_t a = type == GGUF_VT_UINT32 ? ld_u32(enc.p + 4) : 0;
        if (type != GGUF_VT_UINT32 || a < 8 || (a & (a - 1))) {
            free(enc.p);
            return wfail(w, QF_EINVAL, "%s: general.alignment must be a uint32 power of two, at least 8", w->path);
        }
        w->alignment = a;
    }
    int64_t i = writer_find_kv(w, key);
    if (i >= 0) {
        free(w->kv[i].enc.p);
        w->kv[i].enc = enc;
        return 0;
    }
    char *k = strdup(key);
    if (!k || grow((void **)&w->kv, &w->cap_kv, w->n_kv + 1, sizeof *w->kv)) {
        free(k);
        free(enc.p);
        return wfail(w, QF_ENOMEM, "%s: out of memory", w->path);
    }
    w->kv[w->n_kv++] = (wkv){k, enc};
    return 0;
}

int gguf_writer_set_value(gguf_writer *w, const char *key, const gguf_value *v) {
    int rc = wcheck(w);
    if (rc) return rc;
    if (!v) return wfail(w, QF_EINVAL, "%s: kv '%s': null value", w->path, key ? key : "");
    bytes b = {0};
    if (bytes_u32(&b, v->type)) return wfail(w, QF_ENOMEM, "%s: out of memory", w->path);
    if ((rc = encode_payload(w, &b, key ? key : "", v->type, v, 0))) {
        free(b.p);
        return rc;
    }
    return writer_put(w, key, b);
}

#define SETTER(fn, ctype, vt, field)                                   \
    int fn(gguf_writer *w, const char *key, ctype v) {                  \
        gguf_value val;                                                 \
        memset(&val, 0, sizeof val);                                    \
        val.type = vt;                                                  \
        val.field = v;                                                  \
        return gguf_writer_set_value(w, key, &val);                     \
    }
SETTER(gguf_writer_set_u8, uint8_t, GGUF_VT_UINT8, u8)
SETTER(gguf_writer_set_i8, int8_t, GGUF_VT_INT8, i8)
SETTER(gguf_writer_set_u16, uint16_t, GGUF_VT_UINT16, u16)
SETTER(gguf_writer_set_i16, int16_t, GGUF_VT_INT16, i16)
SETTER(gguf_writer_set_u32, uint32_t, GGUF_VT_UINT32, u32)
SETTER(gguf_writer_set_i32, int32_t, GGUF_VT_INT32, i32)
SETTER(gguf_writer_set_u64, uint64_t, GGUF_VT_UINT64, u64)
SETTER(gguf_writer_set_i64, int64_t, GGUF_VT_INT64, i64)
SETTER(gguf_writer_set_f32, float, GGUF_VT_FLOAT32, f32)
SETTER(gguf_writer_set_f64, double, GGUF_VT_FLOAT64, f64)
#undef SETTER

int gguf_writer_set_bool(gguf_writer *w, const char *key, int v) {
    gguf_value val;
    memset(&val, 0, sizeof val);
    val.type = GGUF_VT_BOOL;
    val.b = v ? 1 : 0;
    return gguf_writer_set_value(w, key, &val);
}

int gguf_writer_set_strn(gguf_writer *w, const char *key, const char *v, uint64_t len) {
    gguf_value val;
    memset(&val, 0, sizeof val);
    val.type = GGUF_VT_STRING;
    val.str.len = len;
    val.str.data = v;
    return gguf_writer_set_value(w, key, &val);
}

int gguf_writer_set_str(gguf_writer *w, const char *key, const char *v) {
    return gguf_writer_set_strn(w, key, v, v ? strlen(v) : 0);
}

int gguf_writer_set_arr(gguf_writer *w, const char *key, uint32_t elem_type, const void *data, uint64_t n) {
    int rc = wcheck(w);
    if (rc) return rc;
    if (elem_type >= GGUF_VT_COUNT || elem_type == GGUF_VT_STRING || elem_type == GGUF_VT_ARRAY)
        return wfail(w, QF_EINVAL, "%s: kv '%s': gguf_writer_set_arr needs a numeric/bool element type, got %s", w->path,
                     key ? key : "", gguf_vtype_name(elem_type));
    gguf_value val;
    memset(&val, 0, sizeof val);
    val.type = GGUF_VT_ARRAY;
    val.arr.elem_type = elem_type;
    val.arr.n = n;
    val.arr.data = data;
    return gguf_writer_set_value(w, key, &val);
}

int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *strs, const uint64_t *lens, uint64_t n) {
    int rc = wcheck(w);
    if (rc) return rc;
    if (n && !strs) return wfail(w, QF_EINVAL, "%s: kv '%s': array without data", w->path, key ? key : "");
    bytes b = {0};
    int bad = bytes_u32(&b, GGUF_VT_ARRAY) || bytes_u32(&b, GGUF_VT_STRING) || bytes_u64(&b, n);
    for (uint64_t i = 0; i < n && !bad; i++) {
        uint64_t len = lens ? lens[i] : (strs[i] ? strlen(strs[i]) : 0);
        if (len && !strs[i]) {
            free(b.p);
            return wfail(w, QF_EINVAL, "%s: kv '%s': string %llu without data", w->path, key ? key : "", (ull)i);
        }
        bad = bytes_u64(&b, len) || bytes_put(&b, strs[i], len);
    }
    if (bad) {
        free(b.p);
        return wfail(w, QF_ENOMEM, "%s: out of memory", w->path);
    }
    return writer_put(w, key, b);
}

int gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment) {
    return gguf_writer_set_u32(w, "general.alignment", alignment);
}

int gguf_writer_remove_kv(gguf_writer *w, const char *key) {
    int rc = wcheck(w);
    if (rc) return rc;
    if (w->started) return wfail(w, QF_EINVAL, "%s: kv removed after gguf_writer_begin_data", w->path);
    int64_t i = key ? writer_find_kv(w, key) : -1;
    if (i < 0) return QF_ENOTFOUND;
    if (strcmp(key, "general.alignment") == 0) w->alignment = GGUF_DEFAULT_ALIGNMENT;
    free(w->kv[i].key);
    free(w->kv[i].enc.p);
    memmove(&w->kv[i], &w->kv[i + 1], (w->n_kv - (uint64_t)i - 1) * sizeof *w->kv);
    w->n_kv--;
    return 0;
}

int64_t gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const uint64_t *ne) {
    int rc = wcheck(w);
    if (rc) return rc;
    if (w->started) return wfail(w, QF_EINVAL, "%s: tensor added after gguf_writer_begin_data", w->path);
    if (!name || !*name) return wfail(w, QF_EINVAL, "%s: tensor %llu has an empty name", w->path, (ull)w->n_t);
    if (strlen(name) >= GGUF_MAX_NAME)
        return wfail(w, QF_EINVAL, "%s: tensor name '%s' is %zu bytes long; names must be shorter than %d", w->path,
                     name, strlen(name), GGUF_MAX_NAME);
    for (uint64_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0) return wfail(w, QF_EINVAL, "%s: duplicate tensor name '%s'", w->path, name);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS || !ne)
        return wfail(w, QF_EINVAL, "%s: tensor '%s' has %u dimensions; must be 1..%d", w->path, name, n_dims,
                     GGUF_MAX_DIMS);
    const ggml_type_traits *tt = ggml_get_type_traits(type);
    if (!tt) return wfail(w, QF_EINVAL, "%s: tensor '%s' has unknown ggml type %u", w->path, name, type);
    wtensor t = {.n_dims = n_dims, .type = type};
    uint64_t nel = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] == 0 || t.ne[d] > (uint64_t)INT64_MAX)
            return wfail(w, QF_EINVAL, "%s: tensor '%s' dimension ne[%u] = %llu is out of range", w->path, name, d,
                         (ull)t.ne[d]);
        if (__builtin_mul_overflow(nel, t.ne[d], &nel) || nel > (uint64_t)INT64_MAX)
            return wfail(w, QF_ERANGE, "%s: tensor '%s' element count overflows int64", w->path, name);
    }
    if (t.ne[0] % tt->block_size)
        return wfail(w, QF_EINVAL, "%s: tensor '%s' row length ne[0] = %llu is not a multiple of the %s block size %u",
                     w->path, name, (ull)t.ne[0], tt->name, tt->block_size);
    if (ggml_row_size(type, t.ne[0], &t.nbytes) || __builtin_mul_overflow(t.nbytes, nel / t.ne[0], &t.nbytes) ||
        t.nbytes > (uint64_t)INT64_MAX)
        return wfail(w, QF_ERANGE, "%s: tensor '%s' byte size overflows", w->path, name);
    t.name = strdup(name);
    if (!t.name || grow((void **)&w->t, &w->cap_t, w->n_t + 1, sizeof *w->t)) {
        free(t.name);
        return wfail(w, QF_ENOMEM, "%s: out of memory", w->path);
    }
    w->t[w->n_t] = t;
    return (int64_t)w->n_t++;
}

/* ---- output ---- */

static int write_all(gguf_writer *w, const void *p, size_t n) {
    const uint8_t *c = p;
    while (n) {
        ssize_t k = write(w->fd, c, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return wfail(w, QF_EIO, "%s: write failed: %s", w->path, k < 0 ? strerror(errno) : "short write");
        c += k;
        n -= (size_t)k;
        w->file_pos += (uint64_t)k;
    }
    /* Early writeback: the final fsync then waits only for the last few MiB
     * instead of the whole file. Only a hint: errors surface at fsync. */
    if (w->fsync_on && w->file_pos - w->writeback_pos >= WRITEBACK_STEP) {
        sync_file_range(w->fd, (off_t)w->writeback_pos, (off_t)(w->file_pos - w->writeback_pos), SYNC_FILE_RANGE_WRITE);
        w->writeback_pos = w->file_pos;
    }
    return 0;
}

static int out_flush(gguf_writer *w) {
    int rc = write_all(w, w->buf, w->buf_n);
    w->buf_n = 0;
    return rc;
}

static int out_put(gguf_writer *w, const void *p, size_t n) {
    int rc;
    if ((w->buf_n + n > WBUF_SIZE || n >= WBUF_DIRECT) && (rc = out_flush(w))) return rc;
    if (n >= WBUF_DIRECT) return write_all(w, p, n);
    memcpy(w->buf + w->buf_n, p, n);
    w->buf_n += n;
    return 0;
}

static int out_zeros(gguf_writer *w, uint64_t n) {
    static const uint8_t zeros[256];
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        int rc = out_put(w, zeros, k);
        if (rc) return rc;
        n -= k;
    }
    return 0;
}


int gguf_writer_begin_data(gguf_writer *w) {
    int rc = wcheck(w);
    if (rc) return rc;
    if (w->started) return wfail(w, QF_EINVAL, "%s: gguf_writer_begin_data called twice", w->path);
    w->started = 1;
    uint64_t a = w->alignment, off = 0;
    for (uint64_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        if (__builtin_add_overflow(off, w->t[i].nbytes, &off) || __builtin_add_overflow(off, pad_to(off, a), &off))
            return wfail(w, QF_ERANGE, "%s: data section size overflows", w->path);
    }
    uint32_t head[2] = {GGUF_MAGIC, GGUF_VERSION};
    uint64_t counts[2] = {w->n_t, w->n_kv};
    uint64_t pos = 24;
    if ((rc = out_put(w, head, 8)) || (rc = out_put(w, counts, 16))) return rc;
    for (uint64_t i = 0; i < w->n_kv; i++) {
        uint64_t len = strlen(w->kv[i].key);
        if ((rc = out_put(w, &len, 8)) || (rc = out_put(w, w->kv[i].key, len)) ||
            (rc = out_put(w, w->kv[i].enc.p, w->kv[i].enc.n)))
            return rc;
        pos += 8 + len + w->kv[i].enc.n;
    }
    for (uint64_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        uint64_t len = strlen(t->name);
        if ((rc = out_put(w, &len, 8)) || (rc = out_put(w, t->name, len)) || (rc = out_put(w, &t->n_dims, 4)) ||
            (rc = out_put(w, t->ne, 8 * (size_t)t->n_dims)) || (rc = out_put(w, &t->type, 4)) ||
            (rc = out_put(w, &t->offset, 8)))
            return rc;
        pos += 8 + len + 4 + 8 * (uint64_t)t->n_dims + 4 + 8;
    }
    /* gguf-py pads the header only when tensor data follows (vocab-only
     * files end right after the kv pairs); ggml reads both. */
    if (w->n_t && (rc = out_zeros(w, pad_to(pos, a)))) return rc;
    w->cur = 0;
    w->cur_written = 0;
    return 0;
}

int gguf_writer_write_tensor_data(gguf_writer *w, const void *data, size_t nbytes) {
    int rc = wcheck(w);
    if (rc) return rc;
    if (!w->started) return wfail(w, QF_EINVAL, "%s: tensor data written before gguf_writer_begin_data", w->path);
    if (!data && nbytes) return wfail(w, QF_EINVAL, "%s: null tensor data", w->path);
    const uint8_t *p = data;
    while (nbytes) {
        if (w->cur >= w->n_t)
            return wfail(w, QF_EINVAL, "%s: %zu bytes of tensor data written beyond the last tensor", w->path, nbytes);
        const wtensor *t = &w->t[w->cur];
        uint64_t left = t->nbytes - w->cur_written;
        size_t k = nbytes < left ? nbytes : (size_t)left;
        if ((rc = out_put(w, p, k))) return rc;
        p += k;
        nbytes -= k;
        w->cur_written += k;
        if (w->cur_written == t->nbytes) {
            if ((rc = out_zeros(w, pad_to(t->nbytes, w->alignment)))) return rc;
            w->cur++;
            w->cur_written = 0;
        }
    }
    return 0;
}

int gguf_writer_finish(gguf_writer *w) {
    int rc = wcheck(w);
    if (!w) return rc;
    if (!rc && !w->started) rc = gguf_writer_begin_data(w);
    if (!rc && w->cur < w->n_t)
        rc = wfail(w, QF_EINVAL, "%s: tensor '%s' has %llu of %llu bytes written (%llu of %llu tensors complete)",
                   w->path, w->t[w->cur].name, (ull)w->cur_written, (ull)w->t[w->cur].nbytes, (ull)w->cur,
                   (ull)w->n_t);
    if (!rc) rc = out_flush(w);
    if (!rc && w->fsync_on && fsync(w->fd) != 0) rc = wfail(w, QF_EIO, "%s: fsync failed: %s", w->path, strerror(errno));
    if (!rc) {
        int fd = w->fd;
        w->fd = -1;
        if (close(fd) != 0) rc = wfail(w, QF_EIO, "%s: close failed: %s", w->path, strerror(errno));
    }
    if (!rc && rename(w->tmp_path, w->path) != 0)
        rc = wfail(w, QF_EIO, "%s: cannot rename %s: %s", w->path, w->tmp_path, strerror(errno));
    if (rc) {
        gguf_writer_abort(w);
        return rc;
    }
    qf_tmpfile_forget(w->tmp_path);
    /* make the rename durable */
    char *dir = w->fsync_on ? strdup(w->path) : NULL;
    if (dir) {
        char *slash = strrchr(dir, '/');
        const char *d = slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".";
        int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
    writer_free(w);
    return 0;
}

int gguf_split_keys(const gguf_file *f, uint32_t *no, uint32_t *count, uint64_t *total, qf_err *err) {
    static const char *const keys[3] = {"split.no", "split.count", "split.tensors.count"};
    const char *nm = f->path ? f->path : "gguf";
    int64_t v[3];
    int present = 0;
    for (int i = 0; i < 3; i++) {
        const gguf_kv *kv = gguf_find_kv(f, keys[i]);
        if (!kv) continue;
        present++;
        if (gguf_get_i64(f, keys[i], &v[i]) != 0)
            return qf_set_err(err, QF_EFORMAT, "%s: %s has type %s; it must be an integer", nm, keys[i],
                              gguf_vtype_name(kv->value.type));
    }
    *no = 0;
    *count = 1;
    *total = f->n_tensors;
    if (present == 0) return 0;
    if (present != 3) return qf_set_err(err, QF_EFORMAT, "%s: split.no, split.count and split.tensors.count must come together", nm);
    if (v[1] < 1 || v[1] > 99999) return qf_set_err(err, QF_EFORMAT, "%s: split.count %lld is not in 1..99999", nm, (long long)v[1]);
    if (v[0] < 0 || v[0] >= v[1])
        return qf_set_err(err, QF_EFORMAT, "%s: split.no %lld is not in 0..%lld", nm, (long long)v[0], (long long)v[1] - 1);
    if (v[2] < (int64_t)f->n_tensors)
        return qf_set_err(err, QF_EFORMAT, "%s: split.tensors.count %lld is less than the %llu tensors of this shard", nm,
                          (long long)v[2], (unsigned long long)f->n_tensors);
    *no = (uint32_t)v[0];
    *count = (uint32_t)v[1];
    *total = (uint64_t)v[2];
    return 0;
}
