/* Shared declarations for Alpha's C kernels: the thread pool and small helpers.
 *
 * Every kernel file includes this. Kernels are plain C functions with int64 sizes and raw
 * pointers (contiguous unless a stride argument says otherwise), called from Python via ctypes.
 * Determinism rule: the result must not depend on the thread count, so work is split into
 * fixed chunks and any reduction across chunks is combined in a fixed order.
 */
#ifndef ALPHA_H
#define ALPHA_H

#include <stdint.h>
#include <stddef.h>

/* fn(ctx, begin, end) processes items [begin, end). */
typedef void (*alpha_task_fn)(void *ctx, int64_t begin, int64_t end);

/* Runs fn over [0, n) in chunks of at least `grain` items on the persistent pool; returns when
 * every chunk is done. Runs inline when n <= grain or the pool has one thread. Not re-entrant:
 * a task must not call alpha_parallel_for. */
void alpha_parallel_for(int64_t n, int64_t grain, alpha_task_fn fn, void *ctx);

int alpha_num_threads(void);
void alpha_set_num_threads(int n);

#endif
