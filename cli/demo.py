"""`urbansense demo`: the whole system on this machine (the kit is `sim.demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.tables import plain
from service.ingest_lock import IngestIdHeld
from sim.daemons import APT_HINT, DaemonError
from sim.demo import console, run_demo


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(duration: Annotated[float | None, typer.Option(
                 help="stop after this many seconds (default: run until Ctrl-C)")] = None,
             rate: Annotated[float, typer.Option(help="simulated uplinks per second")] = 40.0,
             data: Annotated[Path, typer.Option(help="where the demo keeps its data")] = Path("var/demo")) -> None:
        """The whole system on this machine: Mosquitto and InfluxDB on loopback, a 62-device fleet, a rainstorm
        compressed into the run (see the note it prints).

        Example: [bold]urbansense demo --duration 60[/bold]
        """
        try:
            counts = run_demo(data, duration, rate)
        except IngestIdHeld as exc:  # a demo already runs on this folder: its state is not to be cleared
            console.print(f"[red]error:[/red] {plain(str(exc))} (another `urbansense demo --data {data}`?)")
            raise typer.Exit(1) from None
        except DaemonError as exc:
            console.print(f"[red]error:[/red] {plain(str(exc))}")
            console.print(f"install the servers with: [bold]{APT_HINT}[/bold]")
            raise typer.Exit(1) from None
        missing = [k for k, c in counts.items() if c == 0]
        if missing:
            console.print(f"[yellow]no readings stored for: {', '.join(missing)}[/yellow]")
            raise typer.Exit(1)
