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
 * instead of one per draw. With AVX2 (fc_pcg64_select), long fills put half of the draws on
 * vector lanes (FC_PCG64_EACH_DOUBLE_AVX2), with AVX-512 four fifths (FC_PCG64_EACH_DOUBLE_V8;
 * with AVX-512 IFMA, its lanes' states in 52-bit limbs): the same doubles.
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

/* ---- AVX2: half of the draws on vector lanes ---------------------------------------------------
 * The scalar blocks above are bound by the integer multiplier (three 64-bit multiplies a draw).
 * With AVX2, blocks of eight draws take four from vector lanes, whose states are kept as four
 * 32-bit limbs (one per 64-bit lane, multiplied by vpmuludq), and four from scalar states, so
 * that the vector units and the integer multiplier work at once: draws i..i+3 of a block come
 * from the lanes, i+4..i+7 from the scalar states, all eight stepping by a^8 per block. Integer
 * arithmetic mod 2^128 and an exact conversion: the same doubles, bit for bit. About 1.4x the
 * scalar blocks' speed here (an AMD EPYC); the extension is compiled with -ffp-contract=off, so
 * the affine update rounds as numpy's separate multiply and add do. */
#if defined(__GNUC__) && defined(__x86_64__)
#define FC_PCG64_AVX2 1
#include <immintrin.h>

#define FC_PCG64_VINLINE static inline __attribute__((always_inline, target("avx2")))

typedef struct {
    __m256i limb[4];    /* limb j (bits 32j .. 32j + 31) of four states, one per 64-bit lane */
} fc_pcg64_v4;

static inline void fc_pcg64_limbs(fc_u128 v, uint64_t out[4]) {
    for (int j = 0; j < 4; j++) out[j] = (uint64_t)(v >> (32 * j)) & 0xffffffffULL;
}

/* s <- a s + c (mod 2^128) in every lane (a, c: the limbs of the multiplier and increment,
 * broadcast). Schoolbook product of the limbs below 2^128; 64-bit sums of 32-bit pieces, so
 * that no sum overflows, and the carries passed up. */
FC_PCG64_VINLINE void fc_pcg64_v4_step(fc_pcg64_v4* s, const __m256i a[4], const __m256i c[4]) {
    const __m256i lo32 = _mm256_set1_epi64x(0xffffffffLL);
    const __m256i s0 = s->limb[0], s1 = s->limb[1], s2 = s->limb[2], s3 = s->limb[3];
#define FC_LO(x) _mm256_and_si256(x, lo32)
#define FC_HI(x) _mm256_srli_epi64(x, 32)
#define FC_ADD2(x, y) _mm256_add_epi64(x, y)
    __m256i p00 = _mm256_mul_epu32(a[0], s0);
    __m256i x0 = FC_ADD2(p00, c[0]);                               /* < 2^64 */
    __m256i p01 = _mm256_mul_epu32(a[0], s1), p10 = _mm256_mul_epu32(a[1], s0);
    __m256i x1 = FC_ADD2(FC_ADD2(FC_LO(p01), FC_LO(p10)), FC_ADD2(c[1], FC_HI(x0)));
    __m256i k1 = FC_ADD2(FC_HI(x1), FC_ADD2(FC_HI(p01), FC_HI(p10)));
    __m256i p02 = _mm256_mul_epu32(a[0], s2), p11 = _mm256_mul_epu32(a[1], s1);
    __m256i p20 = _mm256_mul_epu32(a[2], s0);
    __m256i x2 = FC_ADD2(FC_ADD2(FC_LO(p02), FC_LO(p11)), FC_ADD2(FC_LO(p20), FC_ADD2(c[2], k1)));
    __m256i k2 = FC_ADD2(FC_ADD2(FC_HI(x2), FC_HI(p02)), FC_ADD2(FC_HI(p11), FC_HI(p20)));
    /* the top limb needs only the low 32 bits of its terms */
    __m256i x3 = FC_ADD2(FC_ADD2(_mm256_mul_epu32(a[0], s3), _mm256_mul_epu32(a[1], s2)),
                         FC_ADD2(FC_ADD2(_mm256_mul_epu32(a[2], s1), _mm256_mul_epu32(a[3], s0)),
                                 FC_ADD2(c[3], k2)));
    s->limb[0] = FC_LO(x0);
    s->limb[1] = FC_LO(x1);
    s->limb[2] = FC_LO(x2);
    s->limb[3] = FC_LO(x3);
#undef FC_LO
#undef FC_HI
#undef FC_ADD2
}

/* fc_pcg64_to_double(fc_pcg64_output(state)) of every lane */
FC_PCG64_VINLINE __m256d fc_pcg64_v4_double(const fc_pcg64_v4* s) {
    const __m256i magic = _mm256_set1_epi64x(0x4330000000000000LL);   /* 2^52 */
    const __m256d two52 = _mm256_set1_pd(0x1p52);
    __m256i hi = _mm256_or_si256(_mm256_slli_epi64(s->limb[3], 32), s->limb[2]);
    __m256i lo = _mm256_or_si256(_mm256_slli_epi64(s->limb[1], 32), s->limb[0]);
    __m256i x = _mm256_xor_si256(hi, lo);
    __m256i rot = _mm256_srli_epi64(s->limb[3], 26);                  /* state >> 122 */
    /* rotr64(x, rot): a shift by 64 gives 0 (rot = 0) */
    x = _mm256_or_si256(_mm256_srlv_epi64(x, rot),
                        _mm256_sllv_epi64(x, _mm256_sub_epi64(_mm256_set1_epi64x(64), rot)));
    /* (x >> 11) 2^-53 exactly: its top 52 bits and its last bit through 2^52's mantissa */
    __m256d top = _mm256_sub_pd(
        _mm256_castsi256_pd(_mm256_or_si256(_mm256_srli_epi64(x, 12), magic)), two52);
    __m256d bit = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(
        _mm256_and_si256(_mm256_srli_epi64(x, 11), _mm256_set1_epi64x(1)), magic)), two52);
    return _mm256_mul_pd(_mm256_add_pd(_mm256_add_pd(top, top), bit), _mm256_set1_pd(0x1p-53));
}

/* FC_PCG64_EACH_DOUBLE with vector lanes: STEP4(i, u4) for draws i..i+3 (u4 a __m256d), STEP(i, u)
 * for each scalar draw, in blocks of eight, then the last n % 8 draws one by one */
#define FC_PCG64_EACH_DOUBLE_AVX2(g, n, STEP4, STEP)                                           \
    do {                                                                                       \
        const fc_u128 a1_ = FC_PCG64_MULT, c1_ = (g)->inc;                                     \
        fc_u128 a8_ = 1, c8_ = 0, s_ = (g)->state, sk_[8];                                     \
        uint64_t al_[4], cl_[4], sl_[4][4];                                                    \
        __m256i A_[4], C_[4];                                                                  \
        fc_pcg64_v4 v_;                                                                        \
        ptrdiff_t i_ = 0;                                                                      \
        int k_, j_;                                                                            \
        for (k_ = 0; k_ < 8; k_++) {                                                           \
            s_ = a1_ * s_ + c1_;   /* the block's eight states */                              \
            sk_[k_] = s_;                                                                      \
            c8_ = a1_ * c8_ + c1_;                                                             \
            a8_ = a1_ * a8_;                                                                   \
        }                                                                                      \
        fc_pcg64_limbs(a8_, al_);                                                              \
        fc_pcg64_limbs(c8_, cl_);                                                              \
        for (k_ = 0; k_ < 4; k_++) fc_pcg64_limbs(sk_[k_], sl_[k_]);                           \
        for (j_ = 0; j_ < 4; j_++) {                                                           \
            A_[j_] = _mm256_set1_epi64x((long long)al_[j_]);                                   \
            C_[j_] = _mm256_set1_epi64x((long long)cl_[j_]);                                   \
            v_.limb[j_] = _mm256_setr_epi64x((long long)sl_[0][j_], (long long)sl_[1][j_],     \
                                             (long long)sl_[2][j_], (long long)sl_[3][j_]);    \
        }                                                                                      \
        fc_u128 s4_ = sk_[4], s5_ = sk_[5], s6_ = sk_[6], s7_ = sk_[7], last_ = (g)->state;    \
        for (; i_ + 8 <= (n); i_ += 8) {                                                       \
            STEP4(i_, fc_pcg64_v4_double(&v_));                                                \
            fc_pcg64_v4_step(&v_, A_, C_);                                                     \
            STEP(i_ + 4, fc_pcg64_to_double(fc_pcg64_output(s4_)));                            \
            STEP(i_ + 5, fc_pcg64_to_double(fc_pcg64_output(s5_)));                            \
            STEP(i_ + 6, fc_pcg64_to_double(fc_pcg64_output(s6_)));                            \
            STEP(i_ + 7, fc_pcg64_to_double(fc_pcg64_output(s7_)));                            \
            last_ = s7_;                                                                       \
            s4_ = a8_ * s4_ + c8_;                                                             \
            s5_ = a8_ * s5_ + c8_;                                                             \
            s6_ = a8_ * s6_ + c8_;                                                             \
            s7_ = a8_ * s7_ + c8_;                                                             \
        }                                                                                      \
        (g)->state = last_;   /* the state of the last draw made */                            \
        for (; i_ < (n); i_++)                                                                 \
            STEP(i_, fc_pcg64_to_double(fc_pcg64_next64(g)));                                  \
    } while (0)

static __attribute__((target("avx2"), unused)) void fc_pcg64_fill_double_avx2(fc_pcg64_t* g,
                                                                               double* out,
                                                                               ptrdiff_t n) {
#define FC_STORE4(i, u4) _mm256_storeu_pd(out + (i), u4)
#define FC_STORE(i, u) out[i] = (u)
    FC_PCG64_EACH_DOUBLE_AVX2(g, n, FC_STORE4, FC_STORE);
#undef FC_STORE
#undef FC_STORE4
}

static __attribute__((target("avx2"), unused)) void fc_pcg64_add_affine_avx2(
        fc_pcg64_t* g, const double* x, double* z, ptrdiff_t n, double m, double a, double b) {
    const __m256d m4 = _mm256_set1_pd(m), a4 = _mm256_set1_pd(a), b4 = _mm256_set1_pd(b);
#define FC_ADD4(i, u4)                                                                         \
    _mm256_storeu_pd(z + (i), _mm256_add_pd(_mm256_loadu_pd(x + (i)),                          \
                                            _mm256_mul_pd(m4, _mm256_add_pd(a4,                \
                                                          _mm256_mul_pd(b4, u4)))))
#define FC_ADD(i, u) z[i] = x[i] + m * (a + b * (u))
    FC_PCG64_EACH_DOUBLE_AVX2(g, n, FC_ADD4, FC_ADD);
#undef FC_ADD
#undef FC_ADD4
}

/* ---- AVX-512: two sets of eight vector lanes ----------------------------------------------------
 * As the AVX2 variant, with 512-bit vectors: blocks of 16 + FC_PCG64_AVX512_SCALAR draws, the
 * first sixteen from two sets of eight lanes (32-bit limbs, vpmuludq; two independent chains of
 * state updates), the others from scalar states, all stepping by a^(block) per block.
 * AVX-512F's variable rotate (vprorvq) does the output's rotation and AVX-512DQ's exact
 * conversion of 64-bit integers below 2^53 (vcvtuqq2pd) the double: integer arithmetic and exact
 * conversions, the same doubles as numpy's, bit for bit. */
#define FC_PCG64_AVX512_TARGET "avx512f,avx512dq,avx512vl,avx512bw,avx2"
#define FC_PCG64_V8INLINE \
    static inline __attribute__((always_inline, target(FC_PCG64_AVX512_TARGET)))
#define FC_PCG64_AVX512_SCALAR 4

typedef struct {
    __m512i limb[4];    /* limb j (bits 32j .. 32j + 31) of eight states, one per 64-bit lane */
} fc_pcg64_v8;

/* s <- a s + c (mod 2^128) in every lane: fc_pcg64_v4_step on eight lanes */
FC_PCG64_V8INLINE void fc_pcg64_v8_step(fc_pcg64_v8* s, const __m512i a[4], const __m512i c[4]) {
    const __m512i lo32 = _mm512_set1_epi64(0xffffffffLL);
    const __m512i s0 = s->limb[0], s1 = s->limb[1], s2 = s->limb[2], s3 = s->limb[3];
#define FC_LO(x) _mm512_and_si512(x, lo32)
#define FC_HI(x) _mm512_srli_epi64(x, 32)
#define FC_ADD2(x, y) _mm512_add_epi64(x, y)
    __m512i p00 = _mm512_mul_epu32(a[0], s0);
    __m512i x0 = FC_ADD2(p00, c[0]);                               /* < 2^64 */
    __m512i p01 = _mm512_mul_epu32(a[0], s1), p10 = _mm512_mul_epu32(a[1], s0);
    __m512i x1 = FC_ADD2(FC_ADD2(FC_LO(p01), FC_LO(p10)), FC_ADD2(c[1], FC_HI(x0)));
    __m512i k1 = FC_ADD2(FC_HI(x1), FC_ADD2(FC_HI(p01), FC_HI(p10)));
    __m512i p02 = _mm512_mul_epu32(a[0], s2), p11 = _mm512_mul_epu32(a[1], s1);
    __m512i p20 = _mm512_mul_epu32(a[2], s0);
    __m512i x2 = FC_ADD2(FC_ADD2(FC_LO(p02), FC_LO(p11)), FC_ADD2(FC_LO(p20), FC_ADD2(c[2], k1)));
    __m512i k2 = FC_ADD2(FC_ADD2(FC_HI(x2), FC_HI(p02)), FC_ADD2(FC_HI(p11), FC_HI(p20)));
    /* the top limb needs only the low 32 bits of its terms */
    __m512i x3 = FC_ADD2(FC_ADD2(_mm512_mul_epu32(a[0], s3), _mm512_mul_epu32(a[1], s2)),
                         FC_ADD2(FC_ADD2(_mm512_mul_epu32(a[2], s1), _mm512_mul_epu32(a[3], s0)),
                                 FC_ADD2(c[3], k2)));
    s->limb[0] = FC_LO(x0);
    s->limb[1] = FC_LO(x1);
    s->limb[2] = FC_LO(x2);
    s->limb[3] = FC_LO(x3);
#undef FC_LO
#undef FC_HI
#undef FC_ADD2
}

/* fc_pcg64_to_double(fc_pcg64_output(state)) of every lane */
FC_PCG64_V8INLINE __m512d fc_pcg64_v8_double(const fc_pcg64_v8* s) {
    __m512i hi = _mm512_or_si512(_mm512_slli_epi64(s->limb[3], 32), s->limb[2]);
    __m512i lo = _mm512_or_si512(_mm512_slli_epi64(s->limb[1], 32), s->limb[0]);
    __m512i rot = _mm512_srli_epi64(s->limb[3], 26);                  /* state >> 122 */
    __m512i x = _mm512_rorv_epi64(_mm512_xor_si512(hi, lo), rot);
    /* (x >> 11) < 2^53 converts exactly; times 2^-53 exactly */
    return _mm512_mul_pd(_mm512_cvtepu64_pd(_mm512_srli_epi64(x, 11)), _mm512_set1_pd(0x1p-53));
}

#define fc_pcg64_v8_limbs fc_pcg64_limbs

/* ---- AVX-512 IFMA: the lanes' states in 52-bit limbs ---------------------------------------------
 * Where the CPU has AVX-512 IFMA (vpmadd52luq/vpmadd52huq: the low or high 52 bits of a 52 x 52
 * bit product, added to a 64-bit lane), a lane's state is three limbs of 52, 52 and 24 bits, and
 * a step takes nine multiply-adds instead of fc_pcg64_v8_step's ten vpmuludq and some thirty
 * additions, masks and shifts. The same states, so the same doubles (fc_pcg64_select picks it). */
#define FC_PCG64_IFMA_TARGET FC_PCG64_AVX512_TARGET ",avx512ifma"
#define FC_PCG64_V8I_INLINE \
    static inline __attribute__((always_inline, target(FC_PCG64_IFMA_TARGET)))
#define FC_PCG64_M52 0xfffffffffffffULL

static inline void fc_pcg64_v8i_limbs(fc_u128 v, uint64_t out[4]) {
    out[0] = (uint64_t)v & FC_PCG64_M52;
    out[1] = (uint64_t)(v >> 52) & FC_PCG64_M52;
    out[2] = (uint64_t)(v >> 104);
    out[3] = 0;
}

/* s <- a s + c (mod 2^128) in every lane, limbs of 52 bits: the products a_i s_j at 2^(52(i+j))
 * with i + j <= 2 (the others are multiples of 2^128), each as its low and high 52 bits; the
 * sums stay below 2^55, their carries passed up. Each sum takes the newest limb last. */
FC_PCG64_V8I_INLINE void fc_pcg64_v8i_step(fc_pcg64_v8* s, const __m512i a[4],
                                           const __m512i c[4]) {
    const __m512i m52 = _mm512_set1_epi64((long long)FC_PCG64_M52);
    const __m512i m24 = _mm512_set1_epi64(0xffffffLL), zero = _mm512_setzero_si512();
    const __m512i s0 = s->limb[0], s1 = s->limb[1], s2 = s->limb[2];
    __m512i x0 = _mm512_madd52lo_epu64(c[0], a[0], s0);
    __m512i x1 = _mm512_madd52lo_epu64(_mm512_madd52hi_epu64(c[1], a[0], s0), a[1], s0);
    __m512i y1 = _mm512_madd52lo_epu64(_mm512_srli_epi64(x0, 52), a[0], s1);
    __m512i x2 = _mm512_madd52hi_epu64(_mm512_madd52hi_epu64(c[2], a[1], s0), a[0], s1);
    __m512i y2 = _mm512_madd52lo_epu64(_mm512_madd52lo_epu64(
        _mm512_madd52lo_epu64(zero, a[2], s0), a[1], s1), a[0], s2);
    x1 = _mm512_add_epi64(x1, y1);
    x2 = _mm512_add_epi64(_mm512_add_epi64(x2, y2), _mm512_srli_epi64(x1, 52));
    s->limb[0] = _mm512_and_si512(x0, m52);
    s->limb[1] = _mm512_and_si512(x1, m52);
    s->limb[2] = _mm512_and_si512(x2, m24);
}

/* fc_pcg64_v8_double from 52-bit limbs */
FC_PCG64_V8I_INLINE __m512d fc_pcg64_v8i_double(const fc_pcg64_v8* s) {
    __m512i hi = _mm512_or_si512(_mm512_srli_epi64(s->limb[1], 12),
                                 _mm512_slli_epi64(s->limb[2], 40));
    __m512i lo = _mm512_or_si512(_mm512_slli_epi64(s->limb[1], 52), s->limb[0]);
    __m512i rot = _mm512_srli_epi64(s->limb[2], 18);                  /* state >> 122 */
    __m512i x = _mm512_rorv_epi64(_mm512_xor_si512(hi, lo), rot);
    return _mm512_mul_pd(_mm512_cvtepu64_pd(_mm512_srli_epi64(x, 11)), _mm512_set1_pd(0x1p-53));
}

/* FC_PCG64_EACH_DOUBLE with vector lanes of the kit KIT (fc_pcg64_v8 or fc_pcg64_v8i: its
 * _limbs, _step and _double): STEP8(i, u8) for draws i..i+7 and i+8..i+15 (u8 a __m512d),
 * STEP(i, u) for each scalar draw, in blocks of 16 + FC_PCG64_AVX512_SCALAR, then the last draws
 * one by one. Measured on 20000 draws added (ns/draw, Zen 5 class): 8 lanes + 2, 4, 8 scalar
 * states 0.683, 0.676, 0.758; 16 lanes + 4 (this) 0.643; AVX2 1.04. On 2000 draws added, Zen 4
 * (family 25): 32-bit limbs 0.97, IFMA 0.56 (16 lanes + 2, 4, 6, 8 scalar states: 0.58, 0.57,
 * 0.84, 0.72). */
#define FC_PCG64_EACH_DOUBLE_V8(KIT, g, n, STEP8, STEP)                                        \
    do {                                                                                       \
        enum { S_ = FC_PCG64_AVX512_SCALAR, B_ = 16 + FC_PCG64_AVX512_SCALAR };                \
        const fc_u128 a1_ = FC_PCG64_MULT, c1_ = (g)->inc;                                     \
        fc_u128 ab_ = 1, cb_ = 0, s_ = (g)->state, sk_[B_], ss_[S_], last_ = (g)->state;       \
        uint64_t al_[4], cl_[4], sl_[16][4];                                                   \
        __m512i A_[4], C_[4];                                                                  \
        fc_pcg64_v8 v_, w_;                                                                    \
        ptrdiff_t i_ = 0;                                                                      \
        int k_, j_;                                                                            \
        for (k_ = 0; k_ < B_; k_++) {                                                          \
            s_ = a1_ * s_ + c1_;   /* the block's states */                                    \
            sk_[k_] = s_;                                                                      \
            cb_ = a1_ * cb_ + c1_;                                                             \
            ab_ = a1_ * ab_;                                                                   \
        }                                                                                      \
        KIT##_limbs(ab_, al_);                                                                 \
        KIT##_limbs(cb_, cl_);                                                                 \
        for (k_ = 0; k_ < 16; k_++) KIT##_limbs(sk_[k_], sl_[k_]);                             \
        for (k_ = 0; k_ < S_; k_++) ss_[k_] = sk_[16 + k_];                                    \
        for (j_ = 0; j_ < 4; j_++) {                                                           \
            A_[j_] = _mm512_set1_epi64((long long)al_[j_]);                                    \
            C_[j_] = _mm512_set1_epi64((long long)cl_[j_]);                                    \
            v_.limb[j_] = _mm512_setr_epi64(                                                   \
                (long long)sl_[0][j_], (long long)sl_[1][j_], (long long)sl_[2][j_],           \
                (long long)sl_[3][j_], (long long)sl_[4][j_], (long long)sl_[5][j_],           \
                (long long)sl_[6][j_], (long long)sl_[7][j_]);                                 \
            w_.limb[j_] = _mm512_setr_epi64(                                                   \
                (long long)sl_[8][j_], (long long)sl_[9][j_], (long long)sl_[10][j_],          \
                (long long)sl_[11][j_], (long long)sl_[12][j_], (long long)sl_[13][j_],        \
                (long long)sl_[14][j_], (long long)sl_[15][j_]);                               \
        }                                                                                      \
        for (; i_ + B_ <= (n); i_ += B_) {                                                     \
            STEP8(i_, KIT##_double(&v_));                                                      \
            STEP8(i_ + 8, KIT##_double(&w_));                                                  \
            KIT##_step(&v_, A_, C_);                                                           \
            KIT##_step(&w_, A_, C_);                                                           \
            for (k_ = 0; k_ < S_; k_++)                                                        \
                STEP(i_ + 16 + k_, fc_pcg64_to_double(fc_pcg64_output(ss_[k_])));              \
            last_ = ss_[S_ - 1];                                                               \
            for (k_ = 0; k_ < S_; k_++) ss_[k_] = ab_ * ss_[k_] + cb_;                         \
        }                                                                                      \
        (g)->state = last_;   /* the state of the last draw made */                            \
        for (; i_ < (n); i_++)                                                                 \
            STEP(i_, fc_pcg64_to_double(fc_pcg64_next64(g)));                                  \
    } while (0)

/* fc_pcg64_fill_double and fc_pcg64_add_affine on eight-lane states of the kit KIT
 * (fc_pcg64_v8: 32-bit limbs; fc_pcg64_v8i: 52-bit limbs, IFMA), as fc_pcg64_fill_double_NAME
 * and fc_pcg64_add_affine_NAME compiled for TARGET */
#define FC_PCG64_STORE8(i, u8) _mm512_storeu_pd(out + (i), u8)
#define FC_PCG64_STORE(i, u) out[i] = (u)
/* x + m (a + b u): separate multiplies and adds, numpy's roundings */
#define FC_PCG64_ADD8(i, u8)                                                                   \
    _mm512_storeu_pd(z + (i), _mm512_add_pd(_mm512_loadu_pd(x + (i)),                          \
                                            _mm512_mul_pd(m8, _mm512_add_pd(a8,                \
                                                          _mm512_mul_pd(b8, u8)))))
#define FC_PCG64_ADD(i, u) z[i] = x[i] + m * (a + b * (u))
#define FC_PCG64_V8_FUNCTIONS(NAME, TARGET, KIT)                                               \
    static __attribute__((target(TARGET), unused)) void fc_pcg64_fill_double_##NAME(           \
            fc_pcg64_t* g, double* out, ptrdiff_t n) {                                         \
        FC_PCG64_EACH_DOUBLE_V8(KIT, g, n, FC_PCG64_STORE8, FC_PCG64_STORE);                   \
    }                                                                                          \
    static __attribute__((target(TARGET), unused)) void fc_pcg64_add_affine_##NAME(            \
            fc_pcg64_t* g, const double* x, double* z, ptrdiff_t n, double m, double a,        \
            double b) {                                                                        \
        const __m512d m8 = _mm512_set1_pd(m), a8 = _mm512_set1_pd(a), b8 = _mm512_set1_pd(b);  \
        FC_PCG64_EACH_DOUBLE_V8(KIT, g, n, FC_PCG64_ADD8, FC_PCG64_ADD);                       \
    }

FC_PCG64_V8_FUNCTIONS(avx512, FC_PCG64_AVX512_TARGET, fc_pcg64_v8)
FC_PCG64_V8_FUNCTIONS(ifma, FC_PCG64_IFMA_TARGET, fc_pcg64_v8i)
#undef FC_PCG64_V8_FUNCTIONS
#undef FC_PCG64_ADD
#undef FC_PCG64_ADD8
#undef FC_PCG64_STORE
#undef FC_PCG64_STORE8
#endif  /* FC_PCG64_AVX2 */

/* A vector variant is used from this many draws on (its set-up costs about 40 128-bit
 * multiplies) when fc_pcg64_select allowed it. */
#define FC_PCG64_VECTOR_MIN 128
/* the vector variant in use: 0 none, 2 AVX2, 3 AVX-512; fc_pcg64_ifma: its IFMA kit is in use
 * (fc_pcg64_ifma_allowed: fc_pcg64_select may choose it, where the CPU has it; for tests) */
static int fc_pcg64_vector __attribute__((unused)) = 0;
static int fc_pcg64_ifma __attribute__((unused)) = 0;
static int fc_pcg64_ifma_allowed __attribute__((unused)) = 1;

/* Allow the AVX-512 variant (level_cap >= 3) or the AVX2 one (level_cap >= 2) when the CPU has
 * it; returns the level in use (3, 2, or 1 for the scalar blocks). */
static inline int fc_pcg64_select(int level_cap) {
#if FC_PCG64_AVX2
    __builtin_cpu_init();
    fc_pcg64_vector = 0;
    if (level_cap >= 2 && __builtin_cpu_supports("avx2"))
        fc_pcg64_vector = 2;
    if (level_cap >= 3 && fc_pcg64_vector == 2 && __builtin_cpu_supports("avx512f") &&
            __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
            __builtin_cpu_supports("avx512bw"))
        fc_pcg64_vector = 3;
    fc_pcg64_ifma = fc_pcg64_vector == 3 && fc_pcg64_ifma_allowed &&
        __builtin_cpu_supports("avx512ifma");
#else
    (void)level_cap;
#endif
    return fc_pcg64_vector ? fc_pcg64_vector : 1;
}

/* out[0..n) = n standard uniforms in [0, 1), the stream's next n doubles */
static inline void fc_pcg64_fill_double(fc_pcg64_t* g, double* out, ptrdiff_t n) {
#if FC_PCG64_AVX2
    if (fc_pcg64_vector && n >= FC_PCG64_VECTOR_MIN) {
        if (fc_pcg64_ifma)
            fc_pcg64_fill_double_ifma(g, out, n);
        else if (fc_pcg64_vector == 3)
            fc_pcg64_fill_double_avx512(g, out, n);
        else
            fc_pcg64_fill_double_avx2(g, out, n);
        return;
    }
#endif
#define FC_STORE(i, u) out[i] = (u)
    FC_PCG64_EACH_DOUBLE(g, n, FC_STORE);
#undef FC_STORE
}

/* z[i] = x[i] + m * (a + b u_i) for the stream's next n uniforms u_i (fc_pcg64_fill_double's
 * draws, in the same order), in one pass: the expression and roundings of adding m (a + b u)
 * after a fill, without the round trip through memory. x may be z (in place). */
static inline void fc_pcg64_add_affine(fc_pcg64_t* g, const double* x, double* z, ptrdiff_t n,
                                       double m, double a, double b) {
#if FC_PCG64_AVX2
    if (fc_pcg64_vector && n >= FC_PCG64_VECTOR_MIN) {
        if (fc_pcg64_ifma)
            fc_pcg64_add_affine_ifma(g, x, z, n, m, a, b);
        else if (fc_pcg64_vector == 3)
            fc_pcg64_add_affine_avx512(g, x, z, n, m, a, b);
        else
            fc_pcg64_add_affine_avx2(g, x, z, n, m, a, b);
        return;
    }
#endif
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
