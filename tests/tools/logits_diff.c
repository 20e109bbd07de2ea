/* logits_diff - how far apart two models' logits are on the same tokens.
 *
 *   logits_diff A B TEXT [N]
 *
 * Runs both models (GGUF files or HF directories; A's vocabulary tokenizes
 * the first N tokens of TEXT, default 64) with plain F32 activations and
 * prints max over positions of max_i |a_i - b_i| / max_i |b_i|. Used to check
 * that a transformation meant to be exact (AWQ's scale folding) is.
 * Exit 0, 1 on an error.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "forward.h"
#include "model.h"
#include "text.h"

static int run(const qf_model *m, const int32_t *ids, int64_t n, float *logits, qf_err *err) {
    qf_ctx c;
    int rc = qf_ctx_init(&c, m, n, n, err);
    if (rc) return rc;
    c.act_llamacpp = 0;
    c.kv_f16 = 0;
    rc = qf_forward(&c, ids, n, 0, logits, err);
    qf_ctx_free(&c);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: logits_diff A B TEXT [N]\n");
        return 2;
    }
    int64_t n = argc > 4 ? atoll(argv[4]) : 64;
    qf_err err = {0};
    qf_model a, b;
    qf_text tx;
    char *text = NULL;
    size_t len = 0;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    if (qf_model_load(&a, argv[1], &err) || qf_model_load(&b, argv[2], &err) || qf_text_init_model(&tx, &a, &err) ||
        qf_read_text_any(argv[3], &text, &len, &err) || qf_text_encode(&tx, text, 1, &ids, &n_ids, &err)) {
        fprintf(stderr, "logits_diff: error: %s\n", err.msg);
        return 1;
    }
    if (n_ids < n) n = n_ids;
    const int64_t V = a.hp.n_vocab;
    if (b.hp.n_vocab != V || n < 1) {
        fprintf(stderr, "logits_diff: error: vocabularies differ or no tokens\n");
        return 1;
    }
    float *la = malloc((size_t)(n * V) * sizeof *la), *lb = malloc((size_t)(n * V) * sizeof *lb);
    if (!la || !lb || run(&a, ids, n, la, &err) || run(&b, ids, n, lb, &err)) {
        fprintf(stderr, "logits_diff: error: %s\n", err.msg[0] ? err.msg : "out of memory");
        return 1;
    }
    double worst = 0;
    for (int64_t t = 0; t < n; t++) {
        double d = 0, mx = 0;
        for (int64_t i = 0; i < V; i++) {
            d = fmax(d, fabs((double)la[t * V + i] - (double)lb[t * V + i]));
            mx = fmax(mx, fabs((double)lb[t * V + i]));
        }
        const double r = mx > 0 ? d / mx : d;
        if (!(r <= worst)) worst = r; /* NaN propagates */
    }
    printf("%.3e\n", worst);
    free(la);
    free(lb);
    free(ids);
    free(text);
    qf_text_free(&tx);
    qf_model_free(&a);
    qf_model_free(&b);
    return 0;
}
