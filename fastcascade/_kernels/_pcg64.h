/* numpy's PCG64 (XSL-RR 128/64), inlined, for the engine's draws.
 *
 * numpy.random.PCG64 reaches C code only through bitgen_t's function pointers: one indirect,
 * non-inlined call per draw (about 6-7 cycles on the machines we measure). The engine instead
 * copies the generator's 128-bit state into an fc_pcg64_t at the start of a run, draws from it
 * here, and writes the state back at the end (fastcascade/_kernels/_noise.pyx: stream_open,
 * stream_close). The draws are numpy's bit for bit:
 *   state <- state * MULT + inc   (mod 2^128), then
 *   out    = rotr64(hi(state) ^ lo(state), state >> 122),
 *   double = (out >> 11) * 2^-53,
 *   next32 = the low half of a fresh 64-bit draw, the high half kept for the next call.
 * fc_pcg64_fill_double makes n doubles with four independent state updates per block
 * (s_{k} = a^k s + c_k, k = 1..4, all from the block's first state), so that the multiplier's
 * latency chain is one update per four draws instead of one per draw.
 *
 * A bitgen_t whose state is an fc_pcg64_t (fc_pcg64_bitgen) serves numpy's C distributions
 * (normals, bounded integers, ...) from the same stream. */
#ifndef FC_PCG64_H
#define FC_PCG64_H

#include <stddef.h>
#include <stdint.h>
#include "numpy/random/bitgen.h"

typedef __uint128_t fc_u128;

typedef struct {
    fc_u128 state;
    fc_u128 inc;
    int has_uint32;        /* numpy's buffered half of a 64-bit draw, for next_uint32 */
    uint32_t uinteger;
} fc_pcg64_t;

#define FC_PCG64_MULT \
    (((fc_u128)2549297995355413924ULL << 64) | (fc_u128)4865540595714422341ULL)

static inline uint64_t fc_pcg64_output(fc_u128 s) {
    uint64_t x = (uint64_t)(s >> 64) ^ (uint64_t)s;
    unsigned rot = (unsigned)(s >> 122);
    return (x >> rot) | (x << ((-rot) & 63u));
}

static inline double fc_pcg64_to_double(uint64_t x) {
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

static inline uint64_t fc_pcg64_next64(fc_pcg64_t* g) {
    g->state = g->state * FC_PCG64_MULT + g->inc;
    return fc_pcg64_output(g->state);
}

static uint64_t fc_pcg64_next64_cb(void* st) { return fc_pcg64_next64((fc_pcg64_t*)st); }

static double fc_pcg64_next_double_cb(void* st) {
    return fc_pcg64_to_double(fc_pcg64_next64((fc_pcg64_t*)st));
}

static uint32_t fc_pcg64_next32_cb(void* st) {
    fc_pcg64_t* g = (fc_pcg64_t*)st;
    uint64_t next;
    if (g->has_uint32) {
        g->has_uint32 = 0;
        return g->uinteger;
    }
    next = fc_pcg64_next64(g);
    g->has_uint32 = 1;
    g->uinteger = (uint32_t)(next >> 32);
    return (uint32_t)(next & 0xffffffffULL);
}

/* out[0..n) = n standard uniforms in [0, 1), the stream's next n doubles */
static inline void fc_pcg64_fill_double(fc_pcg64_t* g, double* out, ptrdiff_t n) {
    const fc_u128 a1 = FC_PCG64_MULT, c1 = g->inc;
    const fc_u128 a2 = a1 * a1, c2 = a1 * c1 + c1;
    const fc_u128 a3 = a2 * a1, c3 = a1 * c2 + c1;
    const fc_u128 a4 = a3 * a1, c4 = a1 * c3 + c1;
    fc_u128 s = g->state;
    ptrdiff_t i = 0;
    for (; i + 4 <= n; i += 4) {
        fc_u128 s1 = a1 * s + c1, s2 = a2 * s + c2, s3 = a3 * s + c3, s4 = a4 * s + c4;
        out[i] = fc_pcg64_to_double(fc_pcg64_output(s1));
        out[i + 1] = fc_pcg64_to_double(fc_pcg64_output(s2));
        out[i + 2] = fc_pcg64_to_double(fc_pcg64_output(s3));
        out[i + 3] = fc_pcg64_to_double(fc_pcg64_output(s4));
        s = s4;
    }
    g->state = s;
    for (; i < n; i++)
        out[i] = fc_pcg64_to_double(fc_pcg64_next64(g));
}

/* z[i] = z[i] + m * (a + b u_i) for the stream's next n uniforms u_i (fc_pcg64_fill_double's
 * draws, in the same order), in one pass: the expression and roundings of adding m (a + b u)
 * after a fill, without the round trip through memory */
static inline void fc_pcg64_add_affine(fc_pcg64_t* g, double* z, ptrdiff_t n, double m,
                                       double a, double b) {
    const fc_u128 a1 = FC_PCG64_MULT, c1 = g->inc;
    const fc_u128 a2 = a1 * a1, c2 = a1 * c1 + c1;
    const fc_u128 a3 = a2 * a1, c3 = a1 * c2 + c1;
    const fc_u128 a4 = a3 * a1, c4 = a1 * c3 + c1;
    fc_u128 s = g->state;
    ptrdiff_t i = 0;
    for (; i + 4 <= n; i += 4) {
        fc_u128 s1 = a1 * s + c1, s2 = a2 * s + c2, s3 = a3 * s + c3, s4 = a4 * s + c4;
        z[i] = z[i] + m * (a + b * fc_pcg64_to_double(fc_pcg64_output(s1)));
        z[i + 1] = z[i + 1] + m * (a + b * fc_pcg64_to_double(fc_pcg64_output(s2)));
        z[i + 2] = z[i + 2] + m * (a + b * fc_pcg64_to_double(fc_pcg64_output(s3)));
        z[i + 3] = z[i + 3] + m * (a + b * fc_pcg64_to_double(fc_pcg64_output(s4)));
        s = s4;
    }
    g->state = s;
    for (; i < n; i++)
        z[i] = z[i] + m * (a + b * fc_pcg64_to_double(fc_pcg64_next64(g)));
}

/* bg serves numpy's C distributions from g (g must outlive bg's use) */
static inline void fc_pcg64_bitgen(bitgen_t* bg, fc_pcg64_t* g) {
    bg->state = g;
    bg->next_uint64 = fc_pcg64_next64_cb;
    bg->next_uint32 = fc_pcg64_next32_cb;
    bg->next_double = fc_pcg64_next_double_cb;
    bg->next_raw = fc_pcg64_next64_cb;
}

/* numpy's state as 64-bit halves (Cython has no 128-bit integer type) */
static inline void fc_pcg64_set(fc_pcg64_t* g, uint64_t state_hi, uint64_t state_lo,
                                uint64_t inc_hi, uint64_t inc_lo, int has_uint32,
                                uint32_t uinteger) {
    g->state = ((fc_u128)state_hi << 64) | state_lo;
    g->inc = ((fc_u128)inc_hi << 64) | inc_lo;
    g->has_uint32 = has_uint32;
    g->uinteger = uinteger;
}

static inline uint64_t fc_pcg64_state_hi(const fc_pcg64_t* g) { return (uint64_t)(g->state >> 64); }
static inline uint64_t fc_pcg64_state_lo(const fc_pcg64_t* g) { return (uint64_t)g->state; }

/* whether bg is one of ours (set up by fc_pcg64_bitgen in this compilation unit) */
static inline int fc_pcg64_is_ours(const bitgen_t* bg) {
    return bg->next_double == fc_pcg64_next_double_cb;
}

#endif
