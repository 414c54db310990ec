"""Instructions per iteration of the engine's loop, counted by valgrind's callgrind.

Wall-clock timings on a shared 2-core virtual machine swing by 20% or more from one run to the
next (other tenants of the host); instruction counts do not: the same build and inputs give the
same count whatever else the machine is doing. Use them to compare two versions of a kernel.

Run:  python benchmarks/instructions.py [case ...]
(needs valgrind on PATH and fastcascade importable: installed, or PYTHONPATH=. after
`python setup.py build_ext --inplace`)

Cases: paper (the paper's setup (docs/model.md sec. 6), recorded every step), paper_r10 (recorded
every 10 steps), mlp (per-sample tanh MLP, width 64), logreg (per-sample logistic, d = 123).
Only the compiled ``run_one`` call is counted (toggle-collect), divided by the iterations run.
"""
import os
import re
import subprocess
import sys
import tempfile

CASES = {"paper": 200, "paper_r10": 200, "mlp": 4000, "logreg": 20000}


def run_case(case, n_iter):
    """The run itself (in the child process that valgrind watches)."""
    import fastcascade as fc
    from fastcascade.bench import logreg_problem, mlp_problem, paper_problem
    if case.startswith("paper"):
        rec = 10 if case == "paper_r10" else 1
        problem, opt, perts, _ = paper_problem(rec)
        fc.run(problem, opt, n_iter, perturbations=perts, record_every=rec, seeds=0)
    else:
        problem, perts = mlp_problem(64) if case == "mlp" else logreg_problem()
        fc.run(problem, fc.SGD(0.01, batch=1), n_iter, perturbations=perts, record_every=1000,
               seeds=0)


def count(case, n_iter):
    """Instructions per iteration of `case` under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
               "--toggle-collect=*__pyx_pf_*run_one*", sys.executable, __file__, "--child",
               case, str(n_iter)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or m is None:
        raise RuntimeError(f"the {case} run under callgrind failed:\n{proc.stderr[-2000:]}")
    return int(m.group(1)) / n_iter


def main(argv):
    if argv[:1] == ["--child"]:
        run_case(argv[1], int(argv[2]))
        return 0
    cases = argv or list(CASES)
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        print(f"unknown case(s) {unknown}; expected some of {list(CASES)}", file=sys.stderr)
        return 2
    for case in cases:
        print(f"{case:<10} {count(case, CASES[case]):>12,.0f} instructions/iteration")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
