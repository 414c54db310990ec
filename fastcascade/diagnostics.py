"""Warnings about perturbations that cannot do what they say.

Two kinds of trouble are known before a run starts and are warned about at set-up
(:func:`check_setup`): a timing that can never fire within ``n_iter`` (``At`` or ``Window``
beyond the horizon, ``Bernoulli(0)``), and a perturbation that turns ordinary values into
non-finite ones (``Uniform(-1e308, 1e308)``, whose width overflows, or ``FixedPoint(5e-324)``,
whose grid spacing has no finite reciprocal), found by applying the perturbation's NumPy twin
to a small probe batch. What is known only during a run is counted by the engines: the number of
(step, site) pairs at which the perturbations left a non-finite value
(``Result.nonfinite_injections``), warned about when the run returns
(:func:`warn_nonfinite_injections`).
"""
from __future__ import annotations

import warnings

import numpy as np

__all__ = ["PerturbationWarning", "PerformanceWarning", "check_setup",
           "warn_nonfinite_injections"]

# ordinary values a layer carries: signs, zero, a unit and a moderately large entry
_PROBE = np.array([[-1.0, 0.0, 0.5, 1.0], [2.0, -3.0, 10.0, -0.25]])


class PerturbationWarning(UserWarning):
    """A perturbation that never fires within the run, or that produces non-finite values."""


class PerformanceWarning(UserWarning):
    """The compiled engine called Python-defined code back (an operator or a noise), taking the
    GIL for each call; the message gives the measured cost per call."""


def _probe_nonfinite(pert, t, n_iter) -> bool:
    """Whether ``pert`` turns the probe batch into non-finite values at iteration ``t``."""
    gen = np.random.default_rng(0)
    try:
        with np.errstate(all="ignore"):
            out = pert.apply(_PROBE.copy(), gen, t, n_iter)
    except Exception:  # a user's noise may reject the probe's shape; the engine will tell
        return False
    return not bool(np.all(np.isfinite(out)))


def check_setup(perturbations, n_iter: int, stacklevel: int = 3) -> list:
    """Warn (:class:`PerturbationWarning`) about each perturbation whose timing cannot fire
    within ``n_iter`` iterations or that produces non-finite values from finite ones.

    Parameters
    ----------
    perturbations : sequence of fastcascade.Perturbation (checked)
    n_iter : int
        The run's horizon T.
    stacklevel : int
        Passed to ``warnings.warn`` (3: the caller of ``fc.run``).

    Returns
    -------
    list of str: the messages warned.
    """
    messages = []
    for k, pert in enumerate(perturbations):
        late = pert.timing.unreachable(n_iter)
        if late is not None:
            messages.append(f"perturbations[{k}] {pert!r}: timing {late}")
        if _probe_nonfinite(pert, 0, n_iter):
            messages.append(f"perturbations[{k}] {pert!r}: produces non-finite values from "
                            f"finite ones (probe {_PROBE.ravel().tolist()}); the run will carry "
                            f"inf or NaN at that site")
    for message in messages:
        warnings.warn(message, PerturbationWarning, stacklevel=stacklevel)
    return messages


def warn_nonfinite_injections(counts, seeds, stacklevel: int = 3) -> None:
    """Warn once when any run's perturbations left non-finite values.

    Parameters
    ----------
    counts : array_like of int (n_runs,)
        Per run, the (step, site) pairs with non-finite values (``Result.nonfinite_injections``).
    seeds : sequence
        The runs' seeds, named in the message (the first five runs hit).
    stacklevel : int, default 3
        Passed to ``warnings.warn``.
    """
    counts = np.asarray(counts)
    hit = np.nonzero(counts > 0)[0]
    if hit.size:
        which = ", ".join(f"seed {seeds[k]}: {int(counts[k])}" for k in hit[:5])
        warnings.warn(f"perturbations left non-finite values in {hit.size} of {counts.size} "
                      f"runs ({which}{', ...' if hit.size > 5 else ''} (step, site) pairs); see "
                      f"Result.nonfinite_injections", PerturbationWarning, stacklevel=stacklevel)
