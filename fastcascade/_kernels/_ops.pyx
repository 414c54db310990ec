# cython: language_level=3
"""Operator kernels: forward pass and vector-Jacobian products on a batch.

Every operator is a pair of ``noexcept nogil`` branches on raw pointers, dispatched on the
operator code. Each adjoint line names the forward statement it differentiates.
"""
from libc.math cimport exp, log1p, fabs, tanh
from libc.string cimport memset

import numpy as np

from fastcascade._kernels._types cimport (
    OpDesc, OP_IDENTITY, OP_MARGIN, OP_SOFTPLUS, OP_LINEAR, OP_SIGMOID, OP_TANH, OP_RELU,
    OP_LOGISTIC_LOSS, OP_SQUARED_ERROR, OP_SOFTMAX_XENT, OP_FIXED_LINEAR, OP_DIAG_LINEAR,
    OP_INNER_SQUARE,
)

OPDESC_FIELDS = 7

# The operator codes, for the Python side (one source of truth: the enum in _types.pxd).
OP_CODES = {
    "identity": OP_IDENTITY, "margin": OP_MARGIN, "softplus": OP_SOFTPLUS, "linear": OP_LINEAR,
    "sigmoid": OP_SIGMOID, "tanh": OP_TANH, "relu": OP_RELU, "logistic_loss": OP_LOGISTIC_LOSS,
    "squared_error": OP_SQUARED_ERROR, "softmax_xent": OP_SOFTMAX_XENT,
    "fixed_linear": OP_FIXED_LINEAR, "diag_linear": OP_DIAG_LINEAR, "inner_square": OP_INNER_SQUARE,
}


cdef inline double softplus(double z) noexcept nogil:
    # ln(1 + e^z) = max(z, 0) + ln(1 + e^-|z|): no overflow for large |z|
    if z > 0.0:
        return z + log1p(exp(-z))
    return log1p(exp(z))


cdef inline double sigmoid(double z) noexcept nogil:
    # 1 / (1 + e^-z), written so that exp never overflows
    cdef double e
    if z >= 0.0:
        return 1.0 / (1.0 + exp(-z))
    e = exp(z)
    return e / (1.0 + e)


cdef OpDesc opdesc_from_row(const long long* row) noexcept nogil:
    cdef OpDesc op
    op.code = <int>row[0]
    op.flag = <int>row[1]
    op.d_in = <Py_ssize_t>row[2]
    op.d_out = <Py_ssize_t>row[3]
    op.n_w = <Py_ssize_t>row[4]
    op.w_off = <Py_ssize_t>row[5]
    op.p_off = <Py_ssize_t>row[6]
    return op


cdef void op_forward(const OpDesc* op, const double* w, const double* p,
                     const double* z, double* out,
                     const double* lab, Py_ssize_t ldl, Py_ssize_t B) noexcept nogil:
    cdef Py_ssize_t s, j, o, k
    cdef Py_ssize_t din = op.d_in, dout = op.d_out
    cdef Py_ssize_t n = B * din
    cdef double acc, m, t
    cdef const double* zs
    cdef const double* row
    cdef int c

    if op.code == OP_IDENTITY:
        for j in range(n):
            out[j] = z[j]
    elif op.code == OP_SOFTPLUS:
        for j in range(n):
            out[j] = softplus(z[j])
    elif op.code == OP_SIGMOID:
        for j in range(n):
            out[j] = sigmoid(z[j])
    elif op.code == OP_TANH:
        for j in range(n):
            out[j] = tanh(z[j])
    elif op.code == OP_RELU:
        for j in range(n):
            out[j] = z[j] if z[j] > 0.0 else 0.0
    elif op.code == OP_MARGIN:
        # out_s = -y_s <z_s, w>
        for s in range(B):
            zs = z + s * din
            acc = 0.0
            for j in range(din):
                acc = acc + zs[j] * w[j]
            out[s] = -lab[s * ldl] * acc
    elif op.code == OP_LINEAR or op.code == OP_FIXED_LINEAR:
        # out_s = W z_s (+ b); W is d_out x d_in row-major (weights for LINEAR, params for FIXED)
        row = w if op.code == OP_LINEAR else p
        for s in range(B):
            zs = z + s * din
            for o in range(dout):
                acc = 0.0
                for j in range(din):
                    acc = acc + row[o * din + j] * zs[j]
                if op.flag:
                    acc = acc + w[dout * din + o]
                out[s * dout + o] = acc
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
    elif op.code == OP_LOGISTIC_LOSS:
        # out_s = ln(1 + exp(-y_s z_s))
        for s in range(B):
            out[s] = softplus(-lab[s * ldl] * z[s])
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


cdef void op_vjp(const OpDesc* op, const double* w, const double* p,
                 const double* z, const double* out, const double* g,
                 const double* lab, Py_ssize_t ldl, Py_ssize_t B,
                 double* g_in, double* g_w) noexcept nogil:
    cdef Py_ssize_t s, j, o
    cdef Py_ssize_t din = op.d_in, dout = op.d_out
    cdef Py_ssize_t n = B * din
    cdef double acc, m, t, gs, ys
    cdef const double* zs
    cdef const double* row
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
            for j in range(n):
                g_in[j] = g[j] * sigmoid(z[j])
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
        for s in range(B):
            zs = z + s * din
            gs = -lab[s * ldl] * g[s]
            # out_s = -y_s <z_s, w>: d/dz_s = -y_s w
            if g_in != NULL:
                gi = g_in + s * din
                for j in range(din):
                    gi[j] = gs * w[j]
            # out_s = -y_s <z_s, w>: d/dw = -y_s z_s
            if g_w != NULL:
                for j in range(din):
                    g_w[j] = g_w[j] + gs * zs[j]
    elif op.code == OP_LINEAR or op.code == OP_FIXED_LINEAR:
        row = w if op.code == OP_LINEAR else p
        for s in range(B):
            zs = z + s * din
            # out_s = W z_s + b: d/dz_s = W^T g_s
            if g_in != NULL:
                gi = g_in + s * din
                for j in range(din):
                    gi[j] = 0.0
                for o in range(dout):
                    gs = g[s * dout + o]
                    for j in range(din):
                        gi[j] = gi[j] + row[o * din + j] * gs
            # out_s = W z_s + b: dW += g_s z_s^T, db += g_s
            if g_w != NULL and op.code == OP_LINEAR:
                for o in range(dout):
                    gs = g[s * dout + o]
                    for j in range(din):
                        g_w[o * din + j] = g_w[o * din + j] + gs * zs[j]
                    if op.flag:
                        g_w[dout * din + o] = g_w[dout * din + o] + gs
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
                ys = lab[s * ldl]
                g_in[s] = g[s] * (-ys) * sigmoid(-ys * z[s])
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
