"""Ready-made problems from the paper's motivations, for studying depth effects.

- :func:`paper_logistic`: the paper's section 7 model (Margin + Softplus) on its synthetic data.
- :func:`deep_linear`: a deep linear network y = W_L ... W_1 x with a squared loss, fitting a
  random linear teacher (the cascade of linear maps the paper's depth argument starts from).
- :func:`mlp`: a network of ``depth`` layers (Linear then an activation), a linear read-out and
  a squared loss, fitting a random teacher network of the same shape.
- :func:`lq_control`: linear-quadratic control over a horizon of H steps, x_{t+1} = A x_t +
  B u_t with a linear policy u_t = K_t x_t per step and a quadratic cost: the cascade of
  H ``LQStep`` operators and an ``LQTerminal`` (the paper's third motivation). A forward
  perturbation at step t is process noise on x_{t+1} (and on the running cost coordinate).
- :func:`step_size_schedule`: the paper's Example 2, unrolled optimisation: T steps of gradient
  descent x_t = x_{t-1} - gamma_t grad g(x_{t-1}) on a quadratic g, whose weights are the step
  sizes gamma_1..gamma_T, and the loss g(x_T) (``GradientStep`` and ``Quadratic``, Python-defined
  operators: the compiled engine calls them back).

Operator indices: in :func:`deep_linear`, operator i is layer i (the loss is operator L + 1);
in :func:`mlp`, layer k is operators 2k - 1 (Linear) and 2k (activation).

Examples
--------
>>> import fastcascade as fc
>>> problem = fc.problems.mlp(depth=3, width=8, n_samples=100, seed=0)
>>> problem.cascade.n_ops, problem.n_weights
(8, 225)
"""
from __future__ import annotations

import numpy as np

from fastcascade import ops
from fastcascade._validation import check_choice, check_positive_int, check_real
from fastcascade.cascade import Cascade
from fastcascade.datasets import Dataset, synthetic_logistic
from fastcascade.problem import Problem
from fastcascade.reference import cascade_forward
from fastcascade.reg import NonConvex, SquaredNorm

__all__ = ["paper_logistic", "deep_linear", "mlp", "lq_control", "step_size_schedule"]

ACTIVATIONS = {"tanh": ops.Tanh, "sigmoid": ops.Sigmoid, "relu": ops.ReLU,
               "identity": ops.Identity}


def paper_logistic(regularizer="nonconvex", rho=None, n_samples=2000, n_features=10, seed=0):
    """The paper's logistic regression (docs/model.md sec. 6) as a 2-operator cascade.

    Margin then Softplus, on :func:`fastcascade.datasets.synthetic_logistic` data.

    Parameters
    ----------
    regularizer : {"nonconvex", "strongly_convex"}
        rho sum w^2/(1+w^2) with rho = 1e-3, or rho ||w||^2 with rho = 0.1 (section 7.2.1;
        section 7.2.3 uses 0.5).
    rho : float, optional
        Overrides the default weight.
    n_samples : int, default 2000
        M, the number of samples.
    n_features : int, default 10
        d, the width of x.
    seed : int, default 0
        Seed of the data (``synthetic_logistic``).

    Returns
    -------
    Problem
    """
    check_choice(regularizer, "regularizer", ("nonconvex", "strongly_convex"))
    data = synthetic_logistic(n_samples, n_features, seed)
    if regularizer == "nonconvex":
        reg = NonConvex(1e-3 if rho is None else rho)
    else:
        reg = SquaredNorm(0.1 if rho is None else rho)
    return Problem(Cascade([ops.Margin(), ops.Softplus()]), data, regularizer=reg)


def _teacher_data(n_samples, width, out_dim, forward, rng):
    X = rng.standard_normal((n_samples, width))
    return Dataset(X, forward(X), name="teacher")


def deep_linear(depth=4, width=8, n_samples=500, seed=0, noise_std=0.0):
    """A deep linear network: operators Linear(width, width, bias=False) x ``depth`` (the
    last maps to 1 output), then SquaredError.

    The targets come from a random linear teacher y = a^T x (+ noise), so the network can fit
    them exactly: a product of matrices, the classic non-convex depth model. Operator i is
    layer i; the loss is operator ``depth + 1``.

    Parameters
    ----------
    depth : int, default 4
        Number of linear layers.
    width : int, default 8
        Width of x and of every hidden layer.
    n_samples : int, default 500
        Samples x ~ N(0, I).
    seed : int, default 0
        Seed of the teacher, the inputs and the target noise (one generator).
    noise_std : float, default 0.0
        Standard deviation of the Gaussian noise added to the targets.

    Returns
    -------
    Problem
    """
    depth = check_positive_int(depth, "depth")
    width = check_positive_int(width, "width")
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(width) / np.sqrt(width)
    data = _teacher_data(n_samples, width, 1,
                         lambda X: X @ a + noise_std * rng.standard_normal(X.shape[0]), rng)
    layers = [ops.Linear(width, width, bias=False) for _ in range(depth - 1)]
    layers.append(ops.Linear(width, 1, bias=False))
    return Problem(Cascade(layers + [ops.SquaredError()]), data)


def mlp(depth=3, width=16, activation="tanh", n_samples=500, seed=0, noise_std=0.0):
    """A network of ``depth`` hidden layers Linear(., width) + activation, a Linear(width, 1)
    read-out and SquaredError, fitting a random teacher network of the same shape.

    The teacher's weights are drawn like ``Cascade.init_weights`` draws them (seed ``seed + 1``),
    so a student started from ``init="random"`` with another seed is a fair non-convex problem.
    Layer k is operators 2k - 1 (Linear) and 2k (activation); the cascade has 2 depth + 2
    operators.

    Parameters
    ----------
    depth : int, default 3
        Number of hidden layers.
    width : int, default 16
        Width of x and of every hidden layer.
    activation : {"tanh", "sigmoid", "relu", "identity"}, default "tanh"
        The activation after each hidden Linear.
    n_samples : int, default 500
        Samples x ~ N(0, I).
    seed : int, default 0
        Seed of the inputs and the target noise; the teacher uses ``seed + 1``.
    noise_std : float, default 0.0
        Standard deviation of the Gaussian noise added to the targets.

    Returns
    -------
    Problem
    """
    depth = check_positive_int(depth, "depth")
    width = check_positive_int(width, "width")
    act = ACTIVATIONS[check_choice(activation, "activation", tuple(ACTIVATIONS))]
    layers = []
    for k in range(depth):
        layers += [ops.Linear(width, width), act()]
    layers += [ops.Linear(width, 1), ops.SquaredError()]
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, width))
    # the teacher: the same architecture with seeded weights, its output as the target
    teacher = Cascade(layers[:-1] + [ops.Identity()], input_dim=width)
    w_teacher = teacher.init_weights(seed=seed + 1)
    y = cascade_forward(teacher, w_teacher, X, np.zeros((n_samples, 0)))[-1]
    y = y + noise_std * rng.standard_normal(y.shape)
    return Problem(Cascade(layers), Dataset(X, y, name=f"teacher {activation} mlp"))


def lq_control(state_dim=4, control_dim=2, horizon=10, n_samples=256, seed=0, growth=1.05,
               control_cost=0.1):
    """Linear-quadratic control as a cascade of ``horizon`` steps and a terminal cost.

    The state is [x; c]: x in R^n and the running cost c (0 at the start). Step t applies the
    policy K_t (its weights, m x n): x_{t+1} = A x_t + B K_t x_t and c += x^T x + r u^T u;
    the terminal cost adds x_H^T x_H. The samples are initial states x_0 ~ N(0, I). A is a
    random matrix scaled to spectral radius ``growth`` (slightly unstable by default, so the
    open loop amplifies errors along the horizon), B has N(0, 1/n) entries.

    Parameters
    ----------
    state_dim : int, default 4
        n, the width of x.
    control_dim : int, default 2
        m, the width of u.
    horizon : int, default 10
        H, the number of ``LQStep`` operators (the cascade has H + 1).
    n_samples : int, default 256
        Initial states drawn.
    seed : int, default 0
        Seed of A, B and the initial states (one generator).
    growth : float, default 1.05
        Spectral radius of A.
    control_cost : float, default 0.1
        r, the weight of u^T u in the running cost (R = r I).

    Returns
    -------
    Problem

    Examples
    --------
    >>> import fastcascade as fc
    >>> p = fc.problems.lq_control(state_dim=3, control_dim=1, horizon=5)
    >>> p.cascade.n_ops, p.n_weights
    (6, 15)
    """
    n = check_positive_int(state_dim, "state_dim")
    m = check_positive_int(control_dim, "control_dim")
    H = check_positive_int(horizon, "horizon")
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n))
    A *= growth / np.max(np.abs(np.linalg.eigvals(A)))
    B = rng.standard_normal((n, m)) / np.sqrt(n)
    Q, R = np.eye(n), control_cost * np.eye(m)
    X = np.concatenate([rng.standard_normal((n_samples, n)), np.zeros((n_samples, 1))], axis=1)
    layers = [ops.LQStep(A, B, Q, R) for _ in range(H)] + [ops.LQTerminal(np.eye(n))]
    return Problem(Cascade(layers), Dataset(X, name=f"lq initial states (n={n})"))


def step_size_schedule(n_steps=10, dim=5, n_samples=256, condition=10.0, seed=0, init_step=None):
    """Learning a step-size schedule (the paper's Example 2): T unrolled gradient steps.

    The inner objective is g(x) = x^T A x / 2 with A = Q diag(lambda) Q^T, a random rotation Q
    and eigenvalues log-spaced in [1 / condition, 1] (so L = 1 and mu = 1 / condition). Each
    sample is a starting point x_0 ~ N(0, I); operator t (t = 1..T) is
    ``GradientStep``: x_t = x_{t-1} - gamma_t A x_{t-1}, whose one weight is the step size
    gamma_t; operator T + 1 is ``Quadratic``: the loss g(x_T). Minimising the mean loss over the
    samples learns the schedule (gamma_1, ..., gamma_T); the closed form of the loss is
    x_0^T P A P x_0 / 2 with P = prod_t (I - gamma_t A). A forward perturbation at operator t
    perturbs the iterate x_t, a backward one the adjoint sent back through step t.

    Both operators are Python-defined (``fc.ops.Operator`` subclasses): the NumPy engine runs
    them natively, the compiled engine through its GIL callbacks (a ``PerformanceWarning``
    gives the cost).

    Parameters
    ----------
    n_steps : int, default 10
        T, the number of unrolled steps (weights).
    dim : int, default 5
        d, the width of x.
    n_samples : int, default 256
        Starting points drawn.
    condition : float, default 10.0
        L / mu of g, ``>= 1``.
    seed : int, default 0
        Seed of Q and the starting points (one generator).
    init_step : float, optional
        The initial step size of every step (``init="random"`` gives it too); 1 / (2 L) = 0.5
        by default.

    Returns
    -------
    Problem

    Examples
    --------
    >>> import numpy as np, fastcascade as fc
    >>> p = fc.problems.step_size_schedule(n_steps=4, dim=3, n_samples=50)
    >>> p.cascade.n_ops, p.n_weights
    (5, 4)
    >>> bool(p.objective(np.full(4, 0.9)) < p.objective(np.full(4, 0.1)))
    True
    """
    T = check_positive_int(n_steps, "n_steps")
    d = check_positive_int(dim, "dim")
    M = check_positive_int(n_samples, "n_samples")
    condition = check_real(condition, "condition", low=1.0)
    init = 0.5 if init_step is None else check_real(init_step, "init_step")
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    lam = np.geomspace(1.0 / condition, 1.0, d)
    A = (Q * lam) @ Q.T
    A = 0.5 * (A + A.T)       # exactly symmetric
    X = rng.standard_normal((M, d))
    layers = [ops.GradientStep(A, init=init) for _ in range(T)] + [ops.Quadratic(A)]
    return Problem(Cascade(layers), Dataset(X, name=f"starting points (d={d})"))
