"""``fc.Plan``: the one place where a run's specifications become the flat data the compiled
engine reads.

A plan is built from (problem, optimizer, perturbations) and the run's settings:

- the operator table and fixed parameters (the cascade's lowering: ``Operator.plan_row``, one
  int64 row per operator, columns ``_ops.OP_COLUMNS``);
- the perturbation tables (``perturbation_tables``: an int64 and a float64 row per
  perturbation, columns ``_noise.PERT_INT_COLUMNS`` / ``PERT_REAL_COLUMNS``, rows sorted by
  site, and the ``At`` iterations);
- the engine configuration (``Optimizer.engine_config`` plus the run's settings and the
  regularizer's code and scale; keys ``_engine.CONFIG_KEYS``).

The column names come from the enums of the ``.pxd`` files the kernels read, so a table is
written by name and read by the same indices. ``fc.run``, ``fc.perturbed_gradient``,
``fc.Simulator``, ``theory.gradient_error_stats`` and the benchmarks lower through it; the
NumPy engine runs the same plan's sorted perturbations and configuration, so the engines'
agreement tests check the lowering too.

Examples
--------
>>> import fastcascade as fc
>>> problem = fc.problems.paper_logistic(n_samples=50, n_features=3, seed=0)
>>> pert = fc.Perturbation(op=1, noise=fc.noise.Uniform(-1.0, 1.0))
>>> plan = fc.Plan(problem, fc.SGD(0.1), [pert], n_iter=100)
>>> int(plan.column("pert_int", "op")[0]), int(plan.column("op_table", "d_in")[0])
(1, 3)
>>> plan.config["n_iter"], plan.config["step_size"]
(100, 0.1)
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from fastcascade._kernels import _engine, _noise, _ops
from fastcascade.errors import ParameterError
from fastcascade.optim import Optimizer
from fastcascade.perturbation import (Perturbation, check_perturbations, check_widths,
                                      perturbation_tables, sort_by_site)
from fastcascade.problem import Problem

__all__ = ["Plan"]

_COLUMNS = {"op_table": _ops.OP_COLUMNS, "pert_int": _noise.PERT_INT_COLUMNS,
            "pert_real": _noise.PERT_REAL_COLUMNS}


class Plan:
    """The flat data of a run, lowered once.

    Parameters
    ----------
    problem : fastcascade.Problem
    optimizer : fastcascade.SGD or fastcascade.Adam, optional
        Without it the plan has no ``config`` (one gradient, ``fc.perturbed_gradient``).
    perturbations : sequence of fastcascade.Perturbation
        Checked against the cascade (sites, widths).
    n_iter : int, optional
        The horizon T: the run's length, needed by ``HorizonDecay`` magnitudes.
    record_every : int, default 1
    record_profile, record_weights : bool, default False
    max_norm : float, default 1e10
    record_thread : bool, default False
        Records on a helper thread (``fc.run`` with two threads or more per run).

    Attributes
    ----------
    op_table : numpy.ndarray
        int64 (N, len(_ops.OP_COLUMNS)).
    params : numpy.ndarray
        float64, the operators' fixed parameters, concatenated.
    perturbations : tuple of Perturbation
        Sorted by site (forward sites 1..N, then backward), the user's order within a site.
    pert_int, pert_real, pert_times : numpy.ndarray
        The perturbation tables (int64 rows, float64 rows, the ``At`` iterations).
    config : dict or None
        The engine configuration, keys ``_engine.CONFIG_KEYS`` (None without an optimizer).
    """

    def __init__(self, problem: Problem, optimizer: Optimizer | None = None,
                 perturbations: Iterable[Perturbation] = (), n_iter: int | None = None,
                 record_every: int = 1, record_profile: bool = False,
                 record_weights: bool = False, max_norm: float = 1e10,
                 record_thread: bool = False):
        N = problem.cascade.n_ops
        given = check_perturbations(perturbations, N)
        check_widths(given, problem.cascade.dims)
        self.given = tuple(given)  # in the user's order (for messages that index them)
        self.perturbations = tuple(sort_by_site(given, N))
        self.op_table, self.params = problem.plan.op_table, problem.plan.params
        self.pert_int, self.pert_real, self.pert_times = perturbation_tables(
            self.perturbations, N, n_iter)
        self.config = None if optimizer is None else _engine_config(
            problem, optimizer, n_iter, record_every, record_profile, record_weights, max_norm,
            record_thread)

    @property
    def tables(self) -> tuple:
        """``(op_table, params, pert_int, pert_real, pert_times)``, as the engine takes them."""
        return self.op_table, self.params, self.pert_int, self.pert_real, self.pert_times

    def column(self, table: str, name: str) -> np.ndarray:
        """One named column of a table (a view).

        Parameters
        ----------
        table : {"op_table", "pert_int", "pert_real"}
        name : str
            A column of that table (``_ops.OP_COLUMNS``, ``_noise.PERT_INT_COLUMNS``,
            ``_noise.PERT_REAL_COLUMNS``).

        Returns
        -------
        numpy.ndarray
            One entry per operator or perturbation.
        """
        if table not in _COLUMNS:
            raise ParameterError("table", table, f"one of {', '.join(_COLUMNS)}")
        if name not in _COLUMNS[table]:
            raise ParameterError("name", name, f"a column of {table}: "
                                 f"{', '.join(_COLUMNS[table])}")
        return getattr(self, table)[:, _COLUMNS[table][name]]

    def __repr__(self):
        return (f"Plan(n_ops={self.op_table.shape[0]}, perturbations={len(self.perturbations)}, "
                f"config={'none' if self.config is None else 'set'})")


def _engine_config(problem, optimizer, n_iter, record_every, record_profile, record_weights,
                   max_norm, record_thread):
    """The engine's configuration dict: the optimizer's part and the run's, every key of
    ``_engine.CONFIG_KEYS`` and no other."""
    config = optimizer.engine_config()
    config.update(n_iter=n_iter, record_every=record_every, record_profile=int(record_profile),
                  record_weights=int(record_weights),
                  reg_code=problem.regularizer.kernel_code,
                  reg_scale=problem.regularizer.kernel_scale, max_norm=max_norm,
                  record_thread=int(record_thread))
    missing = set(_engine.CONFIG_KEYS) - set(config) - {"_record_behind_every", "_first_ahead"}
    extra = set(config) - set(_engine.CONFIG_KEYS)
    if missing or extra:  # the two sides of the contract disagree: a bug, not bad input
        raise AssertionError(f"engine config: missing {sorted(missing)}, unknown {sorted(extra)}")
    return config
