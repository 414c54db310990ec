"""Every verdict rule: "not tested" on empty input, "not supported" on data built to contradict
it, "supported" on data built to satisfy it (a rule that cannot fail is a defect)."""
import math

import numpy as np
import pytest

from fastcascade import verdicts as V

STEPS = np.array([0.01, 0.03, 0.1, 1.0])
EMPTY = (np.array([]), np.array([]))


def sqrt_law(scale=1e-3, floor=0.0):
    """A stable norm ~ sqrt(step) (the clean noise floor), plus an optional plateau."""
    return STEPS, np.sqrt(floor ** 2 + scale ** 2 * STEPS)


def test_verdict_words():
    assert [V.verdict(v) for v in (True, False, None)] == list(V.VERDICTS)


def test_log_slope_and_tail():
    x, y = sqrt_law()
    assert V.log_slope(x, y) == pytest.approx(0.5)
    assert math.isnan(V.log_slope([1.0], [1.0]))
    tx, _ = V.tail(x, y)
    assert list(tx) == [0.01, 0.03, 0.1]  # within 10x of the smallest step


def test_spearman():
    assert V.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert V.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(V.spearman([1, 2], [1, 2]))
    # the forward sites: op 2 is the largest, the rank statistic still sees the trend
    assert V.spearman([1, 2, 3, 4, 5], [0.0195, 0.0515, 0.00585, 0.014, 0.00115]) == \
        pytest.approx(-0.8)


def test_falls_with_step():
    assert V.falls_with_step(*EMPTY) is None
    assert V.falls_with_step(*sqrt_law()) is True
    assert V.falls_with_step(STEPS, [4e-4, 3e-4, 2e-4, 1e-4]) is False


def test_same_trend_tests_every_level():
    clean = sqrt_law()
    assert V.same_trend(clean, {}) is None
    assert V.same_trend(EMPTY, {2.0: sqrt_law(2e-3)}) is None
    assert V.same_trend(clean, {0.5: sqrt_law(1.5e-3), 2.0: sqrt_law(3e-3)}) is True
    # one level on a plateau is enough to contradict the claim "at every sigma_b"
    assert V.same_trend(clean, {0.5: sqrt_law(1.5e-3), 2.0: sqrt_law(1e-4, floor=2e-3)}) is False


def test_plateau_tests_every_level():
    clean = sqrt_law()
    flat = sqrt_law(1e-4, floor=2e-3)
    assert V.plateau(clean, {}) is None
    assert V.plateau(EMPTY, {2.0: flat}) is None
    assert V.plateau(clean, {0.5: sqrt_law(1e-4, floor=3e-4), 2.0: flat}) is True
    # sigma_f = 0.5 still falling like the clean curve: the claim about sigma_f >= 0.5 fails,
    # although sigma_f = 2 is flat (the defect of the old rule, which tested sigma_f = 2 only)
    assert V.plateau(clean, {0.5: sqrt_law(1.2e-3), 2.0: flat}) is False


def test_rises():
    assert V.rises({}) is None
    assert V.rises({0.0: 1e-4}) is None
    assert V.rises({0.0: 1e-4, 0.5: 0.05, 1.0: 0.07}) is True
    assert V.rises({0.0: 1e-4, 0.5: 0.05, 1.0: 0.04}) is False


def test_recovers_needs_a_real_effect():
    assert V.recovers({}) is None
    assert V.recovers({1: 8.0, 10: 1.3, 100: 1.0}) is True
    # the old rule passed on 1.02 > 1: no effect at the smallest dt_f is not a recovery
    assert V.recovers({10: 1.02, 100: 1.0}) is False
    assert V.recovers({1: 8.0, 10: 4.0, 100: 2.0}) is False   # never recovers
    assert V.recovers({1: 8.0, 10: 2.0, 100: 5.0, 1000: 1.0}) is False  # not progressive


def test_needs_larger_dt():
    assert V.needs_larger_dt({}, {}) is None
    assert V.needs_larger_dt({1: 3.0}, {1: 5.0}) is None  # neither recovers: nothing to compare
    assert V.needs_larger_dt({1: 8.0, 10: 1.3}, {1: 30.0, 10: 3.4, 100: 1.1}) is True
    assert V.needs_larger_dt({1: 30.0, 10: 3.4, 100: 1.1}, {1: 8.0, 10: 1.3}) is False
    # the same dt_f: supported only if the larger sigma_f is hurt more below it
    assert V.needs_larger_dt({1: 2.4, 10: 1.1}, {1: 7.8, 10: 1.3}) is True
    assert V.needs_larger_dt({1: 7.8, 10: 1.1}, {1: 2.4, 10: 1.3}) is False
    assert V.needs_larger_dt({10: 1.0}, {10: 1.0}) is False  # the old "10 >= 10" pass


def test_order_kept_is_about_growth_not_level():
    assert V.order_kept({}) is None
    assert V.order_kept({"Q = T": {2000: 70.0}}) is None  # one horizon: no growth to measure
    # the PL / backward / zero-mean row: x70, x53, x74 is flat in T, the order is kept
    assert V.order_kept({"Q = T": {2e3: 70.1, 2e4: 53.0, 2e5: 73.8}}) is True
    assert V.order_kept({"Q = T": {2e3: 1.0, 2e4: 1.0}, "Q = 10": {2e3: 1.6e4, 2e4: 1.1e5,
                                                                 2e5: 1.2e6}}) is False
    assert V.order_kept({"Q = T": {2e3: 1.0, 2e4: math.inf}}) is False  # a diverged cell
    assert V.growth_exponent({10.0: 1.0, 1000.0: 100.0}) == pytest.approx(1.0)


def test_below_bound():
    assert V.below_bound([]) is None
    assert V.below_bound([(1e-3, 1.0), (0.1, 0.2)]) is True
    assert V.below_bound([(1e-3, 1.0), (3e-4, 2e-18)]) is False


def test_ranked():
    assert V.ranked({}, "decreasing") is None
    assert V.ranked({1: 1.0, 2: 0.5}, "decreasing") is None  # under 3 sites
    assert V.ranked({1: 0.0195, 2: 0.0515, 3: 0.00585, 4: 0.014, 5: 0.00115}, "decreasing")
    # the backward sites (op 4 the largest): rho = 0.6 does not support "near the output"
    assert V.ranked({2: 5.9e-4, 3: 1.6e-4, 4: 2.8e-3, 5: 7.7e-4, 6: 1.2e-3}, "increasing") is False
    assert V.ranked({1: 1.0, 2: 2.0, 3: 3.0}, "decreasing") is False
    with pytest.raises(ValueError, match="direction"):
        V.ranked({1: 1.0}, "up")


def test_within_factor():
    assert V.within_factor([]) is None
    assert V.within_factor([(2.54e-3, 2.59e-3), (1.82e-4, 1.79e-4)]) is True
    assert V.within_factor([(2.54e-3, 2.59e-3), (1.8e-4, 7.8e-5)]) is False


def test_figure2_rules():
    nan = float("nan")
    assert V.spike_recovers(nan, nan) is None
    assert V.spike_recovers(28.0, 1.0) is True
    # the old fig 2: the spike was never recorded (0.000856 against 0.000788)
    assert V.spike_recovers(0.000856 / 0.000788, 1.0) is False
    assert V.spike_recovers(28.0, 3.0) is False
    assert V.persists(nan, nan) is None
    assert V.persists(0.04, 28.0) is True
    assert V.persists(0.04, 1.1) is False
    assert V.persists(3.0, 28.0) is False  # not moderate: a larger error than the spike's


def test_compression_and_trajectory_rules():
    assert V.compression_fails(None, None) is None
    assert V.compression_fails(0.0, math.inf) is True
    assert V.compression_fails(0.5, math.inf) is False
    assert V.final_slope([], [], flat=True) is None
    assert V.final_slope(STEPS, [2.5e-3] * 4, flat=True) is True
    assert V.final_slope(*sqrt_law(), flat=True) is False
    assert V.final_slope(*sqrt_law(), flat=False) is True
