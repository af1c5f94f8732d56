// The engine's worker pool: persistent threads that spin briefly between parallel passes
// (a pass starts in about a microsecond instead of the tens a thread wake-up costs) and
// sleep on a condition variable after about a millisecond without work.
#define _GNU_SOURCE
#include "moe_kernels.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

enum { MAX_HELPERS = 255 };

static pthread_t helpers[MAX_HELPERS];
/// The generation each helper was created at: it must not miss the pass that created it.
static unsigned long start_generation[MAX_HELPERS + 1];
static int helper_count = 0;

static moe_task_fn task;
static void *task_ctx;
static int task_parts;
static _Atomic unsigned long generation = 0;
static _Atomic int remaining = 0;
static _Atomic int sleepers = 0;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static inline void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *helper_main(void *arg) {
    int id = (int)(intptr_t)arg;
    unsigned long seen = start_generation[id];
    for (;;) {
        unsigned long g;
        long long deadline = 0;
        unsigned spins = 0;
        while ((g = atomic_load_explicit(&generation, memory_order_acquire)) == seen) {
            relax();
            if ((++spins & 1023) != 0) continue;
            sched_yield();  // with more threads than cores, let the one with work run
            long long t = now_ns();
            if (deadline == 0) { deadline = t + 1000000; continue; }
            if (t < deadline) continue;
            pthread_mutex_lock(&mu);
            atomic_fetch_add(&sleepers, 1);
            while ((g = atomic_load(&generation)) == seen) pthread_cond_wait(&cv, &mu);
            atomic_fetch_sub(&sleepers, 1);
            pthread_mutex_unlock(&mu);
            break;
        }
        seen = g;
        if (id < task_parts) {
            task(task_ctx, id);
            atomic_fetch_sub_explicit(&remaining, 1, memory_order_acq_rel);
        }
    }
    return NULL;
}

int moe_pool_run(int parts, moe_task_fn fn, void *ctx) {
    if (parts > MAX_HELPERS + 1) parts = MAX_HELPERS + 1;
    while (helper_count < parts - 1) {
        start_generation[helper_count + 1] = atomic_load(&generation);
        if (pthread_create(&helpers[helper_count], NULL, helper_main, (void *)(intptr_t)(helper_count + 1)) != 0) break;
        pthread_detach(helpers[helper_count]);
        helper_count++;
    }
    if (parts > helper_count + 1) parts = helper_count + 1;
    if (parts <= 1) {
        fn(ctx, 0);
        return 1;
    }
    task = fn;
    task_ctx = ctx;
    task_parts = parts;
    atomic_store(&remaining, parts - 1);
    atomic_fetch_add(&generation, 1);
    if (atomic_load(&sleepers) > 0) {
        pthread_mutex_lock(&mu);
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
    }
    fn(ctx, 0);
    unsigned spins = 0;
    while (atomic_load_explicit(&remaining, memory_order_acquire) > 0) {
        relax();
        if ((++spins & 4095) == 0) sched_yield();
    }
    return parts;
}
