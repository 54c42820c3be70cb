"""The service's side of the collector plug-ins (`collectors/registry.py`): build the ones the config enables.

`Config` already holds every plug-in's sections (`service.config.config_model`); here each
plug-in builds its collector from them, and hands over its envelope parsers (for the
pipeline) and its metrics (for the service's Prometheus registry). A collector may also have
`tasks() -> {name: asyncio.Task}`: its long-running tasks, supervised by the service (one that
dies stops the service with exit code 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from collectors.plugin import Collector, CollectorContext, CollectorPlugin, MetricsSource, Parser
from collectors.registry import plugins as registered_plugins
from core.device import DeviceSource


@dataclass
class BuiltCollectors:
    """The enabled collectors, in registration order, with the parsers and metrics of every plug-in."""

    collectors: list[Collector] = field(default_factory=list)
    parsers: dict[str, Parser] = field(default_factory=dict)
    metrics: list[MetricsSource] = field(default_factory=list)


def envelope_parsers(plugins: Sequence[CollectorPlugin] | None = None) -> dict[str, Parser]:
    """`Incoming.source` → parser, from every registered plug-in (a source named twice is a `TypeError`)."""
    parsers: dict[str, Parser] = {}
    for plugin in registered_plugins() if plugins is None else plugins:
        for source, parse in plugin.parsers.items():
            if source in parsers:
                raise TypeError(f"collector plug-in {plugin.name}: parser source {source!r} is already taken")
            parsers[source] = parse
    return parsers


def _context(cfg: Any, plugin: CollectorPlugin, devices: DeviceSource, ingest_id: str,
             retiring: bool = False) -> CollectorContext:
    clustered = bool(ingest_id)
    return CollectorContext(sections={name: getattr(cfg, name) for name in plugin.sections}, devices=devices,
                            path=cfg.path, share_group=cfg.cluster.share_group if clustered else "",
                            ingest_id=ingest_id, retiring=retiring and clustered)


def build_collectors(cfg: Any, devices: DeviceSource, plugins: Sequence[CollectorPlugin] | None = None, *,
                     ingest_id: str = "", retiring: bool = False) -> BuiltCollectors:
    """Each plug-in builds its collector from its sections of `cfg` (None: not enabled) and, if it has
    metrics, a custom collector over it. `devices` is the service's registry view, by key. With an
    `ingest_id` (a cluster's ingest process) MQTT subscriptions are shared (`[cluster] share_group`)
    and fixed client ids get `-<ingest_id>`."""
    plugins = registered_plugins() if plugins is None else list(plugins)
    built = BuiltCollectors(parsers=envelope_parsers(plugins))
    for plugin in plugins:
        ctx = _context(cfg, plugin, devices, ingest_id, retiring)
        collector = plugin.build(ctx)
        if collector is None:
            continue
        built.collectors.append(collector)
        if plugin.metrics is not None:
            built.metrics.append(plugin.metrics(collector))
    return built


def unshared_collectors(cfg: Any, plugins: Sequence[CollectorPlugin] | None = None) -> list[str]:
    """Why each enabled transport cannot run in several ingest processes of one machine (empty: all can)."""
    found = []
    for plugin in registered_plugins() if plugins is None else plugins:
        why = plugin.unshared(_context(cfg, plugin, dict, "w")) if plugin.unshared is not None else None
        if why:
            found.append(why)
    return found
