"""Tests of ``fc.sweep`` and ``SweepResult`` (and ``Optimizer.replace``, which sweeps use).

What is shown here:

1. ``Optimizer.replace`` rebuilds a validated copy;
2. grid keys are classified (optimizer field, run keyword, perturbation parameter) and bad
   grids raise ValueError naming the key;
3. a sweep point holds exactly what ``fc.run`` computes for its settings, bit for bit, whatever
   the number of threads or the executor (threads, dask.distributed LocalCluster with worker
   processes);
4. with an output folder, a sweep killed half-way (a subprocess, SIGKILL) resumes: finished runs
   are loaded, not recomputed (their files untouched), and the outcome equals an uninterrupted
   sweep; a changed setting is recomputed;
5. the summary table, ``select``, ``to_frame``, the progress switch.
"""
from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastcascade as fc
from fastcascade.sweeper import SweepFolderError
from fastcascade.cli import demo_perturbations

HISTORY = ("objective", "grad_norm", "grad_error", "step_size", "final_weights", "stopped_at")


@pytest.fixture(scope="module")
def problem():
    return fc.problems.paper_logistic(n_samples=300, n_features=5, seed=4)


def forward_noise(sigma_f=0.0, period=1):
    """Module level, so that process pools and dask workers can import it."""
    return [fc.Perturbation(op=1, noise=fc.noise.Uniform(-sigma_f, sigma_f),
                            timing=fc.timing.Every(period))]


def same_arrays(a, b):
    return all(getattr(a, n).tobytes() == getattr(b, n).tobytes() for n in HISTORY)


# ---------------------------------------------------------------------------------------------
# 1. Optimizer.replace


def test_replace_is_a_validated_copy():
    opt = fc.SGD(0.1, batch=8, grad_noise_std=1e-3, momentum=0.5, nesterov=True,
                 schedule=fc.schedules.InverseSqrt(), clip_norm=3.0, sampling="shuffle")
    new = opt.replace(step_size=0.01)
    assert new == fc.SGD(0.01, batch=8, grad_noise_std=1e-3, momentum=0.5, nesterov=True,
                         schedule=fc.schedules.InverseSqrt(), clip_norm=3.0, sampling="shuffle")
    assert opt.step_size == 0.1 and opt.replace() == opt and opt.replace() is not opt
    adam = fc.Adam(1e-3, betas=(0.8, 0.9)).replace(eps=1e-6)
    assert adam.betas == (0.8, 0.9) and adam.eps == 1e-6
    with pytest.raises(ValueError, match="step_size: expected a finite real number > 0"):
        opt.replace(step_size=-1.0)
    with pytest.raises(ValueError, match="nesterov: needs momentum > 0"):
        opt.replace(momentum=0.0)
    with pytest.raises(ValueError, match="SGD: stepsize: not a field of this optimizer; "
                                         "expected one of step_size, batch"):
        opt.replace(stepsize=0.1)
    assert fc.SGD.fields() == ("step_size", "batch", "grad_noise_std", "momentum", "nesterov",
                               "schedule", "clip_norm", "sampling")


# ---------------------------------------------------------------------------------------------
# 2. grids


def test_grid_keys_are_classified(problem):
    from fastcascade.sweeper import classify_grid

    kinds = classify_grid({"step_size": [1], "record_every": [1], "sigma_f": [0.0]},
                          fc.SGD(0.1), forward_noise)
    assert kinds == {"step_size": "optimizer", "record_every": "run",
                     "sigma_f": "perturbations"}


@pytest.mark.parametrize("grid, perts, message", [
    ({"sigma_x": [1.0]}, forward_noise, r"grid: sigma_x: not an optimizer field .* the "
                                        r"perturbations callable takes sigma_f, period"),
    ({"sigma_f": [1.0]}, (), r"grid: sigma_f: not an optimizer field .*make perturbations a "
                             r"callable"),
    ({"seeds": [[0]]}, (), r"grid: seeds: cannot be swept; pass seeds="),
    ({"step_size": 0.1}, (), r"grid: step_size: expected a list of values, given 0.1"),
    ({"step_size": []}, (), r"grid: step_size: expected at least one value"),
    ({"step_size": [0.1, -0.1]}, (), r"grid point \{'step_size': -0.1\}: step_size: "
                                     r"expected a finite real number > 0"),
    ({"sigma_f": [1.0]}, lambda sigma_f: [fc.Perturbation(op=3, noise=fc.noise.Constant(1.0))],
     r"grid point \{'sigma_f': 1.0\}: perturbations\[0\]\.op: expected an operator index in "
     r"1..2, given 3"),
])
def test_bad_grids_name_the_key(problem, grid, perts, message):
    with pytest.raises(ValueError, match=message):
        fc.sweep(problem, fc.SGD(0.1), n_iter=10, grid=grid, perturbations=perts)


def test_bad_arguments(problem):
    with pytest.raises(ValueError, match="n_iter: expected a positive integer"):
        fc.sweep(problem, fc.SGD(0.1), grid={"step_size": [0.1]})
    with pytest.raises(ValueError, match="n_job: expected a keyword of fc.sweep"):
        fc.sweep(problem, fc.SGD(0.1), n_iter=10, n_job=2)
    with pytest.raises(ValueError, match="executor: expected a concurrent.futures.Executor"):
        fc.sweep(problem, fc.SGD(0.1), n_iter=10, executor="dask")


# ---------------------------------------------------------------------------------------------
# 3. the same numbers as fc.run, whatever runs them

GRID = {"step_size": [0.5, 0.1], "sigma_f": [0.0, 1.0], "record_every": [1, 7]}
SEEDS = [3, 0, 11]


def reference_sweep(problem, **kw):
    return fc.sweep(problem, fc.SGD(0.2, grad_noise_std=1e-3), n_iter=120, grid=GRID,
                    seeds=SEEDS, perturbations=forward_noise, **kw)


@pytest.fixture(scope="module")
def serial(problem):
    return reference_sweep(problem, n_jobs=1)


def test_points_are_fc_run_results(problem, serial):
    assert len(serial) == 8 and serial.points[0] == {"step_size": 0.5, "sigma_f": 0.0,
                                                     "record_every": 1}
    assert serial.points[-1] == {"step_size": 0.1, "sigma_f": 1.0, "record_every": 7}
    for point, res in serial.items():
        ref = fc.run(problem, fc.SGD(point["step_size"], grad_noise_std=1e-3), 120,
                     forward_noise(point["sigma_f"]), seeds=SEEDS,
                     record_every=point["record_every"])
        assert same_arrays(res, ref), point
        assert res.seeds == SEEDS and res.grid == point
        assert res.config["optimizer"] == ref.config["optimizer"]


def test_same_bits_for_any_number_of_threads_and_executor(problem, serial):
    assert reference_sweep(problem, n_jobs=2).identical(serial)
    with ThreadPoolExecutor(3) as pool:
        assert reference_sweep(problem, executor=pool).identical(serial)


def _importable_env(monkeypatch):
    """Worker processes import fastcascade (and this test module) from where we do."""
    here = os.path.dirname(os.path.abspath(__file__))
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(fc.__file__)))
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([pkg_parent, here] + ([old] if old else [])))


def test_dask_local_cluster_gives_the_same_bits(problem, serial, monkeypatch):
    distributed = pytest.importorskip("distributed")
    _importable_env(monkeypatch)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        sw = reference_sweep(problem, executor=client.get_executor())
    assert sw.identical(serial)


# ---------------------------------------------------------------------------------------------
# 4. resume after a kill

RESUME_SCRIPT = textwrap.dedent("""
    import sys
    import fastcascade as fc
    from fastcascade.cli import demo_perturbations
    data = fc.datasets.synthetic_logistic(1000, 10, seed=0)
    problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), data,
                         regularizer=fc.reg.NonConvex(rho=1e-3))
    fc.sweep(problem, fc.SGD(0.1, grad_noise_std=1e-3), n_iter=int(sys.argv[2]),
             grid={"step_size": [0.3, 0.1, 0.03], "setting": ["clean", "forward"]},
             perturbations=demo_perturbations, seeds=[0], n_jobs=1, out=sys.argv[1],
             record_every=10, progress=False)
""")


def resume_sweep(out, n_iter):
    data = fc.datasets.synthetic_logistic(1000, 10, seed=0)
    problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), data,
                         regularizer=fc.reg.NonConvex(rho=1e-3))
    return fc.sweep(problem, fc.SGD(0.1, grad_noise_std=1e-3), n_iter=n_iter,
                    grid={"step_size": [0.3, 0.1, 0.03], "setting": ["clean", "forward"]},
                    perturbations=demo_perturbations, seeds=[0], n_jobs=1, out=out,
                    record_every=10, progress=False)


def run_files(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith(".npz") and n.startswith("run-"))


@pytest.mark.parametrize("kill_after", [1, 2, 4], ids=["first", "second", "fourth"])
def test_killed_sweep_resumes_without_recomputing(tmp_path, monkeypatch, kill_after):
    """kill -9 at three moments (after 1, 2 and 4 of 6 runs are written, or later: the kill
    lands while a run is in flight or being written)."""
    _importable_env(monkeypatch)
    out = tmp_path / "sweep"
    n_iter = 3000
    script = tmp_path / "sweep_script.py"
    script.write_text(RESUME_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(n_iter)])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if out.exists() and len(run_files(out)) >= kill_after:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    finished = run_files(out)
    assert kill_after <= len(finished) < 6, f"the subprocess was not stopped half-way: {finished}"
    stamps = {n: os.stat(out / n).st_mtime_ns for n in finished}
    sw = resume_sweep(out, n_iter)
    assert (sw.n_loaded, sw.n_computed) == (len(finished), 6 - len(finished))
    assert {n: os.stat(out / n).st_mtime_ns for n in finished} == stamps  # not rewritten
    assert len(run_files(out)) == 6
    assert not [n for n in os.listdir(out) if ".tmp-" in n]
    # the outcome equals an uninterrupted sweep, and the folder loads as it
    fresh = resume_sweep(None, n_iter)
    assert sw.identical(fresh)
    assert fc.load(out).identical(fresh)
    # everything done: a third call computes nothing
    assert resume_sweep(out, n_iter).n_computed == 0


def test_changed_settings_are_refused_or_replaced(problem, tmp_path):
    out = tmp_path / "sw"
    kw = dict(grid={"sigma_f": [0.0, 1.0]}, seeds=[0], perturbations=forward_noise, out=out)
    a = fc.sweep(problem, fc.SGD(0.2), n_iter=50, **kw)
    assert (a.n_loaded, a.n_computed) == (0, 2)
    assert fc.sweep(problem, fc.SGD(0.2), n_iter=50, **kw).n_loaded == 2
    with pytest.raises(SweepFolderError, match="run.n_iter: 50 in the folder, 60 asked"):
        fc.sweep(problem, fc.SGD(0.2), n_iter=60, **kw)       # another horizon
    assert fc.load(out).identical(a)                         # the folder is untouched
    b = fc.sweep(problem, fc.SGD(0.2), n_iter=60, overwrite=True, **kw)
    assert (b.n_loaded, b.n_computed) == (0, 2)
    with pytest.raises(SweepFolderError, match="optimizer: "):
        fc.sweep(problem, fc.SGD(0.3), n_iter=60, **kw)       # another optimizer
    c = fc.sweep(problem, fc.SGD(0.3), n_iter=60, overwrite=True, **kw)
    assert c.n_loaded == 0
    d = fc.sweep(problem, fc.SGD(0.3), n_iter=60, overwrite=True,     # other perturbations
                 **{**kw, "perturbations": functools.partial(forward_noise, period=2)})
    assert d.n_loaded == 0
    assert fc.load(out).identical(d)
    assert len(run_files(out)) == 2                          # the replaced runs are gone


# ---------------------------------------------------------------------------------------------
# 5. tables, select, progress


def test_summary_table_select_and_frame(serial):
    table = serial.summary_table()
    assert table.shape == (8 * 3,)
    assert table.dtype.names[:4] == ("point", "step_size", "sigma_f", "record_every")
    assert table["step_size"].dtype == np.float64 and table["record_every"].dtype == np.int64
    np.testing.assert_array_equal(table["stable_grad_norm"], serial.stable_grad_norm().ravel())
    assert table["seed"].tolist() == SEEDS * 8
    res = serial.select(step_size=0.1, sigma_f=1.0, record_every=7)
    assert res is serial.results[7]
    with pytest.raises(ValueError, match="missing record_every"):
        serial.select(step_size=0.1, sigma_f=1.0)
    with pytest.raises(ValueError, match="no grid point"):
        serial.select(step_size=0.2, sigma_f=1.0, record_every=7)
    text = serial.summary()
    assert len(text.splitlines()) == 9 and "step_size" in text.splitlines()[0]
    pd = pytest.importorskip("pandas")
    df = serial.to_frame()
    assert isinstance(df, pd.DataFrame) and len(df) == 24
    assert df.groupby("sigma_f")["stable_grad_norm"].count().tolist() == [12, 12]


def test_progress_switch(problem, capsys):
    from fastcascade._progress import progress_bar

    assert progress_bar(10, False, "x") is None
    assert progress_bar(10, None, "x") is None  # stderr is not a terminal under pytest
    bar = progress_bar(10, True, "x")
    assert bar.total == 10 and bar.delay == 2.0  # shown only past a few seconds
    bar.close()
    fc.sweep(problem, fc.SGD(0.1), n_iter=20, seeds=[0, 1], progress=False)
    fc.run(problem, fc.SGD(0.1), 20, seeds=[0, 1], progress=False)
    assert capsys.readouterr().err == ""


class CountingBar:
    made = []

    def __init__(self, total, progress, desc):
        self.total, self.desc, self.count, self.closed = total, desc, 0, False
        CountingBar.made.append(self)

    def update(self, n):
        self.count += n

    def close(self):
        self.closed = True


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_progress_counts_runs_and_sweep_units(problem, monkeypatch, n_jobs):
    CountingBar.made = []
    for module in ("fastcascade.runner", "fastcascade.sweeper"):
        monkeypatch.setattr(sys.modules[module], "progress_bar",
                            lambda total, progress, desc: None if progress is False
                            else CountingBar(total, progress, desc))
    fc.run(problem, fc.SGD(0.1), 20, seeds=[0, 1, 2], n_jobs=n_jobs, progress=True)
    (bar,) = CountingBar.made
    assert (bar.total, bar.count, bar.closed, bar.desc) == (3, 3, True, "runs")
    CountingBar.made = []
    fc.sweep(problem, fc.SGD(0.1), n_iter=20, grid={"step_size": [0.1, 0.2]}, seeds=[0, 1],
             n_jobs=n_jobs, progress=True)
    (bar,) = CountingBar.made  # one bar for the sweep; its runs show none of their own
    assert (bar.total, bar.count, bar.closed, bar.desc) == (4, 4, True, "sweep")


def test_demo_perturbations_pickle_and_describe():
    import pickle

    from fastcascade.sweeper import describe_callable

    fn = functools.partial(demo_perturbations, sigma=1.0)
    assert pickle.loads(pickle.dumps(fn))("forward") == fn("forward")
    assert describe_callable(fn) == ("partial(fastcascade.cli.demo_perturbations, "
                                     "sigma=1.0)")
