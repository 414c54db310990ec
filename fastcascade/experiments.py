"""The paper's experiments (docs/model.md sec. 6) as named, declarative configurations.

Each :class:`Experiment` is a list of :class:`Panel` sweeps (a problem, an optimizer, a
perturbation factory with fixed settings, and a grid that depends on the scale) and an analysis
that turns the finished sweeps into :class:`Finding` rows: the paper's claim, the numbers we
measured, and whether they support it. ``reproduce`` runs experiments, writes their PNGs, the
raw results (one sweep folder per panel, resumable) and a markdown report.

Scales (ours, where the paper is silent): ``quick`` runs in minutes on 2 cores (the tests use
it), ``paper`` uses the paper's horizon T = 200,000 and fuller grids. The step-size grid is
logarithmic, the noise levels are in {0, .25, .5, 1, 2}, dt_f in powers of 10. Uniform noise is
U(-sigma/sqrt(d), sigma/sqrt(d)) with d = 10 features, one draw per sample per step; the
gradient noise is sigma_n = 1e-3; the stable gradient norm uses the paper's per-iteration EWMA
factor 0.99, whatever the recording cadence (``fastcascade.metrics.record_decay``).

Examples
--------
>>> import fastcascade as fc
>>> sorted(fc.experiments.EXPERIMENTS)[:3]
['bounds', 'fig2', 'fig3']
>>> fc.experiments.EXPERIMENTS["fig4"].title
'Stable gradient norm against the step size, non-convex'
"""
from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from fastcascade import noise as N
from fastcascade import ops, plotting, problems, theory, timing
from fastcascade.cascade import Cascade
from fastcascade.ops import DiagLinear, InnerSquare
from fastcascade.optim import SGD
from fastcascade.perturbation import Perturbation
from fastcascade.problem import Problem
from fastcascade.sweeper import sweep as run_sweep

__all__ = ["Scale", "SCALES", "Panel", "Experiment", "Finding", "EXPERIMENTS", "reproduce",
           "logistic_perturbations", "a3_problem", "a3_perturbations"]

N_FEATURES = 10
GRAD_NOISE = 1e-3


@dataclass(frozen=True)
class Scale:
    """The sizes of one scale of the experiments.

    Parameters
    ----------
    name : str
        "quick" or "paper".
    n_iter : int
        T, the horizon of the figures' runs.
    record_every : int
        Recording period (shortened for short runs by :func:`record_every`).
    step_sizes : tuple of float
        The step-size grid (logarithmic).
    sigmas : tuple of float
        The noise levels sigma_f and sigma_b.
    dts : tuple of int
        The periods dt_f of the intermittent spikes (figures 7 and 8).
    seeds : tuple of int
        The seeds of every sweep.
    horizons : tuple of int
        Table 1's horizons T.
    table_dts : tuple of int
        Table 1's periods dt (Q = T / dt).
    """

    name: str
    n_iter: int
    record_every: int
    step_sizes: tuple
    sigmas: tuple
    dts: tuple
    seeds: tuple
    horizons: tuple          # Table 1's horizons T
    table_dts: tuple         # Table 1's periods dt (Q = T / dt)

    @property
    def ewma(self) -> float:
        """The EWMA factor per iteration (the paper's 0.99); the metrics convert it to the
        recording cadence themselves."""
        return 0.99


SCALES = {
    "quick": Scale("quick", n_iter=5000, record_every=10, step_sizes=(4.0, 1.0, 0.25),
                   sigmas=(0.0, 0.5, 2.0), dts=(10, 100, 1000), seeds=(0, 1),
                   horizons=(1000, 4000), table_dts=(1, 10, 100, 1000)),
    "paper": Scale("paper", n_iter=200_000, record_every=100,
                   step_sizes=(4.0, 2.0, 1.0, 0.5, 0.25, 0.125, 0.0625),
                   sigmas=(0.0, 0.25, 0.5, 1.0, 2.0), dts=(10, 100, 1000, 10_000),
                   seeds=(0, 1), horizons=(2000, 20_000, 200_000),
                   table_dts=(1, 10, 100, 1000, 10_000)),
}


# ---------------------------------------------------------------------------------------------
# Perturbation factories (module level, so sweeps can send them to any executor)


def _uniform(sigma, biased=False, d=N_FEATURES):
    half = sigma / math.sqrt(d)
    return N.Uniform(0.0 if biased else -half, half)


def logistic_perturbations(sigma_f=0.0, sigma_b=0.0, dt_f=1, biased_b=False, case=None,
                           spike_at=0, spike_sigma=20.0):
    """The paper's noise on its logistic model: delta after f_1 ~ U(-sigma_f/sqrt(d), ..),
    every ``dt_f`` iterations (``dt_f = 0``: never); eps on the message f_2 sends to f_1 ~
    U(-sigma_b/sqrt(d), ..), or U(0, sigma_b/sqrt(d)) when ``biased_b``.

    Parameters
    ----------
    sigma_f : float, default 0.0
        Forward noise level (0: none).
    sigma_b : float, default 0.0
        Backward noise level (0: none).
    dt_f : int, default 1
        Period of the forward noise (1: every iteration, 0: never).
    biased_b : bool, default False
        Backward noise U(0, sigma_b/sqrt(d)) instead of zero-mean.
    case : {None, "clean", "spike", "persistent"}, default None
        Figure 2's cases: "clean" (no noise), "spike" (at ``spike_at``, every margin shifted by
        spike_sigma/sqrt(d): a coherent O(1) gradient error), "persistent" or None (the
        settings above, forward noise of size ``sigma_f`` at every iteration by default).
    spike_at : int, default 0
        Iteration of the spike.
    spike_sigma : float, default 20.0
        Size of the spike (times 1/sqrt(d)).

    Returns
    -------
    list of fastcascade.Perturbation
    """
    if case == "clean":
        return []
    if case == "spike":
        return [Perturbation(1, "forward", N.Constant(spike_sigma / math.sqrt(N_FEATURES)),
                             timing=timing.At([spike_at]))]
    perts = []
    if sigma_f > 0 and dt_f > 0:
        when = timing.Always() if dt_f == 1 else timing.Every(int(dt_f))
        perts.append(Perturbation(1, "forward", _uniform(sigma_f), timing=when))
    if sigma_b > 0:
        perts.append(Perturbation(2, "backward", _uniform(sigma_b, biased=biased_b)))
    return perts


A3_SGD = ((-15.0, 13.0), (-5.0, 9.0))
A3_HEAVY_BALL = ((-5.0, -4.0), (-5.0, 3.0))


def a3_problem(A):
    """Appendix A.3: x = (1, 1), f_1 = A (x * w_1), f_2 = <y_1, w_2>^2 + ||y_1||^2 / 2.

    Parameters
    ----------
    A : array_like
        The 2 x 2 matrix of f_1 (``A3_SGD`` or ``A3_HEAVY_BALL``).

    Returns
    -------
    fastcascade.Problem
        One sample, four weights (w_1 then w_2).
    """
    return Problem(Cascade([DiagLinear(np.array(A)), InnerSquare()]), (np.ones((1, 2)),))


def a3_perturbations(top1=False):
    """Top-1 compression of the backward message f_2 sends to f_1 (or nothing).

    Parameters
    ----------
    top1 : bool, default False
        Compress the message.

    Returns
    -------
    list of fastcascade.Perturbation
        ``[Perturbation(2, "backward", TopK(1))]``, or empty.
    """
    return [Perturbation(2, "backward", N.TopK(1))] if top1 else []


# ---------------------------------------------------------------------------------------------
# Declarations


@dataclass(frozen=True)
class Panel:
    """One sweep of an experiment and how to draw it.

    Parameters
    ----------
    name : str
        The panel's name (its raw folder ``out/raw/<experiment>/<name>``).
    title : str
        The plot's title.
    grid : callable
        ``grid(scale) -> dict`` of grid values.
    problem : callable, default ``problems.paper_logistic``
        Called with ``problem_args``; returns a Problem.
    problem_args : dict, default {}
        Keyword arguments of ``problem``.
    optimizer : dict, default step size 1 and gradient noise 1e-3
        Keyword arguments of fc.SGD.
    perturbations : callable, default ``logistic_perturbations``
        Factory of the perturbations, called with ``fixed`` and the grid keys.
    fixed : dict, default {}
        Keyword arguments bound into ``perturbations``.
    plot : {"stable_norm", "convergence", "spikes", "weights"}, default "stable_norm"
        "stable_norm" (x = step_size, one curve per ``curve``), "convergence" (one curve per
        point), "spikes" (figure 2), "weights" (figure 9).
    curve : str, optional
        The grid key of the curves of a "stable_norm" plot.
    n_iter : callable, optional
        ``n_iter(scale) -> int``; default ``scale.n_iter``.
    record_weights : bool, default False
        Record w_t (figure 9).
    init : tuple of float, optional
        Initial weights; zeros by default.
    """

    name: str
    title: str
    grid: object
    problem: object = problems.paper_logistic
    problem_args: dict = field(default_factory=dict)
    optimizer: dict = field(default_factory=lambda: {"step_size": 1.0,
                                                     "grad_noise_std": GRAD_NOISE})
    perturbations: object = logistic_perturbations
    fixed: dict = field(default_factory=dict)
    plot: str = "stable_norm"
    curve: str | None = None
    n_iter: object = None          # callable(Scale) -> int, default scale.n_iter
    record_weights: bool = False
    init: tuple | None = None      # initial weights (default zeros)

    def settings(self, scale):
        """The panel's sweep at a scale, built: problem, optimizer, perturbation factory, grid and
        T.

        Parameters
        ----------
        scale : Scale
            The sizes.

        Returns
        -------
        dict
            ``problem``, ``optimizer`` (an SGD), ``perturbations`` (a ``functools.partial`` with
            ``fixed``), ``grid`` and ``n_iter``.
        """
        return dict(
            problem=self.problem(**self.problem_args),
            optimizer=SGD(**self.optimizer),
            perturbations=functools.partial(self.perturbations, **self.fixed),
            grid=self.grid(scale),
            n_iter=self.n_iter(scale) if self.n_iter else scale.n_iter,
        )


@dataclass
class Finding:
    """One claim of the paper next to what we measured.

    Parameters
    ----------
    claim : str
        The paper's finding, in a sentence.
    measured : str
        The numbers measured.
    supported : bool
        The verdict of the experiment's rule.
    """

    claim: str
    measured: str
    supported: bool


@dataclass(frozen=True)
class Experiment:
    """One of the paper's figures: panels of sweeps and the analysis of their results.

    Parameters
    ----------
    name : str
        The key in ``EXPERIMENTS`` ("fig2", ...).
    title : str
        The figure's title.
    panels : tuple of Panel
        The sweeps.
    analyse : callable
        ``analyse(dict name -> SweepResult, Scale) -> list of Finding``.
    seeds : callable, optional
        ``seeds(scale) -> seeds``; default ``scale.seeds``.
    """
    name: str
    title: str
    panels: tuple
    analyse: object            # callable(dict name -> SweepResult, Scale) -> list of Finding
    seeds: object = None       # callable(Scale) -> seeds, default scale.seeds

    def run(self, scale="quick", out=None, n_jobs=2, progress=False):
        """Run every panel's sweep.

        With ``out``, each panel's runs go to ``out/raw/<experiment>/<panel>`` as they finish,
        and a rerun reuses them.

        Parameters
        ----------
        scale : {"quick", "paper"} or Scale
            The sizes of the runs (``SCALES``).
        out : str or os.PathLike, optional
            The output folder; the raw sweeps go to ``out/raw/<experiment>/...`` as they finish and
            a rerun reuses them. None keeps everything in memory.
        n_jobs : int, default 2
            Threads per sweep.
        progress : None or bool, default False
            Progress bars on stderr (None: when stderr is a terminal).

        Returns
        -------
        dict of str to fastcascade.SweepResult
            Panel name to its sweep.
        """
        scale = SCALES[scale] if isinstance(scale, str) else scale
        results = {}
        for panel in self.panels:
            s = panel.settings(scale)
            folder = None if out is None else os.path.join(out, "raw", self.name, panel.name)
            horizons = s["grid"].get("n_iter", [s["n_iter"]])
            results[panel.name] = run_sweep(
                s["problem"], s["optimizer"],
                n_iter=None if "n_iter" in s["grid"] else s["n_iter"], grid=s["grid"],
                seeds=list(self.seeds(scale) if self.seeds else scale.seeds),
                perturbations=s["perturbations"], n_jobs=n_jobs, out=folder,
                progress=progress, record_every=record_every(scale, min(horizons)),
                record_weights=panel.record_weights, max_norm=1e8,
                init=None if panel.init is None else np.array(panel.init, dtype=float))
        return results

    def section(self, scale, out, n_jobs=2, progress=False):
        """Run, draw and analyse the experiment.

        Parameters
        ----------
        scale : {"quick", "paper"} or Scale
            The sizes of the runs (``SCALES``).
        out : str or os.PathLike
            The output folder (raw sweeps under ``out/raw``, the PNG at its top).
        n_jobs : int, default 2
            Threads per sweep.
        progress : None or bool, default False
            Progress bars on stderr (None: when stderr is a terminal).

        Returns
        -------
        findings : list of Finding
            The claims and what was measured.
        png : str
            Path of the figure written.
        """
        results = self.run(scale, out=out, n_jobs=n_jobs, progress=progress)
        png = plot(self, results, scale, out)
        return self.analyse(results, SCALES[scale] if isinstance(scale, str) else scale), png


def record_every(scale, n_iter):
    """The scale's recording period, or less for short runs (at least 200 records).

    Parameters
    ----------
    scale : Scale
        Its ``record_every`` is the longest period.
    n_iter : int
        The run's horizon T.

    Returns
    -------
    int
        ``max(1, min(scale.record_every, n_iter // 200))``.
    """
    return max(1, min(scale.record_every, n_iter // 200))


# ---------------------------------------------------------------------------------------------
# Analyses: numbers from finished sweeps


def stable_by(sw, x, curve=None, fixed=None, factor=0.99):
    """{curve value: (x values, median stable gradient norm over seeds)} of a sweep.

    Parameters
    ----------
    sw : fastcascade.SweepResult
        A finished sweep.
    x : str
        The grid key on the x axis.
    curve : str, optional
        The grid key of the curves; None gives one curve, keyed None.
    fixed : dict, optional
        Only points with these grid values are used.
    factor : float, default 0.99
        EWMA factor per iteration.

    Returns
    -------
    dict
        Curve value to ``(x, y)``, two float arrays sorted by x.
    """
    fixed = fixed or {}
    out = {}
    for point, res in sw.items():
        if any(point.get(k) != v for k, v in fixed.items()):
            continue
        key = point.get(curve) if curve else None
        value = float(np.median(res.stable_grad_norm(factor=factor)))
        out.setdefault(key, []).append((point[x], value))
    return {k: tuple(np.array(v) for v in zip(*sorted(pairs))) for k, pairs in out.items()}


def log_slope(x, y):
    """Least-squares slope of log y against log x.

    Parameters
    ----------
    x : numpy.ndarray
        Positive values.
    y : numpy.ndarray
        Values; non-finite and non-positive ones are dropped.

    Returns
    -------
    float
        The slope; NaN with fewer than two usable points.
    """
    ok = np.isfinite(y) & (y > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def _spread(y):
    return float(np.nanmax(y) / np.nanmin(y))


def _fmt(v):
    return f"{v:.3g}"


def _asymmetry(results, scale, forward_panel, backward_panel):
    f = stable_by(results[forward_panel], "step_size", "sigma_f")
    b = stable_by(results[backward_panel], "step_size", "sigma_b")
    x, clean = f[0.0]
    slopes_f = {s: log_slope(*f[s]) for s in sorted(f)}
    slopes_b = {s: log_slope(*b[s]) for s in sorted(b)}
    big = max(f)
    findings = [
        Finding("Standard SGD: the stable gradient norm falls as the step size falls.",
                f"slope of log stable norm vs log step size: {_fmt(slopes_f[0.0])}; from "
                f"{_fmt(clean[-1])} (step {x[-1]:g}) to {_fmt(clean[0])} (step {x[0]:g})",
                bool(np.all(np.diff(clean) > 0))),
        Finding("Zero-mean backward noise is benign: the same trend as standard SGD.",
                "slopes per sigma_b: " + ", ".join(f"{s:g}: {_fmt(v)}" for s, v in
                                                    slopes_b.items()),
                bool(slopes_b[max(b)] > 0.5 * slopes_f[0.0]
                     and np.all(np.diff(b[max(b)][1]) > 0))),
        Finding(f"Zero-mean forward noise (sigma_f >= 0.5) leaves a plateau that does not shrink "
                f"with the step size: the stable norm at sigma_f = {big:g} changes by a far "
                f"smaller factor across the grid than standard SGD's.",
                "slopes per sigma_f: " + ", ".join(f"{s:g}: {_fmt(v)}" for s, v in
                                                    slopes_f.items())
                + f"; max/min across the grid: sigma_f = {big:g}: {_fmt(_spread(f[big][1]))}, "
                f"clean: {_fmt(_spread(clean))}",
                bool(slopes_f[big] < 0.5 * slopes_f[0.0]
                     and _spread(f[big][1]) < math.sqrt(_spread(clean)))),
    ]
    return findings


def _analyse_fig3(results, scale):
    findings = []
    for name, label in (("forward", "forward sigma_f = 2"), ("backward", "backward sigma_b = 2")):
        sw = results[name]
        finals = []
        for point, res in sw.items():
            e = res.ewma_grad_norm(scale.ewma)
            finals.append((point["step_size"], float(np.median(e[:, -1]))))
        finals.sort()
        x, y = np.array(finals).T
        slope = log_slope(x, y)
        findings.append(Finding(
            f"{label}: final smoothed gradient norm against the step size"
            + (" stays on a plateau" if name == "forward" else " keeps falling with the step size"),
            ", ".join(f"step {a:g}: {_fmt(b)}" for a, b in finals) + f" (slope {_fmt(slope)})",
            bool(slope < 0.25) if name == "forward" else bool(slope > 0.25)))
    return findings


def _analyse_biased(results, scale):
    b = stable_by(results["biased"], "step_size", "sigma_b")
    sig = sorted(b)
    at_small = [float(b[s][1][0]) for s in sig]  # at the smallest step size
    return [Finding(
        "Biased backward noise leaves a plateau that rises with sigma_b.",
        "stable norm at the smallest step size per sigma_b: "
        + ", ".join(f"{s:g}: {_fmt(v)}" for s, v in zip(sig, at_small))
        + "; slopes: " + ", ".join(f"{s:g}: {_fmt(log_slope(*b[s]))}" for s in sig),
        bool(np.all(np.diff(at_small) > 0)))]


def _analyse_spikes(results, scale):
    findings = []
    needed = {}
    for name in ("sigma1", "sigma2"):
        b = stable_by(results[name], "step_size", "dt_f")
        clean = b[0][1]
        dts = sorted(k for k in b if k != 0)
        small = [float(b[dt][1][0]) for dt in dts]
        ratio = [v / float(clean[0]) for v in small]
        ok = [dt for dt, r in zip(dts, ratio) if r < 1.5]
        needed[name] = ok[0] if ok else math.inf
        findings.append(Finding(
            f"Intermittent forward spikes ({name.replace('sigma', 'sigma_f = ')}): training "
            f"recovers progressively as dt_f grows.",
            "stable norm / standard SGD's at the smallest step size per dt_f: "
            + ", ".join(f"{dt}: {_fmt(r)}" for dt, r in zip(dts, ratio)),
            bool(np.all(np.diff(small) <= 0) and small[0] > small[-1])))
    findings.append(Finding(
        "A larger sigma_f needs a larger dt_f to recover (a phase transition in the budget "
        "Q_delta ~ T/dt_f).",
        f"smallest dt_f within 1.5x of standard SGD: sigma_f = 1: {needed['sigma1']}, "
        f"sigma_f = 2: {needed['sigma2']}",
        bool(needed["sigma2"] >= needed["sigma1"])))
    return findings


def _analyse_fig2(results, scale):
    sw = results["cases"]
    res = {p["case"]: r for p, r in sw.items()}
    tail = {c: float(np.median(np.nanmean(r.grad_norm[:, -r.grad_norm.shape[1] // 10:], axis=1)))
            for c, r in res.items()}
    spike = res["spike"]
    k = spike.iterations.searchsorted(sw.points[0]["spike_at"])
    peak = float(np.nanmax(spike.grad_norm[:, k:k + 5])) if k < spike.grad_norm.shape[1] else 0
    return [
        Finding("An isolated large spike is recovered from: the run ends where the clean run "
                "ends.",
                f"mean gradient norm over the last 10%: clean {_fmt(tail['clean'])}, isolated "
                f"spike {_fmt(tail['spike'])} (peak after the spike {_fmt(peak)})",
                bool(tail["spike"] < 1.5 * tail["clean"])),
        Finding("A moderate persistent perturbation never converges: it stalls on a plateau.",
                f"mean gradient norm over the last 10%: persistent "
                f"{_fmt(tail['persistent'])} = {_fmt(tail['persistent'] / tail['clean'])} x "
                f"clean",
                bool(tail["persistent"] > 2 * tail["clean"])),
    ]


def _analyse_fig9(results, scale):
    findings = []
    for name, label in (("sgd", "SGD"), ("heavy_ball", "Heavy ball")):
        sw = results[name]
        w1 = {}
        for point, res in sw.items():
            last = res.final_weights[0, :2]
            w1[point["top1"]] = (float(np.linalg.norm(last)) if not res.diverged[0]
                                 else float("inf"))
        findings.append(Finding(
            f"{label} converges without compression and fails with Top-1 on the backward "
            "message (appendix A.3).",
            f"final ||w_1||: uncompressed {_fmt(w1[False])}, Top-1 {_fmt(w1[True])}",
            bool(w1[False] < 1e-6 and w1[True] > 1.0)))
    return findings


TABLE1_SETTINGS = {
    # name: (regularizer, pass, biased)
    "nonconvex_forward_zero_mean": ("nonconvex", "forward", False),
    "nonconvex_forward_biased": ("nonconvex", "forward", True),
    "nonconvex_backward_zero_mean": ("nonconvex", "backward", False),
    "nonconvex_backward_biased": ("nonconvex", "backward", True),
    "pl_forward_zero_mean": ("strongly_convex", "forward", False),
    "pl_forward_biased": ("strongly_convex", "forward", True),
    "pl_backward_zero_mean": ("strongly_convex", "backward", False),
    "pl_backward_biased": ("strongly_convex", "backward", True),
}


def table1_perturbations(pass_="forward", biased=False, sigma=2.0, dt=0):
    """An O(1) perturbation (U(-sigma/sqrt(d), ..) or U(0, ..)) every ``dt`` iterations at f_1's
    output or on the message f_2 sends back (dt = 0: never).

    Parameters
    ----------
    pass_ : {"forward", "backward"}, default "forward"
        The site: op 1 forward, or op 2 backward.
    biased : bool, default False
        U(0, sigma/sqrt(d)) instead of zero-mean.
    sigma : float, default 2.0
        The noise level.
    dt : int, default 0
        The period (1: every iteration, 0: never).

    Returns
    -------
    list of fastcascade.Perturbation
    """
    if dt == 0:
        return []
    when = timing.Always() if dt == 1 else timing.Every(int(dt))
    op = 1 if pass_ == "forward" else 2
    return [Perturbation(op, pass_, _uniform(sigma, biased), timing=when)]


def table1_step_size(setting, n_iter):
    """(ours) The step size of a horizon T in the Table 1 experiment, as the rates assume:
    gamma = 2 sqrt(1000 / T) for the non-convex problem (the O(1/sqrt(T)) rate) and
    gamma = min(0.5, 6 ln(T) / T) for the PL problem (mu = 1 for rho = 0.5: the O(ln T / T)
    rate, with the initial gap contracted by (1 - mu gamma / 3)^T ~ T^-2).

    Parameters
    ----------
    setting : {"nonconvex", "pl"}
        The problem's setting (any other value is treated as "pl").
    n_iter : int
        T.

    Returns
    -------
    float
    """
    if setting == "nonconvex":
        return 2.0 * math.sqrt(1000.0 / n_iter)
    return min(0.5, 6.0 * math.log(n_iter) / n_iter)


def table1_metric(res, setting):
    """Non-convex: the mean of ||grad l(w_t)||^2 over the run (Theorem 4's left side); PL: the
    mean of ||grad l||^2 over the last 10% of the run (a proxy of l(w_T) - l*). Median over
    seeds; inf when a run diverged.

    Parameters
    ----------
    res : fastcascade.Result
        The runs of one grid point.
    setting : {"nonconvex", "pl"}
        Which metric.

    Returns
    -------
    float
    """
    if res.diverged.any():
        return float("inf")
    g2 = res.grad_norm ** 2
    if setting == "pl":
        g2 = g2[:, -max(1, g2.shape[1] // 10):]
    return float(np.median(np.mean(g2, axis=1)))


def _figure(rows, cols, width=5.2, height=4.2):
    """A new figure of rows x cols axes under the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)


def _save_figure(fig, folder, name, title=None, dpi=110):
    """Write ``fig`` to ``folder/<name>.png`` and close it; returns the path."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title, fontsize=10, wrap=True)
    fig.tight_layout()
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.png")
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


class Table1Experiment:
    """Table 1: the budgets Q of iterations with an O(1) perturbation that keep the clean rate.

    For each setting (non-convex or PL, forward or backward, zero-mean or biased), horizons T
    with the step size the rate assumes (:func:`table1_step_size`) and a perturbation every dt
    iterations (Q = T / dt): the ratio of the metric (:func:`table1_metric`) to the clean run's
    at the same T. Within the budget Q <= T^b the ratio should stay O(1) (we test < 3); far
    beyond it, it grows with T.
    """

    name = "table1"
    title = "Table 1: budgets of intermittent O(1) perturbations"
    settings = TABLE1_SETTINGS

    def run(self, scale, out=None, n_jobs=2, progress=False):
        """Run Table 1's sweeps: per setting and horizon T, the clean run and one per period dt.

        Parameters
        ----------
        scale : {"quick", "paper"} or Scale
            The sizes of the runs (``SCALES``).
        out : str or os.PathLike, optional
            The output folder; the raw sweeps go to ``out/raw/<experiment>/...`` as they finish and
            a rerun reuses them. None keeps everything in memory.
        n_jobs : int, default 2
            Threads per sweep.
        progress : None or bool, default False
            Progress bars on stderr (None: when stderr is a terminal).

        Returns
        -------
        dict
            {setting: {(T, dt): ratio of the metric to the clean run's}}.
        """
        scale = SCALES[scale] if isinstance(scale, str) else scale
        cells = {}
        for name, (reg, pass_, biased) in self.settings.items():
            setting = "pl" if reg == "strongly_convex" else "nonconvex"
            problem = problems.paper_logistic(reg, rho=0.5 if setting == "pl" else None)
            factory = functools.partial(table1_perturbations, pass_=pass_, biased=biased)
            values = {}
            for T in scale.horizons:
                folder = None if out is None else os.path.join(out, "raw", self.name, name,
                                                               f"T{T}")
                optimizer = SGD(table1_step_size(setting, T), grad_noise_std=GRAD_NOISE)
                sw = run_sweep(problem, optimizer, n_iter=T,
                               grid={"dt": [0] + [dt for dt in scale.table_dts if dt <= T]},
                               seeds=list(scale.seeds[:2]), perturbations=factory,
                               n_jobs=n_jobs, out=folder, progress=progress,
                               record_every=record_every(scale, T), max_norm=1e8)
                metric = {p["dt"]: table1_metric(r, setting) for p, r in sw.items()}
                for dt, v in metric.items():
                    if dt:
                        values[(T, dt)] = v / metric[0]
            cells[name] = values
        return cells

    def analyse(self, cells, scale):
        """One finding per setting: within the budget Q <= T^b the ratio stays below 3.

        Parameters
        ----------
        cells : dict
            The result of :meth:`run`.
        scale : Scale
            The sizes (unused beyond the signature shared with the other experiments).

        Returns
        -------
        list of Finding
        """
        findings = []
        for name, (reg, pass_, biased) in self.settings.items():
            setting = "pl" if reg == "strongly_convex" else "nonconvex"
            b = theory.table1_exponent(setting, not biased, pass_)
            within = {k: r for k, r in cells[name].items() if k[0] / k[1] <= k[0] ** b}
            rows = [f"T={T} Q={T / dt:g}: x{_fmt(r)}"
                    for (T, dt), r in sorted(cells[name].items())]
            findings.append(Finding(
                f"Table 1, {setting}, {pass_}, {'biased' if biased else 'zero-mean'}: within "
                f"the budget Q <= T^{b:g} the clean rate is kept (metric within 3x of the clean "
                "run's).",
                "; ".join(rows) + " (within the budget and kept: "
                f"{sum(r < 3.0 for r in within.values())}/{len(within)})",
                bool(all(r < 3.0 for r in within.values()))))
        return findings

    def plot(self, cells, scale, folder):
        """The 2 x 4 figure: per setting, the ratio (colour, log10) against T and Q, with the
        budget T^b dashed.

        Parameters
        ----------
        cells : dict
            The result of :meth:`run`.
        scale : Scale
            The sizes.
        folder : str or os.PathLike
            Where ``table1.png`` is written.

        Returns
        -------
        str
            The PNG's path.
        """
        fig, axes = _figure(2, 4, width=5.0)
        for ax, (name, (reg, pass_, biased)) in zip(axes.ravel(), self.settings.items()):
            setting = "pl" if reg == "strongly_convex" else "nonconvex"
            keys = sorted(cells[name])
            T = np.array([k[0] for k in keys], dtype=float)
            Q = np.array([k[0] / k[1] for k in keys], dtype=float)
            ratio = np.log10(np.clip([cells[name][k] for k in keys], 1e-3, 1e6))
            sc = ax.scatter(T, Q, c=ratio, cmap="viridis", s=140, vmin=0,
                            vmax=max(1.0, float(ratio.max())))
            fig.colorbar(sc, ax=ax, label="log10(metric / clean)")
            Ts = np.geomspace(T.min(), T.max(), 50)
            ax.plot(Ts, [theory.table1_budget(setting, not biased, pass_, t) for t in Ts], "k--",
                    label="Table 1 budget")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("horizon T")
            ax.set_ylabel("perturbed iterations Q = T / dt")
            ax.set_title(f"{setting}, {pass_}, {'biased' if biased else 'zero-mean'}")
            ax.legend(loc="upper left")
        return _save_figure(fig, folder, self.name, f"{self.name}: {self.title}", dpi=100)

    def section(self, scale, out, n_jobs=2, progress=False):
        """Run, analyse and draw Table 1.

        Parameters
        ----------
        scale : {"quick", "paper"} or Scale
            The sizes of the runs (``SCALES``).
        out : str or os.PathLike
            The output folder (raw sweeps under ``out/raw``, the PNG at its top).
        n_jobs : int, default 2
            Threads per sweep.
        progress : None or bool, default False
            Progress bars on stderr (None: when stderr is a terminal).

        Returns
        -------
        findings : list of Finding
            The claims and what was measured.
        png : str
            Path of the figure written.
        """
        cells = self.run(scale, out=out, n_jobs=n_jobs, progress=progress)
        scale = SCALES[scale] if isinstance(scale, str) else scale
        return self.analyse(cells, scale), self.plot(cells, scale, out)


class BoundsExperiment:
    """Beyond the paper: Theorem 1's bound against Monte Carlo measurements on random cascades
    of depth 2 and up (tanh, sigmoid and linear layers, constants estimated along the
    iterate), and the location sensitivity of forward and backward noise in a depth-5 tanh
    network whose Jacobians expand (C1 > 1).

    Parameters
    ----------
    width : int, default 3
        Width of the random cascades.
    levels : tuple of float, default (0.01, 0.1, 0.3)
        Standard deviations of the Gaussian noise put at every site.
    """

    name = "bounds"
    title = "Theorem 1's bound against measurements, by depth; where noise hurts most"

    def __init__(self, width=3, levels=(0.01, 0.1, 0.3)):
        self.width = width
        self.levels = levels

    def depths(self, scale):
        """The depths N measured at a scale.

        Parameters
        ----------
        scale : Scale
            "quick" measures (2, 3, 4, 6), any other scale 2 to 8.

        Returns
        -------
        tuple of int
        """
        return (2, 3, 4, 6) if scale.name == "quick" else (2, 3, 4, 5, 6, 7, 8)

    def measure(self, scale):
        """{depth: [(sigma, measured E||~u-u||^2, its standard error, bound)]}.

        Parameters
        ----------
        scale : Scale
            Sets the depths and the Monte Carlo draws (200 quick, 2000 otherwise).

        Returns
        -------
        dict of int to list of tuple
        """
        draws = 200 if scale.name == "quick" else 2000
        out = {}
        for depth in self.depths(scale):
            rng = np.random.default_rng(depth)
            kinds = [lambda: ops.Linear(self.width, self.width), ops.Tanh, ops.Sigmoid]
            layers = [kinds[0]()] + [kinds[rng.integers(3)]() for _ in range(depth - 2)]
            X = rng.standard_normal((40, self.width))
            problem = Problem(Cascade(layers + [ops.SquaredError()]), (X, np.tanh(X)))
            w = problem.init_weights(seed=depth)
            k = theory.estimate_constants(problem, w, n_samples=20)
            rows = []
            for sigma in self.levels:
                noise = N.Gaussian(0.0, sigma)
                perts = [Perturbation(i, "forward", noise) for i in range(1, depth)]
                perts += [Perturbation(i, "backward", noise) for i in range(2, depth + 1)]
                st = theory.gradient_error_stats(problem, w, perts, n_draws=draws, seed=3)
                second = theory.perturbation_moments(noise, self.width)["sq"]
                bound = theory.variance_bound(k, depth, [second] * (depth - 1),
                                              [second] * (depth - 1))
                rows.append((sigma, st["mean_sq"], st["mean_sq_se"], bound))
            out[depth] = rows
        return out

    def location(self, scale):
        """E||~u-u||^2 for the same noise at each forward and backward site of the network.

        Parameters
        ----------
        scale : Scale
            Sets the Monte Carlo draws (300 quick, 3000 otherwise).

        Returns
        -------
        forward : dict of int to float
            Operator i = 1..5 to the error of Gaussian(0, 0.1) noise after f_i.
        backward : dict of int to float
            Operator i = 2..6 to the error of the same noise on the message f_i sends.
        """
        rng = np.random.default_rng(0)
        d = 6
        X = rng.standard_normal((200, d)) / np.sqrt(d)
        layers = [ops.Linear(d, d), ops.Tanh(), ops.Linear(d, d), ops.Tanh(), ops.Linear(d, 1),
                  ops.SquaredError()]
        problem = Problem(Cascade(layers), (X, np.tanh(X[:, :1])))
        w = problem.init_weights(seed=1) * 3.0 * np.sqrt(3.0)  # gain 3: expanding Jacobians
        noise = N.Gaussian(0.0, 0.1)
        draws = 300 if scale.name == "quick" else 3000

        def err(op, pass_):
            return theory.gradient_error_stats(problem, w, [Perturbation(op, pass_, noise)],
                                               n_draws=draws, seed=5)["mean_sq"]

        return ({i: err(i, "forward") for i in range(1, 6)},
                {i: err(i, "backward") for i in range(2, 7)})

    def section(self, scale, out, n_jobs=2, progress=False):
        """Measure, draw and judge the bounds experiment (three findings).

        Parameters
        ----------
        scale : {"quick", "paper"} or Scale
            The sizes of the runs (``SCALES``).
        out : str or os.PathLike
            The output folder (raw sweeps under ``out/raw``, the PNG at its top).
        n_jobs : int, default 2
            Threads per sweep.
        progress : None or bool, default False
            Progress bars on stderr (None: when stderr is a terminal).

        Returns
        -------
        findings : list of Finding
            The claims and what was measured.
        png : str
            Path of the figure written.
        """
        scale = SCALES[scale] if isinstance(scale, str) else scale
        data = self.measure(scale)
        fwd, bwd = self.location(scale)
        fig, ((a, b),) = _figure(1, 2, width=5.5)
        for depth, rows in data.items():
            s, m, _, bound = np.array(rows).T
            line, = a.loglog(s, m, "o-", label=f"measured, N = {depth}")
            a.loglog(s, bound, "--", color=line.get_color(), label=f"bound, N = {depth}")
        a.set_xlabel("noise level sigma (every site)")
        a.set_ylabel("E||~u - u||^2")
        a.set_title("Theorem 1: bound (dashed) and measurement")
        a.legend(fontsize=7, ncol=2)
        b.semilogy(list(fwd), list(fwd.values()), "o-", label="forward noise at operator i")
        b.semilogy(list(bwd), list(bwd.values()), "s-", label="backward noise at operator i")
        b.set_xlabel("operator i")
        b.set_ylabel("E||~u - u||^2")
        b.set_title("depth-5 tanh network, gain 3")
        b.legend()
        png = _save_figure(fig, out, self.name)
        holds = all(m <= bound for rows in data.values() for _, m, _, bound in rows)
        ratios = {d: min(bound / m for _, m, _, bound in rows) for d, rows in data.items()}
        findings = [
            Finding("Theorem 1 holds: the measured E||~u - u||^2 stays below the bound at every "
                    "depth and noise level (constants estimated along the iterate).",
                    "smallest bound / measured per depth N: "
                    + ", ".join(f"N={d}: {_fmt(r)}" for d, r in ratios.items()),
                    bool(holds)),
            Finding("Forward errors hurt most near the input: the same forward noise gives a "
                    "larger gradient error at operator 1 than at operator 4.",
                    "E||~u - u||^2 per forward site: "
                    + ", ".join(f"{i}: {_fmt(v)}" for i, v in fwd.items()),
                    bool(fwd[1] > fwd[4])),
            Finding("Backward errors hurt most near the output: the same backward noise gives a "
                    "larger gradient error at operator 5 than at operator 2.",
                    "E||~u - u||^2 per backward site: "
                    + ", ".join(f"{i}: {_fmt(v)}" for i, v in bwd.items()),
                    bool(bwd[5] > bwd[2])),
        ]
        return findings, png


def _stable_grid(key):
    return lambda s: {"step_size": list(s.step_sizes), key: list(s.sigmas)}


EXPERIMENTS = {
    "fig2": Experiment(
        "fig2", "An isolated large spike recovers; a moderate persistent perturbation does not",
        (Panel("cases", "gradient norm and loss", plot="spikes",
               grid=lambda s: {"case": ["clean", "spike", "persistent"],
                               "spike_at": [s.n_iter // 4]},
               optimizer={"step_size": 1.0, "grad_noise_std": GRAD_NOISE},
               fixed={"sigma_f": 2.0}),),
        _analyse_fig2, seeds=lambda s: s.seeds[:1]),
    "fig3": Experiment(
        "fig3", "Trajectories for several step sizes under forward or backward noise",
        (Panel("forward", "forward noise, sigma_f = 2", plot="convergence",
               grid=lambda s: {"step_size": list(s.step_sizes)}, fixed={"sigma_f": 2.0}),
         Panel("backward", "backward noise, sigma_b = 2", plot="convergence",
               grid=lambda s: {"step_size": list(s.step_sizes)}, fixed={"sigma_b": 2.0})),
        _analyse_fig3),
    "fig4": Experiment(
        "fig4", "Stable gradient norm against the step size, non-convex",
        (Panel("forward", "forward noise sigma_f", grid=_stable_grid("sigma_f"), curve="sigma_f"),
         Panel("backward", "backward noise sigma_b", grid=_stable_grid("sigma_b"),
               curve="sigma_b")),
        lambda r, s: _asymmetry(r, s, "forward", "backward")),
    "fig5": Experiment(
        "fig5", "Stable gradient norm against the step size, strongly convex (rho = 0.1)",
        (Panel("forward", "forward noise sigma_f", grid=_stable_grid("sigma_f"), curve="sigma_f",
               problem_args={"regularizer": "strongly_convex", "rho": 0.1}),
         Panel("backward", "backward noise sigma_b", grid=_stable_grid("sigma_b"),
               curve="sigma_b", problem_args={"regularizer": "strongly_convex", "rho": 0.1})),
        lambda r, s: _asymmetry(r, s, "forward", "backward")),
    "fig6": Experiment(
        "fig6", "Biased backward noise U(0, sigma_b/sqrt(d))",
        (Panel("biased", "biased backward noise sigma_b", curve="sigma_b",
               grid=lambda s: {"step_size": list(s.step_sizes),
                               "sigma_b": sorted(set(s.sigmas) | {1.0})},
               fixed={"biased_b": True}),),
        _analyse_biased),
    "fig7": Experiment(
        "fig7", "Intermittent forward spikes every dt_f iterations, non-convex",
        tuple(Panel(f"sigma{int(sf)}", f"sigma_f = {sf:g}", curve="dt_f",
                    grid=lambda s: {"step_size": list(s.step_sizes), "dt_f": [0] + list(s.dts)},
                    fixed={"sigma_f": sf}) for sf in (1.0, 2.0)),
        _analyse_spikes),
    "fig8": Experiment(
        "fig8", "Intermittent forward spikes every dt_f iterations, strongly convex (rho = 0.5)",
        tuple(Panel(f"sigma{int(sf)}", f"sigma_f = {sf:g}", curve="dt_f",
                    grid=lambda s: {"step_size": list(s.step_sizes), "dt_f": [0] + list(s.dts)},
                    fixed={"sigma_f": sf},
                    problem_args={"regularizer": "strongly_convex", "rho": 0.5})
              for sf in (1.0, 2.0)),
        _analyse_spikes),
    "fig9": Experiment(
        "fig9", "Appendix A.3: Top-1 compression of the backward message",
        (Panel("sgd", "SGD, step 0.1", plot="weights", problem=a3_problem,
               problem_args={"A": A3_SGD}, optimizer={"step_size": 0.1},
               perturbations=a3_perturbations, grid=lambda s: {"top1": [False, True]},
               n_iter=lambda s: 1000, record_weights=True, init=(1.0, 1.0, 0.0, 0.0)),
         Panel("heavy_ball", "heavy ball, step 0.05, momentum 0.9", plot="weights",
               problem=a3_problem, problem_args={"A": A3_HEAVY_BALL},
               optimizer={"step_size": 0.05, "momentum": 0.9}, perturbations=a3_perturbations,
               grid=lambda s: {"top1": [False, True]}, n_iter=lambda s: 1000,
               record_weights=True, init=(1.0, 1.0, 0.0, 0.0))),
        _analyse_fig9, seeds=lambda s: (0,)),
    "table1": Table1Experiment(),
    "bounds": BoundsExperiment(),
}


# ---------------------------------------------------------------------------------------------
# Figures, report, the one command


def _draw_panel(panel, sw, scale, ax):
    factor = scale.ewma
    if panel.plot == "stable_norm":
        plotting.stable_norm(sw, x="step_size", curve=panel.curve, factor=factor, ax=ax)
        ax.set_xscale("log")  # the step sizes are a log grid
        ax.set_yscale("log")
    elif panel.plot == "convergence":
        plotting.convergence(sw, smooth=factor, ax=ax)
    elif panel.plot == "spikes":
        plotting.spike_trajectories({p["case"]: res for p, res in sw.items()}, ax=ax)
    elif panel.plot == "weights":
        for point, res in sw.items():
            norm = np.linalg.norm(res.weights[0, :, :2], axis=1)
            ax.semilogy(res.iterations, np.where(norm > 0, norm, np.nan),
                        label="Top-1" if point["top1"] else "uncompressed")
        ax.set_xlabel("iteration")
        ax.set_ylabel("||w_1||")
        ax.legend()
    ax.set_title(panel.title)


def plot(experiment, results, scale, folder):
    """Draw an experiment's panels side by side into ``folder/<name>.png``.

    Parameters
    ----------
    experiment : Experiment
        Its panels say how each sweep is drawn.
    results : dict of str to fastcascade.SweepResult
        From :meth:`Experiment.run`.
    scale : {"quick", "paper"} or Scale
        The sizes (the EWMA factor).
    folder : str or os.PathLike
        Where the PNG is written.

    Returns
    -------
    str
        The PNG's path.
    """
    scale = SCALES[scale] if isinstance(scale, str) else scale
    n = len(experiment.panels)
    cols = min(n, 4)
    fig, axes = _figure(math.ceil(n / cols), cols)
    for ax, panel in zip(axes.ravel(), experiment.panels):
        _draw_panel(panel, results[panel.name], scale, ax)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return _save_figure(fig, folder, experiment.name, f"{experiment.name}: {experiment.title}")


def report(sections, scale, command, seconds):
    """The markdown report: per experiment, its figure and each claim next to the numbers.

    Parameters
    ----------
    sections : dict
        Name to ``(experiment, findings, png path)``.
    scale : {"quick", "paper"} or Scale
        The sizes, described at the top.
    command : str
        The command that made the report.
    seconds : float
        How long it took.

    Returns
    -------
    str
        The report's markdown text.
    """
    scale = SCALES[scale] if isinstance(scale, str) else scale
    lines = ["# fastcascade: reproducing the paper's experiments", "",
             f"Scale `{scale.name}`: T = {scale.n_iter:,}, step sizes {list(scale.step_sizes)}, "
             f"noise levels {list(scale.sigmas)}, dt_f {list(scale.dts)}, seeds "
             f"{list(scale.seeds)}, recording every {scale.record_every} iterations.",
             f"Made by `{command}` in {seconds / 60:.1f} minutes.", "",
             "Each row states a finding of the paper (docs/model.md sec. 6) next to what we "
             "measured; *supported* is the verdict of the rule written in "
             "`fastcascade/experiments.py`.", ""]
    n_ok = n_all = 0
    for name, (experiment, findings, png) in sections.items():
        lines += [f"## {name}: {experiment.title}", "", f"![{name}]({os.path.basename(png)})", "",
                  "| finding | measured | supported |", "|---|---|---|"]
        for f in findings:
            lines.append(f"| {f.claim} | {f.measured} | {'yes' if f.supported else '**no**'} |")
            n_ok += f.supported
            n_all += 1
        lines.append("")
    lines.insert(6, f"Findings supported: {n_ok} of {n_all}.")
    lines.insert(7, "")
    return "\n".join(lines)


def reproduce(names="all", scale="quick", out="fastcascade-reproduce", n_jobs=2, progress=None,
              command=None):
    """Run experiments, write their PNGs, raw results and ``report.md`` under ``out``.

    Parameters
    ----------
    names : "all", a name ("fig4", "table1", ...) or a list of names
    scale : {"quick", "paper"}
    out : folder (created); raw sweeps go to ``out/raw`` and are reused by a rerun
    n_jobs : threads
    progress : None or bool, default None
        Progress bars on stderr (None: when stderr is a terminal).
    command : str, optional
        The command shown in the report; by default the equivalent ``fastcascade reproduce``.

    Returns
    -------
    dict name -> list of Finding
    """
    if names == "all":
        names = list(EXPERIMENTS)
    elif isinstance(names, str):
        names = [names]
    for name in names:
        if name not in EXPERIMENTS:
            raise ValueError(f"FIG: expected one of {', '.join(EXPERIMENTS)} or 'all', "
                             f"given {name!r}")
    if not isinstance(scale, Scale) and scale not in SCALES:
        raise ValueError(f"scale: expected one of {', '.join(SCALES)}, given {scale!r}")
    os.makedirs(out, exist_ok=True)
    start = time.time()
    sections = {}
    for name in names:
        experiment = EXPERIMENTS[name]
        findings, png = experiment.section(scale, out, n_jobs=n_jobs, progress=progress)
        sections[name] = (experiment, findings, png)
    scale_name = scale.name if isinstance(scale, Scale) else scale
    command = command or (f"fastcascade reproduce {' '.join(names)} --scale {scale_name} "
                          f"--out {out}")
    with open(os.path.join(out, "report.md"), "w") as fh:
        fh.write(report(sections, scale, command, time.time() - start))
    return {name: findings for name, (_, findings, _) in sections.items()}
