"""Issue 15 item 5: what keeps a flood alert fast under load, as behaviour (the speed is in BENCHMARKS.md).

The pipeline lets the rest of the event loop run between the chunks of a backlog and does not wait
for InfluxDB's pace before the rules see a reading (acknowledgements still wait); alert commits
(whose fsync is the slow part) run in the alerts' one commit thread, in the order asked, so the
loop runs on while another process holds the alert store's write lock; the desk console pushes a
flood alert at once and routine changes at most every `ROUTINE_EVERY_S`; an outbox claim (a lease)
does not wait for the disk before the send; `urbansense run` lets
threads take turns within 1 ms and keeps its start-up heap out of full garbage collections.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import sqlite3
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import paho.mqtt.client as paho
import pytest
from sqlalchemy import event

from alerts.config import AlertsConfig
from alerts.model import AlertRecord, fingerprint
from alerts.runtime import AlertsRuntime
from alerts.store import AlertStore, Enqueue
from alerts.testing import RecordingServer
from collectors.lorawan.chirpstack import build_chirpstack_event
from collectors.mqtt import TCP_QUICKACK, MqttConsumer, MqttDelivery, _ConsumerClient
from core.device import Device
from core.rejected import Rejected
from core.transition import AlertState, AlertTransition, Severity
from core.uplink import Incoming
from provisioning.registry import Registry
from provisioning.view import RegistryView
from service.app import freeze_startup_heap, tune_process
from service.collectors import envelope_parsers
from service.config import parse_config
from service.desk import server
from service.desk.auth import hash_password
from service.desk.server import DeskServer
from service.inbox import Inbox
from service.metrics import Metrics
from service.pipeline import Pipeline
from sim.daemons import Daemon, mosquitto_config, start_influxd
from sim.simulator import FleetSimulator, Publisher, Scenario
from storage.deadletter import DeadLetterStore
from storage.influx import InfluxClient
from storage.writer import BatchWriter

S = 10**9
T0 = 1_784_600_000 * S
CONFIG = AlertsConfig.model_validate({
    "receivers": {"desk": {"type": "webhook", "url": "http://127.0.0.1:9/desk"}},
    "default_receivers": ["desk"],
})


@pytest.mark.asyncio
async def test_other_tasks_run_between_the_chunks_of_a_backlog(tmp_path: Path) -> None:
    with Registry(tmp_path / "registry.sqlite"):
        pass
    writer = BatchWriter(InfluxClient("http://127.0.0.1:9", "never-written"))
    deadletters = DeadLetterStore(tmp_path / "deadletter.sqlite")
    pipeline = Pipeline(view=RegistryView(tmp_path / "registry.sqlite"), writer=writer, deadletters=deadletters,
                        metrics=Metrics(), parsers={}, chunk_size=100)
    inbox: Inbox[Incoming] = Inbox(10_000, asyncio.get_running_loop())
    acked: list[int] = []
    for i in range(1_000):  # a backlog of ten chunks (skipped frames: acknowledged, nothing to write)
        inbox.put(Incoming("lorawan", "t", b"", T0, rejected=Rejected("mac_only", f"frame {i}"),
                           ack=lambda i=i: acked.append(i)))
    seen: list[int] = []
    stop, done = asyncio.Event(), asyncio.Event()

    async def another_task() -> None:  # alert delivery, the desk console, the writer's batches
        while not done.is_set():
            seen.append(pipeline.stats.received)
            await asyncio.sleep(0)

    other = asyncio.create_task(another_task())
    stop.set()  # the pipeline stops once the inbox is empty
    await pipeline.run(inbox, stop)
    done.set()
    await other
    await writer.close(5)
    deadletters.close()
    assert acked == list(range(1_000))
    between = sorted({n for n in seen if 0 < n < 1_000})
    assert between == list(range(100, 1_000, 100)), seen  # a turn after every chunk, not after the backlog


def firing(device: str, at_s: int, to: AlertState = AlertState.FIRING) -> AlertTransition:
    return AlertTransition("water.depth", device, AlertState.PENDING, to, Severity.CRITICAL, T0 + at_s * S,
                           320.0, 270.0, "emergency")


@pytest.mark.asyncio
async def test_commits_wait_for_a_locked_store_in_their_thread_while_the_loop_runs_on_in_order(
        tmp_path: Path) -> None:
    db = tmp_path / "alerts.sqlite"
    alerts = AlertsRuntime(CONFIG, lambda _id: None, db_path=db, clock=lambda: T0)
    other = sqlite3.connect(db, isolation_level=None)  # another process (the CLI) holding the write lock
    other.execute("BEGIN IMMEDIATE")
    try:
        fired = alerts.handle_many_soon([firing("WL-1", 0)])
        resolved = alerts.handle_many_soon([firing("WL-1", 60, AlertState.RESOLVED)])
        ticks = 0
        for _ in range(20):
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 20 and not fired.done() and not resolved.done()  # the loop ran; nothing committed
    finally:
        other.execute("COMMIT")
        other.close()
    first, second = await fired, await resolved
    alerts.close()
    assert [o.enqueued for o in first + second] == [1, 1]  # type: ignore[union-attr]
    store = AlertsRuntime(CONFIG, lambda _id: None, db_path=db).store
    fp = fingerprint("water.depth", "WL-1")
    assert store.get(fp).state == AlertState.RESOLVED  # type: ignore[union-attr]
    assert [(h.to_state, h.event) for h in store.history(fp)] == [("firing", "firing"), ("resolved", "resolved")]
    assert [o.event for o in store.outbox(fp)] == ["firing", "resolved"]


def test_urbansense_run_lets_threads_cross_within_1_ms_and_freezes_its_start_up_heap() -> None:
    interval = sys.getswitchinterval()
    try:
        tune_process()
        assert sys.getswitchinterval() == pytest.approx(0.001)
        made_at_start_up = [object() for _ in range(1_000)]
        freeze_startup_heap()
        assert gc.get_freeze_count() >= len(made_at_start_up)  # no longer walked by full collections
    finally:
        gc.unfreeze()
        sys.setswitchinterval(interval)


@pytest.mark.asyncio
async def test_the_console_pushes_a_flood_alert_at_once_and_coalesces_routine_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "ROUTINE_EVERY_S", 60.0)  # a window no slow machine can mistake (3 s was, at load 19)
    noise = Device("N-1", "a84041000000aa01", "elsys-ers-sound", "noise", 39.9, 116.3, "工地", "朝阳", "建外街道")
    gauge = Device("W-1", "24e1250000000001", "milesight-em500-udl", "water_level", 39.8, 116.3, "下穿通道",
                   "朝阳", "建外街道")
    devices = {d.id: d for d in (noise, gauge)}
    alerts = AlertsRuntime(CONFIG, devices.get, db_path=tmp_path / "alerts.sqlite", clock=lambda: T0)
    cfg = parse_config({"desk": {"enabled": True, "port": 0, "users": {"wang": hash_password("pw-123456")}}},
                       environ={}).desk
    desk = DeskServer(cfg, alerts, lambda: devices)
    await desk.start()
    events: list[list[str]] = []
    got = asyncio.Event()

    async def read(client: httpx.AsyncClient) -> None:
        async with client.stream("GET", "/events") as r:
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    events.append(sorted(a["device_id"] for a in orjson.loads(line[6:])["alerts"]))
                    got.set()

    async def next_event() -> list[str]:
        await asyncio.wait_for(got.wait(), 10)
        got.clear()
        return events[-1]

    def store(t: AlertTransition) -> None:
        alerts.handle_many([t])
        desk.transitions_stored([t])

    async with httpx.AsyncClient(base_url=desk.url) as client:
        assert (await client.post("/login", data={"user": "wang", "password": "pw-123456"})).status_code == 303
        reader = asyncio.create_task(read(client))
        try:
            assert await next_event() == []  # the snapshot at connect
            for n in range(5):  # routine changes (a noise warning and its updates): one push for all
                store(AlertTransition("noise.night", "N-1", AlertState.PENDING, AlertState.FIRING, Severity.WARNING,
                                      T0 + n * S, 60.0 + n, 55.0, "case"))
            assert await next_event() == ["N-1"]
            store(AlertTransition("noise.night", "N-1", AlertState.FIRING, AlertState.RESOLVED, Severity.WARNING,
                                  T0 + 10 * S, 50.0, 55.0, "case"))  # routine, within the window: waits
            await asyncio.sleep(0.5)
            assert len(events) == 2
            store(firing("W-1", 11))  # a flood gauge's critical alert: pushed at once, with what waited
            assert await next_event() == ["W-1"]
            assert desk._routine is None  # nothing left waiting: the routine change went out with the flood alert
            await asyncio.sleep(0.5)
            assert len(events) == 3
        finally:
            reader.cancel()
            await desk.stop()
            alerts.close()


def test_an_outbox_claim_commits_without_waiting_for_the_disk_and_later_commits_still_do(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite")
    statements: list[str] = []
    store.engine.dispose()  # connections made from here on trace what they run
    event.listen(store.engine, "connect", lambda dbapi, _record: dbapi.set_trace_callback(statements.append))
    a = AlertRecord(fingerprint="f1", rule_id="water.depth", device_id="W-1", state=AlertState.FIRING,
                    severity=Severity.CRITICAL, route="emergency", started_ns=T0, updated_ns=T0, seq=1, episode=1,
                    notified=True, receivers=["desk"])
    store.save(a, enqueue=[Enqueue("desk", "firing", {"rule_id": "water.depth"})], now_ns=T0)
    saved = statements[:]
    del statements[:]
    [claimed] = store.claim_due(T0, 5)
    claim = statements[:]
    del statements[:]
    store.mark_delivered(claimed, T0 + S)
    marked = statements[:]
    store.close()

    def commits_relaxed(trace: list[str]) -> bool:
        setting = "FULL"
        for sql in trace:
            if sql.startswith("PRAGMA synchronous="):
                setting = sql.split("=", 1)[1]
            if sql == "COMMIT":
                return setting == "NORMAL"
        raise AssertionError(f"no COMMIT in {trace}")

    assert not commits_relaxed(saved) and not commits_relaxed(marked)  # the transition, the delivery: on disk
    assert commits_relaxed(claim)  # the claim (a lease a restart takes over) does not wait for the disk
    assert claim[-1] == "PRAGMA synchronous=FULL"  # and its connection goes back to the pool durable


@pytest.mark.asyncio
async def test_readings_reach_the_rules_while_influxdb_is_stalled_and_are_acknowledged_in_order_after(
        tmp_path: Path) -> None:
    influxd = start_influxd(tmp_path / "influx")  # its own: it is paused
    try:
        httpx.post(f"{influxd.url}/query", params={"q": "CREATE DATABASE stall"}).raise_for_status()
        gauge = Device("W-1", "24e1250000000001", "milesight-em500-udl", "water_level",
                       install={"mount_height_mm": 2000.0})
        with Registry(tmp_path / "registry.sqlite") as reg:
            reg.add(gauge, by="test")
        writer = BatchWriter(InfluxClient(influxd.url, "stall", timeout=60.0), batch_size=1,
                             max_batches_in_flight=1, flush_interval_s=0.01)
        deadletters = DeadLetterStore(tmp_path / "deadletter.sqlite")
        pipeline = Pipeline(view=RegistryView(tmp_path / "registry.sqlite"), writer=writer, deadletters=deadletters,
                            metrics=Metrics(), parsers=envelope_parsers())
        seen: list[int] = []
        pipeline.on_reading.append(lambda r: seen.append(int(r.health["fcnt"])) or b"")  # the rules' hook
        inbox: Inbox[Incoming] = Inbox(100, asyncio.get_running_loop())
        acked: list[int] = []
        stop = asyncio.Event()
        run = asyncio.create_task(pipeline.run(inbox, stop))

        def uplink(fcnt: int) -> Incoming:
            sim = FleetSimulator([gauge], Scenario("calm"))
            fields = sim.fields_for(gauge, 0.0)
            fields["distance_mm"] = 2000.0 - 10 * fcnt
            payload, port = sim.model(gauge).codec.encode(fields)
            topic, body = build_chirpstack_event(gauge.key, payload, port, fcnt, T0 + fcnt * S,
                                                 [("a840410000000001", -90.0, 6.5)], f"dedup-{fcnt}")
            return Incoming("lorawan", topic, body, T0 + fcnt * S, ack=lambda: acked.append(fcnt))

        os.kill(influxd.process.pid, signal.SIGSTOP)  # InfluxDB stops answering: writes hang
        try:
            for fcnt in range(1, 6):
                inbox.put(uplink(fcnt))
                await asyncio.sleep(0.1)
            for _ in range(100):
                if len(seen) == 5:
                    break
                await asyncio.sleep(0.1)
            assert seen == [1, 2, 3, 4, 5]  # every reading was evaluated although none could be written
            assert acked == []  # and none is acknowledged before it is stored
        finally:
            os.kill(influxd.process.pid, signal.SIGCONT)
        for _ in range(200):
            if len(acked) == 5:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await run
        await writer.close(30)
        deadletters.close()
        assert acked == [1, 2, 3, 4, 5]  # in arrival order, once written
    finally:
        influxd.stop()


# --- the MQTT hop: broker → the consumer's network thread -----------------------------------------------


class _Received:
    """`on_message` of a consumer under test: keeps the deliveries, and runs `probe` on each (network thread)."""

    def __init__(self, probe: Callable[[MqttDelivery], object] | None = None) -> None:
        self.messages: list[MqttDelivery] = []
        self.probed: list[object] = []
        self.probe = probe
        self.cond = threading.Condition()

    def __call__(self, msg: MqttDelivery) -> None:
        seen = self.probe(msg) if self.probe is not None else None
        with self.cond:
            self.messages.append(msg)
            self.probed.append(seen)
            self.cond.notify_all()

    def wait_for(self, n: int, timeout: float = 30.0) -> list[MqttDelivery]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.messages) >= n, timeout), f"{len(self.messages)} of {n}"
            return list(self.messages)


def _consumer(broker: Daemon, client_id: str, received: _Received, receive_maximum: int = 10_000) -> MqttConsumer:
    c = MqttConsumer(host="127.0.0.1", port=broker.port, client_id=client_id, topics=["bench/#"],
                     on_message=received, receive_maximum=receive_maximum)
    c.start()
    assert c.wait_connected(10)
    return c


def _publish(broker: Daemon, n: int, topic: str) -> None:
    pub = Publisher("127.0.0.1", broker.port)
    for i in range(n):
        pub.publish(topic, b"x" * 200 + b"%d" % i)
    pub.close()


def test_the_consumer_acknowledges_the_brokers_data_at_tcp_level_at_once(mosquitto: Daemon) -> None:
    """A connection in delayed-ACK mode acknowledges the broker's bytes only when its timer fires (40 ms on
    Linux) or with our next PUBACK; a broker with Nagle's algorithm on (Mosquitto's default) holds the next
    small PUBLISH until then. The consumer's connection must not be in that mode when a message is handed on,
    also after it has answered earlier messages with PUBACKs (which is what puts a Linux socket in it)."""
    if TCP_QUICKACK is None:
        pytest.skip("TCP_QUICKACK is Linux's")
    holder: dict[str, MqttConsumer] = {}

    def quick_ack_mode(msg: MqttDelivery) -> int:
        state = holder["c"]._client.socket().getsockopt(socket.IPPROTO_TCP, TCP_QUICKACK)  # type: ignore[union-attr]
        holder["c"].ack(msg)  # answered at once, as a PUBACK in reply: what turns delayed ACKs on
        return int(state)

    received = _Received(quick_ack_mode)
    holder["c"] = consumer = _consumer(mosquitto, "quickack", received)
    pub = Publisher("127.0.0.1", mosquitto.port)
    try:
        for i in range(12):  # one at a time: each waits for the PUBACK of the one before
            pub.publish("bench/x", b"%d" % i)
            received.wait_for(i + 1)
            pub.flush(10)
    finally:
        pub.close()
        consumer.stop()
    assert received.probed == [1] * 12


def test_a_backlog_is_read_many_packets_per_socket_read_and_its_acks_leave_in_few_writes(
        mosquitto: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    """paho reads a packet in three or more `recv` calls and sends each PUBACK with a `send` and a wake-up of
    the network thread of its own; each such call lets go of the GIL and waits to take it back while the event
    loop computes. A backlog must cost far fewer socket reads than packets, a chunk's acks (from another
    thread, as the pipeline gives them) one wake-up and a few writes, and the broker must take them all."""
    reads = {"n": 0}
    sends = {"n": 0}
    recv, send = paho.Client._sock_recv, paho.Client._sock_send

    def counted_recv(self: paho.Client, bufsize: int) -> bytes:
        reads["n"] += isinstance(self, _ConsumerClient)  # not the publishers'
        return recv(self, bufsize)

    def counted_send(self: paho.Client, buf: bytes | bytearray) -> int:
        sends["n"] += isinstance(self, _ConsumerClient)
        return send(self, buf)

    monkeypatch.setattr(paho.Client, "_sock_recv", counted_recv)
    monkeypatch.setattr(paho.Client, "_sock_send", counted_send)
    n = 2_000
    _consumer(mosquitto, "backlog", _Received()).stop()  # the session exists: what follows waits for it
    _publish(mosquitto, n, "bench/backlog")
    received = _Received()
    reads["n"] = 0
    # a window of n: the broker sends more only for the PUBACKs it has taken
    consumer = _consumer(mosquitto, "backlog", received, receive_maximum=n)
    try:
        messages = received.wait_for(n)
        assert reads["n"] < n // 10, f"{reads['n']} socket reads for {n} messages"

        class CountingWake:  # the socket pair that wakes paho's network thread
            def __init__(self, sock: socket.socket) -> None:
                self.sock, self.sent = sock, 0

            def send(self, data: bytes) -> int:
                self.sent += 1
                return self.sock.send(data)

            def close(self) -> None:
                self.sock.close()

        client = consumer._client
        wake = CountingWake(client._sockpairW)  # type: ignore[arg-type]
        client._sockpairW = wake  # type: ignore[assignment]
        sends["n"] = 0
        acking = threading.Thread(target=lambda: [consumer.ack(m) for m in messages])
        acking.start()
        acking.join()
        _publish(mosquitto, n, "bench/after")  # all of them arrive only if the broker took all n PUBACKs
        assert len(received.wait_for(2 * n)) == 2 * n
        assert wake.sent <= n // 20, f"{wake.sent} wake-ups for {n} acks"
        assert sends["n"] <= n // 20, f"{sends['n']} socket writes for {n} acks"
    finally:
        consumer.stop()


@pytest.mark.asyncio
async def test_a_notification_is_sent_from_its_transitions_commit_without_another_turn_through_the_commit_thread(
        tmp_path: Path) -> None:
    """The commit thread is busy right after a flood's commit (the next chunk's transitions, other deliveries'
    marks, here: held on purpose until the desk has the message). The send must not wait for it: the rows are
    claimed in the commit that made them, and the send starts on the loop."""
    desk = RecordingServer().start()
    config = AlertsConfig.model_validate({"receivers": {"desk": {"type": "webhook", "url": f"{desk.url}/desk"}},
                                          "default_receivers": ["desk"]})
    alerts = AlertsRuntime(config, lambda _id: None, db_path=tmp_path / "alerts.sqlite")
    worker = asyncio.create_task(alerts.run())
    loop = asyncio.get_running_loop()

    async def accepted(n: int) -> bool:
        for _ in range(1000):
            if len(desk.accepted) >= n:
                return True
            await asyncio.sleep(0.01)
        return False

    def hold_until_the_desk_has(n: int) -> bool:
        for _ in range(1000):  # 10 s
            if len(desk.accepted) >= n:
                return True
            threading.Event().wait(0.01)
        return False

    try:
        await alerts.handle_many_soon([firing("WL-1", 0)])
        assert await accepted(1)  # the worker runs
        stored = alerts.handle_many_soon([firing("WL-2", 0)])
        held = loop.run_in_executor(alerts.committer, hold_until_the_desk_has, 2)  # next in the commit thread
        await stored
        assert await held, "the send waited for the commit thread"
    finally:
        await alerts.stop()
        await worker
        alerts.close()
        desk.stop()
    assert [orjson.loads(r.body)["device_id"] for r in desk.accepted] == ["WL-1", "WL-2"]


def test_the_brokers_we_ship_and_start_send_small_publishes_without_nagles_delay(tmp_path: Path) -> None:
    """Mosquitto's default `set_tcp_nodelay false` lets Nagle's algorithm hold a flood reading's PUBLISH until
    the consumer acknowledges the previous one at TCP level; the compose broker and the one the demo, tests and
    benchmarks start turn it off."""
    compose = Path(__file__).parent.parent / "deploy" / "compose" / "mosquitto" / "mosquitto.conf"
    settings = [line.split() for line in compose.read_text().splitlines() if line and not line.startswith("#")]
    assert ["set_tcp_nodelay", "true"] in settings
    assert "set_tcp_nodelay true" in mosquitto_config(1883, tmp_path).splitlines()
