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

# op_vjp with g_w (when not NULL) overwritten by sum_s J2(z_s)^T g_s instead of accumulated into;
# when g_w_sumsq is not NULL, also g_w_sumsq[0] = sum of squares of g_w (in a fixed order)
cdef void op_vjp_set(const OpDesc* op, const double* w, const double* p,
                     const double* z, const double* out, const double* g,
                     const double* lab, Py_ssize_t ldl, Py_ssize_t B,
                     double* g_in, double* g_w, double* g_w_sumsq) noexcept nogil

# Deferred weight gradients (the engine's plain SGD step at one sample): for an operator with
# op_wgrad_deferrable(op, B), op_vjp_deferred computes what op_vjp_set would at one sample except
# g_w itself (g_in, and g_w's sum of squares, the same bits); op_sgd_step_deferred(op, w, z, g, a,
# x_next, out_next) then does w += a g_w, rounded as writing g_w and fc_axpy_exact would, and
# returns ||w||^2; with x_next (not NULL) it also writes out_next = op_forward of the one sample
# x_next at the new w (the same bits), in the same pass over w.
cdef bint op_wgrad_deferrable(const OpDesc* op, Py_ssize_t B) noexcept nogil
cdef void op_vjp_deferred(const OpDesc* op, const double* w, const double* p, const double* z,
                          const double* g, double* g_in, double* g_w_sumsq) noexcept nogil
cdef double op_sgd_step_deferred(const OpDesc* op, double* w, const double* z, const double* g,
                                 double a, const double* x_next, double* out_next) noexcept nogil

# Two weight gradients of op at the same input z and labels (no g_in): op_vjp_set(op, ..., g1,
# ..., NULL, g_w1, NULL) and the same with g2 -> g_w2, the same bits; op_wgrad_pairable(op): one
# pass over z does both (else two calls).
cdef bint op_wgrad_pairable(const OpDesc* op) noexcept nogil
cdef void op_wgrad_set_pair(const OpDesc* op, const double* w, const double* p, const double* z,
                            const double* out, const double* lab, Py_ssize_t ldl, Py_ssize_t B,
                            const double* g1, double* g_w1, const double* g2,
                            double* g_w2) noexcept nogil

cdef OpDesc opdesc_from_row(const long long* row) noexcept nogil
