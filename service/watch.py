"""Follow one device's uplinks live from the broker, decoded as the service would: for signal checks at installation.

A separate, clean MQTT session subscribed at QoS 0: it never takes messages from the
service's own persistent session, and leaves nothing behind on the broker.
"""

from __future__ import annotations

import queue
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from collectors.lorawan import parse
from core.device import Device
from core.rejected import Rejected
from core.secrets import reveal
from core.uplink import EnvelopeError
from decoders import decode_uplink
from service.config import Config


@dataclass(frozen=True, slots=True)
class WatchedUplink:
    """One uplink of the watched device: decoded fields (or the decode error) and its radio metadata."""

    time_ns: int
    port: int
    fcnt: int | None
    rssi_dbm: float | None
    snr_db: float | None
    gateways: int
    fields: dict[str, float | int | bool | str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    error: str = ""


def uplink_topics(cfg: Config) -> list[str]:
    """The uplink topic filters the service subscribes to (ChirpStack and/or The Things Stack)."""
    topics = []
    if cfg.lorawan.chirpstack:
        topics.append(cfg.lorawan.chirpstack_topic)
    if cfg.lorawan.tts:
        topics.append(cfg.lorawan.tts_topic)
    return topics


def decode_for(device: Device, topic: str, payload: bytes) -> WatchedUplink | None:
    """The message as an uplink of `device`, decoded; None when it is another device's or not an uplink."""
    try:
        up = parse(topic, payload, time.time_ns())
    except EnvelopeError:
        return None
    if up.device_key != device.key:
        return None
    common = {"time_ns": up.time_ns, "port": up.port, "fcnt": up.fcnt, "rssi_dbm": up.rssi_dbm,
              "snr_db": up.snr_db, "gateways": len(up.gateway_ids)}
    try:
        decoded = decode_uplink(device, up)
    except Rejected as exc:
        return WatchedUplink(**common, error=exc.detail)
    return WatchedUplink(**common, fields=dict(decoded.reading.fields), warnings=tuple(decoded.warnings))


class WatchError(RuntimeError):
    """The broker cannot be reached or refused the subscription."""


def watch(cfg: Config, device: Device, on_uplink: Callable[[WatchedUplink], None], *, count: int = 0,
          timeout_s: float = 0, on_ready: Callable[[list[str]], None] | None = None) -> int:
    """Call `on_uplink` for each of the device's uplinks until `count` were seen (0: until Ctrl-C) or `timeout_s`.

    Returns how many were seen. Runs in the calling thread; paho's network loop runs in its own.
    """
    topics = uplink_topics(cfg)
    if not topics:
        raise WatchError("no uplink topics: enable lorawan.chirpstack or lorawan.tts in the config")
    inbox: queue.Queue[WatchedUplink | str] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"urbansense-watch-{uuid.uuid4().hex[:8]}",
                         protocol=mqtt.MQTTv311, clean_session=True)
    if cfg.mqtt.username:
        client.username_pw_set(cfg.mqtt.username, reveal(cfg.mqtt.password))
    tls = cfg.mqtt_tls()
    if tls is not None:
        client.tls_set_context(tls)

    def on_connect(c: mqtt.Client, _u: object, _f: object, reason: object, _p: object = None) -> None:
        if getattr(reason, "is_failure", False):
            inbox.put(f"broker refused the connection: {reason}")
            return
        c.subscribe([(t, 0) for t in topics])

    def on_subscribe(_c: mqtt.Client, _u: object, _mid: int, reasons: list, _p: object = None) -> None:
        bad = [str(r) for r in reasons if getattr(r, "is_failure", False)]
        inbox.put(f"broker refused the subscription: {', '.join(bad)}" if bad else "ready")

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        seen = decode_for(device, msg.topic, msg.payload)
        if seen is not None:
            inbox.put(seen)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(cfg.mqtt.host, cfg.mqtt.port, keepalive=cfg.mqtt.keepalive_s)
    except OSError as exc:
        raise WatchError(f"cannot reach the broker at {cfg.mqtt.host}:{cfg.mqtt.port}: {exc}") from None
    client.loop_start()
    seen = 0
    deadline = time.monotonic() + timeout_s if timeout_s > 0 else None
    try:
        while not count or seen < count:
            wait = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
            if wait <= 0:
                break
            try:
                item = inbox.get(timeout=wait)
            except queue.Empty:
                continue
            if item == "ready":
                if on_ready is not None:
                    on_ready(topics)
            elif isinstance(item, str):
                raise WatchError(item)
            else:
                seen += 1
                on_uplink(item)
    finally:
        client.disconnect()
        client.loop_stop()
    return seen
