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
        """Whether the perturbation strikes at iteration ``t`` (``gen``: the pass's generator,
        for random timings)."""
        raise NotImplementedError

    def unreachable(self, n_iter: int):
        """What of this timing can never fire in iterations 0..n_iter-1, as text; None when it
        all can."""
        return None

    def __eq__(self, other):
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self):
        return hash((type(self).__name__, repr(self)))


class Always(Timing):
    """At every iteration."""

    kind = "always"

    def active(self, t, gen=None):
        """Always True."""
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
        """True at offset, offset + period, ..."""
        return t >= self.offset and (t - self.offset) % self.period == 0

    def unreachable(self, n_iter):
        """The whole timing when its offset is at or beyond ``n_iter``."""
        return (f"offset {self.offset} >= n_iter {n_iter}: never fires"
                if self.offset >= n_iter else None)

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
        """One uniform draw from ``gen`` below p."""
        return gen.random() < self.p

    def unreachable(self, n_iter):
        """The whole timing when p is 0."""
        return "p = 0: never fires" if self.p == 0.0 else None

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
        """True at the listed iterations."""
        return t in self.iterations

    def unreachable(self, n_iter):
        """The listed iterations at or beyond ``n_iter``."""
        late = [t for t in self.iterations if t >= n_iter]
        if not late:
            return None
        shown = ", ".join(str(t) for t in late[:5]) + (", ..." if len(late) > 5 else "")
        what = "never fires" if len(late) == len(self.iterations) else "never fire"
        return f"iterations {shown} >= n_iter {n_iter}: {what}"

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
        """True for start <= t < stop."""
        return self.start <= t < self.stop

    def unreachable(self, n_iter):
        """The whole window when it starts at or beyond ``n_iter``, or its tail past it."""
        if self.start >= n_iter:
            return f"start {self.start} >= n_iter {n_iter}: never fires"
        return None

    def __repr__(self):
        return f"Window({self.start}, {self.stop})"
