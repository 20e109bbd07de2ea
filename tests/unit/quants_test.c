/* quants_test.c - block codecs without external data: hand-computed blocks
 * that pin ggml's exact rounding rules, round-trip error bounds for every
 * legacy codec, and fast == ref bit for bit on random, zero, subnormal, huge
 * and non-finite inputs. The llama.cpp oracles are in quants_oracle_test.c. */
#include "qf_test.h"
#include "codecs.h"
#include "numfmt.h"
#include "ggml_types.h"
#include "qf_error.h"

#include <math.h>
#include <stdint.h>

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint32_t rnd32(void) {
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 2685821657736338717ull) >> 32);
}
static float rnd_unit(void) { return (float)((rnd32() >> 8) * 0x1p-24); } /* [0,1) */
static float rnd_normal(void) { /* Box-Muller */
    float u = rnd_unit() + 0x1p-25f, v = rnd_unit();
    return sqrtf(-2 * logf(u)) * cosf(6.2831853f * v);
}
static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* Codec geometry (kept here so the test does not trust the library's tables). */
typedef struct { uint32_t type; const char *name; int block; int bytes; } geom;
static const geom geoms[] = {
    {GGML_TYPE_F32, "f32", 1, 4},      {GGML_TYPE_F16, "f16", 1, 2},      {GGML_TYPE_BF16, "bf16", 1, 2},
    {GGML_TYPE_Q4_0, "q4_0", 32, 18},  {GGML_TYPE_IQ4_NL, "iq4_nl", 32, 18}, {GGML_TYPE_Q4_1, "q4_1", 32, 20},  {GGML_TYPE_Q5_0, "q5_0", 32, 22},
    {GGML_TYPE_Q5_1, "q5_1", 32, 24},  {GGML_TYPE_Q8_0, "q8_0", 32, 34},  {GGML_TYPE_Q2_K, "q2_K", 256, 84},
    {GGML_TYPE_Q3_K, "q3_K", 256, 110}, {GGML_TYPE_Q4_K, "q4_K", 256, 144}, {GGML_TYPE_Q5_K, "q5_K", 256, 176},
    {GGML_TYPE_Q6_K, "q6_K", 256, 210}, {GGML_TYPE_Q8_K, "q8_K", 256, 292}, {GGML_TYPE_IQ4_XS, "iq4_xs", 256, 136},
    {GGML_TYPE_IQ3_S, "iq3_s", 256, 110},   {GGML_TYPE_IQ3_XXS, "iq3_xxs", 256, 98},
    {GGML_TYPE_IQ2_XXS, "iq2_xxs", 256, 66},
    {GGML_TYPE_IQ2_XS, "iq2_xs", 256, 74},  {GGML_TYPE_IQ2_S, "iq2_s", 256, 82},
    {GGML_TYPE_IQ1_S, "iq1_s", 256, 50},    {GGML_TYPE_IQ1_M, "iq1_m", 256, 56},
};
enum { N_GEOMS = sizeof geoms / sizeof geoms[0] };
static const char *ggml_type_name_or(uint32_t type) {
    for (int i = 0; i < N_GEOMS; i++) if (geoms[i].type == type) return geoms[i].name;
    return "?";
}

/* One 32-element block of test data of the given flavour. */
enum { FLAV_NORMAL, FLAV_TINY, FLAV_SUBNORMAL, FLAV_HUGE, FLAV_ZERO, FLAV_NEGZERO,
       FLAV_TIES, FLAV_SPARSE, FLAV_GRID, FLAV_NONFINITE, FLAV_COUNT };

static void fill_block(float *x, int flavour) {
    for (int j = 0; j < 32; j++) {
        float g = rnd_normal();
        switch (flavour) {
        case FLAV_NORMAL: x[j] = g * 0.02f; break;
        case FLAV_TINY: x[j] = g * 1e-37f; break;                            /* 1/d overflows */
        case FLAV_SUBNORMAL: x[j] = bits_f32(rnd32() & 0x807FFFFFu); break; /* all subnormal */
        case FLAV_HUGE: x[j] = g * 1e37f; break;
        case FLAV_ZERO: x[j] = 0.0f; break;
        case FLAV_NEGZERO: x[j] = (j == 0 || rnd32() % 2) ? -0.0f : 0.0f; break;
        case FLAV_TIES: x[j] = (rnd32() & 1 ? 1.0f : -1.0f) * (float)(rnd32() % 3); break; /* equal |x|, both signs */
        case FLAV_SPARSE: x[j] = (rnd32() % 8 == 0) ? g : 0.0f; break;
        case FLAV_GRID: /* amax 63.5 -> Q8_0 d = 0.5, id = 2: quarter steps hit the .5 ties */
            x[j] = j == 0 ? 63.5f : (float)((int)(rnd32() % 509) - 254) * 0.25f;
            break;
        case FLAV_NONFINITE: {
            uint32_t r = rnd32() % 16;
            x[j] = r == 0 ? NAN : r == 1 ? INFINITY : r == 2 ? -INFINITY : g;
            break;
        }
        }
    }
}

static void fill_row(float *x, int64_t k) {
    for (int64_t b = 0; b < k / 32; b++) fill_block(x + 32 * b, (int)(rnd32() % FLAV_COUNT));
}

/* ---------------- exact rounding, by hand ---------------- */

static void test_q4_0_rounding_by_hand(qf_test *t) {
    float x[32] = {0};
    x[0] = 1.0f; x[1] = -8.0f; x[2] = 7.9f; x[3] = 3.5f; x[4] = 8.0f; x[5] = -0.5f;
    block_q4_0 b;
    quantize_row_q4_0_ref(x, &b, 32);
    /* max = -8 (largest |x| with its sign, first on ties with x[4]=8) -> d = 1, id = 1 */
    CHECK(t, b.d == 0x3C00, "d=0x%04x", b.d);
    /* q = min(15, trunc(x + 8.5)): 1 -> 9, -8 -> 0, 7.9 -> 15 (capped from 16), 3.5 -> 12, 8 -> 15, -0.5 -> 8, 0 -> 8 */
    const int want[6] = {9, 0, 15, 12, 15, 8};
    for (int j = 0; j < 6; j++) CHECK(t, (b.qs[j] & 0x0F) == want[j], "q[%d]=%d want %d", j, b.qs[j] & 0x0F, want[j]);
    CHECK(t, b.qs[6] == 0x88, "zeros -> 8|8<<4, got 0x%02x", b.qs[6]);
    float y[32];
    dequantize_row_q4_0_ref(&b, y, 32);
    CHECK(t, y[0] == 1.0f && y[1] == -8.0f && y[2] == 7.0f && y[3] == 4.0f, "dequant %g %g %g %g", y[0], y[1], y[2], y[3]);
    /* all-zero block: max stays +0, d = 0/-8 = -0 */
    memset(x, 0, sizeof x);
    quantize_row_q4_0_ref(x, &b, 32);
    CHECK(t, b.d == 0x8000 && b.qs[0] == 0x88, "zero block d=0x%04x q=0x%02x", b.d, b.qs[0]);
}

static void test_q8_0_rounding_by_hand(qf_test *t) {
    float x[32] = {0};
    x[0] = 127.0f; x[1] = 2.5f; x[2] = -2.5f; x[3] = 0.49999997f; x[4] = -126.5f;
    block_q8_0 b;
    quantize_row_q8_0_ref(x, &b, 32);
    CHECK(t, b.d == 0x3C00, "d = 127/127 = 1: 0x%04x", b.d);
    /* roundf: half away from zero (RNE would give 2, -2, -126) */
    CHECK(t, b.qs[0] == 127 && b.qs[1] == 3 && b.qs[2] == -3 && b.qs[3] == 0 && b.qs[4] == -127,
          "q = %d %d %d %d %d", b.qs[0], b.qs[1], b.qs[2], b.qs[3], b.qs[4]);
}

static void test_q4_1_q5_rounding_by_hand(qf_test *t) {
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = -1.0f + (float)j * (31.0f / 31.0f); /* -1 .. 30 */
    x[31] = 14.0f;                                                          /* max = 29 */
    block_q4_1 b1;
    quantize_row_q4_1_ref(x, &b1, 32);
    /* min -1, max 29: d = 30/15 = 2, id = 0.5, q = trunc((x+1)*0.5 + 0.5) */
    CHECK(t, b1.d == qf_f32_to_f16(2.0f) && b1.m == qf_f32_to_f16(-1.0f), "d=0x%04x m=0x%04x", b1.d, b1.m);
    /* (x-min)/d = 0, 0.5, 1, 1.5 -> +0.5 and truncate -> 0, 1, 1, 2 (halves go up) */
    CHECK(t, (b1.qs[0] & 0x0F) == 0 && (b1.qs[1] & 0x0F) == 1 && (b1.qs[2] & 0x0F) == 1 && (b1.qs[3] & 0x0F) == 2,
          "q = %d %d %d %d", b1.qs[0] & 0x0F, b1.qs[1] & 0x0F, b1.qs[2] & 0x0F, b1.qs[3] & 0x0F);
    block_q5_0 b5;
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16); /* max = -16 first (|x|=16 at j=0) */
    quantize_row_q5_0_ref(x, &b5, 32);
    CHECK(t, b5.d == 0x3C00, "q5_0 d = -16/-16 = 1: 0x%04x", b5.d);
    float y[32];
    dequantize_row_q5_0_ref(&b5, y, 32);
    int bad = 0;
    for (int j = 0; j < 32; j++) bad += y[j] != x[j] && !(j == 31 && y[j] == 15.0f); /* 15 fits exactly */
    CHECK(t, bad == 0, "q5_0 integers -16..15 reproduce exactly (%d bad)", bad);
    uint32_t qh;
    memcpy(&qh, b5.qh, 4);
    CHECK(t, qh == 0xFFFF0000u, "high bits: elements 16..31 have q >= 16: qh=0x%08x", qh);
}

/* ---------------- round-trip error bounds ---------------- */

/* Quantize gaussian rows with every legacy codec and check each element's
 * error against the codec's step d (plus the fp16 rounding of d and m), and
 * the relative RMS error against what uniform rounding predicts. */
static void roundtrip_bound(qf_test *t, uint32_t type, double rms_bound) {
    enum { K = 32 * 512 };
    static float x[K], y[K];
    static uint8_t buf[K * 2];
    for (int i = 0; i < K; i++) x[i] = rnd_normal();
    switch (type) {
    case GGML_TYPE_Q4_0: quantize_row_q4_0_ref(x, (block_q4_0 *)buf, K); break;
    case GGML_TYPE_Q4_1: quantize_row_q4_1_ref(x, (block_q4_1 *)buf, K); break;
    case GGML_TYPE_Q5_0: quantize_row_q5_0_ref(x, (block_q5_0 *)buf, K); break;
    case GGML_TYPE_Q5_1: quantize_row_q5_1_ref(x, (block_q5_1 *)buf, K); break;
    case GGML_TYPE_Q8_0: quantize_row_q8_0_ref(x, (block_q8_0 *)buf, K); break;
    }
    REQUIRE(t, qf_dequantize_row_ref(type, buf, y, K) == 0, "dequantize");
    double se = 0, ss = 0;
    int bad = 0;
    for (int b = 0; b < K / 32; b++) {
        float lo = x[32 * b], hi = lo, amax = 0;
        for (int j = 0; j < 32; j++) {
            float v = x[32 * b + j];
            lo = fminf(lo, v); hi = fmaxf(hi, v); amax = fmaxf(amax, fabsf(v));
        }
        /* step d and how far the extreme quant may sit from the data */
        double d = type == GGML_TYPE_Q4_0 ? amax / 8.0 : type == GGML_TYPE_Q5_0 ? amax / 16.0
                 : type == GGML_TYPE_Q8_0 ? amax / 127.0 : type == GGML_TYPE_Q4_1 ? (hi - lo) / 15.0 : (hi - lo) / 31.0;
        int qmax = type == GGML_TYPE_Q8_0 ? 127 : type == GGML_TYPE_Q4_1 || type == GGML_TYPE_Q4_0 ? 16 : 32;
        /* rounding (or the Q4_0/Q5_0 cap at 15/31, one step) + fp16 error of d*q and of m */
        double tol = (type == GGML_TYPE_Q4_0 || type == GGML_TYPE_Q5_0 ? 1.0 : 0.5) * d
                   + qmax * d * 0x1p-11 + fabs(lo) * 0x1p-11 + 1e-7;
        for (int j = 0; j < 32; j++) {
            double e = fabs((double)y[32 * b + j] - x[32 * b + j]);
            if (e > tol) bad++;
            se += e * e;
            ss += (double)x[32 * b + j] * x[32 * b + j];
        }
    }
    double rel = sqrt(se / ss);
    if (getenv("QF_TEST_VERBOSE")) printf("# %s relative rms %.5f\n", ggml_type_name_or(type), rel);
    CHECK(t, bad == 0, "%s: %d elements beyond the per-block bound", ggml_type_name_or(type), bad);
    CHECK(t, rel < rms_bound, "%s: relative rms error %.4f >= %.4f", ggml_type_name_or(type), rel, rms_bound);
}

static void test_roundtrip_error_bounds(qf_test *t) {
    /* gaussian blocks of 32: amax ~ 2.1 sigma, range ~ 4.1 sigma; uniform
     * rounding error is step/sqrt(12). Measured 0.0865, 0.0786, 0.0421, 0.0376, 0.00535; bounds ~10% above. */
    roundtrip_bound(t, GGML_TYPE_Q4_0, 0.095);
    roundtrip_bound(t, GGML_TYPE_Q4_1, 0.087);
    roundtrip_bound(t, GGML_TYPE_Q5_0, 0.047);
    roundtrip_bound(t, GGML_TYPE_Q5_1, 0.042);
    roundtrip_bound(t, GGML_TYPE_Q8_0, 0.0059);
}

/* ---------------- fast == ref ---------------- */

static void test_quantize_fast_equals_ref(qf_test *t) {
    enum { K = 32 * 8192 };
    static float x[K];
    static block_q8_0 a8[K / 32], b8[K / 32];
    static block_q4_0 a4[K / 32], b4[K / 32];
    fill_row(x, K);
    for (int f = 0; f < FLAV_COUNT; f++) fill_block(x + 32 * f, f); /* every flavour at least once */
    quantize_row_q8_0_ref(x, a8, K);
    quantize_row_q8_0(x, b8, K);
    quantize_row_q4_0_ref(x, a4, K);
    quantize_row_q4_0(x, b4, K);
    int bad8 = 0, bad4 = 0;
    for (int b = 0; b < K / 32; b++) {
        bad8 += memcmp(&a8[b], &b8[b], sizeof a8[b]) != 0;
        bad4 += memcmp(&a4[b], &b4[b], sizeof a4[b]) != 0;
    }
    CHECK(t, bad8 == 0, "q8_0: %d of %d blocks differ", bad8, K / 32);
    CHECK(t, bad4 == 0, "q4_0: %d of %d blocks differ", bad4, K / 32);
    /* a block count that is not a multiple of the fast path's 8-block groups, shifted by
     * one block so that every flavour lands in another group position */
    const int64_t nb_odd = K / 32 - 5;
    quantize_row_q8_0_ref(x + 32, a8, 32 * nb_odd);
    quantize_row_q8_0(x + 32, b8, 32 * nb_odd);
    bad8 = 0;
    for (int64_t b = 0; b < nb_odd; b++) bad8 += memcmp(&a8[b], &b8[b], sizeof a8[b]) != 0;
    CHECK(t, bad8 == 0, "q8_0 (%lld blocks): %d differ", (long long)nb_odd, bad8);
    /* the all-zero and mixed-sign-zero blocks keep ggml's d = -0 */
    CHECK(t, b4[FLAV_ZERO].d == 0x8000 && b4[FLAV_NEGZERO].d == 0x8000, "zero blocks d=0x%04x 0x%04x",
          b4[FLAV_ZERO].d, b4[FLAV_NEGZERO].d);
}

/* Random bytes are valid blocks of every type (fp16 fields then include
 * subnormals, Inf and NaN); also blocks made by the quantizers. */
static void test_dequantize_fast_equals_ref(qf_test *t) {
    enum { NBYTES = 292 * 512 };
    static uint8_t src[NBYTES];
    static float a[NBYTES * 6], b[NBYTES * 6]; /* iq1_s: 256 values per 50 bytes */
    for (int i = 0; i < NBYTES; i++) src[i] = (uint8_t)rnd32();
    for (int g = 0; g < N_GEOMS; g++) {
        const int64_t k = (int64_t)(NBYTES / geoms[g].bytes) * geoms[g].block;
        const int64_t tail = geoms[g].block == 1 ? 13 : geoms[g].block; /* odd lengths for plain types */
        int bad = 0;
        for (int64_t n = k - tail; n <= k; n += tail) {
            REQUIRE(t, qf_dequantize_row(geoms[g].type, src, a, n) == 0, "%s fast", geoms[g].name);
            REQUIRE(t, qf_dequantize_row_ref(geoms[g].type, src, b, n) == 0, "%s ref", geoms[g].name);
            for (int64_t i = 0; i < n; i++) bad += f32_bits(a[i]) != f32_bits(b[i]);
        }
        CHECK(t, bad == 0, "%s: %d values differ", geoms[g].name, bad);
    }
    static float x[32 * 256];
    fill_row(x, 32 * 256);
    quantize_row_q4_0_ref(x, (block_q4_0 *)src, 32 * 256);
    dequantize_row_q4_0(( block_q4_0 *)src, a, 32 * 256);
    dequantize_row_q4_0_ref((block_q4_0 *)src, b, 32 * 256);
    CHECK(t, memcmp(a, b, sizeof(float) * 32 * 256) == 0, "q4_0 of quantized data");
}

/* IQ4_NL by hand: d = 0.5 (fp16 0x3800), byte j = (j) | (15 - j) << 4, so
 * element j is 0.5 * table[j] and element j+16 is 0.5 * table[15 - j], with
 * the table written out here (ggml-common.h kvalues_iq4nl), not taken from
 * the library. */
static void test_iq4_nl_by_hand(qf_test *t) {
    static const int table[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    block_iq4_nl b[2];
    b[0].d = 0x3800; /* 0.5 */
    b[1].d = 0xC400; /* -4 */
    for (int j = 0; j < 16; j++) {
        b[0].qs[j] = (uint8_t)(j | (15 - j) << 4);
        b[1].qs[j] = (uint8_t)(7 | 8 << 4);
    }
    float y[64], z[64];
    dequantize_row_iq4_nl_ref(b, y, 64);
    dequantize_row_iq4_nl(b, z, 64);
    int bad = 0;
    for (int j = 0; j < 16; j++) {
        bad += y[j] != 0.5f * (float)table[j];
        bad += y[j + 16] != 0.5f * (float)table[15 - j];
        bad += y[32 + j] != 40.0f || y[48 + j] != -4.0f;
    }
    CHECK(t, bad == 0, "%d values differ from the spec (y[0]=%g y[16]=%g y[32]=%g)", bad, y[0], y[16], y[32]);
    CHECK(t, memcmp(y, z, sizeof y) == 0, "fast != ref");
    CHECK(t, qf_has_dequantize(GGML_TYPE_IQ4_NL), "registered");
    CHECK(t, qf_dequantize_row(GGML_TYPE_IQ4_NL, b, z, 48) == -1, "k not a multiple of 32 -> -1");
}

/* IQ4_XS by hand: d = 0.5; sub-block ib has the 6-bit scale ls = 8*ib + 3
 * (low nibbles in scales_l, high 2 bits in scales_h), so its elements are
 * 0.5 * (ls - 32) * table[q]; nibbles as in IQ4_NL (byte j: elem j low,
 * elem j+16 high). The table is the one of the IQ4_NL test. */
static void test_iq4_xs_by_hand(qf_test *t) {
    static const int table[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    block_iq4_xs b;
    memset(&b, 0, sizeof b);
    b.d = 0x3800;
    for (int ib = 0; ib < 8; ib++) {
        const int ls = 8 * ib + 3;
        b.scales_l[ib / 2] |= (uint8_t)((ls & 15) << 4 * (ib % 2));
        b.scales_h |= (uint16_t)((ls >> 4) << 2 * ib);
        for (int j = 0; j < 16; j++) b.qs[16 * ib + j] = (uint8_t)(((j + ib) & 15) | (15 - j) << 4);
    }
    float y[256], z[256];
    dequantize_row_iq4_xs_ref(&b, y, 256);
    dequantize_row_iq4_xs(&b, z, 256);
    int bad = 0;
    for (int ib = 0; ib < 8; ib++) {
        const float dl = 0.5f * (float)(8 * ib + 3 - 32);
        for (int j = 0; j < 16; j++) {
            bad += y[32 * ib + j] != dl * (float)table[(j + ib) & 15];
            bad += y[32 * ib + 16 + j] != dl * (float)table[15 - j];
        }
    }
    CHECK(t, bad == 0, "%d values differ from the spec (y[0]=%g y[255]=%g)", bad, y[0], y[255]);
    CHECK(t, memcmp(y, z, sizeof y) == 0, "fast != ref");
    CHECK(t, qf_dequantize_row(GGML_TYPE_IQ4_XS, &b, z, 128) == -1, "k not a multiple of 256 -> -1");
}

/* IQ3_S's grid (derived from the peer, checked against it by
 * tests/cli/iquant_peer.sh): 512 distinct points of odd levels 1..15 in
 * ascending code order; a block of grid points (d = 1, scale 1) quantizes
 * to a block that dequantizes to them again, up to the fp16 scale. */
static void test_iq3_s_grid(qf_test *t) {
    int bad = 0, prev = -1;
    for (int i = 0; i < 512; i++) {
        int code = 0;
        for (int j = 0; j < 4; j++) {
            const int v = (qf_iq3s_grid[i] >> 8 * j) & 0xFF;
            bad += v < 1 || v > 15 || v % 2 == 0;
            code |= ((v - 1) / 2) << 3 * j;
        }
        bad += code <= prev;
        prev = code;
    }
    CHECK(t, bad == 0, "%d grid violations", bad);
    float x[256], y[256];
    for (int g = 0; g < 64; g++)
        for (int j = 0; j < 4; j++) x[4 * g + j] = (float)((qf_iq3s_grid[(g * 37) % 512] >> 8 * j) & 0xFF) * (g % 3 ? 1 : -1);
    block_iq3_s b;
    REQUIRE(t, qf_quantize_row_iq3_s(x, &b, 256, NULL) == 0, "quantize");
    dequantize_row_iq3_s_ref(&b, y, 256);
    double e = 0, n = 0;
    for (int i = 0; i < 256; i++) { e += (x[i] - y[i]) * (x[i] - y[i]); n += x[i] * x[i]; }
    CHECK(t, e / n < 2e-3, "grid points come back with relative error %g", e / n); /* d is stored x1.033: ~1e-3 */
}

/* IQ3_XXS: grid levels 8l+4 (l < 7) or 62, codes ascending; the sign
 * expansion has even parity and keeps the 7 index bits. */
static void test_iq3_xxs_grid_and_signs(qf_test *t) {
    int bad = 0, prev = -1;
    for (int i = 0; i < 256; i++) {
        int code = 0;
        for (int j = 0; j < 4; j++) {
            const int v = (qf_iq3xxs_grid[i] >> 8 * j) & 0xFF;
            bad += !(v == 62 || (v % 8 == 4 && v <= 52));
            code |= ((v - 4) / 8) << 3 * j;
        }
        bad += code <= prev;
        prev = code;
    }
    CHECK(t, bad == 0, "%d grid violations", bad);
    bad = 0;
    for (int i = 0; i < 128; i++) {
        const int s = qf_iq_signs(i), n = __builtin_popcount((unsigned)s);
        bad += (s & 127) != i || n % 2 != 0;
    }
    CHECK(t, bad == 0, "%d sign patterns wrong", bad);
}

/* IQ1: the grid is 2048 distinct 8-tuples of -1, 0, 1 in ascending code
 * order; blocks built by hand dequantize to dl * (g + delta) with the scale,
 * delta sign and high index bits where the layout puts them; the quantizers
 * refuse (IQ1_S) or accept (IQ1_M) a missing imatrix and round-trip a
 * random row with bounded error. */
static void test_iq1_by_hand(qf_test *t) {
    int bad = 0, prev = -1;
    for (int i = 0; i < 2048; i++) {
        int code = 0;
        for (int j = 0; j < 8; j++) {
            const int v = (int8_t)(qf_iq1_grid[i] >> 8 * j);
            bad += v < -1 || v > 1;
            code |= (v + 1) << 2 * j;
        }
        bad += code <= prev;
        prev = code;
    }
    CHECK(t, bad == 0, "%d grid violations", bad);

    block_iq1_s s;
    memset(&s, 0, sizeof s);
    s.d = 0x3800;                                 /* 0.5 */
    s.qs[4] = 7;                                  /* sub-block 1, group 0: index 7 | 5 << 8 */
    s.qh[1] = (uint16_t)(5 | 2 << 12 | 0x8000);   /* sc 2: dl = 0.5 * 5; delta -1/8 */
    float y[256];
    dequantize_row_iq1_s_ref(&s, y, 256);
    bad = 0;
    for (int j = 0; j < 8; j++) {
        const float want = 2.5f * ((float)(int8_t)(qf_iq1_grid[5 << 8 | 7] >> 8 * j) - 0.125f);
        const float want0 = 0.5f * ((float)(int8_t)(qf_iq1_grid[0] >> 8 * j) + 0.125f);
        bad += y[32 + j] != want || y[j] != want0;
    }
    CHECK(t, bad == 0, "iq1_s: %d values wrong", bad);

    block_iq1_m m;
    memset(&m, 0, sizeof m);
    m.scales[5] = 0xC0; /* d = fp16 0x3C00 = 1 from the top nibbles 0, 0, C, 3 */
    m.scales[7] = 0x30;
    m.scales[0] = 3 << 3;                          /* sub-block 0, weights 16..31: sc 3 -> dl = 7 */
    m.qs[3] = 9;                                   /* group 3: index 9 | 6 << 8, delta -1/8 */
    m.qh[1] = (uint8_t)((6 | 8) << 4);
    dequantize_row_iq1_m_ref(&m, y, 256);
    bad = 0;
    for (int j = 0; j < 8; j++) {
        bad += y[24 + j] != 7.f * ((float)(int8_t)(qf_iq1_grid[6 << 8 | 9] >> 8 * j) - 0.125f);
        bad += y[j] != (float)(int8_t)(qf_iq1_grid[0] >> 8 * j) + 0.125f;
    }
    CHECK(t, bad == 0, "iq1_m: %d values wrong", bad);

    enum { N = 4 * 256 };
    static float x[N], w[N], back[N];
    for (int i = 0; i < N; i++) {
        x[i] = (float)((int)(rnd32() % 2001) - 1000) / 1000.f;
        w[i] = 0.5f + (float)(rnd32() % 100) / 100.f;
    }
    static block_iq1_m qm[N / 256];
    static block_iq1_s qs1[N / 256];
    CHECK(t, qf_quantize_rows(GGML_TYPE_IQ1_S, x, qs1, 1, N, NULL) == QF_EINVAL, "iq1_s without imatrix");
    CHECK(t, qf_quantize_rows(GGML_TYPE_IQ1_M, x, qm, 1, N, NULL) == (int64_t)sizeof qm, "iq1_m without imatrix");
    for (int k = 0; k < 2; k++) {
        if (k == 0) {
            REQUIRE(t, qf_quantize_rows(GGML_TYPE_IQ1_S, x, qs1, 1, N, w) == (int64_t)sizeof qs1, "iq1_s");
            dequantize_row_iq1_s(qs1, back, N);
        } else {
            REQUIRE(t, qf_quantize_rows(GGML_TYPE_IQ1_M, x, qm, 1, N, w) == (int64_t)sizeof qm, "iq1_m");
            dequantize_row_iq1_m(qm, back, N);
        }
        double e = 0, nrm = 0;
        for (int i = 0; i < N; i++) { e += (x[i] - back[i]) * (x[i] - back[i]); nrm += x[i] * x[i]; }
        /* uniform data on the grid's 3 levels with one scale per 32 (16): measured 0.166 (0.152) */
        CHECK(t, e / nrm < (k ? 0.17 : 0.18), "%s: relative squared error %g", k ? "iq1_m" : "iq1_s", e / nrm);
    }
}

/* IQ2_XS and IQ2_S grids: distinct 8-tuples of the levels 8, 25, 43 in
 * ascending code order (512 and 1024 points). By hand: a block whose groups
 * name grid points through every index/sign/scale field (IQ2_XS: index |
 * sign index << 9; IQ2_S: 8 low index bits, 2 high bits per group in qh,
 * one sign byte per group), dequantized against values computed here from
 * the field positions of the format. Grid points quantize back to
 * themselves, up to the fp16 scale. */
static int iq2_grid_violations(const uint64_t *grid, int n) {
    int bad = 0, prev = -1;
    for (int i = 0; i < n; i++) {
        int code = 0;
        for (int j = 0; j < 8; j++) {
            const int v = (int)((grid[i] >> 8 * j) & 0xFF);
            const int l = v == 8 ? 0 : v == 25 ? 1 : v == 43 ? 2 : -1;
            bad += l < 0;
            code |= (l & 3) << 2 * j;
        }
        bad += code <= prev;
        prev = code;
    }
    return bad;
}

static void test_iq2_xs_s_grids(qf_test *t) {
    CHECK(t, iq2_grid_violations(qf_iq2xs_grid, 512) == 0, "iq2_xs grid violations");
    CHECK(t, iq2_grid_violations(qf_iq2s_grid, 1024) == 0, "iq2_s grid violations");
    block_iq2_xs bx;
    block_iq2_s bs;
    memset(&bx, 0, sizeof bx);
    memset(&bs, 0, sizeof bs);
    bx.d = bs.d = 0x4800; /* 8: db = 8 * (0.5 + sc) * 0.25 = 1 + 2 sc */
    for (int ib = 0; ib < 8; ib++) bx.scales[ib] = bs.scales[ib] = (uint8_t)((2 * ib) | (2 * ib + 1) << 4);
    for (int g = 0; g < 32; g++) {
        bx.qs[g] = (uint16_t)((g * 17 + 3) % 512 | ((g * 5) % 128) << 9);
        const int idx = (g * 33 + 7) % 1024;
        bs.qs[g] = (uint8_t)(idx & 255);
        bs.qh[g / 4] |= (uint8_t)((idx >> 8) << 2 * (g % 4));
        bs.qs[32 + g] = (uint8_t)(g * 29 + 1);
    }
    float yx[256], ys[256], z[256];
    dequantize_row_iq2_xs_ref(&bx, yx, 256);
    dequantize_row_iq2_s_ref(&bs, ys, 256);
    int bad = 0;
    for (int g = 0; g < 32; g++) {
        const float db = 1.0f + 2.0f * (float)(g / 2); /* sub-block of 16 = g/2 */
        const int sx = (g * 5) % 128, sxx = sx | (__builtin_popcount((unsigned)sx) & 1) << 7;
        const int sg = (uint8_t)(g * 29 + 1);
        for (int j = 0; j < 8; j++) {
            const float vx = db * (float)((qf_iq2xs_grid[(g * 17 + 3) % 512] >> 8 * j) & 0xFF);
            const float vs = db * (float)((qf_iq2s_grid[(g * 33 + 7) % 1024] >> 8 * j) & 0xFF);
            bad += yx[8 * g + j] != ((sxx >> j) & 1 ? -vx : vx);
            bad += ys[8 * g + j] != ((sg >> j) & 1 ? -vs : vs);
        }
    }
    CHECK(t, bad == 0, "%d values differ from the field layout", bad);
    dequantize_row_iq2_xs(&bx, z, 256);
    CHECK(t, memcmp(yx, z, sizeof z) == 0, "iq2_xs fast != ref");
    dequantize_row_iq2_s(&bs, z, 256);
    CHECK(t, memcmp(ys, z, sizeof z) == 0, "iq2_s fast != ref");

    float x[256], y[256], w[256];
    for (int g = 0; g < 32; g++)
        for (int j = 0; j < 8; j++) {
            /* even sign count per group, so IQ2_XS's parity rule keeps them */
            const float s = (j < 2 && g % 3 == 0) ? -1.f : 1.f;
            x[8 * g + j] = (float)((qf_iq2s_grid[(g * 37) % 1024] >> 8 * j) & 0xFF) * s;
        }
    for (int i = 0; i < 256; i++) w[i] = 1.0f;
    REQUIRE(t, qf_quantize_row_iq2_s(x, &bs, 256, w) == 0, "quantize iq2_s");
    dequantize_row_iq2_s_ref(&bs, y, 256);
    double e = 0, n = 0;
    for (int i = 0; i < 256; i++) { e += (x[i] - y[i]) * (x[i] - y[i]); n += x[i] * x[i]; }
    CHECK(t, e / n < 1e-2, "iq2_s grid points come back with relative error %g", e / n); /* d stored x0.9875, 4-bit sub-scales */
    CHECK(t, qf_quantize_row_iq2_xs(x, &bx, 256, NULL) == -1, "iq2_xs needs an imatrix");
    for (int g = 0; g < 32; g++)
        for (int j = 0; j < 8; j++)
            x[8 * g + j] = (float)((qf_iq2xs_grid[(g * 37) % 512] >> 8 * j) & 0xFF) * ((j < 2 && g % 3 == 0) ? -1.f : 1.f);
    REQUIRE(t, qf_quantize_row_iq2_xs(x, &bx, 256, w) == 0, "quantize iq2_xs");
    dequantize_row_iq2_xs_ref(&bx, y, 256);
    e = n = 0;
    for (int i = 0; i < 256; i++) { e += (x[i] - y[i]) * (x[i] - y[i]); n += x[i] * x[i]; }
    CHECK(t, e / n < 1e-2, "iq2_xs grid points come back with relative error %g", e / n);
}

static void test_generic_entry_points(qf_test *t) {
    float y[256];
    uint8_t buf[292] = {0};
    CHECK(t, qf_has_dequantize(GGML_TYPE_Q4_K) && qf_has_dequantize(GGML_TYPE_BF16), "supported types");
    CHECK(t, !qf_has_dequantize(GGML_TYPE_TQ1_0) && !qf_has_dequantize(GGML_TYPE_Q8_1), "unsupported types");
    CHECK(t, qf_dequantize_row(GGML_TYPE_TQ1_0, buf, y, 256) == -1, "no codec -> -1");
    CHECK(t, qf_dequantize_row(GGML_TYPE_Q4_K, buf, y, 128) == -1, "k not a multiple of 256 -> -1");
    CHECK(t, qf_dequantize_row_ref(GGML_TYPE_Q8_0, buf, y, 33) == -1, "k not a multiple of 32 -> -1");
    CHECK(t, qf_dequantize_row(GGML_TYPE_Q8_0, buf, y, 32) == 0 && y[0] == 0.0f, "zero block");
    float one = 1.5f;
    CHECK(t, qf_dequantize_row(GGML_TYPE_F32, &one, y, 1) == 0 && y[0] == 1.5f, "f32 copy");
}

/* The traits table against lists kept here (what llama.cpp's CPU backend and
 * ggml's quantizers do per type): which types have a dequantizer and a
 * quantizer, what an imatrix does to them, and the activation type of their
 * dot products. */
static void test_traits_table(qf_test *t) {
    static const uint32_t dequant[] = {GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_BF16, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1,
                                       GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q8_0, GGML_TYPE_IQ4_NL, GGML_TYPE_Q2_K,
                                       GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_Q8_K,
                                       GGML_TYPE_IQ4_XS, GGML_TYPE_IQ3_S, GGML_TYPE_IQ3_XXS, GGML_TYPE_IQ2_XXS,
                                       GGML_TYPE_IQ2_XS, GGML_TYPE_IQ2_S, GGML_TYPE_IQ1_S, GGML_TYPE_IQ1_M};
    static const uint32_t uses_imat[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q2_K,
                                         GGML_TYPE_Q3_K, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_IQ4_NL,
                                         GGML_TYPE_IQ4_XS, GGML_TYPE_IQ3_S, GGML_TYPE_IQ3_XXS, GGML_TYPE_IQ2_XXS,
                                         GGML_TYPE_IQ2_XS, GGML_TYPE_IQ2_S, GGML_TYPE_IQ1_S, GGML_TYPE_IQ1_M};
    static const uint32_t needs_imat[] = {GGML_TYPE_IQ2_XXS, GGML_TYPE_IQ2_XS, GGML_TYPE_IQ1_S};
    static const struct { uint32_t w, act; } dot[] = {
        {GGML_TYPE_F16, GGML_TYPE_F16},   {GGML_TYPE_BF16, GGML_TYPE_BF16}, {GGML_TYPE_Q4_0, GGML_TYPE_Q8_0},
        {GGML_TYPE_Q5_0, GGML_TYPE_Q8_0}, {GGML_TYPE_Q8_0, GGML_TYPE_Q8_0}, {GGML_TYPE_IQ4_NL, GGML_TYPE_Q8_0},
        {GGML_TYPE_Q4_1, GGML_TYPE_Q8_1}, {GGML_TYPE_Q5_1, GGML_TYPE_Q8_1}, {GGML_TYPE_Q2_K, GGML_TYPE_Q8_K},
        {GGML_TYPE_Q3_K, GGML_TYPE_Q8_K}, {GGML_TYPE_Q4_K, GGML_TYPE_Q8_K}, {GGML_TYPE_Q5_K, GGML_TYPE_Q8_K},
        {GGML_TYPE_Q6_K, GGML_TYPE_Q8_K}, {GGML_TYPE_IQ4_XS, GGML_TYPE_Q8_K},
        {GGML_TYPE_IQ3_S, GGML_TYPE_Q8_K}, {GGML_TYPE_IQ3_XXS, GGML_TYPE_Q8_K},
        {GGML_TYPE_IQ2_XXS, GGML_TYPE_Q8_K}, {GGML_TYPE_IQ2_XS, GGML_TYPE_Q8_K}, {GGML_TYPE_IQ2_S, GGML_TYPE_Q8_K},
        {GGML_TYPE_IQ1_S, GGML_TYPE_Q8_K},  {GGML_TYPE_IQ1_M, GGML_TYPE_Q8_K},
    };
    for (uint32_t ty = 0; ty < GGML_TYPE_COUNT + 2; ty++) {
        int in_dequant = 0, in_uses = 0, in_needs = 0;
        uint32_t act = GGML_TYPE_F32;
        for (size_t i = 0; i < sizeof dequant / sizeof dequant[0]; i++) in_dequant |= dequant[i] == ty;
        for (size_t i = 0; i < sizeof uses_imat / sizeof uses_imat[0]; i++) in_uses |= uses_imat[i] == ty;
        for (size_t i = 0; i < sizeof needs_imat / sizeof needs_imat[0]; i++) in_needs |= needs_imat[i] == ty;
        for (size_t i = 0; i < sizeof dot / sizeof dot[0]; i++) if (dot[i].w == ty) act = dot[i].act;
        CHECK(t, qf_has_dequantize(ty) == in_dequant, "type %u dequantize", ty);
        CHECK(t, qf_quantize_supports(ty) == in_dequant, "type %u quantize", ty);
        CHECK(t, qf_quantize_uses_imatrix(ty) == in_uses, "type %u uses imatrix", ty);
        CHECK(t, qf_quantize_requires_imatrix(ty) == in_needs, "type %u requires imatrix", ty);
        const ggml_type_traits *tt = ggml_get_type_traits(ty);
        if (tt) CHECK(t, tt->vec_dot_type == act, "type %u vec_dot_type %u", ty, tt->vec_dot_type);
        if (tt) CHECK(t, !tt->from_float == !tt->to_float && !tt->to_float == !tt->to_float_ref, "type %u codec", ty);
    }
}

QF_TEST_MAIN(test_q4_0_rounding_by_hand, test_q8_0_rounding_by_hand, test_q4_1_q5_rounding_by_hand,
             test_roundtrip_error_bounds, test_quantize_fast_equals_ref, test_dequantize_fast_equals_ref,
             test_generic_entry_points, test_iq4_nl_by_hand, test_iq4_xs_by_hand, test_iq3_s_grid, test_iq3_xxs_grid_and_signs, test_traits_table,
             test_iq1_by_hand, test_iq2_xs_s_grids)
