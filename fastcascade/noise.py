"""What a perturbation does to the values it strikes (delta_i and eps_i of Eq. 5,
docs/model.md sec. 2).

Two families, both usable at any site (operator and pass):

- **Distributions** draw values that are added (``z + draw``), or multiply (``Relative``:
  ``z (1 + draw)``): ``Uniform``, ``Gaussian``, ``Laplace``, ``StudentT``, ``Rademacher``,
  ``Constant`` (a pure bias).
- **Transforms** rewrite the value, and the perturbation is ``Q(z) - z`` as in the paper:
  ``LowPrecision`` (float16, bfloat16, float8 e4m3 / e5m2, float32), ``FixedPoint``, the
  compressors ``TopK``, ``RandK``, ``ScaledSign`` (per sample), and ``BitFlip`` faults.

A kind is one compiled kernel branch in ``fastcascade/_kernels/_noise.pyx`` plus one small class
here, holding its kernel code and parameters and its NumPy twin (``draw`` or ``transform``),
which consumes the random stream exactly as the kernel does.

Examples
--------
>>> import numpy as np, fastcascade as fc
>>> fc.noise.LowPrecision("bfloat16").transform(np.array([[1.0 + 2**-9]]), None)
array([[1.]])
>>> fc.noise.TopK(1).transform(np.array([[0.5, -2.0, 1.0]]), None)
array([[ 0., -2.,  0.]])
"""
from __future__ import annotations

import numpy as np

from fastcascade._kernels import _noise
from fastcascade._validation import (check_bool, check_choice, check_instance, check_int_list,
                                     check_positive_int, check_real)
from fastcascade.errors import ParameterError

__all__ = ["Noise", "Distribution", "Transform", "Uniform", "Gaussian", "Laplace", "StudentT",
           "Rademacher", "Constant", "Relative", "LowPrecision", "FixedPoint", "TopK", "RandK",
           "ScaledSign", "BitFlip", "FORMATS"]

ROUNDINGS = ("nearest", "stochastic")


class Noise:
    """Base class of every perturbation kind, built-in or defined in Python by a user.

    Built-in subclasses set ``kind`` (the kernel branch), ``mode`` ("additive" or "relative")
    and ``is_transform``; the kernel reads ``code``, ``params()`` and ``aux()``.

    A **Python-defined noise** is a subclass (not of ``Distribution`` or ``Transform``) that
    defines ``draw(rng, x) -> delta``: given the run's
    ``numpy.random.Generator`` for the pass (forward or backward noise, docs/model.md sec. 3)
    and the site's values ``x`` (B, d; read-only), it returns the perturbation delta (B, d),
    and the site's values become ``x + m_t delta`` (m_t the perturbation's magnitude, 1 by
    default). A quantiser Q is ``delta = Q(x) - x``. It may also define ``mean()`` and
    ``variance()`` of one entry of delta where it knows them (and ``fourth_moment()``,
    E[delta_j^4]): ``fc.theory.perturbation_moments`` uses them. On the compiled engine it is
    called back with the GIL on the same generator (its state exchanged before and after the
    call), so both engines draw the same numbers; it takes ``granularity="element"`` only.

    Examples
    --------
    >>> import numpy as np, fastcascade as fc
    >>> class Dither(fc.noise.Noise):
    ...     def __init__(self, a):
    ...         self.a = a
    ...     def draw(self, rng, x):
    ...         return rng.uniform(-self.a, self.a, size=x.shape)
    >>> Dither(0.1).is_python, Dither(0.1).kind
    (True, 'python')
    """

    kind: str | None = None
    mode = "additive"
    is_transform = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # (the built-in classes that define draw set kind in their own body)
        if ("draw" in cls.__dict__ and "kind" not in cls.__dict__
                and not issubclass(cls, (Distribution, Transform))):
            cls.kind = "python"

    @property
    def is_python(self):
        """Whether the noise is Python-defined (the compiled kernels call it back)."""
        return self.kind == "python"

    @property
    def code(self):
        """The integer code of ``kind`` in the compiled noise kernel."""
        return _noise.NOISE_CODES[self.kind]

    def callback_token(self):
        """The token by which the compiled kernels find this Python-defined noise.

        Registered on first use (a weak reference: the registry does not keep it alive).

        Returns
        -------
        int
            A positive int below 2**62.
        """
        token = self.__dict__.get("_callback_token")
        if token is None:
            token = self.__dict__["_callback_token"] = _noise.register_python_noise(self)
        return token

    def __setstate__(self, state):
        self.__dict__.update(state)
        token = state.get("_callback_token")
        if token is not None:   # unpickled or copied: registered in this process
            self.__dict__["_callback_token"] = _noise.register_python_noise(self, token)

    def _public_state(self):
        return {k: v for k, v in self.__dict__.items() if k != "_callback_token"}

    def params(self):
        """The kernel's four real parameters: none for this kind (all 0.0).

        Returns
        -------
        list of float
            Four values, unused slots 0.0.
        """
        return [0.0, 0.0, 0.0, 0.0]

    def aux(self):
        """The kernel's two integer parameters: none for this kind, ``(0, 0)``; a
        Python-defined noise's token and 0.

        Returns
        -------
        tuple of int
            Two values, unused slots 0.
        """
        if self.is_python:
            return (self.callback_token(), 0)
        return (0, 0)

    def __eq__(self, other):
        return type(self) is type(other) and self._public_state() == other._public_state()

    def __hash__(self):
        if self.is_python:
            return hash(type(self).__name__)
        return hash((type(self).__name__, tuple(self.params()), self.aux()))


# ---------------------------------------------------------------------------------------------
# Distributions


class Distribution(Noise):
    """Values drawn and added to the perturbed block (see ``fc.Perturbation`` for how many)."""

    kind: str | None = None

    def draw(self, gen, shape):
        """NumPy twin of the kernel's draws: ``shape`` values of this distribution, from ``gen``, in
        the kernel's order.

        Parameters
        ----------
        gen : numpy.random.Generator
            The PCG64 stream of the site's pass: forward noise for ``pass_="forward"``, backward
            noise for ``pass_="backward"`` (docs/model.md sec. 3).
        shape : tuple of int
            ``(B, d)`` for granularity "element", ``(B,)`` for "sample", ``(d,)`` for "step".

        Returns
        -------
        numpy.ndarray
            float64 array of ``shape``, before the magnitude m_t is applied.
        """
        raise NotImplementedError

    def mean(self):
        """E[draw], the mean of one draw: to be given by each subclass.

        Returns
        -------
        float
        """
        raise NotImplementedError

    def variance(self):
        """Var[draw], the variance of one draw: to be given by each subclass.

        Returns
        -------
        float
        """
        raise NotImplementedError


class Uniform(Distribution):
    """U(low, high): ``low + (high - low) U(0, 1)``.

    Parameters
    ----------
    low : float
        Lower end of the interval.
    high : float
        Upper end, ``>= low`` (``low == high`` draws the constant ``low``).
    """

    kind = "uniform"

    def __init__(self, low, high):
        self.low = check_real(low, "low", "Uniform")
        self.high = check_real(high, "high", "Uniform")
        if self.high < self.low:
            raise ParameterError("high", high, f">= low ({self.low!r})", "Uniform")

    def params(self):
        """The kernel's four real parameters: ``[low, high, 0, 0]``.

        Returns
        -------
        list of float
            Four values, unused slots 0.0.
        """
        return [self.low, self.high, 0.0, 0.0]

    def draw(self, gen, shape):
        """NumPy twin of the kernel's draws: ``low + (high - low) * gen.random(shape)``, one
        uniform per value.

        Parameters
        ----------
        gen : numpy.random.Generator
            The PCG64 stream of the site's pass: forward noise for ``pass_="forward"``, backward
            noise for ``pass_="backward"`` (docs/model.md sec. 3).
        shape : tuple of int
            ``(B, d)`` for granularity "element", ``(B,)`` for "sample", ``(d,)`` for "step".

        Returns
        -------
        numpy.ndarray
            float64 array of ``shape``, before the magnitude m_t is applied.
        """
        return self.low + (self.high - self.low) * gen.random(shape)

    def mean(self):
        """Mean of one draw: ``(low + high) / 2``.

        Returns
        -------
        float
        """
        return 0.5 * (self.low + self.high)

    def variance(self):
        """Variance of one draw: ``(high - low)**2 / 12``.

        Returns
        -------
        float
        """
        return (self.high - self.low) ** 2 / 12.0

    def __repr__(self):
        return f"Uniform(low={self.low!r}, high={self.high!r})"


class Gaussian(Distribution):
    """N(mean, std^2): ``mean + std N(0, 1)`` (numpy's ziggurat normal).

    Parameters
    ----------
    mean : float, default 0.0
        The mean, stored as ``mu``.
    std : float, default 1.0
        The standard deviation, ``>= 0``.
    """

    kind = "gaussian"

    def __init__(self, mean=0.0, std=1.0):
        self.mu = check_real(mean, "mean", "Gaussian")
        self.std = check_real(std, "std", "Gaussian", low=0.0)

    def params(self):
        """The kernel's four real parameters: ``[mean, std, 0, 0]``.

        Returns
        -------
        list of float
            Four values, unused slots 0.0.
        """
        return [self.mu, self.std, 0.0, 0.0]

    def draw(self, gen, shape):
        """NumPy twin of the kernel's draws: ``mean + std * gen.standard_normal(shape)``.

        Parameters
        ----------
        gen : numpy.random.Generator
            The PCG64 stream of the site's pass: forward noise for ``pass_="forward"``, backward
            noise for ``pass_="backward"`` (docs/model.md sec. 3).
        shape : tuple of int
            ``(B, d)`` for granularity "element", ``(B,)`` for "sample", ``(d,)`` for "step".

        Returns
        -------
        numpy.ndarray
            float64 array of ``shape``, before the magnitude m_t is applied.
        """
        return self.mu + self.std * gen.standard_normal(shape)

    def mean(self):
        """Mean of one draw: ``mean`` (stored as ``mu``).

        Returns
        -------
        float
        """
        return self.mu

    def variance(self):
        """Variance of one draw: ``std**2``.

        Returns
        -------
        float
        """
        return self.std ** 2

    def __repr__(self):
        return f"Gaussian(mean={self.mu!r}, std={self.std!r})"


class Laplace(Distribution):
    """Laplace(loc, scale): density exp(-|x - loc| / scale) / (2 scale).

    Parameters
    ----------
    loc : float, default 0.0
        The location (mean and median).
    scale : float, default 1.0
        The scale b, ``>= 0``.
    """

    kind = "laplace"

    def __init__(self, loc=0.0, scale=1.0):
        self.loc = check_real(loc, "loc", "Laplace")
        self.scale = check_real(scale, "scale", "Laplace", low=0.0)

    def params(self):
        """The kernel's four real parameters: ``[loc, scale, 0, 0]``.

        Returns
        -------
        list of float
            Four values, unused slots 0.0.
        """
        return [self.loc, self.scale, 0.0, 0.0]

    def draw(self, gen, shape):
        """NumPy twin of the kernel's draws: ``gen.laplace(loc, scale, shape)``.

        Parameters
        ----------
        gen : numpy.random.Generator
            The PCG64 stream of the site's pass: forward noise for ``pass_="forward"``, backward
            noise for ``pass_="backward"`` (docs/model.md sec. 3).
        shape : tuple of int
            ``(B, d)`` for granularity "element", ``(B,)`` for "sample", ``(d,)`` for "step".

        Returns
        -------
        numpy.ndarray
            float64 array of ``shape``, before the magnitude m_t is applied.
        """
        return gen.laplace(self.loc, self.scale, shape)

    def mean(self):
        """Mean of one draw: ``loc``.

        Returns
        -------
        float
        """
        return self.loc

    def variance(self):
        """Variance of one draw: ``2 scale**2``.

        Returns
        -------
        float
        """
        return 2.0 * self.scale ** 2

    def __repr__(self):
        return f"Laplace(loc={self.loc!r}, scale={self.scale!r})"


class StudentT(Distribution):
    """``scale`` times Student's t with ``df`` degrees of freedom: heavy tails (rare spikes).

    Parameters
    ----------
    df : float
        Degrees of freedom, ``> 0``; the mean exists for ``df > 1``, the variance for ``df > 2``.
    scale : float, default 1.0
        Multiplies the standard t draw, ``>= 0``.
    """

    kind = "student_t"

    def __init__(self, df, scale=1.0):
        self.df = check_real(df, "df", "StudentT", low=0.0, low_open=True)
        self.scale = check_real(scale, "scale", "StudentT", low=0.0)

    def params(self):
        """The kernel's four real parameters: ``[df, scale, 0, 0]``.

        Returns
        -------
        list of float
            Four values, unused slots 0.0.
        """
        return [self.df, self.scale, 0.0, 0.0]

    def draw(self, gen, shape):
        """NumPy twin of the kernel's draws: ``scale * gen.standard_t(df, shape)``.

        Parameters
        ----------
        gen : numpy.random.Generator
            The PCG64 stream of the site's pass: forward noise for ``pass_="forward"``, backward
            noise for ``pass_="backward"`` (docs/model.md sec. 3).
        shape : tuple of int
            ``(B, d)`` for granularity "element", ``(B,)`` for "sample", ``(d,)`` for "step".

        Returns
        -------
        numpy.ndarray
            float64 array of ``shape``, before the magnitude m_t is applied.
        """
        return self.scale * gen.standard_t(self.df, shape)

    def mean(self):
        """Mean of one draw: 0.0 for ``df > 1``, NaN (undefined) otherwise.

        Returns
        -------
        float
        """
        return 0.0 if self.df > 1 else np.nan

    def variance(self):
        """Variance of one draw: ``scale**2 df / (df - 2)`` for ``df > 2``, inf for ``1 < df <= 2``,
        NaN for ``df <= 1``.

        Returns
        -------
        float
        """
        if self.df > 2:
            return self.scale ** 2 * self.df / (self.df - 2.0)
        return np.inf if self.df > 1 else np.nan

    def __repr__(self):
        return f"StudentT(df={self.df!r}, scale={self.scale!r})"


class Rademacher(Distribution):
    """+scale or -scale with probability 1/2 each.

    Parameters
    ----------
    scale : float, default 1.0
        The magnitude of every draw, ``>= 0``.
    """

    kind = "rademacher"

    def __init__(self, scale=1.0):
        self.scale = check_real(scale, "scale", "Rademacher", low=0.0)

    def params(self):
        """The kernel's four real parameters: ``[scale, 0, 0, 0]``.

        Returns
        -------
        list of float
            Four values, unused slots 0.0.
        """
        return [self.scale, 0.0, 0.0, 0.0]

    def draw(self, gen, shape):
        """NumPy twin of the kernel's draws: ``+scale`` where ``gen.random(shape) < 0.5``, else
        ``-scale``.

        Parameters
        ----------
        gen : numpy.random.Generator
            The PCG64 stream of the site's pass: forward noise for ``pass_="forward"``, backward
            noise for ``pass_="backward"`` (docs/model.md sec. 3).
        shape : tuple of int
            ``(B, d)`` for granularity "element", ``(B,)`` for "sample", ``(d,)`` for "step".

        Returns
        -------
        numpy.ndarray
            float64 array of ``shape``, before the magnitude m_t is applied.
        """
        return np.where(gen.random(shape) < 0.5, self.scale, -self.scale)

    def mean(self):
        """Mean of one draw: 0.0.

        Returns
        -------
        float
        """
        return 0.0

    def variance(self):
        """Variance of one draw: ``scale**2``.

        Returns
        -------
        float
        """
        return self.scale ** 2

    def __repr__(self):
        return f"Rademacher(scale={self.scale!r})"


class Constant(Distribution):
    """The fixed value ``value``: a pure bias (no draws).

    Parameters
    ----------
    value : float
        Added at every struck element (times the magnitude m_t).
    """

    kind = "constant"

    def __init__(self, value):
        self.value = check_real(value, "value", "Constant")

    def params(self):
        """The kernel's four real parameters: ``[value, 0, 0, 0]``.

        Returns
        -------
        list of float
            Four values, unused slots 0.0.
        """
        return [self.value, 0.0, 0.0, 0.0]

    def draw(self, gen, shape):
        """NumPy twin of the kernel's draws: ``value`` everywhere; ``gen`` is not advanced.

        Parameters
        ----------
        gen : numpy.random.Generator
            The PCG64 stream of the site's pass: forward noise for ``pass_="forward"``, backward
            noise for ``pass_="backward"`` (docs/model.md sec. 3).
        shape : tuple of int
            ``(B, d)`` for granularity "element", ``(B,)`` for "sample", ``(d,)`` for "step".

        Returns
        -------
        numpy.ndarray
            float64 array of ``shape``, before the magnitude m_t is applied.
        """
        return np.full(shape, self.value)

    def mean(self):
        """Mean of one draw: ``value``.

        Returns
        -------
        float
        """
        return self.value

    def variance(self):
        """Variance of one draw: 0.0.

        Returns
        -------
        float
        """
        return 0.0

    def __repr__(self):
        return f"Constant({self.value!r})"


class Relative(Noise):
    """A multiplicative error: ``z (1 + eta)`` with eta drawn from ``dist`` (like float
    rounding, whose error is relative).

    Parameters
    ----------
    dist : Distribution
        The law of eta: one of ``Uniform``, ``Gaussian``, ``Laplace``, ``StudentT``,
        ``Rademacher``, ``Constant``. Its kernel kind is reused with ``mode="relative"``.

    Examples
    --------
    >>> import fastcascade as fc
    >>> fc.noise.Relative(fc.noise.Gaussian(0.0, 1e-3))
    Relative(Gaussian(mean=0.0, std=0.001))
    """

    mode = "relative"
    kind = None      # the wrapped distribution's, set per instance

    def __init__(self, dist):
        check_instance(dist, "dist", Distribution, "a distribution (Uniform, Gaussian, "
                       "Laplace, StudentT, Rademacher, Constant)", "Relative")
        self.dist = dist
        self.kind = dist.kind

    def params(self):
        """The kernel's four real parameters: those of ``dist``.

        Returns
        -------
        list of float
            Four values, unused slots 0.0.
        """
        return self.dist.params()

    def draw(self, gen, shape):
        """NumPy twin of the kernel's draws: eta, drawn by ``dist`` (the caller forms ``z (1 + m_t
        eta)``).

        Parameters
        ----------
        gen : numpy.random.Generator
            The PCG64 stream of the site's pass: forward noise for ``pass_="forward"``, backward
            noise for ``pass_="backward"`` (docs/model.md sec. 3).
        shape : tuple of int
            ``(B, d)`` for granularity "element", ``(B,)`` for "sample", ``(d,)`` for "step".

        Returns
        -------
        numpy.ndarray
            float64 array of ``shape``, before the magnitude m_t is applied.
        """
        return self.dist.draw(gen, shape)

    def mean(self):
        """Mean of eta of one draw: ``dist.mean()``.

        Returns
        -------
        float
        """
        return self.dist.mean()

    def variance(self):
        """Variance of eta of one draw: ``dist.variance()``.

        Returns
        -------
        float
        """
        return self.dist.variance()

    def __repr__(self):
        return f"Relative({self.dist!r})"


# ---------------------------------------------------------------------------------------------
# Transforms


class Transform(Noise):
    """A map Q applied to the struck block; the perturbation is Q(z) - z."""

    is_transform = True

    def transform(self, z, gen):
        """NumPy twin of the kernel: Q(z) for a block z, drawing from ``gen``.

        Parameters
        ----------
        z : numpy.ndarray
            float64 block of shape ``(B, d)``: one row per sample of the step, the values of the
            site (an operator's output, or a backward message).
        gen : numpy.random.Generator
            The PCG64 stream of the site's pass (forward or backward noise, docs/model.md sec. 3).

        Returns
        -------
        numpy.ndarray
            Q(z), float64 of the shape of ``z``; the perturbation is ``Q(z) - z``.
        """
        raise NotImplementedError


# name -> (stored mantissa bits, smallest normal exponent, largest finite, overflow to NaN)
FORMATS = {
    "float32": (23, -126, float(np.finfo(np.float32).max), False),
    "float16": (10, -14, 65504.0, False),
    "bfloat16": (7, -126, (2.0 - 2.0 ** -7) * 2.0 ** 127, False),
    "float8_e4m3": (3, -6, 448.0, True),
    "float8_e5m2": (2, -14, 57344.0, False),
}
_FORMAT_ALIASES = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16",
                   "e4m3": "float8_e4m3", "float8_e4m3fn": "float8_e4m3", "e5m2": "float8_e5m2"}


def _uniforms(gen, shape, stochastic):
    return gen.random(shape) if stochastic else None


def _round(r, u):
    """Round the array r to integers: ties to even, or stochastically with uniforms u."""
    if u is None:
        return np.rint(r)
    f = np.floor(r)
    return f + (u < r - f)


class LowPrecision(Transform):
    """Round each value to a low-precision binary format and back to float64.

    Formats: "float16" (IEEE half), "bfloat16", "float8_e4m3" (OCP E4M3FN), "float8_e5m2",
    "float32"; aliases "fp16", "half", "bf16", "e4m3", "e5m2", "fp32".

    - Subnormals are kept (gradual underflow), with the spacing of the smallest binade.
    - Overflow: beyond the largest finite value after rounding, values become +-inf, except in
      float8_e4m3, which has no infinities: they become NaN (as do infinite inputs). NaN stays
      NaN. Rounding to nearest overflows exactly where the format's own conversion does (for
      float16, from 65520 up).
    - ``rounding="nearest"``: round half to even (numpy's ``astype(np.float16)``);
      ``"stochastic"``: up with probability equal to the fraction of the spacing (unbiased),
      one uniform draw per element.

    Parameters
    ----------
    format : str, default "float16"
        A key of ``FORMATS`` or one of the aliases above.
    rounding : {"nearest", "stochastic"}, default "nearest"
        How values between two representable numbers are rounded.
    """

    kind = "round_float"

    def __init__(self, format="float16", rounding="nearest"):
        name = _FORMAT_ALIASES.get(format, format)
        self.format = check_choice(name, "format", tuple(FORMATS), "LowPrecision")
        self.rounding = check_choice(rounding, "rounding", ROUNDINGS, "LowPrecision")

    def params(self):
        """The kernel's four real parameters: ``[emin, max_finite, overflow_to_nan, 0]`` of the
        format (smallest normal exponent, largest finite value, 1.0 for float8_e4m3).

        Returns
        -------
        list of float
            Four values, unused slots 0.0.
        """
        mant, emin, max_finite, overflow_nan = FORMATS[self.format]
        return [float(emin), max_finite, float(overflow_nan), 0.0]

    def aux(self):
        """The kernel's two integer parameters: ``(stored mantissa bits, rounding code)``.

        Returns
        -------
        tuple of int
            Two values, unused slots 0.
        """
        return (FORMATS[self.format][0], _noise.ROUNDING_CODES[self.rounding])

    def transform(self, z, gen):
        """NumPy twin of the kernel: each finite non-zero value rounded to the format's grid
        (spacing ``2**(max(e - 1, emin) - mant)``), overflow to +-inf or NaN as the class describes.

        Parameters
        ----------
        z : numpy.ndarray
            float64 block of shape ``(B, d)``: one row per sample of the step, the values of the
            site (an operator's output, or a backward message).
        gen : numpy.random.Generator
            The PCG64 stream of the site's pass (forward or backward noise, docs/model.md sec. 3).

        Returns
        -------
        numpy.ndarray
            Q(z), a new float64 array of the shape of ``z``.

        Notes
        -----
        With ``rounding="stochastic"``, one uniform per element of ``z`` (``gen.random(z.shape)``);
        none otherwise.
        """
        mant, emin, max_finite, overflow_nan = FORMATS[self.format]
        z = np.asarray(z, dtype=np.float64)
        u = _uniforms(gen, z.shape, self.rounding == "stochastic")
        out = z.copy()
        ok = np.isfinite(z) & (z != 0.0)
        x = z[ok]
        _, e = np.frexp(x)
        q = np.ldexp(1.0, np.maximum(e - 1, emin) - mant)
        r = _round(x / q, None if u is None else u[ok]) * q
        big = np.abs(r) > max_finite
        r[big] = np.nan if overflow_nan else np.copysign(np.inf, x[big])
        out[ok] = r
        if overflow_nan:
            out[np.isinf(z)] = np.nan
        return out

    def __repr__(self):
        return f"LowPrecision({self.format!r}, rounding={self.rounding!r})"


class FixedPoint(Transform):
    """Round each value to the grid ``step * k`` (no range limit): nearest (ties to even) or
    stochastic (one uniform draw per element).

    Parameters
    ----------
    step : float
        Grid spacing, ``> 0``.
    rounding : {"nearest", "stochastic"}, default "nearest"
        Ties to even, or up with probability equal to the fraction of ``step`` (unbiased).
    """

    kind = "round_fixed"

    def __init__(self, step, rounding="nearest"):
        self.step = check_real(step, "step", "FixedPoint", low=0.0, low_open=True)
        self.rounding = check_choice(rounding, "rounding", ROUNDINGS, "FixedPoint")

    def params(self):
        """The kernel's four real parameters: ``[step, 0, 0, 0]``.

        Returns
        -------
        list of float
            Four values, unused slots 0.0.
        """
        return [self.step, 0.0, 0.0, 0.0]

    def aux(self):
        """The kernel's two integer parameters: ``(0, rounding code)``.

        Returns
        -------
        tuple of int
            Two values, unused slots 0.
        """
        return (0, _noise.ROUNDING_CODES[self.rounding])

    def transform(self, z, gen):
        """NumPy twin of the kernel: ``step * round(z / step)``.

        Parameters
        ----------
        z : numpy.ndarray
            float64 block of shape ``(B, d)``: one row per sample of the step, the values of the
            site (an operator's output, or a backward message).
        gen : numpy.random.Generator
            The PCG64 stream of the site's pass (forward or backward noise, docs/model.md sec. 3).

        Returns
        -------
        numpy.ndarray
            Q(z), a new float64 array of the shape of ``z``.

        Notes
        -----
        With ``rounding="stochastic"``, one uniform per element of ``z``; none otherwise.
        """
        z = np.asarray(z, dtype=np.float64)
        u = _uniforms(gen, z.shape, self.rounding == "stochastic")
        return _round(z / self.step, u) * self.step

    def __repr__(self):
        return f"FixedPoint({self.step!r}, rounding={self.rounding!r})"


class TopK(Transform):
    """Keep the k entries of largest magnitude in each sample (ties: the lower index), zero the
    rest. ``TopK(1)`` is appendix A.3's compressor. k = d keeps everything; a run refuses k
    above the width d of the perturbed site.

    Parameters
    ----------
    k : int
        Entries kept per sample, ``>= 1``.
    """

    kind = "topk"

    def __init__(self, k):
        self.k = check_positive_int(k, "k", "TopK")

    def aux(self):
        """The kernel's two integer parameters: ``(k, 0)``.

        Returns
        -------
        tuple of int
            Two values, unused slots 0.
        """
        return (self.k, 0)

    def transform(self, z, gen):
        """NumPy twin of the kernel: per row, the k entries of largest ``|z|`` kept (stable order:
        ties keep the lower index), the others set to 0; ``k >= d`` returns a copy.

        Parameters
        ----------
        z : numpy.ndarray
            float64 block of shape ``(B, d)``: one row per sample of the step, the values of the
            site (an operator's output, or a backward message).
        gen : numpy.random.Generator
            The PCG64 stream of the site's pass (forward or backward noise, docs/model.md sec. 3).

        Returns
        -------
        numpy.ndarray
            Q(z), a new float64 array of the shape of ``z``.

        Notes
        -----
        Draws nothing: ``gen`` is not used.
        """
        z = np.asarray(z, dtype=np.float64)
        if self.k >= z.shape[1]:
            return z.copy()
        order = np.argsort(-np.abs(z), axis=1, kind="stable")[:, : self.k]
        out = np.zeros_like(z)
        rows = np.arange(z.shape[0])[:, None]
        out[rows, order] = z[rows, order]
        return out

    def __repr__(self):
        return f"TopK({self.k})"


class RandK(Transform):
    """Keep k entries of each sample chosen uniformly without replacement, zero the rest;
    ``unbiased=True`` scales the kept entries by d / k so that E[Q(z)] = z. A run refuses k
    above the width d of the perturbed site.

    Draws: per sample, k uniforms u_j; entry j of a partial Fisher-Yates shuffle swaps position
    j with j + floor(u_j (d - j)) (a bias below d 2^-53 from the floating-point floor).

    Parameters
    ----------
    k : int
        Entries kept per sample, ``>= 1``.
    unbiased : bool, default True
        Scale the kept entries by ``d / k``.
    """

    kind = "randk"

    def __init__(self, k, unbiased=True):
        self.k = check_positive_int(k, "k", "RandK")
        self.unbiased = check_bool(unbiased, "unbiased", "RandK")

    def aux(self):
        """The kernel's two integer parameters: ``(k, 1 if unbiased else 0)``.

        Returns
        -------
        tuple of int
            Two values, unused slots 0.
        """
        return (self.k, int(self.unbiased))

    def transform(self, z, gen):
        """NumPy twin of the kernel: per row, k entries chosen by a partial Fisher-Yates shuffle
        kept (times ``d / k`` when unbiased), the others set to 0.

        Parameters
        ----------
        z : numpy.ndarray
            float64 block of shape ``(B, d)``: one row per sample of the step, the values of the
            site (an operator's output, or a backward message).
        gen : numpy.random.Generator
            The PCG64 stream of the site's pass (forward or backward noise, docs/model.md sec. 3).

        Returns
        -------
        numpy.ndarray
            Q(z), a new float64 array of the shape of ``z``.

        Notes
        -----
        Per row, in row order, k scalar uniforms ``gen.random()``.
        """
        z = np.asarray(z, dtype=np.float64)
        B, d = z.shape
        k = min(self.k, d)
        scale = d / k if self.unbiased else 1.0
        out = np.zeros_like(z)
        for s in range(B):
            idx = np.arange(d)
            for j in range(k):
                r = min(j + int(gen.random() * (d - j)), d - 1)
                idx[j], idx[r] = idx[r], idx[j]
            out[s, idx[:k]] = scale * z[s, idx[:k]]
        return out

    def __repr__(self):
        return f"RandK({self.k}, unbiased={self.unbiased!r})"


class ScaledSign(Transform):
    """``(||z||_1 / d) sign(z)`` per sample (1-bit compression with a scale)."""

    kind = "scaled_sign"

    def transform(self, z, gen):
        """NumPy twin of the kernel: per row, ``(||z||_1 / d) sign(z)``; an entry equal to 0 stays
        0.

        Parameters
        ----------
        z : numpy.ndarray
            float64 block of shape ``(B, d)``: one row per sample of the step, the values of the
            site (an operator's output, or a backward message).
        gen : numpy.random.Generator
            The PCG64 stream of the site's pass (forward or backward noise, docs/model.md sec. 3).

        Returns
        -------
        numpy.ndarray
            Q(z), a new float64 array of the shape of ``z``.

        Notes
        -----
        Draws nothing: ``gen`` is not used.
        """
        z = np.asarray(z, dtype=np.float64)
        c = np.sum(np.abs(z), axis=1, keepdims=True) / z.shape[1]
        return np.where(z > 0, c, np.where(z < 0, -c, c * z))

    def __repr__(self):
        return "ScaledSign()"


class BitFlip(Transform):
    """Hardware faults: each chosen bit of each float64 flips with probability p.

    Bits are numbered from the least significant: 0-51 mantissa, 52-62 exponent, 63 sign.
    Draws: per element, one uniform per chosen bit, lowest bit first.

    Parameters
    ----------
    p : float
        Flip probability of each chosen bit, in [0, 1].
    bits : int or sequence of int
        Bit indices in 0..63, at least one; duplicates are dropped and the rest sorted.
    """

    kind = "bitflip"

    def __init__(self, p, bits):
        self.p = check_real(p, "p", "BitFlip", low=0.0, high=1.0)
        chosen = check_int_list(bits, "bits", "BitFlip", low=0, high=63)
        if not chosen:
            raise ParameterError("bits", bits, "at least one bit index in 0..63", "BitFlip")
        self.bits = tuple(sorted(set(chosen)))

    @property
    def mask(self):
        """The chosen bits as a uint64 mask."""
        return np.uint64(sum(1 << b for b in self.bits))

    def aux(self):
        """The kernel's two integer parameters: ``(mask, 0)``, the uint64 ``mask`` reinterpreted as
        int64.

        Returns
        -------
        tuple of int
            Two values, unused slots 0.
        """
        return (int(self.mask.astype(np.uint64).view(np.int64)), 0)

    def params(self):
        """The kernel's four real parameters: ``[p, 0, 0, 0]``.

        Returns
        -------
        list of float
            Four values, unused slots 0.0.
        """
        return [self.p, 0.0, 0.0, 0.0]

    def transform(self, z, gen):
        """NumPy twin of the kernel: the float64 words of ``z`` with each chosen bit XOR-ed where
        its uniform is below p.

        Parameters
        ----------
        z : numpy.ndarray
            float64 block of shape ``(B, d)``: one row per sample of the step, the values of the
            site (an operator's output, or a backward message).
        gen : numpy.random.Generator
            The PCG64 stream of the site's pass (forward or backward noise, docs/model.md sec. 3).

        Returns
        -------
        numpy.ndarray
            Q(z), a new float64 array of the shape of ``z``.

        Notes
        -----
        ``gen.random(z.shape + (len(bits),))``: per element, one uniform per chosen bit, lowest bit
        first.
        """
        z = np.ascontiguousarray(z, dtype=np.float64)
        u = gen.random(z.shape + (len(self.bits),))
        words = z.view(np.uint64).copy()
        for k, b in enumerate(self.bits):
            words ^= np.where(u[..., k] < self.p, np.uint64(1) << np.uint64(b), np.uint64(0))
        return words.view(np.float64)

    def __repr__(self):
        return f"BitFlip({self.p!r}, bits={list(self.bits)!r})"
