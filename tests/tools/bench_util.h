/* bench_util.h - timing and random inputs shared by the micro-benchmark tools
 * (header-only): a clock that may count CPU time instead of wall time, and a
 * fixed-seed xorshift* generator, so every tool times the same data. */
#ifndef QF_BENCH_UTIL_H
#define QF_BENCH_UTIL_H

#include <stdint.h>
#include <time.h>

/* Seconds on the monotonic clock, or of this process's CPU time if cpu. */
static inline double bench_now(int cpu) {
    struct timespec ts;
    clock_gettime(cpu ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The next value in [-1, 1) of the xorshift* state *s. */
static inline float bench_frand(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return (float)((*s * 2685821657736338717ull) >> 40) / 16777216.0f * 2.0f - 1.0f;
}

#define BENCH_SEED 0x9E3779B97F4A7C15ull

#endif
