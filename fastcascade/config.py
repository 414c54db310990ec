"""TOML configuration files for ``fastcascade run`` and ``fastcascade sweep``.

A configuration names the problem, the optimizer, the perturbations and the run settings; a
sweep adds a grid. Every key is checked before anything runs, and an error names the key
(``optimizer.step_size: expected a finite real number > 0.0, given -0.1``).

Schema (every section but ``problem`` is optional)::

    [problem]
    data = {kind = "synthetic_logistic", n_samples = 2000, n_features = 10, seed = 0}
    # or: data = {X = "X.npy", y = "y.npy"}    (paths relative to this file)
    cascade = ["Margin", "Softplus"]            # or tables: {kind = "Linear", d_in = 4, d_out = 8}
    regularizer = {kind = "NonConvex", rho = 1e-3}

    [optimizer]                                 # the fields of fc.SGD / fc.Adam
    kind = "SGD"
    step_size = 0.1
    grad_noise_std = 1e-3
    schedule = {kind = "InversePower", power = 0.5}

    [params]                                    # named values usable in expressions below
    sigma_f = 2.0

    [[perturbations]]                           # one table per perturbation
    op = 1
    pass = "forward"
    noise = {kind = "Uniform", low = "= -sigma_f / sqrt(10)", high = "= sigma_f / sqrt(10)"}
    timing = {kind = "Every", period = 100}     # any fc.timing kind; default Always
    granularity = "element"

    [run]
    n_iter = 20000
    seeds = [0, 1]                              # a list, or one int
    n_jobs = 2
    record_every = 10

    [sweep]
    grid = {step_size = [1.0, 0.3, 0.1], sigma_f = [0.0, 2.0]}

    [output]
    run = "results/logistic.npz"                # where `fastcascade run` writes its result
    sweep = "results/logistic"                  # the folder of `fastcascade sweep` (resumable)
    plot = "results/logistic.png"               # a plot of either

Kinds (``kind = "..."``) name classes of ``fc.ops``, ``fc.noise``, ``fc.timing``,
``fc.magnitude``, ``fc.reg`` and ``fc.schedules``, or functions of ``fc.datasets``, looked up by
name (case-insensitive), so new kinds need no change here; the other keys of the table are the
constructor's keywords, and a nested table with a ``kind`` (``Relative``'s ``dist``) is built the
same way. A string starting with ``=`` is an expression (numbers, + - * / ** %, sqrt, log, exp,
abs, min, max, int, pi) over the ``[params]`` values and the sweep's grid keys. Grid keys are
optimizer fields, run settings (``n_iter``, ``record_every``, ...) or names used in expressions.
Input paths are relative to the configuration file, output paths to the working directory.

Examples
--------
>>> import fastcascade as fc
>>> from fastcascade.config import parse_config
>>> job = parse_config('''
... [problem]
... data = {kind = "synthetic_logistic", n_samples = 200, n_features = 4}
... cascade = ["Margin", "Softplus"]
... [optimizer]
... step_size = 0.5
... [run]
... n_iter = 100
... ''')
>>> job.optimizer.step_size, job.run_kwargs["n_iter"]
(0.5, 100)
>>> parse_config('[optimizer]\\nstep_size = -1.0')
Traceback (most recent call last):
    ...
fastcascade.config.ConfigError: problem: missing section; expected [problem] with data and cascade
"""
from __future__ import annotations

import ast
import inspect
import math
import os
import re
import sys
from dataclasses import dataclass, field

import numpy as np

from fastcascade import datasets, magnitude, noise, ops, reg, schedules, timing
from fastcascade._jsonable import jsonable
from fastcascade._validation import check_choice, check_positive_int, check_real
from fastcascade.cascade import Cascade
from fastcascade.errors import ParameterError
from fastcascade.optim import SGD, Adam
from fastcascade.perturbation import Perturbation
from fastcascade.problem import Problem
from fastcascade.sweeper import _point_result, grid_points, sweep

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    try:
        import tomli as tomllib
    except ImportError:
        tomllib = None

__all__ = ["ConfigError", "Job", "load_config", "parse_config", "run_job", "sweep_job"]

SECTIONS = ("problem", "optimizer", "params", "perturbations", "run", "sweep", "output")
PROBLEM_KEYS = ("data", "cascade", "regularizer")
RUN_KEYS = ("n_iter", "seeds", "n_jobs", "record_every", "record_profile", "record_weights",
            "engine", "max_norm", "init")
PERTURBATION_KEYS = ("op", "pass", "noise", "timing", "granularity", "magnitude")
SWEEP_KEYS = ("grid",)
OUTPUT_KEYS = ("run", "sweep", "plot")


class ConfigError(ValueError):
    """An invalid configuration; ``key`` is the dotted path of the offending key and the
    message (one line) starts with it.

    Parameters
    ----------
    key : str
        Dotted path of the key (``"run.n_iter"``, ``"perturbations[0].noise"``); "" for none.
    message : str
        What is wrong, without the key; kept as ``detail``.
    """

    def __init__(self, key, message):
        self.key = key
        self.detail = message  # the message without the key
        super().__init__(f"{key}: {message}" if key else message)


# -- expressions --------------------------------------------------------------------------------
_FUNCS = {"sqrt": math.sqrt, "log": math.log, "log10": math.log10, "exp": math.exp,
          "abs": abs, "min": min, "max": max, "int": int, "float": float}
_CONSTS = {"pi": math.pi, "e": math.e}
# Bounds that keep every expression instant: integers stay within int64 (Python's big ints
# would let "10**10**10" run without end), floats overflow to an error, sources are short.
_MAX_INT = 2 ** 63
_MAX_SOURCE = 1000


def _power(a, b):
    """a ** b, refusing an integer power whose result would leave int64 before computing it."""
    ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (a, b))
    if ints and b > 0 and abs(a) > 1 and b * math.log2(abs(a)) > 63:
        raise OverflowError(f"{a} ** {b} is beyond the integer range (|result| < 2**63); "
                            f"write a float, e.g. {a}.0 ** {b}")
    return a ** b


_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
           ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
           ast.Pow: _power, ast.Mod: lambda a, b: a % b,
           ast.FloorDiv: lambda a, b: a // b}


def _bounded(value, text, key):
    """``value``, refused when it is an integer beyond int64 or a non-finite float."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _MAX_INT:
        raise ConfigError(key, f"{text!r}: an integer beyond the range |x| < 2**63")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(key, f"{text!r}: gives {value}, not a finite number")
    return value


def expression_names(text):
    """The variable names an ``= ...`` expression reads.

    Parameters
    ----------
    text : str
        The expression, its leading ``=`` included.

    Returns
    -------
    set of str
        Names read as variables (called functions and the constants pi, e excluded).
    """
    tree = ast.parse(text.lstrip()[1:].strip(), mode="eval")
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called} \
        - set(_CONSTS)


def evaluate(text, variables, key):
    """Value of an ``= ...`` expression (a small, safe arithmetic language).

    Every intermediate value is bounded (integers within int64, floats finite) and the source
    is at most 1000 characters, so an expression such as ``10**10**10`` is refused at once.

    Parameters
    ----------
    text : str
        The expression, its leading ``=`` included.
    variables : dict of str to number or str
        The names it may read (``[params]`` and grid values).
    key : str
        Dotted path of the key holding it, for the ConfigError.

    Returns
    -------
    int, float or str
    """
    source = text.lstrip()[1:].strip()
    if len(source) > _MAX_SOURCE:
        raise ConfigError(key, f"expression of {len(source)} characters; at most {_MAX_SOURCE}")
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, RecursionError, MemoryError):
        raise ConfigError(key, f"cannot parse the expression {text!r}") from None

    def ev(node):
        return _bounded(ev_node(node), text, key)

    def ev_node(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in variables:
                return variables[node.id]
            if node.id in _CONSTS:
                return _CONSTS[node.id]
            known = ", ".join(sorted(variables)) or "none"
            raise ConfigError(key, f"unknown name {node.id!r} in {text!r}: give it a value in "
                              f"[params] or the sweep grid (known: {known})")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            try:
                return _BINOPS[type(node.op)](left, right)
            except OverflowError as exc:
                detail = exc if "integer range" in str(exc) else "the result overflows a float"
                raise ConfigError(key, f"{text!r}: {detail}") from None
            except (ArithmeticError, TypeError, ValueError) as exc:
                raise ConfigError(key, f"{text!r}: {exc}") from None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in _FUNCS and not node.keywords:
            args = [ev(a) for a in node.args]
            try:
                return _FUNCS[node.func.id](*args)
            except (ArithmeticError, TypeError, ValueError) as exc:
                raise ConfigError(key, f"{text!r}: {exc}") from None
        raise ConfigError(key, f"unsupported syntax in the expression {text!r}")

    return ev(tree)


def _is_expr(value):
    return isinstance(value, str) and value.lstrip().startswith("=")


def _substitute(value, variables, key):
    """``value`` with every expression string evaluated (recursively in tables and lists)."""
    if _is_expr(value):
        return evaluate(value, variables, key)
    if isinstance(value, dict):
        return {k: _substitute(v, variables, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, variables, f"{key}[{i}]") for i, v in enumerate(value)]
    return value


def _names_in(value):
    if _is_expr(value):
        try:
            return expression_names(value)
        except SyntaxError:
            return set()
    if isinstance(value, dict):
        return set().union(*(_names_in(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_names_in(v) for v in value)) if value else set()
    return set()


# -- helpers ------------------------------------------------------------------------------------
_OWNER = re.compile(r"^'?(?:[A-Za-z_][\w.]*(?:\([^)]*\))?)'?: ")
_PARAM = re.compile(r"^([A-Za-z_]\w*(?:\[\d+\])?): ")


def _rekey(exc, path, owner_prefix=True):
    """A ConfigError at ``path`` from a constructor's ValueError: a ParameterError's ``param``
    extends the key; for other errors, a leading "Owner: param: " in the message does."""
    if isinstance(exc, ParameterError):
        key = f"{path}.{exc.param}" if path else exc.param
        return ConfigError(key, f"expected {exc.allowed}, given {exc.given}")
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if owner_prefix:
        m = _OWNER.match(msg)
        if m and _PARAM.match(msg[m.end():]):
            msg = msg[m.end():]
    m = _PARAM.match(msg)
    if m:
        return ConfigError(f"{path}.{m.group(1)}", msg[m.end():])
    return ConfigError(path, msg)


def _check_table(value, path, allowed=None):
    if not isinstance(value, dict):
        raise ConfigError(path, f"expected a table, given {_show(value)}")
    if allowed is not None:
        for k in value:
            if k not in allowed:
                raise ConfigError(f"{path}.{k}" if path else k,
                                  f"unknown key; expected one of {', '.join(allowed)}")
    return value


def _show(value):
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _classes(module, base):
    """name -> class of the public subclasses of ``base`` in ``module``, without the abstract
    ones (no ``kind`` of their own, and subclassed here: ``noise.Distribution``)."""
    out = {}
    for name in dir(module):
        obj = getattr(module, name)
        if isinstance(obj, type) and issubclass(obj, base) and obj is not base \
                and not name.startswith("_"):
            out[name] = obj
    return {name: cls for name, cls in out.items() if not _abstract(cls, out.values())}


def _abstract(cls, classes):
    return getattr(cls, "kind", None) is None and \
        any(other is not cls and issubclass(other, cls) for other in classes)


def _lookup(kind, choices, path, what):
    if not isinstance(kind, str):
        raise ConfigError(f"{path}.kind", f"expected the name of {what}, given {_show(kind)}")
    if kind in choices:
        return choices[kind]
    folded = {k.lower().replace("_", ""): v for k, v in choices.items()}
    key = kind.lower().replace("_", "")
    if key in folded:
        return folded[key]
    for v in choices.values():  # a class's own short name ("uniform", "every")
        if getattr(v, "kind", None) == kind:
            return v
    raise ConfigError(f"{path}.kind", f"unknown {what} {kind!r}; expected one of "
                      f"{', '.join(sorted(choices))}")


def _build(spec, path, choices, what, nested=None):
    """An object from ``"Name"`` or ``{kind = "Name", key = value, ...}``."""
    if isinstance(spec, str):
        spec = {"kind": spec}
    spec = _check_table(spec, path)
    if "kind" not in spec:
        raise ConfigError(f"{path}.kind", f"missing; expected the name of {what} "
                          f"({', '.join(sorted(choices))})")
    cls = _lookup(spec["kind"], choices, path, what)
    kwargs = {}
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    for k, v in spec.items():
        if k == "kind":
            continue
        if params and not accepts_any and k not in params:
            names = [p for p in params if p != "self"]
            raise ConfigError(f"{path}.{k}", f"unknown key for {cls.__name__}; expected "
                              f"{', '.join(names) or 'no keys'}")
        if isinstance(v, dict) and "kind" in v and nested is not None:
            v = _build(v, f"{path}.{k}", nested, what)
        elif isinstance(v, list) and k in ("betas",):
            v = tuple(v)
        kwargs[k] = v
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise _rekey(exc, path) from None
    except TypeError as exc:
        raise ConfigError(path, f"{cls.__name__}: {exc}") from None


def _raw_at(tables, key):
    """The raw value at a key path such as ``perturbations[0].noise.std`` (None if absent)."""
    m = re.match(r"perturbations\[(\d+)\](.*)$", key or "")
    if not m or int(m.group(1)) >= len(tables):
        return None
    value = tables[int(m.group(1))]
    for part in filter(None, m.group(2).split(".")):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


# -- the job ------------------------------------------------------------------------------------
@dataclass
class Job:
    """A checked configuration, ready to run.

    Parameters
    ----------
    problem : fastcascade.Problem
        From ``[problem]``.
    optimizer : fastcascade.optim.Optimizer
        From ``[optimizer]``.
    perturbations : list of Perturbation or TomlPerturbations
        ``[]`` without ``[[perturbations]]`` tables, else the callable that builds them.
    params : dict
        ``[params]``: values the expressions read.
    run_kwargs : dict
        ``[run]`` settings passed to ``fc.run`` / ``fc.sweep`` (n_iter, record_every,
        record_profile, ..., init).
    seeds : list
        The runs' seeds.
    n_jobs : int
        Threads.
    grid : dict
        ``[sweep.grid]``: name to list of values.
    output : dict
        ``[output]`` paths (run, sweep, plot).
    source : dict, default {}
        The raw configuration as parsed, stored with the results.
    """

    problem: object
    optimizer: object
    perturbations: object           # a list of Perturbation, or a TomlPerturbations
    params: dict
    run_kwargs: dict                # n_iter, record_every, record_profile, ..., init
    seeds: list
    n_jobs: int
    grid: dict
    output: dict
    source: dict = field(default_factory=dict)


class TomlPerturbations:
    """The ``[[perturbations]]`` tables of a configuration as a callable
    ``(**grid values) -> list of Perturbation`` (picklable plain data, for any executor).

    Parameters
    ----------
    tables : list of dict
        The raw tables as TOML parsed them.
    params : dict
        ``[params]`` values; grid values given at call time override them.
    n_ops : int
        N of the problem's cascade, to check each ``op``.
    """

    def __init__(self, tables, params, n_ops):
        self.tables = tables
        self.params = dict(params)
        self.n_ops = n_ops

    def names(self):
        """The variable names the tables' expressions read.

        Returns
        -------
        set of str
        """
        return _names_in(self.tables)

    def __call__(self, **values):
        variables = dict(self.params)
        variables.update(values)
        return [_perturbation(t, f"perturbations[{k}]", variables, self.n_ops)
                for k, t in enumerate(self.tables)]

    def __repr__(self):
        return f"TomlPerturbations({self.tables!r}, params={self.params!r})"


def _perturbation(table, path, variables, n_ops):
    table = _check_table(table, path, PERTURBATION_KEYS + ("pass_",))
    table = _substitute(table, variables, path)
    if "op" not in table:
        raise ConfigError(f"{path}.op", "missing; expected an operator index")
    op = table["op"]
    if not isinstance(op, int) or isinstance(op, bool) or not 1 <= op <= n_ops:
        raise ConfigError(f"{path}.op", f"expected an operator index in 1..{n_ops}, "
                          f"given {_show(op)}")
    pass_ = table.get("pass", table.get("pass_", "forward"))
    if "noise" not in table:
        raise ConfigError(f"{path}.noise", "missing; expected a table such as "
                          "{kind = \"Uniform\", low = -0.3, high = 0.3}")
    noises = _classes(noise, noise.Noise)
    nz = _build(table["noise"], f"{path}.noise", noises, "noise kind", nested=noises)
    kwargs = {"op": op, "pass_": pass_, "noise": nz}
    if "timing" in table:
        kwargs["timing"] = _build(table["timing"], f"{path}.timing",
                                  _classes(timing, timing.Timing), "timing kind")
    if "magnitude" in table:
        kwargs["magnitude"] = _build(table["magnitude"], f"{path}.magnitude",
                                     _classes(magnitude, magnitude.Magnitude), "magnitude kind")
    if "granularity" in table:
        kwargs["granularity"] = table["granularity"]
    try:
        return Perturbation(**kwargs)
    except ValueError as exc:
        err = _rekey(exc, path)
        if err.key == f"{path}.pass_":
            err = ConfigError(f"{path}.pass", err.detail)
        raise err from None


def _problem(section, base_dir):
    section = _check_table(section, "problem", PROBLEM_KEYS)
    for key in ("data", "cascade"):
        if key not in section:
            raise ConfigError(f"problem.{key}", "missing")
    data_spec = _check_table(section["data"], "problem.data")
    if "kind" in data_spec:
        makers = {name: getattr(datasets, name) for name in getattr(datasets, "__all__", [])
                  if inspect.isfunction(getattr(datasets, name)) and name != "as_dataset"}
        fn = _lookup(data_spec["kind"], makers, "problem.data", "dataset")
        kwargs = {k: v for k, v in data_spec.items() if k != "kind"}
        params = inspect.signature(fn).parameters
        for k in kwargs:
            if k not in params:
                raise ConfigError(f"problem.data.{k}", f"unknown key for {fn.__name__}; "
                                  f"expected {', '.join(params)}")
        try:
            data = fn(**kwargs)
        except ValueError as exc:
            raise _rekey(exc, "problem.data", owner_prefix=False) from None
        except TypeError as exc:
            raise ConfigError("problem.data", f"{fn.__name__}: {exc}") from None
    else:
        _check_table(data_spec, "problem.data", ("X", "y"))
        if "X" not in data_spec:
            raise ConfigError("problem.data", "expected kind = \"<dataset>\" or X = "
                              "\"X.npy\" (and y = \"y.npy\")")
        arrays = []
        for key in ("X", "y"):
            if key not in data_spec:
                continue
            p = data_spec[key]
            if not isinstance(p, str):
                raise ConfigError(f"problem.data.{key}", f"expected a .npy path, given {_show(p)}")
            full = p if os.path.isabs(p) else os.path.join(base_dir, p)
            try:
                arrays.append(np.load(full, allow_pickle=False))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"problem.data.{key}", f"cannot read {full}: {exc}") from None
        try:
            data = datasets.Dataset(*arrays, name=os.path.basename(data_spec["X"]))
        except ValueError as exc:
            raise _rekey(exc, "problem.data", owner_prefix=False) from None
    cascade_spec = section["cascade"]
    if not isinstance(cascade_spec, list) or not cascade_spec:
        raise ConfigError("problem.cascade", f"expected a list of operators, given "
                          f"{_show(cascade_spec)}")
    op_classes = _classes(ops, ops.Operator)
    op_list = [_build(s, f"problem.cascade[{i}]", op_classes, "operator")
               for i, s in enumerate(cascade_spec)]
    regularizer = None
    if "regularizer" in section:
        r = section["regularizer"]
        if not (isinstance(r, str) and r.lower() in ("none", "")):
            regularizer = _build(r, "problem.regularizer", _classes(reg, reg.Regularizer),
                                 "regularizer")
    try:
        cascade = Cascade(op_list)
        return Problem(cascade, data, regularizer=regularizer)
    except ParameterError as exc:
        m = re.match(r"operators\[(\d+)\](.*)$", exc.param)
        if m:
            raise ConfigError(f"problem.cascade[{m.group(1)}]{m.group(2)}",
                              f"{exc.owner + ': ' if exc.owner else ''}expected "
                              f"{exc.allowed}, given {exc.given}") from None
        raise _rekey(exc, "problem") from None
    except ValueError as exc:
        msg = str(exc)
        m = re.match(r"operator (\d+) \(", msg)
        if m:
            return_key = f"problem.cascade[{int(m.group(1)) - 1}]"
            raise ConfigError(return_key, msg) from None
        raise ConfigError("problem", msg) from None


def _optimizer(section):
    section = dict(_check_table(section, "optimizer"))
    kind = section.pop("kind", "SGD")
    cls = _lookup(kind, {"SGD": SGD, "Adam": Adam}, "optimizer", "optimizer")
    fields = cls.fields()
    for k in section:
        if k not in fields:
            raise ConfigError(f"optimizer.{k}", f"unknown key for {cls.__name__}; expected "
                              f"kind, {', '.join(fields)}")
    if "step_size" not in section and cls is SGD:
        raise ConfigError("optimizer.step_size", "missing; expected a number > 0")
    if "schedule" in section:
        section["schedule"] = _build(section["schedule"], "optimizer.schedule",
                                     _classes(schedules, schedules.Schedule), "schedule")
    if "betas" in section and isinstance(section["betas"], list):
        section["betas"] = tuple(section["betas"])
    try:
        return cls(**section)
    except ValueError as exc:
        raise _rekey(exc, "optimizer") from None


def _run_section(section):
    section = _check_table(section, "run", RUN_KEYS)
    out = {}
    try:
        if "n_iter" in section:
            out["n_iter"] = check_positive_int(section["n_iter"], "n_iter")
        if "record_every" in section:
            out["record_every"] = check_positive_int(section["record_every"], "record_every")
        for flag in ("record_profile", "record_weights"):
            if flag in section:
                v = section[flag]
                if not isinstance(v, bool):
                    raise ValueError(f"{flag}: expected true or false, given {v!r}")
                out[flag] = v
        if "engine" in section:
            out["engine"] = check_choice(section["engine"], "engine", ("cython", "numpy"))
        if "max_norm" in section:
            out["max_norm"] = check_real(section["max_norm"], "max_norm", low=0.0,
                                         low_open=True, finite=False)
        if "init" in section:
            out["init"] = check_choice(section["init"], "init", ("zeros", "random"))
        seeds = section.get("seeds", 0)
        if isinstance(seeds, list):
            if not seeds:
                raise ValueError("seeds: expected at least one seed, given []")
            for s in seeds:
                check_positive_int(s, "seeds", allow_zero=True)
        else:
            check_positive_int(seeds, "seeds", allow_zero=True)
            seeds = [seeds]
        n_jobs = section.get("n_jobs", 1)
        if n_jobs != -1:
            check_positive_int(n_jobs, "n_jobs")
    except ValueError as exc:
        raise _rekey(exc, "run", owner_prefix=False) from None
    return out, list(seeds), n_jobs


def parse_config(text, base_dir=".", source_name="<config>"):
    """A checked :class:`Job` from TOML text.

    Parameters
    ----------
    text : str
        The TOML document.
    base_dir : str, default "."
        Folder that relative data paths are read from.
    source_name : str, default "<config>"
        Name of the source in a TOML syntax error.

    Returns
    -------
    Job

    Raises
    ------
    ConfigError
        On the first invalid key; ``str(err)`` is one line that starts with the key's path.
    """
    if tomllib is None:  # pragma: no cover
        raise ConfigError("", "reading TOML needs Python >= 3.11 or the tomli package")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("toml", f"{source_name}: {exc}") from None
    return build_job(raw, base_dir)


def load_config(path):
    """A checked :class:`Job` from a TOML file (see the module docstring for the schema).

    Parameters
    ----------
    path : str or os.PathLike
        The file; relative data paths in it are read from its folder.

    Returns
    -------
    Job
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError("", f"{path}: cannot read ({exc.strerror or exc})") from None
    return parse_config(text, os.path.dirname(os.path.abspath(path)), path)


def build_job(raw, base_dir="."):
    """A checked :class:`Job` from a configuration dict (as TOML parses it).

    The perturbations are built at every grid point here, so that errors come before any run.

    Parameters
    ----------
    raw : dict
        The parsed configuration.
    base_dir : str, default "."
        Folder that relative data paths are read from.

    Returns
    -------
    Job
    """
    for k in raw:
        if k not in SECTIONS:
            raise ConfigError(k, f"unknown section; expected one of {', '.join(SECTIONS)}")
    if "problem" not in raw:
        raise ConfigError("problem", "missing section; expected [problem] with data and "
                          "cascade")
    problem = _problem(raw["problem"], base_dir)
    optimizer = _optimizer(raw.get("optimizer", {}))
    params = dict(_check_table(raw.get("params", {}), "params"))
    for k, v in params.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise ConfigError(f"params.{k}", f"expected a number or a string, given {_show(v)}")
        if k in SECTIONS or k in RUN_KEYS:
            where = f"the section [{k}]" if k in SECTIONS else f"[run] {k}"
            raise ConfigError(f"params.{k}", f"a [params] value named like {where}; move it "
                              f"there, or rename it")
    run_kwargs, seeds, n_jobs = _run_section(raw.get("run", {}))
    tables = raw.get("perturbations", [])
    if isinstance(tables, dict):
        tables = [tables]
    if not isinstance(tables, list):
        raise ConfigError("perturbations", f"expected [[perturbations]] tables, given "
                          f"{_show(tables)}")
    perts = TomlPerturbations(tables, params, problem.cascade.n_ops)

    sweep_section = _check_table(raw.get("sweep", {}), "sweep", SWEEP_KEYS)
    grid = _check_table(sweep_section.get("grid", {}), "sweep.grid")
    used = perts.names()
    opt_fields = optimizer.fields()
    sweep_run_keys = ("n_iter", "record_every", "record_profile", "record_weights", "engine",
                      "max_norm", "init")
    for k, values in grid.items():
        path = f"sweep.grid.{k}"
        if not isinstance(values, list) or not values:
            raise ConfigError(path, f"expected a non-empty list of values, given {_show(values)}")
        if k in opt_fields:
            for i, v in enumerate(values):
                try:
                    optimizer.replace(**{k: v})
                except ValueError as exc:
                    raise ConfigError(f"{path}[{i}]", _rekey(exc, "").detail) from None
        elif k in sweep_run_keys:
            for i, v in enumerate(values):
                try:
                    _run_section({k: v})
                except ConfigError as exc:
                    raise ConfigError(f"{path}[{i}]", exc.detail) from None
        elif k not in used:
            raise ConfigError(path, f"not an optimizer field ({', '.join(opt_fields)}), a run "
                              f"setting ({', '.join(sweep_run_keys)}) nor a name used in "
                              f"[[perturbations]] expressions"
                              + (f" ({', '.join(sorted(used))})" if used else ""))
    # build the perturbations at every grid point now, so that errors come before any run
    var_keys = [k for k in grid if k not in opt_fields and k not in sweep_run_keys]
    for point in grid_points({k: grid[k] for k in var_keys}) or [{}]:
        try:
            perts(**point)
        except ConfigError as exc:
            if point and _names_in(_raw_at(tables, exc.key)) & set(point):
                where = ", ".join(f"{k}={v}" for k, v in point.items())
                raise ConfigError(exc.key, f"{exc.detail} (at {where})") from None
            raise
    if "n_iter" not in run_kwargs and "n_iter" not in grid:
        raise ConfigError("run.n_iter", "missing; expected a positive integer")
    output = dict(_check_table(raw.get("output", {}), "output", OUTPUT_KEYS))
    for k, v in output.items():
        if not isinstance(v, str):
            raise ConfigError(f"output.{k}", f"expected a path, given {_show(v)}")
    return Job(problem, optimizer, perts if tables else [], params, run_kwargs, seeds, n_jobs,
               grid, output, raw)


# -- running ------------------------------------------------------------------------------------
def _source_config(job):
    return jsonable(job.source)


def sweep_job(job, out=None, n_jobs=None, progress=None, executor=None, overwrite=False):
    """Run a job's sweep (its grid, or a single point when it has none), writing each run to
    ``out`` (default ``[output] sweep``) as it finishes.

    Parameters
    ----------
    job : Job
        A checked configuration (:func:`load_config`).
    out : str or os.PathLike, optional
        Folder of the sweep (resumable); default the job's ``[output] sweep``, none when unset.
    n_jobs : int, optional
        Threads; default the job's ``[run] n_jobs`` (-1: one per core).
    progress : None or bool, optional
        A progress bar on stderr (tqdm); None shows it when stderr is a terminal and the runs
        last more than a few seconds.
    executor : concurrent.futures.Executor, optional
        Where to run the runs instead of threads (see ``fc.sweep``).
    overwrite : bool
        Replace the runs of another configuration in ``out`` (refused otherwise).

    Returns
    -------
    fastcascade.SweepResult
    """
    out = job.output.get("sweep") if out is None else out
    perts = job.perturbations
    if not job.grid and isinstance(perts, TomlPerturbations):
        perts = perts()
    sw = sweep(job.problem, job.optimizer, grid=job.grid, seeds=job.seeds,
               perturbations=perts, n_jobs=job.n_jobs if n_jobs is None else n_jobs,
               executor=executor, out=out, progress=progress, overwrite=overwrite,
               metadata={"source": _source_config(job)}, **job.run_kwargs)
    return sw


def run_job(job, n_jobs=None, progress=None):
    """Run a job without its grid: one Result over its seeds (the ``[params]`` values fill the
    expressions). The runs go through the sweep machinery, one per seed, so a progress bar can
    follow them; the Result equals ``fc.run`` with the same settings.

    Parameters
    ----------
    job : Job
        A checked configuration (:func:`load_config`).
    n_jobs : int, optional
        Threads; default the job's ``[run] n_jobs`` (-1: one per core).
    progress : None or bool, optional
        A progress bar on stderr (tqdm); None shows it when stderr is a terminal and the runs
        last more than a few seconds.

    Returns
    -------
    fastcascade.Result
        Its ``config["source"]`` holds the raw configuration. After Ctrl-C it holds the seeds
        that finished, and its attribute ``interrupted`` is True.

    Raises
    ------
    KeyboardInterrupt
        After Ctrl-C when no seed finished.
    """
    perts = job.perturbations() if isinstance(job.perturbations, TomlPerturbations) \
        else job.perturbations
    sw = sweep(job.problem, job.optimizer, grid={}, seeds=job.seeds, perturbations=perts,
               n_jobs=job.n_jobs if n_jobs is None else n_jobs, progress=progress,
               **job.run_kwargs)
    if sw.results:
        res = sw.results[0]
    elif sw.partial_runs.get(0):  # Ctrl-C: the seeds that finished
        res = _point_result(sw.partial_runs[0])
    else:
        raise KeyboardInterrupt
    res.interrupted = sw.interrupted
    for key in ("grid", "sweep"):
        res.config.pop(key, None)
    res.config["source"] = _source_config(job)
    return res
