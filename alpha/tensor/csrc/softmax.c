/* Softmax and log-softmax over the last dim of (N, C), forward and backward. One row per task
 * item; row sums use ALPHA_LANES fixed lanes (vectorised, same order for any thread count). */
#include "alpha.h"
#include "alpha_math.h"

#include <math.h>

typedef struct {
    float *out;
    const float *a, *b;
    int64_t C;
} sm_ctx;

static float row_max(const float *x, int64_t C) {
    float lanes[ALPHA_LANES];
    for (int l = 0; l < ALPHA_LANES; l++) lanes[l] = -INFINITY;
    int64_t i = 0;
    for (; i + ALPHA_LANES <= C; i += ALPHA_LANES)
        for (int l = 0; l < ALPHA_LANES; l++) lanes[l] = x[i + l] > lanes[l] ? x[i + l] : lanes[l];
    float m = -INFINITY;
    for (; i < C; i++) m = x[i] > m ? x[i] : m;
    for (int l = 0; l < ALPHA_LANES; l++) m = lanes[l] > m ? lanes[l] : m;
    return m;
}

static float sum_lanes(const float *a, int64_t C);

/* out[i] = exp(x[i] - m); returns the sum (fixed lanes). Two simple loops vectorise better
 * than one that exponentiates and reduces at once. */
static float exp_sum(float *out, const float *x, float m, int64_t C) {
    for (int64_t i = 0; i < C; i++) out[i] = alpha_expf(x[i] - m);
    return sum_lanes(out, C);
}

static float dot_lanes(const float *a, const float *b, int64_t C) {
    float lanes[ALPHA_LANES] = {0};
    int64_t i = 0;
    for (; i + ALPHA_LANES <= C; i += ALPHA_LANES)
        for (int l = 0; l < ALPHA_LANES; l++) lanes[l] += a[i + l] * b[i + l];
    float s = 0.0f;
    for (; i < C; i++) s += a[i] * b[i];
    for (int l = 0; l < ALPHA_LANES; l++) s += lanes[l];
    return s;
}

static float sum_lanes(const float *a, int64_t C) {
    float lanes[ALPHA_LANES] = {0};
    int64_t i = 0;
    for (; i + ALPHA_LANES <= C; i += ALPHA_LANES)
        for (int l = 0; l < ALPHA_LANES; l++) lanes[l] += a[i + l];
    float s = 0.0f;
    for (; i < C; i++) s += a[i];
    for (int l = 0; l < ALPHA_LANES; l++) s += lanes[l];
    return s;
}

static void softmax_fwd_task(void *vctx, int64_t begin, int64_t end) {
    sm_ctx *c = (sm_ctx *)vctx;
    int64_t C = c->C;
    for (int64_t r = begin; r < end; r++) {
        const float *x = c->a + r * C;
        float *o = c->out + r * C;
        float m = row_max(x, C);
        float inv = 1.0f / exp_sum(o, x, m, C);
        for (int64_t i = 0; i < C; i++) o[i] *= inv;
    }
}

static void log_softmax_fwd_task(void *vctx, int64_t begin, int64_t end) {
    sm_ctx *c = (sm_ctx *)vctx;
    int64_t C = c->C;
    for (int64_t r = begin; r < end; r++) {
        const float *x = c->a + r * C;
        float *o = c->out + r * C;
        float m = row_max(x, C);
        float shift = m + logf(alpha_sum_exp(x, m, C)); /* out may alias x */
        for (int64_t i = 0; i < C; i++) o[i] = x[i] - shift;
    }
}

/* dx += out * (dout - sum(dout * out)); a = dout, b = out */
static void softmax_bwd_task(void *vctx, int64_t begin, int64_t end) {
    sm_ctx *c = (sm_ctx *)vctx;
    int64_t C = c->C;
    for (int64_t r = begin; r < end; r++) {
        const float *dout = c->a + r * C, *y = c->b + r * C;
        float *dx = c->out + r * C;
        float s = dot_lanes(dout, y, C);
        for (int64_t i = 0; i < C; i++) dx[i] += y[i] * (dout[i] - s);
    }
}

/* dx += dout - exp(out) * sum(dout) */
static void log_softmax_bwd_task(void *vctx, int64_t begin, int64_t end) {
    sm_ctx *c = (sm_ctx *)vctx;
    int64_t C = c->C;
    for (int64_t r = begin; r < end; r++) {
        const float *dout = c->a + r * C, *y = c->b + r * C;
        float *dx = c->out + r * C;
        float s = sum_lanes(dout, C);
        for (int64_t i = 0; i < C; i++) dx[i] += dout[i] - alpha_expf(y[i]) * s;
    }
}

static int64_t row_grain(int64_t C) { return C >= 32768 ? 1 : 32768 / C; }

void softmax_forward(float *out, const float *x, int64_t N, int64_t C) {
    sm_ctx c = {out, x, NULL, C};
    alpha_parallel_for(N, row_grain(C), softmax_fwd_task, &c);
}

void softmax_backward(float *dx, const float *dout, const float *out, int64_t N, int64_t C) {
    sm_ctx c = {dx, dout, out, C};
    alpha_parallel_for(N, row_grain(C), softmax_bwd_task, &c);
}

void log_softmax_forward(float *out, const float *x, int64_t N, int64_t C) {
    sm_ctx c = {out, x, NULL, C};
    alpha_parallel_for(N, row_grain(C), log_softmax_fwd_task, &c);
}

void log_softmax_backward(float *dx, const float *dout, const float *out, int64_t N, int64_t C) {
    sm_ctx c = {dx, dout, out, C};
    alpha_parallel_for(N, row_grain(C), log_softmax_bwd_task, &c);
}
