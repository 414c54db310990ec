"""Tests of the Result's derived metrics (``fastcascade.metrics``) and its table helpers.

What is shown here:

1. the EWMA, the stable gradient norm and the stable iteration complexity against values
   computed by hand on constructed histories;
2. spike events on constructed histories whose label is known (recovered, persistent,
   diverged), their merging, their signals, the absolute threshold, the "stop" event;
3. a real run with one large forward perturbation at a known iteration: one recovered spike
   there;
4. the structured history and summary table hold the arrays they name; ``concat`` and
   ``identical``; ``to_frame`` with pandas.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastcascade as fc
from fastcascade import metrics


def make_result(grad_norm, grad_error=None, stopped_at=None, every=1, seeds=None):
    """A Result around given histories (objective = grad_norm, step size 0.1)."""
    g = np.atleast_2d(np.asarray(grad_norm, dtype=np.float64))
    n_runs, n_rec = g.shape
    e = np.zeros_like(g) if grad_error is None else np.atleast_2d(grad_error).astype(float)
    hist = {"objective": g.copy(), "grad_norm": g, "grad_error": e,
            "step_size": np.full_like(g, 0.1)}
    stopped = [-1] * n_runs if stopped_at is None else stopped_at
    reasons = ["" if s < 0 else "non-finite gradient" for s in stopped]
    return fc.Result(np.arange(n_rec) * every, hist, np.zeros((n_runs, 3)), stopped, reasons,
                     list(range(n_runs)) if seeds is None else seeds, {"n_iter": n_rec * every})


# ---------------------------------------------------------------------------------------------
# 1. EWMA, stable norm, stable iteration complexity


def test_ewma_closed_form():
    # e_t = f e_{t-1} + (1 - f) x_t with e_0 = x_0: for a step from 1 to 0, e_t = f^t
    x = np.r_[1.0, np.zeros(20)]
    e = metrics.ewma(x, 0.9)
    np.testing.assert_allclose(e, 0.9 ** np.arange(21), rtol=1e-14)
    assert metrics.ewma(np.ones((3, 5)), 0.5).shape == (3, 5)
    with pytest.raises(ValueError, match="factor"):
        metrics.ewma(x, 1.0)


def test_stable_norm_and_complexity_by_hand():
    # 10 records at 100, then 90 at 1, recorded every 10 iterations; a per-iteration factor
    # f = 0.5 ** 0.1 decays by f ** 10 = 0.5 per record: e_t = 1 + 99 * 0.5^(t-9) for t >= 9
    g = np.r_[np.full(10, 100.0), np.full(90, 1.0)]
    res = make_result([g, 2 * g], every=10)
    f = 0.5 ** 0.1
    t = np.arange(100)
    e = np.where(t < 10, 100.0, 1.0 + 99.0 * 0.5 ** (t - 9))
    np.testing.assert_allclose(res.ewma_grad_norm(f)[0], e, rtol=1e-12)
    np.testing.assert_allclose(res.stable_grad_norm(f), [e[50:].mean(), 2 * e[50:].mean()],
                               rtol=1e-12)
    # first t with e_t < 1.5 * stable (stable ~ 1): 99 * 0.5^(t-9) < 0.5 -> t - 9 >= 8
    stable = e[50:].mean()
    first = int(np.nonzero(e < 1.5 * stable)[0][0])
    assert first == 17
    assert res.stable_iteration_complexity(f).tolist() == [170, 170]
    # a stricter threshold comes later
    assert res.stable_iteration_complexity(f, threshold=1.01)[0] > 170


def test_diverged_run_has_no_stable_norm():
    g = np.ones((2, 20))
    g[1, 5:] = np.nan
    res = make_result(g, stopped_at=[-1, 5])
    assert res.stable_grad_norm()[0] == 1.0 and np.isnan(res.stable_grad_norm()[1])
    assert res.stable_iteration_complexity().tolist() == [0, -1]


# ---------------------------------------------------------------------------------------------
# 2. spike events on constructed histories


def events_of(g, e=None, stopped=-1, **kw):
    res = make_result(g, e, stopped_at=[stopped])
    return res.spike_events(**kw)


def test_isolated_spike_recovers():
    g = np.full(300, 1.0)
    g[120] = 40.0
    ev = events_of(g)
    assert ev[["run", "start", "end", "peak", "signal", "label"]].tolist() == \
        [(0, 120, 120, 120, "grad_norm", "recovered")]
    assert ev["ratio"][0] == pytest.approx(40.0)


def test_jump_that_stays_is_persistent():
    g = np.r_[np.full(150, 1.0), np.full(150, 30.0)]
    ev = events_of(g)
    assert ev["label"].tolist() == ["persistent"]
    # the event lasts until the trailing median (window 50) has caught up: half a window
    assert ev["start"][0] == 150 and 170 <= ev["end"][0] <= 180


def test_spike_then_divergence_is_diverged():
    g = np.full(200, 1.0)
    g[100:110] = np.geomspace(20.0, 1e8, 10)
    g[110:] = np.nan
    ev = events_of(g, stopped=110)
    assert ev[["start", "signal", "label"]].tolist() == [(100, "grad_norm", "diverged")]


def test_spike_that_recovered_before_a_later_divergence_is_recovered():
    g = np.full(300, 1.0)
    g[50] = 100.0
    g[250:] = np.nan
    ev = events_of(g, stopped=250)
    # the early spike recovered; the divergence, with no spike before it, is a "stop" event
    assert ev[["start", "signal", "label"]].tolist() == [(50, "grad_norm", "recovered"),
                                                         (250, "stop", "diverged")]


def test_gradient_error_spikes_from_a_zero_baseline_and_signals_merge():
    g = np.full(200, 1.0)
    e = np.zeros(200)
    e[80] = 1e-3            # error only: intermittent perturbation that the norm shrugs off
    e[140:142] = 5.0        # error and norm together, two records long: one event
    g[141] = 50.0
    ev = events_of(g, e)
    assert ev[["start", "end", "signal", "label"]].tolist() == \
        [(80, 80, "grad_error", "recovered"), (140, 141, "both", "recovered")]
    assert np.isinf(ev["ratio"][0])  # over a zero baseline
    # only the gradient norm: the first event goes away
    ev = events_of(g, e, signals="grad_norm")
    assert ev[["start", "signal"]].tolist() == [(141, "grad_norm")]


def test_absolute_threshold_and_smooth_series():
    e = np.zeros(200)
    e[80], e[140] = 1e-3, 5.0
    g = np.geomspace(1.0, 1e-3, 200)  # smooth decay: never a spike
    assert events_of(g).size == 0
    ev = events_of(g, e, threshold=0.0, min_value=1.0)
    assert ev["start"].tolist() == [140]
    # not enough history for a baseline: no spike in the first max(3, window // 5) records
    g2 = np.r_[1.0, 100.0, np.ones(98)]
    assert events_of(g2).size == 0


def test_spike_options_are_checked():
    with pytest.raises(ValueError, match="window"):
        events_of(np.ones(10), window=0)
    with pytest.raises(ValueError, match="signals"):
        events_of(np.ones(10), signals=("objective",))


# ---------------------------------------------------------------------------------------------
# 3. a real run with one large forward perturbation at a known iteration


def test_real_run_one_recovered_spike_where_the_perturbation_strikes():
    data = fc.datasets.synthetic_logistic(300, 5, seed=1)
    problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), data,
                         regularizer=fc.reg.NonConvex(1e-3))
    pert = fc.Perturbation(op=1, pass_="forward", noise=fc.noise.Uniform(5.0, 10.0),
                           timing=fc.timing.At([1200]))
    res = fc.run(problem, fc.SGD(0.5, grad_noise_std=1e-3), 2000, [pert], seeds=[0],
                 record_every=10)
    ev = res.spike_events()
    # the gradient error jumps at 1200 (from exactly 0), the gradient norm after that step;
    # consecutive records make one event, which decays back: recovered
    assert ev[["start", "peak", "signal", "label"]].tolist() == \
        [(1200, 1200, "both", "recovered")]
    assert 1210 <= ev["end"][0] < 1500
    table = res.summary_table()
    assert table["n_spikes"].tolist() == [1] and table["n_recovered"].tolist() == [1]


# ---------------------------------------------------------------------------------------------
# 4. tables


def test_history_and_summary_table_hold_the_arrays():
    g = np.abs(np.random.default_rng(0).standard_normal((3, 40))) + 1.0
    g[2, 10:] = np.nan
    res = make_result(g, stopped_at=[-1, -1, 10], every=5, seeds=[7, 8, 9])
    h = res.history
    assert h.dtype.names == ("iteration", "objective", "grad_norm", "grad_error", "step_size")
    assert h.shape == (3, 40)
    assert np.array_equal(h["grad_norm"], res.grad_norm, equal_nan=True)
    assert np.array_equal(h["iteration"][1], np.arange(40) * 5)
    t = res.summary_table()
    assert t["seed"].tolist() == [7, 8, 9]
    assert t["diverged"].tolist() == [False, False, True]
    assert t["stopped_at"].tolist() == [-1, -1, 10]
    assert t["stop_reason"].tolist() == ["", "", "non-finite gradient"]
    np.testing.assert_array_equal(t["final_grad_norm"], [g[0, -1], g[1, -1], g[2, 9]])
    np.testing.assert_array_equal(t["stable_grad_norm"], res.stable_grad_norm())
    np.testing.assert_array_equal(t["stable_iteration"], res.stable_iteration_complexity())
    text = res.summary()
    assert len(text.splitlines()) == 4 and "stopped at 10: non-finite gradient" in text


def test_concat_and_identical():
    a = make_result(np.ones((2, 10)), seeds=[0, 1])
    b = make_result(np.full((1, 10), 2.0), seeds=[2])
    c = fc.Result.concat([a, b])
    assert c.n_runs == 3 and c.seeds == [0, 1, 2]
    assert np.array_equal(c.grad_norm[2], np.full(10, 2.0))
    assert c.identical(fc.Result.concat([a, b])) and not c.identical(a)
    d = fc.Result.concat([a, b])
    d.grad_norm[0, 0] = np.nextafter(1.0, 2.0)  # one ulp
    assert not c.identical(d)
    with pytest.raises(ValueError, match=r"results\[1\]"):
        fc.Result.concat([a, make_result(np.ones((1, 5)))])


def test_to_frame():
    pd = pytest.importorskip("pandas")
    res = make_result(np.ones((2, 10)), seeds=[3, 4])
    df = res.to_frame()
    assert isinstance(df, pd.DataFrame)
    assert df["seed"].tolist() == [3, 4]
    assert list(df.columns) == list(res.summary_table().dtype.names)


def test_a_later_unrelated_divergence_does_not_relabel_an_earlier_spike():
    # a jump that stays up (persistent), then a second event after which the run stops: only
    # the second is "diverged"; the first is labelled from what lies between the two
    g = np.full(400, 1.0)
    g[100:] = 30.0
    g[250:] = 1e9
    g[260:] = np.nan
    ev = events_of(g, stopped=260)
    assert ev[["start", "label"]].tolist() == [(100, "persistent"), (250, "diverged")]
    # recovery is looked for before the next event only: the norm stays at 30 up to a second
    # event at 130 and is back to 1 after it, which is the second event's recovery
    g = np.full(400, 1.0)
    g[100:130] = 30.0
    g[130] = 3000.0
    ev = events_of(g, stopped=-1)
    assert ev[["start", "label"]].tolist() == [(100, "persistent"), (130, "recovered")]


def test_real_run_forward_spike_stays_persistent_when_a_backward_spike_kills_the_run():
    # the example: forward Constant(30) at 1000 alone is persistent; a backward
    # Constant(1e12) at 2500 stops the run at 2500 and must not relabel the first event
    problem = fc.problems.paper_logistic()
    opt = fc.SGD(step_size=0.1, batch="full", grad_noise_std=1e-3)
    first = fc.Perturbation(1, "forward", fc.noise.Constant(30.0), timing=fc.timing.At([1000]))
    kill = fc.Perturbation(2, "backward", fc.noise.Constant(1e12), timing=fc.timing.At([2500]))
    alone = fc.run(problem, opt, 4000, perturbations=[first], seeds=[0]).spike_events()
    both_res = fc.run(problem, opt, 4000, perturbations=[first, kill], seeds=[0])
    both = both_res.spike_events()
    assert alone[["start", "label"]].tolist() == [(1000, "persistent")]
    assert both_res.stopped_at.tolist() == [2500]
    assert both[["start", "label"]].tolist() == [(1000, "persistent"), (2500, "diverged")]
