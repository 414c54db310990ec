"""What a call to ``fc.run`` returns: histories as NumPy arrays, per-run metadata, metrics.

Histories have one row per run and one column per record (iterations 0, r, 2r, ... below
n_iter, with r = record_every), all taken at w_t before that iteration's update:

- ``objective``   l(w_t), the clean full-data objective with the regularizer
- ``grad_norm``   ||grad l(w_t)||, the true full-data gradient norm
- ``grad_error``  ||~u_t - u_t||^2 on the step's own samples (u_t: their clean gradient; the
                  regularizer and the gradient noise sigma_n are not part of either)
- ``step_size``   gamma_t
- ``forward_error``, ``backward_error`` (with ``record_profile=True``), shape
  (n_runs, n_records, N): the batch mean of the squared error at site i = 1..N (column i - 1),
  indexed as ``Perturbation.op`` is: forward, ||~y_i - y_i||^2 at f_i's output; backward,
  ||~v_{i-1} - v_{i-1}||^2 on the message f_i sends back to f_{i-1} (0 for i = 1: f_1 sends
  none).
- ``weights`` (with ``record_weights=True``), shape (n_runs, n_records, n_weights): w_t.

Derived metrics (``fastcascade.metrics``): the EWMA of the gradient norm, the stable gradient
norm, the stable iteration complexity and the spike events; ``summary_table()`` gathers them
per run. ``save(path)`` / ``fc.load(path)`` store and restore every array exactly;
``to_frame()`` gives the summary as a pandas DataFrame (pandas is an optional extra);
``plot()`` draws the convergence plot.

A run that diverges stops: ``stopped_at[k]`` is the iteration and ``stop_reason[k]`` says why;
its histories after that record are NaN. Its ``final_weights`` are w_t of that iteration when the
step gradient was at fault, and the weights after the update when the weights were.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from fastcascade import metrics
from fastcascade._jsonable import jsonable, seed_to_json
from fastcascade._typing import PathLike, Seed
from fastcascade.metrics import ewma

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["Result", "ewma"]

HISTORY_FIELDS = ("objective", "grad_norm", "grad_error", "step_size")
PROFILE_FIELDS = ("forward_error", "backward_error", "weights")  # optional, 3-d
# optional per-run fields: the profile histories, and per-run counts (1-d)
OPTIONAL_FIELDS = PROFILE_FIELDS + ("nonfinite_injections",)


class Result:
    """Histories and final state of one or more runs of the same problem.

    Built by ``fc.run``, ``fc.sweep`` and ``fc.load``; users seldom call the constructor.

    Parameters
    ----------
    iterations : array_like of int (n_records,)
        The recorded iterations (0, r, 2r, ... with r = ``record_every``), stored as int64.
    histories : dict of str to ndarray
        ``objective``, ``grad_norm``, ``grad_error``, ``step_size``, each (n_runs, n_records);
        optionally ``forward_error``, ``backward_error``, ``weights`` (3-d) and
        ``nonfinite_injections`` (n_runs,). A missing optional key is stored as None.
    final_weights : ndarray (n_runs, n_weights)
        The weights each run ended with.
    stopped_at : array_like of int (n_runs,)
        Iteration at which a run diverged, -1 for a run that did not; stored as int64.
    stop_reason : sequence of str (n_runs,)
        Why each run stopped ("" for a run that did not).
    seeds : sequence
        The seed of each run (int or ``numpy.random.SeedSequence``).
    config : dict
        The settings of the runs; stored as plain JSON data (``fastcascade.io.jsonable``).

    Attributes
    ----------
    iterations : ndarray of int64 (n_records,)
    objective, grad_norm, grad_error, step_size : ndarray (n_runs, n_records)
    forward_error, backward_error : ndarray (n_runs, n_records, N) or None
    weights : ndarray (n_runs, n_records, n_weights) or None
    nonfinite_injections : ndarray of int64 (n_runs,) or None
        Per run, how many times (step, site) a perturbation left non-finite values in the
        perturbed pass (None: not counted, a file from before the count existed).
    final_weights : ndarray (n_runs, n_weights)
    stopped_at : ndarray of int64 (n_runs,), -1 for a run that did not diverge
    stop_reason : list of str ("" for a run that did not diverge)
    seeds : list (ints, or numpy SeedSequences)
    config : dict, the settings of the runs as plain JSON data (from a sweep, ``config["grid"]``
        holds the grid values of the runs)

    Examples
    --------
    >>> import fastcascade as fc
    >>> data = fc.datasets.synthetic_logistic(200, 4, seed=0)
    >>> problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), data)
    >>> res = fc.run(problem, fc.SGD(step_size=0.5), n_iter=400, seeds=[0, 1], record_every=4)
    >>> res.grad_norm.shape, res.history.dtype.names[:2]
    ((2, 100), ('iteration', 'objective'))
    >>> res.summary_table()["stable_grad_norm"].shape
    (2,)
    """

    iterations: np.ndarray
    objective: np.ndarray
    grad_norm: np.ndarray
    grad_error: np.ndarray
    step_size: np.ndarray
    forward_error: np.ndarray | None
    backward_error: np.ndarray | None
    weights: np.ndarray | None
    nonfinite_injections: np.ndarray | None
    final_weights: np.ndarray
    stopped_at: np.ndarray
    stop_reason: list[str]
    seeds: list[Seed]
    config: dict[str, Any]

    def __init__(self, iterations: npt.ArrayLike, histories: Mapping[str, np.ndarray | None],
                 final_weights: np.ndarray, stopped_at: npt.ArrayLike,
                 stop_reason: Sequence[str], seeds: Iterable[Seed], config: Mapping[str, Any]):
        self.iterations = np.asarray(iterations, dtype=np.int64)
        for name in HISTORY_FIELDS:
            setattr(self, name, histories[name])
        for name in OPTIONAL_FIELDS:
            setattr(self, name, histories.get(name))
        self.final_weights = final_weights
        self.stopped_at = np.asarray(stopped_at, dtype=np.int64)
        self.stop_reason = [str(r) for r in stop_reason]
        self.seeds = list(seeds)
        self.config = jsonable(dict(config))

    # -- shape and metadata --------------------------------------------------------------------
    @property
    def n_runs(self) -> int:
        """Number of runs (rows of every history), from ``final_weights.shape[0]``."""
        return self.final_weights.shape[0]

    @property
    def n_records(self) -> int:
        """Number of records per run (columns of every history), ``len(iterations)``."""
        return self.iterations.shape[0]

    @property
    def diverged(self) -> np.ndarray:
        """Boolean (n_runs,): which runs stopped early."""
        return self.stopped_at >= 0

    @property
    def grid(self) -> dict[str, Any]:
        """The grid values of these runs when they come from a sweep, else {}."""
        return self.config.get("grid", {})

    @property
    def history(self) -> np.ndarray:
        """The histories as one structured array (n_runs, n_records) with the named fields
        ``iteration``, ``objective``, ``grad_norm``, ``grad_error``, ``step_size`` (a copy)."""
        dtype = [("iteration", np.int64)] + [(name, np.float64) for name in HISTORY_FIELDS]
        out = np.empty((self.n_runs, self.n_records), dtype=dtype)
        out["iteration"] = self.iterations[None, :]
        for name in HISTORY_FIELDS:
            out[name] = getattr(self, name)
        return out

    # -- metrics -------------------------------------------------------------------------------
    def ewma_grad_norm(self, factor: float = 0.99) -> np.ndarray:
        """EWMA of the true gradient norm, (n_runs, n_records).

        Parameters
        ----------
        factor : float in [0, 1), default 0.99
            EWMA factor per iteration, whatever ``record_every`` was
            (:func:`fastcascade.metrics.ewma`; docs/model.md, Metrics).

        Returns
        -------
        numpy.ndarray
            float64 (n_runs, n_records): e_k = a_k e_{k-1} + (1 - a_k) g_k with
            a_k = factor^(t_k - t_{k-1}).
        """
        return ewma(self.grad_norm, factor, self.iterations)

    def stable_grad_norm(self, factor: float = 0.99) -> np.ndarray:
        """The paper's stable gradient norm per run: the mean of the EWMA over the last half of
        the iterations (NaN for a run that diverged).

        Parameters
        ----------
        factor : float in [0, 1), default 0.99
            EWMA factor per iteration (:func:`fastcascade.metrics.stable_grad_norm`).

        Returns
        -------
        numpy.ndarray
            float64 (n_runs,).
        """
        return metrics.stable_grad_norm(self.grad_norm, factor, self.diverged, self.iterations)

    def stable_iteration_complexity(self, factor: float = 0.99,
                                    threshold: float = 1.5) -> np.ndarray:
        """Per run, the first iteration where the EWMA falls below ``threshold`` times the stable
        gradient norm (-1 when it never does, e.g. after divergence).

        Parameters
        ----------
        factor : float in [0, 1), default 0.99
            EWMA factor per iteration.
        threshold : float > 0, default 1.5
            Multiple of the stable gradient norm that the EWMA must fall below.

        Returns
        -------
        numpy.ndarray
            int64 (n_runs,): an iteration number (a value of ``iterations``), or -1.
        """
        return metrics.stable_iteration_complexity(self.grad_norm, self.iterations, factor,
                                                   threshold, self.diverged)

    def spike_events(self, threshold: float = 10.0, window: int = 50, min_value: float = 0.0,
                     recover_factor: float = 2.0, recovery_window: int | None = None,
                     signals: Sequence[str] = ("grad_error", "grad_norm")) -> np.ndarray:
        """Spike events of every run, each labelled "recovered", "persistent" or "diverged".

        See :func:`fastcascade.metrics.spike_events` for the definition (docs/model.md, Spike
        events).

        Parameters
        ----------
        threshold : float >= 0, default 10
            A record is a spike when its value exceeds ``threshold`` times the baseline.
        window : int, default 50
            Records in the trailing median that makes the baseline.
        min_value : float >= 0, default 0
            A spike must also exceed this absolute value.
        recover_factor : float > 0, default 2
            Recovered: the gradient norm comes back to at most this many times its pre-spike level.
        recovery_window : int, optional
            Records after the event in which it must recover (default ``window``).
        signals : sequence of {"grad_error", "grad_norm"}, default both
            The histories searched for spikes.

        Returns
        -------
        numpy.ndarray
            dtype ``fastcascade.metrics.SPIKE_DTYPE`` (fields run, start, end, peak, signal, ratio,
            label), one row per event.
        """
        return metrics.spike_events(self.grad_norm, self.grad_error, self.iterations,
                                    self.stopped_at, threshold, window, min_value,
                                    recover_factor, recovery_window, signals)

    def final_grad_norm(self) -> np.ndarray:
        """Per run, the last finite recorded gradient norm (NaN when there is none).

        Returns
        -------
        numpy.ndarray
            float64 (n_runs,).
        """
        out = np.full(self.n_runs, np.nan)
        for k in range(self.n_runs):
            finite = self.grad_norm[k][np.isfinite(self.grad_norm[k])]
            if finite.size:
                out[k] = finite[-1]
        return out

    def summary_table(self, factor: float = 0.99, **spike_options: Any) -> np.ndarray:
        """One row per run, as a structured array.

        Parameters
        ----------
        factor : float in [0, 1), default 0.99
            EWMA factor per iteration, whatever ``record_every`` was (docs/model.md, Metrics).
        **spike_options
            Keyword arguments of :meth:`spike_events` (``threshold``, ``window``, ...).

        Returns
        -------
        numpy.ndarray
            Structured (n_runs,) with the fields ``seed`` (int64, or str for SeedSequences),
            ``diverged``, ``stopped_at``, ``stop_reason``, ``final_grad_norm``,
            ``stable_grad_norm``, ``stable_iteration`` (-1: never), ``n_spikes`` (stop events
            excluded), ``n_recovered``, ``n_persistent``, ``nonfinite_injections`` (-1: not
            counted).
        """
        events = self.spike_events(**spike_options)
        seeds = [seed_to_json(s) for s in self.seeds]
        int_seeds = all(isinstance(s, int) for s in seeds)
        dtype = [("seed", np.int64 if int_seeds else "U64"), ("diverged", bool),
                 ("stopped_at", np.int64), ("stop_reason", "U40"),
                 ("final_grad_norm", np.float64), ("stable_grad_norm", np.float64),
                 ("stable_iteration", np.int64), ("n_spikes", np.int64),
                 ("n_recovered", np.int64), ("n_persistent", np.int64),
                 ("nonfinite_injections", np.int64)]
        table = np.zeros(self.n_runs, dtype=dtype)
        table["seed"] = seeds if int_seeds else [str(s) for s in self.seeds]
        table["diverged"] = self.diverged
        table["stopped_at"] = self.stopped_at
        table["stop_reason"] = self.stop_reason
        table["final_grad_norm"] = self.final_grad_norm()
        table["stable_grad_norm"] = self.stable_grad_norm(factor)
        table["stable_iteration"] = self.stable_iteration_complexity(factor)
        table["nonfinite_injections"] = (-1 if self.nonfinite_injections is None
                                         else self.nonfinite_injections)
        for k in range(self.n_runs):
            mine = events[events["run"] == k]
            table["n_spikes"][k] = np.sum(mine["signal"] != "stop")
            table["n_recovered"][k] = np.sum(mine["label"] == "recovered")
            table["n_persistent"][k] = np.sum(mine["label"] == "persistent")
        return table

    def summary(self, factor: float = 0.99) -> str:
        """The summary table as text, one line per run.

        Columns: seed, final and stable gradient norm, stable iteration, spikes (with the number
        recovered), status (stop reason, non-finite injections).

        Parameters
        ----------
        factor : float in [0, 1), default 0.99
            EWMA factor per iteration, whatever ``record_every`` was (docs/model.md, Metrics).

        Returns
        -------
        str
            A header line and one line per run, joined by newlines.
        """
        table = self.summary_table(factor)
        lines = [f"{'seed':>6} {'final |grad|':>13} {'stable |grad|':>14} {'stable at':>10} "
                 f"{'spikes':>7}  status"]
        for row in table:
            status = (f"stopped at {row['stopped_at']}: {row['stop_reason']}"
                      if row["diverged"] else "ok")
            if row["nonfinite_injections"] > 0:
                status += f"; {row['nonfinite_injections']} non-finite injections"
            stable_at = "-" if row["stable_iteration"] < 0 else str(row["stable_iteration"])
            spikes = f"{row['n_spikes']}"
            if row["n_spikes"]:
                spikes += f" ({row['n_recovered']}r)"
            lines.append(f"{str(row['seed']):>6} {row['final_grad_norm']:13.4e} "
                         f"{row['stable_grad_norm']:14.4e} {stable_at:>10} {spikes:>7}  {status}")
        return "\n".join(lines)

    def to_frame(self, factor: float = 0.99) -> Any:
        """The summary table as a pandas DataFrame (needs pandas: ``pip install
        "fastcascade[pandas]"``).

        Parameters
        ----------
        factor : float in [0, 1), default 0.99
            EWMA factor per iteration, whatever ``record_every`` was (docs/model.md, Metrics).

        Returns
        -------
        pandas.DataFrame
            One row per run, the columns of :meth:`summary_table`.
        """
        return _frame(self.summary_table(factor))

    # -- files, plots, comparison -------------------------------------------------------------
    def save(self, path: PathLike) -> None:
        """Write every array and the configuration to one ``.npz`` file (no pickle; read it back
        with ``fc.load(path)``).

        Parameters
        ----------
        path : str or os.PathLike
            The file written (``fastcascade.io.save_result``).
        """
        from fastcascade import io  # a higher floor: io reads and writes Results

        io.save_result(self, path)

    def plot(self, ax: Axes | None = None, **kwargs: Any) -> Axes:
        """The convergence plot (``fastcascade.plotting.convergence``).

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            The axes drawn on; new ones by default.
        **kwargs
            Passed to ``fastcascade.plotting.convergence`` (``field``, ``labels``, ``smooth``,
            ``band``).

        Returns
        -------
        matplotlib.axes.Axes
        """
        from fastcascade import plotting  # a higher floor

        return plotting.convergence(self, ax=ax, **kwargs)

    def identical(self, other: object) -> bool:
        """True when ``other`` holds the same arrays bit for bit (dtype, shape and bytes, NaNs
        included) and the same seeds, stop reasons and configuration.

        Parameters
        ----------
        other : object
            Compared; anything but a ``Result`` gives False.

        Returns
        -------
        bool
        """
        if not isinstance(other, Result):
            return False
        for name in ("iterations", "final_weights", "stopped_at") + HISTORY_FIELDS \
                + OPTIONAL_FIELDS:
            a, b = getattr(self, name), getattr(other, name)
            if a is None or b is None:
                if a is not b:
                    return False
                continue
            a, b = np.asarray(a), np.asarray(b)
            if a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
                return False
        return ([seed_to_json(s) for s in self.seeds] == [seed_to_json(s) for s in other.seeds]
                and self.stop_reason == other.stop_reason and self.config == other.config)

    @classmethod
    def concat(cls, results: Iterable[Result], config: Mapping[str, Any] | None = None
               ) -> Result:
        """The runs of several results (same records) as one Result, in the order given.

        Parameters
        ----------
        results : iterable of Result
            At least one, all recorded at the same iterations. An optional history is kept only
            when every result has it.
        config : dict, optional
            The configuration of the result; defaults to the first result's.

        Returns
        -------
        Result
            ``n_runs`` the sum of theirs.
        """
        results = list(results)
        if not results:
            raise ValueError("results: expected at least one Result, given none")
        first = results[0]
        for k, r in enumerate(results):
            if not isinstance(r, Result):
                raise ValueError(f"results[{k}]: expected a fastcascade.Result, given {r!r}")
            if not np.array_equal(r.iterations, first.iterations):
                raise ValueError(f"results[{k}]: records at other iterations than results[0]")
        hist: dict[str, np.ndarray | None] = {
            name: np.concatenate([getattr(r, name) for r in results]) for name in HISTORY_FIELDS}
        for name in OPTIONAL_FIELDS:
            parts = [getattr(r, name) for r in results]
            hist[name] = None if any(p is None for p in parts) else np.concatenate(parts)
        return cls(first.iterations.copy(), hist,
                   np.concatenate([r.final_weights for r in results]),
                   np.concatenate([r.stopped_at for r in results]),
                   [x for r in results for x in r.stop_reason],
                   [s for r in results for s in r.seeds],
                   first.config if config is None else config)

    def __repr__(self):
        return (f"Result(n_runs={self.n_runs}, n_records={self.n_records}, "
                f"diverged={int(self.diverged.sum())})")


def _frame(table):
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("to_frame() needs pandas: pip install pandas (or "
                          "'fastcascade[pandas]')") from None
    return pd.DataFrame({name: table[name] for name in table.dtype.names})
