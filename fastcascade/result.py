"""What a call to ``fc.run`` returns: histories as NumPy arrays, per-run metadata, metrics.

Histories have one row per run and one column per record (iterations 0, r, 2r, ... below
n_iter, with r = record_every), all taken at w_t before that iteration's update:

- ``objective``   l(w_t), the clean full-data objective with the regularizer
- ``grad_norm``   ||grad l(w_t)||, the true full-data gradient norm
- ``grad_error``  ||~u_t - u_t||^2 on the step's own samples (u_t: their clean gradient; the
                  regularizer and the gradient noise sigma_n are not part of either)
- ``step_size``   gamma_t
- ``forward_error``, ``backward_error`` (with ``record_profile=True``), shape
  (n_runs, n_records, N): the batch mean of ||~y_i - y_i||^2 and ||~v_i - v_i||^2, i = 1..N.

A run that diverges stops: ``stopped_at[k]`` is the iteration and ``stop_reason[k]`` says why;
its histories after that record are NaN. Its ``final_weights`` are w_t of that iteration when the
step gradient was at fault, and the weights after the update when the weights were.
"""
from __future__ import annotations

import numpy as np

__all__ = ["Result", "ewma"]

HISTORY_FIELDS = ("objective", "grad_norm", "grad_error", "step_size")
PROFILE_FIELDS = ("forward_error", "backward_error")


def ewma(x, factor=0.99):
    """Exponentially weighted moving average along the last axis: e_0 = x_0,
    e_t = factor e_{t-1} + (1 - factor) x_t (the paper's smoothing of the gradient norm)."""
    x = np.asarray(x, dtype=np.float64)
    if not 0.0 <= factor < 1.0:
        raise ValueError(f"factor: expected a number in [0, 1), given {factor!r}")
    out = np.empty_like(x)
    if x.shape[-1] == 0:
        return out
    out[..., 0] = x[..., 0]
    for t in range(1, x.shape[-1]):
        out[..., t] = factor * out[..., t - 1] + (1.0 - factor) * x[..., t]
    return out


class Result:
    """Histories and final state of one or more runs of the same problem.

    Attributes
    ----------
    iterations : ndarray (n_records,)
    objective, grad_norm, grad_error, step_size : ndarray (n_runs, n_records)
    forward_error, backward_error : ndarray (n_runs, n_records, N) or None
    final_weights : ndarray (n_runs, n_weights)
    stopped_at : ndarray of int (n_runs,), -1 for a run that did not diverge
    stop_reason : list of str ("" for a run that did not diverge)
    seeds : list
    config : dict, the settings of the runs
    """

    def __init__(self, iterations, histories, final_weights, stopped_at, stop_reason, seeds,
                 config):
        self.iterations = iterations
        for name in HISTORY_FIELDS:
            setattr(self, name, histories[name])
        for name in PROFILE_FIELDS:
            setattr(self, name, histories.get(name))
        self.final_weights = final_weights
        self.stopped_at = np.asarray(stopped_at, dtype=np.int64)
        self.stop_reason = list(stop_reason)
        self.seeds = list(seeds)
        self.config = config

    @property
    def n_runs(self):
        return self.final_weights.shape[0]

    @property
    def diverged(self):
        """Boolean (n_runs,): which runs stopped early."""
        return self.stopped_at >= 0

    def ewma_grad_norm(self, factor=0.99):
        """EWMA of the true gradient norm, (n_runs, n_records)."""
        return ewma(self.grad_norm, factor)

    def stable_grad_norm(self, factor=0.99):
        """The paper's stable gradient norm per run: the mean of the EWMA over the last half of
        the records (NaN for a run that diverged)."""
        e = self.ewma_grad_norm(factor)
        half = e.shape[1] // 2
        stable = np.mean(e[:, half:], axis=1)
        stable[self.diverged] = np.nan
        return stable

    def stable_iteration_complexity(self, factor=0.99, threshold=1.5):
        """Per run, the first iteration where the EWMA falls below ``threshold`` times the stable
        gradient norm (-1 when it never does, e.g. after divergence)."""
        e = self.ewma_grad_norm(factor)
        stable = self.stable_grad_norm(factor)
        out = np.full(self.n_runs, -1, dtype=np.int64)
        for k in range(self.n_runs):
            if self.diverged[k]:
                continue
            below = np.nonzero(e[k] < threshold * stable[k])[0]
            if below.size:
                out[k] = self.iterations[below[0]]
        return out

    def summary(self):
        """One line per run: seed, final gradient norm, stable norm, divergence."""
        stable = self.stable_grad_norm()
        lines = [f"{'seed':>6} {'final |grad|':>13} {'stable |grad|':>14}  status"]
        for k in range(self.n_runs):
            last = self.grad_norm[k][np.isfinite(self.grad_norm[k])]
            final = last[-1] if last.size else np.nan
            status = (f"stopped at {self.stopped_at[k]}: {self.stop_reason[k]}"
                      if self.diverged[k] else "ok")
            lines.append(f"{str(self.seeds[k]):>6} {final:13.4e} {stable[k]:14.4e}  {status}")
        return "\n".join(lines)

    def __repr__(self):
        return (f"Result(n_runs={self.n_runs}, n_records={self.iterations.size}, "
                f"diverged={int(self.diverged.sum())})")
