"""fastcascade: SGD on operator cascades with perturbed forward and backward passes.

See README.md for a tour; PAPER.md's Eq. 5 is the step the engine implements.
"""
from fastcascade import datasets, magnitude, noise, ops, reference, reg, schedules, timing
from fastcascade import problems, theory
from fastcascade.cascade import Cascade
from fastcascade.info import build_info
from fastcascade.optim import SGD, Adam
from fastcascade.perturbation import Perturbation
from fastcascade.problem import Problem
from fastcascade.result import Result
from fastcascade.run import PerturbedGradient, perturbed_gradient, run

__version__ = "0.1.0"

__all__ = ["Cascade", "Problem", "Perturbation", "SGD", "Adam", "Result", "PerturbedGradient",
           "run", "perturbed_gradient", "build_info", "datasets", "magnitude", "noise", "ops",
           "problems", "reference", "reg", "schedules", "theory", "timing", "__version__"]
