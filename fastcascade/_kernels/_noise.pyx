# cython: language_level=3
"""Perturbation kernels: every draw goes through numpy's ``bitgen_t`` (no GIL needed).

The NumPy twin (``fastcascade.reference_engine.apply_perturbation``) consumes the same stream
in the same order: ``Generator.random`` for uniform and ``Generator.standard_normal`` for
Gaussian draws, row-major over the block.
"""
from cpython.pycapsule cimport PyCapsule_GetPointer
from numpy.random cimport bitgen_t
from numpy.random.c_distributions cimport (
    random_standard_uniform_fill, random_standard_normal_fill)

import numpy as np

# For the Python side: the codes and the table widths (one source of truth).
NOISE_CODES = {"uniform": NOISE_UNIFORM, "gaussian": NOISE_GAUSSIAN}
GRANULARITY_CODES = {"element": GRAN_ELEMENT, "sample": GRAN_SAMPLE, "step": GRAN_STEP}
TIMING_CODES = {"always": TIMING_ALWAYS, "every": TIMING_EVERY}
INT_FIELDS = PERT_INT_FIELDS
REAL_FIELDS = PERT_REAL_FIELDS


cdef Perturbation perturbation_from_rows(const long long* irow, const double* rrow) noexcept nogil:
    # irow: op, backward, kind, granularity, timing, period, offset;  rrow: p[0..3]
    cdef Perturbation pert
    cdef int k
    pert.op = <int>irow[0]
    pert.backward = <int>irow[1]
    pert.kind = <int>irow[2]
    pert.granularity = <int>irow[3]
    pert.timing = <int>irow[4]
    pert.period = irow[5]
    pert.offset = irow[6]
    for k in range(4):
        pert.p[k] = rrow[k]
    return pert


cdef bint perturbation_active(const Perturbation* pert, long long t) noexcept nogil:
    if pert.timing == TIMING_ALWAYS:
        return True
    if pert.timing == TIMING_EVERY:
        return t >= pert.offset and (t - pert.offset) % pert.period == 0
    return False


cdef inline void draw_additive(const Perturbation* pert, bitgen_t* bg, double* out,
                               Py_ssize_t n) noexcept nogil:
    # n additive draws: low + (high - low) u, or mean + std z
    cdef Py_ssize_t j
    cdef double a = pert.p[0], b = pert.p[1]
    if pert.kind == NOISE_UNIFORM:
        random_standard_uniform_fill(bg, n, out)
        b = b - a
        for j in range(n):
            out[j] = a + b * out[j]
    elif pert.kind == NOISE_GAUSSIAN:
        random_standard_normal_fill(bg, n, out)
        for j in range(n):
            out[j] = a + b * out[j]


cdef void perturbation_apply(const Perturbation* pert, bitgen_t* bg, double* z,
                             Py_ssize_t B, Py_ssize_t d, double* scratch) noexcept nogil:
    cdef Py_ssize_t s, j
    if pert.granularity == GRAN_ELEMENT:
        draw_additive(pert, bg, scratch, B * d)
        for j in range(B * d):
            z[j] = z[j] + scratch[j]
    elif pert.granularity == GRAN_SAMPLE:
        draw_additive(pert, bg, scratch, B)
        for s in range(B):
            for j in range(d):
                z[s * d + j] = z[s * d + j] + scratch[s]
    elif pert.granularity == GRAN_STEP:
        draw_additive(pert, bg, scratch, d)
        for s in range(B):
            for j in range(d):
                z[s * d + j] = z[s * d + j] + scratch[j]


def apply(const long long[::1] irow, const double[::1] rrow, generator, double[:, ::1] z):
    """Apply one perturbation to the block z in place, drawing from ``generator`` (for tests)."""
    cdef Perturbation pert = perturbation_from_rows(&irow[0], &rrow[0])
    capsule = generator.bit_generator.capsule
    cdef bitgen_t* bg = <bitgen_t*>PyCapsule_GetPointer(capsule, "BitGenerator")
    cdef Py_ssize_t B = z.shape[0], d = z.shape[1]
    scratch = np.empty(max(B * d, 1))
    cdef double[::1] sc = scratch
    if B * d == 0:
        return
    with generator.bit_generator.lock, nogil:
        perturbation_apply(&pert, bg, &z[0, 0], B, d, &sc[0])
