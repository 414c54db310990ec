"""How large a distribution's draws are over time: the draw is multiplied by m_t.

- ``Fixed(scale=1.0)``:              m_t = scale
- ``PowerDecay(alpha, scale=1.0)``:  m_t = scale (t + 1)^-alpha
- ``HorizonDecay(alpha, scale=1.0)``: m_t = scale T^-alpha for a run of T iterations (the decay
  conditions of Corollary 1, which couple the perturbation size to the horizon)

Transforms (quantisers, compressors, bit flips) have no magnitude.

Examples
--------
>>> import fastcascade as fc
>>> fc.magnitude.PowerDecay(0.5, scale=2.0).factor(3)
1.0
"""
from __future__ import annotations

from fastcascade._kernels import _noise
from fastcascade._validation import check_real

__all__ = ["Magnitude", "Fixed", "PowerDecay", "HorizonDecay"]


class Magnitude:
    """Base class: ``factor(t, n_iter)`` is m_t (the NumPy twin of the kernel's formula).

    Parameters
    ----------
    scale : float, default 1.0
        The factor's scale (any real; a negative one flips the draws' sign).
    """

    kind = "constant"
    alpha = 0.0

    def __init__(self, scale=1.0):
        self.scale = check_real(scale, "scale", type(self).__name__)

    @property
    def code(self):
        """The integer code of ``kind`` in the compiled noise kernel."""
        return _noise.MAGNITUDE_CODES[self.kind]

    def kernel_scale(self, n_iter):
        """The scale handed to the kernel for a run of ``n_iter`` iterations: ``scale``; the kernel
        applies the time dependence of ``kind``.

        Parameters
        ----------
        n_iter : int or None
            The run's horizon T.

        Returns
        -------
        float
        """
        return self.scale

    def factor(self, t, n_iter=None):
        """m_t, the factor multiplying a draw at iteration ``t``: defined by each subclass.

        NumPy twin of the kernel's formula.

        Parameters
        ----------
        t : int
            The 0-based iteration.
        n_iter : int, optional
            The run's horizon T (needed by ``HorizonDecay`` only).

        Returns
        -------
        float
        """
        raise NotImplementedError

    def __eq__(self, other):
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self):
        return hash((type(self).__name__, self.scale, self.alpha))


class Fixed(Magnitude):
    """m_t = scale.

    Parameters
    ----------
    scale : float, default 1.0
        The constant factor.
    """

    def factor(self, t, n_iter=None):
        """m_t, the factor multiplying a draw at iteration ``t``: ``scale`` at every iteration.

        NumPy twin of the kernel's formula.

        Parameters
        ----------
        t : int
            The 0-based iteration.
        n_iter : int, optional
            The run's horizon T (needed by ``HorizonDecay`` only).

        Returns
        -------
        float
        """
        return self.scale

    def __repr__(self):
        return f"Fixed({self.scale!r})"


class PowerDecay(Magnitude):
    """m_t = scale (t + 1)^-alpha.

    Parameters
    ----------
    alpha : float
        Decay exponent, ``>= 0``.
    scale : float, default 1.0
        m_0.
    """

    kind = "power"

    def __init__(self, alpha, scale=1.0):
        super().__init__(scale)
        self.alpha = check_real(alpha, "alpha", "PowerDecay", low=0.0)

    def factor(self, t, n_iter=None):
        """m_t, the factor multiplying a draw at iteration ``t``: ``scale * (t + 1) ** -alpha``.

        NumPy twin of the kernel's formula.

        Parameters
        ----------
        t : int
            The 0-based iteration.
        n_iter : int, optional
            The run's horizon T (needed by ``HorizonDecay`` only).

        Returns
        -------
        float
        """
        return self.scale * float(t + 1) ** -self.alpha

    def __repr__(self):
        return f"PowerDecay({self.alpha!r}, scale={self.scale!r})"


class HorizonDecay(Magnitude):
    """m_t = scale T^-alpha, constant within a run of T = n_iter iterations.

    Parameters
    ----------
    alpha : float
        Decay exponent in the horizon, ``>= 0``.
    scale : float, default 1.0
        The factor for T = 1.
    """

    def __init__(self, alpha, scale=1.0):
        super().__init__(scale)
        self.alpha = check_real(alpha, "alpha", "HorizonDecay", low=0.0)

    def kernel_scale(self, n_iter):
        """The scale handed to the kernel for a run of ``n_iter`` iterations: ``scale * n_iter **
        -alpha``, a constant for the whole run (ValueError when ``n_iter`` is None).

        Parameters
        ----------
        n_iter : int or None
            The run's horizon T.

        Returns
        -------
        float
        """
        if n_iter is None:
            raise ValueError("n_iter: HorizonDecay needs the horizon T; pass n_iter")
        return self.scale * float(n_iter) ** -self.alpha

    def factor(self, t, n_iter=None):
        """m_t, the factor multiplying a draw at iteration ``t``: ``scale * n_iter ** -alpha``
        whatever ``t`` (ValueError when ``n_iter`` is None).

        NumPy twin of the kernel's formula.

        Parameters
        ----------
        t : int
            The 0-based iteration.
        n_iter : int, optional
            The run's horizon T (needed by ``HorizonDecay`` only).

        Returns
        -------
        float
        """
        return self.kernel_scale(n_iter)

    def __repr__(self):
        return f"HorizonDecay({self.alpha!r}, scale={self.scale!r})"
