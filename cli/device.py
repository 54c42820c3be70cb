"""`urbansense device ...`: the field technician's commands on the registry (one module per group of commands)."""

from __future__ import annotations

import importlib

import typer

from cli.device_common import device_app

_COMMAND_MODULES = ("cli.device_edit", "cli.device_bulk", "cli.device_live")
"""Each adds its commands to `device_app` on import, in this order (the order `--help` lists them)."""


def register(app: typer.Typer) -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(name)
    app.add_typer(device_app, name="device")
