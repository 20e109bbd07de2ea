/* unicode.c - category lookup and lenient UTF-8 (see unicode.h). */
#include "unicode.h"

int qf_unicode_category(uint32_t cp) {
    if (cp > QF_UNICODE_MAX) return QF_UC_CN;
    /* last range whose start <= cp; entry 0 starts at U+0000 */
    size_t lo = 0, hi = qf_unicode_cat_n_ranges;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if ((qf_unicode_cat_ranges[mid] >> 5) <= cp) lo = mid;
        else hi = mid;
    }
    return (int)(qf_unicode_cat_ranges[lo] & 31);
}

int qf_unicode_is_whitespace(uint32_t cp) {
    if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
    for (size_t i = 0; i < qf_unicode_n_whitespace; i++)
        if (cp >= qf_unicode_whitespace[i][0] && cp <= qf_unicode_whitespace[i][1]) return 1;
    return 0;
}

static unsigned flags_of_category(int c) {
    switch (c) {
    case QF_UC_LU: case QF_UC_LL: case QF_UC_LT: case QF_UC_LM: case QF_UC_LO: return QF_UF_LETTER;
    case QF_UC_MN: case QF_UC_MC: case QF_UC_ME: return QF_UF_MARK;
    case QF_UC_ND: case QF_UC_NL: case QF_UC_NO: return QF_UF_NUMBER;
    case QF_UC_PC: case QF_UC_PD: case QF_UC_PS: case QF_UC_PE:
    case QF_UC_PI: case QF_UC_PF: case QF_UC_PO: return QF_UF_PUNCT;
    case QF_UC_SM: case QF_UC_SC: case QF_UC_SK: case QF_UC_SO: return QF_UF_SYMBOL;
    case QF_UC_ZS: case QF_UC_ZL: case QF_UC_ZP: return QF_UF_SEPARATOR;
    case QF_UC_CC: case QF_UC_CF: case QF_UC_CS: case QF_UC_CO: return QF_UF_CONTROL;
    default: return QF_UF_UNDEFINED;
    }
}

unsigned qf_unicode_flags(uint32_t cp) {
    if (cp < 0x80) {
        /* ASCII is hot (pre-tokenizing whole corpora): answer without the search */
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return QF_UF_LETTER;
        if (cp >= '0' && cp <= '9') return QF_UF_NUMBER;
        if (cp == ' ') return QF_UF_SEPARATOR | QF_UF_WHITESPACE;
        if (cp >= 0x09 && cp <= 0x0D) return QF_UF_CONTROL | QF_UF_WHITESPACE;
        if (cp < 0x20 || cp == 0x7F) return QF_UF_CONTROL;
        switch (cp) {
        case '$': case '+': case '<': case '=': case '>': case '^': case '`': case '|': case '~':
            return QF_UF_SYMBOL;
        default:
            return QF_UF_PUNCT;
        }
    }
    unsigned f = flags_of_category(qf_unicode_category(cp));
    if (qf_unicode_is_whitespace(cp)) f |= QF_UF_WHITESPACE;
    return f;
}

uint32_t qf_utf8_decode(const char *str, size_t n, size_t *used) {
    const unsigned char *s = (const unsigned char *)str;
    unsigned char c = s[0];
    *used = 1;
    if (c < 0x80) return c;
    if (!(c & 0x40)) return QF_UNICODE_REPLACEMENT; /* stray continuation byte */
    size_t len = !(c & 0x20) ? 2 : !(c & 0x10) ? 3 : !(c & 0x08) ? 4 : 0;
    if (len == 0 || len > n) return QF_UNICODE_REPLACEMENT;
    uint32_t cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return QF_UNICODE_REPLACEMENT;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    *used = len;
    return cp;
}

size_t qf_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp > QF_UNICODE_MAX) cp = QF_UNICODE_REPLACEMENT;
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}
