"""What every `urbansense device` command shares: the typer group, options, registry and config access, formatting."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from sqlalchemy.exc import SQLAlchemyError

from cli.state import database_exit_code, state
from cli.tables import plain
from core.database import DatabaseError, describe_url, holds_nothing
from core.device import Device
from core.districts import district_matches, no_match_note
from core.secrets import reveal
from provisioning.lookup import AmbiguousDevice, DeviceNotFound, find_device
from provisioning.registry import Registry
from provisioning.validate import InvalidDevice
from service.config import CONFIG_ENV, DEFAULT_PATH, Config
from storage.influx import InfluxClient

T = TypeVar("T")
DEFAULT_CITY_TZ = "Asia/Shanghai"

device_app = typer.Typer(help="Provision, check and maintain devices in the registry.\n\n"
                              "A device is named by its id, its DevEUI/IMEI (any case, with or without separators) "
                              "or, for show/history/watch, a unique prefix of either.\n\n"
                              "Example: [bold]urbansense device show 24-E1-24-71-3C-21-00-01[/bold]",
                         no_args_is_help=True, rich_markup_mode="rich")
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

RegistryOpt = Annotated[str | None, typer.Option(
    "--registry", help="registry SQLite file or postgresql:// URL (default: \\[database] url, else registry.path, "
                       "from the config; a password on the command line shows in `ps`: prefer the config)")]
ByOpt = Annotated[str | None, typer.Option(
    "--by", help="a note for the audit (e.g. on whose behalf); the OS user is always recorded as the actor")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON for scripts")]
IdArg = Annotated[str, typer.Argument(help="device id or its DevEUI/IMEI, e.g. WL-CY-001 or 24-E1-24-71-3C-21-00-01")]
LookupArg = Annotated[str, typer.Argument(help="device id, its DevEUI/IMEI in any case with or without separators "
                                               "(24-E1-24-71-3C-21-00-01), or a unique prefix of either")]


def config(ctx: typer.Context, *, required: bool = True) -> Config | None:
    """The loaded config; when not `required` and no config file was named or exists, None."""
    st = state(ctx)
    if (not required and st.config_path is None and not os.environ.get(CONFIG_ENV)
            and not Path(DEFAULT_PATH).exists()):
        return None
    return st.config


def bbox(ctx: typer.Context) -> list[float]:
    cfg = config(ctx, required=False)
    return list(cfg.provisioning.bbox) if cfg is not None else []


def open_registry(ctx: typer.Context, path: str | None) -> Registry:
    """The registry `--registry` names, else the config's (its `[database] url` when set); exits 1 with the
    driver's words (never the URL's password) when it cannot be opened."""
    where: str | Path = path or ""
    if path is None:
        cfg = config(ctx)
        assert cfg is not None
        where = cfg.registry_database()
    try:  # the CLI makes a new registry but never migrates one: `db migrate` and `run` do (qa2 F3)
        return Registry(where, migrate_schema=holds_nothing(where, "devices"))
    except (SQLAlchemyError, DatabaseError) as exc:
        detail = getattr(exc, "orig", None) or exc  # the driver's words, never the URL's password
        raise fail(f"cannot open the registry in {describe_url(where)}: {detail}", database_exit_code(exc)) from None


def get_device(reg: Registry, text: str, *, prefix: bool = True) -> Device:
    """The device `text` names (id, DevEUI/IMEI in any form, or with `prefix` a unique prefix); exits otherwise.

    Not found exits 1; several devices starting with `text` exit 2 (a usage error: say more).
    """
    try:
        return find_device(reg, text, prefix=prefix)
    except AmbiguousDevice as exc:
        raise fail(str(exc), 2) from None
    except DeviceNotFound as exc:
        raise fail(str(exc), 1) from None


def in_district(reg: Registry, devices: list[Device], district: str | None) -> list[Device]:
    """`devices` in the districts `district` matches (`core.districts`: `朝阳` finds `朝阳区`); when it
    matches no device of the registry, a note on stderr names the districts there are."""
    if district is None:
        return devices
    found = [d for d in devices if district_matches(district, d.district)]
    if found:
        return found
    known = {d.district for d in reg.all()}  # the other filters may be why nothing was found
    if not any(district_matches(district, k) for k in known):
        err_console.print(f"[yellow]note:[/yellow] {plain(no_match_note(district, known))}")
    return found


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print an error to stderr; return the Exit to raise."""
    err_console.print(f"[red]error:[/red] {plain(message)}")
    return typer.Exit(code)


def fail_invalid(exc: InvalidDevice) -> typer.Exit:
    for problem in exc.problems:
        err_console.print(f"[red]error:[/red] {plain(str(problem))}")
    return typer.Exit(2)


def parse_time(text: str | None) -> float:
    """Epoch seconds of an ISO 8601 time (city time when it has no offset); now when None."""
    if text is None:
        return time.time()
    try:
        when = datetime.fromisoformat(text)
        return (when if when.tzinfo else when.replace(tzinfo=ZoneInfo(city_tz()))).timestamp()
    except ValueError:
        raise fail(f"--at: {text!r} is not an ISO 8601 time; expected e.g. 2024-06-01T14:30 or "
                   "2024-06-01T06:30:00Z") from None


_CITY_TZ: dict[str, Any] = {"name": None, "ctx": None}


@device_app.callback()
def _remember_context(ctx: typer.Context) -> None:
    _CITY_TZ.update(name=None, ctx=ctx)


def city_tz() -> str:
    """The zone times are shown in: `alerts.timezone` of the config (the city's), else Asia/Shanghai."""
    if _CITY_TZ["name"] is None:
        ctx = _CITY_TZ["ctx"]
        cfg = config(ctx, required=False) if ctx is not None else None
        _CITY_TZ["name"] = cfg.alerts.timezone if cfg is not None else DEFAULT_CITY_TZ
    return _CITY_TZ["name"]


def fmt_time(seconds: float | None, *, ago: bool = False, short: bool = False) -> str:
    """City time to the second with its offset and zone name (`2026-07-21T14:30:00+08:00 Asia/Shanghai`).

    `short` leaves out offset and zone (`2026-07-21 14:30:00`), for rows under a title that names the zone.
    """
    if seconds is None:
        return "never"
    name = city_tz()
    when = datetime.fromtimestamp(seconds, ZoneInfo(name))
    text = when.strftime("%Y-%m-%d %H:%M:%S") if short else f"{when.isoformat(timespec='seconds')} {name}"
    if not ago:
        return text
    return f"{text} ({fmt_age(time.time() - seconds)} ago)"


def iso_time(seconds: float | None) -> str | None:
    """RFC 3339 in the city zone with its offset, for JSON (`2026-07-21T14:30:00+08:00`); None stays None."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, ZoneInfo(city_tz())).isoformat(timespec="seconds")


def fmt_age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}" if seconds < 10 * size else f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


async def with_influx(cfg: Config, use: Callable[[InfluxClient], Awaitable[T]]) -> T:
    """Run `use` with an InfluxDB client for the configured database (short timeout: a person is waiting)."""
    ic = cfg.influxdb
    async with InfluxClient(reveal(ic.url), ic.database, username=ic.username or None,
                            password=reveal(ic.password) or None, token=reveal(ic.token) or None,
                            retention_policy=ic.retention_policy or None,
                            timeout=min(ic.timeout_s, 5.0), verify=cfg.influx_verify()) as client:
        return await use(client)
