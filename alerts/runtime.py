"""The alerts package assembled from `AlertsConfig`: store, notifiers, manager and delivery worker."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from loguru import logger

from alerts.config import AlertsConfig
from alerts.manager import AlertLifecycle, Outcome
from alerts.notifiers import build_notifiers
from alerts.outbox import OutboxWorker
from alerts.routing import Router
from alerts.store import AlertStore
from core.database import is_postgres_url
from core.device import Device
from core.transition import AlertTransition

PURGE_EVERY_S = 3600.0


class AlertsRuntime:
    """`handle(transition)` from the pipeline; `await run()` in the service's task group; `await stop()`."""

    def __init__(self, config: AlertsConfig, devices: Callable[[str], Device | None], *,
                 db_path: str | Path | None = None, base_dir: Path = Path("."),
                 clock: Callable[[], int] = time.time_ns, migrate_schema: bool = True,
                 take_over_claims: bool = True) -> None:
        """`db_path`: the store's SQLite file (relative to `base_dir`) or a PostgreSQL URL; default `config.db_path`.
        `take_over_claims`: see `OutboxWorker.run` (False only where two workers share a database on purpose)."""
        target: str | Path = db_path or config.db_path
        if not is_postgres_url(target):
            path = Path(target)
            target = path if path.is_absolute() else base_dir / path
        self.config = config
        self.clock = clock
        self.store = AlertStore(target, migrate_schema=migrate_schema)
        self.notifiers = build_notifiers(config, base_dir=base_dir)
        self.committer = ThreadPoolExecutor(1, thread_name_prefix="alerts-commit")
        """The one thread that commits for the event loop (transitions, delivery marks, repeats): a commit's
        fsync (synchronous=FULL) then holds only this thread, and commits keep the order they were asked in."""
        self.worker = OutboxWorker(self.store, self.notifiers, config=config.outbox, clock=clock,
                                   take_over_claims=take_over_claims, executor=self.committer)
        self.manager = AlertLifecycle(
            self.store, Router(config.routes, config.default_receivers), self.notifiers, devices,
            repeat_interval_s=config.repeat_interval_s, inhibit_rules=config.inhibit_rules,
            timezone=config.timezone, clock=clock, on_enqueue=self.worker.wake)
        self._ticker: asyncio.Task[None] | None = None

    def handle(self, transition: AlertTransition) -> Outcome:
        return self.manager.handle(transition)

    def handle_many(self, transitions: Iterable[AlertTransition]) -> list[Outcome | Exception]:
        """Apply transitions in order with one commit for all; each stays atomic with its outbox rows.

        A transition that fails is rolled back alone and its exception is returned in its place;
        an exception from the commit itself means none of them was stored.
        """
        results: list[Outcome | Exception] = []
        with self.store.batch():
            for t in transitions:
                try:
                    results.append(self.manager.handle(t))
                except Exception as exc:
                    results.append(exc)
        if any(isinstance(r, Outcome) and r.enqueued for r in results):
            # now that the rows are committed (inside the batch a claim would find none): claimed and
            # started from here, the send does not wait for another turn through the commit thread
            self.worker.send_committed()
        return results

    def handle_many_soon(self, transitions: Iterable[AlertTransition]) -> asyncio.Future[list[Outcome | Exception]]:
        """`handle_many` in the commit thread, after every commit asked for before (call on the event loop)."""
        return asyncio.get_running_loop().run_in_executor(self.committer, self.handle_many, list(transitions))

    async def run(self) -> None:
        """Deliver the outbox and check repeats every `evaluation_interval_s`, until `stop()`."""
        self._ticker = asyncio.create_task(self._tick(), name="alerts-repeat")
        try:
            await self.worker.run()
        finally:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker

    async def stop(self) -> None:
        await self.worker.stop()

    def close(self) -> None:
        self.committer.shutdown(wait=True)
        self.store.close()

    async def _tick(self) -> None:
        last_purge = 0.0
        while True:
            await asyncio.sleep(self.config.evaluation_interval_s)
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self.committer, self.manager.repeat_due)
                if time.monotonic() - last_purge > PURGE_EVERY_S:
                    last_purge = time.monotonic()
                    keep_ns = int(self.config.outbox.retention_days * 86400e9)
                    await loop.run_in_executor(self.committer, self.store.purge_delivered, self.clock() - keep_ns)
            except Exception:
                logger.exception("alerts: repeat check failed; trying again next interval")
