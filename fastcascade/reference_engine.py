"""The NumPy twin of the compiled engine (``fastcascade/_kernels/_engine.pyx``).

Same loop, same streams consumed in the same order, so a seed gives the same trajectory through
either engine (to rounding). It is the oracle of the engine tests and the honest baseline of the
benchmarks; ``fc.run(..., engine="numpy")`` selects it.
"""
from __future__ import annotations

import numpy as np

from fastcascade._kernels._engine import STOP_REASONS
from fastcascade.reference import forward, vjp_input, vjp_weights

__all__ = ["RunState", "run_one", "perturbed_pass", "STOP_REASONS"]

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


class RunState:
    """The NumPy twin of the compiled engine's ``RunState``: one run, advanced step by step.

    Its steps have the compiled ones' names and do the same in the same order: ``_sample``
    (data stream), ``_passes`` (Eq. 5, forward and backward streams), ``_record`` (the
    histories at w_t), ``_gradient`` (regularizer, gradient noise, norm, clipping) and
    ``_update`` (the optimizer).

    Parameters
    ----------
    problem : fastcascade.Problem
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
    """

    def __init__(self, problem, optimizer, config, perturbations, gens, w, hist):
        self.problem, self.optimizer, self.config = problem, optimizer, config
        self.perturbations, self.gens, self.w, self.hist = perturbations, gens, w, hist
        self.M = problem.data.X.shape[0]
        self.full_batch = optimizer.batch == "full"
        self.B = self.M if self.full_batch else optimizer.batch
        self.m1, self.m2 = np.zeros_like(w), np.zeros_like(w)
        self.perm, self.pos = None, self.M
        self.t, self.stop, self.stop_iter = 0, STOP_NONE, -1

    def advance(self, t_end):
        """Run iterations ``t .. t_end - 1`` (fewer when the run stops).

        Parameters
        ----------
        t_end : int

        Returns
        -------
        bool
            Whether the run goes on.
        """
        for t in range(self.t, t_end):
            xb, lb = self._sample()
            ys, vs, g = self._passes(t, xb, lb)
            lr = self.optimizer.step_size_at(t)
            if t % self.config["record_every"] == 0 and \
                    not self._record(t, lr, xb, lb, ys, vs, g):
                return self._stop(STOP_NONFINITE_OBJECTIVE, t)
            g, code = self._gradient(g)
            if code != STOP_NONE:
                return self._stop(code, t)
            code = self._update(t, lr, g)
            if code != STOP_NONE:
                return self._stop(code, t)
            self.t = t + 1
        return True

    def _stop(self, code, t):
        self.stop, self.stop_iter, self.t = code, t, t
        return False

    def _sample(self):
        X, Y, M, B = self.problem.data.X, self.problem.data.y, self.M, self.B
        if self.full_batch:
            return X, Y
        data_gen = self.gens[0]
        if self.optimizer.sampling == "replacement":
            idx = data_gen.integers(0, M, size=B)
        else:
            if self.pos + B > M:
                self.perm = data_gen.permutation(M)
                self.pos = 0
            idx = self.perm[self.pos:self.pos + B]
            self.pos += B
        return X[idx], Y[idx]

    def _passes(self, t, xb, lb):
        ys, vs, gsum = perturbed_pass(self.problem.cascade, self.w, xb, lb, self.perturbations,
                                      t, self.gens[1], self.gens[2], self.config["n_iter"],
                                      self.hist.get("nonfinite"))
        return ys, vs, gsum / self.B

    def _record(self, t, lr, xb, lb, ys, vs, g):
        # the histories at w_t; False when the clean objective is not finite (the run stops)
        cascade, reg, hist, w = self.problem.cascade, self.problem.regularizer, self.hist, self.w
        X, Y, N, B = self.problem.data.X, self.problem.data.y, cascade.n_ops, self.B
        rec = t // self.config["record_every"]
        cys, cvs, cgsum = perturbed_pass(cascade, w, X, Y)
        data_grad = cgsum / self.M
        obj = float(np.mean(cys[N])) + reg.value(w)
        hist["objective"][rec] = obj
        hist["grad_norm"][rec] = safe_norm(data_grad + reg.gradient(w))
        hist["step_size"][rec] = lr
        if not self.full_batch:
            cys, cvs, cgsum = perturbed_pass(cascade, w, xb, lb)
            data_grad = cgsum / B
        hist["grad_error"][rec] = float(np.sum((g - data_grad) ** 2))
        if self.config.get("record_weights"):
            hist["weights"][rec] = w
        if self.config["record_profile"]:
            # column i - 1 is site i: forward at y_i, backward at the message v_{i-1} that f_i
            # sends back (f_1 sends none: 0)
            hist["backward_error"][rec, 0] = 0.0
            for i in range(1, N + 1):
                hist["forward_error"][rec, i - 1] = np.sum((ys[i] - cys[i]) ** 2) / B
                if i >= 2:
                    hist["backward_error"][rec, i - 1] = \
                        np.sum((vs[i - 1] - cvs[i - 1]) ** 2) / B
        return bool(np.isfinite(obj))

    def _gradient(self, g):
        config, w = self.config, self.w
        g = g + self.problem.regularizer.gradient(w)
        if config["grad_noise_std"] > 0.0:
            g = g + config["grad_noise_std"] * self.gens[3].standard_normal(w.shape[0])
        gnorm = safe_norm(g)
        if not np.isfinite(gnorm):
            return g, STOP_NONFINITE_GRADIENT
        if gnorm > config["max_norm"]:
            return g, STOP_GRADIENT_NORM
        if config["clip_norm"] > 0.0 and gnorm > config["clip_norm"]:
            g = g * (config["clip_norm"] / gnorm)
        return g, STOP_NONE

    def _update(self, t, lr, g):
        config, w, m1, m2 = self.config, self.w, self.m1, self.m2
        if config["optimizer"] == "sgd":
            momentum = config["momentum"]
            if momentum == 0.0:
                w -= lr * g
            else:
                m1[:] = momentum * m1 + g
                w -= lr * ((g + momentum * m1) if config["nesterov"] else m1)
        else:
            beta1, beta2 = config["beta1"], config["beta2"]
            m1[:] = beta1 * m1 + (1.0 - beta1) * g
            m2[:] = beta2 * m2 + (1.0 - beta2) * g * g
            mhat = m1 / (1.0 - beta1 ** (t + 1))
            vhat = m2 / (1.0 - beta2 ** (t + 1))
            w -= lr * mhat / (np.sqrt(vhat) + config["adam_eps"])
        wnorm = safe_norm(w)
        if not np.isfinite(wnorm):
            return STOP_NONFINITE_WEIGHTS
        if wnorm > config["max_norm"]:
            return STOP_WEIGHT_NORM
        return STOP_NONE


def run_one(problem, optimizer, config, perturbations, gens, w, hist):
    """Run one trajectory in place on ``w`` and fill ``hist`` (a :class:`RunState` advanced
    over ``config["n_iter"]``).

    Parameters
    ----------
    problem, optimizer, config, perturbations, gens, w, hist
        As for :class:`RunState`.

    Returns
    -------
    stop_iteration : int
        The iteration the run stopped at, -1 when it ran to the end.
    code : int
        The stop reason's code (``STOP_NONE`` when it did not stop).
    """
    state = RunState(problem, optimizer, config, perturbations, gens, w, hist)
    state.advance(config["n_iter"])
    return state.stop_iter, state.stop
