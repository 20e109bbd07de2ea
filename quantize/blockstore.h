/* blockstore.h - output bytes of tensors that are computed before the
 * writer runs (GPTQ computes every linear during the calibration pipeline),
 * kept in an unlinked temporary file instead of RAM, so that memory does not
 * grow with the model's depth. The writer reads them back piece by piece.
 *
 * Disk: the sum of the stored tensors' sizes (the file is gone when closed
 * or when the process dies). Memory: 16 bytes per tensor slot.
 */
#ifndef QF_BLOCKSTORE_H
#define QF_BLOCKSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "qf_error.h"

typedef struct qf_blockstore {
    int fd;                  /* the unlinked file; -1 when closed */
    size_t n;                /* tensor slots */
    uint64_t *off;           /* [n] byte offset of each slot's data */
    uint64_t *len;           /* [n] its size; 0: nothing stored */
    uint64_t end;            /* bytes written so far */
} qf_blockstore;

/* An empty store of n slots backed by a new unlinked file in dir (NULL:
 * $TMPDIR or /tmp). QF_EIO naming the directory, QF_ENOMEM. */
int qf_blockstore_open(qf_blockstore *bs, size_t n, const char *dir, qf_err *err);

/* Store data[nbytes] (> 0) as slot i (once per slot). QF_EIO on a full disk. */
int qf_blockstore_put(qf_blockstore *bs, size_t i, const void *data, uint64_t nbytes, qf_err *err);

/* Bytes stored for slot i (0: none; also for a closed or NULL store). */
uint64_t qf_blockstore_size(const qf_blockstore *bs, size_t i);

/* Read nbytes of slot i from byte off into buf. QF_EIO, QF_EINVAL past the end. */
int qf_blockstore_read(const qf_blockstore *bs, size_t i, uint64_t off, void *buf, uint64_t nbytes, qf_err *err);

/* Close and free (the file's space is returned); safe on a zeroed or closed store. */
void qf_blockstore_close(qf_blockstore *bs);

#endif
