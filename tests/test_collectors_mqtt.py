"""MqttConsumer against a real Mosquitto: QoS 1, manual ack, persistent session, reconnection."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from collectors.lorawan import build_chirpstack_event, parse
from collectors.mqtt import MqttConsumer, MqttDelivery
from sim.daemons import Daemon, free_port, start_mosquitto

TOPIC_FILTER = "application/+/device/+/event/up"
WAIT = 10.0


class Received:
    """Collects what a consumer hands over, for the test thread to wait on."""

    def __init__(self, fail_first: int = 0) -> None:
        self.q: queue.Queue[MqttDelivery] = queue.Queue()
        self.fail_first = fail_first

    def __call__(self, msg: MqttDelivery) -> None:
        if self.fail_first:
            self.fail_first -= 1
            raise RuntimeError("pipeline exploded")
        self.q.put(msg)

    def take(self, n: int = 1, timeout: float = WAIT) -> list[MqttDelivery]:
        return [self.q.get(timeout=timeout) for _ in range(n)]


class Publisher:
    """A plain paho publisher at QoS 1 with a wide in-flight window."""

    def __init__(self, broker: Daemon) -> None:
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}",
                                  protocol=paho.MQTTv5)
        self.client.max_inflight_messages_set(1000)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()

    def send(self, messages: list[tuple[str, bytes]]) -> None:
        infos = [self.client.publish(topic, body, qos=1) for topic, body in messages]
        for info in infos:
            info.wait_for_publish(WAIT)
            assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(mosquitto: Daemon) -> Iterator[Publisher]:
    p = Publisher(mosquitto)
    yield p
    p.close()


def _events(n: int, start: int = 0) -> list[tuple[str, bytes]]:
    return [build_chirpstack_event(f"{0xA81758FFFE030000 + i:016x}", i.to_bytes(4, "big"), 2, i,
                                   1_700_000_000_000_000_000 + i, [("0016c001f153a14c", -90, 5.0)])
            for i in range(start, start + n)]


def _consumer(port: int, on_message: Callable[[MqttDelivery], None], client_id: str = "urbansense-test",
              **kw) -> MqttConsumer:
    kw.setdefault("reconnect_max_s", 1.0)
    kw.setdefault("reconnect_min_s", 0.1)
    kw.setdefault("topics", [TOPIC_FILTER])
    return MqttConsumer(host="127.0.0.1", port=port, client_id=client_id, on_message=on_message, **kw)


@pytest.fixture
def started() -> Iterator[list[MqttConsumer]]:
    """Consumers a test starts; stopped at the end whatever happens."""
    consumers: list[MqttConsumer] = []
    yield consumers
    for c in consumers:
        c.stop()


def _until(condition, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def _start(started: list[MqttConsumer], consumer: MqttConsumer) -> MqttConsumer:
    started.append(consumer)
    consumer.start()
    assert consumer.wait_connected(WAIT), "consumer did not connect and subscribe"
    return consumer


def test_qos1_messages_are_delivered_and_parse(mosquitto: Daemon, publisher: Publisher,
                                               started: list[MqttConsumer]) -> None:
    got = Received()
    consumer = _start(started, _consumer(mosquitto.port, got))
    sent = _events(3)
    publisher.send(sent)
    msgs = got.take(3)
    assert [(m.topic, m.payload, m.qos) for m in msgs] == [(t, b, 1) for t, b in sent]
    assert [parse(m.topic, m.payload, m.received_ns).device_key for m in msgs] == [
        "a81758fffe030000", "a81758fffe030001", "a81758fffe030002"]
    for m in msgs:
        consumer.ack(m)
    assert consumer.stats.received == 3 and consumer.stats.acked == 3


def test_unacked_message_is_redelivered_to_the_next_consumer_and_acked_one_is_not(
        mosquitto: Daemon, publisher: Publisher, started: list[MqttConsumer]) -> None:
    first = _start(started, _consumer(mosquitto.port, got1 := Received()))
    publisher.send(_events(1))
    (msg,) = got1.take()
    first.stop()

    second = _start(started, _consumer(mosquitto.port, got2 := Received()))
    (again,) = got2.take()
    assert (again.topic, again.payload, again.dup) == (msg.topic, msg.payload, True)
    second.ack(again)
    second.stop()

    third = _start(started, _consumer(mosquitto.port, got3 := Received()))
    marker = _events(1, start=99)
    publisher.send(marker)
    (nxt,) = got3.take()
    assert nxt.payload == marker[0][1], "an acknowledged message came back"
    third.ack(nxt)


def test_messages_published_while_the_consumer_is_away_arrive_when_it_returns(
        mosquitto: Daemon, publisher: Publisher, started: list[MqttConsumer]) -> None:
    _start(started, _consumer(mosquitto.port, Received())).stop()
    sent = _events(50)
    publisher.send(sent)
    consumer = _start(started, _consumer(mosquitto.port, got := Received()))
    msgs = got.take(50)
    assert [m.payload for m in msgs] == [b for _, b in sent]
    for m in msgs:
        consumer.ack(m)


def test_consumer_survives_a_broker_restart_and_drops_acks_of_the_old_connection(
        tmp_path: Path, mosquitto: Daemon, publisher: Publisher, started: list[MqttConsumer]) -> None:
    consumer = _start(started, _consumer(mosquitto.port, got := Received()))
    publisher.send(_events(1))
    (before,) = got.take()
    publisher.close()
    mosquitto.stop()
    assert _until(lambda: not consumer.connected), "consumer did not notice the broker going away"

    restarted = start_mosquitto(tmp_path, port=mosquitto.port)
    try:
        assert consumer.wait_connected(WAIT), "consumer did not reconnect by itself"
        assert consumer.stats.reconnects >= 1 and consumer.stats.connects == 2
        (again,) = got.take()
        assert again.payload == before.payload and again.dup, "unacked message lost by the restart"
        consumer.ack(before)
        assert consumer.stats.stale_acks == 1 and consumer.stats.acked == 0
        consumer.ack(again)

        pub = Publisher(restarted)
        after = _events(1, start=7)
        pub.send(after)
        pub.close()
        (msg,) = got.take()
        assert msg.payload == after[0][1]
        consumer.ack(msg)
        assert consumer.stats.acked == 2
    finally:
        consumer.stop()
        restarted.stop()


@pytest.mark.integration
def test_first_connection_is_retried_until_the_broker_appears(tmp_path: Path,
                                                              started: list[MqttConsumer]) -> None:
    port = free_port()
    consumer = _consumer(port, got := Received())
    started.append(consumer)
    consumer.start()
    assert not consumer.wait_connected(0.5)
    broker = start_mosquitto(tmp_path, port=port)
    try:
        assert consumer.wait_connected(WAIT)
        assert consumer.stats.connect_failures >= 1
        pub = Publisher(broker)
        pub.send(_events(1))
        pub.close()
        consumer.ack(got.take()[0])
    finally:
        consumer.stop()
        broker.stop()


def test_a_failing_on_message_does_not_stop_delivery(mosquitto: Daemon, publisher: Publisher,
                                                     started: list[MqttConsumer]) -> None:
    consumer = _start(started, _consumer(mosquitto.port, got := Received(fail_first=1)))
    sent = _events(2)
    publisher.send(sent)
    (msg,) = got.take()
    assert msg.payload == sent[1][1]
    assert consumer.stats.callback_errors == 1


def test_receive_maximum_lets_more_than_the_default_window_be_in_flight(
        mosquitto: Daemon, publisher: Publisher, started: list[MqttConsumer]) -> None:
    consumer = _start(started, _consumer(mosquitto.port, got := Received(), receive_maximum=1000))
    publisher.send(_events(500))
    msgs = got.take(500)
    assert len({m.mid for m in msgs}) == 500
    for m in msgs:
        consumer.ack(m)


def test_twenty_thousand_messages_acked_from_another_thread_all_arrive(
        mosquitto: Daemon, publisher: Publisher, started: list[MqttConsumer]) -> None:
    n = 20_000
    got = Received()
    consumer = _start(started, _consumer(mosquitto.port, got))
    payloads: set[bytes] = set()

    def acker() -> None:
        while len(payloads) < n:
            m = got.q.get(timeout=30)
            payloads.add(m.payload)
            consumer.ack(m)

    worker = threading.Thread(target=acker)
    worker.start()
    publisher.send([("application/a/device/a81758fffe030000/event/up", i.to_bytes(4, "big")) for i in range(n)])
    worker.join(60)
    assert not worker.is_alive()
    assert len(payloads) == n
    assert consumer.stats.acked == n


def test_a_handler_blocking_for_less_than_half_the_keepalive_keeps_the_connection(
        mosquitto: Daemon, publisher: Publisher, started: list[MqttConsumer]) -> None:
    received: list[MqttDelivery] = []

    def slow(msg: MqttDelivery) -> None:
        time.sleep(0.9)
        received.append(msg)

    consumer = _start(started, _consumer(mosquitto.port, slow, keepalive=2))
    publisher.send(_events(4))
    assert _until(lambda: len(received) == 4)
    for m in received:
        consumer.ack(m)
    assert consumer.stats.connects == 1 and consumer.stats.acked == 4


@pytest.mark.timeout(60)
def test_a_retiring_shared_member_drains_its_session_and_ends_it_so_nothing_new_waits_for_it(
        mosquitto: Daemon, publisher: Publisher) -> None:
    """Mosquitto keeps dealing a stopped member of a shared subscription its share; a retiring one stops that."""
    shared = f"$share/g/{TOPIC_FILTER}"
    got_a, got_b = Received(), Received()
    a = _consumer(mosquitto.port, got_a, client_id="ingest-a", topics=[shared])
    b = _consumer(mosquitto.port, got_b, client_id="ingest-b", topics=[shared])
    b.on_message = lambda m: (got_b(m), b.ack(m))[0]
    for c in (a, b):
        c.start()
        assert c.wait_connected(WAIT)
    a.stop()  # stopped, session kept: the broker keeps dealing it a share
    publisher.send(_events(10))
    retiring = _consumer(mosquitto.port, got_a, client_id="ingest-a", topics=[shared], retiring=True)
    retiring.on_message = lambda m: (got_a(m), retiring.ack(m))[0]
    retiring.start()
    assert retiring.wait_connected(WAIT)
    kept = got_a.take(5)  # its share of the ten waited in its session and is drained now
    b_first = got_b.take(5)
    retiring.stop()
    publisher.send(_events(10, start=10))
    b_next = got_b.take(10)  # after retirement every new uplink goes to the remaining member
    assert got_a.q.empty()
    seen = sorted(parse(m.topic, m.payload, 0).fcnt for m in kept + b_first + b_next)
    assert seen == list(range(20))
    b.stop()
    again = _consumer(mosquitto.port, got_a, client_id="ingest-a", topics=[shared])
    again.start()  # the retired session is gone: a new one with that id starts empty
    assert again.wait_connected(WAIT)
    time.sleep(0.5)
    assert got_a.q.empty()
    again.stop()
