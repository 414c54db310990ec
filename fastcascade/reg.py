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

from fastcascade._validation import as_float_array, check_real

__all__ = ["Regularizer", "NoRegularizer", "L2", "SquaredNorm", "NonConvex"]

# Codes read by the engine kernel (fastcascade/_kernels/_engine.pyx, reg_value / reg_grad).
REG_NONE, REG_L2, REG_NONCONVEX = 0, 1, 2


class Regularizer:
    """Base class. ``value(w)`` and ``gradient(w)`` are the NumPy definitions; the engine runs the
    same formulas compiled, as ``scale * sum(phi(w_j))`` with ``kernel_code`` and ``kernel_scale``."""

    kernel_code = REG_NONE

    def __init__(self, rho=0.0):
        self.rho = rho  # raw, for the repr in the error message of the check below
        self.rho = check_real(rho, "rho", self, low=0.0)

    @property
    def kernel_scale(self):
        return self.rho

    def value(self, w):
        return 0.0

    def gradient(self, w):
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
    """

    kernel_code = REG_L2

    @property
    def kernel_scale(self):
        return 0.5 * self.rho

    def value(self, w):
        w = as_float_array(w, "w", ndim=1)
        return self.kernel_scale * float(w @ w)

    def gradient(self, w):
        return 2.0 * self.kernel_scale * as_float_array(w, "w", ndim=1)


class SquaredNorm(L2):
    """R(w) = rho ||w||^2, the paper's strongly convex regularizer (section 7.2; PL mu = 2 rho)."""

    @property
    def kernel_scale(self):
        return self.rho


class NonConvex(Regularizer):
    """R(w) = rho sum_j w_j^2 / (1 + w_j^2), the paper's non-convex regularizer (section 7)."""

    kernel_code = REG_NONCONVEX

    def value(self, w):
        w = as_float_array(w, "w", ndim=1)
        w2 = w * w
        return self.rho * float(np.sum(w2 / (1.0 + w2)))

    def gradient(self, w):
        # d/dw [w^2 / (1 + w^2)] = 2 w / (1 + w^2)^2
        w = as_float_array(w, "w", ndim=1)
        q = 1.0 + w * w
        return self.rho * 2.0 * w / (q * q)


def as_regularizer(reg):
    """None -> NoRegularizer(); a Regularizer passes; anything else is an error."""
    if reg is None:
        return NoRegularizer()
    if not isinstance(reg, Regularizer):
        raise ValueError(f"regularizer: expected a fastcascade.reg.Regularizer or None, "
                         f"given {reg!r}")
    return reg
