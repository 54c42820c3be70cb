"""No data: a device silent for longer than its expected interval × factor fires a device-silent alert."""

from __future__ import annotations

from pathlib import Path

from core.device import Device
from core.reading import Reading
from core.transition import AlertState
from rules.engine import Engine
from rules.loader import load_rules

S = 1_000_000_000
M = 60 * S
T0 = 1_720_000_000 * S

SILENT = """
[[rule]]
id = "silent"
kind = "*"
no_data = {}
route = "maintenance"
"""


def engine_for(tmp_path: Path, toml: str = SILENT, *, silent_factor: float = 3.0, devices=()) -> Engine:
    path = tmp_path / "r.toml"
    path.write_text(toml, encoding="utf-8")
    engine = Engine(load_rules([path], include_presets=False), silent_factor=silent_factor)
    engine.set_devices(devices or [Device(id="b1", key="k1", model="m", kind="bin_fill", expected_interval_s=300,
                                          district="chaoyang")])
    return engine


def reading(minute: float, device: str = "b1", kind: str = "bin_fill") -> Reading:
    return Reading(device, kind, T0 + int(minute * M), {"fill_pct": 10.0}, (("device_id", device),))


def test_silent_longer_than_interval_times_factor_fires_and_a_reading_resolves(tmp_path):
    e = engine_for(tmp_path)
    e.process(reading(0))
    assert e.tick(T0 + 14 * M) == []  # 5 min × 3 = 15 min not yet passed
    (fired,) = e.tick(T0 + 17 * M)
    assert (fired.rule_id, fired.device_id, fired.from_state, fired.to_state) == (
        "silent", "b1", AlertState.INACTIVE, AlertState.FIRING)
    assert fired.time_ns == T0 + 15 * M and fired.threshold == 900 and fired.value == 17 * 60
    assert fired.route == "maintenance" and dict(fired.labels)["device_id"] == "b1"
    assert e.tick(T0 + 30 * M) == []  # fires once
    (resolved,) = e.process(reading(40))
    assert (resolved.from_state, resolved.to_state, resolved.value) == (AlertState.FIRING, AlertState.RESOLVED, 2400)
    assert e.tick(T0 + 54 * M) == []
    (again,) = e.tick(T0 + 56 * M)
    assert (again.from_state, again.to_state) == (AlertState.RESOLVED, AlertState.FIRING)


def test_regular_reports_keep_it_quiet(tmp_path):
    e = engine_for(tmp_path)
    out = []
    for minute in range(0, 240, 5):
        out += e.tick(T0 + minute * M) + e.process(reading(minute))
    assert out == []


def test_a_registered_device_that_never_reports_fires_after_the_span_from_start(tmp_path):
    e = engine_for(tmp_path)
    assert e.tick(T0) == []
    (fired,) = e.tick(T0 + 16 * M)
    assert fired.device_id == "b1" and fired.time_ns == T0 + 15 * M


def test_devices_in_maintenance_are_not_alerted(tmp_path):
    e = engine_for(tmp_path, devices=[Device(id="b1", key="k", model="m", kind="bin_fill", status="maintenance")])
    e.tick(T0)
    assert e.tick(T0 + 10 * 3600 * S) == []


def test_the_rule_factor_overrides_the_engine_factor_and_the_interval_comes_from_the_registry(tmp_path):
    devices = [Device(id="p1", key="k", model="m", kind="parking", expected_interval_s=3600),
               Device(id="b1", key="k2", model="m", kind="bin_fill", expected_interval_s=60)]
    e = engine_for(tmp_path, SILENT.replace("no_data = {}", "no_data = { factor = 2 }"), silent_factor=10,
                   devices=devices)
    e.tick(T0)
    assert [t.device_id for t in e.tick(T0 + 3 * M)] == ["b1"]  # 60 s × 2
    assert e.tick(T0 + 119 * M) == []
    assert [t.device_id for t in e.tick(T0 + 121 * M)] == ["p1"]  # 1 h × 2


def test_selection_by_kind_and_district(tmp_path):
    toml = SILENT.replace('kind = "*"', 'kind = "water_level"\nselect = { district = "haidian" }')
    devices = [Device(id="w1", key="a", model="m", kind="water_level", district="haidian", expected_interval_s=60),
               Device(id="w2", key="b", model="m", kind="water_level", district="chaoyang", expected_interval_s=60),
               Device(id="b1", key="c", model="m", kind="bin_fill", district="haidian", expected_interval_s=60)]
    e = engine_for(tmp_path, toml, devices=devices)
    e.tick(T0)
    assert [t.device_id for t in e.tick(T0 + 10 * M)] == ["w1"]


def test_the_preset_uses_the_registry_interval(tmp_path):
    rules = [r for r in load_rules([]) if r.id == "device.silent"]
    e = Engine(rules)
    e.set_devices([Device(id="n1", key="k", model="m", kind="noise", expected_interval_s=600)])
    e.process(reading(0, device="n1", kind="noise"))
    assert e.tick(T0 + 29 * M) == []
    assert [t.rule_id for t in e.tick(T0 + 31 * M)] == ["device.silent"]
