# cython: language_level=3
"""The compiled kernels of ScaledSoftsign, y = a x / (1 + |x|) per element (one weight a),
filled into a fastcascade ``fc_operator`` (fastcascade/extension.pxd) and handed over in a
capsule. The engine calls them without the GIL."""
from libc.math cimport fabs

from fastcascade.extension cimport fc_operator, FC_OPERATOR_ABI, operator_capsule


cdef void softsign_forward(const void* ctx, const double* w, const double* x, double* y,
                           Py_ssize_t B, Py_ssize_t d_in, Py_ssize_t d_out) noexcept nogil:
    cdef Py_ssize_t j
    cdef double a = w[0]
    for j in range(B * d_in):
        y[j] = a * x[j] / (1.0 + fabs(x[j]))


cdef void softsign_vjp_input(const void* ctx, const double* w, const double* x,
                             const double* y, const double* v, double* dx, Py_ssize_t B,
                             Py_ssize_t d_in, Py_ssize_t d_out) noexcept nogil:
    cdef Py_ssize_t j
    cdef double a = w[0], q
    for j in range(B * d_in):
        # y = a x / (1 + |x|): d/dx = a / (1 + |x|)^2
        q = 1.0 + fabs(x[j])
        dx[j] = v[j] * (a / (q * q))


cdef void softsign_vjp_weights(const void* ctx, const double* w, const double* x,
                               const double* y, const double* v, double* dw, Py_ssize_t B,
                               Py_ssize_t d_in, Py_ssize_t d_out) noexcept nogil:
    cdef Py_ssize_t j
    cdef double acc = 0.0
    for j in range(B * d_in):
        # y = a x / (1 + |x|): d/da = x / (1 + |x|), summed over the batch
        acc = acc + v[j] * (x[j] / (1.0 + fabs(x[j])))
    dw[0] = dw[0] + acc


cdef fc_operator SCALED_SOFTSIGN
SCALED_SOFTSIGN.abi = FC_OPERATOR_ABI
SCALED_SOFTSIGN.ctx = NULL
SCALED_SOFTSIGN.forward = softsign_forward
SCALED_SOFTSIGN.vjp_input = softsign_vjp_input
SCALED_SOFTSIGN.vjp_weights = softsign_vjp_weights


def scaled_softsign_capsule():
    """The capsule of ScaledSoftsign's fc_operator (for fastcascade.ops.CompiledOperator)."""
    return operator_capsule(&SCALED_SOFTSIGN)
