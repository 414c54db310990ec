"""The AVX-512 level of the vector kernels and of the uniform draws: the bits of the AVX2 level
(and numpy's PCG64 stream), on the engine fingerprints, on numpy's stream for counts around
every block size, and on each elementwise kernel and reduction at adversarial inputs."""
import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastcascade as fc
from fastcascade._kernels import _noise, _ops
from fastcascade.errors import ParameterError
from fastcascade.perturbation import perturbation_tables

_SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "fingerprints.py"
_spec = importlib.util.spec_from_file_location("fc_fingerprints_avx512", _SCRIPT)
fp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fp)

_START = _ops.simd_level()
HAS_AVX512 = _ops.set_simd_level("avx512") == "avx512"
_ops.set_simd_level(_START)
needs_avx512 = pytest.mark.skipif(not HAS_AVX512, reason="this CPU has no AVX-512 "
                                  "(avx512f/dq/vl/bw) or the build no AVX-512 variant")


@pytest.fixture
def restore_level():
    before = _ops.simd_level()
    yield
    _ops.set_simd_level(before)


def at_levels(fn, levels=("avx512", "avx2+fma")):
    """{level: fn()} with each level selected in turn (the level in use before restored)."""
    out, before = {}, _ops.simd_level()
    try:
        for level in levels:
            assert _ops.set_simd_level(level) == level
            out[level] = fn()
    finally:
        _ops.set_simd_level(before)
    return out


def same_bits(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and np.array_equal(a.view(np.uint64), b.view(np.uint64))


# ---- the engine fingerprints -------------------------------------------------------------------

@needs_avx512
def test_avx512_gives_the_fingerprints_of_avx2():
    got = fp.fingerprints(["avx512", "avx2+fma"])
    bad = [name for name in got["avx2+fma"] if got["avx512"][name] != got["avx2+fma"][name]]
    assert not bad, f"avx512 and avx2+fma differ on {bad}"


# ---- numpy's PCG64 stream ----------------------------------------------------------------------

# blocks: 4 draws (scalar), 8 (AVX2: 4 lanes + 4 scalar), 20 (AVX-512: 16 lanes + 4 scalar; 12
# kept from its first version); the vector variants from 128 draws on
BLOCKS = (4, 8, 12, 20)
VECTOR_MIN = 128


def pcg64_counts():
    counts = {0, 1, 2, 3, 5, VECTOR_MIN - 1}
    for block in BLOCKS:
        for base in (0, VECTOR_MIN, VECTOR_MIN + 10 * block, 2 * VECTOR_MIN + 3 * block):
            counts |= {base + block - 1, base + block, base + block + 1, base + 2 * block + 3}
            counts |= {base - 1, base, base + 1} - {-1}
    return sorted(counts)


@pytest.fixture
def restore_ifma():
    yield
    _noise._pcg64_ifma(True)   # allowed again (the default); restore_level then re-selects


HAS_IFMA = HAS_AVX512 and _noise._pcg64_ifma()


@needs_avx512
@pytest.mark.parametrize("relative", [False, True], ids=["added", "filled"])
@pytest.mark.parametrize("level, ifma", [("avx512", True), ("avx512", False),
                                         ("avx2+fma", False), ("baseline", False)],
                         ids=["avx512-ifma", "avx512", "avx2+fma", "baseline"])
def test_uniform_draws_are_numpys_stream_at_every_count(relative, level, ifma, restore_level,
                                                         restore_ifma):
    """fc_pcg64_add_affine (uniform noise added) and fc_pcg64_fill_double (relative noise): the
    doubles numpy draws and the generator state numpy leaves, for counts around every block size
    of every variant (the AVX-512 one with its states in 32-bit limbs and, where the CPU has
    IFMA, in 52-bit limbs), drawn one after the other from one generator."""
    if ifma and not HAS_IFMA:
        pytest.skip("this CPU has no AVX-512 IFMA")
    assert _ops.set_simd_level(level) == level
    assert _noise._pcg64_ifma(ifma) == ifma
    assert _noise._simd_level() == {"avx512": 3, "avx2+fma": 2, "baseline": 1}[level]
    noise = fc.noise.Uniform(-0.5, 2.0)
    pint, preal, times = perturbation_tables(
        [fc.Perturbation(op=1, noise=fc.noise.Relative(noise) if relative else noise)], 1)
    ours, theirs = np.random.default_rng(7), np.random.default_rng(7)
    for n in pcg64_counts():
        z = np.ones((1, n)) if relative else np.linspace(-1.0, 1.0, n)[None, :]
        expected = z[0].copy()
        _noise.apply(pint[0], preal[0], ours, z, 0, times)
        u = theirs.uniform(-0.5, 2.0, size=n)
        expected = expected * (1.0 + 1.0 * u) if relative else expected + 1.0 * u
        assert same_bits(z[0], expected), n
        assert ours.bit_generator.state == theirs.bit_generator.state, n
    # numpy's distributions served from the stream afterwards: still in step
    np.testing.assert_array_equal(ours.normal(size=9), theirs.normal(size=9))


# ---- the elementwise kernels and reductions ------------------------------------------------------

TINY = np.finfo(float).tiny
HUGE = np.finfo(float).max
ADVERSARIAL = np.array([
    0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 5e-324, -5e-324, TINY, -TINY, TINY / 3,
    -TINY / 3, 1e-300, -1e-300, 1e-17, -1e-17, 2.0 ** -53, -(2.0 ** -53), 1e-8, -1e-8, HUGE, -HUGE,
    1e300, -1e300,
    # exp's and the softplus/sigmoid range cut |x| <= 708, exp's overflow and underflow edges
    707.9999999999999, 708.0, 708.0000000000001, -708.0, -708.0000000000001, 709.782712893384,
    709.7827128933841, -745.1332191019411, -745.1332191019412, -744.44007192138126,
    # tanh's clamp (|x| = 354) and its expm1 reduction (|r| <= ln2 / 2)
    354.0, -354.0, 353.99999999999994, 0.34657359027997264, -0.34657359027997264,
    0.3465735902799727, 19.06, -19.06, 0.55, -0.55,
    # log1p's domain (-1, inf) and the sqrt(2) cut of its reduction
    -1.0, -0.9999999999999999, -1.0000000000000002, 0.41421356237309503, 0.4142135623730951,
    0.41421356237309515, -0.2928932188134524, -0.29289321881345254, 1.0, 0.5, -0.5, 1e-5,
])


def kernel_outputs(x, y):
    out = {name: _ops.fastmath(name, x) for name in ("exp", "log1p", "softplus", "sigmoid", "tanh")}
    out["softplus_fused"], out["sigmoid_fused"] = _ops.fastmath_softplus_sigmoid(x)
    out["sigmoid_mul"] = _ops.fastmath_sigmoid_mul(x, y)
    finite = np.where(np.isfinite(x), x, 0.25) * 1e-150   # sums of squares that do not overflow
    for name in ("sum", "sumsq", "dot"):
        out[name] = np.array([_ops.fastmath_reduce(name, finite[:n], y[:n])
                              for n in range(len(x) + 1)])
    return out


@needs_avx512
@pytest.mark.parametrize("shift", [0, 1, 3, 5, 7, 11])
def test_each_kernel_gives_the_avx2_bits_on_adversarial_inputs(shift):
    """Every kernel on the specials, range cuts and huge/tiny values, placed at every lane
    position (shifted through full vectors and padded tails of 4 and 8 lanes): the same bits."""
    rng = np.random.default_rng(shift)
    x = np.roll(np.concatenate([ADVERSARIAL, rng.normal(0.0, 20.0, 37)]), shift)
    y = rng.normal(size=x.size)
    for n in (x.size, 1, 2, 3, 5, 7, 8, 9, 13, 15, 16, 17, 31, 33, 47, 49):
        got = at_levels(lambda: kernel_outputs(x[:n], y[:n]))
        for name, value in got["avx512"].items():
            assert same_bits(value, got["avx2+fma"][name]), (name, n, shift)


@needs_avx512
def test_kernels_keep_nan_inf_and_signed_zero_at_avx512(restore_level):
    """The special values come out as libm gives them (the lanes redone with libm)."""
    _ops.set_simd_level("avx512")
    x = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 710.0, -710.0, -1.0, -2.0])
    with np.errstate(all="ignore"):
        # (the ordinary values are within a few ulp of libm: tests/test_speed_paths.py)
        np.testing.assert_array_equal(_ops.fastmath("exp", x[:7]), np.exp(x[:7]))
        np.testing.assert_array_equal(_ops.fastmath("log1p", x), np.log1p(x))
        np.testing.assert_array_equal(_ops.fastmath("tanh", x[:7]), np.tanh(x[:7]))
    assert np.signbit(_ops.fastmath("tanh", np.array([-0.0]))[0])
    assert np.isnan(_ops.fastmath_reduce("dot", np.array([1.0, np.nan, 2.0]), np.ones(3)))


@needs_avx512
@pytest.mark.parametrize("n", [1, 2, 3, 6, 7, 10, 11, 14, 15, 22, 23, 38, 39, 99])
def test_reduction_tails_round_as_one_fma(n, restore_level):
    """The terms past the last block of 4 are added with one rounding each (an FMA), at both FMA
    levels: a vectorised tail that rounds the product apart would differ here."""
    rng = np.random.default_rng(n)
    x, y = rng.normal(size=n), rng.normal(size=n)
    got = at_levels(lambda: _ops.fastmath_reduce("dot", x, y))
    assert got["avx512"] == got["avx2+fma"]
    head = n - n % 4
    # the last n % 4 terms alone (the head zeroed): the vector part gives exactly 0.0
    xt, yt = x.copy(), y.copy()
    xt[:head] = 0.0
    tail = 0.0
    for a, b in zip(xt[head:], yt[head:]):
        tail = _fma(a, b, tail)
    assert at_levels(lambda: _ops.fastmath_reduce("dot", xt, yt))["avx512"] == tail


def _fma(a, b, c):
    """a b + c rounded once (exact rational arithmetic, then one rounding)."""
    from fractions import Fraction
    return float(Fraction(a) * Fraction(b) + Fraction(c))


# ---- selection ---------------------------------------------------------------------------------

def test_set_simd_level_rejects_unknown_levels():
    with pytest.raises(ParameterError) as err:
        _ops.set_simd_level("avx1024")
    assert err.value.param == "level" and err.value.value == "avx1024"
    assert "avx512" in err.value.allowed
    with pytest.raises(ParameterError):
        _ops.set_simd_level(3)


@needs_avx512
@pytest.mark.parametrize("env, level", [("avx512", "avx512"), ("avx2+fma", "avx2+fma"),
                                        ("avx2", "avx2+fma"), ("baseline", "baseline")])
def test_environment_caps_the_level_in_every_module(env, level, tmp_path):
    code = ("from fastcascade._kernels import _ops, _engine, _noise\n"
            "print(_ops.simd_level(), _engine._simd_level(), _noise._simd_level())\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(fc.__file__)))
    environ = dict(os.environ, FASTCASCADE_SIMD=env, PYTHONPATH=root)
    out = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                         text=True, check=True, cwd=tmp_path).stdout.split()
    number = {"avx512": "3", "avx2+fma": "2", "baseline": "1"}[level]
    assert out == [level, number, number]


# ---- the 8-lane Linear kernels (W z and the fused rank-1 SGD step) ------------------------------

WIDTHS_IN = (1, 3, 4, 5, 7, 8, 9, 12, 13, 15, 16, 17, 20, 23, 24, 28, 31, 33, 36, 44)
WIDTHS_OUT = (1, 2, 7, 8, 9, 17)


@needs_avx512
@pytest.mark.parametrize("d_out", WIDTHS_OUT)
def test_linear_kernels_give_the_avx2_bits_at_every_width(d_out):
    """Per-sample SGD on Linear(d_in, d_out) -> Tanh -> Linear -> SquaredError: W z (fc_matvec,
    8 rows at a time on 8 lanes) and the plain SGD step of the rank-1 gradient with its norm
    (fc_outer_axpy_sumsq), for widths around the blocks of 4, 8 and 16: the same weights,
    objectives and norms to the bit as the 4-lane AVX2 kernels."""
    rng = np.random.default_rng(d_out)
    for d_in in WIDTHS_IN:
        X = rng.normal(size=(40, d_in))
        y = rng.normal(size=(40, 1))
        ops = [fc.ops.Linear(d_in, d_out), fc.ops.Tanh(), fc.ops.Linear(d_out, 1),
               fc.ops.SquaredError()]
        problem = fc.Problem(fc.Cascade(ops), (X, y))

        def run():
            res = fc.run(problem, fc.SGD(0.05, batch=1), n_iter=60, seeds=[1], record_every=7,
                         init="random", progress=False)
            return np.concatenate([res.final_weights.ravel(), res.objective.ravel(),
                                   res.grad_norm.ravel()])
        got = at_levels(run)
        assert same_bits(got["avx512"], got["avx2+fma"]), (d_in, d_out)


@needs_avx512
@pytest.mark.parametrize("d_in", WIDTHS_IN)
def test_matvec_gives_the_avx2_bits(d_in):
    """Linear's forward at one sample (fc_matvec) for 1..19 rows: 8-row blocks and the rows
    left over."""
    rng = np.random.default_rng(d_in)
    for d_out in range(1, 20):
        op = fc.ops.Linear(d_in, d_out, bias=False)
        problem = fc.Problem(fc.Cascade([op, fc.ops.SquaredError()]),
                             (rng.normal(size=(1, d_in)), rng.normal(size=(1, d_out))))
        row = np.ascontiguousarray(problem.plan.op_table[0])
        w = rng.normal(size=problem.n_weights)
        z = np.ascontiguousarray(problem.data.X)
        lab = np.zeros((1, 0))
        got = at_levels(lambda: _ops.forward(row, w, np.zeros(0), z, lab))
        assert same_bits(got["avx512"], got["avx2+fma"]), (d_in, d_out)
        expected = z @ w.reshape(d_out, d_in).T
        np.testing.assert_allclose(got["avx512"], expected, rtol=1e-13, atol=1e-13)


# ---- fastcascade bench shows the level ---------------------------------------------------------

def test_bench_rows_name_their_simd_level(monkeypatch):
    from fastcascade import bench
    monkeypatch.setattr(bench, "CASES", {"a": lambda quick: [dict(
        case="paper", label="x", fast_us=10.0, base_us=100.0, ratio=10.0)]})
    rows = bench.run_cases("a", quick=True, echo=None)
    assert rows[0]["simd"] == _ops.simd_level()
    assert f"  {_ops.simd_level():<9}" in bench._format_row(rows[0])


def test_bench_simd_case_times_every_level_and_restores_it(monkeypatch):
    """Case (f): one row per level this CPU has, ratio = time at avx2+fma / time at the level,
    each row run at its own level; the level in use before is selected again after."""
    from fastcascade import bench
    seen = []
    monkeypatch.setattr(bench, "_run", lambda *a, **k: seen.append(_ops.simd_level()))
    fake = iter([[3.0, 6.0, 12.0], [1.0, 1.0, 2.0], [4.0, 5.0, 10.0]] * 2)

    def best_each(fns, repeats):
        for fn in fns:
            fn()
        return next(fake)[-len(fns):]
    monkeypatch.setattr(bench, "_best_each", best_each)
    before = _ops.simd_level()
    levels = [lv for lv in ("avx512", "avx2+fma", "baseline") if _ops.set_simd_level(lv) == lv]
    _ops.set_simd_level("baseline")
    try:
        rows = bench.case_simd_levels(quick=True)
        assert _ops.simd_level() == "baseline"
    finally:
        _ops.set_simd_level(before)
    assert [r["simd"] for r in rows] == levels * 3
    assert seen == levels * 3
    for r in rows:
        assert r["case"].endswith("@" + r["simd"])
        if r["simd"] == "avx2+fma":
            assert r["ratio"] == 1.0
    if HAS_AVX512:
        assert rows[0]["ratio"] == 2.0   # 6.0 at avx2+fma against 3.0 at avx512


@needs_avx512
@pytest.mark.parametrize("m", [1, 2, 5, 9])
def test_rank1_sgd_step_and_its_norm_give_the_avx2_bits(m):
    """fc_outer_axpy_sumsq (per-sample SGD's step y += a g z^T and the new weights' sum of
    squares, which the divergence check reads): numpy's roundings for y (g z, then a times it,
    then the add), and the 4-lane order of the norm, at widths around the blocks of 4, 8, 32."""
    rng = np.random.default_rng(m)
    g = rng.normal(size=m)
    for d in range(1, 71):
        z, y0 = rng.normal(size=d), rng.normal(size=m * d)
        a = -0.037

        def step():
            y = y0.copy()
            return y, _ops.fastmath_outer_axpy_sumsq(a, g, z, y)
        got = at_levels(step, ("avx512", "avx2+fma", "baseline"))
        expected = y0 + a * np.outer(g, z).ravel()
        for level, (y, _) in got.items():
            assert same_bits(y, expected), (level, m, d)
        assert got["avx512"][1] == got["avx2+fma"][1], (m, d)
        # the norm's value: within rounding of the exact sum of squares
        exact = math.fsum(expected * expected)
        assert abs(got["avx512"][1] - exact) <= 1e-14 * exact
    with pytest.raises(ValueError, match="y: length"):
        _ops.fastmath_outer_axpy_sumsq(1.0, g, np.ones(3), np.ones(3 * m + 1))


@pytest.mark.parametrize("B", [1, 2, 7, 64, 257, 513])
def test_margin_weight_gradient_pair_gives_each_gradients_bits(B):
    """fc_margin_wgrad2 (the perturbed and clean passes' Margin gradients in one loop, at a
    recorded full-batch step) gives each gradient the bits of fc_margin_wgrad alone, at every
    level and width (the widths <= 16 take the unrolled kernels, the 8-lane ones at avx512),
    and avx512 gives avx2+fma's bits; the values are the sums to rounding."""
    rng = np.random.default_rng(B)
    levels = ("avx512", "avx2+fma", "baseline") if HAS_AVX512 else ("avx2+fma", "baseline")
    for d in range(1, 21):
        z = rng.normal(size=(B, d))
        lab = rng.choice([-1.0, 1.0], size=B)
        g, h = rng.normal(size=B), rng.normal(size=B)
        got = at_levels(lambda: (_ops.fastmath_margin_wgrad(z, lab, g),
                                 _ops.fastmath_margin_wgrad(z, lab, h),
                                 _ops.fastmath_margin_wgrad(z, lab, g, h)), levels)
        for level, (one_g, one_h, (pair_g, pair_h)) in got.items():
            assert same_bits(pair_g, one_g) and same_bits(pair_h, one_h), (level, d)
        if HAS_AVX512:
            assert same_bits(got["avx512"][0], got["avx2+fma"][0]), d
        exact = -(lab * g) @ z
        assert np.allclose(got[levels[0]][0], exact, rtol=1e-12, atol=1e-12 * np.abs(z).sum())
    with pytest.raises(ValueError, match="h: length"):
        _ops.fastmath_margin_wgrad(z, lab, g, h[:-1])


@pytest.mark.parametrize("m", [1, 3, 9])
def test_input_gradient_gives_the_avx2_bits(m):
    """fc_matvec_t (Linear's W^T g at one sample): each column one FMA chain over the rows in
    order, whatever the blocking, so the 8-lane kernel's sweeps of up to 128 columns (and the
    masked last vector) give the 4-lane kernel's bits at every width to 300; the values are
    the products to rounding."""
    rng = np.random.default_rng(m)
    levels = ("avx512", "avx2+fma") if HAS_AVX512 else ("avx2+fma",)
    for d in range(1, 301):
        W, g = rng.normal(size=(m, d)), rng.normal(size=m)
        got = at_levels(lambda: _ops.fastmath_matvec_t(W, g), levels)
        assert same_bits(got[levels[0]], got["avx2+fma"]), d
        assert np.allclose(got[levels[0]], W.T @ g, rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="g: length"):
        _ops.fastmath_matvec_t(W, g[:-1])
