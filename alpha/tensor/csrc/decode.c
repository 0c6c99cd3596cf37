/* One transformer block for one new token (batch 1) against a KV cache, in one call.
 *
 * This is the inference engine's per-op decode sequence (alpha/model/inference.py) run from C:
 * the same kernels, called in the same order with the same arguments, so the result is
 * bit-identical to the op-by-op path; only the Python and ctypes overhead between the ~14 ops
 * of a block is gone (it cost as much as the block's arithmetic at batch 1).
 *
 *   h = layernorm(x; ln_1)                  cache[pos] = h @ c_attn (+ b)   (the [q | k | v] row)
 *   att = kv_attention(q, cache k, v)       x = x + (att @ attn.c_proj (+ b))
 *   h = layernorm(x; ln_2)                  f = h @ c_fc (+ b);  g = act(f)
 *   x = x + (g @ mlp.c_proj (+ b))
 *
 * Not here: batches, several new positions (prefill), the embedding and the LM head.
 */
#include "alpha.h"

#include <stdlib.h>

void alpha_sgemm(int64_t batch, int64_t M, int64_t N, int64_t K, const float *a, int64_t a_bs,
                 int64_t a_rs, int64_t a_cs, const float *b, int64_t b_bs, int64_t b_rs,
                 int64_t b_cs, float *c, int64_t c_bs, int64_t ldc, float alpha, int accumulate);
void layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *weight,
                       const float *bias, int64_t N, int64_t C, float eps);
int kv_attention(float *out, const float *q, int64_t qsb, int64_t qst, const float *k,
                 int64_t ksb, int64_t kst, const float *v, int64_t vsb, int64_t vst, int64_t B,
                 int64_t Tq, int64_t C, int64_t nh, int64_t start);
void ew_binary_contig(float *out, const float *a, const float *b, int64_t n, int op, float s);
void gelu_forward(float *out, const float *x, int64_t n);
void relu_forward(float *out, const float *x, int64_t n);
void silu_forward(float *out, const float *x, int64_t n);
void swiglu_forward(float *out, const float *x, int64_t N, int64_t H);

enum { ACT_GELU, ACT_RELU, ACT_SILU, ACT_SWIGLU };
#define EW_ADD 0 /* elementwise.c's B_ADD */

/* out (n_out) = x (n_in) @ w (n_in, n_out) + b: the engine's `_linear` for one row */
static void linear_row(float *out, const float *x, const float *w, const float *b, int64_t n_in,
                       int64_t n_out) {
    alpha_sgemm(1, 1, n_out, n_in, x, 0, n_in, 1, w, 0, n_out, 1, out, 0, n_out, 1.0f, 0);
    if (b) ew_binary_contig(out, out, b, n_out, EW_ADD, 0.0f);
}

/* x (C) in place; cache (Tmax, 3C) rows [q | k | v], row pos written; p: the 12 parameters in
 * order ln_1.{weight,bias}, attn.c_attn.{weight,bias}, attn.c_proj.{weight,bias},
 * ln_2.{weight,bias}, mlp.c_fc.{weight,bias}, mlp.c_proj.{weight,bias} (biases may be NULL);
 * H the MLP hidden size (c_fc has 2H outputs for SwiGLU). Returns 0, or -1 if out of memory. */
int block_decode(float *x, float *cache, int64_t pos, const float *ln1_w, const float *ln1_b,
                 const float *attn_w, const float *attn_b, const float *proj_w,
                 const float *proj_b, const float *ln2_w, const float *ln2_b, const float *fc_w,
                 const float *fc_b, const float *mlp_w, const float *mlp_b, int64_t C, int64_t H,
                 int64_t nh, int act, float eps) {
    int64_t F = act == ACT_SWIGLU ? 2 * H : H;
    float *buf = (float *)malloc((size_t)(3 * C + F + H + 2) * sizeof(float));
    if (!buf) return -1;
    float *h = buf, *att = h + C, *y = att + C, *f = y + C, *g = f + F, *stats = g + H;
    float *row = cache + pos * 3 * C; /* [q | k | v] of this position */
    int rc = 0;

    layernorm_forward(h, stats, stats + 1, x, ln1_w, ln1_b, 1, C, eps);
    linear_row(row, h, attn_w, attn_b, C, 3 * C);
    if (kv_attention(att, row, 0, 3 * C, cache + C, 0, 3 * C, cache + 2 * C, 0, 3 * C, 1, 1, C,
                     nh, pos))
        rc = -1;
    linear_row(y, att, proj_w, proj_b, C, C);
    ew_binary_contig(x, x, y, C, EW_ADD, 0.0f);

    layernorm_forward(h, stats, stats + 1, x, ln2_w, ln2_b, 1, C, eps);
    linear_row(f, h, fc_w, fc_b, C, F);
    switch (act) {
    case ACT_GELU: gelu_forward(g, f, H); break;
    case ACT_RELU: relu_forward(g, f, H); break;
    case ACT_SILU: silu_forward(g, f, H); break;
    default: swiglu_forward(g, f, 1, H); break;
    }
    linear_row(y, g, mlp_w, mlp_b, H, C);
    ew_binary_contig(x, x, y, C, EW_ADD, 0.0f);
    free(buf);
    return rc;
}
