/* qforge-quantize - quantize a GGUF model the way llama-quantize does.
 *
 *   qforge-quantize IN.gguf OUT.gguf TYPE [options]
 *
 * Data (the summary, or --json) goes to stdout; progress, fallbacks and
 * errors to stderr. Exit 0 ok, 1 failure, 2 usage error.
 */
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "qf_cli.h"
#include "qf_tmpfile.h"
#ifdef QF_MPI
#include "qf_mpi.h"
#endif
#include "budget.h"
#include "ggml_types.h"
#include "gguf.h"
#include "imatrix.h"
#include "quantize.h"
#include "gptq_run.h"
#include "memplan.h"
#include "qf_io.h"
#include "qf_util.h"
#include "awq.h"

#define PROG "qforge-quantize"

#include "qforge_quantize_fp8.inc"

static const uint32_t tensor_types[] = {
    GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1,
    GGML_TYPE_Q8_0, GGML_TYPE_Q2_K, GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K,
    GGML_TYPE_IQ4_NL, GGML_TYPE_IQ4_XS, GGML_TYPE_IQ3_S, GGML_TYPE_IQ3_XXS, GGML_TYPE_IQ2_XXS,
    GGML_TYPE_IQ2_XS, GGML_TYPE_IQ2_S, GGML_TYPE_IQ1_S, GGML_TYPE_IQ1_M,
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
            "IN is a GGUF file, the first shard of a split model (all shards are read), or a\n"
            "Hugging Face checkpoint directory or hub cache name (read on the fly).\n"
            "\n"
            "Quantize a GGUF model tensor by tensor with llama-quantize's type choices\n"
            "(llama.cpp c392e50): with --method exact, the bytes llama-quantize writes for the\n"
            "same input, TYPE and imatrix; with --method search, the same types and size with\n"
            "a lower error (see --method).\n"
            "IN is a GGUF file or a Hugging Face checkpoint directory (F32/F16/BF16, or FP8:\n"
            "compressed-tensors or block-scaled quant_method fp8). A directory is read as the\n"
            "GGUF qforge-convert --outtype auto would write from it (FP8 weights as F32\n"
            "scale * e4m3), streaming, no copy of the model written: the output equals\n"
            "converting first. --method gptq/awq/awq+gptq read it the same way, one block at\n"
            "a time (its stored bytes in a temporary file, see Memory).\n"
            "\n"
            "TYPE (case-insensitive):\n");
    for (size_t i = 0; i < n; i++) fprintf(fp, "  %-7s %s\n", p[i].name, p[i].summary);
    fprintf(fp, "  FP8_DYNAMIC, FP8: an FP8 checkpoint directory for vLLM instead (qforge-quantize IN OUTDIR FP8 --help)\n");
    fprintf(fp,
            "  Norms and other 1-D tensors stay as they are. Rows whose length the type cannot\n"
            "  block fall back (Q4_K->Q5_0, Q5_K->Q5_1, Q6_K->Q8_0, Q2_K/Q3_K/IQ1_*/IQ2_*/IQ3_*/IQ4_XS->IQ4_NL, then F16);\n"
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
            "                           (same types, sizes and fallbacks; token_embd, F16 and\n"
            "                           IQ1_S/IQ1_M tensors as auto), see docs/gptq.md\n"
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
            "  --awq-all-groups         awq: search the scales of the norm-fed groups (q/k/v, gate/up)\n"
            "                           too (default: o, down and output only; docs/awq.md)\n"
            "  --mem-budget SIZE        gptq: hidden states kept in RAM up to SIZE (a size as for\n"
            "                           --target-size; default a quarter of RAM), beyond in a temp file\n"
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
            "  -t, --threads N          threads, 1 to 4x the cores (default: OMP_NUM_THREADS or all\n"
            "                           cores); the output bytes are the same for any N\n"
            "  --manifest               also write OUT.gguf.xxh: XXH3-128 of every tensor and the file\n"
            "  --fsync                  fsync the output before renaming it into place (durable\n"
            "                           against a power loss; default off, as llama-quantize: the\n"
            "                           temp file + rename already means no partial file on failure)\n"
            "  --split-max-size N       split the output into shards of at most N bytes of tensor\n"
            "                           data (N may end in K, M, G, T = 10^3..10^12), named\n"
            "                           OUT-00001-of-0000N.gguf with split.* keys as llama-gguf-split\n"
            "                           writes them\n"
            "  --keep-split             a split input (IN-00001-of-0000N.gguf: all its shards are\n"
            "                           read) gives an output split the same way\n"
            "  --dry-run                print the per-tensor plan, its totals and the predicted peak\n"
            "                           RSS and disk of the run (see Memory below), write nothing\n"
            "  --json                   print the summary as JSON\n"
            "  --quiet                  no progress and no fallback lines on stderr\n"
            "  -h, --help               this text\n"
            "  --version                version, commit, build flags and instruction sets\n"
            "\n"
            "size budgets (instead of TYPE: " PROG " IN.gguf OUT.gguf --target-size 4.2G):\n"
            "  --target-size SIZE       output file of at most SIZE bytes (K/M/G/T: powers of 1024,\n"
            "                           KB/MB/GB/TB: of 1000)\n"
            "  --target-bpw X           at most X bits per weight (tensor bytes x 8 / all weights)\n"
            "  --fit-vram SIZE          weights + F16 KV cache for --fit-ctx N tokens (default 4096)\n"
            "                           + a compute allowance of 4 B x --fit-batch N (default 512) x\n"
            "                           (n_vocab + n_head x ctx + 2 n_ff + 4 n_embd) within SIZE\n"
            "  --calib TEXT             role weights: quantize each role (attn_q, ffn_down, output...)\n"
            "                           alone, run it over TEXT against the original and scale the\n"
            "                           role's errors to predict KL-divergence (recommended; without\n"
            "                           it errors of different roles are not comparable)\n"
            "  --calib-ctx N, --calib-chunks N  tokens per chunk (128) and chunks (8) of TEXT\n"
            "  --sensitivity-cache F    where the measured errors are kept (default\n"
            "                           ${XDG_CACHE_HOME:-~/.cache}/qforge/NAME.qfsens, NAME = IN's name)\n"
            "  Every quantizable tensor gets the type (F16 Q8_0 Q6_K Q5_K Q5_1 Q5_0 Q4_K Q4_1 Q4_0\n"
            "  IQ4_NL Q3_K Q2_K, after shape fallbacks) that minimises the summed imatrix-weighted\n"
            "  error within the budget; --method and --imatrix apply as usual. The plan (type,\n"
            "  bytes, predicted error per tensor) is printed; docs/quantize.md, \"Size budgets\".\n"
            "  Memory: measuring holds 3 chunks of rows of at most 8 MiB as F32; --calib also\n"
            "  loads the model and one probe file at a time (written next to OUT, then deleted).\n"
            "  IN may be a checkpoint directory (read as for TYPE: the same bytes); its rows come\n"
            "  in one more such chunk, and --calib's base model reads one block at a time.\n"
            "\n"
            "Options take their value as --opt VALUE or --opt=VALUE.\n"
            "Memory: the input is memory-mapped and converted in chunks of rows of at most\n"
            "32 MiB as F32; peak RSS is about 2 x 32 MiB (or 2 rows of the widest tensor\n"
            "as F32, if larger), the previous chunk's output (written meanwhile) and the metadata, independent of the model size. Input pages\n"
            "are released as they are consumed. A directory input adds one more such chunk\n"
            "(its rows in the input type) and the source rows of one read (whole head groups).\n"
            "With --method gptq add, besides hidden states of 4 * chunks * ctx * n_embd bytes\n"
            "(in RAM up to --mem-budget), a block's kept activation and the engine's\n"
            "buffers, the largest of (a group of linears with n inputs):\n"
            "  collecting its inputs: 4 * n^2 (H's lower triangle) + the group before as\n"
            "  F32 + one panel of a chunk's Hessian (at most 64 MiB);\n"
            "  converting its weights, restoring H: 8 * n^2 + 64 MiB of rows / the losses' rows;\n"
            "  the sweep: about 6 * n^2 + the group's weights as F32 + their output blocks;\n"
            "  output.weight: the same with n = n_embd, + 4 * n_vocab * n_embd.\n"
            "Independent of depth: finished tensors go to a temporary file (disk: their\n"
            "size, plus one block's weights as F32; a directory input also one block's,\n"
            "or the embedding's, stored bytes, fetched in reads of at most 32 MiB, and\n"
            "twice one such read in RAM). Llama-3-70B widths (n = 28672 for\n"
            "ffn_down): about 6.6 GiB with 2 x 256 tokens (--dry-run prints it). Mixture-of-experts models hold every expert's\n"
            "weights of a block as F32. --dry-run prints the prediction for a given input.\n"
            "--method awq / awq+gptq: as gptq, plus H's scaled and float copies (12 * n^2;\n"
            "awq+gptq 20 * n^2), the scaled weights and the v or up it holds as F32.\n"
            "The MPI build (qforge-quantize-mpi, make MPI=1) splits gptq / awq calibration\n"
            "chunks across mpirun's ranks and gptq's solve by rows, same bytes for any\n"
            "count (docs/mpi.md); every rank then holds a group's Hessian (8 * n^2).\n");
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

static void on_gptq_progress(void *user, int layer, int n_layer, const char *stage) {
    progress_state *ps = user;
    double el = qf_now_seconds() - ps->t0;
    double eta = layer > 0 && layer < n_layer ? el * (double)(n_layer - layer) / (double)layer : 0;
    if (layer < n_layer)
        fprintf(stderr, "\r[gptq] layer %3d/%-3d %-12s %6.0fs  ETA %5.0fs ", layer + 1, n_layer, stage, el, eta);
    else
        fprintf(stderr, "\r[gptq] output          %-12s %6.0fs              ", stage, el);
    ps->shown = 1;
}

/* QF_MEMTRACE=1: one stderr line per pipeline step with the process's
 * memory from /proc/self/status (resident anonymous, file-backed and shared
 * pages, and the peak so far), to find where the peak RSS is set. */
static void memtrace(const char *where, int layer, const char *stage) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return;
    char line[256], out[256] = "";
    while (fgets(line, sizeof line, f)) {
        static const char *keys[] = {"VmHWM:", "VmRSS:", "RssAnon:", "RssFile:", "RssShmem:"};
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
            unsigned long kb;
            if (!strncmp(line, keys[k], strlen(keys[k])) && sscanf(line + strlen(keys[k]), "%lu", &kb) == 1) {
                char item[48];
                snprintf(item, sizeof item, " %.*s %lu", (int)strlen(keys[k]) - 1, keys[k], kb / 1024);
                strncat(out, item, sizeof out - strlen(out) - 1);
            }
        }
    }
    fclose(f);
    fprintf(stderr, "memtrace: %s %d %-14s MiB%s\n", where, layer, stage, out);
    const char *v = getenv("QF_MEMTRACE");
    if (!v || strcmp(v, "2") != 0 || !(f = fopen("/proc/self/smaps", "r"))) return;
    char map[256] = "";
    while (fgets(line, sizeof line, f)) { /* QF_MEMTRACE=2: every mapping with 1 MiB or more resident */
        unsigned long kb;
        if (strchr(line, '-') && strchr(line, '-') < strchr(line, ' ') && line[0] != ' ') snprintf(map, sizeof map, "%s", line);
        else if (!strncmp(line, "Rss:", 4) && sscanf(line + 4, "%lu", &kb) == 1 && kb >= 1024)
            fprintf(stderr, "memtrace:   %6lu MiB %s", kb / 1024, map);
    }
    fclose(f);
}

static int memtrace_on(void) {
    const char *v = getenv("QF_MEMTRACE");
    return v && *v && strcmp(v, "0") != 0;
}

static void on_gptq_memtrace(void *user, int layer, int n_layer, const char *stage) {
    memtrace(layer < n_layer ? "layer" : "output", layer, stage);
}

static void on_memtrace(const qf_quantize_progress *p, void *user) {
    size_t *last = user;
    if (p->tensor_index + 1 == *last) return;
    *last = p->tensor_index + 1;
    memtrace("write", (int)p->tensor_index, p->name);
}

static void on_progress(const qf_quantize_progress *p, void *user) {
    progress_state *ps = user;
    double t = qf_now_seconds();
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
    char esc[512];
    if (t->table_fallback != t->type && f)
        fprintf(stderr, PROG ": fallback: %s: %s needs rows of a multiple of %u and %s of %u, ne0 is %llu -> %s\n",
                qf_term_safe(t->name, esc, sizeof esc), w->name, w->block_size, f->name, f->block_size, (unsigned long long)t->ne[0], tname(t->type));
    else
        fprintf(stderr, PROG ": fallback: %s: %s needs rows of a multiple of %u, ne0 is %llu -> %s\n",
                qf_term_safe(t->name, esc, sizeof esc),
                w->name, w->block_size, (unsigned long long)t->ne[0], tname(t->type));
}

static double bits_per_weight(const qf_quant_plan *p) {
    return p->n_elements ? 8.0 * (double)p->out_tensor_bytes / (double)p->n_elements : 0;
}

/* The predicted peak RSS and disk of running the plan (memplan.h). */
static void predict(const qf_quantize_opts *o, const qf_quantize_result *r, qf_quant_mem *m) {
    const uint64_t meta = r->in_file_bytes > r->plan.in_tensor_bytes ? r->in_file_bytes - r->plan.in_tensor_bytes : 0;
    qf_quant_predict_memory(&r->plan, meta, o, m);
}

static void print_prediction(const qf_quantize_opts *o, const qf_quantize_result *r) {
    qf_quant_mem m;
    predict(o, r, &m);
    const double MiB = 1048576.0;
    printf("predicted: peak RSS %.1f MiB (at %s); disk %.1f MiB at the fullest (output %.1f MiB, temporary %.1f MiB)",
           (double)m.peak_rss / MiB, m.peak_at, (double)m.disk_peak / MiB, (double)m.out_bytes / MiB,
           (double)m.tmp_bytes / MiB);
    if (m.n_chunks) printf("; %lld calibration chunks", (long long)m.n_chunks);
    printf("\n");
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
    static const char *const reads[] = {"gguf", "directory"};
    fprintf(fp, ", \"input_read\": \"%s\"", reads[r->in_read >= 0 && r->in_read <= 1 ? r->in_read : 0]);
    if (dry_run) {
        qf_quant_mem m;
        predict(o, r, &m);
        fprintf(fp, ",\n \"predicted\": {\"peak_rss\": %llu, \"peak_at\": \"%s\", \"output_bytes\": %llu, "
                "\"temp_bytes\": %llu, \"disk_peak\": %llu, \"calib_chunks\": %lld}",
                (unsigned long long)m.peak_rss, m.peak_at, (unsigned long long)m.out_bytes,
                (unsigned long long)m.tmp_bytes, (unsigned long long)m.disk_peak, (long long)m.n_chunks);
    }
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
                "\"forward_seconds\": %.3f, \"hessian_seconds\": %.3f, \"search_seconds\": %.3f, \"groups\": [",
                (long long)a->n_chunks, (long long)a->n_tokens, (unsigned long long)a->hidden_bytes,
                a->spilled ? "true" : "false", a->forward_seconds, a->hessian_seconds, a->search_seconds);
        for (size_t i = 0; i < a->n; i++) {
            fprintf(fp, "%s\n  {\"group\": ", i ? "," : "");
            qf_cli_json_str(fp, a->g[i].name);
            fprintf(fp, ", \"alpha\": %.2f, \"folded\": %s, \"no_tokens\": %s, \"loss_alpha0\": %.6g, \"loss\": %.6g, "
                    "\"gptq_compared\": %s, \"clipped\": %s, \"loss_final\": %.6g, \"seconds\": %.3f, \"cpu_seconds\": %.3f}",
                    a->g[i].alpha, a->g[i].folded ? "true" : "false", a->g[i].no_tokens ? "true" : "false", a->g[i].loss0,
                    a->g[i].loss, a->g[i].gptq_compared ? "true" : "false", a->g[i].clipped ? "true" : "false",
                    a->g[i].loss_final, a->g[i].seconds, a->g[i].cpu_seconds);
        }
        fprintf(fp, "]}");
    }
    if (o->gptq_report && p->method == QF_QUANT_METHOD_GPTQ && !dry_run) {
        const qf_gptq_report *g = o->gptq_report;
        fprintf(fp, ",\n \"gptq\": {\"chunks\": %lld, \"tokens\": %lld, \"hidden_bytes\": %llu, \"spilled\": %s, "
                "\"forward_seconds\": %.3f, \"hessian_seconds\": %.3f, \"solve_seconds\": %.3f, \"damping_raised\": %d, "
                "\"experts_without_tokens\": %d, \"tensors\": [",
                (long long)g->n_chunks, (long long)g->n_tokens, (unsigned long long)g->hidden_bytes,
                g->spilled ? "true" : "false", g->forward_seconds, g->hessian_seconds, g->solve_seconds, g->retried,
                g->no_token_experts);
        for (size_t i = 0; i < g->n; i++) {
            fprintf(fp, "%s\n  {\"name\": ", i ? "," : "");
            qf_cli_json_str(fp, g->t[i].name);
            if (g->t[i].expert >= 0)
                fprintf(fp, ", \"expert\": %d, \"no_tokens\": %s", g->t[i].expert, g->t[i].no_tokens ? "true" : "false");
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
        const size_t n_solved = g->n - (size_t)g->no_token_experts; /* the others have no loss */
        printf("  gptq:      %zu tensors, mean relative output error %.4g (round-to-nearest %.4g);\n"
               "             %lld chunks, %lld tokens; forward %.2f s, H %.2f s, solve %.2f s; damping raised for %d tensors%s\n",
               n_solved, n_solved ? lg / (double)n_solved : 0.0, n_solved ? lr / (double)n_solved : 0.0, (long long)g->n_chunks,
               (long long)g->n_tokens, g->forward_seconds, g->hessian_seconds, g->solve_seconds, g->retried,
               g->spilled ? "; hidden states spilled to disk" : "");
        if (g->no_token_experts)
            printf("  gptq:      %d expert matrices saw no calibration token: quantized without GPTQ, as the usual path does\n",
                   g->no_token_experts);
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
               "             %.4g written; %lld chunks, %lld tokens; forward %.2f s, H %.2f s, search %.2f s%s\n",
               a->n, al / n, l0 / n, l / n, lf / n, (long long)a->n_chunks, (long long)a->n_tokens,
               a->forward_seconds, a->hessian_seconds, a->search_seconds, a->spilled ? "; hidden states spilled to disk" : "");
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
        char esc[512];
        printf("%-40s %-16s %-7s %-7s %s\n", qf_term_safe(t->name, esc, sizeof esc), shape, tname(t->src_type),
               tname(t->type), note);
    }
}

/* The plan's totals: sizes of tensor data in and out, bits per weight, and
 * how many tensors get each type. */
static void print_plan_totals(const qf_quant_plan *p) {
    printf("total: %zu tensors, %llu weights: tensor data %.2f MB -> %.2f MB (%.1f%%), %.3f bits per weight\n", p->n,
           (unsigned long long)p->n_elements, (double)p->in_tensor_bytes / 1e6, (double)p->out_tensor_bytes / 1e6,
           p->in_tensor_bytes ? 100.0 * (double)p->out_tensor_bytes / (double)p->in_tensor_bytes : 0.0,
           bits_per_weight(p));
    printf("types:");
    for (uint32_t ty = 0; ty < GGML_TYPE_COUNT; ty++)
        if (p->type_count[ty]) printf(" %s %zu", tname(ty), p->type_count[ty]);
    printf(" (%zu converted, %zu copied, %zu fallbacks)\n", p->n_converted, p->n - p->n_converted, p->n_fallbacks);
}

/* --dry-run: the plan only. */
static int dry_run(const qf_quantize_opts *o, qf_quantize_result *r, qf_err *err) {
    qf_quant_input in;
    qf_imatrix im;
    qf_imatrix_init(&im);
    memset(r, 0, sizeof *r);
    int rc = qf_quant_input_open(&in, o->in_path, err); /* a directory: its header only, nothing converted */
    if (rc) return rc;
    if (o->imatrix_path && (rc = qf_imatrix_read(&im, o->imatrix_path, err))) goto done;
    rc = qf_quant_plan_build(&r->plan, &in.all, o, o->imatrix_path ? &im : NULL, err);
    r->in_file_bytes = in.file_bytes;
    r->in_read = in.src ? QF_QUANT_READ_DIRECTORY : QF_QUANT_READ_GGUF;
    r->imatrix_entries = im.n_entries;
    for (size_t i = 0; i < r->plan.n; i++) r->plan.t[i].src = NULL;
done:
    qf_imatrix_free(&im);
    qf_quant_input_close(&in);
    return rc;
}

/* ---- size budgets (budget.h) ---- */

typedef struct budget_args {
    int mode;          /* qf_budget_mode, 0: none */
    uint64_t size;
    double bpw;
    int64_t ctx, batch;
    const char *cache;
    const char *calib;
    int64_t calib_ctx, calib_chunks;
} budget_args;

/* Default sidecar: $XDG_CACHE_HOME/qforge/NAME.qfsens (else ~/.cache/qforge/),
 * NAME the input's file (or directory) name; NULL (not kept) without either
 * variable. The key inside decides whether it is reused. */
static char *default_cache_path(const char *in) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    size_t len = strlen(in);
    while (len > 1 && in[len - 1] == '/') len--; /* a directory given as DIR/ */
    size_t b0 = len;
    while (b0 > 0 && in[b0 - 1] != '/') b0--;
    const char *base = in + b0;
    const int base_len = (int)(len - b0);
    size_t n = (size_t)base_len + (xdg ? strlen(xdg) : 0) + (home ? strlen(home) : 0) + 64;
    char *p = malloc(n);
    if (!p) return NULL;
    if (xdg && *xdg) snprintf(p, n, "%s", xdg);
    else if (home && *home) snprintf(p, n, "%s/.cache", home);
    else {
        free(p);
        return NULL;
    }
    mkdir(p, 0755);
    snprintf(p + strlen(p), n - strlen(p), "/qforge");
    mkdir(p, 0755);
    snprintf(p + strlen(p), n - strlen(p), "/%.*s.qfsens", base_len, base);
    return p;
}

static void print_budget(const qf_budget_request *rq, const qf_budget_plan *bp, const char *cache, int json) {
    const qf_sensitivity *s = &bp->sens;
    static const char *mode_names[] = {"", "target-size", "target-bpw", "fit-vram"};
    if (json) {
        printf("{\"budget\": {\"mode\": \"%s\", \"request\": ", mode_names[rq->mode]);
        if (rq->mode == QF_BUDGET_BPW) printf("%.6g", rq->bpw);
        else printf("%llu", (unsigned long long)rq->size);
        printf(", \"tensor_budget\": %llu, \"tensor_bytes\": %llu, \"fixed_bytes\": %llu, \"header_bound\": %llu",
               (unsigned long long)bp->budget, (unsigned long long)bp->tensor_bytes,
               (unsigned long long)bp->fixed_bytes, (unsigned long long)bp->header_bytes);
        printf(", \"smallest\": %llu, \"predicted_error\": %.9g, \"file_type\": %u, \"method\": \"%s\"",
               (unsigned long long)bp->min_total, bp->err, bp->file_type, qf_quant_method_name(rq->method));
        printf(", \"sensitivity_cached\": %s, \"role_weights\": %s, \"sensitivity_cache\": ",
               bp->cached ? "true" : "false", bp->calibrated ? "true" : "false");
        if (cache) qf_cli_json_str(stdout, cache);
        else printf("null");
        if (rq->mode == QF_BUDGET_VRAM)
            printf(",\n  \"vram\": {\"total\": %llu, \"kv_cache\": %llu, \"compute\": %llu, \"weights\": %llu, "
                   "\"ctx\": %llu, \"batch\": %llu}",
                   (unsigned long long)bp->vram.vram, (unsigned long long)bp->vram.kv_bytes,
                   (unsigned long long)bp->vram.compute_bytes,
                   (unsigned long long)(bp->tensor_bytes + bp->fixed_bytes), (unsigned long long)bp->vram.ctx,
                   (unsigned long long)bp->vram.batch);
        printf(",\n  \"tensors\": [");
        for (size_t i = 0; i < s->n; i++) {
            const qf_budget_cand *c = &s->t[i].cand[bp->choice[i]];
            printf("%s\n   {\"name\": ", i ? "," : "");
            qf_cli_json_str(stdout, s->t[i].name);
            printf(", \"type\": \"%s\", \"bytes\": %llu, \"predicted_error\": %.9g}", tname(c->type),
                   (unsigned long long)c->bytes, c->err);
        }
        printf("]}");
        return;
    }
    printf("budget (%s): %llu bytes for the quantizable tensors, %llu used; predicted error %.6g\n",
           mode_names[rq->mode], (unsigned long long)bp->budget, (unsigned long long)bp->tensor_bytes, bp->err);
    printf("  sensitivities: %s (%s)%s\n", bp->cached ? "cached" : "measured", cache ? cache : "not kept",
           bp->calibrated ? ", role weights from --calib (predicted error ~ KLD)" : "");
    if (bp->calibrated && !bp->cached) {
        printf("  role weights:");
        for (int r = 0; r < QF_ROLE_COUNT; r++)
            if (bp->role_scale[r] != 1.0) printf(" %s %.3g", qf_tensor_role_name((qf_tensor_role)r), bp->role_scale[r]);
        printf("\n");
    }
    if (rq->mode == QF_BUDGET_VRAM) {
        const qf_vram_fit *v = &bp->vram;
        printf("  vram %llu = weights %llu + KV cache %llu (F16, %llu tokens x %llu K+V values over %d layers x 2 B)"
               " + compute %llu (4 B x batch %llu x (%llu + %d x %llu + 2 x %llu + 4 x %llu)) + free %llu\n",
               (unsigned long long)v->vram, (unsigned long long)(bp->tensor_bytes + bp->fixed_bytes),
               (unsigned long long)v->kv_bytes, (unsigned long long)v->ctx, (unsigned long long)v->kv_width,
               v->n_layer, (unsigned long long)v->compute_bytes, (unsigned long long)v->batch,
               (unsigned long long)v->n_vocab, v->n_head, (unsigned long long)v->ctx, (unsigned long long)v->n_ff,
               (unsigned long long)v->n_embd,
               (unsigned long long)(v->vram - v->kv_bytes - v->compute_bytes - bp->tensor_bytes - bp->fixed_bytes));
    }
    printf("%-40s %-7s %12s %14s\n", "tensor", "type", "bytes", "pred. error");
    for (size_t i = 0; i < s->n; i++) {
        const qf_budget_cand *c = &s->t[i].cand[bp->choice[i]];
        printf("%-40s %-7s %12llu %14.6g\n", s->t[i].name, tname(c->type), (unsigned long long)c->bytes, c->err);
    }
}

/* A budgeted run: plan by sensitivity, print the plan, quantize unless dry. */
static int run_budget(qf_quantize_opts *o, const budget_args *ba, int dry, int json, int quiet) {
    qf_err err;
    qf_err_clear(&err);
    char *cache = ba->cache ? strdup(ba->cache) : default_cache_path(o->in_path);
    qf_budget_request rq = {o->in_path, o->imatrix_path, cache, o->method, o->preset, ba->mode,
                            ba->size, ba->bpw, (uint64_t)ba->ctx, (uint64_t)ba->batch,
                            ba->calib, ba->calib_ctx, ba->calib_chunks, o};
    qf_budget_plan bp;
    if (!quiet && !ba->calib)
        fprintf(stderr, PROG ": warning: no --calib TEXT: the errors of different roles are not comparable and the "
                             "plan can be much worse than a preset (docs/quantize.md, \"Size budgets\")\n");
    if (!quiet && !json) fprintf(stderr, PROG ": measuring or loading tensor sensitivities\n");
    int rc = qf_budget_plan_make(&rq, &bp, &err);
    if (rc) {
        fprintf(stderr, PROG ": error: %s\n", err.msg[0] ? err.msg : "budget planning failed");
        qf_budget_plan_free(&bp);
        free(cache);
        return 1;
    }
    print_budget(&rq, &bp, cache, json);
    if (!dry) {
        o->type_table = bp.table;
        o->n_type_table = bp.sens.n;
        o->file_type = bp.file_type;
        qf_quantize_result r;
        rc = qf_quantize(o, &r, &err);
        if (rc) fprintf(stderr, PROG ": error: %s\n", err.msg[0] ? err.msg : "quantization failed");
        else if (json) {
            printf(",\n \"output\": {\"path\": ");
            qf_cli_json_str(stdout, o->out_path);
            printf(", \"bytes\": %llu, \"tensor_bytes\": %llu, \"bits_per_weight\": %.4f, "
                   "\"file_type\": %u, \"seconds\": %.3f}",
                   (unsigned long long)r.out_file_bytes, (unsigned long long)r.plan.out_tensor_bytes,
                   bits_per_weight(&r.plan), bp.file_type, r.seconds);
        } else
            printf("wrote %s: %llu bytes, %.4f bits per weight, general.file_type %u, %.2f s\n", o->out_path,
                   (unsigned long long)r.out_file_bytes, bits_per_weight(&r.plan), bp.file_type, r.seconds);
        qf_quantize_result_free(&r);
    }
    if (json) printf("}\n");
    qf_budget_plan_free(&bp);
    free(cache);
    return rc ? 1 : 0;
}

/* With several MPI ranks (qforge-quantize-mpi): the calibration chunks of
 * gptq / awq are split among them and rank 0 alone writes. */
static qf_dist *g_dist;

static int quantize_main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) /* TYPE FP8 / FP8_DYNAMIC: the FP8 checkpoint writer */
        if (fp8_is_type(argv[i])) return qf_dist_rank(g_dist) ? 0 : fp8_main(argc, argv); /* not split: rank 0's */
    qf_quantize_opts o;
    qf_quantize_opts_init(&o);
    o.method = QF_QUANT_METHOD_AUTO;
    const char *pos[3];
    int n_pos = 0, dry = 0;
    qf_cli_common cli = {.accept = QF_CLI_THREADS | QF_CLI_QUIET | QF_CLI_Q | QF_CLI_JSON};
    qf_gptq_run_opts gopt = {0};
    qf_gptq_report grep_ = {0};
    qf_awq_run_opts aopt = {0};
    aopt.alpha = -1;
    qf_awq_report arep = {0};
    qf_tensor_type_override *ovs = NULL;
    size_t n_ovs = 0;
    int rc;
    budget_args ba = {0, 0, 0, 4096, 512, NULL, NULL, 128, 8};

    for (int i = 1; i < argc; i++) {
        QF_ARG_BEGIN(&cli, usage);
#define NEEDS_VALUE() NEED_VAL()
        if (!strcmp(a, "--imatrix")) {
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
        } else if (!strcmp(a, "--awq-no-clip")) {
            aopt.no_clip = 1;
        } else if (!strcmp(a, "--awq-all-groups")) {
            aopt.all_groups = 1;
        } else if (!strcmp(a, "--act-order")) {
            gopt.act_order = 1;
        } else if (!strcmp(a, "--mem-budget")) {
            NEEDS_VALUE();
            if (qf_parse_bytes(val, 1, &gopt.mem_budget) || gopt.mem_budget == 0)
                return qf_cli_usage(PROG, "--mem-budget '%s': expected a size", val);
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
        } else if (!strcmp(a, "--pure")) {
            o.pure = 1;
        } else if (!strcmp(a, "--allow-requantize")) {
            o.allow_requantize = 1;
        } else if (!strcmp(a, "--manifest")) {
            o.write_manifest = 1;
        } else if (!strcmp(a, "--fsync")) {
            o.fsync_output = 1;
        } else if (!strcmp(a, "--dry-run")) {
            dry = 1;
        } else if (!strcmp(a, "--split-max-size")) {
            NEEDS_VALUE();
            if (qf_parse_size(val, &o.split_max_size))
                return qf_cli_usage(PROG, "--split-max-size '%s': expected a size (e.g. 4G, 500M)", val);
        } else if (!strcmp(a, "--keep-split")) {
            o.keep_split = 1;
        } else if (!strcmp(a, "--target-size") || !strcmp(a, "--fit-vram")) {
            NEEDS_VALUE();
            if (qf_parse_bytes(val, 1, &ba.size) || ba.size == 0)
                return qf_cli_usage(PROG, "%s '%s': expected a size such as 4.2G, 512M or 1000000", a, val);
            if (ba.mode) return qf_cli_usage(PROG, "give one of --target-size, --target-bpw, --fit-vram");
            ba.mode = !strcmp(a, "--target-size") ? QF_BUDGET_SIZE : QF_BUDGET_VRAM;
        } else if (!strcmp(a, "--target-bpw")) {
            NEEDS_VALUE();
            char *end;
            ba.bpw = strtod(val, &end);
            if (*val == 0 || *end || !(ba.bpw > 0 && ba.bpw <= 64))
                return qf_cli_usage(PROG, "--target-bpw '%s': expected bits per weight in (0, 64]", val);
            if (ba.mode) return qf_cli_usage(PROG, "give one of --target-size, --target-bpw, --fit-vram");
            ba.mode = QF_BUDGET_BPW;
        } else if (!strcmp(a, "--fit-ctx") || !strcmp(a, "--fit-batch")) {
            NEEDS_VALUE();
            int64_t v;
            if (qf_parse_i64(val, &v) || v < 1 || v > (1 << 24))
                return qf_cli_usage(PROG, "%s '%s': expected 1..16777216", a, val);
            if (!strcmp(a, "--fit-ctx")) ba.ctx = v;
            else ba.batch = v;
        } else if (!strcmp(a, "--sensitivity-cache")) {
            NEEDS_VALUE();
            ba.cache = val;
        } else {
            QF_ARG_POSITIONAL(pos, 3, &n_pos);
        }
        QF_ARG_END();
#undef NEEDS_VALUE
    }
    const int quiet = cli.quiet, json = cli.json;
    int threads;
    if ((rc = qf_cli_threads(PROG, cli.threads, &threads)) >= 0) return rc;
    o.n_threads = threads;
    gopt.n_threads = threads;
    if (ba.mode) {
        /* --calib and its chunking feed the role weights of the plan */
        ba.calib = gopt.calib_path;
        if (gopt.n_ctx) ba.calib_ctx = gopt.n_ctx;
        if (gopt.max_chunks) ba.calib_chunks = gopt.max_chunks;
        if (o.method == QF_QUANT_METHOD_GPTQ || o.method == QF_QUANT_METHOD_AWQ || o.method == QF_QUANT_METHOD_AWQ_GPTQ || gopt.damp > 0 || gopt.act_order || gopt.mem_budget) {
            free(ovs);
            return qf_cli_usage(PROG, "a size budget takes --method exact, search or auto (not gptq or awq)");
        }
        if (n_pos != 2) return qf_cli_usage(PROG, "a size budget replaces TYPE: expected IN.gguf OUT.gguf");
        if (n_ovs || o.pure || o.output_tensor_type >= 0 || o.token_embedding_type >= 0) {
            for (size_t i = 0; i < n_ovs; i++) free((char *)ovs[i].pattern);
            free(ovs);
            return qf_cli_usage(PROG, "a size budget chooses every tensor's type: no --tensor-type, --pure, "
                                      "--output-tensor-type or --token-embedding-type");
        }
        char *bsnap = NULL; /* a hub cache name resolved */
        o.in_path = qf_cli_model_arg(PROG, pos[0], &bsnap);
        if (!o.in_path) {
            free(ovs);
            return 1;
        }
        o.out_path = pos[1];
        o.preset = qf_quant_preset_find("Q4_K_M"); /* method rule of the K-quant mixes (qf_quant_method_searches) */
        rc = qf_dist_rank(g_dist) ? 0 : run_budget(&o, &ba, dry, json, quiet); /* not split: rank 0's */
        free(ovs);
        free(bsnap);
        return rc;
    }
    if (n_pos < 3) return qf_cli_usage(PROG, "expected IN.gguf OUT.gguf TYPE");
    if (o.keep_split && o.split_max_size) return qf_cli_usage(PROG, "--keep-split and --split-max-size exclude each other");
    char *snapshot = NULL; /* a hub cache name resolved */
    o.in_path = qf_cli_model_arg(PROG, pos[0], &snapshot);
    if (!o.in_path) return 1;
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
    if (!awq && (aopt.alpha >= 0 || aopt.no_clip || aopt.all_groups))
        return qf_cli_usage(PROG, "%s", "--awq-alpha, --awq-no-clip and --awq-all-groups need --method awq or awq+gptq");
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
    o.dist = g_dist;
    gopt.dist = g_dist;
    if (qf_dist_rank(g_dist) != 0 && (dry || (o.method != QF_QUANT_METHOD_GPTQ && !awq))) {
        /* only the calibration of gptq / awq is split; rank 0 does the rest */
        free(snapshot);
        for (size_t i = 0; i < n_ovs; i++) free((char *)ovs[i].pattern);
        free(ovs);
        return 0;
    }

    progress_state ps = {qf_now_seconds(), 0, 0};
    if (!quiet && !dry && isatty(STDERR_FILENO)) {
        o.progress = on_progress;
        o.progress_user = &ps;
        gopt.progress = on_gptq_progress;
        gopt.progress_user = &ps;
    }
    size_t mt_last = 0;
    if (!dry && memtrace_on()) {
        o.progress = on_memtrace;
        o.progress_user = &mt_last;
        gopt.progress = on_gptq_memtrace;
        gopt.progress_user = NULL;
    }

    qf_err err;
    qf_err_clear(&err);
    qf_quantize_result r;
    const char *inputs[] = {o.in_path, o.imatrix_path};
    if (!dry && qf_check_output(o.out_path, inputs, 2, &err) < 0) {
        fprintf(stderr, PROG ": error: %s\n", err.msg);
        return 1;
    }
    rc = dry ? dry_run(&o, &r, &err) : qf_quantize(&o, &r, &err);
    if (ps.shown) fprintf(stderr, "\r%*s\r", 100, "");
    if (rc) {
        fprintf(stderr, PROG ": error: %s\n", err.msg[0] ? err.msg : "quantization failed");
    } else {
        if (!quiet)
            for (size_t i = 0; i < r.plan.n; i++)
                if (r.plan.t[i].fallback) print_fallback(&r.plan.t[i]);
        if (json) print_json(&o, &r, dry);
        else if (dry) {
            print_plan(&r.plan);
            print_plan_totals(&r.plan);
            print_prediction(&o, &r);
        }
        else print_summary(&o, &r);
    }
    qf_quantize_result_free(&r);
    qf_gptq_report_free(&grep_);
    qf_awq_report_free(&arep);
    free(snapshot);
    for (size_t i = 0; i < n_ovs; i++) free((char *)ovs[i].pattern);
    free(ovs);
    if (fflush(stdout) != 0 && !rc) {
        fprintf(stderr, PROG ": error: writing to stdout failed: %s\n", strerror(errno));
        return 1;
    }
    return rc ? 1 : 0;
}

int main(int argc, char **argv) {
    qf_cli_wait_policy(argv);
    /* buffers of 1 MiB or more get their own mapping, given back when freed:
     * the peak RSS is then what is allocated at once (--dry-run's
     * prediction), not freed scratch the heap keeps after glibc raised its
     * threshold past the tokenizer's large buffers */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    qf_tmpfile_install(); /* a fatal signal removes the temp output files */
#ifdef QF_MPI
    g_dist = qf_mpi_start(&argc, &argv, PROG);
#endif
    int rc = quantize_main(argc, argv);
#ifdef QF_MPI
    rc = qf_mpi_finish(g_dist, rc);
#endif
    return rc;
}
