/* Vectorised elementary functions for the operator kernels (declared in _fastmath.pxd).
 *
 * Why: the kernels spend most of their time in libm's scalar exp/log1p (Softplus, Sigmoid,
 * LogisticLoss) and in sequential reductions (dot products, norms) that the compiler may not
 * vectorise without -ffast-math. -ffast-math is not an option: it lets the compiler assume that
 * no value is NaN or Inf, which breaks the engine's divergence checks. So the vector code is
 * written out explicitly, with GCC/Clang vector extensions (4 doubles per vector), and keeps
 * IEEE semantics:
 *
 *  - exp:    Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, Taylor polynomial of degree 13
 *            (truncation 4e-18 relative), scaling by 2^n through the exponent bits.
 *  - log1p:  u = 1 + x with its rounding error recovered exactly (TwoSum), then fdlibm's log
 *            kernel (u = 2^k m, sqrt(2)/2 <= m < sqrt(2), s = (m-1)/(m+1), minimax polynomial in
 *            s^2) plus the correction err/u, as fdlibm's log1p does.
 *  - Both are within about 1 ulp of libm (tests/test_speed_paths.py measures it over the whole
 *    range). Lanes outside the vector path's domain (|x| > 708 for exp, NaN, +-Inf, x <= -1 for
 *    log1p) are recomputed with libm, so overflow, underflow to subnormals, NaN and Inf come out
 *    exactly as libm gives them, and a NaN anywhere still propagates to the engine's checks.
 *  - The result for an element depends only on its value, never on its position in the array
 *    (the tail of an array is padded into a full vector rather than sent to libm).
 *
 * Dispatch: every array function is compiled three times, for the x86-64 baseline (SSE2, what a
 * portable build may assume), with __attribute__((target("avx2,fma"))) and with AVX-512
 * (F, DQ, VL, BW; the elementwise kernels on 8 lanes, _fastmath_elem.h, the reductions in the
 * AVX2 variant's 4-lane order, _fastmath_impl.h); fc_fastmath_init() picks the best variant the
 * running CPU has (like NumPy's own dispatch), so the portable build is fast on modern CPUs and
 * still runs everywhere. The AVX2 and AVX-512 variants give the same bits. FMA contraction
 * changes the last bit of some results between them and the baseline variant; within one
 * machine everything is deterministic. FASTCASCADE_SIMD=baseline (or avx2+fma) in the
 * environment caps the variant chosen.
 * Compilers without GCC vector extensions (MSVC) get plain scalar loops over libm.
 */
#ifndef FASTCASCADE_FASTMATH_H
#define FASTCASCADE_FASTMATH_H

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <stddef.h>

#if defined(__GNUC__) && !defined(FC_FASTMATH_SCALAR)
#define FC_HAVE_VECTOR 1
#else
#define FC_HAVE_VECTOR 0
#endif

#if FC_HAVE_VECTOR && (defined(__x86_64__) || defined(__i386__))
#define FC_HAVE_DISPATCH 1
#else
#define FC_HAVE_DISPATCH 0
#endif

/* ---- scalar references (libm): the fallback lanes, and the no-vector build ------------------ */

static inline double fc_softplus1(double z) {
    /* ln(1 + e^z) = max(z, 0) + ln(1 + e^-|z|) */
    return (z > 0.0 ? z : 0.0) + log1p(exp(-fabs(z)));
}

static inline double fc_sigmoid1(double z) {
    double e = exp(-fabs(z));
    return z >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

/* ---- the vector kernels, instantiated once per target --------------------------------------- */

#if FC_HAVE_VECTOR
typedef double fc_v4d __attribute__((vector_size(32)));
typedef long long fc_v4i __attribute__((vector_size(32)));
typedef unsigned long long fc_v4u __attribute__((vector_size(32)));

/* Register blocking of the matrix-vector kernels: rows of W per sweep over z (fc_matvec, 2 vector
 * accumulators per row) and vector accumulators per column block (fc_matvec_t); the baseline
 * variant has 16 SSE registers of 2 doubles, the AVX2 one 16 of 4. */
#define FC_TARGET_ATTR
#define FC_NAME(name) name##_base
#define FC_MATVEC_ROWS 2
#define FC_MATVEC_T_VECS 4
#define FC_W 4
#define FC_VD fc_v4d
#define FC_VI fc_v4i
#define FC_VU fc_v4u
#include "_fastmath_elem.h"
#include "_fastmath_impl.h"
#undef FC_MATVEC_ROWS
#undef FC_MATVEC_T_VECS
#undef FC_TARGET_ATTR
#undef FC_NAME
#undef FC_W
#undef FC_VD
#undef FC_VI
#undef FC_VU

#if FC_HAVE_DISPATCH
#include <immintrin.h>
typedef double fc_v8d __attribute__((vector_size(64)));
typedef long long fc_v8i __attribute__((vector_size(64)));
typedef unsigned long long fc_v8u __attribute__((vector_size(64)));

#define FC_TARGET_ATTR __attribute__((target("avx2,fma")))
#define FC_W 4
#define FC_VD fc_v4d
#define FC_VI fc_v4i
#define FC_VU fc_v4u
#define FC_NAME(name) name##_avx2
#define FC_ANY_MOVMSK 1
#define FC_FMA 1
#define FC_MATVEC_ROWS 4
#define FC_MATVEC_T_VECS 8
#include "_fastmath_elem.h"
#include "_fastmath_impl.h"
#undef FC_MATVEC_ROWS
#undef FC_MATVEC_T_VECS
#undef FC_FMA
#undef FC_ANY_MOVMSK
#undef FC_TARGET_ATTR
#undef FC_NAME
#undef FC_W
#undef FC_VD
#undef FC_VI
#undef FC_VU

/* AVX-512 (F, DQ, VL, BW): the elementwise kernels on 8 lanes (the same operations per lane as
 * the AVX2 variant, so the same bits), the reductions and products in the AVX2 variant's 4-lane
 * order (EVEX encodings, 32 vector registers); FMA contraction as in the AVX2 variant. */
#define FC_TARGET_ATTR __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")))
#define FC_NAME(name) name##_avx512
#define FC_ANY_MOVMSK 1
#define FC_FMA 1
#define FC_MATVEC_ROWS 4
#define FC_MATVEC_T_VECS 8
#define FC_W 8
#define FC_VD fc_v8d
#define FC_VI fc_v8i
#define FC_VU fc_v8u
#include "_fastmath_elem.h"
#include "_fastmath_impl.h"
#include "_fastmath_avx512.h"   /* 8-lane per-sample Linear and Margin kernels, the same bits */
#undef FC_MATVEC_ROWS
#undef FC_MATVEC_T_VECS
#undef FC_FMA
#undef FC_ANY_MOVMSK
#undef FC_TARGET_ATTR
#undef FC_NAME
#undef FC_W
#undef FC_VD
#undef FC_VI
#undef FC_VU
#endif
#endif  /* FC_HAVE_VECTOR */

/* ---- dispatch -------------------------------------------------------------------------------- */

typedef void (*fc_unary_fn)(const double*, double*, ptrdiff_t);
typedef void (*fc_binary_fn)(const double*, const double*, double*, ptrdiff_t);
typedef double (*fc_reduce1_fn)(const double*, ptrdiff_t);
typedef double (*fc_reduce2_fn)(const double*, const double*, ptrdiff_t);

typedef struct {
    fc_unary_fn exp_, log1p_, softplus, sigmoid, tanh_;
    fc_binary_fn sigmoid_mul;
    void (*softplus_sigmoid)(const double*, double*, double*, ptrdiff_t);
    fc_reduce1_fn sum, sumsq;
    fc_reduce2_fn dot;
    void (*axpy)(double, const double*, double*, ptrdiff_t);
    void (*axpy_exact)(double, const double*, double*, ptrdiff_t);
    double (*axpy_exact_sumsq)(double, const double*, double*, ptrdiff_t);
    void (*margin_forward)(const double*, ptrdiff_t, ptrdiff_t, const double*, const double*,
                           ptrdiff_t, double*);
    void (*margin_wgrad)(const double*, ptrdiff_t, ptrdiff_t, const double*, ptrdiff_t,
                         const double*, double*);
    void (*margin_wgrad2)(const double*, ptrdiff_t, ptrdiff_t, const double*, ptrdiff_t,
                          const double*, double*, const double*, double*);
    void (*matvec)(const double*, ptrdiff_t, ptrdiff_t, const double*, double*);
    void (*matvec_t)(const double*, ptrdiff_t, ptrdiff_t, const double*, double*);
    void (*outer)(const double*, ptrdiff_t, const double*, ptrdiff_t, double*, int);
    double (*outer_axpy_sumsq)(double, const double*, ptrdiff_t, const double*, ptrdiff_t,
                               double*);
    double (*outer_axpy_matvec_sumsq)(double, const double*, ptrdiff_t, const double*,
                                      ptrdiff_t, double*, const double*, double*);
    int level;  /* 0: scalar libm loops, 1: baseline vectors (SSE2), 2: AVX2 + FMA, 3: AVX-512 */
} fc_fastmath_table;

#if !FC_HAVE_VECTOR
static void fc_exp_scalar(const double* x, double* o, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) o[i] = exp(x[i]);
}
static void fc_log1p_scalar(const double* x, double* o, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) o[i] = log1p(x[i]);
}
static void fc_softplus_scalar(const double* x, double* o, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) o[i] = fc_softplus1(x[i]);
}
static void fc_sigmoid_scalar(const double* x, double* o, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) o[i] = fc_sigmoid1(x[i]);
}
static void fc_tanh_scalar(const double* x, double* o, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) o[i] = tanh(x[i]);
}
static void fc_sigmoid_mul_scalar(const double* x, const double* g, double* o, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) o[i] = g[i] * fc_sigmoid1(x[i]);
}
static void fc_softplus_sigmoid_scalar(const double* x, double* o, double* sg, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) {
        double z = x[i];   /* o may alias x */
        o[i] = fc_softplus1(z);
        sg[i] = fc_sigmoid1(z);
    }
}
static double fc_sum_scalar(const double* x, ptrdiff_t n) {
    double acc = 0.0;
    for (ptrdiff_t i = 0; i < n; i++) acc += x[i];
    return acc;
}
static double fc_sumsq_scalar(const double* x, ptrdiff_t n) {
    double acc = 0.0;
    for (ptrdiff_t i = 0; i < n; i++) acc += x[i] * x[i];
    return acc;
}
static double fc_dot_scalar(const double* x, const double* y, ptrdiff_t n) {
    double acc = 0.0;
    for (ptrdiff_t i = 0; i < n; i++) acc += x[i] * y[i];
    return acc;
}
static void fc_axpy_scalar(double a, const double* x, double* y, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) y[i] = y[i] + a * x[i];
}
static void fc_margin_forward_scalar(const double* z, ptrdiff_t B, ptrdiff_t d, const double* w,
                                     const double* lab, ptrdiff_t ldl, double* out) {
    for (ptrdiff_t s = 0; s < B; s++) out[s] = -lab[s * ldl] * fc_dot_scalar(z + s * d, w, d);
}
static void fc_margin_wgrad_scalar(const double* z, ptrdiff_t B, ptrdiff_t d, const double* lab,
                                   ptrdiff_t ldl, const double* g, double* y) {
    for (ptrdiff_t s = 0; s < B; s++) fc_axpy_scalar(-lab[s * ldl] * g[s], z + s * d, y, d);
}
static void fc_margin_wgrad2_scalar(const double* z, ptrdiff_t B, ptrdiff_t d, const double* lab,
                                    ptrdiff_t ldl, const double* g, double* y, const double* h,
                                    double* y2) {
    fc_margin_wgrad_scalar(z, B, d, lab, ldl, g, y);
    fc_margin_wgrad_scalar(z, B, d, lab, ldl, h, y2);
}
static double fc_axpy_sumsq_scalar(double a, const double* x, double* y, ptrdiff_t n) {
    fc_axpy_scalar(a, x, y, n);
    return fc_sumsq_scalar(y, n);
}
static void fc_matvec_scalar(const double* W, ptrdiff_t m, ptrdiff_t d, const double* z,
                             double* out) {
    for (ptrdiff_t o = 0; o < m; o++) out[o] = fc_dot_scalar(W + o * d, z, d);
}
static void fc_matvec_t_scalar(const double* W, ptrdiff_t m, ptrdiff_t d, const double* g,
                               double* out) {
    for (ptrdiff_t j = 0; j < d; j++) out[j] = 0.0;
    for (ptrdiff_t o = 0; o < m; o++) fc_axpy_scalar(g[o], W + o * d, out, d);
}
static void fc_outer_scalar(const double* g, ptrdiff_t m, const double* z, ptrdiff_t d,
                            double* y, int accumulate) {
    for (ptrdiff_t o = 0; o < m; o++)
        for (ptrdiff_t j = 0; j < d; j++)
            y[o * d + j] = accumulate ? y[o * d + j] + g[o] * z[j] : g[o] * z[j];
}
static double fc_outer_axpy_sumsq_scalar(double a, const double* g, ptrdiff_t m, const double* z,
                                         ptrdiff_t d, double* y) {
    double acc = 0.0;
    for (ptrdiff_t o = 0; o < m; o++)
        for (ptrdiff_t j = 0; j < d; j++) {
            double p = g[o] * z[j];
            double t = a * p;
            y[o * d + j] = y[o * d + j] + t;
            acc += y[o * d + j] * y[o * d + j];
        }
    return acc;
}
#endif

static fc_fastmath_table fc_fm;

/* outer_axpy_sumsq, then matvec of the new y (the levels with no one-pass kernel) */
static double fc_outer_axpy_matvec_sumsq_split(double a, const double* g, ptrdiff_t m,
                                               const double* z, ptrdiff_t d, double* y,
                                               const double* x, double* out) {
    double sq = fc_fm.outer_axpy_sumsq(a, g, m, z, d, y);
    fc_fm.matvec(y, m, d, x, out);
    return sq;
}

#if FC_HAVE_DISPATCH
/* the AVX-512 subsets the avx512 variant is compiled for (and the OS saving zmm state, which
 * __builtin_cpu_supports checks through XGETBV) */
static inline int fc_cpu_has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

/* Choose the variant for this CPU; call once, with the GIL, at module import. Returns the
 * level chosen. level_cap: 3 = best available, 2 = AVX2 + FMA at most, 1 = baseline vectors. */
#if FC_HAVE_VECTOR
/* the table for one vector variant (V: avx512, avx2 or base, the suffix _fastmath_elem.h and
 * _fastmath_impl.h gave it) */
#define FC_FILL_TABLE(V)                                                                       \
    do {                                                                                     \
        fc_fm.exp_ = fc_exp_array_##V;                                                       \
        fc_fm.log1p_ = fc_log1p_array_##V;                                                   \
        fc_fm.softplus = fc_softplus_array_##V;                                              \
        fc_fm.sigmoid = fc_sigmoid_array_##V;                                                \
        fc_fm.tanh_ = fc_tanh_array_##V;                                                     \
        fc_fm.sigmoid_mul = fc_sigmoid_mul_array_##V;                                        \
        fc_fm.softplus_sigmoid = fc_softplus_sigmoid_array_##V;                              \
        fc_fm.sum = fc_sum_##V;                                                              \
        fc_fm.sumsq = fc_sumsq_##V;                                                          \
        fc_fm.dot = fc_dot_##V;                                                              \
        fc_fm.axpy = fc_axpy_##V;                                                            \
        fc_fm.axpy_exact = fc_axpy_exact_##V;                                                \
        fc_fm.axpy_exact_sumsq = fc_axpy_exact_sumsq_##V;                                    \
        fc_fm.margin_forward = fc_margin_forward_##V;                                        \
        fc_fm.margin_wgrad = fc_margin_wgrad_##V;                                            \
        fc_fm.margin_wgrad2 = fc_margin_wgrad2_##V;                                          \
        fc_fm.matvec = fc_matvec_##V;                                                        \
        fc_fm.matvec_t = fc_matvec_t_##V;                                                    \
        fc_fm.outer = fc_outer_##V;                                                          \
        fc_fm.outer_axpy_sumsq = fc_outer_axpy_sumsq_##V;                                    \
        fc_fm.outer_axpy_matvec_sumsq = fc_outer_axpy_matvec_sumsq_split;                    \
    } while (0)
#endif

static int fc_fastmath_select(int level_cap) {
#if FC_HAVE_VECTOR
    int level = 1;
#if FC_HAVE_DISPATCH
    __builtin_cpu_init();
    if (level_cap >= 2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        level = 2;
    if (level == 2 && level_cap >= 3 && fc_cpu_has_avx512())
        level = 3;
    if (level == 3) {
        FC_FILL_TABLE(avx512);
        fc_fm.matvec = fc_matvec_w8;
        fc_fm.matvec_t = fc_matvec_t_w8;
        fc_fm.outer_axpy_sumsq = fc_outer_axpy_sumsq_w8;
        fc_fm.outer_axpy_matvec_sumsq = fc_outer_axpy_matvec_sumsq_w8;
        fc_fm.margin_wgrad = fc_margin_wgrad_w8;
        fc_fm.margin_wgrad2 = fc_margin_wgrad2_w8;
        fc_fm.level = 3;
        return 3;
    }
    if (level == 2) {
        FC_FILL_TABLE(avx2);
        fc_fm.level = 2;
        return 2;
    }
#endif
    (void)level;
    FC_FILL_TABLE(base);
    fc_fm.level = 1;
    return 1;
#else
    (void)level_cap;
    fc_fm.exp_ = fc_exp_scalar;
    fc_fm.log1p_ = fc_log1p_scalar;
    fc_fm.softplus = fc_softplus_scalar;
    fc_fm.sigmoid = fc_sigmoid_scalar;
    fc_fm.tanh_ = fc_tanh_scalar;
    fc_fm.sigmoid_mul = fc_sigmoid_mul_scalar;
    fc_fm.softplus_sigmoid = fc_softplus_sigmoid_scalar;
    fc_fm.sum = fc_sum_scalar;
    fc_fm.sumsq = fc_sumsq_scalar;
    fc_fm.dot = fc_dot_scalar;
    fc_fm.axpy = fc_axpy_scalar;
    fc_fm.axpy_exact = fc_axpy_scalar;
    fc_fm.axpy_exact_sumsq = fc_axpy_sumsq_scalar;
    fc_fm.margin_forward = fc_margin_forward_scalar;
    fc_fm.margin_wgrad = fc_margin_wgrad_scalar;
    fc_fm.margin_wgrad2 = fc_margin_wgrad2_scalar;
    fc_fm.matvec = fc_matvec_scalar;
    fc_fm.matvec_t = fc_matvec_t_scalar;
    fc_fm.outer = fc_outer_scalar;
    fc_fm.outer_axpy_sumsq = fc_outer_axpy_sumsq_scalar;
    fc_fm.outer_axpy_matvec_sumsq = fc_outer_axpy_matvec_sumsq_split;
    fc_fm.level = 0;
    return 0;
#endif
}

/* the level cap FASTCASCADE_SIMD asks for: "baseline" 1, "avx2+fma" (or "avx2") 2, anything
 * else (unset, "avx512") the best available */
static inline int fc_simd_env_cap(void) {
    const char* env = getenv("FASTCASCADE_SIMD");
    if (env == NULL) return 3;
    if (strcmp(env, "baseline") == 0) return 1;
    if (strcmp(env, "avx2+fma") == 0 || strcmp(env, "avx2") == 0) return 2;
    return 3;
}

static int fc_fastmath_init(void) { return fc_fastmath_select(fc_simd_env_cap()); }

/* The entry points the kernels call (n elements; out may alias x). */
static inline void fc_exp(const double* x, double* out, ptrdiff_t n) { fc_fm.exp_(x, out, n); }
static inline void fc_log1p(const double* x, double* out, ptrdiff_t n) { fc_fm.log1p_(x, out, n); }
static inline void fc_softplus(const double* x, double* out, ptrdiff_t n) { fc_fm.softplus(x, out, n); }
static inline void fc_sigmoid(const double* x, double* out, ptrdiff_t n) { fc_fm.sigmoid(x, out, n); }
static inline void fc_tanh(const double* x, double* out, ptrdiff_t n) { fc_fm.tanh_(x, out, n); }
/* out = g * sigmoid(x) */
static inline void fc_sigmoid_mul(const double* x, const double* g, double* out, ptrdiff_t n) {
    fc_fm.sigmoid_mul(x, g, out, n);
}
/* o = softplus(x) and sg = sigmoid(x), bit-identical to fc_softplus and fc_sigmoid (o may alias x,
 * sg may not) */
static inline void fc_softplus_sigmoid(const double* x, double* o, double* sg, ptrdiff_t n) {
    fc_fm.softplus_sigmoid(x, o, sg, n);
}
/* sum x_i, in a fixed order (8 partial sums, then a fixed tree): the same input always gives
 * the same bits on a given machine. */
static inline double fc_sum(const double* x, ptrdiff_t n) { return fc_fm.sum(x, n); }
/* sum x_i^2 and sum x_i y_i, in a fixed order (16 and 8 partial sums, then a fixed tree; see
 * _fastmath_impl.h): the same input always gives the same bits on a given machine. */
static inline double fc_sumsq(const double* x, ptrdiff_t n) { return fc_fm.sumsq(x, n); }
static inline double fc_dot(const double* x, const double* y, ptrdiff_t n) { return fc_fm.dot(x, y, n); }
/* y += a x */
static inline void fc_axpy(double a, const double* x, double* y, ptrdiff_t n) { fc_fm.axpy(a, x, y, n); }
/* out[s] = <z_s, w> over the rows of the row-major B x d matrix z */
static inline void fc_margin_forward(const double* z, ptrdiff_t B, ptrdiff_t d, const double* w,
                                     const double* lab, ptrdiff_t ldl, double* out) {
    fc_fm.margin_forward(z, B, d, w, lab, ldl, out);
}
/* y += sum_s (-lab[s ldl] g[s]) z_s */
static inline void fc_margin_wgrad(const double* z, ptrdiff_t B, ptrdiff_t d, const double* lab,
                                   ptrdiff_t ldl, const double* g, double* y) {
    fc_fm.margin_wgrad(z, B, d, lab, ldl, g, y);
}
/* fc_margin_wgrad(z, B, d, lab, ldl, g, y) and (..., h, y2) in one pass over z, the same bits */
static inline void fc_margin_wgrad2(const double* z, ptrdiff_t B, ptrdiff_t d, const double* lab,
                                    ptrdiff_t ldl, const double* g, double* y, const double* h,
                                    double* y2) {
    fc_fm.margin_wgrad2(z, B, d, lab, ldl, g, y, h, y2);
}
/* Linear's products, W row-major m x d: out = W z (m entries, each in fc_dot's order),
 * out = W^T g (d entries, each summed over o in order), y = g z^T (m x d; y += g z^T when
 * accumulate) */
static inline void fc_matvec(const double* W, ptrdiff_t m, ptrdiff_t d, const double* z,
                             double* out) { fc_fm.matvec(W, m, d, z, out); }
static inline void fc_matvec_t(const double* W, ptrdiff_t m, ptrdiff_t d, const double* g,
                               double* out) { fc_fm.matvec_t(W, m, d, g, out); }
static inline void fc_outer(const double* g, ptrdiff_t m, const double* z, ptrdiff_t d, double* y,
                            int accumulate) { fc_fm.outer(g, m, z, d, y, accumulate); }
/* y += a (g z^T), rounded as fc_outer into a matrix u then fc_axpy_exact(a, u, y) would, without
 * u; returns the sum of squares of the new y (in a fixed order) */
static inline double fc_outer_axpy_sumsq(double a, const double* g, ptrdiff_t m, const double* z,
                                         ptrdiff_t d, double* y) {
    return fc_fm.outer_axpy_sumsq(a, g, m, z, d, y);
}
/* fc_outer_axpy_sumsq(a, g, m, z, d, y), then fc_matvec(y, m, d, x, out) of the new y: the same
 * bits (in one pass over y where the level has the kernel) */
static inline double fc_outer_axpy_matvec_sumsq(double a, const double* g, ptrdiff_t m,
                                                const double* z, ptrdiff_t d, double* y,
                                                const double* x, double* out) {
    return fc_fm.outer_axpy_matvec_sumsq(a, g, m, z, d, y, x, out);
}
/* y += a x, each term rounded twice as in the plain C loop (no FMA): bit-identical to it */
static inline void fc_axpy_exact(double a, const double* x, double* y, ptrdiff_t n) {
    fc_fm.axpy_exact(a, x, y, n);
}
/* fc_axpy_exact(a, x, y, n), then returns fc_sumsq(y, n) (bit-identical), in one pass */
static inline double fc_axpy_exact_sumsq(double a, const double* x, double* y, ptrdiff_t n) {
    return fc_fm.axpy_exact_sumsq(a, x, y, n);
}
static inline int fc_fastmath_level(void) { return fc_fm.level; }

#endif  /* FASTCASCADE_FASTMATH_H */
