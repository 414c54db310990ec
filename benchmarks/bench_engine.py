"""Side-by-side timings of the compiled engine and its NumPy twin, in one process.

Run:  python benchmarks/bench_engine.py [--quick] [--json out.json]

Cases (microseconds per iteration, single run, one thread):
  paper      PAPER.md section 5's configuration: M = 2000, d = 10, full batch, uniform forward
             and backward noise, gradient noise, true gradient norm recorded every step.
  paper_r10  the same, recording every 10 steps.
  batch1     per-sample SGD (batch 1) on logistic regression with d = 123.
  mlp1       per-sample SGD on a 3-layer tanh network of width 64.
Ratios are numpy / cython (how many times faster the compiled engine is).
"""
import argparse
import json
import time

import numpy as np

import fastcascade as fc


def _time(fn, min_seconds=0.5):
    """Best of repeated calls (seconds per call), at least min_seconds in all."""
    best, total = np.inf, 0.0
    while total < min_seconds:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, total = min(best, dt), total + dt
    return best


def paper_case(record_every):
    data = fc.datasets.synthetic_logistic(2000, 10, seed=0)
    problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), data,
                         regularizer=fc.reg.NonConvex(1e-3))
    half = 2.0 / np.sqrt(10)
    perts = [fc.Perturbation(op=1, pass_="forward", noise=fc.noise.Uniform(-half, half)),
             fc.Perturbation(op=2, pass_="backward", noise=fc.noise.Uniform(-half, half))]
    return problem, fc.SGD(0.05, grad_noise_std=1e-3), perts, record_every


def batch1_case():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 123))
    y = np.where(rng.random(2000) < 0.5, 1.0, -1.0)
    problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), (X, y),
                         regularizer=fc.reg.L2(1e-4))
    perts = [fc.Perturbation(op=1, pass_="forward", noise=fc.noise.Gaussian(0.0, 0.1))]
    return problem, fc.SGD(0.01, batch=1), perts, 1000


def mlp_case():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 64))
    y = np.tanh(X[:, :1])
    ops = [fc.ops.Linear(64, 64), fc.ops.Tanh(), fc.ops.Linear(64, 64), fc.ops.Tanh(),
           fc.ops.Linear(64, 1), fc.ops.SquaredError()]
    problem = fc.Problem(fc.Cascade(ops), (X, y))
    perts = [fc.Perturbation(op=2, pass_="forward", noise=fc.noise.Gaussian(0.0, 0.01))]
    return problem, fc.SGD(0.01, batch=1), perts, 1000


CASES = {
    "paper": lambda: paper_case(1),
    "paper_r10": lambda: paper_case(10),
    "batch1": batch1_case,
    "mlp1": mlp_case,
}


def measure(name, quick=False):
    problem, opt, perts, record_every = CASES[name]()
    n_cy = 2000 if quick else 20000
    n_np = 100 if quick else 500
    if name in ("batch1", "mlp1"):
        n_cy *= 10
        n_np *= 4

    def go(engine, n):
        return lambda: fc.run(problem, opt, n_iter=n, perturbations=perts, seeds=[0],
                              record_every=record_every, engine=engine)

    us_cy = _time(go("cython", n_cy)) / n_cy * 1e6
    us_np = _time(go("numpy", n_np), min_seconds=0.2 if quick else 1.0) / n_np * 1e6
    return {"case": name, "cython_us_per_iter": us_cy, "numpy_us_per_iter": us_np,
            "ratio": us_np / us_cy}


def main():
    parser = argparse.ArgumentParser(description="fastcascade engine benchmarks")
    parser.add_argument("--quick", action="store_true", help="short runs")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("cases", nargs="*", default=list(CASES), help="cases to run")
    args = parser.parse_args()
    rows = []
    print(f"{'case':<12}{'cython us/it':>14}{'numpy us/it':>14}{'ratio':>9}")
    for name in args.cases:
        r = measure(name, args.quick)
        rows.append(r)
        print(f"{name:<12}{r['cython_us_per_iter']:>14.2f}{r['numpy_us_per_iter']:>14.2f}"
              f"{r['ratio']:>9.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": fc.build_info(), "results": rows}, f, indent=2)


if __name__ == "__main__":
    main()
