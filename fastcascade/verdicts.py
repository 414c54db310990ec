"""The verdict rules of the reproduction: each claim of the paper as a test on plain numbers.

Every rule returns ``True`` (supported), ``False`` (not supported) or ``None`` (not tested: the
data it needs is missing, for example an empty grid). A rule never passes on nothing. The
thresholds are ours (the paper states none); each is named here and explained in the report's
table of choices (``fastcascade.experiments.CHOICES``).

Examples
--------
>>> from fastcascade import verdicts as V
>>> V.falls_with_step([], []) is None
True
>>> V.falls_with_step([0.1, 1.0], [1e-4, 1e-3])
True
>>> V.verdict(None)
'not tested'
"""
from __future__ import annotations

import math
import numpy as np

__all__ = ["VERDICTS", "verdict", "finite_pairs", "log_slope", "tail", "spearman",
           "falls_with_step", "same_trend", "plateau", "rises", "recovers", "needed_dt",
           "needs_larger_dt", "growth_exponent", "order_kept", "below_bound", "ranked",
           "within_factor", "spike_recovers", "persists", "compression_fails", "final_slope"]

VERDICTS = ("supported", "not supported", "not tested")
# (ours) "the same trend": a slope of log stable norm vs log step size above half the clean one;
# "a plateau": a slope below half the clean one over the small-step end of the grid
HALF = 0.5
# (ours) a step size counts in the small-step end when it is within 10x of the smallest one
TAIL_RANGE = 10.0
# (ours) "recovered": within 1.5x of standard SGD's stable norm (the paper's stable-iteration
# threshold 1.5); "hurt": 1.5x above it
RECOVERED = 1.5
# (ours) "the order is kept": the ratio to the clean run grows at most like T^0.15 along a path
# of the (T, Q) plane; ln T grows like T^0.1 over 2e3..2e5, so 0.15 allows one log factor
KEPT_EXPONENT = 0.15
# (ours) a depth claim: Spearman's rank correlation of the site index and the error <= -0.7
# (or >= 0.7) over all the sites
RANK = 0.7


def verdict(supported):
    """The word for a rule's answer: "supported", "not supported" or "not tested".

    Parameters
    ----------
    supported : bool or None
        A rule's answer: ``None`` (not tested), else read for its truth value.

    Returns
    -------
    str
        ``"not tested"`` for ``None``, ``"supported"`` for a true value, ``"not supported"``
        for a false one (one of `VERDICTS`).
    """
    return VERDICTS[2] if supported is None else VERDICTS[0] if supported else VERDICTS[1]


def finite_pairs(x, y):
    """The pairs (x, y) with both finite and positive, sorted by x (two arrays).

    Parameters
    ----------
    x, y : array_like of float
        Paired values, flattened; any shape with the same number of elements.

    Returns
    -------
    x, y : ndarray of float
        Two 1-D arrays of equal length, the pairs where both values are finite and ``> 0``,
        in increasing order of x.
    """
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    order = np.argsort(x[ok])
    return x[ok][order], y[ok][order]


def log_slope(x, y):
    """Least-squares slope of log y against log x over the finite positive pairs (NaN with
    fewer than 2).

    Parameters
    ----------
    x, y : array_like of float
        Paired values, as for `finite_pairs`.

    Returns
    -------
    float
        The slope of a degree-1 fit of ``log(y)`` on ``log(x)``; NaN when fewer than two
        finite positive pairs remain or all their x are equal.
    """
    x, y = finite_pairs(x, y)
    if x.size < 2 or np.ptp(x) == 0:
        return float("nan")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def tail(x, y, span=TAIL_RANGE):
    """The pairs whose x is within ``span`` times the smallest finite x (the small-step end).

    Parameters
    ----------
    x, y : array_like of float
        Paired values, as for `finite_pairs` (non-finite and non-positive pairs are dropped).
    span : float, optional
        How far above the smallest x a pair is kept (``x <= span * min(x)``); default
        `TAIL_RANGE` (10).

    Returns
    -------
    x, y : ndarray of float
        The kept pairs, sorted by x; both empty when no finite positive pair exists.
    """
    x, y = finite_pairs(x, y)
    if x.size == 0:
        return x, y
    keep = x <= span * x[0]
    return x[keep], y[keep]


def spearman(a, b):
    """Spearman's rank correlation of two sequences (NaN with fewer than 3 pairs or a constant
    sequence); ties get their mean rank.

    Parameters
    ----------
    a, b : array_like of float
        Two 1-D sequences of the same length; pairs where either value is not finite are
        dropped.

    Returns
    -------
    float
        The Pearson correlation of the ranks, in [-1, 1]; NaN with fewer than 3 finite pairs
        or when either sequence's ranks are constant.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size < 3:
        return float("nan")
    ra, rb = _ranks(a), _ranks(b)
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(v):
    order = np.argsort(v, kind="mergesort")
    r = np.empty(v.size)
    r[order] = np.arange(v.size, dtype=float)
    for value in np.unique(v):  # ties: mean rank
        same = v == value
        r[same] = r[same].mean()
    return r


# ---------------------------------------------------------------------------------------------
# Figures 4, 5, 6: the stable norm against the step size


def falls_with_step(x, y):
    """Standard SGD: the stable norm rises strictly with the step size (falls as it falls).

    Parameters
    ----------
    x : array_like of float
        The step sizes.
    y : array_like of float
        The stable norm at each step size (same length as ``x``).

    Returns
    -------
    bool or None
        Over the finite positive pairs sorted by step size: True (supported) when each norm is
        strictly above the previous one, False (not supported) otherwise; None (not tested)
        with fewer than 2 such pairs.
    """
    x, y = finite_pairs(x, y)
    if x.size < 2:
        return None
    return bool(np.all(np.diff(y) > 0))


def same_trend(clean, curves):
    """Every noisy curve {level: (x, y)} falls with the step size like the clean (x, y) does:
    rising strictly, with a log-log slope above half the clean one.

    Parameters
    ----------
    clean : tuple of array_like
        ``(step sizes, stable norms)`` of the clean run.
    curves : dict
        Noise level to ``(step sizes, stable norms)`` of a noisy run.

    Returns
    -------
    bool or None
        True (supported) when every tested curve passes `falls_with_step` and has a
        `log_slope` above ``HALF`` (0.5) times the clean curve's; False (not supported) when
        any tested curve fails. A curve with fewer than 2 finite positive pairs is left out.
        None (not tested) when no curve is left or the clean slope is NaN.
    """
    ref = log_slope(*clean)
    tested = {k: v for k, v in curves.items() if finite_pairs(*v)[0].size >= 2}
    if not tested or not np.isfinite(ref):
        return None
    return bool(all(falls_with_step(*v) and log_slope(*v) > HALF * ref
                    for v in tested.values()))


def plateau(clean, curves):
    """Every curve {level: (x, y)} is on a plateau at the small-step end of the grid: its
    log-log slope there is below half the clean curve's slope over the same step sizes.

    Parameters
    ----------
    clean : tuple of array_like
        ``(step sizes, stable norms)`` of the clean run; its small-step end is taken by `tail`.
    curves : dict
        Noise level to ``(step sizes, stable norms)``; only the step sizes in the clean
        curve's small-step end are used.

    Returns
    -------
    bool or None
        True (supported) when every curve's slope there is below ``HALF`` (0.5) times the
        clean one, False (not supported) otherwise. None (not tested) when ``curves`` is
        empty, the clean slope is NaN or not positive, or any curve's slope is NaN (fewer
        than 2 usable step sizes).
    """
    cx, cy = tail(*clean)
    ref = log_slope(cx, cy)
    if not curves or not np.isfinite(ref) or ref <= 0:
        return None
    slopes = []
    for x, y in curves.values():
        x, y = finite_pairs(x, y)
        keep = np.isin(x, cx)
        slopes.append(log_slope(x[keep], y[keep]))
    if not all(np.isfinite(slopes)):
        return None
    return bool(all(s < HALF * ref for s in slopes))


def rises(levels):
    """{noise level: value}: the value rises strictly with the level (at least 2 levels).

    Parameters
    ----------
    levels : dict of float to float
        Noise level to a measured value; levels with a non-finite value are dropped.

    Returns
    -------
    bool or None
        True (supported) when, in increasing order of level, each value is strictly above the
        previous one, False (not supported) otherwise; None (not tested) with fewer than 2
        finite values.
    """
    pairs = sorted((k, v) for k, v in levels.items() if np.isfinite(v))
    if len(pairs) < 2:
        return None
    return bool(np.all(np.diff([v for _, v in pairs]) > 0))


# ---------------------------------------------------------------------------------------------
# Figures 7, 8: intermittent forward spikes


def recovers(ratio, slack=1.1):
    """{dt_f: stable norm / standard SGD's}: hurt at the smallest dt_f (>= 1.5), recovered at
    the largest (< 1.5), and never markedly worse as dt_f grows (each ratio at most ``slack``
    times the previous one).

    Parameters
    ----------
    ratio : dict of float to float
        Spike interval dt_f to the ratio of the stable norm to standard SGD's; non-finite
        ratios are dropped.
    slack : float, optional
        How much a ratio may exceed the one at the next smaller dt_f (default 1.1).

    Returns
    -------
    bool or None
        True (supported) when all three conditions hold, False (not supported) otherwise;
        None (not tested) with fewer than 2 finite ratios.
    """
    pairs = sorted((k, v) for k, v in ratio.items() if np.isfinite(v))
    if len(pairs) < 2:
        return None
    r = np.array([v for _, v in pairs])
    return bool(r[0] >= RECOVERED and r[-1] < RECOVERED and np.all(r[1:] <= slack * r[:-1]))


def needed_dt(ratio):
    """The smallest dt_f whose ratio to standard SGD is within 1.5x (inf when none is).

    Parameters
    ----------
    ratio : dict of float to float
        Spike interval dt_f to the ratio of the stable norm to standard SGD's.

    Returns
    -------
    float
        The smallest key with a finite ratio below `RECOVERED` (1.5), as given (its type
        is the key's); ``math.inf`` when there is none.
    """
    ok = [dt for dt, r in sorted(ratio.items()) if np.isfinite(r) and r < RECOVERED]
    return ok[0] if ok else math.inf


def needs_larger_dt(small, large):
    """{dt_f: ratio} for a smaller and a larger sigma_f: the larger one needs a larger dt_f to
    recover (to within 1.5x), or, needing the same dt_f, is hurt more at every dt_f below it.

    Parameters
    ----------
    small : dict of float to float
        dt_f to the ratio to standard SGD for the smaller sigma_f.
    large : dict of float to float
        The same for the larger sigma_f.

    Returns
    -------
    bool or None
        None (not tested) when either dict is empty or neither sigma_f recovers at any dt_f.
        When the two `needed_dt` differ: True (supported) when the larger sigma_f's is larger
        (never recovering counts as infinitely large), else False. When they are equal: True
        when there is at least one common dt_f below it and at each the larger sigma_f's
        ratio is strictly above the smaller's, else False (not supported).
    """
    if not small or not large:
        return None
    n_small, n_large = needed_dt(small), needed_dt(large)
    if math.isinf(n_small) and math.isinf(n_large):
        return None
    if n_large != n_small:
        return bool(n_large > n_small)
    below = [dt for dt in small if dt in large and dt < n_small]
    return bool(below) and all(large[dt] > small[dt] for dt in below)


# ---------------------------------------------------------------------------------------------
# Table 1


def growth_exponent(by_horizon):
    """{T: ratio to the clean run}: the least-squares exponent g in ratio ~ T^g.

    Parameters
    ----------
    by_horizon : dict of float to float
        Horizon T to the ratio of the run's error to the clean run's; entries whose ratio is
        not finite or not positive are dropped.

    Returns
    -------
    float
        The `log_slope` of the ratio against T; NaN with fewer than 2 usable horizons.
    """
    T = sorted(k for k, v in by_horizon.items() if np.isfinite(v) and v > 0)
    if len(T) < 2:
        return float("nan")
    return log_slope(T, [by_horizon[t] for t in T])


def order_kept(paths):
    """{path: {T: ratio}} for the paths of the (T, Q) plane inside the budget: along each, the
    ratio to the clean run grows at most like T^0.15 (the clean rate's order is kept).

    Parameters
    ----------
    paths : dict of hashable to dict
        Each path's ``{T: ratio to the clean run}``, as for `growth_exponent`.

    Returns
    -------
    bool or None
        False (not supported) when any ratio is infinite (a diverged run inside the budget).
        Otherwise True (supported) when the largest finite `growth_exponent` is at most
        `KEPT_EXPONENT` (0.15), else False; None (not tested) when no path has a finite
        exponent (for example no paths, or fewer than 2 usable horizons on each).
    """
    if any(np.isinf(r) for p in paths.values() for r in p.values()):
        return False  # a diverged run inside the budget
    g = [growth_exponent(p) for p in paths.values()]
    g = [v for v in g if np.isfinite(v)]
    if not g:
        return None
    return bool(max(g) <= KEPT_EXPONENT)


# ---------------------------------------------------------------------------------------------
# Bounds and depth


def below_bound(pairs):
    """[(measured, bound)]: every measurement is at most its bound.

    Parameters
    ----------
    pairs : iterable of tuple of float
        ``(measured, bound)`` pairs; pairs whose measurement is not finite are dropped.

    Returns
    -------
    bool or None
        True (supported) when every kept measurement is ``<=`` its bound, False (not
        supported) otherwise (a NaN bound fails); None (not tested) when no pair is kept.
    """
    pairs = [(m, b) for m, b in pairs if np.isfinite(m)]
    if not pairs:
        return None
    return bool(all(m <= b for m, b in pairs))


def ranked(values, direction):
    """{site index: value}: Spearman's rho of the site and the value is <= -0.7
    (``direction="decreasing"``) or >= 0.7 (``"increasing"``) over all the sites.

    Parameters
    ----------
    values : dict of int to float
        Site index (depth) to the measured value.
    direction : {"decreasing", "increasing"}
        The claimed direction of the value along the sites.

    Returns
    -------
    bool or None
        True (supported) when the `spearman` correlation is ``<= -RANK`` (decreasing) or
        ``>= RANK`` (increasing), with `RANK` 0.7, else False (not supported); None (not
        tested) when the correlation is NaN (fewer than 3 finite sites or a constant value).

    Raises
    ------
    ValueError
        When ``direction`` is neither of the two words.
    """
    if direction not in ("decreasing", "increasing"):
        raise ValueError(f"direction: expected 'decreasing' or 'increasing', given {direction!r}")
    sites = sorted(values)
    rho = spearman(sites, [values[s] for s in sites])
    if not np.isfinite(rho):
        return None
    return bool(rho <= -RANK) if direction == "decreasing" else bool(rho >= RANK)


def within_factor(pairs, factor=1.5):
    """[(measured, predicted)]: each measurement within ``factor`` of its prediction.

    Parameters
    ----------
    pairs : iterable of tuple of float
        ``(measured, predicted)`` pairs; pairs with a non-finite value or a prediction
        ``<= 0`` are dropped.
    factor : float, optional
        The allowed ratio either way (default 1.5).

    Returns
    -------
    bool or None
        True (supported) when every kept ratio measured / predicted is within
        ``[1 / factor, factor]``, False (not supported) otherwise; None (not tested) when no
        pair is kept.
    """
    pairs = [(m, p) for m, p in pairs if np.isfinite(m) and np.isfinite(p) and p > 0]
    if not pairs:
        return None
    return bool(all(1.0 / factor <= m / p <= factor for m, p in pairs))


# ---------------------------------------------------------------------------------------------
# Figure 2, figure 9, figure 3


def spike_recovers(peak_ratio, tail_ratio, spike=10.0):
    """An isolated spike: recorded (the gradient norm jumps to >= 10x its value before it) and
    recovered from (the end of the run within 1.5x of the clean run's end).

    Parameters
    ----------
    peak_ratio : float
        The gradient norm at the spike over its value before it.
    tail_ratio : float
        The end of the run over the clean run's end.
    spike : float, optional
        The jump that counts as recorded (default 10).

    Returns
    -------
    bool or None
        True (supported) when ``peak_ratio >= spike`` and ``tail_ratio < RECOVERED`` (1.5),
        False (not supported) otherwise; None (not tested) when either ratio is not finite.
    """
    if not (np.isfinite(peak_ratio) and np.isfinite(tail_ratio)):
        return None
    return bool(peak_ratio >= spike and tail_ratio < RECOVERED)


def persists(error_ratio, tail_ratio, stall=2.0):
    """A moderate persistent perturbation: its gradient error per step is below the isolated
    spike's (``error_ratio`` < 1) and the run stalls (its end >= 2x the clean run's end).

    Parameters
    ----------
    error_ratio : float
        The perturbation's gradient error per step over the isolated spike's.
    tail_ratio : float
        The end of the run over the clean run's end.
    stall : float, optional
        The ratio that counts as stalled (default 2).

    Returns
    -------
    bool or None
        True (supported) when ``error_ratio < 1`` and ``tail_ratio >= stall``, False (not
        supported) otherwise; None (not tested) when either ratio is not finite.
    """
    if not (np.isfinite(error_ratio) and np.isfinite(tail_ratio)):
        return None
    return bool(error_ratio < 1.0 and tail_ratio >= stall)


def compression_fails(uncompressed, top1, converged=1e-6, failed=1.0):
    """Appendix A.3: ||w_1|| ends below 1e-6 without compression and above 1 with Top-1.

    Parameters
    ----------
    uncompressed : float or None
        The final ||w_1|| of the run without compression.
    top1 : float or None
        The final ||w_1|| of the run with Top-1 compression.
    converged : float, optional
        The norm below which the uncompressed run counts as converged (default 1e-6).
    failed : float, optional
        The norm above which the Top-1 run counts as failed (default 1).

    Returns
    -------
    bool or None
        True (supported) when ``uncompressed < converged`` and ``top1 > failed``, False (not
        supported) otherwise; None (not tested) when either value is None or NaN.
    """
    if uncompressed is None or top1 is None or np.isnan(uncompressed) or np.isnan(top1):
        return None
    return bool(uncompressed < converged and top1 > failed)


def final_slope(x, y, flat, threshold=0.25):
    """Figure 3: the log-log slope of the final smoothed norm against the step size is below
    ``threshold`` (``flat``: a plateau) or above it (still falling with the step size); 0.25
    is half the slope 0.5 of the sqrt(step size) noise floor.

    Parameters
    ----------
    x : array_like of float
        The step sizes.
    y : array_like of float
        The final smoothed norm at each step size.
    flat : bool
        True to claim a plateau (slope below ``threshold``), False to claim the norm still
        falls with the step size (slope above it).
    threshold : float, optional
        The slope separating the two (default 0.25).

    Returns
    -------
    bool or None
        True (supported) when the `log_slope` is on the claimed side of ``threshold``
        (strictly), False (not supported) otherwise; None (not tested) when the slope is NaN
        (fewer than 2 finite positive pairs).
    """
    s = log_slope(x, y)
    if not np.isfinite(s):
        return None
    return bool(s < threshold) if flat else bool(s > threshold)
