"""Test helpers: run the real service in a background thread against the fixtures' servers, or write the
config of an `urbansense run` child process."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from core.device import Device
from provisioning.registry import Registry
from service.app import Service
from service.config import Config, parse_config
from sim.daemons import Daemon


def make_config(tmp: Path, mosquitto: Daemon, influxd: Daemon, db: str, database: str = "",
                **sections: dict) -> Config:
    """A service config on the fixtures' broker and InfluxDB (database `db`), state in `tmp`. `database` is the
    `database` fixture's value: a PostgreSQL URL puts the registry, dead letters and alert state there
    ([database] url); a SQLite path (or "") keeps them in SQLite files under `tmp`, the embedded default."""
    data: dict = {
        "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "client_id": f"test-{db}"[:60]},
        "influxdb": {"url": influxd.url, "database": db, "flush_interval_s": 0.1},
        "registry": {"path": str(tmp / "registry.sqlite"), "reload_interval_s": 0.5},
        "pipeline": {"dead_letter_path": str(tmp / "deadletter.sqlite")},
        "metrics": {"port": 0},
        "logging": {"level": "WARNING"},
    }
    if "://" in database:
        data["database"] = {"url": database}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_config(data, base_dir=tmp, environ={})


def write_run_config(tmp: Path, broker: Daemon, influxd: Daemon, db: str, metrics_port: int, *, client_id: str,
                     devices: Iterable[Device] = (), **sections: dict[str, Any]) -> Path:
    """`tmp/config.toml` for `urbansense run` as a child process: the fixtures' broker and InfluxDB (database
    `db`, flushed every 0.1 s), `/readyz` and `/metrics` on `metrics_port`, registry and dead letters in
    `tmp`. `sections` add or override keys (`rules={"warm_up": False}`; a nested table by its dotted name,
    `**{"alerts.receivers.cases": {...}}`); `devices` are registered in `tmp/registry.sqlite` first."""
    data: dict[str, dict[str, Any]] = {
        "mqtt": {"port": broker.port, "client_id": client_id},
        "influxdb": {"url": influxd.url, "database": db, "flush_interval_s": 0.1},
        "registry": {"path": "registry.sqlite"},
        "pipeline": {"dead_letter_path": "deadletter.sqlite"},
        "metrics": {"port": metrics_port},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    path = tmp / "config.toml"
    path.write_text("".join(f"[{name}]\n" + "".join(f"{k} = {json.dumps(v, ensure_ascii=False)}\n"
                                                    for k, v in values.items())
                            for name, values in data.items()))  # JSON's scalars, strings and arrays are TOML's
    with Registry(tmp / "registry.sqlite") as reg:
        for d in devices:
            reg.add(d, by="test")
    return path


@contextmanager
def running(cfg: Config, *, ingest_id: str = "") -> Iterator[Service]:
    """The service in its own thread and event loop; stopped (flush, ack) on exit. Give each clustered
    service of one test its own `ingest_id` (the default, the host name, is one per machine)."""
    holder: dict = {}
    ready = threading.Event()

    def main() -> None:
        async def go() -> None:
            svc = Service(cfg, ingest_id=ingest_id)
            holder["svc"] = svc
            holder["loop"] = asyncio.get_running_loop()
            task = asyncio.create_task(svc.run())
            await svc.started.wait()
            ready.set()
            await task
        try:
            asyncio.run(go())
        except BaseException as exc:  # surfaced to the test below
            holder["error"] = exc
            ready.set()

    t = threading.Thread(target=main, name="service", daemon=True)
    t.start()
    assert ready.wait(30), "service did not start"
    if "error" in holder:
        raise holder["error"]
    svc: Service = holder["svc"]
    lorawan = svc.collector("lorawan")
    if lorawan is not None:
        assert lorawan.consumer.wait_connected(10), "service did not connect to the broker"
    try:
        yield svc
    finally:
        holder["loop"].call_soon_threadsafe(svc.stop)
        t.join(30)
        assert not t.is_alive(), "service did not stop"
        if "error" in holder:
            raise holder["error"]


def metric(port: int, name: str) -> float:
    """The sum of metric `name`'s samples over all its label sets, from the `/metrics` page on `port`."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M))


def recent_ns(hours_ago: float = 1.0) -> int:
    """A whole second about `hours_ago` before now, in ns: uplink times the time policy trusts
    (it refuses source times more than `pipeline.time_max_past_s`, 7 days, before receipt)."""
    return (time.time_ns() // 1_000_000_000 - int(hours_ago * 3600)) * 1_000_000_000


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
