"""`urbansense db status|migrate`: the shared state's schema versions, and bringing them up to date."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from cli.state import state
from core.database import DatabaseError, Migration
from service.databases import migrate_all, status

db_app = typer.Typer(
    help="The shared state's database (\\[database] url: PostgreSQL; empty: the SQLite files): schema versions "
         "and migrations. Migrations also run at `urbansense run` unless \\[database] migrate_on_start = false.\n\n"
         "Example: [bold]urbansense --config /etc/urbansense/config.toml db status[/bold]",
    no_args_is_help=True, rich_markup_mode="rich")


def _fail(exc: Exception) -> typer.Exit:
    detail = getattr(exc, "orig", None) or exc  # the driver's words, never the URL's password
    typer.secho(f"error: database unreachable or refused: {detail}", fg="red", err=True)
    return typer.Exit(1)  # a server unreachable or refusing: a failure, not a usage error (README "Exit codes")


@db_app.command("status")
def status_cmd(ctx: typer.Context,
               as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False) -> None:
    """Show each component's schema version against this urbansense's; exit 1 when one is behind.

    A SQLite file not created yet is listed as such (the service creates it at start). Exit 1
    also when a database cannot be reached or refuses.

    Example: [bold]urbansense db status[/bold]
    """
    try:
        rows = status(state(ctx).config)
    except (SQLAlchemyError, DatabaseError) as exc:
        raise _fail(exc) from None
    for r in rows:
        if as_json:
            typer.echo(json.dumps({"component": r.name, "where": r.where, "version": r.version, "latest": r.latest,
                                   "pending": [m.description for m in r.pending], "exists": r.exists},
                                  ensure_ascii=False))
            continue
        if not r.exists:
            typer.echo(f"{r.name}: {r.where}: not created yet (created at version {r.latest} at start)")
        elif r.pending:
            typer.secho(f"{r.name}: {r.where}: version {r.version} of {r.latest}, {len(r.pending)} migration(s) "
                        "pending:", fg="yellow")
            for m in r.pending:
                typer.echo(f"  {m.version}: {m.description}")
        else:
            typer.echo(f"{r.name}: {r.where}: version {r.version}, up to date")
    if any(r.exists and r.pending for r in rows):
        raise typer.Exit(1)


@db_app.command("migrate")
def migrate_cmd(ctx: typer.Context) -> None:
    """Apply every pending schema migration (each in its own transaction; safe while another instance
    starts, which waits for it). Nothing to do is not an error.

    Example: [bold]urbansense --config /etc/urbansense/config.toml db migrate[/bold]
    """
    def applied(component: str, m: Migration) -> None:
        typer.echo(f"{component}: applied {m.version}: {m.description}")

    try:
        done = migrate_all(state(ctx).config, on_apply=applied)
    except (SQLAlchemyError, DatabaseError) as exc:
        raise _fail(exc) from None
    for component, steps in done.items():
        if not steps:
            typer.echo(f"{component}: up to date")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
