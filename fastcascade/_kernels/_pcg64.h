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
 * FC_PCG64_EACH_DOUBLE (behind fc_pcg64_fill_double and fc_pcg64_add_affine) makes n doubles
 * with four independent state updates per block (s_{k} = a^k s + c_k, k = 1..4, all from the
 * block's first state), so that the multiplier's latency chain is one update per four draws
 * instead of one per draw.
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

/* For each of the stream's next n doubles u (in [0, 1), in order), with i its index: STEP(i, u).
 * Blocks of four make four independent state updates from the block's first state,
 * s_k = a^k s + c_k, so that the multiplier's latency chain is one update per four draws. */
#define FC_PCG64_EACH_DOUBLE(g, n, STEP)                                                       \
    do {                                                                                       \
        const fc_u128 a1_ = FC_PCG64_MULT, c1_ = (g)->inc;                                     \
        const fc_u128 a2_ = a1_ * a1_, c2_ = a1_ * c1_ + c1_;                                  \
        const fc_u128 a3_ = a2_ * a1_, c3_ = a1_ * c2_ + c1_;                                  \
        const fc_u128 a4_ = a3_ * a1_, c4_ = a1_ * c3_ + c1_;                                  \
        fc_u128 s_ = (g)->state;                                                               \
        ptrdiff_t i_ = 0;                                                                      \
        for (; i_ + 4 <= (n); i_ += 4) {                                                       \
            fc_u128 s1_ = a1_ * s_ + c1_, s2_ = a2_ * s_ + c2_;                                \
            fc_u128 s3_ = a3_ * s_ + c3_, s4_ = a4_ * s_ + c4_;                                \
            STEP(i_, fc_pcg64_to_double(fc_pcg64_output(s1_)));                                \
            STEP(i_ + 1, fc_pcg64_to_double(fc_pcg64_output(s2_)));                            \
            STEP(i_ + 2, fc_pcg64_to_double(fc_pcg64_output(s3_)));                            \
            STEP(i_ + 3, fc_pcg64_to_double(fc_pcg64_output(s4_)));                            \
            s_ = s4_;                                                                          \
        }                                                                                      \
        (g)->state = s_;                                                                       \
        for (; i_ < (n); i_++)                                                                 \
            STEP(i_, fc_pcg64_to_double(fc_pcg64_next64(g)));                                  \
    } while (0)

/* out[0..n) = n standard uniforms in [0, 1), the stream's next n doubles */
static inline void fc_pcg64_fill_double(fc_pcg64_t* g, double* out, ptrdiff_t n) {
#define FC_STORE(i, u) out[i] = (u)
    FC_PCG64_EACH_DOUBLE(g, n, FC_STORE);
#undef FC_STORE
}

/* z[i] = x[i] + m * (a + b u_i) for the stream's next n uniforms u_i (fc_pcg64_fill_double's
 * draws, in the same order), in one pass: the expression and roundings of adding m (a + b u)
 * after a fill, without the round trip through memory. x may be z (in place). */
static inline void fc_pcg64_add_affine(fc_pcg64_t* g, const double* x, double* z, ptrdiff_t n,
                                       double m, double a, double b) {
#define FC_ADD(i, u) z[i] = x[i] + m * (a + b * (u))
    FC_PCG64_EACH_DOUBLE(g, n, FC_ADD);
#undef FC_ADD
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
