"""The running service: wires collectors, the pipeline, storage, rules and alerts, and stops cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import sys
import time
from typing import TYPE_CHECKING

from loguru import logger

from alerts.metrics import AlertsCollector
from collectors.plugin import Collector
from core.secrets import reveal
from core.timing import backoff_s
from core.tls import server_context
from core.uplink import Incoming, Sink
from decoders.folders import ModelFolders
from decoders.quality import Judge
from grafana.device_info import write_device_info
from provisioning.view import RegistryView
from service import faults
from service.alerting import RulesAndAlerts
from service.collectors import build_collectors, envelope_parsers
from service.config import Config
from service.dedup import Deduplicator
from service.httpserver import MetricsServer
from service.inbox import Inbox
from service.metrics import KeptStats, Metrics
from service.model_watch import report, watch_models
from service.pipeline import Pipeline
from service.quality_count import QualityCount
from service.supervise import Readiness, ReadyCheck, Supervisor
from storage.deadletter import DeadLetter, DeadLetterStore
from storage.health import open_spool, shutdown_summary, storage_not_ready
from storage.influx import InfluxClient
from storage.lineprotocol import split_lines
from storage.spool import DiskSpool
from storage.writer import BatchWriter

if TYPE_CHECKING:
    from service.desk.server import DeskServer

SWITCH_INTERVAL_S = 0.001
"""How long a thread of `urbansense run` may hold the GIL while another waits for it (Python's default: 5 ms).
The alert path crosses threads (paho's network thread → the event loop → the alerts' commit thread, whose
fsync releases the GIL); with the default, each crossing could wait 5 ms behind the pipeline's decoding
(BENCHMARKS.md, "Flood alert latency under load")."""

FAILURE_LINGER_S = 1.0
"""After a task's failure, `/readyz` (503) and `/metrics` stay up this long before the process exits,
so that a probe or a scrape sees why it is going down."""


class Service:
    """One ingest process. `run()` until `stop()`; nothing acknowledged before it is stored.

    Its long-running tasks are supervised (`service.supervise`): if one dies, `/readyz` turns 503
    naming it, the service stops (flushing what it can) and `exit_code` is 1. `/readyz` answers
    from `readiness`: "starting", each collector, then storage (InfluxDB and the spool).
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.metrics = Metrics()
        self.stopping = asyncio.Event()
        self.started = asyncio.Event()
        self.exit_code = 0
        self.readiness = Readiness()
        self.readiness.add_check("service", lambda: None if self.started.is_set() else "starting")
        self.supervisor = Supervisor(self.readiness, self.metrics.task_failures, self._task_failed)
        self.pipeline: Pipeline | None = None
        self.collectors: list[Collector] = []
        self.metrics_server: MetricsServer | None = None
        self.influx: InfluxClient | None = None
        self.writer: BatchWriter | None = None
        self.spool: DiskSpool | None = None
        self.alerting: RulesAndAlerts | None = None
        self.desk: DeskServer | None = None  # the emergency desk console, when [desk] enabled
        self.model_folders = ModelFolders(cfg.path(p) for p in cfg.decoders.paths)

    def collector(self, name: str) -> Collector | None:
        return next((c for c in self.collectors if c.name == name), None)

    def stop(self) -> None:
        self.stopping.set()

    def _task_failed(self, name: str) -> None:
        self.exit_code = 1
        self.stop()

    async def run(self) -> None:
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        logger.debug("configuration (secrets masked): {}", cfg.model_dump(mode="json"))
        if cfg.metrics.enabled:  # first: /healthz answers while the rest starts (and InfluxDB may be down)
            self.metrics_server = MetricsServer(self.metrics.registry, cfg.metrics.host, cfg.metrics.port,
                                                ready=self.readiness, token=reveal(cfg.metrics.token))
            self.metrics_server.start()
        ic = cfg.influxdb
        self.influx = influx_client(cfg)
        database_task: asyncio.Task[None] | None = None
        if ic.create_database and not await self._try_ensure_database():
            database_task = asyncio.create_task(self._ensure_database(), name="influx-create-database")
        pc = cfg.pipeline
        deadletters = DeadLetterStore(cfg.path(pc.dead_letter_path), max_bytes=pc.dead_letter_max_bytes,
                                      max_age_s=pc.dead_letter_max_age_days * 86400,
                                      on_pruned=lambda why, n: self.metrics.dead_letters_pruned.labels(why).inc(n))

        def rejected(lines: bytes, reason: str) -> None:
            self.metrics.points_rejected.inc(max(1, len(split_lines(lines))))
            deadletters.add_many([DeadLetter(time_ns=time.time_ns(), source="influxdb", topic="",
                                             payload=lines, reason="influx_rejected", detail=reason)])

        sc = cfg.spool
        if sc.enabled:
            self.spool = open_spool(cfg.path(sc.path), max_bytes=sc.max_bytes, segment_bytes=sc.segment_bytes)
        if self.spool is not None:
            self.metrics.spool_bytes.set_function(lambda: max(0, self.spool.pending_bytes) if self.spool else 0)
            self.metrics.spool_oldest_age.set_function(lambda: self.spool.oldest_age_s() if self.spool else 0.0)
        writer = BatchWriter(self.influx, batch_size=ic.batch_size, flush_interval_s=ic.flush_interval_s,
                             max_batches_in_flight=ic.max_batches_in_flight, on_rejected=rejected,
                             on_written=self._written, spool=self.spool, spool_after_failures=sc.after_failures,
                             probe_max_s=sc.probe_max_s, drain_bytes=sc.drain_bytes,
                             on_task_failure=self.supervisor.task_failed)
        self.writer = writer
        writer.start()
        await asyncio.to_thread(self.model_folders.refresh)
        report(self.model_folders, self.metrics.model_problems)
        models_task = asyncio.create_task(watch_models(self.model_folders, cfg.decoders.reload_interval_s,
                                                       self.metrics.model_problems), name="model-folders")
        view = RegistryView(cfg.path(cfg.registry.path))
        self.pipeline = make_pipeline(cfg, view=view, writer=writer, deadletters=deadletters, metrics=self.metrics)
        inbox: Inbox[Incoming] = Inbox(cfg.pipeline.queue_size, loop)
        sink = Sink(put=inbox.put, put_async=inbox.put_async)
        built = build_collectors(cfg, lambda: view.by_key)
        self.collectors = built.collectors
        udp = getattr(self.collector("nbiot"), "udp", None)
        if udp is not None:  # frames of devices with a MAC key must carry its tag
            udp.mac_key_of = lambda imei: view.mac_keys.get(imei)
        for c in self.collectors:
            self.readiness.add_check(c.name, _collector_check(c))
        self.readiness.add_check("storage", self._storage_check)
        for source in built.metrics:
            self.metrics.registry.register(source)
        self.alerting = RulesAndAlerts(cfg, view, on_state=self.metrics.observe_rule_state)
        alerting = self.alerting
        self.metrics.registry.register(KeptStats(lambda: writer.stats, lambda: alerting.alerts.worker.stats))
        self.metrics.registry.register(AlertsCollector(alerting.alerts.store, lambda: alerting.alerts.worker.stats))
        if cfg.desk.enabled:
            from service.desk.server import DeskServer  # aiohttp only when the console is on

            tls = (server_context(cfg.path(cfg.desk.cert_file), cfg.path(cfg.desk.key_file) if cfg.desk.key_file
                                  else None, setting="desk") if cfg.desk.cert_file else None)
            self.desk = DeskServer(cfg.desk, alerting.alerts, lambda: view.by_id, timezone=cfg.alerts.timezone,
                                   tls=tls)
            await self.desk.start()
            alerting.on_change.append(self.desk.transitions_stored)
            desk = self.desk
            alerting.alerts.worker.on_change = lambda: desk.changed(urgent=False)  # a delivery's outcome
        await self.alerting.warm_up(self.influx)
        self.pipeline.on_reading.append(self.alerting.on_reading)
        self.pipeline.on_chunk_end.append(self.alerting.on_chunk_end)
        if self.pipeline.judge is not None:
            counting = QualityCount(self.metrics)
            self.pipeline.on_reading.append(counting.on_reading)
            self.pipeline.on_chunk_end.append(counting.on_chunk_end)
        stats = self.pipeline.stats

        def catching_up() -> bool:
            return len(inbox) >= self.pipeline.chunk_size or stats.catching_up(time.time_ns(), time.monotonic())

        sup = self.supervisor
        alert_task = sup.spawn("rules", self.alerting.run(writer, self.stopping, catching_up))
        outbox_task = sup.spawn("outbox", self.alerting.deliver())
        pipe_task = sup.spawn("pipeline", self.pipeline.run(inbox, self.stopping))
        await write_device_info(writer, view.by_id.values())
        refresh_task = sup.spawn("registry", self._refresh_registry(view))
        for c in self.collectors:
            await c.start(sink)
            for name, task in getattr(c, "tasks", dict)().items():
                sup.adopt(f"{c.name}:{name}", task)
        logger.info("urbansense running: {} devices, collectors {}, InfluxDB {} db {}",
                    len(view.by_id), [c.name for c in self.collectors], ic.url, ic.database)
        self.started.set()
        try:
            await self.stopping.wait()
        finally:
            logger.info("stopping: no new messages; flushing what was received")
            sup.stopping()
            inbox.close()
            await asyncio.gather(pipe_task, alert_task, return_exceptions=True)
            if self.desk is not None:
                await self.desk.stop()
            await self.alerting.close(outbox_task)
            try:
                await writer.close(timeout=30)
            except TimeoutError:
                logger.error("InfluxDB did not take the last batches within 30 s; they stay unacknowledged "
                             "at the broker and are delivered again on the next start")
            if self.spool is not None:
                self.spool.close()
            for task in (refresh_task, models_task, database_task):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            self.model_folders.close()
            for c in self.collectors:
                await c.stop()
            if self.metrics_server:
                if self.exit_code:
                    await asyncio.sleep(FAILURE_LINGER_S)
                self.metrics_server.stop()
            await self.influx.aclose()
            view.close()
            deadletters.close()
            summary = shutdown_summary(self.pipeline.stats.received, writer, self.spool)
            if sup.failed:
                logger.error("stopped after the failure of {}: {}", ", ".join(sup.failed), summary)
            else:
                logger.info(summary)

    def _written(self, points: int, seconds: float) -> None:
        self.metrics.points_written.inc(points)
        self.metrics.write_seconds.observe(seconds)

    def _storage_check(self) -> str | None:
        return storage_not_ready(self.writer, self.spool is not None) if self.writer is not None else None

    async def _try_ensure_database(self) -> bool:
        """One attempt at CREATE DATABASE; False (logged) when InfluxDB cannot be reached now."""
        assert self.influx is not None
        try:
            await self.influx.ensure_database()
            return True
        except Exception as exc:  # start anyway: batches go to the spool (or wait, acks held) until it is back
            logger.warning("InfluxDB not ready at start ({}); ingesting into the spool (or holding acks) and "
                           "creating the database once it answers", exc)
            return False

    async def _ensure_database(self) -> None:
        assert self.influx is not None
        attempt = 0
        while not self.stopping.is_set():
            attempt += 1
            delay = backoff_s(attempt, 0.5, 10.0)
            try:
                await self.influx.ensure_database()
                return
            except Exception as exc:  # any failure here is retried: InfluxDB may still be starting
                logger.warning("InfluxDB not ready ({}); retrying in {:.1f}s", exc, delay)
                await asyncio.sleep(delay)

    async def _refresh_registry(self, view: RegistryView) -> None:
        while True:
            await asyncio.sleep(self.cfg.registry.reload_interval_s)
            try:
                changed = await asyncio.to_thread(view.refresh)
            except Exception as exc:  # a locked or briefly unreadable registry must not stop ingest
                logger.warning("registry reload failed: {}", exc)
                continue
            if changed and self.writer is not None:
                await write_device_info(self.writer, view.by_id.values())


def influx_client(cfg: Config) -> InfluxClient:
    """The configured InfluxDB client (v1 API)."""
    ic = cfg.influxdb
    return InfluxClient(reveal(ic.url), ic.database, username=ic.username or None,
                        password=reveal(ic.password) or None, token=reveal(ic.token) or None,
                        retention_policy=ic.retention_policy or None, timeout=ic.timeout_s,
                        verify=cfg.influx_verify())


async def open_influx(cfg: Config) -> InfluxClient:
    """`influx_client`, with the database created first when the config says so."""
    client = influx_client(cfg)
    if cfg.influxdb.create_database:
        await client.ensure_database()
    return client


def make_pipeline(cfg: Config, *, view: RegistryView, writer: BatchWriter, deadletters: DeadLetterStore,
                  metrics: Metrics) -> Pipeline:
    """The pipeline as the service runs it (parsers, time policy, duplicate window); `urbansense trace` uses it too.
    `URBANSENSE_FAULT_INJECT` (tests only, `service.faults`) is read here, once."""
    pc = cfg.pipeline
    return Pipeline(view=view, writer=writer, deadletters=deadletters, metrics=metrics, parsers=envelope_parsers(),
                    chunk_size=pc.chunk_size, log_every_s=pc.log_every_s, time_policy=pc.time_policy(),
                    unwritten_max=pc.queue_size,
                    dedup=Deduplicator(pc.duplicate_window_s),
                    judge=Judge(cfg.quality.overrides("kinds"), cfg.quality.overrides("models"))
                    if cfg.quality.enabled else None,
                    fault=faults.from_env())


def _collector_check(c: Collector) -> ReadyCheck:
    def check() -> str | None:
        ok, why = c.ready()
        return None if ok else why
    return check


def tune_process() -> None:
    """Process-wide settings of `urbansense run` (a `Service` inside another program leaves them alone)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def freeze_startup_heap() -> None:
    """Move what start-up built (rules, registry, decoders, config) out of the garbage collector's walks, so
    that a full collection, which holds every thread, covers only what was made since."""
    gc.collect()
    gc.freeze()


async def run_service(cfg: Config) -> int:
    """Run until SIGINT or SIGTERM (exit code 0) or a task's failure (1); stop consuming, flush, acknowledge."""
    tune_process()
    svc = Service(cfg)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, svc.stop)

    async def when_started() -> None:
        await svc.started.wait()
        freeze_startup_heap()

    frozen = asyncio.create_task(when_started(), name="freeze-startup-heap")
    try:
        await svc.run()
    finally:
        frozen.cancel()
    return svc.exit_code
