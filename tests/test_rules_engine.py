"""The engine's alert state machine: for, for_samples, hysteresis, keep_firing_for, escalation, tick."""

from __future__ import annotations

from pathlib import Path

import pytest
from scipy.stats import theilslopes

from core.device import Device
from core.reading import Reading
from core.transition import AlertState, Severity
from rules.engine import Engine
from rules.loader import load_rules

S = 1_000_000_000
M = 60 * S
T0 = 1_720_000_000 * S
INACTIVE, PENDING, FIRING, RESOLVED = AlertState.INACTIVE, AlertState.PENDING, AlertState.FIRING, AlertState.RESOLVED


def engine_for(tmp_path: Path, toml: str, *, interval_s: int = 60, **device) -> Engine:
    path = tmp_path / "city.toml"
    path.write_text(toml, encoding="utf-8")
    engine = Engine(load_rules([path], include_presets=False))
    engine.set_devices([Device(id="d1", key="k1", model="acme-x", kind="water_level",
                               expected_interval_s=interval_s, **device)])
    return engine


def reading(minute: float, kind: str = "water_level", device: str = "d1", **fields) -> Reading:
    return Reading(device, kind, T0 + int(minute * M), fields, (("device_id", device), ("model", "acme-x")))


def run(engine: Engine, series: list[tuple[float, float]], field: str = "depth_mm", tick: bool = False):
    """Feed (minute, value) pairs; returns [(minute, from, to, severity)]."""
    out = []
    for minute, value in series:
        ts = engine.tick(T0 + int(minute * M)) if tick else []
        ts += engine.process(reading(minute, **{field: value}))
        out += [((t.time_ns - T0) / M, t.from_state, t.to_state, t.severity) for t in ts]
    return out


SIMPLE = """
[[rule]]
id = "deep"
kind = "water_level"
field = "depth_mm"
op = ">="
threshold = 150
route = "case"
"""


def test_no_for_fires_on_the_first_reading_over_and_resolves_on_the_first_under(tmp_path):
    e = engine_for(tmp_path, SIMPLE)
    assert run(e, [(0, 100), (1, 160), (2, 170), (3, 140), (4, 90)]) == [
        (1, INACTIVE, FIRING, Severity.WARNING),
        (3, FIRING, RESOLVED, Severity.WARNING),
    ]


def test_transition_carries_value_threshold_route_and_labels(tmp_path):
    e = engine_for(tmp_path, SIMPLE + 'labels = { case_category = "road_waterlogging" }\n')
    (t,) = e.process(reading(0, depth_mm=180.0))
    assert (t.rule_id, t.device_id, t.value, t.threshold, t.route) == ("deep", "d1", 180.0, 150.0, "case")
    assert dict(t.labels) == {"device_id": "d1", "model": "acme-x", "case_category": "road_waterlogging"}
    assert "180" in t.summary and "150" in t.summary


def test_for_samples_needs_that_many_consecutive_readings(tmp_path):
    e = engine_for(tmp_path, SIMPLE + "for_samples = 3\n")
    got = run(e, [(0, 160), (1, 170), (2, 100), (3, 160), (4, 160), (5, 160)])
    assert got == [
        (0, INACTIVE, PENDING, Severity.WARNING),
        (2, PENDING, INACTIVE, Severity.WARNING),  # the streak broke after two
        (3, INACTIVE, PENDING, Severity.WARNING),
        (5, PENDING, FIRING, Severity.WARNING),  # third consecutive reading
    ]


def test_for_duration_fires_when_it_elapses_even_without_a_new_reading(tmp_path):
    e = engine_for(tmp_path, SIMPLE + 'for = "10m"\n')
    assert run(e, [(0, 160)]) == [(0, INACTIVE, PENDING, Severity.WARNING)]
    assert e.tick(T0 + 9 * M) == []
    (t,) = e.tick(T0 + 12 * M)
    assert (t.from_state, t.to_state) == (PENDING, FIRING)
    assert t.time_ns == T0 + 10 * M  # at the instant the duration elapsed, not when the tick noticed


def test_for_duration_is_not_met_when_the_condition_breaks_first(tmp_path):
    e = engine_for(tmp_path, SIMPLE + 'for = "10m"\n')
    assert run(e, [(0, 160), (5, 170), (9, 100), (15, 100)], tick=True) == [
        (0, INACTIVE, PENDING, Severity.WARNING),
        (9, PENDING, INACTIVE, Severity.WARNING),
    ]


def test_a_late_reading_fires_a_for_that_elapsed_while_the_sensor_was_quiet(tmp_path):
    # occupied at 10:00, next report at 10:20 says free: it was over for 15 min, so it fired at 10:15
    e = engine_for(tmp_path, """
[[rule]]
id = "parked"
kind = "parking"
field = "occupied"
op = "=="
threshold = true
for = "15m"
""")
    got = []
    for minute, occupied in [(0, True), (20, False)]:
        got += [((t.time_ns - T0) / M, t.to_state) for t in e.process(reading(minute, "parking", occupied=occupied))]
    assert got == [(0, PENDING), (15, FIRING), (20, RESOLVED)]


def test_for_and_for_samples_together_need_both(tmp_path):
    e = engine_for(tmp_path, SIMPLE + 'for = "5m"\nfor_samples = 3\n')
    assert e.tick(T0) == []
    got = run(e, [(0, 160), (6, 160)], tick=True)
    assert got == [(0, INACTIVE, PENDING, Severity.WARNING)]  # 6 min but only 2 samples
    assert e.tick(T0 + 30 * M) == []
    assert run(e, [(31, 160)], tick=True) == [(31, PENDING, FIRING, Severity.WARNING)]


def test_hysteresis_holds_the_alert_until_the_clear_threshold(tmp_path):
    e = engine_for(tmp_path, SIMPLE + "clear = 120\n")
    assert run(e, [(0, 160), (1, 140), (2, 125), (3, 130), (4, 119)]) == [
        (0, INACTIVE, FIRING, Severity.WARNING),
        (4, FIRING, RESOLVED, Severity.WARNING),
    ]
    (t,) = run_transitions(e, [(5, 155)])
    assert (t.from_state, t.to_state) == (RESOLVED, FIRING)


def run_transitions(engine, series, field="depth_mm"):
    out = []
    for minute, value in series:
        out += engine.process(reading(minute, **{field: value}))
    return out


def test_keep_firing_for_one_low_reading_cannot_close_the_alert(tmp_path):
    e = engine_for(tmp_path, SIMPLE + 'clear = 120\nkeep_firing_for = "10m"\n')
    # one low reading at minute 2, high again at 3: stays firing
    assert run(e, [(0, 200), (2, 50), (3, 200), (10, 200)], tick=True) == [(0, INACTIVE, FIRING, Severity.WARNING)]
    # low from minute 11 on: resolves 10 minutes later, at minute 21, through tick
    assert run(e, [(11, 50), (15, 40)], tick=True) == []
    assert e.state_of("deep", "d1").state is FIRING
    (t,) = e.tick(T0 + 25 * M)
    assert (t.from_state, t.to_state, t.time_ns) == (FIRING, RESOLVED, T0 + 21 * M)
    assert t.threshold == 120


def test_levels_escalate_within_one_alert_and_never_step_down(tmp_path):
    e = engine_for(tmp_path, """
[[rule]]
id = "water"
kind = "water_level"
field = "depth_mm"
op = ">="
clear = 120
route = "case"
[[rule.levels]]
severity = "warning"
threshold = 150
[[rule.levels]]
severity = "critical"
threshold = 270
route = "emergency"
""")
    ts = run_transitions(e, [(0, 160), (1, 280), (2, 200), (3, 300), (4, 100)])
    assert [(t.from_state, t.to_state, t.severity, t.route, t.threshold) for t in ts] == [
        (INACTIVE, FIRING, Severity.WARNING, "case", 150),
        (FIRING, FIRING, Severity.CRITICAL, "emergency", 270),  # escalation: same alert, new severity
        (FIRING, RESOLVED, Severity.CRITICAL, "emergency", 120),
    ]


def test_a_reading_straight_over_the_top_level_fires_at_that_severity(tmp_path):
    e = engine_for(tmp_path, """
[[rule]]
id = "water"
kind = "water_level"
field = "depth_mm"
op = ">="
[[rule.levels]]
severity = "warning"
threshold = 150
[[rule.levels]]
severity = "critical"
threshold = 270
""")
    (t,) = e.process(reading(0, depth_mm=300.0))
    assert (t.to_state, t.severity, t.threshold) == (FIRING, Severity.CRITICAL, 270)


def test_below_op_with_a_window_mean(tmp_path):
    e = engine_for(tmp_path, """
[[rule]]
id = "battery"
kind = "*"
field = "battery_pct"
aggregate = "mean"
window = "3m"
op = "<"
threshold = 20
clear = 25
""")
    got = run(e, [(0, 30), (1, 22), (2, 10), (3, 12), (4, 24), (5, 26), (6, 30)], field="battery_pct")
    # means: 30, 26, 20.67, 14.67 (fires), 15.33, 20.67, 26.67 (clears above 25)
    assert got == [(3, INACTIVE, FIRING, Severity.WARNING), (6, FIRING, RESOLVED, Severity.WARNING)]


def test_health_fields_are_read_when_the_reading_fields_lack_them(tmp_path):
    e = engine_for(tmp_path, """
[[rule]]
id = "battery"
kind = "*"
field = "battery_pct"
op = "<"
threshold = 20
""")
    r = Reading("d1", "noise", T0, {"laeq_db": 50.0}, (("device_id", "d1"),), health={"battery_pct": 12.0})
    (t,) = e.process(r)
    assert t.value == 12.0


def test_selection_by_district_zone_class_tags_and_devices(tmp_path):
    e = engine_for(tmp_path, """
[[rule]]
id = "sel"
kind = "water_level"
field = "depth_mm"
op = ">"
threshold = 0
select = { district = "haidian", tags = { site = "*" }, devices = ["d1", "d2"] }
""", district="haidian", site="underpass-7")
    assert e.process(reading(0, depth_mm=10.0))  # d1: district and site from the registry
    assert e.process(reading(0, device="d3", depth_mm=10.0)) == []  # not in the device list
    r = Reading("d2", "water_level", T0, {"depth_mm": 10.0}, (("device_id", "d2"), ("district", "haidian")))
    assert e.process(r) == []  # no site tag anywhere
    assert e.process(reading(0, kind="noise", depth_mm=10.0)) == []  # other kind


def test_min_coverage_holds_back_an_hourly_mean_until_45_minutes_of_data(tmp_path):
    e = engine_for(tmp_path, """
[[rule]]
id = "pm10"
kind = "dust"
field = "pm10_ugm3"
aggregate = "mean"
window = "1h"
min_coverage = "45m"
op = ">"
threshold = 150
""", interval_s=300)
    got = []
    for i in range(12):
        ts = e.process(reading(i * 5, kind="dust", pm10_ugm3=200.0))
        got += [i * 5 for _ in ts]
    assert got == [40]  # the 9th report: 9 × 5 min = 45 min of coverage
    assert e.state_of("pm10", "d1").coverage_s == pytest.approx(3600)  # 12 reports of 5 minutes
    e.process(reading(60, kind="dust", pm10_ugm3=200.0))
    assert e.state_of("pm10", "d1").window_count == 12  # the report of minute 0 left the hour


def test_late_and_duplicate_readings_are_ignored(tmp_path):
    e = engine_for(tmp_path, SIMPLE)
    assert run(e, [(5, 160)])
    assert run(e, [(5, 100), (4, 100)]) == []
    assert e.state_of("deep", "d1").state is FIRING


def test_non_numeric_and_missing_fields_are_skipped(tmp_path):
    e = engine_for(tmp_path, SIMPLE)
    assert e.process(reading(0, depth_mm="deep")) == []
    assert e.process(reading(1, distance_mm=10.0)) == []
    assert e.process(reading(2, depth_mm=float("nan"))) == []
    assert e.state_of("deep", "d1") is None
    assert e.process(reading(3, depth_mm=151.0))


def test_warm_up_restores_state_without_emitting(tmp_path):
    toml = SIMPLE + 'for = "10m"\nclear = 120\nkeep_firing_for = "5m"\n'
    series = [(i, 100 + 10 * i) for i in range(15)]
    live = engine_for(tmp_path, toml)
    run(live, series, tick=True)
    warm = engine_for(tmp_path, toml)
    warm.warm_up(reading(m, depth_mm=float(v)) for m, v in series)
    assert warm.state_of("deep", "d1") == live.state_of("deep", "d1")
    assert warm.state_of("deep", "d1").state is PENDING
    # and it carries on alike: the `for` elapses at 15, the low readings resolve it 5 minutes after 16
    tail = [(16, 100), (22, 100)]
    assert run(warm, tail, tick=True) == run(live, tail, tick=True) == [
        (15, PENDING, FIRING, Severity.WARNING), (21, FIRING, RESOLVED, Severity.WARNING)]


def test_evaluation_is_deterministic(tmp_path):
    series = [(i * 0.5, (i * 37) % 300) for i in range(200)]
    toml = SIMPLE + 'for = "1m"\nfor_samples = 2\nclear = 120\nkeep_firing_for = "2m"\n'
    assert run(engine_for(tmp_path, toml), series, tick=True) == run(engine_for(tmp_path, toml), series, tick=True)


def test_a_restarted_for_counts_from_the_new_start_not_the_old_one(tmp_path):
    e = engine_for(tmp_path, SIMPLE + 'for = "10m"\n')
    run(e, [(0, 160), (3, 100), (5, 160)], tick=True)
    assert e.tick(T0 + 12 * M) == []  # the first start's due time (minute 10) no longer counts
    (t,) = e.tick(T0 + 16 * M)
    assert t.time_ns == T0 + 15 * M


def test_slope_rule_in_units_per_minute(tmp_path):
    e = engine_for(tmp_path, """
[[rule]]
id = "fast_rise"
kind = "water_level"
field = "depth_mm"
aggregate = "slope"
window = "10m"
per = "1m"
op = ">="
threshold = 10
""")
    series = [(i, 100 + 5 * i) for i in range(5)] + [(5 + i, 125 + 12 * i) for i in range(8)]
    ts = run_transitions(e, series)
    assert [t.to_state for t in ts] == [FIRING]
    fired_at = (ts[0].time_ns - T0) / M
    inside = [(m, v) for m, v in series if fired_at - 10 < m <= fired_at]
    expected = theilslopes([v for _, v in inside], [m for m, _ in inside]).slope  # mm per minute
    assert ts[0].value == pytest.approx(expected) and expected >= 10
    before = [(m, v) for m, v in series if fired_at - 11 < m <= fired_at - 1]
    assert theilslopes([v for _, v in before], [m for m, _ in before]).slope < 10  # not one reading earlier


def test_falling_eta_rule(tmp_path):
    e = engine_for(tmp_path, """
[[rule]]
id = "battery_eta"
kind = "*"
field = "battery_pct"
aggregate = "eta"
target = 20
direction = "falling"
window = "1h"
op = "<="
threshold = 1800
""")
    # losing 1 % a minute from 60 %: at minute 10 (50 %) it is 30 min from 20 %
    got = run(e, [(i, 60 - i) for i in range(12)], field="battery_pct")
    assert got == [(10, INACTIVE, FIRING, Severity.WARNING)]


def test_state_of_an_unknown_rule_is_an_error(tmp_path):
    with pytest.raises(KeyError, match="no rule 'nope'"):
        engine_for(tmp_path, SIMPLE).state_of("nope", "d1")
