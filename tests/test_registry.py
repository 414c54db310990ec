"""The registry: every compiled operator code and noise code has a NumPy twin and an
engine-agreement case (issue 16, "Must show").

The codes are enumerated from the compiled modules (the ``cpdef enum`` of ``_types.pxd`` and
``_noise.pxd``, exported as ``_types.OpCode`` and ``_noise.NoiseKind``), so that a code added to
an enum without its Python name, its NumPy twin (``fastcascade.reference``, the noise classes'
``draw`` / ``transform``) or a case in the tables below fails this suite:
``test_every_code_is_registered`` lists what is missing, and each case runs on both engines.
"""
import warnings

import numpy as np
import pytest

import fastcascade as fc
from fastcascade import noise as N
from fastcascade import ops as O
from fastcascade import reference
from fastcascade._kernels import _noise, _ops, _types

from test_python_extensions import PyTanh, PyUniform


# ---------------------------------------------------------------------------------------------
# The cases: for each operator kind, a small problem that contains it (and perturbations at its
# site); for each noise kind, a noise applied at a forward and a backward site of an MLP.

def _data(M=24, d=3, seed=0, labels="target", k=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((M, d))
    if labels == "sign":
        Y = np.where(rng.random((M, 1)) < 0.5, -1.0, 1.0)
    elif labels == "class":
        Y = rng.integers(0, k, size=(M, 1)).astype(float)
    else:
        Y = np.sin(X[:, :k])
    return X, Y


def _act(op):
    return lambda: fc.Problem(fc.Cascade([O.Linear(3, 4), op, O.Linear(4, 1),
                                          O.SquaredError()]), _data())


def _compiled_case():
    # the example package of examples/compiled_operator (built in CI; skipped where it is not)
    ex = pytest.importorskip("fc_example_ops")
    return _act(ex.ScaledSoftsign())()


A23 = np.array([[1.0, -0.5, 0.25], [0.3, 0.8, -1.2]])

OP_CASES = {
    "identity": _act(O.Identity()),
    "softplus": _act(O.Softplus()),
    "sigmoid": _act(O.Sigmoid()),
    "tanh": _act(O.Tanh()),
    "relu": _act(O.ReLU()),
    "linear": _act(O.Tanh()),
    "squared_error": _act(O.Sigmoid()),
    "python": _act(PyTanh()),
    "compiled": _compiled_case,
    "margin": lambda: fc.Problem(fc.Cascade([O.Margin(), O.Softplus()]), _data(labels="sign")),
    "logistic_loss": lambda: fc.Problem(fc.Cascade([O.Linear(3, 1), O.LogisticLoss()]),
                                        _data(labels="sign")),
    "softmax_xent": lambda: fc.Problem(fc.Cascade([O.Linear(3, 4), O.SoftmaxCrossEntropy(4)]),
                                       _data(labels="class", k=4)),
    "fixed_linear": lambda: fc.Problem(fc.Cascade([O.FixedLinear(A23), O.Linear(2, 2),
                                                   O.SquaredError()]), _data(k=2)),
    "diag_linear": lambda: fc.Problem(fc.Cascade([O.DiagLinear(A23), O.InnerSquare()]),
                                      _data()),
    "inner_square": lambda: fc.Problem(fc.Cascade([O.DiagLinear(A23), O.InnerSquare()]),
                                       _data()),
    "lq_step": lambda: fc.problems.lq_control(3, 1, horizon=3, n_samples=24),
    "lq_terminal": lambda: fc.problems.lq_control(3, 1, horizon=2, n_samples=24),
}

NOISE_CASES = {
    "uniform": N.Uniform(-0.1, 0.1),
    "gaussian": N.Gaussian(0.01, 0.1),
    "laplace": N.Laplace(0.0, 0.1),
    "student_t": N.StudentT(3.0, 0.05),
    "rademacher": N.Rademacher(0.05),
    "constant": N.Constant(0.02),
    "python": PyUniform(-0.1, 0.1),
    "round_float": N.LowPrecision("bfloat16", "stochastic"),
    "round_fixed": N.FixedPoint(0.05, "stochastic"),
    "topk": N.TopK(2),
    "randk": N.RandK(2),
    "scaled_sign": N.ScaledSign(),
    "bitflip": N.BitFlip(0.01, bits=[3, 40, 51]),
}


# ---------------------------------------------------------------------------------------------
# The check

def compiled_op_codes():
    """{enum name: code} of every operator code of the compiled kernels."""
    return {name: int(m) for name, m in _types.OpCode.__members__.items()}


def compiled_noise_codes():
    """{enum name: code} of every noise kind of the compiled kernels."""
    return {name: int(m) for name, m in _noise.NoiseKind.__members__.items()}


def _noise_twin(kind):
    # the class of fc.noise with this kind, and whether it has its own NumPy twin
    if kind == "python":    # a Python-defined noise is its own twin (Perturbation.apply)
        return True
    for name in N.__all__:
        cls = getattr(N, name)
        if isinstance(cls, type) and issubclass(cls, N.Noise) and cls.kind == kind:
            if issubclass(cls, N.Transform):
                return cls.transform is not N.Transform.transform
            return cls.draw is not N.Distribution.draw
    return False


def registry_problems(op_codes, noise_codes, op_cases=OP_CASES, noise_cases=NOISE_CASES):
    """What is missing for each code: its Python name, a NumPy twin, an agreement case."""
    problems = []
    op_kind = {code: kind for kind, code in _ops.OP_CODES.items()}
    for name, code in sorted(op_codes.items(), key=lambda kv: kv[1]):
        kind = op_kind.get(code)
        if kind is None:
            problems.append(f"{name} = {code}: not in _ops.OP_CODES (no Python name)")
            continue
        classes = [getattr(O, n) for n in O.__all__]
        if kind != "python" and not any(getattr(c, "kind", None) == kind for c in classes):
            problems.append(f"{name} ({kind!r}): no fastcascade.ops class")
        if kind not in reference.KINDS:
            problems.append(f"{name} ({kind!r}): no NumPy twin in fastcascade.reference")
        if kind not in op_cases:
            problems.append(f"{name} ({kind!r}): no engine-agreement case (OP_CASES)")
    noise_kind = {code: kind for kind, code in _noise.NOISE_CODES.items()}
    for name, code in sorted(noise_codes.items(), key=lambda kv: kv[1]):
        kind = noise_kind.get(code)
        if kind is None:
            problems.append(f"{name} = {code}: not in _noise.NOISE_CODES (no Python name)")
            continue
        if not _noise_twin(kind):
            problems.append(f"{name} ({kind!r}): no NumPy twin (a fastcascade.noise class "
                            "with draw or transform)")
        if kind not in noise_cases:
            problems.append(f"{name} ({kind!r}): no engine-agreement case (NOISE_CASES)")
    return problems


def test_every_code_is_registered():
    assert len(compiled_op_codes()) >= 16 and len(compiled_noise_codes()) >= 13
    assert registry_problems(compiled_op_codes(), compiled_noise_codes()) == []


def test_a_fake_code_is_flagged():
    ops_codes = dict(compiled_op_codes(), OP_FAKE=99)
    noise_codes = dict(compiled_noise_codes(), NOISE_FAKE=98)
    found = registry_problems(ops_codes, noise_codes)
    assert found == ["OP_FAKE = 99: not in _ops.OP_CODES (no Python name)",
                     "NOISE_FAKE = 98: not in _noise.NOISE_CODES (no Python name)"]


def test_a_code_without_twin_or_case_is_flagged(monkeypatch):
    # a code with its Python name but nothing else: the twin and the cases are asked for
    monkeypatch.setitem(_ops.OP_CODES, "fake_op", 99)
    monkeypatch.setitem(_noise.NOISE_CODES, "fake_noise", 98)
    found = registry_problems(dict(compiled_op_codes(), OP_FAKE=99),
                              dict(compiled_noise_codes(), NOISE_FAKE=98))
    assert found == [
        "OP_FAKE ('fake_op'): no fastcascade.ops class",
        "OP_FAKE ('fake_op'): no NumPy twin in fastcascade.reference",
        "OP_FAKE ('fake_op'): no engine-agreement case (OP_CASES)",
        "NOISE_FAKE ('fake_noise'): no NumPy twin (a fastcascade.noise class with draw or "
        "transform)",
        "NOISE_FAKE ('fake_noise'): no engine-agreement case (NOISE_CASES)"]
    cases = dict(OP_CASES)
    del cases["tanh"]
    assert registry_problems(compiled_op_codes(), {}, op_cases=cases) == [
        "OP_TANH ('tanh'): no engine-agreement case (OP_CASES)"]


# ---------------------------------------------------------------------------------------------
# The agreement cases, against the compiled engine

def _both(problem, perts, opt=None):
    opt = opt or fc.SGD(step_size=0.02, batch=4, momentum=0.5)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fc.PerformanceWarning)
        for engine in ("cython", "numpy"):
            out.append(fc.run(problem, opt, n_iter=25, perturbations=perts, seeds=[0, 1],
                              init="random", engine=engine, record_profile=True))
    return out


def _assert_agree(a, b, tol):
    for name in ("objective", "grad_norm", "grad_error", "forward_error", "backward_error",
                 "final_weights"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=tol, atol=tol,
                                   err_msg=name)
    np.testing.assert_array_equal(a.stopped_at, b.stopped_at)
    assert np.all(np.asarray(a.stopped_at) == -1)     # ran to the end: every step compared


@pytest.mark.parametrize("kind", sorted(OP_CASES))
def test_operator_case_engines_agree(kind):
    problem = OP_CASES[kind]()
    kinds = [op.kind for op in problem.cascade.operators]
    assert kind in kinds
    i = kinds.index(kind) + 1              # perturb at the operator's own site
    N_ = problem.cascade.n_ops
    perts = [fc.Perturbation(op=i, noise=N.Gaussian(0.0, 0.05))] if i < N_ else []
    if i >= 2:
        perts.append(fc.Perturbation(op=i, pass_="backward", noise=N.Uniform(-0.05, 0.05)))
    a, b = _both(problem, perts)
    _assert_agree(a, b, 1e-10)
    assert np.all(np.isfinite(a.objective))


@pytest.fixture(scope="module")
def mlp():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 5))
    ops = [O.Linear(5, 6), O.Tanh(), O.Linear(6, 4), O.Tanh(), O.Linear(4, 2), O.SquaredError()]
    return fc.Problem(fc.Cascade(ops), (X, np.tanh(X[:, :2])))


@pytest.mark.parametrize("kind", sorted(NOISE_CASES))
def test_noise_case_engines_agree(mlp, kind):
    noise = NOISE_CASES[kind]
    assert noise.kind == kind
    perts = [fc.Perturbation(op=2, noise=noise), fc.Perturbation(op=4, pass_="backward",
                                                                 noise=noise)]
    a, b = _both(mlp, perts)
    _assert_agree(a, b, 1e-10)
    assert np.any(a.forward_error[:, :, 1] > 0)
