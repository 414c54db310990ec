"""The error raised for a bad argument: it names the parameter, the value given and what is
allowed, as attributes and in its one-line message.

Examples
--------
>>> from fastcascade.errors import ParameterError
>>> err = ParameterError("n_iter", -1, "a positive integer")
>>> str(err), err.param, err.value
('n_iter: expected a positive integer, given -1', 'n_iter', -1)
>>> isinstance(err, ValueError)
True
"""
from __future__ import annotations

__all__ = ["ParameterError", "ParameterTypeError", "show_value"]

_MAX_SHOWN = 80


def show_value(value):
    """A short repr of ``value`` for a message (long reprs cut to 80 characters).

    Parameters
    ----------
    value : object
        Anything; a repr that raises is shown as ``<type name>``.

    Returns
    -------
    str
        One line (whitespace runs collapsed), at most 80 characters.
    """
    try:
        text = repr(value)
    except Exception:  # a repr that fails must not hide the error being reported
        text = f"<{type(value).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


class ParameterError(ValueError):
    """A parameter given a value it does not accept.

    Parameters
    ----------
    param : str
        The parameter's name as the caller spells it (``"n_iter"``, ``"bits"``,
        ``"perturbations[0].noise.k"``).
    value : object
        The value given.
    allowed : str
        What is allowed, as a phrase (``"a positive integer"``).
    owner : str, optional
        The class or function the parameter belongs to (``"BitFlip"``); it prefixes the message.
    given : str, optional
        How to show the value, when its repr is not the clearest (``"shape (3, 2)"``).

    Attributes
    ----------
    param, value, allowed, owner
    """

    def __init__(self, param, value, allowed, owner=None, given=None):
        self.param = param
        self.value = value
        self.allowed = allowed
        self.owner = owner
        self.given = show_value(value) if given is None else given
        prefix = f"{owner}: " if owner else ""
        super().__init__(f"{prefix}{param}: expected {allowed}, given {self.given}")

    def __reduce__(self):  # picklable across process executors
        return (type(self), (self.param, self.value, self.allowed, self.owner, self.given))


class ParameterTypeError(ParameterError, TypeError):
    """A parameter given a value of the wrong type (both a ``ValueError`` and a
    ``TypeError``).

    Parameters
    ----------
    param : str
        The parameter's name as the caller spells it.
    value : object
        The value given.
    allowed : str
        What is allowed, as a phrase (``"a fastcascade.ops.Operator"``).
    owner : str, optional
        The class or function the parameter belongs to; it prefixes the message.
    given : str, optional
        How to show the value, when its repr is not the clearest.
    """
