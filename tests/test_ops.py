"""Tests of the operators (fastcascade.ops): the compiled forward / VJP kernels, their NumPy twins in
fastcascade.reference, finite differences, extreme inputs, input conversion and argument errors."""
import math

import numpy as np
import pytest

import fastcascade as fc
from fastcascade import reference as ref

# --------------------------------------------------------------------------------------------
# Test cases: one factory per operator configuration. ``d`` is the input width asked for; ops
# of fixed width (LogisticLoss) ignore it and are only paired with d = 1 below.

OPS = {
    "identity": lambda d, rng: fc.ops.Identity(),
    "identity_bound": lambda d, rng: fc.ops.Identity(d),
    "softplus": lambda d, rng: fc.ops.Softplus(),
    "sigmoid": lambda d, rng: fc.ops.Sigmoid(),
    "tanh": lambda d, rng: fc.ops.Tanh(d),
    "relu": lambda d, rng: fc.ops.ReLU(),
    "margin": lambda d, rng: fc.ops.Margin(),
    "margin_bound": lambda d, rng: fc.ops.Margin(d),
    "linear": lambda d, rng: fc.ops.Linear(d, 3),
    "linear_scalar": lambda d, rng: fc.ops.Linear(d, 1),
    "linear_nobias": lambda d, rng: fc.ops.Linear(d, 2, bias=False),
    "logistic_loss": lambda d, rng: fc.ops.LogisticLoss(),
    "squared_error": lambda d, rng: fc.ops.SquaredError(),
    "squared_error_bound": lambda d, rng: fc.ops.SquaredError(d),
    "softmax_xent": lambda d, rng: fc.ops.SoftmaxCrossEntropy(),
    "fixed_linear": lambda d, rng: fc.ops.FixedLinear(rng.normal(size=(3, d))),
    "diag_linear": lambda d, rng: fc.ops.DiagLinear(rng.normal(size=(2, d))),
    "diag_linear_square": lambda d, rng: fc.ops.DiagLinear(rng.normal(size=(d, d))),
    "inner_square": lambda d, rng: fc.ops.InnerSquare(),
}
FIXED_WIDTH = {"logistic_loss": 1}

# (batch, width): batch size 1 and width 1 included
SHAPES = [(1, 1), (1, 4), (5, 1), (3, 3), (6, 5)]
SEEDS = [0, 1, 2]

CASES = [
    pytest.param(name, B, d, seed, id=f"{name}-B{B}-d{d}-s{seed}")
    for name in OPS
    for (B, d) in SHAPES
    if FIXED_WIDTH.get(name, d) == d
    for seed in SEEDS
]
# one case per operator, for the tests that do not need the full grid
ONE_CASE = [pytest.param(name, 3, FIXED_WIDTH.get(name, 3), 7, id=name) for name in OPS]


def make_case(name, B, d, seed):
    """(op as constructed, op bound to d, z, w, labels, g) with z away from ReLU's kink at 0."""
    rng = np.random.default_rng(seed)
    op = OPS[name](d, rng)
    bop = op.bound(d)
    # |z| in [0.2, 1.5]: the FD steps (1e-6) never cross ReLU's kink at 0
    z = rng.choice([-1.0, 1.0], size=(B, d)) * rng.uniform(0.2, 1.5, size=(B, d))
    w = 0.7 * rng.normal(size=bop.n_weights)
    if bop.labels == "sign":
        lab = rng.choice([-1.0, 1.0], size=(B, 1))
    elif bop.labels == "class":
        lab = rng.integers(0, d, size=(B, 1)).astype(float)
    elif bop.labels == "target":
        lab = rng.normal(size=(B, d))
    else:
        lab = None
    if lab is not None:
        # an extra column the operator must not read (label rows may be wider than needed)
        lab = np.hstack([lab, np.full((B, 1), 7.0)])
    g = rng.normal(size=(B, bop.d_out))
    return op, bop, z, w, lab, g


def scale_of(*arrays):
    """The largest magnitude among the arrays (at least 1): the scale of absolute tolerances."""
    return max([1.0] + [float(np.max(np.abs(a))) for a in arrays if np.size(a)])


def naive_forward(op, z, w, lab):
    """A third, deliberately plain implementation (Python loops and the math module)."""
    B, din = z.shape
    rows = []
    for s in range(B):
        zs = [float(v) for v in z[s]]
        k = op.kind
        if k == "identity":
            o = zs
        elif k == "softplus":
            o = [math.log(1.0 + math.exp(x)) for x in zs]
        elif k == "sigmoid":
            o = [1.0 / (1.0 + math.exp(-x)) for x in zs]
        elif k == "tanh":
            o = [math.tanh(x) for x in zs]
        elif k == "relu":
            o = [x if x > 0 else 0.0 for x in zs]
        elif k == "margin":
            o = [-lab[s, 0] * math.fsum(zs[j] * w[j] for j in range(din))]
        elif k == "linear":
            dout = op.d_out
            o = [math.fsum(w[i * din + j] * zs[j] for j in range(din))
                 + (w[dout * din + i] if op.bias else 0.0) for i in range(dout)]
        elif k == "fixed_linear":
            o = [math.fsum(op.A[i, j] * zs[j] for j in range(din)) for i in range(op.d_out)]
        elif k == "diag_linear":
            o = [math.fsum(op.A[i, j] * zs[j] * w[j] for j in range(din))
                 for i in range(op.d_out)]
        elif k == "inner_square":
            o = [math.fsum(zs[j] * w[j] for j in range(din)) ** 2
                 + 0.5 * math.fsum(x * x for x in zs)]
        elif k == "logistic_loss":
            o = [math.log(1.0 + math.exp(-lab[s, 0] * zs[0]))]
        elif k == "squared_error":
            o = [0.5 * math.fsum((zs[j] - lab[s, j]) ** 2 for j in range(din))]
        elif k == "softmax_xent":
            o = [math.log(math.fsum(math.exp(x) for x in zs)) - zs[int(lab[s, 0])]]
        else:
            raise AssertionError(k)
        rows.append(o)
    return np.array(rows, dtype=float)


def phi(op, z, w, lab, g):
    """<g, f(z, w)>: its gradients in z and w are the two VJPs."""
    return float(np.sum(g * op.forward(z, w, labels=lab)))


# FD step and tolerance. Central differences err by h^2/6 |phi'''| (~1e-12 here) plus rounding
# eps |phi| / h (~1e-10 for |phi| ~ 1); a tolerance of 1e-6 times the gradient's scale leaves a
# margin of >= 1e3 yet fails on any wrong or missing derivative term (an O(0.1 .. 1) error).
H = 1e-6
FD_RTOL = 1e-6


# --------------------------------------------------------------------------------------------
# 1. VJPs against finite differences of the forward pass, and the adjoint identity

@pytest.mark.parametrize("name,B,d,seed", CASES)
def test_vjp_input_matches_central_differences(name, B, d, seed):
    op, bop, z, w, lab, g = make_case(name, B, d, seed)
    g_in, _ = op.vjp(z, g, w, labels=lab)
    fd = np.empty_like(z)
    for idx in np.ndindex(*z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += H
        zm[idx] -= H
        fd[idx] = (phi(op, zp, w, lab, g) - phi(op, zm, w, lab, g)) / (2 * H)
    assert g_in.shape == (B, bop.d_in)
    np.testing.assert_allclose(g_in, fd, rtol=FD_RTOL, atol=FD_RTOL * scale_of(g_in))


@pytest.mark.parametrize("name,B,d,seed", CASES)
def test_vjp_weights_match_central_differences(name, B, d, seed):
    op, bop, z, w, lab, g = make_case(name, B, d, seed)
    _, g_w = op.vjp(z, g, w, labels=lab)
    assert g_w.shape == (bop.n_weights,)
    fd = np.empty_like(w)
    for k in range(w.size):
        wp, wm = w.copy(), w.copy()
        wp[k] += H
        wm[k] -= H
        fd[k] = (phi(op, z, wp, lab, g) - phi(op, z, wm, lab, g)) / (2 * H)
    np.testing.assert_allclose(g_w, fd, rtol=FD_RTOL, atol=FD_RTOL * scale_of(g_w))


@pytest.mark.parametrize("name,B,d,seed", CASES)
def test_adjoint_identity(name, B, d, seed):
    """<J1 v, g> = <v, J1^T g> per sample and <J2 u, g> = <u, J2^T g> over the batch, with J v
    the directional derivative of the forward pass (central differences along v)."""
    op, bop, z, w, lab, g = make_case(name, B, d, seed)
    rng = np.random.default_rng(1000 + seed)
    v = rng.normal(size=z.shape)
    u = rng.normal(size=w.shape)
    g_in, g_w = op.vjp(z, g, w, labels=lab)

    Jv = (op.forward(z + H * v, w, labels=lab) - op.forward(z - H * v, w, labels=lab)) / (2 * H)
    lhs = np.sum(Jv * g, axis=1)          # per sample: J1 is block diagonal over the batch
    rhs = np.sum(v * g_in, axis=1)
    # tolerance: see FD_RTOL; the scale is that of the products summed
    np.testing.assert_allclose(lhs, rhs, rtol=FD_RTOL,
                               atol=FD_RTOL * scale_of(v * g_in, Jv * g))

    Ju = (op.forward(z, w + H * u, labels=lab) - op.forward(z, w - H * u, labels=lab)) / (2 * H)
    lhs_w = float(np.sum(Ju * g))
    rhs_w = float(u @ g_w)
    np.testing.assert_allclose(lhs_w, rhs_w, rtol=FD_RTOL,
                               atol=FD_RTOL * scale_of(u * g_w, Ju * g))


# --------------------------------------------------------------------------------------------
# 2. Kernels against the NumPy reference (and against a plain-Python forward)

# The kernels and NumPy sum in different orders (loops vs BLAS): they differ by a few ulps of the
# largest term, hence rtol 1e-12 and an absolute floor of 1e-13 times the array's scale.
REF_RTOL = 1e-12


@pytest.mark.parametrize("name,B,d,seed", CASES)
def test_kernels_match_reference(name, B, d, seed):
    op, bop, z, w, lab, g = make_case(name, B, d, seed)
    out = op.forward(z, w, labels=lab)
    g_in, g_w = op.vjp(z, g, w, labels=lab)
    out_ref = ref.forward(bop, z, w, lab)
    gin_ref = ref.vjp_input(bop, z, g, w, lab)
    gw_ref = ref.vjp_weights(bop, z, g, w, lab)
    assert out.shape == out_ref.shape == (B, bop.d_out)
    assert g_in.shape == gin_ref.shape == (B, bop.d_in)
    assert g_w.shape == gw_ref.shape == (bop.n_weights,)
    assert out.dtype == g_in.dtype == g_w.dtype == np.float64
    for a, b in ((out, out_ref), (g_in, gin_ref), (g_w, gw_ref)):
        np.testing.assert_allclose(a, b, rtol=REF_RTOL, atol=0.1 * REF_RTOL * scale_of(b))


@pytest.mark.parametrize("name,B,d,seed", CASES)
def test_forward_matches_plain_python(name, B, d, seed):
    op, bop, z, w, lab, g = make_case(name, B, d, seed)
    expected = naive_forward(bop, z, w, lab)
    # |z| <= 1.5 keeps log(1 + e^x) and friends accurate to a few ulps; see REF_RTOL
    np.testing.assert_allclose(op.forward(z, w, labels=lab), expected, rtol=REF_RTOL,
                               atol=0.1 * REF_RTOL * scale_of(expected))


def test_forward_known_values():
    """Hand-computed values: a check that does not share code with anything above."""
    z = np.array([[1.0, 2.0, 3.0]])
    assert fc.ops.Margin(3).forward(z, [0.5, 0.0, -1.0], labels=[[1.0]])[0, 0] == 2.5
    assert fc.ops.Margin(3).forward(z, [0.5, 0.0, -1.0], labels=[[-1.0]])[0, 0] == -2.5
    # Linear(3, 2): W = [[1, 2, 3], [4, 5, 6]] row-major, then b = (10, 20)
    lin = fc.ops.Linear(3, 2)
    w = np.array([1, 2, 3, 4, 5, 6, 10, 20], dtype=float)
    np.testing.assert_array_equal(lin.forward(z, w), [[24.0, 52.0]])
    g_in, g_w = lin.vjp(z, [[1.0, -1.0]], w)
    np.testing.assert_array_equal(g_in, [[-3.0, -3.0, -3.0]])
    np.testing.assert_array_equal(g_w, [1, 2, 3, -1, -2, -3, 1, -1])
    lin0 = fc.ops.Linear(3, 2, bias=False)
    assert lin0.n_weights == 6
    np.testing.assert_array_equal(lin0.forward(z, w[:6]), [[14.0, 32.0]])
    # SquaredError: 0.5 ||z - t||^2 with t = (1, 0, 1) -> 0.5 (0 + 4 + 4)
    assert fc.ops.SquaredError().forward(z, labels=[[1.0, 0.0, 1.0]])[0, 0] == 4.0
    # InnerSquare: <z, w>^2 + ||z||^2 / 2 = 2^2 + 7
    assert fc.ops.InnerSquare().forward(z, [1.0, -1.0, 1.0])[0, 0] == 11.0
    # FixedLinear / DiagLinear
    A = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]])
    np.testing.assert_array_equal(fc.ops.FixedLinear(A).forward(z), [[-2.0, 4.0]])
    np.testing.assert_array_equal(fc.ops.DiagLinear(A).forward(z, [2.0, 1.0, 1.0]), [[-1.0, 6.0]])
    # SoftmaxCrossEntropy on equal logits: ln K
    np.testing.assert_allclose(
        fc.ops.SoftmaxCrossEntropy().forward(np.zeros((1, 4)), labels=[[2]]), [[math.log(4)]],
        rtol=1e-15)
    # LogisticLoss at 0: ln 2; Softplus(0) = ln 2; Sigmoid(0) = 1/2; ReLU
    np.testing.assert_allclose(fc.ops.LogisticLoss().forward([[0.0]], labels=[[-1]]),
                               [[math.log(2)]], rtol=1e-15)
    assert fc.ops.Sigmoid().forward([[0.0]])[0, 0] == 0.5
    np.testing.assert_array_equal(fc.ops.ReLU().forward([[-2.0, 0.0, 3.0]]), [[0.0, 0.0, 3.0]])
    # ReLU's derivative at exactly 0 is 0 (documented)
    np.testing.assert_array_equal(fc.ops.ReLU().vjp([[-2.0, 0.0, 3.0]], [[5.0, 5.0, 5.0]])[0],
                                  [[0.0, 0.0, 5.0]])


@pytest.mark.parametrize("name,B,d,seed", ONE_CASE)
def test_vjp_is_linear_in_g_and_weight_gradient_sums_over_batch(name, B, d, seed):
    op, bop, z, w, lab, g = make_case(name, B, d, seed)
    g2 = np.random.default_rng(3).normal(size=g.shape)
    a_in, a_w = op.vjp(z, g, w, labels=lab)
    b_in, b_w = op.vjp(z, g2, w, labels=lab)
    c_in, c_w = op.vjp(z, 2.0 * g - 3.0 * g2, w, labels=lab)
    np.testing.assert_allclose(c_in, 2 * a_in - 3 * b_in, rtol=1e-12,
                               atol=1e-13 * scale_of(a_in, b_in))
    np.testing.assert_allclose(c_w, 2 * a_w - 3 * b_w, rtol=1e-12,
                               atol=1e-13 * scale_of(a_w, b_w))
    # per-sample pieces: g_in row s depends on sample s only; g_w is the sum over the batch
    per_w = np.zeros_like(a_w)
    for s in range(B):
        ls = None if lab is None else lab[s:s + 1]
        s_in, s_w = op.vjp(z[s:s + 1], g[s:s + 1], w, labels=ls)
        np.testing.assert_allclose(s_in[0], a_in[s], rtol=1e-14, atol=1e-15 * scale_of(a_in))
        per_w += s_w
    np.testing.assert_allclose(per_w, a_w, rtol=1e-12, atol=1e-13 * scale_of(a_w))


@pytest.mark.parametrize("name,B,d,seed", ONE_CASE)
def test_empty_batch(name, B, d, seed):
    op, bop, z, w, lab, g = make_case(name, B, d, seed)
    z0 = z[:0]
    lab0 = None if lab is None else lab[:0]
    out = op.forward(z0, w, labels=lab0)
    g_in, g_w = op.vjp(z0, g[:0], w, labels=lab0)
    assert out.shape == (0, bop.d_out)
    assert g_in.shape == (0, bop.d_in)
    np.testing.assert_array_equal(g_w, np.zeros(bop.n_weights))


# --------------------------------------------------------------------------------------------
# 3. Extreme inputs, read-only and converted inputs

TINY = 1e-300  # "0 or tiny": exp(-800) ~ 1e-348 underflows to 0 in float64


def _both(op, z, g, labels=None):
    """Forward and input VJP from the kernels and from the reference (with floating point
    overflow / invalid / divide-by-zero turned into errors in the NumPy twin)."""
    bop = op.bound(np.asarray(z).shape[1])
    out_k = op.forward(z, labels=labels)
    gin_k, _ = op.vjp(z, g, labels=labels)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        out_r = ref.forward(bop, np.asarray(z, float), None, labels)
        gin_r = ref.vjp_input(bop, np.asarray(z, float), np.asarray(g, float), None, labels)
    return [(out_k, gin_k), (out_r, gin_r)]


def _check_values(actual, expected, rtol=1e-15):
    """``expected`` entries of None mean 'zero or tiny, non-negative'."""
    actual = np.ravel(actual)
    assert np.all(np.isfinite(actual)), actual
    for a, e in zip(actual, expected):
        if e is None:
            assert 0.0 <= a <= TINY, a
        else:
            assert a == pytest.approx(e, rel=rtol, abs=0.0), (a, e)


def test_softplus_extreme_inputs():
    z = np.array([[800.0, -800.0, 0.0, 40.0, -40.0, 1e-8]])
    for out, gin in _both(fc.ops.Softplus(), z, np.ones_like(z)):
        # softplus(-40) = log1p(e^-40) ~ e^-40: the naive log(1 + e^-40) would give 0
        _check_values(out, [800.0, None, math.log(2), 40.0, math.exp(-40.0),
                            math.log(2) + 0.5e-8])
        # d/dz softplus = sigmoid
        _check_values(gin, [1.0, None, 0.5, 1.0, math.exp(-40.0) / (1 + math.exp(-40.0)),
                            0.5 + 0.25e-8])


def test_sigmoid_extreme_inputs():
    z = np.array([[800.0, -800.0, 0.0, -40.0, 2.0]])
    s2 = 1.0 / (1.0 + math.exp(-2.0))
    for out, gin in _both(fc.ops.Sigmoid(), z, np.ones_like(z)):
        _check_values(out, [1.0, None, 0.5, math.exp(-40.0) / (1 + math.exp(-40.0)), s2])
        # d/dz = s (1 - s): 0 at +-800 (true value e^-800 underflows)
        _check_values(gin, [None, None, 0.25, math.exp(-40.0) / (1 + math.exp(-40.0)) ** 2,
                            s2 * (1 - s2)], rtol=1e-14)


def test_logistic_loss_extreme_margins():
    z = np.array([[800.0], [800.0], [-800.0], [-800.0], [0.0], [40.0]])
    y = np.array([[1.0], [-1.0], [1.0], [-1.0], [1.0], [-1.0]])
    e40 = math.exp(-40.0)
    for out, gin in _both(fc.ops.LogisticLoss(), z, np.ones_like(z), labels=y):
        # ln(1 + exp(-y z))
        _check_values(out, [None, 800.0, 800.0, None, math.log(2), 40.0 + math.log1p(e40)])
        # d/dz = -y sigmoid(-y z)
        gin = gin.ravel()
        assert np.all(np.isfinite(gin))
        assert -TINY <= gin[0] <= 0.0 and 0.0 <= gin[3] <= TINY
        np.testing.assert_allclose(gin[[1, 2, 4, 5]], [1.0, -1.0, -0.5, 1.0 / (1.0 + e40)],
                                   rtol=1e-15, atol=0)


def test_tanh_and_softmax_extreme_inputs():
    z = np.array([[800.0, -800.0, 0.0]])
    for out, gin in _both(fc.ops.Tanh(), z, np.ones_like(z)):
        _check_values(out, [1.0, -1.0, 0.0])
        _check_values(gin, [0.0, 0.0, 1.0])
    zz = np.repeat(z, 3, axis=0)
    lab = np.array([[0.0], [1.0], [2.0]])
    for out, gin in _both(fc.ops.SoftmaxCrossEntropy(), zz, np.ones((3, 1)), labels=lab):
        _check_values(out, [0.0, 1600.0, 800.0])
        # softmax(z) - e_c with softmax(z) = (1, 0, 0) up to e^-800
        np.testing.assert_allclose(gin, [[0, 0, 0], [1, -1, 0], [1, 0, -1]], rtol=0,
                                   atol=TINY)


@pytest.mark.parametrize("name,B,d,seed", ONE_CASE)
def test_read_only_inputs(name, B, d, seed):
    op, bop, z, w, lab, g = make_case(name, B, d, seed)
    expected_out = op.forward(z, w, labels=lab)
    expected_vjp = op.vjp(z, g, w, labels=lab)
    arrays = [z.copy(), w.copy(), None if lab is None else lab.copy(), g.copy()]
    for a in arrays:
        if a is not None:
            a.flags.writeable = False
    zr, wr, lr, gr = arrays
    np.testing.assert_array_equal(op.forward(zr, wr, labels=lr), expected_out)
    got = op.vjp(zr, gr, wr, labels=lr)
    np.testing.assert_array_equal(got[0], expected_vjp[0])
    np.testing.assert_array_equal(got[1], expected_vjp[1])
    # the NumPy twins accept them too
    np.testing.assert_allclose(ref.forward(bop, zr, wr, lr), expected_out, rtol=REF_RTOL,
                               atol=0.1 * REF_RTOL * scale_of(expected_out))
    np.testing.assert_allclose(ref.vjp_input(bop, zr, gr, wr, lr), expected_vjp[0],
                               rtol=REF_RTOL, atol=0.1 * REF_RTOL * scale_of(expected_vjp[0]))
    np.testing.assert_allclose(ref.vjp_weights(bop, zr, gr, wr, lr), expected_vjp[1],
                               rtol=REF_RTOL, atol=0.1 * REF_RTOL * scale_of(expected_vjp[1]))


@pytest.mark.parametrize("name,B,d,seed", ONE_CASE)
def test_inputs_are_not_modified(name, B, d, seed):
    op, bop, z, w, lab, g = make_case(name, B, d, seed)
    copies = [a.copy() for a in (z, w, g)] + [None if lab is None else lab.copy()]
    op.forward(z, w, labels=lab)
    op.vjp(z, g, w, labels=lab)
    for a, c in zip((z, w, g, lab), copies):
        if a is not None:
            np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("name,B,d,seed", ONE_CASE)
def test_non_contiguous_inputs_are_converted(name, B, d, seed):
    op, bop, z, w, lab, g = make_case(name, B, d, seed)
    expected_out = op.forward(z, w, labels=lab)
    expected_in, expected_w = op.vjp(z, g, w, labels=lab)

    big = np.zeros((B, 2 * d))
    big[:, ::2] = z
    z_strided = big[:, ::2]                     # every other column of a wider array
    z_fortran = np.asfortranarray(z)
    w_big = np.zeros(2 * w.size)
    w_big[::2] = w
    w_strided = w_big[::2]
    lab_f = None if lab is None else np.asfortranarray(lab)
    g_f = np.asfortranarray(g)
    assert not z_strided.flags.c_contiguous and not w_strided.flags.c_contiguous or w.size < 2
    for zz in (z_strided, z_fortran):
        np.testing.assert_array_equal(op.forward(zz, w_strided, labels=lab_f), expected_out)
        g_in, g_w = op.vjp(zz, g_f, w_strided, labels=lab_f)
        np.testing.assert_array_equal(g_in, expected_in)
        np.testing.assert_array_equal(g_w, expected_w)


def test_int_float32_and_list_inputs_are_converted():
    z_int = np.array([[1, -2, 3], [0, 4, -1]])
    w32 = np.array([0.5, -0.25, 2.0], dtype=np.float32)   # exactly representable
    lab_int = np.array([[1], [-1]])
    op = fc.ops.Margin()
    expected = op.forward(z_int.astype(float), w32.astype(float), labels=lab_int.astype(float))
    np.testing.assert_array_equal(expected, [[-7.0], [-3.0]])   # -y <z, w>
    np.testing.assert_array_equal(op.forward(z_int, w32, labels=lab_int), expected)
    np.testing.assert_array_equal(
        op.forward(z_int.tolist(), w32.tolist(), labels=lab_int.tolist()), expected)
    z32 = np.array([[0.1, -0.3, 2.5]], dtype=np.float32)
    np.testing.assert_array_equal(fc.ops.Tanh().forward(z32),
                                  fc.ops.Tanh().forward(z32.astype(np.float64)))
    assert fc.ops.Tanh().forward(z32).dtype == np.float64
    # integer class labels
    out = fc.ops.SoftmaxCrossEntropy().forward(np.zeros((2, 3)), labels=np.array([[0], [2]]))
    np.testing.assert_allclose(out, [[math.log(3)]] * 2, rtol=1e-15)


# --------------------------------------------------------------------------------------------
# 4. Shapes, binding and argument errors

def test_unbound_op_takes_width_from_z_and_bound_copies():
    op = fc.ops.Margin()
    assert op.d_in is None and op.n_weights is None and op.d_out == 1
    b = op.bound(4)
    assert b.d_in == 4 and b.n_weights == 4 and op.d_in is None   # a copy; op is unchanged
    assert fc.ops.Tanh().d_out is None and fc.ops.Tanh().bound(5).d_out == 5
    assert fc.ops.Tanh(3).bound(3) == fc.ops.Tanh(3)
    assert fc.ops.Linear(3, 4).n_weights == 16 and fc.ops.Linear(3, 4, bias=False).n_weights == 12
    assert fc.ops.DiagLinear(np.ones((2, 5))).n_weights == 5
    assert fc.ops.FixedLinear(np.ones((2, 5))).n_weights == 0
    assert fc.ops.InnerSquare().bound(3).n_weights == 3
    assert fc.ops.LogisticLoss().d_in == 1
    assert fc.ops.SoftmaxCrossEntropy(4).d_out == 1
    out = fc.ops.InnerSquare().forward(np.ones((2, 6)), np.zeros(6))
    np.testing.assert_array_equal(out, [[3.0], [3.0]])


@pytest.mark.parametrize("make,match", [
    (lambda: fc.ops.Linear(0, 3), r"d_in: expected a positive integer, given 0"),
    (lambda: fc.ops.Linear(3, 0), r"d_out: expected a positive integer, given 0"),
    (lambda: fc.ops.Linear(3, None), r"d_out: expected a positive integer, given None"),
    (lambda: fc.ops.Linear(2.5, 3), r"d_in: expected a positive integer, given 2\.5"),
    (lambda: fc.ops.Linear(3, 4, bias="yes"), r"bias: expected True or False, given 'yes'"),
    (lambda: fc.ops.Margin(0), r"Margin.*d_in: expected a positive integer, given 0"),
    (lambda: fc.ops.Tanh(-2), r"Tanh.*d_in: expected a positive integer, given -2"),
    (lambda: fc.ops.Identity(True), r"d_in: expected a positive integer, given True"),
    (lambda: fc.ops.FixedLinear(np.zeros((0, 3))), r"FixedLinear.*d_out: .*positive.*given 0"),
    (lambda: fc.ops.DiagLinear(np.ones(3)),
     r"A: expected a 2-d array of real numbers, given shape \(3,\)"),
    (lambda: fc.ops.FixedLinear([["a"]]), r"A: expected a 2-d array of real numbers, given dtype <U1"),
])
def test_constructor_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def _lin():
    return fc.ops.Linear(3, 2)


@pytest.mark.parametrize("call,match", [
    # wrong number of weights
    (lambda: _lin().forward(np.ones((2, 3)), np.ones(7)), r"Linear\(3, 2.*w: expected 8 weights, given 7"),
    (lambda: _lin().forward(np.ones((2, 3))), r"w: expected 8 weights, given 0"),
    (lambda: fc.ops.Tanh().forward(np.ones((2, 3)), np.ones(1)), r"w: expected 0 weights, given 1"),
    (lambda: fc.ops.Margin().vjp(np.ones((2, 3)), np.ones((2, 1)), np.ones(4), labels=[[1], [1]]),
     r"w: expected 3 weights, given 4"),
    (lambda: _lin().forward(np.ones((2, 3)), np.ones((2, 4))), r"w: expected a 1-d array"),
    # wrong input width / rank
    (lambda: _lin().forward(np.ones((2, 4)), np.ones(8)), r"z: expected 3 columns, given 4"),
    (lambda: fc.ops.Tanh(3).forward(np.ones((2, 2))), r"z: expected 3 columns, given 2"),
    (lambda: fc.ops.Tanh().forward(np.ones(3)),
     r"z: expected a 2-d array of real numbers, given shape \(3,\)"),
    (lambda: fc.ops.Tanh().forward(np.ones((2, 2)) * 1j),
     r"z: expected a 2-d array of real numbers, given dtype complex128"),
    # wrong cotangent
    (lambda: _lin().vjp(np.ones((2, 3)), np.ones((2, 3)), np.ones(8)),
     r"g: expected shape \(2, 2\), given \(2, 3\)"),
    # labels: missing, wrong rows, too few columns, wrong values
    (lambda: fc.ops.Margin().forward(np.ones((2, 3)), np.ones(3)), r"labels: .*given None"),
    (lambda: fc.ops.Margin().forward(np.ones((2, 3)), np.ones(3), labels=np.ones((3, 1))),
     r"labels: expected shape \(2, >= 1\), given \(3, 1\)"),
    (lambda: fc.ops.SquaredError(3).forward(np.ones((2, 3)), labels=np.ones((2, 2))),
     r"labels: expected shape \(2, >= 3\), given \(2, 2\)"),
    (lambda: fc.ops.Margin().forward(np.ones((2, 3)), np.ones(3), labels=[[0.0], [1.0]]),
     r"Margin.*labels: expected \+1 or -1, given .*0"),
    (lambda: fc.ops.LogisticLoss().vjp([[1.0]], [[1.0]], labels=[[2.0]]),
     r"LogisticLoss.*labels: expected \+1 or -1, given .*2"),
    (lambda: fc.ops.SoftmaxCrossEntropy().forward(np.ones((2, 3)), labels=[[1], [3]]),
     r"SoftmaxCrossEntropy.*labels: expected integer classes in \[0, 3\), given .*3"),
    (lambda: fc.ops.SoftmaxCrossEntropy().forward(np.ones((1, 3)), labels=[[-1]]),
     r"classes in \[0, 3\), given .*-1"),
    (lambda: fc.ops.SoftmaxCrossEntropy().forward(np.ones((1, 3)), labels=[[0.5]]),
     r"classes in \[0, 3\), given .*0\.5"),
    # binding to a different width
    (lambda: fc.ops.Margin(3).bound(4), r"d_in: expected 3 \(as constructed\), given 4"),
])
def test_call_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
