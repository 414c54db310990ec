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

import functools
import hashlib
import inspect
import itertools
import json
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

import numpy as np

from fastcascade import io
from fastcascade._interrupt import engine_interrupts
from fastcascade._kernels import _engine, _ops
from fastcascade._validation import check_bool, check_instance, check_positive_int
from fastcascade.errors import ParameterError, ParameterTypeError, show_value
from fastcascade.optim import Optimizer
from fastcascade.perturbation import Perturbation, check_perturbations
from fastcascade.problem import Problem
from fastcascade.result import OPTIONAL_FIELDS, Result, _frame
from fastcascade._progress import progress_bar
from fastcascade._typing import PathLike, Seed, Seeds
from fastcascade._version import __version__
from fastcascade.runner import _seed_list, check_settings, run

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["sweep", "SweepResult", "SweepFolderError", "run_unit", "RUN_KEYS"]

RUN_KEYS = ("n_iter", "record_every", "record_profile", "record_weights", "init", "engine",
            "max_norm")
RESERVED = ("seeds", "n_jobs", "perturbations", "executor", "problem", "optimizer", "out",
            "progress", "grid")


# -- the unit of work ---------------------------------------------------------------------------
def run_unit(problem: Problem, optimizer: Optimizer, perturbations: Iterable[Perturbation],
             seed: Seed, run_kwargs: Mapping[str, Any], extra_config: Mapping[str, Any]
             ) -> Result:
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


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
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
    # a Python-defined or compiled operator's flag is its registry token, different in each
    # process and for each copy: not part of what the runs compute (its repr is, in the spec)
    table = problem.plan.op_table.copy()
    callbacks = np.isin(table[:, 0], [_ops.OP_CODES["python"], _ops.OP_CODES["compiled"]])
    table[callbacks, 1] = 0
    for a in (problem.data.X, problem.data.y, problem.plan.params, table):
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
    if isinstance(fn, functools.partial):
        args = [repr(a) for a in fn.args] + [f"{k}={v!r}" for k, v in fn.keywords.items()]
        return f"partial({describe_callable(fn.func)}, {', '.join(args)})"
    name = getattr(fn, "__qualname__", None)
    if name is None:  # a callable object: its repr, which classes can make stable
        return repr(fn)
    return f"{getattr(fn, '__module__', '?')}.{name}"


def _describe_init(init, problem=None, seed=None):
    """How a run's ``init`` enters its key: a callable by the hash of what it returns for the
    run's seed (two closures with one name differ), an array by its hash."""
    if init is None or isinstance(init, str):
        return init
    if callable(init):
        if seed is None:  # the folder's binding: the runs' keys hold what it returns
            return "callable"
        init = problem.cascade.check_weights(init(seed), f"init({seed!r})", finite=True)
    a = np.ascontiguousarray(np.asarray(init, dtype=np.float64))
    return f"array {a.shape} sha256 {hashlib.sha256(a.tobytes()).hexdigest()[:16]}"


def build_key():
    """The parts of the build that can change a run's bits: a run's key holds them.

    Debug and release builds differ in the last digits; the SIMD levels give the same bits
    (the engine fingerprints check it), so they are not part of it.

    Returns
    -------
    dict
        ``{"fastcascade": version, "debug": bool, "native": bool}``.
    """
    return {"fastcascade": __version__, "debug": bool(_engine.BUILD_FLAGS["debug"]),
            "native": bool(_engine.BUILD_FLAGS["native"])}


def _unit_key(spec):
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def run_file_name(key):
    """The file of a run in a sweep folder: named by its key, so that no run of another
    configuration can ever be written over it.

    Parameters
    ----------
    key : str
        The run's key (hex sha256 of what it computes).

    Returns
    -------
    str
        ``run-<first 24 hex digits>.npz``.
    """
    return f"run-{key[:24]}.npz"


def _at_point(exc, values):
    """``exc`` with the grid point named in its message (a ParameterError stays one)."""
    if not values:
        return exc
    where = f"grid point {io.jsonable(values)}"
    if isinstance(exc, ParameterError):
        owner = f"{where}: {exc.owner}" if exc.owner else where
        return type(exc)(exc.param, exc.value, exc.allowed, owner=owner, given=exc.given)
    return ValueError(f"{where}: {exc}")


def _point_settings(optimizer, perturbations, kinds, values, base_run, N):
    """One grid point's optimizer, perturbations and run keywords."""
    opt_changes = {k: v for k, v in values.items() if kinds[k] == "optimizer"}
    p_values = {k: v for k, v in values.items() if kinds[k] == "perturbations"}
    kw = dict(base_run)
    kw.update({k: v for k, v in values.items() if kinds[k] == "run"})
    try:
        opt = optimizer.replace(**opt_changes) if opt_changes else optimizer
    except ParameterError as exc:  # the grid key is the field's name: no owner in front
        raise type(exc)(exc.param, exc.value, exc.allowed, given=exc.given) from None
    perts = perturbations(**p_values) if callable(perturbations) else perturbations
    return opt, check_perturbations(perts, N), kw


def _build_units(problem, optimizer, perturbations, kinds, points, seeds, base_run,
                 fingerprint):
    """Every (point, seed) run with its key, each point checked as ``fc.run`` would check it,
    before any run starts; an error names the point. ``fingerprint``: the data's hash."""
    units = []  # (point index, seed index, optimizer, perturbations, run kwargs, extra, seed)
    build = build_key()
    for i, values in enumerate(points):
        try:
            opt, perts, kw = _point_settings(optimizer, perturbations, kinds, values, base_run,
                                             problem.cascade.n_ops)
            init = kw.get("init")
            if isinstance(init, np.ndarray) and init.ndim == 2 and init.shape[0] != len(seeds):
                raise ParameterError("init", init, f"shape ({problem.n_weights},) or "
                                     f"({len(seeds)}, {problem.n_weights})",
                                     given=f"shape {init.shape}")
            with warnings.catch_warnings():  # the run itself warns, once
                warnings.simplefilter("ignore")
                check_settings(problem, opt, perturbations=perts, seeds=seeds[:1],
                               **{k: v[0] if k == "init" and isinstance(v, np.ndarray)
                                  and v.ndim == 2 else v for k, v in kw.items()})
            for j, seed in enumerate(seeds):
                kw_j = dict(kw)
                if isinstance(init, np.ndarray) and init.ndim == 2:
                    kw_j["init"] = init[j]
                run_spec = {k: (_describe_init(v, problem, seed) if k == "init" else v)
                            for k, v in sorted(kw_j.items())}
                spec = {"problem": repr(problem), "data": fingerprint, "optimizer": repr(opt),
                        "perturbations": [repr(p) for p in perts],
                        "seed": io.seed_to_json(seed), "run": io.jsonable(run_spec),
                        "build": build}
                extra = {"grid": io.jsonable(values),
                         "sweep": {"point": i, "seed_index": j, "key": _unit_key(spec)}}
                units.append((i, j, opt, perts, kw_j, extra, seed))
        except (ParameterError, ValueError, TypeError) as exc:
            raise _at_point(exc, values) from None
    return units


def _binding(problem, optimizer, perturbations, kinds, base_run, fingerprint):
    """What a sweep folder is bound to: everything but the grid's values and the seeds."""
    N = problem.cascade.n_ops
    return io.jsonable({
        "problem": repr(problem), "data_sha256": fingerprint,
        "optimizer": repr(optimizer),
        "perturbations": (describe_callable(perturbations) if callable(perturbations)
                          else [repr(p) for p in check_perturbations(perturbations, N)]),
        "run": {k: (_describe_init(v) if k == "init" else v) for k, v in base_run.items()},
        "grid_keys": kinds, "build": build_key()})


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def binding_differences(stored, asked):
    """Where two folder bindings differ.

    Parameters
    ----------
    stored, asked : dict
        The binding in a folder's manifest and the one of the sweep asked for (nested dicts
        are compared key by key, as dotted names).

    Returns
    -------
    list of str
        ``"run.n_iter: 20 in the folder, 30 asked"``, one per differing key, sorted.
    """
    a, b = _flat(stored), _flat(asked)
    return [f"{k}: {show_value(a.get(k, '(absent)'))} in the folder, "
            f"{show_value(b.get(k, '(absent)'))} asked"
            for k in sorted(set(a) | set(b)) if a.get(k, "(absent)") != b.get(k, "(absent)")]


class SweepFolderError(ParameterError):
    """A sweep folder that holds another configuration's runs (``out`` of ``fc.sweep``).

    Parameters
    ----------
    folder : str
        The folder (the error's ``value``; its ``param`` is ``"out"``).
    differences : list of str
        What differs, as :func:`binding_differences` phrases it (``.differences``).
    """

    def __init__(self, folder, differences):
        self.differences = list(differences)
        shown = "; ".join(self.differences[:4]) + (
            f"; and {len(self.differences) - 4} more" if len(self.differences) > 4 else "")
        super().__init__("out", folder, "a folder of the same configuration (only the grid's "
                         "values and the seeds may differ), or overwrite=True to replace it",
                         given=f"{folder!r}, whose runs differ in {shown}")

    def __reduce__(self):
        return (type(self), (self.value, self.differences))


def _folder_files(manifest):
    files = [name for names in manifest["files"] for name in names]
    return files + list(manifest.get("earlier_files", []))


def _open_folder(out, binding, overwrite):
    """Check ``out`` against the binding; returns the file names the folder already lists
    (kept in the new manifest when this sweep does not use them)."""
    os.makedirs(out, exist_ok=True)
    if not os.path.exists(os.path.join(out, io.MANIFEST)):
        return []
    manifest = io.read_manifest(out)
    stored = manifest.get("binding")
    if stored is None:  # written before folders were bound: compare what it recorded
        config = manifest["config"]
        stored = {k: config.get(k) for k in ("problem", "data_sha256", "optimizer",
                                             "perturbations", "run")}
        stored.update(grid_keys=config.get("grid_kinds"), build=binding["build"])
    differences = binding_differences(stored, binding)
    if differences and not overwrite:
        raise SweepFolderError(out, differences)
    if differences:  # overwrite=True: the folder's runs go
        for name in _folder_files(manifest):
            try:
                os.remove(os.path.join(out, name))
            except FileNotFoundError:
                pass
        return []
    return _folder_files(manifest)


def _reusable(out, units, files):
    """The runs already in ``out`` whose key is the one asked for."""
    done = {}
    for unit in units:
        i, j, extra = unit[0], unit[1], unit[5]
        path = os.path.join(out, files[i][j])
        if not os.path.exists(path):
            continue
        try:
            res = io.load_result(path)
        except ValueError as exc:
            warnings.warn(f"sweep: recomputing {path}: {exc}", stacklevel=3)
            continue
        if res.config.get("sweep", {}).get("key") == extra["sweep"]["key"]:
            done[(i, j)] = res
    for name in os.listdir(out):  # temporary files of writes that were cut short
        if name.startswith(".") and ".tmp-" in name:
            try:
                os.remove(os.path.join(out, name))
            except OSError:
                pass
    return done


def _execute(units, problem, n_jobs, executor, finish):
    """Run the units; on Ctrl-C the runs in flight stop within a step and the finished ones
    are kept. Returns whether the sweep was interrupted."""
    def submit(pool, unit):
        i, j, opt, perts, kw, extra, seed = unit
        return pool.submit(run_unit, problem, opt, perts, seed, kw, extra)

    try:
        with engine_interrupts():
            if executor is None and n_jobs == 1:
                for unit in units:
                    i, j, opt, perts, kw, extra, seed = unit
                    finish(unit, run_unit(problem, opt, perts, seed, kw, extra))
                return False
            own = executor is None
            pool = ThreadPoolExecutor(max_workers=min(n_jobs, max(1, len(units)))) if own \
                else executor
            pending = {}
            try:
                pending = {submit(pool, u): u for u in units}
                while pending:
                    finished, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                    for fut in finished:
                        unit = pending.pop(fut)
                        finish(unit, fut.result())
            finally:
                for fut in pending:
                    fut.cancel()
                if own:
                    pool.shutdown(wait=True, cancel_futures=True)
    except KeyboardInterrupt:
        return True
    return False


# -- sweep --------------------------------------------------------------------------------------
def sweep(problem: Problem, optimizer: Optimizer, n_iter: int | None = None,
          grid: Mapping[str, Sequence[Any]] | None = None, seeds: Seeds = 0,
          perturbations: Iterable[Perturbation] | Callable[..., Iterable[Perturbation]] = (),
          n_jobs: int = 1, executor: Executor | None = None, out: PathLike | None = None,
          progress: bool | None = None, metadata: Mapping[str, Any] | None = None,
          overwrite: bool = False, **run_kwargs: Any) -> SweepResult:
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
        A folder: each run is written there as it finishes (``run-<key>.npz``), with a
        manifest. The folder is bound to the sweep's configuration (everything but the grid's
        values and the seeds): the same call again reuses the finished runs (resume after an
        interruption), a call with more grid values or seeds reuses those that match, and a
        different configuration is refused (:class:`SweepFolderError`, naming the keys that
        differ). No run file is ever written over by a run of another configuration.
    progress : None, bool
        A progress bar on stderr (tqdm): None shows it when stderr is a terminal and the
        sweep lasts more than a few seconds.
    metadata : dict, optional
        JSON-able data added to the sweep's configuration (and its manifest), for example the
        configuration file it came from.
    overwrite : bool
        With ``out`` holding another configuration's sweep: delete its runs and run this one.
    **run_kwargs
        Other ``fc.run`` keywords: record_every, record_profile, record_weights, init, engine,
        max_norm. A callable ``init`` enters a run's key by the hash of what it returns for the
        run's seed.

    Returns
    -------
    SweepResult
        With ``interrupted`` True after Ctrl-C (SIGINT): then it holds the points whose runs
        all finished, and the finished runs are in ``out``. ``unsaved`` lists the runs that
        could not be written (``(path, reason)``; a ``RuntimeWarning`` names the first); they
        are in the result all the same.

    Raises
    ------
    fastcascade.ParameterError
        For a grid key that is none of the above, or a grid value the optimizer, the
        perturbations or ``fc.run`` reject: every point is checked before any run starts, and
        the message names the point.
    SweepFolderError
        For an ``out`` folder of another configuration (unless ``overwrite``).

    Examples
    --------
    See the module docstring.
    """
    check_instance(problem, "problem", Problem, "a fastcascade.Problem")
    check_instance(optimizer, "optimizer", Optimizer, "fastcascade.SGD or fastcascade.Adam")
    for key in run_kwargs:
        if key not in RUN_KEYS:
            raise ParameterError(key, run_kwargs[key], "a keyword of fc.sweep: one of "
                                 f"{', '.join(RUN_KEYS)} (or grid=..., seeds=..., n_jobs=..., "
                                 "executor=..., out=..., progress=...)")
    overwrite = check_bool(overwrite, "overwrite")
    grid = {} if grid is None else grid
    kinds = classify_grid(grid, optimizer, perturbations)
    if n_iter is None and "n_iter" not in grid:
        raise ParameterError("n_iter", None, "a positive integer (or a grid key)")
    if executor is None:
        n_jobs = check_positive_int(os.cpu_count() or 1 if n_jobs == -1 else n_jobs, "n_jobs")
    elif not hasattr(executor, "submit"):
        raise ParameterTypeError("executor", executor, "a concurrent.futures.Executor")
    if metadata is not None and not isinstance(metadata, dict):
        raise ParameterTypeError("metadata", metadata, "a dict")
    seeds = _seed_list(seeds)
    grid = {k: list(v) for k, v in grid.items()}
    points = grid_points(grid)
    base_run = dict(run_kwargs)
    if n_iter is not None:
        base_run["n_iter"] = n_iter
    fingerprint = _fingerprint(problem)  # hashes the data: once
    units = _build_units(problem, optimizer, perturbations, kinds, points, seeds, base_run,
                         fingerprint)
    binding = _binding(problem, optimizer, perturbations, kinds, base_run, fingerprint)
    config = dict(binding, grid_kinds=kinds, **io.jsonable(metadata or {}))
    files = [[None] * len(seeds) for _ in points]
    for unit in units:
        files[unit[0]][unit[1]] = run_file_name(unit[5]["sweep"]["key"])
    done = {}
    if out is not None:
        out = os.fspath(out)
        listed = _open_folder(out, binding, overwrite)
        used = {name for names in files for name in names}
        manifest = _manifest(grid, points, seeds, files, config)
        manifest["binding"] = binding
        manifest["earlier_files"] = sorted(set(listed) - used)
        io.write_manifest(out, manifest)
        done = _reusable(out, units, files)
    return _run_units(problem, units, done, files, grid, points, seeds, config,
                      n_jobs, executor, out, progress)


def _run_units(problem, units, done, files, grid, points, seeds, config, n_jobs, executor,
               out, progress):
    """Compute the units not in ``done``, writing each to ``out`` as it finishes."""
    todo = [u for u in units if (u[0], u[1]) not in done]
    results, unsaved = dict(done), []
    bar = progress_bar(len(units), progress, "sweep")
    if bar is not None:
        bar.update(len(done))

    def finish(unit, res):
        i, j = unit[0], unit[1]
        results[(i, j)] = res
        if out is not None:
            path = os.path.join(out, files[i][j])
            try:
                io.save_result(res, path)
            except OSError as exc:  # kept in memory; the caller is told which path failed
                unsaved.append((path, f"{exc.strerror or exc}"))
        if bar is not None:
            bar.update(1)

    try:
        interrupted = _execute(todo, problem, n_jobs, executor, finish)
    finally:
        if bar is not None:
            bar.close()
    complete = [i for i in range(len(points))
                if all((i, j) in results for j in range(len(seeds)))]
    if unsaved:
        warnings.warn(f"sweep: {len(unsaved)} run(s) could not be written, the first to "
                      f"{unsaved[0][0]} ({unsaved[0][1]}); they are in the returned result",
                      RuntimeWarning, stacklevel=3)
    if interrupted:
        warnings.warn(f"sweep: interrupted (SIGINT) with {len(results)} of {len(units)} runs "
                      f"finished; {len(complete)} of {len(points)} points complete"
                      + (f"; the finished runs are in {out} (the same call resumes)"
                         if out is not None else ""), RuntimeWarning, stacklevel=3)
    per_point = [_point_result([results[(i, j)] for j in range(len(seeds))]) for i in complete]
    sw = SweepResult(grid, [points[i] for i in complete], per_point, seeds, config)
    sw.n_loaded, sw.n_computed = len(done), len(results) - len(done)
    sw.interrupted, sw.unsaved = interrupted, unsaved
    sw.partial_runs = {i: [results[(i, j)] for j in range(len(seeds)) if (i, j) in results]
                       for i in range(len(points)) if i not in complete}
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
    interrupted : bool, whether Ctrl-C cut the sweep short (``points`` then holds the points
        whose runs all finished)
    unsaved : list of (path, reason), the runs ``fc.sweep`` could not write to ``out``
    partial_runs : dict int -> list of Result, after an interruption: the finished runs of the
        points (by index in the full grid) that did not finish all their seeds

    Examples
    --------
    See :func:`fastcascade.sweep` (defined in ``fastcascade.sweeper``).
    """

    def __init__(self, grid: Mapping[str, Sequence[Any]], points: Iterable[Mapping[str, Any]],
                 results: Iterable[Result], seeds: Iterable[Seed], config: Mapping[str, Any]):
        self.grid = {k: list(v) for k, v in grid.items()}
        self.points = [dict(p) for p in points]
        self.results = list(results)
        self.seeds = list(seeds)
        self.config = io.jsonable(config)
        self.n_computed = self.n_loaded = 0
        self.interrupted = False
        self.unsaved: list[tuple[str, str]] = []
        self.partial_runs: dict[int, list[Result]] = {}

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> Result:
        return self.results[i]

    def __iter__(self) -> Iterator[Result]:
        return iter(self.results)

    def items(self) -> list[tuple[dict[str, Any], Result]]:
        """(grid values, Result) pairs.

        Returns
        -------
        list of tuple
            ``(point dict, Result)``, in the order of ``points``.
        """
        return list(zip(self.points, self.results))

    @property
    def keys(self) -> list[str]:
        """The grid keys, in the grid's order (a list)."""
        return list(self.grid)

    def select(self, **values: Any) -> Result:
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
    def stable_grad_norm(self, factor: float = 0.99) -> np.ndarray:
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

    def stable_iteration_complexity(self, factor: float = 0.99,
                                    threshold: float = 1.5) -> np.ndarray:
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

    def summary_table(self, factor: float = 0.99, **spike_options: Any) -> np.ndarray:
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
        for name in run_table.dtype.names or ():
            table[name] = run_table[name]
        return table

    def summary(self, factor: float = 0.99) -> str:
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

    def to_frame(self, factor: float = 0.99) -> Any:
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
    def save(self, folder: PathLike, overwrite: bool = False) -> None:
        """Write the sweep to ``folder``: a manifest and one result file per run (see
        ``fastcascade.io``); ``fc.load(folder)`` reads it back.

        Parameters
        ----------
        folder : str or os.PathLike
            Created when missing; files ``pNNNN_rNN.npz`` and ``manifest.json``.
        overwrite : bool
            A folder that already holds a sweep is refused (``SweepFolderError``) unless this
            is True; then its runs are deleted first.
        """
        folder = os.fspath(folder)
        overwrite = check_bool(overwrite, "overwrite")
        os.makedirs(folder, exist_ok=True)
        if os.path.exists(os.path.join(folder, io.MANIFEST)):
            manifest = io.read_manifest(folder)
            if not overwrite:
                raise SweepFolderError(folder, ["the folder holds a sweep already"])
            for name in _folder_files(manifest):
                if os.path.exists(os.path.join(folder, name)):
                    os.remove(os.path.join(folder, name))
        files = [[f"p{i:04d}_r{j:02d}.npz" for j in range(len(self.seeds))]
                 for i in range(len(self.points))]
        for i, res in enumerate(self.results):
            for j in range(res.n_runs):
                one = _take_run(res, j)
                io.save_result(one, os.path.join(folder, files[i][j]))
        io.write_manifest(folder, _manifest(self.grid, self.points, self.seeds, files,
                                            self.config))

    @classmethod
    def load(cls, folder: PathLike) -> SweepResult:
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

    def identical(self, other: object) -> bool:
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

    def plot(self, ax: Axes | None = None, **kwargs: Any) -> Axes:
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
        from fastcascade import plotting  # a higher floor

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
