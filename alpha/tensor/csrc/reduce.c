/* Reductions: sum / max over any set of axes (and sum_to's "+="), sum of squares, finite check.
 *
 * Determinism: every output element is reduced by one task in a fixed order (sums in float64);
 * sum_squares sums fixed 16K-element blocks, each with ALPHA_LANES fixed lanes, then adds the block
 * partials in order. Nothing depends on the thread count.
 */
#include "alpha.h"
#include "alpha_math.h"

#include <math.h>
#include <stdlib.h>

#define MAX_DIMS 16
#define COLS 256 /* output columns per task in the column strategy */

int alpha_coalesce(int64_t *shape, int64_t **strides, int n_ops, int ndim);

typedef struct {
    float *out;
    const float *x;
    int op, accumulate;           /* op 0 sum, 1 max */
    int nk, nr;
    int64_t kshape[MAX_DIMS], kx[MAX_DIMS], ko[MAX_DIMS]; /* kept dims: x and out strides */
    int64_t rshape[MAX_DIMS], rx[MAX_DIMS];
    int64_t n_red, inner, col_blocks;
} red_ctx;

static inline int64_t unravel(int64_t idx, const int64_t *shape, const int64_t *strides, int n) {
    int64_t off = 0;
    for (int d = n - 1; d >= 0; d--) {
        int64_t i = idx % shape[d];
        idx /= shape[d];
        off += i * strides[d];
    }
    return off;
}

static inline float finish(const red_ctx *c, float prev, double acc, float m) {
    if (c->op == 0) return c->accumulate ? prev + (float)acc : (float)acc;
    return m;
}

/* Row strategy: each output reduces its own elements; innermost reduced dim walked in order. */
static void row_task(void *vctx, int64_t begin, int64_t end) {
    red_ctx *c = (red_ctx *)vctx;
    int64_t rin = c->nr ? c->rshape[c->nr - 1] : 1;
    int64_t rs = c->nr ? c->rx[c->nr - 1] : 0;
    int64_t router = c->n_red / rin;
    for (int64_t k = begin; k < end; k++) {
        int64_t xo = unravel(k, c->kshape, c->kx, c->nk);
        int64_t oo = unravel(k, c->kshape, c->ko, c->nk);
        double lanes[ALPHA_LANES] = {0};
        float m = -INFINITY;
        for (int64_t r = 0; r < router; r++) {
            const float *p = c->x + xo + unravel(r, c->rshape, c->rx, c->nr - 1);
            if (c->op == 0) {
                if (rs == 1) {
                    int64_t i = 0;
                    for (; i + ALPHA_LANES <= rin; i += ALPHA_LANES)
                        for (int l = 0; l < ALPHA_LANES; l++) lanes[l] += (double)p[i + l];
                    for (; i < rin; i++) lanes[0] += (double)p[i];
                } else {
                    for (int64_t i = 0; i < rin; i++) lanes[0] += (double)p[i * rs];
                }
            } else {
                for (int64_t i = 0; i < rin; i++) {
                    float v = p[i * rs];
                    m = (v > m || v != v) ? v : m;
                    if (m != m) break;
                }
            }
        }
        double acc = 0.0;
        for (int l = 0; l < ALPHA_LANES; l++) acc += lanes[l];
        c->out[oo] = finish(c, c->out[oo], acc, m);
    }
}

/* Column strategy: the innermost kept dim is contiguous in x; a task owns COLS adjacent outputs
 * and walks every reduced index in order, accumulating a vector of outputs at once. */
static void col_task(void *vctx, int64_t begin, int64_t end) {
    red_ctx *c = (red_ctx *)vctx;
    double acc[COLS];
    float mx[COLS];
    int64_t ko_in = c->ko[c->nk - 1];
    for (int64_t t = begin; t < end; t++) {
        int64_t outer = t / c->col_blocks, cb = t % c->col_blocks;
        int64_t j0 = cb * COLS;
        int64_t w = c->inner - j0 < COLS ? c->inner - j0 : COLS;
        int64_t xo = unravel(outer, c->kshape, c->kx, c->nk - 1) + j0;
        int64_t oo = unravel(outer, c->kshape, c->ko, c->nk - 1) + j0 * ko_in;
        for (int64_t j = 0; j < w; j++) {
            acc[j] = 0.0;
            mx[j] = -INFINITY;
        }
        for (int64_t r = 0; r < c->n_red; r++) {
            const float *p = c->x + xo + unravel(r, c->rshape, c->rx, c->nr);
            if (c->op == 0) {
                for (int64_t j = 0; j < w; j++) acc[j] += (double)p[j];
            } else {
                for (int64_t j = 0; j < w; j++) {
                    float v = p[j];
                    mx[j] = (v > mx[j] || v != v) ? v : mx[j];
                }
            }
        }
        for (int64_t j = 0; j < w; j++)
            c->out[oo + j * ko_in] = finish(c, c->out[oo + j * ko_in], acc[j], mx[j]);
    }
}

/* out[kept] (=|+=) reduce over the reduced dims of x. Kept dims carry x strides and out strides;
 * reduced dims carry x strides. op 0: sum (float64 accumulation), op 1: max. */
void reduce_f32(float *out, const float *x, int op, int accumulate,
                const int64_t *kshape, const int64_t *kx, const int64_t *ko, int nk,
                const int64_t *rshape, const int64_t *rx, int nr) {
    red_ctx c;
    c.out = out;
    c.x = x;
    c.op = op;
    c.accumulate = accumulate;
    int64_t n_out = 1;
    c.n_red = 1;
    for (int d = 0; d < nk; d++) {
        c.kshape[d] = kshape[d];
        c.kx[d] = kx[d];
        c.ko[d] = ko[d];
        n_out *= kshape[d];
    }
    for (int d = 0; d < nr; d++) {
        c.rshape[d] = rshape[d];
        c.rx[d] = rx[d];
        c.n_red *= rshape[d];
    }
    if (n_out == 0) return;
    int64_t *ks[2] = {c.kx, c.ko};
    int64_t *rs[1] = {c.rx};
    c.nk = alpha_coalesce(c.kshape, ks, 2, nk);
    c.nr = alpha_coalesce(c.rshape, rs, 1, nr);
    if (c.n_red == 0) c.nr = 0; /* sum over nothing = 0, max over nothing = -inf */
    int64_t n_red = c.n_red == 0 ? 1 : c.n_red;
    if (c.n_red == 0) {
        for (int64_t k = 0; k < n_out; k++) {
            int64_t oo = unravel(k, c.kshape, c.ko, c.nk);
            out[oo] = op == 0 ? (accumulate ? out[oo] : 0.0f) : -INFINITY;
        }
        return;
    }
    int col = c.nk > 0 && c.kx[c.nk - 1] == 1 && (c.nr == 0 || c.rx[c.nr - 1] != 1);
    if (col) {
        c.inner = c.kshape[c.nk - 1];
        c.col_blocks = (c.inner + COLS - 1) / COLS;
        int64_t tasks = n_out / c.inner * c.col_blocks;
        int64_t per = n_red * (c.inner < COLS ? c.inner : COLS);
        alpha_parallel_for(tasks, per >= 65536 ? 1 : 65536 / per, col_task, &c);
    } else {
        alpha_parallel_for(n_out, n_red >= 65536 ? 1 : 65536 / n_red, row_task, &c);
    }
}

/* ---- sum of squares, finite check (contiguous) ----------------------------------------------- */

#define SQ_BLOCK 16384

typedef struct {
    const float *x;
    int64_t n;
    double *partial;
    int *bad;
} sq_ctx;

static void sq_task(void *vctx, int64_t begin, int64_t end) {
    sq_ctx *c = (sq_ctx *)vctx;
    for (int64_t blk = begin; blk < end; blk++) {
        int64_t i0 = blk * SQ_BLOCK;
        int64_t n = c->n - i0 < SQ_BLOCK ? c->n - i0 : SQ_BLOCK;
        const float *p = c->x + i0;
        double lanes[ALPHA_LANES] = {0};
        int64_t i = 0;
        for (; i + ALPHA_LANES <= n; i += ALPHA_LANES)
            for (int l = 0; l < ALPHA_LANES; l++) {
                double v = (double)p[i + l];
                lanes[l] += v * v;
            }
        for (; i < n; i++) lanes[0] += (double)p[i] * (double)p[i];
        double s = 0.0;
        for (int l = 0; l < ALPHA_LANES; l++) s += lanes[l];
        c->partial[blk] = s;
    }
}

double sum_squares_f32(const float *x, int64_t n) {
    int64_t blocks = (n + SQ_BLOCK - 1) / SQ_BLOCK;
    double stack[64];
    double *partial = blocks <= 64 ? stack : (double *)malloc((size_t)blocks * sizeof(double));
    if (!partial) return -1.0;
    sq_ctx c = {x, n, partial, NULL};
    alpha_parallel_for(blocks, 4, sq_task, &c);
    double s = 0.0;
    for (int64_t b = 0; b < blocks; b++) s += partial[b];
    if (partial != stack) free(partial);
    return s;
}

static void finite_task(void *vctx, int64_t begin, int64_t end) {
    sq_ctx *c = (sq_ctx *)vctx;
    int64_t e = end * SQ_BLOCK < c->n ? end * SQ_BLOCK : c->n;
    const int32_t *p = (const int32_t *)c->x;
    int32_t any = 0;
    for (int64_t i = begin * SQ_BLOCK; i < e; i++)
        any |= ((p[i] & 0x7f800000) == 0x7f800000);
    if (any) *c->bad = 1; /* benign race: every writer stores 1 */
}

int all_finite_f32(const float *x, int64_t n) {
    int bad = 0;
    sq_ctx c = {x, n, NULL, &bad};
    alpha_parallel_for((n + SQ_BLOCK - 1) / SQ_BLOCK, 4, finite_task, &c);
    return !bad;
}
