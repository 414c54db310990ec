"""Ctrl-C (issue 14, item 4): a run that holds no GIL stops within a step of SIGINT.

On 57e0980 the nogil loop never looked at signals: ``fc.run`` exited 15-16 s after SIGINT (with
n_jobs 1 or 2, or the record thread), ``fastcascade run`` 11.5 s, and finished runs were thrown
away. The latency bound below (0.5 s, for a run that would last 20 s or more) is what the issue
asks; the measured latency is about 30-60 ms on the 2-core development machine, so the bound
has a margin of 8x for a loaded machine or the sanitizer build.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastcascade as fc
from fastcascade import runner, sweeper

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

LONG_RUN = textwrap.dedent("""
    import sys, time
    import fastcascade as fc
    n_jobs, n_seeds = int(sys.argv[1]), int(sys.argv[2])
    problem = fc.problems.paper_logistic(n_samples=2000, n_features=10, seed=0)
    print("ready", flush=True)
    try:   # 3e6 steps: a minute or more on one core
        fc.run(problem, fc.SGD(0.1), n_iter=3_000_000, record_every=1000,
               seeds=range(n_seeds), n_jobs=n_jobs)
        print("finished", flush=True)
    except KeyboardInterrupt:
        print("interrupted", time.time(), flush=True)
""")


@pytest.fixture(autouse=True)
def python_sigint_handler():
    """Python's own SIGINT handler for the test: a process started in the background by a
    shell ignores SIGINT, and then Python (and fastcascade) leave it ignored."""
    old = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def _default_sigint():
    """In the child, before it execs: SIGINT back to its default (see python_sigint_handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _env():
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fc.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.parametrize("n_jobs, n_seeds", [(1, 1), (2, 1), (2, 2)],
                         ids=["one-thread", "record-thread", "two-runs"])
def test_sigint_stops_a_long_run_within_half_a_second(tmp_path, n_jobs, n_seeds):
    script = tmp_path / "long_run.py"
    script.write_text(LONG_RUN)
    proc = subprocess.Popen([sys.executable, str(script), str(n_jobs), str(n_seeds)],
                            stdout=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path,
                            preexec_fn=_default_sigint)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.0)  # well inside the engine's loop
        sent = time.time()
        proc.send_signal(signal.SIGINT)
        line = proc.stdout.readline().split()
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert line[0] == "interrupted", line
    assert float(line[1]) - sent < 0.5


class _InterruptAfterFirst:
    """A progress bar that sends SIGINT to this process when the first unit finishes."""

    def __init__(self, total, progress, desc):
        self.count = 0

    def update(self, n):
        self.count += n
        if self.count == 1:
            os.kill(os.getpid(), signal.SIGINT)

    def close(self):
        pass


@pytest.fixture()
def problem():
    return fc.problems.paper_logistic(n_samples=300, n_features=5, seed=1)


def test_partial_returns_the_runs_that_finished(problem, monkeypatch):
    monkeypatch.setattr(runner, "progress_bar", _InterruptAfterFirst)
    with pytest.warns(RuntimeWarning, match="returning the 1 of 3 runs"):
        res = fc.run(problem, fc.SGD(0.1), 500, seeds=[0, 1, 2], partial=True, progress=True)
    assert res.n_runs == 1 and res.seeds == [0]
    monkeypatch.undo()
    np.testing.assert_array_equal(res.objective, fc.run(problem, fc.SGD(0.1), 500).objective)


def test_without_partial_the_interrupt_is_raised(problem, monkeypatch):
    monkeypatch.setattr(runner, "progress_bar", _InterruptAfterFirst)
    with pytest.raises(KeyboardInterrupt):
        fc.run(problem, fc.SGD(0.1), 500, seeds=[0, 1, 2], progress=True)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_an_interrupted_sweep_keeps_what_finished_and_resumes(problem, tmp_path, monkeypatch,
                                                              n_jobs):
    out = tmp_path / "sw"
    kw = dict(n_iter=400, grid={"step_size": [0.3, 0.1, 0.03, 0.01]}, seeds=[0], out=out)
    monkeypatch.setattr(sweeper, "progress_bar", _InterruptAfterFirst)
    with pytest.warns(RuntimeWarning, match="interrupted"):
        sw = fc.sweep(problem, fc.SGD(0.1), n_jobs=n_jobs, progress=True, **kw)
    assert sw.interrupted and 1 <= len(sw) < 4
    monkeypatch.undo()
    resumed = fc.sweep(problem, fc.SGD(0.1), **kw)
    assert resumed.n_loaded >= 1 and resumed.n_loaded + resumed.n_computed == 4
    assert resumed.identical(fc.sweep(problem, fc.SGD(0.1), **{**kw, "out": None}))


CONFIG = textwrap.dedent("""
    [problem]
    data = {kind = "synthetic_logistic", n_samples = 2000, n_features = 10, seed = 0}
    cascade = ["Margin", "Softplus"]

    [optimizer]
    step_size = 0.1

    [run]
    n_iter = 3000000
    record_every = 1000
    seeds = [0, 1]
    n_jobs = 1

    [sweep]
    grid = {step_size = [0.1, 0.05]}
""")


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_the_cli_exits_130_on_sigint(tmp_path, command):
    config = tmp_path / "long.toml"
    config.write_text(CONFIG)
    args = [sys.executable, "-m", "fastcascade.cli", command, str(config), "--no-progress"]
    if command == "sweep":
        args += ["--out", str(tmp_path / "sw")]
    # cwd: not the checkout, whose unbuilt sources would shadow the installed package
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env(), cwd=tmp_path, preexec_fn=_default_sigint)
    try:
        time.sleep(2.0)  # the import and the first steps
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert elapsed < 5.0  # the process ends, not only the run (57e0980: 11.5 s)
