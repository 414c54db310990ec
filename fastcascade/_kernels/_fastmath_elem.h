/* One instantiation of the elementwise vector kernels (exp, log1p, softplus, sigmoid, tanh and
 * the fused softplus + sigmoid and sigmoid * g): included by _fastmath.h once per target, with
 * FC_NAME(name) giving the variant's names, FC_TARGET_ATTR its target attribute, FC_W the
 * lanes per vector (4 or 8) and FC_VD, FC_VI, FC_VU the vector types of FC_W doubles, signed and
 * unsigned 64-bit integers. Not a standalone header. See _fastmath.h for the algorithms and
 * their accuracy.
 *
 * Every lane gets the same operations whatever FC_W (and whatever the number of vectors U done
 * side by side), and the result for an element depends only on its value: the 8-lane AVX-512
 * variant gives the bits of the 4-lane AVX2 one (tests/test_avx512.py checks it). */

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"

#define FC_INLINE static inline __attribute__((always_inline)) FC_TARGET_ATTR

FC_INLINE FC_VD FC_NAME(vsplat)(double a) {
    FC_VD v;
    for (int k = 0; k < FC_W; k++) v[k] = a;
    return v;
}

FC_INLINE FC_VU FC_NAME(vsplatu)(unsigned long long a) {
    FC_VU v;
    for (int k = 0; k < FC_W; k++) v[k] = a;
    return v;
}

FC_INLINE FC_VD FC_NAME(vload)(const double* p) { FC_VD v; memcpy(&v, p, sizeof v); return v; }

FC_INLINE void FC_NAME(vstore)(double* p, FC_VD v) { memcpy(p, &v, sizeof v); }

/* the first n (< FC_W) elements of p, padded with 0.0 */
FC_INLINE FC_VD FC_NAME(vload_part)(const double* p, ptrdiff_t n) {
    double buf[FC_W] = {0.0};
    memcpy(buf, p, (size_t)n * sizeof(double));
    return FC_NAME(vload)(buf);
}

FC_INLINE void FC_NAME(vstore_part)(double* p, FC_VD v, ptrdiff_t n) {
    double buf[FC_W];
    FC_NAME(vstore)(buf, v);
    memcpy(p, buf, (size_t)n * sizeof(double));
}

FC_INLINE FC_VD FC_NAME(vfabs)(FC_VD x) {
    return (FC_VD)((FC_VU)x & FC_NAME(vsplatu)(0x7fffffffffffffffULL));
}

/* mask ? a : b, mask lanes all-ones or all-zeros */
FC_INLINE FC_VD FC_NAME(vselect)(FC_VI mask, FC_VD a, FC_VD b) {
    return (FC_VD)(((FC_VI)a & mask) | ((FC_VI)b & ~mask));
}

FC_INLINE int FC_NAME(vany)(FC_VI mask) {
#if defined(FC_ANY_MOVMSK) && FC_W == 4
    return __builtin_ia32_movmskpd256((FC_VD)mask) != 0;   /* AVX: one vmovmskpd */
#elif defined(FC_ANY_MOVMSK) && FC_W == 8
    return _mm512_test_epi64_mask((__m512i)mask, (__m512i)mask) != 0;   /* one vptestmq */
#else
    long long any = 0;
    for (int k = 0; k < FC_W; k++) any |= mask[k];
    return any != 0;
#endif
}

/* The elementwise functions below are written for U vectors at a time (U <= FC_MAX_U, a
 * constant where they are inlined), each statement applied to all U before the next: the U
 * dependency chains then sit side by side in the instruction stream, which a long chain needs
 * to keep the vector units busy (fc_softplus_sigmoid_array runs U = 4). U = 1 gives the
 * one-vector functions (expv, logkv, ...). Every lane gets the same operations whatever U. */
#define FC_MAX_U 4
#define FC_EACH(k) for (int k = 0; k < U; k++)

/* x[k] = e^x[k] for |x| <= 708 (no special values): x = n ln2 + r, e^x = 2^n e^r */
FC_INLINE void FC_NAME(expN)(FC_VD* x, const int U) {
    const FC_VD shift = FC_NAME(vsplat)(0x1.8p52);
    FC_VD t[FC_MAX_U], n[FC_MAX_U], r[FC_MAX_U], p[FC_MAX_U];
    /* t = round(x / ln2) + shift */
    FC_EACH(k) t[k] = x[k] * FC_NAME(vsplat)(1.4426950408889634074) + shift;
    FC_EACH(k) n[k] = t[k] - shift;
    /* ln2 = LN2HI + LN2LO, LN2HI with 21 trailing zero bits: n * LN2HI is exact */
    FC_EACH(k) r[k] = x[k] - n[k] * FC_NAME(vsplat)(6.93147180369123816490e-01);
    FC_EACH(k) r[k] = r[k] - n[k] * FC_NAME(vsplat)(1.90821492927058770002e-10);
    /* e^r = sum_k r^k / k!, k <= 13 (|r| <= 0.3466: truncation < 4.2e-18 relative), Horner */
    FC_EACH(k) p[k] = FC_NAME(vsplat)(1.0 / 6227020800.0);
#define FC_HORNER(c) FC_EACH(k) p[k] = p[k] * r[k] + FC_NAME(vsplat)(c);
    FC_HORNER(1.0 / 479001600.0) FC_HORNER(1.0 / 39916800.0) FC_HORNER(1.0 / 3628800.0)
    FC_HORNER(1.0 / 362880.0) FC_HORNER(1.0 / 40320.0) FC_HORNER(1.0 / 5040.0)
    FC_HORNER(1.0 / 720.0) FC_HORNER(1.0 / 120.0) FC_HORNER(1.0 / 24.0) FC_HORNER(1.0 / 6.0)
    FC_HORNER(0.5) FC_HORNER(1.0) FC_HORNER(1.0)
#undef FC_HORNER
    /* 2^n from the exponent bits: t's low bits hold n (|n| <= 1022: a normal number) */
    FC_EACH(k) x[k] = p[k] * (FC_VD)((((FC_VI)t[k] - (FC_VI)shift) + 1023) << 52);
}

FC_INLINE FC_VD FC_NAME(expv)(FC_VD x) {
    FC_NAME(expN)(&x, 1);
    return x;
}

/* fdlibm's log kernel: log(1 + f) for 1 + f = m in [sqrt(2)/2, sqrt(2)), written as
 * f - hfsq + s (hfsq + R); returns the pieces so that callers can add k ln2 and corrections */
FC_INLINE void FC_NAME(logkN)(const FC_VD* f, const FC_VD* kd, const FC_VD* c, FC_VD* out,
                              const int U) {
    /* log1p = k ln2_hi - ((hfsq - (s (hfsq + R) + (k ln2_lo + c))) - f) */
    const FC_VD Lg1 = FC_NAME(vsplat)(6.666666666666735130e-01);
    const FC_VD Lg2 = FC_NAME(vsplat)(3.999999999940941908e-01);
    const FC_VD Lg3 = FC_NAME(vsplat)(2.857142874366239149e-01);
    const FC_VD Lg4 = FC_NAME(vsplat)(2.222219843214978396e-01);
    const FC_VD Lg5 = FC_NAME(vsplat)(1.818357216161805012e-01);
    const FC_VD Lg6 = FC_NAME(vsplat)(1.531383769920937332e-01);
    const FC_VD Lg7 = FC_NAME(vsplat)(1.479819860511658591e-01);
    /* (the statements in fdlibm's order: the compiler's FMA contraction follows it) */
    FC_VD hfsq[FC_MAX_U], s[FC_MAX_U], z[FC_MAX_U], w[FC_MAX_U], t1[FC_MAX_U], t2[FC_MAX_U];
    FC_VD R[FC_MAX_U], lo[FC_MAX_U];
    FC_EACH(k) hfsq[k] = FC_NAME(vsplat)(0.5) * f[k] * f[k];
    FC_EACH(k) s[k] = f[k] / (FC_NAME(vsplat)(2.0) + f[k]);
    FC_EACH(k) z[k] = s[k] * s[k];
    FC_EACH(k) w[k] = z[k] * z[k];
    FC_EACH(k) t1[k] = w[k] * (Lg2 + w[k] * (Lg4 + w[k] * Lg6));
    FC_EACH(k) t2[k] = z[k] * (Lg1 + w[k] * (Lg3 + w[k] * (Lg5 + w[k] * Lg7)));
    FC_EACH(k) R[k] = t2[k] + t1[k];
    FC_EACH(k) lo[k] = kd[k] * FC_NAME(vsplat)(1.90821492927058770002e-10) + c[k];
    FC_EACH(k) out[k] = kd[k] * FC_NAME(vsplat)(6.93147180369123816490e-01)
                        - ((hfsq[k] - (s[k] * (hfsq[k] + R[k]) + lo[k])) - f[k]);
}

FC_INLINE FC_VD FC_NAME(logkv)(FC_VD f, FC_VD kd, FC_VD c) {
    FC_VD out;
    FC_NAME(logkN)(&f, &kd, &c, &out, 1);
    return out;
}

/* log1p(x) for x in [0, 1] (what softplus needs: x = e^-|z|) */
FC_INLINE void FC_NAME(log1p01N)(const FC_VD* x, FC_VD* out, const int U) {
    const FC_VD one = FC_NAME(vsplat)(1.0);
    FC_VD u[FC_MAX_U], c[FC_MAX_U], m[FC_MAX_U], kd[FC_MAX_U];
    FC_EACH(k) u[k] = one + x[k];                          /* in [1, 2] */
    /* (1 + x) - u = x - (u - 1), exact (Fast2Sum, 1 >= x); log(1 + x) = log(u) + log1p(err/u) */
    FC_EACH(k) c[k] = (x[k] - (u[k] - one)) / u[k];
    FC_EACH(k) {
        FC_VI big = (FC_VI)(u[k] >= FC_NAME(vsplat)(1.4142135623730951));
        m[k] = FC_NAME(vselect)(big, u[k] * FC_NAME(vsplat)(0.5), u[k]) - one;   /* exact */
        kd[k] = FC_NAME(vselect)(big, one, FC_NAME(vsplat)(0.0));
    }
    FC_NAME(logkN)(m, kd, c, out, U);
}

FC_INLINE FC_VD FC_NAME(log1p01v)(FC_VD x) {
    FC_VD out;
    FC_NAME(log1p01N)(&x, &out, 1);
    return out;
}

/* log1p(x) for -1 < x < +Inf */
FC_INLINE FC_VD FC_NAME(log1pv)(FC_VD x) {
    const FC_VD one = FC_NAME(vsplat)(1.0);
    FC_VD u = one + x;
    /* TwoSum: err = (1 + x) - u exactly, whatever the magnitudes */
    FC_VD bb = u - one;
    FC_VD err = (one - (u - bb)) + (x - bb);
    FC_VD c = err / u;
    /* u = 2^k m with m in [sqrt(2)/2, sqrt(2)) (fdlibm's bit trick on the exponent) */
    /* 0x3ff00000 - 0x3fe6a09e = 0x95f62 added to the high word */
    FC_VU ix = (FC_VU)u + FC_NAME(vsplatu)(0x00095f6200000000ULL);
    FC_VU eb = ix >> 52;                                        /* k + 1023, in 0 .. 2047 */
    const FC_VU magic = FC_NAME(vsplatu)(0x4330000000000000ULL);
    FC_VD kd = (FC_VD)(eb | magic) - FC_NAME(vsplat)(0x1p52 + 1023.0);
    FC_VU mb = (ix & FC_NAME(vsplatu)(0x000fffffffffffffULL))
                + FC_NAME(vsplatu)(0x3fe6a09e00000000ULL);
    FC_VD m = (FC_VD)mb;
    return FC_NAME(logkv)(m - one, kd, c);
}

/* expm1(a) for |a| <= 0.3466 (ln2 / 2): Taylor, degree 13 (truncation < 2e-17 relative) */
FC_INLINE FC_VD FC_NAME(expm1_smallv)(FC_VD a) {
    FC_VD p = FC_NAME(vsplat)(1.0 / 6227020800.0);
    p = p * a + FC_NAME(vsplat)(1.0 / 479001600.0);
    p = p * a + FC_NAME(vsplat)(1.0 / 39916800.0);
    p = p * a + FC_NAME(vsplat)(1.0 / 3628800.0);
    p = p * a + FC_NAME(vsplat)(1.0 / 362880.0);
    p = p * a + FC_NAME(vsplat)(1.0 / 40320.0);
    p = p * a + FC_NAME(vsplat)(1.0 / 5040.0);
    p = p * a + FC_NAME(vsplat)(1.0 / 720.0);
    p = p * a + FC_NAME(vsplat)(1.0 / 120.0);
    p = p * a + FC_NAME(vsplat)(1.0 / 24.0);
    p = p * a + FC_NAME(vsplat)(1.0 / 6.0);
    p = p * a + FC_NAME(vsplat)(0.5);
    return (p * a) * a + a;
}

/* ---- softplus, sigmoid and tanh on FC_W lanes; bad = lanes to redo with libm ------------- */

/* e[k] = e^-|z[k]| (|z| > 708, Inf and NaN lanes: bad, computed as e^0 here) */
FC_INLINE void FC_NAME(exp_neg_absN)(const FC_VD* z, FC_VD* e, FC_VI* bad, const int U) {
    FC_EACH(k) {
        FC_VD a = FC_NAME(vfabs)(z[k]);
        bad[k] = ~(FC_VI)(a <= FC_NAME(vsplat)(708.0));
        e[k] = -FC_NAME(vselect)(bad[k], FC_NAME(vsplat)(0.0), a);
    }
    FC_NAME(expN)(e, U);
}

FC_INLINE FC_VD FC_NAME(softplusv)(FC_VD z, FC_VI* bad) {
    FC_VD e;
    FC_NAME(exp_neg_absN)(&z, &e, bad, 1);
    FC_VD zp = FC_NAME(vselect)((FC_VI)(z > FC_NAME(vsplat)(0.0)), z, FC_NAME(vsplat)(0.0));
    return zp + FC_NAME(log1p01v)(e);
}

/* sigmoid(z) from e = e^-|z|: 1 / (1 + e) for z >= 0, e / (1 + e) below */
FC_INLINE void FC_NAME(sigmoid_of_expN)(const FC_VD* z, const FC_VD* e, FC_VD* out,
                                        const int U) {
    FC_EACH(k) out[k] = FC_NAME(vselect)((FC_VI)(z[k] >= FC_NAME(vsplat)(0.0)),
                                          FC_NAME(vsplat)(1.0), e[k])
                        / (FC_NAME(vsplat)(1.0) + e[k]);
}

FC_INLINE void FC_NAME(sigmoidN)(const FC_VD* z, FC_VD* out, FC_VI* bad, const int U) {
    FC_VD e[FC_MAX_U];
    FC_NAME(exp_neg_absN)(z, e, bad, U);
    FC_NAME(sigmoid_of_expN)(z, e, out, U);
}

FC_INLINE FC_VD FC_NAME(sigmoidv)(FC_VD z, FC_VI* bad) {
    FC_VD out;
    FC_NAME(sigmoidN)(&z, &out, bad, 1);
    return out;
}

/* softplus and sigmoid of the same z, sharing e^-|z|: the same operations as softplusv and
 * sigmoidv, so the same bits */
FC_INLINE void FC_NAME(softplus_sigmoidN)(const FC_VD* z, FC_VD* out, FC_VD* sig, FC_VI* bad,
                                          const int U) {
    FC_VD e[FC_MAX_U], lg[FC_MAX_U];
    FC_NAME(exp_neg_absN)(z, e, bad, U);
    FC_NAME(sigmoid_of_expN)(z, e, sig, U);
    FC_NAME(log1p01N)(e, lg, U);
    FC_EACH(k) out[k] = FC_NAME(vselect)((FC_VI)(z[k] > FC_NAME(vsplat)(0.0)), z[k],
                                          FC_NAME(vsplat)(0.0)) + lg[k];
}

FC_INLINE FC_VD FC_NAME(softplus_sigmoidv)(FC_VD z, FC_VI* bad, FC_VD* sig) {
    FC_VD out;
    FC_NAME(softplus_sigmoidN)(&z, &out, sig, bad, 1);
    return out;
}

/* expm1(y) for -708 <= y <= 0: y = n ln2 + r, |r| <= ln2/2, expm1(y) = 2^n expm1(r) + (2^n - 1)
 * (2^n expm1(r) is an exact scaling and 2^n - 1 is exact for n >= -53, so the one rounding of the
 * sum keeps the accuracy of expm1(r) for every n: no cancellation near y = 0) */
FC_INLINE FC_VD FC_NAME(expm1_negv)(FC_VD y) {
    const FC_VD shift = FC_NAME(vsplat)(0x1.8p52);
    FC_VD t = y * FC_NAME(vsplat)(1.4426950408889634074) + shift;   /* round(y / ln2) + shift */
    FC_VD n = t - shift;
    FC_VD r = y - n * FC_NAME(vsplat)(6.93147180369123816490e-01);   /* exact, as in expv */
    r = r - n * FC_NAME(vsplat)(1.90821492927058770002e-10);
    /* expm1(r), |r| <= 0.3466: the Taylor polynomial of expm1_small4 (truncation < 2e-17) */
    FC_VD em = FC_NAME(expm1_smallv)(r);
    FC_VI ni = (FC_VI)t - (FC_VI)shift;                            /* n >= -1022 */
    FC_VD scale = (FC_VD)((ni + 1023) << 52);
    return scale * em + (scale - FC_NAME(vsplat)(1.0));
}

/* tanh(x) = -m / (2 + m) for m = expm1(-2|x|) (in [-1, 0]: the denominator is in [1, 2], no
 * cancellation), the sign restored from x; |x| > 354 is clamped (m = -1 there, tanh = +-1).
 * NaN lanes: bad. */
FC_INLINE FC_VD FC_NAME(tanhv)(FC_VD x, FC_VI* bad) {
    FC_VD a = FC_NAME(vfabs)(x);
    *bad = (FC_VI)(x != x);
    FC_VD y = FC_NAME(vsplat)(-2.0) * a;
    y = FC_NAME(vselect)((FC_VI)(y >= FC_NAME(vsplat)(-708.0)), y, FC_NAME(vsplat)(-708.0));
    FC_VD m = FC_NAME(expm1_negv)(y);
    /* |m| rather than -m: +0 for x = +-0, whose sign comes from x below */
    FC_VD t = FC_NAME(vfabs)(m) / (FC_NAME(vsplat)(2.0) + m);
    const FC_VU sign = FC_NAME(vsplatu)(0x8000000000000000ULL);
    return (FC_VD)((FC_VU)t | ((FC_VU)x & sign));
}

/* ---- array functions ------------------------------------------------------------------------- */

/* exp and log1p with the lanes outside their vector path flagged (as softplusv and friends do) */
FC_INLINE FC_VD FC_NAME(expv_checked)(FC_VD v, FC_VI* bad) {
    *bad = ~(FC_VI)(FC_NAME(vfabs)(v) <= FC_NAME(vsplat)(708.0));
    return FC_NAME(expv)(FC_NAME(vselect)(*bad, FC_NAME(vsplat)(0.0), v));
}

FC_INLINE FC_VD FC_NAME(log1pv_checked)(FC_VD v, FC_VI* bad) {
    /* domain: -1 < x < Inf (NaN fails both) */
    *bad = ~((FC_VI)(v > FC_NAME(vsplat)(-1.0)) &
             (FC_VI)(v < FC_NAME(vsplat)(__builtin_inf())));
    return FC_NAME(log1pv)(FC_NAME(vselect)(*bad, FC_NAME(vsplat)(0.0), v));
}

/* the body of an array function o[i] = f(x[i]): vectors of FC_W (the last n % FC_W elements
 * padded), F4(v, &bad) giving f on a vector and the lanes to redo with the scalar LIBM */
#define FC_MAP_ARRAY(F4, LIBM)                                                                 \
    ptrdiff_t i = 0, k;                                                                        \
    FC_VI bad;                                                                                 \
    for (; i < n; i += FC_W) {                                                                 \
        ptrdiff_t len = n - i < FC_W ? n - i : FC_W;                                           \
        FC_VD v = len == FC_W ? FC_NAME(vload)(x + i) : FC_NAME(vload_part)(x + i, len);       \
        FC_VD r = FC_NAME(F4)(v, &bad);                                                        \
        if (FC_NAME(vany)(bad))                                                                \
            for (k = 0; k < FC_W; k++) if (bad[k]) r[k] = LIBM(v[k]);                          \
        if (len == FC_W) FC_NAME(vstore)(o + i, r); else FC_NAME(vstore_part)(o + i, r, len);  \
    }

static FC_TARGET_ATTR void FC_NAME(fc_exp_array)(const double* x, double* o, ptrdiff_t n) {
    FC_MAP_ARRAY(expv_checked, exp)
}

static FC_TARGET_ATTR void FC_NAME(fc_log1p_array)(const double* x, double* o, ptrdiff_t n) {
    FC_MAP_ARRAY(log1pv_checked, log1p)
}

static FC_TARGET_ATTR void FC_NAME(fc_softplus_array)(const double* x, double* o, ptrdiff_t n) {
    FC_MAP_ARRAY(softplusv, fc_softplus1)
}

static FC_TARGET_ATTR void FC_NAME(fc_sigmoid_array)(const double* x, double* o, ptrdiff_t n) {
    FC_MAP_ARRAY(sigmoidv, fc_sigmoid1)
}

/* o = softplus(x), sg = sigmoid(x) (Softplus's value and derivative in one pass) */
/* the first 4 FC_W m elements of fc_softplus_sigmoid_array: blocks of four vectors (exp, then
 * log1p's divisions: a long chain, four side by side) */
static FC_TARGET_ATTR __attribute__((noinline)) void FC_NAME(softplus_sigmoid_blocks)(
        const double* x, double* o, double* sg, ptrdiff_t m) {
    ptrdiff_t i;
    int u, k;
    for (i = 0; i < 4 * FC_W * m; i += 4 * FC_W) {
        FC_VD v[4], r[4], sv[4];
        FC_VI bv[4];
        for (u = 0; u < 4; u++) v[u] = FC_NAME(vload)(x + i + FC_W * u);
        FC_NAME(softplus_sigmoidN)(v, r, sv, bv, 4);
        for (u = 0; u < 4; u++) {
            if (FC_NAME(vany)(bv[u]))
                for (k = 0; k < FC_W; k++)
                    if (bv[u][k]) {
                        r[u][k] = fc_softplus1(v[u][k]);
                        sv[u][k] = fc_sigmoid1(v[u][k]);
                    }
            FC_NAME(vstore)(o + i + FC_W * u, r[u]);
            FC_NAME(vstore)(sg + i + FC_W * u, sv[u]);
        }
    }
}

static FC_TARGET_ATTR void FC_NAME(fc_softplus_sigmoid_array)(const double* x, double* o,
                                                             double* sg, ptrdiff_t n) {
    ptrdiff_t i = 4 * FC_W * (n / (4 * FC_W)), k;
    FC_VI bad;
    FC_VD sig;
    if (i > 0)
        FC_NAME(softplus_sigmoid_blocks)(x, o, sg, n / (4 * FC_W));
    for (; i < n; i += FC_W) {
        ptrdiff_t len = n - i < FC_W ? n - i : FC_W;
        FC_VD v = len == FC_W ? FC_NAME(vload)(x + i) : FC_NAME(vload_part)(x + i, len);
        FC_VD r = FC_NAME(softplus_sigmoidv)(v, &bad, &sig);
        if (FC_NAME(vany)(bad))
            for (k = 0; k < FC_W; k++)
                if (bad[k]) {
                    r[k] = fc_softplus1(v[k]);
                    sig[k] = fc_sigmoid1(v[k]);
                }
        if (len == FC_W) {
            FC_NAME(vstore)(o + i, r);
            FC_NAME(vstore)(sg + i, sig);
        } else {
            FC_NAME(vstore_part)(o + i, r, len);
            FC_NAME(vstore_part)(sg + i, sig, len);
        }
    }
}

/* o = g * sigmoid(x) */
/* the first 3 FC_W m elements of fc_sigmoid_mul_array: blocks of three vectors, three exp chains
 * side by side (a function of its own: the one-sample calls keep a light prologue) */
static FC_TARGET_ATTR __attribute__((noinline)) void FC_NAME(sigmoid_mul_blocks)(
        const double* x, const double* g, double* o, ptrdiff_t m) {
    ptrdiff_t i;
    int u, k;
    for (i = 0; i < 3 * FC_W * m; i += 3 * FC_W) {
        FC_VD v[3], r[3];
        FC_VI bv[3];
        for (u = 0; u < 3; u++) v[u] = FC_NAME(vload)(x + i + FC_W * u);
        FC_NAME(sigmoidN)(v, r, bv, 3);
        for (u = 0; u < 3; u++) {
            if (FC_NAME(vany)(bv[u]))
                for (k = 0; k < FC_W; k++) if (bv[u][k]) r[u][k] = fc_sigmoid1(v[u][k]);
            FC_NAME(vstore)(o + i + FC_W * u, FC_NAME(vload)(g + i + FC_W * u) * r[u]);
        }
    }
}

static FC_TARGET_ATTR void FC_NAME(fc_sigmoid_mul_array)(const double* x, const double* g,
                                                        double* o, ptrdiff_t n) {
    ptrdiff_t i = 3 * FC_W * (n / (3 * FC_W)), k;
    FC_VI bad;
    if (i > 0)
        FC_NAME(sigmoid_mul_blocks)(x, g, o, n / (3 * FC_W));
    for (; i < n; i += FC_W) {
        ptrdiff_t len = n - i < FC_W ? n - i : FC_W;
        FC_VD v = len == FC_W ? FC_NAME(vload)(x + i) : FC_NAME(vload_part)(x + i, len);
        FC_VD gv = len == FC_W ? FC_NAME(vload)(g + i) : FC_NAME(vload_part)(g + i, len);
        FC_VD r = FC_NAME(sigmoidv)(v, &bad);
        if (FC_NAME(vany)(bad))
            for (k = 0; k < FC_W; k++) if (bad[k]) r[k] = fc_sigmoid1(v[k]);
        r = gv * r;
        if (len == FC_W) FC_NAME(vstore)(o + i, r); else FC_NAME(vstore_part)(o + i, r, len);
    }
}

static FC_TARGET_ATTR void FC_NAME(fc_tanh_array)(const double* x, double* o, ptrdiff_t n) {
    FC_MAP_ARRAY(tanhv, tanh)
}
#undef FC_MAP_ARRAY
#undef FC_EACH
#undef FC_MAX_U
#undef FC_INLINE
#pragma GCC diagnostic pop
