/* One helper thread that runs a job function on request: a run's concurrent recording.

   fc_worker_start(fn, ctx)  starts the thread (NULL when it cannot: the caller runs serially)
   fc_worker_post(w)         runs fn(ctx) once on the helper; the previous job must be done
   fc_worker_wait(w)         returns when the posted job is done (its writes are then visible)
   fc_worker_idle(w)         whether it is done already (then its writes are visible)
   fc_worker_stop(w)         waits, ends the thread and frees w (w may be NULL)

   One job at a time. Waiting spins first (a run's records can be microseconds apart), then
   sleeps on a condition variable (they can also be milliseconds apart). The job counters are
   C11 atomics: a post publishes the caller's writes to the job, and the end of a job publishes
   the helper's writes (histories, its stop flag) back. Each counter has a cache line of its own
   (the other thread spins on it), and a waker takes the mutex only when somebody sleeps: the
   counter's update and the sleepers count are sequentially consistent, so either the waker sees
   the sleeper or the sleeper sees the new count before it waits. */
#ifndef FC_WORKER_H
#define FC_WORKER_H

#include <stdlib.h>
#include <string.h>

typedef void (*fc_job_fn)(void*);

#if defined(_WIN32) || defined(__STDC_NO_ATOMICS__)
/* no helper thread on this platform: runs record serially */
typedef struct fc_worker { int unused; } fc_worker;
static inline fc_worker* fc_worker_start(fc_job_fn fn, void* ctx) { (void)fn; (void)ctx; return NULL; }
static inline void fc_worker_post(fc_worker* w) { (void)w; }
static inline void fc_worker_wait(fc_worker* w) { (void)w; }
static inline int fc_worker_idle(fc_worker* w) { (void)w; return 1; }
static inline void fc_worker_stop(fc_worker* w) { (void)w; }
#else

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

/* spins (each a CPU pause hint) before a waiter goes to sleep: about 0.6 ms on the
   development machine (31 ns a pause), more on CPUs with a longer pause */
#define FC_WORKER_SPINS 20000
/* every 64 pauses (about 2 us) the spinner yields its core to any other runnable thread: with a
   busy process on one of two cores, a helper spinning without yielding slowed the run by its
   share of the cores (case (g) of the bench) */
#define FC_WORKER_YIELD_MASK 63

#define FC_CACHE_LINE 64

typedef struct fc_worker {
    _Alignas(FC_CACHE_LINE) atomic_long posted;   /* jobs posted so far (the caller writes) */
    _Alignas(FC_CACHE_LINE) atomic_long done;     /* jobs finished so far (the helper writes) */
    _Alignas(FC_CACHE_LINE) atomic_int quit;
    atomic_int sleepers;                          /* threads asleep on cv, or about to be */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    fc_job_fn fn;
    void* ctx;
} fc_worker;

static inline void fc_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* after a counter changed (seq_cst): wake the sleepers, if any */
static inline void fc_worker_wake(fc_worker* w) {
    if (atomic_load(&w->sleepers) == 0) return;
    pthread_mutex_lock(&w->mu);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static inline int fc_worker_has_job(fc_worker* w) {
    return atomic_load(&w->posted) != atomic_load_explicit(&w->done, memory_order_relaxed)
        || atomic_load(&w->quit);
}

static inline int fc_worker_is_idle(fc_worker* w) {
    return atomic_load(&w->done) == atomic_load_explicit(&w->posted, memory_order_relaxed);
}

/* spin (up to spins pauses), then sleep, until pred(w) holds; returns whether it slept */
static inline int fc_worker_await(fc_worker* w, int (*pred)(fc_worker*), int spins) {
    int slept = 0;
    for (int k = 0; k < spins; k++) {
        if (pred(w)) return 0;
        fc_cpu_relax();
        if ((k & FC_WORKER_YIELD_MASK) == FC_WORKER_YIELD_MASK)
            sched_yield();
    }
    pthread_mutex_lock(&w->mu);
    atomic_fetch_add(&w->sleepers, 1);
    while (!pred(w)) {
        pthread_cond_wait(&w->cv, &w->mu);
        slept = 1;
    }
    atomic_fetch_sub(&w->sleepers, 1);
    pthread_mutex_unlock(&w->mu);
    return slept;
}

static void* fc_worker_main(void* arg) {
    fc_worker* w = (fc_worker*)arg;
    /* The helper's spin between jobs adapts: halved each time no job came while it spun (on a
       core it shares with the poster, its spin only delays the next post), doubled back when
       one did (jobs microseconds apart). */
    int spins = FC_WORKER_SPINS;
    for (;;) {
        if (fc_worker_await(w, fc_worker_has_job, spins))
            spins /= 2;
        else if (spins < FC_WORKER_SPINS)
            spins = 2 * spins + 1 < FC_WORKER_SPINS ? 2 * spins + 1 : FC_WORKER_SPINS;
        if (atomic_load(&w->posted) != atomic_load_explicit(&w->done, memory_order_relaxed)) {
            w->fn(w->ctx);
            atomic_fetch_add(&w->done, 1);
            fc_worker_wake(w);
        } else {
            return NULL;   /* quit, and nothing left to do */
        }
    }
}

static inline fc_worker* fc_worker_start(fc_job_fn fn, void* ctx) {
    /* aligned as its counters' cache lines */
    void* mem = NULL;
    if (posix_memalign(&mem, FC_CACHE_LINE, sizeof(fc_worker)) != 0) return NULL;
    fc_worker* w = (fc_worker*)mem;
    memset(w, 0, sizeof(fc_worker));
    w->fn = fn;
    w->ctx = ctx;
    atomic_init(&w->posted, 0);
    atomic_init(&w->done, 0);
    atomic_init(&w->quit, 0);
    atomic_init(&w->sleepers, 0);
    if (pthread_mutex_init(&w->mu, NULL) != 0) { free(w); return NULL; }
    if (pthread_cond_init(&w->cv, NULL) != 0) {
        pthread_mutex_destroy(&w->mu);
        free(w);
        return NULL;
    }
    if (pthread_create(&w->thread, NULL, fc_worker_main, w) != 0) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return NULL;
    }
    return w;
}

static inline void fc_worker_post(fc_worker* w) {
    atomic_fetch_add(&w->posted, 1);
    fc_worker_wake(w);
}

static inline void fc_worker_wait(fc_worker* w) {
    fc_worker_await(w, fc_worker_is_idle, FC_WORKER_SPINS);
}
/* whether the posted job is done (then fc_worker_wait returns at once) */
static inline int fc_worker_idle(fc_worker* w) { return fc_worker_is_idle(w); }


static inline void fc_worker_stop(fc_worker* w) {
    if (w == NULL) return;
    fc_worker_wait(w);
    atomic_store(&w->quit, 1);
    fc_worker_wake(w);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

#endif
#endif
