/* Memory ops: strided n-d copy (views -> contiguous, contiguous -> KV-cache slices, broadcast
 * fills with a zero-stride source), dtype casts, fills.
 *
 * Strides are in elements. Dims of size 1 are dropped and adjacent dims that are contiguous in
 * both operands are merged, so a copy between two contiguous buffers is one memcpy per chunk.
 */
#include "alpha.h"

#include <string.h>

#define MAX_DIMS 16
#define COPY_PIECE 65536 /* elements per parallel task along the innermost dim */

/* Drop size-1 dims and merge dims that are contiguous in every operand. Returns the new rank.
 * shape/strides arrays are rewritten in place (n_ops stride arrays). */
int alpha_coalesce(int64_t *shape, int64_t **strides, int n_ops, int ndim) {
    int k = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 1) continue;
        shape[k] = shape[d];
        for (int o = 0; o < n_ops; o++) strides[o][k] = strides[o][d];
        k++;
    }
    if (k == 0) return 0;
    int m = 0; /* merge d into m when every operand has stride[m] == stride[d] * shape[d] */
    for (int d = 1; d < k; d++) {
        int ok = 1;
        for (int o = 0; o < n_ops; o++)
            if (strides[o][m] != strides[o][d] * shape[d]) ok = 0;
        if (ok) {
            shape[m] *= shape[d];
            for (int o = 0; o < n_ops; o++) strides[o][m] = strides[o][d];
        } else {
            m++;
            shape[m] = shape[d];
            for (int o = 0; o < n_ops; o++) strides[o][m] = strides[o][d];
        }
    }
    return m + 1;
}

typedef struct {
    char *dst;
    const char *src;
    int64_t shape[MAX_DIMS], ds[MAX_DIMS], ss[MAX_DIMS];
    int ndim, elsize;
    int64_t inner, pieces; /* innermost length, tasks per row */
} copy_ctx;

static void copy_span(char *d, int64_t ds, const char *s, int64_t ss, int64_t n, int elsize) {
    if (ds == 1 && ss == 1) {
        memcpy(d, s, (size_t)(n * elsize));
        return;
    }
    switch (elsize) {
    case 1:
        for (int64_t i = 0; i < n; i++) d[i * ds] = s[i * ss];
        break;
    case 2: {
        uint16_t *dd = (uint16_t *)d;
        const uint16_t *sp = (const uint16_t *)s;
        for (int64_t i = 0; i < n; i++) dd[i * ds] = sp[i * ss];
        break;
    }
    case 4: {
        uint32_t *dd = (uint32_t *)d;
        const uint32_t *sp = (const uint32_t *)s;
        if (ss == 0) {
            uint32_t v = sp[0];
            for (int64_t i = 0; i < n; i++) dd[i * ds] = v;
        } else {
            for (int64_t i = 0; i < n; i++) dd[i * ds] = sp[i * ss];
        }
        break;
    }
    default: {
        uint64_t *dd = (uint64_t *)d;
        const uint64_t *sp = (const uint64_t *)s;
        for (int64_t i = 0; i < n; i++) dd[i * ds] = sp[i * ss];
        break;
    }
    }
}

static void copy_task(void *vctx, int64_t begin, int64_t end) {
    copy_ctx *c = (copy_ctx *)vctx;
    int nd = c->ndim, es = c->elsize;
    for (int64_t task = begin; task < end; task++) {
        int64_t row = task / c->pieces, piece = task % c->pieces;
        int64_t doff = 0, soff = 0, r = row;
        for (int d = nd - 2; d >= 0; d--) {
            int64_t i = r % c->shape[d];
            r /= c->shape[d];
            doff += i * c->ds[d];
            soff += i * c->ss[d];
        }
        int64_t i0 = piece * COPY_PIECE;
        int64_t n = c->inner - i0 < COPY_PIECE ? c->inner - i0 : COPY_PIECE;
        doff += i0 * c->ds[nd - 1];
        soff += i0 * c->ss[nd - 1];
        copy_span(c->dst + doff * es, c->ds[nd - 1], c->src + soff * es, c->ss[nd - 1], n, es);
    }
}

/* dst[idx] = src[idx] over an ndim index space (strides in elements, elsize bytes each). */
void strided_copy(void *dst, const int64_t *dst_strides, const void *src,
                  const int64_t *src_strides, const int64_t *shape, int ndim, int elsize) {
    copy_ctx c;
    int64_t *strides[2] = {c.ds, c.ss};
    if (ndim > MAX_DIMS) return;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 0) return;
        c.shape[d] = shape[d];
        c.ds[d] = dst_strides[d];
        c.ss[d] = src_strides[d];
    }
    int nd = alpha_coalesce(c.shape, strides, 2, ndim);
    if (nd == 0) {
        memcpy(dst, src, (size_t)elsize);
        return;
    }
    c.dst = (char *)dst;
    c.src = (const char *)src;
    c.ndim = nd;
    c.elsize = elsize;
    c.inner = c.shape[nd - 1];
    c.pieces = (c.inner + COPY_PIECE - 1) / COPY_PIECE;
    int64_t rows = 1;
    for (int d = 0; d < nd - 1; d++) rows *= c.shape[d];
    int64_t grain = c.inner >= COPY_PIECE ? 1 : COPY_PIECE / c.inner;
    alpha_parallel_for(rows * c.pieces, grain, copy_task, &c);
}

/* ---- casts (contiguous) ------------------------------------------------------------------ */
/* dtype codes: 0 f32, 1 f64, 2 i32, 3 u16, 4 u32 (the order of alpha.core.backend.DTYPES) */

typedef struct {
    void *dst;
    const void *src;
    int dt, st;
} cast_ctx;

#define CAST_LOOP(DT, ST)                                                                      \
    do {                                                                                       \
        DT *o = (DT *)c->dst;                                                                  \
        const ST *x = (const ST *)c->src;                                                      \
        for (int64_t i = b; i < e; i++) o[i] = (DT)x[i];                                       \
    } while (0)

#define CAST_FROM(DT)                                                                          \
    switch (c->st) {                                                                           \
    case 0: CAST_LOOP(DT, float); break;                                                       \
    case 1: CAST_LOOP(DT, double); break;                                                      \
    case 2: CAST_LOOP(DT, int32_t); break;                                                     \
    case 3: CAST_LOOP(DT, uint16_t); break;                                                    \
    default: CAST_LOOP(DT, uint32_t); break;                                                   \
    }

static void cast_task(void *vctx, int64_t b, int64_t e) {
    cast_ctx *c = (cast_ctx *)vctx;
    switch (c->dt) {
    case 0: CAST_FROM(float); break;
    case 1: CAST_FROM(double); break;
    case 2: CAST_FROM(int32_t); break;
    case 3: CAST_FROM(uint16_t); break;
    default: CAST_FROM(uint32_t); break;
    }
}

void cast_copy(void *dst, int dst_dtype, const void *src, int src_dtype, int64_t n) {
    cast_ctx c = {dst, src, dst_dtype, src_dtype};
    alpha_parallel_for(n, 65536, cast_task, &c);
}

/* ---- fill (contiguous) --------------------------------------------------------------------- */

typedef struct {
    char *dst;
    char value[8];
    int elsize;
} fill_ctx;

static void fill_task(void *vctx, int64_t b, int64_t e) {
    fill_ctx *c = (fill_ctx *)vctx;
    if (c->elsize == 4) {
        uint32_t v;
        memcpy(&v, c->value, 4);
        uint32_t *o = (uint32_t *)c->dst;
        for (int64_t i = b; i < e; i++) o[i] = v;
    } else if (c->elsize == 8) {
        uint64_t v;
        memcpy(&v, c->value, 8);
        uint64_t *o = (uint64_t *)c->dst;
        for (int64_t i = b; i < e; i++) o[i] = v;
    } else {
        uint16_t v;
        memcpy(&v, c->value, 2);
        uint16_t *o = (uint16_t *)c->dst;
        for (int64_t i = b; i < e; i++) o[i] = v;
    }
}

/* dst[0..n) = *value (elsize bytes: 2, 4 or 8). */
void fill_contig(void *dst, const void *value, int elsize, int64_t n) {
    fill_ctx c;
    c.dst = (char *)dst;
    memcpy(c.value, value, (size_t)elsize);
    c.elsize = elsize;
    alpha_parallel_for(n, 65536, fill_task, &c);
}
