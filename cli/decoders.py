"""`urbansense decode` and `urbansense models`: decode a payload or decoded object, list and check models."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from cli.tables import TextTable, plain
from collectors.pasted import parse_pasted
from core.uplink import EnvelopeError, Uplink
from decoders.codec import Decoded, DecodeError
from decoders.definition import decode_input
from decoders.folders import load_folders
from decoders.model_info import ModelInfo
from decoders.registry import DEFINITIONS_DIR, UnknownModel, all_models, get_model


def _payload(text: str, is_base64: bool) -> bytes:
    """The payload bytes; ValueError names the expected form."""
    try:
        if is_base64:
            return base64.b64decode(text.strip(), validate=True)
        return bytes.fromhex(text.replace(" ", "").replace(":", "").removeprefix("0x"))
    except (ValueError, binascii.Error):
        form = "base64" if is_base64 else "hex (e.g. 01755c03821e00)"
        raise ValueError(f"payload {text!r} is not valid {form}") from None


def decode(
    payload: Annotated[str, typer.Argument(help="Payload as hex, or base64 with --base64.")] = "",
    model: Annotated[str, typer.Option("--model", "-m", help="Device model id, e.g. milesight-em500-udl.")] = "",
    is_base64: Annotated[bool, typer.Option("--base64", help="The payload is base64, not hex.")] = False,
    port: Annotated[int | None, typer.Option("--port", "-p", help="LoRaWAN fPort (default: the model's).")] = None,
    obj: Annotated[str | None, typer.Option("--object", help="The network server's decoded object, as JSON.")] = None,
    envelope: Annotated[Path | None, typer.Option(
        "--envelope", help="A whole message copied from the network server or platform (ChirpStack v4/v3, TTS, "
                           "CTWing, OneNET), as a JSON file; '-' reads stdin.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Decode one payload, decoded object or whole message with a model; print its canonical fields, history
    records and warnings. `--json`: one object.

    Examples: [bold]urbansense decode -m milesight-em500-udl 017564038201e0[/bold]
              [bold]urbansense decode -m milesight-am308 --object '{"pm2_5": 37, "pm10": 52}'[/bold]
              [bold]urbansense decode -m milesight-am308 --envelope event.json[/bold]
    """
    err = Console(stderr=True)
    if not model:
        err.print("[red]error:[/red] --model is required (see `urbansense models`)", highlight=False)
        raise typer.Exit(2)
    try:
        info = get_model(model)
    except UnknownModel as exc:
        err.print(f"[red]error:[/red] {plain(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    try:
        if envelope is not None:
            inputs = [(up.payload, up.port, up.decoded) for up in _envelope(envelope)]
        else:
            data = _payload(payload, is_base64) if payload else b""
            inputs = [(data, port if port is not None else getattr(info.codec, "port", 1),
                       _object(obj) if obj is not None else None)]
    except (ValueError, OSError) as exc:
        err.print(f"[red]error:[/red] {plain(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    for data, fport, decoded_obj in inputs:
        try:
            decoded = decode_input(info.codec, data, fport, decoded_obj)
        except DecodeError as exc:
            err.print(f"[red]decode error:[/red] {plain(str(exc))}", highlight=False)
            raise typer.Exit(1) from None
        _show(info, fport, decoded, as_json)


def _envelope(path: Path) -> list[Uplink]:
    """The uplinks of a pasted message; ValueError says what it is not."""
    body = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    try:
        return parse_pasted(body, time.time_ns())
    except EnvelopeError as exc:
        raise ValueError(f"--envelope: {exc.reason}: {exc.detail}") from None


def _show(info: ModelInfo, fport: int, decoded: Decoded, as_json: bool) -> None:
    if as_json:
        typer.echo(orjson.dumps({"model": info.model, "kind": info.kind, "port": fport, "fields": decoded.fields,
                                 "warnings": decoded.warnings,
                                 "history": [{"time_s": r.time_s, "fields": r.fields} for r in decoded.history],
                                 }).decode())
        return
    table = TextTable(title=f"{info.model} ({info.kind}), fPort {fport}")
    table.add_column("field")
    table.add_column("value", justify="right")
    for name, value in decoded.fields.items():
        table.add_row(name, repr(value))
    out = Console()
    out.print(table)
    for record in decoded.history:
        when = dt.datetime.fromtimestamp(record.time_s, dt.UTC).isoformat().replace("+00:00", "Z")
        out.print(f"history record at {when}: {record.fields}", highlight=False)
    for warning in decoded.warnings:
        out.print(f"[yellow]warning:[/yellow] {plain(warning)}", highlight=False)


def _object(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"--object is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("--object must be a JSON object {...}")
    return value


def _origin(m: ModelInfo) -> str:
    if m.origin:
        path = Path(m.origin)
        package = DEFINITIONS_DIR.parent
        return f"packaged: decoders/{path.relative_to(package)}" if path.is_relative_to(package) else str(path)
    return "packaged: decoders/js" if m.source == "js" else "packaged: decoders/models"


models_app = typer.Typer(invoke_without_command=True, rich_markup_mode="rich")


@models_app.callback()
def models(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines: one model object per line.")] = False,
) -> None:
    """List every device model with its kind, codec source, fields and where it comes from. `--json`: JSON Lines.

    The city's own folders come from decoders.paths in the config; `models check DIR` validates one.

    Example: [bold]urbansense models[/bold], [bold]urbansense models check /etc/urbansense/models[/bold]
    """
    if ctx.invoked_subcommand is not None:
        return
    rows = [{"model": m.model, "kind": m.kind, "source": m.source, "origin": _origin(m), "vendor": m.vendor,
             "title": m.title, "fields": list(m.fields), "install_params": list(m.install_params),
             "can_encode": m.can_encode} for m in all_models()]
    folders = getattr(ctx.find_root().obj, "model_folders", None)
    problems = list(folders.problems) if folders is not None else []
    if as_json:
        for row in rows:
            typer.echo(orjson.dumps(row).decode())
    else:
        table = TextTable(title=f"{len(rows)} device models")
        for column in ("model", "kind", "source", "origin", "fields"):
            table.add_column(column, overflow="fold")
        for r in rows:
            table.add_row(r["model"], r["kind"], r["source"], r["origin"], ", ".join(r["fields"]))
        Console().print(table)
    err = Console(stderr=True)
    for problem in problems:
        err.print(f"[red]refused:[/red] {plain(problem)}", highlight=False, soft_wrap=True)


@models_app.command("check")
def check(
    folder: Annotated[Path, typer.Argument(help="A folder of model definitions (*.toml, optional *.js).")],
) -> None:
    """Validate every definition in a folder and run its example; every mistake is listed as file: key: reason.

    Example: [bold]urbansense models check /etc/urbansense/models[/bold]
    """
    found, _, problems = load_folders([folder])
    out, err = Console(), Console(stderr=True)
    for info in found.values():
        out.print(f"[green]ok:[/green] {info.model} ({info.kind}) from {plain(Path(info.origin).name)}",
                  highlight=False)
    for problem in problems:
        err.print(f"[red]error:[/red] {plain(problem)}", highlight=False, soft_wrap=True)
    if problems:
        err.print(f"{len(problems)} problem(s) in {plain(str(folder))}", highlight=False)
        raise typer.Exit(1)
    if not found:
        err.print(f"[yellow]no definitions (*.toml) in {plain(str(folder))}[/yellow]", highlight=False)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `decode` and `models` to the urbansense command."""
    app.command("decode")(decode)
    app.add_typer(models_app, name="models")
