"""The `urbansense` command: one typer app; each module of `cli` adds its commands through the table `COMMANDS`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from cli import alerts, audit, deadletter, decoders, demo, device, grafana, report, rules, simulate, trace
from cli.state import State, state
from service.app import run_service
from service.logs import setup_logging

app = typer.Typer(
    name="urbansense",
    help="The city's sensor nervous system: collect, decode, store, watch.\n\n"
         "Configuration comes from ./config.toml, --config FILE or $URBANSENSE_CONFIG.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(ctx: typer.Context,
          config: Annotated[Path | None, typer.Option("--config", "-c", envvar="URBANSENSE_CONFIG",
                                                      help="config file (default ./config.toml)")] = None,
          ) -> None:
    ctx.obj = State(config)
    ctx.obj.load_city_models()


@app.command()
def run(ctx: typer.Context) -> None:
    """Run the ingest service until Ctrl-C or SIGTERM (then it flushes, acknowledges and exits 0).

    If one of its tasks dies, it logs why, answers 503 on /readyz, flushes and exits 1, for
    systemd (Restart=on-failure) or the container runtime to restart it.

    Example: [bold]urbansense --config /etc/urbansense/config.toml run[/bold]
    """
    cfg = state(ctx).config
    setup_logging(cfg.logging.level)
    code = asyncio.run(run_service(cfg))
    if code:
        raise typer.Exit(code)


@app.command("check-config")
def check_config(ctx: typer.Context) -> None:
    """Validate the configuration and print it resolved (secrets hidden).

    Example: [bold]urbansense --config config.toml check-config[/bold]
    """
    cfg = state(ctx).config
    data = cfg.model_dump(mode="json")  # secret types dump masked
    typer.echo(f"configuration OK: {state(ctx).config_path or 'config.toml'}")
    for name, section in data.items():
        typer.echo(f"[{name}] {section}")


def _configured_alerts_db(ctx: typer.Context) -> Path:
    """The alerts database of the config that `--config` (or $URBANSENSE_CONFIG) names."""
    cfg = state(ctx).config
    return cfg.path(cfg.alerts.db_path)


COMMANDS = (device.register, decoders.register, rules.register, deadletter.register, grafana.register,
            simulate.register, demo.register, audit.register, report.register, trace.register)
"""The command table: each module adds its commands to `app`, in this order (the order `--help` lists them)."""

for _register in COMMANDS:
    _register(app)
alerts.register(app, db_path=_configured_alerts_db)


def main() -> None:
    app()
