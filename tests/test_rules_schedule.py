"""Day/night schedules in local time (GB 3096-2008: day 06:00–22:00, night 22:00–06:00), and the noise presets."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.device import Device
from core.reading import Reading
from core.transition import AlertState
from rules.engine import Engine
from rules.loader import load_rules
from rules.model import Period
from rules.schedule import LocalClock, parse_span, period_at

S = 1_000_000_000
SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY_NIGHT = (Period("day", 360, 1320), Period("night", 1320, 360))


def ns(text: str, tz: ZoneInfo = SHANGHAI) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=tz).timestamp()) * S


@pytest.mark.parametrize(("local", "period"), [
    ("2024-07-01T05:59:59", "night"),
    ("2024-07-01T06:00:00", "day"),
    ("2024-07-01T12:00:00", "day"),
    ("2024-07-01T21:59:59", "day"),
    ("2024-07-01T22:00:00", "night"),
    ("2024-07-01T00:00:00", "night"),
])
def test_day_and_night_edges_in_shanghai_time(local, period):
    clock = LocalClock("Asia/Shanghai")
    assert period_at(DAY_NIGHT, clock.minute_of_day(ns(local))) == period


def test_the_same_instant_is_day_in_one_zone_and_night_in_another():
    instant = ns("2024-07-01T14:30:00", ZoneInfo("UTC"))  # 22:30 in Shanghai
    assert period_at(DAY_NIGHT, LocalClock("Asia/Shanghai").minute_of_day(instant)) == "night"
    assert period_at(DAY_NIGHT, LocalClock("UTC").minute_of_day(instant)) == "day"


def test_local_time_follows_daylight_saving():
    clock = LocalClock("Europe/Berlin")
    # 2024-03-31 02:00 CET -> 03:00 CEST; 05:30 UTC is 06:30 local after the switch, 06:30 before
    assert clock.minute_of_day(ns("2024-03-31T05:30:00", ZoneInfo("UTC"))) == 7 * 60 + 30
    assert clock.minute_of_day(ns("2024-03-30T05:30:00", ZoneInfo("UTC"))) == 6 * 60 + 30


def test_spans():
    assert parse_span("06:00-22:00") == (360, 1320)
    assert parse_span("22:00-24:00") == (1320, 0)
    for bad in ("6-22", "06:00", "25:00-01:00", "06:60-07:00"):
        with pytest.raises(ValueError):
            parse_span(bad)


def noise_engine(tmp_path: Path | None = None, zone: str = "2", tz: str = "Asia/Shanghai") -> Engine:
    rules = [r for r in load_rules([], tz=tz) if r.id.startswith("noise.")]
    engine = Engine(rules, tz=tz)
    engine.set_devices([Device(id="n1", key="k", model="acme-noise", kind="noise", zone_class=zone,
                               expected_interval_s=300)])
    return engine


def noise(t_ns: int, laeq: float, **more: float) -> Reading:
    return Reading("n1", "noise", t_ns, {"laeq_db": laeq, **more}, (("device_id", "n1"), ("zone_class", "2")))


def test_zone2_noise_over_the_night_limit_but_under_the_day_limit_fires_only_at_night():
    # zone class 2: day 60, night 50 dB(A). A steady 55 dB(A) from 18:00 to 08:00.
    engine = noise_engine()
    start = ns("2024-07-01T18:00:00")
    fired = []
    for i in range(14 * 12 + 1):
        t = start + i * 300 * S
        fired += [(datetime.fromtimestamp(x.time_ns / S, SHANGHAI).strftime("%H:%M"), x.to_state, x.threshold)
                  for x in engine.tick(t) + engine.process(noise(t, 55.0))]
    assert fired[0] == ("22:00", AlertState.FIRING, 50.0)  # not one minute of the day
    # the morning: back to the day limit at 06:00, cleared after keep_firing_for (15 min)
    assert fired[1:] == [("06:15", AlertState.RESOLVED, 60.0)]


def test_laeq_energy_average_decides_not_the_arithmetic_mean():
    # zone 2 night limit 50: 54 and 44 alternate -> the arithmetic mean stays under 50, the LAeq is over
    engine = noise_engine()
    start = ns("2024-07-01T23:00:00")
    out = []
    for i in range(12):
        out += engine.process(noise(start + i * 300 * S, 44.0 if i % 2 else 54.0))
    assert out and out[0].to_state is AlertState.FIRING
    # first evaluable at 45 min of coverage = 9 reports (5 × 54, 4 × 44):
    # hand: 10·log10((5·10^5.4 + 4·10^4.4) / 9) = 10·log10(150 713) = 51.78 dB(A); arithmetic mean 49.56
    assert out[0].time_ns == start + 8 * 300 * S
    assert out[0].value == pytest.approx(51.78, abs=0.005)


def test_night_lmax_rule_uses_night_limit_plus_15_and_only_at_night():
    engine = noise_engine()
    day, night = ns("2024-07-01T21:50:00"), ns("2024-07-01T22:10:00")
    assert [t.rule_id for t in engine.process(noise(day, 40.0, lmax_db=80.0))] == []
    got = engine.process(noise(night, 40.0, lmax_db=66.0))  # zone 2 night 50 + 15 = 65
    assert [(t.rule_id, t.threshold) for t in got] == [("noise.night_lmax", 65.0)]


def test_a_device_without_zone_class_is_not_judged_by_zone_limits():
    engine = noise_engine(zone="")
    t0 = ns("2024-07-01T23:00:00")
    out = []
    for i in range(13):
        r = Reading("n1", "noise", t0 + i * 300 * S, {"laeq_db": 90.0}, (("device_id", "n1"),))
        out += engine.process(r)
    assert out == []


def test_rule_edges_at_22_00_and_06_00_local_time():
    engine = noise_engine()
    assert engine.process(noise(ns("2024-07-01T21:59:59"), 40.0, lmax_db=70.0)) == []
    (fired,) = engine.process(noise(ns("2024-07-01T22:00:00"), 40.0, lmax_db=70.0))
    assert fired.to_state is AlertState.FIRING
    assert engine.process(noise(ns("2024-07-02T05:59:59"), 40.0, lmax_db=70.0)) == []  # still night: holds
    assert engine.process(noise(ns("2024-07-02T06:00:00"), 40.0, lmax_db=70.0)) == []  # day: clearing starts
    (resolved,) = engine.tick(ns("2024-07-02T06:30:00"))
    assert resolved.to_state is AlertState.RESOLVED and resolved.time_ns == ns("2024-07-02T06:10:00")
