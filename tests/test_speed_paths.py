"""Tests of the code paths added for speed (issue 7): the vectorised exp/log1p/softplus/sigmoid/tanh
of _fastmath.h against libm, NaN/Inf propagation, the fixed-order reductions, the BLAS Linear
kernels against the NumPy reference, the Margin kernels at every width, and the engine's shortcuts
(recording that reuses the perturbed pass, skipped unused outputs, BLAS pinned to one thread)
leaving results unchanged."""
import math

import numpy as np
import pytest

import fastcascade as fc
from fastcascade import reference as ref
from fastcascade._kernels import _ops
from fastcascade.bench import mlp_problem

# the `simd` fixture (each vector variant this CPU has) is in conftest.py


def ulp_error(actual, expected):
    """|actual - expected| in units of the last place of expected (0 where both are equal,
    including equal infinities; inf where exactly one is NaN)."""
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    out = np.zeros(actual.shape)
    same = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    diff = ~same
    with np.errstate(invalid="ignore", over="ignore"):
        out[diff] = np.abs(actual[diff] - expected[diff]) / np.spacing(np.abs(expected[diff]))
    out[diff & ~(np.isfinite(actual) & np.isfinite(expected))] = np.inf
    return out


def libm(name, x):
    """The libm-based scalar formulas the vector code replaces (math module = C libm)."""
    def softplus(z):
        return max(z, 0.0) + math.log1p(math.exp(-abs(z)))

    def sigmoid(z):
        e = math.exp(-abs(z))
        return 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)

    def safe(f, v):
        if math.isnan(v):
            return math.nan
        try:
            return f(v)
        except OverflowError:
            return math.inf
        except ValueError:
            return -math.inf if (name == "log1p" and v == -1.0) else math.nan

    f = {"exp": math.exp, "log1p": math.log1p, "softplus": softplus, "sigmoid": sigmoid,
         "tanh": math.tanh}[name]
    return np.array([safe(f, float(v)) for v in x])


def sample_points(name, rng):
    if name == "log1p":
        parts = [rng.uniform(-1.0, 1.0, 4000), np.exp(rng.uniform(-700, 700, 4000)),
                 -np.exp(rng.uniform(-40, 0, 2000)), 10.0 ** rng.uniform(-300, -1, 1000),
                 [0.0, -0.0, 1e-320, -0.5, -0.999999, 1e308, np.finfo(float).max]]
    else:
        parts = [rng.uniform(-800, 800, 4000), rng.uniform(-40, 40, 4000),
                 rng.uniform(-1, 1, 2000), rng.uniform(-1e-6, 1e-6, 500),
                 rng.uniform(-750, -700, 500), rng.uniform(700, 712, 500),
                 [0.0, -0.0, 1e-320, -1e-320, 708.0, -708.0, 709.78, -745.1, 800.0, -800.0,
                  0.3, -0.3, 0.29999999999999993, 22.0, -22.0]]
    return np.concatenate([np.asarray(p, float) for p in parts])


# max ulp from the libm formula: exp and log1p are within 1 ulp of the exact value (measured);
# the composite functions add the roundings of their few extra operations
MAX_ULP = {"exp": 2, "log1p": 2, "softplus": 3, "sigmoid": 4, "tanh": 4}


@pytest.mark.parametrize("name", list(MAX_ULP))
def test_fastmath_matches_libm_over_the_whole_range(name, simd):
    x = sample_points(name, np.random.default_rng(0))
    err = ulp_error(_ops.fastmath(name, x), libm(name, x))
    worst = int(np.argmax(err))
    assert err[worst] <= MAX_ULP[name], (name, simd, x[worst], err[worst])


SPECIALS = {
    # x: expected
    "exp": {np.nan: np.nan, np.inf: np.inf, -np.inf: 0.0, 710.0: np.inf, -746.0: 0.0,
            -740.0: math.exp(-740.0), 0.0: 1.0},
    "log1p": {np.nan: np.nan, np.inf: np.inf, -1.0: -np.inf, -2.0: np.nan, -np.inf: np.nan,
              0.0: 0.0, 1e-300: 1e-300},
    "softplus": {np.nan: np.nan, np.inf: np.inf, -np.inf: 0.0, 800.0: 800.0, -800.0: 0.0,
                 -40.0: math.log1p(math.exp(-40.0))},
    "sigmoid": {np.nan: np.nan, np.inf: 1.0, -np.inf: 0.0, 800.0: 1.0, -800.0: 0.0,
                0.0: 0.5},
    "tanh": {np.nan: np.nan, np.inf: 1.0, -np.inf: -1.0, 800.0: 1.0, -800.0: -1.0,
             0.0: 0.0},
}


@pytest.mark.parametrize("name", list(SPECIALS))
def test_fastmath_special_values_and_nan_propagation(name, simd):
    cases = SPECIALS[name]
    x = np.array(list(cases), float)
    expected = np.array(list(cases.values()), float)
    got = _ops.fastmath(name, x)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=f"{name}: {got}")
    ok = ~np.isnan(expected)
    np.testing.assert_allclose(got[ok], expected[ok], rtol=4e-16, atol=0)
    # signed zeros are kept where the function is odd
    if name == "tanh":
        assert math.copysign(1.0, _ops.fastmath(name, np.array([-0.0]))[0]) == -1.0


@pytest.mark.parametrize("name", list(MAX_ULP))
def test_fastmath_result_does_not_depend_on_position(name, simd):
    """A value gives the same bits wherever it sits (full vectors, padded tails, next to a
    special value that sends its neighbours' lane to libm)."""
    vals = np.array([0.7, -3.25, 1e-5, 45.0] if name != "log1p" else [0.7, 3.25, 1e-5, 45.0])
    alone = _ops.fastmath(name, vals)
    for n in range(1, 10):
        for pos in range(n):
            for filler in (0.5, np.nan, 1000.0):
                x = np.full(n, filler)
                for k, v in enumerate(vals):
                    x[pos] = v
                    assert _ops.fastmath(name, x)[pos] == alone[k], (name, n, pos, filler, v)


def test_simd_level_switches_the_engines_kernels_too(simd):
    """Each extension module has its own dispatch table: the engine's sums, norms and updates
    follow set_simd_level (so the simd-parametrised engine tests run its baseline variants)."""
    from fastcascade._kernels import _engine
    assert _engine._simd_level() == {"avx512": 3, "avx2+fma": 2, "baseline": 1}[simd]


def test_fastmath_handles_empty_and_tiny_arrays():
    for name in MAX_ULP:
        assert _ops.fastmath(name, np.zeros(0)).shape == (0,)
        assert _ops.fastmath(name, np.array([0.25]))[0] == pytest.approx(
            libm(name, [0.25])[0], rel=1e-15)
    with pytest.raises(ValueError, match="name"):
        _ops.fastmath("cosh", np.zeros(3))


@pytest.mark.parametrize("n", [0, 1, 3, 4, 7, 8, 9, 16, 17, 1001])
def test_reductions_match_exact_sums(n, simd):
    rng = np.random.default_rng(n)
    x, y = rng.normal(size=n), rng.normal(size=n)
    scale = 1.0 + np.sum(np.abs(x * y)) + np.sum(x * x)
    assert abs(_ops.fastmath_reduce("sumsq", x, x) - math.fsum(x * x)) <= 1e-15 * scale
    assert abs(_ops.fastmath_reduce("dot", x, y) - math.fsum(x * y)) <= 1e-15 * scale
    if n:
        x[n // 2] = np.nan
        assert np.isnan(_ops.fastmath_reduce("sumsq", x, x))
        x[n // 2] = np.inf
        assert _ops.fastmath_reduce("sumsq", x, x) == np.inf


@pytest.mark.parametrize("n", [0, 1, 3, 4, 7, 8, 9, 16, 17, 1001])
def test_sum_matches_exact_sum(n, simd):
    x = np.random.default_rng(n).normal(size=n)
    assert abs(_ops.fastmath_reduce("sum", x, x) - math.fsum(x)) <= 1e-15 * (1 + np.sum(np.abs(x)))
    if n:
        x[n // 2] = np.nan
        assert np.isnan(_ops.fastmath_reduce("sum", x, x))


# lengths around the kernels' blocks (four vectors in fc_softplus_sigmoid, three in
# fc_sigmoid_mul, computed side by side) and their one-vector tails
BLOCK_LENGTHS = (1, 2, 3, 5, 6, 7, 11, 12, 13, 15, 16, 17, 23, 25, 31, 33, 47, 49)


def test_fused_softplus_sigmoid_gives_the_bits_of_the_separate_kernels(simd):
    """The clean pass takes Softplus's value and derivative from one kernel; they must be the
    bits fc_softplus and fc_sigmoid give (specials and padded tails included), in its blocks of
    four vectors as in its tail."""
    x = sample_points("softplus", np.random.default_rng(1))
    x = np.concatenate([x, [np.nan, np.inf, -np.inf, 709.0, -709.0]])
    for xs in (x, np.roll(x, 9)):   # the specials in the tail, then in a block
        for n in (len(xs),) + BLOCK_LENGTHS:
            value, deriv = _ops.fastmath_softplus_sigmoid(xs[-n:])
            np.testing.assert_array_equal(value, _ops.fastmath("softplus", xs[-n:]))
            np.testing.assert_array_equal(deriv, _ops.fastmath("sigmoid", xs[-n:]))


def test_sigmoid_times_message_gives_the_bits_of_the_sigmoid_kernel(simd):
    """Softplus's VJP, g * sigmoid(z) in blocks of three vectors and a tail: the product of
    fc_sigmoid's bits with g, whatever the position (the clean and perturbed gradients of an
    unperturbed step must be equal to the bit)."""
    rng = np.random.default_rng(2)
    x = np.concatenate([sample_points("sigmoid", rng), [np.nan, np.inf, -np.inf, 709.0, -709.0]])
    g = rng.normal(size=len(x))
    for xs, gs in ((x, g), (np.roll(x, 9), np.roll(g, 9))):
        for n in (len(xs),) + BLOCK_LENGTHS:
            got = _ops.fastmath_sigmoid_mul(xs[-n:], gs[-n:])
            np.testing.assert_array_equal(got, gs[-n:] * _ops.fastmath("sigmoid", xs[-n:]))
    with pytest.raises(ValueError, match="g: length"):
        _ops.fastmath_sigmoid_mul(x[:3], g[:2])


# ---------------------------------------------------------------------------------------------
# The inlined PCG64 (_pcg64.h): numpy's stream, bit for bit, handed back to the generator

# draw counts below and above the AVX2 variant's threshold (128), with every remainder mod 8
PCG64_COUNTS = [1, 3, 4, 5, 8, 9, 127, 128, 129, 131, 134, 135, 1001, 4099]


@pytest.mark.parametrize("n", PCG64_COUNTS)
@pytest.mark.parametrize("relative", [False, True], ids=["added", "filled"])
def test_inline_pcg64_draws_numpys_stream_and_hands_it_back(n, relative, simd):
    """Uniform noise added in the pass that draws it (fc_pcg64_add_affine) and drawn into a
    buffer first (fc_pcg64_fill_double, behind relative noise): numpy's doubles, and the
    generator left where numpy's would be, with both variants of the draws."""
    from fastcascade._kernels import _noise
    from fastcascade.perturbation import perturbation_tables
    noise = fc.noise.Uniform(-0.5, 2.0)
    pint, preal, times = perturbation_tables(
        [fc.Perturbation(op=1, noise=fc.noise.Relative(noise) if relative else noise)], 1)
    assert _noise._simd_level() == {"avx512": 3, "avx2+fma": 2, "baseline": 1}[simd]
    ours, theirs = np.random.default_rng(n), np.random.default_rng(n)
    # a float32 draw leaves half of a 64-bit draw buffered (has_uint32): it must survive
    assert ours.random(dtype=np.float32) == theirs.random(dtype=np.float32)
    z = np.ones((1, n)) if relative else np.zeros((1, n))
    _noise.apply(pint[0], preal[0], ours, z, 0, times)
    u = theirs.uniform(-0.5, 2.0, size=n)
    np.testing.assert_array_equal(z[0], 1.0 * (1.0 + 1.0 * u) if relative else u)
    assert ours.bit_generator.state == theirs.bit_generator.state
    assert ours.random(dtype=np.float32) == theirs.random(dtype=np.float32)
    np.testing.assert_array_equal(ours.integers(0, 7, size=5), theirs.integers(0, 7, size=5))


def test_non_pcg64_generators_are_drawn_through_numpy():
    from fastcascade._kernels import _noise
    from fastcascade.perturbation import perturbation_tables
    pint, preal, times = perturbation_tables(
        [fc.Perturbation(op=1, noise=fc.noise.Gaussian(0.0, 1.0))], 1)
    ours = np.random.Generator(np.random.Philox(3))
    theirs = np.random.Generator(np.random.Philox(3))
    z = np.zeros((1, 9))
    _noise.apply(pint[0], preal[0], ours, z, 0, times)
    np.testing.assert_array_equal(z[0], theirs.standard_normal(9))
    np.testing.assert_array_equal(ours.random(4), theirs.random(4))


# ---------------------------------------------------------------------------------------------
# BLAS Linear and the Margin kernels against the NumPy reference

def _check_op(op, d, B, seed, rtol=1e-12):
    rng = np.random.default_rng(seed)
    bop = op.bound(d)
    z = rng.normal(size=(B, d))
    w = rng.normal(size=bop.n_weights) / np.sqrt(d)
    g = rng.normal(size=(B, bop.d_out))
    lab = rng.choice([-1.0, 1.0], size=(B, 1)) if bop.labels == "sign" else None
    out = op.forward(z, w, labels=lab)
    g_in, g_w = op.vjp(z, g, w, labels=lab)
    for a, b in ((out, ref.forward(bop, z, w, lab)), (g_in, ref.vjp_input(bop, z, g, w, lab)),
                 (g_w, ref.vjp_weights(bop, z, g, w, lab))):
        scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
        np.testing.assert_allclose(a, b, rtol=rtol, atol=0.1 * rtol * scale)
    return out, g_in, g_w


@pytest.fixture(params=["blas", "default"])
def blas_mode(request):
    old = _ops.set_blas_threshold(0 if request.param == "blas" else _ops.set_blas_threshold(0))
    if request.param == "default":
        _ops.set_blas_threshold(old)
    yield request.param
    _ops.set_blas_threshold(old)


@pytest.mark.parametrize("width", [16, 32, 64, 128, 256, 512])
@pytest.mark.parametrize("B", [2, 33])
def test_blas_linear_matches_reference(width, B, blas_mode):
    _check_op(fc.ops.Linear(width, width), width, B, width)
    _check_op(fc.ops.Linear(width, 3, bias=False), width, B, width + 1)
    _check_op(fc.ops.Linear(7, width), 7, B, width + 2)
    A = np.random.default_rng(width).normal(size=(width // 2, width))
    _check_op(fc.ops.FixedLinear(A), width, B, width + 3)


def test_blas_and_loops_agree():
    rng = np.random.default_rng(5)
    op = fc.ops.Linear(48, 40)
    z, w, g = rng.normal(size=(9, 48)), rng.normal(size=op.n_weights), rng.normal(size=(9, 40))
    old = _ops.set_blas_threshold(0)
    try:
        table = np.array([[_ops.OP_CODES["linear"], 1, 48, 40, op.n_weights, 0, 0]])
        assert _ops.uses_blas(table, 9) and not _ops.uses_blas(table, 1)
        blas = (op.forward(z, w), *op.vjp(z, g, w))
        _ops.set_blas_threshold(2 ** 62)
        loops = (op.forward(z, w), *op.vjp(z, g, w))
    finally:
        _ops.set_blas_threshold(old)
    for a, b in zip(blas, loops):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13 * np.max(np.abs(b)))


# odd widths, so that every remainder loop of fc_matvec (rows per sweep, columns by 8, 4, 1),
# fc_matvec_t (column blocks of 32, 16, 8, 4, 1) and fc_outer runs
SMALL_LINEAR = [(1, 1), (3, 5), (5, 3), (1, 17), (17, 1), (17, 65), (65, 17), (64, 64), (7, 37)]


@pytest.mark.parametrize("d_in,d_out", SMALL_LINEAR)
@pytest.mark.parametrize("B", [1, 3])
def test_linear_small_batch_kernels_at_odd_widths(d_in, d_out, B, simd):
    """The per-sample Linear kernels (matrix-vector products and the rank-1 weight gradient)
    against the NumPy reference: at B = 3 the weight gradient is written by the first sample and
    accumulated by the others (64 x 64 x 3 is over the BLAS threshold: the BLAS path)."""
    seed = 1000 * d_in + 10 * d_out + B
    _check_op(fc.ops.Linear(d_in, d_out), d_in, B, seed)
    _check_op(fc.ops.Linear(d_in, d_out, bias=False), d_in, B, seed + 1)
    A = np.random.default_rng(seed).normal(size=(d_out, d_in))
    _check_op(fc.ops.FixedLinear(A), d_in, B, seed + 2)


@pytest.mark.parametrize("d", list(range(1, 21)) + [123])
@pytest.mark.parametrize("B", [1, 5, 7, 64])
def test_margin_kernels_at_every_width(d, B, simd):
    # B = 5, 7: the forward's blocks of four rows and one or three rows after them
    _check_op(fc.ops.Margin(), d, B, 100 * d + B)


@pytest.mark.parametrize("d", [3, 10, 17])
def test_margin_reads_the_first_label_column_at_any_row_stride(d, simd):
    """Labels with several columns (row stride > 1): Margin uses the first, in the four-row
    blocks of the forward kernel as in the rows after them, to the bit of a 1-column copy."""
    rng = np.random.default_rng(d)
    z, w = rng.normal(size=(11, d)), rng.normal(size=d)
    lab = rng.choice([-1.0, 1.0], size=(11, 3))
    g = rng.normal(size=(11, 1))
    op = fc.ops.Margin()
    one_column = np.ascontiguousarray(lab[:, :1])
    np.testing.assert_array_equal(op.forward(z, w, labels=lab), op.forward(z, w, labels=one_column))
    for a, b in zip(op.vjp(z, g, w, labels=lab), op.vjp(z, g, w, labels=one_column)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(op.forward(z, w, labels=lab)[:, 0], -lab[:, 0] * (z @ w),
                               rtol=1e-13, atol=1e-14)


def test_margin_kernels_propagate_nan():
    z = np.ones((6, 10))
    z[3, 9] = np.nan
    lab = np.ones((6, 1))
    out = fc.ops.Margin().forward(z, np.ones(10), labels=lab)
    assert np.isnan(out[3, 0]) and np.all(np.isfinite(np.delete(out, 3)))
    _, g_w = fc.ops.Margin().vjp(z, np.ones((6, 1)), np.ones(10), labels=lab)
    assert np.isnan(g_w[9]) and np.all(np.isfinite(g_w[:9]))


# ---------------------------------------------------------------------------------------------
# The engine's shortcuts leave results unchanged

def paper_like(M=300, d=10, seed=0):
    problem = fc.problems.paper_logistic(n_samples=M, n_features=d, seed=seed)
    perts = [fc.Perturbation(op=1, pass_="forward", noise=fc.noise.Uniform(-0.6, 0.6)),
             fc.Perturbation(op=2, pass_="backward", noise=fc.noise.Uniform(-0.6, 0.6))]
    return problem, perts


def mlp_like(width=40, M=120, seed=0):
    return mlp_problem(width, n_samples=M, seed=seed)[0]


def assert_same_result(a, b):
    for name in ("objective", "grad_norm", "grad_error", "step_size", "final_weights"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert list(a.stopped_at) == list(b.stopped_at)


@pytest.mark.parametrize("batch", ["full", 16, 1])
def test_recording_shortcuts_do_not_change_results(batch):
    """record_profile=True turns off the skipped last forward output; the recorded histories and
    the trajectory must be the same to the bit either way, and match the NumPy engine."""
    problem, perts = paper_like()
    opt = fc.SGD(0.05, batch=batch, grad_noise_std=1e-3)
    kw = dict(n_iter=60, perturbations=perts, seeds=[3], record_every=1)
    plain = fc.run(problem, opt, **kw)
    profiled = fc.run(problem, opt, record_profile=True, **kw)
    assert_same_result(plain, profiled)
    numpy = fc.run(problem, opt, engine="numpy", **kw)
    for name in ("objective", "grad_norm", "grad_error", "final_weights"):
        np.testing.assert_allclose(getattr(plain, name), getattr(numpy, name), rtol=1e-9,
                                   atol=0)


def test_clean_pass_with_the_fused_last_operator_matches_the_plain_vjp():
    """problem.gradient's clean pass computes Softplus's derivative with its value (the fused
    path); perturbed_gradient's clean pass runs Softplus's VJP: the same bits."""
    problem, _ = paper_like()
    w = np.random.default_rng(5).normal(size=problem.n_weights)
    g = fc.perturbed_gradient(problem, w, [], seed=0)
    np.testing.assert_array_equal(problem.gradient(w), g.clean)


@pytest.mark.parametrize("sampling", ["shuffle", "replacement"])
@pytest.mark.parametrize("batch", [1, 3])
def test_sampled_rows_read_in_place_or_copied_match_numpy_engine(sampling, batch):
    """Batch 1 reads its row where it lies in X, larger batches copy theirs (and shuffled epochs
    prefetch the next rows): the same trajectory as the NumPy engine, over several epochs."""
    problem, perts = paper_like(M=37)
    opt = fc.SGD(0.05, batch=batch, sampling=sampling)
    kw = dict(n_iter=100, perturbations=perts, seeds=[4], record_every=7)
    fast, numpy = fc.run(problem, opt, **kw), fc.run(problem, opt, engine="numpy", **kw)
    for name in ("objective", "grad_norm", "grad_error", "final_weights"):
        np.testing.assert_allclose(getattr(fast, name), getattr(numpy, name), rtol=1e-9, atol=0)


def test_forward_noise_on_the_last_operator_and_none_at_all():
    problem, perts = paper_like()
    opt = fc.SGD(0.05, grad_noise_std=1e-3)
    for ps in ([], perts + [fc.Perturbation(op=2, pass_="forward",
                                            noise=fc.noise.Uniform(-0.1, 0.1))]):
        a = fc.run(problem, opt, n_iter=40, perturbations=ps, seeds=[1])
        b = fc.run(problem, opt, n_iter=40, perturbations=ps, seeds=[1], engine="numpy")
        for name in ("objective", "grad_norm", "grad_error", "final_weights"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9, atol=0)


@pytest.mark.parametrize("batch", ["full", 8, 1])
def test_mlp_with_blas_matches_numpy_engine(batch):
    problem = mlp_like()
    perts = [fc.Perturbation(op=2, pass_="forward", noise=fc.noise.Gaussian(0.0, 0.01)),
             fc.Perturbation(op=3, pass_="backward", noise=fc.noise.Gaussian(0.0, 0.01))]
    old = _ops.set_blas_threshold(0)
    try:
        kw = dict(n_iter=30, perturbations=perts, seeds=[0], init="random", record_every=3)
        a = fc.run(problem, fc.SGD(0.01, batch=batch), **kw)
        b = fc.run(problem, fc.SGD(0.01, batch=batch), engine="numpy", **kw)
    finally:
        _ops.set_blas_threshold(old)
    for name in ("objective", "grad_norm", "grad_error", "final_weights"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9, atol=1e-14)


def test_results_identical_with_one_and_two_threads():
    problem, perts = paper_like()
    opt = fc.SGD(0.05, batch="full", grad_noise_std=1e-3)
    kw = dict(n_iter=50, perturbations=perts, seeds=range(4))
    assert_same_result(fc.run(problem, opt, n_jobs=1, **kw), fc.run(problem, opt, n_jobs=2, **kw))
    problem = mlp_like(64, M=200)
    old = _ops.set_blas_threshold(0)
    try:
        kw = dict(n_iter=20, seeds=range(4), init="random", record_every=5)
        opt = fc.SGD(0.01, batch=16)
        assert_same_result(fc.run(problem, opt, n_jobs=1, **kw),
                           fc.run(problem, opt, n_jobs=2, **kw))
    finally:
        _ops.set_blas_threshold(old)


# Per-sample SGD on a tanh MLP: the backward pass writes each operator's block of the gradient,
# sums ||g||^2 while it goes (Linear: ||v||^2 ||z||^2 in closed form), and plain SGD applies
# Linear's rank-1 weight gradient from its factors between recording steps (never written).

MLP_B1_PERTS = [fc.Perturbation(op=2, pass_="forward", noise=fc.noise.Gaussian(0.0, 0.05)),
                fc.Perturbation(op=3, pass_="backward", noise=fc.noise.Gaussian(0.0, 0.05))]


@pytest.mark.parametrize("width", [1, 3, 5, 17, 65])
@pytest.mark.parametrize("opt", [
    fc.SGD(0.05, batch=1),                                   # deferred rank-1 steps
    fc.SGD(0.05, batch=1, clip_norm=0.3),                    # gradients written, clipped
    fc.SGD(0.05, batch=1, momentum=0.5),                     # written, momentum update
    fc.SGD(0.05, batch=1, grad_noise_std=1e-3),              # ||g|| summed after the noise
    fc.Adam(0.01, batch=1),
], ids=["sgd", "clipped", "momentum", "grad-noise", "adam"])
def test_per_sample_mlp_matches_numpy_engine(width, opt, simd):
    problem = mlp_like(width, M=40, seed=width)
    kw = dict(n_iter=60, perturbations=MLP_B1_PERTS, seeds=[0, 1], init="random",
              record_every=7)
    a = fc.run(problem, opt, **kw)
    b = fc.run(problem, opt, engine="numpy", **kw)
    assert not a.diverged.any()
    for name in ("objective", "grad_norm", "grad_error", "final_weights"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9, atol=0,
                                   err_msg=name)


def test_per_sample_deferred_steps_are_bit_identical_to_written_gradients(simd):
    """The weights after deferred rank-1 steps are those of writing the gradient first (the same
    roundings), so they do not depend on record_every (recording steps write the gradient), nor on
    clip_norm when it never clips (a clip_norm writes every gradient), nor on n_jobs."""
    problem = mlp_like(17, M=40)
    kw = dict(n_iter=100, perturbations=MLP_B1_PERTS, seeds=[2, 3], init="random")
    runs = [fc.run(problem, fc.SGD(0.05, batch=1), record_every=r, **kw) for r in (1, 10, 10 ** 6)]
    runs.append(fc.run(problem, fc.SGD(0.05, batch=1, clip_norm=1e300), record_every=10, **kw))
    for r in runs[1:]:
        np.testing.assert_array_equal(r.final_weights, runs[0].final_weights)
    np.testing.assert_array_equal(runs[1].grad_norm, runs[0].grad_norm[:, ::10])
    np.testing.assert_array_equal(runs[3].grad_error, runs[1].grad_error)
    two = fc.run(problem, fc.SGD(0.05, batch=1), record_every=10, n_jobs=2, **kw)
    assert_same_result(two, runs[1])


@pytest.mark.parametrize("max_norm", [1e6, 30.0], ids=["gradient-bound", "weight-bound"])
def test_per_sample_divergence_stops_like_the_numpy_engine(max_norm):
    """The fused norms keep the stop codes: a large step size drives the gradient (or, with a
    low bound, the weights) over max_norm at the same iteration in both engines."""
    problem = mlp_like(5, M=40)
    kw = dict(n_iter=300, seeds=[0, 1], init="random", record_every=50, max_norm=max_norm)
    a = fc.run(problem, fc.SGD(3.0, batch=1), **kw)
    b = fc.run(problem, fc.SGD(3.0, batch=1), engine="numpy", **kw)
    assert a.diverged.all()
    assert list(a.stopped_at) == list(b.stopped_at) and a.stop_reason == b.stop_reason


def test_engine_requires_weight_blocks_that_tile_the_weight_vector():
    from fastcascade._kernels import _engine
    problem = mlp_like(3, M=10)
    table = problem.plan.op_table.copy()
    table[2, 5] += 1    # the second Linear's weights would overlap the first one's
    w = np.zeros(problem.cascade.n_weights)
    with pytest.raises(ValueError, match="tile the weight vector"):
        _engine.clean_objective_gradient(table, problem.plan.params, problem.data.X,
                                         problem.data.y, w, 0, 0.0, np.zeros_like(w))


def test_blas_is_pinned_to_one_thread_during_runs_and_restored():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from fastcascade._blas import single_threaded_blas

    def threads():
        return [lib["num_threads"] for lib in threadpoolctl.threadpool_info()
                if lib["user_api"] == "blas"]

    before = threads()
    with single_threaded_blas():
        with single_threaded_blas():
            assert all(n == 1 for n in threads())
        assert all(n == 1 for n in threads())
    assert threads() == before


@pytest.mark.parametrize("batch,record_every", [("full", 1), (1, 10 ** 6), (4, 3)])
@pytest.mark.parametrize("model", ["logistic", "mlp"])
def test_run_stops_non_finite_when_values_overflow(batch, record_every, model):
    """Steps so large that margins and weights overflow: Inf and NaN go through the vectorised
    kernels (softplus, sigmoid, the margin reductions, the norms), and the run must still stop
    as non-finite, at the same iteration and for the same reason as the NumPy engine."""
    if model == "logistic":
        data = fc.datasets.synthetic_logistic(50, 10, seed=0)
        problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), data)
    else:
        problem = mlp_like(20, M=50)
    opt = fc.SGD(1e308, batch=batch)
    kw = dict(n_iter=400, seeds=[0], record_every=record_every, max_norm=np.inf,
              init="random")
    old = _ops.set_blas_threshold(0)
    try:
        res = fc.run(problem, opt, **kw)
    finally:
        _ops.set_blas_threshold(old)
    assert res.stop_reason[0].startswith("non-finite"), res.stop_reason
    with np.errstate(all="ignore"):
        other = fc.run(problem, opt, engine="numpy", **kw)
    assert list(res.stopped_at) == list(other.stopped_at)
    assert res.stop_reason == other.stop_reason


def test_build_info_reports_simd_and_blas():
    info = fc.build_info()
    assert info["simd"] in ("avx512", "avx2+fma", "baseline", "scalar")
    assert info["simd"] == _ops.simd_level()
    assert "blas" in info and "blas_threshold" in info


def test_bench_main_writes_a_table_and_json(tmp_path, capsys):
    import json

    from fastcascade import bench
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--cases", "c", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sklearn" in text and "ratio" in text
    data = json.loads(out.read_text())
    assert data["quick"] is True and data["info"]["simd"] == _ops.simd_level()
    assert [r["case"] for r in data["results"]] == ["sklearn"]
    with pytest.raises(SystemExit):
        bench.main(["--cases", "xyz"])


def test_fastcascade_simd_baseline_environment_switch(tmp_path):
    """FASTCASCADE_SIMD=baseline selects the SSE2 variant in every kernel module at import; a
    run then gives the same trajectory to rounding."""
    import os
    import subprocess
    import sys
    code = ("import numpy as np, fastcascade as fc\n"
            "from fastcascade._kernels import _ops\n"
            "d = fc.datasets.synthetic_logistic(200, 10, seed=0)\n"
            "p = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), d)\n"
            "r = fc.run(p, fc.SGD(0.1), n_iter=50, seeds=[0])\n"
            "print(_ops.simd_level(), fc.build_info()['simd'], repr(float(r.objective[0, -1])))\n")
    # the same fastcascade as this process (installed or in place), whatever the working dir
    root = os.path.dirname(os.path.dirname(os.path.abspath(fc.__file__)))
    env = dict(os.environ, FASTCASCADE_SIMD="baseline",
               PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")]
                                                    if p]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=tmp_path).stdout.split()
    assert out[:2] == ["baseline", "baseline"]
    d = fc.datasets.synthetic_logistic(200, 10, seed=0)
    p = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), d)
    r = fc.run(p, fc.SGD(0.1), n_iter=50, seeds=[0])
    assert float(out[2]) == pytest.approx(float(r.objective[0, -1]), rel=1e-12)
