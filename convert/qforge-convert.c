/* qforge-convert - Hugging Face checkpoint directory -> GGUF (see docs/convert.md). */
#include "convert.h"
#include "qf_tmpfile.h"
#include "qf_cli.h"
#include "qf_io.h"
#include "arch.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROG "qforge-convert"
static const char *prog = PROG;

static void usage(FILE *fp) {
    char archs[1024];
    size_t o = 0;
    const qf_arch *a;
    archs[0] = 0;
    for (size_t i = 0; (a = qf_hf_arch_at(i)) && o < sizeof archs; i++)
        o += (size_t)snprintf(archs + o, sizeof archs - o, "  %-24s -> %s\n", a->hf_class, a->gguf_arch);
    fprintf(fp,
            "usage: %s MODEL_DIR -o OUT.gguf [options]\n"
            "\n"
            "Convert a Hugging Face checkpoint directory (config.json, *.safetensors,\n"
            "tokenizer files) to GGUF, writing what llama.cpp's convert_hf_to_gguf.py\n"
            "writes for the same input. MODEL_DIR may also be a Hugging Face hub cache\n"
            "entry: models--ORG--NAME, or ORG/NAME found under $HF_HOME/hub (default\n"
            "~/.cache/huggingface/hub); the snapshot of refs/main is read.\n"
            "\n"
            "options:\n"
            "  -o, --outfile OUT.gguf   output file (written to a temp file, then renamed)\n"
            "  --outtype TYPE           f32, f16 (default), bf16, q8_0, or auto (keep the\n"
            "                           source precision: F32->F32, F16->F16, BF16->BF16);\n"
            "                           1-D tensors, norms and biases are always F32; q8_0\n"
            "                           rows not divisible by 32 fall back to F16\n"
            "  --split-max-size N       split into shards of at most N bytes of tensor data\n"
            "                           (N may end in K, M, G, T = 10^3..10^12), named\n"
            "                           OUT-00001-of-0000N.gguf with split.* keys as\n"
            "                           llama-gguf-split writes them\n"
            "  --model-name NAME        general.name to write (default: from config.json\n"
            "                           _name_or_path, else the directory or cache repo name)\n"
            "  --manifest               also write OUT.gguf.xxh: XXH3-128 of every tensor's\n"
            "                           data and of every output file\n"
            "  -t, --threads N          1 to 4x the cores; accepted for compatibility and ignored:\n"
            "                           conversion and writing run on one thread (a converter/\n"
            "                           writer thread pair measured no faster)\n"
            "  --fsync                  fsync each output file before renaming it into place and\n"
            "                           the directory after (durable against a power loss; hands\n"
            "                           the data to the disk every 8 MiB so the final wait is short).\n"
            "                           Default off, as cp and llama.cpp: the temp file + rename\n"
            "                           already means a failed run leaves no partial file\n"
            "  -q, --quiet              no progress output\n"
            "  -h, --help               this help\n"
            "  --version                version, commit, build flags and instruction sets\n"
            "\n"
            "Options take their value as --opt VALUE or --opt=VALUE.\n"
            "\n"
            "supported architectures (config.json \"architectures\" -> GGUF general.architecture;\n"
            "docs/convert.md lists what differs between them):\n"
            "%s"
            "\n"
            "memory: streaming. Tensors are read (read(), not mapped) in chunks of <= 256 KiB\n"
            "of source into one buffer and converted into one output buffer of <= 256 KiB;\n"
            "the next 32 MiB of source are read ahead into the page cache, which is not\n"
            "memory of this process.\n"
            "  peak RSS <= largest output tensor + 64 MiB\n"
            "in practice a few MiB + tokenizer and metadata, whatever the model size\n"
            "(measured 6-7 MiB converting a 2.2 GB TinyLlama-1.1B-shaped model).\n"
            "exit status: 0 ok, 1 error (no output file is left behind), 2 usage error.\n",
            prog, archs);
}

typedef struct progress_state {
    double t0;
    int active;
} progress_state;

static void on_progress(const qf_convert_progress *p, void *user) {
    progress_state *ps = user;
    double dt = qf_now_seconds() - ps->t0;
    double mbs = dt > 0 ? (double)p->bytes_done / 1e6 / dt : 0.0;
    double eta = (p->bytes_done > 0 && dt > 0) ? dt * (double)(p->bytes_total - p->bytes_done) / (double)p->bytes_done : 0.0;
    fprintf(stderr, "\r[%*llu/%llu] %-40.40s %8.1f MB/s  ETA %5.0fs", (int)snprintf(NULL, 0, "%llu", (unsigned long long)p->n_tensors),
            (unsigned long long)p->tensor_index + 1, (unsigned long long)p->n_tensors, p->name, mbs, eta);
    fflush(stderr);
    ps->active = 1;
}

int main(int argc, char **argv) {
    qf_cli_wait_policy(argv);
    qf_tmpfile_install(); /* a fatal signal removes the temp output files */
    const char *model_dir = NULL, *out = NULL;
    qf_convert_opts o;
    memset(&o, 0, sizeof o);
    o.outtype = QF_OUTTYPE_F16;
    /* -t is checked and ignored: conversion is single-threaded */
    qf_cli_common cli = {.accept = QF_CLI_THREADS | QF_CLI_QUIET | QF_CLI_Q};
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        QF_ARG_BEGIN(&cli, usage);
        if (!strcmp(a, "-o") || !strcmp(a, "--outfile")) {
            NEED_VAL();
            out = val;
        } else if (!strcmp(a, "--outtype")) {
            NEED_VAL();
            int t = qf_outtype_from_name(val);
            if (t < 0) return qf_cli_usage(PROG, "--outtype: unknown type '%s' (f32, f16, bf16, q8_0, auto)", val);
            o.outtype = (qf_outtype)t;
        } else if (!strcmp(a, "--split-max-size")) {
            NEED_VAL();
            if (qf_parse_size(val, &o.split_max_size))
                return qf_cli_usage(PROG, "--split-max-size: expected a size of at least 1 byte (e.g. 4G, 500M), not '%s'", val);
        } else if (!strcmp(a, "--model-name")) {
            NEED_VAL();
            o.model_name = val;
        } else if (!strcmp(a, "--manifest")) {
            o.write_manifest = 1;
        } else if (!strcmp(a, "--fsync")) {
            o.fsync_output = 1;
        } else {
            QF_ARG_POSITIONAL(&model_dir, 1, &n_pos);
        }
        QF_ARG_END();
    }
    if (!model_dir || !out) return qf_cli_usage(PROG, "%s", !model_dir ? "missing MODEL_DIR" : "missing -o OUT.gguf");
    /* a file size limit (ulimit -f) must surface as EFBIG from write(), not kill us */
    signal(SIGXFSZ, SIG_IGN);
    char *snapshot = NULL; /* a hub cache name resolved */
    o.model_dir = qf_cli_model_arg(prog, model_dir, &snapshot);
    if (!o.model_dir) return 1;
    o.out_path = out;
    progress_state ps;
    memset(&ps, 0, sizeof ps);
    ps.t0 = qf_now_seconds();
    int show = !cli.quiet && isatty(2);
    if (show) {
        o.progress = on_progress;
        o.progress_user = &ps;
    }
    qf_err err = {0};
    if (qf_check_output(out, &model_dir, 1, &err) < 0) {
        fprintf(stderr, "%s: error: %s\n", prog, err.msg);
        return 1;
    }
    qf_convert_result res;
    int rc = qf_convert(&o, &res, &err);
    free(snapshot);
    if (ps.active) fputc('\n', stderr);
    if (rc) {
        fprintf(stderr, "%s: error: %s\n", prog, err.msg[0] ? err.msg : "conversion failed");
        return 1;
    }
    if (!cli.quiet && res.tokenizer_unmerged)
        fprintf(stderr, "%s: warning: %s/tokenizer.json: %u token pairs concatenate to a token without a merge line; "
                "llama.cpp may tokenize some text unlike Hugging Face (see docs/tokenizers.md)\n", prog, o.model_dir,
                res.tokenizer_unmerged);
    if (!cli.quiet && res.tokenizer_missing_bytes)
        fprintf(stderr, "%s: warning: %s/tokenizer.json: %u of the 256 <0xXX> byte tokens are missing; llama.cpp "
                "aborts on text with a character outside the vocabulary (Hugging Face gives unk)\n", prog, o.model_dir,
                res.tokenizer_missing_bytes);
    if (show)
        fprintf(stderr, "%s: wrote %s: %llu tensors, %llu parameters, %.1f MB in %u file%s, %.1fs\n", prog, out,
                (unsigned long long)res.n_tensors, (unsigned long long)res.n_params, (double)res.tensor_bytes / 1e6,
                res.n_shards, res.n_shards == 1 ? "" : "s", qf_now_seconds() - ps.t0);
    return 0;
}
