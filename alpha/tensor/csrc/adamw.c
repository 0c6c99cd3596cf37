/* AdamW, in place over flat f32 buffers (llm.c's one-loop optimizer). The bias corrections are
 * computed once in float64; the per-element math is f32 (the reference's formula, within f32
 * rounding), which keeps the loop cheap enough to run at memory speed. */
#include "alpha.h"

#include <math.h>

#define PIECE 16384

typedef struct {
    float *param, *m, *v;
    const float *grad;
    float lr, b1, b2, eps, wd, ic1, ic2, gs;
    int64_t n;
} adamw_ctx;

static void adamw_span(float *restrict param, float *restrict m, float *restrict v,
                       const float *restrict grad, const adamw_ctx *c, int64_t n) {
    float lr = c->lr, b1 = c->b1, b2 = c->b2, eps = c->eps, wd = c->wd;
    float ic1 = c->ic1, ic2 = c->ic2, gs = c->gs;
    float ob1 = 1.0f - b1, ob2 = 1.0f - b2;
    for (int64_t i = 0; i < n; i++) {
        float g = grad[i] * gs;
        float mi = b1 * m[i] + ob1 * g;
        float vi = b2 * v[i] + ob2 * g * g;
        float p = param[i];
        m[i] = mi;
        v[i] = vi;
        param[i] = p - lr * ((mi * ic1) / (sqrtf(vi * ic2) + eps) + wd * p);
    }
}

static void adamw_task(void *vctx, int64_t begin, int64_t end) {
    adamw_ctx *c = (adamw_ctx *)vctx;
    int64_t i0 = begin * PIECE;
    int64_t e = end * PIECE < c->n ? end * PIECE : c->n;
    adamw_span(c->param + i0, c->m + i0, c->v + i0, c->grad + i0, c, e - i0);
}

void adamw_step(float *param, const float *grad, float *m, float *v, int64_t n, double lr,
                double beta1, double beta2, double eps, double weight_decay, int64_t step,
                double grad_scale) {
    adamw_ctx c = {param, m, v, grad, (float)lr, (float)beta1, (float)beta2, (float)eps,
                   (float)weight_decay, (float)(1.0 / (1.0 - pow(beta1, (double)step))),
                   (float)(1.0 / (1.0 - pow(beta2, (double)step))), (float)grad_scale, n};
    alpha_parallel_for((n + PIECE - 1) / PIECE, 2, adamw_task, &c);
}
