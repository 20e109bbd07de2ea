/* qforge-quantize - quantize a GGUF model the way llama-quantize does.
 *
 *   qforge-quantize IN.gguf OUT.gguf TYPE [options]
 *
 * Data (the summary, or --json) goes to stdout; progress, fallbacks and
 * errors to stderr. Exit 0 ok, 1 failure, 2 usage error.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "qf_cli.h"
#include "ggml_types.h"
#include "gguf.h"
#include "imatrix.h"
#include "quantize.h"
#include "gptq_run.h"
#include "awq.h"

#define PROG "qforge-quantize"

static const uint32_t tensor_types[] = {
    GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
    GGML_TYPE_Q8_0, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K,
    GGML_TYPE_IQ4_NL,
};

static const char *tname(uint32_t type) {
    const ggml_type_traits *tt = ggml_get_type_traits(type);
    return tt && tt->name ? tt->name : "?";
}

static void usage(FILE *fp) {
    size_t n;
    const qf_quant_preset *p = qf_quant_presets(&n);
    fprintf(fp,
            "usage: " PROG " IN.gguf OUT.gguf TYPE [options]\n"
            "\n"
            "Quantize a GGUF model tensor by tensor with llama-quantize's type choices\n"
            "(llama.cpp c392e50): with --method exact, the bytes llama-quantize writes for the\n"
            "same input, TYPE and imatrix; with --method search, the same types and size with\n"
            "a lower error (see --method).\n"
            "IN is a GGUF file or a Hugging Face checkpoint directory; a directory is first\n"
            "converted losslessly (as qforge-convert --outtype auto) into a temp file next to\n"
            "OUT, deleted afterwards (it needs that much free disk space).\n"
            "\n"
            "TYPE (case-insensitive):\n");
    for (size_t i = 0; i < n; i++) fprintf(fp, "  %-7s %s\n", p[i].name, p[i].summary);
    fprintf(fp,
            "  Norms and other 1-D tensors stay as they are. Rows whose length the type cannot\n"
            "  block fall back (Q4_K->Q5_0, Q5_K->Q5_1, Q6_K->Q8_0, Q2_K/Q3_K->IQ4_NL, then F16);\n"
            "  every fallback is reported. docs/quantize.md has the full mix table.\n"
            "\n"
            "options:\n"
            "  --imatrix FILE           importance matrix (llama-imatrix .dat or GGUF); its path is\n"
            "                           recorded as given in quantize.imatrix.file\n"
            "  --method M               how blocks are chosen: exact (ggml's quantizers, byte-identical\n"
            "                           to llama-quantize), search (per block the lowest weighted\n"
            "                           error found, never above exact's; same types and size; up to\n"
            "                           12x slower than exact for K-quants), or auto (default): search\n"
            "                           for every tensor of the K-quant types (Q2_K..Q6_K, *_S/M/L)\n"
            "                           and IQ4_NL, the fast search for the 256-weight K-quant blocks\n"
            "                           (about 2.5x exact's time, part of the gain), and for the legacy\n"
            "                           types with --imatrix (but Q4_1/Q5_0 tensors); exact for\n"
            "                           legacy types without imatrix. docs/quantize.md has the reasons\n"
            "                           gptq: GPTQ from calibration text (--calib) for every linear\n"
            "                           (same types, sizes and fallbacks; token_embd as auto), see\n"
            "                           docs/gptq.md\n"
            "                           awq: activation-aware per-channel scales folded into the\n"
            "                           norms / v / up rows, and clipping, from --calib (docs/awq.md)\n"
            "                           awq+gptq: awq's scales, then GPTQ onto the grid\n"
            "  --calib TEXT             gptq, awq: calibration text (plain, .gz, .jsonl)\n"
            "  --calib-ctx N            gptq: tokens per chunk (default 512)\n"
            "  --calib-chunks N         gptq: at most N chunks (default: all full chunks)\n"
            "  --damp X                 gptq: damping, fraction of the mean Hessian diagonal (default\n"
            "                           0.01; raised 10x up to 3 times if needed, reported)\n"
            "  --act-order              gptq: columns by descending activation energy\n"
            "  --awq-alpha X            awq: use alpha X in [0, 1) for every group (no search)\n"
            "  --awq-no-clip            awq: no clipping search\n"
            "  --mem-budget SIZE        gptq: hidden states kept in RAM up to SIZE (bytes, K/M/G\n"
            "                           suffix; default a quarter of RAM), beyond in a temp file\n"
            "  --tensor-type RE=T       tensors whose name matches the POSIX extended regex RE\n"
            "                           (searched anywhere in the name; \\d allowed) get type T;\n"
            "                           first match wins; repeatable. T is a tensor type:\n"
            "                           ");
    for (size_t i = 0; i < sizeof tensor_types / sizeof *tensor_types; i++)
        fprintf(fp, "%s%s", tname(tensor_types[i]), i + 1 < sizeof tensor_types / sizeof *tensor_types ? " " : "\n");
    fprintf(fp,
            "  --output-tensor-type T   type of output.weight (and of a tied token_embd)\n"
            "  --token-embedding-type T type of token_embd.weight\n"
            "  --pure                   no mix rules: every quantizable tensor gets TYPE's base type\n"
            "                           (overrides and shape fallbacks still apply)\n"
            "  --allow-requantize       accept already-quantized input tensors (dequantize, then\n"
            "                           quantize again; loses quality)\n"
            "  --threads N              OpenMP threads (default: OMP_NUM_THREADS or all cores);\n"
            "                           the output bytes are the same for any N\n"
            "  --manifest               also write OUT.gguf.xxh: XXH3-128 of every tensor and the file\n"
            "  --fsync                  fsync the output before renaming it into place (durable\n"
            "                           against a power loss; default off, as llama-quantize: the\n"
            "                           temp file + rename already means no partial file on failure)\n"
            "  --dry-run                print the per-tensor plan, write nothing\n"
            "  --json                   print the summary as JSON\n"
            "  --quiet                  no progress and no fallback lines on stderr\n"
            "  -h, --help               this text\n"
            "\n"
            "Memory: the input is memory-mapped and converted in chunks of rows of at most\n"
            "32 MiB as F32; peak RSS is about 2 x 32 MiB (or 2 rows of the widest tensor\n"
            "as F32, if larger) plus the metadata, independent of the model size. Input pages\n"
            "are released as they are consumed.\n"
            "With --method gptq add: hidden states 4 * chunks * ctx * n_embd bytes (up to\n"
            "--mem-budget), one block's weights as F32 (twice), the largest Hessian and its\n"
            "factor (8 * 2 * n_in^2 + 4 * n_in^2 bytes), and the GPTQ output blocks (the\n"
            "quantized linears, until written).\n"
            "--method awq / awq+gptq: as gptq, plus a block's v and up as F32 and two input\n"
            "Hessians (awq+gptq).\n");
}

static int parse_tensor_type(const char *s, uint32_t *out) {
    int t = ggml_type_from_name(s);
    if (t < 0) return -1;
    for (size_t i = 0; i < sizeof tensor_types / sizeof *tensor_types; i++)
        if (tensor_types[i] == (uint32_t)t) {
            *out = (uint32_t)t;
            return 0;
        }
    return -1;
}

static int bad_tensor_type(const char *opt, const char *s) {
    char list[256] = "";
    for (size_t i = 0; i < sizeof tensor_types / sizeof *tensor_types; i++) {
        strncat(list, tname(tensor_types[i]), sizeof list - strlen(list) - 1);
        strncat(list, " ", sizeof list - strlen(list) - 1);
    }
    return qf_cli_usage(PROG, "%s: unknown tensor type '%s'; valid: %s", opt, s, list);
}

/* ---- progress on a terminal ---- */

typedef struct progress_state {
    double t0, last;
    int shown;
} progress_state;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void on_gptq_progress(void *user, int layer, int n_layer, const char *stage) {
    progress_state *ps = user;
    double el = now_s() - ps->t0;
    double eta = layer > 0 && layer < n_layer ? el * (double)(n_layer - layer) / (double)layer : 0;
    if (layer < n_layer)
        fprintf(stderr, "\r[gptq] layer %3d/%-3d %-12s %6.0fs  ETA %5.0fs ", layer + 1, n_layer, stage, el, eta);
    else
        fprintf(stderr, "\r[gptq] output          %-12s %6.0fs              ", stage, el);
    ps->shown = 1;
}

static void on_progress(const qf_quantize_progress *p, void *user) {
    progress_state *ps = user;
    double t = now_s();
    int last = p->bytes_done >= p->bytes_total;
    if (!last && t - ps->last < 0.1) return;
    ps->last = t;
    double el = t - ps->t0, mbs = el > 0 ? (double)p->bytes_done / 1e6 / el : 0;
    double eta = p->bytes_done > 0 ? el * (double)(p->bytes_total - p->bytes_done) / (double)p->bytes_done : 0;
    fprintf(stderr, "\r[%4llu/%4llu] %-40.40s %-6s %7.1f MB/s  ETA %5.0fs ", (unsigned long long)p->tensor_index + 1,
            (unsigned long long)p->n_tensors, p->name, tname(p->type), mbs, eta);
    ps->shown = 1;
}

/* ---- reports ---- */

static void print_fallback(const qf_quant_tensor_plan *t) {
    const ggml_type_traits *w = ggml_get_type_traits(t->wanted_type), *f = ggml_get_type_traits(t->table_fallback);
    if (t->table_fallback != t->type && f)
        fprintf(stderr, PROG ": fallback: %s: %s needs rows of a multiple of %u and %s of %u, ne0 is %llu -> %s\n",
                t->name, w->name, w->block_size, f->name, f->block_size, (unsigned long long)t->ne[0], tname(t->type));
    else
        fprintf(stderr, PROG ": fallback: %s: %s needs rows of a multiple of %u, ne0 is %llu -> %s\n", t->name,
                w->name, w->block_size, (unsigned long long)t->ne[0], tname(t->type));
}

static double bits_per_weight(const qf_quant_plan *p) {
    return p->n_elements ? 8.0 * (double)p->out_tensor_bytes / (double)p->n_elements : 0;
}

static void print_json(const qf_quantize_opts *o, const qf_quantize_result *r, int dry_run) {
    const qf_quant_plan *p = &r->plan;
    FILE *fp = stdout;
    fprintf(fp, "{\"input\": ");
    qf_cli_json_str(fp, o->in_path);
    fprintf(fp, ", \"output\": ");
    qf_cli_json_str(fp, o->out_path);
    fprintf(fp, ", \"type\": ");
    qf_cli_json_str(fp, o->preset->name);
    fprintf(fp, ", \"file_type\": %u, \"dry_run\": %s", o->preset->ftype, dry_run ? "true" : "false");
    fprintf(fp, ", \"method\": \"%s\", \"tensors_searched\": %zu", qf_quant_method_name(p->method), p->n_searched);
    fprintf(fp, ",\n \"input_bytes\": %llu, \"output_bytes\": %llu", (unsigned long long)r->in_file_bytes,
            (unsigned long long)r->out_file_bytes);
    fprintf(fp, ", \"input_tensor_bytes\": %llu, \"output_tensor_bytes\": %llu, \"n_elements\": %llu",
            (unsigned long long)p->in_tensor_bytes, (unsigned long long)p->out_tensor_bytes,
            (unsigned long long)p->n_elements);
    fprintf(fp, ", \"bits_per_weight\": %.4f", bits_per_weight(p));
    fprintf(fp, ",\n \"n_tensors\": %zu, \"converted\": %zu, \"copied\": %zu", p->n, p->n_converted,
            p->n - p->n_converted);
    fprintf(fp, ", \"types\": {");
    int first = 1;
    for (uint32_t ty = 0; ty < GGML_TYPE_COUNT; ty++)
        if (p->type_count[ty]) {
            fprintf(fp, "%s\"%s\": %zu", first ? "" : ", ", tname(ty), p->type_count[ty]);
            first = 0;
        }
    fprintf(fp, "}");
    if (o->imatrix_path) {
        fprintf(fp, ",\n \"imatrix\": {\"file\": ");
        qf_cli_json_str(fp, o->imatrix_path);
        fprintf(fp, ", \"entries\": %zu, \"tensors_using_it\": %zu}", r->imatrix_entries, p->n_imatrix_used);
    } else {
        fprintf(fp, ",\n \"imatrix\": null");
    }
    fprintf(fp, ",\n \"n_fallbacks\": %zu, \"fallbacks\": [", p->n_fallbacks);
    first = 1;
    for (size_t i = 0; i < p->n; i++) {
        const qf_quant_tensor_plan *t = &p->t[i];
        if (!t->fallback) continue;
        fprintf(fp, "%s\n  {\"tensor\": ", first ? "" : ",");
        qf_cli_json_str(fp, t->name);
        fprintf(fp, ", \"ne0\": %llu, \"wanted\": \"%s\", \"used\": \"%s\"}", (unsigned long long)t->ne[0],
                tname(t->wanted_type), tname(t->type));
        first = 0;
    }
    fprintf(fp, "],\n \"tensors\": [");
    for (size_t i = 0; i < p->n; i++) {
        const qf_quant_tensor_plan *t = &p->t[i];
        fprintf(fp, "%s\n  {\"name\": ", i ? "," : "");
        qf_cli_json_str(fp, t->name);
        fprintf(fp,
                ", \"from\": \"%s\", \"type\": \"%s\", \"converted\": %s, \"imatrix\": %s, \"search\": %s, "
                "\"bytes\": %llu}",
                tname(t->src_type), tname(t->type), t->convert ? "true" : "false", t->uses_imatrix ? "true" : "false",
                t->search ? "true" : "false", (unsigned long long)t->out_nbytes);
    }
    fprintf(fp, "],\n \"manifest\": ");
    if (o->write_manifest && !dry_run) {
        fprintf(fp, "\"");
        for (const char *c = o->out_path; *c; c++) {
            if (*c == '"' || *c == '\\') fputc('\\', fp);
            fputc(*c, fp);
        }
        fprintf(fp, ".xxh\"");
    } else {
        fprintf(fp, "null");
    }
    if (o->awq_report && (p->method == QF_QUANT_METHOD_AWQ || p->method == QF_QUANT_METHOD_AWQ_GPTQ) && !dry_run) {
        const qf_awq_report *a = o->awq_report;
        fprintf(fp, ",\n \"awq\": {\"chunks\": %lld, \"tokens\": %lld, \"hidden_bytes\": %llu, \"spilled\": %s, "
                "\"forward_seconds\": %.3f, \"search_seconds\": %.3f, \"groups\": [",
                (long long)a->n_chunks, (long long)a->n_tokens, (unsigned long long)a->hidden_bytes,
                a->spilled ? "true" : "false", a->forward_seconds, a->search_seconds);
        for (size_t i = 0; i < a->n; i++) {
            fprintf(fp, "%s\n  {\"group\": ", i ? "," : "");
            qf_cli_json_str(fp, a->g[i].name);
            fprintf(fp, ", \"alpha\": %.2f, \"folded\": %s, \"loss_alpha0\": %.6g, \"loss\": %.6g, \"loss_final\": %.6g}",
                    a->g[i].alpha, a->g[i].folded ? "true" : "false", a->g[i].loss0, a->g[i].loss, a->g[i].loss_final);
        }
        fprintf(fp, "]}");
    }
    if (o->gptq_report && p->method == QF_QUANT_METHOD_GPTQ && !dry_run) {
        const qf_gptq_report *g = o->gptq_report;
        fprintf(fp, ",\n \"gptq\": {\"chunks\": %lld, \"tokens\": %lld, \"hidden_bytes\": %llu, \"spilled\": %s, "
                "\"forward_seconds\": %.3f, \"solve_seconds\": %.3f, \"damping_raised\": %d, \"tensors\": [",
                (long long)g->n_chunks, (long long)g->n_tokens, (unsigned long long)g->hidden_bytes,
                g->spilled ? "true" : "false", g->forward_seconds, g->solve_seconds, g->retried);
        for (size_t i = 0; i < g->n; i++) {
            fprintf(fp, "%s\n  {\"name\": ", i ? "," : "");
            qf_cli_json_str(fp, g->t[i].name);
            fprintf(fp, ", \"type\": \"%s\", \"loss\": %.6g, \"loss_rtn\": %.6g, \"damp\": %g, \"retries\": %d}",
                    tname(g->t[i].type), g->t[i].loss, g->t[i].loss_rtn, g->t[i].damp, g->t[i].retries);
        }
        fprintf(fp, "]}");
    }
    fprintf(fp, ", \"seconds\": %.3f}\n", r->seconds);
}

static void print_summary(const qf_quantize_opts *o, const qf_quantize_result *r) {
    const qf_quant_plan *p = &r->plan;
    printf("%s -> %s as %s (general.file_type %u)\n", o->in_path, o->out_path, o->preset->name, o->preset->ftype);
    printf("  input:     %llu bytes, %zu tensors, %llu weights\n", (unsigned long long)r->in_file_bytes, p->n,
           (unsigned long long)p->n_elements);
    printf("  output:    %llu bytes (%.1f%% of the input), %.3f bits per weight\n",
           (unsigned long long)r->out_file_bytes,
           r->in_file_bytes ? 100.0 * (double)r->out_file_bytes / (double)r->in_file_bytes : 0.0,
           bits_per_weight(p));
    printf("  tensors:   %zu converted, %zu copied;", p->n_converted, p->n - p->n_converted);
    for (uint32_t ty = 0; ty < GGML_TYPE_COUNT; ty++)
        if (p->type_count[ty]) printf(" %s %zu", tname(ty), p->type_count[ty]);
    printf("\n");
    if (o->imatrix_path)
        printf("  imatrix:   %s, %zu entries, used for %zu tensors\n", o->imatrix_path, r->imatrix_entries,
               p->n_imatrix_used);
    printf("  method:    %s (%zu tensors searched)\n", qf_quant_method_name(p->method), p->n_searched);
    printf("  fallbacks: %zu\n", p->n_fallbacks);
    if (o->gptq_report && p->method == QF_QUANT_METHOD_GPTQ) {
        const qf_gptq_report *g = o->gptq_report;
        double lg = 0, lr = 0;
        for (size_t i = 0; i < g->n; i++) {
            lg += g->t[i].loss;
            lr += g->t[i].loss_rtn;
        }
        printf("  gptq:      %zu tensors, mean relative output error %.4g (round-to-nearest %.4g);\n"
               "             %lld chunks, %lld tokens; forward %.2f s, solve %.2f s; damping raised for %d tensors%s\n",
               g->n, g->n ? lg / (double)g->n : 0.0, g->n ? lr / (double)g->n : 0.0, (long long)g->n_chunks,
               (long long)g->n_tokens, g->forward_seconds, g->solve_seconds, g->retried,
               g->spilled ? "; hidden states spilled to disk" : "");
    }
    if (o->awq_report && (p->method == QF_QUANT_METHOD_AWQ || p->method == QF_QUANT_METHOD_AWQ_GPTQ)) {
        const qf_awq_report *a = o->awq_report;
        double l0 = 0, l = 0, lf = 0, al = 0;
        for (size_t i = 0; i < a->n; i++) {
            l0 += a->g[i].loss0;
            l += a->g[i].loss;
            lf += a->g[i].loss_final;
            al += a->g[i].alpha;
        }
        const double n = a->n ? (double)a->n : 1.0;
        printf("  awq:       %zu groups, mean alpha %.2f, mean relative output error %.4g at alpha 0, %.4g scaled,\n"
               "             %.4g written; %lld chunks, %lld tokens; forward %.2f s, search %.2f s%s\n",
               a->n, al / n, l0 / n, l / n, lf / n, (long long)a->n_chunks, (long long)a->n_tokens,
               a->forward_seconds, a->search_seconds, a->spilled ? "; hidden states spilled to disk" : "");
    }
    if (o->write_manifest) printf("  manifest:  %s.xxh\n", o->out_path);
    double s = r->seconds;
    printf("  time:      %.2f s (%.1f MB/s of input)\n", s, s > 0 ? (double)p->in_tensor_bytes / 1e6 / s : 0.0);
}

static void print_plan(const qf_quant_plan *p) {
    printf("%-40s %-16s %-7s %-7s %s\n", "tensor", "shape", "from", "to", "note");
    for (size_t i = 0; i < p->n; i++) {
        const qf_quant_tensor_plan *t = &p->t[i];
        char shape[64];
        int k = snprintf(shape, sizeof shape, "%llu", (unsigned long long)t->ne[0]);
        for (uint32_t d = 1; d < t->n_dims && k > 0 && (size_t)k < sizeof shape; d++)
            k += snprintf(shape + k, sizeof shape - (size_t)k, "x%llu", (unsigned long long)t->ne[d]);
        char note[160] = "";
        if (!t->quantizable) snprintf(note, sizeof note, "kept (not quantized)");
        else if (!t->convert) snprintf(note, sizeof note, "copied (already %s)", tname(t->type));
        if (t->fallback)
            snprintf(note + strlen(note), sizeof note - strlen(note), "%sfallback from %s", note[0] ? ", " : "",
                     tname(t->wanted_type));
        if (t->override_index >= 0)
            snprintf(note + strlen(note), sizeof note - strlen(note), "%s--tensor-type #%d", note[0] ? ", " : "",
                     t->override_index + 1);
        if (t->uses_imatrix) snprintf(note + strlen(note), sizeof note - strlen(note), "%simatrix", note[0] ? ", " : "");
        if (t->search) snprintf(note + strlen(note), sizeof note - strlen(note), "%ssearch", note[0] ? ", " : "");
        printf("%-40s %-16s %-7s %-7s %s\n", t->name, shape, tname(t->src_type), tname(t->type), note);
    }
}

/* --dry-run: the plan only. */
static int dry_run(const qf_quantize_opts *o, qf_quantize_result *r, qf_err *err) {
    gguf_file in;
    qf_imatrix im;
    qf_imatrix_init(&im);
    memset(r, 0, sizeof *r);
    struct stat st;
    if (stat(o->in_path, &st) == 0 && S_ISDIR(st.st_mode))
        return qf_set_err(err, QF_EUNSUPPORTED, "%s: --dry-run needs a GGUF input (convert the checkpoint first)",
                          o->in_path);
    int rc = gguf_open(&in, o->in_path, err);
    if (rc) return rc;
    if (o->imatrix_path && (rc = qf_imatrix_read(&im, o->imatrix_path, err))) goto done;
    rc = qf_quant_plan_build(&r->plan, &in, o, o->imatrix_path ? &im : NULL, err);
    r->in_file_bytes = in.map_size;
    r->imatrix_entries = im.n_entries;
    for (size_t i = 0; i < r->plan.n; i++) r->plan.t[i].src = NULL;
done:
    qf_imatrix_free(&im);
    gguf_close(&in);
    return rc;
}

int main(int argc, char **argv) {
    qf_quantize_opts o;
    qf_quantize_opts_init(&o);
    o.method = QF_QUANT_METHOD_AUTO;
    const char *pos[3];
    int n_pos = 0, quiet = 0, json = 0, dry = 0;
    qf_gptq_run_opts gopt;
    memset(&gopt, 0, sizeof gopt);
    qf_gptq_report grep_;
    memset(&grep_, 0, sizeof grep_);
    qf_awq_run_opts aopt;
    memset(&aopt, 0, sizeof aopt);
    aopt.alpha = -1;
    qf_awq_report arep;
    memset(&arep, 0, sizeof arep);
    qf_tensor_type_override *ovs = NULL;
    size_t n_ovs = 0;
    int rc;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        char opt[64];
        if (strncmp(a, "--", 2) == 0 && strchr(a, '=') && (size_t)(strchr(a, '=') - a) < sizeof opt) {
            size_t k = (size_t)(strchr(a, '=') - a);
            memcpy(opt, a, k);
            opt[k] = 0;
            val = a + k + 1;
            a = opt;
        }
#define NEEDS_VALUE()                                                             \
    do {                                                                          \
        if (!val) {                                                               \
            if (i + 1 >= argc) return qf_cli_usage(PROG, "%s needs a value", a);         \
            val = argv[++i];                                                      \
        }                                                                         \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            free(ovs);
            return 0;
        } else if (!strcmp(a, "--imatrix")) {
            NEEDS_VALUE();
            o.imatrix_path = val;
        } else if (!strcmp(a, "--method")) {
            NEEDS_VALUE();
            o.method = qf_quant_method_from_name(val);
            if (o.method < 0) return qf_cli_usage(PROG, "--method '%s': expected exact, search, auto, gptq, awq or awq+gptq", val);
        } else if (!strcmp(a, "--calib")) {
            NEEDS_VALUE();
            gopt.calib_path = val;
        } else if (!strcmp(a, "--calib-ctx") || !strcmp(a, "--calib-chunks")) {
            NEEDS_VALUE();
            char *end;
            long long n = strtoll(val, &end, 10);
            if (*val == 0 || *end || n < 1 || n > (1ll << 30))
                return qf_cli_usage(PROG, "%s '%s': expected a positive count", a, val);
            if (!strcmp(a, "--calib-ctx")) gopt.n_ctx = n;
            else gopt.max_chunks = n;
        } else if (!strcmp(a, "--damp")) {
            NEEDS_VALUE();
            char *end;
            double d = strtod(val, &end);
            if (*val == 0 || *end || !(d > 0) || !(d < 1e6))
                return qf_cli_usage(PROG, "--damp '%s': expected a number > 0", val);
            gopt.damp = d;
        } else if (!strcmp(a, "--awq-alpha")) {
            NEEDS_VALUE();
            char *end;
            double x = strtod(val, &end);
            if (*val == 0 || *end || !(x >= 0) || !(x < 1))
                return qf_cli_usage(PROG, "--awq-alpha '%s': expected a number in [0, 1)", val);
            aopt.alpha = x;
        } else if (!strcmp(a, "--awq-no-clip") && !val) {
            aopt.no_clip = 1;
        } else if (!strcmp(a, "--act-order") && !val) {
            gopt.act_order = 1;
        } else if (!strcmp(a, "--mem-budget")) {
            NEEDS_VALUE();
            char *end;
            double b = strtod(val, &end), mul = 1;
            if (*end == 'k' || *end == 'K') mul = 1024.0, end++;
            else if (*end == 'm' || *end == 'M') mul = 1048576.0, end++;
            else if (*end == 'g' || *end == 'G') mul = 1073741824.0, end++;
            if (*val == 0 || *end || !(b > 0) || b * mul > 1e18)
                return qf_cli_usage(PROG, "--mem-budget '%s': expected a size", val);
            gopt.mem_budget = (uint64_t)(b * mul);
        } else if (!strcmp(a, "--tensor-type")) {
            NEEDS_VALUE();
            const char *eq = strrchr(val, '=');
            if (!eq || eq == val) return qf_cli_usage(PROG, "--tensor-type '%s': expected PATTERN=TYPE", val);
            uint32_t ty;
            if (parse_tensor_type(eq + 1, &ty)) return bad_tensor_type("--tensor-type", eq + 1);
            qf_tensor_type_override *nv = realloc(ovs, (n_ovs + 1) * sizeof *ovs);
            char *pat = strndup(val, (size_t)(eq - val));
            if (!nv || !pat) {
                fprintf(stderr, PROG ": error: out of memory\n");
                return 1;
            }
            ovs = nv;
            ovs[n_ovs++] = (qf_tensor_type_override){pat, ty};
        } else if (!strcmp(a, "--output-tensor-type") || !strcmp(a, "--token-embedding-type")) {
            NEEDS_VALUE();
            uint32_t ty;
            if (parse_tensor_type(val, &ty)) return bad_tensor_type(a, val);
            if (!strcmp(a, "--output-tensor-type")) o.output_tensor_type = (int)ty;
            else o.token_embedding_type = (int)ty;
        } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
            NEEDS_VALUE();
            char *end;
            long n = strtol(val, &end, 10);
            if (*val == 0 || *end || n < 1 || n > 1024) return qf_cli_usage(PROG, "--threads '%s': expected 1..1024", val);
            o.n_threads = (int)n;
        } else if (!strcmp(a, "--pure") && !val) {
            o.pure = 1;
        } else if (!strcmp(a, "--allow-requantize") && !val) {
            o.allow_requantize = 1;
        } else if (!strcmp(a, "--manifest") && !val) {
            o.write_manifest = 1;
        } else if (!strcmp(a, "--fsync") && !val) {
            o.fsync_output = 1;
        } else if (!strcmp(a, "--quiet") && !val) {
            quiet = 1;
        } else if (!strcmp(a, "-q")) {
            quiet = 1;
        } else if (!strcmp(a, "--json") && !val) {
            json = 1;
        } else if (!strcmp(a, "--dry-run") && !val) {
            dry = 1;
        } else if (a[0] == '-' && a[1]) {
            return qf_cli_usage(PROG, "unknown option '%s'", argv[i]);
        } else {
            if (n_pos == 3) return qf_cli_usage(PROG, "unexpected argument '%s'", a);
            pos[n_pos++] = a;
        }
#undef NEEDS_VALUE
    }
    if (n_pos < 3) return qf_cli_usage(PROG, "expected IN.gguf OUT.gguf TYPE");
    o.in_path = pos[0];
    o.out_path = pos[1];
    o.preset = qf_quant_preset_find(pos[2]);
    if (!o.preset) {
        size_t n;
        const qf_quant_preset *p = qf_quant_presets(&n);
        char list[512] = "";
        for (size_t i = 0; i < n; i++) {
            strncat(list, p[i].name, sizeof list - strlen(list) - 1);
            if (i + 1 < n) strncat(list, " ", sizeof list - strlen(list) - 1);
        }
        return qf_cli_usage(PROG, "unknown type '%s'; valid types: %s", pos[2], list);
    }
    o.overrides = ovs;
    o.n_overrides = n_ovs;
    const int awq = o.method == QF_QUANT_METHOD_AWQ || o.method == QF_QUANT_METHOD_AWQ_GPTQ;
    if ((o.method == QF_QUANT_METHOD_GPTQ || awq) && !gopt.calib_path)
        return qf_cli_usage(PROG, "--method %s needs --calib TEXT", qf_quant_method_name(o.method));
    if (!awq && (aopt.alpha >= 0 || aopt.no_clip))
        return qf_cli_usage(PROG, "%s", "--awq-alpha and --awq-no-clip need --method awq or awq+gptq");
    if ((o.method == QF_QUANT_METHOD_AWQ) && (gopt.damp > 0 || gopt.act_order))
        return qf_cli_usage(PROG, "%s", "--damp and --act-order need --method gptq or awq+gptq");
    if (o.method != QF_QUANT_METHOD_GPTQ && !awq &&
        (gopt.calib_path || gopt.damp > 0 || gopt.act_order || gopt.n_ctx || gopt.max_chunks || gopt.mem_budget))
        return qf_cli_usage(PROG, "%s",
                            "--calib, --calib-ctx, --calib-chunks, --damp, --act-order and --mem-budget need --method gptq");
    o.gptq = &gopt;
    aopt.calib = &gopt;
    aopt.gptq = o.method == QF_QUANT_METHOD_AWQ_GPTQ;
    o.awq = &aopt;
    o.awq_report = &arep;
    o.gptq_report = &grep_;

    progress_state ps = {now_s(), 0, 0};
    if (!quiet && !dry && isatty(STDERR_FILENO)) {
        o.progress = on_progress;
        o.progress_user = &ps;
        gopt.progress = on_gptq_progress;
        gopt.progress_user = &ps;
    }

    qf_err err;
    qf_err_clear(&err);
    struct stat st;
    if (!quiet && !dry && stat(o.in_path, &st) == 0 && S_ISDIR(st.st_mode))
        fprintf(stderr, PROG ": %s is a directory: converting the Hugging Face checkpoint first\n", o.in_path);
    qf_quantize_result r;
    rc = dry ? dry_run(&o, &r, &err) : qf_quantize(&o, &r, &err);
    if (ps.shown) fprintf(stderr, "\r%*s\r", 100, "");
    if (rc) {
        fprintf(stderr, PROG ": error: %s\n", err.msg[0] ? err.msg : "quantization failed");
    } else {
        if (!quiet)
            for (size_t i = 0; i < r.plan.n; i++)
                if (r.plan.t[i].fallback) print_fallback(&r.plan.t[i]);
        if (json) print_json(&o, &r, dry);
        else if (dry) print_plan(&r.plan);
        else print_summary(&o, &r);
    }
    qf_quantize_result_free(&r);
    qf_gptq_report_free(&grep_);
    qf_awq_report_free(&arep);
    for (size_t i = 0; i < n_ovs; i++) free((char *)ovs[i].pattern);
    free(ovs);
    if (fflush(stdout) != 0 && !rc) {
        fprintf(stderr, PROG ": error: writing to stdout failed: %s\n", strerror(errno));
        return 1;
    }
    return rc ? 1 : 0;
}
