"""The engine's per-device caches (selected rules, zone limits, report interval) follow the registry and the tags."""

from __future__ import annotations

from pathlib import Path

from core.device import Device
from core.reading import Reading
from rules.engine import Engine
from rules.loader import load_rules
from rules.windows import TrendWindow

S = 1_000_000_000
M = 60 * S
T0 = 1_720_000_000 * S

RULES = """
[[rule]]
id = "loud"
kind = "noise"
field = "laeq_db"
aggregate = "mean"
window = "1h"
op = ">"
select = { tags = { site = "*" } }

[rule.threshold]
"1" = 55
"4a" = 70
"""


def engine(tmp_path: Path) -> Engine:
    path = tmp_path / "city.toml"
    path.write_text(RULES, encoding="utf-8")
    return Engine(load_rules([path], include_presets=False))


def device(zone: str, site: str = "cs-1", interval_s: int = 60) -> Device:
    return Device(id="n1", key="k", model="acme-noise", kind="noise", zone_class=zone, site=site,
                  expected_interval_s=interval_s)


def noise(minute: float, laeq: float, tags: tuple[tuple[str, str], ...] = (("device_id", "n1"),)) -> Reading:
    return Reading("n1", "noise", T0 + int(minute * M), {"laeq_db": laeq}, tags)


def test_set_devices_changes_the_zone_limit_a_device_is_judged_by(tmp_path):
    e = engine(tmp_path)
    e.set_devices([device("4a")])
    assert e.process(noise(0, 60.0)) == []  # under the 4a limit of 70
    e.set_devices([device("1")])
    fired = e.process(noise(1, 60.0))  # the same device, now in zone 1 (limit 55)
    assert [(t.rule_id, t.to_state.value, t.threshold) for t in fired] == [("loud", "firing", 55.0)]


def test_set_devices_changes_which_rules_select_a_device(tmp_path):
    e = engine(tmp_path)
    e.set_devices([device("1", site="")])
    assert e.process(noise(0, 80.0)) == []  # no site: the rule does not select it
    e.set_devices([device("1", site="cs-1")])
    assert [t.rule_id for t in e.process(noise(1, 80.0))] == ["loud"]


def test_a_reading_with_other_tags_is_selected_by_its_own_tags(tmp_path):
    e = engine(tmp_path)
    e.set_devices([device("1", site="")])
    assert e.process(noise(0, 80.0)) == []
    tagged = (("device_id", "n1"), ("site", "cs-9"))
    assert [t.labels for t in e.process(noise(1, 80.0, tagged))] == [tagged]


def test_set_devices_changes_the_interval_that_weighs_samples(tmp_path):
    e = engine(tmp_path)
    e.set_devices([device("1", interval_s=60)])
    e.process(noise(0, 50.0))
    e.process(noise(10, 50.0))  # 10 minutes later: weighed by the 60 s cap
    assert e.state_of("loud", "n1").coverage_s == 120.0
    e.set_devices([device("1", interval_s=900)])
    e.process(noise(20, 50.0))  # now capped at 900 s: the whole 600 s gap counts
    assert e.state_of("loud", "n1").coverage_s == 720.0


def test_a_flat_trend_window_has_slope_zero_and_a_changed_value_ends_it():
    w = TrendWindow(900, 64)
    for i in range(5):
        w.add(T0 + i * M, 0.0, 60.0)
    assert w.slope_per_s() == 0.0
    w.add(T0 + 5 * M, 30.0, 60.0)
    assert w.slope_per_s() == 0.0  # the median of the pairwise slopes: only 5 of 15 are positive
    for i in range(6, 12):
        w.add(T0 + i * M, 30.0 + 6 * (i - 5), 60.0)
    assert w.slope_per_s() > 0
