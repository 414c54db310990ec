"""Side-by-side timings of the compiled engine against the NumPy reference, scikit-learn and JAX.

Run:  python benchmarks/bench_engine.py [--quick] [--json out.json] [--cases abcdefgh]

The same as ``fastcascade bench``: the cases (a)-(e) of the project's speed targets, described in
``fastcascade/bench.py``. Ratios are baseline time / fastcascade time.
"""
import sys

from fastcascade.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
