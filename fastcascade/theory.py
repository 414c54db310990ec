"""The theory's constants and bounds (docs/model.md, section 5), and the measurements to set
them against.

- :class:`OperatorConstants` holds Assumption A3's constants (C1 = C_grad f, C2 = C_hess f,
  L0 = L_f, L1 = L_grad f, L2 = L_hess f); :func:`estimate_constants` estimates them for a
  concrete problem from Jacobians over the data and the iterates seen.
- Theorem 1 (variance): :func:`variance_constants`, :func:`variance_bound`.
- Theorem 2 (bias): :func:`bias_constants`, :func:`bias_bound`.
- Theorems 3/4 and 5 (rates): :func:`nonconvex_bound`, :func:`pl_bound`.
- Corollary 1 and Table 1: :data:`COROLLARY1`, :func:`table1_budget`.
- Measurements: :func:`gradient_error_stats` (Monte Carlo E||~u - u||^2 and ||E[~u - u]||^2 at a
  point), :func:`perturbation_moments` (E||delta||^2, ||E delta||^2, E||delta||^4 of a
  distribution on a site of width d).

Indices follow the paper: delta_i for i = 1..N-1 (delta_N does not reach the gradient) and
eps_{i+1} for i = 1..N-1, stored in arrays at position i - 1.

Examples
--------
>>> import fastcascade as fc
>>> k = fc.theory.OperatorConstants(C1=1.0, C2=1.0, L0=1.0, L1=1.0, L2=1.0)
>>> ce_delta, ce_eps = fc.theory.variance_constants(k, n_ops=3)
>>> [float(c) for c in ce_delta], [float(c) for c in ce_eps]
([120.0, 52.0], [6.0, 24.0])
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fastcascade import _callbacks
from fastcascade import noise as noise_kinds
from fastcascade._kernels import _engine
from fastcascade._validation import check_positive_int, check_real
from fastcascade.noise import Distribution, Noise
from fastcascade.perturbation import Perturbation
from fastcascade.plan import Plan
from fastcascade.problem import Problem
from fastcascade.reference import cascade_forward
from fastcascade.runner import run_streams

__all__ = ["OperatorConstants", "c_v", "variance_constants", "variance_bound",
           "bias_constants", "bias_bound", "nonconvex_bound", "pl_bound", "COROLLARY1",
           "table1_exponent", "table1_budget", "estimate_constants", "gradient_error_stats",
           "perturbation_moments"]


@dataclass(frozen=True)
class OperatorConstants:
    """Assumption A3's constants, the same for every operator (each >= 0).

    Parameters
    ----------
    C1 : float
        Bound on ||J1||_op and ||J2||_op ("C_grad f").
    C2 : float
        Bound on ||d J2 / d y||_op ("C_hess f").
    L0 : float
        Lipschitz constant of f in y ("L_f").
    L1 : float
        Lipschitz constant of grad f ("L_grad f").
    L2 : float
        Lipschitz constant of grad^2 f ("L_hess f").
    """

    C1: float
    C2: float
    L0: float
    L1: float
    L2: float

    def __post_init__(self):
        for name in ("C1", "C2", "L0", "L1", "L2"):
            check_real(getattr(self, name), name, "OperatorConstants", low=0.0)


def c_v(C1: float, n_ops: int) -> float:
    """Lemma 1: ||v_i|| <= C_v = max(1, C1^N).

    Parameters
    ----------
    C1 : float
        Assumption A3's bound on the Jacobians' operator norms.
    n_ops : int
        N, the number of operators.

    Returns
    -------
    float
    """
    return max(1.0, float(C1) ** n_ops)


def _geometric(ratio, first, last):
    """sum_{k=first}^{last} ratio^k (0 when last < first)."""
    return float(sum(ratio ** k for k in range(first, last + 1)))


def variance_constants(k: OperatorConstants, n_ops: int) -> tuple[np.ndarray, np.ndarray]:
    """Theorem 1's constants.

    Parameters
    ----------
    k : OperatorConstants
        Assumption A3's constants.
    n_ops : int
        N, the number of operators (>= 1).

    Returns
    -------
    ce_delta : ndarray (N-1,), Ce_delta_i for i = 1..N-1
        4 C_v^2 L1^2 sum_{j=i}^{N-1} [sum_{k=0}^{j} (3 C1^2)^k] (2 L0^2)^{j-i}
    ce_eps : ndarray (N-1,), Ce_eps_{i+1} for i = 1..N-1
        2 sum_{j=1}^{i} (3 C1^2)^j: the safe constant, twice the theorem's printed value
        (the proof's previous line carries the factor 2).
    """
    N = check_positive_int(n_ops, "n_ops")
    r = 3.0 * k.C1 ** 2
    cv2 = c_v(k.C1, N) ** 2
    ce_delta = np.array([
        4.0 * cv2 * k.L1 ** 2 * sum(_geometric(r, 0, j) * (2.0 * k.L0 ** 2) ** (j - i)
                                    for j in range(i, N))
        for i in range(1, N)])
    ce_eps = np.array([2.0 * _geometric(r, 1, i) for i in range(1, N)])
    return ce_delta, ce_eps


def variance_bound(k: OperatorConstants, n_ops: int, delta_sq: npt.ArrayLike,
                   eps_sq: npt.ArrayLike) -> float:
    """Theorem 1: E||~u - u||^2 <= sum_i Ce_delta_i E||delta_i||^2 + Ce_eps_{i+1} E||eps_{i+1}||^2.

    Parameters
    ----------
    k : OperatorConstants
        Assumption A3's constants.
    n_ops : int
        N, the number of operators (>= 1).
    delta_sq : array (N-1,), E||delta_i||^2 for i = 1..N-1
    eps_sq : array (N-1,), E||eps_{i+1}||^2 for i = 1..N-1 (eps_2 .. eps_N)

    Returns
    -------
    float
        The bound on E||~u - u||^2.
    """
    ce_delta, ce_eps = variance_constants(k, n_ops)
    delta_sq, eps_sq = _site_array(delta_sq, n_ops, "delta_sq"), _site_array(eps_sq, n_ops, "eps_sq")
    return float(ce_delta @ delta_sq + ce_eps @ eps_sq)


def _site_array(a, n_ops, name):
    a = np.asarray(a, dtype=np.float64)
    if a.shape != (n_ops - 1,):
        raise ValueError(f"{name}: expected {n_ops - 1} values (sites 1..N-1), given shape "
                         f"{a.shape}")
    return a


def bias_constants(k: OperatorConstants, n_ops: int) -> dict[str, np.ndarray]:
    """Theorem 2's constants, each an array over i = 1..N-1.

    Parameters
    ----------
    k : OperatorConstants
        Assumption A3's constants.
    n_ops : int
        N, the number of operators (>= 1).

    Returns
    -------
    dict with keys
        ``cb_delta``: 8 L2^2 C_v^2 sum_{j=i}^{N-1} [sum_{k=0}^{j} (3 C1^2)^k] (4 C1^2)^{j-i}
        ``cb_tilde_delta``: 8 sum_{j=i}^{N-1} Cy_j^2 (8 L0^4)^{j-i}
        ``cb_eps``: 2 sum_{j=1}^{i} (3 C1^2)^j
        ``cy_sq``: Cy_i^2 = 8 C2^2 L1^2 C_v^2 sum_{j=i+1}^{N-1} [sum_{k=0}^{j} (3 C1^2)^k]
        (4 C1^2)^{j-i-1} + 2 L2^2 C_v^2 sum_{j=0}^{i} (3 C1^2)^j
    """
    N = check_positive_int(n_ops, "n_ops")
    r, q = 3.0 * k.C1 ** 2, 4.0 * k.C1 ** 2
    cv2 = c_v(k.C1, N) ** 2
    idx = range(1, N)
    cb_delta = np.array([8.0 * k.L2 ** 2 * cv2 * sum(_geometric(r, 0, j) * q ** (j - i)
                                                     for j in range(i, N)) for i in idx])
    cy_sq = np.array([
        8.0 * k.C2 ** 2 * k.L1 ** 2 * cv2 * sum(_geometric(r, 0, j) * q ** (j - i - 1)
                                                for j in range(i + 1, N))
        + 2.0 * k.L2 ** 2 * cv2 * _geometric(r, 0, i) for i in idx])
    cb_tilde = np.array([8.0 * sum(cy_sq[j - 1] * (8.0 * k.L0 ** 4) ** (j - i)
                                   for j in range(i, N)) for i in idx])
    cb_eps = np.array([2.0 * _geometric(r, 1, i) for i in idx])
    return {"cb_delta": cb_delta, "cb_tilde_delta": cb_tilde, "cb_eps": cb_eps, "cy_sq": cy_sq}


def bias_bound(k: OperatorConstants, n_ops: int, delta_mean_sq: npt.ArrayLike,
               delta_fourth: npt.ArrayLike, eps_mean_sq: npt.ArrayLike) -> float:
    """Theorem 2: ||E[~u - u]||^2 <= sum_i Cb_delta_i ||E delta_i||^2
    + Cb~_delta_i E||delta_i||^4 + Cb_eps_{i+1} ||E eps_{i+1}||^2 (arrays over i = 1..N-1).

    Parameters
    ----------
    k : OperatorConstants
        Assumption A3's constants.
    n_ops : int
        N, the number of operators (>= 1).
    delta_mean_sq : array (N-1,)
        ||E delta_i||^2 for i = 1..N-1.
    delta_fourth : array (N-1,)
        E||delta_i||^4 for i = 1..N-1.
    eps_mean_sq : array (N-1,)
        ||E eps_{i+1}||^2 for i = 1..N-1 (eps_2 .. eps_N).

    Returns
    -------
    float
        The bound on ||E[~u - u]||^2.
    """
    c = bias_constants(k, n_ops)
    return float(c["cb_delta"] @ _site_array(delta_mean_sq, n_ops, "delta_mean_sq")
                 + c["cb_tilde_delta"] @ _site_array(delta_fourth, n_ops, "delta_fourth")
                 + c["cb_eps"] @ _site_array(eps_mean_sq, n_ops, "eps_mean_sq"))


def nonconvex_bound(D0: float, step_size: float, n_iter: int, L: float, sigma_sq: float,
                    variances: npt.ArrayLike, biases: npt.ArrayLike) -> float:
    """Theorems 3/4 (gamma <= 1/(3 L)): a bound on (1/T) sum_t E||grad l(w_t)||^2,

        6 D0 / (gamma T) + 6 L gamma sigma^2 + (6 L gamma / T) sum_t Var_t + (3 / T) sum_t Bias_t

    with Var_t = E||~u_t - u_t||^2 and Bias_t = ||E_t[~u_t - u_t]||^2. The variance term
    shrinks with gamma, the bias term does not.

    Parameters
    ----------
    D0 : float
        l(w_0) - l*, the initial gap.
    step_size : float > 0
        gamma, at most 1/(3 L) (ValueError otherwise).
    n_iter : int
        T, the horizon.
    L : float
        Smoothness constant of l.
    sigma_sq : float
        sigma^2, the variance of the clean stochastic gradient.
    variances, biases : float or array (T,)
        Var_t and Bias_t, per iteration or constant.

    Returns
    -------
    float
    """
    T = check_positive_int(n_iter, "n_iter")
    gamma = check_real(step_size, "step_size", low=0.0, low_open=True)
    if gamma > 1.0 / (3.0 * L):
        raise ValueError(f"step_size: the theorem needs gamma <= 1/(3 L) = {1 / (3 * L):.4g}, "
                         f"given {gamma!r}")
    var_sum = _per_iteration(variances, T).sum()
    bias_sum = _per_iteration(biases, T).sum()
    return (6.0 * D0 / (gamma * T) + 6.0 * L * gamma * sigma_sq + 6.0 * L * gamma / T * var_sum
            + 3.0 / T * bias_sum)


def pl_bound(D0: float, step_size: float, n_iter: int, L: float, mu: float, sigma_sq: float,
             variances: npt.ArrayLike, biases: npt.ArrayLike) -> float:
    """Theorem 5 (PL with constant mu): a bound on E[l(w_T) - l*],

        (1 - mu gamma/3)^T D0 + 3 L gamma sigma^2 / mu
        + L gamma^2 sum_t (1 - mu gamma/3)^{T-t} Var_t + (gamma/2) sum_t (1 - mu gamma/3)^{T-t}
        Bias_t

    Parameters
    ----------
    D0 : float
        l(w_0) - l*, the initial gap.
    step_size : float > 0
        gamma.
    n_iter : int
        T, the horizon.
    L : float
        Smoothness constant of l.
    mu : float
        The PL constant.
    sigma_sq : float
        sigma^2, the variance of the clean stochastic gradient.
    variances, biases : float or array (T,)
        Var_t and Bias_t, per iteration or constant.

    Returns
    -------
    float
    """
    T = check_positive_int(n_iter, "n_iter")
    gamma = check_real(step_size, "step_size", low=0.0, low_open=True)
    rho = 1.0 - mu * gamma / 3.0
    weights = rho ** (T - np.arange(T, dtype=np.float64))
    return (rho ** T * D0 + 3.0 * L * gamma * sigma_sq / mu
            + L * gamma ** 2 * weights @ _per_iteration(variances, T)
            + 0.5 * gamma * weights @ _per_iteration(biases, T))


def _per_iteration(values, T):
    a = np.asarray(values, dtype=np.float64)
    if a.ndim == 0:
        return np.full(T, float(a))
    if a.shape != (T,):
        raise ValueError(f"expected a scalar or {T} values (one per iteration), given shape "
                         f"{a.shape}")
    return a


# Corollary 1: exponents a in "||.|| <~ T^a" that keep the clean rate (log factors dropped).
COROLLARY1 = {
    "nonconvex": {"rate": -0.5, "delta": -1 / 8, "delta_mean": -1 / 4, "eps": 0.0,
                  "eps_mean": -1 / 4},
    "pl": {"rate": -1.0, "delta": -1 / 4, "delta_mean": -1 / 2, "eps": 0.0,
           "eps_mean": -1 / 2},
}

# Table 1: exponent b in the budget Q <~ T^b of iterations with an O(1) perturbation.
_TABLE1 = {
    ("nonconvex", True): {"forward": 0.5, "backward": 1.0},
    ("nonconvex", False): {"forward": 0.5, "backward": 0.5},
    ("pl", True): {"forward": 0.0, "backward": 1.0},
    ("pl", False): {"forward": 0.0, "backward": 0.0},
}


def table1_exponent(setting: str, zero_mean: bool, pass_: str) -> float:
    """Table 1's exponent b in the budget Q <~ T^b (see :func:`table1_budget`).

    Parameters
    ----------
    setting : {"nonconvex", "pl"}
        The theorem's setting.
    zero_mean : bool
        Whether the perturbation has mean zero.
    pass_ : {"forward", "backward"}
        The pass perturbed.

    Returns
    -------
    float
        b (0.0, 0.5 or 1.0).
    """
    key = (setting, bool(zero_mean))
    if key not in _TABLE1:
        raise ValueError(f"setting: expected 'nonconvex' or 'pl', given {setting!r}")
    if pass_ not in ("forward", "backward"):
        raise ValueError(f"pass_: expected 'forward' or 'backward', given {pass_!r}")
    return _TABLE1[key][pass_]


def table1_budget(setting: str, zero_mean: bool, pass_: str, n_iter: int) -> float:
    """Table 1: how many iterations Q with an O(1) perturbation keep the clean rate, T^b.

    Parameters
    ----------
    setting : {"nonconvex", "pl"}
    zero_mean : bool
    pass_ : {"forward", "backward"}
    n_iter : int, the horizon T

    Returns
    -------
    float
        T^b with b from :func:`table1_exponent`.

    Examples
    --------
    >>> table1_budget("nonconvex", True, "forward", 10_000)
    100.0
    """
    return float(n_iter) ** table1_exponent(setting, zero_mean, pass_)


# ---------------------------------------------------------------------------------------------
# Measurements


def perturbation_moments(noise: Noise, width: int, granularity: str = "element"
                         ) -> dict[str, float]:
    """Moments of the perturbation a distribution adds on a site of width d, per sample.

    Parameters
    ----------
    noise : fastcascade.noise.Distribution or fastcascade.noise.Noise
        An additive distribution with a known fourth moment (ValueError otherwise), or a
        Python-defined noise that defines ``mean()`` and ``variance()`` of one entry of its
        delta (and ``fourth_moment()``, E[delta_j^4], for ``fourth``: NaN without it).
    width : int
        d, the width of the site.
    granularity : {"element", "sample", "step"}, default "element"
        "element": independent coordinates; "sample" and "step": one draw shared by the d
        coordinates of a sample.

    Returns
    -------
    dict with ``sq`` = E||delta||^2, ``mean_sq`` = ||E delta||^2, ``fourth`` = E||delta||^4.
    """
    python = getattr(noise, "is_python", False)
    if not isinstance(noise, Distribution) and not python:
        raise ValueError(f"noise: expected an additive distribution, given {noise!r}")
    if python and not (hasattr(noise, "mean") and hasattr(noise, "variance")):
        raise ValueError(f"noise: {noise!r} is Python-defined without mean() and variance()")
    d = check_positive_int(width, "width")
    moments: Any = noise   # a Distribution, or a Python noise that has mean() and variance()
    m1 = float(moments.mean())
    m2 = float(moments.variance()) + m1 ** 2
    if python:
        m4 = float(noise.fourth_moment()) if hasattr(noise, "fourth_moment") else math.nan
    else:
        m4 = _raw_fourth_moment(noise)
    if granularity == "element":
        fourth = d * m4 + d * (d - 1) * m2 ** 2
    else:
        fourth = d ** 2 * m4
    return {"sq": d * m2, "mean_sq": d * m1 ** 2, "fourth": fourth}


def _raw_fourth_moment(noise):
    N = noise_kinds
    if isinstance(noise, N.Uniform):
        a, b = noise.low, noise.high
        return (b ** 5 - a ** 5) / (5.0 * (b - a)) if b > a else a ** 4
    if isinstance(noise, N.Gaussian):
        m, s = noise.mu, noise.std
        return m ** 4 + 6 * m ** 2 * s ** 2 + 3 * s ** 4
    if isinstance(noise, N.Laplace):
        m, b = noise.loc, noise.scale
        return m ** 4 + 12 * m ** 2 * b ** 2 + 24 * b ** 4
    if isinstance(noise, N.StudentT):
        df, s = noise.df, noise.scale
        return 3.0 * df ** 2 / ((df - 2) * (df - 4)) * s ** 4 if df > 4 else math.inf
    if isinstance(noise, N.Rademacher):
        return noise.scale ** 4
    if isinstance(noise, N.Constant):
        return noise.value ** 4
    raise ValueError(f"noise: no fourth moment known for {noise!r}")


def gradient_error_stats(problem: Problem, w: npt.ArrayLike, perturbations: Iterable[Perturbation],
                         n_draws: int = 2000, seed: int = 0, batch: int | None = None
                         ) -> dict[str, Any]:
    """Monte Carlo moments of the gradient error ~u - u of one Eq. 5 pass at w.

    Each draw perturbs a fresh pass over the same samples (all of them, or ``batch`` drawn once
    with replacement), continuing one forward and one backward noise stream.

    Parameters
    ----------
    problem : fastcascade.Problem
        The problem.
    w : array_like (n_weights,)
        The point.
    perturbations : Perturbation or sequence of Perturbation
        Applied at each draw; draw t is the pass of iteration t for timings and magnitudes.
    n_draws : int, default 2000
        Number of perturbed passes.
    seed : int, default 0
        Spawns the run streams (``fc.run``'s ``run_streams``): the data stream picks the batch,
        the forward and backward streams feed the perturbations.
    batch : int, optional
        Samples drawn once with replacement; all samples by default.

    Returns
    -------
    dict with
        ``mean_sq``: E||~u - u||^2 (Theorem 1's left side) and ``mean_sq_se``, its standard error
        ``bias``: the vector E[~u - u]; ``bias_sq``: ||E[~u - u]||^2 (Theorem 2's left side),
        bias-corrected (the noise of the mean, trace(Cov)/n, is subtracted) and
        ``bias_se``: the per-coordinate standard errors of ``bias``.
    """
    w = problem.cascade.check_weights(w)
    n_draws = check_positive_int(n_draws, "n_draws")
    plan = Plan(problem, None, perturbations, n_iter=n_draws)
    data_gen, forward_gen, backward_gen, _ = run_streams(seed)
    X, Y = problem.data.X, problem.data.y
    if batch is not None:
        idx = data_gen.integers(0, problem.n_samples, size=check_positive_int(batch, "batch"))
        X, Y = np.ascontiguousarray(X[idx]), np.ascontiguousarray(Y[idx])
    errors = np.empty((n_draws, w.size))
    g_pert, g_clean = np.empty_like(w), np.empty_like(w)
    for t in range(n_draws):
        _engine.batch_gradients(plan.op_table, plan.params, X, Y, w, plan.pert_int,
                                plan.pert_real, plan.pert_times, t,
                                forward_gen, backward_gen, g_pert, g_clean)
        _callbacks.raise_pending()   # from a Python-defined operator's or noise's callback
        errors[t] = g_pert - g_clean
    sq = np.sum(errors ** 2, axis=1)
    mean = errors.mean(axis=0)
    var = errors.var(axis=0, ddof=1) if n_draws > 1 else np.zeros_like(mean)
    return {"mean_sq": float(sq.mean()),
            "mean_sq_se": float(sq.std(ddof=1) / math.sqrt(n_draws)) if n_draws > 1 else 0.0,
            "bias": mean, "bias_se": np.sqrt(var / n_draws),
            "bias_sq": float(max(mean @ mean - var.sum() / n_draws, 0.0))}


def _jacobian(op, z, w, label):
    """[J1 J2] of one sample (z: 1 x d_in), shape (d_out, d_in + n_w), from the VJPs."""
    J = np.empty((op.d_out, op.d_in + op.n_weights))
    for o in range(op.d_out):
        g = np.zeros((1, op.d_out))
        g[0, o] = 1.0
        gi, gw = op.vjp(z, g, w, label)
        J[o] = np.concatenate([gi[0], gw])
    return J


def _op_norm(a):
    return float(np.linalg.norm(a, ord=2)) if a.size else 0.0


def estimate_constants(problem: Problem, weights: npt.ArrayLike, n_samples: int = 32,
                       radius: float = 1e-3, seed: int = 0) -> OperatorConstants:
    """Estimates of Assumption A3's constants along given iterates (local, not global, values).

    For each weight vector in ``weights`` and up to ``n_samples`` data points, a clean forward
    pass gives each operator's input y; Jacobians J = [J1 J2] come from the operators' VJPs.
    With random steps h of norm ``radius`` (in (y, w_i), or in y alone for C2):

    - C1 = max(||J1||, ||J2||) and L0 = max ||J1|| (the local Lipschitz constant of f in y);
    - L1 = max ||J(x + h) - J(x)|| / ||h||;  C2 = the same for J2 with h in y alone;
    - L2 = max ||J(x + h) - 2 J(x) + J(x - h)|| / ||h||^2 (the second derivative's change).

    Norms are spectral. These are lower estimates of the global constants the theorems assume.

    Parameters
    ----------
    problem : fastcascade.Problem
        The problem.
    weights : array_like (n_weights,) or (n_points, n_weights)
        The iterates.
    n_samples : int, default 32
        Data points drawn without replacement (all when fewer).
    radius : float, default 1e-3
        Norm of the random steps h.
    seed : int, default 0
        Seed of the generator choosing the samples and the steps.

    Returns
    -------
    OperatorConstants
    """
    rng = np.random.default_rng(seed)
    W = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    cascade = problem.cascade
    rows = rng.choice(problem.n_samples, size=min(n_samples, problem.n_samples), replace=False)
    X, Y = problem.data.X[rows], problem.data.y[rows]
    c = dict(C1=0.0, C2=0.0, L0=0.0, L1=0.0, L2=0.0)
    for w in W:
        w = cascade.check_weights(w)
        ys = cascade_forward(cascade, w, X, Y)
        for i, op in enumerate(cascade.operators, start=1):
            wi = w[cascade.weight_slice(i)]
            d_in = op.d_in
            for s in range(len(X)):
                z, lab = ys[i - 1][s:s + 1], (Y[s:s + 1] if op.labels else None)
                J = _jacobian(op, z, wi, lab)
                c["C1"] = max(c["C1"], _op_norm(J[:, :d_in]), _op_norm(J[:, d_in:]))
                c["L0"] = max(c["L0"], _op_norm(J[:, :d_in]))
                h = rng.standard_normal(d_in + op.n_weights)
                h *= radius / np.linalg.norm(h)
                Jp = _jacobian(op, z + h[:d_in], wi + h[d_in:], lab)
                Jm = _jacobian(op, z - h[:d_in], wi - h[d_in:], lab)
                c["L1"] = max(c["L1"], _op_norm(Jp - J) / radius)
                c["L2"] = max(c["L2"], _op_norm(Jp - 2.0 * J + Jm) / radius ** 2)
                if op.n_weights:
                    hy = rng.standard_normal(d_in)
                    hy *= radius / np.linalg.norm(hy)
                    Jy = _jacobian(op, z + hy, wi, lab)
                    c["C2"] = max(c["C2"], _op_norm(Jy[:, d_in:] - J[:, d_in:]) / radius)
    return OperatorConstants(**c)
