# Vectorised exp / log1p / softplus / sigmoid / tanh and fixed-order reductions (the C code is
# in _fastmath.h, its algorithms and accuracy documented there). Every function works on n
# doubles; out may alias x. Call fastmath_init() once per module, at import.
cdef extern from "_fastmath.h" nogil:
    int fc_fastmath_init() noexcept
    int fc_fastmath_select(int level_cap) noexcept
    int fc_fastmath_level() noexcept
    void fc_exp(const double* x, double* out, Py_ssize_t n) noexcept
    void fc_log1p(const double* x, double* out, Py_ssize_t n) noexcept
    void fc_softplus(const double* x, double* out, Py_ssize_t n) noexcept
    void fc_sigmoid(const double* x, double* out, Py_ssize_t n) noexcept
    void fc_tanh(const double* x, double* out, Py_ssize_t n) noexcept
    # out = g * sigmoid(x)
    void fc_sigmoid_mul(const double* x, const double* g, double* out, Py_ssize_t n) noexcept
    # o = softplus(x), sg = sigmoid(x), bit-identical to fc_softplus and fc_sigmoid
    void fc_softplus_sigmoid(const double* x, double* o, double* sg, Py_ssize_t n) noexcept
    double fc_sum(const double* x, Py_ssize_t n) noexcept
    double fc_sumsq(const double* x, Py_ssize_t n) noexcept
    double fc_dot(const double* x, const double* y, Py_ssize_t n) noexcept
    # y += a x
    void fc_axpy(double a, const double* x, double* y, Py_ssize_t n) noexcept
    # y += a x with two roundings per term (no FMA): bit-identical to the plain C loop
    void fc_axpy_exact(double a, const double* x, double* y, Py_ssize_t n) noexcept
    # fc_axpy_exact, then returns fc_sumsq(y) (bit-identical to the two calls), in one pass
    double fc_axpy_exact_sumsq(double a, const double* x, double* y, Py_ssize_t n) noexcept
    # out[s] = -lab[s ldl] <z_s, w> for the rows of the row-major B x d matrix z (Margin)
    void fc_margin_forward(const double* z, Py_ssize_t B, Py_ssize_t d, const double* w,
                           const double* lab, Py_ssize_t ldl, double* out) noexcept
    # y += sum_s (-lab[s ldl] g[s]) z_s  (Margin's weight gradient)
    void fc_margin_wgrad(const double* z, Py_ssize_t B, Py_ssize_t d, const double* lab,
                         Py_ssize_t ldl, const double* g, double* y) noexcept
    # the same for g -> y and h -> y2 in one pass over z (the same bits as two calls)
    void fc_margin_wgrad2(const double* z, Py_ssize_t B, Py_ssize_t d, const double* lab,
                          Py_ssize_t ldl, const double* g, double* y, const double* h,
                          double* y2) noexcept
    # Linear's products, W row-major m x d: out = W z (each entry in fc_dot's order);
    # out = W^T g (each entry summed over the rows in order); y = g z^T (y += g z^T if accumulate)
    void fc_matvec(const double* W, Py_ssize_t m, Py_ssize_t d, const double* z,
                   double* out) noexcept
    void fc_matvec_t(const double* W, Py_ssize_t m, Py_ssize_t d, const double* g,
                     double* out) noexcept
    void fc_outer(const double* g, Py_ssize_t m, const double* z, Py_ssize_t d, double* y,
                  bint accumulate) noexcept
    # y += a (g z^T) with the roundings of fc_outer into u then fc_axpy_exact(a, u, y), without u;
    # returns the sum of squares of the new y
    double fc_outer_axpy_sumsq(double a, const double* g, Py_ssize_t m, const double* z,
                               Py_ssize_t d, double* y) noexcept
    # fc_outer_axpy_sumsq(a, g, m, z, d, y), then out = y x (fc_matvec) of the new y, the same
    # bits (one pass over y where the SIMD level has the kernel)
    double fc_outer_axpy_matvec_sumsq(double a, const double* g, Py_ssize_t m, const double* z,
                                      Py_ssize_t d, double* y, const double* x,
                                      double* out) noexcept
