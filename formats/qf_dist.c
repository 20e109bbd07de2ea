/* qf_dist.c - the one-process defaults and the agreement rule of qf_dist.h. */
#include "qf_dist.h"

#include <stdint.h>

int qf_dist_size(const qf_dist *d) { return d && d->size > 1 ? d->size : 1; }

int qf_dist_rank(const qf_dist *d) { return d && d->size > 1 ? d->rank : 0; }

int qf_dist_check(qf_dist *d, int rc, qf_err *err) {
    if (qf_dist_size(d) == 1) return rc;
    int k = d->failed_rank;
    if (k < 0) k = d->failed_rank = d->agree(d, rc != 0);
    if (k < 0) return 0;
    if (rc) return rc;
    return qf_set_err(err, QF_EIO, "rank %d failed", k);
}

void qf_dist_reduce(qf_dist *d, double *acc, const double *part, size_t n, int n_parts) {
    if (qf_dist_size(d) > 1) {
        d->reduce_ordered(d, acc, part, n, n_parts);
        return;
    }
    if (n_parts > 0)
        for (size_t i = 0; i < n; i++) acc[i] += part[i];
}

void qf_dist_bcast(qf_dist *d, void *buf, size_t bytes) {
    if (qf_dist_size(d) > 1) d->bcast(d, buf, bytes);
}

void qf_dist_bcast_from(qf_dist *d, int root, void *buf, size_t bytes) {
    if (qf_dist_size(d) > 1 && bytes) d->bcast_from(d, root, buf, bytes);
}

/* FNV-1a, 64 bits: enough to tell two inputs apart, not a security hash. */
static uint64_t fnv1a(const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

int qf_dist_same(qf_dist *d, const void *data, size_t bytes, const char *what, qf_err *err) {
    int rc = qf_dist_check(d, 0, err);
    if (rc || qf_dist_size(d) == 1) return rc;
    const uint64_t mine[2] = {(uint64_t)bytes, fnv1a(data, bytes)};
    uint64_t root[2] = {mine[0], mine[1]};
    qf_dist_bcast(d, root, sizeof root);
    if (root[0] != mine[0])
        return qf_set_err(err, QF_EMISMATCH, "%s differs from rank 0's (%llu bytes, rank 0 %llu)", what,
                          (unsigned long long)mine[0], (unsigned long long)root[0]);
    if (root[1] != mine[1])
        return qf_set_err(err, QF_EMISMATCH, "%s differs from rank 0's (same length, other content)", what);
    return 0;
}
