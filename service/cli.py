"""The `urbansense` command: one typer app; each package adds its own commands in `register`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
from loguru import logger

from service.config import Config, ConfigError, load_config

app = typer.Typer(
    name="urbansense",
    help="The city's sensor nervous system: collect, decode, store, watch.\n\n"
         "Configuration comes from ./config.toml, --config FILE or $URBANSENSE_CONFIG.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


class State:
    """What every command can reach: the config path, loaded on first use."""

    def __init__(self, config_path: Path | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = load_config(self.config_path)
            except ConfigError as exc:
                typer.secho(str(exc), fg="red", err=True)
                raise typer.Exit(2) from None
        return self._config


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):
        obj = State(None)
        ctx.find_root().obj = obj
    return obj


@app.callback()
def _main(ctx: typer.Context,
          config: Annotated[Path | None, typer.Option("--config", "-c", envvar="URBANSENSE_CONFIG",
                                                      help="config file (default ./config.toml)")] = None,
          ) -> None:
    ctx.obj = State(config)


def setup_logging(level: str) -> None:
    logger.remove()
    logger.add(sys.stderr, level=level,
               format="<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> {message}")


@app.command()
def run(ctx: typer.Context) -> None:
    """Run the ingest service until Ctrl-C or SIGTERM (then it flushes, acknowledges and exits 0).

    If one of its tasks dies, it logs why, answers 503 on /readyz, flushes and exits 1, for
    systemd (Restart=on-failure) or the container runtime to restart it.

    Example: [bold]urbansense --config /etc/urbansense/config.toml run[/bold]
    """
    from service.app import run_service

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
    data = cfg.model_dump(mode="json")
    for section in data.values():
        if isinstance(section, dict):
            for k in ("password", "token"):
                if section.get(k):
                    section[k] = "***"
    typer.echo(f"configuration OK: {state(ctx).config_path or 'config.toml'}")
    for name, section in data.items():
        typer.echo(f"[{name}] {section}")


def _configured_alerts_db(ctx: typer.Context) -> Path:
    """The alerts database of the config that `--config` (or $URBANSENSE_CONFIG) names."""
    cfg = state(ctx).config
    return cfg.path(cfg.alerts.db_path)


def _register_plugins() -> None:
    """Each package adds its commands here: one line per package."""
    from alerts.cli import register as alerts
    from decoders.cli import register as decoders
    from grafana.cli import register as grafana
    from provisioning.cli import register as provisioning
    from rules.cli import register as rules
    from service.demo import register as demo
    from service.simulate_cli import register as simulate
    from service.trace import register as trace
    from storage.cli import register as deadletter

    for register in (provisioning, decoders, rules, deadletter, grafana, simulate, demo, trace):
        register(app)
    alerts(app, db_path=_configured_alerts_db)


_register_plugins()


def main() -> None:
    app()
