"""When a perturbation strikes: at every iteration, or periodically.

Examples
--------
>>> import fastcascade as fc
>>> [t for t in range(10) if fc.timing.Every(4, offset=1).active(t)]
[1, 5, 9]
"""
from __future__ import annotations

from fastcascade._kernels import _noise
from fastcascade._validation import check_positive_int

__all__ = ["Timing", "Always", "Every"]


class Timing:
    """Base class: ``active(t)`` is the NumPy twin of the kernel's test."""

    kind = None
    period = 1
    offset = 0

    @property
    def code(self):
        return _noise.TIMING_CODES[self.kind]

    def active(self, t):
        raise NotImplementedError

    def __eq__(self, other):
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self):
        return hash((type(self).__name__, self.period, self.offset))


class Always(Timing):
    """At every iteration."""

    kind = "always"

    def active(self, t):
        return True

    def __repr__(self):
        return "Always()"


class Every(Timing):
    """At iterations offset, offset + period, offset + 2 period, ... (``Every(100)`` fires 10
    times in 1,000 iterations)."""

    kind = "every"

    def __init__(self, period, offset=0):
        self.period = check_positive_int(period, "period", "Every")
        self.offset = check_positive_int(offset, "offset", "Every", allow_zero=True)

    def active(self, t):
        return t >= self.offset and (t - self.offset) % self.period == 0

    def __repr__(self):
        return f"Every({self.period}, offset={self.offset})"
