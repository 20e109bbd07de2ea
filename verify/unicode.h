/* unicode.h - the few Unicode facts the tokenizers need.
 *
 * - UTF-8 decoding exactly as lenient as llama.cpp's tokenizer (so ids agree
 *   on odd input): no overlong/surrogate checks; a byte that does not start a
 *   complete sequence decodes to U+FFFD and consumes one byte.
 * - General_Category and White_Space of every code point, from a range table
 *   generated from the Unicode Character Database (verify/unicode_data.c,
 *   written by scripts/gen_unicode_data.c; Debian unicode-data 15.0).
 */
#ifndef QF_UNICODE_H
#define QF_UNICODE_H

#include <stddef.h>
#include <stdint.h>

/* General_Category values; order fixed by the generated table. */
enum qf_ucat {
    QF_UC_CN = 0, /* unassigned */
    QF_UC_LU, QF_UC_LL, QF_UC_LT, QF_UC_LM, QF_UC_LO,
    QF_UC_MN, QF_UC_MC, QF_UC_ME,
    QF_UC_ND, QF_UC_NL, QF_UC_NO,
    QF_UC_PC, QF_UC_PD, QF_UC_PS, QF_UC_PE, QF_UC_PI, QF_UC_PF, QF_UC_PO,
    QF_UC_SM, QF_UC_SC, QF_UC_SK, QF_UC_SO,
    QF_UC_ZS, QF_UC_ZL, QF_UC_ZP,
    QF_UC_CC, QF_UC_CF, QF_UC_CS, QF_UC_CO,
    QF_UC_COUNT
};

/* Flags: one major class (\p{L}, \p{N}, ...) plus White_Space. */
enum {
    QF_UF_UNDEFINED = 1 << 0, /* Cn, or beyond U+10FFFF */
    QF_UF_LETTER = 1 << 1,    /* \p{L} */
    QF_UF_NUMBER = 1 << 2,    /* \p{N} */
    QF_UF_PUNCT = 1 << 3,     /* \p{P} */
    QF_UF_SYMBOL = 1 << 4,    /* \p{S} */
    QF_UF_MARK = 1 << 5,      /* \p{M} */
    QF_UF_SEPARATOR = 1 << 6, /* \p{Z} */
    QF_UF_CONTROL = 1 << 7,   /* \p{C} except Cn */
    QF_UF_WHITESPACE = 1 << 8 /* White_Space property (= regex \s) */
};

#define QF_UNICODE_MAX 0x10FFFFu
#define QF_UNICODE_REPLACEMENT 0xFFFDu

extern const uint32_t qf_unicode_cat_ranges[];
extern const size_t qf_unicode_cat_n_ranges;
extern const uint32_t qf_unicode_whitespace[][2];
extern const size_t qf_unicode_n_whitespace;

int qf_unicode_category(uint32_t cp);   /* enum qf_ucat */
unsigned qf_unicode_flags(uint32_t cp); /* QF_UF_* */
int qf_unicode_is_whitespace(uint32_t cp);

/* Byte length of a UTF-8 sequence from its first byte alone (1 for stray
 * continuation bytes), as the BPE/SPM symbol splitters use it. */
static inline size_t qf_utf8_len(unsigned char lead) {
    static const unsigned char k_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return k_len[lead >> 4];
}

/* Decode one code point at s[0..n) (n > 0); *used = bytes consumed. */
uint32_t qf_utf8_decode(const char *s, size_t n, size_t *used);
/* Encode cp (U+FFFD for values above U+10FFFF) into out[4]; returns bytes. */
size_t qf_utf8_encode(uint32_t cp, char *out);

#endif
