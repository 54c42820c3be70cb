"""`BatchWriter`: the durable hand-off point between the pipeline and InfluxDB.

Lines are batched by count and by time; each `ack` runs only once the lines added with
it (and everything added before) are written, or refused by InfluxDB and handed to
`on_rejected`. Until then the message broker keeps its redelivery duty, so an InfluxDB
outage delays acknowledgements instead of losing data. With a disk spool, a batch that
InfluxDB cannot take now is spooled (fsync'd) and acknowledged instead, and drained back
later, one drain write at a time beside the live ones. Writes are idempotent (a point is
keyed by series and time), which is what makes resending, splitting, bisecting and
replaying the spool safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from loguru import logger

from core.timing import backoff_s, equal_jitter
from storage.errors import (
    PartialWriteError,
    PayloadTooLarge,
    PermanentWriteError,
    RequestRefused,
    TransientError,
)
from storage.lineprotocol import join_lines, split_lines
from storage.rejections import identify_rejected
from storage.spool import SpoolError

Ack = Callable[[], None]


class LineSink(Protocol):
    """What the writer writes to: `InfluxClient` or anything with its `write`."""

    async def write(self, body: bytes) -> None: ...


class SpoolChunk(Protocol):
    body: bytes


class Spool(Protocol):
    """What the writer needs of a spool (`storage.spool.DiskSpool`): a durable, bounded FIFO of bodies.

    `append` returns once the body is durable. `read` gives the oldest bodies (None when
    empty) and `commit` forgets them after they were written; the writer drains.
    """

    @property
    def empty(self) -> bool: ...

    def has_room(self, n: int) -> bool: ...

    async def append(self, body: bytes) -> None: ...

    async def read(self, max_bytes: int) -> SpoolChunk | None: ...

    async def commit(self, chunk: SpoolChunk) -> None: ...


@dataclass
class WriterStats:
    """Running totals; `write_seconds` keeps the latest write latencies."""

    points_written: int = 0
    points_rejected: int = 0
    points_spooled: int = 0
    points_drained: int = 0
    batches_written: int = 0
    write_failures: int = 0
    drain_failures: int = 0
    write_seconds: deque[float] = field(default_factory=lambda: deque(maxlen=1024))


@dataclass(eq=False)
class _Batch:
    chunks: list[bytes] = field(default_factory=list)
    lines: int = 0
    acks: list[Ack] = field(default_factory=list)
    started: float = 0.0
    done: bool = False
    released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def empty(self) -> bool:
        return not self.chunks and not self.acks


class BatchWriter:
    """Batches line protocol into InfluxDB with in-order acks, backpressure, retries and rejection handling.

    `batch_size` is in lines; a batch also goes out `flush_interval_s` after its first
    line. At most `max_batches_in_flight` batches are written at once: `add` waits while
    that many are in flight. Transient failures and refused requests (credentials, missing
    database) are retried with capped exponential backoff and jitter, at least Retry-After
    apart, keeping the acks waiting. A 413 splits the batch in halves. Points InfluxDB
    refuses for good go to `on_rejected(lines, reason)` with its error text (found from
    the text, else by bisecting), the rest are written, then the acks run.
    `on_written(points, seconds)` is called for every successful write.

    With a `spool`: after `spool_after_failures` transient failures a batch is spooled and
    acked; while InfluxDB stays unreachable later batches go straight to the spool, and the
    drain task probes InfluxDB (backoff capped at `probe_max_s`). A full spool takes
    nothing more: batches then wait for InfluxDB with their acks held, which stops the
    pipeline and leaves the backlog with the broker. Call `start()` to drain what an
    earlier run spooled. `on_task_failure(name, exc)` hears of a background task ("writer"
    timer, "spool-drain", a batch "writer") that raised or ended before `close`.
    """

    def __init__(self, client: LineSink, *, batch_size: int = 5000, flush_interval_s: float = 0.2,
                 max_batches_in_flight: int = 2, on_rejected: Callable[[bytes, str], None] | None = None,
                 on_written: Callable[[int, float], None] | None = None, spool: Spool | None = None,
                 spool_after_failures: int = 1, backoff_initial_s: float = 0.1, backoff_max_s: float = 30.0,
                 max_retry_after_s: float = 300.0, probe_max_s: float = 5.0, drain_bytes: int = 1 << 20,
                 on_task_failure: Callable[[str, BaseException | None], None] | None = None) -> None:
        if batch_size < 1 or max_batches_in_flight < 1 or flush_interval_s <= 0:
            raise ValueError("batch_size and max_batches_in_flight must be >= 1, flush_interval_s > 0")
        self.client = client
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_batches_in_flight = max_batches_in_flight
        self.on_rejected = on_rejected
        self.on_written = on_written
        self.spool = spool
        self.spool_after_failures = spool_after_failures
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self.probe_max_s = probe_max_s
        self.drain_bytes = drain_bytes
        self.on_task_failure = on_task_failure
        self.stats = WriterStats()
        self.outage = False
        """True from a transient failure until the next successful write."""
        self.spool_refusing = False
        """True while the spool is too full to take the batch offered to it: acks are being held."""
        self._spooling = False
        self._recovered = asyncio.Event()
        self._spooled = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None
        self._current = _Batch()
        self._pending: deque[_Batch] = deque()
        self._slots = asyncio.Semaphore(max_batches_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self._closed = False

    @property
    def pending_batches(self) -> int:
        """Batches sealed but not yet acknowledged (written or being written, or waiting for a slot)."""
        return len(self._pending)

    @property
    def unfinished_lines(self) -> int:
        """Lines added but not yet written or spooled: after `close`, what stays unacknowledged at the broker."""
        return sum(b.lines for b in self._pending if not b.done) + self._current.lines

    @property
    def influx_reachable(self) -> bool:
        """False while InfluxDB is failing with transient errors (until a write succeeds again)."""
        return not self.outage

    def start(self) -> None:
        """Start draining the spool (also started by the first `add`); needs a running event loop."""
        if self.spool is not None and self._drainer is None and not self._closed:
            self._drainer = asyncio.get_running_loop().create_task(self._drain_loop(), name="spool-drain")
            self._drainer.add_done_callback(self._task_ended)

    def _batch_ended(self, task: asyncio.Task[None]) -> None:
        """A batch write ends when its batch is written: only an exception is a failure."""
        if not task.cancelled() and task.exception() is not None and self.on_task_failure is not None:
            self.on_task_failure(task.get_name(), task.exception())

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        """A background task's end: only `close` may end one, and none may raise."""
        if task.cancelled():
            return
        exc = task.exception()
        if (exc is not None or not self._closed) and self.on_task_failure is not None:
            self.on_task_failure(task.get_name(), exc)
    async def add(self, lines: bytes, ack: Ack | None = None) -> None:
        """Queue `lines` (may be b""); `ack` runs once they and all earlier lines are durably handed off."""
        if self._closed:
            raise RuntimeError("BatchWriter is closed")
        if self._drainer is None:
            self.start()
        batch = self._current
        was_empty = batch.empty
        if lines:
            if not lines.endswith(b"\n"):
                lines += b"\n"
            batch.chunks.append(lines)
            batch.lines += lines.count(b"\n")
        if ack is not None:
            if was_empty and not batch.chunks and not self._pending:
                _call(ack)
            else:
                batch.acks.append(ack)
        if batch.empty:
            return
        if was_empty:
            batch.started = time.monotonic()
            self._ensure_timer()
            self._kick.set()
        if batch.lines >= self.batch_size:
            await self._seal()

    async def flush(self) -> None:
        """Send what is queued and wait until every ack added so far has run."""
        await self._seal()
        if self._pending:
            await self._pending[-1].released.wait()

    async def close(self, timeout: float | None = None) -> None:
        """Flush, then stop. After `timeout` seconds unfinished writes are cancelled and their acks never run."""
        self._closed = True
        try:
            await asyncio.wait_for(self.flush(), timeout)
        finally:
            if self._timer is not None:
                self._timer.cancel()
            if self._drainer is not None:
                self._drainer.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, *(t for t in [self._timer, self._drainer] if t),
                                 return_exceptions=True)

    # ---- batching ----

    def _ensure_timer(self) -> None:
        if self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(self._timer_loop(), name="writer")
            self._timer.add_done_callback(self._task_ended)

    async def _timer_loop(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            batch = self._current
            if batch.empty:
                continue
            delay = batch.started + self.flush_interval_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._current is batch and not batch.empty:
                await self._seal()

    async def _seal(self) -> None:
        batch = self._current
        if batch.empty:
            return
        self._current = _Batch()
        self._pending.append(batch)
        if not batch.chunks:
            batch.done = True
            self._release()
            return
        try:
            await self._slots.acquire()
        except asyncio.CancelledError:
            self._start(batch, holds_slot=False)
            raise
        self._start(batch, holds_slot=True)

    def _start(self, batch: _Batch, holds_slot: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._write_batch(batch, holds_slot), name="writer")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._batch_ended)

    async def _write_batch(self, batch: _Batch, holds_slot: bool) -> None:
        try:
            body = b"".join(batch.chunks)
            attempt = 0
            while True:
                try:
                    await self._deliver(body, batch.lines)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception:  # a bug or a failing on_rejected: keep the acks, try the batch again
                    attempt += 1
                    logger.exception("writing a batch of {} lines failed unexpectedly; retrying", batch.lines)
                    await asyncio.sleep(self._backoff(attempt))
            self.stats.batches_written += 1
            batch.done = True
            self._release()
        finally:
            if holds_slot:
                self._slots.release()

    def _release(self) -> None:
        """Run acks of finished batches, oldest first, stopping at the first unfinished one."""
        while self._pending and self._pending[0].done:
            batch = self._pending.popleft()
            for ack in batch.acks:
                _call(ack)
            batch.released.set()

    # ---- one batch into InfluxDB ----

    async def _deliver(self, body: bytes, n_lines: int, may_spool: bool = True) -> None:
        """Write `body` until every line is either in InfluxDB (or the spool) or handed to `on_rejected`."""
        work: list[tuple[bytes, list[bytes] | None]] = [(body, None)]
        while work:
            part, lines = work.pop()
            count = len(lines) if lines is not None else n_lines if part is body else part.count(b"\n")
            error, seconds = await self._send(part, count, may_spool)
            if error is None:
                continue
            if lines is None:
                lines = split_lines(part)
            if isinstance(error, PayloadTooLarge):
                if len(lines) <= 1:
                    self._reject(lines, f"a single line is larger than InfluxDB accepts: {error.text}")
                else:
                    half = len(lines) // 2
                    work.append((join_lines(lines[half:]), lines[half:]))
                    work.append((join_lines(lines[:half]), lines[:half]))
                continue
            refused = identify_rejected(lines, error)
            if refused and isinstance(error, PartialWriteError) and error.dropped is not None \
                    and len(refused) > error.dropped:
                # the text names a conflict, not its points (1.x conflicts are per shard): the others
                # landed; resend the candidates in halves to find the refused ones
                rest = [line for i, line in enumerate(lines) if i not in refused]
                if rest:
                    self._written(len(rest), seconds)
                candidates = [lines[i] for i in sorted(refused)]
                if len(candidates) == 1:
                    self._reject(candidates, error.text)
                    continue
                half = len(candidates) // 2
                work.append((join_lines(candidates[half:]), candidates[half:]))
                work.append((join_lines(candidates[:half]), candidates[:half]))
                continue
            if refused:
                self._reject([lines[i] for i in sorted(refused)], error.text)
                rest = [line for i, line in enumerate(lines) if i not in refused]
                landed = isinstance(error, PartialWriteError) and (error.dropped or 0) <= len(refused)
                if rest and landed:
                    self._written(len(rest), seconds)
                elif rest:
                    work.append((join_lines(rest), rest))
            elif len(lines) <= 1 or (isinstance(error, PartialWriteError) and error.dropped == len(lines)):
                self._reject(lines, error.text)
            else:
                half = len(lines) // 2
                work.append((join_lines(lines[half:]), lines[half:]))
                work.append((join_lines(lines[:half]), lines[:half]))

    async def _send(self, body: bytes, count: int, may_spool: bool = True) -> tuple[PermanentWriteError | None, float]:
        """One body, retried while the failure is transient (or spooled); returns the permanent error, if any."""
        failures = 0
        while True:
            if may_spool and self.outage and (failures == 0 or failures >= self.spool_after_failures) \
                    and self._spool_has_room(len(body)) and await self._to_spool(body, count):
                return None, 0.0
            started = time.monotonic()
            try:
                await self.client.write(body)
            except PermanentWriteError as exc:
                self._up()
                return exc, time.monotonic() - started
            except (TransientError, RequestRefused) as exc:
                failures += 1
                self.stats.write_failures += 1
                if isinstance(exc, TransientError):
                    self._down(exc)
                    if may_spool and failures >= self.spool_after_failures and self._spool_has_room(len(body)) \
                            and await self._to_spool(body, count):
                        return None, 0.0
                # while the spool cannot take it, this write is the probe: retry as often as the drain would
                probing = not may_spool or self.spool_refusing
                delay = self._backoff(failures, cap=self.probe_max_s if probing else self.backoff_max_s)
                retry_after = getattr(exc, "retry_after", None)
                if retry_after is not None:
                    delay = max(delay, min(retry_after, self.max_retry_after_s))
                if failures == 1 or failures % 10 == 0:
                    logger.warning("InfluxDB write of {} lines failed ({}), attempt {}; retrying in {:.2f}s",
                                   count, exc, failures, delay)
                await self._pause(delay)
                continue
            seconds = time.monotonic() - started
            self._up()
            if failures:
                logger.info("InfluxDB write succeeded after {} failed attempts", failures)
            self._written(count, seconds)
            return None, seconds

    # ---- the spool ----

    def _spool_has_room(self, n: int) -> bool:
        if self.spool is None:
            return False
        if self.spool.has_room(n):
            self.spool_refusing = False
            return True
        if not self.spool_refusing:
            self.spool_refusing = True
            problem = getattr(self.spool, "problem", None)
            logger.error("spool {}: no more messages are acknowledged until InfluxDB takes writes again; "
                         "the broker keeps the backlog", f"cannot write ({problem})" if problem else "is full")
        return False

    @property
    def spool_problem(self) -> str | None:
        """Why the spool takes nothing now (full, or its last write failed), or None."""
        if not self.spool_refusing or self.spool is None:
            return None
        return getattr(self.spool, "problem", None) or "full"

    async def _to_spool(self, body: bytes, count: int) -> bool:
        """Spool `body`; False (acks stay held, InfluxDB is tried instead) when the disk refuses it."""
        assert self.spool is not None
        try:
            await self.spool.append(body)
        except (OSError, SpoolError) as exc:  # ENOSPC, EROFS, EIO: expected conditions, never the writer's end
            self.spool_refusing = True
            logger.error("{}; acknowledgements are held (the broker keeps the data) and InfluxDB is probed", exc)
            return False
        self.stats.points_spooled += count
        if not self._spooling:
            self._spooling = True
            logger.error("InfluxDB is unavailable: spooling batches to disk (first: {} lines)", count)
        self._spooled.set()
        return True

    def _down(self, exc: Exception) -> None:
        if not self.outage:
            logger.warning("InfluxDB write failed: {}", exc)
        self.outage = True
        self._recovered.clear()

    def _up(self) -> None:
        if self.outage:
            self.outage = False
            self._recovered.set()

    async def _pause(self, delay: float) -> None:
        """Sleep `delay` seconds, or less if InfluxDB is seen to be back meanwhile."""
        if not self.outage:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._recovered.wait(), delay)

    async def _drain_loop(self) -> None:
        """Drain the spool until cancelled; a disk error (EIO on read, ...) is logged and retried, never fatal."""
        failures = 0
        while True:
            try:
                await self._drain_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # disk errors and bugs alike: the drain must outlive them
                failures += 1
                if failures == 1 or failures % 20 == 0:
                    logger.opt(exception=failures == 1).error(
                        "spool drain failed ({}), attempt {}; retrying", exc, failures)
                self.stats.drain_failures += 1
                await asyncio.sleep(self._backoff(failures, cap=self.probe_max_s))

    async def _drain_once(self) -> None:
        """Write the oldest spooled bodies back (one write, holding one in-flight slot), or wait for some."""
        spool = self.spool
        assert spool is not None
        if spool.empty:
            if self._spooling:
                self._spooling = False
                logger.error("spool drained: every spooled batch is in InfluxDB")
            self._spooled.clear()
            if spool.empty:
                await self._spooled.wait()
            return
        chunk = await spool.read(self.drain_bytes)
        if chunk is None:
            return
        self._spooling = True
        lines = chunk.body.count(b"\n")
        await self._slots.acquire()
        try:
            await self._deliver(chunk.body, lines, may_spool=False)
        finally:
            self._slots.release()
        await spool.commit(chunk)
        self.stats.points_drained += lines
        self.spool_refusing = False

    def _backoff(self, failures: int, cap: float | None = None) -> float:
        """Capped exponential backoff with equal jitter: between half and all of base·2^(n-1)."""
        ceiling = backoff_s(failures, self.backoff_initial_s, self.backoff_max_s if cap is None else cap)
        return equal_jitter(ceiling, random.random())

    def _written(self, points: int, seconds: float) -> None:
        self.stats.points_written += points
        self.stats.write_seconds.append(seconds)
        if self.on_written is not None:
            self.on_written(points, seconds)

    def _reject(self, lines: list[bytes], reason: str) -> None:
        if not lines:
            return
        if self.on_rejected is not None:
            self.on_rejected(join_lines(lines), reason)
        else:
            logger.error("InfluxDB refused {} lines ({}); first: {!r}", len(lines), reason, lines[0][:200])
        self.stats.points_rejected += len(lines)


def _call(ack: Ack) -> None:
    try:
        ack()
    except Exception:
        logger.exception("an ack callback failed")
