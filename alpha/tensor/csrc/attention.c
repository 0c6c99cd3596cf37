/* Fused causal self-attention over packed qkv (B, T, 3C), forward and backward, and inference
 * attention over a KV cache.
 *
 * One task item is one (batch, head). Its K and V are first gathered into contiguous per-head
 * buffers (K also transposed to (hs, T)). Queries then go QB at a time: a QB x T block of
 * scores is built with register tiles (QB queries x 16 keys, walked over the head dim), masked
 * causally, soft-maxed row by row, and multiplied by V with (QB x 16 dims) tiles. Only QB rows
 * of scores exist at a time, never T x T. The forward saves lse = max + log(sum exp) per query;
 * the backward recomputes P = exp(S - lse) the same way, and accumulates dK and dV in per-task
 * buffers added into dqkv once. Every (b, h) is computed by one thread in a fixed order, so the
 * result is bit-identical for any thread count.
 *
 * With a softcap c > 0 (Gemma 2) every scaled score s is replaced by c * tanh(s / c) before the
 * softmax; the backward multiplies dS by the cap's derivative 1 - tanh(s / c)^2. c = 0 is off:
 * the scores are then exactly GPT-2's (no extra rounding).
 */
#include "alpha.h"
#include "alpha_math.h"
#include "half.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float *out, *lse, *dqkv;
    const float *qkv, *dout, *fout, *flse;
    int64_t B, T, C, nh;
    float softcap;
    int failed;
} attn_ctx;

/* Queries are processed QB at a time and keys VW at a time: a QB x VW tile of scores lives in
 * registers while the head dim is walked, so each key load feeds QB FMAs. */
#define QB 4
#define VW 16
typedef float vf __attribute__((vector_size(VW * 4)));

static inline vf vload(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }

/* s[0..n) = cap * tanh(s / cap) in place (cap > 0). */
static void softcap_scores(float *s, int64_t n, float cap) {
    float inv = 1.0f / cap;
    for (int64_t j = 0; j < n; j++) s[j] = cap * alpha_tanhf(s[j] * inv);
}

/* C[q, j] = sum_k A[q, k] * B[k, j] for q < QB, j < n, over K. A rows have stride lda, B rows
 * ldb, C rows ldc; C is overwritten. Both products of attention have this shape: scores
 * (A = queries, B = K transposed, K = head dim) and outputs (A = probabilities, B = V, K = keys).
 * A QB x VW tile of C lives in registers while k is walked, so each load of B feeds QB FMAs. */
static void tile_rows(float *C, int64_t ldc, const float *A, int64_t lda, const float *B,
                      int64_t ldb, int64_t K, int64_t n) {
    const float *A0 = A, *A1 = A + lda, *A2 = A + 2 * lda, *A3 = A + 3 * lda;
    int64_t j0 = 0;
    for (; j0 + VW <= n; j0 += VW) {
        vf c0 = {0}, c1 = {0}, c2 = {0}, c3 = {0};
        for (int64_t k = 0; k < K; k++) {
            vf b = vload(B + k * ldb + j0);
            c0 += A0[k] * b;
            c1 += A1[k] * b;
            c2 += A2[k] * b;
            c3 += A3[k] * b;
        }
        vstore(C + j0, c0);
        vstore(C + ldc + j0, c1);
        vstore(C + 2 * ldc + j0, c2);
        vstore(C + 3 * ldc + j0, c3);
    }
    for (; j0 < n; j0++) {
        float c0 = 0.0f, c1 = 0.0f, c2 = 0.0f, c3 = 0.0f;
        for (int64_t k = 0; k < K; k++) {
            float b = B[k * ldb + j0];
            c0 += A0[k] * b;
            c1 += A1[k] * b;
            c2 += A2[k] * b;
            c3 += A3[k] * b;
        }
        C[j0] = c0;
        C[ldc + j0] = c1;
        C[2 * ldc + j0] = c2;
        C[3 * ldc + j0] = c3;
    }
}

/* G[j, :] += sum_q W[q, j] * X[q, :] for j < n (the dK and dV updates). W rows have stride
 * ldw; X (QB, hs) contiguous; G (n, hs) contiguous. */
static void tile_outer_add(float *G, const float *W, int64_t ldw, const float *X, int64_t hs,
                           int64_t n) {
    const float *W0 = W, *W1 = W + ldw, *W2 = W + 2 * ldw, *W3 = W + 3 * ldw;
    int64_t d0 = 0;
    for (; d0 + VW <= hs; d0 += VW) {
        vf x0 = vload(X + d0), x1 = vload(X + hs + d0);
        vf x2 = vload(X + 2 * hs + d0), x3 = vload(X + 3 * hs + d0);
        for (int64_t j = 0; j < n; j++) {
            vf g = vload(G + j * hs + d0);
            g += W0[j] * x0 + W1[j] * x1 + W2[j] * x2 + W3[j] * x3;
            vstore(G + j * hs + d0, g);
        }
    }
    for (; d0 < hs; d0++) {
        float x0 = X[d0], x1 = X[hs + d0], x2 = X[2 * hs + d0], x3 = X[3 * hs + d0];
        for (int64_t j = 0; j < n; j++)
            G[j * hs + d0] += W0[j] * x0 + W1[j] * x1 + W2[j] * x2 + W3[j] * x3;
    }
}

/* K (T, hs), KT (hs, T), V (T, hs), VT (hs, T) of head h from qkv rows of width 3C; any of
 * them may be NULL. */
static void gather_head(float *K, float *KT, float *V, float *VT, const float *qkv, int64_t T,
                        int64_t C, int64_t hs, int64_t h) {
    for (int64_t t = 0; t < T; t++) {
        const float *row = qkv + t * 3 * C;
        const float *k = row + C + h * hs, *v = row + 2 * C + h * hs;
        if (K)
            for (int64_t d = 0; d < hs; d++) K[t * hs + d] = k[d];
        if (V)
            for (int64_t d = 0; d < hs; d++) V[t * hs + d] = v[d];
        if (KT)
            for (int64_t d = 0; d < hs; d++) KT[d * T + t] = k[d];
        if (VT)
            for (int64_t d = 0; d < hs; d++) VT[d * T + t] = v[d];
    }
}

/* Rows t0..t0+nq-1 of one head (src rows of width ld, head offset applied) into a zero-padded
 * (QB, hs) block, times scale. */
static void load_block(float *blk, const float *src, int64_t ld, int64_t nq, int64_t hs,
                       float scale) {
    for (int64_t q = 0; q < QB; q++)
        for (int64_t d = 0; d < hs; d++) blk[q * hs + d] = q < nq ? src[q * ld + d] * scale : 0.0f;
}

static void attn_fwd_task(void *vctx, int64_t begin, int64_t end) {
    attn_ctx *c = (attn_ctx *)vctx;
    int64_t T = c->T, C = c->C, nh = c->nh, hs = C / nh;
    float scale = 1.0f / sqrtf((float)hs);
    float *buf = (float *)malloc((size_t)(2 * T * hs + QB * T + 2 * QB * hs) * sizeof(float));
    if (!buf) {
        c->failed = 1;
        return;
    }
    float *KT = buf, *V = KT + T * hs, *S = V + T * hs, *Qb = S + QB * T, *Ob = Qb + QB * hs;
    for (int64_t item = begin; item < end; item++) {
        int64_t b = item / nh, h = item % nh;
        const float *base = c->qkv + b * T * 3 * C;
        gather_head(NULL, KT, V, NULL, base, T, C, hs, h);
        for (int64_t t0 = 0; t0 < T; t0 += QB) {
            int64_t nq = T - t0 < QB ? T - t0 : QB;
            int64_t n = t0 + nq; /* keys seen by the block's last query */
            load_block(Qb, base + t0 * 3 * C + h * hs, 3 * C, nq, hs, scale);
            tile_rows(S, T, Qb, hs, KT, T, hs, n);
            float inv[QB];
            for (int64_t q = 0; q < QB; q++) {
                float *s = S + q * T;
                if (q >= nq) {
                    for (int64_t j = 0; j < n; j++) s[j] = 0.0f;
                    continue;
                }
                int64_t L = t0 + q + 1; /* causal: keys 0..t0+q */
                if (c->softcap > 0.0f) softcap_scores(s, L, c->softcap);
                float m = -INFINITY;
                for (int64_t j = 0; j < L; j++) m = s[j] > m ? s[j] : m;
                for (int64_t j = 0; j < L; j++) s[j] = alpha_expf(s[j] - m);
                float lanes[ALPHA_LANES] = {0};
                int64_t j = 0;
                for (; j + ALPHA_LANES <= L; j += ALPHA_LANES)
                    for (int l = 0; l < ALPHA_LANES; l++) lanes[l] += s[j + l];
                float sum = 0.0f;
                for (; j < L; j++) sum += s[j];
                for (int l = 0; l < ALPHA_LANES; l++) sum += lanes[l];
                for (j = L; j < n; j++) s[j] = 0.0f;
                inv[q] = 1.0f / sum;
                c->lse[(b * nh + h) * T + t0 + q] = m + logf(sum);
            }
            tile_rows(Ob, hs, S, T, V, hs, n, hs);
            for (int64_t q = 0; q < nq; q++) {
                float *o = c->out + (b * T + t0 + q) * C + h * hs;
                for (int64_t d = 0; d < hs; d++) o[d] = Ob[q * hs + d] * inv[q];
            }
        }
    }
    free(buf);
}

/* out (B, T, C), lse (B, nh, T) from qkv (B, T, 3C). Returns 0, or -1 if out of memory. */
int attention_forward(float *out, float *lse, const float *qkv, int64_t B, int64_t T, int64_t C,
                      int64_t nh, float softcap) {
    attn_ctx c = {out, lse, NULL, qkv, NULL, NULL, NULL, B, T, C, nh, softcap, 0};
    alpha_parallel_for(B * nh, 1, attn_fwd_task, &c);
    return c.failed ? -1 : 0;
}

static void attn_bwd_task(void *vctx, int64_t begin, int64_t end) {
    attn_ctx *c = (attn_ctx *)vctx;
    int64_t T = c->T, C = c->C, nh = c->nh, hs = C / nh;
    float scale = 1.0f / sqrtf((float)hs);
    size_t floats = (size_t)(5 * T * hs + 2 * QB * T + 4 * QB * hs);
    float *buf = (float *)malloc(floats * sizeof(float));
    if (!buf) {
        c->failed = 1;
        return;
    }
    float *K = buf, *KT = K + T * hs, *VT = KT + T * hs, *dK = VT + T * hs, *dV = dK + T * hs;
    float *P = dV + T * hs, *dP = P + QB * T;
    float *Qs = dP + QB * T, *Qu = Qs + QB * hs, *dOb = Qu + QB * hs, *dQb = dOb + QB * hs;
    for (int64_t item = begin; item < end; item++) {
        int64_t b = item / nh, h = item % nh;
        const float *base = c->qkv + b * T * 3 * C;
        gather_head(K, KT, NULL, VT, base, T, C, hs, h);
        memset(dK, 0, (size_t)(2 * T * hs) * sizeof(float)); /* dK and dV */
        for (int64_t t0 = 0; t0 < T; t0 += QB) {
            int64_t nq = T - t0 < QB ? T - t0 : QB;
            int64_t n = t0 + nq;
            const float *qrow = base + t0 * 3 * C + h * hs;
            load_block(Qs, qrow, 3 * C, nq, hs, scale);
            load_block(Qu, qrow, 3 * C, nq, hs, 1.0f);
            load_block(dOb, c->dout + (b * T + t0) * C + h * hs, C, nq, hs, 1.0f);
            tile_rows(P, T, Qs, hs, KT, T, hs, n);
            tile_rows(dP, T, dOb, hs, VT, T, hs, n); /* dP[q, j] = dout_q . v_j */
            for (int64_t q = 0; q < QB; q++) {
                float *p = P + q * T, *dp = dP + q * T;
                if (q >= nq) {
                    for (int64_t j = 0; j < n; j++) p[j] = dp[j] = 0.0f;
                    continue;
                }
                int64_t L = t0 + q + 1;
                float lse = c->flse[(b * nh + h) * T + t0 + q];
                const float *o = c->fout + (b * T + t0 + q) * C + h * hs;
                const float *g = dOb + q * hs;
                float D = 0.0f;
                for (int64_t d = 0; d < hs; d++) D += g[d] * o[d];
                float cap = c->softcap;
                if (cap > 0.0f) {
                    float inv = 1.0f / cap;
                    for (int64_t j = 0; j < L; j++) {
                        float th = alpha_tanhf(p[j] * inv);
                        float pj = alpha_expf(cap * th - lse);
                        p[j] = pj;
                        dp[j] = pj * (dp[j] - D) * (1.0f - th * th) * scale; /* through the cap */
                    }
                }
                for (int64_t j = 0; cap <= 0.0f && j < L; j++) {
                    float pj = alpha_expf(p[j] - lse);
                    p[j] = pj;
                    dp[j] = pj * (dp[j] - D) * scale; /* dS, scaled back through S = scale QK */
                }
                for (int64_t j = L; j < n; j++) p[j] = dp[j] = 0.0f;
            }
            tile_rows(dQb, hs, dP, T, K, hs, n, hs); /* dq = sum_j dS_j k_j */
            for (int64_t q = 0; q < nq; q++) {
                float *dq = c->dqkv + (b * T + t0 + q) * 3 * C + h * hs;
                for (int64_t d = 0; d < hs; d++) dq[d] += dQb[q * hs + d];
            }
            tile_outer_add(dK, dP, T, Qu, hs, n);  /* dk_j += sum_q dS_qj q_q */
            tile_outer_add(dV, P, T, dOb, hs, n);  /* dv_j += sum_q P_qj dout_q */
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
                       const float *lse, int64_t B, int64_t T, int64_t C, int64_t nh,
                       float softcap) {
    attn_ctx c = {NULL, NULL, dqkv, qkv, dout, out, lse, B, T, C, nh, softcap, 0};
    alpha_parallel_for(B * nh, 1, attn_bwd_task, &c);
    return c.failed ? -1 : 0;
}

/* ---- inference with a KV cache -----------------------------------------------------------
 *
 * The cache holds f32 rows, or fp16 ones (kv16: the 16-bit KV cache, half.h): then every key and
 * value is widened to the same f32 as it is read and the arithmetic below is unchanged, so an
 * fp16 cache gives exactly the f32 cache's result for K and V rounded to fp16. The loops are
 * written once over `kv_vec`/`kv_elem` with a compile-time `h16` (the callers are always
 * inlined, so each width gets its own loop); strides stay in elements. */

typedef struct {
    float *out;
    const float *q;
    const void *k, *v;
    int64_t qsb, qst, ksb, kst, vsb, vst; /* batch and time strides, elements; dim stride 1 */
    int64_t khs, vhs;                     /* head strides, elements (hs: heads side by side) */
    int64_t Tq, C, nh, start;
    float softcap;
    int failed;
    const int64_t *starts, *slots; /* per batch row (kv_attention_rows), else NULL */
    int kv16;                      /* k, v are fp16 */
} kv_ctx;

#define KV_INLINE static inline __attribute__((always_inline))

/* VW consecutive cache elements from element i of base, as floats */
KV_INLINE vf kv_vec(const void *base, int64_t i, const int h16) {
    if (!h16) return vload((const float *)base + i);
    float w[VW];
    for (int l = 0; l < VW; l += 16) half_load16(w + l, (const uint16_t *)base + i + l);
    return vload(w);
}

KV_INLINE float kv_elem(const void *base, int64_t i, const int h16) {
    return h16 ? half_to_float_portable(((const uint16_t *)base)[i]) : ((const float *)base)[i];
}

KV_INLINE const void *kv_addr(const void *base, int64_t i, const int h16) {
    return (const char *)base + i * (h16 ? 2 : 4);
}

/* The cache rows of one head are a few hundred bytes every 2C floats: a stride the hardware
 * prefetchers follow poorly, so the loops over keys ask for the row KV_AHEAD keys ahead (a
 * prefetch past the end of the cache is harmless: it never faults). */
#ifndef KV_AHEAD
#define KV_AHEAD 8
#endif
#define KV_LINE (h16 ? 32 : 16) /* elements of a 64-byte line: one prefetch each */

/* q . k as VW lanes: hs / VW vector FMAs into two accumulators (hs a multiple of VW), added */
KV_INLINE vf kv_key_lanes(const float *q, const void *k, int64_t kj, int64_t hs, const int h16) {
    vf a0 = vload(q) * kv_vec(k, kj, h16), a1 = {0};
    int64_t d = VW;
    for (; d + 2 * VW <= hs; d += 2 * VW) {
        a1 += vload(q + d) * kv_vec(k, kj + d, h16);
        a0 += vload(q + d + VW) * kv_vec(k, kj + d + VW, h16);
    }
    if (d < hs) a1 += vload(q + d) * kv_vec(k, kj + d, h16);
    return a0 + a1;
}

/* the sum of a key's lanes by a fixed tree: halves added, then quarters ... */
KV_INLINE float kv_lane_tree(vf v) {
    float half[VW / 2];
    for (int l = 0; l < VW / 2; l++) half[l] = v[l] + v[l + VW / 2];
    for (int w = VW / 4; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) half[l] += half[l + w];
    return half[0];
}

#if VW == 16 && (defined(__clang__) || __GNUC__ >= 12)
#define KV_BUTTERFLY 1
#define SHUF __builtin_shufflevector
/* The lane tree of VW = 16 keys at once: each stage adds lane pairs of two vectors shuffled
 * together (stage 1: lane l and l + 8 of keys i and i + 8 side by side, ... stage 4: lanes 0 and
 * 1), the very adds of `kv_lane_tree`, 15 vector adds instead of 16 x 15 scalar ones (the
 * scalar tree went through the stack, ~40% of a decode step's attention). Key kv_order[i] goes
 * in as v[i] so that lane j of the result is key j's sum. */
static const int kv_order[VW] = {0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15};

KV_INLINE vf kv_lane_trees(const vf *v) {
    vf u[8], w[4], x[2];
    for (int i = 0; i < 8; i++)
        u[i] = SHUF(v[i], v[i + 8], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
               SHUF(v[i], v[i + 8], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    for (int i = 0; i < 4; i++)
        w[i] = SHUF(u[i], u[i + 4], 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
               SHUF(u[i], u[i + 4], 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    for (int i = 0; i < 2; i++)
        x[i] = SHUF(w[i], w[i + 2], 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29) +
               SHUF(w[i], w[i + 2], 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    return SHUF(x[0], x[1], 0, 2, 16, 18, 4, 6, 20, 22, 8, 10, 24, 26, 12, 14, 28, 30) +
           SHUF(x[0], x[1], 1, 3, 17, 19, 5, 7, 21, 23, 9, 11, 25, 27, 13, 15, 29, 31);
}
#undef SHUF
#endif

/* s[j] = (q . k_j) * scale for j < n, keys k_j at element j * kst of k. One query against many
 * keys, so the work is per key: with hs a multiple of VW each key is `kv_key_lanes`, then
 * `kv_lane_tree`, the same for every key (16 keys at a time or one by one), so a score's bits
 * depend only on q and its key; the keys are independent, so the out-of-order core overlaps
 * them (the old one-key chain of scalar adds cost ~60 cycles a key). Other head sizes: 8 lanes,
 * scalar. */
KV_INLINE void kv_scores(float *s, const float *q, const void *k, int64_t kst, int64_t n,
                         int64_t hs, float scale, const int h16) {
    if (hs % VW == 0) {
        int64_t j = 0;
#ifdef KV_BUTTERFLY
        for (; j + VW <= n; j += VW) {
            vf v[VW];
            for (int i = 0; i < VW; i++) {
                for (int64_t d = 0; d < hs; d += KV_LINE)
                    __builtin_prefetch(kv_addr(k, (j + i + KV_AHEAD) * kst + d, h16));
                v[i] = kv_key_lanes(q, k, (j + kv_order[i]) * kst, hs, h16);
            }
            vstore(s + j, kv_lane_trees(v) * scale);
        }
#endif
        for (; j < n; j++) {
            int64_t kj = j * kst;
            for (int64_t d = 0; d < hs; d += KV_LINE)
                __builtin_prefetch(kv_addr(k, kj + KV_AHEAD * kst + d, h16));
            s[j] = kv_lane_tree(kv_key_lanes(q, k, kj, hs, h16)) * scale;
        }
        return;
    }
    for (int64_t j = 0; j < n; j++) {
        int64_t kj = j * kst;
        float lanes[8] = {0}; /* head dims are short: 8 lanes, not ALPHA_LANES */
        int64_t d = 0;
        for (; d + 8 <= hs; d += 8)
            for (int l = 0; l < 8; l++) lanes[l] += q[d + l] * kv_elem(k, kj + d + l, h16);
        float dot = 0.0f;
        for (; d < hs; d++) dot += q[d] * kv_elem(k, kj + d, h16);
        for (int l = 0; l < 8; l++) dot += lanes[l];
        s[j] = dot * scale;
    }
}

/* acc[0 .. nv * VW) = sum_j p[j] * v_j, v_j at element j * vst of v: keys in two interleaved
 * chains (even, odd) added at the end, so the FMA latency is hidden; a fixed order whatever the
 * thread. */
KV_INLINE void kv_values_block(float *acc, const float *p, const void *v, int64_t vst, int64_t n,
                               const int nv, const int h16) {
    vf e[4] = {{0}}, o[4] = {{0}};
    int64_t j = 0;
    for (; j + 2 <= n; j += 2) {
        int64_t va = j * vst, vb = va + vst;
        for (int64_t d = 0; d < nv * VW; d += KV_LINE) {
            __builtin_prefetch(kv_addr(v, va + KV_AHEAD * vst + d, h16));
            __builtin_prefetch(kv_addr(v, vb + KV_AHEAD * vst + d, h16));
        }
        for (int i = 0; i < nv; i++) {
            e[i] += p[j] * kv_vec(v, va + i * VW, h16);
            o[i] += p[j + 1] * kv_vec(v, vb + i * VW, h16);
        }
    }
    if (j < n)
        for (int i = 0; i < nv; i++) e[i] += p[j] * kv_vec(v, j * vst + i * VW, h16);
    for (int i = 0; i < nv; i++) vstore(acc + i * VW, e[i] + o[i]);
}

/* acc[0..hs) = sum_j p[j] * v_j: up to 4 vectors of dims per pass over the keys (one pass for a
 * 64-wide head), the rest one by one. */
KV_INLINE void kv_values(float *acc, const float *p, const void *v, int64_t vst, int64_t n,
                         int64_t hs, const int h16) {
    int64_t d0 = 0;
    for (; d0 + 4 * VW <= hs; d0 += 4 * VW)
        kv_values_block(acc + d0, p, kv_addr(v, d0, h16), vst, n, 4, h16);
    for (; d0 + VW <= hs; d0 += VW)
        kv_values_block(acc + d0, p, kv_addr(v, d0, h16), vst, n, 1, h16);
    for (; d0 < hs; d0++) {
        float a = 0.0f;
        for (int64_t j = 0; j < n; j++) a += p[j] * kv_elem(v, j * vst + d0, h16);
        acc[d0] = a;
    }
}

static inline int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }

/* The largest of s[0..n), NaNs skipped: in VW lanes, then across them. One chain of scalar
 * compares was ~10% of a decode step's attention (4 cycles a key); the order does not matter
 * (the value is the same, or +0 for -0, which leaves every exp(s - m) as it is). */
KV_INLINE float score_max(const float *s, int64_t n) {
    float lanes[VW], m = -INFINITY;
    for (int l = 0; l < VW; l++) lanes[l] = -INFINITY;
    int64_t j = 0;
    for (; j + VW <= n; j += VW)
        for (int l = 0; l < VW; l++) lanes[l] = s[j + l] > lanes[l] ? s[j + l] : lanes[l];
    for (; j < n; j++) m = s[j] > m ? s[j] : m;
    for (int l = 0; l < VW; l++) m = lanes[l] > m ? lanes[l] : m;
    return m;
}

/* one (batch row, head, query) of kv_task, for cache elements of one width */
KV_INLINE void kv_item(kv_ctx *c, float *s, float *acc, int64_t item, const int h16) {
    int64_t Tq = c->Tq, C = c->C, nh = c->nh, hs = C / nh;
    float scale = 1.0f / sqrtf((float)hs);
    int64_t tq = item % Tq, h = (item / Tq) % nh, b = item / (Tq * nh);
    const float *q = c->q + b * c->qsb + tq * c->qst + h * hs;
    int64_t kb = c->slots ? c->slots[b] : b; /* the cache row block of this batch row */
    int64_t n = (c->starts ? c->starts[b] : c->start) + tq + 1;
    const char *kp = (const char *)kv_addr(c->k, kb * c->ksb + h * c->khs, h16);
    const char *vp = (const char *)kv_addr(c->v, kb * c->vsb + h * c->vhs, h16);
    /* contiguous runs (the fp16 cache): ask for the first KV_AHEAD keys and values at once,
     * which the loops' own prefetches (KV_AHEAD keys ahead) do not cover; the hardware
     * prefetchers are slow to start on runs this short. Asking for the whole runs at once
     * stalled on the line fill buffers (half of attention's time in that loop, from L3) */
    if (c->kst == hs && c->vst == hs)
        for (int64_t o = 0, bytes = min_i64(n, KV_AHEAD) * hs * (h16 ? 2 : 4); o < bytes;
             o += 64) {
            __builtin_prefetch(kp + o);
            __builtin_prefetch(vp + o);
        }
    kv_scores(s, q, kp, c->kst, n, hs, scale, h16);
    if (c->softcap > 0.0f) softcap_scores(s, n, c->softcap);
    float m = score_max(s, n);
    for (int64_t j = 0; j < n; j++) s[j] = alpha_expf(s[j] - m); /* vectorised */
    float lanes[VW] = {0}, sum = 0.0f; /* the sum in VW lanes, then in order */
    int64_t j = 0;
    for (; j + VW <= n; j += VW)
        for (int l = 0; l < VW; l++) lanes[l] += s[j + l];
    for (; j < n; j++) sum += s[j];
    for (int l = 0; l < VW; l++) sum += lanes[l];
    kv_values(acc, s, vp, c->vst, n, hs, h16);
    float inv = 1.0f / sum;
    float *o = c->out + (b * Tq + tq) * C + h * hs;
    for (int64_t d = 0; d < hs; d++) o[d] = acc[d] * inv;
}

static void kv_task(void *vctx, int64_t begin, int64_t end) {
    kv_ctx *c = (kv_ctx *)vctx;
    int64_t hs = c->C / c->nh;
    float *s = (float *)malloc((size_t)(c->start + c->Tq + hs) * sizeof(float));
    if (!s) {
        c->failed = 1;
        return;
    }
    float *acc = s + c->start + c->Tq;
    for (int64_t item = begin; item < end; item++) { /* item = (b, h, tq) */
        if (c->kv16)
            kv_item(c, s, acc, item, 1);
        else
            kv_item(c, s, acc, item, 0);
    }
    free(s);
}

/* kv_attention over a cache of f32 (kv16 = 0) or fp16 (kv16 = 1) elements; head h's keys start at
 * k + h * khs (values: v + h * vhs), so the cache may keep each head's rows side by side (khs =
 * hs) or each head's keys back to back (kst = hs: decode.c's fp16 layout) */
int kv_attention_cache(float *out, const float *q, int64_t qsb, int64_t qst, const void *k,
                       int64_t ksb, int64_t kst, int64_t khs, const void *v, int64_t vsb,
                       int64_t vst, int64_t vhs, int64_t B, int64_t Tq, int64_t C, int64_t nh,
                       int64_t start, float softcap, int kv16) {
    kv_ctx c = {out, q, k, v, qsb, qst, ksb, kst, vsb, vst, khs, vhs, Tq, C, nh, start, softcap,
                0, NULL, NULL, kv16};
    int64_t per = (start + Tq) * (C / nh);
    alpha_parallel_for(B * nh * Tq, per >= 16384 ? 1 : 16384 / per, kv_task, &c);
    return c.failed ? -1 : 0;
}

/* out (B, Tq, C) contiguous; q, k, v with the given batch/time strides and unit dim stride.
 * Query tq sits at position start + tq and sees keys 0..start + tq. */
int kv_attention(float *out, const float *q, int64_t qsb, int64_t qst, const float *k,
                 int64_t ksb, int64_t kst, const float *v, int64_t vsb, int64_t vst, int64_t B,
                 int64_t Tq, int64_t C, int64_t nh, int64_t start, float softcap) {
    return kv_attention_cache(out, q, qsb, qst, k, ksb, kst, C / nh, v, vsb, vst, C / nh, B, Tq,
                              C, nh, start, softcap, 0);
}

/* One new query per row, each against its own cache: row b's query (q + b * qsb) sits at position
 * starts[b] and sees keys 0..starts[b] of cache block slots[b] (k + slots[b] * ksb, likewise v).
 * Every (row, head) is computed exactly as kv_attention computes it, in one parallel pass (batched
 * decode: sequences of different lengths). out (B, C) contiguous; khs, vhs and kv16 as
 * kv_attention_cache's. */
int kv_attention_rows(float *out, const float *q, int64_t qsb, const void *k, int64_t ksb,
                      int64_t kst, int64_t khs, const void *v, int64_t vsb, int64_t vst,
                      int64_t vhs, const int64_t *slots, const int64_t *starts, int64_t B,
                      int64_t C, int64_t nh, float softcap, int kv16) {
    int64_t longest = 0;
    for (int64_t b = 0; b < B; b++) longest = starts[b] > longest ? starts[b] : longest;
    kv_ctx c = {out, q, k, v, qsb, 0, ksb, kst, vsb, vst, khs, vhs, 1, C, nh, longest, softcap,
                0, starts, slots, kv16};
    alpha_parallel_for(B * nh, 1, kv_task, &c);
    return c.failed ? -1 : 0;
}
