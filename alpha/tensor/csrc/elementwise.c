/* Elementwise f32 ops over strided, broadcast operands: binary (a op b), unary and scalar ops,
 * axpy, where_mask.
 *
 * Every operand comes with its own strides over the output's shape (a broadcast dim has stride
 * 0). Dims are coalesced first; the innermost dim is then a "span" whose common cases
 * (all contiguous, one operand a broadcast scalar) are plain loops the compiler vectorises.
 * Work is split into rows x fixed pieces of the innermost dim, so each element is computed by
 * the same code whatever the thread count.
 */
#include "alpha.h"
#include "alpha_math.h"

#include <math.h>

#define MAX_DIMS 16
#define PIECE 16384

int alpha_coalesce(int64_t *shape, int64_t **strides, int n_ops, int ndim);

enum { B_ADD, B_SUB, B_MUL, B_DIV, B_MAX, B_MIN, B_AXPY, B_WHERE };
enum {
    U_NEG, U_EXP, U_LOG, U_SQRT, U_RSQRT, U_TANH, U_ABS, U_SQUARE, U_RECIPROCAL,
    S_ADD = 10, S_SUB, S_MUL, S_DIV, S_MAX, S_MIN, S_POW, S_RSUB, S_RDIV
};

static inline float fmax_nan(float a, float b) { return (a > b || a != a) ? a : b; }
static inline float fmin_nan(float a, float b) { return (a < b || a != a) ? a : b; }

/* ---- spans ------------------------------------------------------------------------------ */

#define BIN_LOOP(EXPR)                                                                         \
    do {                                                                                       \
        if (so == 1 && sa == 1 && sb == 1) {                                                   \
            for (int64_t i = 0; i < n; i++) {                                                  \
                float x = a[i], y = b[i];                                                      \
                o[i] = (EXPR);                                                                 \
            }                                                                                  \
        } else if (so == 1 && sa == 1 && sb == 0) {                                            \
            float y = b[0];                                                                    \
            for (int64_t i = 0; i < n; i++) {                                                  \
                float x = a[i];                                                                \
                o[i] = (EXPR);                                                                 \
            }                                                                                  \
        } else if (so == 1 && sa == 0 && sb == 1) {                                            \
            float x = a[0];                                                                    \
            for (int64_t i = 0; i < n; i++) {                                                  \
                float y = b[i];                                                                \
                o[i] = (EXPR);                                                                 \
            }                                                                                  \
        } else {                                                                               \
            for (int64_t i = 0; i < n; i++) {                                                  \
                float x = a[i * sa], y = b[i * sb];                                            \
                o[i * so] = (EXPR);                                                            \
            }                                                                                  \
        }                                                                                      \
    } while (0)

static void binary_span(int op, float s, float *o, int64_t so, const float *a, int64_t sa,
                        const float *b, int64_t sb, int64_t n) {
    switch (op) {
    case B_ADD: BIN_LOOP(x + y); break;
    case B_SUB: BIN_LOOP(x - y); break;
    case B_MUL: BIN_LOOP(x * y); break;
    case B_DIV: BIN_LOOP(x / y); break;
    case B_MAX: BIN_LOOP(fmax_nan(x, y)); break;
    case B_MIN: BIN_LOOP(fmin_nan(x, y)); break;
    case B_AXPY: BIN_LOOP(x + s * y); break;
    case B_WHERE: BIN_LOOP(y != 0.0f ? s : x); break;
    }
}

#define UN_LOOP(EXPR)                                                                          \
    do {                                                                                       \
        if (so == 1 && sa == 1) {                                                              \
            for (int64_t i = 0; i < n; i++) {                                                  \
                float x = a[i];                                                                \
                o[i] = (EXPR);                                                                 \
            }                                                                                  \
        } else {                                                                               \
            for (int64_t i = 0; i < n; i++) {                                                  \
                float x = a[i * sa];                                                           \
                o[i * so] = (EXPR);                                                            \
            }                                                                                  \
        }                                                                                      \
    } while (0)

static void unary_span(int op, float s, float *o, int64_t so, const float *a, int64_t sa,
                       int64_t n) {
    switch (op) {
    case U_NEG: UN_LOOP(-x); break;
    case U_EXP: UN_LOOP(alpha_expf(x)); break;
    case U_LOG: UN_LOOP(logf(x)); break;
    case U_SQRT: UN_LOOP(sqrtf(x)); break;
    case U_RSQRT: UN_LOOP(1.0f / sqrtf(x)); break;
    case U_TANH: UN_LOOP(tanhf(x)); break;
    case U_ABS: UN_LOOP(fabsf(x)); break;
    case U_SQUARE: UN_LOOP(x * x); break;
    case U_RECIPROCAL: UN_LOOP(1.0f / x); break;
    case S_ADD: UN_LOOP(x + s); break;
    case S_SUB: UN_LOOP(x - s); break;
    case S_MUL: UN_LOOP(x * s); break;
    case S_DIV: UN_LOOP(x / s); break;
    case S_MAX: UN_LOOP(fmax_nan(x, s)); break;
    case S_MIN: UN_LOOP(fmin_nan(x, s)); break;
    case S_POW:
        if (s == 2.0f) UN_LOOP(x * x);
        else if (s == 1.0f) UN_LOOP(x);
        else if (s == 0.5f) UN_LOOP(sqrtf(x));
        else UN_LOOP(powf(x, s));
        break;
    case S_RSUB: UN_LOOP(s - x); break;
    case S_RDIV: UN_LOOP(s / x); break;
    }
}

/* ---- the n-d driver ------------------------------------------------------------------------ */

typedef struct {
    float *o;
    const float *a, *b;
    int64_t shape[MAX_DIMS], so[MAX_DIMS], sa[MAX_DIMS], sb[MAX_DIMS];
    int ndim, op, binary;
    float s;
    int64_t inner, pieces;
} ew_ctx;

static void ew_task(void *vctx, int64_t begin, int64_t end) {
    ew_ctx *c = (ew_ctx *)vctx;
    int nd = c->ndim;
    for (int64_t task = begin; task < end; task++) {
        int64_t row = task / c->pieces, piece = task % c->pieces;
        int64_t oo = 0, ao = 0, bo = 0, r = row;
        for (int d = nd - 2; d >= 0; d--) {
            int64_t i = r % c->shape[d];
            r /= c->shape[d];
            oo += i * c->so[d];
            ao += i * c->sa[d];
            bo += i * c->sb[d];
        }
        int64_t i0 = piece * PIECE;
        int64_t n = c->inner - i0 < PIECE ? c->inner - i0 : PIECE;
        int64_t so = c->so[nd - 1], sa = c->sa[nd - 1], sb = c->sb[nd - 1];
        oo += i0 * so;
        ao += i0 * sa;
        bo += i0 * sb;
        if (c->binary)
            binary_span(c->op, c->s, c->o + oo, so, c->a + ao, sa, c->b + bo, sb, n);
        else
            unary_span(c->op, c->s, c->o + oo, so, c->a + ao, sa, n);
    }
}

static void ew_run(ew_ctx *c, const int64_t *shape, const int64_t *so, const int64_t *sa,
                   const int64_t *sb, int ndim) {
    int n_ops = c->binary ? 3 : 2;
    int64_t *strides[3] = {c->so, c->sa, c->sb};
    if (ndim > MAX_DIMS) return;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 0) return;
        c->shape[d] = shape[d];
        c->so[d] = so[d];
        c->sa[d] = sa[d];
        c->sb[d] = c->binary ? sb[d] : 0;
    }
    int nd = alpha_coalesce(c->shape, strides, n_ops, ndim);
    if (nd == 0) { /* a single element */
        nd = 1;
        c->shape[0] = 1;
        c->so[0] = c->sa[0] = c->sb[0] = 1;
    }
    c->ndim = nd;
    c->inner = c->shape[nd - 1];
    c->pieces = (c->inner + PIECE - 1) / PIECE;
    int64_t rows = 1;
    for (int d = 0; d < nd - 1; d++) rows *= c->shape[d];
    int64_t grain = c->inner >= PIECE ? 4 : 4 * PIECE / c->inner;
    alpha_parallel_for(rows * c->pieces, grain, ew_task, c);
}

/* out = a <op> b (op: add sub mul div max min axpy(a + s*b) where(b != 0 ? s : a)). */
void ew_binary(float *out, const int64_t *out_strides, const float *a, const int64_t *a_strides,
               const float *b, const int64_t *b_strides, const int64_t *shape, int ndim, int op,
               float s) {
    ew_ctx c;
    c.o = out;
    c.a = a;
    c.b = b;
    c.op = op;
    c.s = s;
    c.binary = 1;
    ew_run(&c, shape, out_strides, a_strides, b_strides, ndim);
}

/* out = op(x) or x <op> s. */
void ew_unary(float *out, const int64_t *out_strides, const float *x, const int64_t *x_strides,
              const int64_t *shape, int ndim, int op, float s) {
    ew_ctx c;
    c.o = out;
    c.a = x;
    c.b = x;
    c.op = op;
    c.s = s;
    c.binary = 0;
    ew_run(&c, shape, out_strides, x_strides, NULL, ndim);
}

/* ---- contiguous fast paths (no shape arrays to build in Python) ------------------------------ */

typedef struct {
    float *o;
    const float *a, *b;
    int op;
    float s;
} flat_ctx;

static void flat_binary_task(void *vctx, int64_t begin, int64_t end) {
    flat_ctx *c = (flat_ctx *)vctx;
    for (int64_t p = begin; p < end; p++) {
        int64_t i0 = p * PIECE;
        binary_span(c->op, c->s, c->o + i0, 1, c->a + i0, 1, c->b + i0, 1, PIECE);
    }
}

static void flat_unary_task(void *vctx, int64_t begin, int64_t end) {
    flat_ctx *c = (flat_ctx *)vctx;
    for (int64_t p = begin; p < end; p++) {
        int64_t i0 = p * PIECE;
        unary_span(c->op, c->s, c->o + i0, 1, c->a + i0, 1, PIECE);
    }
}

void ew_binary_contig(float *out, const float *a, const float *b, int64_t n, int op, float s) {
    flat_ctx c = {out, a, b, op, s};
    int64_t full = n / PIECE;
    alpha_parallel_for(full, 4, flat_binary_task, &c);
    int64_t i0 = full * PIECE;
    if (i0 < n) binary_span(op, s, out + i0, 1, a + i0, 1, b + i0, 1, n - i0);
}

void ew_unary_contig(float *out, const float *x, int64_t n, int op, float s) {
    flat_ctx c = {out, x, x, op, s};
    int64_t full = n / PIECE;
    alpha_parallel_for(full, 4, flat_unary_task, &c);
    int64_t i0 = full * PIECE;
    if (i0 < n) unary_span(op, s, out + i0, 1, x + i0, 1, n - i0);
}
