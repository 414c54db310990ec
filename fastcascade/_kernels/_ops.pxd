from fastcascade._kernels._types cimport OpDesc

# Forward pass of one operator on a batch of B samples (row-major B x d_in -> B x d_out).
# w: this operator's weights, p: its fixed parameters, lab: B label rows of width ldl.
cdef void op_forward(const OpDesc* op, const double* w, const double* p,
                     const double* z, double* out,
                     const double* lab, Py_ssize_t ldl, Py_ssize_t B) noexcept nogil

# Vector-Jacobian products at input z (out = f(z), the operator's own output at z):
#   g_in = J1(z)^T g           (B x d_in, overwritten; skipped when NULL)
#   g_w += sum_s J2(z_s)^T g_s (n_w, accumulated over the batch; skipped when NULL)
cdef void op_vjp(const OpDesc* op, const double* w, const double* p,
                 const double* z, const double* out, const double* g,
                 const double* lab, Py_ssize_t ldl, Py_ssize_t B,
                 double* g_in, double* g_w) noexcept nogil

# For an elementwise operator whose VJP is g_in = g * f'(z) (Softplus): out = f(z) and
# deriv = f'(z) (B x d_in each) in one pass, bit-identical to op_forward and to the factor op_vjp
# computes. Returns False, writing nothing, for the other operators.
cdef bint op_forward_with_derivative(const OpDesc* op, const double* z, double* out,
                                     double* deriv, Py_ssize_t B) noexcept nogil

cdef OpDesc opdesc_from_row(const long long* row) noexcept nogil
