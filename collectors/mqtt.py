"""An MQTT 5 consumer that acknowledges a message only when the caller says its reading is safe.

QoS 1 subscriptions on a persistent session (fixed client id, `clean_start=False`, a Session
Expiry Interval): whatever is not acknowledged when the connection drops, or the process
dies, is delivered again. Receive Maximum bounds how many unacknowledged messages the
broker sends at once, which is the flow control: the pipeline's queue can never hold more.

Threads: paho's network thread runs `on_message`; `ack` may be called from any thread.
`ack` only appends to paho's outgoing deque and wakes the network thread through its socket
pair (the same path as `publish`, which paho supports from any thread). An ack that belongs
to an earlier connection is dropped, since packet ids restart per connection and the broker
redelivers that message anyway.

A blocking `on_message` stops the network thread: no acks go out and no PINGREQ either. The
broker disconnects a client it has heard nothing from for 1.5 × keepalive, so `on_message`
must return well within `keepalive` seconds. Prefer a Receive Maximum no larger than the
pipeline's queue, so that `on_message` never has to block at all.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as paho
from loguru import logger
from paho.mqtt import _packet
from paho.mqtt.client import PUBACK
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from core.tls import handshake_problem

_FAST = threading.local()
"""`_FAST.on` is true while a `_ConsumerClient` decodes a PUBLISH, in that client's network thread only."""


class _PublishProperties(Properties):
    """paho's `Properties`, but a PUBLISH one decoded for a `_ConsumerClient` copies its lookup tables
    from a template instead of rebuilding them.

    paho 2.x decodes every MQTT 5 PUBLISH into a new `Properties`, whose constructor builds
    three tables (~30 dict/list entries) and whose `unpack` first deletes every possible
    attribute: ~9 µs per message, the largest cost of the network thread on a backlog.
    The tables are never modified, so sharing them is safe; a PUBLISH without properties
    (what Mosquitto sends for a plain publish) skips `unpack` entirely. Any other client in
    the process (device watch, the simulators) gets stock paho behaviour.
    """

    _template: dict | None = None

    def __init__(self, packetType: int) -> None:
        if packetType != PacketTypes.PUBLISH or not getattr(_FAST, "on", False):
            super().__init__(packetType)
            return
        template = _PublishProperties._template
        if template is None:
            super().__init__(packetType)
            _PublishProperties._template = template = dict(self.__dict__)
        self.__dict__.update(template)

    def unpack(self, buffer: bytes | bytearray) -> tuple[Properties, int]:
        if buffer[:1] == b"\x00" and self.packetType == PacketTypes.PUBLISH:
            return self, 1
        return super().unpack(buffer)


READ_SIZE = 256 * 1024
"""Bytes asked of the socket per read: a backlog's packets are taken many at a time."""
TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class _ConsumerClient(paho.Client):
    """The consumer's own paho client, shaped for latency under load (same protocol, same callbacks).

    - PUBLISH packets are decoded with `_PublishProperties`: paho ≥ 2.2 decodes a PUBLISH in
      `_packet.decode_publish`, which looks `Properties` up in its module at call time; the lookup
      is pointed at `_PublishProperties` (stock behaviour unless `_FAST.on`), and only this
      client's `_handle_publish` turns the fast path on.
    - Reads are buffered: paho reads each packet in three or more `recv` calls (its type byte, its
      length byte by byte, the rest), and each call lets go of the GIL and must take it back, which
      waits for the switch interval while the event loop computes. One `recv` of up to `READ_SIZE`
      serves every packet it holds; `loop_read` goes on while the buffer holds bytes (select cannot see them).
    - Every read from the socket is followed by TCP_QUICKACK, so the kernel acknowledges the broker's
      data at once. Without it the connection falls into delayed-ACK mode (the service answers the
      broker's data, with PUBACKs, within the 40 ms delayed-ACK time), and a broker with Nagle's
      algorithm on (Mosquitto's default, `set_tcp_nodelay false`) holds each small PUBLISH until the
      previous one is acknowledged: up to 40 ms more for a flood reading. TCP_NODELAY: our PUBACKs
      are not held either.
    - Acknowledgements wake the network thread once per burst, not once each, and a run of PUBACKs
      waiting to be sent goes out in one `send`: a chunk's 200 acks cost a few system calls, not 400.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._rsock: object = None
        self._rbuf = b""
        self._rpos = 0
        self._quickack = TCP_QUICKACK is not None
        self._write_wake = False
        self.socket_reads = 0
        """`recv` calls on the broker's socket (for the tests and the curious)."""

    def _handle_publish(self) -> paho.MQTTErrorCode:
        _FAST.on = True
        try:
            return super()._handle_publish()
        finally:
            _FAST.on = False

    def _sock_recv(self, bufsize: int) -> bytes:
        sock = self._sock
        if sock is not self._rsock:  # a new connection: nothing buffered belongs to it
            self._rbuf, self._rpos, self._rsock = b"", 0, sock
            self._tune(sock)
        if self._rpos >= len(self._rbuf):
            data = super()._sock_recv(max(bufsize, READ_SIZE))
            self.socket_reads += 1
            if self._quickack:
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)  # type: ignore[union-attr]
                except (AttributeError, OSError):  # a websocket or unix transport
                    self._quickack = False
            if not data:
                return data  # the broker closed the connection
            self._rbuf, self._rpos = data, 0
        end = self._rpos + bufsize
        out = self._rbuf[self._rpos:end]
        self._rpos = min(end, len(self._rbuf))
        return out

    def _tune(self, sock: object) -> None:
        with contextlib.suppress(AttributeError, OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[attr-defined]

    def loop_read(self, max_packets: int = 1) -> paho.MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while (rc == paho.MQTTErrorCode.MQTT_ERR_SUCCESS and self._sock is not None
               and self._sock is self._rsock and self._rpos < len(self._rbuf)):
            rc = super().loop_read(max_packets)
        return rc

    def _packet_queue(self, command: int, packet: bytes | bytearray, mid: int, qos: int,
                      info: paho.MQTTMessageInfo | None = None) -> paho.MQTTErrorCode:
        wake = self._sockpairW
        if command != PUBACK or self._thread is None or wake is None:
            return super()._packet_queue(command, packet, mid, qos, info)
        self._out_packet.append({"command": command, "mid": mid, "qos": qos, "pos": 0,
                                 "to_process": len(packet), "packet": packet, "info": info})
        if not self._write_wake:  # cleared by the network thread before it writes what is queued
            self._write_wake = True
            with contextlib.suppress(BlockingIOError):
                wake.send(b"0")
        return paho.MQTTErrorCode.MQTT_ERR_SUCCESS

    def loop_write(self) -> paho.MQTTErrorCode:
        self._write_wake = False
        return super().loop_write()

    def _packet_write(self) -> paho.MQTTErrorCode:
        out = self._out_packet
        while out and out[0]["command"] == PUBACK:
            # other threads only append: the run of PUBACKs at the head is this thread's to join and send
            run = [out.popleft()]
            while out and out[0]["command"] == PUBACK and len(run) < 4096:
                run.append(out.popleft())
            head = run[0]
            if len(run) > 1:
                packet = bytes(head["packet"][head["pos"]:]) + b"".join(bytes(p["packet"]) for p in run[1:])
                head = {"command": PUBACK, "mid": run[-1]["mid"], "qos": 1, "pos": 0,
                        "to_process": len(packet), "packet": packet, "info": None}
            try:
                sent = self._sock_send(head["packet"][head["pos"]:])
            except (AttributeError, ValueError):
                out.appendleft(head)
                return paho.MQTTErrorCode.MQTT_ERR_SUCCESS
            except BlockingIOError:
                out.appendleft(head)
                return paho.MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError:
                out.appendleft(head)
                return paho.MQTTErrorCode.MQTT_ERR_CONN_LOST
            head["to_process"] -= sent
            head["pos"] += sent
            if head["to_process"] > 0:  # the socket is full: the rest when select says it is writable
                out.appendleft(head)
                return paho.MQTTErrorCode.MQTT_ERR_AGAIN
        return super()._packet_write()


def _use_publish_properties() -> None:
    if getattr(_packet, "Properties", None) is Properties:
        _packet.Properties = _PublishProperties  # type: ignore[misc]


def shared_filter(group: str, topic_filter: str) -> str:
    """The MQTT 5 shared subscription `$share/<group>/<filter>`: the broker hands each message to one member
    of the group (Mosquitto 2, EMQX, HiveMQ, VerneMQ). A `ValueError` for a group that is not one topic level."""
    if not group or any(c in group for c in "/+#\x00"):
        raise ValueError(f"share group {group!r}: expected a non-empty name without '/', '+', '#'")
    return f"$share/{group}/{topic_filter}"


@dataclass(slots=True)
class MqttDelivery:
    """One received message, with what `MqttConsumer.ack` needs to acknowledge it."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    received_ns: int
    dup: bool = False
    connection: int = 0


@dataclass(slots=True)
class ConsumerStats:
    """Counters for metrics; written by the network thread (and `ack`), read by anyone."""

    received: int = 0
    acked: int = 0
    stale_acks: int = 0
    connects: int = 0
    reconnects: int = 0
    connect_failures: int = 0
    callback_errors: int = 0


@dataclass(kw_only=True)
class MqttConsumer:
    """Subscribe to `topics` at QoS 1 on a persistent MQTT 5 session; hand each message to `on_message`.

    `start()` returns at once; the connection, reconnection (capped exponential backoff) and
    re-subscription on every connect happen in paho's network thread.
    """

    host: str
    port: int
    client_id: str
    topics: list[str]
    on_message: Callable[[MqttDelivery], None]
    username: str | None = None
    password: str | None = None
    receive_maximum: int = 10_000
    session_expiry_s: int = 7 * 24 * 3600
    keepalive: int = 30
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    tls: ssl.SSLContext | None = None
    """TLS to the broker (see `core.tls.client_context`); None = plain TCP."""
    retiring: bool = False
    """Drain and end this session (a cluster's ingest process leaving for good): on connect the topics are
    unsubscribed, so that a shared subscription deals this member nothing new, what the session holds is
    still delivered, and `stop()` ends the session at the broker (DISCONNECT with Session Expiry 0)."""
    stats: ConsumerStats = field(default_factory=ConsumerStats, init=False)
    _client: paho.Client = field(init=False, repr=False)
    _ack_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _ready: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _connection: int = field(default=0, init=False, repr=False)
    _connected: bool = field(default=False, init=False, repr=False)
    _stopping: bool = field(default=False, init=False, repr=False)
    _subscribe_mid: int | None = field(default=None, init=False, repr=False)
    _tls_problem: str | None = field(default=None, init=False, repr=False)
    _last_message: float = field(default_factory=time.monotonic, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.topics:
            raise ValueError("MqttConsumer needs at least one topic filter")
        if not 1 <= self.receive_maximum <= 65_535:
            raise ValueError(f"receive_maximum must be 1..65535, not {self.receive_maximum}")
        if not self.client_id:
            raise ValueError("a persistent session needs a fixed, non-empty client_id")
        _use_publish_properties()
        client = _ConsumerClient(paho.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                 protocol=paho.MQTTv5, manual_ack=True)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        client.reconnect_delay_set(self.reconnect_min_s, self.reconnect_max_s)  # type: ignore[arg-type]
        if self.tls is not None:
            client.tls_set_context(self.tls)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client

    @property
    def connected(self) -> bool:
        """Connected and subscribed."""
        return self._ready.is_set()

    def start(self) -> None:
        """Connect in the background and keep connected until `stop()`; returns at once."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        self._stopping = False
        self._last_message = time.monotonic()
        self._client.connect_async(self.host, self.port, keepalive=self.keepalive, clean_start=False,
                                   properties=props)
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until connected and subscribed; False if that did not happen within `timeout` seconds."""
        return self._ready.wait(timeout)

    def ack(self, msg: MqttDelivery) -> None:
        """Acknowledge `msg` (thread-safe); no-op for QoS 0, dropped if its connection is gone."""
        if msg.qos == 0:
            return
        with self._ack_lock:
            if msg.connection != self._connection or not self._connected:
                self.stats.stale_acks += 1
                return
            self._client.ack(msg.mid, msg.qos)
            self.stats.acked += 1

    @property
    def in_flight(self) -> int:
        """Messages handed on and not yet acknowledged (on this connection)."""
        s = self.stats
        return max(0, s.received - s.acked - s.stale_acks - s.callback_errors)

    @property
    def idle_s(self) -> float:
        """Seconds since the last message arrived (or since `start`)."""
        return time.monotonic() - self._last_message

    def stop(self) -> None:
        """Disconnect cleanly (acks already given are sent first) and keep the broker-side session
        (`retiring`: end it)."""
        self._stopping = True
        if self.retiring and self.in_flight:
            logger.warning("mqtt: {} still has {} unacknowledged message(s): its session is kept, not ended",
                           self.client_id, self.in_flight)
            self._client.disconnect()
        elif self.retiring:
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
            self._client.disconnect(properties=props)
            logger.info("mqtt: session of {} ended at the broker (retired)", self.client_id)
        else:
            self._client.disconnect()
        self._client.loop_stop()
        self._ready.clear()

    # --- paho callbacks, all in the network thread ---------------------------------------

    def _on_pre_connect(self, client: paho.Client, userdata: object) -> None:
        if self.stats.connects or self.stats.connect_failures:
            self.stats.reconnects += 1
            logger.info("mqtt: reconnecting to {}:{} as {} (attempt {})", self.host, self.port,
                        self.client_id, self.stats.reconnects)

    def _on_connect(self, client: paho.Client, userdata: object, flags: paho.ConnectFlags,
                    reason: ReasonCode, properties: Properties) -> None:
        if reason.is_failure:
            logger.error("mqtt: {}:{} refused client {}: {}", self.host, self.port, self.client_id, reason)
            return
        self.stats.connects += 1
        with self._ack_lock:
            self._connected = True
        logger.info("mqtt: connected to {}:{} as {} (session present: {}, receive maximum {})",
                    self.host, self.port, self.client_id, flags.session_present, self.receive_maximum)
        if self.retiring:
            _, self._subscribe_mid = client.unsubscribe(list(self.topics))
            return
        _, self._subscribe_mid = client.subscribe([(t, SubscribeOptions(qos=1)) for t in self.topics])

    def _on_unsubscribe(self, client: paho.Client, userdata: object, mid: int, reason_codes: list[ReasonCode],
                        properties: Properties | None) -> None:
        logger.info("mqtt: retiring {}: unsubscribed from {}; draining what its session holds", self.client_id,
                    ", ".join(self.topics))
        if mid == self._subscribe_mid:
            self._ready.set()

    def _on_connect_fail(self, client: paho.Client, userdata: object) -> None:
        self.stats.connect_failures += 1
        why = handshake_problem(self.host, self.port, self.tls) if self.tls is not None else None
        if why is not None and why != self._tls_problem:
            logger.error("mqtt: TLS to {}:{} failed: {} (check mqtt.ca_file, cert_file, key_file and that the "
                         "certificate names {})", self.host, self.port, why, self.host)
        self._tls_problem = why
        logger.warning("mqtt: cannot connect to {}:{}; retrying with backoff up to {} s",
                       self.host, self.port, self.reconnect_max_s)

    def _on_subscribe(self, client: paho.Client, userdata: object, mid: int,
                      reason_codes: list[ReasonCode], properties: Properties) -> None:
        refused = [(t, rc) for t, rc in zip(self.topics, reason_codes, strict=False) if rc.is_failure]
        if refused:
            logger.error("mqtt: subscriptions refused: {}", ", ".join(f"{t} ({rc})" for t, rc in refused))
            return
        downgraded = [t for t, rc in zip(self.topics, reason_codes, strict=False) if rc.value == 0]
        if downgraded:
            logger.warning("mqtt: broker granted only QoS 0 for {}: messages may be lost", downgraded)
        logger.info("mqtt: subscribed to {}", ", ".join(self.topics))
        if mid == self._subscribe_mid:
            self._ready.set()

    def _on_disconnect(self, client: paho.Client, userdata: object, flags: paho.DisconnectFlags,
                       reason: ReasonCode, properties: Properties | None) -> None:
        with self._ack_lock:
            self._connection += 1
            self._connected = False
        self._ready.clear()
        if self._stopping:
            logger.info("mqtt: disconnected from {}:{} (session kept for {} s)", self.host, self.port,
                        self.session_expiry_s)
        else:
            by = "broker" if flags.is_disconnect_packet_from_server else "connection"
            logger.warning("mqtt: lost {}:{} ({}: {}); reconnecting", self.host, self.port, by, reason)

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = "<topic is not UTF-8>"
        msg = MqttDelivery(topic, message.payload, message.mid, message.qos, time.time_ns(), bool(message.dup),
                      self._connection)
        self.stats.received += 1
        self._last_message = time.monotonic()
        try:
            self.on_message(msg)
        except Exception:
            self.stats.callback_errors += 1
            logger.exception("mqtt: on_message failed for {} (mid {}); left unacknowledged", topic, msg.mid)
