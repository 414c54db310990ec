"""An example of fastcascade's compiled extension point: ``ScaledSoftsign``, a compiled
operator y = a x / (1 + |x|) per element with one weight a, and ``PyScaledSoftsign``, its
Python-defined twin (the same operator in NumPy, through the GIL callbacks).

>>> import numpy as np, fastcascade as fc, fc_example_ops
>>> op = fc_example_ops.ScaledSoftsign(2)
>>> op.forward(np.array([[1.0, -3.0]]), np.array([2.0]))
array([[ 1. , -1.5]])
"""
import numpy as np

import fastcascade as fc

from fc_example_ops._kernels import scaled_softsign_capsule

__all__ = ["ScaledSoftsign", "PyScaledSoftsign"]


class ScaledSoftsign(fc.ops.CompiledOperator):
    """y = a x / (1 + |x|) per element; the weight a starts at 1 (compiled kernels).

    Parameters
    ----------
    d : int, optional
        The width; taken from the previous operator or the data when omitted.
    """

    elementwise = True
    n_weights = 1

    def __init__(self, d=None):
        super().__init__(d_in=d)

    def capsule(self):
        """The capsule of the compiled fc_operator.

        Returns
        -------
        PyCapsule
        """
        return scaled_softsign_capsule()

    def init_weights(self, rng):
        """[1.0] (no draw).

        Parameters
        ----------
        rng : numpy.random.Generator
            Unused.

        Returns
        -------
        numpy.ndarray
        """
        return np.ones(1)


class PyScaledSoftsign(fc.ops.Operator):
    """The Python-defined twin of :class:`ScaledSoftsign`.

    Parameters
    ----------
    d : int, optional
        The width; taken from the previous operator or the data when omitted.
    """

    elementwise = True
    n_weights = 1

    def __init__(self, d=None):
        super().__init__(d_in=d)

    def init_weights(self, rng):
        """[1.0] (no draw).

        Parameters
        ----------
        rng : numpy.random.Generator
            Unused.

        Returns
        -------
        numpy.ndarray
        """
        return np.ones(1)

    def forward(self, w, x):
        """a x / (1 + |x|).

        Parameters
        ----------
        w : numpy.ndarray
            (1,): a.
        x : numpy.ndarray
            (B, d).

        Returns
        -------
        numpy.ndarray
        """
        return w[0] * x / (1.0 + np.abs(x))

    def vjp_input(self, w, x, y, v):
        """v a / (1 + |x|)^2.

        Parameters
        ----------
        w, x, y, v : numpy.ndarray
            The weights, the input, the output and the cotangent.

        Returns
        -------
        numpy.ndarray
        """
        q = 1.0 + np.abs(x)
        return v * (w[0] / (q * q))

    def vjp_weights(self, w, x, y, v):
        """sum v x / (1 + |x|).

        Parameters
        ----------
        w, x, y, v : numpy.ndarray
            The weights, the input, the output and the cotangent.

        Returns
        -------
        numpy.ndarray
        """
        return np.array([np.sum(v * (x / (1.0 + np.abs(x))))])
