"""Aggregates over a window, checked against hand-computed values and a brute-force recomputation."""

from __future__ import annotations

import math
import random

import pytest

from rules.windows import make_window

S = 1_000_000_000


def feed(aggregate: str, samples: list[tuple[float, float, float]], window_s: float = 3600, **kw):
    """samples: (time_s, value, weight_s)."""
    w = make_window(aggregate, window_s, 2048, **kw)
    for t, v, weight in samples:
        w.add(int(t * S), v, weight)
    return w


def test_laeq_is_the_energy_average_not_the_arithmetic_mean():
    # hand: 10·log10((10^6 + 10^7) / 2) = 10·log10(5.5e6) = 67.4036 dB, not 65 dB
    w = feed("laeq", [(0, 60.0, 60), (60, 70.0, 60)])
    assert w.value() == pytest.approx(67.4036, abs=1e-4)
    # hand: 10·log10((10^5 + 10^6 + 10^7) / 3) = 10·log10(3.7e6) = 65.6820 dB
    w = feed("laeq", [(0, 50.0, 60), (60, 60.0, 60), (120, 70.0, 60)])
    assert w.value() == pytest.approx(65.6820, abs=1e-4)
    # a constant level is its own LAeq
    assert feed("laeq", [(i * 60, 55.0, 60) for i in range(10)]).value() == pytest.approx(55.0)


def test_laeq_weights_each_report_by_the_interval_it_stands_for():
    # 70 dB for 60 s and 50 dB for 240 s: 10·log10((60·10^7 + 240·10^5) / 300) = 10·log10(2.08e6) = 63.1806
    w = feed("laeq", [(0, 70.0, 60), (240, 50.0, 240)])
    assert w.value() == pytest.approx(63.1806, abs=1e-4)
    assert w.coverage_s == 300


def test_mean_is_time_weighted_and_forgets_samples_older_than_the_window():
    w = feed("mean", [(0, 100.0, 300), (300, 200.0, 300)], window_s=900)
    assert w.value() == pytest.approx(150.0)
    w = feed("mean", [(0, 100.0, 60), (60, 40.0, 180)], window_s=900)
    assert w.value() == pytest.approx((100 * 60 + 40 * 180) / 240)
    # at t = 900 the sample from t = 0 is out of a 15-minute window (window is (t − 900 s, t])
    w.add(900 * S, 10.0, 60)
    assert w.count == 2
    assert w.value() == pytest.approx((40 * 180 + 10 * 60) / 240)


def test_last_count_min_max_and_rate():
    samples = [(0, 5.0, 60), (60, 9.0, 60), (120, 1.0, 60), (180, 4.0, 60)]
    assert feed("last", samples).value() == 4.0
    assert feed("count", samples).value() == 4.0
    assert feed("min", samples).value() == 1.0
    assert feed("max", samples).value() == 9.0
    # (4 − 5) over 180 s, per minute
    assert feed("rate", samples, per_s=60).value() == pytest.approx(-1 / 3)
    assert feed("rate", samples[:1]).value() is None


def test_rate_uses_the_real_time_span_of_irregular_samples():
    # 10 → 40 over 30 s, then nothing for 9.5 min, then 40 again: 30 / 600 s per minute = 3
    w = feed("rate", [(0, 10.0, 60), (30, 40.0, 30), (600, 40.0, 300)], window_s=900, per_s=60)
    assert w.value() == pytest.approx(3.0)


@pytest.mark.parametrize("aggregate", ["min", "max", "mean", "laeq", "count", "rate"])
def test_incremental_aggregates_match_a_brute_force_recomputation(aggregate):
    rng = random.Random(7)
    window_s = 600
    w = make_window(aggregate, window_s, 2048, per_s=1.0)
    history: list[tuple[int, float, float]] = []
    t = 0
    for _ in range(3000):
        t += rng.choice([5, 30, 60, 60, 120, 700])
        v = rng.uniform(30, 100)
        weight = float(min(t - history[-1][0] // S, 300)) if history else 300.0
        w.add(t * S, v, weight)
        history.append((t * S, v, weight))
        inside = [h for h in history if h[0] > t * S - window_s * S] or history[-1:]
        values = [h[1] for h in inside]
        expected = {
            "min": min(values),
            "max": max(values),
            "count": float(len(values)),
            "mean": sum(h[1] * h[2] for h in inside) / sum(h[2] for h in inside),
            "laeq": 10 * math.log10(sum(h[2] * 10 ** (h[1] / 10) for h in inside) / sum(h[2] for h in inside)),
            "rate": ((inside[-1][1] - inside[0][1]) / ((inside[-1][0] - inside[0][0]) / S)
                     if len(inside) > 1 else None),
        }[aggregate]
        got = w.value()
        if expected is None:
            assert got is None
        else:
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_a_window_never_holds_more_than_max_samples():
    w = make_window("mean", 86400, 10)
    for i in range(100):
        w.add(i * S, float(i), 1.0)
    assert w.count == 10
    assert w.value() == pytest.approx(sum(range(90, 100)) / 10)
