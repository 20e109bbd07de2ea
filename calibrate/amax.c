/* amax.c - per-weight max |x| over the calibration tokens (amax.h). A NaN
 * activation is an error naming the weight (it would poison the scale). */
#include "amax.h"

#include <math.h>
#include <stdlib.h>

typedef struct amax_acc {
    qf_calib_acc base;
    int n;
    float *amax;       /* [n] */
    uint8_t *seen;     /* [n] */
} amax_acc;

static int amax_observe(qf_calib_acc *a, const qf_calib *cal, int index, const float *x, int64_t T, qf_err *err) {
    amax_acc *am = (amax_acc *)a;
    const qf_weight *w = cal->targets[index].w;
    const int64_t n = T * w->n_in;
    float m = am->amax[index];
    for (int64_t i = 0; i < n; i++) {
        float v = fabsf(x[i]);
        if (isnan(v)) return qf_set_err(err, QF_ERANGE, "calibration: input of '%s' is NaN", w->name);
        if (v > m) m = v;
    }
    am->amax[index] = m;
    am->seen[index] = 1;
    return 0;
}

static void amax_destroy(qf_calib_acc *a) {
    amax_acc *am = (amax_acc *)a;
    if (!am) return;
    free(am->amax);
    free(am->seen);
    free(am);
}

int qf_calib_amax_new(const qf_calib *cal, qf_calib_acc **out, qf_err *err) {
    *out = NULL;
    amax_acc *am = calloc(1, sizeof *am);
    if (!am) return qf_set_err(err, QF_ENOMEM, "out of memory");
    am->base.kind = "amax";
    am->base.per_site = 0;
    am->base.observe = amax_observe;
    am->base.destroy = amax_destroy;
    am->n = cal->n_targets;
    am->amax = calloc((size_t)am->n + 1, sizeof *am->amax);
    am->seen = calloc((size_t)am->n + 1, 1);
    if (!am->amax || !am->seen) {
        amax_destroy(&am->base);
        return qf_set_err(err, QF_ENOMEM, "out of memory");
    }
    *out = &am->base;
    return 0;
}

float qf_calib_amax_get(const qf_calib_acc *a, int target, int *seen) {
    const amax_acc *am = (const amax_acc *)a;
    if (target < 0 || target >= am->n) {
        *seen = 0;
        return 0;
    }
    *seen = am->seen[target];
    return am->amax[target];
}
