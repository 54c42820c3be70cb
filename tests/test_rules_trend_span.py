"""A trend needs its samples to span a minimum time (`min_span`): no ETA alert from seconds of data (qa3 F9).

A cold start of `run --workers 2` fed every bin four readings a few seconds apart, one 1 mm sensor step
between them; the Theil–Sen slope of that predicted "full within 2 hours" for every bin, which fired and
resolved 4 s later. The flood ETA (water.rising, the 27 cm rule's annotation) uses the same machinery.
"""

from __future__ import annotations

import pytest

from core.device import Device
from core.reading import Reading
from core.transition import AlertState
from rules.engine import Engine
from rules.loader import RuleError, RuleErrors, describe, load_rules

S = 1_000_000_000
M = 60 * S
T0 = 1_764_547_200 * S


def engine_for(prefix: str, kind: str, interval_s: float = 60) -> Engine:
    engine = Engine([r for r in load_rules([]) if r.id.startswith(prefix)])
    engine.set_devices([Device(id="d1", key="k", model="m", kind=kind, district="haidian",
                               expected_interval_s=interval_s)])
    return engine


def feed(engine: Engine, kind: str, field: str, samples: list[tuple[int, float]]) -> list:
    out = []
    for t, v in samples:
        out += engine.process(Reading("d1", kind, t, {field: v}, (("device_id", "d1"), ("district", "haidian"))))
        out += engine.tick(t)
    return out


def test_presets_say_how_long_a_trend_must_span() -> None:
    rules = {r.id: r for r in load_rules([])}
    assert rules["bin.full_soon"].min_span_s == 3600
    assert rules["water.rising"].min_span_s == 300
    assert rules["water.depth"].eta is not None and rules["water.depth"].eta.min_span_s == 300
    assert "slope of ≥ 4 samples over ≥ 5m" in describe(rules["water.rising"])["condition"]  # `rules check` says so


def test_a_cold_start_of_seconds_of_bin_readings_raises_no_full_soon_alert() -> None:
    engine = engine_for("bin.full_soon", "bin_fill")
    # 78.0 % then one 1 mm step of a 1.2 m bin (0.083 %) three seconds later: 0.03 %/s, "full in 2 h"
    cold = [(T0 + k * 3 * S, v) for k, v in enumerate((78.0, 78.0, 78.083, 78.083, 78.167, 78.167))]
    assert feed(engine, "bin_fill", "fill_pct", cold) == []
    # then it really fills, 10 % an hour, reported every 10 minutes: 1.2 h to 100 % once there is an hour of data
    later = [(T0 + k * 10 * M, 78.167 + k * 10 / 6) for k in range(1, 8)]
    fired = [t for t in feed(engine, "bin_fill", "fill_pct", later) if t.to_state is AlertState.FIRING]
    assert len(fired) == 1 and fired[0].rule_id == "bin.full_soon"
    assert fired[0].time_ns - T0 >= 3600 * S  # only once the samples span the hour min_span asks for


def test_readings_out_of_order_from_two_workers_make_no_slope() -> None:
    engine = engine_for("bin.full_soon", "bin_fill")
    # two workers hand the leader alternate readings of one steady bin; the second worker's arrive late
    steady = [T0 + k * 5 * M for k in range(30)]
    arrival = [t for pair in zip(steady[1::2], steady[0::2], strict=True) for t in pair]  # 5 min, 0, 15, 10, ...
    values = {t: 60.0 + (0.083 if (t - T0) // (5 * M) % 2 else 0.0) for t in steady}  # a 1 mm flutter
    out = feed(engine, "bin_fill", "fill_pct", [(t, values[t]) for t in arrival])
    assert out == []
    state = engine.state_of("bin.full_soon", "d1")
    assert state is not None and state.state is AlertState.INACTIVE


def test_rising_water_needs_five_minutes_of_readings_before_an_eta() -> None:
    engine = engine_for("water.", "water_level", interval_s=10)
    # a gauge reporting every 10 s at a cold start: 100, 105, 110, 115 mm in 30 s (a wave, or the start
    # of a rise) would be "270 mm in 5 minutes" - no water.rising alert and no ETA on any transition yet
    first = [(T0 + k * 10 * S, 100.0 + 5 * k) for k in range(4)]
    assert feed(engine, "water_level", "depth_mm", first) == []
    # ... then a real rise of 12 mm a minute, reported every 10 s
    rise = [(T0 + 40 * S + k * 10 * S, 115.0 + 2 * k) for k in range(85)]
    out = feed(engine, "water_level", "depth_mm", rise)
    depth = [t for t in out if t.rule_id == "water.depth"]
    warning, critical = depth[0], depth[1]
    assert warning.value == 151 and warning.time_ns - T0 < 5 * M  # 15 cm at 3 min 40 s: at once, but no ETA yet
    assert warning.eta_s is None and warning.rate_per_s is None
    rising = [t for t in out if t.rule_id == "water.rising" and t.to_state is AlertState.FIRING]
    assert len(rising) == 1 and rising[0].time_ns - T0 == 5 * M  # once the readings span 5 minutes
    assert rising[0].value == pytest.approx((270 - 171) / 0.2, rel=0.05)
    assert critical.severity.value == "critical" and critical.rate_per_s == pytest.approx(0.2, rel=0.05)


def test_water_depth_transition_from_seconds_of_data_carries_no_eta_or_rate() -> None:
    engine = engine_for("water.depth", "water_level", interval_s=10)
    out = feed(engine, "water_level", "depth_mm", [(T0 + k * 10 * S, 140.0 + 5 * k) for k in range(4)])
    assert [t.to_state for t in out] == [AlertState.FIRING]  # 155 mm: waterlogged, at once
    assert out[0].eta_s is None and out[0].rate_per_s is None  # not "+180 cm/h, 27 cm in 1 minute"


def test_min_span_is_checked_when_the_rules_load(tmp_path) -> None:
    f = tmp_path / "r.toml"
    f.write_text('[[rule]]\nid = "x.trend"\nkind = "bin_fill"\nfield = "fill_pct"\naggregate = "slope"\n'
                 'window = "1h"\nmin_span = "2h"\nop = ">"\nthreshold = 1\n')
    with pytest.raises((RuleError, RuleErrors), match=r"min_span.*longer than the window"):
        load_rules([f], include_presets=False)
    f.write_text('[[rule]]\nid = "x.last"\nkind = "bin_fill"\nfield = "fill_pct"\nmin_span = "5m"\n'
                 'op = ">"\nthreshold = 1\n')
    with pytest.raises((RuleError, RuleErrors), match=r"min_span.*only for a trend"):
        load_rules([f], include_presets=False)
    f.write_text('[[rule]]\nid = "x.trend"\nkind = "bin_fill"\nfield = "fill_pct"\naggregate = "slope"\n'
                 'window = "1h"\nop = ">"\nthreshold = 1\n')
    assert load_rules([f], include_presets=False)[0].min_span_s == 360  # default: a tenth of the window


def test_the_desks_slope_is_kept_until_the_rows_next_sample() -> None:
    from rules.windows import PointStore

    store = PointStore(900.0, 64)
    row = store.new_row()
    for k in range(5):
        store.add(row, T0 + k * M, 100.0 + 10 * k, 60.0)
    first = store.slope_now(row)
    assert first == store.slope_per_s(row) == pytest.approx(10 / 60)
    for k in range(5, 12):  # the water falls: new samples, computed anew, never the kept one
        store.add(row, T0 + k * M, 140.0 - 10 * (k - 5), 60.0)
    assert store.slope_now(row) == store.slope_per_s(row) != first
    store.clear(row)
    assert store.slope_now(row) is None
