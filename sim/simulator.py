"""A simulated fleet: physical scenarios → canonical fields → each model's `encode` → ChirpStack events.

Pure generation lives in `FleetSimulator` (deterministic for a seed, so tests can
recompute what was sent); `Publisher` only moves bytes to the broker.
"""

from __future__ import annotations

import math
import random
import ssl
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from collectors.lorawan.chirpstack import build_chirpstack_event
from core.device import Device
from core.schema import field_type
from core.tls import handshake_problem
from core.uplink import Uplink
from decoders import ModelInfo, all_models, decode_uplink, get_model

SCENARIOS = ("calm", "rainstorm")

# Physical quantity per kind that a scenario drives; other fields stay near mid-range.
PRIMARY = {
    "water_level": ("depth_mm", "distance_mm"),
    "bin_fill": ("distance_mm",),
    "noise": ("laeq_db",),
    "dust": ("pm2_5_ugm3", "pm10_ugm3"),
    "parking": ("occupied",),
}


@dataclass(slots=True)
class SimUplink:
    """One simulated uplink: what goes on the wire and what InfluxDB must end up holding."""

    device: Device
    topic: str
    event: bytes
    time_ns: int
    fcnt: int
    sent_fields: dict[str, float | int | bool]
    expected: dict[str, float | int | bool]


@dataclass
class Scenario:
    """Water depth over time per device; `storm_districts` flood in a rainstorm."""

    name: str = "calm"
    storm_districts: tuple[str, ...] = ()
    ramp_s: float = 600.0
    peak_depth_mm: float = 400.0
    _phase: dict[str, float] = field(default_factory=dict)

    def depth_mm(self, device: Device, t_s: float) -> float:
        if self.name != "rainstorm" or device.district not in self.storm_districts:
            return 0.0
        phase = self._phase.setdefault(device.id, (zlib.crc32(device.id.encode()) % 1000) / 1000 * 0.3)
        x = max(0.0, min(1.0, t_s / self.ramp_s - phase))
        return self.peak_depth_mm * x


def snap(value: float, lo: float, hi: float, step: float) -> float:
    """`value` clamped to [lo, hi] and put on the step grid, rounded to the step's decimals."""
    v = min(max(value, lo), hi)
    n = round((v - lo) / step)
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    out = round(lo + n * step, decimals + 2)
    return min(out, hi) if out > hi else out


class FleetSimulator:
    """Makes ChirpStack uplinks for LoRaWAN devices (DevEUI keys) following a scenario."""

    def __init__(self, devices: Iterable[Device], scenario: Scenario, *, seed: int = 1,
                 gateways: int = 2) -> None:
        self.devices = [d for d in devices if len(d.key) == 16 and d.status != "retired"]
        self.scenario = scenario
        self.rng = random.Random(seed)
        self.gateways = gateways
        self.fcnt: dict[str, int] = {}
        self._models: dict[str, ModelInfo] = {}

    def model(self, device: Device) -> ModelInfo:
        info = self._models.get(device.model)
        if info is None:
            info = self._models[device.model] = get_model(device.model)
        return info

    def fields_for(self, device: Device, t_s: float) -> dict[str, float | int | bool]:
        """Canonical fields this device reports at scenario time `t_s`, on its codec's grid."""
        info = self.model(device)
        rng = self.rng
        out: dict[str, float | int | bool] = {}
        for name, r in info.ranges.items():
            typ = field_type(info.kind, name)
            if typ is bool:
                # occupancy changes now and then; alarms and tilt are rare, as on a real street
                if name == "occupied":
                    out[name] = (zlib.crc32(f"{device.id}{int(t_s // 600)}".encode()) % 3) != 0
                else:
                    out[name] = rng.random() < 0.002
                continue
            target = r.lo + (r.hi - r.lo) * (0.4 + 0.2 * rng.random())
            if name == "depth_mm":
                target = self.scenario.depth_mm(device, t_s) + rng.uniform(0, 5)
            elif name == "distance_mm" and info.kind == "water_level":
                mount = device.install.get("mount_height_mm", r.hi)
                target = mount - self.scenario.depth_mm(device, t_s) - rng.uniform(0, 5)
            elif name == "distance_mm" and info.kind == "bin_fill":
                depth = device.install.get("bin_depth_mm", r.hi)
                fill = min(1.0, t_s / 43_200.0 + (zlib.crc32(device.id.encode()) % 70) / 100)  # full in ~12 h
                # a sensor under the bin measures the fill height, one above it the empty space
                target = depth * fill if info.mounting == "bottom" else depth * (1 - fill)
            elif name == "laeq_db":
                target = rng.gauss(58, 6)
            elif name in ("pm2_5_ugm3", "pm10_ugm3"):
                target = rng.gauss(45 if name == "pm2_5_ugm3" else 80, 15)
            elif name == "battery_pct":
                target = rng.uniform(40, 100)
            value = snap(target, r.lo, r.hi, r.step)
            out[name] = int(value) if typ is int else float(value)
        return out

    def uplink(self, device: Device, t_s: float, time_ns: int) -> SimUplink:
        info = self.model(device)
        sent = self.fields_for(device, t_s)
        payload, port = info.codec.encode(sent)
        expected = decode_uplink(device, Uplink(device.key, payload, port, time_ns, "simulator")).reading.fields
        fcnt = self.fcnt.get(device.id, -1) + 1
        self.fcnt[device.id] = fcnt
        gws = [(f"{0xA840410000000000 + i + 1:016x}", round(self.rng.uniform(-120, -60), 0),
                round(self.rng.uniform(-10, 12), 1)) for i in range(self.gateways)]
        topic, event = build_chirpstack_event(device.key, payload, port, fcnt, time_ns, gws,
                                              str(uuid.UUID(int=self.rng.getrandbits(128))),
                                              device_name=device.id)
        return SimUplink(device, topic, event, time_ns, fcnt, sent, dict(expected))

    def round(self, t_s: float, time_ns: int) -> list[SimUplink]:
        """One uplink per device; device i's time is offset by i µs so no two points collide."""
        return [self.uplink(d, t_s, time_ns + i * 1000) for i, d in enumerate(self.devices)]


class Publisher:
    """QoS 1 publisher that bounds its outstanding messages (paho loses any beyond 65,535 queued)."""

    def __init__(self, host: str, port: int, *, client_id: str = "", max_outstanding: int = 2000,
                 username: str | None = None, password: str | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self._slots = threading.BoundedSemaphore(max_outstanding)
        self._max = max_outstanding
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"sim-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv311, clean_session=True)
        if username:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set_context(tls)
        self.client.max_inflight_messages_set(min(max_outstanding, 1000))
        self.client.on_publish = self._on_publish
        self._connected = threading.Event()
        self.client.on_connect = lambda *a, **k: self._connected.set()
        self.published = 0
        try:
            self.client.connect(host, port, keepalive=30)
        except ssl.SSLCertVerificationError as exc:
            raise ConnectionError(f"simulator: the broker's certificate at {host}:{port} was refused: "
                                  f"{exc.verify_message or exc} (check mqtt.ca_file)") from None
        except OSError as exc:
            raise ConnectionError(f"simulator could not connect to the broker at {host}:{port}: {exc}") from None
        self.client.loop_start()
        if not self._connected.wait(10):
            why = handshake_problem(host, port, tls) if tls is not None else None
            raise ConnectionError(f"simulator could not connect to the broker at {host}:{port}"
                                  + (f": {why}" if why else ""))

    def _on_publish(self, *args: object) -> None:
        self.published += 1
        self._slots.release()

    def publish(self, topic: str, payload: bytes) -> None:
        self._slots.acquire()
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS and info.rc != mqtt.MQTT_ERR_NO_CONN:
            self._slots.release()
            raise ConnectionError(f"publish failed: {mqtt.error_string(info.rc)}")

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until the broker acknowledged everything published so far."""
        got = 0
        ok = True
        for _ in range(self._max):
            if not self._slots.acquire(timeout=timeout):
                ok = False
                break
            got += 1
        for _ in range(got):
            self._slots.release()
        return ok

    def close(self) -> None:
        self.flush()
        self.client.disconnect()
        self.client.loop_stop()


def publish_all(publisher: Publisher, uplinks: Iterable[SimUplink],
                progress: Callable[[int], None] | None = None) -> int:
    n = 0
    for u in uplinks:
        publisher.publish(u.topic, u.event)
        n += 1
        if progress and n % 1000 == 0:
            progress(n)
    return n


def demo_fleet(per_kind: Mapping[str, int] | None = None,
               districts: tuple[str, ...] = ("朝阳", "海淀", "东城", "丰台")) -> list[Device]:
    """A demo fleet of real models across districts (62 devices by default)."""
    per_kind = per_kind or {"water_level": 16, "bin_fill": 12, "noise": 12, "dust": 10, "parking": 12}
    by_kind: dict[str, list[ModelInfo]] = {}
    for m in all_models():
        if m.source == "native" and m.can_encode and getattr(m.codec, "transport", "lorawan") == "lorawan":
            by_kind.setdefault(m.kind, []).append(m)
    devices: list[Device] = []
    prefix = {"water_level": "WL", "bin_fill": "BN", "noise": "NS", "dust": "DS", "parking": "PK"}
    n = 0
    base_lat, base_lon = 39.9042, 116.4074
    for kind, count in per_kind.items():
        models = by_kind.get(kind, [])
        if not models:
            continue
        for i in range(count):
            n += 1
            info = models[i % len(models)]
            install: dict[str, float] = {}
            if "mount_height_mm" in info.install_params:
                install["mount_height_mm"] = 2000.0
            if "bin_depth_mm" in info.install_params:
                install["bin_depth_mm"] = 1200.0
            district = districts[i % len(districts)]
            devices.append(Device(
                id=f"{prefix[kind]}-{i + 1:03d}", key=f"{0x24E1240000000000 + n:016x}", model=info.model,
                kind=kind, latitude=round(base_lat + (n % 9 - 4) * 0.012, 6),
                longitude=round(base_lon + (n % 7 - 3) * 0.015, 6), address=f"{district}区 示范路 {n} 号",
                district=district, street=f"{district}街道", zone_class=("1", "2", "4a", "3")[i % 4],
                install=install, expected_interval_s=60))
    return devices


def run_simulation(sim: FleetSimulator, pub: Publisher, *, rate: float, duration_s: float,
                   stop: Callable[[], bool] | None = None) -> int:
    """Publish round-robin over the fleet at `rate` uplinks/s for `duration_s`; returns the count."""
    start = time.monotonic()
    sent = 0
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= duration_s or (stop and stop()):
            break
        for dev in sim.devices:
            elapsed = time.monotonic() - start
            if elapsed >= duration_s or (stop and stop()):
                break
            u = sim.uplink(dev, elapsed, time.time_ns())
            pub.publish(u.topic, u.event)
            sent += 1
            ahead = sent / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    return sent
