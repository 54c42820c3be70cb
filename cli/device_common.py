"""What every `urbansense device` command shares: the typer group, options, registry and config access, formatting."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from cli.state import state
from core.secrets import reveal
from provisioning.registry import Registry
from provisioning.validate import InvalidDevice
from service.config import CONFIG_ENV, DEFAULT_PATH, Config
from storage.influx import InfluxClient

T = TypeVar("T")

device_app = typer.Typer(help="Provision, check and maintain devices in the registry.", no_args_is_help=True,
                         rich_markup_mode="rich")
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

RegistryOpt = Annotated[Path | None, typer.Option("--registry", help="registry file (default: registry.path "
                                                                     "from the config)")]
ByOpt = Annotated[str | None, typer.Option(
    "--by", help="a note for the audit (e.g. on whose behalf); the OS user is always recorded as the actor")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON for scripts")]
IdArg = Annotated[str, typer.Argument(help="device id, e.g. WL-CY-001")]


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


def open_registry(ctx: typer.Context, path: Path | None) -> Registry:
    if path is None:
        cfg = config(ctx)
        assert cfg is not None
        path = cfg.path(cfg.registry.path)
    return Registry(path)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print an error to stderr; return the Exit to raise."""
    err_console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def fail_invalid(exc: InvalidDevice) -> typer.Exit:
    for problem in exc.problems:
        err_console.print(f"[red]error:[/red] {problem}")
    return typer.Exit(2)


def parse_time(text: str | None) -> float:
    """Epoch seconds of an ISO 8601 time (local time when it has no offset); now when None."""
    if text is None:
        return time.time()
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise fail(f"--at: {text!r} is not an ISO 8601 time; expected e.g. 2024-06-01T14:30 or "
                   "2024-06-01T06:30:00Z") from None


def fmt_time(seconds: float | None, *, ago: bool = False) -> str:
    """Local time to the second, optionally with how long ago."""
    if seconds is None:
        return "never"
    text = datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")
    if not ago:
        return text
    return f"{text} ({fmt_age(time.time() - seconds)} ago)"


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
