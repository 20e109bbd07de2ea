/* blockstore.c - tensor output bytes in an unlinked temporary file (blockstore.h). */
#include "blockstore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int qf_blockstore_open(qf_blockstore *bs, size_t n, const char *dir, qf_err *err) {
    memset(bs, 0, sizeof *bs);
    bs->fd = -1;
    if (!dir) dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    bs->off = calloc(n ? n : 1, sizeof *bs->off);
    bs->len = calloc(n ? n : 1, sizeof *bs->len);
    if (!bs->off || !bs->len) {
        qf_blockstore_close(bs);
        return qf_set_err(err, QF_ENOMEM, "out of memory");
    }
    bs->n = n;
    char path[4096];
    snprintf(path, sizeof path, "%s/qforge-blocks-XXXXXX", dir);
    bs->fd = mkstemp(path);
    if (bs->fd < 0) {
        qf_blockstore_close(bs);
        return qf_set_err(err, QF_EIO, "%s: cannot create a temporary file for the quantized tensors: %s", dir,
                          strerror(errno));
    }
    unlink(path);
    return 0;
}

int qf_blockstore_put(qf_blockstore *bs, size_t i, const void *data, uint64_t nbytes, qf_err *err) {
    if (i >= bs->n || bs->len[i] || !nbytes) return qf_set_err(err, QF_EINVAL, "blockstore: bad slot %zu", i);
    const uint8_t *p = data;
    for (uint64_t done = 0; done < nbytes;) {
        const size_t piece = nbytes - done < ((uint64_t)1 << 30) ? (size_t)(nbytes - done) : (size_t)1 << 30;
        const ssize_t w = pwrite(bs->fd, p + done, piece, (off_t)(bs->end + done));
        if (w <= 0) {
            if (w < 0 && errno == EINTR) continue;
            return qf_set_err(err, QF_EIO, "cannot write %llu bytes of quantized tensors to the temporary file: %s",
                              (unsigned long long)nbytes, w < 0 ? strerror(errno) : "no space");
        }
        done += (uint64_t)w;
    }
    bs->off[i] = bs->end;
    bs->len[i] = nbytes;
    bs->end += nbytes;
    return 0;
}

uint64_t qf_blockstore_size(const qf_blockstore *bs, size_t i) {
    return bs && bs->fd >= 0 && i < bs->n ? bs->len[i] : 0;
}

int qf_blockstore_read(const qf_blockstore *bs, size_t i, uint64_t off, void *buf, uint64_t nbytes, qf_err *err) {
    if (i >= bs->n || off + nbytes > bs->len[i])
        return qf_set_err(err, QF_EINVAL, "blockstore: read past slot %zu", i);
    uint8_t *p = buf;
    for (uint64_t done = 0; done < nbytes;) {
        const size_t piece = nbytes - done < ((uint64_t)1 << 30) ? (size_t)(nbytes - done) : (size_t)1 << 30;
        const ssize_t r = pread(bs->fd, p + done, piece, (off_t)(bs->off[i] + off + done));
        if (r <= 0) {
            if (r < 0 && errno == EINTR) continue;
            return qf_set_err(err, QF_EIO, "cannot read back the quantized tensors from the temporary file: %s",
                              r < 0 ? strerror(errno) : "short read");
        }
        done += (uint64_t)r;
    }
    return 0;
}

void qf_blockstore_close(qf_blockstore *bs) {
    if (!bs) return;
    if (bs->off && bs->fd >= 0) close(bs->fd);
    free(bs->off);
    free(bs->len);
    memset(bs, 0, sizeof *bs);
    bs->fd = -1;
}
