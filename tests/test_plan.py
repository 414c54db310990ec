"""fc.Plan (issue 16.1): the one lowering of (problem, optimizer, perturbations) to the flat
data the compiled engine reads, its tables written by the column names that the kernels'
``.pxd`` enums define.
"""
import numpy as np
import pytest

import fastcascade as fc
from fastcascade._kernels import _engine, _noise, _ops


@pytest.fixture()
def problem():
    return fc.problems.paper_logistic(n_samples=60, n_features=4, seed=0)


PERTS = [fc.Perturbation(op=2, pass_="backward", noise=fc.noise.Gaussian(0.1, 0.3),
                         timing=fc.timing.At([3, 5])),
         fc.Perturbation(op=1, noise=fc.noise.Uniform(-0.5, 0.5), timing=fc.timing.Every(2),
                         magnitude=fc.magnitude.HorizonDecay(0.5))]


def test_the_tables_hold_each_specification_in_its_named_column(problem):
    plan = fc.Plan(problem, fc.SGD(0.1), PERTS, n_iter=40)
    # sorted by site: the forward perturbation at op 1 first, the backward at op 2 second
    assert [p.op for p in plan.perturbations] == [1, 2]
    np.testing.assert_array_equal(plan.column("pert_int", "op"), [1, 2])
    np.testing.assert_array_equal(plan.column("pert_int", "backward"), [0, 1])
    np.testing.assert_array_equal(plan.column("pert_int", "kind"),
                                  [_noise.NOISE_CODES["uniform"], _noise.NOISE_CODES["gaussian"]])
    np.testing.assert_array_equal(plan.column("pert_int", "timing"),
                                  [_noise.TIMING_CODES["every"], _noise.TIMING_CODES["at"]])
    np.testing.assert_array_equal(plan.column("pert_real", "p0"), [-0.5, 0.1])
    np.testing.assert_array_equal(plan.column("pert_real", "p1"), [0.5, 0.3])
    np.testing.assert_array_equal(plan.column("pert_real", "alpha"), [0.5, 0.0])
    t_a, t_b = plan.column("pert_int", "t_a")[1], plan.column("pert_int", "t_b")[1]
    np.testing.assert_array_equal(plan.pert_times[t_a:t_b], [3, 5])
    ops = problem.cascade.operators
    np.testing.assert_array_equal(plan.column("op_table", "code"),
                                  [_ops.OP_CODES[op.kind] for op in ops])
    np.testing.assert_array_equal(plan.column("op_table", "d_in"), problem.cascade.dims[:-1])
    np.testing.assert_array_equal(plan.column("op_table", "n_weights"), [4, 0])


def test_the_config_has_exactly_the_keys_the_engine_reads(problem):
    for opt in (fc.SGD(0.1, momentum=0.9, batch=8), fc.Adam(0.01)):
        config = fc.Plan(problem, opt, n_iter=10).config
        assert set(config) == set(_engine.CONFIG_KEYS) - {"_record_behind_every", "_first_ahead"}
    assert fc.Plan(problem).config is None


def test_a_wrong_column_mapping_is_caught_by_the_engines_agreement(problem, monkeypatch):
    """The compiled engine reads the tables by the .pxd indices, the NumPy engine the
    specifications: a lowering that wrote a column in the wrong place would make them differ.
    Swapping two columns of the Python-side mapping shows the check can fail."""
    perts = [fc.Perturbation(op=1, noise=fc.noise.Uniform(-0.5, 1.5))]
    kw = dict(perturbations=perts, seeds=2, record_every=1)
    good = fc.run(problem, fc.SGD(0.2), 30, engine="cython", **kw)
    ref = fc.run(problem, fc.SGD(0.2), 30, engine="numpy", **kw)
    np.testing.assert_allclose(good.objective, ref.objective, rtol=1e-12)
    swapped = dict(_noise.PERT_REAL_COLUMNS, p0=_noise.PERT_REAL_COLUMNS["p1"],
                   p1=_noise.PERT_REAL_COLUMNS["p0"])   # low and high exchanged
    monkeypatch.setattr(_noise, "PERT_REAL_COLUMNS", swapped)
    bad = fc.run(problem, fc.SGD(0.2), 30, engine="cython", **kw)
    assert not np.allclose(bad.objective, ref.objective, rtol=1e-6)


def test_bad_column_names_are_refused(problem):
    plan = fc.Plan(problem)
    with pytest.raises(fc.ParameterError, match="table"):
        plan.column("weights", "op")
    with pytest.raises(fc.ParameterError, match="a column of pert_int"):
        plan.column("pert_int", "sigma")
