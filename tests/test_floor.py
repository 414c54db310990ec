"""The floor estimate of ``fastcascade bench`` (issue 17.3): counts in closed form, and the
floor as counts times throughputs (no timing is asserted)."""
import pytest

from fastcascade import floor


def test_paper_step_counts_in_closed_form():
    # M d multiply-adds forward and backward, M d more at a record; M sigmoids, M more
    # exponentials and M log1p at a record; M forward and M backward uniform draws
    assert floor.paper_step_counts(2000, 10, 1) == {"fma": 60000.0, "exp": 4000.0,
                                                     "log1p": 2000.0, "uniform": 4000.0}
    assert floor.paper_step_counts(2000, 10, 10) == {"fma": 42000.0, "exp": 2200.0,
                                                      "log1p": 200.0, "uniform": 4000.0}


def test_floor_is_counts_times_throughputs():
    rates = {"fma": 0.1, "exp": 1.0, "log1p": 2.0, "uniform": 0.5}
    fl = floor.paper_floor(2000, 10, 1, throughputs=rates)
    assert fl["parts_us"] == pytest.approx({"fma": 6.0, "exp": 4.0, "log1p": 4.0,
                                            "uniform": 2.0})
    assert fl["floor_us"] == pytest.approx(16.0)


def test_measured_throughputs_are_positive_and_finite():
    rates = floor.kernel_throughputs(repeats=1)
    assert set(rates) == {"fma", "exp", "log1p", "uniform"}
    assert all(0.0 < v < 1e4 for v in rates.values()), rates


def test_network_floor_is_two_read_write_passes_and_one_read():
    fl = floor.network_floor(128, pass_times={"read_write": 2.0, "read": 1.25})
    assert fl["passes"] == {"read_write": 2, "read": 1}
    assert fl["floor_us"] == pytest.approx(5.25)


def test_measured_weight_passes_are_positive_and_finite():
    times = floor.weight_pass_times(32, repeats=1)
    assert set(times) == {"read_write", "read"}
    assert all(0.0 < v < 1e4 for v in times.values()), times
