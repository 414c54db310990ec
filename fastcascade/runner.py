"""Running perturbed SGD: ``fc.run`` (many seeded runs, in parallel threads) and
``fc.perturbed_gradient`` (one Eq. 5 gradient, to embed in a user's own loop).

Examples
--------
>>> import fastcascade as fc
>>> data = fc.datasets.synthetic_logistic(500, 5, seed=0)
>>> problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), data,
...                      regularizer=fc.reg.NonConvex(rho=1e-3))
>>> perts = [fc.Perturbation(op=1, pass_="forward", noise=fc.noise.Uniform(-0.3, 0.3))]
>>> res = fc.run(problem, fc.SGD(step_size=0.5, grad_noise_std=1e-3), n_iter=200,
...              perturbations=perts, seeds=range(4), n_jobs=2)
>>> res.grad_norm.shape
(4, 200)
"""
from __future__ import annotations

import math
import os
import warnings
from collections import namedtuple
from collections.abc import Iterable
from types import SimpleNamespace
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from fastcascade import _callbacks, reference_engine
from fastcascade._blas import single_threaded_blas
from fastcascade._interrupt import engine_interrupts
from fastcascade._kernels import _engine, _ops
from fastcascade._progress import progress_bar
from fastcascade._typing import Init, Seed, Seeds
from fastcascade._validation import (check_bool, check_choice, check_instance, check_memory,
                                     check_positive_int, check_real, is_int)
from fastcascade.diagnostics import check_setup, warn_nonfinite_injections
from fastcascade.errors import ParameterError, ParameterTypeError
from fastcascade.optim import Optimizer
from fastcascade.perturbation import Perturbation
from fastcascade.plan import Plan
from fastcascade.problem import Problem
from fastcascade.result import Result

__all__ = ["run", "check_settings", "perturbed_gradient", "PerturbedGradient", "run_streams"]

ENGINES = ("cython", "numpy")
STOP_INTERRUPTED = {reason: code for code, reason in _engine.STOP_REASONS.items()}["interrupted"]
STREAMS = ("data", "forward", "backward", "gradient")

PerturbedGradient = namedtuple("PerturbedGradient", ["perturbed", "clean"])
PerturbedGradient.__doc__ = """The Eq. 5 gradient of one step and the clean gradient on the same
samples, both including the regularizer's gradient."""


def run_streams(seed: Seed) -> list[np.random.Generator]:
    """The run's four generators (data, forward noise, backward noise, gradient noise), spawned
    from ``numpy.random.SeedSequence(seed)`` in that order (PCG64; docs/model.md sec. 3).

    Parameters
    ----------
    seed : int or numpy.random.SeedSequence
        The run's seed; a SeedSequence is spawned from as it is.

    Returns
    -------
    list of numpy.random.Generator
        ``[data, forward, backward, gradient]``.
    """
    seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return [np.random.Generator(np.random.PCG64(s)) for s in seq.spawn(len(STREAMS))]


def _check_problem(problem, optimizer=None, need_optimizer=False):
    check_instance(problem, "problem", Problem, "a fastcascade.Problem")
    if need_optimizer or optimizer is not None:
        check_instance(optimizer, "optimizer", Optimizer,
                       "fastcascade.SGD or fastcascade.Adam")


SEEDS_ALLOWED = "a non-negative integer, a SeedSequence or an iterable of them"


def _seed_list(seeds: Any) -> list[Seed]:
    if isinstance(seeds, np.random.SeedSequence) or is_int(seeds):
        seeds = [seeds]
    elif isinstance(seeds, (bool, np.bool_, str, bytes, dict, float)):
        raise ParameterTypeError("seeds", seeds, SEEDS_ALLOWED)
    try:
        seeds = list(seeds)
    except TypeError:
        raise ParameterTypeError("seeds", seeds, SEEDS_ALLOWED) from None
    if not seeds:
        raise ParameterError("seeds", seeds, "at least one seed")
    for k, s in enumerate(seeds):
        if isinstance(s, np.random.SeedSequence):
            continue
        if not is_int(s):
            raise ParameterTypeError(f"seeds[{k}]", s, "a non-negative integer or a "
                                     "SeedSequence")
        if s < 0:
            raise ParameterError(f"seeds[{k}]", s, "a non-negative integer")
    return seeds


INIT_ALLOWED = ("None, 'zeros', 'random', an array (n_weights,) or (n_runs, n_weights) of "
                "finite numbers, or a callable init(seed)")


def _initial_weights(problem, init, seeds):
    n_runs, n_w = len(seeds), problem.n_weights
    if init is None or (isinstance(init, str) and init == "zeros"):
        return np.zeros((n_runs, n_w))
    if isinstance(init, str) and init == "random":
        return np.stack([problem.init_weights(seed=s) for s in seeds]) if n_w else \
            np.zeros((n_runs, 0))
    if isinstance(init, str):
        raise ParameterError("init", init, INIT_ALLOWED)
    if callable(init):
        return np.stack([problem.cascade.check_weights(init(s), f"init({s!r})", finite=True)
                         for s in seeds])
    try:
        w0 = np.asarray(init, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterTypeError("init", init, INIT_ALLOWED) from None
    if w0.ndim == 1:
        return np.tile(problem.cascade.check_weights(w0, "init", finite=True), (n_runs, 1))
    if w0.shape != (n_runs, n_w):
        raise ParameterError("init", init, f"shape ({n_w},) or ({n_runs}, {n_w})",
                             given=f"shape {w0.shape}")
    if not np.all(np.isfinite(w0)):
        raise ParameterError("init", init, "finite numbers", given="NaN or infinite entries")
    return np.array(w0, dtype=np.float64, order="C")


def _label_width(problem):
    y = problem.data.y
    return int(y.shape[1]) if y.ndim == 2 else 1


def _run_memory(problem, optimizer, n_iter, record_every, n_runs, n_workers, record_profile,
                record_weights, record_thread):
    """Refuse, before allocating, runs whose histories and per-thread workspaces (the engine's
    buffers: three per operator output per pass over the batch and over the data) exceed the
    machine's memory; the error names the parameter of the largest part."""
    dims = problem.cascade.dims
    S, W, d0, n_w = sum(dims[1:]), max(dims), dims[0], problem.n_weights
    M, ldl, N = problem.n_samples, _label_width(problem), problem.cascade.n_ops
    full = optimizer.batch == "full"
    B = M if full else optimizer.batch
    batch_doubles = 3 * B * S + 2 * W * B + B
    if not full:
        batch_doubles += 3 * B * S + B * (d0 + ldl)
    if record_thread:  # the helper's pass and snapshots; the run's own clean passes
        batch_doubles += 3 * B * S + B * (d0 + ldl) + (0 if full else 3 * B * S)
    data_doubles = (3 * M * S * (2 if record_thread else 1)
                    + (M if optimizer.sampling == "shuffle" else 0))
    n_rec = -(-n_iter // record_every)
    hist_doubles = n_runs * n_rec * (4 + (2 * N if record_profile else 0)
                                     + (n_w if record_weights else 0))
    parts = {"n_iter": 8 * hist_doubles,
             "problem": 8 * n_workers * (data_doubles + 10 * n_w + (batch_doubles if full else 0)),
             "optimizer.batch": 0 if full else 8 * n_workers * batch_doubles}
    check_memory(parts, f"{n_runs} run(s) on {n_workers} thread(s)",
                 {"n_iter": n_iter, "problem": problem, "optimizer.batch": optimizer.batch})


def _threads(n_jobs):
    if is_int(n_jobs) and n_jobs == -1:
        return os.cpu_count() or 1
    return check_positive_int(n_jobs, "n_jobs")


def _n_workers(n_jobs, n_runs):
    return max(1, min(_threads(n_jobs), n_runs))


def check_settings(problem: Problem, optimizer: Optimizer, n_iter: int,
                   perturbations: Iterable[Perturbation] = (), seeds: Seeds = 0,
                   n_jobs: int = 1, record_every: int = 1, record_profile: bool = False,
                   init: Init = None, engine: str = "cython", max_norm: float = 1e10,
                   record_weights: bool = False) -> SimpleNamespace:
    """Check ``fc.run``'s arguments and lower them for the engine, without running anything.

    Parameters
    ----------
    problem, optimizer, n_iter, perturbations, seeds, n_jobs, record_every, record_profile, \
init, engine, max_norm, record_weights
        As for :func:`run`.

    Returns
    -------
    types.SimpleNamespace
        The normalised settings (``n_iter``, ``seeds``, ``perts`` sorted by site, ...), the
        engine's tables (``pint``, ``preal``, ``ptimes``, ``config``), ``n_workers`` and the
        initial ``weights`` (n_runs x n_weights).

    Raises
    ------
    fastcascade.ParameterError
        Naming the first argument it does not accept (``fc.sweep`` calls this for every grid
        point before it runs any).
    """
    _check_problem(problem, optimizer, need_optimizer=True)
    n_iter = check_positive_int(n_iter, "n_iter")
    record_every = check_positive_int(record_every, "record_every")
    record_profile = check_bool(record_profile, "record_profile")
    record_weights = check_bool(record_weights, "record_weights")
    engine = check_choice(engine, "engine", ENGINES)
    max_norm = check_real(max_norm, "max_norm", low=0.0, low_open=True, finite=False)
    seeds = _seed_list(seeds)
    n_workers = _n_workers(n_jobs, len(seeds))
    N = problem.cascade.n_ops
    record_thread = int(_threads(n_jobs) >= 2 * len(seeds))
    plan = Plan(problem, optimizer, perturbations, n_iter=n_iter, record_every=record_every,
                record_profile=record_profile, record_weights=record_weights,
                max_norm=max_norm, record_thread=bool(record_thread))
    perts, pint, preal, ptimes, config = (plan.perturbations, plan.pert_int, plan.pert_real,
                                          plan.pert_times, plan.config)
    optimizer.batch_size(problem.n_samples)  # validates the batch against the data
    check_setup(plan.given, n_iter)  # in the user's order, so the messages' indices are theirs
    _run_memory(problem, optimizer, n_iter, record_every, len(seeds), n_workers,
                record_profile, record_weights, record_thread)

    return SimpleNamespace(
        n_iter=n_iter, record_every=record_every, record_profile=record_profile,
        record_weights=record_weights, engine=engine, max_norm=max_norm, seeds=seeds,
        perts=perts, N=N, pint=pint, preal=preal, ptimes=ptimes, config=config, plan=plan,
        n_workers=n_workers, weights=_initial_weights(problem, init, seeds))


def run(problem: Problem, optimizer: Optimizer, n_iter: int,
        perturbations: Iterable[Perturbation] = (), seeds: Seeds = 0, n_jobs: int = 1,
        record_every: int = 1, record_profile: bool = False, init: Init = None,
        engine: str = "cython", max_norm: float = 1e10, record_weights: bool = False,
        progress: bool | None = None, partial: bool = False) -> Result:
    """Run perturbed SGD (Eq. 5, docs/model.md sec. 2) once per seed.

    Parameters
    ----------
    problem : fastcascade.Problem
    optimizer : fastcascade.SGD or fastcascade.Adam
    n_iter : int
        Iterations T per run.
    perturbations : sequence of fastcascade.Perturbation
    seeds : int or iterable of int
        One run per seed; each run's four random streams (data sampling, forward noise,
        backward noise, gradient noise) are spawned from ``SeedSequence(seed)``. Runs with the
        same seed see the same data order and gradient noise whatever their perturbations.
    n_jobs : int
        Threads running the runs (-1: one per core). With two threads or more per run (say one
        seed and ``n_jobs=2``), each run also evaluates its records (the clean pass over the
        data) on a helper thread, concurrently with its next steps. Results do not depend on
        it, to the bit.
    record_every : int
        Record the histories every this many iterations (recording costs one clean pass over
        the full data per record, plus one over the batch for minibatches).
    record_profile : bool
        Also record the per-operator forward and backward errors (the amplification profile).
    record_weights : bool
        Also record the weights w_t (``result.weights``, n_runs x n_records x n_weights).
    init : None, "zeros", "random", array (n_weights,) or (n_runs, n_weights), or callable
        Initial weights: zeros (default), the operators' initialisers seeded with the run's seed,
        given arrays, or ``init(seed) -> array``.
    engine : {"cython", "numpy"}
        The compiled engine, or its NumPy twin (same streams; slow; the reference).
    max_norm : float
        A run stops, as diverged, when the norm of its weights or step gradient exceeds this
        (or a value is not finite).
    progress : None or bool
        A progress bar over the runs on stderr (tqdm): None shows it when stderr is a terminal
        and the runs last more than a few seconds; False never.
    partial : bool
        What Ctrl-C (SIGINT) does. The runs in flight stop within one step either way. False
        (default): KeyboardInterrupt is raised. True: the runs that finished are returned (a
        ``RuntimeWarning`` says how many were cut short); KeyboardInterrupt is raised only when
        none finished.

    Returns
    -------
    fastcascade.Result

    Raises
    ------
    fastcascade.ParameterError
        For an argument it does not accept, before any work starts.
    KeyboardInterrupt
        On SIGINT, unless ``partial`` and some runs finished.
    """
    progress = check_bool(progress, "progress", allow_none=True)
    partial = check_bool(partial, "partial")
    st = check_settings(problem, optimizer, n_iter, perturbations, seeds, n_jobs, record_every,
                        record_profile, init, engine, max_norm, record_weights)
    n_iter, record_every, record_profile, record_weights = \
        st.n_iter, st.record_every, st.record_profile, st.record_weights
    engine, max_norm, perts, N = st.engine, st.max_norm, st.perts, st.N
    seeds = cast("list[Seed]", st.seeds)
    pint, preal, ptimes, config, n_workers = st.pint, st.preal, st.ptimes, st.config, st.n_workers
    weights = st.weights
    n_runs, n_rec = len(seeds), math.ceil(n_iter / record_every)
    hist: dict[str, Any] = {name: np.full((n_runs, n_rec), np.nan)
                            for name in ("objective", "grad_norm", "grad_error", "step_size")}
    prof_shape = (n_runs, n_rec, N) if record_profile else (n_runs, 0, N)
    hist["forward_error"] = np.full(prof_shape, np.nan)
    hist["backward_error"] = np.full(prof_shape, np.nan)
    hist["weights"] = np.full((n_runs, n_rec if record_weights else 0, problem.n_weights), np.nan)
    hist["nonfinite"] = np.zeros((n_runs, 1), dtype=np.int64)
    streams = [run_streams(s) for s in seeds]  # on the calling thread
    plan, data = st.plan, problem.data

    def one(k):
        if engine == "cython":
            return _engine.run_one(
                plan.op_table, plan.params, data.X, data.y, weights[k], config, pint, preal,
                ptimes, *streams[k], hist["objective"][k], hist["grad_norm"][k],
                hist["grad_error"][k], hist["step_size"][k], hist["forward_error"][k],
                hist["backward_error"][k],
                hist["weights"][k], hist["nonfinite"][k])
        return reference_engine.run_one(problem, optimizer, config, perts, streams[k],
                                        weights[k], {name: h[k] for name, h in hist.items()})

    bar = progress_bar(n_runs, progress, "runs")
    outcomes = {}  # run index -> (stop iteration, stop code, helper used), as runs finish

    def one_kept(k):
        outcomes[k] = one(k)
        if bar is not None:
            bar.update(1)

    # BLAS on one thread per run while runs execute (see fastcascade._blas)
    pin = engine == "cython" and _ops.uses_blas(plan.op_table, data.X.shape[0])

    # Python-defined operators and noises: called back with the GIL (errors raised, cost warned)
    callbacks = _callbacks.python_parts(problem, perts) if engine == "cython" else []
    if callbacks:
        _callbacks.reset()
    interrupted = False
    try:
        with single_threaded_blas(pin), engine_interrupts():
            if n_workers == 1 or engine == "numpy":
                for k in range(n_runs):
                    one_kept(k)
            else:
                pool = ThreadPoolExecutor(max_workers=n_workers)
                try:
                    list(pool.map(one_kept, range(n_runs)))
                finally:  # on Ctrl-C the runs in flight stop within a step; the rest never start
                    pool.shutdown(wait=True, cancel_futures=True)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
    if callbacks:
        # Ctrl-C inside a callback is the run's interrupt (the engine stops on its own flag);
        # any other exception is the callback's error, raised here
        errors = _callbacks.take_pending()
        interrupted = interrupted or any(isinstance(e, KeyboardInterrupt) for e in errors)
        errors = [e for e in errors if not isinstance(e, KeyboardInterrupt)]
        if errors and not interrupted:
            raise errors[0]
        if not interrupted:
            _callbacks.warn_cost(callbacks)
    kept = [k for k in range(n_runs) if k in outcomes and outcomes[k][1] != STOP_INTERRUPTED]
    if interrupted or len(kept) < n_runs:
        if not partial or not kept:
            raise KeyboardInterrupt
        warnings.warn(f"fc.run: interrupted (SIGINT): returning the {len(kept)} of {n_runs} "
                      "runs that finished", RuntimeWarning, stacklevel=2)
        seeds, weights = [seeds[k] for k in kept], weights[kept]
        hist = {name: h[kept] for name, h in hist.items()}

    stopped_at = [outcomes[k][0] for k in kept]
    reasons = [_engine.STOP_REASONS[outcomes[k][1]] for k in kept]
    if not record_profile:
        hist["forward_error"] = hist["backward_error"] = None
    if not record_weights:
        hist["weights"] = None
    hist["nonfinite_injections"] = hist.pop("nonfinite")[:, 0]
    warn_nonfinite_injections(hist["nonfinite_injections"], seeds)
    settings = dict(problem=repr(problem), optimizer=repr(optimizer), n_iter=n_iter,
                    perturbations=[repr(p) for p in perts], record_every=record_every,
                    record_profile=record_profile, record_weights=record_weights,
                    engine=engine, max_norm=max_norm,
                    init=None if init is None else (init if isinstance(init, str) else "given"))
    return Result(np.arange(n_rec, dtype=np.int64) * record_every, hist, weights, stopped_at,
                  reasons, seeds, settings)


def perturbed_gradient(problem: Problem, w: npt.ArrayLike,
                       perturbations: Iterable[Perturbation] = (), seed: Seed = 0,
                       batch: int | None = None, iteration: int = 0,
                       engine: str = "cython", n_iter: int | None = None) -> PerturbedGradient:
    """The gradient of one Eq. 5 step at ``w`` and the clean gradient on the same samples.

    Parameters
    ----------
    problem : fastcascade.Problem
    w : array_like (n_weights,)
    perturbations : sequence of fastcascade.Perturbation
    seed : int or numpy.random.SeedSequence
        The step's streams, as for one run of ``fc.run`` (use a new seed per step, for example
        ``SeedSequence([base, t])``).
    batch : None or int
        None: every sample; an int B: B samples drawn with replacement from the data stream.
    iteration : int
        The iteration t, for the perturbations' timing and magnitude.
    engine : {"cython", "numpy"}
    n_iter : int, optional
        The horizon T, needed only by ``HorizonDecay`` magnitudes.

    Returns
    -------
    PerturbedGradient(perturbed, clean)
        Both are batch means and include the regularizer's gradient.

    Examples
    --------
    >>> import numpy as np, fastcascade as fc
    >>> data = fc.datasets.synthetic_logistic(100, 3, seed=0)
    >>> problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), data)
    >>> pert = [fc.Perturbation(op=2, pass_="backward", noise=fc.noise.Gaussian(0.0, 0.1))]
    >>> g = fc.perturbed_gradient(problem, np.zeros(3), pert, seed=1)
    >>> g.perturbed.shape, bool(np.allclose(g.clean, problem.gradient(np.zeros(3))))
    ((3,), True)
    """
    _check_problem(problem)
    w = problem.cascade.check_weights(w)
    plan = Plan(problem, None, perturbations, n_iter=n_iter)  # validates the magnitudes
    perts = plan.perturbations
    iteration = check_positive_int(iteration, "iteration", allow_zero=True)
    engine = check_choice(engine, "engine", ENGINES)
    data_gen, forward_gen, backward_gen, _ = run_streams(_seed_list(seed)[0])
    X, Y = problem.data.X, problem.data.y
    if batch is not None:
        batch = check_positive_int(batch, "batch")
        dims = problem.cascade.dims
        check_memory({"batch": 8 * batch * (6 * sum(dims[1:]) + 2 * max(dims) + dims[0]
                                            + _label_width(problem) + 1)},
                     f"a gradient over {batch} samples", {"batch": batch})
        idx = data_gen.integers(0, problem.n_samples, size=batch)
        X, Y = X[idx], Y[idx]
    if engine == "cython":
        g_pert, g_clean = np.empty_like(w), np.empty_like(w)
        _engine.batch_gradients(plan.op_table, plan.params, X, Y, w, plan.pert_int,
                                plan.pert_real, plan.pert_times, iteration, forward_gen,
                                backward_gen, g_pert, g_clean)
        _callbacks.raise_pending()
    else:
        B = X.shape[0]
        _, _, gsum = reference_engine.perturbed_pass(problem.cascade, w, X, Y, perts, iteration,
                                                     forward_gen, backward_gen, n_iter)
        _, _, csum = reference_engine.perturbed_pass(problem.cascade, w, X, Y)
        g_pert, g_clean = gsum / B, csum / B
    reg_grad = problem.regularizer.gradient(w)
    return PerturbedGradient(g_pert + reg_grad, g_clean + reg_grad)
