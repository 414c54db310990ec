"""Argument checks shared by the public API: each error is a
:class:`fastcascade.errors.ParameterError` (a ``ValueError``; :class:`ParameterTypeError` for
a value of the wrong type, also a ``TypeError``) naming the parameter, the value given and
what is allowed."""
from __future__ import annotations

import numbers
import os
from typing import Any

import numpy as np

from fastcascade.errors import ParameterError, ParameterTypeError

# integers reach the kernels as int64 / Py_ssize_t
INT64_MAX = 2 ** 63 - 1
_FALLBACK_MEMORY = 4 * 2 ** 30


def _owner(owner):
    return None if owner is None else repr(owner) if not isinstance(owner, str) else owner


def is_int(value):
    """True for an integer that is not a bool (Python or NumPy)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_positive_int(value: Any, name: str, owner: Any = None, allow_zero: bool = False,
                       high: int = INT64_MAX) -> int:
    """Return ``value`` as int in [1, high] ([0, high] with ``allow_zero``), or raise
    ParameterError naming ``name``."""
    low = 0 if allow_zero else 1
    what = "a non-negative integer" if allow_zero else "a positive integer"
    if high != INT64_MAX:
        what += f" <= {high}"
    elif is_int(value) and value > high:
        what += f" <= {high} (2**63 - 1)"
    if not is_int(value):
        raise ParameterTypeError(name, value, what, _owner(owner))
    if not low <= value <= high:
        raise ParameterError(name, value, what, _owner(owner))
    return int(value)


def check_int_list(values: Any, name: str, owner: Any = None, low: int = 0,
                   high: int = INT64_MAX) -> list[int]:
    """``values`` (an integer or an iterable of integers, not a string) as a list of ints in
    [low, high]; floats, bools and strings are refused rather than truncated."""
    what = f"integers in {low}..{high}"
    if isinstance(values, (str, bytes)):
        raise ParameterTypeError(name, values, what, _owner(owner))
    if isinstance(values, np.ndarray) and values.dtype.kind not in "iu":
        raise ParameterTypeError(name, values, what, _owner(owner),
                                 given=f"an array of dtype {values.dtype}")
    items = [values] if is_int(values) else values
    try:
        items = list(items)
    except TypeError:
        raise ParameterTypeError(name, values, what, _owner(owner)) from None
    for v in items:
        if not is_int(v):
            raise ParameterTypeError(name, values, what, _owner(owner))
        if not low <= v <= high:
            raise ParameterError(name, values, what, _owner(owner))
    return [int(v) for v in items]


def check_real(value: Any, name: str, owner: Any = None, low: float | None = None,
               high: float | None = None, low_open: bool = False, finite: bool = True) -> float:
    """Return ``value`` as float within [low, high] (open at low when low_open); NaN is always
    refused, infinities unless ``finite=False``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    lo = "" if low is None else (f"> {low}" if low_open else f">= {low}")
    hi = "" if high is None else f"<= {high}"
    rng = " and ".join(x for x in (lo, hi) if x)
    what = ("a finite real number" if finite else "a real number (not NaN)") \
        + (f" {rng}" if rng else "")
    if not ok:
        raise ParameterTypeError(name, value, what, _owner(owner))
    v = float(value)
    bad = np.isnan(v) or (finite and not np.isfinite(v)) \
        or (low is not None and (v < low or (low_open and v == low))) \
        or (high is not None and v > high)
    if bad:
        raise ParameterError(name, value, what, _owner(owner))
    return v


def check_bool(value, name, owner=None, allow_none=False):
    """Return ``value`` if it is True or False (or None with ``allow_none``)."""
    if isinstance(value, (bool, np.bool_)) or (allow_none and value is None):
        return None if value is None else bool(value)
    what = "None, True or False" if allow_none else "True or False"
    raise ParameterTypeError(name, value, what, _owner(owner))


def check_choice(value, name, choices, owner=None):
    try:
        ok = value in choices
    except TypeError:  # unhashable values
        ok = False
    if not ok:
        raise ParameterError(name, value, "one of " + ", ".join(repr(c) for c in choices),
                             _owner(owner))
    return value


def check_instance(value, name, cls, what, owner=None):
    """Return ``value`` if it is an instance of ``cls``, else a ParameterTypeError."""
    if not isinstance(value, cls):
        raise ParameterTypeError(name, value, what, _owner(owner))
    return value


def as_list_of(value, name, cls, what):
    """``value`` as a list: one ``cls`` instance alone becomes a list of one; a string, bytes, a
    dict or a non-iterable is refused (ParameterTypeError naming ``name`` and ``what``). The
    items themselves are not checked."""
    if isinstance(value, cls):
        return [value]
    if isinstance(value, (str, bytes, dict)):
        raise ParameterTypeError(name, value, what)
    try:
        return list(value)
    except TypeError:
        raise ParameterTypeError(name, value, what) from None


def as_float_array(a: Any, name: str, ndim: int | None = None, owner: Any = None,
                   finite: bool = False) -> np.ndarray:
    """float64, C-contiguous view or copy of ``a``; converts losslessly, rejects what it cannot
    (and NaN or infinite entries with ``finite=True``)."""
    what = "an array of real numbers" if ndim is None else f"a {ndim}-d array of real numbers"
    try:
        arr = np.asarray(a)
    except Exception as exc:  # ragged lists and the like
        raise ParameterTypeError(name, a, what, _owner(owner),
                                 given=f"{type(a).__name__} ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise ParameterTypeError(name, a, what, _owner(owner), given=f"dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ParameterError(name, a, what, _owner(owner), given=f"shape {arr.shape}")
    out = np.ascontiguousarray(arr, dtype=np.float64)
    if finite and not np.all(np.isfinite(out)):
        bad = int(np.flatnonzero(~np.isfinite(out.ravel()))[0])
        raise ParameterError(name, a, "finite numbers", _owner(owner),
                             given=f"{float(out.ravel()[bad])!r} at flat index {bad}")
    return out


def memory_limit():
    """Bytes a request may use: the machine's physical memory (``os.sysconf``), or 4 GiB when
    it cannot be read."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return _FALLBACK_MEMORY


def format_bytes(n):
    """``n`` bytes as a short string ("28.8 GB")."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def check_memory(parts, what, values=None):
    """Refuse a request before allocating: ``parts`` maps the parameter that makes each part of
    the memory to its size in bytes (``values`` maps it to the value given); when the total
    exceeds :func:`memory_limit`, raise a ParameterError naming the parameter of the largest
    part, the total and the limit. Returns the total."""
    total = sum(parts.values())
    limit = memory_limit()
    if total <= limit:
        return total
    param = max(parts, key=parts.get)
    detail = ", ".join(f"{format_bytes(b)} from {p}" for p, b in
                       sorted(parts.items(), key=lambda kv: -kv[1]) if b)
    raise ParameterError(param, (values or {}).get(param),
                         f"a request that fits in this machine's memory "
                         f"({format_bytes(limit)}, os.sysconf)",
                         given=f"{what} needing {format_bytes(total)} ({detail})")
