"""Perturbations that cannot do what they say are reported, not silent.

What is shown here:

1. at set-up, a ``PerturbationWarning`` names each perturbation whose timing can never fire
   within ``n_iter`` (``At``/``Window``/``Every`` beyond it, ``Bernoulli(0)``) or that turns
   finite values into non-finite ones (``Uniform(-1e308, 1e308)``, ``FixedPoint(5e-324)``);
   ordinary perturbations warn nothing;
2. during a run, both engines count the (step, site) pairs at which the perturbations left a
   non-finite value, the same count, independent of n_jobs and the record thread; the count is
   in ``Result.nonfinite_injections``, the summary, and the saved file, and a warning says so.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastcascade as fc
from fastcascade.diagnostics import PerturbationWarning, check_setup

P, N = fc.Perturbation, fc.noise


def paper():
    return fc.problems.paper_logistic(n_samples=200)


OPT = fc.SGD(step_size=0.1, batch="full", grad_noise_std=1e-3)


def messages(perts, n_iter=100):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = check_setup(perts, n_iter)
    assert [str(w.message) for w in caught if w.category is PerturbationWarning] == out
    return out


@pytest.mark.parametrize("timing, text", [
    (fc.timing.At([100, 250]), "iterations 100, 250 >= n_iter 100: never fires"),
    (fc.timing.At([5, 100]), "iterations 100 >= n_iter 100: never fire"),
    (fc.timing.Window(100, 200), "start 100 >= n_iter 100: never fires"),
    (fc.timing.Every(10, offset=150), "offset 150 >= n_iter 100: never fires"),
    (fc.timing.Bernoulli(0.0), "p = 0: never fires"),
])
def test_timing_that_cannot_fire_is_warned(timing, text):
    out = messages([P(1, "forward", N.Gaussian(0, 1), timing=timing)])
    assert len(out) == 1 and out[0].startswith("perturbations[0] ") and out[0].endswith(text)


@pytest.mark.parametrize("timing", [fc.timing.Always(), fc.timing.At([0, 99]),
                                    fc.timing.Window(99, 1000), fc.timing.Every(50, offset=99),
                                    fc.timing.Bernoulli(0.01)])
def test_timing_that_can_fire_is_not_warned(timing):
    assert messages([P(1, "forward", N.Gaussian(0, 1), timing=timing)]) == []


@pytest.mark.parametrize("noise", [N.Uniform(-1e308, 1e308), N.FixedPoint(5e-324)])
def test_noise_that_makes_non_finite_values_is_warned(noise):
    out = messages([P(2, "backward", N.Gaussian(0, 1)), P(1, "forward", noise)])
    assert len(out) == 1 and out[0].startswith("perturbations[1] ")
    assert "produces non-finite values" in out[0]


@pytest.mark.parametrize("noise", [N.Uniform(-1e300, 1e300), N.FixedPoint(1e-300),
                                   N.Gaussian(0, 1e10), N.Constant(1e300)])
def test_large_but_finite_noise_is_not_warned(noise):
    assert messages([P(1, "forward", noise)]) == []


def test_fc_run_warns_at_set_up_with_the_users_index():
    perts = [P(2, "backward", N.Gaussian(0, 0.1)),
             P(1, "forward", N.Gaussian(0, 0.1), timing=fc.timing.At([5000]))]
    with pytest.warns(PerturbationWarning, match=r"perturbations\[1\] .*5000 >= n_iter 50"):
        fc.run(paper(), OPT, 50, perturbations=perts)


@pytest.mark.parametrize("noise, pass_, expected", [
    # forward at op 1 every step, from t = 1 (the margins are 0 at w = 0, and 0 stays finite
    # under FixedPoint; Uniform's inf appears at once); the run goes on, its gradient finite
    (N.Uniform(-1e308, 1e308), "forward", 60),
    (N.FixedPoint(5e-324), "forward", 59),
    # backward: the gradient becomes non-finite and the run stops at step 0, counted once
    (N.Uniform(-1e308, 1e308), "backward", 1),
])
def test_engines_count_non_finite_injections_alike(noise, pass_, expected):
    pert = [P(1 if pass_ == "forward" else 2, pass_, noise)]
    runs = []
    for engine, n_jobs in (("cython", 1), ("cython", 2), ("numpy", 1)):
        with pytest.warns(PerturbationWarning):
            runs.append(fc.run(paper(), OPT, 60, perturbations=pert, seeds=[0, 1],
                               engine=engine, n_jobs=n_jobs))
    for res in runs:
        assert res.nonfinite_injections.tolist() == [expected, expected]
        assert res.nonfinite_injections.dtype == np.int64


def test_the_largest_finite_values_are_not_counted():
    """1.7e308 (exponent 0x7fe, one below inf's) and -1.7e308: the kernel's exponent test
    carries into the sign bit for 0x7ff only."""
    for value in (1.7e308, -1.7e308):
        pert = [P(1, "forward", N.Constant(value))]
        for engine in ("cython", "numpy"):
            res = fc.run(paper(), OPT, 20, perturbations=pert, seeds=[0], engine=engine,
                         max_norm=np.inf)
            assert res.nonfinite_injections.tolist() == [0], (value, engine)


def test_single_run_with_the_record_thread_counts_the_same():
    pert = [P(1, "forward", N.Uniform(-1e308, 1e308), timing=fc.timing.Every(3))]
    with pytest.warns(PerturbationWarning):
        a = fc.run(paper(), OPT, 100, perturbations=pert, seeds=[0], n_jobs=1)
    with pytest.warns(PerturbationWarning):
        b = fc.run(paper(), OPT, 100, perturbations=pert, seeds=[0], n_jobs=2)  # record thread
    assert a.nonfinite_injections.tolist() == b.nonfinite_injections.tolist() == [34]


def test_count_in_summary_and_file(tmp_path):
    pert = [P(1, "forward", N.Uniform(-1e308, 1e308), timing=fc.timing.At([3, 7]))]
    with pytest.warns(PerturbationWarning, match=r"non-finite values in 1 of 1 runs \(seed 0: 2"):
        res = fc.run(paper(), OPT, 20, perturbations=pert, seeds=[0])
    assert res.summary_table()["nonfinite_injections"].tolist() == [2]
    assert "ok; 2 non-finite injections" in res.summary()
    res.save(tmp_path / "r.npz")
    back = fc.load(tmp_path / "r.npz")
    assert back.identical(res) and back.nonfinite_injections.tolist() == [2]


def test_clean_runs_count_zero_and_warn_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerturbationWarning)
        res = fc.run(paper(), OPT, 30, perturbations=[P(1, "forward", N.Gaussian(0, 1))],
                     seeds=[0, 1])
    assert res.nonfinite_injections.tolist() == [0, 0]
    assert "non-finite" not in res.summary()
