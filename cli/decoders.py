"""`urbansense decode` and `urbansense models`: try a payload against a codec, list the models."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from decoders.codec import DecodeError
from decoders.registry import UnknownModel, all_models, get_model


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
    payload: Annotated[str, typer.Argument(help="Payload as hex, or base64 with --base64.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Device model id, e.g. milesight-em500-udl.")],
    is_base64: Annotated[bool, typer.Option("--base64", help="The payload is base64, not hex.")] = False,
    port: Annotated[int | None, typer.Option("--port", "-p", help="LoRaWAN fPort (default: the model's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Decode one payload with a model's codec and print its canonical fields and warnings. `--json`: one object.

    Example: [bold]urbansense decode --model milesight-em500-udl 01755c03821e00[/bold]
    """
    err = Console(stderr=True)
    try:
        info = get_model(model)
    except UnknownModel as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    try:
        data = _payload(payload, is_base64)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    fport = port if port is not None else getattr(info.codec, "port", 1)
    try:
        decoded = info.codec.decode(data, fport)
    except DecodeError as exc:
        err.print(f"[red]decode error:[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(orjson.dumps({"model": info.model, "kind": info.kind, "port": fport, "fields": decoded.fields,
                                 "warnings": decoded.warnings}).decode())
        return
    table = Table(title=f"{info.model} ({info.kind}), fPort {fport}")
    table.add_column("field")
    table.add_column("value", justify="right")
    for name, value in decoded.fields.items():
        table.add_row(name, repr(value))
    out = Console()
    out.print(table)
    for warning in decoded.warnings:
        out.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)


def models(
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines: one model object per line.")] = False,
) -> None:
    """List every device model with its kind, codec source (native or JS) and fields. `--json`: JSON Lines.

    Example: [bold]urbansense models --json | jq -r 'select(.kind == "water_level") | .model'[/bold]
    """
    rows = [{"model": m.model, "kind": m.kind, "source": m.source, "vendor": m.vendor, "title": m.title,
             "fields": list(m.fields), "install_params": list(m.install_params), "can_encode": m.can_encode}
            for m in all_models()]
    if as_json:
        for row in rows:
            typer.echo(orjson.dumps(row).decode())
        return
    table = Table(title=f"{len(rows)} device models")
    for column in ("model", "kind", "source", "fields"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(r["model"], r["kind"], r["source"], ", ".join(r["fields"]))
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add `decode` and `models` to the urbansense command."""
    app.command("decode")(decode)
    app.command("models")(models)
