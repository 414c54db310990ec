/* One instantiation of the 4-lane vector kernels (the reductions, axpys, Margin's and Linear's
 * products; the elementwise functions are in _fastmath_elem.h): included by _fastmath.h once per
 * target, with FC_NAME(name) giving the variant's names and FC_TARGET_ATTR its target attribute.
 * The summation orders below are written for 4-lane accumulators and are kept by every variant,
 * the AVX-512 one included (the same bits). Not a standalone header. See _fastmath.h for the
 * algorithms and their accuracy. */

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

/* ---- reductions in a fixed order --------------------------------------------------------------
 * (Scalar terms are added with muladd1, one FMA in the FMA variants, as GCC contracts them: a
 * compiler that vectorises such a tail loop as an in-order reduction, which GCC 12 does for the
 * AVX-512 target, would otherwise round the product apart and change the last bit.)
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
        tail = FC_NAME(muladd1)(x[i], y[i], tail);
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
        if (REM > 0) t = FC_NAME(muladd1)(zs[4 * NF], wp[4 * NF], t);                        \
        if (REM > 1) t = FC_NAME(muladd1)(zs[4 * NF + 1], wp[4 * NF + 1], t);                \
        if (REM > 2) t = FC_NAME(muladd1)(zs[4 * NF + 2], wp[4 * NF + 2], t);                \
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
        if (NF > 0) A0 = FC_NAME(muladd4)(c, FC_NAME(load4)(zs), A0);                        \
        if (NF > 1) A1 = FC_NAME(muladd4)(c, FC_NAME(load4)(zs + 4), A1);                    \
        if (NF > 2) A2 = FC_NAME(muladd4)(c, FC_NAME(load4)(zs + 8), A2);                    \
        if (NF > 3) A3 = FC_NAME(muladd4)(c, FC_NAME(load4)(zs + 12), A3);                   \
        if (REM > 0) T0 = FC_NAME(muladd1)(cs, zs[4 * NF], T0);                              \
        if (REM > 1) T1 = FC_NAME(muladd1)(cs, zs[4 * NF + 1], T1);                          \
        if (REM > 2) T2 = FC_NAME(muladd1)(cs, zs[4 * NF + 2], T2);                          \
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

/* fc_margin_wgrad for g -> y and h -> y2. Two calls: one loop for both (as the 8-lane variant
 * does) needs 16 vector accumulators, which spill from AVX2's 16 registers (the paper
 * configuration ran 5% slower at avx2+fma that way). */
static FC_TARGET_ATTR void FC_NAME(fc_margin_wgrad2)(const double* z, ptrdiff_t B, ptrdiff_t d,
                                                    const double* lab, ptrdiff_t ldl,
                                                    const double* g, double* y,
                                                    const double* h, double* y2) {
    FC_NAME(fc_margin_wgrad)(z, B, d, lab, ldl, g, y);
    FC_NAME(fc_margin_wgrad)(z, B, d, lab, ldl, h, y2);
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
        for (k = 0; k < R; k++) {   /* (muladd4: the AVX-512 variant's 8-lane FMAs round so) */
            a0[k] = FC_NAME(muladd4)(FC_NAME(load4)(W + k * d + i), z0, a0[k]);
            a1[k] = FC_NAME(muladd4)(FC_NAME(load4)(W + k * d + i + 4), z1, a1[k]);
        }
    }
    if (i + 4 <= d) {
        fc_v4d z0 = FC_NAME(load4)(z + i);
        for (k = 0; k < R; k++)
            a0[k] = FC_NAME(muladd4)(FC_NAME(load4)(W + k * d + i), z0, a0[k]);
        i += 4;
    }
    for (; i < d; i++)
        for (k = 0; k < R; k++)
            t[k] = FC_NAME(muladd1)(W[k * d + i], z[i], t[k]);
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
            a[k] = FC_NAME(muladd4)(go, FC_NAME(load4)(W + o * d + 4 * k), a[k]);
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
            acc = FC_NAME(muladd1)(g[o], W[o * d + j], acc);
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
 * m x d matrix u; returns the sum of squares of the new y. The SGD step of a rank-1 gradient.
 * The sum runs row by row in eight accumulators: blocks of 32 (the k-th block of 4 into a_k),
 * then the row's remaining blocks of 4 (up to seven) into a0, a1, ... in turn, its last d % 4
 * columns into a scalar; the accumulators carried from row to row; total
 * hsum4(((a0 + a2) + (a4 + a6)) + ((a1 + a3) + (a5 + a7))) + scalar. Eight FMA chains, not
 * fc_sumsq's four: with four, the chains' latency bound this loop (1.4x slower at width 64,
 * benchmarks/RESULTS.md); the sum only feeds the weight-norm check. */
#define FC_OUTER_ACCS 8
static FC_TARGET_ATTR __attribute__((optimize("fp-contract=off")))
double FC_NAME(fc_outer_axpy_sumsq)(double a, const double* g, ptrdiff_t m, const double* z,
                                    ptrdiff_t d, double* y) {
    fc_v4d s[FC_OUTER_ACCS], av = FC_NAME(splat)(a);
    double tail = 0.0;
    ptrdiff_t o, j, rest;
    int k;
    for (k = 0; k < FC_OUTER_ACCS; k++)
        s[k] = FC_NAME(splat)(0.0);
    for (o = 0; o < m; o++) {
        double* yo = y + o * d;
        fc_v4d go = FC_NAME(splat)(g[o]);
#define FC_OUTER_AXPY4(J, K)                                                                 \
        {                                                                                   \
            fc_v4d t = av * (go * FC_NAME(load4)(z + (J)));                                 \
            fc_v4d v = FC_NAME(load4)(yo + (J)) + t;                                        \
            FC_NAME(store4)(yo + (J), v);                                                   \
            s[K] = FC_NAME(muladd4)(v, v, s[K]);                                            \
        }
        for (j = 0; j + 4 * FC_OUTER_ACCS <= d; j += 4 * FC_OUTER_ACCS)
            for (k = 0; k < FC_OUTER_ACCS; k++)
                FC_OUTER_AXPY4(j + 4 * k, k)
        /* (constant indices, so that s stays in registers) */
        rest = (d - j) / 4;
#define FC_OUTER_REST(K) if (rest > (K)) FC_OUTER_AXPY4(j + 4 * (K), K)
        FC_OUTER_REST(0) FC_OUTER_REST(1) FC_OUTER_REST(2) FC_OUTER_REST(3)
        FC_OUTER_REST(4) FC_OUTER_REST(5) FC_OUTER_REST(6)
#undef FC_OUTER_REST
#undef FC_OUTER_AXPY4
        j += 4 * rest;
        for (; j < d; j++) {
            double t = a * (g[o] * z[j]);
            yo[j] = yo[j] + t;
            tail = FC_NAME(muladd1)(yo[j], yo[j], tail);
        }
    }
    return FC_NAME(hsum4)(((s[0] + s[2]) + (s[4] + s[6])) + ((s[1] + s[3]) + (s[5] + s[7])))
        + tail;
}
#undef FC_OUTER_ACCS

#undef FC_INLINE
#pragma GCC diagnostic pop
