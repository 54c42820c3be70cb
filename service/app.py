"""The running service: wires collectors, the pipeline, storage, rules and alerts, and stops cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from loguru import logger
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector as Collector_

from alerts.metrics import AlertsCollector
from alerts.outbox import OutboxStats
from collectors.plugin import Collector, MetricsSource
from core.database import describe_url, is_postgres_url
from core.reading import Reading
from core.secrets import reveal
from core.timing import backoff_s
from core.uplink import Incoming, Sink
from decoders.folders import ModelFolders
from decoders.quality import Judge
from grafana.device_info import write_device_info
from provisioning.view import RegistryView
from service import faults
from service.alerting import RulesAndAlerts
from service.bus import BusMetrics, ReadingsConsumer, ReadingsPublisher
from service.collectors import build_collectors, envelope_parsers
from service.config import Config
from service.dedup import Deduplicator
from service.httpserver import MetricsServer
from service.inbox import Inbox
from service.ingest_lock import IngestIdLock
from service.leader import LeaderPart
from service.leadership import FileLock, Leadership, LockBackend, PostgresLock
from service.metrics import KeptStats, Metrics
from service.model_watch import report, watch_models
from service.pipeline import Pipeline
from service.progress import LeaderProgress
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
    """One urbansense process. `run()` until `stop()`; nothing acknowledged before it is stored.

    Its long-running tasks are supervised (`service.supervise`): if one dies, `/readyz` turns 503
    naming it, the service stops (flushing what it can) and `exit_code` is 1. `/readyz` answers
    from `readiness`: "starting", each collector, then storage (InfluxDB and the spool).

    With `[cluster] enabled = false` it does everything: collectors, pipeline and writer (the ingest
    part) and the leader part (`service.leader`) fed by the pipeline. In a cluster, roles "both" and
    "ingest" run the ingest part and publish each stored chunk's readings to the readings bus; roles
    "both" and "leader" campaign (`service.leadership`) and run the leader part, fed by the bus,
    only while they lead.
    """

    def __init__(self, cfg: Config, *, ingest_id: str = "", extra_metrics: Sequence[MetricsSource] = (),
                 retiring: bool = False) -> None:
        self.cfg = cfg
        self.retiring = retiring and cfg.cluster.enabled and cfg.cluster.ingests
        """`run --retire`: drain this ingest id's MQTT sessions, end them, and exit (scaling down)."""
        self.extra_metrics = list(extra_metrics)
        self.ingest_id = ingest_id or default_ingest_id()
        """This process's name on the readings bus (`<readings_topic>/<ingest_id>`) and in client ids. Stable
        across restarts (the host name by default): its persistent MQTT session, and whatever the broker holds
        in it unacknowledged, is resumed by the next start with the same id."""
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
        self.view: RegistryView | None = None
        self.leader: LeaderPart | None = None
        """The leader part while this process runs it (always, unless clustered)."""
        self.leadership: Leadership | None = None
        self.publisher: ReadingsPublisher | None = None
        self.consumer: ReadingsConsumer | None = None
        self._deadletters: DeadLetterStore | None = None
        self._leading: asyncio.Task[None] | None = None
        self._leader_running = False
        self.model_folders = ModelFolders(cfg.path(p) for p in cfg.decoders.paths)
        self._id_lock: IngestIdLock | None = None

    @property
    def alerting(self) -> RulesAndAlerts | None:
        """Rules and alerts while this process runs the leader part."""
        return self.leader.alerting if self.leader is not None else None

    @property
    def desk(self) -> DeskServer | None:
        """The emergency desk console, when [desk] enabled and this process runs the leader part."""
        return self.leader.desk if self.leader is not None else None

    def collector(self, name: str) -> Collector | None:
        return next((c for c in self.collectors if c.name == name), None)

    def stop(self) -> None:
        self.stopping.set()

    def _task_failed(self, name: str) -> None:
        self.exit_code = 1
        self.stop()

    def hold_ingest_id(self) -> None:
        """Take this process's ingest id on this machine (`service.ingest_lock`); `IngestIdHeld` when another
        running process has it. A folder that cannot hold the lock file is logged and passed over."""
        if self._id_lock is not None:
            return
        try:
            self._id_lock = IngestIdLock(self.cfg.path(self.cfg.spool.path), self.ingest_id)
        except OSError as exc:
            logger.warning("ingest id {}: no lock file in {} ({}); a second process with this id would not be "
                           "refused", self.ingest_id, self.cfg.path(self.cfg.spool.path), exc)

    async def run(self) -> None:
        """Hold the ingest id, then run (`IngestIdHeld`, before anything starts, when another process has it)."""
        self.hold_ingest_id()
        try:
            await self._run()
        finally:
            self.release_ingest_id()

    def release_ingest_id(self) -> None:
        if self._id_lock is not None:
            self._id_lock.release()
            self._id_lock = None

    async def _run(self) -> None:
        cfg = self.cfg
        cl = cfg.cluster
        loop = asyncio.get_running_loop()
        logger.debug("configuration (secrets masked): {}", cfg.model_dump(mode="json"))
        if cfg.metrics.enabled:  # first: /healthz answers while the rest starts (and InfluxDB may be down)
            self.metrics_server = MetricsServer(self.metrics.registry, cfg.metrics.host, cfg.metrics.port,
                                                ready=self.readiness, token=reveal(cfg.metrics.token))
            self.metrics_server.start()
        for source in self.extra_metrics:
            self.metrics.registry.register(source)
        ic = cfg.influxdb
        self.influx = influx_client(cfg)
        database_task: asyncio.Task[None] | None = None
        if ic.create_database and not await self._try_ensure_database():
            database_task = asyncio.create_task(self._ensure_database(), name="influx-create-database")
        pc = cfg.pipeline
        deadletters = DeadLetterStore(cfg.dead_letter_database(), max_bytes=pc.dead_letter_max_bytes,
                                      max_age_s=pc.dead_letter_max_age_days * 86400,
                                      on_pruned=lambda why, n: self.metrics.dead_letters_pruned.labels(why).inc(n),
                                      migrate_schema=cfg.database.migrate_on_start,
                                      fallback=cfg.path(pc.dead_letter_path) if cfg.database.shared else None,
                                      on_fallback=self.metrics.dead_letters_fallback.inc)
        self._deadletters = deadletters

        def rejected(lines: bytes, reason: str) -> None:
            self.metrics.points_rejected.inc(max(1, len(split_lines(lines))))
            deadletters.add_many([DeadLetter(time_ns=time.time_ns(), source="influxdb", topic="",
                                             payload=lines, reason="influx_rejected", detail=reason)])

        sc = cfg.spool
        if sc.enabled:
            # a cluster's processes on one machine (`run --workers`) keep a spool folder each
            spool_path = cfg.path(sc.path) / self.ingest_id if cl.enabled else cfg.path(sc.path)
            self.spool = open_spool(spool_path, max_bytes=sc.max_bytes, segment_bytes=sc.segment_bytes)
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
        models_task: asyncio.Task[None] | None = None
        if cl.ingests:
            await asyncio.to_thread(self.model_folders.refresh)
            report(self.model_folders, self.metrics.model_problems)
            models_task = asyncio.create_task(watch_models(self.model_folders, cfg.decoders.reload_interval_s,
                                                           self.metrics.model_problems), name="model-folders")
        view = RegistryView(cfg.registry_database(), migrate_schema=cfg.database.migrate_on_start,
                            cache=cfg.path(cfg.registry.path).with_suffix(".cache.json") if cfg.database.shared
                            else None)
        self.view = view
        if not view.by_id:
            logger.warning("device registry {} holds no devices: every uplink will be dead-lettered as an unknown "
                           "device (add some with `urbansense device import SHEET.xlsx` or `device add`)",
                           describe_url(cfg.registry_database()))
        inbox: Inbox[Incoming] = Inbox(cfg.pipeline.queue_size, loop)
        sink = Sink(put=inbox.put, put_async=inbox.put_async)
        if cl.ingests:
            self.pipeline = make_pipeline(cfg, view=view, writer=writer, deadletters=deadletters,
                                          metrics=self.metrics)
            built = build_collectors(cfg, lambda: view.by_key, ingest_id=self.ingest_id if cl.enabled else "",
                                     retiring=self.retiring)
            self.collectors = built.collectors
            udp = getattr(self.collector("nbiot"), "udp", None)
            if udp is not None:  # frames of devices with a MAC key must carry its tag
                udp.mac_key_of = lambda imei: view.mac_keys.get(imei)
            for c in self.collectors:
                self.readiness.add_check(c.name, _collector_check(c))
            for source in built.metrics:
                self.metrics.registry.register(source)
        self.readiness.add_check("storage", self._storage_check)
        self.metrics.registry.register(KeptStats(lambda: writer.stats, self._outbox_stats))
        self.metrics.registry.register(_CurrentAlerts(lambda: self.leader))
        if not cl.enabled:
            self.leader = LeaderPart(cfg, view, self.metrics, self.supervisor)
            self.metrics.leader.set(1)
        elif cl.campaigns:
            self.leadership = Leadership(leader_lock(cfg), takeover_s=cl.takeover_s, on_change=self._leadership)
            self.readiness.add_check("leadership", self._leadership_check)
            self.readiness.add_note("leadership", self.leadership.describe)
        if cl.ingests and cl.enabled:
            self.publisher = ReadingsPublisher.from_config(cfg, self.ingest_id)
            self.publisher.start()
            assert self.pipeline is not None
            self.pipeline.publish = self.publisher.publish
            self.metrics.registry.register(BusMetrics(publisher=self.publisher))
        if cl.enabled and cl.campaigns:
            self.metrics.registry.register(BusMetrics(consumer=lambda: self.consumer))
        stats = self.pipeline.stats if self.pipeline is not None else None

        def catching_up() -> bool:
            return stats is not None and (len(inbox) >= self.pipeline.chunk_size  # type: ignore[union-attr]
                                          or stats.catching_up(time.time_ns(), time.monotonic()))

        self._catching_up = catching_up
        if self.leader is not None:
            await self.leader.start(self.influx, writer, catching_up)
            assert self.pipeline is not None
            self.pipeline.on_reading.append(self.leader.alerting.on_reading)
            self.pipeline.on_chunk_end.append(self.leader.alerting.on_chunk_end)
        sup = self.supervisor
        if self.pipeline is not None and self.pipeline.judge is not None:
            counting = QualityCount(self.metrics)
            self.pipeline.on_reading.append(counting.on_reading)
            self.pipeline.on_chunk_end.append(counting.on_chunk_end)
        pipe_task = sup.spawn("pipeline", self.pipeline.run(inbox, self.stopping)) if self.pipeline else None
        if cl.ingests:
            await write_device_info(writer, view.by_id.values())
        refresh_task = sup.spawn("registry", self._refresh_registry(view))
        leadership_task = sup.spawn("leadership", self.leadership.run(self.stopping)) if self.leadership else None
        for c in self.collectors:
            await c.start(sink)
            for name, task in getattr(c, "tasks", dict)().items():
                sup.adopt(f"{c.name}:{name}", task)
        logger.info("urbansense running{}: {} devices, collectors {}, InfluxDB {} db {}",
                    f" (cluster role {cl.role}, ingest id {self.ingest_id})" if cl.enabled else "",
                    len(view.by_id), [c.name for c in self.collectors], ic.url, ic.database)
        self.started.set()
        retire_task = asyncio.create_task(self._retire_when_drained(), name="retire") if self.retiring else None
        try:
            await self.stopping.wait()
        finally:
            if retire_task is not None:
                retire_task.cancel()
            logger.info("stopping: no new messages; flushing what was received")
            sup.stopping()
            inbox.close()
            if pipe_task is not None:
                await asyncio.gather(pipe_task, return_exceptions=True)
            if leadership_task is not None:  # steps down: the leader part stops, then the lock is released
                await asyncio.gather(leadership_task, return_exceptions=True)
            elif self.leader is not None:
                await self.leader.stop()
            try:
                await writer.close(timeout=30)
            except TimeoutError:
                logger.error("InfluxDB did not take the last batches within 30 s; they stay unacknowledged "
                             "at the broker and are delivered again on the next start")
            if self.publisher is not None:
                await asyncio.to_thread(self.publisher.stop)
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
            summary = shutdown_summary(stats.received if stats is not None else 0, writer, self.spool)
            if sup.failed:
                logger.error("stopped after the failure of {}: {}", ", ".join(sup.failed), summary)
            else:
                logger.info(summary)

    # -- cluster: the leader part follows leadership ------------------------------------------------

    async def _leadership(self, leading: bool) -> None:
        """`Leadership`'s callback: start the leader part in the background on gain, stop it on loss."""
        self.metrics.leader.set(1 if leading else 0)
        self._leader_running = False
        if leading:
            self._leading = asyncio.create_task(self._lead(), name="leader-start")
            return
        if self._leading is not None and not self._leading.done():
            self._leading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._leading
        self._leading = None
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            task = self.supervisor.tasks.get("readings")
            self.supervisor.forget("readings")
            if self.stopping.is_set():  # graceful: what is held is handed over and acknowledged first
                with contextlib.suppress(Exception):
                    await consumer.stop()
            elif task is not None:  # lost: held messages stay with the broker for the next leader
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        leader, self.leader = self.leader, None
        if leader is not None:
            await leader.stop(lost=not self.stopping.is_set())

    async def _lead(self) -> None:
        """The leader part on gaining leadership: warm up from InfluxDB, then consume the readings bus."""
        view = self.view
        assert view is not None and self.influx is not None and self.writer is not None
        try:
            progress = await asyncio.to_thread(LeaderProgress, self.cfg.leader_database(),
                                               migrate_schema=self.cfg.database.migrate_on_start)
            leader = await asyncio.to_thread(lambda: LeaderPart(self.cfg, view, self.metrics, self.supervisor,
                                                                progress=progress))
            self.leader = leader
            await leader.start(self.influx, self.writer, self._catching_up)
            writer = self.writer
            deadletters = self._deadletters

            async def on_readings(readings: list[Reading]) -> None:
                await leader.on_readings(readings, writer)

            def on_malformed(letter: DeadLetter) -> None:
                if deadletters is not None:
                    deadletters.add_many([letter])

            consumer = ReadingsConsumer.from_config(self.cfg, on_readings, on_malformed=on_malformed)
            self.consumer = consumer
            self.supervisor.adopt("readings", await consumer.start())
            while not consumer.ready()[0]:  # subscribed: from now on the broker keeps the session's messages
                await asyncio.sleep(0.05)
            self._leader_running = True
            logger.info("leader part running: rules warm, {}", consumer.ready()[1])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # cannot lead now (e.g. the alert store's database is gone): let another try
            logger.opt(exception=exc).error("the leader part could not start ({}: {}); stepping down",
                                            type(exc).__name__, exc)
            self.metrics.task_failures.labels("leader-start").inc()
            if self.leadership is not None:
                self.leadership.resign()

    def _leadership_check(self) -> str | None:
        """A standby is ready; a leader once its leader part runs (warmed up) and its readings bus is connected."""
        if self.consumer is not None:
            ok, why = self.consumer.ready()
            if not ok:
                return why
        if self.leadership is not None and self.leadership.is_leader and not self._leader_running:
            return "leader part starting (alert state restored, rule windows warming up from InfluxDB)"
        return None

    def _outbox_stats(self) -> OutboxStats | None:
        return self.leader.alerting.alerts.worker.stats if self.leader is not None else None

    async def _retire_when_drained(self, quiet_s: float = 5.0) -> None:
        """Stop once every collector's session is drained: no message for `quiet_s` and none unacknowledged."""
        consumers = [c for c in (getattr(col, "consumer", None) for col in self.collectors) if c is not None]
        while True:
            await asyncio.sleep(0.5)
            if all(c.connected and c.idle_s >= quiet_s and c.in_flight == 0 for c in consumers):
                logger.info("retiring ingest {}: sessions drained; ending them and exiting", self.ingest_id)
                self.stop()
                return

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


def default_ingest_id() -> str:
    """This machine's short host name as one MQTT topic level: a stable ingest id (its session is resumed)."""
    name = socket.gethostname().split(".")[0] or "ingest"
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


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


def leader_lock(cfg: Config) -> LockBackend:
    """The lock leadership is held by: a PostgreSQL advisory lock when `[database] url` is PostgreSQL,
    else a file lock beside the alert store (the SQLite set-up: every process on one machine)."""
    url = str(cfg.leader_database())
    if is_postgres_url(url):
        return PostgresLock(url, cfg.cluster.lock_key, timeout_s=max(1.0, cfg.cluster.takeover_s / 5))
    return FileLock(cfg.path(cfg.alerts.db_path).parent / "leader.lock")


def file_lock_cluster(cfg: Config) -> str | None:
    """Why `[cluster] enabled` on SQLite is one machine's set-up only, or None when the leader lock is PostgreSQL's
    (or there is no cluster): a file lock cannot see a candidate on another machine, which would lead too."""
    if not cfg.cluster.enabled or is_postgres_url(str(cfg.leader_database())):
        return None
    return ("[cluster] enabled (or run --role) with an empty [database] url: the leader lock is then a file on this "
            "machine (leader.lock beside [alerts] db_path), so a leader candidate on another machine would lead too "
            "and every notification would go out twice. Across machines set [database] url to PostgreSQL (also "
            "through URBANSENSE_DATABASE_URL; docs/deploy.md); on one machine use `urbansense run --workers N` "
            "(the only cluster form run allows on SQLite), or set [cluster] enabled = false.")


class _CurrentAlerts(Collector_):
    """`AlertsCollector` of the leader part this process runs now (nothing on a standby)."""

    def __init__(self, leader: Callable[[], LeaderPart | None]) -> None:
        self.leader = leader

    def collect(self) -> Iterator[Metric]:
        leader = self.leader()
        if leader is None:
            return
        alerts = leader.alerting.alerts
        yield from AlertsCollector(alerts.store, lambda: alerts.worker.stats).collect()


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


async def run_service(cfg: Config, *, ingest_id: str = "", retiring: bool = False) -> int:
    """Run until SIGINT or SIGTERM (exit code 0) or a task's failure (1); stop consuming, flush, acknowledge.
    `retiring`: until this ingest id's sessions are drained, then end them and exit 0."""
    tune_process()
    svc = Service(cfg, ingest_id=ingest_id, retiring=retiring)
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
