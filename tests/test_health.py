"""Health you can trust: `/healthz` despite 100 idle connections, from the first second, and a start
with InfluxDB down that ingests into the spool instead of refusing."""

from __future__ import annotations

import asyncio
import socket
import statistics
import threading
import time
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry
from servicekit import make_config, running, wait_until
from test_faults_ingest import DB, Stream, assert_exact, provision, tally

from service.app import Service
from service.httpserver import MetricsServer
from sim.daemons import Daemon, free_port, start_influxd


def test_100_idle_connections_do_not_keep_healthz_from_answering_within_100_ms() -> None:
    server = MetricsServer(CollectorRegistry(), "127.0.0.1", 0, ready=lambda: (True, "ok"), timeout_s=5.0)
    server.start()
    idle = []
    try:
        for i in range(100):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            if i % 2:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # half a request, then nothing
            idle.append(s)
        time.sleep(0.2)
        with httpx.Client(timeout=2) as http:
            times = []
            for _ in range(5):
                started = time.perf_counter()
                r = http.get(f"http://127.0.0.1:{server.port}/healthz", headers={"Connection": "close"})
                times.append(time.perf_counter() - started)
                assert r.status_code == 200 and r.text == "ok\n"
        print(f"\nHEALTHZ with 100 idle connections: {', '.join(f'{t * 1000:.1f}' for t in times)} ms")
        assert statistics.median(times) < 0.1, f"/healthz took {times}"
    finally:
        for s in idle:
            s.close()
        server.stop()


def test_an_idle_connection_is_closed_after_the_timeout() -> None:
    server = MetricsServer(CollectorRegistry(), "127.0.0.1", 0, ready=lambda: (True, "ok"), timeout_s=0.5)
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\n")
            started = time.monotonic()
            assert s.recv(1024) == b"", "the server should give up on a half request and close"
            assert time.monotonic() - started < 4
    finally:
        server.stop()


def test_healthz_answers_within_a_second_of_start_while_influxdb_is_down(tmp_path: Path, mosquitto: Daemon,
        database: str) -> None:
    metrics_port = free_port()
    cfg = make_config(tmp_path, mosquitto, mosquitto, "nothing", database=database, metrics={"port": metrics_port},
                      influxdb={"url": f"http://127.0.0.1:{free_port()}"},  # nothing listens there
                      spool={"path": str(tmp_path / "spool")}, rules={"warm_up": False})
    first: list[float] = []
    svc_box: dict = {}

    def main() -> None:
        async def go() -> None:
            svc = Service(cfg)
            svc_box["svc"], svc_box["loop"] = svc, asyncio.get_running_loop()
            await svc.run()
        asyncio.run(go())

    started = time.monotonic()
    t = threading.Thread(target=main, daemon=True)
    t.start()
    try:
        deadline = started + 10
        while time.monotonic() < deadline and not first:
            try:
                if httpx.get(f"http://127.0.0.1:{metrics_port}/healthz", timeout=0.5).status_code == 200:
                    first.append(time.monotonic() - started)
            except httpx.HTTPError:
                time.sleep(0.02)
        assert first and first[0] < 1.0, f"/healthz first answered after {first}"
        wait_until(lambda: "svc" in svc_box and svc_box["svc"].started.is_set(), 30, "the service to start")
        r = httpx.get(f"http://127.0.0.1:{metrics_port}/readyz")
        assert r.status_code == 200, "InfluxDB down with room in the spool: still ready"
    finally:
        svc_box["loop"].call_soon_threadsafe(svc_box["svc"].stop)
        t.join(60)


def test_start_with_influxdb_down_ingests_into_the_spool_and_stores_everything_later(
        tmp_path: Path, mosquitto: Daemon, database: str) -> None:
    port = free_port()
    cfg = make_config(tmp_path, mosquitto, mosquitto, DB, database=database,
                      influxdb={"url": f"http://127.0.0.1:{port}",
                                                                   "timeout_s": 2.0},
                      spool={"path": str(tmp_path / "spool"), "probe_max_s": 0.5})
    provision(cfg.registry_database())
    influx: list[Daemon] = []
    try:
        with running(cfg) as svc:
            stream = Stream(mosquitto.port, rate=200, total=1000).start()
            consumer = svc.collector("lorawan").consumer
            wait_until(lambda: consumer.stats.acked >= 500, 30, "uplinks acknowledged while InfluxDB is down")
            assert svc.writer.stats.points_spooled >= 500, "acknowledged because they are in the spool"
            influx.append(start_influxd(tmp_path / "influx", port=port))
            published = stream.wait()
            counts = tally("start with InfluxDB down", influx[0], stream, published, timeout=60)
            wait_until(lambda: svc.spool.empty, 30, "the spool to drain")
        assert_exact(counts)
    finally:
        for d in influx:
            d.stop()
