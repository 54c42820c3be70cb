"""Pure pieces of the alerts package: fingerprints, GCJ-02, case categories, matchers, routing, config,
backoff, the InfluxDB point, and the documented message formats."""

from __future__ import annotations

import base64
import hashlib
import hmac
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from alerts.categories import load_categories
from alerts.config import AlertsConfig, OutboxConfig, RouteConfig
from alerts.errors import AlertsError
from alerts.geo import wgs84_to_gcj02
from alerts.matchers import parse_matcher
from alerts.model import Event, Notice, fingerprint
from alerts.notifiers import category_warnings
from alerts.notifiers.alertmanager import render_v4
from alerts.notifiers.case_platform import render_case
from alerts.notifiers.dingtalk import render_markdown as dingtalk_markdown
from alerts.notifiers.dingtalk import sign
from alerts.notifiers.mqtt import topic_for
from alerts.notifiers.wecom import render_markdown as wecom_markdown
from alerts.outbox import backoff_s
from alerts.points import transition_point
from alerts.routing import Router
from cli.alerts import parse_duration_s
from core.device import Device
from core.transition import AlertState, AlertTransition, Severity
from rules.loader import load_rules

T0 = 1_784_600_000_000_000_000  # 2026-07-21 (UTC)
WL = Device(id="wl-001", key="a84041000181c001", model="dragino-ldds75", kind="water_level",
            latitude=39.911954, longitude=116.377817, address="建国门桥下穿通道", district="朝阳区",
            street="建外街道")


def notice(event: Event = Event.FIRING, *, device: Device | None = WL, **kw) -> Notice:
    base = dict(fingerprint=fingerprint("water_closure", "wl-001"), seq=1, event=event, rule_id="water_closure",
                device_id="wl-001", severity="critical", previous_severity=None, route="emergency", value=312.0,
                threshold=270.0, eta_s=None, summary="", labels={"kind": "water_level", "district": "朝阳区"},
                started_ns=T0, time_ns=T0, resolved_ns=None, episode=1, case_key="k:1", device=device)
    base.update(kw)
    return Notice(**base)


def test_fingerprint_is_stable_per_rule_and_device():
    assert fingerprint("r", "d") == fingerprint("r", "d")
    assert len(fingerprint("r", "d")) == 16
    assert fingerprint("r", "d") != fingerprint("r", "e") != fingerprint("rd", "")


@pytest.mark.parametrize(("wgs", "gcj"), [
    ((31.1774276, 121.5272106), (31.17530398364597, 121.531541859215)),     # Shanghai
    ((22.543847, 113.912316), (22.540796131694766, 113.9171764808363)),     # Shenzhen
    ((39.911954, 116.377817), (39.91334545536069, 116.38404722455657)),     # Beijing
])
def test_wgs84_to_gcj02_matches_published_reference_pairs(wgs, gcj):
    assert wgs84_to_gcj02(*wgs) == pytest.approx(gcj, abs=1e-9)


def test_gcj02_is_wgs84_outside_china():
    assert wgs84_to_gcj02(52.52, 13.405) == (52.52, 13.405)


def test_shipped_category_table_has_both_editions():
    t = load_categories()
    overflow = t.get("bin_overflow", "2026")
    assert (overflow.code, overflow.name) == ("06042", "垃圾站（箱）满溢")
    assert t.get("bin_overflow", "cjt214").code == "0102"
    assert t.get("illegal_parking_motor", "cjt214").code == "0505"
    assert t.get("road_waterlogging", "2026").code is None
    assert t.for_alert({}, "water_level", "cjt214").code == "0406"
    assert t.for_alert({"case_category": "construction_dust"}, "dust", "2026").code == "08004"


def test_category_table_errors_name_the_entry(tmp_path: Path):
    bad = tmp_path / "cats.toml"
    bad.write_text('[editions.2026]\ndigits = 5\n[categories.x]\nname = "X"\n2026 = "123"\n', encoding="utf-8")
    with pytest.raises(AlertsError, match=r"categories\.x\.2026: expected 5 digits"):
        load_categories(bad)
    with pytest.raises(AlertsError, match="unknown case category 'nope'"):
        load_categories().get("nope", "2026")


def test_case_body_carries_category_codes_location_and_values():
    body = render_case(notice(labels={"kind": "bin_fill", "case_category": "bin_overflow"}, value=92.0,
                              threshold=80.0), table=load_categories(), edition="2026",
                       district_codes={"朝阳区": "110105"}, source="IoT sensor")
    assert body["action"] == "open"
    assert body["idempotency_key"] == f"{fingerprint('water_closure', 'wl-001')}:1"
    assert body["category"]["code"] == "06042"
    assert body["category"]["full_code"] == "11010506042"
    assert body["location"]["wgs84"] == {"lat": 39.911954, "lon": 116.377817}
    assert body["location"]["gcj02"]["lat"] == pytest.approx(39.91334545536069, abs=1e-6)
    assert body["location"]["district_code"] == "110105"
    assert body["location"]["address"] == "建国门桥下穿通道"
    assert "92" in body["description"] and "80" in body["description"]
    assert "water_closure" in body["description"]
    assert body["observed_at"].endswith("+08:00")
    assert body["severity"] == "critical" and body["source"] == "IoT sensor"
    close = render_case(notice(Event.RESOLVED, resolved_ns=T0 + 10**12), table=load_categories(),
                        edition="cjt214", district_codes={}, source="IoT sensor")
    assert close["action"] == "close" and close["category"]["code"] == "0406"
    assert close["category"]["full_code"] is None


def test_case_body_with_unknown_category_label_still_renders_and_says_why():
    body = render_case(notice(labels={"case_category": "no_such"}), table=load_categories(), edition="2026",
                       district_codes={}, source="IoT sensor")
    assert body["category"] is None
    assert "no_such" in body["category_error"]


def test_matchers_parse_and_match():
    assert parse_matcher("district=朝阳区").matches({"district": "朝阳区"})
    assert parse_matcher("rule_id=~noise_.*").matches({"rule_id": "noise_night"})
    assert not parse_matcher("rule_id=~noise").matches({"rule_id": "noise_night"})
    assert parse_matcher("severity!=info").matches({"severity": "critical"})
    assert parse_matcher("site!~a.*").matches({})
    for bad in ("district", "=x", "a=~(", "1abc=x"):
        with pytest.raises(AlertsError):
            parse_matcher(bad)


def test_router_first_match_continue_and_default():
    r = Router([
        RouteConfig(route="emergency", severities=["critical"], receivers=["desk", "wecom"], continue_matching=True),
        RouteConfig(route="emergency", receivers=["cases"]),
        RouteConfig(rule_ids=["noise_*"], match={"district": "朝阳区"}, receivers=["noise_team"]),
    ], default_receivers=["am"])
    assert r.receivers(route="emergency", rule_id="x", severity="critical", labels={}) == ("desk", "wecom", "cases")
    assert r.receivers(route="emergency", rule_id="x", severity="warning", labels={}) == ("cases",)
    assert r.receivers(route="case", rule_id="noise_day", severity="warning",
                       labels={"district": "朝阳区"}) == ("noise_team",)
    assert r.receivers(route="case", rule_id="noise_day", severity="warning", labels={}) == ("am",)


def test_example_config_is_valid():
    data = tomllib.loads((Path("alerts") / "config.example.toml").read_text(encoding="utf-8"))
    cfg = AlertsConfig.model_validate(data["alerts"])
    assert cfg.receivers["city_cases"].type == "case_platform"
    assert cfg.receivers["desk_dingtalk"].secret.get_secret_value().startswith("SEC")
    assert len(cfg.inhibit_rules) == 3


def test_config_defaults_and_clear_errors():
    cfg = AlertsConfig()
    assert cfg.repeat_interval_s == 4 * 3600 and cfg.receivers == {} and len(cfg.inhibit_rules) == 3
    with pytest.raises(ValidationError, match="unknown receiver"):
        AlertsConfig.model_validate({"routes": [{"route": "case", "receivers": ["nobody"]}]})
    with pytest.raises(ValidationError, match="extra"):
        AlertsConfig.model_validate({"repeat_intervall_s": 5})
    with pytest.raises(ValidationError, match="6 digits"):
        AlertsConfig.model_validate({"receivers": {"c": {"type": "case_platform", "url": "http://127.0.0.1:1",
                                                         "district_codes": {"朝阳区": "1101"}}}})
    with pytest.raises(ValidationError, match="time zone"):
        AlertsConfig.model_validate({"timezone": "Mars/Olympus"})
    for name, field in AlertsConfig.model_fields.items():
        assert field.description, name


def test_backoff_doubles_is_capped_jittered_and_honours_retry_after():
    cfg = OutboxConfig(base_delay_s=1.0, max_delay_s=30.0, jitter=0.2)
    assert [backoff_s(n, cfg, 0.5) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert backoff_s(20, cfg, 0.5) == 30.0
    assert backoff_s(1, cfg, 0.0) == pytest.approx(0.8) and backoff_s(1, cfg, 1.0) == pytest.approx(1.2)
    assert backoff_s(1, cfg, 0.5, retry_after_s=7.0) == 7.0


def test_transition_point_for_the_alerts_measurement():
    t = AlertTransition("water_closure", "wl-001", AlertState.PENDING, AlertState.FIRING, Severity.CRITICAL, T0,
                        312.0, 270, "emergency", summary="水深超过封路线", eta_s=None,
                        labels=(("district", "朝阳区"), ("kind", "water_level")))
    p = transition_point(t)
    assert p.measurement == "alerts" and p.time_ns == T0
    assert dict(p.tags) == {"rule_id": "water_closure", "device_id": "wl-001", "severity": "critical",
                            "to_state": "firing", "district": "朝阳区", "kind": "water_level"}
    assert p.fields == {"from_state": "pending", "summary": "水深超过封路线", "value": 312.0, "threshold": 270.0,
                        "fingerprint": fingerprint("water_closure", "wl-001")}
    assert isinstance(p.fields["threshold"], float)


def test_alertmanager_payload_is_version_4():
    fired = render_v4(notice(summary="水深超过封路线"), receiver="ops", external_url="http://grafana.local/")
    assert set(fired) == {"version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
                          "commonLabels", "commonAnnotations", "externalURL", "alerts"}
    assert fired["version"] == "4" and fired["status"] == "firing" and fired["receiver"] == "ops"
    (a,) = fired["alerts"]
    assert set(a) == {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
    assert a["labels"]["alertname"] == "water_closure" and a["labels"]["severity"] == "critical"
    assert a["endsAt"] == "0001-01-01T00:00:00Z" and a["startsAt"].endswith("+00:00")
    assert a["annotations"]["summary"] == "水深超过封路线"
    assert all(isinstance(v, str) for v in a["labels"].values())
    resolved = render_v4(notice(Event.RESOLVED, resolved_ns=T0 + 60 * 10**9), receiver="ops")
    assert resolved["status"] == "resolved" and resolved["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"
    assert resolved["groupKey"] == fired["groupKey"]


def test_wecom_markdown_has_location_depth_trend_and_eta():
    body = wecom_markdown(notice(eta_s=720.0, value=240.0, labels={"kind": "water_level", "trend": "rising"}))
    assert body["msgtype"] == "markdown" and set(body) == {"msgtype", "markdown"}
    content = body["markdown"]["content"]
    for text in ("建国门桥下穿通道", "朝阳区", "水深", "240 mm", "24.0 cm", "上涨", "约 12 分钟", "GCJ-02", "wl-001"):
        assert text in content, text
    assert '<font color="warning">' in content


def test_wecom_markdown_is_cut_to_4096_bytes():
    body = wecom_markdown(notice(summary="很长" * 3000))
    assert len(body["markdown"]["content"].encode()) <= 4096


def test_dingtalk_markdown_and_signature():
    body = dingtalk_markdown(notice(eta_s=90.0), at_mobiles=["13800000000"], at_all=False)
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] and "水深" in body["markdown"]["text"]
    assert "@13800000000" in body["markdown"]["text"]
    assert body["at"] == {"atMobiles": ["13800000000"], "isAtAll": False}
    # the documented recipe: base64(HMAC-SHA256(secret, "<timestamp>\n<secret>"))
    expected = base64.b64encode(hmac.new(b"SECabc", b"1700000000000\nSECabc", hashlib.sha256).digest()).decode()
    assert sign("SECabc", 1700000000000) == expected


def test_mqtt_topic_template_keeps_one_level_per_value():
    assert topic_for("alerts/{route}/{device_id}", {"route": "emergency", "device_id": "gw/1+#"}) == \
        "alerts/emergency/gw_1__"


def test_durations():
    assert parse_duration_s("2h") == 7200 and parse_duration_s("1h30m") == 5400 and parse_duration_s("1d") == 86400
    for bad in ("", "2 hours", "h", "5x"):
        with pytest.raises(AlertsError):
            parse_duration_s(bad)


def test_example_config_sends_coded_flood_cases_and_names_the_gaps_it_leaves():
    """QA3 F14: the example's edition "2026" sent every flood case with `code: null`. Its flood cases are coded
    now, and the one gap left (noise_disturbance in CJ/T 214) is named in the file, as check-config names it."""
    text = (Path("alerts") / "config.example.toml").read_text(encoding="utf-8")
    cfg = AlertsConfig.model_validate(tomllib.loads(text)["alerts"])
    used = {dict(r.labels).get("case_category", "") for r in load_rules([], include_presets=True)}
    gaps = category_warnings(cfg, used)
    assert not [g for g in gaps if "road_waterlogging" in g], gaps
    assert all(g.split("'")[1] in text for g in gaps), gaps  # every uncoded category is named in the example
    receiver = cfg.receivers["city_cases"]
    table = load_categories()
    cat = table.for_alert({"case_category": "road_waterlogging"}, "water_level", receiver.edition)
    assert cat is not None and cat.code


def test_an_eta_under_a_minute_is_not_about_less_than_a_minute():
    """QA3 F13: the desk read "约 不足 1 分钟" ("about less than a minute")."""
    from alerts.describe import describe
    from alerts.model import Measured

    for target, key in ((270.0, "eta"), (None, "eta")):
        d = describe(Measured("depth_mm", "last", target, 265.0, 0.5), value=265.0, threshold=150.0, eta_s=30.0,
                     time_ns=T0, labels={}, kind="water_level")
        fact = d.fact(key)
        assert fact is not None and "不足 1 分钟" in fact.text and "约" not in fact.text, fact
    d = describe(Measured("depth_mm", "last", 270.0, 200.0, 0.1), value=200.0, threshold=150.0, eta_s=700.0,
                 time_ns=T0, labels={}, kind="water_level")
    assert d.fact("eta").text == "约 12 分钟"  # type: ignore[union-attr]
