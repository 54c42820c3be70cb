"""The delivery worker: sends due outbox rows through their notifiers, retrying with capped backoff.

A retryable failure (network error, timeout, 5xx, 429, robot rate limit) reschedules the row
with exponential backoff and jitter, for as long as it takes; a permanent refusal (other 4xx)
marks it failed with the receiver's words, logged and counted, never silently dropped. Only the
oldest undelivered row of each (fingerprint, receiver) is sent, so a close never overtakes its
open. Rows are claimed before they are sent (`AlertStore.claim_due`), so two instances never send
the same one. A row is marked delivered only after the receiver accepted it; every HTTP request carries
`Idempotency-Key: <fingerprint>:<seq>` so a resend after a crash can be recognised.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from loguru import logger
from sqlalchemy.exc import SQLAlchemyError

from alerts.config import OutboxConfig
from alerts.errors import PermanentError, RetryableError
from alerts.model import Delivery
from alerts.notifiers.base import Notifier
from alerts.store import AlertStore
from core import timing

MAX_RETRY_AFTER_S = 3600.0


@dataclass(slots=True)
class OutboxStats:
    """Counts since start: accepted, rescheduled after a retryable failure, refused for good."""

    delivered: int = 0
    retried: int = 0
    failed_permanently: int = 0
    by_receiver: Counter[tuple[str, str]] = field(default_factory=Counter)  # (receiver, outcome) → count


def backoff_s(attempt: int, cfg: OutboxConfig, rnd: float, retry_after_s: float | None = None) -> float:
    """Delay before attempt `attempt + 1`: base·2^(attempt-1) capped, ± jitter; at least the receiver's hint."""
    delay = timing.jittered(timing.backoff_s(attempt, cfg.base_delay_s, cfg.max_delay_s), cfg.jitter, rnd)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    return delay


class OutboxWorker:
    """Run with `await worker.run()` (until `stop()`); `wake()` after enqueuing to skip the poll wait."""

    def __init__(self, store: AlertStore, notifiers: Mapping[str, Notifier], *,
                 config: OutboxConfig | None = None, clock: Callable[[], int] = time.time_ns,
                 rng: random.Random | None = None, take_over_claims: bool = True,
                 executor: Executor | None = None) -> None:
        """`executor` runs the store's marks (a commit each) off the event loop; None = asyncio's default."""
        self.store = store
        self.take_over_claims = take_over_claims
        self.executor = executor
        self.notifiers = notifiers
        self.cfg = config or OutboxConfig()
        self.clock = clock
        self.rng = rng or random.Random()
        self.stats = OutboxStats()
        self._inflight: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._db_errors = 0
        self.on_change: Callable[[], None] | None = None  # after every attempt (the desk console listens)

    def wake(self) -> None:
        """Look for due rows now; safe to call from any thread, and before `run` (then it does nothing)."""
        loop, event = self._loop, self._wake
        if loop is None or event is None or loop.is_closed():
            return
        try:
            if asyncio.get_running_loop() is loop:
                event.set()
                return
        except RuntimeError:
            pass
        loop.call_soon_threadsafe(event.set)

    def send_committed(self) -> None:
        """Rows were just committed in this thread (the commit thread): claim the due ones here and start their
        sends on the event loop, rather than waking the loop to ask this thread for the claim in turn, behind
        whatever commits were asked for meanwhile (the next chunk's transitions, other deliveries' marks).
        On the event loop itself, or before `run`, or when the claim fails, it is `wake()`."""
        loop = self._loop
        if (loop is None or loop.is_closed() or self._stopping or self._on_loop(loop)
                or self.store.in_transaction):  # (not committed yet: the worker looks after the commit)
            self.wake()
            return
        room = self.cfg.max_in_flight - len(self._inflight)
        if room <= 0:
            return  # each send that ends looks again
        try:
            rows = self.store.claim_due(self.clock(), room, busy=list(self._inflight),
                                        claim_ns=int(self.cfg.claim_s * 1e9))
        except SQLAlchemyError:
            self.wake()  # the worker's own look logs and retries
            return
        if rows:
            loop.call_soon_threadsafe(self._start_claimed, rows)
        if len(rows) >= room:
            self.wake()  # there may be more than there was room for

    def _start_claimed(self, rows: list[Delivery]) -> None:
        if not self._stopping:  # else their claims end with `run` (or lapse) and the next instance sends them
            self._start(rows)

    @staticmethod
    def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
        try:
            return asyncio.get_running_loop() is loop
        except RuntimeError:
            return False

    async def run(self) -> None:
        """Deliver until `stop()`. One worker runs per database (the leader's), so with `take_over_claims`
        the claims found at start belong to a predecessor that died or stepped down and are taken over at
        once rather than after `claim_s`. A database error (PostgreSQL restarting) is logged and the look
        is repeated after the poll interval."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        try:
            if self.take_over_claims and (released := await asyncio.to_thread(self.store.release_claims)):
                logger.info("outbox: took over {} notification(s) claimed by a previous instance", released)
            while not self._stopping:
                self._wake.clear()
                idle_s = self.cfg.poll_interval_s
                try:
                    await self._start_due()
                    idle_s = self._idle_s()
                except SQLAlchemyError as exc:
                    self._db_errors += 1
                    if self._db_errors == 1 or self._db_errors % 60 == 0:
                        logger.warning("outbox: the alert store is unreachable ({} time(s)); retrying: {}",
                                       self._db_errors, type(exc).__name__)
                else:
                    if self._db_errors:
                        logger.info("outbox: the alert store is reachable again")
                    self._db_errors = 0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), idle_s)
        finally:
            await self._finish_inflight()
            with contextlib.suppress(SQLAlchemyError):
                await asyncio.to_thread(self.store.release_claims, self.store.owner)  # cut-short rows: next instance
            await self.aclose()

    async def stop(self) -> None:
        """Stop taking rows (also when called before `run` started); deliveries under way get
        `stop_timeout_s` to finish, then stay queued."""
        self._stopping = True
        self.wake()

    async def deliver_due(self) -> int:
        """One pass without `run`: send every row due now (heads only) and wait; returns rows attempted."""
        self._loop = asyncio.get_running_loop()
        self._wake = self._wake or asyncio.Event()
        started = await self._start_due()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        return started

    async def aclose(self) -> None:
        for n in self.notifiers.values():
            try:
                await n.aclose()
            except Exception as exc:
                logger.warning("closing notifier {} failed: {}", n.name, exc)

    def _idle_s(self) -> float:
        next_ns = self.store.next_due_ns(busy=self._inflight.keys())
        if next_ns is None:
            return self.cfg.poll_interval_s
        return max(0.0, min(self.cfg.poll_interval_s, (next_ns - self.clock()) / 1e9))

    async def _start_due(self) -> int:
        """Claim the due rows there is room for (a write: in `executor`) and start sending them."""
        room = self.cfg.max_in_flight - len(self._inflight)
        if room <= 0:
            return 0
        claim = functools.partial(self.store.claim_due, self.clock(), room, busy=list(self._inflight.keys()),
                                  claim_ns=int(self.cfg.claim_s * 1e9))
        rows = await asyncio.get_running_loop().run_in_executor(self.executor, claim)
        self._start(rows)
        return len(rows)

    def _start(self, rows: list[Delivery]) -> None:
        """Start sending claimed rows (on the event loop). A row of a queue whose previous row is still in
        `_inflight` is that row's successor (only a head is claimed): the predecessor is only finishing."""
        for d in rows:
            key = d.queue_key
            self._inflight[key] = asyncio.create_task(self._deliver(d, key), name=f"deliver-{d.id}")

    async def _finish_inflight(self) -> None:
        tasks = list(self._inflight.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=self.cfg.stop_timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            logger.warning("{} deliveries were cut short by stop; they stay queued", len(pending))

    async def _deliver(self, d: Delivery, key: tuple[str, str]) -> None:
        try:
            notifier = self.notifiers.get(d.receiver)
            if notifier is None:
                await self._failed(d, f"receiver {d.receiver!r} is not configured")
                return
            try:
                ref = await notifier.send(d)
            except RetryableError as exc:
                await self._retry(d, str(exc), exc.retry_after_s)
            except PermanentError as exc:
                await self._failed(d, str(exc))
            except Exception as exc:
                logger.exception("notifier {} raised unexpectedly for outbox row {}", d.receiver, d.id)
                await self._retry(d, f"{type(exc).__name__}: {exc}", None)
            else:
                # marked before this queue's next row is looked at; a kill -9 before the mark is committed
                # sends the message again, with the same Idempotency-Key (at least once)
                await self._record_delivered(d, ref)
                self.stats.delivered += 1
                self.stats.by_receiver[(d.receiver, "delivered")] += 1
                logger.info("notification {} ({}) delivered to {} after {} attempt(s)", d.idempotency_key,
                            d.body.get("event") or d.body.get("action") or "", d.receiver, d.attempts + 1)
        finally:
            if self._inflight.get(key) is asyncio.current_task():  # not a successor started meanwhile
                del self._inflight[key]
            if self._wake is not None:
                self._wake.set()
            if self.on_change is not None:
                self.on_change()

    async def _commit(self, mark: Callable[..., None], *args: Any) -> None:
        """A store mark in `executor`: its fsync does not hold the event loop (other deliveries, the desk)."""
        await asyncio.get_running_loop().run_in_executor(self.executor, mark, *args)

    async def _record_delivered(self, d: Delivery, ref: str | None) -> None:
        """Mark `d` delivered; while the database is unreachable (PostgreSQL restarting) keep trying for
        `claim_s`, the time no other instance may take the row, so the accepted message is not sent again."""
        deadline = time.monotonic() + self.cfg.claim_s
        while True:
            try:
                await self._commit(self.store.mark_delivered, d, self.clock(), ref)
                return
            except SQLAlchemyError as exc:
                if time.monotonic() > deadline:
                    raise
                logger.warning("outbox: delivery {} accepted but not yet recorded ({}); retrying",
                               d.idempotency_key, type(exc).__name__)
                await asyncio.sleep(0.5)

    async def _retry(self, d: Delivery, error: str, retry_after_s: float | None) -> None:
        delay = backoff_s(d.attempts + 1, self.cfg, self.rng.random(), retry_after_s)
        await self._commit(self.store.mark_retry, d, self.clock() + int(delay * 1e9), error)
        self.stats.retried += 1
        self.stats.by_receiver[(d.receiver, "retried")] += 1
        logger.warning("delivery {} to {} failed (attempt {}), retry in {:.1f} s: {}",
                       d.idempotency_key, d.receiver, d.attempts + 1, delay, error)

    async def _failed(self, d: Delivery, error: str) -> None:
        await self._commit(self.store.mark_failed, d, self.clock(), error)
        self.stats.failed_permanently += 1
        self.stats.by_receiver[(d.receiver, "failed")] += 1
        logger.error("notification {} to {} given up (refused for good): {}", d.idempotency_key, d.receiver, error)
