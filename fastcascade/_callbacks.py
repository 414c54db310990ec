"""Python-defined operators and noises on the compiled engine: errors and cost.

The compiled kernels call a Python-defined operator (``fc.ops.Operator`` with ``forward``) or
noise (``fc.noise.Noise`` with ``draw``) back with the GIL (``_ops.py_op_forward``,
``_ops.py_op_vjp``, ``_noise.apply_python``). A callback that raises cannot raise through the
nogil loop: the kernel records the exception and writes NaN, the run stops as diverged, and the
caller raises the exception here (:func:`raise_pending`). The callbacks also time themselves;
:func:`warn_cost` turns the figures into one ``PerformanceWarning`` per ``fc.run``.
"""
from __future__ import annotations

import warnings

from fastcascade._kernels import _noise, _ops
from fastcascade.diagnostics import PerformanceWarning

__all__ = ["python_parts", "reset", "take_pending", "raise_pending", "warn_cost"]


def python_parts(problem, perturbations=()):
    """The Python-defined operators and noises of a problem and its perturbations.

    Parameters
    ----------
    problem : fastcascade.Problem
        Its bound cascade is searched.
    perturbations : sequence of fastcascade.Perturbation, default ()
        Their noises are searched.

    Returns
    -------
    list of tuple
        ``(label, token, module)``: a description ("operator 2 (PyTanh(6))"), the callback
        token, and the kernel module that counts its calls (``_ops`` or ``_noise``).
    """
    parts = []
    for i, op in enumerate(problem.cascade.operators, start=1):
        if op.is_python:
            parts.append((f"operator {i} ({op!r})", op.callback_token(), _ops))
    for p in perturbations:
        if p.noise.is_python:
            parts.append((f"the noise {p.noise!r} at op={p.op} ({p.pass_})",
                          p.noise.callback_token(), _noise))
    return parts


def reset():
    """Clear the callbacks' pending errors and their call counters (before a run)."""
    _ops.take_callback_errors()
    _noise.take_callback_errors()
    _ops.callback_stats(reset=True)
    _noise.callback_stats(reset=True)


def take_pending():
    """The exceptions the callbacks recorded since the last call (then cleared).

    Returns
    -------
    list of BaseException
        Oldest first, the operators' then the noises'.
    """
    return _ops.take_callback_errors() + _noise.take_callback_errors()


def raise_pending():
    """Raise the first exception a callback recorded since the last call, if any.

    Raises
    ------
    Exception
        The callback's own exception (with its traceback), re-raised after the engine returned.
    """
    errors = take_pending()
    if errors:
        raise errors[0]


def warn_cost(parts, stacklevel=3):
    """One ``PerformanceWarning`` naming the GIL and the measured cost per callback call.

    Parameters
    ----------
    parts : list of tuple
        From :func:`python_parts`; nothing is warned when it is empty or nothing was called.
    stacklevel : int, default 3
        Passed to ``warnings.warn`` (3: the caller of the function that calls this).
    """
    stats = {_ops: _ops.callback_stats(), _noise: _noise.callback_stats()}
    lines, total_calls, total_seconds = [], 0, 0.0
    for label, token, module in parts:
        calls, seconds = stats[module].get(token, (0, 0.0))
        if calls:
            lines.append(f"{label}: {calls} calls, {1e6 * seconds / calls:.1f} us per call")
            total_calls += calls
            total_seconds += seconds
    if not lines:
        return
    if len(lines) > 3:
        lines = lines[:3] + [f"{len(lines) - 3} more; in all {total_calls} calls, "
                             f"{1e6 * total_seconds / total_calls:.1f} us per call"]
    warnings.warn("the compiled engine called Python-defined code back, taking the GIL "
                  "for each call (runs on other threads wait meanwhile): "
                  + "; ".join(lines), PerformanceWarning, stacklevel=stacklevel)
