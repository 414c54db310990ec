"""Tests of results on disk (``fastcascade.io``): ``Result.save`` / ``fc.load`` and sweep folders.

What is shown here:

1. save then load gives back every array bit for bit (NaN tails of a diverged run, the
   amplification profile, SeedSequence seeds, the configuration) and nothing else;
2. loading never unpickles: a file that carries a pickle payload is refused and the payload
   never runs;
3. truncated, foreign and inconsistent files raise ValueError naming the path and the problem;
4. a sweep folder round-trips; an unfinished one is refused with the missing file named.
"""
from __future__ import annotations

import io as _io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

import fastcascade as fc
from fastcascade import io as fio

ARRAYS = ("iterations", "objective", "grad_norm", "grad_error", "step_size", "final_weights",
          "stopped_at", "forward_error", "backward_error")


@pytest.fixture(scope="module")
def problem():
    data = fc.datasets.synthetic_logistic(200, 4, seed=2)
    return fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), data,
                      regularizer=fc.reg.NonConvex(1e-3))


@pytest.fixture(scope="module")
def result(problem):
    """Three runs, one diverging (NaN tail), with the profile recorded."""
    pert = [fc.Perturbation(op=2, pass_="backward", noise=fc.noise.Gaussian(0.0, 0.3))]
    res = fc.run(problem, fc.SGD(0.5, grad_noise_std=1e-3), 300, pert,
                 seeds=[0, 1, np.random.SeedSequence(12345, spawn_key=(3,))],
                 record_profile=True, record_every=3, max_norm=2.7)
    assert res.diverged.any() and not res.diverged.all()
    return res


def assert_bitwise_equal(a, b):
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        if x is None:
            assert y is None, name
            continue
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert x.tobytes() == y.tobytes(), name


# ---------------------------------------------------------------------------------------------
# 1. exact round trip


def test_save_load_exact_for_every_field(result, tmp_path):
    path = tmp_path / "res.npz"
    result.save(path)
    back = fc.load(path)
    assert isinstance(back, fc.Result)
    assert_bitwise_equal(result, back)
    assert np.isnan(back.grad_norm[result.diverged]).any()  # the NaN tail came back as NaN
    assert back.stop_reason == result.stop_reason
    assert back.config == result.config and back.config["n_iter"] == 300
    assert back.seeds[:2] == [0, 1]
    ss = back.seeds[2]
    assert isinstance(ss, np.random.SeedSequence)
    assert (ss.entropy, ss.spawn_key) == (12345, (3,))
    assert ss.generate_state(4).tolist() == result.seeds[2].generate_state(4).tolist()
    assert back.identical(result)
    # and the derived metrics follow
    np.testing.assert_array_equal(back.stable_grad_norm(), result.stable_grad_norm())
    # saving what was loaded gives the same bytes
    result.save(tmp_path / "again.npz")
    back.save(tmp_path / "again2.npz")
    with np.load(tmp_path / "again.npz") as z1, np.load(tmp_path / "again2.npz") as z2:
        assert sorted(z1.files) == sorted(z2.files)
        for k in z1.files:
            assert z1[k].tobytes() == z2[k].tobytes(), k


def test_without_profile_and_name_used_as_given(problem, tmp_path):
    res = fc.run(problem, fc.SGD(0.1), 50, seeds=[4])
    path = tmp_path / "plain"  # no extension added
    res.save(path)
    assert os.path.exists(path) and not os.path.exists(str(path) + ".npz")
    back = fc.load(path)
    assert back.forward_error is None and back.backward_error is None
    assert back.identical(res)
    with zipfile.ZipFile(path) as z:  # plain data entries, a format tag, JSON metadata
        names = sorted(z.namelist())
    assert names == sorted(f"{n}.npy" for n in ("format", "version", "meta", "iterations",
                                                 "objective", "grad_norm", "grad_error",
                                                 "step_size", "final_weights", "stopped_at",
                                                 "nonfinite_injections"))
    with np.load(path, allow_pickle=False) as z:
        assert str(z["format"]) == "fastcascade.result"
        assert int(z["version"]) == fc.io.FORMAT_VERSION == 2
        meta = json.loads(str(z["meta"]))
    assert meta["seeds"] == [4] and meta["config"]["n_iter"] == 50


# ---------------------------------------------------------------------------------------------
# 2. never unpickles


class Payload:
    """Unpickling this creates the marker file: the proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_loading_never_unpickles(result, tmp_path):
    marker = tmp_path / "PWNED"
    arrays = fio.result_arrays(result)
    arrays["objective"] = np.array([Payload(str(marker))], dtype=object)
    evil = tmp_path / "evil.npz"
    with open(evil, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(ValueError, match="evil.npz.*pickled objects, which are never loaded"):
        fc.load(evil)
    # a bare pickle file is not even an archive
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(Payload(str(marker))))
    with pytest.raises(ValueError, match=r"raw.pkl: not a fastcascade result file \(not an "
                                         r"\.npz archive\)"):
        fc.load(raw)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# 3. truncated, foreign, inconsistent


def test_truncated_file_gives_a_clear_error(result, tmp_path):
    path = tmp_path / "full.npz"
    result.save(path)
    data = path.read_bytes()
    for keep in (3, 40, len(data) // 2, len(data) - 30):
        cut = tmp_path / f"cut{keep}.npz"
        cut.write_bytes(data[:keep])
        with pytest.raises(ValueError, match=f"cut{keep}.npz: (truncated or corrupt|not a "
                                             "fastcascade result file)"):
            fc.load(cut)


def write_npz(path, **arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def test_foreign_files(result, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"notes.txt: not a fastcascade result file"):
        fc.load(text)
    other = tmp_path / "other.npz"
    write_npz(other, a=np.arange(3))
    with pytest.raises(ValueError, match=r"other.npz: not a fastcascade result file \(no "
                                         r"'format' entry"):
        fc.load(other)
    write_npz(other, format=np.array("someone.else"))
    with pytest.raises(ValueError, match=r"format 'someone.else'"):
        fc.load(other)
    arrays = fio.result_arrays(result)
    arrays["version"] = np.array(99)
    write_npz(other, **arrays)
    with pytest.raises(ValueError, match="format version 99 was written by a newer"):
        fc.load(other)
    arrays = fio.result_arrays(result)
    del arrays["grad_norm"]
    write_npz(other, **arrays)
    with pytest.raises(ValueError, match="incomplete result file, missing grad_norm"):
        fc.load(other)
    arrays = fio.result_arrays(result)
    arrays["objective"] = arrays["objective"][:, :-1]
    write_npz(other, **arrays)
    with pytest.raises(ValueError, match="inconsistent result file .*objective"):
        fc.load(other)
    with pytest.raises(FileNotFoundError, match="nothing-here.npz"):
        fc.load(tmp_path / "nothing-here.npz")


def test_write_is_atomic(result, tmp_path, monkeypatch):
    """A write that fails half-way leaves neither a partial file nor a temporary one."""
    path = tmp_path / "r.npz"
    result.save(path)
    before = path.read_bytes()

    def broken_savez(fh, **arrays):
        fh.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(fio.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        result.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["r.npz"]


# ---------------------------------------------------------------------------------------------
# 4. sweep folders


def small_sweep(problem):
    def perts(sigma_f=0.0):
        return [fc.Perturbation(op=1, noise=fc.noise.Uniform(-sigma_f, sigma_f))]

    return fc.sweep(problem, fc.SGD(0.2, grad_noise_std=1e-3), n_iter=60,
                    grid={"step_size": [0.3, 0.1], "sigma_f": [0.0, 1.0]}, perturbations=perts,
                    seeds=[0, 5], record_every=2)


def test_sweep_folder_round_trip(problem, tmp_path):
    sw = small_sweep(problem)
    sw.save(tmp_path / "sw")
    files = sorted(os.listdir(tmp_path / "sw"))
    assert files == ["manifest.json"] + [f"p{i:04d}_r{j:02d}.npz" for i in range(4)
                                         for j in range(2)]
    back = fc.load(tmp_path / "sw")
    assert isinstance(back, fc.SweepResult)
    assert back.identical(sw)
    assert back.grid == {"step_size": [0.3, 0.1], "sigma_f": [0.0, 1.0]}
    assert back.points == sw.points and back.seeds == [0, 5]
    for a, b in zip(sw.results, back.results):
        assert_bitwise_equal(a, b)
    # one run file is a result file by itself
    one = fc.load(tmp_path / "sw" / "p0003_r01.npz")
    assert one.seeds == [5] and one.grid == {"step_size": 0.1, "sigma_f": 1.0}
    assert one.grad_norm.tobytes() == sw.results[3].grad_norm[1:].tobytes()


def test_unfinished_or_foreign_sweep_folder(problem, tmp_path):
    sw = small_sweep(problem)
    sw.save(tmp_path / "sw")
    os.remove(tmp_path / "sw" / "p0002_r01.npz")
    with pytest.raises(ValueError, match="unfinished sweep, p0002_r01.npz is missing"):
        fc.load(tmp_path / "sw")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: not a fastcascade sweep folder"):
        fc.load(tmp_path / "empty")
    (tmp_path / "empty" / "manifest.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(ValueError, match="not a fastcascade sweep manifest"):
        fc.load(tmp_path / "empty")


def test_jsonable():
    out = fio.jsonable({"a": (1, np.int64(2)), "b": np.float32(0.5), "c": None,
                        "d": np.random.SeedSequence(7), 3: [True, np.bool_(False)]})
    assert out == {"a": [1, 2], "b": 0.5, "c": None,
                   "d": {"SeedSequence": {"entropy": 7, "spawn_key": [], "pool_size": 4}},
                   "3": [True, False]}
    assert json.loads(json.dumps(out)) == out
    assert _io  # the stdlib io module is not shadowed by fastcascade.io
