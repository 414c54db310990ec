"""Records evaluated on a helper thread (fc.run with two threads or more per run): the same
results as recording serially, to the bit, including where a record stops the run.

The helper evaluates record k (the clean pass at w_t) while the run goes on with the next steps,
on a second perturbed pass, so each case below runs past several records before the helper is
done with one. A record that finds a non-finite objective stops the run at its step: the engine
then goes back to that step's weights and stream states, which the generators' final states show.
The full-batch cases also take the engine's paired path (the perturbed pass's first weight block
written by the record's clean pass, FirstBlockPair in _engine.pyx) at every serial record and at
the records made inline while the helper is busy; a step that leaves the block and then posts
its record after all writes the block alone: the comparisons check all three.
"""
import math

import numpy as np
import pytest

import fastcascade as fc
from fastcascade.runner import run_streams
from fastcascade._kernels import _engine
from fastcascade.bench import mlp_problem
from fastcascade.perturbation import check_perturbations, sort_by_site, perturbation_tables

HISTORIES = ("objective", "grad_norm", "grad_error", "step_size")


def paper_like(M=300, seed=0):
    problem = fc.problems.paper_logistic(n_samples=M, n_features=10, seed=seed)
    perts = [fc.Perturbation(op=1, pass_="forward", noise=fc.noise.Uniform(-0.6, 0.6)),
             fc.Perturbation(op=2, pass_="backward", noise=fc.noise.Uniform(-0.6, 0.6))]
    return problem, perts


def diverging_regression(M=50, d=4, seed=0):
    """Least squares whose step size makes |w| grow by about 30x a step: the objective
    (squares of the residuals) overflows to inf while the gradient (linear in them) and the
    weights are still finite, so the run stops at a record, on a non-finite objective."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((M, d))
    y = X @ rng.standard_normal((d, 1))
    problem = fc.Problem(fc.Cascade([fc.ops.Linear(d, 1), fc.ops.SquaredError()]), (X, y))
    return problem, fc.SGD(8.0)


def direct_run(problem, opt, n_iter, perts, seed, record_every, record_thread, max_norm=1e10,
               generators=None, record_profile=False, record_weights=False, behind_every=0):
    """One run through _engine.run_one as fc.run makes it, with the helper thread asked for or
    not; returns the histories, the final weights, the outcome and the generators."""
    N = problem.cascade.n_ops
    perts = sort_by_site(check_perturbations(perts, N), N)
    pint, preal, ptimes = perturbation_tables(perts, N, n_iter)
    config = opt.engine_config()
    config.update(n_iter=n_iter, record_every=record_every, record_profile=int(record_profile),
                  record_weights=int(record_weights), reg_code=problem.regularizer.kernel_code,
                  reg_scale=problem.regularizer.kernel_scale, max_norm=max_norm,
                  record_thread=int(record_thread), _record_behind_every=behind_every)
    n_rec, n_w = math.ceil(n_iter / record_every), problem.n_weights
    hist = {name: np.full(n_rec, np.nan) for name in HISTORIES}
    prof = (n_rec if record_profile else 0, N)
    hist["forward_error"], hist["backward_error"] = np.full(prof, np.nan), np.full(prof, np.nan)
    hist["weights"] = np.full((n_rec if record_weights else 0, n_w), np.nan)
    gens = generators if generators is not None else run_streams(seed)
    w = problem.init_weights(seed=seed) if n_w else np.zeros(0)
    stop_iter, stop, concurrent = _engine.run_one(
        problem.plan.op_table, problem.plan.params, problem.data.X, problem.data.y, w, config,
        pint, preal, ptimes, *gens, hist["objective"], hist["grad_norm"], hist["grad_error"],
        hist["step_size"], hist["forward_error"], hist["backward_error"], hist["weights"])
    return dict(hist=hist, w=w, stop=(stop_iter, stop), concurrent=concurrent,
                states=[repr(g.bit_generator.state) for g in gens])


def assert_same(a, b):
    for name, h in a["hist"].items():
        np.testing.assert_array_equal(h, b["hist"][name], err_msg=name)
    np.testing.assert_array_equal(a["w"], b["w"])
    assert a["stop"] == b["stop"]
    assert a["states"] == b["states"]


CASES = {
    "paper, full batch, every step": (lambda: paper_like(), fc.SGD(0.05, grad_noise_std=1e-3), 1),
    "paper, full batch, every 3": (lambda: paper_like(), fc.SGD(0.05), 3),
    "minibatch 16 shuffled, every 5": (lambda: paper_like(M=100),
                                       fc.SGD(0.05, batch=16, sampling="shuffle"), 5),
    "one sample, every 7": (lambda: paper_like(M=100), fc.SGD(0.05, batch=1), 7),
    "minibatch 300 of 1000, every 3": (lambda: paper_like(M=1000), fc.SGD(0.05, batch=300), 3),
    "mlp, one sample, Adam, every 4": (
        lambda: (mlp_problem(9, n_samples=60)[0],
                 [fc.Perturbation(op=2, pass_="forward", noise=fc.noise.Gaussian(0.0, 0.05))]),
        fc.Adam(0.01, batch=1), 4),
    "mlp, minibatch 8, momentum, every 2": (
        lambda: (mlp_problem(9, n_samples=60)[0],
                 [fc.Perturbation(op=3, pass_="backward", noise=fc.noise.Gaussian(0.0, 0.05))]),
        fc.SGD(0.01, batch=8, momentum=0.9), 2),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("extras", [False, True], ids=["plain", "profile+weights"])
def test_records_on_a_helper_thread_are_bit_identical(case, extras):
    make, opt, every = CASES[case]
    problem, perts = make()
    kw = dict(n_iter=61, perts=perts, seed=3, record_every=every, record_profile=extras,
              record_weights=extras)
    serial = direct_run(problem, opt, record_thread=False, **kw)
    helper = direct_run(problem, opt, record_thread=True, **kw)
    assert not serial["concurrent"] and helper["concurrent"]
    assert not np.isnan(helper["hist"]["objective"]).any()
    assert_same(serial, helper)


@pytest.mark.parametrize("case", list(CASES)[:4] + list(CASES)[-2:])
@pytest.mark.parametrize("behind_every", [1, 2, 3, 5])
def test_records_made_inline_when_the_helper_is_behind_are_bit_identical(case, behind_every):
    """When the helper is still busy at the next record (its core taken by another process),
    the run makes that record itself and goes on; the next record finding the helper free goes
    to it again. ``_record_behind_every=k`` counts the helper as busy at every k-th record, so
    both ways and the switches between them happen in one run: the bits are the serial ones.
    """
    make, opt, every = CASES[case]
    problem, perts = make()
    kw = dict(n_iter=200, perts=perts, seed=3, record_every=every, record_profile=True,
              record_weights=True)
    serial = direct_run(problem, opt, record_thread=False, **kw)
    mixed = direct_run(problem, opt, record_thread=True, behind_every=behind_every, **kw)
    assert mixed["concurrent"]
    assert_same(serial, mixed)


@pytest.mark.parametrize("every", [1, 2])
@pytest.mark.parametrize("behind_every", [1, 2, 3, 4, 5])
def test_an_inline_record_that_stops_the_run(behind_every, every):
    """Records made on the run's own thread while the helper is busy, around a stopping record:
    with k = 2 or 3 some pattern posts the stopping record and makes the next one inline
    (which the helper's stop must then clear), others make the stopping record inline."""
    problem, opt = diverging_regression()
    perts = [fc.Perturbation(op=1, pass_="forward", noise=fc.noise.Gaussian(0.0, 0.1))]
    opt = fc.SGD(8.0, grad_noise_std=1e-3)
    kw = dict(n_iter=400, perts=perts, seed=1, record_every=every, max_norm=math.inf,
              record_profile=True, record_weights=True)
    serial = direct_run(problem, opt, record_thread=False, **kw)
    mixed = direct_run(problem, opt, record_thread=True, behind_every=behind_every, **kw)
    assert _engine.STOP_REASONS[serial["stop"][1]] == "non-finite objective"
    assert_same(serial, mixed)


@pytest.mark.parametrize("every", [1, 2, 3])
def test_a_record_that_stops_the_run_goes_back_to_its_step(every):
    """The objective overflows at a record while the steps go on: the run ends at that record's
    step with w_t and the streams as they were there (not where the run had got to)."""
    problem, opt = diverging_regression()
    perts = [fc.Perturbation(op=1, pass_="forward", noise=fc.noise.Gaussian(0.0, 0.1))]
    opt = fc.SGD(8.0, grad_noise_std=1e-3)
    kw = dict(n_iter=400, perts=perts, seed=1, record_every=every, max_norm=math.inf)
    serial = direct_run(problem, opt, record_thread=False, **kw)
    helper = direct_run(problem, opt, record_thread=True, **kw)
    stop_iter, code = serial["stop"]
    assert _engine.STOP_REASONS[code] == "non-finite objective"
    assert 0 < stop_iter < 400 and stop_iter % every == 0
    assert helper["concurrent"]
    assert_same(serial, helper)
    # the same stop as the NumPy engine's
    with np.errstate(over="ignore", invalid="ignore"):   # the NumPy engine's overflow
        res = fc.run(problem, opt, 400, perts, seeds=1, record_every=every, max_norm=math.inf,
                     init="random", engine="numpy")
    assert res.stopped_at[0] == stop_iter and res.stop_reason[0] == "non-finite objective"


@pytest.mark.parametrize("every", [1, 4])
def test_a_step_that_stops_the_run_waits_for_the_last_record(every):
    """A run that stops on its gradient or weights (max_norm) while the helper still records:
    the records up to the stop are all there, and the streams where that step left them, as
    serially."""
    problem, opt = diverging_regression()
    perts = [fc.Perturbation(op=1, pass_="forward", noise=fc.noise.Uniform(-0.1, 0.1))]
    kw = dict(n_iter=400, perts=perts, seed=2, record_every=every, max_norm=1e30)
    serial = direct_run(problem, opt, record_thread=False, **kw)
    helper = direct_run(problem, opt, record_thread=True, **kw)
    assert _engine.STOP_REASONS[serial["stop"][1]] in ("gradient norm above max_norm",
                                                       "weight norm above max_norm")
    assert helper["concurrent"]
    assert_same(serial, helper)


def test_other_bit_generators_record_serially():
    """The helper needs streams whose states the run can copy (PCG64); with others the run
    records on its own thread, with the same results."""
    problem, perts = paper_like(M=80)
    gens = lambda: [np.random.Generator(np.random.Philox(s)) for s in (1, 2, 3, 4)]  # noqa: E731
    kw = dict(n_iter=30, perts=perts, seed=0, record_every=2)
    serial = direct_run(problem, fc.SGD(0.05), record_thread=False, generators=gens(), **kw)
    helper = direct_run(problem, fc.SGD(0.05), record_thread=True, generators=gens(), **kw)
    assert not helper["concurrent"]
    assert_same(serial, helper)


def test_fc_run_uses_the_helper_with_two_threads_per_run(monkeypatch):
    """fc.run asks for the helper when n_jobs leaves two threads or more per run."""
    asked = []
    real = _engine.run_one

    def spy(*args, **kwargs):
        asked.append(args[5]["record_thread"])
        return real(*args, **kwargs)

    monkeypatch.setattr(_engine, "run_one", spy)
    problem, perts = paper_like(M=50)
    for n_jobs, seeds in ((1, [0]), (2, [0]), (2, [0, 1]), (4, [0, 1])):
        asked.clear()
        fc.run(problem, fc.SGD(0.05), 10, perts, seeds=seeds, n_jobs=n_jobs)
        assert set(asked) == {int(n_jobs >= 2 * len(seeds))}, (n_jobs, seeds)


@pytest.mark.parametrize("n_iter", [1, 2, 3])
def test_runs_of_a_few_steps(n_iter):
    """Runs shorter than the hand-over (the first record still on the helper at the end)."""
    problem, perts = paper_like()
    kw = dict(n_iter=n_iter, perts=perts, seed=5, record_every=1)
    serial = direct_run(problem, fc.SGD(0.05), record_thread=False, **kw)
    helper = direct_run(problem, fc.SGD(0.05), record_thread=True, **kw)
    assert helper["concurrent"]
    assert_same(serial, helper)


def test_run_one_refuses_histories_of_the_wrong_length():
    """One entry per record, ceil(n_iter / record_every): a shorter array would be written past
    its end."""
    problem, perts = paper_like(M=50)
    good = direct_run(problem, fc.SGD(0.05), 10, perts, 0, 3, False)
    assert good["hist"]["objective"].shape == (4,)
    N = problem.cascade.n_ops
    pint, preal, ptimes = perturbation_tables(sort_by_site(check_perturbations(perts, N), N), N,
                                              10)
    config = fc.SGD(0.05).engine_config()
    config.update(n_iter=10, record_every=3, record_profile=0, record_weights=0,
                  reg_code=problem.regularizer.kernel_code,
                  reg_scale=problem.regularizer.kernel_scale, max_norm=1e10, record_thread=0)
    for short in ("objective", "step_size"):
        h = {name: np.full(4, np.nan) for name in HISTORIES}
        h[short] = np.full(3, np.nan)
        with pytest.raises(ValueError, match="one entry per record"):
            _engine.run_one(problem.plan.op_table, problem.plan.params, problem.data.X,
                            problem.data.y, np.zeros(problem.n_weights), config, pint, preal,
                            ptimes, *run_streams(0), h["objective"], h["grad_norm"],
                            h["grad_error"], h["step_size"], np.zeros((0, N)),
                            np.zeros((0, N)))
