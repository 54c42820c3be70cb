"""Delivery through the outbox to real receivers on 127.0.0.1: exactly once through outages and restarts,
one case per device closed on resolve, the documented robot and Alertmanager bodies, MQTT QoS 1."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import orjson
import paho.mqtt.client as mqtt
import pytest
from loguru import logger
from prometheus_client import CollectorRegistry, generate_latest

from alerts.config import AlertsConfig
from alerts.metrics import AlertsCollector
from alerts.model import fingerprint
from alerts.runtime import AlertsRuntime
from alerts.testing import RecordingServer
from core.device import Device
from core.transition import AlertState, AlertTransition, Severity
from sim.daemons import free_port

pytestmark = pytest.mark.timeout(90)

P, F, R = AlertState.PENDING, AlertState.FIRING, AlertState.RESOLVED
FAST_OUTBOX = {"base_delay_s": 0.1, "max_delay_s": 0.4, "jitter": 0.2, "poll_interval_s": 0.05,
               "stop_timeout_s": 5.0}
DEVICES = {
    f"wl-00{i}": Device(id=f"wl-00{i}", key=f"a8404100018{i:05d}", model="dragino-ldds75", kind="water_level",
                        latitude=39.911954 + i / 1000, longitude=116.377817, address=f"建国门桥下穿通道 {i} 号",
                        district="朝阳区", street="建外街道")
    for i in range(1, 6)
}


@pytest.fixture
def servers():
    started: list[RecordingServer] = []

    def make(**kw: Any) -> RecordingServer:
        s = RecordingServer(**kw).start()
        started.append(s)
        return s
    yield make
    for s in started:
        s.stop()


def config(receivers: dict[str, dict[str, Any]], routes: list[dict[str, Any]], **kw: Any) -> AlertsConfig:
    return AlertsConfig.model_validate({"receivers": receivers, "routes": routes, "outbox": FAST_OUTBOX,
                                        "evaluation_interval_s": 0.1, **kw})


def tr(to: AlertState, device: str, *, sev: Severity = Severity.CRITICAL, route: str = "emergency",
       value: float = 290.0, eta_s: float | None = None, frm: AlertState = P) -> AlertTransition:
    return AlertTransition("water_closure", device, frm, to, sev, time.time_ns(), value, 270.0, route,
                           summary="积水超过封路水深", eta_s=eta_s, labels=(("kind", "water_level"),))


async def run_until(alerts: AlertsRuntime, done: Callable[[], bool], *, timeout: float = 30.0,
                    actions: Callable[[], Any] | None = None) -> None:
    """Run the alerts runtime, optionally do `actions` (a coroutine function) meanwhile, until `done()`."""
    task = asyncio.create_task(alerts.run())
    try:
        if actions is not None:
            await actions()
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"not done after {timeout} s: {alerts.store.outbox_counts()}"
            await asyncio.sleep(0.05)
    finally:
        await alerts.stop()
        await task


def drained(alerts: AlertsRuntime) -> Callable[[], bool]:
    return lambda: alerts.store.outbox_counts()["queued"] == 0


def keys(server: RecordingServer) -> list[str]:
    return [r.headers["idempotency-key"] for r in server.accepted]


def expected_keys(alerts: AlertsRuntime, receiver: str) -> set[str]:
    return {f"{o.fingerprint}:{o.seq}" for o in alerts.store.outbox() if o.receiver == receiver}


def test_receivers_failing_for_a_while_get_every_message_exactly_once_and_in_order(database, servers):
    cases, desk = servers(), servers()
    cfg = config({"cases": {"type": "case_platform", "url": cases.url + "/api",
                            "district_codes": {"朝阳区": "110105"}},
                  "desk": {"type": "webhook", "url": desk.url + "/hook"}},
                 [{"route": "emergency", "receivers": ["desk", "cases"]}])
    alerts = AlertsRuntime(cfg, DEVICES.get, db_path=database)
    cases.fail_for(3.0, 500)
    desk.fail_for(3.0, 503)

    async def storm() -> None:
        for i in range(1, 5):
            alerts.handle(tr(F, f"wl-00{i}"))
        await asyncio.sleep(0.5)
        for i in (1, 2):
            alerts.handle(tr(R, f"wl-00{i}", frm=F))

    asyncio.run(run_until(alerts, drained(alerts), actions=storm))
    try:
        for server, name in ((cases, "cases"), (desk, "desk")):
            assert len(server.requests) > len(server.accepted), "the receiver never failed"
            assert Counter(keys(server)).most_common(1)[0][1] == 1, "a message was accepted twice"
            assert set(keys(server)) == expected_keys(alerts, name)
        assert alerts.store.outbox_counts() == {"queued": 0, "delivered": 12, "failed": 0}
        opens = [r for r in cases.accepted if r.json["action"] == "open"]
        assert sorted(r.json["device_id"] for r in opens) == ["wl-001", "wl-002", "wl-003", "wl-004"]
        assert all(r.path == "/api/cases" for r in opens)
        case_of = {r.json["device_id"]: (r.json, r.reply["case_id"], r.time) for r in opens}
        closes = [r for r in cases.accepted if r.json["action"] == "close"]
        assert sorted(r.json["device_id"] for r in closes) == ["wl-001", "wl-002"]
        for c in closes:
            opened, case_id, opened_at = case_of[c.json["device_id"]]
            assert c.path == f"/api/cases/{case_id}/close" and c.json["case_id"] == case_id
            assert c.json["case_key"] == opened["case_key"] and c.time > opened_at
        first = case_of["wl-003"][0]
        assert first["category"]["name"] == "道路积水" and first["location"]["district_code"] == "110105"
        assert first["location"]["gcj02"]["lon"] > first["location"]["wgs84"]["lon"]
        a = alerts.store.get(fingerprint("water_closure", "wl-001"))
        assert a.state == "resolved" and a.case_id == case_of["wl-001"][1]
    finally:
        alerts.close()


def test_restart_in_the_middle_neither_duplicates_nor_loses(database, servers):
    cases = servers()
    db = database
    cfg = config({"cases": {"type": "case_platform", "url": cases.url}},
                 [{"route": "emergency", "receivers": ["cases"]}])
    cases.fail_for(60.0, 500)
    first = AlertsRuntime(cfg, DEVICES.get, db_path=db)
    firing = [tr(F, f"wl-00{i}") for i in (1, 2, 3)]

    async def fire() -> None:
        for t in firing:
            first.handle(t)

    asyncio.run(run_until(first, lambda: len(cases.requests) >= 6, actions=fire))
    first.close()
    assert cases.accepted == []

    cases.fail_for(1.0, 500)
    second = AlertsRuntime(cfg, DEVICES.get, db_path=db)

    async def replay_and_resolve() -> None:
        assert [second.handle(t).enqueued for t in firing] == [0, 0, 0]
        second.handle(tr(R, "wl-001", frm=F))

    asyncio.run(run_until(second, drained(second), actions=replay_and_resolve))
    try:
        assert Counter(keys(cases)).most_common(1)[0][1] == 1
        assert sorted((r.json["device_id"], r.json["action"]) for r in cases.accepted) == [
            ("wl-001", "close"), ("wl-001", "open"), ("wl-002", "open"), ("wl-003", "open")]
    finally:
        second.close()


def test_stop_during_a_slow_delivery_lets_it_finish_and_never_resends(database, servers):
    hook = servers(delay_s=0.6)
    db = database
    cfg = config({"desk": {"type": "webhook", "url": hook.url}}, [{"route": "emergency", "receivers": ["desk"]}])
    first = AlertsRuntime(cfg, DEVICES.get, db_path=db)

    async def fire_then_stop_soon() -> None:
        first.handle(tr(F, "wl-001"))
        await asyncio.sleep(0.2)

    asyncio.run(run_until(first, lambda: True, actions=fire_then_stop_soon))
    first.close()
    second = AlertsRuntime(cfg, DEVICES.get, db_path=db)
    asyncio.run(run_until(second, drained(second)))
    try:
        assert len(hook.requests) == 1 and len(hook.accepted) == 1
    finally:
        second.close()


def test_a_reply_carrying_a_nul_character_is_recorded_and_nothing_is_sent_twice(database, servers):
    """A case id or an error text in a receiver's reply may carry U+0000, which PostgreSQL text cannot
    hold: it is stored shown as `\\x00` (on both engines), so the delivery is still recorded, retried by
    its backoff and never sent again."""
    cases, robot = servers(), servers()
    cfg = config({"cases": {"type": "case_platform", "url": cases.url},
                  "robot": {"type": "wecom", "url": robot.url + "/cgi-bin/webhook/send", "key": "k"}},
                 [{"route": "emergency", "receivers": ["cases", "robot"]}], outbox={**FAST_OUTBOX, "claim_s": 2.0})
    alerts = AlertsRuntime(cfg, DEVICES.get, db_path=database)
    cases.reply_next(1, {"errcode": 0, "errmsg": "ok", "case_id": "C\x00-1"})
    robot.reply_next(1, {"errcode": -1, "errmsg": "busy\x00"})  # -1: WeCom's "busy, try again"
    async def fire_then_resolve() -> None:
        alerts.handle(tr(F, "wl-001"))
        deadline = time.monotonic() + 20
        while not (len(cases.accepted) == 1 and len(robot.accepted) == 1):
            assert time.monotonic() < deadline, alerts.store.outbox_counts()
            await asyncio.sleep(0.05)
        await asyncio.sleep(3.0)  # longer than a claim: an unrecorded delivery would be taken and sent again
        alerts.handle(tr(R, "wl-001", frm=F))

    asyncio.run(run_until(alerts, drained(alerts), actions=fire_then_resolve))
    try:
        assert [r.json["action"] for r in cases.requests] == ["open", "close"]
        assert len(robot.accepted) == 2 and len(robot.requests) == 3  # firing (refused, then taken), resolved
        rows = {(o.receiver, o.event): o for o in alerts.store.outbox()}
        assert rows["robot", "firing"].attempts == 2 and rows["robot", "firing"].delivered_ns
        assert alerts.store.outbox_counts()["failed"] == 0
        (case,) = [c for c in alerts.store.cases(fingerprint("water_closure", "wl-001")) if c["receiver"] == "cases"]
        assert case["case_id"] == "C\\x00-1" and case["closed_ns"]
        assert quote("C\\x00-1", safe="") in cases.requests[1].path  # the close names the case it was given
    finally:
        alerts.close()


def test_receiver_that_is_not_listening_gets_it_when_it_comes_up(tmp_path, servers):
    port = free_port()
    cfg = config({"desk": {"type": "webhook", "url": f"http://127.0.0.1:{port}/hook"}},
                 [{"route": "emergency", "receivers": ["desk"]}])
    alerts = AlertsRuntime(cfg, DEVICES.get, db_path=tmp_path / "alerts.sqlite")
    late: list[RecordingServer] = []

    async def fire_then_come_up() -> None:
        alerts.handle(tr(F, "wl-001"))
        await asyncio.sleep(0.8)
        assert alerts.store.outbox()[0].attempts >= 2
        assert "ConnectError" in (alerts.store.outbox()[0].last_error or "")
        late.append(servers(port=port))

    asyncio.run(run_until(alerts, drained(alerts), actions=fire_then_come_up))
    try:
        assert [r.json["device_id"] for r in late[0].accepted] == ["wl-001"]
    finally:
        alerts.close()


def test_permanent_refusal_is_kept_counted_and_does_not_block_the_close(tmp_path, servers):
    cases = servers()
    cfg = config({"cases": {"type": "case_platform", "url": cases.url}},
                 [{"route": "emergency", "receivers": ["cases"]}])
    alerts = AlertsRuntime(cfg, DEVICES.get, db_path=tmp_path / "alerts.sqlite")
    cases.fail_next(1, 422)

    async def fire_and_resolve() -> None:
        alerts.handle(tr(F, "wl-001"))
        await asyncio.sleep(0.3)
        alerts.handle(tr(R, "wl-001", frm=F))

    asyncio.run(run_until(alerts, drained(alerts), actions=fire_and_resolve))
    try:
        (failed,) = alerts.store.outbox(status="failed")
        assert failed.event == "firing" and "HTTP 422" in failed.last_error and failed.attempts == 1
        assert alerts.worker.stats.failed_permanently == 1
        assert [r.json["action"] for r in cases.accepted] == ["close"]
    finally:
        alerts.close()


def test_chat_robots_get_their_documented_markdown_messages(tmp_path, servers):
    wecom, ding = servers(), servers()
    cfg = config({"wecom": {"type": "wecom", "url": wecom.url + "/cgi-bin/webhook/send", "key": "robot-key-1"},
                  "ding": {"type": "dingtalk", "url": ding.url + "/robot/send", "access_token": "tok",
                           "secret": "SECsecret", "at_mobiles": ["13800000000"]}},
                 [{"route": "emergency", "receivers": ["wecom", "ding"]}])
    alerts = AlertsRuntime(cfg, DEVICES.get, db_path=tmp_path / "alerts.sqlite")
    wecom.reply_next(1, {"errcode": 45009, "errmsg": "api freq out of limit"})
    ding.reply_next(1, {"errcode": 130101, "errmsg": "send too fast"})

    async def fire() -> None:
        alerts.handle(tr(F, "wl-001", value=240.0, eta_s=600.0))

    asyncio.run(run_until(alerts, drained(alerts), actions=fire))
    try:
        (w,) = wecom.accepted
        assert len(wecom.requests) == 2, "a rate-limited robot message is retried"
        assert w.path == "/cgi-bin/webhook/send" and w.query == {"key": "robot-key-1"}
        assert w.json["msgtype"] == "markdown" and set(w.json) == {"msgtype", "markdown"}
        content = w.json["markdown"]["content"]
        assert len(content.encode()) <= 4096
        for text in ("建国门桥下穿通道 1 号", "水深", "240 mm", "上涨", "约 10 分钟后达到阈值", "wl-001"):
            assert text in content, text

        (d,) = ding.accepted
        assert len(ding.requests) == 2
        assert d.path == "/robot/send" and d.query["access_token"] == "tok"
        ts = int(d.query["timestamp"])
        assert abs(ts - time.time() * 1000) < 3_600_000
        mac = hmac.new(b"SECsecret", f"{ts}\nSECsecret".encode(), hashlib.sha256).digest()
        assert d.query["sign"] == base64.b64encode(mac).decode()
        assert d.json["msgtype"] == "markdown" and d.json["markdown"]["title"]
        assert "水深" in d.json["markdown"]["text"] and "@13800000000" in d.json["markdown"]["text"]
        assert d.json["at"] == {"atMobiles": ["13800000000"], "isAtAll": False}
    finally:
        alerts.close()


def test_alertmanager_webhook_gets_version_4_firing_then_resolved(tmp_path, servers):
    am = servers()
    cfg = config({"am": {"type": "alertmanager", "url": am.url + "/alerts", "external_url": "http://grafana"}},
                 [], default_receivers=["am"])
    alerts = AlertsRuntime(cfg, DEVICES.get, db_path=tmp_path / "alerts.sqlite")

    async def fire_and_resolve() -> None:
        alerts.handle(tr(F, "wl-002", route="other"))
        await asyncio.sleep(0.2)
        alerts.handle(tr(R, "wl-002", route="other", frm=F))

    asyncio.run(run_until(alerts, lambda: len(am.accepted) == 2, actions=fire_and_resolve))
    try:
        fired, resolved = (r.json for r in am.accepted)
        assert fired["version"] == "4" and fired["status"] == "firing" and resolved["status"] == "resolved"
        assert fired["receiver"] == "am" and fired["groupKey"] == resolved["groupKey"]
        assert fired["alerts"][0]["fingerprint"] == fingerprint("water_closure", "wl-002")
        assert fired["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
        assert resolved["alerts"][0]["endsAt"] > resolved["alerts"][0]["startsAt"]
    finally:
        alerts.close()


def test_emergency_mqtt_topic_gets_the_alert_with_qos_1(tmp_path, mosquitto):
    got: list[mqtt.MQTTMessage] = []
    subscribed = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-sub")
    sub.on_connect = lambda c, *a: c.subscribe("city/emergency/#", qos=1)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda c, u, m: got.append(m)
    sub.connect("127.0.0.1", mosquitto.port)
    sub.loop_start()
    assert subscribed.wait(10)
    cfg = config({"mq": {"type": "mqtt", "host": "127.0.0.1", "port": mosquitto.port,
                         "topic": "city/emergency/{route}/{device_id}"}},
                 [{"route": "emergency", "receivers": ["mq"]}])
    alerts = AlertsRuntime(cfg, DEVICES.get, db_path=tmp_path / "alerts.sqlite")

    async def fire() -> None:
        alerts.handle(tr(F, "wl-003", eta_s=300.0))

    try:
        asyncio.run(run_until(alerts, drained(alerts), actions=fire))
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        (m,) = got
        assert m.topic == "city/emergency/emergency/wl-003" and m.qos == 1
        body = orjson.loads(m.payload)
        assert body["device_id"] == "wl-003" and body["event"] == "firing" and body["eta_s"] == 300.0
        assert body["location"]["address"] == "建国门桥下穿通道 3 号"
        assert alerts.store.outbox_counts() == {"queued": 0, "delivered": 1, "failed": 0}
    finally:
        sub.loop_stop()
        sub.disconnect()
        alerts.close()


def test_state_changes_deliveries_and_give_ups_are_logged_and_counted(servers, tmp_path):
    """One INFO line per state change and per delivery, an ERROR line per give-up; the metrics count
    alerts by rule/severity/state, notifications by receiver, and the outbox backlog with its age."""
    ok, refusing = servers(), servers()
    refusing.fail_for(3600, 400)
    receivers = {"desk": {"type": "webhook", "url": ok.url}, "bad": {"type": "webhook", "url": refusing.url}}
    alerts = AlertsRuntime(config(receivers, [{"route": "emergency", "receivers": ["desk", "bad"]}]), DEVICES.get,
                    db_path=tmp_path / "a.sqlite")
    registry = CollectorRegistry()
    registry.register(AlertsCollector(alerts.store, lambda: alerts.worker.stats))
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(f"{m.record['level'].name} {m.record['message']}"), level="INFO")
    try:
        alerts.handle(tr(F, "wl-001"))
        text = generate_latest(registry).decode()
        assert 'urbansense_alerts{rule_id="water_closure",severity="critical",state="firing"} 1.0' in text
        assert "urbansense_outbox_depth 2.0" in text
        asyncio.run(run_until(alerts, lambda: alerts.store.outbox_counts()["queued"] == 0))
    finally:
        logger.remove(sink)
    assert any(x.startswith("INFO alert ") and "water_closure on wl-001: inactive → firing" in x for x in lines)
    assert any(x.startswith("INFO notification ") and "delivered to desk" in x for x in lines)
    assert any(x.startswith("ERROR notification ") and "to bad given up" in x for x in lines)
    text = generate_latest(registry).decode()
    assert 'urbansense_notifications_sent_total{receiver="desk"} 1.0' in text
    assert 'urbansense_notifications_failed_total{outcome="given_up",receiver="bad"} 1.0' in text
    assert "urbansense_outbox_depth 0.0" in text and "urbansense_outbox_oldest_age_seconds 0.0" in text
    alerts.close()
