"""Results on disk: one ``.npz`` file per result, a folder per sweep; data only, never pickle.

A result file is a NumPy ``.npz`` archive (``numpy.savez``) holding:

- ``format``: the 0-d string ``"fastcascade.result"`` and ``version``: the 0-d int ``2``
  (version 1 files load too: their backward profile column i - 1 held the message f_i
  received, and is moved to the message f_i sends, :func:`upgrade_backward_profile`);
- the arrays ``iterations``, ``objective``, ``grad_norm``, ``grad_error``, ``step_size``,
  ``final_weights``, ``stopped_at`` and, when recorded, ``forward_error``, ``backward_error``,
  ``weights``; ``nonfinite_injections`` (int64, one per run; files before version 2 lack it);
- ``meta``: a 0-d string, JSON of ``{"seeds", "stop_reason", "config", "fastcascade"}``.

Files are read with ``numpy.load(..., allow_pickle=False)``: loading a file never runs code.
A file that is not such an archive, is truncated, or lacks an entry raises ``ValueError``
naming the path and what is wrong.

A sweep folder holds ``manifest.json`` (the grid, its points, the seeds, the base settings and
the file of each run) and one result file per (grid point, seed) run, named
``p{point:04d}_r{seed index:02d}.npz``; each is written when its run finishes, to a temporary
name first and then renamed (``os.replace``), so a file that exists is whole.

Examples
--------
>>> import os, tempfile, numpy as np, fastcascade as fc
>>> data = fc.datasets.synthetic_logistic(100, 3, seed=0)
>>> problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), data)
>>> res = fc.run(problem, fc.SGD(step_size=0.5), n_iter=50, seeds=[0, 1])
>>> path = os.path.join(tempfile.mkdtemp(), "run.npz")
>>> res.save(path)
>>> back = fc.load(path)
>>> back.identical(res)
True
"""
from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from fastcascade._jsonable import jsonable, seed_from_json, seed_to_json
from fastcascade._typing import PathLike
from fastcascade._version import __version__
from fastcascade.result import Result

if TYPE_CHECKING:  # a higher floor, for the annotations only
    from fastcascade.sweeper import SweepResult

__all__ = ["FileFormatError", "load", "save_result", "load_result", "jsonable", "RESULT_FORMAT",
           "SWEEP_FORMAT", "FORMAT_VERSION"]

RESULT_FORMAT = "fastcascade.result"
SWEEP_FORMAT = "fastcascade.sweep"
FORMAT_VERSION = 2  # 2: backward profile indexed as Perturbation.op
MANIFEST = "manifest.json"

_ARRAYS = ("iterations", "objective", "grad_norm", "grad_error", "step_size", "final_weights",
           "stopped_at")
_OPTIONAL = ("forward_error", "backward_error", "weights")
# files are untrusted: an entry's declared size must match its bytes, and the archive may not
# expand to more than this many times its size on disk (plus a small allowance)
_MAX_EXPANSION = 64
_EXPANSION_ALLOWANCE = 1 << 20
_ENTRY_KINDS = "biufU"   # bool, int, float and text entries only (no objects, no raw bytes)


class FileFormatError(ValueError):
    """A result file or sweep folder that cannot be read as one: the message names the file and
    the field."""
_RUN_COUNTS = ("nonfinite_injections",)  # optional, int64 (n_runs,)
_ZIP_MAGIC = b"PK\x03\x04"


# -- JSON ---------------------------------------------------------------------------------------
def _json_dumps(obj):
    return json.dumps(obj, sort_keys=False, allow_nan=True)


# -- writing ---------------------------------------------------------------------------------
def write_atomic(path: PathLike, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, then rename it to ``path``.

    The file is flushed and fsynced before the rename, so ``path`` never holds a partial file;
    the temporary file is removed when ``write`` raises. Missing folders are created.

    Parameters
    ----------
    path : str or os.PathLike
        The file written.
    write : callable
        Called once with the binary file object.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}-{id(write)}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def result_arrays(result: Result) -> dict[str, np.ndarray]:
    """The entries of ``result``'s file: name -> ndarray.

    Parameters
    ----------
    result : fastcascade.Result
        The result stored.

    Returns
    -------
    dict of str to numpy.ndarray
        ``format``, ``version``, every history and per-run array present, and ``meta`` (seeds,
        stop reasons, configuration and package version as a JSON string).
    """
    arrays = {"format": np.array(RESULT_FORMAT), "version": np.array(FORMAT_VERSION)}
    for name in _ARRAYS:
        arrays[name] = np.asarray(getattr(result, name))
    for name in _OPTIONAL + _RUN_COUNTS:
        value = getattr(result, name)
        if value is not None:
            arrays[name] = np.asarray(value)
    meta = {"seeds": [seed_to_json(s) for s in result.seeds],
            "stop_reason": list(result.stop_reason), "config": result.config,
            "fastcascade": __version__}
    arrays["meta"] = np.array(_json_dumps(meta))
    return arrays


def save_result(result: Result, path: PathLike) -> None:
    """Write ``result`` to ``path`` (one ``.npz`` file, written atomically; the name is used as
    given, no extension is added).

    Parameters
    ----------
    result : fastcascade.Result
        The result stored (:func:`result_arrays`).
    path : str or os.PathLike
        The file written.

    Examples
    --------
    See the module docstring.
    """
    arrays: dict[str, Any] = result_arrays(result)
    write_atomic(path, lambda fh: np.savez(fh, **arrays))


# -- reading ---------------------------------------------------------------------------------
def _read_npz(path, kind):
    """name -> ndarray of every entry of an npz file, read eagerly, never unpickling."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file or folder")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head != _ZIP_MAGIC:
        raise ValueError(f"{path}: not a fastcascade {kind} file (not an .npz archive)")
    try:
        _check_entries(path)
        # our own file object: numpy leaks its handle when the archive is unreadable
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            return {name: z[name] for name in z.files}
    except FileFormatError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            raise ValueError(f"{path}: not a fastcascade {kind} file (it holds pickled "
                             "objects, which are never loaded)") from None
        raise ValueError(f"{path}: truncated or corrupt ({exc})") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, zlib.error) as exc:
        raise ValueError(f"{path}: truncated or corrupt ({type(exc).__name__}: {exc})") from None


def _check_entries(path):
    """Refuse, before anything is decompressed or allocated, an archive that expands far
    beyond its size (a zip bomb) or whose entries declare arrays their bytes cannot hold."""
    on_disk = os.path.getsize(path)
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        total = sum(info.file_size for info in infos)
        if total > _MAX_EXPANSION * on_disk + _EXPANSION_ALLOWANCE:
            raise FileFormatError(f"{path}: the archive declares {total} bytes for {on_disk} on "
                                  f"disk; refused (at most {_MAX_EXPANSION}x)")
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise FileFormatError(f"{path}: entry {info.filename!r} is not an array")
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                readers = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}
                if version not in readers:
                    raise FileFormatError(f"{path}: entry {info.filename!r}: unknown array "
                                          f"format {version}")
                shape, _, dtype = readers[version](fh)
            field = info.filename[:-4]
            if dtype.hasobject:
                raise FileFormatError(f"{path}: not a fastcascade result file ({field} holds "
                                      f"pickled objects, which are never loaded)")
            if dtype.kind not in _ENTRY_KINDS:
                raise FileFormatError(f"{path}: {field}: dtype {dtype} is not allowed (numbers "
                                      f"and text only)")
            need = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if need > info.file_size:
                raise FileFormatError(f"{path}: {field}: declares shape {tuple(shape)} "
                                      f"({need} bytes) in an entry of {info.file_size} bytes")


def _scalar_str(arrays, name, path):
    a = arrays.get(name)
    if a is None or a.shape != () or a.dtype.kind != "U":
        return None
    return str(a[()])


def load_result(path: PathLike) -> Result:
    """Read a result file written by ``Result.save``.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npz`` file; it is read without unpickling.

    Returns
    -------
    fastcascade.Result

    Raises
    ------
    ValueError
        When the file is not a fastcascade result file, is truncated, or is inconsistent; the
        message names the path and the problem.
    """
    path = os.fspath(path)
    arrays = _read_npz(path, "result")
    fmt = _scalar_str(arrays, "format", path)
    if fmt != RESULT_FORMAT:
        what = "no 'format' entry" if fmt is None else f"format {fmt!r}"
        raise ValueError(f"{path}: not a fastcascade result file ({what}; expected "
                         f"{RESULT_FORMAT!r})")
    version = arrays.get("version")
    if version is None or version.shape != () or version.dtype.kind not in "iu":
        raise ValueError(f"{path}: no format version entry")
    if int(version) > FORMAT_VERSION:
        raise ValueError(f"{path}: format version {int(version)} was written by a newer "
                         f"fastcascade; this one reads versions up to {FORMAT_VERSION}")
    if int(version) < 1:
        raise FileFormatError(f"{path}: version: {int(version)} is not a format version "
                              f"(1..{FORMAT_VERSION})")
    missing = [n for n in _ARRAYS + ("meta",) if n not in arrays]
    if missing:
        raise ValueError(f"{path}: incomplete result file, missing {', '.join(missing)}")
    try:
        meta = json.loads(_scalar_str(arrays, "meta", path) or "")
        seeds = [seed_from_json(s) for s in meta["seeds"]]
        stop_reason = [str(r) for r in meta["stop_reason"]]
        config = meta["config"]
    except (ValueError, KeyError, TypeError, RecursionError, AttributeError) as exc:
        raise FileFormatError(f"{path}: meta: unreadable metadata "
                              f"({type(exc).__name__}: {str(exc)[:200]})") from None
    it = arrays["iterations"]
    n_runs, n_rec = len(seeds), it.shape[0] if it.ndim == 1 else -1
    checks = [("iterations", it.ndim == 1 and it.dtype == np.int64
               and bool(np.all(np.diff(it) > 0)) and (it.size == 0 or it[0] >= 0))]
    for name in ("objective", "grad_norm", "grad_error", "step_size"):
        a = arrays[name]
        checks.append((name, a.dtype == np.float64 and a.shape == (n_runs, n_rec)))
    fw = arrays["final_weights"]
    checks.append(("final_weights", fw.dtype == np.float64 and fw.ndim == 2
                   and fw.shape[0] == n_runs))
    checks.append(("stopped_at", arrays["stopped_at"].shape == (n_runs,)
                   and arrays["stopped_at"].dtype == np.int64))
    checks.append(("stop_reason", len(stop_reason) == n_runs))
    for name in _OPTIONAL:
        if name in arrays:
            a = arrays[name]
            checks.append((name, a.dtype == np.float64 and a.ndim == 3
                           and a.shape[:2] == (n_runs, n_rec)))
    if "weights" in arrays and fw.ndim == 2:
        checks.append(("weights", arrays["weights"].ndim == 3
                       and arrays["weights"].shape[2] == fw.shape[1]))
    for name in _RUN_COUNTS:
        if name in arrays:
            a = arrays[name]
            checks.append((name, a.dtype == np.int64 and a.shape == (n_runs,)))
    bad = [name for name, ok in checks if not ok]
    if bad:
        raise FileFormatError(f"{path}: inconsistent result file (bad {', '.join(bad)} for "
                         f"{n_runs} runs)")
    histories = {name: arrays[name] for name in ("objective", "grad_norm", "grad_error",
                                                 "step_size")}
    for name in _OPTIONAL + _RUN_COUNTS:
        histories[name] = arrays.get(name)
    if int(version) < 2 and histories["backward_error"] is not None:
        histories["backward_error"] = upgrade_backward_profile(histories["backward_error"])
    return Result(it, histories, fw, arrays["stopped_at"], stop_reason, seeds, config)


def upgrade_backward_profile(old: np.ndarray) -> np.ndarray:
    """A version-1 backward profile in version 2's indexing.

    Version 1 stored at column i - 1 the error of the message f_i *receives*, v_i (so column
    N - 1 held v_N = 1, never perturbed); version 2 stores the message f_i *sends*, v_{i-1}, as
    ``Perturbation(op=i, pass_="backward")`` counts it, with 0 for f_1, which sends none. The
    same numbers move one column to the right.

    Parameters
    ----------
    old : ndarray (n_runs, n_records, N)

    Returns
    -------
    ndarray of the same shape
    """
    new = np.zeros_like(old)
    new[..., 1:] = old[..., :-1]
    new[np.isnan(old[..., 0])] = np.nan  # records that were not taken (after a stop) stay NaN
    return new


def read_manifest(folder: PathLike) -> dict[str, Any]:
    """The manifest of a sweep folder, checked (format, version, fields, file names).

    Parameters
    ----------
    folder : str or os.PathLike
        A sweep's output folder.

    Returns
    -------
    dict
        With ``grid``, ``points``, ``seeds``, ``files`` (one list of file names per point, one
        name per seed, all inside ``folder``) and ``config``.

    Raises
    ------
    ValueError
        When the folder has no manifest, or it is unreadable, of another format, of a newer
        version or inconsistent (``FileFormatError``).
    """
    path = os.path.join(os.fspath(folder), MANIFEST)
    if not os.path.exists(path):
        raise ValueError(f"{folder}: not a fastcascade sweep folder (no {MANIFEST})")
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != SWEEP_FORMAT:
        raise ValueError(f"{path}: not a fastcascade sweep manifest (format "
                         f"{manifest.get('format') if isinstance(manifest, dict) else None!r})")
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise FileFormatError(f"{path}: version: expected an integer format version "
                              f"1..{FORMAT_VERSION}, given {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: format version {manifest.get('version')} was written by a "
                         f"newer fastcascade; this one reads versions up to {FORMAT_VERSION}")
    for key in ("grid", "points", "seeds", "files", "config"):
        if key not in manifest:
            raise ValueError(f"{path}: incomplete manifest, missing {key!r}")
    _check_manifest(manifest, os.fspath(folder), path)
    return manifest


def _check_manifest(manifest, folder, path):
    """Types and consistency of a manifest's fields; its files must lie inside its folder."""
    def bad(field, what):
        raise FileFormatError(f"{path}: {field}: {what}")

    if not isinstance(manifest["points"], list) or not all(isinstance(p, dict)
                                                           for p in manifest["points"]):
        bad("points", "expected a list of tables")
    if not isinstance(manifest["seeds"], list):
        bad("seeds", "expected a list")
    files = manifest["files"]
    if not isinstance(files, list) or len(files) != len(manifest["points"]):
        bad("files", f"expected one list per point ({len(manifest['points'])})")
    for i, names in enumerate(files):
        if not isinstance(names, list) or len(names) != len(manifest["seeds"]):
            bad(f"files[{i}]", f"expected one name per seed ({len(manifest['seeds'])})")
        _check_inside(names, folder, lambda what, i=i: bad(f"files[{i}]", what))
    earlier = manifest.get("earlier_files", [])
    if not isinstance(earlier, list):
        bad("earlier_files", "expected a list of file names")
    _check_inside(earlier, folder, lambda what: bad("earlier_files", what))


def _check_inside(names, folder, bad):
    """Each name must be a relative file name that resolves (links too) inside ``folder``."""
    root = os.path.realpath(folder)
    for name in names:
        if not isinstance(name, str) or os.path.isabs(name):
            bad(f"{name!r} is not a file name inside the folder")
        real = os.path.realpath(os.path.join(folder, name))
        if os.path.commonpath([root, real]) != root:
            bad(f"{name!r} lies outside the folder")


def write_manifest(folder: PathLike, manifest: dict[str, Any]) -> None:
    """Write a sweep folder's manifest atomically (JSON, NaN allowed).

    Parameters
    ----------
    folder : str or os.PathLike
        The sweep's output folder.
    manifest : dict
        Plain JSON data (see :func:`read_manifest` for the fields).
    """
    text = json.dumps(manifest, indent=1, allow_nan=True).encode("utf-8")
    write_atomic(os.path.join(os.fspath(folder), MANIFEST), lambda fh: fh.write(text))


def load(path: PathLike) -> Result | SweepResult:
    """Load what ``Result.save`` or ``SweepResult.save`` (or a sweep's output folder) wrote.

    Parameters
    ----------
    path : str or os.PathLike
        A result file, or a sweep folder.

    Returns
    -------
    fastcascade.Result or fastcascade.SweepResult

    Raises
    ------
    ValueError
        For a foreign, truncated or inconsistent file, or an unfinished sweep folder; the
        message names the path and what is wrong. Nothing is ever unpickled.

    Examples
    --------
    >>> import fastcascade as fc
    >>> fc.load("no/such/file.npz")
    Traceback (most recent call last):
        ...
    FileNotFoundError: no/such/file.npz: no such file or folder
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        from fastcascade.sweeper import SweepResult  # a higher floor: sweeps load themselves

        return SweepResult.load(path)
    return load_result(path)
