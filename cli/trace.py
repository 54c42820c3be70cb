"""`urbansense trace FILE`: what the service would do with captured messages, one JSON line per message."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.state import state
from service.logs import setup_logging
from service.trace import trace


def register(app: typer.Typer) -> None:
    @app.command("trace")
    def trace_command(
        ctx: typer.Context,
        file: Annotated[Path, typer.Argument(help="JSON Lines of captured messages ('-' for stdin)")],
        write: Annotated[bool, typer.Option("--write", help="also store the readings (and dead letters)")] = False,
    ) -> None:
        """What would the service do with these messages? Prints one JSON line per message.

        Each input line: {"topic": ..., "payload": {...} or base64, "received": RFC 3339 (required),
        "source": "lorawan"|"nbiot-udp"|"ctwing"|"onenet" (optional)}; one pretty-printed record
        (or an array of them) as a console shows it works too. Output: the reading(s)
        (device id, measurement, time, time_source, fields, history) or the dead letter or skip
        (reason, detail). The registry, time policy and duplicate window are the config's.

        Example: [bold]urbansense trace uplink.jsonl[/bold]   (copy the event from ChirpStack's console:
        echo '{"topic":"application/x/device/0011223344556601/event/up","payload":{...},
        "received":"2025-03-05T08:57:14Z"}' > uplink.jsonl)
        """
        cfg = state(ctx).config
        setup_logging("ERROR")
        if str(file) == "-":
            code = asyncio.run(trace(cfg, sys.stdin.buffer, sys.stdout, write=write))
        else:
            if not file.is_file():
                typer.secho(f"no such file: {file}", fg="red", err=True)
                raise typer.Exit(2)
            with file.open("rb") as fh:
                code = asyncio.run(trace(cfg, fh, sys.stdout, write=write))
        if code:
            raise typer.Exit(code)
