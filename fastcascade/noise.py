"""What a perturbation draws: the noise kinds (PAPER.md Eq. 5, delta_i and eps_i).

A kind is one compiled kernel branch in ``fastcascade/_kernels/_noise.pyx`` plus one small class
here, which knows its kernel code, its parameters and its NumPy twin (``draw``), consuming the
stream exactly as the kernel does.

Examples
--------
>>> import fastcascade as fc
>>> fc.noise.Uniform(-0.3, 0.3)
Uniform(low=-0.3, high=0.3)
"""
from __future__ import annotations

import numpy as np

from fastcascade._kernels import _noise
from fastcascade._validation import check_real

__all__ = ["Noise", "Uniform", "Gaussian"]


class Noise:
    """Base class of additive noise kinds: the perturbation adds ``draw(gen, shape)``."""

    kind = None

    def params(self):
        """The kernel's four real parameters."""
        raise NotImplementedError

    def draw(self, gen, shape):
        """NumPy twin of the kernel's draws (same stream, same order)."""
        raise NotImplementedError

    @property
    def code(self):
        return _noise.NOISE_CODES[self.kind]

    def mean(self):
        """E[draw]."""
        raise NotImplementedError

    def variance(self):
        """Var[draw]."""
        raise NotImplementedError

    def __eq__(self, other):
        return type(self) is type(other) and self.params() == other.params()

    def __hash__(self):
        return hash((type(self).__name__, tuple(self.params())))


class Uniform(Noise):
    """U(low, high): ``low + (high - low) * U(0, 1)``."""

    kind = "uniform"

    def __init__(self, low, high):
        self.low = check_real(low, "low", "Uniform")
        self.high = check_real(high, "high", "Uniform")
        if self.high < self.low:
            raise ValueError(f"Uniform: high: expected >= low ({self.low!r}), given {high!r}")

    def params(self):
        return [self.low, self.high, 0.0, 0.0]

    def draw(self, gen, shape):
        return self.low + (self.high - self.low) * gen.random(shape)

    def mean(self):
        return 0.5 * (self.low + self.high)

    def variance(self):
        return (self.high - self.low) ** 2 / 12.0

    def __repr__(self):
        return f"Uniform(low={self.low!r}, high={self.high!r})"


class Gaussian(Noise):
    """N(mean, std^2): ``mean + std * N(0, 1)`` (numpy's ziggurat normal)."""

    kind = "gaussian"

    def __init__(self, mean=0.0, std=1.0):
        self.mu = check_real(mean, "mean", "Gaussian")
        self.std = check_real(std, "std", "Gaussian", low=0.0)

    def params(self):
        return [self.mu, self.std, 0.0, 0.0]

    def draw(self, gen, shape):
        return self.mu + self.std * gen.standard_normal(shape)

    def mean(self):
        return self.mu

    def variance(self):
        return self.std ** 2

    def __repr__(self):
        return f"Gaussian(mean={self.mu!r}, std={self.std!r})"
