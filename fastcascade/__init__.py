"""fastcascade: SGD on operator cascades with perturbed forward and backward passes.

See README.md for a tour; docs/model.md is the model (Eq. 5: the engine's step).
"""
from fastcascade import datasets, magnitude, metrics, noise, ops, reference, reg, schedules
from fastcascade import plotting, problems, theory, timing  # plotting imports matplotlib lazily
from fastcascade.cascade import Cascade
from fastcascade.diagnostics import PerformanceWarning, PerturbationWarning
from fastcascade.errors import ParameterError, ParameterTypeError
from fastcascade.info import build_info
from fastcascade.io import load
from fastcascade.optim import SGD, Adam
from fastcascade.perturbation import Perturbation
from fastcascade.plan import Plan
from fastcascade.problem import Problem
from fastcascade.result import Result
from fastcascade.simulator import Simulator
from fastcascade.runner import PerturbedGradient, perturbed_gradient, run
from fastcascade.sweeper import SweepResult, sweep
from fastcascade import experiments
from fastcascade._version import __version__


def get_include():
    """The directory of fastcascade's C headers, for building a compiled operator.

    A user's extension module that cimports ``fastcascade.extension`` (the ``fc_operator``
    struct of ``fastcascade_operator.h``) adds it to its include directories; see
    ``examples/compiled_operator/setup.py``.

    Returns
    -------
    str
        The absolute path of ``fastcascade/include``.

    Examples
    --------
    >>> import os, fastcascade as fc
    >>> os.path.exists(os.path.join(fc.get_include(), "fastcascade_operator.h"))
    True
    """
    import os
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")

__all__ = ["Cascade", "Problem", "Perturbation", "Plan", "SGD", "Adam", "Result", "SweepResult",
           "ParameterError", "ParameterTypeError", "PerturbationWarning", "PerformanceWarning",
           "PerturbedGradient", "Simulator", "run", "sweep", "load", "perturbed_gradient",
           "build_info",
           "metrics", "plotting", "datasets", "magnitude", "noise", "ops", "experiments",
           "problems", "reference", "reg", "schedules", "theory", "timing", "get_include",
           "__version__"]
