/* SGD with momentum, PyTorch's rule (torch.optim.SGD, dampening 0), in place over flat f32
 * buffers: g = grad + wd * param (L2 weight decay, coupled), buf = momentum * buf + g,
 * d = nesterov ? g + momentum * buf : buf, param -= lr * d. A zero buffer makes the first step
 * buf = g, which is what PyTorch does on its first step.
 *
 * muon_momentum is the same momentum without the update: Muon (optimizers/muon.py) takes the
 * direction d into its Newton-Schulz orthogonalisation instead of applying it. */
#include "alpha.h"

#define PIECE 16384

typedef struct {
    float *param, *buf, *out;
    const float *grad;
    float lr, mu, wd, gs;
    int nesterov;
    int64_t n;
} sgd_ctx;

static void sgd_task(void *vctx, int64_t begin, int64_t end) {
    const sgd_ctx *c = (const sgd_ctx *)vctx;
    int64_t i0 = begin * PIECE;
    int64_t e = end * PIECE < c->n ? end * PIECE : c->n;
    float lr = c->lr, mu = c->mu, wd = c->wd, gs = c->gs;
    for (int64_t i = i0; i < e; i++) {
        float p = c->param[i];
        float g = c->grad[i] * gs + wd * p;
        float b = mu * c->buf[i] + g;
        float d = c->nesterov ? g + mu * b : b;
        c->buf[i] = b;
        c->param[i] = p - lr * d;
    }
}

void sgd_step(float *param, const float *grad, float *buf, int64_t n, double lr,
              double momentum, int nesterov, double weight_decay, double grad_scale) {
    sgd_ctx c = {param, buf, NULL, grad, (float)lr, (float)momentum, (float)weight_decay,
                 (float)grad_scale, nesterov, n};
    alpha_parallel_for((n + PIECE - 1) / PIECE, 2, sgd_task, &c);
}

static void momentum_task(void *vctx, int64_t begin, int64_t end) {
    const sgd_ctx *c = (const sgd_ctx *)vctx;
    int64_t i0 = begin * PIECE;
    int64_t e = end * PIECE < c->n ? end * PIECE : c->n;
    float mu = c->mu, gs = c->gs;
    for (int64_t i = i0; i < e; i++) {
        float g = c->grad[i] * gs;
        float b = mu * c->buf[i] + g;
        c->buf[i] = b;
        c->out[i] = c->nesterov ? g + mu * b : b;
    }
}

void muon_momentum(float *out, const float *grad, float *buf, int64_t n, double momentum,
                   int nesterov, double grad_scale) {
    sgd_ctx c = {NULL, buf, out, grad, 0.0f, (float)momentum, 0.0f, (float)grad_scale, nesterov,
                 n};
    alpha_parallel_for((n + PIECE - 1) / PIECE, 2, momentum_task, &c);
}
