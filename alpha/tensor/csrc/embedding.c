/* Token embedding: gather rows of a (V, C) table; backward scatter-adds rows of dout into the
 * table's gradient. The backward splits the C columns among tasks, and every task walks all ids
 * in order, so repeated ids are summed in a fixed order whatever the thread count. */
#include "alpha.h"

#include <string.h>

#define EMB_COLS 64

/* Index of the first id outside [0, V), or -1 when all are valid. */
int64_t embedding_check(const int32_t *ids, int64_t N, int64_t V) {
    for (int64_t i = 0; i < N; i++)
        if (ids[i] < 0 || ids[i] >= V) return i;
    return -1;
}

typedef struct {
    float *out;
    const float *src;
    const int32_t *ids;
    int64_t N, C, col_blocks;
} emb_ctx;

static void emb_fwd_task(void *vctx, int64_t begin, int64_t end) {
    emb_ctx *c = (emb_ctx *)vctx;
    for (int64_t i = begin; i < end; i++)
        memcpy(c->out + i * c->C, c->src + (int64_t)c->ids[i] * c->C, (size_t)c->C * sizeof(float));
}

/* out (N, C) = table[ids]; ids must have been checked. */
void embedding_forward(float *out, const int32_t *ids, const float *table, int64_t N, int64_t C) {
    emb_ctx c = {out, table, ids, N, C, 0};
    alpha_parallel_for(N, C >= 32768 ? 1 : 32768 / C, emb_fwd_task, &c);
}

static void emb_bwd_task(void *vctx, int64_t begin, int64_t end) {
    emb_ctx *c = (emb_ctx *)vctx;
    int64_t j0 = begin * EMB_COLS;
    int64_t j1 = end * EMB_COLS < c->C ? end * EMB_COLS : c->C;
    for (int64_t i = 0; i < c->N; i++) {
        float *d = c->out + (int64_t)c->ids[i] * c->C;
        const float *s = c->src + i * c->C;
        for (int64_t j = j0; j < j1; j++) d[j] += s[j];
    }
}

/* dtable[ids[i]] += dout[i]; ids must have been checked. */
void embedding_backward(float *dtable, const float *dout, const int32_t *ids, int64_t N,
                        int64_t C) {
    emb_ctx c = {dtable, dout, ids, N, C, 0};
    int64_t per = N * EMB_COLS;
    alpha_parallel_for((C + EMB_COLS - 1) / EMB_COLS, per >= 32768 ? 1 : 32768 / per,
                       emb_bwd_task, &c);
}
