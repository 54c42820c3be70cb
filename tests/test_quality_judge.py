"""The quality judge's checks one by one, its configuration, and the quality rule kind's loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.reading import Reading
from core.transition import AlertState, Severity
from decoders import get_model
from decoders.quality import CHECKS, Judge, build_profile
from rules.gate import RuleSet
from rules.loader import RuleError, load_rules
from rules.machine import RestoredAlert
from rules.tables import QUALITY_CHECKS
from service.config import ConfigError, load_config
from service.metrics import Metrics
from service.quality_count import QualityCount

NS = 10**9
T0 = 5_878_667 * 300 * NS  # on a 5-minute slot boundary
LDDS75 = get_model("dragino-ldds75")
WS302 = get_model("milesight-ws302")
PM = get_model("decentlab-dl-pm")


def judged(judge: Judge, model, kind: str, values: list[dict], install: dict | None = None,
           step_s: int = 300) -> list[tuple[str, str | None]]:
    out = []
    for i, fields in enumerate(values):
        f = dict(fields)
        judge.judge("dev", kind, model, T0 + i * step_s * NS, f, fields, install or {}, step_s)
        out.append((f["quality"], f.get("quality_check")))
    return out


def test_a_spike_is_bad_the_return_is_good_and_a_confirmed_jump_is_real() -> None:
    depths = [20.0, 2400.0, 20.0, 25.0]
    assert judged(Judge(), LDDS75, "water_level", [{"depth_mm": d} for d in depths]) == [
        ("good", None), ("bad", "spike"), ("good", None), ("good", None)]
    # a jump that holds (a second reading near the new level) is real water: only the first is flagged
    rising = [20.0, 900.0, 910.0, 920.0]
    assert judged(Judge(), LDDS75, "water_level", [{"depth_mm": d} for d in rising]) == [
        ("good", None), ("bad", "spike"), ("good", None), ("good", None)]
    # a steady rise of 75 mm/min is not a spike
    steady = [20.0 + 375 * i for i in range(4)]
    assert all(q == "good" for q, _ in judged(Judge(), LDDS75, "water_level", [{"depth_mm": d} for d in steady]))


def test_stuck_after_the_kinds_allowance_and_configurable_per_model() -> None:
    same = [{"laeq_db": 63.2}] * 14  # 14 × 5 min: identical for 65 minutes
    got = judged(Judge(), WS302, "noise", same)
    assert got[:13] == [("good", None)] * 13 and got[13] == ("suspect", "stuck")
    relaxed = Judge(models={"milesight-ws302": {"stuck_after_s": 7200}})
    assert all(q == "good" for q, _ in judged(relaxed, WS302, "noise", same))
    off = Judge(kinds={"noise": {"stuck_after_s": 0}})
    assert all(q == "good" for q, _ in judged(off, WS302, "noise", [{"laeq_db": 63.2}] * 40))


def test_range_from_the_models_rated_span_flat_zero_and_install() -> None:
    assert judged(Judge(), WS302, "noise", [{"laeq_db": 131.0}, {"laeq_db": 129.9}]) == [
        ("bad", "range"), ("good", None)]  # WS302 is rated 30–130 dB(A)
    # a distance outside the gauge's span that derivation refused still counts, from the raw fields
    f: dict = {}
    Judge().judge("d", "water_level", LDDS75, T0, f, {"distance_mm": 9000.0}, {"mount_height_mm": 3000.0}, 300)
    assert (f["quality"], f["quality_check"]) == ("bad", "range")
    assert judged(Judge(), PM, "dust", [{"pm2_5_ugm3": 0.0, "pm10_ugm3": 3.0}]) == [("suspect", "flat_zero")]
    assert judged(Judge(), get_model("decentlab-dl-pr26"), "water_level", [{"depth_mm": 650.0}],
                  install={"mount_height_mm": 500.0}) == [("bad", "install")]
    bottom = get_model("dragino-ldds20")  # fill height measured from under the bin
    assert judged(Judge(), bottom, "bin_fill", [{"distance_mm": 1300.0}], install={"bin_depth_mm": 1200.0}) == [
        ("bad", "install")]


def test_online_slot_counts_one_report_per_expected_interval_and_a_redelivery_keeps_its_verdict() -> None:
    judge = Judge()
    slots = []
    for t in (0, 100, 310, 620, 620, 1500):  # two in the first slot; a redelivery at 620
        f: dict = {"laeq_db": 50.0 + t / 1000}
        judge.judge("d", "noise", WS302, T0 + t * NS, f, f, {}, 300)
        slots.append(f["online_slot"])
    assert slots == [1, 0, 1, 1, 1, 1]
    # an older reading replayed: no fields, so the stored point keeps its first judgement
    f = {"laeq_db": 50.1}
    assert judge.judge("d", "noise", WS302, T0 + 100 * NS, f, f, {}, 300).quality == ""
    assert f == {"laeq_db": 50.1}


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown quality setting 'stuck_after'"):
        build_profile(WS302, "noise", {"stuck_after": 10})


def test_config_refuses_an_unknown_kind_or_model(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[quality]\nkinds = { nois = { stuck_after_s = 60 } }\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="nois"):
        load_config(cfg)
    cfg.write_text('[quality.models."no-such-model"]\nstuck_after_s = 60\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="no-such-model"):
        load_config(cfg)


def _rules(tmp_path: Path, text: str) -> list:
    f = tmp_path / "r.toml"
    f.write_text(text, encoding="utf-8")
    return load_rules([f], include_presets=False)


def test_quality_rule_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(RuleError, match=r"quality\.checks"):
        _rules(tmp_path, '[[rule]]\nid = "q"\nkind = "*"\nquality = { checks = ["stuk"], for = "1h" }\n')
    with pytest.raises(RuleError, match=r"quality\.within"):
        _rules(tmp_path, '[[rule]]\nid = "q"\nkind = "*"\nquality = { checks = ["spike"], count = 3 }\n')
    with pytest.raises(RuleError, match=r"'field'.*not allowed in a quality rule"):
        _rules(tmp_path, '[[rule]]\nid = "q"\nkind = "*"\nfield = "x"\nquality = { checks = ["spike"], for = "1h" }\n')
    assert set(QUALITY_CHECKS) == set(CHECKS)


def _reading(t_s: int, depth: float, quality: str, check: str | None = None) -> Reading:
    fields: dict = {"depth_mm": depth, "quality": quality}
    if check:
        fields["quality_check"] = check
    return Reading("wl", "water_level", T0 + t_s * NS, fields, (("device_id", "wl"), ("district", "朝阳区")))


def test_bad_readings_are_ignored_by_default_and_taken_by_rules_that_ask(tmp_path: Path) -> None:
    rules = _rules(tmp_path, '''
[[rule]]
id = "deep"
kind = "water_level"
field = "depth_mm"
op = ">="
threshold = 270
route = "emergency"

[[rule]]
id = "deep.raw"
kind = "water_level"
field = "depth_mm"
op = ">="
threshold = 270
route = "webhook"
ignore_bad = false

[[rule]]
id = "spiky"
kind = "water_level"
quality = { checks = ["spike"], count = 3, within = "1h" }
route = "maintenance"
''')
    rs = RuleSet(rules)
    fired = rs.process(_reading(0, 2400.0, "bad", "spike"))
    assert [(t.rule_id, t.to_state) for t in fired] == [("deep.raw", AlertState.FIRING)]
    assert [(t.rule_id, dict(t.labels)["kind"]) for t in rs.process(_reading(300, 300.0, "suspect", "stuck"))] == [
        ("deep", "water_level")]
    # three spikes within an hour: a maintenance alert, once; it resolves when they stop
    out = []
    for i, t_s in enumerate((600, 900, 1200)):
        out += rs.process(_reading(t_s + i, 20.0, "bad", "spike"))
    assert [(t.rule_id, t.route) for t in out if t.rule_id == "spiky"] == [("spiky", "maintenance")]
    later = rs.process(_reading(1200 + 2 * 3600, 20.0, "good"))
    assert [(t.rule_id, t.to_state) for t in later if t.rule_id == "spiky"] == [("spiky", AlertState.RESOLVED)]


def test_verdicts_are_counted_for_prometheus_per_chunk() -> None:
    metrics = Metrics()
    count = QualityCount(metrics)
    for quality in ("good", "good", "bad", "suspect"):
        count.on_reading(_reading(0, 1.0, quality))
    count.on_reading(Reading("x", "noise", T0, {"laeq_db": 50.0}, ()))  # not judged: not counted

    def value(quality: str) -> float | None:
        return metrics.registry.get_sample_value("urbansense_readings_judged_total",
                                                 {"kind": "water_level", "quality": quality})
    assert value("good") is None  # nothing reaches Prometheus before the chunk ends
    count.on_chunk_end()
    assert (value("good"), value("bad"), value("suspect")) == (2.0, 1.0, 1.0)


def test_a_restored_maintenance_alert_resolves_when_the_data_passes_again(tmp_path: Path) -> None:
    rs = RuleSet(_rules(tmp_path, '[[rule]]\nid = "stuck"\nkind = "*"\nquality = { checks = ["stuck"], for = "30m" }\n'
                                  'route = "maintenance"\n'))
    assert rs.restore([RestoredAlert("stuck", "wl", AlertState.FIRING, Severity.WARNING, T0, T0)]) == 1
    assert rs.warm_up([]) == []
    assert [(t.rule_id, t.from_state, t.to_state) for t in rs.process(_reading(60, 20.0, "good"))] == [
        ("stuck", AlertState.FIRING, AlertState.RESOLVED)]
