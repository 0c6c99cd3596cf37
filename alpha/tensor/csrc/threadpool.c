/* A persistent pthread pool: workers sleep on a condition variable between jobs.
 *
 * Why persistent: creating threads per op would cost tens of microseconds, more than many small
 * ops take. A job is (fn, ctx, n, grain); chunks are handed out through an atomic counter, and the
 * caller thread works too. The size comes from ALPHA_NUM_THREADS (default: online CPUs) and can
 * be changed with alpha_set_num_threads (used by tests to compare 1 vs N threads).
 */
#include "alpha.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_THREADS 256

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t submit_lock = PTHREAD_MUTEX_INITIALIZER;

static pthread_t workers[MAX_THREADS];
static int n_workers = 0;        /* threads besides the caller */
static int n_threads = 0;        /* 0 = not initialised */
static int shutting_down = 0;

/* the current job */
static alpha_task_fn job_fn;
static void *job_ctx;
static int64_t job_n, job_chunk, job_chunks;
static atomic_llong next_chunk;
static int active;               /* workers still inside the current job */
static unsigned long generation; /* bumps per job so sleeping workers know there is new work */

static void run_chunks(void) {
    for (;;) {
        int64_t c = atomic_fetch_add(&next_chunk, 1);
        if (c >= job_chunks) break;
        int64_t b = c * job_chunk;
        int64_t e = b + job_chunk < job_n ? b + job_chunk : job_n;
        job_fn(job_ctx, b, e);
    }
}

static void *worker_main(void *arg) {
    (void)arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (generation == seen && !shutting_down) pthread_cond_wait(&wake, &lock);
        if (shutting_down) break;
        seen = generation;
        pthread_mutex_unlock(&lock);
        run_chunks();
        pthread_mutex_lock(&lock);
        if (--active == 0) pthread_cond_signal(&done);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

static void stop_workers(void) {
    pthread_mutex_lock(&lock);
    shutting_down = 1;
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < n_workers; i++) pthread_join(workers[i], NULL);
    n_workers = 0;
    shutting_down = 0;
}

static void start_workers(int n) {
    if (n < 1) n = 1;
    if (n > MAX_THREADS) n = MAX_THREADS;
    n_threads = n;
    n_workers = 0;
    for (int i = 0; i < n - 1; i++) {
        if (pthread_create(&workers[i], NULL, worker_main, NULL) != 0) break;
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
    pthread_mutex_lock(&lock);
    job_fn = fn;
    job_ctx = ctx;
    job_n = n;
    job_chunk = chunk;
    job_chunks = (n + chunk - 1) / chunk;
    atomic_store(&next_chunk, 0);
    active = n_workers;
    generation++;
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);

    run_chunks();

    pthread_mutex_lock(&lock);
    while (active > 0) pthread_cond_wait(&done, &lock);
    pthread_mutex_unlock(&lock);
    pthread_mutex_unlock(&submit_lock);
}
