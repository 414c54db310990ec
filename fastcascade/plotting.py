"""Plots of results and sweeps (matplotlib, imported only when a function is called).

Each function takes ``ax=None`` (a new figure when None) and returns the axes it drew on; axes
are labelled, a scale is logarithmic where the data spans decades, and several curves get a
legend.

- :func:`convergence`: a history against the iteration, median and inter-quartile band over the
  seeds, one curve per result (or per sweep point).
- :func:`stable_norm`: the stable gradient norm against the step size, one curve per value of
  another grid key (for example the noise level): the paper's figures 4 to 8.
- :func:`spike_trajectories`: gradient norm and loss of one run, spikes marked by their label
  (the paper's figure 2).
- :func:`amplification_profile`: the forward and backward errors against the depth i.
- :func:`phase_diagram`: a metric over two grid keys (for example dt_f x sigma_f coloured by
  the stable gradient norm).

Examples
--------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> import fastcascade as fc
>>> data = fc.datasets.synthetic_logistic(200, 4, seed=0)
>>> problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), data)
>>> res = fc.run(problem, fc.SGD(step_size=0.5), n_iter=300, seeds=range(3))
>>> ax = fc.plotting.convergence(res)
>>> ax.get_xlabel(), len(ax.lines)
('iteration', 1)
"""
from __future__ import annotations

import numpy as np

from fastcascade.metrics import ewma
from fastcascade.result import Result
from fastcascade.sweeper import SweepResult, _same

__all__ = ["convergence", "stable_norm", "spike_trajectories", "amplification_profile",
           "phase_diagram", "save"]

LABELS = {
    "grad_norm": "gradient norm ||grad l(w)||",
    "objective": "objective l(w)",
    "grad_error": "gradient error ||~u - u||^2",
    "step_size": "step size",
    "stable_grad_norm": "stable gradient norm",
    "stable_iteration": "stable iteration complexity",
    "diverged": "fraction of runs diverged",
}
SPIKE_COLORS = {"recovered": "tab:green", "persistent": "tab:orange", "diverged": "tab:red"}
DECADES = 30.0  # a positive range wider than this ratio gets a log scale


def _new_axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    return ax


def _spans_decades(values):
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    return v.size > 0 and np.all(v > 0) and v.max() / v.min() > DECADES


def _auto_scale(ax, axis, values):
    """Log scale when every finite value is positive and they span decades."""
    if _spans_decades(values):
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        return True
    return False


def _key_label(key):
    """Axis label of a grid key: a few known names in words, the rest as given."""
    return {"step_size": "step size", "n_iter": "iterations T", "batch": "batch size",
            "grad_noise_std": "gradient noise sigma_n"}.get(key, key)


def _fmt(v):
    return f"{v:g}" if isinstance(v, float) else str(v)


def _point_label(values):
    return ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())


def _named_results(results, labels=None):
    """[(label, Result)] from a Result, a SweepResult, a dict label -> Result, or a list."""
    if isinstance(results, Result):
        pairs = [(_point_label(results.grid) if results.grid else None, results)]
    elif isinstance(results, SweepResult):
        pairs = [(_point_label(p), r) for p, r in results.items()]
    elif isinstance(results, dict):
        pairs = [(str(k), r) for k, r in results.items()]
    else:
        try:
            pairs = [(_point_label(r.grid) if r.grid else f"result {k}", r)
                     for k, r in enumerate(results)]
        except (TypeError, AttributeError):
            raise ValueError(f"results: expected a Result, a SweepResult, a dict of Results or "
                             f"a list of Results, given {type(results).__name__}") from None
    for name, r in pairs:
        if not isinstance(r, Result):
            raise ValueError(f"results: {name}: expected a fastcascade.Result, given {r!r}")
    if labels is not None:
        labels = list(labels)
        if len(labels) != len(pairs):
            raise ValueError(f"labels: expected {len(pairs)} labels, given {len(labels)}")
        pairs = [(lab, r) for lab, (_, r) in zip(labels, pairs)]
    return pairs


def _quartiles(y):
    """Median and quartiles over axis 0, ignoring NaN (all-NaN columns stay NaN)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return (np.nanpercentile(y, 25, axis=0), np.nanmedian(y, axis=0),
                np.nanpercentile(y, 75, axis=0))


def convergence(results, field="grad_norm", ax=None, labels=None, smooth=None, band=True):
    """A history against the iteration: the median over the seeds and the band between the
    first and third quartiles, one curve per result.

    Parameters
    ----------
    results : Result, SweepResult (one curve per grid point), dict label -> Result, or list
    field : {"grad_norm", "objective", "grad_error", "step_size"}
    ax : matplotlib Axes, optional
    labels : list of str, optional
        Legend labels (default: the dict keys or the grid values).
    smooth : float in [0, 1), optional
        Smooth each run with an EWMA of this factor per iteration first (the paper's 0.99),
        whatever the recording cadence (:func:`fastcascade.metrics.ewma`).
    band : bool
        Draw the inter-quartile band.

    Returns
    -------
    matplotlib Axes (one line per curve in ``ax.lines``, one band per curve in
    ``ax.collections``)

    Examples
    --------
    ``fc.plotting.convergence({"forward": res_f, "backward": res_b}, smooth=0.99)``
    """
    if field not in ("grad_norm", "objective", "grad_error", "step_size"):
        raise ValueError(f"field: expected one of 'grad_norm', 'objective', 'grad_error', "
                         f"'step_size', given {field!r}")
    pairs = _named_results(results, labels)
    ax = _new_axes(ax)
    drawn = []
    for label, res in pairs:
        y = getattr(res, field)
        if smooth is not None:
            y = ewma(y, smooth, res.iterations)
        lo, med, hi = _quartiles(y)
        (line,) = ax.plot(res.iterations, med, label=label)
        if band and res.n_runs > 1:
            ax.fill_between(res.iterations, lo, hi, color=line.get_color(), alpha=0.25,
                            linewidth=0)
        drawn.append(med)
    ax.set_xlabel("iteration")
    suffix = f" (EWMA {smooth:.3g} per iteration)" if smooth is not None else ""
    ax.set_ylabel(LABELS[field] + suffix)
    if drawn:
        _auto_scale(ax, "y", np.concatenate([np.ravel(d) for d in drawn]))
    n_seeds = max(r.n_runs for _, r in pairs)
    title = (f"median and IQR of {n_seeds} runs" if band else f"median of {n_seeds} runs") \
        if n_seeds > 1 else None
    if len(pairs) > 1 or labels is not None or any(label for label, _ in pairs):
        ax.legend(title=title)
    elif title:
        ax.lines[-1].set_label(title)
        ax.legend()
    return ax


def _sweep_axes_keys(sw, x, curve, where):
    """Check the keys of a sweep plot; returns (curve key or None, where dict)."""
    where = dict(where or {})
    for k in [x] + ([curve] if curve else []) + list(where):
        if k not in sw.grid:
            raise ValueError(f"{k}: not a grid key; the grid has {', '.join(sw.grid) or 'none'}")
    others = [k for k in sw.grid if k != x and k not in where and k != curve]
    if curve is None and others:
        if len(others) == 1:
            curve = others[0]
            others = []
    free = [k for k in others if len(sw.grid[k]) > 1]
    if free:
        raise ValueError(f"{', '.join(free)}: the grid varies these too; fix them with "
                         f"where={{...}} or choose one as curve=")
    return curve, where


def _metric(res, value, factor):
    if callable(value):
        return np.asarray(value(res), dtype=np.float64)
    if value == "stable_grad_norm":
        return res.stable_grad_norm(factor)
    if value == "stable_iteration":
        s = res.stable_iteration_complexity(factor).astype(np.float64)
        s[s < 0] = np.nan
        return s
    if value == "diverged":
        return res.diverged.astype(np.float64)
    raise ValueError(f"value: expected 'stable_grad_norm', 'stable_iteration', 'diverged' or a "
                     f"callable(Result) -> per-run values, given {value!r}")


def _matches(point, fixed):
    return all(_same(point[k], v) for k, v in fixed.items())


def stable_norm(sweep, x="step_size", curve=None, where=None, factor=0.99, ax=None, band=True,
                value="stable_grad_norm"):
    """The stable gradient norm (median over the seeds, band between the quartiles) against a
    grid key, one curve per value of another key: the paper's figures 4 to 8.

    Parameters
    ----------
    sweep : SweepResult
    x : str, default "step_size"
        The grid key on the horizontal axis.
    curve : str, optional
        The grid key with one curve per value (default: the only other key, if there is one).
    where : dict, optional
        Values of the remaining grid keys.
    factor : float
        EWMA factor per iteration.
    ax, band : see :func:`convergence`
    value : "stable_grad_norm", "stable_iteration", "diverged" or callable(Result)

    Returns
    -------
    matplotlib Axes (one line per curve)

    Examples
    --------
    ``fc.plotting.stable_norm(sw, x="step_size", curve="sigma_f")``
    """
    if not isinstance(sweep, SweepResult):
        raise ValueError(f"sweep: expected a fastcascade.SweepResult, given {sweep!r}")
    curve, where = _sweep_axes_keys(sweep, x, curve, where)
    ax = _new_axes(ax)
    curve_values = sweep.grid[curve] if curve else [None]
    xs_all, ys_all = [], []
    for cv in curve_values:
        fixed = dict(where)
        if curve:
            fixed[curve] = cv
        pts = [(p[x], r) for p, r in sweep.items() if _matches(p, fixed)]
        pts.sort(key=lambda t: t[0])
        xs = np.array([float(p) for p, _ in pts])
        stats = np.array([_quartiles(_metric(r, value, factor)[:, None]) for _, r in pts])
        stats = stats.reshape(len(pts), 3)
        label = _fmt(cv) if curve else None
        (line,) = ax.plot(xs, stats[:, 1], marker="o", label=label)
        if band and len(sweep.seeds) > 1:
            ax.fill_between(xs, stats[:, 0], stats[:, 2], color=line.get_color(), alpha=0.2,
                            linewidth=0)
        xs_all.append(xs)
        ys_all.append(stats[:, 1])
    ax.set_xlabel(_key_label(x))
    ylabel = LABELS.get(value, "value") if not callable(value) else "value"
    if len(sweep.seeds) > 1:
        ylabel += f", median of {len(sweep.seeds)} seeds"
    ax.set_ylabel(ylabel)
    _auto_scale(ax, "x", np.concatenate(xs_all))
    _auto_scale(ax, "y", np.concatenate(ys_all))
    if curve:
        ax.legend(title=curve)
    return ax


def spike_trajectories(results, run=0, ax=None, labels=None, events=True, **spike_options):
    """Gradient norm (solid) and loss (dashed) of one run of each result, with its spike events
    marked by label (the paper's figure 2: a spike that recovers, one that persists).

    Parameters
    ----------
    results : Result, or dict label -> Result (for example {"recovers": a, "persists": b})
    run : int
        Which run (row) of each result.
    ax : matplotlib Axes, optional
    labels : list of str, optional
        Legend labels (default: the dict keys).
    events : bool
        Mark the spike events (``Result.spike_events``) at their peak, coloured by label.
    **spike_options
        Passed to ``Result.spike_events`` (threshold, window, ...).

    Returns
    -------
    matplotlib Axes (two lines per result; one marker set per event label present)

    Examples
    --------
    ``fc.plotting.spike_trajectories({"isolated": res_a, "persistent": res_b})``
    """
    pairs = _named_results(results, labels)
    ax = _new_axes(ax)
    values = []
    seen = set()
    for label, res in pairs:
        if not 0 <= run < res.n_runs:
            raise ValueError(f"run: expected a run index in 0..{res.n_runs - 1}, given {run}")
        prefix = f"{label}: " if label else ""
        (line,) = ax.plot(res.iterations, res.grad_norm[run], label=f"{prefix}gradient norm")
        ax.plot(res.iterations, res.objective[run], linestyle="--", color=line.get_color(),
                label=f"{prefix}loss")
        values += [res.grad_norm[run], res.objective[run]]
        if events:
            ev = res.spike_events(**spike_options)
            ev = ev[(ev["run"] == run) & (ev["signal"] != "stop")]
            for lab in ("recovered", "persistent", "diverged"):
                mine = ev[ev["label"] == lab]
                if not mine.size:
                    continue
                rec = np.searchsorted(res.iterations, mine["peak"])
                ax.scatter(mine["peak"], res.grad_norm[run][rec], color=SPIKE_COLORS[lab],
                           marker="v", s=40, zorder=3,
                           label=None if lab in seen else f"spike, {lab}")
                seen.add(lab)
    ax.set_xlabel("iteration")
    ax.set_ylabel("gradient norm (solid), loss (dashed)")
    _auto_scale(ax, "y", np.concatenate(values))
    ax.legend()
    return ax


def amplification_profile(results, ax=None, labels=None, statistic="mean"):
    """The per-operator forward error ||~y_i - y_i||^2 (at f_i's output) and backward error
    ||~v_{i-1} - v_{i-1}||^2 (on the message f_i sends back) against the depth i, indexed as
    ``Perturbation.op`` is (runs made with ``record_profile=True``).

    Each run's errors are averaged over its records (``statistic="mean"``, or "median"), then
    the median over the runs is drawn.

    Parameters
    ----------
    results : Result, SweepResult, dict label -> Result, or list
        One pair of curves per result; each needs ``forward_error`` (ValueError otherwise).
    ax : matplotlib Axes, optional
        Drawn on; new axes by default.
    labels : list of str, optional
        Legend labels (default: the dict keys or the grid values).
    statistic : {"mean", "median"}, default "mean"
        How each run's records are reduced.

    Returns
    -------
    matplotlib Axes (two lines per result: forward, backward)

    Examples
    --------
    ``fc.plotting.amplification_profile(fc.run(..., record_profile=True))``
    """
    import warnings

    if statistic not in ("mean", "median"):
        raise ValueError(f"statistic: expected 'mean' or 'median', given {statistic!r}")
    pairs = _named_results(results, labels)
    ax = _new_axes(ax)
    values = []
    reduce = np.nanmean if statistic == "mean" else np.nanmedian
    for label, res in pairs:
        if res.forward_error is None:
            raise ValueError(f"results: {label or 'result'}: no profile recorded; run with "
                             "record_profile=True")
        N = res.forward_error.shape[2]
        depth = np.arange(1, N + 1)
        prefix = f"{label}: " if label else ""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fwd = np.nanmedian(reduce(res.forward_error, axis=1), axis=0)
            bwd = np.nanmedian(reduce(res.backward_error, axis=1), axis=0)
        (line,) = ax.plot(depth, fwd, marker="o", label=f"{prefix}forward error")
        ax.plot(depth, bwd, marker="s", linestyle="--", color=line.get_color() if prefix
                else None, label=f"{prefix}backward error")
        values += [fwd, bwd]
        ax.set_xticks(depth)
    ax.set_xlabel("operator i (as Perturbation.op)")
    ax.set_ylabel(f"squared error at site i ({statistic} over records)")
    v = np.concatenate(values)
    pos = v[np.isfinite(v) & (v > 0)]
    if pos.size and pos.max() / pos.min() > DECADES:
        ax.set_yscale("log", nonpositive="mask")
    ax.legend()
    return ax


def phase_diagram(sweep, x, y, value="stable_grad_norm", where=None, factor=0.99, ax=None,
                  annotate=True, log_color=None):
    """A metric over two grid keys, as coloured cells (median over the seeds).

    Parameters
    ----------
    sweep : SweepResult
    x, y : str
        Grid keys on the horizontal and vertical axes (cells in grid order).
    value : "stable_grad_norm", "stable_iteration", "diverged" or callable(Result) -> per run
    where : dict, optional
        Values of the other grid keys.
    factor : float
        EWMA factor per iteration.
    ax : matplotlib Axes, optional
    annotate : bool
        Write each cell's value in it.
    log_color : bool, optional
        Logarithmic colour scale (default: when the values span decades).

    Returns
    -------
    matplotlib Axes (``ax.images[0].get_array()`` is the (len(y), len(x)) table of medians;
    NaN where every run diverged)

    Examples
    --------
    ``fc.plotting.phase_diagram(sw, x="dt_f", y="sigma_f")``
    """
    import warnings

    from matplotlib.colors import LogNorm

    if not isinstance(sweep, SweepResult):
        raise ValueError(f"sweep: expected a fastcascade.SweepResult, given {sweep!r}")
    where = dict(where or {})
    for k in [x, y] + list(where):
        if k not in sweep.grid:
            raise ValueError(f"{k}: not a grid key; the grid has {', '.join(sweep.grid)}")
    free = [k for k in sweep.grid if k not in (x, y) and k not in where
            and len(sweep.grid[k]) > 1]
    if free:
        raise ValueError(f"{', '.join(free)}: the grid varies these too; fix them with "
                         "where={...}")
    xv, yv = sweep.grid[x], sweep.grid[y]
    Z = np.full((len(yv), len(xv)), np.nan)
    for p, r in sweep.items():
        if not _matches(p, where):
            continue
        i = next(k for k, v in enumerate(yv) if _same(v, p[y]))
        j = next(k for k, v in enumerate(xv) if _same(v, p[x]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            Z[i, j] = np.nanmedian(_metric(r, value, factor))
    ax = _new_axes(ax)
    if log_color is None:
        log_color = _spans_decades(Z)
    norm = LogNorm(np.nanmin(Z), np.nanmax(Z)) if log_color and np.isfinite(Z).any() else None
    im = ax.imshow(np.ma.masked_invalid(Z), origin="lower", aspect="auto", norm=norm,
                   cmap="viridis")
    ax.set_xticks(range(len(xv)), [_fmt(v) for v in xv])
    ax.set_yticks(range(len(yv)), [_fmt(v) for v in yv])
    ax.set_xlabel(_key_label(x))
    ax.set_ylabel(_key_label(y))
    name = LABELS.get(value, "value") if not callable(value) else "value"
    ax.figure.colorbar(im, ax=ax, label=name)
    if annotate and Z.size <= 200:
        for i in range(len(yv)):
            for j in range(len(xv)):
                if np.isnan(Z[i, j]):
                    text, color = "diverged", "k"
                else:
                    r, g, b, _ = im.cmap(im.norm(Z[i, j]))
                    text = f"{Z[i, j]:.2g}"
                    color = "k" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "w"
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
    return ax


def save(ax, path, dpi=120):
    """Write the figure of ``ax`` to ``path`` and close it.

    Parameters
    ----------
    ax : matplotlib Axes
        Any axes of the figure.
    path : str or os.PathLike
        The file; its extension chooses the format (PNG for ``.png``).
    dpi : int, default 120
        Resolution.

    Returns
    -------
    str or os.PathLike
        ``path``.
    """
    import matplotlib.pyplot as plt

    fig = ax.figure
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
