/* A persistent pthread pool: between jobs, workers spin briefly, then sleep on a condition var.
 *
 * Why persistent: creating threads per op would cost tens of microseconds, more than many small
 * ops take. Why spin: a training step issues ops back to back with a few microseconds of Python
 * between them, and waking a sleeping thread costs 5-50 us; a worker that has just finished a job
 * polls for the next one for SPIN_NS before it sleeps.
 *
 * A job is (fn, ctx, n, chunk) plus one atomic word, `work` = generation:32 | chunks:16 | next:16.
 * Any thread (the caller included) takes a chunk by bumping `next` with a compare-and-swap, which
 * fails once the generation changes or the chunks run out, so a thread that wakes late can never
 * run a chunk of a finished job. The caller waits for the chunks to be *done*, not for the workers
 * to check in: a worker that is descheduled (more threads than free cores) costs nothing, the
 * others just take its chunks. Which thread runs a chunk varies, so kernels must not let results
 * depend on it (see alpha.h). The size comes from ALPHA_NUM_THREADS (default: online CPUs) and can
 * be changed with alpha_set_num_threads (tests compare 1 vs N).
 */
#include "alpha.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define MAX_THREADS 256 /* 4 chunks per thread must fit the 16-bit chunk count */
#define SPIN_NS 100000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t submit_lock = PTHREAD_MUTEX_INITIALIZER;

static pthread_t workers[MAX_THREADS];
static int n_workers = 0;        /* threads besides the caller */
static int n_threads = 0;        /* 0 = not initialised */
static atomic_int shutting_down;

/* the current job: written by the caller before it publishes `work` (release); stable until all
 * of its chunks are done */
static alpha_task_fn job_fn;
static void *job_ctx;
static int64_t job_n, job_chunk;
static _Atomic uint64_t work;     /* generation << 32 | chunks << 16 | next */
static atomic_llong chunks_done;

static inline uint32_t word_gen(uint64_t w) { return (uint32_t)(w >> 32); }

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Runs chunks of generation `gen` until none is left. */
static void run_chunks(uint32_t gen) {
    uint64_t w = atomic_load_explicit(&work, memory_order_acquire);
    for (;;) {
        uint64_t chunks = (w >> 16) & 0xffff, next = w & 0xffff;
        if (word_gen(w) != gen || next >= chunks) return;
        if (!atomic_compare_exchange_weak_explicit(&work, &w, w + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue; /* w now holds the current word */
        int64_t b = (int64_t)next * job_chunk;
        int64_t e = b + job_chunk < job_n ? b + job_chunk : job_n;
        job_fn(job_ctx, b, e);
        if (atomic_fetch_add_explicit(&chunks_done, 1, memory_order_acq_rel) + 1 ==
            (long long)chunks) {
            pthread_mutex_lock(&lock); /* the caller may be asleep waiting for this */
            pthread_cond_broadcast(&done_cond);
            pthread_mutex_unlock(&lock);
        }
        w = atomic_load_explicit(&work, memory_order_acquire);
    }
}

/* Polls `cond(arg)` for up to SPIN_NS; returns 1 when it became true. After the first few
 * microseconds it yields the core between polls, so a busy machine still runs other threads. */
static int spin_until(int (*cond)(uint64_t), uint64_t arg) {
    int64_t start = now_ns();
    for (int i = 1;; i++) {
        if (cond(arg)) return 1;
        if (i < 1024)
            CPU_RELAX();
        else
            sched_yield();
        if ((i & 63) == 0 && now_ns() - start > SPIN_NS) return cond(arg);
    }
}

static int new_job(uint64_t seen) {
    return word_gen(atomic_load_explicit(&work, memory_order_acquire)) != (uint32_t)seen ||
           atomic_load(&shutting_down);
}

static int job_done(uint64_t chunks) {
    return atomic_load_explicit(&chunks_done, memory_order_acquire) == (long long)chunks;
}

static void *worker_main(void *arg) {
    /* the generation when the pool started: a job published before this thread runs is new */
    uint32_t seen = (uint32_t)(uintptr_t)arg;
    for (;;) {
        if (!spin_until(new_job, seen)) {
            pthread_mutex_lock(&lock);
            while (!new_job(seen)) pthread_cond_wait(&wake, &lock);
            pthread_mutex_unlock(&lock);
        }
        if (atomic_load(&shutting_down)) break;
        seen = word_gen(atomic_load_explicit(&work, memory_order_acquire));
        run_chunks(seen);
    }
    return NULL;
}

static void stop_workers(void) {
    pthread_mutex_lock(&lock);
    atomic_store(&shutting_down, 1);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < n_workers; i++) pthread_join(workers[i], NULL);
    n_workers = 0;
    atomic_store(&shutting_down, 0);
}

static void start_workers(int n) {
    if (n < 1) n = 1;
    if (n > MAX_THREADS) n = MAX_THREADS;
    n_threads = n;
    n_workers = 0;
    void *start_gen = (void *)(uintptr_t)word_gen(atomic_load(&work));
    for (int i = 0; i < n - 1; i++) {
        if (pthread_create(&workers[i], NULL, worker_main, start_gen) != 0) break;
        n_workers++;
    }
    n_threads = n_workers + 1;
}

static void ensure_init(void) {
    if (n_threads) return;
    int n = 0;
    const char *env = getenv("ALPHA_NUM_THREADS");
    if (env && *env) n = atoi(env);
    if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    start_workers(n);
}

int alpha_num_threads(void) {
    pthread_mutex_lock(&submit_lock);
    ensure_init();
    int n = n_threads;
    pthread_mutex_unlock(&submit_lock);
    return n;
}

void alpha_set_num_threads(int n) {
    pthread_mutex_lock(&submit_lock);
    if (n_threads) stop_workers();
    start_workers(n);
    pthread_mutex_unlock(&submit_lock);
}

void alpha_parallel_for(int64_t n, int64_t grain, alpha_task_fn fn, void *ctx) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    pthread_mutex_lock(&submit_lock);
    ensure_init();
    if (n_workers == 0 || n <= grain) {
        pthread_mutex_unlock(&submit_lock);
        fn(ctx, 0, n);
        return;
    }
    /* about 4 chunks per thread for balance, never smaller than grain */
    int64_t chunk = (n + 4 * n_threads - 1) / (4 * n_threads);
    if (chunk < grain) chunk = grain;
    uint64_t chunks = (uint64_t)((n + chunk - 1) / chunk);
    job_fn = fn;
    job_ctx = ctx;
    job_n = n;
    job_chunk = chunk;
    atomic_store_explicit(&chunks_done, 0, memory_order_relaxed);
    uint32_t gen = word_gen(atomic_load(&work)) + 1;
    pthread_mutex_lock(&lock);
    atomic_store_explicit(&work, (uint64_t)gen << 32 | chunks << 16, memory_order_release);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);

    run_chunks(gen);

    if (!spin_until(job_done, chunks)) {
        pthread_mutex_lock(&lock);
        while (!job_done(chunks)) pthread_cond_wait(&done_cond, &lock);
        pthread_mutex_unlock(&lock);
    }
    pthread_mutex_unlock(&submit_lock);
}
