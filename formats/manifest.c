/* manifest.c - XXH3-128 checksum manifests (see manifest.h). */
#include "manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

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
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = qf_set_err(err, errno == ENOENT ? QF_ENOTFOUND : QF_EIO, "%s: cannot open for hashing: %s", path,
                        strerror(errno));
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
