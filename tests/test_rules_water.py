"""Rising water with the shipped presets: warning with an ETA before 27 cm, critical at 27 cm, resolved later."""

from __future__ import annotations

import pytest

from core.device import Device
from core.reading import Reading
from core.transition import AlertState, Severity
from rules.engine import Engine
from rules.loader import load_rules

S = 1_000_000_000
M = 60 * S
T0 = 1_720_000_000 * S


def water_engine() -> Engine:
    engine = Engine([r for r in load_rules([]) if r.id.startswith("water.")])
    engine.set_devices([Device(id="w1", key="k", model="acme-radar", kind="water_level", district="haidian",
                               expected_interval_s=60)])
    return engine


def replay(engine: Engine, depths: list[float]):
    out = []
    for minute, depth in enumerate(depths):
        t = T0 + minute * M
        tags = (("device_id", "w1"), ("district", "haidian"))
        out += engine.tick(t) + engine.process(Reading("w1", "water_level", t, {"depth_mm": depth}, tags))
    return out


# a storm: rising 20 mm a minute to 300 mm, then draining; one reading a minute
RISE = [50, 60, 75, 90, 110, 130, 150, 170, 190, 210, 230, 250, 270, 290, 300, 280, 200, 150, 110, 100,
        90, 80, 70, 60, 50, 40, 30, 20, 10, 5, 0]
CROSS_270 = RISE.index(270)


def test_rising_water_warns_with_an_eta_then_goes_critical_then_resolves():
    depth = [t for t in replay(water_engine(), RISE) if t.rule_id == "water.depth"]
    assert [(t.from_state, t.to_state, t.severity, t.route) for t in depth] == [
        (AlertState.INACTIVE, AlertState.FIRING, Severity.WARNING, "case"),
        (AlertState.FIRING, AlertState.FIRING, Severity.CRITICAL, "emergency"),
        (AlertState.FIRING, AlertState.RESOLVED, Severity.CRITICAL, "emergency"),
    ]
    warning, critical, resolved = depth
    # warning at 150 mm, minute 6, before the water reaches 270 mm (minute 12), with an ETA that says so
    assert (warning.time_ns - T0) // M == RISE.index(150) < CROSS_270
    assert warning.eta_s is not None
    predicted = warning.time_ns + warning.eta_s * S
    assert abs(predicted - (T0 + CROSS_270 * M)) < 1 * M
    assert "reaches 270" in warning.summary
    assert dict(warning.labels)["case_category"] == "road_waterlogging"
    # critical when it crosses
    assert critical.time_ns == T0 + CROSS_270 * M and critical.value == 270 and critical.threshold == 270
    # below the 120 mm clear threshold from minute 18 (110 mm), resolved keep_firing_for = 10 min later
    assert resolved.time_ns == T0 + (RISE.index(110, CROSS_270) + 10) * M
    assert resolved.threshold == 120


def test_the_trend_rule_fires_before_the_depth_is_even_waterlogged():
    rising = [t for t in replay(water_engine(), RISE) if t.rule_id == "water.rising"]
    first = rising[0]
    assert (first.to_state, first.route) == (AlertState.FIRING, "emergency")
    minute = (first.time_ns - T0) // M
    assert RISE[minute] < 150  # before the 15 cm warning
    assert first.eta_s == pytest.approx(first.value) and first.eta_s <= 900
    assert rising[-1].to_state is AlertState.RESOLVED


def test_one_low_reading_cannot_close_the_emergency():
    depths = [100, 200, 280, 290, 20, 295, 300, 290]  # a glitch reads 20 mm in the middle
    depth = [t for t in replay(water_engine(), depths) if t.rule_id == "water.depth"]
    assert all(t.to_state is AlertState.FIRING for t in depth)


def test_steady_water_gives_no_eta():
    depth = [t for t in replay(water_engine(), [160.0] * 10) if t.rule_id == "water.depth"]
    assert len(depth) == 1 and depth[0].eta_s is None


def test_no_rising_warning_for_water_above_27_cm_that_is_falling():
    """QA F11: a leader that starts during the recession saw 40 cm falling at 132 cm/h and fired
    "water rising, 27 cm reached in 0 s": a forecast of reaching 27 cm, for water on its way down."""
    receding = [400, 390, 375, 360, 345, 330, 315, 300, 285]  # above 270 mm the whole time, falling
    rising = [t for t in replay(water_engine(), receding) if t.rule_id == "water.rising"]
    assert rising == []
    depth = [t for t in replay(water_engine(), receding) if t.rule_id == "water.depth"]
    assert depth and depth[0].severity is Severity.CRITICAL  # the depth alert still says how deep it is


def test_a_rising_warning_that_fired_on_the_way_up_resolves_when_the_water_recedes_above_27_cm():
    crest = [100, 150, 200, 250, 300, 330] + [330 - 2 * m for m in range(1, 30)]  # falls 2 mm/min, stays > 270 mm
    rising = [t for t in replay(water_engine(), crest) if t.rule_id == "water.rising"]
    assert rising[0].to_state is AlertState.FIRING
    assert rising[-1].to_state is AlertState.RESOLVED
