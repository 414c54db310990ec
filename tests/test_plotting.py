"""Tests of ``fastcascade.plotting`` under the Agg backend.

Each plot function writes a non-empty PNG, and each test checks what is drawn: the number of
lines and bands, the plotted values (medians, quartiles, stable norms), the labels, the legend
and the scales.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastcascade as fc

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fastcascade import plotting  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def problem():
    return fc.problems.paper_logistic(n_samples=300, n_features=5, seed=0)


def forward_noise(sigma_f=0.0, dt_f=1):
    return [fc.Perturbation(op=1, noise=fc.noise.Uniform(-sigma_f, sigma_f),
                            timing=fc.timing.Every(dt_f))]


@pytest.fixture(scope="module")
def sweep(problem):
    return fc.sweep(problem, fc.SGD(0.3, grad_noise_std=1e-3), n_iter=600,
                    grid={"step_size": [1.0, 0.3, 0.1, 0.03], "sigma_f": [0.0, 2.0]},
                    perturbations=forward_noise, seeds=range(3), record_every=5)


def write_png(ax, tmp_path, name):
    path = tmp_path / f"{name}.png"
    plotting.save(ax, path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    return path


def legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_convergence_median_and_band(sweep, problem, tmp_path):
    res = sweep.select(step_size=1.0, sigma_f=0.0)
    ax = plotting.convergence(res)
    assert len(ax.lines) == 1 and len(ax.collections) == 1  # median line, IQR band
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), res.iterations)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.median(res.grad_norm, axis=0))
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    lo, hi = np.percentile(res.grad_norm, [25, 75], axis=0)
    assert band.min() == pytest.approx(lo.min()) and band.max() == pytest.approx(hi.max())
    assert ax.get_xlabel() == "iteration"
    assert ax.get_ylabel() == "gradient norm ||grad l(w)||"
    assert ax.get_yscale() == "log"  # the norm falls over decades
    # a sweep point is labelled by its grid values; the legend title says what is drawn
    assert legend_texts(ax) == ["step_size=1, sigma_f=0"]
    assert ax.get_legend().get_title().get_text() == "median and IQR of 3 runs"
    write_png(ax, tmp_path, "convergence")
    # Result.plot is this plot
    ax2 = res.plot()
    np.testing.assert_array_equal(ax2.lines[0].get_ydata(), ax.lines[0].get_ydata())
    # a plain fc.run result: the line itself says what it is
    plain = fc.run(problem, fc.SGD(0.5), 50, seeds=[0, 1])
    assert legend_texts(plotting.convergence(plain)) == ["median and IQR of 2 runs"]


def test_convergence_several_results_and_options(sweep, tmp_path):
    a, b = sweep.select(step_size=0.1, sigma_f=0.0), sweep.select(step_size=0.1, sigma_f=2.0)
    fig, ax = plt.subplots()
    out = plotting.convergence({"clean": a, "forward": b}, ax=ax, smooth=0.9,
                               field="objective", band=False)
    assert out is ax
    assert len(ax.lines) == 2 and len(ax.collections) == 0
    assert legend_texts(ax) == ["clean", "forward"]
    assert ax.get_ylabel() == "objective l(w) (EWMA 0.9 per iteration)"
    np.testing.assert_allclose(ax.lines[1].get_ydata(),
                               np.median(fc.metrics.ewma(b.objective, 0.9, b.iterations), axis=0))
    assert ax.get_yscale() == "linear"  # the objective stays within a factor of 2
    # a whole sweep: one curve per point, labelled by its grid values
    ax = plotting.convergence(sweep)
    assert len(ax.lines) == 8
    assert legend_texts(ax)[1] == "step_size=1, sigma_f=2"
    write_png(ax, tmp_path, "convergence_sweep")
    with pytest.raises(ValueError, match="field: expected one of"):
        plotting.convergence(a, field="loss")


def test_stable_norm_against_step_size(sweep, tmp_path):
    ax = plotting.stable_norm(sweep)  # curve key: the only other grid key
    assert len(ax.lines) == 2 and len(ax.collections) == 2
    assert legend_texts(ax) == ["0", "2"] and ax.get_legend().get_title().get_text() == "sigma_f"
    stable = sweep.stable_grad_norm()
    for line, sigma in zip(ax.lines, [0.0, 2.0]):
        idx = [i for i, p in enumerate(sweep.points) if p["sigma_f"] == sigma]
        order = np.argsort([sweep.points[i]["step_size"] for i in idx])
        np.testing.assert_array_equal(line.get_xdata(), [0.03, 0.1, 0.3, 1.0])
        np.testing.assert_allclose(line.get_ydata(), np.median(stable[idx], axis=1)[order])
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "step size"
    assert ax.get_ylabel() == "stable gradient norm, median of 3 seeds"
    write_png(ax, tmp_path, "stable")
    assert sweep.plot().get_xlabel() == "step size"  # SweepResult.plot
    ax = plotting.stable_norm(sweep, curve="step_size", x="sigma_f", band=False)
    assert len(ax.lines) == 4 and len(ax.collections) == 0
    with pytest.raises(ValueError, match="sigma: not a grid key"):
        plotting.stable_norm(sweep, curve="sigma")


def test_spike_trajectories(problem, tmp_path):
    # figure 2: one large isolated forward spike that recovers, against clean SGD
    spike = [fc.Perturbation(op=1, noise=fc.noise.Uniform(5.0, 10.0),
                             timing=fc.timing.At([1200]))]
    opt = fc.SGD(0.5, grad_noise_std=1e-3)
    a = fc.run(problem, opt, 2000, spike, seeds=[0], record_every=10)
    b = fc.run(problem, opt, 2000, seeds=[0], record_every=10)
    ax = plotting.spike_trajectories({"spike": a, "clean": b})
    assert len(ax.lines) == 4  # gradient norm and loss of each
    assert [ln.get_linestyle() for ln in ax.lines] == ["-", "--", "-", "--"]
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), a.grad_norm[0])
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), a.objective[0])
    assert len(ax.collections) == 1  # one marker set: the recovered spike
    assert ax.collections[0].get_offsets().tolist() == [[1200, a.grad_norm[0, 120]]]
    assert legend_texts(ax) == ["spike: gradient norm", "spike: loss", "spike, recovered",
                                "clean: gradient norm", "clean: loss"]
    assert ax.get_yscale() == "log"
    write_png(ax, tmp_path, "spikes")
    with pytest.raises(ValueError, match="run: expected a run index in 0..0"):
        plotting.spike_trajectories(a, run=1)


def test_amplification_profile(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 4))
    y = np.sin(X @ rng.standard_normal(4))[:, None]
    cascade = fc.Cascade([fc.ops.Linear(4, 6), fc.ops.Tanh(), fc.ops.Linear(6, 1),
                          fc.ops.SquaredError()])
    problem = fc.Problem(cascade, (X, y))
    perts = [fc.Perturbation(op=2, pass_="forward", noise=fc.noise.Gaussian(0.0, 0.1)),
             fc.Perturbation(op=3, pass_="backward", noise=fc.noise.Gaussian(0.0, 0.1))]
    res = fc.run(problem, fc.SGD(0.05), 200, perts, seeds=[0, 1], record_profile=True,
                 init="random")
    ax = plotting.amplification_profile(res)
    assert len(ax.lines) == 2
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 2, 3, 4])
    fwd = np.median(res.forward_error.mean(axis=1), axis=0)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), fwd)
    assert fwd[0] == 0.0 and fwd[1] > 0  # no error before the first perturbed site
    np.testing.assert_allclose(ax.lines[1].get_ydata(),
                               np.median(res.backward_error.mean(axis=1), axis=0))
    assert legend_texts(ax) == ["forward error", "backward error"]
    assert ax.get_xlabel() == "operator i (as Perturbation.op)"
    write_png(ax, tmp_path, "profile")
    plain = fc.run(problem, fc.SGD(0.05), 10, seeds=[0])
    with pytest.raises(ValueError, match="record_profile=True"):
        plotting.amplification_profile(plain)


def test_phase_diagram(problem, tmp_path):
    sw = fc.sweep(problem, fc.SGD(0.3, grad_noise_std=1e-3), n_iter=400,
                  grid={"dt_f": [1, 10, 100], "sigma_f": [0.5, 2.0]},
                  perturbations=forward_noise, seeds=range(2), record_every=5)
    ax = plotting.phase_diagram(sw, x="dt_f", y="sigma_f")
    Z = np.asarray(ax.images[0].get_array())
    assert Z.shape == (2, 3)
    for p, r in sw.items():
        i, j = [0.5, 2.0].index(p["sigma_f"]), [1, 10, 100].index(p["dt_f"])
        assert Z[i, j] == pytest.approx(np.median(r.stable_grad_norm()))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "10", "100"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0.5", "2"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("dt_f", "sigma_f")
    assert len(ax.texts) == 6  # the values, written in the cells
    assert ax.figure.axes[-1].get_ylabel() == "stable gradient norm"  # the colour bar
    write_png(ax, tmp_path, "phase")
    with pytest.raises(ValueError, match="step_size: not a grid key"):
        plotting.phase_diagram(sw, x="step_size", y="sigma_f")
