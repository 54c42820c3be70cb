"""`device list|show|watch`: the registry joined with what the devices actually report."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.device_common import (
    IdArg,
    JsonOpt,
    RegistryOpt,
    config,
    console,
    device_app,
    err_console,
    fail,
    fmt_age,
    fmt_time,
    fmt_value,
    open_registry,
    with_influx,
)
from core.device import Device
from provisioning.live import LiveFacts, device_facts, last_seen
from service.watch import WatchedUplink, WatchError, watch
from storage.errors import StorageError


@device_app.command("list")
def list_(ctx: typer.Context,
          kind: Annotated[str | None, typer.Option(help="only this kind (water_level, bin_fill, noise, ...)")] = None,
          model: Annotated[str | None, typer.Option(help="only this model")] = None,
          district: Annotated[str | None, typer.Option(help="only this district")] = None,
          status: Annotated[str | None, typer.Option(help="only this status: active, maintenance, retired")] = None,
          silent_min: Annotated[float | None, typer.Option(
              "--silent-min", help="only devices with no reading for more than this many minutes "
                                   "(reads InfluxDB)")] = None,
          as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line, for scripts")] = False,
          registry: RegistryOpt = None) -> None:
    """List devices, filtered, as a table.

    Example: [bold]urbansense device list --kind water_level --district 朝阳 --silent-min 30[/bold]
    """
    where = {k: v for k, v in (("kind", kind), ("model", model), ("district", district), ("status", status)) if v}
    with open_registry(ctx, registry) as reg:
        devices = reg.all(**where)
    seen: dict[str, int] | None = None
    if silent_min is not None:
        cfg = config(ctx)
        assert cfg is not None
        try:
            seen = asyncio.run(with_influx(cfg, lambda c: last_seen(c, {d.kind for d in devices})))
        except StorageError as exc:
            raise fail(f"--silent-min: cannot read InfluxDB: {exc}", 1) from None
        cutoff_ns = time.time_ns() - int(silent_min * 60e9)
        devices = [d for d in devices if seen.get(d.id, 0) < cutoff_ns]
    if as_json:
        for d in devices:
            row: dict[str, Any] = asdict(d)
            if seen is not None:
                row["last_seen_ns"] = seen.get(d.id)
            typer.echo(json.dumps(row, ensure_ascii=False))
        return
    table = Table("id", "key", "model", "kind", "district", "zone", "status")
    table.columns[1].no_wrap = True
    if seen is not None:
        table.add_column("last seen")
    for d in devices:
        cells = [d.id, d.key, d.model, d.kind, d.district, d.zone_class, d.status]
        if seen is not None:
            t = seen.get(d.id)
            cells.append(f"{fmt_age(time.time() - t / 1e9)} ago" if t else "never")
        table.add_row(*cells)
    console.print(table)
    console.print(f"{len(devices)} devices")


def _facts(ctx: typer.Context, device: Device) -> tuple[LiveFacts | None, str]:
    cfg = config(ctx, required=False)
    if cfg is None:
        return None, "no config: InfluxDB not asked"
    try:
        return asyncio.run(with_influx(cfg, lambda c: device_facts(c, device))), ""
    except StorageError as exc:
        return None, f"cannot read InfluxDB: {exc}"


@device_app.command("show")
def show(ctx: typer.Context, id: IdArg, as_json: JsonOpt = False,
         live: Annotated[bool, typer.Option("--live/--no-live", help="add live facts from InfluxDB")] = True,
         registry: RegistryOpt = None) -> None:
    """Show a device's registry row and what it last reported: last seen, values, battery, RSSI/SNR, lost frames.

    Example: [bold]urbansense device show WL-CY-001[/bold]
    """
    with open_registry(ctx, registry) as reg:
        device = reg.find(id)
    if device is None:
        raise fail(f"no device with id {id!r} (see `urbansense device list`)", 1)
    facts, problem = _facts(ctx, device) if live else (None, "")
    if as_json:
        doc: dict[str, Any] = asdict(device)
        if live:
            doc["live"] = asdict(facts) if facts is not None else None
            if problem:
                doc["live_error"] = problem
        typer.echo(json.dumps(doc, ensure_ascii=False))
        return
    table = Table("field", "value", show_header=False, title=device.id)
    for k, v in asdict(device).items():
        table.add_row(k, json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else fmt_value(v))
    if facts is not None:
        _add_facts(table, facts)
    console.print(table)
    if problem:
        err_console.print(f"[yellow]live facts unavailable:[/yellow] {problem}")


def _add_facts(table: Table, facts: LiveFacts) -> None:
    table.add_section()
    seen = facts.last_seen_ns / 1e9 if facts.last_seen_ns else None
    table.add_row("last seen", fmt_time(seen, ago=True))
    table.add_row("last values", ", ".join(f"{k}={fmt_value(v)}" for k, v in sorted(facts.last_values.items()))
                  or "-")
    battery = [f"{facts.battery_pct:g} %" if facts.battery_pct is not None else "",
               f"{facts.battery_v:g} V" if facts.battery_v is not None else ""]
    table.add_row("battery", " ".join(b for b in battery if b) or "-")
    for n, up in enumerate(facts.recent):
        table.add_row("last uplinks" if n == 0 else "",
                      f"{fmt_time(up.time_ns / 1e9)}  fcnt {fmt_value(up.fcnt)}  RSSI {fmt_value(up.rssi_dbm)} dBm  "
                      f"SNR {fmt_value(up.snr_db)} dB")
    table.add_row(f"frames, last {facts.window_h} h",
                  f"{facts.uplinks_in_window} received, {facts.missing_frames_in_window} missing (fcnt gaps)")


def _uplink_line(up: WatchedUplink) -> str:
    head = (f"{fmt_time(up.time_ns / 1e9)}  fcnt {fmt_value(up.fcnt)}  port {up.port}  "
            f"RSSI {fmt_value(up.rssi_dbm)} dBm  SNR {fmt_value(up.snr_db)} dB  gateways {up.gateways}")
    if up.error:
        return f"{head}  DECODE ERROR: {up.error}"
    body = " ".join(f"{k}={fmt_value(v)}" for k, v in up.fields.items())
    warn = "".join(f"  warning: {w}" for w in up.warnings)
    return f"{head}  {body}{warn}"


@device_app.command("watch")
def watch_cmd(ctx: typer.Context, id: IdArg,
              count: Annotated[int, typer.Option(help="stop after this many uplinks (0: until Ctrl-C)")] = 0,
              timeout_s: Annotated[float, typer.Option("--timeout", help="stop after this many seconds "
                                                                         "(0: no limit)")] = 0,
              registry: RegistryOpt = None) -> None:
    """Follow a device's uplinks live from the broker: decoded values, RSSI, SNR, gateways. Ctrl-C ends it.

    Example: [bold]urbansense device watch WL-CY-001[/bold]   (then trigger an uplink, e.g. with the magnet)
    """
    cfg = config(ctx)
    assert cfg is not None
    with open_registry(ctx, registry) as reg:
        device = reg.find(id)
    if device is None:
        raise fail(f"no device with id {id!r} (see `urbansense device list`)", 1)

    def ready(topics: list[str]) -> None:
        print(f"watching {device.id} (key {device.key}, {device.model}) on {cfg.mqtt.host}:{cfg.mqtt.port} "
              f"{', '.join(topics)}; Ctrl-C to stop", flush=True)

    def show_uplink(up: WatchedUplink) -> None:
        print(_uplink_line(up), flush=True)

    seen = 0
    try:
        seen = watch(cfg, device, show_uplink, count=count, timeout_s=timeout_s, on_ready=ready)
    except WatchError as exc:
        raise fail(str(exc), 1) from None
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return
    if count and seen < count:
        raise fail(f"saw {seen} of {count} uplinks before the {timeout_s:g} s timeout", 1)
