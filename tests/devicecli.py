"""`urbansense device …` run in-process against a test's registry (the provisioning tests' shared helpers)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner, Result

from cli.app import app

runner = CliRunner()


def registry(where: Path | str) -> str:
    """A folder's own SQLite registry, or the `database` fixture's target (a file or a PostgreSQL URL)."""
    return str(where / "r.sqlite") if isinstance(where, Path) else where


def dev(where: Path | str, *args: str, config: Path | None = None) -> Result:
    """`urbansense [--config CONFIG] device ARGS --registry <registry(where)>`."""
    pre = ["--config", str(config)] if config else []
    return runner.invoke(app, [*pre, "device", *args, "--registry", registry(where)])
