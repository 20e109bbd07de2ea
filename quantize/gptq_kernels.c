/* gptq_kernels.c - C -= A B with a fixed per-element fma chain (gptq_kernels.h).
 *
 * The fast path walks K in chunks (KC rows of B stay in cache), N in panels
 * of NV vectors and M in groups of MR rows: an MR x NV tile of C lives in
 * registers while the chunk's k run in order. Columns left over after the
 * panels go one vector at a time, the last few scalar; every path applies
 * the same fma chain, so they all agree with the reference.
 */
#include "gptq_kernels.h"

#include <math.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#define KC 256 /* rows of B per pass */

void qf_gemm_sub_f32_ref(float *C, int64_t ldc, const float *A, int64_t lda, const float *B, int64_t ldb, int64_t M,
                         int64_t N, int64_t K) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float c = C[i * ldc + j];
            for (int64_t k = 0; k < K; k++) c = fmaf(-A[i * lda + k], B[k * ldb + j], c);
            C[i * ldc + j] = c;
        }
}

void qf_gemm_sub_f64_ref(double *C, int64_t ldc, const double *A, int64_t lda, const double *B, int64_t ldb,
                         int64_t M, int64_t N, int64_t K) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double c = C[i * ldc + j];
            for (int64_t k = 0; k < K; k++) c = fma(-A[i * lda + k], B[k * ldb + j], c);
            C[i * ldc + j] = c;
        }
}

/* The vector type V of VL lanes of T and its operations; an MR x NV register
 * tile; GEMM_SUB(name, T, fma) defines name() over them. */
#if defined(__AVX512F__)
#define NV 4
#define MR 6
#define VF __m512
#define VF_L 16
#define VF_LOAD _mm512_loadu_ps
#define VF_STORE _mm512_storeu_ps
#define VF_SET1 _mm512_set1_ps
#define VF_FNMADD _mm512_fnmadd_ps
#define VD __m512d
#define VD_L 8
#define VD_LOAD _mm512_loadu_pd
#define VD_STORE _mm512_storeu_pd
#define VD_SET1 _mm512_set1_pd
#define VD_FNMADD _mm512_fnmadd_pd
#elif defined(__AVX2__) && defined(__FMA__)
#define NV 2
#define MR 4
#define VF __m256
#define VF_L 8
#define VF_LOAD _mm256_loadu_ps
#define VF_STORE _mm256_storeu_ps
#define VF_SET1 _mm256_set1_ps
#define VF_FNMADD _mm256_fnmadd_ps
#define VD __m256d
#define VD_L 4
#define VD_LOAD _mm256_loadu_pd
#define VD_STORE _mm256_storeu_pd
#define VD_SET1 _mm256_set1_pd
#define VD_FNMADD _mm256_fnmadd_pd
#endif

#ifdef NV
#define UNROLL _Pragma("GCC unroll 8")
/* fnmadd(a, b, c) = -(a * b) + c rounded once = fma(-a, b, c). */
#define GEMM_SUB(name, T, V, L, LOAD, STORE, SET1, FNMADD, SFMA)                                                  \
    /* C[R x NV*L] -= A[R x K] B[K x NV*L] in registers (R <= MR, a constant once inlined). */                   \
    static inline __attribute__((always_inline)) void name##_tile_r(T *C, int64_t ldc, const T *A, int64_t lda,   \
                                                                   const T *B, int64_t ldb, int64_t K,           \
                                                                   const int R) {                                \
        V c[MR][NV];                                                                                               \
        UNROLL for (int r = 0; r < R; r++)                                                                         \
            UNROLL for (int v = 0; v < NV; v++) c[r][v] = LOAD(C + r * ldc + v * L);                              \
        for (int64_t k = 0; k < K; k++) {                                                                         \
            V b[NV];                                                                                              \
            UNROLL for (int v = 0; v < NV; v++) b[v] = LOAD(B + k * ldb + v * L);                                 \
            UNROLL for (int r = 0; r < R; r++) {                                                                   \
                const V a = SET1(A[r * lda + k]);                                                                 \
                UNROLL for (int v = 0; v < NV; v++) c[r][v] = FNMADD(a, b[v], c[r][v]);                           \
            }                                                                                                     \
        }                                                                                                         \
        UNROLL for (int r = 0; r < R; r++)                                                                         \
            UNROLL for (int v = 0; v < NV; v++) STORE(C + r * ldc + v * L, c[r][v]);                              \
    }                                                                                                             \
    static void name##_tile(T *C, int64_t ldc, const T *A, int64_t lda, const T *B, int64_t ldb, int64_t K) {    \
        name##_tile_r(C, ldc, A, lda, B, ldb, K, MR);                                                             \
    }                                                                                                             \
    static void name##_tile4(T *C, int64_t ldc, const T *A, int64_t lda, const T *B, int64_t ldb, int64_t K) {   \
        name##_tile_r(C, ldc, A, lda, B, ldb, K, 4);                                                              \
    }                                                                                                             \
    static void name##_tile2(T *C, int64_t ldc, const T *A, int64_t lda, const T *B, int64_t ldb, int64_t K) {   \
        name##_tile_r(C, ldc, A, lda, B, ldb, K, 2);                                                              \
    }                                                                                                             \
    static void name##_tile1(T *C, int64_t ldc, const T *A, int64_t lda, const T *B, int64_t ldb, int64_t K) {   \
        name##_tile_r(C, ldc, A, lda, B, ldb, K, 1);                                                              \
    }                                                                                                             \
    /* One row, columns [j, N): vectors, then scalars. */                                                         \
    static void name##_row(T *C, const T *A, const T *B, int64_t ldb, int64_t j, int64_t N, int64_t K) {          \
        for (; j + L <= N; j += L) {                                                                              \
            V c = LOAD(C + j);                                                                                    \
            for (int64_t k = 0; k < K; k++) c = FNMADD(SET1(A[k]), LOAD(B + k * ldb + j), c);                     \
            STORE(C + j, c);                                                                                      \
        }                                                                                                         \
        for (; j < N; j++) {                                                                                      \
            T c = C[j];                                                                                           \
            for (int64_t k = 0; k < K; k++) c = SFMA(-A[k], B[k * ldb + j], c);                                   \
            C[j] = c;                                                                                             \
        }                                                                                                         \
    }                                                                                                             \
    void name(T *C, int64_t ldc, const T *A, int64_t lda, const T *B, int64_t ldb, int64_t M, int64_t N,         \
              int64_t K) {                                                                                        \
        const int64_t P = NV * L, Np = N / P * P;                                                                 \
        _Alignas(64) T pk[KC * NV * L]; /* a panel of B, packed when B's rows are far apart */                    \
        const int pack = M >= 2 * MR && ldb > 4 * P; /* rows far apart, and reused by several tiles */           \
        for (int64_t k0 = 0; k0 < K; k0 += KC) {                                                                  \
            const int64_t kc = K - k0 < KC ? K - k0 : KC;                                                         \
            const T *Ak = A + k0, *Bk = B + k0 * ldb;                                                             \
            for (int64_t j = 0; j < Np; j += P) {                                                                 \
                const T *Bp = Bk + j;                                                                             \
                int64_t lb = ldb;                                                                                 \
                if (pack) {                                                                                       \
                    for (int64_t k = 0; k < kc; k++)                                                              \
                        UNROLL for (int v = 0; v < NV; v++) STORE(pk + k * P + v * L, LOAD(Bp + k * ldb + v * L)); \
                    Bp = pk, lb = P;                                                                              \
                }                                                                                                 \
                int64_t i = 0;                                                                                    \
                for (; i + MR <= M; i += MR) name##_tile(C + i * ldc + j, ldc, Ak + i * lda, lda, Bp, lb, kc);    \
                for (; i + 4 <= M; i += 4) name##_tile4(C + i * ldc + j, ldc, Ak + i * lda, lda, Bp, lb, kc);     \
                for (; i + 2 <= M; i += 2) name##_tile2(C + i * ldc + j, ldc, Ak + i * lda, lda, Bp, lb, kc);     \
                for (; i < M; i++) name##_tile1(C + i * ldc + j, ldc, Ak + i * lda, lda, Bp, lb, kc);             \
            }                                                                                                     \
            if (Np < N)                                                                                           \
                for (int64_t i = 0; i < M; i++) name##_row(C + i * ldc, Ak + i * lda, Bk, ldb, Np, N, kc);        \
        }                                                                                                         \
    }

GEMM_SUB(qf_gemm_sub_f32, float, VF, VF_L, VF_LOAD, VF_STORE, VF_SET1, VF_FNMADD, fmaf)
GEMM_SUB(qf_gemm_sub_f64, double, VD, VD_L, VD_LOAD, VD_STORE, VD_SET1, VD_FNMADD, fma)

#else
void qf_gemm_sub_f32(float *C, int64_t ldc, const float *A, int64_t lda, const float *B, int64_t ldb, int64_t M,
                     int64_t N, int64_t K) {
    qf_gemm_sub_f32_ref(C, ldc, A, lda, B, ldb, M, N, K);
}
void qf_gemm_sub_f64(double *C, int64_t ldc, const double *A, int64_t lda, const double *B, int64_t ldb, int64_t M,
                     int64_t N, int64_t K) {
    qf_gemm_sub_f64_ref(C, ldc, A, lda, B, ldb, M, N, K);
}
#endif
