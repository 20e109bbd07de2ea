/* codec_iquants.c - the grid i-quants (codec_iquants.h): grids, the
 * reference dequantizers and ggml's quantizers, bit for bit. */
#include "codec_iquants.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "codec_kernels.h"

/* ------------------------------------------------------------------------ */
/* Grids                                                                    */
/* ------------------------------------------------------------------------ */

/* IQ3_S's 512 grid points, element j in byte j (odd levels 1..15), in
 * ascending order of the 12-bit code sum_j ((v_j - 1)/2) << 3j.
 * Derived, not copied: tests/tools/iq_probe wrote IQ3_S blocks walking every
 * index with d = 1, scale 1 and no signs, `llama-quantize --allow-requantize
 * ... F32` (llama.cpp c392e50) dequantized them, and the F32 values are these
 * bytes. tests/cli/iquant_peer.sh repeats that probe (plus random blocks)
 * and compares every value with qf_dequantize_row. */
const uint32_t qf_iq3s_grid[512] = {
    0x01010101, 0x01010103, 0x01010105, 0x0101010b, 0x0101010f, 0x01010301, 0x01010303, 0x01010305,
    0x01010309, 0x0101030d, 0x01010501, 0x01010503, 0x0101050b, 0x01010707, 0x01010901, 0x01010905,
    0x0101090b, 0x0101090f, 0x01010b03, 0x01010b07, 0x01010d01, 0x01010d05, 0x01010f03, 0x01010f09,
    0x01010f0f, 0x01030101, 0x01030103, 0x01030105, 0x01030109, 0x01030301, 0x01030303, 0x0103030b,
    0x01030501, 0x01030507, 0x0103050f, 0x01030703, 0x0103070b, 0x01030909, 0x01030d03, 0x01030d0b,
    0x01030f05, 0x01050101, 0x01050103, 0x0105010b, 0x0105010f, 0x01050301, 0x01050307, 0x0105030d,
    0x01050503, 0x0105050b, 0x01050701, 0x01050709, 0x01050905, 0x0105090b, 0x0105090f, 0x01050b03,
    0x01050b07, 0x01050f01, 0x01050f07, 0x01070107, 0x01070303, 0x0107030b, 0x01070501, 0x01070505,
    0x01070703, 0x01070707, 0x0107070d, 0x01070909, 0x01070b01, 0x01070b05, 0x01070d0f, 0x01070f03,
    0x01070f0b, 0x01090101, 0x01090307, 0x0109030f, 0x01090503, 0x01090509, 0x01090705, 0x01090901,
    0x01090907, 0x01090b03, 0x01090f01, 0x010b0105, 0x010b0109, 0x010b0501, 0x010b0505, 0x010b050d,
    0x010b0707, 0x010b0903, 0x010b090b, 0x010b090f, 0x010b0d0d, 0x010b0f07, 0x010d010d, 0x010d0303,
    0x010d0307, 0x010d0703, 0x010d0b05, 0x010d0f03, 0x010f0101, 0x010f0105, 0x010f0109, 0x010f0501,
    0x010f0505, 0x010f050d, 0x010f0707, 0x010f0b01, 0x010f0b09, 0x03010101, 0x03010103, 0x03010105,
    0x03010109, 0x03010301, 0x03010303, 0x03010307, 0x0301030b, 0x0301030f, 0x03010501, 0x03010505,
    0x03010703, 0x03010709, 0x0301070d, 0x03010b09, 0x03010b0d, 0x03010d03, 0x03010f05, 0x03030101,
    0x03030103, 0x03030107, 0x0303010d, 0x03030301, 0x03030309, 0x03030503, 0x03030701, 0x03030707,
    0x03030903, 0x03030b01, 0x03030b05, 0x03030f01, 0x03030f0d, 0x03050101, 0x03050305, 0x0305030b,
    0x0305030f, 0x03050501, 0x03050509, 0x03050705, 0x03050901, 0x03050907, 0x03050b0b, 0x03050d01,
    0x03050f05, 0x03070103, 0x03070109, 0x0307010f, 0x03070301, 0x03070307, 0x03070503, 0x0307050f,
    0x03070701, 0x03070709, 0x03070903, 0x03070d05, 0x03070f01, 0x03090107, 0x0309010b, 0x03090305,
    0x03090309, 0x03090703, 0x03090707, 0x03090905, 0x0309090d, 0x03090b01, 0x03090b09, 0x030b0103,
    0x030b0301, 0x030b0307, 0x030b0503, 0x030b0701, 0x030b0705, 0x030b0b03, 0x030d0501, 0x030d0509,
    0x030d050f, 0x030d0909, 0x030d090d, 0x030f0103, 0x030f0107, 0x030f0301, 0x030f0305, 0x030f0503,
    0x030f070b, 0x030f0903, 0x030f0d05, 0x030f0f01, 0x05010101, 0x05010103, 0x05010107, 0x0501010b,
    0x0501010f, 0x05010301, 0x05010305, 0x05010309, 0x0501030d, 0x05010503, 0x05010507, 0x0501050f,
    0x05010701, 0x05010705, 0x05010903, 0x05010907, 0x0501090b, 0x05010b01, 0x05010b05, 0x05010d0f,
    0x05010f01, 0x05010f07, 0x05010f0b, 0x05030101, 0x05030105, 0x05030301, 0x05030307, 0x0503030f,
    0x05030505, 0x0503050b, 0x05030703, 0x05030709, 0x05030905, 0x05030b03, 0x05050103, 0x05050109,
    0x0505010f, 0x05050503, 0x05050507, 0x05050701, 0x0505070f, 0x05050903, 0x05050b07, 0x05050b0f,
    0x05050f03, 0x05050f09, 0x05070101, 0x05070105, 0x0507010b, 0x05070303, 0x05070505, 0x05070509,
    0x05070703, 0x05070707, 0x05070905, 0x05070b01, 0x05070d0d, 0x05090103, 0x0509010f, 0x05090501,
    0x05090507, 0x05090705, 0x0509070b, 0x05090903, 0x05090f05, 0x05090f0b, 0x050b0109, 0x050b0303,
    0x050b0505, 0x050b070f, 0x050b0901, 0x050b0b07, 0x050b0f01, 0x050d0101, 0x050d0105, 0x050d010f,
    0x050d0503, 0x050d0b0b, 0x050d0d03, 0x050f010b, 0x050f0303, 0x050f050d, 0x050f0701, 0x050f0907,
    0x050f0b01, 0x07010105, 0x07010303, 0x07010307, 0x0701030b, 0x0701030f, 0x07010505, 0x07010703,
    0x07010707, 0x0701070b, 0x07010905, 0x07010909, 0x0701090f, 0x07010b03, 0x07010d07, 0x07010f03,
    0x07030103, 0x07030107, 0x0703010b, 0x07030309, 0x07030503, 0x07030507, 0x07030901, 0x07030d01,
    0x07030f05, 0x07030f0d, 0x07050101, 0x07050305, 0x07050501, 0x07050705, 0x07050709, 0x07050b01,
    0x07070103, 0x07070301, 0x07070309, 0x07070503, 0x07070507, 0x0707050f, 0x07070701, 0x07070903,
    0x07070907, 0x0707090f, 0x07070b0b, 0x07070f07, 0x07090107, 0x07090303, 0x0709030d, 0x07090505,
    0x07090703, 0x07090b05, 0x07090d01, 0x07090d09, 0x070b0103, 0x070b0301, 0x070b0305, 0x070b050b,
    0x070b0705, 0x070b0909, 0x070b0b0d, 0x070b0f07, 0x070d030d, 0x070d0903, 0x070f0103, 0x070f0107,
    0x070f0501, 0x070f0505, 0x070f070b, 0x09010101, 0x09010109, 0x09010305, 0x09010501, 0x09010509,
    0x0901050f, 0x09010705, 0x09010903, 0x09010b01, 0x09010f01, 0x09030105, 0x0903010f, 0x09030303,
    0x09030307, 0x09030505, 0x09030701, 0x0903070b, 0x09030907, 0x09030b03, 0x09030b0b, 0x09050103,
    0x09050107, 0x09050301, 0x0905030b, 0x09050503, 0x09050707, 0x09050901, 0x09050b0f, 0x09050d05,
    0x09050f01, 0x09070109, 0x09070303, 0x09070307, 0x09070501, 0x09070505, 0x09070703, 0x0907070b,
    0x09090101, 0x09090105, 0x09090509, 0x0909070f, 0x09090901, 0x09090f03, 0x090b010b, 0x090b010f,
    0x090b0503, 0x090b0d05, 0x090d0307, 0x090d0709, 0x090d0d01, 0x090f0301, 0x090f030b, 0x090f0701,
    0x090f0907, 0x090f0b03, 0x0b010105, 0x0b010301, 0x0b010309, 0x0b010505, 0x0b010901, 0x0b010909,
    0x0b01090f, 0x0b010b05, 0x0b010d0d, 0x0b010f09, 0x0b030103, 0x0b030107, 0x0b03010b, 0x0b030305,
    0x0b030503, 0x0b030705, 0x0b030f05, 0x0b050101, 0x0b050303, 0x0b050507, 0x0b050701, 0x0b05070d,
    0x0b050b07, 0x0b070105, 0x0b07010f, 0x0b070301, 0x0b07050f, 0x0b070909, 0x0b070b03, 0x0b070d0b,
    0x0b070f07, 0x0b090103, 0x0b090109, 0x0b090501, 0x0b090705, 0x0b09090d, 0x0b0b0305, 0x0b0b050d,
    0x0b0b0b03, 0x0b0b0b07, 0x0b0d0905, 0x0b0f0105, 0x0b0f0109, 0x0b0f0505, 0x0d010303, 0x0d010307,
    0x0d01030b, 0x0d010703, 0x0d010707, 0x0d010d01, 0x0d030101, 0x0d030501, 0x0d03050f, 0x0d030d09,
    0x0d050305, 0x0d050709, 0x0d050905, 0x0d050b0b, 0x0d050d05, 0x0d050f01, 0x0d070101, 0x0d070309,
    0x0d070503, 0x0d070901, 0x0d09050b, 0x0d090907, 0x0d090d05, 0x0d0b0101, 0x0d0b0107, 0x0d0b0709,
    0x0d0b0d01, 0x0d0d010b, 0x0d0d0901, 0x0d0f0303, 0x0d0f0307, 0x0f010101, 0x0f010109, 0x0f01010f,
    0x0f010501, 0x0f010505, 0x0f01070d, 0x0f010901, 0x0f010b09, 0x0f010d05, 0x0f030105, 0x0f030303,
    0x0f030509, 0x0f030907, 0x0f03090b, 0x0f050103, 0x0f050109, 0x0f050301, 0x0f05030d, 0x0f050503,
    0x0f050701, 0x0f050b03, 0x0f070105, 0x0f070705, 0x0f07070b, 0x0f070b07, 0x0f090103, 0x0f09010b,
    0x0f090307, 0x0f090501, 0x0f090b01, 0x0f0b0505, 0x0f0b0905, 0x0f0d0105, 0x0f0d0703, 0x0f0f0101,
};

/* IQ3_XXS's 256 grid points, element j in byte j, levels 4, 12, 20, .., 52
 * and 62 (8l + 4 for l = 0..6, then 62), in ascending order of the code
 * sum_j l_j << 3j. Derived like qf_iq3s_grid: iq_probe's index walk with
 * d = 4, scale 0 (db = 1) and sign index 0 (all positive), dequantized by
 * llama-quantize; checked the same way by tests/cli/iquant_peer.sh. */
const uint32_t qf_iq3xxs_grid[256] = {
    0x04040404, 0x04040414, 0x04040424, 0x04040c0c, 0x04040c1c, 0x04040c3e, 0x04041404, 0x04041414,
    0x04041c0c, 0x04042414, 0x04043e1c, 0x04043e2c, 0x040c040c, 0x040c041c, 0x040c0c04, 0x040c0c14,
    0x040c140c, 0x040c142c, 0x040c1c04, 0x040c1c14, 0x040c240c, 0x040c2c24, 0x040c3e04, 0x04140404,
    0x04140414, 0x04140424, 0x04140c0c, 0x04141404, 0x04141414, 0x04141c0c, 0x04141c1c, 0x04141c3e,
    0x04142c0c, 0x04142c3e, 0x04143e2c, 0x041c040c, 0x041c043e, 0x041c0c04, 0x041c0c14, 0x041c142c,
    0x041c3e04, 0x04240c1c, 0x04241c3e, 0x04242424, 0x04242c3e, 0x04243e1c, 0x04243e2c, 0x042c040c,
    0x042c043e, 0x042c1c14, 0x042c2c14, 0x04341c2c, 0x04343424, 0x043e0c04, 0x043e0c24, 0x043e0c34,
    0x043e241c, 0x043e340c, 0x0c04040c, 0x0c04041c, 0x0c040c04, 0x0c040c14, 0x0c04140c, 0x0c04141c,
    0x0c041c04, 0x0c041c14, 0x0c041c24, 0x0c04243e, 0x0c042c04, 0x0c0c0404, 0x0c0c0414, 0x0c0c0c0c,
    0x0c0c1404, 0x0c0c1414, 0x0c14040c, 0x0c14041c, 0x0c140c04, 0x0c140c14, 0x0c14140c, 0x0c141c04,
    0x0c143e14, 0x0c1c0404, 0x0c1c0414, 0x0c1c1404, 0x0c1c1c0c, 0x0c1c2434, 0x0c1c3434, 0x0c24040c,
    0x0c24042c, 0x0c242c04, 0x0c2c1404, 0x0c2c1424, 0x0c2c2434, 0x0c2c3e0c, 0x0c34042c, 0x0c3e1414,
    0x0c3e2404, 0x14040404, 0x14040414, 0x14040c0c, 0x14040c1c, 0x14041404, 0x14041414, 0x14041434,
    0x14041c0c, 0x14042414, 0x140c040c, 0x140c041c, 0x140c042c, 0x140c0c04, 0x140c0c14, 0x140c140c,
    0x140c1c04, 0x140c341c, 0x140c343e, 0x140c3e04, 0x14140404, 0x14140414, 0x14140c0c, 0x14140c3e,
    0x14141404, 0x14141414, 0x14141c3e, 0x14142404, 0x14142c2c, 0x141c040c, 0x141c0c04, 0x141c0c24,
    0x141c3e04, 0x141c3e24, 0x14241c2c, 0x14242c1c, 0x142c041c, 0x142c143e, 0x142c240c, 0x142c3e24,
    0x143e040c, 0x143e041c, 0x143e0c34, 0x143e242c, 0x1c04040c, 0x1c040c04, 0x1c040c14, 0x1c04140c,
    0x1c04141c, 0x1c042c04, 0x1c04342c, 0x1c043e14, 0x1c0c0404, 0x1c0c0414, 0x1c0c1404, 0x1c0c1c0c,
    0x1c0c2424, 0x1c0c2434, 0x1c14040c, 0x1c14041c, 0x1c140c04, 0x1c14142c, 0x1c142c14, 0x1c143e14,
    0x1c1c0c0c, 0x1c1c1c1c, 0x1c241c04, 0x1c24243e, 0x1c243e14, 0x1c2c0404, 0x1c2c0434, 0x1c2c1414,
    0x1c2c2c2c, 0x1c340c24, 0x1c341c34, 0x1c34341c, 0x1c3e1c1c, 0x1c3e3404, 0x24040424, 0x24040c3e,
    0x24041c2c, 0x24041c3e, 0x24042c1c, 0x24042c3e, 0x240c3e24, 0x24141404, 0x24141c3e, 0x24142404,
    0x24143404, 0x24143434, 0x241c043e, 0x241c242c, 0x24240424, 0x24242c0c, 0x24243424, 0x242c142c,
    0x242c241c, 0x242c3e04, 0x243e042c, 0x243e0c04, 0x243e0c14, 0x243e1c04, 0x2c040c14, 0x2c04240c,
    0x2c043e04, 0x2c0c0404, 0x2c0c0434, 0x2c0c1434, 0x2c0c2c2c, 0x2c140c24, 0x2c141c14, 0x2c143e14,
    0x2c1c0414, 0x2c1c2c1c, 0x2c240c04, 0x2c24141c, 0x2c24143e, 0x2c243e14, 0x2c2c0414, 0x2c2c1c0c,
    0x2c342c04, 0x2c3e1424, 0x2c3e2414, 0x34041424, 0x34042424, 0x34042434, 0x34043424, 0x340c140c,
    0x340c340c, 0x34140c3e, 0x34143424, 0x341c1c04, 0x341c1c34, 0x34242424, 0x342c042c, 0x342c2c14,
    0x34341c1c, 0x343e041c, 0x343e140c, 0x3e04041c, 0x3e04042c, 0x3e04043e, 0x3e040c04, 0x3e041c14,
    0x3e042c14, 0x3e0c1434, 0x3e0c2404, 0x3e140c14, 0x3e14242c, 0x3e142c14, 0x3e1c0404, 0x3e1c0c2c,
    0x3e1c1c1c, 0x3e1c3404, 0x3e24140c, 0x3e24240c, 0x3e2c0404, 0x3e2c0414, 0x3e2c1424, 0x3e341c04,
};

/* The quantizer's view of a grid of 4-tuples of odd levels 2l+1, l in 0..7:
 * map[code] = the grid index of the point with levels l_j (code = sum l_j <<
 * 3j), or -(1 + offset) for a point off the grid, where neighbours[offset] =
 * n and neighbours[offset+1..n] are the grid indices of the points in the n
 * nearest distance shells (nshell), by (squared distance, index). This is how
 * ggml's iq3xs_init_impl builds it (nshell 2 for 256 points, 3 for 512). */
typedef struct {
    const uint32_t *grid;
    int map[4096];
    uint16_t *neighbours; /* NULL until built */
} iq3_index;

/* 28317 entries for IQ3_S's grid (3584 off-grid codes, 1..38 neighbours each). */
#define IQ3S_NEIGHBOURS_CAP 32768
static uint16_t iq3s_neighbours[IQ3S_NEIGHBOURS_CAP];
static iq3_index iq3s_index;
static pthread_once_t iq3s_once = PTHREAD_ONCE_INIT;

static int cmp_dist(const void *a, const void *b) {
    const int *l = a, *r = b;
    return l[0] < r[0] ? -1 : l[0] > r[0] ? 1 : l[1] < r[1] ? -1 : l[1] > r[1] ? 1 : 0;
}

/* Sorts the (d2, index) pairs of dist2[2*n_grid] by distance, then index;
 * returns how many points the nshell nearest distinct distances hold. */
static int sort_shells(int *dist2, int n_grid, int nshell) {
    qsort(dist2, (size_t)n_grid, 2 * sizeof(int), cmp_dist);
    int n = 0, d2 = dist2[0], have = 1;
    for (int j = 0; j < n_grid; ++j) {
        if (dist2[2 * j] > d2) {
            if (have == nshell) break;
            d2 = dist2[2 * j];
            ++have;
        }
        ++n;
    }
    return n;
}

/* Sorts the grid (n_grid rows of dim level bytes) by distance to the point
 * of `code` (bits per level); returns how many points the nshell nearest
 * shells hold and leaves them first in dist2 (d2, index). */
static int nearest_shells(const uint8_t *grid, int dim, int bits, int n_grid, int code, int nshell, int *dist2) {
    int8_t pos[8];
    for (int k = 0; k < dim; ++k) pos[k] = (int8_t)(2 * ((code >> bits * k) & ((1 << bits) - 1)) + 1);
    for (int j = 0; j < n_grid; ++j) {
        const int8_t *pg = (const int8_t *)grid + (size_t)j * dim;
        int d2 = 0;
        for (int k = 0; k < dim; ++k) d2 += (pg[k] - pos[k]) * (pg[k] - pos[k]);
        dist2[2 * j] = d2;
        dist2[2 * j + 1] = j;
    }
    return sort_shells(dist2, n_grid, nshell);
}

/* Gives every code of map[map_size] not on the grid (entry < 0) its
 * neighbour list (nshell shells) in nb; returns nb, or NULL if the lists do
 * not fit in cap entries (the caps are set for the fixed grids). */
static uint16_t *fill_neighbours(int *map, int map_size, const uint8_t *grid, int dim, int bits, int n_grid, int nshell,
                                 uint16_t *nb, size_t cap) {
    int dist2[2 * 1024];
    size_t at = 0;
    for (int i = 0; i < map_size; ++i) {
        if (map[i] >= 0) continue;
        const int n = nearest_shells(grid, dim, bits, n_grid, i, nshell, dist2);
        if (at + 1 + (size_t)n > cap) return NULL;
        map[i] = -(int)(at + 1);
        nb[at++] = (uint16_t)n;
        for (int j = 0; j < n; ++j) nb[at++] = (uint16_t)dist2[2 * j + 1];
    }
    return nb;
}

/* Builds ix for grid (n_grid points) into nb (cap entries); ix->neighbours
 * stays NULL if they do not fit. */
static void iq3_index_build(iq3_index *ix, const uint32_t *grid, int n_grid, int nshell, uint16_t *nb, size_t cap) {
    ix->grid = grid;
    for (int i = 0; i < 4096; ++i) ix->map[i] = -1;
    for (int j = 0; j < n_grid; ++j) {
        const int8_t *pg = (const int8_t *)&grid[j];
        int code = 0;
        for (int k = 0; k < 4; ++k) code |= ((pg[k] - 1) / 2) << 3 * k;
        ix->map[code] = j;
    }
    ix->neighbours = fill_neighbours(ix->map, 4096, (const uint8_t *)grid, 4, 3, n_grid, nshell, nb, cap);
}

/* The 256 grid's off-grid codes have at most 2 shells of neighbours. */
#define IQ3XXS_NEIGHBOURS_CAP 32768
static uint16_t iq3xxs_neighbours[IQ3XXS_NEIGHBOURS_CAP];
static uint32_t iq3xxs_levels[256]; /* the grid as levels 2l+1, which the quantizer fits */
static iq3_index iq3xxs_index;
static pthread_once_t iq3xxs_once = PTHREAD_ONCE_INIT;

static void iq3xxs_index_init(void) {
    for (int i = 0; i < 256; ++i) {
        uint32_t v = 0;
        for (int j = 0; j < 4; ++j) v |= (uint32_t)(2 * ((((qf_iq3xxs_grid[i] >> 8 * j) & 0xFF) - 4) / 8) + 1) << 8 * j;
        iq3xxs_levels[i] = v;
    }
    iq3_index_build(&iq3xxs_index, iq3xxs_levels, 256, 2, iq3xxs_neighbours, IQ3XXS_NEIGHBOURS_CAP);
}

static void iq3s_index_init(void) {
    iq3_index_build(&iq3s_index, qf_iq3s_grid, 512, 3, iq3s_neighbours, IQ3S_NEIGHBOURS_CAP);
}

int iq_best_candidate_ref(const uint8_t *grid, int dim, int shift, const uint16_t *cand, int n, const float v[8],
                          const float *x, const float *w) {
    float best_d2 = FLT_MAX;
    int best = 0;
    for (int j = 0; j < n; ++j) {
        const uint8_t *pg = grid + (size_t)cand[j] * dim;
        float d2 = 0.f;
        for (int i = 0; i < dim; ++i) {
            const float diff = v[pg[i] >> shift] - x[i];
            d2 += w[i] * diff * diff;
        }
        if (d2 < best_d2) {
            best_d2 = d2;
            best = j;
        }
    }
    return best;
}

/* Among the neighbours nb[1..nb[0]] of an off-grid point, the grid point g
 * (a row of dim level bytes 2l+1 of grid) minimising sum w_i (scale*g_i -
 * x_i)^2, the first on ties (iq_best_candidate over the values
 * scale * (2l+1)); its levels (g-1)/2 go to L. */
static int best_neighbour(const uint8_t *grid, int dim, const uint16_t *nb, const float *xval, const float *w,
                          float scale, int8_t *L) {
    float v[8];
    for (int l = 0; l < 8; ++l) v[l] = scale * (float)(2 * l + 1);
    const int best = nb[1 + iq_best_candidate(grid, dim, 1, nb + 1, nb[0], v, xval, w)];
    const int8_t *pg = (const int8_t *)grid + (size_t)best * dim;
    for (int i = 0; i < dim; ++i) L[i] = (int8_t)((pg[i] - 1) / 2);
    return best;
}

/* The shared search's view of an iq3_index. */
static iq_grid iq3_grid(const iq3_index *ix) {
    return (iq_grid){(const uint8_t *)ix->grid, ix->map, ix->neighbours, 4, 3, 7, 4096};
}

/* ------------------------------------------------------------------------ */
/* The search shared by the grid quantizers (codec_iquants.h)               */
/* ------------------------------------------------------------------------ */

/* The levels of one group for the inverse scale id, l = round((id x - 1)/2)
 * clamped to 0..l_max, into L (if not NULL); returns the group's code. */
static int iq_code(const iq_grid *g, const float *xval, float id, int8_t *L) {
    int code = 0;
    for (int i = 0; i < g->dim; ++i) {
        const int l = QK_MAX(0, QK_MIN(g->l_max, qk_nearest_int(0.5f * (id * xval[i] - 1))));
        if (L) L[i] = (int8_t)l;
        code |= l << g->bits * i;
    }
    return code;
}

/* Rounds one group at inverse scale id into L: to its code if on the grid,
 * else to the best neighbour at `scale` under the weights w; 1 if on the grid. */
static int iq_round_group(const iq_grid *g, const float *xval, const float *w, float id, float scale, int8_t *L) {
    const int code = iq_code(g, xval, id, L);
    if (g->map[code] >= 0) return 1;
    best_neighbour(g->grid, g->dim, g->neighbours + (-g->map[code] - 1), xval, w, scale, L);
    return 0;
}

/* sum w x q and sum w q^2 over the n weights of a sub-block, q = 2L+1. */
static void iq_sums(const float *w, const float *xval, const int8_t *L, int n, float *sumqx, float *sumq2) {
    float sqx = 0.f, sq2 = 0.f;
    for (int i = 0; i < n; ++i) {
        const float q = (float)(2 * L[i] + 1);
        sqx += w[i] * xval[i] * q;
        sq2 += w[i] * q * q;
    }
    *sumqx = sqx;
    *sumq2 = sq2;
}

float iq_trial_scales(const iq_grid *g, const float *weight, const float *xval, const float *waux, int n, float max,
                      float base, float step, int n_trials, float scale, int8_t *L, int *on_grid) {
    int8_t Laux[32];
    int on_grid_aux[8];
    const int n_groups = n / g->dim;
    float best = 0.f;
    for (int is = -n_trials; is <= n_trials; ++is) {
        const float id = (base + (float)is * step) / max;
        const float this_scale = 1 / id;
        for (int k = 0; k < n_groups; ++k)
            on_grid_aux[k] = iq_round_group(g, xval + g->dim * k, waux + g->dim * k, id, this_scale, Laux + g->dim * k);
        float sumqx, sumq2;
        iq_sums(weight, xval, Laux, n, &sumqx, &sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            memcpy(L, Laux, (size_t)n);
            if (on_grid) memcpy(on_grid, on_grid_aux, (size_t)n_groups * sizeof *on_grid);
        }
    }
    return scale;
}

float iq_regrid(const iq_grid *g, const float *weight, const float *xval, const float *waux, int n, float scale,
                const int *keep, int8_t *L) {
    const float id = 1 / scale;
    for (int k = 0; k < n / g->dim; ++k) {
        if (keep && keep[k]) continue;
        iq_round_group(g, xval + g->dim * k, waux + g->dim * k, id, scale, L + g->dim * k);
    }
    float sumqx, sumq2;
    iq_sums(weight, xval, L, n, &sumqx, &sumq2);
    return sumq2 > 0 ? sumqx / sumq2 : scale;
}

int iq_all_on_grid(const int *on_grid, int n) {
    for (int k = 0; k < n; ++k)
        if (!on_grid[k]) return 0;
    return 1;
}

int iq_grid_index(const iq_grid *g, const int8_t *L) {
    int code = 0;
    for (int i = 0; i < g->dim; ++i) code |= L[i] << g->bits * i;
    return code < g->map_size ? QK_MAX(0, g->map[code]) : 0;
}

/* Magnitudes xval and sign bits (bit i set: weight i negative) of n_groups
 * groups of 8 weights. */
static void iq_plain_signs(const float *xb, float *xval, uint8_t *block_signs, int n_groups) {
    for (int k = 0; k < n_groups; ++k) {
        uint8_t s = 0;
        for (int i = 0; i < 8; ++i) {
            if (xb[8 * k + i] >= 0) xval[8 * k + i] = xb[8 * k + i];
            else { xval[8 * k + i] = -xb[8 * k + i]; s |= (uint8_t)(1 << i); }
        }
        block_signs[k] = s;
    }
}

/* iq_plain_signs with an even number of minus signs per group: the weight
 * with the smallest w x^2 (first on ties) of an odd group takes the wrong
 * sign (its xval goes negative); the low 7 bits are kept. */
static void iq_even_signs(const float *xb, const float *weight, float *xval, uint8_t *block_signs, int n_groups) {
    iq_plain_signs(xb, xval, block_signs, n_groups);
    for (int k = 0; k < n_groups; ++k) {
        if (__builtin_parity(block_signs[k])) {
            int imin = 0;
            float min = weight[8 * k] * xb[8 * k] * xb[8 * k];
            for (int i = 1; i < 8; ++i) {
                const float ax = weight[8 * k + i] * xb[8 * k + i] * xb[8 * k + i];
                if (ax < min) { min = ax; imin = i; }
            }
            xval[8 * k + imin] = -xval[8 * k + imin];
            block_signs[k] ^= (uint8_t)(1 << imin);
        }
        block_signs[k] &= 127;
    }
}

/* The largest of the n magnitudes xval. */
static float iq_max(const float *xval, int n) {
    float max = xval[0];
    for (int i = 1; i < n; ++i) max = QK_MAX(max, xval[i]);
    return max;
}

float iq_sub_block(const float *xb, const float *qw, float sigma2, int n, int quarter_sigma, int even, float *weight,
                   float *waux, float *xval, uint8_t *block_signs) {
    iq_group_weights(xb, qw, sigma2, n, quarter_sigma, weight, waux);
    if (even) iq_even_signs(xb, weight, xval, block_signs, n / 8);
    else iq_plain_signs(xb, xval, block_signs, n / 8);
    return iq_max(xval, n);
}

float iq_abs_scale(float scale, uint8_t *block_signs, int n_groups, uint8_t mask) {
    if (!(scale < 0)) return scale;
    for (int k = 0; k < n_groups; ++k) block_signs[k] = (uint8_t)(~block_signs[k] & mask);
    return -scale;
}

int iq_scale_nibble(float id, float s) { return QK_MAX(0, QK_MIN(15, qk_nearest_int(0.5f * (id * s - 1)))); }

float iq_sigma2(const float *x, int n, float factor) {
    float sumx2 = 0.f;
    for (int i = 0; i < n; ++i) sumx2 += x[i] * x[i];
    return factor * sumx2 / (float)n;
}

void iq_group_weights(const float *xb, const float *qw, float sigma2, int n, int quarter_sigma, float *weight,
                      float *waux) {
    for (int i = 0; i < n; ++i)
        weight[i] = qw ? qw[i] * sqrtf(sigma2 + xb[i] * xb[i]) : quarter_sigma ? 0.25f * sigma2 + xb[i] * xb[i] : xb[i] * xb[i];
    if (waux)
        for (int i = 0; i < n; ++i) waux[i] = sqrtf(weight[i]);
}

/* ------------------------------------------------------------------------ */
/* IQ3_S                                                                    */
/* ------------------------------------------------------------------------ */

void dequantize_row_iq3_s_ref(const block_iq3_s *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / QK_IQ; i++) {
        const float d = h2f(x[i].d);
        for (int ib = 0; ib < QK_IQ / 32; ib++) {
            const float db = d * (float)(1 + 2 * ((x[i].scales[ib / 2] >> 4 * (ib % 2)) & 0x0F));
            for (int g = 0; g < 8; g++, y += 4) {
                const int idx = x[i].qs[8 * ib + g] | (((x[i].qh[ib] >> g) & 1) << 8);
                const uint8_t s = (uint8_t)(x[i].signs[4 * ib + g / 2] >> 4 * (g % 2));
                iq_put_group(y, db, (const uint8_t *)&qf_iq3s_grid[idx], 4, s);
            }
        }
    }
}

/* One 256-block (ggml quantize_row_iq3_s_impl, sub-blocks of 32). Per
 * sub-block: magnitudes |x| and sign bits; 19 trial inverse scales
 * (15 + 0.2 is)/max, is = -9..9, each rounding groups of 4 to the grid
 * (off-grid codes to their best neighbour under weights sqrt(w)) and keeping
 * the best weighted least-squares fit; if the winner had off-grid groups, one
 * more rounding at its scale and a refit. The sub-scales s are then stored
 * as 4 bits l = round((s/d - 1)/2) with d = max s / 31, and the block's d is
 * written as d * 1.033. A sub-block of zeros leaves its qs/signs unwritten
 * and does not advance them, as in ggml. L persists across sub-blocks. */
static void iq3_s_block(const float *x, const float *qw, block_iq3_s *y, int8_t *L) {
    const iq_grid g = iq3_grid(&iq3s_index);
    float scales[QK_IQ / 32], weight[32], xval[32], waux[32];
    int on_grid[8];
    uint8_t block_signs[4];
    memset(y, 0, sizeof *y);
    uint8_t *qs = y->qs, *signs = y->signs;
    const float sigma2 = iq_sigma2(x, QK_IQ, 2);
    float max_scale = 0.f;
    for (int ib = 0; ib < QK_IQ / 32; ++ib) {
        const float *xb = x + 32 * ib;
        const float max = iq_sub_block(xb, qw ? qw + 32 * ib : NULL, sigma2, 32, 0, 0, weight, waux, xval, block_signs);
        if (!max) {
            scales[ib] = 0;
            continue;
        }
        memset(on_grid, 0, sizeof on_grid);
        float scale = iq_trial_scales(&g, weight, xval, waux, 32, max, 15, 0.2f, 9, max / 15, L, on_grid);
        if (!iq_all_on_grid(on_grid, 8) && scale > 0) scale = iq_regrid(&g, weight, xval, waux, 32, scale, NULL, L);
        scale = iq_abs_scale(scale, block_signs, 4, 0xFF);
        for (int k = 0; k < 8; ++k) {
            const int gi = iq_grid_index(&g, L + 4 * k);
            qs[k] = (uint8_t)(gi & 255);
            y->qh[(8 * ib + k) / 8] |= (uint8_t)((gi >> 8) << ((8 * ib + k) % 8));
        }
        qs += 8;
        memcpy(signs, block_signs, 4);
        signs += 4;
        scales[ib] = scale;
        max_scale = QK_MAX(max_scale, scale);
    }
    if (!max_scale) return;
    const float d = max_scale / 31;
    y->d = f2h(d * 1.033f);
    const float id = 1 / d;
    for (int ib = 0; ib < QK_IQ / 32; ib += 2)
        y->scales[ib / 2] = (uint8_t)(iq_scale_nibble(id, scales[ib]) | (iq_scale_nibble(id, scales[ib + 1]) << 4));
}

int qf_quantize_row_iq3_s(const float *x, block_iq3_s *y, int64_t k, const float *qw) {
    pthread_once(&iq3s_once, iq3s_index_init);
    if (!iq3s_index.neighbours) return -1;
    int8_t L[32] = {0};
    for (int64_t b = 0; b < k / QK_IQ; ++b) iq3_s_block(x + b * QK_IQ, qw ? qw + b * QK_IQ : NULL, y + b, L);
    return 0;
}

void qk_from_float_iq3_s(const qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw) {
    if (qf_quantize_row_iq3_s(x, (block_iq3_s *)y, n, qw) != 0) memset(y, 0, (size_t)(n / QK_IQ) * sizeof(block_iq3_s));
}

/* ------------------------------------------------------------------------ */
/* IQ3_XXS                                                                  */
/* ------------------------------------------------------------------------ */

void dequantize_row_iq3_xxs_ref(const block_iq3_xxs *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / QK_IQ; i++) {
        const float d = h2f(x[i].d);
        for (int ib = 0; ib < QK_IQ / 32; ib++) {
            uint32_t ss;
            memcpy(&ss, x[i].qs + QK_IQ / 4 + 4 * ib, 4);
            const float db = d * (0.5f + (float)(ss >> 28)) * 0.5f;
            for (int g = 0; g < 8; g++, y += 4) {
                const uint8_t s = (uint8_t)(qf_iq_signs((ss >> 7 * (g / 2)) & 127) >> 4 * (g % 2));
                iq_put_group(y, db, (const uint8_t *)&qf_iq3xxs_grid[x[i].qs[8 * ib + g]], 4, s);
            }
        }
    }
}

/* One 256-block (ggml quantize_row_iq3_xxs_impl with the 256 grid): as
 * IQ3_S but with even-parity signs (iq_even_signs), 31 trials
 * (is = -15..15), a zero threshold of 1e-8, only the off-grid groups
 * re-rounded after the trials, and d = max scale / 31 written as d * 1.0125.
 * A zero sub-block keeps index 0, sign 0 and scale 0. */
static void iq3_xxs_block(const float *x, const float *qw, block_iq3_xxs *y, int8_t *L, int *on_grid) {
    const iq_grid g = iq3_grid(&iq3xxs_index);
    float scales[QK_IQ / 32], weight[32], xval[32], waux[32];
    uint8_t block_signs[4];
    uint32_t ss[QK_IQ / 32] = {0};
    memset(y, 0, sizeof *y);
    const float sigma2 = iq_sigma2(x, QK_IQ, 2);
    float max_scale = 0.f;
    for (int ib = 0; ib < QK_IQ / 32; ++ib) {
        const float *xb = x + 32 * ib;
        const float max = iq_sub_block(xb, qw ? qw + 32 * ib : NULL, sigma2, 32, 0, 1, weight, waux, xval, block_signs);
        if (max < 1e-8f) {
            scales[ib] = 0;
            memset(L, 0, 32);
            continue;
        }
        float scale = iq_trial_scales(&g, weight, xval, waux, 32, max, 15, 0.2f, 15, max / 15, L, on_grid);
        if (!iq_all_on_grid(on_grid, 8) && scale > 0) scale = iq_regrid(&g, weight, xval, waux, 32, scale, on_grid, L);
        scale = iq_abs_scale(scale, block_signs, 4, 127);
        for (int k = 0; k < 8; ++k) y->qs[8 * ib + k] = (uint8_t)iq_grid_index(&g, L + 4 * k);
        ss[ib] = block_signs[0] | (uint32_t)block_signs[1] << 7 | (uint32_t)block_signs[2] << 14 |
                 (uint32_t)block_signs[3] << 21;
        scales[ib] = scale;
        max_scale = QK_MAX(max_scale, scale);
    }
    if (!max_scale) {
        memset(y, 0, sizeof *y);
        return;
    }
    const float d = max_scale / 31;
    y->d = f2h(d * 1.0125f);
    const float id = 1 / d;
    for (int ib = 0; ib < QK_IQ / 32; ++ib) ss[ib] |= (uint32_t)iq_scale_nibble(id, scales[ib]) << 28;
    memcpy(y->qs + QK_IQ / 4, ss, sizeof ss);
}

int qf_quantize_row_iq3_xxs(const float *x, block_iq3_xxs *y, int64_t k, const float *qw) {
    pthread_once(&iq3xxs_once, iq3xxs_index_init);
    if (!iq3xxs_index.neighbours) return -1;
    int8_t L[32] = {0};
    int on_grid[8] = {0};
    for (int64_t b = 0; b < k / QK_IQ; ++b) iq3_xxs_block(x + b * QK_IQ, qw ? qw + b * QK_IQ : NULL, y + b, L, on_grid);
    return 0;
}

void qk_from_float_iq3_xxs(const qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw) {
    if (qf_quantize_row_iq3_xxs(x, (block_iq3_xxs *)y, n, qw) != 0) memset(y, 0, (size_t)(n / QK_IQ) * sizeof(block_iq3_xxs));
}

/* ------------------------------------------------------------------------ */
/* IQ2 grids: 8-tuples of 3 levels                                          */
/* ------------------------------------------------------------------------ */

/* IQ2_XXS's 256 grid points, element j in byte j, levels 8, 25, 43 (l = 0, 1,
 * 2), in ascending order of the code sum_j l_j << 2j. Derived like
 * qf_iq3s_grid: iq_probe's index walk with d = 8, scale 0 (db = 1), sign
 * index 0, dequantized by llama-quantize; tests/cli/iquant_peer.sh repeats it. */
const uint64_t qf_iq2xxs_grid[256] = {
    0x0808080808080808ull, 0x080808080808082bull, 0x0808080808081919ull, 0x0808080808082b08ull,
    0x0808080808082b2bull, 0x0808080808190819ull, 0x0808080808191908ull, 0x08080808082b0808ull,
    0x08080808082b082bull, 0x08080808082b2b08ull, 0x08080808082b2b2bull, 0x0808080819080819ull,
    0x0808080819081908ull, 0x0808080819190808ull, 0x0808080819192b08ull, 0x08080808192b0819ull,
    0x08080808192b1908ull, 0x080808082b080808ull, 0x080808082b08082bull, 0x080808082b082b2bull,
    0x080808082b2b082bull, 0x0808081908080819ull, 0x0808081908081908ull, 0x0808081908190808ull,
    0x0808081908191919ull, 0x0808081919080808ull, 0x080808192b081908ull, 0x080808192b192b08ull,
    0x0808082b08080808ull, 0x0808082b0808082bull, 0x0808082b082b082bull, 0x0808082b2b08082bull,
    0x0808190808080819ull, 0x0808190808081908ull, 0x0808190808190808ull, 0x08081908082b0819ull,
    0x08081908082b1908ull, 0x0808190819080808ull, 0x080819081908082bull, 0x0808190819082b08ull,
    0x08081908192b0808ull, 0x080819082b080819ull, 0x080819082b081908ull, 0x080819082b190808ull,
    0x080819082b2b1908ull, 0x0808191908080808ull, 0x080819190808082bull, 0x0808191908082b08ull,
    0x08081919082b0808ull, 0x080819191908192bull, 0x08081919192b2b19ull, 0x080819192b080808ull,
    0x080819192b190819ull, 0x0808192b08082b19ull, 0x0808192b08190808ull, 0x0808192b19080808ull,
    0x0808192b2b081908ull, 0x0808192b2b2b1908ull, 0x08082b0808080808ull, 0x08082b0808081919ull,
    0x08082b0808082b08ull, 0x08082b0808191908ull, 0x08082b08082b2b08ull, 0x08082b0819080819ull,
    0x08082b0819081908ull, 0x08082b0819190808ull, 0x08082b081919082bull, 0x08082b082b082b08ull,
    0x08082b1908081908ull, 0x08082b1919080808ull, 0x08082b2b0808082bull, 0x08082b2b08191908ull,
    0x0819080808080819ull, 0x0819080808081908ull, 0x0819080808190808ull, 0x08190808082b0819ull,
    0x0819080819080808ull, 0x08190808192b0808ull, 0x081908082b081908ull, 0x081908082b190808ull,
    0x081908082b191919ull, 0x0819081908080808ull, 0x0819081908082b08ull, 0x08190819082b0808ull,
    0x0819081919190808ull, 0x0819081919192b2bull, 0x081908192b080808ull, 0x0819082b082b1908ull,
    0x0819082b19081919ull, 0x0819190808080808ull, 0x0819190808082b08ull, 0x08191908082b0808ull,
    0x08191908082b1919ull, 0x0819190819082b19ull, 0x081919082b080808ull, 0x0819191908192b08ull,
    0x08191919192b082bull, 0x0819192b08080808ull, 0x0819192b0819192bull, 0x08192b0808080819ull,
    0x08192b0808081908ull, 0x08192b0808190808ull, 0x08192b0819080808ull, 0x08192b082b080819ull,
    0x08192b1908080808ull, 0x08192b1908081919ull, 0x08192b192b2b0808ull, 0x08192b2b19190819ull,
    0x082b080808080808ull, 0x082b08080808082bull, 0x082b080808082b2bull, 0x082b080819081908ull,
    0x082b0808192b0819ull, 0x082b08082b080808ull, 0x082b08082b08082bull, 0x082b0819082b2b19ull,
    0x082b081919082b08ull, 0x082b082b08080808ull, 0x082b082b0808082bull, 0x082b190808080819ull,
    0x082b190808081908ull, 0x082b190808190808ull, 0x082b190819080808ull, 0x082b19081919192bull,
    0x082b191908080808ull, 0x082b191919080819ull, 0x082b1919192b1908ull, 0x082b192b2b190808ull,
    0x082b2b0808082b08ull, 0x082b2b08082b0808ull, 0x082b2b082b191908ull, 0x082b2b2b19081908ull,
    0x1908080808080819ull, 0x1908080808081908ull, 0x1908080808190808ull, 0x1908080808192b08ull,
    0x19080808082b0819ull, 0x19080808082b1908ull, 0x1908080819080808ull, 0x1908080819082b08ull,
    0x190808081919192bull, 0x19080808192b0808ull, 0x190808082b080819ull, 0x190808082b081908ull,
    0x190808082b190808ull, 0x1908081908080808ull, 0x19080819082b0808ull, 0x19080819192b0819ull,
    0x190808192b080808ull, 0x190808192b081919ull, 0x1908082b08080819ull, 0x1908082b08190808ull,
    0x1908082b19082b08ull, 0x1908082b1919192bull, 0x1908082b192b2b08ull, 0x1908190808080808ull,
    0x1908190808082b08ull, 0x19081908082b0808ull, 0x190819082b080808ull, 0x190819082b192b19ull,
    0x190819190819082bull, 0x19081919082b1908ull, 0x1908192b08080808ull, 0x19082b0808080819ull,
    0x19082b0808081908ull, 0x19082b0808190808ull, 0x19082b0819080808ull, 0x19082b0819081919ull,
    0x19082b1908080808ull, 0x19082b1919192b08ull, 0x19082b19192b0819ull, 0x19082b192b08082bull,
    0x19082b2b19081919ull, 0x19082b2b2b190808ull, 0x1919080808080808ull, 0x1919080808082b08ull,
    0x1919080808190819ull, 0x1919080808192b19ull, 0x19190808082b0808ull, 0x191908082b080808ull,
    0x191908082b082b08ull, 0x1919081908081908ull, 0x191908191908082bull, 0x191908192b2b1908ull,
    0x1919082b2b190819ull, 0x191919082b190808ull, 0x191919082b19082bull, 0x1919191908082b2bull,
    0x1919192b08080819ull, 0x1919192b19191908ull, 0x19192b0808080808ull, 0x19192b0808190819ull,
    0x19192b0808192b19ull, 0x19192b08192b1908ull, 0x19192b1919080808ull, 0x19192b2b08082b08ull,
    0x192b080808081908ull, 0x192b080808190808ull, 0x192b080819080808ull, 0x192b0808192b2b08ull,
    0x192b081908080808ull, 0x192b081919191919ull, 0x192b082b08192b08ull, 0x192b082b192b0808ull,
    0x192b190808080808ull, 0x192b190808081919ull, 0x192b191908190808ull, 0x192b19190819082bull,
    0x192b19192b081908ull, 0x192b2b081908082bull, 0x2b08080808080808ull, 0x2b0808080808082bull,
    0x2b08080808082b2bull, 0x2b08080819080819ull, 0x2b0808082b08082bull, 0x2b08081908081908ull,
    0x2b08081908192b08ull, 0x2b08081919080808ull, 0x2b08082b08190819ull, 0x2b08190808080819ull,
    0x2b08190808081908ull, 0x2b08190808190808ull, 0x2b08190808191919ull, 0x2b08190819080808ull,
    0x2b081908192b0808ull, 0x2b08191908080808ull, 0x2b0819191908192bull, 0x2b0819192b191908ull,
    0x2b08192b08082b19ull, 0x2b08192b19080808ull, 0x2b08192b192b0808ull, 0x2b082b080808082bull,
    0x2b082b1908081908ull, 0x2b082b2b08190819ull, 0x2b19080808081908ull, 0x2b19080808190808ull,
    0x2b190808082b1908ull, 0x2b19080819080808ull, 0x2b1908082b2b0819ull, 0x2b1908190819192bull,
    0x2b1908192b080808ull, 0x2b19082b19081919ull, 0x2b19190808080808ull, 0x2b191908082b082bull,
    0x2b19190819081908ull, 0x2b19191919190819ull, 0x2b192b082b080819ull, 0x2b192b19082b0808ull,
    0x2b2b08080808082bull, 0x2b2b080819190808ull, 0x2b2b08082b081919ull, 0x2b2b081908082b19ull,
    0x2b2b082b08080808ull, 0x2b2b190808192b08ull, 0x2b2b2b0819190808ull, 0x2b2b2b1908081908ull,
};

/* Builds ix from a dequantization grid whose byte values are the levels in
 * `levels[3]` ascending; nb/cap as iq3_index_build. */
void iq2_index_build(iq2_index *ix, const uint64_t *deq, int n_grid, const uint8_t levels[3], int nshell,
                     uint16_t *nb, size_t cap) {
    ix->n_grid = n_grid;
    for (int i = 0; i < IQ2_MAP_SIZE; ++i) ix->map[i] = -1;
    for (int j = 0; j < n_grid; ++j) {
        uint64_t v = 0;
        int code = 0;
        for (int k = 0; k < 8; ++k) {
            const uint8_t b = (uint8_t)(deq[j] >> 8 * k);
            const int l = b == levels[0] ? 0 : b == levels[1] ? 1 : 2;
            v |= (uint64_t)(2 * l + 1) << 8 * k;
            code |= l << 2 * k;
        }
        ix->grid[j] = v;
        ix->map[code] = j;
    }
    ix->neighbours = fill_neighbours(ix->map, IQ2_MAP_SIZE, (const uint8_t *)ix->grid, 8, 2, n_grid, nshell, nb, cap);
}

/* ------------------------------------------------------------------------ */
/* IQ2_XXS                                                                  */
/* ------------------------------------------------------------------------ */

#define IQ2XXS_NEIGHBOURS_CAP (1 << 20)
static uint16_t iq2xxs_neighbours[IQ2XXS_NEIGHBOURS_CAP];
static iq2_index iq2xxs_index;
static pthread_once_t iq2xxs_once = PTHREAD_ONCE_INIT;
static void iq2xxs_index_init(void) {
    static const uint8_t levels[3] = {8, 25, 43};
    iq2_index_build(&iq2xxs_index, qf_iq2xxs_grid, 256, levels, 2, iq2xxs_neighbours, IQ2XXS_NEIGHBOURS_CAP);
}

void dequantize_row_iq2_xxs_ref(const block_iq2_xxs *x, float *y, int64_t k) {
    for (int64_t i = 0; i < k / QK_IQ; i++) {
        const float d = h2f(x[i].d);
        for (int ib = 0; ib < QK_IQ / 32; ib++) {
            uint32_t w[2];
            memcpy(w, x[i].qs + 4 * ib, 8);
            const float db = d * (0.5f + (float)(w[1] >> 28)) * 0.25f;
            for (int l = 0; l < 4; l++, y += 8) {
                const uint8_t *pg = (const uint8_t *)&qf_iq2xxs_grid[(w[0] >> 8 * l) & 0xFF];
                iq_put_group(y, db, pg, 8, qf_iq_signs((w[1] >> 7 * l) & 127));
            }
        }
    }
}

/* One 256-block (ggml quantize_row_iq2_xxs_impl): weights qw * sqrt(sigma2 +
 * x^2) with sigma2 = mean x^2 (no factor 2 here); signs as IQ3_XXS
 * (iq_even_signs); the start scale from make_qp_quants(32, 4) on the
 * magnitudes, eff_max = 3 * it, then 13 trials id = (5 + 0.1 is)/eff_max,
 * is = -6..6, rounding groups of 8 to the grid (neighbours from 2 shells),
 * best least-squares fit; then every group is re-rounded at the winning
 * scale (off-grid codes to their best neighbour) and the scale refit;
 * d = max scale / 31 (no fudge factor). */
static void iq2_xxs_block(const float *x, const float *qw, block_iq2_xxs *y, int8_t *L) {
    const iq_grid g = iq2_grid(&iq2xxs_index);
    float scales[QK_IQ / 32], weight[32], xval[32], waux[32];
    uint8_t block_signs[4];
    uint32_t q2[2 * (QK_IQ / 32)] = {0};
    memset(y, 0, sizeof *y);
    const float sigma2 = iq_sigma2(x, QK_IQ, 1);
    float max_scale = 0.f;
    for (int ib = 0; ib < QK_IQ / 32; ++ib) {
        const float *xb = x + 32 * ib;
        const float max = iq_sub_block(xb, qw + 32 * ib, sigma2, 32, 0, 1, weight, waux, xval, block_signs);
        if (max < QK_GROUP_MAX_EPS) {
            scales[ib] = 0;
            memset(L, 0, 32);
            continue;
        }
        float scale = qk_qp_search(32, 4, xval, (uint8_t *)L, weight);
        scale = iq_trial_scales(&g, weight, xval, waux, 32, scale * 3, 5, 0.1f, 6, scale, L, NULL);
        if (scale > 0) scale = iq_regrid(&g, weight, xval, waux, 32, scale, NULL, L);
        scale = iq_abs_scale(scale, block_signs, 4, 127);
        for (int k = 0; k < 4; ++k) {
            q2[2 * ib] |= (uint32_t)iq_grid_index(&g, L + 8 * k) << 8 * k;
            q2[2 * ib + 1] |= (uint32_t)block_signs[k] << 7 * k;
        }
        scales[ib] = scale;
        max_scale = QK_MAX(max_scale, scale);
    }
    if (!max_scale) return;
    const float d = max_scale / 31;
    y->d = f2h(d);
    const float id = 1 / d;
    for (int ib = 0; ib < QK_IQ / 32; ++ib) q2[2 * ib + 1] |= (uint32_t)iq_scale_nibble(id, scales[ib]) << 28;
    memcpy(y->qs, q2, sizeof q2);
}

int qf_quantize_row_iq2_xxs(const float *x, block_iq2_xxs *y, int64_t k, const float *qw) {
    if (!qw) return -1;
    pthread_once(&iq2xxs_once, iq2xxs_index_init);
    if (!iq2xxs_index.neighbours) return -1;
    int8_t L[32] = {0};
    for (int64_t b = 0; b < k / QK_IQ; ++b) iq2_xxs_block(x + b * QK_IQ, qw + b * QK_IQ, y + b, L);
    return 0;
}

void qk_from_float_iq2_xxs(const qk_kernels *kk, const float *x, void *y, int64_t n, const float *qw) {
    if (qf_quantize_row_iq2_xxs(x, (block_iq2_xxs *)y, n, qw) != 0) memset(y, 0, (size_t)(n / QK_IQ) * sizeof(block_iq2_xxs));
}
