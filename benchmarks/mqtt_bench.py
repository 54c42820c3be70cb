"""How fast the MQTT collector drains a backlog with manual acks, and what one envelope parse costs.

Starts a private Mosquitto on loopback, queues N ChirpStack v4 uplink events (~1.3 KB each)
for an offline persistent session, then starts `MqttConsumer` and times until every message
has been received (and parsed, and acked). Prints messages per second of wall time and per
CPU second of this process (paho's network thread plus the acking thread share one GIL).

    python benchmarks/mqtt_bench.py [--messages 50000] [--receive-maximum 10000]
"""

from __future__ import annotations

import argparse
import queue
import tempfile
import threading
import time
import timeit
from pathlib import Path

import paho.mqtt.client as paho
from loguru import logger

from collectors.lorawan import build_chirpstack_event, parse_chirpstack
from collectors.mqtt import MqttConsumer, MqttDelivery
from sim.daemons import Daemon, start_mosquitto

CLIENT_ID = "urbansense-bench"
TOPIC_FILTER = "application/+/device/+/event/up"
GATEWAYS = [("0016c001f153a14c", -97, 7.5), ("0016c001f153a14d", -88, -2.25)]


def events(n: int) -> list[tuple[str, bytes]]:
    """N distinct realistic uplink events from 1,000 devices."""
    return [build_chirpstack_event(f"{0xA81758FFFE000000 + i % 1000:016x}", i.to_bytes(4, "big") * 3, 2, i,
                                   1_700_000_000_000_000_000 + i * 1_000_003, GATEWAYS) for i in range(n)]


def publish_backlog(broker: Daemon, messages: list[tuple[str, bytes]]) -> float:
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=paho.MQTTv5)
    pub.max_inflight_messages_set(2000)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    t0 = time.perf_counter()
    infos = [pub.publish(topic, body, qos=1) for topic, body in messages]
    for info in infos:
        info.wait_for_publish(120)
    elapsed = time.perf_counter() - t0
    pub.disconnect()
    pub.loop_stop()
    return elapsed


def drain(broker: Daemon, n: int, mode: str, receive_maximum: int) -> tuple[float, float]:
    """Wall and CPU seconds to receive, parse and ack n queued messages; mode 'inline' or 'thread'."""
    done = threading.Event()
    handed: queue.SimpleQueue[MqttDelivery] = queue.SimpleQueue()
    count = 0
    consumer: MqttConsumer

    def handle(msg: MqttDelivery) -> None:
        nonlocal count
        parse_chirpstack(msg.topic, msg.payload, msg.received_ns)
        consumer.ack(msg)
        count += 1
        if count == n:
            done.set()

    def worker() -> None:
        while not done.is_set():
            try:
                handle(handed.get(timeout=0.5))
            except queue.Empty:
                continue

    on_message = handle if mode == "inline" else handed.put
    consumer = MqttConsumer(host="127.0.0.1", port=broker.port, client_id=CLIENT_ID, topics=[TOPIC_FILTER],
                            on_message=on_message, receive_maximum=receive_maximum)
    if mode == "thread":
        threading.Thread(target=worker, daemon=True).start()
    c0, t0 = time.process_time(), time.perf_counter()
    consumer.start()
    if not done.wait(600):
        raise SystemExit(f"only {count} of {n} messages arrived")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    consumer.stop()
    return wall, cpu


def create_session(broker: Daemon) -> None:
    c = MqttConsumer(host="127.0.0.1", port=broker.port, client_id=CLIENT_ID, topics=[TOPIC_FILTER],
                     on_message=lambda m: None)
    c.start()
    if not c.wait_connected(10):
        raise SystemExit("consumer could not connect")
    c.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--receive-maximum", type=int, default=10_000)
    args = ap.parse_args()
    logger.remove()

    sample_topic, sample = events(1)[0]
    n_parse = 50_000
    per_parse = timeit.timeit(lambda: parse_chirpstack(sample_topic, sample, 0), number=n_parse) / n_parse
    print(f"parse_chirpstack: {per_parse * 1e6:.1f} µs per {len(sample)}-byte event "
          f"({1 / per_parse:,.0f} events/s)")

    backlog = events(args.messages)
    with tempfile.TemporaryDirectory() as tmp:
        broker = start_mosquitto(Path(tmp))
        try:
            for mode in ("inline", "thread"):
                create_session(broker)
                pub_s = publish_backlog(broker, backlog)
                wall, cpu = drain(broker, args.messages, mode, args.receive_maximum)
                print(f"{mode:>6}: published {args.messages:,} in {pub_s:.1f} s; drained with parse + manual ack "
                      f"in {wall:.2f} s = {args.messages / wall:,.0f} msg/s wall, "
                      f"{args.messages / cpu:,.0f} msg per CPU-second")
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
