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


def open_manager(db: Path, clock: Clock, config: AlertsConfig = CONFIG) -> AlertLifecycle:
    return AlertLifecycle(AlertStore(db), Router(config.routes, config.default_receivers), build_notifiers(config),
                        DEVICES.get, repeat_interval_s=config.repeat_interval_s,
                        inhibit_rules=config.inhibit_rules, clock=clock)


@pytest.fixture
def mgr(tmp_path: Path, clock: Clock) -> AlertLifecycle:
    m = open_manager(tmp_path / "alerts.sqlite", clock)
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


def test_restart_neither_refires_nor_forgets(tmp_path, clock):
    db = tmp_path / "alerts.sqlite"
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


def test_case_receiver_first_reached_by_an_escalation_gets_the_open(tmp_path, clock):
    cfg = AlertsConfig.model_validate({
        "receivers": {"cases": {"type": "case_platform", "url": "http://127.0.0.1:9/api"}},
        "routes": [{"route": "emergency", "severities": ["critical"], "receivers": ["cases"]}],
    })
    m = open_manager(tmp_path / "a.sqlite", clock, cfg)
    assert m.handle(tr(F, route="emergency")).enqueued == 0
    m.handle(tr(F, at=60, sev=Severity.CRITICAL, route="emergency", frm=F))
    m.handle(tr(R, at=120, route="emergency", frm=F))
    opened, closed = (o.body for o in m.store.outbox(fingerprint("water_depth", "wl-001")))
    assert (opened["action"], closed["action"]) == ("open", "close")
    assert opened["case_key"] == closed["case_key"] == f"{fingerprint('water_depth', 'wl-001')}:1"
    m.store.close()
