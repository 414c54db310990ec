"""The pure-NumPy twin of the compiled kernels: the oracle for tests and the benchmark baseline.

Every operator kernel has a twin here with the same semantics:

- ``forward(op, z, w, labels)``     -> (B, d_out)
- ``vjp_input(op, z, g, w, labels)`` -> J1(z_s)^T g_s per sample, (B, d_in)
- ``vjp_weights(op, z, g, w, labels)`` -> sum_s J2(z_s)^T g_s, (n_weights,)

and so do the clean full-data objective and gradient of a problem (``objective``, ``gradient``).
A Python-defined operator (``fc.ops.Operator`` with ``forward``) is its own twin: these call its
``forward``, ``vjp_input`` and ``vjp_weights``. ``KINDS`` lists the operator kinds handled here
(``tests/test_registry.py`` requires one for every compiled operator code).
The perturbed engine's twin is ``fastcascade.reference_engine``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["forward", "vjp_input", "vjp_weights", "cascade_forward", "cascade_backward",
           "objective", "gradient", "softplus", "sigmoid", "KINDS"]

# The operator kinds the twins below handle (the keys of the compiled _ops.OP_CODES).
KINDS = ("identity", "softplus", "sigmoid", "tanh", "relu", "margin", "linear", "fixed_linear",
         "diag_linear", "inner_square", "lq_step", "lq_terminal", "logistic_loss",
         "squared_error", "softmax_xent", "python", "compiled")


def _label_kw(op, labels):
    return {} if op.labels is None else {"labels": labels}


def _python_call(op, method, shape, *args, **kwargs):
    out = np.asarray(getattr(op, method)(*args, **kwargs), dtype=np.float64)
    if out.shape != shape:
        raise ValueError(f"{op!r}.{method}: returned shape {out.shape}, expected {shape}")
    return out


def _python_forward(op, z, w, labels):
    return _python_call(op, "forward", (z.shape[0], op.d_out), _weights(op, w), z,
                        **_label_kw(op, labels))


def _compiled_forward(op, z, w):
    from fastcascade.ops import Operator
    return Operator.forward(op, z, w)


def _compiled_vjp(op, z, g, w):
    from fastcascade.ops import Operator
    return Operator.vjp(op, z, g, w)


def _weights(op, w):
    return np.zeros(0) if w is None else np.asarray(w, dtype=np.float64)


def softplus(z):
    """ln(1 + e^z), stable for large |z|.

    Parameters
    ----------
    z : numpy.ndarray
        float64, any shape.

    Returns
    -------
    numpy.ndarray
        Elementwise, the shape of ``z``.
    """
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


def sigmoid(z):
    """1 / (1 + e^-z) without overflow.

    Parameters
    ----------
    z : numpy.ndarray
        float64, any shape.

    Returns
    -------
    numpy.ndarray
        Elementwise, the shape of ``z``.
    """
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _sign(labels):
    return labels[:, :1]


def _classes(labels):
    return labels[:, 0].astype(np.intp)


def _linear_parts(op, w):
    W = w[: op.d_out * op.d_in].reshape(op.d_out, op.d_in)
    b = w[op.d_out * op.d_in:] if op.bias else None
    return W, b


def forward(op, z, w=None, labels=None):
    """NumPy twin of the operator's forward kernel on a batch.

    Parameters
    ----------
    op : fastcascade.ops.Operator
        A bound operator (its ``kind`` picks the formula).
    z : array_like
        float64 (B, d_in), the batch's inputs to the operator.
    w : numpy.ndarray, optional
        float64 (n_weights,), the operator's weights w_i.
    labels : numpy.ndarray, optional
        float64 (B, k) label rows, for operators that read labels.

    Returns
    -------
    numpy.ndarray
        float64 (B, d_out).
    """
    z = np.asarray(z, dtype=np.float64)
    kind = op.kind
    if kind == "python":
        return _python_forward(op, z, w, labels)
    if kind == "compiled":     # a user's compiled kernel is its own twin (tested against its
        return _compiled_forward(op, z, w)     # Python twin by its package)
    if kind == "identity":
        return z.copy()
    if kind == "softplus":
        return softplus(z)
    if kind == "sigmoid":
        return sigmoid(z)
    if kind == "tanh":
        return np.tanh(z)
    if kind == "relu":
        return np.where(z > 0, z, 0.0)
    if kind == "margin":
        return -_sign(labels) * (z @ w)[:, None]
    if kind == "linear":
        W, b = _linear_parts(op, w)
        out = z @ W.T
        return out + b if b is not None else out
    if kind == "fixed_linear":
        return z @ op.A.T
    if kind == "diag_linear":
        return (z * w) @ op.A.T
    if kind == "inner_square":
        return ((z @ w) ** 2 + 0.5 * np.sum(z * z, axis=1))[:, None]
    if kind == "lq_step":
        x, c = z[:, :-1], z[:, -1]
        u = x @ _lq_K(op, w).T
        cost = c + np.einsum("si,ij,sj->s", x, op.Q, x) + np.einsum("sk,kl,sl->s", u, op.R, u)
        return np.concatenate([x @ op.A.T + u @ op.B.T, cost[:, None]], axis=1)
    if kind == "lq_terminal":
        x = z[:, :-1]
        return (z[:, -1] + np.einsum("si,ij,sj->s", x, op.Qf, x))[:, None]
    if kind == "logistic_loss":
        return softplus(-_sign(labels) * z)
    if kind == "squared_error":
        r = z - labels[:, : op.d_in]
        return 0.5 * np.sum(r * r, axis=1)[:, None]
    if kind == "softmax_xent":
        m = np.max(z, axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.sum(np.exp(z - m), axis=1))
        return (lse - z[np.arange(z.shape[0]), _classes(labels)])[:, None]
    raise NotImplementedError(kind)


def vjp_input(op, z, g, w=None, labels=None):
    """NumPy twin of the VJP with respect to the input: J1(z_s)^T g_s for each sample.

    Parameters
    ----------
    op : fastcascade.ops.Operator
        A bound operator (its ``kind`` picks the formula).
    z : array_like
        float64 (B, d_in), the batch's inputs to the operator.
    g : array_like
        float64 (B, d_out), the output cotangent.
    w : numpy.ndarray, optional
        float64 (n_weights,), the operator's weights w_i.
    labels : numpy.ndarray, optional
        float64 (B, k) label rows, for operators that read labels.

    Returns
    -------
    numpy.ndarray
        float64 (B, d_in).
    """
    z = np.asarray(z, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    kind = op.kind
    if kind == "python":
        y = _python_forward(op, z, w, labels)
        return _python_call(op, "vjp_input", z.shape, _weights(op, w), z, y, g,
                            **_label_kw(op, labels))
    if kind == "compiled":
        return _compiled_vjp(op, z, g, w)[0]
    if kind == "identity":
        return g.copy()
    if kind == "softplus":
        return g * sigmoid(z)
    if kind == "sigmoid":
        s = sigmoid(z)
        return g * s * (1.0 - s)
    if kind == "tanh":
        t = np.tanh(z)
        return g * (1.0 - t * t)
    if kind == "relu":
        return np.where(z > 0, g, 0.0)
    if kind == "margin":
        return (-_sign(labels) * g) * w[None, :]
    if kind == "linear":
        W, _ = _linear_parts(op, w)
        return g @ W
    if kind == "fixed_linear":
        return g @ op.A
    if kind == "diag_linear":
        return (g @ op.A) * w
    if kind == "inner_square":
        return g * (2.0 * (z @ w)[:, None] * w[None, :] + z)
    if kind == "lq_step":
        K = _lq_K(op, w)
        x, gx, gc = z[:, :-1], g[:, :-1], g[:, -1:]
        q = _lq_control_cotangent(op, K, x, gx, gc)
        gin_x = gx @ op.A + gc * (x @ (op.Q + op.Q.T)) + q @ K
        return np.concatenate([gin_x, gc], axis=1)
    if kind == "lq_terminal":
        return np.concatenate([g * (z[:, :-1] @ (op.Qf + op.Qf.T)), g], axis=1)
    if kind == "logistic_loss":
        y = _sign(labels)
        return g * (-y) * sigmoid(-y * z)
    if kind == "squared_error":
        return g * (z - labels[:, : op.d_in])
    if kind == "softmax_xent":
        m = np.max(z, axis=1, keepdims=True)
        e = np.exp(z - m)
        p = e / np.sum(e, axis=1, keepdims=True)
        p[np.arange(z.shape[0]), _classes(labels)] -= 1.0
        return g * p
    raise NotImplementedError(kind)


def vjp_weights(op, z, g, w=None, labels=None):
    """NumPy twin of the VJP with respect to the weights, summed over the batch.

    Parameters
    ----------
    op : fastcascade.ops.Operator
        A bound operator (its ``kind`` picks the formula).
    z : array_like
        float64 (B, d_in), the batch's inputs to the operator.
    g : array_like
        float64 (B, d_out), the output cotangent.
    w : numpy.ndarray, optional
        float64 (n_weights,), the operator's weights w_i.
    labels : numpy.ndarray, optional
        float64 (B, k) label rows, for operators that read labels.

    Returns
    -------
    numpy.ndarray
        float64 (n_weights,): sum_s J2(z_s)^T g_s.
    """
    z = np.asarray(z, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64)
    kind = op.kind
    if op.n_weights == 0:
        return np.zeros(0)
    if kind == "python":
        y = _python_forward(op, z, w, labels)
        return _python_call(op, "vjp_weights", (op.n_weights,), _weights(op, w), z, y, g,
                            **_label_kw(op, labels))
    if kind == "compiled":
        return _compiled_vjp(op, z, g, w)[1]
    if kind == "margin":
        return np.sum((-_sign(labels) * g) * z, axis=0)
    if kind == "linear":
        gW = g.T @ z
        parts = [gW.ravel()]
        if op.bias:
            parts.append(np.sum(g, axis=0))
        return np.concatenate(parts)
    if kind == "diag_linear":
        return np.sum(z * (g @ op.A), axis=0)
    if kind == "inner_square":
        return np.sum(g * 2.0 * (z @ w)[:, None] * z, axis=0)
    if kind == "lq_step":
        K = _lq_K(op, w)
        x = z[:, :-1]
        q = _lq_control_cotangent(op, K, x, g[:, :-1], g[:, -1:])
        return (q.T @ x).ravel()
    raise NotImplementedError(kind)


def _lq_K(op, w):
    return w.reshape(op.B.shape[1], op.A.shape[0])


def _lq_control_cotangent(op, K, x, gx, gc):
    """The cotangent of u = K x in an LQ step: B^T g_x + g_c (R + R^T) u, per sample."""
    u = x @ K.T
    return gx @ op.B + gc * (u @ (op.R + op.R.T))


def cascade_forward(cascade, w, x, labels):
    """Clean forward pass of the cascade (section 1 of docs/model.md).

    Parameters
    ----------
    cascade : fastcascade.Cascade
        A bound cascade.
    w : numpy.ndarray
        float64 (n_weights,), the flat weights.
    x : array_like
        float64 (B, d_0), the inputs.
    labels : numpy.ndarray
        float64 (B, k), the label rows.

    Returns
    -------
    list of numpy.ndarray
        [y_0 = x, y_1, ..., y_N], y_i of shape (B, d_i).
    """
    ys = [np.asarray(x, dtype=np.float64)]
    for i, op in enumerate(cascade.operators, start=1):
        ys.append(forward(op, ys[-1], w[cascade.weight_slice(i)], labels))
    return ys


def cascade_backward(cascade, w, ys, labels):
    """Clean backward pass from v_N = 1 given the forward outputs ``ys``.

    Parameters
    ----------
    cascade : fastcascade.Cascade
        A bound cascade.
    w : numpy.ndarray
        float64 (n_weights,), the flat weights.
    ys : list of numpy.ndarray
        [y_0, ..., y_N] from :func:`cascade_forward`.
    labels : numpy.ndarray
        float64 (B, k), the label rows.

    Returns
    -------
    grad : numpy.ndarray
        float64 (n_weights,): the weight gradient summed over the batch (no regularizer).
    v : list of numpy.ndarray
        [v_1, ..., v_N] indexed v[i - 1], v_i of shape (B, d_i).
    """
    N = cascade.n_ops
    grad = np.zeros(cascade.n_weights)
    v = [None] * N
    v[N - 1] = np.ones_like(ys[N])
    for i in range(N, 0, -1):
        op = cascade.operators[i - 1]
        wi = w[cascade.weight_slice(i)]
        grad[cascade.weight_slice(i)] = vjp_weights(op, ys[i - 1], v[i - 1], wi, labels)
        if i >= 2:
            v[i - 2] = vjp_input(op, ys[i - 1], v[i - 1], wi, labels)
    return grad, v


def objective(problem, w):
    """Clean full-data objective l(w) = (1/M) sum_l F(x_l; w) + R(w).

    Parameters
    ----------
    problem : fastcascade.Problem
        The problem (cascade, data, regularizer).
    w : array_like (n_weights,)
        The flat weights.

    Returns
    -------
    float
    """
    w = problem.cascade.check_weights(w)
    ys = cascade_forward(problem.cascade, w, problem.data.X, problem.data.y)
    return float(np.mean(ys[-1])) + problem.regularizer.value(w)


def gradient(problem, w):
    """Clean full-data gradient of l at w, the regularizer's included.

    Parameters
    ----------
    problem : fastcascade.Problem
        The problem (cascade, data, regularizer).
    w : array_like (n_weights,)
        The flat weights.

    Returns
    -------
    numpy.ndarray
        float64 (n_weights,).
    """
    w = problem.cascade.check_weights(w)
    ys = cascade_forward(problem.cascade, w, problem.data.X, problem.data.y)
    grad, _ = cascade_backward(problem.cascade, w, ys, problem.data.y)
    return grad / problem.n_samples + problem.regularizer.gradient(w)
