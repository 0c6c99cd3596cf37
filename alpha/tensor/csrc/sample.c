/* Token sampling for a batch of rows of logits: the C twin of alpha/model/sampling.py.
 *
 * One call samples every row of a decode step (each with its own temperature, top-k, top-p,
 * penalties, logprobs and random stream), so the serving engine spends no Python per vocabulary
 * entry. The arithmetic is the Python definition's, operation for operation, in float64 with
 * libm's log and floating-point contraction off, so both pick the same token and give
 * the same logprobs, bit for bit (tests/test_sampling.py checks it on random rows). Its exp is
 * `sample_exp` below, spelled out in plain double operations so that Python can repeat it exactly
 * and the compiler can vectorise it (libm's exp, one call per id, cost more than the model's
 * forward at batch 32).
 *
 * Per row (see `sample_rows` for the arrays):
 *   x = logits (as doubles), minus each penalised id's penalty;
 *   temperature 0: the argmax (the lowest id among ties); no random word is used;
 *   else candidates: the top_k largest (0 = all), or all sorted when top_p < 1 (both: sorted by
 *   value, ties by id); cum = running sum of exp((x - max) / T) over them; with top_p < 1 cut
 *   cum after the first entry >= top_p * total; the token is the first whose cum > u * total,
 *   u = the row's Philox word (rng.c) as a uniform in [0, 1).
 *   logprobs (k >= 0): lse = max + log(sum of exp(x - max)) in id order; the token's x - lse and
 *   the top k ids by value (ties by id) with theirs.
 * Rows are independent; threads take whole rows, so results never depend on the thread count.
 */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "alpha.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

uint32_t rng_word(uint32_t k0, uint32_t k1, uint64_t position); /* rng.c */

/* exp(y) for y <= 0 (0 below -708), within 2 ulp: y = n ln2 + r (Cody-Waite, fdlibm's split
 * of ln2; n rounded by the 1.5 * 2^52 trick), exp(r) by Taylor to r^13 in Horner form, times 2^n
 * built from bits (exact). alpha/model/sampling.py `sample_exp` is the same, op for op. */
static inline double sample_exp(double y) {
    double t = y * 1.4426950408889634 + 6755399441055744.0;
    double n = t - 6755399441055744.0;
    double r = (y - n * 0.6931471803691238) - n * 1.9082149292705877e-10;
    double p = 1.6059043836821613e-10;
    p = p * r + 2.08767569878681e-09;
    p = p * r + 2.505210838544172e-08;
    p = p * r + 2.755731922398589e-07;
    p = p * r + 2.7557319223985893e-06;
    p = p * r + 2.48015873015873e-05;
    p = p * r + 0.0001984126984126984;
    p = p * r + 0.001388888888888889;
    p = p * r + 0.008333333333333333;
    p = p * r + 0.041666666666666664;
    p = p * r + 0.16666666666666666;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    int64_t bits = ((int64_t)n + 1023) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return y < -708.0 ? 0.0 : p * scale;
}

typedef struct {
    int32_t *ids;      /* (M,) out: the sampled token */
    double *logprob;   /* (M,) out: its logprob (rows with n_top[i] >= 0) */
    int32_t *top_ids;  /* (M, max_top) out: the top alternatives, most likely first */
    double *top_lp;    /* (M, max_top) out */
    const void *logits; /* float, or double when f64 */
    int f64;
    int64_t M, V, max_top;
    const double *temperature, *top_p;
    const int64_t *top_k, *n_top;
    const uint32_t *keys;      /* (M, 2) each row's stream key */
    const uint64_t *positions; /* (M,) the word each sampling row draws */
    const int64_t *pen_start;  /* (M + 1,) row i's penalties are pen_ids/pen_val[start[i]..] */
    const int32_t *pen_ids;
    const double *pen_val;
    int failed;
} sample_ctx;

/* Candidate order: larger value first, then smaller id (Python's stable sort with reverse=True
 * keeps equal values in id order). */
static int before(const double *x, int32_t a, int32_t b) {
    return x[a] > x[b] || (x[a] == x[b] && a < b);
}

/* The first k ids of the sorted order into cand (k small: a sorted insertion buffer). */
static void top_ids(int32_t *cand, const double *x, int64_t V, int64_t k) {
    int64_t n = 0;
    for (int32_t j = 0; j < V; j++) {
        if (n == k && !before(x, j, cand[k - 1])) continue;
        int64_t p = n < k ? n++ : k - 1;
        while (p > 0 && before(x, j, cand[p - 1])) {
            cand[p] = cand[p - 1];
            p--;
        }
        cand[p] = j;
    }
}

/* Every id in candidate order: a merge sort (qsort has no context argument for x). */
static void merge_sort(int32_t *a, int32_t *tmp, int64_t n, const double *x) {
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi) tmp[o++] = before(x, a[j], a[i]) ? a[j++] : a[i++];
            while (i < mid) tmp[o++] = a[i++];
            while (j < hi) tmp[o++] = a[j++];
        }
        int32_t *t = a;
        for (int64_t i = 0; i < n; i++) t[i] = tmp[i];
    }
}

static int32_t first_above(const double *cum, int64_t n, double v) { /* bisect_right */
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = (lo + hi) / 2;
        if (v < cum[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return (int32_t)lo;
}

static int64_t first_at_least(const double *cum, int64_t n, double v) { /* bisect_left */
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = (lo + hi) / 2;
        if (cum[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The largest of x[0..n) (n >= 1): the value of `m = x[j] > m ? x[j] : m` from m = x[0], taken
 * in 8 lanes so that it vectorises (one chain of compares cost ~2 cycles an id); only a zero's sign
 * can differ, which no use of it sees (x - m, exp and the log-sum are the same for +0 and -0). */
static double row_max(const double *x, int64_t n) {
    double m = x[0];
    int64_t j = 0;
    if (n >= 8) {
        double lane[8];
        for (int l = 0; l < 8; l++) lane[l] = x[l];
        for (j = 8; j + 8 <= n; j += 8)
            for (int l = 0; l < 8; l++) lane[l] = x[j + l] > lane[l] ? x[j + l] : lane[l];
        for (int l = 0; l < 8; l++) m = lane[l] > m ? lane[l] : m;
    }
    for (; j < n; j++) m = x[j] > m ? x[j] : m;
    return m;
}

/* cum[j] = the running sum of e_j = sample_exp((x[ids[j]] - m) * inv_t) for j < n (ids NULL: x[j]),
 * in order. The sum is one chain of dependent adds; computed block by block beside the exps
 * (which vectorise), the core overlaps the chain with the next block's exps instead of running
 * the two passes one after the other. */
static void running_exp_sum(double *cum, const double *x, const int32_t *ids, int64_t n, double m,
                            double inv_t) {
    double acc = 0.0;
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        double e[8];
        if (ids)
            for (int l = 0; l < 8; l++) e[l] = sample_exp((x[ids[j + l]] - m) * inv_t);
        else
            for (int l = 0; l < 8; l++) e[l] = sample_exp((x[j + l] - m) * inv_t);
        for (int l = 0; l < 8; l++) cum[j + l] = acc = acc + e[l];
    }
    for (; j < n; j++) cum[j] = acc = acc + sample_exp((x[ids ? ids[j] : j] - m) * inv_t);
}

static void sample_one(const sample_ctx *c, int64_t i, double *x, double *cum, int32_t *cand,
                       int32_t *tmp) {
    int64_t V = c->V;
    if (c->f64) {
        const double *row = (const double *)c->logits + i * V;
        for (int64_t j = 0; j < V; j++) x[j] = row[j];
    } else {
        const float *row = (const float *)c->logits + i * V;
        for (int64_t j = 0; j < V; j++) x[j] = (double)row[j];
    }
    for (int64_t p = c->pen_start[i]; p < c->pen_start[i + 1]; p++)
        x[c->pen_ids[p]] -= c->pen_val[p];

    double T = c->temperature[i];
    int32_t tok = 0;
    if (T == 0.0) {
        for (int32_t j = 1; j < V; j++)
            if (x[j] > x[tok]) tok = j;
    } else {
        int64_t k = c->top_k[i];
        double top_p = c->top_p[i];
        int64_t n = V;
        int sorted = 1;
        if (k > 0 && k < V && k <= 64) {
            top_ids(cand, x, V, k);
            n = k;
        } else if ((k > 0 && k < V) || top_p < 1.0) { /* the first k of the sorted order */
            for (int32_t j = 0; j < V; j++) cand[j] = j;
            merge_sort(cand, tmp, V, x);
            if (k > 0 && k < V) n = k;
        } else {
            sorted = 0;
        }
        double m = sorted ? x[cand[0]] : row_max(x, V);
        running_exp_sum(cum, x, sorted ? cand : NULL, n, m, 1.0 / T); /* in order */
        if (top_p < 1.0) {
            int64_t cut = first_at_least(cum, n, top_p * cum[n - 1]) + 1;
            n = cut < n ? cut : n;
        }
        uint32_t w = rng_word(c->keys[2 * i], c->keys[2 * i + 1], c->positions[i]);
        double u = (double)(w >> 8) * (1.0 / 16777216.0);
        int32_t j = first_above(cum, n, u * cum[n - 1]);
        if (j > n - 1) j = (int32_t)(n - 1);
        tok = sorted ? cand[j] : j;
    }
    c->ids[i] = tok;

    int64_t k = c->n_top[i];
    if (k < 0) return;
    double m = row_max(x, V);
    double *e = x + V; /* the cum buffer, free again */
    for (int64_t j = 0; j < V; j++) e[j] = sample_exp(x[j] - m);
    double s = 0.0;
    for (int64_t j = 0; j < V; j++) s += e[j];
    double lse = m + log(s);
    c->logprob[i] = x[tok] - lse;
    if (k > V) k = V;
    if (k > 0) {
        top_ids(cand, x, V, k);
        for (int64_t j = 0; j < k; j++) {
            c->top_ids[i * c->max_top + j] = cand[j];
            c->top_lp[i * c->max_top + j] = x[cand[j]] - lse;
        }
    }
}

static void sample_task(void *vctx, int64_t begin, int64_t end) {
    sample_ctx *c = (sample_ctx *)vctx;
    int64_t V = c->V;
    double *x = (double *)malloc((size_t)(2 * V) * sizeof(double));
    int32_t *cand = (int32_t *)malloc((size_t)(2 * V) * sizeof(int32_t));
    if (!x || !cand) {
        c->failed = 1;
        free(x);
        free(cand);
        return;
    }
    for (int64_t i = begin; i < end; i++) sample_one(c, i, x, x + V, cand, cand + V);
    free(x);
    free(cand);
}

/* One token for each of M rows of logits (M, V), float32 (or float64 when f64); see the top of
 * the file. Per row i:
 * temperature[i] (0: greedy), top_k[i] (0: off), top_p[i] (1: off), the stream key
 * keys[2i], keys[2i+1] and the word position positions[i] it draws (rows with temperature > 0),
 * penalties pen_ids/pen_val[pen_start[i]..pen_start[i+1]), n_top[i] (-1: no logprobs, else the
 * number of top alternatives, at most max_top). Returns 0, or -1 if out of memory. */
int sample_rows(int32_t *ids, double *logprob, int32_t *top_ids_out, double *top_lp,
                const void *logits, int f64, int64_t M, int64_t V, const double *temperature,
                const int64_t *top_k, const double *top_p, const uint32_t *keys,
                const uint64_t *positions, const int64_t *pen_start, const int32_t *pen_ids,
                const double *pen_val, const int64_t *n_top, int64_t max_top) {
    sample_ctx c = {.ids = ids, .logprob = logprob, .top_ids = top_ids_out, .top_lp = top_lp,
                    .logits = logits, .f64 = f64, .M = M, .V = V, .max_top = max_top,
                    .temperature = temperature, .top_p = top_p, .top_k = top_k, .n_top = n_top,
                    .keys = keys, .positions = positions, .pen_start = pen_start,
                    .pen_ids = pen_ids, .pen_val = pen_val};
    if (M <= 0 || V <= 0) return 0;
    alpha_parallel_for(M, 1, sample_task, &c);
    return c.failed ? -1 : 0;
}
