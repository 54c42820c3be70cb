"""`urbansense device ...`: the field technician's commands on the registry."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from provisioning.device import ZONE_CLASSES, Device
from provisioning.keys import KeyError_, normalise_key
from provisioning.registry import Registry, RegistryError

device_app = typer.Typer(help="Provision and inspect devices in the registry.", no_args_is_help=True)
console = Console()

RegistryOpt = Annotated[Path | None, typer.Option("--registry", help="registry file (default: from config)")]


def open_registry(ctx: typer.Context, path: Path | None) -> Registry:
    if path is None:
        from service.cli import state

        cfg = state(ctx).config
        path = cfg.path(cfg.registry.path)
    return Registry(path)


def fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def build_device(*, id: str, key: str, model: str, latitude: float | None, longitude: float | None,
                 address: str, district: str, street: str, zone_class: str, site: str,
                 install: dict[str, float], interval_s: int) -> Device:
    """Validate one device's fields; raises ValueError naming the field and the accepted form."""
    from decoders import UnknownModel, get_model

    if not id.strip():
        raise ValueError("id: must not be empty")
    try:
        key = normalise_key(key)
    except KeyError_ as exc:
        raise ValueError(f"key: {exc}") from None
    try:
        info = get_model(model)
    except UnknownModel as exc:
        raise ValueError(f"model: {exc.args[0] if exc.args else exc}") from None
    if latitude is not None and not -90 <= latitude <= 90:
        raise ValueError(f"latitude: {latitude} is out of range; expected -90 to 90 degrees")
    if longitude is not None and not -180 <= longitude <= 180:
        raise ValueError(f"longitude: {longitude} is out of range; expected -180 to 180 degrees")
    if zone_class and zone_class.lower() not in ZONE_CLASSES:
        raise ValueError(f"zone_class: {zone_class!r} is not one of {', '.join(ZONE_CLASSES)}")
    for param in info.install_params:
        if param not in install:
            raise ValueError(f"{param}: model {model} ({info.kind}) needs it, e.g. --{param.replace('_', '-')} 2000")
        if not 0 < install[param] <= 20_000:
            raise ValueError(f"{param}: {install[param]} mm is not plausible; expected 1 to 20000 mm")
    if interval_s <= 0:
        raise ValueError(f"interval_s: expected a positive number of seconds, got {interval_s}")
    return Device(id=id.strip(), key=key, model=info.model, kind=info.kind, latitude=latitude,
                  longitude=longitude, address=address, district=district, street=street,
                  zone_class=zone_class.lower(), site=site, install=install, expected_interval_s=interval_s)


@device_app.command("add")
def add(ctx: typer.Context,
        id: Annotated[str, typer.Argument(help="the device's id, unique, e.g. WL-CY-001")],
        key: Annotated[str, typer.Option("--key", "--deveui", "--imei",
                                         help="DevEUI (16 hex) or IMEI (15 digits) or Modbus host:port/unit")],
        model: Annotated[str, typer.Option(help="model id from `urbansense models`")],
        lat: Annotated[float | None, typer.Option(help="latitude, WGS-84")] = None,
        lon: Annotated[float | None, typer.Option(help="longitude, WGS-84")] = None,
        address: Annotated[str, typer.Option(help="street address")] = "",
        district: Annotated[str, typer.Option(help="district name")] = "",
        street: Annotated[str, typer.Option(help="street (街道) name")] = "",
        zone_class: Annotated[str, typer.Option(help="noise zone class 0,1,2,3,4a,4b")] = "",
        site: Annotated[str, typer.Option(help="site label, e.g. a construction site")] = "",
        mount_height_mm: Annotated[float | None, typer.Option(
            help="water level: sensor height above the dry road")] = None,
        bin_depth_mm: Annotated[float | None, typer.Option(
            help="bin fill: distance from sensor to the empty bin's floor")] = None,
        dead_zone_mm: Annotated[float | None, typer.Option(help="override the sensor's dead zone")] = None,
        interval_s: Annotated[int, typer.Option(help="expected report interval in seconds")] = 300,
        by: Annotated[str | None, typer.Option(help="who makes the change (default: OS user)")] = None,
        registry: RegistryOpt = None) -> None:
    """Add one device.

    Example: [bold]urbansense device add WL-CY-001 --deveui 24E124713C210001 --model milesight-em500-udl
    --lat 39.93 --lon 116.45 --district 朝阳 --mount-height-mm 2000[/bold]
    """
    install = {k: v for k, v in (("mount_height_mm", mount_height_mm), ("bin_depth_mm", bin_depth_mm),
                                 ("dead_zone_mm", dead_zone_mm)) if v is not None}
    try:
        device = build_device(id=id, key=key, model=model, latitude=lat, longitude=lon, address=address,
                              district=district, street=street, zone_class=zone_class, site=site,
                              install=install, interval_s=interval_s)
    except ValueError as exc:
        raise fail(str(exc)) from None
    with open_registry(ctx, registry) as reg:
        try:
            reg.add(device, by=by)
        except RegistryError as exc:
            raise fail(str(exc)) from None
    console.print(f"added {device.id} ({device.model}, {device.kind}, key {device.key})", highlight=False)


@device_app.command("list")
def list_(ctx: typer.Context,
          kind: Annotated[str | None, typer.Option(help="only this kind")] = None,
          district: Annotated[str | None, typer.Option(help="only this district")] = None,
          as_json: Annotated[bool, typer.Option("--json", help="JSON lines for scripts")] = False,
          registry: RegistryOpt = None) -> None:
    """List devices.

    Example: [bold]urbansense device list --kind water_level[/bold]
    """
    where = {k: v for k, v in (("kind", kind), ("district", district)) if v}
    with open_registry(ctx, registry) as reg:
        devices = reg.all(**where)
    if as_json:
        for d in devices:
            typer.echo(json.dumps(asdict(d), ensure_ascii=False))
        return
    table = Table("id", "key", "model", "kind", "district", "zone", "status")
    for d in devices:
        table.add_row(d.id, d.key, d.model, d.kind, d.district, d.zone_class, d.status)
    console.print(table)
    console.print(f"{len(devices)} devices")


@device_app.command("show")
def show(ctx: typer.Context, id: Annotated[str, typer.Argument(help="device id")],
         as_json: Annotated[bool, typer.Option("--json", help="JSON for scripts")] = False,
         registry: RegistryOpt = None) -> None:
    """Show one device's registry row.

    Example: [bold]urbansense device show WL-CY-001[/bold]
    """
    with open_registry(ctx, registry) as reg:
        device = reg.find(id)
    if device is None:
        raise fail(f"no device with id {id!r}", 1)
    if as_json:
        typer.echo(json.dumps(asdict(device), ensure_ascii=False))
        return
    table = Table("field", "value", show_header=False)
    for k, v in asdict(device).items():
        table.add_row(k, json.dumps(v, ensure_ascii=False) if isinstance(v, dict) else str(v))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(device_app, name="device")
