/* manifest.c - XXH3-128 checksum manifests (see manifest.h). */
#include "manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "gguf.h"
#include "qf_util.h"
#include "qf_io.h"

struct qf_hasher {
    XXH3_state_t *st;
};

qf_hasher *qf_hasher_new(void) {
    qf_hasher *h = malloc(sizeof *h);
    if (!h) return NULL;
    h->st = XXH3_createState();
    if (!h->st) {
        free(h);
        return NULL;
    }
    XXH3_128bits_reset(h->st);
    return h;
}

void qf_hasher_reset(qf_hasher *h) { XXH3_128bits_reset(h->st); }

void qf_hasher_update(qf_hasher *h, const void *data, size_t n) { XXH3_128bits_update(h->st, data, n); }

static qf_hash128 canonical(XXH128_hash_t x) {
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, x);
    qf_hash128 h;
    memcpy(h.b, c.digest, 16);
    return h;
}

qf_hash128 qf_hasher_digest(const qf_hasher *h) { return canonical(XXH3_128bits_digest(h->st)); }

void qf_hasher_free(qf_hasher *h) {
    if (!h) return;
    XXH3_freeState(h->st);
    free(h);
}

qf_hash128 qf_hash128_of(const void *data, size_t n) { return canonical(XXH3_128bits(data, n)); }

void qf_hash128_hex(const qf_hash128 *h, char out[33]) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = digits[h->b[i] >> 4];
        out[2 * i + 1] = digits[h->b[i] & 15];
    }
    out[32] = 0;
}

int qf_hash_file(const char *path, qf_hash128 *out, qf_err *err) {
    int rc = 0;
    const size_t cap = 4u << 20;
    char *buf = malloc(cap);
    qf_hasher *h = qf_hasher_new();
    int fd = qf_open_input(path, err);
    if (fd < 0) {
        rc = fd;
        goto done;
    }
    if (!buf || !h) {
        rc = qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (;;) {
        ssize_t n = read(fd, buf, cap);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = qf_set_err(err, QF_EIO, "%s: read failed: %s", path, strerror(errno));
            goto done;
        }
        if (n == 0) break;
        qf_hasher_update(h, buf, (size_t)n);
    }
    *out = qf_hasher_digest(h);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
done:
    if (fd >= 0) close(fd);
    qf_hasher_free(h);
    free(buf);
    return rc;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

int qf_hash128_from_hex(const char *s, size_t len, qf_hash128 *out) {
    if (len != 32) return -1;
    for (int i = 0; i < 16; i++) {
        int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out->b[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int qf_manifest_write(const char *path, const char *tool, const qf_manifest_tensor *tensors, size_t n_tensors,
                      const char *const *files, size_t n_files, qf_err *err) {
    int rc = 0, created = 0;
    FILE *fp = NULL;
    size_t n = strlen(path);
    char *tmp = malloc(n + 40);
    char hex[33];
    if (!tmp) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
    snprintf(tmp, n + 40, "%s.tmp.%ld", path, (long)getpid());
    fp = fopen(tmp, "wbx");
    if (!fp) {
        rc = qf_set_err(err, QF_EIO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        goto done;
    }
    created = 1;
    fprintf(fp, "# %s manifest v1: XXH3-128 (canonical hex) of each tensor's data and of each file\n",
            tool ? tool : "qforge");
    for (size_t i = 0; i < n_tensors; i++) {
        qf_hash128_hex(&tensors[i].hash, hex);
        fprintf(fp, "tensor %s %s\n", hex, tensors[i].name);
    }
    for (size_t i = 0; i < n_files; i++) {
        qf_hash128 h;
        if ((rc = qf_hash_file(files[i], &h, err))) goto done;
        qf_hash128_hex(&h, hex);
        fprintf(fp, "file %s %s\n", hex, base_name(files[i]));
    }
    if (fflush(fp) || ferror(fp) || fsync(fileno(fp))) {
        rc = qf_set_err(err, QF_EIO, "%s: write failed: %s", tmp, strerror(errno));
        goto done;
    }
    int closed = fclose(fp);
    fp = NULL;
    if (closed) {
        rc = qf_set_err(err, QF_EIO, "%s: write failed: %s", tmp, strerror(errno));
        goto done;
    }
    if (rename(tmp, path)) rc = qf_set_err(err, QF_EIO, "%s: cannot rename %s: %s", path, tmp, strerror(errno));
done:
    if (fp) fclose(fp);
    if (rc && created) unlink(tmp);
    free(tmp);
    return rc;
}

/* ---------------- reading ---------------- */

void qf_manifest_free(qf_manifest *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n; i++) free(m->entries[i].name);
    free(m->entries);
    free(m->path);
    memset(m, 0, sizeof *m);
}

static const qf_manifest_entry *find_entry(const qf_manifest *m, qf_manifest_kind kind, const char *name) {
    for (size_t i = 0; i < m->n; i++)
        if (m->entries[i].kind == kind && strcmp(m->entries[i].name, name) == 0) return &m->entries[i];
    return NULL;
}

/* One record line (no newline, NUL-terminated). */
static int parse_line(qf_manifest *m, char *s, unsigned line, qf_err *err) {
    const char *p = m->path;
    qf_manifest_kind kind;
    size_t kw;
    if (strncmp(s, "tensor ", 7) == 0) {
        kind = QF_MANIFEST_TENSOR;
        kw = 7;
    } else if (strncmp(s, "file ", 5) == 0) {
        kind = QF_MANIFEST_FILE;
        kw = 5;
    } else {
        return qf_set_err(err, QF_EFORMAT, "%s: line %u: expected 'tensor <hash> <name>' or 'file <hash> <name>'", p,
                          line);
    }
    char *hash = s + kw;
    char *sp = strchr(hash, ' ');
    size_t hlen = sp ? (size_t)(sp - hash) : strlen(hash);
    qf_hash128 h;
    if (qf_hash128_from_hex(hash, hlen, &h) < 0)
        return qf_set_err(err, QF_EFORMAT, "%s: line %u: bad hash '%.*s' (want 32 lowercase hex digits)", p, line,
                          (int)(hlen > 40 ? 40 : hlen), hash);
    if (!sp || !sp[1]) return qf_set_err(err, QF_EFORMAT, "%s: line %u: no %s name after the hash", p, line,
                                         kind == QF_MANIFEST_TENSOR ? "tensor" : "file");
    const char *name = sp + 1;
    if (kind == QF_MANIFEST_TENSOR && strlen(name) >= GGUF_MAX_NAME)
        return qf_set_err(err, QF_EFORMAT, "%s: line %u: tensor name longer than %d bytes", p, line, GGUF_MAX_NAME - 1);
    const qf_manifest_entry *dup = find_entry(m, kind, name);
    if (dup)
        return qf_set_err(err, QF_EFORMAT, "%s: line %u: %s '%s' is already listed on line %u", p, line,
                          kind == QF_MANIFEST_TENSOR ? "tensor" : "file", name, dup->line);
    qf_manifest_entry *e = realloc(m->entries, (m->n + 1) * sizeof *e);
    if (!e) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", p);
    m->entries = e;
    e = &m->entries[m->n];
    e->kind = kind;
    e->hash = h;
    e->line = line;
    e->name = strdup(name);
    if (!e->name) return qf_set_err(err, QF_ENOMEM, "%s: out of memory", p);
    m->n++;
    if (kind == QF_MANIFEST_TENSOR) m->n_tensors++;
    else m->n_files++;
    return 0;
}

int qf_manifest_parse(qf_manifest *m, const char *text, size_t len, const char *name, qf_err *err) {
    memset(m, 0, sizeof *m);
    int rc = 0;
    char *buf = malloc(len + 1);
    m->path = strdup(name);
    if (!buf || !m->path) {
        rc = qf_set_err(err, QF_ENOMEM, "%s: out of memory", name);
        goto fail;
    }
    memcpy(buf, text, len);
    buf[len] = 0;
    if (memchr(buf, 0, len)) {
        rc = qf_set_err(err, QF_EFORMAT, "%s: contains NUL bytes: not a manifest", name);
        goto fail;
    }
    unsigned line = 0;
    for (char *s = buf; *s;) {
        char *nl = strchr(s, '\n');
        char *next = nl ? nl + 1 : s + strlen(s);
        if (nl) *nl = 0;
        line++;
        size_t n = strlen(s);
        if (n && s[n - 1] == '\r') s[--n] = 0; /* CRLF from an editor */
        if (n && s[0] != '#' && (rc = parse_line(m, s, line, err)) < 0) goto fail;
        s = next;
    }
    if (m->n == 0) {
        rc = qf_set_err(err, QF_EFORMAT, "%s: no 'tensor' or 'file' lines: not a manifest", name);
        goto fail;
    }
    free(buf);
    return 0;
fail:
    free(buf);
    qf_manifest_free(m);
    return rc;
}

int qf_manifest_read(qf_manifest *m, const char *path, qf_err *err) {
    memset(m, 0, sizeof *m);
    uint8_t *text = NULL;
    uint64_t len = 0;
    int rc = qf_read_file(path, &text, &len, err);
    if (rc < 0) return rc;
    rc = qf_manifest_parse(m, (const char *)text, (size_t)len, path, err);
    free(text);
    return rc;
}

/* ---------------- checking ---------------- */

/* dir of path (with its trailing slash) + name, malloc'd */
static char *sibling(const char *path, const char *name) {
    const char *slash = strrchr(path, '/');
    size_t d = slash ? (size_t)(slash - path + 1) : 0, n = strlen(name);
    char *s = malloc(d + n + 1);
    if (!s) return NULL;
    memcpy(s, path, d);
    memcpy(s + d, name, n + 1);
    return s;
}

int qf_manifest_check_gguf(const qf_manifest *m, const char *gguf_path, size_t *n_checked, qf_err *err) {
    const char *bn = base_name(gguf_path);
    size_t n_files = m->n_files > 1 ? m->n_files : 1;
    gguf_file *g = calloc(n_files, sizeof *g);
    char **paths = calloc(n_files, sizeof *paths);
    const qf_manifest_entry **lines = calloc(n_files, sizeof *lines);
    size_t n_open = 0, checked = 0;
    int rc = 0;
    if (!g || !paths || !lines) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory");
        goto done;
    }
    if (m->n_files <= 1) {
        /* one file: compare it whatever its name (a renamed copy is fine) */
        paths[0] = strdup(gguf_path);
        for (size_t i = 0; i < m->n; i++)
            if (m->entries[i].kind == QF_MANIFEST_FILE) lines[0] = &m->entries[i];
        if (!paths[0]) {
            rc = qf_set_err(err, QF_ENOMEM, "out of memory");
            goto done;
        }
    } else {
        /* a split model: the files the manifest names, beside gguf_path */
        if (!find_entry(m, QF_MANIFEST_FILE, bn)) {
            rc = qf_set_err(err, QF_EMISMATCH, "%s: not one of the %zu files listed in %s", gguf_path, m->n_files,
                            m->path);
            goto done;
        }
        size_t k = 0;
        for (size_t i = 0; i < m->n; i++) {
            if (m->entries[i].kind != QF_MANIFEST_FILE) continue;
            lines[k] = &m->entries[i];
            paths[k] = sibling(gguf_path, m->entries[i].name);
            if (!paths[k++]) {
                rc = qf_set_err(err, QF_ENOMEM, "out of memory");
                goto done;
            }
        }
    }
    for (; n_open < n_files; n_open++)
        if ((rc = gguf_open(&g[n_open], paths[n_open], err)) < 0) goto done;
    /* every listed tensor is in some file and hashes to its line */
    for (size_t i = 0; i < m->n; i++) {
        const qf_manifest_entry *e = &m->entries[i];
        if (e->kind != QF_MANIFEST_TENSOR) continue;
        const gguf_tensor_info *ti = NULL;
        size_t f = 0;
        for (; f < n_files && !ti; f++) ti = gguf_find_tensor(&g[f], e->name);
        if (!ti) {
            rc = qf_set_err(err, QF_EMISMATCH, "%s: tensor '%s' (%s line %u) is not in the %s", gguf_path, e->name,
                            m->path, e->line, n_files > 1 ? "model's files" : "file");
            goto done;
        }
        qf_hash128 h = qf_hash128_of(ti->data, (size_t)ti->nbytes);
        if (memcmp(h.b, e->hash.b, 16) != 0) {
            rc = qf_set_err(err, QF_EMISMATCH, "%s: tensor '%s' does not match the manifest", paths[f - 1], e->name);
            goto done;
        }
        checked++;
    }
    /* and nothing unlisted */
    for (size_t f = 0; f < n_files; f++)
        for (uint64_t i = 0; i < g[f].n_tensors; i++)
            if (!find_entry(m, QF_MANIFEST_TENSOR, g[f].tensors[i].name)) {
                rc = qf_set_err(err, QF_EMISMATCH, "%s: tensor '%s' is not in the manifest %s", paths[f],
                                g[f].tensors[i].name, m->path);
                goto done;
            }
    /* whole files: metadata included */
    for (size_t f = 0; f < n_files; f++) {
        if (!lines[f]) continue;
        qf_hash128 h;
        if ((rc = qf_hash_file(paths[f], &h, err)) < 0) goto done;
        if (memcmp(h.b, lines[f]->hash.b, 16) != 0) {
            rc = qf_set_err(err, QF_EMISMATCH,
                            "%s: file hash does not match the manifest (%s line %u); the tensor data matches, so the "
                            "metadata differs",
                            paths[f], m->path, lines[f]->line);
            goto done;
        }
    }
    if (n_checked) *n_checked = checked;
done:
    for (size_t f = 0; f < n_open; f++) gguf_close(&g[f]);
    for (size_t f = 0; paths && f < n_files; f++) free(paths[f]);
    free(paths);
    free(lines);
    free(g);
    return rc;
}
