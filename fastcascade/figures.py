"""Drawing helpers of the reproduction's figures (``fastcascade.experiments``).

- :func:`run_status`: per run "ok", "unsettled" (the weights still grow) or "diverged" (stopped,
  or the gradient norm grows), so a figure never draws a stable norm of a run that has none.
- :func:`stable_curves`: per curve value, the grid's x values, the quartiles over the seeds of a
  per-run metric, and the worst status of each point's runs.
- :func:`draw_curves`: those curves with a band, unsettled points hollow on a dashed line,
  diverged points as red crosses on the top edge; colours fixed by the value (shared across
  panels).
- :func:`log_axis`: a log axis whose tick labels cannot collide (decades only, or 1-2-5 within
  two decades; minor ticks unlabelled); :func:`labels_overlap` checks a drawn figure.

Examples
--------
>>> import numpy as np
>>> from fastcascade.figures import worst
>>> worst(["ok", "unsettled", "ok"])
'unsettled'
"""
from __future__ import annotations

import os

import numpy as np

__all__ = ["STATUS", "run_status", "worst", "stable_curves", "draw_curves", "color_of",
           "log_axis", "labels_overlap", "new_figure", "save_figure"]

STATUS = ("ok", "unsettled", "diverged")
# (ours) a run diverged when it stopped or its gradient norm over the last 10% of the records is
# above 1.5x its mean over records 40%..50%; it is unsettled when ||w|| at the end is above
# 1.25x ||w|| at the midpoint (weights recorded only)
GROWTH = 1.5
WEIGHT_GROWTH = 1.25
DIVERGED_COLOR = "tab:red"


def run_status(res):
    """Per run of a Result: "ok", "unsettled" or "diverged" (see the module's criteria).

    Parameters
    ----------
    res : Result
        A run's result: its ``grad_norm`` of shape (n_runs, n_records), ``diverged`` flags
        (one per run), ``n_runs``, and optionally ``weights`` of shape
        (n_runs, n_records, dim); the unsettled test needs at least 2 weight records.

    Returns
    -------
    list of str
        One status per run: "diverged" when the run stopped, has a non-finite gradient norm,
        or its mean gradient norm over the last 10% of the records is above `GROWTH` (1.5)
        times its mean over records 40%..50%; else "unsettled" when ||w|| at the last record
        is above `WEIGHT_GROWTH` (1.25) times ||w|| at the middle record; else "ok".
    """
    g = np.asarray(res.grad_norm, dtype=float)
    n = g.shape[1]
    out = []
    for k in range(res.n_runs):
        if res.diverged[k] or not np.all(np.isfinite(g[k])):
            out.append("diverged")
            continue
        late = g[k, n - max(1, n // 10):].mean()
        mid = g[k, int(0.4 * n):max(int(0.5 * n), int(0.4 * n) + 1)].mean()
        if late > GROWTH * mid:
            out.append("diverged")
            continue
        w = getattr(res, "weights", None)
        if w is not None and w.size and w.shape[1] > 1:
            norm = np.linalg.norm(w[k], axis=1)
            if norm[-1] > WEIGHT_GROWTH * norm[norm.size // 2]:
                out.append("unsettled")
                continue
        out.append("ok")
    return out


def worst(statuses):
    """The worst of a list of statuses ("ok" < "unsettled" < "diverged").

    Parameters
    ----------
    statuses : sequence of str
        Statuses, each one of `STATUS`.

    Returns
    -------
    str
        The worst one; "ok" for an empty sequence.
    """
    return max(statuses, key=STATUS.index) if len(statuses) else "ok"


def _quartiles(v):
    v = np.asarray(v, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (np.nan, np.nan, np.nan)
    return tuple(np.percentile(v, [25, 50, 75]))


def stable_curves(sw, x, curve, metric, fixed=None):
    """{curve value: (x, quartiles (n, 3), worst status per point)} of a sweep.

    ``metric(res)`` gives one value per run. A point whose runs include a diverged one gets NaN
    quartiles: no value is drawn for it.

    Parameters
    ----------
    sw : Sweep
        A sweep's results: ``sw.items()`` gives ``(point, Result)`` pairs, each point a dict of
        grid values.
    x : str
        The grid key read as the x value of each point (must be in every kept point).
    curve : str or None
        The grid key whose value names the curve a point belongs to; None (or empty) puts all
        the points on one curve, keyed None.
    metric : callable
        ``metric(res)`` gives one value per run of a Result (array_like of float); its
        finite values give the quartiles.
    fixed : dict, optional
        Grid key to value: only the points that match every entry are used (default: all).

    Returns
    -------
    dict
        Curve value to ``(x, q, status)``, sorted by x: ``x`` an ndarray of float of shape
        (n,), ``q`` an ndarray of shape (n, 3) with the 25th, 50th and 75th percentiles (NaN
        for a diverged point or one without a finite value), and ``status`` a list of n
        statuses from `worst`.
    """
    fixed = fixed or {}
    out = {}
    for point, res in sw.items():
        if any(point.get(k) != v for k, v in fixed.items()):
            continue
        status = worst(run_status(res))
        q = (np.nan,) * 3 if status == "diverged" else _quartiles(metric(res))
        out.setdefault(point.get(curve) if curve else None, []).append((point[x], q, status))
    curves = {}
    for key, rows in out.items():
        rows.sort(key=lambda r: r[0])
        curves[key] = (np.array([r[0] for r in rows], dtype=float),
                       np.array([r[1] for r in rows], dtype=float).reshape(-1, 3),
                       [r[2] for r in rows])
    return curves


def color_of(value, values):
    """The colour of one value among the sorted ``values`` (tab10 by position), the same in
    every panel that draws that set of values.

    Parameters
    ----------
    value : object
        The curve value to colour; must be in ``values``.
    values : iterable
        All the curve values of the figure (None sorts last).

    Returns
    -------
    tuple of float
        An RGBA colour of matplotlib's tab10 map, picked by the value's position in the sorted
        values (cycling after 10).

    Raises
    ------
    ValueError
        When ``value`` is not among ``values``.
    """
    import matplotlib

    values = sorted(values, key=lambda v: (v is None, v))
    return matplotlib.colormaps["tab10"](values.index(value) % 10)


def draw_curves(ax, curves, label, values=None, band=True, reference=0):
    """Draw :func:`stable_curves` output; returns the number of diverged points drawn.

    Ok points: solid line with filled markers and the inter-quartile band; unsettled points:
    hollow markers on a dashed line; diverged points: red crosses on the top edge. The
    ``reference`` curve (the clean run, value 0) is black, dashed and drawn on top, so no other
    curve can hide it.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The axes drawn on.
    curves : dict
        The output of `stable_curves`: curve value to ``(x, q, status)``.
    label : callable
        ``label(value)`` gives a curve's legend text.
    values : iterable, optional
        The curve values that fix the colours (see `color_of`); default: the keys of
        ``curves``.
    band : bool, optional
        Whether to fill the inter-quartile band of the ok points (default True).
    reference : object, optional
        The curve value drawn as the reference (default 0).

    Returns
    -------
    int
        The number of diverged points drawn, over all the curves.
    """
    values = list(curves) if values is None else values
    n_diverged = 0
    for key, (x, q, status) in curves.items():
        is_ref = key == reference
        color = "k" if is_ref else color_of(key, values)
        st = np.array(status)
        ok = st == "ok"
        med = q[:, 1]
        style = dict(linestyle="--", marker="s", markersize=4, zorder=4) if is_ref else \
            dict(linestyle="-", marker="o")
        ax.plot(x, np.where(ok, med, np.nan), color=color,
                label=label(key) if ok.any() else None, **style)
        if band and np.isfinite(q[:, 0]).any():
            ax.fill_between(x, np.where(ok, q[:, 0], np.nan), np.where(ok, q[:, 2], np.nan),
                            color=color, alpha=0.2, linewidth=0)
        uns = st == "unsettled"
        if uns.any():
            ax.plot(x, np.where(uns | ok, med, np.nan), "--", color=color, linewidth=0.8)
            ax.plot(x[uns], med[uns], "o", mfc="none", color=color,
                    label=f"{label(key)}, unsettled (||w|| grows)")
        div = st == "diverged"
        if div.any():
            n_diverged += int(div.sum())
            ax.plot(x[div], np.ones(div.sum()), "x", color=DIVERGED_COLOR, markersize=9,
                    mew=2, transform=ax.get_xaxis_transform(), clip_on=False,
                    label=f"{label(key)}: diverged")
    return n_diverged


def _tick_label(v, _pos=None):
    return f"{v:g}"


def log_axis(ax, axis, values):
    """A log scale on ``axis`` ("x" or "y") whose labels cannot collide: at most 6 major ticks
    on the decades (1, 2, 5 within them when the finite positive ``values`` span under two
    decades, a few round values under one decade), labelled "%g"; minor ticks unlabelled.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The axes whose scale is set (in place).
    axis : {"x", "y"}
        The axis; anything but "x" sets the y axis.
    values : array_like of float
        The values drawn on that axis; only the finite positive ones are read, to choose the
        ticks (with none, the ticks are those of a span of three decades).
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v) & (v > 0)]
    a = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    span = v.max() / v.min() if v.size else 1e3
    if span < 10:  # under a decade: a few round values (a log locator would fall back to many)
        a.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]))
    else:
        subs = (1.0, 2.0, 5.0) if span < 100 else (1.0,)
        a.set_major_locator(LogLocator(base=10, subs=subs, numticks=6))
    a.set_major_formatter(FuncFormatter(_tick_label))
    a.set_minor_locator(LogLocator(base=10, subs=np.arange(2, 10) * 1.0, numticks=12))
    a.set_minor_formatter(NullFormatter())


def labels_overlap(fig):
    """The pairs of overlapping tick labels on any axis of a drawn figure (empty: none).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure; it is drawn on its canvas to measure the labels.

    Returns
    -------
    list of tuple of str
        ``(text, text)`` of each pair of visible, non-empty tick labels of one axis whose
        window extents overlap.
    """
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    bad = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            boxes = [(t.get_text(), t.get_window_extent(renderer))
                     for t in axis.get_ticklabels() if t.get_visible() and t.get_text()]
            for i in range(len(boxes)):
                for j in range(i + 1, len(boxes)):
                    if boxes[i][1].overlaps(boxes[j][1]):
                        bad.append((boxes[i][0], boxes[j][0]))
    return bad


def new_figure(rows, cols, width=5.2, height=4.2, **kwargs):
    """A new figure of rows x cols axes under the Agg backend (no display needed).

    Parameters
    ----------
    rows, cols : int
        The grid of axes.
    width, height : float, optional
        The size of one panel in inches (default 5.2 x 4.2); the figure is
        ``width * cols`` by ``height * rows``.
    **kwargs
        Passed on to ``matplotlib.pyplot.subplots`` (for example ``sharex``).

    Returns
    -------
    fig : matplotlib.figure.Figure
        The figure.
    axes : ndarray of matplotlib.axes.Axes
        The axes, always of shape (rows, cols).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False,
                        **kwargs)


def save_figure(fig, folder, name, title=None, dpi=110, rect=None):
    """Write ``fig`` to ``folder/<name>.png`` and close it; returns the path (``rect``: the
    part of the figure the axes may fill, leaving room for a figure legend).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure; closed afterwards.
    folder : str or os.PathLike
        The folder written to, created when missing.
    name : str
        The file name without the ``.png`` suffix.
    title : str, optional
        A figure title (``suptitle``), wrapped; none by default.
    dpi : float, optional
        The resolution (default 110).
    rect : tuple of float, optional
        ``(left, bottom, right, top)`` in figure fractions, passed to ``tight_layout``;
        default: the whole figure.

    Returns
    -------
    str
        The path of the written file.
    """
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title, fontsize=10, wrap=True)
    fig.tight_layout(rect=rect)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.png")
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
