"""The per-sample step's first Linear computed ahead: with one sample a step and a plain SGD
update whose rank-1 weight gradients are deferred, the update of f_1's weights also computes f_1
at the next step's sample in the same pass over W_1 (fc_outer_axpy_matvec_sumsq; sgd_step in
_engine.pyx), and the next forward pass skips it. The next sample is the next row of the
shuffle, or drawn from the data stream one step early (only sampling reads that stream); a stop
before that step undraws it. Every case here runs with the computation ahead and without it
(the engine's test-only ``_first_ahead`` key) and must give the same bits: weights, histories,
stop and the generators' final states.
"""
import math

import numpy as np
import pytest

import fastcascade as fc
from fastcascade._kernels import _engine, _ops
from fastcascade.bench import mlp_problem
from fastcascade.perturbation import check_perturbations, perturbation_tables, sort_by_site
from fastcascade.runner import run_streams

from test_avx512 import restore_level, same_bits  # noqa: F401 (restore_level: a fixture)
from test_record_thread import HISTORIES, assert_same, direct_run, diverging_regression

_START = _ops.simd_level()
LEVELS = [level for level in ("avx512", "avx2+fma", "baseline")
          if _ops.set_simd_level(level) == level]
_ops.set_simd_level(_START)


# ---- the kernel ---------------------------------------------------------------------------------

@pytest.mark.parametrize("level", LEVELS)
def test_kernel_is_the_step_then_the_forward(level, restore_level):
    """fc_outer_axpy_matvec_sumsq: y += a g z^T with fc_outer_axpy_sumsq's bits and sum of
    squares, then W x at the new y with fc_matvec's bits (Linear's forward at one sample), for
    row counts around the 8-row groups and widths around the blocks of 4, 8 and 32."""
    assert _ops.set_simd_level(level) == level
    rng = np.random.default_rng(11)
    for m in (1, 2, 7, 8, 9, 17, 64):
        g = rng.normal(size=m)
        for d in list(range(1, 41)) + [63, 64, 127, 128]:
            z, x, y0 = rng.normal(size=d), rng.normal(size=d), rng.normal(size=m * d)
            a = -0.037
            y_split = y0.copy()
            sq_split = _ops.fastmath_outer_axpy_sumsq(a, g, z, y_split)
            op = fc.ops.Linear(d, m, bias=False)
            row = np.ascontiguousarray(op.plan_row())
            out_split = _ops.forward(row, y_split, np.zeros(0), x[None, :], np.zeros((1, 0)))
            y = y0.copy()
            sq, out = _ops.fastmath_outer_axpy_matvec_sumsq(a, g, z, y, x)
            assert same_bits(y, y_split), (m, d)
            assert same_bits(sq, sq_split), (m, d)
            assert same_bits(out, out_split.ravel()), (m, d)


def test_kernel_names_bad_lengths():
    with pytest.raises(ValueError, match="y: length"):
        _ops.fastmath_outer_axpy_matvec_sumsq(1.0, np.ones(2), np.ones(3), np.ones(7),
                                              np.ones(3))
    with pytest.raises(ValueError, match="x: length"):
        _ops.fastmath_outer_axpy_matvec_sumsq(1.0, np.ones(2), np.ones(3), np.ones(6),
                                              np.ones(4))


# ---- the engine: with and without the forward ahead ------------------------------------------------

def both(monkeypatch, problem, opt, n_iter, perts, record_every=7, record_thread=False,
         **kw):
    """direct_run with the forward ahead (the default) and without it."""
    real = _engine.run_one
    out = []
    for flag in (1, 0):
        def run_one(*args, flag=flag):
            args = list(args)
            args[5] = dict(args[5], _first_ahead=flag)   # the config
            return real(*args)
        monkeypatch.setattr(_engine, "run_one", run_one)
        out.append(direct_run(problem, opt, n_iter, perts, 3, record_every, record_thread,
                              **kw))
    monkeypatch.setattr(_engine, "run_one", real)
    return out


def net(width=9, n_samples=13, bias=True, pert=True):
    rng = np.random.default_rng(width)
    X = rng.normal(size=(n_samples, width))
    y = np.tanh(X[:, :1])
    ops = [fc.ops.Linear(width, width, bias=bias), fc.ops.Tanh(), fc.ops.Linear(width, 1),
           fc.ops.SquaredError()]
    perts = [fc.Perturbation(op=2, pass_="forward", noise=fc.noise.Gaussian(0.0, 0.05)),
             fc.Perturbation(op=2, pass_="backward", noise=fc.noise.Uniform(-0.01, 0.01))] \
        if pert else []
    return fc.Problem(fc.Cascade(ops), (X, y)), perts


@pytest.mark.parametrize("sampling", ["replacement", "shuffle"])
@pytest.mark.parametrize("width, bias", [(9, True), (16, False), (37, True)])
def test_runs_ahead_give_the_bits_of_runs_without(monkeypatch, sampling, width, bias):
    """13 samples, so the shuffled runs cross an epoch (no row ahead at the reshuffle) every 13
    steps; records every 7 steps (no deferred update, so nothing ahead, at a record step)."""
    problem, perts = net(width, bias=bias)
    ahead, plain = both(monkeypatch, problem, fc.SGD(0.05, batch=1, sampling=sampling), 90, perts)
    assert ahead["stop"] == (-1, 0)
    assert_same(ahead, plain)


def test_the_benchmark_network_gives_the_same_bits(monkeypatch):
    problem, perts = mlp_problem(24, n_samples=50)
    ahead, plain = both(monkeypatch, problem, fc.SGD(0.01, batch=1), 200, perts, record_every=50)
    assert_same(ahead, plain)


@pytest.mark.parametrize("sampling", ["replacement", "shuffle"])
def test_a_weight_norm_stop_undraws_the_next_row(monkeypatch, sampling):
    """A step size that makes the weights grow until max_norm stops the run after an update:
    the row drawn ahead for the step that does not run is given back (the data stream's final
    state is that of the run without the forward ahead)."""
    problem, _ = net(9, pert=False)
    ahead, plain = both(monkeypatch, problem, fc.SGD(3.0, batch=1, sampling=sampling), 200, [],
                        record_every=1000, max_norm=1e3)
    assert ahead["stop"][0] > 1 and ahead["stop"][1] == 4   # weight norm above max_norm
    assert ahead["stop"] == plain["stop"]
    assert_same(ahead, plain)


def chunked_run(problem, opt, n_iter, perts, chunks, first_ahead, record_every=5, seed=3):
    """A run through RunState.advance in the given chunk lengths (a Simulator stepping, or a
    resumed run); returns what assert_same compares, and how many steps were computed
    ahead."""
    N = problem.cascade.n_ops
    perts = sort_by_site(check_perturbations(perts, N), N)
    pint, preal, ptimes = perturbation_tables(perts, N, n_iter)
    config = opt.engine_config()
    config.update(n_iter=n_iter, record_every=record_every, record_profile=0, record_weights=0,
                  reg_code=problem.regularizer.kernel_code,
                  reg_scale=problem.regularizer.kernel_scale, max_norm=1e10, record_thread=0,
                  _first_ahead=first_ahead)
    n_rec = math.ceil(n_iter / record_every)
    hist = {name: np.full(n_rec, np.nan) for name in HISTORIES}
    empty = np.full((0, N), np.nan)
    gens = run_streams(seed)
    w = problem.init_weights(seed=seed)
    state = _engine.RunState(problem.plan.op_table, problem.plan.params, problem.data.X,
                             problem.data.y, w, config, pint, preal, ptimes, gens)
    try:
        state.set_histories(0, hist["objective"], hist["grad_norm"], hist["grad_error"],
                            hist["step_size"], empty, empty, np.full((0, w.size), np.nan))
        t = 0
        for length in chunks:
            t = min(n_iter, t + length)
            state.advance(t)
        n_ahead = state.n_ahead
        stop = (state.stop_iter, state.stop)
    finally:
        state.close(w)
    hist["forward_error"] = hist["backward_error"] = empty
    hist["weights"] = np.full((0, w.size), np.nan)
    return dict(hist=hist, w=w, stop=stop, concurrent=False,
                states=[repr(g.bit_generator.state) for g in gens]), n_ahead


@pytest.mark.parametrize("sampling", ["replacement", "shuffle"])
def test_runs_advanced_in_chunks_give_the_same_bits(sampling):
    """advance() in uneven chunks (a Simulator stepping, a resumed run): nothing is drawn or
    computed ahead across a chunk's end, and the steps inside the chunks are (n_ahead > 0);
    the same bits as one call without the forward ahead."""
    problem, perts = net(12)
    opt = fc.SGD(0.05, batch=1, sampling=sampling)
    chunks = [1, 1, 2, 7, 30, 3, 1, 55, 200]
    ahead, n_ahead = chunked_run(problem, opt, 300, perts, chunks, 1)
    plain, n_plain = chunked_run(problem, opt, 300, perts, [300], 0)
    assert n_plain == 0 and n_ahead > 200
    assert_same(ahead, plain)


@pytest.mark.parametrize("behind_every", [0, 2, 3])
@pytest.mark.parametrize("record_every", [1, 3, 5])
def test_records_on_a_helper_thread_give_the_same_bits(monkeypatch, behind_every, record_every):
    """With the helper thread recording (passes swapped at each posted record, records made
    inline when it is counted busy): the same bits with and without the forward ahead."""
    problem, perts = net(10)
    opt = fc.SGD(0.05, batch=1)
    ahead, plain = both(monkeypatch, problem, opt, 120, perts, record_every=record_every,
                        record_thread=True, behind_every=behind_every)
    assert_same(ahead, plain)


@pytest.mark.parametrize("record_every", [3, 4, 5])
def test_a_record_that_stops_the_run_on_the_helper_gives_the_same_bits(monkeypatch,
                                                                        record_every):
    """Least squares whose objective overflows while its gradients are finite: the helper's
    record stops the run on a non-finite objective and the engine goes back to that record's
    step and stream states (_rollback), over the rows drawn ahead since."""
    problem, _ = diverging_regression()
    ahead, plain = both(monkeypatch, problem, fc.SGD(8.0, batch=1), 400, [],
                        record_every=record_every, record_thread=True, max_norm=1e300)
    assert ahead["stop"][1] == 5 and ahead["concurrent"]   # non-finite objective
    assert_same(ahead, plain)
