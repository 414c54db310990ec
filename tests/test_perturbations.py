"""The perturbation library: distributions, low precision, compressors, faults, timing and
magnitude, as the engine injects them and as their NumPy twins compute them."""
import numpy as np
import pytest

import fastcascade as fc
from fastcascade._kernels import _noise
from fastcascade.perturbation import perturbation_tables

N, T, Mg = fc.noise, fc.timing, fc.magnitude


# ---------------------------------------------------------------------------------------------
# Reading back what the engine injected

def injected(noise, pass_="forward", granularity="element", n_samples=400, width=100, seed=0):
    """The perturbations the engine added in one step, one per (sample, coordinate).

    Cascade: x_s = e_s (one-hot rows) -> Linear(M, d) with W = 0, b = 0, so y_1 = 0 and the
    perturbation is all that flows; -> Identity -> SquaredError with target 0. One full-batch
    SGD step of size 1 leaves W[o, s] = -(delta_{s,o}) / M: the perturbation of sample s,
    coordinate o. A forward perturbation sits on f_1's output; a backward one on the message
    f_2 sends to f_1 (v_1 = v_2 + eps = eps).
    """
    M, d = n_samples, width
    ops = [fc.ops.Linear(M, d, bias=False), fc.ops.Identity(), fc.ops.SquaredError()]
    problem = fc.Problem(fc.Cascade(ops), (np.eye(M), np.zeros((M, d))))
    op = 1 if pass_ == "forward" else 2
    pert = fc.Perturbation(op=op, pass_=pass_, noise=noise, granularity=granularity)
    res = fc.run(problem, fc.SGD(1.0), n_iter=1, perturbations=[pert], seeds=[seed],
                 max_norm=np.inf)
    W = res.final_weights[0].reshape(d, M)
    return -M * W.T  # (M samples, d coordinates)


DISTRIBUTIONS = [
    (N.Uniform(-0.5, 1.5), 0.5, 4.0 / 12.0),
    (N.Gaussian(0.3, 2.0), 0.3, 4.0),
    (N.Laplace(-1.0, 0.5), -1.0, 0.5),
    (N.StudentT(5.0, 2.0), 0.0, 4.0 * 5.0 / 3.0),
    (N.Rademacher(0.7), 0.0, 0.49),
    (N.Constant(-0.25), -0.25, 0.0),
]


@pytest.mark.parametrize("pass_", ["forward", "backward"])
@pytest.mark.parametrize("noise,mean,var", DISTRIBUTIONS, ids=lambda x: repr(x)[:12])
def test_injected_mean_and_variance_match_closed_form(noise, mean, var, pass_):
    x = injected(noise, pass_).ravel()  # 40,000 draws
    n = x.size
    assert noise.mean() == pytest.approx(mean) and noise.variance() == pytest.approx(var)
    # the sample mean is within 5 standard errors (sd / sqrt(n)) of the true mean
    assert abs(x.mean() - mean) <= 5.0 * np.sqrt(var / n) + 1e-12
    if var == 0.0:
        np.testing.assert_allclose(x, mean, rtol=1e-12)
        return
    # the sample variance's standard error is sqrt((mu4 - var^2) / n); we allow a generous 8% of
    # var, which covers 5 SE even for the Student t (df = 5, kurtosis 9): SE = var sqrt(8 / n)
    assert x.var() == pytest.approx(var, rel=0.08)


def test_student_t_tail_quantile():
    x = injected(N.StudentT(3.0, 1.0), n_samples=500, width=200).ravel()  # 100,000 draws
    # the 0.99 quantile of t_3 is 4.5407; P(X > q) = 0.01 has a binomial SE of 3.1e-4 here
    tail = np.mean(x > 4.540703)
    assert abs(tail - 0.01) < 5 * np.sqrt(0.01 * 0.99 / x.size)


def test_relative_noise_multiplies():
    # z (1 + eta): through the A.2-style chain the injected perturbation of a zero output is 0
    assert np.all(injected(N.Relative(N.Gaussian(0.0, 1.0))) == 0.0)
    z = np.full((2000, 50), 3.0)
    rel = fc.Perturbation(1, "forward", N.Relative(N.Uniform(-0.1, 0.1)))
    out = rel.apply(z, np.random.default_rng(0))
    eta = out / 3.0 - 1.0
    assert abs(eta.mean()) < 5 * 0.2 / np.sqrt(12 * eta.size)
    assert eta.min() >= -0.1 - 1e-12 and eta.max() <= 0.1 + 1e-12


@pytest.mark.parametrize("granularity", ["sample", "step"])
def test_granularity_shares_draws(granularity):
    x = injected(N.Gaussian(0.0, 1.0), granularity=granularity, n_samples=50, width=20)
    if granularity == "sample":  # one draw per sample, the same on every coordinate
        assert np.all(x == x[:, :1]) and np.unique(x[:, 0]).size == 50
    else:  # one vector per step, the same for every sample
        assert np.all(x == x[:1, :]) and np.unique(x[0]).size == 20


# ---------------------------------------------------------------------------------------------
# Low precision

def kernel_apply(noise, z, seed=0, t=0):
    """Apply ``noise`` with the compiled kernel the engine calls, on a copy of z."""
    pert = fc.Perturbation(op=1, noise=noise)
    pint, preal, times = perturbation_tables([pert], 1)
    out = np.ascontiguousarray(np.array(z, dtype=np.float64, ndmin=2))
    _noise.apply(pint[0], preal[0], np.random.default_rng(seed), out, t, times)
    return out


def float16_cases(n=1_000_000, seed=0):
    rng = np.random.default_rng(seed)
    parts = [
        rng.standard_normal(n // 4) * 10.0 ** rng.integers(-9, 6, n // 4),   # all binades
        rng.uniform(-2.0 ** -14, 2.0 ** -14, n // 4),                          # subnormals
        (rng.integers(-2 ** 11, 2 ** 11, n // 4) + 0.5) * 2.0 ** rng.integers(-30, 6, n // 4),
        np.array([65504.0, 65519.99, 65520.0, -65520.0, 1e6, 2.0 ** -25, 2.0 ** -25 * 1.0001,
                  3 * 2.0 ** -25, 2.0 ** -24, 0.0, -0.0, np.inf, -np.inf, np.nan]),
    ]
    return np.concatenate(parts)


def test_float16_nearest_equals_numpy_astype():
    x = float16_cases()
    with np.errstate(over="ignore"):
        expected = x.astype(np.float16).astype(np.float64)
        got = kernel_apply(N.LowPrecision("float16"), x[None, :])[0]
        twin = N.LowPrecision("float16").transform(x[None, :], None)[0]
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(twin, expected)
    assert np.signbit(got[np.nonzero(x == -0.0)[0][-1]])  # -0.0 keeps its sign


@pytest.mark.parametrize("x,expected", [
    (1.0 + 2.0 ** -8, 1.0),                        # tie -> even mantissa
    (1.0 + 3 * 2.0 ** -8, 1.0 + 2.0 ** -6),        # tie -> even (up)
    (1.0 + 2.0 ** -8 + 2.0 ** -30, 1.0 + 2.0 ** -7),
    (3.3895313892515355e38, 3.3895313892515355e38),  # largest finite
    (3.3895313892515355e38 + 2.0 ** 119, np.inf),    # at the half-way point: ties to even -> inf
    (-3.4e38, -np.inf),
    (2.0 ** -133, 2.0 ** -133),                    # smallest subnormal
    (2.0 ** -134, 0.0),                            # half of it: tie to even 0
    (1.5 * 2.0 ** -134, 2.0 ** -133),
    (np.nan, np.nan),
])
def test_bfloat16_edge_cases(x, expected):
    got = kernel_apply(N.LowPrecision("bfloat16"), [[x]])[0, 0]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("fmt,x,expected", [
    ("e4m3", 448.0, 448.0),                 # largest finite
    ("e4m3", 464.0, 448.0),                 # tie between 448 (even) and 480 -> 448
    ("e4m3", 465.0, np.nan),                # rounds to 480 > 448: no inf in E4M3FN -> NaN
    ("e4m3", np.inf, np.nan),
    ("e4m3", 2.0 ** -9, 2.0 ** -9),         # smallest subnormal
    ("e4m3", 2.0 ** -10, 0.0),              # tie -> 0
    ("e4m3", 1.0625, 1.0),                  # 1 + 2^-4: tie -> even
    ("e4m3", 1.1875, 1.25),                 # 1 + 3 2^-4: tie -> even (up)
    ("e5m2", 57344.0, 57344.0),
    ("e5m2", 61440.0, np.inf),              # tie between 57344 (odd) and 65536 (even) -> inf
    ("e5m2", 2.0 ** -16, 2.0 ** -16),       # smallest subnormal
    ("e5m2", 1.125, 1.0),                   # 1 + 2^-3: tie -> even
    ("e5m2", -1.375, -1.5),
])
def test_float8_edge_cases(fmt, x, expected):
    got = kernel_apply(N.LowPrecision(fmt), [[x]])[0, 0]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("fmt,dtype", [("bfloat16", "bfloat16"), ("e4m3", "float8_e4m3fn"),
                                       ("e5m2", "float8_e5m2")])
def test_formats_agree_with_ml_dtypes(fmt, dtype):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(1)
    x = rng.standard_normal(200_000) * 2.0 ** rng.integers(-20, 20, 200_000)
    x = x[np.abs(x) < float(ml_dtypes.finfo(getattr(ml_dtypes, dtype)).max)]  # in range
    # ml_dtypes converts float64 through float32 (a double rounding that can miss a
    # correctly rounded result next to a tie): compare on float32-representable inputs
    x = x.astype(np.float32).astype(np.float64)
    expected = x.astype(getattr(ml_dtypes, dtype)).astype(np.float64)
    np.testing.assert_array_equal(kernel_apply(N.LowPrecision(fmt), x[None, :])[0], expected)


@pytest.mark.parametrize("noise", [N.LowPrecision("float16", "stochastic"),
                                   N.LowPrecision("e4m3", "stochastic"),
                                   N.FixedPoint(0.25, "stochastic")], ids=repr)
def test_stochastic_rounding_is_unbiased_and_returns_neighbours(noise):
    x = np.array([0.1, 1.0 + 1e-3, -3.3, 0.01, 100.7])  # none too close to a grid point
    n = 200_000
    z = np.tile(x, (n // x.size, 1))
    out = kernel_apply(noise, z, seed=3)
    nearest = type(noise)(*([noise.format] if hasattr(noise, "format") else [noise.step]))
    for j, xj in enumerate(x):
        col = out[:, j]
        values = np.unique(col)
        assert values.size <= 2
        lo, hi = values.min(), values.max()
        assert lo <= xj <= hi
        # only the two representable neighbours: both round to themselves to nearest
        np.testing.assert_array_equal(kernel_apply(nearest, values[None, :])[0], values)
        # unbiased: mean within 4 standard errors (Bernoulli spread (hi - lo) / 2 at most)
        se = (hi - lo) / 2 / np.sqrt(col.size)
        assert abs(col.mean() - xj) <= 4 * se + 1e-300


def test_fixed_point_nearest():
    z = np.array([[0.125, 0.375, -0.374, 1.0, 2.63]])
    np.testing.assert_array_equal(kernel_apply(N.FixedPoint(0.25), z),
                                  [[0.0, 0.5, -0.25, 1.0, 2.75]])


# ---------------------------------------------------------------------------------------------
# Compressors and faults

def test_topk_hand_cases():
    z = np.array([[0.5, -2.0, 1.0, 2.0], [3.0, 0.0, -4.0, 1.0]])
    np.testing.assert_array_equal(kernel_apply(N.TopK(1), z), [[0, -2.0, 0, 0], [0, 0, -4.0, 0]])
    np.testing.assert_array_equal(kernel_apply(N.TopK(2), z),
                                  [[0, -2.0, 0, 2.0], [3.0, 0, -4.0, 0]])
    np.testing.assert_array_equal(kernel_apply(N.TopK(9), z), z)
    np.testing.assert_array_equal(N.TopK(2).transform(z, None), kernel_apply(N.TopK(2), z))


def test_randk_hand_cases_and_unbiasedness():
    z = np.arange(1.0, 7.0)[None, :]
    out = kernel_apply(N.RandK(2, unbiased=False), z, seed=5)[0]
    kept = out != 0
    assert kept.sum() == 2 and np.array_equal(out[kept], z[0, kept])
    out = kernel_apply(N.RandK(2), z, seed=5)[0]
    np.testing.assert_allclose(out[out != 0], 3.0 * z[0, out != 0], rtol=0)  # d / k = 3
    np.testing.assert_array_equal(kernel_apply(N.RandK(6, unbiased=True), z), z)
    # unbiased: the mean over many rows equals the input (4 standard errors per coordinate)
    rows = np.tile(z, (60_000, 1))
    many = kernel_apply(N.RandK(2), rows, seed=7)
    se = many.std(axis=0) / np.sqrt(rows.shape[0])
    assert np.all(np.abs(many.mean(axis=0) - z[0]) <= 4 * se)
    np.testing.assert_array_equal(N.RandK(2).transform(rows[:50], np.random.default_rng(7)),
                                  many[:50])


def test_scaled_sign_hand_case():
    z = np.array([[1.0, -2.0, 0.0, 5.0]])
    np.testing.assert_array_equal(kernel_apply(N.ScaledSign(), z), [[2.0, -2.0, 0.0, 2.0]])


def test_bitflip():
    rng = np.random.default_rng(2)
    z = rng.standard_normal((30, 7))
    np.testing.assert_array_equal(kernel_apply(N.BitFlip(0.0, bits=[0, 52, 63]), z), z)
    for bit in (0, 30, 52, 62, 63):
        expected = (z.view(np.uint64) ^ np.uint64(1 << bit)).view(np.float64)
        np.testing.assert_array_equal(kernel_apply(N.BitFlip(1.0, bits=[bit]), z), expected)
    # with p = 1/2 on the sign bit, about half the signs flip
    flipped = np.mean(np.sign(kernel_apply(N.BitFlip(0.5, bits=[63]), np.ones((1, 100_000)))) < 0)
    assert abs(flipped - 0.5) < 4 * 0.5 / np.sqrt(100_000)


# ---------------------------------------------------------------------------------------------
# Timing and magnitude, counted through the engine

def fired(timing, n_iter, magnitude=None):
    """Per iteration, the squared size of a Constant(1) forward perturbation on a scalar site
    (0 when it did not fire): the engine's recorded forward error."""
    problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]),
                         (np.ones((1, 1)), np.ones(1)))
    pert = fc.Perturbation(1, "forward", N.Constant(1.0), timing=timing, magnitude=magnitude)
    res = fc.run(problem, fc.SGD(1e-9), n_iter, [pert], seeds=[0], record_profile=True)
    return res.forward_error[0, :, 0]


def test_every_fires_exactly_on_schedule():
    err = fired(T.Every(100), 1000)
    assert np.count_nonzero(err) == 10
    assert np.array_equal(np.nonzero(err)[0], np.arange(0, 1000, 100))
    assert np.array_equal(np.nonzero(fired(T.Every(7, offset=3), 50))[0], np.arange(3, 50, 7))


def test_window_at_and_bernoulli():
    assert np.array_equal(np.nonzero(fired(T.Window(5, 9), 20))[0], [5, 6, 7, 8])
    assert np.array_equal(np.nonzero(fired(T.At([0, 3, 17, 500]), 20))[0], [0, 3, 17])
    hits = np.count_nonzero(fired(T.Bernoulli(0.2), 5000))
    assert abs(hits - 1000) < 4 * np.sqrt(5000 * 0.2 * 0.8)


def test_power_decay_magnitude_matches_formula():
    err = fired(T.Always(), 50, Mg.PowerDecay(0.75, scale=2.0))
    t = np.arange(50)
    np.testing.assert_allclose(np.sqrt(err), 2.0 * (t + 1.0) ** -0.75, rtol=1e-12)


def test_horizon_decay_magnitude_matches_formula():
    err = fired(T.Always(), 64, Mg.HorizonDecay(0.5, scale=3.0))
    np.testing.assert_allclose(np.sqrt(err), 3.0 / 8.0, rtol=1e-12)
    with pytest.raises(ValueError, match="n_iter"):
        perturbation_tables([fc.Perturbation(1, noise=N.Constant(1.0),
                                              magnitude=Mg.HorizonDecay(0.5))], 2)


# ---------------------------------------------------------------------------------------------
# Both engines, every kind

KINDS = [N.Uniform(-0.1, 0.1), N.Gaussian(0.01, 0.1), N.Laplace(0.0, 0.1), N.StudentT(3.0, 0.05),
         N.Rademacher(0.05), N.Constant(0.02), N.Relative(N.Gaussian(0.0, 0.1)),
         N.LowPrecision("float16"), N.LowPrecision("bfloat16", "stochastic"),
         N.LowPrecision("e4m3"), N.LowPrecision("e5m2", "stochastic"), N.FixedPoint(0.01),
         N.FixedPoint(0.05, "stochastic"), N.TopK(2), N.RandK(2), N.RandK(3, unbiased=False),
         N.ScaledSign(), N.BitFlip(0.01, bits=[3, 40, 51])]
TIMINGS = [T.Always(), T.Every(3, 1), T.Bernoulli(0.3), T.At([0, 5, 17, 100]), T.Window(10, 40)]


@pytest.fixture(scope="module")
def mlp_problem():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 5))
    ops = [fc.ops.Linear(5, 6), fc.ops.Tanh(), fc.ops.Linear(6, 4), fc.ops.Tanh(),
           fc.ops.Linear(4, 2), fc.ops.SquaredError()]
    return fc.Problem(fc.Cascade(ops), (X, np.tanh(X[:, :2])))


@pytest.mark.parametrize("k", range(len(KINDS)), ids=[repr(k)[:24] for k in KINDS])
def test_engines_agree_for_every_kind(mlp_problem, k):
    kind, timing = KINDS[k], TIMINGS[k % len(TIMINGS)]
    gran = "element" if kind.is_transform else ("element", "sample", "step")[k % 3]
    mag = None if kind.is_transform else (None, Mg.PowerDecay(0.5, 2.0), Mg.HorizonDecay(0.25))[k % 3]
    perts = [fc.Perturbation(2, "forward", kind, timing, gran, mag),
             fc.Perturbation(4, "backward", kind, timing, gran, mag)]
    opt = fc.SGD(0.05, batch=8, momentum=0.5)
    kw = dict(n_iter=60, perturbations=perts, seeds=[3], init="random", record_profile=True)
    a = fc.run(mlp_problem, opt, **kw)
    b = fc.run(mlp_problem, opt, engine="numpy", **kw)
    clean = fc.run(mlp_problem, opt, n_iter=60, seeds=[3], init="random")
    # 1e-9 relative: the engines differ only in summation order (about 1e-15); a quantiser could
    # amplify that only at an exact rounding tie, which these fixed seeds do not hit
    for name in ("objective", "grad_norm", "grad_error", "forward_error", "backward_error",
                 "final_weights"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9, atol=1e-14,
                                   err_msg=name)
    assert np.abs(a.final_weights - clean.final_weights).max() > 1e-6  # the kind did something


# ---------------------------------------------------------------------------------------------
# Appendix A.3: Top-1 on the backward message breaks convergence

def a3_run(A, optimizer, compressed, n_iter=1000, s=1.0):
    problem = fc.Problem(fc.Cascade([fc.ops.DiagLinear(np.array(A, float)), fc.ops.InnerSquare()]),
                         (np.ones((1, 2)),))
    perts = [fc.Perturbation(2, "backward", N.TopK(1))] if compressed else []
    return fc.run(problem, optimizer, n_iter, perts, seeds=[0], init=np.array([s, s, 0.0, 0.0]))


def test_a3_top1_breaks_sgd_and_heavy_ball():
    sgd_A, hb_A = [[-15, 13], [-5, 9]], [[-5, -4], [-5, 3]]
    plain = a3_run(sgd_A, fc.SGD(0.1), False)
    assert np.linalg.norm(plain.final_weights[0, :2]) < 1e-12
    top1 = a3_run(sgd_A, fc.SGD(0.1), True)
    w1 = top1.final_weights[0, :2]
    assert top1.diverged[0] or np.linalg.norm(w1) > 1.0
    hb = a3_run(hb_A, fc.SGD(0.05, momentum=0.9), False)
    assert np.linalg.norm(hb.final_weights[0, :2]) < 1e-8
    hb_top1 = a3_run(hb_A, fc.SGD(0.05, momentum=0.9), True)
    assert hb_top1.diverged[0] or np.linalg.norm(hb_top1.final_weights[0, :2]) > 1.0


# ---------------------------------------------------------------------------------------------
# Validation

@pytest.mark.parametrize("make,match", [
    (lambda: N.LowPrecision("float12"), "format"),
    (lambda: N.LowPrecision("float16", rounding="up"), "rounding"),
    (lambda: N.FixedPoint(0.0), "step"),
    (lambda: N.TopK(0), "k"),
    (lambda: N.RandK(2, unbiased="yes"), "unbiased"),
    (lambda: N.BitFlip(1.5, bits=[1]), "p"),
    (lambda: N.BitFlip(0.1, bits=[64]), "bits"),
    (lambda: N.StudentT(0.0), "df"),
    (lambda: N.Relative(N.TopK(1)), "dist"),
    (lambda: T.Bernoulli(-0.1), "p"),
    (lambda: T.Window(5, 5), "stop"),
    (lambda: T.At([-1]), "iterations"),
    (lambda: Mg.PowerDecay(-1.0), "alpha"),
    (lambda: fc.Perturbation(1, noise=N.TopK(1), granularity="sample"), "granularity"),
    (lambda: fc.Perturbation(1, noise=N.TopK(1), magnitude=Mg.PowerDecay(1.0)), "magnitude"),
])
def test_bad_arguments_name_the_parameter(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_gradient_noise_on_a_wide_net_with_batch_one():
    # n_weights (681) far exceeds the per-step noise scratch (2 B d_max = 60): the gradient
    # noise has its own buffer; both engines must agree draw for draw
    rng = np.random.default_rng(4)
    X = rng.standard_normal((40, 20))
    problem = fc.Problem(fc.Cascade([fc.ops.Linear(20, 30), fc.ops.Tanh(), fc.ops.Linear(30, 1),
                                     fc.ops.Softplus()]), (X,))
    perts = [fc.Perturbation(2, "forward", N.Gaussian(0.0, 0.1))]
    opt = fc.SGD(0.01, batch=1, grad_noise_std=0.1)
    kw = dict(n_iter=30, perturbations=perts, seeds=[1], init="random")
    a, b = fc.run(problem, opt, **kw), fc.run(problem, opt, engine="numpy", **kw)
    np.testing.assert_allclose(a.final_weights, b.final_weights, rtol=1e-9)
    np.testing.assert_allclose(a.grad_norm, b.grad_norm, rtol=1e-9)


_COPY_CASES = [(noise, gran) for noise in (N.Uniform(-0.3, 0.7), N.Gaussian(0.2, 1.5),
                                           N.Relative(N.Uniform(-0.1, 0.1)), N.Laplace(0.0, 0.5))
               for gran in ("element", "sample", "step")]
_COPY_CASES.append((N.LowPrecision("bfloat16", rounding="stochastic"), "element"))


@pytest.mark.parametrize("noise,granularity", _COPY_CASES, ids=repr)
def test_perturbing_a_copy_is_copying_then_perturbing(noise, granularity, simd):
    """The forward pass's first perturbation at a site writes ~y_i = f_i's output perturbed
    into a buffer of its own (in one pass where the kind allows): the same bits and the same
    draws as copying the output and perturbing the copy in place."""
    src = np.linspace(-2.0, 3.0, 3 * 77).reshape(3, 77)   # 231 draws: the AVX2 variant's too
    magnitude = fc.magnitude.PowerDecay(0.5, scale=0.25) if isinstance(noise, N.Uniform) else None
    pert = fc.Perturbation(op=1, noise=noise, granularity=granularity, magnitude=magnitude)
    pint, preal, times = perturbation_tables([pert], 1)
    in_place, gen = src.copy(), np.random.default_rng(5)
    _noise.apply(pint[0], preal[0], gen, in_place, 7, times)
    to_copy, twin = np.full_like(src, np.nan), np.random.default_rng(5)
    _noise.apply(pint[0], preal[0], twin, to_copy, 7, times, source=src)
    np.testing.assert_array_equal(to_copy, in_place)
    assert np.all(src == np.linspace(-2.0, 3.0, 3 * 77).reshape(3, 77))
    assert gen.random() == twin.random()
    with pytest.raises(ValueError, match="source: shape"):
        _noise.apply(pint[0], preal[0], twin, to_copy, 7, times, source=src[:2])


@pytest.mark.parametrize("n", [1, 3, 4, 5, 8, 131, 1001])
@pytest.mark.parametrize("noise,draw", [
    (N.Uniform(-0.3, 0.7), lambda rng, n: -0.3 + (0.7 - -0.3) * rng.random(n)),
    (N.Gaussian(0.2, 1.5), lambda rng, n: 0.2 + 1.5 * rng.standard_normal(n)),
], ids=["uniform", "gaussian"])
def test_additive_noise_kernel_is_numpys_draws_added_exactly(noise, draw, n, simd):
    """z + m (a + b u) with u numpy's own draws, to the bit: the uniform kernel makes its draws
    in the pass that adds them, the Gaussian one fills them first; the generator then continues
    where numpy's would (the next draw agrees)."""
    z = np.linspace(-2.0, 3.0, n)[None, :]
    for magnitude in (None, fc.magnitude.PowerDecay(0.5, scale=0.25)):
        pert = fc.Perturbation(op=1, noise=noise, magnitude=magnitude)
        pint, preal, times = perturbation_tables([pert], 1)
        t = 7
        m = 1.0 if magnitude is None else 0.25 * (t + 1.0) ** -0.5
        got, gen = z.copy(), np.random.default_rng(5)
        _noise.apply(pint[0], preal[0], gen, got, t, times)
        twin = np.random.default_rng(5)
        np.testing.assert_array_equal(got, z + m * draw(twin, n)[None, :])
        assert gen.random() == twin.random()
