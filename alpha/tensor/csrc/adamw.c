/* AdamW, in place over flat f32 buffers (llm.c's one-loop optimizer); per-element math in
 * float64 (same formula as the reference), results rounded to f32. */
#include "alpha.h"

#include <math.h>

#define PIECE 16384

typedef struct {
    float *param, *m, *v;
    const float *grad;
    double lr, b1, b2, eps, wd, c1, c2, gs;
    int64_t n;
} adamw_ctx;

static void adamw_task(void *vctx, int64_t begin, int64_t end) {
    adamw_ctx *c = (adamw_ctx *)vctx;
    int64_t e = end * PIECE < c->n ? end * PIECE : c->n;
    for (int64_t i = begin * PIECE; i < e; i++) {
        double g = (double)c->grad[i] * c->gs;
        double m = c->b1 * (double)c->m[i] + (1.0 - c->b1) * g;
        double v = c->b2 * (double)c->v[i] + (1.0 - c->b2) * g * g;
        double mhat = m / c->c1, vhat = v / c->c2;
        double p = (double)c->param[i];
        c->m[i] = (float)m;
        c->v[i] = (float)v;
        c->param[i] = (float)(p - c->lr * (mhat / (sqrt(vhat) + c->eps) + c->wd * p));
    }
}

void adamw_step(float *param, const float *grad, float *m, float *v, int64_t n, double lr,
                double beta1, double beta2, double eps, double weight_decay, int64_t step,
                double grad_scale) {
    adamw_ctx c = {param, m, v, grad, lr, beta1, beta2, eps, weight_decay,
                   1.0 - pow(beta1, (double)step), 1.0 - pow(beta2, (double)step), grad_scale, n};
    alpha_parallel_for((n + PIECE - 1) / PIECE, 2, adamw_task, &c);
}
