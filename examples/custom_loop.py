"""``fc.perturbed_gradient`` inside your own training loop.

The compiled engine (``fc.run``) runs whole loops; when the loop is yours (a custom optimizer,
a stopping rule, logging, another framework around it), ask fastcascade for one step's perturbed
gradient instead. Here: hand-written Adam on the paper's logistic model, with backward noise
on the message f_2 sends to f_1, a fresh seed per step, minibatches of 64, and a log of the
gradient error ||~g - g|| against the clean gradient on the same samples.

Run:  python examples/custom_loop.py [--iters T]
"""
import argparse

import numpy as np

import fastcascade as fc


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=2000, help="steps")
    args = parser.parse_args()

    data = fc.datasets.synthetic_logistic(n_samples=2000, n_features=10, seed=0)
    problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), data,
                         regularizer=fc.reg.NonConvex(rho=1e-3))
    perts = [fc.Perturbation(op=2, pass_="backward", noise=fc.noise.Uniform(-0.6, 0.6))]

    w = np.zeros(problem.n_weights)
    m, v = np.zeros_like(w), np.zeros_like(w)
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    errors = []
    for t in range(args.iters):
        # one step's streams: a new SeedSequence per step (base seed 0, step t)
        g = fc.perturbed_gradient(problem, w, perts, seed=np.random.SeedSequence([0, t]),
                                  batch=64, iteration=t)
        errors.append(np.linalg.norm(g.perturbed - g.clean))
        m = b1 * m + (1 - b1) * g.perturbed
        v = b2 * v + (1 - b2) * g.perturbed ** 2
        w -= lr * (m / (1 - b1 ** (t + 1))) / (np.sqrt(v / (1 - b2 ** (t + 1))) + eps)
        if t % (args.iters // 5) == 0 or t == args.iters - 1:
            print(f"step {t:6d}  objective {problem.objective(w):.6f}  "
                  f"|grad| {np.linalg.norm(problem.gradient(w)):.3e}  "
                  f"mean |~g - g| so far {np.mean(errors):.3e}")


if __name__ == "__main__":
    main()
