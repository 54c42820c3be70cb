"""The collector registry: one line per transport, the module that defines its `PLUGIN`.

Adding a transport is one folder under `collectors/` (config section, parser, collector,
metrics, and a `plugin.py` with `PLUGIN = CollectorPlugin(...)`) and one line here.
"""

from __future__ import annotations

import importlib

from collectors.plugin import CollectorPlugin

PLUGINS: list[str] = [
    "collectors.lorawan.plugin",
    "collectors.nbiot.plugin",
    "collectors.modbus.plugin",
]
"""Modules defining `PLUGIN`, in the order the service starts their collectors."""


def plugins() -> list[CollectorPlugin]:
    """Every registered plug-in; a module without a `PLUGIN` is a `TypeError` naming it."""
    found = []
    for name in PLUGINS:
        plugin = getattr(importlib.import_module(name), "PLUGIN", None)
        if not isinstance(plugin, CollectorPlugin):
            raise TypeError(f"{name} (collectors/registry.py) defines no PLUGIN = CollectorPlugin(...)")
        found.append(plugin)
    return found
