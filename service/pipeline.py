"""The pipeline: incoming messages → registry lookup → decode → derive → Reading → storage.

Every message ends either as a reading handed to the `BatchWriter` or as a row in
the dead-letter store, and its acknowledgement is released only after that hand-off
is durable, in the order the messages arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from loguru import logger

from collectors.plugin import Parser
from core.device import Device
from core.reading import Reading
from core.rejected import Rejected
from core.uplink import Incoming
from decoders import decode_uplink
from decoders.quality import Judge
from provisioning.view import RegistryView
from service.inbox import Inbox
from service.metrics import Metrics
from storage.deadletter import DeadLetter, DeadLetterStore
from storage.lineprotocol import encode_reading
from storage.writer import BatchWriter


@dataclass
class PipelineStats:
    """Live figures for the demo's table and the tests."""

    received: int = 0
    readings: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    latest: dict[str, tuple[str, dict]] = field(default_factory=dict)
    newest_ns: int = 0          # the newest reading time of the last chunk with readings
    newest_at: float = 0.0      # when (monotonic) that chunk was processed

    def catching_up(self, now_ns: int, now_mono: float, lag_s: float = 60.0, recent_s: float = 10.0) -> bool:
        """True while recent chunks carry only old readings: a backlog being replayed, not live data."""
        return now_mono - self.newest_at < recent_s and now_ns - self.newest_ns > lag_s * 1e9


class Pipeline:
    def __init__(self, *, view: RegistryView, writer: BatchWriter, deadletters: DeadLetterStore,
                 metrics: Metrics, parsers: Mapping[str, Parser], chunk_size: int = 1000,
                 log_every_s: float = 60.0, judge: Judge | None = None) -> None:
        self.view = view
        self.writer = writer
        self.deadletters = deadletters
        self.metrics = metrics
        self.parsers = parsers
        self.chunk_size = chunk_size
        self.log_every_s = log_every_s
        self.stats = PipelineStats()
        self.judge = judge
        self.on_reading: list[Callable[[Reading], bytes]] = []
        self.on_chunk_end: list[Callable[[], None]] = []
        self._last_fcnt: dict[str, tuple[int, int]] = {}
        self._tags: dict[str, tuple[Device, tuple[tuple[str, str], ...]]] = {}
        self._logged: dict[tuple[str, str], float] = {}

    def _tags_of(self, device: Device) -> tuple[tuple[str, str], ...]:
        cached = self._tags.get(device.id)
        if cached is None or cached[0] is not device:
            cached = (device, device.tags())
            self._tags[device.id] = cached
        return cached[1]

    def _fcnt_gap(self, device_id: str, fcnt: int) -> int:
        last = self._last_fcnt.get(device_id)
        if last is None:
            gap = 0
        elif fcnt == last[0]:
            return last[1]
        else:
            gap = max(0, fcnt - last[0] - 1)
        self._last_fcnt[device_id] = (fcnt, gap)
        return gap

    def to_reading(self, msg: Incoming) -> Reading:
        """One message to one reading; raises `Rejected` with the reason it cannot be stored."""
        if msg.rejected is not None:
            raise msg.rejected
        up = msg.uplink
        if up is None:
            parse = self.parsers.get(msg.source)
            if parse is None:
                raise Rejected("unknown_source", f"no envelope parser for source {msg.source!r}")
            up = parse(msg.topic, msg.payload, msg.received_ns)  # raises EnvelopeError, a Rejected
        device = self.view.by_key.get(up.device_key)
        if device is None and up.alt_keys:
            device = next((d for k in up.alt_keys if (d := self.view.by_key.get(k)) is not None), None)
        if device is None:
            raise Rejected("unknown_device", f"no registered device has key {up.device_key}", up.device_key)
        if device.status == "retired":
            raise Rejected("retired_device", f"device {device.id} is retired", up.device_key)
        decoded = decode_uplink(device, up, self._tags_of(device))
        if decoded.warnings:
            self.metrics.decode_warnings.labels(device.model).inc(len(decoded.warnings))
            self._log_once(device.id, "warning", "; ".join(decoded.warnings), level="INFO")
        reading = decoded.reading
        if self.judge is not None and decoded.model is not None:  # data quality: flags, never drops
            self.judge.judge(device.id, device.kind, decoded.model, reading.time_ns, reading.fields,  # type: ignore[arg-type]
                             decoded.raw or {}, device.install, device.expected_interval_s)
        if up.fcnt is not None:
            reading.health["fcnt_gap"] = self._fcnt_gap(device.id, up.fcnt)
        return reading

    def _log_once(self, device: str, reason: str, detail: str, level: str = "WARNING") -> None:
        now = time.monotonic()
        key = (device, reason)
        if now - self._logged.get(key, -1e18) >= self.log_every_s:
            self._logged[key] = now
            logger.log(level, "{} {}: {}", device, reason, detail)

    def process_chunk(self, chunk: Iterable[Incoming]) -> tuple[bytes, list[Reading], list[DeadLetter],
                                                                  list[Callable[[], None]]]:
        """Pure CPU work for a chunk: line protocol for the good ones, dead letters for the rest."""
        lines: list[bytes] = []
        readings: list[Reading] = []
        dead: list[DeadLetter] = []
        acks: list[Callable[[], None]] = []
        sources: dict[str, int] = {}
        for msg in chunk:
            sources[msg.source] = sources.get(msg.source, 0) + 1
            if msg.ack is not None:
                acks.append(msg.ack)
            try:
                reading = self.to_reading(msg)
                lines.append(encode_reading(reading))
            except Rejected as exc:
                self.metrics.rejected.labels(exc.reason).inc()
                self.stats.rejected[exc.reason] = self.stats.rejected.get(exc.reason, 0) + 1
                self._log_once(exc.device_key or msg.topic, exc.reason, exc.detail)
                dead.append(DeadLetter(time_ns=msg.received_ns or time.time_ns(), source=msg.source,
                                       topic=msg.topic, payload=msg.payload, reason=exc.reason,
                                       detail=exc.detail, device_key=exc.device_key))
                continue
            readings.append(reading)
        for source, n in sources.items():
            self.metrics.uplinks_received.labels(source).inc(n)
        return b"".join(lines), readings, dead, acks

    async def handle(self, chunk: list[Incoming]) -> None:
        """Process one chunk and hand it off; its acks run once its lines are written."""
        body, readings, dead, acks = self.process_chunk(chunk)
        self.stats.received += len(chunk)
        if dead:
            await asyncio.to_thread(self.deadletters.add_many, dead)
        kinds: dict[str, int] = {}
        extra: list[bytes] = []
        if readings:
            self.stats.newest_ns = max(r.time_ns for r in readings)
            self.stats.newest_at = time.monotonic()
        for r in readings:
            kinds[r.kind] = kinds.get(r.kind, 0) + 1
            self.stats.latest[r.kind] = (r.device_id, r.fields)
            for hook in self.on_reading:
                lines = hook(r)
                if lines:
                    extra.append(lines)
        for end in self.on_chunk_end:
            end()
        if extra:
            body = body + b"".join(extra)

        def done() -> None:
            for ack in acks:
                ack()
            for kind, n in kinds.items():
                self.metrics.readings_written.labels(kind).inc(n)
            self.stats.readings += len(readings)

        await self.writer.add(body, done)

    async def run(self, inbox: Inbox[Incoming], stop: asyncio.Event) -> None:
        """Consume until `stop` is set and the inbox is empty."""
        while not (stop.is_set() and len(inbox) == 0):
            chunk = await inbox.get_chunk(self.chunk_size, timeout=0.1)
            self.metrics.queue_depth.set(len(inbox))
            if chunk:
                await self.handle(chunk)
