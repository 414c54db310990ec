"""Tests of TOML configurations (``fastcascade.config``).

What is shown here:

1. a configuration builds the objects it names (problem, optimizer, perturbations with nested
   kinds, timing, schedules), expressions over [params] and grid keys evaluate, kinds are found
   by name so every class of fc.noise / fc.timing is reachable;
2. ``run_job`` and ``sweep_job`` give exactly what ``fc.run`` / ``fc.sweep`` give;
3. invalid configurations raise ConfigError whose one-line message starts with the key.
"""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

import fastcascade as fc
from fastcascade.config import ConfigError, load_config, parse_config, run_job, sweep_job

BASE = """
[problem]
data = {kind = "synthetic_logistic", n_samples = 200, n_features = 4, seed = 1}
cascade = ["Margin", "Softplus"]
regularizer = {kind = "NonConvex", rho = 1e-3}

[optimizer]
step_size = 0.3
grad_noise_std = 1e-3

[run]
n_iter = 100
seeds = [0, 2]
record_every = 5
"""


def config(extra="", base=BASE):
    return parse_config(base + textwrap.dedent(extra))


def paper_problem():
    data = fc.datasets.synthetic_logistic(200, 4, seed=1)
    return fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), data,
                      regularizer=fc.reg.NonConvex(1e-3))


# ---------------------------------------------------------------------------------------------
# 1. building


def test_builds_the_named_objects():
    job = config("""
        [params]
        sigma = 2.0
        [[perturbations]]
        op = 1
        pass = "forward"
        noise = {kind = "Uniform", low = "= -sigma / sqrt(4)", high = "= sigma / sqrt(4)"}
        timing = {kind = "Every", period = 10, offset = 3}
        [[perturbations]]
        op = 2
        pass = "backward"
        noise = {kind = "relative", dist = {kind = "gaussian", std = 1e-3}}
        timing = {kind = "Bernoulli", p = 0.5}
        granularity = "element"
    """)
    problem = paper_problem()
    assert repr(job.problem) == repr(problem)
    assert np.array_equal(job.problem.data.X, problem.data.X)
    assert job.optimizer == fc.SGD(0.3, grad_noise_std=1e-3)
    assert job.seeds == [0, 2] and job.run_kwargs == {"n_iter": 100, "record_every": 5}
    perts = job.perturbations()
    assert perts == [
        fc.Perturbation(op=1, pass_="forward", noise=fc.noise.Uniform(-1.0, 1.0),
                        timing=fc.timing.Every(10, offset=3)),
        fc.Perturbation(op=2, pass_="backward",
                        noise=fc.noise.Relative(fc.noise.Gaussian(0.0, 1e-3)),
                        timing=fc.timing.Bernoulli(0.5))]
    # grid values override [params]
    assert job.perturbations(sigma=4.0)[0].noise == fc.noise.Uniform(-2.0, 2.0)


def test_other_sections_and_kinds():
    job = parse_config("""
        [problem]
        data = {kind = "synthetic_logistic", n_samples = 50, n_features = 3}
        cascade = [{kind = "Linear", d_in = 3, d_out = 4, bias = false}, "Tanh",
                   {kind = "Linear", d_in = 4, d_out = 1}, {kind = "LogisticLoss"}]
        [optimizer]
        kind = "Adam"
        step_size = 0.01
        betas = [0.8, 0.9]
        batch = 8
        schedule = {kind = "StepDecay", factor = 0.5, every = 100}
        [[perturbations]]
        op = 2
        noise = {kind = "LowPrecision", format = "bfloat16", rounding = "stochastic"}
        [run]
        n_iter = 30
        seeds = 4
        record_weights = true
    """)
    assert [type(op).__name__ for op in job.problem.cascade.operators] == \
        ["Linear", "Tanh", "Linear", "LogisticLoss"]
    assert job.problem.cascade.operators[0].bias is False
    assert job.optimizer == fc.Adam(0.01, betas=(0.8, 0.9), batch=8,
                                    schedule=fc.schedules.StepDecay(0.5, 100))
    assert job.perturbations() == [fc.Perturbation(
        op=2, noise=fc.noise.LowPrecision("bfloat16", rounding="stochastic"))]
    assert job.seeds == [4] and job.problem.regularizer == fc.reg.NoRegularizer()
    assert job.run_kwargs == {"n_iter": 30, "record_weights": True}
    assert run_job(job, progress=False).weights.shape == (1, 30, job.problem.n_weights)


def test_data_from_npy_files(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 2)), np.where(rng.random(30) < 0.5, 1.0, -1.0)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    (tmp_path / "c.toml").write_text(textwrap.dedent("""
        [problem]
        data = {X = "X.npy", y = "y.npy"}
        cascade = ["Margin", "Softplus"]
        [optimizer]
        step_size = 0.1
        [run]
        n_iter = 10
    """))
    job = load_config(tmp_path / "c.toml")  # paths relative to the configuration file
    assert np.array_equal(job.problem.data.X, X) and np.array_equal(job.problem.data.y[:, 0], y)


def test_every_noise_and_timing_class_is_reachable():
    from fastcascade import noise, timing
    from fastcascade.config import _classes, _lookup

    for module, base in ((noise, noise.Noise), (timing, timing.Timing)):
        classes = _classes(module, base)
        public = {n for n in module.__all__ if isinstance(getattr(module, n), type)
                  and issubclass(getattr(module, n), base) and n != base.__name__}
        abstract = {"Distribution", "Transform"}  # bases, not kinds: left out of the list
        assert public and public - abstract <= set(classes)
        assert not abstract & set(classes)
        for name, cls in classes.items():
            assert _lookup(name, classes, "x", "kind") is cls
            assert _lookup(name.lower(), classes, "x", "kind") is cls


# ---------------------------------------------------------------------------------------------
# 2. the same numbers as the Python API


def test_run_job_equals_fc_run():
    job = config("""
        [[perturbations]]
        op = 1
        noise = {kind = "Uniform", low = -0.5, high = 0.5}
    """)
    res = run_job(job, n_jobs=2, progress=False)
    ref = fc.run(paper_problem(), fc.SGD(0.3, grad_noise_std=1e-3), 100,
                 [fc.Perturbation(op=1, noise=fc.noise.Uniform(-0.5, 0.5))], seeds=[0, 2],
                 record_every=5)
    for name in ("iterations", "objective", "grad_norm", "grad_error", "final_weights"):
        assert getattr(res, name).tobytes() == getattr(ref, name).tobytes(), name
    assert res.config["optimizer"] == ref.config["optimizer"]
    assert res.config["source"]["run"]["n_iter"] == 100  # the configuration itself is kept
    assert "grid" not in res.config


def test_sweep_job_equals_fc_sweep(tmp_path):
    job = config("""
        [params]
        sigma_f = 1.0
        [[perturbations]]
        op = 1
        noise = {kind = "Uniform", low = "= -sigma_f", high = "= sigma_f"}
        timing = {kind = "Every", period = "= dt_f"}
        [sweep]
        grid = {step_size = [0.3, 0.1], dt_f = [1, 5], record_every = [5, 10]}
        [output]
        sweep = "unused"
    """)
    sw = sweep_job(job, out=tmp_path / "sw", progress=False)

    def perts(dt_f):
        return [fc.Perturbation(op=1, noise=fc.noise.Uniform(-1.0, 1.0),
                                timing=fc.timing.Every(dt_f))]

    ref = fc.sweep(paper_problem(), fc.SGD(0.3, grad_noise_std=1e-3), n_iter=100,
                   grid={"step_size": [0.3, 0.1], "dt_f": [1, 5], "record_every": [5, 10]},
                   perturbations=perts, seeds=[0, 2])
    assert sw.points == ref.points
    for a, b in zip(sw.results, ref.results):
        assert a.grad_norm.tobytes() == b.grad_norm.tobytes()
        assert a.final_weights.tobytes() == b.final_weights.tobytes()
    assert fc.load(tmp_path / "sw").identical(sw)


# ---------------------------------------------------------------------------------------------
# 3. errors name the key

PERT = """
[[perturbations]]
op = {op}
pass = "{pass_}"
noise = {{kind = "Uniform", low = -0.1, high = 0.1}}
"""


@pytest.mark.parametrize("extra, base, key, message", [
    ("[optimizer]\nstepsize = 0.1", BASE.replace("[optimizer]", "[optimizer_old]"),
     "optimizer_old", "unknown section"),
    ("", BASE.replace("step_size = 0.3", "step_size = 0.3\nstep = 1"), "optimizer.step",
     "unknown key for SGD; expected kind, step_size"),
    ("", BASE.replace("step_size = 0.3", "step_size = -0.1"), "optimizer.step_size",
     "expected a finite real number > 0.0, given -0.1"),
    ("", BASE.replace("step_size = 0.3", 'step_size = "fast"'), "optimizer.step_size",
     "expected a finite real number > 0.0, given 'fast'"),
    ("", BASE.replace("n_iter = 100", 'n_iter = "100"'), "run.n_iter",
     "expected a positive integer, given '100'"),
    ("", BASE.replace("n_iter = 100", "n_iter = 100\nthreads = 2"), "run.threads",
     "unknown key; expected one of n_iter"),
    ("", BASE.replace("seeds = [0, 2]", "seeds = [0, -2]"), "run.seeds",
     "expected a non-negative integer, given -2"),
    (PERT.format(op=3, pass_="forward"), BASE, "perturbations[0].op",
     "expected an operator index in 1..2, given 3"),
    (PERT.format(op=1, pass_="backward"), BASE, "perturbations[0].op",
     "expected an operator index >= 2 for pass_='backward' (a backward perturbation at op=i "
     "perturbs the message f_i sends to f_{i-1}), given 1"),
    (PERT.format(op=1, pass_="sideways"), BASE, "perturbations[0].pass",
     "expected one of 'forward', 'backward', given 'sideways'"),
    ('[[perturbations]]\nop = 1\nnoise = {kind = "Unifrom"}', BASE,
     "perturbations[0].noise.kind", "unknown noise kind 'Unifrom'; expected one of"),
    ('[[perturbations]]\nop = 1\nnoise = {kind = "Uniform", low = 1.0, hi = 2.0}', BASE,
     "perturbations[0].noise.hi", "unknown key for Uniform; expected low, high"),
    ('[[perturbations]]\nop = 1\nnoise = {kind = "Uniform", low = 1.0, high = 0.0}', BASE,
     "perturbations[0].noise.high", "expected >= low (1.0), given 0.0"),
    ('[[perturbations]]\nop = 1\nnoise = {kind = "Gaussian", std = "= s * 2"}', BASE,
     "perturbations[0].noise.std", "unknown name 's' in '= s * 2': give it a value in [params] "
     "or the sweep grid"),
    ('[[perturbations]]\nop = 1\nnoise = {kind = "Gaussian", std = "= open(1)"}', BASE,
     "perturbations[0].noise.std", "unsupported syntax in the expression"),
    ('[[perturbations]]\nop = 1\nnoise = {kind = "Gaussian", std = 1.0}\n'
     'timing = {kind = "Every", period = 0}', BASE, "perturbations[0].timing.period",
     "expected a positive integer, given 0"),
    ("[sweep]\ngrid = {step_sise = [0.1]}", BASE, "sweep.grid.step_sise",
     "not an optimizer field"),
    ("[sweep]\ngrid = {step_size = [0.1, -1.0]}", BASE, "sweep.grid.step_size[1]",
     "expected a finite real number > 0.0, given -1.0"),
    ("[sweep]\ngrid = {record_every = [0]}", BASE, "sweep.grid.record_every[0]",
     "expected a positive integer, given 0"),
    ("[sweep]\ngrid = {step_size = 0.1}", BASE, "sweep.grid.step_size",
     "expected a non-empty list of values, given 0.1"),
    ('[params]\ns = 1.0\n[[perturbations]]\nop = 1\nnoise = {kind = "Gaussian", std = "= s"}\n'
     "[sweep]\ngrid = {s = [1.0, -1.0]}", BASE, "perturbations[0].noise.std",
     "expected a finite real number >= 0.0, given -1.0 (at s=-1.0)"),
    ("", BASE.replace('cascade = ["Margin", "Softplus"]', 'cascade = ["Margin", "Sofplus"]'),
     "problem.cascade[1].kind", "unknown operator 'Sofplus'"),
    ("", BASE.replace("n_features = 4,", "n_features = 0,"), "problem.data.n_features",
     "expected a positive integer, given 0"),
    ("", BASE.replace('cascade = ["Margin", "Softplus"]', 'cascade = ["Margin", "Tanh"]\n'
                      'regularizer = "none"').replace(
                          'regularizer = {kind = "NonConvex", rho = 1e-3}\n', ""),
     "problem", "valid"),
    ("[output]\nrun = 3", BASE, "output.run", "expected a path, given 3"),
    ("[run]\nn_iter = 1", BASE.replace("[run]\nn_iter = 100", "[run]\nn_iter = 100"),
     "toml", "Cannot declare"),
])
def test_errors_name_the_key(extra, base, key, message):
    if message == "valid":  # a cascade of two operators ending in a scalar: accepted
        config(extra, base)
        return
    with pytest.raises(ConfigError) as info:
        config(extra, base)
    err = info.value
    assert err.key == key, str(err)
    text = str(err)
    assert "\n" not in text and text.startswith(f"{key}: ")
    assert message in text, text


def test_missing_pieces():
    with pytest.raises(ConfigError, match=r"^problem: missing section"):
        parse_config("[optimizer]\nstep_size = 0.1")
    with pytest.raises(ConfigError, match=r"^problem.cascade: missing"):
        parse_config('[problem]\ndata = {kind = "synthetic_logistic"}')
    with pytest.raises(ConfigError, match=r"^run.n_iter: missing"):
        config("", BASE.replace("n_iter = 100\n", ""))
    with pytest.raises(ConfigError, match=r"^optimizer.step_size: missing"):
        config("", BASE.replace("step_size = 0.3\n", ""))
    with pytest.raises(ConfigError, match=r"nope.toml: cannot read"):
        load_config("nope.toml")


def test_example_configurations_are_valid():
    import os

    here = os.path.join(os.path.dirname(__file__), "..", "examples")
    names = sorted(n for n in os.listdir(here) if n.endswith(".toml"))
    assert names == ["intermittent_spikes.toml", "paper_logistic.toml"]
    for name in names:
        job = load_config(os.path.join(here, name))
        assert job.grid and job.run_kwargs["n_iter"] > 0


# -- bounded expressions ------------------------------------------------------------------------
@pytest.mark.parametrize("expr, why", [
    ("= 10**10**10", "beyond the integer range"),
    ("= 9**9**9", "beyond the integer range"),
    ("= 2**64", "beyond the integer range"),
    ("= 3**40 * 3**40", "beyond the integer range"),
    ("= int(1e300)", "integer beyond the range"),
    ("= 2.0**2000", "overflows a float"),
    ("= 1e308 * 10", "not a finite number"),
    ("= exp(1000)", "math range error"),
    ("= " + "(" * 600 + "1" + ")" * 600, "at most 1000"),
])
def test_unbounded_expressions_are_refused_at_once(expr, why):
    import time

    from fastcascade.config import ConfigError, evaluate

    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=why) as info:
        evaluate(expr, {}, "noise.high")
    assert time.perf_counter() - t0 < 1.0  # a hang guard: these took forever before
    assert str(info.value).startswith("noise.high: ") and str(info.value).count("noise.high") == 1


@pytest.mark.parametrize("expr, value", [("= 2**62", 2 ** 62), ("= -2 / sqrt(10)", -2 / 10 ** 0.5),
                                         ("= 2.0**100", 2.0 ** 100), ("= max(1, 3) * 10**6", 3e6)])
def test_ordinary_expressions_still_work(expr, value):
    from fastcascade.config import evaluate

    assert evaluate(expr, {}, "k") == value
