"""Step-size schedules gamma_t (t = 0, 1, ...), scaling the optimizer's ``step_size`` g0.

Examples
--------
>>> import fastcascade as fc
>>> [fc.schedules.InversePower(1.0).factor(t) for t in range(3)]
[1.0, 0.5, 0.3333333333333333]
"""
from __future__ import annotations

import numpy as np

from fastcascade._validation import check_positive_int, check_real

__all__ = ["Schedule", "Constant", "InversePower", "InverseSqrt", "StepDecay"]


class Schedule:
    """Base class: ``factor(t)`` is gamma_t / g0 (the NumPy twin of the kernel's formula)."""

    kind = "constant"
    power = 0.0
    decay = 1.0
    every = 1

    def factor(self, t):
        """gamma_t / g0 at iteration ``t``: defined by each subclass.

        NumPy twin of the kernel's formula.

        Parameters
        ----------
        t : int
            The 0-based iteration.

        Returns
        -------
        float
        """
        raise NotImplementedError

    def engine_config(self):
        """The schedule's settings the compiled engine reads.

        Returns
        -------
        dict
            ``schedule`` (the kind), ``power``, ``factor`` (the decay) and ``every``.
        """
        return {"schedule": self.kind, "power": self.power, "factor": self.decay,
                "every": self.every}

    def __eq__(self, other):
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self):
        return hash(type(self).__name__)


class Constant(Schedule):
    """gamma_t = g0."""

    def factor(self, t):
        """gamma_t / g0 at iteration ``t``: 1.0.

        NumPy twin of the kernel's formula.

        Parameters
        ----------
        t : int
            The 0-based iteration.

        Returns
        -------
        float
        """
        return 1.0

    def __repr__(self):
        return "Constant()"


class InversePower(Schedule):
    """gamma_t = g0 / (1 + t)^power.

    Parameters
    ----------
    power : float
        The exponent, ``>= 0``.
    """

    kind = "inverse_power"

    def __init__(self, power):
        self.power = check_real(power, "power", "InversePower", low=0.0)

    def factor(self, t):
        """gamma_t / g0 at iteration ``t``: ``1 / (1 + t) ** power``.

        NumPy twin of the kernel's formula.

        Parameters
        ----------
        t : int
            The 0-based iteration.

        Returns
        -------
        float
        """
        return 1.0 / (1.0 + t) ** self.power

    def __repr__(self):
        return f"InversePower({self.power!r})"


class InverseSqrt(InversePower):
    """gamma_t = g0 / sqrt(t + 1)."""

    def __init__(self):
        super().__init__(0.5)

    def __repr__(self):
        return "InverseSqrt()"


class StepDecay(Schedule):
    """gamma_t = g0 * factor^floor(t / every).

    Parameters
    ----------
    factor : float
        Multiplies the step size every ``every`` iterations, ``> 0``; stored as ``decay``.
    every : int
        Iterations between decays, ``>= 1``.
    """

    kind = "step_decay"

    def __init__(self, factor, every):
        self.decay = check_real(factor, "factor", "StepDecay", low=0.0, low_open=True)
        self.every = check_positive_int(every, "every", "StepDecay")

    def factor(self, t):
        """gamma_t / g0 at iteration ``t``: ``factor ** floor(t / every)``.

        NumPy twin of the kernel's formula.

        Parameters
        ----------
        t : int
            The 0-based iteration.

        Returns
        -------
        float
        """
        return self.decay ** np.floor(t / self.every)

    def __repr__(self):
        return f"StepDecay(factor={self.decay!r}, every={self.every})"
