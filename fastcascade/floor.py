"""Estimates of this CPU's floor for a step (``fastcascade bench``): the paper configuration's
and the per-sample network's.

The floor is the step's unavoidable work, counted (multiply-adds, exponentials, logarithms and
uniform draws), times the throughput the engine's own vector kernels reach on this machine for
each, measured in this process: what a step would cost if the engine did nothing but that work
at those speeds (no loop overhead, no memory traffic beyond what the kernels measured see).

The paper configuration (docs/model.md sec. 6): M samples of d features, full batch, the
Margin + Softplus cascade, uniform noise on f_1's forward output and on f_2's backward message,
the true gradient recorded every ``record_every`` steps. Per step:

- multiply-adds: the forward margins X w (M d), the backward X^T (y * v) (M d) and, at a
  record, the clean backward X^T (y * sigmoid) (M d; the clean forward reuses the perturbed
  pass's margins before their noise, so it costs none);
- exponentials: the backward's sigmoid (M) and, at a record, the fused softplus and sigmoid
  (M exponentials and M logarithms, log1p);
- uniform draws: M forward and M backward (numpy's PCG64 stream, a draw and an add each).

Throughputs come from the engine's own kernels, each timed at two sizes (the difference of the
two times is the cost of the extra elements, free of the call's fixed overhead): the Margin
operator's forward kernel (``_ops.forward``: X w, one multiply-add per entry of X, w in
registers as in the step), ``fastmath("exp")`` on e^-|z|'s arguments, ``fastmath("log1p")`` on
values in (0, 1] (softplus's log1p(e^-|z|)), and ``_noise.apply`` (Uniform, a draw and an
add).
"""
from __future__ import annotations

import time

import numpy as np

__all__ = ["kernel_throughputs", "paper_step_counts", "paper_floor", "weight_pass_times",
           "network_floor"]


def _best_time(fn, repeats):
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _per_element(make_call, n, repeats, inner=20):
    """Seconds per element of a kernel: (t(2n) - t(n)) / n, best of ``repeats`` (each timing
    ``inner`` calls)."""
    small, large = make_call(n), make_call(2 * n)
    t_small = _best_time(lambda: [small() for _ in range(inner)], repeats) / inner
    t_large = _best_time(lambda: [large() for _ in range(inner)], repeats) / inner
    return max(t_large - t_small, 1e-12) / n


def kernel_throughputs(repeats: int = 7) -> dict:
    """The engine's vector kernels' cost per element on this machine, at its SIMD level.

    Parameters
    ----------
    repeats : int, default 7
        Best of this many timings per size (load from other processes only slows a timing).

    Returns
    -------
    dict
        Nanoseconds per element: ``fma`` (a multiply-add of the Margin forward over 2,000 x 10,
        the paper data's size), ``exp`` and ``log1p`` (over 2,000, on e^-|z|'s arguments and
        values) and ``uniform`` (a uniform draw added to a value, over 2,000).
    """
    from fastcascade._kernels import _noise, _ops
    import fastcascade as fc
    from fastcascade.perturbation import perturbation_tables

    rng = np.random.default_rng(0)
    d = 10  # the paper's features: a multiply-add per entry of X (n rows of d)
    margin = fc.ops.Margin(d)
    row = margin.plan_row()

    def margin_forward(n):
        X = rng.standard_normal((n // d, d))
        w, labels = rng.standard_normal(d), np.sign(rng.standard_normal((n // d, 1)))
        return lambda: _ops.forward(row, w, np.zeros(0), X, labels)

    def elementwise(name, low, high, transform=None):
        def make(n):
            x = rng.uniform(low, high, n)
            x = transform(x) if transform else x
            return lambda: _ops.fastmath(name, x)
        return make

    pert = fc.Perturbation(op=1, noise=fc.noise.Uniform(-0.5, 0.5))
    pint, preal, times = perturbation_tables([pert], 1)
    gen = np.random.Generator(np.random.PCG64(1))

    def uniform(n):
        z = np.zeros((n, 1))
        return lambda: _noise.apply(pint[0], preal[0], gen, z, 0, times)

    return {"fma": 1e9 * _per_element(margin_forward, 20_000, repeats),
            "exp": 1e9 * _per_element(elementwise("exp", -30.0, 0.0), 2_000, repeats),
            "log1p": 1e9 * _per_element(elementwise("log1p", -30.0, 0.0, np.exp), 2_000,
                                        repeats),
            "uniform": 1e9 * _per_element(uniform, 2_000, repeats)}


def paper_step_counts(n_samples: int, n_features: int, record_every: int = 1) -> dict:
    """The unavoidable work of one step of the paper configuration, on average over steps.

    Parameters
    ----------
    n_samples, n_features : int
        M and d.
    record_every : int, default 1
        Steps between records (a record's clean pass is spread over them).

    Returns
    -------
    dict
        ``fma``, ``exp``, ``log1p`` and ``uniform`` counts per step (floats).
    """
    M, d, r = n_samples, n_features, record_every
    return {"fma": 2.0 * M * d + M * d / r, "exp": M + M / r, "log1p": M / r,
            "uniform": 2.0 * M}


def paper_floor(n_samples: int = 2000, n_features: int = 10, record_every: int = 1,
                throughputs: dict | None = None) -> dict:
    """The floor of the paper configuration's step: counts times measured throughputs.

    Parameters
    ----------
    n_samples, n_features : int, default 2000 and 10
        M and d.
    record_every : int, default 1
    throughputs : dict, optional
        :func:`kernel_throughputs`' result (measured now when None).

    Returns
    -------
    dict
        ``floor_us`` (microseconds per step), ``parts_us`` (the share of each kind of work),
        ``counts`` and ``throughputs_ns``.
    """
    rates = kernel_throughputs() if throughputs is None else throughputs
    counts = paper_step_counts(n_samples, n_features, record_every)
    parts = {k: counts[k] * rates[k] * 1e-3 for k in counts}
    return {"floor_us": float(sum(parts.values())), "parts_us": parts, "counts": counts,
            "throughputs_ns": rates}


def weight_pass_times(width: int, repeats: int = 7) -> dict:
    """What one pass over a ``width`` x ``width`` weight matrix costs on this machine, with the
    engine's own kernels, in microseconds: ``read_write`` (the per-sample SGD update of a
    Linear, which also gives its next forward output: fc_outer_axpy_matvec_sumsq) and ``read``
    (the backward message W^T v: fc_matvec_t). Each is the difference of the kernel's time on
    2 ``width`` and ``width`` rows (free of the call's fixed cost; the matrices, 2 width^2
    doubles, sit in L2 as the network's two hidden weight matrices do).

    Parameters
    ----------
    width : int
        The matrix's rows and columns.
    repeats : int, default 7
        Best of this many timings per size.

    Returns
    -------
    dict
        ``read_write`` and ``read``, microseconds per pass.
    """
    from fastcascade._kernels import _ops

    rng = np.random.default_rng(0)
    z, x = rng.standard_normal(width), rng.standard_normal(width)

    def read_write(n_rows):
        y, g = rng.standard_normal(n_rows * width), 1e-9 * rng.standard_normal(n_rows)
        return lambda: _ops.fastmath_outer_axpy_matvec_sumsq(-1e-3, g, z, y, x)

    def read(n_rows):
        W, v = rng.standard_normal((n_rows, width)), rng.standard_normal(n_rows)
        return lambda: _ops.fastmath_matvec_t(W, v)

    return {"read_write": 1e6 * width * _per_element(read_write, width, repeats),
            "read": 1e6 * width * _per_element(read, width, repeats)}


def network_floor(width: int, pass_times: dict | None = None) -> dict:
    """The floor of a per-sample SGD step of ``fastcascade.bench.mlp_problem(width)`` (Linear,
    Tanh, Linear, Tanh, Linear(width, 1), squared error) when its two width x width weight
    matrices do not fit in L1: the passes over them that the step's data dependencies leave.

    Each matrix is updated once (a read and a write, which can also give its next forward
    output), and the second is read once more, before its update, for the backward message
    W_2^T v: the update waits for the gradient's norm (the divergence check), which needs
    that message first, so the two reads cannot share a pass. Two read-write passes and one
    read pass, at ``weight_pass_times``; the elementwise work and the last Linear are left
    out (a floor). The engine makes one read pass more: it fuses f_1's next forward into f_1's
    update, not yet W_2's (that needs the next step's f_2 and its forward perturbation's
    draws inside this step's update).

    Parameters
    ----------
    width : int
    pass_times : dict, optional
        :func:`weight_pass_times`' result (measured now when None).

    Returns
    -------
    dict
        ``floor_us``, ``passes`` (their counts) and ``pass_us`` (the times used).
    """
    times = weight_pass_times(width) if pass_times is None else pass_times
    passes = {"read_write": 2, "read": 1}
    return {"floor_us": float(sum(n * times[k] for k, n in passes.items())), "passes": passes,
            "pass_us": times}
