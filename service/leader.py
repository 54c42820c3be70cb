"""The leader part of the service: rules, alert state, outbox, no-data ticks, the desk console, alert points.

One process runs it: the only process of a single instance (started with the service, fed by its
pipeline), or the elected leader of a cluster (started on gaining leadership, fed by the readings
bus, stopped on losing it). Its tasks are supervised under the names "rules" and "outbox"; a
stop on losing leadership is not a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loguru import logger

from core.reading import Reading
from core.tls import server_context
from provisioning.view import RegistryView
from service.alerting import RulesAndAlerts
from service.metrics import Metrics
from service.progress import LeaderProgress
from service.supervise import Supervisor
from storage.influx import InfluxClient
from storage.writer import BatchWriter

if TYPE_CHECKING:
    from service.desk.server import DeskServer

TASKS = ("rules", "outbox")


class LeaderPart:
    """Builds `RulesAndAlerts` (rules loaded, alert store opened); `start` warms up and spawns its tasks."""

    def __init__(self, cfg: Any, view: RegistryView, metrics: Metrics, supervisor: Supervisor, *,
                 progress: LeaderProgress | None = None) -> None:
        """`progress` (a cluster's leader): the watermark that bounds warm-up and follows the bus (service.progress)."""
        self.cfg = cfg
        self.view = view
        self.supervisor = supervisor
        self.progress = progress
        self.alerting = RulesAndAlerts(cfg, view, on_state=metrics.observe_rule_state)
        self.desk: DeskServer | None = None
        self.metrics = metrics
        self.stopping = asyncio.Event()
        self.tasks: dict[str, asyncio.Task[Any]] = {}

    async def start(self, influx: InfluxClient, writer: BatchWriter,
                    catching_up: Callable[[], bool] = lambda: False) -> None:
        """Desk console up, rule windows warmed from InfluxDB, then rule ticks and the outbox running."""
        cfg, alerting = self.cfg, self.alerting
        if cfg.desk.enabled:
            from service.desk.server import DeskServer  # aiohttp only when the console is on

            tls = (server_context(cfg.path(cfg.desk.cert_file), cfg.path(cfg.desk.key_file) if cfg.desk.key_file
                                  else None, setting="desk") if cfg.desk.cert_file else None)
            def watch(device_ids: frozenset[str]) -> None:  # readings of these gauges move the desk's rows
                alerting.live_devices = device_ids

            self.desk = DeskServer(cfg.desk, alerting.alerts, lambda: self.view.by_id, timezone=cfg.alerts.timezone,
                                   tls=tls, metrics=self.metrics, trend=alerting.trend_now, watch=watch,
                                   silent_factor=cfg.rules.silent_factor)
            alerting.on_live = self.desk.reading_seen
            await self.desk.start()
            alerting.on_change.append(self.desk.transitions_stored)
            desk = self.desk
            alerting.alerts.worker.on_change = lambda: desk.changed(urgent=False)  # a delivery's outcome
        keep = None
        if self.progress is not None:
            marks = await asyncio.to_thread(self.progress.load)

            def keep(r: Reading) -> bool:  # what a leader committed; the rest waits on the bus
                mark = marks.get(r.device_id)
                return mark is None or r.time_ns <= mark

        await alerting.warm_up(influx, keep)
        sup = self.supervisor
        self.tasks["rules"] = sup.spawn("rules", alerting.run(writer, self.stopping, catching_up))
        self.tasks["outbox"] = sup.spawn("outbox", alerting.deliver())

    async def on_readings(self, readings: list[Reading], writer: BatchWriter) -> None:
        """The readings bus's callback: rules over `readings`, their transitions committed (raises if the
        alert store cannot take them: the bus then keeps the message), their `alerts` points to the writer."""
        alerting = self.alerting
        lines = [got for r in readings if (got := alerting.on_reading(r))]
        alerting.flush(strict=True)
        if self.progress is not None:
            self.progress.advance(readings)
        if lines:
            await writer.add(b"".join(lines))

    async def stop(self, *, lost: bool = False) -> None:
        """Stop ticks and the outbox, store what is queued, close the store and the console.

        `lost` (leadership lost): the tasks are ended on purpose, not failures.
        """
        if lost:
            for name in TASKS:
                self.supervisor.forget(name, self.tasks.get(name))
        self.stopping.set()
        rules = self.tasks.get("rules")
        if rules is not None:
            await asyncio.gather(rules, return_exceptions=True)
        if self.desk is not None:
            with contextlib.suppress(Exception):
                await self.desk.stop()
        try:
            await self.alerting.close(self.tasks.get("outbox"))
        except Exception as exc:  # the store may be gone with the database that took leadership away
            if not lost:
                raise
            logger.warning("leader part: closing the alert store failed ({}: {})", type(exc).__name__, exc)
        finally:
            if self.progress is not None:
                self.progress.close()
