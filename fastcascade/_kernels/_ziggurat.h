/* Standard normal draws for the engine's PCG64 streams (_pcg64.h), bit for bit the draws of
 * numpy's random_standard_normal, with its common case inlined.
 *
 * numpy's ziggurat (256 layers) takes one 64-bit draw r: idx = r & 0xff, sign = bit 8 of r,
 * rabs = the 52 bits above it. When rabs < ki[idx] (about 99% of draws) the normal is
 * rabs wi[idx], negated when sign is set. Otherwise it goes on drawing (the layer's wedge, or the
 * tail beyond the last layer). fc_zig_normal_fill does the common case here, with no call per
 * draw; on the other it rewinds the stream to before r and lets numpy's function draw that
 * normal, so every draw is numpy's.
 *
 * numpy keeps the tables ki and wi private. fc_zig_init reads them from random_standard_normal
 * itself, fed chosen draws on a probe generator: with rabs = 1 an accepted draw returns wi[idx];
 * ki[idx] is the smallest rabs the layer rejects (0 for numpy's layer 1, found by bisection
 * elsewhere; a rejection shows as a second draw). It then checks the inlined draws against
 * numpy's on a stream long enough to cross both slow paths; should they differ (a numpy with
 * another algorithm), fc_zig_ok stays 0 and every draw is numpy's own. A probe that takes more
 * than FC_ZIG_PROBE_BUDGET draws (another algorithm, which the fixed probe draws could keep
 * looping) is served varied draws until numpy's function returns, and the tables are given up
 * (not tested: the numpy this is built against has the ziggurat).
 * Include after _pcg64.h. Not thread-safe to initialise: call fc_zig_init once at module
 * import. */
#ifndef FC_ZIGGURAT_H
#define FC_ZIGGURAT_H

#include <stdint.h>
#include <string.h>
#include "numpy/random/distributions.h"

#define FC_ZIG_RABS_MASK 0x000fffffffffffffULL   /* 52 bits */
#define FC_ZIG_PROBE_BUDGET 64                    /* numpy's ziggurat takes 1 to 3 here */

static uint64_t fc_zig_ki[256];
static double fc_zig_wi[256];
static int fc_zig_ok = 0;

/* out[0..n) = the stream's next n standard normals (bg serves numpy's functions from g) */
static inline void fc_zig_fill_pcg64(fc_pcg64_t* g, bitgen_t* bg, double* out, ptrdiff_t n) {
    /* the state in a local (in registers: through g, every draw would wait on a store) */
    fc_u128 state = g->state;
    const fc_u128 inc = g->inc;
    for (ptrdiff_t i = 0; i < n; i++) {
        fc_u128 next = state * FC_PCG64_MULT + inc;
        uint64_t r = fc_pcg64_output(next);
        unsigned idx = (unsigned)(r & 0xff);
        uint64_t sign = (r >> 8) & 1u, rabs = (r >> 9) & FC_ZIG_RABS_MASK;
        if (rabs < fc_zig_ki[idx]) {
            double x = (double)(int64_t)rabs * fc_zig_wi[idx];   /* (rabs < 2^52: exact) */
            uint64_t bits;
            memcpy(&bits, &x, sizeof bits);
            bits ^= sign << 63;            /* -x when sign is set, without a branch on it */
            memcpy(&out[i], &bits, sizeof bits);
            state = next;
        } else {
            g->state = state;              /* before r: numpy draws r again and goes on */
            out[i] = random_standard_normal(bg);
            state = g->state;
        }
    }
    g->state = state;
}

/* numpy's random_standard_normal_fill(bg, n, out), the same draws */
static inline void fc_zig_normal_fill(bitgen_t* bg, ptrdiff_t n, double* out) {
    if (fc_zig_ok && fc_pcg64_is_ours(bg))
        fc_zig_fill_pcg64((fc_pcg64_t*)bg->state, bg, out, n);
    else
        random_standard_normal_fill(bg, n, out);
}

/* ---- reading the tables from numpy ----------------------------------------------------------- */

typedef struct {
    uint64_t first;   /* the draw under test */
    int n_u64, n_dbl; /* calls so far */
    uint64_t lcg;     /* past the budget: varied draws, so that any rejection loop ends */
} fc_zig_probe_t;

static int fc_zig_probe_over(fc_zig_probe_t* p) {
    if (p->n_u64 + p->n_dbl <= FC_ZIG_PROBE_BUDGET)
        return 0;
    p->lcg = p->lcg * 6364136223846793005ULL + 1442695040888963407ULL;
    return 1;
}

static uint64_t fc_zig_probe_u64(void* st) {
    fc_zig_probe_t* p = (fc_zig_probe_t*)st;
    /* after the first draw: rabs = 0 in layers 2, 3, ... in turn, until one accepts it (numpy's
     * layer 1 accepts none) */
    int k = p->n_u64++;
    if (fc_zig_probe_over(p))
        return p->lcg;
    return k == 0 ? p->first : (uint64_t)(2 + (k - 1) % 254);
}

/* 0.99 ends the tail's loop at its first pass (its test holds for u close to 1) */
static double fc_zig_probe_dbl(void* st) {
    fc_zig_probe_t* p = (fc_zig_probe_t*)st;
    p->n_dbl++;
    return fc_zig_probe_over(p) ? (double)(p->lcg >> 11) * (1.0 / 9007199254740992.0) : 0.99;
}

static uint32_t fc_zig_probe_u32(void* st) { return (uint32_t)fc_zig_probe_u64(st); }

/* set when a probe went past its budget: the tables are not numpy's ziggurat's */
static int fc_zig_probe_failed = 0;

/* numpy's normal for the draw idx | sign 0 | rabs; whether it took that draw alone */
static double fc_zig_probe(unsigned idx, uint64_t rabs, int* accepted) {
    fc_zig_probe_t p = {((uint64_t)idx) | (rabs << 9), 0, 0, 0x9e3779b97f4a7c15ULL};
    bitgen_t bg;
    double x;
    bg.state = &p;
    bg.next_uint64 = fc_zig_probe_u64;
    bg.next_uint32 = fc_zig_probe_u32;
    bg.next_double = fc_zig_probe_dbl;
    bg.next_raw = fc_zig_probe_u64;
    x = random_standard_normal(&bg);
    *accepted = p.n_u64 == 1 && p.n_dbl == 0;
    if (p.n_u64 + p.n_dbl > FC_ZIG_PROBE_BUDGET)
        fc_zig_probe_failed = 1;
    return x;
}

/* whether fc_zig_fill_pcg64 gives numpy's draws on a fixed stream of 40,000 normals (about
 * 400 slow-path draws, the tail's among them) */
static int fc_zig_selfcheck(void) {
    fc_pcg64_t g1, g2;
    bitgen_t b1, b2;
    double x1[1000], x2[1000];
    int k, i;
    fc_pcg64_set(&g1, 0x243f6a8885a308d3ULL, 0x13198a2e03707344ULL, 0xa4093822299f31d0ULL,
                 0x082efa98ec4e6c89ULL, 0, 0);
    g2 = g1;
    fc_pcg64_bitgen(&b1, &g1);
    fc_pcg64_bitgen(&b2, &g2);
    for (k = 0; k < 40; k++) {
        fc_zig_fill_pcg64(&g1, &b1, x1, 1000);
        random_standard_normal_fill(&b2, 1000, x2);
        for (i = 0; i < 1000; i++)
            if (memcmp(&x1[i], &x2[i], sizeof(double)) != 0)
                return 0;
    }
    return g1.state == g2.state;
}

/* read the tables and check them; returns fc_zig_ok */
static int fc_zig_init(void) {
    unsigned idx;
    int acc;
    fc_zig_ok = 0;
    fc_zig_probe_failed = 0;
    for (idx = 0; idx < 256; idx++) {
        uint64_t lo = 1, hi = FC_ZIG_RABS_MASK + 1;   /* lo accepted, hi rejected (or past) */
        fc_zig_wi[idx] = 0.0;                         /* (unused where ki <= 1) */
        fc_zig_ki[idx] = 0;
        fc_zig_probe(idx, 0, &acc);
        if (!acc)
            continue;                                 /* the layer accepts no draw */
        fc_zig_ki[idx] = 1;
        fc_zig_wi[idx] = fc_zig_probe(idx, 1, &acc);
        if (!acc)
            continue;
        fc_zig_probe(idx, FC_ZIG_RABS_MASK, &acc);
        if (acc) {
            fc_zig_ki[idx] = FC_ZIG_RABS_MASK + 1;   /* the layer accepts every rabs */
            continue;
        }
        while (hi - lo > 1) {
            uint64_t mid = lo + (hi - lo) / 2;
            fc_zig_probe(idx, mid, &acc);
            if (acc)
                lo = mid;
            else
                hi = mid;
        }
        fc_zig_ki[idx] = hi;
    }
    if (fc_zig_probe_failed)
        return 0;
    fc_zig_ok = fc_zig_selfcheck();
    return fc_zig_ok;
}

#endif
