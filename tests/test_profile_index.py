"""The amplification profile is indexed as ``Perturbation.op`` is, in the arrays and the plots.

Column i - 1 of ``forward_error`` is the error at f_i's output y_i; column i - 1 of
``backward_error`` is the error of the message v_{i-1} that f_i sends back, which is where
``Perturbation(op=i, pass_="backward")`` adds its noise (f_1 sends none: 0). Before format
version 2 the backward column held the message f_i receives, so a backward perturbation at op 5
showed up in column 4 and the plot called it "operator 4"; files of that version are moved to
the new indexing when loaded.
"""
from __future__ import annotations

import functools
import os

import numpy as np
import pytest

import fastcascade as fc

OLD_FILE = os.path.join(os.path.dirname(__file__), "data", "mlp3_profile_v57e0980.npz")
# the BLAS of the machine and release build that wrote OLD_FILE (fc.build_info()["blas"])
OLD_FILE_BLAS = "scipy 1.17.1 cython_blas (openblas 0.3.30, Haswell)"


def _on_the_writing_machine():
    info = fc.build_info()
    return not info["debug"] and info.get("blas") == OLD_FILE_BLAS


def _old_file_run(engine="cython"):
    # the run that wrote OLD_FILE (fastcascade 57e0980)
    problem = fc.problems.mlp(3, 8)
    perts = [fc.Perturbation(5, "backward", fc.noise.Gaussian(0, 0.1)),
             fc.Perturbation(2, "forward", fc.noise.Gaussian(0, 0.1))]
    return fc.run(problem, fc.SGD(0.05), 40, perturbations=perts, seeds=[0, 1],
                  record_profile=True, record_every=4, init="random", engine=engine)


@pytest.mark.parametrize("engine", ["cython", "numpy"])
def test_backward_perturbation_at_op_5_is_in_column_5(engine):
    # zero weights: the error does not travel past the next Linear, so it sits at op 5 alone
    # and (through Tanh's Jacobian, about 1 at 0) at op 4, which sends on what it received
    problem = fc.problems.mlp(3, 8)
    res = fc.run(problem, fc.SGD(0.05), 20, seeds=[0], record_profile=True, engine=engine,
                 perturbations=[fc.Perturbation(5, "backward", fc.noise.Gaussian(0, 0.1))])
    bwd = res.backward_error.mean(axis=(0, 1))
    assert bwd.shape == (problem.cascade.n_ops,)
    assert int(np.argmax(bwd)) + 1 == 5
    assert np.all(bwd[5:] == 0) and np.all(bwd[:3] == 0) and bwd[0] == 0
    assert np.all(res.forward_error == 0)


def test_forward_perturbation_at_op_2_is_in_column_2():
    res = _old_file_run()
    fwd = res.forward_error.mean(axis=(0, 1))
    assert np.all(fwd[:1] == 0) and fwd[1] > 0


def test_plot_labels_the_backward_peak_with_its_op():
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    from fastcascade import plotting

    res = _old_file_run()
    ax = plotting.amplification_profile(res)
    x, y = ax.lines[1].get_xdata(), ax.lines[1].get_ydata()
    assert ax.lines[1].get_label() == "backward error"
    assert int(x[np.argmax(y)]) == 5
    assert ax.get_xlabel() == "operator i (as Perturbation.op)"
    assert [int(t) for t in ax.get_xticks()] == list(range(1, 9))


def test_version_1_file_is_moved_to_the_new_indexing():
    old = fc.load(OLD_FILE)
    new = _old_file_run()
    # the kernel change touched the profile only: the rest is the same bits in the release
    # build that wrote the file, on its machine (a Zen 5 class EPYC; OpenBLAS's kernels are
    # chosen by CPU, so a Zen 4 gives other last bits, 6e-15 relative, as the debug build does)
    same = (np.testing.assert_array_equal if _on_the_writing_machine() else
            functools.partial(np.testing.assert_allclose, rtol=1e-12, atol=1e-15))
    for name in ("objective", "grad_norm", "grad_error", "forward_error", "backward_error"):
        same(getattr(old, name), getattr(new, name), err_msg=name)
    raw = np.load(OLD_FILE)["backward_error"]
    assert int(np.argmax(raw.mean(axis=(0, 1)))) == 3  # where version 1 put op 5's error
    np.testing.assert_array_equal(fc.io.upgrade_backward_profile(raw)[..., 1:], raw[..., :-1])
