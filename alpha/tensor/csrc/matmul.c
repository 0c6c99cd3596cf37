/* SGEMM: C = alpha * op(A) @ op(B) (+ C), packed and register-blocked (the BLIS/GotoBLAS shape).
 *
 * Loops, outermost first:
 *   ib  rows of C in chunks of MBIG       (bounds the packed-A workspace)
 *   jc  columns of C in chunks of NC      (a packed B panel, KC x NC, lives in L3)
 *   pc  the K dimension in chunks of KC   (the k-order of every output element: fixed)
 *   ic  rows in blocks of MC              (a packed A block, MC x KC, lives in L2)
 *   jr  columns in micro-panels of NR     (a packed B micro-panel, KC x NR, lives in L1)
 *   ir  rows in micro-panels of MR        -> the micro-kernel: an MR x NR tile held in registers
 *
 * Any strides: element (m, k) of op(A) is at a[m * a_rs + k * a_cs] and element (k, n) of op(B) at
 * b[k * b_rs + n * b_cs], so a transposed operand is only a swap of strides; the packing copies
 * handle unit-stride rows, unit-stride columns and anything else. C has unit column stride.
 *
 * Determinism: every MR x NR tile of C is computed by one micro-kernel call per KC block, in the
 * same pc order, whatever the thread count and however tiles are grouped into tasks; task bounds
 * are multiples of MR and NR. A tile at the edge of C runs the same vector code on a scratch tile.
 *
 * Threads: a big matrix is split into (MC rows x column chunk) tasks after A and B are packed by
 * all threads; a batch of small matrices is split by batch entry, each task packing for itself.
 *
 * Few rows (M <= 4, one token per sequence at inference) skip the packing: see `gemm_small`.
 * Which path runs depends only on the shapes and strides, never on the thread count.
 */
#include "matmul.h"

#include <pthread.h>

#if defined(__AVX512F__)
#define MR 14
#define NR 32
#define KC 512 /* tuned on Zen 4: a deep K block halves the C traffic; L2 feeds B well */
#define MC 84
#define KERNEL_NAME "avx512 14x32"
#elif defined(__AVX2__) && defined(__FMA__)
#define MR 6
#define NR 16
#define KC 256
#define MC 144
#define KERNEL_NAME "avx2+fma 6x16"
#else
#define MR 4
#define NR 8
#define KC 256
#define MC 96
#define KERNEL_NAME "portable 4x8"
#endif

#define NC 3072   /* multiple of NR */
#define MBIG 4032 /* rows per packed-A chunk: a multiple of MR */
#define ROW_PANELS 4 /* fewest MR panels per threaded task, when the columns can be split */

const char *alpha_sgemm_kernel_name(void) { return KERNEL_NAME; }
int alpha_sgemm_tile(int which) { return which == 0 ? MR : which == 1 ? NR : which == 2 ? KC : MC; }

/* ---- micro-kernels: c[0:MR, 0:NR] = alpha * Ap @ Bp (+ c when beta) ------------------------- */

#if defined(__AVX512F__)
static void micro_kernel(int64_t kc, const float *restrict ap, const float *restrict bp,
                         float *restrict c, int64_t ldc, float alpha, int beta) {
    __m512 acc[MR][2];
#pragma GCC unroll 14
    for (int r = 0; r < MR; r++) {
        acc[r][0] = _mm512_setzero_ps();
        acc[r][1] = _mm512_setzero_ps();
    }
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_load_ps(bp);
        __m512 b1 = _mm512_load_ps(bp + 16);
        _mm_prefetch((const char *)(ap + 8 * MR), _MM_HINT_T0);
#pragma GCC unroll 14
        for (int r = 0; r < MR; r++) {
            __m512 av = _mm512_set1_ps(ap[r]);
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
        }
        ap += MR;
        bp += NR;
    }
    __m512 al = _mm512_set1_ps(alpha);
#pragma GCC unroll 14
    for (int r = 0; r < MR; r++) {
        float *cr = c + r * ldc;
        if (beta) {
            _mm512_storeu_ps(cr, _mm512_fmadd_ps(acc[r][0], al, _mm512_loadu_ps(cr)));
            _mm512_storeu_ps(cr + 16, _mm512_fmadd_ps(acc[r][1], al, _mm512_loadu_ps(cr + 16)));
        } else {
            _mm512_storeu_ps(cr, _mm512_mul_ps(acc[r][0], al));
            _mm512_storeu_ps(cr + 16, _mm512_mul_ps(acc[r][1], al));
        }
    }
}
#elif defined(__AVX2__) && defined(__FMA__)
static void micro_kernel(int64_t kc, const float *restrict ap, const float *restrict bp,
                         float *restrict c, int64_t ldc, float alpha, int beta) {
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        acc[r][0] = _mm256_setzero_ps();
        acc[r][1] = _mm256_setzero_ps();
    }
    for (int64_t k = 0; k < kc; k++) {
        __m256 b0 = _mm256_load_ps(bp);
        __m256 b1 = _mm256_load_ps(bp + 8);
        _mm_prefetch((const char *)(ap + 8 * MR), _MM_HINT_T0);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            __m256 av = _mm256_broadcast_ss(ap + r);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
        ap += MR;
        bp += NR;
    }
    __m256 al = _mm256_set1_ps(alpha);
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        float *cr = c + r * ldc;
        if (beta) {
            _mm256_storeu_ps(cr, _mm256_fmadd_ps(acc[r][0], al, _mm256_loadu_ps(cr)));
            _mm256_storeu_ps(cr + 8, _mm256_fmadd_ps(acc[r][1], al, _mm256_loadu_ps(cr + 8)));
        } else {
            _mm256_storeu_ps(cr, _mm256_mul_ps(acc[r][0], al));
            _mm256_storeu_ps(cr + 8, _mm256_mul_ps(acc[r][1], al));
        }
    }
}
#else
static void micro_kernel(int64_t kc, const float *restrict ap, const float *restrict bp,
                         float *restrict c, int64_t ldc, float alpha, int beta) {
    float acc[MR][NR] = {{0}};
    for (int64_t k = 0; k < kc; k++) {
        for (int r = 0; r < MR; r++)
            for (int j = 0; j < NR; j++) acc[r][j] += ap[r] * bp[j];
        ap += MR;
        bp += NR;
    }
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NR; j++)
            c[r * ldc + j] = beta ? c[r * ldc + j] + acc[r][j] * alpha : acc[r][j] * alpha;
}
#endif

/* An edge tile (mr < MR or nr < NR): the same kernel on a scratch tile, so the arithmetic is
 * exactly that of a full tile. */
static void edge_kernel(int64_t kc, const float *ap, const float *bp, float *c, int64_t ldc,
                        int64_t mr, int64_t nr, float alpha, int beta) {
    float tile[MR * NR] __attribute__((aligned(64)));
    if (beta) {
        for (int64_t r = 0; r < mr; r++) memcpy(tile + r * NR, c + r * ldc, nr * sizeof(float));
    }
    micro_kernel(kc, ap, bp, tile, NR, alpha, beta);
    for (int64_t r = 0; r < mr; r++) memcpy(c + r * ldc, tile + r * NR, nr * sizeof(float));
}

/* ---- packing -------------------------------------------------------------------------------- */

#if defined(__AVX__)
/* dst[k * W + r] = src[r * s_w + k] for an 8 x 8 block (r, k < 8). */
static inline void transpose8x8(const float *src, int64_t s_w, float *dst, int W) {
    __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + s_w);
    __m256 r2 = _mm256_loadu_ps(src + 2 * s_w), r3 = _mm256_loadu_ps(src + 3 * s_w);
    __m256 r4 = _mm256_loadu_ps(src + 4 * s_w), r5 = _mm256_loadu_ps(src + 5 * s_w);
    __m256 r6 = _mm256_loadu_ps(src + 6 * s_w), r7 = _mm256_loadu_ps(src + 7 * s_w);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(dst + 0 * W, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + 1 * W, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * W, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * W, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * W, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * W, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * W, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * W, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#endif

/* Packs a panel `w` (<= W) wide and kc deep: dst[k * W + i] = src[i * s_w + k * s_k], zero-padded
 * to W. For A the width runs over rows (W = MR), for B over columns (W = NR). */
static inline void pack_panel(float *restrict dst, const float *restrict src, int64_t s_w,
                              int64_t s_k, int64_t w, int64_t kc, int W) {
    if (s_w == 1 && w == W) {
        for (int64_t k = 0; k < kc; k++) memcpy(dst + k * W, src + k * s_k, W * sizeof(float));
        return;
    }
    if (w < W) {
        for (int64_t k = 0; k < kc; k++)
            for (int i = (int)w; i < W; i++) dst[k * W + i] = 0.0f;
    }
    if (s_k == 1) {
        /* each source row is contiguous along k: transpose 8 x 8 blocks, rest one by one */
        int64_t i = 0;
#if defined(__AVX__)
        int64_t k8 = kc / 8 * 8;
        for (; i + 8 <= w; i += 8) {
            for (int64_t k = 0; k < k8; k += 8)
                transpose8x8(src + i * s_w + k, s_w, dst + k * W + i, W);
            for (int64_t k = k8; k < kc; k++)
                for (int64_t r = 0; r < 8; r++) dst[k * W + i + r] = src[(i + r) * s_w + k];
        }
#endif
        for (int64_t k = 0; k < kc; k++)
            for (int64_t r = i; r < w; r++) dst[k * W + r] = src[r * s_w + k];
        return;
    }
    for (int64_t k = 0; k < kc; k++)
        for (int64_t i = 0; i < w; i++) dst[k * W + i] = src[i * s_w + k * s_k];
}

/* Packs rows [i0, i0 + m) x depth [pc, pc + kc) of op(A) into MR-row panels. */
static void pack_a_rows(const gemm_t *g, float *dst, int64_t i0, int64_t m, int64_t pc,
                        int64_t kc) {
    for (int64_t i = 0; i < m; i += MR) {
        const float *src = g->a + (i0 + i) * g->a_rs + pc * g->a_cs;
        pack_panel(dst + i * kc, src, g->a_rs, g->a_cs, min64(MR, m - i), kc, MR);
    }
}

/* Packs columns [j0, j0 + n) x depth [pc, pc + kc) of op(B) into NR-column panels. */
static void pack_b_cols(const gemm_t *g, float *dst, int64_t j0, int64_t n, int64_t pc,
                        int64_t kc) {
    for (int64_t j = 0; j < n; j += NR) {
        const float *src = g->b + pc * g->b_rs + (j0 + j) * g->b_cs;
        pack_panel(dst + j * kc, src, g->b_cs, g->b_rs, min64(NR, n - j), kc, NR);
    }
}

/* C[i0:i0+m, j0:j0+n] (+)= alpha * Ap @ Bp for one KC block; ap/bp point at the packed panels of
 * row i0 and column j0 (both multiples of MR/NR from the packed origin). */
static void macro_kernel(const gemm_t *g, const float *ap, const float *bp, int64_t i0,
                         int64_t m, int64_t j0, int64_t n, int64_t kc, int beta) {
    for (int64_t j = 0; j < n; j += NR) {
        int64_t nr = min64(NR, n - j);
        const float *bpj = bp + j * kc;
        for (int64_t i = 0; i < m; i += MR) {
            int64_t mr = min64(MR, m - i);
            float *c = g->c + (i0 + i) * g->ldc + j0 + j;
            if (mr == MR && nr == NR)
                micro_kernel(kc, ap + i * kc, bpj, c, g->ldc, g->alpha, beta);
            else
                edge_kernel(kc, ap + i * kc, bpj, c, g->ldc, mr, nr, g->alpha, beta);
        }
    }
}

/* One matrix on the calling thread; abuf holds MC*KC floats, bbuf KC*min(N,NC) rounded up. */
static void gemm_serial(const gemm_t *g, float *abuf, float *bbuf) {
    if (g->K == 0) {
        zero_or_keep(g);
        return;
    }
    for (int64_t jc = 0; jc < g->N; jc += NC) {
        int64_t nc = min64(NC, g->N - jc);
        for (int64_t pc = 0; pc < g->K; pc += KC) {
            int64_t kc = min64(KC, g->K - pc);
            int beta = g->accumulate || pc > 0;
            pack_b_cols(g, bbuf, jc, nc, pc, kc);
            for (int64_t ic = 0; ic < g->M; ic += MC) {
                int64_t mc = min64(MC, g->M - ic);
                pack_a_rows(g, abuf, ic, mc, pc, kc);
                macro_kernel(g, abuf, bbuf, ic, mc, jc, nc, kc, beta);
            }
        }
    }
}

static int64_t bbuf_floats(int64_t N) { return KC * ceil_div(min64(N, NC), NR) * NR; }
static int64_t abuf_floats(int64_t M) { return KC * ceil_div(min64(M, MC), MR) * MR; }

/* ---- a big matrix: all threads pack, then all threads compute tiles ------------------------- */

typedef struct {
    const gemm_t *g;
    float *ap, *bp;
    int64_t ib, m;        /* rows [ib, ib + m) of this MBIG chunk */
    int64_t jc, nc;       /* columns [jc, jc + nc) */
    int64_t pc, kc;
    int64_t a_panels;     /* pack tasks: first A's MR panels, then B's NR panels */
    int64_t b_panels;
    int64_t tr, tc;       /* compute tasks: a tr x tc grid of balanced panel ranges */
    int beta;
} par_t;

static void par_pack(void *ctx, int64_t begin, int64_t end) {
    par_t *p = (par_t *)ctx;
    const gemm_t *g = p->g;
    for (int64_t t = begin; t < end; t++) {
        if (t < p->a_panels) {
            int64_t i = t * MR;
            const float *src = g->a + (p->ib + i) * g->a_rs + p->pc * g->a_cs;
            pack_panel(p->ap + i * p->kc, src, g->a_rs, g->a_cs, min64(MR, p->m - i), p->kc, MR);
        } else {
            int64_t j = (t - p->a_panels) * NR;
            const float *src = g->b + p->pc * g->b_rs + (p->jc + j) * g->b_cs;
            pack_panel(p->bp + j * p->kc, src, g->b_cs, g->b_rs, min64(NR, p->nc - j), p->kc, NR);
        }
    }
}

/* Task t computes rows panels [r * A / tr, (r + 1) * A / tr) x column panels likewise, where A and
 * B count the MR/NR panels: equal shares within one panel, whatever the sizes. */
static void par_compute(void *ctx, int64_t begin, int64_t end) {
    par_t *p = (par_t *)ctx;
    for (int64_t t = begin; t < end; t++) {
        int64_t r = t / p->tc, q = t % p->tc;
        int64_t i0 = r * p->a_panels / p->tr * MR;
        int64_t i1 = min64((r + 1) * p->a_panels / p->tr * MR, p->m);
        int64_t j0 = q * p->b_panels / p->tc * NR;
        int64_t j1 = min64((q + 1) * p->b_panels / p->tc * NR, p->nc);
        for (int64_t i = i0; i < i1; i += MC)
            macro_kernel(p->g, p->ap + i * p->kc, p->bp + j0 * p->kc, p->ib + i,
                         min64(MC, i1 - i), p->jc + j0, j1 - j0, p->kc, p->beta);
    }
}

static pthread_mutex_t ws_lock = PTHREAD_MUTEX_INITIALIZER;
static float *ws_a, *ws_b;
static int64_t ws_a_n, ws_b_n;

static void gemm_parallel(const gemm_t *g, int threads) {
    if (g->K == 0) {
        zero_or_keep(g);
        return;
    }
    int64_t mbig = min64(MBIG, g->M);
    int64_t need_a = KC * ceil_div(mbig, MR) * MR, need_b = bbuf_floats(g->N);
    pthread_mutex_lock(&ws_lock);
    if (ws_a_n < need_a) {
        free(ws_a);
        ws_a = alloc_floats(need_a);
        ws_a_n = need_a;
    }
    if (ws_b_n < need_b) {
        free(ws_b);
        ws_b = alloc_floats(need_b);
        ws_b_n = need_b;
    }
    if (!ws_a || !ws_b) abort(); /* out of memory for a few MB of workspace */
    par_t p = {.g = g, .ap = ws_a, .bp = ws_b};
    for (p.ib = 0; p.ib < g->M; p.ib += MBIG) {
        p.m = min64(MBIG, g->M - p.ib);
        p.a_panels = ceil_div(p.m, MR);
        for (p.jc = 0; p.jc < g->N; p.jc += NC) {
            p.nc = min64(NC, g->N - p.jc);
            p.b_panels = ceil_div(p.nc, NR);
            /* 4 tasks per thread, so the pool hands out one task per chunk; split the columns
             * too when a task would get fewer than ROW_PANELS row panels (each B micro-panel
             * loaded into L1 should serve several A panels) */
            int64_t target = 4 * (int64_t)threads;
            p.tr = min64(p.a_panels / ROW_PANELS > 1 ? p.a_panels / ROW_PANELS : 1, target);
            p.tc = min64(p.b_panels, target / p.tr);
            for (p.pc = 0; p.pc < g->K; p.pc += KC) {
                p.kc = min64(KC, g->K - p.pc);
                p.beta = g->accumulate || p.pc > 0;
                alpha_parallel_for(p.a_panels + p.b_panels, 4, par_pack, &p);
                alpha_parallel_for(p.tr * p.tc, 1, par_compute, &p);
            }
        }
    }
    pthread_mutex_unlock(&ws_lock);
}

/* ---- a batch of matrices: one task per batch entry ------------------------------------------ */

typedef struct {
    gemm_t g;
    int64_t a_bs, b_bs, c_bs;
} batch_t;

static void batch_task(void *ctx, int64_t begin, int64_t end) {
    const batch_t *bt = (const batch_t *)ctx;
    float *abuf = alloc_floats(abuf_floats(bt->g.M));
    float *bbuf = alloc_floats(bbuf_floats(bt->g.N));
    if (!abuf || !bbuf) abort();
    for (int64_t t = begin; t < end; t++) {
        gemm_t g = bt->g;
        g.a += t * bt->a_bs;
        g.b += t * bt->b_bs;
        g.c += t * bt->c_bs;
        gemm_serial(&g, abuf, bbuf);
    }
    free(abuf);
    free(bbuf);
}

/* The entry point. Strides are in elements; b_bs == 0 shares one B across the batch. */
void alpha_sgemm(int64_t batch, int64_t M, int64_t N, int64_t K, const float *a, int64_t a_bs,
                 int64_t a_rs, int64_t a_cs, const float *b, int64_t b_bs, int64_t b_rs,
                 int64_t b_cs, float *c, int64_t c_bs, int64_t ldc, float alpha, int accumulate) {
    if (batch <= 0 || M <= 0 || N <= 0) return;
    batch_t bt = {.g = {M, N, K, a, a_rs, a_cs, b, b_rs, b_cs, c, ldc, alpha, accumulate},
                  .a_bs = a_bs, .b_bs = b_bs, .c_bs = c_bs};
    int threads = alpha_num_threads();
    if (M <= SMALL_M && (b_cs == 1 || b_rs == 1)) {
        for (int64_t t = 0; t < batch; t++) {
            gemm_t g = bt.g;
            g.a += t * a_bs;
            g.b += t * b_bs;
            g.c += t * c_bs;
            alpha_gemm_small(&g, threads);
        }
        return;
    }
    double work = (double)M * N * (K ? K : 1);
    if (threads == 1 || work * batch < 96.0 * 96 * 96) {
        batch_task(&bt, 0, batch); /* small: the pool would cost more than it saves */
        return;
    }
    if (batch > 1 && (batch >= 4 * threads || work < 256.0 * 256 * 256)) {
        alpha_parallel_for(batch, 1, batch_task, &bt);
        return;
    }
    for (int64_t t = 0; t < batch; t++) {
        gemm_t g = bt.g;
        g.a += t * a_bs;
        g.b += t * b_bs;
        g.c += t * c_bs;
        gemm_parallel(&g, threads);
    }
}
