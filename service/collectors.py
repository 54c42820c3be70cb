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


def build_collectors(cfg: Any, devices: DeviceSource,
                     plugins: Sequence[CollectorPlugin] | None = None) -> BuiltCollectors:
    """Each plug-in builds its collector from its sections of `cfg` (None: not enabled) and, if it has
    metrics, a custom collector over it. `devices` is the service's registry view, by key."""
    plugins = registered_plugins() if plugins is None else list(plugins)
    built = BuiltCollectors(parsers=envelope_parsers(plugins))
    for plugin in plugins:
        ctx = CollectorContext(sections={name: getattr(cfg, name) for name in plugin.sections}, devices=devices,
                               path=cfg.path)
        collector = plugin.build(ctx)
        if collector is None:
            continue
        built.collectors.append(collector)
        if plugin.metrics is not None:
            built.metrics.append(plugin.metrics(collector))
    return built
