"""What every `urbansense` command shares: the config path given on the command line, loaded on first use,
and the city's own device models from that config's `[decoders] paths`."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from core.database import DatabaseError, MigrationError
from decoders.folders import ModelFolders
from service.config import CONFIG_ENV, DEFAULT_PATH, Config, ConfigError, load_config


class State:
    """What every command can reach: the config path, loaded on first use, and the city's model folders."""

    def __init__(self, config_path: Path | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None
        self.model_folders: ModelFolders | None = None

    def load_city_models(self) -> None:
        """Install the models of `[decoders] paths` so every command knows them; quiet when there is no config.

        A config that does not load is left for the command that needs it to report.
        """
        if self.config_path is None and not os.environ.get(CONFIG_ENV) and not Path(DEFAULT_PATH).exists():
            return
        try:
            cfg = load_config(self.config_path)
        except ConfigError:
            return
        if cfg.decoders.paths:
            self.model_folders = ModelFolders(cfg.path(p) for p in cfg.decoders.paths)
            self.model_folders.refresh()

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


def database_exit_code(exc: Exception) -> int:
    """README "Exit codes" for a store that cannot be opened: 2 when the target given is itself wrong (a bad URL or
    scheme: usage), 1 when the server is unreachable or refuses, or the schema is behind (a failure)."""
    return 2 if isinstance(exc, DatabaseError) and not isinstance(exc, MigrationError) else 1
