"""The internal readings topic of a cluster (issue 19): ingest processes → the leader's rules.

An ingest process stores a chunk in InfluxDB, then publishes the chunk's readings as one
compact orjson message (QoS 1) to `<readings_topic>/<ingest id>` (`ReadingsPublisher`); the
chunk's uplinks are acknowledged only after the broker's PUBACK, so a reading is either
stored and on its way to the rules, or still at the broker. The leader reads
`<readings_topic>/#` on a persistent session (`ReadingsConsumer`): a new leader connecting
with the same client id resumes it (and the broker disconnects an old leader still holding
it). A message is acknowledged after the rules' callback returns.

Per-device order (docs/architecture.md, "Scale-out and standby"): two workers may handle
consecutive uplinks of one device, so their messages can reach the leader in either order.
The consumer holds each message `reorder_s` before release, releases what is due sorted by
reading time, and `DeviceOrder` marks a reading older than the newest one the rules saw of
its device as `history` (it fills windows, it does not restart them or page anyone) and skips
one at exactly that time (a redelivery).

Wire format, version 1 (`encode_readings` / `decode_readings`):

    {"v": 1, "tags": [[[key, value], ...], ...],
     "r": [[device_id, kind, time_ns, {field: value}, tag set index, {health: value}, history 0|1], ...]}
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import paho.mqtt.client as paho
from loguru import logger
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from collectors.mqtt import MqttConsumer, MqttDelivery
from core.reading import FieldValue, Reading
from core.secrets import reveal
from core.timing import backoff_s
from storage.deadletter import DeadLetter

FORMAT_VERSION = 1
MAX_READINGS_PER_MESSAGE = 1000
"""A chunk with more readings (history records) is split; its uplinks are acknowledged after every PUBACK."""

Done = Callable[[], None]


class BusCallbackError(RuntimeError):
    """The leader's callback kept failing: the consumer stopped with the batch unacknowledged."""


class BusFormatError(ValueError):
    """A readings message that is not version 1 of the wire format; the text says what is wrong."""


# --- wire format ------------------------------------------------------------------------------


def encode_readings(readings: Iterable[Reading]) -> bytes:
    """One message for `readings`: tag sets are sent once per message and referred to by index."""
    tag_index: dict[tuple[tuple[str, str], ...], int] = {}
    rows = []
    for r in readings:
        i = tag_index.get(r.tags)
        if i is None:
            i = tag_index[r.tags] = len(tag_index)
        rows.append((r.device_id, r.kind, r.time_ns, r.fields, i, r.health, 1 if r.history else 0))
    return orjson.dumps({"v": FORMAT_VERSION, "tags": list(tag_index), "r": rows})


def _values(obj: object, what: str) -> dict[str, FieldValue]:
    if not isinstance(obj, dict):
        raise BusFormatError(f"{what}: expected an object, not {type(obj).__name__}")
    for k, v in obj.items():
        if not isinstance(v, float | int | str | bool):
            raise BusFormatError(f"{what} {k!r}: expected a number, boolean or string, not {type(v).__name__}")
    return obj


def decode_readings(payload: bytes) -> list[Reading]:
    """The readings of one message; `BusFormatError` naming the first problem (nothing partial is returned)."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise BusFormatError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("v") != FORMAT_VERSION:
        raise BusFormatError(f"expected an object with \"v\": {FORMAT_VERSION}")
    raw_tags, rows = doc.get("tags"), doc.get("r")
    if not isinstance(raw_tags, list) or not isinstance(rows, list):
        raise BusFormatError("expected \"tags\" and \"r\" lists")
    tag_sets: list[tuple[tuple[str, str], ...]] = []
    for n, ts in enumerate(raw_tags):
        if not isinstance(ts, list) or not all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str)
                                               and isinstance(p[1], str) for p in ts):
            raise BusFormatError(f"tag set {n}: expected [[key, value], ...] of strings")
        tag_sets.append(tuple((k, v) for k, v in ts))
    out: list[Reading] = []
    for n, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != 7:
            raise BusFormatError(f"reading {n}: expected a list of 7 items")
        device_id, kind, time_ns, fields, tags_i, health, history = row
        if not isinstance(device_id, str) or not device_id or not isinstance(kind, str) or not kind:
            raise BusFormatError(f"reading {n}: device id and kind must be non-empty strings")
        if type(time_ns) is not int or not -(1 << 63) <= time_ns < 1 << 63:
            raise BusFormatError(f"reading {n} ({device_id}): time must be an int64 of nanoseconds")
        if type(tags_i) is not int or not 0 <= tags_i < len(tag_sets):
            raise BusFormatError(f"reading {n} ({device_id}): tag set index {tags_i!r} out of range")
        if history not in (0, 1) or isinstance(history, float):
            raise BusFormatError(f"reading {n} ({device_id}): history must be 0 or 1")
        out.append(Reading(device_id, kind, time_ns, _values(fields, f"reading {n} ({device_id}) field"),
                           tag_sets[tags_i], _values(health, f"reading {n} ({device_id}) health"), bool(history)))
    return out


def readings_topic_of(readings_topic: str, ingest_id: str) -> str:
    """`<readings_topic>/<ingest id>`; a `ValueError` when the id could not be one topic level."""
    if not ingest_id or any(c in ingest_id for c in "/+#\x00"):
        raise ValueError(f"ingest id {ingest_id!r}: expected a non-empty name without '/', '+', '#'")
    return f"{readings_topic}/{ingest_id}"


# --- the ingest side ----------------------------------------------------------------------------


@dataclass
class PublisherStats:
    """Counters of a `ReadingsPublisher`, written by the caller's thread and paho's."""

    messages: int = 0
    readings: int = 0
    pubacks: int = 0
    refused: int = 0
    """PUBACKs with a failure reason code: the message is published again after a backoff."""


@dataclass(eq=False)
class _Group:
    """The messages of one chunk; `done` (its uplinks' acks) runs after the last PUBACK."""

    remaining: int
    done: Done


@dataclass(kw_only=True)
class ReadingsPublisher:
    """Publishes each stored chunk's readings at QoS 1 and runs the chunk's acks on the broker's PUBACK.

    Thread-safe: `publish` may be called from the event loop while paho's network thread
    receives PUBACKs (and runs `done` there). A message still unacknowledged when the
    connection drops is sent again by paho after reconnecting (the leader skips a reading it
    has seen); a PUBACK with a failure code (not authorised, quota) is logged, counted and
    the message published again after a capped backoff, its uplinks' acks still held.
    """

    host: str
    port: int
    client_id: str
    topic: str
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None
    keepalive: int = 30
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    max_inflight: int = 100
    max_readings: int = MAX_READINGS_PER_MESSAGE
    stats: PublisherStats = field(default_factory=PublisherStats, init=False)
    _client: paho.Client = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _pending: dict[int, tuple[_Group, bytes, int]] = field(default_factory=dict, init=False, repr=False)
    _early: dict[int, ReasonCode] = field(default_factory=dict, init=False, repr=False)
    _connected: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _idle: threading.Condition = field(init=False, repr=False)

    @classmethod
    def from_config(cls, cfg: Any, ingest_id: str) -> ReadingsPublisher:
        """The publisher of ingest process `ingest_id`: `[mqtt]` broker, client id `<client_id>-<ingest id>-bus`,
        topic `<readings_topic>/<ingest id>`."""
        mc = cfg.mqtt
        return cls(host=mc.host, port=mc.port, client_id=f"{mc.client_id}-{ingest_id}-bus",
                   topic=readings_topic_of(cfg.cluster.readings_topic, ingest_id), username=mc.username or None,
                   password=reveal(mc.password) or None, tls=cfg.mqtt_tls(), keepalive=mc.keepalive_s,
                   reconnect_min_s=mc.reconnect_min_s, reconnect_max_s=mc.reconnect_max_s)

    def __post_init__(self) -> None:
        if self.max_readings < 1:
            raise ValueError("max_readings must be >= 1")
        self._idle = threading.Condition(self._lock)
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=paho.MQTTv5)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls is not None:
            client.tls_set_context(self.tls)
        client.max_inflight_messages_set(self.max_inflight)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(self.reconnect_min_s, self.reconnect_max_s)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def unacknowledged(self) -> int:
        """Messages published and not yet acknowledged by the broker."""
        with self._lock:
            return len(self._pending)

    def start(self) -> None:
        """Connect in the background (clean start: nothing of ours needs to outlive the connection)."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        self._client.connect_async(self.host, self.port, keepalive=self.keepalive, clean_start=True,
                                   properties=props)
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def publish(self, readings: list[Reading], done: Done) -> None:
        """Publish `readings` (split every `max_readings`); `done` runs once the broker has them all.
        No readings: `done` runs now."""
        if not readings:
            done()
            return
        parts = [readings[i:i + self.max_readings] for i in range(0, len(readings), self.max_readings)]
        group = _Group(len(parts), done)
        for part in parts:
            self._send(group, encode_readings(part), len(part))

    def _send(self, group: _Group, body: bytes, count: int) -> None:
        info = self._client.publish(self.topic, body, qos=1)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):  # NO_CONN: queued, sent on reconnect
            raise RuntimeError(f"readings bus: publish to {self.topic} failed: {paho.error_string(info.rc)}")
        self.stats.messages += 1
        self.stats.readings += count
        with self._lock:
            reason = self._early.pop(info.mid, None)
            if reason is None:
                self._pending[info.mid] = (group, body, count)
                return
        self._settled(group, body, count, reason)

    def _on_publish(self, client: paho.Client, userdata: object, mid: int, reason: ReasonCode,
                    properties: Properties) -> None:
        with self._lock:
            entry = self._pending.pop(mid, None)
            if entry is None:  # PUBACK before `_send` recorded the mid
                self._early[mid] = reason
                return
            if not self._pending:
                self._idle.notify_all()
        self._settled(*entry, reason)

    def _settled(self, group: _Group, body: bytes, count: int, reason: ReasonCode) -> None:
        if reason.is_failure:
            self.stats.refused += 1
            self.stats.messages -= 1
            self.stats.readings -= count
            delay = backoff_s(self.stats.refused, 0.5, 30.0)
            logger.error("readings bus: broker refused a message on {} ({}); publishing it again in {:.1f} s "
                         "(its uplinks stay unacknowledged)", self.topic, reason, delay)
            timer = threading.Timer(delay, self._send, (group, body, count))
            timer.daemon = True
            timer.start()
            return
        self.stats.pubacks += 1
        group.remaining -= 1
        if group.remaining == 0:
            group.done()

    def stop(self, timeout: float = 10.0) -> None:
        """Wait up to `timeout` s for outstanding PUBACKs, then disconnect."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending and (left := deadline - time.monotonic()) > 0:
                self._idle.wait(left)
            if self._pending:
                logger.warning("readings bus: {} messages not acknowledged by the broker at stop; their "
                               "uplinks are delivered again", len(self._pending))
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def _on_connect(self, client: paho.Client, userdata: object, flags: paho.ConnectFlags, reason: ReasonCode,
                    properties: Properties | None) -> None:
        if reason.is_failure:
            logger.error("readings bus: {}:{} refused client {}: {}", self.host, self.port, self.client_id, reason)
            return
        logger.info("readings bus: publishing to {} as {}", self.topic, self.client_id)
        self._connected.set()

    def _on_disconnect(self, client: paho.Client, userdata: object, flags: paho.DisconnectFlags,
                       reason: ReasonCode, properties: Properties | None) -> None:
        self._connected.clear()


# --- the leader side ------------------------------------------------------------------------------


@dataclass
class ConsumerStats:
    """Counters of a `ReadingsConsumer` (event-loop thread), exported by `BusMetrics`."""

    messages: int = 0
    readings: int = 0
    malformed: int = 0
    late: int = 0
    duplicates: int = 0
    callback_failures: int = 0
    held: int = 0


class DeviceOrder:
    """Per device, the newest reading time handed to the rules; puts a released batch in order.

    `arrange` sorts by reading time, skips a reading at exactly its device's newest time (a
    redelivery, or a reading the warm-up already replayed) and marks one up to `late_bound_s`
    before it `history`: the rules put it in their windows only if it still fits, never restart
    a window for it, and raise nothing fresh for old data (rules/engine.py) — one worker lagging
    another (a backlog drained by two) must not look like the device's clock going back. A
    reading further back than that is passed on as it is, so that a device whose clock really
    jumped back is handled as in one process (its windows restart) instead of being ignored.
    """

    def __init__(self, late_bound_s: float = 3600.0) -> None:
        self.newest: dict[str, int] = {}
        self.late_bound_ns = int(late_bound_s * 1e9)
        self.jumped_back = 0
        """Readings passed on unchanged although older than their device's newest by more than the bound."""

    def seen(self, device_id: str, time_ns: int) -> None:
        """Record a reading the rules already have (e.g. replayed by the warm-up)."""
        if time_ns > self.newest.get(device_id, -1 << 63):
            self.newest[device_id] = time_ns

    def arrange(self, readings: list[Reading]) -> tuple[list[Reading], int, int]:
        """(readings in time order without duplicates, how many were late, how many were duplicates)."""
        readings.sort(key=_time_of)
        out: list[Reading] = []
        late = duplicates = 0
        newest = self.newest
        for r in readings:
            last = newest.get(r.device_id)
            if last is None or r.time_ns > last:
                newest[r.device_id] = r.time_ns
            elif r.time_ns == last:
                duplicates += 1
                continue
            elif last - r.time_ns <= self.late_bound_ns:
                late += 1
                r.history = True
            else:
                self.jumped_back += 1
                newest[r.device_id] = r.time_ns
            out.append(r)
        return out, late, duplicates


def _time_of(r: Reading) -> int:
    return r.time_ns


OnReadings = Callable[[list[Reading]], Awaitable[None]]


@dataclass(slots=True)
class _Held:
    msg: MqttDelivery
    due: float
    readings: list[Reading]


@dataclass(kw_only=True)
class ReadingsConsumer:
    """The leader's reader of `<readings_topic>/#`: a persistent MQTT 5 session, QoS 1, acks after the rules.

    `run(stopping)` connects (client id `client_id`, clean_start=False, session expiry
    `session_expiry_s`), and until `stopping` is set hands every due batch of readings to
    `on_readings` (an async callback), then acknowledges the messages they came in. A
    malformed message is counted, dead-lettered through `on_malformed` (reason
    `bus_malformed`) and acknowledged: it never stalls the stream. A callback that raises is
    retried with backoff (`max_attempts` in all); then `run` raises `BusCallbackError` with
    nothing of that batch acknowledged (the broker keeps it for the next leader). So the callback
    must contain a failure of one reading itself (as the pipeline does); what it lets escape
    means it cannot work now (its database is gone), and leadership should go elsewhere.
    At stop, what is held is released first; what the callback has not taken stays with the
    broker for the next leader.
    """

    host: str
    port: int
    client_id: str
    readings_topic: str
    on_readings: OnReadings
    on_malformed: Callable[[DeadLetter], None] | None = None
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None
    session_expiry_s: int = 7 * 24 * 3600
    receive_maximum: int = 1000
    keepalive: int = 30
    reorder_s: float = 0.5
    max_attempts: int = 5
    retry_initial_s: float = 0.5
    order: DeviceOrder = field(default_factory=DeviceOrder)
    stats: ConsumerStats = field(default_factory=ConsumerStats, init=False)
    consumer: MqttConsumer | None = field(default=None, init=False, repr=False)
    _stopping: asyncio.Event | None = field(default=None, init=False, repr=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_config(cls, cfg: Any, on_readings: OnReadings, *,
                    on_malformed: Callable[[DeadLetter], None] | None = None) -> ReadingsConsumer:
        """The leader's consumer from `[mqtt]` (broker, credentials, TLS) and `[cluster]` (topic, client id)."""
        mc, cl = cfg.mqtt, cfg.cluster
        return cls(host=mc.host, port=mc.port, client_id=cl.leader_client_id, readings_topic=cl.readings_topic,
                   on_readings=on_readings, on_malformed=on_malformed, username=mc.username or None,
                   password=reveal(mc.password) or None, tls=cfg.mqtt_tls(),
                   session_expiry_s=max(mc.session_expiry_s, 1), keepalive=mc.keepalive_s)

    def ready(self) -> tuple[bool, str]:
        """(connected and subscribed?, why) for /readyz while leading."""
        if self.connected:
            return True, "readings bus connected"
        return False, "readings bus: MQTT broker not connected"

    async def start(self) -> asyncio.Task[None]:
        """`run` in a task of its own (returned, for a supervisor); `stop()` ends it."""
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self.run(self._stopping), name="readings-bus")
        return self._task

    async def stop(self) -> None:
        """Release what is held, disconnect (the session stays for the next leader); re-raises a failure."""
        if self._stopping is None or self._task is None:
            return
        self._stopping.set()
        await self._task

    @property
    def connected(self) -> bool:
        return self.consumer is not None and self.consumer.connected

    async def run(self, stopping: asyncio.Event) -> None:
        """Consume until `stopping` is set; the broker keeps the session (and anything unacknowledged)."""
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[MqttDelivery] = asyncio.Queue()

        def on_message(msg: MqttDelivery) -> None:  # paho's network thread
            loop.call_soon_threadsafe(inbox.put_nowait, msg)

        self.consumer = consumer = MqttConsumer(
            host=self.host, port=self.port, client_id=self.client_id, topics=[f"{self.readings_topic}/#"],
            on_message=on_message, username=self.username, password=self.password, tls=self.tls,
            receive_maximum=self.receive_maximum, session_expiry_s=self.session_expiry_s, keepalive=self.keepalive)
        consumer.start()
        held: list[_Held] = []
        stop_wait = asyncio.ensure_future(stopping.wait())
        try:
            while not stopping.is_set():
                timeout = max(0.0, held[0].due - time.monotonic()) if held else None
                get = asyncio.ensure_future(inbox.get())
                done, _ = await asyncio.wait({get, stop_wait}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if get in done:
                    self._take(get.result(), held)
                    while not inbox.empty():
                        self._take(inbox.get_nowait(), held)
                else:
                    get.cancel()  # single-threaded: it cannot have completed since `wait` returned
                now = time.monotonic()
                due = [h for h in held if h.due <= now]
                if due:
                    del held[:len(due)]
                    await self._release(due, consumer)
                self.stats.held = len(held)
            if held:
                await self._release(held, consumer)
        finally:
            stop_wait.cancel()
            await asyncio.to_thread(consumer.stop)
            self.stats.held = 0

    def _take(self, msg: MqttDelivery, held: list[_Held]) -> None:
        self.stats.messages += 1
        try:
            readings = decode_readings(msg.payload)
        except BusFormatError as exc:
            self.stats.malformed += 1
            logger.warning("readings bus: malformed message on {} dead-lettered: {}", msg.topic, exc)
            self._dead_letter(msg, "bus_malformed", str(exc))
            readings = []  # held like the others, so that acknowledgements keep arrival order
        held.append(_Held(msg, time.monotonic() + self.reorder_s, readings))

    def _dead_letter(self, msg: MqttDelivery, reason: str, detail: str) -> None:
        if self.on_malformed is None:
            return
        try:
            self.on_malformed(DeadLetter(time_ns=msg.received_ns, source="bus", topic=msg.topic,
                                         payload=msg.payload, reason=reason, detail=detail))
        except Exception:  # the dead-letter store failing must not stop the rules either
            logger.exception("readings bus: could not dead-letter a message from {}", msg.topic)

    async def _release(self, batch: list[_Held], consumer: MqttConsumer) -> None:
        readings = [r for h in batch for r in h.readings]
        ordered, late, duplicates = self.order.arrange(readings)
        self.stats.late += late
        self.stats.duplicates += duplicates
        for attempt in range(1, self.max_attempts + 1):
            try:
                if ordered:
                    await self.on_readings(ordered)
                break
            except Exception as exc:  # retried; then the consumer stops, nothing acknowledged
                self.stats.callback_failures += 1
                if attempt == self.max_attempts:
                    raise BusCallbackError(f"the rules failed {attempt} times on {len(ordered)} readings from "
                                           f"{len(batch)} messages; they stay at the broker") from exc
                delay = backoff_s(attempt, self.retry_initial_s, 10.0)
                logger.opt(exception=exc).warning("readings bus: the rules failed on {} readings; retrying in "
                                                  "{:.1f} s", len(ordered), delay)
                await asyncio.sleep(delay)
        self.stats.readings += len(ordered)
        for h in batch:
            consumer.ack(h.msg)


class BusMetrics:
    """prometheus_client custom collector over a `ReadingsConsumer` and/or a `ReadingsPublisher`.

    `consumer` may be a function giving the current one (a leader has one per term, None between terms)."""

    def __init__(self, consumer: ReadingsConsumer | Callable[[], ReadingsConsumer | None] | None = None,
                 publisher: ReadingsPublisher | None = None) -> None:
        self.consumer = consumer
        self.publisher = publisher

    def collect(self) -> Iterator[Metric]:
        if self.publisher is not None:
            p = self.publisher.stats
            for name, value, doc in (("published_messages", p.messages, "readings messages published"),
                                     ("published_readings", p.readings, "readings published to the leader"),
                                     ("pubacks", p.pubacks, "readings messages the broker acknowledged"),
                                     ("refused", p.refused, "readings messages the broker refused (resent)")):
                yield CounterMetricFamily(f"urbansense_bus_{name}", doc, value=value)
            yield GaugeMetricFamily("urbansense_bus_unacknowledged", "readings messages awaiting the broker's PUBACK",
                                    value=self.publisher.unacknowledged)
        consumer = self.consumer() if callable(self.consumer) else self.consumer
        if consumer is not None:
            c = consumer.stats
            for name, value, doc in (("messages", c.messages, "readings messages received by the leader"),
                                     ("readings", c.readings, "readings handed to the rules"),
                                     ("malformed", c.malformed, "malformed readings messages (dead-lettered)"),
                                     ("late_readings", c.late, "readings older than their device's newest: history"),
                                     ("duplicate_readings", c.duplicates, "readings the rules already had"),
                                     ("clock_jumps", consumer.order.jumped_back,
                                      "readings far older than their device's newest, passed on as live"),
                                     ("callback_failures", c.callback_failures, "failed hand-offs to the rules")):
                yield CounterMetricFamily(f"urbansense_bus_{name}", doc, value=value)
            yield GaugeMetricFamily("urbansense_bus_held", "readings messages held for reordering", value=c.held)
