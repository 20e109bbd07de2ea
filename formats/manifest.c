/* manifest.c - XXH3-128 integrity manifests of GGUF files (see manifest.h). */
#include "manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"

void qf_xxh128_hex(XXH128_hash_t h, char out[33]) {
    XXH128_canonical_t can;
    XXH128_canonicalFromHash(&can, h);
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", can.digest[i]);
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

int qf_xxh128_from_hex(const char *s, size_t len, XXH128_hash_t *out) {
    if (len != 32) return -1;
    XXH128_canonical_t can;
    for (int i = 0; i < 16; i++) {
        int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        can.digest[i] = (unsigned char)(hi << 4 | lo);
    }
    *out = XXH128_hashFromCanonical(&can);
    return 0;
}

int qf_xxh128_file(const char *path, XXH128_hash_t *out, qf_err *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return qf_set_err(err, QF_EIO, "%s: cannot open for hashing: %s", path, strerror(errno));
    XXH3_state_t *hs = XXH3_createState();
    size_t cap = 4u << 20;
    char *buf = malloc(cap);
    int rc = 0;
    if (!hs || !buf) {
        rc = qf_set_err(err, QF_ENOMEM, "out of memory");
        goto done;
    }
    XXH3_128bits_reset(hs);
    for (;;) {
        ssize_t n = read(fd, buf, cap);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = qf_set_err(err, QF_EIO, "%s: read failed: %s", path, strerror(errno));
            goto done;
        }
        if (n == 0) break;
        XXH3_128bits_update(hs, buf, (size_t)n);
    }
    *out = XXH3_128bits_digest(hs);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
done:
    if (hs) XXH3_freeState(hs);
    free(buf);
    close(fd);
    return rc;
}

/* ---------------- reading ---------------- */

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

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
    XXH128_hash_t h;
    if (qf_xxh128_from_hex(hash, hlen, &h) < 0)
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
    int rc = 0;
    char *text = NULL;
    size_t cap = 1 << 14, len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return qf_set_err(err, QF_EIO, "%s: %s", path, strerror(errno));
    text = malloc(cap);
    if (!text) {
        rc = qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (;;) {
        if (len == cap) {
            if (cap >= (size_t)1 << 30) {
                rc = qf_set_err(err, QF_EFORMAT, "%s: larger than 1 GiB: not a manifest", path);
                goto done;
            }
            char *bigger = realloc(text, cap *= 2);
            if (!bigger) {
                rc = qf_set_err(err, QF_ENOMEM, "%s: out of memory", path);
                goto done;
            }
            text = bigger;
        }
        size_t k = fread(text + len, 1, cap - len, f);
        len += k;
        if (k == 0) break;
    }
    if (ferror(f)) {
        rc = qf_set_err(err, QF_EIO, "%s: read error", path);
        goto done;
    }
    rc = qf_manifest_parse(m, text, len, path, err);
done:
    fclose(f);
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
        XXH128_hash_t h = XXH3_128bits(ti->data, (size_t)ti->nbytes);
        if (!XXH128_isEqual(h, e->hash)) {
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
        XXH128_hash_t h;
        if ((rc = qf_xxh128_file(paths[f], &h, err)) < 0) goto done;
        if (!XXH128_isEqual(h, lines[f]->hash)) {
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
