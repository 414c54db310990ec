"""When a perturbation strikes.

``Always()``, ``Every(period, offset=0)``, ``Bernoulli(p)`` (one uniform draw per step from the
pass's noise stream), ``At(iterations)``, ``Window(start, stop)``.

Examples
--------
>>> import fastcascade as fc
>>> [t for t in range(10) if fc.timing.Every(4, offset=1).active(t)]
[1, 5, 9]
>>> [t for t in range(10) if fc.timing.Window(3, 6).active(t)]
[3, 4, 5]
"""
from __future__ import annotations

from fastcascade._kernels import _noise
from fastcascade._validation import check_int_list, check_positive_int, check_real
from fastcascade.errors import ParameterError

__all__ = ["Timing", "Always", "Every", "Bernoulli", "At", "Window"]


class Timing:
    """Base class: ``active(t, gen)`` is the NumPy twin of the kernel's test."""

    kind = None

    @property
    def code(self):
        return _noise.TIMING_CODES[self.kind]

    def table(self, times):
        """(t_a, t_b, prob) for the kernel's row; may append to the run's ``times`` list."""
        return 0, 0, 0.0

    def active(self, t, gen=None):
        raise NotImplementedError

    def __eq__(self, other):
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self):
        return hash((type(self).__name__, repr(self)))


class Always(Timing):
    """At every iteration."""

    kind = "always"

    def active(self, t, gen=None):
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

    def table(self, times):
        return self.period, self.offset, 0.0

    def active(self, t, gen=None):
        return t >= self.offset and (t - self.offset) % self.period == 0

    def __repr__(self):
        return f"Every({self.period}, offset={self.offset})"


class Bernoulli(Timing):
    """At each iteration independently with probability p (one uniform draw per iteration from
    the stream of the pass it perturbs)."""

    kind = "bernoulli"

    def __init__(self, p):
        self.p = check_real(p, "p", "Bernoulli", low=0.0, high=1.0)

    def table(self, times):
        return 0, 0, self.p

    def active(self, t, gen=None):
        return gen.random() < self.p

    def __repr__(self):
        return f"Bernoulli({self.p!r})"


class At(Timing):
    """At the given iterations."""

    kind = "at"

    def __init__(self, iterations):
        its = check_int_list(iterations, "iterations", "At", low=0)
        if not its:
            raise ParameterError("iterations", iterations, "at least one iteration", "At")
        self.iterations = tuple(sorted(set(its)))

    def table(self, times):
        start = len(times)
        times.extend(self.iterations)
        return start, len(times), 0.0

    def active(self, t, gen=None):
        return t in self.iterations

    def __repr__(self):
        return f"At({list(self.iterations)!r})"


class Window(Timing):
    """At iterations start <= t < stop."""

    kind = "window"

    def __init__(self, start, stop):
        self.start = check_positive_int(start, "start", "Window", allow_zero=True)
        self.stop = check_positive_int(stop, "stop", "Window", allow_zero=True)
        if self.stop <= self.start:
            raise ParameterError("stop", stop, f"> start ({self.start})", "Window")

    def table(self, times):
        return self.start, self.stop, 0.0

    def active(self, t, gen=None):
        return self.start <= t < self.stop

    def __repr__(self):
        return f"Window({self.start}, {self.stop})"
