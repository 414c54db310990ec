"""``fastcascade bench``: the compiled engine side by side with its baselines, in one process.

Each case times the compiled engine and a baseline on the same problem in the same process, in
turn (engine, baseline, engine, baseline, ...), best of several repeats of each (so that load
from other processes, which only ever slows a repeat down, is filtered out as far as it can be,
and a busy spell of the host reaches both sides of the ratio), and reports the ratio
baseline / fastcascade (how many times faster fastcascade is):

  (a) paper      docs/model.md sec. 6's setup: M = 2000, d = 10, full batch, uniform forward
                 and backward noise, gradient noise, true gradient norm recorded every step
                 (paper_r10: recorded every 10 steps). Baseline: the NumPy reference engine;
                 also JAX (jit + lax.scan, float64) when it is installed. paper_floor: this
                 CPU's floor for the step (fastcascade.floor: the step's multiply-adds,
                 exponentials, logarithms and draws at the kernels' measured speeds).
  (b) logreg_b1  per-sample SGD (batch 1), logistic regression with d = 123.
      mlp_b1     per-sample SGD, 3-layer tanh network of width 64, recorded every 1000 steps.
                 Baseline: the NumPy engine. No target (nor for mlp_b1_2t): each record is a
                 full-data pass (M = 2000) that both engines make with the same BLAS
                 (mlp_record, its ratio), about as long as the steps between records, which
                 bounds the ratio.
      mlpW_steps the steps alone (the difference of two run lengths), widths W = 16 .. 128.
      mlp128_floor this CPU's floor for the width-128 step (fastcascade.floor.network_floor:
                 the passes over its weights that the step's dependencies leave, at the
                 kernels' measured speeds) beside the measured step, and the time 50x needs.
  Rows ending in _2t time the same single run with n_jobs=2: its records (the clean pass over
  all the data) are evaluated on a second thread while the steps go on, the results unchanged
  to the bit. The NumPy engine runs on one thread.
  (c) sklearn    noise-free logistic SGD, one epoch over M = 20000 samples (d = 123), against
                 scikit-learn's SGDClassifier(loss="log_loss") doing the same epoch.
  (d) threads    16 runs of the paper configuration with n_jobs=1 and n_jobs=2: the throughput
                 ratio (time with 1 thread / time with 2; reported, no target: two vCPUs of a
                 shared host do not give a reliable one).
  (e) widths     minibatch (32) SGD on a 3-layer tanh network of width 16 .. 512: BLAS kernels
                 against the same engine with BLAS switched off, and the NumPy engine.
  (f) simd       the compiled engine at each SIMD level this CPU has (avx512, avx2+fma,
                 baseline), timed in turn on the rows paper, logreg_b1 and mlp_b1 (one thread):
                 ratio = time at avx2+fma / time at the row's level (not run by default).

Every row names the SIMD level it ran at (the ``simd`` column); ``--simd LEVEL`` runs the
cases at that level (the best one at or below it, see ``_ops.set_simd_level``).
  (g) busy       one paper run with n_jobs=2 against n_jobs=1 while another process keeps a
                 core busy (time with 1 / time with 2; the helper thread must cost nothing).
  (h) callback   the cost of the Python-callback path: ``mlp_problem(16)`` with its two Tanh
                 operators rewritten as a Python-defined operator (fc.ops.Operator with
                 forward / vjp_input, called back with the GIL) against the built-in Tanh, per
                 sample (callback_b1) and with minibatches of 32 (callback_b32); the ratio is
                 Python / built-in, and ``per_call_us`` the extra time per callback call.

BLAS runs on one thread in both engines (fc.run pins it for the compiled one; the bench does the
same for the NumPy engine), so that each engine uses one core per run.

Run ``fastcascade bench [--quick] [--json FILE] [--cases a,b,...] [--simd LEVEL]`` (or
``python benchmarks/bench_engine.py`` with the same options).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings

import numpy as np

import fastcascade as fc
from fastcascade._blas import single_threaded_blas
from fastcascade._kernels import _ops

__all__ = ["main", "run_cases", "CASES"]

MLP_WIDTHS = (16, 32, 64, 128)   # case (b)'s per-sample network rows
_PAPER_TARGET = ("ratio >= 6 and <= 20 us/it", lambda r: r["ratio"] >= 6 and r["fast_us"] <= 20)
_PER_SAMPLE_RATIO = 50
_PER_SAMPLE_TARGET = (f"ratio >= {_PER_SAMPLE_RATIO}", lambda r: r["ratio"] >= _PER_SAMPLE_RATIO)
_JAX_TARGET = ("ratio >= 6", lambda r: r["ratio"] >= 6)
TARGETS = {
    "paper": _PAPER_TARGET,
    "paper_2t": _PAPER_TARGET,
    "paper_jax": _JAX_TARGET,
    "paper_jax_2t": _JAX_TARGET,
    "logreg_b1": _PER_SAMPLE_TARGET,
    **{f"mlp{width}_steps": _PER_SAMPLE_TARGET for width in MLP_WIDTHS},
    "sklearn": ("ratio >= 1", lambda r: r["ratio"] >= 1),
    "busy": ("ratio >= 0.95", lambda r: r["ratio"] >= 0.95),
}


def _best(fn, repeats, min_seconds=0.0):
    """Best wall time of ``repeats`` calls (more while the total is under min_seconds)."""
    best, total, k = np.inf, 0.0, 0
    while k < repeats or total < min_seconds:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, total, k = min(best, dt), total + dt, k + 1
    return best


def _best_each(fns, repeats):
    """Best wall time of each of fns, called in turn (a, b, c, a, b, c, ...): a quiet or a busy
    spell of a shared host then reaches every side of a ratio, not only one."""
    best = [np.inf] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            best[k] = min(best[k], _best(fn, 1))
    return best


def _best_pair(fa, fb, repeats):
    """_best_each of two functions."""
    return tuple(_best_each([fa, fb], repeats))


# ---------------------------------------------------------------------------------------------
# problems


def paper_problem(record_every=1):
    """Case (a)'s setup (docs/model.md sec. 6): the paper's logistic problem, M = 2000, d = 10.

    Uniform(-2/sqrt(10), 2/sqrt(10)) noise on the forward output of f_1 and the backward message
    of f_2, and SGD(0.05) with gradient noise 1e-3.

    Parameters
    ----------
    record_every : int, default 1
        Returned as given, for the caller's runs.

    Returns
    -------
    tuple
        ``(problem, optimizer, perturbations, record_every)``.
    """
    problem = fc.problems.paper_logistic(n_samples=2000, n_features=10, seed=0)
    half = 2.0 / np.sqrt(10)
    perts = [fc.Perturbation(op=1, pass_="forward", noise=fc.noise.Uniform(-half, half)),
             fc.Perturbation(op=2, pass_="backward", noise=fc.noise.Uniform(-half, half))]
    return problem, fc.SGD(0.05, grad_noise_std=1e-3), perts, record_every


def logreg_problem(n_samples=2000, d=123, noise=True, seed=0):
    """Case (b)'s logistic regression: Margin + Softplus with L2(1e-4) on synthetic data.

    X ~ N(0, I/d); labels +1 with probability sigmoid(3 x.w_true), else -1.

    Parameters
    ----------
    n_samples : int, default 2000
        M.
    d : int, default 123
        The input width.
    noise : bool, default True
        Add a forward Gaussian(0, 0.1) perturbation at op 1.
    seed : int, default 0
        Seed of the data's generator.

    Returns
    -------
    tuple
        ``(problem, perturbations)``; ``perturbations`` is [] without noise.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, d)) / np.sqrt(d)
    w_true = rng.standard_normal(d)
    y = np.where(rng.random(n_samples) < 1.0 / (1.0 + np.exp(-3.0 * X @ w_true)), 1.0, -1.0)
    problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), (X, y),
                         regularizer=fc.reg.L2(1e-4))
    perts = [fc.Perturbation(op=1, pass_="forward", noise=fc.noise.Gaussian(0.0, 0.1))] \
        if noise else []
    return problem, perts


def mlp_problem(width=64, n_samples=2000, seed=0):
    """Cases (b) and (e)'s network: three Linear layers with tanh between them and a squared
    error, fitting y = tanh(x_0).

    Parameters
    ----------
    width : int, default 64
        Input and hidden width.
    n_samples : int, default 2000
        M, samples x ~ N(0, I).
    seed : int, default 0
        Seed of the data's generator.

    Returns
    -------
    tuple
        ``(problem, perturbations)``: a forward Gaussian(0, 0.01) perturbation at op 2.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, width))
    y = np.tanh(X[:, :1])
    ops = [fc.ops.Linear(width, width), fc.ops.Tanh(), fc.ops.Linear(width, width),
           fc.ops.Tanh(), fc.ops.Linear(width, 1), fc.ops.SquaredError()]
    problem = fc.Problem(fc.Cascade(ops), (X, y))
    perts = [fc.Perturbation(op=2, pass_="forward", noise=fc.noise.Gaussian(0.0, 0.01))]
    return problem, perts


def _run(problem, opt, n, perts, record_every, engine="cython", seeds=(0,), n_jobs=1,
         init=None):
    # n_jobs=2 with one seed: the run records on a second thread (fc.run)
    # one BLAS thread for the NumPy engine too, as fc.run gives the compiled one: each engine
    # uses one core per run (parallel runs are case (d)); with the default threads the NumPy
    # engine's matmuls oversubscribe a loaded 2-core machine (83 ms/it instead of ~3 at width 128)
    with single_threaded_blas(engine == "numpy"):
        return fc.run(problem, opt, n_iter=n, perturbations=perts, seeds=list(seeds),
                      record_every=record_every, engine=engine, n_jobs=n_jobs, init=init)


def _engines(problem, opt, perts, record_every, n_fast, n_ref, repeats, init=None,
             extra=None):
    """us/it of the compiled engine on one thread, on two (records on the second), and of the
    NumPy engine, timed in turn; extra = (fn, n_iter): one more contender in the same turns,
    its us/it appended."""
    fns = [lambda: _run(problem, opt, n_fast, perts, record_every, init=init),
           lambda: _run(problem, opt, n_fast, perts, record_every, init=init, n_jobs=2),
           lambda: _run(problem, opt, n_ref, perts, record_every, "numpy", init=init)]
    iters = [n_fast, n_fast, n_ref]
    if extra is not None:
        fns.append(extra[0])
        iters.append(extra[1])
    return tuple(t / n * 1e6 for t, n in zip(_best_each(fns, repeats), iters))


def _engine_rows(case, label, one, two, ref):
    return [dict(case=case, label=label, fast_us=one, base_us=ref, ratio=ref / one),
            dict(case=f"{case}_2t", label=label + ", n_jobs=2", fast_us=two, base_us=ref,
                 ratio=ref / two)]


# ---------------------------------------------------------------------------------------------
# JAX twin of the paper configuration (not stream-identical: its own PRNG; same arithmetic)


def _jax_paper(n_iter):
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    data = fc.datasets.synthetic_logistic(2000, 10, seed=0)
    X, y = jnp.asarray(data.X), jnp.asarray(data.y[:, 0])
    M, d = X.shape
    half, rho, lr, sigma = 2.0 / np.sqrt(10), 1e-3, 0.05, 1e-3

    def reg_grad(w):
        return rho * 2.0 * w / (1.0 + w * w) ** 2

    def step(carry, _):
        w, key = carry
        key, k1, k2, k3 = jax.random.split(key, 4)
        a1 = -y * (X @ w)                                       # Margin
        y1 = a1 + jax.random.uniform(k1, (M,), minval=-half, maxval=half)
        v1 = jax.nn.sigmoid(y1)                                 # Softplus VJP at ~y_1, v_2 = 1
        v1 = v1 + jax.random.uniform(k2, (M,), minval=-half, maxval=half)
        g = X.T @ (-y * v1) / M                                 # Margin VJP wrt w
        obj = jnp.mean(jax.nn.softplus(a1)) + rho * jnp.sum(w * w / (1.0 + w * w))
        gc = X.T @ (-y * jax.nn.sigmoid(a1)) / M + reg_grad(w)  # true gradient
        g = g + reg_grad(w) + sigma * jax.random.normal(k3, (d,))
        return (w - lr * g, key), (obj, jnp.linalg.norm(gc))

    @jax.jit
    def run(w0, key):
        return jax.lax.scan(step, (w0, key), None, length=n_iter)

    w0, key = jnp.zeros(d), jax.random.PRNGKey(0)
    jax.block_until_ready(run(w0, key))  # compile
    return lambda: jax.block_until_ready(run(w0, key))


# ---------------------------------------------------------------------------------------------
# cases: each returns a list of result rows


def case_paper(quick):
    """Case (a): the paper configuration recorded every step and every 10 steps, compiled
    engine (n_jobs 1 and 2) against the NumPy engine, and against JAX when installed.

    Parameters
    ----------
    quick : bool
        Short runs and fewer repeats (``--quick``: a rough check).

    Returns
    -------
    list of dict
        One row per timing: ``case``, ``label``, ``fast_us`` and ``base_us`` (microseconds per
        iteration), ``ratio`` = base / fast.
        JAX rows have NaN ratios when JAX is not installed.
    """
    rows = []
    n = 1000 if quick else 5000
    jx = _jax_paper(n)   # timed in the same turns as the recorded-every-step runs
    for name, rec in (("paper", 1), ("paper_r10", 10)):
        problem, opt, perts, _ = paper_problem(rec)
        times = _engines(problem, opt, perts, rec, n, 40 if quick else 200, 3 if quick else 7,
                         extra=(jx, n) if jx is not None and rec == 1 else None)
        rows += _engine_rows(name, "(a) NumPy engine / fastcascade", *times[:3])
        if rec != 1:
            continue
        for row in rows[-2:]:   # paper, paper_2t
            suffix = row["label"][len("(a) NumPy engine / fastcascade"):]
            if len(times) == 4:
                rows.append(dict(case="paper_jax" + row["case"][len("paper"):],
                                 label="(a) JAX jit+scan (float64) / fastcascade" + suffix,
                                 fast_us=row["fast_us"], base_us=times[3],
                                 ratio=times[3] / row["fast_us"]))
            else:   # reported, not dropped: its target is not measured
                rows.append(dict(case="paper_jax" + row["case"][len("paper"):],
                                 label="(a) JAX not installed (pip install jax)" + suffix,
                                 fast_us=row["fast_us"], base_us=np.nan, ratio=np.nan))
    rows.append(_floor_row(next(r for r in rows if r["case"] == "paper"), quick))
    return rows


def _floor_row(paper_row, quick):
    """The paper step's floor on this CPU (fastcascade.floor) beside its measured time; the
    ratio is floor / measured (1: the engine does nothing but the unavoidable work)."""
    from fastcascade import floor

    fl = floor.paper_floor(record_every=1,
                           throughputs=floor.kernel_throughputs(3 if quick else 7))
    parts = ", ".join(f"{k} {v:.1f}" for k, v in fl["parts_us"].items())
    counts = ", ".join(f"{k} {v:.0f}" for k, v in fl["counts"].items())
    return dict(case="paper_floor", label=f"(a) floor / fastcascade: per step {counts} at "
                f"measured kernel speeds = {parts} us", fast_us=paper_row["fast_us"],
                base_us=fl["floor_us"], ratio=fl["floor_us"] / paper_row["fast_us"])


def case_per_sample(quick):
    """Case (b): per-sample SGD (batch 1) on ``logreg_problem`` and on ``mlp_problem(64)``
    recorded every 1000 steps, compiled engine against the NumPy engine; one record's full-data
    pass (``mlp_record``); the steps alone at each of ``MLP_WIDTHS`` (``mlpW_steps``).

    Parameters
    ----------
    quick : bool
        Short runs and fewer repeats (``--quick``: a rough check).

    Returns
    -------
    list of dict
        One row per timing: ``case``, ``label``, ``fast_us`` and ``base_us`` (microseconds per
        iteration), ``ratio`` = base / fast.
    """
    rows = []
    problem, perts = logreg_problem()
    rows += _engine_rows("logreg_b1", "(b) NumPy engine / fastcascade, d=123",
                         *_engines(problem, fc.SGD(0.01, batch=1), perts, 1000,
                                   20000 if quick else 200000, 400 if quick else 2000,
                                   3 if quick else 7))
    problem, perts = mlp_problem(64)
    rows += _engine_rows("mlp_b1", "(b) NumPy engine / fastcascade, tanh MLP width 64, "
                         "records every 1000",
                         *_engines(problem, fc.SGD(0.01, batch=1), perts, 1000,
                                   5000 if quick else 50000, 200 if quick else 1000,
                                   3 if quick else 7))
    rows.append(_record_row(problem, 3 if quick else 7))
    for width in MLP_WIDTHS:
        problem, perts = mlp_problem(width)
        fast, ref = _per_step(problem, fc.SGD(0.01, batch=1), perts, quick)
        rows.append(dict(case=f"mlp{width}_steps", label="(b) NumPy engine / fastcascade, the "
                         f"steps alone, tanh MLP width {width}", fast_us=fast, base_us=ref,
                         ratio=ref / fast))
    rows.append(_network_floor_row(rows[-1], MLP_WIDTHS[-1], quick))
    return rows


def _network_floor_row(steps_row, width, quick):
    """The per-sample network step's floor on this CPU (fastcascade.floor.network_floor: the
    passes over its weights that the step's dependencies leave) beside its measured time;
    ratio = floor / measured. The label gives what the target would need."""
    from fastcascade import floor

    fl = floor.network_floor(width, floor.weight_pass_times(width, 3 if quick else 7))
    t = fl["pass_us"]
    need = steps_row["base_us"] / _PER_SAMPLE_RATIO
    return dict(case=f"mlp{width}_floor", label=f"(b) floor / fastcascade, width {width}: per "
                f"step 2 read-write passes ({t['read_write']:.2f} us) and 1 read pass "
                f"({t['read']:.2f} us) over a {width} x {width} weight matrix; "
                f"{_PER_SAMPLE_RATIO:g}x needs {need:.2f} us",
                fast_us=steps_row["fast_us"], base_us=fl["floor_us"],
                ratio=fl["floor_us"] / steps_row["fast_us"])


def _per_step(problem, opt, perts, quick):
    """us per step of each engine without a run's fixed costs (set-up, the record at t = 0):
    (t(n2) - t(n1)) / (n2 - n1) for two run lengths of each, all four timed in turn."""
    n_fast, n_ref = (5000, 250) if quick else (50000, 1000)
    never = 10 ** 9   # record_every: only the record at t = 0, in both runs of an engine
    fns = [lambda: _run(problem, opt, n_fast // 5, perts, never),
           lambda: _run(problem, opt, n_fast, perts, never),
           lambda: _run(problem, opt, n_ref // 5, perts, never, "numpy"),
           lambda: _run(problem, opt, n_ref, perts, never, "numpy")]
    t = _best_each(fns, 2 if quick else 3)
    return ((t[1] - t[0]) / (0.8 * n_fast) * 1e6, (t[3] - t[2]) / (0.8 * n_ref) * 1e6)


def _record_row(problem, repeats):
    """One record's full-data pass (the clean objective and gradient over all M samples,
    Linear layers through BLAS dgemm in both engines): the compiled kernel against the NumPy
    engine's, in us per record."""
    from fastcascade._kernels import _engine
    from fastcascade.reference_engine import perturbed_pass
    plan = fc.Plan(problem, fc.SGD(0.01, batch=1))
    X, Y = problem.data.X, problem.data.y
    w = problem.init_weights(seed=0)
    grad = np.empty_like(w)
    reg = problem.regularizer
    with single_threaded_blas():
        fast, ref = _best_pair(
            lambda: _engine.clean_objective_gradient(plan.op_table, plan.params, X, Y, w,
                                                     reg.kernel_code, reg.kernel_scale, grad),
            lambda: perturbed_pass(problem.cascade, w, X, Y), repeats)
    return dict(case="mlp_record", label=f"(b) one record's full-data pass, M = {X.shape[0]}, "
                "tanh MLP width 64 (NumPy engine / fastcascade, us per record)",
                fast_us=fast * 1e6, base_us=ref * 1e6, ratio=ref / fast)


def sklearn_problem(n_samples=20000, alpha=1e-4):
    """The logistic problem of case (c) with scikit-learn's objective for
    ``SGDClassifier(loss="log_loss", penalty="l2", alpha=alpha, fit_intercept=False)``:
    mean(log(1 + exp(-y x.w))) + alpha/2 ||w||^2. ``fc.reg.L2(rho)`` is rho/2 ||w||^2, so
    rho = alpha (the same epoch: per-sample steps over a fresh permutation, constant step, no
    intercept, no averaging).

    Parameters
    ----------
    n_samples : int, default 20000
        M (data of ``logreg_problem`` with seed 1, d = 123, no perturbation).
    alpha : float, default 1e-4
        scikit-learn's alpha, used as the L2 rho.

    Returns
    -------
    fastcascade.Problem
    """
    problem, _ = logreg_problem(n_samples=n_samples, noise=False, seed=1)
    X, y = problem.data.X, problem.data.y[:, 0]
    return fc.Problem(problem.cascade, (X, y), regularizer=fc.reg.L2(alpha))


def case_sklearn(quick):
    """Case (c): one shuffled per-sample epoch of fastcascade against one of
    scikit-learn's SGDClassifier(log_loss) on ``sklearn_problem``.

    Parameters
    ----------
    quick : bool
        Short runs and fewer repeats (``--quick``: a rough check).

    Returns
    -------
    list of dict
        One row per timing: ``case``, ``label``, ``fast_us`` and ``base_us`` (microseconds per
        iteration), ``ratio`` = base / fast.
        A single NaN row when scikit-learn is not installed.
    """
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import SGDClassifier
    except ImportError:
        return [dict(case="sklearn", label="(c) scikit-learn not installed", fast_us=np.nan,
                     base_us=np.nan, ratio=np.nan)]
    M = 20000
    lr, alpha = 0.01, 1e-4
    problem = sklearn_problem(M, alpha)
    X, y = problem.data.X, problem.data.y[:, 0]
    opt = fc.SGD(lr, batch=1, sampling="shuffle")

    def ours():
        fc.run(problem, opt, n_iter=M, seeds=[0], record_every=M)

    def theirs():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            SGDClassifier(loss="log_loss", penalty="l2", alpha=alpha, learning_rate="constant",
                          eta0=lr, max_iter=1, tol=None, fit_intercept=False, shuffle=True,
                          random_state=0).fit(X, y)

    reps = 5 if quick else 15
    fast, base = _best_pair(ours, theirs, reps)
    fast, base = fast / M * 1e6, base / M * 1e6
    return [dict(case="sklearn", label="(c) SGDClassifier(log_loss) epoch / fastcascade epoch",
                 fast_us=fast, base_us=base, ratio=base / fast)]


def case_threads(quick):
    """Throughput of 2 threads against 1. The host's speed drifts by up to 1.5x from one second
    to the next (a shared VM), so each n_jobs=1 call is paired with the n_jobs=2 call right
    after it, and the ratio is the median of the pairs' ratios; the ratio of the two best times
    is reported too (it pairs times from different moments).

    Parameters
    ----------
    quick : bool
        Short runs and fewer repeats (``--quick``: a rough check).

    Returns
    -------
    list of dict
        One row: ``case`` "threads", ``fast_us``/``base_us`` per run-iteration with 2 and 1
        threads, ``ratio`` (median of the pairs), ``best_ratio``.
    """
    problem, opt, perts, _ = paper_problem(10)
    n = 200 if quick else 1000
    seeds = range(16)
    pairs = [(_best(lambda: _run(problem, opt, n, perts, 10, seeds=seeds, n_jobs=1), 1),
              _best(lambda: _run(problem, opt, n, perts, 10, seeds=seeds, n_jobs=2), 1))
             for _ in range(5 if quick else 15)]
    t1, t2 = min(p[0] for p in pairs), min(p[1] for p in pairs)
    per_run = 16 * n
    return [dict(case="threads", label=f"(d) 16 runs: n_jobs=1 time / n_jobs=2 time, median of "
                 f"adjacent pairs (best / best: {t1 / t2:.2f})", fast_us=t2 / per_run * 1e6,
                 base_us=t1 / per_run * 1e6, ratio=float(np.median([a / b for a, b in pairs])),
                 best_ratio=t1 / t2)]


def _spin(stop):
    """A busy process (the other core's load in case_busy)."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def case_busy(quick):
    """One run of the paper configuration with n_jobs=2 (records on a helper thread) against
    n_jobs=1, while another process keeps a core busy: the helper must never make the run
    slower (it falls back to recording inline when it cannot keep up). Paired calls, as in
    case_threads; ratio = n_jobs=1 time / n_jobs=2 time (1: as fast).

    Parameters
    ----------
    quick : bool
        5000 iterations and 5 pairs instead of 20000 and 11.

    Returns
    -------
    list of dict
        One row, ``busy``, with ``best_ratio`` (best time against best time) beside the median.
    """
    import multiprocessing

    problem, opt, perts, every = paper_problem(1)
    n = 5000 if quick else 20000
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that has threads
    stop = ctx.Event()
    busy = ctx.Process(target=_spin, args=(stop,), daemon=True)
    busy.start()
    try:
        time.sleep(0.5)  # the busy process is running
        pairs = [(_best(lambda: _run(problem, opt, n, perts, every, n_jobs=1), 1),
                  _best(lambda: _run(problem, opt, n, perts, every, n_jobs=2), 1))
                 for _ in range(5 if quick else 11)]
    finally:
        stop.set()
        busy.join(5)
    t1, t2 = min(p[0] for p in pairs), min(p[1] for p in pairs)
    return [dict(case="busy", label="(g) one run, a busy process on a core: n_jobs=1 time / "
                 f"n_jobs=2 time, median of adjacent pairs (best / best: {t1 / t2:.2f})",
                 fast_us=t2 / n * 1e6, base_us=t1 / n * 1e6,
                 ratio=float(np.median([a / b for a, b in pairs])), best_ratio=t1 / t2)]


def case_widths(quick):
    """Case (e): minibatch (32) SGD on ``mlp_problem`` of widths 16 .. 512: the compiled
    engine with BLAS kernels, without them, and the NumPy engine.

    Parameters
    ----------
    quick : bool
        Short runs and fewer repeats (``--quick``: a rough check).

    Returns
    -------
    list of dict
        One row per timing: ``case``, ``label``, ``fast_us`` and ``base_us`` (microseconds per
        iteration), ``ratio`` = base / fast.
        Each row also has ``loops_us`` (no BLAS) and ``blas_speedup``.
    """
    rows = []
    widths = (16, 64, 256) if quick else (16, 32, 64, 128, 256, 512)
    for width in widths:
        problem, perts = mlp_problem(width, n_samples=256)
        opt = fc.SGD(0.001, batch=32)
        scale = max(1, (width // 16) ** 2)
        n_fast, n_ref = max(50, 20000 // scale), max(20, 2000 // scale)
        if quick:
            n_fast, n_ref = max(20, n_fast // 5), max(10, n_ref // 5)
        reps = 3 if quick else 5
        init = "random"
        fast = _best(lambda: _run(problem, opt, n_fast, perts, n_fast, init=init), reps) / n_fast
        old = _ops.set_blas_threshold(2 ** 62)
        try:
            loops = _best(lambda: _run(problem, opt, n_fast, perts, n_fast, init=init),
                          reps) / n_fast
        finally:
            _ops.set_blas_threshold(old)
        ref = _best(lambda: _run(problem, opt, n_ref, perts, n_ref, "numpy", init=init),
                    max(2, reps // 2)) / n_ref
        rows.append(dict(case=f"width_{width}", label="(e) NumPy engine / fastcascade, batch 32",
                         fast_us=fast * 1e6, base_us=ref * 1e6, ratio=ref / fast,
                         loops_us=loops * 1e6, blas_speedup=loops / fast))
    return rows


def case_simd_levels(quick):
    """The engine on one thread at each SIMD level, the levels timed in turn (a, b, c, a, ...):
    rows <case>@<level>, ratio = us/it at avx2+fma / us/it at the level.

    Parameters
    ----------
    quick : bool
        Short runs and fewer repeats.

    Returns
    -------
    list of dict
        One row per (case, level) this CPU has, with its ``simd`` level.
    """
    import fastcascade as fc
    from fastcascade._kernels import _ops
    start = _ops.simd_level()
    levels = [lv for lv in ("avx512", "avx2+fma", "baseline") if _ops.set_simd_level(lv) == lv]
    problem, opt, perts, _ = paper_problem(1)
    lr, lr_perts = logreg_problem()
    mlp, mlp_perts = mlp_problem(64)
    cases = [("paper", problem, opt, perts, 1, 1000 if quick else 5000),
             ("logreg_b1", lr, fc.SGD(0.01, batch=1), lr_perts, 1000, 20000 if quick else 200000),
             ("mlp_b1", mlp, fc.SGD(0.01, batch=1), mlp_perts, 1000, 5000 if quick else 50000)]
    rows = []
    try:
        for name, prob, o, pe, rec, n in cases:
            def at(level, prob=prob, o=o, pe=pe, rec=rec, n=n):
                def fn():
                    _ops.set_simd_level(level)
                    _run(prob, o, n, pe, rec)
                return fn
            times = _best_each([at(lv) for lv in levels], 3 if quick else 7)
            us = {lv: t / n * 1e6 for lv, t in zip(levels, times)}
            ref = us.get("avx2+fma", us[levels[0]])
            rows += [dict(case=f"{name}@{lv}", label="(f) us/it at avx2+fma / at this level",
                          fast_us=us[lv], base_us=ref, ratio=ref / us[lv], simd=lv)
                     for lv in levels]
    finally:
        _ops.set_simd_level(start)
    return rows


def python_tanh():
    """A Python-defined tanh (fc.ops.Operator with forward and vjp_input), for case (g).

    Returns
    -------
    fastcascade.ops.Operator
        An unbound elementwise operator, the built-in ``Tanh`` in NumPy.
    """
    import fastcascade as fc

    class PyTanh(fc.ops.Operator):
        elementwise = True

        def forward(self, w, x):
            return np.tanh(x)

        def vjp_input(self, w, x, y, v):
            return v * (1.0 - y * y)

        def __repr__(self):
            return "PyTanh()"

    return PyTanh()


def case_callback(quick):
    """Case (h): the Python-callback path's cost, a Python-defined Tanh against the built-in.

    Parameters
    ----------
    quick : bool
        Short runs and fewer repeats (``--quick``: a rough check).

    Returns
    -------
    list of dict
        One row per batch size: ``fast_us`` (built-in) and ``base_us`` (Python-defined)
        microseconds per iteration, ``ratio`` = base / fast, ``calls_per_it`` (callbacks per
        iteration) and ``per_call_us`` = (base - fast) / calls_per_it.
    """
    import fastcascade as fc
    from fastcascade._kernels import _ops
    rows = []
    width = 16
    built, perts = mlp_problem(width, n_samples=256)
    ops = [python_tanh() if op.kind == "tanh" else op for op in built.cascade.operators]
    mine = fc.Problem(fc.Cascade(ops), (built.data.X, built.data.y))
    for batch in (1, 32):
        opt = fc.SGD(0.001, batch=batch)
        n = (2000 if quick else 20000) // (1 if batch == 1 else 4)
        reps = 3 if quick else 5
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fc.PerformanceWarning)
            _ops.callback_stats(reset=True)
            _run(mine, opt, n, perts, n, init="random")
            calls = sum(c for c, _ in _ops.callback_stats(reset=True).values()) / n
            fast, slow = _best_pair(lambda: _run(built, opt, n, perts, n, init="random"),
                                    lambda: _run(mine, opt, n, perts, n, init="random"), reps)
        fast_us, slow_us = fast / n * 1e6, slow / n * 1e6
        rows.append(dict(case=f"callback_b{batch}",
                         label=f"(h) Python-defined / built-in Tanh, width {width}, "
                               f"batch {batch}",
                         fast_us=fast_us, base_us=slow_us, ratio=slow_us / fast_us,
                         calls_per_it=calls, per_call_us=(slow_us - fast_us) / calls))
    return rows


CASES = {"a": case_paper, "b": case_per_sample, "c": case_sklearn, "d": case_threads,
         "e": case_widths, "f": case_simd_levels, "g": case_busy, "h": case_callback}
DEFAULT_CASES = "abcdegh"  # f (each SIMD level) on demand


def run_cases(cases=DEFAULT_CASES, quick=False, echo=print):
    """Run the cases (letters of ``CASES``) and check each row against its target.

    Parameters
    ----------
    cases : str, default "abcdegh"
        Letters of ``CASES``, in the order run.
    quick : bool, default False
        Short runs (``--quick``).
    echo : callable or None, default print
        Called with each formatted row as it is measured; None prints nothing.

    Returns
    -------
    list of dict
        The rows of the cases, each with ``target`` (text, "" for none), ``met`` (True,
        False, or None when there is no target or the ratio is NaN) and the SIMD level it ran
        at (``simd``).
    """
    from fastcascade._kernels import _ops
    rows = []
    for c in cases:
        for r in CASES[c](quick):
            r.setdefault("simd", _ops.simd_level())
            target = TARGETS.get(r["case"])
            r["target"] = target[0] if target else ""
            r["met"] = bool(target[1](r)) if target and np.isfinite(r["ratio"]) else None
            rows.append(r)
            if echo:
                echo(_format_row(r))
    return rows


def _format_row(r):
    met = {True: "yes", False: "NO", None: "n/a" if r["target"] else ""}[r["met"]]
    extra = ""
    if "loops_us" in r:
        extra = f"  (no BLAS {r['loops_us']:.1f} us/it: BLAS x{r['blas_speedup']:.2f})"
    if "per_call_us" in r:
        extra = (f"  ({r['calls_per_it']:.0f} callbacks/it, {r['per_call_us']:.2f} us more "
                 "per call)")
    return (f"{r['case']:<19}{r['fast_us']:>12.2f}{r['base_us']:>12.2f}{r['ratio']:>9.2f}"
            f"  {r.get('simd', ''):<9}{r['target']:<28}{met:<4} {r['label']}{extra}")


def machine_info():
    """What the timings were measured on: build, SIMD level, CPU, load, library versions.

    Returns
    -------
    dict
        ``fc.build_info()`` plus ``simd``, ``machine``, ``processor``, ``cpu_count``,
        ``loadavg_at_start`` (when the OS gives it) and the versions of scipy, sklearn, jax and
        threadpoolctl (None when not installed).
    """
    info = dict(fc.build_info())
    info.update(simd=_ops.simd_level(), machine=platform.machine(),
                processor=platform.processor(), cpu_count=os.cpu_count())
    try:
        info["loadavg_at_start"] = os.getloadavg()
    except OSError:
        pass
    for mod in ("scipy", "sklearn", "jax", "threadpoolctl"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            info[mod] = None
    return info


def main(argv=None):
    """Entry point of ``fastcascade bench``.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (``--quick``, ``--json FILE``, ``--cases a,b,...``); default
        ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status, 0 (bad options exit with status 2 through argparse).
    """
    parser = argparse.ArgumentParser(
        prog="fastcascade bench",
        description="Time the compiled engine side by side with the NumPy reference, "
                    "scikit-learn and JAX (cases a-h, see fastcascade.bench).")
    parser.add_argument("--quick", action="store_true", help="short runs (a rough check)")
    parser.add_argument("--json", metavar="FILE", help="also write the results to FILE")
    parser.add_argument("--cases", default=DEFAULT_CASES,
                        help="which cases to run, letters from 'abcdefgh' (default: abcdegh)")
    parser.add_argument("--simd", choices=("avx512", "avx2+fma", "baseline"),
                        help="run at this SIMD level (the best available at or below it)")
    args = parser.parse_args(argv)
    cases = args.cases.replace(",", "")
    bad = sorted(set(cases) - set(CASES))
    if bad or not cases:
        parser.error(f"--cases: expected letters from 'abcdefgh', given {args.cases!r}")
    if args.simd:
        from fastcascade._kernels import _ops
        _ops.set_simd_level(args.simd)
    info = machine_info()
    print(f"fastcascade {info['fastcascade']}  simd={info['simd']}  native={info['native']}  "
          f"debug={info['debug']}  cpus={info['cpu_count']}  "
          f"load={info.get('loadavg_at_start', ('?',))[0]}")
    print(f"{'case':<19}{'fast us/it':>12}{'base us/it':>12}{'ratio':>9}  {'simd':<9}"
          f"{'target':<28}met")
    t0 = time.perf_counter()
    rows = run_cases(cases, args.quick)
    print(f"({time.perf_counter() - t0:.0f} s; ratio = baseline time / fastcascade time)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "quick": args.quick, "results": rows}, f, indent=2,
                      default=float)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
