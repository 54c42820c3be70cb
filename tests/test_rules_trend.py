"""Theil–Sen slope and time-to-threshold."""

from __future__ import annotations

import math
import random

import pytest
from scipy.stats import theilslopes

from rules.trend import theil_sen_slope, time_to_threshold


def test_theil_sen_slope_of_a_straight_line():
    times = [0, 60, 120, 180, 240]
    depths = [100, 112, 124, 136, 148]  # 12 mm per minute
    assert theil_sen_slope(times, depths) == pytest.approx(0.2)


def test_theil_sen_slope_ignores_one_outlier_and_irregular_spacing():
    times = [0, 45, 160, 180, 300, 420, 430]
    depths = [100 + 0.1 * t for t in times]
    depths[3] = 900  # a splash on the sensor
    assert theil_sen_slope(times, depths) == pytest.approx(0.1)


def test_theil_sen_slope_needs_two_distinct_times():
    assert theil_sen_slope([10], [1.0]) is None
    assert theil_sen_slope([10, 10, 10], [1.0, 2.0, 3.0]) is None


def test_time_to_threshold_rising():
    # 200 mm now, rising 0.1 mm/s: 70 mm to go -> 700 s
    assert time_to_threshold(200, 0.1, 270) == pytest.approx(700)
    assert time_to_threshold(270, 0.1, 270) == 0
    assert time_to_threshold(280, 0.5, 270) == 0  # already there, still rising
    assert time_to_threshold(280, 0.0, 270) == 0  # already there, steady
    assert time_to_threshold(280, -0.5, 270) == math.inf  # past it and receding: not about to reach it
    assert time_to_threshold(5, -0.1, 10, rising=False) == 0  # a battery below 10 % and still draining
    assert time_to_threshold(5, 0.1, 10, rising=False) == math.inf  # below 10 % but charging
    assert time_to_threshold(200, 0.0, 270) == math.inf
    assert time_to_threshold(200, -0.1, 270) == math.inf


def test_time_to_threshold_falling():
    # battery 30 %, losing 0.5 % per day, reaches 20 % in 20 days
    per_s = -0.5 / 86400
    assert time_to_threshold(30, per_s, 20, rising=False) == pytest.approx(20 * 86400)
    assert time_to_threshold(15, per_s, 20, rising=False) == 0
    assert time_to_threshold(30, 0.1, 20, rising=False) == math.inf


@pytest.mark.parametrize("n", [3, 4, 7, 15, 24, 25, 64])
def test_slope_equals_scipy_theilslopes_on_irregular_noisy_samples(n):
    rng = random.Random(n)
    times = sorted(rng.uniform(0, 900) for _ in range(n))
    times[n // 2] = times[n // 2 - 1]  # a repeated timestamp: that pair has no slope
    values = [100 + 0.2 * t + rng.gauss(0, 5) for t in times]
    assert theil_sen_slope(times, values) == pytest.approx(theilslopes(values, times).slope, rel=1e-12)
