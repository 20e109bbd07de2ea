/* pretokenize.h - the BPE pre-tokenizers (tokenizer.ggml.pre), internal to verify/.
 *
 * A pre-tokenizer is a list of regexes applied one after another; each one
 * splits every current segment into its matches AND the unmatched gaps
 * between them (Hugging Face's Split with behavior "Isolated"), so later
 * regexes only refine earlier cuts. llama.cpp runs them with std::regex
 * (ECMAScript: leftmost match, alternatives tried in order) except for the
 * GPT-2 and Llama-3 patterns, which it matches with hand-written code. We
 * match every pattern by hand over code points; each rule below names the
 * regex it stands for.
 */
#ifndef QF_PRETOKENIZE_H
#define QF_PRETOKENIZE_H

#include <stddef.h>
#include <stdint.h>

typedef struct qf_pretok qf_pretok;

/* Segment lengths (in code points), a growable array. */
typedef struct qf_seglist {
    size_t *len;
    size_t n, cap;
} qf_seglist;

enum {
    QF_PRETOK_OK = 0,
    QF_PRETOK_UNSUPPORTED = 1, /* known to llama.cpp, not implemented here */
    QF_PRETOK_UNKNOWN = 2,     /* llama.cpp would refuse it too */
};

/* Look up a tokenizer.ggml.pre name ("" = "default"). Returns NULL and sets
 * *status when not available. */
const qf_pretok *qf_pretok_find(const char *name, int *status);
/* llama.cpp's per-pre-tokenizer switches. */
int qf_pretok_ignore_merges(const qf_pretok *p); /* whole word that is a token skips BPE */
int qf_pretok_add_bos(const qf_pretok *p);       /* default for add_bos_token */
int qf_pretok_no_bos(const qf_pretok *p);        /* vocab has no BOS (chatglm-bpe) */

/* Split cpts[0..n) into out (segment lengths summing to n). scratch is
 * working storage reused between calls. Returns 0 or QF_ENOMEM. */
int qf_pretok_split(const qf_pretok *p, const uint32_t *cpts, size_t n, qf_seglist *out, qf_seglist *scratch);
void qf_seglist_free(qf_seglist *s);

#endif
