"""Operators f_i(y_{i-1}, w_i) of a cascade (docs/model.md, section 1).

Each operator maps a batch ``z`` of shape ``(B, d_in)`` to ``(B, d_out)``. Its forward pass and its
two vector-Jacobian products (with respect to the input and to its weights) are compiled kernels in
``fastcascade._kernels._ops``; ``fastcascade.reference`` holds their NumPy twins.

An operator created without its input width (``Margin()``, ``Tanh()``) takes it from the previous
operator or from the data when the cascade is bound to a problem.

Examples
--------
>>> import numpy as np, fastcascade as fc
>>> op = fc.ops.Margin(3)
>>> z = np.array([[1.0, 2.0, 3.0]]); w = np.array([0.5, 0.0, -1.0]); y = np.array([[1.0]])
>>> op.forward(z, w, labels=y)
array([[2.5]])
"""
from __future__ import annotations

import numpy as np

from fastcascade._kernels import _ops
from fastcascade._validation import as_float_array, check_positive_int, check_real
from fastcascade.errors import ParameterError

__all__ = [
    "Operator", "Identity", "Margin", "Softplus", "Linear", "Sigmoid", "Tanh", "ReLU",
    "LogisticLoss", "SquaredError", "SoftmaxCrossEntropy", "FixedLinear", "DiagLinear",
    "InnerSquare", "LQStep", "LQTerminal", "GradientStep", "Quadratic", "CompiledOperator",
]

_NO_LABELS = np.zeros((0, 0))


class Operator:
    """Base class of the cascade's operators, built-in or defined in Python by a user.

    A **Python-defined operator** is a subclass that defines ``forward``; it runs on both
    engines: natively on ``engine="numpy"``, and on the compiled engine through a callback that
    takes the GIL for each call (a ``fastcascade.PerformanceWarning`` after the run gives the
    measured cost per call). Its contract, on NumPy batches of B samples:

    - ``forward(w, x) -> y``: ``x`` (B, d_in), the operator's weights ``w`` (n_weights,);
      returns y (B, d_out).
    - ``vjp_input(w, x, y, v) -> dx``: J1(x_s)^T v_s for each sample, (B, d_in); ``y`` is
      ``forward(w, x)`` (the operator's own output, before any perturbation at its site) and
      ``v`` (B, d_out) the cotangent.
    - ``vjp_weights(w, x, y, v) -> dw``: ``sum_s J2(x_s)^T v_s``, the **sum** over the batch
      (n_weights,), as the built-in kernels (the engine divides by B); needed only with
      weights.
    - the widths: ``super().__init__(d_in, d_out)`` (``elementwise = True`` makes d_out the
      input width), ``n_weights`` (a class attribute, a property, or set in ``__init__``), and
      optionally ``init_weights(rng)``. With ``labels`` set ("sign", "class" or "target"), each
      method also receives ``labels=`` (B, k).

    The arrays the compiled engine passes are read-only views of its buffers, valid during the
    call only (copy what you keep); the methods must be deterministic, so that both engines see
    the same values. An exception inside a callback stops the run and is raised by ``fc.run``.

    Parameters
    ----------
    d_in : int, optional
        Input width per sample; None until the cascade binds it.
    d_out : int, optional
        Output width per sample (an elementwise operator ignores it and uses ``d_in``).

    Attributes
    ----------
    kind : str
        Key of the compiled kernel (``fastcascade._kernels._ops.OP_CODES``); "python" for a
        Python-defined operator.
    labels : {None, "sign", "class", "target"}
        What the operator reads from the sample's label row: a +-1 label, an integer class, or a
        target vector of width ``d_in``.

    Examples
    --------
    >>> import numpy as np, fastcascade as fc
    >>> class Cube(fc.ops.Operator):
    ...     elementwise = True
    ...     def forward(self, w, x):
    ...         return x ** 3
    ...     def vjp_input(self, w, x, y, v):
    ...         return v * 3.0 * x ** 2
    >>> op = Cube(2)
    >>> op.is_python, op.vjp(np.array([[1.0, 2.0]]), np.ones((1, 2)))[0]
    (True, array([[ 3., 12.]]))
    """

    kind = "identity"
    labels: str | None = None
    elementwise = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # a subclass that defines forward is Python-defined (the built-ins never do)
        # (a CompiledOperator stays compiled: its forward, if any, is a twin for tests)
        if "forward" in cls.__dict__ and "kind" not in cls.__dict__ and cls.kind != "compiled":
            cls.kind = "python"

    @property
    def is_python(self):
        """Whether the operator is Python-defined (the compiled engine calls it back)."""
        return self.kind == "python"

    def __init__(self, d_in=None, d_out=None):
        # the raw values first, so that the error messages below can show the operator's repr
        self.d_in, self._d_out = d_in, d_out
        self.d_in = None if d_in is None else check_positive_int(d_in, "d_in", self)
        self._d_out = None if d_out is None else check_positive_int(d_out, "d_out", self)

    # -- shape -------------------------------------------------------------------------------
    @property
    def d_out(self):
        """Output width per sample (None until the input width is known)."""
        if self.elementwise:
            return self.d_in
        return self._d_out

    @property
    def n_weights(self):
        """Number of trainable weights (None until the input width is known)."""
        return self.__dict__.get("_n_weights", 0)

    @n_weights.setter
    def n_weights(self, value):
        self.__dict__["_n_weights"] = check_positive_int(value, "n_weights", self,
                                                         allow_zero=True)

    def bound(self, d_in):
        """A copy of this operator with input width ``d_in`` (checked against a given width).

        Parameters
        ----------
        d_in : int
            The width of the previous operator's output, or of the data.

        Returns
        -------
        Operator
            A shallow copy with ``d_in`` set (ValueError when it contradicts the constructed one).
        """
        d_in = check_positive_int(int(d_in), "d_in", self)
        if self.d_in is not None and self.d_in != d_in:
            raise ValueError(
                f"{self!r}: d_in: expected {self.d_in} (as constructed), given {d_in} "
                "(the width of the previous operator's output or of the data)")
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.__dict__.pop("_callback_token", None)   # another object: registered on its own
        new.d_in = d_in
        return new

    # -- plan --------------------------------------------------------------------------------
    @property
    def flag(self):
        """The operator's flag in the engine's operator table: 0 here (``Linear``: bias; ``LQStep``:
        m).
        """
        return 0

    def params(self):
        """Fixed (non-trainable) parameters, flattened.

        Returns
        -------
        numpy.ndarray
            float64, empty here; the operator's matrices row-major for the fixed-matrix operators.
        """
        return np.zeros(0)

    def plan_row(self, w_off=0, p_off=0):
        """The operator's row in the engine's operator table (see ``_types.pxd``).

        Parameters
        ----------
        w_off : int, default 0
            Offset of w_i in the flat weight vector.
        p_off : int, default 0
            Offset of the operator's fixed parameters in the plan's ``params``.

        Returns
        -------
        numpy.ndarray
            int64 (7,): code, flag, d_in, d_out, n_weights, w_off, p_off.
        """
        self._require_bound()
        flag = self.callback_token() if self.kind in ("python", "compiled") else self.flag
        row = np.zeros(_ops.OPDESC_FIELDS, dtype=np.int64)
        for name, value in (("code", _ops.OP_CODES[self.kind]), ("flag", flag),
                            ("d_in", self.d_in), ("d_out", self.d_out),
                            ("n_weights", self.n_weights), ("w_off", w_off), ("p_off", p_off)):
            row[_ops.OP_COLUMNS[name]] = value   # the columns the kernels read (_types.pxd)
        return row

    def callback_token(self):
        """The token by which the compiled engine finds this Python-defined operator.

        Registered on first use (a weak reference: the registry does not keep the operator
        alive); the flag column of its plan row.

        Returns
        -------
        int
            A positive int below 2**31.
        """
        token = self.__dict__.get("_callback_token")
        if token is None:
            token = self.__dict__["_callback_token"] = self._register(None)
        return token

    def _register(self, token):
        return _ops.register_python_operator(self, token)

    def __setstate__(self, state):
        self.__dict__.update(state)
        token = state.get("_callback_token")
        if token is not None:   # unpickled (another process, or a copy): register it here
            self.__dict__["_callback_token"] = self._register(token)

    def init_weights(self, rng):
        """Random initial weights: N(0, 1/d_in) entries (ValueError before ``d_in`` is known).

        Parameters
        ----------
        rng : numpy.random.Generator
            The initialisers' generator (``Cascade.init_weights`` seeds it; not a run stream).

        Returns
        -------
        numpy.ndarray
            float64 (n_weights,).
        """
        self._require_bound()
        return rng.normal(0.0, 1.0 / np.sqrt(self.d_in), size=self.n_weights)

    # -- evaluation (compiled kernels) --------------------------------------------------------
    def forward(self, z, w=None, labels=None):
        """f(z, w) on a batch (compiled kernel).

        Parameters
        ----------
        z : array_like
            float64 (B, d_in), one row per sample.
        w : array_like, optional
            float64 (n_weights,); None for an operator without weights.
        labels : array_like, optional
            float64 (B, k) label rows, needed when ``labels`` is not None.

        Returns
        -------
        numpy.ndarray
            float64 (B, d_out).
        """
        op, z, w, lab = self._arguments(z, w, labels)
        out = _ops.forward(op.plan_row(), w, op.params(), z, lab)
        _raise_callback_errors()
        return out

    def vjp(self, z, g, w=None, labels=None):
        """Vector-Jacobian products at ``z`` with output cotangent ``g`` (compiled kernel).

        Parameters
        ----------
        z : array_like
            float64 (B, d_in): the point, one row per sample.
        g : array_like
            float64 (B, d_out): the output cotangent (~v_i in Eq. 5).
        w : array_like, optional
            float64 (n_weights,).
        labels : array_like, optional
            float64 (B, k) label rows, needed when ``labels`` is not None.

        Returns
        -------
        g_in : ndarray (B, d_in)
            ``J1(z_s)^T g_s`` for each sample.
        g_w : ndarray (n_weights,)
            ``sum_s J2(z_s)^T g_s``, summed over the batch.
        """
        op, z, w, lab = self._arguments(z, w, labels)
        g = as_float_array(g, "g", ndim=2)
        if g.shape != (z.shape[0], op.d_out):
            raise ValueError(f"{op!r}: g: expected shape {(z.shape[0], op.d_out)}, "
                             f"given {g.shape}")
        out = _ops.vjp(op.plan_row(), w, op.params(), z, g, lab)
        _raise_callback_errors()
        return out

    def vjp_input(self, w, x, y, v, labels=None):
        """J1(x_s)^T v_s per sample: a Python-defined operator's contract (see the class).

        A built-in operator answers with its compiled kernel; a Python-defined one must define
        it (NotImplementedError here).

        Parameters
        ----------
        w : numpy.ndarray
            float64 (n_weights,).
        x : numpy.ndarray
            float64 (B, d_in), the operator's input.
        y : numpy.ndarray
            float64 (B, d_out), ``forward`` at x (unused by the built-ins).
        v : numpy.ndarray
            float64 (B, d_out), the output cotangent.
        labels : numpy.ndarray, optional
            float64 (B, k), for operators that read labels.

        Returns
        -------
        numpy.ndarray
            float64 (B, d_in).
        """
        if self.is_python:
            raise NotImplementedError(f"{type(self).__name__}.vjp_input: a Python-defined "
                                      "operator must define vjp_input(w, x, y, v)")
        return self.vjp(x, v, w, labels)[0]

    def vjp_weights(self, w, x, y, v, labels=None):
        """sum_s J2(x_s)^T v_s, summed over the batch: the contract (see the class).

        A built-in operator answers with its compiled kernel; a Python-defined one with weights
        must define it (without weights, the empty gradient is returned here).

        Parameters
        ----------
        w : numpy.ndarray
            float64 (n_weights,).
        x : numpy.ndarray
            float64 (B, d_in), the operator's input.
        y : numpy.ndarray
            float64 (B, d_out), ``forward`` at x (unused by the built-ins).
        v : numpy.ndarray
            float64 (B, d_out), the output cotangent.
        labels : numpy.ndarray, optional
            float64 (B, k), for operators that read labels.

        Returns
        -------
        numpy.ndarray
            float64 (n_weights,).
        """
        if self.is_python:
            if not self.n_weights:
                return np.zeros(0)
            raise NotImplementedError(f"{type(self).__name__}.vjp_weights: a Python-defined "
                                      "operator with weights must define "
                                      "vjp_weights(w, x, y, v)")
        return self.vjp(x, v, w, labels)[1]

    def _arguments(self, z, w, labels):
        """Validate one batch's arguments; returns the operator bound to z's width and arrays."""
        z = as_float_array(z, "z", ndim=2)
        op = self if self.d_in is not None else self.bound(z.shape[1])
        if z.shape[1] != op.d_in:
            raise ValueError(f"{op!r}: z: expected {op.d_in} columns, given {z.shape[1]}")
        w = np.zeros(0) if w is None else as_float_array(w, "w", ndim=1)
        if w.shape[0] != op.n_weights:
            raise ValueError(f"{op!r}: w: expected {op.n_weights} weights, given {w.shape[0]}")
        if op.labels is None:
            lab = _NO_LABELS
        else:
            if labels is None:
                raise ValueError(f"{op!r}: labels: this operator reads {op.labels} labels, "
                                 "given None")
            lab = as_float_array(labels, "labels", ndim=2)
            if lab.shape[0] != z.shape[0] or lab.shape[1] < op.label_width():
                raise ValueError(f"{op!r}: labels: expected shape ({z.shape[0]}, >= "
                                 f"{op.label_width()}), given {lab.shape}")
            check_label_values(op, lab)
        return op, z, w, lab

    def label_width(self):
        """Columns of the label row the operator reads.

        Returns
        -------
        int
            0 without labels, 1 for a sign or a class (``SquaredError``: ``d_in``).
        """
        return 0 if self.labels is None else 1

    def _require_bound(self):
        if self.d_in is None:
            raise ValueError(f"{self!r}: d_in: unknown; give it to the operator or bind the "
                             "cascade to data (fc.Problem) or pass Cascade(..., input_dim=)")

    def __repr__(self):
        return f"{type(self).__name__}({'' if self.d_in is None else self.d_in})"

    def __eq__(self, other):
        return type(self) is type(other) and _state(self) == _state(other)

    def __hash__(self):
        return hash(type(self).__name__)


def _raise_callback_errors():
    errors = _ops.take_callback_errors()
    if errors:
        raise errors[0]


def _state(op):
    return {k: (v.tobytes() if isinstance(v, np.ndarray) else v) for k, v in op.__dict__.items()
            if k != "_callback_token"}


def check_label_values(op, lab):
    """Raise ValueError when the label rows are not what ``op`` reads.

    "sign" operators need +-1 in column 0; "class" operators an integer in [0, d_in).

    Parameters
    ----------
    op : Operator
        A bound operator.
    lab : numpy.ndarray
        float64 (B, k) label rows.
    """
    if op.labels == "sign":
        col = lab[:, 0]
        if not np.all((col == 1.0) | (col == -1.0)):
            bad = col[(col != 1.0) & (col != -1.0)][0]
            raise ValueError(f"{op!r}: labels: expected +1 or -1, given {float(bad)!r}")
    elif op.labels == "class":
        col = lab[:, 0]
        ok = (col == np.floor(col)) & (col >= 0) & (col < op.d_in)
        if not np.all(ok):
            bad = col[~ok][0]
            raise ValueError(f"{op!r}: labels: expected integer classes in [0, {op.d_in}), "
                             f"given {float(bad)!r}")


class _Elementwise(Operator):
    elementwise = True

    def __init__(self, d=None):
        super().__init__(d_in=d)


class Identity(_Elementwise):
    """y = z. Useful as a site where noise is injected (Eq. 5, docs/model.md sec. 2, delta_i).

    Parameters
    ----------
    d : int, optional
        Width per sample (input and output); taken from the previous operator or the data when
        omitted.
    """

    kind = "identity"


class Softplus(_Elementwise):
    """y = ln(1 + e^z) per element, stable for large |z| (the paper's f_2).

    Parameters
    ----------
    d : int, optional
        Width per sample (input and output); taken from the previous operator or the data when
        omitted.
    """

    kind = "softplus"


class Sigmoid(_Elementwise):
    """y = 1 / (1 + e^-z) per element.

    Parameters
    ----------
    d : int, optional
        Width per sample (input and output); taken from the previous operator or the data when
        omitted.
    """

    kind = "sigmoid"


class Tanh(_Elementwise):
    """y = tanh(z) per element.

    Parameters
    ----------
    d : int, optional
        Width per sample (input and output); taken from the previous operator or the data when
        omitted.
    """

    kind = "tanh"


class ReLU(_Elementwise):
    """y = max(z, 0) per element (derivative 0 at z = 0).

    Parameters
    ----------
    d : int, optional
        Width per sample (input and output); taken from the previous operator or the data when
        omitted.
    """

    kind = "relu"


class Margin(Operator):
    """The paper's f_1: y = -label * <z, w>, one scalar per sample; weights w in R^d.

    Reads a +-1 label per sample. With ``Softplus`` after it, the cascade is logistic regression
    (docs/model.md sec. 6).

    Parameters
    ----------
    n_features : int, optional
        d, the input width; taken from the data when omitted.
    """

    kind = "margin"
    labels = "sign"

    def __init__(self, n_features=None):
        super().__init__(d_in=n_features, d_out=1)

    @property  # type: ignore[misc]  # read-only here; the base lets Python ops set it
    def n_weights(self):
        """d: one weight per input coordinate."""
        return self.d_in

    def init_weights(self, rng):
        """Random initial weights: N(0, 1/d) entries.

        Parameters
        ----------
        rng : numpy.random.Generator
            The initialisers' generator (``Cascade.init_weights`` seeds it; not a run stream).

        Returns
        -------
        numpy.ndarray
            float64 (n_weights,).
        """
        self._require_bound()
        return rng.normal(0.0, 1.0 / np.sqrt(self.d_in), size=self.d_in)


class InnerSquare(Operator):
    """y = <z, w>^2 + ||z||^2 / 2, one scalar per sample (appendix A.3's f_2); weights w in R^d.

    Parameters
    ----------
    d : int, optional
        The input width; taken from the previous operator when omitted.
    """

    kind = "inner_square"

    def __init__(self, d=None):
        super().__init__(d_in=d, d_out=1)

    @property  # type: ignore[misc]  # read-only here; the base lets Python ops set it
    def n_weights(self):
        """d: one weight per input coordinate."""
        return self.d_in


class Linear(Operator):
    """y = W z + b with W of shape (d_out, d_in) and an optional bias b.

    The flat weights are W row-major, then b.

    Parameters
    ----------
    d_in : int or None
        Input width; None takes it from the previous operator or the data.
    d_out : int
        Output width.
    bias : bool, default True
        Add the bias b.
    """

    kind = "linear"

    def __init__(self, d_in, d_out, bias=True):
        self.bias = bias  # raw, for the repr in the error messages of the checks below
        super().__init__(d_in=d_in, d_out=d_out)
        if d_out is None:
            raise ValueError(f"{self!r}: d_out: expected a positive integer, given None")
        if not isinstance(bias, (bool, np.bool_)):
            raise ValueError(f"{self!r}: bias: expected True or False, given {bias!r}")
        self.bias = bool(bias)

    @property
    def flag(self):
        """1 when the operator has a bias, else 0 (the engine's flag column)."""
        return int(self.bias)

    @property  # type: ignore[misc]  # read-only here; the base lets Python ops set it
    def n_weights(self):
        """``d_out * d_in`` (+ ``d_out`` with a bias); None until ``d_in`` is known."""
        if self.d_in is None:
            return None
        return self.d_out * self.d_in + (self.d_out if self.bias else 0)

    def init_weights(self, rng):
        # U(-1/sqrt(d_in), 1/sqrt(d_in)) for W and b, as common deep-learning libraries do
        """Random initial weights: U(-1/sqrt(d_in), 1/sqrt(d_in)) for W and b, as common
        deep-learning libraries do.

        Parameters
        ----------
        rng : numpy.random.Generator
            The initialisers' generator (``Cascade.init_weights`` seeds it; not a run stream).

        Returns
        -------
        numpy.ndarray
            float64 (n_weights,).
        """
        self._require_bound()
        bound = 1.0 / np.sqrt(self.d_in)
        return rng.uniform(-bound, bound, size=self.n_weights)

    def __repr__(self):
        return f"Linear({self.d_in}, {self._d_out}, bias={self.bias!r})"


class _FixedMatrix(Operator):
    def __init__(self, A):
        A = np.array(as_float_array(A, "A", ndim=2))  # a copy: later edits of A do not leak in
        if not np.all(np.isfinite(A)):
            raise ValueError(f"{type(self).__name__}: A: expected finite values, given NaN or inf")
        self.A = A  # before the width checks, whose error messages show the repr (A's shape)
        super().__init__(d_in=A.shape[1], d_out=A.shape[0])

    def params(self):
        """The fixed matrix A, row-major.

        Returns
        -------
        numpy.ndarray
            float64 (d_out * d_in,).
        """
        return self.A.ravel()

    def __repr__(self):
        return f"{type(self).__name__}(A with shape {self.A.shape})"


class FixedLinear(_FixedMatrix):
    """y = A z with a fixed matrix A (no weights).

    Parameters
    ----------
    A : array_like
        float64 (d_out, d_in), finite; copied.
    """

    kind = "fixed_linear"


class DiagLinear(_FixedMatrix):
    """y = A (z * w): a fixed matrix A after an elementwise scaling by the weights w in R^d_in.

    Appendix A.3's f_1(x, w_1) = A (x * w_1).

    Parameters
    ----------
    A : array_like
        float64 (d_out, d_in), finite; copied.
    """

    kind = "diag_linear"

    @property  # type: ignore[misc]  # read-only here; the base lets Python ops set it
    def n_weights(self):
        """d_in: one scale per input coordinate."""
        return self.d_in


class LogisticLoss(Operator):
    """y = ln(1 + exp(-label * z)) for a scalar score z and a +-1 label."""

    kind = "logistic_loss"
    labels = "sign"

    def __init__(self):
        super().__init__(d_in=1, d_out=1)


class SquaredError(Operator):
    """y = ||z - t||^2 / 2 with the target t = the first d_in columns of the label row.

    Parameters
    ----------
    d : int, optional
        The input (and target) width; taken from the previous operator when omitted.
    """

    kind = "squared_error"
    labels = "target"

    def __init__(self, d=None):
        super().__init__(d_in=d, d_out=1)

    def label_width(self):
        """Columns of the label row read: ``d_in``, the target's width.

        Returns
        -------
        int
        """
        return self.d_in


class SoftmaxCrossEntropy(Operator):
    """y = logsumexp(z) - z[c] for logits z in R^K and an integer class c in [0, K).

    Parameters
    ----------
    n_classes : int, optional
        K, the input width; taken from the previous operator when omitted.
    """

    kind = "softmax_xent"
    labels = "class"

    def __init__(self, n_classes=None):
        super().__init__(d_in=n_classes, d_out=1)


class LQStep(Operator):
    """One step of linear-quadratic control on the state [x; c] (x in R^n, c the running cost):

        [x; c] -> [(A + B K) x;  c + x^T Q x + u^T R u],   u = K x,

    with the linear policy K (m x n, row-major) as the weights and A (n x n), B (n x m),
    Q (n x n), R (m x m) fixed. A forward perturbation at this operator perturbs the whole
    output, the cost coordinate included.

    Parameters
    ----------
    A : array_like
        float64 (n, n), the dynamics.
    B : array_like
        float64 (n, m), the control matrix.
    Q : array_like, optional
        float64 (n, n), the state cost; identity by default.
    R : array_like, optional
        float64 (m, m), the control cost; identity by default.
    """

    kind = "lq_step"

    def __init__(self, A, B, Q=None, R=None):
        A = np.array(as_float_array(A, "A", ndim=2))
        B = np.array(as_float_array(B, "B", ndim=2))
        n, m = A.shape[0], B.shape[1]
        Q = np.eye(n) if Q is None else np.array(as_float_array(Q, "Q", ndim=2))
        R = np.eye(m) if R is None else np.array(as_float_array(R, "R", ndim=2))
        self.A, self.B, self.Q, self.R = A, B, Q, R
        for name, M, shape in (("A", A, (n, n)), ("B", B, (n, m)), ("Q", Q, (n, n)),
                               ("R", R, (m, m))):
            if M.shape != shape:
                raise ValueError(f"LQStep: {name}: expected shape {shape}, given {M.shape}")
            if not np.all(np.isfinite(M)):
                raise ValueError(f"LQStep: {name}: expected finite values, given NaN or inf")
        super().__init__(d_in=n + 1, d_out=n + 1)

    @property
    def flag(self):
        """m, the control width (the engine's flag column)."""
        return self.B.shape[1]

    @property  # type: ignore[misc]  # read-only here; the base lets Python ops set it
    def n_weights(self):
        """m n: the entries of the policy K."""
        return self.B.shape[1] * self.A.shape[0]

    def params(self):
        """A, B, Q and R, each row-major, concatenated.

        Returns
        -------
        numpy.ndarray
            float64 (n n + n m + n n + m m,).
        """
        return np.concatenate([self.A.ravel(), self.B.ravel(), self.Q.ravel(), self.R.ravel()])

    def init_weights(self, rng):
        """Random initial weights: N(0, 0.01/n) entries of K (a small policy).

        Parameters
        ----------
        rng : numpy.random.Generator
            The initialisers' generator (``Cascade.init_weights`` seeds it; not a run stream).

        Returns
        -------
        numpy.ndarray
            float64 (n_weights,).
        """
        return rng.normal(0.0, 0.1 / np.sqrt(self.A.shape[0]), size=self.n_weights)

    def __repr__(self):
        return f"LQStep(n={self.A.shape[0]}, m={self.B.shape[1]})"


class LQTerminal(Operator):
    """The terminal cost of linear-quadratic control: [x; c] -> c + x^T Qf x (no weights).

    Parameters
    ----------
    Qf : array_like
        float64 (n, n), finite and square: the terminal state cost.
    """

    kind = "lq_terminal"

    def __init__(self, Qf):
        Qf = np.array(as_float_array(Qf, "Qf", ndim=2))
        if Qf.shape[0] != Qf.shape[1] or not np.all(np.isfinite(Qf)):
            raise ValueError(f"LQTerminal: Qf: expected a finite square matrix, given shape "
                             f"{Qf.shape}")
        self.Qf = Qf
        super().__init__(d_in=Qf.shape[0] + 1, d_out=1)

    def params(self):
        """Qf, row-major.

        Returns
        -------
        numpy.ndarray
            float64 (n n,).
        """
        return self.Qf.ravel()

    def __repr__(self):
        return f"LQTerminal(n={self.Qf.shape[0]})"


# ---------------------------------------------------------------------------------------------
# The compiled extension point

class CompiledOperator(Operator):
    """Base class of an operator whose kernels a user compiled (``fastcascade/extension.pxd``).

    The user's Cython (or C) module fills a ``fc_operator`` struct with three ``nogil``
    functions (forward, vjp_input, and vjp_weights adding the batch sum) and returns it in a
    PyCapsule; a subclass of this class sets the widths and ``n_weights`` as any operator does
    and returns that capsule from :meth:`capsule`. The compiled engine then calls the functions
    without the GIL, as fast as a built-in; ``engine="numpy"`` calls them too (through
    ``Operator.forward`` and ``Operator.vjp``). Build the module with
    ``include_dirs=[fastcascade.get_include()]``; ``examples/compiled_operator`` is a complete
    package (with a Python twin to test against). Labels are not passed to compiled operators.

    Parameters
    ----------
    d_in : int, optional
        Input width per sample; None until the cascade binds it.
    d_out : int, optional
        Output width per sample (``elementwise = True`` uses ``d_in``).
    """

    kind = "compiled"

    def capsule(self):
        """The PyCapsule (named "fastcascade.operator") of the operator's ``fc_operator``.

        Returns
        -------
        PyCapsule
            To be given by each subclass (NotImplementedError here).
        """
        raise NotImplementedError(f"{type(self).__name__}.capsule: return the capsule of the "
                                  "operator's fc_operator (fastcascade/extension.pxd)")

    def _register(self, token):
        return _ops.register_compiled_operator(self, self.capsule(), token)

    def init_weights(self, rng):
        """Random initial weights: N(0, 1/d_in) entries (override for another law).

        Parameters
        ----------
        rng : numpy.random.Generator
            The initialisers' generator.

        Returns
        -------
        numpy.ndarray
            float64 (n_weights,).
        """
        return super().init_weights(rng)


# ---------------------------------------------------------------------------------------------
# Python-defined operators shipped with the package: the unrolled optimisation of the paper's
# Example 2 (docs/model.md sec. 1), f_t(y, gamma_t) = y - gamma_t grad g(y).

def _symmetric_matrix(A, owner):
    A = np.array(as_float_array(A, "A", ndim=2))
    if A.shape[0] != A.shape[1] or not np.all(np.isfinite(A)):
        raise ParameterError("A", A, "a finite square matrix", owner, given=f"shape {A.shape}")
    if not np.allclose(A, A.T, rtol=1e-12, atol=0.0):
        raise ParameterError("A", A, "a symmetric matrix (the Hessian of g)", owner,
                             given="not symmetric")
    return A


class GradientStep(Operator):
    """One step of gradient descent on an inner objective g: y = x - gamma grad g(x).

    The step size gamma is the operator's one weight; a cascade of these, followed by
    :class:`Quadratic`, is the unrolled optimisation whose weights are the step-size schedule
    (the paper's Example 2; ``fc.problems.step_size_schedule``). Here g(x) = x^T A x / 2 with a
    fixed symmetric A, so grad g(x) = A x; a subclass may override ``grad`` and ``hvp`` for
    another g. A Python-defined operator: the compiled engine calls it back (with the GIL).

    Parameters
    ----------
    A : array_like
        float64 (d, d), symmetric: the Hessian of g.
    init : float, default 0.5
        The step size ``init_weights`` returns (deterministic).

    Examples
    --------
    >>> import numpy as np, fastcascade as fc
    >>> op = fc.ops.GradientStep(np.diag([1.0, 2.0]))
    >>> op.forward(np.array([0.25]), np.array([[1.0, 1.0]]))
    array([[0.75, 0.5 ]])
    """

    n_weights = 1

    def __init__(self, A, init=0.5):
        self.A = _symmetric_matrix(A, "GradientStep")
        self.init = check_real(init, "init", "GradientStep")
        super().__init__(d_in=self.A.shape[0], d_out=self.A.shape[0])

    def grad(self, x):
        """grad g at each row of x: ``x A`` (A symmetric).

        Parameters
        ----------
        x : numpy.ndarray
            float64 (B, d).

        Returns
        -------
        numpy.ndarray
            float64 (B, d).
        """
        return x @ self.A

    def hvp(self, x, v):
        """The Hessian of g at each row of x times the row of v: ``v A``.

        Parameters
        ----------
        x : numpy.ndarray
            float64 (B, d), the points.
        v : numpy.ndarray
            float64 (B, d), the vectors.

        Returns
        -------
        numpy.ndarray
            float64 (B, d).
        """
        return v @ self.A

    def init_weights(self, rng):
        """The initial step size, ``[init]`` (no draw).

        Parameters
        ----------
        rng : numpy.random.Generator
            Unused.

        Returns
        -------
        numpy.ndarray
            float64 (1,).
        """
        return np.array([self.init])

    def forward(self, w, x):
        """y = x - gamma grad g(x), gamma = w[0].

        Parameters
        ----------
        w : numpy.ndarray
            float64 (1,): the step size.
        x : numpy.ndarray
            float64 (B, d).

        Returns
        -------
        numpy.ndarray
            float64 (B, d).
        """
        return x - w[0] * self.grad(x)

    def vjp_input(self, w, x, y, v):
        """J1^T v = v - gamma H(x) v (the Hessian H of g is symmetric).

        Parameters
        ----------
        w : numpy.ndarray
            float64 (1,): the step size.
        x : numpy.ndarray
            float64 (B, d), the input.
        y : numpy.ndarray
            float64 (B, d), ``forward(w, x)`` (unused).
        v : numpy.ndarray
            float64 (B, d), the output cotangent.

        Returns
        -------
        numpy.ndarray
            float64 (B, d).
        """
        # y = x - gamma grad g(x): d/dx = I - gamma H(x), symmetric
        return v - w[0] * self.hvp(x, v)

    def vjp_weights(self, w, x, y, v):
        """sum_s J2(x_s)^T v_s = -sum_s <grad g(x_s), v_s>.

        Parameters
        ----------
        w : numpy.ndarray
            float64 (1,): the step size.
        x : numpy.ndarray
            float64 (B, d), the input.
        y : numpy.ndarray
            float64 (B, d), ``forward(w, x)`` (unused).
        v : numpy.ndarray
            float64 (B, d), the output cotangent.

        Returns
        -------
        numpy.ndarray
            float64 (1,).
        """
        # y = x - gamma grad g(x): d/dgamma = -grad g(x)
        return np.array([-np.sum(self.grad(x) * v)])

    def __repr__(self):
        return f"GradientStep(d={self.A.shape[0]})"


class Quadratic(Operator):
    """y = x^T A x / 2 per sample, for a fixed symmetric A (no weights): the inner objective
    g of :class:`GradientStep` as the cascade's loss. A Python-defined operator.

    Parameters
    ----------
    A : array_like
        float64 (d, d), symmetric.
    """

    def __init__(self, A):
        self.A = _symmetric_matrix(A, "Quadratic")
        super().__init__(d_in=self.A.shape[0], d_out=1)

    def forward(self, w, x):
        """y_s = x_s^T A x_s / 2.

        Parameters
        ----------
        w : numpy.ndarray
            float64 (0,).
        x : numpy.ndarray
            float64 (B, d).

        Returns
        -------
        numpy.ndarray
            float64 (B, 1).
        """
        return 0.5 * np.sum((x @ self.A) * x, axis=1, keepdims=True)

    def vjp_input(self, w, x, y, v):
        """J1^T v = v_s A x_s per sample.

        Parameters
        ----------
        w : numpy.ndarray
            float64 (0,).
        x : numpy.ndarray
            float64 (B, d), the input.
        y : numpy.ndarray
            float64 (B, 1), ``forward(w, x)`` (unused).
        v : numpy.ndarray
            float64 (B, 1), the output cotangent.

        Returns
        -------
        numpy.ndarray
            float64 (B, d).
        """
        # y = x^T A x / 2: d/dx = A x (A symmetric)
        return v * (x @ self.A)

    def __repr__(self):
        return f"Quadratic(d={self.A.shape[0]})"
