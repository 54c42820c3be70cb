"""A new transport is one folder and one registration line: the service takes its config section and metrics.

The test writes a tiny collector package into a temporary folder (config section, parser,
collector, metrics, `PLUGIN`), adds its one line to `collectors.registry.PLUGINS`, and runs
the real service against a real influxd.
"""

from __future__ import annotations

import random
import textwrap
from pathlib import Path

import httpx
import pytest
from conftest import influx_query
from servicekit import running, wait_until

from collectors import registry
from core.device import Device
from decoders import get_model
from provisioning.registry import Registry
from service.config import ConfigError, parse_config
from sim.daemons import Daemon
from storage.deadletter import DeadLetterStore

PLUGIN_PY = '''
"""Tick: hands the pipeline `count` registers of one Modbus-style device, and one frame it cannot parse."""

import time

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector as MetricsCollector
from pydantic import Field

from collectors.plugin import CollectorContext, CollectorPlugin
from core.config import Section
from core.uplink import EnvelopeError, Incoming, Sink, Uplink


class TickConfig(Section):
    enabled: bool = Field(False, description="send ticks")
    device_key: str = Field("", description="key of the device the ticks are for")
    payload_hex: str = Field("", description="payload of every tick")
    port: int = Field(0, description="its port")
    count: int = Field(3, ge=1, description="ticks sent on start")


def parse_raw(topic: str, payload: bytes, received_ns: int) -> Uplink:
    raise EnvelopeError("tick_garbage", f"{len(payload)} bytes that are no tick")


class TickCollector:
    name = "tick"

    def __init__(self, cfg: TickConfig) -> None:
        self.cfg = cfg
        self.sent = 0

    async def start(self, sink: Sink) -> None:
        t0 = time.time_ns() - 10 * 10**9
        for i in range(self.cfg.count):
            up = Uplink(self.cfg.device_key, bytes.fromhex(self.cfg.payload_hex), self.cfg.port, t0 + i * 10**9,
                        "tick", t0)
            await sink.put_async(Incoming("tick", "tick", up.payload, t0, uplink=up))
            self.sent += 1
        await sink.put_async(Incoming("tick-raw", "tick", b"garbage", t0))

    async def stop(self) -> None:
        pass

    def ready(self) -> tuple[bool, str]:
        return True, f"{self.sent} ticks sent"


class TickMetrics(MetricsCollector):
    def __init__(self, collector: TickCollector) -> None:
        self.collector = collector

    def collect(self):
        yield CounterMetricFamily("acme_ticks_sent", "ticks handed to the pipeline", value=self.collector.sent)


def build(ctx: CollectorContext) -> TickCollector | None:
    cfg = ctx.section("tick", TickConfig)
    return TickCollector(cfg) if cfg.enabled else None


PLUGIN = CollectorPlugin(name="tick", sections={"tick": TickConfig}, build=build, parsers={"tick-raw": parse_raw},
                         metrics=TickMetrics)
'''


@pytest.fixture
def tick_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The `acme_tick` package in a temporary folder, registered with one line."""
    pkg = tmp_path / "plugins" / "acme_tick"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "plugin.py").write_text(textwrap.dedent(PLUGIN_PY))
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    monkeypatch.setattr(registry, "PLUGINS", [*registry.PLUGINS, "acme_tick.plugin"])  # the registration line
    return "acme_tick.plugin"


def test_the_config_takes_the_new_section_and_checks_it(tick_plugin: str) -> None:
    cfg = parse_config({"tick": {"enabled": True, "count": 2}}, environ={})
    assert cfg.tick.enabled and cfg.tick.count == 2 and cfg.influxdb.database == "urbansense"
    with pytest.raises(ConfigError) as err:
        parse_config({"tick": {"count": 0, "bogus": 1}}, environ={})
    assert "tick.count" in str(err.value) and "tick.bogus: unknown key" in str(err.value)


def test_without_the_registration_line_the_section_is_unknown() -> None:
    with pytest.raises(ConfigError, match="tick: unknown key"):
        parse_config({"tick": {"enabled": True}}, environ={})


def test_the_service_runs_the_new_collector_stores_its_readings_and_serves_its_metrics(
        tmp_path: Path, tick_plugin: str, influxd: Daemon, influx_db: str,
        database: str) -> None:
    model = get_model("generic-mb-radar")
    payload, port = model.codec.encode(model.sample(random.Random(3)))
    device = Device(id="TICK-1", key="10.0.0.9:502/7", model=model.model, kind=model.kind,
                    install={"mount_height_mm": 3000.0})
    cfg = parse_config({
        "database": {"url": database if "://" in database else ""},
        "lorawan": {"chirpstack": False},
        "influxdb": {"url": influxd.url, "database": influx_db, "flush_interval_s": 0.1},
        "registry": {"path": "registry.sqlite"},
        "pipeline": {"dead_letter_path": "deadletter.sqlite"},
        "metrics": {"port": 0},
        "logging": {"level": "WARNING"},
        "tick": {"enabled": True, "device_key": device.key, "payload_hex": payload.hex(), "port": port, "count": 3},
    }, base_dir=tmp_path, environ={})
    with Registry(cfg.registry_database()) as reg:
        reg.add(device, by="test")
    with running(cfg) as svc:
        assert [c.name for c in svc.collectors] == ["tick"]
        wait_until(lambda: svc.pipeline.stats.readings >= 3 and svc.pipeline.stats.rejected, 30, "the ticks")
        metrics = httpx.get(f"http://127.0.0.1:{svc.metrics_server.port}/metrics").text
        assert svc.collector("tick").ready() == (True, "3 ticks sent")
    assert "acme_ticks_sent_total 3.0" in metrics
    assert 'urbansense_uplinks_rejected_total{reason="tick_garbage"} 1.0' in metrics
    series = influx_query(influxd, influx_db, f'SELECT count(*) FROM "{model.kind}" WHERE "device_id" = \'TICK-1\'')
    assert series and max(v for v in series[0]["values"][0][1:] if isinstance(v, int)) == 3
    with DeadLetterStore(cfg.dead_letter_database()) as store:
        (dead,) = store.list(limit=10)
    assert (dead.source, dead.reason, dead.payload) == ("tick-raw", "tick_garbage", b"garbage")
