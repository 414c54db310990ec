"""The NumPy twin of the compiled engine (``fastcascade/_kernels/_engine.pyx``).

Same loop, same streams consumed in the same order, so a seed gives the same trajectory through
either engine (to rounding). It is the oracle of the engine tests and the honest baseline of the
benchmarks; ``fc.run(..., engine="numpy")`` selects it.
"""
from __future__ import annotations

import numpy as np

from fastcascade._kernels._engine import STOP_REASONS
from fastcascade.reference import forward, vjp_input, vjp_weights

__all__ = ["run_one", "perturbed_pass", "STOP_REASONS"]

# The engine's stop codes and their reasons: one table, the compiled engine's.
_CODE = {reason: code for code, reason in STOP_REASONS.items()}
STOP_NONE = _CODE[""]
STOP_NONFINITE_GRADIENT = _CODE["non-finite gradient"]
STOP_GRADIENT_NORM = _CODE["gradient norm above max_norm"]
STOP_NONFINITE_WEIGHTS = _CODE["non-finite weights"]
STOP_WEIGHT_NORM = _CODE["weight norm above max_norm"]
STOP_NONFINITE_OBJECTIVE = _CODE["non-finite objective"]


def safe_norm(x):
    """||x|| without overflow for finite entries (the twin of the kernel's safe_norm).

    Parameters
    ----------
    x : numpy.ndarray
        float64, any shape (the norm is over every entry).

    Returns
    -------
    float
        The Euclidean norm, rescaled by max |x_j| when the plain sum of squares overflows; NaN
        when an entry is not finite.
    """
    acc = float(np.sum(x * x))
    if np.isfinite(acc):
        return np.sqrt(acc)
    if not np.all(np.isfinite(x)):
        return np.nan
    m = np.max(np.abs(x))
    return m * np.sqrt(np.sum((x / m) ** 2))


def _count_nonfinite(counter, struck, z):
    # the kernel's any_nonfinite after a site's perturbations (counter: a 1-entry int array)
    if counter is not None and struck and not np.all(np.isfinite(z)):
        counter[0] += 1


def perturbed_pass(cascade, w, x, labels, perturbations=(), t=0, forward_gen=None,
                   backward_gen=None, n_iter=None, nonfinite=None):
    """One forward/backward pass of Eq. 5 on a batch (clean when there are no perturbations).

    Parameters
    ----------
    cascade : fastcascade.Cascade
        A bound cascade.
    w : numpy.ndarray
        float64 (n_weights,), the flat weights.
    x : numpy.ndarray
        float64 (B, d_0), the batch's inputs.
    labels : numpy.ndarray
        float64 (B, k), the batch's label rows.
    perturbations : sequence of fastcascade.Perturbation, default ()
        Sorted by site (``perturbation.sort_by_site``); each applies when its timing is active.
    t : int, default 0
        The 0-based iteration (timings and magnitudes).
    forward_gen, backward_gen : numpy.random.Generator, optional
        The forward-noise and backward-noise streams (docs/model.md sec. 3); needed only when a
        perturbation of that pass fires.
    n_iter : int, optional
        The horizon T, for ``HorizonDecay``.
    nonfinite : numpy.ndarray, optional
        A 1-entry int array, incremented for each site whose perturbed values are not all
        finite.

    Returns
    -------
    ys : list of numpy.ndarray
        ys[i] = ~y_i (B x d_i), ys[0] = x.
    vs : list
        vs[i] = ~v_i (B x d_i) for i = 1..N (vs[0] is None).
    gsum : numpy.ndarray
        float64 (n_weights,): the sum over the batch of the weight gradients ~u.
    """
    N = cascade.n_ops
    fwd = {i: [] for i in range(1, N + 1)}
    bwd = {i: [] for i in range(1, N + 1)}
    for p in perturbations:  # already in site order; user order within a site
        (bwd if p.backward else fwd)[p.op].append(p)
    ys = [x]
    for i, op in enumerate(cascade.operators, start=1):
        y = forward(op, ys[-1], w[cascade.weight_slice(i)], labels)
        struck = False
        for p in fwd[i]:
            if p.timing.active(t, forward_gen):
                y = p.apply(y, forward_gen, t, n_iter)
                struck = True
        _count_nonfinite(nonfinite, struck, y)
        ys.append(y)
    vs = [None] * (N + 1)
    vs[N] = np.ones((x.shape[0], 1))
    gsum = np.zeros(cascade.n_weights)
    for i in range(N, 0, -1):
        op = cascade.operators[i - 1]
        sl = cascade.weight_slice(i)
        gsum[sl] = vjp_weights(op, ys[i - 1], vs[i], w[sl], labels)
        if i >= 2:
            v = vjp_input(op, ys[i - 1], vs[i], w[sl], labels)
            struck = False
            for p in bwd[i]:
                if p.timing.active(t, backward_gen):
                    v = p.apply(v, backward_gen, t, n_iter)
                    struck = True
            _count_nonfinite(nonfinite, struck, v)
            vs[i - 1] = v
    return ys, vs, gsum


def run_one(problem, optimizer, config, perturbations, gens, w, hist):
    """Run one trajectory in place on ``w`` and fill ``hist``.

    Parameters
    ----------
    problem : fastcascade.Problem
        The problem.
    optimizer : fastcascade.optim.Optimizer
        Its ``step_size_at``, ``batch`` and ``sampling`` are read.
    config : dict
        The engine configuration (``Optimizer.engine_config`` plus ``n_iter``,
        ``record_every``, ``max_norm``, ``record_profile``, optionally ``record_weights``).
    perturbations : sequence of fastcascade.Perturbation
        Sorted by site.
    gens : tuple of numpy.random.Generator
        The (data, forward, backward, gradient) streams, in that order (docs/model.md sec. 3).
    w : numpy.ndarray
        float64 (n_weights,): the initial weights, updated in place.
    hist : dict of str to numpy.ndarray
        NaN-filled arrays, one row per record (``objective``, ``grad_norm``, ``grad_error``,
        ``step_size``; the profiles and ``weights`` when asked; ``nonfinite``, a 1-entry
        counter); filled in place.

    Returns
    -------
    stop_iteration : int
        The iteration the run stopped at, -1 when it ran to the end.
    code : int
        The stop reason's code (``STOP_NONE`` when it did not stop).
    """
    cascade, reg = problem.cascade, problem.regularizer
    X, Y = problem.data.X, problem.data.y
    M, N = X.shape[0], cascade.n_ops
    data_gen, forward_gen, backward_gen, grad_gen = gens
    full_batch = optimizer.batch == "full"
    B = M if full_batch else optimizer.batch
    momentum = config["momentum"]
    beta1, beta2 = config["beta1"], config["beta2"]
    m1 = np.zeros_like(w)
    m2 = np.zeros_like(w)
    perm, pos = None, M
    record_every = config["record_every"]
    max_norm = config["max_norm"]

    for t in range(config["n_iter"]):
        if full_batch:
            xb, lb = X, Y
        else:
            if optimizer.sampling == "replacement":
                idx = data_gen.integers(0, M, size=B)
            else:
                if pos + B > M:
                    perm = data_gen.permutation(M)
                    pos = 0
                idx = perm[pos:pos + B]
                pos += B
            xb, lb = X[idx], Y[idx]

        ys, vs, gsum = perturbed_pass(cascade, w, xb, lb, perturbations, t, forward_gen,
                                      backward_gen, config["n_iter"], hist.get("nonfinite"))
        g = gsum / B
        lr = optimizer.step_size_at(t)

        if t % record_every == 0:
            rec = t // record_every
            cys, cvs, cgsum = perturbed_pass(cascade, w, X, Y)
            data_grad = cgsum / M
            obj = float(np.mean(cys[N])) + reg.value(w)
            hist["objective"][rec] = obj
            hist["grad_norm"][rec] = safe_norm(data_grad + reg.gradient(w))
            hist["step_size"][rec] = lr
            if not full_batch:
                cys, cvs, cgsum = perturbed_pass(cascade, w, xb, lb)
                data_grad = cgsum / B
            hist["grad_error"][rec] = float(np.sum((g - data_grad) ** 2))
            if config.get("record_weights"):
                hist["weights"][rec] = w
            if config["record_profile"]:
                # column i - 1 is site i: forward at y_i, backward at the message v_{i-1}
                # that f_i sends back (f_1 sends none: 0)
                hist["backward_error"][rec, 0] = 0.0
                for i in range(1, N + 1):
                    hist["forward_error"][rec, i - 1] = np.sum((ys[i] - cys[i]) ** 2) / B
                    if i >= 2:
                        hist["backward_error"][rec, i - 1] = \
                            np.sum((vs[i - 1] - cvs[i - 1]) ** 2) / B
            if not np.isfinite(obj):
                return t, STOP_NONFINITE_OBJECTIVE

        g = g + reg.gradient(w)
        if config["grad_noise_std"] > 0.0:
            g = g + config["grad_noise_std"] * grad_gen.standard_normal(w.shape[0])
        gnorm = safe_norm(g)
        if not np.isfinite(gnorm):
            return t, STOP_NONFINITE_GRADIENT
        if gnorm > max_norm:
            return t, STOP_GRADIENT_NORM
        if config["clip_norm"] > 0.0 and gnorm > config["clip_norm"]:
            g = g * (config["clip_norm"] / gnorm)

        if config["optimizer"] == "sgd":
            if momentum == 0.0:
                w -= lr * g
            else:
                m1[:] = momentum * m1 + g
                w -= lr * ((g + momentum * m1) if config["nesterov"] else m1)
        else:
            m1[:] = beta1 * m1 + (1.0 - beta1) * g
            m2[:] = beta2 * m2 + (1.0 - beta2) * g * g
            mhat = m1 / (1.0 - beta1 ** (t + 1))
            vhat = m2 / (1.0 - beta2 ** (t + 1))
            w -= lr * mhat / (np.sqrt(vhat) + config["adam_eps"])
        wnorm = safe_norm(w)
        if not np.isfinite(wnorm):
            return t, STOP_NONFINITE_WEIGHTS
        if wnorm > max_norm:
            return t, STOP_WEIGHT_NORM
    return -1, STOP_NONE
