"""The pipeline: incoming messages → registry lookup → decode → derive → Reading → storage.

Every message ends as reading(s) handed to the `BatchWriter`, as a row in the dead-letter
store, or skipped and counted (a duplicate frame, a MAC-only frame); its acknowledgement
is released only after that hand-off is durable, in the order the messages arrived. Nothing
that goes wrong with one message escapes it: an unforeseen exception makes that message an
`internal_error` dead letter and the chunk goes on. Times come from `core.timepolicy`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from loguru import logger

from collectors.plugin import Parser
from core.device import Device
from core.reading import FieldValue, Reading
from core.rejected import Rejected
from core.timepolicy import (
    DEFAULT_POLICY,
    RECEIVED,
    TimeCandidate,
    TimeChoice,
    TimePolicy,
    choose_time,
    from_number,
    spread,
)
from core.uplink import Incoming, Uplink
from decoders import decode_uplink
from decoders.quality import Judge
from provisioning.view import RegistryView
from service.dedup import Deduplicator
from service.faults import FaultHook
from service.inbox import Inbox
from service.metrics import Metrics
from storage.deadletter import DeadLetter, DeadLetterStore
from storage.lineprotocol import encode_reading
from storage.writer import BatchWriter

SKIPPED = frozenset({"duplicate", "mac_only"})
"""Refusals that are not faults: acknowledged and counted, never dead-lettered."""


@dataclass
class PipelineStats:
    """Live figures for the demo's table and the tests."""

    received: int = 0
    readings: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    latest: dict[str, tuple[str, dict]] = field(default_factory=dict)
    newest_ns: int = 0          # the newest reading time of the last chunk with readings
    newest_at: float = 0.0      # when (monotonic) that chunk was processed

    def catching_up(self, now_ns: int, now_mono: float, lag_s: float = 60.0, recent_s: float = 10.0) -> bool:
        """True while recent chunks carry only old readings: a backlog being replayed, not live data."""
        return now_mono - self.newest_at < recent_s and now_ns - self.newest_ns > lag_s * 1e9


@dataclass(slots=True)
class ChunkResult:
    """What `Pipeline.process_chunk` made of a chunk, in arrival order."""

    body: bytes
    """Line protocol of every reading."""
    readings: list[Reading]
    dead: list[DeadLetter]
    acks: list[Callable[[], None]]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(reason, detail) of each message acknowledged without a reading or a dead letter."""

    def __iter__(self) -> Iterator[object]:
        """Unpacks as `body, readings, dead, acks` (what `process_chunk` returned before skips existed)."""
        return iter((self.body, self.readings, self.dead, self.acks))


class Pipeline:
    def __init__(self, *, view: RegistryView, writer: BatchWriter, deadletters: DeadLetterStore,
                 metrics: Metrics, parsers: Mapping[str, Parser], chunk_size: int = 1000,
                 log_every_s: float = 60.0, time_policy: TimePolicy = DEFAULT_POLICY,
                 dedup: Deduplicator | None = None, judge: Judge | None = None,
                 fault: FaultHook | None = None, unwritten_max: int = 20_000) -> None:
        """`unwritten_max`: messages whose readings may wait for the writer (InfluxDB) while the pipeline
        goes on decoding, evaluating rules and committing alerts; beyond it the pipeline waits too."""
        self.view = view
        self.writer = writer
        self.deadletters = deadletters
        self.metrics = metrics
        self.parsers = parsers
        self.chunk_size = chunk_size
        self.log_every_s = log_every_s
        self.time_policy = time_policy
        self.dedup = dedup if dedup is not None else Deduplicator()
        self.stats = PipelineStats()
        self.judge = judge
        self.fault = fault
        """Test-only fault injection (`service.faults`); None in production."""
        self.on_reading: list[Callable[[Reading], bytes]] = []
        self.on_chunk_end: list[Callable[[], Awaitable[None] | None]] = []
        self.unwritten_max = unwritten_max
        self._unwritten = 0
        self._room = asyncio.Event()
        self._to_writer: asyncio.Queue[tuple[bytes, Callable[[], None], int] | None] | None = None
        self._feeder: asyncio.Task[None] | None = None
        self.publish: Callable[[list[Reading], Callable[[], None]], None] | None = None
        """A cluster's ingest process: `publish(readings, release)` sends a written chunk's readings to the
        leader (`service.bus.ReadingsPublisher`) and calls `release` (the uplinks' acks) once the broker has
        them. None: the acks run as soon as the chunk is written."""
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

    def to_readings(self, msg: Incoming) -> list[Reading]:
        """One message to its readings (history records first, then the live one); raises `Rejected`
        with the reason it cannot be stored (`duplicate` and `mac_only` are skips, see `SKIPPED`)."""
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
        if self.fault is not None:
            self.fault.on_message(device.key)
        received_ns = up.received_ns or msg.received_ns
        why = self.dedup.seen(up, received_ns)
        if why is not None:
            raise Rejected("duplicate", f"{device.id}: {why}", up.device_key)
        tags = self._tags_of(device)
        decoded = decode_uplink(device, up, tags)
        if decoded.warnings:
            self.metrics.decode_warnings.labels(device.model).inc(len(decoded.warnings))
            self._log_once(device.id, "warning", "; ".join(decoded.warnings), level="INFO")
        readings = [r for time_s, fields in decoded.history
                    if (r := self._history_reading(device, tags, time_s, fields, received_ns)) is not None]
        readings.sort(key=lambda r: r.time_ns)
        reading = decoded.reading
        choice = self._time_of(device.id, up, received_ns)
        reading.time_ns = spread(choice, up.fcnt)
        reading.health["time_source"] = choice.source
        if self.judge is not None and decoded.model is not None:  # data quality: flags, never drops
            self.judge.judge(device.id, device.kind, decoded.model, reading.time_ns, reading.fields,  # type: ignore[arg-type]
                             decoded.raw or {}, device.install, device.expected_interval_s)
        if up.fcnt is not None:
            reading.health["fcnt_gap"] = self._fcnt_gap(device.id, up.fcnt)
        readings.append(reading)
        return readings

    def _time_of(self, device_id: str, up: Uplink, received_ns: int) -> TimeChoice:
        """The time policy applied to what the envelope offered; refusals counted and logged (rate-limited)."""
        times = up.times
        if not times and up.time_ns != received_ns:
            times = (TimeCandidate("envelope", up.time_ns),)
        choice = choose_time(times, received_ns, self.time_policy)
        self.metrics.time_source.labels(choice.source).inc()
        if choice.refused:
            for source, reason in choice.refused:
                self.metrics.time_refused.labels(source, reason).inc()
            shown = ", ".join(f"{source} {reason}" for source, reason in choice.refused)
            self._log_once(device_id, "time", f"source time not trusted ({shown}); using {choice.source}")
        return choice

    def _history_reading(self, device: Device, tags: tuple[tuple[str, str], ...], time_s: int,
                         fields: dict[str, FieldValue], received_ns: int) -> Reading | None:
        """A stored record as a reading at its own time, or None (counted) when its time is not plausible."""
        choice = choose_time((from_number("history", time_s),), received_ns, self.time_policy, history=True)
        if choice.source == RECEIVED:
            for source, reason in choice.refused:
                self.metrics.time_refused.labels(source, reason).inc()
            self._log_once(device.id, "history", f"history record at {time_s} s dropped: its time is not plausible")
            return None
        self.metrics.history_readings.inc()
        return Reading(device.id, device.kind, choice.time_ns, fields, tags, {"time_source": "history"},
                       history=True)

    def _log_once(self, device: str, reason: str, detail: str, level: str = "WARNING") -> None:
        now = time.monotonic()
        key = (device, reason)
        if now - self._logged.get(key, -1e18) >= self.log_every_s:
            self._logged[key] = now
            logger.log(level, "{} {}: {}", device, reason, detail)

    def process_chunk(self, chunk: Iterable[Incoming]) -> ChunkResult:
        """Pure CPU work for a chunk: line protocol for the good ones, dead letters or skips for the rest."""
        lines: list[bytes] = []
        readings: list[Reading] = []
        dead: list[DeadLetter] = []
        acks: list[Callable[[], None]] = []
        skipped: list[tuple[str, str]] = []
        sources: dict[str, int] = {}
        for msg in chunk:
            sources[msg.source] = sources.get(msg.source, 0) + 1
            if msg.ack is not None:
                acks.append(msg.ack)
            try:
                got = self.to_readings(msg)
                encoded = [encode_reading(r) for r in got]
            except Rejected as exc:
                self._refused(msg, exc, dead, skipped)
                continue
            except Exception as exc:  # anything unforeseen stays with its message: a dead letter, not a crash
                logger.opt(exception=exc).error("internal error on a {} message ({}): dead-lettered",
                                                msg.source, msg.topic)
                self._refused(msg, Rejected("internal_error", f"{type(exc).__name__}: {exc}"), dead, skipped)
                continue
            lines.extend(encoded)
            readings.extend(got)
        for source, n in sources.items():
            self.metrics.uplinks_received.labels(source).inc(n)
        return ChunkResult(b"".join(lines), readings, dead, acks, skipped)

    def _refused(self, msg: Incoming, exc: Rejected, dead: list[DeadLetter],
                 skipped: list[tuple[str, str]]) -> None:
        """Count a refusal; a fault becomes a dead letter, a skip (`SKIPPED`) only a count."""
        if exc.reason in SKIPPED:
            skipped.append((exc.reason, exc.detail))
            self.metrics.skipped.labels(exc.reason).inc()
            self.stats.skipped[exc.reason] = self.stats.skipped.get(exc.reason, 0) + 1
            self._log_once(exc.device_key or msg.topic, exc.reason, exc.detail, level="INFO")
            return
        self.metrics.rejected.labels(exc.reason).inc()
        self.stats.rejected[exc.reason] = self.stats.rejected.get(exc.reason, 0) + 1
        self._log_once(exc.device_key or msg.topic, exc.reason, exc.detail)
        dead.append(DeadLetter(time_ns=msg.received_ns or time.time_ns(), source=msg.source,
                               topic=msg.topic, payload=msg.payload, reason=exc.reason,
                               detail=exc.detail, device_key=exc.device_key))

    async def handle(self, chunk: list[Incoming]) -> None:
        """Process one chunk and hand it off; its acks run once its lines are written."""
        result = self.process_chunk(chunk)
        if self.fault is not None:
            self.fault.after_chunk()
        await self.hand_off(len(chunk), result)

    async def hand_off(self, received: int, result: ChunkResult) -> None:
        """Dead letters to their store, readings through the hooks (rules) to the writer; acks after."""
        body, readings, dead, acks = result.body, result.readings, result.dead, result.acks
        self.stats.received += received
        if dead:
            await asyncio.to_thread(self.deadletters.add_many, dead)
        kinds: dict[str, int] = {}
        extra: list[bytes] = []
        if readings:
            self.stats.newest_ns = max(r.time_ns for r in readings)
            self.stats.newest_at = time.monotonic()
        for r in readings:
            kinds[r.kind] = kinds.get(r.kind, 0) + 1
            if not r.history:
                self.stats.latest[r.kind] = (r.device_id, r.fields)
            for hook in self.on_reading:
                lines = hook(r)
                if lines:
                    extra.append(lines)
        for end in self.on_chunk_end:
            pending = end()
            if pending is not None:
                await pending
        if extra:
            body = body + b"".join(extra)

        def release() -> None:
            for ack in acks:
                ack()

        def done() -> None:
            if self.publish is None:
                release()
            else:
                self.publish(readings, release)
            for kind, n in kinds.items():
                self.metrics.readings_written.labels(kind).inc(n)
            self.stats.readings += len(readings)

        await self._write(body, done, received)

    async def _write(self, body: bytes, done: Callable[[], None], messages: int) -> None:
        """Hand a chunk's lines to the writer through the feed of `run`, in order, without waiting for the
        writer's room (InfluxDB's pace) unless `unwritten_max` messages already wait for it."""
        queue = self._to_writer
        if queue is None:  # not under `run` (a single `handle`, `urbansense trace`): straight to the writer
            await self.writer.add(body, done)
            return
        while self._unwritten and self._unwritten + messages > self.unwritten_max:
            self._check_feed()
            self._room.clear()
            await self._room.wait()
        self._unwritten += messages
        queue.put_nowait((body, done, messages))

    def _check_feed(self) -> None:
        feeder = self._feeder
        if feeder is not None and feeder.done():
            if not feeder.cancelled() and feeder.exception() is not None:
                raise RuntimeError("the pipeline's feed to the writer failed") from feeder.exception()
            raise RuntimeError("the pipeline's feed to the writer ended")

    async def _feed(self, queue: asyncio.Queue[tuple[bytes, Callable[[], None], int] | None]) -> None:
        """The writer's side of `run`: chunks to `BatchWriter.add` in order, at the writer's pace."""
        while (item := await queue.get()) is not None:
            body, done, messages = item
            try:
                await self.writer.add(body, done)
            finally:
                self._unwritten -= messages
                self._room.set()

    async def run(self, inbox: Inbox[Incoming], stop: asyncio.Event) -> None:
        """Consume until `stop` is set and the inbox is empty, then hand the writer what is left.

        A chunk's readings reach the rules and its transitions the alert store whatever InfluxDB's pace:
        a flood reading behind a full writer does not wait for the background's batches to be written.
        """
        queue: asyncio.Queue[tuple[bytes, Callable[[], None], int] | None] = asyncio.Queue()
        self._to_writer = queue
        self._feeder = asyncio.create_task(self._feed(queue), name="pipeline-writer-feed")
        try:
            while not (stop.is_set() and len(inbox) == 0):
                chunk = await inbox.get_chunk(self.chunk_size, timeout=0.1)
                self.metrics.queue_depth.set(len(inbox))
                self._check_feed()
                if chunk:
                    await self.handle(chunk)
                    # `handle` need not suspend while a backlog lasts (the inbox has items): yield, so that
                    # the writer's batches, alert delivery and the desk console run between chunks rather
                    # than after the whole backlog
                    await asyncio.sleep(0)
        finally:
            self._to_writer = None
            queue.put_nowait(None)
        await self._feeder  # what waits for the writer is handed to it before the service closes the writer
