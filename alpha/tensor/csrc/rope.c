/* Rotary position embedding (rope) on packed qkv rows, forward and backward.
 *
 * A row is [q | k | v] of width 3C, C = nh * hs. In q and k, head h's pairs are the half-split
 * ones of GPT-NeoX / LLaMA: (x_i, x_{i+hs/2}) for i < hs/2, turned by the angle p * f_i of the
 * row's position p; cos and sin come from tables (L, hs/2) built once on the host, so every
 * backend rotates by the same f32 numbers. v is copied (forward) or passed through (backward).
 * Rows are independent: the result does not depend on the thread count.
 */
#include "alpha.h"

#include <string.h>

typedef struct {
    float *out;
    const float *x;
    const int32_t *pos;
    const float *cos, *sin;
    int64_t npos, C, hs, backward;
} rope_ctx;

static void rope_task(void *vctx, int64_t begin, int64_t end) {
    rope_ctx *c = (rope_ctx *)vctx;
    int64_t C = c->C, hs = c->hs, half = hs / 2;
    for (int64_t n = begin; n < end; n++) {
        const float *x = c->x + n * 3 * C;
        float *y = c->out + n * 3 * C;
        int64_t p = c->pos[n % c->npos];
        const float *cs = c->cos + p * half, *sn = c->sin + p * half;
        for (int64_t h0 = 0; h0 < 2 * C; h0 += hs) { /* every head of q, then of k */
            const float *a = x + h0, *b = a + half;
            float *ya = y + h0, *yb = ya + half;
            if (!c->backward) {
                for (int64_t i = 0; i < half; i++) {
                    ya[i] = a[i] * cs[i] - b[i] * sn[i];
                    yb[i] = b[i] * cs[i] + a[i] * sn[i];
                }
            } else { /* the transposed rotation, added: dx += R^T dy */
                for (int64_t i = 0; i < half; i++) {
                    ya[i] += a[i] * cs[i] + b[i] * sn[i];
                    yb[i] += b[i] * cs[i] - a[i] * sn[i];
                }
            }
        }
        if (!c->backward)
            memcpy(y + 2 * C, x + 2 * C, (size_t)C * sizeof(float));
        else
            for (int64_t j = 2 * C; j < 3 * C; j++) y[j] += x[j];
    }
}

/* out (N, 3C) from x (N, 3C); row n sits at position pos[n % npos] (npos = T when positions
 * are shared by every sequence, N when each row has its own); cos, sin (L, hs/2). */
void rope_forward(float *out, const float *x, const int32_t *pos, int64_t npos, const float *cos,
                  const float *sin, int64_t N, int64_t C, int64_t nh) {
    rope_ctx c = {out, x, pos, cos, sin, npos, C, C / nh, 0};
    alpha_parallel_for(N, 64, rope_task, &c);
}

/* dx (N, 3C) += R^T dout: q and k rotated back by their positions, v's gradient added as is. */
void rope_backward(float *dx, const float *dout, const int32_t *pos, int64_t npos,
                   const float *cos, const float *sin, int64_t N, int64_t C, int64_t nh) {
    rope_ctx c = {dx, dout, pos, cos, sin, npos, C, C / nh, 1};
    alpha_parallel_for(N, 64, rope_task, &c);
}
