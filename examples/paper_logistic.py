"""The paper's logistic model (docs/model.md sec. 6) under forward noise and under backward noise.

Zero-mean noise of the same size is injected either after f_1 (forward, delta_1) or on the
message f_2 sends back to f_1 (backward, eps_2). As the step size shrinks, the stable gradient
norm of clean SGD and of backward-perturbed SGD keeps falling, while forward noise leaves a
plateau: zero-mean forward noise biases the gradient (docs/model.md, section 5: Theorem 2).

Run:  python examples/paper_logistic.py [--iters T] [--jobs N]
"""
import argparse

import numpy as np

import fastcascade as fc


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=20_000, help="iterations per run")
    parser.add_argument("--jobs", type=int, default=2, help="threads")
    parser.add_argument("--sigma", type=float, default=2.0, help="noise level sigma_f = sigma_b")
    args = parser.parse_args()

    data = fc.datasets.synthetic_logistic(n_samples=2000, n_features=10, seed=0)
    problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), data,
                         regularizer=fc.reg.NonConvex(rho=1e-3))
    half_width = args.sigma / np.sqrt(data.n_features)   # U(-sigma/sqrt(d), sigma/sqrt(d))
    noise = fc.noise.Uniform(-half_width, half_width)
    settings = {
        "clean": [],
        "forward": [fc.Perturbation(op=1, pass_="forward", noise=noise)],
        "backward": [fc.Perturbation(op=2, pass_="backward", noise=noise)],
    }
    step_sizes = [1.0, 0.3, 0.1, 0.03]
    seeds = range(2)

    print(f"stable gradient norm (mean over {len(seeds)} seeds, T = {args.iters}, "
          f"sigma = {args.sigma})")
    print(f"{'step size':>10}" + "".join(f"{name:>12}" for name in settings))
    for gamma in step_sizes:
        opt = fc.SGD(step_size=gamma, batch="full", grad_noise_std=1e-3)
        row = []
        for perts in settings.values():
            res = fc.run(problem, opt, n_iter=args.iters, perturbations=perts, seeds=seeds,
                         n_jobs=args.jobs, record_every=10)
            row.append(np.mean(res.stable_grad_norm(factor=0.9)))
        print(f"{gamma:>10g}" + "".join(f"{v:>12.3e}" for v in row))


if __name__ == "__main__":
    main()
