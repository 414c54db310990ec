"""The paper's experiments at the quick scale: each finding the issue names, from the numbers.

The runs are shared by the tests of this module (one reproduce call per experiment)."""
import os

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from fastcascade import experiments as E  # noqa: E402


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return str(tmp_path_factory.mktemp("reproduce"))


@pytest.fixture(scope="module")
def fig4(out):
    return E.EXPERIMENTS["fig4"].run("quick", out=out, n_jobs=2)


def test_standard_and_backward_noisy_sgd_converge_as_the_step_size_falls(fig4):
    f = E.stable_by(fig4["forward"], "step_size", "sigma_f")
    b = E.stable_by(fig4["backward"], "step_size", "sigma_b")
    steps, clean = f[0.0]
    assert list(steps) == sorted(E.SCALES["quick"].step_sizes)
    # stable norm strictly increasing with the step size = falling as the step size falls
    assert np.all(np.diff(clean) > 0)
    assert np.all(np.diff(b[2.0][1]) > 0)
    # and at a comparable rate: the log-log slope of sigma_b = 2 is within half of the clean one
    assert E.log_slope(*b[2.0]) > 0.5 * E.log_slope(steps, clean)


def test_forward_noise_leaves_a_plateau(fig4):
    f = E.stable_by(fig4["forward"], "step_size", "sigma_f")
    steps, clean = f[0.0]
    noisy = f[2.0][1]
    # Measured at this scale: across the 16x step-size range the clean stable norm changes by
    # 4.7x and the sigma_f = 2 one by 1.5x. The plateau criterion: the noisy spread is below the
    # square root of the clean spread (half its log-range), and its slope below half the clean
    # slope (0.55 clean against 0.14 measured).
    spread = lambda y: y.max() / y.min()  # noqa: E731
    assert spread(clean) > 3.0
    assert spread(noisy) < np.sqrt(spread(clean))
    assert E.log_slope(steps, noisy) < 0.5 * E.log_slope(steps, clean)
    findings = E.EXPERIMENTS["fig4"].analyse(fig4, E.SCALES["quick"])
    assert all(f.supported for f in findings), [f.measured for f in findings]


def test_biased_backward_plateau_rises_with_sigma_b(out):
    res = E.EXPERIMENTS["fig6"].run("quick", out=out, n_jobs=2)
    b = E.stable_by(res["biased"], "step_size", "sigma_b")
    at_smallest_step = [b[s][1][0] for s in sorted(b)]
    assert sorted(b) == [0.0, 0.5, 1.0, 2.0]
    assert np.all(np.diff(at_smallest_step) > 0)
    # a plateau: with sigma_b = 2 the stable norm hardly depends on the step size
    assert b[2.0][1].max() / b[2.0][1].min() < 1.5


def test_intermittent_forward_spikes_recover_as_dt_grows(out):
    res = E.EXPERIMENTS["fig7"].run("quick", out=out, n_jobs=2)
    for panel in ("sigma1", "sigma2"):
        b = E.stable_by(res[panel], "step_size", "dt_f")
        dts = sorted(k for k in b if k != 0)
        at_smallest_step = [b[dt][1][0] for dt in dts]
        assert np.all(np.diff(at_smallest_step) <= 0), (panel, at_smallest_step)
        assert at_smallest_step[0] > at_smallest_step[-1]
    findings = E.EXPERIMENTS["fig7"].analyse(res, E.SCALES["quick"])
    assert all(f.supported for f in findings), [f.measured for f in findings]


def test_reproduce_writes_figures_raw_results_and_report(out):
    findings = E.reproduce(["fig2", "fig9", "bounds", "fig4"], scale="quick", out=out, n_jobs=2,
                           progress=False)
    for name in ("fig2", "fig9", "bounds", "fig4"):
        png = os.path.join(out, f"{name}.png")
        assert os.path.getsize(png) > 10_000
        assert all(f.supported for f in findings[name]), [f.measured for f in findings[name]]
    text = open(os.path.join(out, "report.md")).read()
    assert "## fig9" in text and "| finding | measured | supported |" in text
    assert "fastcascade reproduce fig2 fig9 bounds fig4 --scale quick" in text
    assert os.path.isdir(os.path.join(out, "raw", "fig4", "forward"))


def test_unknown_figure_is_refused():
    with pytest.raises(ValueError, match="FIG"):
        E.reproduce(["fig10"])


TINY = E.Scale("tiny", n_iter=400, record_every=2, step_sizes=(2.0, 0.5), sigmas=(0.0, 2.0),
               dts=(10, 100), seeds=(0,), horizons=(200, 800), table_dts=(1, 10))


def test_every_experiment_runs_end_to_end_on_a_tiny_scale(tmp_path):
    # the pipeline of each experiment (sweeps, analysis, figure, report) on a tiny scale; the
    # verdicts at this size are not asserted, only that every claim gets a row and a figure
    names = [n for n in E.EXPERIMENTS if n not in ("fig4", "bounds")]
    findings = E.reproduce(names, scale=TINY, out=str(tmp_path), n_jobs=2, progress=False)
    report = open(tmp_path / "report.md").read()
    for name in names:
        assert os.path.getsize(tmp_path / f"{name}.png") > 5_000
        assert findings[name] and all(f.measured for f in findings[name])
        assert f"## {name}:" in report
    assert len(findings["table1"]) == 8
    # a rerun reuses the raw results instead of computing them again
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "raw").rglob("*.npz")}
    E.reproduce(["fig3"], scale=TINY, out=str(tmp_path), n_jobs=2, progress=False)
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "raw").rglob("*.npz")}
    assert before == after


def test_cli_reproduce(tmp_path, capsys):
    from fastcascade.cli import main

    assert main(["reproduce", "fig9", "--out", str(tmp_path), "--jobs", "1",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("supported") == 2 and "NOT" not in printed
    assert (tmp_path / "report.md").exists() and (tmp_path / "fig9.png").exists()
    assert main(["reproduce", "fig1", "--out", str(tmp_path)]) == 2
    assert "FIG: expected one of" in capsys.readouterr().err
