/* qf_threads.h - thread counts as the libraries use them.
 *
 * A program decides how many threads to use (qf_cli_threads) and passes the
 * count down; library code never asks OpenMP for a process-wide default and
 * never sets one. Each parallel region takes num_threads(qf_threads_for(work,
 * n)): one thread when the work is too small to pay for waking the others.
 * Results never depend on the count: regions split independent rows or
 * elements, each computed the same way on any thread. */
#ifndef QF_THREADS_H
#define QF_THREADS_H

#include <stdint.h>

/* Below this much work (multiply-adds or element operations) a parallel
 * region costs more than it saves, far more on a busy machine. */
#define QF_PAR_MIN_WORK 65536.0

/* Threads worth using for `work` with `n_threads` available when a region
 * pays off only from `min_work` on: n_threads (at least 1), or 1. */
static inline int qf_threads_for_min(double work, double min_work, int n_threads) {
    return n_threads > 1 && work >= min_work ? n_threads : 1;
}

/* qf_threads_for_min with the common threshold QF_PAR_MIN_WORK. */
static inline int qf_threads_for(double work, int n_threads) {
    return qf_threads_for_min(work, QF_PAR_MIN_WORK, n_threads);
}

/* Rows per tile when `fit` rows fill the cache budget: at most an equal
 * share of the n_rows per thread so every thread gets work, rounded up to a
 * multiple of `step` (the kernel's row block) and at least one step. */
static inline int64_t qf_tile_rows(int64_t fit, int64_t n_rows, int n_threads, int64_t step) {
    const int64_t per_thread = (n_rows + n_threads - 1) / n_threads;
    int64_t r = fit < per_thread ? fit : per_thread;
    r = (r + step - 1) / step * step;
    return r < step ? step : r;
}

#endif
