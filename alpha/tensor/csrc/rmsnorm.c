/* RMSNorm over the last dim of (N, C): forward saves rstd; backward adds into dx and dweight.
 * Rows need not be contiguous: row r starts at (r / inner) * so + (r % inner) * si elements
 * (one layout shared by x, out, dx and dout; the last dim is contiguous), so qk-norm normalises
 * the heads inside a packed qkv (rows (B*T, H) at strides (3C, hs)) without copies.
 *
 *   out = x * rstd * w,   rstd = 1 / sqrt(mean(x^2) + eps)
 *   dx += rstd * (dn - n * mean(dn * n)),   n = x * rstd,  dn = dout * w
 *   dw += sum over rows of dout * n
 *
 * Determinism of dweight: as in layernorm.c, rows are cut into fixed blocks of RMS_BLOCK rows
 * whose partial sums go to their own slot, added afterwards in block order; the boundaries
 * depend only on N, never on the thread count.
 */
#include "alpha.h"
#include "alpha_math.h"

#include <math.h>
#include <stdlib.h>

#define RMS_BLOCK 32

typedef struct {
    int64_t inner, so, si;
} row_layout;

static inline int64_t row_off(const row_layout *L, int64_t r) {
    return (r / L->inner) * L->so + (r % L->inner) * L->si;
}

typedef struct {
    float *out, *rstd;
    const float *x, *w;
    float eps;
    int64_t C;
    row_layout L;
} rms_fwd_ctx;

/* sum of x[i] * y[i] in ALPHA_LANES fixed lanes (the same order for every row and thread) */
static float dot_lanes(const float *restrict x, const float *restrict y, int64_t C) {
    float lanes[ALPHA_LANES] = {0};
    int64_t i = 0;
    for (; i + ALPHA_LANES <= C; i += ALPHA_LANES)
        for (int l = 0; l < ALPHA_LANES; l++) lanes[l] += x[i + l] * y[i + l];
    float s = 0.0f;
    for (; i < C; i++) s += x[i] * y[i];
    for (int l = 0; l < ALPHA_LANES; l++) s += lanes[l];
    return s;
}

static void rms_fwd_task(void *vctx, int64_t begin, int64_t end) {
    rms_fwd_ctx *c = (rms_fwd_ctx *)vctx;
    int64_t C = c->C;
    for (int64_t r = begin; r < end; r++) {
        int64_t off = row_off(&c->L, r);
        const float *x = c->x + off;
        float *o = c->out + off;
        float rs = 1.0f / sqrtf(dot_lanes(x, x, C) / (float)C + c->eps);
        for (int64_t j = 0; j < C; j++) o[j] = x[j] * rs * c->w[j];
        c->rstd[r] = rs;
    }
}

/* out = rmsnorm of x, N rows of C laid out by (inner, so, si); rstd (N) contiguous, saved. */
void rmsnorm_forward(float *out, float *rstd, const float *x, const float *weight, int64_t N,
                     int64_t C, int64_t inner, int64_t so, int64_t si, float eps) {
    rms_fwd_ctx c = {out, rstd, x, weight, eps, C, {inner, so, si}};
    alpha_parallel_for(N, C >= 32768 ? 1 : 32768 / C, rms_fwd_task, &c);
}

typedef struct {
    float *dx, *partial; /* partial: (blocks, C) dweight per block */
    const float *dout, *x, *w, *rstd;
    int64_t N, C;
    row_layout L;
    float *dweight;
    int64_t blocks;
} rms_bwd_ctx;

static void rms_bwd_row(float *restrict dx, float *restrict pw, const float *restrict dout,
                        const float *restrict x, const float *restrict w, float rs, int64_t C) {
    float lanes[ALPHA_LANES] = {0};
    int64_t i = 0;
    for (; i + ALPHA_LANES <= C; i += ALPHA_LANES)
        for (int l = 0; l < ALPHA_LANES; l++)
            lanes[l] += w[i + l] * dout[i + l] * (x[i + l] * rs);
    float s = 0.0f;
    for (; i < C; i++) s += w[i] * dout[i] * (x[i] * rs);
    for (int l = 0; l < ALPHA_LANES; l++) s += lanes[l];
    float mean_dn = s / (float)C;
    for (int64_t j = 0; j < C; j++) {
        float norm = x[j] * rs;
        dx[j] += (w[j] * dout[j] - norm * mean_dn) * rs;
        pw[j] += norm * dout[j];
    }
}

static void rms_bwd_task(void *vctx, int64_t begin, int64_t end) {
    rms_bwd_ctx *c = (rms_bwd_ctx *)vctx;
    int64_t C = c->C;
    for (int64_t blk = begin; blk < end; blk++) {
        float *pw = c->partial + blk * C;
        for (int64_t j = 0; j < C; j++) pw[j] = 0.0f;
        int64_t r1 = (blk + 1) * RMS_BLOCK < c->N ? (blk + 1) * RMS_BLOCK : c->N;
        for (int64_t r = blk * RMS_BLOCK; r < r1; r++) {
            int64_t off = row_off(&c->L, r);
            rms_bwd_row(c->dx + off, pw, c->dout + off, c->x + off, c->w, c->rstd[r], C);
        }
    }
}

static void rms_combine_task(void *vctx, int64_t begin, int64_t end) {
    rms_bwd_ctx *c = (rms_bwd_ctx *)vctx;
    for (int64_t j = begin; j < end; j++) {
        double s = 0.0;
        for (int64_t blk = 0; blk < c->blocks; blk++) s += c->partial[blk * c->C + j];
        c->dweight[j] += (float)s;
    }
}

/* Adds into dx and dweight (C); dx, dout, x laid out as in the forward. Returns 0, or -1 if
 * out of memory. */
int rmsnorm_backward(float *dx, float *dweight, const float *dout, const float *x,
                     const float *weight, const float *rstd, int64_t N, int64_t C, int64_t inner,
                     int64_t so, int64_t si) {
    int64_t blocks = (N + RMS_BLOCK - 1) / RMS_BLOCK;
    float *partial = (float *)malloc((size_t)(blocks * C) * sizeof(float));
    if (!partial) return -1;
    rms_bwd_ctx c = {dx, partial, dout, x, weight, rstd, N, C, {inner, so, si}, dweight, blocks};
    int64_t per_block = RMS_BLOCK * C;
    alpha_parallel_for(blocks, per_block >= 32768 ? 1 : 32768 / per_block, rms_bwd_task, &c);
    alpha_parallel_for(C, blocks >= 512 ? 64 : 32768 / blocks, rms_combine_task, &c);
    free(partial);
    return 0;
}
