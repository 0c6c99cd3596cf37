/* Fused causal self-attention over packed qkv (B, T, 3C), forward and backward, and inference
 * attention over a KV cache.
 *
 * One task item is one (batch, head). Its K (and V) are first gathered into contiguous
 * per-head buffers, K also transposed (hs, T), so a query's scores s[0..t] are built as a sum
 * of hs axpys over contiguous key rows (vectorised across keys, no horizontal sums), then
 * softmax and P @ V. Only one row of T scores exists at a time. The forward saves
 * lse = max + log(sum exp) per query; the backward recomputes P = exp(S - lse) row by row.
 * dK, dV are accumulated in per-task buffers and added into dqkv once, so every (b, h) is
 * computed by one thread in a fixed order: bit-identical for any thread count.
 */
#include "alpha.h"
#include "alpha_math.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float *out, *lse, *dqkv;
    const float *qkv, *dout, *fout, *flse;
    int64_t B, T, C, nh;
    int failed;
} attn_ctx;

/* s[j] = scale * sum_d q[d] * KT[d, j] for j in [0, n); KT rows have length T. */
static void scores_row(float *s, const float *q, const float *KT, int64_t T, int64_t hs,
                       int64_t n, float scale) {
    for (int64_t j = 0; j < n; j++) s[j] = 0.0f;
    int64_t d = 0;
    for (; d + 4 <= hs; d += 4) {
        float q0 = q[d], q1 = q[d + 1], q2 = q[d + 2], q3 = q[d + 3];
        const float *k0 = KT + d * T, *k1 = k0 + T, *k2 = k1 + T, *k3 = k2 + T;
        for (int64_t j = 0; j < n; j++) s[j] += q0 * k0[j] + q1 * k1[j] + q2 * k2[j] + q3 * k3[j];
    }
    for (; d < hs; d++) {
        float qd = q[d];
        const float *kd = KT + d * T;
        for (int64_t j = 0; j < n; j++) s[j] += qd * kd[j];
    }
    for (int64_t j = 0; j < n; j++) s[j] *= scale;
}

/* K (T, hs), KT (hs, T) and V (T, hs) of head h, gathered from qkv rows of width 3C. */
static void gather_head(float *K, float *KT, float *V, const float *qkv, int64_t T, int64_t C,
                        int64_t hs, int64_t h) {
    for (int64_t t = 0; t < T; t++) {
        const float *row = qkv + t * 3 * C;
        const float *k = row + C + h * hs, *v = row + 2 * C + h * hs;
        if (K) memcpy(K + t * hs, k, (size_t)hs * sizeof(float));
        if (V) memcpy(V + t * hs, v, (size_t)hs * sizeof(float));
        for (int64_t d = 0; d < hs; d++) KT[d * T + t] = k[d];
    }
}

static void attn_fwd_task(void *vctx, int64_t begin, int64_t end) {
    attn_ctx *c = (attn_ctx *)vctx;
    int64_t T = c->T, C = c->C, nh = c->nh, hs = C / nh;
    float scale = 1.0f / sqrtf((float)hs);
    float *buf = (float *)malloc((size_t)(2 * T * hs + T + hs) * sizeof(float));
    if (!buf) {
        c->failed = 1;
        return;
    }
    float *KT = buf, *V = KT + T * hs, *s = V + T * hs, *acc = s + T;
    for (int64_t item = begin; item < end; item++) {
        int64_t b = item / nh, h = item % nh;
        const float *base = c->qkv + b * T * 3 * C;
        gather_head(NULL, KT, V, base, T, C, hs, h);
        for (int64_t t = 0; t < T; t++) {
            const float *q = base + t * 3 * C + h * hs;
            int64_t n = t + 1;
            scores_row(s, q, KT, T, hs, n, scale);
            float m = -INFINITY;
            for (int64_t j = 0; j < n; j++) m = s[j] > m ? s[j] : m;
            float lanes[ALPHA_LANES] = {0};
            int64_t j = 0;
            for (; j + ALPHA_LANES <= n; j += ALPHA_LANES)
                for (int l = 0; l < ALPHA_LANES; l++) {
                    float e = alpha_expf(s[j + l] - m);
                    s[j + l] = e;
                    lanes[l] += e;
                }
            float sum = 0.0f;
            for (; j < n; j++) {
                float e = alpha_expf(s[j] - m);
                s[j] = e;
                sum += e;
            }
            for (int l = 0; l < ALPHA_LANES; l++) sum += lanes[l];
            for (int64_t d = 0; d < hs; d++) acc[d] = 0.0f;
            for (j = 0; j < n; j++) {
                float p = s[j];
                const float *vj = V + j * hs;
                for (int64_t d = 0; d < hs; d++) acc[d] += p * vj[d];
            }
            float inv = 1.0f / sum;
            float *o = c->out + (b * T + t) * C + h * hs;
            for (int64_t d = 0; d < hs; d++) o[d] = acc[d] * inv;
            c->lse[(b * nh + h) * T + t] = m + logf(sum);
        }
    }
    free(buf);
}

/* out (B, T, C), lse (B, nh, T) from qkv (B, T, 3C). Returns 0, or -1 if out of memory. */
int attention_forward(float *out, float *lse, const float *qkv, int64_t B, int64_t T, int64_t C,
                      int64_t nh) {
    attn_ctx c = {out, lse, NULL, qkv, NULL, NULL, NULL, B, T, C, nh, 0};
    alpha_parallel_for(B * nh, 1, attn_fwd_task, &c);
    return c.failed ? -1 : 0;
}

static void attn_bwd_task(void *vctx, int64_t begin, int64_t end) {
    attn_ctx *c = (attn_ctx *)vctx;
    int64_t T = c->T, C = c->C, nh = c->nh, hs = C / nh;
    float scale = 1.0f / sqrtf((float)hs);
    float *buf = (float *)malloc((size_t)(5 * T * hs + 2 * T + hs) * sizeof(float));
    if (!buf) {
        c->failed = 1;
        return;
    }
    float *K = buf, *KT = K + T * hs, *VT = KT + T * hs, *dK = VT + T * hs, *dV = dK + T * hs;
    float *p = dV + T * hs, *dp = p + T, *dq = dp + T;
    for (int64_t item = begin; item < end; item++) {
        int64_t b = item / nh, h = item % nh;
        const float *base = c->qkv + b * T * 3 * C;
        gather_head(K, KT, NULL, base, T, C, hs, h);
        for (int64_t t = 0; t < T; t++) { /* VT (hs, T) */
            const float *v = base + t * 3 * C + 2 * C + h * hs;
            for (int64_t d = 0; d < hs; d++) VT[d * T + t] = v[d];
        }
        memset(dK, 0, (size_t)(2 * T * hs) * sizeof(float)); /* dK and dV */
        for (int64_t t = 0; t < T; t++) {
            const float *q = base + t * 3 * C + h * hs;
            const float *dout = c->dout + (b * T + t) * C + h * hs;
            const float *o = c->fout + (b * T + t) * C + h * hs;
            float lse = c->flse[(b * nh + h) * T + t];
            int64_t n = t + 1;
            scores_row(p, q, KT, T, hs, n, scale);
            for (int64_t j = 0; j < n; j++) p[j] = alpha_expf(p[j] - lse);
            scores_row(dp, dout, VT, T, hs, n, 1.0f); /* dp[j] = dout . v_j */
            float D = 0.0f;
            for (int64_t d = 0; d < hs; d++) D += dout[d] * o[d];
            for (int64_t d = 0; d < hs; d++) dq[d] = 0.0f;
            for (int64_t j = 0; j < n; j++) {
                float ds = p[j] * (dp[j] - D) * scale; /* dS scaled back through S = scale QK */
                const float *kj = K + j * hs;
                float *dkj = dK + j * hs, *dvj = dV + j * hs;
                float pj = p[j];
                for (int64_t d = 0; d < hs; d++) {
                    dq[d] += ds * kj[d];
                    dkj[d] += ds * q[d];
                    dvj[d] += pj * dout[d];
                }
            }
            float *dqo = c->dqkv + (b * T + t) * 3 * C + h * hs;
            for (int64_t d = 0; d < hs; d++) dqo[d] += dq[d];
        }
        for (int64_t t = 0; t < T; t++) {
            float *row = c->dqkv + (b * T + t) * 3 * C;
            float *dk = row + C + h * hs, *dv = row + 2 * C + h * hs;
            for (int64_t d = 0; d < hs; d++) {
                dk[d] += dK[t * hs + d];
                dv[d] += dV[t * hs + d];
            }
        }
    }
    free(buf);
}

/* Adds into dqkv (B, T, 3C). Returns 0, or -1 if out of memory. */
int attention_backward(float *dqkv, const float *dout, const float *qkv, const float *out,
                       const float *lse, int64_t B, int64_t T, int64_t C, int64_t nh) {
    attn_ctx c = {NULL, NULL, dqkv, qkv, dout, out, lse, B, T, C, nh, 0};
    alpha_parallel_for(B * nh, 1, attn_bwd_task, &c);
    return c.failed ? -1 : 0;
}

/* ---- inference with a KV cache ----------------------------------------------------------- */

typedef struct {
    float *out;
    const float *q, *k, *v;
    int64_t qsb, qst, ksb, kst, vsb, vst; /* batch and time strides, elements; dim stride 1 */
    int64_t Tq, C, nh, start;
    int failed;
} kv_ctx;

static void kv_task(void *vctx, int64_t begin, int64_t end) {
    kv_ctx *c = (kv_ctx *)vctx;
    int64_t Tq = c->Tq, C = c->C, nh = c->nh, hs = C / nh;
    float scale = 1.0f / sqrtf((float)hs);
    float *s = (float *)malloc((size_t)(c->start + Tq + hs) * sizeof(float));
    if (!s) {
        c->failed = 1;
        return;
    }
    float *acc = s + c->start + Tq;
    for (int64_t item = begin; item < end; item++) { /* item = (b, h, tq) */
        int64_t tq = item % Tq, h = (item / Tq) % nh, b = item / (Tq * nh);
        const float *q = c->q + b * c->qsb + tq * c->qst + h * hs;
        int64_t n = c->start + tq + 1;
        float m = -INFINITY;
        for (int64_t j = 0; j < n; j++) {
            const float *kj = c->k + b * c->ksb + j * c->kst + h * hs;
            float lanes[ALPHA_LANES] = {0};
            int64_t d = 0;
            for (; d + ALPHA_LANES <= hs; d += ALPHA_LANES)
                for (int l = 0; l < ALPHA_LANES; l++) lanes[l] += q[d + l] * kj[d + l];
            float dot = 0.0f;
            for (; d < hs; d++) dot += q[d] * kj[d];
            for (int l = 0; l < ALPHA_LANES; l++) dot += lanes[l];
            s[j] = dot * scale;
            m = s[j] > m ? s[j] : m;
        }
        float sum = 0.0f;
        for (int64_t j = 0; j < n; j++) {
            s[j] = alpha_expf(s[j] - m);
            sum += s[j];
        }
        for (int64_t d = 0; d < hs; d++) acc[d] = 0.0f;
        for (int64_t j = 0; j < n; j++) {
            const float *vj = c->v + b * c->vsb + j * c->vst + h * hs;
            float pj = s[j];
            for (int64_t d = 0; d < hs; d++) acc[d] += pj * vj[d];
        }
        float inv = 1.0f / sum;
        float *o = c->out + (b * Tq + tq) * C + h * hs;
        for (int64_t d = 0; d < hs; d++) o[d] = acc[d] * inv;
    }
    free(s);
}

/* out (B, Tq, C) contiguous; q, k, v with the given batch/time strides and unit dim stride.
 * Query tq sits at position start + tq and sees keys 0..start + tq. */
int kv_attention(float *out, const float *q, int64_t qsb, int64_t qst, const float *k,
                 int64_t ksb, int64_t kst, const float *v, int64_t vsb, int64_t vst, int64_t B,
                 int64_t Tq, int64_t C, int64_t nh, int64_t start) {
    kv_ctx c = {out, q, k, v, qsb, qst, ksb, kst, vsb, vst, Tq, C, nh, start, 0};
    int64_t per = (start + Tq) * (C / nh);
    alpha_parallel_for(B * nh * Tq, per >= 16384 ? 1 : 16384 / per, kv_task, &c);
    return c.failed ? -1 : 0;
}
