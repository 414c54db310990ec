"""Sweeps: ``fc.sweep`` runs a grid of settings times seeds; ``SweepResult`` holds the outcome.

A grid maps keys to lists of values; the sweep runs every combination (the Cartesian product,
last key fastest) once per seed. A key is one of:

- a field of the optimizer's constructor (``step_size``, ``momentum``, ``batch``,
  ``grad_noise_std``, ``schedule``, ...): the point's optimizer is ``optimizer.replace(...)``;
- a keyword of ``fc.run`` (``n_iter``, ``record_every``, ``record_profile``, ``init``,
  ``engine``, ``max_norm``);
- any other name, passed to the ``perturbations`` callable: with
  ``perturbations=lambda sigma_f=0.0: [...]`` the grid may hold ``"sigma_f"``.

The unit of work is one (grid point, seed) run, ``fc.run(..., seeds=[seed])``; each run's random
streams come from its seed only, so the results are the same to the bit whatever the executor
and the number of workers. Runs go to threads of this process by default (``n_jobs``), or to
any ``concurrent.futures.Executor`` (``executor=``), for example dask.distributed's
``Client(...).get_executor()`` to reach many machines: what is submitted is the module-level
function :func:`run_unit` with picklable arguments.

With ``out=FOLDER`` each run is written to the folder as it finishes (see ``fastcascade.io``);
running the same sweep again with the same folder loads the finished runs instead of computing
them again (a run is reused only when its problem, data, optimizer, perturbations, settings
and seed are the ones asked for).

Examples
--------
>>> import fastcascade as fc
>>> data = fc.datasets.synthetic_logistic(200, 4, seed=0)
>>> problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), data)
>>> def perts(sigma_f=0.0):
...     return [fc.Perturbation(op=1, noise=fc.noise.Uniform(-sigma_f, sigma_f))]
>>> sw = fc.sweep(problem, fc.SGD(step_size=0.1), n_iter=300, perturbations=perts,
...               grid={"step_size": [0.3, 0.1], "sigma_f": [0.0, 1.0]}, seeds=range(2))
>>> len(sw), sw.points[1]
(4, {'step_size': 0.3, 'sigma_f': 1.0})
>>> sw.select(step_size=0.1, sigma_f=1.0).n_runs
2
>>> sw.stable_grad_norm().shape
(4, 2)
"""
from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import os
import warnings
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import numpy as np

from fastcascade import io
from fastcascade._validation import check_positive_int
from fastcascade.optim import Optimizer
from fastcascade.perturbation import check_perturbations
from fastcascade.problem import Problem
from fastcascade.result import OPTIONAL_FIELDS, Result, _frame
from fastcascade._progress import progress_bar
from fastcascade.runner import run

__all__ = ["sweep", "SweepResult", "run_unit", "RUN_KEYS"]

RUN_KEYS = ("n_iter", "record_every", "record_profile", "record_weights", "init", "engine",
            "max_norm")
RESERVED = ("seeds", "n_jobs", "perturbations", "executor", "problem", "optimizer", "out",
            "progress", "grid")


# -- the unit of work ---------------------------------------------------------------------------
def run_unit(problem, optimizer, perturbations, seed, run_kwargs, extra_config):
    """One sweep run: ``fc.run(problem, optimizer, perturbations=..., seeds=[seed], n_jobs=1,
    **run_kwargs)`` with ``extra_config`` merged into the result's configuration.

    Module-level and with picklable arguments, so that any executor (threads, processes,
    dask.distributed) can run it.

    Parameters
    ----------
    problem : fastcascade.Problem
        The problem.
    optimizer : fastcascade.optim.Optimizer
        The point's optimizer (grid fields applied).
    perturbations : sequence of fastcascade.Perturbation
        The point's perturbations.
    seed : int or numpy.random.SeedSequence
        The run's seed (its four streams, docs/model.md sec. 3).
    run_kwargs : dict
        Keywords of ``fc.run`` (``n_iter``, ``record_every``, ...).
    extra_config : dict
        Added to ``config`` (the point's grid values, the sweep's settings).

    Returns
    -------
    fastcascade.Result
        One run.
    """
    res = run(problem, optimizer, perturbations=perturbations, seeds=[seed], n_jobs=1,
              progress=False, **run_kwargs)
    res.config.update(io.jsonable(extra_config))
    return res


# -- grid ---------------------------------------------------------------------------------------
def _callable_params(fn):
    """(names, accepts_any) of a callable's keyword parameters."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return (), True
    names, any_kw = [], False
    for p in sig.parameters.values():
        if p.kind == p.VAR_KEYWORD:
            any_kw = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            names.append(p.name)
    return tuple(names), any_kw


def classify_grid(grid, optimizer, perturbations):
    """Split the grid keys into optimizer fields, run keywords and perturbation parameters,
    or raise ValueError naming the first key that is none of them.

    Parameters
    ----------
    grid : dict of str to list, or None
        The sweep's grid; each value a non-empty list.
    optimizer : fastcascade.optim.Optimizer
        Its ``fields()`` are the optimizer keys.
    perturbations : callable or sequence
        A callable's keyword parameters are the perturbation keys.

    Returns
    -------
    dict of str to str
        Key to "optimizer", "run" or "perturbations".
    """
    if grid is None:
        grid = {}
    if not isinstance(grid, dict):
        raise ValueError(f"grid: expected a dict mapping keys to lists of values, given "
                         f"{type(grid).__name__}")
    opt_fields = optimizer.fields()
    p_names, p_any = _callable_params(perturbations) if callable(perturbations) else ((), False)
    kinds = {}
    for key, values in grid.items():
        if not isinstance(key, str):
            raise ValueError(f"grid: keys must be strings, given {key!r}")
        if key in RESERVED:
            raise ValueError(f"grid: {key}: cannot be swept; pass {key}= to fc.sweep")
        if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
            raise ValueError(f"grid: {key}: expected a list of values, given {values!r}")
        if len(list(values)) == 0:
            raise ValueError(f"grid: {key}: expected at least one value, given an empty list")
        if key in opt_fields:
            kinds[key] = "optimizer"
        elif key in RUN_KEYS:
            kinds[key] = "run"
        elif callable(perturbations) and (p_any or key in p_names):
            kinds[key] = "perturbations"
        else:
            hint = ("; make perturbations a callable taking it as a keyword"
                    if not callable(perturbations) else
                    f"; the perturbations callable takes {', '.join(p_names) or 'no keywords'}")
            raise ValueError(f"grid: {key}: not an optimizer field ({', '.join(opt_fields)}), a "
                             f"run setting ({', '.join(RUN_KEYS)}) nor a parameter of "
                             f"perturbations{hint}")
    return kinds


def grid_points(grid):
    """The grid's points, as dicts, in Cartesian-product order (last key fastest).

    Parameters
    ----------
    grid : dict of str to sequence
        Key to the values it takes.

    Returns
    -------
    list of dict
        One dict per point (``[{}]`` for an empty grid).
    """
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(list(grid[k]) for k in keys))]


def _fingerprint(problem):
    h = hashlib.sha256()
    for a in (problem.data.X, problem.data.y, problem.plan.params, problem.plan.op_table):
        h.update(np.ascontiguousarray(a).tobytes())
        h.update(repr(a.shape).encode())
    return h.hexdigest()


def describe_callable(fn):
    """A description of a callable that is the same in every process (no memory address).

    Parameters
    ----------
    fn : callable
        A function, a ``functools.partial`` of one, or a callable object.

    Returns
    -------
    str
        ``module.qualname``, ``partial(module.qualname, args...)``, or the object's repr.
    """
    import functools

    if isinstance(fn, functools.partial):
        args = [repr(a) for a in fn.args] + [f"{k}={v!r}" for k, v in fn.keywords.items()]
        return f"partial({describe_callable(fn.func)}, {', '.join(args)})"
    name = getattr(fn, "__qualname__", None)
    if name is None:  # a callable object: its repr, which classes can make stable
        return repr(fn)
    return f"{getattr(fn, '__module__', '?')}.{name}"


def _describe_init(init):
    if init is None or isinstance(init, str):
        return init
    if callable(init):
        return f"callable {describe_callable(init)}"
    a = np.ascontiguousarray(np.asarray(init, dtype=np.float64))
    return f"array {a.shape} sha256 {hashlib.sha256(a.tobytes()).hexdigest()[:16]}"


def _unit_key(spec):
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


# -- sweep --------------------------------------------------------------------------------------
def sweep(problem, optimizer, n_iter=None, grid=None, seeds=0, perturbations=(), n_jobs=1,
          executor=None, out=None, progress=None, metadata=None, **run_kwargs):
    """Run a grid of settings, once per seed.

    Parameters
    ----------
    problem : fastcascade.Problem
    optimizer : fastcascade.SGD or fastcascade.Adam
        The base optimizer; grid keys that are its fields replace them per point.
    n_iter : int
        Iterations per run (or a grid key).
    grid : dict str -> list
        Keys: optimizer fields, ``fc.run`` keywords, or parameters of ``perturbations``.
    seeds : int or iterable of int
        Every grid point runs once per seed; the same seed gives the same data order and noise
        streams at every point (common random numbers).
    perturbations : sequence of fastcascade.Perturbation, or callable
        Fixed perturbations, or ``perturbations(**point_values) -> list of Perturbation``
        called with the grid keys that are neither optimizer fields nor run keywords.
    n_jobs : int
        Threads (when ``executor`` is None); -1: one per core.
    executor : concurrent.futures.Executor, optional
        Where to run the runs instead (processes, dask.distributed's ``client.get_executor()``,
        ...). The results are the same to the bit.
    out : str or os.PathLike, optional
        A folder: each run is written there as it finishes, with a manifest; the same call with
        the same folder reuses the finished runs (resume after an interruption).
    progress : None, bool
        A progress bar on stderr (tqdm): None shows it when stderr is a terminal and the
        sweep lasts more than a few seconds.
    metadata : dict, optional
        JSON-able data added to the sweep's configuration (and its manifest), for example the
        configuration file it came from.
    **run_kwargs
        Other ``fc.run`` keywords: record_every, record_profile, init, engine, max_norm.

    Returns
    -------
    SweepResult

    Raises
    ------
    ValueError
        For a grid key that is none of the above, or a grid value the optimizer or the
        perturbations reject (the message names the key and the point).

    Examples
    --------
    See the module docstring.
    """
    if not isinstance(problem, Problem):
        raise ValueError(f"problem: expected a fastcascade.Problem, given {problem!r}")
    if not isinstance(optimizer, Optimizer):
        raise ValueError(f"optimizer: expected fastcascade.SGD or fastcascade.Adam, given "
                         f"{optimizer!r}")
    for key in run_kwargs:
        if key not in RUN_KEYS:
            raise ValueError(f"{key}: not a keyword of fc.sweep; expected one of "
                             f"{', '.join(RUN_KEYS)} (or grid=..., seeds=..., n_jobs=..., "
                             "executor=..., out=..., progress=...)")
    grid = {} if grid is None else grid
    kinds = classify_grid(grid, optimizer, perturbations)
    if n_iter is None and "n_iter" not in grid:
        raise ValueError("n_iter: expected a positive integer (or a grid key), given None")
    if executor is None:
        if n_jobs == -1:
            n_jobs = os.cpu_count() or 1
        n_jobs = check_positive_int(n_jobs, "n_jobs")
    elif not hasattr(executor, "submit"):
        raise ValueError(f"executor: expected a concurrent.futures.Executor, given {executor!r}")
    from fastcascade.runner import _seed_list

    seeds = _seed_list(seeds)
    grid = {k: list(v) for k, v in grid.items()}
    points = grid_points(grid)
    N = problem.cascade.n_ops
    base_run = dict(run_kwargs)
    if n_iter is not None:
        base_run["n_iter"] = n_iter

    # Build and check every point's settings before running anything.
    units = []  # (point index, seed index, optimizer, perturbations, run kwargs, extra config)
    fingerprint = _fingerprint(problem)
    for i, values in enumerate(points):
        opt_changes = {k: v for k, v in values.items() if kinds[k] == "optimizer"}
        p_values = {k: v for k, v in values.items() if kinds[k] == "perturbations"}
        kw = dict(base_run)
        kw.update({k: v for k, v in values.items() if kinds[k] == "run"})
        where = f"grid point {io.jsonable(values)}: " if values else ""
        try:
            opt = optimizer.replace(**opt_changes) if opt_changes else optimizer
        except ValueError as exc:
            msg = str(exc)
            for owner in (f"'{type(optimizer).__name__}': ", f"{type(optimizer).__name__}: "):
                msg = msg[len(owner):] if msg.startswith(owner) else msg
            raise ValueError(f"{where}{msg}") from None
        perts = perturbations(**p_values) if callable(perturbations) else perturbations
        try:
            perts = check_perturbations(perts, N)
        except ValueError as exc:
            raise ValueError(f"{where}{exc}") from None
        for j, seed in enumerate(seeds):
            kw_j = dict(kw)
            init = kw_j.get("init")
            if isinstance(init, np.ndarray) and init.ndim == 2:
                if init.shape[0] != len(seeds):
                    raise ValueError(f"init: expected shape ({problem.n_weights},) or "
                                     f"({len(seeds)}, {problem.n_weights}), given {init.shape}")
                kw_j["init"] = init[j]
            spec = {"problem": repr(problem), "data": fingerprint, "optimizer": repr(opt),
                    "perturbations": [repr(p) for p in perts], "seed": io.seed_to_json(seed),
                    "run": io.jsonable({k: (_describe_init(v) if k == "init" else v)
                                        for k, v in sorted(kw_j.items())})}
            extra = {"grid": io.jsonable(values),
                     "sweep": {"point": i, "seed_index": j, "key": _unit_key(spec)}}
            units.append((i, j, opt, perts, kw_j, extra, seed))

    config = {"problem": repr(problem), "data_sha256": fingerprint,
              "optimizer": repr(optimizer), "perturbations": (
                  describe_callable(perturbations) if callable(perturbations)
                  else [repr(p) for p in check_perturbations(perturbations, N)]),
              "run": {k: (_describe_init(v) if k == "init" else v) for k, v in base_run.items()},
              "grid_kinds": kinds}
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise ValueError(f"metadata: expected a dict, given {metadata!r}")
        config.update(io.jsonable(metadata))
    files = [[f"p{i:04d}_r{j:02d}.npz" for j in range(len(seeds))] for i in range(len(points))]
    done = {}
    if out is not None:
        out = os.fspath(out)
        os.makedirs(out, exist_ok=True)
        io.write_manifest(out, _manifest(grid, points, seeds, files, config))
        for unit in units:
            i, j, extra = unit[0], unit[1], unit[5]
            path = os.path.join(out, files[i][j])
            if not os.path.exists(path):
                continue
            try:
                res = io.load_result(path)
            except ValueError as exc:
                warnings.warn(f"sweep: recomputing {path}: {exc}", stacklevel=2)
                continue
            if res.config.get("sweep", {}).get("key") == extra["sweep"]["key"]:
                done[(i, j)] = res
        for name in os.listdir(out):  # temporary files of writes that were cut short
            if name.startswith(".") and ".tmp-" in name:
                try:
                    os.remove(os.path.join(out, name))
                except OSError:
                    pass

    todo = [u for u in units if (u[0], u[1]) not in done]
    results = dict(done)
    bar = progress_bar(len(units), progress, "sweep")
    if bar is not None:
        bar.update(len(done))

    def finish(unit, res):
        i, j = unit[0], unit[1]
        results[(i, j)] = res
        if out is not None:
            io.save_result(res, os.path.join(out, files[i][j]))
        if bar is not None:
            bar.update(1)

    def submit(pool, unit):
        i, j, opt, perts, kw, extra, seed = unit
        return pool.submit(run_unit, problem, opt, perts, seed, kw, extra)

    try:
        if executor is None and n_jobs == 1:
            for unit in todo:
                i, j, opt, perts, kw, extra, seed = unit
                finish(unit, run_unit(problem, opt, perts, seed, kw, extra))
        else:
            own = executor is None
            pool = ThreadPoolExecutor(max_workers=min(n_jobs, max(1, len(todo)))) if own \
                else executor
            try:
                pending = {submit(pool, u): u for u in todo}
                while pending:
                    finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                    for fut in finished:
                        unit = pending.pop(fut)
                        finish(unit, fut.result())
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
            finally:
                if own:
                    pool.shutdown(wait=True, cancel_futures=True)
    finally:
        if bar is not None:
            bar.close()

    per_point = [_point_result([results[(i, j)] for j in range(len(seeds))])
                 for i in range(len(points))]
    sw = SweepResult(grid, points, per_point, seeds, config)
    sw.n_loaded, sw.n_computed = len(done), len(todo)
    return sw


def _manifest(grid, points, seeds, files, config):
    return {"format": io.SWEEP_FORMAT, "version": io.FORMAT_VERSION,
            "grid": io.jsonable(grid), "points": io.jsonable(points),
            "seeds": [io.seed_to_json(s) for s in seeds], "files": files,
            "config": io.jsonable(config)}


# -- result -------------------------------------------------------------------------------------
class SweepResult:
    """The outcome of ``fc.sweep``: one :class:`fastcascade.Result` per grid point (its runs are
    the seeds, in order).

    Parameters
    ----------
    grid : dict str -> list
        The grid, key to values.
    points : list of dict
        The grid values of each point, in Cartesian-product order.
    results : list of Result
        One per point.
    seeds : list
        The seeds, shared by every point.
    config : dict
        The settings shared by every point (stored as plain JSON data).

    Attributes
    ----------
    grid : dict str -> list
    points : list of dict, the grid values of each point (Cartesian-product order)
    results : list of Result, one per point
    seeds : list
    config : dict, the settings shared by every point
    n_computed, n_loaded : int, runs computed by this call and runs reused from ``out``

    Examples
    --------
    See :func:`fastcascade.sweep` (defined in ``fastcascade.sweeper``).
    """

    def __init__(self, grid, points, results, seeds, config):
        self.grid = {k: list(v) for k, v in grid.items()}
        self.points = [dict(p) for p in points]
        self.results = list(results)
        self.seeds = list(seeds)
        self.config = io.jsonable(config)
        self.n_computed = self.n_loaded = 0

    def __len__(self):
        return len(self.points)

    def __getitem__(self, i):
        return self.results[i]

    def __iter__(self):
        return iter(self.results)

    def items(self):
        """(grid values, Result) pairs.

        Returns
        -------
        list of tuple
            ``(point dict, Result)``, in the order of ``points``.
        """
        return list(zip(self.points, self.results))

    @property
    def keys(self):
        """The grid keys, in the grid's order (a list)."""
        return list(self.grid)

    def select(self, **values):
        """The Result of the point with these grid values (all keys must be given).

        Parameters
        ----------
        **values
            One value per grid key (ValueError for a missing or unknown key).

        Returns
        -------
        fastcascade.Result

        Examples
        --------
        ``sw.select(step_size=0.1, sigma_f=2.0).stable_grad_norm()``
        """
        for k in values:
            if k not in self.grid:
                raise ValueError(f"{k}: not a grid key; the grid has {', '.join(self.grid)}")
        missing = [k for k in self.grid if k not in values]
        if missing:
            raise ValueError(f"select: give a value for every grid key, missing "
                             f"{', '.join(missing)}")
        for point, res in zip(self.points, self.results):
            if all(_same(point[k], values[k]) for k in self.grid):
                return res
        raise ValueError(f"select: no grid point {values}; the grid is {self.grid}")

    # -- metrics ----------------------------------------------------------------------------
    def stable_grad_norm(self, factor=0.99):
        """The stable gradient norm of every run (``Result.stable_grad_norm``).

        Parameters
        ----------
        factor : float in [0, 1), default 0.99
            EWMA factor per iteration, whatever ``record_every`` was (docs/model.md, Metrics).

        Returns
        -------
        numpy.ndarray
            float64 (n_points, n_seeds); NaN for a diverged run.
        """
        return np.stack([r.stable_grad_norm(factor) for r in self.results])

    def stable_iteration_complexity(self, factor=0.99, threshold=1.5):
        """The stable iteration complexity of every run.

        Parameters
        ----------
        factor : float in [0, 1), default 0.99
            EWMA factor per iteration, whatever ``record_every`` was (docs/model.md, Metrics).
        threshold : float > 0, default 1.5
            Multiple of the stable gradient norm the EWMA must fall below.

        Returns
        -------
        numpy.ndarray
            int64 (n_points, n_seeds); -1 where it never does.
        """
        return np.stack([r.stable_iteration_complexity(factor, threshold)
                         for r in self.results])

    def summary_table(self, factor=0.99, **spike_options):
        """One row per run (point, seed): the grid values, then the fields of
        ``Result.summary_table``, as a structured array.

        Parameters
        ----------
        factor : float in [0, 1), default 0.99
            EWMA factor per iteration, whatever ``record_every`` was (docs/model.md, Metrics).
        **spike_options
            Keyword arguments of ``Result.spike_events``.

        Returns
        -------
        numpy.ndarray
            Structured (n_points * n_seeds,): ``point`` (int64), one column per grid key, then the
            fields of ``Result.summary_table``.
        """
        grid_cols = []
        for k in self.grid:
            col = _column([p[k] for p in self.points])
            grid_cols.append((k, col))
        parts = [r.summary_table(factor, **spike_options) for r in self.results]
        run_table = np.concatenate(parts)
        dtype = [("point", np.int64)] + [(k, c.dtype) for k, c in grid_cols] + \
            run_table.dtype.descr
        table = np.zeros(run_table.shape[0], dtype=dtype)
        point_idx = np.repeat(np.arange(len(self.points)), [len(p) for p in parts])
        table["point"] = point_idx
        for k, col in grid_cols:
            table[k] = col[point_idx]
        for name in run_table.dtype.names:
            table[name] = run_table[name]
        return table

    def summary(self, factor=0.99):
        """One line per grid point: its values, the median [quartiles] of the stable gradient
        norm over the seeds, the median stable iteration, diverged runs and spikes.

        Parameters
        ----------
        factor : float in [0, 1), default 0.99
            EWMA factor per iteration, whatever ``record_every`` was (docs/model.md, Metrics).

        Returns
        -------
        str
            A header line and one line per point, joined by newlines.
        """
        table = self.summary_table(factor)
        keys = list(self.grid)
        width = {k: max(len(k), *(len(_fmt(p[k])) for p in self.points)) for k in keys}
        head = " ".join(f"{k:>{width[k]}}" for k in keys)
        lines = [f"{head} {'stable |grad| median [q25, q75]':>34} {'stable at':>10} "
                 f"{'diverged':>9} {'spikes':>7}"]
        for i, point in enumerate(self.points):
            rows = table[table["point"] == i]
            s = rows["stable_grad_norm"]
            if np.all(np.isnan(s)):
                norm = "nan"
            else:
                q25, med, q75 = np.nanpercentile(s, [25, 50, 75])
                norm = f"{med:.3e} [{q25:.2e}, {q75:.2e}]"
            it = rows["stable_iteration"]
            it = it[it >= 0]
            stable_at = str(int(np.median(it))) if it.size else "-"
            vals = " ".join(f"{_fmt(point[k]):>{width[k]}}" for k in keys)
            lines.append(f"{vals} {norm:>34} {stable_at:>10} "
                         f"{int(rows['diverged'].sum())}/{len(rows):<7} "
                         f"{int(rows['n_spikes'].sum()):>7}")
        return "\n".join(lines)

    def to_frame(self, factor=0.99):
        """The per-run summary table as a pandas DataFrame (pandas is an optional extra).

        Parameters
        ----------
        factor : float in [0, 1), default 0.99
            EWMA factor per iteration, whatever ``record_every`` was (docs/model.md, Metrics).

        Returns
        -------
        pandas.DataFrame
            The columns of :meth:`summary_table`.
        """
        return _frame(self.summary_table(factor))

    # -- files and plots ---------------------------------------------------------------------
    def save(self, folder):
        """Write the sweep to ``folder``: a manifest and one result file per run (see
        ``fastcascade.io``); ``fc.load(folder)`` reads it back.

        Parameters
        ----------
        folder : str or os.PathLike
            Created when missing; files ``pNNNN_rNN.npz`` and ``manifest.json``.
        """
        folder = os.fspath(folder)
        os.makedirs(folder, exist_ok=True)
        files = [[f"p{i:04d}_r{j:02d}.npz" for j in range(len(self.seeds))]
                 for i in range(len(self.points))]
        for i, res in enumerate(self.results):
            for j in range(res.n_runs):
                one = _take_run(res, j)
                io.save_result(one, os.path.join(folder, files[i][j]))
        io.write_manifest(folder, _manifest(self.grid, self.points, self.seeds, files,
                                            self.config))

    @classmethod
    def load(cls, folder):
        """Read a folder written by ``save`` or by ``fc.sweep(..., out=folder)``.

        Parameters
        ----------
        folder : str or os.PathLike
            The sweep folder (ValueError when a run file is missing: an unfinished sweep).

        Returns
        -------
        SweepResult
        """
        folder = os.fspath(folder)
        manifest = io.read_manifest(folder)
        results = []
        for i, names in enumerate(manifest["files"]):
            runs = []
            for name in names:
                path = os.path.join(folder, name)
                if not os.path.exists(path):
                    raise ValueError(f"{folder}: unfinished sweep, {name} is missing (run the "
                                     "same sweep with out= this folder to finish it)")
                runs.append(io.load_result(path))
            results.append(_point_result(runs))
        seeds = [io.seed_from_json(s) for s in manifest["seeds"]]
        return cls(manifest["grid"], manifest["points"], results, seeds, manifest["config"])

    def identical(self, other):
        """Same grid, points, seeds and configuration, and identical results (bit for bit).

        Parameters
        ----------
        other : object
            Compared; anything but a ``SweepResult`` gives False.

        Returns
        -------
        bool
        """
        return (isinstance(other, SweepResult) and io.jsonable(self.grid) ==
                io.jsonable(other.grid) and io.jsonable(self.points) == io.jsonable(other.points)
                and [io.seed_to_json(s) for s in self.seeds] ==
                [io.seed_to_json(s) for s in other.seeds] and self.config == other.config
                and len(self.results) == len(other.results)
                and all(a.identical(b) for a, b in zip(self.results, other.results)))

    def plot(self, ax=None, **kwargs):
        """The stable gradient norm against the step size (``plotting.stable_norm``) when the
        grid has ``step_size``; else the convergence of every point.

        Parameters
        ----------
        ax : matplotlib Axes, optional
            Drawn on; new axes by default.
        **kwargs
            Passed to ``plotting.stable_norm`` or ``plotting.convergence``.

        Returns
        -------
        matplotlib Axes
        """
        from fastcascade import plotting

        if "step_size" in self.grid:
            return plotting.stable_norm(self, ax=ax, **kwargs)
        return plotting.convergence(self, ax=ax, **kwargs)

    def __repr__(self):
        shape = " x ".join(f"{k}[{len(v)}]" for k, v in self.grid.items()) or "no grid"
        return f"SweepResult({shape}, seeds={len(self.seeds)}, runs={len(self) * len(self.seeds)})"


def _point_result(runs):
    """The one-run results of a grid point as one Result; ``config["sweep"]`` keeps the point
    index and the key of each run (what resuming compares)."""
    config = dict(runs[0].config)
    sweep_info = config.pop("sweep", None)
    if sweep_info is not None:
        config["sweep"] = {"point": sweep_info["point"],
                           "keys": [r.config.get("sweep", {}).get("key") for r in runs]}
    return Result.concat(runs, config=config)


def _take_run(res, j):
    """Run j of a point's Result as a one-run Result (with its own sweep key)."""
    config = dict(res.config)
    info = config.pop("sweep", None)
    if info is not None and "keys" in info:
        config["sweep"] = {"point": info["point"], "seed_index": j, "key": info["keys"][j]}
    hist = {name: getattr(res, name)[j:j + 1] for name in
            ("objective", "grad_norm", "grad_error", "step_size")}
    for name in OPTIONAL_FIELDS:
        a = getattr(res, name)
        hist[name] = None if a is None else a[j:j + 1]
    return Result(res.iterations, hist, res.final_weights[j:j + 1], res.stopped_at[j:j + 1],
                  res.stop_reason[j:j + 1], res.seeds[j:j + 1], config)


def _same(a, b):
    if isinstance(a, (int, float, np.number)) and isinstance(b, (int, float, np.number)) \
            and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return io.jsonable(a) == io.jsonable(b)


def _fmt(v):
    return f"{v:g}" if isinstance(v, float) else str(v)


def _column(values):
    """Grid values as a NumPy column: numbers stay numbers, anything else becomes text."""
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return np.asarray(values, dtype=bool)
    if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.int64)
    if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values):
        return np.asarray(values, dtype=np.float64)
    text = [str(io.jsonable(v)) if not isinstance(v, str) else v for v in values]
    return np.asarray(text, dtype=f"U{max(1, max(len(t) for t in text))}")
