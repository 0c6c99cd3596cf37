/* Philox4x32-10, the C twin of alpha/core/rng.py (bit-identical; tested against it).
 * Word w of a stream is word (w % 4) of block w / 4, encrypted from counter
 * (block & 0xffffffff, block >> 32, 0, 0). Normal pairs use float64 libm math in the same
 * operation order as the Python reference, with floating-point contraction off so no FMA
 * changes a rounding. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "alpha.h"

#include <math.h>

#define PIECE 4096 /* blocks (of 4 words) per task */

static inline void philox(uint64_t block, uint32_t k0, uint32_t k1, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)block, c1 = (uint32_t)(block >> 32), c2 = 0, c3 = 0;
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0;
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

typedef struct {
    float *out;
    uint32_t k0, k1;
    uint64_t position;
    int64_t n; /* outputs */
    double mean, std;
} rng_ctx;

/* out[i] = the uniform of word position + i, i in [0, n) */
static void uniform_task(void *vctx, int64_t begin, int64_t end) {
    rng_ctx *c = (rng_ctx *)vctx;
    int64_t i0 = begin * PIECE * 4, i1 = end * PIECE * 4 < c->n ? end * PIECE * 4 : c->n;
    uint32_t w[4];
    uint64_t cur = UINT64_MAX;
    for (int64_t i = i0; i < i1; i++) {
        uint64_t pos = c->position + (uint64_t)i;
        if (pos / 4 != cur) {
            cur = pos / 4;
            philox(cur, c->k0, c->k1, w);
        }
        c->out[i] = (float)((double)(w[pos % 4] >> 8) * (1.0 / 16777216.0));
    }
}

/* out[i] = uniform from word position + i: (word >> 8) * 2^-24. */
void rng_uniform(float *out, int64_t n, uint32_t k0, uint32_t k1, uint64_t position) {
    rng_ctx c = {out, k0, k1, position, n, 0.0, 0.0};
    alpha_parallel_for((n + 4 * PIECE - 1) / (4 * PIECE), 1, uniform_task, &c);
}

/* Word `position` of the stream with key (k0, k1) (one draw: the sampler's, sample.c). */
uint32_t rng_word(uint32_t k0, uint32_t k1, uint64_t position) {
    uint32_t w[4];
    philox(position / 4, k0, k1, w);
    return w[position % 4];
}

static inline uint32_t word_at(uint32_t k0, uint32_t k1, uint64_t pos, uint64_t *cur,
                               uint32_t w[4]) {
    if (pos / 4 != *cur) {
        *cur = pos / 4;
        philox(*cur, k0, k1, w);
    }
    return w[pos % 4];
}

/* pairs [begin, end): pair j uses words position + 2j, position + 2j + 1 */
static void normal_task(void *vctx, int64_t begin, int64_t end) {
    rng_ctx c = *(rng_ctx *)vctx;
    int64_t pairs = (c.n + 1) / 2;
    int64_t j0 = begin * PIECE, j1 = end * PIECE < pairs ? end * PIECE : pairs;
    uint32_t w[4];
    uint64_t cur = UINT64_MAX;
    for (int64_t j = j0; j < j1; j++) {
        uint64_t pos = c.position + 2 * (uint64_t)j;
        uint32_t w0 = word_at(c.k0, c.k1, pos, &cur, w);
        uint32_t w1 = word_at(c.k0, c.k1, pos + 1, &cur, w);
        double u1 = ((double)(w0 >> 8) + 1.0) * (1.0 / 16777216.0);
        double u2 = (double)(w1 >> 8) * (1.0 / 16777216.0);
        double r = sqrt(-2.0 * log(u1));
        double a = 2.0 * M_PI * u2;
        double z0 = r * cos(a);
        c.out[2 * j] = (float)(c.mean + c.std * z0);
        if (2 * j + 1 < c.n) {
            double z1 = r * sin(a);
            c.out[2 * j + 1] = (float)(c.mean + c.std * z1);
        }
    }
}

/* out[i] = mean + std * normal i, from words position .. position + 2 ceil(n / 2) - 1. */
void rng_normal(float *out, int64_t n, uint32_t k0, uint32_t k1, uint64_t position, double mean,
                double std) {
    rng_ctx c = {out, k0, k1, position, n, mean, std};
    alpha_parallel_for(((n + 1) / 2 + PIECE - 1) / PIECE, 1, normal_task, &c);
}
