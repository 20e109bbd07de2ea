/* iq4nl_nearest_exhaustive - compare qf_iq4_nl_nearest (midpoint count)
 * with qf_iq4_nl_nearest_ref (ggml's bisection, the spec) on all 2^32 float
 * bit patterns. About 30 s on 2 cores, so it is not part of make check
 * (tests/unit/kquant_test.c samples the same comparison).
 *
 *   build/tools/iq4nl_nearest_exhaustive     prints "mismatches: N", exit 1 if N > 0 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "codecs.h"

int main(void) {
    long long bad = 0;
    #pragma omp parallel for reduction(+ : bad) schedule(static)
    for (long long u = 0; u <= 0xffffffffLL; ++u) {
        const uint32_t b = (uint32_t)u;
        float v;
        memcpy(&v, &b, sizeof v);
        bad += qf_iq4_nl_nearest(v) != qf_iq4_nl_nearest_ref(v);
    }
    printf("mismatches: %lld of 4294967296 floats\n", bad);
    return bad != 0;
}
