"""Python-defined operators and noises (issue 16, item 3): on both engines, through the compiled
engine's GIL callbacks, with the same streams as the built-ins."""
import copy
import gc
import pickle
import warnings

import numpy as np
import pytest

import fastcascade as fc
from fastcascade import reference
from fastcascade._kernels import _noise, _ops, _types


# ---------------------------------------------------------------------------------------------
# Python twins of built-ins

class PyTanh(fc.ops.Operator):
    """tanh, written in Python."""

    elementwise = True

    def __init__(self, d=None):
        super().__init__(d_in=d)

    def forward(self, w, x):
        return np.tanh(x)

    def vjp_input(self, w, x, y, v):
        return v * (1.0 - y * y)


class PyLinear(fc.ops.Operator):
    """y = x W^T + b (W row-major, then b: the built-in Linear's layout)."""

    def __init__(self, d_in, d_out):
        super().__init__(d_in=d_in, d_out=d_out)

    @property
    def n_weights(self):
        return None if self.d_in is None else self.d_out * (self.d_in + 1)

    def _parts(self, w):
        k = self.d_out * self.d_in
        return w[:k].reshape(self.d_out, self.d_in), w[k:]

    def init_weights(self, rng):
        bound = 1.0 / np.sqrt(self.d_in)
        return rng.uniform(-bound, bound, size=self.n_weights)

    def forward(self, w, x):
        W, b = self._parts(w)
        return x @ W.T + b

    def vjp_input(self, w, x, y, v):
        W, _ = self._parts(w)
        return v @ W

    def vjp_weights(self, w, x, y, v):
        return np.concatenate([(v.T @ x).ravel(), v.sum(axis=0)])


class PySquaredError(fc.ops.Operator):
    """||x - t||^2 / 2 with the target t from the label row."""

    labels = "target"

    def __init__(self, d=None):
        super().__init__(d_in=d, d_out=1)

    def label_width(self):
        return self.d_in

    def forward(self, w, x, labels):
        r = x - labels[:, : self.d_in]
        return 0.5 * np.sum(r * r, axis=1, keepdims=True)

    def vjp_input(self, w, x, y, v, labels):
        return v * (x - labels[:, : self.d_in])


class PyScaledTanh(fc.ops.Operator):
    """y = a * tanh(c * x) per element, with two weights (a, c): not a built-in."""

    elementwise = True
    n_weights = 2

    def init_weights(self, rng):
        return np.array([1.0, 0.5]) + 0.1 * rng.standard_normal(2)

    def forward(self, w, x):
        return w[0] * np.tanh(w[1] * x)

    def vjp_input(self, w, x, y, v):
        t = np.tanh(w[1] * x)
        return v * w[0] * w[1] * (1.0 - t * t)

    def vjp_weights(self, w, x, y, v):
        t = np.tanh(w[1] * x)
        return np.array([np.sum(v * t), np.sum(v * w[0] * (1.0 - t * t) * x)])


class PyUniform(fc.noise.Noise):
    """Uniform(low, high), drawn as the built-in kernel consumes the stream: one
    ``low + (high - low) * next_double`` per entry, row-major (numpy's ``uniform``)."""

    def __init__(self, low, high):
        self.low, self.high = low, high

    def draw(self, rng, x):
        return rng.uniform(self.low, self.high, size=x.shape)

    def mean(self):
        return 0.5 * (self.low + self.high)

    def variance(self):
        return (self.high - self.low) ** 2 / 12.0

    def __repr__(self):
        return f"PyUniform({self.low}, {self.high})"


def _mlp(act=fc.ops.Tanh, lin=None, loss=fc.ops.SquaredError):
    lin = lin or (lambda a, b: fc.ops.Linear(a, b))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((48, 5))
    Y = np.tanh(X[:, :2])
    ops = [lin(5, 6), act(), lin(6, 4), act(), lin(4, 2), loss()]
    return fc.Problem(fc.Cascade(ops), (X, Y))


PERTS = [fc.Perturbation(op=2, pass_="forward", noise=fc.noise.Uniform(-0.2, 0.2)),
         fc.Perturbation(op=4, pass_="backward", noise=fc.noise.Gaussian(0.0, 0.1)),
         fc.Perturbation(op=2, pass_="backward", noise=fc.noise.Uniform(0.0, 0.1),
                         timing=fc.timing.Every(3))]


def _run(problem, engine, perts=PERTS, n_iter=40, **kw):
    opt = kw.pop("optimizer", fc.SGD(step_size=0.05, batch=8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fc.PerformanceWarning)
        return fc.run(problem, opt, n_iter=n_iter, perturbations=perts, seeds=[3, 4],
                      init="random", engine=engine, record_profile=True, **kw)


def _close(a, b, tol=1e-12):
    for name in ("objective", "grad_norm", "grad_error", "forward_error", "backward_error"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=tol, atol=tol,
                                   err_msg=name)
    np.testing.assert_allclose(a.final_weights, b.final_weights, rtol=tol, atol=tol)


# ---------------------------------------------------------------------------------------------
# Operators

def test_subclass_with_forward_is_python_defined():
    assert PyTanh.kind == "python" and PyTanh().is_python
    assert not fc.ops.Tanh().is_python
    op = PyTanh(3)
    row = op.plan_row()
    assert row[0] == _ops.OP_CODES["python"] == _types.OpCode.OP_PYTHON
    assert row[1] == op.callback_token() and _ops.python_operator(row[1]) is op


@pytest.mark.parametrize("engine", ["cython", "numpy"])
def test_python_tanh_gives_the_builtin_run(engine):
    # minibatches, forward and backward perturbations at the Python operators' sites
    built = _run(_mlp(), "numpy")
    mine = _run(_mlp(act=PyTanh), engine)
    _close(mine, built)
    assert np.all(np.isfinite(mine.objective))


def test_python_tanh_same_bits_on_both_engines_as_its_builtin_with_numpy_tanh():
    # with the compiled engine, only the tanh itself differs from the built-in (a few ulp of the
    # vector tanh): the Python operator's two engines agree to the last bit on the same inputs
    a = _run(_mlp(act=PyTanh), "cython")
    b = _run(_mlp(act=PyTanh), "numpy")
    _close(a, b, tol=1e-13)


def test_python_linear_and_labels_give_the_builtin_run():
    built = _run(_mlp(), "cython")
    mine = _run(_mlp(lin=PyLinear, loss=PySquaredError), "cython")
    _close(mine, built)
    mine_np = _run(_mlp(lin=PyLinear, loss=PySquaredError), "numpy")
    _close(mine_np, built)


def test_python_operator_with_momentum_and_full_batch():
    opt = fc.SGD(step_size=0.05, batch="full", momentum=0.9)
    built = _run(_mlp(), "cython", optimizer=opt)
    _close(_run(_mlp(act=PyTanh), "cython", optimizer=opt), built)


def _weighted_problem():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 3))
    ops = [fc.ops.Linear(3, 4), PyScaledTanh(), fc.ops.Linear(4, 1), fc.ops.SquaredError()]
    return fc.Problem(fc.Cascade(ops), (X, np.sin(X[:, :1])))


def test_python_operator_vjps_adjoint_and_finite_differences():
    # through the compiled entry points (the callback path), op.vjp, against central
    # differences of op.forward and the adjoint identity <J u, v> = <u, J^T v>
    op = PyScaledTanh(4)
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((5, 4)), np.array([1.3, 0.7])
    v, u, du = rng.standard_normal((5, 4)), rng.standard_normal((5, 4)), rng.standard_normal(2)
    g_in, g_w = op.vjp(x, v, w)
    np.testing.assert_allclose(g_in, reference.vjp_input(op, x, v, w), rtol=1e-14)
    np.testing.assert_allclose(g_w, reference.vjp_weights(op, x, v, w), rtol=1e-14)
    h = 1e-6
    Ju = (op.forward(w, x + h * u) - op.forward(w, x - h * u)) / (2 * h)
    Jw = (op.forward(w + h * du, x) - op.forward(w - h * du, x)) / (2 * h)
    np.testing.assert_allclose(np.sum(Ju * v), np.sum(u * g_in), rtol=1e-8)
    np.testing.assert_allclose(np.sum(Jw * v), du @ g_w, rtol=1e-8)


@pytest.mark.parametrize("engine", ["cython", "numpy"])
def test_python_operator_problem_gradient_matches_finite_differences(engine):
    problem = _weighted_problem()
    w = problem.init_weights(5)
    if engine == "cython":
        f, g = problem.objective, problem.gradient(w)
    else:
        f, g = (lambda x: reference.objective(problem, x)), reference.gradient(problem, w)
    h = 1e-6
    fd = np.array([(f(w + h * e) - f(w - h * e)) / (2 * h) for e in np.eye(w.size)])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(problem.gradient(w), reference.gradient(problem, w), rtol=1e-13,
                               atol=1e-15)


def test_python_operator_with_weights_engines_agree():
    problem = _weighted_problem()
    perts = [fc.Perturbation(op=2, noise=fc.noise.Gaussian(0.0, 0.05)),
             fc.Perturbation(op=3, pass_="backward", noise=fc.noise.Uniform(-0.1, 0.1))]
    _close(_run(problem, "cython", perts), _run(problem, "numpy", perts), tol=1e-12)


def test_performance_warning_once_per_run_names_gil_and_cost():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fc.run(_mlp(act=PyTanh), fc.SGD(step_size=0.05, batch=8), n_iter=10, seeds=[0, 1],
               n_jobs=2)
    perf = [w for w in caught if issubclass(w.category, fc.PerformanceWarning)]
    assert len(perf) == 1
    msg = str(perf[0].message)
    assert "GIL" in msg and "us per call" in msg and "operator 2 (PyTanh(6))" in msg
    assert "operator 4 (PyTanh(4))" in msg
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fc.run(_mlp(act=PyTanh), fc.SGD(step_size=0.05, batch=8), n_iter=5, engine="numpy")
    assert not [w for w in caught if issubclass(w.category, fc.PerformanceWarning)]


class Broken(PyTanh):
    def vjp_input(self, w, x, y, v):
        raise ArithmeticError("broken on purpose")


class WrongShape(PyTanh):
    def forward(self, w, x):
        return np.tanh(x)[:, :1]


@pytest.mark.parametrize("cls, err", [(Broken, ArithmeticError), (WrongShape, ValueError)])
def test_callback_errors_are_raised_after_the_run(cls, err):
    problem = _mlp(act=cls)
    with pytest.raises(err):
        fc.run(problem, fc.SGD(step_size=0.05, batch=4), n_iter=5, seeds=[0])
    with pytest.raises(err):
        problem.gradient(problem.init_weights(0))
    assert _ops.take_callback_errors() == []


def test_inputs_are_read_only_views():
    seen = {}

    class Spy(PyTanh):
        def forward(self, w, x):
            seen["writeable"] = x.flags.writeable
            return np.tanh(x)

    problem = _mlp(act=Spy)
    problem.gradient(problem.init_weights(0))
    assert seen["writeable"] is False


def test_copied_and_pickled_operators_keep_running():
    problem = _mlp(act=PyTanh)
    w = problem.init_weights(1)
    g = problem.gradient(w)
    for other in (copy.deepcopy(problem), pickle.loads(pickle.dumps(problem))):
        np.testing.assert_array_equal(other.gradient(w), g)
    # the copies outlive the original: their plans name their own operators
    copies = [copy.deepcopy(problem), pickle.loads(pickle.dumps(problem))]
    del problem
    gc.collect()
    for other in copies:
        np.testing.assert_array_equal(other.gradient(w), g)
    # a sweep binds its folder to the same fingerprint for an equal problem
    from fastcascade.sweeper import _fingerprint
    assert _fingerprint(copies[0]) == _fingerprint(copies[1]) == _fingerprint(_mlp(act=PyTanh))
    # a bound copy is another object, with its own token
    op = PyTanh()
    a, b = op.bound(3), op.bound(3)
    assert a.callback_token() != b.callback_token() and a == b


def test_unregistered_token_is_an_error_not_a_crash():
    row = PyTanh(2).plan_row()          # the operator dies with this line
    gc.collect()
    out = _ops.forward(row, np.zeros(0), np.zeros(0), np.zeros((1, 2)), np.zeros((0, 0)))
    errors = _ops.take_callback_errors()
    assert np.all(np.isnan(out)) and len(errors) == 1 and isinstance(errors[0], LookupError)


# ---------------------------------------------------------------------------------------------
# Noises

def test_subclass_with_draw_is_python_defined():
    n = PyUniform(-1.0, 1.0)
    assert n.is_python and n.kind == "python" and not fc.noise.Uniform(-1, 1).is_python
    assert n == PyUniform(-1.0, 1.0) and hash(n) == hash(PyUniform(-1.0, 1.0))
    with pytest.raises(fc.ParameterError):
        fc.Perturbation(op=1, noise=n, granularity="sample")


def _uniform_perts(make, magnitude=None):
    return [fc.Perturbation(op=2, noise=make(-0.3, 0.3), magnitude=magnitude),
            fc.Perturbation(op=4, pass_="backward", noise=make(0.0, 0.2),
                            timing=fc.timing.Bernoulli(0.5)),
            fc.Perturbation(op=3, noise=make(-0.1, 0.1))]


@pytest.mark.parametrize("engine", ["cython", "numpy"])
@pytest.mark.parametrize("magnitude", [None, fc.magnitude.PowerDecay(0.5, scale=2.0)])
def test_python_uniform_gives_the_bits_of_uniform(engine, magnitude):
    problem = _mlp()
    built = _run(problem, engine, _uniform_perts(fc.noise.Uniform, magnitude))
    mine = _run(problem, engine, _uniform_perts(PyUniform, magnitude))
    for name in ("objective", "grad_norm", "grad_error", "forward_error", "backward_error",
                 "final_weights"):
        np.testing.assert_array_equal(getattr(mine, name), getattr(built, name), err_msg=name)
    assert np.any(mine.forward_error > 0)


def test_python_uniform_on_a_non_pcg64_stream_and_state_left_where_uniform_leaves_it():
    # _noise.apply: the kernel behind the engine, on a generator that is not PCG64 (the
    # generator's own bitgen_t) and on PCG64 (the inlined copy, written back)
    from fastcascade.perturbation import perturbation_tables
    for bitgen in (np.random.MT19937, np.random.PCG64):
        blocks, states = [], []
        for make in (fc.noise.Uniform, PyUniform):
            pert = fc.Perturbation(1, noise=make(-1, 2))   # alive: the registry is weak
            pint, preal, _ = perturbation_tables([pert], 1)
            gen = np.random.Generator(bitgen(7))
            z = np.arange(12.0).reshape(3, 4)
            _noise.apply(pint[0], preal[0], gen, z)
            blocks.append(z)
            states.append(gen.random(3))
        np.testing.assert_array_equal(blocks[0], blocks[1])
        np.testing.assert_array_equal(states[0], states[1])


def test_python_noise_errors_are_raised():
    class Bad(fc.noise.Noise):
        def draw(self, rng, x):
            return np.zeros(3)

    perts = [fc.Perturbation(op=2, noise=Bad())]
    with pytest.raises(ValueError, match="shape"):
        fc.run(_mlp(), fc.SGD(step_size=0.05, batch=4), n_iter=3, perturbations=perts)
    with pytest.raises(ValueError, match="shape"):
        fc.run(_mlp(), fc.SGD(step_size=0.05, batch=4), n_iter=3, perturbations=perts,
               engine="numpy")


def test_python_noise_in_perturbed_gradient_and_theory():
    problem = _mlp()
    w = problem.init_weights(0)
    for engine in ("cython", "numpy"):
        a = fc.perturbed_gradient(problem, w, _uniform_perts(PyUniform), seed=5, engine=engine)
        b = fc.perturbed_gradient(problem, w, _uniform_perts(fc.noise.Uniform), seed=5,
                                  engine=engine)
        np.testing.assert_array_equal(a.perturbed, b.perturbed)
        assert not np.array_equal(a.perturbed, a.clean)


# ---------------------------------------------------------------------------------------------
# The paper's Example 2: a step-size schedule, unrolled (fc.problems.step_size_schedule)

def _schedule_closed_form(problem, w):
    A = problem.cascade.operators[0].A
    P = np.eye(A.shape[0])
    for g in w:
        P = (np.eye(A.shape[0]) - g * A) @ P
    XT = problem.data.X @ P.T
    return float(np.mean(0.5 * np.sum((XT @ A) * XT, axis=1)))


@pytest.mark.parametrize("engine", ["cython", "numpy"])
def test_step_size_schedule_gradient_matches_finite_differences(engine):
    problem = fc.problems.step_size_schedule(n_steps=6, dim=4, n_samples=40, condition=20.0)
    w = np.array([0.9, 0.1, 1.4, 0.3, 0.7, 1.1])     # not symmetric: each step differs
    if engine == "cython":
        f, g = problem.objective, problem.gradient(w)
    else:
        f, g = (lambda x: reference.objective(problem, x)), reference.gradient(problem, w)
    np.testing.assert_allclose(f(w), _schedule_closed_form(problem, w), rtol=1e-13)
    h = 1e-6
    fd = np.array([(f(w + h * e) - f(w - h * e)) / (2 * h) for e in np.eye(w.size)])
    np.testing.assert_allclose(g, fd, rtol=1e-7, atol=1e-10)
    assert len(set(np.round(g, 12))) == w.size          # the steps do not commute in g


def test_step_size_schedule_learns_and_engines_agree():
    problem = fc.problems.step_size_schedule(n_steps=5, dim=4, n_samples=64)
    perts = [fc.Perturbation(op=2, noise=fc.noise.Gaussian(0.0, 0.05)),
             fc.Perturbation(op=4, pass_="backward", noise=PyUniform(-0.05, 0.05))]
    opt = fc.SGD(step_size=0.1, batch=8)
    a, b = (_run(problem, e, perts, n_iter=60, optimizer=opt) for e in ("cython", "numpy"))
    _close(a, b)
    assert np.all(a.objective[:, -1] < 0.8 * a.objective[:, 0])      # the schedule learns
    np.testing.assert_allclose(a.objective[0, 0], problem.objective(np.full(5, 0.5)),
                               rtol=1e-13)


def test_step_size_schedule_checks_its_arguments():
    with pytest.raises(fc.ParameterError):
        fc.problems.step_size_schedule(condition=0.5)
    with pytest.raises(fc.ParameterError):
        fc.ops.GradientStep(np.array([[1.0, 2.0], [0.0, 1.0]]))


def test_the_bench_python_tanh_is_tanh():
    # case (g) of fastcascade.bench times this operator against the built-in Tanh
    from fastcascade import bench
    op = bench.python_tanh()
    assert op.is_python
    x = np.linspace(-3, 3, 12).reshape(3, 4)
    np.testing.assert_allclose(op.vjp(x, np.ones_like(x))[0], 1.0 - np.tanh(x) ** 2,
                               rtol=1e-15)
    np.testing.assert_array_equal(reference.forward(op.bound(4), x), np.tanh(x))


def test_callbacks_from_the_recording_thread_give_the_same_bits():
    # one seed, n_jobs=2: the run records on a helper thread (a thread Python did not start),
    # whose clean passes call the Python operator back too
    problem = _mlp(act=PyTanh)
    perts = [fc.Perturbation(op=2, noise=PyUniform(-0.1, 0.1))]
    opt = fc.SGD(step_size=0.05, batch=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fc.PerformanceWarning)
        a, b = (fc.run(problem, opt, n_iter=60, perturbations=perts, seeds=[0], n_jobs=k)
                for k in (1, 2))
    np.testing.assert_array_equal(a.final_weights, b.final_weights)
    np.testing.assert_array_equal(a.grad_norm, b.grad_norm)


def test_python_noise_moments_feed_the_theory():
    mine = fc.theory.perturbation_moments(PyUniform(-0.2, 0.6), 5)
    built = fc.theory.perturbation_moments(fc.noise.Uniform(-0.2, 0.6), 5)
    for k in ("sq", "mean_sq"):
        assert mine[k] == pytest.approx(built[k], rel=1e-14)
    assert np.isnan(mine["fourth"])         # PyUniform gives no fourth_moment

    class Silent(fc.noise.Noise):
        def draw(self, rng, x):
            return np.zeros_like(x)

    with pytest.raises(ValueError, match="mean"):
        fc.theory.perturbation_moments(Silent(), 3)


def test_ctrl_c_inside_a_callback_is_an_interrupt():
    class Interrupted(PyTanh):
        def forward(self, w, x):
            raise KeyboardInterrupt

    problem = _mlp(act=Interrupted)
    with pytest.raises(KeyboardInterrupt):
        fc.run(problem, fc.SGD(step_size=0.05, batch=4), n_iter=5, seeds=[0, 1])
    assert _ops.take_callback_errors() == []
