/* One instantiation of the vector kernels: included by _fastmath.h once per target, with
 * FC_NAME(name) giving the variant's names and FC_TARGET_ATTR its target attribute.
 * Not a standalone header. See _fastmath.h for the algorithms and their accuracy. */

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

#define FC_INLINE static inline __attribute__((always_inline)) FC_TARGET_ATTR

FC_INLINE fc_v4d FC_NAME(splat)(double a) { fc_v4d v = {a, a, a, a}; return v; }

FC_INLINE fc_v4d FC_NAME(load4)(const double* p) { fc_v4d v; memcpy(&v, p, sizeof v); return v; }

FC_INLINE void FC_NAME(store4)(double* p, fc_v4d v) { memcpy(p, &v, sizeof v); }

/* c + a b with the rounding(s) of the variant's contracted `c + a * b`: one (FMA) in the AVX2
 * variant, two in the baseline one; for code compiled with fp-contract=off that must still round
 * like the variant's contracted code elsewhere */
#ifdef FC_FMA
FC_INLINE fc_v4d FC_NAME(muladd4)(fc_v4d a, fc_v4d b, fc_v4d c) {
    return __builtin_ia32_vfmaddpd256(a, b, c);
}
FC_INLINE double FC_NAME(muladd1)(double a, double b, double c) { return __builtin_fma(a, b, c); }
#else
FC_INLINE fc_v4d FC_NAME(muladd4)(fc_v4d a, fc_v4d b, fc_v4d c) { return c + a * b; }
FC_INLINE double FC_NAME(muladd1)(double a, double b, double c) { return c + a * b; }
#endif

/* the first n (< 4) elements of p, padded with 0.0 */
FC_INLINE fc_v4d FC_NAME(load_part)(const double* p, ptrdiff_t n) {
    double buf[4] = {0.0, 0.0, 0.0, 0.0};
    memcpy(buf, p, (size_t)n * sizeof(double));
    return FC_NAME(load4)(buf);
}

FC_INLINE void FC_NAME(store_part)(double* p, fc_v4d v, ptrdiff_t n) {
    double buf[4];
    FC_NAME(store4)(buf, v);
    memcpy(p, buf, (size_t)n * sizeof(double));
}

FC_INLINE fc_v4d FC_NAME(fabs4)(fc_v4d x) {
    return (fc_v4d)((fc_v4u)x & (fc_v4u){0x7fffffffffffffffULL, 0x7fffffffffffffffULL,
                                         0x7fffffffffffffffULL, 0x7fffffffffffffffULL});
}

/* mask ? a : b, mask lanes all-ones or all-zeros */
FC_INLINE fc_v4d FC_NAME(select4)(fc_v4i mask, fc_v4d a, fc_v4d b) {
    return (fc_v4d)(((fc_v4i)a & mask) | ((fc_v4i)b & ~mask));
}

FC_INLINE int FC_NAME(any4)(fc_v4i mask) {
#ifdef FC_ANY4_MOVMSK
    return __builtin_ia32_movmskpd256((fc_v4d)mask) != 0;   /* AVX: one vmovmskpd */
#else
    return (mask[0] | mask[1] | mask[2] | mask[3]) != 0;
#endif
}

/* The elementwise functions below are written for U vectors at a time (U <= FC_MAX_U, a
 * constant where they are inlined), each statement applied to all U before the next: the U
 * dependency chains then sit side by side in the instruction stream, which a long chain needs
 * to keep the vector units busy (fc_softplus_sigmoid_array runs U = 4). U = 1 gives the
 * one-vector functions (exp4, logk4, ...). Every lane gets the same operations whatever U. */
#define FC_MAX_U 4
#define FC_EACH(k) for (int k = 0; k < U; k++)

/* x[k] = e^x[k] for |x| <= 708 (no special values): x = n ln2 + r, e^x = 2^n e^r */
FC_INLINE void FC_NAME(expN)(fc_v4d* x, const int U) {
    const fc_v4d shift = FC_NAME(splat)(0x1.8p52);
    fc_v4d t[FC_MAX_U], n[FC_MAX_U], r[FC_MAX_U], p[FC_MAX_U];
    /* t = round(x / ln2) + shift */
    FC_EACH(k) t[k] = x[k] * FC_NAME(splat)(1.4426950408889634074) + shift;
    FC_EACH(k) n[k] = t[k] - shift;
    /* ln2 = LN2HI + LN2LO, LN2HI with 21 trailing zero bits: n * LN2HI is exact */
    FC_EACH(k) r[k] = x[k] - n[k] * FC_NAME(splat)(6.93147180369123816490e-01);
    FC_EACH(k) r[k] = r[k] - n[k] * FC_NAME(splat)(1.90821492927058770002e-10);
    /* e^r = sum_k r^k / k!, k <= 13 (|r| <= 0.3466: truncation < 4.2e-18 relative), Horner */
    FC_EACH(k) p[k] = FC_NAME(splat)(1.0 / 6227020800.0);
#define FC_HORNER(c) FC_EACH(k) p[k] = p[k] * r[k] + FC_NAME(splat)(c);
    FC_HORNER(1.0 / 479001600.0) FC_HORNER(1.0 / 39916800.0) FC_HORNER(1.0 / 3628800.0)
    FC_HORNER(1.0 / 362880.0) FC_HORNER(1.0 / 40320.0) FC_HORNER(1.0 / 5040.0)
    FC_HORNER(1.0 / 720.0) FC_HORNER(1.0 / 120.0) FC_HORNER(1.0 / 24.0) FC_HORNER(1.0 / 6.0)
    FC_HORNER(0.5) FC_HORNER(1.0) FC_HORNER(1.0)
#undef FC_HORNER
    /* 2^n from the exponent bits: t's low bits hold n (|n| <= 1022: a normal number) */
    FC_EACH(k) x[k] = p[k] * (fc_v4d)((((fc_v4i)t[k] - (fc_v4i)shift) + 1023) << 52);
}

FC_INLINE fc_v4d FC_NAME(exp4)(fc_v4d x) {
    FC_NAME(expN)(&x, 1);
    return x;
}

/* fdlibm's log kernel: log(1 + f) for 1 + f = m in [sqrt(2)/2, sqrt(2)), written as
 * f - hfsq + s (hfsq + R); returns the pieces so that callers can add k ln2 and corrections */
FC_INLINE void FC_NAME(logkN)(const fc_v4d* f, const fc_v4d* kd, const fc_v4d* c, fc_v4d* out,
                              const int U) {
    /* log1p = k ln2_hi - ((hfsq - (s (hfsq + R) + (k ln2_lo + c))) - f) */
    const fc_v4d Lg1 = FC_NAME(splat)(6.666666666666735130e-01);
    const fc_v4d Lg2 = FC_NAME(splat)(3.999999999940941908e-01);
    const fc_v4d Lg3 = FC_NAME(splat)(2.857142874366239149e-01);
    const fc_v4d Lg4 = FC_NAME(splat)(2.222219843214978396e-01);
    const fc_v4d Lg5 = FC_NAME(splat)(1.818357216161805012e-01);
    const fc_v4d Lg6 = FC_NAME(splat)(1.531383769920937332e-01);
    const fc_v4d Lg7 = FC_NAME(splat)(1.479819860511658591e-01);
    /* (the statements in fdlibm's order: the compiler's FMA contraction follows it) */
    fc_v4d hfsq[FC_MAX_U], s[FC_MAX_U], z[FC_MAX_U], w[FC_MAX_U], t1[FC_MAX_U], t2[FC_MAX_U];
    fc_v4d R[FC_MAX_U], lo[FC_MAX_U];
    FC_EACH(k) hfsq[k] = FC_NAME(splat)(0.5) * f[k] * f[k];
    FC_EACH(k) s[k] = f[k] / (FC_NAME(splat)(2.0) + f[k]);
    FC_EACH(k) z[k] = s[k] * s[k];
    FC_EACH(k) w[k] = z[k] * z[k];
    FC_EACH(k) t1[k] = w[k] * (Lg2 + w[k] * (Lg4 + w[k] * Lg6));
    FC_EACH(k) t2[k] = z[k] * (Lg1 + w[k] * (Lg3 + w[k] * (Lg5 + w[k] * Lg7)));
    FC_EACH(k) R[k] = t2[k] + t1[k];
    FC_EACH(k) lo[k] = kd[k] * FC_NAME(splat)(1.90821492927058770002e-10) + c[k];
    FC_EACH(k) out[k] = kd[k] * FC_NAME(splat)(6.93147180369123816490e-01)
                        - ((hfsq[k] - (s[k] * (hfsq[k] + R[k]) + lo[k])) - f[k]);
}

FC_INLINE fc_v4d FC_NAME(logk4)(fc_v4d f, fc_v4d kd, fc_v4d c) {
    fc_v4d out;
    FC_NAME(logkN)(&f, &kd, &c, &out, 1);
    return out;
}

/* log1p(x) for x in [0, 1] (what softplus needs: x = e^-|z|) */
FC_INLINE void FC_NAME(log1p01N)(const fc_v4d* x, fc_v4d* out, const int U) {
    const fc_v4d one = FC_NAME(splat)(1.0);
    fc_v4d u[FC_MAX_U], c[FC_MAX_U], m[FC_MAX_U], kd[FC_MAX_U];
    FC_EACH(k) u[k] = one + x[k];                          /* in [1, 2] */
    /* (1 + x) - u = x - (u - 1), exact (Fast2Sum, 1 >= x); log(1 + x) = log(u) + log1p(err/u) */
    FC_EACH(k) c[k] = (x[k] - (u[k] - one)) / u[k];
    FC_EACH(k) {
        fc_v4i big = (fc_v4i)(u[k] >= FC_NAME(splat)(1.4142135623730951));
        m[k] = FC_NAME(select4)(big, u[k] * FC_NAME(splat)(0.5), u[k]) - one;   /* exact */
        kd[k] = FC_NAME(select4)(big, one, FC_NAME(splat)(0.0));
    }
    FC_NAME(logkN)(m, kd, c, out, U);
}

FC_INLINE fc_v4d FC_NAME(log1p01)(fc_v4d x) {
    fc_v4d out;
    FC_NAME(log1p01N)(&x, &out, 1);
    return out;
}

/* log1p(x) for -1 < x < +Inf */
FC_INLINE fc_v4d FC_NAME(log1p4)(fc_v4d x) {
    const fc_v4d one = FC_NAME(splat)(1.0);
    fc_v4d u = one + x;
    /* TwoSum: err = (1 + x) - u exactly, whatever the magnitudes */
    fc_v4d bb = u - one;
    fc_v4d err = (one - (u - bb)) + (x - bb);
    fc_v4d c = err / u;
    /* u = 2^k m with m in [sqrt(2)/2, sqrt(2)) (fdlibm's bit trick on the exponent) */
    /* 0x3ff00000 - 0x3fe6a09e = 0x95f62 added to the high word */
    fc_v4u ix = (fc_v4u)u + (fc_v4u){0x00095f6200000000ULL, 0x00095f6200000000ULL,
                              0x00095f6200000000ULL, 0x00095f6200000000ULL};
    fc_v4u eb = ix >> 52;                                        /* k + 1023, in 0 .. 2047 */
    const fc_v4u magic = {0x4330000000000000ULL, 0x4330000000000000ULL,
                          0x4330000000000000ULL, 0x4330000000000000ULL};
    fc_v4d kd = (fc_v4d)(eb | magic) - FC_NAME(splat)(0x1p52 + 1023.0);
    fc_v4u mb = (ix & (fc_v4u){0x000fffffffffffffULL, 0x000fffffffffffffULL,
                               0x000fffffffffffffULL, 0x000fffffffffffffULL})
                + (fc_v4u){0x3fe6a09e00000000ULL, 0x3fe6a09e00000000ULL,
                           0x3fe6a09e00000000ULL, 0x3fe6a09e00000000ULL};
    fc_v4d m = (fc_v4d)mb;
    return FC_NAME(logk4)(m - one, kd, c);
}

/* expm1(a) for |a| <= 0.3466 (ln2 / 2): Taylor, degree 13 (truncation < 2e-17 relative) */
FC_INLINE fc_v4d FC_NAME(expm1_small4)(fc_v4d a) {
    fc_v4d p = FC_NAME(splat)(1.0 / 6227020800.0);
    p = p * a + FC_NAME(splat)(1.0 / 479001600.0);
    p = p * a + FC_NAME(splat)(1.0 / 39916800.0);
    p = p * a + FC_NAME(splat)(1.0 / 3628800.0);
    p = p * a + FC_NAME(splat)(1.0 / 362880.0);
    p = p * a + FC_NAME(splat)(1.0 / 40320.0);
    p = p * a + FC_NAME(splat)(1.0 / 5040.0);
    p = p * a + FC_NAME(splat)(1.0 / 720.0);
    p = p * a + FC_NAME(splat)(1.0 / 120.0);
    p = p * a + FC_NAME(splat)(1.0 / 24.0);
    p = p * a + FC_NAME(splat)(1.0 / 6.0);
    p = p * a + FC_NAME(splat)(0.5);
    return (p * a) * a + a;
}

/* ---- softplus, sigmoid and tanh on 4 lanes; bad = lanes to redo with libm ------------------ */

/* e[k] = e^-|z[k]| (|z| > 708, Inf and NaN lanes: bad, computed as e^0 here) */
FC_INLINE void FC_NAME(exp_neg_absN)(const fc_v4d* z, fc_v4d* e, fc_v4i* bad, const int U) {
    FC_EACH(k) {
        fc_v4d a = FC_NAME(fabs4)(z[k]);
        bad[k] = ~(fc_v4i)(a <= FC_NAME(splat)(708.0));
        e[k] = -FC_NAME(select4)(bad[k], FC_NAME(splat)(0.0), a);
    }
    FC_NAME(expN)(e, U);
}

FC_INLINE fc_v4d FC_NAME(softplus4)(fc_v4d z, fc_v4i* bad) {
    fc_v4d e;
    FC_NAME(exp_neg_absN)(&z, &e, bad, 1);
    fc_v4d zp = FC_NAME(select4)((fc_v4i)(z > FC_NAME(splat)(0.0)), z, FC_NAME(splat)(0.0));
    return zp + FC_NAME(log1p01)(e);
}

/* sigmoid(z) from e = e^-|z|: 1 / (1 + e) for z >= 0, e / (1 + e) below */
FC_INLINE void FC_NAME(sigmoid_of_expN)(const fc_v4d* z, const fc_v4d* e, fc_v4d* out,
                                        const int U) {
    FC_EACH(k) out[k] = FC_NAME(select4)((fc_v4i)(z[k] >= FC_NAME(splat)(0.0)),
                                          FC_NAME(splat)(1.0), e[k])
                        / (FC_NAME(splat)(1.0) + e[k]);
}

FC_INLINE void FC_NAME(sigmoidN)(const fc_v4d* z, fc_v4d* out, fc_v4i* bad, const int U) {
    fc_v4d e[FC_MAX_U];
    FC_NAME(exp_neg_absN)(z, e, bad, U);
    FC_NAME(sigmoid_of_expN)(z, e, out, U);
}

FC_INLINE fc_v4d FC_NAME(sigmoid4)(fc_v4d z, fc_v4i* bad) {
    fc_v4d out;
    FC_NAME(sigmoidN)(&z, &out, bad, 1);
    return out;
}

/* softplus and sigmoid of the same z, sharing e^-|z|: the same operations as softplus4 and
 * sigmoid4, so the same bits */
FC_INLINE void FC_NAME(softplus_sigmoidN)(const fc_v4d* z, fc_v4d* out, fc_v4d* sig, fc_v4i* bad,
                                          const int U) {
    fc_v4d e[FC_MAX_U], lg[FC_MAX_U];
    FC_NAME(exp_neg_absN)(z, e, bad, U);
    FC_NAME(sigmoid_of_expN)(z, e, sig, U);
    FC_NAME(log1p01N)(e, lg, U);
    FC_EACH(k) out[k] = FC_NAME(select4)((fc_v4i)(z[k] > FC_NAME(splat)(0.0)), z[k],
                                          FC_NAME(splat)(0.0)) + lg[k];
}

FC_INLINE fc_v4d FC_NAME(softplus_sigmoid4)(fc_v4d z, fc_v4i* bad, fc_v4d* sig) {
    fc_v4d out;
    FC_NAME(softplus_sigmoidN)(&z, &out, sig, bad, 1);
    return out;
}

/* expm1(y) for -708 <= y <= 0: y = n ln2 + r, |r| <= ln2/2, expm1(y) = 2^n expm1(r) + (2^n - 1)
 * (2^n expm1(r) is an exact scaling and 2^n - 1 is exact for n >= -53, so the one rounding of the
 * sum keeps the accuracy of expm1(r) for every n: no cancellation near y = 0) */
FC_INLINE fc_v4d FC_NAME(expm1_neg4)(fc_v4d y) {
    const fc_v4d shift = FC_NAME(splat)(0x1.8p52);
    fc_v4d t = y * FC_NAME(splat)(1.4426950408889634074) + shift;   /* round(y / ln2) + shift */
    fc_v4d n = t - shift;
    fc_v4d r = y - n * FC_NAME(splat)(6.93147180369123816490e-01);   /* exact, as in exp4 */
    r = r - n * FC_NAME(splat)(1.90821492927058770002e-10);
    /* expm1(r), |r| <= 0.3466: the Taylor polynomial of expm1_small4 (truncation < 2e-17) */
    fc_v4d em = FC_NAME(expm1_small4)(r);
    fc_v4i ni = (fc_v4i)t - (fc_v4i)shift;                            /* n >= -1022 */
    fc_v4d scale = (fc_v4d)((ni + 1023) << 52);
    return scale * em + (scale - FC_NAME(splat)(1.0));
}

/* tanh(x) = -m / (2 + m) for m = expm1(-2|x|) (in [-1, 0]: the denominator is in [1, 2], no
 * cancellation), the sign restored from x; |x| > 354 is clamped (m = -1 there, tanh = +-1).
 * NaN lanes: bad. */
FC_INLINE fc_v4d FC_NAME(tanh4)(fc_v4d x, fc_v4i* bad) {
    fc_v4d a = FC_NAME(fabs4)(x);
    *bad = (fc_v4i)(x != x);
    fc_v4d y = FC_NAME(splat)(-2.0) * a;
    y = FC_NAME(select4)((fc_v4i)(y >= FC_NAME(splat)(-708.0)), y, FC_NAME(splat)(-708.0));
    fc_v4d m = FC_NAME(expm1_neg4)(y);
    /* |m| rather than -m: +0 for x = +-0, whose sign comes from x below */
    fc_v4d t = FC_NAME(fabs4)(m) / (FC_NAME(splat)(2.0) + m);
    const fc_v4u sign = {0x8000000000000000ULL, 0x8000000000000000ULL,
                         0x8000000000000000ULL, 0x8000000000000000ULL};
    return (fc_v4d)((fc_v4u)t | ((fc_v4u)x & sign));
}

/* ---- array functions ------------------------------------------------------------------------- */

/* exp and log1p with the lanes outside their vector path flagged (as softplus4 and friends do) */
FC_INLINE fc_v4d FC_NAME(exp4_checked)(fc_v4d v, fc_v4i* bad) {
    *bad = ~(fc_v4i)(FC_NAME(fabs4)(v) <= FC_NAME(splat)(708.0));
    return FC_NAME(exp4)(FC_NAME(select4)(*bad, FC_NAME(splat)(0.0), v));
}

FC_INLINE fc_v4d FC_NAME(log1p4_checked)(fc_v4d v, fc_v4i* bad) {
    /* domain: -1 < x < Inf (NaN fails both) */
    *bad = ~((fc_v4i)(v > FC_NAME(splat)(-1.0)) &
             (fc_v4i)(v < FC_NAME(splat)(__builtin_inf())));
    return FC_NAME(log1p4)(FC_NAME(select4)(*bad, FC_NAME(splat)(0.0), v));
}

/* the body of an array function o[i] = f(x[i]): vectors of 4 (the last n % 4 elements padded),
 * F4(v, &bad) giving f on a vector and the lanes to redo with the scalar LIBM */
#define FC_MAP_ARRAY(F4, LIBM)                                                                 \
    ptrdiff_t i = 0, k;                                                                        \
    fc_v4i bad;                                                                                \
    for (; i < n; i += 4) {                                                                    \
        ptrdiff_t len = n - i < 4 ? n - i : 4;                                                 \
        fc_v4d v = len == 4 ? FC_NAME(load4)(x + i) : FC_NAME(load_part)(x + i, len);          \
        fc_v4d r = FC_NAME(F4)(v, &bad);                                                       \
        if (FC_NAME(any4)(bad))                                                                \
            for (k = 0; k < 4; k++) if (bad[k]) r[k] = LIBM(v[k]);                             \
        if (len == 4) FC_NAME(store4)(o + i, r); else FC_NAME(store_part)(o + i, r, len);      \
    }

static FC_TARGET_ATTR void FC_NAME(fc_exp_array)(const double* x, double* o, ptrdiff_t n) {
    FC_MAP_ARRAY(exp4_checked, exp)
}

static FC_TARGET_ATTR void FC_NAME(fc_log1p_array)(const double* x, double* o, ptrdiff_t n) {
    FC_MAP_ARRAY(log1p4_checked, log1p)
}

static FC_TARGET_ATTR void FC_NAME(fc_softplus_array)(const double* x, double* o, ptrdiff_t n) {
    FC_MAP_ARRAY(softplus4, fc_softplus1)
}

static FC_TARGET_ATTR void FC_NAME(fc_sigmoid_array)(const double* x, double* o, ptrdiff_t n) {
    FC_MAP_ARRAY(sigmoid4, fc_sigmoid1)
}

/* o = softplus(x), sg = sigmoid(x) (Softplus's value and derivative in one pass) */
/* the first 16 m elements of fc_softplus_sigmoid_array: blocks of four vectors (exp, then
 * log1p's divisions: a long chain, four side by side) */
static FC_TARGET_ATTR __attribute__((noinline)) void FC_NAME(softplus_sigmoid_blocks)(
        const double* x, double* o, double* sg, ptrdiff_t m) {
    ptrdiff_t i;
    int u, k;
    for (i = 0; i < 16 * m; i += 16) {
        fc_v4d v[4], r[4], sv[4];
        fc_v4i bv[4];
        for (u = 0; u < 4; u++) v[u] = FC_NAME(load4)(x + i + 4 * u);
        FC_NAME(softplus_sigmoidN)(v, r, sv, bv, 4);
        for (u = 0; u < 4; u++) {
            if (FC_NAME(any4)(bv[u]))
                for (k = 0; k < 4; k++)
                    if (bv[u][k]) {
                        r[u][k] = fc_softplus1(v[u][k]);
                        sv[u][k] = fc_sigmoid1(v[u][k]);
                    }
            FC_NAME(store4)(o + i + 4 * u, r[u]);
            FC_NAME(store4)(sg + i + 4 * u, sv[u]);
        }
    }
}

static FC_TARGET_ATTR void FC_NAME(fc_softplus_sigmoid_array)(const double* x, double* o,
                                                             double* sg, ptrdiff_t n) {
    ptrdiff_t i = 16 * (n / 16), k;
    fc_v4i bad;
    fc_v4d sig;
    if (i > 0)
        FC_NAME(softplus_sigmoid_blocks)(x, o, sg, n / 16);
    for (; i < n; i += 4) {
        ptrdiff_t len = n - i < 4 ? n - i : 4;
        fc_v4d v = len == 4 ? FC_NAME(load4)(x + i) : FC_NAME(load_part)(x + i, len);
        fc_v4d r = FC_NAME(softplus_sigmoid4)(v, &bad, &sig);
        if (FC_NAME(any4)(bad))
            for (k = 0; k < 4; k++)
                if (bad[k]) {
                    r[k] = fc_softplus1(v[k]);
                    sig[k] = fc_sigmoid1(v[k]);
                }
        if (len == 4) {
            FC_NAME(store4)(o + i, r);
            FC_NAME(store4)(sg + i, sig);
        } else {
            FC_NAME(store_part)(o + i, r, len);
            FC_NAME(store_part)(sg + i, sig, len);
        }
    }
}

/* o = g * sigmoid(x) */
/* the first 12 m elements of fc_sigmoid_mul_array: blocks of three vectors, three exp chains
 * side by side (a function of its own: the one-sample calls keep a light prologue) */
static FC_TARGET_ATTR __attribute__((noinline)) void FC_NAME(sigmoid_mul_blocks)(
        const double* x, const double* g, double* o, ptrdiff_t m) {
    ptrdiff_t i;
    int u, k;
    for (i = 0; i < 12 * m; i += 12) {
        fc_v4d v[3], r[3];
        fc_v4i bv[3];
        for (u = 0; u < 3; u++) v[u] = FC_NAME(load4)(x + i + 4 * u);
        FC_NAME(sigmoidN)(v, r, bv, 3);
        for (u = 0; u < 3; u++) {
            if (FC_NAME(any4)(bv[u]))
                for (k = 0; k < 4; k++) if (bv[u][k]) r[u][k] = fc_sigmoid1(v[u][k]);
            FC_NAME(store4)(o + i + 4 * u, FC_NAME(load4)(g + i + 4 * u) * r[u]);
        }
    }
}

static FC_TARGET_ATTR void FC_NAME(fc_sigmoid_mul_array)(const double* x, const double* g,
                                                        double* o, ptrdiff_t n) {
    ptrdiff_t i = 12 * (n / 12), k;
    fc_v4i bad;
    if (i > 0)
        FC_NAME(sigmoid_mul_blocks)(x, g, o, n / 12);
    for (; i < n; i += 4) {
        ptrdiff_t len = n - i < 4 ? n - i : 4;
        fc_v4d v = len == 4 ? FC_NAME(load4)(x + i) : FC_NAME(load_part)(x + i, len);
        fc_v4d gv = len == 4 ? FC_NAME(load4)(g + i) : FC_NAME(load_part)(g + i, len);
        fc_v4d r = FC_NAME(sigmoid4)(v, &bad);
        if (FC_NAME(any4)(bad))
            for (k = 0; k < 4; k++) if (bad[k]) r[k] = fc_sigmoid1(v[k]);
        r = gv * r;
        if (len == 4) FC_NAME(store4)(o + i, r); else FC_NAME(store_part)(o + i, r, len);
    }
}

static FC_TARGET_ATTR void FC_NAME(fc_tanh_array)(const double* x, double* o, ptrdiff_t n) {
    FC_MAP_ARRAY(tanh4, tanh)
}
#undef FC_MAP_ARRAY

/* ---- reductions in a fixed order --------------------------------------------------------------
 * fc_dot and fc_sum: two 4-lane accumulators over blocks of 8, one more block of 4 into the first,
 * the last n % 4 terms into a scalar, then ((l0 + l2) + (l1 + l3)) + scalar, l = a0 + a1
 * lane-wise.
 * fc_sumsq (and the norm fused into fc_axpy_exact_sumsq): four accumulators over blocks of 16
 * (four FMA latency chains: the long vectors of the engine's norms are not latency-bound), the
 * remaining blocks of 4 into a0, a1, a2 in turn, the last n % 4 terms into a scalar, then
 * hsum4((a0 + a1) + (a2 + a3)) + scalar. */

FC_INLINE double FC_NAME(hsum4)(fc_v4d a) { return (a[0] + a[2]) + (a[1] + a[3]); }

static FC_TARGET_ATTR double FC_NAME(fc_sum)(const double* x, ptrdiff_t n) {
    fc_v4d a0 = FC_NAME(splat)(0.0), a1 = FC_NAME(splat)(0.0);
    double tail = 0.0;
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 = a0 + FC_NAME(load4)(x + i);
        a1 = a1 + FC_NAME(load4)(x + i + 4);
    }
    if (i + 4 <= n) {
        a0 = a0 + FC_NAME(load4)(x + i);
        i += 4;
    }
    for (; i < n; i++)
        tail = tail + x[i];
    return FC_NAME(hsum4)(a0 + a1) + tail;
}

/* the accumulators of a 4-chain sum of squares, in the order described above */
typedef struct { fc_v4d a[4]; double tail; } FC_NAME(sumsq_acc);

FC_INLINE void FC_NAME(sumsq_acc_zero)(FC_NAME(sumsq_acc)* s) {
    for (int k = 0; k < 4; k++)
        s->a[k] = FC_NAME(splat)(0.0);
    s->tail = 0.0;
}

FC_INLINE double FC_NAME(sumsq_acc_total)(const FC_NAME(sumsq_acc)* s) {
    return FC_NAME(hsum4)((s->a[0] + s->a[1]) + (s->a[2] + s->a[3])) + s->tail;
}

static FC_TARGET_ATTR double FC_NAME(fc_sumsq)(const double* x, ptrdiff_t n) {
    FC_NAME(sumsq_acc) s;
    ptrdiff_t i = 0;
    int k;
    FC_NAME(sumsq_acc_zero)(&s);
    for (; i + 16 <= n; i += 16)
        for (k = 0; k < 4; k++) {
            fc_v4d v = FC_NAME(load4)(x + i + 4 * k);
            s.a[k] = FC_NAME(muladd4)(v, v, s.a[k]);
        }
    /* (muladd: the fused norms round the same way at every optimisation level) */
    for (k = 0; k < 3 && i + 4 <= n; k++, i += 4) {   /* unrolled: constant k */
        fc_v4d v = FC_NAME(load4)(x + i);
        s.a[k] = FC_NAME(muladd4)(v, v, s.a[k]);
    }
    for (; i < n; i++)
        s.tail = FC_NAME(muladd1)(x[i], x[i], s.tail);
    return FC_NAME(sumsq_acc_total)(&s);
}

static FC_TARGET_ATTR double FC_NAME(fc_dot)(const double* x, const double* y, ptrdiff_t n) {
    fc_v4d a0 = FC_NAME(splat)(0.0), a1 = FC_NAME(splat)(0.0);
    double tail = 0.0;
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 = a0 + FC_NAME(load4)(x + i) * FC_NAME(load4)(y + i);
        a1 = a1 + FC_NAME(load4)(x + i + 4) * FC_NAME(load4)(y + i + 4);
    }
    if (i + 4 <= n) {
        a0 = a0 + FC_NAME(load4)(x + i) * FC_NAME(load4)(y + i);
        i += 4;
    }
    for (; i < n; i++)
        tail = tail + x[i] * y[i];
    return FC_NAME(hsum4)(a0 + a1) + tail;
}

/* y += a x */
static FC_TARGET_ATTR void FC_NAME(fc_axpy)(double a, const double* x, double* y, ptrdiff_t n) {
    fc_v4d av = FC_NAME(splat)(a);
    ptrdiff_t i = 0;
    for (; i + 4 <= n; i += 4)
        FC_NAME(store4)(y + i, FC_NAME(load4)(y + i) + av * FC_NAME(load4)(x + i));
    for (; i < n; i++)
        y[i] = y[i] + a * x[i];
}

/* y += a x with two roundings (no FMA contraction): bit-identical to the plain C loop
 * `y[i] = y[i] + a * x[i]`, for the engine's update and regularizer loops */
static FC_TARGET_ATTR __attribute__((optimize("fp-contract=off")))
void FC_NAME(fc_axpy_exact)(double a, const double* x, double* y, ptrdiff_t n) {
    fc_v4d av = FC_NAME(splat)(a);
    ptrdiff_t i = 0;
    for (; i + 4 <= n; i += 4) {
        fc_v4d t = av * FC_NAME(load4)(x + i);
        FC_NAME(store4)(y + i, FC_NAME(load4)(y + i) + t);
    }
    for (; i < n; i++) {
        double t = a * x[i];
        y[i] = y[i] + t;
    }
}

/* y += a x as fc_axpy_exact (bit-identical), returning fc_sumsq of the new y (bit-identical too):
 * the engine's SGD update and its weight norm in one pass over the weights */
static FC_TARGET_ATTR __attribute__((optimize("fp-contract=off")))
double FC_NAME(fc_axpy_exact_sumsq)(double a, const double* x, double* y, ptrdiff_t n) {
    FC_NAME(sumsq_acc) s;
    fc_v4d av = FC_NAME(splat)(a);
    ptrdiff_t i = 0;
    int k;
    FC_NAME(sumsq_acc_zero)(&s);
    for (; i + 16 <= n; i += 16)
        for (k = 0; k < 4; k++) {
            fc_v4d t = av * FC_NAME(load4)(x + i + 4 * k);
            fc_v4d v = FC_NAME(load4)(y + i + 4 * k) + t;
            FC_NAME(store4)(y + i + 4 * k, v);
            s.a[k] = FC_NAME(muladd4)(v, v, s.a[k]);
        }
    for (k = 0; k < 3 && i + 4 <= n; k++, i += 4) {   /* unrolled: constant k */
        fc_v4d t = av * FC_NAME(load4)(x + i);
        fc_v4d v = FC_NAME(load4)(y + i) + t;
        FC_NAME(store4)(y + i, v);
        s.a[k] = FC_NAME(muladd4)(v, v, s.a[k]);
    }
    for (; i < n; i++) {
        double t = a * x[i];
        y[i] = y[i] + t;
        s.tail = FC_NAME(muladd1)(y[i], y[i], s.tail);
    }
    return FC_NAME(sumsq_acc_total)(&s);
}

/* Margin's two kernels for narrow rows (d <= 16) are instantiated for each width (the switches
 * below), so that the row loop has no inner loop: w, or the running sum, stays in registers. */

/* (hsum4(a), hsum4(b), hsum4(c), hsum4(d)): four rows' accumulators reduced at once, each in
 * hsum4's order ((l0 + l2) + (l1 + l3)) */
FC_INLINE fc_v4d FC_NAME(hsum4x4)(fc_v4d a, fc_v4d b, fc_v4d c, fc_v4d d) {
    const fc_v4i lo = {0, 1, 4, 5}, hi = {2, 3, 6, 7}, even = {0, 4, 2, 6}, odd = {1, 5, 3, 7};
    /* (a0 + a2, a1 + a3, c0 + c2, c1 + c3), and the same of b, d */
    fc_v4d ac = __builtin_shuffle(a, c, lo) + __builtin_shuffle(a, c, hi);
    fc_v4d bd = __builtin_shuffle(b, d, lo) + __builtin_shuffle(b, d, hi);
    return __builtin_shuffle(ac, bd, even) + __builtin_shuffle(ac, bd, odd);
}

/* Margin's forward, out[s] = -lab[s ldl] <z_s, w> for the B rows z_s of the row-major B x d
 * matrix z. Each dot product: the first 4 NF terms in one vector accumulator (lane k takes terms
 * k, k + 4, ...) reduced by hsum4, plus the last REM (< 4) terms summed in order; four rows at a
 * time, their four reductions done together (hsum4x4), the same operations lane by lane. */
#define FC_ROW_ACC(zs, NF)                                                                   \
    ({                                                                                       \
        fc_v4d acc_ = FC_NAME(splat)(0.0);                                                   \
        if (NF > 0) acc_ = acc_ + FC_NAME(load4)(zs) * w0;                                   \
        if (NF > 1) acc_ = acc_ + FC_NAME(load4)((zs) + 4) * w1;                             \
        if (NF > 2) acc_ = acc_ + FC_NAME(load4)((zs) + 8) * w2;                             \
        if (NF > 3) acc_ = acc_ + FC_NAME(load4)((zs) + 12) * w3;                            \
        acc_;                                                                                \
    })
#define FC_REM_TERM(K) (fc_v4d){za[K], zb[K], zc[K], zd[K]} * FC_NAME(splat)(wp[K])
#define FC_MARGIN_FORWARD_LOOP(NF, REM)                                                      \
    for (s = 0; s + 4 <= B; s += 4) {                                                       \
        const double *za = z + s * d, *zb = za + d, *zc = zb + d, *zd = zc + d;               \
        fc_v4d t = FC_NAME(splat)(0.0), l4;                                                 \
        if (REM > 0) t = t + FC_REM_TERM(4 * NF);                                            \
        if (REM > 1) t = t + FC_REM_TERM(4 * NF + 1);                                        \
        if (REM > 2) t = t + FC_REM_TERM(4 * NF + 2);                                        \
        l4 = ldl == 1 ? FC_NAME(load4)(lab + s)                                             \
                      : (fc_v4d){lab[s * ldl], lab[(s + 1) * ldl], lab[(s + 2) * ldl],        \
                                 lab[(s + 3) * ldl]};                                       \
        FC_NAME(store4)(out + s, -l4 * (FC_NAME(hsum4x4)(FC_ROW_ACC(za, NF), FC_ROW_ACC(zb, NF), \
                                                         FC_ROW_ACC(zc, NF), FC_ROW_ACC(zd, NF)) \
                                        + t));                                              \
    }                                                                                        \
    for (; s < B; s++) {                                                                    \
        const double* zs = z + s * d;                                                       \
        double t = 0.0;                                                                     \
        if (REM > 0) t = t + zs[4 * NF] * wp[4 * NF];                                        \
        if (REM > 1) t = t + zs[4 * NF + 1] * wp[4 * NF + 1];                                \
        if (REM > 2) t = t + zs[4 * NF + 2] * wp[4 * NF + 2];                                \
        out[s] = -lab[s * ldl] * (FC_NAME(hsum4)(FC_ROW_ACC(zs, NF)) + t);                  \
    }

static FC_TARGET_ATTR void FC_NAME(fc_margin_forward)(const double* z, ptrdiff_t B, ptrdiff_t d,
                                                     const double* w, const double* lab,
                                                     ptrdiff_t ldl, double* out) {
    ptrdiff_t s;
    if (d > 16 || d < 1) {
        for (s = 0; s < B; s++)
            out[s] = -lab[s * ldl] * FC_NAME(fc_dot)(z + s * d, w, d);
        return;
    }
    double wp[16] = {0.0};
    memcpy(wp, w, (size_t)d * sizeof(double));
    fc_v4d w0 = FC_NAME(load4)(wp), w1 = FC_NAME(load4)(wp + 4);
    fc_v4d w2 = FC_NAME(load4)(wp + 8), w3 = FC_NAME(load4)(wp + 12);
    switch (d) {
        case 1: FC_MARGIN_FORWARD_LOOP(0, 1) break;
        case 2: FC_MARGIN_FORWARD_LOOP(0, 2) break;
        case 3: FC_MARGIN_FORWARD_LOOP(0, 3) break;
        case 4: FC_MARGIN_FORWARD_LOOP(1, 0) break;
        case 5: FC_MARGIN_FORWARD_LOOP(1, 1) break;
        case 6: FC_MARGIN_FORWARD_LOOP(1, 2) break;
        case 7: FC_MARGIN_FORWARD_LOOP(1, 3) break;
        case 8: FC_MARGIN_FORWARD_LOOP(2, 0) break;
        case 9: FC_MARGIN_FORWARD_LOOP(2, 1) break;
        case 10: FC_MARGIN_FORWARD_LOOP(2, 2) break;
        case 11: FC_MARGIN_FORWARD_LOOP(2, 3) break;
        case 12: FC_MARGIN_FORWARD_LOOP(3, 0) break;
        case 13: FC_MARGIN_FORWARD_LOOP(3, 1) break;
        case 14: FC_MARGIN_FORWARD_LOOP(3, 2) break;
        case 15: FC_MARGIN_FORWARD_LOOP(3, 3) break;
        default: FC_MARGIN_FORWARD_LOOP(4, 0) break;
    }
}
#undef FC_MARGIN_FORWARD_LOOP
#undef FC_REM_TERM
#undef FC_ROW_ACC

/* y += sum_s c_s z_s with c_s = -lab[s ldl] g[s] (Margin's weight gradient). Even and odd rows
 * go to two sets of accumulators (a, t and b, u), added at the end: one set would chain every
 * row's multiply-add on the previous one (latency-bound, about 4 cycles a row). */
#define FC_WGRAD_ROW(A0, A1, A2, A3, T0, T1, T2, NF, REM, S)                                  \
    {                                                                                        \
        const double* zs = z + (S) * (4 * NF + REM);                                         \
        double cs = -lab[(S) * ldl] * g[S];                                                 \
        fc_v4d c = FC_NAME(splat)(cs);                                                      \
        if (NF > 0) A0 = A0 + c * FC_NAME(load4)(zs);                                        \
        if (NF > 1) A1 = A1 + c * FC_NAME(load4)(zs + 4);                                    \
        if (NF > 2) A2 = A2 + c * FC_NAME(load4)(zs + 8);                                    \
        if (NF > 3) A3 = A3 + c * FC_NAME(load4)(zs + 12);                                   \
        if (REM > 0) T0 = T0 + cs * zs[4 * NF];                                              \
        if (REM > 1) T1 = T1 + cs * zs[4 * NF + 1];                                          \
        if (REM > 2) T2 = T2 + cs * zs[4 * NF + 2];                                          \
    }
#define FC_WGRAD_LOOP(NF, REM)                                                               \
    for (s = 0; s + 2 <= B; s += 2) {                                                       \
        FC_WGRAD_ROW(a0, a1, a2, a3, t0, t1, t2, NF, REM, s)                                \
        FC_WGRAD_ROW(b0, b1, b2, b3, u0, u1, u2, NF, REM, s + 1)                            \
    }                                                                                        \
    if (s < B) FC_WGRAD_ROW(a0, a1, a2, a3, t0, t1, t2, NF, REM, s)

static FC_TARGET_ATTR void FC_NAME(fc_margin_wgrad)(const double* z, ptrdiff_t B, ptrdiff_t d,
                                                   const double* lab, ptrdiff_t ldl,
                                                   const double* g, double* y) {
    ptrdiff_t s, j, nfull = d / 4;
    if (d > 16 || d < 1) {
        for (s = 0; s < B; s++)
            FC_NAME(fc_axpy)(-lab[s * ldl] * g[s], z + s * d, y, d);
        return;
    }
    fc_v4d a0 = FC_NAME(splat)(0.0), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    double t0 = 0.0, t1 = 0.0, t2 = 0.0, u0 = 0.0, u1 = 0.0, u2 = 0.0;
    switch (d) {
        case 1: FC_WGRAD_LOOP(0, 1); break;
        case 2: FC_WGRAD_LOOP(0, 2); break;
        case 3: FC_WGRAD_LOOP(0, 3); break;
        case 4: FC_WGRAD_LOOP(1, 0); break;
        case 5: FC_WGRAD_LOOP(1, 1); break;
        case 6: FC_WGRAD_LOOP(1, 2); break;
        case 7: FC_WGRAD_LOOP(1, 3); break;
        case 8: FC_WGRAD_LOOP(2, 0); break;
        case 9: FC_WGRAD_LOOP(2, 1); break;
        case 10: FC_WGRAD_LOOP(2, 2); break;
        case 11: FC_WGRAD_LOOP(2, 3); break;
        case 12: FC_WGRAD_LOOP(3, 0); break;
        case 13: FC_WGRAD_LOOP(3, 1); break;
        case 14: FC_WGRAD_LOOP(3, 2); break;
        case 15: FC_WGRAD_LOOP(3, 3); break;
        default: FC_WGRAD_LOOP(4, 0); break;
    }
    double acc[19];
    FC_NAME(store4)(acc, a0 + b0);
    FC_NAME(store4)(acc + 4, a1 + b1);
    FC_NAME(store4)(acc + 8, a2 + b2);
    FC_NAME(store4)(acc + 12, a3 + b3);
    acc[4 * nfull] = t0 + u0;
    acc[4 * nfull + 1] = t1 + u1;
    acc[4 * nfull + 2] = t2 + u2;
    for (j = 0; j < d; j++)
        y[j] = y[j] + acc[j];
}
#undef FC_WGRAD_LOOP
#undef FC_WGRAD_ROW

/* ---- Linear at small batches (per sample): W z, W^T g and the rank-1 weight gradient g z^T --
 * W is row-major m x d (m = d_out rows of d = d_in). Every output element is summed in a fixed
 * order that does not depend on its position, so that results are the same for any m and d:
 *   fc_matvec:   out[o] = <W_o, z> in fc_dot's order (bit-identical to fc_dot per row);
 *   fc_matvec_t: out[j] = sum_o g[o] W[o][j], sequentially over o (as m axpys into zero);
 *   fc_outer:    y[o][j] = g[o] z[j]  (or y[o][j] += g[o] z[j] when accumulate). */

/* R rows of W at once against z: 2 R accumulators in flight (one FMA latency chain of fc_dot's
 * two per row would leave the FMA units idle) */
FC_INLINE void FC_NAME(matvec_rows)(const double* W, ptrdiff_t d, const double* z, double* out,
                                    const int R) {
    fc_v4d a0[4], a1[4];
    double t[4];
    ptrdiff_t i = 0;
    int k;
    for (k = 0; k < R; k++) {
        a0[k] = a1[k] = FC_NAME(splat)(0.0);
        t[k] = 0.0;
    }
    for (; i + 8 <= d; i += 8) {
        fc_v4d z0 = FC_NAME(load4)(z + i), z1 = FC_NAME(load4)(z + i + 4);
        for (k = 0; k < R; k++) {
            a0[k] = a0[k] + FC_NAME(load4)(W + k * d + i) * z0;
            a1[k] = a1[k] + FC_NAME(load4)(W + k * d + i + 4) * z1;
        }
    }
    if (i + 4 <= d) {
        fc_v4d z0 = FC_NAME(load4)(z + i);
        for (k = 0; k < R; k++)
            a0[k] = a0[k] + FC_NAME(load4)(W + k * d + i) * z0;
        i += 4;
    }
    for (; i < d; i++)
        for (k = 0; k < R; k++)
            t[k] = t[k] + W[k * d + i] * z[i];
    for (k = 0; k < R; k++)
        out[k] = FC_NAME(hsum4)(a0[k] + a1[k]) + t[k];
}

static FC_TARGET_ATTR void FC_NAME(fc_matvec)(const double* W, ptrdiff_t m, ptrdiff_t d,
                                             const double* z, double* out) {
    ptrdiff_t o = 0;
    for (; o + FC_MATVEC_ROWS <= m; o += FC_MATVEC_ROWS)
        FC_NAME(matvec_rows)(W + o * d, d, z, out + o, FC_MATVEC_ROWS);
    for (; o < m; o++)
        FC_NAME(matvec_rows)(W + o * d, d, z, out + o, 1);
}

/* columns [0, 4 V) of W^T g (W advanced to the block's first column): V accumulators */
FC_INLINE void FC_NAME(matvec_t_cols)(const double* W, ptrdiff_t m, ptrdiff_t d,
                                      const double* g, double* out, const int V) {
    fc_v4d a[8];
    ptrdiff_t o;
    int k;
    for (k = 0; k < V; k++)
        a[k] = FC_NAME(splat)(0.0);
    for (o = 0; o < m; o++) {
        fc_v4d go = FC_NAME(splat)(g[o]);
        for (k = 0; k < V; k++)
            a[k] = a[k] + go * FC_NAME(load4)(W + o * d + 4 * k);
    }
    for (k = 0; k < V; k++)
        FC_NAME(store4)(out + 4 * k, a[k]);
}

static FC_TARGET_ATTR void FC_NAME(fc_matvec_t)(const double* W, ptrdiff_t m, ptrdiff_t d,
                                               const double* g, double* out) {
    ptrdiff_t j = 0, o;
    for (; j + 4 * FC_MATVEC_T_VECS <= d; j += 4 * FC_MATVEC_T_VECS)
        FC_NAME(matvec_t_cols)(W + j, m, d, g, out + j, FC_MATVEC_T_VECS);
    if (FC_MATVEC_T_VECS > 4 && j + 16 <= d) {
        FC_NAME(matvec_t_cols)(W + j, m, d, g, out + j, 4);
        j += 16;
    }
    if (j + 8 <= d) {
        FC_NAME(matvec_t_cols)(W + j, m, d, g, out + j, 2);
        j += 8;
    }
    if (j + 4 <= d) {
        FC_NAME(matvec_t_cols)(W + j, m, d, g, out + j, 1);
        j += 4;
    }
    for (; j < d; j++) {
        double acc = 0.0;
        for (o = 0; o < m; o++)
            acc = acc + g[o] * W[o * d + j];
        out[j] = acc;
    }
}

static FC_TARGET_ATTR void FC_NAME(fc_outer)(const double* g, ptrdiff_t m, const double* z,
                                            ptrdiff_t d, double* y, int accumulate) {
    ptrdiff_t o, j;
    for (o = 0; o < m; o++) {
        double* yo = y + o * d;
        fc_v4d go = FC_NAME(splat)(g[o]);
        j = 0;
        if (accumulate) {
            for (; j + 4 <= d; j += 4)
                FC_NAME(store4)(yo + j, FC_NAME(load4)(yo + j) + go * FC_NAME(load4)(z + j));
            for (; j < d; j++)
                yo[j] = yo[j] + g[o] * z[j];
        } else {
            for (; j + 4 <= d; j += 4)
                FC_NAME(store4)(yo + j, go * FC_NAME(load4)(z + j));
            for (; j < d; j++)
                yo[j] = g[o] * z[j];
        }
    }
}

/* y += a (g z^T) with the roundings of fc_outer(g, m, z, d, u, 0) followed by
 * fc_axpy_exact(a, u, y, m d): p = g_o z_j rounded, a p rounded, added to y (no FMA), without the
 * m x d matrix u; returns the sum of squares of the new y, row by row in fc_sumsq's order (blocks
 * of 16 into a0..a3, the remaining blocks of 4 into a0, a1, a2 in turn, the last d % 4 columns
 * into a scalar; the accumulators carried from row to row). The SGD step of a rank-1 gradient. */
static FC_TARGET_ATTR __attribute__((optimize("fp-contract=off")))
double FC_NAME(fc_outer_axpy_sumsq)(double a, const double* g, ptrdiff_t m, const double* z,
                                    ptrdiff_t d, double* y) {
    FC_NAME(sumsq_acc) s;
    fc_v4d av = FC_NAME(splat)(a);
    ptrdiff_t o, j;
    int k;
    FC_NAME(sumsq_acc_zero)(&s);
    for (o = 0; o < m; o++) {
        double* yo = y + o * d;
        fc_v4d go = FC_NAME(splat)(g[o]);
#define FC_OUTER_AXPY4(J, K)                                                                 \
        {                                                                                   \
            fc_v4d t = av * (go * FC_NAME(load4)(z + (J)));                                 \
            fc_v4d v = FC_NAME(load4)(yo + (J)) + t;                                        \
            FC_NAME(store4)(yo + (J), v);                                                   \
            s.a[K] = FC_NAME(muladd4)(v, v, s.a[K]);                                        \
        }
        for (j = 0; j + 16 <= d; j += 16)
            for (k = 0; k < 4; k++)
                FC_OUTER_AXPY4(j + 4 * k, k)
        for (k = 0; k < 3 && j + 4 <= d; k++, j += 4)   /* unrolled: constant k */
            FC_OUTER_AXPY4(j, k)
#undef FC_OUTER_AXPY4
        for (; j < d; j++) {
            double t = a * (g[o] * z[j]);
            yo[j] = yo[j] + t;
            s.tail = FC_NAME(muladd1)(yo[j], yo[j], s.tail);
        }
    }
    return FC_NAME(sumsq_acc_total)(&s);
}

#undef FC_EACH
#undef FC_MAX_U
#undef FC_INLINE
#pragma GCC diagnostic pop
