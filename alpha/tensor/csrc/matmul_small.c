/* SGEMM for few rows (M <= SMALL_M = 4): one token per sequence at inference, a GEMV in effect.
 *
 * No packing: packing B would cost as much as the product itself and an MR-row tile of the packed
 * kernel would be mostly empty. Each output element is one chain of fused multiply-adds over k,
 * read straight from B: the axpy form when B is contiguous along n, dot products when B is
 * contiguous along k (y = x @ W^T with W stored (N, K)). Threads split the columns in chunks
 * whose size depends only on the shapes, so results never depend on the thread count.
 */
#include "matmul.h"

/* fmaf is exactly rounded, so the vectorised and scalar parts of a loop give the same bits. */

#if defined(__AVX512F__)
#define AX_V 4 /* vectors per row block when B's rows are contiguous (registers: 4 x AX_V + 5) */
#else
#define AX_V 2
#endif
#define AX_W (AX_V * VW)
#define DOT_W (2 * VW) /* k lanes per dot product when B's columns are contiguous */

typedef struct {
    gemm_t g;
    const float *a_rows; /* op(A) as M contiguous rows of K (the dot form only) */
    int64_t n_chunk;
} small_t;

static inline float finish(float acc, float alpha, int beta, float c) {
    return beta ? fmaf(acc, alpha, c) : acc * alpha;
}

/* C[:, n0:n1] when B is contiguous along n: acc[m][j] += a[m][k] * B[k][j], k = 0..K-1, for all
 * `rows` (<= SMALL_M) rows at once so B is read once, in registers AX_V vectors wide; columns past
 * the last whole block run the same fmaf one by one. */
static inline __attribute__((always_inline)) void axpy_rows(const gemm_t *g, const int rows,
                                                           int64_t n0, int64_t n1) {
    float tmp[AX_W] __attribute__((aligned(64)));
    int64_t j = n0;
    for (; j + AX_W <= n1; j += AX_W) {
        vf_t acc[SMALL_M][AX_V];
        for (int m = 0; m < rows; m++)
            for (int v = 0; v < AX_V; v++) acc[m][v] = V_ZERO();
        const float *br = g->b + j;
        const float *a = g->a;
        for (int64_t k = 0; k < g->K; k++, br += g->b_rs, a += g->a_cs) {
            vf_t bv[AX_V];
            for (int v = 0; v < AX_V; v++) bv[v] = V_LOAD(br + v * VW);
            for (int m = 0; m < rows; m++) {
                vf_t av = V_SET1(a[m * g->a_rs]);
                for (int v = 0; v < AX_V; v++) acc[m][v] = V_FMA(av, bv[v], acc[m][v]);
            }
        }
        for (int m = 0; m < rows; m++) {
            float *c = g->c + m * g->ldc + j;
            for (int v = 0; v < AX_V; v++) V_STORE(tmp + v * VW, acc[m][v]);
            for (int l = 0; l < AX_W; l++) c[l] = finish(tmp[l], g->alpha, g->accumulate, c[l]);
        }
    }
    for (; j < n1; j++) {
        for (int m = 0; m < rows; m++) {
            const float *a = g->a + m * g->a_rs;
            float acc = 0.0f;
            for (int64_t k = 0; k < g->K; k++)
                acc = fmaf(a[k * g->a_cs], g->b[k * g->b_rs + j], acc);
            float *c = g->c + m * g->ldc + j;
            *c = finish(acc, g->alpha, g->accumulate, *c);
        }
    }
}

static void small_axpy(const small_t *s, int64_t n0, int64_t n1) {
    switch (s->g.M) {
    case 1: axpy_rows(&s->g, 1, n0, n1); break;
    case 2: axpy_rows(&s->g, 2, n0, n1); break;
    case 3: axpy_rows(&s->g, 3, n0, n1); break;
    default: axpy_rows(&s->g, 4, n0, n1); break;
    }
}

/* C[:, n:n+cols] when B is contiguous along k: dot products of A's rows with B's columns, each in
 * two vector chains over k, then a fixed pairwise sum of the lanes, plus a scalar tail; all rows
 * and `cols` columns at once for more independent chains (the arithmetic per element is the same).
 */
static inline __attribute__((always_inline)) void dot_block(const small_t *s, const int rows,
                                                           const int cols, int64_t n) {
    const gemm_t *g = &s->g;
    int64_t K = g->K, kv = K / DOT_W * DOT_W;
    vf_t acc[SMALL_M][2][2];
    for (int m = 0; m < rows; m++)
        for (int j = 0; j < cols; j++) acc[m][j][0] = acc[m][j][1] = V_ZERO();
    const float *bc[2] = {g->b + n * g->b_cs, g->b + (n + cols - 1) * g->b_cs};
    for (int64_t k = 0; k < kv; k += 2 * VW) {
        vf_t b[2][2];
        for (int j = 0; j < cols; j++) {
            b[j][0] = V_LOAD(bc[j] + k);
            b[j][1] = V_LOAD(bc[j] + k + VW);
        }
        for (int m = 0; m < rows; m++) {
            const float *ar = s->a_rows + m * K + k;
            vf_t a0 = V_LOAD(ar), a1 = V_LOAD(ar + VW);
            for (int j = 0; j < cols; j++) {
                acc[m][j][0] = V_FMA(a0, b[j][0], acc[m][j][0]);
                acc[m][j][1] = V_FMA(a1, b[j][1], acc[m][j][1]);
            }
        }
    }
    for (int m = 0; m < rows; m++) {
        const float *ar = s->a_rows + m * K;
        for (int j = 0; j < cols; j++) {
            float tail = 0.0f;
            for (int64_t k = kv; k < K; k++) tail = fmaf(ar[k], bc[j][k], tail);
            float *c = g->c + m * g->ldc + n + j;
            float sum = v_hsum(V_ADD(acc[m][j][0], acc[m][j][1])) + tail;
            *c = finish(sum, g->alpha, g->accumulate, *c);
        }
    }
}

static inline __attribute__((always_inline)) void dot_rows(const small_t *s, const int rows,
                                                          int64_t n0, int64_t n1) {
    int64_t n = n0;
    for (; n + 2 <= n1; n += 2) dot_block(s, rows, 2, n);
    if (n < n1) dot_block(s, rows, 1, n);
}

static void small_dot(const small_t *s, int64_t n0, int64_t n1) {
    switch (s->g.M) {
    case 1: dot_rows(s, 1, n0, n1); break;
    case 2: dot_rows(s, 2, n0, n1); break;
    case 3: dot_rows(s, 3, n0, n1); break;
    default: dot_rows(s, 4, n0, n1); break;
    }
}

static void small_task(void *ctx, int64_t begin, int64_t end) {
    const small_t *s = (const small_t *)ctx;
    int64_t n0 = begin * s->n_chunk, n1 = min64(end * s->n_chunk, s->g.N);
    if (s->g.b_cs == 1)
        small_axpy(s, n0, n1);
    else
        small_dot(s, n0, n1);
}

/* One matrix with few rows; B must be contiguous along n (b_cs == 1) or along k (b_rs == 1). */
void alpha_gemm_small(const gemm_t *g, int threads) {
    if (g->K == 0) {
        zero_or_keep(g);
        return;
    }
    small_t s = {.g = *g};
    float *rows = NULL;
    if (g->b_cs != 1) {
        if (g->a_cs == 1) {
            s.a_rows = g->a; /* rows already contiguous... */
            if (g->M > 1 && g->a_rs != g->K) s.a_rows = NULL; /* ...but not back to back */
        }
        if (!s.a_rows) {
            rows = alloc_floats(g->M * g->K);
            if (!rows) abort();
            for (int64_t m = 0; m < g->M; m++)
                for (int64_t k = 0; k < g->K; k++)
                    rows[m * g->K + k] = g->a[m * g->a_rs + k * g->a_cs];
            s.a_rows = rows;
        }
    }
    /* chunks of whole blocks with enough work each (about 64K multiply-adds) */
    int64_t unit = g->b_cs == 1 ? AX_W : 4;
    int64_t per = ceil_div(65536, g->K * g->M * unit) * unit;
    s.n_chunk = per;
    int64_t chunks = ceil_div(g->N, per);
    if (threads > 1 && chunks > 1)
        alpha_parallel_for(chunks, 1, small_task, &s);
    else
        small_task(&s, 0, chunks);
    free(rows);
}

