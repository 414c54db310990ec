"""Argument checks shared by the public API: each error names the parameter, the value given and
what is allowed."""
from __future__ import annotations

import numbers

import numpy as np


def _owner(owner):
    return "" if owner is None else f"{owner!r}: "


def check_positive_int(value, name, owner=None, allow_zero=False):
    """Return ``value`` as int, or raise ValueError naming ``name``."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if not ok or value < (0 if allow_zero else 1):
        what = "a non-negative integer" if allow_zero else "a positive integer"
        raise ValueError(f"{_owner(owner)}{name}: expected {what}, given {value!r}")
    return int(value)


def check_real(value, name, owner=None, low=None, high=None, low_open=False, finite=True):
    """Return ``value`` as float within [low, high] (open at low when low_open)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    v = float(value) if ok else None
    if ok and finite and not np.isfinite(v):
        ok = False
    if ok and low is not None and (v < low or (low_open and v == low)):
        ok = False
    if ok and high is not None and v > high:
        ok = False
    if not ok:
        lo = "" if low is None else (f"> {low}" if low_open else f">= {low}")
        hi = "" if high is None else f"<= {high}"
        rng = " and ".join(x for x in (lo, hi) if x)
        what = "a finite real number" + (f" {rng}" if rng else "")
        raise ValueError(f"{_owner(owner)}{name}: expected {what}, given {value!r}")
    return v


def check_choice(value, name, choices, owner=None):
    if value not in choices:
        raise ValueError(f"{_owner(owner)}{name}: expected one of "
                         f"{', '.join(repr(c) for c in choices)}, given {value!r}")
    return value


def as_float_array(a, name, ndim=None, owner=None):
    """float64, C-contiguous view or copy of ``a``; converts losslessly, rejects what it cannot."""
    try:
        arr = np.asarray(a)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{_owner(owner)}{name}: expected an array of numbers, given "
                         f"{type(a).__name__} ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{_owner(owner)}{name}: expected real numbers, given dtype {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{_owner(owner)}{name}: expected a {ndim}-d array, given shape "
                         f"{arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float64)
