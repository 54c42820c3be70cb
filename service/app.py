"""The running service: wires the MQTT collector, the pipeline and storage, and stops cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

from collectors.mqtt import Inbound, MqttConsumer
from loguru import logger
from storage.deadletter import DeadLetter, DeadLetterStore
from storage.influx import InfluxClient
from storage.writer import BatchWriter

from collectors.lorawan import parse as parse_lorawan
from provisioning.view import RegistryView
from service.config import Config
from service.httpserver import MetricsServer
from service.inbox import Inbox
from service.metrics import Metrics
from service.pipeline import Incoming, Pipeline


class Service:
    """One ingest process. `run()` until `stop()`; nothing acknowledged before it is stored."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.metrics = Metrics()
        self.stopping = asyncio.Event()
        self.started = asyncio.Event()
        self.pipeline: Pipeline | None = None
        self.consumer: MqttConsumer | None = None
        self.metrics_server: MetricsServer | None = None
        self.influx: InfluxClient | None = None

    def topics(self) -> list[str]:
        lw = self.cfg.lorawan
        return [t for on, t in ((lw.chirpstack, lw.chirpstack_topic), (lw.tts, lw.tts_topic)) if on]

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        ic = cfg.influxdb
        self.influx = InfluxClient(ic.url, ic.database, username=ic.username or None,
                                   password=ic.password or None, token=ic.token or None,
                                   retention_policy=ic.retention_policy or None, timeout=ic.timeout_s)
        if ic.create_database:
            await self._ensure_database()
        deadletters = DeadLetterStore(cfg.path(cfg.pipeline.dead_letter_path))

        def rejected(lines: bytes, reason: str) -> None:
            self.metrics.points_rejected.inc(max(1, lines.count(b"\n")))
            deadletters.add_many([DeadLetter(time_ns=time.time_ns(), source="influxdb", topic="",
                                             payload=lines, reason="influx_rejected", detail=reason)])

        writer = BatchWriter(self.influx, batch_size=ic.batch_size, flush_interval_s=ic.flush_interval_s,
                             max_batches_in_flight=ic.max_batches_in_flight, on_rejected=rejected,
                             on_written=self._written)
        view = RegistryView(cfg.path(cfg.registry.path))
        self.pipeline = Pipeline(view=view, writer=writer, deadletters=deadletters, metrics=self.metrics,
                                 parsers={"mqtt": parse_lorawan}, log_every_s=cfg.pipeline.log_every_s)
        inbox: Inbox[Incoming] = Inbox(cfg.pipeline.queue_size, loop)

        def on_message(msg: Inbound) -> None:
            inbox.put(Incoming("mqtt", msg.topic, msg.payload, msg.received_ns, ack=lambda: consumer.ack(msg)))

        mc = cfg.mqtt
        consumer = MqttConsumer(host=mc.host, port=mc.port, client_id=mc.client_id, topics=self.topics(),
                                on_message=on_message, username=mc.username or None,
                                password=mc.password or None, receive_maximum=mc.receive_maximum,
                                session_expiry_s=mc.session_expiry_s, keepalive=mc.keepalive_s,
                                reconnect_min_s=mc.reconnect_min_s, reconnect_max_s=mc.reconnect_max_s)
        self.consumer = consumer
        if cfg.metrics.enabled:
            self.metrics_server = MetricsServer(self.metrics.registry, cfg.metrics.host, cfg.metrics.port,
                                                ready=self._ready)
            self.metrics_server.start()
        pipe_task = asyncio.create_task(self.pipeline.run(inbox, self.stopping), name="pipeline")
        refresh_task = asyncio.create_task(self._refresh_registry(view), name="registry")
        consumer.start()
        logger.info("urbansense running: {} devices, topics {}, InfluxDB {} db {}",
                    len(view.by_id), self.topics(), ic.url, ic.database)
        self.started.set()
        try:
            await self.stopping.wait()
        finally:
            logger.info("stopping: no new messages; flushing what was received")
            inbox.close()
            await pipe_task
            await writer.close()
            refresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresh_task
            await asyncio.to_thread(consumer.stop)
            if self.metrics_server:
                self.metrics_server.stop()
            await self.influx.aclose()
            view.close()
            deadletters.close()
            logger.info("stopped: {} received, {} readings written", self.pipeline.stats.received,
                        self.pipeline.stats.readings)

    def _written(self, points: int, seconds: float) -> None:
        self.metrics.points_written.inc(points)
        self.metrics.write_seconds.observe(seconds)

    def _ready(self) -> tuple[bool, str]:
        if self.consumer is None or not self.consumer.connected:
            return False, "broker not connected"
        return True, "ok"

    async def _ensure_database(self) -> None:
        assert self.influx is not None
        delay = 0.5
        while not self.stopping.is_set():
            try:
                await self.influx.ensure_database()
                return
            except Exception as exc:  # any failure here is retried: InfluxDB may still be starting
                logger.warning("InfluxDB not ready ({}); retrying in {:.1f}s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    async def _refresh_registry(self, view: RegistryView) -> None:
        while True:
            await asyncio.sleep(self.cfg.registry.reload_interval_s)
            try:
                await asyncio.to_thread(view.refresh)
            except Exception as exc:  # a locked or briefly unreadable registry must not stop ingest
                logger.warning("registry reload failed: {}", exc)


async def run_service(cfg: Config) -> None:
    """Run until SIGINT or SIGTERM, then stop consuming, flush, acknowledge and return."""
    svc = Service(cfg)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, svc.stop)
    await svc.run()
