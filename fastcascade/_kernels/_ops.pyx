# cython: language_level=3
"""Operator kernels: forward pass and vector-Jacobian products on a batch.

Every operator is a pair of ``noexcept nogil`` branches on raw pointers, dispatched on the
operator code. Each adjoint line names the forward statement it differentiates.

Speed (benchmarks/RESULTS.md): the elementwise transcendental operators call the vectorised
exp/log1p/sigmoid/tanh of ``_fastmath.h`` (a few ulp from libm, NaN and Inf kept); dot products
and axpys go through its fixed-order vector reductions; Linear (and FixedLinear) run per sample on
its register-blocked W z, W^T g and g z^T kernels, and switch to BLAS ``dgemm``
(``scipy.linalg.cython_blas``, nogil) once a batch is wide enough to pay for the call
(``blas_threshold``). ``op_vjp_set`` writes an operator's weight gradient instead of adding to it
(the engine's backward pass needs no zeroing pass), and at one sample the engine's plain SGD step
can apply Linear's rank-1 weight gradient from its factors (``op_vjp_deferred``,
``op_sgd_step_deferred``).
"""
from libc.math cimport exp, log1p, fabs, tanh, NAN
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport dgemm
cimport numpy as cnp

import secrets
import time
import weakref

import numpy as np

cnp.import_array()

from fastcascade._kernels._fastmath cimport (
    fc_fastmath_init, fc_fastmath_select, fc_fastmath_level, fc_exp, fc_log1p, fc_softplus,
    fc_sigmoid, fc_tanh, fc_sigmoid_mul, fc_softplus_sigmoid, fc_sum, fc_sumsq, fc_dot,
    fc_margin_forward, fc_margin_wgrad, fc_margin_wgrad2, fc_matvec, fc_matvec_t, fc_outer,
    fc_outer_axpy_sumsq, fc_outer_axpy_matvec_sumsq, fc_axpy_exact_sumsq)

from fastcascade._kernels._types cimport (
    OpDesc, OP_IDENTITY, OP_MARGIN, OP_SOFTPLUS, OP_LINEAR, OP_SIGMOID, OP_TANH, OP_RELU,
    OP_LOGISTIC_LOSS, OP_SQUARED_ERROR, OP_SOFTMAX_XENT, OP_FIXED_LINEAR, OP_DIAG_LINEAR,
    OP_INNER_SQUARE, OP_LQ_STEP, OP_LQ_TERMINAL, OP_PYTHON, OP_COMPILED, OP_TABLE_WIDTH,
    OPCOL_CODE, OPCOL_FLAG, OPCOL_D_IN, OPCOL_D_OUT, OPCOL_N_W, OPCOL_W_OFF, OPCOL_P_OFF,
)
from fastcascade.extension cimport fc_operator, FC_OPERATOR_ABI, FC_OPERATOR_CAPSULE
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_IsValid

OPDESC_FIELDS = OP_TABLE_WIDTH
# the operator table's columns by name (Operator.plan_row fills them by these)
OP_COLUMNS = {"code": OPCOL_CODE, "flag": OPCOL_FLAG, "d_in": OPCOL_D_IN, "d_out": OPCOL_D_OUT,
              "n_weights": OPCOL_N_W, "w_off": OPCOL_W_OFF, "p_off": OPCOL_P_OFF}

# The operator codes, for the Python side (one source of truth: the enum in _types.pxd).
OP_CODES = {
    "identity": OP_IDENTITY, "margin": OP_MARGIN, "softplus": OP_SOFTPLUS, "linear": OP_LINEAR,
    "sigmoid": OP_SIGMOID, "tanh": OP_TANH, "relu": OP_RELU, "logistic_loss": OP_LOGISTIC_LOSS,
    "squared_error": OP_SQUARED_ERROR, "softmax_xent": OP_SOFTMAX_XENT,
    "fixed_linear": OP_FIXED_LINEAR, "diag_linear": OP_DIAG_LINEAR, "inner_square": OP_INNER_SQUARE,
    "lq_step": OP_LQ_STEP, "lq_terminal": OP_LQ_TERMINAL, "python": OP_PYTHON,
    "compiled": OP_COMPILED,
}


SIMD_LEVELS = {0: "scalar", 1: "baseline", 2: "avx2+fma", 3: "avx512"}
fc_fastmath_init()

# Linear / FixedLinear use BLAS dgemm when the batch has at least 2 samples and
# B * d_in * d_out >= blas_threshold multiply-adds (below it, the call overhead and the per-call
# packing of OpenBLAS cost more than the vector loops; benchmarks/bench_engine.py's "widths" case
# measures the crossover). 0 forces BLAS for every batch of 2 or more, for tests (except where
# d_in or d_out is 1: matrix-vector and rank-1 products always take the loops, see use_blas).
cdef Py_ssize_t blas_threshold = 8192


cdef inline bint use_blas(Py_ssize_t B, Py_ssize_t din, Py_ssize_t dout) noexcept nogil:
    # (not for a single input or output: those products are matrix-vector or rank-1, where dgemm
    # only adds its packing and a zeroing pass over a B x d output)
    return B >= 2 and din >= 2 and dout >= 2 and B * din * dout >= blas_threshold


def set_blas_threshold(Py_ssize_t n):
    """Set the BLAS threshold (multiply-adds per Linear call); returns the previous value."""
    global blas_threshold
    if n < 0:
        raise ValueError(f"threshold: expected a non-negative integer, given {n}")
    old = blas_threshold
    blas_threshold = n
    return old


def get_blas_threshold():
    """The BLAS threshold in use (multiply-adds per Linear call)."""
    return blas_threshold


def uses_blas(const long long[:, ::1] op_table, Py_ssize_t B):
    """Whether a Linear or FixedLinear operator of the plan calls BLAS on a batch of B samples."""
    cdef Py_ssize_t i
    for i in range(op_table.shape[0]):
        if op_table[i, 0] in (OP_LINEAR, OP_FIXED_LINEAR) and use_blas(B, op_table[i, 2],
                                                                       op_table[i, 3]):
            return True
    return False


def simd_level():
    """The vector code in use: "avx512", "avx2+fma", "baseline" (SSE2) or "scalar"."""
    return SIMD_LEVELS[fc_fastmath_level()]


def set_simd_level(level):
    """Select the vector variant ("avx512" or "avx2+fma" when the CPU has it, or "baseline") of
    every compiled kernel (the operators' here, the engine's reductions and updates, the
    uniform draws), for tests and benchmarks; returns the level now in use (the best available
    at or below the one asked).

    Raises
    ------
    fastcascade.errors.ParameterError
        For a level not in ("avx512", "avx2+fma", "baseline").
    """
    from fastcascade._kernels import _engine, _noise   # (the engine cimports this module)
    from fastcascade.errors import ParameterError
    caps = {"avx512": 3, "avx2+fma": 2, "baseline": 1}
    if not isinstance(level, str) or level not in caps:
        raise ParameterError("level", level, "'avx512', 'avx2+fma' or 'baseline'")
    cap = caps[level]
    fc_fastmath_select(cap)
    _engine._select_simd(cap)
    _noise._select_simd(cap)
    return simd_level()


def fastmath(str name, const double[::1] x):
    """The vectorised elementwise function ``name`` (exp, log1p, softplus, sigmoid, tanh) on x,
    as the kernels use it (for tests)."""
    out = np.empty(x.shape[0], dtype=np.float64)
    cdef double[::1] o = out
    cdef Py_ssize_t n = x.shape[0]
    if n == 0:
        return out
    if name == "exp":
        fc_exp(&x[0], &o[0], n)
    elif name == "log1p":
        fc_log1p(&x[0], &o[0], n)
    elif name == "softplus":
        fc_softplus(&x[0], &o[0], n)
    elif name == "sigmoid":
        fc_sigmoid(&x[0], &o[0], n)
    elif name == "tanh":
        fc_tanh(&x[0], &o[0], n)
    else:
        raise ValueError(f"name: expected exp, log1p, softplus, sigmoid or tanh, given {name!r}")
    return out


def fastmath_softplus_sigmoid(const double[::1] x):
    """(softplus(x), sigmoid(x)) from the fused kernel fc_softplus_sigmoid (for tests)."""
    cdef Py_ssize_t n = x.shape[0]
    out, sig = np.empty(n), np.empty(n)
    cdef double[::1] o = out, sg = sig
    if n > 0:
        fc_softplus_sigmoid(&x[0], &o[0], &sg[0], n)
    return out, sig


def fastmath_sigmoid_mul(const double[::1] x, const double[::1] g):
    """g * sigmoid(x) from the kernel fc_sigmoid_mul (Softplus's VJP; for tests)."""
    cdef Py_ssize_t n = x.shape[0]
    if g.shape[0] != n:
        raise ValueError(f"g: length {g.shape[0]}, expected x's, {n}")
    out = np.empty(n)
    cdef double[::1] o = out
    if n > 0:
        fc_sigmoid_mul(&x[0], &g[0], &o[0], n)
    return out


def fastmath_outer_axpy_sumsq(double a, const double[::1] g, const double[::1] z,
                              double[::1] y):
    """y += a (g z^T) in place (y: the row-major len(g) x len(z) matrix, flattened) and the sum
    of squares of the new y, from the kernel fc_outer_axpy_sumsq (plain SGD's rank-1 step at one
    sample; for tests)."""
    cdef Py_ssize_t m = g.shape[0], d = z.shape[0]
    if y.shape[0] != m * d:
        raise ValueError(f"y: length {y.shape[0]}, expected len(g) * len(z) = {m * d}")
    if m == 0 or d == 0:
        return 0.0
    return fc_outer_axpy_sumsq(a, &g[0], m, &z[0], d, &y[0])


def fastmath_outer_axpy_matvec_sumsq(double a, const double[::1] g, const double[::1] z,
                                     double[::1] y, const double[::1] x):
    """fastmath_outer_axpy_sumsq(a, g, z, y), then y x of the new y (y as a len(g) x len(z)
    matrix), from the kernel fc_outer_axpy_matvec_sumsq; returns (sum of squares, y x). For
    tests: the same bits as the two kernels it stands for."""
    cdef Py_ssize_t m = g.shape[0], d = z.shape[0]
    if y.shape[0] != m * d:
        raise ValueError(f"y: length {y.shape[0]}, expected len(g) * len(z) = {m * d}")
    if x.shape[0] != d:
        raise ValueError(f"x: length {x.shape[0]}, expected len(z) = {d}")
    out = np.zeros(m)
    cdef double[::1] o = out
    if m == 0 or d == 0:
        return 0.0, out
    return fc_outer_axpy_matvec_sumsq(a, &g[0], m, &z[0], d, &y[0], &x[0], &o[0]), out


def fastmath_matvec_t(const double[:, ::1] W, const double[::1] g):
    """W^T g (W: m x d, row-major) from the kernel fc_matvec_t (Linear's input gradient at one
    sample; for tests)."""
    cdef Py_ssize_t m = W.shape[0], d = W.shape[1]
    if g.shape[0] != m:
        raise ValueError(f"g: length {g.shape[0]}, expected W's rows, {m}")
    out = np.zeros(d)
    cdef double[::1] o = out
    if m > 0 and d > 0:
        fc_matvec_t(&W[0, 0], m, d, &g[0], &o[0])
    return out


def fastmath_margin_wgrad(const double[:, ::1] z, const double[::1] lab, const double[::1] g,
                          h=None):
    """Margin's weight gradient sum_s -lab_s g_s z_s (a B x d matrix z; ldl 1), from the kernel
    fc_margin_wgrad, or with h (another B-vector) the pair (for g, for h) from fc_margin_wgrad2
    (for tests)."""
    cdef Py_ssize_t B = z.shape[0], d = z.shape[1]
    cdef const double[::1] hv
    if lab.shape[0] != B or g.shape[0] != B:
        raise ValueError(f"lab, g: lengths {lab.shape[0]}, {g.shape[0]}, expected z's rows, {B}")
    y, y2 = np.zeros(d), np.zeros(d)
    cdef double[::1] yv = y, y2v = y2
    if B == 0 or d == 0:
        return y if h is None else (y, y2)
    if h is None:
        fc_margin_wgrad(&z[0, 0], B, d, &lab[0], 1, &g[0], &yv[0])
        return y
    hv = np.ascontiguousarray(h, dtype=np.float64)
    if hv.shape[0] != B:
        raise ValueError(f"h: length {hv.shape[0]}, expected z's rows, {B}")
    fc_margin_wgrad2(&z[0, 0], B, d, &lab[0], 1, &g[0], &yv[0], &hv[0], &y2v[0])
    return y, y2


def fastmath_reduce(str name, const double[::1] x, const double[::1] y):
    """fc_sum(x), fc_sumsq(x) or fc_dot(x, y) (for tests)."""
    if x.shape[0] != y.shape[0]:
        raise ValueError("x and y must have the same length")
    if x.shape[0] == 0:
        return 0.0
    if name == "sum":
        return fc_sum(&x[0], x.shape[0])
    if name == "sumsq":
        return fc_sumsq(&x[0], x.shape[0])
    if name == "dot":
        return fc_dot(&x[0], &y[0], x.shape[0])
    raise ValueError(f"name: expected sum, sumsq or dot, given {name!r}")


cdef inline void blas_gemm(char ta, char tb, Py_ssize_t m, Py_ssize_t n, Py_ssize_t k,
                           const double* a, Py_ssize_t lda, const double* b, Py_ssize_t ldb,
                           double beta, double* c, Py_ssize_t ldc) noexcept nogil:
    # column-major C = op(A) op(B) + beta C (row-major arrays seen as their transposes)
    cdef int mi = <int>m, ni = <int>n, ki = <int>k
    cdef int la = <int>lda, lb = <int>ldb, lc = <int>ldc
    cdef double one = 1.0
    dgemm(&ta, &tb, &mi, &ni, &ki, &one, <double*>a, &la, <double*>b, &lb, &beta, c, &lc)


# -- linear-quadratic control ------------------------------------------------------------------
# State [x; c] with x in R^n and the running cost c; weights K (m x n, row-major), the linear
# policy u = K x; params A (n x n), B (n x m), Q (n x n), R (m x m), concatenated.

cdef inline double lq_control(const double* K, const double* x, Py_ssize_t k,
                              Py_ssize_t n) noexcept nogil:
    # u_k = (K x)_k
    cdef Py_ssize_t j
    cdef double acc = 0.0
    for j in range(n):
        acc = acc + K[k * n + j] * x[j]
    return acc


ctypedef struct LQMatrices:
    const double* A
    const double* B
    const double* Q
    const double* R


cdef inline LQMatrices lq_matrices(const double* p, Py_ssize_t n, Py_ssize_t m) noexcept nogil:
    # the fixed parameters of an LQ step, concatenated A (n x n), B (n x m), Q (n x n), R (m x m)
    cdef LQMatrices mat
    mat.A = p
    mat.B = p + n * n
    mat.Q = mat.B + n * m
    mat.R = mat.Q + n * n
    return mat


cdef void lq_step_forward(const OpDesc* op, const double* K, const double* p, const double* z,
                          double* out, Py_ssize_t B) noexcept nogil:
    cdef Py_ssize_t s, i, j, k, l, n = op.d_in - 1, m = op.flag
    cdef LQMatrices mat = lq_matrices(p, n, m)
    cdef const double* A = mat.A
    cdef const double* Bm = mat.B
    cdef const double* Q = mat.Q
    cdef const double* R = mat.R
    cdef const double* x
    cdef double* o
    cdef double cost, uk
    for s in range(B):
        x = z + s * (n + 1)
        o = out + s * (n + 1)
        # x' = A x + B u
        for i in range(n):
            o[i] = 0.0
            for j in range(n):
                o[i] = o[i] + A[i * n + j] * x[j]
        # c' = c + x'Qx + u'Ru
        cost = x[n]
        for i in range(n):
            for j in range(n):
                cost = cost + x[i] * Q[i * n + j] * x[j]
        for k in range(m):
            uk = lq_control(K, x, k, n)
            for i in range(n):
                o[i] = o[i] + Bm[i * m + k] * uk
            for l in range(m):
                cost = cost + uk * R[k * m + l] * lq_control(K, x, l, n)
        o[n] = cost


cdef void lq_step_vjp(const OpDesc* op, const double* K, const double* p, const double* z,
                      const double* g, Py_ssize_t B, double* g_in, double* g_K) noexcept nogil:
    cdef Py_ssize_t s, i, j, k, l, n = op.d_in - 1, m = op.flag
    cdef LQMatrices mat = lq_matrices(p, n, m)
    cdef const double* A = mat.A
    cdef const double* Bm = mat.B
    cdef const double* Q = mat.Q
    cdef const double* R = mat.R
    cdef const double* x
    cdef const double* gx
    cdef double gc, qk, acc
    for s in range(B):
        x = z + s * (n + 1)
        gx = g + s * (n + 1)
        gc = gx[n]
        if g_in != NULL:
            for j in range(n):
                # x' = A x: A^T g_x;  c' += x'Qx: g_c (Q + Q^T) x
                acc = 0.0
                for i in range(n):
                    acc = acc + A[i * n + j] * gx[i] + gc * (Q[i * n + j] + Q[j * n + i]) * x[i]
                g_in[s * (n + 1) + j] = acc
            # c' = c + ...: d/dc = 1
            g_in[s * (n + 1) + n] = gc
        for k in range(m):
            # with u = K x: q_k = (B^T g_x)_k + g_c ((R + R^T) u)_k is the cotangent of u_k
            qk = 0.0
            for i in range(n):
                qk = qk + Bm[i * m + k] * gx[i]
            for l in range(m):
                qk = qk + gc * (R[k * m + l] + R[l * m + k]) * lq_control(K, x, l, n)
            for j in range(n):
                # u = K x: d/dx = K^T q and d/dK = q x^T
                if g_in != NULL:
                    g_in[s * (n + 1) + j] = g_in[s * (n + 1) + j] + K[k * n + j] * qk
                if g_K != NULL:
                    g_K[k * n + j] = g_K[k * n + j] + qk * x[j]


cdef void lq_terminal(const OpDesc* op, const double* Qf, const double* z, double* out,
                      const double* g, double* g_in, Py_ssize_t B) noexcept nogil:
    # out = c + x'Qf x (forward when out != NULL); g_in = g [(Qf + Qf^T) x; 1] (when g_in != NULL)
    cdef Py_ssize_t s, i, j, n = op.d_in - 1
    cdef const double* x
    cdef double acc
    for s in range(B):
        x = z + s * (n + 1)
        if out != NULL:
            acc = x[n]
            for i in range(n):
                for j in range(n):
                    acc = acc + x[i] * Qf[i * n + j] * x[j]
            out[s] = acc
        if g_in != NULL:
            for j in range(n):
                acc = 0.0
                for i in range(n):
                    acc = acc + (Qf[i * n + j] + Qf[j * n + i]) * x[i]
                g_in[s * (n + 1) + j] = g[s] * acc
            g_in[s * (n + 1) + n] = g[s]


# -- Linear and FixedLinear: out_s = W z_s (+ b), W d_out x d_in row-major (the weights for
# LINEAR, followed by b when flag; the fixed parameters for FIXED_LINEAR) -----------------------

cdef void linear_forward(const OpDesc* op, const double* w, const double* p, const double* z,
                         double* out, Py_ssize_t B) noexcept nogil:
    cdef Py_ssize_t s, o, din = op.d_in, dout = op.d_out
    cdef const double* W = w if op.code == OP_LINEAR else p
    if use_blas(B, din, dout):
        # out^T (dout x B) = W Z^T (+ out^T, holding b), column-major: W is (din x dout)^T, Z^T
        # is (din x B). With a bias, out starts as b in every row and the gemm adds W z_s to it
        # (beta = 1: no zeroing pass over out, no second pass to add b)
        if op.flag:
            for s in range(B):
                memcpy(out + s * dout, w + dout * din, dout * sizeof(double))
        blas_gemm(b'T', b'N', dout, B, din, W, din, z, din, 1.0 if op.flag else 0.0, out, dout)
        return
    for s in range(B):
        fc_matvec(W, dout, din, z + s * din, out + s * dout)
    if op.flag:
        for s in range(B):
            for o in range(dout):
                out[s * dout + o] = out[s * dout + o] + w[dout * din + o]


cdef inline double linear_wgrad_sumsq_1(const OpDesc* op, const double* z,
                                        const double* g) noexcept nogil:
    # ||dW||^2 + ||db||^2 of one sample's gradient dW = g z^T, db = g, without forming dW:
    # ||g z^T||_F^2 = ||g||^2 ||z||^2, the same number up to rounding. Where ||g||^2 or ||z||^2
    # alone leaves the double range (entries beyond about 1e+-154), the product is non-finite
    # (then safe_norm's rescaled scan of the written gradient decides, as for an overflowing
    # sum) or 0 instead of a tiny norm (harmless for the max_norm and clip_norm tests)
    cdef double gg = fc_sumsq(g, op.d_out)
    return gg * fc_sumsq(z, op.d_in) + (gg if op.flag else 0.0)


cdef void linear_vjp(const OpDesc* op, const double* w, const double* p, const double* z,
                     const double* g, Py_ssize_t B, double* g_in, double* g_w,
                     bint accumulate, double* g_w_sumsq) noexcept nogil:
    # g_in = J1^T g (when not NULL); g_w (+)= sum_s J2(z_s)^T g_s (LINEAR only, when not NULL):
    # accumulated into when `accumulate`, else overwritten; g_w_sumsq (when not NULL) = the sum
    # of squares of the new g_w (0 without g_w; at one sample, written over, the closed form)
    cdef Py_ssize_t s, o, din = op.d_in, dout = op.d_out
    cdef const double* W = w if op.code == OP_LINEAR else p
    cdef double* gb
    if op.code != OP_LINEAR:
        g_w = NULL
    if use_blas(B, din, dout):
        # out_s = W z_s + b: d/dz_s = W^T g_s; all samples: G_in^T (din x B) = W^T G^T
        if g_in != NULL:
            blas_gemm(b'N', b'N', din, B, dout, W, din, g, dout, 0.0, g_in, din)
        # out_s = W z_s + b: dW (+)= sum_s g_s z_s^T, i.e. dW^T (din x dout) (+)= Z^T G
        if g_w != NULL:
            blas_gemm(b'N', b'T', din, dout, B, z, din, g, dout, 1.0 if accumulate else 0.0,
                      g_w, din)
    else:
        for s in range(B):
            # out_s = W z_s + b: d/dz_s = W^T g_s
            if g_in != NULL:
                fc_matvec_t(W, dout, din, g + s * dout, g_in + s * din)
            # out_s = W z_s + b: dW (+)= g_s z_s^T (the first sample sets it unless accumulating)
            if g_w != NULL:
                fc_outer(g + s * dout, dout, z + s * din, din, g_w, accumulate or s > 0)
    # out_s = W z_s + b: db (+)= sum_s g_s
    if g_w != NULL and op.flag:
        gb = g_w + dout * din
        for s in range(B):
            for o in range(dout):
                if accumulate or s > 0:
                    gb[o] = gb[o] + g[s * dout + o]
                else:
                    gb[o] = g[o]
    if g_w_sumsq != NULL:
        if g_w == NULL:
            g_w_sumsq[0] = 0.0
        elif B == 1 and not accumulate:
            g_w_sumsq[0] = linear_wgrad_sumsq_1(op, z, g)
        else:
            g_w_sumsq[0] = fc_sumsq(g_w, op.n_w)


cdef void op_vjp_set(const OpDesc* op, const double* w, const double* p,
                     const double* z, const double* out, const double* g,
                     const double* lab, Py_ssize_t ldl, Py_ssize_t B,
                     double* g_in, double* g_w, double* g_w_sumsq) noexcept nogil:
    # op_vjp with g_w overwritten (no zeroing pass where the operator can write it directly)
    if op.code == OP_LINEAR or op.code == OP_FIXED_LINEAR:
        linear_vjp(op, w, p, z, g, B, g_in, g_w, False, g_w_sumsq)
        return
    if g_w != NULL:
        memset(g_w, 0, op.n_w * sizeof(double))
    op_vjp(op, w, p, z, out, g, lab, ldl, B, g_in, g_w)
    if g_w_sumsq != NULL:
        g_w_sumsq[0] = fc_sumsq(g_w, op.n_w) if g_w != NULL else 0.0


# -- deferred weight gradients: at one sample, Linear's dW is the rank-1 g z^T (and db = g); the
# engine's plain SGD step can apply it from g and z without writing the d_out x d_in matrix -----

cdef bint op_wgrad_deferrable(const OpDesc* op, Py_ssize_t B) noexcept nogil:
    return op.code == OP_LINEAR and B == 1


cdef void op_vjp_deferred(const OpDesc* op, const double* w, const double* p, const double* z,
                          const double* g, double* g_in, double* g_w_sumsq) noexcept nogil:
    # op_vjp_set at one sample without writing g_w: g_in, and the sum of squares op_vjp_set
    # gives for g_w (the same bits)
    linear_vjp(op, w, p, z, g, 1, g_in, NULL, False, NULL)
    g_w_sumsq[0] = linear_wgrad_sumsq_1(op, z, g)


cdef double op_sgd_step_deferred(const OpDesc* op, double* w, const double* z, const double* g,
                                 double a, const double* x_next, double* out_next) noexcept nogil:
    # w += a dW for the deferred dW of op_vjp_deferred(z, g), rounded as writing dW and then
    # fc_axpy_exact(a, dW, w) would; returns the sum of squares of the new w. x_next: also
    # out_next = W x_next + b at the new w, as linear_forward computes it at one sample
    cdef Py_ssize_t o, din = op.d_in, dout = op.d_out
    cdef double sq
    # out = W z + b: dW = g z^T, db = g
    if x_next == NULL:
        sq = fc_outer_axpy_sumsq(a, g, dout, z, din, w)
    else:
        sq = fc_outer_axpy_matvec_sumsq(a, g, dout, z, din, w, x_next, out_next)
    if op.flag:
        sq = sq + fc_axpy_exact_sumsq(a, g, w + dout * din, dout)
        if x_next != NULL:
            for o in range(dout):
                out_next[o] = out_next[o] + w[dout * din + o]
    return sq


cdef bint op_wgrad_pairable(const OpDesc* op) noexcept nogil:
    return op.code == OP_MARGIN


cdef void op_wgrad_set_pair(const OpDesc* op, const double* w, const double* p, const double* z,
                            const double* out, const double* lab, Py_ssize_t ldl, Py_ssize_t B,
                            const double* g1, double* g_w1, const double* g2,
                            double* g_w2) noexcept nogil:
    # Margin: fc_margin_wgrad's accumulator chains bound it (latency); two gradients in one loop
    # keep twice as many in flight
    if op.code == OP_MARGIN:
        memset(g_w1, 0, op.n_w * sizeof(double))
        memset(g_w2, 0, op.n_w * sizeof(double))
        fc_margin_wgrad2(z, B, op.d_in, lab, ldl, g1, g_w1, g2, g_w2)
        return
    op_vjp_set(op, w, p, z, out, g1, lab, ldl, B, NULL, g_w1, NULL)
    op_vjp_set(op, w, p, z, out, g2, lab, ldl, B, NULL, g_w2, NULL)


cdef OpDesc opdesc_from_row(const long long* row) noexcept nogil:
    cdef OpDesc op
    op.code = <int>row[OPCOL_CODE]
    op.flag = <int>row[OPCOL_FLAG]
    op.d_in = <Py_ssize_t>row[OPCOL_D_IN]
    op.d_out = <Py_ssize_t>row[OPCOL_D_OUT]
    op.n_w = <Py_ssize_t>row[OPCOL_N_W]
    op.w_off = <Py_ssize_t>row[OPCOL_W_OFF]
    op.p_off = <Py_ssize_t>row[OPCOL_P_OFF]
    return op


cdef void op_forward(const OpDesc* op, const double* w, const double* p,
                     const double* z, double* out,
                     const double* lab, Py_ssize_t ldl, Py_ssize_t B) noexcept nogil:
    cdef Py_ssize_t s, j, o, k
    cdef Py_ssize_t din = op.d_in, dout = op.d_out
    cdef Py_ssize_t n = B * din
    cdef double acc, m, t
    cdef const double* zs
    cdef int c

    if op.code == OP_IDENTITY:
        for j in range(n):
            out[j] = z[j]
    elif op.code == OP_SOFTPLUS:
        fc_softplus(z, out, n)
    elif op.code == OP_SIGMOID:
        fc_sigmoid(z, out, n)
    elif op.code == OP_TANH:
        fc_tanh(z, out, n)
    elif op.code == OP_RELU:
        for j in range(n):
            out[j] = z[j] if z[j] > 0.0 else 0.0
    elif op.code == OP_MARGIN:
        # out_s = -y_s <z_s, w>
        fc_margin_forward(z, B, din, w, lab, ldl, out)
    elif op.code == OP_LINEAR or op.code == OP_FIXED_LINEAR:
        linear_forward(op, w, p, z, out, B)
    elif op.code == OP_DIAG_LINEAR:
        # out_s = A (z_s * w), A = p (d_out x d_in)
        for s in range(B):
            zs = z + s * din
            for o in range(dout):
                acc = 0.0
                for j in range(din):
                    acc = acc + p[o * din + j] * (zs[j] * w[j])
                out[s * dout + o] = acc
    elif op.code == OP_INNER_SQUARE:
        # out_s = <z_s, w>^2 + ||z_s||^2 / 2
        for s in range(B):
            zs = z + s * din
            acc = 0.0
            t = 0.0
            for j in range(din):
                acc = acc + zs[j] * w[j]
                t = t + zs[j] * zs[j]
            out[s] = acc * acc + 0.5 * t
    elif op.code == OP_LQ_STEP:
        lq_step_forward(op, w, p, z, out, B)
    elif op.code == OP_LQ_TERMINAL:
        lq_terminal(op, p, z, out, NULL, NULL, B)
    elif op.code == OP_PYTHON:
        # out = op.forward(w, z): the Python object, with the GIL (py_op_forward)
        py_op_forward(op, w, z, out, lab, ldl, B)
    elif op.code == OP_COMPILED:
        compiled_forward(op, w, z, out, B)
    elif op.code == OP_LOGISTIC_LOSS:
        # out_s = ln(1 + exp(-y_s z_s)) = softplus(-y_s z_s)
        for s in range(B):
            out[s] = -lab[s * ldl] * z[s]
        fc_softplus(out, out, B)
    elif op.code == OP_SQUARED_ERROR:
        # out_s = ||z_s - t_s||^2 / 2, targets t_s = the label row
        for s in range(B):
            zs = z + s * din
            acc = 0.0
            for j in range(din):
                t = zs[j] - lab[s * ldl + j]
                acc = acc + t * t
            out[s] = 0.5 * acc
    elif op.code == OP_SOFTMAX_XENT:
        # out_s = logsumexp(z_s) - z_s[c_s], shifted by the max for stability
        for s in range(B):
            zs = z + s * din
            m = zs[0]
            for j in range(1, din):
                if zs[j] > m:
                    m = zs[j]
            acc = 0.0
            for j in range(din):
                acc = acc + exp(zs[j] - m)
            c = <int>lab[s * ldl]
            out[s] = m + log1p(acc - 1.0) - zs[c]


cdef bint op_forward_with_derivative(const OpDesc* op, const double* z, double* out,
                                     double* deriv, Py_ssize_t B) noexcept nogil:
    # Softplus: out = softplus(z) and deriv = sigmoid(z) = softplus'(z) from one e^-|z| (the
    # same bits as op_forward and as op_vjp's factor)
    if op.code == OP_SOFTPLUS:
        fc_softplus_sigmoid(z, out, deriv, B * op.d_in)
        return True
    return False


cdef void op_vjp(const OpDesc* op, const double* w, const double* p,
                 const double* z, const double* out, const double* g,
                 const double* lab, Py_ssize_t ldl, Py_ssize_t B,
                 double* g_in, double* g_w) noexcept nogil:
    cdef Py_ssize_t s, j, o
    cdef Py_ssize_t din = op.d_in, dout = op.d_out
    cdef Py_ssize_t n = B * din
    cdef double acc, m, t, gs, ys
    cdef const double* zs
    cdef double* gi
    cdef int c

    if op.code == OP_IDENTITY:
        if g_in != NULL:
            # out = z
            for j in range(n):
                g_in[j] = g[j]
    elif op.code == OP_SOFTPLUS:
        if g_in != NULL:
            # out = softplus(z): d/dz = sigmoid(z)
            fc_sigmoid_mul(z, g, g_in, n)
    elif op.code == OP_SIGMOID:
        if g_in != NULL:
            # out = sigmoid(z): d/dz = out (1 - out)
            for j in range(n):
                g_in[j] = g[j] * out[j] * (1.0 - out[j])
    elif op.code == OP_TANH:
        if g_in != NULL:
            # out = tanh(z): d/dz = 1 - out^2
            for j in range(n):
                g_in[j] = g[j] * (1.0 - out[j] * out[j])
    elif op.code == OP_RELU:
        if g_in != NULL:
            # out = max(z, 0): d/dz = [z > 0]
            for j in range(n):
                g_in[j] = g[j] if z[j] > 0.0 else 0.0
    elif op.code == OP_MARGIN:
        # out_s = -y_s <z_s, w>: d/dz_s = -y_s w
        if g_in != NULL:
            for s in range(B):
                gs = -lab[s * ldl] * g[s]
                gi = g_in + s * din
                for j in range(din):
                    gi[j] = gs * w[j]
        # out_s = -y_s <z_s, w>: d/dw = sum_s -y_s g_s z_s
        if g_w != NULL:
            fc_margin_wgrad(z, B, din, lab, ldl, g, g_w)
    elif op.code == OP_LINEAR or op.code == OP_FIXED_LINEAR:
        linear_vjp(op, w, p, z, g, B, g_in, g_w, True, NULL)
    elif op.code == OP_DIAG_LINEAR:
        for s in range(B):
            zs = z + s * din
            for j in range(din):
                # out_s = A (z_s * w): with q = A^T g_s, d/dz_s = w * q and d/dw = z_s * q
                acc = 0.0
                for o in range(dout):
                    acc = acc + p[o * din + j] * g[s * dout + o]
                if g_in != NULL:
                    g_in[s * din + j] = w[j] * acc
                if g_w != NULL:
                    g_w[j] = g_w[j] + zs[j] * acc
    elif op.code == OP_LQ_STEP:
        lq_step_vjp(op, w, p, z, g, B, g_in, g_w)
    elif op.code == OP_LQ_TERMINAL:
        lq_terminal(op, p, z, NULL, g, g_in, B)
    elif op.code == OP_PYTHON:
        # the Python object's vjp_input and vjp_weights, with the GIL (py_op_vjp)
        py_op_vjp(op, w, z, out, g, lab, ldl, B, g_in, g_w)
    elif op.code == OP_COMPILED:
        compiled_vjp(op, w, z, out, g, B, g_in, g_w)
    elif op.code == OP_INNER_SQUARE:
        for s in range(B):
            zs = z + s * din
            acc = 0.0
            for j in range(din):
                acc = acc + zs[j] * w[j]
            gs = g[s]
            # out_s = <z_s, w>^2 + ||z_s||^2/2: d/dz_s = 2 <z_s, w> w + z_s
            if g_in != NULL:
                for j in range(din):
                    g_in[s * din + j] = gs * (2.0 * acc * w[j] + zs[j])
            # out_s = <z_s, w>^2 + ||z_s||^2/2: d/dw = 2 <z_s, w> z_s
            if g_w != NULL:
                for j in range(din):
                    g_w[j] = g_w[j] + gs * 2.0 * acc * zs[j]
    elif op.code == OP_LOGISTIC_LOSS:
        if g_in != NULL:
            # out_s = softplus(-y_s z_s): d/dz_s = -y_s sigmoid(-y_s z_s)
            for s in range(B):
                g_in[s] = -lab[s * ldl] * z[s]
            fc_sigmoid(g_in, g_in, B)
            for s in range(B):
                g_in[s] = g[s] * (-lab[s * ldl]) * g_in[s]
    elif op.code == OP_SQUARED_ERROR:
        if g_in != NULL:
            # out_s = ||z_s - t_s||^2 / 2: d/dz_s = z_s - t_s
            for s in range(B):
                for j in range(din):
                    g_in[s * din + j] = g[s] * (z[s * din + j] - lab[s * ldl + j])
    elif op.code == OP_SOFTMAX_XENT:
        if g_in != NULL:
            # out_s = logsumexp(z_s) - z_s[c]: d/dz_s = softmax(z_s) - e_c
            for s in range(B):
                zs = z + s * din
                gi = g_in + s * din
                m = zs[0]
                for j in range(1, din):
                    if zs[j] > m:
                        m = zs[j]
                acc = 0.0
                for j in range(din):
                    gi[j] = exp(zs[j] - m)
                    acc = acc + gi[j]
                c = <int>lab[s * ldl]
                for j in range(din):
                    gi[j] = g[s] * (gi[j] / acc)
                gi[c] = gi[c] - g[s]


# ---------------------------------------------------------------------------------------------
# Python-defined operators (OP_PYTHON): the kernel takes the GIL and calls the object's methods on
# NumPy views of the engine's buffers (inputs read-only, no copies), then copies the returned
# arrays into the engine's buffers. The object is found by its token (the row's flag) in a
# registry of weak references; a callback that raises, or returns the wrong shape, records the
# exception (take_callback_errors) and writes NaN, so that the run stops as diverged and its
# caller raises the exception afterwards.

cdef dict _py_ops = {}         # token -> weakref.ref to the operator
cdef dict _py_stats = {}       # token -> [calls, seconds spent in them]
cdef list _py_errors = []      # exceptions raised inside callbacks, oldest first


def _forget(token, ref):
    if _py_ops.get(token) is ref:
        del _py_ops[token]


def register_python_operator(op, token=None):
    """Register a Python-defined operator for the compiled engine; returns its token.

    ``token`` (a positive int below 2**31, as an unpickled operator carries it) is kept when it
    is free or already names ``op``; None draws a fresh one. The registry holds a weak
    reference: the entry goes with the operator.
    """
    if token is not None:
        token = int(token)
        ref = _py_ops.get(token)
        if ref is not None and ref() is not None and ref() is not op:
            token = None       # taken (in this process) by another operator: a fresh one
    while token is None or not 0 < token < 2 ** 31:
        token = secrets.randbelow(2 ** 31 - 1) + 1
        if token in _py_ops:
            token = None
    _py_ops[token] = weakref.ref(op, lambda r, t=token: _forget(t, r))
    return token


def python_operator(long long token):
    """The operator registered under ``token`` (LookupError when it is gone)."""
    ref = _py_ops.get(token)
    op = None if ref is None else ref()
    if op is None:
        raise LookupError(f"no Python-defined operator with token {token} (was it garbage "
                          "collected while its plan was in use?)")
    return op


def take_callback_errors():
    """The exceptions raised inside operator callbacks since the last call (then cleared),
    and a LookupError when a compiled operator's slot was found empty."""
    global _compiled_missing
    errors = list(_py_errors)
    del _py_errors[:]
    if _compiled_missing:
        _compiled_missing = 0
        errors.append(LookupError("a compiled operator's slot was empty (was the operator "
                                  "garbage collected while its plan was in use?)"))
    return errors


def callback_stats(reset=False):
    """{token: (calls, seconds)} of the operator callbacks (the time spent in each call, the
    GIL's acquisition excluded); ``reset`` clears the counters after reading them."""
    out = {k: (v[0], v[1]) for k, v in _py_stats.items()}
    if reset:
        _py_stats.clear()
    return out


cdef object _view(const double* x, Py_ssize_t rows, Py_ssize_t cols, bint writeable):
    # a NumPy array on x (rows x cols, or rows when cols < 0), no copy; valid during the call
    cdef cnp.npy_intp dims[2]
    cdef int nd = 1 if cols < 0 else 2
    dims[0] = rows
    dims[1] = cols if cols >= 0 else 0
    if x == NULL:   # only for empty blocks (an operator without weights)
        return np.zeros(rows) if nd == 1 else np.zeros((rows, cols))
    arr = cnp.PyArray_SimpleNewFromData(nd, dims, cnp.NPY_FLOAT64, <void*>x)
    if not writeable:
        cnp.PyArray_CLEARFLAGS(<cnp.ndarray>arr, cnp.NPY_ARRAY_WRITEABLE)
    return arr


cdef object _checked(obj, value, shape, str method):
    a = np.asarray(value, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(f"{obj!r}.{method}: returned shape {a.shape}, expected {shape}")
    return a


cdef dict _label_kw(obj, const double* lab, Py_ssize_t ldl, Py_ssize_t B):
    if getattr(obj, "labels", None) is None:
        return {}
    if ldl == 0 or lab == NULL:
        return {"labels": np.zeros((B, 0))}
    return {"labels": _view(lab, B, ldl, False)}


cdef void _account(long long token, double seconds):
    st = _py_stats.get(token)
    if st is None:
        _py_stats[token] = [1, seconds]
    else:
        st[0] += 1
        st[1] += seconds


cdef void _fill_nan(double* x, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    if x != NULL:
        for j in range(n):
            x[j] = NAN


cdef void py_op_forward(const OpDesc* op, const double* w, const double* z, double* out,
                        const double* lab, Py_ssize_t ldl, Py_ssize_t B) noexcept with gil:
    # out = obj.forward(w, z) (B x d_out)
    cdef double start = time.perf_counter()
    try:
        obj = python_operator(op.flag)
        y = obj.forward(_view(w, op.n_w, -1, False), _view(z, B, op.d_in, False),
                        **_label_kw(obj, lab, ldl, B))
        y = _checked(obj, y, (B, op.d_out), "forward")
        np.copyto(_view(out, B, op.d_out, True), y)
        _account(op.flag, time.perf_counter() - start)
    except BaseException as e:
        _py_errors.append(e)
        _fill_nan(out, B * op.d_out)


cdef void py_op_vjp(const OpDesc* op, const double* w, const double* z, const double* out,
                    const double* g, const double* lab, Py_ssize_t ldl, Py_ssize_t B,
                    double* g_in, double* g_w) noexcept with gil:
    # g_in = obj.vjp_input(w, z, out, g) (when not NULL); g_w += obj.vjp_weights(w, z, out, g)
    # (the batch sum; when not NULL and the operator has weights)
    cdef double start = time.perf_counter()
    try:
        obj = python_operator(op.flag)
        kw = _label_kw(obj, lab, ldl, B)
        W = _view(w, op.n_w, -1, False)
        X = _view(z, B, op.d_in, False)
        V = _view(g, B, op.d_out, False)
        if out != NULL:
            Y = _view(out, B, op.d_out, False)
        else:
            Y = _checked(obj, obj.forward(W, X, **kw), (B, op.d_out), "forward")
        if g_in != NULL:
            dx = _checked(obj, obj.vjp_input(W, X, Y, V, **kw), (B, op.d_in), "vjp_input")
            np.copyto(_view(g_in, B, op.d_in, True), dx)
        if g_w != NULL and op.n_w > 0:
            dw = _checked(obj, obj.vjp_weights(W, X, Y, V, **kw), (op.n_w,), "vjp_weights")
            gw = _view(g_w, op.n_w, -1, True)
            gw += dw
        _account(op.flag, time.perf_counter() - start)
    except BaseException as e:
        _py_errors.append(e)
        _fill_nan(g_in, B * op.d_in)
        _fill_nan(g_w, op.n_w)


# ---------------------------------------------------------------------------------------------
# A user's compiled operators (OP_COMPILED, fastcascade/extension.pxd): a table of fc_operator
# pointers, indexed by the row's flag, read without the GIL. Python (register_compiled_operator)
# fills a slot from the operator's capsule and keeps the capsule with a weak reference to the
# operator; the slot is emptied when the operator goes. An empty slot writes NaN and counts a
# miss (reported by take_callback_errors).

cdef enum:
    N_COMPILED_SLOTS = 4096
cdef const fc_operator* _compiled[N_COMPILED_SLOTS]     # (static: all NULL at first)
cdef dict _compiled_owners = {}      # slot -> (weakref to the operator, its capsule)
cdef int _compiled_missing = 0       # calls that found an empty slot (racy count: a flag)


def _forget_compiled(slot, ref):
    owner = _compiled_owners.get(slot)
    if owner is not None and owner[0] is ref:
        del _compiled_owners[slot]
        _compiled[slot] = NULL


def register_compiled_operator(op, capsule, slot=None):
    """Put the fc_operator of ``capsule`` (named "fastcascade.operator") in a slot of the
    engine's table for ``op``; returns the slot (``slot`` when it is free or already op's).
    """
    if not PyCapsule_IsValid(capsule, FC_OPERATOR_CAPSULE):
        raise TypeError(f"{op!r}.capsule(): expected a PyCapsule named "
                        f"'fastcascade.operator', given {capsule!r}")
    cdef const fc_operator* f = <const fc_operator*>PyCapsule_GetPointer(capsule,
                                                                         FC_OPERATOR_CAPSULE)
    if f.abi != FC_OPERATOR_ABI:
        raise ValueError(f"{op!r}: the capsule's fc_operator has ABI version {f.abi}, this "
                         f"fastcascade expects {FC_OPERATOR_ABI} (rebuild the extension)")
    if f.forward == NULL or f.vjp_input == NULL:
        raise ValueError(f"{op!r}: the capsule's fc_operator has no forward or vjp_input")
    if f.vjp_weights == NULL and (getattr(op, "n_weights", 0) or 0) > 0:
        raise ValueError(f"{op!r}: has {op.n_weights} weights, but its fc_operator has no "
                         "vjp_weights")
    if slot is not None:
        owner = _compiled_owners.get(slot)
        if not 0 <= slot < N_COMPILED_SLOTS or (owner is not None and owner[0]() is not None
                                                and owner[0]() is not op):
            slot = None
    if slot is None:
        free = [k for k in range(N_COMPILED_SLOTS) if k not in _compiled_owners]
        if not free:
            raise RuntimeError(f"more than {N_COMPILED_SLOTS} compiled operators alive")
        slot = free[0]
    _compiled_owners[slot] = (weakref.ref(op, lambda r, k=slot: _forget_compiled(k, r)),
                              capsule)
    _compiled[slot] = f
    return slot


cdef inline const fc_operator* _compiled_at(const OpDesc* op) noexcept nogil:
    global _compiled_missing
    cdef const fc_operator* f = NULL
    if 0 <= op.flag < N_COMPILED_SLOTS:
        f = _compiled[op.flag]
    if f == NULL:
        _compiled_missing = 1
    return f


cdef void compiled_forward(const OpDesc* op, const double* w, const double* z, double* out,
                           Py_ssize_t B) noexcept nogil:
    cdef const fc_operator* f = _compiled_at(op)
    if f == NULL:
        _fill_nan(out, B * op.d_out)
        return
    # out = f(z, w): the user's kernel
    f.forward(f.ctx, w, z, out, B, op.d_in, op.d_out)


cdef void compiled_vjp(const OpDesc* op, const double* w, const double* z, const double* out,
                       const double* g, Py_ssize_t B, double* g_in, double* g_w) noexcept nogil:
    cdef const fc_operator* f = _compiled_at(op)
    if f == NULL:
        _fill_nan(g_in, B * op.d_in)
        _fill_nan(g_w, op.n_w)
        return
    # g_in = J1(z)^T g; g_w += sum_s J2(z_s)^T g_s: the user's kernels
    if g_in != NULL:
        f.vjp_input(f.ctx, w, z, out, g, g_in, B, op.d_in, op.d_out)
    if g_w != NULL and op.n_w > 0 and f.vjp_weights != NULL:
        f.vjp_weights(f.ctx, w, z, out, g, g_w, B, op.d_in, op.d_out)


# ---------------------------------------------------------------------------------------------
# Python entry points (for tests and for fastcascade.ops): one operator, one batch.

cdef OpDesc _desc(const long long[::1] row, const double[::1] w, const double[::1] p,
                  const double[:, ::1] z, const double[:, ::1] lab):
    # The kernels trust their pointers: check every size they will touch.
    if row.shape[0] != OPDESC_FIELDS:
        raise ValueError(f"operator row must have {OPDESC_FIELDS} fields, got {row.shape[0]}")
    cdef OpDesc op = opdesc_from_row(&row[0])
    if z.shape[1] != op.d_in or w.shape[0] != op.n_w:
        raise ValueError(f"z has {z.shape[1]} columns and w {w.shape[0]} entries; the operator "
                         f"expects {op.d_in} and {op.n_w}")
    cdef Py_ssize_t n = op.d_in - 1, m = op.flag
    if op.code == OP_LQ_STEP and (p.shape[0] != 2 * n * n + n * m + m * m or op.n_w != m * n
                                  or op.d_out != op.d_in):
        raise ValueError("an LQ step needs A, B, Q, R and K of matching sizes")
    if op.code == OP_LQ_TERMINAL and p.shape[0] != n * n:
        raise ValueError("an LQ terminal cost needs Qf of size n x n")
    if op.code in (OP_FIXED_LINEAR, OP_DIAG_LINEAR) and p.shape[0] != op.d_in * op.d_out:
        raise ValueError(f"p has {p.shape[0]} entries, the operator expects {op.d_in * op.d_out}")
    cdef Py_ssize_t need = op.d_in if op.code == OP_SQUARED_ERROR else 1
    if op.code in (OP_MARGIN, OP_LOGISTIC_LOSS, OP_SQUARED_ERROR, OP_SOFTMAX_XENT) and (
            lab.shape[0] != z.shape[0] or lab.shape[1] < need):
        raise ValueError(f"labels have shape {tuple(lab.shape)[:2]}, the operator reads "
                         f"({z.shape[0]}, >= {need})")
    return op


cdef const double* _ptr_or_null(const double[::1] a) noexcept:
    return &a[0] if a.shape[0] > 0 else NULL


def forward(const long long[::1] row, const double[::1] w, const double[::1] p,
            const double[:, ::1] z, const double[:, ::1] lab):
    """out = f(z) for one operator on a batch (z: B x d_in, lab: B x ldl)."""
    cdef OpDesc op = _desc(row, w, p, z, lab)
    cdef Py_ssize_t B = z.shape[0]
    out = np.empty((B, op.d_out), dtype=np.float64)
    cdef double[:, ::1] o = out
    cdef Py_ssize_t ldl = lab.shape[1]
    cdef const double* labp = &lab[0, 0] if lab.shape[0] > 0 and ldl > 0 else NULL
    if B == 0:
        return out
    cdef const double* wp = _ptr_or_null(w)
    cdef const double* pp = _ptr_or_null(p)
    with nogil:
        op_forward(&op, wp, pp, &z[0, 0], &o[0, 0], labp, ldl, B)
    return out


def vjp(const long long[::1] row, const double[::1] w, const double[::1] p,
        const double[:, ::1] z, const double[:, ::1] g, const double[:, ::1] lab):
    """(J1(z)^T g, sum_s J2(z_s)^T g_s) for one operator on a batch."""
    cdef OpDesc op = _desc(row, w, p, z, lab)
    cdef Py_ssize_t B = z.shape[0]
    if g.shape[0] != B or g.shape[1] != op.d_out:
        raise ValueError(f"g has shape {tuple(g.shape)[:2]}, the operator expects ({B}, {op.d_out})")
    out = forward(row, w, p, z, lab)
    g_in = np.empty((B, op.d_in), dtype=np.float64)
    g_w = np.zeros(op.n_w, dtype=np.float64)
    cdef double[:, ::1] o = out
    cdef double[:, ::1] gi = g_in
    cdef double[::1] gw = g_w
    cdef Py_ssize_t ldl = lab.shape[1]
    cdef const double* labp = &lab[0, 0] if lab.shape[0] > 0 and ldl > 0 else NULL
    if B == 0:
        return g_in, g_w
    cdef const double* wp = _ptr_or_null(w)
    cdef const double* pp = _ptr_or_null(p)
    cdef double* gwp = &gw[0] if op.n_w > 0 else NULL
    with nogil:
        op_vjp(&op, wp, pp, &z[0, 0], &o[0, 0], &g[0, 0], labp, ldl, B, &gi[0, 0], gwp)
    return g_in, g_w
