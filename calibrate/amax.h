/* amax.h - the max |x| accumulator of calibrate.h: per collected weight, the
 * largest absolute input value over every calibration token (FP8 static
 * input scales are amax / 448, see quantize/fp8_write.h). */
#ifndef QF_AMAX_H
#define QF_AMAX_H

#include "calibrate.h"

int qf_calib_amax_new(const qf_calib *cal, qf_calib_acc **out, qf_err *err);
/* max |x| of target `target`; *seen = 0 when it never received a batch. */
float qf_calib_amax_get(const qf_calib_acc *a, int target, int *seen);

#endif
