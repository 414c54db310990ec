"""The compiled extension point (issue 16, item 3): a user's Cython operator, built from
``examples/compiled_operator`` against ``fastcascade.get_include()`` and
``fastcascade/extension.pxd``, runs in the engine without the GIL and matches its Python twin.

CI builds the example (``.ci/run``: ``pip install --no-build-isolation examples/...``) and sets
FASTCASCADE_REQUIRE_EXAMPLE=1, so that a missing build fails instead of skipping.
"""
import copy
import os
import pickle
import warnings

import numpy as np
import pytest

import fastcascade as fc
from fastcascade import reference
from fastcascade._kernels import _ops

try:
    import fc_example_ops as ex
except ImportError:  # not built here
    if os.environ.get("FASTCASCADE_REQUIRE_EXAMPLE"):
        raise
    pytest.skip("examples/compiled_operator is not installed (pip install "
                "--no-build-isolation examples/compiled_operator)", allow_module_level=True)


def example_problem(act):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 4))
    ops = [fc.ops.Linear(4, 5), act(), fc.ops.Linear(5, 3), act(), fc.ops.Linear(3, 1),
           fc.ops.SquaredError()]
    return fc.Problem(fc.Cascade(ops), (X, np.sin(X[:, :1])))


PERTS = [fc.Perturbation(op=2, noise=fc.noise.Uniform(-0.2, 0.2)),
         fc.Perturbation(op=4, pass_="backward", noise=fc.noise.Gaussian(0.0, 0.1))]


def _run(problem, engine, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fc.run(problem, fc.SGD(step_size=0.05, batch=8, momentum=0.5), n_iter=40,
                     perturbations=PERTS, seeds=[0, 1], init="random", engine=engine,
                     record_profile=True, **kw)
    return res, [w for w in caught if issubclass(w.category, fc.PerformanceWarning)]


def _close(a, b, tol=1e-12):
    for name in ("objective", "grad_norm", "grad_error", "forward_error", "backward_error",
                 "final_weights"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=tol, atol=tol,
                                   err_msg=name)


def test_the_example_is_a_compiled_operator():
    op = ex.ScaledSoftsign(3)
    assert op.kind == "compiled" and not op.is_python and ex.PyScaledSoftsign(3).is_python
    row = op.plan_row()
    assert row[0] == _ops.OP_CODES["compiled"] and row[1] == op.callback_token()
    assert os.path.exists(os.path.join(fc.get_include(), "fastcascade_operator.h"))


@pytest.mark.parametrize("engine", ["cython", "numpy"])
def test_compiled_operator_matches_its_python_twin(engine):
    mine, perf = _run(example_problem(ex.ScaledSoftsign), engine)
    twin, _ = _run(example_problem(ex.PyScaledSoftsign), "numpy")
    _close(mine, twin)
    assert perf == []                   # no GIL callback: no PerformanceWarning
    assert np.all(np.isfinite(mine.objective))
    # the weights a of both ScaledSoftsign operators were trained (init 1)
    assert np.all(mine.final_weights[:, 25] != 1.0)


def test_compiled_operator_vjps_against_finite_differences_and_twin():
    op, twin = ex.ScaledSoftsign(3), ex.PyScaledSoftsign(3)
    rng = np.random.default_rng(1)
    x, w, v, u = (rng.standard_normal((4, 3)), np.array([1.7]), rng.standard_normal((4, 3)),
                  rng.standard_normal((4, 3)))
    g_in, g_w = op.vjp(x, v, w)
    np.testing.assert_allclose(g_in, reference.vjp_input(twin, x, v, w), rtol=1e-15)
    np.testing.assert_allclose(g_w, reference.vjp_weights(twin, x, v, w), rtol=1e-13)
    h = 1e-6
    Ju = (op.forward(x + h * u, w) - op.forward(x - h * u, w)) / (2 * h)
    Jw = (op.forward(x, w + h) - op.forward(x, w - h)) / (2 * h)
    np.testing.assert_allclose(np.sum(Ju * v), np.sum(u * g_in), rtol=1e-8)
    np.testing.assert_allclose(np.sum(Jw * v), g_w[0], rtol=1e-8)


def test_compiled_problem_gradient_and_copies():
    problem = example_problem(ex.ScaledSoftsign)
    w = problem.init_weights(2)
    g = problem.gradient(w)
    np.testing.assert_allclose(g, reference.gradient(example_problem(ex.PyScaledSoftsign), w),
                               rtol=1e-12, atol=1e-15)
    for other in (copy.deepcopy(problem), pickle.loads(pickle.dumps(problem))):
        np.testing.assert_array_equal(other.gradient(w), g)


def test_an_emptied_slot_is_an_error():
    row = ex.ScaledSoftsign(2).plan_row()     # the operator, and its slot, go here
    import gc
    gc.collect()
    out = _ops.forward(row, np.ones(1), np.zeros(0), np.zeros((1, 2)), np.zeros((0, 0)))
    errors = _ops.take_callback_errors()
    assert np.all(np.isnan(out)) and [type(e) for e in errors] == [LookupError]


def test_a_bad_capsule_is_refused():
    class Bad(fc.ops.CompiledOperator):
        elementwise = True

        def capsule(self):
            return "not a capsule"

    with pytest.raises(TypeError, match="PyCapsule"):
        Bad(2).plan_row()


def test_an_operator_with_weights_needs_vjp_weights():
    # an fc_operator made with ctypes (forward and vjp_input set, vjp_weights NULL)
    import ctypes
    fwd = ctypes.CFUNCTYPE(None)(lambda: None)
    Struct = type("fc_operator", (ctypes.Structure,), {"_fields_": [
        ("abi", ctypes.c_int), ("ctx", ctypes.c_void_p), ("forward", ctypes.c_void_p),
        ("vjp_input", ctypes.c_void_p), ("vjp_weights", ctypes.c_void_p)]})
    raw = Struct(1, None, ctypes.cast(fwd, ctypes.c_void_p), ctypes.cast(fwd, ctypes.c_void_p),
                 None)
    new = ctypes.pythonapi.PyCapsule_New
    new.restype, new.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p,
                                                   ctypes.c_void_p]
    capsule = new(ctypes.addressof(raw), b"fastcascade.operator", None)

    class NoWeightGradient(fc.ops.CompiledOperator):
        elementwise = True

        def capsule(self):
            return capsule

    op = NoWeightGradient(2)
    assert op.plan_row()[0] == _ops.OP_CODES["compiled"]     # no weights: accepted
    op.n_weights = 1
    with pytest.raises(ValueError, match="no vjp_weights"):
        op.bound(2).plan_row()
    raw.abi = 99
    with pytest.raises(ValueError, match="ABI"):
        NoWeightGradient(2).plan_row()
