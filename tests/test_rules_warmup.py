"""Warm-up from a real influxd: the engine's queries fetch the window it needs and restore its state."""

from __future__ import annotations

import httpx

from core.device import Device
from core.reading import Reading
from core.transition import AlertState, Severity
from rules.engine import Engine
from rules.loader import load_rules
from rules.warmup import readings_from_series
from sim.daemons import Daemon

S = 1_000_000_000
M = 60 * S
NOW = 1_720_000_000 * S


def write(influxd: Daemon, db: str, lines: list[str]) -> None:
    r = httpx.post(f"{influxd.url}/write", params={"db": db, "precision": "ns"}, content="\n".join(lines))
    r.raise_for_status()


def query(influxd: Daemon, db: str, q: str) -> list[dict]:
    r = httpx.get(f"{influxd.url}/query", params={"db": db, "q": q, "epoch": "ns"}, timeout=30)
    r.raise_for_status()
    result = r.json()["results"][0]
    assert "error" not in result, result
    return result.get("series", [])


def test_warm_up_from_influxdb_restores_a_firing_flood_alert(influxd, influx_db):
    lines = []
    # two hours of history a minute apart: dry until 40 min ago, then rising 10 mm a minute
    for minute in range(-120, 1):
        depth = max(0, 10 * (minute + 40))
        lines.append(f"water_level,device_id=w1,district=haidian depth_mm={float(depth)} {NOW + minute * M}")
    lines.append(f"noise,device_id=n1,zone_class=2 laeq_db=52.5,lmax_db=60.0 {NOW - 30 * M}")
    write(influxd, influx_db, lines)

    rules = [r for r in load_rules([]) if r.select.kinds and r.select.kinds & {"water_level", "noise"}]
    engine = Engine(rules)
    engine.set_devices([Device(id="w1", key="a", model="m", kind="water_level", expected_interval_s=60),
                        Device(id="n1", key="b", model="m", kind="noise", zone_class="2")])
    queries = engine.warm_up_queries(NOW)
    assert len(queries) == 2 and all(q.startswith("SELECT") for q in queries)
    series = [s for q in queries for s in query(influxd, influx_db, q)]
    readings = readings_from_series(series)
    water = [r for r in readings if r.kind == "water_level"]
    # water rules look back 15 min of window + 10 min keep_firing_for: not two hours
    assert 20 <= len(water) <= 26
    assert water[-1] == Reading("w1", "water_level", NOW, {"depth_mm": 400.0},
                                (("device_id", "w1"), ("district", "haidian")))
    assert any(r.kind == "noise" and r.tags == (("device_id", "n1"), ("zone_class", "2")) for r in readings)

    engine.warm_up(readings)
    state = engine.state_of("water.depth", "w1")
    assert state.state is AlertState.FIRING and state.severity is Severity.CRITICAL and state.value == 400.0

    # the alert carries on after the restart: falling water resolves it, from FIRING
    out = []
    for minute in range(1, 15):
        t = NOW + minute * M
        out += engine.tick(t) + engine.process(Reading("w1", "water_level", t, {"depth_mm": 50.0}, ()))
    resolved = [t for t in out if t.rule_id == "water.depth"]
    assert [(t.from_state, t.to_state) for t in resolved] == [(AlertState.FIRING, AlertState.RESOLVED)]


def test_readings_from_rfc3339_series():
    series = [{"name": "dust", "columns": ["time", "device_id", "pm10_ugm3", "site"],
               "values": [["2024-07-01T00:00:00.5Z", "d1", 80.5, None], ["2024-07-01T00:05:00Z", "d1", None, None]]}]
    (r,) = readings_from_series(series)
    assert r.time_ns == 1719792000 * S + S // 2 and r.fields == {"pm10_ugm3": 80.5} and r.tags == (("device_id", "d1"),)
