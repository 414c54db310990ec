/* 8-lane AVX-512 versions of the per-sample Linear kernels and of Margin's weight gradient
 * (included by _fastmath.h): the AVX-512 variant's table uses them in place of its 4-lane
 * fc_matvec, fc_matvec_t, fc_outer_axpy_sumsq and fc_margin_wgrad(2).
 * Not a standalone header.
 *
 * Same bits as the 4-lane kernels of _fastmath_impl.h: their two (fc_matvec) or eight
 * (fc_outer_axpy_sumsq) 4-lane accumulators are kept side by side as the halves of 8-lane
 * ones, so that every lane adds the same terms in the same order, and the blocks of 4 left after
 * the blocks of 8 or 32 go to the accumulator the 4-lane code gives them (masked to its half).
 * The products and sums round as the 4-lane code's (an FMA where it contracts, fp-contract=off
 * where it has it). What AVX-512 adds: half the instructions, and in fc_matvec eight rows' chains
 * in flight instead of four. */

#define FC_W8_ATTR __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,avx2,fma")))
#define FC_W8_INLINE static inline __attribute__((always_inline)) FC_W8_ATTR
#define FC_W8_LOW_HALF 0x0F   /* the mask of an 8-lane register's low half */

/* hsum4(lo + hi) (_fastmath_impl.h) of the 4-lane accumulators lo, hi held in a's halves:
 * s = lo + hi, then (s0 + s2) + (s1 + s3) */
FC_W8_INLINE double fc_w8_hsum_halves(__m512d a) {
    __m256d s = _mm256_add_pd(_mm512_castpd512_pd256(a), _mm512_extractf64x4_pd(a, 1));
    __m128d p = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    return _mm_cvtsd_f64(p) + _mm_cvtsd_f64(_mm_unpackhi_pd(p, p));
}

/* matvec_rows of _fastmath_impl.h for R <= 8 rows: lanes 0-3 of a[k] are its a0[k], lanes 4-7
 * its a1[k] */
FC_W8_INLINE void fc_w8_matvec_rows(const double* W, ptrdiff_t d, const double* z, double* out,
                                    const int R) {
    __m512d a[8];
    double t[8];
    ptrdiff_t i = 0;
    int k;
    for (k = 0; k < R; k++) {
        a[k] = _mm512_setzero_pd();
        t[k] = 0.0;
    }
    for (; i + 8 <= d; i += 8) {
        __m512d zv = _mm512_loadu_pd(z + i);
        for (k = 0; k < R; k++)
            a[k] = _mm512_fmadd_pd(_mm512_loadu_pd(W + k * d + i), zv, a[k]);
    }
    if (i + 4 <= d) {   /* one more block of 4, into a0 (the low half) */
        __m512d zv = _mm512_maskz_loadu_pd(FC_W8_LOW_HALF, z + i);
        for (k = 0; k < R; k++)
            a[k] = _mm512_mask3_fmadd_pd(_mm512_maskz_loadu_pd(FC_W8_LOW_HALF, W + k * d + i), zv,
                                         a[k], FC_W8_LOW_HALF);
        i += 4;
    }
    for (; i < d; i++)
        for (k = 0; k < R; k++)
            t[k] = __builtin_fma(W[k * d + i], z[i], t[k]);
    for (k = 0; k < R; k++)
        out[k] = fc_w8_hsum_halves(a[k]) + t[k];
}

static FC_W8_ATTR void fc_matvec_w8(const double* W, ptrdiff_t m, ptrdiff_t d, const double* z,
                                    double* out) {
    ptrdiff_t o = 0;
    for (; o + 8 <= m; o += 8)
        fc_w8_matvec_rows(W + o * d, d, z, out + o, 8);
    for (; o < m; o++)
        fc_w8_matvec_rows(W + o * d, d, z, out + o, 1);
}

/* fc_matvec_t of _fastmath_impl.h: each column's sum is one FMA chain over the rows in order,
 * whatever the blocking, so V <= 16 8-lane accumulators take up to 128 columns a sweep (the
 * 4-lane code's 32): at widths up to 128 one sweep over W, row after row, which the hardware
 * prefetcher follows. */
FC_W8_INLINE void fc_w8_matvec_t_cols(const double* W, ptrdiff_t m, ptrdiff_t d, const double* g,
                                      double* out, const int V, __mmask8 last) {
    __m512d a[16];
    ptrdiff_t o;
    int k;
    for (k = 0; k < V; k++)
        a[k] = _mm512_setzero_pd();
    for (o = 0; o < m; o++) {
        __m512d go = _mm512_set1_pd(g[o]);
        const double* Wo = W + o * d;
        for (k = 0; k < V - 1; k++)
            a[k] = _mm512_fmadd_pd(go, _mm512_loadu_pd(Wo + 8 * k), a[k]);
        if (last == 0xFF)
            a[V - 1] = _mm512_fmadd_pd(go, _mm512_loadu_pd(Wo + 8 * (V - 1)), a[V - 1]);
        else
            a[V - 1] = _mm512_fmadd_pd(go, _mm512_maskz_loadu_pd(last, Wo + 8 * (V - 1)),
                                       a[V - 1]);
    }
    for (k = 0; k < V - 1; k++)
        _mm512_storeu_pd(out + 8 * k, a[k]);
    _mm512_mask_storeu_pd(out + 8 * (V - 1), last, a[V - 1]);
}

static FC_W8_ATTR void fc_matvec_t_w8(const double* W, ptrdiff_t m, ptrdiff_t d, const double* g,
                                      double* out) {
    ptrdiff_t j = 0;
    for (; j + 128 <= d; j += 128)
        fc_w8_matvec_t_cols(W + j, m, d, g, out + j, 16, 0xFF);
    if (j < d) {
        ptrdiff_t rest = d - j;                    /* 1 .. 127 columns: V vectors, the last */
        int V = (int)((rest + 7) / 8);             /* of them masked to what is left */
        __mmask8 last = (__mmask8)((1u << (rest - 8 * (V - 1))) - 1u);
        switch (V) {   /* (constant V: the accumulators stay in registers) */
#define FC_W8_MATVEC_T_CASE(K) \
            case K: fc_w8_matvec_t_cols(W + j, m, d, g, out + j, K, last); break;
            FC_W8_MATVEC_T_CASE(1) FC_W8_MATVEC_T_CASE(2) FC_W8_MATVEC_T_CASE(3)
            FC_W8_MATVEC_T_CASE(4) FC_W8_MATVEC_T_CASE(5) FC_W8_MATVEC_T_CASE(6)
            FC_W8_MATVEC_T_CASE(7) FC_W8_MATVEC_T_CASE(8) FC_W8_MATVEC_T_CASE(9)
            FC_W8_MATVEC_T_CASE(10) FC_W8_MATVEC_T_CASE(11) FC_W8_MATVEC_T_CASE(12)
            FC_W8_MATVEC_T_CASE(13) FC_W8_MATVEC_T_CASE(14) FC_W8_MATVEC_T_CASE(15)
            default: fc_w8_matvec_t_cols(W + j, m, d, g, out + j, 16, last); break;
#undef FC_W8_MATVEC_T_CASE
        }
    }
}

/* The blocks of a row of d entries, in the order of fc_outer_axpy_sumsq's accumulators
 * a0 .. a7 (held as the halves of S0 .. S3): STEP(J, S) for the block of 8 at column J into S,
 * 32 columns at a time into S0 .. S3, then the remaining blocks of 4 (up to seven) into a0, a1,
 * ... in turn: pairs of them fill S0, S1, S2, and an odd last one goes, through LOW(J, S), to
 * the low half (a_2p) of the next. Leaves j at the first of the d % 4 single entries. */
#define FC_W8_SUMSQ_BLOCKS(j, d, STEP, LOW, S0, S1, S2, S3)                                   \
    {                                                                                          \
        ptrdiff_t rest_;                                                                       \
        for (j = 0; j + 32 <= (d); j += 32) {                                                  \
            STEP(j, S0)                                                                        \
            STEP(j + 8, S1)                                                                    \
            STEP(j + 16, S2)                                                                   \
            STEP(j + 24, S3)                                                                   \
        }                                                                                      \
        rest_ = ((d) - j) / 4;                                                                 \
        if (rest_ >= 2) STEP(j, S0)                                                            \
        if (rest_ >= 4) STEP(j + 8, S1)                                                        \
        if (rest_ >= 6) STEP(j + 16, S2)                                                       \
        if (rest_ == 1) LOW(j, S0)                                                             \
        if (rest_ == 3) LOW(j + 8, S1)                                                         \
        if (rest_ == 5) LOW(j + 16, S2)                                                        \
        if (rest_ == 7) LOW(j + 24, S3)                                                        \
        j += 4 * rest_;                                                                        \
    }

/* fc_outer_axpy_sumsq of _fastmath_impl.h: S[p] holds its accumulators a_2p | a_2p+1 */
static FC_W8_ATTR __attribute__((optimize("fp-contract=off")))
double fc_outer_axpy_sumsq_w8(double a, const double* g, ptrdiff_t m, const double* z,
                              ptrdiff_t d, double* y) {
    __m512d S0 = _mm512_setzero_pd(), S1 = S0, S2 = S0, S3 = S0, av = _mm512_set1_pd(a);
    double tail = 0.0;
    ptrdiff_t o, j;
    for (o = 0; o < m; o++) {
        double* yo = y + o * d;
        __m512d go = _mm512_set1_pd(g[o]);
        /* y_j + a (g_o z_j), two roundings as the 4-lane code; its square added in one FMA;
         * LOW: the same on the low half (a block of 4) */
#define FC_W8_STEP(J, S)                                                                       \
        {                                                                                      \
            __m512d v = _mm512_add_pd(_mm512_loadu_pd(yo + (J)), _mm512_mul_pd(                \
                av, _mm512_mul_pd(go, _mm512_loadu_pd(z + (J)))));                             \
            _mm512_storeu_pd(yo + (J), v);                                                     \
            S = _mm512_fmadd_pd(v, v, S);                                                      \
        }
#define FC_W8_LOW(J, S)                                                                        \
        {                                                                                      \
            __m512d v = _mm512_add_pd(_mm512_maskz_loadu_pd(FC_W8_LOW_HALF, yo + (J)),         \
                _mm512_mul_pd(av, _mm512_mul_pd(go,                                            \
                                                _mm512_maskz_loadu_pd(FC_W8_LOW_HALF, z + (J))))); \
            _mm512_mask_storeu_pd(yo + (J), FC_W8_LOW_HALF, v);                                \
            S = _mm512_mask3_fmadd_pd(v, v, S, FC_W8_LOW_HALF);                                \
        }
        FC_W8_SUMSQ_BLOCKS(j, d, FC_W8_STEP, FC_W8_LOW, S0, S1, S2, S3)
#undef FC_W8_LOW
#undef FC_W8_STEP
        for (; j < d; j++) {
            double t = a * (g[o] * z[j]);
            yo[j] = yo[j] + t;
            tail = __builtin_fma(yo[j], yo[j], tail);
        }
    }
    /* (S0 + S1) + (S2 + S3) = ((a0 + a2) + (a4 + a6)) | ((a1 + a3) + (a5 + a7)), then hsum4 of
     * its halves' sum */
    return fc_w8_hsum_halves(_mm512_add_pd(_mm512_add_pd(S0, S1), _mm512_add_pd(S2, S3))) + tail;
}

/* fc_outer_axpy_sumsq_w8(a, g, m, z, d, y), then fc_matvec_w8(y, m, d, x, out), in one pass
 * over y from L2: R rows at a time, each row's new entries are made and multiplied into its dot
 * product (one chain per row in column order, as in fc_w8_matvec_rows; R chains side by side),
 * then the R new rows, still in L1, are squared into the sum in row order through
 * FC_W8_SUMSQ_BLOCKS, as fc_outer_axpy_sumsq_w8 sums them. Both partitions of a row are the
 * same (blocks of 8, one block of 4 if d % 8 >= 4, then single entries): the same bits as the
 * two calls. The per-sample network's first Linear (one sample a step) updates its
 * weights this way and has the next step's forward output at once: one pass over W_1 a step
 * fewer. */
FC_W8_INLINE void fc_w8_axpy_dot_rows(__m512d av, const double* g, const double* z,
                                      ptrdiff_t d, double* y, const double* x, double* out,
                                      const int R) {
    const ptrdiff_t d8 = d / 8 * 8, d4 = d % 8 >= 4 ? d8 + 4 : d8;
    const double a = _mm512_cvtsd_f64(av);
    __m512d go[8], dot[8];
    double dot_tail[8];
    ptrdiff_t j;
    int k;
    for (k = 0; k < R; k++) {
        go[k] = _mm512_set1_pd(g[k]);
        dot[k] = _mm512_setzero_pd();
        dot_tail[k] = 0.0;
    }
    for (j = 0; j < d8; j += 8) {
        __m512d zj = _mm512_loadu_pd(z + j), xj = _mm512_loadu_pd(x + j);
        for (k = 0; k < R; k++) {
            __m512d v = _mm512_add_pd(_mm512_loadu_pd(y + k * d + j),
                                      _mm512_mul_pd(av, _mm512_mul_pd(go[k], zj)));
            _mm512_storeu_pd(y + k * d + j, v);
            dot[k] = _mm512_fmadd_pd(v, xj, dot[k]);
        }
    }
    if (d4 > d8) {
        __m512d zj = _mm512_maskz_loadu_pd(FC_W8_LOW_HALF, z + d8);
        __m512d xj = _mm512_maskz_loadu_pd(FC_W8_LOW_HALF, x + d8);
        for (k = 0; k < R; k++) {
            __m512d v = _mm512_add_pd(_mm512_maskz_loadu_pd(FC_W8_LOW_HALF, y + k * d + d8),
                                      _mm512_mul_pd(av, _mm512_mul_pd(go[k], zj)));
            _mm512_mask_storeu_pd(y + k * d + d8, FC_W8_LOW_HALF, v);
            dot[k] = _mm512_mask3_fmadd_pd(v, xj, dot[k], FC_W8_LOW_HALF);
        }
    }
    for (j = d4; j < d; j++)
        for (k = 0; k < R; k++) {
            /* y + a (g z): two roundings (as fc_outer_axpy_sumsq_w8), never one FMA */
            __m128d t = _mm_mul_sd(_mm_set_sd(a), _mm_mul_sd(_mm_set_sd(g[k]), _mm_set_sd(z[j])));
            y[k * d + j] = _mm_cvtsd_f64(_mm_add_sd(_mm_set_sd(y[k * d + j]), t));
            dot_tail[k] = __builtin_fma(y[k * d + j], x[j], dot_tail[k]);
        }
    for (k = 0; k < R; k++)
        out[k] = fc_w8_hsum_halves(dot[k]) + dot_tail[k];
}

/* the sum of squares of fc_outer_axpy_sumsq_w8 over one row yr (its accumulators S0..S3 in
 * registers, tail) */
FC_W8_INLINE void fc_w8_row_sumsq(const double* yr, ptrdiff_t d, __m512d* S0, __m512d* S1,
                                  __m512d* S2, __m512d* S3, double* tail) {
    ptrdiff_t j;
#define FC_W8_SQ(J, S) { __m512d v = _mm512_loadu_pd(yr + (J)); S = _mm512_fmadd_pd(v, v, S); }
#define FC_W8_SQ_LOW(J, S)                                                                     \
    { __m512d v = _mm512_maskz_loadu_pd(FC_W8_LOW_HALF, yr + (J));                             \
      S = _mm512_mask3_fmadd_pd(v, v, S, FC_W8_LOW_HALF); }
    FC_W8_SUMSQ_BLOCKS(j, d, FC_W8_SQ, FC_W8_SQ_LOW, *S0, *S1, *S2, *S3)
#undef FC_W8_SQ_LOW
#undef FC_W8_SQ
    for (; j < d; j++)
        *tail = __builtin_fma(yr[j], yr[j], *tail);
}

static FC_W8_ATTR __attribute__((optimize("fp-contract=off")))
double fc_outer_axpy_matvec_sumsq_w8(double a, const double* g, ptrdiff_t m, const double* z,
                                     ptrdiff_t d, double* y, const double* x, double* out) {
    const __m512d av = _mm512_set1_pd(a);
    __m512d S0 = _mm512_setzero_pd(), S1 = S0, S2 = S0, S3 = S0;
    double tail = 0.0;
    ptrdiff_t o = 0, r, R;
    for (; o < m; o += R) {
        R = m - o >= 8 ? 8 : 1;
        if (R == 8)
            fc_w8_axpy_dot_rows(av, g + o, z, d, y + o * d, x, out + o, 8);
        else
            fc_w8_axpy_dot_rows(av, g + o, z, d, y + o * d, x, out + o, 1);
        for (r = o; r < o + R; r++)   /* the new rows' squares, in row order */
            fc_w8_row_sumsq(y + r * d, d, &S0, &S1, &S2, &S3, &tail);
    }
    return fc_w8_hsum_halves(_mm512_add_pd(_mm512_add_pd(S0, S1), _mm512_add_pd(S2, S3))) + tail;
}

/* fc_margin_wgrad(2) of _fastmath_impl.h for d <= 16: its 4-lane accumulators A0 | A1 are the
 * halves of v0, A2 | A3 of v1 (or A0 alone h0, A2 alone h1, when d / 4 is odd), and its scalars
 * T0, T1 the lanes of t01, T2 the scalar t2; each lane gets the same FMAs in the same order. One
 * set per row parity and gradient: fc_margin_wgrad2 carries both gradients in one loop, four
 * chains in flight (the 4-lane variant, short of registers, makes two calls). Every load is as
 * wide as its data (masked loads cost this loop a third more on the AMD EPYC measured). */
typedef struct { __m512d v0, v1; __m256d h0, h1; __m128d t01; double t2; } fc_w8_wgrad_acc;

/* a row's entries, loaded once for both gradients: the accumulators' registers, each holding
 * the entries it meets */
typedef fc_w8_wgrad_acc fc_w8_wgrad_z;

FC_W8_INLINE fc_w8_wgrad_acc fc_w8_wgrad_zero(void) {
    fc_w8_wgrad_acc r = {_mm512_setzero_pd(), _mm512_setzero_pd(), _mm256_setzero_pd(),
                         _mm256_setzero_pd(), _mm_setzero_pd(), 0.0};
    return r;
}

FC_W8_INLINE fc_w8_wgrad_z fc_w8_wgrad_load(const double* zs, ptrdiff_t nvec, ptrdiff_t rem) {
    fc_w8_wgrad_z r = fc_w8_wgrad_zero();
    const double* zt = zs + nvec;
    if (nvec >= 8) r.v0 = _mm512_loadu_pd(zs);
    else if (nvec == 4) r.h0 = _mm256_loadu_pd(zs);
    if (nvec == 16) r.v1 = _mm512_loadu_pd(zs + 8);
    else if (nvec == 12) r.h1 = _mm256_loadu_pd(zs + 8);
    if (rem >= 2) r.t01 = _mm_loadu_pd(zt);
    else if (rem == 1) r.t01 = _mm_load_sd(zt);
    if (rem == 3) r.t2 = zt[2];
    /* one load for both gradients' FMAs (the compiler would fold it into each) */
    __asm__("" : "+v"(r.v0), "+v"(r.v1), "+v"(r.h0), "+v"(r.h1), "+v"(r.t01));
    return r;
}

FC_W8_INLINE void fc_w8_wgrad_row(fc_w8_wgrad_acc* a, const fc_w8_wgrad_z* z, double cs,
                                  ptrdiff_t nvec, ptrdiff_t rem) {
    __m512d c = _mm512_set1_pd(cs);
    if (nvec >= 8)
        a->v0 = _mm512_fmadd_pd(c, z->v0, a->v0);
    else if (nvec == 4)
        a->h0 = _mm256_fmadd_pd(_mm512_castpd512_pd256(c), z->h0, a->h0);
    if (nvec == 16)
        a->v1 = _mm512_fmadd_pd(c, z->v1, a->v1);
    else if (nvec == 12)
        a->h1 = _mm256_fmadd_pd(_mm512_castpd512_pd256(c), z->h1, a->h1);
    if (rem >= 2)
        a->t01 = _mm_fmadd_pd(_mm512_castpd512_pd128(c), z->t01, a->t01);
    else if (rem == 1)   /* (lane 1 gets cs, unread: only lanes < rem are added to y) */
        a->t01 = _mm_fmadd_sd(_mm512_castpd512_pd128(c), z->t01, a->t01);
    if (rem == 3)
        a->t2 = __builtin_fma(cs, z->t2, a->t2);
}

FC_W8_INLINE void fc_w8_wgrad_add(double* y, const fc_w8_wgrad_acc* a, const fc_w8_wgrad_acc* b,
                                  ptrdiff_t d, ptrdiff_t nvec) {
    double acc[19];   /* up to nvec + 2 = 18 */
    if (nvec >= 8)
        _mm512_storeu_pd(acc, _mm512_add_pd(a->v0, b->v0));
    else
        _mm256_storeu_pd(acc, _mm256_add_pd(a->h0, b->h0));
    if (nvec == 16)
        _mm512_storeu_pd(acc + 8, _mm512_add_pd(a->v1, b->v1));
    else
        _mm256_storeu_pd(acc + 8, _mm256_add_pd(a->h1, b->h1));
    _mm_storeu_pd(acc + nvec, _mm_add_pd(a->t01, b->t01));
    acc[nvec + 2] = a->t2 + b->t2;
    for (ptrdiff_t j = 0; j < d; j++)
        y[j] = y[j] + acc[j];
}

/* the rows of both gradients (PAIR) or of g alone, d = nvec + rem <= 16 (constants where it is
 * inlined: the row's branches fold). The rows' coefficients -lab g (and -lab h) are made first,
 * FC_W8_WGRAD_CHUNK rows at a time (an even count: each row keeps its parity's accumulators),
 * so that the row loop broadcasts them from memory (a load, not a shuffle: the shuffle unit was
 * this loop's bound on the AMD EPYC measured, and the product's latency sat on its path). */
#define FC_W8_WGRAD_CHUNK 256
FC_W8_INLINE void fc_w8_margin_wgrad_rows(const double* z, ptrdiff_t B, const double* lab,
                                          ptrdiff_t ldl, const double* g, double* y,
                                          const double* h, double* y2, const int PAIR,
                                          const ptrdiff_t nvec, const ptrdiff_t rem) {
    const ptrdiff_t d = nvec + rem;
    ptrdiff_t s, c0, n;
    double cg[FC_W8_WGRAD_CHUNK], ch[FC_W8_WGRAD_CHUNK];
    fc_w8_wgrad_acc a = fc_w8_wgrad_zero(), b = a, c = a, e = a;
    for (c0 = 0; c0 < B; c0 += FC_W8_WGRAD_CHUNK) {
        n = B - c0 < FC_W8_WGRAD_CHUNK ? B - c0 : FC_W8_WGRAD_CHUNK;
        for (s = 0; s < n; s++) {
            cg[s] = -lab[(c0 + s) * ldl] * g[c0 + s];
            if (PAIR)
                ch[s] = -lab[(c0 + s) * ldl] * h[c0 + s];
        }
        const double* zc = z + c0 * d;
        for (s = 0; s + 2 <= n; s += 2) {
            fc_w8_wgrad_z z0 = fc_w8_wgrad_load(zc + s * d, nvec, rem);
            fc_w8_wgrad_z z1 = fc_w8_wgrad_load(zc + (s + 1) * d, nvec, rem);
            fc_w8_wgrad_row(&a, &z0, cg[s], nvec, rem);
            fc_w8_wgrad_row(&b, &z1, cg[s + 1], nvec, rem);
            if (PAIR) {
                fc_w8_wgrad_row(&c, &z0, ch[s], nvec, rem);
                fc_w8_wgrad_row(&e, &z1, ch[s + 1], nvec, rem);
            }
        }
        if (s < n) {
            fc_w8_wgrad_z z0 = fc_w8_wgrad_load(zc + s * d, nvec, rem);
            fc_w8_wgrad_row(&a, &z0, cg[s], nvec, rem);
            if (PAIR)
                fc_w8_wgrad_row(&c, &z0, ch[s], nvec, rem);
        }
    }
    fc_w8_wgrad_add(y, &a, &b, d, nvec);
    if (PAIR)
        fc_w8_wgrad_add(y2, &c, &e, d, nvec);
}
#undef FC_W8_WGRAD_CHUNK

FC_W8_INLINE void fc_w8_margin_wgrad(const double* z, ptrdiff_t B, ptrdiff_t d,
                                     const double* lab, ptrdiff_t ldl, const double* g,
                                     double* y, const double* h, double* y2, const int PAIR) {
    switch (d) {
#define FC_W8_WGRAD_CASE(D) \
        case D: fc_w8_margin_wgrad_rows(z, B, lab, ldl, g, y, h, y2, PAIR, 4 * (D / 4), D % 4); \
            break;
        FC_W8_WGRAD_CASE(1) FC_W8_WGRAD_CASE(2) FC_W8_WGRAD_CASE(3) FC_W8_WGRAD_CASE(4)
        FC_W8_WGRAD_CASE(5) FC_W8_WGRAD_CASE(6) FC_W8_WGRAD_CASE(7) FC_W8_WGRAD_CASE(8)
        FC_W8_WGRAD_CASE(9) FC_W8_WGRAD_CASE(10) FC_W8_WGRAD_CASE(11) FC_W8_WGRAD_CASE(12)
        FC_W8_WGRAD_CASE(13) FC_W8_WGRAD_CASE(14) FC_W8_WGRAD_CASE(15)
        default: fc_w8_margin_wgrad_rows(z, B, lab, ldl, g, y, h, y2, PAIR, 16, 0); break;
#undef FC_W8_WGRAD_CASE
    }
}

static FC_W8_ATTR void fc_margin_wgrad_w8(const double* z, ptrdiff_t B, ptrdiff_t d,
                                          const double* lab, ptrdiff_t ldl, const double* g,
                                          double* y) {
    if (d > 16 || d < 1)
        fc_margin_wgrad_avx512(z, B, d, lab, ldl, g, y);
    else
        fc_w8_margin_wgrad(z, B, d, lab, ldl, g, y, NULL, NULL, 0);
}

static FC_W8_ATTR void fc_margin_wgrad2_w8(const double* z, ptrdiff_t B, ptrdiff_t d,
                                           const double* lab, ptrdiff_t ldl, const double* g,
                                           double* y, const double* h, double* y2) {
    if (d > 16 || d < 1)
        fc_margin_wgrad2_avx512(z, B, d, lab, ldl, g, y, h, y2);
    else
        fc_w8_margin_wgrad(z, B, d, lab, ldl, g, y, h, y2, 1);
}

#undef FC_W8_SUMSQ_BLOCKS
#undef FC_W8_LOW_HALF
#undef FC_W8_INLINE
#undef FC_W8_ATTR
