"""The rules engine with readings that are late, early, out of order or history (rules/engine.py docstring)."""

from __future__ import annotations

from core.device import Device
from core.reading import Reading
from core.transition import AlertState, Severity
from rules.engine import Engine
from rules.loader import load_rules

S = 1_000_000_000
M = 60 * S
T0 = 1_741_165_200 * S
TAGS = (("device_id", "w1"), ("district", "haidian"))


def water_engine() -> Engine:
    engine = Engine([r for r in load_rules([]) if r.id == "water.depth"])
    engine.set_devices([Device(id="w1", key="k", model="acme-radar", kind="water_level", district="haidian",
                               expected_interval_s=60)])
    return engine


def reading(t: int, depth_mm: float, history: bool = False) -> Reading:
    return Reading("w1", "water_level", t, {"depth_mm": depth_mm}, TAGS, history=history)


def test_a_future_stamped_reading_does_not_blind_the_27_cm_rule() -> None:
    engine = water_engine()
    out = engine.process(reading(T0 + 86400 * S, 40.0))  # a clock a day ahead
    for minute, cm in enumerate((20, 30, 32), start=1):
        out += engine.process(reading(T0 + minute * M, cm * 10.0))
    critical = [t for t in out if t.severity is Severity.CRITICAL and t.to_state is AlertState.FIRING]
    assert len(critical) == 1
    assert critical[0].value == 300.0 and critical[0].time_ns == T0 + 2 * M  # it fires on the 30


def test_a_slightly_late_or_redelivered_reading_is_skipped_not_a_reset() -> None:
    engine = water_engine()
    engine.process(reading(T0, 100.0))
    engine.process(reading(T0 + M, 110.0))
    assert engine.process(reading(T0 + M - 30 * S, 400.0)) == []  # 30 s late: the window has moved on
    state = engine.state_of("water.depth", "w1")
    assert state is not None and state.value == 110.0


def test_history_older_than_the_horizon_fills_the_window_without_raising_a_fresh_alert() -> None:
    engine = water_engine()
    engine.process(reading(T0, 50.0))
    engine.tick(T0 + 3 * 3600 * S)  # a gateway outage of three hours; now the device's stored records arrive
    out = []
    for minute in range(1, 60):
        out += engine.process(reading(T0 + minute * M, 300.0, history=True))
    assert out == []
    state = engine.state_of("water.depth", "w1")
    assert state is not None and state.last_time_ns == T0 + 59 * M and state.state is AlertState.INACTIVE
    fresh = engine.process(reading(T0 + 3 * 3600 * S, 300.0))  # the live reading still pages
    assert [t.to_state for t in fresh] == [AlertState.FIRING]


def test_recent_history_pages_like_live_data() -> None:
    engine = water_engine()
    engine.process(reading(T0, 50.0))
    out = engine.process(reading(T0 + M, 300.0, history=True))  # within the horizon: an alert now
    assert [t.to_state for t in out] == [AlertState.FIRING]
