/* One transformer block for one new token of each of M sequences against their KV caches, in
 * one call (the Backend protocol's `block_decode`).
 *
 * This is the GPT's block with a KV cache (alpha/model/gpt.py, one token per sequence) run from
 * C: the same kernels in the same order, so the result is bit-identical to the op-by-op path;
 * only the Python and ctypes overhead between the ~14 ops of a block is gone (it cost as much as
 * the block's arithmetic at batch 1).
 *
 *   h = layernorm(x; ln_1)                  q|k|v = h @ c_attn (+ b); [rope: q, k turned]
 *   cache[pos] = k|v                        att = kv_attention(q, cache k, v [, softcap])
 *   x = x + (att @ attn.c_proj (+ b))
 *   h = layernorm(x; ln_2)                  f = h @ c_fc (+ b);  g = act(f)
 *   x = x + (g @ mlp.c_proj (+ b))
 *
 * Not here: several new positions per sequence (prefill), the embedding and the LM head.
 */
#include "alpha.h"
#include "half.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void alpha_sgemm_rows(int64_t M, int64_t N, int64_t K, const float *a, int64_t a_rs,
                      int64_t a_cs, const float *b, int64_t b_rs, int64_t b_cs, float *c,
                      int64_t ldc, float alpha, int accumulate);
void alpha_sgemm_rows_packed(int64_t M, int64_t N, int64_t K, const float *a, int64_t a_rs,
                             int64_t a_cs, const float *b_packed, float *c, int64_t ldc);
void layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *weight,
                       const float *bias, int64_t N, int64_t C, float eps);
int kv_attention_cache(float *out, const float *q, int64_t qsb, int64_t qst, const void *k,
                       int64_t ksb, int64_t kst, int64_t khs, const void *v, int64_t vsb,
                       int64_t vst, int64_t vhs, int64_t B, int64_t Tq, int64_t C, int64_t nh,
                       int64_t start, float softcap, int kv16);
int kv_attention_rows(float *out, const float *q, int64_t qsb, const void *k, int64_t ksb,
                      int64_t kst, int64_t khs, const void *v, int64_t vsb, int64_t vst,
                      int64_t vhs, const int64_t *slots, const int64_t *starts, int64_t B,
                      int64_t C, int64_t nh, float softcap, int kv16);
void rope_forward(float *out, const float *x, const int32_t *pos, int64_t npos, const float *cos,
                  const float *sin, int64_t N, int64_t C, int64_t nh);
void ew_binary_contig(float *out, const float *a, const float *b, int64_t n, int op, float s);
void act_forward_here(int act, float *out, const float *x, int64_t N, int64_t H);

enum { ACT_GELU, ACT_RELU, ACT_SILU, ACT_SWIGLU, ACT_RELU2 }; /* activations.c's codes too */
#define EW_ADD 0 /* elementwise.c's B_ADD */

/* The engine's profile (ALPHA_ENGINE_PROFILE, alpha/model/engine_profile.py): while on, every
 * call adds its nanoseconds in the weight products, in attention and in the rest (norms,
 * activations, residual adds, cache writes). Off, it costs one relaxed load per call. */
enum { PROF_PRODUCTS, PROF_ATTENTION, PROF_OTHER, PROF_N };
static _Atomic int64_t prof_ns[PROF_N];
static atomic_int prof_on;

static int64_t prof_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Turns the counters on or off; out (3 int64), when given, gets their sums so far, which restart
 * from zero. */
void decode_profile(int on, int64_t *out) {
    for (int i = 0; i < PROF_N; i++) {
        int64_t v = atomic_exchange(&prof_ns[i], 0);
        if (out) out[i] = v;
    }
    atomic_store(&prof_on, on);
}

/* adds the time since *t to counter `what` and restarts *t (only while profiling) */
static inline void prof_lap(int on, int64_t *t, int what) {
    if (!on) return;
    int64_t now = prof_now();
    atomic_fetch_add_explicit(&prof_ns[what], now - *t, memory_order_relaxed);
    *t = now;
}

static const float *const unpacked[4] = {NULL, NULL, NULL, NULL}; /* a block's wp, none packed */

/* out (M, n_out) = x (M, n_in) @ w (n_in, n_out; rows w_ld apart), the batch-invariant product
 * (each row as if alone); wp, when not NULL, is w packed in panels (matmul_small.c: the same bits,
 * read from memory ~1.8x faster) */
static void product_rows(float *out, const float *x, const float *w, int64_t w_ld,
                         const float *wp, int64_t M, int64_t n_in, int64_t n_out) {
    if (wp)
        alpha_sgemm_rows_packed(M, n_out, n_in, x, n_in, 1, wp, out, n_out);
    else
        alpha_sgemm_rows(M, n_out, n_in, x, n_in, 1, w, w_ld, 1, out, n_out, 1.0f, 0);
}

/* out = x @ w + b, each row as the model's linear computes one row (the product, then the bias
 * added row by row) */
static void linear_rows(float *out, const float *x, const float *w, const float *wp,
                        const float *b, int64_t M, int64_t n_in, int64_t n_out) {
    product_rows(out, x, w, n_out, wp, M, n_in, n_out);
    if (b) /* one rounded add per element, whichever loop does it */
        for (int64_t i = 0; i < M; i++) {
            float *o = out + i * n_out;
            for (int64_t j = 0; j < n_out; j++) o[j] += b[j];
        }
}

/* g = act(f) for `units` units of `rows` rows each (H outputs from F inputs a row), the units
 * split over the threads: one activation call per unit, as the model's op-by-op path calls it
 * (a decode row, a prefill sequence), so the same bits. Called one unit after another, a batch-32
 * step's GELUs were ~0.35 ms on one thread while the other waited. */
typedef struct {
    float *g;
    const float *f;
    int64_t rows, H, F;
    int act;
} act_units_ctx;

static void act_units_task(void *vctx, int64_t begin, int64_t end) {
    act_units_ctx *c = (act_units_ctx *)vctx;
    for (int64_t u = begin; u < end; u++)
        act_forward_here(c->act, c->g + u * c->rows * c->H, c->f + u * c->rows * c->F, c->rows,
                         c->H);
}

static void activation_units(float *g, const float *f, int64_t units, int64_t rows, int64_t H,
                             int64_t F, int act) {
    act_units_ctx c = {g, f, rows, H, F, act};
    int64_t n = rows * H; /* ~16K elements or more a task */
    alpha_parallel_for(units, n >= 16384 ? 1 : 16384 / n, act_units_task, &c);
}

/* The cache: f32 elements, or fp16 ones (kv16, the 16-bit KV cache: csrc/half.h); offsets and
 * strides are in elements either way. */
static inline void *cache_at(void *cache, int64_t at, int kv16) {
    return (char *)cache + at * (kv16 ? 2 : 4);
}

/* Where a slot keeps its positions. An f32 cache holds the model's rows, [k | v] (2C floats) per
 * position: the op-by-op path reads them as (S, Tmax, 2C) views. The fp16 cache is read and
 * written only here, so it is laid out for attention, which walks one head's keys (then values)
 * for each (row, head): per slot, head h's keys are a (Tmax, hs) block at h * 2 * Tmax * hs, its
 * values the block after. In the f32 rows a head's keys are hs elements every 2C, a stride the
 * hardware prefetchers follow poorly: from memory (a batch-32 step's cache does not stay in L3
 * beside the weights) attention ran ~3x slower than from cache. Every kernel call takes these
 * strides, so both layouts run the same arithmetic. */
typedef struct {
    int64_t kst, khs, v; /* a key's (time) stride, a head's stride, the values' offset */
} kv_layout;

static kv_layout kv_layout_of(int64_t slot_stride, int64_t C, int64_t nh, int kv16) {
    int64_t hs = C / nh, block = slot_stride / (2 * nh); /* Tmax * hs */
    return kv16 ? (kv_layout){hs, 2 * block, block} : (kv_layout){2 * C, hs, C};
}

/* position t's k and v (kv: [k | v], 2C floats) into the slot starting at element `slot`,
 * rounded to fp16 with kv16 */
static void cache_write(void *cache, int64_t slot, int64_t t, const float *kv, int64_t C,
                        int64_t nh, kv_layout lay, int kv16) {
    int64_t hs = C / nh;
    for (int64_t part = 0; part < 2; part++)
        for (int64_t h = 0; h < nh; h++) {
            int64_t at = slot + part * lay.v + h * lay.khs + t * lay.kst;
            const float *src = kv + part * C + h * hs;
            if (kv16)
                half_from_floats((uint16_t *)cache + at, src, hs);
            else
                memcpy((float *)cache + at, src, (size_t)hs * sizeof(float));
        }
}

/* The step's work buffers, kept per calling thread and grown as needed: a fresh malloc of this
 * size each layer is an mmap whose pages fault in and are zeroed every call (~5% of a batch-32
 * step). Per thread, because two engines (two models) may decode at once. */
static float *scratch(size_t n) {
    static _Thread_local float *buf = NULL;
    static _Thread_local size_t have = 0;
    if (n > have) {
        float *grown = (float *)realloc(buf, n * sizeof(float));
        if (!grown) return NULL;
        buf = grown;
        have = n;
    }
    return buf;
}

/* x (M, C) in place: row i is sequence i's new token, at position positions[i] of cache slot
 * slots[i]. cache: slots of (Tmax, 2C) rows [k | v], slot s at cache + s * slot_stride; row
 * positions[i] of slot slots[i] is written, rows 0..positions[i] are attended. p: the 12
 * parameters in order ln_1.{weight,bias}, attn.c_attn.{weight,bias}, attn.c_proj.{weight,bias},
 * ln_2.{weight,bias}, mlp.c_fc.{weight,bias}, mlp.c_proj.{weight,bias} (biases may be NULL);
 * H the MLP hidden size (c_fc has 2H outputs for SwiGLU). rope_cos, rope_sin: rope's (L, hs/2)
 * tables (positions < L), or NULL for learned positions; softcap: the attention score cap, 0 off;
 * kv16: the cache holds fp16 elements (written rounded, read widened), else f32.
 *
 * Batch invariance: every row goes through exactly the arithmetic of M = 1 (the products are
 * alpha_sgemm_rows; layernorm and attention compute each row by itself, whichever thread; the
 * activations are called one row at a time), so a sequence's bits do not depend on which others
 * share its step. Returns 0, or -1 if out of memory. wp: NULL, or the four weights packed in
 * panels (c_attn, attn.c_proj, c_fc, mlp.c_proj), which decode_step passes. */
static int decode_block(float *x, int64_t M, void *cache, int64_t slot_stride,
                        const int64_t *slots, const int64_t *positions, const float *ln1_w,
                        const float *ln1_b, const float *attn_w, const float *attn_b,
                        const float *proj_w, const float *proj_b, const float *ln2_w,
                        const float *ln2_b, const float *fc_w, const float *fc_b,
                        const float *mlp_w, const float *mlp_b, const float *const *wp,
                        int64_t C, int64_t H, int64_t nh, int act, float eps,
                        const float *rope_cos, const float *rope_sin, float softcap, int kv16) {
    if (!wp) wp = unpacked;
    int64_t F = act == ACT_SWIGLU ? 2 * H : H;
    int64_t extra = rope_cos ? M * 3 * C + M : 0; /* turned qkv, then M int32 positions */
    float *buf = scratch((size_t)(M * (6 * C + F + H + 2) + extra));
    if (!buf) return -1;
    float *h = buf, *qkv = h + M * C, *att = qkv + M * 3 * C, *y = att + M * C;
    float *f = y + M * C, *g = f + M * F, *stats = g + M * H;
    int rc = 0;
    int prof = atomic_load_explicit(&prof_on, memory_order_relaxed);
    int64_t t = prof ? prof_now() : 0;

    layernorm_forward(h, stats, stats + M, x, ln1_w, ln1_b, M, C, eps); /* row by row */
    prof_lap(prof, &t, PROF_OTHER);
    linear_rows(qkv, h, attn_w, wp[0], attn_b, M, C, 3 * C);
    prof_lap(prof, &t, PROF_PRODUCTS);
    if (rope_cos) { /* the op-by-op path's rope_forward call, on the same rows */
        float *turned = stats + 2 * M;
        int32_t *pos32 = (int32_t *)(turned + M * 3 * C);
        for (int64_t i = 0; i < M; i++) pos32[i] = (int32_t)positions[i];
        rope_forward(turned, qkv, pos32, M, rope_cos, rope_sin, M, C, nh);
        qkv = turned;
    }
    kv_layout lay = kv_layout_of(slot_stride, C, nh, kv16);
    for (int64_t i = 0; i < M; i++) /* this position's [k | v] into the sequence's cache */
        cache_write(cache, slots[i] * slot_stride, positions[i], qkv + i * 3 * C + C, C, nh, lay,
                    kv16);
    prof_lap(prof, &t, PROF_OTHER);
    if (M == 1) {
        int64_t slot = slots[0] * slot_stride;
        rc = kv_attention_cache(att, qkv, 0, 3 * C, cache_at(cache, slot, kv16), 0, lay.kst,
                                lay.khs, cache_at(cache, slot + lay.v, kv16), 0, lay.kst, lay.khs,
                                1, 1, C, nh, positions[0], softcap, kv16);
    } else {
        rc = kv_attention_rows(att, qkv, 3 * C, cache, slot_stride, lay.kst, lay.khs,
                               cache_at(cache, lay.v, kv16), slot_stride, lay.kst, lay.khs, slots,
                               positions, M, C, nh, softcap, kv16);
    }
    prof_lap(prof, &t, PROF_ATTENTION);
    linear_rows(y, att, proj_w, wp[1], proj_b, M, C, C);
    prof_lap(prof, &t, PROF_PRODUCTS);
    ew_binary_contig(x, x, y, M * C, EW_ADD, 0.0f);

    layernorm_forward(h, stats, stats + M, x, ln2_w, ln2_b, M, C, eps);
    prof_lap(prof, &t, PROF_OTHER);
    linear_rows(f, h, fc_w, wp[2], fc_b, M, C, F);
    prof_lap(prof, &t, PROF_PRODUCTS);
    activation_units(g, f, M, 1, H, F, act);
    prof_lap(prof, &t, PROF_OTHER);
    linear_rows(y, g, mlp_w, wp[3], mlp_b, M, H, C);
    prof_lap(prof, &t, PROF_PRODUCTS);
    ew_binary_contig(x, x, y, M * C, EW_ADD, 0.0f);
    prof_lap(prof, &t, PROF_OTHER);
    return rc;
}

/* The Backend protocol's block_decode: decode_block with the weights as they are */
int block_decode(float *x, int64_t M, void *cache, int64_t slot_stride, const int64_t *slots,
                 const int64_t *positions, const float *ln1_w, const float *ln1_b,
                 const float *attn_w, const float *attn_b, const float *proj_w,
                 const float *proj_b, const float *ln2_w, const float *ln2_b, const float *fc_w,
                 const float *fc_b, const float *mlp_w, const float *mlp_b, int64_t C, int64_t H,
                 int64_t nh, int act, float eps, const float *rope_cos, const float *rope_sin,
                 float softcap, int kv16) {
    return decode_block(x, M, cache, slot_stride, slots, positions, ln1_w, ln1_b, attn_w,
                        attn_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, mlp_w, mlp_b, NULL, C,
                        H, nh, act, eps, rope_cos, rope_sin, softcap, kv16);
}

void embedding_forward(float *out, const int32_t *ids, const float *table, int64_t N, int64_t C);

/* A whole decode step, one new token for each of M sequences, in one call (the Backend protocol's
 * `decode_step`): the model's cached forward for T = 1 with every block fused, so the engine's
 * thread gives up and takes back the interpreter lock once a step instead of once an op (with 32
 * request threads waking every step, each take-back can wait behind them).
 *
 *   x = wte[ids] (+ wpe[positions])         x = block_decode(x) for each of the L layers
 *   logits = layernorm(x; ln_f) @ head_t    (head_t the LM head transposed, (C, V))
 *
 * The same functions in the same order as the op-by-op path, so the same bits. ids (M) i32 and
 * positions (M) are checked here: -2 if one is outside the tables. caches: L pointers to the
 * layers' (S, Tmax, 2C) blocks; params: L * 12 pointers, each layer's as `block_decode` takes
 * them; packed: NULL, or the same weights packed in panels (alpha_pack_panels), the four
 * matrices of each layer (c_attn, attn.c_proj, c_fc, mlp.c_proj), then head_t: L * 4 + 1
 * pointers; wpe NULL with rope; head_t's rows head_ld apart. Returns 0, -1 if out of memory, -2
 * for a bad id or position. */
int decode_step(float *logits, const int32_t *ids, int64_t M, const float *wte, int64_t V,
                const float *wpe, int64_t n_pos, int64_t L, void *const *caches,
                int64_t slot_stride, const int64_t *slots, const int64_t *positions,
                const float *const *params, const float *const *packed, const float *lnf_w,
                const float *lnf_b,
                const float *head_t, int64_t head_ld, int64_t C, int64_t H, int64_t nh,
                int act, float eps, const float *rope_cos, const float *rope_sin,
                float softcap, int kv16) {
    for (int64_t i = 0; i < M; i++)
        if (ids[i] < 0 || ids[i] >= V || positions[i] < 0 || (wpe && positions[i] >= n_pos))
            return -2;
    float *x = (float *)malloc((size_t)(M * (3 * C + 2)) * sizeof(float));
    int32_t *pos32 = (int32_t *)malloc((size_t)M * sizeof(int32_t));
    int rc = 0;
    if (!x || !pos32) {
        rc = -1;
        goto done;
    }
    float *pos = x + M * C, *h = pos + M * C, *stats = h + M * C;
    embedding_forward(x, ids, wte, M, C);
    if (wpe) {
        for (int64_t i = 0; i < M; i++) pos32[i] = (int32_t)positions[i];
        embedding_forward(pos, pos32, wpe, M, C);
        ew_binary_contig(x, x, pos, M * C, EW_ADD, 0.0f);
    }
    for (int64_t l = 0; l < L && !rc; l++) {
        const float *const *p = params + 12 * l;
        rc = decode_block(x, M, caches[l], slot_stride, slots, positions, p[0], p[1], p[2], p[3],
                          p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11],
                          packed ? packed + 4 * l : NULL, C, H, nh, act, eps, rope_cos, rope_sin,
                          softcap, kv16);
    }
    if (!rc) {
        layernorm_forward(h, stats, stats + M, x, lnf_w, lnf_b, M, C, eps);
        product_rows(logits, h, head_t, head_ld, packed ? packed[4 * L] : NULL, M, C, V);
    }
done:
    free(x);
    free(pos32);
    return rc;
}

/* ---- prefill: T new positions per sequence ---------------------------------------------------
 *
 * The model's cached forward for T > 1 (alpha/model/gpt.py `_block_cached`, then the last
 * position's head) in one call, with the op-by-op path's calls on the same rows, so the same bits:
 * the products are alpha_sgemm_rows over all B * T rows (each row as if alone), the cache rows and
 * attention go sequence by sequence (kv_attention of its T queries from its own start), the
 * activations sequence by sequence. The server prefills prompts while other requests start and
 * stream, and the op-by-op path gave up the interpreter lock ~150 times a forward. */

static int prefill_block(float *x, int64_t B, int64_t T, void *cache, int64_t slot_stride,
                         const int64_t *slots, const int64_t *starts, const int32_t *pos32,
                         const float *const *p, const float *const *wp, int64_t C, int64_t H,
                         int64_t nh, int act, float eps, const float *rope_cos,
                         const float *rope_sin, float softcap, int kv16) {
    int64_t N = B * T, F = act == ACT_SWIGLU ? 2 * H : H;
    /* h, qkv, turned, att, y (C, 3C, 3C, C, C a row), f, g, the norm's 2 stats */
    size_t n = (size_t)(N * (9 * C + F + H) + 2 * N);
    float *buf = (float *)malloc(n * sizeof(float));
    if (!buf) return -1;
    float *h = buf, *qkv = h + N * C, *turned = qkv + N * 3 * C, *att = turned + N * 3 * C;
    float *y = att + N * C, *f = y + N * C, *g = f + N * F, *stats = g + N * H;
    int rc = 0;
    layernorm_forward(h, stats, stats + N, x, p[0], p[1], N, C, eps);
    linear_rows(qkv, h, p[2], wp[0], p[3], N, C, 3 * C);
    if (rope_cos) {
        rope_forward(turned, qkv, pos32, N, rope_cos, rope_sin, N, C, nh);
        qkv = turned;
    }
    kv_layout lay = kv_layout_of(slot_stride, C, nh, kv16);
    for (int64_t b = 0; b < B && !rc; b++) { /* the sequence's new k|v rows, then its queries */
        int64_t slot = slots[b] * slot_stride;
        const float *qb = qkv + b * T * 3 * C;
        for (int64_t t = 0; t < T; t++)
            cache_write(cache, slot, starts[b] + t, qb + t * 3 * C + C, C, nh, lay, kv16);
        rc = kv_attention_cache(att + b * T * C, qb, 0, 3 * C, cache_at(cache, slot, kv16), 0,
                                lay.kst, lay.khs, cache_at(cache, slot + lay.v, kv16), 0, lay.kst,
                                lay.khs, 1, T, C, nh, starts[b], softcap, kv16);
    }
    if (!rc) {
        linear_rows(y, att, p[4], wp[1], p[5], N, C, C);
        ew_binary_contig(x, x, y, N * C, EW_ADD, 0.0f);
        layernorm_forward(h, stats, stats + N, x, p[6], p[7], N, C, eps);
        linear_rows(f, h, p[8], wp[2], p[9], N, C, F);
        activation_units(g, f, B, T, H, F, act); /* as the model: a sequence at a time */
        linear_rows(y, g, p[10], wp[3], p[11], N, H, C);
        ew_binary_contig(x, x, y, N * C, EW_ADD, 0.0f);
    }
    free(buf);
    return rc;
}

/* logits (B, V) of each sequence's last new position, after T new positions per sequence: ids
 * (B, T) i32, sequence b at positions starts[b] .. starts[b] + T - 1 of cache slot slots[b]; the
 * other arguments as decode_step's. Returns 0, -1 if out of memory, -2 for a bad id or position. */
int prefill_step(float *logits, const int32_t *ids, int64_t B, int64_t T, const float *wte,
                 int64_t V, const float *wpe, int64_t n_pos, int64_t L, void *const *caches,
                 int64_t slot_stride, const int64_t *slots, const int64_t *starts,
                 const float *const *params, const float *const *packed, const float *lnf_w,
                 const float *lnf_b,
                 const float *head_t, int64_t head_ld, int64_t C, int64_t H, int64_t nh,
                 int act, float eps, const float *rope_cos, const float *rope_sin,
                 float softcap, int kv16) {
    int64_t N = B * T;
    for (int64_t i = 0; i < N; i++)
        if (ids[i] < 0 || ids[i] >= V) return -2;
    for (int64_t b = 0; b < B; b++)
        if (starts[b] < 0 || (wpe && starts[b] + T > n_pos)) return -2;
    float *x = (float *)malloc((size_t)(N * 2 * C + B * (2 * C + 2)) * sizeof(float));
    int32_t *pos32 = (int32_t *)malloc((size_t)N * sizeof(int32_t));
    int rc = 0;
    if (!x || !pos32) {
        rc = -1;
        goto done;
    }
    float *pos = x + N * C, *last = pos + N * C, *h = last + B * C, *stats = h + B * C;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) pos32[b * T + t] = (int32_t)(starts[b] + t);
    embedding_forward(x, ids, wte, N, C);
    if (wpe) {
        embedding_forward(pos, pos32, wpe, N, C);
        ew_binary_contig(x, x, pos, N * C, EW_ADD, 0.0f);
    }
    for (int64_t l = 0; l < L && !rc; l++)
        rc = prefill_block(x, B, T, caches[l], slot_stride, slots, starts, pos32,
                           params + 12 * l, packed ? packed + 4 * l : unpacked, C, H, nh, act, eps,
                           rope_cos, rope_sin, softcap, kv16);
    if (!rc) {
        for (int64_t b = 0; b < B; b++)
            memcpy(last + b * C, x + (b * T + T - 1) * C, C * sizeof(float));
        layernorm_forward(h, stats, stats + B, last, lnf_w, lnf_b, B, C, eps);
        product_rows(logits, h, head_t, head_ld, packed ? packed[4 * L] : NULL, B, C, V);
    }
done:
    free(x);
    free(pos32);
    return rc;
}
