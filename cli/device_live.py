"""`device list|show|watch`: the registry joined with what the devices actually report."""

from __future__ import annotations

import asyncio
import difflib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from cli.device_common import (
    JsonOpt,
    LookupArg,
    RegistryOpt,
    city_tz,
    config,
    console,
    device_app,
    err_console,
    fail,
    fmt_age,
    fmt_time,
    fmt_value,
    get_device,
    in_district,
    iso_time,
    open_registry,
    with_influx,
)
from cli.tables import TextTable, plain
from core.database import holds_nothing
from core.device import STATUSES, Device
from core.kinds import KIND_NAMES
from decoders import all_models
from provisioning.live import LiveFacts, device_facts, last_seen
from provisioning.lookup import key_prefix
from service.watch import WatchedUplink, WatchError, watch
from storage.deadletter import DeadLetter, DeadLetterStore
from storage.errors import StorageError


def _kinds() -> list[str]:
    return sorted(KIND_NAMES)


def _models() -> list[str]:
    return sorted(m.model for m in all_models())


def _check_choice(option: str, value: str | None, accepted: list[str]) -> None:
    """Exit 2 naming the accepted values when `value` is not one of them (a typo must not list nothing)."""
    if value is not None and value not in accepted:
        close = difflib.get_close_matches(value, accepted, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise fail(f"{option}: {value!r} is not one of: {', '.join(accepted)}{hint}", 2)


@device_app.command("list")
def list_(ctx: typer.Context,
          kind: Annotated[str | None, typer.Option(help="only this kind (water_level, bin_fill, noise, ...)")] = None,
          model: Annotated[str | None, typer.Option(help="only this model")] = None,
          district: Annotated[str | None, typer.Option(help="district containing this text (朝阳 finds 朝阳区)")]
          = None,
          street: Annotated[str | None, typer.Option(help="street (街道) containing this text")] = None,
          key: Annotated[str | None, typer.Option("--key", help="DevEUI/IMEI or its start, any case, separators "
                                                  "allowed")] = None,
          status: Annotated[str | None, typer.Option(help="only this status: active, maintenance, retired")] = None,
          silent_min: Annotated[float | None, typer.Option(
              "--silent-min", help="only devices with no reading for more than this many minutes "
                                   "(reads InfluxDB)")] = None,
          as_json: Annotated[bool, typer.Option("--json", help="JSON Lines: one device object per line")] = False,
          registry: RegistryOpt = None) -> None:
    """List devices, filtered, as a table. An unknown kind, model or status exits 2 with the accepted values.

    Example: [bold]urbansense device list --kind water_level --district 朝阳 --silent-min 30[/bold]
    """
    _check_choice("--kind", kind, _kinds())
    _check_choice("--model", model, _models())
    _check_choice("--status", status, list(STATUSES))
    where = {k: v for k, v in (("kind", kind), ("model", model), ("status", status)) if v}
    contains = {"street": street} if street else {}
    with open_registry(ctx, registry) as reg:
        devices = in_district(reg, reg.matching(contains=contains, **where), district)
    if key is not None:
        wanted = key_prefix(key)
        if wanted is None:
            raise fail(f"--key: {key!r} is not (the start of) a DevEUI or IMEI: hex digits, '-' or ':' allowed", 2)
        devices = [d for d in devices if d.key.startswith(wanted)]
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
                t = seen.get(d.id)
                row["last_seen_ns"], row["last_seen"] = t, iso_time(t / 1e9) if t else None
            typer.echo(json.dumps(row, ensure_ascii=False))
        return
    table = TextTable("id", "key", "model", "kind", "district", "zone", "status")
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


def _last_refusal(ctx: typer.Context, device: Device) -> DeadLetter | None:
    """The newest dead letter carrying the device's key, from the configured store (None without config or store)."""
    cfg = config(ctx, required=False)
    if cfg is None:
        return None
    where = cfg.dead_letter_database()
    if isinstance(where, Path) and not where.exists():
        return None
    with DeadLetterStore(where, migrate_schema=holds_nothing(where, "dead_letters")) as store:
        return store.last_for_key(device.key)


@device_app.command("show")
def show(ctx: typer.Context, id: LookupArg, as_json: JsonOpt = False,
         live: Annotated[bool, typer.Option("--live/--no-live", help="add live facts from InfluxDB")] = True,
         registry: RegistryOpt = None) -> None:
    """Show a device's registry row and what it last reported: last seen, values, battery, RSSI/SNR, lost frames,
    and its last refusal (reason, time, detail) when it is sending but nothing is stored. `--json`: one object.

    Example: [bold]urbansense device show 24-E1-24-71-3C-21-00-01[/bold]   (the DevEUI on the label)
    """
    with open_registry(ctx, registry) as reg:
        device = get_device(reg, id)
    facts, problem = _facts(ctx, device) if live else (None, "")
    refusal = _last_refusal(ctx, device) if live else None
    seen_ns = facts.last_seen_ns if facts is not None else None
    if refusal is not None and seen_ns is not None and refusal.time_ns <= seen_ns:
        refusal = None  # refused once, stored since: not why it is silent
    if as_json:
        doc: dict[str, Any] = asdict(device)
        if live:
            doc["live"] = asdict(facts) if facts is not None else None
            if problem:
                doc["live_error"] = problem
            doc["last_refusal"] = None if refusal is None else {
                "time": iso_time(refusal.time_ns / 1e9), "reason": refusal.reason, "detail": refusal.detail,
                "dead_letter_id": refusal.id}
        typer.echo(json.dumps(doc, ensure_ascii=False))
        return
    table = TextTable("field", "value", show_header=False, title=f"{device.id} (times {city_tz()})")
    for k, v in asdict(device).items():
        table.add_row(k, json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else fmt_value(v))
    if facts is not None:
        _add_facts(table, facts)
    if refusal is not None:
        table.add_section()
        table.add_row(Text("last refusal", style="red"),
                      f"{fmt_time(refusal.time_ns / 1e9, ago=True)}: {refusal.reason}")
        table.add_row("", refusal.detail)
        table.add_row("", "sending, but nothing stored since; "
                      f"`urbansense deadletter show {refusal.id}` has the raw message")
    console.print(table)
    if problem:
        err_console.print(f"[yellow]live facts unavailable:[/yellow] {plain(str(problem))}")


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
                      f"{fmt_time(up.time_ns / 1e9, short=True)}  fcnt {fmt_value(up.fcnt)}  "
                      f"RSSI {fmt_value(up.rssi_dbm)} dBm  SNR {fmt_value(up.snr_db)} dB")
    table.add_row(f"frames, last {facts.window_h} h",
                  f"{facts.uplinks_in_window} received, {facts.missing_frames_in_window} missing (fcnt gaps)")


def _uplink_dict(up: WatchedUplink) -> dict[str, Any]:
    """One watched uplink for `device watch --json`."""
    doc = asdict(up)
    doc["time"] = iso_time(up.time_ns / 1e9)
    return doc


def _uplink_line(up: WatchedUplink) -> str:
    head = (f"{fmt_time(up.time_ns / 1e9)}  fcnt {fmt_value(up.fcnt)}  port {up.port}  "
            f"RSSI {fmt_value(up.rssi_dbm)} dBm  SNR {fmt_value(up.snr_db)} dB  gateways {up.gateways}")
    if up.error:
        return f"{head}  DECODE ERROR: {up.error}"
    body = " ".join(f"{k}={fmt_value(v)}" for k, v in up.fields.items())
    warn = "".join(f"  warning: {w}" for w in up.warnings)
    return f"{head}  {body}{warn}"


@device_app.command("watch")
def watch_cmd(ctx: typer.Context, id: LookupArg,
              count: Annotated[int, typer.Option(help="stop after this many uplinks (0: until Ctrl-C)")] = 0,
              timeout_s: Annotated[float, typer.Option("--timeout", help="stop after this many seconds "
                                                                         "(0: no limit)")] = 0,
              as_json: Annotated[bool, typer.Option("--json", help="JSON Lines: one uplink object per line")]
              = False,
              registry: RegistryOpt = None) -> None:
    """Follow a device's uplinks live from the broker: decoded values, RSSI, SNR, gateways. Ctrl-C ends it.

    Example: [bold]urbansense device watch WL-CY-001[/bold]   (then trigger an uplink, e.g. with the magnet)
    """
    cfg = config(ctx)
    assert cfg is not None
    with open_registry(ctx, registry) as reg:
        device = get_device(reg, id)

    def ready(topics: list[str]) -> None:
        print(f"watching {device.id} (key {device.key}, {device.model}) on {cfg.mqtt.host}:{cfg.mqtt.port} "
              f"{', '.join(topics)}; Ctrl-C to stop", file=sys.stderr if as_json else sys.stdout, flush=True)

    def show_uplink(up: WatchedUplink) -> None:
        print(json.dumps(_uplink_dict(up), ensure_ascii=False) if as_json else _uplink_line(up), flush=True)

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
