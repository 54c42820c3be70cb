"""The `Uplink`: what every collector hands to the pipeline, whatever the transport."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.rejected import Rejected
from core.timepolicy import TimeCandidate


@dataclass(slots=True, frozen=True)
class Uplink:
    """One message from one device, normalised; knows nothing of device models.

    `device_key` is a LoRaWAN DevEUI (16 lowercase hex digits), an NB-IoT IMEI
    (15 digits), a OneNET `onenet:<dev_id>` or a Modbus `host:port/unit`. `time_ns` is the uplink's own time
    (network server or gateway time, else receive time) in ns since the epoch:
    it becomes the point's time, so a redelivered uplink overwrites itself.
    `decoded` is the object the network server or platform already decoded (ChirpStack
    `object`, TTS `decoded_payload`, CTWing profile JSON, OneNET datastreams), None when
    it sent only bytes; `alt_keys` are other keys the same message names the device by
    (a OneNET `dev_id` beside its IMEI). `times` lists every time the
    envelope offered, best first; the pipeline applies the configured `core.timepolicy` to
    them (and to `received_ns` when none is trusted), so `time_ns` is only the envelope's own
    pick for callers outside the pipeline.
    """

    device_key: str
    payload: bytes
    port: int
    time_ns: int
    source: str
    received_ns: int = 0
    fcnt: int | None = None
    rssi_dbm: float | None = None
    snr_db: float | None = None
    gateway_ids: tuple[str, ...] = field(default=())
    dedup_id: str | None = None
    reachable: bool | None = None
    """Set (with an empty payload) by a polling collector when a device stops or starts answering:
    the uplink then becomes a `device_health` point `reachable = false / true`, nothing is decoded."""
    decoded: Mapping[str, Any] | None = None
    alt_keys: tuple[str, ...] = ()
    times: tuple[TimeCandidate, ...] = field(default=(), compare=False)


class EnvelopeError(Rejected):
    """A transport message that cannot become an `Uplink` (bad JSON, bad base64, missing key).

    `reason` is a short stable label used for metrics and the dead-letter store.
    """


@dataclass(slots=True)
class Incoming:
    """One message as a collector received it, on its way to the pipeline.

    A collector that parses its own frames sets `uplink`, or `rejected` (with the reason) for
    a message it could not parse: the pipeline dead-letters `payload` under that reason and
    never parses it again. A collector that leaves parsing to the pipeline (LoRaWAN, whose
    envelopes are parsed in chunks off the network thread) sets neither, and `source` names
    the envelope parser it registered. `ack` is called once the message is durably handed
    off (its reading written, or the message dead-lettered), in arrival order.
    """

    source: str
    topic: str
    payload: bytes
    received_ns: int
    ack: Callable[[], None] | None = None
    uplink: Uplink | None = None
    rejected: Rejected | None = None


@dataclass(slots=True, frozen=True)
class Sink:
    """How a collector hands messages to the pipeline; both wait while the pipeline is full.

    `put` is for collector threads (blocks the thread: backpressure); `put_async` for
    collectors running in the service's event loop.
    """

    put: Callable[[Incoming], bool]
    put_async: Callable[[Incoming], Awaitable[bool]]
