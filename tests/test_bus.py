"""The internal readings topic (service/bus.py): wire format, per-device order, and both ends on a real Mosquitto."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
import paho.mqtt.client as paho
import pytest

from core.reading import Reading
from service.bus import (
    BusCallbackError,
    BusFormatError,
    DeviceOrder,
    ReadingsConsumer,
    ReadingsPublisher,
    decode_readings,
    encode_readings,
    readings_topic_of,
)
from sim.daemons import Daemon, start_mosquitto
from storage.deadletter import DeadLetter
from storage.lineprotocol import encode_reading

T0 = 1_760_000_000_000_000_000
MIN = 60_000_000_000
TOPIC = "urbansense/readings"
TAGS_A = (("device_id", "wl-1"), ("district", "黄浦区"), ("model", "ws301"))
TAGS_B = (("device_id", "dust-2"), ("district", "静安区"), ("model", "em500"))


def _water(i: int, device: str = "wl-1", tags: tuple = TAGS_A) -> Reading:
    return Reading(device, "water_level", T0 + i * MIN, {"depth_cm": 10.0 + i, "alarm": i % 2 == 0, "state": "ok"},
                   tags, {"battery_pct": 90, "fcnt": i})


def test_wire_format_round_trips_readings_and_is_compact() -> None:
    readings = [_water(i) for i in range(50)] + [
        Reading("dust-2", "dust", T0, {"pm10": 35}, TAGS_B, {}, history=True)]
    body = encode_readings(readings)
    assert decode_readings(body) == readings
    assert body.count("黄浦区".encode()) == 1  # a tag set travels once per message, not once per reading
    line_protocol = b"".join(encode_reading(r) for r in readings)
    assert len(body) < 0.8 * len(line_protocol)  # compact: well under what InfluxDB was sent for the same readings


@pytest.mark.parametrize(("payload", "says"), [
    (b"\xff\xfe", "not JSON"),
    (b"[]", '"v": 1'),
    (orjson.dumps({"v": 2, "tags": [], "r": []}), '"v": 1'),
    (orjson.dumps({"v": 1, "tags": {}, "r": []}), '"tags" and "r"'),
    (orjson.dumps({"v": 1, "tags": [[["a", 1]]], "r": []}), "tag set 0"),
    (orjson.dumps({"v": 1, "tags": [[]], "r": [["d", "dust", 1, {}, 0, {}]]}), "7 items"),
    (orjson.dumps({"v": 1, "tags": [[]], "r": [["d", "dust", 1.5, {}, 0, {}, 0]]}), "int64"),
    (orjson.dumps({"v": 1, "tags": [[]], "r": [["d", "dust", 1, {}, 3, {}, 0]]}), "index 3 out of range"),
    (orjson.dumps({"v": 1, "tags": [[]], "r": [["d", "dust", 1, {"pm10": [1]}, 0, {}, 0]]}), "field 'pm10'"),
    (orjson.dumps({"v": 1, "tags": [[]], "r": [["", "dust", 1, {}, 0, {}, 0]]}), "non-empty"),
    (orjson.dumps({"v": 1, "tags": [[]], "r": [["d", "dust", 1, {}, 0, {}, 2]]}), "history"),
])
def test_malformed_messages_are_refused_with_the_reason(payload: bytes, says: str) -> None:
    with pytest.raises(BusFormatError, match=says.replace("(", r"\(").replace(")", r"\)")):
        decode_readings(payload)


def test_ingest_id_must_be_one_topic_level() -> None:
    assert readings_topic_of(TOPIC, "host1-2") == "urbansense/readings/host1-2"
    for bad in ("", "a/b", "+", "w#"):
        with pytest.raises(ValueError, match="ingest id"):
            readings_topic_of(TOPIC, bad)


def test_device_order_sorts_skips_redeliveries_and_marks_late_readings_history() -> None:
    order = DeviceOrder()
    order.seen("wl-1", T0 + 2 * MIN)  # the warm-up replayed readings up to minute 2
    batch = [_water(5), _water(2), _water(4), _water(3), _water(1)]
    out, late, dup = order.arrange(batch)
    assert [r.time_ns for r in out] == [T0 + MIN, T0 + 3 * MIN, T0 + 4 * MIN, T0 + 5 * MIN]
    assert [r.history for r in out] == [True, False, False, False]
    assert (late, dup) == (1, 1)
    out, late, dup = order.arrange([_water(4), _water(6)])  # minute 4 came again from a second worker
    assert [(r.time_ns, r.history) for r in out] == [(T0 + 4 * MIN, True), (T0 + 6 * MIN, False)]
    jumped = _water(6 - 2 * 24 * 60)  # two days back: the device's clock, not a lagging worker
    out, late, dup = order.arrange([jumped])
    assert out == [jumped] and not jumped.history and order.jumped_back == 1  # the rules restart its windows
    out, _, _ = order.arrange([_water(6 - 2 * 24 * 60 + 1)])
    assert not out[0].history  # and its readings go on from there


# --- on a real broker --------------------------------------------------------------------------


def _publisher(broker: Daemon, ingest_id: str) -> ReadingsPublisher:
    return ReadingsPublisher(host="127.0.0.1", port=broker.port, client_id=f"urbansense-ingest-{ingest_id}-bus",
                             topic=readings_topic_of(TOPIC, ingest_id), reconnect_min_s=0.1, reconnect_max_s=0.5)


def _wait(event: threading.Event, timeout: float = 10.0) -> bool:
    return event.wait(timeout)


@pytest.mark.timeout(60)
def test_publisher_runs_the_chunk_acks_only_after_the_brokers_puback(tmp_path: Path) -> None:
    broker = start_mosquitto(tmp_path)
    pub = _publisher(broker, "w1")
    pub.start()
    try:
        assert pub.wait_connected(10)
        acked = threading.Event()
        pub.publish([_water(i) for i in range(2500)], acked.set)  # split in three messages, one ack
        assert _wait(acked)
        assert (pub.stats.messages, pub.stats.pubacks, pub.stats.readings) == (3, 3, 2500)

        broker.kill()  # the broker is gone: the chunk must stay unacknowledged
        held = threading.Event()
        pub.publish([_water(3000)], held.set)
        assert not held.wait(1.5)
        broker = start_mosquitto(tmp_path, broker.port)
        assert _wait(held, 15), "the message was not sent again after the reconnection"
        empty = threading.Event()
        pub.publish([], empty.set)
        assert empty.is_set()
    finally:
        pub.stop(5)
        broker.stop()


class Leader:
    """Runs a `ReadingsConsumer` in its own event loop thread, recording what the rules were given."""

    def __init__(self, broker: Daemon, *, fail: Callable[[list[Reading]], bool] = lambda rs: False,
                 reorder_s: float = 0.3, client_id: str = "urbansense-leader") -> None:
        self.batches: list[list[Reading]] = []
        self.dead: list[DeadLetter] = []
        self.fail = fail
        self.error: BaseException | None = None
        self.got = threading.Condition()
        self.loop = asyncio.new_event_loop()
        self.stopping = asyncio.Event()

        async def on_readings(rs: list[Reading]) -> None:
            if self.fail(rs):
                raise RuntimeError("rules exploded")
            with self.got:
                self.batches.append(list(rs))
                self.got.notify_all()

        self.consumer = ReadingsConsumer(host="127.0.0.1", port=broker.port, client_id=client_id,
                                         readings_topic=TOPIC, on_readings=on_readings, on_malformed=self.dead.append,
                                         reorder_s=reorder_s, max_attempts=2, retry_initial_s=0.05)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        async def main() -> None:
            self.stopping = asyncio.Event()
            await self.consumer.run(self.stopping)
        try:
            self.loop.run_until_complete(main())
        except BusCallbackError as exc:
            self.error = exc

    @property
    def readings(self) -> list[Reading]:
        return [r for b in self.batches for r in b]

    def wait_for(self, n: int, timeout: float = 15.0) -> list[Reading]:
        with self.got:
            self.got.wait_for(lambda: len(self.readings) >= n, timeout)
        return self.readings

    def wait_connected(self) -> None:
        for _ in range(100):
            if self.consumer.connected:
                return
            threading.Event().wait(0.1)
        raise AssertionError("the leader's consumer did not connect")

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stopping.set)
        self.thread.join(15)
        assert not self.thread.is_alive()


def _raw_publish(broker: Daemon, topic: str, body: bytes) -> None:
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"raw-{uuid.uuid4().hex[:6]}", protocol=paho.MQTTv5)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    c.publish(topic, body, qos=1).wait_for_publish(10)
    c.disconnect()
    c.loop_stop()


def _publish_all(pub: ReadingsPublisher, chunks: list[list[Reading]]) -> None:
    for chunk in chunks:
        ok = threading.Event()
        pub.publish(chunk, ok.set)
        assert ok.wait(10)


@pytest.mark.timeout(90)
def test_leader_gets_each_devices_readings_in_order_from_two_workers(mosquitto: Daemon) -> None:
    leader = Leader(mosquitto, reorder_s=8.0)  # the hold that puts the two workers' chunks back in order (2 s was
    # crossed on a loaded CI worker between the two workers' publishes, as it would be by a worker that far behind)
    w1, w2 = _publisher(mosquitto, "w1"), _publisher(mosquitto, "w2")
    for w in (w1, w2):
        w.start()
        assert w.wait_connected(10)
    try:
        leader.wait_connected()
        # consecutive uplinks of wl-1 went to different workers; w2's later chunk reaches the broker first
        _publish_all(w2, [[_water(2), _water(3)], [_water(1, "dust-2", TAGS_B)]])
        _publish_all(w1, [[_water(0), _water(1)], [_water(0, "dust-2", TAGS_B)]])
        _raw_publish(mosquitto, f"{TOPIC}/w1", b'{"v": 1, "tags": [], "r": [["x"]]}')  # never stalls the stream
        _publish_all(w1, [[_water(4)]])
        got = leader.wait_for(7, timeout=40)
        for device in ("wl-1", "dust-2"):
            times = [r.time_ns for r in got if r.device_id == device]
            assert times == sorted(times) and len(times) == len(set(times)), device
        assert sorted(r.time_ns for r in got if r.device_id == "wl-1") == [T0 + i * MIN for i in range(5)]
        assert [d.reason for d in leader.dead] == ["bus_malformed"]
        assert "reading 0" in leader.dead[0].detail
        assert leader.consumer.stats.malformed == 1
    finally:
        leader.stop()
        w1.stop(5)
        w2.stop(5)


@pytest.mark.timeout(90)
def test_a_new_leader_resumes_the_session_and_a_failing_callback_acknowledges_nothing(mosquitto: Daemon) -> None:
    first = Leader(mosquitto, reorder_s=0.05)
    pub = _publisher(mosquitto, "w1")
    pub.start()
    assert pub.wait_connected(10)
    try:
        first.wait_connected()
        _publish_all(pub, [[_water(0)]])
        assert len(first.wait_for(1)) == 1
        first.stop()
        _publish_all(pub, [[_water(i)] for i in range(1, 4)])  # while no leader is connected
        broken = Leader(mosquitto, reorder_s=0.05, fail=lambda rs: True)  # e.g. its database is gone
        broken.thread.join(20)
        assert not broken.thread.is_alive() and isinstance(broken.error, BusCallbackError)
        assert broken.readings == [] and broken.consumer.stats.callback_failures == 2
        second = Leader(mosquitto, reorder_s=0.05)  # the next leader gets what the broken one could not take
        try:
            _publish_all(pub, [[_water(4)]])
            got = second.wait_for(4)
            assert sorted(r.time_ns for r in got) == [T0 + i * MIN for i in range(1, 5)]
        finally:
            second.stop()
    finally:
        pub.stop(5)
