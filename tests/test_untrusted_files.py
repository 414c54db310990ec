"""Files are untrusted input: each defect below is refused with one ``FileFormatError``
(a ``ValueError``) naming the file and the field, before anything large is allocated.

Each case failed on 57e0980: a manifest could name files outside its folder, a zip bomb reached
1.65 GB and 8.9 s before it was refused, a huge declared shape raised MemoryError, deep meta
RecursionError, and version 0 or -1, reversed iterations or a mismatched weights width loaded.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import fastcascade as fc
from fastcascade.io import FileFormatError


@pytest.fixture(scope="module")
def result():
    problem = fc.problems.paper_logistic(n_samples=100)
    return fc.run(problem, fc.SGD(0.1), 40, seeds=[0, 1], record_weights=True, record_every=4)


def arrays_of(result, tmp_path):
    path = tmp_path / "good.npz"
    result.save(path)
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def write(tmp_path, arrays, name="bad.npz"):
    path = tmp_path / name
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


@pytest.mark.parametrize("edit, field", [
    (lambda a: a.update(version=np.array(0)), "version"),
    (lambda a: a.update(version=np.array(-1)), "version"),
    (lambda a: a.update(iterations=a["iterations"][::-1].copy()), "iterations"),
    (lambda a: a.update(weights=a["weights"][:, :, :-1].copy()), "weights"),
    (lambda a: a.update(meta=np.array(b"raw bytes")), "meta"),
    (lambda a: a.update(meta=np.array("[" * 100000 + "]" * 100000)), "meta"),
])
def test_bad_fields_are_refused_naming_the_field(result, tmp_path, edit, field):
    arrays = arrays_of(result, tmp_path)
    edit(arrays)
    path = write(tmp_path, arrays)
    with pytest.raises(FileFormatError, match=field) as info:
        fc.load(path)
    assert str(path) in str(info.value)


def test_the_good_file_loads(result, tmp_path):
    path = write(tmp_path, arrays_of(result, tmp_path))
    assert fc.load(path).identical(result)


def test_a_declared_shape_beyond_the_entry_is_refused_before_allocation(result, tmp_path):
    arrays = arrays_of(result, tmp_path)
    path = write(tmp_path, arrays)
    # rewrite the grad_norm entry's header to declare (2, 2**39) float64 (8 TB)
    with zipfile.ZipFile(path) as zf:
        entries = {i.filename: zf.read(i) for i in zf.infolist()}
    raw = entries["grad_norm.npy"]
    header_len = int.from_bytes(raw[8:10], "little")
    header = raw[10:10 + header_len].decode("latin1")
    fake = header.replace(str(arrays["grad_norm"].shape), str((2, 2 ** 39)))
    fake = fake.ljust(header_len)[:header_len]
    entries["grad_norm.npy"] = raw[:10] + fake.encode("latin1") + raw[10 + header_len:]
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    with pytest.raises(FileFormatError, match=r"grad_norm: declares shape \(2, 549755813888\)"):
        fc.load(path)


def test_a_zip_bomb_is_refused_fast_and_small(result, tmp_path):
    arrays = arrays_of(result, tmp_path)
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, value in arrays.items():
            with zf.open(name + ".npy", "w") as fh:
                np.lib.format.write_array(fh, value)
        with zf.open("objective2.npy", "w") as fh:  # 800 MB of zeros, ~0.8 MB compressed
            np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False,
                                                      "shape": (100_000_000,)})
            block = bytes(1 << 24)
            for _ in range(48):
                fh.write(block)
    assert os.path.getsize(path) < 3e6
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(FileFormatError, match="declares .* bytes for .* on disk"):
        fc.load(path)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 1.0 and peak < 100e6, (seconds, peak)


@pytest.fixture()
def sweep_folder(tmp_path):
    problem = fc.problems.paper_logistic(n_samples=100)
    out = tmp_path / "sw"
    fc.sweep(problem, fc.SGD(0.1), n_iter=20, grid={"step_size": [0.1, 0.2]}, seeds=[0, 1],
             out=str(out), progress=False)
    return out


def edit_manifest(folder, edit):
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("edit, field", [
    (lambda m: m.update(version="abc"), "version"),
    (lambda m: m.update(version=0), "version"),
    (lambda m: m["files"].pop(), "files"),
    (lambda m: m["files"][0].pop(), r"files\[0\]"),
    (lambda m: m.update(points=5), "points"),
])
def test_inconsistent_manifests_are_refused(sweep_folder, edit, field):
    edit_manifest(sweep_folder, edit)
    with pytest.raises(FileFormatError, match=field):
        fc.load(str(sweep_folder))


def test_manifest_may_not_name_files_outside_its_folder(sweep_folder, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    first = json.loads((sweep_folder / "manifest.json").read_text())["files"][0][0]
    shutil.copy(sweep_folder / first, outside / "secret.npz")
    for name in (str(outside / "secret.npz"), "../outside/secret.npz"):
        edit_manifest(sweep_folder, lambda m: m["files"][0].__setitem__(0, name))
        with pytest.raises(FileFormatError, match="files"):
            fc.load(str(sweep_folder))
    os.symlink(outside / "secret.npz", sweep_folder / "link.npz")
    edit_manifest(sweep_folder, lambda m: m["files"][0].__setitem__(0, "link.npz"))
    with pytest.raises(FileFormatError, match="outside the folder"):
        fc.load(str(sweep_folder))
    edit_manifest(sweep_folder, lambda m: (m["files"][0].__setitem__(0, first),
                                           m.update(earlier_files=["../outside/secret.npz"])))
    with pytest.raises(FileFormatError, match="earlier_files"):
        fc.load(str(sweep_folder))
