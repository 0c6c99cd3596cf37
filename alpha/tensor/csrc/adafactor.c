/* Adafactor (Shazeer & Stern 2018), one parameter tensor per call, in place. The variant of
 * fairseq / Hugging Face with relative_step=False, scale_parameter=False and no first moment:
 *   g2 = (grad * gs)^2 + eps1
 *   matrix (R, C):  row = b2 row + (1 - b2) mean_j g2;  col = b2 col + (1 - b2) mean_i g2
 *                   u = g / sqrt(row_i / mean(row) * col_j)
 *   vector (n):     v = b2 v + (1 - b2) g2;  u = g / sqrt(v)
 *   u /= max(1, rms(u) / clip);  param = param - lr * wd * param - lr * u
 * Means and the RMS accumulate in float64. Rows are independent, and so are columns (each
 * column's sum runs over the rows in order); the RMS adds per-row sums in row order: the result
 * does not depend on the thread count. */
#include "alpha.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    float *param, *row, *col;
    const float *grad;
    int64_t R, C;
    double b2, eps1, gs, rmean, scale, lr, wd;
    double *partial;  /* (R,): per-row sums of u^2 */
    float *crs;  /* (C,): 1 / sqrt(col_j) */
} ada_ctx;

/* row_i = b2 row_i + (1 - b2) * mean_j g2 */
static void ada_rows(void *vctx, int64_t begin, int64_t end) {
    ada_ctx *c = (ada_ctx *)vctx;
    for (int64_t i = begin; i < end; i++) {
        const float *g = c->grad + i * c->C;
        double s = 0.0;
        for (int64_t j = 0; j < c->C; j++) {
            float gj = (float)(g[j] * c->gs);
            s += (double)(gj * gj) + c->eps1;
        }
        c->row[i] = (float)(c->b2 * c->row[i] + (1.0 - c->b2) * (s / (double)c->C));
    }
}

/* col_j = b2 col_j + (1 - b2) * mean_i g2, for a range of columns: each column's sum runs over
 * the rows in order whichever task does it, so the split does not change a bit. */
#define COLS 64
static void ada_cols(void *vctx, int64_t begin, int64_t end) {
    ada_ctx *c = (ada_ctx *)vctx;
    int64_t j0 = begin * COLS, j1 = end * COLS < c->C ? end * COLS : c->C;
    double sums[COLS];
    for (int64_t jb = j0; jb < j1; jb += COLS) {
        int64_t w = j1 - jb < COLS ? j1 - jb : COLS;
        for (int64_t j = 0; j < w; j++) sums[j] = 0.0;
        for (int64_t i = 0; i < c->R; i++) {
            const float *g = c->grad + i * c->C + jb;
            for (int64_t j = 0; j < w; j++) {
                float gj = (float)(g[j] * c->gs);
                sums[j] += (double)(gj * gj) + c->eps1;
            }
        }
        for (int64_t j = 0; j < w; j++)
            c->col[jb + j] = (float)(c->b2 * c->col[jb + j]
                                     + (1.0 - c->b2) * (sums[j] / (double)c->R));
    }
}

/* the update of row i, unscaled: u_ij = g_ij * rsqrt(row_i / rmean) * rsqrt(col_j) */
static inline float ada_u(const ada_ctx *c, int64_t i, int64_t j, float rf) {
    float g = (float)(c->grad[i * c->C + j] * c->gs);
    return g * rf * c->crs[j];
}

static void ada_rms(void *vctx, int64_t begin, int64_t end) {
    ada_ctx *c = (ada_ctx *)vctx;
    for (int64_t i = begin; i < end; i++) {
        float rf = (float)(1.0 / sqrt(c->row[i] / c->rmean));
        double s = 0.0;
        for (int64_t j = 0; j < c->C; j++) {
            float u = ada_u(c, i, j, rf);
            s += (double)u * (double)u;
        }
        c->partial[i] = s;
    }
}

static void ada_apply(void *vctx, int64_t begin, int64_t end) {
    ada_ctx *c = (ada_ctx *)vctx;
    float lr = (float)c->lr, decay = (float)(c->lr * c->wd), scale = (float)c->scale;
    for (int64_t i = begin; i < end; i++) {
        float rf = (float)(1.0 / sqrt(c->row[i] / c->rmean));
        float *p = c->param + i * c->C;
        for (int64_t j = 0; j < c->C; j++) {
            float u = ada_u(c, i, j, rf) * scale;
            p[j] = p[j] - decay * p[j] - lr * u;
        }
    }
}

/* The unfactored case, v and u over n values (one row of the task split). */
static void vec_moment(void *vctx, int64_t begin, int64_t end) {
    ada_ctx *c = (ada_ctx *)vctx;
    for (int64_t i = begin; i < end; i++) {
        float g = (float)(c->grad[i] * c->gs);
        double g2 = (double)(g * g) + c->eps1;
        c->row[i] = (float)(c->b2 * c->row[i] + (1.0 - c->b2) * g2);
        float u = g / sqrtf(c->row[i]);
        c->partial[i] = (double)u * (double)u;
    }
}

static void vec_apply(void *vctx, int64_t begin, int64_t end) {
    ada_ctx *c = (ada_ctx *)vctx;
    float lr = (float)c->lr, decay = (float)(c->lr * c->wd), scale = (float)c->scale;
    for (int64_t i = begin; i < end; i++) {
        float g = (float)(c->grad[i] * c->gs);
        float u = g / sqrtf(c->row[i]) * scale;
        c->param[i] = c->param[i] - decay * c->param[i] - lr * u;
    }
}

/* col == NULL: the unfactored case over R * C values, `row` holding v. Returns 0, or -1 when the
 * work buffers cannot be allocated (nothing is written then). */
int adafactor_step(float *param, const float *grad, float *row, float *col, int64_t R,
                   int64_t C, double lr, double beta2, double eps1, double clip,
                   double weight_decay, double grad_scale) {
    int64_t n = R * C;
    double *partial = malloc(sizeof(double) * (size_t)(col ? R : n));
    float *crs = col ? malloc(sizeof(float) * (size_t)C) : NULL;
    if (!partial || (col && !crs)) {
        free(partial);
        free(crs);
        return -1;
    }
    ada_ctx c = {param, row, col, grad, R, C, beta2, eps1, grad_scale, 0.0, 1.0, lr,
                 weight_decay, partial, crs};
    double ss = 0.0;
    if (col) {
        alpha_parallel_for(R, 16, ada_rows, &c);
        alpha_parallel_for((C + COLS - 1) / COLS, 1, ada_cols, &c);
        for (int64_t j = 0; j < C; j++) crs[j] = 1.0f / sqrtf(col[j]);
        double rs = 0.0;
        for (int64_t i = 0; i < R; i++) rs += row[i];
        c.rmean = rs / (double)R;
        alpha_parallel_for(R, 16, ada_rms, &c);
        for (int64_t i = 0; i < R; i++) ss += partial[i];
    } else {
        alpha_parallel_for(n, 16384, vec_moment, &c);
        for (int64_t i = 0; i < n; i++) ss += partial[i];
    }
    double rms = sqrt(ss / (double)n);
    c.scale = 1.0 / fmax(1.0, rms / clip);
    if (col)
        alpha_parallel_for(R, 16, ada_apply, &c);
    else
        alpha_parallel_for(n, 16384, vec_apply, &c);
    free(partial);
    free(crs);
    return 0;
}
