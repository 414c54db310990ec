"""Tests of the ``fastcascade`` command line (``fastcascade.cli.main``).

What is shown here:

1. every command answers ``--help``;
2. invalid configurations (unknown key, wrong type, negative step size, operator index out of
   range, a backward perturbation on operator 1) exit with status 2 and one line on stderr that
   names the key, in-process and as a real process;
3. ``run``, ``sweep`` (resumed), ``plot`` and ``info`` do their job; ``demo`` prints its table
   and the paths of its PNGs (at a tiny scale here).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastcascade as fc
from fastcascade.cli import main

pytest.importorskip("matplotlib")

# (kept as a marker of the tests that draw; .ci/run preloads libstdc++ with the sanitizer, so
# they run under AddressSanitizer too)
draws = pytest.mark.draws

COMMANDS = ("demo", "run", "sweep", "plot", "info", "reproduce", "bench")

CONFIG = """
[problem]
data = {kind = "synthetic_logistic", n_samples = 200, n_features = 4, seed = 0}
cascade = ["Margin", "Softplus"]
regularizer = {kind = "NonConvex", rho = 1e-3}

[optimizer]
step_size = 0.3
grad_noise_std = 1e-3

[params]
sigma_f = 1.0

[[perturbations]]
op = 1
pass = "forward"
noise = {kind = "Uniform", low = "= -sigma_f", high = "= sigma_f"}

[run]
n_iter = 200
seeds = [0, 1]
n_jobs = 2
record_every = 5

[sweep]
grid = {step_size = [0.3, 0.1], sigma_f = [0.0, 1.0]}
"""


def write(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


# ---------------------------------------------------------------------------------------------
# 1. --help


@pytest.mark.parametrize("command", (None,) + COMMANDS)
def test_every_command_answers_help(command, capsys):
    argv = ["--help"] if command is None else [command, "--help"]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fastcascade" + ("" if command is None else f" {command}"))
    if command is None:
        for c in COMMANDS:
            assert c in out


# ---------------------------------------------------------------------------------------------
# 2. invalid configurations

BAD = [
    ("unknown key", CONFIG.replace("step_size = 0.3\n", "step_size = 0.3\nlearning_rate = 1\n"),
     "optimizer.learning_rate: unknown key for SGD"),
    ("wrong type", CONFIG.replace("n_iter = 200", 'n_iter = "200"'),
     "run.n_iter: expected a positive integer, given '200'"),
    ("negative step size", CONFIG.replace("step_size = 0.3\n", "step_size = -0.3\n"),
     "optimizer.step_size: expected a finite real number > 0.0, given -0.3"),
    ("operator out of range", CONFIG.replace("op = 1", "op = 3"),
     "perturbations[0].op: expected an operator index in 1..2, given 3"),
    ("backward on operator 1", CONFIG.replace('pass = "forward"', 'pass = "backward"'),
     "perturbations[0].op: expected an operator index >= 2 for pass_='backward' (a backward "
     "perturbation at op=i perturbs the message f_i sends to f_{i-1}), given 1"),
    ("negative grid step size", CONFIG.replace("[0.3, 0.1]", "[0.3, -0.1]"),
     "sweep.grid.step_size[1]: expected a finite real number > 0.0, given -0.1"),
    ("TOML syntax", CONFIG.replace("[run]", "[run"), "toml: "),
]


@pytest.mark.parametrize("command", ["run", "sweep"])
@pytest.mark.parametrize("what, text, line", BAD, ids=[b[0] for b in BAD])
def test_invalid_configurations_exit_2_with_one_line(what, text, line, command, tmp_path,
                                                     capsys):
    status = main([command, write(tmp_path, text), "--no-progress"])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"fastcascade: error: {line}"), lines[0]


def test_invalid_configuration_as_a_real_process(tmp_path):
    env = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(fc.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent] + ([env["PYTHONPATH"]]
                                                        if env.get("PYTHONPATH") else []))
    path = write(tmp_path, CONFIG.replace("op = 1", "op = 3"))
    # cwd: not the source tree, whose uncompiled package "-m" would put first on sys.path
    proc = subprocess.run([sys.executable, "-m", "fastcascade.cli", "run", path],
                          capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr == ("fastcascade: error: perturbations[0].op: expected an operator index in 1..2, "
                           "given 3\n")
    assert proc.stdout == ""


def test_other_user_errors_exit_2(tmp_path, capsys):
    assert main(["run", str(tmp_path / "missing.toml")]) == 2
    assert capsys.readouterr().err.startswith("fastcascade: error: ")
    foreign = tmp_path / "foreign.npz"
    foreign.write_text("not a result")
    assert main(["plot", str(foreign)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "foreign.npz: not a fastcascade result file" in err
    with pytest.raises(SystemExit) as info:  # argparse: status 2
        main(["bench", "--cases", "xyz"])
    assert info.value.code == 2
    assert "--cases" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:  # argparse: also status 2
        main(["demo", "--iters", "-5"])
    assert info.value.code == 2


# ---------------------------------------------------------------------------------------------
# 3. the commands at work


@draws
def test_run_writes_a_result_and_plot(tmp_path, capsys):
    config = write(tmp_path, CONFIG)
    out, png = tmp_path / "r.npz", tmp_path / "r.png"
    assert main(["run", config, "--out", str(out), "--plot", str(png), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "note: run ignores the [sweep] grid" in text
    assert "2 runs of 200 iterations" in text and f"wrote {out}" in text
    res = fc.load(out)
    assert res.n_runs == 2 and res.grad_norm.shape == (2, 40)
    assert res.config["source"]["params"] == {"sigma_f": 1.0}
    assert png.read_bytes()[:4] == b"\x89PNG"
    # the same numbers as the Python API
    data = fc.datasets.synthetic_logistic(200, 4, seed=0)
    problem = fc.Problem(fc.Cascade([fc.ops.Margin(), fc.ops.Softplus()]), data,
                         regularizer=fc.reg.NonConvex(1e-3))
    ref = fc.run(problem, fc.SGD(0.3, grad_noise_std=1e-3), 200,
                 [fc.Perturbation(op=1, noise=fc.noise.Uniform(-1.0, 1.0))], seeds=[0, 1],
                 record_every=5)
    assert res.grad_norm.tobytes() == ref.grad_norm.tobytes()


@draws
def test_sweep_resumes_and_plot_reads_it(tmp_path, capsys):
    config = write(tmp_path, CONFIG)
    out = tmp_path / "sw"
    assert main(["sweep", config, "--out", str(out), "--jobs", "2", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "8 runs (8 computed, 0 reused" in text
    assert len(text.splitlines()[0].split()) >= 2 and "step_size" in text.splitlines()[0]
    assert main(["sweep", config, "--out", str(out), "--no-progress"]) == 0
    assert "8 runs (0 computed, 8 reused" in capsys.readouterr().out
    assert main(["plot", str(out)]) == 0  # a sweep over step_size: the stable norm plot
    assert (out / "stable.png").stat().st_size > 5000
    assert main(["plot", str(out), "--kind", "phase", "--x", "step_size", "--y", "sigma_f",
                 "--out", str(tmp_path / "phase.png")]) == 0
    assert (tmp_path / "phase.png").stat().st_size > 5000
    assert main(["plot", str(out), "--kind", "phase"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == \
        "fastcascade: error: --kind phase: needs --x KEY and --y KEY (two grid keys)"
    first = json.loads((out / "manifest.json").read_text())["files"][0][0]
    one = out / first
    for kind in ("convergence", "spikes"):
        assert main(["plot", str(one), "--kind", kind]) == 0
        assert (out / f"{first[:-4]}_{kind}.png").stat().st_size > 5000
    assert main(["plot", str(one), "--kind", "profile"]) == 2  # no profile recorded
    assert "record_profile=True" in capsys.readouterr().err


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for key in ("fastcascade", "numpy", "debug", "native", "cpu_count", "threads", "matplotlib"):
        assert key in out


@draws
def test_demo_at_a_tiny_scale(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--iters", "300", "--seeds", "1", "--jobs", "2",
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.split()[:2] == ["step", "size"])
    assert lines[header].split()[2:] == ["clean", "forward", "backward"]
    rows = [ln.split() for ln in lines[header + 1:header + 5]]
    assert [r[0] for r in rows] == ["1", "0.3", "0.1", "0.03"]
    assert all(np.isfinite(float(v)) for r in rows for v in r[1:])
    pngs = [ln.split(" ", 1)[1] for ln in lines if ln.startswith("wrote ")]
    assert [os.path.basename(p) for p in pngs] == ["stable_norm_vs_step_size.png",
                                                   "convergence.png"]
    for p in pngs:
        assert os.path.isabs(p) and os.path.getsize(p) > 5000
