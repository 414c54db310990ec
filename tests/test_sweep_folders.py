"""Sweep folders and run keys (issue 14, items 1, 2 and 6): nothing wrong reused, nothing of
another sweep overwritten, every grid point checked before any run is written, and a failed
write loses nothing.

Each test reproduces a defect measured on 57e0980 (there: the stale callable was reused, the
other sweep's files were overwritten, p0000 was written before the bad point raised, a full disk
lost the computed runs).
"""
import errno
import json
import os

import numpy as np
import pytest

import fastcascade as fc
from fastcascade import io, sweeper
from fastcascade.sweeper import SweepFolderError

GRID = {"step_size": [0.3, 0.1, 0.03], "sigma_f": [0.0, 1.0]}


@pytest.fixture(scope="module")
def problem():
    return fc.problems.paper_logistic(n_samples=200, n_features=5, seed=4)


def forward_noise(sigma_f=0.0):
    return [fc.Perturbation(op=1, noise=fc.noise.Uniform(-sigma_f, sigma_f))]


def run_files(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith(".npz"))


def stamps(folder):
    return {n: os.stat(os.path.join(folder, n)).st_mtime_ns for n in run_files(folder)}


def constant_init(value):
    """Closures with one qualified name: their keys must still differ."""
    def init(seed):
        return np.full(5, value)
    return init


# -- 1. run keys --------------------------------------------------------------------------------
def test_a_callable_init_is_keyed_by_what_it_returns(problem, tmp_path):
    out = tmp_path / "stale"
    kw = dict(n_iter=30, seeds=[0, 1], out=out, grid={"step_size": [0.1, 0.2]})
    a = fc.sweep(problem, fc.SGD(0.1), init=lambda s: np.zeros(5), **kw)
    b = fc.sweep(problem, fc.SGD(0.1), init=lambda s: np.full(5, 3.0), **kw)
    assert (b.n_loaded, b.n_computed) == (0, 4)  # 57e0980: "loaded 4, computed 0"
    fresh = fc.run(problem, fc.SGD(0.1), 30, seeds=[0, 1], init=lambda s: np.full(5, 3.0))
    np.testing.assert_array_equal(b.results[0].objective, fresh.objective)
    assert not np.allclose(a.results[0].objective, b.results[0].objective)
    c = fc.sweep(problem, fc.SGD(0.1), init=constant_init(3.0), **kw)  # same values: reused
    assert (c.n_loaded, c.n_computed) == (4, 0)
    d = fc.sweep(problem, fc.SGD(0.1), init=constant_init(2.0), **kw)
    assert (d.n_loaded, d.n_computed) == (0, 4)


def test_the_build_binds_the_folder(problem, tmp_path, monkeypatch):
    out = tmp_path / "build"
    fc.sweep(problem, fc.SGD(0.1), n_iter=20, seeds=[0], out=out)
    other = dict(sweeper.build_key(), debug=not sweeper.build_key()["debug"])
    monkeypatch.setattr(sweeper, "build_key", lambda: other)
    with pytest.raises(SweepFolderError, match="build.debug"):
        fc.sweep(problem, fc.SGD(0.1), n_iter=20, seeds=[0], out=out)


# -- 2. folders bound to their configuration ----------------------------------------------------
@pytest.fixture()
def folder(problem, tmp_path):
    out = tmp_path / "sw"
    sw = fc.sweep(problem, fc.SGD(0.1), n_iter=40, grid=GRID, seeds=[0],
                  perturbations=forward_noise, out=out)
    return out, sw


def test_another_grid_is_refused_and_the_folder_untouched(problem, folder):
    out, sw = folder
    before = stamps(out)
    with pytest.raises(SweepFolderError, match="grid_keys") as info:
        fc.sweep(problem, fc.SGD(0.1), n_iter=40, grid={"momentum": [0.5]}, seeds=[0],
                 perturbations=forward_noise, out=out)
    assert info.value.param == "out" and isinstance(info.value, ValueError)
    assert stamps(out) == before
    assert fc.load(out).identical(sw)


def test_a_changed_setting_is_refused_naming_it(problem, folder):
    out, sw = folder
    with pytest.raises(SweepFolderError, match=r"run\.n_iter: 40 in the folder, 50 asked"):
        fc.sweep(problem, fc.SGD(0.1), n_iter=50, grid=GRID, seeds=[0],
                 perturbations=forward_noise, out=out)
    assert fc.load(out).identical(sw)


def test_overwrite_replaces_the_folder(problem, folder):
    out, _ = folder
    sw = fc.sweep(problem, fc.SGD(0.1), n_iter=50, grid=GRID, seeds=[0],
                  perturbations=forward_noise, out=out, overwrite=True)
    assert (sw.n_loaded, sw.n_computed) == (0, 6)
    assert len(run_files(out)) == 6 and fc.load(out).identical(sw)


def test_changed_grid_values_reuse_what_matches_and_keep_the_rest(problem, folder):
    out, sw = folder
    before = stamps(out)
    grid = {"step_size": [0.3, 0.1, 0.03], "sigma_f": [0.0, 3.0]}
    ext = fc.sweep(problem, fc.SGD(0.1), n_iter=40, grid=grid, seeds=[0],
                   perturbations=forward_noise, out=out)
    assert (ext.n_loaded, ext.n_computed) == (3, 3)
    kept = {n: t for n, t in stamps(out).items() if n in before}
    assert kept == before  # 57e0980 overwrote the sigma_f = 1 runs with sigma_f = 3
    manifest = json.loads((out / io.MANIFEST).read_text())
    assert len(manifest["earlier_files"]) == 3  # the sigma_f = 1 runs, still listed
    again = fc.sweep(problem, fc.SGD(0.1), n_iter=40, grid=GRID, seeds=[0],
                     perturbations=forward_noise, out=out)
    assert (again.n_loaded, again.n_computed) == (6, 0) and again.identical(sw)


def test_more_seeds_reuse_the_finished_ones(problem, folder):
    out, sw = folder
    more = fc.sweep(problem, fc.SGD(0.1), n_iter=40, grid=GRID, seeds=[0, 1],
                    perturbations=forward_noise, out=out)
    assert (more.n_loaded, more.n_computed) == (6, 6)
    np.testing.assert_array_equal(more.results[2].objective[0], sw.results[2].objective[0])


def test_save_refuses_a_folder_holding_a_sweep(folder):
    out, sw = folder
    with pytest.raises(SweepFolderError):
        sw.save(out)
    sw.save(out, overwrite=True)
    assert fc.load(out).identical(sw)


# -- 6. every grid point checked first ----------------------------------------------------------
@pytest.mark.parametrize("grid, param, point", [
    ({"n_iter": [20, 0]}, "n_iter", "{'n_iter': 0}"),
    ({"record_every": [1, -2]}, "record_every", "{'record_every': -2}"),
    ({"max_norm": [1e3, float("nan")]}, "max_norm", "{'max_norm': nan}"),
    ({"step_size": [0.1, -1.0]}, "step_size", "{'step_size': -1.0}"),
])
def test_a_bad_grid_point_is_refused_before_any_run(problem, tmp_path, grid, param, point):
    out = tmp_path / "bad"
    kw = {} if "n_iter" in grid else {"n_iter": 20}
    with pytest.raises(fc.ParameterError) as info:
        fc.sweep(problem, fc.SGD(0.1), grid=grid, seeds=[0], out=out, **kw)
    assert info.value.param == param
    assert f"grid point {point}" in str(info.value)
    assert not out.exists() or run_files(out) == []  # 57e0980 wrote p0000 first


# -- 2. a failed write keeps the results --------------------------------------------------------
def test_a_failed_write_keeps_the_runs_and_names_the_path(problem, tmp_path, monkeypatch):
    out = tmp_path / "full"
    save = io.save_result
    calls = []

    def disk_full_after_two(res, path):
        calls.append(path)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return save(res, path)

    monkeypatch.setattr(io, "save_result", disk_full_after_two)
    with pytest.warns(RuntimeWarning, match="could not be written.*No space left"):
        sw = fc.sweep(problem, fc.SGD(0.1), n_iter=40, grid=GRID, seeds=[0],
                      perturbations=forward_noise, out=out)
    assert len(sw) == 6 and len(sw.unsaved) == 4
    assert sw.unsaved[0][0] == calls[2]
    monkeypatch.setattr(io, "save_result", save)
    fresh = fc.sweep(problem, fc.SGD(0.1), n_iter=40, grid=GRID, seeds=[0],
                     perturbations=forward_noise)
    assert sw.identical(fresh)


# -- the CLI ------------------------------------------------------------------------------------
CONFIG = """
[problem]
data = {{kind = "synthetic_logistic", n_samples = 100, n_features = 4, seed = 0}}
cascade = ["Margin", "Softplus"]

[optimizer]
step_size = 0.1

[run]
n_iter = {n_iter}
seeds = [0]

[sweep]
grid = {{step_size = [0.1, 0.05]}}
"""


def test_the_cli_refuses_another_configuration_and_overwrite_replaces(tmp_path, capsys):
    from fastcascade.cli import main

    out = tmp_path / "sw"
    for n_iter in (20, 30):
        (tmp_path / f"c{n_iter}.toml").write_text(CONFIG.format(n_iter=n_iter))
    assert main(["sweep", str(tmp_path / "c20.toml"), "--out", str(out), "--no-progress"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    before = stamps(out)
    assert main(["sweep", str(tmp_path / "c30.toml"), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run.n_iter: 20 in the folder, 30 asked" in err[0]
    assert "--overwrite" in err[0] and stamps(out) == before
    assert main(["sweep", str(tmp_path / "c30.toml"), "--out", str(out), "--no-progress",
                 "--overwrite"]) == 0
    assert "2 runs (2 computed, 0 reused" in capsys.readouterr().out


def test_the_cli_says_when_a_run_is_not_saved(tmp_path, capsys):
    from fastcascade.cli import main

    (tmp_path / "c.toml").write_text(CONFIG.format(n_iter=20))
    assert main(["run", str(tmp_path / "c.toml"), "--no-progress"]) == 0
    assert "not saved: give --out FILE.npz" in capsys.readouterr().out
