"""Regularizers R(w): exact, never perturbed (docs/model.md, section 1).

Conventions, stated once:

- ``L2(rho)``         R(w) = rho/2 ||w||^2   (gradient rho w; PL constant mu = rho)
- ``SquaredNorm(rho)`` R(w) = rho ||w||^2    (the paper's form in section 7.2: R = ||w||^2 times rho)
- ``NonConvex(rho)``  R(w) = rho sum_j w_j^2 / (1 + w_j^2)   (the paper's non-convex regularizer)
- ``NoRegularizer()`` R(w) = 0

Examples
--------
>>> import numpy as np, fastcascade as fc
>>> fc.reg.SquaredNorm(0.1).value(np.array([1.0, 2.0]))
0.5
"""
from __future__ import annotations

import numpy as np

from fastcascade._kernels import _engine
from fastcascade._validation import as_float_array, check_real

__all__ = ["Regularizer", "NoRegularizer", "L2", "SquaredNorm", "NonConvex"]

# Codes read by the engine kernel (its enum, exported as _engine.REG_CODES: one definition).
REG_NONE, REG_L2, REG_NONCONVEX = (_engine.REG_CODES[k] for k in ("none", "l2", "nonconvex"))


class Regularizer:
    """Base class. ``value(w)`` and ``gradient(w)`` are the NumPy definitions; the engine runs the
    same formulas compiled, as ``scale * sum(phi(w_j))`` with ``kernel_code`` and ``kernel_scale``.

    Parameters
    ----------
    rho : float, default 0.0
        The strength, ``>= 0``.
    """

    kernel_code = REG_NONE

    def __init__(self, rho=0.0):
        self.rho = rho  # raw, for the repr in the error message of the check below
        self.rho = check_real(rho, "rho", self, low=0.0)

    @property
    def kernel_scale(self):
        """The factor ``scale`` in front of ``sum(phi(w_j))`` in the kernel: ``rho`` here."""
        return self.rho

    def value(self, w):
        """R(w) = 0 (no regularizer).

        Parameters
        ----------
        w : array_like of float (n_weights,)
            The flat weight vector (docs/model.md, section 1).

        Returns
        -------
        float
        """
        return 0.0

    def gradient(self, w):
        """grad R(w) = 0, zeros of the shape of ``w``.

        Parameters
        ----------
        w : array_like of float (n_weights,)
            The flat weight vector (docs/model.md, section 1).

        Returns
        -------
        numpy.ndarray
            float64 (n_weights,).
        """
        return np.zeros_like(as_float_array(w, "w", ndim=1))

    def __repr__(self):
        return f"{type(self).__name__}(rho={self.rho!r})"

    def __eq__(self, other):
        return type(self) is type(other) and self.rho == other.rho

    def __hash__(self):
        return hash((type(self).__name__, self.rho))


class NoRegularizer(Regularizer):
    """R(w) = 0."""

    def __init__(self):
        super().__init__(0.0)

    def __repr__(self):
        return "NoRegularizer()"


class L2(Regularizer):
    """R(w) = rho/2 ||w||^2 (so the PL constant of a convex data term plus R is rho).

    For the paper's rho ||w||^2 use :class:`SquaredNorm`.

    Parameters
    ----------
    rho : float, default 0.0
        The strength, ``>= 0``.
    """

    kernel_code = REG_L2

    @property
    def kernel_scale(self):
        """The factor in front of ``||w||^2`` in the kernel: ``rho / 2``."""
        return 0.5 * self.rho

    def value(self, w):
        """R(w) = ``kernel_scale * ||w||^2`` (rho/2 ||w||^2 here).

        Parameters
        ----------
        w : array_like of float (n_weights,)
            The flat weight vector (docs/model.md, section 1).

        Returns
        -------
        float
        """
        w = as_float_array(w, "w", ndim=1)
        return self.kernel_scale * float(w @ w)

    def gradient(self, w):
        """grad R(w) = ``2 kernel_scale w`` (rho w here).

        Parameters
        ----------
        w : array_like of float (n_weights,)
            The flat weight vector (docs/model.md, section 1).

        Returns
        -------
        numpy.ndarray
            float64 (n_weights,).
        """
        return 2.0 * self.kernel_scale * as_float_array(w, "w", ndim=1)


class SquaredNorm(L2):
    """R(w) = rho ||w||^2, the paper's strongly convex regularizer (section 7.2; PL mu = 2 rho).

    Parameters
    ----------
    rho : float, default 0.0
        The strength, ``>= 0``.
    """

    @property
    def kernel_scale(self):
        """The factor in front of ``||w||^2`` in the kernel: ``rho``."""
        return self.rho


class NonConvex(Regularizer):
    """R(w) = rho sum_j w_j^2 / (1 + w_j^2), the paper's non-convex regularizer (section 7).

    Parameters
    ----------
    rho : float, default 0.0
        The strength, ``>= 0``.
    """

    kernel_code = REG_NONCONVEX

    def value(self, w):
        """R(w) = ``rho sum_j w_j^2 / (1 + w_j^2)``.

        Parameters
        ----------
        w : array_like of float (n_weights,)
            The flat weight vector (docs/model.md, section 1).

        Returns
        -------
        float
        """
        w = as_float_array(w, "w", ndim=1)
        w2 = w * w
        return self.rho * float(np.sum(w2 / (1.0 + w2)))

    def gradient(self, w):
        # d/dw [w^2 / (1 + w^2)] = 2 w / (1 + w^2)^2
        """grad R(w) = ``2 rho w / (1 + w^2)^2``, elementwise.

        Parameters
        ----------
        w : array_like of float (n_weights,)
            The flat weight vector (docs/model.md, section 1).

        Returns
        -------
        numpy.ndarray
            float64 (n_weights,).
        """
        w = as_float_array(w, "w", ndim=1)
        q = 1.0 + w * w
        return self.rho * 2.0 * w / (q * q)


def as_regularizer(reg):
    """The regularizer a problem uses: None gives ``NoRegularizer()``, a Regularizer passes.

    Parameters
    ----------
    reg : Regularizer or None
        Anything else raises ValueError.

    Returns
    -------
    Regularizer
    """
    if reg is None:
        return NoRegularizer()
    if not isinstance(reg, Regularizer):
        raise ValueError(f"regularizer: expected a fastcascade.reg.Regularizer or None, "
                         f"given {reg!r}")
    return reg
