/* imatrix_compare - compare two imatrix files (.dat or GGUF, any mix) as the
 * quantizers see them: the same entry names, the same token counts per entry
 * (sum2/counts weights and, for two legacy files, ncall) and the weights
 * (mean x^2 per column) within a relative tolerance.
 *
 *   imatrix_compare A B [--tol REL] [--mean-tol REL] [--same-ncall]
 *
 * Prints "entries N/M, max rel diff X (entry[col]), mean Y, exact K/T" and
 * exits 0 when everything agrees (max within --tol, default 0; mean within
 * --mean-tol, default unchecked), 1 otherwise, 2 on a usage or read error.
 * The mean separates systematic differences (a wrong KV-cache precision)
 * from the scatter of a few small columns better than the max. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imatrix.h"

int main(int argc, char **argv) {
    const char *pa = NULL, *pb = NULL;
    double tol = 0.0, mean_tol = -1.0;
    int same_ncall = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tol") && i + 1 < argc) tol = atof(argv[++i]);
        else if (!strcmp(argv[i], "--mean-tol") && i + 1 < argc) mean_tol = atof(argv[++i]);
        else if (!strcmp(argv[i], "--same-ncall")) same_ncall = 1;
        else if (!pa) pa = argv[i];
        else if (!pb) pb = argv[i];
        else pa = NULL, pb = NULL, i = argc;
    }
    if (!pa || !pb) {
        fprintf(stderr, "usage: imatrix_compare A B [--tol REL] [--mean-tol REL] [--same-ncall]\n");
        return 2;
    }
    qf_err err = {0};
    qf_imatrix a, b;
    qf_imatrix_init(&a);
    qf_imatrix_init(&b);
    if (qf_imatrix_read(&a, pa, &err) < 0 || qf_imatrix_read(&b, pb, &err) < 0) {
        fprintf(stderr, "imatrix_compare: error: %s\n", err.msg);
        return 2;
    }
    int bad = 0;
    if (a.n_entries != b.n_entries) {
        printf("entry count differs: %zu vs %zu\n", a.n_entries, b.n_entries);
        bad = 1;
    }
    double max_rel = 0.0, sum_rel = 0.0;
    const char *worst = "";
    long long worst_col = -1, exact = 0, total = 0;
    for (size_t i = 0; i < a.n_entries; i++) {
        const qf_imatrix_entry *ea = &a.entries[i];
        const qf_imatrix_entry *eb = qf_imatrix_find(&b, ea->name);
        if (!eb) {
            printf("entry %s only in %s\n", ea->name, pa);
            bad = 1;
            continue;
        }
        if (ea->n_cols != eb->n_cols || ea->n_mat != eb->n_mat) {
            printf("entry %s: shape %ux%u vs %ux%u\n", ea->name, ea->n_cols, ea->n_mat, eb->n_cols, eb->n_mat);
            bad = 1;
            continue;
        }
        if (same_ncall && ea->ncall != eb->ncall) {
            printf("entry %s: ncall %lld vs %lld\n", ea->name, (long long)ea->ncall, (long long)eb->ncall);
            bad = 1;
        }
        /* tokens per entry: GGUF counts, or for .dat the ncall (unknown scale) */
        if (a.chunk_size && b.chunk_size && ea->counts[0] != eb->counts[0]) {
            printf("entry %s: counts %g vs %g\n", ea->name, ea->counts[0], eb->counts[0]);
            bad = 1;
        }
        const size_t n = (size_t)ea->n_cols * ea->n_mat;
        float *wa = malloc(n * sizeof *wa), *wb = malloc(n * sizeof *wb);
        if (!wa || !wb) return 2;
        qf_imatrix_entry_weights(ea, wa);
        qf_imatrix_entry_weights(eb, wb);
        for (size_t j = 0; j < n; j++) {
            double d = fabs((double)wa[j] - (double)wb[j]);
            double r = d / (fabs((double)wb[j]) > 1e-30 ? fabs((double)wb[j]) : 1e-30);
            exact += wa[j] == wb[j];
            sum_rel += r;
            total++;
            if (r > max_rel) {
                max_rel = r;
                worst = ea->name;
                worst_col = (long long)j;
            }
        }
        free(wa);
        free(wb);
    }
    const double mean_rel = total ? sum_rel / (double)total : 0.0;
    printf("entries %zu/%zu, max rel diff %.3e (%s[%lld]), mean %.3e, exact %lld/%lld\n", a.n_entries, b.n_entries,
           max_rel, worst, worst_col, mean_rel, exact, total);
    if (max_rel > tol || (mean_tol >= 0 && mean_rel > mean_tol)) bad = 1;
    qf_imatrix_free(&a);
    qf_imatrix_free(&b);
    return bad;
}
