"""`urbansense audit verify`: is the registry's audit trail whole, and does every device row match it?"""

from __future__ import annotations

import json

import typer

from cli.device_common import JsonOpt, RegistryOpt, open_registry
from core.controls import printable

audit_app = typer.Typer(
    help="Tamper evidence of the device registry: the hash-chained audit trail and the device rows.\n\n"
         "Example: [bold]urbansense audit verify[/bold]",
    no_args_is_help=True, rich_markup_mode="rich")


@audit_app.command("verify")
def verify(ctx: typer.Context, registry: RegistryOpt = None, as_json: JsonOpt = False) -> None:
    """Walk the audit chain and re-hash every device row; exit 1 and list what is wrong if anything is.

    Reports audit rows deleted or changed after they were written, and device rows changed
    outside urbansense (e.g. with `sqlite3` or `psql`), which the service refuses to apply.
    Checks the config's registry (\\[database] url when set, else registry.path) unless --registry names one.

    Example: [bold]urbansense audit verify --registry var/registry.sqlite[/bold]
    """
    with open_registry(ctx, registry) as reg:
        problems = reg.verify()
        rows = reg.audit_rows()
        devices = reg.count()
    if as_json:
        typer.echo(json.dumps({"ok": not problems, "audit_rows": rows, "devices": devices,
                               "problems": [{"where": p.where, "what": p.what} for p in problems]},
                              ensure_ascii=False))
    elif problems:
        typer.secho(f"audit trail NOT intact: {len(problems)} problem(s)", fg="red", err=True)
        for p in problems:
            typer.echo(f"  {printable(p)}")
    else:
        typer.echo(f"audit trail intact: {rows} audit rows chained, {devices} device rows match it")
    if problems:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
