"""The theory module: constants against hand computations, bounds against measurements."""
import numpy as np
import pytest

import fastcascade as fc
from fastcascade import theory
from fastcascade.theory import OperatorConstants

ONES = OperatorConstants(C1=1.0, C2=1.0, L0=1.0, L1=1.0, L2=1.0)


def test_variance_constants_by_hand():
    # N = 3, all constants 1: r = 3 C1^2 = 3, S(j) = sum_{k<=j} 3^k: S(1) = 4, S(2) = 13
    ce_delta, ce_eps = theory.variance_constants(ONES, 3)
    assert ce_delta.tolist() == [4 * (4 * 1 + 13 * 2), 4 * 13]      # (2 L0^2)^{j-i} = 2^{j-i}
    assert ce_eps.tolist() == [2 * 3, 2 * (3 + 9)]
    k = OperatorConstants(C1=2.0, C2=0.5, L0=0.5, L1=3.0, L2=1.0)
    ce_delta, ce_eps = theory.variance_constants(k, 2)
    # N = 2: C_v = max(1, 2^2) = 4; Ce_delta_1 = 4 * 16 * 9 * S(1) with S(1) = 1 + 12
    assert ce_delta.tolist() == [4 * 16 * 9 * 13]
    assert ce_eps.tolist() == [2 * 12]
    assert theory.variance_bound(k, 2, [0.5], [2.0]) == pytest.approx(4 * 16 * 9 * 13 * 0.5 + 48)


def test_bias_constants_by_hand():
    c = theory.bias_constants(ONES, 3)
    # Cy_1^2 = 8 * S(2) * 4^0 + 2 * (1 + 3) ; Cy_2^2 = 0 + 2 * (1 + 3 + 9)
    assert c["cy_sq"].tolist() == [8 * 13 + 8, 26]
    assert c["cb_delta"].tolist() == [8 * (4 + 13 * 4), 8 * 13]
    assert c["cb_tilde_delta"].tolist() == [8 * (112 + 26 * 8), 8 * 26]
    assert c["cb_eps"].tolist() == [6, 24]
    assert theory.c_v(0.5, 4) == 1.0 and theory.c_v(2.0, 3) == 8.0


def test_rate_bounds():
    b = theory.nonconvex_bound(D0=2.0, step_size=0.1, n_iter=100, L=1.0, sigma_sq=0.5,
                               variances=3.0, biases=np.full(100, 0.2))
    assert b == pytest.approx(6 * 2 / (0.1 * 100) + 6 * 0.1 * 0.5 + 6 * 0.1 * 3.0 + 3 * 0.2)
    with pytest.raises(ValueError, match="step_size"):
        theory.nonconvex_bound(1.0, 1.0, 10, 1.0, 0.0, 0.0, 0.0)
    rho = 1 - 0.5 * 0.1 / 3
    w = rho ** (100 - np.arange(100))
    b = theory.pl_bound(D0=2.0, step_size=0.1, n_iter=100, L=1.0, mu=0.5, sigma_sq=0.5,
                        variances=3.0, biases=0.2)
    assert b == pytest.approx(rho ** 100 * 2 + 3 * 0.1 * 0.5 / 0.5 + 0.01 * 3 * w.sum()
                              + 0.05 * 0.2 * w.sum())


def test_table1_and_corollary():
    T = 10_000
    assert theory.table1_budget("nonconvex", True, "forward", T) == 100.0
    assert theory.table1_budget("nonconvex", True, "backward", T) == T
    assert theory.table1_budget("nonconvex", False, "backward", T) == 100.0
    assert theory.table1_budget("pl", True, "forward", T) == 1.0
    assert theory.table1_budget("pl", False, "backward", T) == 1.0
    assert theory.COROLLARY1["nonconvex"]["delta"] == -1 / 8
    assert theory.COROLLARY1["pl"]["eps_mean"] == -1 / 2
    with pytest.raises(ValueError, match="setting"):
        theory.table1_budget("convex", True, "forward", T)


@pytest.mark.parametrize("noise", [fc.noise.Uniform(-0.5, 1.0), fc.noise.Gaussian(0.3, 0.7),
                                   fc.noise.Laplace(0.2, 0.4), fc.noise.Rademacher(0.6),
                                   fc.noise.StudentT(6.0, 0.5)], ids=repr)
def test_perturbation_moments_match_samples(noise):
    d = 3
    x = noise.draw(np.random.default_rng(0), (400_000, d))
    m = theory.perturbation_moments(noise, d)
    sq = np.sum(x ** 2, axis=1)
    assert m["sq"] == pytest.approx(sq.mean(), rel=0.01)            # 400k draws: SE < 0.3%
    assert m["mean_sq"] == pytest.approx(np.sum(x.mean(axis=0) ** 2), abs=0.01)
    assert m["fourth"] == pytest.approx(np.mean(sq ** 2), rel=0.05)  # heavier tails: 5%


def test_gradient_error_stats_matches_closed_form():
    # backward eps on the logistic model: ~u - u = (1/B) sum_s (-y_s h_s) eps_s, so
    # E||~u - u||^2 = sigma^2 / B^2 sum_s ||h_s||^2, and the error has mean zero
    data = fc.datasets.synthetic_logistic(50, 4, seed=2)
    problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), data)
    sigma = 0.8
    perts = [fc.Perturbation(2, "backward", fc.noise.Gaussian(0.0, sigma))]
    st = theory.gradient_error_stats(problem, np.full(4, 0.3), perts, n_draws=20_000, seed=1)
    expected = sigma ** 2 / 50 ** 2 * np.sum(data.X ** 2)
    assert abs(st["mean_sq"] - expected) < 4 * st["mean_sq_se"]
    assert np.all(np.abs(st["bias"]) < 4 * st["bias_se"])


def _random_cascade(depth, width, rng):
    """depth operators: depth - 1 random layers (Linear, Tanh or Sigmoid) and a squared loss."""
    kinds = [lambda: fc.ops.Linear(width, width), fc.ops.Tanh, fc.ops.Sigmoid]
    layers = [kinds[0]()] + [kinds[rng.integers(3)]() for _ in range(depth - 2)]
    return fc.Cascade(layers + [fc.ops.SquaredError()])


@pytest.mark.parametrize("depth", [2, 3, 4, 5, 6])
def test_theorem1_holds_on_random_cascades(depth):
    rng = np.random.default_rng(depth)
    width = 3
    X = rng.standard_normal((40, width))
    problem = fc.Problem(_random_cascade(depth, width, rng), (X, np.tanh(X)))
    w = problem.init_weights(seed=depth)
    k = theory.estimate_constants(problem, w, n_samples=20, seed=0)
    ratios = []
    for sigma in (0.01, 0.1, 0.3):
        noise = fc.noise.Gaussian(0.0, sigma)
        perts = [fc.Perturbation(i, "forward", noise) for i in range(1, depth)]
        perts += [fc.Perturbation(i, "backward", noise) for i in range(2, depth + 1)]
        st = theory.gradient_error_stats(problem, w, perts, n_draws=400, seed=3)
        second = theory.perturbation_moments(noise, width)["sq"]
        bound = theory.variance_bound(k, depth, [second] * (depth - 1), [second] * (depth - 1))
        # the measured E||~u - u||^2 (plus 4 standard errors) stays below the bound
        assert st["mean_sq"] + 4 * st["mean_sq_se"] <= bound
        ratios.append(bound / st["mean_sq"])
    assert min(ratios) >= 1.0


def test_location_sensitivity_in_an_expanding_tanh_network():
    # depth-5 tanh network (Linear, Tanh, Linear, Tanh, Linear) and a squared loss, with weights
    # of gain 3 so the Jacobians expand (C1 > 1, the regime where the theory's constants grow
    # with depth): forward noise hurts more near the input, backward noise near the output
    rng = np.random.default_rng(0)
    d = 6
    X = rng.standard_normal((200, d)) / np.sqrt(d)
    ops = [fc.ops.Linear(d, d), fc.ops.Tanh(), fc.ops.Linear(d, d), fc.ops.Tanh(),
           fc.ops.Linear(d, 1), fc.ops.SquaredError()]
    problem = fc.Problem(fc.Cascade(ops), (X, np.tanh(X[:, :1])))
    w = problem.init_weights(seed=1) * 3.0 * np.sqrt(3.0)
    noise = fc.noise.Gaussian(0.0, 0.1)

    def err(op, pass_):
        st = theory.gradient_error_stats(problem, w, [fc.Perturbation(op, pass_, noise)],
                                         n_draws=400, seed=5)
        return st["mean_sq"], st["mean_sq_se"]

    (f1, s1), (f4, s4) = err(1, "forward"), err(4, "forward")
    assert f1 - f4 > 4 * np.hypot(s1, s4)
    (b5, s5), (b2, s2) = err(5, "backward"), err(2, "backward")
    assert b5 - b2 > 4 * np.hypot(s5, s2)


def test_zero_mean_forward_noise_biases_and_theorem2_holds():
    data = fc.datasets.synthetic_logistic(100, 3, seed=0)
    problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), data)
    w = np.array([0.5, -0.3, 0.2])
    noise = fc.noise.Uniform(-2.0, 2.0)
    st = theory.gradient_error_stats(problem, w, [fc.Perturbation(1, "forward", noise)],
                                     n_draws=4000, seed=0)
    assert np.max(np.abs(st["bias"]) / st["bias_se"]) > 4   # zero-mean, yet biased
    k = theory.estimate_constants(problem, w, n_samples=100)
    m = theory.perturbation_moments(noise, 1)
    bound = theory.bias_bound(k, 2, [m["mean_sq"]], [m["fourth"]], [0.0])
    assert st["bias_sq"] <= bound


def test_estimate_constants_on_known_operators():
    # Margin + Softplus at w: J1 of Margin = -y w (norm ||w||), J2 = -y h (norm ||h||);
    # Softplus: J1 = sigmoid(z) <= 1, and its derivative sigmoid' <= 1/4
    data = fc.datasets.synthetic_logistic(30, 3, seed=1)
    problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), data)
    w = np.array([3.0, 0.0, 4.0])
    k = theory.estimate_constants(problem, w, n_samples=30)
    assert k.L0 == pytest.approx(5.0)                              # ||w|| for Margin
    assert k.C1 == pytest.approx(max(5.0, np.linalg.norm(data.X, axis=1).max()))
    assert k.C2 == pytest.approx(1.0, rel=1e-6)                    # d(-y h)/dh: |y| = 1
    assert 0.0 < k.L1 <= 1.0 + 1e-6
