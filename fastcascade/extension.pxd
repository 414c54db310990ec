# fastcascade's compiled extension point (public): an operator whose forward pass and
# vector-Jacobian products are C functions that the engine calls without the GIL.
#
# In a user's Cython module (built with include_dirs=[fastcascade.get_include()]):
#
#     from fastcascade.extension cimport fc_operator, FC_OPERATOR_ABI, operator_capsule
#
#     cdef void my_forward(const void* ctx, const double* w, const double* x, double* y,
#                          Py_ssize_t B, Py_ssize_t d_in, Py_ssize_t d_out) noexcept nogil:
#         ...
#     cdef fc_operator MY_OP
#     MY_OP.abi = FC_OPERATOR_ABI
#     MY_OP.ctx = NULL
#     MY_OP.forward = my_forward
#     MY_OP.vjp_input = my_vjp_input
#     MY_OP.vjp_weights = my_vjp_weights       # or NULL without weights
#
#     def capsule():
#         return operator_capsule(&MY_OP)
#
# and on the Python side a subclass of fastcascade.ops.CompiledOperator whose capsule() returns
# that capsule (it sets the widths and n_weights as any operator does). Contract of each
# function (the batch is B samples, row-major float64; see fastcascade_operator.h):
#
#   forward:     y  = f(x, w)                      y: B x d_out, written
#   vjp_input:   dx = J1(x_s)^T v_s per sample     dx: B x d_in, written
#   vjp_weights: dw += sum_s J2(x_s)^T v_s         dw: n_w, ADDED TO (the batch sum)
#
# (w: NULL without weights; y = forward(x), before any perturbation at the operator's site.)
# The functions run without the GIL, possibly on several threads at once: no Python objects,
# no failure, deterministic. The struct (and what ctx points at) must outlive every run: a
# module-level variable, as above, does.

from cpython.pycapsule cimport PyCapsule_New

cdef extern from "fastcascade_operator.h":
    enum:
        FC_OPERATOR_ABI
    const char* FC_OPERATOR_CAPSULE

    ctypedef void (*fc_forward_fn)(const void* ctx, const double* w, const double* x,
                                   double* y, Py_ssize_t B, Py_ssize_t d_in,
                                   Py_ssize_t d_out) noexcept nogil
    ctypedef void (*fc_vjp_fn)(const void* ctx, const double* w, const double* x,
                               const double* y, const double* v, double* out, Py_ssize_t B,
                               Py_ssize_t d_in, Py_ssize_t d_out) noexcept nogil

    ctypedef struct fc_operator:
        int abi
        const void* ctx
        fc_forward_fn forward
        fc_vjp_fn vjp_input
        fc_vjp_fn vjp_weights


cdef inline object operator_capsule(fc_operator* op):
    # the capsule fastcascade.ops.CompiledOperator.capsule() returns (op is not copied)
    return PyCapsule_New(<void*>op, FC_OPERATOR_CAPSULE, NULL)
