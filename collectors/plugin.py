"""The collector plug-in contract: what one transport folder provides, and what the service gives it.

A transport is one folder under `collectors/` with a `plugin.py` that defines `PLUGIN`, and one
line in `collectors/registry.py`. The service gathers every plug-in's config sections into
`Config`, builds the collectors their sections enable, registers their envelope parsers with
the pipeline and their metrics with its Prometheus registry.

    PLUGIN = CollectorPlugin(
        name="lorawan",                                   # the collector's name, e.g. in /readyz
        sections={"lorawan": LorawanConfig},              # [lorawan] of config.toml (pydantic)
        build=build,                                      # CollectorContext -> Collector | None
        parsers={"lorawan": parse},                       # Incoming.source -> envelope parser
        metrics=LorawanMetrics,                           # Collector -> prometheus custom collector
        unshared=None,                                    # CollectorContext -> why not in N processes | None
    )
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from prometheus_client.registry import Collector as MetricsCollector
from pydantic import BaseModel

from core.device import DeviceSource
from core.uplink import Sink, Uplink

Parser = Callable[[str, bytes, int], Uplink]
"""(topic, payload, received_ns) → `Uplink`, or `EnvelopeError` (a `Rejected`) naming the reason."""

S = TypeVar("S", bound=BaseModel)


class Collector(Protocol):
    """A running transport.

    `start(sink)` begins handing messages to the pipeline (each as an `Incoming` carrying an
    `Uplink`, a `Rejected`, or raw bytes for one of the plug-in's `parsers`) and returns once
    it listens; `stop()` stops taking new messages; `ready()` is (ok, why) for readiness.
    """

    name: str

    async def start(self, sink: Sink) -> None: ...

    async def stop(self) -> None: ...

    def ready(self) -> tuple[bool, str]: ...


MetricsSource = MetricsCollector
"""A prometheus_client custom collector: `collect()` yields metric families read from the collector's
own stats at scrape time (so a counter is never kept in two places)."""


@dataclass(frozen=True)
class CollectorContext:
    """What `build` is given: the plug-in's validated config sections, the service's devices, and
    `path`, which resolves a configured path against the config file's folder."""

    sections: Mapping[str, BaseModel]
    devices: DeviceSource
    path: Callable[[str], Path] = Path
    share_group: str = ""
    """A cluster's MQTT 5 shared subscription group: subscribe `$share/<group>/<filter>` ("" = not clustered)."""
    ingest_id: str = ""
    """This ingest process's name in a cluster, appended to fixed MQTT client ids ("" = not clustered)."""
    retiring: bool = False
    """Leave the cluster for good: drain the persistent sessions and end them (`MqttConsumer.retiring`)."""

    def section(self, name: str, model: type[S]) -> S:
        """The validated `[name]` section, as `model` (a `TypeError` if the plug-in declared another)."""
        value = self.sections[name]
        if not isinstance(value, model):
            raise TypeError(f"section [{name}] is a {type(value).__name__}, not a {model.__name__}")
        return value


@dataclass(frozen=True)
class CollectorPlugin:
    """One transport: its config sections, how to build it, its envelope parsers and its metrics."""

    name: str
    sections: Mapping[str, type[BaseModel]]
    build: Callable[[CollectorContext], Collector | None]
    parsers: Mapping[str, Parser] = field(default_factory=dict)
    metrics: Callable[[Any], MetricsSource] | None = None
    unshared: Callable[[CollectorContext], str | None] | None = None
    """Why the transport, as configured, cannot run in several ingest processes of one machine (a port only
    one process can bind, devices each process would poll again); None: it can (`urbansense run --workers`)."""
