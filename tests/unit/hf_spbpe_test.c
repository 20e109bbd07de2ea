/* hf_spbpe_test.c - tokenizer.json-only SentencePiece-style BPE.
 *
 * The fixture is made here: a small BPE is trained on a built-in corpus
 * (most frequent adjacent pair first), written as a tokenizer.json with the
 * Llama normalizer (Prepend "▁", Replace " " -> "▁"), byte_fallback and
 * added tokens. The expected ids come from ref_encode(), an implementation of
 * HF tokenizers' BPE written for this test only (added tokens cut from the
 * raw text, normalize each piece, per-character vocabulary lookup with byte
 * fallback / unk, then the adjacent pair with the lowest merge rank merges
 * first, leftmost on ties; O(n^2), no shared code with verify/tokenizer.c).
 * Checked against it, on about 5000 characters of mixed text (ASCII,
 * accents, CJK, emoji, whitespace runs, digits):
 *   - qforge's tokenizer on the HF directory (formats/hf_tokenizer.c ->
 *     verify/tokenizer.c HF rules), for byte fallback, for a vocabulary
 *     without byte tokens (unk, fuse_unk on and off) and for Metaspace;
 *   - llama.cpp's llama-tokenize on the GGUF qforge-convert writes (scores
 *     from merge ranks), and qforge's own GGUF tokenizer on it;
 *   - llama-tokenize on the same GGUF with every score equal (what llama.cpp's
 *     converter writes for this layout): it must differ, which is why the
 *     scores come from the ranks.
 */
#include "qf_test.h"

#include "convert.h"
#include "gguf.h"
#include "hf_tokenizer.h"
#include "tokenizer.h"
#include "vocab.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* ---------------- fixture: corpus, trainer, tokenizer.json ---------------- */

#define SP "\xE2\x96\x81"
#define MAXTOK 1024

typedef struct fixture {
    char *tok[MAXTOK];       /* model.vocab, id = index */
    int n_tok;
    char *merge_a[MAXTOK], *merge_b[MAXTOK];
    int n_merges;
    /* added tokens (ids after the vocab) */
    const char *added[4];
    int added_special[4];
    int n_added;
    int bytes;               /* <0xXX> tokens present, byte_fallback */
    int fuse_unk;
    int metaspace;           /* Metaspace pre-tokenizer instead of the normalizer: 1 split + prepend
                              * always, 2 no split + prepend first (transformers' legacy=false Llama) */
} fixture;

static const char *const k_corpus[] = {
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine.",
    "The quick brown fox jumps over the lazy dog near the river bank, then the dog sleeps again.",
    "In 2024 the team shipped 3 releases and fixed 128 bugs; the tests ran 4096 times in total.",
    "Caf\xC3\xA9 cr\xC3\xA8me br\xC3\xBBl\xC3\xA9" "e, na\xC3\xAFve r\xC3\xA9sum\xC3\xA9: the \xC3\xA9l\xC3\xA8ve went to the caf\xC3\xA9 every day.",
    "They said: \"it is time to go home\", and the little bird sang a happy song to the sun.",
    "Numbers like 10, 20, 30 and 1000 appear in the text; so do words like there, their and then.",
    "She wanted to see the big tree in the park, so she ran and ran until she saw the tree.",
    "the the the of and to in is was that it for on with as at by this had not are but from",
};

/* Split a normalized sentence into one-character strings. */
static int split_chars(const char *s, char **out) {
    int n = 0;
    for (size_t i = 0; s[i];) {
        unsigned c = (unsigned char)s[i];
        size_t l = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        out[n++] = strndup(s + i, l);
        i += l;
    }
    return n;
}

/* " " -> "▁" and a leading "▁" (the Llama normalizer). */
static char *normalize(const char *s, size_t len, int prepend) {
    char *o = malloc(3 * len + 4);
    size_t k = 0;
    if (prepend && len) { memcpy(o, SP, 3); k = 3; }
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ') { memcpy(o + k, SP, 3); k += 3; }
        else o[k++] = s[i];
    }
    o[k] = 0;
    return o;
}

static int fx_find(const fixture *f, const char *s) {
    for (int i = 0; i < f->n_tok; i++)
        if (strcmp(f->tok[i], s) == 0) return i;
    return -1;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Train: the most frequent adjacent pair (ties: smallest "a\x1f" "b") merges
 * until the vocabulary has `target` tokens. A merge may rebuild a token that
 * already exists (as trainers do). */
static void fx_train(fixture *f, int target) {
    enum { NS = 16, MAXSYM = 256 };
    char *seq[NS][MAXSYM];
    int len[NS], ns = 0;
    for (size_t i = 0; i < sizeof k_corpus / sizeof k_corpus[0]; i++) {
        char *n = normalize(k_corpus[i], strlen(k_corpus[i]), 1);
        len[ns] = split_chars(n, seq[ns]);
        free(n);
        for (int k = 0; k < len[ns]; k++)
            if (fx_find(f, seq[ns][k]) < 0) f->tok[f->n_tok++] = strdup(seq[ns][k]);
        ns++;
    }
    char **pairs = malloc(sizeof(char *) * NS * MAXSYM);
    while (f->n_tok < target) {
        int np = 0;
        for (int s = 0; s < ns; s++)
            for (int k = 0; k + 1 < len[s]; k++) {
                size_t la = strlen(seq[s][k]), lb = strlen(seq[s][k + 1]);
                char *p = malloc(la + lb + 2);
                memcpy(p, seq[s][k], la);
                p[la] = 0x1f;
                memcpy(p + la + 1, seq[s][k + 1], lb + 1);
                pairs[np++] = p;
            }
        if (np == 0) break;
        qsort(pairs, np, sizeof *pairs, cmp_str);
        int best = 0, best_n = 0;
        for (int i = 0; i < np;) {
            int j = i;
            while (j < np && strcmp(pairs[j], pairs[i]) == 0) j++;
            if (j - i > best_n) { best_n = j - i; best = i; }
            i = j;
        }
        char *sep = strchr(pairs[best], 0x1f);
        *sep = 0;
        char *a = strdup(pairs[best]), *b = strdup(sep + 1);
        for (int i = 0; i < np; i++) free(pairs[i]);
        f->merge_a[f->n_merges] = a;
        f->merge_b[f->n_merges] = b;
        f->n_merges++;
        char *ab = malloc(strlen(a) + strlen(b) + 1);
        strcpy(ab, a);
        strcat(ab, b);
        if (fx_find(f, ab) < 0) f->tok[f->n_tok++] = strdup(ab);
        for (int s = 0; s < ns; s++) {
            int o = 0;
            for (int k = 0; k < len[s]; k++) {
                if (k + 1 < len[s] && strcmp(seq[s][k], a) == 0 && strcmp(seq[s][k + 1], b) == 0) {
                    free(seq[s][k]);
                    free(seq[s][k + 1]);
                    seq[s][o++] = strdup(ab);
                    k++;
                } else {
                    seq[s][o++] = seq[s][k];
                }
            }
            len[s] = o;
        }
        free(ab);
    }
    free(pairs);
    for (int s = 0; s < ns; s++)
        for (int k = 0; k < len[s]; k++) free(seq[s][k]);
}

/* Base vocabulary, then training up to `target` tokens, then added tokens. */
static void fx_make(fixture *f, int bytes, int fuse_unk, int metaspace, int target) {
    memset(f, 0, sizeof *f);
    f->bytes = bytes;
    f->fuse_unk = fuse_unk;
    f->metaspace = metaspace;
    f->tok[f->n_tok++] = strdup("<unk>");
    f->tok[f->n_tok++] = strdup("<s>");
    f->tok[f->n_tok++] = strdup("</s>");
    for (int b = 0; bytes && b < 256; b++) {
        char buf[8];
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        f->tok[f->n_tok++] = strdup(buf);
    }
    fx_train(f, target);
    f->added[0] = "<|user|>"; f->added_special[0] = 1;
    f->added[1] = "qforge";   f->added_special[1] = 0;
    f->added[2] = "<sep/>";   f->added_special[2] = 0;
    f->n_added = 3;
}

static void fx_free(fixture *f) {
    for (int i = 0; i < f->n_tok; i++) free(f->tok[i]);
    for (int i = 0; i < f->n_merges; i++) { free(f->merge_a[i]); free(f->merge_b[i]); }
}

static void json_str(FILE *fp, const char *s) {
    fputc('"', fp);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(fp, "\\%c", c);
        else if (c < 0x20) fprintf(fp, "\\u%04x", c);
        else fputc(c, fp);
    }
    fputc('"', fp);
}

static void fx_write(const fixture *f, const char *dir) {
    char path[2048];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *fp = fopen(path, "wb");
    if (!fp) return;
    fputs("{\"version\": \"1.0\", \"truncation\": null, \"padding\": null, \"added_tokens\": [", fp);
    for (int i = 0; i < 3; i++) {
        fprintf(fp, "%s{\"id\": %d, \"content\": \"%s\", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                    "\"normalized\": false, \"special\": true}", i ? ", " : "", i, f->tok[i]);
    }
    for (int i = 0; i < f->n_added; i++) {
        fprintf(fp, ", {\"id\": %d, \"content\": ", f->n_tok + i);
        json_str(fp, f->added[i]);
        fprintf(fp, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
                    "\"special\": %s}", f->added_special[i] ? "true" : "false");
    }
    fputs("],\n", fp);
    if (f->metaspace == 1)
        fputs(" \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"" SP "\", "
              "\"prepend_scheme\": \"always\", \"split\": true},\n", fp);
    else if (f->metaspace == 2)
        fputs(" \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"" SP "\", "
              "\"prepend_scheme\": \"first\", \"split\": false},\n", fp);
    else
        fputs(" \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"" SP "\"}, "
              "{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"" SP "\"}]},\n"
              " \"pre_tokenizer\": null,\n", fp);
    fputs(" \"post_processor\": null, \"decoder\": null,\n", fp);
    fprintf(fp, " \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": \"<unk>\", "
                "\"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, \"fuse_unk\": %s, "
                "\"byte_fallback\": %s, \"ignore_merges\": false,\n  \"vocab\": {",
            f->fuse_unk ? "true" : "false", f->bytes ? "true" : "false");
    for (int i = 0; i < f->n_tok; i++) {
        fputs(i ? ", " : "", fp);
        json_str(fp, f->tok[i]);
        fprintf(fp, ": %d", i);
    }
    fputs("},\n  \"merges\": [", fp);
    for (int i = 0; i < f->n_merges; i++) {
        fputs(i ? ", [" : "[", fp);
        json_str(fp, f->merge_a[i]);
        fputs(", ", fp);
        json_str(fp, f->merge_b[i]);
        fputs("]", fp);
    }
    fputs("]}}\n", fp);
    fclose(fp);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    fp = fopen(path, "wb");
    if (!fp) return;
    fputs("{\"add_bos_token\": true, \"add_eos_token\": false, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", "
          "\"unk_token\": \"<unk>\", \"tokenizer_class\": \"LlamaTokenizer\"}\n", fp);
    fclose(fp);
}

/* ---------------- reference: HF tokenizers' BPE, written for this test ---------------- */

typedef struct ids { int32_t *p; size_t n, cap; } ids;

static void ids_add(ids *v, int32_t x) {
    if (v->n == v->cap) { v->cap = v->cap ? 2 * v->cap : 64; v->p = realloc(v->p, v->cap * sizeof *v->p); }
    v->p[v->n++] = x;
}

static int ref_rank(const fixture *f, const char *a, const char *b) {
    for (int r = 0; r < f->n_merges; r++)
        if (strcmp(f->merge_a[r], a) == 0 && strcmp(f->merge_b[r], b) == 0) return r;
    return -1;
}

/* One word: characters -> ids (byte fallback / unk), then merges. */
static void ref_word(const fixture *f, const char *w, ids *out) {
    enum { MAXS = 4096 };
    static char *sym[MAXS];
    static int32_t fixed[MAXS];
    int n = 0, unk_run = 0;
    for (size_t i = 0; w[i];) {
        unsigned c = (unsigned char)w[i];
        size_t l = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        char ch[5] = {0};
        memcpy(ch, w + i, l);
        i += l;
        if (fx_find(f, ch) >= 0) {
            if (unk_run) { sym[n] = NULL; fixed[n++] = 0; unk_run = 0; }
            sym[n] = strdup(ch); fixed[n++] = -1;
        } else if (f->bytes) {
            for (size_t k = 0; k < l; k++) {
                char b[8];
                snprintf(b, sizeof b, "<0x%02X>", (unsigned char)ch[k]);
                sym[n] = NULL; fixed[n++] = fx_find(f, b);
            }
        } else {
            if (unk_run && !f->fuse_unk) { sym[n] = NULL; fixed[n++] = 0; }
            unk_run = 1;
        }
    }
    if (unk_run) { sym[n] = NULL; fixed[n++] = 0; }
    for (;;) {
        int best = -1, best_rank = 0;
        for (int k = 0; k + 1 < n; k++) {
            if (fixed[k] >= 0 || fixed[k + 1] >= 0) continue;
            int r = ref_rank(f, sym[k], sym[k + 1]);
            if (r >= 0 && (best < 0 || r < best_rank)) { best = k; best_rank = r; }
        }
        if (best < 0) break;
        char *m = malloc(strlen(sym[best]) + strlen(sym[best + 1]) + 1);
        strcpy(m, sym[best]);
        strcat(m, sym[best + 1]);
        free(sym[best]);
        free(sym[best + 1]);
        sym[best] = m;
        memmove(sym + best + 1, sym + best + 2, (n - best - 2) * sizeof *sym);
        memmove(fixed + best + 1, fixed + best + 2, (n - best - 2) * sizeof *fixed);
        n--;
    }
    for (int k = 0; k < n; k++) {
        ids_add(out, fixed[k] >= 0 ? fixed[k] : fx_find(f, sym[k]));
        free(sym[k]);
    }
}

/* A piece of text between added tokens (`first`: it starts the text). */
static void ref_piece(const fixture *f, const char *s, size_t len, int first, ids *out) {
    if (len == 0) return;
    int lead = s[0] == ' ';
    int prepend = f->metaspace == 0 ? 1 : f->metaspace == 1 ? !lead : first && !lead;
    char *norm = normalize(s, len, prepend);
    if (f->metaspace != 1) {
        ref_word(f, norm, out);
    } else {
        /* Metaspace split: every "▁" starts a word */
        size_t start = 0, n = strlen(norm);
        for (size_t i = 1; i <= n; i++) {
            if (i < n && memcmp(norm + i, SP, 3) != 0) continue;
            char save = norm[i];
            norm[i] = 0;
            ref_word(f, norm + start, out);
            norm[i] = save;
            start = i;
        }
    }
    free(norm);
}

/* HF encode(text, add_special_tokens=False): added tokens (none normalized)
 * are cut from the raw text, leftmost-longest. */
static void ref_encode(const fixture *f, const char *s, size_t len, ids *out) {
    const char *all[8];
    int32_t id[8];
    int na = 0;
    for (int i = 0; i < 3; i++) { all[na] = f->tok[i]; id[na++] = i; }
    for (int i = 0; i < f->n_added; i++) { all[na] = f->added[i]; id[na++] = f->n_tok + i; }
    size_t start = 0;
    for (size_t i = 0; i < len;) {
        int hit = -1;
        size_t hl = 0;
        for (int a = 0; a < na; a++) {
            size_t l = strlen(all[a]);
            if (l <= len - i && memcmp(s + i, all[a], l) == 0 && l > hl) { hit = a; hl = l; }
        }
        if (hit < 0) { i++; continue; }
        ref_piece(f, s + start, i - start, start == 0, out);
        ids_add(out, id[hit]);
        i += hl;
        start = i;
    }
    ref_piece(f, s + start, len - start, start == 0, out);
}

/* ---------------- test text ---------------- */

typedef struct cases { char *s[128]; size_t len[128]; int n; size_t chars; } cases;

static const char *const k_pool[] = {
    "the", "little", "girl", "Lily", "tree", "park", "sunshine", "there", "their", "then", "time", "bird", "song",
    "caf\xC3\xA9", "na\xC3\xAFve", "r\xC3\xA9sum\xC3\xA9", "\xC3\xA9l\xC3\xA8ve", "cr\xC3\xA8me", "\xC3\x86r\xC3\xB8sk\xC3\xB8""bing",
    "Stra\xC3\x9F""e", "\xC5\x81\xC3\xB3""d\xC5\xBA", "\xD0\x9C\xD0\xBE\xD1\x81\xD0\xBA\xD0\xB2\xD0\xB0",
    "\xE6\x9D\xB1\xE4\xBA\xAC\xE9\x83\xBD", "\xE5\xA4\xA9\xE6\xB0\x97", "\xE3\x81\xAF\xE6\x99\xB4\xE3\x82\x8C",
    "\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4", "\xF0\x9F\x98\x80", "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD",
    "\xF0\x9F\x87\xAB\xF0\x9F\x87\xB7", "\xE2\x9D\xA4\xEF\xB8\x8F", "2024", "3.14159", "1,000,000", "42", "007", "128",
    "  ", "   ", "\t", "\n", "\n\n", " \t ", "    ", "(", ")", "\"", "!", "?", ";", "qforge", "<|user|>", "<s>", "</s>",
    "thethe", "ofof", "Once", "upon", "THE", "Tree", "x", "zz", "q",
};

static void build_cases(cases *c) {
    qf_test_rng r = {0x5eed1234abcdull};
    memset(c, 0, sizeof *c);
    /* the corpus itself, then random mixtures */
    for (size_t i = 0; i < sizeof k_corpus / sizeof k_corpus[0]; i++) {
        c->s[c->n] = strdup(k_corpus[i]);
        c->len[c->n] = strlen(k_corpus[i]);
        c->chars += c->len[c->n++];
    }
    c->s[c->n] = strdup("  leading spaces and trailing   ");
    c->len[c->n] = strlen(c->s[c->n]);
    c->chars += c->len[c->n++];
    size_t npool = sizeof k_pool / sizeof k_pool[0];
    while (c->n < 64) {
        char buf[600];
        size_t k = 0;
        int words = 12 + (int)(qf_test_rng_u64(&r) % 20);
        for (int w = 0; w < words; w++) {
            const char *p = k_pool[qf_test_rng_u64(&r) % npool];
            size_t l = strlen(p);
            if (k + l + 2 >= sizeof buf) break;
            memcpy(buf + k, p, l);
            k += l;
            if (qf_test_rng_u64(&r) % 4) buf[k++] = ' ';
        }
        c->s[c->n] = strndup(buf, k);
        c->len[c->n] = k;
        c->chars += k;
        c->n++;
    }
}

static void cases_free(cases *c) {
    for (int i = 0; i < c->n; i++) free(c->s[i]);
}

/* UTF-8 characters in all cases (what "chars compared" counts). */
static size_t count_chars(const cases *c) {
    size_t n = 0;
    for (int i = 0; i < c->n; i++)
        for (size_t k = 0; k < c->len[i]; k++) n += ((unsigned char)c->s[i][k] & 0xC0) != 0x80;
    return n;
}

/* ---------------- helpers ---------------- */

static void fresh_dir(const char *name, char *out, size_t cap) {
    snprintf(out, cap, "%s/spbpe-%s-%ld", qf_test_tmpdir(), name, (long)getpid());
    char cmd[2400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", out, out);
    if (system(cmd) != 0) out[0] = 0;
}

/* Compare qforge's tokenizer over vocabulary v with ref_encode on every case;
 * returns the number of cases that differ. */
static int compare_qforge(qf_test *t, const fixture *f, const qf_vocab *v, const cases *c, size_t *n_ids) {
    qf_err err = {0};
    qf_tokenizer *tk = qf_tokenizer_create(v, &err);
    if (!tk) { CHECK(t, 0, "%s", err.msg); return -1; }
    int bad = 0;
    for (int i = 0; i < c->n; i++) {
        ids want = {0};
        ref_encode(f, c->s[i], c->len[i], &want);
        int32_t *got = NULL;
        size_t n = 0;
        int rc = qf_tokenize(tk, c->s[i], c->len[i], 0, 1, &got, &n, &err);
        CHECK(t, rc == 0, "%s", err.msg);
        int same = rc == 0 && n == want.n && (n == 0 || memcmp(got, want.p, n * sizeof *got) == 0);
        if (!same && bad++ < 3) {
            fprintf(stderr, "case %d '%.60s': got %zu ids, want %zu;", i, c->s[i], n, want.n);
            for (size_t k = 0; k < n && k < want.n; k++)
                if (got[k] != want.p[k]) { fprintf(stderr, " first diff at %zu: %d vs %d", k, got[k], want.p[k]); break; }
            fprintf(stderr, "\n");
        }
        *n_ids += want.n;
        free(got);
        free(want.p);
    }
    qf_tokenizer_free(tk);
    return bad;
}

static int load_hf(qf_test *t, const char *dir, qf_vocab *v) {
    qf_err err = {0};
    int rc = qf_vocab_from_hf_dir(v, dir, &err);
    CHECK(t, rc == 0, "%s", err.msg);
    return rc == 0;
}

/* ---------------- tests ---------------- */

/* The vocabulary read from the fixture: llama model, types, rank scores. */
static void test_vocab_layout(qf_test *t) {
    fixture f;
    char dir[1024];
    fx_make(&f, 1, 1, 0, 509);
    fresh_dir("layout", dir, sizeof dir);
    REQUIRE(t, dir[0], "mkdir");
    fx_write(&f, dir);
    qf_vocab v;
    qf_hf_tokenizer_info info;
    qf_err lerr = {0};
    REQUIRE(t, qf_vocab_from_hf_dir_ex(&v, dir, &info, &lerr) == 0, "%s", lerr.msg);
    printf("  trained fixture: %d tokens, %d merges, %u token pairs without a merge line\n", f.n_tok, f.n_merges,
           info.spm_bpe_unmerged);
    CHECK(t, strcmp(v.model, "llama") == 0 && strcmp(v.pre, "default") == 0, "model %s pre %s", v.model, v.pre);
    CHECK(t, info.spm_bpe_missing_bytes == 0, "missing byte tokens %u", info.spm_bpe_missing_bytes);
    CHECK(t, v.n_tokens == 512 && (int)v.n_merges == f.n_merges, "tokens %u merges %u", v.n_tokens, v.n_merges);
    CHECK(t, v.hf.enabled && v.hf.byte_fallback && v.hf.fuse_unk && v.hf.prepend == QF_HF_PREPEND_ALWAYS && !v.hf.split,
          "hf flags");
    CHECK(t, v.types[0] == QF_TOKEN_UNKNOWN && v.types[1] == QF_TOKEN_CONTROL && v.types[3] == QF_TOKEN_BYTE &&
                 v.types[258] == QF_TOKEN_BYTE && v.types[259] == QF_TOKEN_NORMAL,
          "types %d %d %d %d", v.types[0], v.types[1], v.types[3], v.types[259]);
    CHECK(t, v.types[509] == QF_TOKEN_CONTROL && v.types[510] == QF_TOKEN_USER_DEFINED && v.types[511] == QF_TOKEN_USER_DEFINED,
          "added types %d %d %d", v.types[509], v.types[510], v.types[511]);
    CHECK(t, v.bos_id == 1 && v.eos_id == 2 && v.unk_id == 0 && v.hf.unk_id == 0 && v.add_bos == 1, "specials");
    /* score rule: the token first made by merge r scores -r, others -(n_merges+1) */
    int ok = 1;
    for (int r = f.n_merges - 1; r >= 0; r--) {
        char ab[256];
        snprintf(ab, sizeof ab, "%s%s", f.merge_a[r], f.merge_b[r]);
        int id = fx_find(&f, ab);
        int first = r;
        for (int q = 0; q < r; q++) {
            char x[256];
            snprintf(x, sizeof x, "%s%s", f.merge_a[q], f.merge_b[q]);
            if (strcmp(x, ab) == 0) { first = q; break; }
        }
        if (id < 0 || v.scores[id] != -(float)first) ok = 0;
    }
    CHECK(t, ok, "merge scores");
    CHECK(t, v.scores[0] == -(float)f.n_merges - 1 && v.scores[3] == v.scores[0], "floor score %g", v.scores[0]);
    /* what convert writes: no merges for a llama vocabulary */
    char gg[1100];
    snprintf(gg, sizeof gg, "%s/v.gguf", dir);
    qf_err err = {0};
    gguf_writer *w = gguf_writer_create(gg, &err);
    REQUIRE(t, w, "%s", err.msg);
    CHECK(t, qf_vocab_write_gguf(&v, w) == 0, "write");
    CHECK(t, gguf_writer_begin_data(w) == 0 && gguf_writer_finish(w) == 0, "finish");
    gguf_file g;
    REQUIRE(t, gguf_open(&g, gg, &err) == 0, "%s", err.msg);
    qf_vocab back;
    CHECK(t, qf_vocab_from_gguf(&back, &g, &err) == 0 && back.n_merges == 0 && !back.hf.enabled &&
                 back.scores[259] == v.scores[259],
          "gguf round trip: merges %u", back.n_merges);
    qf_vocab_free(&back);
    gguf_close(&g);
    qf_vocab_free(&v);
    fx_free(&f);
}

/* HF directory: qforge's tokenizer == the reference, per layout. */
static void test_hf_dir_matches_reference(qf_test *t) {
    static const struct { const char *name; int bytes, fuse, meta; } layouts[] = {
        {"bytes", 1, 1, 0}, {"unk-fused", 0, 1, 0}, {"unk-each", 0, 0, 0}, {"metaspace", 1, 1, 1}, {"metaspace-first", 1, 1, 2},
    };
    cases c;
    build_cases(&c);
    for (size_t l = 0; l < sizeof layouts / sizeof layouts[0]; l++) {
        fixture f;
        char dir[1024];
        fx_make(&f, layouts[l].bytes, layouts[l].fuse, layouts[l].meta, layouts[l].bytes ? 509 : 300);
        fresh_dir(layouts[l].name, dir, sizeof dir);
        REQUIRE(t, dir[0], "mkdir");
        fx_write(&f, dir);
        qf_vocab v;
        if (load_hf(t, dir, &v)) {
            static const int want_prepend[] = {QF_HF_PREPEND_ALWAYS, QF_HF_PREPEND_META, QF_HF_PREPEND_META_FIRST};
            CHECK(t, v.hf.enabled && v.hf.byte_fallback == layouts[l].bytes && v.hf.fuse_unk == layouts[l].fuse &&
                         v.hf.split == (layouts[l].meta == 1) && v.hf.prepend == want_prepend[layouts[l].meta],
                  "%s: options read from tokenizer.json", layouts[l].name);
            size_t n_ids = 0;
            int bad = compare_qforge(t, &f, &v, &c, &n_ids);
            CHECK(t, bad == 0, "%s: %d of %d cases differ", layouts[l].name, bad, c.n);
            CHECK(t, n_ids > 1000, "%s: only %zu ids", layouts[l].name, n_ids);
            printf("  %s: %d cases, %zu chars, %zu ids, %d differ\n", layouts[l].name, c.n, count_chars(&c), n_ids, bad);
            qf_vocab_free(&v);
        }
        fx_free(&f);
    }
    cases_free(&c);
}

/* Sanity of the reference itself on hand-checked strings. */
static void test_reference_by_hand(qf_test *t) {
    fixture f;
    memset(&f, 0, sizeof f);
    const char *toks[] = {"<unk>", "<s>", "</s>", SP, "a", "b", "c", SP "a", "bc", SP "abc", "ab"};
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) f.tok[f.n_tok++] = strdup(toks[i]);
    const char *ma[] = {"b", SP, SP "a", "a"}, *mb[] = {"c", "a", "bc", "b"};
    for (int i = 0; i < 4; i++) { f.merge_a[i] = strdup(ma[i]); f.merge_b[i] = strdup(mb[i]); f.n_merges++; }
    f.fuse_unk = 1;
    ids o = {0};
    ref_encode(&f, "abc", 3, &o);   /* ▁abc: b+c (0), ▁+a (1), ▁a+bc (2) */
    CHECK(t, o.n == 1 && o.p[0] == 9, "abc -> %zu ids, first %d", o.n, o.n ? o.p[0] : -1);
    o.n = 0;
    ref_encode(&f, "ab", 2, &o);    /* ▁ab: ▁+a (1) first, then "▁a b" is no merge: [▁a, b] */
    CHECK(t, o.n == 2 && o.p[0] == 7 && o.p[1] == 5, "ab -> %zu ids", o.n);
    o.n = 0;
    ref_encode(&f, "a\xC3\xA9\xC3\xA8" "b", 6, &o);   /* ▁a <unk> b, unknowns fused */
    CHECK(t, o.n == 3 && o.p[1] == 0, "fused unk -> %zu ids", o.n);
    f.fuse_unk = 0;
    o.n = 0;
    ref_encode(&f, "a\xC3\xA9\xC3\xA8" "b", 6, &o);
    CHECK(t, o.n == 4 && o.p[1] == 0 && o.p[2] == 0, "unk each -> %zu ids", o.n);
    /* qforge's HF rules on the same tiny vocabulary */
    char dir[1024];
    fresh_dir("hand", dir, sizeof dir);
    REQUIRE(t, dir[0], "mkdir");
    f.n_added = 0;
    f.fuse_unk = 1;
    fx_write(&f, dir);
    qf_vocab v;
    if (load_hf(t, dir, &v)) {
        static const char *const s[] = {"abc", "ab", "a\xC3\xA9\xC3\xA8" "b", " ab  abc", ""};
        cases c = {0};
        for (int i = 0; i < 5; i++) { c.s[i] = strdup(s[i]); c.len[i] = strlen(s[i]); }
        c.n = 5;
        size_t n_ids = 0;
        CHECK(t, compare_qforge(t, &f, &v, &c, &n_ids) == 0, "hand cases");
        cases_free(&c);
        qf_vocab_free(&v);
    }
    free(o.p);
    fx_free(&f);
}


/* The documented limit of rank scores: "▁ab" is a token but neither "▁a b"
 * nor "▁ ab" is a merge. HF never makes it; llama.cpp's rule (concatenation
 * is a token) does. The loader counts such pairs (convert warns) and the
 * HF directory still tokenizes like HF. */
static void test_unmerged_pair_limit(qf_test *t) {
    fixture f;
    memset(&f, 0, sizeof f);
    const char *toks[] = {"<unk>", "<s>", "</s>", SP, "a", "b", SP "a", "ab", SP "ab"};
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) f.tok[f.n_tok++] = strdup(toks[i]);
    const char *ma[] = {SP, "a"}, *mb[] = {"a", "b"};
    for (int i = 0; i < 2; i++) { f.merge_a[i] = strdup(ma[i]); f.merge_b[i] = strdup(mb[i]); f.n_merges++; }
    char dir[1024];
    fresh_dir("unmerged", dir, sizeof dir);
    REQUIRE(t, dir[0], "mkdir");
    fx_write(&f, dir);
    qf_vocab v;
    qf_hf_tokenizer_info info;
    qf_err err = {0};
    REQUIRE(t, qf_vocab_from_hf_dir_ex(&v, dir, &info, &err) == 0, "%s", err.msg);
    CHECK(t, info.spm_bpe_unmerged == 2, "unmerged pairs %u (want 2: ▁a+b, ▁+ab)", info.spm_bpe_unmerged);
    CHECK(t, info.spm_bpe_missing_bytes == 256, "missing byte tokens %u", info.spm_bpe_missing_bytes);
    ids want = {0};
    ref_encode(&f, "ab", 2, &want);
    CHECK(t, want.n == 2 && want.p[0] == 6 && want.p[1] == 5, "HF: ab -> [▁a, b]");
    qf_err e2 = {0};
    qf_tokenizer *hf = qf_tokenizer_create(&v, &e2);
    REQUIRE(t, hf, "%s", e2.msg);
    int32_t *ids1 = NULL, *ids2 = NULL;
    size_t n1 = 0, n2 = 0;
    CHECK(t, qf_tokenize(hf, "ab", 2, 0, 0, &ids1, &n1, &e2) == 0 && n1 == 2 && ids1[0] == 6 && ids1[1] == 5,
          "HF dir: ab -> %zu ids", n1);
    /* the same vocabulary as the GGUF holds it (llama.cpp's rules) */
    v.hf.enabled = 0;
    qf_tokenizer *gg = qf_tokenizer_create(&v, &e2);
    REQUIRE(t, gg, "%s", e2.msg);
    CHECK(t, qf_tokenize(gg, "ab", 2, 0, 0, &ids2, &n2, &e2) == 0 && n2 == 1 && ids2[0] == 8, "GGUF rules: ab -> %zu ids",
          n2);
    free(ids1);
    free(ids2);
    free(want.p);
    qf_tokenizer_free(hf);
    qf_tokenizer_free(gg);
    qf_vocab_free(&v);
    fx_free(&f);
}

/* ---------------- llama.cpp on the converted GGUF ---------------- */

static int write_file_bytes(const char *path, const char *s, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    fwrite(s, 1, n, fp);
    return fclose(fp);
}

/* Run llama-tokenize (parse_special on) over the cases joined by "<sep/>";
 * returns malloc'd ids per case in out[i] (NULL on failure). */
static int peer_tokenize(qf_test *t, const char *peer, const char *gguf, const cases *c, int32_t sep, ids *out) {
    char txt[2048], cmd[8192];
    snprintf(txt, sizeof txt, "%s.txt", gguf);
    size_t cap = 16;
    for (int i = 0; i < c->n; i++) cap += c->len[i] + 8;
    char *all = malloc(cap);
    size_t k = 0;
    for (int i = 0; i < c->n; i++) {
        if (i) { memcpy(all + k, "<sep/>", 6); k += 6; }
        memcpy(all + k, c->s[i], c->len[i]);
        k += c->len[i];
    }
    write_file_bytes(txt, all, k);
    free(all);
    snprintf(cmd, sizeof cmd, "'%s' -m '%s' -f '%s' --ids --no-bos --no-escape --log-disable 2>/dev/null", peer, gguf, txt);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t bcap = 1 << 20, n = 0, got;
    char *buf = malloc(bcap + 1);
    while ((got = fread(buf + n, 1, bcap - n, p)) > 0) {
        n += got;
        if (n == bcap) buf = realloc(buf, (bcap *= 2) + 1);
    }
    int status = pclose(p);
    buf[n] = 0;
    char *q = strchr(buf, '[');
    if (status != 0 || !q) {
        CHECK(t, 0, "llama-tokenize failed (status %d): %s", status, cmd);
        free(buf);
        return -1;
    }
    q++;
    int ci = 0;
    for (;;) {
        while (*q == ' ' || *q == ',') q++;
        if (*q == ']' || *q == 0) break;
        long id = strtol(q, &q, 10);
        if (id == sep) { ci++; continue; }
        if (ci < c->n) ids_add(&out[ci], (int32_t)id);
    }
    free(buf);
    return ci + 1 == c->n ? 0 : -1;
}

static int count_diff(const fixture *f, const cases *c, ids *got, size_t *n_ids, size_t *n_bad_ids) {
    int bad = 0;
    for (int i = 0; i < c->n; i++) {
        ids want = {0};
        ref_encode(f, c->s[i], c->len[i], &want);
        *n_ids += want.n;
        int same = got[i].n == want.n && (want.n == 0 || memcmp(got[i].p, want.p, want.n * sizeof *want.p) == 0);
        if (!same) {
            bad++;
            /* ids that differ: position by position, plus the length difference */
            size_t m = got[i].n < want.n ? got[i].n : want.n, d = 0;
            for (size_t k = 0; k < m; k++) d += got[i].p[k] != want.p[k];
            *n_bad_ids += d + (got[i].n > want.n ? got[i].n - want.n : want.n - got[i].n);
        }
        free(want.p);
    }
    return bad;
}

/* Convert the fixture (with stories260K's weights: 512 tokens) and check
 * llama-tokenize; then the same vocabulary with llama.cpp's equal scores. */
static void test_llamacpp_on_converted(qf_test *t) {
    char peer[1024], weights[PATH_MAX];
    if (!qf_test_data(t, "peers/llama.cpp/bin/llama-tokenize", peer, sizeof peer)) return;
    char rel[1024];
    if (!qf_test_data(t, "models/stories260K", rel, sizeof rel)) return;
    REQUIRE(t, realpath(rel, weights), "realpath %s", rel);
    fixture f;
    char dir[1024], cmd[12288], out[1200], eq[1200];
    fx_make(&f, 1, 1, 0, 509);
    fresh_dir("conv", dir, sizeof dir);
    REQUIRE(t, dir[0], "mkdir");
    fx_write(&f, dir);
    snprintf(cmd, sizeof cmd, "ln -s '%s/model.safetensors' '%s/' && cp '%s/config.json' '%s/'", weights, dir, weights, dir);
    REQUIRE(t, system(cmd) == 0, "%s", cmd);
    snprintf(out, sizeof out, "%s/fixture.gguf", dir);
    qf_convert_opts o = {0};
    o.model_dir = dir;
    o.out_path = out;
    qf_err err = {0};
    REQUIRE(t, qf_convert(&o, NULL, &err) == 0, "convert: %s", err.msg);

    cases c;
    build_cases(&c);
    size_t chars = count_chars(&c);
    ids got[128];
    memset(got, 0, sizeof got);
    REQUIRE(t, peer_tokenize(t, peer, out, &c, 511, got) == 0, "llama-tokenize output does not split into %d cases", c.n);
    size_t n_ids = 0, n_bad_ids = 0;
    int bad = count_diff(&f, &c, got, &n_ids, &n_bad_ids);
    CHECK(t, bad == 0, "llama-tokenize on the converted GGUF: %d of %d cases differ from HF (%zu ids)", bad, c.n, n_bad_ids);
    printf("  rank scores: %d cases, %zu chars, %zu ids, %d cases / %zu ids differ\n", c.n, chars, n_ids, bad, n_bad_ids);
    for (int i = 0; i < c.n; i++) { free(got[i].p); got[i] = (ids){0}; }

    /* qforge's own GGUF tokenizer (llama.cpp's rules) on the converted file */
    gguf_file g;
    REQUIRE(t, gguf_open(&g, out, &err) == 0, "%s", err.msg);
    qf_vocab v;
    int rc = qf_vocab_from_gguf(&v, &g, &err);
    gguf_close(&g);
    REQUIRE(t, rc == 0, "%s", err.msg);
    size_t n2 = 0;
    CHECK(t, compare_qforge(t, &f, &v, &c, &n2) == 0, "qforge on the GGUF differs from HF");

    /* llama.cpp's converter: every score -1000 -> its SPM order is leftmost-first */
    for (uint32_t i = 0; i < v.n_tokens; i++) v.scores[i] = -1000.0f;
    snprintf(eq, sizeof eq, "%s/equal.gguf", dir);
    REQUIRE(t, gguf_open(&g, out, &err) == 0, "%s", err.msg);
    gguf_writer *w = gguf_writer_create(eq, &err);
    rc = w ? qf_vocab_write_gguf(&v, w) : -1;
    for (uint64_t k = 0; k < g.n_kv && rc == 0; k++) {
        const char *key = g.kv[k].key;
        if (strncmp(key, "tokenizer.", 10) == 0 || strstr(key, ".vocab_size")) continue;
        rc = gguf_writer_set_value(w, key, &g.kv[k].value);
    }
    if (rc == 0) rc = gguf_writer_begin_data(w);
    if (rc == 0) rc = gguf_writer_finish(w);
    else if (w) gguf_writer_abort(w);
    gguf_close(&g);
    REQUIRE(t, rc == 0, "writing %s", eq);
    REQUIRE(t, peer_tokenize(t, peer, eq, &c, 511, got) == 0, "llama-tokenize (equal scores)");
    size_t n_ids_eq = 0, n_bad_eq = 0;
    int bad_eq = count_diff(&f, &c, got, &n_ids_eq, &n_bad_eq);
    CHECK(t, bad_eq > 0, "equal scores happen to tokenize like HF: the rank rule would be untested");
    printf("  equal scores (llama.cpp's converter): %d of %d cases / %zu of %zu ids differ from HF\n", bad_eq, c.n,
           n_bad_eq, n_ids_eq);
    for (int i = 0; i < c.n; i++) free(got[i].p);
    qf_vocab_free(&v);
    cases_free(&c);
    fx_free(&f);
}


/* stories260K's own tokenizer.json (no tokenizer.model): the reference on its
 * vocabulary and merges == qforge on the directory == llama-tokenize on the
 * GGUF llama.cpp's converter made from its tokenizer.model (the oracle). */
static void test_stories260k_tokenizer_json(qf_test *t) {
    char src[1024], oracle[1024], peer[1024], dir[1024], cmd[4096];
    if (!qf_test_data(t, "models/stories260K/tokenizer.json", src, sizeof src)) return;
    if (!qf_test_data(t, "oracles/llamacpp/stories260K-F32.gguf", oracle, sizeof oracle)) return;
    if (!qf_test_data(t, "peers/llama.cpp/bin/llama-tokenize", peer, sizeof peer)) return;
    fresh_dir("s260", dir, sizeof dir);
    REQUIRE(t, dir[0], "mkdir");
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/'", src, dir);
    REQUIRE(t, system(cmd) == 0, "%s", cmd);
    qf_vocab v;
    REQUIRE(t, load_hf(t, dir, &v), "load");
    CHECK(t, v.hf.enabled && v.hf.byte_fallback && v.n_tokens == 512, "stories260K tokenizer.json layout");
    fixture f;
    memset(&f, 0, sizeof f);
    f.bytes = v.hf.byte_fallback;
    f.fuse_unk = v.hf.fuse_unk;
    for (uint32_t i = 0; i < v.n_tokens && i < MAXTOK; i++) f.tok[f.n_tok++] = strdup(v.tokens[i]);
    for (uint32_t i = 0; i < v.n_merges && i < MAXTOK; i++) {
        const char *sp = strchr(v.merges[i] + 1, ' ');
        REQUIRE(t, sp, "merge %u", i);
        f.merge_a[f.n_merges] = strndup(v.merges[i], (size_t)(sp - v.merges[i]));
        f.merge_b[f.n_merges++] = strdup(sp + 1);
    }
    cases c;
    build_cases(&c);
    for (int i = 0; i < c.n; i++) {   /* no "<sep/>" token here: keep cases apart with "</s>" */
        char *p = strstr(c.s[i], "</s>");
        while (p) { memcpy(p, "<//>", 4); p = strstr(p, "</s>"); }
    }
    size_t n_ids = 0;
    int bad = compare_qforge(t, &f, &v, &c, &n_ids);
    CHECK(t, bad == 0, "qforge on the directory: %d of %d cases differ from the reference", bad, c.n);
    /* llama-tokenize on the tokenizer.model conversion, cases joined by </s> (cut as special) */
    char txt[1100];
    snprintf(txt, sizeof txt, "%s/cases.txt", dir);
    FILE *fp = fopen(txt, "wb");
    REQUIRE(t, fp, "write %s", txt);
    for (int i = 0; i < c.n; i++) {
        if (i) fputs("</s>", fp);
        fwrite(c.s[i], 1, c.len[i], fp);
    }
    fclose(fp);
    ids got[128];
    memset(got, 0, sizeof got);
    /* peer_tokenize joins with "<sep/>"; here the file is joined already */
    snprintf(cmd, sizeof cmd, "'%s' -m '%s' -f '%s' --ids --no-bos --no-escape --log-disable 2>/dev/null", peer, oracle, txt);
    FILE *p = popen(cmd, "r");
    REQUIRE(t, p, "run %s", peer);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    int status = pclose(p);
    buf[n] = 0;
    char *q = strchr(buf, '[');
    REQUIRE(t, status == 0 && q, "llama-tokenize failed: %s", cmd);
    int ci = 0;
    for (q++;;) {
        while (*q == ' ' || *q == ',') q++;
        if (*q == ']' || *q == 0) break;
        long id = strtol(q, &q, 10);
        if (id == 2) { ci++; continue; }
        if (ci < c.n) ids_add(&got[ci], (int32_t)id);
    }
    CHECK(t, ci + 1 == c.n, "llama-tokenize gave %d cases", ci + 1);
    size_t n2 = 0, bad_ids = 0;
    int bad2 = count_diff(&f, &c, got, &n2, &bad_ids);
    CHECK(t, bad2 == 0, "llama-tokenize on the tokenizer.model GGUF: %d cases / %zu ids differ", bad2, bad_ids);
    printf("  stories260K: %d cases, %zu chars, %zu ids; qforge (HF dir) %d, llama.cpp (tokenizer.model GGUF) %d cases differ\n",
           c.n, count_chars(&c), n_ids, bad, bad2);
    for (int i = 0; i < c.n; i++) free(got[i].p);
    cases_free(&c);
    fx_free(&f);
    qf_vocab_free(&v);
}


/* All of wiki.test.raw: stories260K's tokenizer.json under HF rules gives
 * the ids of its tokenizer.model conversion (806,355 tokens, llama.cpp's rules,
 * the count in corpus PROVENANCE), in bounded time. */
static void test_stories260k_wikitext(qf_test *t) {
    char src[1024], oracle[1024], wiki[1024], dir[1024], cmd[4096];
    if (!qf_test_data(t, "models/stories260K/tokenizer.json", src, sizeof src)) return;
    if (!qf_test_data(t, "oracles/llamacpp/stories260K-F32.gguf", oracle, sizeof oracle)) return;
    if (!qf_test_data(t, "corpus/wikitext-2-raw/wiki.test.raw", wiki, sizeof wiki)) return;
    fresh_dir("s260w", dir, sizeof dir);
    REQUIRE(t, dir[0], "mkdir");
    snprintf(cmd, sizeof cmd, "cp '%s' '%s/'", src, dir);
    REQUIRE(t, system(cmd) == 0, "%s", cmd);
    qf_vocab hv, gv;
    REQUIRE(t, load_hf(t, dir, &hv), "load");
    gguf_file g;
    qf_err err = {0};
    REQUIRE(t, gguf_open(&g, oracle, &err) == 0, "%s", err.msg);
    int rc = qf_vocab_from_gguf(&gv, &g, &err);
    gguf_close(&g);
    REQUIRE(t, rc == 0, "%s", err.msg);
    qf_tokenizer *ht = qf_tokenizer_create(&hv, &err), *gt = qf_tokenizer_create(&gv, &err);
    REQUIRE(t, ht && gt, "%s", err.msg);
    size_t len = 0;
    char *text = qf_test_read_file(wiki, &len);
    REQUIRE(t, text, "read %s", wiki);
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK(t, qf_tokenize(ht, text, len, 0, 0, &a, &na, &err) == 0, "%s", err.msg);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK(t, qf_tokenize(gt, text, len, 0, 0, &b, &nb, &err) == 0, "%s", err.msg);
    double dt = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    size_t first = 0;
    while (first < na && first < nb && a[first] == b[first]) first++;
    CHECK(t, na == 806355 && nb == 806355 && first == na, "HF rules %zu ids, GGUF rules %zu, first difference at %zu", na,
          nb, first);
    CHECK(t, dt < 10.0, "HF rules took %.1f s (a quadratic merge loop would take minutes)", dt);
    printf("  wiki.test.raw: %zu bytes, %zu ids, HF rules == tokenizer.model GGUF: %s (%.2f s, machine under load)\n", len, na,
           first == na && na == nb ? "yes" : "no", dt);
    free(a);
    free(b);
    free(text);
    qf_tokenizer_free(ht);
    qf_tokenizer_free(gt);
    qf_vocab_free(&hv);
    qf_vocab_free(&gv);
}

/* Layouts we do not run are refused with a message naming the file. */
static void test_refused(qf_test *t) {
    char dir[1024];
    fresh_dir("refused", dir, sizeof dir);
    REQUIRE(t, dir[0], "mkdir");
    char path[1100];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    static const char *const bad[][2] = {
        {"{\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"" SP "\"},"
         " {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"" SP "\"}]},"
         " \"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"dropout\": 0.1, \"vocab\": {\"a\": 0}, \"merges\": []}}",
         "dropout"},
        {"{\"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"" SP "\"},"
         " \"model\": {\"type\": \"BPE\", \"continuing_subword_prefix\": \"##\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
         "continuing_subword_prefix"},
        {"{\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": \"" SP "\"}]},"
         " \"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"vocab\": {\"a\": 0}, \"merges\": []}}",
         "without Replace"},
        {"{\"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Whitespace\"},"
         " \"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"vocab\": {\"a\": 0}, \"merges\": []}}",
         "byte_fallback"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file_bytes(path, bad[i][0], strlen(bad[i][0]));
        qf_vocab v;
        qf_err err = {0};
        int rc = qf_vocab_from_hf_dir(&v, dir, &err);
        CHECK(t, rc != 0 && strstr(err.msg, bad[i][1]) && strstr(err.msg, "tokenizer.json"), "case %zu: rc %d '%s'", i, rc,
              err.msg);
        if (rc == 0) qf_vocab_free(&v);
    }
}

QF_TEST_MAIN(test_reference_by_hand, test_unmerged_pair_limit, test_vocab_layout, test_hf_dir_matches_reference, test_llamacpp_on_converted,
             test_stories260k_tokenizer_json, test_stories260k_wikitext, test_refused)
