"""The ``fastcascade`` command line.

Commands::

    fastcascade demo [--out DIR]           the paper's logistic model at a quick scale: a table
                                           and PNGs of the forward/backward asymmetry
    fastcascade run CONFIG.toml            runs of one configuration (fastcascade.config)
    fastcascade sweep CONFIG.toml          a grid of configurations x seeds, resumable
    fastcascade plot RESULT                a PNG of a saved result or sweep
    fastcascade info                       versions, build flags, threads
    fastcascade reproduce FIG|all          the paper's figures, raw results and a report
    fastcascade bench [--quick] [--json F] speed side by side with the NumPy reference, JAX
                                           and scikit-learn (fastcascade.bench)

An invalid configuration or argument, a file that cannot be read or written, exits with status
2 and one line on stderr, ``fastcascade: error: ...``, that names the key, parameter or path.

Examples
--------
>>> from fastcascade.cli import main
>>> main(["info", "--short"])  # doctest: +ELLIPSIS
fastcascade ...
0
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import numpy as np

import fastcascade as fc
from fastcascade import bench, experiments, plotting
from fastcascade._version import __version__
from fastcascade.config import load_config, run_job, sweep_job
from fastcascade.experiments import EXPERIMENTS
from fastcascade.info import build_info
from fastcascade.sweeper import SweepFolderError

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _use_agg():
    import matplotlib

    matplotlib.use("Agg")


def _progress(args):
    return False if getattr(args, "no_progress", False) else None


# -- demo ---------------------------------------------------------------------------------------
DEMO_SETTINGS = ("clean", "forward", "backward")


def demo_perturbations(setting="clean", sigma=2.0, d=10):
    """The demo's perturbations: none, U(-sigma/sqrt(d), sigma/sqrt(d)) after f_1 (forward,
    delta_1), or the same on the message f_2 sends to f_1 (backward, eps_2).

    Parameters
    ----------
    setting : {"clean", "forward", "backward"}, default "clean"
        Which perturbation (any other value gives none).
    sigma : float, default 2.0
        sigma_f or sigma_b: the uniform's half-width times sqrt(d).
    d : int, default 10
        The data's width.

    Returns
    -------
    list of fastcascade.Perturbation
        Empty, or one perturbation.
    """
    h = sigma / np.sqrt(d)
    if setting == "forward":
        return [fc.Perturbation(op=1, pass_="forward", noise=fc.noise.Uniform(-h, h))]
    if setting == "backward":
        return [fc.Perturbation(op=2, pass_="backward", noise=fc.noise.Uniform(-h, h))]
    return []


def cmd_demo(args):
    """``fastcascade demo``: the paper's headline result at a quick scale.

    A sweep over four step sizes and the three demo settings; prints the stable gradient
    norms and writes two plots into ``--out``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options: ``iters``, ``seeds``, ``sigma``, ``jobs``, ``out`` and
        ``no_progress``.

    Returns
    -------
    int
        The exit status, 0 (an expected error raises; :func:`main` turns it into status 2).
    """
    _use_agg()
    t0 = time.perf_counter()
    data = fc.datasets.synthetic_logistic(n_samples=2000, n_features=10, seed=0)
    problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), data,
                         regularizer=fc.reg.NonConvex(rho=1e-3))
    opt = fc.SGD(step_size=0.1, batch="full", grad_noise_std=1e-3)
    step_sizes = [1.0, 0.3, 0.1, 0.03]
    record_every = 10
    factor = 0.99  # the paper's EWMA factor, per iteration (metrics.record_decay)
    perts = functools.partial(demo_perturbations, sigma=args.sigma, d=data.n_features)
    print(f"fastcascade demo: the paper's logistic model (M = 2000, d = 10, full batch, "
          f"sigma_n = 1e-3), T = {args.iters}, {args.seeds} seeds, sigma_f = sigma_b = "
          f"{args.sigma:g}", flush=True)
    sw = fc.sweep(problem, opt, n_iter=args.iters, perturbations=perts,
                  grid={"step_size": step_sizes, "setting": list(DEMO_SETTINGS)},
                  seeds=range(args.seeds), n_jobs=args.jobs, record_every=record_every,
                  progress=_progress(args))
    stable = sw.stable_grad_norm(factor)
    print()
    print("stable gradient norm (median over seeds; EWMA 0.99 per iteration, mean over the "
          "last half)")
    print(f"{'step size':>10}" + "".join(f"{s:>12}" for s in DEMO_SETTINGS))
    for g in step_sizes:
        row = [np.nanmedian(stable[i]) for i, p in enumerate(sw.points) if p["step_size"] == g]
        print(f"{g:>10g}" + "".join(f"{v:>12.3e}" for v in row))
    first = {s: np.nanmedian(stable[sw.points.index({"step_size": step_sizes[0],
                                                      "setting": s})]) for s in DEMO_SETTINGS}
    last = {s: np.nanmedian(stable[sw.points.index({"step_size": step_sizes[-1],
                                                     "setting": s})]) for s in DEMO_SETTINGS}
    print()
    for s in DEMO_SETTINGS:
        trend = "falls" if last[s] < 0.7 * first[s] else "stays on a plateau"
        print(f"  {s:>8}: from gamma = {step_sizes[0]:g} to {step_sizes[-1]:g} the stable norm "
              f"{trend} ({first[s]:.2e} -> {last[s]:.2e})")
    os.makedirs(args.out, exist_ok=True)
    paths = []
    ax = plotting.stable_norm(sw, x="step_size", curve="setting", factor=factor)
    ax.set_title("Forward noise leaves a plateau, backward noise does not")
    paths.append(plotting.save(ax, os.path.join(args.out, "stable_norm_vs_step_size.png")))
    small = {s: sw.select(step_size=step_sizes[-1], setting=s) for s in DEMO_SETTINGS}
    ax = plotting.convergence(small, smooth=factor)
    ax.set_title(f"Convergence at step size {step_sizes[-1]:g}")
    paths.append(plotting.save(ax, os.path.join(args.out, "convergence.png")))
    print()
    for p in paths:
        print(f"wrote {os.path.abspath(p)}")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


# -- run, sweep ---------------------------------------------------------------------------------
def _load_job(path):
    return load_config(path)


def _check_out_file(out, what):
    """Refuse, before computing, an output file path that is a folder or in no folder."""
    if not out:
        return
    if os.path.isdir(out):
        raise CLIError(f"{what} {out}: is a folder; expected a file path (.npz)")
    parent = os.path.dirname(os.path.abspath(out))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise CLIError(f"{what} {out}: {parent} is not a folder")


def _check_out_folder(out, what):
    """Refuse, before computing, a sweep folder path that is a file."""
    if out and os.path.exists(out) and not os.path.isdir(out):
        raise CLIError(f"{what} {out}: is a file; expected a folder")


def _save(res, out, what):
    try:
        res.save(out)
    except OSError as exc:
        raise CLIError(f"{what} {out}: cannot write ({_os_reason(exc)})") from None


def _os_reason(exc):
    reason = exc.strerror or type(exc).__name__
    name = exc.filename
    return f"{name}: {reason}" if name else reason


def cmd_run(args):
    """``fastcascade run CONFIG``: run a configuration's seeds (its grid ignored), print the
    summary, and save the Result and a plot when asked.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options: ``config``, ``out``, ``plot``, ``jobs``, ``ewma`` (factor per iteration)
        and ``no_progress``.

    Returns
    -------
    int
        The exit status, 0 (an expected error raises; :func:`main` turns it into status 2).
    """
    job = _load_job(args.config)
    out = args.out or job.output.get("run")
    _check_out_file(out, "--out" if args.out else "[output] run")
    t0 = time.perf_counter()
    if job.grid:
        print("note: run ignores the [sweep] grid (fastcascade sweep runs it)")
    res = run_job(job, n_jobs=args.jobs, progress=_progress(args))
    print(res.summary(factor=args.ewma))
    print(f"{res.n_runs} runs of {job.run_kwargs.get('n_iter')} iterations in "
          f"{time.perf_counter() - t0:.1f} s")
    if out:
        _save(res, out, "--out" if args.out else "[output] run")
        print(f"wrote {os.path.abspath(out)}")
    else:
        print("not saved: give --out FILE.npz or [output] run = \"FILE.npz\" to keep the result")
    if res.interrupted:
        print(f"interrupted: kept the {res.n_runs} of {len(job.seeds)} runs that finished",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    _write_plot(res, args.plot or job.output.get("plot"))
    return 0


def _write_plot(results, path):
    """Draw ``results.plot()`` into ``path`` when one is asked for (--plot or [output] plot)."""
    if not path:
        return
    _use_agg()
    print(f"wrote {os.path.abspath(plotting.save(results.plot(), path))}")


def cmd_sweep(args):
    """``fastcascade sweep CONFIG``: run a configuration's grid into a resumable folder and print
    the summary of every point.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options: ``config``, ``out``, ``plot``, ``jobs``, ``ewma`` and ``no_progress``.

    Returns
    -------
    int
        The exit status, 0 (an expected error raises; :func:`main` turns it into status 2).
    """
    job = _load_job(args.config)
    out = args.out or job.output.get("sweep")
    what = "--out" if args.out else "[output] sweep"
    _check_out_folder(out, what)
    t0 = time.perf_counter()
    try:
        sw = sweep_job(job, out=out, n_jobs=args.jobs, progress=_progress(args),
                       overwrite=args.overwrite)
    except OSError as exc:
        raise CLIError(f"{what} {out}: cannot write ({_os_reason(exc)})") from None
    except SweepFolderError as exc:
        raise CLIError(f"{what} {out}: holds the runs of another configuration, which differ "
                       f"in {'; '.join(exc.differences[:3])}; --overwrite replaces them, or "
                       "choose another folder") from None
    if sw.points:
        print(sw.summary(factor=args.ewma))
    n = sw.n_computed + sw.n_loaded
    print(f"{n} runs ({sw.n_computed} computed, {sw.n_loaded} reused from {out}) in "
          f"{time.perf_counter() - t0:.1f} s" if out else
          f"{n} runs in {time.perf_counter() - t0:.1f} s")
    if out and not sw.unsaved:
        print(f"wrote {os.path.abspath(out)}")
    elif not out:
        print("not saved: give --out FOLDER or [output] sweep = \"FOLDER\" to keep the runs")
    if sw.unsaved:
        path, reason = sw.unsaved[0]
        raise CLIError(f"{what} {path}: cannot write ({reason}); {len(sw.unsaved)} of {n} "
                       "runs were not saved (the table above holds them)")
    if sw.interrupted:
        where = f"; they are in {os.path.abspath(out)} and the same command resumes" if out \
            else ""
        print(f"interrupted: {n} runs finished{where}", file=sys.stderr)
        return EXIT_INTERRUPTED
    _write_plot(sw, args.plot or job.output.get("plot"))
    return 0


# -- plot ---------------------------------------------------------------------------------------
PLOT_KINDS = ("auto", "convergence", "stable", "spikes", "profile", "phase")


def cmd_plot(args):
    """``fastcascade plot RESULT``: draw a saved result file or sweep folder into a PNG.

    ``--kind auto`` draws the stable norm against the step size for a sweep with a
    ``step_size`` grid, else the convergence plot.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options: ``result``, ``kind`` (one of ``PLOT_KINDS``), ``x``, ``y``, ``curve``,
        ``run``, ``ewma``, ``out``.

    Returns
    -------
    int
        The exit status, 0 (an expected error raises; :func:`main` turns it into status 2).
    """
    obj = fc.load(args.result)
    _use_agg()
    is_sweep = isinstance(obj, fc.SweepResult)
    kind = args.kind
    if kind == "auto":
        kind = ("stable" if is_sweep and "step_size" in obj.grid else "convergence")
    if kind in ("stable", "phase") and not is_sweep:
        raise CLIError(f"--kind {kind}: needs a sweep folder, given a result file")
    factor = args.ewma
    if kind == "convergence":
        ax = plotting.convergence(obj, smooth=factor)
    elif kind == "stable":
        ax = plotting.stable_norm(obj, x=args.x or "step_size", curve=args.curve,
                                  factor=factor)
    elif kind == "phase":
        if not (args.x and args.y):
            raise CLIError("--kind phase: needs --x KEY and --y KEY (two grid keys)")
        ax = plotting.phase_diagram(obj, x=args.x, y=args.y, factor=factor)
    elif kind == "spikes":
        ax = plotting.spike_trajectories(obj if not is_sweep else obj.results[0], run=args.run)
    else:
        ax = plotting.amplification_profile(obj if not is_sweep else obj.results[0])
    out = args.out
    if out is None:
        base = args.result.rstrip("/\\")
        out = (os.path.join(base, f"{kind}.png") if is_sweep
               else os.path.splitext(base)[0] + f"_{kind}.png")
    plotting.save(ax, out)
    print(f"wrote {os.path.abspath(out)}")
    return 0


# -- info ---------------------------------------------------------------------------------------
def cmd_info(args):
    """``fastcascade info``: the build (compiler flags, SIMD, BLAS), the thread count and
    optional packages' versions; ``--short`` prints the version only.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options: ``short``.

    Returns
    -------
    int
        The exit status, 0 (an expected error raises; :func:`main` turns it into status 2).
    """
    import importlib.metadata

    info = build_info()
    if args.short:
        print(f"fastcascade {info['fastcascade']}")
        return 0
    width = max(len(k) for k in info) + 2
    for k, v in info.items():
        print(f"{k:<{width}}{v}")
    print(f"{'threads':<{width}}n_jobs=-1 uses {os.cpu_count()} (os.cpu_count())")
    for name in ("matplotlib", "tqdm", "pandas", "dask", "distributed", "Cython"):
        try:  # the installed version, without importing the package
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "not installed"
        print(f"{name:<{width}}{version}")
    return 0


def cmd_reproduce(args):
    """``fastcascade reproduce FIG ...``: run the paper's experiments, print each claim's finding
    and write ``report.md`` into ``--out``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options: ``figure`` (names of ``experiments.EXPERIMENTS`` or ``all``), ``scale``,
        ``out``, ``jobs`` (-1: one per core), ``no_progress``.

    Returns
    -------
    int
        The exit status, 0 (an expected error raises; :func:`main` turns it into status 2).
    """
    names = "all" if args.figure == ["all"] else args.figure
    for name in ([] if names == "all" else names):
        if name not in experiments.EXPERIMENTS:
            raise CLIError(f"FIG: expected one of {', '.join(experiments.EXPERIMENTS)} or "
                           f"all, given {name!r}")
    n_jobs = (os.cpu_count() or 1) if args.jobs == -1 else args.jobs
    command = "fastcascade reproduce " + " ".join(args.figure) + f" --scale {args.scale} " \
        f"--out {args.out}"
    findings = experiments.reproduce(names, scale=args.scale, out=args.out, n_jobs=n_jobs,
                                     progress=False if args.no_progress else None,
                                     command=command)
    for name, rows in findings.items():
        for f in rows:
            print(f"{name:7} {f.verdict:13}  {f.claim}")
    print(f"wrote {os.path.abspath(os.path.join(args.out, 'report.md'))}")
    return 0


def cmd_bench(args):
    """``fastcascade bench``: the timings of :mod:`fastcascade.bench`.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options: ``cases``, ``quick``, ``json``.

    Returns
    -------
    int
        The exit status, that of ``fastcascade.bench.main``.
    """
    argv = ["--cases", args.cases] + (["--quick"] if args.quick else []) \
        + (["--json", args.json] if args.json else []) \
        + (["--simd", args.simd] if args.simd else [])
    return bench.main(argv)


# -- parser -------------------------------------------------------------------------------------
def build_parser():
    """The ``fastcascade`` argument parser: one sub-command per ``cmd_*`` function.

    Returns
    -------
    argparse.ArgumentParser
        Each sub-parser sets ``func`` to its command.
    """
    parser = argparse.ArgumentParser(
        prog="fastcascade",
        description="Simulate SGD on operator cascades with perturbed forward/backward passes.")
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("demo", help="the paper's headline result at a quick scale",
                       description="The paper's logistic model under zero-mean forward noise "
                       "and under backward noise of the same size: a table of stable gradient "
                       "norms against the step size, and PNGs (under a minute on 2 cores).")
    p.add_argument("--out", default="fastcascade-demo", help="folder for the PNGs "
                   "(default: ./fastcascade-demo)")
    p.add_argument("--iters", type=_positive, default=10_000, help="iterations per run "
                   "(default: 10000)")
    p.add_argument("--seeds", type=_positive, default=2, help="seeds per setting (default: 2)")
    p.add_argument("--jobs", type=_jobs, default=-1, help="threads (default: one per core)")
    p.add_argument("--sigma", type=float, default=2.0, help="noise level sigma_f = sigma_b "
                   "(default: 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo)

    for name, func, what in (("run", cmd_run, "runs of one configuration, over its seeds"),
                             ("sweep", cmd_sweep, "a grid of configurations times seeds; "
                              "rerun with the same output folder to resume")):
        p = sub.add_parser(name, help=what, description=f"{what[0].upper()}{what[1:]}. The "
                           "TOML schema is in the README and fastcascade/config.py.")
        p.add_argument("config", metavar="CONFIG.toml", help="configuration file")
        p.add_argument("--out", help="output " + ("file (.npz)" if name == "run" else
                                                  "folder") + f" (default: [output] {name})")
        p.add_argument("--jobs", type=_jobs, default=None, help="threads (default: [run] "
                       "n_jobs)")
        p.add_argument("--plot", metavar="PNG", help="also write a plot here")
        p.add_argument("--ewma", type=_unit_interval, default=0.99, help="EWMA factor per "
                       "iteration of the gradient norm in the summary (default: 0.99)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        if name == "sweep":
            p.add_argument("--overwrite", action="store_true", help="replace the runs of "
                           "another configuration in the output folder (refused otherwise)")
        p.set_defaults(func=func)

    p = sub.add_parser("plot", help="a PNG of a saved result or sweep",
                       description="Plot a result file (.npz) or a sweep folder.")
    p.add_argument("result", metavar="RESULT", help="a result file or a sweep folder")
    p.add_argument("--kind", choices=PLOT_KINDS, default="auto",
                   help="auto: stable norm vs step size for a sweep over step_size, else "
                   "convergence")
    p.add_argument("--out", metavar="PNG", help="where to write (default: beside RESULT)")
    p.add_argument("--x", help="grid key on the x axis (stable, phase)")
    p.add_argument("--y", help="grid key on the y axis (phase)")
    p.add_argument("--curve", help="grid key with one curve per value (stable)")
    p.add_argument("--run", type=int, default=0, help="which run (spikes)")
    p.add_argument("--ewma", type=_unit_interval, default=0.99, help="EWMA factor per "
                   "iteration (default: 0.99)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("info", help="versions, build flags, threads",
                       description="Versions, build flags and threads.")
    p.add_argument("--short", action="store_true", help="only the version")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("reproduce", help="the paper's figures, raw results and a report",
                       description="Run the paper's experiments (fastcascade.experiments): "
                       "PNGs, raw results (resumable: rerun with the same --out) and "
                       "report.md, which states each finding next to the measured numbers.")
    p.add_argument("figure", metavar="FIG|all", nargs="+",
                   help=f"one or more of {', '.join(EXPERIMENTS)}, or all")
    p.add_argument("--scale", choices=("quick", "paper"), default="quick",
                   help="quick: minutes on 2 cores; paper: T = 200,000 and full grids")
    p.add_argument("--out", default="fastcascade-figures", help="output folder "
                   "(default: ./fastcascade-figures)")
    p.add_argument("--jobs", type=_jobs, default=-1, help="threads (default: one per core)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("bench", help="speed side by side with the NumPy reference, JAX and "
                       "scikit-learn", description="Time the compiled engine side by side with "
                       "the NumPy reference, scikit-learn and JAX in one process: cases (a) the "
                       "paper's configuration, (b) per-sample SGD, (c) an epoch against "
                       "SGDClassifier, (d) 16 runs on 1 and 2 threads, (e) network widths "
                       "16-512, (f) each SIMD level (not run by default), (g) one run on 2 "
                       "threads beside a busy process, (h) a Python-defined operator's "
                       "callbacks against its built-in twin. Prints a table of ratios.")
    p.add_argument("--quick", action="store_true", help="short runs (a rough check)")
    p.add_argument("--json", metavar="FILE", help="also write the results to FILE")
    p.add_argument("--cases", default="abcdegh", type=_bench_cases,
                   help="which cases to run, letters from 'abcdefgh' (default: abcdegh)")
    p.add_argument("--simd", choices=("avx512", "avx2+fma", "baseline"),
                   help="run at this SIMD level (the best available at or below it)")
    p.set_defaults(func=cmd_bench)
    return parser


def _version():
    return __version__


def _positive(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, given {text!r}") \
            from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, given {text!r}")
    return v


def _unit_interval(text):
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), given {text!r}")
    return v


def _bench_cases(text):
    cases = text.replace(",", "")
    if not cases or set(cases) - set("abcdefgh"):
        raise argparse.ArgumentTypeError(f"expected letters from 'abcdefgh', given {text!r}")
    return cases


def _jobs(text):
    if text.strip() == "-1":
        return -1
    return _positive(text)


def main(argv=None):
    """Entry point of the ``fastcascade`` console script.

    An expected error (an invalid configuration or argument: ``ConfigError``,
    ``fastcascade.ParameterError`` or any other ``ValueError``; a file that cannot be read or
    written: ``OSError``) prints one line, ``fastcascade: error: <key, parameter or path>:
    <what is wrong>``, on stderr, without a traceback, and returns 2.

    Parameters
    ----------
    argv : list of str, optional
        The arguments; default ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status: 0, or 2 for an expected error.
    """
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CLIError, ValueError) as exc:
        return _fail(_first_line(exc))
    except OSError as exc:
        return _fail(_os_reason(exc))
    except KeyboardInterrupt:
        print("fastcascade: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _first_line(exc):
    text = str(exc)
    return text.splitlines()[0] if text.strip() else type(exc).__name__


def _fail(message):
    print(f"fastcascade: error: {message}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
