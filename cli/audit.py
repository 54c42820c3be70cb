"""`urbansense audit verify`: is the registry's audit trail whole, does every device row match it, and is the
operators' audit trail of the alert store (desk logins, lockouts, acks, silences) whole?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from alerts.errors import AlertsError
from alerts.store import AlertStore
from cli.device_common import JsonOpt, RegistryOpt, config, fail, open_registry
from core.controls import printable
from core.database import holds_nothing
from core.hashchain import Problem

audit_app = typer.Typer(
    help="Tamper evidence of the device registry (the hash-chained audit trail and the device rows) and of the "
         "operators' audit trail in the alert store.\n\n"
         "Example: [bold]urbansense audit verify[/bold]",
    no_args_is_help=True, rich_markup_mode="rich")

AlertsDbOpt = Annotated[str | None, typer.Option(
    "--alerts-db", help="alert store: a SQLite file or postgresql:// URL (default: the config's \\[database] url, "
                        "else alerts.db_path; without a config, and without this option, it is not checked)")]


def _alert_audit(ctx: typer.Context, where: str | None) -> tuple[int, list[Problem]] | None:
    """Rows and problems of the alert store's operators' audit; None when there is no store to check."""
    if where is None:
        cfg = config(ctx, required=False)
        if cfg is None:
            return None
        target: str | Path = cfg.alerts_database()
    else:
        target = where
    if holds_nothing(target, "alerts"):
        if where is not None:
            raise fail(f"no alert store at {where}", 1)
        return None
    try:
        store = AlertStore(target, migrate_schema=False)
    except AlertsError as exc:
        raise fail(str(exc), 1) from None
    try:
        return store.verify_audit()
    finally:
        store.close()


@audit_app.command("verify")
def verify(ctx: typer.Context, registry: RegistryOpt = None, alerts_db: AlertsDbOpt = None,
           as_json: JsonOpt = False) -> None:
    """Walk both audit chains and re-hash every device row; exit 1 and list what is wrong if anything is.

    Reports audit rows deleted or changed after they were written, and device rows changed
    outside urbansense (e.g. with `sqlite3` or `psql`), which the service refuses to apply.
    Checks the config's registry (\\[database] url when set, else registry.path) unless --registry names one,
    and the operators' audit trail of the config's alert store (the desk console's logins, lockouts, acks
    and silences, and `alerts ack`) unless --alerts-db names one.

    Example: [bold]urbansense audit verify --registry var/registry.sqlite --alerts-db var/alerts.sqlite[/bold]
    """
    with open_registry(ctx, registry) as reg:
        problems = reg.verify()
        rows = reg.audit_rows()
        devices = reg.count()
    alert_audit = _alert_audit(ctx, alerts_db)
    alert_rows, alert_problems = alert_audit if alert_audit is not None else (0, [])
    everything = problems + alert_problems
    if as_json:
        out = {"ok": not everything, "audit_rows": rows, "devices": devices,
               "problems": [{"where": p.where, "what": p.what} for p in everything]}
        if alert_audit is not None:
            out["alert_audit_rows"] = alert_rows
        typer.echo(json.dumps(out, ensure_ascii=False))
    elif everything:
        typer.secho(f"audit trail NOT intact: {len(everything)} problem(s)", fg="red", err=True)
        for p in everything:
            typer.echo(f"  {printable(p)}")
    else:
        typer.echo(f"audit trail intact: {rows} audit rows chained, {devices} device rows match it")
        if alert_audit is not None:
            typer.echo(f"operators' audit trail intact: {alert_rows} rows chained")
    if everything:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
