"""Datasets: inputs X (M x d) and per-sample label rows y (M x k).

Examples
--------
>>> import fastcascade as fc
>>> data = fc.datasets.synthetic_logistic(n_samples=2000, n_features=10, seed=0)
>>> data.X.shape, data.y.shape
((2000, 10), (2000, 1))
"""
from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fastcascade._validation import as_float_array, check_memory, check_positive_int

__all__ = ["Dataset", "synthetic_logistic", "as_dataset"]


class Dataset:
    """Inputs and labels, stored float64 and C-contiguous.

    Parameters
    ----------
    X : array_like, shape (M, d) (a 1-d array is one feature per sample)
    y : array_like, shape (M,) or (M, k), optional
        One label row per sample: a +-1 label, an integer class, or a target vector.
    name : str
    """

    def __init__(self, X: npt.ArrayLike, y: npt.ArrayLike | None = None, name: str = "data"):
        X = as_float_array(X, "X")
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"X: expected a non-empty (n_samples, n_features) array, given "
                             f"shape {X.shape}")
        if not np.all(np.isfinite(X)):
            raise ValueError("X: expected finite values, given NaN or inf")
        if y is None:
            y = np.zeros((X.shape[0], 0))
        y = as_float_array(y, "y")
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2 or y.shape[0] != X.shape[0]:
            raise ValueError(f"y: expected {X.shape[0]} label rows (one per row of X), given "
                             f"shape {y.shape}")
        if not np.all(np.isfinite(y)):
            raise ValueError("y: expected finite values, given NaN or inf")
        self.X = X
        self.y = np.ascontiguousarray(y)
        self.name = name

    @property
    def n_samples(self) -> int:
        """M, the number of rows of X."""
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        """d, the number of columns of X."""
        return self.X.shape[1]

    def __len__(self) -> int:
        return self.n_samples

    def __repr__(self):
        return f"Dataset({self.name!r}, n_samples={self.n_samples}, n_features={self.n_features})"


def synthetic_logistic(n_samples: int = 2000, n_features: int = 10, seed: int = 0) -> Dataset:
    """The paper's synthetic logistic data (docs/model.md sec. 6).

    x* ~ N(0, I_d); h_l ~ N(0, I_d); y_l = +1 with probability 1 / (1 + exp(-h_l^T x*)), else -1.
    Draws come from ``numpy.random.default_rng(seed)`` in that order (x*, H, then M uniforms).

    Parameters
    ----------
    n_samples : int, default 2000
        M, the number of samples.
    n_features : int, default 10
        d, the width of each h_l.
    seed : int or None, default 0
        Seed of the generator; None draws fresh entropy.

    Returns
    -------
    Dataset
        With ``X = H`` (M, d), ``y`` the +-1 labels (M, 1), and the attribute ``x_star`` (d,).
    """
    M = check_positive_int(n_samples, "n_samples")
    d = check_positive_int(n_features, "n_features")
    if seed is not None:
        seed = check_positive_int(seed, "seed", allow_zero=True)
    check_memory({"n_samples": 8 * M * (d + 3)}, f"data of {M} x {d}", {"n_samples": M})
    rng = np.random.default_rng(seed)
    x_star = rng.standard_normal(d)
    H = rng.standard_normal((M, d))
    p = 1.0 / (1.0 + np.exp(-(H @ x_star)))
    y = np.where(rng.random(M) < p, 1.0, -1.0)
    data = Dataset(H, y, name=f"synthetic_logistic(M={M}, d={d}, seed={seed})")
    data.x_star = x_star  # type: ignore[attr-defined]  # synthetic data only
    return data


def as_dataset(data: Dataset | tuple[npt.ArrayLike, npt.ArrayLike]) -> Dataset:
    """A Dataset, or an ``(X, y)`` / ``(X,)`` tuple of arrays, as a Dataset.

    Parameters
    ----------
    data : Dataset or tuple
        Anything else raises ValueError.

    Returns
    -------
    Dataset
        ``data`` itself when it is one.
    """
    if isinstance(data, Dataset):
        return data
    if isinstance(data, tuple) and len(data) in (1, 2):
        return Dataset(*data)
    raise ValueError(f"data: expected a fastcascade.datasets.Dataset or an (X, y) tuple, given "
                     f"{type(data).__name__}")
