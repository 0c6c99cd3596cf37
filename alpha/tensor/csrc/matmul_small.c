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


/* ---- any number of rows, each computed as above: the batch-invariant product --------------
 *
 * Batched decode must give every sequence the same bits whatever else is in the batch, but
 * alpha_sgemm switches from this file's per-element chains (M <= 4) to the packed kernel (M > 4,
 * K split in KC blocks, a different rounding). alpha_sgemm_rows computes EVERY row with the
 * few-rows arithmetic: rows in groups of SMALL_M, so each element is the same chain as at M = 1.
 * The column chunk is the outer loop (one chunk per task), so a chunk of B, read from memory once,
 * serves every row group from cache: batching still turns M matvecs into one pass over B. */

typedef struct {
    small_t s;
    int64_t M;
    int packed; /* B in panels (alpha_pack_panels), not rows */
} rows_t;

/* Many rows against B contiguous along n: tiles of up to WR rows x WV vectors (24 accumulators,
 * 3 loads of B and 8 broadcasts per 24 FMAs, against 4 + 4 per 16 in the few-rows tile), so B is
 * read from cache a third as often. The arithmetic per element is unchanged (one fmaf chain over
 * k from zero, then `finish`): the bits are those of any other tiling, M = 1 included. */
#define WR 8
#define WV 3

static inline __attribute__((always_inline)) void wide_tile(const gemm_t *g, const int rows,
                                                           const int nv, int64_t j,
                                                           const float *pf) {
    float tmp[WV * VW] __attribute__((aligned(64)));
    vf_t acc[WR][WV];
    for (int m = 0; m < rows; m++)
        for (int v = 0; v < nv; v++) acc[m][v] = V_ZERO();
    const float *br = g->b + j;
    const float *a = g->a;
    for (int64_t k = 0; k < g->K; k++, br += g->b_rs, a += g->a_cs) {
        vf_t bv[WV];
        if (pf) __builtin_prefetch(pf + k * g->b_rs, 0, 2);
        for (int v = 0; v < nv; v++) bv[v] = V_LOAD(br + v * VW);
        for (int m = 0; m < rows; m++) {
            vf_t av = V_SET1(a[m * g->a_rs]);
            for (int v = 0; v < nv; v++) acc[m][v] = V_FMA(av, bv[v], acc[m][v]);
        }
    }
    for (int m = 0; m < rows; m++) {
        float *c = g->c + m * g->ldc + j;
        for (int v = 0; v < nv; v++) V_STORE(tmp + v * VW, acc[m][v]);
        for (int l = 0; l < nv * VW; l++) c[l] = finish(tmp[l], g->alpha, g->accumulate, c[l]);
    }
}

/* pf: while this tile reads the panel at column j from cache, one column vector of the next
 * panel to fetch from memory, a row each k (NULL: none) */
static void wide_rows(const gemm_t *g, int rows, int64_t j, const float *pf) {
    switch (rows) {
    case 8: wide_tile(g, 8, WV, j, pf); break;
    case 7: wide_tile(g, 7, WV, j, pf); break;
    case 6: wide_tile(g, 6, WV, j, pf); break;
    case 5: wide_tile(g, 5, WV, j, pf); break;
    case 4: wide_tile(g, 4, WV, j, pf); break;
    case 3: wide_tile(g, 3, WV, j, pf); break;
    case 2: wide_tile(g, 2, WV, j, pf); break;
    default: wide_tile(g, 1, WV, j, pf); break;
    }
}

/* B packed in panels (`alpha_pack_panels`): the panel of columns j .. j + w - 1 (w = PW but the
 * last) is K rows of w floats at b + j * K */
#define PW (WV * VW)

/* C[:, n0:n1] for all M rows: whole WV-vector blocks in tiles, the rest by the few-rows code (B
 * packed: the last, narrower panel by the few-rows code, on its own rows) */
static void wide_axpy(const small_t *s, int64_t M, int64_t n0, int64_t n1, int packed) {
    const gemm_t *g0 = &s->g;
    int64_t j = n0;
    for (; j + PW <= n1; j += PW) {
        /* this panel's columns, and where the next one starts */
        const float *b = packed ? g0->b + j * g0->K : g0->b + j;
        const float *next = packed ? b + PW * g0->K : b + PW;
        int64_t rs = packed ? PW : g0->b_rs;
        /* The first row group reads the panel from memory, the others from L2: they fetch the
         * task's next panel meanwhile, one column vector each, into L2 (the weights of a decode
         * step do not fit in L3, so without this the first group of every panel waits on DRAM;
         * into L1 the next panel would push out the one being read) */
        int has_next = j + 2 * PW <= n1;
        for (int64_t m0 = 0, r = 0; m0 < M; m0 += WR, r++) {
            gemm_t g = *g0;
            g.a += m0 * g.a_rs;
            g.c += m0 * g.ldc + j;
            g.b = b;
            g.b_rs = rs;
            const float *pf = has_next && r >= 1 && r <= WV ? next + (r - 1) * VW : NULL;
            wide_rows(&g, (int)min64(WR, M - m0), 0, pf);
        }
    }
    if (j < n1)
        for (int64_t m0 = 0; m0 < M; m0 += SMALL_M) {
            small_t t = *s;
            t.g.M = min64(SMALL_M, M - m0);
            t.g.a += m0 * t.g.a_rs;
            t.g.c += m0 * t.g.ldc;
            if (packed) { /* the last panel, n1 - j wide */
                t.g.b += j * t.g.K - j;
                t.g.b_rs = n1 - j;
            }
            small_axpy(&t, j, n1);
        }
}

static void rows_task(void *ctx, int64_t begin, int64_t end) {
    const rows_t *r = (const rows_t *)ctx;
    int64_t n0 = begin * r->s.n_chunk, n1 = min64(end * r->s.n_chunk, r->s.g.N);
    if (r->packed || (r->s.g.b_cs == 1 && r->M > SMALL_M)) {
        wide_axpy(&r->s, r->M, n0, n1, r->packed);
        return;
    }
    for (int64_t m0 = 0; m0 < r->M; m0 += SMALL_M) {
        small_t s = r->s;
        s.g.M = min64(SMALL_M, r->M - m0);
        s.g.a += m0 * s.g.a_rs;
        s.g.c += m0 * s.g.ldc;
        if (s.a_rows) s.a_rows += m0 * s.g.K;
        if (s.g.b_cs == 1)
            small_axpy(&s, n0, n1);
        else
            small_dot(&s, n0, n1);
    }
}

static void sgemm_rows(int64_t M, int64_t N, int64_t K, const float *a, int64_t a_rs,
                       int64_t a_cs, const float *b, int64_t b_rs, int64_t b_cs, float *c,
                       int64_t ldc, float alpha, int accumulate, int packed) {
    if (M <= 0 || N <= 0) return;
    gemm_t g = {M, N, K, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, alpha, accumulate};
    if (K == 0) {
        zero_or_keep(&g);
        return;
    }
    rows_t r = {.s = {.g = g}, .M = M, .packed = packed};
    float *rows = NULL;
    if (b_cs != 1) { /* the dot form reads A as contiguous rows */
        if (a_cs == 1 && (M == 1 || a_rs == K)) {
            r.s.a_rows = a;
        } else {
            rows = alloc_floats(M * K);
            if (!rows) abort();
            for (int64_t m = 0; m < M; m++)
                for (int64_t k = 0; k < K; k++) rows[m * K + k] = a[m * a_rs + k * a_cs];
            r.s.a_rows = rows;
        }
    }
    /* chunks of whole blocks with about 64K multiply-adds per row group, at least 2 per thread;
     * B packed and more than one row group: 2 per thread, so that a task has a next panel to
     * fetch (`wide_axpy`: one panel a task, as 64K multiply-adds made it, fetched none; batch-32
     * products ~15% faster in a decode step). One row group fetches nothing ahead, and keeps
     * its smaller chunks: a thread descheduled mid-chunk (the server's other threads share
     * the cores) holds the step up for less. */
    int wide = packed || M > SMALL_M;
    int64_t unit = b_cs == 1 ? (wide ? PW : AX_W) : 4;
    int64_t per = ceil_div(65536, K * min64(M, SMALL_M) * unit) * unit;
    int threads = alpha_num_threads();
    int64_t most = ceil_div(ceil_div(N, 2 * (int64_t)threads), unit) * unit;
    if (wide && (per > most || (packed && M > WR))) per = most > unit ? most : unit;
    r.s.n_chunk = per;
    int64_t chunks = ceil_div(N, per);
    if (threads > 1 && chunks > 1)
        alpha_parallel_for(chunks, 1, rows_task, &r);
    else
        rows_task(&r, 0, chunks);
    free(rows);
}

/* C (M, N) = alpha * op(A) @ op(B) (+ C), every row exactly as alpha_sgemm computes it for M = 1.
 * B must be contiguous along n (b_cs == 1) or along k (b_rs == 1); strides in elements. */
void alpha_sgemm_rows(int64_t M, int64_t N, int64_t K, const float *a, int64_t a_rs,
                      int64_t a_cs, const float *b, int64_t b_rs, int64_t b_cs, float *c,
                      int64_t ldc, float alpha, int accumulate) {
    sgemm_rows(M, N, K, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, alpha, accumulate, 0);
}

/* ---- B in panels: the weights of a decode step --------------------------------------------
 *
 * A batch-32 decode step reads every weight once from memory (config B: 42 MB, more than L3),
 * and the tiles above take B a panel (PW columns) at a time, as K pieces of PW floats N apart:
 * a pattern the hardware prefetchers follow poorly, so the products ran at about half their
 * speed from cache. Packed, each panel is one contiguous run. The arithmetic is unchanged (the
 * same tiles, the same chain per element), so the bits are alpha_sgemm_rows's. */

/* dst (K * N floats) = b (K, N), rows b_rs apart, as panels: columns j .. j + w - 1 (w = PW, the
 * last panel what is left) are K rows of w floats at dst + j * K */
void alpha_pack_panels(float *dst, const float *b, int64_t b_rs, int64_t K, int64_t N) {
    for (int64_t j = 0; j < N; j += PW) {
        int64_t w = min64(PW, N - j);
        for (int64_t k = 0; k < K; k++)
            memcpy(dst + j * K + k * w, b + k * b_rs + j, (size_t)w * sizeof(float));
    }
}

/* C (M, N) = A @ B for B packed by alpha_pack_panels: alpha_sgemm_rows's bits */
void alpha_sgemm_rows_packed(int64_t M, int64_t N, int64_t K, const float *a, int64_t a_rs,
                             int64_t a_cs, const float *b_packed, float *c, int64_t ldc) {
    sgemm_rows(M, N, K, a, a_rs, a_cs, b_packed, 0, 1, c, ldc, 1.0f, 0, 1);
}
