"""Recording the weights trajectory (record_weights=True)."""
import numpy as np

import fastcascade as fc


def test_recorded_weights_are_the_iterates(tmp_path):
    problem = fc.problems.paper_logistic(n_samples=300, n_features=4)
    perts = [fc.Perturbation(1, "forward", fc.noise.Gaussian(0.0, 0.5))]
    opt = fc.SGD(0.5, batch=16, momentum=0.5)
    res = fc.run(problem, opt, 40, perts, seeds=[0, 1], record_every=8, record_weights=True,
                 n_jobs=2)
    assert res.weights.shape == (2, 5, problem.n_weights)
    np.testing.assert_array_equal(res.weights[:, 0], 0.0)  # w_0 = zeros
    for rec, t in enumerate(res.iterations[1:], start=1):
        # a run of t iterations with the same seeds ends at the recorded w_t, bit for bit
        short = fc.run(problem, opt, int(t), perts, seeds=[0, 1])
        np.testing.assert_array_equal(res.weights[:, rec], short.final_weights)
    ref = fc.run(problem, opt, 40, perts, seeds=[0, 1], record_every=8, record_weights=True,
                 engine="numpy")
    np.testing.assert_allclose(res.weights, ref.weights, rtol=1e-9, atol=1e-15)
    path = tmp_path / "r.npz"
    res.save(path)
    assert fc.load(path).identical(res)
    assert fc.run(problem, opt, 10, perts, seeds=[0]).weights is None
