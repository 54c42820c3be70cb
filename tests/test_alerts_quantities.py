"""Every message states what the rule measured, in the rule's own unit: for each preset rule and each
notifier, the rendered text and JSON carry the quantity derived from the rule's field and aggregate
(a `water.rising` message never calls seconds a depth)."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from alerts.config import AlertsConfig
from alerts.model import Event, Measured, Notice, fingerprint
from alerts.notifiers import build_notifiers
from core.device import Device
from core.reading import Reading
from core.transition import AlertState
from rules.engine import Engine
from rules.loader import load_rules
from rules.model import Rule

T0 = 1_784_600_000_000_000_000  # 2026-07-21 02:13:20 UTC = 10:13 Beijing time
PRESETS = load_rules([], include_presets=True)
DEVICES = {
    "water_level": Device("WL-1", "a84041000181c001", "dragino-ldds75", "water_level", 39.91, 116.37,
                          "建国门桥下穿通道", "朝阳区", "建外街道"),
    "bin_fill": Device("BN-1", "24e1247100000010", "milesight-em310-udl", "bin_fill", 39.91, 116.45,
                       "示范路 1 号", "朝阳区"),
    "noise": Device("NS-1", "24e1247100000020", "milesight-ws302", "noise", 39.90, 116.46, "示范路 2 号", "朝阳区",
                    zone_class="2"),
    "dust": Device("DS-1", "24e1247100000030", "milesight-em500-pp", "dust", 39.90, 116.46, "工地 3 号", "朝阳区"),
    "parking": Device("PK-1", "24e1247100000040", "nwave-nps405", "parking", 39.90, 116.46, "禁停路段", "朝阳区"),
}
# rule field → the quantity name a person reads
FIELD_NAMES = {"depth_mm": "水深", "fill_pct": "满溢度", "tilted": "倾倒/开盖", "laeq_db": "等效声级 LAeq",
               "lmax_db": "最大声级 Lmax", "pm10_ugm3": "PM10 浓度", "pm2_5_ugm3": "PM2.5 浓度",
               "battery_pct": "电量", "occupied": "占用时长"}
RECEIVERS = {
    "cases": {"type": "case_platform", "url": "http://127.0.0.1:9/cases", "edition": "cjt214"},
    "desk": {"type": "webhook", "url": "http://127.0.0.1:9/desk"},
    "am": {"type": "alertmanager", "url": "http://127.0.0.1:9/am"},
    "wecom": {"type": "wecom", "key": "k"},
    "dingtalk": {"type": "dingtalk", "access_token": "t"},
    "mqtt": {"type": "mqtt"},
}
NOTIFIERS = build_notifiers(AlertsConfig.model_validate({"receivers": RECEIVERS}))


def limit(rule: Rule) -> float:
    """The rule's last level at night in zone 2 (or whatever single limit it has)."""
    t = rule.levels[-1].threshold
    return next(v for v in (t.resolve("night", "2"), t.resolve("*", "*"), *t.values.values()) if v is not None)


def scenario(rule: Rule) -> tuple[float, float, Measured, float | None, str, str]:
    """A firing value for the rule, what the transition carries, and the quantity text and unit text expected."""
    target = rule.target if rule.target is not None else (rule.eta.target if rule.eta else None)
    if rule.is_no_data:
        return 10_800.0, 10_800.0, Measured(aggregate="silent"), None, "静默时长", "180 分钟"
    if rule.quality is not None:
        if rule.quality.count and not rule.quality.for_s:
            return 4.0, float(rule.quality.count), Measured(aggregate="failed_count"), None, "数据异常次数", "4 次"
        return 3600.0, rule.quality.for_s, Measured(aggregate="failed_for"), None, "数据异常持续时长", "60 分钟"
    if rule.aggregate == "eta":
        m = Measured(rule.field, "eta", target, current=89.0, rate_per_s=25 / 60)
        name = "预计达到 270 mm（27.0 cm）" if rule.field == "depth_mm" else f"预计达到 {target:g} %"
        return 435.0, limit(rule), m, 435.0, name, "分钟"
    thr = limit(rule)
    if rule.field in ("tilted", "occupied"):
        m = Measured(rule.field, rule.aggregate, held_s=rule.for_s or 0.0)
        if rule.field == "occupied":
            return 1.0, 1.0, m, None, "占用时长", f"{rule.for_s / 60:.0f} 分钟"
        return 1.0, 1.0, m, None, FIELD_NAMES[rule.field], "是"
    units = {"depth_mm": "mm", "fill_pct": "%", "laeq_db": "dB(A)", "lmax_db": "dB(A)", "pm10_ugm3": "µg/m³",
             "pm2_5_ugm3": "µg/m³", "battery_pct": "%"}
    value = float(thr) + 1
    eta_s = 300.0 if rule.eta else None
    current = value if rule.eta else None
    m = Measured(rule.field, rule.aggregate, target, current=current, rate_per_s=0.5 if rule.eta else None)
    return value, float(thr), m, eta_s, FIELD_NAMES[rule.field], units[rule.field]


def notice_for(rule: Rule) -> Notice:
    kind = "water_level" if rule.is_no_data or rule.quality else next(iter(rule.select.kinds or ["water_level"]))
    value, thr, m, eta_s, _, _ = scenario(rule)
    device = DEVICES[kind]
    labels = {**dict(rule.labels), "kind": kind, "district": device.district}
    return Notice(fingerprint=fingerprint(rule.id, device.id), seq=1, event=Event.FIRING, rule_id=rule.id,
                  device_id=device.id, severity=rule.levels[-1].severity, previous_severity=None,
                  route=rule.levels[-1].route, value=value, threshold=thr, eta_s=eta_s, summary="", labels=labels,
                  started_ns=T0, time_ns=T0, resolved_ns=None, episode=1, case_key="k:1", device=device,
                  measured=m)


def rendered_text(name: str, n: Notice) -> str:
    body = NOTIFIERS[name].render(n)
    assert body is not None
    if name in ("wecom", "dingtalk"):
        return body["markdown"].get("content") or body["markdown"]["text"]
    return orjson.dumps(body).decode()


@pytest.mark.parametrize("receiver", sorted(RECEIVERS))
@pytest.mark.parametrize("rule", PRESETS, ids=[r.id for r in PRESETS])
def test_every_notifier_states_the_rules_own_quantity_and_unit(rule: Rule, receiver: str):
    n = notice_for(rule)
    *_, name, unit_text = scenario(rule)
    text = rendered_text(receiver, n)
    assert name in text, (rule.id, receiver, text)
    assert unit_text in text, (rule.id, receiver, text)
    if rule.aggregate == "eta" or rule.is_no_data or rule.quality:
        # seconds are never shown as the field's own unit: no "435 mm", no "900 mm" threshold
        assert f"{n.value:.0f} mm" not in text and f"{n.threshold:.0f} mm" not in text
        assert f"{n.value:.0f} %" not in text


@pytest.mark.parametrize("receiver", sorted(RECEIVERS))
def test_a_flood_warning_shows_depth_rise_rate_eta_clock_time_threshold_and_place(receiver: str):
    rising = next(r for r in PRESETS if r.id == "water.rising")
    text = rendered_text(receiver, notice_for(rising))
    for want in ("89.0 mm（8.9 cm）",       # depth now
                 "+150.0 cm/h",            # 25 mm a minute
                 "7 分钟",                  # 435 s to 27 cm
                 "10:20（北京时间）",        # T0 10:13:20 + 7 min 15 s, Beijing time
                 "阈值 ≤ 15 分钟",           # the rule's threshold, in its own unit
                 "建国门桥下穿通道"):          # the place
        assert want in text, (receiver, want, text)
    assert "水深 435" not in text and "900 mm" not in text


def test_the_webhook_json_describes_the_value_in_its_own_unit():
    rising = next(r for r in PRESETS if r.id == "water.rising")
    body = NOTIFIERS["desk"].render(notice_for(rising))
    assert body is not None
    assert body["value"] == 435.0 and body["unit"] == "s"
    measure = body["measure"]
    assert (measure["unit"], measure["value"], measure["threshold"]) == ("分钟", 7.25, 15.0)
    facts = {f["key"]: f for f in measure["facts"]}
    assert facts["current"]["value"] == 89.0 and facts["current"]["unit"] == "mm"
    assert facts["rate"]["value"] == pytest.approx(150.0) and facts["rate"]["unit"] == "cm/h"
    assert facts["eta_at"]["text"].startswith("10:20")
    assert body["trend"] == "rising"


def test_the_engine_says_what_its_value_measures():
    """The rules engine names field and aggregate and adds the depth now and its trend to a rising warning."""
    rising = next(r for r in PRESETS if r.id == "water.rising")
    engine = Engine([rising])
    engine.set_devices([DEVICES["water_level"]])
    out = []
    for minute, depth in enumerate([20, 45, 70, 95, 120, 145]):  # the preset's min_span: 5 minutes of readings
        out += engine.process(Reading("WL-1", "water_level", T0 + minute * 60_000_000_000,
                                      {"depth_mm": float(depth)}, {}))
    fired = [t for t in out if t.to_state is AlertState.FIRING]
    assert fired, out
    t = fired[0]
    assert (t.field_name, t.aggregate, t.target) == ("depth_mm", "eta", 270.0)
    assert t.current is not None and t.current >= 70 and t.rate_per_s == pytest.approx(25 / 60)
    assert t.value == t.eta_s and t.held_s == 0.0


def test_the_expected_clock_time_is_in_the_configured_zone():
    rising = next(r for r in PRESETS if r.id == "water.rising")
    text = rendered_text("wecom", replace(notice_for(rising), timezone="Europe/Berlin"))
    assert "04:20（Europe/Berlin）" in text  # 02:20 UTC in July
