/* Shared by the two SGEMM files: matmul.c (packed, any size) and matmul_small.c (few rows).
 * Internal to the kernels; Python sees only alpha_sgemm. */
#ifndef ALPHA_MATMUL_H
#define ALPHA_MATMUL_H

#include "alpha.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX__)
#include <immintrin.h>
#endif

/* One vector register, for the few-rows path. */
#if defined(__AVX512F__)
typedef __m512 vf_t;
#define VW 16
#define V_LOAD _mm512_loadu_ps
#define V_STORE _mm512_storeu_ps
#define V_SET1 _mm512_set1_ps
#define V_ZERO _mm512_setzero_ps
#define V_FMA _mm512_fmadd_ps
#define V_ADD _mm512_add_ps
#elif defined(__AVX2__) && defined(__FMA__)
typedef __m256 vf_t;
#define VW 8
#define V_LOAD _mm256_loadu_ps
#define V_STORE _mm256_storeu_ps
#define V_SET1 _mm256_set1_ps
#define V_ZERO _mm256_setzero_ps
#define V_FMA _mm256_fmadd_ps
#define V_ADD _mm256_add_ps
#else
typedef float vf_t;
#define VW 1
#define V_LOAD(p) (*(p))
#define V_STORE(p, v) (*(p) = (v))
#define V_SET1(x) (x)
#define V_ZERO() 0.0f
#define V_FMA fmaf
#define V_ADD(x, y) ((x) + (y))
#endif

/* The pairwise sum of a vector's lanes: lane l adds lane l + VW/2, then l + VW/4, ... */
static inline float v_hsum(vf_t v) {
#if VW == 1
    return v;
#else
#if VW == 16
    __m256 x = _mm256_add_ps(_mm512_castps512_ps256(v),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
#else
    __m256 x = v;
#endif
    __m128 y = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    y = _mm_add_ps(y, _mm_movehl_ps(y, y));
    y = _mm_add_ss(y, _mm_shuffle_ps(y, y, 1));
    return _mm_cvtss_f32(y);
#endif
}

/* One product: C = alpha * op(A) @ op(B) (+ C when accumulate); strides in elements. */
typedef struct {
    int64_t M, N, K;
    const float *a;
    int64_t a_rs, a_cs;
    const float *b;
    int64_t b_rs, b_cs;
    float *c;
    int64_t ldc;
    float alpha;
    int accumulate;
} gemm_t;

static inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static inline void zero_or_keep(const gemm_t *g) {
    /* K == 0: op(A) @ op(B) is all zeros */
    if (g->accumulate) return;
    for (int64_t i = 0; i < g->M; i++) memset(g->c + i * g->ldc, 0, g->N * sizeof(float));
}

static inline float *alloc_floats(int64_t n) {
    size_t bytes = ((size_t)n * sizeof(float) + 63) / 64 * 64;
    return (float *)aligned_alloc(64, bytes ? bytes : 64);
}

#define SMALL_M 4

/* C for M <= SMALL_M rows when B is contiguous along n (b_cs == 1) or along k (b_rs == 1). */
void alpha_gemm_small(const gemm_t *g, int threads);

#endif
