"""Engine fingerprints: SHA-256 digests of the compiled engine's outputs, to check "same bits".

A fixed, small set of configurations covers the engine's code paths (the paper's logistic
problem, the tanh network per sample and in minibatches, every noise kind on the forward and
the backward pass, momentum and Adam, the profile recording, the record thread, the inlined
PCG64 draws and the vector kernels themselves). Each configuration gives one digest: SHA-256
over the name, dtype, shape and raw bytes of each of its output arrays, in a fixed order. They
are computed at every SIMD level this CPU has (``_ops.set_simd_level``).

``benchmarks/fingerprints.json`` stores them per machine, then by build kind ("release",
"debug", with "-native" appended for a -march=native build) and SIMD level. The digests depend
on the C compiler, libm and BLAS (OpenBLAS picks its kernels by CPU: the same wheel gives other
bits on a Zen 4 and a Zen 5 core) as well as on the kernels: they are compared only with those
written on a machine of the same description (``machine()``: CPU name, BLAS and its kernels,
numpy, Python), before and after a change; on another machine the check reports that none are
stored for it (and ``--write`` adds them beside the others).

Usage::

    python benchmarks/fingerprints.py            # check against the stored digests
    python benchmarks/fingerprints.py --write    # store the digests of this build
    python benchmarks/fingerprints.py --show     # print them, check nothing

The check exits with status 1 when a digest differs (naming the configuration and level),
0 otherwise; levels or a build kind with no stored digests are reported and skipped
(status 2 with ``--strict``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
from pathlib import Path

# Run as a script: this checkout's package, not another installed one (the script sits in
# benchmarks/). Imported (the tests do), it leaves sys.path alone: processes spawned later (dask
# workers, process pools) inherit sys.path, and an unbuilt checkout first on it breaks them.
if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import fastcascade as fc  # noqa: E402
from fastcascade._kernels import _noise, _ops  # noqa: E402
from fastcascade.perturbation import perturbation_tables  # noqa: E402

__all__ = ["CONFIGS", "LEVELS", "available_levels", "build_kind", "digest_arrays",
           "fingerprints", "load", "machine", "machine_key", "stored_digests", "main"]

DIGEST_FILE = Path(__file__).with_name("fingerprints.json")

# every level set_simd_level knows, best first (those this CPU lacks are skipped)
LEVELS = ("avx512", "avx2+fma", "baseline")

RESULT_FIELDS = ("objective", "grad_norm", "grad_error", "step_size", "forward_error",
                 "backward_error", "weights", "final_weights", "stopped_at",
                 "nonfinite_injections")


def digest_arrays(arrays):
    """SHA-256 (hex) of the named arrays: name, dtype, shape and raw bytes of each in turn.

    Parameters
    ----------
    arrays : sequence of (str, array_like or None)

    Returns
    -------
    str
    """
    h = hashlib.sha256()
    for name, a in arrays:
        h.update(name.encode())
        if a is None:
            h.update(b"<none>")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _result_arrays(res):
    return [(name, getattr(res, name)) for name in RESULT_FIELDS]


def _run(problem, opt, n_iter, perts=(), **kw):
    kw.setdefault("seeds", [3])
    return _result_arrays(fc.run(problem, opt, n_iter=n_iter, perturbations=perts,
                                 progress=False, **kw))


# ---- the problems (small: the whole check runs in a few seconds) ----------------------------

def _paper():
    problem = fc.problems.paper_logistic(n_samples=2000, n_features=10, seed=0)
    half = 2.0 / np.sqrt(10)
    perts = [fc.Perturbation(op=1, pass_="forward", noise=fc.noise.Uniform(-half, half)),
             fc.Perturbation(op=2, pass_="backward", noise=fc.noise.Uniform(-half, half))]
    return problem, perts


def _logreg(n_samples=300, d=123):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_samples, d)) / np.sqrt(d)
    y = np.where(rng.random(n_samples) < 1.0 / (1.0 + np.exp(-3.0 * X @ rng.normal(size=d))),
                 1.0, -1.0)
    return fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), (X, y),
                      regularizer=fc.reg.L2(1e-4))


def _mlp(width, n_samples=200, depth=2, activation="tanh"):
    return fc.problems.mlp(depth=depth, width=width, activation=activation,
                           n_samples=n_samples, seed=0)


# ---- the configurations: name -> function returning [(array name, array), ...] --------------

def cfg_paper():
    problem, perts = _paper()
    return _run(problem, fc.SGD(0.05, grad_noise_std=1e-3), 150, perts)


def cfg_paper_record10():
    problem, perts = _paper()
    return _run(problem, fc.SGD(0.05, grad_noise_std=1e-3), 150, perts, record_every=10)


def cfg_paper_record_thread():
    # one run, two threads: the records on the helper thread
    problem, perts = _paper()
    return _run(problem, fc.SGD(0.05, grad_noise_std=1e-3), 150, perts, n_jobs=2)


def cfg_paper_profile():
    problem, perts = _paper()
    return _run(problem, fc.SGD(0.05), 60, perts, record_profile=True, record_weights=True)


def cfg_logreg_b1():
    perts = [fc.Perturbation(op=1, noise=fc.noise.Gaussian(0.0, 0.1))]
    return _run(_logreg(), fc.SGD(0.01, batch=1), 600, perts, record_every=50)


def cfg_logreg_b8_shuffle():
    perts = [fc.Perturbation(op=1, noise=fc.noise.Gaussian(0.0, 0.1))]
    return _run(_logreg(), fc.SGD(0.05, batch=8, sampling="shuffle"), 200, perts,
                record_every=20)


def cfg_mlp_b1_w64():
    perts = [fc.Perturbation(op=2, noise=fc.noise.Gaussian(0.0, 0.01))]
    return _run(_mlp(64), fc.SGD(0.01, batch=1), 300, perts, record_every=50, init="random")


def cfg_mlp_b1_w13():
    # odd width: every kernel's tail
    perts = [fc.Perturbation(op=2, noise=fc.noise.Gaussian(0.0, 0.01))]
    return _run(_mlp(13), fc.SGD(0.01, batch=1), 300, perts, record_every=50, init="random")


def cfg_mlp_b1_w64_2t():
    perts = [fc.Perturbation(op=2, noise=fc.noise.Gaussian(0.0, 0.01))]
    return _run(_mlp(64), fc.SGD(0.01, batch=1), 300, perts, record_every=50, init="random",
                n_jobs=2)


def cfg_mlp_minibatch():
    # batch 32 at width 16: 32 * 16 * 16 multiply-adds, the BLAS path
    perts = [fc.Perturbation(op=2, noise=fc.noise.Gaussian(0.0, 0.01)),
             fc.Perturbation(op=3, pass_="backward", noise=fc.noise.Uniform(-0.01, 0.01))]
    return _run(_mlp(16, n_samples=256), fc.SGD(0.01, batch=32), 80, perts, record_every=10,
                init="random")


def cfg_mlp_minibatch_loops():
    # batch 4 at width 24: under the BLAS threshold, the vector loops
    perts = [fc.Perturbation(op=2, noise=fc.noise.Gaussian(0.0, 0.01))]
    return _run(_mlp(24), fc.SGD(0.01, batch=4), 120, perts, record_every=10, init="random")


def cfg_mlp_sigmoid_relu():
    out = []
    for act in ("sigmoid", "relu"):
        out += _run(_mlp(12, activation=act), fc.SGD(0.05, batch=8), 60, record_every=10,
                    init="random")
    return out


def cfg_momentum():
    problem, perts = _paper()
    out = _run(problem, fc.SGD(0.05, momentum=0.9), 80, perts, record_every=5)
    out += _run(_mlp(16), fc.SGD(0.01, batch=1, momentum=0.5, nesterov=True), 200,
                record_every=20, init="random")
    return out


def cfg_adam():
    problem, perts = _paper()
    out = _run(problem, fc.Adam(0.01), 80, perts, record_every=5)
    out += _run(_mlp(16), fc.Adam(1e-3, batch=4, clip_norm=1.0), 100, record_every=20,
                init="random")
    return out


def cfg_lq_control():
    problem = fc.problems.lq_control(state_dim=4, control_dim=2, horizon=6, n_samples=64)
    perts = [fc.Perturbation(op=2, noise=fc.noise.Gaussian(0.0, 0.01))]
    return _run(problem, fc.SGD(0.001, batch=8), 60, perts, record_every=10,
                record_profile=True)


NOISES = {
    "uniform": lambda: fc.noise.Uniform(-0.05, 0.05),
    "gaussian": lambda: fc.noise.Gaussian(0.01, 0.05),
    "laplace": lambda: fc.noise.Laplace(0.0, 0.05),
    "student_t": lambda: fc.noise.StudentT(3.0, 0.02),
    "rademacher": lambda: fc.noise.Rademacher(0.02),
    "constant": lambda: fc.noise.Constant(0.01),
    "relative": lambda: fc.noise.Relative(fc.noise.Uniform(-0.1, 0.1)),
    "low_precision": lambda: fc.noise.LowPrecision("float16"),
    "low_precision_stochastic": lambda: fc.noise.LowPrecision("bfloat16", "stochastic"),
    "fixed_point": lambda: fc.noise.FixedPoint(2.0 ** -8),
    "top_k": lambda: fc.noise.TopK(3),
    "rand_k": lambda: fc.noise.RandK(4),
    "scaled_sign": lambda: fc.noise.ScaledSign(),
    "bit_flip": lambda: fc.noise.BitFlip(0.01, [0, 30, 51, 62]),
}


def _noise_config(make):
    def cfg():
        # the same noise kind on the forward pass (after op 2) and on the backward message
        # from op 3, on a width-16 network in batches of 8 (full-batch draws of 128 and more
        # elements for the paper problem's long vectors are covered above)
        perts = [fc.Perturbation(op=2, noise=make()),
                 fc.Perturbation(op=3, pass_="backward", noise=make())]
        return _run(_mlp(16, n_samples=128), fc.SGD(0.01, batch=8), 40, perts,
                    record_every=10, init="random", record_profile=True)
    return cfg


def cfg_granularity_timing_magnitude():
    perts = [fc.Perturbation(op=2, noise=fc.noise.Gaussian(0.0, 0.05), granularity="sample",
                             timing=fc.timing.Every(3, offset=1)),
             fc.Perturbation(op=4, noise=fc.noise.Uniform(-0.05, 0.05), granularity="step",
                             magnitude=fc.magnitude.PowerDecay(0.5)),
             fc.Perturbation(op=3, pass_="backward", noise=fc.noise.Laplace(0.0, 0.02),
                             timing=fc.timing.Bernoulli(0.5))]
    return _run(_mlp(16, n_samples=128), fc.SGD(0.01, batch=8), 60, perts, record_every=10,
                init="random")


# draw counts around the draws' blocks (4 scalar, 8 AVX2, 20 AVX-512; the vector variants from
# 128 on) and beyond
PCG64_COUNTS = (0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 19, 20, 21, 31, 32, 33, 127, 128, 129, 131,
                135, 143, 144, 145, 147, 148, 149, 159, 160, 161, 191, 255, 256, 257, 1001, 4099)


def cfg_pcg64_streams():
    """The inlined PCG64's uniforms (added, and filled for relative noise) and Gaussians, for
    counts around every block size, with the generator state after each."""
    out = []
    for relative in (False, True):
        noise = fc.noise.Uniform(-0.5, 2.0)
        pint, preal, times = perturbation_tables(
            [fc.Perturbation(op=1, noise=fc.noise.Relative(noise) if relative else noise)], 1)
        gen = np.random.default_rng(11)
        gen.random(dtype=np.float32)   # half of a 64-bit draw buffered
        for n in PCG64_COUNTS:
            z = np.ones((1, n)) if relative else np.linspace(-1.0, 1.0, n)[None, :]
            _noise.apply(pint[0], preal[0], gen, z, 0, times)
            st = gen.bit_generator.state["state"]
            out.append((f"{relative}-{n}", z))
            out.append((f"{relative}-{n}-state", np.array([st["state"] >> 64,
                                                            st["state"] & (2 ** 64 - 1)],
                                                           dtype=np.uint64)))
    return out


# inputs for the elementwise kernels: specials, range cuts and a spread of ordinary values
def _fastmath_inputs():
    rng = np.random.default_rng(5)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 2.2250738585072014e-308,
               -2.2250738585072014e-308, 1e-300, -1e-300, 1e-17, -1e-17, 1e-8, -1e-8,
               1.7976931348623157e308, -1.7976931348623157e308, 707.9, 708.0, 708.0000000001,
               -708.0, -708.0000000001, 709.78, -745.2, 354.0, -354.0, 0.34657359, -0.34657359,
               0.5 * np.log(2.0), -0.5 * np.log(2.0), -1.0, -0.9999999999, 0.4142135623730951,
               0.41421356237309515, -0.2928932188134524, 1.0, -1.0 + 2 ** -52]
    return np.concatenate([special, rng.normal(0.0, 3.0, 200), rng.uniform(-40.0, 40.0, 200),
                           np.exp(rng.uniform(-700.0, 700.0, 100)),
                           rng.uniform(-1.0, 3.0, 100)])


def cfg_fastmath():
    """Each vector kernel and reduction on a fixed input, for lengths around the blocks."""
    x = _fastmath_inputs()
    y = np.random.default_rng(6).normal(size=x.size)
    finite = np.where(np.isfinite(x) & (np.abs(x) < 1e6), x, 0.5)
    out = []
    for name in ("exp", "log1p", "softplus", "sigmoid", "tanh"):
        out.append((name, _ops.fastmath(name, x)))
    out += list(zip(("softplus_fused", "sigmoid_fused"), _ops.fastmath_softplus_sigmoid(x)))
    out.append(("sigmoid_mul", _ops.fastmath_sigmoid_mul(x, y)))
    for n in (0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 100, finite.size):
        for name in ("sum", "sumsq", "dot"):
            out.append((f"{name}-{n}", np.array([_ops.fastmath_reduce(name, finite[:n],
                                                                      y[:n])])))
    return out


CONFIGS = {
    "paper": cfg_paper,
    "paper_record10": cfg_paper_record10,
    "paper_record_thread": cfg_paper_record_thread,
    "paper_profile_weights": cfg_paper_profile,
    "logreg_b1": cfg_logreg_b1,
    "logreg_b8_shuffle": cfg_logreg_b8_shuffle,
    "mlp_b1_w64": cfg_mlp_b1_w64,
    "mlp_b1_w13": cfg_mlp_b1_w13,
    "mlp_b1_w64_record_thread": cfg_mlp_b1_w64_2t,
    "mlp_minibatch_blas": cfg_mlp_minibatch,
    "mlp_minibatch_loops": cfg_mlp_minibatch_loops,
    "mlp_sigmoid_relu": cfg_mlp_sigmoid_relu,
    "momentum": cfg_momentum,
    "adam": cfg_adam,
    "lq_control": cfg_lq_control,
    **{f"noise_{name}": _noise_config(make) for name, make in NOISES.items()},
    "granularity_timing_magnitude": cfg_granularity_timing_magnitude,
    "pcg64_streams": cfg_pcg64_streams,
    "fastmath_kernels": cfg_fastmath,
}


# ---- levels, build kind, the stored file ------------------------------------------------------

def available_levels():
    """The SIMD levels this CPU and build have, best first (the level in use is kept)."""
    before, got = _ops.simd_level(), []
    for level in LEVELS:
        try:
            if _ops.set_simd_level(level) == level:
                got.append(level)
        except ValueError:   # a build that does not know the level
            pass
    if before in LEVELS:
        _ops.set_simd_level(before)
    return got


def build_kind():
    """"release" or "debug" (from fastcascade.build_info()), "-native" appended for a
    -march=native build."""
    info = fc.build_info()
    return ("debug" if info["debug"] else "release") + ("-native" if info["native"] else "")


def fingerprints(levels=None, names=None):
    """{level: {configuration: digest}} for the given levels (default: all available) and
    configurations (default: all); the level in use before is selected again afterwards."""
    levels = available_levels() if levels is None else list(levels)
    names = list(CONFIGS) if names is None else list(names)
    out, before = {}, _ops.simd_level()
    try:
        for level in levels:
            if _ops.set_simd_level(level) != level:
                raise ValueError(f"level {level!r} is not available on this CPU")
            out[level] = {name: digest_arrays(CONFIGS[name]()) for name in names}
    finally:
        if before in LEVELS:
            _ops.set_simd_level(before)
    return out


def machine():
    """What the digests depend on besides the kernels (stored beside them)."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return dict(cpu=cpu, numpy=np.__version__, python=platform.python_version(),
                blas=fc.build_info().get("blas"))


def machine_key(desc=None):
    """The key of a machine description (``machine()`` by default) in the digest file."""
    desc = machine() if desc is None else desc
    return "; ".join(f"{name}={desc[name]}" for name in sorted(desc))


def load(path=DIGEST_FILE):
    """The stored file as a dict: ``{"machines": {key: {"machine": ..., "digests": {kind:
    {level: {configuration: digest}}}}}}``."""
    path = Path(path)
    if not path.exists():
        return {"machines": {}}
    return json.loads(path.read_text())


def stored_digests(data, desc=None):
    """``{kind: {level: {configuration: digest}}}`` stored in ``data`` for the machine ``desc``
    (this one by default); empty when none are."""
    return data.get("machines", {}).get(machine_key(desc), {}).get("digests", {})


def _write(got, kind, path):
    data = load(path)
    desc = machine()
    entry = data.setdefault("machines", {}).setdefault(machine_key(desc),
                                                       {"machine": desc, "digests": {}})
    entry["digests"].setdefault(kind, {}).update(got)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def _check(got, stored, kind):
    """(mismatches, missing): lists of messages."""
    bad, missing = [], []
    for level, digests in got.items():
        want = stored.get(kind, {}).get(level)
        if want is None:
            missing.append(f"no stored digests for build {kind!r} at level {level!r}")
            continue
        for name, d in digests.items():
            if name not in want:
                missing.append(f"{kind}/{level}: no stored digest for {name!r}")
            elif want[name] != d:
                bad.append(f"MISMATCH {kind}/{level}: {name} (stored {want[name][:16]}, "
                           f"now {d[:16]})")
    return bad, missing


def _cross_level(got):
    """Messages for the configurations whose digest differs between levels."""
    levels = list(got)
    msgs = []
    for name in got[levels[0]] if levels else ():
        values = {got[level][name] for level in levels}
        if len(values) > 1:
            msgs.append(f"levels differ on {name}: " + ", ".join(
                f"{level}={got[level][name][:12]}" for level in levels))
    return msgs


def main(argv=None):
    """Entry point: check (default), --write or --show the fingerprints."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="store this build's digests")
    parser.add_argument("--show", action="store_true", help="print the digests only")
    parser.add_argument("--strict", action="store_true",
                        help="exit 2 when a level or build kind has no stored digests")
    parser.add_argument("--file", default=str(DIGEST_FILE), help="the digest file")
    parser.add_argument("--levels", help="comma-separated levels (default: all available)")
    args = parser.parse_args(argv)
    levels = args.levels.split(",") if args.levels else None
    kind = build_kind()
    got = fingerprints(levels)
    for level, digests in got.items():
        for name, d in digests.items():
            print(f"{kind:<8} {level:<9} {name:<32} {d}")
    for msg in _cross_level(got):
        print(msg)
    if args.show:
        return 0
    path = Path(args.file)
    if args.write:
        _write(got, kind, path)
        print(f"wrote {len(got)} level(s) of build {kind!r} to {path}")
        return 0
    stored = stored_digests(load(path))
    if not stored:
        print(f"no digests stored for this machine ({machine_key()}) in {path}")
    bad, missing = _check(got, stored, kind)
    for msg in missing + bad:
        print(msg)
    if bad:
        return 1
    if missing and args.strict:
        return 2
    print(f"fingerprints: {kind} at {', '.join(got)}: "
          f"{'all match' if not missing else 'the stored ones match'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
