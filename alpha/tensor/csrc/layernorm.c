/* LayerNorm over the last dim of (N, C): forward saves mean and rstd; backward adds into dx,
 * dweight and dbias.
 *
 * Determinism of dweight/dbias: rows are cut into fixed blocks of LN_BLOCK rows; each block's
 * partial sums (rows in order) go to their own slot, and the slots are then added in block
 * order. Block boundaries depend only on N, never on the thread count.
 */
#include "alpha.h"
#include "alpha_math.h"

#include <math.h>
#include <stdlib.h>

#define LN_BLOCK 32

typedef struct {
    float *out, *mean, *rstd;
    const float *x, *w, *b;
    float eps;
    int64_t C;
} ln_fwd_ctx;

static void ln_fwd_task(void *vctx, int64_t begin, int64_t end) {
    ln_fwd_ctx *c = (ln_fwd_ctx *)vctx;
    int64_t C = c->C;
    for (int64_t r = begin; r < end; r++) {
        const float *x = c->x + r * C;
        float *o = c->out + r * C;
        float lanes[ALPHA_LANES] = {0};
        int64_t i = 0;
        for (; i + ALPHA_LANES <= C; i += ALPHA_LANES)
            for (int l = 0; l < ALPHA_LANES; l++) lanes[l] += x[i + l];
        float s = 0.0f;
        for (; i < C; i++) s += x[i];
        for (int l = 0; l < ALPHA_LANES; l++) s += lanes[l];
        float m = s / (float)C;
        float vl[ALPHA_LANES] = {0};
        i = 0;
        for (; i + ALPHA_LANES <= C; i += ALPHA_LANES)
            for (int l = 0; l < ALPHA_LANES; l++) {
                float d = x[i + l] - m;
                vl[l] += d * d;
            }
        float v = 0.0f;
        for (; i < C; i++) v += (x[i] - m) * (x[i] - m);
        for (int l = 0; l < ALPHA_LANES; l++) v += vl[l];
        float rs = 1.0f / sqrtf(v / (float)C + c->eps);
        const float *w = c->w, *b = c->b;
        if (b) {
            for (int64_t j = 0; j < C; j++) o[j] = (x[j] - m) * rs * w[j] + b[j];
        } else {
            for (int64_t j = 0; j < C; j++) o[j] = (x[j] - m) * rs * w[j];
        }
        c->mean[r] = m;
        c->rstd[r] = rs;
    }
}

/* out = (x - mean) * rstd * weight + bias; bias may be NULL. */
void layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *weight,
                       const float *bias, int64_t N, int64_t C, float eps) {
    ln_fwd_ctx c = {out, mean, rstd, x, weight, bias, eps, C};
    alpha_parallel_for(N, C >= 32768 ? 1 : 32768 / C, ln_fwd_task, &c);
}

typedef struct {
    float *dx, *partial; /* partial: (blocks, 2, C) = dweight, dbias per block */
    const float *dout, *x, *w, *mean, *rstd;
    int64_t N, C;
    float *dweight, *dbias;
    int64_t blocks;
} ln_bwd_ctx;

/* One row: dx += ..., and the row's terms added into the block partials pw, pb. */
static void ln_bwd_row(float *restrict dx, float *restrict pw, float *restrict pb,
                       const float *restrict dout, const float *restrict x,
                       const float *restrict w, float m, float rs, int64_t C) {
    float l1[ALPHA_LANES] = {0}, l2[ALPHA_LANES] = {0};
    int64_t i = 0;
    for (; i + ALPHA_LANES <= C; i += ALPHA_LANES)
        for (int l = 0; l < ALPHA_LANES; l++) {
            float norm = (x[i + l] - m) * rs;
            float dnorm = w[i + l] * dout[i + l];
            l1[l] += dnorm;
            l2[l] += dnorm * norm;
        }
    float s1 = 0.0f, s2 = 0.0f;
    for (; i < C; i++) {
        float norm = (x[i] - m) * rs;
        float dnorm = w[i] * dout[i];
        s1 += dnorm;
        s2 += dnorm * norm;
    }
    for (int l = 0; l < ALPHA_LANES; l++) {
        s1 += l1[l];
        s2 += l2[l];
    }
    float mean_d = s1 / (float)C, mean_dn = s2 / (float)C;
    for (int64_t j = 0; j < C; j++) {
        float norm = (x[j] - m) * rs;
        float dnorm = w[j] * dout[j];
        dx[j] += (dnorm - mean_d - norm * mean_dn) * rs;
        pw[j] += norm * dout[j];
        pb[j] += dout[j];
    }
}

static void ln_bwd_task(void *vctx, int64_t begin, int64_t end) {
    ln_bwd_ctx *c = (ln_bwd_ctx *)vctx;
    int64_t C = c->C;
    for (int64_t blk = begin; blk < end; blk++) {
        float *pw = c->partial + blk * 2 * C, *pb = pw + C;
        for (int64_t j = 0; j < C; j++) pw[j] = pb[j] = 0.0f;
        int64_t r1 = (blk + 1) * LN_BLOCK < c->N ? (blk + 1) * LN_BLOCK : c->N;
        for (int64_t r = blk * LN_BLOCK; r < r1; r++)
            ln_bwd_row(c->dx + r * C, pw, pb, c->dout + r * C, c->x + r * C, c->w, c->mean[r],
                       c->rstd[r], C);
    }
}

static void ln_combine_task(void *vctx, int64_t begin, int64_t end) {
    ln_bwd_ctx *c = (ln_bwd_ctx *)vctx;
    int64_t C = c->C;
    double sw[256], sb[256];
    for (int64_t j0 = begin; j0 < end; j0 += 256) {
        int64_t w = end - j0 < 256 ? end - j0 : 256;
        for (int64_t j = 0; j < w; j++) sw[j] = sb[j] = 0.0;
        for (int64_t blk = 0; blk < c->blocks; blk++) {
            const float *pw = c->partial + blk * 2 * C + j0, *pb = pw + C;
            for (int64_t j = 0; j < w; j++) {
                sw[j] += pw[j];
                sb[j] += pb[j];
            }
        }
        for (int64_t j = 0; j < w; j++) c->dweight[j0 + j] += (float)sw[j];
        if (c->dbias)
            for (int64_t j = 0; j < w; j++) c->dbias[j0 + j] += (float)sb[j];
    }
}

/* Adds into dx (N, C), dweight (C), dbias (C, may be NULL). Returns 0, or -1 if out of memory. */
int layernorm_backward(float *dx, float *dweight, float *dbias, const float *dout, const float *x,
                       const float *weight, const float *mean, const float *rstd, int64_t N,
                       int64_t C) {
    int64_t blocks = (N + LN_BLOCK - 1) / LN_BLOCK;
    float *partial = (float *)malloc((size_t)(blocks * 2 * C) * sizeof(float));
    if (!partial) return -1;
    ln_bwd_ctx c = {dx, partial, dout, x, weight, mean, rstd, N, C, dweight, dbias, blocks};
    int64_t per_block = LN_BLOCK * C;
    alpha_parallel_for(blocks, per_block >= 32768 ? 1 : 32768 / per_block, ln_bwd_task, &c);
    alpha_parallel_for(C, blocks >= 512 ? 64 : 32768 / blocks, ln_combine_task, &c);
    free(partial);
    return 0;
}
