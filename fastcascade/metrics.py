"""Metrics derived from a run's histories (PAPER.md section 5), as plain functions on arrays.

``fc.Result`` calls these; they take arrays, so they work on any history with the same layout
(one row per run, one column per record).

- :func:`ewma`: the exponentially weighted moving average of a history (the paper's smoothing
  of the true gradient norm). The factor applies per *record*: with ``record_every = r`` a factor
  ``beta`` smooths like ``beta ** (1 / r)`` per iteration.
- :func:`stable_grad_norm`: the mean of that EWMA over the last half of the records.
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
one event. What follows the event labels it:

- ``"recovered"``: within ``recovery_window`` records after the event, the gradient norm returns
  to at most ``recover_factor`` times its pre-spike level (its baseline at the event's start, or
  the record before it when there is no baseline yet);
- ``"diverged"``: it did not recover, and the run stopped (diverged) after the event started;
- ``"persistent"``: it did not recover, and the run went on.

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

import numpy as np

from fastcascade._validation import check_positive_int, check_real

__all__ = ["ewma", "stable_grad_norm", "stable_iteration_complexity", "spike_events",
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


def ewma(x, factor=0.99):
    """Exponentially weighted moving average along the last axis.

    e_0 = x_0 and e_t = factor e_{t-1} + (1 - factor) x_t.

    Parameters
    ----------
    x : array_like (..., n_records)
    factor : float in [0, 1), default 0.99

    Returns
    -------
    ndarray, same shape as ``x`` (a NaN propagates forward: a diverged run's tail stays NaN)

    Examples
    --------
    >>> from fastcascade.metrics import ewma
    >>> ewma([1.0, 0.0, 0.0], factor=0.5).tolist()
    [1.0, 0.5, 0.25]
    """
    factor = _factor(factor)
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    if x.shape[-1] == 0:
        return out
    out[..., 0] = x[..., 0]
    keep = 1.0 - factor
    for t in range(1, x.shape[-1]):
        out[..., t] = factor * out[..., t - 1] + keep * x[..., t]
    return out


def stable_grad_norm(grad_norm, factor=0.99, diverged=None):
    """The paper's stable gradient norm per run: the mean of the EWMA over the last half of the
    records (NaN for a diverged run).

    Parameters
    ----------
    grad_norm : array_like (n_runs, n_records)
    factor : float in [0, 1)
    diverged : array_like of bool (n_runs,), optional

    Examples
    --------
    >>> import numpy as np
    >>> from fastcascade.metrics import stable_grad_norm
    >>> stable_grad_norm(np.full((1, 10), 2.0)).tolist()
    [2.0]
    """
    e = ewma(np.atleast_2d(grad_norm), factor)
    half = e.shape[1] // 2
    stable = np.mean(e[:, half:], axis=1) if e.shape[1] else np.full(e.shape[0], np.nan)
    if diverged is not None:
        stable[np.asarray(diverged, dtype=bool)] = np.nan
    return stable


def stable_iteration_complexity(grad_norm, iterations, factor=0.99, threshold=1.5,
                                diverged=None):
    """Per run, the first iteration where the EWMA of the gradient norm is below ``threshold``
    times the stable gradient norm; -1 when it never is (or the run diverged).

    Examples
    --------
    >>> import numpy as np
    >>> from fastcascade.metrics import stable_iteration_complexity
    >>> g = np.r_[np.full(10, 100.0), np.full(90, 1.0)][None, :]
    >>> stable_iteration_complexity(g, np.arange(100) * 10, factor=0.5).tolist()
    [170]
    """
    threshold = check_real(threshold, "threshold", low=0.0, low_open=True)
    grad_norm = np.atleast_2d(np.asarray(grad_norm, dtype=np.float64))
    iterations = np.asarray(iterations)
    e = ewma(grad_norm, factor)
    stable = stable_grad_norm(grad_norm, factor, diverged)
    out = np.full(grad_norm.shape[0], -1, dtype=np.int64)
    for k in range(grad_norm.shape[0]):
        if not np.isfinite(stable[k]):
            continue
        below = np.nonzero(e[k] < threshold * stable[k])[0]
        if below.size:
            out[k] = iterations[below[0]]
    return out


def trailing_median(x, window, min_count=None, chunk=8192):
    """Median of the previous ``window`` finite values of a 1-d series at each position
    (NaN where fewer than ``min_count`` are available)."""
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


def spike_events(grad_norm, grad_error, iterations, stopped_at, threshold=10.0, window=50,
                 min_value=0.0, recover_factor=2.0, recovery_window=None,
                 signals=("grad_error", "grad_norm")):
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
        for a, b in _runs_of_true(any_hit):
            which = [s for s in signals if hits[s][a:b + 1].any()]
            signal = which[0] if len(which) == 1 else "both"
            # the largest ratio of a triggering signal, and where it is
            best_s = max(which, key=lambda s: np.max(np.where(hits[s][a:b + 1],
                                                               ratios[s][a:b + 1], -np.inf)))
            seg = np.where(hits[best_s][a:b + 1], ratios[best_s][a:b + 1], -np.inf)
            peak = a + int(np.argmax(seg))
            pre = norm_base[a]
            if not np.isfinite(pre):
                pre = grad_norm[k, a - 1] if a > 0 else grad_norm[k, a]
            after = grad_norm[k, b + 1:b + 1 + recovery_window]
            with np.errstate(invalid="ignore"):
                recovered = bool(np.any(np.isfinite(after) & (after <= recover_factor * pre)))
            if recovered:
                label = "recovered"
            elif diverged and stopped_at[k] >= iterations[a]:
                label = "diverged"
                labelled_diverged = True
            else:
                label = "persistent"
            rows.append((k, iterations[a], iterations[b], iterations[peak], signal,
                         float(seg[peak - a]), label))
        if diverged and not labelled_diverged:
            rows.append((k, stopped_at[k], stopped_at[k], stopped_at[k], "stop", np.nan,
                         "diverged"))
    return np.array(rows, dtype=SPIKE_DTYPE)
