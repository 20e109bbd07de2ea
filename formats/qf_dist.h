/* qf_dist.h - data parallelism across processes (ranks) without knowing how
 * they talk: the program fills a qf_dist (qf_mpi.c does it with MPI) and
 * passes it to the libraries through their option structs; NULL means one
 * process. Libraries never see MPI.
 *
 * Collectives. agree, reduce_ordered, bcast and bcast_from must be called by every rank
 * in the same sequence. A rank that fails between two collectives stops
 * calling them and returns its error; the program then calls qf_dist_check
 * with it, which meets the others at their next qf_dist_check. So every
 * library puts a qf_dist_check before each data collective whose inputs
 * could have failed to come about.
 *
 * Order. Work is split by chunk: chunk k runs on rank k % size, so round j
 * holds chunks j*size .. j*size + size-1 on ranks 0 .. size-1. A sum over
 * chunks is made of per-chunk partials added on rank 0 in chunk order,
 * total = ((total + p_0) + p_1) + ..., which a single process does the same
 * way: the result is the same bytes for any number of ranks.
 */
#ifndef QF_DIST_H
#define QF_DIST_H

#include <stddef.h>

#include "qf_error.h"

typedef struct qf_dist qf_dist;
struct qf_dist {
    int rank, size;
    int failed_rank;          /* -1 until an agreement saw a failure: then the lowest failing rank */
    /* Every rank says whether it failed; returns the lowest failing rank or -1. */
    int (*agree)(qf_dist *d, int failed);
    /* Ranks 0 .. n_parts-1 pass part[n], the others NULL; on rank 0 only,
     * acc[i] += part_r[i] for r = 0, 1, .., n_parts-1 in that order. */
    void (*reduce_ordered)(qf_dist *d, double *acc, const double *part, size_t n, int n_parts);
    /* buf[bytes] of rank 0 copied to every rank. */
    void (*bcast)(qf_dist *d, void *buf, size_t bytes);
    /* buf[bytes] of rank `root` copied to every rank. */
    void (*bcast_from)(qf_dist *d, int root, void *buf, size_t bytes);
    void *impl;
};

/* Ranks of d (1 for NULL) and this process's rank (0 for NULL). */
int qf_dist_size(const qf_dist *d);
int qf_dist_rank(const qf_dist *d);

/* Agree on rc (0: this rank is fine). Returns 0 when every rank is fine;
 * rc (err untouched) when this rank failed; QF_EIO with "rank K failed"
 * when only another rank K did. Once a failure is agreed, later calls return
 * at once without talking. With one process: rc. */
int qf_dist_check(qf_dist *d, int rc, qf_err *err);

/* The chunk-order sum of one round (see above): acc += part with one
 * process, d->reduce_ordered otherwise. n_parts = parts this round. */
void qf_dist_reduce(qf_dist *d, double *acc, const double *part, size_t n, int n_parts);

/* Rank 0's buf to every rank (nothing with one process). */
void qf_dist_bcast(qf_dist *d, void *buf, size_t bytes);

/* Rank root's buf to every rank (nothing with one process). */
void qf_dist_bcast_from(qf_dist *d, int root, void *buf, size_t bytes);

/* Collective check that data[bytes] (e.g. the calibration tokens) is the
 * same on every rank: agrees first (qf_dist_check), then compares a hash
 * with rank 0's; QF_EMISMATCH naming `what` on a rank whose data differ. */
int qf_dist_same(qf_dist *d, const void *data, size_t bytes, const char *what, qf_err *err);

#endif
