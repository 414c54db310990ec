"""The cascade f_N o ... o f_1 (Eq. 1, docs/model.md section 1) and its flat plan for the engine.

Examples
--------
>>> import fastcascade as fc
>>> c = fc.Cascade([fc.ops.Linear(4, 8), fc.ops.Tanh(), fc.ops.Linear(8, 1), fc.ops.Softplus()])
>>> c.n_weights, c.dims
(49, (4, 8, 8, 1, 1))
>>> c.weight_slice(3)
slice(40, 49, None)
"""
from __future__ import annotations

from dataclasses import dataclass

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from fastcascade.ops import Operator
from fastcascade._validation import as_float_array, as_list_of, check_positive_int
from fastcascade._typing import Seed
from fastcascade.errors import ParameterError, ParameterTypeError

__all__ = ["Cascade", "Plan"]


@dataclass(frozen=True)
class Plan:
    """What the engine runs: flat C data (see ``fastcascade/_kernels/_types.pxd``).

    Parameters
    ----------
    op_table : numpy.ndarray
        int64 (N, 7), one row per operator: code, flag, d_in, d_out, n_w, w_off, p_off.
    params : numpy.ndarray
        float64, the operators' fixed parameters, concatenated.
    dims : tuple of int
        (d_0, ..., d_N): widths of y_0 = x, ..., y_N.
    n_weights : int
        Length of the flat weight vector.
    """

    op_table: np.ndarray
    params: np.ndarray
    dims: tuple
    n_weights: int


class Cascade:
    """A composition of operators, f_N o ... o f_1; operator indices are 1-based as in the paper.

    Parameters
    ----------
    operators : sequence of fastcascade.ops.Operator
    input_dim : int, optional
        Width of the input x. Without it, the cascade takes the width of the data when a
        ``fc.Problem`` binds it (``problem.cascade`` is the bound cascade).

    Raises
    ------
    ValueError
        When widths do not link (d_out of f_i must equal d_in of f_{i+1}) or the last operator
        does not yield one scalar per sample; the message names the operator index.
    """

    def __init__(self, operators: Sequence[Operator], input_dim: int | None = None):
        operators = as_list_of(operators, "operators", Operator,
                               "a sequence of fastcascade.ops.Operator")
        if not operators:
            raise ParameterError("operators", operators, "at least one operator")
        for i, op in enumerate(operators, start=1):
            if not isinstance(op, Operator):
                raise ParameterTypeError(f"operators[{i - 1}]", op,
                                         f"a fastcascade.ops.Operator (operator {i})")
        self.operators = tuple(operators)
        self.input_dim = None
        if input_dim is not None:
            self._link(check_positive_int(input_dim, "input_dim"))
        elif operators[0].d_in is not None:
            self._link(operators[0].d_in)

    def _link(self, input_dim):
        bound = []
        width = input_dim
        for i, op in enumerate(self.operators, start=1):
            if op.d_in is not None and op.d_in != width:
                source = "the input" if i == 1 else f"the output width of operator {i - 1}"
                raise ParameterError(f"operators[{i - 1}].d_in", op.d_in, f"{width} ({source})",
                                     owner=f"operator {i} ({op!r})")
            op = op.bound(width)
            bound.append(op)
            width = op.d_out
        if width != 1:
            raise ParameterError(f"operators[{len(bound) - 1}].d_out", width,
                                 "1 (the last operator must yield one scalar per sample, "
                                 "d_out = 1)", owner=f"operator {len(bound)} ({bound[-1]!r})")
        self.operators = tuple(bound)
        self.input_dim = input_dim

    def bind(self, input_dim: int) -> Cascade:
        """This cascade with its input width fixed to ``input_dim``.

        Parameters
        ----------
        input_dim : int
            Width d_0 of the data.

        Returns
        -------
        Cascade
            ``self`` when its width is already ``input_dim``, else a new, linked cascade
            (ValueError when this one is bound to another width).
        """
        if self.input_dim == input_dim:
            return self
        if self.input_dim is not None:
            raise ValueError(f"input_dim: the cascade takes inputs of width {self.input_dim}, "
                             f"given data of width {input_dim}")
        return Cascade(self.operators, input_dim=input_dim)

    # -- layout ------------------------------------------------------------------------------
    @property
    def n_ops(self) -> int:
        """N, the number of operators."""
        return len(self.operators)

    def __len__(self) -> int:
        return self.n_ops

    def _require_bound(self, what):
        if self.input_dim is None:
            raise ValueError(f"{what}: depends on the input width, which this cascade does not "
                             "know yet; pass Cascade(..., input_dim=) or use problem.cascade")

    @property
    def dims(self) -> tuple[int, ...]:
        """(d_0, d_1, ..., d_N): the widths of x = y_0 and of each operator's output."""
        self._require_bound("dims")
        return (self.input_dim,) + tuple(op.d_out for op in self.operators)

    @property
    def n_weights(self) -> int:
        """Length of the flat weight vector w = (w_1, ..., w_N)."""
        self._require_bound("n_weights")
        return int(sum(op.n_weights for op in self.operators))

    def weight_slice(self, i: int) -> slice:
        """The slice of the flat weight vector that holds w_i.

        Parameters
        ----------
        i : int
            1-based operator index, in 1..N (else ValueError).

        Returns
        -------
        slice
            ``w[cascade.weight_slice(i)]`` is w_i (empty for an operator without weights).
        """
        self._require_bound("weight_slice")
        i = self._check_index(i)
        start = sum(op.n_weights for op in self.operators[: i - 1])
        return slice(start, start + self.operators[i - 1].n_weights)

    def _check_index(self, i):
        ok = isinstance(i, (int, np.integer)) and not isinstance(i, bool) and 1 <= i <= self.n_ops
        if not ok:
            raise ValueError(f"op: expected an operator index in 1..{self.n_ops}, given {i!r}")
        return int(i)

    def init_weights(self, seed: Seed | None = None) -> np.ndarray:
        """Initial flat weights: zeros when ``seed`` is None, else each operator's random
        initialiser drawn from ``numpy.random.default_rng(seed)`` in operator order.

        Parameters
        ----------
        seed : int or None, default None
            Seed of the initialisers' generator (not one of the run's four streams).

        Returns
        -------
        numpy.ndarray
            float64 (n_weights,).
        """
        self._require_bound("init_weights")
        if seed is None:
            return np.zeros(self.n_weights)
        rng = np.random.default_rng(seed)
        parts = [op.init_weights(rng) for op in self.operators if op.n_weights]
        return np.concatenate(parts) if parts else np.zeros(0)

    def check_weights(self, w: npt.ArrayLike, name: str = "w", finite: bool = False
                      ) -> np.ndarray:
        """``w`` as a float64 vector of length ``n_weights``, or a ParameterError naming ``name``.

        Parameters
        ----------
        w : array_like
            The candidate weights.
        name : str, default "w"
            The parameter name the error reports.
        finite : bool, default False
            Also require finite entries.

        Returns
        -------
        numpy.ndarray
            float64 (n_weights,).
        """
        w = as_float_array(w, name, ndim=1, finite=finite)
        if w.shape[0] != self.n_weights:
            raise ParameterError(name, w, f"{self.n_weights} weights (cascade.n_weights)",
                                 given=f"{w.shape[0]}")
        return w

    # -- lowering ----------------------------------------------------------------------------
    def lower(self) -> Plan:
        """The flat :class:`Plan` the compiled engine runs.

        Returns
        -------
        Plan
            The operator table, the concatenated fixed parameters, ``dims`` and ``n_weights``
            (ValueError for a cascade without an input width).
        """
        self._require_bound("lower")
        rows, params = [], []
        w_off = p_off = 0
        for op in self.operators:
            rows.append(op.plan_row(w_off, p_off))
            p = np.asarray(op.params(), dtype=np.float64)
            params.append(p)
            w_off += op.n_weights
            p_off += p.size
        table = np.ascontiguousarray(np.stack(rows), dtype=np.int64)
        flat = np.ascontiguousarray(np.concatenate(params)) if params else np.zeros(0)
        return Plan(table, flat, self.dims, int(w_off))

    @property
    def label_width(self) -> int:
        """Columns of the label row that the operators read."""
        return max((op.label_width() for op in self.operators if op.labels), default=0)

    def __repr__(self):
        inner = ", ".join(repr(op) for op in self.operators)
        return f"Cascade([{inner}], input_dim={self.input_dim})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Cascade) and self.operators == other.operators
                and self.input_dim == other.input_dim)

    def __hash__(self):
        return hash((self.operators, self.input_dim))
