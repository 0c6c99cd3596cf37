/* Fused softmax cross-entropy over (N, V) logits with i32 targets; a target of -1 is ignored
 * (loss 0, no gradient). One row per task item; row reductions use fixed lanes. */
#include "alpha.h"
#include "alpha_math.h"

#include <math.h>

/* Index of the first target outside [-1, V), or -1 when all are valid. */
int64_t crossentropy_check(const int32_t *targets, int64_t N, int64_t V) {
    for (int64_t i = 0; i < N; i++)
        if (targets[i] < -1 || targets[i] >= V) return i;
    return -1;
}

typedef struct {
    float *out;
    const float *dlosses, *logits;
    const int32_t *targets;
    int64_t V;
} ce_ctx;

/* m = max, returns sum exp(x - m) */
static float row_lse_parts(const float *x, int64_t V, float *m_out) {
    float ml[ALPHA_LANES];
    for (int l = 0; l < ALPHA_LANES; l++) ml[l] = -INFINITY;
    int64_t i = 0;
    for (; i + ALPHA_LANES <= V; i += ALPHA_LANES)
        for (int l = 0; l < ALPHA_LANES; l++) ml[l] = x[i + l] > ml[l] ? x[i + l] : ml[l];
    float m = -INFINITY;
    for (; i < V; i++) m = x[i] > m ? x[i] : m;
    for (int l = 0; l < ALPHA_LANES; l++) m = ml[l] > m ? ml[l] : m;
    float s = alpha_sum_exp(x, m, V);
    *m_out = m;
    return s;
}

static void ce_fwd_task(void *vctx, int64_t begin, int64_t end) {
    ce_ctx *c = (ce_ctx *)vctx;
    for (int64_t r = begin; r < end; r++) {
        int32_t t = c->targets[r];
        if (t < 0) {
            c->out[r] = 0.0f;
            continue;
        }
        const float *x = c->logits + r * c->V;
        float m;
        float s = row_lse_parts(x, c->V, &m);
        c->out[r] = m + logf(s) - x[t];
    }
}

static void ce_bwd_task(void *vctx, int64_t begin, int64_t end) {
    ce_ctx *c = (ce_ctx *)vctx;
    int64_t V = c->V;
    for (int64_t r = begin; r < end; r++) {
        int32_t t = c->targets[r];
        if (t < 0) continue;
        const float *x = c->logits + r * V;
        float *dx = c->out + r * V;
        float m;
        float s = row_lse_parts(x, V, &m);
        float scale = c->dlosses[r] / s;
        for (int64_t i = 0; i < V; i++) dx[i] += alpha_expf(x[i] - m) * scale;
        dx[t] -= c->dlosses[r];
    }
}

/* losses (N) = logsumexp(logits[i]) - logits[i, target[i]]; targets checked beforehand. */
void crossentropy_forward(float *losses, const float *logits, const int32_t *targets, int64_t N,
                          int64_t V) {
    ce_ctx c = {losses, NULL, logits, targets, V};
    alpha_parallel_for(N, V >= 32768 ? 1 : 32768 / V, ce_fwd_task, &c);
}

/* dlogits[i] += (softmax(logits[i]) - onehot(target[i])) * dlosses[i]. */
void crossentropy_backward(float *dlogits, const float *dlosses, const float *logits,
                           const int32_t *targets, int64_t N, int64_t V) {
    ce_ctx c = {dlogits, dlosses, logits, targets, V};
    alpha_parallel_for(N, V >= 32768 ? 1 : 32768 / V, ce_bwd_task, &c);
}
