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
    """Base class: ``active(t, gen)`` is the NumPy twin of the kernel's test.

    Subclasses set ``kind`` (the kernel branch) and describe themselves to the kernel with
    ``table``; ``unreachable`` feeds the set-up warning for firings beyond ``n_iter``.
    """

    kind: str | None = None

    @property
    def code(self):
        """The integer code of ``kind`` in the compiled noise kernel."""
        return _noise.TIMING_CODES[self.kind]

    def table(self, times):
        """The kernel's timing row ``(t_a, t_b, prob)``; may append to the run's ``times`` list.

        Parameters
        ----------
        times : list of int
            The run's shared list of listed iterations; ``At`` appends its own to it.

        Returns
        -------
        tuple of (int, int, float)
            ``(0, 0, 0.0)`` here; each subclass gives its own meaning.
        """
        return 0, 0, 0.0

    def active(self, t, gen=None):
        """Whether the perturbation strikes at iteration ``t``.

        Parameters
        ----------
        t : int
            The 0-based iteration.
        gen : numpy.random.Generator, optional
            The pass's noise stream (forward or backward, docs/model.md sec. 3), consumed by random
            timings only.

        Returns
        -------
        bool
        """
        raise NotImplementedError

    def unreachable(self, n_iter: int):
        """What of this timing can never fire in iterations ``0..n_iter-1``: None here (a timing
        that can always fire).

        Parameters
        ----------
        n_iter : int
            The run's number of iterations.

        Returns
        -------
        str or None
            A one-line description for the set-up warning, or None when every firing is reachable.
        """
        return None

    def __eq__(self, other):
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self):
        return hash((type(self).__name__, repr(self)))


class Always(Timing):
    """At every iteration."""

    kind = "always"

    def active(self, t, gen=None):
        """Whether the perturbation strikes at iteration ``t``: always True.

        NumPy twin of the kernel's test.

        Parameters
        ----------
        t : int
            The 0-based iteration.
        gen : numpy.random.Generator, optional
            Not used (the timing draws nothing).

        Returns
        -------
        bool
        """
        return True

    def __repr__(self):
        return "Always()"


class Every(Timing):
    """At iterations offset, offset + period, offset + 2 period, ... (``Every(100)`` fires 10
    times in 1,000 iterations).

    Parameters
    ----------
    period : int
        Iterations between firings, ``>= 1``.
    offset : int, default 0
        The first firing, ``>= 0``.
    """

    kind = "every"

    def __init__(self, period, offset=0):
        self.period = check_positive_int(period, "period", "Every")
        self.offset = check_positive_int(offset, "offset", "Every", allow_zero=True)

    def table(self, times):
        """The kernel's timing row ``(t_a, t_b, prob)``: ``(period, offset, 0.0)``.

        Parameters
        ----------
        times : list of int
            The run's shared list of listed iterations (used by ``At`` only).

        Returns
        -------
        tuple of (int, int, float)
        """
        return self.period, self.offset, 0.0

    def active(self, t, gen=None):
        """Whether the perturbation strikes at iteration ``t``: ``t >= offset`` and ``(t - offset) %
        period == 0``.

        NumPy twin of the kernel's test.

        Parameters
        ----------
        t : int
            The 0-based iteration.
        gen : numpy.random.Generator, optional
            Not used (the timing draws nothing).

        Returns
        -------
        bool
        """
        return t >= self.offset and (t - self.offset) % self.period == 0

    def unreachable(self, n_iter):
        """What of this timing can never fire in iterations ``0..n_iter-1``: the whole timing when
        ``offset >= n_iter``.

        Parameters
        ----------
        n_iter : int
            The run's number of iterations.

        Returns
        -------
        str or None
            A one-line description for the set-up warning, or None when every firing is reachable.
        """
        return (f"offset {self.offset} >= n_iter {n_iter}: never fires"
                if self.offset >= n_iter else None)

    def __repr__(self):
        return f"Every({self.period}, offset={self.offset})"


class Bernoulli(Timing):
    """At each iteration independently with probability p (one uniform draw per iteration from
    the stream of the pass it perturbs).

    Parameters
    ----------
    p : float
        Firing probability per iteration, in [0, 1].
    """

    kind = "bernoulli"

    def __init__(self, p):
        self.p = check_real(p, "p", "Bernoulli", low=0.0, high=1.0)

    def table(self, times):
        """The kernel's timing row ``(t_a, t_b, prob)``: ``(0, 0, p)``.

        Parameters
        ----------
        times : list of int
            The run's shared list of listed iterations (used by ``At`` only).

        Returns
        -------
        tuple of (int, int, float)
        """
        return 0, 0, self.p

    def active(self, t, gen=None):
        """Whether the perturbation strikes at iteration ``t``: one uniform ``gen.random()`` below
        p.

        NumPy twin of the kernel's test.

        Parameters
        ----------
        t : int
            The 0-based iteration.
        gen : numpy.random.Generator, optional
            The pass's noise stream (forward or backward, docs/model.md sec. 3); one uniform is
            drawn per call. Required.

        Returns
        -------
        bool
        """
        return gen.random() < self.p

    def unreachable(self, n_iter):
        """What of this timing can never fire in iterations ``0..n_iter-1``: the whole timing when
        ``p == 0``.

        Parameters
        ----------
        n_iter : int
            The run's number of iterations.

        Returns
        -------
        str or None
            A one-line description for the set-up warning, or None when every firing is reachable.
        """
        return "p = 0: never fires" if self.p == 0.0 else None

    def __repr__(self):
        return f"Bernoulli({self.p!r})"


class At(Timing):
    """At the given iterations.

    Parameters
    ----------
    iterations : int or sequence of int
        0-based iterations, at least one; duplicates are dropped and the rest sorted.
    """

    kind = "at"

    def __init__(self, iterations):
        its = check_int_list(iterations, "iterations", "At", low=0)
        if not its:
            raise ParameterError("iterations", iterations, "at least one iteration", "At")
        self.iterations = tuple(sorted(set(its)))

    def table(self, times):
        """The kernel's timing row ``(t_a, t_b, prob)``: ``(start, stop, 0.0)``, the slice of
        ``times`` that holds this timing's iterations, which it appends.

        Parameters
        ----------
        times : list of int
            The run's shared list of listed iterations (used by ``At`` only).

        Returns
        -------
        tuple of (int, int, float)
        """
        start = len(times)
        times.extend(self.iterations)
        return start, len(times), 0.0

    def active(self, t, gen=None):
        """Whether the perturbation strikes at iteration ``t``: ``t`` is one of the listed
        iterations.

        NumPy twin of the kernel's test.

        Parameters
        ----------
        t : int
            The 0-based iteration.
        gen : numpy.random.Generator, optional
            Not used (the timing draws nothing).

        Returns
        -------
        bool
        """
        return t in self.iterations

    def unreachable(self, n_iter):
        """What of this timing can never fire in iterations ``0..n_iter-1``: the listed iterations
        ``>= n_iter`` (the first five shown).

        Parameters
        ----------
        n_iter : int
            The run's number of iterations.

        Returns
        -------
        str or None
            A one-line description for the set-up warning, or None when every firing is reachable.
        """
        late = [t for t in self.iterations if t >= n_iter]
        if not late:
            return None
        shown = ", ".join(str(t) for t in late[:5]) + (", ..." if len(late) > 5 else "")
        what = "never fires" if len(late) == len(self.iterations) else "never fire"
        return f"iterations {shown} >= n_iter {n_iter}: {what}"

    def __repr__(self):
        return f"At({list(self.iterations)!r})"


class Window(Timing):
    """At iterations start <= t < stop.

    Parameters
    ----------
    start : int
        First iteration of the window, ``>= 0``.
    stop : int
        One past the last, ``> start``.
    """

    kind = "window"

    def __init__(self, start, stop):
        self.start = check_positive_int(start, "start", "Window", allow_zero=True)
        self.stop = check_positive_int(stop, "stop", "Window", allow_zero=True)
        if self.stop <= self.start:
            raise ParameterError("stop", stop, f"> start ({self.start})", "Window")

    def table(self, times):
        """The kernel's timing row ``(t_a, t_b, prob)``: ``(start, stop, 0.0)``.

        Parameters
        ----------
        times : list of int
            The run's shared list of listed iterations (used by ``At`` only).

        Returns
        -------
        tuple of (int, int, float)
        """
        return self.start, self.stop, 0.0

    def active(self, t, gen=None):
        """Whether the perturbation strikes at iteration ``t``: ``start <= t < stop``.

        NumPy twin of the kernel's test.

        Parameters
        ----------
        t : int
            The 0-based iteration.
        gen : numpy.random.Generator, optional
            Not used (the timing draws nothing).

        Returns
        -------
        bool
        """
        return self.start <= t < self.stop

    def unreachable(self, n_iter):
        """What of this timing can never fire in iterations ``0..n_iter-1``: the whole window when
        ``start >= n_iter`` (a window that starts in time and is cut off by ``n_iter`` is not
        reported).

        Parameters
        ----------
        n_iter : int
            The run's number of iterations.

        Returns
        -------
        str or None
            A one-line description for the set-up warning, or None when every firing is reachable.
        """
        if self.start >= n_iter:
            return f"start {self.start} >= n_iter {n_iter}: never fires"
        return None

    def __repr__(self):
        return f"Window({self.start}, {self.stop})"
