"""Every public callable of the package has a NumPy-style docstring (issue 13.4).

The public API is every name in ``fastcascade.__all__`` plus, for each public submodule
``fastcascade.X`` (no leading underscore; the compiled ``fastcascade._kernels`` is excluded), the
classes and functions that the submodule defines itself (``__module__`` is the submodule), and
every public method, property, classmethod and staticmethod of those classes, inherited ones
included when a class of the package defines them. Dunder methods are skipped; ``__init__`` is
documented in the class docstring.

Rules, each checked on every object and reported all at once, sorted:

- ``empty``: the object has no docstring of its own (an override must say what it does);
- ``Parameters``: a function or method whose signature has parameters besides ``self``/``cls``
  has a ``Parameters`` section naming each of them (``*args``/``**kwargs`` by that name, with or
  without the stars); a class whose ``__init__`` takes parameters names them in the class
  docstring's ``Parameters`` section;
- ``Returns``: a function whose own body (nested functions excluded) has ``return <value>`` has a
  ``Returns`` or ``Yields`` section; a generator has a ``Yields`` or ``Returns`` section.
  Properties are exempt from both section rules: a one-line summary is enough.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import textwrap
import types

import fastcascade as fc

PACKAGE = "fastcascade"
EXCLUDED = ("fastcascade._kernels",)
_HEADER = re.compile(r"^(\w[\w ]*)\n-{3,}\s*$", re.M)


# ---------------------------------------------------------------------------------------------
# parsing a NumPy-style docstring


def sections(doc):
    """Map each section title of a NumPy-style docstring to its body (dedented text).

    Parameters
    ----------
    doc : str
        The docstring, raw or cleaned by ``inspect.cleandoc``.

    Returns
    -------
    dict of str to str
        Title (``"Parameters"``, ``"Returns"``, ...) to the text up to the next title.
    """
    text = inspect.cleandoc(doc or "")
    lines = text.splitlines()
    found, start_of = [], {}
    for k in range(len(lines) - 1):
        title, rule = lines[k].strip(), lines[k + 1].strip()
        if title and re.fullmatch(r"-{3,}", rule) and len(rule) >= len(title) - 1:
            found.append(k)
            start_of[k] = title
    out = {}
    for n, k in enumerate(found):
        end = found[n + 1] if n + 1 < len(found) else len(lines)
        out[start_of[k]] = textwrap.dedent("\n".join(lines[k + 2:end]))
    return out


def documented_parameters(doc, title="Parameters"):
    """Names listed in a docstring section, one entry per unindented ``name : type`` line.

    Parameters
    ----------
    doc : str
        The docstring.
    title : str
        The section to read (``"Parameters"`` or ``"Other Parameters"``).

    Returns
    -------
    set of str
        The names, backslashes and leading stars removed (``\\*\\*kwargs`` gives ``kwargs``).
    """
    body = sections(doc).get(title, "")
    names = set()
    for line in body.splitlines():
        if not line.strip() or line[0].isspace():
            continue
        head = line.split(" : ")[0].split(":")[0] if " : " in line else line
        for name in head.split(","):
            name = name.replace("\\", "").strip().lstrip("*")
            if name:
                names.add(name)
    return names


# ---------------------------------------------------------------------------------------------
# what a function's source says


def _own_nodes(func_node):
    """The nodes of a function's body, not descending into nested functions or classes."""
    nested = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
    stack = [n for n in func_node.body if not isinstance(n, nested)]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(c for c in ast.iter_child_nodes(node) if not isinstance(c, nested))


def _function_node(func):
    try:
        source = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        return None
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return node
    return None


def returns_a_value(func):
    """Whether the function's own body has ``return <value>`` (``return None`` does not count).

    Parameters
    ----------
    func : function
        A Python function (unwrapped).

    Returns
    -------
    bool
        True when a ``return`` statement with a value other than the constant None exists.
    """
    node = _function_node(func)
    if node is None:
        return False
    for sub in _own_nodes(node):
        if isinstance(sub, ast.Return) and sub.value is not None:
            if not (isinstance(sub.value, ast.Constant) and sub.value.value is None):
                return True
    return False


def is_generator(func):
    """Whether the function's own body yields."""
    node = _function_node(func)
    return node is not None and any(isinstance(n, (ast.Yield, ast.YieldFrom))
                                    for n in _own_nodes(node))


def signature_names(func, bound):
    """The explicit parameter names of ``func``, ``*args``/``**kwargs`` by their names.

    Parameters
    ----------
    func : callable
        The function.
    bound : bool
        True when the first parameter is ``self`` or ``cls`` and is left out.

    Returns
    -------
    list of str
        The names, in signature order.
    """
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return []
    if bound and params:
        params = params[1:]
    return [p.name for p in params]


# ---------------------------------------------------------------------------------------------
# the checks


def check_function(name, func, bound=False):
    """Offences of one function or method.

    Parameters
    ----------
    name : str
        The dotted name reported.
    func : function
        The function; a ``staticmethod``/``classmethod`` must be unwrapped first.
    bound : bool
        True for an instance method or a classmethod (the first parameter is skipped).

    Returns
    -------
    list of str
        ``"<name>: <rule>"`` for each broken rule.
    """
    func = inspect.unwrap(func)
    doc = func.__doc__
    if not doc or not doc.strip():
        return [f"{name}: empty"]
    out = []
    listed = documented_parameters(doc) | documented_parameters(doc, "Other Parameters")
    missing = [p for p in signature_names(func, bound) if p not in listed]
    if missing:
        out.append(f"{name}: Parameters lacks {', '.join(missing)}")
    found = sections(doc)
    if (returns_a_value(func) or is_generator(func)) and not ({"Returns", "Yields"} & set(found)):
        out.append(f"{name}: Returns")
    return out


def _init_owner(cls):
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            return klass
    return object


def check_class(name, cls, ours=None):
    """Offences of a class's own docstring: non-empty, constructor parameters named.

    Parameters
    ----------
    name : str
        The dotted name reported.
    cls : type
        The class.
    ours : callable, optional
        ``ours(klass)`` is True for a class whose ``__init__`` is checked; default: the
        package's classes (an ``__init__`` inherited from ``object`` or ``Exception`` is not).

    Returns
    -------
    list of str
        ``"<name>: <rule>"`` for each broken rule.
    """
    doc = cls.__doc__
    if not doc or not doc.strip():
        return [f"{name}: empty"]
    owner = _init_owner(cls)
    if not (ours or _ours)(owner):
        return []
    params = signature_names(vars(owner)["__init__"], bound=True)
    listed = documented_parameters(doc) | documented_parameters(doc, "Other Parameters")
    missing = [p for p in params if p not in listed]
    return [f"{name}: Parameters lacks {', '.join(missing)}"] if missing else []


def _ours(obj):
    module = getattr(obj, "__module__", None) or ""
    return (module == PACKAGE or module.startswith(PACKAGE + ".")) and \
        not module.startswith(EXCLUDED)


def members(cls, ours=None):
    """The public methods and properties of ``cls`` defined by classes of the package.

    Parameters
    ----------
    cls : type
        A public class.
    ours : callable, optional
        ``ours(klass)`` is True for a class whose attributes are checked; default: the
        package's classes, the compiled ``_kernels`` excluded.

    Returns
    -------
    list of tuple
        ``(defining class, attribute name, raw attribute)``, one per name, the one that
        attribute lookup on ``cls`` finds.
    """
    seen, out = set(), []
    for klass in cls.__mro__:
        for attr, raw in vars(klass).items():
            if attr.startswith("_") or attr in seen:
                continue
            seen.add(attr)
            if (ours or _ours)(klass):
                out.append((klass, attr, raw))
    return out


def check_member(klass, attr, raw):
    """Offences of one class attribute (method, property, classmethod or staticmethod).

    Parameters
    ----------
    klass : type
        The class whose ``__dict__`` holds the attribute.
    attr : str
        Its name.
    raw : object
        The attribute as stored in the class ``__dict__``.

    Returns
    -------
    list of str
        ``"<name>: <rule>"`` for each broken rule; empty for data attributes.
    """
    name = f"{klass.__module__}.{klass.__qualname__}.{attr}"
    if isinstance(raw, property):
        doc = raw.__doc__ or (raw.fget.__doc__ if raw.fget else None)
        return [] if doc and doc.strip() else [f"{name}: empty"]
    if isinstance(raw, staticmethod):
        return check_function(name, raw.__func__, bound=False)
    if isinstance(raw, classmethod):
        return check_function(name, raw.__func__, bound=True)
    if isinstance(raw, types.FunctionType):
        return check_function(name, raw, bound=True)
    return []


def public_modules():
    """The package and its public submodules (no leading underscore), imported.

    Returns
    -------
    list of module
        ``fastcascade`` first, then the submodules in name order.
    """
    names = sorted(m.name for m in pkgutil.iter_modules(fc.__path__) if not m.name.startswith("_"))
    return [fc] + [importlib.import_module(f"{PACKAGE}.{n}") for n in names]


def public_objects():
    """The public classes and functions: ``fc.__all__`` and each submodule's own names.

    Returns
    -------
    list of tuple
        ``(dotted name, object)``, each object once.
    """
    found, seen = [], set()

    def add(name, obj):
        if id(obj) in seen or not (inspect.isclass(obj) or inspect.isfunction(obj)):
            return
        if not _ours(obj):
            return
        seen.add(id(obj))
        found.append((name, obj))

    for name in fc.__all__:
        obj = getattr(fc, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            add(f"{obj.__module__}.{obj.__qualname__}", obj)
    for module in public_modules()[1:]:
        for name, obj in vars(module).items():
            if not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__:
                add(f"{module.__name__}.{name}", obj)
    return found


def offenders(objects, ours=None):
    """Every broken rule of the given public objects and their members, sorted.

    Parameters
    ----------
    objects : iterable of tuple
        ``(dotted name, class or function)``.
    ours : callable, optional
        Which classes count as the package's, for constructors and inherited members (see
        `members`).

    Returns
    -------
    list of str
        ``"<dotted name>: <rule>"``, sorted, each member checked once.
    """
    out, checked = [], set()
    for name, obj in objects:
        if inspect.isclass(obj):
            out += check_class(name, obj, ours)
            for klass, attr, raw in members(obj, ours):
                key = (klass, attr)
                if key not in checked:
                    checked.add(key)
                    out += check_member(klass, attr, raw)
        else:
            out += check_function(name, obj)
    return sorted(set(out))


# ---------------------------------------------------------------------------------------------
# the tests


def test_every_public_callable_has_a_numpy_docstring():
    bad = offenders(public_objects())
    assert bad == [], f"{len(bad)} offenders:\n" + "\n".join(bad)


def test_the_walk_reaches_the_api_the_issue_names():
    names = {name for name, _ in public_objects()}
    for needle in ("fastcascade.noise.Gaussian", "fastcascade.timing.At",
                   "fastcascade.result.Result", "fastcascade.runner.run",
                   "fastcascade.sweeper.sweep", "fastcascade.io.load"):
        assert needle in names, needle
    assert not any(n.startswith("fastcascade._") for n in names)
    assert not any("._kernels" in n for n in names)


# deliberately undocumented or half-documented objects: the checker must flag each


def _bare(a, b=1, *rest, **options):
    return a + b


def _half(a, b):
    """Adds.

    Parameters
    ----------
    a : float
        First.
    """
    return a + b


def _documented(a, **kwargs):
    """Sum of ``a`` and the keyword values.

    Parameters
    ----------
    a : float
        The start.
    **kwargs : float
        Added to ``a``.

    Returns
    -------
    float
        The sum.
    """
    return a + sum(kwargs.values())


def _nested_return_only():
    """Builds a closure; only the closure returns a value."""
    def inner():
        return 1
    inner()


def _yields(n):
    """Counts.

    Parameters
    ----------
    n : int
        How far.
    """
    yield from range(n)


class _Undocumented:
    def __init__(self, size):
        self.size = size

    def grow(self, by):
        return self.size + by

    @property
    def double(self):
        return 2 * self.size

    @staticmethod
    def make(size):
        """Builds one."""
        return _Undocumented(size)


class _NoConstructorParameters:
    """Documented, but not its constructor's parameter."""

    def __init__(self, level):
        self.level = level


class _Child(_Undocumented):
    """A child.

    Parameters
    ----------
    size : int
        The size.
    """

    def grow(self, by):
        return self.size


def test_the_checker_flags_undocumented_dummies():
    bad = offenders([("dummy._bare", _bare), ("dummy._half", _half),
                     ("dummy._documented", _documented),
                     ("dummy._nested_return_only", _nested_return_only),
                     ("dummy._yields", _yields), ("dummy._Undocumented", _Undocumented),
                     ("dummy._Child", _Child),
                     ("dummy._NoConstructorParameters", _NoConstructorParameters)],
                    ours=lambda klass: klass.__module__ == __name__)
    # members are reported by their defining class, whatever module it is in
    bad = sorted(b.replace(f"{__name__}.", "dummy.") for b in bad)
    assert bad == sorted([
        "dummy._bare: empty",
        "dummy._half: Parameters lacks b",
        "dummy._half: Returns",
        "dummy._yields: Returns",
        "dummy._Undocumented: empty",
        "dummy._NoConstructorParameters: Parameters lacks level",
        "dummy._Child.grow: empty",
        "dummy._Undocumented.double: empty",
        "dummy._Undocumented.grow: empty",
        "dummy._Undocumented.make: Parameters lacks size",
        "dummy._Undocumented.make: Returns",
    ])


def test_the_checker_reads_numpy_sections():
    doc = """Summary.

    Parameters
    ----------
    x, y : float
        Coordinates.
    \\*\\*kwargs
        Passed on.

    Returns
    -------
    float
    """
    assert documented_parameters(doc) == {"x", "y", "kwargs"}
    assert set(sections(doc)) == {"Parameters", "Returns"}
    assert returns_a_value(_documented) and not returns_a_value(_nested_return_only)
    assert is_generator(_yields) and not is_generator(_bare)
    assert signature_names(_bare, bound=False) == ["a", "b", "rest", "options"]
