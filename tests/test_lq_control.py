"""Linear-quadratic control operators: derivatives, kernels against the reference, closed form."""
import numpy as np
import pytest

import fastcascade as fc
from fastcascade import reference


def _lq_ops(n, m, seed):
    rng = np.random.default_rng(seed)
    A, B = rng.standard_normal((n, n)), rng.standard_normal((n, m))
    Q, R = rng.standard_normal((n, n)), rng.standard_normal((m, m))  # not symmetric on purpose
    return fc.ops.LQStep(A, B, Q, R), fc.ops.LQTerminal(rng.standard_normal((n, n)))


@pytest.mark.parametrize("n,m,B", [(1, 1, 1), (3, 2, 4), (4, 1, 2), (2, 3, 5)])
@pytest.mark.parametrize("seed", [0, 1])
def test_lq_vjps_match_finite_differences_and_the_reference(n, m, B, seed):
    step, term = _lq_ops(n, m, seed)
    rng = np.random.default_rng(seed + 10)
    z = rng.standard_normal((B, n + 1))
    w = rng.standard_normal(step.n_weights)
    h = 1e-6
    for op, wop in ((step, w), (term, None)):
        g = rng.standard_normal((B, op.d_out))
        gi, gw = op.vjp(z, g, wop)
        # kernels against the NumPy twin: 1e-12 relative (same formulas, other summation order)
        np.testing.assert_allclose(op.forward(z, wop), reference.forward(op, z, wop),
                                   rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(gi, reference.vjp_input(op, z, g, wop), rtol=1e-12, atol=1e-12)
        # central differences of <g, f(z)> (a quadratic: the O(h^2) error is rounding only)
        f = lambda zz, ww: float(np.sum(g * op.forward(zz, ww)))  # noqa: E731
        fd_z = np.zeros_like(z)
        for idx in np.ndindex(*z.shape):
            e = np.zeros_like(z)
            e[idx] = h
            fd_z[idx] = (f(z + e, wop) - f(z - e, wop)) / (2 * h)
        np.testing.assert_allclose(gi, fd_z, rtol=1e-6, atol=1e-6)
        if wop is not None:
            np.testing.assert_allclose(gw, reference.vjp_weights(op, z, g, wop), rtol=1e-12,
                                       atol=1e-12)
            fd_w = np.array([(f(z, wop + e) - f(z, wop - e)) / (2 * h)
                             for e in h * np.eye(wop.size)])
            np.testing.assert_allclose(gw, fd_w, rtol=1e-6, atol=1e-6)


def test_lq_cascade_cost_is_the_closed_form_rollout():
    p = fc.problems.lq_control(state_dim=3, control_dim=2, horizon=4, n_samples=5, seed=2)
    w = p.init_weights(seed=3)
    steps = p.cascade.operators[:-1]
    x = p.data.X[:, :3]
    cost = np.zeros(5)
    for t, op in enumerate(steps):
        K = w[p.cascade.weight_slice(t + 1)].reshape(2, 3)
        u = x @ K.T
        cost += np.sum(x * x, axis=1) + 0.1 * np.sum(u * u, axis=1)
        x = x @ op.A.T + u @ op.B.T
    cost += np.sum(x * x, axis=1)
    assert p.objective(w) == pytest.approx(cost.mean(), rel=1e-12)
    np.testing.assert_allclose(p.gradient(w), reference.gradient(p, w), rtol=1e-10, atol=1e-12)


def test_lq_training_lowers_the_cost_and_engines_agree():
    p = fc.problems.lq_control(state_dim=3, control_dim=2, horizon=6, n_samples=64, seed=0)
    perts = [fc.Perturbation(3, "forward", fc.noise.Gaussian(0.0, 0.05))]
    kw = dict(n_iter=100, perturbations=perts, seeds=[0], record_every=10)
    a = fc.run(p, fc.SGD(0.01, batch=16), **kw)
    b = fc.run(p, fc.SGD(0.01, batch=16), engine="numpy", **kw)
    np.testing.assert_allclose(a.objective, b.objective, rtol=1e-9)
    assert a.objective[0, -1] < 0.7 * a.objective[0, 0]


def test_lq_bad_shapes():
    with pytest.raises(ValueError, match="B: expected shape"):
        fc.ops.LQStep(np.eye(2), np.ones((3, 1)))
    with pytest.raises(ValueError, match="Qf"):
        fc.ops.LQTerminal(np.ones((2, 3)))
