"""The alert state machine with its SQLite store: what notifies, what is held back, what survives a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.config import AlertsConfig
from alerts.errors import AlertsError
from alerts.manager import AlertLifecycle
from alerts.model import Event, fingerprint
from alerts.notifiers import build_notifiers
from alerts.routing import Router
from alerts.store import AlertStore
from core.device import Device
from core.transition import AlertState, AlertTransition, Severity

S = 10**9
T0 = 1_784_600_000 * S
P, F, R, OFF = AlertState.PENDING, AlertState.FIRING, AlertState.RESOLVED, AlertState.INACTIVE
DEVICES = {
    f"wl-00{i}": Device(id=f"wl-00{i}", key=f"a8404100018{i:05d}", model="dragino-ldds75", kind="water_level",
                        latitude=39.9 + i / 1000, longitude=116.4, address=f"下穿通道 {i}", district="朝阳区",
                        street="建外街道")
    for i in range(1, 5)
} | {"bin-001": Device(id="bin-001", key="imei-1", model="x-bin", kind="bin_fill", district="海淀区")}

CONFIG = AlertsConfig.model_validate({
    "repeat_interval_s": 600,
    "receivers": {
        "cases": {"type": "case_platform", "url": "http://127.0.0.1:9/api", "district_codes": {"朝阳区": "110105"}},
        "desk": {"type": "webhook", "url": "http://127.0.0.1:9/desk"},
        "am": {"type": "alertmanager", "url": "http://127.0.0.1:9/am"},
    },
    "routes": [
        {"route": "emergency", "severities": ["critical"], "receivers": ["desk", "cases"]},
        {"route": "case", "receivers": ["cases"]},
        {"route": "emergency", "receivers": ["cases"]},
    ],
    "default_receivers": ["am"],
})


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def tr(to: AlertState, device: str = "wl-001", *, at: int = 0, sev: Severity = Severity.WARNING,
       rule: str = "water_depth", route: str = "case", value: float = 180.0, frm: AlertState | None = None,
       labels: dict[str, str] | None = None) -> AlertTransition:
    return AlertTransition(rule, device, frm or P, to, sev, T0 + at * S, value, 150.0, route,
                           summary="", labels=tuple((labels or {}).items()))


@pytest.fixture
def clock() -> Clock:
    return Clock()


def open_manager(db: str | Path, clock: Clock, config: AlertsConfig = CONFIG) -> AlertLifecycle:
    return AlertLifecycle(AlertStore(db), Router(config.routes, config.default_receivers), build_notifiers(config),
                        DEVICES.get, repeat_interval_s=config.repeat_interval_s,
                        inhibit_rules=config.inhibit_rules, clock=clock)


@pytest.fixture
def mgr(database: str, clock: Clock) -> AlertLifecycle:
    """A manager over a fresh alert store, once on SQLite and once on PostgreSQL."""
    m = open_manager(database, clock)
    yield m
    m.store.close()


def rows(m: AlertLifecycle, device: str = "wl-001", rule: str = "water_depth") -> list[tuple[int, str, str, str]]:
    """(seq, receiver, event, action) of every outbox row of one alert."""
    return [(o.seq, o.receiver, o.event, o.body.get("action", "")) for o in m.store.outbox(fingerprint(rule, device))]


def test_pending_does_not_notify_and_firing_opens_one_case(mgr):
    assert mgr.handle(tr(P, frm=OFF)).event is None
    assert rows(mgr) == []
    out = mgr.handle(tr(F, at=60))
    assert out.event is Event.FIRING and out.enqueued == 1
    assert rows(mgr) == [(1, "cases", "firing", "open")]
    a = mgr.store.get(fingerprint("water_depth", "wl-001"))
    assert a.state == "firing" and a.started_ns == T0 + 60 * S and a.case_key == f"{a.fingerprint}:1"


def test_pending_cleared_before_firing_never_notifies(mgr):
    mgr.handle(tr(P, frm=OFF))
    assert mgr.handle(tr(OFF, at=30)).event is None
    assert mgr.store.get(fingerprint("water_depth", "wl-001")).state == "inactive"
    assert rows(mgr) == []


def test_resolve_closes_the_case_it_opened(mgr):
    mgr.handle(tr(F))
    out = mgr.handle(tr(R, at=300, frm=F))
    assert out.event is Event.RESOLVED
    assert rows(mgr) == [(1, "cases", "firing", "open"), (2, "cases", "resolved", "close")]
    close = mgr.store.outbox(fingerprint("water_depth", "wl-001"))[1].body
    assert close["case_key"] == mgr.store.outbox(fingerprint("water_depth", "wl-001"))[0].body["case_key"]


def test_repeated_and_replayed_transitions_enqueue_nothing(mgr):
    mgr.handle(tr(F))
    assert mgr.handle(tr(F)).enqueued == 0
    assert mgr.handle(tr(F, at=5)).enqueued == 0
    mgr.handle(tr(R, at=10, frm=F))
    assert mgr.handle(tr(R, at=10, frm=F)).enqueued == 0
    assert mgr.handle(tr(F, at=3)).note == "stale transition ignored"
    assert [r[2] for r in rows(mgr)] == ["firing", "resolved"]


def test_escalation_updates_the_case_and_tells_the_emergency_desk(mgr):
    mgr.handle(tr(F, route="emergency", value=180.0))
    out = mgr.handle(tr(F, at=120, sev=Severity.CRITICAL, route="emergency", value=290.0, frm=F))
    assert out.event is Event.ESCALATED
    assert rows(mgr) == [(1, "cases", "firing", "open"), (2, "cases", "escalated", "update"),
                         (2, "desk", "firing", "")]
    desk = mgr.store.outbox(fingerprint("water_depth", "wl-001"), status="queued")[-1].body
    assert desk["severity"] == "critical" and desk["value"] == 290.0
    mgr.handle(tr(R, at=600, frm=F, route="emergency"))
    assert {(r[1], r[2]) for r in rows(mgr) if r[0] == 3} == {("cases", "resolved"), ("desk", "resolved")}


def test_new_episode_after_resolve_opens_a_new_case(mgr):
    mgr.handle(tr(F))
    mgr.handle(tr(R, at=60, frm=F))
    mgr.handle(tr(F, at=120))
    bodies = [o.body for o in mgr.store.outbox(fingerprint("water_depth", "wl-001"))]
    assert [b["action"] for b in bodies] == ["open", "close", "open"]
    assert bodies[0]["case_key"] == bodies[1]["case_key"] != bodies[2]["case_key"]


def test_one_case_per_device(mgr):
    for i in range(1, 5):
        mgr.handle(tr(F, f"wl-00{i}", at=i))
        mgr.handle(tr(F, f"wl-00{i}", at=i + 10))
    opened = [o for o in mgr.store.outbox(status="queued") if o.body["action"] == "open"]
    assert sorted(o.body["device_id"] for o in opened) == ["wl-001", "wl-002", "wl-003", "wl-004"]


def test_unrouted_alert_goes_to_default_receiver(mgr):
    mgr.handle(tr(F, "bin-001", rule="bin_full", route="nowhere"))
    assert rows(mgr, "bin-001", "bin_full") == [(1, "am", "firing", "")]


def test_repeat_interval_renotifies_and_ack_stops_it(mgr, clock):
    mgr.handle(tr(F))
    clock.now += 599 * S
    assert mgr.repeat_due() == 0
    clock.now += 2 * S
    assert mgr.repeat_due() == 1
    assert rows(mgr)[-1] == (2, "cases", "repeat", "update")
    a = mgr.ack(fingerprint("water_depth", "wl-001")[:8], "王工", "crew on site")
    assert a.display_state == "acknowledged" and a.acked_by == "王工"
    clock.now += 3600 * S
    assert mgr.repeat_due() == 0
    assert mgr.handle(tr(R, at=4000, frm=F)).enqueued == 1


def test_ack_needs_a_firing_alert(mgr):
    mgr.handle(tr(P, frm=OFF))
    with pytest.raises(AlertsError, match="only a firing alert"):
        mgr.ack(fingerprint("water_depth", "wl-001"), "x", "")
    with pytest.raises(AlertsError, match="no alert"):
        mgr.ack("99999", "x", "")


def test_escalation_clears_the_ack(mgr):
    mgr.handle(tr(F))
    mgr.ack(fingerprint("water_depth", "wl-001"), "王工", "")
    mgr.handle(tr(F, at=60, sev=Severity.CRITICAL, frm=F))
    assert mgr.store.get(fingerprint("water_depth", "wl-001")).acked_by is None


def test_silence_holds_back_then_releases_when_it_ends(mgr, clock):
    sid = mgr.silence(["device_id=wl-001"], T0, T0 + 3600 * S, "sensor being cleaned", "李")
    out = mgr.handle(tr(F))
    assert out.enqueued == 0 and out.suppressed_by.startswith(f"silence {sid}")
    assert mgr.handle(tr(F, "wl-002")).enqueued == 1
    clock.now += 60 * S
    assert mgr.repeat_due() == 0
    mgr.store.expire_silence(sid, clock.now)
    assert mgr.repeat_due() == 1
    assert rows(mgr) == [(1, "cases", "firing", "open")]


def test_alert_resolved_while_silenced_never_notifies(mgr):
    mgr.silence(["rule_id=~water_.*"], T0, T0 + 3600 * S, "storm drill", "李")
    mgr.handle(tr(F))
    assert mgr.handle(tr(R, at=60, frm=F)).enqueued == 0
    assert rows(mgr) == []


def test_zone_flood_emergency_inhibits_water_level_cases_inside_it(mgr, clock):
    zone = {"alert_type": "flood_zone_emergency", "flood_zone": "Z1"}
    mgr.handle(tr(F, "zone-Z1", rule="flood_zone", sev=Severity.CRITICAL, route="emergency", labels=zone))
    inside = mgr.handle(tr(F, "wl-001", labels={"flood_zone": "Z1"}))
    assert inside.enqueued == 0 and "inhibited by alert" in inside.suppressed_by
    outside = mgr.handle(tr(F, "wl-002", labels={"flood_zone": "Z2"}))
    assert outside.enqueued == 1
    unzoned = mgr.handle(tr(F, "wl-003"))
    assert unzoned.enqueued == 1
    # the zone emergency ends while wl-001 is still flooded: its own case opens now
    mgr.handle(tr(R, "zone-Z1", at=600, rule="flood_zone", sev=Severity.CRITICAL, route="emergency", frm=F,
                  labels=zone))
    clock.now += 601 * S
    mgr.repeat_due()
    assert rows(mgr, "wl-001")[0][1:] == ("cases", "firing", "open")


def test_gateway_outage_inhibits_device_silent_alerts(mgr):
    mgr.handle(tr(F, "gw-7", rule="gateway_offline", route="ops",
                  labels={"alert_type": "gateway_offline", "gateway": "gw-7"}))
    held = mgr.handle(tr(F, "wl-001", rule="silent", route="ops",
                         labels={"task": "device_offline", "gateway": "gw-7"}))
    other = mgr.handle(tr(F, "wl-002", rule="silent", route="ops",
                          labels={"task": "device_offline", "gateway": "gw-8"}))
    assert held.enqueued == 0 and other.enqueued == 1


def test_restart_neither_refires_nor_forgets(database, clock):
    db = database
    m1 = open_manager(db, clock)
    m1.handle(tr(F))
    m1.handle(tr(F, "wl-002"))
    m1.store.close()
    m2 = open_manager(db, clock)
    # the rules engine warms up and says the same again
    assert m2.handle(tr(F, at=30, frm=P)).enqueued == 0
    assert m2.handle(tr(F, "wl-002", at=30)).enqueued == 0
    assert m2.store.get(fingerprint("water_depth", "wl-001")).state == "firing"
    assert m2.handle(tr(R, at=60, frm=F)).event is Event.RESOLVED
    assert [r[3] for r in rows(m2)] == ["open", "close"]
    m2.store.close()


def test_routes_naming_missing_notifiers_are_refused(tmp_path, clock):
    with pytest.raises(AlertsError, match="no notifier"):
        AlertLifecycle(AlertStore(tmp_path / "a.sqlite"), Router(CONFIG.routes, ["ghost"]), build_notifiers(CONFIG),
                     DEVICES.get)


def test_unknown_device_still_notifies(mgr):
    assert mgr.handle(tr(F, "not-registered")).enqueued == 1
    body = mgr.store.outbox(fingerprint("water_depth", "not-registered"))[0].body
    assert body["device_id"] == "not-registered" and body["location"]["address"] == ""


def test_malformed_transition_is_refused_with_the_field_named(mgr):
    bad = AlertTransition("", "wl-001", P, "exploded", "urgent", 1.5, None, None, "case")
    with pytest.raises(AlertsError) as err:
        mgr.handle(bad)
    for field in ("rule_id", "to_state 'exploded'", "severity 'urgent'", "time_ns 1.5"):
        assert field in str(err.value)
    assert mgr.store.list_alerts() == []


def test_plain_string_states_are_understood(mgr):
    t = AlertTransition("water_depth", "wl-001", "pending", "firing", "warning", T0, 180.0, 150.0, "case")
    assert mgr.handle(t).event is Event.FIRING


def test_case_receiver_first_reached_by_an_escalation_gets_the_open(database, clock):
    cfg = AlertsConfig.model_validate({
        "receivers": {"cases": {"type": "case_platform", "url": "http://127.0.0.1:9/api"}},
        "routes": [{"route": "emergency", "severities": ["critical"], "receivers": ["cases"]}],
    })
    m = open_manager(database, clock, cfg)
    assert m.handle(tr(F, route="emergency")).enqueued == 0
    m.handle(tr(F, at=60, sev=Severity.CRITICAL, route="emergency", frm=F))
    m.handle(tr(R, at=120, route="emergency", frm=F))
    opened, closed = (o.body for o in m.store.outbox(fingerprint("water_depth", "wl-001")))
    assert (opened["action"], closed["action"]) == ("open", "close")
    assert opened["case_key"] == closed["case_key"] == f"{fingerprint('water_depth', 'wl-001')}:1"
    m.store.close()


def case_rows(m: AlertLifecycle) -> list[tuple[str, str, str]]:
    """(rule, action, case key) of every case platform row, in the order they were enqueued."""
    by_fp = {a.fingerprint: a.rule_id for a in m.store.list_alerts()}
    return [(by_fp[o.fingerprint], o.body["action"], o.body["case_key"]) for o in m.store.outbox()
            if o.receiver == "cases"]


def test_one_case_per_flooded_spot_escalates_and_closes(mgr: AlertLifecycle):
    """Rising warning, 15 cm and 27 cm of one gauge: one case opened, updated, closed once all have cleared."""
    flood = {"case_category": "road_waterlogging"}
    mgr.handle(tr(F, rule="water.rising", route="case", labels=flood))
    mgr.handle(tr(F, at=60, rule="water.depth", route="case", labels=flood))
    mgr.handle(tr(F, at=120, rule="water.depth", route="emergency", sev=Severity.CRITICAL, labels=flood))
    mgr.handle(tr(R, at=600, rule="water.rising", route="case", frm=F, labels=flood))
    assert [a for _, a, _ in case_rows(mgr)] == ["open", "update", "update", "update"]
    mgr.handle(tr(R, at=900, rule="water.depth", route="emergency", sev=Severity.CRITICAL, frm=F, labels=flood))
    rows_ = case_rows(mgr)
    assert [a for _, a, _ in rows_] == ["open", "update", "update", "update", "close"]
    assert len({k for *_, k in rows_}) == 1, rows_
    # another gauge is another spot: its own case
    mgr.handle(tr(F, "wl-002", at=30, rule="water.depth", route="case", labels=flood))
    assert case_rows(mgr)[-1][1] == "open" and case_rows(mgr)[-1][2] != rows_[0][2]
    # the spot floods again later: a new case
    mgr.handle(tr(F, at=2000, rule="water.depth", route="case", labels=flood))
    assert case_rows(mgr)[-1][1] == "open" and case_rows(mgr)[-1][2] != rows_[0][2]


def test_a_bins_80_and_100_percent_are_one_case(mgr: AlertLifecycle):
    mgr.handle(tr(F, "bin-001", rule="bin.full", labels={"case_category": "garbage_bin"}, value=85))
    mgr.handle(tr(F, "bin-001", at=60, rule="bin.overflow", labels={"case_category": "bin_overflow"}, value=100))
    mgr.handle(tr(R, "bin-001", at=120, rule="bin.overflow", frm=F, labels={"case_category": "bin_overflow"}))
    mgr.handle(tr(R, "bin-001", at=180, rule="bin.full", frm=F, labels={"case_category": "garbage_bin"}))
    assert [a for _, a, _ in case_rows(mgr)] == ["open", "update", "update", "close"]


def test_an_ack_is_an_update_to_the_open_case_naming_the_operator(mgr: AlertLifecycle):
    mgr.handle(tr(F, rule="water.depth", labels={"case_category": "road_waterlogging"}))
    a = mgr.ack(fingerprint("water.depth", "wl-001"), "desk-wang", "已派排水队")
    assert a.acked_by == "desk-wang"
    last = mgr.store.outbox(fingerprint("water.depth", "wl-001"))[-1]
    assert (last.receiver, last.event, last.body["action"]) == ("cases", "acknowledged", "update")
    assert last.body["operator"] == "desk-wang" and "已派排水队" in last.body["comment"]


def test_a_lower_rules_update_never_downgrades_the_spots_case(mgr: AlertLifecycle):
    """QA3 F14: a 27 cm case got a 【预警】 update from the late rising warning. The case's title and severity are
    the spot's highest firing level; the rule's own level stays in `rule_severity`."""
    flood = {"case_category": "road_waterlogging"}
    mgr.handle(tr(F, rule="water.depth", route="emergency", sev=Severity.CRITICAL, value=276, labels=flood))
    mgr.handle(tr(F, at=5, rule="water.rising", route="emergency", labels=flood))
    cases = [o.body for o in mgr.store.outbox(fingerprint("water.rising", "wl-001")) if o.receiver == "cases"]
    assert [b["action"] for b in cases] == ["update"]
    assert cases[0]["severity"] == "critical" and cases[0]["title"].startswith("【严重】"), cases[0]["title"]
    assert cases[0]["rule_severity"] == "warning"
    # the critical level clears while the rising warning still fires: the case says so (warning), still open
    mgr.handle(tr(R, at=600, rule="water.depth", route="emergency", sev=Severity.CRITICAL, frm=F, labels=flood))
    last = [o.body for o in mgr.store.outbox(fingerprint("water.depth", "wl-001")) if o.receiver == "cases"][-1]
    assert (last["action"], last["severity"]) == ("update", "warning") and last["title"].startswith("【预警】")


def test_firing_to_firing_with_a_higher_depth_reaches_the_alert(mgr: AlertLifecycle):
    """QA3 F10: a `firing → firing` transition at the same level (a restored alert's first reading) left the
    alert at its old depth; it now carries the newer values, and tells nobody again."""
    mgr.handle(tr(F, value=160.0))
    before = len(mgr.store.outbox())
    out = mgr.handle(tr(F, at=60, value=230.0, frm=F))
    a = mgr.store.get(fingerprint("water_depth", "wl-001"))
    assert a is not None and a.value == 230.0 and a.updated_ns == T0 + 60 * S, out
    assert len(mgr.store.outbox()) == before
    mgr.handle(tr(F, at=30, value=999.0, frm=F))  # an older one changes nothing
    assert mgr.store.get(fingerprint("water_depth", "wl-001")).value == 230.0  # type: ignore[union-attr]
