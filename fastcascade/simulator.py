"""``fc.Simulator``: perturbed SGD a few steps at a time, to embed in a user's own loop.

The simulator holds one compiled run (the engine's ``RunState``) across calls: ``step(n)``
runs n iterations of Eq. 5 (docs/model.md sec. 2) without the GIL and without Python per
iteration, exactly as ``fc.run`` does. n steps, in one call or in many, give the same bits as
``fc.run(..., n_iter=n)`` with the same seed. Between calls the user may read the weights and
the histories, change the step size, or replace the perturbations (say, inject a spike).

Examples
--------
>>> import fastcascade as fc
>>> problem = fc.problems.paper_logistic(n_samples=200, n_features=5, seed=0)
>>> sim = fc.Simulator(problem, fc.SGD(0.5), seed=0)
>>> sim.step(100)
True
>>> spike = fc.Perturbation(op=1, noise=fc.noise.Constant(30.0), timing=fc.timing.At([100]))
>>> sim.perturbations = [spike]
>>> sim.step(100), sim.t
(True, 200)
>>> sim.result().n_runs
1
"""
from __future__ import annotations

import math

import numpy as np

from fastcascade import _callbacks
from fastcascade._interrupt import engine_interrupts
from fastcascade._kernels import _engine
from fastcascade._validation import check_bool, check_positive_int, check_real
from fastcascade.errors import ParameterError
from fastcascade.magnitude import HorizonDecay
from fastcascade.perturbation import check_perturbations
from fastcascade.plan import Plan
from fastcascade.result import Result
from fastcascade.runner import (STOP_INTERRUPTED, _check_problem, _initial_weights, _seed_list,
                                run_streams)

__all__ = ["Simulator"]

_HISTORIES = ("objective", "grad_norm", "grad_error", "step_size")
_UNBOUNDED = 2 ** 62  # the engine's horizon when none is given (no iteration reaches it)


class Simulator:
    """One perturbed SGD run, advanced by the caller.

    Parameters
    ----------
    problem : fastcascade.Problem
    optimizer : fastcascade.SGD or fastcascade.Adam
    perturbations : sequence of fastcascade.Perturbation
        The perturbations from the first step; :attr:`perturbations` replaces them later.
    seed : int or numpy.random.SeedSequence
        The run's four streams, as ``fc.run(..., seeds=[seed])`` spawns them.
    init : None, "zeros", "random", array (n_weights,) or callable
        The initial weights, as for ``fc.run``.
    record_every : int
        Record the histories every this many iterations (at w_t, before the update).
    record_profile, record_weights : bool
        Also record the per-operator error profile, and the weights.
    max_norm : float
        The run stops, as diverged, when the norm of its weights or step gradient exceeds this.
    horizon : int, optional
        The horizon T, needed only by ``HorizonDecay`` magnitudes (``fc.run`` uses ``n_iter``).
    n_jobs : {1, 2}
        2: records on a helper thread, concurrently with the steps (the same bits).

    Attributes
    ----------
    t : int
        The next iteration (the steps made so far, up to a stop).
    stop_reason : str
        Why the run stopped ("" while it goes on).
    """

    def __init__(self, problem, optimizer, perturbations=(), seed=0, init=None, record_every=1,
                 record_profile=False, record_weights=False, max_norm=1e10, horizon=None,
                 n_jobs=1):
        _check_problem(problem, optimizer, need_optimizer=True)
        self.problem, self.optimizer = problem, optimizer
        seeds = _seed_list(seed)
        if len(seeds) != 1:
            raise ParameterError("seed", seed, "one seed (an integer or a SeedSequence)")
        self.seed = seeds[0]
        self.record_every = check_positive_int(record_every, "record_every")
        self.record_profile = check_bool(record_profile, "record_profile")
        self.record_weights = check_bool(record_weights, "record_weights")
        self.max_norm = check_real(max_norm, "max_norm", low=0.0, low_open=True, finite=False)
        self.horizon = None if horizon is None else check_positive_int(horizon, "horizon")
        if n_jobs not in (1, 2) or isinstance(n_jobs, bool):
            raise ParameterError("n_jobs", n_jobs, "1 or 2")
        optimizer.batch_size(problem.n_samples)  # validates the batch against the data
        self._check_horizon(perturbations)
        plan = Plan(problem, optimizer, perturbations, n_iter=self.horizon or _UNBOUNDED,
                    record_every=self.record_every, record_profile=self.record_profile,
                    record_weights=self.record_weights, max_norm=self.max_norm,
                    record_thread=n_jobs == 2)
        self._perturbations = list(plan.given)
        w0 = _initial_weights(problem, init, [self.seed])[0]
        self._state = _engine.RunState(plan.op_table, plan.params, problem.data.X,
                                       problem.data.y, w0, plan.config, *plan.tables[2:],
                                       run_streams(self.seed))
        self._chunks = []  # (first record, {name: array}) per step() call
        self._init = init

    def _check_horizon(self, perturbations):
        given = check_perturbations(perturbations, self.problem.cascade.n_ops)
        if self.horizon is None and any(isinstance(p.magnitude, HorizonDecay) for p in given):
            raise ParameterError("horizon", None, "the horizon T (a positive integer) for a "
                                 "HorizonDecay magnitude")

    # -- stepping -----------------------------------------------------------------------------
    def step(self, n: int = 1) -> bool:
        """Run ``n`` more iterations (fewer when the run stops), without Python per iteration.

        Parameters
        ----------
        n : int
            Iterations to run.

        Returns
        -------
        bool
            Whether the run goes on (False: it stopped; :attr:`stop_reason` says why).

        Raises
        ------
        KeyboardInterrupt
            On Ctrl-C; the steps before it are kept and the run can go on.
        """
        n = check_positive_int(n, "n")
        state, every = self._state, self.record_every
        if state.stop != 0:
            return False
        t_end = state.t + n
        if self.horizon is not None and t_end > self.horizon:
            raise ParameterError("n", n, f"at most {self.horizon - state.t} more steps (the "
                                 f"horizon is {self.horizon})")
        first, last = -(-state.t // every), -(-t_end // every)
        chunk = self._new_chunk(last - first)
        state.set_histories(first, *(chunk[k] for k in _HISTORIES), chunk["forward_error"],
                            chunk["backward_error"], chunk["weights"])
        self._chunks.append((first, chunk))
        callbacks = _callbacks.python_parts(self.problem, self._perturbations)
        if callbacks:
            _callbacks.reset()
        with engine_interrupts():
            going = state.advance(t_end)
        if callbacks:
            _callbacks.raise_pending()   # an exception of a Python-defined operator or noise
        if state.stop == STOP_INTERRUPTED:
            raise KeyboardInterrupt
        return going

    def _new_chunk(self, n_rec):
        N, n_w = self.problem.cascade.n_ops, self.problem.n_weights
        chunk = {name: np.full(n_rec, np.nan) for name in _HISTORIES}
        prof = (n_rec if self.record_profile else 0, N)
        chunk["forward_error"], chunk["backward_error"] = np.full(prof, np.nan), \
            np.full(prof, np.nan)
        chunk["weights"] = np.full((n_rec if self.record_weights else 0, n_w), np.nan)
        return chunk

    # -- what the run is now ------------------------------------------------------------------
    @property
    def t(self) -> int:
        """The next iteration: how many steps the run has made."""
        return int(self._state.t)

    @property
    def stop_reason(self) -> str:
        """Why the run stopped: "" while it goes on, else a reason of ``Result.stop_reason``."""
        return _engine.STOP_REASONS[self._state.stop]

    @property
    def weights(self) -> np.ndarray:
        """The run's live weights w_t (a NumPy view: writing it changes the run)."""
        return self._state.weights()

    def gradient(self) -> np.ndarray:
        """The clean gradient of the objective (data mean plus regularizer) at w_t.

        Returns
        -------
        numpy.ndarray (n_weights,)
        """
        return self.problem.gradient(np.array(self.weights))

    @property
    def step_size(self) -> float:
        """The step size of the next iteration; set it to use a constant one from there on."""
        return float(self._state.step_size_at(self._state.t))

    @step_size.setter
    def step_size(self, value):
        self._state.set_step_size(check_real(value, "step_size", low=0.0, low_open=True))

    @property
    def perturbations(self) -> list:
        """The perturbations in force; assign a new list to replace them from the next step."""
        return list(self._perturbations)

    @perturbations.setter
    def perturbations(self, perturbations):
        self._check_horizon(perturbations)
        plan = Plan(self.problem, None, perturbations, n_iter=self.horizon)
        self._state.set_perturbations(*plan.tables[2:])
        self._perturbations = list(plan.given)

    @property
    def history(self) -> dict:
        """The records so far: ``{"iterations", "objective", "grad_norm", "grad_error",
        "step_size"}`` (and ``forward_error``, ``backward_error``, ``weights`` when recorded),
        arrays over the records of iterations 0, r, 2r, ... below :attr:`t`."""
        n_rec = -(-self.t // self.record_every) if self._state.stop == 0 else \
            self._state.stop_iter // self.record_every + 1
        out = {"iterations": np.arange(n_rec, dtype=np.int64) * self.record_every}
        names = list(_HISTORIES) + (["forward_error", "backward_error"] if self.record_profile
                                    else []) + (["weights"] if self.record_weights else [])
        for name in names:
            out[name] = self._joined(name)[:n_rec]
        return out

    def _joined(self, name):
        """History ``name`` over every step() call so far, in order."""
        parts = [chunk[name] for _, chunk in self._chunks]
        return np.concatenate(parts) if parts else self._new_chunk(0)[name]

    def result(self) -> Result:
        """The run so far as a one-run :class:`fastcascade.Result`, equal to ``fc.run(...,
        n_iter=t)`` with the same settings when the step size and the perturbations were not
        changed on the way.

        Returns
        -------
        fastcascade.Result
        """
        n_iter = max(self.t, 1) if self._state.stop == 0 else self.t + 1
        n_rec = math.ceil(n_iter / self.record_every)
        hist = {}
        for name in list(_HISTORIES) + ["forward_error", "backward_error", "weights"]:
            joined = self._joined(name)
            full = self._new_chunk(n_rec)[name]
            full[:min(len(joined), n_rec)] = joined[:n_rec]
            hist[name] = full[None]
        if not self.record_profile:
            hist["forward_error"] = hist["backward_error"] = None
        if not self.record_weights:
            hist["weights"] = None
        hist["nonfinite_injections"] = np.array([self._state.nonfinite()], dtype=np.int64)
        stop = self._state.stop
        settings = dict(problem=repr(self.problem), optimizer=repr(self.optimizer),
                        n_iter=n_iter, perturbations=[repr(p) for p in self._perturbations],
                        record_every=self.record_every, record_profile=self.record_profile,
                        record_weights=self.record_weights, engine="cython",
                        max_norm=self.max_norm, simulator=True,
                        init=None if self._init is None else (
                            self._init if isinstance(self._init, str) else "given"))
        return Result(np.arange(n_rec, dtype=np.int64) * self.record_every, hist,
                      np.array(self.weights)[None], [self._state.stop_iter if stop else -1],
                      [_engine.STOP_REASONS[stop]], [self.seed], settings)

    def close(self) -> None:
        """Free the run's buffers now (they go with the object otherwise); the simulator cannot
        step afterwards."""
        self._state.close()

    def __repr__(self):
        return (f"Simulator(t={self.t}, n_weights={self.problem.n_weights}, "
                f"stop_reason={self.stop_reason!r})")

