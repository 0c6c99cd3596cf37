/* Machine probes for the kernel benchmark: the FMA peak and the copy bandwidth.
 *
 * alpha_fma_peak runs `tasks` chunks of `iters` iterations, each iteration 12 independent vector
 * FMAs (enough to cover the FMA latency on every x86 core we know), on the thread pool; it returns
 * the number of floating-point operations done (2 per lane per FMA) so Python can divide by the
 * time. alpha_copy_bandwidth copies n floats with all threads (bytes moved = 8 n: read + write).
 * These measure the machine, not Alpha: they are only used to put kernel timings in proportion.
 */
#include "alpha.h"

#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>
typedef __m512 vec_t;
#define VLANES 16
#define VSET1 _mm512_set1_ps
#define VFMA _mm512_fmadd_ps
#define VADD _mm512_add_ps
#define VSUM _mm512_reduce_add_ps
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
typedef __m256 vec_t;
#define VLANES 8
#define VSET1 _mm256_set1_ps
#define VFMA _mm256_fmadd_ps
#define VADD _mm256_add_ps
static float VSUM(__m256 v) {
    float t[8];
    _mm256_storeu_ps(t, v);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#else
#define VLANES 1
#endif

#define NACC 12

typedef struct {
    int64_t iters;
    float sink[1024];
} peak_t;

static void peak_task(void *ctx, int64_t begin, int64_t end) {
    peak_t *p = (peak_t *)ctx;
    for (int64_t t = begin; t < end; t++) {
#if VLANES > 1
        vec_t acc[NACC];
        vec_t x = VSET1(0.999999f), y = VSET1(1e-7f);
        for (int i = 0; i < NACC; i++) acc[i] = VSET1((float)i);
        for (int64_t it = 0; it < p->iters; it++) {
#pragma GCC unroll 12
            for (int i = 0; i < NACC; i++) acc[i] = VFMA(acc[i], x, y);
        }
        for (int i = 1; i < NACC; i++) acc[0] = VADD(acc[0], acc[i]);
        p->sink[t & 1023] = VSUM(acc[0]);
#else
        float acc[NACC * 8];
        for (int i = 0; i < NACC * 8; i++) acc[i] = (float)i;
        for (int64_t it = 0; it < p->iters; it++)
            for (int i = 0; i < NACC * 8; i++) acc[i] = acc[i] * 0.999999f + 1e-7f;
        float s = 0;
        for (int i = 0; i < NACC * 8; i++) s += acc[i];
        p->sink[t & 1023] = s;
#endif
    }
}

/* Returns the flops done: tasks * iters * NACC * lanes * 2. */
double alpha_fma_peak(int64_t tasks, int64_t iters, int threaded) {
    static peak_t p;
    p.iters = iters;
    if (threaded)
        alpha_parallel_for(tasks, 1, peak_task, &p);
    else
        peak_task(&p, 0, tasks);
#if VLANES > 1
    return (double)tasks * iters * NACC * VLANES * 2;
#else
    return (double)tasks * iters * NACC * 8 * 2;
#endif
}

typedef struct {
    float *dst;
    const float *src;
} copy_t;

#define COPY_BLOCK 16384 /* floats per task item: 64 KiB */

static void copy_task(void *ctx, int64_t begin, int64_t end) {
    copy_t *p = (copy_t *)ctx;
    memcpy(p->dst + begin * COPY_BLOCK, p->src + begin * COPY_BLOCK,
           (size_t)(end - begin) * COPY_BLOCK * sizeof(float));
}

/* Copies n floats (n a multiple of 16384) from src to dst on the pool. */
void alpha_copy_bandwidth(float *dst, const float *src, int64_t n) {
    copy_t p = {dst, src};
    alpha_parallel_for(n / COPY_BLOCK, 1, copy_task, &p);
}
