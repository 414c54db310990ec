# cython: language_level=3
"""Perturbation kernels: every draw comes from a numpy ``bitgen_t`` (no GIL needed); for numpy's
PCG64, the engine's streams serve it from an inlined copy of the generator's state (_pcg64.h,
stream_open / stream_close), the same draws bit for bit.

Each kind's NumPy twin lives with its class in ``fastcascade.noise`` and consumes the stream in
the same order: a distribution fills its draws row-major over the block (as ``Generator.random``,
``standard_normal``, ``laplace`` and ``standard_t`` do), a transform draws per element or per row
as its comment says.
"""
from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.math cimport (fabs, floor, nearbyint, frexp, ldexp, isfinite, isnan, copysign, pow,
                        NAN, INFINITY)
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy
from numpy.random cimport bitgen_t
from numpy.random.c_distributions cimport (
    random_standard_uniform, random_standard_uniform_fill,
    random_laplace, random_standard_t)

import os
import secrets
import time
import weakref

import numpy as np

# For the Python side: the codes and the table widths (one source of truth).
NOISE_CODES = {"uniform": NOISE_UNIFORM, "gaussian": NOISE_GAUSSIAN, "laplace": NOISE_LAPLACE,
               "student_t": NOISE_STUDENT_T, "rademacher": NOISE_RADEMACHER,
               "constant": NOISE_CONSTANT, "round_float": NOISE_ROUND_FLOAT,
               "round_fixed": NOISE_ROUND_FIXED, "topk": NOISE_TOPK, "randk": NOISE_RANDK,
               "scaled_sign": NOISE_SCALED_SIGN, "bitflip": NOISE_BITFLIP,
               "python": NOISE_PYTHON}
FIRST_TRANSFORM = NOISE_FIRST_TRANSFORM
ROUNDING_CODES = {"nearest": ROUND_NEAREST_EVEN, "stochastic": ROUND_STOCHASTIC}
MODE_CODES = {"additive": MODE_ADDITIVE, "relative": MODE_RELATIVE}
GRANULARITY_CODES = {"element": GRAN_ELEMENT, "sample": GRAN_SAMPLE, "step": GRAN_STEP}
TIMING_CODES = {"always": TIMING_ALWAYS, "every": TIMING_EVERY, "bernoulli": TIMING_BERNOULLI,
                "at": TIMING_AT, "window": TIMING_WINDOW}
MAGNITUDE_CODES = {"constant": MAG_CONSTANT, "power": MAG_POWER}
INT_FIELDS = PERT_INT_FIELDS
REAL_FIELDS = PERT_REAL_FIELDS
# the tables' columns by name (perturbation_tables fills them by these, the kernels read them)
PERT_INT_COLUMNS = {"op": PCOL_OP, "backward": PCOL_BACKWARD, "kind": PCOL_KIND,
                    "granularity": PCOL_GRANULARITY, "timing": PCOL_TIMING, "t_a": PCOL_T_A,
                    "t_b": PCOL_T_B, "mode": PCOL_MODE, "aux": PCOL_AUX, "aux2": PCOL_AUX2,
                    "magnitude": PCOL_MAGNITUDE}
PERT_REAL_COLUMNS = {"p0": RCOL_P0, "p1": RCOL_P0 + 1, "p2": RCOL_P0 + 2, "p3": RCOL_P0 + 3,
                     "prob": RCOL_PROB, "scale": RCOL_SCALE, "alpha": RCOL_ALPHA}


# ---------------------------------------------------------------------------------------------
# Random streams (see _pcg64.h)

cdef extern from "_pcg64.h":
    void fc_pcg64_set(fc_pcg64_t* g, uint64_t state_hi, uint64_t state_lo, uint64_t inc_hi,
                      uint64_t inc_lo, int has_uint32, uint32_t uinteger) noexcept nogil
    uint64_t fc_pcg64_state_hi(const fc_pcg64_t* g) noexcept nogil
    uint64_t fc_pcg64_state_lo(const fc_pcg64_t* g) noexcept nogil
    void fc_pcg64_bitgen(bitgen_t* bg, fc_pcg64_t* g) noexcept nogil
    bint fc_pcg64_is_ours(const bitgen_t* bg) noexcept nogil
    void fc_pcg64_fill_double(fc_pcg64_t* g, double* out, Py_ssize_t n) noexcept nogil
    void fc_pcg64_add_affine(fc_pcg64_t* g, const double* x, double* z, Py_ssize_t n, double m,
                             double a, double b) noexcept nogil
    int fc_pcg64_select(int level_cap) noexcept nogil
    int fc_pcg64_vector
    int fc_pcg64_ifma
    int fc_pcg64_ifma_allowed

cdef extern from "_ziggurat.h":
    void fc_zig_normal_fill(bitgen_t* bg, Py_ssize_t n, double* out) noexcept nogil
    int fc_zig_init() noexcept nogil
    int fc_zig_selfcheck() noexcept nogil
    int fc_zig_ok
    uint64_t fc_zig_ki[256]
    double fc_zig_wi[256]

fc_zig_init()   # numpy's ziggurat tables (a few thousand probe draws, then a 40,000-draw check)

# the vector draws where the CPU has them (the same bits), capped by FASTCASCADE_SIMD
# ("baseline": none, "avx2+fma" or "avx2": AVX2 at most)
fc_pcg64_select({"baseline": 1, "avx2+fma": 2, "avx2": 2}.get(
    os.environ.get("FASTCASCADE_SIMD", ""), 3))


def _select_simd(int level_cap):
    """Allow the AVX-512 variant of the uniform draws (level_cap >= 3), the AVX2 one
    (level_cap >= 2) or neither (1); returns the level in use (3, 2 or 1).
    _ops.set_simd_level calls it."""
    return fc_pcg64_select(level_cap)


def _simd_level():
    """3 when the uniform draws use the AVX-512 variant, 2 the AVX2 one, else 1."""
    return fc_pcg64_vector if fc_pcg64_vector else 1


def _pcg64_ifma(allow=None):
    """Whether the AVX-512 draws use their IFMA kit (52-bit limbs; the same draws). allow: True
    or False lets the selection choose it where the CPU has it, or not (tests compare both);
    None leaves it. The SIMD level in use is kept."""
    global fc_pcg64_ifma_allowed
    if allow is not None:
        fc_pcg64_ifma_allowed = 1 if allow else 0
        fc_pcg64_select(fc_pcg64_vector if fc_pcg64_vector else 1)
    return bool(fc_pcg64_ifma)


cdef uint64_t _MASK64 = 0xFFFFFFFFFFFFFFFF


# The streams open now: bitgen_t address -> the numpy Generator behind it (a Python-defined
# noise is called with the run's generator; see apply_python).
cdef dict _open_streams = {}


cdef int _pcg_from_generator(fc_pcg64_t* g, generator) except -1:
    state = generator.bit_generator.state
    s, inc = state["state"]["state"], state["state"]["inc"]
    fc_pcg64_set(g, <uint64_t>((s >> 64) & _MASK64), <uint64_t>(s & _MASK64),
                 <uint64_t>((inc >> 64) & _MASK64), <uint64_t>(inc & _MASK64),
                 1 if state["has_uint32"] else 0, <uint32_t>state["uinteger"])
    return 0


cdef int _pcg_to_generator(const fc_pcg64_t* g, generator) except -1:
    bit_generator = generator.bit_generator
    state = bit_generator.state
    state["state"]["state"] = (int(fc_pcg64_state_hi(g)) << 64) | int(fc_pcg64_state_lo(g))
    state["has_uint32"] = int(g.has_uint32)
    state["uinteger"] = int(g.uinteger)
    bit_generator.state = state
    return 0


cdef bitgen_t* stream_open(Stream* st, generator) except NULL:
    bit_generator = generator.bit_generator
    st.fast = False   # until the state is copied: stream_close writes back only then
    if type(bit_generator) is not np.random.PCG64:
        st.bitgen = <bitgen_t*>PyCapsule_GetPointer(bit_generator.capsule, "BitGenerator")
        _open_streams[<size_t>st.bitgen] = generator
        return st.bitgen
    _pcg_from_generator(&st.pcg, generator)
    fc_pcg64_bitgen(&st.own, &st.pcg)
    st.bitgen = &st.own
    st.fast = True
    _open_streams[<size_t>st.bitgen] = generator
    return st.bitgen


cdef int stream_close(Stream* st, generator) except -1:
    # (a stream that was never opened has no entry: its bitgen may be unset, and is not read
    # beyond its address)
    cdef size_t key = <size_t>st.bitgen
    if _open_streams.get(key) is generator:
        del _open_streams[key]
    if not st.fast:
        return 0
    _pcg_to_generator(&st.pcg, generator)
    return 0


cdef void uniform_fill(bitgen_t* bg, Py_ssize_t n, double* out) noexcept nogil:
    if fc_pcg64_is_ours(bg):
        fc_pcg64_fill_double(<fc_pcg64_t*>bg.state, out, n)
    else:
        random_standard_uniform_fill(bg, n, out)


cdef void normal_fill(bitgen_t* bg, Py_ssize_t n, double* out) noexcept nogil:
    fc_zig_normal_fill(bg, n, out)


def _normal_fill(generator, Py_ssize_t n):
    """n standard normals from the numpy Generator (PCG64) through the engine's stream (inlined
    ziggurat, _ziggurat.h): the draws of ``generator.standard_normal(n)``, and the generator
    left where those leave it. For tests."""
    cdef Stream st
    cdef double[::1] out = np.empty(n)
    cdef bitgen_t* bg = stream_open(&st, generator)
    try:
        if n > 0:
            normal_fill(bg, n, &out[0])
    finally:
        stream_close(&st, generator)
    return np.asarray(out)


def _ziggurat_ok():
    """Whether the inlined ziggurat is in use (its tables, read from numpy at import, passed
    their check; otherwise every normal is numpy's random_standard_normal_fill)."""
    return bool(fc_zig_ok)


def _ziggurat_tables():
    """Copies of the tables read from numpy: (ki, wi), uint64 and float64 arrays of 256."""
    ki = np.array([fc_zig_ki[i] for i in range(256)], dtype=np.uint64)
    wi = np.array([fc_zig_wi[i] for i in range(256)], dtype=np.float64)
    return ki, wi


def _ziggurat_check(const uint64_t[::1] ki, const double[::1] wi):
    """Whether the self-check at import passes with the tables (ki, wi) in place of the ones
    read from numpy (they are put back afterwards). For tests only: wrong tables must fail it.
    Not thread-safe: a run drawing normals on another thread meanwhile would use these tables."""
    cdef uint64_t saved_ki[256]
    cdef double saved_wi[256]
    cdef int i, ok
    if ki.shape[0] != 256 or wi.shape[0] != 256:
        raise ValueError(f"ki, wi: 256 entries each expected, got {ki.shape[0]}, {wi.shape[0]}")
    for i in range(256):
        saved_ki[i], saved_wi[i] = fc_zig_ki[i], fc_zig_wi[i]
        fc_zig_ki[i], fc_zig_wi[i] = ki[i], wi[i]
    try:
        ok = fc_zig_selfcheck()
    finally:
        for i in range(256):
            fc_zig_ki[i], fc_zig_wi[i] = saved_ki[i], saved_wi[i]
    return bool(ok)


cdef Perturbation perturbation_from_rows(const long long* irow, const double* rrow,
                                         const long long* times) noexcept nogil:
    # irow: op, backward, kind, granularity, timing, t_a, t_b, mode, aux, aux2, magnitude
    # rrow: p[0..3], prob, scale, alpha
    cdef Perturbation pert
    cdef int k
    pert.op = <int>irow[PCOL_OP]
    pert.backward = <int>irow[PCOL_BACKWARD]
    pert.kind = <int>irow[PCOL_KIND]
    pert.granularity = <int>irow[PCOL_GRANULARITY]
    pert.timing = <int>irow[PCOL_TIMING]
    pert.t_a = irow[PCOL_T_A]
    pert.t_b = irow[PCOL_T_B]
    pert.mode = <int>irow[PCOL_MODE]
    pert.aux = irow[PCOL_AUX]
    pert.aux2 = irow[PCOL_AUX2]
    pert.magnitude = <int>irow[PCOL_MAGNITUDE]
    for k in range(4):
        pert.p[k] = rrow[RCOL_P0 + k]
    pert.prob = rrow[RCOL_PROB]
    pert.scale = rrow[RCOL_SCALE]
    pert.alpha = rrow[RCOL_ALPHA]
    pert.times = times
    return pert


cdef bint perturbation_active(const Perturbation* pert, long long t, bitgen_t* bg) noexcept nogil:
    cdef long long lo, hi, mid
    if pert.timing == TIMING_ALWAYS:
        return True
    if pert.timing == TIMING_EVERY:
        return t >= pert.t_b and (t - pert.t_b) % pert.t_a == 0
    if pert.timing == TIMING_BERNOULLI:
        return random_standard_uniform(bg) < pert.prob
    if pert.timing == TIMING_WINDOW:
        return pert.t_a <= t < pert.t_b
    if pert.timing == TIMING_AT:
        # binary search in the sorted times[t_a:t_b]
        lo = pert.t_a
        hi = pert.t_b
        while lo < hi:
            mid = (lo + hi) // 2
            if pert.times[mid] < t:
                lo = mid + 1
            else:
                hi = mid
        return lo < pert.t_b and pert.times[lo] == t
    return False


# ---------------------------------------------------------------------------------------------
# Distributions

cdef bint standard_draws(const Perturbation* pert, bitgen_t* bg, double* out, Py_ssize_t n,
                         double* a, double* b) noexcept nogil:
    # The location-scale kinds: n standard draws u into out, and (a, b) such that the draws are
    # a + b u. False (nothing drawn) for the other kinds.
    if pert.kind == NOISE_UNIFORM:
        # low + (high - low) u, u uniform in [0, 1)
        uniform_fill(bg, n, out)
        a[0] = pert.p[0]
        b[0] = pert.p[1] - pert.p[0]
        return True
    if pert.kind == NOISE_GAUSSIAN:
        # mean + std u, u standard normal
        normal_fill(bg, n, out)
        a[0] = pert.p[0]
        b[0] = pert.p[1]
        return True
    return False


cdef void draw_distribution(const Perturbation* pert, bitgen_t* bg, double* out, Py_ssize_t n,
                            double m) noexcept nogil:
    # n draws times the magnitude m
    cdef Py_ssize_t j
    cdef double a = pert.p[0], b = pert.p[1]
    if standard_draws(pert, bg, out, n, &a, &b):
        for j in range(n):
            out[j] = m * (a + b * out[j])
    elif pert.kind == NOISE_LAPLACE:
        for j in range(n):
            out[j] = m * random_laplace(bg, a, b)
    elif pert.kind == NOISE_STUDENT_T:
        # scale * t_df
        for j in range(n):
            out[j] = m * (b * random_standard_t(bg, a))
    elif pert.kind == NOISE_RADEMACHER:
        # +-scale with probability 1/2 each
        uniform_fill(bg, n, out)
        for j in range(n):
            out[j] = m * (a if out[j] < 0.5 else -a)
    elif pert.kind == NOISE_CONSTANT:
        for j in range(n):
            out[j] = m * a


cdef inline bint uniform_added_in_pass(const Perturbation* pert, bitgen_t* bg) noexcept nogil:
    # additive uniform noise per element from one of our PCG64 streams: add_uniform_in_pass
    # draws it in the pass that adds it (no round trip through scratch)
    return pert.kind == NOISE_UNIFORM and pert.granularity == GRAN_ELEMENT \
        and pert.mode != MODE_RELATIVE and fc_pcg64_is_ours(bg)


cdef inline void add_uniform_in_pass(const Perturbation* pert, bitgen_t* bg, const double* x,
                                     double* z, Py_ssize_t n, double m) noexcept nogil:
    # z = x + m (low + (high - low) u): apply_distribution's draws and roundings
    fc_pcg64_add_affine(<fc_pcg64_t*>bg.state, x, z, n, m, pert.p[0], pert.p[1] - pert.p[0])


cdef void apply_distribution(const Perturbation* pert, bitgen_t* bg, double* z, Py_ssize_t B,
                             Py_ssize_t d, double* scratch, double m) noexcept nogil:
    cdef Py_ssize_t s, j, n
    cdef double a, b
    cdef bint relative = pert.mode == MODE_RELATIVE
    if uniform_added_in_pass(pert, bg):
        add_uniform_in_pass(pert, bg, z, z, B * d, m)
        return
    if pert.granularity == GRAN_ELEMENT:
        n = B * d
        if not relative and standard_draws(pert, bg, scratch, n, &a, &b):
            # the common case in one pass over z (the same operations as below)
            for j in range(n):
                z[j] = z[j] + m * (a + b * scratch[j])
            return
        draw_distribution(pert, bg, scratch, n, m)
        for j in range(n):
            z[j] = z[j] * (1.0 + scratch[j]) if relative else z[j] + scratch[j]
    elif pert.granularity == GRAN_SAMPLE:
        draw_distribution(pert, bg, scratch, B, m)
        for s in range(B):
            for j in range(d):
                if relative:
                    z[s * d + j] = z[s * d + j] * (1.0 + scratch[s])
                else:
                    z[s * d + j] = z[s * d + j] + scratch[s]
    elif pert.granularity == GRAN_STEP:
        draw_distribution(pert, bg, scratch, d, m)
        for s in range(B):
            for j in range(d):
                if relative:
                    z[s * d + j] = z[s * d + j] * (1.0 + scratch[j])
                else:
                    z[s * d + j] = z[s * d + j] + scratch[j]


# ---------------------------------------------------------------------------------------------
# Transforms

cdef inline double round_to_float(double x, int mant, int emin, double max_finite,
                                  bint overflow_nan, bint stochastic, double u) noexcept nogil:
    # Round x to the binary format with `mant` stored mantissa bits and smallest normal
    # exponent emin: the grid spacing near x is q = 2^(max(e(x), emin) - mant), so subnormals
    # share the spacing of the smallest binade. x / q is exact (q is a power of two).
    cdef int e
    cdef double q, r, f
    if not isfinite(x):
        return NAN if (overflow_nan or isnan(x)) else x
    if x == 0.0:
        return x
    frexp(x, &e)                      # |x| = m 2^e with m in [0.5, 1): leading bit 2^(e - 1)
    e = e - 1
    if e < emin:
        e = emin
    q = ldexp(1.0, e - mant)
    r = x / q
    if stochastic:
        # up with probability frac(r): E[result] = x
        f = floor(r)
        r = f + (1.0 if u < r - f else 0.0)
    else:
        r = nearbyint(r)              # ties to even in the default rounding mode
    r = r * q
    if fabs(r) > max_finite:
        return NAN if overflow_nan else copysign(INFINITY, x)
    return r


cdef inline double round_to_grid(double x, double step, bint stochastic, double u) noexcept nogil:
    cdef double r = x / step, f
    if stochastic:
        f = floor(r)
        r = f + (1.0 if u < r - f else 0.0)
    else:
        r = nearbyint(r)
    return r * step


cdef void top_k_rows(double* z, Py_ssize_t B, Py_ssize_t d, Py_ssize_t k,
                     double* flags) noexcept nogil:
    # keep the k largest |z_j| of each row (ties: the lower index), zero the rest
    cdef Py_ssize_t s, j, r, best
    cdef double* row
    if k >= d:
        return
    for s in range(B):
        row = z + s * d
        for j in range(d):
            flags[j] = 0.0
        for r in range(k):
            best = -1
            for j in range(d):
                if flags[j] == 0.0 and (best < 0 or fabs(row[j]) > fabs(row[best])):
                    best = j
            flags[best] = 1.0
        for j in range(d):
            if flags[j] == 0.0:
                row[j] = 0.0


cdef void rand_k_rows(bitgen_t* bg, double* z, Py_ssize_t B, Py_ssize_t d, Py_ssize_t k,
                      bint unbiased, double* scratch) noexcept nogil:
    # keep k coordinates of each row chosen uniformly without replacement (partial
    # Fisher-Yates from the front, k uniform draws per row), scaled by d / k when unbiased
    cdef Py_ssize_t s, j, r
    cdef double tmp, scale
    cdef double* row
    cdef double* idx = scratch
    cdef double* kept = scratch + d
    if k > d:
        k = d
    scale = (<double>d / <double>k) if unbiased else 1.0
    for s in range(B):
        row = z + s * d
        for j in range(d):
            idx[j] = <double>j
        for j in range(k):
            r = j + <Py_ssize_t>(random_standard_uniform(bg) * (d - j))
            if r >= d:
                r = d - 1
            tmp = idx[j]
            idx[j] = idx[r]
            idx[r] = tmp
        for j in range(k):
            kept[j] = row[<Py_ssize_t>idx[j]]
        for j in range(d):
            row[j] = 0.0
        for j in range(k):
            row[<Py_ssize_t>idx[j]] = scale * kept[j]


cdef void scaled_sign_rows(double* z, Py_ssize_t B, Py_ssize_t d) noexcept nogil:
    # z_j <- (||z||_1 / d) sign(z_j), row by row
    cdef Py_ssize_t s, j
    cdef double c
    cdef double* row
    for s in range(B):
        row = z + s * d
        c = 0.0
        for j in range(d):
            c = c + fabs(row[j])
        c = c / d
        for j in range(d):
            if row[j] > 0.0:
                row[j] = c
            elif row[j] < 0.0:
                row[j] = -c
            else:
                row[j] = c * row[j]  # 0 stays 0, NaN stays NaN


cdef void bit_flip(bitgen_t* bg, double* z, Py_ssize_t n, uint64_t mask, double p) noexcept nogil:
    # each masked bit of each float64 flips with probability p: per element, one uniform draw
    # per masked bit from the lowest bit up
    cdef Py_ssize_t j
    cdef int b
    cdef uint64_t bits, one = 1
    for j in range(n):
        memcpy(&bits, &z[j], 8)
        for b in range(64):
            if (mask >> b) & one:
                if random_standard_uniform(bg) < p:
                    bits = bits ^ (one << b)
        memcpy(&z[j], &bits, 8)


cdef void apply_transform(const Perturbation* pert, bitgen_t* bg, double* z, Py_ssize_t B,
                          Py_ssize_t d, double* scratch) noexcept nogil:
    cdef Py_ssize_t j, n = B * d
    cdef bint stochastic = pert.aux2 == ROUND_STOCHASTIC
    cdef double u = 0.0
    if pert.kind == NOISE_ROUND_FLOAT:
        # one uniform per element when stochastic
        for j in range(n):
            if stochastic:
                u = random_standard_uniform(bg)
            z[j] = round_to_float(z[j], <int>pert.aux, <int>pert.p[0], pert.p[1],
                                  pert.p[2] != 0.0, stochastic, u)
    elif pert.kind == NOISE_ROUND_FIXED:
        for j in range(n):
            if stochastic:
                u = random_standard_uniform(bg)
            z[j] = round_to_grid(z[j], pert.p[0], stochastic, u)
    elif pert.kind == NOISE_TOPK:
        top_k_rows(z, B, d, <Py_ssize_t>pert.aux, scratch)
    elif pert.kind == NOISE_RANDK:
        rand_k_rows(bg, z, B, d, <Py_ssize_t>pert.aux, pert.aux2 != 0, scratch)
    elif pert.kind == NOISE_SCALED_SIGN:
        scaled_sign_rows(z, B, d)
    elif pert.kind == NOISE_BITFLIP:
        bit_flip(bg, z, n, <uint64_t>pert.aux, pert.p[0])


# ---------------------------------------------------------------------------------------------
# Python-defined noises (NOISE_PYTHON): z + m_t delta with delta = noise.draw(generator, z), the
# object found by its token (aux) in a registry of weak references, called with the GIL on the
# run's own numpy Generator for the pass. The run's inlined PCG64 state is written to the
# generator before the call and read back after it, so the callback continues the very stream
# the built-in kernels draw from (and a NumPy engine's run draws the same numbers).

cdef dict _py_noises = {}      # token -> weakref.ref to the noise
cdef dict _py_stats = {}       # token -> [calls, seconds spent in them]
cdef list _py_errors = []      # exceptions raised inside callbacks, oldest first


def _forget(token, ref):
    if _py_noises.get(token) is ref:
        del _py_noises[token]


def register_python_noise(noise, token=None):
    """Register a Python-defined noise for the compiled kernels; returns its token (kept when
    given and free or already naming ``noise``). The registry holds a weak reference."""
    if token is not None:
        token = int(token)
        ref = _py_noises.get(token)
        if ref is not None and ref() is not None and ref() is not noise:
            token = None
    while token is None or not 0 < token < 2 ** 62:
        token = secrets.randbelow(2 ** 62 - 1) + 1
        if token in _py_noises:
            token = None
    _py_noises[token] = weakref.ref(noise, lambda r, t=token: _forget(t, r))
    return token


def python_noise(long long token):
    """The noise registered under ``token`` (LookupError when it is gone)."""
    ref = _py_noises.get(token)
    noise = None if ref is None else ref()
    if noise is None:
        raise LookupError(f"no Python-defined noise with token {token}")
    return noise


def take_callback_errors():
    """The exceptions raised inside noise callbacks since the last call (then cleared)."""
    errors = list(_py_errors)
    del _py_errors[:]
    return errors


def callback_stats(reset=False):
    """{token: (calls, seconds)} of the noise callbacks (the generator's state exchange
    included); ``reset`` clears the counters after reading them."""
    out = {k: (v[0], v[1]) for k, v in _py_stats.items()}
    if reset:
        _py_stats.clear()
    return out


cdef void apply_python(const Perturbation* pert, bitgen_t* bg, double* z, Py_ssize_t B,
                       Py_ssize_t d, double m) noexcept with gil:
    # z <- z + m draw(generator, z)
    cdef double start = time.perf_counter()
    cdef Py_ssize_t j, n = B * d
    cdef const double[:, ::1] dv
    cdef bint ours = fc_pcg64_is_ours(bg)
    cdef double[:, ::1] zv
    try:
        noise = python_noise(pert.aux)
        gen = _open_streams.get(<size_t>bg)
        if gen is None:
            raise RuntimeError("a Python-defined noise needs a stream opened by stream_open")
        if n == 0:
            return
        zv = <double[:B, :d]>z
        x = np.asarray(zv)
        x.flags.writeable = False
        if ours:
            _pcg_to_generator(<fc_pcg64_t*>bg.state, gen)
        try:
            delta = noise.draw(gen, x)
        finally:
            if ours:
                _pcg_from_generator(<fc_pcg64_t*>bg.state, gen)
        delta = np.ascontiguousarray(delta, dtype=np.float64)
        if delta.shape != (B, d):
            raise ValueError(f"{noise!r}.draw: returned shape {delta.shape}, expected {(B, d)}")
        dv = delta
        for j in range(n):
            z[j] = z[j] + m * (&dv[0, 0])[j]
        st = _py_stats.get(pert.aux)
        if st is None:
            _py_stats[pert.aux] = [1, time.perf_counter() - start]
        else:
            st[0] += 1
            st[1] += time.perf_counter() - start
    except BaseException as e:
        _py_errors.append(e)
        for j in range(n):
            z[j] = NAN


cdef inline double magnitude_at(const Perturbation* pert, long long t) noexcept nogil:
    # m_t (MagnitudeKind)
    if pert.magnitude == MAG_POWER:
        return pert.scale * pow(<double>(t + 1), -pert.alpha)
    return pert.scale


cdef void perturbation_apply(const Perturbation* pert, bitgen_t* bg, double* z,
                             Py_ssize_t B, Py_ssize_t d, double* scratch,
                             long long t) noexcept nogil:
    if pert.kind == NOISE_PYTHON:
        apply_python(pert, bg, z, B, d, magnitude_at(pert, t))
        return
    if pert.kind >= NOISE_FIRST_TRANSFORM:
        apply_transform(pert, bg, z, B, d, scratch)
        return
    apply_distribution(pert, bg, z, B, d, scratch, magnitude_at(pert, t))


cdef void perturbation_apply_to(const Perturbation* pert, bitgen_t* bg, const double* x,
                                double* z, Py_ssize_t B, Py_ssize_t d, double* scratch,
                                long long t) noexcept nogil:
    # z = x, then perturbation_apply on z: in one pass for additive uniform noise per element
    # (the same draws and roundings)
    if uniform_added_in_pass(pert, bg):
        add_uniform_in_pass(pert, bg, x, z, B * d, magnitude_at(pert, t))
        return
    memcpy(z, x, B * d * sizeof(double))
    perturbation_apply(pert, bg, z, B, d, scratch, t)


def apply(const long long[::1] irow, const double[::1] rrow, generator, double[:, ::1] z,
          long long t=0, const long long[::1] times=None, const double[:, ::1] source=None):
    """Apply one perturbation to the block z in place at iteration t, drawing from
    ``generator`` (the kernel behind the engine, for tests). Returns whether it was active.
    With ``source`` (z's shape): z = source perturbed (the engine's first perturbation at a
    forward site), z left as it is when inactive."""
    if irow.shape[0] != PERT_INT_FIELDS or rrow.shape[0] != PERT_REAL_FIELDS:
        raise ValueError("perturbation rows have the wrong length")
    cdef const long long* tp = &times[0] if times is not None and times.shape[0] > 0 else NULL
    if irow[PCOL_TIMING] == TIMING_AT and (
            irow[PCOL_T_A] < 0 or irow[PCOL_T_A] > irow[PCOL_T_B]
            or irow[PCOL_T_B] > (0 if times is None else times.shape[0])):
        raise ValueError("At timing rows must index into times")
    cdef Perturbation pert = perturbation_from_rows(&irow[0], &rrow[0], tp)
    cdef Py_ssize_t B = z.shape[0], d = z.shape[1]
    if source is not None and (source.shape[0] != B or source.shape[1] != d):
        raise ValueError(f"source: shape {(source.shape[0], source.shape[1])} is not z's, "
                         f"{(B, d)}")
    scratch = np.empty(2 * max(B * d, 1))
    cdef double[::1] sc = scratch
    cdef bint active = False
    cdef Stream st
    cdef bitgen_t* bg
    with generator.bit_generator.lock:
        bg = stream_open(&st, generator)
        try:
            with nogil:
                active = perturbation_active(&pert, t, bg)
                if active and B * d > 0 and source is not None:
                    perturbation_apply_to(&pert, bg, &source[0, 0], &z[0, 0], B, d, &sc[0], t)
                elif active and B * d > 0:
                    perturbation_apply(&pert, bg, &z[0, 0], B, d, &sc[0], t)
        finally:
            stream_close(&st, generator)
    return active
