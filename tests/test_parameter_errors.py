"""Every bad input of the audit raises ``fc.ParameterError`` naming its parameter, before any
work starts (each case passed silently, was truncated, or raised a raw OverflowError,
AttributeError, TypeError or empty MemoryError on 57e0980)."""
from __future__ import annotations

import numpy as np
import pytest

import fastcascade as fc

P, N = fc.Perturbation, fc.noise


@pytest.fixture(scope="module")
def problem():
    return fc.problems.paper_logistic(n_samples=100)


OPT = fc.SGD(0.1)

CASES = {
    "max_norm=nan": (lambda p: fc.run(p, OPT, 10, max_norm=float("nan")), "max_norm", False),
    "seeds=True": (lambda p: fc.run(p, OPT, 10, seeds=True), "seeds", True),
    "progress='maybe'": (lambda p: fc.run(p, OPT, 10, progress="maybe"), "progress", True),
    "init with NaN": (lambda p: fc.run(p, OPT, 10, init=np.full(10, np.nan)), "init", False),
    "init with inf": (lambda p: fc.run(p, OPT, 10, init=np.full(10, np.inf)), "init", False),
    "BitFlip bits=[1.7, 3.9]": (lambda p: N.BitFlip(0.1, bits=[1.7, 3.9]), "bits", True),
    "BitFlip bits=[True]": (lambda p: N.BitFlip(0.1, bits=[True]), "bits", True),
    "BitFlip bits='62'": (lambda p: N.BitFlip(0.1, bits="62"), "bits", True),
    "At([1.5, 2.7])": (lambda p: fc.timing.At([1.5, 2.7]), "iterations", True),
    "At([10**30])": (lambda p: fc.timing.At([10 ** 30]), "iterations", False),
    "TopK(2**63)": (lambda p: N.TopK(2 ** 63), "k", False),
    "TopK above the width": (lambda p: fc.run(p, OPT, 10, perturbations=[
        P(1, "forward", N.TopK(5))]), "perturbations[0].noise.k", False),
    "perturbations=5": (lambda p: fc.run(p, OPT, 10, perturbations=5), "perturbations", True),
    "n_iter=2**70": (lambda p: fc.run(p, OPT, 2 ** 70), "n_iter", False),
    "optimizer=None": (lambda p: fc.run(p, None, 10), "optimizer", True),
    "Cascade(None)": (lambda p: fc.Cascade(None), "operators", True),
    "batch=10**9": (lambda p: fc.run(p, fc.SGD(0.1, batch=10 ** 9), 10), "optimizer.batch",
                    False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_raises_parameter_error_naming_it(problem, name):
    call, param, wrong_type = CASES[name]
    with pytest.raises(fc.ParameterError) as info:
        call(problem)
    err = info.value
    assert err.param == param
    assert isinstance(err, ValueError)
    assert isinstance(err, TypeError) == wrong_type
    assert str(err).split(": ")[0].endswith(param) or param in str(err)


def test_huge_request_names_its_size(problem):
    with pytest.raises(fc.ParameterError, match="memory") as info:
        fc.run(problem, fc.SGD(0.1, batch=10 ** 9), 10)
    assert "GB" in str(info.value)
