/* Dropout with precomputed uniforms u (from rng_uniform on the dropout stream):
 * forward out = x * (u >= p) / (1 - p); backward dx += dout * (u >= p) / (1 - p). */
#include "alpha.h"

#define PIECE 16384

typedef struct {
    float *out;
    const float *x, *u;
    float p, scale;
    int64_t n;
    int add;
} dropout_ctx;

static void dropout_task(void *vctx, int64_t begin, int64_t end) {
    dropout_ctx *c = (dropout_ctx *)vctx;
    int64_t e = end * PIECE < c->n ? end * PIECE : c->n;
    float p = c->p, scale = c->scale;
    float *o = c->out;
    const float *x = c->x, *u = c->u;
    if (c->add) {
        for (int64_t i = begin * PIECE; i < e; i++) o[i] += u[i] >= p ? x[i] * scale : 0.0f;
    } else {
        for (int64_t i = begin * PIECE; i < e; i++) o[i] = u[i] >= p ? x[i] * scale : 0.0f;
    }
}

void dropout_forward(float *out, const float *x, const float *u, float p, int64_t n) {
    dropout_ctx c = {out, x, u, p, 1.0f / (1.0f - p), n, 0};
    alpha_parallel_for((n + PIECE - 1) / PIECE, 4, dropout_task, &c);
}

void dropout_backward(float *dx, const float *dout, const float *u, float p, int64_t n) {
    dropout_ctx c = {dx, dout, u, p, 1.0f / (1.0f - p), n, 1};
    alpha_parallel_for((n + PIECE - 1) / PIECE, 4, dropout_task, &c);
}
