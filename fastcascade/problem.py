"""A problem: a cascade, its data and a regularizer; l(w) = mean_l F(x_l; w) + R(w) (Eq. 1).

Examples
--------
>>> import fastcascade as fc
>>> data = fc.datasets.synthetic_logistic(200, 5, seed=1)
>>> problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), data,
...                      regularizer=fc.reg.NonConvex(rho=1e-3))
>>> w = problem.init_weights()
>>> round(problem.objective(w), 6)      # ln 2 at w = 0
0.693147
"""
from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fastcascade import _callbacks
from fastcascade._kernels import _engine
from fastcascade._typing import Seed
from fastcascade.cascade import Cascade
from fastcascade.datasets import Dataset, as_dataset
from fastcascade.ops import check_label_values
from fastcascade.reg import Regularizer, as_regularizer

__all__ = ["Problem"]


class Problem:
    """A cascade bound to its data and regularizer.

    Parameters
    ----------
    cascade : Cascade
    data : fastcascade.datasets.Dataset or tuple (X, y)
    regularizer : fastcascade.reg.Regularizer, optional (default: none)

    Attributes
    ----------
    cascade : Cascade (bound to the data's width)
    data : Dataset
    regularizer : Regularizer
    plan : fastcascade.cascade.Plan
    """

    def __init__(self, cascade: Cascade, data: Dataset | tuple[npt.ArrayLike, npt.ArrayLike],
                 regularizer: Regularizer | None = None):
        if not isinstance(cascade, Cascade):
            raise ValueError(f"cascade: expected a fastcascade.Cascade, given {cascade!r}")
        self.data = as_dataset(data)
        self.cascade = cascade.bind(self.data.n_features)
        self.regularizer = as_regularizer(regularizer)
        for i, op in enumerate(self.cascade.operators, start=1):
            if op.labels is None:
                continue
            if self.data.y.shape[1] < op.label_width():
                raise ValueError(f"operator {i} ({op!r}): labels: reads {op.label_width()} label "
                                 f"column(s), the data has {self.data.y.shape[1]}")
            try:
                check_label_values(op, self.data.y)
            except ValueError as exc:
                detail = str(exc).split(": ", 1)[1]  # drop the operator's repr, said here
                raise ValueError(f"operator {i} ({op!r}): {detail}") from None
        self.plan = self.cascade.lower()

    def __setstate__(self, state):
        self.__dict__.update(state)
        # unpickled or copied: the plan names Python-defined and compiled operators by their
        # registry tokens, which the copies of the operators have just been given anew
        self.plan = self.cascade.lower()

    @property
    def n_weights(self) -> int:
        """Length of the flat weight vector w, ``plan.n_weights``."""
        return self.plan.n_weights

    @property
    def n_samples(self) -> int:
        """M, the number of samples of the data."""
        return self.data.n_samples

    def init_weights(self, seed: Seed | None = None) -> np.ndarray:
        """Zeros, or the operators' seeded initialisers (see ``Cascade.init_weights``).

        Parameters
        ----------
        seed : int or None, default None
            None gives zeros.

        Returns
        -------
        numpy.ndarray
            float64 (n_weights,).
        """
        return self.cascade.init_weights(seed)

    def objective(self, w: npt.ArrayLike) -> float:
        """Clean full-data objective l(w) = (1/M) sum_l F(x_l; w) + R(w) (Eq. 1, compiled).

        Parameters
        ----------
        w : array_like of float (n_weights,)
            The flat weights (``Cascade.weight_slice`` gives each operator's part).

        Returns
        -------
        float
        """
        return self.objective_and_gradient(w)[0]

    def gradient(self, w: npt.ArrayLike) -> np.ndarray:
        """Clean full-data gradient of l at w (Eq. 1, compiled), regularizer included.

        Parameters
        ----------
        w : array_like of float (n_weights,)
            The flat weights (``Cascade.weight_slice`` gives each operator's part).

        Returns
        -------
        numpy.ndarray
            float64 (n_weights,).
        """
        return self.objective_and_gradient(w)[1]

    def objective_and_gradient(self, w: npt.ArrayLike) -> tuple[float, np.ndarray]:
        """(l(w), grad l(w)) in one clean forward/backward pass over all samples (compiled).

        No perturbation and no random stream is involved.

        Parameters
        ----------
        w : array_like of float (n_weights,)
            The flat weights (``Cascade.weight_slice`` gives each operator's part).

        Returns
        -------
        value : float
            l(w), the regularizer included.
        grad : numpy.ndarray
            float64 (n_weights,).
        """
        w = self.cascade.check_weights(w)
        grad = np.zeros_like(w)
        value = _engine.clean_objective_gradient(
            self.plan.op_table, self.plan.params, self.data.X, self.data.y, w,
            self.regularizer.kernel_code, self.regularizer.kernel_scale, grad)
        _callbacks.raise_pending()   # from a Python-defined operator's callback
        return value, grad

    def __repr__(self):
        return (f"Problem({self.cascade!r}, {self.data!r}, regularizer={self.regularizer!r})")
