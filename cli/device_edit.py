"""`device add|update|calibrate|retire|move|history`: every change validated first and recorded in the audit."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from cli.device_common import (
    ByOpt,
    IdArg,
    JsonOpt,
    LookupArg,
    RegistryOpt,
    bbox,
    city_tz,
    config,
    console,
    device_app,
    fail,
    fail_invalid,
    fmt_time,
    get_device,
    iso_time,
    open_registry,
    parse_time,
    with_influx,
)
from cli.tables import TextTable
from core.device import Device
from decoders import get_model
from provisioning.live import last_distance
from provisioning.registry import Registry, RegistryError
from provisioning.validate import InvalidDevice, check_device, device_raw
from storage.errors import StorageError

LatOpt = Annotated[float | None, typer.Option("--lat", help="latitude, WGS-84 decimal degrees")]
LonOpt = Annotated[float | None, typer.Option("--lon", help="longitude, WGS-84 decimal degrees")]
TextOpt = Annotated[str | None, typer.Option()]
MmOpt = Annotated[float | None, typer.Option()]


def _revalidate(ctx: typer.Context, old: Device, **changes: Any) -> Device:
    """The device with `changes` laid over it, checked by the same rules as `add`."""
    raw = device_raw(old)
    raw.update({k: v for k, v in changes.items() if v is not None})
    try:
        return check_device(raw, bbox=bbox(ctx))
    except InvalidDevice as exc:
        raise fail_invalid(exc) from None


def _apply(reg: Registry, old: Device, new: Device, *, by: str | None, action: str,
           note: dict[str, Any] | None = None) -> list[str]:
    """Write the fields that differ; returns their names (empty: nothing changed)."""
    changes = {k: getattr(new, k) for k in Device.__dataclass_fields__ if getattr(new, k) != getattr(old, k)}
    if not changes:
        return []
    try:
        reg.update(old.id, by=by, action=action, note=note, **changes)
    except RegistryError as exc:
        raise fail(str(exc)) from None
    return sorted(changes)


def _get(reg: Registry, text: str) -> Device:
    """The device to change: by exact id or key (any form) — never by prefix, a change must name its device."""
    return get_device(reg, text, prefix=False)


@device_app.command("add")
def add(ctx: typer.Context,
        id: IdArg,
        key: Annotated[str, typer.Option("--key", "--deveui", "--imei",
                                         help="DevEUI (16 hex digits, any case, '-' or ':' allowed), IMEI "
                                              "(15 digits with its Luhn check digit) or OneNET onenet:<dev_id>")],
        model: Annotated[str, typer.Option(help="model id from `urbansense models`; it fixes the kind")],
        lat: LatOpt = None,
        lon: LonOpt = None,
        address: Annotated[str, typer.Option(help="street address")] = "",
        district: Annotated[str, typer.Option(help="district (区) name")] = "",
        street: Annotated[str, typer.Option(help="street (街道) name")] = "",
        zone_class: Annotated[str, typer.Option(help="noise: GB 3096 zone class 0, 1, 2, 3, 4a or 4b")] = "",
        site: Annotated[str, typer.Option(help="site label, e.g. a construction site")] = "",
        mount_height_mm: Annotated[float | None, typer.Option(
            help="water level: sensor height above the dry road, mm")] = None,
        bin_depth_mm: Annotated[float | None, typer.Option(
            help="bin fill: distance from the sensor to the empty bin's floor, mm")] = None,
        dead_zone_mm: Annotated[float | None, typer.Option(help="override the sensor's dead zone, mm")] = None,
        interval_s: Annotated[int, typer.Option(help="expected report interval, seconds")] = 300,
        by: ByOpt = None,
        registry: RegistryOpt = None) -> None:
    """Add one device; everything is checked before anything is written.

    Example: [bold]urbansense device add WL-CY-001 --deveui 24-E1-24-71-3C-21-00-01 --model milesight-em500-udl
    --lat 39.93 --lon 116.45 --district 朝阳 --mount-height-mm 2000[/bold]
    """
    raw = {"id": id, "key": key, "model": model, "latitude": lat, "longitude": lon, "address": address,
           "district": district, "street": street, "zone_class": zone_class, "site": site,
           "mount_height_mm": mount_height_mm, "bin_depth_mm": bin_depth_mm, "dead_zone_mm": dead_zone_mm,
           "expected_interval_s": interval_s}
    try:
        device = check_device(raw, bbox=bbox(ctx))
    except InvalidDevice as exc:
        raise fail_invalid(exc) from None
    with open_registry(ctx, registry) as reg:
        try:
            reg.add(device, by=by)
        except RegistryError as exc:
            raise fail(str(exc)) from None
    console.print(f"added {device.id} ({device.model}, {device.kind}, key {device.key})")


@device_app.command("update")
def update(ctx: typer.Context, id: IdArg,
           key: Annotated[str | None, typer.Option("--key", "--deveui", "--imei", help="new DevEUI or IMEI")] = None,
           model: Annotated[str | None, typer.Option(help="new model id")] = None,
           lat: LatOpt = None, lon: LonOpt = None,
           address: Annotated[str | None, typer.Option(help="street address ('' clears)")] = None,
           district: Annotated[str | None, typer.Option(help="district name")] = None,
           street: Annotated[str | None, typer.Option(help="street (街道) name")] = None,
           zone_class: Annotated[str | None, typer.Option(help="GB 3096 zone class 0, 1, 2, 3, 4a or 4b")] = None,
           site: Annotated[str | None, typer.Option(help="site label")] = None,
           mount_height_mm: Annotated[float | None, typer.Option(help="water level: mount height, mm")] = None,
           bin_depth_mm: Annotated[float | None, typer.Option(help="bin fill: bin depth, mm")] = None,
           dead_zone_mm: Annotated[float | None, typer.Option(help="sensor dead zone, mm")] = None,
           interval_s: Annotated[int | None, typer.Option(help="expected report interval, seconds")] = None,
           status: Annotated[str | None, typer.Option(help="active, maintenance or retired")] = None,
           by: ByOpt = None, registry: RegistryOpt = None) -> None:
    """Change some fields of a device; the result is checked by the same rules as `add`.

    Example: [bold]urbansense device update WL-CY-001 --status maintenance --by zhang.wei[/bold]
    """
    with open_registry(ctx, registry) as reg:
        old = _get(reg, id)
        new = _revalidate(ctx, old, key=key, model=model, latitude=lat, longitude=lon, address=address,
                          district=district, street=street, zone_class=zone_class, site=site,
                          mount_height_mm=mount_height_mm, bin_depth_mm=bin_depth_mm, dead_zone_mm=dead_zone_mm,
                          expected_interval_s=interval_s, status=status)
        changed = _apply(reg, old, new, by=by, action="update")
    console.print(f"updated {old.id}: {', '.join(changed)}" if changed else f"{old.id}: nothing changed")


@device_app.command("calibrate")
def calibrate(ctx: typer.Context, id: IdArg,
              empty_distance_mm: Annotated[float | None, typer.Option(
                  help="distance read with the road dry / the bin empty, mm")] = None,
              from_last: Annotated[bool, typer.Option(
                  "--from-last", help="use the device's last reported distance (from InfluxDB)")] = False,
              by: ByOpt = None, registry: RegistryOpt = None) -> None:
    """Set the mount height (water level) or bin depth (bin fill) from a reading taken dry / empty.

    Example: [bold]urbansense device calibrate WL-CY-001 --empty-distance-mm 2150[/bold]
    or, right after the sensor reported over a dry road: [bold]urbansense device calibrate WL-CY-001 --from-last[/bold]
    """
    if (empty_distance_mm is None) == (not from_last):
        raise fail("give exactly one of --empty-distance-mm MM or --from-last")
    with open_registry(ctx, registry) as reg:
        old = _get(reg, id)
        info = get_model(old.model)
        param = {"water_level": "mount_height_mm", "bin_fill": "bin_depth_mm"}.get(old.kind)
        if param is None or param not in info.install_params:
            raise fail(f"{id}: model {old.model} ({old.kind}) has no distance to calibrate")
        if info.mounting == "bottom":
            raise fail(f"{id}: model {old.model} looks up from under the bin, so an empty bin reads 0; "
                       "set the depth with `device update --bin-depth-mm`")
        if from_last:
            empty_distance_mm, source = _last_distance(ctx, old)
        else:
            source = "manual reading"
        new = _revalidate(ctx, old, **{param: empty_distance_mm})
        changed = _apply(reg, old, new, by=by, action="calibrate",
                         note={"reading_mm": empty_distance_mm, "source": source})
    if changed:
        console.print(f"calibrated {old.id}: {param} {old.install.get(param, 'unset')} → {new.install[param]:g} "
                      f"({source})")
    else:
        console.print(f"{old.id}: {param} is already {new.install[param]:g}")


def _last_distance(ctx: typer.Context, device: Device) -> tuple[float, str]:
    cfg = config(ctx)
    assert cfg is not None
    try:
        found = asyncio.run(with_influx(cfg, lambda client: last_distance(client, device)))
    except StorageError as exc:
        raise fail(f"--from-last: cannot read InfluxDB: {exc}", 1) from None
    if found is None:
        raise fail(f"--from-last: {device.id} has no reported distance in InfluxDB yet", 1)
    t_ns, distance = found
    return distance, f"last reported distance at {fmt_time(t_ns / 1e9)}"


@device_app.command("retire")
def retire(ctx: typer.Context, id: IdArg,
           reason: Annotated[str, typer.Option(help="why, for the audit")] = "",
           by: ByOpt = None, registry: RegistryOpt = None) -> None:
    """Retire a device: its history stays; its uplinks are counted and dead-lettered, not stored.

    Example: [bold]urbansense device retire WL-CY-001 --reason "pole removed for road works"[/bold]
    """
    with open_registry(ctx, registry) as reg:
        old = _get(reg, id)
        if old.status == "retired":
            console.print(f"{old.id} is already retired")
            return
        reg.update(old.id, by=by, action="retire", note={"reason": reason} if reason else None, status="retired")
    console.print(f"retired {old.id} (was {old.status}); `device update {old.id} --status active` brings it back")


@device_app.command("mac-key")
def mac_key(ctx: typer.Context, id: IdArg,
            clear: Annotated[bool, typer.Option("--clear", help="remove the key: unsigned frames accepted again")]
            = False,
            by: ByOpt = None, registry: RegistryOpt = None) -> None:
    """Give an NB-IoT device a new frame MAC key (printed once: load it into the device), or remove it.

    From then on its UDP frames must be version 0x02 with the HMAC tag (collectors/nbiot/frame.py);
    unsigned or wrongly signed frames are dead-lettered as `bad_mac`. The key is not in the audit.

    Example: [bold]urbansense device mac-key NB-CY-001[/bold]
    """
    with open_registry(ctx, registry) as reg:
        _get(reg, id)
        key = reg.set_mac_key(id, by=by, clear=clear)
    if clear:
        console.print(f"{id}: MAC key removed; its unsigned frames are accepted again")
    else:
        console.print(f"{id}: new frame MAC key (shown once, load it into the device):")
        typer.echo(key)


@device_app.command("move")
def move(ctx: typer.Context, id: IdArg,
         lat: Annotated[float, typer.Option("--lat", help="new latitude, WGS-84")],
         lon: Annotated[float, typer.Option("--lon", help="new longitude, WGS-84")],
         at: Annotated[str | None, typer.Option(help="when it was moved, ISO 8601 (default: now)")] = None,
         address: Annotated[str | None, typer.Option(help="new street address")] = None,
         district: Annotated[str | None, typer.Option(help="new district")] = None,
         street: Annotated[str | None, typer.Option(help="new street (街道)")] = None,
         zone_class: Annotated[str | None, typer.Option(help="new noise zone class")] = None,
         site: Annotated[str | None, typer.Option(help="new site label")] = None,
         by: ByOpt = None, registry: RegistryOpt = None) -> None:
    """Move a device to a new location; the time of the move goes into the audit.

    Example: [bold]urbansense device move WL-CY-001 --lat 39.9301 --lon 116.4512 --address "东三环中路 12 号"
    --at 2024-06-01T14:30[/bold]
    """
    moved_at = parse_time(at)
    with open_registry(ctx, registry) as reg:
        old = _get(reg, id)
        new = _revalidate(ctx, old, latitude=lat, longitude=lon, address=address, district=district,
                          street=street, zone_class=zone_class, site=site)
        stamp = datetime.fromtimestamp(moved_at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        changed = _apply(reg, old, new, by=by, action="move", note={"moved_at": stamp})
    console.print(f"moved {old.id} at {fmt_time(moved_at)}: {', '.join(changed)}" if changed
                  else f"{old.id}: already there, nothing changed")


def _describe(entry: dict[str, Any]) -> str:
    changes = entry["changes"]
    if entry["action"] in ("add", "import:add"):
        return f"added: {changes.get('model')} key {changes.get('key')}"
    parts = []
    for k, v in changes.items():
        if isinstance(v, list) and len(v) == 2:
            parts.append(f"{k}: {json.dumps(v[0], ensure_ascii=False)} → {json.dumps(v[1], ensure_ascii=False)}")
        else:
            parts.append(f"{k}: {json.dumps(v, ensure_ascii=False)}")
    return "; ".join(parts)


@device_app.command("history")
def history(ctx: typer.Context, id: LookupArg, as_json: JsonOpt = False, registry: RegistryOpt = None) -> None:
    """Every change to a device: when, who (the OS user; a --by note in brackets), what (old → new).
    `--json`: JSON Lines, one change per line.

    Example: [bold]urbansense device history 24-E1-24-71-3C-21-00-01[/bold]
    """
    with open_registry(ctx, registry) as reg:
        device_id = get_device(reg, id).id
        entries = reg.history(device_id)
    if as_json:
        for e in entries:
            typer.echo(json.dumps({**e, "at": iso_time(e["at"])}, ensure_ascii=False))
        return
    table = TextTable("when", "by", "action", "what changed", title=f"history of {device_id} (times {city_tz()})")
    for e in entries:
        by = f"{e['by']} ({e['note']})" if e.get("note") else e["by"]
        table.add_row(fmt_time(e["at"], short=True), by, e["action"], _describe(e))
    console.print(table)
