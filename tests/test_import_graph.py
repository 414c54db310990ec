"""The package's import graph: floors, no cycles, every module importable alone (issue 16.5).

Each module of ``fastcascade`` stands on a floor (``FLOORS``). At module level a module may
import only from its own floor or lower ones, and the graph of module-level imports has no
cycle. A method may reach a higher floor with an import inside its body (``Result.save`` imports
``io``, ``Result.plot`` and ``SweepResult.plot`` import ``plotting``, ``io.load`` imports
``sweeper`` for a sweep folder): such imports run when the method is called, not when the
module loads, and are not edges of the graph.

The graph is read from the source with ``ast``: module-level statements only, class bodies
included (they run at import), function bodies and ``if TYPE_CHECKING:`` blocks excluded (they
do not run at import). The compiled modules' ``.pyx`` sources are read for their column-0
``import`` / ``cimport`` lines of ``fastcascade`` modules. The package face
(``fastcascade/__init__.py``) gathers everything and stands on the top floor.

Importing ``fastcascade.X`` runs the face first, which hides a module that only imports because
the face loaded its dependencies beforehand. So each module is imported in a fresh interpreter
twice over: under a bare package (the face's ``__init__`` not run, only the module's own
imports), where the modules it loads must all stand on its floor or lower; and, for the modules
the face does not load, as a user would (``import fastcascade.X``).

To see the graph: ``python -m pytest tests/test_import_graph.py -q -s -k print``.
"""
from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

PACKAGE = "fastcascade"
FACE = PACKAGE

# the floors, from the bottom: a module imports, at module level, only from its floor or lower
FLOORS = {
    0: ("errors", "_validation", "_kernels", "_kernels._engine", "_kernels._ops",
        "_kernels._types", "_kernels._noise", "_callbacks", "_version", "_jsonable", "_typing",
        "_blas", "_interrupt", "_progress", "diagnostics", "reference", "reference_engine"),
    1: ("ops", "noise", "timing", "magnitude", "reg", "schedules", "perturbation", "cascade",
        "datasets", "problem", "optim", "problems", "plan"),
    2: ("metrics", "result", "io", "verdicts"),
    3: ("runner", "sweeper", "theory", "simulator", "floor"),
    4: ("plotting", "figures", "experiments", "config", "cli", "bench", "info", ""),  # "": the face
}
FLOOR_OF = {(f"{PACKAGE}.{name}" if name else FACE): floor
            for floor, names in FLOORS.items() for name in names}


# ---------------------------------------------------------------------------------------------
# reading the graph


def package_dir():
    """The folder of the package the tests import (the installed one in CI)."""
    spec = importlib.util.find_spec(PACKAGE)
    return Path(list(spec.submodule_search_locations)[0])


def package_modules(root=None):
    """Every importable module of the package: name -> (source file, is a package).

    Python modules and packages by their ``.py`` files; compiled modules by their extension
    files, with their ``.pyx`` source as the file read (None when it is not shipped).
    """
    root = Path(root or package_dir())
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root.parent)
        if "__pycache__" in rel.parts:
            continue
        if path.suffix == ".py":
            parts = list(rel.with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts = parts[:-1]
            found[".".join(parts)] = (path, is_pkg)
        else:
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                if path.name.endswith(suffix):
                    stem = path.name[: -len(suffix)]
                    pyx = path.with_name(stem + ".pyx")
                    found[".".join(rel.parent.parts + (stem,))] = (
                        pyx if pyx.exists() else None, False)
                    break
    return found


def _is_type_checking(test):
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level(body):
    """The import statements that run when a module loads."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _module_level(node.orelse)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                yield from _module_level(getattr(node, field, []) or [])


def imports_of_source(source, module, is_package, known):
    """The ``known`` modules that ``source`` imports at module level.

    Parameters
    ----------
    source : str
        Python source text.
    module : str
        Its module name (to resolve relative imports).
    is_package : bool
        Whether it is a package's ``__init__``.
    known : collection of str
        The package's module names: ``from P import x`` is an edge to ``P.x`` when that is a
        module, else to ``P``.

    Returns
    -------
    set of str
    """
    base = module if is_package else module.rpartition(".")[0]
    out = set()
    for node in _module_level(ast.parse(source).body):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            if node.level:
                parts = base.split(".")[: len(base.split(".")) - node.level + 1]
                target = ".".join(parts + ([node.module] if node.module else []))
            else:
                target = node.module
            names = []
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                names.append(sub if sub in known else target)
        out.update(n for n in names if n in known and n != module)
    return out


_PYX_IMPORT = re.compile(r"^(?:from\s+([\w.]+)\s+c?import\s+(.*)|c?import\s+([\w.]+))",
                         re.M)


def imports_of_pyx(source, module, known):
    """The ``known`` modules a Cython source imports or cimports at column 0 (module level).

    Parameters
    ----------
    source : str
        Cython source text.
    module : str
        Its module name.
    known : collection of str
        The package's importable module names (``.pxd``-only names are not modules).

    Returns
    -------
    set of str
    """
    out = set()
    for m in _PYX_IMPORT.finditer(source):
        target = m.group(1) or m.group(3)
        candidates = [target]
        if m.group(2):
            names = re.findall(r"\w+", m.group(2).split("#")[0])
            candidates += [f"{target}.{n}" for n in names]
        out.update(c for c in candidates if c in known and c != module)
    return out


def import_graph(modules=None):
    """Module -> the package modules it imports at module level.

    Parameters
    ----------
    modules : dict, optional
        As :func:`package_modules` returns (default: this package's).

    Returns
    -------
    dict of str to set of str
    """
    modules = package_modules() if modules is None else modules
    graph = {}
    for name, (path, is_pkg) in modules.items():
        if path is None:
            graph[name] = set()
        elif path.suffix == ".pyx":
            graph[name] = imports_of_pyx(path.read_text(encoding="utf-8"), name, modules)
        else:
            graph[name] = imports_of_source(path.read_text(encoding="utf-8"), name, is_pkg,
                                            modules)
    return graph


def find_cycles(graph):
    """Every cycle of a directed graph, one per strongly connected component that has one.

    Parameters
    ----------
    graph : dict of str to iterable of str
        Node -> the nodes it points to.

    Returns
    -------
    list of list of str
        Each cycle as a path ``[a, b, ..., a]``, sorted.
    """
    index, low, on_stack, stack, comps = {}, {}, set(), [], []

    def visit(v):  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            comps.append(set(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for comp in comps:
        start = min(comp)
        if len(comp) == 1 and start not in graph.get(start, ()):
            continue
        cycles.append(_path_back(graph, comp, start))
    return sorted(cycles)


def _path_back(graph, comp, start):
    """A shortest path start -> ... -> start inside one strongly connected component."""
    prev, frontier = {}, [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph.get(v, ())):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return path[::-1] + [start]
                if w in comp and w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError("not a cycle")  # pragma: no cover


def floor_violations(graph, floor_of):
    """The edges that climb: a module importing one on a higher floor.

    Parameters
    ----------
    graph : dict of str to iterable of str
    floor_of : dict of str to int

    Returns
    -------
    list of str
        ``"a (floor i) imports b (floor j)"`` for each edge with j > i, sorted.
    """
    return sorted(f"{a} (floor {floor_of[a]}) imports {b} (floor {floor_of[b]})"
                  for a, targets in graph.items() for b in targets
                  if floor_of[b] > floor_of[a])


# ---------------------------------------------------------------------------------------------
# the package's graph


def test_every_module_has_a_floor():
    modules = set(package_modules())
    assert sorted(modules - set(FLOOR_OF)) == [], "modules without a floor in FLOORS"
    assert sorted(set(FLOOR_OF) - modules) == [], "FLOORS names modules that do not exist"


def test_the_graph_is_read():
    """The reader finds imports of each kind the package uses (a reader that found nothing
    would pass every check below)."""
    graph = import_graph()
    assert "fastcascade.result" in graph["fastcascade.io"]               # from X import Y
    assert "fastcascade.metrics" in graph["fastcascade.result"]          # from P import mod
    assert "fastcascade._kernels._ops" in graph["fastcascade._kernels._engine"]  # cimport
    assert "fastcascade.sweeper" in graph[FACE]
    assert sum(len(v) for v in graph.values()) > 100


def test_no_cycle_at_module_level():
    cycles = find_cycles(import_graph())
    for c in cycles:
        print("cycle:", " -> ".join(c))
    assert cycles == []


def test_no_module_imports_from_a_higher_floor():
    bad = floor_violations(import_graph(), FLOOR_OF)
    for line in bad:
        print(line)
    assert bad == []


def test_print_the_graph_by_floor():
    """Not a check: prints the floors and each module's imports (run with ``-s``)."""
    graph = import_graph()
    for floor in sorted(FLOORS, reverse=True):
        print(f"floor {floor}")
        for name in sorted(n for n, f in FLOOR_OF.items() if f == floor):
            print(f"  {name} -> {', '.join(sorted(graph[name])) or '-'}")


# ---------------------------------------------------------------------------------------------
# the checks can fail


def test_find_cycles_on_synthetic_graphs():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"a"}, "b": set()}) == [["a", "a"]]
    two = find_cycles({"a": {"b"}, "b": {"a"}, "x": {"y"}, "y": {"x"}})
    assert two == [["a", "b", "a"], ["x", "y", "x"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_floor_check_on_a_synthetic_violation():
    floor_of = {"low": 0, "mid": 1, "high": 2}
    assert floor_violations({"low": {"high"}, "mid": {"low"}, "high": {"mid"}}, floor_of) == [
        "low (floor 0) imports high (floor 2)"]
    assert floor_violations({"low": set(), "mid": {"mid", "low"}, "high": {"low"}},
                            floor_of) == []


def test_only_imports_that_run_at_load_are_edges():
    known = {"pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.d", "pkg.e", "pkg.f", "pkg.g"}
    source = textwrap.dedent("""
        import pkg.a
        from pkg import b, not_a_module
        from typing import TYPE_CHECKING
        try:
            from pkg.c import thing
        except ImportError:
            pass
        if TYPE_CHECKING:
            from pkg import e
        else:
            from . import g
        class K:
            from pkg import f
        def later():
            from pkg import d
    """)
    got = imports_of_source(source, "pkg.m", False, known)
    assert got == {"pkg", "pkg.a", "pkg.b", "pkg.c", "pkg.f", "pkg.g"}
    pyx = "from pkg.a cimport x, y\nimport numpy as np\ndef f():\n    from pkg import b\n"
    assert imports_of_pyx(pyx, "pkg.m", known) == {"pkg.a"}
    assert imports_of_pyx("from pkg cimport a, c  # note\n", "pkg.m", known) == {
        "pkg", "pkg.a", "pkg.c"}


def test_the_package_graph_check_fails_on_an_added_cycle(tmp_path):
    """A copy of the package with one upward import added at module level fails both checks."""
    root = tmp_path / PACKAGE
    for name, (path, _) in package_modules().items():
        if path is None or path.suffix == ".pyx":
            continue
        dest = root / path.relative_to(package_dir())
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    errors = root / "errors.py"
    errors.write_text(errors.read_text(encoding="utf-8") + "\nfrom fastcascade import runner\n",
                      encoding="utf-8")
    graph = import_graph(package_modules(root))
    cycles = find_cycles(graph)
    assert cycles and all("fastcascade.errors" in c and "fastcascade.runner" in c
                          for c in cycles)
    assert "fastcascade.errors (floor 0) imports fastcascade.runner (floor 3)" in \
        floor_violations(graph, FLOOR_OF)


# ---------------------------------------------------------------------------------------------
# each module alone, in a fresh interpreter

_CHILD = textwrap.dedent("""
    import importlib, importlib.util, json, sys
    name, bare = sys.argv[1], sys.argv[2] == "bare"
    if bare and name != "fastcascade":   # the package, its __init__ not run
        spec = importlib.util.find_spec("fastcascade")
        sys.modules["fastcascade"] = importlib.util.module_from_spec(spec)
    importlib.import_module(name)
    print(json.dumps(sorted(m for m in sys.modules
                            if m == "fastcascade" or m.startswith("fastcascade."))))
""")


def _import_alone(name, mode, cwd):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(package_dir().parent)]
                                        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run([sys.executable, "-c", _CHILD, name, mode], capture_output=True,
                          text=True, env=env, cwd=cwd)
    loaded = json.loads(proc.stdout.splitlines()[-1]) if proc.returncode == 0 else None
    return proc.returncode, loaded, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def imported_alone(tmp_path_factory):
    """(name, mode) -> (exit status, the package modules loaded, stderr), one fresh interpreter
    each; the modes: "bare" for every module, "user" for the face and the modules the face does
    not load. Two at a time."""
    cwd = tmp_path_factory.mktemp("fresh")   # not the checkout: the package the tests import
    names = sorted(package_modules())
    with ThreadPoolExecutor(max_workers=2) as pool:
        bare = dict(zip(names, pool.map(lambda n: _import_alone(n, "bare", cwd), names)))
        face_loads = set(bare[FACE][1] or ())
        user_names = [FACE] + [n for n in names if n not in face_loads]
        user = dict(zip(user_names, pool.map(lambda n: _import_alone(n, "user", cwd),
                                             user_names)))
    out = {(n, "bare"): r for n, r in bare.items()}
    out.update({(n, "user"): r for n, r in user.items()})
    return out


@pytest.mark.parametrize("name", sorted(package_modules()))
def test_each_module_imports_alone_in_a_fresh_interpreter(imported_alone, name):
    status, loaded, stderr = imported_alone[(name, "bare")]
    assert status == 0, f"import {name} (bare package) failed:\n{stderr}"
    assert name in loaded
    climbs = sorted(m for m in loaded if m != FACE and FLOOR_OF[m] > FLOOR_OF[name])
    assert climbs == [], f"importing {name} loads modules of higher floors"
    if (name, "user") in imported_alone:
        status, loaded, stderr = imported_alone[(name, "user")]
        assert status == 0, f"import {name} failed:\n{stderr}"


def test_the_fresh_interpreter_check_can_fail(tmp_path):
    """A module that needs the face's __init__ (``from fastcascade import __version__``) fails
    under the bare package, and an upward import shows among the loaded modules."""
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("__version__ = '1'\nfrom fastcascade import low\n")
    (pkg / "low.py").write_text("from fastcascade import __version__\n")
    (pkg / "climbs.py").write_text("from fastcascade import high\n")
    (pkg / "high.py").write_text("")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))

    def child(name, mode):
        return subprocess.run([sys.executable, "-c", _CHILD, name, mode], capture_output=True,
                              text=True, env=env, cwd=tmp_path)

    assert child("fastcascade.low", "user").returncode == 0
    failed = child("fastcascade.low", "bare")
    assert failed.returncode != 0 and "__version__" in failed.stderr
    climbs = child("fastcascade.climbs", "bare")
    assert climbs.returncode == 0
    assert "fastcascade.high" in json.loads(climbs.stdout.splitlines()[-1])
