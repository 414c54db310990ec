"""Type hints and stubs (issue 16.5): mypy passes on the package, the compiled modules' stubs
match them.

- ``mypy`` with the configuration in ``pyproject.toml`` (``[tool.mypy]``) on the package: no
  error. Skipped when mypy is not installed (the ``test`` extra installs it).
- ``mypy.stubtest`` on the three compiled modules against their ``.pyi`` stubs: every name,
  argument name, default and kind agrees (Cython's own ``__pyx_capi__`` and ``__test__`` aside,
  ``stubtest-allowlist.txt``). Skipped without mypy.
- Without mypy too: each stub's public names are the compiled module's public names
  (``dir()``, imported modules aside), and each function's parameters, names and defaults
  included, are those ``inspect.signature`` gives.
- Every parameter and return of the public API (``fc.run``, ``fc.sweep``, the main classes'
  methods, the functions of ``metrics``, ``theory``, ``datasets``, ...) is annotated.
- ``py.typed`` and the stubs are shipped (package data in ``pyproject.toml``).

One mypy run (the package and a user's file, a fresh cache) and two stubtest runs: about
5-11 s, 11-13 s and 2 s on 2 shared cores.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
ALLOWLIST = Path(__file__).with_name("stubtest-allowlist.txt")
COMPILED = ("fastcascade._kernels._engine", "fastcascade._kernels._ops",
            "fastcascade._kernels._noise")
HAVE_MYPY = importlib.util.find_spec("mypy") is not None
needs_mypy = pytest.mark.skipif(not HAVE_MYPY, reason="mypy is not installed (pip install "
                                "mypy, or the 'test' extra)")


def _installed_dir():
    """The folder holding the ``fastcascade`` the tests import (site-packages in CI)."""
    spec = importlib.util.find_spec("fastcascade")
    return Path(list(spec.submodule_search_locations)[0]).parent


def _run(args, cwd, extra_path=()):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(p) for p in extra_path]
                                        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          cwd=cwd, env=env)


# ---------------------------------------------------------------------------------------------
# mypy


BAD_USE = """
import fastcascade as fc
res = fc.run(fc.problems.paper_logistic(), fc.SGD(step_size=0.1), n_iter="many")
n: str = res.n_runs
fc.metrics.ewma([1.0, 2.0], factor="high")
g = fc.perturbed_gradient(res, [0.0])
"""


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory):
    """One mypy run (fresh cache) on the package and on ``bad_use.py``, a user's file with four
    wrong calls of the public API: (exit status, the error lines of the package's files, those
    of bad_use.py, the whole output)."""
    if not HAVE_MYPY:
        pytest.skip("mypy is not installed (pip install mypy, or the 'test' extra)")
    if not (ROOT / "fastcascade" / "__init__.py").exists() or not PYPROJECT.exists():
        pytest.skip("not run from a checkout (no pyproject.toml / fastcascade sources)")
    work = tmp_path_factory.mktemp("mypy")
    bad = work / "bad_use.py"
    bad.write_text(BAD_USE)
    proc = _run(["mypy", "--config-file", str(PYPROJECT), "--cache-dir", str(work / "cache"),
                 "fastcascade", str(bad)], cwd=ROOT)
    errors = [line for line in proc.stdout.splitlines() if ": error:" in line]
    mine = [line for line in errors if line.startswith(str(bad))]
    return proc.returncode, [e for e in errors if e not in mine], mine, proc.stdout + proc.stderr


def test_mypy_passes_on_the_package(mypy_output):
    status, package_errors, _, text = mypy_output
    assert package_errors == [], text
    checked = int(text.split("(checked ")[1].split()[0])
    assert checked > len(list((ROOT / "fastcascade").glob("*.py"))), text  # the package too
    assert status == 1  # for bad_use.py alone


def test_mypy_fails_on_a_wrong_call_to_the_public_api(mypy_output):
    """The hints are read: each wrong call is an error (a check that cannot fail would pass on
    a package without hints)."""
    _, _, bad_use, text = mypy_output
    assert [line.split(":")[1] for line in bad_use] == ["3", "4", "5", "6"], text
    assert 'Argument "n_iter" to "run" has incompatible type "str"' in text


@needs_mypy
def test_stubtest_on_the_compiled_modules(tmp_path):
    """Runs outside the checkout so that the compiled modules the tests import are checked."""
    proc = _run(["mypy.stubtest", "--mypy-config-file", str(PYPROJECT), "--allowlist",
                 str(ALLOWLIST), *COMPILED], cwd=tmp_path, extra_path=[_installed_dir()])
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_mypy
def test_stubtest_fails_on_a_wrong_stub(tmp_path):
    pkg = tmp_path / "stubbed"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text("CODES = {}\ndef f(a, b=0):\n    return a\ndef g():\n    pass\n")
    (pkg / "mod.pyi").write_text("def f(a: int) -> int: ...\n")
    proc = _run(["mypy.stubtest", "--mypy-config-file", str(PYPROJECT), "--allowlist",
                 str(ALLOWLIST), "stubbed.mod"], cwd=tmp_path, extra_path=[tmp_path])
    assert proc.returncode == 1
    for name in ("stubbed.mod.f is inconsistent", "stubbed.mod.g is not present in stub",
                 "stubbed.mod.CODES is not present in stub"):
        assert name in proc.stdout, proc.stdout


# ---------------------------------------------------------------------------------------------
# the public API is annotated


def public_callables():
    """name -> function: ``fc.run``, ``fc.sweep``, ``fc.perturbed_gradient``, ``fc.load``, the
    public methods and properties of the main classes, the public functions of ``metrics``,
    ``theory`` and ``datasets``.

    Returns
    -------
    dict of str to function
    """
    import fastcascade as fc

    out = {f"fc.{n}": getattr(fc, n) for n in ("run", "sweep", "perturbed_gradient", "load")}
    for cls in (fc.Problem, fc.Cascade, fc.Perturbation, fc.SGD, fc.Adam, fc.Result,
                fc.SweepResult, fc.datasets.Dataset):
        for name, attr in vars(cls).items():
            if name.startswith("_") and name not in ("__init__", "__len__", "__getitem__",
                                                     "__iter__", "__eq__"):
                continue
            fn = attr.fget if isinstance(attr, property) else getattr(attr, "__func__", attr)
            if inspect.isfunction(fn):
                out[f"{cls.__name__}.{name}"] = fn
    for module in (fc.metrics, fc.theory, fc.datasets):
        for name, fn in vars(module).items():
            if (inspect.isfunction(fn) and not name.startswith("_")
                    and fn.__module__ == module.__name__):
                out[f"{module.__name__}.{name}"] = fn
    return out


def missing_hints(fn):
    """The parameters (and ``return``) of ``fn`` without an annotation.

    Parameters
    ----------
    fn : function

    Returns
    -------
    list of str
    """
    sig = inspect.signature(fn)
    names = list(sig.parameters)
    skip = {names[0]} if names and names[0] in ("self", "cls") else set()
    out = [n for n, p in sig.parameters.items()
           if n not in skip and p.annotation is inspect.Parameter.empty]
    if fn.__name__ != "__init__" and sig.return_annotation is inspect.Signature.empty:
        out.append("return")
    return out


def test_the_public_api_is_annotated():
    found = public_callables()
    assert {"fc.run", "Result.save", "SweepResult.plot", "SGD.__init__", "Cascade.n_ops",
            "fastcascade.metrics.ewma", "fastcascade.theory.pl_bound"} <= set(found)
    bad = {name: m for name, fn in sorted(found.items()) if (m := missing_hints(fn))}
    assert bad == {}


def test_missing_hints_can_fail():
    def f(self, a: int, b, *args, **kwargs) -> int:
        return a

    def g(a: int):
        return a

    assert missing_hints(f) == ["b", "args", "kwargs"]
    assert missing_hints(g) == ["return"]


# ---------------------------------------------------------------------------------------------
# the stubs against the compiled modules, without mypy


def stub_signatures(source):
    """Module-level names of a stub: name -> list of (parameter name, kind, has a default) for
    a function, None for a constant.

    Parameters
    ----------
    source : str
        The ``.pyi`` text.

    Returns
    -------
    dict
    """
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            a = node.args
            params = [(p.arg, "POSITIONAL_OR_KEYWORD") for p in a.posonlyargs + a.args]
            defaults = [False] * (len(params) - len(a.defaults)) + [True] * len(a.defaults)
            sig = [(n, k, d) for (n, k), d in zip(params, defaults)]
            if a.vararg:
                sig.append((a.vararg.arg, "VAR_POSITIONAL", False))
            sig += [(p.arg, "KEYWORD_ONLY", d is not None)
                    for p, d in zip(a.kwonlyargs, a.kw_defaults)]
            if a.kwarg:
                sig.append((a.kwarg.arg, "VAR_KEYWORD", False))
            out[node.name] = sig
        elif isinstance(node, ast.ClassDef):   # a class: its name (as the runtime's side has)
            out[node.name] = None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out[node.target.id] = None
        elif isinstance(node, ast.Assign):
            out.update({t.id: None for t in node.targets if isinstance(t, ast.Name)})
    return out


def runtime_signatures(module):
    """The same for a module object: its own names (dunders and imported modules aside).

    Parameters
    ----------
    module : module

    Returns
    -------
    dict
    """
    out = {}
    for name in dir(module):
        if name.startswith("__"):
            continue
        obj = getattr(module, name)
        if isinstance(obj, types.ModuleType):
            continue
        if callable(obj) and not isinstance(obj, type):
            out[name] = [(p.name, p.kind.name, p.default is not inspect.Parameter.empty)
                         for p in inspect.signature(obj).parameters.values()]
        else:
            out[name] = None
    return out


def stub_mismatches(stub, runtime):
    """What differs between a stub's names and signatures and the runtime's, sorted.

    Parameters
    ----------
    stub, runtime : dict
        As :func:`stub_signatures` and :func:`runtime_signatures` return.

    Returns
    -------
    list of str
    """
    bad = [f"{n}: not in the stub" for n in runtime if n not in stub]
    bad += [f"{n}: not in the module" for n in stub if n not in runtime]
    bad += [f"{n}: stub {stub[n]} != runtime {runtime[n]}" for n in stub
            if n in runtime and stub[n] != runtime[n]]
    return sorted(bad)


@pytest.mark.parametrize("name", COMPILED)
def test_stub_names_and_signatures_match_the_compiled_module(name):
    module = importlib.import_module(name)
    stub = Path(module.__file__).with_name(name.rpartition(".")[2] + ".pyi")
    assert stub.exists(), f"{stub} is not installed"
    got, want = stub_signatures(stub.read_text()), runtime_signatures(module)
    assert [n for n, s in want.items() if s is not None], "no function read from the module"
    assert stub_mismatches(got, want) == []


def test_stub_comparison_can_fail():
    runtime = runtime_signatures(importlib.import_module("fastcascade._kernels._noise"))
    stub = stub_signatures(textwrap.dedent("""
        NOISE_CODES: dict[str, int]
        EXTRA = 1
        def apply(irow, rrow, generator, z, t=0, times=None) -> bool: ...
        def _select_simd(level_cap, extra) -> int: ...
        def _simd_level() -> int: ...
    """))
    bad = stub_mismatches(stub, runtime)
    assert "EXTRA: not in the module" in bad
    assert "TIMING_CODES: not in the stub" in bad
    assert any(b.startswith("apply: stub") for b in bad)          # a parameter missing
    assert any(b.startswith("_select_simd: stub") for b in bad)   # one too many
    assert not any(b.startswith(("NOISE_CODES", "_simd_level")) for b in bad)


# ---------------------------------------------------------------------------------------------
# shipped


def test_py_typed_and_the_stubs_are_package_data():
    if not PYPROJECT.exists():
        pytest.skip("no pyproject.toml (not run from a checkout)")
    data = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"]
    assert "py.typed" in data["fastcascade"]
    assert "*.pyi" in data["fastcascade._kernels"]
    assert "mypy" in " ".join(tomllib.loads(PYPROJECT.read_text())["project"]
                              ["optional-dependencies"]["test"])
    installed = _installed_dir() / "fastcascade"
    assert (installed / "py.typed").exists()
    for name in COMPILED:
        assert (installed / "_kernels" / (name.rpartition(".")[2] + ".pyi")).exists()
