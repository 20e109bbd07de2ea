/* gate.h - pass/fail limits on a verify run (qforge-verify --max-ppl,
 * --max-ppl-increase, --max-kld, --min-top1): the CI gate of a quantized
 * model against its base. */
#ifndef QF_GATE_H
#define QF_GATE_H

#include <stddef.h>

typedef enum qf_gate_kind {
    QF_GATE_MAX_PPL = 0,          /* ppl <= limit */
    QF_GATE_MAX_PPL_INCREASE = 1, /* 100 * (ppl / base_ppl - 1) <= limit (percent) */
    QF_GATE_MAX_KLD = 2,          /* mean KLD <= limit */
    QF_GATE_MIN_TOP1 = 3,         /* top-1 agreement >= limit (fraction 0..1) */
    QF_GATE_COUNT
} qf_gate_kind;

typedef struct qf_gate {
    qf_gate_kind kind;
    double limit;
    /* filled by qf_gate_eval */
    double value;
    int pass;
    char reason[160];             /* failing: "mean KLD 0.0712 > 0.05" */
} qf_gate;

/* The figures a gate can look at; has_base = 0 leaves the base ones unset. */
typedef struct qf_gate_figures {
    double ppl;
    int has_base;
    double base_ppl, kld_mean, top1;
} qf_gate_figures;

const char *qf_gate_name(qf_gate_kind kind);     /* "max-kld" ... (the option without "--") */
int qf_gate_needs_base(qf_gate_kind kind);
/* Parse a limit; --min-top1 takes a fraction "0.95" or a percentage "95%".
 * Returns 0, or -1 with a reason in msg (for the usage error). */
int qf_gate_parse(qf_gate_kind kind, const char *s, double *limit, char *msg, size_t cap);
/* Evaluate one gate; NaN values fail. Returns g->pass. */
int qf_gate_eval(qf_gate *g, const qf_gate_figures *f);

#endif
