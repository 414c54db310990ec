/* Ctrl-C for runs that hold no GIL: a C handler for SIGINT sets a flag that the engine's loop
   reads at every step, and then calls the handler it replaced (CPython's), so that Python
   raises KeyboardInterrupt as soon as it runs again.
   fc_interrupt_install()    puts the handler in place (once; nested calls count); 0 on success
   fc_interrupt_restore()    the last matching call puts the previous handler back
   fc_interrupt_requested()  whether SIGINT arrived since the outermost install
   The flag is a lock-free atomic (a relaxed load per step; async-signal-safe to store).
   Installs and restores are made by the main thread holding the GIL (fastcascade._interrupt),
   so the nesting count needs no lock. */
#ifndef FC_INTERRUPT_H
#define FC_INTERRUPT_H
#include <signal.h>

#if defined(__STDC_NO_ATOMICS__)
static volatile sig_atomic_t fc_interrupt_flag = 0;
static inline int fc_interrupt_requested(void) { return fc_interrupt_flag != 0; }
static inline void fc_interrupt_set(int v) { fc_interrupt_flag = v; }
#else
#include <stdatomic.h>
static atomic_int fc_interrupt_flag = 0;
static inline int fc_interrupt_requested(void) {
    return atomic_load_explicit(&fc_interrupt_flag, memory_order_relaxed) != 0;
}
static inline void fc_interrupt_set(int v) {
    atomic_store_explicit(&fc_interrupt_flag, v, memory_order_relaxed);
}
#endif

static int fc_interrupt_depth = 0;

#if defined(_WIN32)
typedef void (*fc_sig_fn)(int);
static fc_sig_fn fc_interrupt_previous = SIG_DFL;
static void fc_interrupt_handler(int sig) {
    fc_interrupt_set(1);
    signal(sig, fc_interrupt_handler);   /* Windows resets the handler on delivery */
    if (fc_interrupt_previous != SIG_DFL && fc_interrupt_previous != SIG_IGN
            && fc_interrupt_previous != SIG_ERR)
        fc_interrupt_previous(sig);
}
static inline int fc_interrupt_install(void) {
    if (fc_interrupt_depth++ > 0) return 0;
    fc_interrupt_set(0);
    fc_interrupt_previous = signal(SIGINT, fc_interrupt_handler);
    if (fc_interrupt_previous == SIG_ERR) { fc_interrupt_depth = 0; return -1; }
    return 0;
}
static inline void fc_interrupt_restore(void) {
    if (fc_interrupt_depth == 0 || --fc_interrupt_depth > 0) return;
    signal(SIGINT, fc_interrupt_previous);
}
#else
static struct sigaction fc_interrupt_previous;
static void fc_interrupt_handler(int sig, siginfo_t* info, void* uctx) {
    fc_interrupt_set(1);
    if (fc_interrupt_previous.sa_flags & SA_SIGINFO) {
        if (fc_interrupt_previous.sa_sigaction != NULL)
            fc_interrupt_previous.sa_sigaction(sig, info, uctx);
    } else if (fc_interrupt_previous.sa_handler != SIG_DFL
               && fc_interrupt_previous.sa_handler != SIG_IGN) {
        fc_interrupt_previous.sa_handler(sig);
    }
}
static inline int fc_interrupt_install(void) {
    struct sigaction act;
    if (fc_interrupt_depth++ > 0) return 0;
    fc_interrupt_set(0);
    act.sa_sigaction = fc_interrupt_handler;
    sigemptyset(&act.sa_mask);
    act.sa_flags = SA_SIGINFO | SA_ONSTACK;
    if (sigaction(SIGINT, &act, &fc_interrupt_previous) != 0) { fc_interrupt_depth = 0; return -1; }
    return 0;
}
static inline void fc_interrupt_restore(void) {
    if (fc_interrupt_depth == 0 || --fc_interrupt_depth > 0) return;
    sigaction(SIGINT, &fc_interrupt_previous, NULL);
}
#endif
#endif
