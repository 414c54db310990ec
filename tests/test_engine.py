"""Tests of the perturbed SGD engine: ``fc.run`` and ``fc.perturbed_gradient`` (Eq. 5,
docs/model.md sec. 2).

What is shown here:

1. the compiled engine and its NumPy twin give the same trajectories for a seed (many settings);
2. appendix A.2 (a persistent forward error moves the fixed point to -delta), exactly;
3. appendix A.3 without compression (SGD in one step, heavy ball converging), exactly;
4. zero-mean backward noise leaves the gradient unbiased, zero-mean forward noise does not;
5. results do not depend on n_jobs (to the bit), and the engine releases the GIL;
6. divergence is data: reported per run with its iteration and reason;
7. the Result metrics (stable gradient norm, record iterations);
8. common random numbers: a seed fixes the data order and each noise stream separately;
9. bad inputs raise ValueError naming the parameter.

Every random quantity comes from a fixed seed, so every assertion is deterministic.
"""
from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

import fastcascade as fc

HISTORY = ("objective", "grad_norm", "grad_error", "step_size")
PROFILE = ("forward_error", "backward_error")


# ---------------------------------------------------------------------------------------------
# Problems


def logistic_problem(M=200, d=5, seed=3, regularizer=None):
    """The paper's logistic regression as a cascade of two operators (docs/model.md sec. 6)."""
    data = fc.datasets.synthetic_logistic(M, d, seed=seed)
    cascade = fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()])
    return fc.Problem(cascade, data, regularizer=regularizer)


def mlp_problem(M=100, d=4, width=6, seed=5):
    """A depth-4 tanh MLP (4 Linear layers) ending in a squared error against targets."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((M, d))
    y = np.sin(X @ rng.standard_normal(d))[:, None]
    cascade = fc.Cascade([
        fc.ops.Linear(d, width), fc.ops.Tanh(),
        fc.ops.Linear(width, width), fc.ops.Tanh(),
        fc.ops.Linear(width, width), fc.ops.Tanh(),
        fc.ops.Linear(width, 1), fc.ops.SquaredError(),
    ])
    return fc.Problem(cascade, fc.datasets.Dataset(X, y), regularizer=fc.reg.L2(1e-3))


def a2_problem():
    """Appendix A.2 as a cascade: y_1 = sqrt(2) * w (DiagLinear on x = 1), y_2 = y_1^2 / 2
    (SquaredError against the target 0), so l(w) = w^2; a forward perturbation of
    sqrt(2) * delta at op 1 makes the perturbed loss (w + delta)^2."""
    data = fc.datasets.Dataset(np.array([[1.0]]), np.array([[0.0]]))
    cascade = fc.Cascade([fc.ops.DiagLinear(A=[[math.sqrt(2.0)]]), fc.ops.SquaredError()])
    return fc.Problem(cascade, data)


def a3_problem(A):
    """Appendix A.3: x = (1, 1), f_1 = A (x * w_1), f_2 = <y_1, w_2>^2 + ||y_1||^2 / 2."""
    data = fc.datasets.Dataset(np.array([[1.0, 1.0]]))
    return fc.Problem(fc.Cascade([fc.ops.DiagLinear(A=A), fc.ops.InnerSquare()]), data)


def fwd(op, noise, **kw):
    return fc.Perturbation(op=op, pass_="forward", noise=noise, **kw)


def bwd(op, noise, **kw):
    return fc.Perturbation(op=op, pass_="backward", noise=noise, **kw)


# forward Uniform noise at op 1 and backward noise at op 2, both on
BOTH = [fwd(1, fc.noise.Uniform(-0.5, 0.5)), bwd(2, fc.noise.Uniform(-0.5, 0.5))]


# ---------------------------------------------------------------------------------------------
# 1. The two engines agree


def run_both(problem, optimizer, perts, n_iter=200, seeds=(0, 1), init=None, **kw):
    out = {}
    for engine in ("cython", "numpy"):
        out[engine] = fc.run(problem, optimizer, n_iter, perts, seeds=list(seeds),
                             record_profile=True, init=init, engine=engine, **kw)
    return out["cython"], out["numpy"]


def assert_engines_agree(a, b, rtol=1e-9):
    """Same stops, and every history and the final weights equal to ``rtol`` relative.

    rtol = 1e-9: the engines run the same arithmetic in a different order (C loops against NumPy
    reductions), so after 200 iterations they differ by a few ulps (about 1e-15 observed); 1e-9
    leaves six orders of margin while still catching any difference in semantics (a different
    draw, sample or formula changes the values at the 1e-2 level). atol = 0: an entry that is
    exactly 0 in one engine (the unperturbed v_N = 1, an inactive perturbation) is structurally 0
    and must be exactly 0 in the other too.
    """
    np.testing.assert_array_equal(a.stopped_at, b.stopped_at)
    assert a.stop_reason == b.stop_reason
    np.testing.assert_array_equal(a.iterations, b.iterations)
    for name in HISTORY + PROFILE + ("final_weights",):
        x, y = getattr(a, name), getattr(b, name)
        assert x is not None and y is not None, name
        assert x.shape == y.shape, name
        np.testing.assert_allclose(x, y, rtol=rtol, atol=0.0, equal_nan=True,
                                   err_msg=f"cython vs numpy engine: {name}")


def every_perts(granularity):
    return [fwd(1, fc.noise.Gaussian(0.1, 0.5), granularity=granularity,
                timing=fc.timing.Every(7, offset=3)),
            bwd(2, fc.noise.Uniform(-1.0, 1.0), granularity=granularity,
                timing=fc.timing.Every(5, offset=1))]


# (id, optimizer, perturbations, the same without the feature under test)
ENGINE_CASES = [
    ("full-batch+grad-noise", fc.SGD(0.5, grad_noise_std=1e-3), BOTH,
     fc.SGD(0.5), BOTH),
    ("momentum-full-batch", fc.SGD(0.3, momentum=0.9, grad_noise_std=1e-3), BOTH,
     fc.SGD(0.3, grad_noise_std=1e-3), BOTH),
    ("minibatch-replacement", fc.SGD(0.5, batch=32, sampling="replacement"), BOTH,
     fc.SGD(0.5), BOTH),
    ("minibatch-shuffle", fc.SGD(0.5, batch=32, sampling="shuffle"), BOTH,
     fc.SGD(0.5, batch=32, sampling="replacement"), BOTH),
    ("momentum-minibatch", fc.SGD(0.3, batch=32, sampling="shuffle", momentum=0.9), BOTH,
     fc.SGD(0.3, batch=32, sampling="shuffle"), BOTH),
    ("nesterov", fc.SGD(0.3, batch=32, momentum=0.9, nesterov=True), BOTH,
     fc.SGD(0.3, batch=32, momentum=0.9), BOTH),
    ("adam", fc.Adam(0.05, batch=32, grad_noise_std=1e-3), BOTH,
     fc.SGD(0.05, batch=32, grad_noise_std=1e-3), BOTH),
    ("inverse-power", fc.SGD(1.0, schedule=fc.schedules.InversePower(0.6)), BOTH,
     fc.SGD(1.0), BOTH),
    ("step-decay", fc.SGD(1.0, batch=32, schedule=fc.schedules.StepDecay(0.5, 30)), BOTH,
     fc.SGD(1.0, batch=32), BOTH),
    ("clip-norm", fc.SGD(1.0, clip_norm=0.05), BOTH, fc.SGD(1.0), BOTH),
    # the logistic sites are scalar, where "sample" and "element" draw alike: compare with "step"
    ("granularity-sample+every", fc.SGD(0.5, batch=32), every_perts("sample"),
     fc.SGD(0.5, batch=32), every_perts("step")),
    ("granularity-step+every", fc.SGD(0.5, batch=32), every_perts("step"),
     fc.SGD(0.5, batch=32), every_perts("element")),
]


@pytest.mark.parametrize("opt, perts, opt_without, perts_without",
                         [c[1:] for c in ENGINE_CASES], ids=[c[0] for c in ENGINE_CASES])
def test_engines_agree_logistic(opt, perts, opt_without, perts_without):
    problem = logistic_problem(regularizer=fc.reg.NonConvex(1e-3))
    a, b = run_both(problem, opt, perts)
    assert not a.diverged.any()
    assert_engines_agree(a, b)
    for name in HISTORY + PROFILE + ("final_weights",):
        assert np.all(np.isfinite(getattr(a, name))), name
    # the noise is really there: the gradient error is positive at some record
    assert np.all(np.max(a.grad_error, axis=1) > 1e-6)
    # the feature under test is not ignored by both engines alike: without it, the trajectory
    # changes (by far more than rounding: 1e-6 against differences of 1e-3 or more)
    c = fc.run(problem, opt_without, 200, perts_without, seeds=[0, 1])
    assert np.max(np.abs(a.final_weights - c.final_weights)) > 1e-6


def test_step_size_follows_the_schedule_formula():
    # the recorded step size is g0 * schedule(t), checked against the formulas by hand
    # (rtol 1e-14: one pow and one multiplication, a few ulps)
    problem = logistic_problem()
    t = np.arange(200.0)
    a = fc.run(problem, fc.SGD(1.0, schedule=fc.schedules.InversePower(0.6)), 200, BOTH)
    np.testing.assert_allclose(a.step_size[0], 1.0 / (1.0 + t) ** 0.6, rtol=1e-14)
    b = fc.run(problem, fc.SGD(2.0, schedule=fc.schedules.StepDecay(0.5, 30)), 200, BOTH)
    np.testing.assert_allclose(b.step_size[0], 2.0 * 0.5 ** np.floor(t / 30), rtol=1e-14)


@pytest.mark.parametrize("granularity", ["sample", "step"])
def test_every_timing_strikes_only_at_its_iterations(granularity):
    # Every(7, offset=3) forward at op 1: ~y_1 differs from y_1 exactly at t = 3, 10, 17, ...
    # and nowhere else (an inactive perturbation adds nothing, so the error is exactly 0).
    problem = logistic_problem()
    a, b = run_both(problem, fc.SGD(0.5, batch=32), every_perts(granularity))
    assert_engines_agree(a, b)
    t = a.iterations
    fwd_active = (t >= 3) & ((t - 3) % 7 == 0)
    bwd_active = (t >= 1) & ((t - 1) % 5 == 0)
    assert np.all(a.forward_error[:, fwd_active, 0] > 0)
    assert np.all(a.forward_error[:, ~fwd_active, 0] == 0)
    # the message op 2 sends (v_1, backward column 2 as Perturbation.op counts) is perturbed
    # by eps_2 or by a forward delta_1 (through the Jacobian of op 2 at ~y_1); op 1 sends none
    assert np.all(a.backward_error[:, bwd_active | fwd_active, 1] > 0)
    assert np.all(a.backward_error[:, ~(bwd_active | fwd_active), 1] == 0)
    assert np.all(a.backward_error[:, :, 0] == 0)


MLP_PERTS = [fwd(1, fc.noise.Gaussian(0.0, 0.3)), fwd(4, fc.noise.Uniform(-0.2, 0.2)),
             bwd(8, fc.noise.Uniform(-0.5, 0.5)), bwd(3, fc.noise.Gaussian(0.0, 0.2))]


def mlp_granularity_perts(granularity):
    # width-6 sites, where "element", "sample" and "step" draw differently
    return [fwd(1, fc.noise.Gaussian(0.0, 0.3), granularity=granularity),
            bwd(4, fc.noise.Uniform(-0.5, 0.5), granularity=granularity,
                timing=fc.timing.Every(3, offset=2))]


@pytest.mark.parametrize("opt, perts", [
    (fc.SGD(0.1, batch=16, momentum=0.9, grad_noise_std=1e-3), MLP_PERTS),
    (fc.Adam(0.01, batch=16, sampling="shuffle"), MLP_PERTS),
    (fc.SGD(0.1, batch=16), mlp_granularity_perts("sample")),
    (fc.SGD(0.1, batch=16), mlp_granularity_perts("step")),
], ids=["sgd-momentum", "adam", "granularity-sample", "granularity-step"])
def test_engines_agree_mlp(opt, perts):
    problem = mlp_problem()
    assert problem.cascade.n_ops == 8
    a, b = run_both(problem, opt, perts, init="random")
    # init="random" is the operators' initialiser seeded with the run's seed: the two runs
    # start apart (checked through their first objective) and both engines start alike
    assert a.objective[0, 0] != a.objective[1, 0]
    assert not a.diverged.any()
    assert_engines_agree(a, b)
    assert np.all(a.forward_error[:, :, 0] > 0)  # the noise is on
    if perts[0].granularity != "element":
        # the granularity is not ignored: element-wise draws give another trajectory
        c = fc.run(problem, opt, 200, mlp_granularity_perts("element"), seeds=[0, 1],
                   init="random")
        assert np.max(np.abs(a.final_weights - c.final_weights)) > 1e-6


# ---------------------------------------------------------------------------------------------
# 2. Appendix A.2: a persistent forward error moves the fixed point


@pytest.mark.parametrize("gamma", [0.1, 0.3, 0.45])
def test_a2_persistent_forward_error(gamma):
    delta, x0 = 0.3, 1.0
    problem = a2_problem()
    # Gaussian with std 0 is the constant perturbation sqrt(2) * delta on y_1
    perts = [fwd(1, fc.noise.Gaussian(mean=math.sqrt(2.0) * delta, std=0.0))]
    opt = fc.SGD(gamma)

    def paper(n):  # x_{t+1} = (1 - 2 gamma) x_t - 2 gamma delta
        x = [x0]
        for _ in range(n):
            x.append((1.0 - 2.0 * gamma) * x[-1] - 2.0 * gamma * delta)
        return np.array(x)

    # tolerance 1e-12 absolute on iterates of size <= 1: the engine's gradient is
    # sqrt(2) * sqrt(2) * (x + delta), which differs from 2 (x + delta) by an ulp per step, and
    # the recursion contracts (|1 - 2 gamma| < 1), so the gap stays near 1e-16
    for n in (1, 2, 3, 5, 10, 40):
        res = fc.run(problem, opt, n, perts, init=[x0])
        assert abs(res.final_weights[0, 0] - paper(n)[-1]) < 1e-12, n
    n = 200
    res = fc.run(problem, opt, n, perts, init=[x0])
    x = paper(n)
    # histories at w_t: the clean objective l(x_t) = x_t^2, the true gradient 2 |x_t|, and the
    # gradient error (2 delta)^2, the same at every step
    np.testing.assert_allclose(res.objective[0], x[:-1] ** 2, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.grad_norm[0], 2.0 * np.abs(x[:-1]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.grad_error[0], (2.0 * delta) ** 2, rtol=1e-12)
    # converged to -delta, not to the minimiser 0: (1 - 2 gamma)^200 < 1e-19
    assert abs(res.final_weights[0, 0] + delta) < 1e-12
    assert abs(res.grad_norm[0, -1] - 2.0 * delta) < 1e-12


# ---------------------------------------------------------------------------------------------
# 3. Appendix A.3 without compression


def test_a3_sgd_reaches_zero_in_one_step():
    A = [[-15.0, 13.0], [-5.0, 9.0]]
    s = 0.7
    problem = a3_problem(A)
    res = fc.run(problem, fc.SGD(0.1), 1, init=np.array([s, s, 0.0, 0.0]))
    # the paper's numbers at w_0: y_1 = (-2s, 4s), so l = ||y_1||^2 / 2 = 10 s^2 and
    # u_1 = (10s, 10s), u_2 = 2 <y_1, w_2> y_1 = 0; tolerances: a handful of ulps of values <= 10
    assert res.objective[0, 0] == pytest.approx(10.0 * s * s, rel=1e-14)
    assert res.grad_norm[0, 0] == pytest.approx(10.0 * math.sqrt(2.0) * s, rel=1e-14)
    # one step of size 0.1 lands on w_1 = 0, w_2 stays 0 (1e-12: 0.1 * 10 s rounds to s within
    # an ulp)
    np.testing.assert_allclose(res.final_weights[0], 0.0, rtol=0, atol=1e-12)
    # (0 is a fixed point, but an unstable one for this step: A^T A has the eigenvalue 490
    # along (1, -1) and 0.1 * 490 > 2, so a rounding residual would grow; the paper's claim is
    # the one step, from any s)
    for s in (1.0, -3.0, 1e-3):
        res = fc.run(problem, fc.SGD(0.1), 1, init=np.array([s, s, 0.0, 0.0]))
        np.testing.assert_allclose(res.final_weights[0], 0.0, rtol=0, atol=1e-12 * abs(s))


def test_a3_heavy_ball_converges():
    A = np.array([[-5.0, -4.0], [-5.0, 3.0]])
    gamma, beta, s, n = 0.05, 0.9, 1.0, 600
    problem = a3_problem(A)
    w0 = np.array([s, s, 0.0, 0.0])
    res = fc.run(problem, fc.SGD(gamma, momentum=beta), n, init=w0)
    assert not res.diverged.any()
    # the paper's heavy ball w_{t+1} = w_t - gamma g_t + beta (w_t - w_{t-1}) with
    # g_t = A^T A w_1 (w_2 stays 0, so v_1 = y_1 = A w_1), written out by hand
    w_prev, w, obj = w0[:2].copy(), w0[:2].copy(), []
    for _ in range(n):
        obj.append(0.5 * np.sum((A @ w) ** 2))
        w, w_prev = w - gamma * (A.T @ (A @ w)) + beta * (w - w_prev), w
    # the two forms of heavy ball are equal for a constant step but round differently; the
    # linear iteration contracts, so their gap stays at rounding level relative to the values
    # themselves (about 1e-13 observed over the 600 steps, values from 42.5 down to 1e-27):
    # rtol 1e-10, no atol
    np.testing.assert_allclose(res.objective[0], obj, rtol=1e-10, atol=0)
    np.testing.assert_allclose(res.final_weights[0, :2], w, rtol=1e-10, atol=0)
    assert np.all(res.final_weights[0, 2:] == 0.0)
    # converged: ||w_1|| went from sqrt(2) to below 1e-9 (rate sqrt(0.9) per step: the step
    # times the eigenvalues of A^T A, 51 and 24, lies inside heavy ball's (0, 2 (1 + beta)))
    assert np.linalg.norm(res.final_weights[0, :2]) < 1e-9
    # the momentum matters: plain SGD with the same step diverges here (0.05 * 51 > 2)
    plain = fc.run(problem, fc.SGD(gamma), 100, init=w0)
    assert plain.diverged[0] and plain.stop_reason[0].endswith("above max_norm")


# ---------------------------------------------------------------------------------------------
# 4. Bias of the perturbed gradient


def mc_errors(problem, w, perts, seeds):
    out = np.empty((len(seeds), problem.n_weights))
    for k, seed in enumerate(seeds):
        g = fc.perturbed_gradient(problem, w, perts, seed=seed)
        out[k] = g.perturbed - g.clean
    return out


@pytest.mark.parametrize("batch", [None, 16])
def test_perturbed_gradient_is_the_first_step_of_a_run(batch):
    # perturbed_gradient(seed=k) uses the streams of run k: from w_0 = 0 with step 0.5 (a power
    # of two, so w_1 = -0.5 g exactly), fc.run's first step is -0.5 times its gradient, to the
    # bit; and the NumPy twin gives the same gradient (1e-13: reordered sums)
    problem = logistic_problem(M=50, d=5, regularizer=fc.reg.NonConvex(1e-3))
    w0 = np.zeros(problem.n_weights)
    opt = fc.SGD(0.5) if batch is None else fc.SGD(0.5, batch=batch)
    g = fc.perturbed_gradient(problem, w0, BOTH, seed=11, batch=batch)
    res = fc.run(problem, opt, 1, BOTH, seeds=[11])
    assert np.array_equal(res.final_weights[0], -0.5 * g.perturbed)
    assert not np.allclose(g.perturbed, g.clean)  # the noise is on
    if batch is None:
        np.testing.assert_allclose(g.clean, problem.gradient(w0), rtol=1e-13)
    # the gradient error the run records is ||~u - u||^2 on the step's samples
    assert res.grad_error[0, 0] == pytest.approx(np.sum((g.perturbed - g.clean) ** 2),
                                                 rel=1e-12)
    ref = fc.perturbed_gradient(problem, w0, BOTH, seed=11, batch=batch, engine="numpy")
    np.testing.assert_allclose(ref.perturbed, g.perturbed, rtol=1e-13)
    np.testing.assert_allclose(ref.clean, g.clean, rtol=1e-13)


def test_perturbed_gradient_respects_timing():
    # Every(5, offset=1) is inactive at iteration 0 and active at 1 and 6
    problem = logistic_problem(M=50, d=5)
    w = 0.5 * problem.data.x_star
    perts = [fwd(1, fc.noise.Uniform(-1.0, 1.0), timing=fc.timing.Every(5, offset=1))]
    g0 = fc.perturbed_gradient(problem, w, perts, seed=2, iteration=0)
    assert np.array_equal(g0.perturbed, g0.clean)
    for t in (1, 6):
        g = fc.perturbed_gradient(problem, w, perts, seed=2, iteration=t)
        assert not np.allclose(g.perturbed, g.clean)


def test_zero_mean_backward_noise_is_unbiased():
    problem = logistic_problem(M=50, d=5, seed=3)
    w = 0.5 * problem.data.x_star
    low, high = -1.0, 1.0
    D = mc_errors(problem, w, [bwd(2, fc.noise.Uniform(low, high))], range(15_000))
    mean = D.mean(axis=0)
    se = D.std(axis=0, ddof=1) / math.sqrt(D.shape[0])
    # ~u - u = mean_s (-y_s h_s) eps_s is linear in eps, so its mean is 0: within 4 standard
    # errors in every coordinate (a 4-sigma band: a false alarm has probability ~6e-5 per
    # coordinate, and the seeds are fixed)
    assert np.all(np.abs(mean) < 4.0 * se), mean / se
    # the noise is really there, with the variance Eq. 5 implies:
    # Var_j = sum_s h_sj^2 Var(eps) / M^2; the sample variance of 15,000 draws has a relative
    # standard error of about sqrt(2 / 15,000) ~ 1.2%, so 5% is a 4-sigma band
    H, M = problem.data.X, problem.n_samples
    var_theory = np.sum(H ** 2, axis=0) * (high - low) ** 2 / 12.0 / M ** 2
    np.testing.assert_allclose(D.var(axis=0, ddof=1), var_theory, rtol=0.05)


def test_zero_mean_forward_noise_biases_the_gradient():
    problem = logistic_problem(M=50, d=5, seed=3)
    w = 0.5 * problem.data.x_star
    a = 2.0
    D = mc_errors(problem, w, [fwd(1, fc.noise.Uniform(-a, a))], range(15_000, 20_000))
    mean = D.mean(axis=0)
    se = D.std(axis=0, ddof=1) / math.sqrt(D.shape[0])
    # statistically nonzero: the norm of the mean is more than 4 times what zero-mean draws
    # would give (sqrt(sum se^2)), and so is at least one coordinate
    assert np.linalg.norm(mean) > 4.0 * np.sqrt(np.sum(se ** 2))
    assert np.max(np.abs(mean) / se) > 4.0
    # and it is the bias Eq. 5 predicts: E[sigmoid(z + delta)] for delta ~ U(-a, a) is
    # (softplus(z + a) - softplus(z - a)) / (2a), so E[~u - u] = mean_s (-y_s h_s) *
    # (E[sigmoid(z_s + delta)] - sigmoid(z_s)); within 4 standard errors per coordinate
    H, lab = problem.data.X, problem.data.y[:, 0]
    z = -lab * (H @ w)
    softplus = fc.reference.softplus
    expected_sig = (softplus(z + a) - softplus(z - a)) / (2.0 * a)
    bias = np.mean((-lab[:, None] * H) * (expected_sig - fc.reference.sigmoid(z))[:, None], axis=0)
    assert np.all(np.abs(mean - bias) < 4.0 * se), (mean - bias) / se
    assert np.linalg.norm(bias) > 10.0 * np.sqrt(np.sum(se ** 2))


# ---------------------------------------------------------------------------------------------
# 5. Threads


def test_n_jobs_gives_bit_identical_results():
    problem = logistic_problem()
    perts = [fwd(1, fc.noise.Uniform(-1.0, 1.0)), bwd(2, fc.noise.Gaussian(0.0, 1.0))]
    opt = fc.SGD(0.5, batch=8, grad_noise_std=1e-2)
    seeds = list(range(6))
    # max_norm 6 makes some runs stop, at iterations that depend on their noise, so the NaN
    # positions are part of the comparison
    kw = dict(seeds=seeds, max_norm=6.0, record_profile=True)
    r1 = fc.run(problem, opt, 300, perts, n_jobs=1, **kw)
    r2 = fc.run(problem, opt, 300, perts, n_jobs=2, **kw)
    assert r1.diverged.any() and not r1.diverged.all(), r1.stopped_at
    assert len(set(r1.stopped_at[r1.diverged].tolist())) > 1, r1.stopped_at
    for name in HISTORY + PROFILE + ("final_weights",):
        # bitwise: every number equal, and NaN exactly where the other has NaN
        assert np.array_equal(getattr(r1, name), getattr(r2, name), equal_nan=True), name
    assert np.isnan(r1.grad_norm).any()  # there are NaN positions to compare
    np.testing.assert_array_equal(r1.stopped_at, r2.stopped_at)
    assert r1.stop_reason == r2.stop_reason
    # and the runs are not copies of each other
    assert len({r.tobytes() for r in r1.final_weights}) == len(seeds)


def test_engine_releases_the_gil():
    problem = logistic_problem(M=2000, d=10, seed=0)
    perts = [fwd(1, fc.noise.Uniform(-1.0, 1.0))]
    window = {}

    def worker():
        window["start"] = time.perf_counter()
        # 30,000 steps: about 0.2 s with the AVX-512 kernels (8,000 came under the 0.05 s needed)
        window["result"] = fc.run(problem, fc.SGD(0.1), 30000, perts, seeds=0, n_jobs=1,
                                  record_every=15000)
        window["end"] = time.perf_counter()

    thread = threading.Thread(target=worker)
    stamps = []
    thread.start()
    while thread.is_alive():  # pure Python: needs the GIL to advance
        for _ in range(200):
            pass
        stamps.append(time.perf_counter())
    thread.join()
    start, end = window["start"], window["end"]
    duration = end - start
    assert window["result"].grad_norm.shape == (1, 2)
    assert duration > 0.05, "the run is too short to tell"
    # Robust criterion: the main thread's progress stamps cover the whole run, with no gap longer
    # than half of it. If the engine held the GIL, the main thread could not run during the
    # loop: one gap would span (nearly) the whole run.
    inside = [start] + [s for s in stamps if start < s < end] + [end]
    max_gap = float(np.max(np.diff(inside)))
    assert max_gap < 0.5 * duration, (
        f"main thread stalled {max_gap:.3f} s of a {duration:.3f} s run: GIL held?")
    assert len(inside) > 20


# ---------------------------------------------------------------------------------------------
# 6. Divergence is data


def hand_divergence(A, s, gamma, max_norm, n_iter):
    """Plain GD on appendix A.3's problem from w_1 = (s, s), w_2 = 0, following the engine's
    max_norm checks in order (gradient norm, then weight norm after the update); returns
    (stop iteration, reason). With A.3's integer matrix, s = 1 and step 100, every weight and
    gradient entry up to the stop is an integer below 2^53 (exact), and the norms cross the
    bounds with margins of 40% (sqrt(2) 999^t against powers of ten): no rounding question."""
    w = np.array([s, s], dtype=float)
    for t in range(n_iter):
        g = A.T @ (A @ w)
        if np.sqrt(np.sum(g * g)) > max_norm:
            return t, "gradient norm above max_norm"
        w = w - gamma * g
        if np.sqrt(np.sum(w * w)) > max_norm:
            return t, "weight norm above max_norm"
    return -1, ""


A3 = np.array([[-15.0, 13.0], [-5.0, 9.0]])
# run 0 starts at w = 0, a stationary point: it stays there whatever the step; run 1 starts at
# w_1 = (1, 1), an eigenvector of A^T A (eigenvalue 10): step 100 multiplies it by -999 per step
DIVERGENCE_INIT = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])


def check_stopped_histories(res, k, t_stop, record_every):
    """Histories of run k: finite before the stop's record, NaN after it (the record at the
    stop iteration itself is written before the checks that stop the run)."""
    rec_stop = t_stop // record_every
    for name in HISTORY:
        h = getattr(res, name)[k]
        assert np.all(np.isfinite(h[:rec_stop])), name
        assert np.all(np.isnan(h[rec_stop + 1:])), name


@pytest.mark.parametrize("max_norm", [1e10, 1e9], ids=["gradient-bound", "weight-bound"])
def test_divergence_is_reported_per_run(max_norm):
    problem = a3_problem(A3)
    n_iter = 50
    res = fc.run(problem, fc.SGD(100.0), n_iter, seeds=[0, 1], init=DIVERGENCE_INIT,
                 max_norm=max_norm)
    t_stop, reason = hand_divergence(A3, 1.0, 100.0, max_norm, n_iter)
    # the hand computation reaches both bounds: the gradient norm 10 sqrt(2) 999^t passes 1e10
    # at t = 3 first; the weight norm sqrt(2) 999^(t+1) passes 1e9 after the update of t = 2
    assert (t_stop, reason) == ((3, "gradient norm above max_norm") if max_norm == 1e10
                                else (2, "weight norm above max_norm"))
    # the diverging run: its iteration and reason
    assert res.stopped_at[1] == t_stop, res.stopped_at
    assert res.stop_reason[1] == reason
    assert res.diverged.tolist() == [False, True]
    check_stopped_histories(res, 1, t_stop, 1)
    # the recorded objectives up to the stop are the hand trajectory's, l = 10 * 999^(2t)
    # (exact integers up to 1e13; beyond 2^53 a few roundings: rtol 1e-14)
    np.testing.assert_allclose(res.objective[1, :t_stop + 1],
                               10.0 * 999.0 ** (2 * np.arange(t_stop + 1)), rtol=1e-14)
    # the other run of the same call finished normally, at the stationary point
    assert res.stopped_at[0] == -1 and res.stop_reason[0] == ""
    for name in HISTORY:
        assert np.all(np.isfinite(getattr(res, name)[0])), name
    assert np.all(res.final_weights[0] == 0.0)
    assert res.stable_grad_norm()[0] == 0.0
    assert np.isnan(res.stable_grad_norm()[1])  # the stop is in the first half of the records
    assert f"stopped at {t_stop}: {reason}" in res.summary()
    # the NumPy twin reports the same
    ref = fc.run(problem, fc.SGD(100.0), n_iter, seeds=[0, 1], init=DIVERGENCE_INIT,
                 max_norm=max_norm, engine="numpy")
    np.testing.assert_array_equal(ref.stopped_at, res.stopped_at)
    assert ref.stop_reason == res.stop_reason
    # the runs worked on copies: the caller's init array is untouched
    assert DIVERGENCE_INIT.tolist() == [[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]


# the NumPy twin computes with the infinities (overflow, inf - inf in the gradient error)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("record_every, reason", [
    (1, "non-finite objective"),
    (1000, "non-finite gradient"),
])
def test_divergence_non_finite_reason(record_every, reason):
    # Without a bound (max_norm = inf) a run goes on until a value is not finite. Scalar
    # problem with a huge input x = 1e100: y_1 = x w, loss y_1^2 / 2, gradient x y_1 = x^2 w.
    # From w_0 = 1e-60: at t = 0, y_1 = 1e40, l = 5e79, g = 1e140 (its square 1e280 is finite),
    # so w_1 = -1e140 (square 1e280, finite). At t = 1, y_1 = -1e240: its square overflows, so
    # the objective is +inf (checked first when t = 1 is recorded), and g = x y_1 = -inf (the
    # first check when it is not). Margins are 1e28 and more: no rounding question.
    # From w_0 = 0 everything is 0 and the run goes on.
    data = fc.datasets.Dataset(np.array([[1e100]]), np.array([[0.0]]))
    problem = fc.Problem(fc.Cascade([fc.ops.DiagLinear(A=[[1.0]]), fc.ops.SquaredError()]),
                         data)
    kw = dict(seeds=[0, 1], init=np.array([[0.0], [1e-60]]), max_norm=math.inf,
              record_every=record_every)
    res = fc.run(problem, fc.SGD(1.0), 10, **kw)
    assert res.stopped_at.tolist() == [-1, 1]
    assert res.stop_reason == ["", reason]
    assert res.final_weights[0, 0] == 0.0
    check_stopped_histories(res, 1, 1, record_every)
    assert res.objective[1, 0] == pytest.approx(5e79, rel=1e-14)  # exact up to two roundings
    if record_every == 1:
        assert res.objective[1, 1] == math.inf  # the record that stopped the run
    for name in HISTORY:
        assert np.all(np.isfinite(getattr(res, name)[0])), name
    ref = fc.run(problem, fc.SGD(1.0), 10, engine="numpy", **kw)
    np.testing.assert_array_equal(ref.stopped_at, res.stopped_at)
    assert ref.stop_reason == res.stop_reason


def test_stable_metrics_of_a_run_diverging_at_its_last_record():
    # result.py documents stable_grad_norm as "NaN for a run that diverged" and
    # stable_iteration_complexity as "-1 when it never does, e.g. after divergence". A run that
    # stops at (or after) its last record has no NaN record for the mean to propagate.
    problem = a3_problem(A3)
    res = fc.run(problem, fc.SGD(100.0), 4, seeds=[0, 1], init=DIVERGENCE_INIT)
    assert res.stopped_at.tolist() == [-1, 3]  # stops at t = 3, the last record
    assert np.all(np.isfinite(res.grad_norm[1]))
    assert np.isnan(res.stable_grad_norm()[1]), (
        "BUG (result.py Result.stable_grad_norm): a diverged run (stopped_at=3, "
        "'gradient norm above max_norm') gets the finite stable gradient norm "
        f"{res.stable_grad_norm()[1]!r}; documented: NaN for a run that diverged")
    assert res.stable_iteration_complexity()[1] == -1, (
        "BUG (result.py Result.stable_iteration_complexity): a diverged run gets the "
        f"iteration {res.stable_iteration_complexity()[1]}; documented: -1 after divergence")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the NumPy twin's overflow
def test_finite_weights_are_not_reported_non_finite():
    # One step of size 1e160 on l(w) = w^2 / 2 from w_0 = 1 gives w_1 = 1 - 1e160 = -1e160: a
    # finite weight, and with max_norm = inf no bound to pass. The documented stops are a norm
    # above max_norm or a value that is not finite, so the run should go on to t = 1, where the
    # objective w_1^2 / 2 = 5e319 overflows: stop at 1, "non-finite objective".
    data = fc.datasets.Dataset(np.array([[1.0]]), np.array([[0.0]]))
    problem = fc.Problem(fc.Cascade([fc.ops.DiagLinear(A=[[1.0]]), fc.ops.SquaredError()]),
                         data)
    res = fc.run(problem, fc.SGD(1e160), 5, init=[1.0], max_norm=math.inf)
    assert res.final_weights[0, 0] == -1e160 or res.stopped_at[0] != 0
    assert not (res.stop_reason[0] == "non-finite weights"
                and np.all(np.isfinite(res.final_weights[0]))), (
        "BUG (_engine.pyx run_one, wnorm = sqrt(norm2(wp, n_w)); same in reference_engine.py "
        "run_one): the weight norm is computed as sqrt(sum w^2), which overflows for finite "
        f"weights above ~1.3e154, so the run stops at t={res.stopped_at[0]} as 'non-finite "
        f"weights' with finite weights {res.final_weights[0].tolist()}; expected a stop at t=1, "
        "'non-finite objective'")
    assert (res.stopped_at[0], res.stop_reason[0]) == (1, "non-finite objective")


# ---------------------------------------------------------------------------------------------
# 7. Result metrics


def test_record_iterations_and_stable_grad_norm():
    problem = logistic_problem(regularizer=fc.reg.NonConvex(1e-3))
    opt = fc.SGD(0.5, grad_noise_std=1e-3)
    r1 = fc.run(problem, opt, 400, BOTH, seeds=[0, 1])
    r5 = fc.run(problem, opt, 400, BOTH, seeds=[0, 1], record_every=5)
    np.testing.assert_array_equal(r5.iterations, np.arange(0, 400, 5))
    assert r5.grad_norm.shape == (2, 80)
    # recording is clean and draws nothing, so the sparser record is exactly a subsample
    for name in HISTORY:
        assert np.array_equal(getattr(r5, name), getattr(r1, name)[:, ::5]), name
    assert np.array_equal(r5.final_weights, r1.final_weights)
    # n_iter not a multiple of record_every: records at 0, 5, ..., 200 (ceil(203 / 5) = 41)
    r203 = fc.run(problem, opt, 203, BOTH, seeds=[0], record_every=5)
    np.testing.assert_array_equal(r203.iterations, np.arange(0, 203, 5))
    # stable gradient norm: the mean over the last half of the records of the EWMA (factor
    # 0.99 per iteration, so 0.99**5 per record here; e_0 = x_0) of the true gradient norm,
    # by hand; 1e-12: the same sums, reordered
    x = r5.grad_norm
    e = np.empty_like(x)
    e[:, 0] = x[:, 0]
    a = 0.99 ** 5
    for t in range(1, x.shape[1]):
        e[:, t] = a * e[:, t - 1] + (1 - a) * x[:, t]
    np.testing.assert_allclose(r5.ewma_grad_norm(), e, rtol=1e-12)
    np.testing.assert_allclose(r5.stable_grad_norm(), e[:, 40:].mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(r5.stable_grad_norm(0.9),
                               fc.result.ewma(x, 0.9 ** 5)[:, 40:].mean(axis=1), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# 8. Common random numbers


def test_common_random_numbers():
    problem = logistic_problem()
    opt = fc.SGD(0.5, batch=16, sampling="shuffle", grad_noise_std=1e-2)
    zero = fc.noise.Uniform(0.0, 0.0)
    seeds = [3, 4]
    clean = fc.run(problem, opt, 150, seeds=seeds)
    only_fwd = fc.run(problem, opt, 150, [fwd(1, zero)], seeds=seeds)
    only_bwd = fc.run(problem, opt, 150, [bwd(2, zero)], seeds=seeds)
    # zero-amplitude noise still draws from its stream; the data order and gradient noise come
    # from their own streams, so the trajectories are bitwise those of the noiseless run
    for name in HISTORY + ("final_weights",):
        assert np.array_equal(getattr(only_fwd, name), getattr(clean, name)), name
        assert np.array_equal(getattr(only_bwd, name), getattr(clean, name)), name
    # likewise the forward draws do not depend on whether backward noise is present
    f = fc.run(problem, opt, 150, [fwd(1, fc.noise.Uniform(-1.0, 1.0))], seeds=seeds)
    fb = fc.run(problem, opt, 150, [fwd(1, fc.noise.Uniform(-1.0, 1.0)), bwd(2, zero)],
                seeds=seeds)
    assert np.array_equal(f.final_weights, fb.final_weights)
    assert not np.array_equal(f.final_weights, clean.final_weights)
    # with real noise, one step of either kind sees the same samples: the clean gradient on
    # the step's minibatch is the same
    w = 0.3 * problem.data.x_star
    g_f = fc.perturbed_gradient(problem, w, [fwd(1, fc.noise.Uniform(-2.0, 2.0))], seed=7,
                                batch=16)
    g_b = fc.perturbed_gradient(problem, w, [bwd(2, fc.noise.Uniform(-2.0, 2.0))], seed=7,
                                batch=16)
    g_other = fc.perturbed_gradient(problem, w, seed=8, batch=16)
    assert np.array_equal(g_f.clean, g_b.clean)
    assert not np.array_equal(g_f.clean, g_other.clean)
    assert not np.array_equal(g_f.perturbed, g_b.perturbed)


# ---------------------------------------------------------------------------------------------
# 9. Bad inputs


def test_bad_inputs_name_the_parameter():
    problem = logistic_problem(M=20, d=3)
    opt = fc.SGD(0.1)
    with pytest.raises(ValueError, match=r"\bn_iter\b"):
        fc.run(problem, opt, 0)
    with pytest.raises(ValueError, match=r"\brecord_every\b"):
        fc.run(problem, opt, 10, record_every=0)
    with pytest.raises(ValueError, match=r"\bengine\b"):
        fc.run(problem, opt, 10, engine="jax")
    with pytest.raises(ValueError, match=r"\bengine\b"):
        fc.perturbed_gradient(problem, np.zeros(3), engine="jax")
    with pytest.raises(ValueError, match=r"\bop\b"):
        fc.Perturbation(op=1, pass_="backward", noise=fc.noise.Uniform(-1.0, 1.0))
    with pytest.raises(ValueError, match=r"\bop\b"):
        fc.run(problem, opt, 10, [fwd(3, fc.noise.Uniform(-1.0, 1.0))])
    with pytest.raises(ValueError, match=r"\bop\b"):
        fc.perturbed_gradient(problem, np.zeros(3), [bwd(5, fc.noise.Uniform(-1.0, 1.0))])
    with pytest.raises(ValueError, match=r"\bstep_size\b"):
        fc.SGD(step_size=-0.1)
    with pytest.raises(ValueError, match=r"\bstep_size\b"):
        fc.Adam(step_size=-0.1)
    with pytest.raises(ValueError, match=r"\bbatch\b"):
        fc.SGD(0.1, batch="half")
    with pytest.raises(ValueError, match=r"\bseeds\b"):
        fc.run(problem, opt, 10, seeds=[])
