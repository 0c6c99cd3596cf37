/* Activations, forward/backward pairs: GELU (tanh approximation), ReLU, ReLU^2, SiLU, SwiGLU;
 * and the logit soft-cap c * tanh(x / c), whose backward reads the forward's output.
 * Forward overwrites out; backward adds into dx. Contiguous f32.
 *
 * GELU uses 0.5 (1 + tanh(u)) = sigmoid(2u), which has no cancellation for negative x, and
 * 1 - tanh(u)^2 = 4 s (1 - s) with s = sigmoid(2u) in the backward.
 */
#include "alpha.h"
#include "alpha_math.h"

#define PIECE 16384
#define GELU_K 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_C 0.044715f

typedef struct {
    float *out;
    const float *a, *b;
    int64_t n;
    float s; /* a scalar: the soft-cap's c */
} act_ctx;

/* Defines NAME_task over fixed PIECE-sized chunks with BODY run for each index i. */
#define FLAT_TASK(NAME, BODY)                                                                  \
    static void NAME##_task(void *vctx, int64_t begin, int64_t end) {                          \
        act_ctx *c = (act_ctx *)vctx;                                                          \
        float *o = c->out;                                                                     \
        const float *a = c->a;                                                                 \
        const float *b = c->b;                                                                 \
        float s = c->s;                                                                        \
        (void)b;                                                                               \
        (void)s;                                                                               \
        int64_t e = end * PIECE < c->n ? end * PIECE : c->n;                                   \
        for (int64_t i = begin * PIECE; i < e; i++) { BODY; }                                  \
    }

static inline float gelu_grad(float x) {
    float u = GELU_K * (x + GELU_C * x * x * x);
    float s = alpha_sigmoidf(2.0f * u);
    return s + 2.0f * x * s * (1.0f - s) * GELU_K * (1.0f + 3.0f * GELU_C * x * x);
}

static inline float silu_grad(float x) {
    float s = alpha_sigmoidf(x);
    return s * (1.0f + x * (1.0f - s));
}

static inline float gelu(float x) {
    return x * alpha_sigmoidf(2.0f * GELU_K * (x + GELU_C * x * x * x));
}

FLAT_TASK(gelu_fwd, o[i] = gelu(a[i]))
FLAT_TASK(gelu_bwd, o[i] += b[i] * gelu_grad(a[i]))
FLAT_TASK(relu_fwd, o[i] = a[i] > 0.0f ? a[i] : 0.0f)
FLAT_TASK(relu_bwd, o[i] += a[i] > 0.0f ? b[i] : 0.0f)
FLAT_TASK(relu2_fwd, o[i] = a[i] > 0.0f ? a[i] * a[i] : 0.0f)
FLAT_TASK(relu2_bwd, o[i] += a[i] > 0.0f ? 2.0f * a[i] * b[i] : 0.0f)
FLAT_TASK(softcap_fwd, o[i] = s * alpha_tanhf(a[i] / s))
FLAT_TASK(softcap_bwd, o[i] += b[i] * (1.0f - (a[i] / s) * (a[i] / s)))
FLAT_TASK(silu_fwd, o[i] = a[i] * alpha_sigmoidf(a[i]))
FLAT_TASK(silu_bwd, o[i] += b[i] * silu_grad(a[i]))

static void run_flat_s(alpha_task_fn fn, float *out, const float *a, const float *b, int64_t n,
                       float s) {
    act_ctx c = {out, a, b, n, s};
    alpha_parallel_for((n + PIECE - 1) / PIECE, 4, fn, &c);
}

static void run_flat(alpha_task_fn fn, float *out, const float *a, const float *b, int64_t n) {
    act_ctx c = {out, a, b, n, 0.0f};
    alpha_parallel_for((n + PIECE - 1) / PIECE, 4, fn, &c);
}

void gelu_forward(float *out, const float *x, int64_t n) { run_flat(gelu_fwd_task, out, x, x, n); }

void gelu_backward(float *dx, const float *dout, const float *x, int64_t n) {
    run_flat(gelu_bwd_task, dx, x, dout, n);
}

void relu_forward(float *out, const float *x, int64_t n) { run_flat(relu_fwd_task, out, x, x, n); }

void relu_backward(float *dx, const float *dout, const float *x, int64_t n) {
    run_flat(relu_bwd_task, dx, x, dout, n);
}

void relu2_forward(float *out, const float *x, int64_t n) {
    run_flat(relu2_fwd_task, out, x, x, n);
}

void relu2_backward(float *dx, const float *dout, const float *x, int64_t n) {
    run_flat(relu2_bwd_task, dx, x, dout, n);
}

void softcap_forward(float *out, const float *x, int64_t n, float cap) {
    run_flat_s(softcap_fwd_task, out, x, x, n, cap);
}

/* dx += dout * (1 - (out / cap)^2) */
void softcap_backward(float *dx, const float *dout, const float *out, int64_t n, float cap) {
    run_flat_s(softcap_bwd_task, dx, out, dout, n, cap);
}

void silu_forward(float *out, const float *x, int64_t n) { run_flat(silu_fwd_task, out, x, x, n); }

void silu_backward(float *dx, const float *dout, const float *x, int64_t n) {
    run_flat(silu_bwd_task, dx, x, dout, n);
}

/* ---- SwiGLU: x (N, 2H) -> out (N, H) = silu(x[:, :H]) * x[:, H:] ------------------------- */

typedef struct {
    float *out;
    const float *x, *dout;
    int64_t H;
} swiglu_ctx;

static void swiglu_fwd_task(void *vctx, int64_t begin, int64_t end) {
    swiglu_ctx *c = (swiglu_ctx *)vctx;
    int64_t H = c->H;
    for (int64_t r = begin; r < end; r++) {
        const float *g = c->x + r * 2 * H, *u = g + H;
        float *o = c->out + r * H;
        for (int64_t j = 0; j < H; j++) o[j] = g[j] * alpha_sigmoidf(g[j]) * u[j];
    }
}

static void swiglu_bwd_task(void *vctx, int64_t begin, int64_t end) {
    swiglu_ctx *c = (swiglu_ctx *)vctx;
    int64_t H = c->H;
    for (int64_t r = begin; r < end; r++) {
        const float *g = c->x + r * 2 * H, *u = g + H, *d = c->dout + r * H;
        float *dg = c->out + r * 2 * H, *du = dg + H;
        for (int64_t j = 0; j < H; j++) {
            float s = alpha_sigmoidf(g[j]);
            dg[j] += d[j] * u[j] * s * (1.0f + g[j] * (1.0f - s));
            du[j] += d[j] * g[j] * s;
        }
    }
}

void swiglu_forward(float *out, const float *x, int64_t N, int64_t H) {
    swiglu_ctx c = {out, x, NULL, H};
    alpha_parallel_for(N, H >= 32768 ? 1 : 32768 / H, swiglu_fwd_task, &c);
}

void swiglu_backward(float *dx, const float *dout, const float *x, int64_t N, int64_t H) {
    swiglu_ctx c = {dx, x, dout, H};
    alpha_parallel_for(N, H >= 32768 ? 1 : 32768 / H, swiglu_bwd_task, &c);
}

/* ---- on the calling thread ---------------------------------------------------------------
 * The forwards above without the thread pool, for a caller that already splits its rows over
 * the threads (csrc/decode.c; a task must not submit to the pool): the same loops, so the same
 * bits. N rows of H outputs; act as decode.c's codes: 0 GELU, 1 ReLU, 2 SiLU, 3 SwiGLU (x is N
 * rows of 2H), 4 ReLU^2. */
void act_forward_here(int act, float *out, const float *x, int64_t N, int64_t H) {
    if (act == 3) {
        swiglu_ctx c = {out, x, NULL, H};
        swiglu_fwd_task(&c, 0, N);
        return;
    }
    act_ctx c = {out, x, x, N * H, 0.0f};
    int64_t pieces = (N * H + PIECE - 1) / PIECE;
    switch (act) {
    case 0: gelu_fwd_task(&c, 0, pieces); break;
    case 1: relu_fwd_task(&c, 0, pieces); break;
    case 2: silu_fwd_task(&c, 0, pieces); break;
    default: relu2_fwd_task(&c, 0, pieces); break;
    }
}
