// A small pool of compute threads for the kernels' parallel loops. A decode step runs dozens of
// products of tens of microseconds each, back to back; waking threads through a general-purpose
// queue for every one of them costs a measurable share of the step. The pool's threads spin a
// little after each loop (the next product is usually microseconds away), then sleep.
#include "CKernels.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

enum { SPIN_NANOSECONDS = 100000 };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;   // guards sleeping threads and resizing
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t busy = PTHREAD_MUTEX_INITIALIZER;   // one loop at a time; others run inline
static atomic_ulong generation;
static atomic_long next_task, finished_tasks;
static long task_count;
static mesh_task_fn task_function;
static void *task_context;
static int thread_count;   // helper threads (the caller is one more)
static int sleeping;
static atomic_ulong rests;   // bumped by mesh_pool_rest: spinning helpers go to sleep at once

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

static void run_tasks(void) {
    long task;
    while ((task = atomic_fetch_add(&next_task, 1)) < task_count) {
        task_function(task_context, task);
        atomic_fetch_add(&finished_tasks, 1);
    }
}

static void *helper(void *unused) {
    (void)unused;
    unsigned long seen = atomic_load(&generation);
    for (;;) {
        long start = now_ns();
        const unsigned long rested = atomic_load_explicit(&rests, memory_order_relaxed);
        unsigned long current;
        for (unsigned spins = 1; (current = atomic_load_explicit(&generation, memory_order_acquire)) == seen; spins++) {
            // Other processes (a worker beside its coordinator) may need this core: offer it now and then.
            if (spins % 64 == 0) sched_yield();
            if ((spins % 256 == 0 && now_ns() - start > SPIN_NANOSECONDS)
                || (spins % 16 == 0 && atomic_load_explicit(&rests, memory_order_relaxed) != rested)) {
                pthread_mutex_lock(&lock);
                sleeping++;
                while ((current = atomic_load(&generation)) == seen) pthread_cond_wait(&wake, &lock);
                sleeping--;
                pthread_mutex_unlock(&lock);
                break;
            }
            CPU_RELAX();
        }
        seen = current;
        run_tasks();
    }
    return NULL;
}

void mesh_pool_set_threads(int threads) {
    pthread_mutex_lock(&busy);
    // Threads are only ever added: extra ones find no tasks beyond the caller's count.
    for (; thread_count < threads - 1; thread_count++) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, helper, NULL) != 0) break;
        pthread_detach(thread);
    }
    pthread_mutex_unlock(&busy);
}

void mesh_pool_rest(void) { atomic_fetch_add_explicit(&rests, 1, memory_order_relaxed); }

void mesh_pool_run(long tasks, mesh_task_fn function, void *context) {
    if (tasks <= 1 || thread_count == 0 || pthread_mutex_trylock(&busy) != 0) {
        // One task, no helpers, or a loop already running (another thread's, or this loop's
        // own tasks nesting): run here.
        for (long task = 0; task < tasks; task++) function(context, task);
        return;
    }
    task_function = function;
    task_context = context;
    task_count = tasks;
    atomic_store(&finished_tasks, 0);
    atomic_store(&next_task, 0);
    atomic_fetch_add_explicit(&generation, 1, memory_order_release);
    pthread_mutex_lock(&lock);
    if (sleeping > 0) pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);
    run_tasks();
    while (atomic_load_explicit(&finished_tasks, memory_order_acquire) < tasks) CPU_RELAX();
    pthread_mutex_unlock(&busy);
}
