"""fc.Simulator (issue 16, item 4): n steps, in one call or many, are bit-identical to
``fc.run(..., n_iter=n)``; the step size and the perturbations can change between calls.

The simulator and ``fc.run`` drive the same engine state (``_engine.RunState``), so these tests
check that splitting a run into calls changes nothing: the records that straddle two calls, the
shuffled minibatch position, the momentum buffer, the helper thread's last record and the
streams all carry over.
"""
import math

import numpy as np
import pytest

import fastcascade as fc
from fastcascade.bench import mlp_problem

FIELDS = ("objective", "grad_norm", "grad_error", "step_size", "forward_error",
          "backward_error", "weights")


def paper_case():
    problem = fc.problems.paper_logistic(n_samples=300, n_features=10, seed=0)
    perts = [fc.Perturbation(op=1, pass_="forward", noise=fc.noise.Uniform(-0.6, 0.6)),
             fc.Perturbation(op=2, pass_="backward", noise=fc.noise.Gaussian(0.0, 0.3))]
    return problem, fc.SGD(0.3, grad_noise_std=1e-3), perts, dict(record_every=1)


def minibatch_momentum_case():
    problem = fc.problems.paper_logistic(n_samples=100, n_features=6, seed=1)
    perts = [fc.Perturbation(op=1, noise=fc.noise.Uniform(-0.3, 0.3),
                             timing=fc.timing.Every(3))]
    opt = fc.SGD(0.05, batch=16, sampling="shuffle", momentum=0.9)
    return problem, opt, perts, dict(record_every=3, record_profile=True, record_weights=True)


def mlp_adam_thread_case():
    problem = mlp_problem(9, n_samples=60)[0]
    perts = [fc.Perturbation(op=2, pass_="forward", noise=fc.noise.Gaussian(0.0, 0.05))]
    return problem, fc.Adam(0.01, batch=1), perts, dict(record_every=4, init="random",
                                                         n_jobs=2)


CASES = {"paper": paper_case, "minibatch+momentum": minibatch_momentum_case,
         "mlp+adam+thread": mlp_adam_thread_case}


def assert_same_run(a, b):
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        if x is None or y is None:
            assert x is None and y is None, name
            continue
        np.testing.assert_array_equal(x, y, err_msg=name)
    np.testing.assert_array_equal(a.final_weights, b.final_weights)
    np.testing.assert_array_equal(a.stopped_at, b.stopped_at)
    assert list(a.stop_reason) == list(b.stop_reason)
    np.testing.assert_array_equal(a.nonfinite_injections, b.nonfinite_injections)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("splits", [[120], [1, 29, 90], [7, 7, 7, 99]],
                         ids=["one call", "three calls", "four calls"])
def test_n_steps_are_bit_identical_to_fc_run(case, splits):
    problem, opt, perts, kw = CASES[case]()
    sim = fc.Simulator(problem, opt, perts, seed=5, **kw)
    for n in splits:
        assert sim.step(n)
    assert sim.t == sum(splits)
    res = fc.run(problem, opt, sum(splits), perts, seeds=5, **kw)
    assert_same_run(sim.result(), res)
    np.testing.assert_array_equal(sim.weights, res.final_weights[0])
    hist = sim.history
    np.testing.assert_array_equal(hist["objective"], res.objective[0])
    np.testing.assert_array_equal(hist["iterations"], res.iterations)


def test_a_stop_is_the_one_of_fc_run():
    """Least squares with a step size that diverges: the simulator stops where fc.run stops
    (here on a record's non-finite objective), and stepping on does nothing."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 4))
    problem = fc.Problem(fc.Cascade([fc.ops.Linear(4, 1), fc.ops.SquaredError()]),
                         (X, X @ rng.standard_normal((4, 1))))
    opt, kw = fc.SGD(8.0), dict(record_every=1, max_norm=math.inf, init="random")
    sim = fc.Simulator(problem, opt, seed=1, **kw)
    going = [sim.step(50) for _ in range(10)]
    assert going[-1] is False and sim.stop_reason == "non-finite objective"
    res = fc.run(problem, opt, sim.t + 1, seeds=1, **kw)
    assert res.stop_reason[0] == sim.stop_reason
    assert sim.result().stopped_at[0] == res.stopped_at[0] == sim.t
    np.testing.assert_array_equal(sim.history["grad_norm"], res.grad_norm[0])
    assert sim.step(10) is False


def test_changing_the_step_size_between_calls_equals_a_step_schedule():
    problem, opt, perts, kw = paper_case()
    sim = fc.Simulator(problem, fc.SGD(0.5, grad_noise_std=1e-3), perts, seed=2, **kw)
    sim.step(50)
    assert sim.step_size == 0.5
    sim.step_size = 0.1  # 0.5 * 0.2 is 0.1 to the bit
    sim.step(50)
    sched = fc.SGD(0.5, grad_noise_std=1e-3, schedule=fc.schedules.StepDecay(0.2, 50))
    res = fc.run(problem, sched, 100, perts, seeds=2, **kw)
    np.testing.assert_array_equal(sim.result().objective, res.objective)
    np.testing.assert_array_equal(sim.weights, res.final_weights[0])


def test_a_perturbation_injected_between_calls_equals_one_timed_from_the_start():
    """A spike At([100]) draws nothing before it fires, so injecting it at t = 100 gives the run
    that had it from the start."""
    problem = fc.problems.paper_logistic(n_samples=200, n_features=5, seed=3)
    spike = fc.Perturbation(op=1, noise=fc.noise.Constant(30.0), timing=fc.timing.At([100]))
    sim = fc.Simulator(problem, fc.SGD(0.5), seed=4)
    sim.step(100)
    sim.perturbations = [spike]
    sim.step(100)
    res = fc.run(problem, fc.SGD(0.5), 200, [spike], seeds=4)
    np.testing.assert_array_equal(sim.result().grad_norm, res.grad_norm)
    assert sim.perturbations == [spike]


def test_the_weights_are_a_live_view_and_the_gradient_is_the_clean_one():
    problem = fc.problems.paper_logistic(n_samples=100, n_features=5, seed=0)
    sim = fc.Simulator(problem, fc.SGD(0.5), seed=0)
    w = sim.weights
    sim.step(10)
    assert np.shares_memory(w, sim.weights) and np.any(w != 0)
    np.testing.assert_allclose(sim.gradient(), problem.gradient(np.array(w)), rtol=0, atol=0)
    w[:] = 0.0  # the run goes on from the weights written (full batch, no noise: no draws)
    sim.step(1)
    np.testing.assert_array_equal(sim.weights, fc.run(problem, fc.SGD(0.5), 1).final_weights[0])


@pytest.mark.parametrize("kwargs, param", [
    (dict(seed=[0, 1]), "seed"),
    (dict(n_jobs=3), "n_jobs"),
    (dict(record_every=0), "record_every"),
    (dict(perturbations=[fc.Perturbation(op=1, noise=fc.noise.Uniform(-1, 1),
                                         magnitude=fc.magnitude.HorizonDecay(0.5))]),
     "horizon"),
])
def test_bad_arguments_name_the_parameter(kwargs, param):
    problem = fc.problems.paper_logistic(n_samples=50, n_features=3, seed=0)
    with pytest.raises(fc.ParameterError) as info:
        fc.Simulator(problem, fc.SGD(0.1), **kwargs)
    assert info.value.param == param


def test_steps_past_the_horizon_are_refused():
    problem = fc.problems.paper_logistic(n_samples=50, n_features=3, seed=0)
    sim = fc.Simulator(problem, fc.SGD(0.1), horizon=20)
    sim.step(15)
    with pytest.raises(fc.ParameterError, match="at most 5 more steps"):
        sim.step(6)
    with pytest.raises(fc.ParameterError):
        sim.step(0)


def test_a_python_defined_operator_steps_as_in_fc_run():
    """The callback path (a Tanh written in Python) through the simulator: the same bits as
    fc.run with it, in two calls."""
    import warnings

    from fastcascade.bench import python_tanh
    built, perts = mlp_problem(8, n_samples=40)
    ops = [python_tanh() if op.kind == "tanh" else op for op in built.cascade.operators]
    problem = fc.Problem(fc.Cascade(ops), (built.data.X, built.data.y))
    opt, kw = fc.SGD(0.01, batch=4), dict(record_every=5, init="random")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fc.PerformanceWarning)
        sim = fc.Simulator(problem, opt, perts, seed=1, **kw)
        sim.step(13)
        sim.step(27)
        res = fc.run(problem, opt, 40, perts, seeds=1, **kw)
    assert_same_run(sim.result(), res)
