"""Tests of Cascade (layout, lowering, width checks), Problem (clean objective and gradient, label
and width validation), the regularizers, the synthetic data and appendix A.3's operators."""
import math

import numpy as np
import pytest

import fastcascade as fc
from fastcascade import reference as ref
from fastcascade._kernels import _ops

# --------------------------------------------------------------------------------------------
# helpers


def scale_of(*arrays):
    """The largest magnitude among the arrays (at least 1): the scale of absolute tolerances."""
    return max([1.0] + [float(np.max(np.abs(a))) for a in arrays if np.size(a)])


def central_gradient(f, w, h=1e-6):
    g = np.empty_like(w)
    for k in range(w.size):
        wp, wm = w.copy(), w.copy()
        wp[k] += h
        wm[k] -= h
        g[k] = (f(wp) - f(wm)) / (2 * h)
    return g


def mixed_cascade():
    """Every kind of layout: weighted, weightless, fixed parameters, bias or not."""
    A = np.arange(6.0).reshape(2, 3) - 2.5
    D = np.array([[1.0, -2.0], [0.5, 3.0]])
    return fc.Cascade([
        fc.ops.Linear(4, 5),                 # 25 weights
        fc.ops.Tanh(),                       # 0
        fc.ops.Linear(5, 3, bias=False),     # 15
        fc.ops.FixedLinear(A),               # 0, 6 params
        fc.ops.DiagLinear(D),                # 2, 4 params
        fc.ops.InnerSquare(),                # 2
    ]), A, D


# --------------------------------------------------------------------------------------------
# Cascade layout and lowering

def test_cascade_dims_and_weight_slices_tile_the_weight_vector():
    c, A, D = mixed_cascade()
    assert c.input_dim == 4 and c.n_ops == len(c) == 6
    assert c.dims == (4, 5, 5, 3, 2, 2, 1)
    assert c.n_weights == 25 + 15 + 2 + 2
    slices = [c.weight_slice(i) for i in range(1, c.n_ops + 1)]
    assert [(s.start, s.stop) for s in slices] == [(0, 25), (25, 25), (25, 40), (40, 40),
                                                   (40, 42), (42, 44)]
    # contiguous, in order, covering [0, n_weights) exactly once
    covered = np.zeros(c.n_weights, dtype=int)
    for s, op in zip(slices, c.operators):
        assert s.stop - s.start == op.n_weights
        covered[s] += 1
    np.testing.assert_array_equal(covered, 1)
    assert slices[0].start == 0 and slices[-1].stop == c.n_weights
    assert all(a.stop == b.start for a, b in zip(slices, slices[1:]))
    assert c.weight_slice(np.int64(3)) == slices[2]


def test_lower_op_table_and_params():
    c, A, D = mixed_cascade()
    plan = c.lower()
    t = plan.op_table
    assert t.dtype == np.int64 and t.shape == (6, 7) and t.flags.c_contiguous
    assert plan.dims == c.dims and plan.n_weights == c.n_weights == 44
    # columns: code, flag, d_in, d_out, n_w, w_off, p_off
    np.testing.assert_array_equal(t[:, 0], [_ops.OP_CODES[op.kind] for op in c.operators])
    np.testing.assert_array_equal(t[:, 1], [1, 0, 0, 0, 0, 0])       # only the first has bias
    np.testing.assert_array_equal(t[:, 2], c.dims[:-1])
    np.testing.assert_array_equal(t[:, 3], c.dims[1:])
    np.testing.assert_array_equal(t[:, 4], [25, 0, 15, 0, 2, 2])
    np.testing.assert_array_equal(t[:, 5], [c.weight_slice(i).start for i in range(1, 7)])
    np.testing.assert_array_equal(t[:, 5], np.concatenate([[0], np.cumsum(t[:-1, 4])]))
    np.testing.assert_array_equal(t[:, 6], [0, 0, 0, 0, 6, 10])
    # rows link: d_out of one is d_in of the next
    np.testing.assert_array_equal(t[1:, 2], t[:-1, 3])
    assert t[-1, 3] == 1
    assert t[-1, 5] + t[-1, 4] == plan.n_weights
    np.testing.assert_array_equal(plan.params, np.concatenate([A.ravel(), D.ravel()]))
    assert plan.params.dtype == np.float64
    # every row is also the operator's own plan row at those offsets
    for row, op in zip(t, c.operators):
        np.testing.assert_array_equal(row, op.plan_row(row[5], row[6]))


def test_op_codes_are_distinct_and_cover_every_operator():
    assert len(set(_ops.OP_CODES.values())) == len(_ops.OP_CODES)
    kinds = {getattr(fc.ops, n).kind for n in fc.ops.__all__ if n != "Operator"}
    # "python": the code of every Python-defined operator (fc.ops.Operator with forward)
    assert kinds | {"python"} == set(_ops.OP_CODES)


def test_init_weights():
    c, _, _ = mixed_cascade()
    z = c.init_weights()
    assert z.dtype == np.float64 and z.shape == (44,)
    np.testing.assert_array_equal(z, 0.0)
    np.testing.assert_array_equal(c.init_weights(None), 0.0)
    w1, w1b, w2 = c.init_weights(1), c.init_weights(1), c.init_weights(2)
    assert w1.shape == (44,)
    np.testing.assert_array_equal(w1, w1b)
    assert not np.array_equal(w1, w2)
    assert np.all(np.isfinite(w1)) and np.all(w1 != 0.0)
    # Linear: U(-1/sqrt(d_in), 1/sqrt(d_in))
    assert np.all(np.abs(w1[c.weight_slice(1)]) <= 1 / math.sqrt(4))
    assert np.all(np.abs(w1[c.weight_slice(3)]) <= 1 / math.sqrt(5))
    # a numpy Generator seeded the same way gives the same weights (documented draw order)
    rng = np.random.default_rng(1)
    expected = np.concatenate([op.init_weights(rng) for op in c.operators if op.n_weights])
    np.testing.assert_array_equal(w1, expected)
    # weightless cascade
    c0 = fc.Cascade([fc.ops.Tanh(), fc.ops.FixedLinear(np.ones((1, 3)))], input_dim=3)
    assert c0.n_weights == 0 and c0.init_weights(5).shape == (0,)


def test_unbound_cascade_binds_to_input_width():
    c = fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()])
    assert c.input_dim is None
    for what in ("n_weights", "dims"):
        with pytest.raises(ValueError, match=rf"{what}: depends on the input width.*input_dim="):
            getattr(c, what)
    for call, what in ((lambda: c.weight_slice(1), "weight_slice"),
                       (lambda: c.init_weights(0), "init_weights"), (c.lower, "lower")):
        with pytest.raises(ValueError, match=rf"{what}: depends on the input width"):
            call()
    b = c.bind(7)
    assert b is not c and c.input_dim is None
    assert b.n_weights == 7 and b.dims == (7, 1, 1)
    assert b.bind(7) is b
    with pytest.raises(ValueError, match=r"input_dim: the cascade takes inputs of width 7, "
                                         r"given data of width 8"):
        b.bind(8)
    assert fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()], input_dim=7) == b
    # a bound cascade's ops are bound copies; the originals are untouched
    ops = [fc.ops.Tanh(), fc.ops.Linear(3, 1)]
    c3 = fc.Cascade(ops, input_dim=3)
    assert ops[0].d_in is None and c3.operators[0].d_in == 3
    assert fc.Cascade(fc.ops.Linear(2, 1)).n_weights == 3       # one operator, not a list


# --------------------------------------------------------------------------------------------
# Cascade and Problem argument errors

@pytest.mark.parametrize("make,patterns", [
    (lambda: fc.Cascade([fc.ops.Linear(3, 4), fc.ops.Linear(5, 1)]),
     [r"operator 2\b", r"d_in", r"expected 4\b", r"given 5\b"]),
    (lambda: fc.Cascade([fc.ops.Linear(3, 4), fc.ops.Tanh(), fc.ops.Linear(5, 1)]),
     [r"operator 3\b", r"d_in", r"expected 4 \(the output width of operator 2\)", r"given 5"]),
    (lambda: fc.Cascade([fc.ops.Linear(3, 4)]),
     [r"operator 1\b", r"d_out", r"d_out = 1", r"given 4"]),
    (lambda: fc.Cascade([fc.ops.Margin(), fc.ops.Softplus(), fc.ops.Linear(1, 2)],
                        input_dim=3),
     [r"operator 3\b", r"d_out", r"given 2"]),
    (lambda: fc.Cascade([fc.ops.Tanh()], input_dim=3),
     [r"operator 1\b", r"d_out", r"given 3"]),
    (lambda: fc.Cascade([fc.ops.Tanh()]).bind(2), [r"operator 1\b", r"d_out", r"given 2"]),
    (lambda: fc.Cascade([fc.ops.Linear(4, 1)], input_dim=3),
     [r"operator 1\b", r"d_in: expected 3 \(the input\), given 4"]),
    (lambda: fc.Cascade([fc.ops.Tanh(), fc.ops.Linear(3, 1)]).bind(4),
     [r"operator 2\b", r"d_in: expected 4", r"given 3"]),
    (lambda: fc.Cascade([]), [r"operators: expected at least one operator"]),
    (lambda: fc.Cascade([fc.ops.Tanh(), "relu"]),
     [r"operators\[1\]: expected a fastcascade\.ops\.Operator \(operator 2\), given 'relu'"]),
    (lambda: fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()], input_dim=0),
     [r"input_dim: expected a positive integer, given 0"]),
])
def test_cascade_errors(make, patterns):
    with pytest.raises(ValueError) as info:
        make()
    for p in patterns:
        assert info.match(p)


@pytest.mark.parametrize("index", [0, 3, -1, True, 1.0, "1"])
def test_weight_slice_index_out_of_range(index):
    c = fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()], input_dim=3)
    with pytest.raises(ValueError, match=r"expected an operator index in 1\.\.2, given "):
        c.weight_slice(index)


def _logistic_data(M=20, d=3, seed=0):
    return fc.datasets.synthetic_logistic(M, d, seed=seed)


@pytest.mark.parametrize("make,patterns", [
    # data of the wrong width for a fixed-width cascade
    (lambda: fc.Problem(fc.Cascade([fc.ops.Linear(3, 1)]), (np.ones((4, 5)),)),
     [r"input_dim", r"width 3\b", r"width 5\b"]),
    (lambda: fc.Problem(fc.Cascade([fc.ops.Margin(3), fc.ops.Softplus()]), _logistic_data(d=4)),
     [r"width 3\b", r"width 4\b"]),
    # labels the operators cannot read
    (lambda: fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]),
                        (np.ones((4, 2)), np.array([0, 1, 1, 0]))),
     [r"operator 1\b", r"labels", r"\+1 or -1", r"given .*0"]),
    (lambda: fc.Problem(fc.Cascade([fc.ops.Linear(2, 1), fc.ops.LogisticLoss()]),
                        (np.ones((3, 2)), np.array([1.0, -1.0, 0.5]))),
     [r"operator 2\b", r"\+1 or -1", r"0\.5"]),
    (lambda: fc.Problem(fc.Cascade([fc.ops.Linear(2, 3), fc.ops.SoftmaxCrossEntropy()]),
                        (np.ones((3, 2)), np.array([0, 2, 3]))),
     [r"operator 2\b", r"classes in \[0, 3\)", r"given .*3"]),
    (lambda: fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), (np.ones((4, 2)),)),
     [r"operator 1\b", r"labels: reads 1 label column\(s\), the data has 0"]),
    (lambda: fc.Problem(fc.Cascade([fc.ops.SquaredError()]), (np.ones((4, 3)), np.ones((4, 2)))),
     [r"operator 1\b", r"reads 3 label column\(s\), the data has 2"]),
    # bad arguments
    (lambda: fc.Problem([fc.ops.Margin(), fc.ops.Softplus()], _logistic_data()),
     [r"cascade: expected a fastcascade\.Cascade"]),
    (lambda: fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), np.ones((4, 2))),
     [r"data: expected a fastcascade\.datasets\.Dataset or an \(X, y\) tuple"]),
    (lambda: fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), _logistic_data(),
                        regularizer=0.1), [r"regularizer: expected"]),
    (lambda: fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]),
                        _logistic_data()).gradient(np.zeros(4)),
     [r"w: expected 3 weights \(cascade\.n_weights\), given 4"]),
    (lambda: fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]),
                        _logistic_data()).objective(np.zeros((3, 1))),
     [r"w: expected a 1-d array"]),
    # datasets
    (lambda: fc.datasets.Dataset(np.ones((3, 2)), np.ones(4)),
     [r"y: expected 3 label rows \(one per row of X\), given shape \(4, 1\)"]),
    (lambda: fc.datasets.Dataset(np.ones((3, 2)), np.ones((2, 2))),
     [r"y: expected 3 label rows", r"\(2, 2\)"]),
    (lambda: fc.datasets.Dataset(np.zeros((0, 2))), [r"X: expected a non-empty"]),
    (lambda: fc.datasets.Dataset(np.array([[1.0, np.nan]])), [r"X: expected finite values"]),
    (lambda: fc.datasets.Dataset(np.ones((2, 2)), [1.0, np.inf]), [r"y: expected finite"]),
    (lambda: fc.datasets.synthetic_logistic(0, 3), [r"n_samples: expected a positive integer"]),
    (lambda: fc.datasets.synthetic_logistic(10, 2.5), [r"n_features: expected a positive"]),
    # regularizers
    (lambda: fc.reg.L2(-1.0), [r"L2", r"rho: expected a finite real number >= 0"]),
    (lambda: fc.reg.NonConvex(float("nan")), [r"rho: expected a finite real number"]),
    (lambda: fc.reg.SquaredNorm("0.1"), [r"rho: expected .*given '0\.1'"]),
])
def test_problem_dataset_regularizer_errors(make, patterns):
    with pytest.raises(ValueError) as info:
        make()
    for p in patterns:
        assert info.match(p)


# --------------------------------------------------------------------------------------------
# Regularizers

RHO = 0.37
REGS = {
    # name: (regularizer, R(w), grad R(w)) written out here from the documented conventions
    "none": (fc.reg.NoRegularizer(), lambda w: 0.0, lambda w: np.zeros_like(w)),
    "l2": (fc.reg.L2(RHO), lambda w: RHO / 2 * np.sum(w * w), lambda w: RHO * w),
    "squared_norm": (fc.reg.SquaredNorm(RHO), lambda w: RHO * np.sum(w * w),
                     lambda w: 2 * RHO * w),
    "nonconvex": (fc.reg.NonConvex(RHO), lambda w: RHO * np.sum(w * w / (1 + w * w)),
                  lambda w: RHO * 2 * w / (1 + w * w) ** 2),
}


@pytest.mark.parametrize("name", list(REGS))
@pytest.mark.parametrize("seed", [0, 1])
def test_regularizer_value_gradient_and_fd(name, seed):
    reg, value, grad = REGS[name]
    w = 1.5 * np.random.default_rng(seed).normal(size=6)
    # closed forms: same formulas, so agreement to a few ulps
    assert reg.value(w) == pytest.approx(value(w), rel=1e-14, abs=1e-300)
    np.testing.assert_allclose(reg.gradient(w), grad(w), rtol=1e-14, atol=0)
    # FD (h = 1e-6, tolerance 1e-7 relative to the O(1) scale; error ~ eps/h ~ 1e-10)
    np.testing.assert_allclose(reg.gradient(w), central_gradient(reg.value, w), rtol=1e-7,
                               atol=1e-7)
    assert reg.value(np.zeros(3)) == 0.0
    np.testing.assert_array_equal(reg.gradient(np.zeros(3)), 0.0)


def test_regularizer_known_values():
    w = np.array([1.0, 2.0])
    assert fc.reg.SquaredNorm(0.1).value(w) == pytest.approx(0.5, rel=1e-15)
    assert fc.reg.L2(0.1).value(w) == pytest.approx(0.25, rel=1e-15)
    assert fc.reg.NonConvex(1.0).value(w) == pytest.approx(0.5 + 0.8, rel=1e-15)
    assert fc.reg.NoRegularizer().value(w) == 0.0
    np.testing.assert_allclose(fc.reg.NonConvex(1.0).gradient(w), [0.5, 4.0 / 25.0], rtol=1e-15)


# --------------------------------------------------------------------------------------------
# The paper's logistic problem: the clean gradient against its closed form

PAPER_REGS = {
    "nonconvex": (fc.reg.NonConvex(1e-3), lambda w: 1e-3 * np.sum(w * w / (1 + w * w)),
                  lambda w: 1e-3 * 2 * w / (1 + w * w) ** 2),
    "squared_norm": (fc.reg.SquaredNorm(0.1), lambda w: 0.1 * np.sum(w * w), lambda w: 0.2 * w),
    "l2": (fc.reg.L2(0.5), lambda w: 0.25 * np.sum(w * w), lambda w: 0.5 * w),
    "none": (None, lambda w: 0.0, lambda w: np.zeros_like(w)),
}


@pytest.fixture(scope="module", params=[0, 1], ids=["data0", "data1"])
def paper_data(request):
    return fc.datasets.synthetic_logistic(2000, 10, seed=request.param)


def _paper_weights(data):
    rng = np.random.default_rng(11)
    return {"zero": np.zeros(10), "x_star": data.x_star.copy(),
            "random": rng.normal(size=10), "large": 50.0 * rng.normal(size=10)}


@pytest.mark.parametrize("reg_name", list(PAPER_REGS))
def test_paper_logistic_gradient_closed_form(paper_data, reg_name):
    reg, R, gradR = PAPER_REGS[reg_name]
    problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), paper_data,
                         regularizer=reg)
    H, y = paper_data.X, paper_data.y[:, 0]
    for wname, w in _paper_weights(paper_data).items():
        m = -y * (H @ w)                                     # margins -y_l h_l^T w
        sig = np.where(m >= 0, 1 / (1 + np.exp(-np.abs(m))),
                       np.exp(-np.abs(m)) / (1 + np.exp(-np.abs(m))))   # sigmoid(m)
        terms = (-y * sig)[:, None] * H                      # -y_l h_l sigmoid(-y_l h_l^T w)
        grad = terms.mean(axis=0) + gradR(w)
        obj = np.mean(np.logaddexp(0.0, m)) + R(w)
        # summation order differs (engine loops vs NumPy pairwise sums): the error is a few
        # ulps of the summed terms' scale, far below 1e-12 of it
        scale = float(np.mean(np.abs(terms))) + float(np.max(np.abs(gradR(w))))
        for label, g in (("compiled", problem.gradient(w)), ("reference", ref.gradient(problem, w))):
            np.testing.assert_allclose(g, grad, rtol=1e-12, atol=1e-12 * scale,
                                       err_msg=f"{label} gradient at w={wname}")
        for label, v in (("compiled", problem.objective(w)), ("reference", ref.objective(problem, w))):
            assert np.isfinite(v)
            assert v == pytest.approx(obj, rel=1e-12), (label, wname)
        v, g = problem.objective_and_gradient(w)
        assert v == problem.objective(w)
        np.testing.assert_array_equal(g, problem.gradient(w))
    # at w = 0 every margin is 0: l(0) = ln 2 whatever the regularizer
    assert problem.objective(np.zeros(10)) == pytest.approx(math.log(2), rel=1e-14)


def test_paper_logistic_gradient_matches_fd(paper_data):
    problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), paper_data,
                         regularizer=fc.reg.NonConvex(1e-3))
    w = np.random.default_rng(5).normal(size=10)
    g = problem.gradient(w)
    # h = 1e-6: error ~ eps |l| / h ~ 1e-10 << 1e-6 relative
    np.testing.assert_allclose(g, central_gradient(problem.objective, w), rtol=1e-6,
                               atol=1e-6 * scale_of(g))


# --------------------------------------------------------------------------------------------
# Deeper cascades: compiled gradient vs FD of the compiled objective and vs the reference

def _mlp_problem(head, seed, M=40, d=5, width=6, act=fc.ops.Tanh):
    """A depth-4 MLP (4 Linear layers with activations between) with a loss head."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(M, d))
    layers = [fc.ops.Linear(d, width), act(), fc.ops.Linear(width, width), act(),
              fc.ops.Linear(width, width, bias=False), act()]
    if head == "logistic":
        ops = layers + [fc.ops.Linear(width, 1), fc.ops.LogisticLoss()]
        y = rng.choice([-1.0, 1.0], size=M)
    elif head == "softplus":
        ops = layers + [fc.ops.Linear(width, 1), fc.ops.Softplus()]
        y = None
    elif head == "squared":
        ops = layers + [fc.ops.Linear(width, 2), fc.ops.SquaredError()]
        y = rng.normal(size=(M, 3))                 # one extra label column, not read
    elif head == "softmax":
        ops = layers + [fc.ops.Linear(width, 3), fc.ops.SoftmaxCrossEntropy()]
        y = rng.integers(0, 3, size=M)
    else:
        raise AssertionError(head)
    data = (X, y) if y is not None else (X,)
    problem = fc.Problem(fc.Cascade(ops), data, regularizer=fc.reg.L2(0.01))
    return problem, problem.init_weights(seed)


@pytest.mark.parametrize("head", ["logistic", "softplus", "squared", "softmax"])
@pytest.mark.parametrize("seed", [0, 1])
def test_mlp_gradient_matches_fd_and_reference(head, seed):
    problem, w = _mlp_problem(head, seed)
    assert problem.cascade.n_ops == 8
    g = problem.gradient(w)
    # FD of the compiled objective: error ~ eps |l| / h + h^2 |l'''| ~ 1e-10 << 1e-6 relative
    np.testing.assert_allclose(g, central_gradient(problem.objective, w), rtol=1e-6,
                               atol=1e-6 * scale_of(g))
    # kernels vs NumPy: different summation orders, a few ulps of the scale
    np.testing.assert_allclose(g, ref.gradient(problem, w), rtol=1e-12, atol=1e-13 * scale_of(g))
    assert problem.objective(w) == pytest.approx(ref.objective(problem, w), rel=1e-12)


@pytest.mark.parametrize("act", [fc.ops.ReLU, fc.ops.Sigmoid, fc.ops.Softplus, fc.ops.Identity])
def test_other_activations_match_reference(act):
    problem, w = _mlp_problem("logistic", 3, act=act)
    g = problem.gradient(w)
    np.testing.assert_allclose(g, ref.gradient(problem, w), rtol=1e-12, atol=1e-13 * scale_of(g))
    assert problem.objective(w) == pytest.approx(ref.objective(problem, w), rel=1e-12)
    assert np.any(g != 0)


def test_reference_cascade_forward_backward_chain_rule():
    """cascade_forward / cascade_backward: the v_i are the chained input VJPs."""
    problem, w = _mlp_problem("softplus", 0)
    c, X = problem.cascade, problem.data.X
    ys = ref.cascade_forward(c, w, X, problem.data.y)
    assert [y.shape for y in ys] == [(40, k) for k in c.dims]
    # y_i = f_i(y_{i-1}) with the compiled kernels
    for i, op in enumerate(c.operators, start=1):
        np.testing.assert_allclose(ys[i], op.forward(ys[i - 1], w[c.weight_slice(i)]),
                                   rtol=1e-12, atol=1e-13 * scale_of(ys[i]))
    grad, v = ref.cascade_backward(c, w, ys, problem.data.y)
    assert len(v) == c.n_ops
    np.testing.assert_array_equal(v[-1], 1.0)
    for i in range(c.n_ops - 1, 0, -1):           # v_i = J1_{i+1}^T v_{i+1}
        op = c.operators[i]
        g_in, g_w = op.vjp(ys[i], v[i], w[c.weight_slice(i + 1)])
        np.testing.assert_allclose(v[i - 1], g_in, rtol=1e-12, atol=1e-13 * scale_of(g_in))
        np.testing.assert_allclose(grad[c.weight_slice(i + 1)], g_w, rtol=1e-12,
                                   atol=1e-13 * scale_of(g_w))
    # the summed gradient over M samples, divided by M, plus R: the problem's gradient
    np.testing.assert_allclose(grad / 40 + problem.regularizer.gradient(w), problem.gradient(w),
                               rtol=1e-12, atol=1e-13 * scale_of(grad))


# --------------------------------------------------------------------------------------------
# Read-only and converted problem data; extreme weights

def test_problem_with_read_only_and_converted_data():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(30, 4))
    y = rng.choice([-1.0, 1.0], size=30)
    cascade = fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()])
    w = rng.normal(size=4)
    base = fc.Problem(cascade, (X.copy(), y.copy()), regularizer=fc.reg.L2(0.1))
    expected_v, expected_g = base.objective_and_gradient(w)

    Xr, yr, wr = X.copy(), y.copy(), w.copy()
    for a in (Xr, yr, wr):
        a.flags.writeable = False
    for data in ((Xr, yr), fc.datasets.Dataset(Xr, yr), (np.asfortranarray(X), y[:, None]),
                 (np.hstack([X, X])[:, :4], y.astype(np.int64).astype(np.float32))):
        p = fc.Problem(cascade, data, regularizer=fc.reg.L2(0.1))
        assert p.data.X.dtype == np.float64 and p.data.X.flags.c_contiguous
        assert p.data.y.shape == (30, 1)
        v, g = p.objective_and_gradient(wr)
        assert v == expected_v
        np.testing.assert_array_equal(g, expected_g)
        np.testing.assert_allclose(ref.gradient(p, wr), expected_g, rtol=1e-12,
                                   atol=1e-13 * scale_of(expected_g))
    # integer features are converted
    Xi = np.arange(12).reshape(6, 2) - 5
    yi = np.array([1, -1, 1, 1, -1, -1])
    p = fc.Problem(cascade, (Xi, yi))
    q = fc.Problem(cascade, (Xi.astype(float), yi.astype(float)))
    np.testing.assert_array_equal(p.gradient([0.5, -0.25]), q.gradient([0.5, -0.25]))
    assert p.gradient(np.array([1, 2])).dtype == np.float64   # integer w is converted


def test_dataset_conversions():
    d = fc.datasets.Dataset(np.arange(5))                   # 1-d X: one feature per sample
    assert d.X.shape == (5, 1) and d.y.shape == (5, 0) and d.X.dtype == np.float64
    assert d.n_samples == len(d) == 5 and d.n_features == 1
    d2 = fc.datasets.Dataset(np.ones((4, 3), dtype=np.float32), [1, -1, 1, -1])
    assert d2.y.shape == (4, 1) and d2.y.dtype == np.float64 and d2.X.dtype == np.float64
    assert fc.datasets.as_dataset(d2) is d2


def test_logistic_problem_with_extreme_weights_is_finite():
    data = fc.datasets.synthetic_logistic(200, 5, seed=3)
    problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), data)
    w = 1e3 * data.x_star                                   # margins of order 1e3 (>= 800)
    m = -data.y[:, 0] * (data.X @ w)
    assert np.max(np.abs(m)) > 800
    v, g = problem.objective_and_gradient(w)
    assert np.isfinite(v) and np.all(np.isfinite(g))
    assert v == pytest.approx(np.mean(np.logaddexp(0.0, m)), rel=1e-12)
    # sigmoid(m) is 0 or 1 up to e^-800 on the large margins
    sig = 0.5 * (1 + np.tanh(0.5 * m))
    expected = np.mean((-data.y[:, 0] * sig)[:, None] * data.X, axis=0)
    np.testing.assert_allclose(g, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ref.gradient(problem, w), g, rtol=1e-12, atol=1e-13)


# --------------------------------------------------------------------------------------------
# synthetic_logistic

def test_synthetic_logistic_shapes_labels_and_reproducibility():
    a = fc.datasets.synthetic_logistic(300, 7, seed=5)
    b = fc.datasets.synthetic_logistic(300, 7, seed=5)
    c = fc.datasets.synthetic_logistic(300, 7, seed=6)
    assert a.X.shape == (300, 7) and a.y.shape == (300, 1) and a.x_star.shape == (7,)
    assert a.X.dtype == a.y.dtype == np.float64
    assert set(np.unique(a.y)) == {-1.0, 1.0}
    for attr in ("X", "y", "x_star"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
        assert not np.array_equal(getattr(a, attr), getattr(c, attr))
    # the documented draw order: x*, H, then M uniforms, y = +1 iff u < sigmoid(H x*)
    rng = np.random.default_rng(5)
    x_star = rng.standard_normal(7)
    H = rng.standard_normal((300, 7))
    u = rng.random(300)
    np.testing.assert_array_equal(a.x_star, x_star)
    np.testing.assert_array_equal(a.X, H)
    np.testing.assert_array_equal(a.y[:, 0], np.where(u < 1 / (1 + np.exp(-H @ x_star)), 1, -1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_logistic_label_frequencies(seed):
    M = 20000
    data = fc.datasets.synthetic_logistic(M, 10, seed=seed)
    p = 1 / (1 + np.exp(-(data.X @ data.x_star)))
    pos = data.y[:, 0] == 1.0
    # the count of +1 labels is a sum of independent Bernoulli(p_l): 4 binomial sigmas
    sigma = math.sqrt(np.sum(p * (1 - p))) / M
    assert abs(pos.mean() - p.mean()) <= 4 * sigma
    # and calibrated: in each quintile of p the fraction of +1 is its mean p (4 sigmas each);
    # this also fails if the labels' sign were flipped (overall mean p is ~1/2 by symmetry)
    order = np.argsort(p)
    for chunk in np.array_split(order, 5):
        pc = p[chunk]
        sig = math.sqrt(np.sum(pc * (1 - pc))) / chunk.size
        assert abs(pos[chunk].mean() - pc.mean()) <= 4 * sig
    assert pos[order[: M // 5]].mean() < 0.3 < 0.7 < pos[order[-M // 5:]].mean()


# --------------------------------------------------------------------------------------------
# Appendix A.3 (the paper's appendix A.3): f_1 = A (x * w_1), f_2 = <y_1, w_2>^2 + ||y_1||^2 / 2

A3 = np.array([[-15.0, 13.0], [-5.0, 9.0]])


@pytest.mark.parametrize("s", [1.0, -0.3, 2.5])
def test_appendix_a3_forward_and_gradient(s):
    cascade = fc.Cascade([fc.ops.DiagLinear(A3), fc.ops.InnerSquare()])
    problem = fc.Problem(cascade, (np.array([[1.0, 1.0]]),))
    assert problem.n_weights == 4
    assert problem.cascade.weight_slice(1) == slice(0, 2)
    w = np.array([s, s, 0.0, 0.0])                         # w_1 = (s, s), w_2 = 0
    ys = ref.cascade_forward(problem.cascade, w, problem.data.X, problem.data.y)
    np.testing.assert_allclose(ys[1], [[-2 * s, 4 * s]], rtol=1e-15)   # y_1 = A w_1
    assert ys[2][0, 0] == pytest.approx(10 * s * s, rel=1e-15)          # ||y_1||^2 / 2
    # v_1 = y_1 (w_2 = 0), u_1 = x * (A^T v_1) = (10s, 10s), u_2 = 2 <y_1, w_2> y_1 = 0
    expected = np.array([10 * s, 10 * s, 0.0, 0.0])
    for g in (problem.gradient(w), ref.gradient(problem, w)):
        np.testing.assert_allclose(g, expected, rtol=1e-14, atol=0)
    assert problem.objective(w) == pytest.approx(10 * s * s, rel=1e-14)
    # plain SGD with gamma = 0.1 reaches w_1 = 0 in one step (up to the rounding of the
    # products A^T v_1 with terms of size 30|s|: a few ulps of 30|s|)
    np.testing.assert_allclose(w - 0.1 * problem.gradient(w), 0.0, rtol=0, atol=1e-14 * abs(s))
    # the same pieces from the operators directly
    op1 = problem.cascade.operators[0]
    y1 = op1.forward([[1.0, 1.0]], w[:2])
    np.testing.assert_allclose(y1, [[-2 * s, 4 * s]], rtol=1e-15)
    v1, u2 = problem.cascade.operators[1].vjp(y1, [[1.0]], w[2:])
    np.testing.assert_allclose(v1, y1, rtol=1e-15)
    np.testing.assert_array_equal(u2, 0.0)
    _, u1 = op1.vjp([[1.0, 1.0]], v1, w[:2])
    np.testing.assert_allclose(u1, [10 * s, 10 * s], rtol=1e-14)
    # with the Top-1 compressor C(v_1) = (0, 4s): u_1 = A^T C(v_1) = (-20s, 36s), not towards 0
    _, u1_top1 = op1.vjp([[1.0, 1.0]], [[0.0, 4 * s]], w[:2])
    np.testing.assert_allclose(u1_top1, [-20 * s, 36 * s], rtol=1e-15)


def test_appendix_a3_gradient_with_nonzero_w2_matches_fd():
    cascade = fc.Cascade([fc.ops.DiagLinear(A3), fc.ops.InnerSquare()])
    problem = fc.Problem(cascade, (np.array([[1.0, 1.0], [0.5, -2.0]]),))
    w = np.array([0.3, -0.7, 0.2, 0.9])
    g = problem.gradient(w)
    # error ~ eps |l| / h ~ 1e-9 for |l| ~ 10: below 1e-6 relative
    np.testing.assert_allclose(g, central_gradient(problem.objective, w), rtol=1e-6,
                               atol=1e-6 * scale_of(g))
    np.testing.assert_allclose(g, ref.gradient(problem, w), rtol=1e-12, atol=1e-13 * scale_of(g))
