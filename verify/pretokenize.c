/* pretokenize.c - BPE pre-tokenizer regexes matched by hand (see pretokenize.h).
 *
 * Character classes follow what llama.cpp's matching sees:
 *   - \s is the Unicode White_Space property (std::regex sees ASCII white
 *     space, and llama.cpp rewrites every non-ASCII White_Space code point to
 *     U+000B before matching);
 *   - \p{L}, \p{N}, \p{P}, \p{M}, \p{S} are the General_Category major classes;
 *   - literal code point classes (deepseek ranges) are tested on the text
 *     after that White_Space rewrite, so e.g. U+3000 never matches "　-。".
 * Matching is leftmost-first, like ECMAScript regex search: at each start
 * position the alternatives are tried in order, quantifiers are greedy.
 */
#include "pretokenize.h"

#include <stdlib.h>
#include <string.h>

#include "qf_error.h"
#include "unicode.h"

/* ---- rules ---------------------------------------------------------------- */

enum rule_kind {
    RULE_GPT2,        /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    RULE_LLAMA3,      /* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}|
                         ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+   (D = digits) */
    RULE_CLASS,       /* <prefix>?<class><rep> */
    RULE_TRAILING_WS, /* \s+$ */
    RULE_TEKKEN,      /* llama.cpp's rewrite of tekken's regex, see match_tekken */
    RULE_DEEPSEEK3,   /* deepseek-v3's third regex, see match_deepseek3 */
};

enum char_class {
    CLS_CRLF,        /* [\r\n] */
    CLS_LETTER,      /* \p{L} */
    CLS_NUMBER,      /* \p{N} */
    CLS_PUNCT,       /* \p{P} */
    CLS_DIGIT,       /* [0-9] */
    CLS_PUNCT_FALCON,  /* [\p{P}\$\+<=>\^~\|`] */
    CLS_PUNCT_DEFAULT, /* [\p{P}\$\+<=>\^~\|] */
    CLS_DS_LETTER,   /* deepseek-llm's [A-Za-zµÀ-Ö...] (cased letters of some Unicode version) */
    CLS_DS_PUNCT,    /* [!-/:-~！-／：-～‘-‟　-。] */
    CLS_CJK,         /* [一-龥ࠀ-一가-퟿] */
    CLS_BLOOM,       /* [^(\s|.,!?…。，、।۔،)] */
    CLS_DS3_CJK,     /* [一-龥぀-ゟ゠-ヿ] (deepseek-v3: CJK ideographs, hiragana, katakana) */
};

enum prefix { PREFIX_NONE, PREFIX_OPT_WS /* \s? */, PREFIX_OPT_SPACE /* " ?" */ };
enum rep { REP_ONE, REP_PLUS, REP_THREE, REP_UPTO3 /* {1,3} */ };

typedef struct rule {
    unsigned char kind, cls, prefix, rep, digits;
} rule;

#define MAX_RULES 6
#define MAX_NAMES 12

struct qf_pretok {
    const char *names[MAX_NAMES]; /* tokenizer.ggml.pre values; names[0] is canonical */
    int n_rules;
    rule rules[MAX_RULES];
    int ignore_merges, add_bos, no_bos;
};

#define GPT2 {RULE_GPT2, 0, 0, 0, 0}
#define LLAMA3(d) {RULE_LLAMA3, 0, 0, 0, (d)}
#define CLASS(c, p, r) {RULE_CLASS, (c), (p), (r), 0}
#define TRAILING_WS {RULE_TRAILING_WS, 0, 0, 0, 0}
#define TEKKEN {RULE_TEKKEN, 0, 0, 0, 0}
#define DEEPSEEK3 {RULE_DEEPSEEK3, 0, 0, 0, 0}

/* From llama.cpp's llama-vocab.cpp (pre-type names, regex lists, flags) at
 * commit c392e50, the version whose test vectors tests/unit checks. */
static const qf_pretok k_pretoks[] = {
    {{"default"}, 4,
     {CLASS(CLS_PUNCT_DEFAULT, PREFIX_NONE, REP_PLUS), GPT2, CLASS(CLS_NUMBER, PREFIX_NONE, REP_PLUS),
      CLASS(CLS_DIGIT, PREFIX_NONE, REP_THREE)}, 0, 0, 0},
    {{"llama-bpe", "llama3", "llama-v3", "falcon3"}, 1, {LLAMA3(3)}, 1, 1, 0},
    {{"dbrx", "smaug-bpe"}, 1, {LLAMA3(3)}, 0, 0, 0},
    {{"chatglm-bpe"}, 1, {LLAMA3(3)}, 0, 0, 1},
    {{"qwen2", "deepseek-r1-qwen", "megrez", "stablelm2"}, 1, {LLAMA3(1)}, 0, 0, 0},
    {{"deepseek-llm"}, 6,
     {CLASS(CLS_CRLF, PREFIX_NONE, REP_ONE), CLASS(CLS_DS_LETTER, PREFIX_OPT_WS, REP_PLUS),
      CLASS(CLS_DS_PUNCT, PREFIX_OPT_WS, REP_PLUS), TRAILING_WS, CLASS(CLS_CJK, PREFIX_NONE, REP_PLUS),
      CLASS(CLS_NUMBER, PREFIX_NONE, REP_PLUS)}, 0, 0, 0},
    {{"deepseek-coder"}, 5,
     {CLASS(CLS_CRLF, PREFIX_NONE, REP_ONE), CLASS(CLS_LETTER, PREFIX_OPT_WS, REP_PLUS),
      CLASS(CLS_PUNCT, PREFIX_OPT_WS, REP_PLUS), CLASS(CLS_CJK, PREFIX_NONE, REP_PLUS),
      CLASS(CLS_NUMBER, PREFIX_NONE, REP_ONE)}, 0, 0, 0},
    {{"falcon"}, 3,
     {CLASS(CLS_PUNCT_FALCON, PREFIX_NONE, REP_PLUS), GPT2, CLASS(CLS_DIGIT, PREFIX_NONE, REP_THREE)}, 0, 0, 0},
    {{"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"}, 2,
     {CLASS(CLS_NUMBER, PREFIX_NONE, REP_ONE), GPT2}, 0, 0, 0},
    {{"gpt-2", "mpt", "olmo", "jais", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v1-en", "jina-v2-es",
      "jina-v2-de", "jina-v2-code"}, 1, {GPT2}, 0, 0, 0},
    {{"roberta-bpe"}, 1, {GPT2}, 0, 0, 0},
    {{"bloom", "poro-chat", "gpt3-finnish"}, 1, {CLASS(CLS_BLOOM, PREFIX_OPT_SPACE, REP_PLUS)}, 0, 0, 0},
    {{"viking"}, 2, {CLASS(CLS_BLOOM, PREFIX_OPT_SPACE, REP_PLUS), CLASS(CLS_NUMBER, PREFIX_NONE, REP_ONE)}, 0, 0, 0},
    {{"tekken"}, 1, {TEKKEN}, 1, 1, 0},
    {{"deepseek-v3"}, 3,
     {CLASS(CLS_NUMBER, PREFIX_NONE, REP_UPTO3), CLASS(CLS_DS3_CJK, PREFIX_NONE, REP_PLUS), DEEPSEEK3}, 0, 0, 0},
};

/* Pre-tokenizers llama.cpp knows that are not matched here. */
static const char *const k_unsupported[] = {"chameleon"};

const qf_pretok *qf_pretok_find(const char *name, int *status) {
    if (!name || !*name) name = "default";
    for (size_t i = 0; i < sizeof k_pretoks / sizeof k_pretoks[0]; i++)
        for (int j = 0; j < MAX_NAMES && k_pretoks[i].names[j]; j++)
            if (strcmp(name, k_pretoks[i].names[j]) == 0) {
                *status = QF_PRETOK_OK;
                return &k_pretoks[i];
            }
    *status = QF_PRETOK_UNKNOWN;
    for (size_t i = 0; i < sizeof k_unsupported / sizeof k_unsupported[0]; i++)
        if (strcmp(name, k_unsupported[i]) == 0) *status = QF_PRETOK_UNSUPPORTED;
    return NULL;
}

int qf_pretok_ignore_merges(const qf_pretok *p) { return p->ignore_merges; }
int qf_pretok_add_bos(const qf_pretok *p) { return p->add_bos; }
int qf_pretok_no_bos(const qf_pretok *p) { return p->no_bos; }

/* ---- character classes ----------------------------------------------------- */

typedef struct cp_range {
    uint32_t lo, hi;
} cp_range;

/* The class in deepseek-llm's tokenizer.json, as code point ranges. (Written
 * as code points: several of its characters, e.g. U+1F7D, U+2126, U+212A,
 * have singleton canonical decompositions, so copying the literal text
 * through anything that normalizes to NFC silently breaks the ranges.) */
static const cp_range k_ds_letter[] = {
    {0x41, 0x5A}, {0x61, 0x7A}, {0xB5, 0xB5}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x1BA},
    {0x1BC, 0x1BF}, {0x1C4, 0x293}, {0x295, 0x2AF}, {0x370, 0x373}, {0x376, 0x377}, {0x37B, 0x37D},
    {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C}, {0x38E, 0x3A1}, {0x3A3, 0x3F5},
    {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556}, {0x10A0, 0x10C5}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD},
    {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF}, {0x1D00, 0x1D2B}, {0x1D6B, 0x1D77}, {0x1D79, 0x1D9A},
    {0x1E00, 0x1F15}, {0x1F18, 0x1F1D}, {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57},
    {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B}, {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4},
    {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE}, {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3},
    {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2102, 0x2102},
    {0x2107, 0x2107}, {0x210A, 0x2113}, {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124},
    {0x2126, 0x2126}, {0x2128, 0x2128}, {0x212A, 0x212D}, {0x212F, 0x2134}, {0x2139, 0x2139},
    {0x213C, 0x213F}, {0x2145, 0x2149}, {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B},
    {0x2C7E, 0x2CE4}, {0x2CEB, 0x2CEE}, {0x2CF2, 0x2CF3}, {0xA640, 0xA66D}, {0xA680, 0xA69B},
    {0xA722, 0xA76F}, {0xA771, 0xA787}, {0xA78B, 0xA78E}, {0xAB70, 0xABBF}, {0xFB00, 0xFB06},
    {0xFB13, 0xFB17}, {0xFF21, 0xFF3A}, {0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3},
    {0x104D8, 0x104FB}, {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};
static const cp_range k_ds_punct[] = {
    {0x21, 0x2F}, {0x3A, 0x7E}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E}, {0x2018, 0x201F}, {0x3000, 0x3002},
};
static const cp_range k_cjk[] = {{0x4E00, 0x9FA5}, {0x0800, 0x4E00}, {0xAC00, 0xD7FF}};
static const cp_range k_ds3_cjk[] = {{0x4E00, 0x9FA5}, {0x3040, 0x309F}, {0x30A0, 0x30FF}};
static const uint32_t k_bloom_stop[] = {'(', '|', '.', ',', '!', '?', 0x2026, 0x3002, 0xFF0C, 0x3001,
                                        0x0964, 0x06D4, 0x060C, ')'};

static int in_ranges(uint32_t c, const cp_range *r, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (c >= r[i].lo && c <= r[i].hi) return 1;
    return 0;
}

/* llama.cpp hands std::wregex the text with non-ASCII White_Space as U+000B. */
static uint32_t regex_view(uint32_t c) {
    return (c > 0x7F && qf_unicode_is_whitespace(c)) ? 0x0B : c;
}

static int in_class(int cls, uint32_t c) {
    switch (cls) {
    case CLS_CRLF: return c == '\r' || c == '\n';
    case CLS_LETTER: return (qf_unicode_flags(c) & QF_UF_LETTER) != 0;
    case CLS_NUMBER: return (qf_unicode_flags(c) & QF_UF_NUMBER) != 0;
    case CLS_PUNCT: return (qf_unicode_flags(c) & QF_UF_PUNCT) != 0;
    case CLS_DIGIT: return c >= '0' && c <= '9';
    case CLS_PUNCT_FALCON:
        if (c == '`') return 1;
        /* fall through */
    case CLS_PUNCT_DEFAULT:
        return c == '$' || c == '+' || c == '<' || c == '=' || c == '>' || c == '^' || c == '~' || c == '|' ||
               (qf_unicode_flags(c) & QF_UF_PUNCT) != 0;
    /* ASCII answers first: these run once per character of whole corpora */
    case CLS_DS_LETTER:
        if (c < 0x80) return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
        return in_ranges(regex_view(c), k_ds_letter, sizeof k_ds_letter / sizeof k_ds_letter[0]);
    case CLS_DS_PUNCT:
        if (c < 0x80) return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x7E);
        return in_ranges(regex_view(c), k_ds_punct, sizeof k_ds_punct / sizeof k_ds_punct[0]);
    case CLS_CJK:
        if (c < 0x800) return 0;
        return in_ranges(regex_view(c), k_cjk, sizeof k_cjk / sizeof k_cjk[0]);
    case CLS_DS3_CJK:
        if (c < 0x3040) return 0;
        return in_ranges(c, k_ds3_cjk, sizeof k_ds3_cjk / sizeof k_ds3_cjk[0]);
    case CLS_BLOOM:
        if (qf_unicode_is_whitespace(c)) return 0;
        for (size_t i = 0; i < sizeof k_bloom_stop / sizeof k_bloom_stop[0]; i++)
            if (c == k_bloom_stop[i]) return 0;
        return 1;
    default: return 0;
    }
}

/* ---- segment output -------------------------------------------------------- */

static int seg_push(qf_seglist *s, size_t len) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        size_t *p = realloc(s->len, cap * sizeof *p);
        if (!p) return QF_ENOMEM;
        s->len = p;
        s->cap = cap;
    }
    s->len[s->n++] = len;
    return 0;
}

void qf_seglist_free(qf_seglist *s) {
    free(s->len);
    memset(s, 0, sizeof *s);
}

/* Cuts inside one segment [lo, hi): emit(end) closes the piece that started at
 * the previous cut. */
typedef struct cutter {
    qf_seglist *out;
    size_t prev;
    int err;
} cutter;

static void cut(cutter *c, size_t end) {
    if (end > c->prev && !c->err) c->err = seg_push(c->out, end - c->prev);
    c->prev = end;
}

/* Flags of the code point at pos, 0 outside the segment (so loops stop there). */
#define FL(pos) ((pos) < hi ? qf_unicode_flags(cp[pos]) : 0u)
#define CP(pos) ((pos) < hi ? cp[pos] : 0xFFFFFFFFu)

static uint32_t ascii_lower(uint32_t ch) { return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch; }

/* Length of the contraction 's|'t|'re|'ve|'m|'ll|'d at pos, 0 if there is none;
 * fold: ASCII letters in either case. */
static size_t contraction_len(const uint32_t *cp, size_t pos, size_t hi, int fold) {
    if (cp[pos] != '\'' || pos + 1 >= hi) return 0;
    uint32_t n1 = fold ? ascii_lower(cp[pos + 1]) : cp[pos + 1];
    if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') return 2;
    if (pos + 2 < hi) {
        uint32_t n2 = fold ? ascii_lower(cp[pos + 2]) : cp[pos + 2];
        if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) return 3;
    }
    return 0;
}

static void split_gpt2(const uint32_t *cp, size_t lo, size_t hi, cutter *c) {
    const unsigned LNW = QF_UF_LETTER | QF_UF_NUMBER | QF_UF_WHITESPACE;
    size_t pos = lo;
    while (pos < hi) {
        uint32_t ch = cp[pos];
        unsigned f = FL(pos);
        /* 's|'t|'re|'ve|'m|'ll|'d */
        size_t n_c = contraction_len(cp, pos, hi, 0);
        if (n_c) { pos += n_c; cut(c, pos); continue; }
        unsigned f2 = ch == ' ' ? FL(pos + 1) : f;
        /* ' ?\p{L}+', ' ?\p{N}+' */
        if (f2 & (QF_UF_LETTER | QF_UF_NUMBER)) {
            unsigned want = f2 & QF_UF_LETTER ? QF_UF_LETTER : QF_UF_NUMBER;
            pos += ch == ' ';
            while (FL(pos) & want) pos++;
            cut(c, pos);
            continue;
        }
        /* ' ?[^\s\p{L}\p{N}]+' */
        if (!(f2 & LNW) && f2) {
            pos += ch == ' ';
            while (!(FL(pos) & LNW) && FL(pos)) pos++;
            cut(c, pos);
            continue;
        }
        size_t n_ws = 0;
        while (FL(pos + n_ws) & QF_UF_WHITESPACE) n_ws++;
        /* '\s+(?!\S)': leave the last blank to start the next word */
        if (n_ws > 1 && pos + n_ws < hi) { pos += n_ws - 1; cut(c, pos); continue; }
        if (n_ws > 0) { pos += n_ws; cut(c, pos); continue; } /* '\s+' */
        pos++; /* nothing matched: the code point stands alone */
        cut(c, pos);
    }
}

static void split_llama3(const uint32_t *cp, size_t lo, size_t hi, size_t max_digits, cutter *c) {
    const unsigned LNW = QF_UF_LETTER | QF_UF_NUMBER | QF_UF_WHITESPACE;
    size_t pos = lo;
    while (pos < hi) {
        uint32_t ch = cp[pos];
        unsigned f = FL(pos);
        /* (?i:'s|'t|'re|'ve|'m|'ll|'d) (no non-ASCII code point lowercases to these letters) */
        size_t n_c = contraction_len(cp, pos, hi, 1);
        if (n_c) { pos += n_c; cut(c, pos); continue; }
        /* [^\r\n\p{L}\p{N}]?\p{L}+ */
        if (!(ch == '\r' || ch == '\n' || (f & QF_UF_NUMBER))) {
            if ((f & QF_UF_LETTER) || (FL(pos + 1) & QF_UF_LETTER)) {
                pos++;
                while (FL(pos) & QF_UF_LETTER) pos++;
                cut(c, pos);
                continue;
            }
        }
        /* \p{N}{1,D}: a run of digits in chunks of D from the left */
        if (f & QF_UF_NUMBER) {
            size_t ini = pos;
            while (FL(pos) & QF_UF_NUMBER) {
                pos++;
                if (pos - ini >= max_digits) { cut(c, pos); ini = pos; }
            }
            cut(c, pos);
            continue;
        }
        /* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
        unsigned f2 = ch == ' ' ? FL(pos + 1) : f;
        if (!(f2 & LNW) && f) {
            pos += ch == ' ';
            while (!(FL(pos) & LNW) && FL(pos)) pos++;
            while (CP(pos) == '\r' || CP(pos) == '\n') pos++;
            cut(c, pos);
            continue;
        }
        size_t n_ws = 0, crlf_end = 0;
        while (FL(pos + n_ws) & QF_UF_WHITESPACE) {
            uint32_t w = cp[pos + n_ws];
            if (w == '\r' || w == '\n') crlf_end = pos + n_ws + 1;
            n_ws++;
        }
        if (crlf_end) { pos = crlf_end; cut(c, pos); continue; }            /* \s*[\r\n]+ */
        if (n_ws > 1 && pos + n_ws < hi) { pos += n_ws - 1; cut(c, pos); continue; } /* \s+(?!\S) */
        if (n_ws > 0) { pos += n_ws; cut(c, pos); continue; }                /* \s+ */
        pos++;
        cut(c, pos);
    }
}

/* <prefix>?<class><rep>: leftmost-first search; matches and gaps both become pieces. */
static void split_class(const uint32_t *cp, size_t lo, size_t hi, const rule *r, cutter *c) {
    size_t pos = lo;
    while (pos < hi) {
        size_t start = pos, end = 0;
        int pre = (r->prefix == PREFIX_OPT_WS && qf_unicode_is_whitespace(cp[pos])) ||
                  (r->prefix == PREFIX_OPT_SPACE && cp[pos] == ' ');
        /* greedy optional prefix first; if the class does not follow, retry without it */
        size_t body = (pre && pos + 1 < hi && in_class(r->cls, cp[pos + 1])) ? pos + 1 : pos;
        if (in_class(r->cls, cp[body])) {
            if (r->rep == REP_ONE) end = body + 1;
            else if (r->rep == REP_PLUS) {
                end = body + 1;
                while (end < hi && in_class(r->cls, cp[end])) end++;
            } else if (r->rep == REP_UPTO3) {
                end = body + 1;
                while (end < hi && end < body + 3 && in_class(r->cls, cp[end])) end++;
            } else if (body + 2 < hi && in_class(r->cls, cp[body + 1]) && in_class(r->cls, cp[body + 2])) {
                end = body + 3;
            }
        }
        if (!end) { pos++; continue; }
        cut(c, start); /* the gap before, if any */
        cut(c, end);
        pos = end;
    }
    cut(c, hi);
}

/* ---- regexes matched one alternative at a time ---------------------------------
 * llama.cpp runs tekken's and deepseek-v3's regexes through std::regex on a
 * "collapsed" copy of the text: ASCII stays as it is; any other code point
 * becomes one byte standing for its class (White_Space -> \v, else the byte
 * for L, N, P, M or S, else one for "other"), and each \p{X} of the regex
 * becomes that byte plus X's ASCII members. So a non-ASCII letter has no
 * case there: both [^a-z] and [^A-Z] accept it. Each match_* returns the
 * end of the match at pos, or pos when nothing matches there. */

typedef size_t (*match_fn)(const uint32_t *cp, size_t pos, size_t hi);

/* Leftmost-first search of m through [lo, hi): matches and gaps become pieces. */
static void split_matches(const uint32_t *cp, size_t lo, size_t hi, match_fn m, cutter *c) {
    size_t pos = lo;
    while (pos < hi) {
        size_t end = m(cp, pos, hi);
        if (end <= pos) { pos++; continue; }
        cut(c, pos);
        cut(c, end);
        pos = end;
    }
}

/* \s*[\r\n]+|\s+(?!\S)|\s+ at pos. */
static size_t match_ws_tail(const uint32_t *cp, size_t pos, size_t hi) {
    size_t n_ws = 0, crlf_end = 0;
    while (FL(pos + n_ws) & QF_UF_WHITESPACE) {
        if (cp[pos + n_ws] == '\r' || cp[pos + n_ws] == '\n') crlf_end = pos + n_ws + 1;
        n_ws++;
    }
    if (crlf_end) return crlf_end;                          /* \s*[\r\n]+: up to the last line break */
    if (n_ws > 1 && pos + n_ws < hi) return pos + n_ws - 1; /* \s+(?!\S): the last blank starts the next word */
    return pos + n_ws;                                      /* \s+ (or no match) */
}

static int ascii_alpha(uint32_t c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }

/* tekken's "upper" [^a-z] and "lower" [^A-Z] letters; other scripts count as both. */
static int tk_upper(uint32_t c, unsigned f) { return (f & QF_UF_LETTER) && !(c >= 'a' && c <= 'z'); }
static int tk_lower(uint32_t c, unsigned f) { return (f & QF_UF_LETTER) && !(c >= 'A' && c <= 'Z'); }

/* End of U*L+ | U+L* from the letter at s (U = tk_upper, L = tk_lower), with
 * the backtracking of U* that gives the regex's answer: when no ASCII lower
 * case follows the U run, U*L+ ends just after the run's last caseless letter. */
static size_t tekken_word_end(const uint32_t *cp, size_t s, size_t hi) {
    size_t k = s, last_caseless = SIZE_MAX;
    while (tk_upper(CP(k), FL(k))) {
        if (cp[k] >= 0x80) last_caseless = k;
        k++;
    }
    if (CP(k) >= 'a' && CP(k) <= 'z') {
        while (tk_lower(CP(k), FL(k))) k++;
        return k;
    }
    return last_caseless != SIZE_MAX ? last_caseless + 1 : k;
}

/* llama.cpp's tekken regex (the tokenizer.json one with \p{Lu}.. classes
 * rewritten as lookaheads over [^a-z] / [^A-Z]):
 *   [^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+
 *   |[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*
 *   |\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t match_tekken(const uint32_t *cp, size_t pos, size_t hi) {
    const unsigned LNW = QF_UF_LETTER | QF_UF_NUMBER | QF_UF_WHITESPACE;
    uint32_t ch = cp[pos];
    unsigned f = FL(pos);
    if (f & QF_UF_LETTER) return tekken_word_end(cp, pos, hi);
    if (!(f & QF_UF_NUMBER) && ch != '\r' && ch != '\n' && (FL(pos + 1) & QF_UF_LETTER))
        return tekken_word_end(cp, pos + 1, hi); /* one leading non-letter joins the word */
    if (f & QF_UF_NUMBER) return pos + 1;
    size_t b = pos + (ch == ' ' && FL(pos + 1) && !(FL(pos + 1) & LNW));
    if (!(FL(b) & LNW) && FL(b)) {
        size_t e = b + 1;
        while (FL(e) && !(FL(e) & LNW)) e++;
        while (CP(e) == '\r' || CP(e) == '\n' || CP(e) == '/') e++;
        return e;
    }
    return match_ws_tail(cp, pos, hi);
}

/* \p{P} or \p{S} in deepseek-v3's collapsed regex: for ASCII the members
 * llama.cpp lists, which leave out '~'. */
static int ds3_punct_sym(uint32_t c, unsigned f) {
    if (c < 0x80) return c > 0x20 && c < 0x7E && !ascii_alpha(c) && !(c >= '0' && c <= '9');
    return !(f & QF_UF_WHITESPACE) && (f & (QF_UF_PUNCT | QF_UF_SYMBOL));
}

static int ds3_letter_mark(uint32_t c, unsigned f) {
    return !(f & QF_UF_WHITESPACE) && (f & (QF_UF_LETTER | QF_UF_MARK));
}

/* deepseek-v3's third regex:
 *   [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
 *   | ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * (digits and CJK were cut out by the two regexes before it). */
static size_t match_deepseek3(const uint32_t *cp, size_t pos, size_t hi) {
    uint32_t ch = cp[pos];
    unsigned f = FL(pos);
    if (ch > 0x20 && ch < 0x7F && !ascii_alpha(ch) && !(ch >= '0' && ch <= '9') && ascii_alpha(CP(pos + 1))) {
        size_t e = pos + 2;
        while (ascii_alpha(CP(e))) e++;
        return e;
    }
    size_t s = pos;
    if (!(f & QF_UF_LETTER) && !ds3_punct_sym(ch, f) && ch != '\r' && ch != '\n' && ds3_letter_mark(CP(pos + 1), FL(pos + 1)))
        s = pos + 1; /* one leading character joins the word */
    if (ds3_letter_mark(CP(s), FL(s))) {
        size_t e = s + 1;
        while (ds3_letter_mark(CP(e), FL(e))) e++;
        return e;
    }
    size_t b = pos + (ch == ' ' && ds3_punct_sym(CP(pos + 1), FL(pos + 1)));
    if (ds3_punct_sym(CP(b), FL(b)) && b < hi) {
        size_t e = b + 1;
        while (ds3_punct_sym(CP(e), FL(e)) && e < hi) e++;
        while (CP(e) == '\r' || CP(e) == '\n') e++;
        return e;
    }
    return match_ws_tail(cp, pos, hi);
}

static void split_trailing_ws(const uint32_t *cp, size_t lo, size_t hi, cutter *c) {
    size_t t = hi;
    while (t > lo && qf_unicode_is_whitespace(cp[t - 1])) t--;
    cut(c, t);
    cut(c, hi);
}

int qf_pretok_split(const qf_pretok *p, const uint32_t *cp, size_t n, qf_seglist *out, qf_seglist *scratch) {
    out->n = 0;
    if (n == 0) return 0;
    int rc = seg_push(out, n);
    if (rc) return rc;
    for (int k = 0; k < p->n_rules; k++) {
        const rule *r = &p->rules[k];
        qf_seglist tmp = *scratch; /* previous segments in `out`, new ones in `scratch` */
        tmp.n = 0;
        cutter c = {&tmp, 0, 0};
        size_t lo = 0;
        for (size_t i = 0; i < out->n; i++) {
            size_t hi = lo + out->len[i];
            c.prev = lo;
            switch (r->kind) {
            case RULE_GPT2: split_gpt2(cp, lo, hi, &c); break;
            case RULE_LLAMA3: split_llama3(cp, lo, hi, r->digits, &c); break;
            case RULE_CLASS: split_class(cp, lo, hi, r, &c); break;
            case RULE_TEKKEN: split_matches(cp, lo, hi, match_tekken, &c); break;
            case RULE_DEEPSEEK3: split_matches(cp, lo, hi, match_deepseek3, &c); break;
            default: split_trailing_ws(cp, lo, hi, &c); break;
            }
            cut(&c, hi); /* anything after the last match is a piece too */
            lo = hi;
        }
        *scratch = *out;
        *out = tmp;
        if (c.err) return c.err;
    }
    return 0;
}
