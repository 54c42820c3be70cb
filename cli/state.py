"""What every `urbansense` command shares: the config path given on the command line, loaded on first use."""

from __future__ import annotations

from pathlib import Path

import typer

from service.config import Config, ConfigError, load_config


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
    """The root command's `State` (created with no config path when the app was not entered through its callback)."""
    obj = ctx.find_root().obj
    if not isinstance(obj, State):
        obj = State(None)
        ctx.find_root().obj = obj
    return obj
