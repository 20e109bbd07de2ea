/* numfmt_test.c - exhaustive and boundary tests of f16/bf16/FP8 conversions.
 * The oracles are the hardware (F16C) for IEEE half, the format definitions
 * (value = (-1)^s * 2^(e-bias) * 1.m, computed in double) for FP8, and exact
 * midpoints between adjacent codes for round-to-nearest-even. */
#include "qf_test.h"
#include "numfmt.h"

#include <math.h>
#include <stdint.h>
#include <time.h>

#if defined(__F16C__) && defined(__AVX2__)
#include <immintrin.h>
#define HAVE_F16C 1
#endif

static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd32(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 2685821657736338717ull) >> 32);
}

static int f16_is_nan(uint16_t h) { return (h & 0x7C00) == 0x7C00 && (h & 0x3FF); }

/* ---------------- IEEE half ---------------- */

static void test_f16_all_codes_roundtrip(qf_test *t) {
    int bad = 0;
    for (uint32_t c = 0; c < 65536; c++) {
        uint16_t h = (uint16_t)c;
        float f = qf_f16_to_f32(h);
        uint16_t back = qf_f32_to_f16(f);
        if (f16_is_nan(h)) {
            /* NaN stays NaN; decoding quiets it (bit 9 set), the rest of the payload survives */
            if (!isnan(f) || back != (h | 0x200)) bad++;
        } else if (back != h) {
            bad++;
        }
    }
    CHECK(t, bad == 0, "%d of 65536 f16 codes do not round-trip", bad);
}

static void test_f16_values(qf_test *t) {
    CHECK(t, qf_f16_to_f32(0x3C00) == 1.0f, "1.0");
    CHECK(t, qf_f16_to_f32(0xC000) == -2.0f, "-2.0");
    CHECK(t, qf_f16_to_f32(0x7BFF) == 65504.0f, "max");
    CHECK(t, qf_f16_to_f32(0x0400) == 0x1p-14f, "min normal");
    CHECK(t, qf_f16_to_f32(0x0001) == 0x1p-24f, "min subnormal");
    CHECK(t, qf_f16_to_f32(0x03FF) == 1023 * 0x1p-24f, "max subnormal");
    CHECK(t, bits(qf_f16_to_f32(0x8000)) == 0x80000000u, "-0");
    CHECK(t, isinf(qf_f16_to_f32(0x7C00)) && qf_f16_to_f32(0xFC00) < 0, "inf");
    CHECK(t, qf_f32_to_f16(1e6f) == 0x7C00 && qf_f32_to_f16(-1e6f) == 0xFC00, "overflow -> inf");
    CHECK(t, qf_f32_to_f16(65519.0f) == 0x7BFF, "65519 rounds down to max");
    CHECK(t, qf_f32_to_f16(65520.0f) == 0x7C00, "65520 is the tie max|inf -> inf (even)");
    CHECK(t, qf_f32_to_f16(0x1p-25f) == 0x0000, "half of min subnormal ties to 0");
    CHECK(t, qf_f32_to_f16(from_bits(bits(0x1p-25f) + 1)) == 0x0001, "just above half -> min subnormal");
    CHECK(t, qf_f32_to_f16(3 * 0x1p-25f) == 0x0002, "1.5 min subnormal ties to 2 (even)");
    CHECK(t, qf_f32_to_f16(-0.0f) == 0x8000, "-0");
    CHECK(t, f16_is_nan(qf_f32_to_f16(NAN)), "nan");
}

/* Midpoints between every pair of adjacent finite positive f16 codes round
 * to the even code; one f32 ulp either side rounds to the nearer code. */
static void test_f16_midpoints(qf_test *t) {
    int bad = 0;
    for (uint32_t c = 0; c < 0x7BFF; c++) {
        double lo = qf_f16_to_f32((uint16_t)c), hi = qf_f16_to_f32((uint16_t)(c + 1));
        float mid = (float)((lo + hi) / 2); /* exact: 12 significant bits */
        uint16_t even = (c & 1) ? (uint16_t)(c + 1) : (uint16_t)c;
        if (qf_f32_to_f16(mid) != even) bad++;
        if (qf_f32_to_f16(nextafterf(mid, 0)) != c) bad++;
        if (qf_f32_to_f16(nextafterf(mid, INFINITY)) != c + 1) bad++;
        if (qf_f32_to_f16(-mid) != (even | 0x8000)) bad++;
    }
    CHECK(t, bad == 0, "%d midpoint cases wrong", bad);
}

#ifdef HAVE_F16C
static void test_f16_decode_matches_hardware(qf_test *t) {
    int bad = 0;
    for (uint32_t c = 0; c < 65536; c++) {
        float hw = _cvtsh_ss((unsigned short)c);
        if (bits(hw) != bits(qf_f16_to_f32((uint16_t)c))) bad++;
    }
    CHECK(t, bad == 0, "%d of 65536 codes differ from vcvtph2ps", bad);
}

/* Scalar f32->f16 against vcvtps2ph (RNE) for all 2^32 bit patterns, NaNs
 * included (both quiet the NaN and keep the top payload bits). About 4 s on
 * two cores; QF_TEST_QUICK=1 checks every 16th high half only. */
static void test_f32_to_f16_vs_hardware_all(qf_test *t) {
    const char *quick = getenv("QF_TEST_QUICK");
    long step = (quick && *quick == '1') ? 16 : 1;
    long long bad = 0, checked = 0;
    uint32_t first_bad = 0;
    #pragma omp parallel for reduction(+:bad, checked) schedule(dynamic, 64)
    for (long hi = 0; hi < 65536; hi += step) {
        float in[512] __attribute__((aligned(32)));
        uint16_t hw[512];
        for (uint32_t lo0 = 0; lo0 < 65536; lo0 += 512) {
            for (uint32_t j = 0; j < 512; j++) in[j] = from_bits(((uint32_t)hi << 16) | (lo0 + j));
            for (int j = 0; j < 512; j += 8)
                _mm_storeu_si128((__m128i *)(hw + j), _mm256_cvtps_ph(_mm256_load_ps(in + j), _MM_FROUND_TO_NEAREST_INT));
            for (int j = 0; j < 512; j++) {
                if (qf_f32_to_f16(in[j]) != hw[j]) {
                    #pragma omp critical
                    first_bad = bits(in[j]);
                    bad++;
                }
            }
            checked += 512;
        }
    }
    CHECK(t, checked == (step == 1 ? 1ll << 32 : (1ll << 32) / step), "checked %lld", checked);
    CHECK(t, bad == 0, "%lld of %lld f32 patterns differ from vcvtps2ph (e.g. 0x%08x)", bad, checked, first_bad);
}
#endif

/* ---------------- bfloat16 ---------------- */

static void test_bf16_all_codes_roundtrip(qf_test *t) {
    int bad = 0;
    for (uint32_t c = 0; c < 65536; c++) {
        uint16_t h = (uint16_t)c;
        float f = qf_bf16_to_f32(h);
        if (bits(f) != c << 16) bad++; /* decoding is exact widening, NaNs included */
        uint16_t back = qf_f32_to_bf16(f);
        int is_nan = (h & 0x7F80) == 0x7F80 && (h & 0x7F);
        if (is_nan ? back != (h | 0x40) : back != h) bad++;
    }
    CHECK(t, bad == 0, "%d bf16 round-trip failures", bad);
}

/* The 16 dropped bits exactly at the midpoint go to the even neighbour;
 * one unit below/above goes down/up. Every finite bf16 code is a lower
 * neighbour here (the top one rounds to Inf, which is what RNE says). */
static void test_bf16_rounding(qf_test *t) {
    int bad = 0;
    for (uint32_t c = 0; c < 65536; c++) {
        if ((c & 0x7F80) == 0x7F80) continue; /* Inf/NaN */
        uint32_t base = c << 16;
        uint16_t even = (c & 1) ? (uint16_t)(c + 1) : (uint16_t)c;
        if (qf_f32_to_bf16(from_bits(base | 0x8000)) != even) bad++;
        if (qf_f32_to_bf16(from_bits(base | 0x7FFF)) != c) bad++;
        if (qf_f32_to_bf16(from_bits(base | 0x8001)) != (uint16_t)(c + 1)) bad++;
        if (qf_f32_to_bf16(from_bits(base | 0x0001)) != c) bad++;
    }
    CHECK(t, bad == 0, "%d bf16 rounding failures", bad);
    CHECK(t, qf_f32_to_bf16(1.0f) == 0x3F80, "1.0");
    CHECK(t, qf_f32_to_bf16(INFINITY) == 0x7F80 && qf_f32_to_bf16(-INFINITY) == 0xFF80, "inf");
    CHECK(t, qf_f32_to_bf16(from_bits(0x7F7FFFFF)) == 0x7F80, "FLT_MAX rounds to inf");
    uint16_t n = qf_f32_to_bf16(from_bits(0x7F800001)); /* signalling NaN, payload only in low bits */
    CHECK(t, (n & 0x7F80) == 0x7F80 && (n & 0x7F), "snan stays nan: 0x%04x", n);
}

/* ---------------- FP8 ---------------- */

/* Value of an FP8 code straight from the format definition. */
static double fp8_value(uint8_t v, int mbits, int bias) {
    int ebits = 7 - mbits;
    int e = (v >> mbits) & ((1 << ebits) - 1);
    int m = v & ((1 << mbits) - 1);
    double s = (v & 0x80) ? -1 : 1;
    if (e == 0) return s * ldexp(m, 1 - bias - mbits);
    return s * ldexp((double)((1 << mbits) + m), e - bias - mbits);
}

static int e4m3_is_nan(uint8_t v) { return (v & 0x7F) == 0x7F; }
static int e5m2_is_nan(uint8_t v) { return (v & 0x7F) > 0x7C; }

static void test_e4m3_codes(qf_test *t) {
    int bad = 0;
    for (int c = 0; c < 256; c++) {
        uint8_t v = (uint8_t)c;
        float f = qf_e4m3_to_f32(v);
        if (e4m3_is_nan(v)) {
            if (!isnan(f) || qf_f32_to_e4m3(f) != v) bad++;
            continue;
        }
        if ((double)f != fp8_value(v, 3, 7) || !!signbit(f) != !!(v & 0x80)) bad++;
        if (qf_f32_to_e4m3(f) != v) bad++;
    }
    CHECK(t, bad == 0, "%d e4m3 codes wrong", bad);
    CHECK(t, qf_e4m3_to_f32(0x7E) == 448.0f && qf_e4m3_to_f32(0xFE) == -448.0f, "max 448");
    CHECK(t, qf_e4m3_to_f32(0x01) == 0x1p-9f, "min subnormal 2^-9");
    CHECK(t, qf_e4m3_to_f32(0x08) == 0x1p-6f, "min normal 2^-6");
    CHECK(t, qf_e4m3_to_f32(0x38) == 1.0f, "1.0 = 0x38");
    CHECK(t, isnan(qf_e4m3_to_f32(0x7F)) && isnan(qf_e4m3_to_f32(0xFF)), "nan codes");
    CHECK(t, !isnan(qf_e4m3_to_f32(0x78)) && qf_e4m3_to_f32(0x78) == 256.0f, "0x78 is 256, not inf");
    /* saturation */
    CHECK(t, qf_f32_to_e4m3(449.0f) == 0x7E && qf_f32_to_e4m3(1e30f) == 0x7E, "finite overflow -> 448");
    CHECK(t, qf_f32_to_e4m3(INFINITY) == 0x7E && qf_f32_to_e4m3(-INFINITY) == 0xFE, "inf -> +-448");
    CHECK(t, qf_f32_to_e4m3(NAN) == 0x7F && qf_f32_to_e4m3(-NAN) == 0xFF, "nan -> 0x7f|sign");
    CHECK(t, qf_f32_to_e4m3(0x1p-10f) == 0x00 && qf_f32_to_e4m3(nextafterf(0x1p-10f, 1)) == 0x01,
          "half of min subnormal ties to 0");
}

static void test_e5m2_codes(qf_test *t) {
    int bad = 0;
    for (int c = 0; c < 256; c++) {
        uint8_t v = (uint8_t)c;
        float f = qf_e5m2_to_f32(v);
        if (e5m2_is_nan(v)) {
            if (!isnan(f) || !e5m2_is_nan(qf_f32_to_e5m2(f))) bad++;
            continue;
        }
        if ((v & 0x7F) == 0x7C) {
            if (!isinf(f) || !!signbit(f) != !!(v & 0x80) || qf_f32_to_e5m2(f) != v) bad++;
            continue;
        }
        if ((double)f != fp8_value(v, 2, 15) || !!signbit(f) != !!(v & 0x80)) bad++;
        if (qf_f32_to_e5m2(f) != v) bad++;
    }
    CHECK(t, bad == 0, "%d e5m2 codes wrong", bad);
    CHECK(t, qf_e5m2_to_f32(0x7B) == 57344.0f, "max 57344");
    CHECK(t, qf_e5m2_to_f32(0x01) == 0x1p-16f, "min subnormal 2^-16");
    CHECK(t, qf_e5m2_to_f32(0x04) == 0x1p-14f, "min normal 2^-14");
    CHECK(t, qf_e5m2_to_f32(0x3C) == 1.0f, "1.0 = 0x3c");
    CHECK(t, isinf(qf_e5m2_to_f32(0x7C)) && isinf(qf_e5m2_to_f32(0xFC)), "inf codes");
    CHECK(t, isnan(qf_e5m2_to_f32(0x7D)) && isnan(qf_e5m2_to_f32(0x7E)) && isnan(qf_e5m2_to_f32(0xFF)), "nan codes");
    CHECK(t, qf_f32_to_e5m2(61439.0f) == 0x7B, "below the max|inf midpoint -> max");
    CHECK(t, qf_f32_to_e5m2(61440.0f) == 0x7C, "midpoint max|inf -> inf (even)");
    CHECK(t, qf_f32_to_e5m2(-1e30f) == 0xFC && qf_f32_to_e5m2(INFINITY) == 0x7C, "overflow -> inf");
    CHECK(t, e5m2_is_nan(qf_f32_to_e5m2(NAN)), "nan");
}

/* Midpoints between adjacent positive codes tie to the even code, one f32
 * ulp away they go to the nearer one; the same holds mirrored for negatives. */
static int fp8_midpoint_failures(float (*dec)(uint8_t), uint8_t (*enc)(float), int max_code) {
    int bad = 0;
    for (int c = 0; c < max_code; c++) {
        double lo = dec((uint8_t)c), hi = dec((uint8_t)(c + 1));
        float mid = (float)((lo + hi) / 2);
        uint8_t even = (c & 1) ? (uint8_t)(c + 1) : (uint8_t)c;
        if (enc(mid) != even || enc(-mid) != (even | 0x80)) bad++;
        if (enc(nextafterf(mid, 0)) != c || enc(nextafterf(mid, INFINITY)) != c + 1) bad++;
        if (enc(-nextafterf(mid, INFINITY)) != ((c + 1) | 0x80)) bad++;
    }
    return bad;
}

static void test_fp8_midpoints(qf_test *t) {
    int b1 = fp8_midpoint_failures(qf_e4m3_to_f32, qf_f32_to_e4m3, 0x7E);
    int b2 = fp8_midpoint_failures(qf_e5m2_to_f32, qf_f32_to_e5m2, 0x7B);
    CHECK(t, b1 == 0, "e4m3: %d midpoint failures", b1);
    CHECK(t, b2 == 0, "e5m2: %d midpoint failures", b2);
    /* between 448 and the (non-existent) 480: everything saturates to 448 */
    CHECK(t, qf_f32_to_e4m3(464.0f) == 0x7E && qf_f32_to_e4m3(470.0f) == 0x7E, "e4m3 above max");
}

/* ---------------- row converters ---------------- */

/* Random bit patterns (NaNs, subnormals, huge values included), the specials,
 * and values near rounding boundaries; odd length to exercise the tails. */
static void fill_special_f32(float *x, size_t n) {
    static const uint32_t specials[] = {
        0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F800001,
        0x00000001, 0x807FFFFF, 0x477FE000, 0x477FEFFF, 0x477FF000, 0x33000000, 0x33000001,
        0x387FE000, 0x38800000, 0x3F808000, 0x3F818000, 0x7F7FFFFF, 0x7F7F8000, 0x3F800000,
    };
    size_t ns = sizeof specials / sizeof specials[0];
    for (size_t i = 0; i < n; i++) {
        uint32_t u = rnd32();
        if (i < ns) u = specials[i];
        else if (i % 3 == 0) u = (u & 0xFFFF0000u) | 0x8000u;             /* bf16 ties */
        else if (i % 3 == 1) u = (u & 0xC7FFE000u) | 0x38001000u;         /* f16-range ties */
        x[i] = from_bits(u);
    }
}

static void test_row_converters_match_scalar(qf_test *t) {
    enum { N = 4099 };
    static float x[N], y[N];
    static uint16_t h[N], hs[N];
    fill_special_f32(x, N);
    int bad = 0;
    for (size_t n = 0; n <= N; n += (n < 40 ? 1 : 1000)) { /* all short tails, then long rows */
        qf_f32_to_f16_row(x, h, n);
        for (size_t i = 0; i < n; i++) bad += h[i] != qf_f32_to_f16(x[i]);
        qf_f32_to_bf16_row(x, h, n);
        for (size_t i = 0; i < n; i++) bad += h[i] != qf_f32_to_bf16(x[i]);
    }
    CHECK(t, bad == 0, "f32->f16/bf16 rows: %d mismatches", bad);
    bad = 0;
    static uint16_t all[65536];
    static float out[65536];
    for (uint32_t c = 0; c < 65536; c++) all[c] = (uint16_t)c;
    qf_f16_to_f32_row(all, out, 65536);
    for (uint32_t c = 0; c < 65536; c++) bad += bits(out[c]) != bits(qf_f16_to_f32((uint16_t)c));
    qf_bf16_to_f32_row(all, out, 65536);
    for (uint32_t c = 0; c < 65536; c++) bad += bits(out[c]) != bits(qf_bf16_to_f32((uint16_t)c));
    for (size_t i = 0; i < N; i++) hs[i] = (uint16_t)rnd32();
    qf_f16_to_f32_row(hs, y, 13);
    for (size_t i = 0; i < 13; i++) bad += bits(y[i]) != bits(qf_f16_to_f32(hs[i]));
    qf_bf16_to_f32_row(hs, y, 13);
    for (size_t i = 0; i < 13; i++) bad += bits(y[i]) != bits(qf_bf16_to_f32(hs[i]));
    CHECK(t, bad == 0, "f16/bf16->f32 rows: %d mismatches over all codes", bad);
}

#ifdef HAVE_F16C
QF_TEST_MAIN(test_f16_all_codes_roundtrip, test_f16_values, test_f16_midpoints,
             test_f16_decode_matches_hardware, test_f32_to_f16_vs_hardware_all,
             test_bf16_all_codes_roundtrip, test_bf16_rounding, test_e4m3_codes, test_e5m2_codes,
             test_fp8_midpoints, test_row_converters_match_scalar)
#else
QF_TEST_MAIN(test_f16_all_codes_roundtrip, test_f16_values, test_f16_midpoints,
             test_bf16_all_codes_roundtrip, test_bf16_rounding, test_e4m3_codes, test_e5m2_codes,
             test_fp8_midpoints, test_row_converters_match_scalar)
#endif
