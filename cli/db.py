"""`urbansense db status|migrate|copy-from-sqlite`: the shared state's schema versions, bringing them up to date,
and moving a single machine's SQLite files into the shared PostgreSQL database."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from cli.state import database_exit_code, state
from core.database import DatabaseError, Migration, describe_url
from service.databases import migrate_all, status
from service.sqlite_copy import CopyRefused, Sources, copy_from_sqlite

db_app = typer.Typer(
    help="The shared state's database (\\[database] url: PostgreSQL; empty: the SQLite files): schema versions "
         "and migrations. Migrations also run at `urbansense run` unless \\[database] migrate_on_start = false.\n\n"
         "Example: [bold]urbansense --config /etc/urbansense/config.toml db status[/bold]",
    no_args_is_help=True, rich_markup_mode="rich")


def _fail(exc: Exception) -> typer.Exit:
    detail = getattr(exc, "orig", None) or exc  # the driver's words, never the URL's password
    typer.secho(f"error: database unreachable or refused: {detail}", fg="red", err=True)
    return typer.Exit(database_exit_code(exc))


@db_app.command("status")
def status_cmd(ctx: typer.Context,
               as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False) -> None:
    """Show each component's schema version against this urbansense's; exit 1 when one is behind.

    A SQLite file not created yet is listed as such (the service creates it at start). Exit 1
    also when a database cannot be reached or refuses; 2 for a malformed URL.

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


@db_app.command("copy-from-sqlite")
def copy_cmd(
    ctx: typer.Context,
    registry: Annotated[Path | None, typer.Option(
        "--registry", dir_okay=False, help="the registry's SQLite file (default: the config's registry.path)")] = None,
    dead_letters: Annotated[Path | None, typer.Option(
        "--dead-letters", dir_okay=False,
        help="the dead letters' SQLite file (default: the config's pipeline.dead_letter_path)")] = None,
    alerts: Annotated[Path | None, typer.Option(
        "--alerts", dir_okay=False,
        help="the alert store's SQLite file (default: the config's alerts.db_path)")] = None,
) -> None:
    """Copy a single machine's SQLite files into the \\[database] url PostgreSQL database: the device registry
    (devices, hash-chained audit, MAC keys; verified after the copy), the dead letters, and the alert store
    (open alerts with their cases, silences, outbox, operators' audit).

    Safe to run again: what the database already holds is not copied twice (a run cut short is simply
    repeated). A database holding a different registry or alert store is refused, nothing merged. Stop the
    service on this machine first; the files are brought to this version's schema before copying.

    Example: [bold]urbansense --config /etc/urbansense/config.toml db copy-from-sqlite[/bold]
    """
    cfg = state(ctx).config
    url = cfg.database.url.get_secret_value().strip()
    if not url:
        typer.secho("error: set [database] url (or URBANSENSE_DATABASE_URL) to the PostgreSQL database to copy "
                    "into", fg="red", err=True)
        raise typer.Exit(2)
    default = Sources.of(cfg)
    sources = Sources(registry or default.registry, dead_letters or default.dead_letters, alerts or default.alerts)
    typer.echo(f"copying into {describe_url(url)}")
    try:
        done = copy_from_sqlite(url, sources, say=typer.echo)
    except CopyRefused as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    except (SQLAlchemyError, DatabaseError) as exc:
        raise _fail(exc) from None
    typer.echo("summary:")
    for c in done:
        rows = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in c.rows.items())
        typer.echo(f"  {c.component}: {c.status} ({c.source}){': ' + rows if rows else ''}")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
