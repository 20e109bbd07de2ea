/* gate.c - pass/fail limits on a verify run (see gate.h). */
#include "gate.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *qf_gate_name(qf_gate_kind kind) {
    switch (kind) {
    case QF_GATE_MAX_PPL: return "max-ppl";
    case QF_GATE_MAX_PPL_INCREASE: return "max-ppl-increase";
    case QF_GATE_MAX_KLD: return "max-kld";
    case QF_GATE_MIN_TOP1: return "min-top1";
    default: return "?";
    }
}

int qf_gate_needs_base(qf_gate_kind kind) { return kind != QF_GATE_MAX_PPL; }

int qf_gate_parse(qf_gate_kind kind, const char *s, double *limit, char *msg, size_t cap) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    const int pct = kind == QF_GATE_MIN_TOP1 && end != s && *end == '%' && end[1] == 0;
    if (errno || end == s || (*end && !pct) || !isfinite(v)) {
        snprintf(msg, cap, "--%s: '%s' is not a number", qf_gate_name(kind), s);
        return -1;
    }
    switch (kind) {
    case QF_GATE_MAX_PPL:
        if (!(v > 0)) {
            snprintf(msg, cap, "--max-ppl: %s is not a positive perplexity", s);
            return -1;
        }
        break;
    case QF_GATE_MAX_PPL_INCREASE: /* a percentage; negative demands an improvement */
        break;
    case QF_GATE_MAX_KLD:
        if (v < 0) {
            snprintf(msg, cap, "--max-kld: %s is negative (a KL-divergence is >= 0)", s);
            return -1;
        }
        break;
    case QF_GATE_MIN_TOP1:
        if (pct) v /= 100.0;
        else if (v > 1.0) {
            snprintf(msg, cap, "--min-top1: %s is more than 1; give a fraction (0.95) or a percentage (95%%)", s);
            return -1;
        }
        if (v < 0.0 || v > 1.0) {
            snprintf(msg, cap, "--min-top1: %s is outside 0..1 (0%%..100%%)", s);
            return -1;
        }
        break;
    default:
        snprintf(msg, cap, "unknown gate");
        return -1;
    }
    *limit = v;
    return 0;
}

int qf_gate_eval(qf_gate *g, const qf_gate_figures *f) {
    g->reason[0] = 0;
    g->value = NAN;
    g->pass = 0;
    if (qf_gate_needs_base(g->kind) && !f->has_base) {
        snprintf(g->reason, sizeof g->reason, "--%s needs a base (--base or --base-logits)", qf_gate_name(g->kind));
        return 0;
    }
    switch (g->kind) {
    case QF_GATE_MAX_PPL:
        g->value = f->ppl;
        g->pass = g->value <= g->limit;
        if (!g->pass) snprintf(g->reason, sizeof g->reason, "perplexity %.6g > %g", g->value, g->limit);
        break;
    case QF_GATE_MAX_PPL_INCREASE:
        g->value = 100.0 * (f->ppl / f->base_ppl - 1.0);
        g->pass = g->value <= g->limit;
        if (!g->pass)
            snprintf(g->reason, sizeof g->reason, "perplexity increase %.4g%% > %g%% (%.6g vs base %.6g)", g->value,
                     g->limit, f->ppl, f->base_ppl);
        break;
    case QF_GATE_MAX_KLD:
        g->value = f->kld_mean;
        g->pass = g->value <= g->limit;
        if (!g->pass) snprintf(g->reason, sizeof g->reason, "mean KLD %.4g > %g", g->value, g->limit);
        break;
    case QF_GATE_MIN_TOP1:
        g->value = f->top1;
        g->pass = g->value >= g->limit;
        if (!g->pass)
            snprintf(g->reason, sizeof g->reason, "top-1 agreement %.4g%% < %g%%", 100.0 * g->value, 100.0 * g->limit);
        break;
    default: snprintf(g->reason, sizeof g->reason, "unknown gate"); break;
    }
    return g->pass;
}
