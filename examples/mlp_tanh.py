"""A 4-layer tanh network with a different perturbation at each layer.

    x -> Linear -> tanh -> Linear -> tanh -> Linear -> tanh -> Linear -> squared error
         f_1       f_2     f_3       f_4     f_5       f_6     f_7       f_8

- Gaussian noise on the first hidden activations (forward, after f_2);
- bfloat16 rounding of the second hidden activations, stochastic (forward, after f_4);
- Top-2 compression of the gradient message into the third hidden layer (backward, f_7 -> f_6);
- rare heavy-tailed (Student t) spikes on the message into the first hidden layer (backward,
  f_3 -> f_2), at 1 % of the steps.

It trains the network on a synthetic regression task with and without these perturbations
(same seeds, hence the same minibatches and gradient noise), prints the summary tables, and
writes the convergence plot and the per-operator amplification profile.

Run:  python examples/mlp_tanh.py [--iters T] [--jobs N] [--out DIR]
"""
import argparse
import os

import numpy as np

import fastcascade as fc


def make_problem(n_samples=500, d=8, width=16, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, d))
    y = np.tanh(X @ rng.standard_normal(d) / np.sqrt(d))[:, None]
    cascade = fc.Cascade([
        fc.ops.Linear(d, width), fc.ops.Tanh(),
        fc.ops.Linear(width, width), fc.ops.Tanh(),
        fc.ops.Linear(width, width), fc.ops.Tanh(),
        fc.ops.Linear(width, 1), fc.ops.SquaredError(),
    ])
    return fc.Problem(cascade, (X, y), regularizer=fc.reg.L2(1e-4))


PERTURBATIONS = [
    fc.Perturbation(op=2, pass_="forward", noise=fc.noise.Gaussian(0.0, 0.05)),
    fc.Perturbation(op=4, pass_="forward",
                    noise=fc.noise.LowPrecision("bfloat16", rounding="stochastic")),
    fc.Perturbation(op=7, pass_="backward", noise=fc.noise.TopK(2)),
    fc.Perturbation(op=3, pass_="backward", noise=fc.noise.StudentT(df=2.0, scale=0.5),
                    timing=fc.timing.Bernoulli(0.01)),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=5000, help="iterations per run")
    parser.add_argument("--jobs", type=int, default=2, help="threads")
    parser.add_argument("--out", default="mlp-tanh-out", help="folder for the PNGs")
    args = parser.parse_args()

    problem = make_problem()
    opt = fc.SGD(step_size=0.05, batch=32, momentum=0.9)
    common = dict(n_iter=args.iters, seeds=range(4), n_jobs=args.jobs, record_every=10,
                  init="random")
    clean = fc.run(problem, opt, **common)
    perturbed = fc.run(problem, opt, perturbations=PERTURBATIONS, record_profile=True,
                       **common)
    for name, res in (("clean", clean), ("perturbed", perturbed)):
        print(f"\n{name}:")
        print(res.summary(factor=0.99 ** 10))  # the EWMA 0.99 per iteration, per record

    import matplotlib
    matplotlib.use("Agg")
    from fastcascade import plotting

    os.makedirs(args.out, exist_ok=True)
    ax = plotting.convergence({"clean": clean, "perturbed": perturbed}, smooth=0.9)
    print("\nwrote", plotting.save(ax, os.path.join(args.out, "convergence.png")))
    ax = plotting.amplification_profile(perturbed)
    print("wrote", plotting.save(ax, os.path.join(args.out, "profile.png")))


if __name__ == "__main__":
    main()
