/* Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"), in place over flat
 * f32 buffers: the update is the sign of an interpolation of the momentum and the gradient, so
 * every parameter moves by exactly lr (plus decoupled weight decay). sign(0) = 0, as torch.sign. */
#include "alpha.h"

#define PIECE 16384

typedef struct {
    float *param, *m;
    const float *grad;
    float lr, b1, b2, wd, gs;
    int64_t n;
} lion_ctx;

static void lion_task(void *vctx, int64_t begin, int64_t end) {
    const lion_ctx *c = (const lion_ctx *)vctx;
    int64_t i0 = begin * PIECE;
    int64_t e = end * PIECE < c->n ? end * PIECE : c->n;
    float lr = c->lr, b1 = c->b1, b2 = c->b2, wd = c->wd, gs = c->gs;
    for (int64_t i = i0; i < e; i++) {
        float g = c->grad[i] * gs;
        float mi = c->m[i];
        float u = b1 * mi + (1.0f - b1) * g;
        float s = (u > 0.0f) ? 1.0f : ((u < 0.0f) ? -1.0f : 0.0f);
        float p = c->param[i];
        c->param[i] = p - lr * (s + wd * p);
        c->m[i] = b2 * mi + (1.0f - b2) * g;
    }
}

void lion_step(float *param, const float *grad, float *m, int64_t n, double lr, double beta1,
               double beta2, double weight_decay, double grad_scale) {
    lion_ctx c = {param, m, grad, (float)lr, (float)beta1, (float)beta2, (float)weight_decay,
                  (float)grad_scale, n};
    alpha_parallel_for((n + PIECE - 1) / PIECE, 2, lion_task, &c);
}
