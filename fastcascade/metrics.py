"""Metrics derived from a run's histories (docs/model.md, Metrics), as plain functions on arrays.

``fc.Result`` calls these; they take arrays, so they work on any history with the same layout
(one row per run, one column per record).

- :func:`ewma`: the exponentially weighted moving average of a history (the paper's smoothing
  of the true gradient norm). The factor applies per *iteration* (0.99 by default), whatever
  the recording cadence: :func:`record_decay` turns it, in this one place, into
  ``factor ** gap`` for the gap between two records.
- :func:`stable_grad_norm`: the mean of that EWMA over the last half of the iterations.
- :func:`stable_iteration_complexity`: the first iteration where the EWMA is below
  ``threshold`` (1.5) times the stable gradient norm.
- :func:`spike_events`: jumps of the gradient error or the gradient norm, each labelled by what
  follows it (definition below).

Spike events
------------
For each history ``x`` among ``signals`` (default: the gradient error and the gradient norm),
its *baseline* at record t is the median of the previous ``window`` records (finite values only;
at least ``max(3, window // 5)`` of them, else no baseline and no spike). Record t is a spike of
``x`` when ``x[t] > threshold * baseline[t]`` and ``x[t] > min_value``. (``threshold=0`` with a
``min_value`` gives a plain absolute threshold.) Consecutive spike records, of either signal, form
one event. What follows the event, up to the start of the next event (or the end of the run),
labels it; a later, unrelated failure does not:

- ``"recovered"``: within ``recovery_window`` records after the event and before the next one,
  the gradient norm returns to at most ``recover_factor`` times its pre-spike level (its
  baseline at the event's start, or the record before it when there is no baseline yet);
- ``"diverged"``: it did not recover, and the run stopped (diverged) after the event started
  and before the next event;
- ``"persistent"``: it did not recover, and the run went on to the next event or the end.

A run that diverged without any detected spike gets one event at its stop, with signal
``"stop"`` and label ``"diverged"``, so that every divergence shows up as an event.

Examples
--------
>>> import numpy as np
>>> from fastcascade import metrics
>>> g = np.r_[np.full(100, 1.0), 50.0, np.full(99, 1.0)][None, :]   # one spike, back at once
>>> ev = metrics.spike_events(g, np.zeros_like(g), np.arange(200), [-1])
>>> ev[["run", "start", "signal", "label"]].tolist()
[(0, 100, 'grad_norm', 'recovered')]
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from fastcascade._validation import check_positive_int, check_real

__all__ = ["ewma", "record_decay", "stable_grad_norm", "stable_iteration_complexity",
           "spike_events",
           "SPIKE_DTYPE", "SPIKE_LABELS"]

SPIKE_LABELS = ("recovered", "persistent", "diverged")
SPIKE_DTYPE = np.dtype([("run", np.int64), ("start", np.int64), ("end", np.int64),
                        ("peak", np.int64), ("signal", "U10"), ("ratio", np.float64),
                        ("label", "U10")])
SPIKE_DTYPE_DOC = """Fields of a spike event: ``run`` (row), ``start``/``end``/``peak`` (iterations
of its first, last and largest record), ``signal`` ("grad_error", "grad_norm", "both" or "stop"),
``ratio`` (the largest value over baseline, inf when the baseline is 0) and ``label``."""


def _factor(factor):
    ok = isinstance(factor, (int, float, np.floating)) and not isinstance(factor, bool)
    if not ok or not 0.0 <= factor < 1.0:
        raise ValueError(f"factor: expected a number in [0, 1), given {factor!r}")
    return float(factor)


def _iterations(iterations, n_records):
    """The records' iterations as int64 (0, 1, 2, ... when not given), checked against the
    number of records and for strict increase."""
    if iterations is None:
        return np.arange(n_records, dtype=np.int64)
    t = np.asarray(iterations, dtype=np.int64).reshape(-1)
    if t.shape[0] != n_records:
        raise ValueError(f"iterations: expected {n_records} values (one per record), "
                         f"given {t.shape[0]}")
    if t.shape[0] > 1 and np.any(np.diff(t) <= 0):
        raise ValueError("iterations: expected strictly increasing values")
    return t


def record_decay(factor: float, iterations: npt.ArrayLike) -> np.ndarray:
    """Per-record decay of the per-iteration EWMA: ``factor ** (t_k - t_{k-1})``.

    This is the one place where the per-iteration factor meets the recording cadence. Between
    two records the gradient norm is not observed; the EWMA treats it as equal to the later
    record over the gap, so that ``factor`` iterations of smoothing compound to
    ``factor ** gap`` (exact when the history is recorded every iteration).

    Parameters
    ----------
    factor : float in [0, 1)
        EWMA factor per iteration.
    iterations : array_like of int (n_records,)
        The iterations of the records, strictly increasing.

    Returns
    -------
    ndarray (n_records,): the decay applied at each record (entry 0 is unused and set to 0).
    """
    factor = _factor(factor)
    t = _iterations(iterations, np.asarray(iterations).reshape(-1).shape[0])
    decay = np.zeros(t.shape[0])
    decay[1:] = factor ** np.diff(t).astype(np.float64)
    return decay


def ewma(x: npt.ArrayLike, factor: float = 0.99,
         iterations: npt.ArrayLike | None = None) -> np.ndarray:
    """Exponentially weighted moving average along the last axis, per iteration.

    e_0 = x_0 and e_k = a_k e_{k-1} + (1 - a_k) x_k with a_k = factor ** (t_k - t_{k-1})
    (:func:`record_decay`): ``factor`` is per *iteration*, whatever the recording cadence, so a
    run recorded every step and every 100 steps gives the same smoothing (docs/model.md,
    "Metrics").

    Parameters
    ----------
    x : array_like (..., n_records)
    factor : float in [0, 1), default 0.99
        EWMA factor per iteration (the paper's 0.99).
    iterations : array_like of int (n_records,), optional
        Iterations of the records; default 0, 1, 2, ... (one record per iteration).

    Returns
    -------
    ndarray, same shape as ``x`` (a NaN propagates forward: a diverged run's tail stays NaN)

    Examples
    --------
    >>> from fastcascade.metrics import ewma
    >>> ewma([1.0, 0.0, 0.0], factor=0.5).tolist()
    [1.0, 0.5, 0.25]
    >>> ewma([1.0, 0.0, 0.0], factor=0.5, iterations=[0, 2, 4]).tolist()   # 0.5**2 per record
    [1.0, 0.25, 0.0625]
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1] if x.ndim else 0
    decay = record_decay(factor, _iterations(iterations, n))
    out = np.empty_like(x)
    if n == 0:
        return out
    out[..., 0] = x[..., 0]
    for k in range(1, n):
        out[..., k] = decay[k] * out[..., k - 1] + (1.0 - decay[k]) * x[..., k]
    return out


def _last_half_weights(t):
    """Weights of the records in the mean over the last half of the iterations: each record
    stands for the iterations since the previous one; records before the midpoint weigh 0."""
    if t.shape[0] == 1:
        return np.ones(1)
    gaps = np.r_[t[1] - t[0], np.diff(t)].astype(np.float64)
    return np.where(t >= t[0] + (t[-1] - t[0]) / 2.0, gaps, 0.0)


def stable_grad_norm(grad_norm: npt.ArrayLike, factor: float = 0.99,
                     diverged: npt.ArrayLike | None = None,
                     iterations: npt.ArrayLike | None = None) -> np.ndarray:
    """The paper's stable gradient norm per run: the mean of the per-iteration EWMA over the
    last half of the iterations (NaN for a diverged run).

    Each record weighs the number of iterations since the previous record, so the value does not
    depend on the recording cadence (records every iteration: the plain mean over the last half
    of the records). docs/model.md, Metrics.

    Parameters
    ----------
    grad_norm : array_like (n_runs, n_records)
        The recorded true gradient norms.
    factor : float in [0, 1)
        EWMA factor per iteration.
    diverged : array_like of bool (n_runs,), optional
        Runs set to NaN.
    iterations : array_like of int (n_records,), optional
        Iterations of the records; default 0, 1, 2, ...

    Returns
    -------
    numpy.ndarray
        float64 (n_runs,).

    Examples
    --------
    >>> import numpy as np
    >>> from fastcascade.metrics import stable_grad_norm
    >>> stable_grad_norm(np.full((1, 10), 2.0)).tolist()
    [2.0]
    """
    grad_norm = np.atleast_2d(np.asarray(grad_norm, dtype=np.float64))
    t = _iterations(iterations, grad_norm.shape[1])
    e = ewma(grad_norm, factor, t)
    if e.shape[1] == 0:
        stable = np.full(e.shape[0], np.nan)
    else:
        w = _last_half_weights(t)
        with np.errstate(invalid="ignore"):
            stable = (e * w).sum(axis=1) / w.sum()
    if diverged is not None:
        stable[np.asarray(diverged, dtype=bool)] = np.nan
    return stable


def stable_iteration_complexity(grad_norm: npt.ArrayLike, iterations: npt.ArrayLike,
                                factor: float = 0.99, threshold: float = 1.5,
                                diverged: npt.ArrayLike | None = None) -> np.ndarray:
    """Per run, the first iteration where the per-iteration EWMA of the gradient norm is below
    ``threshold`` times the stable gradient norm; -1 when it never is (or the run diverged).

    The answer is a record's iteration, so it is known to within one record gap
    (docs/model.md, Metrics).

    Parameters
    ----------
    grad_norm : array_like (n_runs, n_records)
        The recorded true gradient norms.
    iterations : array_like of int (n_records,) or None
        Iterations of the records; None means 0, 1, 2, ...
    factor : float in [0, 1), default 0.99
        EWMA factor per iteration.
    threshold : float > 0, default 1.5
        Multiple of the stable gradient norm (ParameterError otherwise).
    diverged : array_like of bool (n_runs,), optional
        Runs that get -1.

    Returns
    -------
    numpy.ndarray
        int64 (n_runs,).

    Examples
    --------
    >>> import numpy as np
    >>> from fastcascade.metrics import stable_iteration_complexity
    >>> g = np.r_[np.full(10, 100.0), np.full(90, 1.0)][None, :]
    >>> stable_iteration_complexity(g, np.arange(100), factor=0.5).tolist()
    [17]
    """
    threshold = check_real(threshold, "threshold", low=0.0, low_open=True)
    grad_norm = np.atleast_2d(np.asarray(grad_norm, dtype=np.float64))
    t = _iterations(iterations, grad_norm.shape[1])
    e = ewma(grad_norm, factor, t)
    stable = stable_grad_norm(grad_norm, factor, diverged, t)
    out = np.full(grad_norm.shape[0], -1, dtype=np.int64)
    for k in range(grad_norm.shape[0]):
        if not np.isfinite(stable[k]):
            continue
        below = np.nonzero(e[k] < threshold * stable[k])[0]
        if below.size:
            out[k] = t[below[0]]
    return out


def trailing_median(x: npt.ArrayLike, window: int, min_count: int | None = None, chunk: int = 8192
                    ) -> np.ndarray:
    """Median of the previous ``window`` finite values of a 1-d series at each position
    (NaN where fewer than ``min_count`` are available).

    The value at position n is the median of x[n - window .. n - 1]: the current value is
    excluded, so a spike does not raise its own baseline.

    Parameters
    ----------
    x : array_like of float (n,)
        The series (NaN entries are skipped).
    window : int
        Length of the trailing window, ``>= 1``.
    min_count : int, optional
        Finite values needed for a median; default ``max(3, window // 5)``.
    chunk : int, default 8192
        Positions processed per block (bounds the memory of the sliding view's copies).

    Returns
    -------
    numpy.ndarray
        float64 (n,).
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    min_count = max(3, window // 5) if min_count is None else min_count
    padded = np.concatenate([np.full(window, np.nan), x])
    view = np.lib.stride_tricks.sliding_window_view(padded, window)[:n]
    out = np.full(n, np.nan)
    for lo in range(0, n, chunk):
        block = view[lo:lo + chunk]
        count = np.sum(np.isfinite(block), axis=1)
        dest = out[lo:lo + chunk]
        full = count == window  # the common case: np.median, much faster than nanmedian
        if np.any(full):
            dest[full] = np.median(block[full], axis=1)
        part = (count >= min_count) & ~full
        if np.any(part):
            with np.errstate(all="ignore"):
                dest[part] = np.nanmedian(block[part], axis=1)
    return out


def _runs_of_true(mask):
    """(start, end) index pairs (inclusive) of the maximal runs of True in a 1-d bool array."""
    if not mask.any():
        return []
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts = np.nonzero(d == 1)[0]
    ends = np.nonzero(d == -1)[0] - 1
    return list(zip(starts.tolist(), ends.tolist()))


def _label_event(grad_norm, norm_base, a, b, nxt, recover_factor, recovery_window,
                 stopped_before_next):
    """The label of the event over records a..b of one run, from the records after it and
    before the next event (index ``nxt``) only: recovered, diverged or persistent."""
    pre = norm_base[a]
    if not np.isfinite(pre):
        pre = grad_norm[a - 1] if a > 0 else grad_norm[a]
    after = grad_norm[b + 1:min(b + 1 + recovery_window, nxt)]
    with np.errstate(invalid="ignore"):
        if np.any(np.isfinite(after) & (after <= recover_factor * pre)):
            return "recovered"
    return "diverged" if stopped_before_next else "persistent"


def spike_events(grad_norm: npt.ArrayLike, grad_error: npt.ArrayLike, iterations: npt.ArrayLike,
                 stopped_at: npt.ArrayLike,
                 threshold: float = 10.0, window: int = 50, min_value: float = 0.0,
                 recover_factor: float = 2.0, recovery_window: int | None = None,
                 signals: Sequence[str] = ("grad_error", "grad_norm")) -> np.ndarray:
    """Spike events of each run, labelled recovered, persistent or diverged.

    See the module docstring for the definition.

    Parameters
    ----------
    grad_norm, grad_error : array_like (n_runs, n_records)
    iterations : array_like (n_records,)
    stopped_at : array_like of int (n_runs,), -1 for a run that did not diverge
    threshold : float >= 0, default 10
        A record is a spike when its value exceeds ``threshold`` times the baseline.
    window : int, default 50
        Records in the trailing median that makes the baseline.
    min_value : float >= 0, default 0
        A spike must also exceed this absolute value.
    recover_factor : float > 0, default 2
        Recovered: the gradient norm comes back to at most this many times its pre-spike level.
    recovery_window : int, default ``window``
        Records after the event in which it must recover.
    signals : sequence of {"grad_error", "grad_norm"}

    Returns
    -------
    ndarray with dtype :data:`SPIKE_DTYPE`, one row per event, ordered by run then start.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcascade.metrics import spike_events
    >>> g = np.r_[np.full(100, 1.0), np.full(100, 30.0)][None, :]   # jumps and stays up
    >>> spike_events(g, np.zeros_like(g), np.arange(200), [-1])["label"].tolist()
    ['persistent']
    """
    threshold = check_real(threshold, "threshold", low=0.0)
    window = check_positive_int(window, "window")
    min_value = check_real(min_value, "min_value", low=0.0)
    recover_factor = check_real(recover_factor, "recover_factor", low=0.0, low_open=True)
    recovery_window = window if recovery_window is None else \
        check_positive_int(recovery_window, "recovery_window")
    if isinstance(signals, str):
        signals = (signals,)
    for s in signals:
        if s not in ("grad_error", "grad_norm"):
            raise ValueError(f"signals: expected 'grad_error' and/or 'grad_norm', given {s!r}")
    grad_norm = np.atleast_2d(np.asarray(grad_norm, dtype=np.float64))
    grad_error = np.atleast_2d(np.asarray(grad_error, dtype=np.float64))
    iterations = np.asarray(iterations, dtype=np.int64)
    stopped_at = np.asarray(stopped_at, dtype=np.int64).reshape(-1)
    series = {"grad_norm": grad_norm, "grad_error": grad_error}

    rows = []
    for k in range(grad_norm.shape[0]):
        norm_base = trailing_median(grad_norm[k], window)
        hits, ratios = {}, {}
        for s in signals:
            x = series[s][k]
            base = norm_base if s == "grad_norm" else trailing_median(x, window)
            with np.errstate(all="ignore"):
                hit = np.isfinite(x) & np.isfinite(base) & (x > threshold * base) & (x > min_value)
                ratios[s] = np.where(base > 0, x / base, np.inf)
            hits[s] = hit
        any_hit = np.zeros(grad_norm.shape[1], dtype=bool)
        for s in signals:
            any_hit |= hits[s]
        diverged = stopped_at[k] >= 0
        labelled_diverged = False
        events = _runs_of_true(any_hit)
        for e, (a, b) in enumerate(events):
            which = [s for s in signals if hits[s][a:b + 1].any()]
            signal = which[0] if len(which) == 1 else "both"
            # the largest ratio of a triggering signal, and where it is
            best_s = max(which, key=lambda s: np.max(np.where(hits[s][a:b + 1],
                                                               ratios[s][a:b + 1], -np.inf)))
            seg = np.where(hits[best_s][a:b + 1], ratios[best_s][a:b + 1], -np.inf)
            peak = a + int(np.argmax(seg))
            # what follows the event, up to the next event: a later failure is not this one's
            nxt = events[e + 1][0] if e + 1 < len(events) else grad_norm.shape[1]
            label = _label_event(grad_norm[k], norm_base, a, b, nxt,
                                 recover_factor, recovery_window,
                                 diverged and iterations[a] <= stopped_at[k] and
                                 (nxt >= len(iterations) or stopped_at[k] < iterations[nxt]))
            labelled_diverged |= label == "diverged"
            rows.append((k, iterations[a], iterations[b], iterations[peak], signal,
                         float(seg[peak - a]), label))
        if diverged and not labelled_diverged:
            rows.append((k, stopped_at[k], stopped_at[k], stopped_at[k], "stop", np.nan,
                         "diverged"))
    return np.array(rows, dtype=SPIKE_DTYPE)
