/* qforge-calibrate - activation statistics (an importance matrix, llama.cpp
 * "imatrix") from calibration text, with verify's engine (docs/calibrate.md). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qf_cli.h"
#include "calibrate.h"
#include "qf_io.h"
#include "imatrix.h"
#include "model.h"
#include "text.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define PROG "qforge-calibrate"

static void usage(FILE *f) {
    fprintf(f,
            "usage: " PROG " MODEL.gguf -f TEXT [-o imatrix.gguf] [options]\n"
            "\n"
            "Runs the model over calibration text and writes an importance matrix: for every\n"
            "weight matrix of the blocks (blk.*), the sum over tokens of the square of each input\n"
            "column and the token count (what llama-imatrix collects, with the same chunking).\n"
            "\n"
            "options:\n"
            "  -f, --file TEXT         calibration text: plain, gzip (.gz), or JSON Lines (.jsonl,\n"
            "                          .jsonl.gz; the \"text\" of every line, joined with blank lines)\n"
            "  -o, --output FILE       output file (default imatrix.gguf)\n"
            "  --output-format F       gguf (default: llama.cpp's current imatrix format) or dat (the\n"
            "                          legacy format; a FILE ending in .dat selects it too). The peer\n"
            "                          llama.cpp of 2025-02 (llama-quantize --imatrix) reads only .dat\n"
            "  -c, --ctx N             tokens per chunk (default 512); each chunk starts from an empty\n"
            "                          KV cache with BOS as its first token\n"
            "  --chunks N              process at most N chunks (default: all full chunks of the text)\n"
            "  -t, --threads N         OpenMP threads (default: OMP_NUM_THREADS or all cores); the\n"
            "                          output is byte-identical for any thread count\n"
            "  --process-output        also collect output.weight (not a tied token_embd)\n"
            "  --kv f16|f32            KV cache precision (default f16, as llama-imatrix)\n"
            "  --quiet                 no progress, no summary\n"
            "  --json                  print the summary as one JSON object\n"
            "  -h, --help              this help\n"
            "\n"
            "Memory: the model file (mapped) + the text (with --chunks N, about what N chunks\n"
            "need) + 4 bytes per token + the engine for one chunk (KV cache n_layer * ctx *\n"
            "(k+v width) * 4 bytes, activations min(ctx,512) * widest layer * ~40 bytes) + 8\n"
            "bytes per input column of every collected weight. The text needs at least one chunk (ctx tokens).\n"
            "\n"
            "Progress (chunk n/N, tokens/s, ETA) goes to stderr when it is a terminal; the summary\n"
            "to stdout. Exit 0 ok, 1 failure, 2 usage.\n");
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Fail before the pass, not after it, if the output directory does not take
 * a new file: create and remove a probe next to the output. */
static int probe_output(const char *path, qf_err *err) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return qf_set_err(err, QF_EINVAL, "%s: is a directory", path);
    size_t n = strlen(path) + 40;
    char *probe = malloc(n);
    if (!probe) return qf_set_err(err, QF_ENOMEM, "out of memory");
    snprintf(probe, n, "%s.probe.%ld", path, (long)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    int rc = 0;
    if (fd < 0)
        rc = qf_set_err(err, QF_EIO, "%s: cannot write there: %s", path, strerror(errno));
    else {
        close(fd);
        unlink(probe);
    }
    free(probe);
    return rc;
}

static void progress_tty(void *user, int64_t done, int64_t n_chunks, int64_t tokens, double seconds) {
    (void)user;
    const double tps = seconds > 0 ? (double)tokens / seconds : 0.0;
    const double eta = done > 0 ? seconds / (double)done * (double)(n_chunks - done) : 0.0;
    fprintf(stderr, "\rchunk %lld/%lld  %.0f tokens/s  ETA %.0fs   ", (long long)done, (long long)n_chunks, tps, eta);
    if (done == n_chunks) fputc('\n', stderr);
    fflush(stderr);
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *text_path = NULL, *out_path = "imatrix.gguf", *format = NULL;
    int64_t n_ctx = 512, n_chunks = 0, n_threads = 0;
    int process_output = 0, quiet = 0, json = 0, kv_f16 = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            NEED_VAL();
            text_path = val;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            NEED_VAL();
            out_path = val;
        } else if (!strcmp(a, "--output-format")) {
            NEED_VAL();
            if (strcmp(val, "gguf") && strcmp(val, "dat")) return qf_cli_usage(PROG, "--output-format takes gguf or dat, not '%s'", val);
            format = val;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
            NUM(n_ctx, 1);
        } else if (!strcmp(a, "--chunks")) {
            NUM(n_chunks, 1);
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NUM(n_threads, 1);
        } else if (!strcmp(a, "--process-output")) {
            process_output = 1;
        } else if (!strcmp(a, "--kv")) {
            NEED_VAL();
            if (!strcmp(val, "f16")) kv_f16 = 1;
            else if (!strcmp(val, "f32")) kv_f16 = 0;
            else return qf_cli_usage(PROG, "--kv takes f16 or f32, not '%s'", val);
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (a[0] == '-' && a[1]) {
            return qf_cli_usage(PROG, "unknown option '%s'", a);
        } else if (!model_path) {
            model_path = a;
        } else {
            return qf_cli_usage(PROG, "unexpected argument '%s'", a);
        }
    }
    if (!model_path) return qf_cli_usage(PROG, "%s", "no model given");
    if (!text_path) return qf_cli_usage(PROG, "%s", "no calibration text given (-f TEXT)");
    if (!*out_path) return qf_cli_usage(PROG, "%s", "empty output name");
    const int as_dat = format ? !strcmp(format, "dat") : ends_with(out_path, ".dat");
#ifdef _OPENMP
    if (n_threads > 0) omp_set_num_threads((int)n_threads);
#endif

    int rc = 1;
    qf_err err = {0};
    qf_model m;
    memset(&m, 0, sizeof m);
    qf_text tx;
    memset(&tx, 0, sizeof tx);
    qf_calib cal;
    memset(&cal, 0, sizeof cal);
    qf_imatrix im;
    qf_imatrix_init(&im);
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    qf_calib_acc *acc = NULL;

    /* like llama.cpp's -f: one trailing newline is dropped; with --chunks,
     * only as much text as those chunks need is read */
    const int64_t need = n_chunks > 0 && n_chunks <= INT64_MAX / n_ctx ? n_chunks * n_ctx : 0;
    if (qf_model_load(&m, model_path, &err) < 0 || qf_text_init(&tx, &m.file, &err) < 0 ||
        qf_text_encode_file(&tx, text_path, need, 1, &ids, &n_ids, &err) < 0) {
        qf_cli_fail(PROG, "%s", err.msg);
        goto done;
    }
    if (n_ids < n_ctx) {
        fprintf(stderr, PROG ": error: %s: %lld tokens, fewer than one chunk of %lld (use a longer text or a smaller --ctx)\n",
                text_path, (long long)n_ids, (long long)n_ctx);
        goto done;
    }
    const char *inputs[] = {model_path, text_path};
    if (qf_check_output(out_path, inputs, 2, &err) < 0 || probe_output(out_path, &err) < 0) {
        qf_cli_fail(PROG, "%s", err.msg);
        goto done;
    }

    qf_calib_options co = {0};
    co.process_output = process_output;
    if (qf_calib_init(&cal, &m, &co, &err) < 0 || qf_calib_imatrix_new(&cal, &acc, &err) < 0 ||
        qf_calib_add(&cal, acc, &err) < 0) {
        qf_cli_fail(PROG, "%s", err.msg);
        goto done;
    }
    if (cal.n_targets == 0) {
        qf_cli_fail(PROG, "%s", "the model has no weights to collect");
        goto done;
    }
    qf_calib_params p = {0};
    p.n_ctx = n_ctx;
    p.max_chunks = n_chunks;
    p.kv_f16 = kv_f16;
    qf_text_bos(&tx, &p.add_bos, &p.bos_id);
    if (!quiet && !json && isatty(STDERR_FILENO)) p.progress = progress_tty;
    qf_calib_stats st;
    if (qf_calib_run(&cal, ids, n_ids, &p, &st, &err) < 0) {
        qf_cli_fail(PROG, "%s", err.msg);
        goto done;
    }
    if (qf_calib_imatrix_export(&cal, acc, (uint32_t)st.n_chunks, (uint32_t)n_ctx, text_path, &im, &err) < 0) {
        qf_cli_fail(PROG, "%s", err.msg);
        goto done;
    }
    if (im.n_entries == 0) {
        fprintf(stderr, PROG ": error: no weight received a batch of at least %lld tokens (--ctx %lld is too small)\n",
                (long long)cal.opt.min_tokens, (long long)n_ctx);
        goto done;
    }
    if ((as_dat ? qf_imatrix_write_dat(&im, out_path, &err) : qf_imatrix_write_gguf(&im, out_path, &err)) < 0) {
        qf_cli_fail(PROG, "%s", err.msg);
        goto done;
    }
    if (json) {
        printf("{\"model\": ");
        qf_cli_json_str(stdout, model_path);
        printf(", \"text\": ");
        qf_cli_json_str(stdout, text_path);
        printf(", \"output\": ");
        qf_cli_json_str(stdout, out_path);
        printf(", \"format\": \"%s\", \"n_tokens_text\": %lld, \"n_ctx\": %lld, \"n_chunks\": %lld, \"n_tokens\": %lld",
               as_dat ? "dat" : "gguf", (long long)n_ids, (long long)n_ctx, (long long)st.n_chunks,
               (long long)st.n_tokens);
        printf(", \"entries\": %zu, \"calls_skipped\": %lld, \"seconds\": %.3f, \"tokens_per_second\": %.1f}\n",
               im.n_entries, (long long)cal.n_calls_skipped, st.seconds, st.tokens_per_second);
    } else if (!quiet) {
        printf("imatrix: %zu entries, %lld chunks x %lld tokens (%lld of %lld tokens), %.2f s, %.0f tokens/s -> %s (%s)\n",
               im.n_entries, (long long)st.n_chunks, (long long)n_ctx, (long long)st.n_tokens, (long long)n_ids,
               st.seconds, st.tokens_per_second, out_path, as_dat ? "legacy .dat" : "gguf");
    }
    rc = 0;
done:
    qf_imatrix_free(&im);
    qf_calib_free(&cal);
    free(ids);
    qf_text_free(&tx);
    qf_model_free(&m);
    return rc;
}
