"""Set-up shared by the end-to-end benchmarks (e2e, workers, soak): a demo fleet registered in a temporary
folder beside a private Mosquitto and influxd, and persistent MQTT sessions the broker queues a backlog for."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from core.device import Device
from provisioning.registry import Registry
from sim.daemons import Daemon, start_influxd, start_mosquitto
from sim.simulator import Publisher, SimUplink, demo_fleet

KINDS = ("noise", "dust", "bin_fill", "parking", "water_level")
TOPIC = "application/+/device/+/event/up"
"""The ChirpStack uplink topic filter the simulator's events match."""


def fleet(devices: int) -> list[Device]:
    """About `devices` demo devices, split evenly over the five kinds (at least one of each)."""
    return demo_fleet({k: max(1, devices // len(KINDS)) for k in KINDS})


@contextmanager
def bench_stack(prefix: str, devices: list[Device]) -> Iterator[tuple[Path, Daemon, Daemon]]:
    """(folder, Mosquitto, influxd): a temporary folder whose `registry.sqlite` holds `devices`, and the two
    daemons keeping their data there; both stopped, and the folder removed, on exit.

    Mosquitto saves its queues once a day here: saving a backlog of hundreds of MB every second (the demo's
    setting) would measure the broker's disk, not the consumers."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmpdir:
        tmp = Path(tmpdir)
        with Registry(tmp / "registry.sqlite") as reg:
            for d in devices:
                reg.add(d, by="bench")
        broker = start_mosquitto(tmp, autosave_interval=86_400)
        try:
            influxd = start_influxd(tmp)
        except BaseException:
            broker.stop()
            raise
        try:
            yield tmp, broker, influxd
        finally:
            broker.stop()
            influxd.stop()


def create_session(port: int, client_id: str, topic: str = TOPIC) -> None:
    """Connect with a fixed id, subscribe to `topic` at QoS 1, disconnect: the broker now queues for this
    session (a `$share/<group>/…` topic: the group's share)."""
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    subscribed = threading.Event()
    c.on_subscribe = lambda *a: subscribed.set()
    c.on_connect = lambda client, *a: client.subscribe([(topic, SubscribeOptions(qos=1))])
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 7 * 24 * 3600
    c.connect("127.0.0.1", port, clean_start=False, properties=props)
    c.loop_start()
    if not subscribed.wait(10):
        raise SystemExit(f"could not create the session of {client_id}")
    c.disconnect()
    c.loop_stop()


def publish_backlog(port: int, backlog: list[SimUplink]) -> float:
    """Publish every uplink of `backlog` at QoS 1 (the sessions made before queue them all); the seconds it took."""
    t = time.perf_counter()
    pub = Publisher("127.0.0.1", port)
    for u in backlog:
        pub.publish(u.topic, u.event)
    pub.close()
    return time.perf_counter() - t
